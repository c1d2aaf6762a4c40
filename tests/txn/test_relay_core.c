/* The relay's core (src/txn/relay_core.h), step by step: a buyer's cell (cell 1) with
 * cross-cell payments toward cells 2 and 3 in its outbox, and the answers the merchants'
 * cells and its own cell would give, written by hand. The recovery of refund activities
 * left trying runs against two real payments states: cell 1 (the buyer's) and cell 2 (the
 * merchant's), each message applied to the cell it goes to; so does the resolving of orders
 * left reserved, with a second core as cell 2's relay. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cell/pay.h"
#include "txn/relay_core.h"

#define BUYER 7ull /* zone 0: cell 1's */
#define TO_CELL2 1017ull
#define TO_CELL3 2027ull

typedef struct fx {
    pay_t *pay;
    ledger_t *ledger;
    uint64_t clock;
    pay_t *mpay; /* cell 2, the merchant's (recovery tests) */
    ledger_t *mledger;
    uint64_t mclock;
    relay_core_t *core;
    uint64_t tick;
    relay_msg_t msgs[RELAY_CORE_BATCHES];
    pay_object_t answers[RELAY_CORE_BATCH_MAX];
    uint64_t seq;
} fx_t;

static uint32_t cny(void) {
    return pay_currency_pack("CNY");
}

static void apply(fx_t *f, const pay_request_t *r, uint8_t want) {
    pay_object_t o;
    pay_apply(f->pay, f->ledger, &f->clock, r, &o);
    assert_int_equal(o.code, want);
}

static int setup(void **state) {
    fx_t *f = calloc(1, sizeof *f);
    pay_config_t pc = {.merchants_max = 64,
                       .users_max = 64,
                       .payments_max = 4096,
                       .refunds_max = 64,
                       .topups_max = 64,
                       .idempotency_max = 4096,
                       .orders_max = 64,
                       .outbox_max = 4096,
                       .tcc_max = 64,
                       .cell_id = 1};
    cp_zones_add(&pc.zones, 0);
    f->pay = pay_create(&pc);
    f->ledger = ledger_create(&(ledger_config_t){.accounts_max = 64, .transfers_max = 8192});
    f->clock = 1000000000ull;
    f->core = relay_core_create(&(relay_core_config_t){.cell_id = 1});
    assert_non_null(f->pay);
    assert_non_null(f->ledger);
    assert_non_null(f->core);
    apply(f, &(pay_request_t){.kind = PAY_KIND_USER, .uid = BUYER, .currency = cny()}, PAY_CREATED);
    apply(f,
          &(pay_request_t){
              .kind = PAY_KIND_TOPUP, .uid = BUYER, .currency = cny(), .amount = 1000000000},
          PAY_CREATED);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx_t *f = *state;
    relay_core_destroy(f->core);
    pay_destroy(f->pay);
    ledger_destroy(f->ledger);
    if (f->mpay) pay_destroy(f->mpay);
    if (f->mledger) ledger_destroy(f->mledger);
    free(f);
    return 0;
}

/* A cross-cell payment of an order drawn by cell `peer` for merchant: an outbox record. */
static u128 pay_toward(fx_t *f, uint32_t peer, uint64_t merchant, u128 amount) {
    u128 id = ((u128)BUYER << 64) | ((u128)peer << 40) | ++f->seq;
    pay_request_t r = {.kind = PAY_KIND_PAYMENT,
                       .payment_id = id,
                       .idem_key = id,
                       .actor = merchant,
                       .uid = BUYER,
                       .amount = amount,
                       .currency = cny(),
                       .funding = 1,
                       .peer_cell = peer};
    strcpy(r.text, "otn");
    apply(f, &r, PAY_CREATED);
    return id;
}

static uint32_t tick(fx_t *f, bool leader) {
    return relay_core_tick(f->core, ++f->tick, f->clock, leader, f->pay, f->msgs,
                           RELAY_CORE_BATCHES);
}

/* The answers a cell gives: every item with code. */
static const pay_object_t *answers(fx_t *f, uint32_t n, uint8_t code) {
    for (uint32_t i = 0; i < n; i++) f->answers[i] = (pay_object_t){.code = code};
    return f->answers;
}

/* The own cell applies the acknowledgements and answers them. */
static void ack_applied(fx_t *f, const relay_msg_t *m) {
    for (uint32_t i = 0; i < m->count; i++) {
        assert_int_equal(m->items[i].kind, PAY_KIND_ACK);
        pay_apply(f->pay, f->ledger, &f->clock, &m->items[i], &f->answers[i]);
    }
    assert_false(relay_core_answer(f->core, m->batch, 0, f->answers, m->count, NULL));
}

static const relay_msg_t *msg_to(const fx_t *f, uint32_t n, uint64_t cell) {
    for (uint32_t i = 0; i < n; i++)
        if (f->msgs[i].cell == cell) return &f->msgs[i];
    fail_msg("no message to cell %u", (unsigned)cell);
    return NULL;
}

/* One batch per target cell, of credits naming this cell; nothing again while in flight. */
static void test_batches_per_cell(void **state) {
    fx_t *f = *state;
    u128 a = pay_toward(f, 2, TO_CELL2, 10), b = pay_toward(f, 3, TO_CELL3, 20);
    u128 c = pay_toward(f, 2, TO_CELL2, 30);
    assert_int_equal(tick(f, true), 2);
    const relay_msg_t *m2 = msg_to(f, 2, 2), *m3 = msg_to(f, 2, 3);
    assert_int_equal(m2->count, 2);
    assert_int_equal(m3->count, 1);
    assert_true(m2->items[0].payment_id == a && m2->items[1].payment_id == c);
    assert_true(m3->items[0].payment_id == b && m3->items[0].amount == 20);
    assert_int_equal(m3->items[0].kind, PAY_KIND_CREDIT);
    assert_int_equal(m3->items[0].actor, TO_CELL3);
    assert_int_equal(m3->items[0].uid, BUYER);
    assert_int_equal(m3->items[0].peer_cell, 1);
    assert_int_equal(tick(f, true), 0);
    assert_int_equal(relay_core_busy(f->core), 2);
    assert_false(relay_core_stuck(f->core));
}

/* Credited items are acknowledged to the own cell; then the backlog is gone. */
static void test_credits_then_acks(void **state) {
    fx_t *f = *state;
    pay_toward(f, 2, TO_CELL2, 10);
    pay_toward(f, 2, TO_CELL2, 11);
    assert_int_equal(tick(f, true), 1);
    relay_msg_t m = f->msgs[0], ack;
    assert_true(relay_core_answer(f->core, m.batch, 0, answers(f, 2, PAY_CREATED), 2, &ack));
    assert_int_equal(ack.cell, 1);
    assert_int_equal(ack.count, 2);
    ack_applied(f, &ack);
    assert_int_equal(pay_outbox_backlog(f->pay), 0);
    relay_stats_t st = relay_core_stats(f->core);
    assert_int_equal(st.delivered, 2);
    assert_int_equal(st.acked, 2);
    assert_int_equal(relay_core_busy(f->core), 0);
    assert_int_equal(tick(f, true), 0);
}

/* A failed batch sends its cell back to its first record, after a rest; others go on. */
static void test_failure_rests_then_again(void **state) {
    fx_t *f = *state;
    u128 a = pay_toward(f, 2, TO_CELL2, 10);
    assert_int_equal(tick(f, true), 1);
    assert_false(relay_core_answer(f->core, f->msgs[0].batch, -2, NULL, 0, NULL));
    pay_toward(f, 3, TO_CELL3, 5); /* cell 3 is not resting */
    uint32_t n = tick(f, true);
    assert_int_equal(n, 1);
    assert_int_equal(f->msgs[0].cell, 3);
    for (uint32_t t = 2; t < RELAY_CORE_BACKOFF_TICKS; t++) assert_int_equal(tick(f, true), 0);
    n = tick(f, true);
    assert_int_equal(n, 1);
    assert_int_equal(f->msgs[0].cell, 2);
    assert_true(f->msgs[0].items[0].payment_id == a);
    assert_int_equal(relay_core_stats(f->core).failures, 1);
}

/* A refused item is not acknowledged, and goes again; the others are acknowledged. */
static void test_refused_item(void **state) {
    fx_t *f = *state;
    pay_toward(f, 2, TO_CELL2, 10);
    u128 b = pay_toward(f, 2, TO_CELL2, 11);
    assert_int_equal(tick(f, true), 1);
    pay_object_t *o = (pay_object_t *)answers(f, 2, PAY_CREATED);
    o[1].code = PAY_ERR_INVALID;
    relay_msg_t ack;
    assert_true(relay_core_answer(f->core, f->msgs[0].batch, 0, o, 2, &ack));
    assert_int_equal(ack.count, 1);
    ack_applied(f, &ack);
    assert_int_equal(pay_outbox_backlog(f->pay), 1);
    uint32_t n = 0;
    for (uint32_t t = 0; t < RELAY_CORE_BACKOFF_TICKS && n == 0; t++) n = tick(f, true);
    assert_int_equal(n, 1);
    assert_int_equal(f->msgs[0].count, 1);
    assert_true(f->msgs[0].items[0].payment_id == b);
}

/* Losing and regaining leadership starts over from the oldest record. */
static void test_new_term_starts_over(void **state) {
    fx_t *f = *state;
    u128 a = pay_toward(f, 2, TO_CELL2, 10);
    assert_int_equal(tick(f, true), 1);
    assert_int_equal(tick(f, false), 0);
    assert_int_equal(tick(f, true), 1);
    assert_true(f->msgs[0].items[0].payment_id == a);
    assert_int_equal(relay_core_busy(f->core), 2);
}

/* More records than a batch holds: full batches to one cell, in order. */
static void test_batch_split(void **state) {
    fx_t *f = *state;
    uint32_t total = RELAY_CORE_BATCH_MAX + 100;
    for (uint32_t i = 0; i < total; i++) pay_toward(f, 2, TO_CELL2, 1 + i);
    assert_int_equal(tick(f, true), 2);
    uint32_t counts = f->msgs[0].count + f->msgs[1].count;
    assert_int_equal(counts, total);
    assert_true(f->msgs[0].count == RELAY_CORE_BATCH_MAX ||
                f->msgs[1].count == RELAY_CORE_BATCH_MAX);
}

/* The driver could not send: the records go again after a rest; nothing is stuck meanwhile. */
static void test_unsent(void **state) {
    fx_t *f = *state;
    pay_toward(f, 2, TO_CELL2, 10);
    assert_int_equal(tick(f, true), 1);
    relay_core_unsent(f->core, f->msgs[0].batch, "no client");
    assert_int_equal(relay_core_busy(f->core), 0);
    uint32_t n = 0, t = 0;
    for (; t < 2 * RELAY_CORE_BACKOFF_TICKS && n == 0; t++) {
        n = tick(f, true);
        if (n == 0) assert_false(relay_core_stuck(f->core));
    }
    assert_int_equal(n, 1);
    assert_int_equal(t, RELAY_CORE_BACKOFF_TICKS);
}

/* ---- Recovery of refund activities whose gateway died ---- */

#define NS_PER_S 1000000000ull

/* Cell 2, the merchant's: TO_CELL2's zone (1), its merchant, and an order drawn there. */
/* Cell 2, the merchant's, with room for orders orders. */
static void merchant_cell_sized(fx_t *f, uint32_t orders) {
    pay_config_t pc = {.merchants_max = 64,
                       .users_max = 64,
                       .payments_max = 64,
                       .refunds_max = 64,
                       .topups_max = 64,
                       .idempotency_max = orders,
                       .orders_max = orders,
                       .outbox_max = 64,
                       .tcc_max = 64,
                       .cell_id = 2};
    cp_zones_add(&pc.zones, 1);
    f->mpay = pay_create(&pc);
    f->mledger = ledger_create(&(ledger_config_t){.accounts_max = 64, .transfers_max = 1024});
    f->mclock = 1000000000ull;
    assert_non_null(f->mpay);
    assert_non_null(f->mledger);
    pay_object_t o;
    pay_apply(f->mpay, f->mledger, &f->mclock,
              &(pay_request_t){.kind = PAY_KIND_MERCHANT, .uid = TO_CELL2}, &o);
    assert_int_equal(o.code, PAY_CREATED);
}

static void merchant_cell(fx_t *f) {
    merchant_cell_sized(f, 64);
}

/* Applies a message's items in the cell it goes to, into f->answers. */
static void cell_applies(fx_t *f, const relay_msg_t *m) {
    assert_true(m->cell == 1 || m->cell == 2);
    for (uint32_t i = 0; i < m->count; i++) {
        if (m->cell == 1)
            pay_apply(f->pay, f->ledger, &f->clock, &m->items[i], &f->answers[i]);
        else
            pay_apply(f->mpay, f->mledger, &f->mclock, &m->items[i], &f->answers[i]);
    }
}

/* Delivers m and its follow-ups (acknowledgements); returns the decide items it carried. */
static uint32_t deliver(fx_t *f, relay_msg_t m) {
    uint32_t decides = 0;
    for (;;) {
        for (uint32_t i = 0; i < m.count; i++) decides += m.items[i].kind == PAY_KIND_DECIDE;
        cell_applies(f, &m);
        relay_msg_t follow;
        if (!relay_core_answer(f->core, m.batch, 0, f->answers, m.count, &follow)) return decides;
        m = follow;
    }
}

/* Ticks as leader, delivering everything; returns the decide items sent. */
static uint32_t pump(fx_t *f, uint32_t ticks) {
    uint32_t decides = 0;
    for (uint32_t t = 0; t < ticks; t++) {
        uint32_t n = tick(f, true);
        relay_msg_t msgs[RELAY_CORE_BATCHES];
        memcpy(msgs, f->msgs, n * sizeof msgs[0]);
        for (uint32_t i = 0; i < n; i++) decides += deliver(f, msgs[i]);
    }
    return decides;
}

/* A cross-cell payment of amount: the order in cell 2, the debit in cell 1, the credit
 * delivered and acknowledged by the relay. */
static u128 xpay(fx_t *f, u128 amount) {
    pay_request_t order = {.kind = PAY_KIND_ORDER,
                           .idem_key = ++f->seq,
                           .body_hash = 1,
                           .actor = TO_CELL2,
                           .uid = BUYER,
                           .amount = amount,
                           .currency = cny(),
                           .funding = 1};
    strcpy(order.text, "otn");
    order.text[3] = (char)('a' + f->seq % 26);
    pay_object_t o;
    pay_apply(f->mpay, f->mledger, &f->mclock, &order, &o);
    assert_int_equal(o.code, PAY_CREATED);
    pay_request_t r = order;
    r.kind = PAY_KIND_PAYMENT;
    r.payment_id = r.idem_key = o.id;
    r.peer_cell = 2;
    apply(f, &r, PAY_CREATED);
    pump(f, 2);
    assert_int_equal(pay_outbox_backlog(f->pay), 0);
    return o.id;
}

/* Refund of P in cell 1 with the out_request_no orn: the activity R, trying. */
static u128 refund(fx_t *f, u128 p, u128 amount, const char *orn, uint8_t want) {
    pay_request_t r = {.kind = PAY_KIND_REFUND,
                       .idem_key = ++f->seq,
                       .body_hash = 2,
                       .actor = TO_CELL2,
                       .payment_id = p,
                       .amount = amount,
                       .peer_cell = 2};
    strcpy(r.text, orn);
    pay_object_t o;
    pay_apply(f->pay, f->ledger, &f->clock, &r, &o);
    assert_int_equal(o.code, want);
    return o.id;
}

/* A branch step of R in cell 2 (what the gateway's Try, or the relay, sends). */
static uint8_t branch_step(fx_t *f, uint8_t kind, u128 r, u128 amount) {
    pay_request_t q = {.kind = kind,
                       .payment_id = r,
                       .actor = TO_CELL2,
                       .uid = BUYER,
                       .amount = amount,
                       .currency = cny(),
                       .peer_cell = 1};
    pay_object_t o;
    pay_apply(f->mpay, f->mledger, &f->mclock, &q, &o);
    return o.code;
}

static ledger_account_t merchant_account(fx_t *f) {
    u128 id = pay_account_id(TO_CELL2, PAY_ACCOUNT_MERCHANT, cny());
    ledger_account_t a;
    assert_int_equal(ledger_lookup_accounts(f->mledger, &id, 1, &a), 1);
    return a;
}

/* Ticks until the recovery's batch goes out (at most two looks); it is left in f->msgs[0]. */
static void recovery_batch(fx_t *f, uint32_t want_items) {
    uint32_t n = 0;
    for (uint32_t t = 0; t < 2 * RELAY_CORE_RECOVER_TICKS && n == 0; t++) n = tick(f, true);
    assert_int_equal(n, 1);
    const relay_msg_t *m = &f->msgs[0];
    assert_int_equal(m->cell, 1);
    assert_int_equal(m->count, want_items);
    for (uint32_t i = 0; i < m->count; i++) {
        const pay_request_t *d = &m->items[i];
        assert_int_equal(d->kind, PAY_KIND_DECIDE);
        assert_int_equal(d->code, PAY_ERR_CANCELLED);
        assert_true(d->uid == BUYER && (uint64_t)(d->payment_id >> 64) == BUYER);
        assert_true(d->actor == 0 && d->amount == 0 && d->peer_cell == 0 && d->idem_key == 0);
    }
}

/* Left trying before any Try: nothing before recover_after, then a decide of the own cell;
 * the activity is cancelled, its out_request_no free, and the Cancel reaches cell 2 as an
 * empty rollback (a late Try is refused). */
static void test_recovery_empty_rollback(void **state) {
    fx_t *f = *state;
    merchant_cell(f);
    u128 p = xpay(f, 100);
    u128 r = refund(f, p, 40, "r1", PAY_TRYING);
    f->clock += RELAY_CORE_RECOVER_AFTER_NS - NS_PER_S; /* a second short */
    assert_int_equal(pump(f, 3 * RELAY_CORE_RECOVER_TICKS), 0);
    assert_int_equal(pay_activities_trying(f->pay), 1);
    f->clock += 2 * NS_PER_S;
    recovery_batch(f, 1);
    assert_true(f->msgs[0].items[0].payment_id == r);
    relay_msg_t m = f->msgs[0];
    assert_int_equal(deliver(f, m), 1);
    assert_int_equal(f->answers[0].kind, PAY_KIND_REFUND);
    assert_int_equal(f->answers[0].code, PAY_ERR_CANCELLED);
    assert_int_equal(relay_core_stats(f->core).recovered, 1);
    assert_int_equal(pay_activities_trying(f->pay), 0);
    assert_int_equal(pay_outbox_backlog(f->pay), 1); /* the CANCEL record */
    assert_int_equal(pump(f, 2), 0);
    assert_int_equal(pay_outbox_backlog(f->pay), 0);
    assert_int_equal(branch_step(f, PAY_KIND_TRY, r, 40), PAY_ERR_CANCELLED); /* anti-hanging */
    assert_int_equal(merchant_account(f).debits_pending, 0);
    refund(f, p, 100, "r1", PAY_TRYING); /* the hold and the out_request_no are free again */
}

/* Left trying after the Try: the recovery's Cancel voids the pending transfer in cell 2. */
static void test_recovery_voids_try(void **state) {
    fx_t *f = *state;
    merchant_cell(f);
    u128 p = xpay(f, 100);
    u128 r = refund(f, p, 40, "r1", PAY_TRYING);
    assert_int_equal(branch_step(f, PAY_KIND_TRY, r, 40), PAY_CREATED);
    assert_true(merchant_account(f).debits_pending == 40);
    f->clock += RELAY_CORE_RECOVER_AFTER_NS;
    recovery_batch(f, 1);
    relay_msg_t m = f->msgs[0];
    deliver(f, m);
    assert_int_equal(f->answers[0].code, PAY_ERR_CANCELLED);
    assert_int_equal(pump(f, 2), 0);
    assert_int_equal(pay_outbox_backlog(f->pay), 0);
    ledger_account_t a = merchant_account(f);
    assert_true(a.debits_pending == 0 && a.debits_posted == 0 && a.credits_posted == 100);
    assert_int_equal(branch_step(f, PAY_KIND_CONFIRM, r, 40), PAY_ERR_CANCELLED);
    assert_int_equal(pay_activities_trying(f->pay), 0);
}

/* An activity the gateway decided is never sent; the one left trying is. */
static void test_recovery_skips_decided(void **state) {
    fx_t *f = *state;
    merchant_cell(f);
    u128 p = xpay(f, 100);
    u128 done = refund(f, p, 10, "r1", PAY_TRYING);
    u128 left = refund(f, p, 20, "r2", PAY_TRYING);
    assert_int_equal(branch_step(f, PAY_KIND_TRY, done, 10), PAY_CREATED);
    apply(f, &(pay_request_t){.kind = PAY_KIND_DECIDE, .payment_id = done, .uid = BUYER},
          PAY_CREATED);
    assert_int_equal(pump(f, 2), 0); /* the CONFIRM is delivered */
    f->clock += 2 * RELAY_CORE_RECOVER_AFTER_NS;
    recovery_batch(f, 1);
    assert_true(f->msgs[0].items[0].payment_id == left);
    relay_msg_t m = f->msgs[0];
    deliver(f, m);
    assert_int_equal(pump(f, 3 * RELAY_CORE_RECOVER_TICKS), 0); /* nothing left to recover */
    assert_int_equal(pay_activities_trying(f->pay), 0);
    ledger_account_t a = merchant_account(f);
    assert_true(a.debits_pending == 0 && a.debits_posted == 10);
}

/* The gateway decides while the recovery's decide is on its way: its decision stands, the
 * decide answers it, and the CONFIRM is what reaches cell 2. */
static void test_recovery_first_decision_wins(void **state) {
    fx_t *f = *state;
    merchant_cell(f);
    u128 p = xpay(f, 100);
    u128 r = refund(f, p, 30, "r1", PAY_TRYING);
    assert_int_equal(branch_step(f, PAY_KIND_TRY, r, 30), PAY_CREATED);
    f->clock += RELAY_CORE_RECOVER_AFTER_NS;
    recovery_batch(f, 1);
    relay_msg_t m = f->msgs[0];
    apply(f, &(pay_request_t){.kind = PAY_KIND_DECIDE, .payment_id = r, .uid = BUYER}, PAY_CREATED);
    deliver(f, m);
    assert_int_equal(f->answers[0].kind, PAY_KIND_REFUND);
    assert_int_equal(f->answers[0].code, PAY_CREATED);
    pump(f, 2);
    assert_int_equal(pay_outbox_backlog(f->pay), 0);
    assert_true(merchant_account(f).debits_posted == 30);
}

/* A recovery batch the driver could not send is made again at the next look. */
static void test_recovery_unsent_again(void **state) {
    fx_t *f = *state;
    merchant_cell(f);
    u128 p = xpay(f, 100);
    refund(f, p, 30, "r1", PAY_TRYING);
    f->clock += RELAY_CORE_RECOVER_AFTER_NS;
    recovery_batch(f, 1);
    relay_core_unsent(f->core, f->msgs[0].batch, "no client");
    assert_int_equal(relay_core_busy(f->core), 0);
    uint32_t decides = pump(f, RELAY_CORE_RECOVER_TICKS);
    assert_int_equal(decides, 1);
    assert_int_equal(pay_activities_trying(f->pay), 0);
    assert_int_equal(relay_core_stats(f->core).recovered, 1);
}

/* ---- Resolving orders left reserved (cell 2's relay, cell 1 the buyer's) ---- */

/* Cell 2's relay core, ticked with cell 2's state and clock. */
typedef struct mrelay {
    relay_core_t *core;
    uint64_t tick;
    relay_msg_t msgs[RELAY_CORE_BATCHES];
} mrelay_t;

static mrelay_t mrelay_create(uint32_t fault_pct) {
    mrelay_t m = {.core = relay_core_create(&(relay_core_config_t){
                      .cell_id = 2, .fault_pct = fault_pct, .fault_seed = 7})};
    assert_non_null(m.core);
    return m;
}

/* An order of cell 2 for BUYER (cell 1 named as the buyer's), body hash key + 100. */
static pay_object_t morder(fx_t *f, u128 amount, const char *otn, u128 key) {
    pay_request_t r = {.kind = PAY_KIND_ORDER,
                       .idem_key = key,
                       .body_hash = key + 100,
                       .actor = TO_CELL2,
                       .uid = BUYER,
                       .amount = amount,
                       .currency = cny(),
                       .funding = 1,
                       .peer_cell = 1};
    strcpy(r.text, otn);
    pay_object_t o;
    pay_apply(f->mpay, f->mledger, &f->mclock, &r, &o);
    assert_int_equal(o.code, PAY_CREATED);
    return o;
}

/* The gateway's payment of the order in cell 1 (the order's body hash): cell 1's answer. */
static uint8_t mpay_order(fx_t *f, const pay_object_t *o, u128 key) {
    pay_request_t r = {.kind = PAY_KIND_PAYMENT,
                       .payment_id = o->id,
                       .idem_key = o->id,
                       .body_hash = key + 100,
                       .actor = TO_CELL2,
                       .uid = BUYER,
                       .amount = o->amount,
                       .currency = cny(),
                       .funding = 1,
                       .peer_cell = 2};
    memcpy(r.text, o->text, PAY_TEXT_MAX);
    pay_object_t a;
    pay_apply(f->pay, f->ledger, &f->clock, &r, &a);
    return a.code;
}

/* Ticks cell 2's relay as leader, applying every message (resolves in cell 1, releases in
 * cell 2) and its follow-up; returns the resolve items sent. */
static uint32_t mpump(fx_t *f, mrelay_t *m, uint32_t ticks) {
    uint32_t resolves = 0;
    for (uint32_t t = 0; t < ticks; t++) {
        uint32_t n = relay_core_tick(m->core, ++m->tick, f->mclock, true, f->mpay, m->msgs,
                                     RELAY_CORE_BATCHES);
        for (uint32_t i = 0; i < n; i++) {
            relay_msg_t msg = m->msgs[i];
            for (;;) {
                for (uint32_t k = 0; k < msg.count; k++) {
                    assert_true(msg.items[k].kind == PAY_KIND_RESOLVE ? msg.cell == 1
                                                                      : msg.cell == 2);
                    resolves += msg.items[k].kind == PAY_KIND_RESOLVE;
                }
                cell_applies(f, &msg);
                relay_msg_t follow;
                if (!relay_core_answer(m->core, msg.batch, 0, f->answers, msg.count, &follow))
                    break;
                msg = follow;
            }
        }
    }
    return resolves;
}

static uint32_t stale_orders(const fx_t *f) {
    pay_order_stale_t s[8];
    return pay_orders_stale(f->mpay, f->mclock, RELAY_CORE_RECOVER_AFTER_NS, 0, s, 8);
}

static u128 buyer_balance(fx_t *f) {
    u128 id = pay_account_id(BUYER, PAY_ACCOUNT_USER, cny());
    ledger_account_t a;
    assert_int_equal(ledger_lookup_accounts(f->ledger, &id, 1, &a), 1);
    return a.credits_posted - a.debits_posted;
}

/* Three orders whose gateway died: one never paid, one paid (its credit not delivered yet),
 * one refused by cell 1. Nothing before recover_after; then one resolve batch to cell 1 and
 * the releases of the unpaid two (cancelled, insufficient_funds) to cell 2; the paid one stays
 * until its credit arrives. A late payment of the released order moves nothing. */
static void resolver_scenario(fx_t *f, mrelay_t *m, uint32_t look_ticks) {
    merchant_cell(f);
    pay_object_t unpaid = morder(f, 100, "u", 1);
    pay_object_t paid = morder(f, 200, "p", 2);
    pay_object_t refused = morder(f, 2000000000, "r", 3);
    assert_int_equal(mpay_order(f, &paid, 2), PAY_CREATED);
    assert_int_equal(mpay_order(f, &refused, 3), PAY_ERR_INSUFFICIENT_FUNDS);
    u128 balance = buyer_balance(f);
    f->mclock += RELAY_CORE_RECOVER_AFTER_NS - NS_PER_S; /* a second short */
    assert_int_equal(mpump(f, m, 3 * RELAY_CORE_RECOVER_TICKS), 0);
    f->mclock += 2 * NS_PER_S;
    assert_int_equal(stale_orders(f), 3);
    assert_true(mpump(f, m, look_ticks) >= 3);
    assert_int_equal(relay_core_stats(m->core).resolved, 2);
    assert_int_equal(stale_orders(f), 1); /* the paid one, waiting for its credit */
    /* The late payment of the released order: the tombstone, replayed; nothing moves. */
    assert_int_equal(mpay_order(f, &unpaid, 1), PAY_ERR_CANCELLED);
    assert_true(buyer_balance(f) == balance);
    /* Its out_trade_no is free again. */
    morder(f, 100, "u", 9);
    f->mclock += RELAY_CORE_RECOVER_AFTER_NS;
    /* Cell 1's relay delivers the paid one's credit: only the new order is left, and it is
     * resolved in turn. */
    pump(f, 2);
    assert_int_equal(stale_orders(f), 1);
    assert_true(mpump(f, m, look_ticks) >= 1);
    assert_int_equal(stale_orders(f), 0);
    assert_int_equal(mpump(f, m, 3 * RELAY_CORE_RECOVER_TICKS), 0);
    assert_int_equal(relay_core_stats(m->core).resolved, 3);
    assert_int_equal(relay_core_busy(m->core), 0);
}

static void test_resolver_releases_unpaid(void **state) {
    fx_t *f = *state;
    mrelay_t m = mrelay_create(0);
    resolver_scenario(f, &m, RELAY_CORE_RECOVER_TICKS);
    assert_int_equal(relay_core_stats(m.core).failures, 0);
    relay_core_destroy(m.core);
}

/* The same with faults on purpose (lost, duplicated, delayed batches and lost answers): more
 * looks, the same outcome, each order released once. */
static void test_resolver_faults(void **state) {
    fx_t *f = *state;
    mrelay_t m = mrelay_create(60);
    resolver_scenario(f, &m, 40 * RELAY_CORE_RECOVER_TICKS);
    assert_true(relay_core_stats(m.core).faults > 0);
    relay_core_destroy(m.core);
}

/* More stale orders than one look takes, the first look's worth all paid (their credits
 * not delivered): the looks go on after the last order taken, so the unpaid ones behind them
 * are released too, and the paid ones are never released. */
static void test_resolver_goes_past_one_look(void **state) {
    fx_t *f = *state;
    const uint32_t paid = RELAY_CORE_BATCH_MAX + 6, unpaid = 5;
    merchant_cell_sized(f, 2048);
    mrelay_t m = mrelay_create(0);
    char otn[16];
    for (uint32_t i = 0; i < paid + unpaid; i++) {
        snprintf(otn, sizeof otn, "o%u", i);
        pay_object_t o = morder(f, 1, otn, 1000 + i);
        if (i < paid) assert_int_equal(mpay_order(f, &o, 1000 + i), PAY_CREATED);
    }
    f->mclock += RELAY_CORE_RECOVER_AFTER_NS;
    mpump(f, &m, 4 * RELAY_CORE_RECOVER_TICKS);
    assert_int_equal(relay_core_stats(m.core).resolved, unpaid);
    pay_order_stale_t s[8];
    u128 last = 0;
    uint32_t left = 0, n;
    while ((n = pay_orders_stale(f->mpay, f->mclock, RELAY_CORE_RECOVER_AFTER_NS, last, s, 8))) {
        left += n;
        last = s[n - 1].payment_id;
    }
    assert_int_equal(left, paid); /* reserved, waiting for their credits */
    relay_core_destroy(m.core);
}

/* A resolve batch the driver could not send is made again at the next look; not before. */
static void test_resolver_unsent_again(void **state) {
    fx_t *f = *state;
    merchant_cell(f);
    mrelay_t m = mrelay_create(0);
    morder(f, 100, "u", 1);
    f->mclock += RELAY_CORE_RECOVER_AFTER_NS;
    uint32_t n = 0;
    for (uint32_t t = 0; t < 2 * RELAY_CORE_RECOVER_TICKS && n == 0; t++)
        n = relay_core_tick(m.core, ++m.tick, f->mclock, true, f->mpay, m.msgs, RELAY_CORE_BATCHES);
    assert_int_equal(n, 1);
    assert_int_equal(m.msgs[0].cell, 1);
    assert_int_equal(m.msgs[0].count, 1);
    const pay_request_t *q = &m.msgs[0].items[0];
    assert_int_equal(q->kind, PAY_KIND_RESOLVE);
    assert_true(q->actor == TO_CELL2 && q->uid == BUYER && q->peer_cell == 2 &&
                q->body_hash == 101 && q->idem_key == 0);
    relay_core_unsent(m.core, m.msgs[0].batch, "no client");
    assert_int_equal(relay_core_busy(m.core), 0);
    assert_int_equal(relay_core_stats(m.core).failures, 1);
    assert_int_equal(mpump(f, &m, RELAY_CORE_RECOVER_TICKS - 1), 0);
    assert_int_equal(mpump(f, &m, 1), 1);
    assert_int_equal(relay_core_stats(m.core).resolved, 1);
    assert_int_equal(stale_orders(f), 0);
    relay_core_destroy(m.core);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_batches_per_cell, setup, teardown),
        cmocka_unit_test_setup_teardown(test_credits_then_acks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_rests_then_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_item, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_term_starts_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_empty_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_voids_try, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_skips_decided, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_first_decision_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_unsent_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolver_releases_unpaid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolver_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolver_unsent_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolver_goes_past_one_look, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

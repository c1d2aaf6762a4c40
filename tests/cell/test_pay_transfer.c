/* User-to-user transfers (docs/cross-cell.md): within one cell, and across cells by TCC
 * between two payments states configured as two cells: the sender's cell A (cell 1, uids
 * 10..19) and the recipient's cell C (cell 2, uids 20..29). The test plays the gateway
 * (transfer, try, decide) and the relay: the real relay core (src/txn/relay_core.h) builds
 * and delivers the confirm / cancel records and their acks, and runs next to a hand-made
 * delivery with faults on purpose; the stale-activity recovery decides cancelled. Every crash
 * point is a row of test_crash_points' table, run with each way the transfer can go. */
#include <stdio.h>

#include "pay_test_util.h"
#include "txn/relay_core.h"

#define OBJS (PAY_LIST_MAX + 2)
#define CELL_A 1u
#define CELL_C 2u
#define SENDER 11u
#define LOCAL 12u /* a second user of A */
#define RECIP 21u
#define STALE_NS (60ull * 1000000000ull)
#define TIMEOUT_NS ((uint64_t)PAY_TCC_TRY_TIMEOUT_S * 1000000000ull)

typedef struct two {
    fx_t a, c;
} two_t;

/* A with SENDER (1000 CNY) and LOCAL; C with RECIP (a CNY account) when recipient. */
static void two_init(two_t *t, uint32_t cap, bool recipient) {
    pay_config_t pa = pay_test_cell_config(CELL_A, cap), pc = pay_test_cell_config(CELL_C, cap);
    fx_init(&t->a, &pa, 256);
    fx_init(&t->c, &pc, 256);
    pay_request_t r = rq_user(SENDER, CNY());
    fx_ok(&t->a, &r, PAY_KIND_USER, PAY_CREATED);
    r = rq_user(LOCAL, CNY());
    fx_ok(&t->a, &r, PAY_KIND_USER, PAY_CREATED);
    r = rq_topup(SENDER, CNY(), 1000);
    fx_ok(&t->a, &r, PAY_KIND_TOPUP, PAY_CREATED);
    if (!recipient) return;
    r = rq_user(RECIP, CNY());
    fx_ok(&t->c, &r, PAY_KIND_USER, PAY_CREATED);
}

static void two_free(two_t *t) {
    fx_free(&t->a);
    fx_free(&t->c);
}

/* ---- Balances ---- */

static u128 user_posted(const fx_t *f, uint64_t uid) {
    return fx_position(f, pay_account_id(uid, PAY_ACCOUNT_USER, CNY()));
}

static ledger_account_t user_account(const fx_t *f, uint64_t uid) {
    return fx_account(f, pay_account_id(uid, PAY_ACCOUNT_USER, CNY()));
}

static u128 clearing_net(const two_t *t) {
    return fx_position(&t->a, pay_clearing_account_id(CELL_C, CNY())) +
           fx_position(&t->c, pay_clearing_account_id(CELL_A, CNY()));
}

static pay_object_t query_transfer(const fx_t *f, u128 id) {
    pay_query_t q = {.kind = PAY_Q_TRANSFER, .id = id};
    pay_object_t out[OBJS];
    assert_int_equal(fx_query(f, &q, out), 1);
    return out[0];
}

/* ---- The gateway's and the relay's requests ---- */

static pay_request_t rq_transfer(uint64_t from, uint64_t to, u128 amount, uint32_t peer, u128 key) {
    return (pay_request_t){.kind = PAY_KIND_TRANSFER,
                           .uid = from,
                           .recipient = to,
                           .amount = amount,
                           .currency = CNY(),
                           .peer_cell = peer,
                           .idem_key = key,
                           .body_hash = key ? key + 7 : 0};
}

/* A step (try, confirm, cancel) of transfer T's branch in C, as the gateway sends the Try. */
static pay_request_t rq_xstep(uint8_t kind, u128 id, u128 amount) {
    return (pay_request_t){.kind = kind,
                           .uid = (uint64_t)(id >> 64),
                           .payment_id = id,
                           .amount = amount,
                           .currency = CNY(),
                           .peer_cell = CELL_A,
                           .tcc_type = PAY_TCC_TRANSFER,
                           .recipient = RECIP};
}

/* A's outbox record as a request, field by field as pay.h says the relay fills it. */
static pay_request_t rq_item(const pay_outbox_item_t *it) {
    assert_int_equal(it->tcc_type, PAY_TCC_TRANSFER);
    pay_request_t r = rq_xstep(it->kind, it->payment_id, it->amount);
    r.uid = it->buyer;
    r.recipient = it->recipient;
    r.currency = it->currency;
    return r;
}

/* The real relay core of A until A's outbox is empty: it builds the confirm / cancel items
 * from the records and the acks from the answers; every item is applied in its cell. */
static void relay_run(two_t *t) {
    static pay_object_t objs[RELAY_CORE_BATCH_MAX];
    relay_core_config_t cfg = {.cell_id = CELL_A};
    relay_core_t *core = relay_core_create(&cfg);
    assert_non_null(core);
    relay_msg_t msgs[RELAY_CORE_BATCHES];
    for (uint64_t tick = 1; tick < 400 && pay_outbox_backlog(t->a.pay) > 0; tick++) {
        uint32_t n =
            relay_core_tick(core, tick, t->a.clock, true, t->a.pay, msgs, RELAY_CORE_BATCHES);
        for (uint32_t i = 0; i < n; i++) {
            relay_msg_t m = msgs[i], follow;
            for (;;) {
                fx_t *to = m.cell == CELL_A ? &t->a : &t->c;
                assert_true(m.cell == CELL_A || m.cell == CELL_C);
                for (uint32_t k = 0; k < m.count; k++) objs[k] = fx_apply(to, &m.items[k]);
                if (!relay_core_answer(core, m.batch, 0, objs, m.count, &follow)) break;
                m = follow;
            }
        }
    }
    assert_int_equal(relay_core_busy(core), 0);
    relay_core_destroy(core);
    assert_int_equal(pay_outbox_backlog(t->a.pay), 0);
}

/* A's record of id (asserting there is one). */
static pay_outbox_item_t outbox_of(const two_t *t, u128 id) {
    pay_outbox_item_t items[16];
    uint32_t n = pay_outbox_pending(t->a.pay, 0, items, 16);
    for (uint32_t i = 0; i < n; i++)
        if (items[i].payment_id == id) return items[i];
    fail_msg("no outbox record");
    return items[0];
}

/* The relay's recovery in the initiating cell (fx_recover). */
static uint32_t recover(two_t *t) {
    return fx_recover(&t->a, STALE_NS, PAY_KIND_TRANSFER);
}

/* Nothing in flight, and the money where it belongs: per currency the two cells' accounts
 * still hold what A's bank put in (1000), clearing nets out, no pending transfer. */
static void assert_quiet(const two_t *t) {
    assert_int_equal(pay_activities_trying(t->a.pay), 0);
    assert_int_equal(pay_outbox_backlog(t->a.pay), 0);
    assert_int_equal(fx_pending_open(&t->a), 0);
    assert_int_equal(fx_pending_open(&t->c), 0);
    assert_true(clearing_net(t) == 0);
    assert_true(
        user_posted(&t->a, SENDER) + user_posted(&t->a, LOCAL) + user_posted(&t->c, RECIP) == 1000);
    assert_null(ledger_check_invariants(t->a.ledger));
    assert_null(ledger_check_invariants(t->c.ledger));
}

/* ---- Within one cell ---- */

static void test_local_transfer(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 16, true);
    pay_request_t r = rq_transfer(SENDER, LOCAL, 300, 0, 1);
    pay_object_t o = fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_CREATED);
    assert_true((uint64_t)(o.id >> 64) == SENDER);
    assert_int_equal(((uint64_t)o.id >> 40) & PAY_CELL_MAX, CELL_A);
    assert_true(o.amount == 300 && o.uid == SENDER && o.recipient == LOCAL && o.currency == CNY() &&
                o.peer_cell == 0 && o.merchant == 0);
    assert_int_equal(o.status, PAY_TRANSFER_SUCCEEDED);
    assert_true(user_posted(&t.a, SENDER) == 700 && user_posted(&t.a, LOCAL) == 300);
    /* One ledger transfer, sender -> recipient, coded as a transfer. */
    ledger_transfer_t lt;
    assert_int_equal(ledger_lookup_transfers(t.a.ledger, &o.id, 1, &lt), 1);
    assert_int_equal(lt.code, PAY_LEDGER_CODE_TRANSFER);
    assert_int_equal(lt.flags, 0);
    assert_true(lt.debit_account_id == pay_account_id(SENDER, PAY_ACCOUNT_USER, CNY()) &&
                lt.credit_account_id == pay_account_id(LOCAL, PAY_ACCOUNT_USER, CNY()));
    /* The replay: the same answer, nothing moves again; another body: conflict. */
    u128 ph = pay_state_hash(t.a.pay), lh = ledger_state_hash(t.a.ledger);
    pay_object_t again = fx_apply(&t.a, &r);
    assert_int_equal(again.replayed, 1);
    again.replayed = 0;
    assert_memory_equal(&again, &o, sizeof o);
    pay_request_t other = r;
    other.amount = 1;
    other.body_hash++;
    fx_ok(&t.a, &other, PAY_KIND_TRANSFER, PAY_ERR_IDEMPOTENCY_CONFLICT);
    assert_true(pay_state_hash(t.a.pay) == ph && ledger_state_hash(t.a.ledger) == lh);
    assert_true(user_posted(&t.a, SENDER) == 700 && user_posted(&t.a, LOCAL) == 300);
    pay_object_t q = query_transfer(&t.a, o.id);
    assert_int_equal(q.code, PAY_OK);
    q.code = PAY_CREATED;
    assert_memory_equal(&q, &o, sizeof o);
    /* The operator's only; routed by the sender. */
    pay_query_t mq = {.kind = PAY_Q_TRANSFER, .id = o.id, .actor = 99};
    pay_object_t out[OBJS];
    assert_int_equal(fx_query(&t.a, &mq, out), 1);
    fx_assert_code(&out[0], PAY_KIND_TRANSFER, PAY_ERR_NOT_FOUND);
    mq.actor = 0;
    assert_int_equal(fx_query(&t.c, &mq, out), 1);
    fx_assert_code(&out[0], PAY_KIND_TRANSFER, PAY_ERR_WRONG_CELL);
    /* Nobody decides or acknowledges a transfer within the cell. */
    pay_request_t d = rq_decide(o.id, PAY_ERR_CANCELLED);
    fx_ok(&t.a, &d, PAY_KIND_DECIDE, PAY_ERR_NOT_FOUND);
    pay_request_t a = rq_ack(o.id);
    fx_ok(&t.a, &a, PAY_KIND_ACK, PAY_ERR_NOT_FOUND);
    two_free(&t);
}

/* Each refusal is stored under the key (a repeat answers it, even once the cause is gone)
 * and moves nothing. */
static void test_local_refusals(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 32, true);
    pay_request_t u = rq_user(13, USD());
    fx_ok(&t.a, &u, PAY_KIND_USER, PAY_CREATED);
    /* LOCAL's balance 2000 short of overflowing (A's bank has lent 1000 already). */
    pay_request_t top = rq_topup(LOCAL, CNY(), U128_MAX - 2000);
    fx_ok(&t.a, &top, PAY_KIND_TOPUP, PAY_CREATED);
    struct {
        pay_request_t r;
        pay_code_t code;
    } cases[] = {
        {rq_transfer(14, LOCAL, 5, 0, 11), PAY_ERR_NOT_FOUND},          /* unknown sender */
        {rq_transfer(SENDER, 15, 5, 0, 12), PAY_ERR_NOT_FOUND},         /* unknown recipient */
        {rq_transfer(SENDER, 13, 5, 0, 13), PAY_ERR_CURRENCY_MISMATCH}, /* 13 has USD only */
        {rq_transfer(13, SENDER, 5, 0, 14), PAY_ERR_CURRENCY_MISMATCH},
        {rq_transfer(SENDER, LOCAL, 1001, 0, 15), PAY_ERR_INSUFFICIENT_FUNDS},
        {rq_transfer(SENDER, LOCAL, 2001, 0, 16), PAY_ERR_OVERFLOW},
        /* across cells, the sender's side is checked at once, nothing held */
        {rq_transfer(SENDER, RECIP, 1001, CELL_C, 17), PAY_ERR_INSUFFICIENT_FUNDS},
        {rq_transfer(14, RECIP, 5, CELL_C, 18), PAY_ERR_NOT_FOUND},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        u128 ph = pay_state_hash(t.a.pay), lh = ledger_state_hash(t.a.ledger);
        fx_ok(&t.a, &cases[i].r, PAY_KIND_TRANSFER, cases[i].code);
        assert_true(ledger_state_hash(t.a.ledger) == lh);
        assert_true(pay_state_hash(t.a.pay) != ph); /* the key's row */
        assert_int_equal(pay_activities_trying(t.a.pay), 0);
        pay_object_t again = fx_apply(&t.a, &cases[i].r);
        assert_int_equal(again.replayed, 1);
        fx_assert_code(&again, PAY_KIND_TRANSFER, cases[i].code);
    }
    /* The sender has the money now: the key still answers insufficient_funds. */
    pay_request_t more = rq_topup(SENDER, CNY(), 500);
    fx_ok(&t.a, &more, PAY_KIND_TOPUP, PAY_CREATED);
    pay_object_t again = fx_apply(&t.a, &cases[4].r);
    assert_int_equal(again.code, PAY_ERR_INSUFFICIENT_FUNDS);
    assert_true(user_posted(&t.a, SENDER) == 1500);
    two_free(&t);
}

/* Shapes and routes that are not a transfer the gateway sends: invalid or wrong_cell, never
 * stored, nothing changes. */
static void test_invalid(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 16, true);
    u128 ph = pay_state_hash(t.a.pay), lh = ledger_state_hash(t.a.ledger);
    pay_request_t r = rq_transfer(SENDER, SENDER, 5, 0, 1); /* to oneself */
    fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_ERR_INVALID);
    r = rq_transfer(SENDER, PAY_SYSTEM_UID, 5, 0, 1);
    fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_ERR_INVALID);
    r = rq_transfer(SENDER, LOCAL, 0, 0, 1);
    fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_ERR_INVALID);
    r = rq_transfer(SENDER, LOCAL, 5, 0, 1);
    r.actor = 99; /* a merchant may not move a user's money */
    fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_ERR_INVALID);
    r = rq_transfer(SENDER, LOCAL, 5, 0, 1);
    r.tcc_type = PAY_TCC_TRANSFER;
    fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_ERR_INVALID);
    r = rq_transfer(SENDER, LOCAL, 5, CELL_A, 1); /* its own cell named as the other */
    fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_ERR_INVALID);
    /* The route table disagrees with the zones: wrong_cell, not stored. */
    r = rq_transfer(SENDER, RECIP, 5, 0, 1); /* a recipient of another cell, said local */
    fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_ERR_WRONG_CELL);
    r = rq_transfer(SENDER, LOCAL, 5, CELL_C, 1); /* a local recipient, said elsewhere */
    fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_ERR_WRONG_CELL);
    r = rq_transfer(RECIP, LOCAL, 5, 0, 1); /* routed by the sender: not A's */
    fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_ERR_WRONG_CELL);
    assert_true(pay_state_hash(t.a.pay) == ph && ledger_state_hash(t.a.ledger) == lh);
    /* The key is free: the right request succeeds with it. */
    r = rq_transfer(SENDER, LOCAL, 5, 0, 1);
    fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_CREATED);

    r = rq_transfer(SENDER, RECIP, 5, CELL_C, 2);
    u128 id = fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_TRYING).id;
    /* Branch steps: the party is the recipient, no actor; the type must be known; routed by
     * the recipient; a decide's cancel code is a transfer Try's refusal. */
    u128 ch = pay_state_hash(t.c.pay);
    pay_request_t s = rq_xstep(PAY_KIND_TRY, id, 5);
    s.actor = 99;
    fx_ok(&t.c, &s, PAY_KIND_TRY, PAY_ERR_INVALID);
    s = rq_xstep(PAY_KIND_TRY, id, 5);
    s.tcc_type = 2;
    fx_ok(&t.c, &s, PAY_KIND_TRY, PAY_ERR_INVALID);
    s = rq_xstep(PAY_KIND_TRY, id, 5);
    s.tcc_type = PAY_TCC_REFUND; /* a refund's step names a merchant, not a recipient */
    fx_ok(&t.c, &s, PAY_KIND_TRY, PAY_ERR_INVALID);
    s = rq_xstep(PAY_KIND_TRY, id, 5);
    s.recipient = SENDER; /* the sender's own cell is not the recipient's */
    fx_ok(&t.a, &s, PAY_KIND_TRY, PAY_ERR_INVALID);
    s = rq_xstep(PAY_KIND_TRY, id, 5);
    fx_ok(&t.a, &s, PAY_KIND_TRY, PAY_ERR_WRONG_CELL); /* RECIP is C's */
    assert_true(pay_state_hash(t.c.pay) == ch);
    s = rq_xstep(PAY_KIND_TRY, id, 5);
    fx_ok(&t.c, &s, PAY_KIND_TRY, PAY_CREATED);
    ch = pay_state_hash(t.c.pay);
    /* The same T with other fields: not the branch the relay delivers. */
    pay_request_t bad = s;
    bad.amount = 6;
    fx_ok(&t.c, &bad, PAY_KIND_TRY, PAY_ERR_INVALID);
    bad = rq_xstep(PAY_KIND_CONFIRM, id, 5);
    bad.recipient = 22;
    fx_ok(&t.c, &bad, PAY_KIND_CONFIRM, PAY_ERR_INVALID);
    assert_true(pay_state_hash(t.c.pay) == ch);
    pay_request_t d = rq_decide(id, PAY_ERR_INSUFFICIENT_FUNDS); /* a refund Try's refusal */
    fx_ok(&t.a, &d, PAY_KIND_DECIDE, PAY_ERR_INVALID);
    d = rq_decide(id, PAY_OK);
    fx_ok(&t.c, &d, PAY_KIND_DECIDE, PAY_ERR_WRONG_CELL);
    fx_ok(&t.a, &d, PAY_KIND_TRANSFER, PAY_CREATED);
    relay_run(&t);
    assert_quiet(&t);
    two_free(&t);
}

/* The uids the gateway routes by: the sender for the transfer, its decide and query; the
 * recipient for its branch steps (a refund's: the merchant). */
static void test_routes(void **state) {
    (void)state;
    u128 id = ((u128)SENDER << 64) | ((u128)CELL_A << 40) | 5;
    pay_request_t r = rq_transfer(SENDER, RECIP, 5, CELL_C, 1);
    assert_int_equal(pay_request_route_uid(&r), SENDER);
    r = rq_decide(id, PAY_OK);
    assert_int_equal(pay_request_route_uid(&r), SENDER);
    r = rq_ack(id);
    assert_int_equal(pay_request_route_uid(&r), SENDER);
    uint8_t steps[3] = {PAY_KIND_TRY, PAY_KIND_CONFIRM, PAY_KIND_CANCEL};
    for (int i = 0; i < 3; i++) {
        r = rq_xstep(steps[i], id, 5);
        assert_int_equal(pay_request_route_uid(&r), RECIP);
        r.tcc_type = PAY_TCC_REFUND;
        r.actor = 99;
        assert_int_equal(pay_request_route_uid(&r), 99);
    }
    pay_query_t q = {.kind = PAY_Q_TRANSFER, .id = id, .uid = 1};
    assert_int_equal(pay_query_route_uid(&q), SENDER);
}

/* ---- Across cells ---- */

static void test_cross_cell_happy_path(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 16, true);
    pay_request_t r = rq_transfer(SENDER, RECIP, 300, CELL_C, 1);
    pay_object_t trying = fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_TRYING);
    u128 id = trying.id;
    assert_true((uint64_t)(id >> 64) == SENDER);
    assert_int_equal(((uint64_t)id >> 40) & PAY_CELL_MAX, CELL_A);
    assert_true(trying.amount == 300 && trying.uid == SENDER && trying.recipient == RECIP &&
                trying.currency == CNY() && trying.peer_cell == CELL_C);
    assert_int_equal(trying.status, PAY_TRANSFER_TRYING);
    /* The sender's money is held at once: pending T, sender -> clearing toward C. */
    ledger_account_t s = user_account(&t.a, SENDER);
    assert_true(s.debits_pending == 300 && s.debits_posted == 0);
    ledger_transfer_t lt;
    assert_int_equal(ledger_lookup_transfers(t.a.ledger, &id, 1, &lt), 1);
    assert_int_equal(lt.flags, LEDGER_TRANSFER_PENDING);
    assert_int_equal(lt.code, PAY_LEDGER_CODE_TRANSFER);
    assert_int_equal(lt.timeout, PAY_TCC_TRY_TIMEOUT_S);
    assert_true(lt.credit_account_id == pay_clearing_account_id(CELL_C, CNY()));
    pay_object_t again = fx_apply(&t.a, &r);
    assert_int_equal(again.replayed, 1);
    assert_int_equal(again.code, PAY_TRYING);
    assert_int_equal(query_transfer(&t.a, id).status, PAY_TRANSFER_TRYING);
    u128 stale[2];
    assert_int_equal(pay_activities_stale(t.a.pay, t.a.clock + STALE_NS, STALE_NS, stale, 2), 1);
    assert_true(stale[0] == id);

    /* The Try: a pending credit to the recipient, not available to it yet. */
    pay_request_t tr = rq_xstep(PAY_KIND_TRY, id, 300);
    pay_object_t tried = fx_ok(&t.c, &tr, PAY_KIND_TRY, PAY_CREATED);
    assert_true(tried.id == id && tried.amount == 300 && tried.uid == SENDER &&
                tried.recipient == RECIP && tried.merchant == 0 && tried.peer_cell == CELL_A);
    fx_ok(&t.c, &tr, PAY_KIND_TRY, PAY_OK);
    ledger_account_t rc = user_account(&t.c, RECIP);
    assert_true(rc.credits_pending == 300 && rc.credits_posted == 0);
    u128 leg = pay_leg_id(id);
    assert_int_equal(ledger_lookup_transfers(t.c.ledger, &leg, 1, &lt), 1);
    assert_int_equal(lt.flags, LEDGER_TRANSFER_PENDING);
    assert_int_equal(lt.code, PAY_LEDGER_CODE_TRANSFER_CREDIT);
    assert_int_equal(lt.timeout, PAY_TCC_TRY_TIMEOUT_S);
    assert_true(lt.debit_account_id == pay_clearing_account_id(CELL_A, CNY()));
    pay_query_t bq = {.kind = PAY_Q_BALANCE, .uid = RECIP, .currency = CNY()};
    pay_object_t bal[OBJS];
    fx_query(&t.c, &bq, bal);
    assert_true(bal[0].amount == 0);

    /* Decide confirm: the hold posted; the key answers the transfer now. */
    pay_request_t d = rq_decide(id, PAY_OK);
    pay_object_t done = fx_ok(&t.a, &d, PAY_KIND_TRANSFER, PAY_CREATED);
    assert_int_equal(done.status, PAY_TRANSFER_SUCCEEDED);
    assert_true(done.id == id && done.recipient == RECIP && done.amount == 300);
    s = user_account(&t.a, SENDER);
    assert_true(s.debits_pending == 0 && s.debits_posted == 300);
    again = fx_apply(&t.a, &r);
    assert_int_equal(again.replayed, 1);
    again.replayed = 0;
    assert_memory_equal(&again, &done, sizeof done);
    pay_request_t d2 = rq_decide(id, PAY_ERR_CANCELLED); /* the first decision wins */
    pay_object_t first = fx_ok(&t.a, &d2, PAY_KIND_TRANSFER, PAY_CREATED);
    assert_memory_equal(&first, &done, sizeof done);
    pay_object_t q = query_transfer(&t.a, id);
    assert_int_equal(q.status, PAY_TRANSFER_SUCCEEDED);
    assert_int_equal(q.merchant_credit, 1); /* C has not confirmed yet */
    /* The record names the recipient and the type; the recipient is credited only now. */
    pay_outbox_item_t it = outbox_of(&t, id);
    assert_int_equal(it.kind, PAY_KIND_CONFIRM);
    assert_int_equal(it.tcc_type, PAY_TCC_TRANSFER);
    assert_true(it.recipient == RECIP && it.buyer == SENDER && it.peer_cell == CELL_C &&
                it.amount == 300);
    assert_true(user_posted(&t.c, RECIP) == 0);
    relay_run(&t);
    assert_true(user_posted(&t.c, RECIP) == 300 && user_posted(&t.a, SENDER) == 700);
    assert_int_equal(query_transfer(&t.a, id).merchant_credit, 0);
    pay_request_t c = rq_xstep(PAY_KIND_CONFIRM, id, 300);
    fx_ok(&t.c, &c, PAY_KIND_CONFIRM, PAY_OK);
    pay_request_t x = rq_xstep(PAY_KIND_CANCEL, id, 300);
    fx_ok(&t.c, &x, PAY_KIND_CANCEL, PAY_ERR_INVALID); /* A decided once */
    assert_quiet(&t);
    assert_true(user_posted(&t.c, RECIP) == 300);
    two_free(&t);
}

/* The recipient's cell refuses the Try (recipient unknown, no account in the currency, its
 * balance would overflow); the cancel frees the sender's money. */
static void test_try_refused(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 16, false);
    pay_request_t r = rq_transfer(SENDER, RECIP, 100, CELL_C, 1);
    u128 id = fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_TRYING).id;
    pay_request_t tr = rq_xstep(PAY_KIND_TRY, id, 100);
    fx_ok(&t.c, &tr, PAY_KIND_TRY, PAY_ERR_NOT_FOUND);
    /* Stored on the branch: the same answer once the recipient exists. */
    pay_request_t u = rq_user(RECIP, USD());
    fx_ok(&t.c, &u, PAY_KIND_USER, PAY_CREATED);
    fx_ok(&t.c, &tr, PAY_KIND_TRY, PAY_ERR_NOT_FOUND);
    pay_request_t c = rq_xstep(PAY_KIND_CONFIRM, id, 100);
    fx_ok(&t.c, &c, PAY_KIND_CONFIRM, PAY_ERR_CANCELLED); /* nothing to post */
    pay_request_t d = rq_decide(id, PAY_ERR_NOT_FOUND);
    fx_ok(&t.a, &d, PAY_KIND_TRANSFER, PAY_ERR_NOT_FOUND);
    assert_true(user_account(&t.a, SENDER).debits_pending == 0);
    pay_object_t q = query_transfer(&t.a, id);
    assert_int_equal(q.status, PAY_TRANSFER_CANCELLED);
    assert_int_equal(q.cancel_code, PAY_ERR_NOT_FOUND);
    pay_object_t again = fx_apply(&t.a, &r);
    fx_assert_code(&again, PAY_KIND_TRANSFER, PAY_ERR_NOT_FOUND);
    relay_run(&t);
    assert_quiet(&t);
    assert_true(user_posted(&t.a, SENDER) == 1000);

    /* No account in the currency (RECIP has USD only). */
    r = rq_transfer(SENDER, RECIP, 100, CELL_C, 2);
    id = fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_TRYING).id;
    tr = rq_xstep(PAY_KIND_TRY, id, 100);
    fx_ok(&t.c, &tr, PAY_KIND_TRY, PAY_ERR_CURRENCY_MISMATCH);
    d = rq_decide(id, PAY_ERR_CURRENCY_MISMATCH);
    fx_ok(&t.a, &d, PAY_KIND_TRANSFER, PAY_ERR_CURRENCY_MISMATCH);
    /* Overflow of the recipient's balance. */
    u = rq_user(RECIP, CNY());
    fx_ok(&t.c, &u, PAY_KIND_USER, PAY_CREATED);
    pay_request_t top = rq_topup(RECIP, CNY(), U128_MAX - 50);
    fx_ok(&t.c, &top, PAY_KIND_TOPUP, PAY_CREATED);
    r = rq_transfer(SENDER, RECIP, 100, CELL_C, 3);
    id = fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_TRYING).id;
    tr = rq_xstep(PAY_KIND_TRY, id, 100);
    u128 lh = ledger_state_hash(t.c.ledger);
    fx_ok(&t.c, &tr, PAY_KIND_TRY, PAY_ERR_OVERFLOW);
    assert_true(ledger_state_hash(t.c.ledger) == lh);
    d = rq_decide(id, PAY_ERR_OVERFLOW);
    fx_ok(&t.a, &d, PAY_KIND_TRANSFER, PAY_ERR_OVERFLOW);
    relay_run(&t);
    assert_int_equal(fx_pending_open(&t.a), 0);
    assert_int_equal(fx_pending_open(&t.c), 0);
    assert_true(clearing_net(&t) == 0 && user_posted(&t.a, SENDER) == 1000);
    two_free(&t);
}

/* Cancel before any Try reaches C (empty rollback, remembered); the late Try is refused. */
static void test_empty_rollback(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 16, true);
    pay_request_t r = rq_transfer(SENDER, RECIP, 100, CELL_C, 1);
    u128 id = fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_TRYING).id;
    assert_int_equal(recover(&t), 1);
    assert_true(user_account(&t.a, SENDER).debits_pending == 0);
    u128 lh = ledger_state_hash(t.c.ledger);
    relay_run(&t);
    assert_true(ledger_state_hash(t.c.ledger) == lh);
    pay_request_t tr = rq_xstep(PAY_KIND_TRY, id, 100);
    fx_ok(&t.c, &tr, PAY_KIND_TRY, PAY_ERR_CANCELLED);
    fx_ok(&t.c, &tr, PAY_KIND_TRY, PAY_ERR_CANCELLED);
    assert_true(ledger_state_hash(t.c.ledger) == lh);
    pay_request_t c = rq_xstep(PAY_KIND_CONFIRM, id + 1, 100);
    fx_ok(&t.c, &c, PAY_KIND_CONFIRM, PAY_ERR_NOT_FOUND);
    assert_quiet(&t);
    assert_true(user_posted(&t.a, SENDER) == 1000 && user_posted(&t.c, RECIP) == 0);
    two_free(&t);
}

/* Holds expire: C's after its timeout (a Confirm then takes nothing; a Cancel is what the
 * ledger did), A's before anyone decided (a confirm is then decided cancelled). */
static void test_expiry(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 16, true);
    pay_request_t r = rq_transfer(SENDER, RECIP, 100, CELL_C, 1);
    u128 id = fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_TRYING).id;
    pay_request_t tr = rq_xstep(PAY_KIND_TRY, id, 100);
    fx_ok(&t.c, &tr, PAY_KIND_TRY, PAY_CREATED);
    t.c.clock += TIMEOUT_NS;
    assert_int_equal(ledger_expire(t.c.ledger, t.c.clock), 1);
    u128 ch = pay_state_hash(t.c.pay), lh = ledger_state_hash(t.c.ledger);
    pay_request_t c = rq_xstep(PAY_KIND_CONFIRM, id, 100);
    fx_ok(&t.c, &c, PAY_KIND_CONFIRM, PAY_ERR_CANCELLED);
    assert_true(pay_state_hash(t.c.pay) == ch && ledger_state_hash(t.c.ledger) == lh);
    pay_request_t d = rq_decide(id, PAY_ERR_CANCELLED);
    fx_ok(&t.a, &d, PAY_KIND_TRANSFER, PAY_ERR_CANCELLED);
    relay_run(&t);
    assert_true(ledger_state_hash(t.c.ledger) == lh);
    assert_quiet(&t);

    /* A's own hold expires (nobody decided for a day): a confirm finds nothing to post and
     * decides cancelled, and C's hold is voided by the Cancel. */
    r = rq_transfer(SENDER, RECIP, 100, CELL_C, 2);
    id = fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_TRYING).id;
    tr = rq_xstep(PAY_KIND_TRY, id, 100);
    fx_ok(&t.c, &tr, PAY_KIND_TRY, PAY_CREATED);
    t.a.clock += TIMEOUT_NS;
    d = rq_decide(id, PAY_OK);
    fx_ok(&t.a, &d, PAY_KIND_TRANSFER, PAY_ERR_CANCELLED);
    assert_int_equal(outbox_of(&t, id).kind, PAY_KIND_CANCEL);
    ledger_expire(t.a.ledger, t.a.clock);
    relay_run(&t);
    assert_quiet(&t);
    assert_true(user_posted(&t.a, SENDER) == 1000 && user_posted(&t.c, RECIP) == 0);
    two_free(&t);
}

/* Refunds and transfers share the TCC table, the outbox and the recovery. */
static void test_capacities(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 4, true);
    /* A's tcc table: 4 rows, a local transfer's and 3 activities'. */
    u128 id[3];
    pay_request_t l = rq_transfer(SENDER, LOCAL, 1, 0, 0);
    fx_ok(&t.a, &l, PAY_KIND_TRANSFER, PAY_CREATED);
    for (int i = 0; i < 3; i++) {
        pay_request_t r = rq_transfer(SENDER, RECIP, 10, CELL_C, 0);
        id[i] = fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_TRYING).id;
    }
    u128 ph = pay_state_hash(t.a.pay), lh = ledger_state_hash(t.a.ledger);
    pay_request_t r = rq_transfer(SENDER, RECIP, 10, CELL_C, 0);
    fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_ERR_FULL);
    fx_ok(&t.a, &l, PAY_KIND_TRANSFER, PAY_ERR_FULL);
    assert_true(pay_state_hash(t.a.pay) == ph && ledger_state_hash(t.a.ledger) == lh);
    assert_int_equal(pay_activities_trying(t.a.pay), 3);
    for (int i = 0; i < 3; i++) {
        pay_request_t tr = rq_xstep(PAY_KIND_TRY, id[i], 10);
        fx_ok(&t.c, &tr, PAY_KIND_TRY, PAY_CREATED);
        pay_request_t d = rq_decide(id[i], i ? PAY_OK : PAY_ERR_CANCELLED);
        fx_ok(&t.a, &d, PAY_KIND_TRANSFER, i ? PAY_CREATED : PAY_ERR_CANCELLED);
    }
    relay_run(&t);
    assert_quiet(&t);
    assert_true(user_posted(&t.a, SENDER) == 979 && user_posted(&t.c, RECIP) == 20);
    two_free(&t);
}

/* ---- Images ---- */

static void test_image(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 16, true);
    pay_request_t l = rq_transfer(SENDER, LOCAL, 5, 0, 9);
    fx_ok(&t.a, &l, PAY_KIND_TRANSFER, PAY_CREATED); /* A's row 0 */
    /* A's rows 1..5 and C's branches: 0 trying/tried; 1 confirming/tried; 2 confirmed;
     * 3 cancelling/refused (C's row 3); 4 cancelled by empty rollback. */
    u128 id[5];
    for (int i = 0; i < 5; i++) {
        uint64_t to = i == 3 ? 22 : RECIP; /* 22: unknown in C */
        pay_request_t r = rq_transfer(SENDER, to, 10 + (u128)i, CELL_C, (u128)i + 1);
        id[i] = fx_ok(&t.a, &r, PAY_KIND_TRANSFER, PAY_TRYING).id;
    }
    for (int i = 0; i < 4; i++) {
        pay_request_t tr = rq_xstep(PAY_KIND_TRY, id[i], 10 + (u128)i);
        if (i == 3) tr.recipient = 22;
        fx_ok(&t.c, &tr, PAY_KIND_TRY, i == 3 ? PAY_ERR_NOT_FOUND : PAY_CREATED);
    }
    pay_request_t d = rq_decide(id[2], PAY_OK);
    fx_ok(&t.a, &d, PAY_KIND_TRANSFER, PAY_CREATED);
    d = rq_decide(id[4], PAY_ERR_CANCELLED);
    fx_ok(&t.a, &d, PAY_KIND_TRANSFER, PAY_ERR_CANCELLED);
    relay_run(&t);
    d = rq_decide(id[1], PAY_OK);
    fx_ok(&t.a, &d, PAY_KIND_TRANSFER, PAY_CREATED);
    d = rq_decide(id[3], PAY_ERR_NOT_FOUND);
    fx_ok(&t.a, &d, PAY_KIND_TRANSFER, PAY_ERR_NOT_FOUND);
    fx_assert_image_same(&t.a);
    fx_assert_image_same(&t.c);
    /* Restarted A and C go on as the originals. */
    fx_restart(&t.a);
    fx_restart(&t.c);
    pay_object_t q = query_transfer(&t.a, id[1]);
    assert_int_equal(q.status, PAY_TRANSFER_SUCCEEDED);
    d = rq_decide(id[0], PAY_OK);
    fx_ok(&t.a, &d, PAY_KIND_TRANSFER, PAY_CREATED);
    relay_run(&t);
    assert_quiet(&t);
    assert_true(user_posted(&t.c, RECIP) == 10 + 11 + 12);
    /* Rows out of place are refused. Row bytes (192 each): peer_cell 116, role 124, state
     * 125, code 126, type 127. A: the local transfer's state and peer_cell, a transfer said a
     * refund, a cancelled one's refusal; C: a cancelled branch's code, a branch's cell, a
     * branch said an activity. (Nothing in a branch row tells its type from its ledger
     * transfer: the image is checked row by row, not against the ledger.) */
    static const uint32_t a_off[] = {125, 116, 192 + 127, 192 * 4 + 126};
    static const uint32_t c_off[] = {192 * 3 + 126, 116, 192 * 3 + 124};
    const char *err;
    for (size_t i = 0; i < sizeof a_off / sizeof a_off[0]; i++) {
        pay_t *copy = fx_image_copy(&t.a, &err, a_off[i]);
        assert_non_null(err);
        pay_destroy(copy);
    }
    for (size_t i = 0; i < sizeof c_off / sizeof c_off[0]; i++) {
        pay_t *copy = fx_image_copy(&t.c, &err, c_off[i]);
        assert_non_null(err);
        pay_destroy(copy);
    }
    /* Version 3 images are refused by name. */
    pay_image_header_t h;
    pay_image_header(t.a.pay, &h);
    h.magic = 0x334547414D594150ull;
    const char *why = pay_image_check(&h, &t.a.config);
    assert_non_null(why);
    assert_non_null(strstr(why, "version 3"));
    two_free(&t);
}

/* ---- Every crash point, table-driven ----
 *
 * As test_pay_tcc.c: a crash is what it does to the messages. A step's request lost (the
 * sender retries), its answer lost (the step runs twice), the step repeated, the gateway
 * dying before or after the step (the recovery in A decides a stale activity cancelled), the
 * Try delayed past the cancel's delivery (anti-hanging), and the cell that applied the step
 * restarting from its image right after it. Steps: the transfer (A), the Try (C), the decide
 * (A), the relay's delivery of the decision (C) and its ack (A). Each crash point runs with
 * every way the transfer can go (variant_t). After each run, once recovery and the relay
 * ran: nothing trying, no outbox record, no pending transfer in either ledger, clearing nets
 * out, the money per currency is what it was (sender + recipient = 1000), the sender is
 * debited and the recipient credited exactly when A decided confirm (never twice), the key
 * answers the decision (never trying) and the query shows it. */

typedef enum variant {
    V_CONFIRM,           /* Try created, the gateway confirms */
    V_UNKNOWN,           /* the recipient is unknown in C: Try refused, the gateway cancels */
    V_CANCEL_AFTER_TRY,  /* Try created, the gateway gives up: cancelled */
    V_CANCEL_BEFORE_TRY, /* the gateway cancels first, then its Try goes out */
    V_TIMEOUT,           /* Try created, C's hold expires before the gateway cancels */
    V_COUNT,
} variant_t;

/* The relay's first delivery and ack of a decision with the fault, by hand; then the real
 * relay core until idle. */
static void relay_faulty(two_t *t, const crash_t *c) {
    pay_outbox_item_t it;
    if (pay_outbox_pending(t->a.pay, 0, &it, 1) == 1) {
        pay_request_t r = rq_item(&it), a = rq_ack(it.payment_id);
        fault_t fd = c->step == S_DELIVER ? c->fault : F_NONE;
        fault_t fa = c->step == S_ACK ? c->fault : F_NONE;
        if (fd != F_REQ_LOST) {
            assert_true(fx_delivered(fx_apply(&t->c, &r).code));
            if (fd == F_REPEAT || fd == F_ANS_LOST)
                assert_true(fx_delivered(fx_apply(&t->c, &r).code));
            if (fd == F_RESTART) fx_restart(&t->c);
            if (fd != F_ANS_LOST && fa != F_REQ_LOST) {
                fx_ok(&t->a, &a, PAY_KIND_ACK, PAY_OK);
                if (fa == F_REPEAT) fx_ok(&t->a, &a, PAY_KIND_ACK, PAY_OK);
                if (fa == F_RESTART) fx_restart(&t->a);
            }
        }
    }
    relay_run(t);
}

typedef struct run {
    two_t t;
    fault_t f[S_COUNT];
    variant_t v;
    bool dead, confirmed, have_delayed;
    u128 id;
    pay_request_t delayed;
} run_t;

/* The gateway's Try; in V_TIMEOUT C's hold then expires (whether or not the gateway lives). */
static pay_object_t run_try(run_t *x) {
    pay_request_t tr = rq_xstep(PAY_KIND_TRY, x->id, 100);
    pay_object_t o = {0};
    if (x->f[S_TRY] == F_DELAYED) {
        x->delayed = tr;
        x->have_delayed = x->dead = true;
    } else {
        o = tcc_send(&x->t.c, &tr, x->f[S_TRY], &x->dead);
    }
    if (x->v == V_TIMEOUT) {
        x->t.c.clock += TIMEOUT_NS;
        ledger_expire(x->t.c.ledger, x->t.c.clock);
    }
    return o;
}

static void run_decide(run_t *x, pay_code_t code) {
    pay_request_t d = rq_decide(x->id, code);
    pay_object_t o = tcc_send(&x->t.a, &d, x->f[S_DECIDE], &x->dead);
    x->confirmed = code == PAY_OK && x->f[S_DECIDE] != F_DIE_BEFORE;
    if (x->f[S_DECIDE] == F_DIE_BEFORE) return;
    fx_assert_code(&o, PAY_KIND_TRANSFER, x->confirmed ? PAY_CREATED : code);
}

/* The gateway's steps after the trying answer, in the variant's order. */
static void run_gateway(run_t *x) {
    if (x->v == V_CANCEL_BEFORE_TRY) {
        run_decide(x, PAY_ERR_CANCELLED);
        if (x->dead) return;
        pay_object_t o = run_try(x);
        /* The cancel is not delivered yet: C holds, and the relay's Cancel voids it. */
        if (!x->dead) assert_true(fx_delivered(o.code));
        return;
    }
    pay_object_t o = run_try(x);
    if (x->dead) return;
    pay_code_t code = fx_delivered(o.code) ? PAY_OK : (pay_code_t)o.code;
    assert_int_equal(code, x->v == V_UNKNOWN ? PAY_ERR_NOT_FOUND : PAY_OK);
    run_decide(x, x->v == V_CONFIRM ? PAY_OK : x->v == V_UNKNOWN ? code : PAY_ERR_CANCELLED);
}

static void crash_run(const crash_t *c, variant_t v) {
    run_t x = {.v = v};
    two_init(&x.t, 16, v != V_UNKNOWN);
    x.f[c->step] = c->fault;
    pay_request_t tr = rq_transfer(SENDER, RECIP, 100, CELL_C, 1);
    pay_object_t o = tcc_send(&x.t.a, &tr, x.f[S_START], &x.dead);
    bool applied = x.f[S_START] != F_DIE_BEFORE;
    if (applied) {
        fx_assert_code(&o, PAY_KIND_TRANSFER, PAY_TRYING);
        x.id = o.id;
        assert_true(user_account(&x.t.a, SENDER).debits_pending == 100);
    }
    if (!x.dead) run_gateway(&x);
    relay_faulty(&x.t, c);
    recover(&x.t);
    relay_run(&x.t);
    if (x.have_delayed) {
        u128 lh = ledger_state_hash(x.t.c.ledger);
        fx_ok(&x.t.c, &x.delayed, PAY_KIND_TRY, PAY_ERR_CANCELLED);
        assert_true(ledger_state_hash(x.t.c.ledger) == lh);
    }
    assert_quiet(&x.t);
    u128 moved = x.confirmed ? 100 : 0;
    assert_true(user_posted(&x.t.a, SENDER) == 1000 - moved);
    assert_true(user_posted(&x.t.c, RECIP) == moved);
    if (applied) {
        pay_object_t k = fx_apply(&x.t.a, &tr);
        assert_int_equal(k.replayed, 1);
        assert_int_not_equal(k.code, PAY_TRYING);
        assert_int_equal(k.code == PAY_CREATED, x.confirmed);
        pay_object_t q = query_transfer(&x.t.a, x.id);
        assert_int_equal(q.code, PAY_OK);
        assert_int_equal(q.status, x.confirmed ? PAY_TRANSFER_SUCCEEDED : PAY_TRANSFER_CANCELLED);
        assert_int_equal(q.merchant_credit, 0);
    }
    two_free(&x.t);
}

static void test_crash_points(void **state) {
    (void)state;
    size_t n;
    const crash_t *crash_points = tcc_crash_points(&n);
    for (size_t i = 0; i < n; i++)
        for (int v = 0; v < V_COUNT; v++) crash_run(&crash_points[i], (variant_t)v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_transfer),
        cmocka_unit_test(test_local_refusals),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_cross_cell_happy_path),
        cmocka_unit_test(test_try_refused),
        cmocka_unit_test(test_empty_rollback),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_capacities),
        cmocka_unit_test(test_image),
        cmocka_unit_test(test_crash_points),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

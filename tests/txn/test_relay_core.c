/* The relay's core (src/txn/relay_core.h), step by step: a buyer's cell (cell 1) with
 * cross-cell payments toward cells 2 and 3 in its outbox, and the answers the merchants'
 * cells and its own cell would give, written by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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
    return relay_core_tick(f->core, ++f->tick, leader, f->pay, f->msgs, RELAY_CORE_BATCHES);
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_batches_per_cell, setup, teardown),
        cmocka_unit_test_setup_teardown(test_credits_then_acks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_rests_then_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_item, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_term_starts_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsent, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

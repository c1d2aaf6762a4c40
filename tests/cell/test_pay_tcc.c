/* Refunds of cross-cell payments by TCC (docs/cross-cell.md) between two payments states
 * configured as two cells: the merchant's cell M (cell 1, uids 10..19) and the buyer's cell B
 * (cell 2, uids 20..29). The test plays the gateway (refund, try, decide) and the relay
 * (confirm / cancel deliveries, acks, the stale-activity recovery). Every crash point of the
 * initiator and the participant is a row of test_crash_points' table. */
#include <stdio.h>

#include "pay_test_util.h"

#define OBJS (PAY_LIST_MAX + 2)
#define CELL_M 1u
#define CELL_B 2u
#define MERCHANT 11u
#define BUYER 21u
#define STALE_NS (60ull * 1000000000ull) /* the recovery's "older than": one minute */

typedef struct two {
    fx_t m, b;
} two_t;

static void two_init_cap(two_t *t, uint32_t cap) {
    pay_config_t pm = pay_test_cell_config(CELL_M, cap), pb = pay_test_cell_config(CELL_B, cap);
    fx_init(&t->m, &pm, 256);
    fx_init(&t->b, &pb, 256);
    pay_request_t r = rq_merchant(MERCHANT, 1);
    fx_ok(&t->m, &r, PAY_KIND_MERCHANT, PAY_CREATED);
    r = rq_user(BUYER, CNY());
    fx_ok(&t->b, &r, PAY_KIND_USER, PAY_CREATED);
    r = rq_topup(BUYER, CNY(), 1000);
    fx_ok(&t->b, &r, PAY_KIND_TOPUP, PAY_CREATED);
}

static void two_init(two_t *t) {
    two_init_cap(t, 16);
}

static void two_free(two_t *t) {
    fx_free(&t->m);
    fx_free(&t->b);
}

/* ---- Balances ---- */

static u128 receivable(const fx_t *f) {
    return fx_position(f, pay_account_id(MERCHANT, PAY_ACCOUNT_MERCHANT, CNY()));
}

static u128 receivable_pending(const fx_t *f) {
    return fx_account(f, pay_account_id(MERCHANT, PAY_ACCOUNT_MERCHANT, CNY())).debits_pending;
}

static u128 buyer(const fx_t *f) {
    return fx_position(f, pay_account_id(BUYER, PAY_ACCOUNT_USER, CNY()));
}

static u128 clearing_net(const two_t *t) {
    return fx_position(&t->b, pay_clearing_account_id(CELL_M, CNY())) +
           fx_position(&t->m, pay_clearing_account_id(CELL_B, CNY()));
}

static pay_object_t query(const fx_t *f, uint8_t kind, u128 id) {
    pay_query_t q = {.kind = kind, .id = id};
    pay_object_t out[OBJS];
    assert_int_equal(fx_query(f, &q, out), 1);
    return out[0];
}

/* ---- The gateway's and the relay's requests ---- */

/* A cross-cell payment of amount by BUYER to MERCHANT; credited (delivered and acked) when
 * credit. Returns the payment id. */
static u128 xpay(two_t *t, u128 amount, const char *otn, bool credit) {
    static u128 key = 1000;
    pay_request_t r = {.kind = PAY_KIND_ORDER,
                       .actor = MERCHANT,
                       .uid = BUYER,
                       .currency = CNY(),
                       .amount = amount,
                       .funding = 1,
                       .idem_key = ++key,
                       .body_hash = 1};
    snprintf(r.text, sizeof r.text, "%s", otn);
    pay_object_t order = fx_ok(&t->m, &r, PAY_KIND_ORDER, PAY_CREATED);
    r.kind = PAY_KIND_PAYMENT;
    r.payment_id = r.idem_key = order.id;
    r.peer_cell = CELL_M;
    fx_ok(&t->b, &r, PAY_KIND_PAYMENT, PAY_CREATED);
    if (!credit) return order.id;
    pay_request_t c = {.kind = PAY_KIND_CREDIT,
                       .actor = MERCHANT,
                       .uid = BUYER,
                       .payment_id = order.id,
                       .amount = amount,
                       .currency = CNY(),
                       .peer_cell = CELL_B};
    fx_ok(&t->m, &c, PAY_KIND_CREDIT, PAY_CREATED);
    pay_request_t a = {.kind = PAY_KIND_ACK, .uid = BUYER, .payment_id = order.id};
    fx_ok(&t->b, &a, PAY_KIND_ACK, PAY_OK);
    return order.id;
}

static pay_request_t rq_xrefund(u128 payment, u128 amount, const char *orn, u128 key) {
    pay_request_t r = {
        .kind = PAY_KIND_REFUND, .actor = MERCHANT, .payment_id = payment, .amount = amount};
    snprintf(r.text, sizeof r.text, "%s", orn);
    r.peer_cell = CELL_M;
    r.idem_key = key;
    r.body_hash = key ? key + 7 : 0;
    return r;
}

/* A branch step (try, confirm, cancel) of the activity R of amount. */
static pay_request_t rq_step(uint8_t kind, u128 r, u128 amount) {
    return (pay_request_t){.kind = kind,
                           .actor = MERCHANT,
                           .uid = (uint64_t)(r >> 64),
                           .payment_id = r,
                           .amount = amount,
                           .currency = CNY(),
                           .peer_cell = CELL_B};
}

/* The relay's request for an outbox item. */
static pay_request_t rq_item(const pay_outbox_item_t *it) {
    pay_request_t r = rq_step(it->kind, it->payment_id, it->amount);
    r.actor = it->merchant;
    r.uid = it->buyer;
    r.currency = it->currency;
    return r;
}

/* B's outbox record of id (asserting there is one). */
static pay_outbox_item_t outbox_of(const two_t *t, u128 id) {
    pay_outbox_item_t items[64];
    uint32_t n = pay_outbox_pending(t->b.pay, 0, items, 64);
    for (uint32_t i = 0; i < n; i++)
        if (items[i].payment_id == id) return items[i];
    fail_msg("no outbox record");
    return items[0];
}

/* The relay until B's outbox is empty: every record delivered to M, acked in B. */
static void relay_run(two_t *t) {
    pay_outbox_item_t items[64];
    for (int round = 0; round < 8 && pay_outbox_backlog(t->b.pay) > 0; round++) {
        uint32_t n = pay_outbox_pending(t->b.pay, 0, items, 64);
        for (uint32_t i = 0; i < n; i++) {
            pay_request_t r = rq_item(&items[i]);
            pay_object_t o = fx_apply(&t->m, &r);
            assert_true(fx_delivered(o.code));
            pay_request_t a = rq_ack(items[i].payment_id);
            fx_ok(&t->b, &a, PAY_KIND_ACK, PAY_OK);
        }
    }
    assert_int_equal(pay_outbox_backlog(t->b.pay), 0);
}

/* The relay's recovery in the initiating cell (fx_recover). */
static uint32_t recover(two_t *t) {
    return fx_recover(&t->b, STALE_NS, PAY_KIND_REFUND);
}

/* Nothing in flight: no trying activity, no outbox record, no pending transfer, clearing
 * nets out, and the payment's refunded is what its refunds add up to. */
static void assert_quiet(const two_t *t) {
    assert_int_equal(pay_activities_trying(t->b.pay), 0);
    assert_int_equal(pay_outbox_backlog(t->b.pay), 0);
    assert_int_equal(fx_pending_open(&t->m), 0);
    assert_int_equal(fx_pending_open(&t->b), 0);
    assert_true(clearing_net(t) == 0);
    assert_null(ledger_check_invariants(t->m.ledger));
    assert_null(ledger_check_invariants(t->b.ledger));
}

/* ---- Unit tests ---- */

static void test_happy_path(void **state) {
    (void)state;
    two_t t;
    two_init(&t);
    u128 p = xpay(&t, 500, "o1", true);
    assert_true(buyer(&t.b) == 500 && receivable(&t.m) == 500);
    pay_request_t rf = rq_xrefund(p, 120, "r1", 1);
    pay_object_t trying = fx_ok(&t.b, &rf, PAY_KIND_REFUND, PAY_TRYING);
    u128 r = trying.id;
    /* R: a refund id of B's drawing for the buyer. */
    assert_true((uint64_t)(r >> 64) == BUYER);
    assert_int_equal(((uint64_t)r >> 40) & PAY_CELL_MAX, CELL_B);
    assert_true(trying.payment_id == p && trying.amount == 120 && trying.uid == BUYER &&
                trying.merchant == MERCHANT && trying.currency == CNY() &&
                trying.peer_cell == CELL_M);
    assert_string_equal(trying.text, "r1");
    /* Held, nothing moved; the key replays the trying answer. */
    assert_true(query(&t.b, PAY_Q_PAYMENT, p).refunded == 120);
    assert_true(buyer(&t.b) == 500);
    pay_object_t again = fx_apply(&t.b, &rf);
    assert_int_equal(again.replayed, 1);
    assert_int_equal(again.code, PAY_TRYING);
    assert_int_equal(query(&t.b, PAY_Q_REFUND, r).code, PAY_ERR_NOT_FOUND);

    pay_request_t tr = rq_step(PAY_KIND_TRY, r, 120);
    pay_object_t tried = fx_ok(&t.m, &tr, PAY_KIND_TRY, PAY_CREATED);
    assert_true(tried.id == r && tried.amount == 120 && tried.peer_cell == CELL_B);
    /* The pending transfer leg(R): merchant -> clearing toward B, with its timeout. */
    assert_true(receivable(&t.m) == 500 && receivable_pending(&t.m) == 120);
    u128 leg = pay_leg_id(r);
    ledger_transfer_t lt;
    assert_int_equal(ledger_lookup_transfers(t.m.ledger, &leg, 1, &lt), 1);
    assert_int_equal(lt.flags, LEDGER_TRANSFER_PENDING);
    assert_int_equal(lt.code, PAY_LEDGER_CODE_REFUND_TRY);
    assert_int_equal(lt.timeout, PAY_TCC_TRY_TIMEOUT_S);
    assert_true(lt.credit_account_id == pay_clearing_account_id(CELL_B, CNY()));
    assert_int_equal(fx_pending_open(&t.m), 1);

    pay_request_t d = rq_decide(r, PAY_OK);
    pay_object_t refund = fx_ok(&t.b, &d, PAY_KIND_REFUND, PAY_CREATED);
    assert_true(refund.id == r && refund.amount == 120 && refund.payment_id == p);
    assert_true(buyer(&t.b) == 620);
    assert_true(fx_position(&t.b, pay_clearing_account_id(CELL_M, CNY())) == 500 - 120);
    u128 rid = r;
    assert_int_equal(ledger_lookup_transfers(t.b.ledger, &rid, 1, &lt), 1);
    assert_int_equal(lt.code, PAY_LEDGER_CODE_REFUND);
    assert_true(lt.user_data_128 == p);
    /* The key answers the refund now, byte for byte the decision's answer. */
    again = fx_apply(&t.b, &rf);
    assert_int_equal(again.replayed, 1);
    again.replayed = 0;
    assert_memory_equal(&again, &refund, sizeof again);
    pay_object_t q = query(&t.b, PAY_Q_REFUND, r);
    assert_int_equal(q.code, PAY_OK);
    assert_true(q.amount == 120);

    /* The confirm record, delivered: the pending transfer posted. */
    pay_outbox_item_t it;
    assert_int_equal(pay_outbox_pending(t.b.pay, 0, &it, 1), 1);
    assert_int_equal(it.kind, PAY_KIND_CONFIRM);
    assert_true(it.payment_id == r && it.amount == 120 && it.merchant == MERCHANT &&
                it.buyer == BUYER && it.peer_cell == CELL_M);
    pay_request_t c = rq_item(&it);
    fx_ok(&t.m, &c, PAY_KIND_CONFIRM, PAY_CREATED);
    assert_true(receivable(&t.m) == 380 && receivable_pending(&t.m) == 0);
    u128 p2 = pay_tcc_phase2_id(r);
    assert_int_equal(ledger_lookup_transfers(t.m.ledger, &p2, 1, &lt), 1);
    assert_int_equal(lt.flags, LEDGER_TRANSFER_POST_PENDING);
    fx_ok(&t.m, &c, PAY_KIND_CONFIRM, PAY_OK);
    pay_request_t a = rq_ack(r);
    fx_ok(&t.b, &a, PAY_KIND_ACK, PAY_OK);
    fx_ok(&t.b, &a, PAY_KIND_ACK, PAY_OK);
    assert_quiet(&t);
    /* Exactly: the buyer has 620, the merchant 380, of the 1000 topped up. */
    assert_true(buyer(&t.b) == 620 && receivable(&t.m) == 380);
    /* The out_request_no is the refund's now. */
    pay_request_t dup = rq_xrefund(p, 1, "r1", 2);
    fx_ok(&t.b, &dup, PAY_KIND_REFUND, PAY_ERR_DUPLICATE_OUT_REQUEST_NO);
    two_free(&t);
}

static void test_merchant_without_funds(void **state) {
    (void)state;
    two_t t;
    two_init(&t);
    u128 p1 = xpay(&t, 100, "o1", true);
    u128 p2 = xpay(&t, 400, "o2", false); /* not credited: the merchant has 100 */
    (void)p1;
    pay_request_t rf = rq_xrefund(p2, 300, "r", 1);
    u128 r = fx_ok(&t.b, &rf, PAY_KIND_REFUND, PAY_TRYING).id;
    pay_request_t tr = rq_step(PAY_KIND_TRY, r, 300);
    u128 mh = ledger_state_hash(t.m.ledger);
    fx_ok(&t.m, &tr, PAY_KIND_TRY, PAY_ERR_INSUFFICIENT_FUNDS);
    assert_true(ledger_state_hash(t.m.ledger) == mh); /* nothing reached the ledger */
    fx_ok(&t.m, &tr, PAY_KIND_TRY, PAY_ERR_INSUFFICIENT_FUNDS);
    pay_request_t d = rq_decide(r, PAY_ERR_INSUFFICIENT_FUNDS);
    fx_ok(&t.b, &d, PAY_KIND_REFUND, PAY_ERR_INSUFFICIENT_FUNDS);
    /* The hold released, the out_request_no free, the key answers the refusal. */
    assert_true(query(&t.b, PAY_Q_PAYMENT, p2).refunded == 0);
    pay_object_t again = fx_apply(&t.b, &rf);
    assert_int_equal(again.replayed, 1);
    fx_assert_code(&again, PAY_KIND_REFUND, PAY_ERR_INSUFFICIENT_FUNDS);
    /* A repeated decide answers the first decision, whatever it asks. */
    pay_request_t d2 = rq_decide(r, PAY_OK);
    fx_ok(&t.b, &d2, PAY_KIND_REFUND, PAY_ERR_INSUFFICIENT_FUNDS);
    pay_outbox_item_t it = outbox_of(&t, r);
    assert_int_equal(it.kind, PAY_KIND_CANCEL);
    /* A confirm of a refused branch makes no money. */
    pay_request_t c = rq_step(PAY_KIND_CONFIRM, r, 300);
    fx_ok(&t.m, &c, PAY_KIND_CONFIRM, PAY_ERR_CANCELLED);
    relay_run(&t); /* the cancel, and the credit of p2 */
    assert_quiet(&t);
    assert_true(buyer(&t.b) == 500 && receivable(&t.m) == 500);
    pay_request_t rf2 = rq_xrefund(p2, 50, "r", 2);
    pay_object_t t2 = fx_ok(&t.b, &rf2, PAY_KIND_REFUND, PAY_TRYING);
    assert_true(t2.id != r);
    two_free(&t);
}

static void test_idempotent_steps(void **state) {
    (void)state;
    two_t t;
    two_init(&t);
    u128 p = xpay(&t, 500, "o1", true);
    pay_request_t rf = rq_xrefund(p, 100, "r", 1);
    u128 r = fx_ok(&t.b, &rf, PAY_KIND_REFUND, PAY_TRYING).id;
    pay_request_t tr = rq_step(PAY_KIND_TRY, r, 100);
    fx_ok(&t.m, &tr, PAY_KIND_TRY, PAY_CREATED);
    u128 mh = pay_state_hash(t.m.pay), lh = ledger_state_hash(t.m.ledger);
    fx_ok(&t.m, &tr, PAY_KIND_TRY, PAY_OK);
    assert_true(pay_state_hash(t.m.pay) == mh && ledger_state_hash(t.m.ledger) == lh);
    /* A Try naming another amount for R is not the relay's. */
    pay_request_t other = rq_step(PAY_KIND_TRY, r, 101);
    fx_ok(&t.m, &other, PAY_KIND_TRY, PAY_ERR_INVALID);
    pay_request_t d = rq_decide(r, PAY_OK);
    pay_object_t first = fx_ok(&t.b, &d, PAY_KIND_REFUND, PAY_CREATED);
    u128 bh = pay_state_hash(t.b.pay);
    pay_object_t second = fx_apply(&t.b, &d);
    assert_memory_equal(&first, &second, sizeof first);
    pay_request_t cancel_now = rq_decide(r, PAY_ERR_CANCELLED);
    second = fx_apply(&t.b, &cancel_now);
    assert_memory_equal(&first, &second, sizeof first);
    assert_true(pay_state_hash(t.b.pay) == bh);
    pay_request_t c = rq_step(PAY_KIND_CONFIRM, r, 100);
    fx_ok(&t.m, &c, PAY_KIND_CONFIRM, PAY_CREATED);
    mh = pay_state_hash(t.m.pay);
    lh = ledger_state_hash(t.m.ledger);
    fx_ok(&t.m, &c, PAY_KIND_CONFIRM, PAY_OK);
    fx_ok(&t.m, &tr, PAY_KIND_TRY, PAY_OK); /* a late Try repeat after the confirm */
    /* A cancel of a confirmed branch: the money moved in both cells; refused. */
    pay_request_t x = rq_step(PAY_KIND_CANCEL, r, 100);
    fx_ok(&t.m, &x, PAY_KIND_CANCEL, PAY_ERR_INVALID);
    assert_true(pay_state_hash(t.m.pay) == mh && ledger_state_hash(t.m.ledger) == lh);
    relay_run(&t);
    assert_quiet(&t);

    /* Cancel twice, after a Try: voided once. */
    pay_request_t rf2 = rq_xrefund(p, 50, "r2", 2);
    u128 r2 = fx_ok(&t.b, &rf2, PAY_KIND_REFUND, PAY_TRYING).id;
    tr = rq_step(PAY_KIND_TRY, r2, 50);
    fx_ok(&t.m, &tr, PAY_KIND_TRY, PAY_CREATED);
    assert_true(receivable_pending(&t.m) == 50);
    d = rq_decide(r2, PAY_ERR_CANCELLED);
    fx_ok(&t.b, &d, PAY_KIND_REFUND, PAY_ERR_CANCELLED);
    x = rq_step(PAY_KIND_CANCEL, r2, 50);
    fx_ok(&t.m, &x, PAY_KIND_CANCEL, PAY_CREATED);
    assert_true(receivable_pending(&t.m) == 0 && receivable(&t.m) == 400);
    u128 p2 = pay_tcc_phase2_id(r2);
    ledger_transfer_t lt;
    assert_int_equal(ledger_lookup_transfers(t.m.ledger, &p2, 1, &lt), 1);
    assert_int_equal(lt.flags, LEDGER_TRANSFER_VOID_PENDING);
    fx_ok(&t.m, &x, PAY_KIND_CANCEL, PAY_OK);
    fx_ok(&t.m, &tr, PAY_KIND_TRY, PAY_ERR_CANCELLED);
    c = rq_step(PAY_KIND_CONFIRM, r2, 50);
    fx_ok(&t.m, &c, PAY_KIND_CONFIRM, PAY_ERR_CANCELLED);
    relay_run(&t);
    assert_quiet(&t);
    assert_true(buyer(&t.b) == 600 && receivable(&t.m) == 400);
    two_free(&t);
}

static void test_empty_rollback(void **state) {
    (void)state;
    two_t t;
    two_init(&t);
    u128 p = xpay(&t, 500, "o1", true);
    pay_request_t rf = rq_xrefund(p, 100, "r", 1);
    u128 r = fx_ok(&t.b, &rf, PAY_KIND_REFUND, PAY_TRYING).id;
    /* The gateway dies before the Try; its Try is still in flight. */
    assert_int_equal(recover(&t), 1);
    pay_object_t again = fx_apply(&t.b, &rf);
    fx_assert_code(&again, PAY_KIND_REFUND, PAY_ERR_CANCELLED);
    u128 ledger_before = ledger_state_hash(t.m.ledger);
    relay_run(&t); /* the cancel reaches M first: empty rollback */
    assert_true(ledger_state_hash(t.m.ledger) == ledger_before);
    u128 mh = pay_state_hash(t.m.pay);
    pay_request_t x = rq_step(PAY_KIND_CANCEL, r, 100);
    fx_ok(&t.m, &x, PAY_KIND_CANCEL, PAY_OK);
    /* The late Try: refused for good (anti-hanging), nothing moves. */
    pay_request_t tr = rq_step(PAY_KIND_TRY, r, 100);
    fx_ok(&t.m, &tr, PAY_KIND_TRY, PAY_ERR_CANCELLED);
    fx_ok(&t.m, &tr, PAY_KIND_TRY, PAY_ERR_CANCELLED);
    assert_true(ledger_state_hash(t.m.ledger) == ledger_before);
    assert_true(pay_state_hash(t.m.pay) == mh);
    /* A confirm that finds no Try at all: refused, nothing made. */
    pay_request_t c = rq_step(PAY_KIND_CONFIRM, r + 1, 100);
    fx_ok(&t.m, &c, PAY_KIND_CONFIRM, PAY_ERR_NOT_FOUND);
    assert_true(ledger_state_hash(t.m.ledger) == ledger_before);
    assert_quiet(&t);
    assert_true(buyer(&t.b) == 500 && receivable(&t.m) == 500);
    assert_true(query(&t.b, PAY_Q_PAYMENT, p).refunded == 0);
    two_free(&t);
}

static void test_limits_across_trying(void **state) {
    (void)state;
    two_t t;
    two_init(&t);
    u128 p = xpay(&t, 500, "o1", true);
    pay_request_t a = rq_xrefund(p, 300, "a", 1), b = rq_xrefund(p, 200, "b", 2),
                  c = rq_xrefund(p, 1, "c", 3);
    u128 ra = fx_ok(&t.b, &a, PAY_KIND_REFUND, PAY_TRYING).id;
    u128 rb = fx_ok(&t.b, &b, PAY_KIND_REFUND, PAY_TRYING).id;
    fx_ok(&t.b, &c, PAY_KIND_REFUND, PAY_ERR_REFUND_EXCEEDS);
    /* The same out_request_no while trying: a duplicate. */
    pay_request_t dup = rq_xrefund(p, 1, "a", 4);
    fx_ok(&t.b, &dup, PAY_KIND_REFUND, PAY_ERR_DUPLICATE_OUT_REQUEST_NO);
    assert_int_equal(pay_activities_trying(t.b.pay), 2);
    /* Cancel one: its amount and its out_request_no are free again. */
    pay_request_t d = rq_decide(rb, PAY_ERR_CANCELLED);
    fx_ok(&t.b, &d, PAY_KIND_REFUND, PAY_ERR_CANCELLED);
    c = rq_xrefund(p, 200, "b", 5);
    u128 rc = fx_ok(&t.b, &c, PAY_KIND_REFUND, PAY_TRYING).id;
    pay_request_t tr = rq_step(PAY_KIND_TRY, ra, 300);
    fx_ok(&t.m, &tr, PAY_KIND_TRY, PAY_CREATED);
    tr = rq_step(PAY_KIND_TRY, rc, 200);
    fx_ok(&t.m, &tr, PAY_KIND_TRY, PAY_CREATED);
    assert_true(receivable_pending(&t.m) == 500);
    d = rq_decide(ra, PAY_OK);
    fx_ok(&t.b, &d, PAY_KIND_REFUND, PAY_CREATED);
    d = rq_decide(rc, PAY_OK);
    fx_ok(&t.b, &d, PAY_KIND_REFUND, PAY_CREATED);
    pay_request_t more = rq_xrefund(p, 1, "z", 6);
    fx_ok(&t.b, &more, PAY_KIND_REFUND, PAY_ERR_REFUND_EXCEEDS);
    relay_run(&t);
    assert_quiet(&t);
    assert_true(buyer(&t.b) == 1000 && receivable(&t.m) == 0);
    assert_true(query(&t.b, PAY_Q_PAYMENT, p).refunded == 500);
    two_free(&t);
}

/* A refund without peer_cell (a gateway that does not run TCC) keeps today's answer; wrong
 * field combinations are invalid. */
static void test_invalid(void **state) {
    (void)state;
    two_t t;
    two_init(&t);
    u128 p = xpay(&t, 500, "o1", true);
    pay_request_t rf = rq_xrefund(p, 10, "r", 1);
    rf.peer_cell = 0;
    fx_ok(&t.b, &rf, PAY_KIND_REFUND, PAY_ERR_CROSS_CELL);
    rf.peer_cell = 5;
    fx_ok(&t.b, &rf, PAY_KIND_REFUND, PAY_ERR_INVALID);
    rf = rq_xrefund(p, 10, "r", 1);
    u128 r = fx_ok(&t.b, &rf, PAY_KIND_REFUND, PAY_TRYING).id;
    pay_request_t bad = rq_decide(r, PAY_ERR_NOT_FOUND); /* not a Try's refusal */
    fx_ok(&t.b, &bad, PAY_KIND_DECIDE, PAY_ERR_INVALID);
    bad = rq_decide(r, PAY_OK);
    bad.actor = MERCHANT;
    fx_ok(&t.b, &bad, PAY_KIND_DECIDE, PAY_ERR_INVALID);
    bad = rq_decide(r + 1, PAY_OK);
    fx_ok(&t.b, &bad, PAY_KIND_DECIDE, PAY_ERR_NOT_FOUND);
    bad = rq_decide(p, PAY_OK); /* a payment, not an activity */
    fx_ok(&t.b, &bad, PAY_KIND_DECIDE, PAY_ERR_NOT_FOUND);
    bad = rq_ack(r); /* not decided: no record to acknowledge */
    fx_ok(&t.b, &bad, PAY_KIND_ACK, PAY_ERR_NOT_FOUND);
    bad = rq_step(PAY_KIND_TRY, r, 10);
    bad.idem_key = 3;
    fx_ok(&t.m, &bad, PAY_KIND_TRY, PAY_ERR_INVALID);
    bad = rq_step(PAY_KIND_TRY, r, 10);
    bad.peer_cell = CELL_M; /* R was not drawn by M */
    fx_ok(&t.m, &bad, PAY_KIND_TRY, PAY_ERR_INVALID);
    bad = rq_step(PAY_KIND_TRY, r, 0);
    fx_ok(&t.m, &bad, PAY_KIND_TRY, PAY_ERR_INVALID);
    bad = rq_step(PAY_KIND_CANCEL, r, 10);
    bad.code = PAY_ERR_CANCELLED;
    fx_ok(&t.m, &bad, PAY_KIND_CANCEL, PAY_ERR_INVALID);
    bad = rq_step(PAY_KIND_TRY, r, 10); /* to B: wrong cell (routed by the merchant) */
    fx_ok(&t.b, &bad, PAY_KIND_TRY, PAY_ERR_WRONG_CELL);
    bad = rq_decide(r, PAY_OK); /* to M: wrong cell (routed by the buyer) */
    fx_ok(&t.m, &bad, PAY_KIND_DECIDE, PAY_ERR_WRONG_CELL);
    /* A local payment's refund naming a cell. */
    pay_request_t mb = rq_merchant(22, 2), lp = rq_payment(22, BUYER, CNY(), 10, "l");
    fx_ok(&t.b, &mb, PAY_KIND_MERCHANT, PAY_CREATED);
    u128 local = fx_ok(&t.b, &lp, PAY_KIND_PAYMENT, PAY_CREATED).id;
    pay_request_t lr = rq_xrefund(local, 1, "x", 0);
    lr.actor = 22;
    lr.peer_cell = CELL_M;
    fx_ok(&t.b, &lr, PAY_KIND_REFUND, PAY_ERR_INVALID);
    two_free(&t);
}

static void test_stale_listing(void **state) {
    (void)state;
    two_t t;
    two_init(&t);
    u128 p = xpay(&t, 500, "o1", true);
    pay_request_t a = rq_xrefund(p, 1, "a", 1);
    u128 ra = fx_ok(&t.b, &a, PAY_KIND_REFUND, PAY_TRYING).id;
    t.b.clock += STALE_NS / 2;
    pay_request_t b = rq_xrefund(p, 1, "b", 2), c = rq_xrefund(p, 1, "c", 3);
    u128 rb = fx_ok(&t.b, &b, PAY_KIND_REFUND, PAY_TRYING).id;
    u128 rc = fx_ok(&t.b, &c, PAY_KIND_REFUND, PAY_TRYING).id;
    u128 out[4];
    assert_int_equal(pay_activities_stale(t.b.pay, t.b.clock, STALE_NS, out, 4), 0);
    t.b.clock += STALE_NS / 2;
    assert_int_equal(pay_activities_stale(t.b.pay, t.b.clock, STALE_NS, out, 4), 1);
    assert_true(out[0] == ra);
    t.b.clock += STALE_NS;
    assert_int_equal(pay_activities_stale(t.b.pay, t.b.clock, STALE_NS, out, 4), 3);
    assert_true(out[0] == ra && out[1] == rb && out[2] == rc);
    assert_int_equal(pay_activities_stale(t.b.pay, t.b.clock, STALE_NS, out, 2), 2);
    /* Decided ones are not listed. */
    pay_request_t d = rq_decide(rb, PAY_ERR_CANCELLED);
    fx_ok(&t.b, &d, PAY_KIND_REFUND, PAY_ERR_CANCELLED);
    assert_int_equal(pay_activities_stale(t.b.pay, t.b.clock, STALE_NS, out, 4), 2);
    assert_true(out[0] == ra && out[1] == rc);
    assert_int_equal(pay_activities_trying(t.b.pay), 2);
    /* A clock behind the activity (set back in tests) lists nothing. */
    assert_int_equal(pay_activities_stale(t.b.pay, 0, 0, out, 4), 0);
    two_free(&t);
}

/* The pending transfer's timeout: a Confirm after it can take no money (refused, nothing
 * changes); a Cancel after it is what the ledger did already. */
static void test_try_expired(void **state) {
    (void)state;
    two_t t;
    two_init(&t);
    u128 p = xpay(&t, 500, "o1", true);
    pay_request_t a = rq_xrefund(p, 100, "a", 1), b = rq_xrefund(p, 100, "b", 2);
    u128 ra = fx_ok(&t.b, &a, PAY_KIND_REFUND, PAY_TRYING).id;
    u128 rb = fx_ok(&t.b, &b, PAY_KIND_REFUND, PAY_TRYING).id;
    pay_request_t ta = rq_step(PAY_KIND_TRY, ra, 100), tb = rq_step(PAY_KIND_TRY, rb, 100);
    fx_ok(&t.m, &ta, PAY_KIND_TRY, PAY_CREATED);
    fx_ok(&t.m, &tb, PAY_KIND_TRY, PAY_CREATED);
    t.m.clock += (uint64_t)PAY_TCC_TRY_TIMEOUT_S * 1000000000ull;
    assert_int_equal(ledger_expire(t.m.ledger, t.m.clock), 2);
    assert_true(receivable_pending(&t.m) == 0 && receivable(&t.m) == 500);
    u128 mh = pay_state_hash(t.m.pay), lh = ledger_state_hash(t.m.ledger);
    pay_request_t c = rq_step(PAY_KIND_CONFIRM, ra, 100);
    fx_ok(&t.m, &c, PAY_KIND_CONFIRM, PAY_ERR_CANCELLED);
    assert_true(pay_state_hash(t.m.pay) == mh && ledger_state_hash(t.m.ledger) == lh);
    pay_request_t x = rq_step(PAY_KIND_CANCEL, rb, 100);
    fx_ok(&t.m, &x, PAY_KIND_CANCEL, PAY_CREATED);
    fx_ok(&t.m, &x, PAY_KIND_CANCEL, PAY_OK);
    assert_true(ledger_state_hash(t.m.ledger) == lh);
    two_free(&t);
}

/* Tables full: refused before anything moves, and not stored under the key. */
static void test_capacities(void **state) {
    (void)state;
    two_t t;
    two_init_cap(&t, 4);
    u128 p = xpay(&t, 500, "o1", true);
    /* B's tcc table: 4 activities. */
    u128 r[4];
    for (int i = 0; i < 4; i++) {
        char orn[8];
        snprintf(orn, sizeof orn, "r%d", i);
        pay_request_t rf = rq_xrefund(p, 10, orn, 0); /* no keys: the ring has 4 rows */
        r[i] = fx_ok(&t.b, &rf, PAY_KIND_REFUND, PAY_TRYING).id;
    }
    u128 bh = pay_state_hash(t.b.pay);
    pay_request_t rf = rq_xrefund(p, 10, "r4", 0);
    fx_ok(&t.b, &rf, PAY_KIND_REFUND, PAY_ERR_FULL);
    assert_true(pay_state_hash(t.b.pay) == bh);
    /* M's tcc table: 4 branches; the fifth Try (or empty rollback) is full, nothing held. */
    for (int i = 0; i < 4; i++) {
        pay_request_t tr = rq_step(PAY_KIND_TRY, r[i], 10);
        fx_ok(&t.m, &tr, PAY_KIND_TRY, PAY_CREATED);
    }
    u128 extra = r[3] + 100;
    pay_request_t tr = rq_step(PAY_KIND_TRY, extra, 10);
    u128 lh = ledger_state_hash(t.m.ledger);
    fx_ok(&t.m, &tr, PAY_KIND_TRY, PAY_ERR_FULL);
    pay_request_t x = rq_step(PAY_KIND_CANCEL, extra, 10);
    fx_ok(&t.m, &x, PAY_KIND_CANCEL, PAY_ERR_FULL);
    assert_true(ledger_state_hash(t.m.ledger) == lh);
    /* B's outbox (4 rows, one used by the payment's acked credit... reclaimed): decide 4. */
    for (int i = 0; i < 4; i++) {
        pay_request_t d = rq_decide(r[i], PAY_OK);
        fx_ok(&t.b, &d, PAY_KIND_REFUND, PAY_CREATED);
    }
    relay_run(&t);
    assert_quiet(&t);
    assert_true(buyer(&t.b) == 540 && receivable(&t.m) == 460);
    two_free(&t);
}

static void test_outbox_full_decide(void **state) {
    (void)state;
    two_t t;
    two_init_cap(&t, 4);
    u128 p = xpay(&t, 500, "o1", true);
    u128 r[4];
    for (int i = 0; i < 4; i++) {
        char orn[8];
        snprintf(orn, sizeof orn, "r%d", i);
        pay_request_t rf = rq_xrefund(p, 10, orn, 0);
        r[i] = fx_ok(&t.b, &rf, PAY_KIND_REFUND, PAY_TRYING).id;
    }
    /* Three uncredited payments fill three outbox rows; one row is left. */
    xpay(&t, 1, "x1", false);
    xpay(&t, 1, "x2", false);
    xpay(&t, 1, "x3", false);
    pay_request_t d = rq_decide(r[0], PAY_ERR_CANCELLED);
    fx_ok(&t.b, &d, PAY_KIND_REFUND, PAY_ERR_CANCELLED);
    u128 bh = pay_state_hash(t.b.pay);
    d = rq_decide(r[1], PAY_OK);
    fx_ok(&t.b, &d, PAY_KIND_DECIDE, PAY_ERR_FULL);
    assert_true(pay_state_hash(t.b.pay) == bh);
    two_free(&t);
}

/* ---- Images ---- */

static void test_image(void **state) {
    (void)state;
    two_t t;
    two_init(&t);
    u128 p1 = xpay(&t, 300, "o1", true);
    u128 p2 = xpay(&t, 400, "o2", false); /* the merchant has 300 */
    const char *orn[6] = {"a1", "a2", "a3", "a4", "a5", "a6"};
    u128 amt[6] = {10, 20, 30, 400, 40, 50};
    u128 r[6];
    for (int i = 0; i < 6; i++) {
        pay_request_t rf = rq_xrefund(i == 3 ? p2 : p1, amt[i], orn[i], (u128)(i + 1));
        r[i] = fx_ok(&t.b, &rf, PAY_KIND_REFUND, PAY_TRYING).id;
    }
    /* a1 trying/tried; a2 confirming/tried; a3 confirmed/confirmed; a4 cancelling/refused;
     * a5 cancelled/cancelled (voided); a6 cancelled/cancelled by empty rollback. */
    for (int i = 0; i < 5; i++) {
        pay_request_t tr = rq_step(PAY_KIND_TRY, r[i], amt[i]);
        fx_ok(&t.m, &tr, PAY_KIND_TRY, i == 3 ? PAY_ERR_INSUFFICIENT_FUNDS : PAY_CREATED);
    }
    pay_request_t d = rq_decide(r[2], PAY_OK);
    fx_ok(&t.b, &d, PAY_KIND_REFUND, PAY_CREATED);
    d = rq_decide(r[4], PAY_ERR_CANCELLED);
    fx_ok(&t.b, &d, PAY_KIND_REFUND, PAY_ERR_CANCELLED);
    d = rq_decide(r[5], PAY_ERR_CANCELLED);
    fx_ok(&t.b, &d, PAY_KIND_REFUND, PAY_ERR_CANCELLED);
    /* Deliver and ack those three (the two uncredited payments' credits wait). */
    for (int i = 2; i < 6; i += (i == 2 ? 2 : 1)) {
        pay_outbox_item_t items[8];
        uint32_t n = pay_outbox_pending(t.b.pay, 0, items, 8);
        for (uint32_t k = 0; k < n; k++) {
            if (items[k].payment_id != r[i]) continue;
            pay_request_t q = rq_item(&items[k]);
            fx_ok(&t.m, &q, items[k].kind, PAY_CREATED);
            pay_request_t a = rq_ack(r[i]);
            fx_ok(&t.b, &a, PAY_KIND_ACK, PAY_OK);
        }
    }
    d = rq_decide(r[1], PAY_OK);
    fx_ok(&t.b, &d, PAY_KIND_REFUND, PAY_CREATED);
    d = rq_decide(r[3], PAY_ERR_INSUFFICIENT_FUNDS);
    fx_ok(&t.b, &d, PAY_KIND_REFUND, PAY_ERR_INSUFFICIENT_FUNDS);

    fx_assert_image_same(&t.m);
    fx_assert_image_same(&t.b);
    /* The restored B goes on as the original: a decision on both gives the same state. */
    const char *err = "unset";
    pay_t *b2 = fx_image_copy(&t.b, &err, 0);
    assert_null(err);
    pay_request_t dc = rq_decide(r[0], PAY_ERR_CANCELLED);
    pay_object_t o1, o2;
    uint64_t clock = t.b.clock;
    pay_apply(b2, t.b.ledger, &clock, &dc, &o2);
    pay_apply(t.b.pay, t.b.ledger, &t.b.clock, &dc, &o1);
    assert_memory_equal(&o1, &o2, sizeof o1);
    assert_true(pay_state_hash(b2) == pay_state_hash(t.b.pay));
    pay_destroy(b2);
    /* Rows out of place are refused. Row bytes: amount 48, peer_cell 116, role 124, state
     * 125, code 126. B: a trying amount (the payment's refunded), a cancelling amount (its
     * record), a confirmed one said confirming (its record is acked); M: a branch's cell,
     * a refused branch's code. */
    static const uint32_t b_off[] = {48, 125, 124, 126, 192 * 3 + 48, 192 * 2 + 125};
    static const uint32_t m_off[] = {124, 125, 126, 116, 192 * 3 + 126};
    for (size_t i = 0; i < sizeof b_off / sizeof b_off[0]; i++) {
        pay_t *copy = fx_image_copy(&t.b, &err, b_off[i]);
        assert_non_null(err);
        pay_destroy(copy);
    }
    for (size_t i = 0; i < sizeof m_off / sizeof m_off[0]; i++) {
        pay_t *copy = fx_image_copy(&t.m, &err, m_off[i]);
        assert_non_null(err);
        pay_destroy(copy);
    }
    /* Version 2 images are refused by name; more rows than the capacity. */
    pay_image_header_t h;
    pay_image_header(t.b.pay, &h);
    pay_config_t small = t.b.config;
    small.tcc_max = 2;
    assert_non_null(pay_image_check(&h, &small));
    h.magic = 0x324547414D594150ull;
    const char *why = pay_image_check(&h, &t.b.config);
    assert_non_null(why);
    assert_non_null(strstr(why, "version 2"));
    two_free(&t);
}

/* ---- Every crash point, table-driven ----
 *
 * The state machine is deterministic, so a crash is what it does to the messages: a step's
 * request lost (the sender retries it), its answer lost (the sender retries: the step runs
 * twice), the step repeated (a duplicate delivery), or the gateway dying before or after the
 * step (it sends nothing more; the buyer's cell's recovery decides a stale activity
 * cancelled). The crash points, initiator (gateway + B) and participant (M):
 *   refund:  request lost, answer lost, repeated, gateway dies before it, gateway dies
 *            after it (B has a trying activity nobody drives: recovery cancels it, the
 *            cancel reaches M before any Try: empty rollback);
 *   try:     request lost, answer lost (M tried, the gateway retries), repeated, gateway
 *            dies before it, gateway dies after it (M holds money pending: recovery
 *            cancels, the relay's cancel voids it), the Try delayed past the recovery's
 *            cancel (arrives after the empty rollback: anti-hanging);
 *   decide:  request lost, answer lost, repeated, gateway dies before it (recovery cancels
 *            even a successful Try), gateway dies after it (B decided; the relay goes on);
 *   deliver (the relay's confirm / cancel to M): lost, answer lost (M applied it, the relay
 *            sends it again), repeated;
 *   ack:     lost (the record is delivered again), repeated;
 * and after each step, the cell that applied it restarting from its snapshot image (the
 * state it goes on from is the image's, rebuilt indexes and all).
 * Each with a merchant who has the money and one who has not (Try refused). After every
 * run, once recovery and the relay have run: no trying activity, no outbox record, no
 * pending transfer in either ledger, clearing nets to zero, the refund happened exactly when
 * B decided confirm (buyer + amount, merchant - amount) and not otherwise, the payment's
 * refunded is its refunds' sum, and the refund's key answers the decision, never trying. */

/* The relay with the fault at its first delivery or ack of a decision, then until idle. */
static void relay_faulty(two_t *t, const crash_t *c) {
    pay_outbox_item_t items[8], it = {0};
    uint32_t n = pay_outbox_pending(t->b.pay, 0, items, 8);
    for (uint32_t i = 0; i < n && !it.kind; i++)
        if (items[i].kind != PAY_KIND_CREDIT) it = items[i];
    if (it.kind) {
        pay_request_t r = rq_item(&it), a = rq_ack(it.payment_id);
        fault_t fd = c->step == S_DELIVER ? c->fault : F_NONE;
        fault_t fa = c->step == S_ACK ? c->fault : F_NONE;
        if (fd != F_REQ_LOST) {
            pay_object_t o = fx_apply(&t->m, &r);
            assert_true(fx_delivered(o.code));
            if (fd == F_REPEAT || fd == F_ANS_LOST)
                assert_true(fx_delivered(fx_apply(&t->m, &r).code));
            if (fd == F_RESTART) fx_restart(&t->m);
            if (fd != F_ANS_LOST && fa != F_REQ_LOST) {
                fx_ok(&t->b, &a, PAY_KIND_ACK, PAY_OK);
                if (fa == F_REPEAT) fx_ok(&t->b, &a, PAY_KIND_ACK, PAY_OK);
                if (fa == F_RESTART) fx_restart(&t->b);
            }
        }
    }
    relay_run(t);
}

/* One run: a payment of 500 (the merchant has 500, or only 50 when poor), a refund of 100. */
static void crash_run(const crash_t *c, bool poor) {
    two_t t;
    two_init(&t);
    /* Poor: the payment's credit is not delivered yet (it is, by the relay, later). */
    u128 p = xpay(&t, 500, "o1", !poor);
    if (poor) xpay(&t, 50, "o2", true);
    u128 buyer0 = buyer(&t.b), merchant0 = receivable(&t.m) + (poor ? 500 : 0);
    fault_t f[S_COUNT] = {F_NONE};
    f[c->step] = c->fault;
    bool dead = false, confirmed = false, refund_applied = true, have_delayed = false;
    pay_request_t rf = rq_xrefund(p, 100, "r", 1), delayed = {0};
    pay_object_t o = tcc_send(&t.b, &rf, f[S_START], &dead);
    refund_applied = f[S_START] != F_DIE_BEFORE;
    if (!dead) {
        fx_assert_code(&o, PAY_KIND_REFUND, PAY_TRYING);
        pay_request_t tr = rq_step(PAY_KIND_TRY, o.id, 100);
        if (f[S_TRY] == F_DELAYED) {
            delayed = tr;
            have_delayed = dead = true;
        } else {
            o = tcc_send(&t.m, &tr, f[S_TRY], &dead);
        }
        if (!dead) {
            pay_code_t code = fx_delivered(o.code) ? PAY_OK : (pay_code_t)o.code;
            assert_int_equal(code, poor ? PAY_ERR_INSUFFICIENT_FUNDS : PAY_OK);
            pay_request_t d = rq_decide(tr.payment_id, code);
            o = tcc_send(&t.b, &d, f[S_DECIDE], &dead);
            confirmed = code == PAY_OK && f[S_DECIDE] != F_DIE_BEFORE;
            if (!dead) fx_assert_code(&o, PAY_KIND_REFUND, confirmed ? PAY_CREATED : code);
        }
    }
    relay_faulty(&t, c);
    recover(&t);
    relay_run(&t);
    if (have_delayed) {
        u128 lh = ledger_state_hash(t.m.ledger);
        fx_ok(&t.m, &delayed, PAY_KIND_TRY, PAY_ERR_CANCELLED);
        assert_true(ledger_state_hash(t.m.ledger) == lh);
    }
    assert_quiet(&t);
    u128 moved = confirmed ? 100 : 0;
    assert_true(buyer(&t.b) == buyer0 + moved);
    assert_true(receivable(&t.m) == merchant0 - moved);
    assert_true(query(&t.b, PAY_Q_PAYMENT, p).refunded == moved);
    if (refund_applied) {
        pay_object_t k = fx_apply(&t.b, &rf);
        assert_int_equal(k.replayed, 1);
        assert_int_not_equal(k.code, PAY_TRYING);
        assert_int_equal(k.code == PAY_CREATED, confirmed);
    }
    two_free(&t);
}

static void test_crash_points(void **state) {
    (void)state;
    size_t n;
    const crash_t *crash_points = tcc_crash_points(&n);
    for (size_t i = 0; i < n; i++)
        for (int poor = 0; poor < 2; poor++) crash_run(&crash_points[i], poor);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_happy_path),
        cmocka_unit_test(test_merchant_without_funds),
        cmocka_unit_test(test_idempotent_steps),
        cmocka_unit_test(test_empty_rollback),
        cmocka_unit_test(test_limits_across_trying),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_stale_listing),
        cmocka_unit_test(test_try_expired),
        cmocka_unit_test(test_capacities),
        cmocka_unit_test(test_outbox_full_decide),
        cmocka_unit_test(test_image),
        cmocka_unit_test(test_crash_points),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Cross-cell payments (docs/cross-cell.md) between two payments states configured as two
 * cells with disjoint zones: the merchant's cell M (cell 1, zone 1: uids 10..19) and the
 * buyer's cell B (cell 2, zone 2: uids 20..29). The test plays the gateway and the relay:
 * order in M, payment of the order in B, credit in M, ack in B; refusals and releases; every
 * repeat and reordering; the outbox's back pressure; invalid field combinations; images. */
#include <stdio.h>

#include "pay_test_util.h"

#define OBJS (PAY_LIST_MAX + 2)
#define CELL_M 1u
#define CELL_B 2u
#define MERCHANT 11u   /* M */
#define M_BUYER 12u    /* M: a buyer of the merchant's own cell */
#define BUYER 21u      /* B */
#define B_MERCHANT 22u /* B: a merchant of the buyer's cell */
#define B_BUYER_2 23u  /* B */

typedef struct two {
    fx_t m, b;
} two_t;

static pay_config_t cell_config(uint32_t cell, uint32_t cap, uint32_t outbox) {
    pay_config_t pc = pay_test_config(cap);
    pc.cell_id = cell;
    pc.outbox_max = outbox;
    cp_zones_add(&pc.zones, cell); /* zone n: uids n*10 .. n*10+9 (and + k*1000) */
    return pc;
}

static void ok(fx_t *f, const pay_request_t *r, uint8_t kind, pay_code_t code) {
    pay_object_t o = fx_apply(f, r);
    fx_assert_code(&o, kind, code);
}

/* M: merchant 11, user 12 (CNY, 1000). B: merchant 22, users 21 (CNY, 1000) and 23 (CNY). */
static void two_init(two_t *t, uint32_t outbox_max) {
    pay_config_t pm = cell_config(CELL_M, 16, 16), pb = cell_config(CELL_B, 16, outbox_max);
    fx_init(&t->m, &pm, 64);
    fx_init(&t->b, &pb, 64);
    pay_request_t r = rq_merchant(MERCHANT, 1);
    ok(&t->m, &r, PAY_KIND_MERCHANT, PAY_CREATED);
    r = rq_user(M_BUYER, CNY());
    ok(&t->m, &r, PAY_KIND_USER, PAY_CREATED);
    r = rq_topup(M_BUYER, CNY(), 1000);
    ok(&t->m, &r, PAY_KIND_TOPUP, PAY_CREATED);
    r = rq_merchant(B_MERCHANT, 2);
    ok(&t->b, &r, PAY_KIND_MERCHANT, PAY_CREATED);
    r = rq_user(BUYER, CNY());
    ok(&t->b, &r, PAY_KIND_USER, PAY_CREATED);
    r = rq_user(B_BUYER_2, CNY());
    ok(&t->b, &r, PAY_KIND_USER, PAY_CREATED);
    r = rq_topup(BUYER, CNY(), 1000);
    ok(&t->b, &r, PAY_KIND_TOPUP, PAY_CREATED);
}

static void two_free(two_t *t) {
    fx_free(&t->m);
    fx_free(&t->b);
}

/* ---- Requests as the gateway and the relay make them ---- */

static pay_request_t rq_order(uint64_t merchant, uint64_t buyer, u128 amount, const char *otn,
                              u128 key) {
    pay_request_t r = {.kind = PAY_KIND_ORDER,
                       .actor = merchant,
                       .uid = buyer,
                       .currency = CNY(),
                       .amount = amount,
                       .funding = 1,
                       .idem_key = key,
                       .body_hash = key + 1000};
    snprintf(r.text, sizeof r.text, "%s", otn);
    return r;
}

/* The payment of an order in the buyer's cell. */
static pay_request_t rq_xpay(const pay_object_t *order) {
    pay_request_t r = rq_payment(order->merchant, order->uid, order->currency, order->amount, "");
    memcpy(r.text, order->text, PAY_TEXT_MAX);
    r.payment_id = order->id;
    r.idem_key = order->id;
    r.body_hash = 77;
    r.peer_cell = CELL_M;
    return r;
}

static pay_request_t rq_release(uint64_t merchant, u128 payment_id, pay_code_t code) {
    return (pay_request_t){.kind = PAY_KIND_RELEASE,
                           .actor = merchant,
                           .payment_id = payment_id,
                           .code = (uint8_t)code};
}

static pay_request_t rq_credit(const pay_outbox_item_t *it) {
    return (pay_request_t){.kind = PAY_KIND_CREDIT,
                           .actor = it->merchant,
                           .uid = it->buyer,
                           .payment_id = it->payment_id,
                           .amount = it->amount,
                           .currency = it->currency,
                           .peer_cell = CELL_B};
}

/* ---- Balances ---- */

/* credits - debits of an account (mod 2^128; 0 when it does not exist). */
static u128 position(const fx_t *f, u128 id) {
    ledger_account_t a;
    if (ledger_lookup_accounts(f->ledger, &id, 1, &a) != 1) return 0;
    return a.credits_posted - a.debits_posted;
}

static u128 receivable(const fx_t *f, uint64_t merchant) {
    return position(f, pay_account_id(merchant, PAY_ACCOUNT_MERCHANT, CNY()));
}

/* B's clearing toward M plus M's clearing toward B: zero once the relay is idle. */
static u128 clearing_net(const two_t *t) {
    return position(&t->b, pay_clearing_account_id(CELL_M, CNY())) +
           position(&t->m, pay_clearing_account_id(CELL_B, CNY()));
}

static pay_object_t query_payment(const fx_t *f, u128 id) {
    pay_query_t q = {.kind = PAY_Q_PAYMENT, .id = id};
    pay_object_t out[OBJS];
    assert_int_equal(fx_query(f, &q, out), 1);
    return out[0];
}

/* The relay: one outbox record of B delivered to M (credit) and acknowledged in B. */
static pay_outbox_item_t outbox_item(const two_t *t, u128 payment_id) {
    pay_outbox_item_t items[16];
    uint32_t n = pay_outbox_pending(t->b.pay, 0, items, 16);
    for (uint32_t i = 0; i < n; i++)
        if (items[i].payment_id == payment_id) return items[i];
    fail_msg("no outbox record of the payment");
    return items[0];
}

/* Order and payment of amount for buyer 21 with otn; returns B's answer (the order's in *order). */
static pay_object_t order_and_pay(two_t *t, u128 amount, const char *otn, u128 key,
                                  pay_object_t *order) {
    pay_request_t r = rq_order(MERCHANT, BUYER, amount, otn, key);
    *order = fx_apply(&t->m, &r);
    fx_assert_code(order, PAY_KIND_ORDER, PAY_CREATED);
    pay_request_t x = rq_xpay(order);
    return fx_apply(&t->b, &x);
}

/* ---- Tests ---- */

static void test_happy_path(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 16);
    pay_request_t ro = rq_order(MERCHANT, BUYER, 300, "o1", 1);
    pay_object_t order = fx_apply(&t.m, &ro);
    fx_assert_code(&order, PAY_KIND_ORDER, PAY_CREATED);
    /* The id: the buyer's uid, then M's cell and sequence. */
    assert_true((uint64_t)(order.id >> 64) == BUYER);
    assert_int_equal(((uint64_t)order.id >> 40) & PAY_CELL_MAX, CELL_M);
    assert_true(order.amount == 300 && order.uid == BUYER && order.merchant == MERCHANT);
    assert_string_equal(order.text, "o1");
    /* A replay of the key: the same answer; another body under the key: a conflict. */
    pay_object_t again = fx_apply(&t.m, &ro);
    assert_int_equal(again.replayed, 1);
    again.replayed = 0;
    assert_memory_equal(&again, &order, sizeof again);
    pay_request_t other = ro;
    other.body_hash ^= 1;
    ok(&t.m, &other, PAY_KIND_ORDER, PAY_ERR_IDEMPOTENCY_CONFLICT);

    pay_request_t rx = rq_xpay(&order);
    pay_object_t paid = fx_apply(&t.b, &rx);
    fx_assert_code(&paid, PAY_KIND_PAYMENT, PAY_CREATED);
    assert_true(paid.id == order.id && paid.amount == 300 && paid.merchant == MERCHANT);
    assert_int_equal(paid.merchant_credit, 1);
    assert_int_equal(paid.peer_cell, CELL_M);
    assert_true(fx_balance(&t.b, BUYER, CNY()) == 700);
    assert_true(position(&t.b, pay_clearing_account_id(CELL_M, CNY())) == 300);
    ledger_account_t clr;
    u128 clr_id = pay_clearing_account_id(CELL_M, CNY());
    assert_int_equal(ledger_lookup_accounts(t.b.ledger, &clr_id, 1, &clr), 1);
    assert_int_equal(clr.code, PAY_ACCOUNT_CLEARING);
    assert_int_equal(clr.flags, 0);
    assert_int_equal(pay_outbox_backlog(t.b.pay), 1);
    pay_object_t q = query_payment(&t.b, order.id);
    assert_int_equal(q.code, PAY_OK);
    assert_int_equal(q.merchant_credit, 1);
    assert_int_equal(q.peer_cell, CELL_M);

    pay_outbox_item_t it = outbox_item(&t, order.id);
    assert_true(it.amount == 300 && it.buyer == BUYER && it.merchant == MERCHANT &&
                it.peer_cell == CELL_M && it.currency == CNY() && it.seq == 1);
    pay_request_t rc = rq_credit(&it);
    pay_object_t credited = fx_apply(&t.m, &rc);
    fx_assert_code(&credited, PAY_KIND_CREDIT, PAY_CREATED);
    assert_true(credited.id == order.id);
    assert_true(receivable(&t.m, MERCHANT) == 300);
    assert_true(clearing_net(&t) == 0);
    /* The second leg in M's ledger: leg id, code, the payment id in user_data_128. */
    u128 leg = pay_leg_id(order.id);
    ledger_transfer_t lt;
    assert_int_equal(ledger_lookup_transfers(t.m.ledger, &leg, 1, &lt), 1);
    assert_int_equal(lt.code, PAY_LEDGER_CODE_CREDIT);
    assert_true(lt.user_data_128 == order.id);

    /* A second delivery: ok, nothing moves. */
    u128 mh = pay_state_hash(t.m.pay), lh = ledger_state_hash(t.m.ledger);
    ok(&t.m, &rc, PAY_KIND_CREDIT, PAY_OK);
    assert_true(pay_state_hash(t.m.pay) == mh && ledger_state_hash(t.m.ledger) == lh);

    pay_request_t ra = rq_ack(order.id);
    ok(&t.b, &ra, PAY_KIND_ACK, PAY_OK);
    assert_int_equal(pay_outbox_backlog(t.b.pay), 0);
    assert_int_equal(pay_outbox_pending(t.b.pay, 0, &it, 1), 0);
    q = query_payment(&t.b, order.id);
    assert_int_equal(q.merchant_credit, 0);
    assert_int_equal(q.peer_cell, CELL_M);
    u128 bh = pay_state_hash(t.b.pay);
    ok(&t.b, &ra, PAY_KIND_ACK, PAY_OK);
    assert_true(pay_state_hash(t.b.pay) == bh);

    /* B's key answers the first answer byte for byte (pending then). */
    pay_object_t replay = fx_apply(&t.b, &rx);
    assert_int_equal(replay.replayed, 1);
    replay.replayed = 0;
    assert_memory_equal(&replay, &paid, sizeof replay);
    /* The credited order holds its out_trade_no: a new order or a local payment of it is a
     * duplicate. */
    pay_request_t dup = rq_order(MERCHANT, BUYER, 5, "o1", 2);
    ok(&t.m, &dup, PAY_KIND_ORDER, PAY_ERR_DUPLICATE_OUT_TRADE_NO);
    pay_request_t local = rq_payment(MERCHANT, M_BUYER, CNY(), 5, "o1");
    ok(&t.m, &local, PAY_KIND_PAYMENT, PAY_ERR_DUPLICATE_OUT_TRADE_NO);
    /* Sums: B's buyer 700 + M's merchant 300 = the 1000 topped up; M's local user untouched. */
    assert_true(fx_balance(&t.b, BUYER, CNY()) + receivable(&t.m, MERCHANT) == 1000);
    assert_null(ledger_check_invariants(t.m.ledger));
    assert_null(ledger_check_invariants(t.b.ledger));
    two_free(&t);
}

static void test_out_trade_no(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 16);
    /* A local payment holds "L1": an order of it is a duplicate. */
    pay_request_t local = rq_payment(MERCHANT, M_BUYER, CNY(), 5, "L1");
    ok(&t.m, &local, PAY_KIND_PAYMENT, PAY_CREATED);
    pay_request_t o = rq_order(MERCHANT, BUYER, 5, "L1", 1);
    ok(&t.m, &o, PAY_KIND_ORDER, PAY_ERR_DUPLICATE_OUT_TRADE_NO);
    /* The refusal is stored under the key. */
    pay_object_t again = fx_apply(&t.m, &o);
    assert_int_equal(again.replayed, 1);
    assert_int_equal(again.code, PAY_ERR_DUPLICATE_OUT_TRADE_NO);
    /* A reserved order holds "X1": a local payment and another order of it are duplicates. */
    o = rq_order(MERCHANT, BUYER, 5, "X1", 2);
    ok(&t.m, &o, PAY_KIND_ORDER, PAY_CREATED);
    local = rq_payment(MERCHANT, M_BUYER, CNY(), 5, "X1");
    ok(&t.m, &local, PAY_KIND_PAYMENT, PAY_ERR_DUPLICATE_OUT_TRADE_NO);
    o = rq_order(MERCHANT, BUYER, 7, "X1", 3);
    ok(&t.m, &o, PAY_KIND_ORDER, PAY_ERR_DUPLICATE_OUT_TRADE_NO);
    /* Another merchant's "X1" is its own. */
    pay_request_t m2 = rq_merchant(13, 3);
    ok(&t.m, &m2, PAY_KIND_MERCHANT, PAY_CREATED);
    o = rq_order(13, BUYER, 7, "X1", 4);
    ok(&t.m, &o, PAY_KIND_ORDER, PAY_CREATED);
    /* B does not check out_trade_no's of M's merchant: its local index knows nothing of them. */
    pay_request_t lb = rq_payment(B_MERCHANT, BUYER, CNY(), 1, "X1");
    ok(&t.b, &lb, PAY_KIND_PAYMENT, PAY_CREATED);
    two_free(&t);
}

static void test_refused_release(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 16);
    pay_object_t order;
    pay_object_t refused = order_and_pay(&t, 5000, "big", 1, &order);
    fx_assert_code(&refused, PAY_KIND_PAYMENT, PAY_ERR_INSUFFICIENT_FUNDS);
    assert_int_equal(pay_outbox_backlog(t.b.pay), 0);
    assert_true(fx_balance(&t.b, BUYER, CNY()) == 1000);
    /* Stored under B's key P: a repeat (e.g. the client library's) gets the refusal. */
    u128 bh = pay_state_hash(t.b.pay);
    pay_request_t rx = rq_xpay(&order);
    pay_object_t again = fx_apply(&t.b, &rx);
    assert_int_equal(again.replayed, 1);
    assert_int_equal(again.code, PAY_ERR_INSUFFICIENT_FUNDS);
    assert_true(pay_state_hash(t.b.pay) == bh);
    /* Before the release, the out_trade_no is held. */
    pay_request_t o2 = rq_order(MERCHANT, BUYER, 50, "big", 2);
    ok(&t.m, &o2, PAY_KIND_ORDER, PAY_ERR_DUPLICATE_OUT_TRADE_NO);

    pay_request_t rel = rq_release(MERCHANT, order.id, PAY_ERR_INSUFFICIENT_FUNDS);
    pay_object_t ro = fx_apply(&t.m, &rel);
    fx_assert_code(&ro, PAY_KIND_RELEASE, PAY_OK);
    assert_true(ro.id == order.id);
    /* The order's key now answers the buyer cell's refusal. */
    pay_request_t o1 = rq_order(MERCHANT, BUYER, 5000, "big", 1);
    pay_object_t k = fx_apply(&t.m, &o1);
    assert_int_equal(k.replayed, 1);
    fx_assert_code(&k, PAY_KIND_PAYMENT, PAY_ERR_INSUFFICIENT_FUNDS);
    assert_true(k.id == 0 && k.amount == 0);
    /* Released again: ok, nothing changes. */
    u128 mh = pay_state_hash(t.m.pay);
    ok(&t.m, &rel, PAY_KIND_RELEASE, PAY_OK);
    assert_true(pay_state_hash(t.m.pay) == mh);
    /* A release by another merchant, of an unknown order, with a code B does not store. */
    pay_request_t bad = rq_release(13, order.id, PAY_ERR_INSUFFICIENT_FUNDS);
    ok(&t.m, &bad, PAY_KIND_RELEASE, PAY_ERR_NOT_FOUND);
    bad = rq_release(MERCHANT, order.id + 1, PAY_ERR_NOT_FOUND);
    ok(&t.m, &bad, PAY_KIND_RELEASE, PAY_ERR_NOT_FOUND);
    static const pay_code_t not_refusals[] = {PAY_OK,
                                              PAY_CREATED,
                                              PAY_ERR_REFUND_EXCEEDS,
                                              PAY_ERR_IDEMPOTENCY_CONFLICT,
                                              PAY_ERR_DUPLICATE_OUT_TRADE_NO,
                                              PAY_ERR_CROSS_CELL,
                                              PAY_ERR_WRONG_CELL,
                                              PAY_ERR_FULL,
                                              PAY_ERR_INVALID,
                                              PAY_CODE_COUNT};
    for (size_t i = 0; i < sizeof not_refusals / sizeof not_refusals[0]; i++) {
        bad = rq_release(MERCHANT, order.id, not_refusals[i]);
        ok(&t.m, &bad, PAY_KIND_RELEASE, PAY_ERR_INVALID);
    }
    assert_true(pay_state_hash(t.m.pay) == mh);

    /* The out_trade_no is free: a new key pays it. */
    pay_object_t order2;
    pay_object_t paid = order_and_pay(&t, 50, "big", 12, &order2);
    fx_assert_code(&paid, PAY_KIND_PAYMENT, PAY_CREATED);
    assert_true(order2.id != order.id);
    /* Releasing a credited order: invalid, nothing changes. */
    pay_outbox_item_t it = outbox_item(&t, order2.id);
    pay_request_t rc = rq_credit(&it);
    ok(&t.m, &rc, PAY_KIND_CREDIT, PAY_CREATED);
    mh = pay_state_hash(t.m.pay);
    rel = rq_release(MERCHANT, order2.id, PAY_ERR_NOT_FOUND);
    ok(&t.m, &rel, PAY_KIND_RELEASE, PAY_ERR_INVALID);
    assert_true(pay_state_hash(t.m.pay) == mh);
    pay_request_t o3 = rq_order(MERCHANT, BUYER, 50, "big", 3);
    ok(&t.m, &o3, PAY_KIND_ORDER, PAY_ERR_DUPLICATE_OUT_TRADE_NO);

    /* B's other refusals, each stored: unknown buyer, no account in the currency. */
    pay_request_t ro4 = rq_order(MERCHANT, 24, 5, "nobody", 4);
    pay_object_t o4 = fx_apply(&t.m, &ro4);
    pay_request_t rx4 = rq_xpay(&o4);
    ok(&t.b, &rx4, PAY_KIND_PAYMENT, PAY_ERR_NOT_FOUND);
    pay_request_t ro5 = rq_order(MERCHANT, BUYER, 5, "usd", 5);
    ro5.currency = USD();
    pay_object_t o5 = fx_apply(&t.m, &ro5);
    pay_request_t rx5 = rq_xpay(&o5);
    ok(&t.b, &rx5, PAY_KIND_PAYMENT, PAY_ERR_CURRENCY_MISMATCH);
    two_free(&t);
}

static void test_credit_reordered(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 16);
    pay_object_t order;
    pay_object_t paid = order_and_pay(&t, 100, "r1", 1, &order);
    fx_assert_code(&paid, PAY_KIND_PAYMENT, PAY_CREATED);
    pay_outbox_item_t it = outbox_item(&t, order.id);
    pay_request_t rc = rq_credit(&it), ra = rq_ack(order.id);
    /* Deliveries twice, the ack between them, and one after it: credited once. */
    ok(&t.m, &rc, PAY_KIND_CREDIT, PAY_CREATED);
    ok(&t.m, &rc, PAY_KIND_CREDIT, PAY_OK);
    ok(&t.b, &ra, PAY_KIND_ACK, PAY_OK);
    ok(&t.m, &rc, PAY_KIND_CREDIT, PAY_OK);
    ok(&t.b, &ra, PAY_KIND_ACK, PAY_OK);
    assert_true(receivable(&t.m, MERCHANT) == 100);
    assert_true(clearing_net(&t) == 0);

    /* A credit that does not match its order: invalid, nothing moves. */
    pay_object_t o2;
    paid = order_and_pay(&t, 40, "r2", 2, &o2);
    fx_assert_code(&paid, PAY_KIND_PAYMENT, PAY_CREATED);
    it = outbox_item(&t, o2.id);
    u128 mh = pay_state_hash(t.m.pay), lh = ledger_state_hash(t.m.ledger);
    pay_request_t bad = rq_credit(&it);
    bad.amount = 41;
    ok(&t.m, &bad, PAY_KIND_CREDIT, PAY_ERR_INVALID);
    bad = rq_credit(&it);
    bad.currency = USD();
    ok(&t.m, &bad, PAY_KIND_CREDIT, PAY_ERR_INVALID);
    bad = rq_credit(&it);
    bad.actor = 13;
    ok(&t.m, &bad, PAY_KIND_CREDIT, PAY_ERR_INVALID);
    assert_true(pay_state_hash(t.m.pay) == mh && ledger_state_hash(t.m.ledger) == lh);

    /* A release sent in error before the credit: the credit still lands, and the order holds
     * its out_trade_no again. */
    pay_request_t rel = rq_release(MERCHANT, o2.id, PAY_ERR_NOT_FOUND);
    ok(&t.m, &rel, PAY_KIND_RELEASE, PAY_OK);
    rc = rq_credit(&it);
    ok(&t.m, &rc, PAY_KIND_CREDIT, PAY_CREATED);
    pay_request_t ro = rq_order(MERCHANT, BUYER, 5, "r2", 9);
    ok(&t.m, &ro, PAY_KIND_ORDER, PAY_ERR_DUPLICATE_OUT_TRADE_NO);
    assert_true(receivable(&t.m, MERCHANT) == 140);

    /* ... and when a local payment took the out_trade_no meanwhile, both stand. */
    pay_object_t o3;
    paid = order_and_pay(&t, 30, "r3", 3, &o3);
    fx_assert_code(&paid, PAY_KIND_PAYMENT, PAY_CREATED);
    rel = rq_release(MERCHANT, o3.id, PAY_ERR_NOT_FOUND);
    ok(&t.m, &rel, PAY_KIND_RELEASE, PAY_OK);
    pay_request_t local = rq_payment(MERCHANT, M_BUYER, CNY(), 1, "r3");
    ok(&t.m, &local, PAY_KIND_PAYMENT, PAY_CREATED);
    it = outbox_item(&t, o3.id);
    rc = rq_credit(&it);
    ok(&t.m, &rc, PAY_KIND_CREDIT, PAY_CREATED);
    ok(&t.m, &rc, PAY_KIND_CREDIT, PAY_OK);
    assert_true(receivable(&t.m, MERCHANT) == 171);
    ok(&t.m, &ro, PAY_KIND_ORDER, PAY_ERR_DUPLICATE_OUT_TRADE_NO); /* key 9's stored answer */
    ro = rq_order(MERCHANT, BUYER, 5, "r3", 10);
    ok(&t.m, &ro, PAY_KIND_ORDER, PAY_ERR_DUPLICATE_OUT_TRADE_NO);
    ra = rq_ack(o2.id);
    ok(&t.b, &ra, PAY_KIND_ACK, PAY_OK);
    ra = rq_ack(o3.id);
    ok(&t.b, &ra, PAY_KIND_ACK, PAY_OK);
    assert_true(clearing_net(&t) == 0);
    assert_int_equal(pay_outbox_backlog(t.b.pay), 0);

    /* Acks: unknown payment, a local payment (no outbox record). */
    ra = rq_ack(o3.id + 100);
    ok(&t.b, &ra, PAY_KIND_ACK, PAY_ERR_NOT_FOUND);
    pay_request_t lb = rq_payment(B_MERCHANT, BUYER, CNY(), 1, "lb");
    pay_object_t lp = fx_apply(&t.b, &lb);
    fx_assert_code(&lp, PAY_KIND_PAYMENT, PAY_CREATED);
    assert_int_equal(lp.merchant_credit, 0);
    ra = rq_ack(lp.id);
    ok(&t.b, &ra, PAY_KIND_ACK, PAY_ERR_NOT_FOUND);
    two_free(&t);
}

static void test_outbox_full(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 2);
    pay_object_t o[4], paid[4];
    for (int i = 0; i < 2; i++) {
        char otn[8];
        snprintf(otn, sizeof otn, "f%d", i);
        paid[i] = order_and_pay(&t, 10, otn, (u128)(i + 1), &o[i]);
        fx_assert_code(&paid[i], PAY_KIND_PAYMENT, PAY_CREATED);
    }
    /* Full: refused before anything moves, not stored (the retry goes through later). */
    u128 bh = pay_state_hash(t.b.pay), lh = ledger_state_hash(t.b.ledger);
    uint64_t clock = t.b.clock;
    paid[2] = order_and_pay(&t, 10, "f2", 3, &o[2]);
    fx_assert_code(&paid[2], PAY_KIND_PAYMENT, PAY_ERR_FULL);
    assert_true(pay_state_hash(t.b.pay) == bh && ledger_state_hash(t.b.ledger) == lh);
    assert_int_equal(t.b.clock, clock);
    assert_true(fx_balance(&t.b, BUYER, CNY()) == 980);
    /* Acknowledging the newer record frees nothing: the older one is still at the head. */
    pay_request_t ra = rq_ack(o[1].id);
    ok(&t.b, &ra, PAY_KIND_ACK, PAY_OK);
    pay_request_t rx = rq_xpay(&o[2]);
    ok(&t.b, &rx, PAY_KIND_PAYMENT, PAY_ERR_FULL);
    assert_int_equal(pay_outbox_backlog(t.b.pay), 1);
    pay_outbox_item_t items[4];
    assert_int_equal(pay_outbox_pending(t.b.pay, 0, items, 4), 1);
    assert_true(items[0].payment_id == o[0].id && items[0].seq == 1);
    /* The head's ack reclaims both; the retry (same key) goes through. */
    ra = rq_ack(o[0].id);
    ok(&t.b, &ra, PAY_KIND_ACK, PAY_OK);
    pay_object_t p2 = fx_apply(&t.b, &rx);
    fx_assert_code(&p2, PAY_KIND_PAYMENT, PAY_CREATED);
    assert_int_equal(p2.replayed, 0);
    paid[3] = order_and_pay(&t, 10, "f3", 4, &o[3]);
    fx_assert_code(&paid[3], PAY_KIND_PAYMENT, PAY_CREATED);
    /* Seqs go on: 3 and 4, and `from` skips the older. */
    assert_int_equal(pay_outbox_pending(t.b.pay, 0, items, 4), 2);
    assert_true(items[0].seq == 3 && items[1].seq == 4 && items[1].payment_id == o[3].id);
    assert_int_equal(pay_outbox_pending(t.b.pay, 4, items, 4), 1);
    assert_true(items[0].seq == 4);
    assert_int_equal(pay_outbox_pending(t.b.pay, 0, items, 1), 1);
    assert_true(items[0].seq == 3);
    two_free(&t);
}

static void expect_invalid(fx_t *f, const pay_request_t *r, pay_code_t code) {
    u128 h = pay_state_hash(f->pay), lh = ledger_state_hash(f->ledger);
    pay_object_t o = fx_apply(f, r);
    fx_assert_code(&o, r->kind, code);
    assert_true(pay_state_hash(f->pay) == h && ledger_state_hash(f->ledger) == lh);
}

static void test_invalid(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 16);
    pay_request_t ro = rq_order(MERCHANT, BUYER, 10, "i1", 1);
    pay_object_t order = fx_apply(&t.m, &ro);
    fx_assert_code(&order, PAY_KIND_ORDER, PAY_CREATED);

    /* Orders. */
    /* A buyer of M pays locally: the gateway's table disagrees with the cells (retried). */
    pay_request_t r = rq_order(MERCHANT, M_BUYER, 10, "i2", 0);
    expect_invalid(&t.m, &r, PAY_ERR_WRONG_CELL);
    r = rq_order(13, BUYER, 10, "i2", 0); /* no such merchant (stored with a key) */
    expect_invalid(&t.m, &r, PAY_ERR_NOT_FOUND);
    r = rq_order(B_MERCHANT, BUYER, 10, "i2", 2); /* routed by the merchant: B's */
    expect_invalid(&t.m, &r, PAY_ERR_WRONG_CELL);
    r = rq_order(MERCHANT, BUYER, 10, "i2", 0);
    r.payment_id = order.id;
    expect_invalid(&t.m, &r, PAY_ERR_INVALID);
    r = rq_order(MERCHANT, BUYER, 10, "i2", 0);
    r.peer_cell = CELL_M; /* the buyer's cell can be any but the merchant's own */
    expect_invalid(&t.m, &r, PAY_ERR_INVALID);
    r.peer_cell = PAY_CELL_MAX + 1;
    expect_invalid(&t.m, &r, PAY_ERR_INVALID);
    r = rq_order(MERCHANT, BUYER, 10, "i2", 0);
    r.code = PAY_ERR_NOT_FOUND;
    expect_invalid(&t.m, &r, PAY_ERR_INVALID);
    r = rq_order(MERCHANT, BUYER, 10, "", 0);
    expect_invalid(&t.m, &r, PAY_ERR_INVALID);
    r = rq_order(MERCHANT, BUYER, 0, "i2", 0);
    expect_invalid(&t.m, &r, PAY_ERR_INVALID);
    r = rq_order(MERCHANT, BUYER, 10, "i2", 0);
    r.reserved_1 = 1;
    expect_invalid(&t.m, &r, PAY_ERR_INVALID);

    /* Payments of an order. */
    pay_request_t x = rq_xpay(&order);
    x.peer_cell = CELL_B; /* its own cell (and not the cell in the id) */
    expect_invalid(&t.b, &x, PAY_ERR_INVALID);
    x = rq_xpay(&order);
    x.peer_cell = PAY_CELL_MAX + 1;
    expect_invalid(&t.b, &x, PAY_ERR_INVALID);
    x = rq_xpay(&order);
    x.peer_cell = 3; /* not the cell that drew the id */
    expect_invalid(&t.b, &x, PAY_ERR_INVALID);
    x = rq_xpay(&order);
    x.idem_key = 0;
    expect_invalid(&t.b, &x, PAY_ERR_INVALID);
    x = rq_xpay(&order);
    x.actor = B_MERCHANT; /* a merchant of B: a local payment by the cells' zones */
    expect_invalid(&t.b, &x, PAY_ERR_WRONG_CELL);
    x = rq_xpay(&order);
    x.uid = B_BUYER_2; /* the id is another buyer's */
    expect_invalid(&t.b, &x, PAY_ERR_INVALID);
    x = rq_xpay(&order);
    x.payment_id = pay_leg_id(order.id);
    x.idem_key = x.payment_id;
    expect_invalid(&t.b, &x, PAY_ERR_INVALID);
    x = rq_xpay(&order);
    x.code = PAY_ERR_NOT_FOUND;
    expect_invalid(&t.b, &x, PAY_ERR_INVALID);
    x = rq_xpay(&order);
    expect_invalid(&t.m, &x, PAY_ERR_WRONG_CELL); /* routed by the buyer */
    /* A local payment names no peer cell; a merchant of another cell: a wrong table. */
    pay_request_t lp = rq_payment(B_MERCHANT, BUYER, CNY(), 1, "lp");
    lp.peer_cell = CELL_M;
    expect_invalid(&t.b, &lp, PAY_ERR_INVALID);
    lp = rq_payment(MERCHANT, BUYER, CNY(), 1, "lp");
    lp.idem_key = 5;
    lp.body_hash = 5;
    expect_invalid(&t.b, &lp, PAY_ERR_WRONG_CELL);

    /* Credits. */
    x = rq_xpay(&order);
    ok(&t.b, &x, PAY_KIND_PAYMENT, PAY_CREATED);
    pay_outbox_item_t it = outbox_item(&t, order.id);
    pay_request_t c = rq_credit(&it);
    c.idem_key = 1;
    expect_invalid(&t.m, &c, PAY_ERR_INVALID);
    c = rq_credit(&it);
    c.peer_cell = CELL_M;
    expect_invalid(&t.m, &c, PAY_ERR_INVALID);
    c = rq_credit(&it);
    c.peer_cell = PAY_CELL_MAX + 1;
    expect_invalid(&t.m, &c, PAY_ERR_INVALID);
    c = rq_credit(&it);
    c.uid = B_BUYER_2; /* not the id's buyer */
    expect_invalid(&t.m, &c, PAY_ERR_INVALID);
    c = rq_credit(&it);
    c.payment_id = ((u128)BUYER << 64) | ((u128)CELL_B << 40) | 1; /* drawn by another cell */
    expect_invalid(&t.m, &c, PAY_ERR_INVALID);
    c = rq_credit(&it);
    c.uid = M_BUYER; /* a buyer of M: no cross-cell payment */
    c.payment_id = ((u128)M_BUYER << 64) | ((u128)CELL_M << 40) | 1;
    expect_invalid(&t.m, &c, PAY_ERR_INVALID);
    c = rq_credit(&it);
    expect_invalid(&t.b, &c, PAY_ERR_WRONG_CELL); /* routed by the merchant */

    /* Acks and releases. */
    pay_request_t a = rq_ack(order.id);
    a.idem_key = 3;
    expect_invalid(&t.b, &a, PAY_ERR_INVALID);
    a = rq_ack(order.id);
    a.uid = B_BUYER_2;
    expect_invalid(&t.b, &a, PAY_ERR_INVALID);
    a = rq_ack(order.id);
    expect_invalid(&t.m, &a, PAY_ERR_WRONG_CELL);
    pay_request_t rel = rq_release(MERCHANT, order.id, PAY_ERR_NOT_FOUND);
    rel.idem_key = 4;
    expect_invalid(&t.m, &rel, PAY_ERR_INVALID);
    rel = rq_release(MERCHANT, 0, PAY_ERR_NOT_FOUND);
    expect_invalid(&t.m, &rel, PAY_ERR_INVALID);
    rel = rq_release(0, order.id, PAY_ERR_NOT_FOUND);
    expect_invalid(&t.m, &rel, PAY_ERR_INVALID);

    /* Refund of a cross-cell payment: not built (TCC), not stored under the key. */
    pay_request_t rf = rq_refund(MERCHANT, order.id, 1, "rf");
    rf.idem_key = 6;
    rf.body_hash = 6;
    expect_invalid(&t.b, &rf, PAY_ERR_CROSS_CELL);
    two_free(&t);
}

/* ---- Images ---- */

typedef void (*corrupt_fn)(ledger_region_t *r, uint32_t n);

static pay_t *image_copy(const fx_t *f, const char **err, corrupt_fn corrupt) {
    pay_image_header_t h;
    pay_image_header(f->pay, &h);
    assert_null(pay_image_check(&h, &f->config));
    ledger_region_t src[PAY_IMAGE_REGIONS], dst[PAY_IMAGE_REGIONS];
    uint32_t n = pay_image_regions(f->pay, &h, src);
    pay_t *to = pay_create(&f->config);
    assert_non_null(to);
    assert_int_equal(pay_image_restore_regions(to, &h, dst), n);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(src[i].size, dst[i].size);
        if (src[i].size) memcpy(dst[i].ptr, src[i].ptr, src[i].size);
    }
    if (corrupt) corrupt(dst, n);
    *err = pay_image_finish(to, &h);
    return to;
}

/* Regions: 0 merchants, 1 users, 2 payments, 3 refunds, 4 top-ups, 5 keys, 6 orders, 7 and 8
 * the outbox (from its head to the array's end, then from 0), 9 refund activities and
 * branches. */
static unsigned char *outbox_first_row(ledger_region_t *r, uint32_t n) {
    assert_int_equal(n, 10);
    return r[7].size ? r[7].ptr : r[8].ptr;
}

static void corrupt_outbox_amount(ledger_region_t *r, uint32_t n) {
    outbox_first_row(r, n)[16] ^= 1; /* pay_outbox_row_t.amount */
}

static void corrupt_outbox_acked(ledger_region_t *r, uint32_t n) {
    outbox_first_row(r, n)[64] = 1; /* .acked of the head: it would have been reclaimed */
}

static void corrupt_order_state(ledger_region_t *r, uint32_t n) {
    assert_true(n == 10 && r[6].size >= 2 * 192);
    /* Row 1 (order "a") is credited and holds its out_trade_no: say failed. */
    ((unsigned char *)r[6].ptr)[192 + 92] = 2; /* .state */
}

static void corrupt_payment_credit(ledger_region_t *r, uint32_t n) {
    assert_true(n == 10 && r[2].size >= 176);
    /* The last payment row is credited (its record acknowledged); say pending. */
    unsigned char *row = (unsigned char *)r[2].ptr + r[2].size - 176;
    row[164] = 1; /* .credit */
}

static void test_image(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 3);
    /* M: a credited, a failed and a reserved order. B: the outbox wraps around its ring, with
     * an acknowledged record behind an unacknowledged head. */
    pay_object_t o[6], paid;
    const char *otn[6] = {"a", "b", "c", "d", "e", "f"};
    pay_request_t ro = rq_order(MERCHANT, BUYER, 9999, "g", 7);
    pay_object_t big = fx_apply(&t.m, &ro);
    pay_request_t rx = rq_xpay(&big);
    ok(&t.b, &rx, PAY_KIND_PAYMENT, PAY_ERR_INSUFFICIENT_FUNDS);
    pay_request_t rel = rq_release(MERCHANT, big.id, PAY_ERR_INSUFFICIENT_FUNDS);
    ok(&t.m, &rel, PAY_KIND_RELEASE, PAY_OK);
    for (int i = 0; i < 3; i++) {
        paid = order_and_pay(&t, 10 + (u128)i, otn[i], (u128)(i + 1), &o[i]);
        fx_assert_code(&paid, PAY_KIND_PAYMENT, PAY_CREATED);
    }
    for (int i = 0; i < 2; i++) {
        pay_outbox_item_t it = outbox_item(&t, o[i].id);
        pay_request_t rc = rq_credit(&it), ra = rq_ack(o[i].id);
        ok(&t.m, &rc, PAY_KIND_CREDIT, PAY_CREATED);
        ok(&t.b, &ra, PAY_KIND_ACK, PAY_OK);
    }
    for (int i = 3; i < 5; i++) {
        paid = order_and_pay(&t, 10 + (u128)i, otn[i], (u128)(i + 1), &o[i]);
        fx_assert_code(&paid, PAY_KIND_PAYMENT, PAY_CREATED);
    }
    pay_request_t ra = rq_ack(o[4].id); /* behind the head (o[2]) */
    ok(&t.b, &ra, PAY_KIND_ACK, PAY_OK);
    ro = rq_order(MERCHANT, BUYER, 5, "h", 8); /* stays reserved */
    fx_assert_code((pay_object_t[]){fx_apply(&t.m, &ro)}, PAY_KIND_ORDER, PAY_CREATED);
    pay_image_header_t h;
    pay_image_header(t.b.pay, &h);
    assert_true(h.outbox_count == 3 && h.outbox_seq == 5);

    fx_t *cells[2] = {&t.m, &t.b};
    for (int c = 0; c < 2; c++) {
        const char *err = "unset";
        pay_t *copy = image_copy(cells[c], &err, NULL);
        assert_null(err);
        assert_true(pay_state_hash(copy) == pay_state_hash(cells[c]->pay));
        assert_int_equal(pay_outbox_backlog(copy), pay_outbox_backlog(cells[c]->pay));
        pay_destroy(copy);
    }
    /* The restored B goes on as the original: its outbox, acks, replays. */
    const char *err = "unset";
    pay_t *b2 = image_copy(&t.b, &err, NULL);
    pay_outbox_item_t items[4];
    assert_int_equal(pay_outbox_pending(b2, 0, items, 4), 2);
    assert_true(items[0].payment_id == o[2].id && items[1].payment_id == o[3].id);
    pay_object_t a, b;
    uint64_t clock = t.b.clock;
    ra = rq_ack(o[2].id);
    pay_apply(b2, t.b.ledger, &clock, &ra, &a);
    pay_apply(t.b.pay, t.b.ledger, &t.b.clock, &ra, &b);
    assert_memory_equal(&a, &b, sizeof a);
    assert_true(pay_state_hash(b2) == pay_state_hash(t.b.pay));
    assert_int_equal(pay_outbox_backlog(b2), 1);
    pay_destroy(b2);
    /* The restored M: the failed order's key answers the refusal, otn's as before. */
    pay_t *m2 = image_copy(&t.m, &err, NULL);
    ro = rq_order(MERCHANT, BUYER, 9999, "g", 7);
    clock = t.m.clock;
    pay_apply(m2, t.m.ledger, &clock, &ro, &a);
    assert_true(a.replayed == 1 && a.code == PAY_ERR_INSUFFICIENT_FUNDS);
    ro = rq_order(MERCHANT, BUYER, 1, "h", 20);
    pay_apply(m2, t.m.ledger, &clock, &ro, &a);
    assert_int_equal(a.code, PAY_ERR_DUPLICATE_OUT_TRADE_NO);
    ro = rq_order(MERCHANT, BUYER, 1, "a", 21);
    pay_apply(m2, t.m.ledger, &clock, &ro, &a);
    assert_int_equal(a.code, PAY_ERR_DUPLICATE_OUT_TRADE_NO);
    ro = rq_order(MERCHANT, BUYER, 1, "g", 22);
    pay_apply(m2, t.m.ledger, &clock, &ro, &a);
    assert_int_equal(a.code, PAY_CREATED);
    pay_destroy(m2);

    /* Corrupted images are refused. */
    static const corrupt_fn bad_b[] = {corrupt_outbox_amount, corrupt_outbox_acked,
                                       corrupt_payment_credit};
    for (size_t i = 0; i < sizeof bad_b / sizeof bad_b[0]; i++) {
        pay_t *copy = image_copy(&t.b, &err, bad_b[i]);
        assert_non_null(err);
        pay_destroy(copy);
    }
    pay_t *copy = image_copy(&t.m, &err, corrupt_order_state);
    assert_non_null(err);
    pay_destroy(copy);
    /* Headers: an outbox beyond the capacity, and an image of version 1, refused by name. */
    pay_image_header(t.b.pay, &h);
    pay_config_t small = t.b.config;
    small.outbox_max = 1;
    assert_non_null(pay_image_check(&h, &small));
    small = t.m.config;
    small.orders_max = 1;
    pay_image_header(t.m.pay, &h);
    assert_non_null(pay_image_check(&h, &small));
    h.magic = 0x314547414D594150ull; /* "PAYMAGE1" */
    const char *why = pay_image_check(&h, &t.m.config);
    assert_non_null(why);
    assert_non_null(strstr(why, "version 1"));
    two_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_happy_path),      cmocka_unit_test(test_out_trade_no),
        cmocka_unit_test(test_refused_release), cmocka_unit_test(test_credit_reordered),
        cmocka_unit_test(test_outbox_full),     cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_image),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

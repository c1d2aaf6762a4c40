/* Resolving cross-cell orders left reserved (docs/cross-cell.md, pay.h: resolve): the merchant's
 * cell M (cell 1, uids 10..19) lists its stale orders, the buyer's cell B (cell 2, uids 20..29)
 * answers PAY_KIND_RESOLVE with the payment, its stored refusal or a tombstone, and M releases
 * what B did not pay. The test plays the gateway and M's relay. */
#include <stdio.h>

#include "pay_test_util.h"

#define CELL_M 1u
#define CELL_B 2u
#define MERCHANT 11u
#define BUYER 21u      /* B, 1000 CNY */
#define POOR 23u       /* B, nothing */
#define B_MERCHANT 22u /* a merchant of B */
#define AGE 5000u      /* older_than, ns */

typedef struct two {
    fx_t m, b;
} two_t;

static void two_init(two_t *t, uint32_t cap) {
    pay_config_t pm = pay_test_cell_config(CELL_M, cap), pb = pay_test_cell_config(CELL_B, cap);
    fx_init(&t->m, &pm, 64);
    fx_init(&t->b, &pb, 64);
    pay_request_t r = rq_merchant(MERCHANT, 1);
    fx_ok(&t->m, &r, PAY_KIND_MERCHANT, PAY_CREATED);
    r = rq_merchant(B_MERCHANT, 2);
    fx_ok(&t->b, &r, PAY_KIND_MERCHANT, PAY_CREATED);
    r = rq_user(BUYER, CNY());
    fx_ok(&t->b, &r, PAY_KIND_USER, PAY_CREATED);
    r = rq_user(POOR, CNY());
    fx_ok(&t->b, &r, PAY_KIND_USER, PAY_CREATED);
    r = rq_topup(BUYER, CNY(), 1000);
    fx_ok(&t->b, &r, PAY_KIND_TOPUP, PAY_CREATED);
}

static void two_free(two_t *t) {
    fx_free(&t->m);
    fx_free(&t->b);
}

/* The gateway's order: the buyer's cell named (peer_cell), the API body's hash. */
static pay_request_t rq_order(uint64_t buyer, u128 amount, const char *otn, u128 key) {
    pay_request_t r = {.kind = PAY_KIND_ORDER,
                       .actor = MERCHANT,
                       .uid = buyer,
                       .currency = CNY(),
                       .amount = amount,
                       .funding = 1,
                       .idem_key = key,
                       .body_hash = key + 1000,
                       .peer_cell = CELL_B};
    snprintf(r.text, sizeof r.text, "%s", otn);
    return r;
}

static pay_object_t order(two_t *t, uint64_t buyer, u128 amount, const char *otn, u128 key) {
    pay_request_t r = rq_order(buyer, amount, otn, key);
    return fx_ok(&t->m, &r, PAY_KIND_ORDER, PAY_CREATED);
}

/* The payment of an order in B, as the gateway sends it (the same body hash as the order's). */
static pay_request_t rq_xpay(const pay_object_t *o, u128 body_hash) {
    pay_request_t r = rq_payment(o->merchant, o->uid, o->currency, o->amount, "");
    memcpy(r.text, o->text, PAY_TEXT_MAX);
    r.payment_id = o->id;
    r.idem_key = o->id;
    r.body_hash = body_hash;
    r.peer_cell = CELL_M;
    return r;
}

/* M's relay: the stale orders, at M's clock plus `later`. */
static uint32_t stale(const two_t *t, uint64_t later, pay_order_stale_t *out, uint32_t max) {
    return pay_orders_stale(t->m.pay, t->m.clock + later, AGE, 0, out, max);
}

static pay_request_t rq_resolve(const pay_order_stale_t *s) {
    return (pay_request_t){.kind = PAY_KIND_RESOLVE,
                           .payment_id = s->payment_id,
                           .actor = s->merchant,
                           .uid = s->buyer,
                           .body_hash = s->body_hash,
                           .peer_cell = CELL_M};
}

static pay_request_t rq_release(u128 payment_id, uint8_t code) {
    return (pay_request_t){
        .kind = PAY_KIND_RELEASE, .actor = MERCHANT, .payment_id = payment_id, .code = code};
}

/* The one stale order of M (asserting there is exactly one, and what it says). */
static pay_order_stale_t only_stale(const two_t *t, const pay_object_t *o) {
    pay_order_stale_t s[4];
    assert_int_equal(stale(t, AGE, s, 4), 1);
    assert_true(s[0].payment_id == o->id && s[0].buyer == o->uid && s[0].merchant == MERCHANT);
    assert_int_equal(s[0].peer_cell, CELL_B);
    return s[0];
}

static u128 total_hash(const fx_t *f) {
    return pay_state_hash(f->pay) ^ ledger_state_hash(f->ledger);
}

/* ---- Tests ---- */

/* Listed: reserved, old enough, naming its buyer's cell; oldest first; the order's body hash. */
static void test_stale_listing(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 16);
    pay_order_stale_t s[4];
    pay_object_t a = order(&t, BUYER, 10, "a", 1);
    pay_request_t r = rq_order(BUYER, 10, "nocell", 2);
    r.peer_cell = 0; /* a gateway that does not name the buyer's cell: never resolved */
    fx_ok(&t.m, &r, PAY_KIND_ORDER, PAY_CREATED);
    pay_object_t b = order(&t, POOR, 20, "b", 3);
    assert_int_equal(stale(&t, 0, s, 4), 0); /* too young */
    assert_int_equal(stale(&t, AGE, s, 4), 2);
    assert_true(s[0].payment_id == a.id && s[1].payment_id == b.id);
    assert_true(s[0].body_hash == 1001 && s[1].body_hash == 1003);
    assert_true(s[1].buyer == POOR && s[1].peer_cell == CELL_B);
    assert_int_equal(stale(&t, AGE, s, 1), 1); /* max */
    assert_true(s[0].payment_id == a.id);
    /* Released: no longer listed. */
    r = rq_release(a.id, PAY_ERR_CANCELLED);
    fx_ok(&t.m, &r, PAY_KIND_RELEASE, PAY_OK);
    assert_int_equal(stale(&t, AGE, s, 4), 1);
    assert_true(s[0].payment_id == b.id);
    /* The order's own cell as its buyer's: invalid. */
    r = rq_order(BUYER, 10, "c", 4);
    r.peer_cell = CELL_M;
    fx_ok(&t.m, &r, PAY_KIND_ORDER, PAY_ERR_INVALID);
    two_free(&t);
}

/* B paid it: the resolve answers the payment, ok; M waits for the credit (nothing released). */
static void test_resolve_paid(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 16);
    pay_object_t o = order(&t, BUYER, 300, "p", 1);
    pay_request_t x = rq_xpay(&o, 1001);
    fx_ok(&t.b, &x, PAY_KIND_PAYMENT, PAY_CREATED);
    pay_order_stale_t s = only_stale(&t, &o);
    pay_request_t rv = rq_resolve(&s);
    u128 h = total_hash(&t.b);
    pay_object_t a = fx_ok(&t.b, &rv, PAY_KIND_PAYMENT, PAY_OK);
    assert_true(a.id == o.id && a.amount == 300 && a.merchant_credit == 1);
    assert_true(total_hash(&t.b) == h); /* asked, nothing changed */
    /* The credit arrives: no longer stale. */
    pay_outbox_item_t it;
    assert_int_equal(pay_outbox_pending(t.b.pay, 0, &it, 1), 1);
    pay_request_t c = {.kind = PAY_KIND_CREDIT,
                       .actor = it.merchant,
                       .uid = it.buyer,
                       .payment_id = it.payment_id,
                       .amount = it.amount,
                       .currency = it.currency,
                       .peer_cell = CELL_B};
    fx_ok(&t.m, &c, PAY_KIND_CREDIT, PAY_CREATED);
    pay_order_stale_t none[2];
    assert_int_equal(stale(&t, AGE, none, 2), 0);
    two_free(&t);
}

/* B refused it (stored under key P): the resolve answers that refusal; the release with it
 * frees the out_trade_no and the order's key answers the refusal. */
static void test_resolve_refused(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 16);
    pay_object_t o = order(&t, POOR, 300, "r", 1);
    pay_request_t x = rq_xpay(&o, 1001);
    fx_ok(&t.b, &x, PAY_KIND_PAYMENT, PAY_ERR_INSUFFICIENT_FUNDS);
    pay_order_stale_t s = only_stale(&t, &o);
    pay_request_t rv = rq_resolve(&s);
    u128 h = total_hash(&t.b);
    fx_ok(&t.b, &rv, PAY_KIND_PAYMENT, PAY_ERR_INSUFFICIENT_FUNDS);
    assert_true(total_hash(&t.b) == h);
    pay_request_t rl = rq_release(o.id, PAY_ERR_INSUFFICIENT_FUNDS);
    fx_ok(&t.m, &rl, PAY_KIND_RELEASE, PAY_OK);
    pay_request_t again = rq_order(POOR, 300, "r", 1);
    pay_object_t k = fx_ok(&t.m, &again, PAY_KIND_PAYMENT, PAY_ERR_INSUFFICIENT_FUNDS);
    assert_int_equal(k.replayed, 1);
    two_free(&t);
}

/* Nothing in B: the tombstone. A late payment of P is answered cancelled (replayed) and
 * moves nothing; another body under key P is a conflict; the resolve repeated changes nothing;
 * the release with cancelled frees the out_trade_no and the order's key answers cancelled. */
static void test_resolve_tombstone(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 16);
    pay_object_t o = order(&t, BUYER, 300, "t", 1);
    pay_order_stale_t s = only_stale(&t, &o);
    pay_request_t rv = rq_resolve(&s);
    pay_object_t a = fx_ok(&t.b, &rv, PAY_KIND_PAYMENT, PAY_ERR_CANCELLED);
    assert_int_equal(a.replayed, 0);
    u128 h = total_hash(&t.b);
    fx_ok(&t.b, &rv, PAY_KIND_PAYMENT, PAY_ERR_CANCELLED); /* repeated */
    assert_true(total_hash(&t.b) == h);
    pay_request_t late = rq_xpay(&o, 1001);
    pay_object_t l = fx_ok(&t.b, &late, PAY_KIND_PAYMENT, PAY_ERR_CANCELLED);
    assert_int_equal(l.replayed, 1);
    late.body_hash = 9;
    fx_ok(&t.b, &late, PAY_KIND_PAYMENT, PAY_ERR_IDEMPOTENCY_CONFLICT);
    assert_true(total_hash(&t.b) == h);
    assert_true(fx_balance(&t.b, BUYER, CNY()) == 1000);
    assert_int_equal(pay_outbox_backlog(t.b.pay), 0);
    pay_query_t q = {.kind = PAY_Q_PAYMENT, .id = o.id};
    pay_object_t out[PAY_LIST_MAX + 2];
    assert_int_equal(fx_query(&t.b, &q, out), 1);
    assert_int_equal(out[0].code, PAY_ERR_NOT_FOUND);
    /* M releases with B's answer; again: ok. */
    pay_request_t rl = rq_release(o.id, PAY_ERR_CANCELLED);
    fx_ok(&t.m, &rl, PAY_KIND_RELEASE, PAY_OK);
    fx_ok(&t.m, &rl, PAY_KIND_RELEASE, PAY_OK);
    pay_order_stale_t none[2];
    assert_int_equal(stale(&t, AGE, none, 2), 0);
    pay_request_t retry = rq_order(BUYER, 300, "t", 1);
    pay_object_t k = fx_ok(&t.m, &retry, PAY_KIND_PAYMENT, PAY_ERR_CANCELLED);
    assert_int_equal(k.replayed, 1);
    order(&t, BUYER, 300, "t", 2); /* the out_trade_no is free again */
    /* Another kind of request that took key P (a raw top-up naming the merchant and P):
     * nothing to release on; the resolve is invalid and changes nothing. */
    pay_object_t o3 = order(&t, BUYER, 5, "u", 3);
    pay_request_t tu = rq_topup(BUYER, CNY(), 1);
    tu.actor = MERCHANT;
    tu.idem_key = o3.id;
    fx_ok(&t.b, &tu, PAY_KIND_TOPUP, PAY_CREATED);
    pay_order_stale_t s3[4];
    assert_int_equal(stale(&t, AGE, s3, 4), 2); /* the new "t", and "u" */
    assert_true(s3[1].payment_id == o3.id);
    rv = rq_resolve(&s3[1]);
    h = total_hash(&t.b);
    fx_ok(&t.b, &rv, PAY_KIND_RESOLVE, PAY_ERR_INVALID);
    assert_true(total_hash(&t.b) == h);
    two_free(&t);
}

/* A resolve's own errors change nothing: a key, an id not drawn by peer_cell for the buyer, a
 * merchant of B, an order of another merchant's payment; the idempotency ring full. */
static void test_resolve_invalid(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 4);
    pay_object_t o = order(&t, BUYER, 10, "i", 1);
    pay_order_stale_t s = only_stale(&t, &o);
    u128 h = total_hash(&t.b);
    pay_request_t r = rq_resolve(&s);
    r.idem_key = 5;
    fx_ok(&t.b, &r, PAY_KIND_RESOLVE, PAY_ERR_INVALID);
    r = rq_resolve(&s);
    r.peer_cell = 3; /* P was drawn by M */
    fx_ok(&t.b, &r, PAY_KIND_RESOLVE, PAY_ERR_INVALID);
    r = rq_resolve(&s);
    r.uid = POOR; /* P is BUYER's */
    fx_ok(&t.b, &r, PAY_KIND_RESOLVE, PAY_ERR_INVALID);
    r = rq_resolve(&s);
    r.actor = B_MERCHANT;
    fx_ok(&t.b, &r, PAY_KIND_RESOLVE, PAY_ERR_WRONG_CELL);
    r = rq_resolve(&s);
    r.code = PAY_ERR_CANCELLED;
    fx_ok(&t.b, &r, PAY_KIND_RESOLVE, PAY_ERR_INVALID);
    assert_true(total_hash(&t.b) == h);
    /* The payment P exists but is another merchant's: invalid. */
    pay_request_t x = rq_xpay(&o, 1001);
    fx_ok(&t.b, &x, PAY_KIND_PAYMENT, PAY_CREATED);
    r = rq_resolve(&s);
    r.actor = 12;
    fx_ok(&t.b, &r, PAY_KIND_RESOLVE, PAY_ERR_INVALID);
    /* B's ring full (4 keys kept 24 h): nothing stored, asked again later. */
    for (uint64_t i = 0; i < 3; i++) {
        pay_request_t tu = rq_topup(BUYER, CNY(), 1);
        tu.idem_key = 100 + i;
        fx_ok(&t.b, &tu, PAY_KIND_TOPUP, PAY_CREATED);
    }
    pay_object_t o2 = order(&t, BUYER, 10, "j", 2);
    pay_order_stale_t s2[4];
    assert_int_equal(stale(&t, AGE, s2, 4), 2); /* "i" is paid, its credit not delivered */
    assert_true(s2[1].payment_id == o2.id);
    r = rq_resolve(&s2[1]);
    h = total_hash(&t.b);
    fx_ok(&t.b, &r, PAY_KIND_RESOLVE, PAY_ERR_FULL);
    assert_true(total_hash(&t.b) == h);
    two_free(&t);
}

/* Images: M's orders keep the buyer's cell and body hash, B's tombstone survives. */
static void test_resolve_image(void **state) {
    (void)state;
    two_t t;
    two_init(&t, 16);
    pay_object_t o = order(&t, BUYER, 300, "img", 1);
    pay_object_t done = order(&t, BUYER, 5, "done", 2);
    pay_request_t rl = rq_release(done.id, PAY_ERR_NOT_FOUND);
    fx_ok(&t.m, &rl, PAY_KIND_RELEASE, PAY_OK);
    fx_restart(&t.m);
    pay_order_stale_t s = only_stale(&t, &o);
    assert_true(s.body_hash == 1001);
    pay_request_t rv = rq_resolve(&s);
    fx_ok(&t.b, &rv, PAY_KIND_PAYMENT, PAY_ERR_CANCELLED);
    fx_restart(&t.b);
    pay_request_t late = rq_xpay(&o, 1001);
    fx_ok(&t.b, &late, PAY_KIND_PAYMENT, PAY_ERR_CANCELLED);
    assert_true(fx_balance(&t.b, BUYER, CNY()) == 1000);
    /* A corrupt order row (its buyer's cell this cell's own) is refused. */
    pay_image_header_t h;
    pay_image_header(t.m.pay, &h);
    ledger_region_t src[PAY_IMAGE_REGIONS], dst[PAY_IMAGE_REGIONS];
    uint32_t n = pay_image_regions(t.m.pay, &h, src);
    pay_t *to = pay_create(&t.m.config);
    assert_int_equal(pay_image_restore_regions(to, &h, dst), n);
    for (uint32_t i = 0; i < n; i++)
        if (src[i].size) memcpy(dst[i].ptr, src[i].ptr, src[i].size);
    uint32_t peer_off = 176; /* pay_order_row_t.peer_cell */
    memcpy((unsigned char *)dst[6].ptr + peer_off, &(uint32_t){CELL_M}, 4);
    assert_non_null(pay_image_finish(to, &h));
    pay_destroy(to);
    two_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stale_listing),   cmocka_unit_test(test_resolve_paid),
        cmocka_unit_test(test_resolve_refused), cmocka_unit_test(test_resolve_tombstone),
        cmocka_unit_test(test_resolve_invalid), cmocka_unit_test(test_resolve_image),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

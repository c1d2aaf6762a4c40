/* The payments layer (src/cell/pay.h): every request kind and every answer code, idempotency
 * (replay, conflict, 24 h expiry, the ring), full tables with nothing changed, routing, merchant
 * isolation, refund limits, list pagination and images. The randomized comparison against a
 * reference model is test_pay_random.c. */
#include "pay_test_util.h"

#include "base/constants.h"

#define OBJS (PAY_LIST_MAX + 2)

/* A state with merchant 1001, users 2001 and 2002 (CNY), 2001 topped up with 1000. */
static void setup_basic(fx_t *f) {
    pay_config_t pc = pay_test_config(64);
    fx_init(f, &pc, 256);
    pay_request_t r = rq_merchant(1001, 0x11);
    fx_assert_code((pay_object_t[]){fx_apply(f, &r)}, PAY_KIND_MERCHANT, PAY_CREATED);
    r = rq_user(2001, CNY());
    fx_assert_code((pay_object_t[]){fx_apply(f, &r)}, PAY_KIND_USER, PAY_CREATED);
    r = rq_user(2002, CNY());
    fx_assert_code((pay_object_t[]){fx_apply(f, &r)}, PAY_KIND_USER, PAY_CREATED);
    r = rq_topup(2001, CNY(), 1000);
    fx_assert_code((pay_object_t[]){fx_apply(f, &r)}, PAY_KIND_TOPUP, PAY_CREATED);
}

static void test_currency_pack(void **state) {
    (void)state;
    assert_int_equal(pay_currency_pack("CNY"), 'C' | 'N' << 8 | 'Y' << 16);
    assert_int_equal(pay_currency_pack("cny"), 0);
    assert_int_equal(pay_currency_pack("C1Y"), 0);
    char out[4];
    pay_currency_unpack(USD(), out);
    assert_string_equal(out, "USD");
}

static void test_merchant(void **state) {
    (void)state;
    fx_t f;
    pay_config_t pc = pay_test_config(8);
    fx_init(&f, &pc, 64);
    pay_request_t r = rq_merchant(1001, 0x5A);
    pay_object_t o = fx_apply(&f, &r);
    fx_assert_code(&o, PAY_KIND_MERCHANT, PAY_CREATED);
    assert_true(o.id == 1001);
    assert_int_equal(o.uid, 1001);
    assert_int_equal(o.created_at, f.clock / 1000000);
    assert_int_equal(o.secret[0], 0x5A);
    assert_int_equal(o.secret[31], 0x5A);
    assert_int_equal(o.replayed, 0);
    r.secret[0] = 1;
    o = fx_apply(&f, &r);
    fx_assert_code(&o, PAY_KIND_MERCHANT, PAY_ERR_MERCHANT_EXISTS);
    r = rq_merchant(0, 1);
    o = fx_apply(&f, &r);
    fx_assert_code(&o, PAY_KIND_MERCHANT, PAY_ERR_INVALID);
    r = rq_merchant(PAY_SYSTEM_UID, 1);
    o = fx_apply(&f, &r);
    fx_assert_code(&o, PAY_KIND_MERCHANT, PAY_ERR_INVALID);

    pay_object_t out[OBJS];
    pay_query_t q = {.kind = PAY_Q_MERCHANT, .uid = 1001};
    assert_int_equal(fx_query(&f, &q, out), 1);
    fx_assert_code(&out[0], PAY_KIND_MERCHANT, PAY_OK);
    assert_int_equal(out[0].secret[5], 0x5A); /* the first secret stays */
    q.uid = 1002;
    assert_int_equal(fx_query(&f, &q, out), 1);
    fx_assert_code(&out[0], PAY_KIND_MERCHANT, PAY_ERR_NOT_FOUND);
    fx_free(&f);
}

static void test_user(void **state) {
    (void)state;
    fx_t f;
    pay_config_t pc = pay_test_config(8);
    fx_init(&f, &pc, 64);
    pay_request_t r = rq_user(2001, CNY());
    pay_object_t o = fx_apply(&f, &r);
    fx_assert_code(&o, PAY_KIND_USER, PAY_CREATED);
    assert_true(o.id == pay_account_id(2001, PAY_ACCOUNT_USER, CNY()));
    assert_int_equal(o.uid, 2001);
    assert_int_equal(o.currency, CNY());
    pay_object_t again = fx_apply(&f, &r);
    fx_assert_code(&again, PAY_KIND_USER, PAY_OK);
    assert_true(again.id == o.id);
    assert_int_equal(again.created_at, o.created_at);
    r = rq_user(2001, USD());
    o = fx_apply(&f, &r);
    fx_assert_code(&o, PAY_KIND_USER, PAY_CREATED);
    r = rq_user(2001, 0);
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_USER, PAY_ERR_INVALID);
    r = rq_user(2001, pay_currency_pack("CNY") | 0x41000000u);
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_USER, PAY_ERR_INVALID);
    r = rq_user(PAY_SYSTEM_UID, CNY());
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_USER, PAY_ERR_INVALID);

    /* The account carries the flag that keeps it from going below zero. */
    u128 id = pay_account_id(2001, PAY_ACCOUNT_USER, CNY());
    ledger_account_t a;
    assert_int_equal(ledger_lookup_accounts(f.ledger, &id, 1, &a), 1);
    assert_int_equal(a.flags, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS);
    assert_int_equal(a.ledger, CNY());

    pay_object_t out[OBJS];
    pay_query_t q = {.kind = PAY_Q_USER, .uid = 2001, .currency = USD()};
    assert_int_equal(fx_query(&f, &q, out), 1);
    fx_assert_code(&out[0], PAY_KIND_USER, PAY_OK);
    assert_true(out[0].id == pay_account_id(2001, PAY_ACCOUNT_USER, USD()));
    q.currency = pay_currency_pack("EUR");
    fx_query(&f, &q, out);
    fx_assert_code(&out[0], PAY_KIND_USER, PAY_ERR_CURRENCY_MISMATCH);
    q.uid = 9;
    fx_query(&f, &q, out);
    fx_assert_code(&out[0], PAY_KIND_USER, PAY_ERR_NOT_FOUND);
    q = (pay_query_t){.kind = PAY_Q_BALANCE, .uid = 2001, .currency = pay_currency_pack("EUR")};
    fx_query(&f, &q, out);
    fx_assert_code(&out[0], PAY_KIND_BALANCE, PAY_ERR_CURRENCY_MISMATCH);
    q.uid = 9;
    fx_query(&f, &q, out);
    fx_assert_code(&out[0], PAY_KIND_BALANCE, PAY_ERR_NOT_FOUND);
    fx_free(&f);
}

static void test_topup(void **state) {
    (void)state;
    fx_t f;
    pay_config_t pc = pay_test_config(8);
    fx_init(&f, &pc, 64);
    pay_request_t r = rq_topup(2001, CNY(), 500);
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_TOPUP, PAY_ERR_NOT_FOUND);
    r = rq_user(2001, CNY());
    fx_apply(&f, &r);
    r = rq_topup(2001, USD(), 500);
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_TOPUP, PAY_ERR_CURRENCY_MISMATCH);
    r = rq_topup(2001, CNY(), 0);
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_TOPUP, PAY_ERR_INVALID);
    uint64_t before = f.clock;
    r = rq_topup(2001, CNY(), 500);
    pay_object_t o = fx_apply(&f, &r);
    fx_assert_code(&o, PAY_KIND_TOPUP, PAY_CREATED);
    /* The bank account was created (one ledger call) and the transfer made (another). */
    assert_int_equal(f.clock, before + 4);
    assert_true(o.id == (((u128)2001 << 64) | ((u128)7 << 40) | 1));
    assert_true(o.amount == 500);
    assert_int_equal(o.uid, 2001);
    assert_int_equal(o.currency, CNY());
    assert_int_equal(o.created_at, f.clock / 1000000);
    assert_true(fx_balance(&f, 2001, CNY()) == 500);
    ledger_transfer_t t;
    assert_int_equal(ledger_lookup_transfers(f.ledger, &o.id, 1, &t), 1);
    assert_int_equal(t.code, 1);
    assert_int_equal(t.ledger, CNY());
    assert_true(t.debit_account_id == pay_account_id(PAY_SYSTEM_UID, PAY_ACCOUNT_BANK, CNY()));
    o = fx_apply(&f, &r);
    assert_true(o.id == (((u128)2001 << 64) | ((u128)7 << 40) | 2));
    assert_int_equal(f.clock, before + 6);
    assert_true(fx_balance(&f, 2001, CNY()) == 1000);

    /* Overflow of the user's credits: refused, nothing moved. */
    r = rq_topup(2001, CNY(), U128_MAX - 999);
    o = fx_apply(&f, &r);
    fx_assert_code(&o, PAY_KIND_TOPUP, PAY_ERR_OVERFLOW);
    assert_true(fx_balance(&f, 2001, CNY()) == 1000);
    assert_null(ledger_check_invariants(f.ledger));
    fx_free(&f);
}

static void test_payment(void **state) {
    (void)state;
    fx_t f;
    setup_basic(&f);
    pay_request_t r = rq_payment(1001, 2001, CNY(), 300, "order-1");
    r.actor = 0;
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_PAYMENT, PAY_ERR_INVALID);
    r = rq_payment(1001, PAY_SYSTEM_UID, CNY(), 300, "order-1");
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_PAYMENT, PAY_ERR_INVALID);
    r = rq_payment(1001, 2001, CNY(), 300, "");
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_PAYMENT, PAY_ERR_INVALID);
    r = rq_payment(1001, 2001, CNY(), 300, "order-1");
    r.funding = 2;
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_PAYMENT, PAY_ERR_INVALID);
    r = rq_payment(1001, 2001, CNY(), 300, "order-1");
    r.text[10] = 'x'; /* after the NUL: not NUL-padded */
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_PAYMENT, PAY_ERR_INVALID);
    r = rq_payment(1001, 2001, CNY(), 300, "order-1");
    r.reserved[3] = 1;
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_PAYMENT, PAY_ERR_INVALID);
    r = rq_payment(1009, 2001, CNY(), 300, "order-1");
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_PAYMENT, PAY_ERR_NOT_FOUND);
    r = rq_payment(1001, 2009, CNY(), 300, "order-1");
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_PAYMENT, PAY_ERR_NOT_FOUND);
    r = rq_payment(1001, 2001, USD(), 300, "order-1");
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_PAYMENT, PAY_ERR_CURRENCY_MISMATCH);
    u128 hash = pay_state_hash(f.pay);
    r = rq_payment(1001, 2001, CNY(), 1001, "order-1");
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_PAYMENT,
                   PAY_ERR_INSUFFICIENT_FUNDS);
    /* Refused: not even the merchant's account was created. */
    u128 macc = pay_account_id(1001, PAY_ACCOUNT_MERCHANT, CNY());
    ledger_account_t a;
    assert_int_equal(ledger_lookup_accounts(f.ledger, &macc, 1, &a), 0);
    assert_true(pay_state_hash(f.pay) == hash);

    r = rq_payment(1001, 2001, CNY(), 300, "order-1");
    pay_object_t o = fx_apply(&f, &r);
    fx_assert_code(&o, PAY_KIND_PAYMENT, PAY_CREATED);
    assert_true(o.id >> 64 == 2001);
    assert_true(o.amount == 300);
    assert_true(o.refunded == 0);
    assert_int_equal(o.uid, 2001);
    assert_int_equal(o.merchant, 1001);
    assert_int_equal(o.currency, CNY());
    assert_int_equal(o.merchant_credit, 0);
    assert_string_equal(o.text, "order-1");
    assert_int_equal(o.created_at, f.clock / 1000000);
    assert_true(fx_balance(&f, 2001, CNY()) == 700);
    assert_int_equal(ledger_lookup_accounts(f.ledger, &macc, 1, &a), 1);
    assert_true(a.credits_posted == 300);
    assert_int_equal(a.flags, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS);
    ledger_transfer_t t;
    assert_int_equal(ledger_lookup_transfers(f.ledger, &o.id, 1, &t), 1);
    assert_int_equal(t.code, 2);
    assert_true(t.credit_account_id == macc);

    /* Same out_trade_no again (no idempotency key): refused, no money moves. */
    pay_object_t d = fx_apply(&f, &r);
    fx_assert_code(&d, PAY_KIND_PAYMENT, PAY_ERR_DUPLICATE_OUT_TRADE_NO);
    assert_true(fx_balance(&f, 2001, CNY()) == 700);

    /* Queries: the merchant and the operator see it; another merchant does not. */
    pay_object_t out[OBJS];
    pay_query_t q = {.kind = PAY_Q_PAYMENT, .id = o.id, .actor = 1001};
    assert_int_equal(fx_query(&f, &q, out), 1);
    o.code = PAY_OK;
    assert_memory_equal(&out[0], &o, sizeof o);
    q.actor = 0;
    fx_query(&f, &q, out);
    assert_memory_equal(&out[0], &o, sizeof o);
    q.actor = 1002;
    fx_query(&f, &q, out);
    fx_assert_code(&out[0], PAY_KIND_PAYMENT, PAY_ERR_NOT_FOUND);
    q = (pay_query_t){.kind = PAY_Q_PAYMENT, .id = o.id + 1000};
    fx_query(&f, &q, out);
    fx_assert_code(&out[0], PAY_KIND_PAYMENT, PAY_ERR_NOT_FOUND);
    assert_null(ledger_check_invariants(f.ledger));
    fx_free(&f);
}

static void test_refund(void **state) {
    (void)state;
    fx_t f;
    setup_basic(&f);
    pay_request_t r = rq_merchant(1002, 0x22);
    fx_apply(&f, &r);
    r = rq_payment(1001, 2001, CNY(), 300, "order-1");
    pay_object_t p = fx_apply(&f, &r);
    fx_assert_code(&p, PAY_KIND_PAYMENT, PAY_CREATED);

    r = rq_refund(1002, p.id, 10, "re-1"); /* another merchant: the payment is not its */
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_REFUND, PAY_ERR_NOT_FOUND);
    r = rq_refund(1001, p.id + 1, 10, "re-1");
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_REFUND, PAY_ERR_NOT_FOUND);
    r = rq_refund(0, p.id, 10, "re-1");
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_REFUND, PAY_ERR_INVALID);
    r = rq_refund(1001, p.id, 0, "re-1");
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_REFUND, PAY_ERR_INVALID);
    r = rq_refund(1001, p.id, 301, "re-1");
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_REFUND, PAY_ERR_REFUND_EXCEEDS);

    r = rq_refund(1001, p.id, 100, "re-1");
    pay_object_t o = fx_apply(&f, &r);
    fx_assert_code(&o, PAY_KIND_REFUND, PAY_CREATED);
    assert_true(o.payment_id == p.id);
    assert_true(o.amount == 100);
    assert_int_equal(o.uid, 2001);
    assert_int_equal(o.merchant, 1001);
    assert_int_equal(o.currency, CNY());
    assert_string_equal(o.text, "re-1");
    assert_true(o.id >> 64 == 2001);
    assert_true((uint64_t)o.id == ((uint64_t)p.id + 1));
    assert_true(fx_balance(&f, 2001, CNY()) == 800);
    ledger_transfer_t t;
    assert_int_equal(ledger_lookup_transfers(f.ledger, &o.id, 1, &t), 1);
    assert_int_equal(t.code, 3);
    assert_true(t.user_data_128 == p.id);

    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_REFUND,
                   PAY_ERR_DUPLICATE_OUT_REQUEST_NO);
    r = rq_refund(1001, p.id, 150, "re-2");
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_REFUND, PAY_CREATED);
    r = rq_refund(1001, p.id, 51, "re-3"); /* 100 + 150 + 51 > 300 */
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_REFUND, PAY_ERR_REFUND_EXCEEDS);
    r = rq_refund(1001, p.id, U128_MAX, "re-3"); /* overflows refunded: exceeds all the same */
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_REFUND, PAY_ERR_REFUND_EXCEEDS);
    r = rq_refund(1001, p.id, 50, "re-3");
    pay_object_t last = fx_apply(&f, &r);
    fx_assert_code(&last, PAY_KIND_REFUND, PAY_CREATED);
    assert_true(fx_balance(&f, 2001, CNY()) == 1000);

    pay_object_t out[OBJS];
    pay_query_t q = {.kind = PAY_Q_PAYMENT, .id = p.id};
    fx_query(&f, &q, out);
    assert_true(out[0].refunded == 300);
    q = (pay_query_t){.kind = PAY_Q_REFUND, .id = o.id, .actor = 1001};
    assert_int_equal(fx_query(&f, &q, out), 1);
    o.code = PAY_OK;
    assert_memory_equal(&out[0], &o, sizeof o);
    q.actor = 1002;
    fx_query(&f, &q, out);
    fx_assert_code(&out[0], PAY_KIND_REFUND, PAY_ERR_NOT_FOUND);

    /* The merchant's receivable emptied behind the payments layer's back: a refund the
     * payment would allow is insufficient_funds, and changes nothing. */
    r = rq_payment(1001, 2001, CNY(), 200, "order-2");
    pay_object_t p2 = fx_apply(&f, &r);
    fx_assert_code(&p2, PAY_KIND_PAYMENT, PAY_CREATED);
    u128 macc = pay_account_id(1001, PAY_ACCOUNT_MERCHANT, CNY());
    assert_true(ledger_test_set_balances(f.ledger, macc, 0, 500, 0, 500));
    u128 hash = pay_state_hash(f.pay);
    r = rq_refund(1001, p2.id, 10, "re-x");
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_REFUND, PAY_ERR_INSUFFICIENT_FUNDS);
    assert_true(pay_state_hash(f.pay) == hash);
    fx_free(&f);
}

static void test_idempotency(void **state) {
    (void)state;
    fx_t f;
    setup_basic(&f);
    pay_request_t r = rq_payment(1001, 2001, CNY(), 100, "order-1");
    r.idem_key = 77;
    r.body_hash = 5;
    pay_object_t first = fx_apply(&f, &r);
    fx_assert_code(&first, PAY_KIND_PAYMENT, PAY_CREATED);
    u128 hash = pay_state_hash(f.pay);
    u128 lhash = ledger_state_hash(f.ledger);
    uint64_t clock = f.clock;
    pay_object_t again = fx_apply(&f, &r);
    assert_int_equal(again.replayed, 1);
    again.replayed = 0;
    assert_memory_equal(&again, &first, sizeof first);
    assert_true(pay_state_hash(f.pay) == hash);
    assert_true(ledger_state_hash(f.ledger) == lhash);
    assert_int_equal(f.clock, clock);
    assert_true(fx_balance(&f, 2001, CNY()) == 900);

    pay_request_t c = r;
    c.body_hash = 6;
    c.amount = 5;
    fx_assert_code((pay_object_t[]){fx_apply(&f, &c)}, PAY_KIND_PAYMENT,
                   PAY_ERR_IDEMPOTENCY_CONFLICT);
    assert_true(pay_state_hash(f.pay) == hash);

    /* Scope is (actor, key): the same key of another merchant is another key. */
    pay_request_t m2 = rq_merchant(1002, 3);
    fx_apply(&f, &m2);
    pay_request_t o2 = rq_payment(1002, 2001, CNY(), 10, "order-1");
    o2.idem_key = 77;
    o2.body_hash = 9;
    fx_assert_code((pay_object_t[]){fx_apply(&f, &o2)}, PAY_KIND_PAYMENT, PAY_CREATED);

    /* An error answer is stored and replayed too, even once it would go otherwise. */
    pay_request_t t = rq_topup(2003, CNY(), 5);
    t.idem_key = 1;
    t.body_hash = 1;
    fx_assert_code((pay_object_t[]){fx_apply(&f, &t)}, PAY_KIND_TOPUP, PAY_ERR_NOT_FOUND);
    pay_request_t u = rq_user(2003, CNY());
    fx_apply(&f, &u);
    pay_object_t rep = fx_apply(&f, &t);
    fx_assert_code(&rep, PAY_KIND_TOPUP, PAY_ERR_NOT_FOUND);
    assert_int_equal(rep.replayed, 1);

    /* INVALID is not stored: the key is free for a valid request afterwards. */
    pay_request_t bad = rq_topup(2003, CNY(), 0);
    bad.idem_key = 2;
    bad.body_hash = 1;
    fx_assert_code((pay_object_t[]){fx_apply(&f, &bad)}, PAY_KIND_TOPUP, PAY_ERR_INVALID);
    bad.amount = 5;
    bad.body_hash = 2;
    pay_object_t ok = fx_apply(&f, &bad);
    fx_assert_code(&ok, PAY_KIND_TOPUP, PAY_CREATED);
    assert_int_equal(ok.replayed, 0);
    fx_free(&f);
}

static void test_idempotency_expiry_ring(void **state) {
    (void)state;
    fx_t f;
    pay_config_t pc = pay_test_config(16);
    pc.idempotency_max = 2;
    fx_init(&f, &pc, 64);
    pay_request_t r = rq_user(2001, CNY());
    fx_apply(&f, &r);
    pay_request_t t[4];
    for (int i = 0; i < 4; i++) {
        t[i] = rq_topup(2001, CNY(), (u128)(i + 1));
        t[i].idem_key = (u128)(100 + i);
        t[i].body_hash = 1;
    }
    fx_assert_code((pay_object_t[]){fx_apply(&f, &t[0])}, PAY_KIND_TOPUP, PAY_CREATED);
    f.clock += 1000;
    fx_assert_code((pay_object_t[]){fx_apply(&f, &t[1])}, PAY_KIND_TOPUP, PAY_CREATED);
    /* The ring is full of keys younger than 24 h: refused, nothing changed. */
    u128 hash = pay_state_hash(f.pay);
    u128 lhash = ledger_state_hash(f.ledger);
    fx_assert_code((pay_object_t[]){fx_apply(&f, &t[2])}, PAY_KIND_TOPUP, PAY_ERR_FULL);
    assert_true(pay_state_hash(f.pay) == hash);
    assert_true(ledger_state_hash(f.ledger) == lhash);
    /* Requests without a key still go through. */
    pay_request_t plain = rq_topup(2001, CNY(), 1000);
    fx_assert_code((pay_object_t[]){fx_apply(&f, &plain)}, PAY_KIND_TOPUP, PAY_CREATED);
    /* Replays of kept keys work while the ring is full. */
    pay_object_t rep = fx_apply(&f, &t[0]);
    assert_int_equal(rep.replayed, 1);

    /* 24 h after the first key: its row is reused for t[2]; t[1] is still kept. */
    f.clock += PAY_IDEMPOTENCY_NS - 1000;
    fx_assert_code((pay_object_t[]){fx_apply(&f, &t[2])}, PAY_KIND_TOPUP, PAY_CREATED);
    fx_assert_code((pay_object_t[]){fx_apply(&f, &t[3])}, PAY_KIND_TOPUP, PAY_ERR_FULL);
    rep = fx_apply(&f, &t[1]);
    assert_int_equal(rep.replayed, 1);
    /* t[0]'s key is gone: the same request applies afresh, once t[1]'s row expired. */
    fx_assert_code((pay_object_t[]){fx_apply(&f, &t[0])}, PAY_KIND_TOPUP, PAY_ERR_FULL);
    f.clock += 2000;
    pay_object_t fresh = fx_apply(&f, &t[0]);
    fx_assert_code(&fresh, PAY_KIND_TOPUP, PAY_CREATED);
    assert_int_equal(fresh.replayed, 0);
    assert_true(fx_balance(&f, 2001, CNY()) == 1 + 2 + 3 + 1000 + 1);

    /* A kept key that expired but whose row was not reused yet: the request applies afresh
     * and the key moves to a new row. */
    fx_t g;
    pc.idempotency_max = 4;
    fx_init(&g, &pc, 64);
    fx_apply(&g, &r);
    uint64_t stored = g.clock; /* a key's age counts from the clock its request started at */
    fx_assert_code((pay_object_t[]){fx_apply(&g, &t[0])}, PAY_KIND_TOPUP, PAY_CREATED);
    g.clock = stored + PAY_IDEMPOTENCY_NS - 1;
    pay_object_t x = fx_apply(&g, &t[0]);
    assert_int_equal(x.replayed, 1); /* 1 ns short of 24 h: still kept */
    g.clock = stored + PAY_IDEMPOTENCY_NS;
    x = fx_apply(&g, &t[0]);
    fx_assert_code(&x, PAY_KIND_TOPUP, PAY_CREATED);
    assert_int_equal(x.replayed, 0);
    x = fx_apply(&g, &t[0]);
    assert_int_equal(x.replayed, 1);
    assert_true(fx_balance(&g, 2001, CNY()) == 2);
    fx_free(&g);
    fx_free(&f);
}

/* Every table full: the answer is FULL and nothing changed, ledger included. */
static void assert_full_unchanged(fx_t *f, const pay_request_t *r, uint8_t kind) {
    u128 hash = pay_state_hash(f->pay);
    u128 lhash = ledger_state_hash(f->ledger);
    uint64_t clock = f->clock;
    pay_object_t o = fx_apply(f, r);
    fx_assert_code(&o, kind, PAY_ERR_FULL);
    assert_true(pay_state_hash(f->pay) == hash);
    assert_true(ledger_state_hash(f->ledger) == lhash);
    assert_int_equal(f->clock, clock);
}

static void test_full(void **state) {
    (void)state;
    fx_t f;
    pay_config_t pc = pay_test_config(1);
    pc.users_max = 2;
    fx_init(&f, &pc, 64);
    pay_request_t r = rq_merchant(1001, 1);
    fx_apply(&f, &r);
    r = rq_merchant(1002, 1);
    assert_full_unchanged(&f, &r, PAY_KIND_MERCHANT);
    r = rq_user(2001, CNY());
    fx_apply(&f, &r);
    r = rq_user(2002, CNY());
    fx_apply(&f, &r);
    r = rq_user(2003, CNY());
    assert_full_unchanged(&f, &r, PAY_KIND_USER);
    r = rq_topup(2001, CNY(), 100);
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_TOPUP, PAY_CREATED);
    assert_full_unchanged(&f, &r, PAY_KIND_TOPUP);
    r = rq_payment(1001, 2001, CNY(), 10, "a");
    pay_object_t p = fx_apply(&f, &r);
    fx_assert_code(&p, PAY_KIND_PAYMENT, PAY_CREATED);
    r = rq_payment(1001, 2001, CNY(), 10, "b");
    assert_full_unchanged(&f, &r, PAY_KIND_PAYMENT);
    r = rq_refund(1001, p.id, 1, "a");
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_REFUND, PAY_CREATED);
    r = rq_refund(1001, p.id, 1, "b");
    assert_full_unchanged(&f, &r, PAY_KIND_REFUND);
    fx_free(&f);

    /* The ledger's tables: a payment that would need a new merchant account when the
     * account table is full, and a top-up when the transfer table is full. */
    pc = pay_test_config(16);
    fx_init(&f, &pc, 3); /* user, bank, and one more account; 3 transfers */
    r = rq_merchant(1001, 1);
    fx_apply(&f, &r);
    r = rq_user(2001, CNY());
    fx_apply(&f, &r);
    r = rq_topup(2001, CNY(), 100);
    fx_apply(&f, &r);
    r = rq_user(2002, CNY());
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_USER, PAY_CREATED);
    r = rq_payment(1001, 2001, CNY(), 10, "a");
    assert_full_unchanged(&f, &r, PAY_KIND_PAYMENT);
    r = rq_user(2004, CNY());
    assert_full_unchanged(&f, &r, PAY_KIND_USER);
    r = rq_topup(2002, CNY(), 5);
    fx_apply(&f, &r);
    fx_apply(&f, &r); /* 3 transfers now */
    assert_full_unchanged(&f, &r, PAY_KIND_TOPUP);
    fx_free(&f);

    /* The clock at its end: nothing can be stamped any more. */
    pc = pay_test_config(16);
    fx_init(&f, &pc, 16);
    r = rq_user(2001, CNY());
    fx_apply(&f, &r);
    f.clock = CP_TIMESTAMP_MAX - 3;
    r = rq_topup(2001, CNY(), 5);
    assert_full_unchanged(&f, &r, PAY_KIND_TOPUP);
    fx_free(&f);
}

static void test_routing(void **state) {
    (void)state;
    fx_t f;
    pay_config_t pc = pay_test_config(16);
    cp_zones_add(&pc.zones, 1); /* uids 10..19, 1010..1019, ... */
    fx_init(&f, &pc, 64);
    pay_request_t r = rq_merchant(11, 1);
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_MERCHANT, PAY_CREATED);
    r = rq_user(12, CNY());
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_USER, PAY_CREATED);
    r = rq_topup(12, CNY(), 100);
    fx_apply(&f, &r);

    u128 hash = pay_state_hash(f.pay);
    uint64_t clock = f.clock;
    pay_request_t wrong[] = {
        rq_merchant(21, 1),
        rq_user(22, CNY()),
        rq_topup(23, CNY(), 1),
        rq_payment(11, 24, CNY(), 1, "x"),
        rq_refund(11, (u128)25 << 64 | 1, 1, "x"),
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        wrong[i].idem_key = 5;
        wrong[i].body_hash = 5;
        pay_object_t o = fx_apply(&f, &wrong[i]);
        assert_int_equal(o.code, PAY_ERR_WRONG_CELL);
    }
    assert_true(pay_state_hash(f.pay) == hash); /* nothing stored, not even the key */
    assert_int_equal(f.clock, clock);

    /* A local payment whose merchant is in another zone came by a wrong table: the gateway
     * sends a cross-cell one as an order there and a payment of the order here. */
    r = rq_payment(21, 12, CNY(), 10, "x");
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, PAY_KIND_PAYMENT, PAY_ERR_WRONG_CELL);
    r = rq_payment(11, 12, CNY(), 10, "x");
    pay_object_t p = fx_apply(&f, &r);
    fx_assert_code(&p, PAY_KIND_PAYMENT, PAY_CREATED);

    pay_object_t out[OBJS];
    pay_query_t q = {.kind = PAY_Q_BALANCE, .uid = 22, .currency = CNY()};
    fx_query(&f, &q, out);
    fx_assert_code(&out[0], PAY_KIND_BALANCE, PAY_ERR_WRONG_CELL);
    q = (pay_query_t){.kind = PAY_Q_PAYMENT, .id = (u128)22 << 64 | 1};
    fx_query(&f, &q, out);
    fx_assert_code(&out[0], PAY_KIND_PAYMENT, PAY_ERR_WRONG_CELL);
    q.id = p.id;
    fx_query(&f, &q, out);
    fx_assert_code(&out[0], PAY_KIND_PAYMENT, PAY_OK);
    fx_free(&f);
}

static void test_list(void **state) {
    (void)state;
    fx_t f;
    setup_basic(&f);
    pay_request_t r = rq_topup(2002, CNY(), 100);
    fx_apply(&f, &r);
    u128 ids[5];
    for (int i = 0; i < 5; i++) {
        char text[8] = "o-0";
        text[2] = (char)('0' + i);
        r = rq_payment(1001, 2001, CNY(), 10, text);
        pay_object_t o = fx_apply(&f, &r);
        fx_assert_code(&o, PAY_KIND_PAYMENT, PAY_CREATED);
        ids[i] = o.id;
        if (i == 2) {
            r = rq_payment(1001, 2002, CNY(), 10, "other");
            fx_apply(&f, &r);
        }
    }
    pay_object_t out[OBJS];
    pay_query_t q = {.kind = PAY_Q_USER_PAYMENTS, .uid = 2001, .limit = 2};
    assert_int_equal(fx_query(&f, &q, out), 4); /* head + limit + 1: has_more */
    fx_assert_code(&out[0], PAY_KIND_LIST, PAY_OK);
    assert_true(out[1].id == ids[4]);
    assert_true(out[2].id == ids[3]);
    assert_true(out[3].id == ids[2]);
    q.after = ids[3];
    assert_int_equal(fx_query(&f, &q, out), 4);
    assert_true(out[1].id == ids[2] && out[2].id == ids[1] && out[3].id == ids[0]);
    q.after = ids[2];
    assert_int_equal(fx_query(&f, &q, out), 3); /* no more */
    assert_true(out[1].id == ids[1] && out[2].id == ids[0]);
    fx_assert_code(&out[1], PAY_KIND_PAYMENT, PAY_OK);
    q.after = ids[0];
    assert_int_equal(fx_query(&f, &q, out), 1);
    fx_assert_code(&out[0], PAY_KIND_LIST, PAY_OK);
    q.after = 0;
    q.limit = 100;
    assert_int_equal(fx_query(&f, &q, out), 6);
    q.uid = 2002;
    assert_int_equal(fx_query(&f, &q, out), 2);
    q.after = ids[1]; /* not one of 2002's payments */
    assert_int_equal(fx_query(&f, &q, out), 1);
    fx_assert_code(&out[0], PAY_KIND_LIST, PAY_ERR_NOT_FOUND);
    q = (pay_query_t){.kind = PAY_Q_USER_PAYMENTS, .uid = 2009, .limit = 2};
    fx_query(&f, &q, out);
    fx_assert_code(&out[0], PAY_KIND_LIST, PAY_ERR_NOT_FOUND);
    q.uid = 2001;
    q.limit = 0;
    assert_int_equal(fx_query(&f, &q, out), 1);
    fx_assert_code(&out[0], PAY_KIND_LIST, PAY_ERR_INVALID);
    q.limit = PAY_LIST_MAX + 1;
    fx_query(&f, &q, out);
    fx_assert_code(&out[0], PAY_KIND_LIST, PAY_ERR_INVALID);

    q = (pay_query_t){.kind = 9, .uid = 2001};
    assert_int_equal(fx_query(&f, &q, out), 1);
    assert_int_equal(out[0].code, PAY_ERR_INVALID);
    q = (pay_query_t){.kind = PAY_Q_MERCHANT, .uid = 1001};
    q.reserved[198] = 1;
    assert_int_equal(fx_query(&f, &q, out), 1);
    fx_assert_code(&out[0], PAY_KIND_MERCHANT, PAY_ERR_INVALID);
    r = (pay_request_t){.kind = 6, .uid = 1};
    fx_assert_code((pay_object_t[]){fx_apply(&f, &r)}, 6, PAY_ERR_INVALID);
    fx_free(&f);
}

/* Copies the image of `from` into a new state with the same configuration. */
static pay_t *image_copy(const pay_t *from, const pay_config_t *pc, const char **err,
                         void (*corrupt)(ledger_region_t *r, uint32_t n)) {
    pay_image_header_t h;
    pay_image_header(from, &h);
    assert_null(pay_image_check(&h, pc));
    ledger_region_t src[PAY_IMAGE_REGIONS], dst[PAY_IMAGE_REGIONS];
    uint32_t n = pay_image_regions(from, &h, src);
    pay_t *to = pay_create(pc);
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

static void corrupt_refunded(ledger_region_t *r, uint32_t n) {
    assert_true(n >= 3 && r[2].size >= 160);
    unsigned char *payment = r[2].ptr;
    payment[48] ^= 1; /* pay_payment_row_t.refunded */
}

static void corrupt_prev(ledger_region_t *r, uint32_t n) {
    assert_true(n >= 3 && r[2].size >= 160);
    uint32_t bad = 5; /* row 0's prev must be none (or an earlier row) */
    memcpy((unsigned char *)r[2].ptr + 92, &bad, sizeof bad); /* .prev */
}

static void corrupt_duplicate_user(ledger_region_t *r, uint32_t n) {
    assert_true(n >= 2 && r[1].size >= 64);
    memcpy((unsigned char *)r[1].ptr + 32, r[1].ptr, 16);
}

static void test_image(void **state) {
    (void)state;
    fx_t f;
    setup_basic(&f);
    pay_request_t r = rq_payment(1001, 2001, CNY(), 300, "o1");
    r.idem_key = 9;
    pay_object_t p = fx_apply(&f, &r);
    pay_request_t rf = rq_refund(1001, p.id, 30, "r1");
    rf.idem_key = 10;
    fx_apply(&f, &rf);
    pay_request_t r2 = rq_payment(1001, 2001, CNY(), 5, "o2");
    fx_apply(&f, &r2);

    const char *err = "unset";
    pay_t *copy = image_copy(f.pay, &f.config, &err, NULL);
    assert_null(err);
    assert_true(pay_state_hash(copy) == pay_state_hash(f.pay));
    /* The restored state answers as the original: a replay, a duplicate, a list. */
    pay_object_t a, b;
    uint64_t clock = f.clock;
    pay_apply(copy, f.ledger, &clock, &r, &a);
    assert_int_equal(a.replayed, 1);
    p.replayed = 1;
    assert_memory_equal(&a, &p, sizeof a);
    pay_request_t dup = rq_refund(1001, p.id, 1, "r1");
    pay_apply(copy, f.ledger, &clock, &dup, &b);
    assert_int_equal(b.code, PAY_ERR_DUPLICATE_OUT_REQUEST_NO);
    pay_object_t out[OBJS];
    pay_query_t q = {.kind = PAY_Q_USER_PAYMENTS, .uid = 2001, .limit = 10};
    assert_int_equal(pay_query(copy, f.ledger, &q, out), 3);
    assert_true(out[2].id == p.id && out[2].refunded == 30);
    pay_destroy(copy);

    copy = image_copy(f.pay, &f.config, &err, corrupt_refunded);
    assert_non_null(err);
    pay_destroy(copy);
    copy = image_copy(f.pay, &f.config, &err, corrupt_prev);
    assert_non_null(err);
    pay_destroy(copy);
    copy = image_copy(f.pay, &f.config, &err, corrupt_duplicate_user);
    assert_non_null(err);
    pay_destroy(copy);

    /* A header that does not fit the capacities is refused before any region is read. */
    pay_image_header_t h;
    pay_image_header(f.pay, &h);
    pay_config_t small = f.config;
    small.payments_max = 1;
    assert_non_null(pay_image_check(&h, &small));
    h.magic ^= 1;
    assert_non_null(pay_image_check(&h, &f.config));
    fx_free(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_currency_pack), cmocka_unit_test(test_merchant),
        cmocka_unit_test(test_user),          cmocka_unit_test(test_topup),
        cmocka_unit_test(test_payment),       cmocka_unit_test(test_refund),
        cmocka_unit_test(test_idempotency),   cmocka_unit_test(test_idempotency_expiry_ring),
        cmocka_unit_test(test_full),          cmocka_unit_test(test_routing),
        cmocka_unit_test(test_list),          cmocka_unit_test(test_image),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

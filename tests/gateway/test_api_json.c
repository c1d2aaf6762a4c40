/* Decoding of the API's request bodies (src/gateway/api_json.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "gateway/api_json.h"

static bool payment(const char *body, api_payment_req_t *p, api_error_t *e) {
    return api_decode_payment(body, strlen(body), p, e);
}

static void test_payment_good(void **state) {
    (void)state;
    api_payment_req_t p;
    api_error_t e;
    assert_true(payment(" {\"buyer_uid\":\"1001\",\"amount\":\"1999\",\"currency\":\"CNY\","
                        "\"out_trade_no\":\"T-2026-11-27/001\",\"funding\":\"credit\"}\n",
                        &p, &e));
    assert_int_equal(p.buyer_uid, 1001);
    assert_true(p.amount == 1999);
    assert_string_equal(p.currency, "CNY");
    assert_string_equal(p.out_trade_no, "T-2026-11-27/001");
    assert_int_equal(p.funding, API_FUNDING_CREDIT);
    /* funding defaults to balance; any order; the largest amounts and uids. */
    assert_true(payment("{\"out_trade_no\":\"x\",\"currency\":\"USD\",\"amount\":"
                        "\"340282366920938463463374607431768211455\",\"buyer_uid\":"
                        "\"18446744073709551615\"}",
                        &p, &e));
    assert_int_equal(p.funding, API_FUNDING_BALANCE);
    assert_true(p.amount == U128_MAX);
    assert_true(p.buyer_uid == UINT64_MAX);
}

/* Each bad body and the field its error names. */
static void test_payment_bad(void **state) {
    (void)state;
    static const struct {
        const char *body, *param;
    } cases[] = {
        {"", ""},
        {"[]", ""},
        {"\"x\"", ""},
        {"{", ""},
        {"{\"buyer_uid\":\"1\"} x", ""},
        {"{\"buyer_uid\":\"1\",}", ""},
        {"{\"buyer_uid\":\"1\",,\"amount\":\"1\"}", ""},
        {"{\"buyer_uid\" \"1\"}", ""},
        {"{\"uid\"}", ""},
        {"{\"buyer_uid\":\"1\",\"amount\"}", ""},
        {"{\"amount\":\"1\",\"currency\":\"CNY\",\"out_trade_no\":\"a\"}", "buyer_uid"},
        {"{\"buyer_uid\":\"1\",\"currency\":\"CNY\",\"out_trade_no\":\"a\"}", "amount"},
        {"{\"buyer_uid\":\"1\",\"amount\":19.99,\"currency\":\"CNY\",\"out_trade_no\":\"a\"}",
         "amount"},
        {"{\"buyer_uid\":\"1\",\"amount\":1999,\"currency\":\"CNY\",\"out_trade_no\":\"a\"}",
         "amount"},
        {"{\"buyer_uid\":\"1\",\"amount\":\"19.99\",\"currency\":\"CNY\",\"out_trade_no\":\"a\"}",
         "amount"},
        {"{\"buyer_uid\":\"1\",\"amount\":\"-5\",\"currency\":\"CNY\",\"out_trade_no\":\"a\"}",
         "amount"},
        {"{\"buyer_uid\":\"1\",\"amount\":\"0\",\"currency\":\"CNY\",\"out_trade_no\":\"a\"}",
         "amount"},
        {"{\"buyer_uid\":\"1\",\"amount\":\"0100\",\"currency\":\"CNY\",\"out_trade_no\":\"a\"}",
         "amount"},
        {"{\"buyer_uid\":\"1\",\"amount\":\"340282366920938463463374607431768211456\","
         "\"currency\":\"CNY\",\"out_trade_no\":\"a\"}",
         "amount"},
        {"{\"buyer_uid\":\"18446744073709551616\",\"amount\":\"1\",\"currency\":\"CNY\","
         "\"out_trade_no\":\"a\"}",
         "buyer_uid"},
        {"{\"buyer_uid\":\"0\",\"amount\":\"1\",\"currency\":\"CNY\",\"out_trade_no\":\"a\"}",
         "buyer_uid"},
        {"{\"buyer_uid\":1,\"amount\":\"1\",\"currency\":\"CNY\",\"out_trade_no\":\"a\"}",
         "buyer_uid"},
        {"{\"buyer_uid\":\"1\",\"amount\":\"1\",\"currency\":\"cny\",\"out_trade_no\":\"a\"}",
         "currency"},
        {"{\"buyer_uid\":\"1\",\"amount\":\"1\",\"currency\":\"CNYX\",\"out_trade_no\":\"a\"}",
         "currency"},
        {"{\"buyer_uid\":\"1\",\"amount\":\"1\",\"currency\":\"CNY\",\"out_trade_no\":\"\"}",
         "out_trade_no"},
        {"{\"buyer_uid\":\"1\",\"amount\":\"1\",\"currency\":\"CNY\",\"out_trade_no\":\"a b\"}",
         "out_trade_no"},
        {"{\"buyer_uid\":\"1\",\"amount\":\"1\",\"currency\":\"CNY\",\"out_trade_no\":\"a\\\"b\"}",
         "out_trade_no"},
        {"{\"buyer_uid\":\"1\",\"amount\":\"1\",\"currency\":\"CNY\",\"out_trade_no\":"
         "\"12345678901234567890123456789012345678901234567890123456789012345\"}",
         "out_trade_no"},
        {"{\"buyer_uid\":\"1\",\"amount\":\"1\",\"currency\":\"CNY\",\"out_trade_no\":\"a\","
         "\"funding\":\"card\"}",
         "funding"},
        {"{\"buyer_uid\":\"1\",\"buyer_uid\":\"2\",\"amount\":\"1\",\"currency\":\"CNY\","
         "\"out_trade_no\":\"a\"}",
         "buyer_uid"},
        {"{\"buyer_uid\":\"1\",\"amount\":\"1\",\"currency\":\"CNY\",\"out_trade_no\":\"a\","
         "\"tip\":\"1\"}",
         "tip"},
        {"{\"buyer_uid\":\"1\",\"amount\":{\"v\":\"1\"},\"currency\":\"CNY\","
         "\"out_trade_no\":\"a\"}",
         "amount"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        api_payment_req_t p;
        api_error_t e;
        if (payment(cases[i].body, &p, &e)) fail_msg("accepted: %s", cases[i].body);
        assert_string_equal(e.code, "invalid_request");
        if (strcmp(e.param, cases[i].param) != 0)
            fail_msg("%s: param \"%s\", wanted \"%s\" (%s)", cases[i].body, e.param, cases[i].param,
                     e.message);
        assert_true(e.message[0] != '\0');
    }
    /* Embedded NUL bytes and a body that is only whitespace. */
    api_payment_req_t p;
    api_error_t e;
    assert_false(api_decode_payment("{\"buyer_uid\":\"1\0\"}", 18, &p, &e));
    assert_false(api_decode_payment("   ", 3, &p, &e));
}

static void test_other_bodies(void **state) {
    (void)state;
    api_error_t e;
    api_merchant_req_t m;
    assert_true(api_decode_merchant("{\"uid\":\"42\"}", 12, &m, &e));
    assert_int_equal(m.uid, 42);
    const char *mb = "{\"uid\":\"42\",\"currency\":\"CNY\"}";
    assert_false(api_decode_merchant(mb, strlen(mb), &m, &e));
    assert_string_equal(e.param, "currency");
    api_user_req_t u;
    const char *ub = "{\"uid\":\"1001\",\"currency\":\"CNY\"}";
    assert_true(api_decode_user(ub, strlen(ub), &u, &e));
    assert_int_equal(u.uid, 1001);
    assert_string_equal(u.currency, "CNY");
    assert_false(api_decode_user("{\"uid\":\"1001\"}", 14, &u, &e));
    assert_string_equal(e.param, "currency");
    api_topup_req_t t;
    const char *tb = "{\"amount\":\"500000\",\"currency\":\"CNY\"}";
    assert_true(api_decode_topup(tb, strlen(tb), &t, &e));
    assert_true(t.amount == 500000);
    api_refund_req_t r;
    const char *rb = "{\"payment_id\":\"pay_12\",\"amount\":\"100\",\"out_request_no\":\"R1\"}";
    assert_true(api_decode_refund(rb, strlen(rb), &r, &e));
    assert_string_equal(r.payment_id, "pay_12");
    assert_true(r.amount == 100);
    assert_string_equal(r.out_request_no, "R1");
    const char *rb2 = "{\"payment_id\":\"pay_12\",\"amount\":\"100\"}";
    assert_false(api_decode_refund(rb2, strlen(rb2), &r, &e));
    assert_string_equal(e.param, "out_request_no");
}

static void test_transfer_body(void **state) {
    (void)state;
    api_error_t e;
    api_transfer_req_t t;
    const char *tb = "{\"from_uid\":\"18446744073709551614\",\"to_uid\":\"9\","
                     "\"amount\":\"340282366920938463463374607431768211455\",\"currency\":\"USD\"}";
    assert_true(api_decode_transfer(tb, strlen(tb), &t, &e));
    assert_true(t.from_uid == UINT64_MAX - 1);
    assert_int_equal(t.to_uid, 9);
    assert_true(t.amount == ~(u128)0);
    assert_string_equal(t.currency, "USD");
    /* To oneself: refused here, naming to_uid. */
    const char *self =
        "{\"from_uid\":\"9\",\"to_uid\":\"9\",\"amount\":\"1\",\"currency\":\"CNY\"}";
    assert_false(api_decode_transfer(self, strlen(self), &t, &e));
    assert_string_equal(e.code, "invalid_request");
    assert_string_equal(e.param, "to_uid");
    /* Money as a JSON number, a missing recipient, a payment's field. */
    const char *num = "{\"from_uid\":\"1\",\"to_uid\":\"9\",\"amount\":1,\"currency\":\"CNY\"}";
    assert_false(api_decode_transfer(num, strlen(num), &t, &e));
    assert_string_equal(e.param, "amount");
    const char *missing = "{\"from_uid\":\"1\",\"amount\":\"1\",\"currency\":\"CNY\"}";
    assert_false(api_decode_transfer(missing, strlen(missing), &t, &e));
    assert_string_equal(e.param, "to_uid");
    const char *extra =
        "{\"from_uid\":\"1\",\"to_uid\":\"9\",\"amount\":\"1\",\"currency\":\"CNY\","
        "\"buyer_uid\":\"1\"}";
    assert_false(api_decode_transfer(extra, strlen(extra), &t, &e));
    assert_string_equal(e.param, "buyer_uid");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_payment_good),
        cmocka_unit_test(test_payment_bad),
        cmocka_unit_test(test_other_bodies),
        cmocka_unit_test(test_transfer_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

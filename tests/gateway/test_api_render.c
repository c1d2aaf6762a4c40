/* The answer side of the API without a network (src/gateway/api.h): pay codes to HTTP
 * statuses and error codes, every object kind rendered to exact JSON, lists, replays, and
 * what a client error or a malformed cell answer becomes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "client/client.h"
#include "gateway/api.h"

static char buf[API_RENDER_MAX];

static const char *render_one(const pay_object_t *o) {
    json_out_t out;
    json_out_init(&out, buf, sizeof buf);
    api_render_object(&out, o);
    assert_false(out.overflow);
    return buf;
}

static const u128 pay_id = ((u128)1001 << 64) | ((u128)7 << 40) | 5;

static pay_object_t payment(void) {
    pay_object_t p = {.id = pay_id,
                      .amount = 1999,
                      .refunded = 500,
                      .uid = 1001,
                      .merchant = 77,
                      .created_at = 1764201600123ull,
                      .currency = 0x594e43,
                      .kind = PAY_KIND_PAYMENT,
                      .code = PAY_CREATED};
    strcpy(p.text, "T-\"1\"");
    return p;
}

static void test_code_status(void **state) {
    (void)state;
    static const struct {
        uint32_t code;
        int status;
        const char *error;
    } want[] = {
        {PAY_OK, 200, NULL},
        {PAY_CREATED, 201, NULL},
        {PAY_ERR_NOT_FOUND, 404, "not_found"},
        {PAY_ERR_INSUFFICIENT_FUNDS, 402, "insufficient_funds"},
        {PAY_ERR_CURRENCY_MISMATCH, 400, "currency_mismatch"},
        {PAY_ERR_REFUND_EXCEEDS, 409, "refund_exceeds_payment"},
        {PAY_ERR_IDEMPOTENCY_CONFLICT, 409, "idempotency_conflict"},
        {PAY_ERR_DUPLICATE_OUT_TRADE_NO, 409, "duplicate_out_trade_no"},
        {PAY_ERR_DUPLICATE_OUT_REQUEST_NO, 409, "duplicate_out_request_no"},
        {PAY_ERR_MERCHANT_EXISTS, 409, "merchant_exists"},
        {PAY_ERR_CROSS_CELL, 422, "cross_cell_unsupported"},
        {PAY_ERR_WRONG_CELL, 503, "wrong_cell"},
        {PAY_ERR_FULL, 503, "unavailable"},
        {PAY_ERR_INVALID, 400, "invalid_request"},
        {PAY_ERR_OVERFLOW, 400, "invalid_request"},
        {PAY_TRYING, 503, "unavailable"},
        {PAY_ERR_CANCELLED, 409, "cancelled"},
        {PAY_CODE_COUNT, 500, "internal_error"},
        {255, 500, "internal_error"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *code = "x", *msg = "x";
        int st = api_code_status(want[i].code, &code, &msg);
        assert_int_equal(st, want[i].status);
        if (want[i].error) {
            assert_string_equal(code, want[i].error);
            assert_non_null(msg);
        } else {
            assert_null(code);
        }
    }
    /* Every code a cell can answer has a row: none renders as status 0. */
    for (uint32_t c = 0; c < PAY_CODE_COUNT; c++) {
        const char *code, *msg;
        assert_true(api_code_status(c, &code, &msg) >= 200);
    }
    /* The messages of the TCC codes tell the client which key to retry with. */
    const char *code, *msg;
    api_code_status(PAY_TRYING, &code, &msg);
    assert_non_null(strstr(msg, "same Idempotency-Key"));
    api_code_status(PAY_ERR_CANCELLED, &code, &msg);
    assert_non_null(strstr(msg, "new Idempotency-Key"));
}

static void test_render_payment(void **state) {
    (void)state;
    pay_object_t p = payment();
    assert_string_equal(
        render_one(&p),
        "{\"object\":\"payment\",\"id\":\"pay_00000000000003e90000070000000005\","
        "\"status\":\"succeeded\",\"buyer_uid\":\"1001\",\"merchant_uid\":\"77\","
        "\"amount\":\"1999\",\"currency\":\"CNY\",\"out_trade_no\":\"T-\\\"1\\\"\","
        "\"created_at\":1764201600123,\"refunded\":\"500\",\"merchant_credit\":\"credited\"}");
    p.merchant_credit = 1;
    memset(p.text, 'x', PAY_TEXT_MAX); /* 64 characters: no NUL inside */
    render_one(&p);
    assert_non_null(strstr(buf, "\"merchant_credit\":\"pending\"}"));
    char want[96] = "\"out_trade_no\":\"";
    memset(want + strlen(want), 'x', 64);
    strcat(want, "\",");
    assert_non_null(strstr(buf, want));
}

static void test_render_other_kinds(void **state) {
    (void)state;
    pay_object_t r = {.id = pay_id + 1,
                      .amount = 500,
                      .payment_id = pay_id,
                      .uid = 1001,
                      .merchant = 77,
                      .created_at = 5,
                      .currency = 0x594e43,
                      .kind = PAY_KIND_REFUND};
    strcpy(r.text, "R-1");
    assert_string_equal(render_one(&r),
                        "{\"object\":\"refund\",\"id\":\"re_00000000000003e90000070000000006\","
                        "\"payment_id\":\"pay_00000000000003e90000070000000005\","
                        "\"amount\":\"500\",\"status\":\"succeeded\",\"currency\":\"CNY\","
                        "\"out_request_no\":\"R-1\",\"buyer_uid\":\"1001\","
                        "\"merchant_uid\":\"77\",\"created_at\":5}");
    pay_object_t t = {.id = ((u128)42 << 64) | 9,
                      .amount = (u128)1 << 100,
                      .uid = 42,
                      .created_at = 6,
                      .currency = pay_currency_pack("USD"),
                      .kind = PAY_KIND_TOPUP};
    assert_string_equal(render_one(&t),
                        "{\"object\":\"topup\",\"id\":\"tu_000000000000002a0000000000000009\","
                        "\"status\":\"succeeded\",\"uid\":\"42\","
                        "\"amount\":\"1267650600228229401496703205376\",\"currency\":\"USD\","
                        "\"created_at\":6}");
    pay_object_t u = {.id = pay_account_id(18446744073709551615ull, PAY_ACCOUNT_USER, 0x594e43),
                      .uid = UINT64_MAX,
                      .currency = 0x594e43,
                      .kind = PAY_KIND_USER};
    assert_string_equal(render_one(&u),
                        "{\"object\":\"user\",\"id\":\"18446744073709551615\","
                        "\"uid\":\"18446744073709551615\",\"currency\":\"CNY\","
                        "\"account_id\":\"340282366920938463444927863362359479875\"}");
    pay_object_t m = {.uid = 500, .kind = PAY_KIND_MERCHANT};
    for (uint32_t i = 0; i < PAY_SECRET_SIZE; i++) m.secret[i] = (uint8_t)(i * 8 + 1);
    assert_string_equal(render_one(&m),
                        "{\"object\":\"merchant\",\"id\":\"500\",\"uid\":\"500\",\"secret\":"
                        "\"0109111921293139414951596169717981899199a1a9b1b9c1c9d1d9e1e9f1f9\"}");
    pay_object_t b = {
        .amount = 0, .refunded = 7, .uid = 42, .currency = 0x594e43, .kind = PAY_KIND_BALANCE};
    assert_string_equal(render_one(&b),
                        "{\"object\":\"balance\",\"id\":\"42\",\"uid\":\"42\",\"currency\":\"CNY\","
                        "\"available\":\"0\",\"pending\":\"7\"}");
}

static size_t reply(api_endpoint_t e, int32_t status, const pay_object_t *o, uint32_t n,
                    uint32_t limit, int *st, bool *replayed) {
    size_t len = api_render_reply(e, status, o, n, limit, buf, sizeof buf, st, replayed);
    assert_int_equal(len, strlen(buf));
    return len;
}

static void test_reply_statuses(void **state) {
    (void)state;
    int st;
    bool replayed;
    pay_object_t p = payment();
    reply(API_EP_PAYMENT_CREATE, 0, &p, 1, 0, &st, &replayed);
    assert_int_equal(st, 201);
    assert_false(replayed);
    assert_true(strncmp(buf, "{\"object\":\"payment\"", 19) == 0);
    p.replayed = 1;
    reply(API_EP_PAYMENT_CREATE, 0, &p, 1, 0, &st, &replayed);
    assert_int_equal(st, 201);
    assert_true(replayed);
    p.code = PAY_OK;
    p.replayed = 0;
    reply(API_EP_PAYMENT_GET, 0, &p, 1, 0, &st, &replayed);
    assert_int_equal(st, 200);
    /* An error: only kind and code mean anything, and a replayed error is replayed too. */
    pay_object_t e = {.kind = PAY_KIND_PAYMENT, .code = PAY_ERR_INSUFFICIENT_FUNDS, .replayed = 1};
    reply(API_EP_PAYMENT_CREATE, 0, &e, 1, 0, &st, &replayed);
    assert_int_equal(st, 402);
    assert_true(replayed);
    assert_true(strncmp(buf, "{\"error\":{\"code\":\"insufficient_funds\"", 37) == 0);
    /* A cross-cell refund's cancel: 409 cancelled, replayed when the key was. */
    e = (pay_object_t){.kind = PAY_KIND_REFUND, .code = PAY_ERR_CANCELLED, .replayed = 1};
    reply(API_EP_REFUND_CREATE, 0, &e, 1, 0, &st, &replayed);
    assert_int_equal(st, 409);
    assert_true(replayed);
    assert_true(strncmp(buf, "{\"error\":{\"code\":\"cancelled\"", 28) == 0);
    e = (pay_object_t){.code = PAY_ERR_WRONG_CELL};
    reply(API_EP_USER_CREATE, 0, &e, 1, 0, &st, &replayed);
    assert_int_equal(st, 503);
    assert_true(strncmp(buf, "{\"error\":{\"code\":\"wrong_cell\"", 29) == 0);
    /* Client errors and a cell's own statuses: 503 unavailable. */
    int32_t unavailable[] = {CLIENT_ERR_TIMEOUT, CLIENT_ERR_CLOSED, CLIENT_ERR_UNREACHABLE, 3};
    for (size_t i = 0; i < 4; i++) {
        reply(API_EP_PAYMENT_CREATE, unavailable[i], NULL, 0, 0, &st, &replayed);
        assert_int_equal(st, 503);
        assert_false(replayed);
        assert_true(strncmp(buf, "{\"error\":{\"code\":\"unavailable\"", 30) == 0);
    }
    /* A cell answer that does not fit the endpoint: 500, never a wrong object. */
    p = payment();
    reply(API_EP_REFUND_GET, 0, &p, 1, 0, &st, &replayed);
    assert_int_equal(st, 500);
    reply(API_EP_PAYMENT_GET, 0, &p, 0, 0, &st, &replayed);
    assert_int_equal(st, 500);
    pay_object_t two[2] = {payment(), payment()};
    reply(API_EP_PAYMENT_GET, 0, two, 2, 0, &st, &replayed);
    assert_int_equal(st, 500);
}

/* A transfer T = (1001, cell 1, 9) of 250 CNY from 1001 to 2002, as cells answer it. */
static pay_object_t transfer(uint8_t status) {
    return (pay_object_t){.id = ((u128)1001 << 64) | ((u128)1 << 40) | 9,
                          .amount = 250,
                          .uid = 1001,
                          .created_at = 1764201600123,
                          .currency = 0x594e43,
                          .kind = PAY_KIND_TRANSFER,
                          .code = PAY_CREATED,
                          .peer_cell = 2,
                          .status = status,
                          .recipient = 2002};
}

#define TRANSFER_HEAD                                                                              \
    "{\"object\":\"transfer\",\"id\":\"tr_00000000000003e90000010000000009\","                     \
    "\"from_uid\":\"1001\",\"to_uid\":\"2002\",\"amount\":\"250\",\"currency\":\"CNY\","

static void test_render_transfer(void **state) {
    (void)state;
    int st;
    bool replayed;
    /* The write's answer: succeeded, without what only the query knows. */
    pay_object_t t = transfer(PAY_TRANSFER_SUCCEEDED);
    t.merchant_credit = 1;
    reply(API_EP_TRANSFER_CREATE, 0, &t, 1, 0, &st, &replayed);
    assert_int_equal(st, 201);
    assert_false(replayed);
    assert_string_equal(buf,
                        TRANSFER_HEAD "\"status\":\"succeeded\",\"created_at\":1764201600123}");
    t.replayed = 1;
    reply(API_EP_TRANSFER_CREATE, 0, &t, 1, 0, &st, &replayed);
    assert_true(replayed);
    /* The query: each status; a succeeded one's recipient_credit, a cancelled one's reason. */
    t = transfer(PAY_TRANSFER_SUCCEEDED);
    t.code = PAY_OK;
    t.merchant_credit = 1;
    reply(API_EP_TRANSFER_GET, 0, &t, 1, 0, &st, &replayed);
    assert_int_equal(st, 200);
    assert_string_equal(buf, TRANSFER_HEAD "\"status\":\"succeeded\",\"recipient_credit\":"
                                           "\"pending\",\"created_at\":1764201600123}");
    t.merchant_credit = 0;
    reply(API_EP_TRANSFER_GET, 0, &t, 1, 0, &st, &replayed);
    assert_non_null(strstr(buf, "\"status\":\"succeeded\",\"recipient_credit\":\"credited\","));
    t = transfer(PAY_TRANSFER_TRYING);
    t.code = PAY_OK;
    reply(API_EP_TRANSFER_GET, 0, &t, 1, 0, &st, &replayed);
    assert_int_equal(st, 200);
    assert_string_equal(buf, TRANSFER_HEAD "\"status\":\"pending\",\"created_at\":1764201600123}");
    t = transfer(PAY_TRANSFER_CANCELLED);
    t.code = PAY_OK;
    static const struct {
        uint8_t code;
        const char *reason;
    } reasons[] = {{PAY_ERR_CANCELLED, "cancelled"},
                   {PAY_ERR_NOT_FOUND, "not_found"},
                   {PAY_ERR_CURRENCY_MISMATCH, "currency_mismatch"},
                   {PAY_ERR_OVERFLOW, "invalid_request"}};
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        t.cancel_code = reasons[i].code;
        reply(API_EP_TRANSFER_GET, 0, &t, 1, 0, &st, &replayed);
        assert_int_equal(st, 200);
        char want[256];
        snprintf(want, sizeof want,
                 TRANSFER_HEAD "\"status\":\"cancelled\",\"cancel_reason\":\"%s\","
                               "\"created_at\":1764201600123}",
                 reasons[i].reason);
        assert_string_equal(buf, want);
    }
    /* A write cancelled across cells: 409 cancelled, in a transfer's words. */
    pay_object_t e = {.kind = PAY_KIND_TRANSFER, .code = PAY_ERR_CANCELLED};
    reply(API_EP_TRANSFER_CREATE, 0, &e, 1, 0, &st, &replayed);
    assert_int_equal(st, 409);
    assert_true(strncmp(buf, "{\"error\":{\"code\":\"cancelled\"", 28) == 0);
    assert_non_null(strstr(buf, "transfer"));
    assert_null(strstr(buf, "out_request_no"));
    /* A status no cell answers, or another kind: 500, never a wrong object. */
    t = transfer(7);
    reply(API_EP_TRANSFER_GET, 0, &t, 1, 0, &st, &replayed);
    assert_int_equal(st, 500);
    pay_object_t p = payment();
    reply(API_EP_TRANSFER_CREATE, 0, &p, 1, 0, &st, &replayed);
    assert_int_equal(st, 500);
}

static void test_reply_lists(void **state) {
    (void)state;
    int st;
    bool replayed;
    static pay_object_t objs[PAY_LIST_MAX + 2];
    objs[0] = (pay_object_t){.kind = PAY_KIND_LIST, .code = PAY_OK};
    for (uint32_t i = 1; i < PAY_LIST_MAX + 2; i++) {
        objs[i] = payment();
        objs[i].id = pay_id + i;
    }
    reply(API_EP_USER_PAYMENTS, 0, objs, 1, 10, &st, &replayed);
    assert_int_equal(st, 200);
    assert_string_equal(buf, "{\"object\":\"list\",\"data\":[],\"has_more\":false}");
    /* limit 2 and 3 items: two shown, has_more. */
    reply(API_EP_USER_PAYMENTS, 0, objs, 4, 2, &st, &replayed);
    assert_non_null(strstr(buf, "\"has_more\":true}"));
    assert_non_null(strstr(buf, "pay_00000000000003e90000070000000006"));
    assert_non_null(strstr(buf, "pay_00000000000003e90000070000000007"));
    assert_null(strstr(buf, "pay_00000000000003e90000070000000008"));
    /* limit 2 and 2 items: no more. */
    reply(API_EP_USER_PAYMENTS, 0, objs, 3, 2, &st, &replayed);
    assert_non_null(strstr(buf, "}],\"has_more\":false}"));
    /* The largest list fits the render buffer, with the longest escaped texts. */
    for (uint32_t i = 1; i < PAY_LIST_MAX + 2; i++) memset(objs[i].text, '"', PAY_TEXT_MAX);
    size_t n = reply(API_EP_USER_PAYMENTS, 0, objs, PAY_LIST_MAX + 2, PAY_LIST_MAX, &st, &replayed);
    assert_int_equal(st, 200);
    assert_true(n > 0 && n < API_RENDER_MAX);
    objs[0].code = PAY_ERR_NOT_FOUND;
    reply(API_EP_USER_PAYMENTS, 0, objs, 1, 10, &st, &replayed);
    assert_int_equal(st, 404);
    objs[0].code = PAY_OK;
    objs[2].kind = PAY_KIND_REFUND; /* a list holds payments only */
    reply(API_EP_USER_PAYMENTS, 0, objs, 3, 10, &st, &replayed);
    assert_int_equal(st, 500);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_status),        cmocka_unit_test(test_render_payment),
        cmocka_unit_test(test_render_other_kinds), cmocka_unit_test(test_reply_statuses),
        cmocka_unit_test(test_reply_lists),        cmocka_unit_test(test_render_transfer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

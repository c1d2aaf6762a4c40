/* The request side of the API without a network (src/gateway/api.h): endpoint dispatch by
 * method and path, ids, query parameters, and HTTP requests turned into the cell's items. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "gateway/api.h"
#include "proto/proto.h"

/* ---- Dispatch ---- */

typedef struct route_case {
    const char *method, *path;
    api_endpoint_t endpoint;
    int status;
    const char *allow;
} route_case_t;

static const route_case_t routes[] = {
    {"GET", "/v1/health", API_EP_HEALTH, 0, NULL},
    {"HEAD", "/v1/health", API_EP_HEALTH, 0, NULL},
    {"POST", "/v1/health", API_EP_NONE, 405, "GET, HEAD"},
    {"POST", "/v1/merchants", API_EP_MERCHANT_CREATE, 0, NULL},
    {"GET", "/v1/merchants", API_EP_NONE, 405, "POST"},
    {"POST", "/v1/users", API_EP_USER_CREATE, 0, NULL},
    {"PUT", "/v1/users", API_EP_NONE, 405, "POST"},
    {"POST", "/v1/users/42/topups", API_EP_TOPUP_CREATE, 0, NULL},
    {"GET", "/v1/users/42/topups", API_EP_NONE, 405, "POST"},
    {"GET", "/v1/users/42/balance", API_EP_BALANCE, 0, NULL},
    {"POST", "/v1/users/42/balance", API_EP_NONE, 405, "GET, HEAD"},
    {"GET", "/v1/users/18446744073709551615/payments", API_EP_USER_PAYMENTS, 0, NULL},
    {"POST", "/v1/payments", API_EP_PAYMENT_CREATE, 0, NULL},
    {"GET", "/v1/payments", API_EP_NONE, 405, "POST"},
    {"GET", "/v1/payments/pay_0123456789abcdef0123456789abcdef", API_EP_PAYMENT_GET, 0, NULL},
    {"DELETE", "/v1/payments/pay_0123456789abcdef0123456789abcdef", API_EP_NONE, 405, "GET, HEAD"},
    {"POST", "/v1/refunds", API_EP_REFUND_CREATE, 0, NULL},
    {"GET", "/v1/refunds/re_00000000000000000000000000000001", API_EP_REFUND_GET, 0, NULL},
    {"POST", "/v1/transfers", API_EP_TRANSFER_CREATE, 0, NULL},
    {"GET", "/v1/transfers", API_EP_NONE, 405, "POST"},
    {"GET", "/v1/transfers/tr_00000000000003e90000010000000009", API_EP_TRANSFER_GET, 0, NULL},
    {"HEAD", "/v1/transfers/tr_00000000000003e90000010000000009", API_EP_TRANSFER_GET, 0, NULL},
    {"POST", "/v1/transfers/tr_00000000000003e90000010000000009", API_EP_NONE, 405, "GET, HEAD"},
    /* Nothing can live at a malformed uid or id: 404, whatever the method. */
    {"GET", "/v1/transfers/pay_00000000000003e90000010000000009", API_EP_NONE, 404, NULL},
    {"GET", "/v1/transfers/tr_3e90000010000000009", API_EP_NONE, 404, NULL},
    {"GET", "/v1/users/0/balance", API_EP_NONE, 404, NULL},
    {"GET", "/v1/users/042/balance", API_EP_NONE, 404, NULL},
    {"GET", "/v1/users/18446744073709551616/balance", API_EP_NONE, 404, NULL},
    {"GET", "/v1/users/x/balance", API_EP_NONE, 404, NULL},
    {"GET", "/v1/users/42", API_EP_NONE, 404, NULL},
    {"GET", "/v1/users/42/", API_EP_NONE, 404, NULL},
    {"GET", "/v1/users/42/balance/x", API_EP_NONE, 404, NULL},
    {"GET", "/v1/users/42/nothing", API_EP_NONE, 404, NULL},
    {"GET", "/v1/payments/pay_0123456789ABCDEF0123456789abcdef", API_EP_NONE, 404, NULL},
    {"GET", "/v1/payments/re_00000000000000000000000000000001", API_EP_NONE, 404, NULL},
    {"GET", "/v1/payments/pay_0123", API_EP_NONE, 404, NULL},
    {"GET", "/v1/payments/pay_0123456789abcdef0123456789abcdef/x", API_EP_NONE, 404, NULL},
    {"GET", "/v1/refunds/pay_00000000000000000000000000000001", API_EP_NONE, 404, NULL},
    {"GET", "/v1/health/", API_EP_NONE, 404, NULL},
    {"GET", "/v1", API_EP_NONE, 404, NULL},
    {"GET", "/", API_EP_NONE, 404, NULL},
    {"GET", "", API_EP_NONE, 404, NULL},
    {"GET", "/v2/health", API_EP_NONE, 404, NULL},
    {"GET", "//v1/health", API_EP_NONE, 404, NULL},
    {"POST", "/v1/merchants/", API_EP_NONE, 404, NULL},
};

static void test_dispatch(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const route_case_t *c = &routes[i];
        api_match_t m;
        api_match(c->method, c->path, strlen(c->path), &m);
        if (m.endpoint != c->endpoint || m.status != c->status)
            fail_msg("%s %s: endpoint %s status %d, want %s %d", c->method, c->path,
                     api_endpoint_name(m.endpoint), m.status, api_endpoint_name(c->endpoint),
                     c->status);
        if (c->allow) assert_string_equal(m.allow, c->allow);
    }
}

static void test_dispatch_params_and_auth(void **state) {
    (void)state;
    api_match_t m;
    const char *p = "/v1/users/18446744073709551615/topups";
    api_match("POST", p, strlen(p), &m);
    assert_true(m.uid == UINT64_MAX);
    p = "/v1/payments/pay_0123456789abcdef0123456789abcdef";
    api_match("GET", p, strlen(p), &m);
    assert_true(m.id == (((u128)0x0123456789abcdefull << 64) | 0x0123456789abcdefull));
    /* The path length is what counts, not a NUL. */
    api_match("GET", "/v1/healthy", 10, &m);
    assert_int_equal(m.endpoint, API_EP_HEALTH);
    assert_int_equal(api_endpoint_auth(API_EP_HEALTH), API_AUTH_NONE);
    static const api_endpoint_t op[] = {
        API_EP_MERCHANT_CREATE, API_EP_USER_CREATE,     API_EP_TOPUP_CREATE, API_EP_BALANCE,
        API_EP_USER_PAYMENTS,   API_EP_TRANSFER_CREATE, API_EP_TRANSFER_GET};
    static const api_endpoint_t mer[] = {API_EP_PAYMENT_CREATE, API_EP_PAYMENT_GET,
                                         API_EP_REFUND_CREATE, API_EP_REFUND_GET};
    for (size_t i = 0; i < 7; i++) assert_int_equal(api_endpoint_auth(op[i]), API_AUTH_OPERATOR);
    for (size_t i = 0; i < 4; i++) assert_int_equal(api_endpoint_auth(mer[i]), API_AUTH_MERCHANT);
}

/* ---- Ids ---- */

static void test_ids(void **state) {
    (void)state;
    char s[API_ID_MAX];
    u128 id = ((u128)1001 << 64) | ((u128)7 << 40) | 5;
    assert_int_equal(api_id_format("pay_", id, s), 36);
    assert_string_equal(s, "pay_00000000000003e90000070000000005");
    assert_int_equal(api_id_format("re_", U128_MAX, s), 35);
    assert_string_equal(s, "re_ffffffffffffffffffffffffffffffff");
    assert_int_equal(api_id_format("tu_", 0, s), 35);
    assert_string_equal(s, "tu_00000000000000000000000000000000");
    u128 back = 0;
    api_id_format("pay_", id, s);
    assert_true(api_id_parse("pay_", s, strlen(s), &back));
    assert_true(back == id);
    const char *bad[] = {
        "pay_00000000000003e9000007000000000",   /* 31 digits */
        "pay_00000000000003e900000700000000051", /* 33 */
        "pay_00000000000003E90000070000000005",  /* upper case */
        "re_00000000000003e90000070000000005",   /* another prefix */
        "pay-00000000000003e90000070000000005",  "pay_00000000000003e9000007000000000g", "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(api_id_parse("pay_", bad[i], strlen(bad[i]), &back));
}

static void test_uids(void **state) {
    (void)state;
    uint64_t u = 0;
    assert_true(api_uid_parse("1", 1, &u) && u == 1);
    assert_true(api_uid_parse("18446744073709551615", 20, &u) && u == UINT64_MAX);
    assert_false(api_uid_parse("18446744073709551616", 20, &u));
    assert_false(api_uid_parse("0", 1, &u));
    assert_false(api_uid_parse("01", 2, &u));
    assert_false(api_uid_parse("", 0, &u));
    assert_false(api_uid_parse("-1", 2, &u));
    assert_false(api_uid_parse("1 ", 2, &u));
    assert_false(api_uid_parse("123456789012345678901", 21, &u));
}

static void test_query_params(void **state) {
    (void)state;
    const char *q = "limit=5&starting_after=pay_x&currency=CNY&flag&limit=7";
    const char *v;
    size_t n;
    assert_true(api_query_param(q, strlen(q), "limit", &v, &n));
    assert_int_equal(n, 1);
    assert_memory_equal(v, "5", 1); /* the first wins */
    assert_true(api_query_param(q, strlen(q), "currency", &v, &n));
    assert_int_equal(n, 3);
    assert_memory_equal(v, "CNY", 3);
    assert_true(api_query_param(q, strlen(q), "flag", &v, &n));
    assert_int_equal(n, 0);
    assert_false(api_query_param(q, strlen(q), "lim", &v, &n));
    assert_false(api_query_param(q, strlen(q), "currencyX", &v, &n));
    assert_false(api_query_param("", 0, "limit", &v, &n));
}

/* ---- Building the cell's items ---- */

static http_request_t request(const char *method, const char *path, const char *query,
                              const char *body) {
    http_request_t r = {.method = method,
                        .path = path,
                        .path_len = strlen(path),
                        .query = query,
                        .query_len = strlen(query),
                        .body = body,
                        .body_len = strlen(body)};
    return r;
}

static void header_add(http_request_t *r, const char *name, const char *value) {
    r->headers[r->header_count++] = (http_header_t){
        .name = name, .name_len = strlen(name), .value = value, .value_len = strlen(value)};
}

static api_match_t match(const char *method, const char *path) {
    api_match_t m;
    api_match(method, path, strlen(path), &m);
    assert_int_equal(m.status, 0);
    return m;
}

static u128 xxh128(const void *p, size_t n) {
    XXH128_hash_t h = XXH3_128bits(p, n);
    return ((u128)h.high64 << 64) | h.low64;
}

static const char payment_body[] =
    "{\"buyer_uid\":\"1001\",\"amount\":\"1999\",\"currency\":\"CNY\",\"out_trade_no\":\"T-1\"}";

static void test_build_payment(void **state) {
    (void)state;
    http_request_t r = request("POST", "/v1/payments", "", payment_body);
    header_add(&r, "idempotency-key", "order-1");
    api_match_t m = match("POST", "/v1/payments");
    api_call_t c;
    api_fail_t f;
    assert_true(api_build(&m, &r, 77, &c, &f));
    assert_int_equal(c.op, PROTO_OP_PAY);
    const pay_request_t *q = &c.u.req;
    assert_int_equal(q->kind, PAY_KIND_PAYMENT);
    assert_int_equal(q->actor, 77);
    assert_int_equal(q->uid, 1001);
    assert_true(q->amount == 1999);
    assert_int_equal(q->currency, 'C' | ('N' << 8) | ('Y' << 16));
    assert_int_equal(q->funding, 1);
    assert_string_equal(q->text, "T-1");
    assert_true(q->idem_key == xxh128("order-1", 7));
    char signed_text[256];
    int n = snprintf(signed_text, sizeof signed_text, "POST\n/v1/payments\n%s", payment_body);
    assert_true(q->body_hash == xxh128(signed_text, (size_t)n));
    assert_int_equal(api_call_route_uid(&c), 1001);
    /* Every byte not used by a payment is zero: the cell refuses reserved bytes. */
    static const uint8_t zeros[72];
    assert_memory_equal(q->reserved, zeros, sizeof q->reserved);
    assert_memory_equal(q->secret, zeros, sizeof q->secret);
    /* No key: 0. */
    http_request_t r2 = request("POST", "/v1/payments", "", payment_body);
    assert_true(api_build(&m, &r2, 77, &c, &f));
    assert_true(c.u.req.idem_key == 0);
}

static void test_build_refuses(void **state) {
    (void)state;
    api_call_t c;
    api_fail_t f;
    api_match_t m = match("POST", "/v1/payments");
    char long_key[66];
    memset(long_key, 'k', 65);
    long_key[65] = '\0';
    const char *bad_keys[] = {"", long_key, "tab\there", "caf\xc3\xa9"};
    for (size_t i = 0; i < 4; i++) {
        http_request_t r = request("POST", "/v1/payments", "", payment_body);
        header_add(&r, "Idempotency-Key", bad_keys[i]);
        assert_false(api_build(&m, &r, 1, &c, &f));
        assert_int_equal(f.status, 400);
        assert_string_equal(f.code, "invalid_request");
        assert_string_equal(f.param, "Idempotency-Key");
    }
    long_key[64] = '\0'; /* 64 is fine */
    http_request_t ok = request("POST", "/v1/payments", "", payment_body);
    header_add(&ok, "Idempotency-Key", long_key);
    assert_true(api_build(&m, &ok, 1, &c, &f));
    http_request_t credit =
        request("POST", "/v1/payments", "",
                "{\"buyer_uid\":\"1\",\"amount\":\"1\",\"currency\":\"CNY\",\"out_trade_no\":\"a\","
                "\"funding\":\"credit\"}");
    assert_false(api_build(&m, &credit, 1, &c, &f));
    assert_string_equal(f.param, "funding");
    http_request_t body = request("POST", "/v1/payments", "", "{\"amount\":1}");
    assert_false(api_build(&m, &body, 1, &c, &f));
    assert_int_equal(f.status, 400);
    assert_string_equal(f.param, "amount");
}

static void test_build_refund(void **state) {
    (void)state;
    api_call_t c;
    api_fail_t f;
    api_match_t m = match("POST", "/v1/refunds");
    http_request_t r =
        request("POST", "/v1/refunds", "",
                "{\"payment_id\":\"pay_00000000000003e90000070000000005\",\"amount\":\"500\","
                "\"out_request_no\":\"R-1\"}");
    assert_true(api_build(&m, &r, 9, &c, &f));
    assert_int_equal(c.u.req.kind, PAY_KIND_REFUND);
    assert_true(c.u.req.payment_id == (((u128)1001 << 64) | ((u128)7 << 40) | 5));
    assert_true(c.u.req.amount == 500);
    assert_string_equal(c.u.req.text, "R-1");
    assert_int_equal(c.u.req.currency, 0);
    assert_int_equal(api_call_route_uid(&c), 1001); /* the payment's user */
    http_request_t bad =
        request("POST", "/v1/refunds", "",
                "{\"payment_id\":\"re_00000000000003e90000070000000005\",\"amount\":\"500\","
                "\"out_request_no\":\"R-1\"}");
    assert_false(api_build(&m, &bad, 9, &c, &f));
    assert_int_equal(f.status, 400);
    assert_string_equal(f.param, "payment_id");
}

static const char transfer_body[] =
    "{\"from_uid\":\"1001\",\"to_uid\":\"2002\",\"amount\":\"250\",\"currency\":\"CNY\"}";

static void test_build_transfer(void **state) {
    (void)state;
    api_call_t c;
    api_fail_t f;
    api_match_t m = match("POST", "/v1/transfers");
    http_request_t r = request("POST", "/v1/transfers", "", transfer_body);
    header_add(&r, "Idempotency-Key", "t-1");
    assert_true(api_build(&m, &r, 0, &c, &f));
    assert_int_equal(c.op, PROTO_OP_PAY);
    assert_int_equal(c.u.req.kind, PAY_KIND_TRANSFER);
    assert_int_equal(c.u.req.uid, 1001);
    assert_int_equal(c.u.req.recipient, 2002);
    assert_true(c.u.req.amount == 250);
    assert_int_equal(c.u.req.currency, pay_currency_pack("CNY"));
    assert_int_equal(c.u.req.actor, 0);
    assert_int_equal(c.u.req.peer_cell, 0); /* the gateway's to set from its route table */
    assert_int_equal(c.u.req.tcc_type, 0);
    assert_true(c.u.req.idem_key != 0 && c.u.req.body_hash != 0);
    assert_int_equal(api_call_route_uid(&c), 1001); /* the sender's cell */
    /* Refused before any cell is asked, naming the field. */
    static const struct {
        const char *body, *param;
    } bad[] = {
        {"{\"from_uid\":\"7\",\"to_uid\":\"7\",\"amount\":\"1\",\"currency\":\"CNY\"}", "to_uid"},
        {"{\"from_uid\":\"0\",\"to_uid\":\"7\",\"amount\":\"1\",\"currency\":\"CNY\"}", "from_uid"},
        {"{\"from_uid\":\"6\",\"to_uid\":7,\"amount\":\"1\",\"currency\":\"CNY\"}", "to_uid"},
        {"{\"from_uid\":\"6\",\"to_uid\":\"7\",\"amount\":\"0\",\"currency\":\"CNY\"}", "amount"},
        {"{\"from_uid\":\"6\",\"to_uid\":\"7\",\"amount\":\"1.5\",\"currency\":\"CNY\"}", "amount"},
        {"{\"from_uid\":\"6\",\"to_uid\":\"7\",\"amount\":\"1\",\"currency\":\"cny\"}", "currency"},
        {"{\"from_uid\":\"6\",\"to_uid\":\"7\",\"amount\":\"1\"}", "currency"},
        {"{\"from_uid\":\"6\",\"to_uid\":\"7\",\"amount\":\"1\",\"currency\":\"CNY\","
         "\"note\":\"x\"}",
         "note"},
        {"[]", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = request("POST", "/v1/transfers", "", bad[i].body);
        if (api_build(&m, &r, 0, &c, &f)) fail_msg("accepted %s", bad[i].body);
        assert_int_equal(f.status, 400);
        assert_string_equal(f.code, "invalid_request");
        assert_string_equal(f.param, bad[i].param);
    }
    /* The query: by id, routed by its upper half (the sender). */
    m = match("GET", "/v1/transfers/tr_00000000000003e90000010000000009");
    r = request("GET", "/v1/transfers/tr_00000000000003e90000010000000009", "", "");
    assert_true(api_build(&m, &r, 0, &c, &f));
    assert_int_equal(c.op, PROTO_OP_PAY_QUERY);
    assert_int_equal(c.u.query.kind, PAY_Q_TRANSFER);
    assert_true(c.u.query.id == (((u128)1001 << 64) | ((u128)1 << 40) | 9));
    assert_int_equal(api_call_route_uid(&c), 1001);
}

static void test_build_operator_writes(void **state) {
    (void)state;
    api_call_t c;
    api_fail_t f;
    api_match_t m = match("POST", "/v1/merchants");
    http_request_t r = request("POST", "/v1/merchants", "", "{\"uid\":\"500\"}");
    assert_true(api_build(&m, &r, 0, &c, &f));
    assert_int_equal(c.u.req.kind, PAY_KIND_MERCHANT);
    assert_int_equal(c.u.req.uid, 500);
    assert_int_equal(c.u.req.actor, 0);
    m = match("POST", "/v1/users");
    r = request("POST", "/v1/users", "", "{\"uid\":\"501\",\"currency\":\"USD\"}");
    assert_true(api_build(&m, &r, 0, &c, &f));
    assert_int_equal(c.u.req.kind, PAY_KIND_USER);
    assert_int_equal(c.u.req.currency, pay_currency_pack("USD"));
    m = match("POST", "/v1/users/502/topups");
    r = request("POST", "/v1/users/502/topups", "", "{\"amount\":\"100\",\"currency\":\"CNY\"}");
    assert_true(api_build(&m, &r, 0, &c, &f));
    assert_int_equal(c.u.req.kind, PAY_KIND_TOPUP);
    assert_int_equal(c.u.req.uid, 502);
    assert_true(c.u.req.amount == 100);
    /* The same body on another path is another request: the hash differs. */
    u128 h502 = c.u.req.body_hash;
    m = match("POST", "/v1/users/503/topups");
    r = request("POST", "/v1/users/503/topups", "", "{\"amount\":\"100\",\"currency\":\"CNY\"}");
    assert_true(api_build(&m, &r, 0, &c, &f));
    assert_true(c.u.req.body_hash != h502);
}

static void test_build_queries(void **state) {
    (void)state;
    api_call_t c;
    api_fail_t f;
    api_match_t m = match("GET", "/v1/users/42/balance");
    http_request_t r = request("GET", "/v1/users/42/balance", "currency=CNY", "");
    assert_true(api_build(&m, &r, 0, &c, &f));
    assert_int_equal(c.op, PROTO_OP_PAY_QUERY);
    assert_int_equal(c.u.query.kind, PAY_Q_BALANCE);
    assert_int_equal(c.u.query.uid, 42);
    assert_int_equal(c.u.query.currency, pay_currency_pack("CNY"));
    const char *bad_currency[] = {"", "currency=cny", "currency=CN", "currency=CNYY"};
    for (size_t i = 0; i < 4; i++) {
        r = request("GET", "/v1/users/42/balance", bad_currency[i], "");
        assert_false(api_build(&m, &r, 0, &c, &f));
        assert_string_equal(f.param, "currency");
    }
    m = match("GET", "/v1/users/42/payments");
    r = request("GET", "/v1/users/42/payments", "", "");
    assert_true(api_build(&m, &r, 0, &c, &f));
    assert_int_equal(c.u.query.kind, PAY_Q_USER_PAYMENTS);
    assert_int_equal(c.u.query.limit, 10);
    assert_int_equal(c.limit, 10);
    assert_true(c.u.query.after == 0);
    r = request("GET", "/v1/users/42/payments",
                "limit=100&starting_after=pay_000000000000002a0000000000000001", "");
    assert_true(api_build(&m, &r, 0, &c, &f));
    assert_int_equal(c.u.query.limit, 100);
    assert_true(c.u.query.after == (((u128)42 << 64) | 1));
    const char *bad_list[] = {"limit=0", "limit=101", "limit=x", "limit=", "starting_after=re_1"};
    const char *param[] = {"limit", "limit", "limit", "limit", "starting_after"};
    for (size_t i = 0; i < 5; i++) {
        r = request("GET", "/v1/users/42/payments", bad_list[i], "");
        assert_false(api_build(&m, &r, 0, &c, &f));
        assert_string_equal(f.param, param[i]);
    }
    m = match("GET", "/v1/payments/pay_00000000000003e90000070000000005");
    r = request("GET", "/v1/payments/pay_00000000000003e90000070000000005", "", "");
    assert_true(api_build(&m, &r, 88, &c, &f));
    assert_int_equal(c.u.query.kind, PAY_Q_PAYMENT);
    assert_int_equal(c.u.query.actor, 88);
    assert_int_equal(api_call_route_uid(&c), 1001);
    m = match("GET", "/v1/refunds/re_00000000000003e90000070000000006");
    r = request("GET", "/v1/refunds/re_00000000000003e90000070000000006", "", "");
    assert_true(api_build(&m, &r, 88, &c, &f));
    assert_int_equal(c.u.query.kind, PAY_Q_REFUND);
    assert_int_equal(api_call_route_uid(&c), 1001);
    /* The whole 256-byte item beyond the 240-byte query is zero. */
    static const uint8_t zeros[256];
    assert_memory_equal((const uint8_t *)&c.u + sizeof(pay_query_t), zeros,
                        sizeof c.u - sizeof(pay_query_t));
}

static void test_currency_pack(void **state) {
    (void)state;
    assert_int_equal(pay_currency_pack("CNY"), 0x594e43);
    assert_int_equal(pay_currency_pack("cny"), 0);
    assert_int_equal(pay_currency_pack("C1Y"), 0);
    char out[4];
    pay_currency_unpack(0x594e43, out);
    assert_string_equal(out, "CNY");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_dispatch_params_and_auth),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_uids),
        cmocka_unit_test(test_query_params),
        cmocka_unit_test(test_build_payment),
        cmocka_unit_test(test_build_refuses),
        cmocka_unit_test(test_build_refund),
        cmocka_unit_test(test_build_transfer),
        cmocka_unit_test(test_build_operator_writes),
        cmocka_unit_test(test_build_queries),
        cmocka_unit_test(test_currency_pack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The gateway end to end in one process: gateway_run() on a thread, its one cell the fake cell
 * of the client tests (tests/client/fake_server.h, which answers the pay ops by echoing the
 * request and knows merchant 77 with the secret bytes 1..32), and plain blocking sockets as
 * HTTP clients. Covers the operator's bearer key, merchant signatures with the secret fetched
 * once from the cell, idempotent replays, many connections at once (their requests merged
 * by the client and split back), route table changes, the steps of a refund of a cross-cell
 * payment (the fake plays both cells' parts), transfers within a cell and across two cells
 * (a second fake as the recipient's cell), and gateway_stop(). Every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../client/fake_server.h"
#include "gateway/auth.h"
#include "gateway/gateway.h"

#define ADMIN_KEY "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define WAIT_MS 10000
#define CONNS 32u

static fake_server_t *fake;
static fake_server_t *fake2; /* cell 2 of the transfer tests */
static _Atomic uint16_t gw_port;
static uv_thread_t gw_thread;
static int gw_rc;
static gateway_config_t cfg;

/* The fake merchant's HMAC key: its secret bytes 1..32 as lowercase hex. */
static char merchant_key[AUTH_HEX_MAX + 1];

/* ---- The cells' part in a refund of a cross-cell payment (TCC), played by the fake ----
 * The table gives every zone to cell 1, so a payment id drawn by cell 5 is cross-cell: the
 * gateway sends the refund with peer_cell 5, the Try, and the decide, all to the fake, which
 * answers each as a_script says and records what it got. */

#define TCC_SEEN_MAX 16u
#define TCC_BUYER 1001ull
#define TCC_R (((u128)TCC_BUYER << 64) | ((u128)1 << 40) | 9)

typedef struct tcc_script {
    bool transfer;        /* the activity is a transfer (a decide names no type) */
    uint8_t start_code;   /* not 0: the initiator's cell refuses the transfer with it */
    bool trying_replayed; /* the refund's trying answer is the key's stored one */
    uint32_t trying_peer; /* not 0: the participant the trying answer names (else the asked) */
    uint8_t try_code;     /* the Try's answer */
    uint8_t confirm_code; /* a confirm's answer: created (the refund), or a DECIDE error */
    uint8_t cancel_fail;  /* a cancel's answer, when not 0: a DECIDE error */
    /* A cross-cell payment (ORDER, then PAYMENT with payment_id, maybe RELEASE): */
    bool order_replayed; /* the merchant's cell's ORDER answer is the key's stored one */
    uint8_t xpay_code;   /* the buyer's cell's answer to the payment */
    bool xpay_replayed;  /* ... given as a replay (a resend's, or a resolver's tombstone) */
} tcc_script_t;

static uv_mutex_t tcc_lock;
static tcc_script_t tcc_script;
static pay_request_t tcc_seen[TCC_SEEN_MAX];
static uintptr_t tcc_seen_cell[TCC_SEEN_MAX]; /* which fake got it: 1 or 2 */
static uint32_t tcc_seen_count;

#define XFER_SENDER 1001ull /* zone 0: cell 1 */
#define XFER_LOCAL 1011ull  /* zone 1: cell 1 */
#define XFER_REMOTE 1501ull /* zone 50: cell 2 in the two-cell table */
#define XFER_T (((u128)XFER_SENDER << 64) | ((u128)1 << 40) | 4)

static void xfer_object(pay_object_t *o, const pay_request_t *r, uint8_t code, uint8_t status) {
    *o = (pay_object_t){.id = XFER_T,
                        .amount = 250,
                        .uid = XFER_SENDER,
                        .created_at = 3,
                        .currency = pay_currency_pack("CNY"),
                        .kind = PAY_KIND_TRANSFER,
                        .code = code,
                        .peer_cell = r->peer_cell,
                        .status = status,
                        .recipient = r->recipient ? r->recipient : XFER_REMOTE};
}

static void tcc_refund_object(pay_object_t *o, uint8_t code) {
    *o = (pay_object_t){.id = TCC_R,
                        .amount = 40,
                        .payment_id = ((u128)TCC_BUYER << 64) | ((u128)5 << 40) | 7,
                        .uid = TCC_BUYER,
                        .merchant = 77,
                        .created_at = 3,
                        .currency = pay_currency_pack("CNY"),
                        .kind = PAY_KIND_REFUND,
                        .code = code};
    strcpy(o->text, "r-1");
}

static void tcc_decide(const tcc_script_t *sc, const pay_request_t *r, pay_object_t *o) {
    uint8_t fail = r->code == PAY_OK ? (sc->confirm_code == PAY_CREATED ? 0 : sc->confirm_code)
                                     : sc->cancel_fail;
    uint8_t kind = sc->transfer ? PAY_KIND_TRANSFER : PAY_KIND_REFUND;
    if (fail) {
        *o = (pay_object_t){.kind = PAY_KIND_DECIDE, .code = fail};
    } else if (r->code == PAY_OK && sc->transfer) {
        xfer_object(o, r, PAY_CREATED, PAY_TRANSFER_SUCCEEDED);
    } else if (r->code == PAY_OK) {
        tcc_refund_object(o, PAY_CREATED);
    } else {
        *o = (pay_object_t){.kind = kind, .code = r->code};
    }
}

/* The sender's cell: a local transfer in one step, a cross-cell one trying. */
static void xfer_start(const tcc_script_t *sc, const pay_request_t *r, pay_object_t *o) {
    if (sc->start_code)
        *o = (pay_object_t){.kind = PAY_KIND_TRANSFER, .code = sc->start_code};
    else if (r->peer_cell == 0)
        xfer_object(o, r, PAY_CREATED, PAY_TRANSFER_SUCCEEDED);
    else
        xfer_object(o, r, PAY_TRYING, PAY_TRANSFER_TRYING);
    if (sc->trying_peer && o->code == PAY_TRYING) o->peer_cell = sc->trying_peer;
    o->replayed = sc->trying_replayed;
}

#define XPAY_BUYER 1501ull /* zone 50: cell 2 in the two-cell table; merchant 77: cell 1 */
#define XPAY_P (((u128)XPAY_BUYER << 64) | ((u128)1 << 40) | 6)

/* The two cells of a cross-cell payment: the order (cell 1), the payment (cell 2), the
 * release (cell 1). */
static void xpay_answer(const tcc_script_t *sc, const pay_request_t *r, pay_object_t *o) {
    switch (r->kind) {
    case PAY_KIND_ORDER:
        *o = (pay_object_t){.id = XPAY_P,
                            .kind = PAY_KIND_ORDER,
                            .code = PAY_CREATED,
                            .replayed = sc->order_replayed};
        return;
    case PAY_KIND_RELEASE:
        *o = (pay_object_t){.id = r->payment_id, .kind = PAY_KIND_RELEASE, .code = PAY_OK};
        return;
    default: break;
    }
    if (sc->xpay_code != PAY_CREATED) {
        *o = (pay_object_t){.kind = PAY_KIND_PAYMENT, .code = sc->xpay_code};
    } else {
        *o = (pay_object_t){.id = XPAY_P,
                            .amount = r->amount,
                            .uid = r->uid,
                            .merchant = r->actor,
                            .created_at = 3,
                            .currency = r->currency,
                            .kind = PAY_KIND_PAYMENT,
                            .code = PAY_CREATED,
                            .merchant_credit = 1,
                            .peer_cell = r->peer_cell};
        memcpy(o->text, r->text, sizeof o->text);
    }
    o->replayed = sc->xpay_replayed;
}

static void tcc_hook(void *ctx, const pay_request_t *r, pay_object_t *o) {
    bool xpay = r->kind == PAY_KIND_ORDER || r->kind == PAY_KIND_RELEASE ||
                (r->kind == PAY_KIND_PAYMENT && r->payment_id != 0);
    bool tcc = (r->kind == PAY_KIND_REFUND && r->peer_cell != 0) || r->kind == PAY_KIND_TRY ||
               r->kind == PAY_KIND_DECIDE || r->kind == PAY_KIND_TRANSFER || xpay;
    if (!tcc) return; /* everything else: the fake's echo */
    uv_mutex_lock(&tcc_lock);
    tcc_script_t sc = tcc_script;
    if (tcc_seen_count < TCC_SEEN_MAX) {
        tcc_seen_cell[tcc_seen_count] = (uintptr_t)ctx;
        tcc_seen[tcc_seen_count++] = *r;
    }
    uv_mutex_unlock(&tcc_lock);
    if (xpay) {
        xpay_answer(&sc, r, o);
        return;
    }
    switch (r->kind) {
    case PAY_KIND_REFUND:
        tcc_refund_object(o, PAY_TRYING);
        o->peer_cell = r->peer_cell;
        o->replayed = sc.trying_replayed;
        return;
    case PAY_KIND_TRANSFER: xfer_start(&sc, r, o); return;
    case PAY_KIND_TRY:
        *o = (pay_object_t){.id = r->payment_id, .kind = PAY_KIND_TRY, .code = sc.try_code};
        return;
    default: tcc_decide(&sc, r, o); return;
    }
}

static void on_listening(void *ctx, uint16_t port) {
    (void)ctx;
    atomic_store(&gw_port, port);
}

static void gw_main(void *arg) {
    (void)arg;
    gw_rc = gateway_run(&cfg);
}

static void table_for(rt_table_t *t, uint16_t port) {
    char text[256], err[128];
    snprintf(text, sizeof text, "version %u\ncell 1 127.0.0.1:%u\nzones 0-99 -> 1\n",
             (unsigned)port, (unsigned)port);
    assert_true(rt_parse(text, strlen(text), t, err, sizeof err));
}

static int setup(void **state) {
    (void)state;
    for (uint32_t i = 0; i < 32; i++) snprintf(merchant_key + 2 * i, 3, "%02x", i + 1);
    assert_int_equal(uv_mutex_init(&tcc_lock), 0);
    fake = fake_start();
    fake->pay_hook = tcc_hook; /* before any request reaches the fake */
    fake->pay_hook_ctx = (void *)(uintptr_t)1;
    fake2 = fake_start();
    fake2->pay_hook = tcc_hook;
    fake2->pay_hook_ctx = (void *)(uintptr_t)2;
    memset(&cfg, 0, sizeof cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.admin_key = ADMIN_KEY;
    cfg.cell_deadline_ms = 2000;
    cfg.conns_max = 64;
    cfg.on_listening = on_listening;
    table_for(&cfg.routes, fake->port);
    atomic_store(&gw_port, 0);
    assert_int_equal(uv_thread_create(&gw_thread, gw_main, NULL), 0);
    for (int i = 0; i < WAIT_MS && atomic_load(&gw_port) == 0; i++) uv_sleep(1);
    assert_true(atomic_load(&gw_port) != 0);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    gateway_stop();
    uv_thread_join(&gw_thread);
    assert_int_equal(gw_rc, 0);
    fake_stop(fake);
    fake_stop(fake2);
    uv_mutex_destroy(&tcc_lock);
    return 0;
}

/* ---- A tiny HTTP client ---- */

typedef struct reply {
    int status;
    char head[2048];
    char body[8192];
} reply_t;

static int conn_open(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atomic_load(&gw_port))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        assert_true(w > 0);
        p += w;
        n -= (size_t)w;
    }
}

/* Reads one whole reply (head, then Content-Length bytes). */
static void read_reply(int fd, reply_t *r) {
    static _Thread_local char buf[16384];
    size_t len = 0;
    char *end = NULL;
    size_t need = SIZE_MAX;
    while (len < need) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        assert_int_equal(poll(&p, 1, WAIT_MS), 1);
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        assert_true(n > 0);
        len += (size_t)n;
        buf[len] = '\0';
        if (!end && (end = strstr(buf, "\r\n\r\n"))) {
            const char *cl = strstr(buf, "Content-Length: ");
            assert_non_null(cl);
            need = (size_t)(end + 4 - buf) + strtoul(cl + 16, NULL, 10);
        }
    }
    size_t head = (size_t)(end + 4 - buf);
    assert_true(head < sizeof r->head && len - head < sizeof r->body);
    memcpy(r->head, buf, head);
    r->head[head] = '\0';
    memcpy(r->body, buf + head, len - head);
    r->body[len - head] = '\0';
    r->status = atoi(buf + 9);
}

static void request(int fd, const char *method, const char *path, const char *headers,
                    const char *body, reply_t *r) {
    char req[4096];
    int n =
        snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n%s",
                 method, path, headers, strlen(body), body);
    assert_true(n > 0 && (size_t)n < sizeof req);
    send_all(fd, req, (size_t)n);
    read_reply(fd, r);
}

/* Headers of a merchant's signed request, at timestamp now + skew. */
static void signed_headers(char *out, size_t cap, uint64_t merchant, const char *key,
                           const char *method, const char *path, const char *body, long skew,
                           const char *extra) {
    char ts[24], sig[AUTH_HEX_MAX + 1];
    snprintf(ts, sizeof ts, "%lld", (long long)time(NULL) + skew);
    auth_sign(key, strlen(key), method, path, ts, body, strlen(body), sig);
    snprintf(out, cap,
             "X-Cellpay-Merchant: %llu\r\nX-Cellpay-Timestamp: %s\r\nX-Cellpay-Signature: "
             "%s\r\n%s",
             (unsigned long long)merchant, ts, sig, extra);
}

static uint32_t pay_queries(void) {
    uint32_t n = 0;
    fake_lock(fake);
    for (uint32_t i = 0; i < fake->log_count; i++) n += fake->log[i].op == PROTO_OP_PAY_QUERY;
    fake_unlock(fake);
    return n;
}

/* ---- Tests ---- */

static void test_health_and_operator(void **state) {
    (void)state;
    int fd = conn_open();
    reply_t r;
    request(fd, "GET", "/v1/health", "", "", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ok\"}");
    const char *user = "{\"uid\":\"1001\",\"currency\":\"CNY\"}";
    request(fd, "POST", "/v1/users", "", user, &r);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "\"unauthorized\""));
    request(fd, "POST", "/v1/users", "Authorization: Bearer " ADMIN_KEY "x\r\n", user, &r);
    assert_int_equal(r.status, 401);
    request(fd, "POST", "/v1/users", "Authorization: Bearer " ADMIN_KEY "\r\n", user, &r);
    assert_int_equal(r.status, 201);
    /* The fake cell echoes the idempotency key as the account id: without the header, the
     * gateway gave the request a key of its own (never 0), so that a resend is known. */
    assert_non_null(strstr(r.body, "{\"object\":\"user\",\"id\":\"1001\",\"uid\":\"1001\","
                                   "\"currency\":\"CNY\",\"account_id\":\""));
    assert_null(strstr(r.body, "\"account_id\":\"0\""));
    assert_null(strstr(r.head, "Idempotent-Replayed"));
    request(fd, "POST", "/v1/merchants", "Authorization: Bearer " ADMIN_KEY "\r\n",
            "{\"uid\":\"500\"}", &r);
    assert_int_equal(r.status, 201);
    /* The secret: 64 lowercase hex digits drawn by the gateway, not zeros. */
    const char *s = strstr(r.body, "\"secret\":\"");
    assert_non_null(s);
    s += 10;
    for (int i = 0; i < 64; i++) assert_non_null(strchr("0123456789abcdef", s[i]));
    assert_int_equal(s[64], '"');
    assert_false(strncmp(s, "0000000000000000", 16) == 0);
    request(fd, "POST", "/v1/users", "Authorization: Bearer " ADMIN_KEY "\r\n", "{\"uid\":1}", &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "\"param\":\"uid\""));
    close(fd);
}

static const char pay_body[] =
    "{\"buyer_uid\":\"1001\",\"amount\":\"1999\",\"currency\":\"CNY\",\"out_trade_no\":\"T-1\"}";

static void test_signed_payment(void **state) {
    (void)state;
    int fd = conn_open();
    reply_t r;
    char h[1024];
    uint32_t queries = pay_queries();
    signed_headers(h, sizeof h, 77, merchant_key, "POST", "/v1/payments", pay_body, 0,
                   "Idempotency-Key: order-1\r\n");
    request(fd, "POST", "/v1/payments", h, pay_body, &r);
    assert_int_equal(r.status, 201);
    assert_non_null(strstr(r.body, "\"object\":\"payment\""));
    assert_non_null(strstr(r.body, "\"buyer_uid\":\"1001\",\"merchant_uid\":\"77\","
                                   "\"amount\":\"1999\",\"currency\":\"CNY\","
                                   "\"out_trade_no\":\"T-1\""));
    assert_null(strstr(r.head, "Idempotent-Replayed"));
    assert_int_equal(pay_queries(), queries + 1); /* the secret, fetched once */
    char first[8192];
    strcpy(first, r.body);
    /* The same key again: the stored answer, marked as a replay. */
    signed_headers(h, sizeof h, 77, merchant_key, "POST", "/v1/payments", pay_body, 0,
                   "Idempotency-Key: order-1\r\n");
    request(fd, "POST", "/v1/payments", h, pay_body, &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body, first);
    assert_non_null(strstr(r.head, "\r\nIdempotent-Replayed: true\r\n"));
    assert_int_equal(pay_queries(), queries + 1); /* cached */
    /* A payment by id, signed with its query. */
    const char *path = "/v1/payments/pay_00000000000003e90000070000000005";
    signed_headers(h, sizeof h, 77, merchant_key, "GET", path, "", 0, "");
    request(fd, "GET", path, h, "", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"id\":\"pay_00000000000003e90000070000000005\""));
    close(fd);
}

static void test_signature_refusals(void **state) {
    (void)state;
    int fd = conn_open();
    reply_t r;
    char h[1024];
    char wrong[AUTH_HEX_MAX + 1];
    memcpy(wrong, merchant_key, sizeof wrong);
    wrong[0] = wrong[0] == '0' ? '1' : '0';
    signed_headers(h, sizeof h, 77, wrong, "POST", "/v1/payments", pay_body, 0, "");
    request(fd, "POST", "/v1/payments", h, pay_body, &r);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "\"invalid_signature\""));
    signed_headers(h, sizeof h, 77, merchant_key, "POST", "/v1/payments", pay_body, -301, "");
    request(fd, "POST", "/v1/payments", h, pay_body, &r);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "\"stale_timestamp\""));
    /* Signed over another body than the one sent. */
    signed_headers(h, sizeof h, 77, merchant_key, "POST", "/v1/payments", "{}", 0, "");
    request(fd, "POST", "/v1/payments", h, pay_body, &r);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "\"invalid_signature\""));
    signed_headers(h, sizeof h, 78, merchant_key, "POST", "/v1/payments", pay_body, 0, "");
    request(fd, "POST", "/v1/payments", h, pay_body, &r);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "\"unauthorized\""));
    request(fd, "POST", "/v1/payments", "", pay_body, &r);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "\"unauthorized\""));
    close(fd);
}

/* Many connections, one signed payment each, all at once: each gets its own answer. */
static void test_many_connections(void **state) {
    (void)state;
    static int fds[CONNS];
    static char bodies[CONNS][256];
    char h[1024], req[4096];
    for (uint32_t i = 0; i < CONNS; i++) fds[i] = conn_open();
    for (uint32_t i = 0; i < CONNS; i++) {
        snprintf(bodies[i], sizeof bodies[i],
                 "{\"buyer_uid\":\"%u\",\"amount\":\"%u\",\"currency\":\"CNY\","
                 "\"out_trade_no\":\"M-%u\"}",
                 2000 + i, 100 + i, i);
        signed_headers(h, sizeof h, 77, merchant_key, "POST", "/v1/payments", bodies[i], 0, "");
        int n = snprintf(req, sizeof req,
                         "POST /v1/payments HTTP/1.1\r\n%sContent-Length: %zu\r\n\r\n%s", h,
                         strlen(bodies[i]), bodies[i]);
        send_all(fds[i], req, (size_t)n);
    }
    for (uint32_t i = 0; i < CONNS; i++) {
        reply_t r;
        read_reply(fds[i], &r);
        assert_int_equal(r.status, 201);
        char want[128];
        snprintf(want, sizeof want,
                 "\"buyer_uid\":\"%u\",\"merchant_uid\":\"77\",\"amount\":\"%u\"", 2000 + i,
                 100 + i);
        if (!strstr(r.body, want)) fail_msg("connection %u got %s", i, r.body);
        close(fds[i]);
    }
}

/* A new table naming a dead address: new requests fail over to it (503); back: served. */
static void test_route_change(void **state) {
    (void)state;
    rt_table_t *t = calloc(1, sizeof *t);
    assert_non_null(t);
    table_for(t, 1); /* nobody listens on port 1 */
    t->version = 99;
    assert_true(gateway_set_routes(t));
    uv_sleep(100);
    int fd = conn_open();
    reply_t r;
    const char *user = "{\"uid\":\"1002\",\"currency\":\"CNY\"}";
    request(fd, "POST", "/v1/users", "Authorization: Bearer " ADMIN_KEY "\r\n", user, &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "\"unavailable\""));
    table_for(t, fake->port);
    t->version = 100;
    assert_true(gateway_set_routes(t));
    uv_sleep(100);
    request(fd, "POST", "/v1/users", "Authorization: Bearer " ADMIN_KEY "\r\n", user, &r);
    assert_int_equal(r.status, 201);
    close(fd);
    free(t);
}

/* Sets the fakes' script, POSTs body to path with headers and collects what reached the
 * fakes (cells: which fake got each item; may be NULL). */
static void scripted_post(tcc_script_t sc, const char *path, const char *headers, const char *body,
                          reply_t *r, pay_request_t *seen, uintptr_t *cells, uint32_t *count) {
    uv_mutex_lock(&tcc_lock);
    tcc_script = sc;
    tcc_seen_count = 0;
    uv_mutex_unlock(&tcc_lock);
    int fd = conn_open();
    request(fd, "POST", path, headers, body, r);
    close(fd);
    uv_mutex_lock(&tcc_lock);
    *count = tcc_seen_count;
    memcpy(seen, tcc_seen, sizeof tcc_seen);
    if (cells) memcpy(cells, tcc_seen_cell, sizeof tcc_seen_cell);
    uv_mutex_unlock(&tcc_lock);
}

/* Runs one refund of payment (drawn by cell payment_cell) under script sc; r: the reply,
 * seen/count: what reached the fakes, cells: which fake got each item (may be NULL). */
static void tcc_run_cells(tcc_script_t sc, uint32_t payment_cell, reply_t *r, pay_request_t *seen,
                          uintptr_t *cells, uint32_t *count) {
    char body[256], h[1024];
    snprintf(body, sizeof body,
             "{\"payment_id\":\"pay_%016llx%016llx\",\"amount\":\"40\","
             "\"out_request_no\":\"r-1\"}",
             (unsigned long long)TCC_BUYER,
             (unsigned long long)(((uint64_t)payment_cell << 40) | 7));
    signed_headers(h, sizeof h, 77, merchant_key, "POST", "/v1/refunds", body, 0,
                   "Idempotency-Key: refund-1\r\n");
    scripted_post(sc, "/v1/refunds", h, body, r, seen, cells, count);
}

static void tcc_run(tcc_script_t sc, uint32_t payment_cell, reply_t *r, pay_request_t *seen,
                    uint32_t *count) {
    tcc_run_cells(sc, payment_cell, r, seen, NULL, count);
}

static const tcc_script_t tcc_ok = {.try_code = PAY_CREATED, .confirm_code = PAY_CREATED};

static void test_tcc_refund(void **state) {
    (void)state;
    /* Every zone in cell 1 (the buyer's, and the merchant's by today's table), and cell 5,
     * which drew the payment id: the merchant's cell the Try goes to. */
    rt_table_t *t = calloc(1, sizeof *t);
    assert_non_null(t);
    char text[256], err[128];
    snprintf(text, sizeof text,
             "version 150\ncell 1 127.0.0.1:%u\ncell 5 127.0.0.1:%u\n"
             "zones 0-99 -> 1\n",
             (unsigned)fake->port, (unsigned)fake2->port);
    assert_true(rt_parse(text, strlen(text), t, err, sizeof err));
    assert_true(gateway_set_routes(t));
    uv_sleep(100);
    free(t);
    reply_t r;
    pay_request_t seen[TCC_SEEN_MAX];
    uint32_t n;
    uintptr_t cells[TCC_SEEN_MAX];
    tcc_run_cells(tcc_ok, 5, &r, seen, cells, &n);
    assert_int_equal(r.status, 201);
    assert_int_equal(cells[0], 1);
    assert_int_equal(cells[1], 2); /* the Try: cell 5, which drew the payment id */
    assert_int_equal(cells[2], 1);
    assert_non_null(
        strstr(r.body, "\"object\":\"refund\",\"id\":\"re_00000000000003e90000010000000009\""));
    assert_null(strstr(r.head, "Idempotent-Replayed"));
    assert_int_equal(n, 3);
    /* The refund names the merchant's cell (the payment id's); the Try names R, the merchant,
     * the buyer, the amount and the buyer's cell (R's); the decide confirms. */
    assert_int_equal(seen[0].kind, PAY_KIND_REFUND);
    assert_int_equal(seen[0].peer_cell, 5);
    assert_true(seen[0].idem_key != 0);
    pay_request_t want_try = {.kind = PAY_KIND_TRY,
                              .payment_id = TCC_R,
                              .actor = 77,
                              .uid = TCC_BUYER,
                              .amount = 40,
                              .currency = pay_currency_pack("CNY"),
                              .peer_cell = 1};
    assert_memory_equal(&seen[1], &want_try, sizeof want_try);
    pay_request_t want_decide = {
        .kind = PAY_KIND_DECIDE, .payment_id = TCC_R, .uid = TCC_BUYER, .code = PAY_OK};
    assert_memory_equal(&seen[2], &want_decide, sizeof want_decide);
    char first[8192];
    strcpy(first, r.body);
    /* The key's trying answer (a gateway stopped mid-way): the gateway goes on, and the
     * client's answer is a replay of its key, the same as a finished first request's. */
    tcc_script_t sc = tcc_ok;
    sc.trying_replayed = true;
    tcc_run(sc, 5, &r, seen, &n);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body, first);
    assert_non_null(strstr(r.head, "\r\nIdempotent-Replayed: true\r\n"));
    assert_int_equal(n, 3);
}

static void test_tcc_refund_refusals(void **state) {
    (void)state;
    reply_t r;
    pay_request_t seen[TCC_SEEN_MAX];
    uint32_t n;
    /* The Try's refusal is the decision, and the client's answer. */
    tcc_script_t sc = tcc_ok;
    sc.try_code = PAY_ERR_INSUFFICIENT_FUNDS;
    tcc_run(sc, 5, &r, seen, &n);
    assert_int_equal(r.status, 402);
    assert_non_null(strstr(r.body, "\"insufficient_funds\""));
    assert_int_equal(n, 3);
    assert_int_equal(seen[2].kind, PAY_KIND_DECIDE);
    assert_int_equal(seen[2].code, PAY_ERR_INSUFFICIENT_FUNDS);
    /* A Try that cannot be done (the merchant's cell full): the gateway cancels. */
    sc.try_code = PAY_ERR_FULL;
    tcc_run(sc, 5, &r, seen, &n);
    assert_int_equal(r.status, 409);
    assert_non_null(strstr(r.body, "\"cancelled\""));
    assert_int_equal(seen[2].code, PAY_ERR_CANCELLED);
    /* A decide that fails: no decision known, retry with the same key. */
    sc = tcc_ok;
    sc.confirm_code = PAY_ERR_FULL;
    tcc_run(sc, 5, &r, seen, &n);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "same Idempotency-Key"));
    assert_int_equal(n, 3);
    /* A confirm the buyer's balance cannot take: cancelled with overflow instead. */
    sc.confirm_code = PAY_ERR_OVERFLOW;
    tcc_run(sc, 5, &r, seen, &n);
    assert_int_equal(r.status, 400);
    assert_int_equal(n, 4);
    assert_int_equal(seen[2].code, PAY_OK);
    assert_int_equal(seen[3].kind, PAY_KIND_DECIDE);
    assert_int_equal(seen[3].code, PAY_ERR_OVERFLOW);
    /* A local payment (its id drawn by the buyer's cell): one refund, no peer_cell. */
    tcc_run(tcc_ok, 1, &r, seen, &n);
    assert_int_equal(r.status, 201);
    assert_int_equal(n, 0); /* the hook saw no TCC item: the echo answered */
}

/* ---- Transfers ---- */

/* Cell 1 (fake) serves zones 0-49, cell 2 (fake2) zones 50-99. */
static void two_cells(rt_table_t *t, uint64_t version) {
    char text[256], err[128];
    snprintf(text, sizeof text,
             "version %llu\ncell 1 127.0.0.1:%u\ncell 2 127.0.0.1:%u\nzones 0-49 -> 1\n"
             "zones 50-99 -> 2\n",
             (unsigned long long)version, (unsigned)fake->port, (unsigned)fake2->port);
    assert_true(rt_parse(text, strlen(text), t, err, sizeof err));
}

/* The gateway takes the two-cell table (version: above the one it has). */
static void use_two_cells(uint64_t version) {
    rt_table_t *t = calloc(1, sizeof *t);
    assert_non_null(t);
    two_cells(t, version);
    assert_true(gateway_set_routes(t));
    uv_sleep(100);
    free(t);
}

/* Runs one transfer from XFER_SENDER to recipient under script sc; r: the reply, seen/cells/
 * count: what reached the fakes, and which. */
static void xfer_run(tcc_script_t sc, uint64_t recipient, reply_t *r, pay_request_t *seen,
                     uintptr_t *cells, uint32_t *count) {
    char body[256];
    snprintf(body, sizeof body,
             "{\"from_uid\":\"%llu\",\"to_uid\":\"%llu\",\"amount\":\"250\","
             "\"currency\":\"CNY\"}",
             (unsigned long long)XFER_SENDER, (unsigned long long)recipient);
    sc.transfer = true;
    scripted_post(sc, "/v1/transfers",
                  "Authorization: Bearer " ADMIN_KEY "\r\nIdempotency-Key: xfer-1\r\n", body, r,
                  seen, cells, count);
}

static void test_transfers(void **state) {
    (void)state;
    use_two_cells(200);
    reply_t r;
    pay_request_t seen[TCC_SEEN_MAX];
    uintptr_t cells[TCC_SEEN_MAX];
    uint32_t n;
    /* Both in cell 1: one step, no peer_cell. */
    xfer_run(tcc_ok, XFER_LOCAL, &r, seen, cells, &n);
    assert_int_equal(r.status, 201);
    assert_non_null(strstr(r.body, "{\"object\":\"transfer\",\"id\":\"tr_00000000000003e9000001"));
    assert_non_null(strstr(r.body, "\"to_uid\":\"1011\""));
    assert_int_equal(n, 1);
    assert_int_equal(seen[0].kind, PAY_KIND_TRANSFER);
    assert_int_equal(seen[0].peer_cell, 0);
    assert_int_equal(seen[0].recipient, XFER_LOCAL);
    assert_int_equal(cells[0], 1);
    /* Across cells: the transfer to the sender's cell names the recipient's; the Try goes to
     * the recipient's cell; the decide back to the sender's confirms. */
    xfer_run(tcc_ok, XFER_REMOTE, &r, seen, cells, &n);
    assert_int_equal(r.status, 201);
    assert_non_null(strstr(r.body, "\"status\":\"succeeded\""));
    assert_null(strstr(r.head, "Idempotent-Replayed"));
    assert_int_equal(n, 3);
    assert_int_equal(seen[0].kind, PAY_KIND_TRANSFER);
    assert_int_equal(seen[0].peer_cell, 2);
    assert_int_equal(seen[0].uid, XFER_SENDER);
    assert_int_equal(seen[0].recipient, XFER_REMOTE);
    assert_true(seen[0].idem_key != 0);
    assert_int_equal(cells[0], 1);
    pay_request_t want_try = {.kind = PAY_KIND_TRY,
                              .payment_id = XFER_T,
                              .uid = XFER_SENDER,
                              .amount = 250,
                              .currency = pay_currency_pack("CNY"),
                              .peer_cell = 1,
                              .tcc_type = PAY_TCC_TRANSFER,
                              .recipient = XFER_REMOTE};
    assert_memory_equal(&seen[1], &want_try, sizeof want_try);
    assert_int_equal(cells[1], 2);
    pay_request_t want_decide = {
        .kind = PAY_KIND_DECIDE, .payment_id = XFER_T, .uid = XFER_SENDER, .code = PAY_OK};
    assert_memory_equal(&seen[2], &want_decide, sizeof want_decide);
    assert_int_equal(cells[2], 1);
    char first[8192];
    strcpy(first, r.body);
    /* The key's trying answer: the gateway goes on; the client's answer is a replay. */
    tcc_script_t sc = tcc_ok;
    sc.trying_replayed = true;
    xfer_run(sc, XFER_REMOTE, &r, seen, cells, &n);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body, first);
    assert_non_null(strstr(r.head, "\r\nIdempotent-Replayed: true\r\n"));
    assert_int_equal(n, 3);
}

/* Runs one cross-cell payment by merchant 77 (cell 1) from XPAY_BUYER (cell 2) under sc. */
static void xpay_run(tcc_script_t sc, reply_t *r, pay_request_t *seen, uintptr_t *cells,
                     uint32_t *count) {
    static const char body[] = "{\"buyer_uid\":\"1501\",\"amount\":\"1999\",\"currency\":"
                               "\"CNY\",\"out_trade_no\":\"X-1\",\"funding\":\"balance\"}";
    char h[1024];
    signed_headers(h, sizeof h, 77, merchant_key, "POST", "/v1/payments", body, 0,
                   "Idempotency-Key: xpay-1\r\n");
    scripted_post(sc, "/v1/payments", h, body, r, seen, cells, count);
}

/* Whether the client's request is a replay is the merchant's cell's to say (its ORDER answer):
 * the buyer's cell answers by the payment id and may replay to a fresh request. */
static void test_xcell_payment_replays(void **state) {
    (void)state;
    use_two_cells(300);
    reply_t r;
    pay_request_t seen[TCC_SEEN_MAX];
    uintptr_t cells[TCC_SEEN_MAX];
    uint32_t n;
    tcc_script_t sc = {.xpay_code = PAY_CREATED, .xpay_replayed = true};
    xpay_run(sc, &r, seen, cells, &n);
    assert_int_equal(r.status, 201);
    assert_null(strstr(r.head, "Idempotent-Replayed"));
    assert_int_equal(n, 2);
    assert_int_equal(seen[0].kind, PAY_KIND_ORDER);
    assert_int_equal(cells[0], 1);
    assert_int_equal(seen[0].peer_cell, 2); /* the buyer's cell, for the resolver */
    assert_int_equal(seen[1].kind, PAY_KIND_PAYMENT);
    assert_int_equal(cells[1], 2);
    assert_true(seen[1].payment_id == XPAY_P && seen[1].idem_key == XPAY_P);
    assert_int_equal(seen[1].peer_cell, 1);
    /* The client's key seen before: a replay, whatever the buyer's cell says. */
    sc.order_replayed = true;
    sc.xpay_replayed = false;
    xpay_run(sc, &r, seen, cells, &n);
    assert_int_equal(r.status, 201);
    assert_non_null(strstr(r.head, "\r\nIdempotent-Replayed: true\r\n"));
    /* A resolver's tombstone met by a live gateway: the order is released, 409 for the
     * payment, not marked a replay. */
    sc = (tcc_script_t){.xpay_code = PAY_ERR_CANCELLED, .xpay_replayed = true};
    xpay_run(sc, &r, seen, cells, &n);
    assert_int_equal(r.status, 409);
    assert_non_null(strstr(r.body, "\"code\":\"cancelled\""));
    assert_non_null(strstr(r.body, "the payment was cancelled"));
    assert_null(strstr(r.head, "Idempotent-Replayed"));
    assert_int_equal(n, 3);
    assert_int_equal(seen[2].kind, PAY_KIND_RELEASE);
    assert_int_equal(seen[2].code, PAY_ERR_CANCELLED);
    assert_int_equal(cells[2], 1);
}

static void test_transfer_refusals(void **state) {
    (void)state;
    reply_t r;
    pay_request_t seen[TCC_SEEN_MAX];
    uintptr_t cells[TCC_SEEN_MAX];
    uint32_t n;
    /* The Try's refusals are the decision, and the client's answer. */
    static const struct {
        uint8_t try_code, decided;
        int status;
        const char *error;
    } cases[] = {
        {PAY_ERR_NOT_FOUND, PAY_ERR_NOT_FOUND, 404, "not_found"},
        {PAY_ERR_CURRENCY_MISMATCH, PAY_ERR_CURRENCY_MISMATCH, 400, "currency_mismatch"},
        {PAY_ERR_OVERFLOW, PAY_ERR_OVERFLOW, 400, "invalid_request"},
        {PAY_ERR_CANCELLED, PAY_ERR_CANCELLED, 409, "cancelled"},
        /* Not a transfer branch's refusal, or no answer that holds: cancelled. */
        {PAY_ERR_INSUFFICIENT_FUNDS, PAY_ERR_CANCELLED, 409, "cancelled"},
        {PAY_ERR_FULL, PAY_ERR_CANCELLED, 409, "cancelled"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tcc_script_t sc = tcc_ok;
        sc.try_code = cases[i].try_code;
        xfer_run(sc, XFER_REMOTE, &r, seen, cells, &n);
        assert_int_equal(r.status, cases[i].status);
        char want[64];
        snprintf(want, sizeof want, "\"%s\"", cases[i].error);
        assert_non_null(strstr(r.body, want));
        assert_int_equal(n, 3);
        assert_int_equal(seen[2].kind, PAY_KIND_DECIDE);
        assert_int_equal(seen[2].code, cases[i].decided);
        assert_int_equal(cells[2], 1);
    }
    /* The sender's cell recorded another participant than today's table gives for the
     * recipient (cell 7, which the table does not name): the Try goes to the recorded one, not
     * to the recipient's cell by the table; it cannot be sent, so the transfer is cancelled. */
    {
        tcc_script_t sc = tcc_ok;
        sc.trying_peer = 7;
        xfer_run(sc, XFER_REMOTE, &r, seen, cells, &n);
        assert_int_equal(r.status, 409);
        assert_int_equal(n, 2);
        assert_int_equal(seen[1].kind, PAY_KIND_DECIDE);
        assert_int_equal(seen[1].code, PAY_ERR_CANCELLED);
        assert_int_equal(cells[1], 1);
    }
    /* The sender's cell refuses at once (its funds): nothing else is asked. */
    tcc_script_t sc = tcc_ok;
    sc.start_code = PAY_ERR_INSUFFICIENT_FUNDS;
    xfer_run(sc, XFER_REMOTE, &r, seen, cells, &n);
    assert_int_equal(r.status, 402);
    assert_int_equal(n, 1);
    /* A decide that fails: no decision known, retry with the same key. */
    sc = tcc_ok;
    sc.confirm_code = PAY_ERR_FULL;
    xfer_run(sc, XFER_REMOTE, &r, seen, cells, &n);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "transfer is not decided yet"));
    /* Back to the one-cell table of the other tests. */
    rt_table_t *t = calloc(1, sizeof *t);
    assert_non_null(t);
    table_for(t, fake->port);
    t->version = 300;
    assert_true(gateway_set_routes(t));
    uv_sleep(100);
    free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_and_operator), cmocka_unit_test(test_signed_payment),
        cmocka_unit_test(test_signature_refusals),  cmocka_unit_test(test_many_connections),
        cmocka_unit_test(test_route_change),        cmocka_unit_test(test_tcc_refund),
        cmocka_unit_test(test_tcc_refund_refusals), cmocka_unit_test(test_transfers),
        cmocka_unit_test(test_transfer_refusals),   cmocka_unit_test(test_xcell_payment_replays),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

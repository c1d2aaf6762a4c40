/* The HTTP server on real loopback sockets: servers run on a libuv loop in a second thread,
 * the tests are blocking clients. Every wait has an end: sockets time out after
 * CLIENT_TIMEOUT_S, so a server that fails to answer fails the test instead of hanging it.
 * Nothing asserts a duration; the short timeouts of one server only make 408 and the idle
 * close arrive soon. */
#define _GNU_SOURCE /* memmem, strcasestr */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "gateway/http.h"
#include "gateway/json_out.h"

#define CLIENT_TIMEOUT_S 30
#define CLIENT_BUF (256u * 1024u)

/* ---- The server side: a loop thread, three servers, and actions asked of the loop ---- */

typedef enum action {
    ACT_NONE,
    ACT_RESPOND_HELD,
    ACT_RESPOND_HELD_WHEN_GONE,
    ACT_WAIT_NO_CONNS,
    ACT_STOP
} action_t;

static struct {
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t poll;
    pthread_t thread;
    http_server_t *main, *quick, *small; /* defaults; short timeouts; two connections at most */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    action_t action;
    bool action_done;
    bool held_valid; /* a /hold request waits in held */
    http_handle_t held;
    bool respond_result;
} H = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void reply_text(http_handle_t h, int status, const char *fmt, ...) {
    char body[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    http_respond(h, status, "text/plain", body, (size_t)n);
}

static void handler(void *ctx, const http_request_t *r, http_handle_t h) {
    (void)ctx;
    if (!strcmp(r->path, "/echo")) {
        http_respond(h, 200, "application/octet-stream", r->body, r->body_len);
    } else if (!strcmp(r->path, "/info")) {
        const char *x = http_request_header(r, "X-Test");
        reply_text(h, 200, "%s %s %s %s", r->method, r->path, r->query, x ? x : "-");
    } else if (!strcmp(r->path, "/hold")) {
        pthread_mutex_lock(&H.mu);
        H.held = h;
        H.held_valid = true;
        pthread_cond_broadcast(&H.cv);
        pthread_mutex_unlock(&H.mu);
    } else {
        http_respond_error(h, 404, "not_found", "no such path", r->path);
    }
}

static void action_finish(bool result) {
    pthread_mutex_lock(&H.mu);
    H.respond_result = result;
    H.action_done = true;
    H.action = ACT_NONE;
    pthread_cond_broadcast(&H.cv);
    pthread_mutex_unlock(&H.mu);
}

static uint32_t conns_open(void) {
    return http_server_conn_count(H.main) + http_server_conn_count(H.quick) +
           http_server_conn_count(H.small);
}

/* Waits on the loop (polling, never blocking it) until the servers see no connection. */
static void on_poll(uv_timer_t *t) {
    (void)t;
    if (conns_open() > 0) return;
    uv_timer_stop(&H.poll);
    bool result = false;
    if (H.action == ACT_RESPOND_HELD_WHEN_GONE)
        result = http_respond(H.held, 200, "text/plain", "late", 4);
    action_finish(result);
}

static void closed_nothing(uv_handle_t *h) {
    (void)h;
}

static void on_wake(uv_async_t *a) {
    (void)a;
    pthread_mutex_lock(&H.mu);
    action_t act = H.action;
    pthread_mutex_unlock(&H.mu);
    switch (act) {
    case ACT_RESPOND_HELD:
        action_finish(http_respond(H.held, 200, "text/plain", "held reply", 10));
        break;
    case ACT_RESPOND_HELD_WHEN_GONE:
    case ACT_WAIT_NO_CONNS: uv_timer_start(&H.poll, on_poll, 1, 5); break;
    case ACT_STOP:
        http_server_stop(H.main);
        http_server_stop(H.quick);
        http_server_stop(H.small);
        uv_close((uv_handle_t *)&H.wake, closed_nothing);
        uv_close((uv_handle_t *)&H.poll, closed_nothing);
        action_finish(true);
        break;
    case ACT_NONE: break;
    }
}

static bool ask_loop(action_t act) {
    pthread_mutex_lock(&H.mu);
    H.action = act;
    H.action_done = false;
    pthread_mutex_unlock(&H.mu);
    uv_async_send(&H.wake);
    pthread_mutex_lock(&H.mu);
    while (!H.action_done) pthread_cond_wait(&H.cv, &H.mu);
    bool r = H.respond_result;
    pthread_mutex_unlock(&H.mu);
    return r;
}

static void wait_held(void) {
    pthread_mutex_lock(&H.mu);
    while (!H.held_valid) pthread_cond_wait(&H.cv, &H.mu);
    H.held_valid = false;
    pthread_mutex_unlock(&H.mu);
}

static void *loop_main(void *arg) {
    (void)arg;
    uv_run(&H.loop, UV_RUN_DEFAULT);
    return NULL;
}

static http_server_t *start_one(const http_config_t *cfg) {
    char err[256];
    http_server_t *s = http_server_start(&H.loop, cfg, handler, NULL, err, sizeof err);
    if (!s) fprintf(stderr, "cannot start a server: %s\n", err);
    assert_non_null(s);
    return s;
}

static int setup(void **state) {
    (void)state;
    assert_int_equal(uv_loop_init(&H.loop), 0);
    uv_async_init(&H.loop, &H.wake, on_wake);
    uv_timer_init(&H.loop, &H.poll);
    H.main = start_one(&(http_config_t){.listen = "127.0.0.1:0", .log_name = "main"});
    H.quick = start_one(&(http_config_t){.listen = "127.0.0.1:0",
                                         .request_timeout_ms = 300,
                                         .idle_timeout_ms = 300,
                                         .log_name = "quick"});
    H.small =
        start_one(&(http_config_t){.listen = "127.0.0.1:0", .conns_max = 2, .log_name = "small"});
    assert_int_equal(pthread_create(&H.thread, NULL, loop_main, NULL), 0);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    ask_loop(ACT_STOP);
    pthread_join(H.thread, NULL);
    http_server_free(H.main);
    http_server_free(H.quick);
    http_server_free(H.small);
    assert_int_equal(uv_loop_close(&H.loop), 0);
    return 0;
}

/* ---- The client side: blocking sockets ---- */

typedef struct client {
    int fd;
    size_t len;
    char buf[CLIENT_BUF];
} client_t;

typedef struct response {
    int status;
    bool close; /* Connection: close */
    size_t body_len;
    char body[CLIENT_BUF];
} response_t;

static client_t *client_open(http_server_t *s) {
    client_t *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    struct timeval tv = {.tv_sec = CLIENT_TIMEOUT_S};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(http_server_port(s))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof a), 0);
    return c;
}

static void client_close(client_t *c) {
    close(c->fd);
    free(c);
}

/* Sends everything; false when the server has closed the connection. */
static bool client_send(client_t *c, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool client_sends(client_t *c, const char *s) {
    return client_send(c, s, strlen(s));
}

/* Reads more bytes; false at EOF, a reset or the safety timeout. */
static bool client_fill(client_t *c) {
    if (c->len == sizeof c->buf) return false;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (n <= 0) return false;
    c->len += (size_t)n;
    return true;
}

/* Reads one response (the server always sends Content-Length). Status -1 when the
 * connection ended first. */
static void client_read(client_t *c, response_t *r, bool head) {
    memset(r, 0, offsetof(response_t, body));
    r->status = -1;
    char *end;
    while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4)))
        if (!client_fill(c)) return;
    size_t head_len = (size_t)(end - c->buf) + 4;
    char headers[8192];
    assert_true(head_len < sizeof headers);
    memcpy(headers, c->buf, head_len);
    headers[head_len] = '\0';
    assert_int_equal(sscanf(headers, "HTTP/1.1 %d", &r->status), 1);
    char *cl = strcasestr(headers, "\r\ncontent-length:");
    size_t len = cl ? strtoul(cl + 17, NULL, 10) : 0;
    r->close = strcasestr(headers, "\r\nconnection: close\r\n") != NULL;
    if (head || r->status < 200) len = 0;
    while (c->len < head_len + len)
        if (!client_fill(c)) {
            r->status = -1;
            return;
        }
    memcpy(r->body, c->buf + head_len, len);
    r->body[len] = '\0';
    r->body_len = len;
    memmove(c->buf, c->buf + head_len + len, c->len - head_len - len);
    c->len -= head_len + len;
}

/* True when the server closes the connection (EOF or reset) with nothing more to read. */
static bool client_sees_close(client_t *c) {
    size_t before = c->len;
    return !client_fill(c) && c->len == before;
}

static response_t resp;

/* ---- Tests ---- */

static void test_keep_alive(void **state) {
    (void)state;
    client_t *c = client_open(H.main);
    for (int i = 0; i < 5; i++) {
        char req[128];
        snprintf(req, sizeof req, "GET /info?n=%d HTTP/1.1\r\nHost: t\r\nX-Test: v%d\r\n\r\n", i,
                 i);
        assert_true(client_sends(c, req));
        client_read(c, &resp, false);
        assert_int_equal(resp.status, 200);
        char want[64];
        snprintf(want, sizeof want, "GET /info n=%d v%d", i, i);
        assert_string_equal(resp.body, want);
        assert_false(resp.close);
    }
    client_close(c);
}

static void test_pipelined_in_order(void **state) {
    (void)state;
    client_t *c = client_open(H.main);
    char all[8192];
    size_t n = 0;
    for (int i = 0; i < 20; i++)
        n += (size_t)snprintf(all + n, sizeof all - n,
                              i % 2 ? "GET /info?n=%d HTTP/1.1\r\nHost: t\r\n\r\n"
                                    : "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\n"
                                      "%04d",
                              i);
    assert_true(client_send(c, all, n));
    for (int i = 0; i < 20; i++) {
        client_read(c, &resp, false);
        assert_int_equal(resp.status, 200);
        char want[64];
        snprintf(want, sizeof want, i % 2 ? "GET /info n=%d -" : "%04d", i);
        assert_string_equal(resp.body, want);
    }
    client_close(c);
}

static void test_one_byte_writes(void **state) {
    (void)state;
    client_t *c = client_open(H.main);
    const char *req = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                      "GET /info?a=b HTTP/1.1\r\nHost: t\r\nX-Test: split\r\n\r\n";
    for (size_t i = 0; req[i]; i++) assert_true(client_send(c, req + i, 1));
    client_read(c, &resp, false);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body, "hello world");
    client_read(c, &resp, false);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body, "GET /info a=b split");
    client_close(c);
}

static void post_body(client_t *c, size_t len) {
    char head[128];
    snprintf(head, sizeof head, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n",
             len);
    char *body = malloc(len);
    assert_non_null(body);
    for (size_t i = 0; i < len; i++) body[i] = (char)('a' + i % 26);
    assert_true(client_sends(c, head));
    client_send(c, body, len); /* the server may stop reading a refused body */
    free(body);
}

static void test_body_limit(void **state) {
    (void)state;
    client_t *c = client_open(H.main);
    post_body(c, 64 * 1024);
    client_read(c, &resp, false);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body_len, 64 * 1024);
    post_body(c, 64 * 1024 + 1);
    client_read(c, &resp, false);
    assert_int_equal(resp.status, 413);
    assert_true(resp.close);
    assert_non_null(strstr(resp.body, "{\"error\":{\"code\":\"request_too_large\""));
    assert_true(client_sees_close(c));
    client_close(c);

    /* A chunked body is counted as it comes. */
    c = client_open(H.main);
    assert_true(client_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                                "\r\n8000\r\n"));
    char *chunk = calloc(1, 0x8000);
    assert_non_null(chunk);
    memset(chunk, 'x', 0x8000);
    for (int i = 0; i < 3; i++) {
        if (!client_send(c, chunk, 0x8000)) break;
        if (!client_sends(c, "\r\n8000\r\n")) break;
    }
    free(chunk);
    client_read(c, &resp, false);
    assert_int_equal(resp.status, 413);
    assert_true(client_sees_close(c));
    client_close(c);
}

static void test_header_limit(void **state) {
    (void)state;
    client_t *c = client_open(H.main);
    size_t n = 17 * 1024;
    char *big = malloc(n + 64);
    assert_non_null(big);
    int at = snprintf(big, 64, "GET /info HTTP/1.1\r\nX-Big: ");
    memset(big + at, 'h', n);
    memcpy(big + at + n, "\r\n\r\n", 5);
    client_sends(c, big);
    free(big);
    client_read(c, &resp, false);
    assert_int_equal(resp.status, 431);
    assert_non_null(strstr(resp.body, "\"code\":\"headers_too_large\""));
    assert_true(client_sees_close(c));
    client_close(c);

    /* Too many headers, each small. */
    c = client_open(H.main);
    assert_true(client_sends(c, "GET /info HTTP/1.1\r\n"));
    for (int i = 0; i < 100; i++) {
        char h[32];
        snprintf(h, sizeof h, "X-H%d: v\r\n", i);
        if (!client_sends(c, h)) break;
    }
    client_sends(c, "\r\n");
    client_read(c, &resp, false);
    assert_int_equal(resp.status, 431);
    client_close(c);
}

static void expect_refused(const char *request, int status, const char *code) {
    client_t *c = client_open(H.main);
    client_sends(c, request);
    client_read(c, &resp, false);
    assert_int_equal(resp.status, status);
    char want[64];
    snprintf(want, sizeof want, "{\"error\":{\"code\":\"%s\"", code);
    assert_non_null(strstr(resp.body, want));
    assert_true(resp.close);
    assert_true(client_sees_close(c));
    client_close(c);
}

static void test_malformed(void **state) {
    (void)state;
    expect_refused("\x01\x02garbage\xff\r\n\r\n", 400, "invalid_request");
    expect_refused("GET /info HTTP/1.1\r\nBad Header\r\n\r\n", 400, "invalid_request");
    expect_refused("GET /info HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400,
                   "invalid_request");
    expect_refused("PROPFIND /info HTTP/1.1\r\nHost: t\r\n\r\n", 501, "not_implemented");
    expect_refused("POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501,
                   "not_implemented");
    expect_refused("POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
                   "not_implemented");
    expect_refused("GET /info HTTP/2.0\r\n\r\n", 505, "http_version_not_supported");
    /* A good request before the bad one is still answered, in order. */
    client_t *c = client_open(H.main);
    client_sends(c, "GET /info HTTP/1.1\r\n\r\nJUNK\r\n\r\n");
    client_read(c, &resp, false);
    assert_int_equal(resp.status, 200);
    client_read(c, &resp, false);
    assert_int_equal(resp.status, 400);
    client_close(c);
}

static void test_expect_continue_head_http10(void **state) {
    (void)state;
    client_t *c = client_open(H.main);
    client_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
    client_read(c, &resp, false);
    assert_int_equal(resp.status, 100);
    client_sends(c, "abc");
    client_read(c, &resp, false);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body, "abc");
    client_sends(c, "HEAD /info HTTP/1.1\r\n\r\n");
    client_read(c, &resp, true);
    assert_int_equal(resp.status, 200);
    client_sends(c, "GET /info HTTP/1.0\r\n\r\n");
    client_read(c, &resp, false);
    assert_int_equal(resp.status, 200);
    assert_true(resp.close);
    assert_true(client_sees_close(c));
    client_close(c);
}

static void test_slow_request_408(void **state) {
    (void)state;
    client_t *c = client_open(H.quick);
    client_sends(c, "GET /info HTTP/1.1\r\nHost: t\r\n");
    client_read(c, &resp, false);
    assert_int_equal(resp.status, 408);
    assert_non_null(strstr(resp.body, "\"code\":\"request_timeout\""));
    assert_true(client_sees_close(c));
    client_close(c);
}

static void test_idle_close(void **state) {
    (void)state;
    client_t *c = client_open(H.quick);
    client_sends(c, "GET /info HTTP/1.1\r\n\r\n");
    client_read(c, &resp, false);
    assert_int_equal(resp.status, 200);
    assert_false(resp.close);
    assert_true(client_sees_close(c)); /* after the idle timeout, with no reply */
    assert_int_equal(c->len, 0);
    client_close(c);
}

static void test_client_leaves_mid_body(void **state) {
    (void)state;
    client_t *c = client_open(H.main);
    client_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 1000\r\n\r\nonly this");
    client_close(c);
    ask_loop(ACT_WAIT_NO_CONNS);
    c = client_open(H.main);
    client_sends(c, "GET /info HTTP/1.1\r\n\r\n");
    client_read(c, &resp, false);
    assert_int_equal(resp.status, 200);
    client_close(c);
}

static void test_async_reply(void **state) {
    (void)state;
    client_t *c = client_open(H.main);
    /* The second request waits behind the first, whose reply comes later. */
    client_sends(c, "GET /hold HTTP/1.1\r\n\r\nGET /info?after HTTP/1.1\r\n\r\n");
    wait_held();
    assert_true(ask_loop(ACT_RESPOND_HELD));
    client_read(c, &resp, false);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body, "held reply");
    client_read(c, &resp, false);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body, "GET /info after -");
    client_close(c);
}

static void test_async_reply_after_client_left(void **state) {
    (void)state;
    client_t *c = client_open(H.main);
    client_sends(c, "GET /hold HTTP/1.1\r\n\r\n");
    wait_held();
    client_close(c);
    /* Once the server has seen the close, the late reply is refused, and nothing breaks. */
    assert_false(ask_loop(ACT_RESPOND_HELD_WHEN_GONE));
    c = client_open(H.main);
    client_sends(c, "GET /info HTTP/1.1\r\n\r\n");
    client_read(c, &resp, false);
    assert_int_equal(resp.status, 200);
    client_close(c);
}

static void test_connection_limit(void **state) {
    (void)state;
    client_t *a = client_open(H.small), *b = client_open(H.small);
    client_sends(a, "GET /info HTTP/1.1\r\n\r\n");
    client_read(a, &resp, false);
    assert_int_equal(resp.status, 200);
    client_sends(b, "GET /info HTTP/1.1\r\n\r\n");
    client_read(b, &resp, false);
    assert_int_equal(resp.status, 200);
    client_t *c = client_open(H.small); /* the kernel accepts; the server closes it */
    client_sends(c, "GET /info HTTP/1.1\r\n\r\n");
    client_read(c, &resp, false);
    assert_int_equal(resp.status, -1);
    client_close(c);
    client_close(a);
    client_close(b);
    ask_loop(ACT_WAIT_NO_CONNS);
    c = client_open(H.small);
    client_sends(c, "GET /info HTTP/1.1\r\n\r\n");
    client_read(c, &resp, false);
    assert_int_equal(resp.status, 200);
    client_close(c);
}

static void test_json_out(void **state) {
    (void)state;
    char buf[256];
    size_t n = json_out_error(buf, sizeof buf, "x", "a\"b\\c\n\x01\xff\xc3\xa9", "p");
    assert_true(n > 0);
    assert_string_equal(buf, "{\"error\":{\"code\":\"x\",\"message\":\"a\\\"b\\\\c\\n\\u0001"
                             "\\ufffd\xc3\xa9\",\"param\":\"p\"}}");
    assert_int_equal(json_out_error(buf, 10, "x", "y", NULL), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_out),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_pipelined_in_order),
        cmocka_unit_test(test_one_byte_writes),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_header_limit),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_expect_continue_head_http10),
        cmocka_unit_test(test_slow_request_408),
        cmocka_unit_test(test_idle_close),
        cmocka_unit_test(test_client_leaves_mid_body),
        cmocka_unit_test(test_async_reply),
        cmocka_unit_test(test_async_reply_after_client_left),
        cmocka_unit_test(test_connection_limit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

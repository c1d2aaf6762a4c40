/* The HTTP request assembler without sockets: the same requests come out however the bytes
 * are split into reads, and the limits hold at their exact edges. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/http_parse.h"

static http_parse_t parser;

/* Feeds len bytes in reads of step bytes (carrying what a request left unread, as the
 * server does) and writes one line per request, or "ERROR status", into out. */
static void run(const char *in, size_t len, size_t step, char *out, size_t cap) {
    http_parse_init(&parser);
    size_t o = 0, pos = 0, avail = 0;
    out[0] = '\0';
    while (pos < len) {
        if (avail == pos) avail = pos + step < len ? pos + step : len;
        size_t used = 0;
        http_parse_status_t st = http_parse_feed(&parser, in + pos, avail - pos, &used);
        pos += used;
        if (st == HTTP_PARSE_MORE) continue;
        if (st == HTTP_PARSE_ERROR) {
            o += (size_t)snprintf(out + o, cap - o, "ERROR %d\n", parser.err_status);
            return;
        }
        if (st == HTTP_PARSE_CONTINUE) {
            o += (size_t)snprintf(out + o, cap - o, "100\n");
            http_parse_resume(&parser);
            continue;
        }
        const http_request_t *r = &parser.req;
        const char *x = http_request_header(r, "x-test");
        const char *e = http_request_header(r, "x-empty");
        o += (size_t)snprintf(out + o, cap - o, "%s %s ?%s x=%s e=%s ka=%d body=%.*s\n", r->method,
                              r->path, r->query, x ? x : "-", e ? e : "-", r->keep_alive,
                              (int)r->body_len, r->body);
        http_parse_next(&parser);
    }
}

static const char stream[] =
    "GET /v1/health?a=1&b=2 HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Test: one\r\n\r\n"
    "POST /echo HTTP/1.1\r\nContent-Length: 5\r\nX-Test:  two \r\n\r\nhello"
    "PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
    "3\r\nabc\r\n2;ext=y\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"
    "DELETE /d HTTP/1.1\r\nConnection: close\r\nX-Test: last\r\n\r\n";

static const char expected[] = "GET /v1/health ?a=1&b=2 x=one e= ka=1 body=\n"
                               "POST /echo ? x=two e=- ka=1 body=hello\n"
                               "100\n"
                               "PUT /c ? x=- e=- ka=1 body=abcde\n"
                               "DELETE /d ? x=last e=- ka=0 body=\n";

static void test_every_split(void **state) {
    (void)state;
    static char out[4096];
    size_t len = sizeof stream - 1;
    for (size_t step = 1; step <= len; step++) {
        run(stream, len, step, out, sizeof out);
        if (strcmp(out, expected) != 0) fprintf(stderr, "reads of %zu bytes\n", step);
        assert_string_equal(out, expected);
    }
}

static char *big;

static void test_body_edge(void **state) {
    (void)state;
    static char out[256];
    for (int extra = 0; extra <= 1; extra++) {
        size_t body = CP_HTTP_BODY_MAX + (size_t)extra;
        int n = sprintf(big, "POST /b HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", body);
        memset(big + n, 'b', body);
        run(big, (size_t)n + body, 4096, out, sizeof out);
        if (extra) {
            assert_string_equal(out, "ERROR 413\n");
        } else {
            assert_non_null(strstr(out, "POST /b ?"));
            assert_int_equal(parser.req.body_len, CP_HTTP_BODY_MAX);
        }
    }
    /* Chunked: counted as it comes. */
    int n = sprintf(big, "POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10001\r\n");
    memset(big + n, 'c', 0x10001);
    run(big, (size_t)n + 0x10001, 1000, out, sizeof out);
    assert_string_equal(out, "ERROR 413\n");
}

static void test_head_edge(void **state) {
    (void)state;
    static char out[256];
    /* head[] holds "/h\0" "X-Big\0" and the value with its NUL, and keeps one byte free. */
    size_t fits = CP_HTTP_HEAD_MAX - 3 - 6 - 1 - 1;
    for (int extra = 0; extra <= 1; extra++) {
        size_t v = fits + (size_t)extra;
        int n = sprintf(big, "GET /h HTTP/1.1\r\nX-Big: ");
        memset(big + n, 'v', v);
        memcpy(big + n + v, "\r\n\r\n", 4);
        run(big, (size_t)n + v + 4, 777, out, sizeof out);
        if (extra)
            assert_string_equal(out, "ERROR 431\n");
        else
            assert_string_equal(out, "GET /h ? x=- e=- ka=1 body=\n");
    }
    for (int extra = 0; extra <= 1; extra++) {
        int n = sprintf(big, "GET /h HTTP/1.1\r\n");
        for (unsigned i = 0; i < CP_HTTP_HEADERS_MAX + (unsigned)extra; i++)
            n += sprintf(big + n, "H%u: %u\r\n", i, i);
        n += sprintf(big + n, "\r\n");
        run(big, (size_t)n, 10, out, sizeof out);
        if (extra)
            assert_string_equal(out, "ERROR 431\n");
        else
            assert_int_equal(parser.req.header_count, CP_HTTP_HEADERS_MAX);
    }
}

static void test_refusals(void **state) {
    (void)state;
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"garbage\r\n\r\n", "ERROR 400\n"},
        {"GET nopath HTTP/1.1\r\n\r\n", "ERROR 400\n"},
        {"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
         "ERROR 400\n"},
        {"TRACE / HTTP/1.1\r\n\r\n", "ERROR 501\n"},
        {"CONNECT h:1 HTTP/1.1\r\n\r\n", "ERROR 501\n"},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: deflate, chunked\r\n\r\n", "ERROR 501\n"},
        {"GET / HTTP/3.0\r\n\r\n", "ERROR 400\n"}, /* llhttp refuses the version itself */
        {"GET / HTTP/2.0\r\n\r\n", "ERROR 505\n"},
        {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "ERROR 505\n"},
        {"GET / HTTP/1.0\r\n\r\n", "GET / ? x=- e=- ka=0 body=\n"},
        {"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
         "GET / ? x=- e=- ka=0 body=\n"},
    };
    static char out[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (size_t step = 1; step <= strlen(cases[i].in); step++) {
            run(cases[i].in, strlen(cases[i].in), step, out, sizeof out);
            if (strcmp(out, cases[i].out) != 0) fprintf(stderr, "case %zu, step %zu\n", i, step);
            assert_string_equal(out, cases[i].out);
        }
    }
}

int main(void) {
    big = malloc(CP_HTTP_BODY_MAX + CP_HTTP_HEAD_MAX + 8192);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_body_edge),
        cmocka_unit_test(test_head_edge),
        cmocka_unit_test(test_refusals),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(big);
    return rc;
}

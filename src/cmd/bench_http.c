/* `cellpay bench http`: signed payments through the HTTP API, end to end (HTTP, signature,
 * routing, the cell's log on disk, the reply), over keep-alive connections with one request in
 * flight each. The load generator, the gateway and the cells share this machine.
 *
 * One libuv loop drives every connection. A run has phases: merchants (one per zone, so every
 * buyer has a merchant in its own cell), users, top-ups, then payments until the duration is
 * over; a phase hands out its requests to whichever connection is free. */
#define _GNU_SOURCE /* mkdtemp */
#include <errno.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "base/assert.h"
#include "base/prng.h"
#include "base/u128.h"
#include "base/zone.h"
#include "cmd/bench_cluster.h"
#include "cmd/cmd_args.h"
#include "gateway/auth.h"

static const char usage[] =
    "usage: cellpay bench http [--connections N] [--duration S] [--hot-share F] [--spread F]\n"
    "                          [--users N] [--cells N] [--addr HOST:PORT --admin-key FILE]\n"
    "                          [--seed S]\n"
    "\n"
    "Starts `cellpay start` in a temporary directory (removed at the end), or uses the API at\n"
    "--addr. It opens a merchant in every zone (uid 1000000 x seed + 10 x zone) and --users\n"
    "funded users over the zones (uid 10000000 + 10 x i), then sends signed POST /v1/payments\n"
    "over N keep-alive connections, one request in flight on each, for S seconds. A buyer pays\n"
    "the merchant of its own zone, which lives in its own cell. It prints as its last line\n"
    "  http_payments per_second=<N> p50_ms=<x> p99_ms=<y> errors=<N> connections=<N>\n"
    "Latency is per request, from the first byte sent to the last byte of the reply. errors\n"
    "counts payments not answered 201. The exit status is 1 when errors is not 0.\n"
    "\n"
    "  --connections N  keep-alive connections (default 256)\n"
    "  --duration S     seconds of payments (default 15)\n"
    "  --hot-share F    fraction of payments that go to one merchant, zone 0's (default 0).\n"
    "                   Buyers come from every zone, so most of these are cross-cell\n"
    "                   payments (docs/cross-cell.md), while the others pay locally.\n"
    "  --spread F       fraction of the other payments (not --hot-share's) that go to the\n"
    "                   merchant of a zone drawn at random (default 0), most of them in\n"
    "                   another cell. --spread 1 is the uniform load (every merchant alike);\n"
    "                   --spread F alone makes as many cross-cell payments as --hot-share F,\n"
    "                   spread over every merchant instead of one.\n"
    "  --users N        buyers (default 10000)\n"
    "  --cells N        cells of the started `cellpay start` (default 4)\n"
    "  --addr H:P       a running API instead (its data stays); needs --admin-key\n"
    "  --admin-key F    the operator key file of that API (its <data>/admin.key)\n"
    "  --seed S         buyers, merchants and amounts (default 1, at most 1000000); against\n"
    "                   --addr, a seed not used there before (merchants must be new)\n";

#define CONNS_MAX 1024u
#define REQ_MAX 2048u
#define RESP_BODY_MAX 4096u
#define MERCHANT_BASE 1000000ull
#define USER_BASE 10000000ull
#define TOPUP_AMOUNT "100000000000"

typedef enum phase { PH_MERCHANTS, PH_USERS, PH_TOPUPS, PH_PAYMENTS, PH_DONE } phase_t;

typedef struct bench bench_t;

typedef struct hconn {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    bench_t *b;
    uint32_t index;
    bool busy;
    bool writing; /* c->write is in use: its callback has not run yet */
    uint64_t sent_ns;
    uint64_t seq; /* this connection's payments, for unique order numbers and keys */
    phase_t phase;
    uint64_t item; /* which merchant / user the request in flight is for */
    llhttp_t parser;
    int status;
    char req[REQ_MAX];
    char body[RESP_BODY_MAX];
    size_t body_len;
    char in[16384];
} hconn_t;

struct bench {
    uv_loop_t loop;
    uv_timer_t timer;
    struct sockaddr_in addr;
    char admin_key[AUTH_HEX_MAX + 1];
    uint32_t users, conns_n, hot_ppm, spread_ppm;
    uint64_t duration_ns;
    prng_t rng;
    phase_t phase;
    uint64_t next_item, items_done, phase_errors;
    uint64_t pay_start_ns, pay_end_ns;
    uint64_t payments_ok, payments_err;
    uint32_t *lat_us; /* one per answered payment */
    size_t lat_n, lat_cap;
    char secrets[CP_ZONES][AUTH_HEX_MAX + 1];
    auth_key_t *keys[CP_ZONES]; /* MAC contexts keyed with secrets[], made at first use */
    int64_t ts_s;               /* the second ts was written for */
    char ts[24];                /* X-Cellpay-Timestamp: written once a second, not per request */
    hconn_t *conns;
    uint32_t open_conns;
    bool failed;
};

static llhttp_settings_t parser_settings;

static uint64_t now_ns(void) {
    return bc_now_ns();
}

static uint64_t phase_count(const bench_t *b, phase_t p) {
    return p == PH_MERCHANTS ? CP_ZONES : p == PH_PAYMENTS ? UINT64_MAX : b->users;
}

static uint64_t user_uid(uint64_t i) {
    return USER_BASE + 10 * i; /* zone = i mod 100 under the default rule */
}

static uint64_t merchant_base = MERCHANT_BASE;

static uint64_t merchant_uid(uint32_t zone) {
    return merchant_base + 10ull * zone;
}

/* ---- Requests ---- */

static int put_request(hconn_t *c, const char *method, const char *path, const char *extra,
                       const char *body) {
    int n = snprintf(c->req, sizeof c->req,
                     "%s %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%s\r\n%s",
                     method, path, strlen(body), extra, body);
    cp_assert(n > 0 && (size_t)n < sizeof c->req);
    return n;
}

static int build_setup(bench_t *b, hconn_t *c) {
    char body[256], path[96], extra[192];
    snprintf(extra, sizeof extra, "Authorization: Bearer %s\r\n", b->admin_key);
    switch (c->phase) {
    case PH_MERCHANTS:
        snprintf(body, sizeof body, "{\"uid\":\"%llu\"}",
                 (unsigned long long)merchant_uid((uint32_t)c->item));
        return put_request(c, "POST", "/v1/merchants", extra, body);
    case PH_USERS:
        snprintf(body, sizeof body, "{\"uid\":\"%llu\",\"currency\":\"CNY\"}",
                 (unsigned long long)user_uid(c->item));
        return put_request(c, "POST", "/v1/users", extra, body);
    default:
        snprintf(body, sizeof body, "{\"amount\":\"%s\",\"currency\":\"CNY\"}", TOPUP_AMOUNT);
        snprintf(path, sizeof path, "/v1/users/%llu/topups", (unsigned long long)user_uid(c->item));
        return put_request(c, "POST", path, extra, body);
    }
}

static auth_key_t *zone_key(bench_t *b, uint32_t zone) {
    if (!b->keys[zone]) b->keys[zone] = auth_key_new(b->secrets[zone], AUTH_HEX_MAX);
    cp_assert(b->keys[zone]); /* a benchmark out of memory has nothing left to measure */
    return b->keys[zone];
}

/* Appenders for the payment requests: the load generator shares the machine with what it
 * measures, so what it spends per request is taken from the server; a request is built with
 * copies and one digit loop per number rather than snprintf. */
static char *put_lit(char *p, const char *s) {
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

static char *put_u64(char *p, uint64_t v) {
    char d[U128_DEC_MAX + 1];
    size_t n = u128_format(v, d);
    memcpy(p, d, n);
    return p + n;
}

static int build_payment(bench_t *b, hconn_t *c) {
    uint64_t buyer = prng_below(&b->rng, b->users);
    uint32_t zone = (uint32_t)(buyer % CP_ZONES);
    if (b->hot_ppm && prng_chance_ppm(&b->rng, b->hot_ppm))
        zone = 0;
    else if (b->spread_ppm && prng_chance_ppm(&b->rng, b->spread_ppm))
        zone = (uint32_t)prng_below(&b->rng, CP_ZONES);
    /* Every piece is bounded (numbers <= 20 digits), so both buffers have room to spare. */
    char body[256], sig[AUTH_HEX_MAX + 1];
    char *p = put_lit(body, "{\"buyer_uid\":\"");
    p = put_u64(p, user_uid(buyer));
    p = put_lit(p, "\",\"amount\":\"");
    p = put_u64(p, 1 + prng_below(&b->rng, 999));
    p = put_lit(p, "\",\"currency\":\"CNY\",\"out_trade_no\":\"b");
    p = put_u64(p, c->index);
    p = put_lit(p, "-");
    p = put_u64(p, c->seq);
    p = put_lit(p, "\",\"funding\":\"balance\"}");
    size_t body_len = (size_t)(p - body);
    cp_assert(body_len < sizeof body);
    int64_t now = (int64_t)time(NULL);
    if (now != b->ts_s) {
        b->ts_s = now;
        snprintf(b->ts, sizeof b->ts, "%lld", (long long)now);
    }
    auth_key_sign(zone_key(b, zone), "POST", "/v1/payments", b->ts, body, body_len, sig);
    p = put_lit(c->req, "POST /v1/payments HTTP/1.1\r\nHost: bench\r\n"
                        "Content-Type: application/json\r\nContent-Length: ");
    p = put_u64(p, body_len);
    p = put_lit(p, "\r\nIdempotency-Key: k");
    p = put_u64(p, c->index);
    p = put_lit(p, "-");
    p = put_u64(p, c->seq);
    p = put_lit(p, "\r\nX-Cellpay-Merchant: ");
    p = put_u64(p, merchant_uid(zone));
    p = put_lit(p, "\r\nX-Cellpay-Timestamp: ");
    p = put_lit(p, b->ts);
    p = put_lit(p, "\r\nX-Cellpay-Signature: ");
    p = put_lit(p, sig);
    p = put_lit(p, "\r\n\r\n");
    memcpy(p, body, body_len);
    p += body_len;
    size_t n = (size_t)(p - c->req);
    cp_assert(n < sizeof c->req);
    c->seq++;
    return (int)n;
}

/* ---- Connections ---- */

static void conn_send(bench_t *b, hconn_t *c);

static void on_written(uv_write_t *w, int status) {
    hconn_t *c = w->data;
    c->writing = false;
    if (status < 0) {
        fprintf(stderr, "cellpay bench http: write: %s\n", uv_strerror(status));
        c->b->failed = true;
        uv_stop(&c->b->loop);
    }
}

/* The secret in a merchant's reply: "secret":"<64 hex>". */
static bool take_secret(bench_t *b, hconn_t *c) {
    c->body[c->body_len < RESP_BODY_MAX ? c->body_len : RESP_BODY_MAX - 1] = '\0';
    const char *p = strstr(c->body, "\"secret\":\"");
    if (!p || strlen(p + 10) < AUTH_HEX_MAX) return false;
    memcpy(b->secrets[c->item], p + 10, AUTH_HEX_MAX);
    b->secrets[c->item][AUTH_HEX_MAX] = '\0';
    return true;
}

static void record_payment(bench_t *b, hconn_t *c, uint64_t t) {
    if (c->status == 201)
        b->payments_ok++;
    else {
        if (b->payments_err++ < 5)
            fprintf(stderr, "cellpay bench http: payment answered %d: %.*s\n", c->status,
                    (int)(c->body_len < 300 ? c->body_len : 300), c->body);
    }
    if (b->lat_n == b->lat_cap) {
        size_t cap = b->lat_cap ? 2 * b->lat_cap : 1u << 20;
        uint32_t *p = realloc(b->lat_us, cap * sizeof *p);
        cp_assert(p); /* a benchmark out of memory has nothing left to measure */
        b->lat_us = p;
        b->lat_cap = cap;
    }
    uint64_t us = (t - c->sent_ns) / 1000;
    b->lat_us[b->lat_n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void on_answer(bench_t *b, hconn_t *c) {
    uint64_t t = now_ns();
    c->busy = false;
    if (c->phase == PH_PAYMENTS) {
        record_payment(b, c, t);
    } else {
        /* A user opened before (200) is fine; a merchant must be new: its secret is shown
         * only when it is created. */
        bool ok = c->phase == PH_MERCHANTS ? c->status == 201 && take_secret(b, c)
                  : c->phase == PH_USERS   ? c->status == 201 || c->status == 200
                                           : c->status == 201;
        if (!ok && b->phase_errors++ < 5)
            fprintf(stderr, "cellpay bench http: setup request answered %d: %.*s\n", c->status,
                    (int)(c->body_len < 300 ? c->body_len : 300), c->body);
        b->items_done++;
    }
    conn_send(b, c);
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
    hconn_t *c = p->data;
    size_t room = RESP_BODY_MAX - 1 - c->body_len;
    size_t n = len < room ? len : room;
    memcpy(c->body + c->body_len, at, n);
    c->body_len += n;
    return 0;
}

static int on_complete(llhttp_t *p) {
    hconn_t *c = p->data;
    c->status = (int)llhttp_get_status_code(p);
    on_answer(c->b, c);
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    (void)hint;
    hconn_t *c = h->data;
    *buf = uv_buf_init(c->in, sizeof c->in);
}

static void conn_fail(hconn_t *c, const char *what) {
    fprintf(stderr, "cellpay bench http: connection %u: %s\n", c->index, what);
    c->b->failed = true;
    uv_stop(&c->b->loop);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    hconn_t *c = s->data;
    if (n < 0) {
        conn_fail(c, n == UV_EOF ? "the server closed the connection" : uv_strerror((int)n));
        return;
    }
    if (n > 0 && llhttp_execute(&c->parser, buf->base, (size_t)n) != HPE_OK)
        conn_fail(c, llhttp_get_error_reason(&c->parser));
}

/* The next phase starts when every request of this one was answered. */
static void phase_advance(bench_t *b) {
    while (b->phase != PH_PAYMENTS && b->items_done == phase_count(b, b->phase)) {
        if (b->phase_errors) {
            fprintf(stderr, "cellpay bench http: %llu setup requests failed\n",
                    (unsigned long long)b->phase_errors);
            b->failed = true;
            uv_stop(&b->loop);
            return;
        }
        b->phase++;
        b->next_item = b->items_done = 0;
        if (b->phase == PH_PAYMENTS) {
            b->pay_start_ns = now_ns();
            b->pay_end_ns = b->pay_start_ns + b->duration_ns;
        }
        /* Every connection works on the new phase, not only the one that finished the last. */
        for (uint32_t i = 0; i < b->conns_n; i++)
            if (!b->conns[i].busy) conn_send(b, &b->conns[i]);
    }
}

static void conn_send(bench_t *b, hconn_t *c) {
    phase_advance(b);
    /* A new phase hands work to every idle connection, this one too. */
    if (b->failed || c->busy) return;
    int len;
    uint64_t t = now_ns();
    if (b->phase == PH_PAYMENTS) {
        if (t >= b->pay_end_ns) {
            b->phase = PH_DONE;
        } else {
            c->phase = PH_PAYMENTS;
            len = build_payment(b, c);
            goto send;
        }
    }
    if (b->phase == PH_DONE) {
        bool idle = true;
        for (uint32_t i = 0; i < b->conns_n; i++) idle &= !b->conns[i].busy;
        if (idle) uv_stop(&b->loop);
        return;
    }
    if (b->next_item == phase_count(b, b->phase)) return; /* the rest are in flight */
    c->phase = b->phase;
    c->item = b->next_item++;
    len = build_setup(b, c);
send:
    c->busy = true;
    c->body_len = 0;
    c->sent_ns = now_ns();
    /* A request is small: the socket almost always takes it whole at once. Only a rest goes
     * through a write request, and the reply to it can be read before that request's callback
     * runs, so c->write may still be busy then: it is not reused until it is free. */
    int done = uv_try_write((uv_stream_t *)&c->tcp, &(uv_buf_t){c->req, (size_t)len}, 1);
    if (done == UV_EAGAIN) done = 0;
    if (done < 0) {
        conn_fail(c, uv_strerror(done));
        return;
    }
    if (done == len) return;
    if (c->writing) {
        conn_fail(c, "a request had to be queued behind an unfinished write");
        return;
    }
    uv_buf_t buf = uv_buf_init(c->req + done, (unsigned)(len - done));
    c->write.data = c;
    c->writing = true;
    int rc = uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1, on_written);
    if (rc) conn_fail(c, uv_strerror(rc));
}

static void on_connect(uv_connect_t *req, int status) {
    hconn_t *c = req->data;
    if (status < 0) {
        conn_fail(c, uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (++c->b->open_conns == c->b->conns_n)
        for (uint32_t i = 0; i < c->b->conns_n; i++) conn_send(c->b, &c->b->conns[i]);
}

/* ---- The run ---- */

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static void print_result(bench_t *b) {
    uint64_t secs_ns = b->pay_end_ns > b->pay_start_ns ? b->pay_end_ns - b->pay_start_ns : 1;
    uint64_t per_s = (b->payments_ok * 1000000000ull) / secs_ns;
    uint32_t p50 = 0, p99 = 0;
    if (b->lat_n) {
        qsort(b->lat_us, b->lat_n, sizeof *b->lat_us, cmp_u32);
        p50 = b->lat_us[(b->lat_n - 1) / 2];
        p99 = b->lat_us[(b->lat_n * 99 - 1) / 100];
    }
    printf("%llu payments in %.1f s, %llu not answered 201\n",
           (unsigned long long)(b->payments_ok + b->payments_err),
           (double)secs_ns / 1e9, /* a measurement, not money */
           (unsigned long long)b->payments_err);
    printf("http_payments per_second=%llu p50_ms=%u.%03u p99_ms=%u.%03u errors=%llu "
           "connections=%u\n",
           (unsigned long long)per_s, p50 / 1000, p50 % 1000, p99 / 1000, p99 % 1000,
           (unsigned long long)b->payments_err, b->conns_n);
}

static void on_watchdog(uv_timer_t *t) {
    bench_t *b = t->data;
    /* Payments end by time; a phase or a reply that never comes must not hang the run. */
    if (b->phase == PH_DONE || (b->phase == PH_PAYMENTS && now_ns() > b->pay_end_ns)) {
        if (now_ns() > b->pay_end_ns + 30000000000ull) {
            fprintf(stderr, "cellpay bench http: replies still missing 30 s after the end\n");
            b->failed = true;
            uv_stop(&b->loop);
        }
    }
}

static int run(bench_t *b) {
    llhttp_settings_init(&parser_settings);
    parser_settings.on_body = on_body;
    parser_settings.on_message_complete = on_complete;
    uv_loop_init(&b->loop);
    b->conns = calloc(b->conns_n, sizeof *b->conns);
    if (!b->conns) return 1;
    for (uint32_t i = 0; i < b->conns_n; i++) {
        hconn_t *c = &b->conns[i];
        c->b = b;
        c->index = i;
        llhttp_init(&c->parser, HTTP_RESPONSE, &parser_settings);
        c->parser.data = c;
        uv_tcp_init(&b->loop, &c->tcp);
        c->tcp.data = c;
        c->connect.data = c;
        uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&b->addr, on_connect);
    }
    uv_timer_init(&b->loop, &b->timer);
    b->timer.data = b;
    uv_timer_start(&b->timer, on_watchdog, 1000, 1000);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    for (uint32_t i = 0; i < b->conns_n; i++) uv_close((uv_handle_t *)&b->conns[i].tcp, NULL);
    uv_close((uv_handle_t *)&b->timer, NULL);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    uv_loop_close(&b->loop);
    if (!b->failed) print_result(b);
    free(b->conns);
    free(b->lat_us);
    for (uint32_t z = 0; z < CP_ZONES; z++) auth_key_free(b->keys[z]);
    return b->failed || b->payments_err ? 1 : 0;
}

static bool read_key(const char *path, char key[AUTH_HEX_MAX + 1]) {
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(key, 1, AUTH_HEX_MAX, f) : 0;
    if (f) fclose(f);
    key[n] = '\0';
    if (n != AUTH_HEX_MAX) fprintf(stderr, "cellpay bench http: cannot read a key from %s\n", path);
    return n == AUTH_HEX_MAX;
}

typedef struct opts {
    uint32_t conns, duration_s, hot_ppm, spread_ppm, users, cells;
    unsigned long long seed;
    const char *addr, *key_file;
} opts_t;

static int parse(int argc, char **argv, opts_t *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool ok = true;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--connections"))
            ok = args_u32(argc, argv, &i, 1, CONNS_MAX, &o->conns);
        else if (!strcmp(a, "--duration"))
            ok = args_u32(argc, argv, &i, 1, 3600, &o->duration_s);
        else if (!strcmp(a, "--hot-share"))
            ok = args_ppm(argc, argv, &i, &o->hot_ppm);
        else if (!strcmp(a, "--spread"))
            ok = args_ppm(argc, argv, &i, &o->spread_ppm);
        else if (!strcmp(a, "--users"))
            ok = args_u32(argc, argv, &i, 1, 10000000, &o->users);
        else if (!strcmp(a, "--cells"))
            ok = args_u32(argc, argv, &i, 1, CP_ZONES, &o->cells);
        else if (!strcmp(a, "--seed"))
            ok = args_u64(argc, argv, &i, 1000000, &o->seed);
        else if (!strcmp(a, "--addr") && i + 1 < argc)
            o->addr = argv[++i];
        else if (!strcmp(a, "--admin-key") && i + 1 < argc)
            o->key_file = argv[++i];
        else {
            fprintf(stderr, "cellpay bench http: bad option \"%s\"\n\n%s", a, usage);
            return 2;
        }
        if (!ok) return 2;
    }
    if (!o->addr != !o->key_file) {
        fprintf(stderr, "cellpay bench http: --addr and --admin-key go together\n");
        return 2;
    }
    return -1;
}

static bool set_addr(bench_t *b, const char *hostport) {
    char host[64];
    const char *colon = strrchr(hostport, ':');
    if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof host) return false;
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    return uv_ip4_addr(strcmp(host, "localhost") ? host : "127.0.0.1", atoi(colon + 1), &b->addr) ==
           0;
}

int bench_http(int argc, char **argv) {
    opts_t o = {.conns = 256, .duration_s = 15, .users = 10000, .cells = 4, .seed = 1};
    int rc = parse(argc, argv, &o);
    if (rc >= 0) return rc;
    bench_t *b = calloc(1, sizeof *b);
    if (!b) return 1;
    b->conns_n = o.conns;
    b->users = o.users;
    b->hot_ppm = o.hot_ppm;
    b->spread_ppm = o.spread_ppm;
    b->duration_ns = (uint64_t)o.duration_s * 1000000000ull;
    b->rng = (prng_t){o.seed};
    merchant_base = MERCHANT_BASE * (o.seed ? o.seed : 1);
    char root[64] = "", addr[64], log[96], data[96], key[128], cells[16];
    pid_t pid = 0;
    if (o.addr) {
        snprintf(addr, sizeof addr, "%s", o.addr);
        if (!read_key(o.key_file, b->admin_key)) goto out;
    } else {
        snprintf(root, sizeof root, "/tmp/cellpay-bench-XXXXXX");
        if (!mkdtemp(root)) {
            fprintf(stderr, "cellpay bench http: mkdtemp: %s\n", strerror(errno));
            root[0] = '\0';
            goto out;
        }
        snprintf(data, sizeof data, "%s/data", root);
        snprintf(log, sizeof log, "%s/start.log", root);
        snprintf(cells, sizeof cells, "%u", o.cells);
        const char *args[] = {"cellpay",     "start",   "--data", data, "--listen",
                              "127.0.0.1:0", "--cells", cells,    NULL};
        int port = bc_spawn(args, log, "cellpay start: listening on ", &pid);
        if (port <= 0) goto out;
        snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
        snprintf(key, sizeof key, "%s/admin.key", data);
        if (!read_key(key, b->admin_key)) goto out;
    }
    if (!set_addr(b, addr)) {
        fprintf(stderr, "cellpay bench http: --addr takes HOST:PORT, not \"%s\"\n", addr);
        goto out;
    }
    printf("bench http: %u connections, %u s of payments, %u users, API at %s\n", o.conns,
           o.duration_s, o.users, addr);
    fflush(stdout);
    rc = run(b);
out:
    if (pid > 0) bc_stop_pid(pid, "cellpay start");
    if (root[0] && rc == 0)
        bc_remove_tree(root);
    else if (root[0])
        fprintf(stderr, "cellpay bench http: kept %s (the server's log is %s)\n", root, log);
    free(b);
    return rc < 0 ? 1 : rc;
}

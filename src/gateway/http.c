/* The HTTP/1.1 server (see http.h). Each connection owns its buffers for its whole life: a
 * read buffer holding bytes not yet parsed (pipelined requests wait there while an earlier
 * one is answered), the parser with its head and body buffers, and two output buffers, one
 * being written while replies collect in the other (as src/repl/node.c does). Nothing is
 * allocated per request; an output buffer grows only for a reply larger than any before. */
#include "gateway/http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "gateway/http_parse.h"
#include "gateway/json_out.h"

/* Unparsed bytes a connection holds; while a request waits for its reply the client may send
 * this much more before the server stops reading from it. */
#define HTTP_RBUF_BYTES (16u * 1024u)
/* Starting size of each output buffer; it doubles as needed, up to HTTP_OUT_MAX. */
#define HTTP_OUT_INITIAL (4u * 1024u)
/* Replies queued for a client that does not read them: past this it is disconnected. */
#define HTTP_OUT_MAX (8u * 1024u * 1024u)
/* Queued replies past which pipelined requests are left unparsed until the client reads. */
#define HTTP_OUT_HIGH (256u * 1024u)
/* After the last reply of a connection that closes, what the client still sends is read
 * and dropped for this long (at most HTTP_LINGER_BYTES), so that closing with unread bytes
 * does not reset the connection before the client has read the reply (the 413 case). */
#define HTTP_LINGER_MS 2000u
#define HTTP_LINGER_BYTES (1024u * 1024u)
/* Refused connections are logged at most once per this interval, with a count, so that a
 * flood of them does not flood the log too. */
#define HTTP_REFUSED_LOG_MS 1000u
/* Room for a status line and the headers this server writes. */
#define HTTP_REPLY_HEAD_MAX 512u

typedef enum timer_mode { TIMER_NONE, TIMER_IDLE, TIMER_REQUEST, TIMER_LINGER } timer_mode_t;

typedef struct outbuf {
    char *buf;
    size_t len, cap;
} outbuf_t;

typedef struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    http_server_t *server;
    uint32_t slot, gen;
    int handles_open; /* tcp and timer: freed when both have closed */
    bool closing;     /* conn_close ran: only the close callbacks remain */
    bool writing;     /* a uv_write is in flight */
    bool in_flight;   /* a request was handed to the handler and is not answered yet */
    bool processing;  /* conn_process is on the stack (a handler answering at once) */
    bool close_after; /* no more requests: close once the replies are written */
    bool lingering;   /* replies written, write side shut: dropping input until EOF */
    bool reading;
    bool eof;
    bool head_req;   /* the request in flight is a HEAD: its reply has no body */
    bool http10;     /* ... and came as HTTP/1.0 */
    bool keep_alive; /* ... and leaves the connection open */
    timer_mode_t timer_mode;
    uint32_t served;       /* requests handed to the handler */
    uint32_t timer_served; /* ... when the timer was last started */
    size_t rlen;           /* unparsed bytes at the start of rbuf */
    size_t linger_bytes;
    int out_fill; /* the output buffer replies go into; the other one may be being written */
    outbuf_t out[2];
    char rbuf[HTTP_RBUF_BYTES];
    http_parse_t parse;
} conn_t;

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    http_handler_fn handler;
    void *ctx;
    uint32_t conns_max, request_timeout_ms, idle_timeout_ms;
    char log_name[64];
    conn_t **conns; /* by slot; NULL when free */
    uint32_t conn_count;
    uint32_t conns_allocated; /* including those closing: all are freed before the server */
    uint32_t gen;
    uint16_t port;
    uint64_t refused;        /* connections refused since the last log line about them */
    uint64_t refused_log_ms; /* uv_now() of that line; 0 before the first */
    bool listening, listener_closed, stopped;
};

static void conn_close(conn_t *c, const char *why);
static void conn_process(conn_t *c);

static void http_log(const http_server_t *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", s->log_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static const char *status_reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Status";
    }
}

/* ---- Output ---- */

static bool outbuf_reserve(outbuf_t *o, size_t n) {
    if (n <= o->cap - o->len) return true;
    if (n > HTTP_OUT_MAX - o->len) return false;
    size_t cap = o->cap ? o->cap : HTTP_OUT_INITIAL;
    while (cap - o->len < n) cap *= 2;
    if (cap > HTTP_OUT_MAX) cap = HTTP_OUT_MAX;
    char *b = realloc(o->buf, cap);
    if (!b) return false;
    o->buf = b;
    o->cap = cap;
    return true;
}

static void conn_write_done(uv_write_t *req, int status);

/* The replies are first offered to the socket directly: it nearly always takes them whole,
 * and then no write request is queued. A completed uv_write costs a syscall of its own
 * (libuv re-registers the socket with epoll when its write queue drains), one per reply. Only
 * what the socket leaves goes through uv_write. True when everything queued went at once. */
static bool conn_flush(conn_t *c) {
    if (c->closing || c->writing || c->out[c->out_fill].len == 0) return false;
    int w = c->out_fill;
    outbuf_t *o = &c->out[w];
    uv_buf_t b = uv_buf_init(o->buf, (unsigned)o->len);
    int done = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (done == UV_EAGAIN) done = 0;
    if (done < 0) {
        conn_close(c, NULL);
        return false;
    }
    if ((size_t)done == o->len) {
        o->len = 0;
        return true;
    }
    c->out_fill ^= 1;
    c->writing = true;
    b = uv_buf_init(o->buf + done, (unsigned)(o->len - (size_t)done));
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, conn_write_done);
    if (rc != 0) {
        c->writing = false;
        conn_close(c, NULL);
    }
    return false;
}

static void conn_shutdown_done(uv_shutdown_t *req, int status) {
    conn_t *c = req->data;
    if (status != 0 && !c->closing) conn_close(c, NULL);
}

static void conn_arm(conn_t *c);
static void conn_on_timer(uv_timer_t *t);
static void conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void conn_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

/* Once the last reply is written: close, or first shut the write side and drop what the
 * client still sends for a while (see HTTP_LINGER_MS). */
static void conn_finish_maybe(conn_t *c) {
    if (c->closing || !c->close_after || c->lingering || c->writing || c->out[c->out_fill].len > 0)
        return;
    if (c->eof) {
        conn_close(c, NULL);
        return;
    }
    c->lingering = true;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, conn_shutdown_done) != 0) {
        conn_close(c, NULL);
        return;
    }
    conn_arm(c);
}

static void conn_write_done(uv_write_t *req, int status) {
    conn_t *c = req->data;
    c->writing = false;
    if (c->closing) return;
    c->out[c->out_fill ^ 1].len = 0;
    if (status != 0) {
        conn_close(c, NULL);
        return;
    }
    conn_flush(c);
    conn_finish_maybe(c);
    /* Pipelined requests left unparsed while the replies piled up can go on now. */
    if (!c->closing && !c->writing) conn_process(c);
}

static char *put_str(char *p, const char *str) {
    size_t n = strlen(str);
    memcpy(p, str, n);
    return p + n;
}

static char *put_dec(char *p, size_t v) {
    char tmp[24];
    size_t n = 0;
    do tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (n > 0) *p++ = tmp[--n];
    return p;
}

/* The status line and headers into p (room for HTTP_REPLY_HEAD_MAX); returns the end. Put
 * together piece by piece: every reply has one, and a format string costs several times more. */
static char *put_head(char *p, int status, const char *content_type, const char *extra, size_t len,
                      const char *connection) {
    p = put_str(p, "HTTP/1.1 ");
    p = put_dec(p, (size_t)status);
    *p++ = ' ';
    p = put_str(p, status_reason(status));
    p = put_str(p, "\r\n");
    if (content_type) {
        p = put_str(p, "Content-Type: ");
        p = put_str(p, content_type);
        p = put_str(p, "\r\n");
    }
    if (extra) p = put_str(p, extra);
    p = put_str(p, "Content-Length: ");
    p = put_dec(p, len);
    p = put_str(p, "\r\n");
    p = put_str(p, connection);
    return put_str(p, "\r\n");
}

/* Queues a whole reply. close: the connection ends after it, whatever the request asked.
 * extra: more header lines, each ending in CRLF, or NULL. */
static void conn_reply(conn_t *c, int status, const char *content_type, const char *extra,
                       const void *body, size_t len, bool close) {
    cp_assert(status >= 100 && status <= 999);
    if (!c->keep_alive) close = true;
    /* What bounds the head: the fixed parts, a content type and extra lines of bounded size. */
    cp_assert(!content_type || strlen(content_type) <= 64);
    cp_assert(!extra || strlen(extra) <= HTTP_EXTRA_HEADERS_MAX);
    const char *connection = close       ? "Connection: close\r\n"
                             : c->http10 ? "Connection: keep-alive\r\n"
                                         : "";
    size_t body_len = c->head_req ? 0 : len;
    outbuf_t *o = &c->out[c->out_fill];
    if (!outbuf_reserve(o, HTTP_REPLY_HEAD_MAX + body_len)) {
        conn_close(c, "the client does not read its replies");
        return;
    }
    char *start = o->buf + o->len;
    char *end = put_head(start, status, content_type, extra, len, connection);
    cp_assert((size_t)(end - start) < HTTP_REPLY_HEAD_MAX);
    if (body_len) memcpy(end, body, body_len);
    o->len += (size_t)(end - start) + body_len;
    if (close) c->close_after = true;
}

static void conn_reply_error(conn_t *c, int status, const char *code, const char *message,
                             bool close) {
    char body[512];
    size_t len = json_out_error(body, sizeof body, code, message, NULL);
    cp_assert(len > 0);
    conn_reply(c, status, "application/json", NULL, body, len, close);
}

/* ---- Timers and reading ---- */

/* One timer per connection; what it times depends on where the connection is: a request
 * coming in (from its first byte: a slow client gets 408), idle between requests, or the
 * linger before the close. A request with the handler is not timed here. */
static void conn_arm(conn_t *c) {
    http_server_t *s = c->server;
    if (c->closing) return;
    timer_mode_t want = c->lingering     ? TIMER_LINGER
                        : c->in_flight   ? TIMER_NONE
                        : c->close_after ? TIMER_IDLE
                        : c->parse.begun ? TIMER_REQUEST
                                         : TIMER_IDLE;
    /* A request handed over since the timer started restarts it: the idle time and the next
     * request's time count from there, not from an earlier request on the connection. */
    if (want != c->timer_mode || (want != TIMER_LINGER && c->served != c->timer_served)) {
        c->timer_mode = want;
        c->timer_served = c->served;
        uv_timer_stop(&c->timer);
        uint64_t ms = want == TIMER_LINGER    ? HTTP_LINGER_MS
                      : want == TIMER_REQUEST ? s->request_timeout_ms
                                              : s->idle_timeout_ms;
        if (want != TIMER_NONE) uv_timer_start(&c->timer, conn_on_timer, ms, 0);
    }
    /* A full read buffer means requests wait for a reply: stop reading until it is sent. */
    bool want_read = !c->eof && (c->close_after || c->rlen < HTTP_RBUF_BYTES);
    if (want_read != c->reading) {
        c->reading = want_read;
        if (want_read)
            uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
        else
            uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

static void conn_on_timer(uv_timer_t *t) {
    conn_t *c = t->data;
    timer_mode_t mode = c->timer_mode;
    c->timer_mode = TIMER_NONE;
    if (c->closing) return;
    if (mode == TIMER_REQUEST && c->parse.begun && !c->close_after) {
        conn_reply_error(c, 408, "request_timeout", "the request did not arrive in time", true);
        conn_arm(c);
        conn_flush(c);
        conn_finish_maybe(c);
        return;
    }
    conn_close(c, NULL); /* idle, or the linger is over */
}

static void conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    (void)hint;
    conn_t *c = h->data;
    /* After the last request, input is only dropped: the whole buffer serves as a sink. */
    size_t at = c->close_after ? 0 : c->rlen;
    buf->base = c->rbuf + at;
    buf->len = HTTP_RBUF_BYTES - at;
}

static void conn_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    (void)buf;
    conn_t *c = stream->data;
    if (c->closing || nread == 0) return;
    if (nread < 0) {
        /* The client is gone (or done sending): a request it waits for is dropped, its
         * handle now a no-op; replies already queued are still written. */
        c->eof = true;
        if (nread != UV_EOF || c->in_flight || c->lingering || c->parse.begun) {
            conn_close(c, NULL);
            return;
        }
        c->close_after = true;
        c->reading = false;
        conn_finish_maybe(c);
        conn_arm(c);
        return;
    }
    if (c->close_after) {
        c->linger_bytes += (size_t)nread;
        if (c->linger_bytes > HTTP_LINGER_BYTES) conn_close(c, NULL);
        return;
    }
    c->rlen += (size_t)nread;
    conn_process(c);
}

/* ---- Requests ---- */

static void conn_refuse(conn_t *c) {
    http_parse_t *p = &c->parse;
    c->keep_alive = false;
    c->head_req = false;
    conn_reply_error(c, p->err_status, p->err_code, p->err_message, true);
}

static void conn_dispatch(conn_t *c) {
    http_server_t *s = c->server;
    const http_request_t *r = &c->parse.req;
    c->in_flight = true;
    c->served++;
    c->keep_alive = r->keep_alive;
    c->head_req = strcmp(r->method, "HEAD") == 0;
    c->http10 = c->parse.llhttp.http_minor == 0;
    http_handle_t h = {.server = s, .slot = c->slot, .gen = c->gen};
    s->handler(s->ctx, r, h);
}

/* Parses what has arrived, one request at a time: each goes to the handler, and the next is
 * parsed only once it is answered (at once, or later through http_respond). True when it
 * stopped with requests left only because the queued replies reached HTTP_OUT_HIGH. */
static bool conn_parse(conn_t *c) {
    size_t pos = 0;
    while (!c->closing && !c->close_after && !c->in_flight && pos < c->rlen &&
           c->out[c->out_fill].len < HTTP_OUT_HIGH) {
        size_t used = 0;
        http_parse_status_t st = http_parse_feed(&c->parse, c->rbuf + pos, c->rlen - pos, &used);
        cp_assert(used <= c->rlen - pos);
        pos += used;
        if (st == HTTP_PARSE_MORE) break;
        if (st == HTTP_PARSE_ERROR) {
            conn_refuse(c);
            break;
        }
        if (st == HTTP_PARSE_CONTINUE) {
            /* The client waits for this before sending its body; replies before it are
             * already queued, so it stays in order. */
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            outbuf_t *o = &c->out[c->out_fill];
            if (!outbuf_reserve(o, sizeof cont - 1)) {
                conn_close(c, "the client does not read its replies");
                break;
            }
            memcpy(o->buf + o->len, cont, sizeof cont - 1);
            o->len += sizeof cont - 1;
            http_parse_resume(&c->parse);
            continue;
        }
        conn_dispatch(c);
    }
    if (c->closing) return false;
    if (c->close_after) pos = c->rlen; /* nothing after the last request is parsed */
    memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
    c->rlen -= pos;
    return !c->close_after && !c->in_flight && c->rlen > 0 &&
           c->out[c->out_fill].len >= HTTP_OUT_HIGH;
}

static void conn_process(conn_t *c) {
    if (c->processing || c->closing) return;
    c->processing = true;
    /* Replies the socket takes whole at once make room for the requests that wait. */
    while (conn_parse(c) && conn_flush(c)) continue;
    c->processing = false;
    conn_arm(c);
    conn_flush(c);
    conn_finish_maybe(c);
}

static conn_t *conn_of(http_handle_t h) {
    http_server_t *s = h.server;
    if (!s || s->stopped || h.slot >= s->conns_max) return NULL;
    conn_t *c = s->conns[h.slot];
    if (!c || c->gen != h.gen || !c->in_flight || c->closing) return NULL;
    return c;
}

static void conn_answered(conn_t *c) {
    c->in_flight = false;
    http_parse_next(&c->parse);
    conn_process(c); /* the next pipelined request, if any (a no-op inside the handler) */
}

bool http_respond_headers(http_handle_t h, int status, const char *content_type, const char *extra,
                          const void *body, size_t len) {
    conn_t *c = conn_of(h);
    if (!c) return false;
    cp_assert(!extra || strlen(extra) <= HTTP_EXTRA_HEADERS_MAX);
    conn_reply(c, status, content_type, extra, body, len, false);
    if (!c->closing) conn_answered(c);
    return true;
}

bool http_respond(http_handle_t h, int status, const char *content_type, const void *body,
                  size_t len) {
    return http_respond_headers(h, status, content_type, NULL, body, len);
}

const http_request_t *http_request_of(http_handle_t h) {
    conn_t *c = conn_of(h);
    return c ? &c->parse.req : NULL;
}

bool http_respond_error(http_handle_t h, int status, const char *code, const char *message,
                        const char *param) {
    char body[1024];
    size_t len = json_out_error(body, sizeof body, code, message, param);
    if (len == 0) len = json_out_error(body, sizeof body, code, "(message too long)", NULL);
    cp_assert(len > 0);
    return http_respond(h, status, "application/json", body, len);
}

/* ---- Connections ---- */

static void conn_closed(uv_handle_t *h) {
    conn_t *c = h->data;
    if (--c->handles_open > 0) return;
    c->server->conns_allocated--;
    free(c->out[0].buf);
    free(c->out[1].buf);
    free(c);
}

static void conn_close(conn_t *c, const char *why) {
    http_server_t *s = c->server;
    if (c->closing) return;
    if (why) http_log(s, "closing a connection: %s", why);
    c->closing = true;
    c->in_flight = false;
    if (s->conns[c->slot] == c) {
        s->conns[c->slot] = NULL;
        s->conn_count--;
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_closed);
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void refused_closed(uv_handle_t *h) {
    free(h);
}

/* Over the limit the connection is accepted only to be closed at once: left in the backlog
 * it would wait there, and the client would think the server slow rather than full. */
static void refuse_connection(http_server_t *s) {
    uv_tcp_t *t = malloc(sizeof *t);
    if (!t) return;
    uv_tcp_init(s->loop, t);
    if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)t) == 0) {
        s->refused++;
        uint64_t now = uv_now(s->loop);
        if (s->refused_log_ms == 0 || now - s->refused_log_ms >= HTTP_REFUSED_LOG_MS) {
            http_log(s, "refusing connections: %u open, the limit; %llu refused", s->conns_max,
                     (unsigned long long)s->refused);
            s->refused = 0;
            s->refused_log_ms = now ? now : 1;
        }
    }
    uv_close((uv_handle_t *)t, refused_closed);
}

static void on_connection(uv_stream_t *listener, int status) {
    http_server_t *s = listener->data;
    if (status < 0 || s->stopped) return;
    if (s->conn_count == s->conns_max) {
        refuse_connection(s);
        return;
    }
    conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        http_log(s, "out of memory for a new connection");
        refuse_connection(s);
        return;
    }
    c->server = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c->wreq.data = c->sreq.data = c;
    c->handles_open = 2;
    s->conns_allocated++;
    http_parse_init(&c->parse);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->timer, conn_closed);
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
        return;
    }
    uint32_t slot = 0;
    while (s->conns[slot]) slot++;
    c->slot = slot;
    c->gen = ++s->gen;
    s->conns[slot] = c;
    s->conn_count++;
    uv_tcp_nodelay(&c->tcp, 1);
    conn_arm(c);
}

/* ---- The server ---- */

static bool parse_listen(const char *listen, struct sockaddr_in *addr) {
    char host[64];
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof host) return false;
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port > 65535) return false;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    if (!strcmp(host, "localhost")) strcpy(host, "127.0.0.1");
    return uv_ip4_addr(host, (int)port, addr) == 0;
}

http_server_t *http_server_start(uv_loop_t *loop, const http_config_t *config,
                                 http_handler_fn handler, void *ctx, char *err, size_t err_len) {
    cp_assert(loop && config && handler);
    struct sockaddr_in addr;
    const char *listen = config->listen ? config->listen : "127.0.0.1:8080";
    if (!parse_listen(listen, &addr)) {
        snprintf(err, err_len, "the listen address takes IPv4-HOST:PORT, not \"%s\"", listen);
        return NULL;
    }
    http_server_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    s->loop = loop;
    s->handler = handler;
    s->ctx = ctx;
    s->conns_max = config->conns_max ? config->conns_max : CP_HTTP_CONNS_DEFAULT;
    s->request_timeout_ms = config->request_timeout_ms ? config->request_timeout_ms
                                                       : CP_HTTP_REQUEST_TIMEOUT_MS_DEFAULT;
    s->idle_timeout_ms =
        config->idle_timeout_ms ? config->idle_timeout_ms : CP_HTTP_IDLE_TIMEOUT_MS_DEFAULT;
    snprintf(s->log_name, sizeof s->log_name, "%s", config->log_name ? config->log_name : "http");
    s->conns = calloc(s->conns_max, sizeof s->conns[0]);
    int rc = s->conns ? uv_tcp_init(loop, &s->listener) : UV_ENOMEM;
    if (rc == 0) {
        s->listening = true;
        s->listener.data = s;
        rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
    }
    if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
    if (rc == 0) {
        struct sockaddr_in bound;
        int len = sizeof bound;
        rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
        s->port = ntohs(bound.sin_port);
    }
    if (rc != 0) {
        snprintf(err, err_len, "cannot listen on %s: %s", listen, uv_strerror(rc));
        http_server_stop(s);
        /* The listener's close needs the loop; run it here so the caller gets nothing back. */
        uv_run(loop, UV_RUN_NOWAIT);
        http_server_free(s);
        return NULL;
    }
    return s;
}

uint16_t http_server_port(const http_server_t *s) {
    return s->port;
}

uint32_t http_server_conn_count(const http_server_t *s) {
    return s->conn_count;
}

static void listener_closed(uv_handle_t *h) {
    http_server_t *s = h->data;
    s->listener_closed = true;
}

void http_server_stop(http_server_t *s) {
    if (s->stopped) return;
    s->stopped = true;
    if (s->listening) {
        s->listener.data = s;
        uv_close((uv_handle_t *)&s->listener, listener_closed);
    } else {
        s->listener_closed = true;
    }
    for (uint32_t i = 0; s->conns && i < s->conns_max; i++)
        if (s->conns[i]) conn_close(s->conns[i], NULL);
}

void http_server_free(http_server_t *s) {
    if (!s) return;
    cp_assert(s->stopped && s->listener_closed && s->conns_allocated == 0);
    free(s->conns);
    free(s);
}

#include "repl/peer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "repl/raft_wire.h"

#define PEER_BACKOFF_MIN_MS 50u
#define PEER_BACKOFF_MAX_MS 1000u
#define PEER_RBUF_MIN (64u << 10)

typedef struct peer_buf {
    unsigned char *p;
    size_t len, cap;
} peer_buf_t;

typedef struct peer_out {
    peer_net_t *net;
    uint32_t id;
    struct sockaddr_in addr;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_timer_t retry;
    bool tcp_open, connected, writing;
    peer_buf_t out[2]; /* out[fill] accumulates; the other may be in flight */
    int fill;
    uint32_t backoff_ms;
} peer_out_t;

typedef struct peer_in {
    peer_net_t *net;
    uv_tcp_t tcp;
    peer_buf_t in;
    struct peer_in *prev, *next;
} peer_in_t;

struct peer_net {
    uv_loop_t *loop;
    uint64_t cell;
    uint32_t self;
    uv_tcp_t listener;
    peer_out_t outs[PEER_MAX];
    uint32_t nouts;
    peer_in_t *ins;
    peer_recv_fn recv;
    void *ctx;
    peer_stats_t stats;
    rf_entry_t entries[RF_MSG_ENTRIES_MAX];
    char log_name[64]; /* prefix of its log lines: the node's */
    char sink[256];    /* where reads on outgoing connections go (they carry nothing) */
    bool closing;
    uint32_t handles; /* open libuv handles; the net is freed when the last one closes */
};

/* One fprintf: lines of nodes on several threads of a process do not interleave. */
static void net_log(const peer_net_t *n, const char *fmt, const char *a, const char *b) {
    char line[512];
    snprintf(line, sizeof line, fmt, a, b);
    fprintf(stderr, "%s: peers: %s\n", n->log_name, line);
}

static void net_maybe_free(peer_net_t *n) {
    if (!n->closing || n->handles > 0) return;
    for (uint32_t i = 0; i < n->nouts; i++) {
        free(n->outs[i].out[0].p);
        free(n->outs[i].out[1].p);
    }
    free(n);
}

static void handle_closed(uv_handle_t *h) {
    peer_net_t *n = h->data;
    cp_assert(n->handles > 0);
    n->handles--;
    net_maybe_free(n);
}

static bool buf_reserve(peer_buf_t *b, size_t need, size_t max) {
    if (b->len + need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : PEER_RBUF_MIN;
    while (cap < b->len + need) cap *= 2;
    if (cap > max) return false;
    unsigned char *p = realloc(b->p, cap);
    if (!p) return false;
    b->p = p;
    b->cap = cap;
    return true;
}

/* ---- Outgoing connections ---- */

static void out_connect(peer_out_t *o);

static void out_retry_cb(uv_timer_t *t) {
    out_connect(t->data);
}

static void out_tcp_closed(uv_handle_t *h) {
    peer_out_t *o = h->data;
    o->tcp_open = false;
    peer_net_t *n = o->net;
    n->handles--;
    if (n->closing) {
        net_maybe_free(n);
        return;
    }
    uv_timer_start(&o->retry, out_retry_cb, o->backoff_ms, 0);
    o->backoff_ms =
        o->backoff_ms * 2 > PEER_BACKOFF_MAX_MS ? PEER_BACKOFF_MAX_MS : o->backoff_ms * 2;
}

/* Drops the connection (and what was queued on it: Raft resends) and retries later. */
static void out_reset(peer_out_t *o) {
    o->connected = false;
    o->out[0].len = o->out[1].len = 0;
    if (o->tcp_open && !uv_is_closing((uv_handle_t *)&o->tcp))
        uv_close((uv_handle_t *)&o->tcp, out_tcp_closed);
}

static void out_flush(peer_out_t *o);

static void out_write_done(uv_write_t *req, int status) {
    peer_out_t *o = req->data;
    o->writing = false;
    o->out[o->fill ^ 1].len = 0;
    if (status != 0) {
        out_reset(o);
        return;
    }
    out_flush(o);
}

static void out_flush(peer_out_t *o) {
    if (!o->connected || o->writing || o->out[o->fill].len == 0) return;
    int w = o->fill;
    o->fill ^= 1;
    o->writing = true;
    uv_buf_t b = uv_buf_init((char *)o->out[w].p, (unsigned)o->out[w].len);
    if (uv_write(&o->wreq, (uv_stream_t *)&o->tcp, &b, 1, out_write_done) != 0) {
        o->writing = false;
        out_reset(o);
    }
}

/* The peer never sends on our outgoing connection: a read only ever sees it close. The sink
 * is the net's, not a static: nets on other threads may read at the same time. */
static void out_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) {
    (void)s;
    peer_out_t *o = h->data;
    *b = uv_buf_init(o->net->sink, sizeof o->net->sink);
}

static void out_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
    (void)b;
    if (nread != 0) out_reset(s->data); /* EOF, an error, or bytes it should not send */
}

static void out_connected(uv_connect_t *req, int status) {
    peer_out_t *o = req->data;
    if (status != 0 || o->net->closing) {
        out_reset(o);
        return;
    }
    o->connected = true;
    o->backoff_ms = PEER_BACKOFF_MIN_MS;
    o->net->stats.connects++;
    uv_tcp_nodelay(&o->tcp, 1);
    uv_read_start((uv_stream_t *)&o->tcp, out_alloc, out_read);
    out_flush(o);
}

static void out_connect(peer_out_t *o) {
    peer_net_t *n = o->net;
    if (n->closing || o->tcp_open) return;
    uv_tcp_init(n->loop, &o->tcp);
    o->tcp.data = o;
    o->tcp_open = true;
    n->handles++;
    o->creq.data = o;
    o->wreq.data = o;
    if (uv_tcp_connect(&o->creq, &o->tcp, (const struct sockaddr *)&o->addr, out_connected) != 0)
        out_reset(o);
}

void peer_net_send(peer_net_t *n, const rf_msg_t *m) {
    peer_out_t *o = NULL;
    for (uint32_t i = 0; i < n->nouts; i++)
        if (n->outs[i].id == m->h.to) o = &n->outs[i];
    uint32_t size = rfw_frame_size(m);
    peer_buf_t *b = o ? &o->out[o->fill] : NULL;
    if (!o || !o->connected || size == 0 || !buf_reserve(b, size, PEER_SENDBUF_MAX)) {
        n->stats.dropped++;
        return;
    }
    uint32_t w = rfw_encode(m, n->cell, b->p + b->len, (uint32_t)(b->cap - b->len));
    cp_assert(w == size);
    b->len += w;
    n->stats.sent++;
    out_flush(o);
}

/* ---- Incoming connections ---- */

static void in_closed(uv_handle_t *h);

static void in_close(peer_in_t *c, const char *why) {
    if (uv_is_closing((uv_handle_t *)&c->tcp)) return;
    if (why) net_log(c->net, "closing an incoming connection: %s%s", why, "");
    uv_close((uv_handle_t *)&c->tcp, in_closed);
}

static void in_closed(uv_handle_t *h) {
    peer_in_t *c = h->data;
    peer_net_t *n = c->net;
    if (c->prev)
        c->prev->next = c->next;
    else
        n->ins = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c->in.p);
    free(c);
    n->handles--;
    net_maybe_free(n);
}

static void in_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) {
    (void)s;
    peer_in_t *c = h->data;
    if (!buf_reserve(&c->in, PEER_RBUF_MIN, RFW_FRAME_MAX + PEER_RBUF_MIN)) {
        *b = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS: the connection closes */
        return;
    }
    *b = uv_buf_init((char *)c->in.p + c->in.len, (unsigned)(c->in.cap - c->in.len));
}

/* Hands every whole frame in the buffer to the receiver. */
static void in_frames(peer_in_t *c) {
    peer_net_t *n = c->net;
    size_t pos = 0;
    while (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        uint32_t size = 0;
        rfw_error_t e = rfw_peek(c->in.p + pos, c->in.len - pos, &size);
        if (e == RFW_NEED_MORE || (e == RFW_OK && c->in.len - pos < size)) break;
        rf_msg_t m;
        if (e == RFW_OK) e = rfw_decode(c->in.p + pos, size, n->cell, &m, n->entries);
        if (e != RFW_OK) {
            n->stats.bad_frames++;
            in_close(c, rfw_error_str(e));
            return;
        }
        n->stats.received++;
        n->recv(n->ctx, &m);
        pos += size;
    }
    memmove(c->in.p, c->in.p + pos, c->in.len - pos);
    c->in.len -= pos;
    /* A frame announced larger than what is buffered makes room on the next alloc. */
    uint32_t size;
    if (rfw_peek(c->in.p, c->in.len, &size) == RFW_OK && size > c->in.len &&
        !buf_reserve(&c->in, size - c->in.len + PEER_RBUF_MIN, RFW_FRAME_MAX + PEER_RBUF_MIN))
        in_close(c, "out of memory for a frame");
}

static void in_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
    (void)b;
    peer_in_t *c = s->data;
    if (nread < 0) {
        in_close(c, nread == UV_EOF ? NULL : uv_strerror((int)nread));
        return;
    }
    c->in.len += (size_t)nread;
    in_frames(c);
}

static void on_peer_connection(uv_stream_t *server, int status) {
    peer_net_t *n = server->data;
    if (status != 0 || n->closing) return;
    peer_in_t *c = calloc(1, sizeof *c);
    if (!c) return;
    c->net = n;
    uv_tcp_init(n->loop, &c->tcp);
    c->tcp.data = c;
    n->handles++;
    c->next = n->ins;
    if (n->ins) n->ins->prev = c;
    n->ins = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, in_closed);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, in_alloc, in_read);
}

/* ---- Set-up and tear-down ---- */

bool peer_parse_addr(const char *s, struct sockaddr_in *out) {
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof host) return false;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    if (!strcmp(host, "localhost")) strcpy(host, "127.0.0.1");
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 1 || port > 65535) return false;
    return uv_ip4_addr(host, (int)port, out) == 0;
}

uint32_t peer_parse_list(const char *s, peer_addr_t *out, uint32_t max, char *err,
                         size_t err_size) {
    uint32_t n = 0;
    const char *p = s;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[96];
        struct sockaddr_in sa;
        char *eq, *end;
        if (len >= sizeof item || n == max) goto bad;
        memcpy(item, p, len);
        item[len] = '\0';
        eq = strchr(item, '=');
        if (!eq) goto bad;
        *eq = '\0';
        unsigned long id = strtoul(item, &end, 10);
        if (*end || id == 0 || id > UINT32_MAX || strlen(eq + 1) >= sizeof out[n].addr ||
            !peer_parse_addr(eq + 1, &sa))
            goto bad;
        for (uint32_t k = 0; k < n; k++)
            if (out[k].id == id) goto bad;
        out[n].id = (uint32_t)id;
        snprintf(out[n].addr, sizeof out[n].addr, "%s", eq + 1);
        n++;
        p += len + (comma ? 1 : 0);
    }
    if (n > 0) return n;
bad:
    snprintf(err, err_size,
             "--peers takes ID=HOST:PORT[,ID=HOST:PORT...] with distinct ids >= 1 (at most %u), "
             "not \"%s\"",
             max, s);
    return 0;
}

peer_net_t *peer_net_create(uv_loop_t *loop, uint64_t cell, uint32_t self, const peer_addr_t *peers,
                            uint32_t count, peer_recv_fn recv, void *ctx, char *err,
                            size_t err_size) {
    peer_net_t *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    *n = (peer_net_t){.loop = loop, .cell = cell, .self = self, .recv = recv, .ctx = ctx};
    snprintf(n->log_name, sizeof n->log_name, "cellpay node");
    struct sockaddr_in me;
    bool found = false;
    for (uint32_t i = 0; i < count; i++) {
        struct sockaddr_in sa;
        if (!peer_parse_addr(peers[i].addr, &sa) || n->nouts == PEER_MAX) {
            snprintf(err, err_size, "bad peer address \"%s\"", peers[i].addr);
            free(n);
            return NULL;
        }
        if (peers[i].id == self) {
            me = sa;
            found = true;
            continue;
        }
        peer_out_t *o = &n->outs[n->nouts++];
        *o = (peer_out_t){
            .net = n, .id = peers[i].id, .addr = sa, .backoff_ms = PEER_BACKOFF_MIN_MS};
    }
    if (!found) {
        snprintf(err, err_size, "--peers does not list this node's id %u", self);
        free(n);
        return NULL;
    }
    uv_tcp_init(loop, &n->listener);
    n->listener.data = n;
    n->handles++;
    int rc = uv_tcp_bind(&n->listener, (const struct sockaddr *)&me, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&n->listener, 64, on_peer_connection);
    if (rc != 0) {
        snprintf(err, err_size, "cannot listen for peers: %s", uv_strerror(rc));
        n->closing = true;
        uv_close((uv_handle_t *)&n->listener, handle_closed);
        return NULL;
    }
    for (uint32_t i = 0; i < n->nouts; i++) {
        peer_out_t *o = &n->outs[i];
        uv_timer_init(loop, &o->retry);
        o->retry.data = o;
        n->handles++;
        out_connect(o);
    }
    return n;
}

int peer_net_add(peer_net_t *n, uint32_t id, const char *addr) {
    struct sockaddr_in sa;
    if (id == n->self || n->closing || !peer_parse_addr(addr, &sa)) return -1;
    for (uint32_t i = 0; i < n->nouts; i++)
        if (n->outs[i].id == id)
            return memcmp(&n->outs[i].addr.sin_addr, &sa.sin_addr, sizeof sa.sin_addr) == 0 &&
                           n->outs[i].addr.sin_port == sa.sin_port
                       ? 0
                       : -1;
    if (n->nouts == PEER_MAX) return -1;
    peer_out_t *o = &n->outs[n->nouts++];
    *o = (peer_out_t){.net = n, .id = id, .addr = sa, .backoff_ms = PEER_BACKOFF_MIN_MS};
    uv_timer_init(n->loop, &o->retry);
    o->retry.data = o;
    n->handles++;
    out_connect(o);
    return 0;
}

void peer_net_set_log_name(peer_net_t *n, const char *name) {
    snprintf(n->log_name, sizeof n->log_name, "%s", name);
}

void peer_net_stats(const peer_net_t *n, peer_stats_t *out) {
    *out = n->stats;
}

static void timer_closed(uv_handle_t *h) {
    peer_out_t *o = h->data;
    peer_net_t *n = o->net;
    n->handles--;
    net_maybe_free(n);
}

void peer_net_close(peer_net_t *n) {
    n->closing = true;
    uv_close((uv_handle_t *)&n->listener, handle_closed);
    for (peer_in_t *c = n->ins; c; c = c->next)
        if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, in_closed);
    for (uint32_t i = 0; i < n->nouts; i++) {
        peer_out_t *o = &n->outs[i];
        uv_close((uv_handle_t *)&o->retry, timer_closed);
        if (o->tcp_open && !uv_is_closing((uv_handle_t *)&o->tcp))
            uv_close((uv_handle_t *)&o->tcp, out_tcp_closed);
    }
}

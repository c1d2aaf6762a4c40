/* The node's event loop. Requests are read from every connection into the open log entry;
 * when no sync is in flight, every open entry is written to the log and one fdatasync on a
 * worker thread makes them all durable (group commit); then they are applied in order and
 * each request's reply is sent. Nothing is acknowledged before its entry is durable.
 *
 * Reads are answered from the applied state once every write the cell accepted before the
 * read has been applied (a connection waits, with reading paused, until then). */
#include "repl/node.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "base/assert.h"
#include "base/constants.h"
#include "repl/node_internal.h"
#include "repl/snapshot.h"
#include "repl/wal.h"

static void node_pump(node_t *n);
static void conn_process(conn_t *c);
static void conn_close(conn_t *c, const char *why);

void node_log(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("cellpay node: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static uint64_t realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- Output: replies accumulate in a connection's out buffer; one write at a time. ---- */

static void conn_write_done(uv_write_t *req, int status);

static void conn_flush(conn_t *c) {
    if (c->writing || c->out[c->out_fill].len == 0 || c->closing) return;
    int w = c->out_fill;
    c->out_fill ^= 1;
    c->writing = true;
    uv_buf_t b = uv_buf_init(c->out[w].buf, (unsigned)c->out[w].len);
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, conn_write_done);
    if (rc != 0) {
        c->writing = false;
        conn_close(c, uv_strerror(rc));
    }
}

static void conn_write_done(uv_write_t *req, int status) {
    conn_t *c = req->data;
    c->writing = false;
    c->out[c->out_fill ^ 1].len = 0;
    if (status != 0) {
        conn_close(c, uv_strerror(status));
        return;
    }
    conn_flush(c);
    if (c->closing && !c->writing) conn_close(c, NULL);
}

static bool outbuf_reserve(outbuf_t *o, size_t n) {
    if (o->len + n <= o->cap) return true;
    size_t cap = o->cap ? o->cap : 65536;
    while (cap < o->len + n) cap *= 2;
    if (cap > NODE_OUTBUF_MAX) return false;
    char *b = realloc(o->buf, cap);
    if (!b) return false;
    o->buf = b;
    o->cap = cap;
    return true;
}

/* Queues one reply on the connection in slot/gen, if it is still there. */
static void node_reply(node_t *n, uint32_t slot, uint32_t gen, const proto_header_t *req,
                       uint32_t status, uint64_t timestamp, const void *body, uint32_t size) {
    conn_t *c = n->conns[slot];
    if (!c || c->gen != gen || c->closing) return; /* the client left; it will retry */
    outbuf_t *o = &c->out[c->out_fill];
    if (!outbuf_reserve(o, PROTO_HEADER_SIZE + size)) {
        conn_close(c, "client does not read its replies");
        return;
    }
    proto_header_t h = {
        .client_id = req->client_id,
        .request_id = req->request_id,
        .timestamp = timestamp,
        .operation = req->operation,
        .command = PROTO_REPLY,
        .status = status,
        .cell = req->cell,
    };
    proto_seal(&h, body, size);
    memcpy(o->buf + o->len, &h, sizeof h);
    if (size) memcpy(o->buf + o->len + sizeof h, body, size);
    o->len += sizeof h + size;
    conn_flush(c);
}

/* ---- Entries: a ring of buffers; [applied, written) are in the log waiting for their sync,
 * [written, open] accumulate new writes. ---- */

static entry_t *entry_open(node_t *n) {
    return &n->entries[n->open_seq % NODE_ENTRIES];
}

/* Room in the open entry for a request of `events` events and `bytes` body bytes; opens the
 * next entry when this one is full. False when every entry buffer is taken. */
static entry_t *entry_room(node_t *n, uint32_t events, uint32_t bytes) {
    entry_t *e = entry_open(n);
    bool fits = e->events + events <= CP_BATCH_EVENTS_MAX && e->ncmds < NODE_ENTRY_COMMANDS &&
                e->size + sizeof(cell_command_t) + bytes <= NODE_ENTRY_BYTES;
    if (fits) return e;
    /* Keep one buffer spare: node_pump must always be able to close the open entry. */
    if (n->open_seq + 2 - n->applied_seq > NODE_ENTRIES - 1) return NULL;
    n->open_seq++;
    e = entry_open(n);
    cp_assert(e->ncmds == 0 && e->size == 0);
    return e;
}

static void entry_add(entry_t *e, const proto_header_t *h, const void *body, uint32_t size,
                      uint32_t slot, uint32_t gen) {
    cell_command_t cmd = {.client_id = h->client_id,
                          .request_id = h->request_id,
                          .size = size,
                          .operation = h->operation};
    memcpy(e->body + e->size, &cmd, sizeof cmd);
    memcpy(e->body + e->size + sizeof cmd, body, size);
    e->size += (uint32_t)sizeof cmd + size;
    e->events += size / 128;
    e->reqs[e->ncmds++] = (entry_req_t){.slot = slot, .gen = gen, .header = *h};
}

/* ---- Applying: after a sync, entries (applied, written] are durable. ---- */

typedef struct apply_ctx {
    node_t *node;
    entry_t *entry;
    uint32_t next;
} apply_ctx_t;

static void apply_reply(void *ctx, const cell_command_t *cmd, uint32_t status, uint64_t timestamp,
                        const void *reply, uint32_t size) {
    apply_ctx_t *a = ctx;
    cp_assert(a->next < a->entry->ncmds);
    entry_req_t *r = &a->entry->reqs[a->next++];
    cp_assert(r->header.request_id == cmd->request_id && r->header.client_id == cmd->client_id);
    node_reply(a->node, r->slot, r->gen, &r->header, status, timestamp, reply, size);
}

static void node_apply_durable(node_t *n) {
    while (n->applied_seq < n->durable_seq) {
        entry_t *e = &n->entries[n->applied_seq % NODE_ENTRIES];
        apply_ctx_t a = {n, e, 0};
        cell_apply_entry(n->cell, e->timestamp, e->body, e->size, apply_reply, &a);
        cp_assert(a.next == e->ncmds);
        n->applied_index = e->index;
        e->size = e->events = e->ncmds = 0;
        n->applied_seq++;
    }
    /* Connections waiting for a barrier or for entry room may go on; one that must wait
     * again rejoins the list, so work on a copy. */
    conn_t *ready[NODE_CONNS_MAX];
    uint32_t count = n->waiting_count;
    uint32_t gens[NODE_CONNS_MAX];
    memcpy(ready, n->waiting, count * sizeof ready[0]);
    for (uint32_t i = 0; i < count; i++) gens[i] = ready[i]->gen;
    n->waiting_count = 0;
    for (uint32_t i = 0; i < count; i++) ready[i]->waiting = false;
    for (uint32_t i = 0; i < count; i++)
        if (n->conns[ready[i]->slot] == ready[i] && ready[i]->gen == gens[i])
            conn_process(ready[i]);
}

static void sync_work(uv_work_t *w) {
    node_t *n = w->data;
    n->sync_rc = wal_sync_run(&n->sync);
}

static void sync_done(uv_work_t *w, int status) {
    node_t *n = w->data;
    cp_assert(status == 0);
    n->syncing = false;
    wal_sync_end(n->wal, &n->sync, n->sync_rc);
    if (n->sync_rc != WAL_OK) {
        /* The kernel may have dropped the dirty pages: nothing written since the last good
         * sync can be trusted, and nothing of it was acknowledged. Stop; recovery decides. */
        node_log("fatal: fdatasync of the log failed (%s); stopping without acknowledging",
                 strerror(n->sync.err_no));
        exit(1);
    }
    n->durable_seq = n->sync_seq;
    node_apply_durable(n);
    node_snapshot_maybe(n);
    node_pump(n);
}

/* Writes every non-empty open entry to the log and starts one sync for all of them. */
static void node_pump(node_t *n) {
    if (n->syncing) return;
    if (n->stopping && n->applied_seq == n->durable_seq && entry_open(n)->ncmds == 0 &&
        !n->tick_wanted) {
        node_stop_finish(n);
        return;
    }
    entry_t *open = entry_open(n);
    if (open->ncmds == 0 && !n->tick_wanted) return;
    if (open->ncmds > 0 || n->tick_wanted) n->open_seq++; /* close the open entry */
    n->tick_wanted = false;
    uint64_t seq = n->durable_seq;
    for (; seq < n->open_seq; seq++) {
        entry_t *e = &n->entries[seq % NODE_ENTRIES];
        uint64_t now = realtime_ns();
        e->timestamp = now > n->last_entry_ts ? now : n->last_entry_ts + 1;
        n->last_entry_ts = e->timestamp;
        wal_status_t rc = wal_append(n->wal, 1, e->timestamp, e->body, e->size, &e->index);
        if (rc != WAL_OK) {
            node_log("fatal: writing the log failed (%s); stopping without acknowledging",
                     wal_error(n->wal));
            exit(1);
        }
        n->log_bytes_since_snapshot += e->size;
    }
    n->sync_seq = seq;
    (void)wal_sync_begin(n->wal, &n->sync); /* there is always something: entries were written */
    n->syncing = true;
    n->sync_req.data = n;
    int rc = uv_queue_work(n->loop, &n->sync_req, sync_work, sync_done);
    cp_assert(rc == 0);
}

/* ---- Requests ---- */

static void conn_wait(conn_t *c) {
    node_t *n = c->node;
    if (c->waiting) return;
    cp_assert(n->waiting_count < NODE_CONNS_MAX);
    c->waiting = true;
    n->waiting[n->waiting_count++] = c;
    uv_read_stop((uv_stream_t *)&c->tcp);
}

/* Handles one whole, valid message; false when the connection must wait and keep it. */
static bool conn_request(conn_t *c, const proto_header_t *h, const void *body) {
    node_t *n = c->node;
    uint32_t size = h->size - PROTO_HEADER_SIZE;
    if (n->stopping) {
        node_reply(n, c->slot, c->gen, h, PROTO_STATUS_BUSY, 0, NULL, 0);
        return true;
    }
    if (!cell_op_is_write(h->operation)) {
        /* A read sees every write accepted before it arrived: it waits until the entry
         * that was open then has applied. The barrier is fixed on first sight, so a stream
         * of later writes cannot starve the read. */
        if (c->barrier == 0)
            c->barrier = 1 + (entry_open(n)->ncmds > 0 ? n->open_seq + 1 : n->open_seq);
        if (n->applied_seq + 1 < c->barrier) {
            node_pump(n);
            return false;
        }
        c->barrier = 0;
        uint32_t rsize = cell_read(n->cell, h->operation, body, size, n->read_buf);
        node_reply(n, c->slot, c->gen, h, PROTO_STATUS_OK, 0, n->read_buf, rsize);
        return true;
    }
    if ((h->operation == PROTO_OP_TEST_SET_BALANCES || h->operation == PROTO_OP_TEST_SET_CLOCK) &&
        !n->config.test_ops) {
        node_reply(n, c->slot, c->gen, h, PROTO_STATUS_REFUSED, 0, NULL, 0);
        return true;
    }
    uint32_t events =
        (h->operation == PROTO_OP_CREATE_ACCOUNTS || h->operation == PROTO_OP_CREATE_TRANSFERS)
            ? size / 128
            : 0;
    entry_t *e = entry_room(n, events, size);
    if (!e) return false; /* every entry buffer is taken: wait for a sync */
    entry_add(e, h, body, size, c->slot, c->gen);
    node_pump(n);
    return true;
}

/* Takes every whole message out of the read buffer; stops at one that must wait. */
static void conn_process(conn_t *c) {
    while (!c->closing) {
        uint32_t size = 0;
        proto_error_t err = proto_check_header(c->rbuf, c->rlen, &size);
        if (err == PROTO_NEED_MORE || (err == PROTO_OK && c->rlen < size)) break;
        if (err != PROTO_OK) {
            conn_close(c, proto_error_str(err));
            return;
        }
        proto_header_t h;
        memcpy(&h, c->rbuf, sizeof h);
        const void *body = c->rbuf + PROTO_HEADER_SIZE;
        if ((err = proto_check_message(&h, body, PROTO_REQUEST)) != PROTO_OK) {
            conn_close(c, proto_error_str(err));
            return;
        }
        if (!conn_request(c, &h, body)) {
            conn_wait(c);
            return;
        }
        memmove(c->rbuf, c->rbuf + size, c->rlen - size);
        c->rlen -= size;
    }
    if (!c->closing && !c->waiting) uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
}

void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    conn_t *c = h->data;
    buf->base = (char *)c->rbuf + c->rlen;
    buf->len = NODE_RBUF - c->rlen;
}

void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    (void)buf;
    conn_t *c = s->data;
    if (nread < 0) {
        conn_close(c, nread == UV_EOF ? NULL : uv_strerror((int)nread));
        return;
    }
    c->rlen += (size_t)nread;
    conn_process(c);
}

/* ---- Connections ---- */

static void conn_closed(uv_handle_t *h) {
    conn_t *c = h->data;
    free(c->rbuf);
    free(c->out[0].buf);
    free(c->out[1].buf);
    free(c);
}

static void conn_close(conn_t *c, const char *why) {
    node_t *n = c->node;
    if (why) node_log("closing connection %u: %s", c->slot, why);
    if (n->conns[c->slot] == c) {
        n->conns[c->slot] = NULL;
        n->conn_count--;
    }
    if (c->waiting) {
        for (uint32_t i = 0; i < n->waiting_count; i++)
            if (n->waiting[i] == c) n->waiting[i] = n->waiting[--n->waiting_count];
        c->waiting = false;
    }
    c->closing = true;
    if (c->writing) return; /* conn_write_done finishes the close */
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void on_connection(uv_stream_t *server, int status) {
    node_t *n = server->data;
    if (status < 0 || n->stopping) return;
    conn_t *c = calloc(1, sizeof *c);
    if (c) c->rbuf = malloc(NODE_RBUF);
    if (!c || !c->rbuf) {
        free(c);
        node_log("out of memory for a new connection");
        return;
    }
    uv_tcp_init(n->loop, &c->tcp);
    c->tcp.data = c;
    c->wreq.data = c;
    c->node = n;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || n->conn_count == NODE_CONNS_MAX) {
        if (n->conn_count == NODE_CONNS_MAX)
            node_log("refusing a connection: %u open", NODE_CONNS_MAX);
        c->closing = true;
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
        return;
    }
    uint32_t slot = 0;
    while (n->conns[slot]) slot++;
    c->slot = slot;
    c->gen = ++n->conn_gen;
    n->conns[slot] = c;
    n->conn_count++;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
}

/* ---- Timers, signals, start and stop ---- */

static void on_timer(uv_timer_t *t) {
    node_t *n = t->data;
    /* Pending transfers expire by the cell's clock, which moves only with entries: when one
     * is due and the cell is idle, an empty entry carries the time in. */
    uint64_t due = ledger_next_expiry(cell_ledger(n->cell));
    if (due != 0 && due <= realtime_ns() && !n->syncing && entry_open(n)->ncmds == 0) {
        n->tick_wanted = true;
        node_pump(n);
    }
    node_snapshot_poll(n);
}

static void on_signal(uv_signal_t *s, int signum) {
    node_t *n = s->data;
    node_log("received signal %d, stopping after the writes in flight", signum);
    n->stopping = true;
    uv_close((uv_handle_t *)&n->server, NULL);
    node_pump(n);
}

void node_stop_finish(node_t *n) {
    if (n->stopped) return;
    n->stopped = true;
    node_snapshot_wait(n);
    for (uint32_t i = 0; i < NODE_CONNS_MAX; i++)
        if (n->conns[i]) conn_close(n->conns[i], NULL);
    uv_timer_stop(&n->timer);
    uv_close((uv_handle_t *)&n->timer, NULL);
    uv_close((uv_handle_t *)&n->sigterm, NULL);
    uv_close((uv_handle_t *)&n->sigint, NULL);
}

static int node_listen(node_t *n) {
    char host[64];
    int port;
    const char *colon = strrchr(n->config.listen, ':');
    if (!colon || colon - n->config.listen >= (long)sizeof host ||
        sscanf(colon + 1, "%d", &port) != 1 || port < 0 || port > 65535) {
        node_log("--listen takes HOST:PORT, not \"%s\"", n->config.listen);
        return -1;
    }
    memcpy(host, n->config.listen, (size_t)(colon - n->config.listen));
    host[colon - n->config.listen] = '\0';
    if (!strcmp(host, "localhost")) strcpy(host, "127.0.0.1");
    struct sockaddr_in addr;
    int rc = uv_ip4_addr(host, port, &addr);
    if (rc == 0) rc = uv_tcp_init(n->loop, &n->server);
    n->server.data = n;
    if (rc == 0) rc = uv_tcp_bind(&n->server, (const struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&n->server, 511, on_connection);
    if (rc != 0) {
        node_log("cannot listen on %s: %s", n->config.listen, uv_strerror(rc));
        return -1;
    }
    struct sockaddr_in bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&n->server, (struct sockaddr *)&bound, &len);
    /* Tests and scripts read this line to learn an ephemeral port. */
    printf("cellpay node: listening on %s:%d\n", host, ntohs(bound.sin_port));
    fflush(stdout);
    return 0;
}

static void node_free(node_t *n) {
    for (uint32_t i = 0; i < NODE_ENTRIES; i++) {
        free(n->entries[i].body);
        free(n->entries[i].reqs);
    }
    free(n->read_buf);
    if (n->wal) wal_close(n->wal);
    cell_destroy(n->cell);
    free(n);
}

static bool node_alloc(node_t *n) {
    for (uint32_t i = 0; i < NODE_ENTRIES; i++) {
        n->entries[i].body = malloc(NODE_ENTRY_BYTES);
        n->entries[i].reqs = malloc(NODE_ENTRY_COMMANDS * sizeof n->entries[i].reqs[0]);
        if (!n->entries[i].body || !n->entries[i].reqs) return false;
    }
    n->read_buf = malloc(PROTO_MESSAGE_MAX);
    return n->read_buf != NULL;
}

int node_run(const node_config_t *config) {
    signal(SIGPIPE, SIG_IGN);
    node_t *n = calloc(1, sizeof *n);
    if (!n) return 1;
    n->config = *config;
    n->loop = uv_default_loop();
    int rc = 1;
    if (!node_alloc(n)) {
        node_log("out of memory");
    } else if (node_recover(n) == 0 && node_listen(n) == 0) {
        uv_timer_init(n->loop, &n->timer);
        n->timer.data = n;
        uv_timer_start(&n->timer, on_timer, 50, 50);
        uv_signal_init(n->loop, &n->sigterm);
        uv_signal_init(n->loop, &n->sigint);
        n->sigterm.data = n->sigint.data = n;
        uv_signal_start(&n->sigterm, on_signal, SIGTERM);
        uv_signal_start(&n->sigint, on_signal, SIGINT);
        uv_run(n->loop, UV_RUN_DEFAULT);
        rc = 0;
        node_log("stopped cleanly at log index %llu", (unsigned long long)n->applied_index);
    }
    node_free(n);
    uv_loop_close(uv_default_loop());
    return rc;
}

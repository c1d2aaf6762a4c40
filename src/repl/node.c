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
#include <unistd.h>
#include <uv.h>

#include "base/assert.h"
#include "base/constants.h"
#include "repl/node_internal.h"
#include "repl/snapshot.h"
#include "repl/wal.h"

static void node_pump(node_t *n);
static void conn_process(conn_t *c);
void node_wake_waiting(node_t *n);
static void conn_close(conn_t *c, const char *why);

void node_log(node_t *n, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n", n->name, line);
    /* node_start() hands the reason of a failed start to its caller. */
    if (!n->started) {
        size_t len = strnlen(line, sizeof n->start_err - 1);
        memcpy(n->start_err, line, len);
        n->start_err[len] = '\0';
    }
}

static uint64_t realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- Output: replies accumulate in a connection's out buffer; one write at a time. ---- */

static void conn_write_done(uv_write_t *req, int status);

/* The replies are first offered to the socket directly: it nearly always takes them whole,
 * and then no write request is queued (a completed uv_write makes libuv re-register the socket
 * with epoll: a syscall per flush). Only what the socket leaves goes through uv_write. */
static void conn_flush(conn_t *c) {
    if (c->writing || c->out[c->out_fill].len == 0 || c->closing) return;
    int w = c->out_fill;
    outbuf_t *o = &c->out[w];
    uv_buf_t b = uv_buf_init(o->buf, (unsigned)o->len);
    int done = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (done == UV_EAGAIN) done = 0;
    if (done < 0) {
        conn_close(c, uv_strerror(done));
        return;
    }
    if ((size_t)done == o->len) {
        o->len = 0;
        return;
    }
    c->out_fill ^= 1;
    c->writing = true;
    b = uv_buf_init(o->buf + done, (unsigned)(o->len - (size_t)done));
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

/* ---- Entries: a ring of buffers; [applied_seq, open_seq) are proposed to Raft and wait
 * for their commit, open_seq fills up. ---- */

static entry_t *entry_open(node_t *n) {
    return &n->entries[n->open_seq % NODE_ENTRIES];
}

static bool node_is_leader(const node_t *n) {
    return n->lead_term != 0;
}

/* The open entry when it has room for a request of `events` events and `bytes` body bytes;
 * NULL when it is full (node_pump then proposes it and the request waits). */
/* The events a command counts for in an entry (CP_BATCH_EVENTS_MAX): its ledger events, or
 * its pay items (each applies on its own, at most a few ledger events of one). */
static uint32_t command_events(uint8_t op, uint32_t size) {
    if (op == PROTO_OP_CREATE_ACCOUNTS || op == PROTO_OP_CREATE_TRANSFERS) return size / 128;
    if (op == PROTO_OP_PAY) return size / 256;
    return 0;
}

static entry_t *entry_room(node_t *n, uint32_t events, uint32_t bytes) {
    entry_t *e = entry_open(n);
    bool fits = e->events + events <= CP_BATCH_EVENTS_MAX && e->ncmds < NODE_ENTRY_COMMANDS &&
                e->size + sizeof(cell_command_t) + bytes <= NODE_ENTRY_BYTES;
    return fits ? e : NULL;
}

static void entry_add(entry_t *e, const proto_header_t *h, const void *body, uint32_t size,
                      uint32_t slot, uint32_t gen) {
    cell_command_t cmd = {.client_id = h->client_id,
                          .request_id = h->request_id,
                          .size = size,
                          .operation = h->operation};
    memcpy(e->body + NODE_ENTRY_PREFIX + e->size, &cmd, sizeof cmd);
    memcpy(e->body + NODE_ENTRY_PREFIX + e->size + sizeof cmd, body, size);
    e->size += (uint32_t)sizeof cmd + size;
    e->events += command_events(h->operation, size);
    e->reqs[e->ncmds++] = (entry_req_t){.slot = slot, .gen = gen, .header = *h};
}

/* Answers every request of e with status and empties it. */
static void entry_fail(node_t *n, entry_t *e, uint32_t status) {
    for (uint32_t i = 0; i < e->ncmds; i++)
        node_reply(n, e->reqs[i].slot, e->reqs[i].gen, &e->reqs[i].header, status, 0, NULL, 0);
    e->size = e->events = e->ncmds = 0;
    e->index = e->term = 0;
}

/* Leadership lost (or never had): every request waiting for a commit here is told to go to
 * the leader. One that commits anyway is applied without a reply; the client's retry finds it
 * by its ids (exists). */
static void node_fail_pending(node_t *n) {
    for (; n->applied_seq < n->open_seq; n->applied_seq++)
        entry_fail(n, &n->entries[n->applied_seq % NODE_ENTRIES], PROTO_STATUS_NOT_LEADER);
    entry_fail(n, entry_open(n), PROTO_STATUS_NOT_LEADER);
}

/* ---- Applying committed entries ---- */

typedef struct apply_ctx {
    node_t *node;
    entry_t *entry; /* the requests to answer, NULL when the entry was not proposed here */
    uint32_t next;
} apply_ctx_t;

static void apply_reply(void *ctx, const cell_command_t *cmd, uint32_t status, uint64_t timestamp,
                        const void *reply, uint32_t size) {
    apply_ctx_t *a = ctx;
    if (!a->entry) return;
    cp_assert(a->next < a->entry->ncmds);
    entry_req_t *r = &a->entry->reqs[a->next++];
    cp_assert(r->header.request_id == cmd->request_id && r->header.client_id == cmd->client_id);
    node_reply(a->node, r->slot, r->gen, &r->header, status, timestamp, reply, size);
}

/* The proposed entry that became log entry `index` of `term`, if it is this node's. */
static entry_t *entry_for(node_t *n, uint64_t index, uint64_t term) {
    while (n->applied_seq < n->open_seq) {
        entry_t *e = &n->entries[n->applied_seq % NODE_ENTRIES];
        if (e->index > index) return NULL;
        if (e->index == index && e->term == term) return e;
        /* Proposed, but the log at its index holds another entry: it was overwritten. */
        entry_fail(n, e, PROTO_STATUS_NOT_LEADER);
        n->applied_seq++;
    }
    return NULL;
}

static void node_apply(node_t *n, uint64_t index, const rf_entry_t *x) {
    if (x->type == RF_ENTRY_MEMBERS) {
        rf_members_t m;
        if (rf_members_decode(x->data, x->size, &m))
            node_log(n, "membership committed at index %llu: %u members, %d voters",
                     (unsigned long long)index, m.count, __builtin_popcount(m.voters));
        n->applied_index = index;
        return;
    }
    entry_t *e = entry_for(n, index, x->term);
    if (x->size >= NODE_ENTRY_PREFIX) {
        /* The core's copy may sit at any alignment; the events are read as 16-byte-aligned
         * structs, so apply from an aligned copy. */
        unsigned char *b = n->apply_buf;
        memcpy(b, x->data, x->size);
        uint32_t size = x->size - NODE_ENTRY_PREFIX;
        const char *why = cell_entry_check(b + NODE_ENTRY_PREFIX, size);
        if (why) {
            /* Every replica would have to refuse it alike; stopping is the only safe move. */
            node_log(n, "fatal: committed entry %llu is not a valid batch (%s)",
                     (unsigned long long)index, why);
            exit(1);
        }
        uint64_t ts;
        memcpy(&ts, b, sizeof ts);
        apply_ctx_t a = {n, e, 0};
        cell_apply_entry(n->cell, ts, b + NODE_ENTRY_PREFIX, size, apply_reply, &a);
        cp_assert(!e || a.next == e->ncmds);
        if (ts > n->last_entry_ts) n->last_entry_ts = ts;
    }
    if (e) {
        e->size = e->events = e->ncmds = 0;
        e->index = e->term = 0;
        n->applied_seq++;
    }
    n->applied_index = index;
}

/* ---- The Raft loop: collect the core's work and do it, in the order raft.h prescribes ---- */

static void node_sync_maybe(node_t *n);

static void node_write_entries(node_t *n, const rf_ready_t *rd) {
    if (rd->entries_first <= wal_last_index(n->wal) &&
        wal_truncate_after(n->wal, rd->entries_first - 1) != WAL_OK) {
        node_log(n, "fatal: truncating the log failed (%s)", wal_error(n->wal));
        exit(1);
    }
    for (uint32_t k = 0; k < rd->entry_count; k++) {
        const rf_entry_t *x = &rd->entries[k];
        uint64_t ts = 0, index;
        if (x->size >= NODE_ENTRY_PREFIX && x->type == RF_ENTRY_NORMAL)
            memcpy(&ts, x->data, sizeof ts);
        unsigned char scratch[NODE_ENTRY_PREFIX + sizeof(rf_members_wire_t) + RF_MEMBERS_EXTRA_MAX];
        uint32_t size;
        const void *body = node_log_body(x, scratch, &size);
        node_members_learn(n, x);
        if (wal_append(n->wal, x->term, ts, body, size, &index) != WAL_OK) {
            node_log(n, "fatal: writing the log failed (%s); stopping without acknowledging",
                     wal_error(n->wal));
            exit(1);
        }
        cp_assert(index == rd->entries_first + k);
        n->log_bytes_since_snapshot += x->size;
    }
}

static void node_read_ready(node_t *n, const rf_read_state_t *rs) {
    uint32_t slot = (uint32_t)(rs->ctx >> 32), gen = (uint32_t)rs->ctx;
    conn_t *c = slot < NODE_CONNS_MAX ? n->conns[slot] : NULL;
    if (c && c->gen == gen && c->read_asked) c->read_index = rs->index;
}

static void node_ready(node_t *n) {
    for (int rounds = 0; rf_has_ready(n->rf) && rounds < 1000; rounds++) {
        rf_ready_t rd;
        rf_ready(n->rf, &rd);
        if (rd.hs_changed && hardstate_save(&n->hs, rd.hs.term, rd.hs.vote) != 0) {
            node_log(n, "fatal: saving the Raft hard state failed; stopping");
            exit(1);
        }
        if (rd.entry_count) node_write_entries(n, &rd);
        if (rd.has_chunk) node_snap_write(n, &rd.chunk);
        for (uint32_t k = 0; k < rd.msg_count && n->net; k++) {
            if (rd.msgs[k].h.type == RF_MSG_SNAP)
                node_snap_send(n, &rd.msgs[k]);
            else
                peer_net_send(n->net, &rd.msgs[k]);
        }
        for (uint32_t k = 0; k < rd.committed_count; k++)
            node_apply(n, rd.committed_first + k, &rd.committed[k]);
        for (uint32_t k = 0; k < rd.read_count; k++) node_read_ready(n, &rd.reads[k]);
        rf_snap_chunk_t chunk = rd.chunk;
        bool install = rd.has_chunk && rd.chunk.last;
        rf_advance(n->rf, &rd);
        if (install) node_snap_install(n, &chunk);
    }
    rf_info_t info;
    rf_status(n->rf, &info);
    uint64_t lead = info.role == RF_LEADER ? info.term : 0;
    if (lead != n->lead_term) {
        if (n->lead_term != 0) node_fail_pending(n);
        if (lead) node_log(n, "leading the cell in term %llu", (unsigned long long)lead);
        n->lead_term = lead;
    }
    node_members_sync(n);
    node_sync_maybe(n);
    node_wake_waiting(n);
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
        node_log(n, "fatal: fdatasync of the log failed (%s); stopping without acknowledging",
                 strerror(n->sync.err_no));
        exit(1);
    }
    uint64_t durable = wal_durable_index(n->wal);
    if (durable > 0) rf_persisted(n->rf, durable, rf_term_at(n->rf, durable));
    node_ready(n);
    node_snapshot_maybe(n);
    node_pump(n);
}

/* One fdatasync at a time covers everything written before it began (group commit). */
static void node_sync_maybe(node_t *n) {
    if (n->syncing || wal_durable_index(n->wal) == wal_last_index(n->wal)) return;
    if (!wal_sync_begin(n->wal, &n->sync)) {
        wal_sync_end(n->wal, &n->sync, WAL_OK);
        return;
    }
    n->syncing = true;
    n->sync_req.data = n;
    int rc = uv_queue_work(n->loop, &n->sync_req, sync_work, sync_done);
    cp_assert(rc == 0);
}

/* Proposes the open entry once the previous sync is done (so that requests arriving during a
 * sync share the next entry), or at once when it is full. */
static void node_pump(node_t *n) {
    if (n->stopping && !n->syncing && n->applied_seq == n->open_seq && entry_open(n)->ncmds == 0) {
        node_stop_finish(n);
        return;
    }
    entry_t *e = entry_open(n);
    if (e->ncmds == 0 && !n->tick_wanted) return;
    if (!node_is_leader(n)) {
        entry_fail(n, e, PROTO_STATUS_NOT_LEADER);
        n->tick_wanted = false;
        return;
    }
    bool full = e->events >= CP_BATCH_EVENTS_MAX || e->size + 4096 > NODE_ENTRY_BYTES;
    if (n->syncing && !full) return;
    if (n->open_seq + 1 - n->applied_seq >= NODE_ENTRIES) return; /* ring full: wait */
    uint64_t now = realtime_ns();
    uint64_t ts = now > n->last_entry_ts ? now : n->last_entry_ts + 1;
    memset(e->body, 0, NODE_ENTRY_PREFIX);
    memcpy(e->body, &ts, sizeof ts);
    uint64_t index = 0;
    rf_status_t st = rf_propose(n->rf, e->body, e->size + NODE_ENTRY_PREFIX, &index);
    if (st == RF_ERR_FULL || st == RF_ERR_NOT_READY) return; /* the next tick tries again */
    if (st != RF_OK) {
        entry_fail(n, e, PROTO_STATUS_NOT_LEADER);
        return;
    }
    n->tick_wanted = false;
    n->last_entry_ts = ts;
    e->index = index;
    e->term = n->lead_term;
    n->open_seq++;
    node_ready(n);
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

/* A read is linearizable through the read index: the leader confirms it still leads with a
 * heartbeat round, and the read is served once the state has applied that commit index. */
static bool conn_read_request(conn_t *c, const proto_header_t *h, const void *body) {
    node_t *n = c->node;
    if (!node_is_leader(n) && !(n->config.peer_count == 0 && h->operation == PROTO_OP_PING)) {
        c->read_asked = false;
        c->read_index = 0;
        node_reply(n, c->slot, c->gen, h, PROTO_STATUS_NOT_LEADER, 0, NULL, 0);
        return true;
    }
    if (h->operation != PROTO_OP_PING) {
        if (!c->read_asked) {
            uint64_t ctx = ((uint64_t)c->slot << 32) | c->gen;
            if (rf_read_index(n->rf, ctx) != RF_OK) return false; /* not ready: next tick */
            c->read_asked = true;
            node_ready(n);
        }
        if (c->read_index == 0 || n->applied_index < c->read_index) return false;
    }
    c->read_asked = false;
    c->read_index = 0;
    uint32_t size = h->size - PROTO_HEADER_SIZE;
    uint32_t rsize = cell_read(n->cell, h->operation, body, size, n->read_buf);
    node_reply(n, c->slot, c->gen, h, PROTO_STATUS_OK, 0, n->read_buf, rsize);
    return true;
}

/* Handles one whole, valid message; false when the connection must wait and keep it. */
static bool conn_request(conn_t *c, const proto_header_t *h, const void *body) {
    node_t *n = c->node;
    uint32_t size = h->size - PROTO_HEADER_SIZE;
    if (n->stopping) {
        node_reply(n, c->slot, c->gen, h, PROTO_STATUS_BUSY, 0, NULL, 0);
        return true;
    }
    if (node_admin_op(h->operation)) { /* any replica answers (node_admin.c) */
        uint32_t rsize, st = node_admin_request(n, h, body, n->read_buf, &rsize);
        node_reply(n, c->slot, c->gen, h, st, 0, n->read_buf, rsize);
        return true;
    }
    if (!cell_op_is_write(h->operation)) return conn_read_request(c, h, body);
    if ((h->operation == PROTO_OP_TEST_SET_BALANCES || h->operation == PROTO_OP_TEST_SET_CLOCK) &&
        !n->config.test_ops) {
        node_reply(n, c->slot, c->gen, h, PROTO_STATUS_REFUSED, 0, NULL, 0);
        return true;
    }
    /* The state machine refuses it anyway (cell.c); refusing here saves it a log entry.
     * Any replica may answer: the zones are the same on all of them. */
    if (!cell_owns_command(n->cell, h->operation, body, size)) {
        node_reply(n, c->slot, c->gen, h, PROTO_STATUS_WRONG_CELL, 0, NULL, 0);
        return true;
    }
    if (!node_is_leader(n)) {
        node_reply(n, c->slot, c->gen, h, PROTO_STATUS_NOT_LEADER, 0, NULL, 0);
        return true;
    }
    entry_t *e = entry_room(n, command_events(h->operation, size), size);
    if (!e) {
        node_pump(n);
        return false; /* the open entry is full: wait until it is proposed */
    }
    entry_add(e, h, body, size, c->slot, c->gen);
    node_pump(n);
    return true;
}

/* Gives connections that wait (for a read index, an apply, or entry room) another go; one
 * that must wait again rejoins the list, so work on a copy. */
void node_wake_waiting(node_t *n) {
    /* Not re-entered (a woken request can propose, which runs the Raft loop, which wakes):
     * what starts waiting meanwhile gets its turn at the next tick or apply. */
    if (n->waking || n->waiting_count == 0) return;
    n->waking = true;
    conn_t *ready[NODE_CONNS_MAX];
    uint32_t gens[NODE_CONNS_MAX];
    uint32_t count = n->waiting_count;
    memcpy(ready, n->waiting, count * sizeof ready[0]);
    for (uint32_t i = 0; i < count; i++) gens[i] = ready[i]->gen;
    n->waiting_count = 0;
    for (uint32_t i = 0; i < count; i++) ready[i]->waiting = false;
    for (uint32_t i = 0; i < count; i++)
        if (n->conns[ready[i]->slot] == ready[i] && ready[i]->gen == gens[i])
            conn_process(ready[i]);
    n->waking = false;
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
    if (why) node_log(n, "closing connection %u: %s", c->slot, why);
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
        node_log(n, "out of memory for a new connection");
        return;
    }
    uv_tcp_init(n->loop, &c->tcp);
    c->tcp.data = c;
    c->wreq.data = c;
    c->node = n;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || n->conn_count == NODE_CONNS_MAX) {
        if (n->conn_count == NODE_CONNS_MAX)
            node_log(n, "refusing a connection: %u open", NODE_CONNS_MAX);
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
    rf_tick(n->rf);
    if (node_is_leader(n)) node_members_tick(n);
    node_ready(n);
    /* Pending transfers expire by the cell's clock, which moves only with entries: when one
     * is due and the cell is idle, an empty batch carries the time in. */
    uint64_t due = ledger_next_expiry(cell_ledger(n->cell));
    if (node_is_leader(n) && due != 0 && due <= realtime_ns() && entry_open(n)->ncmds == 0 &&
        n->applied_seq == n->open_seq)
        n->tick_wanted = true;
    node_pump(n);
    node_snapshot_poll(n);
    if (n->relay) /* the entries' clock: an activity's age is by it */
        relay_tick(n->relay, realtime_ns(), node_is_leader(n) && !n->stopping, cell_pay(n->cell));
}

static void on_peer_message(void *ctx, const rf_msg_t *m) {
    node_t *n = ctx;
    rf_step(n->rf, m);
    node_ready(n);
    node_pump(n);
}

/* Stops taking requests; the loop ends once the log write in flight is done (node_pump ->
 * node_stop_finish). The one stop path of a signal (node_run) and of node_stop(). */
static void node_begin_stop(node_t *n, const char *why) {
    node_log(n, "%s, stopping after the log write in flight", why);
    if (n->stopping) return;
    n->stopping = true;
    uv_close((uv_handle_t *)&n->server, NULL);
    /* Waiting for commits could wait forever (no quorum): requests not yet answered are told
     * to go elsewhere; one that commits anyway is found by its ids when the client retries. */
    node_fail_pending(n);
    node_pump(n);
}

static void on_signal(uv_signal_t *s, int signum) {
    char why[48];
    snprintf(why, sizeof why, "received signal %d", signum);
    node_begin_stop(s->data, why);
}

static void on_stop_async(uv_async_t *a) {
    node_begin_stop(a->data, "asked to stop");
}

void node_stop_finish(node_t *n) {
    if (n->stopped) return;
    n->stopped = true;
    node_snapshot_wait(n);
    for (uint32_t i = 0; i < NODE_CONNS_MAX; i++)
        if (n->conns[i]) conn_close(n->conns[i], NULL);
    uv_timer_stop(&n->timer);
    uv_close((uv_handle_t *)&n->timer, NULL);
    relay_close(n->relay);
    n->relay = NULL;
    if (n->net) peer_net_close(n->net);
    uv_close((uv_handle_t *)&n->stop_async, NULL);
    if (n->signals) {
        uv_close((uv_handle_t *)&n->sigterm, NULL);
        uv_close((uv_handle_t *)&n->sigint, NULL);
    }
}

static int node_listen(node_t *n) {
    char host[64];
    int port;
    const char *colon = strrchr(n->config.listen, ':');
    if (!colon || colon - n->config.listen >= (long)sizeof host ||
        sscanf(colon + 1, "%d", &port) != 1 || port < 0 || port > 65535) {
        node_log(n, "--listen takes HOST:PORT, not \"%s\"", n->config.listen);
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
        node_log(n, "cannot listen on %s: %s", n->config.listen, uv_strerror(rc));
        return -1;
    }
    struct sockaddr_in bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&n->server, (struct sockaddr *)&bound, &len);
    snprintf(n->host, sizeof n->host, "%s", host);
    n->port = ntohs(bound.sin_port);
    return 0;
}

static int node_peers(node_t *n) {
    if (n->config.peer_count == 0) return 0;
    char err[256];
    n->net = peer_net_create(n->loop, n->config.cell_id, n->config.node_id, n->config.peers,
                             n->config.peer_count, on_peer_message, n, err, sizeof err);
    if (!n->net) node_log(n, "%s", err);
    if (n->net) peer_net_set_log_name(n->net, n->name);
    return n->net ? 0 : -1;
}

static void node_free(node_t *n) {
    for (uint32_t i = 0; i < NODE_ENTRIES; i++) {
        free(n->entries[i].body);
        free(n->entries[i].reqs);
    }
    free(n->read_buf);
    free(n->apply_buf);
    free(n->chunk_buf);
    if (n->rx_fd >= 0) close(n->rx_fd);
    if (n->wal) wal_close(n->wal);
    rf_destroy(n->rf);
    hardstate_close(&n->hs);
    cell_destroy(n->cell);
    free(n);
}

static bool node_alloc(node_t *n) {
    for (uint32_t i = 0; i < NODE_ENTRIES; i++) {
        n->entries[i].body = malloc(NODE_ENTRY_BYTES + NODE_ENTRY_PREFIX);
        n->entries[i].reqs = malloc(NODE_ENTRY_COMMANDS * sizeof n->entries[i].reqs[0]);
        if (!n->entries[i].body || !n->entries[i].reqs) return false;
    }
    n->read_buf = malloc(PROTO_MESSAGE_MAX);
    n->apply_buf = malloc(NODE_ENTRY_BYTES + NODE_ENTRY_PREFIX);
    n->chunk_buf = malloc(RF_SNAP_CHUNK_MAX);
    return n->read_buf != NULL && n->apply_buf != NULL && n->chunk_buf != NULL;
}

static node_t *node_new(const node_config_t *config) {
    node_t *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->config = *config;
    snprintf(n->name, sizeof n->name, "%s", config->name ? config->name : "cellpay node");
    n->config.name = n->name;
    /* Payment object ids carry the cell's number (pay.h). */
    n->config.cell.pay.cell_id = config->cell_id;
    n->hs.fd = -1;
    n->rx_fd = -1;
    n->exit_rc = 1;
    return n;
}

/* On n's own loop: recovers, listens, connects to the peers, and arms the tick and the stop
 * handle. 0, or -1 (logged; node_loop_close() then closes what was opened). */
static int node_open(node_t *n) {
    int rc = uv_loop_init(&n->loop_storage);
    if (rc != 0) {
        node_log(n, "cannot create an event loop: %s", uv_strerror(rc));
        return -1;
    }
    n->loop = &n->loop_storage;
    if (!node_alloc(n)) {
        node_log(n, "out of memory");
        return -1;
    }
    if (node_recover(n) != 0 || node_listen(n) != 0 || node_peers(n) != 0) return -1;
    uv_timer_init(n->loop, &n->timer);
    n->timer.data = n;
    uv_timer_start(&n->timer, on_timer, n->config.tick_ms, n->config.tick_ms);
    uv_async_init(n->loop, &n->stop_async, on_stop_async);
    n->stop_async.data = n;
    if (n->config.routes_path) {
        relay_config_t relay = {.loop = n->loop,
                                .routes_path = n->config.routes_path,
                                .cell_id = n->config.cell_id,
                                .name = n->name,
                                .fault_pct = n->config.relay_fault_pct,
                                .fault_seed = realtime_ns() ^ n->config.node_id,
                                .recover_after_ns = n->config.tcc_recover_after_ns};
        if (relay.fault_pct)
            node_log(n, "relay: faults on purpose in %u%% of batches, seed %llu", relay.fault_pct,
                     (unsigned long long)relay.fault_seed);
        n->relay = relay_create(&relay);
        if (!n->relay) {
            node_log(n, "out of memory for the relay");
            return -1;
        }
    }
    n->started = true;
    return 0;
}

/* Serves until a stop has closed every handle. */
static void node_serve(node_t *n) {
    uv_run(n->loop, UV_RUN_DEFAULT);
    n->exit_rc = 0;
    node_log(n, "stopped cleanly at log index %llu", (unsigned long long)n->applied_index);
}

static void close_open_handle(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Closes the loop; after a failed start, first what was opened on it (the server). */
static void node_loop_close(node_t *n) {
    if (!n->loop) return;
    uv_walk(n->loop, close_open_handle, NULL);
    uv_run(n->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(n->loop);
    if (rc != 0) node_log(n, "its event loop does not close: %s", uv_strerror(rc));
    n->loop = NULL;
}

/* A client that goes away while a reply is written must not kill the process (every cell of
 * it, with node_start()). */
static uv_once_t sigpipe_once = UV_ONCE_INIT;
static void ignore_sigpipe(void) {
    signal(SIGPIPE, SIG_IGN);
}

int node_run(const node_config_t *config) {
    uv_once(&sigpipe_once, ignore_sigpipe);
    node_t *n = node_new(config);
    if (!n) return 1;
    if (node_open(n) == 0) {
        /* Tests and scripts read this line to learn an ephemeral port. */
        printf("%s: listening on %s:%u\n", n->name, n->host, (unsigned)n->port);
        fflush(stdout);
        n->signals = true;
        uv_signal_init(n->loop, &n->sigterm);
        uv_signal_init(n->loop, &n->sigint);
        n->sigterm.data = n->sigint.data = n;
        uv_signal_start(&n->sigterm, on_signal, SIGTERM);
        uv_signal_start(&n->sigint, on_signal, SIGINT);
        node_serve(n);
    }
    node_loop_close(n);
    int rc = n->exit_rc;
    node_free(n);
    return rc;
}

static void node_thread(void *arg) {
    node_t *n = arg;
    n->open_rc = node_open(n);
    if (n->open_rc != 0) {
        node_loop_close(n);
        uv_sem_post(&n->opened);
        return;
    }
    node_log(n, "listening on %s:%u", n->host, (unsigned)n->port);
    uv_sem_post(&n->opened); /* from here the starter owns nothing of n but its port */
    node_serve(n);
    node_loop_close(n);
}

node_t *node_start(const node_config_t *config, char *err, size_t err_size) {
    uv_once(&sigpipe_once, ignore_sigpipe);
    node_t *n = node_new(config);
    if (!n || uv_sem_init(&n->opened, 0) != 0) {
        snprintf(err, err_size, "out of memory");
        free(n);
        return NULL;
    }
    /* The stack of a main thread: nothing in the node was written for less. */
    uv_thread_options_t opt = {.flags = UV_THREAD_HAS_STACK_SIZE, .stack_size = 8u << 20};
    int rc = uv_thread_create_ex(&n->thread, &opt, node_thread, n);
    if (rc != 0) {
        snprintf(err, err_size, "cannot start a thread: %s", uv_strerror(rc));
    } else {
        uv_sem_wait(&n->opened);
        if (n->open_rc == 0) return n;
        uv_thread_join(&n->thread);
        snprintf(err, err_size, "%s", n->start_err[0] ? n->start_err : "cannot start");
    }
    uv_sem_destroy(&n->opened);
    node_free(n);
    return NULL;
}

uint16_t node_port(const node_t *n) {
    return n->port;
}

int node_stop(node_t *n) {
    uv_async_send(&n->stop_async);
    uv_thread_join(&n->thread);
    int rc = n->exit_rc;
    uv_sem_destroy(&n->opened);
    node_free(n);
    return rc;
}

/* The client library (client.h). One libuv loop on one I/O thread owns every connection
 * ("session"); other threads only touch the submission list and the free list, under one
 * mutex, and wake the loop with an async handle.
 *
 * A request lives in a preallocated slot from client_submit() to its callback. Slots move
 * through singly linked FIFOs: submitted (shared) -> queue (I/O thread) -> a session's message
 * -> free list (shared). A session holds at most one message: built from the head of the
 * queue when the session is connected and idle, kept sealed in the session's send buffer until
 * it is answered, so that every retry sends the very same bytes (same client id and request
 * id). */
#include "client/client.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <uv.h>

#include "base/assert.h"
#include "base/prng.h"
#include "ledger/ledger.h"

#define REQUEST_NONE UINT32_MAX

#define EVENT_SIZE 128u
#define SWEEP_MS 10u /* how often deadlines are checked while requests are outstanding */
#define NS_PER_MS 1000000ull

/* The batching rules read only the flags of the first and last event, at the same offset in
 * accounts and transfers; linked is bit 0 in both. */
CP_STATIC_ASSERT(offsetof(ledger_account_t, flags) == offsetof(ledger_transfer_t, flags),
                 "shared flags offset");
CP_STATIC_ASSERT(sizeof(ledger_account_t) == EVENT_SIZE && sizeof(ledger_transfer_t) == EVENT_SIZE,
                 "128-byte events");
CP_STATIC_ASSERT(LEDGER_ACCOUNT_LINKED == 1 && LEDGER_TRANSFER_LINKED == 1, "linked is bit 0");
CP_STATIC_ASSERT(sizeof(ledger_result_t) == 16, "16-byte results");

typedef struct request {
    client_callback_t callback;
    void *ctx;
    const unsigned char *body; /* borrowed from the submitter until the callback */
    uint64_t deadline_ns;      /* uv_hrtime() clock */
    uint32_t size;
    uint32_t events; /* batchable ops (create_*, pay): items in body; else 0 */
    uint32_t next;   /* the next slot in whichever list holds this one */
    uint8_t op;
    bool mergeable; /* may share a message with its neighbours */
} request_t;

typedef struct request_list {
    uint32_t head, tail, count;
} request_list_t;

#define LIST_EMPTY ((request_list_t){REQUEST_NONE, REQUEST_NONE, 0})

typedef enum session_state {
    SESSION_DISCONNECTED, /* no socket; the timer starts the next connect */
    SESSION_CONNECTING,
    SESSION_CONNECTED,
    SESSION_CLOSING, /* uv_close() issued, waiting for its callback */
} session_state_t;

typedef struct message {
    uint32_t first; /* REQUEST_NONE: the session has no message */
    uint32_t requests;
    uint32_t events;
    uint32_t size; /* header + body */
    uint64_t deadline_ns;
    uint8_t op;
    bool sent; /* written on the current connection; a reply is awaited */
} message_t;

#define MESSAGE_NONE ((message_t){.first = REQUEST_NONE})

typedef struct session {
    client_t *client;
    uv_tcp_t tcp;
    uv_timer_t timer; /* connect timeout, attempt timeout, reconnect and busy backoff */
    uv_connect_t connect_req;
    uv_write_t write_req;
    session_state_t state;
    bool writing;
    uint32_t address;       /* index into client->addresses */
    uint32_t failures;      /* connections given up since the last answer */
    uint32_t busy_attempts; /* busy answers in a row */
    uint64_t retry_ms;      /* the wait before reconnecting, chosen when the connection broke */
    prng_t prng;            /* backoff jitter */
    u128 client_id;
    uint64_t request_id; /* of the current or last message */
    message_t msg;
    unsigned char *send; /* the sealed message */
    unsigned char *recv; /* the reply being read */
    uint32_t recv_len;
} session_t;

typedef struct stats {
    _Atomic uint64_t submitted, messages, sends, connects, breaks, replies_invalid, timeouts;
} stats_t;

struct client {
    client_options_t opt;
    struct sockaddr_in addresses[CLIENT_ADDRESSES_MAX];
    char address_names[CLIENT_ADDRESSES_MAX][24];
    uint32_t address_count;
    uint32_t address_hint; /* the address last seen answering: where sessions go next */
    uint32_t answered;     /* the address of the last answer (UINT32_MAX: none yet) */

    uv_loop_t *loop; /* &own_loop, or the caller's (options.loop) */
    uv_loop_t own_loop;
    uv_async_t wake; /* submissions from other threads (own loop only) */
    uv_idle_t pump;  /* submissions on the caller's loop: taken in its next turn */
    uv_timer_t sweep;
    uv_thread_t thread;
    bool shared;           /* runs on the caller's loop: no thread of its own */
    uint32_t handles_open; /* shared: handles not yet closed after client_close() */

    /* Shared with submitting threads: under lock. */
    uv_mutex_t lock;
    request_list_t submitted;
    uint32_t free_head;
    bool closing;
    char last_error[sizeof(((client_stats_t *)0)->last_error)];

    /* The I/O thread's own. */
    request_list_t queue;
    bool shut_down;

    request_t *requests;
    session_t *sessions;
    stats_t stats;
};

static void dispatch(client_t *c);
static void session_send(session_t *s);
static void on_timer(uv_timer_t *t);

static void stat_add(_Atomic uint64_t *counter, uint64_t n) {
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

static bool op_is_create(uint8_t op) {
    return op == PROTO_OP_CREATE_ACCOUNTS || op == PROTO_OP_CREATE_TRANSFERS;
}

/* Ops whose items are independent and answered one reply item each, in order: their
 * submissions may share a message and the reply is split back by item counts. */
static bool op_is_batch(uint8_t op) {
    return op_is_create(op) || op == PROTO_OP_PAY;
}

/* Items of op that fit one message: PROTO_ITEMS_MAX, and the body within PROTO_MESSAGE_MAX
 * (for 256-byte pay items that is 4095, for 128-byte events 8189). */
static uint32_t op_items_max(uint8_t op) {
    uint32_t item = proto_request_item_size(op);
    cp_assert(item > 0);
    uint32_t fit = (PROTO_MESSAGE_MAX - PROTO_HEADER_SIZE) / item;
    return fit < PROTO_ITEMS_MAX ? fit : PROTO_ITEMS_MAX;
}

static bool on_io_thread(const client_t *c) {
    uv_thread_t self = uv_thread_self();
    return uv_thread_equal(&self, &c->thread);
}

static void client_free(client_t *c);

/* A shared client is freed once the last of its handles has closed after client_close(): the
 * loop is the caller's and goes on running, so nothing can wait for it. */
static void shared_handle_closed(client_t *c) {
    if (c->shared && --c->handles_open == 0) client_free(c);
}

static void on_client_handle_closed(uv_handle_t *h) {
    shared_handle_closed(h->data);
}

static void on_session_timer_closed(uv_handle_t *h) {
    session_t *s = h->data;
    shared_handle_closed(s->client);
}

/* ---- Request lists. ---- */

static void list_push(client_t *c, request_list_t *l, uint32_t i) {
    c->requests[i].next = REQUEST_NONE;
    if (l->tail == REQUEST_NONE)
        l->head = i;
    else
        c->requests[l->tail].next = i;
    l->tail = i;
    l->count++;
}

static void list_append(client_t *c, request_list_t *l, const request_list_t *more) {
    if (more->count == 0) return;
    if (l->tail == REQUEST_NONE)
        l->head = more->head;
    else
        c->requests[l->tail].next = more->head;
    l->tail = more->tail;
    l->count += more->count;
}

static uint32_t list_pop(client_t *c, request_list_t *l) {
    cp_assert(l->count > 0);
    uint32_t i = l->head;
    l->head = c->requests[i].next;
    if (l->head == REQUEST_NONE) l->tail = REQUEST_NONE;
    l->count--;
    c->requests[i].next = REQUEST_NONE;
    return i;
}

/* ---- Completing requests (I/O thread). ---- */

/* Frees the slot before the callback runs, so that a callback may submit again even when
 * every slot was in use. */
static void request_finish(client_t *c, uint32_t i, int32_t status, uint64_t timestamp,
                           const void *reply, uint32_t reply_size) {
    request_t *r = &c->requests[i];
    client_callback_t callback = r->callback;
    void *ctx = r->ctx;
    uv_mutex_lock(&c->lock);
    r->next = c->free_head;
    c->free_head = i;
    uv_mutex_unlock(&c->lock);
    callback(ctx, status, timestamp, reply, reply_size);
}

/* Answers every request of the session's message: a batch op's ok results are split back by
 * item counts; any other answer goes whole to each request. */
static void message_finish(client_t *c, session_t *s, int32_t status, uint64_t timestamp,
                           const unsigned char *body, uint32_t body_size) {
    message_t m = s->msg;
    s->msg = MESSAGE_NONE;
    bool split = op_is_batch(m.op) && status == PROTO_STATUS_OK;
    if (op_is_batch(m.op) && !split) body_size = 0;
    uint32_t result = op_is_batch(m.op) ? proto_reply_item_size(m.op) : 0;
    uint32_t offset = 0;
    for (uint32_t i = m.first, n = 0; i != REQUEST_NONE; n++) {
        cp_assert(n < m.requests);
        uint32_t next = c->requests[i].next;
        uint32_t part = split ? c->requests[i].events * result : body_size;
        request_finish(c, i, status, timestamp, split ? body + offset : body, part);
        if (split) offset += part;
        i = next;
    }
    cp_assert(!split || offset == body_size);
}

/* ---- Connection failures. ---- */

static void note_error(client_t *c, const session_t *s, const char *why, int uv_err) {
    char text[sizeof c->last_error];
    snprintf(text, sizeof text, "%s: %s%s%s", c->address_names[s->address], why, uv_err ? ": " : "",
             uv_err ? uv_strerror(uv_err) : "");
    uv_mutex_lock(&c->lock);
    memcpy(c->last_error, text, sizeof text);
    uv_mutex_unlock(&c->lock);
}

/* backoff_min_ms doubled `steps` times, at most backoff_max_ms, with jitter, so that many
 * sessions do not retry in lockstep. */
static uint64_t backoff_delay(session_t *s, uint32_t steps) {
    const client_options_t *o = &s->client->opt;
    uint64_t d = (uint64_t)o->backoff_min_ms << (steps < 20 ? steps : 20);
    if (d > o->backoff_max_ms) d = o->backoff_max_ms;
    return d / 2 + prng_below(&s->prng, d / 2 + 1);
}

/* After s gave up its connection: the next address, and how long to wait before connecting.
 * The next address is the one that last answered, unless that is the one that just failed.
 * While a cell elects a leader its replicas answer not_leader or not at all, and the new
 * leader can be any of them: so the addresses are tried one after the other without waiting,
 * and only a whole round of them without an answer waits, the wait doubling per round. */
static void address_rotate(client_t *c, session_t *s) {
    s->failures++;
    if (c->address_hint == s->address) c->address_hint = (s->address + 1) % c->address_count;
    s->address = c->address_hint;
    uint32_t rounds = s->failures / c->address_count;
    s->retry_ms = s->failures % c->address_count != 0 ? 0 : backoff_delay(s, rounds - 1);
}

/* s got an answer at its address. When that is news (the first answer, or one from another
 * address: the cell has a new leader), every other session starts its search afresh, and
 * those waiting to reconnect go there now instead of sitting out their backoff: the first
 * session to find a new leader ends the failover for all. Answers from the same address are
 * no news, so a session that keeps failing there still backs off. */
static void address_answered(client_t *c, session_t *s) {
    s->failures = 0;
    c->address_hint = s->address;
    if (c->answered == s->address) return;
    c->answered = s->address;
    for (uint32_t i = 0; i < c->opt.sessions; i++) {
        session_t *t = &c->sessions[i];
        t->failures = 0;
        if (t->state != SESSION_DISCONNECTED && t->state != SESSION_CLOSING) continue;
        t->address = s->address;
        t->retry_ms = 0; /* a closing one: on_tcp_close starts its timer with this */
        if (t->state == SESSION_DISCONNECTED) uv_timer_start(&t->timer, on_timer, 0, 0);
    }
}

static void on_tcp_close(uv_handle_t *h) {
    session_t *s = h->data;
    s->state = SESSION_DISCONNECTED;
    s->writing = false;
    s->recv_len = 0;
    if (s->client->shut_down) {
        shared_handle_closed(s->client);
        return;
    }
    uv_timer_start(&s->timer, on_timer, s->retry_ms, 0);
}

/* Gives up the session's connection; its message (if any) stays, to be sent again once the
 * session has reconnected, to the next address. */
static void session_break(session_t *s, const char *why, int uv_err) {
    client_t *c = s->client;
    cp_assert(s->state == SESSION_CONNECTING || s->state == SESSION_CONNECTED);
    note_error(c, s, why, uv_err);
    stat_add(&c->stats.breaks, 1);
    uv_timer_stop(&s->timer);
    s->msg.sent = false;
    s->state = SESSION_CLOSING;
    address_rotate(c, s);
    uv_close((uv_handle_t *)&s->tcp, on_tcp_close);
}

static void session_invalid(session_t *s, const char *why) {
    char text[96];
    snprintf(text, sizeof text, "invalid reply (%s)", why);
    stat_add(&s->client->stats.replies_invalid, 1);
    session_break(s, text, 0);
}

/* ---- Replies. ---- */

/* NULL when the reply answers the session's message, else what is wrong with it. */
static const char *reply_check(const session_t *s, const proto_header_t *h, const void *body,
                               uint32_t body_size) {
    proto_error_t e = proto_check_message(h, body, PROTO_REPLY);
    if (e != PROTO_OK) return proto_error_str(e);
    if (h->client_id != s->client_id) return "another client's reply";
    if (h->request_id != s->request_id) return "a reply to another request";
    if (h->operation != s->msg.op) return "a reply of another operation";
    if (h->status > INT32_MAX) return "status out of range"; /* would pass for a client error */
    if (h->status == PROTO_STATUS_OK && op_is_batch(s->msg.op) &&
        body_size != s->msg.events * proto_reply_item_size(s->msg.op))
        return "not one result per event";
    return NULL;
}

static void reply_handle(session_t *s, uint32_t size) {
    client_t *c = s->client;
    proto_header_t h;
    memcpy(&h, s->recv, sizeof h);
    const unsigned char *body = s->recv + PROTO_HEADER_SIZE;
    uint32_t body_size = size - PROTO_HEADER_SIZE;
    const char *why = reply_check(s, &h, body, body_size);
    if (why) {
        session_invalid(s, why);
        return;
    }
    uv_timer_stop(&s->timer);
    s->msg.sent = false;
    s->recv_len = 0;
    if (h.status == PROTO_STATUS_NOT_LEADER) {
        session_break(s, "not the leader", 0);
    } else if (h.status == PROTO_STATUS_BUSY) {
        /* The leader is right but loaded: same connection, after a pause. */
        uv_timer_start(&s->timer, on_timer, backoff_delay(s, s->busy_attempts++), 0);
    } else {
        s->busy_attempts = 0;
        address_answered(c, s);
        message_finish(c, s, (int32_t)h.status, h.timestamp, body, body_size);
        dispatch(c);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    session_t *s = h->data;
    *buf = uv_buf_init((char *)s->recv + s->recv_len, PROTO_MESSAGE_MAX - s->recv_len);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    (void)buf;
    session_t *s = stream->data;
    if (nread == 0 || s->state != SESSION_CONNECTED) return;
    if (nread < 0) {
        session_break(s, nread == UV_EOF ? "connection closed by the cell" : "receiving",
                      nread == UV_EOF ? 0 : (int)nread);
        return;
    }
    /* A reply can come before the write's callback has run (the callback is deferred to a later
     * turn of the loop, the cell may answer first): the bytes had all reached the kernel, or
     * the cell could not have answered. Only a reply to nothing sent is invalid. The send
     * buffer stays busy until the callback (dispatch() waits for it). */
    if (!s->msg.sent) {
        session_invalid(s, "bytes nobody asked for");
        return;
    }
    s->recv_len += (uint32_t)nread;
    uint32_t size = 0;
    proto_error_t e = proto_check_header(s->recv, s->recv_len, &size);
    if (e == PROTO_NEED_MORE) return;
    if (e != PROTO_OK) {
        session_invalid(s, proto_error_str(e));
    } else if (s->recv_len > size) {
        session_invalid(s, "bytes after the reply");
    } else if (s->recv_len == size) {
        reply_handle(s, size);
    }
}

/* ---- Sending and connecting. ---- */

static void on_write(uv_write_t *req, int status) {
    session_t *s = req->data;
    s->writing = false;
    if (status < 0 && s->state == SESSION_CONNECTED) {
        session_break(s, "sending", status);
        return;
    }
    /* Its reply may have come first: the session is free now, if it has nothing in flight. */
    if (s->state == SESSION_CONNECTED && s->msg.first == REQUEST_NONE) dispatch(s->client);
}

/* The message is first offered to the socket directly, which nearly always takes it whole:
 * then no write request is queued, the send buffer is free at once, and libuv does not
 * re-register the socket with epoll as it does when a write request completes (a syscall per
 * message). Only what the socket leaves goes through uv_write. */
static void session_send(session_t *s) {
    client_t *c = s->client;
    cp_assert(s->state == SESSION_CONNECTED && s->msg.first != REQUEST_NONE);
    cp_assert(!s->msg.sent && !s->writing);
    uv_buf_t buf = uv_buf_init((char *)s->send, s->msg.size);
    s->recv_len = 0;
    int done = uv_try_write((uv_stream_t *)&s->tcp, &buf, 1);
    if (done == UV_EAGAIN) done = 0;
    int rc = done < 0 ? done : 0;
    if (rc == 0 && (uint32_t)done < s->msg.size) {
        buf = uv_buf_init((char *)s->send + done, s->msg.size - (uint32_t)done);
        rc = uv_write(&s->write_req, (uv_stream_t *)&s->tcp, &buf, 1, on_write);
        s->writing = rc == 0;
    }
    if (rc < 0) {
        session_break(s, "sending", rc);
        return;
    }
    s->msg.sent = true;
    stat_add(&c->stats.sends, 1);
    uv_timer_start(&s->timer, on_timer, c->opt.attempt_timeout_ms, 0);
}

static void on_connect(uv_connect_t *req, int status) {
    session_t *s = req->data;
    if (s->state != SESSION_CONNECTING) return; /* closed meanwhile: status is ECANCELED */
    if (status < 0) {
        session_break(s, "connecting", status);
        return;
    }
    uv_timer_stop(&s->timer);
    uv_tcp_nodelay(&s->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
    if (rc < 0) {
        session_break(s, "receiving", rc);
        return;
    }
    s->state = SESSION_CONNECTED;
    stat_add(&s->client->stats.connects, 1);
    if (s->msg.first != REQUEST_NONE)
        session_send(s); /* a message that lost its connection: the same bytes again */
    else
        dispatch(s->client);
}

static void session_connect(session_t *s) {
    client_t *c = s->client;
    cp_assert(s->state == SESSION_DISCONNECTED);
    cp_assert(uv_tcp_init(c->loop, &s->tcp) == 0); /* AF_UNSPEC: no socket yet, cannot fail */
    s->tcp.data = s;
    s->state = SESSION_CONNECTING;
    int rc = uv_tcp_connect(&s->connect_req, &s->tcp,
                            (const struct sockaddr *)&c->addresses[s->address], on_connect);
    if (rc < 0) {
        session_break(s, "connecting", rc);
        return;
    }
    uv_timer_start(&s->timer, on_timer, c->opt.attempt_timeout_ms, 0);
}

static void on_timer(uv_timer_t *t) {
    session_t *s = t->data;
    bool has_msg = s->msg.first != REQUEST_NONE;
    switch (s->state) {
    case SESSION_DISCONNECTED: session_connect(s); return;
    case SESSION_CONNECTING: session_break(s, "connecting", UV_ETIMEDOUT); return;
    case SESSION_CONNECTED:
        if (has_msg && s->msg.sent)
            session_break(s, "no reply in time", UV_ETIMEDOUT);
        else if (has_msg && s->writing) /* the busy reply beat the write's callback */
            uv_timer_start(&s->timer, on_timer, 1, 0);
        else if (has_msg)
            session_send(s); /* busy backoff is over */
        return;
    case SESSION_CLOSING: return;
    }
}

/* ---- Building messages. ---- */

/* Takes the longest run at the head of the queue that may share one message: a single
 * request, or consecutive mergeable submissions of the same batch op within op_items_max(). */
static void queue_take_run(client_t *c, message_t *m) {
    const request_t *r = &c->requests[c->queue.head];
    uint32_t last = c->queue.head;
    *m = (message_t){.first = last,
                     .requests = 1,
                     .events = r->events,
                     .op = r->op,
                     .deadline_ns = r->deadline_ns};
    uint32_t items_max = r->mergeable ? op_items_max(r->op) : 0;
    for (uint32_t i = r->next; r->mergeable && i != REQUEST_NONE; i = c->requests[i].next) {
        const request_t *q = &c->requests[i];
        if (!q->mergeable || q->op != r->op || m->events + q->events > items_max) break;
        m->events += q->events;
        m->requests++;
        if (q->deadline_ns < m->deadline_ns) m->deadline_ns = q->deadline_ns;
        last = i;
    }
    c->queue.head = c->requests[last].next;
    if (c->queue.head == REQUEST_NONE) c->queue.tail = REQUEST_NONE;
    c->queue.count -= m->requests;
    c->requests[last].next = REQUEST_NONE;
}

static void message_build(client_t *c, session_t *s) {
    cp_assert(s->msg.first == REQUEST_NONE && c->queue.count > 0);
    message_t m;
    queue_take_run(c, &m);
    unsigned char *body = s->send + PROTO_HEADER_SIZE;
    uint32_t size = 0;
    for (uint32_t i = m.first; i != REQUEST_NONE; i = c->requests[i].next) {
        const request_t *r = &c->requests[i];
        cp_assert(size + r->size <= PROTO_MESSAGE_MAX - PROTO_HEADER_SIZE);
        if (r->size > 0) memcpy(body + size, r->body, r->size); /* a ping's body is NULL */
        size += r->size;
    }
    proto_header_t h = {.client_id = s->client_id,
                        .request_id = ++s->request_id,
                        .operation = m.op,
                        .command = PROTO_REQUEST,
                        .cell = c->opt.cell};
    proto_seal(&h, body, size);
    memcpy(s->send, &h, sizeof h);
    m.size = h.size;
    s->msg = m;
    stat_add(&c->stats.messages, 1);
}

/* Gives queued requests to connected sessions that have nothing in flight: first to those at
 * the address that last answered, since an idle session may still be connected to a replica
 * that has lost the lead since, where a message would only bounce. */
static void dispatch(client_t *c) {
    for (uint32_t pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < c->opt.sessions && c->queue.count > 0; i++) {
            session_t *s = &c->sessions[i];
            if (s->state != SESSION_CONNECTED || s->msg.first != REQUEST_NONE || s->writing)
                continue;
            if (pass == 0 && s->address != c->address_hint) continue;
            message_build(c, s);
            session_send(s);
        }
    }
}

/* ---- Deadlines. ---- */

/* Fails a session's message at its deadline. A connection still awaiting the reply is given
 * up, so that a late reply cannot be taken for the next message's. */
static void session_expire(client_t *c, session_t *s) {
    bool awaiting = s->msg.sent;
    stat_add(&c->stats.timeouts, s->msg.requests);
    message_finish(c, s, CLIENT_ERR_TIMEOUT, 0, NULL, 0);
    if (s->state != SESSION_CONNECTED) return;
    if (awaiting)
        session_break(s, "no reply before the deadline", UV_ETIMEDOUT);
    else
        uv_timer_stop(&s->timer); /* was waiting out a busy backoff */
}

static void on_sweep(uv_timer_t *t) {
    client_t *c = t->data;
    uint64_t now = uv_hrtime();
    /* The queue is in deadline order: deadlines are taken under the lock that orders it. */
    while (c->queue.count > 0 && c->requests[c->queue.head].deadline_ns <= now) {
        stat_add(&c->stats.timeouts, 1);
        request_finish(c, list_pop(c, &c->queue), CLIENT_ERR_TIMEOUT, 0, NULL, 0);
    }
    bool outstanding = c->queue.count > 0;
    for (uint32_t i = 0; i < c->opt.sessions; i++) {
        session_t *s = &c->sessions[i];
        if (s->msg.first != REQUEST_NONE && s->msg.deadline_ns <= now) session_expire(c, s);
        outstanding |= s->msg.first != REQUEST_NONE;
    }
    if (!outstanding) uv_timer_stop(&c->sweep);
    dispatch(c);
}

/* ---- Shutdown (I/O thread). ---- */

static void client_shutdown(client_t *c) {
    c->shut_down = true;
    /* Counted before any close callback can run (they run in a later turn of the loop). */
    c->handles_open = 2 + c->opt.sessions;
    while (c->queue.count > 0)
        request_finish(c, list_pop(c, &c->queue), CLIENT_ERR_CLOSED, 0, NULL, 0);
    for (uint32_t i = 0; i < c->opt.sessions; i++) {
        session_t *s = &c->sessions[i];
        if (s->msg.first != REQUEST_NONE) message_finish(c, s, CLIENT_ERR_CLOSED, 0, NULL, 0);
        if (s->state == SESSION_CONNECTING || s->state == SESSION_CONNECTED) {
            s->state = SESSION_CLOSING;
            uv_close((uv_handle_t *)&s->tcp, on_tcp_close);
        }
        if (s->state == SESSION_CLOSING) c->handles_open++; /* on_tcp_close() will count */
        uv_close((uv_handle_t *)&s->timer, on_session_timer_closed);
    }
    uv_close((uv_handle_t *)&c->sweep, on_client_handle_closed);
    /* Safe: `closing` was read under the lock, and submitters send only under it while it is
     * false, so nobody sends to this handle any more. */
    uv_close(c->shared ? (uv_handle_t *)&c->pump : (uv_handle_t *)&c->wake,
             on_client_handle_closed);
}

static void take_submitted(client_t *c) {
    uv_mutex_lock(&c->lock);
    request_list_t got = c->submitted;
    c->submitted = LIST_EMPTY;
    bool closing = c->closing;
    uv_mutex_unlock(&c->lock);
    list_append(c, &c->queue, &got);
    if (closing) {
        if (!c->shut_down) client_shutdown(c);
        return;
    }
    dispatch(c);
    if (c->queue.count > 0 || got.count > 0) {
        if (!uv_is_active((uv_handle_t *)&c->sweep))
            uv_timer_start(&c->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    }
}

static void on_wake(uv_async_t *a) {
    take_submitted(a->data);
}

static void on_pump(uv_idle_t *h) {
    uv_idle_stop(h);
    take_submitted(h->data);
}

static void io_main(void *arg) {
    client_t *c = arg;
    for (uint32_t i = 0; i < c->opt.sessions; i++) session_connect(&c->sessions[i]);
    uv_run(c->loop, UV_RUN_DEFAULT);
}

/* ---- Opening and closing. ---- */

/* "HOST:PORT" of len bytes, HOST an IPv4 literal or localhost. */
static bool address_parse(const char *s, size_t len, struct sockaddr_in *out, char *name,
                          size_t name_size) {
    size_t host_len = len;
    while (host_len > 0 && s[host_len - 1] != ':') host_len--;
    if (host_len == 0) return false;
    const char *colon = s + --host_len;
    size_t port_len = len - host_len - 1;
    char host[16];
    if (host_len == 0 || host_len >= sizeof host || port_len == 0 || port_len > 5) return false;
    memcpy(host, s, host_len);
    host[host_len] = '\0';
    if (!strcmp(host, "localhost")) strcpy(host, "127.0.0.1");
    uint32_t port = 0;
    for (size_t i = 0; i < port_len; i++) {
        if (colon[1 + i] < '0' || colon[1 + i] > '9') return false;
        port = port * 10 + (uint32_t)(colon[1 + i] - '0');
    }
    if (port == 0 || port > 65535 || uv_ip4_addr(host, (int)port, out) != 0) return false;
    snprintf(name, name_size, "%s:%u", host, port);
    return true;
}

static int addresses_parse(client_t *c, const char *list) {
    if (!list) return CLIENT_ERR_ADDRESS;
    for (const char *p = list;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        uint32_t n = c->address_count;
        if (n == CLIENT_ADDRESSES_MAX ||
            !address_parse(p, len, &c->addresses[n], c->address_names[n],
                           sizeof c->address_names[n]))
            return CLIENT_ERR_ADDRESS;
        c->address_count++;
        if (!comma) return 0;
        p = comma + 1;
    }
}

static bool options_fill(client_options_t *o) {
    if (!o->sessions) o->sessions = 1;
    if (!o->requests_max) o->requests_max = 1024;
    if (!o->attempt_timeout_ms) o->attempt_timeout_ms = 1000;
    if (!o->deadline_ms) o->deadline_ms = 10000;
    if (!o->backoff_min_ms) o->backoff_min_ms = 10;
    if (!o->backoff_max_ms) o->backoff_max_ms = 500;
    return o->sessions <= CLIENT_SESSIONS_MAX && o->requests_max <= CLIENT_REQUESTS_MAX &&
           o->backoff_min_ms <= o->backoff_max_ms;
}

/* A random id, never 0: two clients must not share one, or a cell could mix their replies. */
static u128 client_id_new(uint64_t salt) {
    u128 id = 0;
    if (getrandom(&id, sizeof id, 0) != (ssize_t)sizeof id) {
        prng_t r = {uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ salt};
        id = ((u128)prng_next(&r) << 64) | prng_next(&r);
    }
    return id ? id : 1;
}

static int client_alloc(client_t *c) {
    uint32_t n = c->opt.requests_max;
    c->requests = calloc(n, sizeof c->requests[0]);
    c->sessions = calloc(c->opt.sessions, sizeof c->sessions[0]);
    if (!c->requests || !c->sessions) return CLIENT_ERR_SYSTEM;
    for (uint32_t i = 0; i < n; i++) c->requests[i].next = i + 1 < n ? i + 1 : REQUEST_NONE;
    c->free_head = 0;
    c->submitted = c->queue = LIST_EMPTY;
    for (uint32_t i = 0; i < c->opt.sessions; i++) {
        session_t *s = &c->sessions[i];
        s->client = c;
        s->msg = MESSAGE_NONE;
        s->client_id = client_id_new(i);
        s->prng.state = (uint64_t)s->client_id;
        s->connect_req.data = s;
        s->write_req.data = s;
        s->send = malloc(PROTO_MESSAGE_MAX);
        s->recv = malloc(PROTO_MESSAGE_MAX);
        if (!s->send || !s->recv) return CLIENT_ERR_SYSTEM;
    }
    return 0;
}

static void client_free(client_t *c) {
    for (uint32_t i = 0; c->sessions && i < c->opt.sessions; i++) {
        free(c->sessions[i].send);
        free(c->sessions[i].recv);
    }
    free(c->sessions);
    free(c->requests);
    free(c);
}

static void walk_close(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Handles are set up before the thread starts (the loop is not running yet, so this thread
 * may touch it); on failure whatever was set up is closed again here. */
static void handles_init(client_t *c) {
    uv_timer_init(c->loop, &c->sweep);
    c->sweep.data = c;
    for (uint32_t i = 0; i < c->opt.sessions; i++) {
        uv_timer_init(c->loop, &c->sessions[i].timer);
        c->sessions[i].timer.data = &c->sessions[i];
    }
}

static int loop_start(client_t *c) {
    if (c->shared) {
        /* The caller's loop, on the caller's thread: nothing here can fail. */
        uv_idle_init(c->loop, &c->pump);
        c->pump.data = c;
        handles_init(c);
        for (uint32_t i = 0; i < c->opt.sessions; i++) session_connect(&c->sessions[i]);
        return 0;
    }
    c->loop = &c->own_loop;
    if (uv_loop_init(c->loop) != 0) return CLIENT_ERR_SYSTEM;
    int rc = uv_async_init(c->loop, &c->wake, on_wake);
    c->wake.data = c;
    handles_init(c);
    if (rc == 0) rc = uv_thread_create(&c->thread, io_main, c);
    if (rc == 0) return 0;
    uv_walk(c->loop, walk_close, NULL);
    uv_run(c->loop, UV_RUN_DEFAULT);
    cp_assert(uv_loop_close(c->loop) == 0);
    return CLIENT_ERR_SYSTEM;
}

int client_open(client_t **out, const char *addresses, const client_options_t *options) {
    cp_assert(out);
    client_options_t opt = options ? *options : (client_options_t){0};
    if (!options_fill(&opt)) return CLIENT_ERR_INVALID;
    client_t *c = calloc(1, sizeof *c);
    if (!c) return CLIENT_ERR_SYSTEM;
    c->opt = opt;
    c->answered = UINT32_MAX;
    c->shared = opt.loop != NULL;
    c->loop = opt.loop;
    int rc = addresses_parse(c, addresses);
    if (rc == 0) rc = client_alloc(c);
    if (rc == 0 && uv_mutex_init(&c->lock) != 0) rc = CLIENT_ERR_SYSTEM;
    if (rc == 0) {
        rc = loop_start(c);
        if (rc != 0) uv_mutex_destroy(&c->lock);
    }
    if (rc != 0) {
        client_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void client_close(client_t *c) {
    if (c->shared) {
        uv_mutex_lock(&c->lock);
        cp_assert(!c->closing);
        c->closing = true;
        uv_mutex_unlock(&c->lock);
        take_submitted(c); /* sees closing: fails every request, closes every handle */
        return;            /* freed by the last close callback */
    }
    cp_assert(!on_io_thread(c)); /* it joins that thread */
    uv_mutex_lock(&c->lock);
    cp_assert(!c->closing);
    c->closing = true;
    uv_async_send(&c->wake);
    uv_mutex_unlock(&c->lock);
    cp_assert(uv_thread_join(&c->thread) == 0);
    cp_assert(uv_loop_close(c->loop) == 0);
    uv_mutex_destroy(&c->lock);
    client_free(c);
}

/* ---- Submitting. ---- */

/* Checks a body against the op's rules (those of proto_check_message() for requests, and a
 * batch op needs at least one item, and no more than a message holds); *events gets the item
 * count of a batch op. */
static bool request_valid(uint8_t op, const void *body, uint32_t size, uint32_t *events) {
    *events = 0;
    if (op < 1 || op > PROTO_OP_MAX || (size > 0 && !body)) return false;
    uint32_t item = proto_request_item_size(op);
    if (item == 0) return size == 0;
    if (size % item != 0 || size / item > PROTO_ITEMS_MAX) return false;
    switch (op) {
    case PROTO_OP_CREATE_ACCOUNTS:
    case PROTO_OP_CREATE_TRANSFERS:
    case PROTO_OP_PAY: *events = size / item; return *events > 0 && *events <= op_items_max(op);
    case PROTO_OP_LOOKUP_ACCOUNTS:
    case PROTO_OP_LOOKUP_TRANSFERS: return true;
    default: return size == item;
    }
}

static uint16_t event_flags(const unsigned char *events, uint32_t i) {
    uint16_t f;
    memcpy(&f, events + (size_t)i * EVENT_SIZE + offsetof(ledger_transfer_t, flags), sizeof f);
    return f;
}

/* A linked last event would chain into the next submitter's first; an imported first event
 * would switch the whole merged batch to import mode. Either way: alone. */
static bool request_mergeable(uint8_t op, const unsigned char *body, uint32_t events) {
    if (op == PROTO_OP_PAY) return true; /* independent items, no flags */
    if (!op_is_create(op)) return false;
    uint16_t imported =
        op == PROTO_OP_CREATE_ACCOUNTS ? LEDGER_ACCOUNT_IMPORTED : LEDGER_TRANSFER_IMPORTED;
    return !(event_flags(body, 0) & imported) && !(event_flags(body, events - 1) & 1u);
}

int client_submit(client_t *c, uint8_t op, const void *body, uint32_t size,
                  client_callback_t callback, void *ctx) {
    cp_assert(c && callback);
    uint32_t events;
    if (!request_valid(op, body, size, &events)) return CLIENT_ERR_INVALID;
    bool mergeable = events > 0 && request_mergeable(op, body, events);
    uv_mutex_lock(&c->lock);
    int rc = c->closing ? CLIENT_ERR_CLOSED : c->free_head == REQUEST_NONE ? CLIENT_ERR_FULL : 0;
    if (rc == 0) {
        uint32_t i = c->free_head;
        request_t *r = &c->requests[i];
        c->free_head = r->next;
        *r = (request_t){.callback = callback,
                         .ctx = ctx,
                         .body = body,
                         .deadline_ns = uv_hrtime() + c->opt.deadline_ms * NS_PER_MS,
                         .size = size,
                         .events = events,
                         .op = op,
                         .mergeable = mergeable};
        list_push(c, &c->submitted, i);
        stat_add(&c->stats.submitted, 1);
        if (!c->shared)
            uv_async_send(&c->wake); /* under the lock: see client_shutdown() */
        else if (!uv_is_active((uv_handle_t *)&c->pump))
            uv_idle_start(&c->pump, on_pump); /* taken in the loop's next turn, batched */
    }
    uv_mutex_unlock(&c->lock);
    return rc;
}

typedef struct call_wait {
    uv_mutex_t lock;
    uv_cond_t cond;
    bool done;
    int32_t status;
    uint64_t timestamp;
    uint32_t reply_size;
    void *reply;
    uint32_t reply_capacity;
} call_wait_t;

static void call_done(void *ctx, int32_t status, uint64_t timestamp, const void *reply,
                      uint32_t reply_size) {
    call_wait_t *w = ctx;
    uint32_t n = reply_size < w->reply_capacity ? reply_size : w->reply_capacity;
    if (n > 0) memcpy(w->reply, reply, n);
    uv_mutex_lock(&w->lock);
    w->status = status;
    w->timestamp = timestamp;
    w->reply_size = reply_size;
    w->done = true;
    uv_cond_signal(&w->cond);
    uv_mutex_unlock(&w->lock); /* the waiter may free w from here on */
}

int32_t client_call(client_t *c, uint8_t op, const void *body, uint32_t size, void *reply,
                    uint32_t reply_capacity, uint32_t *reply_size, uint64_t *timestamp) {
    cp_assert(!c->shared);       /* the wait would stop the loop that answers */
    cp_assert(!on_io_thread(c)); /* the wait would stop the thread that answers */
    cp_assert(reply || reply_capacity == 0);
    call_wait_t w = {.reply = reply, .reply_capacity = reply_capacity};
    cp_assert(uv_mutex_init(&w.lock) == 0);
    cp_assert(uv_cond_init(&w.cond) == 0);
    int rc = client_submit(c, op, body, size, call_done, &w);
    if (rc == 0) {
        uv_mutex_lock(&w.lock);
        while (!w.done) uv_cond_wait(&w.cond, &w.lock);
        uv_mutex_unlock(&w.lock);
    } else {
        w.status = rc;
    }
    uv_cond_destroy(&w.cond);
    uv_mutex_destroy(&w.lock);
    if (reply_size) *reply_size = w.reply_size;
    if (timestamp) *timestamp = w.timestamp;
    return w.status;
}

/* ---- Introspection. ---- */

void client_stats(client_t *c, client_stats_t *out) {
    stats_t *s = &c->stats;
    *out = (client_stats_t){
        .submitted = atomic_load_explicit(&s->submitted, memory_order_relaxed),
        .messages = atomic_load_explicit(&s->messages, memory_order_relaxed),
        .sends = atomic_load_explicit(&s->sends, memory_order_relaxed),
        .connects = atomic_load_explicit(&s->connects, memory_order_relaxed),
        .breaks = atomic_load_explicit(&s->breaks, memory_order_relaxed),
        .replies_invalid = atomic_load_explicit(&s->replies_invalid, memory_order_relaxed),
        .timeouts = atomic_load_explicit(&s->timeouts, memory_order_relaxed),
    };
    uv_mutex_lock(&c->lock);
    memcpy(out->last_error, c->last_error, sizeof out->last_error);
    uv_mutex_unlock(&c->lock);
}

const char *client_status_str(int32_t status) {
    switch (status) {
    case CLIENT_OK: return "ok";
    case CLIENT_ERR_TIMEOUT: return "no answer from the cell before the deadline";
    case CLIENT_ERR_CLOSED: return "the client was closed before the answer came";
    case CLIENT_ERR_INVALID: return "invalid request (operation or body size)";
    case CLIENT_ERR_FULL: return "too many requests outstanding";
    case CLIENT_ERR_ADDRESS:
        return "bad address list (HOST:PORT[,HOST:PORT...], IPv4 or localhost)";
    case CLIENT_ERR_SYSTEM: return "out of memory or system resources";
    case CLIENT_ERR_UNREACHABLE: return "no connection to the replica, or no valid reply";
    }
    return status >= 0 ? proto_status_str((uint32_t)status) : "unknown client error";
}

/* A fake cell for the client tests: a libuv TCP server on 127.0.0.1 (an ephemeral port) in
 * its own thread. It speaks docs/protocol.md, applies writes to a real in-process cell_t
 * (cell_entry_check + cell_apply_entry of one cell_command_t and the request body), answers
 * reads with cell_read(), and misbehaves on command: drop a connection after applying, delay
 * or hold replies, answer busy / not_leader, corrupt a reply, stop listening for a while.
 *
 * The test thread sets the knobs (atomics) and reads the log and the cell under fake_lock().
 * Test code: it allocates freely. Everything is static: each test file is its own program. */
#ifndef CP_TESTS_FAKE_SERVER_H
#define CP_TESTS_FAKE_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "base/assert.h"
#include "cell/cell.h"
#include "cell/pay.h"
#include "proto/proto.h"

#define FAKE_CONNS_MAX 64u
#define FAKE_LOG_MAX 4096u
#define FAKE_TICK_MS 2u
#define FAKE_PAY_SEEN_MAX 4096u
#define FAKE_MERCHANT_UID 77u

/* How the next corrupted reply is broken. */
typedef enum fake_corruption {
    FAKE_CORRUPT_BODY,       /* one body byte flipped: bad body checksum */
    FAKE_CORRUPT_HEADER,     /* one header byte flipped: bad header checksum */
    FAKE_CORRUPT_REQUEST_ID, /* well formed, but for another request id */
    FAKE_CORRUPT_RESULTS,    /* well formed, one result missing */
    FAKE_CORRUPT_STATUS,     /* well formed, a status above INT32_MAX */
    FAKE_CORRUPT_TRAILING,   /* the reply, then 8 bytes more */
} fake_corruption_t;

/* One request as the server received it. */
typedef struct fake_log {
    u128 client_id;
    uint64_t request_id;
    uint8_t op;
    uint32_t items;
    u128 first_id; /* the first event's / id's id, 0 when none */
} fake_log_t;

typedef struct fake_conn {
    struct fake_server *server;
    uv_tcp_t tcp;
    unsigned char *buf;
    uint32_t len;
    uint32_t gen; /* bumped at every close, so late replies can tell */
    bool open;
} fake_conn_t;

/* A reply waiting to be written (delayed or held), or being written. */
typedef struct fake_reply {
    uv_write_t write;
    struct fake_reply *next;
    uint32_t conn, gen;
    uint64_t due_ms;
    uint32_t size;
    unsigned char bytes[];
} fake_reply_t;

typedef struct fake_server {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t wake;
    uv_timer_t tick;
    uv_thread_t thread;
    uint16_t port;
    _Atomic bool listening;

    uv_mutex_t lock; /* the cell and the log */
    cell_t *cell;
    fake_log_t log[FAKE_LOG_MAX];
    uint32_t log_count;
    u128 pay_seen[FAKE_PAY_SEEN_MAX]; /* idempotency keys of pay requests */
    uint32_t pay_seen_count;

    /* Knobs: each *_count is how many upcoming requests get that treatment. */
    _Atomic int drop_count;  /* apply, then close the connection without a reply */
    _Atomic int delay_count; /* reply only after delay_ms */
    _Atomic uint32_t delay_ms;
    _Atomic int busy_count;       /* answer busy, apply nothing */
    _Atomic int not_leader_count; /* answer not_leader, apply nothing */
    _Atomic bool always_not_leader;
    _Atomic int corrupt_count;
    _Atomic int corruption; /* fake_corruption_t */
    _Atomic bool gate;      /* hold every reply while set */
    _Atomic bool test_ops;  /* else the test ops answer refused, as a node without --test-ops */
    _Atomic bool want_listen, want_stop;
    _Atomic uint32_t connections; /* accepted so far */
    /* Set before traffic, or NULL: may rewrite the echoed answer of each pay request (on the
     * server's thread), e.g. to play a cell's part in a multi-step flow. */
    void (*pay_hook)(void *ctx, const pay_request_t *r, pay_object_t *o);
    void *pay_hook_ctx;

    fake_conn_t conns[FAKE_CONNS_MAX];
    fake_reply_t *pending; /* server thread only */
    unsigned char *entry;  /* one cell_command_t + a request body */
    unsigned char *out;    /* a reply body */
} fake_server_t;

typedef struct fake_applied {
    uint32_t status;
    uint64_t timestamp;
    uint32_t size;
    unsigned char *out;
} fake_applied_t;

static inline void fake_lock(fake_server_t *f) {
    uv_mutex_lock(&f->lock);
}
static inline void fake_unlock(fake_server_t *f) {
    uv_mutex_unlock(&f->lock);
}

/* Takes one from a knob's count; true when there was one. */
static inline bool fake_take(_Atomic int *count) {
    int n = atomic_load(count);
    while (n > 0)
        if (atomic_compare_exchange_weak(count, &n, n - 1)) return true;
    return false;
}

static inline void fake_conn_closed(uv_handle_t *h) {
    fake_conn_t *k = h->data;
    free(k->buf);
    k->buf = NULL;
}

static inline void fake_conn_close(fake_conn_t *k) {
    if (!k->open) return;
    k->open = false;
    k->gen++;
    uv_close((uv_handle_t *)&k->tcp, fake_conn_closed);
}

static inline void fake_written(uv_write_t *w, int status) {
    (void)status;
    free(w->data);
}

static inline void fake_write(fake_server_t *f, fake_reply_t *r) {
    fake_conn_t *k = &f->conns[r->conn];
    if (!k->open || k->gen != r->gen) {
        free(r);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)r->bytes, r->size);
    r->write.data = r;
    if (uv_write(&r->write, (uv_stream_t *)&k->tcp, &b, 1, fake_written) != 0) free(r);
}

/* Writes the replies that are due (all of them when not gated), keeping their order. */
static inline void fake_flush(fake_server_t *f) {
    uint64_t now = uv_now(&f->loop);
    bool gated = atomic_load(&f->gate);
    fake_reply_t **p = &f->pending;
    while (*p) {
        fake_reply_t *r = *p;
        if (!gated && r->due_ms <= now) {
            *p = r->next;
            fake_write(f, r);
        } else {
            p = &r->next;
        }
    }
}

static inline void fake_queue(fake_server_t *f, fake_reply_t *r) {
    fake_reply_t **p = &f->pending;
    while (*p) p = &(*p)->next;
    r->next = NULL;
    *p = r;
    fake_flush(f);
}

static inline void fake_on_applied(void *ctx, const cell_command_t *cmd, uint32_t status,
                                   uint64_t timestamp, const void *reply, uint32_t reply_size) {
    (void)cmd;
    fake_applied_t *a = ctx;
    a->status = status;
    a->timestamp = timestamp;
    a->size = reply_size;
    if (reply_size) memcpy(a->out, reply, reply_size);
}

/* Whether an idempotency key was seen before (then the answer is marked replayed). */
static inline bool fake_pay_seen(fake_server_t *f, u128 key) {
    if (key == 0) return false;
    for (uint32_t i = 0; i < f->pay_seen_count; i++)
        if (f->pay_seen[i] == key) return true;
    if (f->pay_seen_count < FAKE_PAY_SEEN_MAX) f->pay_seen[f->pay_seen_count++] = key;
    return false;
}

/* The pay op, which this cell does not serve: every pay_request_t is answered by a created
 * pay_object_t that echoes it (id = idem_key, amount, uid, kind, actor as merchant, currency,
 * text, secret), so that a test can tell whose answer a submitter got. A key seen before
 * makes the answer replayed. */
static inline void fake_pay(fake_server_t *f, const unsigned char *body, uint32_t size,
                            fake_applied_t *a) {
    uint32_t n = size / (uint32_t)sizeof(pay_request_t);
    for (uint32_t i = 0; i < n; i++) {
        pay_request_t r;
        memcpy(&r, body + (size_t)i * sizeof r, sizeof r);
        pay_object_t o = {.id = r.idem_key,
                          .amount = r.amount,
                          .uid = r.uid,
                          .merchant = r.actor,
                          .currency = r.currency,
                          .kind = r.kind,
                          .code = PAY_CREATED,
                          .replayed = fake_pay_seen(f, r.idem_key)};
        memcpy(o.text, r.text, sizeof o.text);
        memcpy(o.secret, r.secret, sizeof o.secret);
        if (f->pay_hook) f->pay_hook(f->pay_hook_ctx, &r, &o);
        memcpy(a->out + (size_t)i * sizeof o, &o, sizeof o);
    }
    a->status = PROTO_STATUS_OK;
    a->timestamp = 1;
    a->size = n * (uint32_t)sizeof(pay_object_t);
}

/* The pay query: merchant FAKE_MERCHANT_UID exists with the secret bytes 1, 2, ..., 32; a
 * payment query finds any id, as a payment of the id's user to the asking merchant; anything
 * else is not found. */
static inline void fake_pay_query(const unsigned char *body, fake_applied_t *a) {
    pay_query_t q;
    memcpy(&q, body, sizeof q);
    pay_object_t o = {.kind = q.kind == PAY_Q_MERCHANT ? PAY_KIND_MERCHANT : PAY_KIND_PAYMENT,
                      .code = PAY_ERR_NOT_FOUND};
    if (q.kind == PAY_Q_MERCHANT && q.uid == FAKE_MERCHANT_UID) {
        o.code = PAY_OK;
        o.uid = q.uid;
        for (uint32_t i = 0; i < PAY_SECRET_SIZE; i++) o.secret[i] = (uint8_t)(i + 1);
    } else if (q.kind == PAY_Q_PAYMENT) {
        o.code = PAY_OK;
        o.id = q.id;
        o.uid = (uint64_t)(q.id >> 64);
        o.merchant = q.actor;
        o.amount = 1;
        o.currency = pay_currency_pack("CNY");
    }
    memcpy(a->out, &o, sizeof o);
    a->status = PROTO_STATUS_OK;
    a->size = (uint32_t)sizeof o;
}

/* Runs one request against the cell; the answer lands in a. */
static inline void fake_execute(fake_server_t *f, const proto_header_t *h,
                                const unsigned char *body, fake_applied_t *a) {
    uint32_t size = h->size - PROTO_HEADER_SIZE;
    if (h->operation == PROTO_OP_PAY || h->operation == PROTO_OP_PAY_QUERY) {
        fake_lock(f);
        if (h->operation == PROTO_OP_PAY)
            fake_pay(f, body, size, a);
        else
            fake_pay_query(body, a);
        fake_unlock(f);
        return;
    }
    bool test_op =
        h->operation == PROTO_OP_TEST_SET_BALANCES || h->operation == PROTO_OP_TEST_SET_CLOCK;
    if (test_op && !atomic_load(&f->test_ops)) {
        a->status = PROTO_STATUS_REFUSED;
        return;
    }
    fake_lock(f);
    if (cell_op_is_write(h->operation)) {
        cell_command_t cmd = {.client_id = h->client_id,
                              .request_id = h->request_id,
                              .size = size,
                              .operation = h->operation};
        memcpy(f->entry, &cmd, sizeof cmd);
        memcpy(f->entry + sizeof cmd, body, size);
        uint32_t entry_size = (uint32_t)sizeof cmd + size;
        cp_assert(cell_entry_check(f->entry, entry_size) == NULL);
        cell_apply_entry(f->cell, 0, f->entry, entry_size, fake_on_applied, a);
    } else {
        a->status = PROTO_STATUS_OK;
        a->size = cell_read(f->cell, h->operation, body, size, a->out);
    }
    fake_unlock(f);
}

static inline void fake_log_append(fake_server_t *f, const proto_header_t *h,
                                   const unsigned char *body) {
    uint32_t size = h->size - PROTO_HEADER_SIZE, item = proto_request_item_size(h->operation);
    fake_log_t e = {.client_id = h->client_id,
                    .request_id = h->request_id,
                    .op = h->operation,
                    .items = item ? size / item : 0};
    if (size >= 16) memcpy(&e.first_id, body, 16);
    fake_lock(f);
    if (f->log_count < FAKE_LOG_MAX) f->log[f->log_count++] = e;
    fake_unlock(f);
}

static inline fake_reply_t *fake_reply_new(const proto_header_t *req, const fake_applied_t *a,
                                           uint32_t corruption, bool corrupt) {
    fake_reply_t *r = calloc(1, sizeof *r + PROTO_HEADER_SIZE + a->size + 8);
    cp_assert(r);
    proto_header_t h = {.client_id = req->client_id,
                        .request_id = req->request_id,
                        .timestamp = a->timestamp,
                        .operation = req->operation,
                        .command = PROTO_REPLY,
                        .status = a->status};
    uint32_t body_size = a->size;
    if (corrupt && corruption == FAKE_CORRUPT_REQUEST_ID) h.request_id++;
    if (corrupt && corruption == FAKE_CORRUPT_RESULTS && body_size >= 16) body_size -= 16;
    if (corrupt && corruption == FAKE_CORRUPT_STATUS) h.status = 0x80000001u;
    proto_seal(&h, a->out, body_size);
    memcpy(r->bytes, &h, sizeof h);
    memcpy(r->bytes + PROTO_HEADER_SIZE, a->out, body_size);
    r->size = PROTO_HEADER_SIZE + body_size;
    if (corrupt && corruption == FAKE_CORRUPT_BODY && body_size > 0) r->bytes[r->size - 1] ^= 1;
    if (corrupt &&
        (corruption == FAKE_CORRUPT_HEADER || (corruption == FAKE_CORRUPT_BODY && body_size == 0)))
        r->bytes[20] ^= 1; /* inside checksum_body: the header checksum breaks */
    if (corrupt && corruption == FAKE_CORRUPT_TRAILING) r->size += 8;
    return r;
}

/* Handles one whole, valid request of connection k. */
static inline void fake_request(fake_server_t *f, fake_conn_t *k, const proto_header_t *h,
                                const unsigned char *body) {
    fake_applied_t a = {.out = f->out};
    if (atomic_load(&f->always_not_leader) || fake_take(&f->not_leader_count))
        a.status = PROTO_STATUS_NOT_LEADER;
    else if (fake_take(&f->busy_count))
        a.status = PROTO_STATUS_BUSY;
    else
        fake_execute(f, h, body, &a);
    fake_log_append(f, h, body);
    if (fake_take(&f->drop_count)) {
        fake_conn_close(k);
        return;
    }
    bool corrupt = fake_take(&f->corrupt_count);
    fake_reply_t *r = fake_reply_new(h, &a, (uint32_t)atomic_load(&f->corruption), corrupt);
    r->conn = (uint32_t)(k - f->conns);
    r->gen = k->gen;
    r->due_ms = fake_take(&f->delay_count) ? uv_now(&f->loop) + atomic_load(&f->delay_ms) : 0;
    fake_queue(f, r);
}

static inline void fake_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    fake_conn_t *k = h->data;
    *buf = uv_buf_init((char *)k->buf + k->len, PROTO_MESSAGE_MAX - k->len);
}

/* Takes every whole message off the front of the buffer; a bad one closes the connection, as
 * docs/protocol.md says a cell does. */
static inline void fake_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    (void)buf;
    fake_conn_t *k = s->data;
    if (nread < 0) fake_conn_close(k);
    if (nread <= 0 || !k->open) return;
    k->len += (uint32_t)nread;
    while (k->open) {
        uint32_t size;
        proto_error_t e = proto_check_header(k->buf, k->len, &size);
        if (e == PROTO_NEED_MORE || (e == PROTO_OK && k->len < size)) return;
        proto_header_t h;
        memcpy(&h, k->buf, sizeof h);
        if (e != PROTO_OK ||
            proto_check_message(&h, k->buf + PROTO_HEADER_SIZE, PROTO_REQUEST) != PROTO_OK) {
            fprintf(stderr, "fake server: bad request, closing the connection\n");
            fake_conn_close(k);
            return;
        }
        fake_request(k->server, k, &h, k->buf + PROTO_HEADER_SIZE);
        if (!k->open) return;
        memmove(k->buf, k->buf + size, k->len - size);
        k->len -= size;
    }
}

static inline void fake_accept(uv_stream_t *listener, int status) {
    fake_server_t *f = listener->data;
    if (status < 0) return;
    fake_conn_t *k = NULL;
    for (uint32_t i = 0; i < FAKE_CONNS_MAX && !k; i++)
        if (!f->conns[i].open && !f->conns[i].buf) k = &f->conns[i];
    cp_assert(k); /* slots come back as connections close; tests keep few open */
    k->server = f;
    k->tcp.data = k;
    k->buf = malloc(PROTO_MESSAGE_MAX); /* the slot is taken until the close callback */
    cp_assert(k->buf);
    k->len = 0;
    uv_tcp_init(&f->loop, &k->tcp);
    if (uv_accept(listener, (uv_stream_t *)&k->tcp) != 0) {
        uv_close((uv_handle_t *)&k->tcp, fake_conn_closed);
        return;
    }
    k->open = true;
    atomic_fetch_add(&f->connections, 1);
    uv_read_start((uv_stream_t *)&k->tcp, fake_alloc, fake_read);
}

static inline void fake_listen(fake_server_t *f) {
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", f->port, &addr);
    cp_assert(uv_tcp_init(&f->loop, &f->listener) == 0);
    f->listener.data = f;
    cp_assert(uv_tcp_bind(&f->listener, (const struct sockaddr *)&addr, 0) == 0);
    cp_assert(uv_listen((uv_stream_t *)&f->listener, 128, fake_accept) == 0);
    struct sockaddr_storage name;
    int len = sizeof name;
    cp_assert(uv_tcp_getsockname(&f->listener, (struct sockaddr *)&name, &len) == 0);
    f->port = ntohs(((struct sockaddr_in *)&name)->sin_port);
    f->listening = true;
}

/* Stops listening and closes every connection: the cell is "gone" (its state stays). */
static inline void fake_unlisten(fake_server_t *f) {
    if (f->listening) uv_close((uv_handle_t *)&f->listener, NULL);
    f->listening = false;
    for (uint32_t i = 0; i < FAKE_CONNS_MAX; i++) fake_conn_close(&f->conns[i]);
}

static inline void fake_on_wake(uv_async_t *a) {
    fake_server_t *f = a->data;
    if (atomic_load(&f->want_stop)) {
        fake_unlisten(f);
        uv_close((uv_handle_t *)&f->tick, NULL);
        uv_close((uv_handle_t *)&f->wake, NULL);
        return;
    }
    bool want = atomic_load(&f->want_listen);
    if (want && !f->listening) fake_listen(f);
    if (!want && f->listening) fake_unlisten(f);
    fake_flush(f);
}

static inline void fake_on_tick(uv_timer_t *t) {
    fake_flush(t->data);
}

static inline void fake_main(void *arg) {
    fake_server_t *f = arg;
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

/* A server with an empty cell, listening on an ephemeral port of 127.0.0.1 (f->port). */
static inline fake_server_t *fake_start(void) {
    fake_server_t *f = calloc(1, sizeof *f);
    cp_assert(f);
    cell_config_t cfg = {.ledger = {.accounts_max = 1u << 14, .transfers_max = 1u << 16}};
    f->cell = cell_create(&cfg);
    f->entry = malloc(sizeof(cell_command_t) + PROTO_MESSAGE_MAX);
    f->out = malloc(PROTO_MESSAGE_MAX);
    cp_assert(f->cell && f->entry && f->out);
    atomic_store(&f->test_ops, true);
    atomic_store(&f->want_listen, true);
    cp_assert(uv_mutex_init(&f->lock) == 0);
    cp_assert(uv_loop_init(&f->loop) == 0);
    cp_assert(uv_async_init(&f->loop, &f->wake, fake_on_wake) == 0);
    f->wake.data = f;
    uv_timer_init(&f->loop, &f->tick);
    f->tick.data = f;
    uv_timer_start(&f->tick, fake_on_tick, FAKE_TICK_MS, FAKE_TICK_MS);
    fake_listen(f); /* before the thread: the port is known when this returns */
    cp_assert(uv_thread_create(&f->thread, fake_main, f) == 0);
    return f;
}

static inline void fake_stop(fake_server_t *f) {
    atomic_store(&f->want_stop, true);
    uv_async_send(&f->wake);
    cp_assert(uv_thread_join(&f->thread) == 0);
    while (f->pending) {
        fake_reply_t *r = f->pending;
        f->pending = r->next;
        free(r);
    }
    cp_assert(uv_loop_close(&f->loop) == 0);
    uv_mutex_destroy(&f->lock);
    cell_destroy(f->cell);
    free(f->entry);
    free(f->out);
    free(f);
}

/* Closes the listener and every connection (listening = false) or listens again on the same
 * port (true). Returns once the server thread has done it. */
static inline void fake_set_listening(fake_server_t *f, bool listening) {
    atomic_store(&f->want_listen, listening);
    uv_async_send(&f->wake);
    for (int i = 0; i < 5000 && atomic_load(&f->listening) != listening; i++) uv_sleep(1);
    cp_assert(atomic_load(&f->listening) == listening);
}

/* Wakes the server so that it writes held replies after the gate opened. */
static inline void fake_open_gate(fake_server_t *f) {
    atomic_store(&f->gate, false);
    uv_async_send(&f->wake);
}

static inline uint32_t fake_log_count(fake_server_t *f) {
    fake_lock(f);
    uint32_t n = f->log_count;
    fake_unlock(f);
    return n;
}

#endif

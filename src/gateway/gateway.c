/* The gateway (gateway.h): HTTP in, one client per cell out, on one libuv loop.
 *
 * A request takes a preallocated slot when it arrives (one per HTTP connection: a connection
 * has one request in flight at a time) and keeps it until answered. The slot holds the item
 * sent to the cell (the client borrows it until its callback) and room for the answer, which
 * the callback copies there on the client's I/O thread before handing the slot back to the
 * loop through a mutex-protected FIFO and one uv_async wake per batch (a wake is sent only
 * when the FIFO was empty: the loop takes the whole FIFO at once).
 *
 * Merchant requests are checked against the merchant's secret, fetched from the merchant's
 * cell by a PAY_Q_MERCHANT query the first time and kept in a fixed direct-mapped cache. While
 * the secret is fetched the request stays in the HTTP server (http_request_of()), not copied.
 *
 * Route tables change by swapping: new requests go by the new table; a cell's client that
 * the new table drops or re-addresses is retired and closed once the requests sent through it
 * have come back. */
#include "gateway/gateway.h"

#include <errno.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <uv.h>

#include "base/assert.h"
#include "client/client.h"
#include "gateway/api.h"
#include "gateway/auth.h"
#include "gateway/http.h"
#include "gateway/xtcc.h"

#define GW_SESSIONS_DEFAULT 1u
#define GW_DEADLINE_MS_DEFAULT 5000u
#define GW_RELOAD_MS 500u
#define GW_SECRETS 4096u /* merchant secrets cached; a power of two */
#define GW_REPLY_MAX (PAY_LIST_MAX + 2u)
#define GW_NONE UINT32_MAX
#define GW_LOG "cellpay gateway"

CP_STATIC_ASSERT((GW_SECRETS & (GW_SECRETS - 1)) == 0, "secret cache size is a power of two");
/* The item sent is the whole union: both kinds are 256-byte wire items. */
CP_STATIC_ASSERT(sizeof(((api_call_t *)0)->u) == 256, "256-byte wire items");

typedef struct gw_cell {
    uint64_t id;
    char addrs[RT_REPLICAS_MAX * RT_ADDR_SIZE];
    client_t *client;
    uint32_t inflight; /* requests sent through it and not yet back on the loop */
    bool retired;
    struct gw_cell *next_retired;
} gw_cell_t;

typedef enum slot_state {
    SLOT_FREE = 0,
    SLOT_SECRET, /* waiting for the merchant's secret */
    SLOT_CALL,   /* waiting for the cell's answer to the request */
    /* A cross-cell payment (docs/cross-cell.md), step by step: */
    SLOT_ORDER,   /* the merchant's cell reserves the order */
    SLOT_XPAY,    /* the buyer's cell pays it */
    SLOT_RELEASE, /* the buyer's cell refused: the merchant's cell gives the order back */
    /* A refund of a cross-cell payment or a transfer across cells (TCC, docs/cross-cell.md),
     * step by step: */
    SLOT_XTCC,   /* the initiator's cell records the activity (answer: trying) */
    SLOT_TRY,    /* the participant's cell holds the money (merchant's) or credit (recipient's) */
    SLOT_DECIDE, /* the initiator's cell confirms or cancels */
} slot_state_t;

typedef struct gateway gateway_t;

typedef struct gw_slot {
    gateway_t *gw;
    http_handle_t http;
    api_match_t match;
    gw_cell_t *cell;
    uint64_t merchant;
    uint32_t next; /* the free list or the answered FIFO */
    uint8_t state;
    bool own_key;     /* the gateway gave the request its idempotency key (the client sent none) */
    uint8_t refusal;  /* SLOT_RELEASE: the buyer's cell's answer (a pay_code_t) */
    uint8_t tcc_type; /* SLOT_TRY, SLOT_DECIDE: the activity's (a decide carries none) */
    /* SLOT_RELEASE, SLOT_TRY, SLOT_DECIDE: the first answer under the client's key was a
     * stored one; the final answer is the client's replay if so, whichever cell gives it. */
    bool key_replayed;
    uint64_t merchant_cell; /* a cross-cell payment: the cell that reserved the order */
    int32_t status;
    uint32_t count;
    api_call_t call;
    _Alignas(16) pay_object_t reply[GW_REPLY_MAX];
} gw_slot_t;

typedef struct secret_entry {
    uint64_t uid; /* 0: empty (no merchant has uid 0) */
    char hex[AUTH_HEX_MAX];
    auth_key_t *key; /* a MAC context keyed with hex, or NULL when there was no memory for it */
} secret_entry_t;

struct gateway {
    gateway_config_t cfg;
    char admin_key[AUTH_HEX_MAX + 1];
    uv_loop_t loop;
    http_server_t *http;
    uv_async_t wake;
    u128 key_salt;      /* random, drawn at start: see own_key_maybe() */
    uint64_t key_count; /* own keys handed out */
    uv_check_t drain;   /* answers taken right after the loop's I/O turn (on_drain) */
    uv_signal_t sigterm, sigint;
    uv_timer_t reload;

    /* Answered slots, in order (the clients run on this loop: no lock). */
    uint32_t done_head, done_tail;

    /* Shared with gateway_stop / gateway_set_routes on other threads: under lock. */
    uv_mutex_t lock;
    bool stop_asked;
    bool routes_asked;
    rt_table_t routes_new;

    /* The loop's own. */
    bool stopping;
    rt_table_t routes;
    rt_table_t routes_scratch;      /* a table being read or taken over */
    gw_cell_t *cells[RT_CELLS_MAX]; /* parallel to routes.cells */
    gw_cell_t *retired;
    gw_slot_t *slots;
    uint32_t conns_max, slot_count, free_head;
    secret_entry_t *secrets;
    struct stat routes_stat;
    bool routes_stat_ok;
    char path_query[CP_HTTP_HEAD_MAX + 2];
    char render[API_RENDER_MAX];
};

static pthread_mutex_t running_lock = PTHREAD_MUTEX_INITIALIZER;
static gateway_t *running;

/* ---- Cells ---- */

/* Opens a client of cell rc; NULL (and *why, a client_error_t, set) when it cannot. */
static gw_cell_t *cell_open(gateway_t *g, const rt_cell_t *rc, int *why) {
    gw_cell_t *c = calloc(1, sizeof *c);
    if (!c) {
        *why = CLIENT_ERR_SYSTEM;
        return NULL;
    }
    c->id = rc->id;
    rt_cell_addresses(rc, c->addrs, sizeof c->addrs);
    client_options_t o = {.sessions = g->cfg.sessions ? g->cfg.sessions : GW_SESSIONS_DEFAULT,
                          .requests_max = g->slot_count,
                          .deadline_ms = g->cfg.cell_deadline_ms ? g->cfg.cell_deadline_ms
                                                                 : GW_DEADLINE_MS_DEFAULT,
                          .cell = rc->id,
                          /* On this loop: no thread hand-offs between the gateway and its
                           * clients (each would cost a wake-up and a context switch). */
                          .loop = &g->loop};
    int rc_open = client_open(&c->client, c->addrs, &o);
    if (rc_open != 0) {
        fprintf(stderr, GW_LOG ": cell %llu at %s: %s\n", (unsigned long long)c->id, c->addrs,
                client_status_str(rc_open));
        *why = rc_open;
        free(c);
        return NULL;
    }
    return c;
}

/* The client is freed by the loop once its handles have closed; nothing of it is in flight by
 * now. A client closed already (at shutdown) is NULL. */
static void cell_close(gw_cell_t *c) {
    if (c->client) client_close(c->client);
    free(c);
}

static void cell_retire(gateway_t *g, gw_cell_t *c) {
    if (c->inflight == 0) {
        cell_close(c);
        return;
    }
    c->retired = true;
    c->next_retired = g->retired;
    g->retired = c;
}

/* A retired cell whose last request came back: closed and unlinked. */
static void cell_release(gateway_t *g, gw_cell_t *c) {
    cp_assert(c->inflight > 0);
    if (--c->inflight > 0 || !c->retired) return;
    for (gw_cell_t **p = &g->retired; *p; p = &(*p)->next_retired) {
        if (*p == c) {
            *p = c->next_retired;
            break;
        }
    }
    cell_close(c);
}

static gw_cell_t *cell_find(gateway_t *g, uint64_t id) {
    uint32_t lo = 0, hi = g->routes.cell_count;
    while (lo < hi) { /* the table's cells ascend by id */
        uint32_t mid = lo + (hi - lo) / 2;
        if (g->routes.cells[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < g->routes.cell_count && g->routes.cells[lo].id == id ? g->cells[lo] : NULL;
}

/* The current client of a cell the new table names with the same addresses, else NULL. */
static gw_cell_t *cell_reusable(gateway_t *g, const rt_cell_t *rc) {
    gw_cell_t *c = cell_find(g, rc->id);
    if (!c) return NULL;
    char addrs[sizeof c->addrs];
    rt_cell_addresses(rc, addrs, sizeof addrs);
    return strcmp(addrs, c->addrs) == 0 ? c : NULL;
}

/* Switches to table t: clients for new or re-addressed cells are opened first, so a failure
 * leaves the old table in place whole (*why: the client_error_t of the client that failed). */
static bool routes_apply(gateway_t *g, const rt_table_t *t, int *why) {
    gw_cell_t *next[RT_CELLS_MAX] = {0};
    bool kept[RT_CELLS_MAX] = {0}, opened[RT_CELLS_MAX] = {0};
    for (uint32_t i = 0; i < t->cell_count; i++) {
        next[i] = cell_reusable(g, &t->cells[i]);
        if (next[i]) {
            for (uint32_t j = 0; j < g->routes.cell_count; j++) kept[j] |= g->cells[j] == next[i];
            continue;
        }
        next[i] = cell_open(g, &t->cells[i], why);
        opened[i] = next[i] != NULL;
        if (next[i]) continue;
        for (uint32_t j = 0; j < i; j++)
            if (opened[j]) cell_close(next[j]);
        return false;
    }
    for (uint32_t j = 0; j < g->routes.cell_count; j++)
        if (!kept[j]) cell_retire(g, g->cells[j]);
    memcpy(&g->routes, t, sizeof *t);
    memcpy(g->cells, next, sizeof next);
    fprintf(stderr, GW_LOG ": route table version %llu, %u cells\n", (unsigned long long)t->version,
            t->cell_count);
    return true;
}

static void routes_kept(const gateway_t *g) {
    fprintf(stderr, GW_LOG ": keeping route table version %llu: a cell's client cannot be opened\n",
            (unsigned long long)g->routes.version);
}

/* ---- Slots ---- */

static gw_slot_t *slot_take(gateway_t *g) {
    if (g->free_head == GW_NONE) return NULL;
    gw_slot_t *s = &g->slots[g->free_head];
    g->free_head = s->next;
    s->state = SLOT_CALL;
    s->cell = NULL;
    s->count = 0;
    return s;
}

static void slot_release(gateway_t *g, gw_slot_t *s) {
    s->state = SLOT_FREE;
    s->next = g->free_head;
    g->free_head = (uint32_t)(s - g->slots);
}

static void slot_fail(gateway_t *g, gw_slot_t *s, int status, const char *code, const char *msg,
                      const char *param) {
    http_respond_error(s->http, status, code, msg, param);
    slot_release(g, s);
}

static void on_drain(uv_check_t *h);

/* On the loop, from inside the client's read callback: the answer is copied into the slot,
 * which is handled right after the loop's I/O turn (on_drain), not here, so that what it does
 * (a reply, a new submission, closing a retired cell's client) never runs inside the client. */
static void on_answer(void *ctx, int32_t status, uint64_t timestamp, const void *reply,
                      uint32_t size) {
    (void)timestamp;
    gw_slot_t *s = ctx;
    gateway_t *g = s->gw;
    uint32_t n = size / (uint32_t)sizeof(pay_object_t);
    if (n > GW_REPLY_MAX) n = GW_REPLY_MAX; /* more than a list's most: refused as invalid */
    if (n) memcpy(s->reply, reply, (size_t)n * sizeof(pay_object_t));
    s->status = status;
    s->count = size % sizeof(pay_object_t) == 0 ? n : 0;
    uint32_t i = (uint32_t)(s - g->slots);
    s->next = GW_NONE;
    bool was_empty = g->done_head == GW_NONE;
    if (was_empty)
        g->done_head = i;
    else
        g->slots[g->done_tail].next = i;
    g->done_tail = i;
    if (was_empty && !g->stopping) uv_check_start(&g->drain, on_drain);
}

/* Submits the slot's call to the cell that owns uid; false (and *why) when it cannot, and
 * then nothing was sent. */
static bool slot_submit_cell(gateway_t *g, gw_slot_t *s, uint64_t cell, const char **why) {
    gw_cell_t *c = cell_find(g, cell);
    if (!c) {
        *why = "the route table does not name the cell";
        return false;
    }
    int rc = client_submit(c->client, s->call.op, &s->call.u, sizeof s->call.u, on_answer, s);
    if (rc != 0) {
        *why = client_status_str(rc);
        return false;
    }
    c->inflight++;
    s->cell = c;
    return true;
}

/* Submits the slot's call to the cell that owns uid (as slot_submit_cell). */
static bool slot_submit(gateway_t *g, gw_slot_t *s, uint64_t uid, const char **why) {
    return slot_submit_cell(g, s, rt_cell_of_uid(&g->routes, uid), why);
}

/* Sends the slot's call to the cell that owns uid; the client hears 503 when it cannot. */
static void slot_send(gateway_t *g, gw_slot_t *s, uint64_t uid) {
    const char *why;
    if (!slot_submit(g, s, uid, &why)) slot_fail(g, s, 503, "unavailable", why, NULL);
}

/* ---- Authentication ---- */

static secret_entry_t *secret_entry(gateway_t *g, uint64_t uid) {
    uint64_t h = uid * 0x9e3779b97f4a7c15ull;
    return &g->secrets[h >> (64 - 12)];
}
CP_STATIC_ASSERT(GW_SECRETS == 1u << 12, "secret_entry takes 12 bits of the hash");

static const secret_entry_t *secret_find(gateway_t *g, uint64_t uid) {
    secret_entry_t *e = secret_entry(g, uid);
    return e->uid == uid ? e : NULL;
}

static void secret_store(gateway_t *g, uint64_t uid, const uint8_t secret[PAY_SECRET_SIZE]) {
    static const char hex[] = "0123456789abcdef";
    secret_entry_t *e = secret_entry(g, uid);
    e->uid = uid;
    for (uint32_t i = 0; i < PAY_SECRET_SIZE; i++) {
        e->hex[2 * i] = hex[secret[i] >> 4];
        e->hex[2 * i + 1] = hex[secret[i] & 15];
    }
    /* Once per merchant fetched, not per request: each check then skips keying the MAC. */
    auth_key_free(e->key);
    e->key = auth_key_new(e->hex, AUTH_HEX_MAX);
}

/* PATH_WITH_QUERY as signed: the path, and "?" and the query when there is one. */
static const char *path_query(gateway_t *g, const http_request_t *r) {
    if (r->query_len == 0) return r->path;
    cp_assert(r->path_len + 1 + r->query_len < sizeof g->path_query);
    memcpy(g->path_query, r->path, r->path_len);
    g->path_query[r->path_len] = '?';
    memcpy(g->path_query + r->path_len + 1, r->query, r->query_len + 1);
    return g->path_query;
}

/* A write without an Idempotency-Key gets one from the gateway: the client library resends a
 * message whose answer it did not get (a broken connection, a slow commit, a new leader), and
 * the cell must know the resend for the same request, or a top-up would be applied twice.
 * The key is this gateway run's random salt and a counter: unique, and never a client's key
 * (those are hashes of the header; a collision is as likely as guessing 128 random bits). */
static void own_key_maybe(gateway_t *g, gw_slot_t *s) {
    s->own_key = s->call.u.req.idem_key == 0;
    if (s->own_key) s->call.u.req.idem_key = g->key_salt ^ (u128)++g->key_count;
}

/* ---- Cross-cell payments (docs/cross-cell.md) ----
 * The merchant's cell reserves the order (it keeps the merchant's keys and out_trade_no's),
 * the buyer's cell pays it, and when the buyer's cell refuses, the merchant's cell gives the
 * order back before the client hears of the refusal: a client that then retries with a new
 * key and the same out_trade_no must not find it still taken. */

static bool payment_cross_cell(const gateway_t *g, const gw_slot_t *s) {
    const pay_request_t *q = &s->call.u.req;
    return s->match.endpoint == API_EP_PAYMENT_CREATE &&
           rt_cell_of_uid(&g->routes, q->uid) != rt_cell_of_uid(&g->routes, q->actor);
}

static void order_send(gateway_t *g, gw_slot_t *s) {
    pay_request_t *q = &s->call.u.req;
    q->kind = PAY_KIND_ORDER;
    s->merchant_cell = rt_cell_of_uid(&g->routes, q->actor);
    /* The buyer's cell, kept with the order: the merchant's cell's relay asks it about an
     * order this gateway leaves reserved (it dies before the payment). A number the order
     * cannot carry is left 0: such an order is only never resolved. */
    uint64_t buyer_cell = rt_cell_of_uid(&g->routes, q->uid);
    q->peer_cell = buyer_cell <= PAY_CELL_MAX ? (uint32_t)buyer_cell : 0;
    s->state = SLOT_ORDER;
    slot_send(g, s, q->actor);
}

static void call_answered(gateway_t *g, gw_slot_t *s);

/* The order is reserved (or was, under this key): the buyer's cell pays it, keyed by the
 * payment id, so its answer to any repeat is its first. Anything else the merchant's cell
 * answered (an error, or the refusal a release left under the key) is the client's answer. */
static void order_answered(gateway_t *g, gw_slot_t *s) {
    const pay_object_t *o = &s->reply[0];
    pay_request_t *q = &s->call.u.req;
    if (s->status != 0 || s->count != 1 || o->kind != PAY_KIND_ORDER || o->code != PAY_CREATED) {
        call_answered(g, s);
        return;
    }
    if ((uint64_t)(o->id >> 64) != q->uid || s->merchant_cell > PAY_CELL_MAX) {
        slot_fail(g, s, 500, "internal_error", "the merchant's cell's order does not fit", NULL);
        return;
    }
    /* Whether the client's request is a replay is the merchant's cell's to say (it keeps the
     * client's key); the buyer's cell answers by the payment id, and may replay to a fresh
     * request (the client library's resend of this very XPAY, or a resolver's tombstone). */
    s->key_replayed = o->replayed != 0;
    q->kind = PAY_KIND_PAYMENT;
    q->payment_id = o->id;
    q->idem_key = o->id;
    q->peer_cell = (uint32_t)s->merchant_cell;
    s->state = SLOT_XPAY;
    slot_send(g, s, q->uid);
}

/* The buyer's cell's refusals that it stores under the key (pay.c): final for this payment id,
 * so the order can be given back. Others (wrong cell, full) leave it reserved for a retry.
 * cancelled is the tombstone the merchant's cell's resolver left there: the order was given
 * up (released already, or released now: ok either way) and the client hears 409. */
static bool refusal_final(uint8_t code) {
    return code == PAY_ERR_NOT_FOUND || code == PAY_ERR_INSUFFICIENT_FUNDS ||
           code == PAY_ERR_CURRENCY_MISMATCH || code == PAY_ERR_OVERFLOW ||
           code == PAY_ERR_CANCELLED;
}

static void xpay_answered(gateway_t *g, gw_slot_t *s) {
    pay_object_t *o = &s->reply[0];
    if (s->status == 0 && s->count == 1) o->replayed = s->key_replayed;
    if (s->status != 0 || s->count != 1 || !refusal_final(o->code)) {
        call_answered(g, s);
        return;
    }
    s->refusal = o->code;
    pay_request_t *q = &s->call.u.req;
    *q = (pay_request_t){
        .kind = PAY_KIND_RELEASE, .payment_id = q->payment_id, .actor = q->actor, .code = o->code};
    s->state = SLOT_RELEASE;
    slot_send(g, s, q->actor);
}

static void release_answered(gateway_t *g, gw_slot_t *s) {
    const pay_object_t *o = &s->reply[0];
    if (s->status != 0 || s->count != 1 || (o->code != PAY_OK && o->code != PAY_CREATED)) {
        /* The order still holds the out_trade_no: the same key again finds the refusal and
         * releases it then. */
        slot_fail(g, s, 503, "unavailable",
                  "the payment was refused, and the merchant's cell has not yet freed its "
                  "out_trade_no: retry with the same Idempotency-Key",
                  NULL);
        return;
    }
    s->reply[0] =
        (pay_object_t){.kind = PAY_KIND_PAYMENT, .code = s->refusal, .replayed = s->key_replayed};
    s->count = 1;
    call_answered(g, s);
}

/* ---- Cross-cell refunds and transfers (TCC, docs/cross-cell.md) ----
 * A refund of a cross-cell payment: the merchant's receivable is in the merchant's cell, so
 * that cell must hold the money before the buyer's cell pays it out. A transfer across cells:
 * the sender's cell holds the sender's money at once, the recipient's cell must be able to
 * take the credit before it is decided. The same steps for both: the initiator's cell records
 * the activity (answer trying, stored under the key), the participant's cell tries, and the
 * initiator's cell decides. The decision replaces trying under the key and is the client's
 * answer. A gateway that dies mid-way leaves trying under the key: the client's retry with it
 * goes on from the Try (and the relay's recovery cancels what nobody decides). */

/* The participant's cell to name in the request: a refund's merchant's cell (the cell that
 * drew the payment id when it is not the buyer's: a cross-cell payment's id is drawn by the
 * merchant's cell), a transfer's recipient's cell when it is not the sender's; 0 for anything
 * else (local: the one-step call). */
static uint32_t tcc_peer_cell(const gateway_t *g, const gw_slot_t *s) {
    const pay_request_t *q = &s->call.u.req;
    if (s->match.endpoint == API_EP_TRANSFER_CREATE)
        return xtcc_transfer_peer_cell(rt_cell_of_uid(&g->routes, q->uid),
                                       rt_cell_of_uid(&g->routes, q->recipient));
    if (s->match.endpoint != API_EP_REFUND_CREATE) return 0;
    return xtcc_refund_peer_cell(q->payment_id,
                                 rt_cell_of_uid(&g->routes, (uint64_t)(q->payment_id >> 64)));
}

/* No decision is known, so nothing is final for the client; the activity is still trying (or
 * decided by a decide whose answer was lost), and its key will tell. */
static void decide_failed(gateway_t *g, gw_slot_t *s) {
    slot_fail(g, s, 503, "unavailable",
              s->tcc_type == PAY_TCC_TRANSFER
                  ? "the transfer is not decided yet: retry with the same Idempotency-Key"
                  : "the refund is not decided yet: retry with the same Idempotency-Key",
              NULL);
}

static void decide_send(gateway_t *g, gw_slot_t *s, uint8_t code) {
    pay_request_t *q = &s->call.u.req;
    const pay_request_t prev = *q; /* the Try, or the decide this one replaces */
    xtcc_decide_build(&prev, code, q);
    s->state = SLOT_DECIDE;
    const char *why;
    if (!slot_submit(g, s, q->uid, &why)) decide_failed(g, s);
}

static void decide_answered(gateway_t *g, gw_slot_t *s) {
    uint8_t code = 0;
    switch (
        xtcc_after_decide(s->tcc_type, s->status, s->reply, s->count, s->call.u.req.code, &code)) {
    case XTCC_ANSWER:
        /* A decide answers afresh even when it repeats a decision: whether the client's
         * request is a replay is the trying answer's to say. */
        s->reply[0].replayed = s->key_replayed;
        call_answered(g, s);
        return;
    case XTCC_CANCEL: decide_send(g, s, code); return;
    case XTCC_RETRY: decide_failed(g, s); return;
    }
}

static void try_answered(gateway_t *g, gw_slot_t *s) {
    decide_send(g, s, xtcc_decision(&s->call.u.req, s->status, s->reply, s->count));
}

/* The initiator's cell answered the refund or transfer: trying (fresh, or the key's answer
 * from a gateway that stopped mid-way) goes on with the Try; a decision stored under the key,
 * or an error, is the client's answer as it is. */
static void tcc_answered(gateway_t *g, gw_slot_t *s) {
    if (!xtcc_trying(s->status, s->reply, s->count)) {
        call_answered(g, s);
        return;
    }
    pay_request_t try_req;
    if (!xtcc_try_build(&s->reply[0], &try_req)) {
        slot_fail(g, s, 500, "internal_error", "the initiating cell's trying answer does not fit",
                  NULL);
        return;
    }
    s->key_replayed = s->reply[0].replayed != 0;
    s->tcc_type = try_req.tcc_type;
    /* The Try goes to the participant the initiator recorded (its decision's record will go
     * there too), not to where today's table puts the user: if the two differ (the table
     * changed since, or was wrong then), that cell answers wrong_cell and the activity is
     * cancelled, rather than one cell holding what another is told to confirm. */
    uint64_t participant = s->reply[0].peer_cell;
    s->call.u.req = try_req;
    s->state = SLOT_TRY;
    const char *why;
    /* Not sent: nothing is held in the participant's cell, so cancelling is safe, and frees
     * the refund's out_request_no or releases the sender's held money now. */
    if (!slot_submit_cell(g, s, participant, &why)) decide_send(g, s, PAY_ERR_CANCELLED);
}

static void tcc_send(gateway_t *g, gw_slot_t *s, uint32_t peer_cell) {
    s->call.u.req.peer_cell = peer_cell;
    s->state = SLOT_XTCC;
    slot_send(g, s, api_call_route_uid(&s->call));
}

static void request_build_send(gateway_t *g, gw_slot_t *s, const http_request_t *r,
                               uint64_t actor) {
    api_fail_t f;
    if (!api_build(&s->match, r, actor, &s->call, &f)) {
        slot_fail(g, s, f.status, f.code, f.message, f.param[0] ? f.param : NULL);
        return;
    }
    if (s->match.endpoint == API_EP_MERCHANT_CREATE &&
        RAND_bytes(s->call.u.req.secret, PAY_SECRET_SIZE) != 1) {
        slot_fail(g, s, 503, "unavailable", "no random bytes for the secret", NULL);
        return;
    }
    if (s->call.op == PROTO_OP_PAY) own_key_maybe(g, s);
    if (payment_cross_cell(g, s)) {
        order_send(g, s);
        return;
    }
    uint32_t peer_cell = tcc_peer_cell(g, s);
    if (peer_cell != 0) {
        tcc_send(g, s, peer_cell);
        return;
    }
    s->state = SLOT_CALL;
    slot_send(g, s, api_call_route_uid(&s->call));
}

static void merchant_verify(gateway_t *g, gw_slot_t *s, const http_request_t *r, uint64_t uid,
                            const secret_entry_t *e) {
    const char *ts = http_request_header(r, "X-Cellpay-Timestamp");
    const char *sig = http_request_header(r, "X-Cellpay-Signature");
    uint64_t now = (uint64_t)time(NULL);
    auth_result_t a = e->key ? auth_key_check(e->key, r->method, path_query(g, r), ts, sig, r->body,
                                              r->body_len, now)
                             : auth_check(e->hex, AUTH_HEX_MAX, r->method, path_query(g, r), ts,
                                          sig, r->body, r->body_len, now);
    if (a != AUTH_OK) {
        slot_fail(g, s, 401, auth_error_code(a), "the request's signature does not check out",
                  NULL);
        return;
    }
    request_build_send(g, s, r, uid);
}

static void merchant_auth(gateway_t *g, gw_slot_t *s, const http_request_t *r) {
    const char *m = http_request_header(r, "X-Cellpay-Merchant");
    uint64_t uid;
    /* Refused before the secret is looked up: an unsigned request costs the cell nothing. */
    if (!m || !api_uid_parse(m, strlen(m), &uid) ||
        !http_request_header(r, "X-Cellpay-Timestamp") ||
        !http_request_header(r, "X-Cellpay-Signature")) {
        slot_fail(g, s, 401, "unauthorized",
                  "X-Cellpay-Merchant (a merchant's uid), X-Cellpay-Timestamp and "
                  "X-Cellpay-Signature are needed",
                  NULL);
        return;
    }
    const secret_entry_t *secret = secret_find(g, uid);
    if (secret) {
        merchant_verify(g, s, r, uid, secret);
        return;
    }
    s->state = SLOT_SECRET;
    s->merchant = uid;
    memset(&s->call, 0, sizeof s->call); /* the item's padding to 256 bytes too */
    s->call.op = PROTO_OP_PAY_QUERY;
    s->call.u.query.kind = PAY_Q_MERCHANT;
    s->call.u.query.uid = uid;
    slot_send(g, s, uid);
}

/* The merchant's cell answered the secret query; the request is still in the HTTP server. */
static void secret_answered(gateway_t *g, gw_slot_t *s) {
    const pay_object_t *o = &s->reply[0];
    if (s->status != 0 || s->count == 0) {
        slot_fail(g, s, 503, "unavailable",
                  s->status ? client_status_str(s->status) : "the cell answered nothing", NULL);
        return;
    }
    if (o->code == PAY_ERR_NOT_FOUND) {
        slot_fail(g, s, 401, "unauthorized", "no such merchant", NULL);
        return;
    }
    const char *code, *msg;
    int st = api_code_status(o->code, &code, &msg);
    if (st >= 400 || o->kind != PAY_KIND_MERCHANT || o->uid != s->merchant) {
        slot_fail(g, s, st >= 400 ? st : 500, st >= 400 ? code : "internal_error",
                  st >= 400 ? msg : "the cell's answer does not fit", NULL);
        return;
    }
    secret_store(g, s->merchant, o->secret);
    const http_request_t *r = http_request_of(s->http);
    if (!r) {
        slot_release(g, s); /* the client went away meanwhile */
        return;
    }
    merchant_verify(g, s, r, s->merchant, secret_find(g, s->merchant));
}

/* ---- Requests and answers ---- */

static void respond_match(http_handle_t h, const api_match_t *m, const http_request_t *r) {
    if (m->status == 405) {
        char allow[64];
        char body[256];
        snprintf(allow, sizeof allow, "Allow: %s\r\n", m->allow);
        size_t n = json_out_error(body, sizeof body, "method_not_allowed",
                                  "this path does not take that method", NULL);
        http_respond_headers(h, 405, "application/json", allow, body, n);
        return;
    }
    http_respond_error(h, 404, "not_found", "no such endpoint", r->path);
}

static void on_request(void *ctx, const http_request_t *r, http_handle_t h) {
    gateway_t *g = ctx;
    api_match_t m;
    api_match(r->method, r->path, r->path_len, &m);
    if (m.status != 0) {
        respond_match(h, &m, r);
        return;
    }
    if (m.endpoint == API_EP_HEALTH) {
        static const char ok[] = "{\"status\":\"ok\"}";
        http_respond(h, 200, "application/json", ok, sizeof ok - 1);
        return;
    }
    gw_slot_t *s = slot_take(g);
    if (!s) {
        http_respond_error(h, 503, "unavailable", "too many requests in flight", NULL);
        return;
    }
    s->http = h;
    s->match = m;
    if (api_endpoint_auth(m.endpoint) == API_AUTH_MERCHANT) {
        merchant_auth(g, s, r);
    } else if (!auth_bearer_ok(http_request_header(r, "Authorization"), g->admin_key)) {
        slot_fail(g, s, 401, "unauthorized", "the operator's Authorization: Bearer key is needed",
                  NULL);
    } else {
        request_build_send(g, s, r, 0);
    }
}

static void call_answered(gateway_t *g, gw_slot_t *s) {
    int status;
    bool replayed;
    size_t n = api_render_reply(s->match.endpoint, s->status, s->reply, s->count, s->call.limit,
                                g->render, sizeof g->render, &status, &replayed);
    cp_assert(n > 0); /* API_RENDER_MAX holds the largest answer */
    /* A replay of the gateway's own key is a resend of this very request: the first answer. */
    http_respond_headers(s->http, status, "application/json",
                         replayed && !s->own_key ? "Idempotent-Replayed: true\r\n" : NULL,
                         g->render, n);
    slot_release(g, s);
}

static void slot_answered(gateway_t *g, gw_slot_t *s) {
    cell_release(g, s->cell);
    s->cell = NULL;
    if (g->stopping) {
        slot_release(g, s);
    } else {
        switch (s->state) {
        case SLOT_SECRET: secret_answered(g, s); return;
        case SLOT_ORDER: order_answered(g, s); return;
        case SLOT_XPAY: xpay_answered(g, s); return;
        case SLOT_RELEASE: release_answered(g, s); return;
        case SLOT_XTCC: tcc_answered(g, s); return;
        case SLOT_TRY: try_answered(g, s); return;
        case SLOT_DECIDE: decide_answered(g, s); return;
        default: call_answered(g, s); return;
        }
    }
}

/* ---- The loop: wakes, stopping, route reloads ---- */

static void drain_answers(gateway_t *g) {
    uint32_t i = g->done_head;
    g->done_head = g->done_tail = GW_NONE;
    while (i != GW_NONE) {
        gw_slot_t *s = &g->slots[i];
        i = s->next;
        slot_answered(g, s);
    }
}

static void gateway_shutdown(gateway_t *g) {
    if (g->stopping) return;
    g->stopping = true;
    http_server_stop(g->http);
    uv_close((uv_handle_t *)&g->sigterm, NULL);
    uv_close((uv_handle_t *)&g->sigint, NULL);
    uv_close((uv_handle_t *)&g->reload, NULL);
    /* Closing a client answers what it still holds (CLIENT_ERR_CLOSED) through on_answer,
     * which still wakes this handle: it is closed after them. */
    for (uint32_t i = 0; i < g->routes.cell_count; i++) {
        if (g->cells[i]->inflight == 0) {
            cell_close(g->cells[i]);
        } else {
            g->cells[i]->retired = true;
            g->cells[i]->next_retired = g->retired;
            g->retired = g->cells[i];
        }
    }
    g->routes.cell_count = 0;
    for (gw_cell_t *c = g->retired; c; c = c->next_retired) {
        client_close(c->client);
        c->client = NULL;
    }
    drain_answers(g); /* releases every retired cell as its last request comes back */
    cp_assert(g->retired == NULL);
    uv_close((uv_handle_t *)&g->drain, NULL);
    /* Nobody may wake the handle once it closes. */
    pthread_mutex_lock(&running_lock);
    if (running == g) running = NULL;
    pthread_mutex_unlock(&running_lock);
    uv_close((uv_handle_t *)&g->wake, NULL);
}

static void on_drain(uv_check_t *h) {
    uv_check_stop(h);
    drain_answers(h->data);
}

static void on_wake(uv_async_t *a) {
    gateway_t *g = a->data;
    uv_mutex_lock(&g->lock);
    bool stop = g->stop_asked, routes = g->routes_asked;
    g->routes_asked = false;
    uv_mutex_unlock(&g->lock);
    drain_answers(g);
    if (routes && !g->stopping) {
        uv_mutex_lock(&g->lock);
        memcpy(&g->routes_scratch, &g->routes_new, sizeof g->routes_scratch);
        uv_mutex_unlock(&g->lock);
        int why;
        if (!rt_equal(&g->routes_scratch, &g->routes) && !routes_apply(g, &g->routes_scratch, &why))
            routes_kept(g);
    }
    if (stop) gateway_shutdown(g);
}

static void on_signal(uv_signal_t *sig, int signum) {
    gateway_t *g = sig->data;
    fprintf(stderr, GW_LOG ": received signal %d, stopping\n", signum);
    gateway_shutdown(g);
}

static bool stat_same(const struct stat *a, const struct stat *b) {
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static void on_reload(uv_timer_t *t) {
    gateway_t *g = t->data;
    struct stat st;
    if (stat(g->cfg.routes_path, &st) != 0) return; /* mid-rename or gone: keep the table */
    if (g->routes_stat_ok && stat_same(&st, &g->routes_stat)) return;
    g->routes_stat = st;
    g->routes_stat_ok = true;
    rt_table_t *next = &g->routes_scratch;
    char err[256];
    if (!rt_load(g->cfg.routes_path, next, err, sizeof err)) {
        fprintf(stderr, GW_LOG ": keeping route table version %llu: %s\n",
                (unsigned long long)g->routes.version, err);
        return;
    }
    int why = 0;
    if (rt_equal(next, &g->routes) || routes_apply(g, next, &why)) return;
    routes_kept(g);
    /* Out of memory or threads may pass: tried again at the next tick. An address the client
     * does not take (a host name: it takes IPv4 literals and localhost) stays so until the
     * file changes; trying it twice a second would only repeat the log lines. */
    if (why == CLIENT_ERR_SYSTEM) g->routes_stat_ok = false;
}

/* ---- Running ---- */

static int gateway_init(gateway_t *g, const gateway_config_t *cfg) {
    g->cfg = *cfg;
    snprintf(g->admin_key, sizeof g->admin_key, "%s", cfg->admin_key ? cfg->admin_key : "");
    /* A connection has one request in flight, but one whose client left keeps its slot until
     * the cell answers: twice the connections leaves room for those. */
    g->conns_max = cfg->conns_max ? cfg->conns_max : CP_HTTP_CONNS_DEFAULT;
    g->slot_count = 2 * g->conns_max;
    g->slots = calloc(g->slot_count, sizeof g->slots[0]);
    g->secrets = calloc(GW_SECRETS, sizeof g->secrets[0]);
    if (!g->slots || !g->secrets) return -1;
    if (RAND_bytes((unsigned char *)&g->key_salt, sizeof g->key_salt) != 1) return -1;
    for (uint32_t i = 0; i < g->slot_count; i++) {
        g->slots[i].gw = g;
        g->slots[i].next = i + 1 < g->slot_count ? i + 1 : GW_NONE;
    }
    g->free_head = 0;
    g->done_head = g->done_tail = GW_NONE;
    if (uv_mutex_init(&g->lock) != 0) return -1;
    if (uv_loop_init(&g->loop) != 0) {
        uv_mutex_destroy(&g->lock);
        return -1;
    }
    return 0;
}

static void gateway_free(gateway_t *g) {
    free(g->slots);
    for (uint32_t i = 0; g->secrets && i < GW_SECRETS; i++) auth_key_free(g->secrets[i].key);
    free(g->secrets);
    free(g);
}

static bool gateway_start(gateway_t *g) {
    char err[256];
    if (strlen(g->admin_key) == 0) {
        fprintf(stderr, GW_LOG ": no admin key\n");
        return false;
    }
    if (!rt_validate(&g->cfg.routes, err, sizeof err)) {
        fprintf(stderr, GW_LOG ": the route table: %s\n", err);
        return false;
    }
    int why;
    if (!routes_apply(g, &g->cfg.routes, &why)) return false;
    http_config_t hc = {.listen = g->cfg.listen ? g->cfg.listen : "127.0.0.1:8080",
                        .conns_max = g->conns_max,
                        .request_timeout_ms = g->cfg.request_timeout_ms,
                        .idle_timeout_ms = g->cfg.idle_timeout_ms,
                        .log_name = GW_LOG};
    g->http = http_server_start(&g->loop, &hc, on_request, g, err, sizeof err);
    if (!g->http) {
        fprintf(stderr, GW_LOG ": %s\n", err);
        for (uint32_t i = 0; i < g->routes.cell_count; i++) cell_close(g->cells[i]);
        return false;
    }
    return true;
}

static void handles_start(gateway_t *g) {
    cp_assert(uv_async_init(&g->loop, &g->wake, on_wake) == 0);
    g->wake.data = g;
    uv_check_init(&g->loop, &g->drain);
    g->drain.data = g;
    uv_signal_init(&g->loop, &g->sigterm);
    uv_signal_init(&g->loop, &g->sigint);
    g->sigterm.data = g->sigint.data = g;
    uv_signal_start(&g->sigterm, on_signal, SIGTERM);
    uv_signal_start(&g->sigint, on_signal, SIGINT);
    uv_timer_init(&g->loop, &g->reload);
    g->reload.data = g;
    if (g->cfg.routes_path) {
        g->routes_stat_ok = stat(g->cfg.routes_path, &g->routes_stat) == 0;
        uv_timer_start(&g->reload, on_reload, GW_RELOAD_MS, GW_RELOAD_MS);
    }
}

int gateway_run(const gateway_config_t *config) {
    gateway_t *g = calloc(1, sizeof *g);
    if (!g || gateway_init(g, config) != 0) {
        fprintf(stderr, GW_LOG ": out of memory\n");
        if (g) gateway_free(g);
        return 1;
    }
    if (!gateway_start(g)) {
        uv_run(&g->loop, UV_RUN_DEFAULT);
        uv_loop_close(&g->loop);
        uv_mutex_destroy(&g->lock);
        gateway_free(g);
        return 1;
    }
    handles_start(g);
    pthread_mutex_lock(&running_lock);
    running = g;
    pthread_mutex_unlock(&running_lock);
    if (config->on_listening) config->on_listening(config->ctx, http_server_port(g->http));
    uv_run(&g->loop, UV_RUN_DEFAULT);
    pthread_mutex_lock(&running_lock);
    if (running == g) running = NULL;
    pthread_mutex_unlock(&running_lock);
    http_server_free(g->http);
    cp_assert(uv_loop_close(&g->loop) == 0);
    uv_mutex_destroy(&g->lock);
    gateway_free(g);
    auth_thread_done(); /* the loop's thread may end with gateway_run: no leak of its MAC */
    fprintf(stderr, GW_LOG ": stopped cleanly\n");
    return 0;
}

void gateway_stop(void) {
    pthread_mutex_lock(&running_lock);
    if (running) {
        uv_mutex_lock(&running->lock);
        running->stop_asked = true;
        uv_mutex_unlock(&running->lock);
        uv_async_send(&running->wake);
    }
    pthread_mutex_unlock(&running_lock);
}

bool gateway_set_routes(const rt_table_t *routes) {
    char err[256];
    if (!rt_validate(routes, err, sizeof err)) return false;
    pthread_mutex_lock(&running_lock);
    bool ok = running != NULL;
    if (ok) {
        uv_mutex_lock(&running->lock);
        memcpy(&running->routes_new, routes, sizeof *routes);
        running->routes_asked = true;
        uv_mutex_unlock(&running->lock);
        uv_async_send(&running->wake);
    }
    pthread_mutex_unlock(&running_lock);
    return ok;
}

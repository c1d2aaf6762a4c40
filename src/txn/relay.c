/* The relay (relay.h). Per target cell it keeps the first outbox record not yet sent in this
 * term of leadership (`next`); a tick gathers records from the lowest such point on, skips
 * what was sent already or goes to a cell in back-off, and sends one batch of credits per
 * target cell. A batch whose answer is not "credited" (an error, a timeout, an item refused)
 * sends that cell back to its first record and pauses it: records are only ever sent again,
 * never skipped. */
#include "txn/relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "base/assert.h"
#include "base/prng.h"
#include "client/client.h"
#include "gateway/route.h"

#define RELAY_BATCH_MAX 1024u /* credits per message */
#define RELAY_BATCHES 8u      /* messages in flight at once, credits and acks */
#define RELAY_SCAN_MAX (RELAY_BATCH_MAX * RELAY_BATCHES)
#define RELAY_ROUTES_TICKS 50u  /* ticks between looks at the route table file */
#define RELAY_BACKOFF_TICKS 50u /* a cell whose batch failed rests this long */
#define RELAY_RESCAN_TICKS 100u /* backlog, nothing in flight, this long: start over */
#define RELAY_DEADLINE_MS 5000u
#define RELAY_FAULT_DELAY_TICKS 20u
#define RELAY_ADDRS_SIZE (RT_REPLICAS_MAX * RT_ADDR_SIZE)

typedef struct relay_peer {
    uint64_t id;
    char addrs[RELAY_ADDRS_SIZE];
    client_t *client;       /* opened when first needed; NULL after a route change */
    uint64_t next;          /* the first record for this cell not sent in this term */
    uint32_t backoff_until; /* no sending before this tick */
    bool failing;           /* logged as failing; logged again once it recovers */
} relay_peer_t;

typedef enum relay_fault {
    FAULT_NONE = 0,
    FAULT_LOSE_REQUEST, /* never sent: as if lost on the way */
    FAULT_LOSE_ANSWER,  /* applied, but the relay takes it for failed */
    FAULT_DUPLICATE,    /* a copy goes too */
    FAULT_DELAY,        /* held back, later batches overtake it */
} relay_fault_t;

typedef struct relay_batch {
    relay_t *relay;
    relay_peer_t *peer; /* the cell the credits went to */
    bool busy;
    bool echo;          /* a duplicate sent on purpose (faults): its answer is dropped */
    uint8_t fault;      /* relay_fault_t drawn for it */
    uint32_t send_tick; /* FAULT_DELAY: sent at this tick */
    uint32_t count;
    uint64_t first_seq;
    pay_request_t items[RELAY_BATCH_MAX];
    uint64_t seqs[RELAY_BATCH_MAX];
} relay_batch_t;

struct relay {
    relay_config_t cfg;
    rt_table_t routes;
    bool routes_ok;
    struct stat routes_stat;
    relay_peer_t peers[RT_CELLS_MAX]; /* by first sight; never reordered (batches point in) */
    uint32_t peer_count;
    relay_batch_t *batches; /* RELAY_BATCHES */
    pay_outbox_item_t *scan;
    uint64_t scanned; /* every record below this was looked at in this term */
    uint32_t ticks, idle_ticks;
    bool leader, closing;
    relay_stats_t stats;
    prng_t fault_rng;
};

/* A fault for one batch (none unless fault_pct). */
static relay_fault_t fault_draw(relay_t *r) {
    if (r->cfg.fault_pct == 0 || prng_below(&r->fault_rng, 100) >= r->cfg.fault_pct)
        return FAULT_NONE;
    r->stats.faults++;
    return (relay_fault_t)(FAULT_LOSE_REQUEST + prng_below(&r->fault_rng, 4));
}

static void relay_log(const relay_t *r, const char *what, uint64_t cell, const char *why) {
    fprintf(stderr, "%s: relay: %s cell %llu%s%s\n", r->cfg.name, what, (unsigned long long)cell,
            why ? ": " : "", why ? why : "");
}

relay_t *relay_create(const relay_config_t *config) {
    relay_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->cfg = *config;
    r->batches = calloc(RELAY_BATCHES, sizeof *r->batches);
    r->scan = calloc(RELAY_SCAN_MAX, sizeof *r->scan);
    if (!r->batches || !r->scan) {
        relay_close(r);
        return NULL;
    }
    for (uint32_t i = 0; i < RELAY_BATCHES; i++) r->batches[i].relay = r;
    r->fault_rng.state = config->fault_seed;
    return r;
}

relay_stats_t relay_stats(const relay_t *r) {
    return r->stats;
}

/* ---- Cells and their clients ---- */

static relay_peer_t *peer_of(relay_t *r, uint64_t id) {
    for (uint32_t i = 0; i < r->peer_count; i++)
        if (r->peers[i].id == id) return &r->peers[i];
    if (r->peer_count == RT_CELLS_MAX) return NULL;
    relay_peer_t *p = &r->peers[r->peer_count++];
    *p = (relay_peer_t){.id = id};
    return p;
}

static void peers_disconnect(relay_t *r) {
    for (uint32_t i = 0; i < r->peer_count; i++) {
        client_t *c = r->peers[i].client;
        r->peers[i].client = NULL; /* before the close answers its batches */
        if (c) client_close(c);
    }
}

/* The client of cell p by the current table; NULL (logged once) when it cannot have one. */
static client_t *peer_client(relay_t *r, relay_peer_t *p) {
    if (p->client) return p->client;
    const rt_cell_t *rc = rt_find_cell(&r->routes, p->id);
    if (!rc) {
        if (!p->failing) relay_log(r, "the route table does not name", p->id, NULL);
        p->failing = true;
        return NULL;
    }
    rt_cell_addresses(rc, p->addrs, sizeof p->addrs);
    client_options_t o = {.sessions = 1,
                          .requests_max = RELAY_BATCHES * 2,
                          .deadline_ms = RELAY_DEADLINE_MS,
                          .cell = p->id,
                          .loop = r->cfg.loop};
    int rc_open = client_open(&p->client, p->addrs, &o);
    if (rc_open != 0) {
        if (!p->failing) relay_log(r, "cannot open a client of", p->id, client_status_str(rc_open));
        p->failing = true;
        p->client = NULL;
    }
    return p->client;
}

/* Reads the table again when its file changed. Clients are reopened from the new table. */
static void routes_reload(relay_t *r) {
    struct stat st;
    if (stat(r->cfg.routes_path, &st) != 0) return; /* not written yet: keep what we have */
    if (r->routes_ok && st.st_mtim.tv_sec == r->routes_stat.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == r->routes_stat.st_mtim.tv_nsec &&
        st.st_ino == r->routes_stat.st_ino && st.st_size == r->routes_stat.st_size)
        return;
    char err[256];
    rt_table_t *t = malloc(sizeof *t);
    if (!t) return;
    if (!rt_load(r->cfg.routes_path, t, err, sizeof err)) {
        fprintf(stderr, "%s: relay: %s (keeping the table it has)\n", r->cfg.name, err);
    } else if (!r->routes_ok || !rt_equal(t, &r->routes)) {
        peers_disconnect(r);
        r->routes = *t;
        r->routes_ok = true;
    }
    r->routes_stat = st;
    free(t);
}

/* ---- Batches ---- */

static relay_batch_t *batch_take(relay_t *r, relay_peer_t *p) {
    for (uint32_t i = 0; i < RELAY_BATCHES; i++) {
        relay_batch_t *b = &r->batches[i];
        if (b->busy) continue;
        b->busy = true;
        b->echo = false;
        b->fault = FAULT_NONE;
        b->peer = p;
        b->count = 0;
        return b;
    }
    return NULL;
}

static uint32_t batches_busy(const relay_t *r) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < RELAY_BATCHES; i++) n += r->batches[i].busy;
    return n;
}

/* Records from seq on go to p again, after a rest. */
static void peer_failed(relay_t *r, relay_peer_t *p, uint64_t seq, const char *why) {
    if (seq < p->next) p->next = seq;
    p->backoff_until = r->ticks + RELAY_BACKOFF_TICKS;
    r->stats.failures++;
    if (!p->failing) relay_log(r, "cannot deliver to", p->id, why);
    p->failing = true;
}

static void on_acked(void *ctx, int32_t status, uint64_t ts, const void *reply, uint32_t size) {
    (void)ts;
    relay_batch_t *b = ctx;
    relay_t *r = b->relay;
    const pay_object_t *o = reply;
    bool ok = status == 0 && size == b->count * sizeof *o && fault_draw(r) != FAULT_LOSE_ANSWER;
    for (uint32_t i = 0; ok && i < b->count; i++) ok = o[i].code == PAY_OK;
    if (ok)
        r->stats.acked += b->count;
    else if (!r->closing) /* delivered again later, and acknowledged then */
        peer_failed(r, b->peer, b->first_seq, status ? client_status_str(status) : "ack refused");
    b->busy = false;
}

/* The merchant's cell answered: each credited record is acknowledged in this cell, in the
 * same batch's memory (the client is done with the credits). */
static void on_credited(void *ctx, int32_t status, uint64_t ts, const void *reply, uint32_t size) {
    (void)ts;
    relay_batch_t *b = ctx;
    relay_t *r = b->relay;
    relay_peer_t *p = b->peer;
    const pay_object_t *o = reply;
    if (b->echo) { /* the duplicate's answer: the original's counts */
        b->busy = false;
        return;
    }
    if (b->fault == FAULT_LOSE_ANSWER) status = CLIENT_ERR_TIMEOUT;
    if (r->closing || status != 0 || size != b->count * sizeof *o) {
        if (!r->closing)
            peer_failed(r, p, b->first_seq, status ? client_status_str(status) : "short answer");
        b->busy = false;
        return;
    }
    uint32_t acks = 0;
    for (uint32_t i = 0; i < b->count; i++) {
        if (o[i].code != PAY_CREATED && o[i].code != PAY_OK) {
            peer_failed(r, p, b->seqs[i], "a credit was refused (see the merchant's cell)");
            continue;
        }
        const pay_request_t *c = &b->items[i];
        b->items[acks++] =
            (pay_request_t){.kind = PAY_KIND_ACK, .payment_id = c->payment_id, .uid = c->uid};
    }
    r->stats.delivered += acks;
    if (p->failing && acks == b->count) {
        relay_log(r, "delivering again to", p->id, NULL);
        p->failing = false;
    }
    b->count = acks;
    relay_peer_t *self = peer_of(r, r->cfg.cell_id);
    client_t *c = self ? peer_client(r, self) : NULL;
    if (acks == 0 || !c ||
        client_submit(c, PROTO_OP_PAY, b->items, acks * (uint32_t)sizeof b->items[0], on_acked,
                      b) != 0) {
        if (acks) peer_failed(r, p, b->first_seq, "cannot reach its own cell to acknowledge");
        b->busy = false;
    }
}

static void batch_submit(relay_t *r, relay_batch_t *b) {
    relay_peer_t *p = b->peer;
    client_t *c = peer_client(r, p);
    if (b->fault == FAULT_LOSE_REQUEST) {
        peer_failed(r, p, b->first_seq, "lost on purpose (--relay-faults)");
        b->busy = false;
        return;
    }
    if (!c || client_submit(c, PROTO_OP_PAY, b->items, b->count * (uint32_t)sizeof b->items[0],
                            on_credited, b) != 0) {
        if (!b->echo) peer_failed(r, p, b->first_seq, c ? "the client refused the batch" : NULL);
        b->busy = false;
    }
}

/* Sends b, unless a fault drawn for it says otherwise (a copy too, or later). */
static void batch_send(relay_t *r, relay_batch_t *b) {
    b->fault = (uint8_t)fault_draw(r);
    if (b->fault == FAULT_DELAY) {
        b->send_tick = r->ticks + 1 + (uint32_t)prng_below(&r->fault_rng, RELAY_FAULT_DELAY_TICKS);
        return; /* relay_tick() sends it then */
    }
    if (b->fault == FAULT_DUPLICATE) {
        relay_batch_t *copy = batch_take(r, b->peer);
        if (copy) {
            copy->echo = true;
            copy->count = b->count;
            copy->first_seq = b->first_seq;
            memcpy(copy->items, b->items, b->count * sizeof b->items[0]);
            batch_submit(r, copy);
        }
    }
    batch_submit(r, b);
}

/* Batches held back on purpose whose time has come. */
static void batches_due(relay_t *r) {
    for (uint32_t i = 0; i < RELAY_BATCHES; i++) {
        relay_batch_t *b = &r->batches[i];
        if (b->busy && b->fault == FAULT_DELAY && b->send_tick <= r->ticks) {
            b->fault = FAULT_NONE;
            batch_submit(r, b);
        }
    }
}

static void batch_add(relay_batch_t *b, const pay_outbox_item_t *it) {
    cp_assert(b->count < RELAY_BATCH_MAX);
    if (b->count == 0) b->first_seq = it->seq;
    b->seqs[b->count] = it->seq;
    b->items[b->count++] = (pay_request_t){.kind = PAY_KIND_CREDIT,
                                           .payment_id = it->payment_id,
                                           .amount = it->amount,
                                           .actor = it->merchant,
                                           .uid = it->buyer,
                                           .currency = it->currency,
                                           .peer_cell = (uint32_t)b->relay->cfg.cell_id};
}

/* The open batch of p in this tick, or a new one; NULL when every batch is in flight. */
static relay_batch_t *batch_for(relay_t *r, relay_batch_t **open, uint32_t *open_count,
                                relay_peer_t *p) {
    for (uint32_t i = 0; i < *open_count; i++)
        if (open[i]->peer == p) {
            if (open[i]->count < RELAY_BATCH_MAX) return open[i];
            batch_send(r, open[i]); /* full: on its way, and a new one for the rest */
            open[i] = open[--*open_count];
            break;
        }
    relay_batch_t *b = batch_take(r, p);
    if (b) open[(*open_count)++] = b;
    return b;
}

/* Where this tick's scan starts: the first record not looked at yet, or the lowest `next` of
 * the cells not resting, if lower (a cell that failed goes back to its first record). */
static uint64_t scan_from(const relay_t *r) {
    uint64_t from = r->scanned;
    for (uint32_t i = 0; i < r->peer_count; i++) {
        const relay_peer_t *p = &r->peers[i];
        if (p->id != r->cfg.cell_id && p->backoff_until <= r->ticks && p->next < from)
            from = p->next;
    }
    return from;
}

/* Everything is to be sent again: a new term of leadership, or records lost track of. */
static void relay_restart(relay_t *r) {
    r->scanned = 0;
    for (uint32_t i = 0; i < r->peer_count; i++) {
        r->peers[i].next = 0;
        r->peers[i].backoff_until = 0;
    }
}

static void relay_send(relay_t *r, const pay_t *pay) {
    uint32_t n = pay_outbox_pending(pay, scan_from(r), r->scan, RELAY_SCAN_MAX);
    relay_batch_t *open[RELAY_BATCHES];
    uint32_t open_count = 0;
    for (uint32_t i = 0; i < n; i++) {
        const pay_outbox_item_t *it = &r->scan[i];
        relay_peer_t *p = peer_of(r, it->peer_cell);
        if (p && it->seq >= p->next && p->backoff_until <= r->ticks) {
            relay_batch_t *b = batch_for(r, open, &open_count, p);
            if (!b) break; /* every batch is out: the rest waits for the next tick */
            batch_add(b, it);
            p->next = it->seq + 1;
        }
        if (it->seq + 1 > r->scanned) r->scanned = it->seq + 1;
    }
    for (uint32_t i = 0; i < open_count; i++) batch_send(r, open[i]);
}

void relay_tick(relay_t *r, bool leader, const pay_t *pay) {
    r->ticks++;
    if (leader && !r->leader) relay_restart(r); /* a new term of leadership */
    r->leader = leader;
    if (r->closing) return;
    batches_due(r); /* as leader or not: they were made while leading */
    if (!leader) return;
    if (!r->routes_ok || r->ticks % RELAY_ROUTES_TICKS == 0) routes_reload(r);
    if (!r->routes_ok || pay_outbox_backlog(pay) == 0) {
        r->idle_ticks = 0;
        return;
    }
    /* A backlog and nothing in flight for long: a record was lost track of (an answer that
     * never came back to a closed client, say). Sending everything again is always safe. */
    r->idle_ticks = batches_busy(r) ? 0 : r->idle_ticks + 1;
    if (r->idle_ticks >= RELAY_RESCAN_TICKS) {
        r->idle_ticks = 0;
        relay_restart(r);
    }
    relay_send(r, pay);
}

void relay_close(relay_t *r) {
    if (!r) return;
    r->closing = true;
    peers_disconnect(r); /* batches in flight are answered "closed" and let go */
    free(r->batches);
    free(r->scan);
    free(r);
}

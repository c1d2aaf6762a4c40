/* The relay's core (relay_core.h). Per target cell it keeps the first outbox record not yet
 * sent in this term of leadership (`next`); a tick gathers records from the lowest such point
 * on, skips what was sent already or goes to a cell in back-off, and fills one batch of
 * credits per target cell. A batch whose answer is not "credited" (an error, a timeout, an
 * item refused) sends that cell back to its first record and pauses it. Now and then a tick
 * also sends one batch of decides to the own cell: the recovery of refund activities left
 * trying; and resolve batches to the buyers' cells about orders left reserved, whose answers
 * come back to the own cell as releases (relay_core.h). */
#include "txn/relay_core.h"

#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/prng.h"

#define RELAY_CORE_SCAN_MAX (RELAY_CORE_BATCH_MAX * RELAY_CORE_BATCHES)
#define RELAY_CORE_PEERS_MAX 128u /* cells a route table may name (route.h: RT_CELLS_MAX) */

typedef struct core_peer {
    uint64_t id;
    uint64_t next;          /* the first record for this cell not sent in this term */
    uint64_t backoff_until; /* no sending before this tick */
    bool failing;           /* logged as failing; logged again once it recovers */
} core_peer_t;

typedef enum relay_fault {
    FAULT_NONE = 0,
    FAULT_LOSE_REQUEST, /* never sent: as if lost on the way */
    FAULT_LOSE_ANSWER,  /* applied, but the relay takes it for failed */
    FAULT_DUPLICATE,    /* a copy goes too */
    FAULT_DELAY,        /* held back, later batches overtake it */
} relay_fault_t;

typedef enum batch_state {
    BATCH_FREE = 0,
    BATCH_HELD,     /* FAULT_DELAY: goes out at send_tick */
    BATCH_CREDITS,  /* credits on their way to the peer */
    BATCH_ACKS,     /* acknowledgements on their way to the own cell */
    BATCH_DECIDES,  /* recovery: decisions (cancel) on their way to the own cell */
    BATCH_RESOLVES, /* resolver: questions about stale orders on their way to a buyer's cell */
    BATCH_RELEASES, /* resolver: releases of the orders it did not pay, to the own cell */
} batch_state_t;

typedef struct core_batch {
    core_peer_t *peer; /* the cell the credits went to; NULL for recovery */
    uint8_t state;     /* batch_state_t */
    bool recovery;     /* decides of stale refund activities, to the own cell */
    bool resolve;      /* resolves of stale orders to target, then their releases */
    uint64_t target;   /* resolve: the buyers' cell asked */
    bool echo;         /* a duplicate sent on purpose (faults): its answer is dropped */
    uint8_t fault;     /* relay_fault_t drawn for it */
    uint64_t send_tick;
    uint32_t count;
    uint64_t first_seq;
    pay_request_t items[RELAY_CORE_BATCH_MAX];
    uint64_t seqs[RELAY_CORE_BATCH_MAX];
} core_batch_t;

struct relay_core {
    relay_core_config_t cfg;
    core_peer_t
        peers[RELAY_CORE_PEERS_MAX]; /* by first sight; never reordered (batches point in) */
    uint32_t peer_count;
    core_batch_t *batches; /* RELAY_CORE_BATCHES */
    pay_outbox_item_t *scan;
    uint64_t scanned; /* every record below this was looked at in this term */
    uint64_t tick;
    uint32_t idle_ticks;
    bool leader;
    bool stuck;                       /* relay_core_stuck() */
    uint64_t now;                     /* the cell's clock, as the driver last said */
    uint64_t recover_at;              /* the next look for stale refund activities, a tick */
    bool recover_failing;             /* logged as failing; logged again once it recovers */
    u128 stale[RELAY_CORE_BATCH_MAX]; /* pay_activities_stale()'s answer */
    uint64_t resolve_at;              /* the next look for stale orders, a tick */
    bool resolve_failing;             /* logged as failing; logged again once it recovers */
    pay_order_stale_t orders[RELAY_CORE_BATCH_MAX]; /* pay_orders_stale()'s answer */
    /* The last order the resolver's previous look took (0: start from the oldest): each look
     * goes on after it, so orders beyond one look's worth (behind paid ones waiting for their
     * credit, or for a fifth buyer's cell) come up in turn. */
    u128 resolve_after;
    relay_stats_t stats;
    prng_t fault_rng;
};

static void core_log(const relay_core_t *r, const char *what, uint64_t cell, int32_t status,
                     const char *why) {
    if (r->cfg.log) r->cfg.log(r->cfg.log_ctx, what, cell, status, why);
}

/* A fault for one batch (none unless fault_pct). */
static relay_fault_t fault_draw(relay_core_t *r) {
    if (r->cfg.fault_pct == 0 || prng_below(&r->fault_rng, 100) >= r->cfg.fault_pct)
        return FAULT_NONE;
    r->stats.faults++;
    return (relay_fault_t)(FAULT_LOSE_REQUEST + prng_below(&r->fault_rng, 4));
}

relay_core_t *relay_core_create(const relay_core_config_t *config) {
    relay_core_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->cfg = *config;
    if (r->cfg.recover_after_ns == 0) r->cfg.recover_after_ns = RELAY_CORE_RECOVER_AFTER_NS;
    r->batches = calloc(RELAY_CORE_BATCHES, sizeof *r->batches);
    r->scan = calloc(RELAY_CORE_SCAN_MAX, sizeof *r->scan);
    if (!r->batches || !r->scan) {
        relay_core_destroy(r);
        return NULL;
    }
    r->fault_rng.state = config->fault_seed;
    return r;
}

void relay_core_destroy(relay_core_t *r) {
    if (!r) return;
    free(r->batches);
    free(r->scan);
    free(r);
}

relay_stats_t relay_core_stats(const relay_core_t *r) {
    return r->stats;
}

uint32_t relay_core_busy(const relay_core_t *r) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < RELAY_CORE_BATCHES; i++) n += r->batches[i].state != BATCH_FREE;
    return n;
}

/* Batches of outbox records in flight (credits, decisions, their acks): recovery and the
 * resolver, which run every second while anything is stale, do not count, or they would keep
 * the rescan below from ever finding records lost track of. */
static uint32_t records_busy(const relay_core_t *r) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < RELAY_CORE_BATCHES; i++) {
        const core_batch_t *b = &r->batches[i];
        n += b->state != BATCH_FREE && !b->recovery && !b->resolve;
    }
    return n;
}

static core_peer_t *peer_of(relay_core_t *r, uint64_t id) {
    for (uint32_t i = 0; i < r->peer_count; i++)
        if (r->peers[i].id == id) return &r->peers[i];
    if (r->peer_count == RELAY_CORE_PEERS_MAX) return NULL;
    core_peer_t *p = &r->peers[r->peer_count++];
    *p = (core_peer_t){.id = id};
    return p;
}

/* Records from seq on go to p again, after a rest. */
static void peer_failed(relay_core_t *r, core_peer_t *p, uint64_t seq, int32_t status,
                        const char *why) {
    if (seq < p->next) p->next = seq;
    p->backoff_until = r->tick + RELAY_CORE_BACKOFF_TICKS;
    r->stats.failures++;
    if (!p->failing) core_log(r, "cannot deliver to", p->id, status, why);
    p->failing = true;
}

/* A recovery batch failed: nothing to send back, the next look takes its activities again
 * (still trying) or not (decided after all). */
static void recover_failed(relay_core_t *r, int32_t status, const char *why) {
    r->stats.failures++;
    if (!r->recover_failing)
        core_log(r, "cannot recover refunds through", r->cfg.cell_id, status, why);
    r->recover_failing = true;
}

/* A resolver batch failed (the question or the releases): its orders are still reserved,
 * and the next look takes them again. */
static void resolve_failed(relay_core_t *r, uint64_t cell, int32_t status, const char *why) {
    r->stats.failures++;
    if (!r->resolve_failing) core_log(r, "cannot resolve orders through", cell, status, why);
    r->resolve_failing = true;
}

/* ---- Batches ---- */

static core_batch_t *batch_take(relay_core_t *r, core_peer_t *p) {
    for (uint32_t i = 0; i < RELAY_CORE_BATCHES; i++) {
        core_batch_t *b = &r->batches[i];
        if (b->state != BATCH_FREE) continue;
        b->state = BATCH_CREDITS;
        b->recovery = false;
        b->resolve = false;
        b->target = 0;
        b->echo = false;
        b->fault = FAULT_NONE;
        b->peer = p;
        b->count = 0;
        return b;
    }
    return NULL;
}

static uint32_t batch_handle(const relay_core_t *r, const core_batch_t *b) {
    return (uint32_t)(b - r->batches);
}

static core_batch_t *batch_of(relay_core_t *r, uint32_t handle) {
    cp_assert(handle < RELAY_CORE_BATCHES);
    core_batch_t *b = &r->batches[handle];
    /* one answer per message */
    cp_assert(b->state == BATCH_CREDITS || b->state == BATCH_ACKS || b->state == BATCH_DECIDES ||
              b->state == BATCH_RESOLVES || b->state == BATCH_RELEASES);
    return b;
}

static relay_msg_t batch_msg(const relay_core_t *r, const core_batch_t *b, uint64_t cell) {
    return (relay_msg_t){
        .batch = batch_handle(r, b), .cell = cell, .items = b->items, .count = b->count};
}

/* Messages written to out in this tick (out has room for every batch: each goes at most once). */
typedef struct tick_out {
    relay_msg_t *msgs;
    uint32_t n;
} tick_out_t;

/* b's message did not go or did not come back: its records go again (or, for recovery, its
 * activities at the next look). */
static void batch_failed(relay_core_t *r, core_batch_t *b, int32_t status, const char *why) {
    if (b->resolve)
        resolve_failed(r, b->target, status, why);
    else if (b->recovery)
        recover_failed(r, status, why);
    else
        peer_failed(r, b->peer, b->first_seq, status, why);
}

/* The items of b go out now (credits to their cell, recovery's decides to the own cell),
 * unless the fault drawn for it says otherwise. */
static void batch_emit(relay_core_t *r, core_batch_t *b, tick_out_t *out) {
    if (b->fault == FAULT_LOSE_REQUEST) {
        batch_failed(r, b, 0, "lost on purpose (--relay-faults)");
        b->state = BATCH_FREE;
        return;
    }
    b->state = b->resolve ? BATCH_RESOLVES : b->recovery ? BATCH_DECIDES : BATCH_CREDITS;
    uint64_t cell = b->resolve ? b->target : b->recovery ? r->cfg.cell_id : b->peer->id;
    cp_assert(out->n < RELAY_CORE_BATCHES);
    out->msgs[out->n++] = batch_msg(r, b, cell);
}

/* Sends b, unless a fault drawn for it says otherwise (a copy too, or later). */
static void batch_send(relay_core_t *r, core_batch_t *b, tick_out_t *out) {
    b->fault = (uint8_t)fault_draw(r);
    if (b->fault == FAULT_DELAY) {
        b->state = BATCH_HELD;
        b->send_tick = r->tick + 1 + prng_below(&r->fault_rng, RELAY_CORE_FAULT_DELAY_TICKS);
        return; /* batches_due() sends it then */
    }
    if (b->fault == FAULT_DUPLICATE) {
        core_batch_t *copy = batch_take(r, b->peer);
        if (copy) {
            copy->echo = true;
            copy->recovery = b->recovery;
            copy->resolve = b->resolve;
            copy->target = b->target;
            copy->count = b->count;
            copy->first_seq = b->first_seq;
            memcpy(copy->items, b->items, b->count * sizeof b->items[0]);
            batch_emit(r, copy, out);
        }
    }
    batch_emit(r, b, out);
}

/* Batches held back on purpose whose time has come. */
static void batches_due(relay_core_t *r, tick_out_t *out) {
    for (uint32_t i = 0; i < RELAY_CORE_BATCHES; i++) {
        core_batch_t *b = &r->batches[i];
        if (b->state == BATCH_HELD && b->send_tick <= r->tick) {
            b->fault = FAULT_NONE;
            batch_emit(r, b, out);
        }
    }
}

static void batch_add(const relay_core_t *r, core_batch_t *b, const pay_outbox_item_t *it) {
    cp_assert(b->count < RELAY_CORE_BATCH_MAX);
    /* The record's own kind: a payment's credit, or a refund's or transfer's confirm or
     * cancel (pay.h); all take the same fields and are acknowledged alike, but a transfer's
     * branch is the recipient's (the operator acting), a refund's the merchant's. */
    cp_assert(it->kind == PAY_KIND_CREDIT || it->kind == PAY_KIND_CONFIRM ||
              it->kind == PAY_KIND_CANCEL);
    cp_assert(it->tcc_type == PAY_TCC_REFUND ||
              (it->tcc_type == PAY_TCC_TRANSFER && it->kind != PAY_KIND_CREDIT));
    bool transfer = it->tcc_type == PAY_TCC_TRANSFER;
    if (b->count == 0) b->first_seq = it->seq;
    b->seqs[b->count] = it->seq;
    b->items[b->count++] = (pay_request_t){.kind = it->kind,
                                           .payment_id = it->payment_id,
                                           .amount = it->amount,
                                           .actor = transfer ? 0 : it->merchant,
                                           .uid = it->buyer,
                                           .currency = it->currency,
                                           .peer_cell = (uint32_t)r->cfg.cell_id,
                                           .tcc_type = it->tcc_type,
                                           .recipient = transfer ? it->recipient : 0};
}

/* The open batch of p in this tick, or a new one; NULL when every batch is in flight. */
typedef struct open_set {
    core_batch_t *b[RELAY_CORE_BATCHES];
    uint32_t n;
} open_set_t;

static core_batch_t *batch_for(relay_core_t *r, open_set_t *open, core_peer_t *p, tick_out_t *out) {
    for (uint32_t i = 0; i < open->n; i++)
        if (open->b[i]->peer == p) {
            if (open->b[i]->count < RELAY_CORE_BATCH_MAX) return open->b[i];
            batch_send(r, open->b[i], out); /* full: on its way, and a new one for the rest */
            open->b[i] = open->b[--open->n];
            break;
        }
    core_batch_t *b = batch_take(r, p);
    if (b) open->b[open->n++] = b;
    return b;
}

/* Where this tick's scan starts: the first record not looked at yet, or the lowest `next` of
 * the cells not resting, if lower (a cell that failed goes back to its first record). */
static uint64_t scan_from(const relay_core_t *r) {
    uint64_t from = r->scanned;
    for (uint32_t i = 0; i < r->peer_count; i++) {
        const core_peer_t *p = &r->peers[i];
        if (p->backoff_until <= r->tick && p->next < from) from = p->next;
    }
    return from;
}

/* Everything is to be sent again: a new term of leadership, or records lost track of. */
static void relay_restart(relay_core_t *r) {
    r->scanned = 0;
    for (uint32_t i = 0; i < r->peer_count; i++) {
        r->peers[i].next = 0;
        r->peers[i].backoff_until = 0;
    }
}

static void relay_send(relay_core_t *r, const pay_t *pay, tick_out_t *out) {
    uint32_t n = pay_outbox_pending(pay, scan_from(r), r->scan, RELAY_CORE_SCAN_MAX);
    open_set_t open = {.n = 0};
    for (uint32_t i = 0; i < n; i++) {
        const pay_outbox_item_t *it = &r->scan[i];
        cp_assert(it->peer_cell != r->cfg.cell_id); /* pay.c: a payment of an order is remote */
        core_peer_t *p = peer_of(r, it->peer_cell);
        if (p && it->seq >= p->next && p->backoff_until <= r->tick) {
            core_batch_t *b = batch_for(r, &open, p, out);
            if (!b) break; /* every batch is out: the rest waits for the next tick */
            batch_add(r, b, it);
            p->next = it->seq + 1;
        }
        if (it->seq + 1 > r->scanned) r->scanned = it->seq + 1;
    }
    for (uint32_t i = 0; i < open.n; i++) batch_send(r, open.b[i], out);
}

/* ---- Recovery of refund activities whose gateway died ---- */

static bool recovery_busy(const relay_core_t *r) {
    for (uint32_t i = 0; i < RELAY_CORE_BATCHES; i++)
        if (r->batches[i].state != BATCH_FREE && r->batches[i].recovery) return true;
    return false;
}

/* Every RELAY_CORE_RECOVER_TICKS, one batch deciding the stale activities cancelled. One at a
 * time: a second would only decide the same activities again. */
static void recover(relay_core_t *r, const pay_t *pay, tick_out_t *out) {
    if (r->tick < r->recover_at || recovery_busy(r)) return;
    r->recover_at = r->tick + RELAY_CORE_RECOVER_TICKS;
    uint32_t n =
        pay_activities_stale(pay, r->now, r->cfg.recover_after_ns, r->stale, RELAY_CORE_BATCH_MAX);
    if (n == 0) return;
    core_batch_t *b = batch_take(r, NULL);
    if (!b) return; /* every batch is out: at the next look */
    b->recovery = true;
    for (uint32_t i = 0; i < n; i++) /* R's upper half is its buyer (pay.h) */
        b->items[i] = (pay_request_t){.kind = PAY_KIND_DECIDE,
                                      .payment_id = r->stale[i],
                                      .uid = (uint64_t)(r->stale[i] >> 64),
                                      .code = PAY_ERR_CANCELLED};
    b->count = n;
    b->first_seq = 0;
    batch_send(r, b, out);
}

/* ---- Resolving orders left reserved (their gateway died after the order) ---- */

static bool resolver_busy(const relay_core_t *r) {
    for (uint32_t i = 0; i < RELAY_CORE_BATCHES; i++)
        if (r->batches[i].state != BATCH_FREE && r->batches[i].resolve) return true;
    return false;
}

/* The open resolve batch of cell in this look, or a new one (at most half of the batches:
 * the credits must keep going); NULL when none is to be had. */
static core_batch_t *resolve_batch_for(relay_core_t *r, core_batch_t **open, uint32_t *n_open,
                                       uint64_t cell) {
    for (uint32_t i = 0; i < *n_open; i++)
        if (open[i]->target == cell) return open[i];
    if (*n_open == RELAY_CORE_RESOLVE_BATCHES) return NULL;
    core_batch_t *b = batch_take(r, NULL);
    if (!b) return NULL;
    b->resolve = true;
    b->target = cell;
    b->first_seq = 0;
    open[(*n_open)++] = b;
    return b;
}

/* Every RELAY_CORE_RECOVER_TICKS, the orders reserved for longer than recover_after_ns go as
 * questions to their buyers' cells, one batch per cell. One look at a time: a second would
 * only ask the same again. Orders whose cell finds no batch wait for the next look. */
static void resolve(relay_core_t *r, const pay_t *pay, tick_out_t *out) {
    if (r->tick < r->resolve_at || resolver_busy(r)) return;
    r->resolve_at = r->tick + RELAY_CORE_RECOVER_TICKS;
    uint32_t n = pay_orders_stale(pay, r->now, r->cfg.recover_after_ns, r->resolve_after, r->orders,
                                  RELAY_CORE_BATCH_MAX);
    /* A short look reached the newest stale order: the next starts from the oldest again. */
    r->resolve_after = n == RELAY_CORE_BATCH_MAX ? r->orders[n - 1].payment_id : 0;
    core_batch_t *open[RELAY_CORE_RESOLVE_BATCHES];
    uint32_t n_open = 0;
    for (uint32_t i = 0; i < n; i++) {
        const pay_order_stale_t *o = &r->orders[i];
        cp_assert(o->peer_cell != 0 && o->peer_cell != r->cfg.cell_id); /* pay.c */
        core_batch_t *b = resolve_batch_for(r, open, &n_open, o->peer_cell);
        if (!b) continue;
        b->items[b->count++] = (pay_request_t){.kind = PAY_KIND_RESOLVE,
                                               .payment_id = o->payment_id,
                                               .actor = o->merchant,
                                               .uid = o->buyer,
                                               .body_hash = o->body_hash,
                                               .peer_cell = (uint32_t)r->cfg.cell_id};
    }
    for (uint32_t i = 0; i < n_open; i++) batch_send(r, open[i], out);
}

/* Is any cell in back-off after a failure (its records go again when it ends)? */
static bool peers_resting(const relay_core_t *r) {
    for (uint32_t i = 0; i < r->peer_count; i++)
        if (r->peers[i].backoff_until > r->tick) return true;
    return false;
}

uint32_t relay_core_tick(relay_core_t *r, uint64_t tick, uint64_t now, bool leader,
                         const pay_t *pay, relay_msg_t *msgs, uint32_t max) {
    cp_assert(max >= RELAY_CORE_BATCHES && tick >= r->tick);
    tick_out_t out = {.msgs = msgs, .n = 0};
    r->stuck = false;
    r->tick = tick;
    r->now = now;
    if (leader && !r->leader) relay_restart(r); /* a new term of leadership */
    r->leader = leader;
    batches_due(r, &out); /* as leader or not: they were made while leading */
    if (!leader) return out.n;
    if (pay) recover(r, pay, &out); /* before the credits: it needs one batch at most */
    if (pay) resolve(r, pay, &out);
    if (!pay || pay_outbox_backlog(pay) == 0) {
        r->idle_ticks = 0;
        return out.n;
    }
    /* A backlog and nothing in flight for long: a record was lost track of (an answer that
     * never came back to a closed client, say). Sending everything again is always safe. */
    r->idle_ticks = records_busy(r) ? 0 : r->idle_ticks + 1;
    if (r->idle_ticks >= RELAY_CORE_RESCAN_TICKS) {
        r->idle_ticks = 0;
        relay_restart(r);
    }
    relay_send(r, pay, &out);
    r->stuck = relay_core_busy(r) == 0 && !peers_resting(r);
    return out.n;
}

bool relay_core_stuck(const relay_core_t *r) {
    return r->stuck;
}

/* ---- Answers ---- */

static void acks_answered(relay_core_t *r, core_batch_t *b, int32_t status, const pay_object_t *o,
                          uint32_t n) {
    bool ok = status == 0 && n == b->count && fault_draw(r) != FAULT_LOSE_ANSWER;
    for (uint32_t i = 0; ok && i < b->count; i++) ok = o[i].code == PAY_OK;
    if (ok)
        r->stats.acked += b->count;
    else /* delivered again later, and acknowledged then */
        peer_failed(r, b->peer, b->first_seq, status, status ? NULL : "ack refused");
    b->state = BATCH_FREE;
}

/* The merchant's cell answered: each credited record is acknowledged in this cell, in the
 * same batch's memory. Returns whether there is anything to acknowledge. */
static bool credits_answered(relay_core_t *r, core_batch_t *b, int32_t status,
                             const pay_object_t *o, uint32_t n) {
    core_peer_t *p = b->peer;
    const char *why = NULL;
    if (b->fault == FAULT_LOSE_ANSWER && status == 0) {
        status = -1;
        why = "answer lost on purpose (--relay-faults)";
    }
    if (status != 0 || n != b->count) {
        peer_failed(r, p, b->first_seq, status, status ? why : "short answer");
        return false;
    }
    uint32_t acks = 0;
    for (uint32_t i = 0; i < b->count; i++) {
        if (o[i].code != PAY_CREATED && o[i].code != PAY_OK) {
            peer_failed(r, p, b->seqs[i], 0, "a credit was refused (see the merchant's cell)");
            continue;
        }
        const pay_request_t *c = &b->items[i];
        b->seqs[acks] = b->seqs[i];
        b->items[acks++] =
            (pay_request_t){.kind = PAY_KIND_ACK, .payment_id = c->payment_id, .uid = c->uid};
    }
    r->stats.delivered += acks;
    if (p->failing && acks == b->count) {
        core_log(r, "delivering again to", p->id, 0, NULL);
        p->failing = false;
    }
    b->count = acks;
    return acks > 0;
}

/* The own cell answered recovery's decides: an item answered with its activity's kind (REFUND
 * or TRANSFER) is decided (by this batch, or by a decision before it, which wins); an item
 * answered kind DECIDE failed (e.g. full) and waits for the next look. */
static void decides_answered(relay_core_t *r, core_batch_t *b, int32_t status,
                             const pay_object_t *o, uint32_t n) {
    if (b->fault == FAULT_LOSE_ANSWER && status == 0)
        return recover_failed(r, -1, "answer lost on purpose (--relay-faults)");
    if (status != 0 || n != b->count)
        return recover_failed(r, status, status ? NULL : "short answer");
    for (uint32_t i = 0; i < n; i++) r->stats.recovered += o[i].kind != PAY_KIND_DECIDE;
    if (r->recover_failing)
        core_log(r, "recovering refunds again through", r->cfg.cell_id, 0, NULL);
    r->recover_failing = false;
}

/* The refusals a buyer's cell answers a resolve with that a release takes (pay.h). */
static bool release_code(uint8_t code) {
    return code == PAY_ERR_NOT_FOUND || code == PAY_ERR_INSUFFICIENT_FUNDS ||
           code == PAY_ERR_CURRENCY_MISMATCH || code == PAY_ERR_OVERFLOW ||
           code == PAY_ERR_CANCELLED;
}

/* The buyer's cell answered: each order it did not pay (its refusal, or its tombstone:
 * cancelled) is released in the own cell, in the same batch's memory. A paid one (kind
 * PAYMENT, ok) waits for its credit; a resolve that failed there (kind RESOLVE) is asked
 * again at the next look. Returns whether there is anything to release. */
static bool resolves_answered(relay_core_t *r, core_batch_t *b, int32_t status,
                              const pay_object_t *o, uint32_t n) {
    if (b->fault == FAULT_LOSE_ANSWER && status == 0) {
        resolve_failed(r, b->target, -1, "answer lost on purpose (--relay-faults)");
        return false;
    }
    if (status != 0 || n != b->count) {
        resolve_failed(r, b->target, status, status ? NULL : "short answer");
        return false;
    }
    uint32_t releases = 0;
    for (uint32_t i = 0; i < b->count; i++) {
        if (o[i].kind != PAY_KIND_PAYMENT || !release_code(o[i].code)) continue;
        const pay_request_t *q = &b->items[i];
        b->items[releases++] = (pay_request_t){.kind = PAY_KIND_RELEASE,
                                               .payment_id = q->payment_id,
                                               .actor = q->actor,
                                               .code = o[i].code};
    }
    b->count = releases;
    return releases > 0;
}

/* The own cell answered the releases: ok is an order given back (now, or before). */
static void releases_answered(relay_core_t *r, core_batch_t *b, int32_t status,
                              const pay_object_t *o, uint32_t n) {
    if (status != 0 || n != b->count)
        return resolve_failed(r, r->cfg.cell_id, status, status ? NULL : "short answer");
    for (uint32_t i = 0; i < n; i++) r->stats.resolved += o[i].code == PAY_OK;
    if (r->resolve_failing) core_log(r, "resolving orders again through", b->target, 0, NULL);
    r->resolve_failing = false;
}

bool relay_core_answer(relay_core_t *r, uint32_t handle, int32_t status,
                       const pay_object_t *objects, uint32_t n, relay_msg_t *follow_up) {
    core_batch_t *b = batch_of(r, handle);
    if (b->state == BATCH_ACKS) {
        acks_answered(r, b, status, objects, n);
        return false;
    }
    if (b->echo) { /* the duplicate's answer: the original's counts */
        b->state = BATCH_FREE;
        return false;
    }
    if (b->state == BATCH_DECIDES) {
        decides_answered(r, b, status, objects, n);
        b->state = BATCH_FREE;
        return false;
    }
    if (b->state == BATCH_RELEASES) {
        releases_answered(r, b, status, objects, n);
        b->state = BATCH_FREE;
        return false;
    }
    if (b->state == BATCH_RESOLVES) {
        if (!resolves_answered(r, b, status, objects, n)) {
            b->state = BATCH_FREE;
            return false;
        }
        b->state = BATCH_RELEASES;
        *follow_up = batch_msg(r, b, r->cfg.cell_id);
        return true;
    }
    if (!credits_answered(r, b, status, objects, n)) {
        b->state = BATCH_FREE;
        return false;
    }
    b->state = BATCH_ACKS;
    *follow_up = batch_msg(r, b, r->cfg.cell_id);
    return true;
}

void relay_core_unsent(relay_core_t *r, uint32_t handle, const char *why) {
    core_batch_t *b = batch_of(r, handle);
    if (b->state == BATCH_RELEASES)
        resolve_failed(r, r->cfg.cell_id, 0, "cannot reach its own cell to release");
    else if (b->state == BATCH_ACKS)
        peer_failed(r, b->peer, b->first_seq, 0, "cannot reach its own cell to acknowledge");
    else if (!b->echo)
        batch_failed(r, b, 0, why);
    b->state = BATCH_FREE;
}

/* The cross-cell simulator of xcell_sim.h. Test infrastructure, but in the library so that
 * `cellpay sim --cells N` replays a seed exactly as the tests ran it. It allocates freely (per
 * message too): it is not the relay's hot path, the core it drives is. */
#include "txn/xcell_sim.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/prng.h"
#include "cell/cell.h"
#include "gateway/xtcc.h"
#include "txn/relay_core.h"

#define XC_MERCHANTS 2u /* per cell */
#define XC_BUYERS 5u    /* per cell: 0, 1 rich, 2 poor, 3 no account, 4 no account in CNY */
#define XC_CLIENTS 6u
#define XC_TRACE 64u
#define XC_T0 1000000000000ull  /* the cells' clock at tick 0, ns */
#define XC_TICK_NS 1000000ull   /* 1 ms a tick */
#define XC_RICH 1000000000u     /* a rich buyer's top-up, minor units */
#define XC_POOR 300u            /* a poor buyer's: runs out after a few payments */
#define XC_AMOUNT_MAX 100u      /* a payment's amount: 1 ..= this */
#define XC_CLIENT_DEADLINE 60u  /* ticks a client waits for an answer */
#define XC_RELAY_DEADLINE 80u   /* ticks the relay's client library waits for one */
#define XC_LATE_MAX 300u        /* a late message arrives up to this many ticks later */
#define XC_CALM_TICKS 6000u     /* everything settles within this, after the faults stop */
#define XC_TIMEOUT (-2)         /* the status of a request not answered by its deadline */
#define XC_TRANSFERS_MAX 16384u /* per cell: orders, debits, credits and top-ups of a run */
#define XC_STEPS_MAX 10000u     /* so that a run fits those (about 1700 orders in all) */
#define XC_OWNER_CLIENT 0x80000000u
/* Refunds: a refund activity trying this long (sim time) is recovered by its cell's relay.
 * Longer than a client's flow without faults, shorter than the calm period. */
#define XC_RECOVER_AFTER_TICKS 400u
#define XC_REFUND_IN 4u   /* one begun payment in this many is a refund of the last paid one */
#define XC_DIE_IN 6u      /* a gateway dies between two steps of a refund with 1 in this */
#define XC_ABANDON_IN 12u /* a gateway dies right after an order with 1 in this, for good */
#define XC_XFER_IN 4u     /* one begun flow in this many is a user-to-user transfer */
#define XC_LOCAL_IN 6u    /* one transfer in this many stays within the sender's cell */

typedef struct xc_entry {
    uint64_t ts;
    uint32_t first, count; /* its items in the cell's item log */
} xc_entry_t;

/* The relay's client library: the request each batch waits for. */
typedef struct xc_pending {
    bool busy;
    uint64_t req, deadline;
} xc_pending_t;

/* What one user's account must be, as the entries applied so far moved it (check_users):
 * its posted sides, what it holds for transfers trying (debits pending) and what is held for
 * it by Tries not yet decided there (credits pending). */
typedef struct xc_user {
    u128 cr, dr, held, pend_in;
} xc_user_t;

typedef struct xc_cell {
    cell_t *cell;
    uint64_t id;
    cell_config_t config;
    xc_entry_t *log;
    uint32_t log_n, log_cap;
    pay_request_t *items;
    uint32_t items_n, items_cap;
    relay_core_t *relay;
    uint32_t gen;                    /* relay cores made so far: answers name theirs */
    uint64_t down_until;             /* crashed: requests to it are lost before this */
    uint64_t flap_until;             /* its relay does not lead before this */
    bool applied;                    /* applied an entry in this step */
    uint64_t debited, acked;         /* cross-cell payments debited here, and acknowledged */
    uint64_t decided, decided_acked; /* refund activities decided here, and acknowledged */
    xc_pending_t pending[RELAY_CORE_BATCHES];
    xc_user_t users[XC_BUYERS]; /* by buyer index: each has at most one account */
} xc_cell_t;

typedef struct xc_msg {
    uint64_t at, seq; /* the tick it arrives at; ties in sending order */
    uint64_t req;
    uint32_t owner; /* XC_OWNER_CLIENT | client, or the relay's cell */
    uint32_t gen, batch;
    uint32_t to; /* a request's cell */
    bool answer;
    int32_t status;
    uint32_t count;
    void *data; /* count pay_request_t, or pay_object_t for an answer */
} xc_msg_t;

enum { DEC_NONE, DEC_CONFIRM, DEC_CANCEL };

/* What the simulator knows of one payment id (drawn by an order), or of one refund activity
 * R (drawn by the buyer's cell; `refund` set, `of` its payment): the two never share an id,
 * the cell that drew it differs. A transfer T (`transfer` set) is kept as an activity too,
 * with the sender as buyer, its cell bcell (the initiator), the recipient as merchant and its
 * cell mcell; a transfer within one cell (`local`) is recorded confirmed when it is made. */
typedef struct xc_pay {
    u128 pid, amount;
    uint64_t buyer, merchant;
    uint32_t bcell, mcell;
    bool debited, has_first, released, acked, client_paid, client_refused;
    bool tombstoned; /* the buyer's cell answered a resolve of it cancelled: never to be paid */
    uint32_t credits;
    bool refund, transfer, local;
    uint32_t currency; /* a transfer's */
    u128 of;
    uint8_t decision;                  /* DEC_*: the first decision in the buyer's cell */
    uint32_t tries, confirms, cancels; /* created in the merchant's cell */
    pay_object_t first;                /* the buyer's cell's first stored answer */
    pay_object_t order_first;          /* the merchant's cell's answer that drew the id */
} xc_pay_t;

enum {
    CL_IDLE,
    CL_ORDER,
    CL_XPAY,
    CL_RELEASE,
    CL_REFUND,
    CL_TRY,
    CL_DECIDE,
    CL_XFER,
    CL_XTRY,
    CL_XDECIDE
};
enum { OUT_NONE, OUT_PAID, OUT_REFUSED };

typedef struct xc_client {
    uint8_t state;
    bool waiting, dup_try, repeat;
    uint64_t req, deadline, wake;
    uint32_t mcell, bcell, serial;
    uint64_t merchant, buyer;
    u128 amount, key, body_hash, pid;
    char otn[PAY_TEXT_MAX];
    uint8_t refusal;
    uint8_t outcome, outcome_code; /* of the first run of this payment */
    u128 outcome_pid;
    bool has_paid; /* the last paid order: its merchant and out_trade_no, and what a refund
                    * of it names */
    uint64_t paid_merchant, paid_buyer;
    uint32_t paid_mcell, paid_bcell;
    u128 paid_pid, paid_amount;
    char paid_otn[PAY_TEXT_MAX];
    u128 rid; /* a refund: its activity R, once the buyer's cell answered trying */
    /* A transfer: buyer and bcell are the sender and its cell; xreq is the Try or the decide
     * as xtcc.c built it from the answer before. */
    uint64_t recipient;
    uint32_t rcell, cur;
    pay_request_t xreq;
} xc_client_t;

struct xc_sim {
    xc_sim_config_t cfg;
    prng_t rng;
    uint64_t now;
    bool calm;
    uint32_t loss_ppm, dup_ppm, late_ppm, crash_ppm, flap_ppm, unsent_ppm, relay_fault_pct;
    xc_cell_t cells[XC_SIM_CELLS_MAX];
    xc_client_t clients[XC_CLIENTS];
    xc_msg_t *net;
    uint32_t net_n, net_cap;
    uint64_t msg_seq, req_seq;
    xc_pay_t *pays;
    uint32_t pays_n, pays_cap;
    uint32_t *pay_ix; /* open addressing: index + 1, 0 empty */
    uint32_t pay_ix_cap;
    unsigned char *body;   /* scratch: one entry */
    pay_object_t *answers; /* scratch: its answers */
    uint32_t answers_n;
    bool failed;
    char failure[512];
    char trace[XC_TRACE][200];
    uint32_t trace_n;
    xc_sim_stats_t st;
};

__attribute__((format(printf, 2, 3))) static void tracef(xc_sim_t *s, const char *fmt, ...) {
    char *line = s->trace[s->trace_n++ % XC_TRACE];
    int k = snprintf(line, 200, "t%" PRIu64 " ", s->now);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + k, (size_t)(200 - k), fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 2, 3))) static void fail(xc_sim_t *s, const char *fmt, ...) {
    if (s->failed) return;
    s->failed = true;
    int k = snprintf(s->failure, sizeof s->failure, "t%" PRIu64 ": ", s->now);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->failure + k, sizeof s->failure - (size_t)k, fmt, ap);
    va_end(ap);
}

static uint64_t lo64(u128 v) {
    return (uint64_t)v;
}

/* ---- Users: uid 1000 k + 10 c + 7 is in zone c, which cell c owns (zone % cells) ---- */

static uint64_t uid_of(uint32_t cell, uint32_t k) {
    return 1000ull * k + 10ull * cell + 7;
}
static uint64_t merchant_uid(uint32_t cell, uint32_t j) {
    return uid_of(cell, 1 + j);
}
static uint64_t buyer_uid(uint32_t cell, uint32_t j) {
    return uid_of(cell, 10 + j);
}
static uint32_t cell_of_uid(const xc_sim_t *s, uint64_t uid) {
    return (uint32_t)((uid / 10) % 100) % s->cfg.cells;
}
static uint32_t CNY(void) {
    return pay_currency_pack("CNY");
}
static uint32_t USD(void) {
    return pay_currency_pack("USD");
}
/* The one currency buyer j has an account in (0: none). */
static uint32_t buyer_currency(uint32_t j) {
    return j == 3 ? 0 : j == 4 ? USD() : CNY();
}
/* What buyer j was topped up with, in its currency. */
static u128 buyer_funds(uint32_t j) {
    return j == 3 ? 0 : j == 2 ? XC_POOR : XC_RICH;
}
/* A buyer's index, or XC_BUYERS for any other uid. */
static uint32_t buyer_index(uint64_t uid) {
    uint64_t j = uid / 1000;
    return uid % 10 == 7 && j >= 10 && j < 10 + XC_BUYERS ? (uint32_t)(j - 10) : XC_BUYERS;
}
/* Does this uid have an account in cur? */
static bool has_account(uint64_t uid, uint32_t cur) {
    uint32_t j = buyer_index(uid);
    return j < XC_BUYERS && buyer_currency(j) == cur;
}

/* The model of a buyer's account (only buyers move money by transfers). */
static xc_user_t *user_model(xc_sim_t *s, uint64_t uid) {
    uint32_t j = buyer_index(uid);
    cp_assert(j < XC_BUYERS);
    return &s->cells[cell_of_uid(s, uid)].users[j];
}

/* ---- Payment records ---- */

static uint32_t pay_slot(const xc_sim_t *s, u128 pid) {
    uint64_t h = (lo64(pid) ^ (uint64_t)(pid >> 64)) * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(h >> 32) & (s->pay_ix_cap - 1);
}

static xc_pay_t *pay_find(xc_sim_t *s, u128 pid) {
    for (uint32_t i = pay_slot(s, pid);; i = (i + 1) & (s->pay_ix_cap - 1)) {
        if (s->pay_ix[i] == 0) return NULL;
        if (s->pays[s->pay_ix[i] - 1].pid == pid) return &s->pays[s->pay_ix[i] - 1];
    }
}

static void pay_index(xc_sim_t *s, uint32_t row) {
    uint32_t i = pay_slot(s, s->pays[row].pid);
    while (s->pay_ix[i]) i = (i + 1) & (s->pay_ix_cap - 1);
    s->pay_ix[i] = row + 1;
}

static xc_pay_t *pay_add(xc_sim_t *s, const xc_pay_t *p) {
    if (s->pays_n == s->pays_cap) {
        s->pays_cap = s->pays_cap ? s->pays_cap * 2 : 1024;
        s->pays = realloc(s->pays, s->pays_cap * sizeof *s->pays);
        cp_assert(s->pays);
    }
    if ((s->pays_n + 1) * 2 > s->pay_ix_cap) {
        free(s->pay_ix);
        s->pay_ix_cap *= 2;
        s->pay_ix = calloc(s->pay_ix_cap, sizeof *s->pay_ix);
        cp_assert(s->pay_ix);
        for (uint32_t r = 0; r < s->pays_n; r++) pay_index(s, r);
    }
    s->pays[s->pays_n] = *p;
    pay_index(s, s->pays_n);
    return &s->pays[s->pays_n++];
}

/* ---- Cells: a log of committed entries and the cell_t they were applied to ---- */

static void log_append(xc_cell_t *c, uint64_t ts, const pay_request_t *items, uint32_t n) {
    if (c->log_n == c->log_cap) {
        c->log_cap = c->log_cap ? c->log_cap * 2 : 1024;
        c->log = realloc(c->log, c->log_cap * sizeof *c->log);
        cp_assert(c->log);
    }
    while (c->items_n + n > c->items_cap) {
        c->items_cap = c->items_cap ? c->items_cap * 2 : 4096;
        c->items = realloc(c->items, c->items_cap * sizeof *c->items);
        cp_assert(c->items);
    }
    c->log[c->log_n++] = (xc_entry_t){.ts = ts, .first = c->items_n, .count = n};
    memcpy(c->items + c->items_n, items, n * sizeof *items);
    c->items_n += n;
}

static void on_reply(void *ctx, const cell_command_t *cmd, uint32_t status, uint64_t timestamp,
                     const void *reply, uint32_t reply_size) {
    (void)cmd, (void)timestamp;
    xc_sim_t *s = ctx;
    cp_assert(status == PROTO_STATUS_OK && reply_size % sizeof(pay_object_t) == 0);
    s->answers_n = reply_size / (uint32_t)sizeof(pay_object_t);
    memcpy(s->answers, reply, reply_size);
}

/* One entry of one PROTO_OP_PAY command into cell (answers in s->answers). */
static void cell_apply(xc_sim_t *s, cell_t *cell, uint64_t ts, const pay_request_t *items,
                       uint32_t n) {
    cp_assert(n >= 1 && n <= RELAY_CORE_BATCH_MAX);
    cell_command_t cmd = {.size = n * (uint32_t)sizeof *items, .operation = PROTO_OP_PAY};
    memcpy(s->body, &cmd, sizeof cmd);
    memcpy(s->body + sizeof cmd, items, cmd.size);
    uint32_t size = (uint32_t)sizeof cmd + cmd.size;
    cp_assert(cell_entry_check(s->body, size) == NULL);
    s->answers_n = 0;
    cell_apply_entry(cell, ts, s->body, size, on_reply, s);
    cp_assert(s->answers_n == n);
}

static uint64_t entry_ts(const xc_sim_t *s) {
    return XC_T0 + s->now * XC_TICK_NS;
}

/* Applies items as a committed entry of cell i: logged, then applied. */
static void commit(xc_sim_t *s, uint32_t i, const pay_request_t *items, uint32_t n) {
    xc_cell_t *c = &s->cells[i];
    log_append(c, entry_ts(s), items, n);
    cell_apply(s, c->cell, entry_ts(s), items, n);
    c->applied = true;
    s->st.entries++;
}

/* A crash or a new leader: the cell as its log rebuilds it must be the cell it was. */
static void cell_rebuild(xc_sim_t *s, uint32_t i) {
    xc_cell_t *c = &s->cells[i];
    cell_t *fresh = cell_create(&c->config);
    cp_assert(fresh);
    for (uint32_t e = 0; e < c->log_n; e++)
        cell_apply(s, fresh, c->log[e].ts, c->items + c->log[e].first, c->log[e].count);
    if (cell_state_hash(fresh) != cell_state_hash(c->cell))
        fail(s, "cell %" PRIu64 ": its log replayed gives another state hash", c->id);
    cell_destroy(c->cell);
    c->cell = fresh;
}

static void relay_new(xc_sim_t *s, uint32_t i) {
    xc_cell_t *c = &s->cells[i];
    if (c->relay) { /* its stats go with it */
        relay_stats_t rs = relay_core_stats(c->relay);
        s->st.relay_faults += rs.faults;
        s->st.relay_failures += rs.failures;
        s->st.recovered += rs.recovered;
        s->st.resolved += rs.resolved;
    }
    relay_core_destroy(c->relay);
    c->gen++;
    c->relay = relay_core_create(
        &(relay_core_config_t){.cell_id = c->id,
                               .fault_pct = s->relay_fault_pct,
                               .fault_seed = prng_next(&s->rng),
                               .recover_after_ns = XC_RECOVER_AFTER_TICKS * XC_TICK_NS});
    cp_assert(c->relay);
    memset(c->pending, 0, sizeof c->pending);
}

static void cells_setup(xc_sim_t *s) {
    for (uint32_t i = 0; i < s->cfg.cells; i++) {
        xc_cell_t *c = &s->cells[i];
        c->id = i + 1;
        c->config = (cell_config_t){
            .ledger = {.accounts_max = 256, .transfers_max = XC_TRANSFERS_MAX},
            .pay = {.cell_id = c->id, .outbox_max = prng_below(&s->rng, 4) == 0 ? 8 : 0}};
        for (uint32_t z = 0; z < CP_ZONES; z++)
            if (z % s->cfg.cells == i) cp_zones_add(&c->config.zones, z);
        c->cell = cell_create(&c->config);
        cp_assert(c->cell);
        relay_new(s, i);
    }
}

/* Merchants, buyers and their money, as the operator makes them. */
static void accounts_setup(xc_sim_t *s) {
    pay_request_t r[XC_MERCHANTS + 2 * XC_BUYERS];
    for (uint32_t i = 0; i < s->cfg.cells; i++) {
        uint32_t n = 0;
        for (uint32_t j = 0; j < XC_MERCHANTS; j++)
            r[n++] = (pay_request_t){.kind = PAY_KIND_MERCHANT, .uid = merchant_uid(i, j)};
        for (uint32_t j = 0; j < XC_BUYERS; j++) {
            if (j == 3) continue; /* no account: the buyer's cell answers not_found */
            uint32_t cur = buyer_currency(j);
            r[n++] =
                (pay_request_t){.kind = PAY_KIND_USER, .uid = buyer_uid(i, j), .currency = cur};
            r[n++] = (pay_request_t){.kind = PAY_KIND_TOPUP,
                                     .uid = buyer_uid(i, j),
                                     .currency = cur,
                                     .amount = buyer_funds(j)};
        }
        commit(s, i, r, n);
        for (uint32_t k = 0; k < n; k++)
            if (s->answers[k].code != PAY_CREATED) fail(s, "setup of cell %u refused", i + 1);
        for (uint32_t j = 0; j < XC_BUYERS; j++) s->cells[i].users[j].cr = buyer_funds(j);
    }
}

/* How hostile this seed's world is, drawn once. */
static void fault_level(xc_sim_t *s) {
    static const uint32_t loss[] = {0, 20000, 80000}, dup[] = {0, 30000}, relay[] = {0, 5, 20};
    s->loss_ppm = loss[prng_below(&s->rng, 3)];
    s->dup_ppm = dup[prng_below(&s->rng, 2)];
    s->late_ppm = prng_below(&s->rng, 2) ? 50000 : 5000;
    s->crash_ppm = prng_below(&s->rng, 2) ? 2000 : 500;
    s->flap_ppm = 3000;
    s->unsent_ppm = 10000;
    s->relay_fault_pct = relay[prng_below(&s->rng, 3)];
}

xc_sim_t *xc_sim_create(const xc_sim_config_t *cfg) {
    cp_assert(cfg->cells >= 2 && cfg->cells <= XC_SIM_CELLS_MAX);
    xc_sim_t *s = calloc(1, sizeof *s);
    cp_assert(s);
    s->cfg = *cfg;
    s->rng.state = cfg->seed ^ 0x78636c6c73696dull; /* "xcllsim": not the Raft sim's stream */
    s->body = malloc(sizeof(cell_command_t) + RELAY_CORE_BATCH_MAX * sizeof(pay_request_t));
    s->answers = malloc(RELAY_CORE_BATCH_MAX * sizeof *s->answers);
    s->pay_ix_cap = 4096;
    s->pay_ix = calloc(s->pay_ix_cap, sizeof *s->pay_ix);
    cp_assert(s->body && s->answers && s->pay_ix);
    fault_level(s);
    cells_setup(s);
    accounts_setup(s);
    tracef(s, "%u cells, loss %u ppm, dup %u ppm, late %u ppm, crash %u ppm, relay faults %u%%",
           cfg->cells, s->loss_ppm, s->dup_ppm, s->late_ppm, s->crash_ppm, s->relay_fault_pct);
    return s;
}

void xc_sim_destroy(xc_sim_t *s) {
    if (!s) return;
    for (uint32_t i = 0; i < s->cfg.cells; i++) {
        cell_destroy(s->cells[i].cell);
        relay_core_destroy(s->cells[i].relay);
        free(s->cells[i].log);
        free(s->cells[i].items);
    }
    for (uint32_t k = 0; k < s->net_n; k++) free(s->net[k].data);
    free(s->net);
    free(s->pays);
    free(s->pay_ix);
    free(s->body);
    free(s->answers);
    free(s);
}

const char *xc_sim_failure(const xc_sim_t *s) {
    return s->failed ? s->failure : NULL;
}

void xc_sim_print_trace(const xc_sim_t *s, FILE *f) {
    uint32_t n = s->trace_n < XC_TRACE ? s->trace_n : XC_TRACE;
    for (uint32_t k = s->trace_n - n; k < s->trace_n; k++)
        fprintf(f, "%s\n", s->trace[k % XC_TRACE]);
    if (s->failed) fprintf(f, "VIOLATION: %s\n", s->failure);
}

void xc_sim_stats(const xc_sim_t *s, xc_sim_stats_t *out) {
    *out = s->st;
    for (uint32_t i = 0; i < s->cfg.cells; i++) {
        relay_stats_t rs = relay_core_stats(s->cells[i].relay);
        out->relay_faults += rs.faults;
        out->relay_failures += rs.failures;
        out->recovered += rs.recovered;
        out->resolved += rs.resolved;
    }
}

/* ---- The network ---- */

static bool chance(xc_sim_t *s, uint32_t ppm) {
    return !s->calm && ppm && prng_chance_ppm(&s->rng, ppm);
}

static uint64_t delay(xc_sim_t *s) {
    if (chance(s, s->late_ppm)) return 1 + prng_below(&s->rng, XC_LATE_MAX);
    return 1 + prng_below(&s->rng, 3);
}

/* Puts m on the network (its data copied) to arrive at `at`. */
static void net_put(xc_sim_t *s, const xc_msg_t *m, size_t item_size, uint64_t at) {
    if (s->net_n == s->net_cap) {
        s->net_cap = s->net_cap ? s->net_cap * 2 : 256;
        s->net = realloc(s->net, s->net_cap * sizeof *s->net);
        cp_assert(s->net);
    }
    xc_msg_t *q = &s->net[s->net_n++];
    *q = *m;
    q->at = at;
    q->seq = ++s->msg_seq;
    q->data = malloc(m->count * item_size);
    cp_assert(q->data);
    memcpy(q->data, m->data, m->count * item_size);
}

/* Puts m on the network, unless lost; sometimes twice. */
static void net_send(xc_sim_t *s, const xc_msg_t *m, size_t item_size) {
    if (chance(s, s->loss_ppm)) {
        s->st.lost++;
        return;
    }
    uint32_t copies = chance(s, s->dup_ppm) ? 2 : 1;
    s->st.duplicated += copies - 1;
    for (uint32_t k = 0; k < copies; k++) net_put(s, m, item_size, s->now + delay(s));
}

/* A request of a relay or a client to cell `to`; returns its id (the answer carries it). */
static uint64_t request(xc_sim_t *s, uint32_t owner, uint32_t gen, uint32_t batch, uint32_t to,
                        const pay_request_t *items, uint32_t n) {
    xc_msg_t m = {.req = ++s->req_seq,
                  .owner = owner,
                  .gen = gen,
                  .batch = batch,
                  .to = to,
                  .count = n,
                  .data = (void *)items};
    net_send(s, &m, sizeof *items);
    return m.req;
}

/* ---- Checks as entries apply ---- */

static bool code_stored(uint8_t code) {
    return code != PAY_ERR_WRONG_CELL && code != PAY_ERR_FULL && code != PAY_ERR_INVALID &&
           code != PAY_ERR_CROSS_CELL;
}

/* As the gateway's: cancelled is the tombstone of an order its merchant's cell resolved. */
static bool refusal_final(uint8_t code) {
    return code == PAY_ERR_NOT_FOUND || code == PAY_ERR_INSUFFICIENT_FUNDS ||
           code == PAY_ERR_CURRENCY_MISMATCH || code == PAY_ERR_OVERFLOW ||
           code == PAY_ERR_CANCELLED;
}

/* Two answers of one payment are equal but for the replayed flag. */
static bool answers_equal(const pay_object_t *a, const pay_object_t *b) {
    pay_object_t x = *a, y = *b;
    x.replayed = y.replayed = 0;
    return memcmp(&x, &y, sizeof x) == 0;
}

static void seen_order(xc_sim_t *s, uint32_t i, const pay_request_t *r, const pay_object_t *o) {
    if (o->kind != PAY_KIND_ORDER || o->code != PAY_CREATED) return;
    xc_pay_t *p = pay_find(s, o->id);
    if (o->replayed) { /* the merchant's key answers as it did first (a release aside) */
        s->st.replays_checked++;
        if (!p || !answers_equal(&p->order_first, o))
            fail(s, "order %016" PRIx64 ": a replayed answer differs from the first", lo64(o->id));
        return;
    }
    if (p) return fail(s, "cell %u drew payment id %016" PRIx64 " twice", i + 1, lo64(o->id));
    pay_add(s, &(xc_pay_t){.pid = o->id,
                           .amount = r->amount,
                           .buyer = r->uid,
                           .merchant = r->actor,
                           .bcell = cell_of_uid(s, r->uid),
                           .mcell = i,
                           .order_first = *o});
    s->st.orders++;
}

static void seen_payment(xc_sim_t *s, uint32_t i, const pay_request_t *r, const pay_object_t *o) {
    xc_pay_t *p = pay_find(s, r->payment_id);
    if (!p || p->bcell != i) return fail(s, "cell %u: a payment of no order of its buyer", i + 1);
    if (o->replayed) {
        s->st.replays_checked++;
        if (!p->has_first || !answers_equal(&p->first, o))
            fail(s, "payment %016" PRIx64 ": a replayed answer differs from the first",
                 lo64(p->pid));
        return;
    }
    if (o->code == PAY_ERR_INVALID)
        return fail(s, "payment %016" PRIx64 " refused as invalid", lo64(p->pid));
    if (o->code == PAY_CREATED && (p->tombstoned || p->released))
        return fail(s, "payment %016" PRIx64 ": paid after its order was given up", lo64(p->pid));
    if (!code_stored(o->code)) return;
    if (p->has_first) return fail(s, "payment %016" PRIx64 ": answered afresh twice", lo64(p->pid));
    p->has_first = true;
    p->first = *o;
    if (o->code != PAY_CREATED) {
        s->st.refused++;
        return;
    }
    p->debited = true;
    user_model(s, p->buyer)->dr += p->amount;
    s->cells[i].debited++;
    s->st.debited++;
}

static void seen_release(xc_sim_t *s, uint32_t i, const pay_request_t *r, const pay_object_t *o) {
    xc_pay_t *p = pay_find(s, r->payment_id);
    if (!p || o->code != PAY_OK) return fail(s, "cell %u: release refused (%u)", i + 1, o->code);
    if (p->debited)
        return fail(s, "payment %016" PRIx64 ": a release of a debited order", lo64(p->pid));
    s->st.released += !p->released;
    p->released = true;
}

/* The buyer's cell answered a resolve: paid only if debited; a refusal is its first answer;
 * a new tombstone becomes the payment's first answer (what a late payment must get again). */
static void seen_resolve(xc_sim_t *s, uint32_t i, const pay_request_t *r, const pay_object_t *o) {
    xc_pay_t *p = pay_find(s, r->payment_id);
    if (!p || p->bcell != i) return fail(s, "cell %u: a resolve of no order of its buyer", i + 1);
    if (o->kind == PAY_KIND_RESOLVE) { /* full: asked again */
        if (o->code != PAY_ERR_FULL) fail(s, "a resolve answered %u", o->code);
        return;
    }
    if (o->kind != PAY_KIND_PAYMENT) return fail(s, "a resolve answered kind %u", o->kind);
    if (o->code == PAY_OK) {
        if (!p->debited)
            fail(s, "payment %016" PRIx64 ": resolved paid, not debited", lo64(p->pid));
        return;
    }
    if (p->debited)
        return fail(s, "payment %016" PRIx64 ": resolved unpaid, debited", lo64(p->pid));
    if (o->code == PAY_ERR_CANCELLED && !p->has_first) {
        p->has_first = true;
        p->first = *o;
        p->tombstoned = true;
        s->st.tombstones++;
        return;
    }
    if (!p->has_first || !answers_equal(&p->first, o))
        fail(s, "payment %016" PRIx64 ": resolved with another answer than its first",
             lo64(p->pid));
}

static void seen_credit(xc_sim_t *s, uint32_t i, const pay_request_t *r, const pay_object_t *o) {
    xc_pay_t *p = pay_find(s, r->payment_id);
    if (!p || p->mcell != i) return fail(s, "cell %u: a credit of no order of its own", i + 1);
    if (o->code == PAY_CREATED) {
        if (!p->debited) fail(s, "payment %016" PRIx64 ": credited, never debited", lo64(p->pid));
        if (++p->credits > 1) fail(s, "payment %016" PRIx64 ": credited twice", lo64(p->pid));
        s->st.credited++;
    } else if (o->code != PAY_OK || p->credits == 0) {
        fail(s, "payment %016" PRIx64 ": credit answered %u after %u credits", lo64(p->pid),
             o->code, p->credits);
    }
}

/* A refund, or a transfer across cells: decided by its initiator's cell, its decision
 * delivered to the participant's. */
static bool is_activity(const xc_pay_t *a) {
    return a->refund || (a->transfer && !a->local);
}
static const char *activity_name(const xc_pay_t *a) {
    return a->transfer ? "transfer" : "refund";
}

/* An activity's acknowledgement: of a decision delivered to the participant's cell. */
static void seen_activity_ack(xc_sim_t *s, uint32_t i, xc_pay_t *a) {
    if (a->confirms + a->cancels == 0)
        fail(s, "%s %016" PRIx64 ": acknowledged, never delivered", activity_name(a), lo64(a->pid));
    if (a->acked) return;
    a->acked = true;
    s->cells[i].decided_acked++;
}

static void seen_ack(xc_sim_t *s, uint32_t i, const pay_request_t *r, const pay_object_t *o) {
    xc_pay_t *p = pay_find(s, r->payment_id);
    if (!p || o->code != PAY_OK) return fail(s, "cell %u: ack refused (%u)", i + 1, o->code);
    if (is_activity(p)) return seen_activity_ack(s, i, p);
    if (p->transfer) return fail(s, "transfer %016" PRIx64 " within a cell acked", lo64(p->pid));
    if (p->credits == 0)
        fail(s, "payment %016" PRIx64 ": acknowledged, never credited", lo64(p->pid));
    if (p->acked) return;
    p->acked = true;
    s->cells[i].acked++;
    s->st.acked++;
}

/* A refund answered trying for the first time: a new activity R of a debited payment. */
static void seen_refund(xc_sim_t *s, uint32_t i, const pay_request_t *r, const pay_object_t *o) {
    if (o->kind != PAY_KIND_REFUND || o->code != PAY_TRYING || o->replayed) return;
    xc_pay_t *p = pay_find(s, r->payment_id);
    if (!p || p->refund || !p->debited || p->bcell != i)
        return fail(s, "cell %u: a refund activity of no debited payment of its own", i + 1);
    if (pay_find(s, o->id))
        return fail(s, "cell %u drew refund id %016" PRIx64 " twice", i + 1, lo64(o->id));
    pay_add(s, &(xc_pay_t){.pid = o->id,
                           .amount = r->amount,
                           .buyer = p->buyer,
                           .merchant = p->merchant,
                           .bcell = i,
                           .mcell = p->mcell,
                           .refund = true,
                           .of = p->pid});
    s->st.refunds++;
}

/* Is there a transfer of cell i with this id and these flags? */
static bool transfer_flags(xc_sim_t *s, uint32_t i, u128 id, uint16_t flags) {
    ledger_transfer_t t;
    return ledger_lookup_transfers(cell_ledger(s->cells[i].cell), &id, 1, &t) == 1 &&
           t.flags == flags;
}

/* The first decision of a transfer T in its sender's cell: the hold on the sender's money
 * goes (posted on a confirm, voided on a cancel) in the decide's own entry. */
static void transfer_decided(xc_sim_t *s, uint32_t i, const xc_pay_t *a) {
    xc_user_t *u = user_model(s, a->buyer);
    u->held -= a->amount;
    bool confirm = a->decision == DEC_CONFIRM;
    if (confirm) u->dr += a->amount;
    uint16_t f = confirm ? LEDGER_TRANSFER_POST_PENDING : LEDGER_TRANSFER_VOID_PENDING;
    if (!transfer_flags(s, i, pay_tcc_phase2_id(a->pid), f))
        fail(s, "transfer %016" PRIx64 ": decided %u, but its hold was not %s", lo64(a->pid),
             a->decision, confirm ? "posted" : "voided");
    if (confirm)
        s->st.transfers_confirmed++;
    else
        s->st.transfers_cancelled++;
}

/* A decide: the first decision stands, every later one answers it. */
static void seen_decide(xc_sim_t *s, uint32_t i, const pay_request_t *r, const pay_object_t *o) {
    xc_pay_t *a = pay_find(s, r->payment_id);
    if (!a || !is_activity(a) || a->bcell != i)
        return fail(s, "cell %u: a decide of no activity of its own", i + 1);
    if (o->kind == PAY_KIND_DECIDE) { /* nothing decided: back pressure only */
        if (o->code != PAY_ERR_FULL)
            fail(s, "%s %016" PRIx64 ": decide answered %u", activity_name(a), lo64(a->pid),
                 o->code);
        return;
    }
    uint8_t d = o->code == PAY_CREATED ? DEC_CONFIRM : DEC_CANCEL;
    if (a->decision != DEC_NONE) {
        if (d != a->decision)
            fail(s, "%s %016" PRIx64 ": decided twice, differently", activity_name(a),
                 lo64(a->pid));
        return;
    }
    if (d == DEC_CONFIRM ? r->code != PAY_OK : o->code != r->code)
        return fail(s, "%s %016" PRIx64 ": decided other than asked", activity_name(a),
                    lo64(a->pid));
    a->decision = d;
    s->cells[i].decided++;
    if (a->transfer) return transfer_decided(s, i, a);
    if (d == DEC_CONFIRM) {
        user_model(s, a->buyer)->cr += a->amount;
        s->st.refunds_confirmed++;
    } else {
        s->st.refunds_cancelled++;
    }
}

/* A transfer's Try in the recipient's cell: it holds the credit (pending) only for a
 * recipient with an account in the currency, and refuses not_found / currency_mismatch only
 * for one without. */
static void transfer_try(xc_sim_t *s, const xc_pay_t *a, const pay_object_t *o) {
    bool can = has_account(a->merchant, a->currency);
    if (o->code == PAY_CREATED) {
        if (!can) return fail(s, "transfer %016" PRIx64 ": tried for no account", lo64(a->pid));
        user_model(s, a->merchant)->pend_in += a->amount;
    } else if (o->code == PAY_ERR_NOT_FOUND || o->code == PAY_ERR_CURRENCY_MISMATCH) {
        if (can) return fail(s, "transfer %016" PRIx64 ": Try refused %u", lo64(a->pid), o->code);
        s->st.transfers_try_refused++;
    }
}

/* A transfer's Confirm or Cancel created in the recipient's cell: the credit held by its Try
 * is posted, or voided (nothing held without a Try). */
static void transfer_branch_done(xc_sim_t *s, const xc_pay_t *a, uint8_t want) {
    xc_user_t *u = a->tries ? user_model(s, a->merchant) : NULL;
    if (u) u->pend_in -= a->amount;
    if (u && want == DEC_CONFIRM) u->cr += a->amount;
}

/* The participant's cell's branch: a Try holds once and never after a Cancel (anti-hanging); a
 * Confirm or Cancel is never refused and follows the initiator's cell's decision. */
static void seen_branch(xc_sim_t *s, uint32_t i, const pay_request_t *r, const pay_object_t *o) {
    xc_pay_t *a = pay_find(s, r->payment_id);
    if (!a || !is_activity(a) || a->mcell != i)
        return fail(s, "cell %u: a branch step of no activity toward it", i + 1);
    bool created = o->code == PAY_CREATED, ok = created || o->code == PAY_OK;
    if (r->kind == PAY_KIND_TRY) {
        if (a->transfer) transfer_try(s, a, o);
        if (created && (++a->tries > 1 || a->cancels))
            fail(s, "%s %016" PRIx64 ": held twice, or after its cancel", activity_name(a),
                 lo64(a->pid));
        return;
    }
    uint8_t want = r->kind == PAY_KIND_CONFIRM ? DEC_CONFIRM : DEC_CANCEL;
    if (!ok || a->decision != want)
        return fail(s, "%s %016" PRIx64 ": %s answered %u (decided %u)", activity_name(a),
                    lo64(a->pid), want == DEC_CONFIRM ? "confirm" : "cancel", o->code, a->decision);
    uint32_t *n = want == DEC_CONFIRM ? &a->confirms : &a->cancels;
    if (created && a->transfer && *n == 0) transfer_branch_done(s, a, want);
    if (created && ++*n > 1)
        fail(s, "%s %016" PRIx64 ": delivered twice", activity_name(a), lo64(a->pid));
    if (!created && *n == 0)
        fail(s, "%s %016" PRIx64 ": ok before created", activity_name(a), lo64(a->pid));
}

/* The model's row of transfer o (request r) from a user of cell bcell to one of mcell. */
static xc_pay_t transfer_row(const pay_request_t *r, const pay_object_t *o, uint32_t bcell,
                             uint32_t mcell) {
    return (xc_pay_t){.pid = o->id,
                      .amount = r->amount,
                      .buyer = r->uid,
                      .merchant = r->recipient,
                      .bcell = bcell,
                      .mcell = mcell,
                      .transfer = true,
                      .currency = r->currency};
}

/* A transfer within the sender's cell i, made in one entry: the money moved, nothing held. */
static void transfer_local(xc_sim_t *s, uint32_t i, const pay_request_t *r, const pay_object_t *o) {
    if (r->peer_cell != 0 || cell_of_uid(s, r->recipient) != i ||
        !has_account(r->recipient, r->currency) || !has_account(r->uid, r->currency))
        return fail(s, "cell %u: transfer %016" PRIx64 " made where it should not", i + 1,
                    lo64(o->id));
    xc_pay_t row = transfer_row(r, o, i, i);
    row.local = true;
    row.decision = DEC_CONFIRM;
    xc_pay_t *a = pay_add(s, &row);
    user_model(s, a->buyer)->dr += a->amount;
    user_model(s, a->merchant)->cr += a->amount;
    s->st.transfers_local++;
}

/* A transfer across cells answered trying afresh: the activity T, the sender's money held
 * in the same entry (pending T: sender -> clearing toward the recipient's cell). */
static void transfer_trying(xc_sim_t *s, uint32_t i, const pay_request_t *r,
                            const pay_object_t *o) {
    uint32_t rc = cell_of_uid(s, r->recipient);
    if (r->peer_cell != s->cells[rc].id || rc == i || (uint64_t)(o->id >> 64) != r->uid)
        return fail(s, "cell %u: transfer %016" PRIx64 " trying toward the wrong cell", i + 1,
                    lo64(o->id));
    xc_pay_t row = transfer_row(r, o, i, rc);
    xc_pay_t *a = pay_add(s, &row);
    user_model(s, a->buyer)->held += a->amount;
    if (!transfer_flags(s, i, a->pid, LEDGER_TRANSFER_PENDING))
        fail(s, "transfer %016" PRIx64 ": trying, the sender's money not held", lo64(a->pid));
    s->st.transfers++;
}

/* The sender's cell's answer to a transfer; a replayed one says what the key holds: trying
 * only while undecided, created only once confirmed. */
static void seen_transfer(xc_sim_t *s, uint32_t i, const pay_request_t *r, const pay_object_t *o) {
    if (o->kind != PAY_KIND_TRANSFER || (o->code != PAY_TRYING && o->code != PAY_CREATED)) return;
    xc_pay_t *a = pay_find(s, o->id);
    if (o->replayed) {
        s->st.replays_checked++;
        bool fits =
            a && (o->code == PAY_TRYING ? a->decision == DEC_NONE : a->decision == DEC_CONFIRM);
        if (!fits) fail(s, "transfer %016" PRIx64 ": a replay is not its state", lo64(o->id));
        return;
    }
    if (a) return fail(s, "cell %u drew transfer id %016" PRIx64 " twice", i + 1, lo64(o->id));
    if (o->code == PAY_CREATED) return transfer_local(s, i, r, o);
    transfer_trying(s, i, r, o);
}

static void seen(xc_sim_t *s, uint32_t i, const pay_request_t *r, const pay_object_t *o) {
    switch (r->kind) {
    case PAY_KIND_REFUND: return seen_refund(s, i, r, o);
    case PAY_KIND_TRANSFER: return seen_transfer(s, i, r, o);
    case PAY_KIND_DECIDE: return seen_decide(s, i, r, o);
    case PAY_KIND_TRY:
    case PAY_KIND_CONFIRM:
    case PAY_KIND_CANCEL: return seen_branch(s, i, r, o);
    case PAY_KIND_ORDER: return seen_order(s, i, r, o);
    case PAY_KIND_PAYMENT: return seen_payment(s, i, r, o);
    case PAY_KIND_RELEASE: return seen_release(s, i, r, o);
    case PAY_KIND_CREDIT: return seen_credit(s, i, r, o);
    case PAY_KIND_ACK: return seen_ack(s, i, r, o);
    case PAY_KIND_RESOLVE: return seen_resolve(s, i, r, o);
    default: return;
    }
}

/* ---- Relays ---- */

static void relay_send(xc_sim_t *s, uint32_t i, const relay_msg_t *m) {
    xc_cell_t *c = &s->cells[i];
    if (chance(s, s->unsent_ppm)) { /* the client library refused it (queue full, closed) */
        tracef(s, "c%u relay: batch %u to c%" PRIu64 " unsent", i + 1, m->batch, m->cell);
        relay_core_unsent(c->relay, m->batch, "refused by the client library");
        return;
    }
    cp_assert(m->cell >= 1 && m->cell <= s->cfg.cells && !c->pending[m->batch].busy);
    uint64_t req = request(s, i, c->gen, m->batch, (uint32_t)m->cell - 1, m->items, m->count);
    c->pending[m->batch] =
        (xc_pending_t){.busy = true, .req = req, .deadline = s->now + XC_RELAY_DEADLINE};
    uint8_t kind = m->items[0].kind;
    tracef(s, "c%u relay: batch %u (%u %s) to c%" PRIu64 " req %" PRIu64, i + 1, m->batch, m->count,
           kind == PAY_KIND_ACK       ? "acks"
           : kind == PAY_KIND_DECIDE  ? "decides"
           : kind == PAY_KIND_RESOLVE ? "resolves"
           : kind == PAY_KIND_RELEASE ? "releases"
                                      : "records",
           m->cell, req);
}

static void relay_answer(xc_sim_t *s, uint32_t i, uint32_t batch, int32_t status,
                         const pay_object_t *o, uint32_t n) {
    xc_cell_t *c = &s->cells[i];
    c->pending[batch].busy = false;
    relay_msg_t follow;
    if (relay_core_answer(c->relay, batch, status, o, n, &follow)) relay_send(s, i, &follow);
}

static void relays_tick(xc_sim_t *s) {
    relay_msg_t msgs[RELAY_CORE_BATCHES];
    for (uint32_t i = 0; i < s->cfg.cells; i++) {
        xc_cell_t *c = &s->cells[i];
        if (c->down_until > s->now) continue;
        for (uint32_t b = 0; b < RELAY_CORE_BATCHES; b++)
            if (c->pending[b].busy && c->pending[b].deadline <= s->now) {
                s->st.timeouts++;
                relay_answer(s, i, b, XC_TIMEOUT, NULL, 0);
            }
        bool leader = c->flap_until <= s->now;
        uint32_t n = relay_core_tick(c->relay, s->now, entry_ts(s), leader, cell_pay(c->cell), msgs,
                                     RELAY_CORE_BATCHES);
        for (uint32_t k = 0; k < n; k++) relay_send(s, i, &msgs[k]);
    }
}

/* ---- Clients: the gateway's three steps, and the API client's retries ---- */

static void client_wait(xc_sim_t *s, xc_client_t *c, uint8_t state, uint32_t ticks) {
    c->state = state;
    c->waiting = false;
    c->wake = s->now + ticks;
}

/* A refund of the client's last paid payment (some ask more than is left: refused), by the
 * gateway's steps: refund (trying) to the buyer's cell, Try to the merchant's, decide. */
static void refund_begin(xc_sim_t *s, uint32_t k, xc_client_t *c) {
    c->mcell = c->paid_mcell;
    c->bcell = c->paid_bcell;
    c->merchant = c->paid_merchant;
    c->buyer = c->paid_buyer;
    c->pid = c->paid_pid;
    c->amount = 1 + prng_below(&s->rng, (uint64_t)c->paid_amount);
    c->serial++;
    c->key = ((u128)(k + 1) << 64) | c->serial;
    c->body_hash = c->key * 31 + 11;
    c->rid = 0;
    c->outcome = OUT_NONE; /* not a payment to repeat */
    memset(c->otn, 0, sizeof c->otn);
    snprintf(c->otn, sizeof c->otn, "r-%u-%u", k, c->serial);
    client_wait(s, c, CL_REFUND, 0);
}

/* A buyer index drawn with these weights (out of 100). */
static uint32_t pick_buyer(xc_sim_t *s, const uint32_t weights[XC_BUYERS]) {
    uint32_t w = (uint32_t)prng_below(&s->rng, 100), j = 0;
    while (w >= weights[j]) w -= weights[j++];
    return j;
}

/* A transfer between two buyers, as the operator asks for it: mostly across cells, some to
 * a recipient with no account (not_found) or none in the currency (currency_mismatch: USD
 * senders send USD, which only buyer 4 holds), some within one cell; poor senders run out. */
static void transfer_begin(xc_sim_t *s, uint32_t k, xc_client_t *c) {
    static const uint32_t from[XC_BUYERS] = {25, 25, 25, 5, 20},
                          to[XC_BUYERS] = {30, 25, 20, 10, 15};
    uint32_t n = s->cfg.cells, sj = pick_buyer(s, from);
    c->bcell = (uint32_t)prng_below(&s->rng, n);
    c->rcell = prng_below(&s->rng, XC_LOCAL_IN) == 0
                   ? c->bcell
                   : (c->bcell + 1 + (uint32_t)prng_below(&s->rng, n - 1)) % n;
    uint32_t rj = sj == 4 && prng_below(&s->rng, 4) != 0 ? 4 : pick_buyer(s, to);
    if (c->rcell == c->bcell && rj == sj) rj = (rj + 1) % XC_BUYERS; /* not to oneself */
    c->buyer = buyer_uid(c->bcell, sj);
    c->recipient = buyer_uid(c->rcell, rj);
    c->cur = sj == 4 ? USD() : CNY();
    c->amount = 1 + prng_below(&s->rng, XC_AMOUNT_MAX);
    c->serial++;
    c->key = ((u128)(k + 1) << 64) | c->serial;
    c->body_hash = c->key * 31 + 13;
    c->pid = 0;
    c->outcome = OUT_NONE; /* not a payment to repeat */
    client_wait(s, c, CL_XFER, 0);
}

static void client_begin(xc_sim_t *s, uint32_t k, xc_client_t *c) {
    if (prng_below(&s->rng, XC_XFER_IN) == 0) return transfer_begin(s, k, c);
    if (c->has_paid && prng_below(&s->rng, XC_REFUND_IN) == 0) return refund_begin(s, k, c);
    if (c->outcome != OUT_NONE && prng_below(&s->rng, 8) == 0) {
        c->repeat = true; /* its answer was lost, say: the same request again */
        return client_wait(s, c, CL_ORDER, 0);
    }
    static const uint32_t weights[XC_BUYERS] = {30, 30, 30, 5, 5};
    c->mcell = (uint32_t)prng_below(&s->rng, s->cfg.cells);
    c->bcell = (c->mcell + 1 + (uint32_t)prng_below(&s->rng, s->cfg.cells - 1)) % s->cfg.cells;
    c->merchant = merchant_uid(c->mcell, (uint32_t)prng_below(&s->rng, XC_MERCHANTS));
    c->buyer = buyer_uid(c->bcell, pick_buyer(s, weights));
    c->amount = 1 + prng_below(&s->rng, XC_AMOUNT_MAX);
    c->serial++;
    c->key = ((u128)(k + 1) << 64) | c->serial;
    c->body_hash = c->key * 31 + 7;
    c->pid = 0;
    c->outcome = OUT_NONE;
    c->dup_try = c->has_paid && prng_below(&s->rng, 16) == 0;
    memset(c->otn, 0, sizeof c->otn);
    if (c->dup_try) { /* the out_trade_no of its last paid order, under a new key */
        c->mcell = c->paid_mcell;
        c->merchant = c->paid_merchant;
        c->bcell = (c->mcell + 1) % s->cfg.cells;
        c->buyer = buyer_uid(c->bcell, 0);
        memcpy(c->otn, c->paid_otn, sizeof c->otn);
    } else {
        snprintf(c->otn, sizeof c->otn, "o-%u-%u", k, c->serial);
    }
    client_wait(s, c, CL_ORDER, 0);
}

/* The refund's steps, as the gateway sends them. */
static pay_request_t refund_request(const xc_sim_t *s, const xc_client_t *c) {
    pay_request_t r = {.uid = c->buyer};
    if (c->state == CL_DECIDE) {
        r.kind = PAY_KIND_DECIDE;
        r.payment_id = c->rid;
        r.code = c->refusal;
        return r;
    }
    r.actor = c->merchant;
    r.amount = c->amount;
    if (c->state == CL_TRY) {
        r.kind = PAY_KIND_TRY;
        r.payment_id = c->rid;
        r.currency = CNY();
        r.peer_cell = (uint32_t)s->cells[c->bcell].id;
        return r;
    }
    r.kind = PAY_KIND_REFUND;
    r.uid = 0;
    r.idem_key = c->key;
    r.body_hash = c->body_hash;
    r.payment_id = c->pid;
    r.peer_cell = (uint32_t)s->cells[c->mcell].id;
    memcpy(r.text, c->otn, sizeof r.text);
    return r;
}

/* A transfer's steps: the transfer as the operator's API call makes it (peer_cell from the
 * route table's cells of sender and recipient), then the Try and the decide xtcc.c built. */
static pay_request_t transfer_request(const xc_sim_t *s, const xc_client_t *c) {
    if (c->state != CL_XFER) return c->xreq;
    return (pay_request_t){
        .kind = PAY_KIND_TRANSFER,
        .idem_key = c->key,
        .body_hash = c->body_hash,
        .uid = c->buyer,
        .recipient = c->recipient,
        .amount = c->amount,
        .currency = c->cur,
        .peer_cell = xtcc_transfer_peer_cell(s->cells[c->bcell].id, s->cells[c->rcell].id)};
}

static pay_request_t client_request(const xc_sim_t *s, const xc_client_t *c) {
    if (c->state >= CL_XFER) return transfer_request(s, c);
    if (c->state >= CL_REFUND) return refund_request(s, c);
    pay_request_t r = {.actor = c->merchant};
    if (c->state == CL_RELEASE) {
        r.kind = PAY_KIND_RELEASE;
        r.payment_id = c->pid;
        r.code = c->refusal;
        return r;
    }
    r.kind = c->state == CL_ORDER ? PAY_KIND_ORDER : PAY_KIND_PAYMENT;
    r.idem_key = c->state == CL_ORDER ? c->key : c->pid;
    r.body_hash = c->body_hash;
    r.uid = c->buyer;
    r.amount = c->amount;
    r.currency = CNY();
    r.funding = 1;
    memcpy(r.text, c->otn, sizeof r.text);
    if (c->state == CL_XPAY) {
        r.payment_id = c->pid;
        r.peer_cell = (uint32_t)s->cells[c->mcell].id;
    } else { /* the order names the buyer's cell, for the merchant's cell's resolver */
        r.peer_cell = (uint32_t)s->cells[c->bcell].id;
    }
    return r;
}

static void client_send(xc_sim_t *s, uint32_t k, xc_client_t *c) {
    pay_request_t r = client_request(s, c);
    bool to_buyers = c->state == CL_XPAY || c->state == CL_REFUND || c->state == CL_DECIDE;
    uint32_t to = to_buyers ? c->bcell : c->mcell;
    if (c->state >= CL_XFER) to = cell_of_uid(s, pay_request_route_uid(&r)); /* the route table */
    c->req = request(s, XC_OWNER_CLIENT | k, 0, 0, to, &r, 1);
    c->waiting = true;
    c->deadline = s->now + XC_CLIENT_DEADLINE;
}

/* The payment is over for the client: paid, or refused with code. */
static void client_done(xc_sim_t *s, xc_client_t *c, uint8_t outcome, uint8_t code) {
    xc_pay_t *p = c->pid ? pay_find(s, c->pid) : NULL;
    if (p && outcome == OUT_PAID) p->client_paid = true;
    if (p && outcome == OUT_REFUSED) p->client_refused = true;
    if (c->repeat) {
        if (outcome != c->outcome || code != c->outcome_code ||
            (outcome == OUT_PAID && c->pid != c->outcome_pid))
            fail(s, "a repeated payment (key %" PRIx64 ") got another outcome", lo64(c->key));
        c->repeat = false;
    } else {
        c->outcome = outcome;
        c->outcome_code = code;
        c->outcome_pid = c->pid;
    }
    if (outcome == OUT_PAID) {
        c->has_paid = true;
        c->paid_merchant = c->merchant;
        c->paid_mcell = c->mcell;
        c->paid_buyer = c->buyer;
        c->paid_bcell = c->bcell;
        c->paid_pid = c->pid;
        c->paid_amount = c->amount;
        memcpy(c->paid_otn, c->otn, sizeof c->otn);
    }
    client_wait(s, c, CL_IDLE, (uint32_t)prng_below(&s->rng, 10));
}

/* The gateway dies right after the order and its client never retries: the order is left
 * reserved, for the merchant's cell's resolver. Half the time its payment was on its way
 * and arrives late, after the resolver is likely done (the tombstone must refuse it). */
static void client_abandon(xc_sim_t *s, uint32_t k, xc_client_t *c) {
    s->st.orders_abandoned++;
    tracef(s, "a gateway dies after order %016" PRIx64, lo64(c->pid));
    if (prng_below(&s->rng, 2) == 0) {
        c->state = CL_XPAY;
        pay_request_t r = client_request(s, c);
        /* its own request id, which no client waits for: the answer is dropped */
        xc_msg_t m = {.req = ++s->req_seq,
                      .owner = XC_OWNER_CLIENT | k,
                      .to = c->bcell,
                      .count = 1,
                      .data = &r};
        uint64_t late = 2 * XC_RECOVER_AFTER_TICKS + prng_below(&s->rng, XC_RECOVER_AFTER_TICKS);
        net_put(s, &m, sizeof r, s->now + late);
        s->st.late_payments++;
    }
    c->outcome = OUT_NONE; /* not a payment to repeat */
    client_wait(s, c, CL_IDLE, (uint32_t)prng_below(&s->rng, 10));
}

static void client_order_answered(xc_sim_t *s, uint32_t k, xc_client_t *c, const pay_object_t *o) {
    if (c->dup_try) {
        if (o->code != PAY_ERR_DUPLICATE_OUT_TRADE_NO)
            fail(s, "out_trade_no %s of a paid order taken again (%u)", c->otn, o->code);
        s->st.duplicates_refused++;
        c->dup_try = false;
        c->outcome = OUT_NONE; /* not one to repeat */
        return client_wait(s, c, CL_IDLE, 1);
    }
    if (o->kind == PAY_KIND_ORDER && o->code == PAY_CREATED) {
        if ((uint64_t)(o->id >> 64) != c->buyer) return fail(s, "an order's id is not its buyer's");
        c->pid = o->id;
        if (!c->repeat && prng_below(&s->rng, XC_ABANDON_IN) == 0) return client_abandon(s, k, c);
        return client_wait(s, c, CL_XPAY, 0);
    }
    if (o->kind == PAY_KIND_PAYMENT && refusal_final(o->code)) /* a release left it */
        return client_done(s, c, OUT_REFUSED, o->code);
    if (o->code == PAY_ERR_FULL) return client_wait(s, c, CL_ORDER, 20);
    fail(s, "unexpected answer to an order: kind %u code %u", o->kind, o->code);
}

static void client_xpay_answered(xc_sim_t *s, xc_client_t *c, const pay_object_t *o) {
    if (o->kind == PAY_KIND_PAYMENT && o->code == PAY_CREATED) {
        if (o->id != c->pid || o->merchant_credit != 1 || o->amount != c->amount)
            fail(s, "payment %016" PRIx64 ": the answer is not the payment's", lo64(c->pid));
        return client_done(s, c, OUT_PAID, PAY_CREATED);
    }
    if (refusal_final(o->code)) {
        c->refusal = o->code;
        return client_wait(s, c, CL_RELEASE, 0);
    }
    /* full (the outbox: back pressure): the API client retries the same key later */
    if (o->code == PAY_ERR_FULL) return client_wait(s, c, CL_ORDER, 20);
    fail(s, "unexpected answer to a payment: kind %u code %u", o->kind, o->code);
}

/* A refund or transfer is over for this client: decided, refused, or its gateway died. */
static void flow_done(xc_sim_t *s, xc_client_t *c) {
    client_wait(s, c, CL_IDLE, (uint32_t)prng_below(&s->rng, 10));
}

/* The next step of a refund or transfer (what, id: for the trace), unless the gateway dies
 * first: it never comes back, the activity is left to the initiating cell's relay's recovery
 * (and a Try it made, to the Cancel that follows). */
static void flow_step(xc_sim_t *s, xc_client_t *c, uint8_t state, const char *what, u128 id) {
    if (prng_below(&s->rng, XC_DIE_IN) == 0) {
        s->st.gateways_died++;
        tracef(s, "a gateway dies before step %u of %s %016" PRIx64, state, what, lo64(id));
        return flow_done(s, c);
    }
    client_wait(s, c, state, 0);
}

static void refund_step(xc_sim_t *s, xc_client_t *c, uint8_t state) {
    flow_step(s, c, state, "refund", c->rid);
}

static void refund_answered(xc_sim_t *s, xc_client_t *c, const pay_object_t *o) {
    if (o->kind == PAY_KIND_REFUND && o->code == PAY_TRYING) {
        if (o->payment_id != c->pid || o->amount != c->amount ||
            (uint64_t)(o->id >> 64) != c->buyer)
            return fail(s, "refund of %016" PRIx64 ": the trying answer is not it", lo64(c->pid));
        c->rid = o->id;
        return refund_step(s, c, CL_TRY);
    }
    if (o->code == PAY_ERR_FULL) return client_wait(s, c, CL_REFUND, 20);
    /* Decided before (a retry of the key), or refused: over. */
    bool decided = o->kind == PAY_KIND_REFUND &&
                   (o->code == PAY_CREATED || o->code == PAY_ERR_CANCELLED ||
                    o->code == PAY_ERR_INSUFFICIENT_FUNDS || o->code == PAY_ERR_OVERFLOW ||
                    o->code == PAY_ERR_REFUND_EXCEEDS);
    if (!decided)
        return fail(s, "unexpected answer to a refund: kind %u code %u", o->kind, o->code);
    flow_done(s, c);
}

/* The Try's outcome is what the gateway decides: ok confirms, a refusal cancels (a Try
 * refused as cancelled: the recovery was first; full: the gateway gives up). */
static void try_answered(xc_sim_t *s, xc_client_t *c, const pay_object_t *o) {
    switch (o->code) {
    case PAY_CREATED:
    case PAY_OK: c->refusal = PAY_OK; break;
    case PAY_ERR_INSUFFICIENT_FUNDS:
    case PAY_ERR_OVERFLOW:
    case PAY_ERR_CANCELLED: c->refusal = o->code; break;
    case PAY_ERR_FULL: c->refusal = PAY_ERR_CANCELLED; break;
    default: return fail(s, "unexpected answer to a Try: kind %u code %u", o->kind, o->code);
    }
    refund_step(s, c, CL_DECIDE);
}

static void decide_answered(xc_sim_t *s, xc_client_t *c, const pay_object_t *o) {
    if (o->kind == PAY_KIND_REFUND) return flow_done(s, c); /* the decision, maybe not ours */
    if (o->code == PAY_ERR_FULL) return client_wait(s, c, CL_DECIDE, 20);
    fail(s, "unexpected answer to a decide: kind %u code %u", o->kind, o->code);
}

static void transfer_step(xc_sim_t *s, xc_client_t *c, uint8_t state) {
    flow_step(s, c, state, "transfer", c->xreq.payment_id);
}

/* The sender's cell's answer: trying goes on with the Try xtcc.c builds from it; anything
 * else (made within the cell, decided before under the key, refused) is the client's. */
static void xfer_answered(xc_sim_t *s, xc_client_t *c, const pay_object_t *o) {
    if (xtcc_trying(0, o, 1)) {
        pay_request_t t;
        if (o->uid != c->buyer || o->recipient != c->recipient || o->amount != c->amount ||
            o->currency != c->cur || !xtcc_try_build(o, &t))
            return fail(s, "transfer %016" PRIx64 ": the trying answer is not it", lo64(o->id));
        c->xreq = t;
        return transfer_step(s, c, CL_XTRY);
    }
    if (o->code == PAY_ERR_FULL) return client_wait(s, c, CL_XFER, 20);
    bool final = o->kind == PAY_KIND_TRANSFER &&
                 (o->code == PAY_CREATED || o->code == PAY_ERR_NOT_FOUND ||
                  o->code == PAY_ERR_CURRENCY_MISMATCH || o->code == PAY_ERR_INSUFFICIENT_FUNDS ||
                  o->code == PAY_ERR_OVERFLOW || o->code == PAY_ERR_CANCELLED);
    if (!final)
        return fail(s, "unexpected answer to a transfer: kind %u code %u", o->kind, o->code);
    flow_done(s, c);
}

/* The decide of the activity with code, as the gateway builds it from its last request. */
static void xdecide(xc_sim_t *s, xc_client_t *c, uint8_t code) {
    pay_request_t d;
    xtcc_decide_build(&c->xreq, code, &d);
    c->xreq = d;
    transfer_step(s, c, CL_XDECIDE);
}

/* The Try's answer, or its timeout (status XC_TIMEOUT): the gateway decides as xtcc.c says
 * (a Try not answered is cancelled: the Cancel voids it if it did get through). */
static void xtry_answered(xc_sim_t *s, xc_client_t *c, int32_t status, const pay_object_t *o,
                          uint32_t n) {
    xdecide(s, c, xtcc_decision(&c->xreq, status, o, n));
}

static void xdecide_answered(xc_sim_t *s, xc_client_t *c, const pay_object_t *o) {
    uint8_t code = 0;
    const xc_pay_t *a = pay_find(s, c->xreq.payment_id);
    switch (xtcc_after_decide(PAY_TCC_TRANSFER, 0, o, 1, c->xreq.code, &code)) {
    case XTCC_ANSWER: /* the decision (maybe not ours): the client's answer */
        if (!a || a->decision != (o->code == PAY_CREATED ? DEC_CONFIRM : DEC_CANCEL))
            return fail(s, "transfer %016" PRIx64 ": the client heard another decision",
                        lo64(c->xreq.payment_id));
        return flow_done(s, c);
    case XTCC_CANCEL: return xdecide(s, c, code);
    case XTCC_RETRY: /* 503: the client retries with the same key */
        if (o->code != PAY_ERR_FULL)
            return fail(s, "unexpected answer to a decide: kind %u code %u", o->kind, o->code);
        return client_wait(s, c, CL_XFER, 20);
    }
}

static void client_answered(xc_sim_t *s, uint32_t k, const xc_msg_t *m) {
    xc_client_t *c = &s->clients[k];
    if (!c->waiting || c->req != m->req) return; /* a late or duplicate answer */
    cp_assert(m->count == 1);
    const pay_object_t *o = m->data;
    c->waiting = false;
    switch (c->state) {
    case CL_ORDER: return client_order_answered(s, k, c, o);
    case CL_XPAY: return client_xpay_answered(s, c, o);
    case CL_RELEASE:
        if (o->code != PAY_OK) return fail(s, "a release answered %u", o->code);
        return client_done(s, c, OUT_REFUSED, c->refusal);
    case CL_REFUND: return refund_answered(s, c, o);
    case CL_TRY: return try_answered(s, c, o);
    case CL_DECIDE: return decide_answered(s, c, o);
    case CL_XFER: return xfer_answered(s, c, o);
    case CL_XTRY: return xtry_answered(s, c, 0, o, 1);
    case CL_XDECIDE: return xdecide_answered(s, c, o);
    }
}

/* A transfer's step not answered in time: the gateway dies (with its step maybe still on
 * its way), or decides cancelled on a Try, or the client retries with the same key. */
static void transfer_timeout(xc_sim_t *s, xc_client_t *c) {
    if (prng_below(&s->rng, XC_DIE_IN) == 0) {
        s->st.gateways_died++;
        return flow_done(s, c);
    }
    c->waiting = false;
    if (c->state == CL_XTRY) return xtry_answered(s, c, XC_TIMEOUT, NULL, 0);
    client_wait(s, c, CL_XFER, (uint32_t)prng_below(&s->rng, 20));
}

static void client_timeout(xc_sim_t *s, xc_client_t *c) {
    s->st.timeouts++;
    if (c->state >= CL_XFER) return transfer_timeout(s, c);
    if (c->state >= CL_REFUND && prng_below(&s->rng, XC_DIE_IN) == 0) {
        s->st.gateways_died++; /* with its step maybe still on its way */
        flow_done(s, c);
    } else { /* 503 or a broken connection: the same key again, from the top */
        uint8_t top = c->state >= CL_REFUND ? CL_REFUND : CL_ORDER;
        client_wait(s, c, top, (uint32_t)prng_below(&s->rng, 20));
    }
}

static void clients_act(xc_sim_t *s) {
    for (uint32_t k = 0; k < XC_CLIENTS; k++) {
        xc_client_t *c = &s->clients[k];
        if (c->waiting && c->deadline <= s->now) client_timeout(s, c);
        if (c->waiting || c->wake > s->now) continue;
        if (c->state == CL_IDLE) {
            if (s->calm) continue;
            client_begin(s, k, c);
        }
        client_send(s, k, c);
    }
}

/* ---- Delivery ---- */

static void deliver_request(xc_sim_t *s, const xc_msg_t *m) {
    xc_cell_t *c = &s->cells[m->to];
    if (c->down_until > s->now) { /* no leader to take it */
        s->st.lost++;
        return;
    }
    commit(s, m->to, m->data, m->count);
    for (uint32_t k = 0; k < m->count; k++)
        seen(s, m->to, (const pay_request_t *)m->data + k, &s->answers[k]);
    xc_msg_t a = *m;
    a.answer = true;
    a.data = s->answers;
    net_send(s, &a, sizeof(pay_object_t));
}

static void deliver_answer(xc_sim_t *s, const xc_msg_t *m) {
    if (m->owner & XC_OWNER_CLIENT) return client_answered(s, m->owner & ~XC_OWNER_CLIENT, m);
    xc_cell_t *c = &s->cells[m->owner];
    xc_pending_t *p = &c->pending[m->batch];
    if (m->gen != c->gen || c->down_until > s->now || !p->busy || p->req != m->req) return;
    relay_answer(s, m->owner, m->batch, 0, m->data, m->count);
}

static int msg_order(const void *a, const void *b) {
    const xc_msg_t *x = a, *y = b;
    if (x->at != y->at) return x->at < y->at ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void net_deliver(xc_sim_t *s) {
    uint32_t due_n = 0, keep = 0;
    xc_msg_t *due = malloc((s->net_n + 1) * sizeof *due);
    cp_assert(due);
    for (uint32_t k = 0; k < s->net_n; k++) {
        if (s->net[k].at <= s->now)
            due[due_n++] = s->net[k];
        else
            s->net[keep++] = s->net[k];
    }
    s->net_n = keep;
    qsort(due, due_n, sizeof *due, msg_order);
    for (uint32_t k = 0; k < due_n; k++) {
        if (!s->failed) {
            if (due[k].answer)
                deliver_answer(s, &due[k]);
            else
                deliver_request(s, &due[k]);
        }
        free(due[k].data);
    }
    free(due);
}

/* ---- Faults ---- */

static void crash(xc_sim_t *s, uint32_t i) {
    xc_cell_t *c = &s->cells[i];
    s->st.crashes++;
    c->down_until = s->now + 1 + prng_below(&s->rng, 30);
    tracef(s, "CRASH c%u: a new leader at t%" PRIu64 ", its relay starts afresh", i + 1,
           c->down_until);
    cell_rebuild(s, i);
    relay_new(s, i);
}

static void faults(xc_sim_t *s) {
    for (uint32_t i = 0; i < s->cfg.cells; i++) {
        xc_cell_t *c = &s->cells[i];
        if (c->down_until > s->now) continue;
        if (chance(s, s->crash_ppm)) {
            crash(s, i);
        } else if (c->flap_until <= s->now && chance(s, s->flap_ppm)) {
            s->st.flaps++;
            c->flap_until = s->now + 1 + prng_below(&s->rng, 20);
            tracef(s, "c%u loses leadership until t%" PRIu64, i + 1, c->flap_until);
        }
    }
}

/* ---- Steps ---- */

/* Each buyer's account of cell i is what the entries applied so far made it: posted, what
 * it holds for its transfers trying (held exactly while they are), and credits pending for
 * it (a transfer's Try; posted only by its Confirm, so never credited unless confirmed). */
static void check_users(xc_sim_t *s, uint32_t i) {
    for (uint32_t j = 0; j < XC_BUYERS && !s->failed; j++) {
        const xc_user_t *u = &s->cells[i].users[j];
        uint32_t cur = buyer_currency(j);
        ledger_account_t a = {0};
        u128 id = pay_account_id(buyer_uid(i, j), PAY_ACCOUNT_USER, cur);
        if (cur && ledger_lookup_accounts(cell_ledger(s->cells[i].cell), &id, 1, &a) != 1)
            a.credits_posted = ~(u128)0; /* no account: differs from any model */
        if (a.credits_posted != u->cr || a.debits_posted != u->dr || a.debits_pending != u->held ||
            a.credits_pending != u->pend_in)
            fail(s,
                 "buyer %" PRIu64 ": posted +%" PRIu64 " -%" PRIu64 ", pending -%" PRIu64
                 " +%" PRIu64 "; the model says +%" PRIu64 " -%" PRIu64 ", -%" PRIu64 " +%" PRIu64,
                 buyer_uid(i, j), lo64(a.credits_posted), lo64(a.debits_posted),
                 lo64(a.debits_pending), lo64(a.credits_pending), lo64(u->cr), lo64(u->dr),
                 lo64(u->held), lo64(u->pend_in));
    }
}

static void check_step(xc_sim_t *s) {
    for (uint32_t i = 0; i < s->cfg.cells && !s->failed; i++) {
        xc_cell_t *c = &s->cells[i];
        /* Every request here is answered or times out, so the relay may never lose track of
         * a record: a record skipped, or a failure that did not send its cell back (which, in
         * a node, the rescan after a second of idleness would hide). */
        if (relay_core_stuck(c->relay))
            fail(s, "cell %u: a backlog, and its relay has nothing in flight nor resting", i + 1);
        if (!c->applied) continue;
        c->applied = false;
        const char *why = ledger_check_invariants(cell_ledger(c->cell));
        if (why) fail(s, "cell %u: ledger: %s", i + 1, why);
        check_users(s, i);
        uint32_t backlog = pay_outbox_backlog(cell_pay(c->cell));
        if (backlog != c->debited - c->acked + c->decided - c->decided_acked)
            fail(s,
                 "cell %u: outbox backlog %u, but %" PRIu64 " debited and %" PRIu64
                 " acknowledged, %" PRIu64 " refunds decided and %" PRIu64 " acknowledged",
                 i + 1, backlog, c->debited, c->acked, c->decided, c->decided_acked);
    }
}

static void step(xc_sim_t *s) {
    s->now++;
    s->st.steps++;
    faults(s);
    net_deliver(s);
    relays_tick(s);
    clients_act(s);
    check_step(s);
}

bool xc_sim_run(xc_sim_t *s, uint32_t steps) {
    if (steps > XC_STEPS_MAX) steps = XC_STEPS_MAX;
    for (uint32_t k = 0; k < steps && !s->failed; k++) step(s);
    return !s->failed;
}

/* ---- The end: everything settled ---- */

/* Has the cell an order neither paid nor released (each names its buyer's cell here)? */
static bool orders_reserved(const xc_cell_t *c) {
    pay_order_stale_t one;
    return pay_orders_stale(cell_pay(c->cell), UINT64_MAX, 0, 0, &one, 1) != 0;
}

/* What is not settled yet (NULL: everything), so that a run that never settles says why. */
static const char *unsettled(const xc_sim_t *s) {
    if (s->net_n) return "messages in flight";
    for (uint32_t k = 0; k < XC_CLIENTS; k++)
        if (s->clients[k].state != CL_IDLE || s->clients[k].waiting) return "a client not done";
    for (uint32_t i = 0; i < s->cfg.cells; i++) {
        const xc_cell_t *c = &s->cells[i];
        if (c->down_until > s->now) return "a cell down";
        if (pay_outbox_backlog(cell_pay(c->cell))) return "an outbox backlog";
        if (pay_activities_trying(cell_pay(c->cell))) return "an activity trying";
        if (relay_core_busy(c->relay)) return "a relay busy";
        if (orders_reserved(c)) return "an order reserved";
    }
    return NULL;
}

static bool settled(const xc_sim_t *s) {
    return unsettled(s) == NULL;
}

/* credits_posted - debits_posted of an account, as two halves (0 when it does not exist). */
static void account_sides(xc_sim_t *s, uint32_t i, u128 id, u128 *cr, u128 *dr) {
    ledger_account_t a;
    *cr = *dr = 0;
    if (ledger_lookup_accounts(cell_ledger(s->cells[i].cell), &id, 1, &a) != 1) return;
    if (a.debits_pending || a.credits_pending) fail(s, "cell %u: a pending amount", i + 1);
    *cr = a.credits_posted;
    *dr = a.debits_posted;
}

static void add(xc_sim_t *s, u128 *sum, u128 v) {
    if (!u128_add_checked(*sum, v, sum)) fail(s, "a sum overflows");
}

/* A transfer of cell i with this id, amount and accounts? */
static bool transfer_is(xc_sim_t *s, uint32_t i, u128 id, u128 amount, u128 debit, u128 credit) {
    ledger_transfer_t t;
    return ledger_lookup_transfers(cell_ledger(s->cells[i].cell), &id, 1, &t) == 1 &&
           t.amount == amount && t.debit_account_id == debit && t.credit_account_id == credit;
}

/* The two legs of a debited payment, as docs/cross-cell.md names them: the payment id in the
 * buyer's cell, pay_leg_id() of it in the merchant's (any repeat is known by it). */
static void final_legs(xc_sim_t *s, const xc_pay_t *p) {
    uint32_t cur = CNY();
    if (!transfer_is(s, p->bcell, p->pid, p->amount,
                     pay_account_id(p->buyer, PAY_ACCOUNT_USER, cur),
                     pay_clearing_account_id((uint32_t)s->cells[p->mcell].id, cur)))
        fail(s, "payment %016" PRIx64 ": no debit of its id in the buyer's cell", lo64(p->pid));
    if (!transfer_is(s, p->mcell, pay_leg_id(p->pid), p->amount,
                     pay_clearing_account_id((uint32_t)s->cells[p->bcell].id, cur),
                     pay_account_id(p->merchant, PAY_ACCOUNT_MERCHANT, cur)))
        fail(s, "payment %016" PRIx64 ": no credit of its leg id in the merchant's cell",
             lo64(p->pid));
}

/* Per payment: credited exactly once and acknowledged when debited, else never credited; and
 * what the client was told agrees. */
static void final_payments(xc_sim_t *s) {
    for (uint32_t k = 0; k < s->pays_n && !s->failed; k++) {
        const xc_pay_t *p = &s->pays[k];
        if (p->refund || p->transfer) continue;
        if (p->debited) final_legs(s, p);
        if (p->debited && (p->credits != 1 || !p->acked))
            fail(s, "payment %016" PRIx64 ": debited, %u credits, %s", lo64(p->pid), p->credits,
                 p->acked ? "acknowledged" : "not acknowledged");
        if (!p->debited && p->credits)
            fail(s, "payment %016" PRIx64 ": credited, never debited", lo64(p->pid));
        if (p->client_paid && !p->debited)
            fail(s, "payment %016" PRIx64 ": the client was told paid", lo64(p->pid));
        if (p->client_refused && (p->debited || !p->released))
            fail(s, "payment %016" PRIx64 ": the client was told refused", lo64(p->pid));
    }
}

/* Per activity (refund, transfer across cells): decided, delivered once as its decision and
 * acknowledged; per payment: what its buyer's cell counts refunded is what was confirmed,
 * within its amount. No activity is trying, no transfer pending in any cell. */
static void final_refunds(xc_sim_t *s) {
    for (uint32_t i = 0; i < s->cfg.cells; i++) {
        if (pay_activities_trying(cell_pay(s->cells[i].cell)))
            fail(s, "cell %u: an activity still trying", i + 1);
        if (ledger_next_expiry(cell_ledger(s->cells[i].cell)))
            fail(s, "cell %u: a transfer still pending", i + 1);
    }
    u128 *confirmed = calloc(s->pays_n + 1, sizeof *confirmed); /* by payment row */
    cp_assert(confirmed);
    for (uint32_t k = 0; k < s->pays_n && !s->failed; k++) {
        const xc_pay_t *a = &s->pays[k];
        if (!is_activity(a)) continue;
        bool confirm = a->decision == DEC_CONFIRM;
        if (a->decision == DEC_NONE || !a->acked || a->confirms != confirm ||
            a->cancels != !confirm)
            fail(s, "%s %016" PRIx64 ": decision %u, %u confirms, %u cancels, %s", activity_name(a),
                 lo64(a->pid), a->decision, a->confirms, a->cancels,
                 a->acked ? "acknowledged" : "not acknowledged");
        if (confirm && a->refund) add(s, &confirmed[pay_find(s, a->of) - s->pays], a->amount);
    }
    for (uint32_t k = 0; k < s->pays_n && !s->failed; k++) {
        const xc_pay_t *p = &s->pays[k];
        if (p->refund || !p->debited) continue;
        pay_object_t o[PAY_LIST_MAX + 2];
        pay_query_t q = {.kind = PAY_Q_PAYMENT, .id = p->pid};
        xc_cell_t *b = &s->cells[p->bcell];
        if (pay_query(cell_pay(b->cell), cell_ledger(b->cell), &q, o) != 1 || o[0].code != PAY_OK ||
            o[0].refunded != confirmed[k] || o[0].refunded > p->amount)
            fail(s, "payment %016" PRIx64 ": refunded is not its confirmed refunds, or too much",
                 lo64(p->pid));
    }
    free(confirmed);
}

/* A transfer as its sender's cell answers it (status, and its credit acknowledged), and, across
 * cells, its two holds: posted on both sides if confirmed, else voided (or never made, in the
 * recipient's cell). */
static void final_transfer(xc_sim_t *s, const xc_pay_t *t) {
    bool confirm = t->decision == DEC_CONFIRM;
    pay_object_t o[PAY_LIST_MAX + 2];
    pay_query_t q = {.kind = PAY_Q_TRANSFER, .id = t->pid};
    xc_cell_t *a = &s->cells[t->bcell];
    if (pay_query(cell_pay(a->cell), cell_ledger(a->cell), &q, o) != 1 || o[0].code != PAY_OK ||
        o[0].status != (confirm ? PAY_TRANSFER_SUCCEEDED : PAY_TRANSFER_CANCELLED) ||
        o[0].merchant_credit != 0)
        return fail(s, "transfer %016" PRIx64 ": its query says otherwise", lo64(t->pid));
    if (t->local) return;
    u128 p2 = pay_tcc_phase2_id(t->pid);
    uint16_t f = confirm ? LEDGER_TRANSFER_POST_PENDING : LEDGER_TRANSFER_VOID_PENDING;
    if (!transfer_flags(s, t->bcell, p2, f) || (confirm && !transfer_flags(s, t->mcell, p2, f)) ||
        (!confirm && transfer_flags(s, t->mcell, p2, LEDGER_TRANSFER_POST_PENDING)))
        fail(s, "transfer %016" PRIx64 ": its holds are not what it was decided", lo64(t->pid));
}

/* Currencies the books keep apart: payments and refunds are CNY, transfers CNY or USD. */
#define XC_CURS 2u
static uint32_t cur_ix(uint32_t cur) {
    return cur == USD() ? 1 : 0;
}
static uint32_t cur_of_ix(uint32_t ix) {
    return ix ? USD() : CNY();
}

/* What the payments, the confirmed refunds and the confirmed transfers moved, per cell and
 * account (final_money): the reference model, from the records alone. */
typedef struct xc_books {
    u128 recv[XC_SIM_CELLS_MAX][XC_MERCHANTS], refunded[XC_SIM_CELLS_MAX][XC_MERCHANTS];
    u128 spent[XC_SIM_CELLS_MAX][XC_BUYERS], back[XC_SIM_CELLS_MAX][XC_BUYERS];
    u128 xout[XC_SIM_CELLS_MAX][XC_BUYERS], xin[XC_SIM_CELLS_MAX][XC_BUYERS];
    /* paid by buyers of a to merchants of b, and sent by users of a to users of b */
    u128 flow[XC_CURS][XC_SIM_CELLS_MAX][XC_SIM_CELLS_MAX];
    u128 rflow[XC_CURS][XC_SIM_CELLS_MAX][XC_SIM_CELLS_MAX]; /* refunded to buyers of a by b's */
} xc_books_t;

static void books_transfer(xc_sim_t *s, xc_books_t *k, const xc_pay_t *t) {
    if (t->decision != DEC_CONFIRM) return;
    add(s, &k->xout[t->bcell][buyer_index(t->buyer)], t->amount);
    add(s, &k->xin[t->mcell][buyer_index(t->merchant)], t->amount);
    if (!t->local) add(s, &k->flow[cur_ix(t->currency)][t->bcell][t->mcell], t->amount);
}

static void books_add(xc_sim_t *s, xc_books_t *k) {
    for (uint32_t r = 0; r < s->pays_n; r++) {
        const xc_pay_t *p = &s->pays[r];
        if (p->transfer) {
            books_transfer(s, k, p);
            continue;
        }
        uint32_t m = (uint32_t)(p->merchant / 1000) - 1, b = buyer_index(p->buyer);
        if (!p->refund && p->debited) {
            add(s, &k->recv[p->mcell][m], p->amount);
            add(s, &k->spent[p->bcell][b], p->amount);
            add(s, &k->flow[0][p->bcell][p->mcell], p->amount);
        } else if (p->refund && p->decision == DEC_CONFIRM) {
            add(s, &k->refunded[p->mcell][m], p->amount);
            add(s, &k->back[p->bcell][b], p->amount);
            add(s, &k->rflow[0][p->bcell][p->mcell], p->amount);
        }
    }
}

/* Cell a's clearing toward b in currency ix: credited by what a's users paid or sent to b and
 * by a's merchants' refunds to b's buyers; debited by what b's users paid or sent, credited
 * in a, and by refunds from b paid to a's buyers. With b's toward a, it nets to zero. */
static void final_clearing(xc_sim_t *s, const xc_books_t *k, uint32_t ix, uint32_t a, uint32_t b) {
    uint32_t cur = cur_of_ix(ix);
    u128 cra, dra, crb, drb, in = 0, out = 0, want[4] = {0};
    account_sides(s, a, pay_clearing_account_id((uint32_t)s->cells[b].id, cur), &cra, &dra);
    account_sides(s, b, pay_clearing_account_id((uint32_t)s->cells[a].id, cur), &crb, &drb);
    add(s, &in, cra);
    add(s, &in, crb);
    add(s, &out, dra);
    add(s, &out, drb);
    add(s, &want[0], k->flow[ix][a][b]);
    add(s, &want[0], k->rflow[ix][b][a]);
    add(s, &want[1], k->flow[ix][b][a]);
    add(s, &want[1], k->rflow[ix][a][b]);
    add(s, &want[2], k->flow[ix][b][a]);
    add(s, &want[2], k->rflow[ix][a][b]);
    add(s, &want[3], k->flow[ix][a][b]);
    add(s, &want[3], k->rflow[ix][b][a]);
    if (in != out || cra != want[0] || dra != want[1] || crb != want[2] || drb != want[3])
        fail(s, "clearing of cells %u and %u does not net to zero", a + 1, b + 1);
}

/* Each buyer's balance is the reference model's: top-up - payments + refunds - transfers out
 * + transfers in (what was confirmed); what users hold is summed into held by currency. */
static void final_buyers(xc_sim_t *s, const xc_books_t *k, uint32_t i, u128 held[XC_CURS],
                         u128 topped[XC_CURS]) {
    u128 cr, dr;
    for (uint32_t j = 0; j < XC_BUYERS; j++) {
        uint32_t cur = buyer_currency(j);
        if (!cur) continue;
        account_sides(s, i, pay_account_id(buyer_uid(i, j), PAY_ACCOUNT_USER, cur), &cr, &dr);
        if (cr != buyer_funds(j) + k->back[i][j] + k->xin[i][j] ||
            dr != k->spent[i][j] + k->xout[i][j])
            fail(s, "buyer %" PRIu64 ": balance is not its payments, refunds and transfers",
                 buyer_uid(i, j));
        add(s, &held[cur_ix(cur)], cr - dr);
        add(s, &topped[cur_ix(cur)], buyer_funds(j));
    }
}

/* Money: receivables, buyers' balances, clearing per pair of cells and currency, and all of
 * it conserved per currency (what buyers and merchants hold is what was topped up). */
static void final_money(xc_sim_t *s) {
    uint32_t n = s->cfg.cells, cur = CNY();
    xc_books_t *k = calloc(1, sizeof *k);
    cp_assert(k);
    books_add(s, k);
    u128 cr, dr, held[XC_CURS] = {0}, topped[XC_CURS] = {0};
    for (uint32_t i = 0; i < n; i++) {
        for (uint32_t j = 0; j < XC_MERCHANTS; j++) {
            account_sides(s, i, pay_account_id(merchant_uid(i, j), PAY_ACCOUNT_MERCHANT, cur), &cr,
                          &dr);
            if (dr != k->refunded[i][j] || cr != k->recv[i][j])
                fail(s, "merchant %" PRIu64 ": receivable is not its payments less refunds",
                     merchant_uid(i, j));
            add(s, &held[0], cr - dr);
        }
        final_buyers(s, k, i, held, topped);
    }
    for (uint32_t ix = 0; ix < XC_CURS; ix++) {
        if (held[ix] != topped[ix]) fail(s, "money is not conserved in currency %u", ix);
        for (uint32_t a = 0; a < n; a++)
            for (uint32_t b = a + 1; b < n; b++) final_clearing(s, k, ix, a, b);
    }
    for (uint32_t r = 0; r < s->pays_n && !s->failed; r++)
        if (s->pays[r].transfer) final_transfer(s, &s->pays[r]);
    free(k);
}

bool xc_sim_calm(xc_sim_t *s) {
    if (s->failed) return false;
    s->calm = true;
    tracef(s, "calm: no more faults nor new payments");
    uint32_t k = 0;
    for (; k < XC_CALM_TICKS && !s->failed && !settled(s); k++) {
        for (uint32_t i = 0; i < s->cfg.cells; i++) s->cells[i].flap_until = 0;
        step(s);
    }
    if (!s->failed && !settled(s))
        fail(s, "not settled %u ticks after the faults stopped: %s", XC_CALM_TICKS, unsettled(s));
    for (uint32_t i = 0; i < s->cfg.cells && !s->failed; i++) {
        if (pay_outbox_backlog(cell_pay(s->cells[i].cell)) != 0)
            fail(s, "cell %u: a backlog", i + 1);
        if (orders_reserved(&s->cells[i])) fail(s, "cell %u: an order left reserved", i + 1);
        cell_rebuild(s, i);
    }
    if (!s->failed) final_payments(s);
    if (!s->failed) final_refunds(s);
    if (!s->failed) final_money(s);
    return !s->failed;
}

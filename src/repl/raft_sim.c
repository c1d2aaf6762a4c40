/* The Raft simulator of raft_sim.h. Test infrastructure, but in the library so that
 * `cellpay sim` replays a seed exactly as the tests ran it. It allocates freely at create. */
#include "repl/raft_sim.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/prng.h"
#include "ledger/ledger.h"

#define SIM_LOG_MAX 8192u  /* entries in a run: also the core's window */
#define SIM_NET_MAX 2048u  /* messages in flight; more are lost */
#define SIM_CMD 16u        /* a command: id and a payload */
#define SIM_ENT_MAX 64u    /* an entry: a command, or a membership (rf_members_wire_t) */
#define SIM_IDS_MAX 16384u /* command ids in a run */
#define SIM_TRACE 64u
#define SIM_LM_CAP (1u << 16) /* log-matching table (index, term) -> data, prev term */
#define SIM_READS_MAX 4096u
#define SIM_ANY UINT32_MAX
/* Snapshots: a header, the applied-per-id table and the ledger's image, sent in chunks of
 * SIM_CHUNK bytes at most (an odd size, so the last chunk is short). */
#define SIM_SNAP_MAGIC 0x50414e534d495355ull
#define SIM_SNAP_MEMBERS 40u                         /* after magic, index, term, chain, size */
#define SIM_SNAP_HDR (SIM_SNAP_MEMBERS + 64u)        /* ... and the membership */
#define SIM_SNAP_LEDGER (SIM_SNAP_HDR + SIM_IDS_MAX) /* the ledger image starts here */
#define SIM_SNAP_LIMIT (64u << 20) /* sanity bound on a snapshot's size (a few MB at most) */
#define SIM_CHUNK 1500u
/* The ledger every replica applies commands to: the same accounts, created the same way at
 * the start of every replica's state, so that replicas differ only by what they applied.
 * A log index applies at most one transfer, so SIM_LOG_MAX rows hold a whole run. */
#define SIM_ACCOUNTS 8u
#define SIM_LEDGER_ID 1u
#define SIM_TS_PER_INDEX 1000u /* a transfer's timestamp: its log index times this */

typedef struct sim_ent {
    uint64_t term;
    uint32_t size;
    uint8_t type;
    uint8_t data[SIM_ENT_MAX];
} sim_ent_t;

typedef struct sim_msg {
    rf_msg_hdr_t h;
    sim_ent_t ents[RF_MSG_ENTRIES_MAX];
    uint8_t chunk[SIM_CHUNK]; /* RF_MSG_SNAP: the bytes of ents[0] */
} sim_msg_t;

/* A durable snapshot: magic, index, term, chain, size, the membership, eff (SIM_IDS_MAX
 * bytes), then the ledger image (header and regions, ledger.h). bytes grows as needed. */
typedef struct sim_snap {
    uint64_t index, term, size;
    size_t cap;
    uint8_t *bytes;
} sim_snap_t;

typedef struct sim_node {
    rf_t *r;
    bool up;
    uint64_t hs_term;
    uint32_t hs_vote;
    sim_ent_t *log; /* log[i] is index i; [1, len] written, [1, persisted] durable */
    uint64_t len, persisted;
    uint64_t applied, chain;
    uint8_t *eff;     /* per command id: applied (deduplicated by id, rule 11) */
    ledger_t *ledger; /* the state machine proper; lost on crash, rebuilt at start */
    /* Snapshots survive crashes: snaps[1] the newest, snaps[0] the one before (the window
     * starts after it, as the node's does); rx (volatile) the one being received. */
    sim_snap_t snaps[2];
    sim_snap_t rx;
    uint64_t installs;
    uint64_t commit_checked;
    uint32_t reads_done;
    rf_role_t role;
    uint64_t role_term;
} sim_node_t;

typedef struct sim_com {
    uint64_t term, hash, chain; /* 0: not known yet */
    uint64_t ledger;            /* digest of the ledger's balances after this index; 0: ditto */
} sim_com_t;

typedef struct sim_lm {
    uint64_t index, term, hash, prev_term;
} sim_lm_t;

typedef struct sim_pend {
    uint64_t index, term, since, ack_index;
    uint32_t node;
    bool proposed, acked;
} sim_pend_t;

struct rf_sim {
    rf_sim_config_t cfg;
    prng_t prng;
    sim_node_t n[RF_SIM_NODES_MAX];
    sim_msg_t *pool;
    uint16_t free_list[SIM_NET_MAX], queue[SIM_NET_MAX];
    uint32_t free_count, queue_count;
    bool blocked[RF_SIM_NODES_MAX][RF_SIM_NODES_MAX];
    uint32_t loss_ppm, dup_ppm;
    uint32_t *leader_of; /* by term: node id + 1 ... raft id; 0 none */
    uint64_t leader_cap;
    sim_com_t *com;
    uint64_t max_commit;
    sim_lm_t *lm;
    sim_pend_t *pend;
    uint64_t next_id;
    uint64_t read_floor[SIM_READS_MAX]; /* by ctx: max commit when the read began */
    uint64_t next_read;
    uint64_t now;
    /* The nemesis (random mode only): scripted faults at short intervals, on top of the
     * per-step noise, so that a run sees dozens of leader changes. */
    uint64_t next_fault;
    uint64_t slow_until[RF_SIM_NODES_MAX]; /* a slow disk: rare, partial fsyncs */
    uint32_t fig8_phase; /* 0: none; else the step of the Figure 8 script (fig8_step) */
    uint32_t fig8_old, fig8_mid;
    uint64_t fig8_term, fig8_at;
    uint32_t mid_crash_ppm; /* crash in the middle of handling a ready */
    uint32_t snap_every;    /* applied entries between a node's snapshots; 0: none */
    bool members_mode;      /* servers are added, promoted and removed during the run */
    /* A long outage of one follower (down or cut off) while the others move on, so that it
     * comes back behind the leader's window and needs a snapshot. */
    uint32_t lag_node;
    bool lag_down;
    uint64_t lag_until;
    bool calm;
    char trace[SIM_TRACE][200];
    uint32_t trace_n;
    bool failed;
    char failure[400];
    rf_sim_stats_t st;
};

static const char *type_name(uint8_t t) {
    static const char *names[] = {"?",         "APP",         "APP_RESP",     "VOTE",
                                  "VOTE_RESP", "PREVOTE",     "PREVOTE_RESP", "HB",
                                  "HB_RESP",   "TIMEOUT_NOW", "SNAP",         "SNAP_RESP"};
    return t < 12 ? names[t] : "?";
}

__attribute__((format(printf, 2, 3))) static void tracef(rf_sim_t *s, const char *fmt, ...) {
    char *line = s->trace[s->trace_n++ % SIM_TRACE];
    int k = snprintf(line, 200, "%6" PRIu64 " ", s->now);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + k, 200 - (size_t)k, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 2, 3))) static bool fail(rf_sim_t *s, const char *fmt, ...) {
    if (s->failed) return false;
    s->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->failure, sizeof s->failure, fmt, ap);
    va_end(ap);
    return false;
}

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 29);
}

static uint64_t ent_hash(uint64_t term, uint8_t type, const void *data, uint32_t size) {
    uint64_t h = mix(mix(term, size), type), w[SIM_ENT_MAX / 8] = {0};
    if (size) memcpy(w, data, size < SIM_ENT_MAX ? size : SIM_ENT_MAX);
    for (uint32_t k = 0; k < SIM_ENT_MAX / 8; k++) h = mix(h, w[k]);
    return h | 1; /* never 0: 0 means unknown */
}

/* ---- The ledger state machine ---- */

static const ledger_config_t sim_ledger_config = {.accounts_max = SIM_ACCOUNTS,
                                                  .transfers_max = SIM_LOG_MAX};

/* Empties l and opens the accounts. Account 1 must not be overdrawn (so some transfers fail,
 * and their ids are remembered as failed), account 2 keeps a balance history: both travel in
 * snapshots as well. */
static void ledger_open(ledger_t *l) {
    ledger_reset(l);
    ledger_account_t a[SIM_ACCOUNTS];
    ledger_result_t r[SIM_ACCOUNTS];
    for (uint32_t k = 0; k < SIM_ACCOUNTS; k++)
        a[k] = (ledger_account_t){.id = k + 1,
                                  .ledger = SIM_LEDGER_ID,
                                  .code = 1,
                                  .flags = k == 0   ? LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS
                                           : k == 1 ? LEDGER_ACCOUNT_HISTORY
                                                    : 0};
    /* Timestamps 1..SIM_ACCOUNTS, below every transfer's (index * SIM_TS_PER_INDEX). */
    ledger_status_t st = ledger_create_accounts(l, SIM_ACCOUNTS, a, SIM_ACCOUNTS, r);
    cp_assert(st == LEDGER_OK);
    for (uint32_t k = 0; k < SIM_ACCOUNTS; k++) cp_assert(r[k].result == LEDGER_ACCOUNT_CREATED);
}

/* The transfer of command id, from the id alone: a retry carries another payload (the time
 * of its proposal) but must be the same transfer, so that the ledger answers it `exists`. */
static ledger_transfer_t cmd_transfer(uint64_t id) {
    uint64_t h = mix(id, 0x6c6564676572ull);
    uint32_t dr = (uint32_t)(h % SIM_ACCOUNTS);
    uint32_t cr = (dr + 1 + (uint32_t)((h >> 8) % (SIM_ACCOUNTS - 1))) % SIM_ACCOUNTS;
    return (ledger_transfer_t){.id = id,
                               .debit_account_id = dr + 1,
                               .credit_account_id = cr + 1,
                               .amount = 1 + (h >> 16) % 1000,
                               .ledger = SIM_LEDGER_ID,
                               .code = 1};
}

/* The balances of every account (read through lookups, as a client would) and the number of
 * transfers and failed ids: equal on two replicas that applied the same commands. */
static uint64_t ledger_digest(const ledger_t *l) {
    u128 ids[SIM_ACCOUNTS];
    ledger_account_t a[SIM_ACCOUNTS];
    for (uint32_t k = 0; k < SIM_ACCOUNTS; k++) ids[k] = k + 1;
    uint32_t got = ledger_lookup_accounts(l, ids, SIM_ACCOUNTS, a);
    uint64_t h = mix(0, got);
    for (uint32_t k = 0; k < got; k++) {
        const u128 v[4] = {a[k].debits_pending, a[k].debits_posted, a[k].credits_pending,
                           a[k].credits_posted};
        h = mix(h, (uint64_t)a[k].id);
        for (int j = 0; j < 4; j++) h = mix(mix(h, (uint64_t)v[j]), (uint64_t)(v[j] >> 64));
    }
    ledger_stats_t st;
    ledger_stats(l, &st);
    return mix(mix(h, st.transfers), st.failed_ids) | 1; /* never 0: 0 means unknown */
}

static void snap_reserve(sim_snap_t *sn, uint64_t size) {
    cp_assert(size <= SIM_SNAP_LIMIT);
    if (size <= sn->cap) return;
    size_t cap = sn->cap ? sn->cap : 64u << 10;
    while (cap < size) cap *= 2;
    sn->bytes = realloc(sn->bytes, cap);
    cp_assert(sn->bytes);
    sn->cap = cap;
}

/* Appends the ledger's image at sn->bytes + off; returns the snapshot's new size. */
static uint64_t ledger_save(const ledger_t *l, sim_snap_t *sn, uint64_t off) {
    ledger_image_header_t h;
    ledger_region_t r[LEDGER_IMAGE_REGIONS];
    ledger_image_header(l, &h);
    uint32_t count = ledger_image_regions(l, &h, r);
    uint64_t size = off + sizeof h;
    for (uint32_t k = 0; k < count; k++) size += r[k].size;
    snap_reserve(sn, size);
    memcpy(sn->bytes + off, &h, sizeof h);
    off += sizeof h;
    for (uint32_t k = 0; k < count; k++) {
        if (r[k].size) memcpy(sn->bytes + off, r[k].ptr, r[k].size);
        off += r[k].size;
    }
    return off;
}

/* Restores l from the image of size bytes at b: NULL, or why not (then l is unusable until
 * it is reset). */
static const char *ledger_load(ledger_t *l, const uint8_t *b, uint64_t size) {
    ledger_image_header_t h;
    if (size < sizeof h) return "the ledger image is truncated";
    memcpy(&h, b, sizeof h);
    const char *err = ledger_image_check(&h, &sim_ledger_config);
    if (err) return err;
    ledger_reset(l);
    ledger_region_t r[LEDGER_IMAGE_REGIONS];
    uint32_t count = ledger_image_restore_regions(l, &h, r);
    uint64_t off = sizeof h;
    for (uint32_t k = 0; k < count; k++) {
        if (r[k].size > size - off) return "the ledger image is truncated";
        if (r[k].size) memcpy(r[k].ptr, b + off, r[k].size);
        off += r[k].size;
    }
    if (off != size) return "the ledger image has trailing bytes";
    return ledger_image_finish(l, &h); /* rebuilds the indexes, checks the invariants */
}

/* ---- Creation ---- */

/* The members a node starts with when it has no snapshot: every node, or (membership runs)
 * the first three as voters, the others waiting to be added. */
static uint32_t initial_voters(const rf_sim_t *s) {
    return s->members_mode ? 3 : s->cfg.nodes;
}

static rf_config_t node_config(const rf_sim_t *s, uint32_t i) {
    uint32_t voters = initial_voters(s);
    rf_config_t c = {.id = i + 1,
                     .voter_count = i < voters ? voters : 0,
                     .election_ticks = s->cfg.election_ticks,
                     .heartbeat_ticks = s->cfg.heartbeat_ticks,
                     .pre_vote = true,
                     .check_quorum = true,
                     .seed = s->cfg.seed * 31 + s->n[i].hs_term * 7 + i,
                     .window_entries = SIM_LOG_MAX,
                     .window_bytes = SIM_LOG_MAX * SIM_ENT_MAX,
                     .msg_bytes_max = 8 * SIM_ENT_MAX,
                     .snap_chunk_bytes = SIM_CHUNK,
                     .term = s->n[i].hs_term,
                     .vote = s->n[i].hs_vote};
    for (uint32_t k = 0; k < c.voter_count; k++) c.voters[k] = k + 1;
    return c;
}

/* The state machine before any entry: nothing applied, the accounts opened. */
static void state_reset(sim_node_t *n) {
    n->applied = n->chain = 0;
    memset(n->eff, 0, SIM_IDS_MAX);
    ledger_open(n->ledger);
}

/* The state machine as of a snapshot; NULL, or why its ledger image does not restore. Then
 * the ledger starts empty but the rest is loaded: the run fails anyway, and the node goes on
 * applying from the snapshot's index until the step ends. */
static const char *state_load(sim_node_t *n, const sim_snap_t *sn) {
    const uint8_t *b = sn->bytes;
    const char *err = ledger_load(n->ledger, b + SIM_SNAP_LEDGER, sn->size - SIM_SNAP_LEDGER);
    if (err) ledger_open(n->ledger);
    memcpy(&n->applied, b + 8, 8);
    memcpy(&n->chain, b + 24, 8);
    memcpy(n->eff, b + SIM_SNAP_HDR, SIM_IDS_MAX);
    return err;
}

/* A restored state that is not the one every replica had at its index. */
static void state_check(rf_sim_t *s, uint32_t i, uint64_t index, const char *what) {
    const sim_com_t *com = &s->com[index];
    if (com->ledger && com->ledger != ledger_digest(s->n[i].ledger))
        fail(s, "n%u %s snapshot %" PRIu64 " whose ledger no replica had there", i + 1, what,
             index);
}

static void node_start(rf_sim_t *s, uint32_t i) {
    sim_node_t *n = &s->n[i];
    const sim_snap_t *sn = &n->snaps[1];
    rf_config_t c = node_config(s, i);
    c.log_start_index = sn->index;
    c.log_start_term = sn->term;
    if (sn->index) { /* the membership stored with the snapshot */
        rf_members_t m;
        bool ok = rf_members_decode(sn->bytes + SIM_SNAP_MEMBERS, 64, &m);
        cp_assert(ok);
        c.voter_count = c.learner_count = 0;
        for (uint32_t k = 0; k < m.count; k++) {
            if (m.voters >> k & 1)
                c.voters[c.voter_count++] = m.ids[k];
            else
                c.learners[c.learner_count++] = m.ids[k];
        }
    }
    n->r = rf_create(&c);
    cp_assert(n->r);
    cp_assert(n->persisted >= sn->index);
    for (uint64_t k = sn->index + 1; k <= n->persisted; k++) {
        const sim_ent_t *e = &n->log[k];
        rf_entry_t x = {.term = e->term, .size = e->size, .data = e->data, .type = e->type};
        bool ok = rf_load_entry(n->r, &x);
        cp_assert(ok);
    }
    n->len = n->persisted; /* the unsynced tail is gone */
    n->up = true;
    /* The state machine is rebuilt like the chain: from the snapshot, then the core hands
     * out the committed entries after it again. */
    if (sn->index) {
        const char *err = state_load(n, sn);
        if (err)
            fail(s, "n%u restarts from snapshot %" PRIu64 " whose ledger image is bad: %s", i + 1,
                 sn->index, err);
        state_check(s, i, sn->index, "restarts from");
        rf_snapshot_avail(n->r, sn->index, sn->term, sn->size);
    } else {
        state_reset(n);
    }
    n->commit_checked = n->applied;
    n->role = RF_FOLLOWER;
}

rf_sim_t *rf_sim_create(const rf_sim_config_t *c) {
    cp_assert(c->nodes >= 1 && c->nodes <= RF_SIM_NODES_MAX);
    rf_sim_t *s = calloc(1, sizeof *s);
    cp_assert(s);
    s->cfg = *c;
    if (!s->cfg.election_ticks) s->cfg.election_ticks = 10;
    if (!s->cfg.heartbeat_ticks) s->cfg.heartbeat_ticks = 2;
    s->prng.state = c->seed;
    s->pool = malloc(SIM_NET_MAX * sizeof *s->pool);
    s->com = calloc(SIM_LOG_MAX + 2, sizeof *s->com);
    s->lm = calloc(SIM_LM_CAP, sizeof *s->lm);
    s->pend = calloc(SIM_IDS_MAX, sizeof *s->pend);
    s->leader_cap = 1024;
    s->leader_of = calloc(s->leader_cap, sizeof *s->leader_of);
    cp_assert(s->pool && s->com && s->lm && s->pend && s->leader_of);
    for (uint32_t k = 0; k < SIM_NET_MAX; k++) s->free_list[k] = (uint16_t)(SIM_NET_MAX - 1 - k);
    s->free_count = SIM_NET_MAX;
    s->next_id = 1;
    if (!c->manual) {
        s->loss_ppm = 20000;
        s->dup_ppm = 10000;
        s->mid_crash_ppm = 400;
        s->next_fault = 20;
        static const uint32_t every[] = {0, 3, 6, 12, 32};
        s->snap_every = every[prng_below(&s->prng, 5)];
        s->members_mode = c->nodes == 5 && prng_below(&s->prng, 2);
    } else {
        s->snap_every = c->snap_every;
        s->members_mode = c->members;
    }
    for (uint32_t i = 0; i < c->nodes; i++) {
        s->n[i].log = calloc(SIM_LOG_MAX + 2, sizeof(sim_ent_t));
        s->n[i].eff = calloc(SIM_IDS_MAX, 1);
        /* One ledger per node for the whole run: a crash resets it rather than freeing it,
         * which would cost fresh memory (and page faults) at every one of many restarts. */
        s->n[i].ledger = ledger_create(&sim_ledger_config);
        cp_assert(s->n[i].log && s->n[i].eff && s->n[i].ledger);
        node_start(s, i);
    }
    return s;
}

void rf_sim_destroy(rf_sim_t *s) {
    if (!s) return;
    for (uint32_t i = 0; i < s->cfg.nodes; i++) {
        rf_destroy(s->n[i].r);
        free(s->n[i].log);
        free(s->n[i].eff);
        ledger_destroy(s->n[i].ledger);
        free(s->n[i].snaps[0].bytes);
        free(s->n[i].snaps[1].bytes);
        free(s->n[i].rx.bytes);
    }
    free(s->pool);
    free(s->com);
    free(s->lm);
    free(s->pend);
    free(s->leader_of);
    free(s);
}

/* ---- The network ---- */

static void net_put(rf_sim_t *s, const rf_msg_t *m) {
    if (!s->free_count) return; /* full: lost */
    uint16_t k = s->free_list[--s->free_count];
    sim_msg_t *sm = &s->pool[k];
    sm->h = m->h;
    for (uint32_t j = 0; j < m->h.entry_count; j++) {
        const rf_entry_t *e = &m->entries[j];
        sm->ents[j] = (sim_ent_t){.term = e->term, .size = e->size, .type = e->type};
        if (m->h.type == RF_MSG_SNAP) {
            cp_assert(e->size <= SIM_CHUNK && e->data);
            memcpy(sm->chunk, e->data, e->size);
        } else {
            cp_assert(e->size <= SIM_ENT_MAX);
            if (e->size) memcpy(sm->ents[j].data, e->data, e->size);
        }
    }
    s->queue[s->queue_count++] = k;
}

/* The entries of a queued message as the core sees them. */
static void msg_entries(sim_msg_t *sm, rf_entry_t *ents) {
    for (uint32_t j = 0; j < sm->h.entry_count; j++) {
        const void *data = sm->h.type == RF_MSG_SNAP ? (const void *)sm->chunk : sm->ents[j].data;
        ents[j] = (rf_entry_t){.term = sm->ents[j].term,
                               .size = sm->ents[j].size,
                               .data = sm->ents[j].size ? data : NULL,
                               .type = sm->ents[j].type};
    }
}

static void net_remove(rf_sim_t *s, uint32_t pos) {
    s->free_list[s->free_count++] = s->queue[pos];
    memmove(&s->queue[pos], &s->queue[pos + 1], (s->queue_count - pos - 1) * sizeof s->queue[0]);
    s->queue_count--;
}

/* Delivers (or loses, across a partition or to a crashed node) the message at pos. */
static void net_deliver(rf_sim_t *s, uint32_t pos) {
    sim_msg_t *sm = &s->pool[s->queue[pos]];
    uint32_t from = sm->h.from - 1, to = sm->h.to - 1;
    sim_node_t *n = &s->n[to];
    if (s->blocked[from][to] || !n->up) {
        s->st.dropped++;
        net_remove(s, pos);
        return;
    }
    rf_entry_t ents[RF_MSG_ENTRIES_MAX];
    msg_entries(sm, ents);
    rf_msg_t m = {.h = sm->h, .entries = ents};
    tracef(s,
           "deliver %s %u->%u term=%" PRIu64 " idx=%" PRIu64 " lt=%" PRIu64 " n=%u c=%" PRIu64
           " rej=%u hint=%" PRIu64,
           type_name(m.h.type), m.h.from, m.h.to, m.h.term, m.h.index, m.h.log_term,
           m.h.entry_count, m.h.commit, m.h.reject, m.h.hint);
    net_remove(s, pos);
    s->st.delivered++;
    rf_step(n->r, &m);
}

static bool msg_match(const sim_msg_t *sm, uint32_t from, uint32_t to, uint8_t type) {
    return (from == SIM_ANY || sm->h.from == from + 1) && (to == SIM_ANY || sm->h.to == to + 1) &&
           (type == 0 || sm->h.type == type);
}

uint32_t rf_sim_deliver(rf_sim_t *s, uint32_t from, uint32_t to, uint8_t type) {
    uint32_t count = 0, limit = s->queue_count; /* not what the deliveries send */
    for (uint32_t pos = 0; pos < s->queue_count && limit;) {
        limit--;
        if (msg_match(&s->pool[s->queue[pos]], from, to, type)) {
            net_deliver(s, pos);
            count++;
        } else {
            pos++;
        }
    }
    return count;
}

uint32_t rf_sim_drop(rf_sim_t *s, uint32_t from, uint32_t to, uint8_t type) {
    uint32_t count = 0;
    for (uint32_t pos = 0; pos < s->queue_count;) {
        if (msg_match(&s->pool[s->queue[pos]], from, to, type)) {
            net_remove(s, pos);
            count++;
        } else {
            pos++;
        }
    }
    return count;
}

void rf_sim_block(rf_sim_t *s, uint32_t from, uint32_t to, bool blocked) {
    s->blocked[from][to] = blocked;
}

void rf_sim_isolate(rf_sim_t *s, uint32_t i, bool isolated) {
    for (uint32_t k = 0; k < s->cfg.nodes; k++) {
        if (k == i) continue;
        s->blocked[i][k] = s->blocked[k][i] = isolated;
    }
}

/* ---- The driver of one node: the simulated WAL, the state machine, clients ---- */

static bool lm_check(rf_sim_t *s, uint64_t index, uint64_t term, uint64_t hash,
                     uint64_t prev_term) {
    uint32_t k = (uint32_t)(mix(index, term) & (SIM_LM_CAP - 1));
    for (uint32_t probe = 0; probe < SIM_LM_CAP; probe++, k = (k + 1) & (SIM_LM_CAP - 1)) {
        sim_lm_t *e = &s->lm[k];
        if (e->index == 0) {
            *e = (sim_lm_t){index, term, hash, prev_term};
            return true;
        }
        if (e->index == index && e->term == term) {
            if (e->hash == hash && e->prev_term == prev_term) return true;
            return fail(s, "log matching: two different entries at index %" PRIu64 " term %" PRIu64,
                        index, term);
        }
    }
    return true; /* table full: stop checking */
}

static void write_entries(rf_sim_t *s, uint32_t i, const rf_ready_t *rd) {
    sim_node_t *n = &s->n[i];
    uint64_t idx = rd->entries_first;
    if (idx <= n->len) { /* a conflict: truncate (durably, like wal_truncate_after) */
        for (uint64_t k = idx; k <= n->len; k++)
            if (k <= s->max_commit && s->com[k].term == n->log[k].term)
                fail(s, "node %u truncates committed entry %" PRIu64 " (term %" PRIu64 ")", i + 1,
                     k, n->log[k].term);
        tracef(s, "n%u truncates its log after %" PRIu64 " (had %" PRIu64 ")", i + 1, idx - 1,
               n->len);
        n->len = idx - 1;
        if (n->persisted > n->len) n->persisted = n->len;
    }
    cp_assert(idx == n->len + 1);
    for (uint32_t j = 0; j < rd->entry_count; j++, idx++) {
        const rf_entry_t *e = &rd->entries[j];
        cp_assert(idx <= SIM_LOG_MAX && e->size <= SIM_ENT_MAX);
        sim_ent_t *se = &n->log[idx];
        *se = (sim_ent_t){.term = e->term, .size = e->size, .type = e->type};
        if (e->size) memcpy(se->data, e->data, e->size);
        lm_check(s, idx, e->term, ent_hash(e->term, e->type, e->data, e->size),
                 idx > 1 ? n->log[idx - 1].term : 0);
    }
    n->len = idx - 1;
}

static uint64_t cmd_id(const rf_entry_t *e) {
    uint64_t id = 0;
    if (e->type == RF_ENTRY_NORMAL && e->size == SIM_CMD) memcpy(&id, e->data, sizeof id);
    return id;
}

/* Command id, committed at index, applied to node i's ledger as a one-event batch stamped by
 * the index (the same on every replica, and increasing as the ledger's clock requires). The
 * first application creates the transfer (or fails it for want of funds, which the ledger
 * remembers); a retried one is answered as already done and changes nothing. */
static void ledger_apply(rf_sim_t *s, uint32_t i, uint64_t index, uint64_t id, bool first) {
    sim_node_t *n = &s->n[i];
    ledger_transfer_t t = cmd_transfer(id);
    ledger_result_t r;
    uint64_t before = first ? 0 : ledger_digest(n->ledger);
    ledger_status_t st = ledger_create_transfers(n->ledger, index * SIM_TS_PER_INDEX, &t, 1, &r);
    if (st != LEDGER_OK) {
        fail(s, "n%u: the ledger refuses cmd %" PRIu64 " at index %" PRIu64 ": %s", i + 1, id,
             index, ledger_status_str(st));
        return;
    }
    s->st.ledger_transfers++;
    const char *res = ledger_transfer_result_str(r.result);
    if (first && r.result != LEDGER_TRANSFER_CREATED && r.result != LEDGER_TRANSFER_EXCEEDS_CREDITS)
        fail(s, "n%u: cmd %" PRIu64 " at index %" PRIu64 ", applied for the first time, is %s",
             i + 1, id, index, res);
    if (!first) {
        s->st.ledger_duplicates++;
        if (r.result != LEDGER_TRANSFER_EXISTS && r.result != LEDGER_TRANSFER_ID_ALREADY_FAILED)
            fail(s, "n%u: retried cmd %" PRIu64 " at index %" PRIu64 " is %s, not exists", i + 1,
                 id, index, res);
        if (ledger_digest(n->ledger) != before)
            fail(s, "n%u: retried cmd %" PRIu64 " at index %" PRIu64 " changed the balances", i + 1,
                 id, index);
    }
    const char *err = ledger_check_invariants(n->ledger);
    s->st.ledger_checks++;
    if (err)
        fail(s, "n%u: ledger invariant broken after cmd %" PRIu64 " at index %" PRIu64 ": %s",
             i + 1, id, index, err);
}

static void apply_one(rf_sim_t *s, uint32_t i, uint64_t index, const rf_entry_t *e) {
    sim_node_t *n = &s->n[i];
    cp_assert(index == n->applied + 1);
    uint64_t h = ent_hash(e->term, e->type, e->data, e->size);
    n->chain = mix(n->chain, h);
    n->applied = index;
    sim_com_t *c = &s->com[index];
    if (c->term && c->term != e->term)
        fail(s, "n%u applies index %" PRIu64 " term %" PRIu64 ", committed was term %" PRIu64,
             i + 1, index, e->term, c->term);
    if (c->hash && (c->hash != h || c->chain != n->chain))
        fail(s, "n%u applies a different entry or sequence at index %" PRIu64, i + 1, index);
    c->term = e->term;
    c->hash = h;
    c->chain = n->chain;
    if (index > s->max_commit) s->max_commit = index;
    uint64_t id = cmd_id(e);
    cp_assert(id < SIM_IDS_MAX);
    bool first = id && !n->eff[id];
    if (id) ledger_apply(s, i, index, id, first);
    /* The ledger as of this index, compared across replicas: the chain says they applied the
     * same entries, this that the entries did the same thing to every ledger. */
    uint64_t d = ledger_digest(n->ledger);
    if (c->ledger && c->ledger != d)
        fail(s,
             "replicas' ledgers differ at index %" PRIu64 ": n%u has balances digest %016" PRIx64
             ", an earlier replica had %016" PRIx64,
             index, i + 1, d, c->ledger);
    if (c->ledger) s->st.ledger_compared++;
    c->ledger = d;
    if (!id) return;
    n->eff[id] = 1; /* a retried duplicate changes nothing: commands are idempotent by id */
    sim_pend_t *p = &s->pend[id];
    if (!p->acked && p->proposed && p->node == i) {
        p->acked = true;
        p->ack_index = index;
        s->st.acked++;
        tracef(s, "client: cmd %" PRIu64 " acknowledged by n%u at %" PRIu64 "%s", id, i + 1, index,
               first ? "" : " (duplicate)");
    }
}

static void read_done(rf_sim_t *s, uint32_t i, const rf_read_state_t *rs) {
    s->n[i].reads_done++;
    s->st.reads++;
    /* Linearizable: the read reflects every write committed before it began. */
    if (rs->ctx < SIM_READS_MAX && rs->index < s->read_floor[rs->ctx])
        fail(s,
             "read %" PRIu64 " at n%u got index %" PRIu64 " below commit %" PRIu64 " at its start",
             rs->ctx, i + 1, rs->index, s->read_floor[rs->ctx]);
}

static void send_msg(rf_sim_t *s, uint32_t i, const rf_msg_t *m);

/* A ready handled non-atomically: the hard state and the entries are written (the entries
 * unsynced), only a prefix of the messages leaves, then the node dies. */
static void crash_mid_ready(rf_sim_t *s, uint32_t i, const rf_ready_t *rd) {
    uint32_t sent = (uint32_t)prng_below(&s->prng, rd->msg_count + 1u);
    for (uint32_t k = 0; k < sent; k++) send_msg(s, i, &rd->msgs[k]);
    tracef(s, "n%u crashes mid-ready: %u of %u messages sent, %u entries unsynced", i + 1, sent,
           rd->msg_count, rd->entry_count);
    rf_sim_crash(s, i);
}

/* ---- Snapshots ---- */

/* A leader's chunk gets its bytes from the snapshot it names; the core names only snapshots
 * it was told of that still reach its window, which this node keeps (the two newest). */
static void send_msg(rf_sim_t *s, uint32_t i, const rf_msg_t *m) {
    if (m->h.type != RF_MSG_SNAP) {
        net_put(s, m);
        return;
    }
    const sim_node_t *n = &s->n[i];
    const sim_snap_t *sn = NULL;
    for (int k = 1; k >= 0 && !sn; k--)
        if (n->snaps[k].index == m->h.index && n->snaps[k].term == m->h.log_term) sn = &n->snaps[k];
    if (!sn) {
        fail(s, "n%u sends a chunk of snapshot %" PRIu64 "/%" PRIu64 " it does not keep", i + 1,
             m->h.index, m->h.log_term);
        return;
    }
    cp_assert(m->h.entry_count == 1 && m->h.ctx + m->entries[0].size <= sn->size);
    rf_entry_t e = {
        .term = m->entries[0].term, .size = m->entries[0].size, .data = sn->bytes + m->h.ctx};
    rf_msg_t c = {.h = m->h, .entries = &e};
    net_put(s, &c);
}

/* Every snap_every applied entries: the state at applied, kept durably; the window is
 * compacted to the snapshot before (as the node does, so a damaged newest one is survivable). */
static void take_snapshot(rf_sim_t *s, uint32_t i) {
    sim_node_t *n = &s->n[i];
    if (!s->snap_every || n->applied < n->snaps[1].index + s->snap_every) return;
    sim_snap_t *sn = &n->snaps[0], *nw = &n->snaps[1];
    sim_snap_t older = *nw; /* the buffers trade places: the oldest one is overwritten */
    *nw = *sn;
    *sn = older;
    nw->index = n->applied;
    nw->term = rf_term_at(n->r, n->applied);
    snap_reserve(nw, SIM_SNAP_LEDGER);
    nw->size = ledger_save(n->ledger, nw, SIM_SNAP_LEDGER);
    uint8_t *b = nw->bytes;
    uint64_t magic = SIM_SNAP_MAGIC;
    memcpy(b, &magic, 8);
    memcpy(b + 8, &n->applied, 8);
    memcpy(b + 16, &nw->term, 8);
    memcpy(b + 24, &n->chain, 8);
    memcpy(b + 32, &nw->size, 8);
    rf_members_t m;
    bool ok = rf_members_at(n->r, n->applied, &m);
    cp_assert(ok);
    rf_members_encode(&m, (rf_members_wire_t *)(b + SIM_SNAP_MEMBERS));
    memcpy(b + SIM_SNAP_HDR, n->eff, SIM_IDS_MAX);
    cp_assert(nw->term != 0);
    rf_snapshot_avail(n->r, nw->index, nw->term, nw->size);
    if (sn->index) rf_compact(n->r, sn->index);
    s->st.snapshots++;
}

/* The whole snapshot arrived: verify it against what every replica applied at its index,
 * install it (durably: it survives a crash from here on) and restart the log after it. */
static void install_snapshot(rf_sim_t *s, uint32_t i, const rf_snap_chunk_t *c) {
    sim_node_t *n = &s->n[i];
    uint64_t magic = 0, index = 0, term = 0, chain = 0, size = 0;
    if (c->total >= SIM_SNAP_LEDGER && c->total <= n->rx.cap) {
        memcpy(&magic, n->rx.bytes, 8);
        memcpy(&index, n->rx.bytes + 8, 8);
        memcpy(&term, n->rx.bytes + 16, 8);
        memcpy(&chain, n->rx.bytes + 24, 8);
        memcpy(&size, n->rx.bytes + 32, 8);
    }
    if (magic != SIM_SNAP_MAGIC || index != c->index || term != c->term || size != c->total ||
        prng_chance_ppm(&s->prng, 50000)) {
        tracef(s, "n%u: snapshot %" PRIu64 " does not verify, dropped", i + 1, c->index);
        s->st.install_failures++;
        rf_snapshot_failed(n->r);
        return;
    }
    const sim_com_t *com = &s->com[index];
    if (com->chain && com->chain != chain)
        fail(s, "n%u installs snapshot %" PRIu64 " whose state no replica had there", i + 1, index);
    if (index > s->max_commit) fail(s, "n%u installs uncommitted snapshot %" PRIu64, i + 1, index);
    for (uint64_t k = index + 1; k <= n->persisted; k++)
        if (k <= s->max_commit && s->com[k].term == n->log[k].term && k <= n->commit_checked)
            fail(s, "n%u installing snapshot %" PRIu64 " throws away committed entry %" PRIu64,
                 i + 1, index, k);
    rf_members_t m;
    if (!rf_members_decode(n->rx.bytes + SIM_SNAP_MEMBERS, 64, &m)) {
        fail(s, "n%u received snapshot %" PRIu64 " without a valid membership", i + 1, index);
        return;
    }
    tracef(s, "n%u installs snapshot %" PRIu64 " term %" PRIu64 " (log had %" PRIu64 ")", i + 1,
           index, term, n->len);
    n->snaps[0].index = n->snaps[0].term = 0;
    sim_snap_t received = n->rx; /* the received bytes become the durable snapshot */
    n->rx = n->snaps[1];
    n->snaps[1] = received;
    n->snaps[1].index = index;
    n->snaps[1].term = term;
    n->snaps[1].size = size;
    n->len = n->persisted = index;
    n->log[index] = (sim_ent_t){.term = term};
    /* The ledger comes with the snapshot, as an image the leader took of its own: it must
     * restore whole and consistent, and be the ledger every replica had at that index. */
    const char *err = state_load(n, &n->snaps[1]);
    if (err)
        fail(s, "n%u installs snapshot %" PRIu64 " whose ledger image is bad: %s", i + 1, index,
             err);
    state_check(s, i, index, "installs");
    n->commit_checked = index;
    n->installs++;
    s->st.installs++;
    rf_snapshot_installed(n->r, index, term, &m);
    rf_snapshot_avail(n->r, index, term, size);
}

static void process_node(rf_sim_t *s, uint32_t i) {
    sim_node_t *n = &s->n[i];
    for (int rounds = 0; n->up && rf_has_ready(n->r) && rounds < 64; rounds++) {
        rf_ready_t rd;
        rf_ready(n->r, &rd);
        if (rd.hs_changed) { /* rule 3: durable before any message of this ready leaves */
            n->hs_term = rd.hs.term;
            n->hs_vote = rd.hs.vote;
        }
        if (rd.entry_count) write_entries(s, i, &rd);
        if (rd.has_chunk) {
            snap_reserve(&n->rx, rd.chunk.offset + rd.chunk.size);
            memcpy(n->rx.bytes + rd.chunk.offset, rd.chunk.data, rd.chunk.size);
        }
        if (!s->calm && prng_chance_ppm(&s->prng, s->mid_crash_ppm)) {
            crash_mid_ready(s, i, &rd); /* rd is gone with the core */
            return;
        }
        for (uint32_t k = 0; k < rd.msg_count; k++)
            if (!prng_chance_ppm(&s->prng, s->loss_ppm)) send_msg(s, i, &rd.msgs[k]);
        for (uint32_t k = 0; k < rd.committed_count; k++)
            apply_one(s, i, rd.committed_first + k, &rd.committed[k]);
        for (uint32_t k = 0; k < rd.read_count; k++) read_done(s, i, &rd.reads[k]);
        rf_snap_chunk_t chunk = rd.chunk;
        rf_advance(n->r, &rd);
        if (rd.has_chunk && chunk.last) install_snapshot(s, i, &chunk);
        take_snapshot(s, i);
    }
}

/* ---- Invariants ---- */

static bool leader_complete(rf_sim_t *s, uint32_t i) {
    rf_info_t inf;
    rf_status(s->n[i].r, &inf);
    for (uint64_t k = inf.first_index - 1; k <= s->max_commit; k++) /* the rest: snapshot */
        if (s->com[k].term && rf_term_at(s->n[i].r, k) != s->com[k].term)
            return fail(s, "leader n%u lacks committed entry %" PRIu64, i + 1, k);
    return true;
}

static bool check_node(rf_sim_t *s, uint32_t i) {
    sim_node_t *n = &s->n[i];
    rf_info_t inf;
    rf_status(n->r, &inf);
    bool was_leader = n->role == RF_LEADER && n->role_term == inf.term;
    /* Rule 1, checked where it acts: a leader moves its commit index only onto an entry of
     * its own term (older ones commit under it), else Figure 8 can overwrite them. */
    if (was_leader && inf.role == RF_LEADER && inf.commit_index > n->commit_checked &&
        rf_term_at(n->r, inf.commit_index) != inf.term)
        return fail(s,
                    "leader n%u of term %" PRIu64 " commits index %" PRIu64 " of term %" PRIu64
                    " by counting replicas (rule 1)",
                    i + 1, inf.term, inf.commit_index, rf_term_at(n->r, inf.commit_index));
    bool campaigns = inf.role == RF_PRE_CANDIDATE || inf.role == RF_CANDIDATE;
    rf_members_t own;
    bool voter = false;
    rf_members(n->r, &own);
    if (campaigns && !(rf_members_has(&own, i + 1, &voter) && voter))
        return fail(s, "n%u campaigns in term %" PRIu64 " but is not a voter of its membership",
                    i + 1, inf.term);
    /* Rule 5, checked where it acts: a campaign starts only with every written entry durable,
     * and a (pre-)candidate's log does not move until it leaves that role. */
    if (campaigns && inf.durable_index != inf.last_index)
        return fail(s,
                    "n%u campaigns in term %" PRIu64 " with a write in flight (last %" PRIu64
                    " durable %" PRIu64 ", rule 5)",
                    i + 1, inf.term, inf.last_index, inf.durable_index);
    if (inf.role != n->role || inf.term != n->role_term) {
        tracef(s,
               "n%u is %s in term %" PRIu64 " (last %" PRIu64 " durable %" PRIu64 " commit %" PRIu64
               ")",
               i + 1, rf_role_str(inf.role), inf.term, inf.last_index, inf.durable_index,
               inf.commit_index);
        n->role = inf.role;
        n->role_term = inf.term;
    }
    if (inf.role == RF_LEADER) {
        while (inf.term >= s->leader_cap) {
            s->leader_of = realloc(s->leader_of, 2 * s->leader_cap * sizeof *s->leader_of);
            cp_assert(s->leader_of);
            memset(s->leader_of + s->leader_cap, 0, s->leader_cap * sizeof *s->leader_of);
            s->leader_cap *= 2;
        }
        uint32_t *l = &s->leader_of[inf.term];
        if (*l && *l != i + 1)
            return fail(s, "two leaders in term %" PRIu64 ": n%u and n%u", inf.term, *l, i + 1);
        if (!*l) {
            *l = i + 1;
            s->st.elections++;
            if (!leader_complete(s, i)) return false;
        }
    }
    if (inf.commit_index > inf.durable_index && inf.role == RF_LEADER)
        return fail(s, "leader n%u commit %" PRIu64 " passes its durable index %" PRIu64, i + 1,
                    inf.commit_index, inf.durable_index);
    uint64_t from = n->commit_checked + 1;
    if (from + 1 < inf.first_index) from = inf.first_index - 1; /* below: in a snapshot */
    for (uint64_t k = from; k <= inf.commit_index; k++) {
        uint64_t t = rf_term_at(n->r, k);
        if (s->com[k].term && s->com[k].term != t)
            return fail(
                s, "n%u commits index %" PRIu64 " term %" PRIu64 ", committed was term %" PRIu64,
                i + 1, k, t, s->com[k].term);
        s->com[k].term = t;
    }
    if (inf.commit_index > n->commit_checked) n->commit_checked = inf.commit_index;
    if (inf.commit_index > s->max_commit) s->max_commit = inf.commit_index;
    return true;
}

/* Exactly once: each acknowledged command is in the state of every replica applied that far. */
static bool check_acked(rf_sim_t *s) {
    for (uint64_t id = 1; id < s->next_id; id++) {
        const sim_pend_t *p = &s->pend[id];
        if (!p->acked) continue;
        for (uint32_t i = 0; i < s->cfg.nodes; i++) {
            const sim_node_t *n = &s->n[i];
            if (n->up && n->applied >= p->ack_index && n->eff[id] != 1)
                return fail(s,
                            "acknowledged cmd %" PRIu64 " (index %" PRIu64 ") not applied on n%u",
                            id, p->ack_index, i + 1);
        }
    }
    return true;
}

bool rf_sim_check(rf_sim_t *s) {
    for (uint32_t i = 0; i < s->cfg.nodes && !s->failed; i++)
        if (s->n[i].up) check_node(s, i);
    if (!s->failed && s->now % 64 == 0) check_acked(s);
    return !s->failed;
}

bool rf_sim_process(rf_sim_t *s) {
    for (int again = 1, rounds = 0; again && rounds < 16; rounds++) {
        again = 0;
        for (uint32_t i = 0; i < s->cfg.nodes; i++) {
            if (!s->n[i].up) continue;
            process_node(s, i);
            again |= s->n[i].up && rf_has_ready(s->n[i].r); /* it may crash mid-ready */
        }
    }
    return rf_sim_check(s);
}

/* ---- Manual control ---- */

rf_t *rf_sim_raft(rf_sim_t *s, uint32_t i) {
    return s->n[i].up ? s->n[i].r : NULL;
}

void rf_sim_tick(rf_sim_t *s, uint32_t i) {
    if (s->n[i].up) rf_tick(s->n[i].r);
}

void rf_sim_fsync_upto(rf_sim_t *s, uint32_t i, uint64_t index) {
    sim_node_t *n = &s->n[i];
    if (index > n->len) index = n->len;
    if (!n->up || index <= n->persisted) return;
    n->persisted = index;
    tracef(s, "n%u fsync up to %" PRIu64, i + 1, index);
    rf_persisted(n->r, index, n->log[index].term);
}

void rf_sim_fsync(rf_sim_t *s, uint32_t i) {
    rf_sim_fsync_upto(s, i, s->n[i].len);
}

uint32_t rf_sim_queued(const rf_sim_t *s) {
    return s->queue_count;
}

void rf_sim_crash(rf_sim_t *s, uint32_t i) {
    sim_node_t *n = &s->n[i];
    if (!n->up) return;
    /* Entries never reported durable may or may not have reached the disk: a random prefix
     * of the unsynced tail survives (the WAL drops a torn last entry by its checksum), the
     * rest is lost. An entry reported durable is never lost. */
    uint64_t keep = s->cfg.manual ? 0 : prng_below(&s->prng, n->len - n->persisted + 1);
    tracef(s, "CRASH n%u (loses %" PRIu64 " unsynced entries, %" PRIu64 " survive)", i + 1,
           n->len - n->persisted - keep, keep);
    rf_destroy(n->r);
    n->r = NULL;
    ledger_reset(n->ledger); /* the state machine is memory only */
    n->up = false;
    n->len = n->persisted + keep;
    n->persisted = n->len;
    s->st.crashes++;
}

void rf_sim_restart(rf_sim_t *s, uint32_t i) {
    if (s->n[i].up) return;
    tracef(s, "restart n%u (term %" PRIu64 " vote %u, %" PRIu64 " entries)", i + 1, s->n[i].hs_term,
           s->n[i].hs_vote, s->n[i].persisted);
    node_start(s, i);
}

static rf_status_t propose_id(rf_sim_t *s, uint32_t i, uint64_t id, uint64_t *index) {
    sim_node_t *n = &s->n[i];
    if (!n->up) return RF_ERR_NOT_LEADER;
    uint8_t cmd[SIM_CMD];
    memcpy(cmd, &id, 8);
    memcpy(cmd + 8, &s->now, 8);
    uint64_t idx = 0;
    rf_status_t st = rf_propose(n->r, cmd, SIM_CMD, &idx);
    if (st != RF_OK) return st;
    rf_info_t inf;
    rf_status(n->r, &inf);
    s->pend[id] =
        (sim_pend_t){.index = idx, .term = inf.term, .since = s->now, .node = i, .proposed = true};
    s->st.proposals++;
    tracef(s, "client: cmd %" PRIu64 " proposed at n%u index %" PRIu64 " term %" PRIu64, id, i + 1,
           idx, inf.term);
    if (index) *index = idx;
    return RF_OK;
}

rf_status_t rf_sim_propose(rf_sim_t *s, uint32_t i, uint64_t id, uint64_t *index) {
    cp_assert(id > 0 && id < SIM_IDS_MAX);
    if (id >= s->next_id) s->next_id = id + 1;
    return propose_id(s, i, id, index);
}

int rf_sim_leader(const rf_sim_t *s) {
    int best = -1;
    uint64_t term = 0;
    for (uint32_t i = 0; i < s->cfg.nodes; i++) {
        if (!s->n[i].up) continue;
        rf_info_t inf;
        rf_status(s->n[i].r, &inf);
        if (inf.role == RF_LEADER && inf.term >= term) {
            best = (int)i;
            term = inf.term;
        }
    }
    return best;
}

uint64_t rf_sim_applied(const rf_sim_t *s, uint32_t i) {
    return s->n[i].applied;
}
uint32_t rf_sim_reads_done(const rf_sim_t *s, uint32_t i) {
    return s->n[i].reads_done;
}
uint64_t rf_sim_log_len(const rf_sim_t *s, uint32_t i) {
    return s->n[i].len;
}
uint64_t rf_sim_persisted(const rf_sim_t *s, uint32_t i) {
    return s->n[i].persisted;
}
const char *rf_sim_failure(const rf_sim_t *s) {
    return s->failed ? s->failure : NULL;
}

void rf_sim_stats(const rf_sim_t *s, rf_sim_stats_t *out) {
    *out = s->st;
    out->steps = s->now;
    out->max_commit = s->max_commit;
}

void rf_sim_print_trace(const rf_sim_t *s, FILE *f) {
    uint32_t n = s->trace_n < SIM_TRACE ? s->trace_n : SIM_TRACE;
    fprintf(f, "---- last %u events (seed %" PRIu64 ", %u nodes) ----\n", n, s->cfg.seed,
            s->cfg.nodes);
    for (uint32_t k = s->trace_n - n; k < s->trace_n; k++)
        fprintf(f, "%s\n", s->trace[k % SIM_TRACE]);
    fprintf(f, "VIOLATION: %s\n", s->failed ? s->failure : "(none)");
}

/* ---- The random schedule ---- */

static uint32_t pick_node(rf_sim_t *s, bool up) {
    uint32_t cand[RF_SIM_NODES_MAX], k = 0;
    for (uint32_t i = 0; i < s->cfg.nodes; i++)
        if (s->n[i].up == up) cand[k++] = i;
    return k ? cand[prng_below(&s->prng, k)] : UINT32_MAX;
}

static void ev_propose(rf_sim_t *s) {
    int l = rf_sim_leader(s);
    uint32_t i = l >= 0 && prng_below(&s->prng, 10) < 8 ? (uint32_t)l : pick_node(s, true);
    if (i == UINT32_MAX) return;
    uint64_t id = 0;
    if (prng_below(&s->prng, 2) && s->next_id > 1) { /* retry an unacknowledged command */
        uint64_t c = 1 + prng_below(&s->prng, s->next_id - 1);
        if (!s->pend[c].acked && s->now - s->pend[c].since > 100) id = c;
    }
    if (!id) {
        if (s->next_id >= SIM_IDS_MAX - 1) return;
        id = s->next_id++;
    }
    (void)propose_id(s, i, id, NULL);
}

static void ev_partition(rf_sim_t *s) {
    uint32_t kind = (uint32_t)prng_below(&s->prng, 4),
             a = (uint32_t)prng_below(&s->prng, s->cfg.nodes),
             b = (uint32_t)prng_below(&s->prng, s->cfg.nodes);
    if (kind == 0) {
        memset(s->blocked, 0, sizeof s->blocked);
        tracef(s, "heal all links");
    } else if (kind == 1 && a != b) {
        s->blocked[a][b] = true;
        tracef(s, "block link n%u->n%u (one way)", a + 1, b + 1);
    } else if (kind == 2) {
        int l = rf_sim_leader(s); /* leaders are the interesting ones to cut off */
        if (l >= 0 && prng_below(&s->prng, 2)) a = (uint32_t)l;
        rf_sim_isolate(s, a, true);
        tracef(s, "isolate n%u", a + 1);
    } else {
        rf_sim_isolate(s, a, false);
        tracef(s, "reconnect n%u", a + 1);
    }
}

static void ev_read(rf_sim_t *s) {
    int l = rf_sim_leader(s);
    if (l < 0 || s->next_read >= SIM_READS_MAX) return;
    uint64_t ctx = s->next_read;
    if (rf_read_index(s->n[l].r, ctx) != RF_OK) return;
    s->read_floor[ctx] = s->max_commit;
    s->next_read++;
    tracef(s, "read index %" PRIu64 " at n%d", ctx, l + 1);
}

rf_status_t rf_sim_members(rf_sim_t *s, uint32_t i, rf_conf_op_t op, uint32_t id) {
    static const char *names[] = {"?", "add learner", "promote", "remove"};
    if (!s->n[i].up) return RF_ERR_NOT_LEADER;
    uint64_t index = 0;
    rf_status_t st = rf_propose_members(s->n[i].r, op, id, NULL, 0, &index);
    if (st == RF_OK) {
        s->st.member_changes++;
        tracef(s, "n%u proposes: %s n%u (index %" PRIu64 ")", i + 1, names[op], id, index);
    }
    return st;
}

/* One server at a time: add an outsider as a learner, promote a learner that has caught up
 * (or remove it), remove a voter while at least three remain, the leader itself included. */
static void ev_members(rf_sim_t *s) {
    int l = rf_sim_leader(s);
    if (!s->members_mode || l < 0) return;
    rf_t *r = s->n[l].r;
    rf_members_t m;
    rf_members(r, &m);
    uint32_t id = 1 + (uint32_t)prng_below(&s->prng, s->cfg.nodes);
    bool voter = false;
    rf_conf_op_t op = RF_CONF_REMOVE;
    rf_info_t inf;
    rf_status(r, &inf);
    uint64_t match = 0;
    if (!rf_members_has(&m, id, &voter))
        op = RF_CONF_ADD_LEARNER;
    else if (!voter && rf_peer_match(r, id, &match) && match >= inf.commit_index &&
             prng_below(&s->prng, 4))
        op = RF_CONF_PROMOTE;
    else if (voter && __builtin_popcount(m.voters) < 3)
        return;
    (void)rf_sim_members(s, (uint32_t)l, op, id);
}

static void ev_transfer(rf_sim_t *s) {
    int l = rf_sim_leader(s);
    uint32_t to = (uint32_t)prng_below(&s->prng, s->cfg.nodes);
    if (l < 0 || to == (uint32_t)l) return;
    if (rf_transfer_leadership(s->n[l].r, to + 1) == RF_OK)
        tracef(s, "transfer n%d -> n%u", l + 1, to + 1);
}

/* Delivery order: any queued message, uniformly. A message thus waits for a random number
 * of deliveries, geometric in the queue length: under load (partitions, stalled nodes) old
 * messages arrive hundreds of steps late, after terms changed. */
static uint32_t pick_msg(rf_sim_t *s) {
    return (uint32_t)prng_below(&s->prng, s->queue_count);
}

/* A burst of up to half the queue: the network keeps up with what the nodes send (one
 * message per event would fall behind heartbeats and leave every message stale). */
static void ev_deliver(rf_sim_t *s);

static void ev_deliver_burst(rf_sim_t *s) {
    for (uint64_t k = prng_below(&s->prng, s->queue_count / 2 + 1) + 1; k && s->queue_count; k--)
        ev_deliver(s);
}

static void ev_deliver(rf_sim_t *s) {
    if (!s->queue_count) return;
    uint32_t pos = pick_msg(s);
    if (prng_chance_ppm(&s->prng, s->dup_ppm)) {
        sim_msg_t *sm = &s->pool[s->queue[pos]];
        rf_entry_t ents[RF_MSG_ENTRIES_MAX];
        msg_entries(sm, ents);
        rf_msg_t m = {.h = sm->h, .entries = ents};
        net_put(s, &m); /* a duplicate stays queued */
    }
    net_deliver(s, pos);
}

/* A group commit: often only a prefix of what was written (so a follower acknowledges part
 * of an append); a slow disk syncs rarely. */
static void ev_fsync(rf_sim_t *s) {
    uint32_t i = pick_node(s, true);
    if (i == UINT32_MAX) return;
    sim_node_t *n = &s->n[i];
    if (s->now < s->slow_until[i] && prng_below(&s->prng, 8)) return;
    if (n->len <= n->persisted) return;
    if (prng_below(&s->prng, 2)) {
        rf_sim_fsync(s, i);
        return;
    }
    rf_sim_fsync_upto(s, i, n->persisted + 1 + prng_below(&s->prng, n->len - n->persisted));
}

/* The leader, or a random up node when there is none (or by chance). */
static uint32_t pick_victim(rf_sim_t *s, uint32_t leader_pct) {
    int l = rf_sim_leader(s);
    if (l >= 0 && prng_below(&s->prng, 100) < leader_pct) return (uint32_t)l;
    return pick_node(s, true);
}

/* Cuts side (a bit set) from the rest, both ways or (sometimes) one way only. */
static void cut(rf_sim_t *s, uint32_t side, bool one_way) {
    for (uint32_t a = 0; a < s->cfg.nodes; a++)
        for (uint32_t b = 0; b < s->cfg.nodes; b++)
            if ((side >> a & 1) && !(side >> b & 1)) {
                s->blocked[a][b] = true;
                if (!one_way) s->blocked[b][a] = true;
            }
}

/* A random minority of the followers of l, as a bit set (may be empty). */
static uint32_t minority_with(rf_sim_t *s, uint32_t l) {
    uint32_t side = 1u << l, room = (s->cfg.nodes - 1) / 2; /* l plus fewer than a quorum */
    uint32_t extra = (uint32_t)prng_below(&s->prng, room);
    for (uint32_t k = 0; k < extra; k++) side |= 1u << prng_below(&s->prng, s->cfg.nodes);
    return side;
}

/* Figure 8 of the Raft paper, as a script over several steps: (1) the leader gets its newest
 * entries to a minority at most, then crashes; (2) another node is elected, writes its own
 * entries at those indexes, and is cut off and crashed before replicating them; (3) the old
 * leader comes back, is elected with its old entries, its disk slow so that its own new
 * entry lags; (4) it crashes, the middle leader comes back. A leader that committed an
 * older-term entry by counting replicas in (3) sees it overwritten in (4). */
static void nem_figure8(rf_sim_t *s) {
    int l = rf_sim_leader(s);
    if (l < 0 || s->fig8_phase) return;
    uint32_t side = minority_with(s, (uint32_t)l);
    for (uint32_t b = 0; b < s->cfg.nodes; b++) /* l's appends reach its minority only */
        if (!(side >> b & 1)) s->blocked[l][b] = true;
    for (int k = 0; k < 3 && s->next_id < SIM_IDS_MAX - 1; k++)
        (void)propose_id(s, (uint32_t)l, s->next_id++, NULL);
    rf_info_t inf;
    rf_status(s->n[l].r, &inf);
    s->fig8_old = (uint32_t)l;
    s->fig8_term = inf.term;
    s->fig8_phase = 1;
    s->fig8_at = s->now + 1 + prng_below(&s->prng, 20);
    tracef(s, "FIGURE 8 (1): n%d replicates to set 0x%x only, crashes at %" PRIu64, l + 1, side,
           s->fig8_at);
}

/* The leader of a term above fig8_term other than node skip, or -1. */
static int fig8_new_leader(rf_sim_t *s, uint32_t skip) {
    int l = rf_sim_leader(s);
    if (l < 0 || (uint32_t)l == skip) return -1;
    rf_info_t inf;
    rf_status(s->n[l].r, &inf);
    if (inf.term <= s->fig8_term) return -1;
    s->fig8_term = inf.term;
    return l;
}

static void fig8_step(rf_sim_t *s) {
    int l;
    if (s->now > s->fig8_at + 600) s->fig8_phase = 0; /* the script stalled: give up */
    if (s->fig8_phase == 1 && s->now >= s->fig8_at) {
        rf_sim_crash(s, s->fig8_old);
        memset(s->blocked, 0, sizeof s->blocked);
        s->fig8_phase = 2;
    } else if (s->fig8_phase == 2 && (l = fig8_new_leader(s, s->fig8_old)) >= 0) {
        s->fig8_mid = (uint32_t)l;
        rf_sim_isolate(s, s->fig8_mid, true);
        if (s->next_id < SIM_IDS_MAX - 1) (void)propose_id(s, s->fig8_mid, s->next_id++, NULL);
        s->fig8_phase = 3;
        s->fig8_at = s->now + 1 + prng_below(&s->prng, 10);
        tracef(s, "FIGURE 8 (2): n%d elected, cut off, crashes at %" PRIu64, l + 1, s->fig8_at);
    } else if (s->fig8_phase == 3 && s->now >= s->fig8_at) {
        rf_sim_crash(s, s->fig8_mid);
        rf_sim_isolate(s, s->fig8_mid, false);
        rf_sim_restart(s, s->fig8_old);
        s->fig8_phase = 4;
    } else if (s->fig8_phase == 4 && (l = fig8_new_leader(s, s->fig8_mid)) >= 0) {
        s->slow_until[l] = s->now + 100;
        s->fig8_phase = 5;
        s->fig8_at = s->now + 5 + prng_below(&s->prng, 40);
        tracef(s, "FIGURE 8 (3): n%d elected, slow disk, crashes at %" PRIu64, l + 1, s->fig8_at);
        s->fig8_old = (uint32_t)l;
    } else if (s->fig8_phase == 5 && s->now >= s->fig8_at) {
        tracef(s, "FIGURE 8 (4): n%u crashes, n%u comes back", s->fig8_old + 1, s->fig8_mid + 1);
        rf_sim_crash(s, s->fig8_old);
        rf_sim_restart(s, s->fig8_mid);
        s->fig8_phase = 0;
    }
}

/* The last fault ends: links heal, most crashed nodes come back. Faults are short so that
 * a quorum forms again soon and the next fault hits a fresh leader. */
static void nem_heal(rf_sim_t *s) {
    memset(s->blocked, 0, sizeof s->blocked);
    for (uint32_t i = 0; i < s->cfg.nodes; i++)
        if (!s->n[i].up && prng_below(&s->prng, 4)) rf_sim_restart(s, i);
}

static void nem_lag(rf_sim_t *s) {
    int l = rf_sim_leader(s);
    uint32_t i = pick_node(s, true);
    if (l < 0 || i == UINT32_MAX || i == (uint32_t)l) return;
    s->lag_node = i;
    s->lag_down = prng_below(&s->prng, 2);
    s->lag_until = s->now + 200 + prng_below(&s->prng, 600);
    if (s->lag_down) rf_sim_crash(s, i);
    tracef(s, "NEMESIS n%u %s until %" PRIu64, i + 1, s->lag_down ? "down" : "cut off",
           s->lag_until);
}

/* Keeps the lagging follower down or cut off through other faults and heals. */
static void lag_enforce(rf_sim_t *s) {
    if (s->now >= s->lag_until) return;
    if (s->lag_down)
        rf_sim_crash(s, s->lag_node);
    else
        rf_sim_isolate(s, s->lag_node, true);
}

/* One scripted fault; the next one comes after a short calm window. */
static void nemesis(rf_sim_t *s) {
    s->next_fault = s->now + 20 + prng_below(&s->prng, 80);
    if (s->fig8_phase) return; /* the script runs its own faults */
    nem_heal(s);
    uint32_t kind = (uint32_t)prng_below(&s->prng, 9), i;
    if (kind == 0 || kind == 1) {
        if ((i = pick_victim(s, 80)) != UINT32_MAX) rf_sim_crash(s, i);
    } else if (kind == 2) {
        if ((i = pick_victim(s, 80)) == UINT32_MAX) return;
        uint32_t side = minority_with(s, i);
        bool one_way = prng_below(&s->prng, 4) == 0;
        cut(s, side, one_way);
        tracef(s, "NEMESIS cut set 0x%x from the rest%s", side, one_way ? " (one way)" : "");
    } else if (kind == 3 || kind == 4) {
        nem_figure8(s);
    } else if (kind == 8) {
        if (s->now >= s->lag_until && s->snap_every) nem_lag(s);
    } else if (kind == 5) {
        if ((i = pick_victim(s, 50)) == UINT32_MAX) return;
        s->slow_until[i] = s->now + 50 + prng_below(&s->prng, 300);
        tracef(s, "NEMESIS slow disk at n%u until %" PRIu64, i + 1, s->slow_until[i]);
    } else {
        tracef(s, "NEMESIS heal");
    }
}

/* The mix of events, per mille: ticks and deliveries dominate, so elections and
 * replication make progress between faults; the nemesis adds a scripted fault every few
 * dozen steps, so a run sees many leader changes, crashes between write and fsync and in
 * the middle of a ready, slow disks, stale messages and minority partitions. */
static void step_random(rf_sim_t *s) {
    if (s->fig8_phase) fig8_step(s);
    if (s->now >= s->next_fault) nemesis(s);
    lag_enforce(s);
    uint32_t r = (uint32_t)prng_below(&s->prng, 1000), i;
    if (r < 300) { /* the clock: every up node ticks (skew comes from the next case) */
        for (i = 0; i < s->cfg.nodes; i++) rf_sim_tick(s, i);
    } else if (r < 340) {
        if ((i = pick_node(s, true)) != UINT32_MAX) rf_tick(s->n[i].r);
    } else if (r < 680) {
        ev_deliver_burst(s);
    } else if (r < 760) {
        ev_fsync(s);
    } else if (r < 840) {
        ev_propose(s);
    } else if (r < 848) {
        ev_partition(s);
    } else if (r < 851) {
        if ((i = pick_victim(s, 50)) != UINT32_MAX) rf_sim_crash(s, i);
    } else if (r < 870) {
        if ((i = pick_node(s, false)) != UINT32_MAX) rf_sim_restart(s, i);
        lag_enforce(s);
    } else if (r < 920) {
        ev_read(s);
    } else if (r < 935) {
        ev_transfer(s);
    } else if (r < 965) {
        ev_members(s);
    } else if (s->queue_count) {
        net_remove(s, (uint32_t)prng_below(&s->prng, s->queue_count)); /* lost */
        s->st.dropped++;
    }
}

bool rf_sim_run(rf_sim_t *s, uint32_t steps) {
    for (uint32_t k = 0; k < steps && !s->failed; k++) {
        s->now++;
        step_random(s);
        rf_sim_process(s);
    }
    return !s->failed && check_acked(s);
}

/* ---- Liveness ---- */

/* One calm round: every node ticks, every message is delivered, every log synced. */
static void calm_round(rf_sim_t *s) {
    s->now++;
    for (uint32_t i = 0; i < s->cfg.nodes; i++) rf_sim_tick(s, i);
    rf_sim_process(s);
    for (int k = 0; k < 8 && s->queue_count; k++) {
        rf_sim_deliver(s, SIM_ANY, SIM_ANY, 0);
        for (uint32_t i = 0; i < s->cfg.nodes; i++) rf_sim_fsync(s, i);
        rf_sim_process(s);
    }
    for (uint32_t i = 0; i < s->cfg.nodes; i++) rf_sim_fsync(s, i);
    rf_sim_process(s);
}

/* Whether node i is a member of the group as the leader l sees it. */
static bool member_of(const rf_sim_t *s, int l, uint32_t i) {
    rf_members_t m;
    rf_members(s->n[l].r, &m);
    return rf_members_has(&m, i + 1, NULL);
}

static int stable_leader(const rf_sim_t *s) {
    int l = rf_sim_leader(s);
    if (l < 0) return -1;
    rf_info_t li;
    rf_status(s->n[l].r, &li);
    for (uint32_t i = 0; i < s->cfg.nodes; i++) {
        if (!member_of(s, l, i)) continue;
        rf_info_t inf;
        rf_status(s->n[i].r, &inf);
        if (inf.term != li.term || inf.leader != (uint32_t)l + 1) return -1;
    }
    return l;
}

static bool all_done(const rf_sim_t *s) {
    for (uint64_t id = 1; id < s->next_id; id++)
        if (!s->pend[id].acked) return false;
    int l = rf_sim_leader(s);
    if (l < 0) return false;
    uint64_t a = s->n[l].applied;
    for (uint32_t i = 0; i < s->cfg.nodes; i++)
        if (member_of(s, l, i) && (s->n[i].applied != a || a < s->max_commit)) return false;
    return true;
}

static void calm_rounds(rf_sim_t *s, uint32_t rounds) {
    for (uint32_t k = 0; k < rounds && !s->failed; k++) calm_round(s);
}

/* Rule 8, availability: a follower cut off from the leader (only) must not depose it, during
 * the cut or after (pre-vote, and the lease that makes the others ignore it), and a leader cut off
 * from a quorum must step down within an election timeout or so (check-quorum). */
static bool calm_partitions(rf_sim_t *s) {
    int l = stable_leader(s);
    rf_members_t m;
    if (l < 0) return true;
    rf_members(s->n[l].r, &m);
    if (__builtin_popcount(m.voters) < 3) return true;
    uint32_t f = UINT32_MAX, et = s->cfg.election_ticks;
    for (uint32_t k = 0; k < m.count && f == UINT32_MAX; k++)
        if ((m.voters >> k & 1) && m.ids[k] != (uint32_t)l + 1) f = m.ids[k] - 1;
    rf_info_t before, after;
    rf_status(s->n[l].r, &before);
    /* f hears nobody from the leader but reaches the other followers: without pre-vote it
     * campaigns in ever higher terms, without the lease the others vote for it. */
    tracef(s, "CALM: cut n%u from leader n%d, then heal", f + 1, l + 1);
    rf_sim_block(s, f, (uint32_t)l, true);
    rf_sim_block(s, (uint32_t)l, f, true);
    calm_rounds(s, 5 * et);
    memset(s->blocked, 0, sizeof s->blocked);
    calm_rounds(s, 5 * et);
    rf_status(s->n[l].r, &after);
    if (s->failed) return false;
    if (after.role != RF_LEADER || after.term != before.term)
        return fail(
            s,
            "availability: n%u, cut from the leader only, deposed leader n%d of term %" PRIu64
            " (now term %" PRIu64 ")",
            f + 1, l + 1, before.term, after.term);
    tracef(s, "CALM: isolate leader n%d", l + 1);
    rf_sim_isolate(s, (uint32_t)l, true);
    calm_rounds(s, 3 * et);
    rf_status(s->n[l].r, &after);
    rf_sim_isolate(s, (uint32_t)l, false);
    if (s->failed) return false;
    if (after.role == RF_LEADER)
        return fail(s, "availability: leader n%d cut off from a quorum for %u ticks still leads",
                    l + 1, 3 * et);
    return true;
}

bool rf_sim_calm(rf_sim_t *s) {
    if (s->failed) return false;
    tracef(s, "CALM: heal, restart all, no loss");
    s->calm = true;
    memset(s->blocked, 0, sizeof s->blocked);
    s->loss_ppm = s->dup_ppm = 0;
    for (uint32_t i = 0; i < s->cfg.nodes; i++) rf_sim_restart(s, i);
    uint32_t bound = 30 * s->cfg.election_ticks, k;
    int l = -1;
    for (k = 0; k < bound && l < 0 && !s->failed; k++) {
        calm_round(s);
        l = stable_leader(s);
    }
    if (s->failed) return false;
    if (l < 0) return fail(s, "liveness: no stable leader within %u calm ticks", bound);
    tracef(s, "CALM: leader n%d after %u ticks", l + 1, k);
    if (s->next_id < SIM_IDS_MAX - 1) s->next_id++; /* a fresh command */
    for (k = 0; k < bound && !s->failed && !all_done(s); k++) {
        l = rf_sim_leader(s);
        for (uint64_t id = 1; l >= 0 && id < s->next_id; id++) {
            sim_pend_t *p = &s->pend[id];
            bool lost = p->proposed &&
                        (p->node != (uint32_t)l || s->now - p->since > 4 * s->cfg.election_ticks);
            if (!p->acked && (!p->proposed || lost)) (void)propose_id(s, (uint32_t)l, id, NULL);
        }
        calm_round(s);
    }
    if (s->failed) return false;
    if (!all_done(s))
        return fail(s,
                    "liveness: proposals not committed and applied everywhere within %u calm ticks",
                    bound);
    return check_acked(s) && calm_partitions(s);
}

/* Raft, the pure state machine of raft.h. Layout: the log window, sending, the roles
 * (become_*, campaign), message handlers per role, ticks, then the driver interface. */
#include "repl/raft.h"

#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/prng.h"

typedef struct rf_slot {
    uint64_t term;
    uint64_t off; /* in the arena */
    uint32_t size;
} rf_slot_t;

enum { PR_PROBE, PR_REPLICATE };

/* What the leader knows of one voter (etcd's Progress). */
typedef struct rf_progress {
    uint32_t id;
    uint8_t state;
    bool paused;     /* probe: one append out, wait for its answer or a heartbeat answer */
    bool active;     /* heard from since the last check-quorum round */
    bool needs_snap; /* next is below the window */
    uint64_t match;  /* durable and matching on the peer */
    uint64_t next;
    uint64_t hb_ack;                    /* highest heartbeat round acknowledged */
    uint64_t inflight[RF_INFLIGHT_MAX]; /* last index of each append in flight, oldest first */
    uint32_t in_start, in_count;
} rf_progress_t;

typedef struct rf_pending_read {
    rf_read_state_t rs;
    uint64_t seq;
} rf_pending_read_t;

struct rf {
    rf_config_t cfg;
    prng_t prng;
    uint32_t self_pos, quorum;
    rf_role_t role;
    uint64_t term;
    uint32_t vote, leader;
    bool hs_dirty;

    /* The window: indexes [first, last], slot of index i at slots[i % slot_cap]. */
    rf_slot_t *slots;
    uint32_t slot_cap;
    uint8_t *arena;
    uint64_t arena_cap;
    uint64_t first, last, start_term;
    uint64_t durable;       /* the driver reported [.., durable] durable */
    uint64_t unstable_from; /* first index not yet handed to the driver */
    uint64_t commit, applied;
    uint64_t verified; /* follower: [.., verified] matches the leader of this term */

    uint32_t election_elapsed, heartbeat_elapsed, timeout;
    uint32_t granted, rejected; /* bit per voter position */

    rf_progress_t pr[RF_NODES_MAX];
    uint32_t transferee, transfer_elapsed;
    uint64_t hb_seq;
    rf_pending_read_t reads[RF_READS_MAX];
    uint32_t read_count;

    rf_msg_t out[RF_OUTBOX_MAX];
    uint32_t out_count;
    rf_msg_t scratch; /* where messages go when the outbox is full: dropped */
    rf_entry_t out_entries[RF_OUTBOX_ENTRIES_MAX];
    uint32_t out_entry_count;
    rf_entry_t rd_entries[RF_READY_ENTRIES_MAX];
    rf_entry_t rd_committed[RF_READY_ENTRIES_MAX];
    rf_read_state_t rd_reads[RF_READS_MAX];
    uint32_t rd_read_count;
};

const char *rf_status_str(rf_status_t st) {
    switch (st) {
    case RF_OK: return "ok";
    case RF_ERR_NOT_LEADER: return "not leader";
    case RF_ERR_TRANSFERRING: return "leadership transfer in progress";
    case RF_ERR_FULL: return "full";
    case RF_ERR_TOO_BIG: return "entry too big";
    case RF_ERR_NOT_READY: return "leader has not committed in its term yet";
    case RF_ERR_INVALID: return "invalid argument";
    }
    return "?";
}

const char *rf_role_str(rf_role_t role) {
    static const char *names[] = {"follower", "pre-candidate", "candidate", "leader"};
    return (unsigned)role < 4 ? names[role] : "?";
}

/* ---- The log window ---- */

static rf_slot_t *slot(const rf_t *r, uint64_t index) {
    cp_assert(index >= r->first && index <= r->last);
    return &r->slots[index % r->slot_cap];
}

uint64_t rf_term_at(const rf_t *r, uint64_t index) {
    if (index == r->first - 1) return r->start_term;
    if (index < r->first || index > r->last) return 0;
    return slot(r, index)->term;
}

static rf_entry_t entry_at(const rf_t *r, uint64_t index) {
    const rf_slot_t *s = slot(r, index);
    return (rf_entry_t){
        .term = s->term, .size = s->size, .data = s->size ? r->arena + s->off : NULL};
}

/* Where an entry of size bytes goes in the arena ring; false when the window is full. Zero
 * sizes never wrap, so "last slot below the head" always means wrapped. */
static bool log_place(const rf_t *r, uint32_t size, uint64_t *off) {
    if (r->last + 1 - r->first >= r->slot_cap) return false;
    if (r->last < r->first) {
        *off = 0;
        return size <= r->arena_cap;
    }
    uint64_t head = slot(r, r->first)->off;
    const rf_slot_t *l = slot(r, r->last);
    uint64_t tail = l->off + l->size;
    if (l->off < head) { /* wrapped: free space is [tail, head) */
        *off = tail;
        return tail + size <= head;
    }
    if (tail + size <= r->arena_cap) {
        *off = tail;
        return true;
    }
    *off = 0;
    return size > 0 && size <= head;
}

static bool log_append(rf_t *r, uint64_t term, const void *data, uint32_t size) {
    uint64_t off;
    cp_assert(term >= rf_term_at(r, r->last));
    if (size > RF_ENTRY_MAX || !log_place(r, size, &off)) return false;
    r->last++;
    r->slots[r->last % r->slot_cap] = (rf_slot_t){.term = term, .off = off, .size = size};
    if (size) memcpy(r->arena + off, data, size);
    return true;
}

/* Rule 6: a conflict cuts memory at once; the driver cuts the file from the next ready. */
static void log_truncate_after(rf_t *r, uint64_t index) {
    cp_assert(index >= r->commit && index < r->last);
    r->last = index;
    if (r->durable > index) r->durable = index;
    if (r->unstable_from > index + 1) r->unstable_from = index + 1;
    if (r->verified > index) r->verified = index;
}

/* ---- Sending ---- */

static rf_msg_t *msg_new(rf_t *r, uint8_t type, uint32_t to, uint64_t term) {
    rf_msg_t *m = r->out_count < RF_OUTBOX_MAX ? &r->out[r->out_count++] : &r->scratch;
    memset(m, 0, sizeof *m);
    m->h.type = type;
    m->h.from = r->cfg.id;
    m->h.to = to;
    m->h.term = term;
    return m;
}

static int voter_pos(const rf_t *r, uint32_t id) {
    for (uint32_t i = 0; i < r->cfg.voter_count; i++)
        if (r->cfg.voters[i] == id) return (int)i;
    return -1;
}

/* One append to pr starting at pr->next: up to RF_MSG_ENTRIES_MAX entries and
 * msg_bytes_max bytes (at least one entry). Returns the last index carried. */
static uint64_t send_append(rf_t *r, rf_progress_t *pr) {
    uint64_t prev = pr->next - 1;
    rf_msg_t *m = msg_new(r, RF_MSG_APP, pr->id, r->term);
    m->h.index = prev;
    m->h.log_term = rf_term_at(r, prev);
    m->h.commit = r->commit;
    m->entries = &r->out_entries[r->out_entry_count];
    uint64_t bytes = 0;
    for (uint64_t i = pr->next; i <= r->last && m->h.entry_count < RF_MSG_ENTRIES_MAX; i++) {
        rf_entry_t e = entry_at(r, i);
        if (m->h.entry_count > 0 && bytes + e.size > r->cfg.msg_bytes_max) break;
        if (r->out_entry_count == RF_OUTBOX_ENTRIES_MAX || m == &r->scratch) break;
        r->out_entries[r->out_entry_count++] = e;
        m->h.entry_count++;
        bytes += e.size;
    }
    return prev + m->h.entry_count;
}

static bool pr_can_send(const rf_t *r, const rf_progress_t *pr) {
    if (pr->id == r->cfg.id || pr->next < r->first) return false;
    if (pr->state == PR_PROBE) return !pr->paused;
    return pr->next <= r->last && pr->in_count < RF_INFLIGHT_MAX;
}

/* Pipelining: in replicate state appends go out back to back up to the in-flight window;
 * in probe state one at a time. Runs when a ready is built, so proposals batch. */
static void flush_appends(rf_t *r) {
    for (uint32_t i = 0; i < r->cfg.voter_count; i++) {
        rf_progress_t *pr = &r->pr[i];
        if (pr->id != r->cfg.id && pr->next < r->first) pr->needs_snap = true;
        while (pr_can_send(r, pr) && r->out_count < RF_OUTBOX_MAX) {
            uint64_t last = send_append(r, pr);
            if (pr->state == PR_PROBE) {
                pr->paused = true;
                break;
            }
            if (last < pr->next) break; /* nothing fitted in the outbox */
            pr->next = last + 1;
            pr->inflight[(pr->in_start + pr->in_count++) % RF_INFLIGHT_MAX] = last;
        }
    }
}

static void bcast_heartbeat(rf_t *r) {
    for (uint32_t i = 0; i < r->cfg.voter_count; i++) {
        rf_progress_t *pr = &r->pr[i];
        if (pr->id == r->cfg.id) continue;
        rf_msg_t *m = msg_new(r, RF_MSG_HEARTBEAT, pr->id, r->term);
        m->h.commit = pr->match < r->commit ? pr->match : r->commit;
        m->h.ctx = r->hb_seq;
    }
}

/* A follower's acknowledgment: only what is durable AND verified against this term's leader
 * (rule 3). hint carries the verified index so the leader can pipeline before the fsync. */
static void send_ack(rf_t *r) {
    if (r->role != RF_FOLLOWER || r->leader == RF_NONE) return;
    rf_msg_t *m = msg_new(r, RF_MSG_APP_RESP, r->leader, r->term);
    m->h.index = r->durable < r->verified ? r->durable : r->verified;
    m->h.hint = r->verified;
}

/* ---- Roles ---- */

static void reset_timer(rf_t *r) {
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    r->timeout = r->cfg.election_ticks + (uint32_t)prng_below(&r->prng, r->cfg.election_ticks);
}

static void set_term(rf_t *r, uint64_t term) {
    if (term == r->term) return;
    cp_assert(term > r->term);
    r->term = term;
    r->vote = RF_NONE;
    r->verified = 0;
    r->hs_dirty = true;
}

static void become_follower(rf_t *r, uint64_t term, uint32_t leader) {
    set_term(r, term);
    r->role = RF_FOLLOWER;
    r->leader = leader;
    r->transferee = RF_NONE;
    r->read_count = 0; /* pending reads are dropped with leadership */
    reset_timer(r);
}

static void append_noop(rf_t *r) {
    if (rf_term_at(r, r->last) != r->term) (void)log_append(r, r->term, NULL, 0);
}

static void become_leader(rf_t *r) {
    cp_assert(r->role == RF_CANDIDATE);
    r->role = RF_LEADER;
    r->leader = r->cfg.id;
    reset_timer(r);
    for (uint32_t i = 0; i < r->cfg.voter_count; i++) {
        rf_progress_t *pr = &r->pr[i];
        memset(pr, 0, sizeof *pr);
        pr->id = r->cfg.voters[i];
        pr->next = r->last + 1;
        pr->active = true;
    }
    /* Rule 1: older entries commit only under a current-term entry, so one goes in now. */
    append_noop(r);
}

static void maybe_commit(rf_t *r);
static void campaign(rf_t *r, bool pre, bool transfer);

static void tally(rf_t *r, uint32_t from_pos, bool granted) {
    if (granted)
        r->granted |= 1u << from_pos;
    else
        r->rejected |= 1u << from_pos;
    if ((uint32_t)__builtin_popcount(r->granted) >= r->quorum) {
        if (r->role == RF_PRE_CANDIDATE) {
            campaign(r, false, false);
        } else {
            become_leader(r);
            maybe_commit(r);
        }
    } else if ((uint32_t)__builtin_popcount(r->rejected) >= r->quorum) {
        become_follower(r, r->term, RF_NONE);
    }
}

/* Starts a (pre-)election. Votes carry the durable last entry (rule 2); the caller made sure
 * no handed-out write is pending (rule 5). */
static void campaign(rf_t *r, bool pre, bool transfer) {
    uint64_t term = r->term + 1;
    if (pre) {
        r->role = RF_PRE_CANDIDATE;
    } else {
        set_term(r, term);
        r->vote = r->cfg.id;
        r->role = RF_CANDIDATE;
    }
    r->leader = RF_NONE;
    r->granted = r->rejected = 0;
    reset_timer(r);
    for (uint32_t i = 0; i < r->cfg.voter_count; i++) {
        uint32_t id = r->cfg.voters[i];
        if (id == r->cfg.id) continue;
        rf_msg_t *m = msg_new(r, pre ? RF_MSG_PREVOTE : RF_MSG_VOTE, id, term);
        m->h.index = r->durable;
        m->h.log_term = rf_term_at(r, r->durable);
        m->h.flags = transfer ? RF_FLAG_TRANSFER : 0;
    }
    tally(r, r->self_pos, true);
}

static bool may_campaign(const rf_t *r) {
    return r->durable == r->last && r->unstable_from > r->last; /* rule 5 */
}

/* ---- Leader ---- */

/* Rules 1 and 4: the quorum index counts the leader by its durable index, commits only an
 * entry of the current term, and never passes the leader's durable index. */
static void maybe_commit(rf_t *r) {
    if (r->role != RF_LEADER) return;
    uint64_t m[RF_NODES_MAX];
    uint32_t n = r->cfg.voter_count;
    for (uint32_t i = 0; i < n; i++) m[i] = i == r->self_pos ? r->durable : r->pr[i].match;
    for (uint32_t i = 1; i < n; i++) /* insertion sort, descending; n <= 7 */
        for (uint32_t j = i; j > 0 && m[j] > m[j - 1]; j--) {
            uint64_t t = m[j];
            m[j] = m[j - 1];
            m[j - 1] = t;
        }
    uint64_t q = m[r->quorum - 1];
    if (q > r->durable) q = r->durable;
    if (q > r->commit && rf_term_at(r, q) == r->term) r->commit = q;
    cp_assert(r->commit <= r->durable);
}

static uint32_t hb_quorum_ok(const rf_t *r, uint64_t seq) {
    uint32_t n = 1;
    for (uint32_t i = 0; i < r->cfg.voter_count; i++)
        if (i != r->self_pos && r->pr[i].hb_ack >= seq) n++;
    return n >= r->quorum;
}

static void release_reads(rf_t *r) {
    uint32_t done = 0;
    while (done < r->read_count && hb_quorum_ok(r, r->reads[done].seq))
        r->rd_reads[r->rd_read_count++] = r->reads[done++].rs;
    memmove(r->reads, r->reads + done, (r->read_count - done) * sizeof r->reads[0]);
    r->read_count -= done;
}

static void pr_free_upto(rf_progress_t *pr, uint64_t index) {
    while (pr->in_count && pr->inflight[pr->in_start] <= index) {
        pr->in_start = (pr->in_start + 1) % RF_INFLIGHT_MAX;
        pr->in_count--;
    }
}

static void pr_probe(rf_progress_t *pr, uint64_t next) {
    pr->state = PR_PROBE;
    pr->paused = false;
    pr->in_count = 0;
    pr->next = next > pr->match + 1 ? next : pr->match + 1;
}

static void leader_app_resp(rf_t *r, rf_progress_t *pr, const rf_msg_hdr_t *h) {
    if (h->reject) {
        if (pr->state == PR_REPLICATE ? h->index <= pr->match : h->index != pr->next - 1)
            return; /* stale */
        pr_probe(pr, h->index < h->hint + 1 ? h->index : h->hint + 1);
        return;
    }
    if (h->hint >= pr->next - 1 || pr->state == PR_REPLICATE) {
        if (pr->state == PR_PROBE) {
            pr->state = PR_REPLICATE;
            pr->in_count = 0;
        }
        if (h->hint + 1 > pr->next) pr->next = h->hint + 1;
        pr_free_upto(pr, h->hint);
    }
    if (h->index > pr->match) {
        pr->match = h->index;
        if (pr->next <= pr->match) pr->next = pr->match + 1;
        maybe_commit(r);
    }
    if (r->transferee == pr->id && pr->match == r->last)
        msg_new(r, RF_MSG_TIMEOUT_NOW, pr->id, r->term);
}

static void leader_step(rf_t *r, int pos, const rf_msg_hdr_t *h) {
    rf_progress_t *pr = &r->pr[pos];
    pr->active = true;
    if (h->type == RF_MSG_APP_RESP) {
        leader_app_resp(r, pr, h);
    } else if (h->type == RF_MSG_HEARTBEAT_RESP) {
        pr->paused = false;
        if (pr->state == PR_REPLICATE && pr->in_count == RF_INFLIGHT_MAX)
            pr_free_upto(pr, pr->inflight[pr->in_start]);
        if (h->ctx > pr->hb_ack) pr->hb_ack = h->ctx;
        release_reads(r);
    }
}

/* ---- Follower ---- */

/* Suggests where the leader should probe next: the last index at or below prev whose term
 * is not above the leader's term there (etcd's findConflictByTerm), never below commit. */
static uint64_t reject_hint(const rf_t *r, uint64_t prev, uint64_t prev_term) {
    uint64_t i = prev < r->last ? prev : r->last;
    while (i > r->commit && i >= r->first && rf_term_at(r, i) > prev_term) i--;
    return i;
}

static void follower_append(rf_t *r, const rf_msg_t *m) {
    uint64_t prev = m->h.index, prev_term = m->h.log_term;
    uint32_t skip = 0, n = m->h.entry_count;
    if (prev < r->commit) { /* committed entries match the leader's: skip them */
        uint64_t k = r->commit - prev;
        if (k >= n) {
            uint64_t v = prev + n;
            if (v > r->verified) r->verified = v;
            send_ack(r);
            return;
        }
        skip = (uint32_t)k;
        prev = r->commit;
        prev_term = m->entries[k - 1].term;
    }
    if (prev > r->last || rf_term_at(r, prev) != prev_term) {
        rf_msg_t *resp = msg_new(r, RF_MSG_APP_RESP, m->h.from, r->term);
        resp->h.reject = 1;
        resp->h.index = m->h.index;
        resp->h.hint = reject_hint(r, prev, prev_term);
        return;
    }
    uint64_t idx = prev;
    for (uint32_t j = skip; j < n; j++) {
        const rf_entry_t *e = &m->entries[j];
        if (idx + 1 <= r->last) {
            if (rf_term_at(r, idx + 1) == e->term) {
                idx++;
                continue;
            }
            log_truncate_after(r, idx);
        }
        if (!log_append(r, e->term, e->data, e->size)) break; /* window full: take a prefix */
        idx++;
    }
    if (idx > r->verified) r->verified = idx;
    uint64_t c = m->h.commit < r->verified ? m->h.commit : r->verified;
    if (c > r->commit) r->commit = c;
    send_ack(r);
}

/* The heartbeat's commit is min(match, leader commit): this node acknowledged match durably
 * in this term, so those entries are in its log. */
static void follower_heartbeat(rf_t *r, const rf_msg_hdr_t *h) {
    uint64_t c = h->commit < r->last ? h->commit : r->last;
    if (c > r->commit) r->commit = c;
    rf_msg_t *m = msg_new(r, RF_MSG_HEARTBEAT_RESP, h->from, r->term);
    m->h.ctx = h->ctx;
}

static void handle_vote(rf_t *r, const rf_msg_hdr_t *h) {
    bool pre = h->type == RF_MSG_PREVOTE;
    bool can = r->vote == h->from || (r->vote == RF_NONE && r->leader == RF_NONE) ||
               (pre && h->term > r->term);
    uint64_t lt = rf_term_at(r, r->durable); /* rule 2: what is on disk */
    bool up = h->log_term > lt || (h->log_term == lt && h->index >= r->durable);
    uint8_t type = pre ? RF_MSG_PREVOTE_RESP : RF_MSG_VOTE_RESP;
    if (can && up) {
        msg_new(r, type, h->from, h->term);
        if (!pre) {
            r->vote = h->from;
            r->hs_dirty = true;
            r->election_elapsed = 0;
        }
    } else {
        msg_new(r, type, h->from, r->term)->h.reject = 1;
    }
}

/* ---- Steps ---- */

/* Terms: returns false when the message is to be dropped. */
static bool step_term(rf_t *r, const rf_msg_hdr_t *h) {
    uint8_t t = h->type;
    if (h->term > r->term) {
        if (t == RF_MSG_VOTE || t == RF_MSG_PREVOTE) {
            bool in_lease = r->cfg.check_quorum && r->leader != RF_NONE &&
                            r->election_elapsed < r->cfg.election_ticks;
            if (!(h->flags & RF_FLAG_TRANSFER) && in_lease) return false; /* rule 8 */
        }
        if (t == RF_MSG_PREVOTE || (t == RF_MSG_PREVOTE_RESP && !h->reject)) return true;
        bool from_leader = t == RF_MSG_APP || t == RF_MSG_HEARTBEAT || t == RF_MSG_SNAP;
        become_follower(r, h->term, from_leader ? h->from : RF_NONE);
        return true;
    }
    if (h->term < r->term) {
        /* A stale leader learns the new term from our answer and steps down; a stale
         * pre-candidate learns it was rejected. */
        if (t == RF_MSG_APP || t == RF_MSG_HEARTBEAT)
            msg_new(r, RF_MSG_APP_RESP, h->from, r->term);
        else if (t == RF_MSG_PREVOTE)
            msg_new(r, RF_MSG_PREVOTE_RESP, h->from, r->term)->h.reject = 1;
        return false;
    }
    return true;
}

void rf_step(rf_t *r, const rf_msg_t *m) {
    const rf_msg_hdr_t *h = &m->h;
    cp_assert(h->to == r->cfg.id);
    int pos = voter_pos(r, h->from);
    if (pos < 0 || h->from == r->cfg.id || !step_term(r, h)) return;
    switch (h->type) {
    case RF_MSG_APP:
    case RF_MSG_HEARTBEAT:
        cp_assert(r->role != RF_LEADER); /* two leaders in one term */
        if (r->role != RF_FOLLOWER || r->leader != h->from) become_follower(r, h->term, h->from);
        r->election_elapsed = 0;
        if (h->type == RF_MSG_APP)
            follower_append(r, m);
        else
            follower_heartbeat(r, h);
        break;
    case RF_MSG_APP_RESP:
    case RF_MSG_HEARTBEAT_RESP:
        if (r->role == RF_LEADER) leader_step(r, pos, h);
        break;
    case RF_MSG_VOTE:
    case RF_MSG_PREVOTE: handle_vote(r, h); break;
    case RF_MSG_VOTE_RESP:
        if (r->role == RF_CANDIDATE) tally(r, (uint32_t)pos, !h->reject);
        break;
    case RF_MSG_PREVOTE_RESP:
        if (r->role == RF_PRE_CANDIDATE && (h->reject || h->term == r->term + 1))
            tally(r, (uint32_t)pos, !h->reject);
        break;
    case RF_MSG_TIMEOUT_NOW:
        if (r->role == RF_FOLLOWER && may_campaign(r)) campaign(r, false, true);
        break;
    default: break; /* RF_MSG_SNAP: not implemented */
    }
}

/* ---- Ticks ---- */

static void leader_tick(rf_t *r) {
    append_noop(r); /* if the window was full when elected */
    if (++r->heartbeat_elapsed >= r->cfg.heartbeat_ticks) {
        r->heartbeat_elapsed = 0;
        bcast_heartbeat(r);
    }
    if (r->transferee != RF_NONE && ++r->transfer_elapsed >= r->cfg.election_ticks)
        r->transferee = RF_NONE; /* the transfer failed: carry on as leader */
    if (++r->election_elapsed < r->cfg.election_ticks) return;
    r->election_elapsed = 0;
    if (!r->cfg.check_quorum) return;
    uint32_t active = 0;
    for (uint32_t i = 0; i < r->cfg.voter_count; i++) {
        if (i == r->self_pos || r->pr[i].active) active++;
        r->pr[i].active = false;
    }
    if (active < r->quorum) become_follower(r, r->term, RF_NONE); /* rule 8 */
}

void rf_tick(rf_t *r) {
    if (r->role == RF_LEADER) {
        leader_tick(r);
        return;
    }
    if (r->election_elapsed < UINT32_MAX) r->election_elapsed++;
    if (r->election_elapsed >= r->timeout && may_campaign(r)) campaign(r, r->cfg.pre_vote, false);
}

/* ---- Driver interface ---- */

rf_t *rf_create(const rf_config_t *c) {
    if (c->id == RF_NONE || c->voter_count == 0 || c->voter_count > RF_NODES_MAX) return NULL;
    if (c->election_ticks < 2 || c->heartbeat_ticks == 0 || c->heartbeat_ticks >= c->election_ticks)
        return NULL;
    rf_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->cfg = *c;
    if (!r->cfg.window_entries) r->cfg.window_entries = 4096;
    if (!r->cfg.window_bytes) r->cfg.window_bytes = 64u << 20;
    if (!r->cfg.msg_bytes_max) r->cfg.msg_bytes_max = 1u << 20;
    int pos = voter_pos(r, c->id);
    r->slot_cap = r->cfg.window_entries;
    r->arena_cap = r->cfg.window_bytes;
    r->slots = calloc(r->slot_cap, sizeof *r->slots);
    r->arena = malloc(r->arena_cap);
    if (pos < 0 || !r->slots || !r->arena) {
        rf_destroy(r);
        return NULL;
    }
    r->self_pos = (uint32_t)pos;
    r->quorum = c->voter_count / 2 + 1;
    r->prng.state = c->seed ^ (0x9e3779b97f4a7c15ull * c->id);
    r->term = c->term;
    r->vote = c->vote;
    r->first = c->log_start_index + 1;
    r->last = c->log_start_index;
    r->start_term = c->log_start_term;
    r->durable = r->commit = r->applied = c->log_start_index;
    r->unstable_from = r->last + 1;
    r->role = RF_FOLLOWER;
    reset_timer(r);
    return r;
}

void rf_destroy(rf_t *r) {
    if (!r) return;
    free(r->slots);
    free(r->arena);
    free(r);
}

bool rf_load(rf_t *r, uint64_t term, const void *data, uint32_t size) {
    cp_assert(r->unstable_from == r->last + 1 && r->durable == r->last);
    if (term < rf_term_at(r, r->last) || term > r->term || !log_append(r, term, data, size))
        return false;
    r->durable = r->last;
    r->unstable_from = r->last + 1;
    return true;
}

rf_status_t rf_propose(rf_t *r, const void *data, uint32_t size, uint64_t *index) {
    if (r->role != RF_LEADER) return RF_ERR_NOT_LEADER;
    if (r->transferee != RF_NONE) return RF_ERR_TRANSFERRING;
    if (size > RF_ENTRY_MAX) return RF_ERR_TOO_BIG;
    if (!log_append(r, r->term, data, size)) return RF_ERR_FULL;
    if (index) *index = r->last;
    return RF_OK;
}

rf_status_t rf_transfer_leadership(rf_t *r, uint32_t to) {
    if (r->role != RF_LEADER) return RF_ERR_NOT_LEADER;
    int pos = voter_pos(r, to);
    if (pos < 0 || to == r->cfg.id) return RF_ERR_INVALID;
    r->transferee = to;
    r->transfer_elapsed = 0;
    if (r->pr[pos].match == r->last) msg_new(r, RF_MSG_TIMEOUT_NOW, to, r->term);
    return RF_OK;
}

rf_status_t rf_read_index(rf_t *r, uint64_t ctx) {
    if (r->role != RF_LEADER) return RF_ERR_NOT_LEADER;
    if (rf_term_at(r, r->commit) != r->term) return RF_ERR_NOT_READY;
    if (r->read_count == RF_READS_MAX || r->rd_read_count == RF_READS_MAX) return RF_ERR_FULL;
    r->reads[r->read_count++] =
        (rf_pending_read_t){.rs = {.ctx = ctx, .index = r->commit}, .seq = ++r->hb_seq};
    bcast_heartbeat(r);
    release_reads(r); /* a one-voter group confirms at once */
    return RF_OK;
}

void rf_persisted(rf_t *r, uint64_t index, uint64_t term) {
    if (index <= r->durable || index >= r->unstable_from || rf_term_at(r, index) != term) return;
    r->durable = index;
    if (r->role == RF_LEADER)
        maybe_commit(r);
    else
        send_ack(r);
}

void rf_compact(rf_t *r, uint64_t index) {
    if (index > r->applied) index = r->applied;
    if (index < r->first) return;
    r->start_term = rf_term_at(r, index);
    r->first = index + 1;
}

static uint64_t apply_limit(const rf_t *r) {
    return r->commit < r->durable ? r->commit : r->durable;
}

bool rf_has_ready(const rf_t *r) {
    if (r->hs_dirty || r->unstable_from <= r->last || r->out_count || r->rd_read_count ||
        r->applied < apply_limit(r))
        return true;
    if (r->role != RF_LEADER) return false;
    for (uint32_t i = 0; i < r->cfg.voter_count; i++)
        if (pr_can_send(r, &r->pr[i])) return true;
    return false;
}

void rf_ready(rf_t *r, rf_ready_t *rd) {
    if (r->role == RF_LEADER) flush_appends(r);
    memset(rd, 0, sizeof *rd);
    rd->hs_changed = r->hs_dirty;
    rd->hs = (rf_hard_state_t){.term = r->term, .vote = r->vote};
    rd->entries_first = r->unstable_from;
    for (uint64_t i = r->unstable_from; i <= r->last && rd->entry_count < RF_READY_ENTRIES_MAX; i++)
        r->rd_entries[rd->entry_count++] = entry_at(r, i);
    rd->entries = r->rd_entries;
    rd->msg_count = r->out_count;
    rd->msgs = r->out;
    rd->committed_first = r->applied + 1;
    uint64_t lim = apply_limit(r);
    for (uint64_t i = r->applied + 1; i <= lim && rd->committed_count < RF_READY_ENTRIES_MAX; i++)
        r->rd_committed[rd->committed_count++] = entry_at(r, i);
    rd->committed = r->rd_committed;
    rd->read_count = r->rd_read_count;
    rd->reads = r->rd_reads;
}

void rf_advance(rf_t *r, const rf_ready_t *rd) {
    cp_assert(rd->entries_first == r->unstable_from && rd->committed_first == r->applied + 1);
    r->hs_dirty = false;
    r->unstable_from += rd->entry_count;
    r->applied += rd->committed_count;
    r->out_count = 0;
    r->out_entry_count = 0;
    r->rd_read_count = 0;
    cp_assert(r->unstable_from <= r->last + 1 && r->applied <= r->durable);
}

void rf_status(const rf_t *r, rf_info_t *o) {
    *o = (rf_info_t){.role = r->role,
                     .term = r->term,
                     .vote = r->vote,
                     .leader = r->leader,
                     .first_index = r->first,
                     .last_index = r->last,
                     .durable_index = r->durable,
                     .commit_index = r->commit,
                     .applied_index = r->applied};
}

bool rf_peer_needs_snapshot(const rf_t *r, uint32_t peer) {
    int pos = voter_pos(r, peer);
    return r->role == RF_LEADER && pos >= 0 && r->pr[pos].needs_snap;
}

uint64_t rf_peer_match(const rf_t *r, uint32_t peer) {
    int pos = voter_pos(r, peer);
    if (r->role != RF_LEADER || pos < 0) return 0;
    return (uint32_t)pos == r->self_pos ? r->durable : r->pr[pos].match;
}

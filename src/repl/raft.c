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
    uint8_t type;
} rf_slot_t;

enum { PR_PROBE, PR_REPLICATE, PR_SNAPSHOT };

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
    /* PR_SNAPSHOT: the snapshot being sent and the bytes the peer acknowledged. */
    uint64_t snap_index, snap_term, snap_size, snap_acked;
} rf_progress_t;

/* A snapshot: the one the driver can serve (leader), or the one being received. */
typedef struct rf_snap {
    uint64_t index, term, size;
} rf_snap_t;

typedef struct rf_pending_read {
    rf_read_state_t rs;
    uint64_t seq;
} rf_pending_read_t;

struct rf {
    rf_config_t cfg;
    prng_t prng;
    /* The membership in effect (m, from the entry at m_index, 0: m_start) and the one as of
     * the window's start. pr[] and the vote bit sets are by position in m. */
    rf_members_t m, m_start;
    uint64_t m_index;
    int self_pos; /* in m, -1: not a member */
    uint32_t quorum;
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

    rf_snap_t snap_avail; /* the newest snapshot the driver serves (size 0: none) */
    rf_snap_t rx;         /* follower: the snapshot being received (size 0: none) */
    uint64_t rx_offset;   /* bytes of rx received */
    bool rx_pending;      /* a chunk waits in rx_buf for the next ready */
    bool installing;      /* the last chunk went out: rf_snapshot_installed/_failed next */
    rf_snap_chunk_t rx_chunk;
    uint8_t *rx_buf; /* RF_SNAP_CHUNK_MAX bytes */

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
    case RF_ERR_CONF_PENDING: return "a membership change is in progress";
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
    return (rf_entry_t){.term = s->term,
                        .size = s->size,
                        .data = s->size ? r->arena + s->off : NULL,
                        .type = s->type};
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

/* ---- Membership ---- */

bool rf_members_has(const rf_members_t *m, uint32_t id, bool *voter) {
    for (uint32_t i = 0; i < m->count; i++)
        if (m->ids[i] == id) {
            if (voter) *voter = m->voters >> i & 1;
            return true;
        }
    return false;
}

void rf_members_encode(const rf_members_t *m, rf_members_wire_t *w) {
    memset(w, 0, sizeof *w);
    w->magic = RF_MEMBERS_MAGIC;
    w->count = m->count;
    w->voters = m->voters;
    memcpy(w->ids, m->ids, sizeof w->ids);
}

bool rf_members_decode(const void *data, uint32_t size, rf_members_t *out) {
    rf_members_wire_t w;
    if (size < sizeof w || size > sizeof w + RF_MEMBERS_EXTRA_MAX) return false;
    memcpy(&w, data, sizeof w);
    if (w.magic != RF_MEMBERS_MAGIC || w.count > RF_NODES_MAX || w.voters >> w.count) return false;
    for (uint32_t i = 0; i < sizeof w.reserved; i++)
        if (w.reserved[i]) return false;
    *out = (rf_members_t){.count = w.count, .voters = w.voters};
    for (uint32_t i = 0; i < w.count; i++) {
        if (w.ids[i] == RF_NONE || rf_members_has(out, w.ids[i], NULL)) return false;
        out->ids[i] = w.ids[i];
    }
    for (uint32_t i = w.count; i < RF_NODES_MAX; i++)
        if (w.ids[i]) return false;
    return true;
}

static int member_pos(const rf_t *r, uint32_t id) {
    for (uint32_t i = 0; i < r->m.count; i++)
        if (r->m.ids[i] == id) return (int)i;
    return -1;
}

static bool is_voter(const rf_t *r, int pos) {
    return pos >= 0 && (r->m.voters >> pos & 1);
}

static bool self_voter(const rf_t *r) {
    return is_voter(r, r->self_pos);
}

static void members_set(rf_t *r, const rf_members_t *m, uint64_t index);

/* The membership entry at index, decoded (it was checked when it entered the log). */
static void members_of_entry(const rf_t *r, uint64_t index, rf_members_t *out) {
    const rf_slot_t *s = slot(r, index);
    bool ok = rf_members_decode(r->arena + s->off, s->size, out);
    cp_assert(ok);
}

bool rf_members_at(const rf_t *r, uint64_t index, rf_members_t *out) {
    if (index + 1 < r->first) return false;
    for (uint64_t i = index < r->last ? index : r->last; i >= r->first; i--)
        if (slot(r, i)->type == RF_ENTRY_MEMBERS) {
            members_of_entry(r, i, out);
            return true;
        }
    *out = r->m_start;
    return true;
}

uint64_t rf_members(const rf_t *r, rf_members_t *out) {
    *out = r->m;
    return r->m_index;
}

/* Rule 7 after a conflict cut the log: the membership of the newest entry left. */
static void members_rollback(rf_t *r) {
    if (r->m_index <= r->last) return;
    rf_members_t m;
    rf_members_at(r, r->last, &m);
    uint64_t at = 0;
    for (uint64_t i = r->last; i >= r->first && !at; i--)
        if (slot(r, i)->type == RF_ENTRY_MEMBERS) at = i;
    members_set(r, &m, at);
}

static bool log_append_typed(rf_t *r, uint64_t term, uint8_t type, const void *data,
                             uint32_t size) {
    uint64_t off;
    rf_members_t m;
    cp_assert(term >= rf_term_at(r, r->last));
    if (size > RF_ENTRY_MAX || type > RF_ENTRY_MEMBERS) return false;
    if (type == RF_ENTRY_MEMBERS && !rf_members_decode(data, size, &m)) return false;
    if (!log_place(r, size, &off)) return false;
    r->last++;
    r->slots[r->last % r->slot_cap] =
        (rf_slot_t){.term = term, .off = off, .size = size, .type = type};
    if (size) memcpy(r->arena + off, data, size);
    if (type == RF_ENTRY_MEMBERS) members_set(r, &m, r->last); /* effective when appended */
    return true;
}

static bool log_append(rf_t *r, uint64_t term, const void *data, uint32_t size) {
    return log_append_typed(r, term, RF_ENTRY_NORMAL, data, size);
}

/* Rule 6: a conflict cuts memory at once; the driver cuts the file from the next ready. */
static void log_truncate_after(rf_t *r, uint64_t index) {
    cp_assert(index >= r->commit && index < r->last);
    r->last = index;
    if (r->durable > index) r->durable = index;
    if (r->unstable_from > index + 1) r->unstable_from = index + 1;
    if (r->verified > index) r->verified = index;
    members_rollback(r);
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

/* The next chunk of pr's snapshot, at the offset the peer acknowledged. Its bytes are the
 * driver's to fill in (raft.h, SNAPSHOTS). */
static void send_snap_chunk(rf_t *r, rf_progress_t *pr) {
    rf_msg_t *m = msg_new(r, RF_MSG_SNAP, pr->id, r->term);
    if (m == &r->scratch || r->out_entry_count == RF_OUTBOX_ENTRIES_MAX) return;
    uint64_t left = pr->snap_size - pr->snap_acked;
    m->h.index = pr->snap_index;
    m->h.log_term = pr->snap_term;
    m->h.ctx = pr->snap_acked;
    m->h.hint = pr->snap_size;
    m->h.commit = r->commit;
    m->h.entry_count = 1;
    m->entries = &r->out_entries[r->out_entry_count];
    r->out_entries[r->out_entry_count++] = (rf_entry_t){
        .term = pr->snap_term,
        .size = (uint32_t)(left < r->cfg.snap_chunk_bytes ? left : r->cfg.snap_chunk_bytes)};
    pr->paused = true; /* one chunk in flight: resent when a heartbeat answer comes back */
}

/* A snapshot can replace the entries before the window when it reaches the window's start. */
static bool snap_usable(const rf_t *r, uint64_t index) {
    return r->snap_avail.size > 0 && index + 1 >= r->first;
}

/* pr needs entries compacted away: send it the newest snapshot, from its first byte. Also
 * when the snapshot being sent fell behind the window (the driver may have dropped it). */
static void pr_start_snapshot(rf_t *r, rf_progress_t *pr) {
    if (!snap_usable(r, r->snap_avail.index)) {
        pr->needs_snap = true;
        return;
    }
    pr->needs_snap = false;
    pr->state = PR_SNAPSHOT;
    pr->paused = false;
    pr->in_count = 0;
    pr->snap_index = r->snap_avail.index;
    pr->snap_term = r->snap_avail.term;
    pr->snap_size = r->snap_avail.size;
    pr->snap_acked = 0;
}

static bool pr_can_send(const rf_t *r, const rf_progress_t *pr) {
    if (pr->id == r->cfg.id) return false;
    if (pr->state == PR_SNAPSHOT) return !pr->paused && pr->snap_acked < pr->snap_size;
    if (pr->next < r->first) return false;
    if (pr->state == PR_PROBE) return !pr->paused;
    return pr->next <= r->last && pr->in_count < RF_INFLIGHT_MAX;
}

/* Pipelining: in replicate state appends go out back to back up to the in-flight window;
 * in probe state one at a time. Runs when a ready is built, so proposals batch. */
static void flush_appends(rf_t *r) {
    for (uint32_t i = 0; i < r->m.count; i++) {
        rf_progress_t *pr = &r->pr[i];
        if (pr->id == r->cfg.id) continue;
        bool stale = pr->state == PR_SNAPSHOT && !snap_usable(r, pr->snap_index);
        if ((pr->state != PR_SNAPSHOT && pr->next < r->first) || stale) pr_start_snapshot(r, pr);
        if (pr->state == PR_SNAPSHOT) {
            if (pr_can_send(r, pr) && r->out_count < RF_OUTBOX_MAX) send_snap_chunk(r, pr);
            continue;
        }
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
    for (uint32_t i = 0; i < r->m.count; i++) {
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
    r->rx = (rf_snap_t){0}; /* a snapshot is received from one leader only */
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
    for (uint32_t i = 0; i < r->m.count; i++) {
        rf_progress_t *pr = &r->pr[i];
        memset(pr, 0, sizeof *pr);
        pr->id = r->m.ids[i];
        pr->next = r->last + 1;
        pr->active = true;
    }
    /* Rule 1: older entries commit only under a current-term entry, so one goes in now. */
    append_noop(r);
}

static void maybe_commit(rf_t *r);
static void campaign(rf_t *r, bool pre, bool transfer);

/* A vote of the voter at from_pos. */
static void tally(rf_t *r, int from_pos, bool granted) {
    cp_assert(is_voter(r, from_pos));
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
    for (uint32_t i = 0; i < r->m.count; i++) {
        uint32_t id = r->m.ids[i];
        if (id == r->cfg.id || !is_voter(r, (int)i)) continue;
        rf_msg_t *m = msg_new(r, pre ? RF_MSG_PREVOTE : RF_MSG_VOTE, id, term);
        m->h.index = r->durable;
        m->h.log_term = rf_term_at(r, r->durable);
        m->h.flags = transfer ? RF_FLAG_TRANSFER : 0;
    }
    tally(r, r->self_pos, true);
}

static bool may_campaign(const rf_t *r) {
    return self_voter(r) && r->durable == r->last && r->unstable_from > r->last; /* rule 5 */
}

/* ---- Leader ---- */

/* Rules 1 and 4: the quorum index counts the leader by its durable index, commits only an
 * entry of the current term, and never passes the leader's durable index. */
static void maybe_commit(rf_t *r) {
    if (r->role != RF_LEADER) return;
    uint64_t m[RF_NODES_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->m.count; i++)
        if (is_voter(r, (int)i)) m[n++] = (int)i == r->self_pos ? r->durable : r->pr[i].match;
    if (n < r->quorum) return;
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
    /* A leader that removed itself led until the change committed (rule 7); now it goes. */
    if (!self_voter(r) && r->m_index <= r->commit) become_follower(r, r->term, RF_NONE);
}

static uint32_t hb_quorum_ok(const rf_t *r, uint64_t seq) {
    uint32_t n = self_voter(r) ? 1 : 0;
    for (uint32_t i = 0; i < r->m.count; i++)
        if ((int)i != r->self_pos && is_voter(r, (int)i) && r->pr[i].hb_ack >= seq) n++;
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
    if (pr->state == PR_SNAPSHOT) {
        /* The peer installed the snapshot, or already had what it replaces: go on from what
         * it verified. A rejection is stale (an append sent before the snapshot began). */
        if (h->reject) return;
        pr_probe(pr, h->hint + 1);
    }
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
        /* A transfer goes on while its target catches up (a slow disk under load): it is given
         * up only after an election timeout without progress. */
        if (r->transferee == pr->id) r->transfer_elapsed = 0;
        maybe_commit(r);
    }
    if (r->transferee == pr->id && pr->match == r->last)
        msg_new(r, RF_MSG_TIMEOUT_NOW, pr->id, r->term);
}

/* A chunk acknowledged (ctx: the offset the peer expects next) or refused (ctx: where it
 * wants the transfer to go on: 0 when it starts over). Once every byte is acknowledged the
 * peer installs the snapshot before it handles anything else, so appends go on after it. */
static void leader_snap_resp(rf_progress_t *pr, const rf_msg_hdr_t *h) {
    if (pr->state != PR_SNAPSHOT || h->index != pr->snap_index || h->log_term != pr->snap_term)
        return;
    uint64_t off = h->ctx < pr->snap_size ? h->ctx : pr->snap_size;
    if (!h->reject && off <= pr->snap_acked) return; /* a duplicate answer */
    pr->snap_acked = off;
    pr->paused = false;
    if (pr->snap_acked == pr->snap_size) pr_probe(pr, pr->snap_index + 1);
}

static void leader_step(rf_t *r, int pos, const rf_msg_hdr_t *h) {
    rf_progress_t *pr = &r->pr[pos];
    pr->active = true;
    if (h->type == RF_MSG_APP_RESP) {
        leader_app_resp(r, pr, h);
    } else if (h->type == RF_MSG_SNAP_RESP) {
        leader_snap_resp(pr, h);
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
        if (!log_append_typed(r, e->term, e->type, e->data, e->size))
            break; /* window full: take a prefix */
        idx++;
    }
    if (idx > r->verified) r->verified = idx;
    uint64_t c = m->h.commit < r->verified ? m->h.commit : r->verified;
    if (c > r->commit) r->commit = c;
    send_ack(r);
}

/* Whether the follower must take the snapshot (index, term): not when it is committed here
 * already, and not when the log holds its last entry with its term (rule 10: the log, which
 * may reach further and may have been acknowledged, stays). */
static bool snap_needed(const rf_t *r, uint64_t index, uint64_t term) {
    return index > r->commit && rf_term_at(r, index) != term;
}

static void snap_answer(rf_t *r, const rf_msg_hdr_t *h, uint64_t offset, bool reject) {
    rf_msg_t *m = msg_new(r, RF_MSG_SNAP_RESP, h->from, r->term);
    m->h.index = h->index;
    m->h.log_term = h->log_term;
    m->h.ctx = offset;
    m->h.reject = reject;
}

/* A snapshot chunk: taken when it is the next one of the snapshot being received (offset 0
 * starts a transfer), copied out for the driver in the next ready. */
static void follower_snap(rf_t *r, const rf_msg_t *m) {
    const rf_msg_hdr_t *h = &m->h;
    uint32_t size = m->entries[0].size;
    if (!snap_needed(r, h->index, h->log_term)) {
        /* Committed entries match every later leader's, and so does the log up to an entry
         * it shares with the leader's snapshot. */
        uint64_t v = rf_term_at(r, h->index) == h->log_term ? h->index : 0;
        if (r->commit > v) v = r->commit;
        if (v > r->verified) r->verified = v;
        r->rx = (rf_snap_t){0};
        send_ack(r); /* the leader leaves its snapshot state on this */
        return;
    }
    bool same =
        r->rx.size && r->rx.index == h->index && r->rx.term == h->log_term && r->rx.size == h->hint;
    if (h->ctx == 0 && !same) {
        r->rx = (rf_snap_t){.index = h->index, .term = h->log_term, .size = h->hint};
        r->rx_offset = 0;
        same = true;
    }
    if (!same) {
        snap_answer(r, h, 0, true); /* a chunk of a transfer this node does not know */
        return;
    }
    if (h->ctx != r->rx_offset || r->rx_pending || size == 0 || size > RF_SNAP_CHUNK_MAX ||
        h->ctx + size > r->rx.size) {
        snap_answer(r, h, r->rx_offset, h->ctx > r->rx_offset);
        return;
    }
    memcpy(r->rx_buf, m->entries[0].data, size);
    r->rx_chunk = (rf_snap_chunk_t){.index = r->rx.index,
                                    .term = r->rx.term,
                                    .offset = r->rx_offset,
                                    .total = r->rx.size,
                                    .size = size,
                                    .last = r->rx_offset + size == r->rx.size,
                                    .data = r->rx_buf};
    r->rx_pending = true;
    r->rx_offset += size;
    snap_answer(r, h, r->rx_offset, false);
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
        if (t == RF_MSG_APP || t == RF_MSG_HEARTBEAT || t == RF_MSG_SNAP)
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
    /* Requests are taken from anyone (a replica waiting to be added knows no members yet);
     * answers count only from members, votes only from voters. */
    int pos = member_pos(r, h->from);
    if (h->from == RF_NONE || h->from == r->cfg.id || !step_term(r, h)) return;
    bool answer = h->type == RF_MSG_APP_RESP || h->type == RF_MSG_HEARTBEAT_RESP ||
                  h->type == RF_MSG_SNAP_RESP || h->type == RF_MSG_VOTE_RESP ||
                  h->type == RF_MSG_PREVOTE_RESP;
    if (answer && pos < 0) return;
    switch (h->type) {
    case RF_MSG_APP:
    case RF_MSG_HEARTBEAT:
    case RF_MSG_SNAP:
        cp_assert(r->role != RF_LEADER); /* two leaders in one term */
        if (r->role != RF_FOLLOWER || r->leader != h->from) become_follower(r, h->term, h->from);
        r->election_elapsed = 0;
        if (h->type == RF_MSG_APP)
            follower_append(r, m);
        else if (h->type == RF_MSG_SNAP)
            follower_snap(r, m);
        else
            follower_heartbeat(r, h);
        break;
    case RF_MSG_APP_RESP:
    case RF_MSG_HEARTBEAT_RESP:
    case RF_MSG_SNAP_RESP:
        if (r->role == RF_LEADER) leader_step(r, pos, h);
        break;
    case RF_MSG_VOTE:
    case RF_MSG_PREVOTE: handle_vote(r, h); break;
    case RF_MSG_VOTE_RESP:
        if (r->role == RF_CANDIDATE && is_voter(r, pos)) tally(r, pos, !h->reject);
        break;
    case RF_MSG_PREVOTE_RESP:
        if (r->role == RF_PRE_CANDIDATE && is_voter(r, pos) &&
            (h->reject || h->term == r->term + 1))
            tally(r, pos, !h->reject);
        break;
    case RF_MSG_TIMEOUT_NOW:
        if (r->role == RF_FOLLOWER && may_campaign(r)) campaign(r, false, true);
        break;
    default: break;
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
    for (uint32_t i = 0; i < r->m.count; i++) {
        if (is_voter(r, (int)i) && ((int)i == r->self_pos || r->pr[i].active)) active++;
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

/* The members a configuration starts with; false when they are not a valid membership. */
static bool config_members(const rf_config_t *c, rf_members_t *m) {
    *m = (rf_members_t){0};
    if (c->voter_count + c->learner_count > RF_NODES_MAX) return false;
    for (uint32_t i = 0; i < c->voter_count + c->learner_count; i++) {
        bool voter = i < c->voter_count;
        uint32_t id = voter ? c->voters[i] : c->learners[i - c->voter_count];
        if (id == RF_NONE || rf_members_has(m, id, NULL)) return false;
        m->ids[m->count] = id;
        if (voter) m->voters |= 1u << m->count;
        m->count++;
    }
    return true;
}

/* A new membership in effect (from the entry at index, 0: the start's): progress is kept for
 * the members that stay, new ones start probing after the log's end. */
static void members_set(rf_t *r, const rf_members_t *m, uint64_t index) {
    rf_progress_t old[RF_NODES_MAX];
    rf_members_t om = r->m;
    memcpy(old, r->pr, sizeof old);
    r->m = *m;
    r->m_index = index;
    r->self_pos = member_pos(r, r->cfg.id);
    r->quorum = (uint32_t)__builtin_popcount(m->voters) / 2 + 1;
    r->granted = r->rejected = 0;
    for (uint32_t i = 0; i < m->count; i++) {
        int was = -1;
        for (uint32_t j = 0; j < om.count; j++)
            if (om.ids[j] == m->ids[i]) was = (int)j;
        if (was >= 0) {
            r->pr[i] = old[was];
            continue;
        }
        r->pr[i] = (rf_progress_t){.id = m->ids[i], .next = r->last + 1, .active = true};
    }
    if (r->transferee != RF_NONE && !is_voter(r, member_pos(r, r->transferee)))
        r->transferee = RF_NONE;
}

rf_t *rf_create(const rf_config_t *c) {
    rf_members_t m;
    if (c->id == RF_NONE || !config_members(c, &m)) return NULL;
    if (c->election_ticks < 2 || c->heartbeat_ticks == 0 || c->heartbeat_ticks >= c->election_ticks)
        return NULL;
    rf_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->cfg = *c;
    if (!r->cfg.window_entries) r->cfg.window_entries = 4096;
    if (!r->cfg.window_bytes) r->cfg.window_bytes = 64u << 20;
    if (!r->cfg.msg_bytes_max) r->cfg.msg_bytes_max = 1u << 20;
    if (!r->cfg.snap_chunk_bytes || r->cfg.snap_chunk_bytes > RF_SNAP_CHUNK_MAX)
        r->cfg.snap_chunk_bytes = RF_SNAP_CHUNK_MAX;
    r->slot_cap = r->cfg.window_entries;
    r->arena_cap = r->cfg.window_bytes;
    r->slots = calloc(r->slot_cap, sizeof *r->slots);
    r->arena = malloc(r->arena_cap);
    r->rx_buf = malloc(RF_SNAP_CHUNK_MAX); /* touched only when a snapshot arrives */
    if (!r->slots || !r->arena || !r->rx_buf) {
        rf_destroy(r);
        return NULL;
    }
    r->m_start = m;
    members_set(r, &m, 0);
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
    free(r->rx_buf);
    free(r);
}

bool rf_load_entry(rf_t *r, const rf_entry_t *e) {
    cp_assert(r->unstable_from == r->last + 1 && r->durable == r->last);
    if (e->term < rf_term_at(r, r->last) || e->term > r->term ||
        !log_append_typed(r, e->term, e->type, e->data, e->size))
        return false;
    r->durable = r->last;
    r->unstable_from = r->last + 1;
    return true;
}

bool rf_load(rf_t *r, uint64_t term, const void *data, uint32_t size) {
    return rf_load_entry(r, &(rf_entry_t){.term = term, .size = size, .data = data});
}

rf_status_t rf_propose(rf_t *r, const void *data, uint32_t size, uint64_t *index) {
    if (r->role != RF_LEADER) return RF_ERR_NOT_LEADER;
    if (r->transferee != RF_NONE) return RF_ERR_TRANSFERRING;
    if (size > RF_ENTRY_MAX) return RF_ERR_TOO_BIG;
    if (!log_append(r, r->term, data, size)) return RF_ERR_FULL;
    if (index) *index = r->last;
    return RF_OK;
}

rf_status_t rf_members_change(const rf_members_t *from, rf_conf_op_t op, uint32_t id,
                              rf_members_t *m) {
    *m = *from;
    int pos = -1;
    for (uint32_t i = 0; i < m->count; i++)
        if (m->ids[i] == id) pos = (int)i;
    bool voter = pos >= 0 && (m->voters >> pos & 1);
    if (id == RF_NONE) return RF_ERR_INVALID;
    if (op == RF_CONF_ADD_LEARNER) {
        if (pos >= 0 || m->count == RF_NODES_MAX) return RF_ERR_INVALID;
        m->ids[m->count++] = id;
    } else if (op == RF_CONF_PROMOTE) {
        if (pos < 0 || voter) return RF_ERR_INVALID;
        m->voters |= 1u << pos;
    } else if (op == RF_CONF_REMOVE) {
        if (pos < 0 || (voter && __builtin_popcount(m->voters) == 1))
            return RF_ERR_INVALID; /* the last voter stays */
        uint32_t low = m->voters & ((1u << pos) - 1), high = m->voters >> (pos + 1);
        m->voters = low | (high << pos);
        memmove(&m->ids[pos], &m->ids[pos + 1], (m->count - (uint32_t)pos - 1) * sizeof m->ids[0]);
        m->ids[--m->count] = RF_NONE;
    } else {
        return RF_ERR_INVALID;
    }
    return RF_OK;
}

rf_status_t rf_propose_members(rf_t *r, rf_conf_op_t op, uint32_t id, const void *extra,
                               uint32_t extra_size, uint64_t *index) {
    if (r->role != RF_LEADER) return RF_ERR_NOT_LEADER;
    if (r->transferee != RF_NONE) return RF_ERR_TRANSFERRING;
    if (extra_size > RF_MEMBERS_EXTRA_MAX) return RF_ERR_TOO_BIG;
    /* Only on a log whose previous change and whose own term are committed (rule 7). */
    if (rf_term_at(r, r->commit) != r->term) return RF_ERR_NOT_READY;
    if (r->m_index > r->commit) return RF_ERR_CONF_PENDING;
    rf_members_t m;
    rf_status_t st = rf_members_change(&r->m, op, id, &m);
    if (st != RF_OK) return st;
    uint8_t buf[sizeof(rf_members_wire_t) + RF_MEMBERS_EXTRA_MAX];
    rf_members_encode(&m, (rf_members_wire_t *)buf);
    if (extra_size) memcpy(buf + sizeof(rf_members_wire_t), extra, extra_size);
    uint32_t size = (uint32_t)sizeof(rf_members_wire_t) + extra_size;
    if (!log_append_typed(r, r->term, RF_ENTRY_MEMBERS, buf, size)) return RF_ERR_FULL;
    if (index) *index = r->last;
    maybe_commit(r); /* the quorum may have shrunk */
    return RF_OK;
}

rf_status_t rf_transfer_leadership(rf_t *r, uint32_t to) {
    if (r->role != RF_LEADER) return RF_ERR_NOT_LEADER;
    int pos = member_pos(r, to);
    if (!is_voter(r, pos) || to == r->cfg.id) return RF_ERR_INVALID;
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
    rf_members_at(r, index, &r->m_start);
    r->start_term = rf_term_at(r, index);
    r->first = index + 1;
}

static uint64_t apply_limit(const rf_t *r) {
    return r->commit < r->durable ? r->commit : r->durable;
}

bool rf_has_ready(const rf_t *r) {
    if (r->hs_dirty || r->unstable_from <= r->last || r->out_count || r->rd_read_count ||
        r->applied < apply_limit(r) || r->rx_pending)
        return true;
    if (r->role != RF_LEADER) return false;
    for (uint32_t i = 0; i < r->m.count; i++)
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
    /* The last chunk is checked again: since it arrived the log may have gained the
     * snapshot's entry, or the commit index passed it; then nothing is installed. */
    const rf_snap_chunk_t *c = &r->rx_chunk;
    if (r->rx_pending && (!c->last || snap_needed(r, c->index, c->term))) {
        rd->has_chunk = true;
        rd->chunk = *c;
    }
}

void rf_advance(rf_t *r, const rf_ready_t *rd) {
    cp_assert(rd->entries_first == r->unstable_from && rd->committed_first == r->applied + 1);
    r->hs_dirty = false;
    r->unstable_from += rd->entry_count;
    r->applied += rd->committed_count;
    r->out_count = 0;
    r->out_entry_count = 0;
    r->rd_read_count = 0;
    r->rx_pending = false;
    if (rd->has_chunk && rd->chunk.last) r->installing = true;
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
    int pos = member_pos(r, peer);
    return r->role == RF_LEADER && pos >= 0 && r->pr[pos].needs_snap;
}

bool rf_peer_match(const rf_t *r, uint32_t id, uint64_t *match) {
    int pos = member_pos(r, id);
    if (r->role != RF_LEADER || pos < 0) return false;
    *match = pos == r->self_pos ? r->durable : r->pr[pos].match;
    return true;
}

void rf_snapshot_avail(rf_t *r, uint64_t index, uint64_t term, uint64_t size) {
    cp_assert(size > 0 && index <= r->applied && index >= r->snap_avail.index);
    r->snap_avail = (rf_snap_t){.index = index, .term = term, .size = size};
}

/* The log restarts after the snapshot: everything in it is committed, applied, durable. */
void rf_snapshot_installed(rf_t *r, uint64_t index, uint64_t term, const rf_members_t *m) {
    cp_assert(r->installing && index > r->commit);
    r->installing = false;
    r->rx = (rf_snap_t){0};
    r->first = index + 1;
    r->last = index;
    r->start_term = term;
    r->durable = r->commit = r->applied = r->verified = index;
    r->unstable_from = index + 1;
    if (index > r->snap_avail.index) r->snap_avail = (rf_snap_t){0};
    r->m_start = *m;
    members_set(r, m, 0);
    send_ack(r);
}

void rf_snapshot_failed(rf_t *r) {
    cp_assert(r->installing);
    r->installing = false;
    r->rx = (rf_snap_t){0};
}

/* The consensus core of a cell: Raft as a pure, deterministic state machine in the shape of
 * etcd's raft package. No I/O, no clock, no randomness from outside: ticks and received
 * messages go in (rf_tick, rf_step), proposals and reads go in (rf_propose, rf_read_index),
 * and the work to do comes out as a batch (rf_ready): hard state to persist, entries to
 * write, messages to send, committed entries to apply, confirmed reads. The randomized
 * election timeout comes from a PRNG seeded by rf_config_t.seed, so a run is reproducible.
 *
 * THE DRIVER LOOP
 *     rf_tick / rf_step / rf_propose / rf_read_index / rf_persisted ...   (any order)
 *     if (rf_has_ready(r)) {
 *         rf_ready(r, &rd);
 *         1. if rd.hs_changed: make rd.hs (term, vote) durable (fsync) — BEFORE step 3,
 *            because votes and term changes in rd.msgs depend on it (raft-notes rule 3);
 *         2. write rd.entries to the log: if rd.entries_first <= the log's last index,
 *            first truncate the log after rd.entries_first - 1 (wal_truncate_after). The write
 *            may stay unsynced; report durability later with rf_persisted (group commit);
 *            write rd.chunk if rd.has_chunk (a snapshot being received, see SNAPSHOTS);
 *         3. send rd.msgs;  4. apply rd.committed;  5. serve rd.reads once applied >= index;
 *         rf_advance(r, &rd);
 *         if rd.has_chunk && rd.chunk.last: install, then rf_snapshot_installed / _failed
 *     }
 * Nothing else may be called between rf_ready and rf_advance: the pointers in rd (entry
 * bytes, messages) point into the core and stay valid only until rf_advance.
 *
 * DURABILITY
 * The core never emits a message whose truth needs an entry to be durable: a follower's
 * append acknowledgment covers min(durable index, index verified against the leader), and
 * it is sent when rf_persisted moves the durable index. The leader counts itself in a quorum
 * with its durable index only and never commits past it (rules 3, 4). Votes compare the
 * durable last index/term (rule 2), and a node does not start an election while entries it
 * handed out are not yet durable (rule 5): it waits, its timer expired, until rf_persisted
 * catches up. A conflicting append truncates the in-memory log at once; the driver truncates
 * the file from the next ready (rule 6). Committed entries are handed out for apply only up
 * to the durable index, so applied <= durable always.
 *
 * LOG WINDOW
 * The core keeps the entries not yet compacted in memory: at most config.window_entries
 * entries and config.window_bytes bytes (allocated once in rf_create; entries are opaque
 * blobs of at most RF_ENTRY_MAX bytes). rf_compact drops a prefix that was applied. When the
 * window is full a proposal fails with RF_ERR_FULL and a follower accepts only the part of
 * an append that fits (the leader resends the rest).
 *
 * SNAPSHOTS (rule 10)
 * A follower that needs entries the leader has compacted away gets a snapshot instead, in
 * chunks of at most config.snap_chunk_bytes, one chunk in flight at a time (the follower
 * acknowledges each; a lost chunk is resent when the next heartbeat answer arrives). The
 * snapshot's bytes are the driver's: it reports each snapshot it can serve with
 * rf_snapshot_avail (the newest; it must keep serving every reported snapshot whose index is
 * at least the window's first index - 1, which rf_compact never passes). The core then
 *   - on the leader, emits RF_MSG_SNAP messages whose single entry has size bytes at offset
 *     h.ctx of snapshot (h.index, h.log_term) and data NULL: the driver reads those bytes
 *     and sends the message with them (or drops it when it cannot);
 *   - on the follower, hands each accepted chunk out in rd.chunk (step 2 above: write it
 *     before sending the ready's messages). After the ready with the last chunk
 *     (chunk.last), and before anything else is given to the core, the driver verifies and
 *     installs the whole snapshot durably (file written, fsynced, renamed, directory synced;
 *     log reset to start after it) and calls rf_snapshot_installed, or rf_snapshot_failed
 *     when the bytes do not verify (the transfer starts over).
 * A follower never installs a snapshot at or below its commit index, nor one whose last
 * entry it already holds with the same term (it keeps its log, which may reach past it, and
 * acknowledges instead): entries it acknowledged are never thrown away.
 *
 * READS
 * rf_read_index implements the read index of the Raft thesis (6.4): remember the commit
 * index, confirm leadership with a heartbeat round acknowledged by a quorum, then the driver
 * serves the read once applied >= that index. It needs no clock assumption; leases would
 * need bounded clock drift and a lease shorter than the election timeout (raft-notes rule 9),
 * which a payment core should not bet on. Pending reads are dropped when leadership is lost
 * (the driver fails them when rf_status shows another role or term).
 *
 * MEMBERSHIP (rule 7)
 * The group's members are voters and learners (which get the log but neither vote nor count
 * in a quorum), at most RF_NODES_MAX in all. rf_config_t gives the members as of the log's
 * start; after that the membership is in the log, as entries of type RF_ENTRY_MEMBERS
 * (rf_propose_members): one server at a time (add a learner, promote it once it has caught
 * up, remove a member), each change taking effect on a replica as soon as the entry is in its
 * log, not when committed. So a conflicting append that removes such an entry rolls the
 * membership back with it, and the leader proposes a change only when the previous one is
 * committed and it has committed an entry of its own term (without that, two leaders of
 * consecutive terms could each add a server and their quorums need not overlap). A leader
 * that removes itself keeps leading, without counting itself, until the change commits, then
 * steps down. A node that is not a voter in its membership never campaigns; one that knows no
 * members at all (a replica waiting to be added) follows whoever leads in the highest term.
 * A membership entry's data is rf_members_wire_t followed by the driver's own bytes (the
 * members' addresses, say); rf_members_at gives the membership as of an index, which the
 * driver stores with its snapshot at that index and passes back to rf_snapshot_installed. */
#ifndef CP_RAFT_H
#define CP_RAFT_H

#include <stdbool.h>
#include <stdint.h>

#define RF_NODES_MAX 7u         /* members of a group: voters and learners */
#define RF_NONE 0u              /* "no node": node ids are >= 1 */
#define RF_ENTRY_MAX (1u << 21) /* bytes of one entry body (above WAL_BODY_MAX) */
#define RF_MSG_ENTRIES_MAX 64u  /* entries in one append message (batching) */
#define RF_INFLIGHT_MAX 16u     /* append messages in flight to one peer (pipelining) */
#define RF_OUTBOX_MAX 256u      /* messages in one ready; more are dropped (safe: lost) */
#define RF_OUTBOX_ENTRIES_MAX 2048u
#define RF_READY_ENTRIES_MAX 256u    /* entries to write / to apply in one ready */
#define RF_READS_MAX 64u             /* pending read-index requests */
#define RF_SNAP_CHUNK_MAX (1u << 20) /* bytes of one snapshot chunk */

typedef enum rf_status {
    RF_OK = 0,
    RF_ERR_NOT_LEADER,   /* rf_status().leader is the hint (RF_NONE: unknown) */
    RF_ERR_TRANSFERRING, /* a leadership transfer is running: retry on the new leader */
    RF_ERR_FULL,         /* the log window or the read queue is full: retry later */
    RF_ERR_TOO_BIG,      /* an entry above RF_ENTRY_MAX */
    RF_ERR_NOT_READY,    /* leader without a committed entry of its term yet: retry */
    RF_ERR_INVALID,      /* a bad argument (unknown node, self) */
    RF_ERR_CONF_PENDING, /* the previous membership change has not committed yet */
} rf_status_t;

const char *rf_status_str(rf_status_t st);

typedef enum rf_role { RF_FOLLOWER, RF_PRE_CANDIDATE, RF_CANDIDATE, RF_LEADER } rf_role_t;
const char *rf_role_str(rf_role_t role);

typedef enum rf_msg_type {
    RF_MSG_APP = 1,   /* index/log_term: the entry before the carried ones; commit */
    RF_MSG_APP_RESP,  /* index: acknowledged (durable, matching) or rejected; hint */
    RF_MSG_VOTE,      /* index/log_term: the candidate's durable last entry */
    RF_MSG_VOTE_RESP, /* reject */
    RF_MSG_PREVOTE,   /* term: the term the sender would campaign in */
    RF_MSG_PREVOTE_RESP,
    RF_MSG_HEARTBEAT,      /* commit; ctx: the leader's heartbeat round (read index) */
    RF_MSG_HEARTBEAT_RESP, /* ctx echoed */
    RF_MSG_TIMEOUT_NOW,    /* leadership transfer: campaign now, without pre-vote */
    RF_MSG_SNAP,           /* index/log_term: the snapshot; ctx: offset; hint: total bytes */
    RF_MSG_SNAP_RESP,      /* index/log_term echoed; ctx: the offset expected next */
} rf_msg_type_t;

#define RF_FLAG_TRANSFER 1u /* a vote of a leadership transfer: voters ignore their lease */

/* The fixed-size header of every message, as on the wire (little-endian hosts). */
typedef struct rf_msg_hdr {
    uint64_t term;
    uint64_t index;
    uint64_t log_term;
    uint64_t commit;
    uint64_t hint; /* a rejected append: the follower's suggestion for next - 1 */
    uint64_t ctx;  /* heartbeat round */
    uint32_t from;
    uint32_t to;
    uint32_t entry_count;
    uint8_t type; /* rf_msg_type_t */
    uint8_t reject;
    uint8_t flags; /* RF_FLAG_* */
    uint8_t reserved;
} rf_msg_hdr_t;
_Static_assert(sizeof(rf_msg_hdr_t) == 64, "rf_msg_hdr_t is 64 bytes on the wire");
_Static_assert(__builtin_offsetof(rf_msg_hdr_t, from) == 48, "rf_msg_hdr_t layout");

typedef enum rf_entry_type {
    RF_ENTRY_NORMAL = 0,  /* the driver's */
    RF_ENTRY_MEMBERS = 1, /* a membership: rf_members_wire_t, then the driver's bytes */
} rf_entry_type_t;

/* An entry as carried in messages and handed to the driver. data is NULL when size is 0
 * (the no-op a new leader appends). The driver stores the type with the entry. */
typedef struct rf_entry {
    uint64_t term;
    uint32_t size;
    const void *data;
    uint8_t type; /* rf_entry_type_t */
} rf_entry_t;

/* The members of a group. */
typedef struct rf_members {
    uint32_t ids[RF_NODES_MAX];
    uint32_t count;
    uint32_t voters; /* bit i set: ids[i] is a voter, else a learner */
} rf_members_t;

#define RF_MEMBERS_MAGIC 0x424d4652u /* "RFMB" */
#define RF_MEMBERS_EXTRA_MAX 1024u   /* the driver's bytes after it */

/* The start of a membership entry's data, little-endian. */
typedef struct rf_members_wire {
    uint32_t magic;
    uint32_t count;
    uint32_t voters;
    uint32_t ids[RF_NODES_MAX];
    uint8_t reserved[24]; /* zero */
} rf_members_wire_t;
_Static_assert(sizeof(rf_members_wire_t) == 64, "rf_members_wire_t is 64 bytes");

typedef enum rf_conf_op {
    RF_CONF_ADD_LEARNER = 1,
    RF_CONF_PROMOTE, /* a learner becomes a voter */
    RF_CONF_REMOVE,
} rf_conf_op_t;

typedef struct rf_msg {
    rf_msg_hdr_t h;
    const rf_entry_t *entries; /* h.entry_count of them, for RF_MSG_APP */
} rf_msg_t;

typedef struct rf_config {
    uint32_t id;
    /* The members as of the log's start (both empty: a replica waiting to be added). */
    uint32_t voters[RF_NODES_MAX];
    uint32_t voter_count;
    uint32_t learners[RF_NODES_MAX];
    uint32_t learner_count;
    uint32_t election_ticks;  /* the randomized timeout is in [election, 2 * election) */
    uint32_t heartbeat_ticks; /* < election_ticks */
    bool pre_vote;
    bool check_quorum;
    uint64_t seed;             /* of the election-timeout PRNG */
    uint32_t window_entries;   /* log window bound (entries); 0: 4096 */
    uint64_t window_bytes;     /* log window bound (bytes); 0: 64 MiB */
    uint32_t msg_bytes_max;    /* bytes of entries in one append (at least one entry); 0: 1 MiB */
    uint32_t snap_chunk_bytes; /* bytes of one snapshot chunk, <= RF_SNAP_CHUNK_MAX; 0: max */
    /* Restart: the durable hard state, and the last compacted entry (0, 0: none). The driver
     * then feeds the durable log after log_start_index with rf_load. */
    uint64_t term;
    uint32_t vote;
    uint64_t log_start_index;
    uint64_t log_start_term;
} rf_config_t;

typedef struct rf_hard_state {
    uint64_t term;
    uint32_t vote;
} rf_hard_state_t;

typedef struct rf_read_state {
    uint64_t ctx;   /* as given to rf_read_index */
    uint64_t index; /* serve the read once applied >= index */
} rf_read_state_t;

/* A snapshot chunk a follower received, to be written at offset of the snapshot being
 * received (index, term; total bytes). */
typedef struct rf_snap_chunk {
    uint64_t index, term, offset, total;
    uint32_t size;
    bool last; /* offset + size == total: install after this ready */
    const void *data;
} rf_snap_chunk_t;

typedef struct rf_ready {
    bool hs_changed;
    rf_hard_state_t hs;
    uint64_t entries_first; /* index of entries[0] */
    uint32_t entry_count;
    const rf_entry_t *entries;
    uint32_t msg_count;
    const rf_msg_t *msgs;
    uint64_t committed_first; /* index of committed[0] */
    uint32_t committed_count;
    const rf_entry_t *committed;
    uint32_t read_count;
    const rf_read_state_t *reads;
    bool has_chunk;
    rf_snap_chunk_t chunk;
} rf_ready_t;

typedef struct rf_info {
    rf_role_t role;
    uint64_t term;
    uint32_t vote;
    uint32_t leader; /* RF_NONE: unknown */
    uint64_t first_index, last_index, durable_index, commit_index, applied_index;
} rf_info_t;

typedef struct rf rf_t;

/* Allocates the core and its log window (the only allocation); NULL on bad config or no
 * memory. The caller owns it until rf_destroy. */
rf_t *rf_create(const rf_config_t *config);
void rf_destroy(rf_t *r);
/* Restart only, before anything else: appends one entry of the durable log (already on disk:
 * it counts as durable). false when the window is full, the term goes backwards or a
 * membership entry does not decode. rf_load: an entry of type RF_ENTRY_NORMAL. */
bool rf_load_entry(rf_t *r, const rf_entry_t *e);
bool rf_load(rf_t *r, uint64_t term, const void *data, uint32_t size);

void rf_tick(rf_t *r);
/* A received message; m->h.to must be this node. Messages from unknown nodes are dropped.
 * The entry bytes are copied: m may be freed on return. */
void rf_step(rf_t *r, const rf_msg_t *m);
/* Leader only: appends data as the next entry; its index in *index. */
rf_status_t rf_propose(rf_t *r, const void *data, uint32_t size, uint64_t *index);
/* Leader only: appends a membership change (see MEMBERSHIP); extra (at most
 * RF_MEMBERS_EXTRA_MAX bytes) follows rf_members_wire_t in the entry. */
rf_status_t rf_propose_members(rf_t *r, rf_conf_op_t op, uint32_t id, const void *extra,
                               uint32_t extra_size, uint64_t *index);
rf_status_t rf_transfer_leadership(rf_t *r, uint32_t to);
rf_status_t rf_read_index(rf_t *r, uint64_t ctx);
/* The driver's log holds entries up to index, the one at index of this term, durably. Stale
 * reports (an entry since replaced) are ignored by the term check. */
void rf_persisted(rf_t *r, uint64_t index, uint64_t term);
/* Drops applied entries up to index from the window (the driver's log keeps them). */
void rf_compact(rf_t *r, uint64_t index);

bool rf_has_ready(const rf_t *r);
void rf_ready(rf_t *r, rf_ready_t *rd);
void rf_advance(rf_t *r, const rf_ready_t *rd);

void rf_status(const rf_t *r, rf_info_t *out);
/* The membership in effect (the newest in the log), and the index of its entry (0: the one
 * given at the start or by a snapshot). */
uint64_t rf_members(const rf_t *r, rf_members_t *out);
/* The membership as of index (>= the window's first index - 1); false when outside. */
bool rf_members_at(const rf_t *r, uint64_t index, rf_members_t *out);
bool rf_members_decode(const void *data, uint32_t size, rf_members_t *out);
void rf_members_encode(const rf_members_t *m, rf_members_wire_t *out);
bool rf_members_has(const rf_members_t *m, uint32_t id, bool *voter);
/* The membership after op on id (what rf_propose_members would append): RF_OK, or
 * RF_ERR_INVALID (adding a member, promoting a voter or a non-member, removing a non-member or
 * the last voter, a full group). */
rf_status_t rf_members_change(const rf_members_t *from, rf_conf_op_t op, uint32_t id,
                              rf_members_t *out);
/* Leader: what peer id holds durably and matching (false: not a member, or not leader). */
bool rf_peer_match(const rf_t *r, uint32_t id, uint64_t *match);
/* The term of the entry at index, 0 when outside the window (and not the start point). */
uint64_t rf_term_at(const rf_t *r, uint64_t index);
/* Leader: the peer needs entries compacted away and no reported snapshot can replace them. */
bool rf_peer_needs_snapshot(const rf_t *r, uint32_t peer);

/* The driver can serve snapshot (index, term) of size bytes (size > 0, index <= applied). */
void rf_snapshot_avail(rf_t *r, uint64_t index, uint64_t term, uint64_t size);
/* Follower, right after the ready whose chunk was the last: the snapshot is installed
 * durably and the driver's log now starts after index (see SNAPSHOTS); m: the membership
 * stored with it. */
void rf_snapshot_installed(rf_t *r, uint64_t index, uint64_t term, const rf_members_t *m);
/* Follower, instead: the received bytes did not verify; the transfer starts over. */
void rf_snapshot_failed(rf_t *r);

#endif

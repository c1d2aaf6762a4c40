/* A deterministic simulator of a Raft group (raft.h): N replicas in one process, each with a
 * simulated durable log (a persisted prefix and a tail lost on crash) and a state machine
 * (a hash chain over applied entries, an applied-count per command id, and the real ledger of
 * src/ledger: each command is a transfer among a few fixed accounts, derived from its id
 * alone and stamped by its log index), a network that loses, duplicates, reorders and
 * partitions (also one-way), crashes and restarts, clients that propose and retry commands
 * with unique ids, and invariants checked after every step:
 *   - at most one leader per term;
 *   - a committed entry never changes (global record index -> term, data) and is never
 *     truncated, and every new leader holds all of them;
 *   - every replica applies the same sequence (hash chain per index);
 *   - every command acknowledged to a client is applied exactly once on every replica that
 *     has applied that far;
 *   - the ledger invariants (ledger_check_invariants: debits equal credits per ledger, each
 *     balance the sum of its transfers, no limit passed, indexes whole) hold on a replica's
 *     ledger after every command it applies; a retried command is answered `exists` (or
 *     `id_already_failed`) and changes no balance;
 *   - every replica's ledger is the same at each index (a digest of all balances, recorded by
 *     the first replica to apply the index);
 *   - log matching: one (data, previous term) per (index, term) in every written log;
 *   - a snapshot installed from the leader holds the state every replica had at its index
 *     (its chain, and its ledger as an image that restores whole, passes the invariants and
 *     has those balances), and installing it throws away no committed entry the replica held;
 *     a restarted node rebuilds its ledger the same way, from its snapshot, then its log.
 * In membership runs (half of the 5-node seeds) three nodes start as the group and the leader
 * adds learners, promotes caught-up learners and removes members (itself too) one at a time;
 * the one-leader-per-term and committed-entry checks are what catch quorums that do not
 * overlap, and a node that is not a voter must never campaign.
 * Nodes take snapshots every few dozen applied entries (per seed; some seeds never) and
 * compact their window to the older of their two newest, so replicas that fall behind catch
 * up by snapshot transfer in chunks; a received snapshot sometimes fails to verify.
 * and, as rule checks where they act: a leader moves its commit only onto an entry of its
 * term (rule 1), a node campaigns only with every written entry durable (rule 5); after the
 * calm period, availability (rule 8): a follower cut off from the leader alone does not
 * depose it, and a leader cut off from a quorum steps down.
 * The hard state and the entries of a ready are written when it is collected; entries become
 * durable only at a separate fsync event (often a prefix: group commit). A crash may hit in
 * the middle of a ready (hard state and entries written, only some messages sent); it keeps
 * all that was reported durable and a random prefix of the unsynced tail (a torn entry is
 * dropped by the WAL's checksum), never less.
 * The random schedule: per-step noise (loss, duplication, uniform reordering so that some
 * messages arrive hundreds of steps late, one-way links, crashes, restarts, leadership
 * transfers) and a nemesis that every few dozen steps heals the last fault and starts the
 * next: crash the leader, cut it off with a minority (sometimes one way), give a node a slow
 * disk, or run the Figure 8 script (raft_sim.c: nem_figure8).
 *
 * Used by tests/sim and `cellpay sim`. Everything is reproducible from the seed. */
#ifndef CP_RAFT_SIM_H
#define CP_RAFT_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "repl/raft.h"

#define RF_SIM_NODES_MAX 5u

typedef struct rf_sim_config {
    uint64_t seed;
    uint32_t nodes;           /* 1..5 */
    uint32_t election_ticks;  /* 0: 10 */
    uint32_t heartbeat_ticks; /* 0: 2 */
    bool manual;              /* unit tests: no auto fsync, lossless FIFO network, no faults */
    uint32_t snap_every;      /* manual mode: snapshot each node every N applied entries (0: never);
                                 random mode picks per seed */
    bool members; /* manual mode: nodes 1-3 start as the voters, 4 and 5 outside (5 nodes);
                     random mode picks per seed among 5-node runs */
} rf_sim_config_t;

typedef struct rf_sim rf_sim_t;

rf_sim_t *rf_sim_create(const rf_sim_config_t *c);
void rf_sim_destroy(rf_sim_t *s);

/* Random faults for steps events; false at the first violated invariant. */
bool rf_sim_run(rf_sim_t *s, uint32_t steps);
/* Heals everything, restarts crashed nodes, then checks liveness: a leader within a bound of
 * ticks, and every unacknowledged command (retried) and a fresh one committed and applied on
 * every replica. false (with the failure set) when not. */
bool rf_sim_calm(rf_sim_t *s);
const char *rf_sim_failure(const rf_sim_t *s);
/* The last events (up to 64), one per line, then the failure. */
void rf_sim_print_trace(const rf_sim_t *s, FILE *f);

typedef struct rf_sim_stats {
    uint64_t steps, delivered, dropped, crashes, elections, proposals, acked, max_commit, reads;
    uint64_t snapshots, installs, install_failures, member_changes;
    /* Commands applied to replicas' ledgers (each followed by ledger_check_invariants), of
     * them retried duplicates, and ledger digests compared with another replica's. */
    uint64_t ledger_transfers, ledger_duplicates, ledger_checks, ledger_compared;
} rf_sim_stats_t;
void rf_sim_stats(const rf_sim_t *s, rf_sim_stats_t *out);

/* ---- Manual control, for unit tests. Nodes are 0-based here; raft ids are i + 1. ---- */
rf_t *rf_sim_raft(rf_sim_t *s, uint32_t i);
void rf_sim_tick(rf_sim_t *s, uint32_t i);
/* Collects and handles every ready (write, send, apply) until none is left; checks. */
bool rf_sim_process(rf_sim_t *s);
/* Delivers queued messages from -> to of a type (0: any; from/to UINT32_MAX: any), FIFO;
 * returns how many. rf_sim_drop discards them instead. */
uint32_t rf_sim_deliver(rf_sim_t *s, uint32_t from, uint32_t to, uint8_t type);
uint32_t rf_sim_drop(rf_sim_t *s, uint32_t from, uint32_t to, uint8_t type);
void rf_sim_block(rf_sim_t *s, uint32_t from, uint32_t to, bool blocked);
void rf_sim_isolate(rf_sim_t *s, uint32_t i, bool isolated);
/* Makes node i's written log durable and tells its core. */
void rf_sim_fsync(rf_sim_t *s, uint32_t i);
/* Makes only [1, index] of node i's written log durable. */
void rf_sim_fsync_upto(rf_sim_t *s, uint32_t i, uint64_t index);
uint32_t rf_sim_queued(const rf_sim_t *s);
void rf_sim_crash(rf_sim_t *s, uint32_t i);
void rf_sim_restart(rf_sim_t *s, uint32_t i);
/* Leader node i proposes a membership change; the status of rf_propose_members. */
rf_status_t rf_sim_members(rf_sim_t *s, uint32_t i, rf_conf_op_t op, uint32_t id);
/* Proposes command id at node i; the status of rf_propose. */
rf_status_t rf_sim_propose(rf_sim_t *s, uint32_t i, uint64_t id, uint64_t *index);
/* The node that is leader in the highest term, or -1. */
int rf_sim_leader(const rf_sim_t *s);
uint64_t rf_sim_applied(const rf_sim_t *s, uint32_t i);
/* Reads confirmed at node i so far (read index results). */
uint32_t rf_sim_reads_done(const rf_sim_t *s, uint32_t i);
/* Entries written / persisted in node i's simulated log. */
uint64_t rf_sim_log_len(const rf_sim_t *s, uint32_t i);
uint64_t rf_sim_persisted(const rf_sim_t *s, uint32_t i);
bool rf_sim_check(rf_sim_t *s);

#endif

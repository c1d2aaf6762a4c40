/* One replica of one cell as a server: the cell state machine behind a write-ahead log, a
 * libuv event loop serving the binary protocol (docs/protocol.md), group commit, and
 * snapshots. Every cell is a Raft group (src/repl/raft.h); without peers, of one voter. */
#ifndef CP_NODE_H
#define CP_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include "cell/cell.h"
#include "repl/peer.h"

typedef struct node_config {
    const char
        *name; /* prefix of its log lines, e.g. "cellpay node cell 2"; NULL: "cellpay node" */
    const char *data_dir;
    const char *listen; /* "HOST:PORT", IPv4: where clients connect */
    bool test_ops;
    uint64_t cell_id;
    uint32_t node_id;                /* this replica's id in peers (1 without --peers) */
    peer_addr_t peers[RF_NODES_MAX]; /* the group's replicas and their peer addresses */
    uint32_t peer_count;             /* 0: a one-voter group, no peer network */
    bool join;        /* a new replica: no members until the leader adds it (add-replica) */
    uint32_t tick_ms; /* Raft tick (default 10) */
    uint32_t election_ticks, heartbeat_ticks;
    cell_config_t cell;
    uint64_t snapshot_log_bytes; /* log bytes written between snapshots; 0 = never */
    bool capacities_given;       /* cell.ledger capacities came from the command line */
    bool zones_given;            /* cell.zones came from the command line (--zones) */
    bool zone_rule_given;        /* cell.zone_rule came from the command line (--zone-rule) */
    /* The route table file (route.h) the relay (src/txn/relay.h) finds the other cells in:
     * while this replica leads, it delivers the cell's cross-cell credits. NULL: no relay (a
     * cell with cross-cell payments then keeps them pending). */
    const char *routes_path;
    uint32_t relay_fault_pct; /* fault tests: relay_config_t.fault_pct (seeded and logged) */
    /* relay_config_t.recover_after_ns: a refund activity trying this long (ns) is decided
     * cancelled by the relay; 0: its default (60 s). */
    uint64_t tcc_recover_after_ns;
} node_config_t;

typedef struct node node_t;

/* Recovers from data_dir, listens and serves until SIGTERM or SIGINT; returns the process
 * exit code (0 after a clean stop). Prints why on stderr when it cannot start. It is the
 * process entry of `cellpay node`: the node runs on the calling thread and prints
 * "<name>: listening on HOST:PORT" on stdout once it listens. */
int node_run(const node_config_t *config);

/* A node on a thread of its own (own libuv loop, no signal handlers), for several cells in
 * one process. Returns once the node listens, or NULL when it cannot start, with the reason
 * in err (also logged). The strings config points to must outlive the node. Several nodes
 * may run at once (each with its own data_dir and addresses). The process then ignores
 * SIGPIPE (as node_run does): a client that goes away must not kill every cell. */
node_t *node_start(const node_config_t *config, char *err, size_t err_size);
/* The client port the node listens on (the one picked for a port 0). */
uint16_t node_port(const node_t *n);
/* Stops a node of node_start() by the path of SIGTERM (nothing more is accepted, requests
 * not committed are told not_leader, the log write in flight finishes, a snapshot being
 * written is waited for), joins its thread and frees it. Returns 0 after a clean stop. Call
 * it from any thread but the node's own, once per node. */
int node_stop(node_t *n);

#endif

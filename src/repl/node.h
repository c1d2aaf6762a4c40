/* One replica of one cell as a server: the cell state machine behind a write-ahead log, a
 * libuv event loop serving the binary protocol (docs/protocol.md), group commit, and
 * snapshots. Today every cell is a one-voter group; replication joins in src/repl/ later. */
#ifndef CP_NODE_H
#define CP_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include "cell/cell.h"

typedef struct node_config {
    const char *data_dir;
    const char *listen; /* "HOST:PORT", IPv4 */
    bool test_ops;
    cell_config_t cell;
    uint64_t snapshot_log_bytes; /* log bytes written between snapshots; 0 = never */
    bool capacities_given;       /* cell.ledger capacities came from the command line */
} node_config_t;

/* Recovers from data_dir, listens and serves until SIGTERM or SIGINT; returns the process
 * exit code (0 after a clean stop). Prints why on stderr when it cannot start. */
int node_run(const node_config_t *config);

#endif

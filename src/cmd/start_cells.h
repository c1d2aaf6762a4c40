/* The cells of `cellpay start`: N durable single-replica cells, each a node on a thread of
 * its own in this process, under one data directory:
 *
 *   DIR/start.conf   "cells=N", written on first start: the zones of a cell are fixed for
 *                    its life (its cell.conf), so N cannot change later
 *   DIR/admin.key    the operator's key (src/gateway/auth.h), created on first start
 *   DIR/cell-<i>/    cell i's data directory (src/repl/node_recover.c), i = 1..N
 *
 * Cell i owns the zones [100*(i-1)/N, 100*i/N) and listens for the binary protocol on an
 * ephemeral port of 127.0.0.1. */
#ifndef CP_START_CELLS_H
#define CP_START_CELLS_H

#include <limits.h>
#include <stdint.h>

#include "gateway/auth.h"
#include "gateway/route.h"
#include "repl/node.h"

#define START_CELLS_MAX 100u /* one zone each at most */

typedef struct start_cell {
    node_t *node;
    char dir[PATH_MAX];
    char name[32]; /* its log lines' prefix: "cellpay node cell <i>" */
} start_cell_t;

typedef struct start_cells {
    uint32_t count;
    start_cell_t cells[START_CELLS_MAX]; /* cell i is cells[i - 1] */
    rt_table_t routes; /* version 1: each cell's address and zones, the default zone rule */
    char admin_key[AUTH_HEX_MAX + 1];
    char admin_key_path[PATH_MAX];
    char routes_path[PATH_MAX]; /* DIR/routes: the table of this run, the relays read it */
} start_cells_t;

/* The zones of cell i (1..count) of count cells. */
cp_zones_t start_cells_zones(uint32_t i, uint32_t count);

/* Creates or reopens the layout above and starts every cell; returns once all of them
 * listen. NULL with a message in err when one cannot start (the others are stopped again),
 * when DIR was created with another number of cells, or when admin.key cannot be made. */
start_cells_t *start_cells_open(const char *dir, uint32_t count, char *err, size_t err_size);

/* Stops every cell cleanly (node_stop) and frees s. 0 when each one stopped cleanly. */
int start_cells_close(start_cells_t *s);

#endif

/* `cellpay sim`: runs the Raft simulator (src/repl/raft_sim.h) for one seed, or with --cells
 * the cross-cell simulator (src/txn/xcell_sim.h), the same runs the tests make, and prints
 * the trace of the last events on the first violated invariant. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "cmd/cmd_args.h"
#include "repl/raft_sim.h"
#include "txn/xcell_sim.h"

/* Registered in main.c as `sim`; declared here until cmd.h lists it. */

static const char sim_usage[] =
    "usage: cellpay sim --seed S [--steps N] [--nodes 3|5] [--no-calm]\n"
    "       cellpay sim --cells 2|3 --seed S [--steps N] [--no-calm]\n"
    "\n"
    "Without --cells, runs the deterministic Raft simulator of one group: N steps of random\n"
    "faults (loss, duplication, reordering and late delivery, partitions, crashes mid-ready\n"
    "losing unsynced entries, slow disks, restarts, and a nemesis crashing or cutting off the\n"
    "leader every few dozen steps, Figure 8 scenarios included) with every invariant checked\n"
    "after every step, then a calm period that must elect a leader, commit every pending\n"
    "proposal, and keep the leader through a follower's partial partition.\n"
    "\n"
    "With --cells, runs the deterministic cross-cell simulator instead: 2 or 3 cells (each a\n"
    "log of committed entries applied to a real cell state machine, rebuilt from its log on a\n"
    "crash or leader change, which also gives its relay a fresh memory), the relay's core on\n"
    "each, clients paying across cells in the gateway's three steps (order, payment, release on\n"
    "a refusal) and retrying with the same keys, and a network that loses, duplicates, delays\n"
    "and reorders; clients also refund payments and transfer money between users (across\n"
    "cells by TCC: transfer, Try, decide; their gateways dying between steps for good, which\n"
    "the relays' recovery cancels). Checks the ledger invariants, that no payment is debited\n"
    "or credited twice, that each activity is decided once and each user's account is what\n"
    "the entries made it (no credit before its confirm, a hold exactly while trying) after\n"
    "every step; after a calm period, that every debited payment was credited exactly once\n"
    "and acknowledged, every decision delivered once, each balance the reference model's,\n"
    "that clearing nets to zero per pair of cells and currency and that the outboxes are\n"
    "empty. Steps are ticks (at most 10000).\n"
    "\n"
    "Either exits 1 with a trace of the last events on the first violation.\n"
    "\n"
    "  --seed S     the run's seed (required)\n"
    "  --steps N    steps of faults (default 3000; with --cells 2000)\n"
    "  --nodes K    replicas, 1 to 5 (default 3; the Raft simulator only)\n"
    "  --cells N    run the cross-cell simulator with N cells, 2 or 3\n"
    "  --no-calm    skip the calm period and its checks at the end\n";

/* The cross-cell simulator for one seed (--cells). */
static int sim_cells(uint64_t seed, uint32_t cells, uint32_t steps, bool calm) {
    xc_sim_t *s = xc_sim_create(&(xc_sim_config_t){.seed = seed, .cells = cells});
    bool ok = xc_sim_run(s, steps) && (!calm || xc_sim_calm(s));
    xc_sim_stats_t st;
    xc_sim_stats(s, &st);
    if (!ok) xc_sim_print_trace(s, stderr);
    printf("seed %" PRIu64 " cells %u steps %" PRIu64 ": %s; %" PRIu64 " orders, %" PRIu64
           " payments debited, %" PRIu64 " refused (%" PRIu64 " released), %" PRIu64
           " credited, %" PRIu64 " acknowledged, %" PRIu64 " replayed answers compared, %" PRIu64
           " crashes, %" PRIu64 " leader flaps, %" PRIu64 " messages lost, %" PRIu64
           " duplicated, %" PRIu64 " relay faults on purpose, %" PRIu64 " refunds (%" PRIu64
           " confirmed, %" PRIu64 " cancelled, %" PRIu64 " recovered), %" PRIu64
           " orders abandoned (%" PRIu64 " with a late payment, %" PRIu64 " tombstones, %" PRIu64
           " resolved), %" PRIu64 " transfers across cells (%" PRIu64 " confirmed, %" PRIu64
           " cancelled, %" PRIu64 " refused by the recipient's cell's Try), %" PRIu64
           " within a cell\n",
           seed, cells, st.steps, ok ? "ok" : "VIOLATION", st.orders, st.debited, st.refused,
           st.released, st.credited, st.acked, st.replays_checked, st.crashes, st.flaps, st.lost,
           st.duplicated, st.relay_faults, st.refunds, st.refunds_confirmed, st.refunds_cancelled,
           st.recovered, st.orders_abandoned, st.late_payments, st.tombstones, st.resolved,
           st.transfers, st.transfers_confirmed, st.transfers_cancelled, st.transfers_try_refused,
           st.transfers_local);
    xc_sim_destroy(s);
    return ok ? 0 : 1;
}

int cmd_sim(int argc, char **argv) {
    unsigned long long seed = 0;
    uint32_t steps = 3000, nodes = 3, cells = 0;
    bool have_seed = false, have_steps = false, calm = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool ok = true;
        if (!strcmp(a, "--seed")) {
            ok = args_u64(argc, argv, &i, UINT64_MAX, &seed);
            have_seed = true;
        } else if (!strcmp(a, "--steps")) {
            ok = args_u32(argc, argv, &i, 0, 100000000u, &steps);
            have_steps = true;
        } else if (!strcmp(a, "--cells")) {
            ok = args_u32(argc, argv, &i, 2, XC_SIM_CELLS_MAX, &cells);
        } else if (!strcmp(a, "--nodes")) {
            ok = args_u32(argc, argv, &i, 1, RF_SIM_NODES_MAX, &nodes);
        } else if (!strcmp(a, "--no-calm")) {
            calm = false;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(sim_usage, stdout);
            return 0;
        } else {
            fprintf(stderr, "cellpay sim: unknown option %s\n%s", a, sim_usage);
            return 2;
        }
        if (!ok) return 2;
    }
    if (!have_seed) {
        fprintf(stderr, "cellpay sim: --seed is required\n%s", sim_usage);
        return 2;
    }
    if (cells) return sim_cells(seed, cells, have_steps ? steps : 2000, calm);
    rf_sim_t *s = rf_sim_create(&(rf_sim_config_t){.seed = seed, .nodes = nodes});
    bool ok = rf_sim_run(s, steps) && (!calm || rf_sim_calm(s));
    rf_sim_stats_t st;
    rf_sim_stats(s, &st);
    if (!ok) rf_sim_print_trace(s, stderr);
    printf("seed %llu nodes %u steps %" PRIu64 ": %s; %" PRIu64 " leaders, %" PRIu64
           " crashes, %" PRIu64 " commands acknowledged, %" PRIu64 " reads, commit index %" PRIu64
           ", %" PRIu64 " snapshots taken, %" PRIu64 " installed (%" PRIu64
           " failed to verify), %" PRIu64 " membership changes, %" PRIu64
           " ledger transfers applied and checked (%" PRIu64 " retried duplicates)\n",
           seed, nodes, st.steps, ok ? "ok" : "VIOLATION", st.elections, st.crashes, st.acked,
           st.reads, st.max_commit, st.snapshots, st.installs, st.install_failures,
           st.member_changes, st.ledger_transfers, st.ledger_duplicates);
    rf_sim_destroy(s);
    return ok ? 0 : 1;
}

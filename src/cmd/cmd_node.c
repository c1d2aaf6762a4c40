/* `cellpay node`: one replica of one cell, serving the binary protocol. */
#include <stdlib.h>
#include <string.h>

#include "base/constants.h"
#include "cmd/cmd.h"
#include "cmd/cmd_args.h"
#include "repl/node.h"

static const char node_usage[] =
    "usage: cellpay node --data DIR [--listen HOST:PORT] [--test-ops]\n"
    "                    [--cell C --id N --peers 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT [--join]]\n"
    "                    [--election-ms N] [--heartbeat-ms N]\n"
    "                    [--accounts-max N] [--transfers-max N] [--zones LIST]\n"
    "                    [--zone-rule D/M] [--snapshot-mib N]\n"
    "\n"
    "Serves one cell over the binary protocol (docs/protocol.md): every write is in the\n"
    "write-ahead log under DIR and fdatasynced before it is acknowledged; requests that\n"
    "arrive during a sync share the next one. On start it recovers from DIR (newest whole\n"
    "snapshot, then the log). SIGTERM or SIGINT stops it cleanly.\n"
    "\n"
    "Every cell is a Raft group. Without --peers it is a group of one; with --peers, the\n"
    "replicas of the cell, this one among them (--id), talk Raft on the peer addresses while\n"
    "clients use --listen; only the leader serves, the others answer not_leader. Lagging\n"
    "replicas catch up from the leader's log, or from its newest snapshot when the log they\n"
    "need is gone. The membership changes with `cellpay admin cell add-replica/remove-replica`;\n"
    "once changed it is kept in the log and the snapshots, and --peers only gives addresses.\n"
    "\n"
    "  --data DIR          data directory (created if missing)\n"
    "  --listen HOST:PORT  address to serve (default 127.0.0.1:7001; port 0 picks one,\n"
    "                      printed as \"listening on HOST:PORT\")\n"
    "  --test-ops          accept test_set_balances and test_set_clock\n"
    "  --cell C            the cell's number, 0..8388607 (default 0; it is part of payment\n"
    "                      ids); with --routes 1 or more (0 means no cell there)\n"
    "  --id N              this replica's id in --peers\n"
    "  --peers LIST        ID=HOST:PORT of every replica's peer address, this one included\n"
    "  --join              a new replica for an existing group: it is not a member (and\n"
    "                      never campaigns) until the leader adds it; --peers must list the\n"
    "                      current members too. Keep it on the command line of this replica.\n"
    "  --election-ms N     election timeout, randomized in [N, 2N) (default 150)\n"
    "  --heartbeat-ms N    leader heartbeat interval (default 30)\n"
    "  --accounts-max N    account capacity, fixed when DIR is created (default 1048576)\n"
    "  --transfers-max N   transfer capacity, fixed when DIR is created (default 4194304)\n"
    "  --zones LIST        the zones this cell owns, e.g. 0-24,50,60-69 (default: all, 0-99),\n"
    "                      fixed when DIR is created. create_accounts and create_transfers\n"
    "                      naming an account whose owner uid is in another zone are refused\n"
    "                      whole with wrong_cell; lookups and queries of such accounts find\n"
    "                      nothing (docs/routing.md)\n"
    "  --zone-rule D/M     zone(uid) = (uid / D) mod M (default 10/100), fixed when DIR is\n"
    "                      created; it must be the route table's rule\n"
    "  --snapshot-mib N    write a snapshot after N MiB of log (default 64; 0 = only when the\n"
    "                      Raft window needs one)\n"
    "  --routes FILE       the route table file (docs/routing.md), read again when it\n"
    "                      changes: while this replica leads, its relay delivers the cell's\n"
    "                      cross-cell credits to the merchants' cells (docs/cross-cell.md).\n"
    "                      Without it, cross-cell payments made here stay pending\n"
    "  --relay-faults PCT  for fault tests: the relay loses, duplicates or delays PCT in 100\n"
    "                      of its batches on purpose (default 0)\n"
    "  --tcc-recover-after SECONDS\n"
    "                      a refund or transfer across cells left undecided this long (its\n"
    "                      gateway died) is decided cancelled, and a cross-cell order left\n"
    "                      unpaid this long is resolved with the buyer's cell, by the relay\n"
    "                      while this replica leads (default 60; needs --routes)\n";

int cmd_node(int argc, char **argv) {
    node_config_t cfg = {
        .listen = "127.0.0.1:7001",
        .cell.ledger = {.accounts_max = CP_LEDGER_ACCOUNTS_DEFAULT,
                        .transfers_max = CP_LEDGER_TRANSFERS_DEFAULT},
        .snapshot_log_bytes = 64ull << 20,
        .tick_ms = 10,
        .election_ticks = 15,
        .heartbeat_ticks = 3,
    };
    uint32_t election_ms = 150, heartbeat_ms = 30;
    char err[256];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        unsigned long long mib;
        bool ok = true;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(node_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--data") && i + 1 < argc) {
            cfg.data_dir = argv[++i];
        } else if (!strcmp(a, "--listen") && i + 1 < argc) {
            cfg.listen = argv[++i];
        } else if (!strcmp(a, "--test-ops")) {
            cfg.test_ops = true;
        } else if (!strcmp(a, "--join")) {
            cfg.join = true;
        } else if (!strcmp(a, "--accounts-max")) {
            ok = args_u32(argc, argv, &i, 1, CP_LEDGER_TABLE_MAX, &cfg.cell.ledger.accounts_max);
            cfg.capacities_given = true;
        } else if (!strcmp(a, "--transfers-max")) {
            ok = args_u32(argc, argv, &i, 1, CP_LEDGER_TABLE_MAX, &cfg.cell.ledger.transfers_max);
            cfg.capacities_given = true;
        } else if (!strcmp(a, "--routes") && i + 1 < argc) {
            cfg.routes_path = argv[++i];
        } else if (!strcmp(a, "--relay-faults")) {
            ok = args_u32(argc, argv, &i, 0, 100, &cfg.relay_fault_pct);
        } else if (!strcmp(a, "--tcc-recover-after")) {
            uint32_t secs = 0;
            ok = args_u32(argc, argv, &i, 1, 86400, &secs);
            cfg.tcc_recover_after_ns = secs * 1000000000ull;
        } else if (!strcmp(a, "--zones") && i + 1 < argc) {
            const char *list = argv[++i];
            ok = cp_zones_parse(list, strlen(list), &cfg.cell.zones, err, sizeof err);
            if (!ok) fprintf(stderr, "cellpay node: --zones %s: %s\n", list, err);
            cfg.zones_given = true;
        } else if (!strcmp(a, "--zone-rule") && i + 1 < argc) {
            const char *rule = argv[++i];
            ok = cp_zone_rule_parse(rule, strlen(rule), &cfg.cell.zone_rule, err, sizeof err);
            if (!ok) fprintf(stderr, "cellpay node: --zone-rule %s: %s\n", rule, err);
            cfg.zone_rule_given = true;
        } else if (!strcmp(a, "--cell")) {
            unsigned long long cell;
            ok = args_u64(argc, argv, &i, PAY_CELL_MAX, &cell); /* 23 bits of pay ids */
            cfg.cell_id = cell;
        } else if (!strcmp(a, "--id")) {
            ok = args_u32(argc, argv, &i, 1, 1000000, &cfg.node_id);
        } else if (!strcmp(a, "--peers") && i + 1 < argc) {
            cfg.peer_count = peer_parse_list(argv[++i], cfg.peers, RF_NODES_MAX, err, sizeof err);
            if (cfg.peer_count == 0) fprintf(stderr, "cellpay node: %s\n", err);
            ok = cfg.peer_count > 0;
        } else if (!strcmp(a, "--election-ms")) {
            ok = args_u32(argc, argv, &i, 20, 60000, &election_ms);
        } else if (!strcmp(a, "--heartbeat-ms")) {
            ok = args_u32(argc, argv, &i, 10, 60000, &heartbeat_ms);
        } else if (!strcmp(a, "--snapshot-mib")) {
            ok = args_u64(argc, argv, &i, 1u << 20, &mib);
            cfg.snapshot_log_bytes = mib << 20;
        } else {
            fprintf(stderr, "cellpay node: unknown option or missing value \"%s\"\n\n%s", a,
                    node_usage);
            return 2;
        }
        if (!ok) return 2;
    }
    cfg.election_ticks = election_ms / cfg.tick_ms;
    cfg.heartbeat_ticks = heartbeat_ms / cfg.tick_ms;
    if (cfg.heartbeat_ticks >= cfg.election_ticks) {
        fprintf(stderr, "cellpay node: --heartbeat-ms must be below --election-ms\n");
        return 2;
    }
    if (cfg.join && cfg.peer_count == 0) {
        fprintf(stderr, "cellpay node: --join needs --peers (the members and this replica)\n");
        return 2;
    }
    if (cfg.peer_count > 0 && cfg.node_id == 0) {
        fprintf(stderr, "cellpay node: --peers needs --id (this replica's id in the list)\n");
        return 2;
    }
    if (!cfg.data_dir) {
        fprintf(stderr, "cellpay node: --data DIR is required\n\n%s", node_usage);
        return 2;
    }
    if (cfg.routes_path && cfg.cell_id == 0) {
        /* Cross-cell requests name "no other cell" with 0, and route tables refuse it. */
        fprintf(stderr, "cellpay node: --routes needs --cell N with N >= 1\n");
        return 2;
    }
    return node_run(&cfg);
}

/* cellpay: one binary, one subcommand per role. */
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"

static const char usage[] =
    "usage: cellpay <command> [options]\n"
    "\n"
    "commands:\n"
    "  start    the embedded default: N durable cells and the gateway in one process\n"
    "  ledger   the ledger's JSON Lines driver: requests on stdin, replies on stdout\n"
    "  node     one durable cell serving the binary protocol\n"
    "  client   JSON Lines ledger requests to a running cell, replies on stdout\n"
    "  admin    a running cell's replicas: `admin cell status | transfer-leader | add-replica |\n"
    "           remove-replica`; the route table file: `admin routes show | set`\n"
    "  gateway  the HTTP payment API (docs/gateway.md), routing to cells by a route table\n"
    "  sim      run the Raft simulator for one seed (consensus checks)\n"
    "  bench    measurements (bench ledger, node, failover)\n"
    "  help     this text; `cellpay <command> --help` describes one command\n";

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *c = argv[1];
    if (!strcmp(c, "help") || !strcmp(c, "--help") || !strcmp(c, "-h")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(c, "ledger")) return cmd_ledger(argc - 1, argv + 1);
    if (!strcmp(c, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(c, "start")) return cmd_start(argc - 1, argv + 1);
    if (!strcmp(c, "node")) return cmd_node(argc - 1, argv + 1);
    if (!strcmp(c, "client")) return cmd_client(argc - 1, argv + 1);
    if (!strcmp(c, "admin")) return cmd_admin(argc - 1, argv + 1);
    if (!strcmp(c, "gateway")) return cmd_gateway(argc - 1, argv + 1);
    if (!strcmp(c, "sim")) return cmd_sim(argc - 1, argv + 1);
    fprintf(stderr, "cellpay: unknown command \"%s\"\n\n%s", c, usage);
    return 2;
}

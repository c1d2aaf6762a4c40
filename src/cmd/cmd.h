/* The subcommands of the cellpay binary. Each takes argc/argv after the subcommand's name
 * (argv[0] is the subcommand) and returns the process exit code. */
#ifndef CP_CMD_H
#define CP_CMD_H

#include <stdbool.h>
#include <stdio.h>

#include "ledger/ledger.h"

int cmd_ledger(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_start(int argc, char **argv);
int cmd_node(int argc, char **argv);
int cmd_client(int argc, char **argv);
int cmd_admin(int argc, char **argv);
int cmd_admin_routes(int argc, char **argv); /* `admin routes` (cmd_routes.c) */
int cmd_admin_check(int argc, char **argv);  /* `admin check` (cmd_check.c) */
int cmd_sim(int argc, char **argv);
int cmd_gateway(int argc, char **argv);

/* Runs the JSON Lines ledger driver from in to out; shared by `ledger` and `start`. */
int cmd_ledger_run(FILE *in, FILE *out, bool test_ops, unsigned long long clock_start);
int cmd_ledger_run_with(FILE *in, FILE *out, bool test_ops, unsigned long long clock_start,
                        const ledger_config_t *config);

#endif

/* `cellpay start`: the embedded default. The gateway, the durable cells and the HTTP API do
 * not exist yet; until they do, start says so and runs the in-memory ledger driver. */
#include <string.h>
#include <unistd.h>

#include "cmd/cmd.h"

static const char start_usage[] =
    "usage: cellpay start\n"
    "\n"
    "The embedded default (gateway, cells, relay and CDC in one process) is not built yet.\n"
    "Until it is, start runs the in-memory ledger driver: JSON Lines ledger requests on stdin,\n"
    "one reply line each on stdout, nothing kept after exit (see `cellpay ledger --help`).\n";

int cmd_start(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(start_usage, stdout);
            return 0;
        }
        fprintf(stderr, "cellpay start: unknown option \"%s\"\n\n%s", argv[i], start_usage);
        return 2;
    }
    fputs("cellpay start: the gateway, durable cells and HTTP API are not built yet.\n"
          "Running the in-memory ledger driver instead: type JSON Lines requests, one per line,\n"
          "for example\n"
          "  {\"op\":\"create_accounts\",\"events\":[{\"id\":\"1\",\"ledger\":1,\"code\":1},"
          "{\"id\":\"2\",\"ledger\":1,\"code\":1}]}\n"
          "  {\"op\":\"create_transfers\",\"events\":[{\"id\":\"9\",\"debit_account_id\":\"1\","
          "\"credit_account_id\":\"2\",\"amount\":\"100\",\"ledger\":1,\"code\":1}]}\n"
          "  {\"op\":\"lookup_accounts\",\"ids\":[\"1\",\"2\"]}\n"
          "End with Ctrl-D. Nothing is stored on disk.\n",
          stderr);
    return cmd_ledger_run(stdin, stdout, false, 0);
}

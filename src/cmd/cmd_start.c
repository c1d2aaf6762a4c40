/* `cellpay start`: the embedded default. The cells (start_cells.h) and the gateway
 * (gateway.h) in one process; SIGTERM or SIGINT stops the gateway, then every cell. */
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "cmd/cmd_args.h"
#include "cmd/start_cells.h"
#include "gateway/gateway.h"

static const char start_usage[] =
    "usage: cellpay start [--data DIR] [--listen HOST:PORT] [--cells N]\n"
    "\n"
    "The embedded default: N cells and the gateway in one process. Each cell is a durable\n"
    "cell of one replica (as `cellpay node`: write-ahead log, fdatasync before every\n"
    "acknowledgement, snapshots) on a thread of its own, listening for the binary protocol on\n"
    "an ephemeral port of 127.0.0.1; cell i (1..N) owns the zones [100(i-1)/N, 100i/N). The\n"
    "gateway serves the payment API (docs/api.md) on --listen and routes each request by the\n"
    "table of these cells. Each cell's relay delivers its cross-cell payments' credits to the\n"
    "merchants' cells (docs/cross-cell.md). CDC is not built yet.\n"
    "\n"
    "Data lives under DIR: DIR/cell-<i> (each cell's log and snapshots), DIR/start.conf (the\n"
    "number of cells, fixed on first start: a cell's zones never change, so a later start\n"
    "with another --cells is refused) and DIR/admin.key (the operator's API key, mode 0600,\n"
    "made on first start), DIR/routes (the route table of the current run: the relays read it,\n"
    "and tools such as `cellpay admin check --data DIR`). When it listens it prints\n"
    "  cellpay start: listening on HOST:PORT, admin key in DIR/admin.key\n"
    "SIGTERM or SIGINT stops the gateway and then every cell cleanly; the exit code is 0.\n"
    "\n"
    "  --data DIR          data directory (default ./data; created if missing)\n"
    "  --listen HOST:PORT  the HTTP API's address (default 127.0.0.1:8080; port 0 picks one)\n"
    "  --cells N           cells, 1 to 100 (default 4); fixed when DIR is created\n";

typedef struct start_opts {
    const char *data, *listen;
    uint32_t cells;
} start_opts_t;

typedef struct listening_ctx {
    const start_opts_t *opts;
    const start_cells_t *cells;
} listening_ctx_t;

/* Tests and scripts read this line to learn the port (the one bound, for port 0). */
static void on_listening(void *ctx, uint16_t port) {
    const listening_ctx_t *l = ctx;
    const char *colon = strrchr(l->opts->listen, ':');
    int host_len = colon ? (int)(colon - l->opts->listen) : 0;
    printf("cellpay start: listening on %.*s:%u, admin key in %s\n", host_len, l->opts->listen,
           (unsigned)port, l->cells->admin_key_path);
    fflush(stdout);
}

/* 0 when the options are good, 1 after --help, 2 after a bad one (said on stderr). */
static int parse(int argc, char **argv, start_opts_t *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(start_usage, stdout);
            return 1;
        } else if (!strcmp(a, "--data") && i + 1 < argc) {
            o->data = argv[++i];
        } else if (!strcmp(a, "--listen") && i + 1 < argc) {
            o->listen = argv[++i];
        } else if (!strcmp(a, "--cells")) {
            if (!args_u32(argc, argv, &i, 1, START_CELLS_MAX, &o->cells)) return 2;
        } else {
            fprintf(stderr, "cellpay start: unknown option or missing value \"%s\"\n\n%s", a,
                    start_usage);
            return 2;
        }
    }
    if (!strrchr(o->listen, ':')) {
        fprintf(stderr, "cellpay start: --listen takes HOST:PORT, not \"%s\"\n", o->listen);
        return 2;
    }
    return 0;
}

int cmd_start(int argc, char **argv) {
    start_opts_t o = {.data = "./data", .listen = "127.0.0.1:8080", .cells = 4};
    int rc = parse(argc, argv, &o);
    if (rc != 0) return rc == 1 ? 0 : rc;
    char err[512];
    start_cells_t *cells = start_cells_open(o.data, o.cells, err, sizeof err);
    if (!cells) {
        fprintf(stderr, "cellpay start: %s\n", err);
        return 1;
    }
    listening_ctx_t ctx = {.opts = &o, .cells = cells};
    gateway_config_t g = {.listen = o.listen,
                          .admin_key = cells->admin_key,
                          .routes = cells->routes,
                          .on_listening = on_listening,
                          .ctx = &ctx};
    rc = gateway_run(&g);
    /* The gateway has stopped (a signal, or it could not start): nothing reaches the cells. */
    if (start_cells_close(cells) != 0) rc = 1;
    if (rc == 0) fprintf(stderr, "cellpay start: stopped cleanly\n");
    return rc;
}

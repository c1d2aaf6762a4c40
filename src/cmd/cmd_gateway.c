/* `cellpay gateway`: the HTTP payment API (gateway.h) with a route table file and an admin
 * key file. */
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "cmd/cmd_args.h"
#include "gateway/auth.h"
#include "gateway/gateway.h"

static const char gateway_usage[] =
    "usage: cellpay gateway --routes FILE --data DIR [--listen HOST:PORT]\n"
    "                       [--sessions N] [--cell-deadline-ms N] [--conns-max N]\n"
    "                       [--request-timeout-ms N] [--idle-timeout-ms N]\n"
    "\n"
    "Serves the payment API of docs/api-v1.md over HTTP/1.1 (keep-alive, pipelining) on\n"
    "HOST:PORT: operator endpoints (Authorization: Bearer <admin key>) POST /v1/merchants,\n"
    "POST /v1/users, POST /v1/users/{uid}/topups, GET /v1/users/{uid}/balance?currency=XXX,\n"
    "GET /v1/users/{uid}/payments; merchant endpoints (signed with X-Cellpay-Merchant,\n"
    "-Timestamp, -Signature) POST /v1/payments, GET /v1/payments/{id}, POST /v1/refunds,\n"
    "GET /v1/refunds/{id}; and GET /v1/health without auth. Each request goes to the cell that\n"
    "owns its user by the route table (see `cellpay admin routes`); the cells must serve the\n"
    "pay operations. Request bodies are limited to 64 KiB (413), the request line and headers\n"
    "to 16 KiB (431). SIGTERM or SIGINT stops it.\n"
    "\n"
    "  --routes FILE             the route table (required); re-read when it changes (checked\n"
    "                            every 500 ms): new requests follow the new table\n"
    "  --data DIR                where the admin key lives (required; created, mode 0700, if\n"
    "                            missing): DIR/admin.key, written with a fresh random key\n"
    "                            (mode 0600) when missing; a key file others may read is\n"
    "                            refused\n"
    "  --listen HOST:PORT        IPv4 address to serve (default 127.0.0.1:8080; port 0 picks\n"
    "                            one, printed as \"listening on HOST:PORT\")\n"
    "  --sessions N              connections to each cell, each one batch in flight (default 1)\n"
    "  --cell-deadline-ms N      wait this long for a cell's answer, then 503 unavailable\n"
    "                            (default 5000)\n"
    "  --conns-max N             open connections at most (default 1024); more are refused\n"
    "  --request-timeout-ms N    a request must arrive whole within N ms, else 408 (default\n"
    "                            10000)\n"
    "  --idle-timeout-ms N       keep-alive connections idle this long are closed (default\n"
    "                            60000)\n";

typedef struct listen_print {
    const char *listen;
} listen_print_t;

/* Tests and scripts read this line to learn an ephemeral port. */
static void on_listening(void *ctx, uint16_t port) {
    const listen_print_t *p = ctx;
    const char *colon = strrchr(p->listen, ':');
    int host_len = colon ? (int)(colon - p->listen) : 0;
    printf("cellpay gateway: listening on %.*s:%u\n", host_len, p->listen, (unsigned)port);
    fflush(stdout);
}

static int usage_error(const char *a) {
    fprintf(stderr, "cellpay gateway: unknown option or missing value \"%s\"\n\n%s", a,
            gateway_usage);
    return 2;
}

/* 1: parsed; 0: --help printed; 2: a bad option. */
static int parse_args(int argc, char **argv, gateway_config_t *cfg, const char **data) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool ok = true;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(gateway_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--listen") && i + 1 < argc) {
            cfg->listen = argv[++i];
        } else if (!strcmp(a, "--routes") && i + 1 < argc) {
            cfg->routes_path = argv[++i];
        } else if (!strcmp(a, "--data") && i + 1 < argc) {
            *data = argv[++i];
        } else if (!strcmp(a, "--sessions")) {
            ok = args_u32(argc, argv, &i, 1, 256, &cfg->sessions);
        } else if (!strcmp(a, "--cell-deadline-ms")) {
            ok = args_u32(argc, argv, &i, 1, 3600000, &cfg->cell_deadline_ms);
        } else if (!strcmp(a, "--conns-max")) {
            ok = args_u32(argc, argv, &i, 1, 1000000, &cfg->conns_max);
        } else if (!strcmp(a, "--request-timeout-ms")) {
            ok = args_u32(argc, argv, &i, 1, 3600000, &cfg->request_timeout_ms);
        } else if (!strcmp(a, "--idle-timeout-ms")) {
            ok = args_u32(argc, argv, &i, 1, 3600000, &cfg->idle_timeout_ms);
        } else {
            return usage_error(a);
        }
        if (!ok) return 2;
    }
    return 1;
}

int cmd_gateway(int argc, char **argv) {
    static gateway_config_t cfg; /* holds a route table: too big for the stack */
    memset(&cfg, 0, sizeof cfg);
    cfg.listen = "127.0.0.1:8080";
    const char *data = NULL;
    int rc = parse_args(argc, argv, &cfg, &data);
    if (rc != 1) return rc;
    if (!cfg.routes_path || !data) {
        fprintf(stderr, "cellpay gateway: --routes FILE and --data DIR are required\n\n%s",
                gateway_usage);
        return 2;
    }
    if (mkdir(data, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "cellpay gateway: cannot create %s: %s\n", data, strerror(errno));
        return 1;
    }
    char err[512];
    if (!rt_load(cfg.routes_path, &cfg.routes, err, sizeof err)) {
        fprintf(stderr, "cellpay gateway: %s\n", err);
        return 1;
    }
    static char key[AUTH_HEX_MAX + 1];
    if (auth_admin_key(data, key, err, sizeof err) != 0) {
        fprintf(stderr, "cellpay gateway: %s\n", err);
        return 1;
    }
    cfg.admin_key = key;
    listen_print_t lp = {cfg.listen};
    cfg.on_listening = on_listening;
    cfg.ctx = &lp;
    signal(SIGPIPE, SIG_IGN);
    return gateway_run(&cfg);
}

/* `cellpay gateway`: the HTTP front of cellpay. Today it serves only the health check; the
 * payment API (auth, routing to cells) is not built yet and every other path is 404. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "base/constants.h"
#include "cmd/cmd.h"
#include "cmd/cmd_args.h"
#include "gateway/http.h"

static const char gateway_usage[] =
    "usage: cellpay gateway [--listen HOST:PORT] [--conns-max N]\n"
    "                       [--request-timeout-ms N] [--idle-timeout-ms N]\n"
    "\n"
    "Serves HTTP/1.1 (keep-alive, pipelining) on HOST:PORT. What exists today is only the\n"
    "health check, GET /v1/health -> 200 {\"status\":\"ok\"}; the payment API of\n"
    "docs/api-v1.md (merchants, users, payments, refunds) is NOT built yet, and every other\n"
    "path answers 404 {\"error\":{\"code\":\"not_found\",...}}. Request bodies are limited to\n"
    "64 KiB (413), the request line and headers to 16 KiB (431). SIGTERM or SIGINT stops it.\n"
    "\n"
    "  --listen HOST:PORT        IPv4 address to serve (default 127.0.0.1:8080; port 0 picks\n"
    "                            one, printed as \"listening on HOST:PORT\")\n"
    "  --conns-max N             open connections at most (default 1024); more are refused\n"
    "  --request-timeout-ms N    a request must arrive whole within N ms, else 408 (default\n"
    "                            10000)\n"
    "  --idle-timeout-ms N       keep-alive connections idle this long are closed (default\n"
    "                            60000)\n";

typedef struct gateway {
    http_server_t *http;
    uv_signal_t sigterm, sigint;
} gateway_t;

static void gateway_handle(void *ctx, const http_request_t *req, http_handle_t h) {
    (void)ctx;
    static const char ok[] = "{\"status\":\"ok\"}";
    if (strcmp(req->path, "/v1/health") != 0) {
        http_respond_error(h, 404, "not_found",
                           "no such endpoint (the payment API is not built "
                           "yet)",
                           req->path);
        return;
    }
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        http_respond_error(h, 405, "method_not_allowed", "/v1/health takes GET", NULL);
        return;
    }
    http_respond(h, 200, "application/json", ok, sizeof ok - 1);
}

static void gateway_signal(uv_signal_t *sig, int signum) {
    gateway_t *g = sig->data;
    fprintf(stderr, "cellpay gateway: received signal %d, stopping\n", signum);
    http_server_stop(g->http);
    uv_close((uv_handle_t *)&g->sigterm, NULL);
    uv_close((uv_handle_t *)&g->sigint, NULL);
}

int cmd_gateway(int argc, char **argv) {
    http_config_t cfg = {.listen = "127.0.0.1:8080", .log_name = "cellpay gateway"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool ok = true;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(gateway_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--listen") && i + 1 < argc) {
            cfg.listen = argv[++i];
        } else if (!strcmp(a, "--conns-max")) {
            ok = args_u32(argc, argv, &i, 1, 1000000, &cfg.conns_max);
        } else if (!strcmp(a, "--request-timeout-ms")) {
            ok = args_u32(argc, argv, &i, 1, 3600000, &cfg.request_timeout_ms);
        } else if (!strcmp(a, "--idle-timeout-ms")) {
            ok = args_u32(argc, argv, &i, 1, 3600000, &cfg.idle_timeout_ms);
        } else {
            fprintf(stderr, "cellpay gateway: unknown option or missing value \"%s\"\n\n%s", a,
                    gateway_usage);
            return 2;
        }
        if (!ok) return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t *loop = uv_default_loop();
    gateway_t g = {0};
    char err[256];
    g.http = http_server_start(loop, &cfg, gateway_handle, &g, err, sizeof err);
    if (!g.http) {
        fprintf(stderr, "cellpay gateway: %s\n", err);
        uv_loop_close(loop);
        return 1;
    }
    const char *colon = strrchr(cfg.listen, ':');
    /* Tests and scripts read this line to learn an ephemeral port. */
    printf("cellpay gateway: listening on %.*s:%u\n", (int)(colon - cfg.listen), cfg.listen,
           (unsigned)http_server_port(g.http));
    fflush(stdout);
    uv_signal_init(loop, &g.sigterm);
    uv_signal_init(loop, &g.sigint);
    g.sigterm.data = g.sigint.data = &g;
    uv_signal_start(&g.sigterm, gateway_signal, SIGTERM);
    uv_signal_start(&g.sigint, gateway_signal, SIGINT);
    uv_run(loop, UV_RUN_DEFAULT);
    http_server_free(g.http);
    uv_loop_close(loop);
    fprintf(stderr, "cellpay gateway: stopped cleanly\n");
    return 0;
}

/* TEMPORARY: a minimal gateway_run() (gateway.h) so that `cellpay start` links and runs
 * before the real gateway (auth, routing, the payment API) is merged; that merge deletes this
 * file. It serves GET /v1/health only, ignores the route table and the admin key, and stops on
 * SIGTERM, SIGINT or gateway_stop(). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "base/assert.h"
#include "gateway/gateway.h"
#include "gateway/http.h"

typedef struct gateway_min {
    uv_loop_t loop;
    http_server_t *http;
    uv_signal_t sigterm, sigint;
    uv_async_t stop;
    bool stopping;
} gateway_min_t;

/* gateway_stop() names no gateway: the one running is found here. */
static uv_mutex_t running_lock;
static uv_once_t running_once = UV_ONCE_INIT;
static gateway_min_t *running;

static void running_init(void) {
    cp_assert(uv_mutex_init(&running_lock) == 0);
}

static void set_running(gateway_min_t *g) {
    uv_once(&running_once, running_init);
    uv_mutex_lock(&running_lock);
    running = g;
    uv_mutex_unlock(&running_lock);
}

static void handle(void *ctx, const http_request_t *req, http_handle_t h) {
    (void)ctx;
    static const char ok[] = "{\"status\":\"ok\"}";
    if (strcmp(req->path, "/v1/health") != 0) {
        http_respond_error(h, 404, "not_found",
                           "no such endpoint (this build's gateway serves only /v1/health)",
                           req->path);
        return;
    }
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        http_respond_error(h, 405, "method_not_allowed", "/v1/health takes GET", NULL);
        return;
    }
    http_respond(h, 200, "application/json", ok, sizeof ok - 1);
}

static void begin_stop(gateway_min_t *g, const char *why) {
    if (g->stopping) return;
    g->stopping = true;
    fprintf(stderr, "cellpay gateway: %s, stopping\n", why);
    http_server_stop(g->http);
    uv_close((uv_handle_t *)&g->sigterm, NULL);
    uv_close((uv_handle_t *)&g->sigint, NULL);
    uv_close((uv_handle_t *)&g->stop, NULL);
}

static void on_signal(uv_signal_t *s, int signum) {
    char why[48];
    snprintf(why, sizeof why, "received signal %d", signum);
    begin_stop(s->data, why);
}

static void on_stop(uv_async_t *a) {
    begin_stop(a->data, "asked to stop");
}

static void ignore_sigpipe(void) {
    signal(SIGPIPE, SIG_IGN);
}

int gateway_run(const gateway_config_t *config) {
    static uv_once_t sigpipe_once = UV_ONCE_INIT;
    uv_once(&sigpipe_once, ignore_sigpipe);
    gateway_min_t g = {0};
    if (uv_loop_init(&g.loop) != 0) return 1;
    http_config_t hc = {.listen = config->listen, .log_name = "cellpay gateway"};
    char err[256];
    g.http = http_server_start(&g.loop, &hc, handle, &g, err, sizeof err);
    if (!g.http) {
        fprintf(stderr, "cellpay gateway: %s\n", err);
        uv_loop_close(&g.loop);
        return 1;
    }
    uv_signal_init(&g.loop, &g.sigterm);
    uv_signal_init(&g.loop, &g.sigint);
    uv_async_init(&g.loop, &g.stop, on_stop);
    g.sigterm.data = g.sigint.data = g.stop.data = &g;
    uv_signal_start(&g.sigterm, on_signal, SIGTERM);
    uv_signal_start(&g.sigint, on_signal, SIGINT);
    set_running(&g);
    if (config->on_listening) config->on_listening(config->ctx, http_server_port(g.http));
    uv_run(&g.loop, UV_RUN_DEFAULT);
    set_running(NULL);
    http_server_free(g.http);
    uv_loop_close(&g.loop);
    fprintf(stderr, "cellpay gateway: stopped cleanly\n");
    return 0;
}

void gateway_stop(void) {
    uv_once(&running_once, running_init);
    uv_mutex_lock(&running_lock);
    if (running) uv_async_send(&running->stop);
    uv_mutex_unlock(&running_lock);
}

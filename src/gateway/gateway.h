/* The gateway: the access layer of docs/gateway.md. It serves the HTTP API of
 * shared/docs/api-v1.md on one libuv loop, authenticates every request (the admin key, or a
 * merchant's signature checked with its secret, fetched once from the merchant's cell), finds
 * the cell that owns the request's user in the route table, and sends the request there over
 * the binary protocol (one client per cell, which merges concurrent requests into batches).
 * Replies are rendered as the API's JSON.
 *
 * The route table can change while the gateway runs (gateway_set_routes()): requests already
 * sent finish on the connections they went out on, new ones follow the new table. */
#ifndef CP_GATEWAY_H
#define CP_GATEWAY_H

#include <stdbool.h>
#include <stdint.h>

#include "gateway/route.h"

typedef struct gateway_config {
    const char *listen;          /* "HOST:PORT" of the HTTP API (127.0.0.1:8080 by default) */
    const char *admin_key;       /* the operator's bearer key (hex), e.g. read from admin.key */
    const char *routes_path;     /* a route table file re-read when it changes; NULL: none */
    rt_table_t routes;           /* the table to start with */
    uint32_t sessions;           /* connections to each cell (0: 4) */
    uint32_t cell_deadline_ms;   /* a cell's answer is awaited this long, then 503 (0: 5000) */
    uint32_t conns_max;          /* HTTP connections (0: CP_HTTP_CONNS_DEFAULT); also the
                                    requests in flight, one per connection */
    uint32_t request_timeout_ms; /* HTTP request arrival timeout (0: the default) */
    uint32_t idle_timeout_ms;    /* HTTP keep-alive idle timeout (0: the default) */
    /* Called once on the gateway's thread when it listens (port: the one bound). */
    void (*on_listening)(void *ctx, uint16_t port);
    void *ctx;
} gateway_config_t;

/* Runs the gateway on the calling thread until SIGTERM or SIGINT (or gateway_stop());
 * returns the process exit code. Prints why on stderr when it cannot start. */
int gateway_run(const gateway_config_t *config);

/* Asks the running gateway (the last one started in this process) to stop. Any thread, but
 * not a signal handler (it takes a mutex). */
void gateway_stop(void);

/* Gives the running gateway a new route table (copied): requests from now on follow it;
 * requests already sent to a cell are answered through the connections they went out on.
 * Any thread. False when no gateway runs or the table is not valid (rt_validate). */
bool gateway_set_routes(const rt_table_t *routes);

#endif

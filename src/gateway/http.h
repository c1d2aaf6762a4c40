/* An HTTP/1.1 server on a libuv loop: keep-alive, pipelined requests answered in order, the
 * limits of the API contract (docs/gateway.md), and replies that may come after the handler
 * returns. Everything runs on the loop's thread; nothing here is thread-safe. */
#ifndef CP_HTTP_H
#define CP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/constants.h"

typedef struct http_header {
    const char *name; /* NUL-terminated, as the client spelled it */
    size_t name_len;  /* so that a lookup compares only names of the right length */
    const char *value;
    size_t value_len; /* also NUL-terminated; a value may contain no NUL (the parser refuses) */
} http_header_t;

/* One request. Every pointer is valid only during the handler's call: a handler that replies
 * later copies what it needs first. Strings are NUL-terminated. */
typedef struct http_request {
    const char *method; /* "GET", "POST", ... (only the methods http.c serves) */
    const char *path;   /* the target before '?', e.g. "/v1/health" (not percent-decoded) */
    const char *query;  /* after '?', "" when none */
    size_t path_len, query_len;
    const char *body; /* the whole body (chunked bodies de-chunked), at most CP_HTTP_BODY_MAX */
    size_t body_len;
    bool keep_alive; /* the connection stays open after the reply */
    uint32_t header_count;
    http_header_t headers[CP_HTTP_HEADERS_MAX];
} http_request_t;

/* The value of the request's first header called name (case-insensitive), or NULL. */
const char *http_request_header(const http_request_t *r, const char *name);

typedef struct http_server http_server_t;

/* Names one request until it is answered. A plain value: copy it anywhere. */
typedef struct http_handle {
    http_server_t *server;
    uint32_t slot; /* the connection's slot in the server */
    uint32_t gen;  /* the connection's generation: a reused slot does not match */
} http_handle_t;

/* Called once per request, in the order they arrive on each connection. It answers with
 * http_respond() now or later; the connection parses nothing more until then. */
typedef void (*http_handler_fn)(void *ctx, const http_request_t *req, http_handle_t h);

typedef struct http_config {
    const char *listen;          /* "HOST:PORT", IPv4; port 0 picks one (http_server_port) */
    uint32_t conns_max;          /* 0 = CP_HTTP_CONNS_DEFAULT */
    uint32_t request_timeout_ms; /* 0 = CP_HTTP_REQUEST_TIMEOUT_MS_DEFAULT */
    uint32_t idle_timeout_ms;    /* 0 = CP_HTTP_IDLE_TIMEOUT_MS_DEFAULT */
    const char *log_name;        /* prefix of log lines on stderr, e.g. "cellpay gateway" */
} http_config_t;

/* Binds and listens. NULL with a reason in err when it cannot (then it has run the loop once
 * to close what it opened: call it outside the loop's callbacks). */
http_server_t *http_server_start(uv_loop_t *loop, const http_config_t *config,
                                 http_handler_fn handler, void *ctx, char *err, size_t err_len);
/* The port listened on (the one picked, for port 0). */
uint16_t http_server_port(const http_server_t *s);
/* Connections open now. */
uint32_t http_server_conn_count(const http_server_t *s);
/* Stops listening and closes every connection (unanswered requests are dropped); the loop
 * finishes the closes. http_respond() on its handles becomes a no-op. */
void http_server_stop(http_server_t *s);
/* Frees the server once the loop has run after http_server_stop(); no handle of it may be
 * used after this. */
void http_server_free(http_server_t *s);

/* Answers the request h names: status, a Content-Type (NULL for none) and len bytes of body,
 * which are copied. Returns false, doing nothing, when the request is no longer waiting (its
 * client went away, the server stopped, or it was answered already). */
bool http_respond(http_handle_t h, int status, const char *content_type, const void *body,
                  size_t len);
#define HTTP_EXTRA_HEADERS_MAX 128u /* bytes of extra header lines in one reply */

/* As http_respond, with extra header lines ("Name: value\r\n" each, at most
 * HTTP_EXTRA_HEADERS_MAX bytes in all; NULL for none), e.g. "Idempotent-Replayed: true\r\n". */
bool http_respond_headers(http_handle_t h, int status, const char *content_type, const char *extra,
                          const void *body, size_t len);

/* The request h names while it waits for its answer, or NULL when it no longer waits (its
 * client went away, the server stopped, it was answered). The connection parses nothing more
 * until the answer, so the request stays where the handler saw it: a handler that answers
 * later may read it again here instead of copying it. Valid until the answer, or until the
 * loop runs on (a close of the connection frees it). */
const http_request_t *http_request_of(http_handle_t h);

/* Answers with the API's error object (json_out_error) as application/json. */
bool http_respond_error(http_handle_t h, int status, const char *code, const char *message,
                        const char *param);

#endif

/* The request side of an HTTP/1.1 connection without sockets: bytes in (any split, pipelined
 * requests back to back), whole requests or an error status out. llhttp tokenizes; this
 * assembles the request line, headers and body into fixed buffers inside the struct, enforces
 * the limits, and stops after each request so requests are handled one at a time, in order.
 * The server (http.c) embeds one per connection; the fuzz target drives one directly. */
#ifndef CP_HTTP_PARSE_H
#define CP_HTTP_PARSE_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/constants.h"
#include "gateway/http.h"

typedef enum http_parse_status {
    HTTP_PARSE_MORE,     /* every byte given was taken; the request is not whole yet */
    HTTP_PARSE_REQUEST,  /* a whole request is in ->req; call http_parse_next() after it */
    HTTP_PARSE_CONTINUE, /* headers asked "Expect: 100-continue" and are within limits:
                            answer 100 and call http_parse_resume() */
    HTTP_PARSE_ERROR,    /* the request is refused: ->err_* say how; the connection is done */
} http_parse_status_t;

typedef struct http_parse {
    llhttp_t llhttp;
    http_request_t req;
    bool begun;        /* a request's first byte has arrived and it is not whole yet */
    bool complete;     /* ->req is whole and not yet released by http_parse_next() */
    bool in_value;     /* the last header bytes were a value (the next field starts a header) */
    bool expect_100;   /* the request carries Expect: 100-continue */
    bool failed;       /* an error was returned; nothing more is parsed */
    uint32_t head_len; /* bytes used in head[] */
    int err_status;    /* 400, 413, 431 or 501 after HTTP_PARSE_ERROR */
    const char *err_code;
    char err_message[128];
    char head[CP_HTTP_HEAD_MAX];
    char body[CP_HTTP_BODY_MAX];
} http_parse_t;

void http_parse_init(http_parse_t *p);
/* Parses from data until a request is whole, an error, or the bytes run out; *used says how
 * many bytes were taken (the rest belong to later requests: give them again). */
http_parse_status_t http_parse_feed(http_parse_t *p, const char *data, size_t len, size_t *used);
/* Releases the current request (its buffers are reused for the next). */
void http_parse_next(http_parse_t *p);
/* Continues after HTTP_PARSE_CONTINUE. */
void http_parse_resume(http_parse_t *p);

#endif

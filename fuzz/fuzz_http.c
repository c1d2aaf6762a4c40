/* libFuzzer target: the HTTP request parser of the gateway (src/gateway/http_parse.c), fed
 * bytes as a connection reads them. The first byte picks how the rest is split into reads
 * (so requests and pipelined sequences are cut at every place); the parser must take each
 * read whole or stop at a request's end, hand out requests within the limits, and refuse
 * anything else with one of its statuses, never crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "gateway/http_parse.h"

static http_parse_t parser; /* ~80 KiB: static rather than on the stack */

static void check_request(const http_request_t *r) {
    cp_assert(r->body_len <= CP_HTTP_BODY_MAX);
    cp_assert(r->header_count <= CP_HTTP_HEADERS_MAX);
    cp_assert(strlen(r->path) == r->path_len && strlen(r->query) == r->query_len);
    cp_assert(r->path[0] == '/' || strcmp(r->path, "*") == 0);
    cp_assert(strlen(r->method) > 0);
    for (uint32_t i = 0; i < r->header_count; i++) {
        cp_assert(r->headers[i].name && r->headers[i].value);
        cp_assert(strlen(r->headers[i].value) == r->headers[i].value_len);
        cp_assert(strlen(r->headers[i].name) == r->headers[i].name_len);
        cp_assert(http_request_header(r, r->headers[i].name) != NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    size_t step = (size_t)(data[0] % 16) + 1; /* read size, 1..16 bytes; 16 = all at once */
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    if (step == 16) step = len ? len : 1;
    http_parse_init(&parser);
    size_t pos = 0;
    while (pos < len) {
        size_t end = pos + step < len ? pos + step : len;
        size_t used = 0;
        http_parse_status_t st = http_parse_feed(&parser, in + pos, end - pos, &used);
        cp_assert(used <= end - pos);
        pos += used;
        if (st == HTTP_PARSE_MORE) {
            cp_assert(pos == end);
            continue;
        }
        if (st == HTTP_PARSE_ERROR) {
            int s = parser.err_status;
            cp_assert(s == 400 || s == 413 || s == 431 || s == 501 || s == 505);
            cp_assert(parser.err_code != NULL && parser.err_message[0] != '\0');
            break;
        }
        if (st == HTTP_PARSE_CONTINUE) {
            http_parse_resume(&parser);
            continue;
        }
        check_request(&parser.req);
        if (!parser.req.keep_alive) break; /* the server parses nothing after such a request */
        http_parse_next(&parser);
    }
    return 0;
}

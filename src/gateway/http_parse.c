/* Request assembly on top of llhttp (see http_parse.h). llhttp calls back with pieces of the
 * request line and headers as they arrive, split anywhere; the pieces are appended to head[],
 * so a field split over many reads still ends up contiguous, and NUL-terminated there. */
#include "gateway/http_parse.h"

#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "base/assert.h"

static http_parse_t *parse_of(llhttp_t *l) {
    return (http_parse_t *)l->data;
}

/* Records why the request is refused; the callback then returns an error to llhttp. */
static int fail(http_parse_t *p, int status, const char *code, const char *message) {
    if (p->err_status == 0) {
        p->err_status = status;
        p->err_code = code;
        snprintf(p->err_message, sizeof p->err_message, "%s", message);
    }
    return -1;
}

static int fail_head(http_parse_t *p) {
    return fail(p, 431, "headers_too_large",
                "the request line and headers exceed 16 KiB or 64 headers");
}

/* Appends to head[]; one byte always stays free for a NUL. */
static bool head_put(http_parse_t *p, const char *at, size_t len) {
    if (len >= sizeof p->head - p->head_len) return false;
    memcpy(p->head + p->head_len, at, len);
    p->head_len += (uint32_t)len;
    return true;
}

static bool head_nul(http_parse_t *p) {
    return head_put(p, "", 1);
}

/* An empty header value gets no value callbacks: its NUL is written when the next field (or
 * the end of the headers) shows the value is over. */
static bool value_close(http_parse_t *p) {
    if (!p->in_value) return true;
    p->in_value = false;
    /* llhttp drops the spaces before a value but keeps those after it, which are not part of
     * the value either (RFC 9110 5.5). The value is the last thing in head[]. */
    http_header_t *h = &p->req.headers[p->req.header_count - 1];
    while (h->value_len > 0 &&
           (h->value[h->value_len - 1] == ' ' || h->value[h->value_len - 1] == '\t')) {
        h->value_len--;
        p->head_len--;
    }
    return head_nul(p);
}

/* Clears the request but its header array (2 KiB): each header is written whole when it
 * starts, and only the first header_count are read. */
static void request_reset(http_parse_t *p) {
    http_request_t *r = &p->req;
    memset(r, 0, offsetof(http_request_t, headers));
    r->path = r->query = r->method = "";
    r->body = p->body;
}

static int on_message_begin(llhttp_t *l) {
    http_parse_t *p = parse_of(l);
    p->begun = true;
    p->in_value = false;
    p->expect_100 = false;
    p->head_len = 0;
    request_reset(p);
    return 0;
}

static int on_url(llhttp_t *l, const char *at, size_t len) {
    http_parse_t *p = parse_of(l);
    return head_put(p, at, len) ? 0 : fail_head(p);
}

/* The URL is the first thing in head[]; its NUL marks where the headers start. */
static int on_url_complete(llhttp_t *l) {
    http_parse_t *p = parse_of(l);
    return head_nul(p) ? 0 : fail_head(p);
}

static int on_header_field(llhttp_t *l, const char *at, size_t len) {
    http_parse_t *p = parse_of(l);
    http_request_t *r = &p->req;
    bool starts = r->header_count == 0 || r->headers[r->header_count - 1].value != NULL;
    if (starts) {
        if (!value_close(p) || r->header_count == CP_HTTP_HEADERS_MAX) return fail_head(p);
        r->headers[r->header_count++] = (http_header_t){.name = p->head + p->head_len};
    }
    return head_put(p, at, len) ? 0 : fail_head(p);
}

static int on_header_field_complete(llhttp_t *l) {
    http_parse_t *p = parse_of(l);
    http_request_t *r = &p->req;
    cp_assert(r->header_count > 0);
    http_header_t *h = &r->headers[r->header_count - 1];
    h->name_len = (size_t)(p->head + p->head_len - h->name);
    if (!head_nul(p)) return fail_head(p);
    h->value = p->head + p->head_len;
    h->value_len = 0;
    p->in_value = true;
    return 0;
}

static int on_header_value(llhttp_t *l, const char *at, size_t len) {
    http_parse_t *p = parse_of(l);
    cp_assert(p->in_value && p->req.header_count > 0);
    p->req.headers[p->req.header_count - 1].value_len += len;
    return head_put(p, at, len) ? 0 : fail_head(p);
}

static int on_header_value_complete(llhttp_t *l) {
    http_parse_t *p = parse_of(l);
    return value_close(p) ? 0 : fail_head(p);
}

static bool method_served(uint8_t m) {
    return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_POST || m == HTTP_PUT || m == HTTP_DELETE ||
           m == HTTP_PATCH || m == HTTP_OPTIONS;
}

/* A Transfer-Encoding is served only when it is exactly "chunked": anything else (gzip, a
 * list) would need decoding that nothing here does. */
static bool transfer_encoding_served(const http_request_t *r) {
    const char *te = http_request_header(r, "transfer-encoding");
    if (!te) return true;
    while (*te == ' ' || *te == '\t') te++;
    size_t n = strlen(te);
    while (n > 0 && (te[n - 1] == ' ' || te[n - 1] == '\t')) n--;
    return n == 7 && strncasecmp(te, "chunked", 7) == 0;
}

/* The URL becomes path and query, split in place at the first '?'. */
static int split_target(http_parse_t *p) {
    http_request_t *r = &p->req;
    char *url = p->head;
    char *q = strchr(url, '?');
    if (q) {
        *q = '\0';
        r->query = q + 1;
        r->query_len = strlen(r->query);
    }
    r->path = url;
    r->path_len = strlen(url);
    if (url[0] != '/' && strcmp(url, "*") != 0)
        return fail(p, 400, "invalid_request", "the request target must be a path");
    return 0;
}

static int on_headers_complete(llhttp_t *l) {
    http_parse_t *p = parse_of(l);
    http_request_t *r = &p->req;
    if (!value_close(p)) return fail_head(p);
    if (l->http_major != 1)
        return fail(p, 505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served");
    uint8_t m = llhttp_get_method(l);
    if (!method_served(m)) {
        char msg[64];
        snprintf(msg, sizeof msg, "method %s is not supported", llhttp_method_name(m));
        return fail(p, 501, "not_implemented", msg);
    }
    r->method = llhttp_method_name(m);
    if (split_target(p) != 0) return -1;
    if (!transfer_encoding_served(r))
        return fail(p, 501, "not_implemented", "only Transfer-Encoding: chunked is supported");
    /* Refused before a byte of the body is read: the client is told at once. */
    if ((l->flags & F_CONTENT_LENGTH) && l->content_length > CP_HTTP_BODY_MAX)
        return fail(p, 413, "request_too_large", "the request body exceeds 64 KiB");
    const char *expect = http_request_header(r, "expect");
    if (expect && strcasecmp(expect, "100-continue") == 0) {
        p->expect_100 = true;
        return HPE_PAUSED;
    }
    return 0;
}

static int on_body(llhttp_t *l, const char *at, size_t len) {
    http_parse_t *p = parse_of(l);
    http_request_t *r = &p->req;
    if (len > CP_HTTP_BODY_MAX - r->body_len)
        return fail(p, 413, "request_too_large", "the request body exceeds 64 KiB");
    memcpy(p->body + r->body_len, at, len);
    r->body_len += len;
    return 0;
}

/* Pauses the parser after each request: the bytes after it wait until it is answered, so
 * replies go out in the order requests came. */
static int on_message_complete(llhttp_t *l) {
    http_parse_t *p = parse_of(l);
    p->begun = false;
    p->complete = true;
    /* After an Upgrade the client would speak another protocol: answer, then close. */
    p->req.keep_alive = llhttp_should_keep_alive(l) && !l->upgrade;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_url_complete = on_url_complete,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void http_parse_init(http_parse_t *p) {
    llhttp_init(&p->llhttp, HTTP_REQUEST, &settings);
    p->llhttp.data = p;
    p->begun = p->complete = p->in_value = p->expect_100 = p->failed = false;
    p->head_len = 0;
    p->err_status = 0;
    p->err_code = NULL;
    p->err_message[0] = '\0';
    request_reset(p);
}

static http_parse_status_t parse_error(http_parse_t *p, llhttp_errno_t e) {
    p->failed = true;
    p->begun = false;
    if (p->err_status != 0) return HTTP_PARSE_ERROR;
    if (e == HPE_PAUSED_H2_UPGRADE) {
        fail(p, 505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served");
    } else {
        char msg[sizeof p->err_message];
        snprintf(msg, sizeof msg, "malformed request: %s", llhttp_get_error_reason(&p->llhttp));
        fail(p, 400, "invalid_request", msg);
    }
    return HTTP_PARSE_ERROR;
}

http_parse_status_t http_parse_feed(http_parse_t *p, const char *data, size_t len, size_t *used) {
    cp_assert(!p->complete && !p->expect_100);
    *used = 0;
    if (p->failed) return HTTP_PARSE_ERROR;
    if (len == 0) return HTTP_PARSE_MORE;
    llhttp_errno_t e = llhttp_execute(&p->llhttp, data, len);
    if (e == HPE_OK) {
        *used = len;
        return HTTP_PARSE_MORE;
    }
    if ((e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) && (p->complete || p->expect_100)) {
        const char *pos = llhttp_get_error_pos(&p->llhttp);
        cp_assert(pos >= data && pos <= data + len);
        *used = (size_t)(pos - data);
        return p->complete ? HTTP_PARSE_REQUEST : HTTP_PARSE_CONTINUE;
    }
    *used = len;
    return parse_error(p, e);
}

void http_parse_next(http_parse_t *p) {
    cp_assert(p->complete);
    p->complete = false;
    if (llhttp_get_errno(&p->llhttp) == HPE_PAUSED) llhttp_resume(&p->llhttp);
}

void http_parse_resume(http_parse_t *p) {
    cp_assert(p->expect_100);
    p->expect_100 = false;
    llhttp_resume(&p->llhttp);
}

const char *http_request_header(const http_request_t *r, const char *name) {
    size_t n = strlen(name);
    for (uint32_t i = 0; i < r->header_count; i++) {
        const http_header_t *h = &r->headers[i];
        if (h->value && h->name_len == n && strncasecmp(h->name, name, n) == 0) return h->value;
    }
    return NULL;
}

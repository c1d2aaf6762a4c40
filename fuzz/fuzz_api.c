/* libFuzzer target: the gateway's request path without a network. Bytes go through the HTTP
 * request parser (http_parse.c) as one read; every whole request goes through endpoint
 * dispatch (api_match), and the authenticated endpoints through api_build, which decodes the
 * JSON body (api_json.c), the path and query parameters and the Idempotency-Key header. A
 * built call is then answered by a made-up cell object of the endpoint's kind, rendered, and
 * the rendered JSON must parse (jsmn, strict). Nothing may crash; every refusal is a 400 with
 * a code; every rendered answer fits API_RENDER_MAX. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define JSMN_STATIC
#define JSMN_STRICT
#include <jsmn.h>

#include "base/assert.h"
#include "gateway/api.h"
#include "gateway/http_parse.h"
#include "proto/proto.h"

static http_parse_t parser; /* ~80 KiB: static rather than on the stack */
static char out[API_RENDER_MAX];
static pay_object_t objs[PAY_LIST_MAX + 2];

static void check_json(const char *s, size_t n) {
    jsmn_parser p;
    jsmntok_t tok[16];
    jsmn_init(&p);
    int r = jsmn_parse(&p, s, n, tok, 16);
    cp_assert(r > 0 || r == JSMN_ERROR_NOMEM); /* NOMEM: valid so far, more tokens than 16 */
    cp_assert(s[0] == '{' && s[n - 1] == '}');
}

/* A cell's answer of the endpoint's kind, filled from the request's own fields. */
static uint32_t made_up_answer(const api_match_t *m, const api_call_t *c) {
    static const uint8_t kinds[API_EP_COUNT] = {
        [API_EP_MERCHANT_CREATE] = PAY_KIND_MERCHANT, [API_EP_USER_CREATE] = PAY_KIND_USER,
        [API_EP_TOPUP_CREATE] = PAY_KIND_TOPUP,       [API_EP_BALANCE] = PAY_KIND_BALANCE,
        [API_EP_USER_PAYMENTS] = PAY_KIND_LIST,       [API_EP_PAYMENT_CREATE] = PAY_KIND_PAYMENT,
        [API_EP_PAYMENT_GET] = PAY_KIND_PAYMENT,      [API_EP_REFUND_CREATE] = PAY_KIND_REFUND,
        [API_EP_REFUND_GET] = PAY_KIND_REFUND,        [API_EP_TRANSFER_CREATE] = PAY_KIND_TRANSFER,
        [API_EP_TRANSFER_GET] = PAY_KIND_TRANSFER,
    };
    const pay_request_t *q = &c->u.req;
    pay_object_t o = {.kind = kinds[m->endpoint], .code = PAY_CREATED};
    o.status = (uint8_t)(q->body_hash % 4); /* a transfer's, with one no cell answers */
    o.recipient = q->recipient;
    if (c->op == PROTO_OP_PAY) {
        o.id = q->idem_key, o.amount = q->amount, o.uid = q->uid, o.merchant = q->actor;
        o.payment_id = q->payment_id, o.currency = q->currency,
        o.created_at = (uint64_t)q->body_hash;
        memcpy(o.text, q->text, sizeof o.text);
        memcpy(o.secret, &q->body_hash, sizeof q->body_hash);
    } else {
        o.code = PAY_OK, o.id = c->u.query.id, o.uid = c->u.query.uid;
    }
    objs[0] = o;
    if (m->endpoint != API_EP_USER_PAYMENTS) return 1;
    uint32_t n = 1 + (uint32_t)(c->u.query.uid % (c->limit + 2)); /* up to limit + 1 items */
    for (uint32_t i = 1; i < n; i++) {
        objs[i] = o;
        objs[i].kind = PAY_KIND_PAYMENT;
        memset(objs[i].text, (int)(i + 0x1f), sizeof objs[i].text); /* escapes, bad bytes */
    }
    return n;
}

static void check_request(const http_request_t *r) {
    api_match_t m;
    api_match(r->method, r->path, r->path_len, &m);
    cp_assert(m.status == 0 || m.status == 404 || m.status == 405);
    cp_assert((m.status == 0) == (m.endpoint != API_EP_NONE));
    cp_assert(m.status != 405 || m.allow != NULL);
    if (m.status != 0 || api_endpoint_auth(m.endpoint) == API_AUTH_NONE) return;
    api_call_t c;
    api_fail_t f;
    uint64_t actor = api_endpoint_auth(m.endpoint) == API_AUTH_MERCHANT ? r->body_len + 1 : 0;
    if (!api_build(&m, r, actor, &c, &f)) {
        cp_assert(f.status == 400 && strcmp(f.code, "invalid_request") == 0);
        size_t n = json_out_error(out, sizeof out, f.code, f.message, f.param);
        cp_assert(n > 0);
        check_json(out, n);
        return;
    }
    cp_assert(c.op == (strcmp(r->method, "POST") == 0 ? PROTO_OP_PAY : PROTO_OP_PAY_QUERY));
    cp_assert(c.op != PROTO_OP_PAY ||
              (c.u.req.idem_key != 0) == (http_request_header(r, "Idempotency-Key") != NULL));
    (void)api_call_route_uid(&c);
    int status;
    bool replayed;
    uint32_t n = made_up_answer(&m, &c);
    size_t len =
        api_render_reply(m.endpoint, 0, objs, n, c.limit, out, sizeof out, &status, &replayed);
    cp_assert(len > 0 && len < sizeof out);
    cp_assert(status == 200 || status == 201);
    check_json(out, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    http_parse_init(&parser);
    size_t pos = 0;
    while (pos < size) {
        size_t used = 0;
        http_parse_status_t st =
            http_parse_feed(&parser, (const char *)data + pos, size - pos, &used);
        pos += used;
        if (st == HTTP_PARSE_CONTINUE) {
            http_parse_resume(&parser);
            continue;
        }
        if (st != HTTP_PARSE_REQUEST) break;
        check_request(&parser.req);
        if (!parser.req.keep_alive) break;
        http_parse_next(&parser);
    }
    return 0;
}

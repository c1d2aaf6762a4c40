/* The request side of api.h: endpoint dispatch by path, ids, and building the cell's request
 * from an HTTP request. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "base/assert.h"
#include "gateway/api.h"
#include "proto/proto.h"

/* ---- Ids ---- */

static const char hex_digits[] = "0123456789abcdef";

size_t api_id_format(const char *prefix, u128 id, char out[API_ID_MAX]) {
    size_t p = strlen(prefix);
    cp_assert(p + API_ID_HEX < API_ID_MAX);
    memcpy(out, prefix, p);
    for (uint32_t i = 0; i < API_ID_HEX; i++)
        out[p + i] = hex_digits[(id >> (4 * (API_ID_HEX - 1 - i))) & 15];
    out[p + API_ID_HEX] = '\0';
    return p + API_ID_HEX;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1; /* upper case is not our form: one spelling per id */
}

bool api_id_parse(const char *prefix, const char *s, size_t len, u128 *out) {
    size_t p = strlen(prefix);
    if (len != p + API_ID_HEX || memcmp(s, prefix, p) != 0) return false;
    u128 v = 0;
    for (uint32_t i = 0; i < API_ID_HEX; i++) {
        int d = hex_value(s[p + i]);
        if (d < 0) return false;
        v = (v << 4) | (u128)d;
    }
    *out = v;
    return true;
}

bool api_uid_parse(const char *s, size_t len, uint64_t *out) {
    if (len == 0 || len > 20 || (len > 1 && s[0] == '0')) return false;
    u128 v;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    if (!u128_parse(s, len, &v) || v == 0 || v > UINT64_MAX) return false;
    *out = (uint64_t)v;
    return true;
}

/* ---- Dispatch ---- */

typedef struct path_view {
    const char *p;
    size_t len;
} path_view_t;

/* Takes the next segment after a '/'; false at the end of the path. */
static bool segment_next(path_view_t *v, const char **seg, size_t *seg_len) {
    if (v->len == 0 || v->p[0] != '/') return false;
    size_t n = 1;
    while (n < v->len && v->p[n] != '/') n++;
    *seg = v->p + 1;
    *seg_len = n - 1;
    v->p += n;
    v->len -= n;
    return true;
}

static bool seg_is(const char *seg, size_t n, const char *want) {
    return strlen(want) == n && memcmp(seg, want, n) == 0;
}

static bool method_is(const char *method, const char *want) {
    return strcmp(method, want) == 0;
}

static void match_set(api_match_t *m, const char *method, api_endpoint_t get_ep,
                      api_endpoint_t post_ep) {
    bool get = method_is(method, "GET") || method_is(method, "HEAD");
    if (get && get_ep != API_EP_NONE) {
        m->endpoint = get_ep;
    } else if (method_is(method, "POST") && post_ep != API_EP_NONE) {
        m->endpoint = post_ep;
    } else {
        m->status = 405;
        m->allow = get_ep != API_EP_NONE ? "GET, HEAD" : "POST";
    }
}

/* /v1/users[/{uid}/topups|balance|payments] */
static void match_users(api_match_t *m, const char *method, path_view_t *v) {
    const char *seg, *sub;
    size_t n, sub_n;
    if (!segment_next(v, &seg, &n)) {
        match_set(m, method, API_EP_NONE, API_EP_USER_CREATE);
        return;
    }
    if (!api_uid_parse(seg, n, &m->uid) || !segment_next(v, &sub, &sub_n) || v->len != 0) {
        m->status = 404;
        return;
    }
    if (seg_is(sub, sub_n, "topups"))
        match_set(m, method, API_EP_NONE, API_EP_TOPUP_CREATE);
    else if (seg_is(sub, sub_n, "balance"))
        match_set(m, method, API_EP_BALANCE, API_EP_NONE);
    else if (seg_is(sub, sub_n, "payments"))
        match_set(m, method, API_EP_USER_PAYMENTS, API_EP_NONE);
    else
        m->status = 404;
}

/* /v1/payments[/{id}], /v1/refunds[/{id}] and /v1/transfers[/{id}] */
static void match_objects(api_match_t *m, const char *method, path_view_t *v, const char *prefix,
                          api_endpoint_t create, api_endpoint_t get) {
    const char *seg;
    size_t n;
    if (!segment_next(v, &seg, &n)) {
        match_set(m, method, API_EP_NONE, create);
        return;
    }
    if (v->len != 0 || !api_id_parse(prefix, seg, n, &m->id)) {
        m->status = 404;
        return;
    }
    match_set(m, method, get, API_EP_NONE);
}

void api_match(const char *method, const char *path, size_t path_len, api_match_t *out) {
    *out = (api_match_t){0};
    path_view_t v = {path, path_len};
    const char *seg;
    size_t n;
    if (!segment_next(&v, &seg, &n) || !seg_is(seg, n, "v1") || !segment_next(&v, &seg, &n)) {
        out->status = 404;
        return;
    }
    bool leaf = v.len == 0;
    if (seg_is(seg, n, "health") && leaf)
        match_set(out, method, API_EP_HEALTH, API_EP_NONE);
    else if (seg_is(seg, n, "merchants") && leaf)
        match_set(out, method, API_EP_NONE, API_EP_MERCHANT_CREATE);
    else if (seg_is(seg, n, "users"))
        match_users(out, method, &v);
    else if (seg_is(seg, n, "payments"))
        match_objects(out, method, &v, "pay_", API_EP_PAYMENT_CREATE, API_EP_PAYMENT_GET);
    else if (seg_is(seg, n, "refunds"))
        match_objects(out, method, &v, "re_", API_EP_REFUND_CREATE, API_EP_REFUND_GET);
    else if (seg_is(seg, n, "transfers"))
        match_objects(out, method, &v, "tr_", API_EP_TRANSFER_CREATE, API_EP_TRANSFER_GET);
    else
        out->status = 404;
}

api_auth_t api_endpoint_auth(api_endpoint_t e) {
    switch (e) {
    case API_EP_MERCHANT_CREATE:
    case API_EP_USER_CREATE:
    case API_EP_TOPUP_CREATE:
    case API_EP_BALANCE:
    case API_EP_USER_PAYMENTS:
    /* Users have no keys of their own: the operator moves their money. */
    case API_EP_TRANSFER_CREATE:
    case API_EP_TRANSFER_GET: return API_AUTH_OPERATOR;
    case API_EP_PAYMENT_CREATE:
    case API_EP_PAYMENT_GET:
    case API_EP_REFUND_CREATE:
    case API_EP_REFUND_GET: return API_AUTH_MERCHANT;
    default: return API_AUTH_NONE;
    }
}

const char *api_endpoint_name(api_endpoint_t e) {
    static const char *const names[API_EP_COUNT] = {
        [API_EP_NONE] = "none",
        [API_EP_HEALTH] = "health",
        [API_EP_MERCHANT_CREATE] = "merchant_create",
        [API_EP_USER_CREATE] = "user_create",
        [API_EP_TOPUP_CREATE] = "topup_create",
        [API_EP_BALANCE] = "balance",
        [API_EP_USER_PAYMENTS] = "user_payments",
        [API_EP_PAYMENT_CREATE] = "payment_create",
        [API_EP_PAYMENT_GET] = "payment_get",
        [API_EP_REFUND_CREATE] = "refund_create",
        [API_EP_REFUND_GET] = "refund_get",
        [API_EP_TRANSFER_CREATE] = "transfer_create",
        [API_EP_TRANSFER_GET] = "transfer_get",
    };
    return (unsigned)e < API_EP_COUNT ? names[e] : "none";
}

bool api_query_param(const char *query, size_t query_len, const char *name, const char **value,
                     size_t *value_len) {
    size_t name_len = strlen(name);
    for (size_t pos = 0; pos < query_len;) {
        const char *amp = memchr(query + pos, '&', query_len - pos);
        size_t end = amp ? (size_t)(amp - query) : query_len;
        const char *kv = query + pos;
        size_t kv_len = end - pos;
        if (kv_len > name_len && kv[name_len] == '=' && memcmp(kv, name, name_len) == 0) {
            *value = kv + name_len + 1;
            *value_len = kv_len - name_len - 1;
            return true;
        }
        if (kv_len == name_len && memcmp(kv, name, name_len) == 0) {
            *value = kv + name_len;
            *value_len = 0;
            return true;
        }
        pos = end + 1;
    }
    return false;
}

/* ---- Building the cell's request ---- */

__attribute__((format(printf, 4, 5))) static bool refuse(api_fail_t *f, int status,
                                                         const char *param, const char *fmt, ...) {
    f->status = status;
    f->code = "invalid_request";
    snprintf(f->param, sizeof f->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof f->message, fmt, ap);
    va_end(ap);
    return false;
}

static bool refuse_json(api_fail_t *f, const api_error_t *e) {
    return refuse(f, 400, e->param, "%s", e->message);
}

static u128 hash128(const XXH128_hash_t h) {
    return ((u128)h.high64 << 64) | h.low64;
}

/* The Idempotency-Key header as the cell's key: 0 when absent; 0 is never a present key's. */
static bool idem_key(const http_request_t *r, u128 *out, api_fail_t *f) {
    const char *k = http_request_header(r, "Idempotency-Key");
    *out = 0;
    if (!k) return true;
    size_t n = strlen(k);
    bool ok = n >= 1 && n <= API_IDEMPOTENCY_KEY_MAX;
    for (size_t i = 0; ok && i < n; i++) ok = k[i] >= 0x20 && k[i] <= 0x7e;
    if (!ok)
        return refuse(f, 400, "Idempotency-Key",
                      "Idempotency-Key must be 1 to 64 printable ASCII characters");
    u128 h = hash128(XXH3_128bits(k, n));
    *out = h ? h : 1;
    return true;
}

/* METHOD "\n" PATH "\n" BODY: a replay must be the same request, not just the same body. */
static u128 body_hash(const http_request_t *r) {
    XXH3_state_t st;
    XXH3_INITSTATE(&st);
    XXH3_128bits_reset(&st);
    XXH3_128bits_update(&st, r->method, strlen(r->method));
    XXH3_128bits_update(&st, "\n", 1);
    XXH3_128bits_update(&st, r->path, r->path_len);
    XXH3_128bits_update(&st, "\n", 1);
    XXH3_128bits_update(&st, r->body, r->body_len);
    return hash128(XXH3_128bits_digest(&st));
}

static void text_copy(char dst[PAY_TEXT_MAX], const char *src) {
    size_t n = strnlen(src, PAY_TEXT_MAX);
    memset(dst, 0, PAY_TEXT_MAX);
    memcpy(dst, src, n);
}

static bool build_merchant(const http_request_t *r, pay_request_t *q, api_fail_t *f) {
    api_merchant_req_t b;
    api_error_t e;
    if (!api_decode_merchant(r->body, r->body_len, &b, &e)) return refuse_json(f, &e);
    q->kind = PAY_KIND_MERCHANT;
    q->uid = b.uid;
    return true;
}

static bool build_user(const http_request_t *r, pay_request_t *q, api_fail_t *f) {
    api_user_req_t b;
    api_error_t e;
    if (!api_decode_user(r->body, r->body_len, &b, &e)) return refuse_json(f, &e);
    q->kind = PAY_KIND_USER;
    q->uid = b.uid;
    q->currency = pay_currency_pack(b.currency);
    return true;
}

static bool build_topup(const api_match_t *m, const http_request_t *r, pay_request_t *q,
                        api_fail_t *f) {
    api_topup_req_t b;
    api_error_t e;
    if (!api_decode_topup(r->body, r->body_len, &b, &e)) return refuse_json(f, &e);
    q->kind = PAY_KIND_TOPUP;
    q->uid = m->uid;
    q->amount = b.amount;
    q->currency = pay_currency_pack(b.currency);
    return true;
}

static bool build_payment(const http_request_t *r, pay_request_t *q, api_fail_t *f) {
    api_payment_req_t b;
    api_error_t e;
    if (!api_decode_payment(r->body, r->body_len, &b, &e)) return refuse_json(f, &e);
    if (b.funding != API_FUNDING_BALANCE)
        return refuse(f, 400, "funding", "funding \"credit\" is not available; use \"balance\"");
    q->kind = PAY_KIND_PAYMENT;
    q->uid = b.buyer_uid;
    q->amount = b.amount;
    q->currency = pay_currency_pack(b.currency);
    q->funding = 1;
    text_copy(q->text, b.out_trade_no);
    return true;
}

static bool build_refund(const http_request_t *r, pay_request_t *q, api_fail_t *f) {
    api_refund_req_t b;
    api_error_t e;
    if (!api_decode_refund(r->body, r->body_len, &b, &e)) return refuse_json(f, &e);
    if (!api_id_parse("pay_", b.payment_id, strlen(b.payment_id), &q->payment_id))
        return refuse(f, 400, "payment_id",
                      "payment_id must be \"pay_\" and 32 lowercase hex digits");
    q->kind = PAY_KIND_REFUND;
    q->amount = b.amount;
    text_copy(q->text, b.out_request_no);
    return true;
}

/* peer_cell is the gateway's to set from its route table (0 here: within one cell). */
static bool build_transfer(const http_request_t *r, pay_request_t *q, api_fail_t *f) {
    api_transfer_req_t b;
    api_error_t e;
    if (!api_decode_transfer(r->body, r->body_len, &b, &e)) return refuse_json(f, &e);
    q->kind = PAY_KIND_TRANSFER;
    q->uid = b.from_uid;
    q->recipient = b.to_uid;
    q->amount = b.amount;
    q->currency = pay_currency_pack(b.currency);
    return true;
}

static bool build_write(const api_match_t *m, const http_request_t *r, pay_request_t *q,
                        api_fail_t *f) {
    switch (m->endpoint) {
    case API_EP_MERCHANT_CREATE: return build_merchant(r, q, f);
    case API_EP_USER_CREATE: return build_user(r, q, f);
    case API_EP_TOPUP_CREATE: return build_topup(m, r, q, f);
    case API_EP_PAYMENT_CREATE: return build_payment(r, q, f);
    case API_EP_REFUND_CREATE: return build_refund(r, q, f);
    case API_EP_TRANSFER_CREATE: return build_transfer(r, q, f);
    default: cp_assert(!"not a write endpoint"); return false;
    }
}

static bool query_currency(const http_request_t *r, uint32_t *out, api_fail_t *f) {
    const char *v;
    size_t n;
    if (!api_query_param(r->query, r->query_len, "currency", &v, &n))
        return refuse(f, 400, "currency", "the currency query parameter is required");
    *out = n == 3 ? pay_currency_pack(v) : 0;
    if (*out == 0) return refuse(f, 400, "currency", "currency must be three capital letters");
    return true;
}

static bool query_list(const http_request_t *r, pay_query_t *q, uint32_t *limit, api_fail_t *f) {
    const char *v;
    size_t n;
    *limit = API_LIST_LIMIT_DEFAULT;
    if (api_query_param(r->query, r->query_len, "limit", &v, &n)) {
        uint64_t l;
        if (!api_uid_parse(v, n, &l) || l > PAY_LIST_MAX)
            return refuse(f, 400, "limit", "limit must be a whole number from 1 to 100");
        *limit = (uint32_t)l;
    }
    if (api_query_param(r->query, r->query_len, "starting_after", &v, &n) &&
        !api_id_parse("pay_", v, n, &q->after))
        return refuse(f, 400, "starting_after", "starting_after must be a payment id");
    q->limit = *limit;
    return true;
}

static bool build_query(const api_match_t *m, const http_request_t *r, uint64_t actor,
                        api_call_t *c, api_fail_t *f) {
    pay_query_t *q = &c->u.query;
    q->actor = actor;
    q->uid = m->uid;
    switch (m->endpoint) {
    case API_EP_PAYMENT_GET: q->kind = PAY_Q_PAYMENT, q->id = m->id; return true;
    case API_EP_REFUND_GET: q->kind = PAY_Q_REFUND, q->id = m->id; return true;
    case API_EP_TRANSFER_GET: q->kind = PAY_Q_TRANSFER, q->id = m->id; return true;
    case API_EP_BALANCE: q->kind = PAY_Q_BALANCE; return query_currency(r, &q->currency, f);
    case API_EP_USER_PAYMENTS: q->kind = PAY_Q_USER_PAYMENTS; return query_list(r, q, &c->limit, f);
    default: cp_assert(!"not a read endpoint"); return false;
    }
}

bool api_build(const api_match_t *m, const http_request_t *r, uint64_t actor, api_call_t *out,
               api_fail_t *fail) {
    memset(out, 0, sizeof *out);
    cp_assert(m->status == 0 && api_endpoint_auth(m->endpoint) != API_AUTH_NONE);
    if (strcmp(r->method, "POST") != 0) {
        out->op = PROTO_OP_PAY_QUERY;
        return build_query(m, r, actor, out, fail);
    }
    pay_request_t *q = &out->u.req;
    out->op = PROTO_OP_PAY;
    q->actor = actor;
    if (!idem_key(r, &q->idem_key, fail)) return false;
    q->body_hash = body_hash(r);
    return build_write(m, r, q, fail);
}

uint64_t api_call_route_uid(const api_call_t *c) {
    return c->op == PROTO_OP_PAY ? pay_request_route_uid(&c->u.req)
                                 : pay_query_route_uid(&c->u.query);
}

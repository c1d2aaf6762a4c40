/* One mechanism for every endpoint: a table of fields (name, kind, required, where it goes)
 * per body, and one walk over jsmn's tokens that fills the struct by the table. */
#include "gateway/api_json.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define JSMN_STATIC
#define JSMN_STRICT
#include <jsmn.h>

typedef enum kind { K_UID, K_AMOUNT, K_CURRENCY, K_TEXT, K_FUNDING } kind_t;

typedef struct field {
    const char *name;
    kind_t kind;
    bool required;
    size_t offset;
} field_t;

#define FIELD(type, member, kind, required)                                                        \
    { #member, kind, required, offsetof(type, member) }

static const field_t merchant_fields[] = {FIELD(api_merchant_req_t, uid, K_UID, true)};
static const field_t user_fields[] = {FIELD(api_user_req_t, uid, K_UID, true),
                                      FIELD(api_user_req_t, currency, K_CURRENCY, true)};
static const field_t topup_fields[] = {FIELD(api_topup_req_t, amount, K_AMOUNT, true),
                                       FIELD(api_topup_req_t, currency, K_CURRENCY, true)};
static const field_t payment_fields[] = {
    FIELD(api_payment_req_t, buyer_uid, K_UID, true),
    FIELD(api_payment_req_t, amount, K_AMOUNT, true),
    FIELD(api_payment_req_t, currency, K_CURRENCY, true),
    FIELD(api_payment_req_t, out_trade_no, K_TEXT, true),
    FIELD(api_payment_req_t, funding, K_FUNDING, false),
};
static const field_t refund_fields[] = {
    FIELD(api_refund_req_t, payment_id, K_TEXT, true),
    FIELD(api_refund_req_t, amount, K_AMOUNT, true),
    FIELD(api_refund_req_t, out_request_no, K_TEXT, true),
};

static const field_t transfer_fields[] = {
    FIELD(api_transfer_req_t, from_uid, K_UID, true),
    FIELD(api_transfer_req_t, to_uid, K_UID, true),
    FIELD(api_transfer_req_t, amount, K_AMOUNT, true),
    FIELD(api_transfer_req_t, currency, K_CURRENCY, true),
};

__attribute__((format(printf, 3, 4))) static bool fail(api_error_t *err, const char *param,
                                                       const char *fmt, ...) {
    err->code = "invalid_request";
    snprintf(err->param, sizeof err->param, "%s", param);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return false;
}

/* The value of a string token as bytes: only printable ASCII without quote or backslash, so
 * no escape needs decoding and the value can be quoted back as it is. */
static bool plain_text(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\') return false;
    return true;
}

static bool digits_canonical(const char *s, size_t n) {
    if (n == 0 || (n > 1 && s[0] == '0')) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

static bool set_field(const field_t *f, const char *s, size_t n, void *dst, api_error_t *err) {
    char *p = (char *)dst + f->offset;
    u128 v;
    switch (f->kind) {
    case K_UID:
        if (!digits_canonical(s, n) || !u128_parse(s, n, &v) || v == 0 || v > UINT64_MAX)
            return fail(err, f->name, "%s must be a decimal string of a uid, 1 to 2^64-1", f->name);
        *(uint64_t *)(void *)p = (uint64_t)v;
        return true;
    case K_AMOUNT:
        if (!digits_canonical(s, n) || !u128_parse(s, n, &v) || v == 0)
            return fail(err, f->name,
                        "%s must be a decimal string of integer minor units above 0 (\"1999\" "
                        "is 19.99), below 2^128",
                        f->name);
        memcpy(p, &v, sizeof v);
        return true;
    case K_CURRENCY:
        if (n != 3 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z' || s[2] < 'A' ||
            s[2] > 'Z')
            return fail(err, f->name, "%s must be an ISO 4217 code such as \"CNY\"", f->name);
        memcpy(p, s, 3);
        p[3] = '\0';
        return true;
    case K_TEXT:
        if (n == 0 || n > API_TEXT_MAX || !plain_text(s, n))
            return fail(err, f->name,
                        "%s must be 1 to %u printable ASCII characters (no quote, backslash or "
                        "space)",
                        f->name, API_TEXT_MAX);
        memcpy(p, s, n);
        p[n] = '\0';
        return true;
    case K_FUNDING:
        if (n == 7 && !memcmp(s, "balance", 7))
            *(uint8_t *)p = API_FUNDING_BALANCE;
        else if (n == 6 && !memcmp(s, "credit", 6))
            *(uint8_t *)p = API_FUNDING_CREDIT;
        else
            return fail(err, f->name, "funding must be \"balance\" or \"credit\"");
        return true;
    }
    return fail(err, f->name, "unknown field kind");
}

static size_t skip_ws(const char *s, size_t i, size_t end) {
    while (i < end && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) i++;
    return i;
}

/* jsmn lets some malformed objects through (a trailing comma, a doubled comma). With only
 * string keys and string values allowed, the bytes between tokens must be exactly: `{`, then
 * per member `"key" : "value"` separated by `,`, then `}`. (Members that are not strings are
 * refused before this matters: only the object's direct tokens are looked at.) */
static bool separators_ok(const char *body, const jsmntok_t *tok, int n) {
    size_t end = (size_t)tok[0].end - 1; /* the closing brace */
    size_t at = (size_t)tok[0].start + 1;
    for (int i = 1; i < n; i++) {
        const jsmntok_t *t = &tok[i];
        if (t->type != JSMN_STRING) return true; /* refused later, by its field */
        at = skip_ws(body, at, end);
        if (i > 1) {
            if (at >= end || body[at] != ((i & 1) ? ',' : ':')) return false;
            at = skip_ws(body, at + 1, end);
        }
        if (at != (size_t)t->start - 1) return false; /* the opening quote */
        at = (size_t)t->end + 1;
    }
    return skip_ws(body, at, end) == end;
}

static bool decode(const char *body, size_t len, const field_t *fields, uint32_t nfields, void *dst,
                   size_t size, api_error_t *err) {
    memset(dst, 0, size);
    memset(err, 0, sizeof *err);
    jsmn_parser parser;
    jsmntok_t tok[API_TOKENS_MAX];
    jsmn_init(&parser);
    int n = jsmn_parse(&parser, body, len, tok, API_TOKENS_MAX);
    if (n == JSMN_ERROR_NOMEM) return fail(err, "", "the body has too many JSON values");
    if (n < 0) return fail(err, "", "the body is not valid JSON");
    if (n == 0 || tok[0].type != JSMN_OBJECT) return fail(err, "", "the body must be an object");
    if (tok[0].end != (int)len) { /* jsmn stops after the first value: nothing may follow */
        for (size_t i = (size_t)tok[0].end; i < len; i++)
            if (body[i] != ' ' && body[i] != '\t' && body[i] != '\r' && body[i] != '\n')
                return fail(err, "", "the body has bytes after its JSON object");
    }
    if (!separators_ok(body, tok, n)) return fail(err, "", "the body is not valid JSON");
    uint32_t seen = 0;
    for (int i = 1; i < n; i += 2) {
        if (i + 1 >= n) /* jsmn also passes a key without its value */
            return fail(err, "", "the body is not valid JSON");
        const jsmntok_t *k = &tok[i], *v = &tok[i + 1];
        const char *ks = body + k->start;
        size_t kn = (size_t)(k->end - k->start);
        int f = -1;
        for (uint32_t j = 0; j < nfields && f < 0; j++)
            if (strlen(fields[j].name) == kn && !memcmp(fields[j].name, ks, kn)) f = (int)j;
        if (f < 0 || !plain_text(ks, kn)) {
            char name[32];
            snprintf(name, sizeof name, "%.*s", kn < 24 ? (int)kn : 24, ks);
            return fail(err, plain_text(ks, kn) ? name : "", "this endpoint takes no field %s",
                        plain_text(ks, kn) ? name : "with that name");
        }
        if (seen >> f & 1) return fail(err, fields[f].name, "%s is given twice", fields[f].name);
        seen |= 1u << f;
        if (v->type != JSMN_STRING)
            return fail(err, fields[f].name, "%s must be a JSON string%s", fields[f].name,
                        fields[f].kind == K_AMOUNT ? " (money is never a JSON number)" : "");
        if (!set_field(&fields[f], body + v->start, (size_t)(v->end - v->start), dst, err))
            return false;
    }
    for (uint32_t j = 0; j < nfields; j++)
        if (fields[j].required && !(seen >> j & 1))
            return fail(err, fields[j].name, "%s is required", fields[j].name);
    return true;
}

#define DECODE(fields, out)                                                                        \
    decode(body, len, fields, (uint32_t)(sizeof fields / sizeof fields[0]), out, sizeof *out, err)

bool api_decode_merchant(const char *body, size_t len, api_merchant_req_t *out, api_error_t *err) {
    return DECODE(merchant_fields, out);
}

bool api_decode_user(const char *body, size_t len, api_user_req_t *out, api_error_t *err) {
    return DECODE(user_fields, out);
}

bool api_decode_topup(const char *body, size_t len, api_topup_req_t *out, api_error_t *err) {
    return DECODE(topup_fields, out);
}

bool api_decode_payment(const char *body, size_t len, api_payment_req_t *out, api_error_t *err) {
    if (!DECODE(payment_fields, out)) return false;
    if (!out->funding) out->funding = API_FUNDING_BALANCE;
    return true;
}

bool api_decode_refund(const char *body, size_t len, api_refund_req_t *out, api_error_t *err) {
    return DECODE(refund_fields, out);
}

bool api_decode_transfer(const char *body, size_t len, api_transfer_req_t *out, api_error_t *err) {
    if (!DECODE(transfer_fields, out)) return false;
    if (out->from_uid == out->to_uid)
        return fail(err, "to_uid", "to_uid must be another user than from_uid");
    return true;
}

/* JSON Lines requests and replies of the ledger. Tokenizing is jsmn's; this file maps tokens
 * to the 128-byte structs through one field table per kind, so parsing and printing cannot
 * disagree about names or order. Integers are parsed exactly (u128 from a JSON number or a
 * decimal string); nothing passes through floating point. */
#include "ledger/ledger_jsonl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSMN_STATIC
#define JSMN_STRICT
#include <jsmn.h>

#include "base/assert.h"
#include "base/constants.h"

/* Enough tokens for a full batch of events with every field given (2 tokens a field, up to
 * 13 fields, plus flag arrays of up to 9 names), and the request around it. */
#define JSONL_TOKENS_MAX (CP_BATCH_EVENTS_MAX * 40u + 64u)

struct jsonl_parser {
    jsmntok_t *tok;
    ledger_account_t *accounts;
    ledger_transfer_t *transfers;
    u128 *ids;
    /* The line being parsed and the message of the first error. */
    const char *js;
    char *err;
    size_t err_size;
};

/* ---- Field tables ---- */

/* FT_FLAGS is a u16 of object flags, FT_FLAGS32 a u32 of filter flags; both take names or a
 * raw number. */
typedef enum ftype { FT_U128, FT_U64, FT_U32, FT_U16, FT_FLAGS, FT_FLAGS32 } ftype_t;

typedef struct field {
    const char *name;
    ftype_t type;
    uint16_t offset;
} field_t;

typedef struct schema {
    const char *what; /* for messages */
    const field_t *fields;
    uint32_t count;
    const char *const *flag_names;
    uint32_t flag_count;
} schema_t;

#define F(st, name, type)                                                                          \
    { #name, type, (uint16_t)offsetof(st, name) }

static const field_t account_fields[] = {
    F(ledger_account_t, id, FT_U128),
    F(ledger_account_t, debits_pending, FT_U128),
    F(ledger_account_t, debits_posted, FT_U128),
    F(ledger_account_t, credits_pending, FT_U128),
    F(ledger_account_t, credits_posted, FT_U128),
    F(ledger_account_t, user_data_128, FT_U128),
    F(ledger_account_t, user_data_64, FT_U64),
    F(ledger_account_t, user_data_32, FT_U32),
    F(ledger_account_t, reserved, FT_U32),
    F(ledger_account_t, ledger, FT_U32),
    F(ledger_account_t, code, FT_U16),
    F(ledger_account_t, flags, FT_FLAGS),
    F(ledger_account_t, timestamp, FT_U64),
};

static const field_t transfer_fields[] = {
    F(ledger_transfer_t, id, FT_U128),
    F(ledger_transfer_t, debit_account_id, FT_U128),
    F(ledger_transfer_t, credit_account_id, FT_U128),
    F(ledger_transfer_t, amount, FT_U128),
    F(ledger_transfer_t, pending_id, FT_U128),
    F(ledger_transfer_t, user_data_128, FT_U128),
    F(ledger_transfer_t, user_data_64, FT_U64),
    F(ledger_transfer_t, user_data_32, FT_U32),
    F(ledger_transfer_t, timeout, FT_U32),
    F(ledger_transfer_t, ledger, FT_U32),
    F(ledger_transfer_t, code, FT_U16),
    F(ledger_transfer_t, flags, FT_FLAGS),
    F(ledger_transfer_t, timestamp, FT_U64),
};

static const field_t balance_fields[] = {
    F(ledger_balance_t, debits_pending, FT_U128),  F(ledger_balance_t, debits_posted, FT_U128),
    F(ledger_balance_t, credits_pending, FT_U128), F(ledger_balance_t, credits_posted, FT_U128),
    F(ledger_balance_t, timestamp, FT_U64),
};

static const field_t account_filter_fields[] = {
    F(ledger_account_filter_t, account_id, FT_U128),
    F(ledger_account_filter_t, user_data_128, FT_U128),
    F(ledger_account_filter_t, user_data_64, FT_U64),
    F(ledger_account_filter_t, user_data_32, FT_U32),
    F(ledger_account_filter_t, code, FT_U16),
    F(ledger_account_filter_t, timestamp_min, FT_U64),
    F(ledger_account_filter_t, timestamp_max, FT_U64),
    F(ledger_account_filter_t, limit, FT_U32),
    F(ledger_account_filter_t, flags, FT_FLAGS32),
};

static const field_t query_filter_fields[] = {
    F(ledger_query_filter_t, user_data_128, FT_U128),
    F(ledger_query_filter_t, user_data_64, FT_U64),
    F(ledger_query_filter_t, user_data_32, FT_U32),
    F(ledger_query_filter_t, ledger, FT_U32),
    F(ledger_query_filter_t, code, FT_U16),
    F(ledger_query_filter_t, timestamp_min, FT_U64),
    F(ledger_query_filter_t, timestamp_max, FT_U64),
    F(ledger_query_filter_t, limit, FT_U32),
    F(ledger_query_filter_t, flags, FT_FLAGS32),
};

static const char *const account_flag_names[] = {"linked",
                                                 "debits_must_not_exceed_credits",
                                                 "credits_must_not_exceed_debits",
                                                 "history",
                                                 "imported",
                                                 "closed"};
static const char *const transfer_flag_names[] = {
    "linked",          "pending",          "post_pending_transfer", "void_pending_transfer",
    "balancing_debit", "balancing_credit", "closing_debit",         "closing_credit",
    "imported"};
static const char *const account_filter_flag_names[] = {"debits", "credits", "reversed"};
static const char *const query_filter_flag_names[] = {"debits", "credits", "reversed"};

#define COUNT(a) (uint32_t)(sizeof(a) / sizeof((a)[0]))
#define SCHEMA(what, f, names)                                                                     \
    { what, f, COUNT(f), names, COUNT(names) }
static const schema_t account_schema = SCHEMA("account", account_fields, account_flag_names);
static const schema_t transfer_schema = SCHEMA("transfer", transfer_fields, transfer_flag_names);
static const schema_t account_filter_schema =
    SCHEMA("filter", account_filter_fields, account_filter_flag_names);
/* Query filters take only `reversed`; the other names are rejected below as reserved. */
static const schema_t query_filter_schema =
    SCHEMA("filter", query_filter_fields, query_filter_flag_names);

/* ---- Parser life cycle ---- */

jsonl_parser_t *jsonl_parser_create(void) {
    jsonl_parser_t *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->tok = calloc(JSONL_TOKENS_MAX, sizeof p->tok[0]);
    p->accounts = calloc(CP_BATCH_EVENTS_MAX, sizeof p->accounts[0]);
    p->transfers = calloc(CP_BATCH_EVENTS_MAX, sizeof p->transfers[0]);
    p->ids = calloc(CP_BATCH_EVENTS_MAX, sizeof p->ids[0]);
    if (!p->tok || !p->accounts || !p->transfers || !p->ids) {
        jsonl_parser_destroy(p);
        return NULL;
    }
    return p;
}

void jsonl_parser_destroy(jsonl_parser_t *p) {
    if (!p) return;
    free(p->tok);
    free(p->accounts);
    free(p->transfers);
    free(p->ids);
    free(p);
}

/* ---- Token helpers. Every helper returns the index of the token after what it consumed,
 * or -1 after writing the error message. ---- */

__attribute__((format(printf, 2, 3))) static int fail(jsonl_parser_t *p, const char *fmt, ...) {
    if (p->err[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err, p->err_size, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int tok_len(const jsmntok_t *t) {
    return t->end - t->start;
}

static bool tok_is(const jsonl_parser_t *p, const jsmntok_t *t, const char *s) {
    size_t n = strlen(s);
    return t->type == JSMN_STRING && (size_t)tok_len(t) == n && memcmp(p->js + t->start, s, n) == 0;
}

/* Index just past the subtree rooted at token i. */
static int tok_skip(const jsonl_parser_t *p, int i) {
    int pending = 1;
    while (pending > 0) {
        const jsmntok_t *t = &p->tok[i++];
        pending--;
        if (t->type == JSMN_OBJECT)
            pending += 2 * t->size;
        else if (t->type == JSMN_ARRAY)
            pending += t->size;
    }
    return i;
}

/* A key for messages: printable ASCII only, so it can be quoted back safely. */
static const char *key_text(const jsonl_parser_t *p, const jsmntok_t *t, char *buf, size_t n) {
    size_t k = 0;
    for (int i = t->start; i < t->end && k + 1 < n; i++) {
        unsigned char c = (unsigned char)p->js[i];
        buf[k++] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '?';
    }
    buf[k] = '\0';
    return buf;
}

/* An unsigned integer from a JSON number or a decimal string, at most max. */
static int parse_uint(jsonl_parser_t *p, int i, const char *name, u128 max, u128 *out) {
    const jsmntok_t *t = &p->tok[i];
    if (t->type != JSMN_PRIMITIVE && t->type != JSMN_STRING)
        return fail(p, "%s must be an integer", name);
    if (!u128_parse(p->js + t->start, (size_t)tok_len(t), out))
        return fail(p, "%s must be a non-negative integer below 2^128", name);
    if (*out > max) return fail(p, "%s is out of range", name);
    return i + 1;
}

static int parse_flags(jsonl_parser_t *p, int i, const schema_t *s, uint32_t max, uint32_t *out) {
    const jsmntok_t *t = &p->tok[i];
    if (t->type != JSMN_ARRAY) {
        u128 v;
        if ((i = parse_uint(p, i, "flags", max, &v)) < 0) return -1;
        *out = (uint32_t)v;
        return i;
    }
    uint32_t flags = 0;
    int n = t->size;
    i++;
    for (int k = 0; k < n; k++, i++) {
        uint32_t f = 0;
        while (f < s->flag_count && !tok_is(p, &p->tok[i], s->flag_names[f])) f++;
        if (f < s->flag_count) {
            flags |= 1u << f;
            continue;
        }
        /* A bit without a name (reserved) is written as its value, as replies print it. */
        const jsmntok_t *el = &p->tok[i];
        u128 v;
        char buf[64];
        if ((el->type != JSMN_PRIMITIVE && el->type != JSMN_STRING) ||
            !u128_parse(p->js + el->start, (size_t)tok_len(el), &v) || v > max)
            return fail(p, "unknown %s flag \"%s\"", s->what, key_text(p, el, buf, sizeof buf));
        flags |= (uint32_t)v;
    }
    *out = flags;
    return i;
}

static int parse_field(jsonl_parser_t *p, int i, const schema_t *s, const field_t *f, void *dst) {
    unsigned char *d = (unsigned char *)dst + f->offset;
    static const u128 max[] = {
        [FT_U128] = U128_MAX,  [FT_U64] = UINT64_MAX,   [FT_U32] = UINT32_MAX,
        [FT_U16] = UINT16_MAX, [FT_FLAGS] = UINT16_MAX, [FT_FLAGS32] = UINT32_MAX};
    if (f->type == FT_FLAGS || f->type == FT_FLAGS32) {
        uint32_t v = 0;
        if ((i = parse_flags(p, i, s, (uint32_t)max[f->type], &v)) < 0) return -1;
        uint16_t v16 = (uint16_t)v;
        if (f->type == FT_FLAGS)
            memcpy(d, &v16, sizeof v16);
        else
            memcpy(d, &v, sizeof v);
        return i;
    }
    u128 v = 0;
    if ((i = parse_uint(p, i, f->name, max[f->type], &v)) < 0) return -1;
    uint64_t v64 = (uint64_t)v;
    uint32_t v32 = (uint32_t)v;
    uint16_t v16 = (uint16_t)v;
    switch (f->type) {
    case FT_U128: memcpy(d, &v, sizeof v); break;
    case FT_U64: memcpy(d, &v64, sizeof v64); break;
    case FT_U32: memcpy(d, &v32, sizeof v32); break;
    case FT_U16: memcpy(d, &v16, sizeof v16); break;
    case FT_FLAGS:
    case FT_FLAGS32: break;
    }
    return i;
}

/* An object of the schema's fields into dst (zeroed first): unknown and repeated fields
 * are errors. */
static int parse_object(jsonl_parser_t *p, int i, const schema_t *s, void *dst, size_t size) {
    const jsmntok_t *t = &p->tok[i];
    if (t->type != JSMN_OBJECT) return fail(p, "each %s must be an object", s->what);
    memset(dst, 0, size);
    uint32_t seen = 0;
    int n = t->size;
    i++;
    for (int k = 0; k < n; k++) {
        uint32_t f = 0;
        while (f < s->count && !tok_is(p, &p->tok[i], s->fields[f].name)) f++;
        char buf[64];
        if (f == s->count)
            return fail(p, "unknown %s field \"%s\"", s->what,
                        key_text(p, &p->tok[i], buf, sizeof buf));
        if (seen & (1u << f))
            return fail(p, "repeated %s field \"%s\"", s->what, s->fields[f].name);
        seen |= 1u << f;
        if ((i = parse_field(p, i + 1, s, &s->fields[f], dst)) < 0) return -1;
    }
    return i;
}

/* ---- Requests ---- */

static const char *const op_names[] = {
    [JSONL_CREATE_ACCOUNTS] = "create_accounts",
    [JSONL_CREATE_TRANSFERS] = "create_transfers",
    [JSONL_LOOKUP_ACCOUNTS] = "lookup_accounts",
    [JSONL_LOOKUP_TRANSFERS] = "lookup_transfers",
    [JSONL_GET_ACCOUNT_TRANSFERS] = "get_account_transfers",
    [JSONL_GET_ACCOUNT_BALANCES] = "get_account_balances",
    [JSONL_QUERY_ACCOUNTS] = "query_accounts",
    [JSONL_QUERY_TRANSFERS] = "query_transfers",
    [JSONL_TICK] = "tick",
    [JSONL_TEST_SET_BALANCES] = "test_set_balances",
    [JSONL_TEST_SET_CLOCK] = "test_set_clock",
};

static int parse_events(jsonl_parser_t *p, int i, jsonl_request_t *r) {
    const jsmntok_t *t = &p->tok[i];
    if (t->type != JSMN_ARRAY) return fail(p, "events must be an array");
    if ((uint32_t)t->size > CP_BATCH_EVENTS_MAX)
        return fail(p, "too many events: %d (at most %u a request)", t->size, CP_BATCH_EVENTS_MAX);
    r->count = (uint32_t)t->size;
    i++;
    for (uint32_t k = 0; k < r->count && i >= 0; k++) {
        if (r->op == JSONL_CREATE_ACCOUNTS)
            i = parse_object(p, i, &account_schema, &p->accounts[k], sizeof p->accounts[k]);
        else
            i = parse_object(p, i, &transfer_schema, &p->transfers[k], sizeof p->transfers[k]);
    }
    return i;
}

static int parse_ids(jsonl_parser_t *p, int i, jsonl_request_t *r) {
    const jsmntok_t *t = &p->tok[i];
    if (t->type != JSMN_ARRAY) return fail(p, "ids must be an array");
    if ((uint32_t)t->size > CP_BATCH_EVENTS_MAX)
        return fail(p, "too many ids: %d (at most %u a request)", t->size, CP_BATCH_EVENTS_MAX);
    r->count = (uint32_t)t->size;
    i++;
    for (uint32_t k = 0; k < r->count && i >= 0; k++)
        i = parse_uint(p, i, "id", U128_MAX, &p->ids[k]);
    return i;
}

static int parse_u64_key(jsonl_parser_t *p, int i, const char *name, uint64_t *out) {
    u128 v;
    if ((i = parse_uint(p, i, name, UINT64_MAX, &v)) >= 0) *out = (uint64_t)v;
    return i;
}

/* One member of the request object (other than "op"); `key` is at token i. */
static int parse_member(jsonl_parser_t *p, int i, jsonl_request_t *r, uint32_t *seen) {
    static const char *const balance_names[] = {"debits_pending", "debits_posted",
                                                "credits_pending", "credits_posted"};
    const jsmntok_t *key = &p->tok[i];
    jsonl_op_t op = r->op;
    char buf[64];
    key_text(p, key, buf, sizeof buf);
    uint32_t bit = 0;
    int next = -2;
    if (tok_is(p, key, "events") && (op == JSONL_CREATE_ACCOUNTS || op == JSONL_CREATE_TRANSFERS)) {
        bit = 1u << 0;
        next = parse_events(p, i + 1, r);
    } else if (tok_is(p, key, "ids") &&
               (op == JSONL_LOOKUP_ACCOUNTS || op == JSONL_LOOKUP_TRANSFERS)) {
        bit = 1u << 0;
        next = parse_ids(p, i + 1, r);
    } else if (tok_is(p, key, "filter") &&
               (op == JSONL_GET_ACCOUNT_TRANSFERS || op == JSONL_GET_ACCOUNT_BALANCES)) {
        bit = 1u << 0;
        next = parse_object(p, i + 1, &account_filter_schema, &r->account_filter,
                            sizeof r->account_filter);
    } else if (tok_is(p, key, "filter") &&
               (op == JSONL_QUERY_ACCOUNTS || op == JSONL_QUERY_TRANSFERS)) {
        bit = 1u << 0;
        next =
            parse_object(p, i + 1, &query_filter_schema, &r->query_filter, sizeof r->query_filter);
    } else if (op == JSONL_TICK && (tok_is(p, key, "nanoseconds") || tok_is(p, key, "seconds"))) {
        bit = 1u << 0;
        uint64_t v = 0;
        next = parse_u64_key(p, i + 1, buf, &v);
        if (next >= 0 && tok_is(p, key, "seconds")) {
            if (v > UINT64_MAX / 1000000000ull) return fail(p, "seconds is out of range");
            v *= 1000000000ull;
        }
        r->nanoseconds = v;
    } else if (op == JSONL_TEST_SET_CLOCK && tok_is(p, key, "timestamp")) {
        bit = 1u << 0;
        next = parse_u64_key(p, i + 1, "timestamp", &r->nanoseconds);
    } else if (op == JSONL_TEST_SET_BALANCES && tok_is(p, key, "account_id")) {
        bit = 1u << 0;
        next = parse_uint(p, i + 1, "account_id", U128_MAX, &r->account_id);
    } else if (op == JSONL_TEST_SET_BALANCES) {
        for (uint32_t b = 0; b < 4 && next == -2; b++) {
            if (!tok_is(p, key, balance_names[b])) continue;
            bit = 1u << (b + 1);
            next = parse_uint(p, i + 1, balance_names[b], U128_MAX, &r->balances[b]);
        }
    }
    if (next == -2) return fail(p, "unknown field \"%s\" for op %s", buf, op_names[op]);
    if (*seen & bit) return fail(p, "repeated field \"%s\"", buf);
    *seen |= bit;
    return next;
}

/* Finds "op" among the members of the object at token 0. */
static int find_op(jsonl_parser_t *p, jsonl_op_t *op) {
    int i = 1, found = 0;
    for (int k = 0; k < p->tok[0].size; k++) {
        if (tok_is(p, &p->tok[i], "op")) {
            const jsmntok_t *v = &p->tok[i + 1];
            if (found++) return fail(p, "repeated field \"op\"");
            uint32_t o = 0;
            while (o < COUNT(op_names) && !tok_is(p, v, op_names[o])) o++;
            char buf[64];
            if (o == COUNT(op_names))
                return fail(p, "unknown op \"%s\"", key_text(p, v, buf, sizeof buf));
            *op = (jsonl_op_t)o;
        }
        i = tok_skip(p, i + 1);
    }
    if (!found) return fail(p, "missing \"op\"");
    return 0;
}

int jsonl_parse(jsonl_parser_t *p, const char *line, size_t len, jsonl_request_t *r, char *err,
                size_t err_size) {
    cp_assert(err_size > 0);
    p->js = line;
    p->err = err;
    p->err_size = err_size;
    err[0] = '\0';
    if (len > (size_t)INT32_MAX) return fail(p, "line too long");
    while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r'))
        len--;
    if (len == 0) return fail(p, "empty line");

    jsmn_parser jp;
    jsmn_init(&jp);
    int n = jsmn_parse(&jp, line, len, p->tok, JSONL_TOKENS_MAX);
    if (n == JSMN_ERROR_NOMEM) return fail(p, "request too large");
    if (n < 0) return fail(p, "malformed JSON");
    if (n == 0 || p->tok[0].type != JSMN_OBJECT) return fail(p, "a request must be a JSON object");
    if (tok_skip(p, 0) != n) return fail(p, "trailing data after the request object");
    /* jsmn does not check what follows the object on the line. */
    for (size_t k = (size_t)p->tok[0].end; k < len; k++)
        if (line[k] != ' ' && line[k] != '\t')
            return fail(p, "trailing data after the request object");

    memset(r, 0, sizeof *r);
    r->accounts = p->accounts;
    r->transfers = p->transfers;
    r->ids = p->ids;
    if (find_op(p, &r->op) < 0) return -1;

    uint32_t seen = 0;
    int i = 1;
    for (int k = 0; k < p->tok[0].size; k++) {
        if (tok_is(p, &p->tok[i], "op")) {
            i = tok_skip(p, i + 1);
            continue;
        }
        if (p->tok[i].type != JSMN_STRING) return fail(p, "object keys must be strings");
        if ((i = parse_member(p, i, r, &seen)) < 0) return -1;
    }
    if (!(seen & 1u)) {
        static const char *const needed[] = {[JSONL_CREATE_ACCOUNTS] = "events",
                                             [JSONL_CREATE_TRANSFERS] = "events",
                                             [JSONL_LOOKUP_ACCOUNTS] = "ids",
                                             [JSONL_LOOKUP_TRANSFERS] = "ids",
                                             [JSONL_GET_ACCOUNT_TRANSFERS] = "filter",
                                             [JSONL_GET_ACCOUNT_BALANCES] = "filter",
                                             [JSONL_QUERY_ACCOUNTS] = "filter",
                                             [JSONL_QUERY_TRANSFERS] = "filter",
                                             [JSONL_TICK] = "nanoseconds\" or \"seconds",
                                             [JSONL_TEST_SET_BALANCES] = "account_id",
                                             [JSONL_TEST_SET_CLOCK] = "timestamp"};
        return fail(p, "op %s needs \"%s\"", op_names[r->op], needed[r->op]);
    }
    if ((r->op == JSONL_QUERY_ACCOUNTS || r->op == JSONL_QUERY_TRANSFERS) &&
        (r->query_filter.flags & (LEDGER_FILTER_DEBITS | LEDGER_FILTER_CREDITS)))
        return fail(p, "query filters take only the flag \"reversed\"");
    return 0;
}

/* ---- Replies ---- */

void jsonl_out_free(jsonl_out_t *o) {
    free(o->buf);
    *o = (jsonl_out_t){0};
}

static void out_reserve(jsonl_out_t *o, size_t n) {
    if (o->len + n + 1 <= o->cap) return;
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + n + 1) cap *= 2;
    char *b = realloc(o->buf, cap);
    cp_assert(b != NULL); /* the driver cannot answer without memory for its reply */
    o->buf = b;
    o->cap = cap;
}

static void out_str(jsonl_out_t *o, const char *s) {
    size_t n = strlen(s);
    out_reserve(o, n);
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void out_u128(jsonl_out_t *o, u128 v, bool quoted) {
    char buf[U128_DEC_MAX + 3];
    size_t n = 0;
    if (quoted) buf[n++] = '"';
    n += u128_format(v, buf + n);
    if (quoted) buf[n++] = '"';
    buf[n] = '\0';
    out_str(o, buf);
}

static void out_flags(jsonl_out_t *o, uint32_t flags, const char *const *names, uint32_t count) {
    out_str(o, "[");
    bool first = true;
    for (uint32_t f = 0; f < 32; f++) {
        if (!(flags & (1u << f))) continue;
        if (!first) out_str(o, ",");
        first = false;
        if (f < count) {
            out_str(o, "\"");
            out_str(o, names[f]);
            out_str(o, "\"");
        } else {
            out_u128(o, 1u << f, false); /* a reserved bit has no name: its value stands */
        }
    }
    out_str(o, "]");
}

static void out_object(jsonl_out_t *o, const schema_t *s, const void *src) {
    const unsigned char *b = src;
    out_str(o, "{");
    for (uint32_t k = 0; k < s->count; k++) {
        const field_t *f = &s->fields[k];
        if (k) out_str(o, ",");
        out_str(o, "\"");
        out_str(o, f->name);
        out_str(o, "\":");
        u128 v128;
        uint64_t v64;
        uint32_t v32;
        uint16_t v16;
        switch (f->type) {
        case FT_U128:
            memcpy(&v128, b + f->offset, 16);
            out_u128(o, v128, true);
            break;
        case FT_U64:
            memcpy(&v64, b + f->offset, 8);
            out_u128(o, v64, true);
            break;
        case FT_U32:
            memcpy(&v32, b + f->offset, 4);
            out_u128(o, v32, false);
            break;
        case FT_U16:
            memcpy(&v16, b + f->offset, 2);
            out_u128(o, v16, false);
            break;
        case FT_FLAGS:
            memcpy(&v16, b + f->offset, 2);
            out_flags(o, v16, s->flag_names, s->flag_count);
            break;
        case FT_FLAGS32:
            memcpy(&v32, b + f->offset, 4);
            out_flags(o, v32, s->flag_names, s->flag_count);
            break;
        }
    }
    out_str(o, "}");
}

static void out_list(jsonl_out_t *o, const char *key, const schema_t *s, const void *items,
                     size_t size, uint32_t count) {
    out_str(o, "{\"");
    out_str(o, key);
    out_str(o, "\":[");
    for (uint32_t i = 0; i < count; i++) {
        if (i) out_str(o, ",");
        out_object(o, s, (const unsigned char *)items + (size_t)i * size);
    }
    out_str(o, "]}");
}

void jsonl_reply_results(jsonl_out_t *o, const ledger_result_t *results, uint32_t count,
                         bool transfers) {
    out_str(o, "{\"results\":[");
    for (uint32_t i = 0; i < count; i++) {
        const char *name = transfers ? ledger_transfer_result_str(results[i].result)
                                     : ledger_account_result_str(results[i].result);
        cp_assert(name != NULL);
        out_str(o, i ? ",{\"result\":\"" : "{\"result\":\"");
        out_str(o, name);
        out_str(o, "\",\"timestamp\":");
        out_u128(o, results[i].timestamp, true);
        out_str(o, "}");
    }
    out_str(o, "]}");
}

void jsonl_reply_accounts(jsonl_out_t *o, const ledger_account_t *a, uint32_t count) {
    out_list(o, "accounts", &account_schema, a, sizeof a[0], count);
}

void jsonl_reply_transfers(jsonl_out_t *o, const ledger_transfer_t *t, uint32_t count) {
    out_list(o, "transfers", &transfer_schema, t, sizeof t[0], count);
}

void jsonl_reply_balances(jsonl_out_t *o, const ledger_balance_t *b, uint32_t count) {
    static const schema_t balance_schema = {"balance", balance_fields, COUNT(balance_fields), NULL,
                                            0};
    out_list(o, "balances", &balance_schema, b, sizeof b[0], count);
}

void jsonl_reply_ok(jsonl_out_t *o) {
    out_str(o, "{\"ok\":true}");
}

void jsonl_reply_error(jsonl_out_t *o, const char *message) {
    out_str(o, "{\"error\":\"");
    for (const char *c = message; *c; c++) {
        char buf[8];
        unsigned char u = (unsigned char)*c;
        if (u == '"' || u == '\\')
            snprintf(buf, sizeof buf, "\\%c", u);
        else if (u < 0x20)
            snprintf(buf, sizeof buf, "\\u%04x", u);
        else
            snprintf(buf, sizeof buf, "%c", u);
        out_str(o, buf);
    }
    out_str(o, "\"}");
}

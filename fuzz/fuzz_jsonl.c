/* libFuzzer target: the JSON Lines request parser. Any input must either be rejected with a
 * message or parse; a parsed request's events, printed as a reply and parsed back, must give
 * the same structs (the printer and the parser share one field table and must agree). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "ledger/ledger_jsonl.h"

static jsonl_parser_t *parser, *parser2;
static jsonl_out_t out, line;

static void append(jsonl_out_t *o, const char *s, size_t n) {
    if (o->len + n + 1 > o->cap) {
        o->cap = (o->len + n + 1) * 2;
        o->buf = realloc(o->buf, o->cap);
        cp_assert(o->buf != NULL);
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

/* Re-parses the events of a create request from their printed form. */
static void round_trip(const jsonl_request_t *r) {
    bool accounts = r->op == JSONL_CREATE_ACCOUNTS;
    out.len = 0;
    if (accounts)
        jsonl_reply_accounts(&out, r->accounts, r->count);
    else
        jsonl_reply_transfers(&out, r->transfers, r->count);
    /* {"accounts":[...]} -> {"op":"create_accounts","events":[...]} */
    const char *list = strchr(out.buf, '[');
    cp_assert(list != NULL);
    line.len = 0;
    const char *head = accounts ? "{\"op\":\"create_accounts\",\"events\":"
                                : "{\"op\":\"create_transfers\",\"events\":";
    append(&line, head, strlen(head));
    append(&line, list, strlen(list));
    jsonl_request_t r2;
    char err[256];
    int rc = jsonl_parse(parser2, line.buf, line.len, &r2, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "printed events do not parse back: %s\n%s\n", err, line.buf);
        abort();
    }
    cp_assert(r2.op == r->op && r2.count == r->count);
    size_t bytes = r->count * (accounts ? sizeof r->accounts[0] : sizeof r->transfers[0]);
    cp_assert(memcmp(accounts ? (void *)r2.accounts : (void *)r2.transfers,
                     accounts ? (void *)r->accounts : (void *)r->transfers, bytes) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!parser) {
        parser = jsonl_parser_create();
        parser2 = jsonl_parser_create();
        cp_assert(parser && parser2);
    }
    jsonl_request_t r;
    char err[256];
    err[0] = 'x';
    if (jsonl_parse(parser, (const char *)data, size, &r, err, sizeof err) != 0) {
        cp_assert(err[0] != '\0' && strlen(err) < sizeof err); /* a rejection always says why */
        out.len = 0;
        jsonl_reply_error(&out, err);
        return 0;
    }
    if (r.op == JSONL_CREATE_ACCOUNTS || r.op == JSONL_CREATE_TRANSFERS) round_trip(&r);
    return 0;
}

/* `cellpay client`: the JSON Lines requests of `cellpay ledger`, sent to a running cell through
 * the client library. One request at a time, so replies come out in input order, one line
 * per input line, and each request sees the effects of the lines before it. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "client/client.h"
#include "cmd/cmd.h"
#include "cmd/cmd_args.h"
#include "ledger/ledger.h"
#include "ledger/ledger_jsonl.h"

#define LINE_MAX_BYTES (64u << 20)
#define TIMEOUT_MS_DEFAULT 10000u
#define TIMEOUT_MS_MAX 86400000u /* a day */
#define ATTEMPT_MS_MAX 1000u     /* one attempt; a silent connection is retried after this */

static const char client_usage[] =
    "usage: cellpay client --addr HOST:PORT[,HOST:PORT...] [--timeout-ms N]\n"
    "\n"
    "Reads ledger requests as JSON Lines on stdin, the same requests as `cellpay ledger`\n"
    "(shared/docs/ledger.md), sends each to a running cell (`cellpay node`) and writes its\n"
    "reply as one JSON line on stdout: one request at a time, replies in input order.\n"
    "\n"
    "The cell's leader owns the clock, so timestamps are the cell's; test_set_balances and\n"
    "test_set_clock are refused unless the node runs with --test-ops. A request that loses\n"
    "its connection is sent again (writes are idempotent by their ids): a create retried that\n"
    "way may answer `exists` for events its first attempt created. A request still without\n"
    "an answer after --timeout-ms is answered {\"error\":\"...\"} and the next line is read.\n"
    "\n"
    "  --addr LIST       the client addresses of the cell's replicas (IPv4 or localhost),\n"
    "                    e.g. 127.0.0.1:7001,127.0.0.1:7002; the client finds the leader\n"
    "                    among them and fails over to the next one (required)\n"
    "  --timeout-ms N    give up on a request N ms after sending it (default 10000)\n";

typedef struct client_driver {
    client_t *client;
    jsonl_parser_t *parser;
    jsonl_out_t out;
    unsigned char *reply; /* PROTO_MESSAGE_MAX bytes, malloc-aligned for the ledger structs */
} client_driver_t;

static const uint8_t proto_ops[] = {
    [JSONL_CREATE_ACCOUNTS] = PROTO_OP_CREATE_ACCOUNTS,
    [JSONL_CREATE_TRANSFERS] = PROTO_OP_CREATE_TRANSFERS,
    [JSONL_LOOKUP_ACCOUNTS] = PROTO_OP_LOOKUP_ACCOUNTS,
    [JSONL_LOOKUP_TRANSFERS] = PROTO_OP_LOOKUP_TRANSFERS,
    [JSONL_GET_ACCOUNT_TRANSFERS] = PROTO_OP_GET_ACCOUNT_TRANSFERS,
    [JSONL_GET_ACCOUNT_BALANCES] = PROTO_OP_GET_ACCOUNT_BALANCES,
    [JSONL_QUERY_ACCOUNTS] = PROTO_OP_QUERY_ACCOUNTS,
    [JSONL_QUERY_TRANSFERS] = PROTO_OP_QUERY_TRANSFERS,
    [JSONL_TICK] = PROTO_OP_TICK,
    [JSONL_TEST_SET_BALANCES] = PROTO_OP_TEST_SET_BALANCES,
    [JSONL_TEST_SET_CLOCK] = PROTO_OP_TEST_SET_CLOCK,
};
CP_STATIC_ASSERT(sizeof proto_ops == JSONL_TEST_SET_CLOCK + 1, "every JSON Lines op is mapped");

/* The protocol body of a parsed request: *body points into r, or into scratch for the bodies
 * built here (tick and the test ops, 80 bytes at most). Returns its size. */
static uint32_t request_body(const jsonl_request_t *r, unsigned char scratch[80],
                             const void **body) {
    static const uint64_t zero = 0;
    switch (r->op) {
    case JSONL_CREATE_ACCOUNTS: *body = r->accounts; return r->count * 128u;
    case JSONL_CREATE_TRANSFERS: *body = r->transfers; return r->count * 128u;
    case JSONL_LOOKUP_ACCOUNTS:
    case JSONL_LOOKUP_TRANSFERS: *body = r->ids; return r->count * 16u;
    case JSONL_GET_ACCOUNT_TRANSFERS:
    case JSONL_GET_ACCOUNT_BALANCES: *body = &r->account_filter; return 128;
    case JSONL_QUERY_ACCOUNTS:
    case JSONL_QUERY_TRANSFERS: *body = &r->query_filter; return 64;
    case JSONL_TEST_SET_BALANCES:
        memcpy(scratch, &r->account_id, 16);
        memcpy(scratch + 16, r->balances, 64);
        *body = scratch;
        return 80;
    case JSONL_TICK:
    case JSONL_TEST_SET_CLOCK: break;
    }
    memcpy(scratch, &r->nanoseconds, 8); /* u64 nanoseconds / timestamp, then 8 zero bytes */
    memcpy(scratch + 8, &zero, 8);
    *body = scratch;
    return 16;
}

static void reply_ok(client_driver_t *d, uint8_t op, uint32_t size) {
    const void *b = d->reply;
    switch (op) {
    case PROTO_OP_CREATE_ACCOUNTS:
    case PROTO_OP_CREATE_TRANSFERS:
        jsonl_reply_results(&d->out, b, size / 16, op == PROTO_OP_CREATE_TRANSFERS);
        return;
    case PROTO_OP_LOOKUP_ACCOUNTS:
    case PROTO_OP_QUERY_ACCOUNTS: jsonl_reply_accounts(&d->out, b, size / 128); return;
    case PROTO_OP_LOOKUP_TRANSFERS:
    case PROTO_OP_GET_ACCOUNT_TRANSFERS:
    case PROTO_OP_QUERY_TRANSFERS: jsonl_reply_transfers(&d->out, b, size / 128); return;
    case PROTO_OP_GET_ACCOUNT_BALANCES: jsonl_reply_balances(&d->out, b, size / 128); return;
    default: jsonl_reply_ok(&d->out); return;
    }
}

/* A request without an answer: say why, with the last connection error when there is one. */
static void reply_client_error(client_driver_t *d, int32_t status) {
    client_stats_t st;
    client_stats(d->client, &st);
    char text[256];
    if (st.last_error[0])
        snprintf(text, sizeof text, "%s (last: %s)", client_status_str(status), st.last_error);
    else
        snprintf(text, sizeof text, "%s", client_status_str(status));
    jsonl_reply_error(&d->out, text);
}

static void execute(client_driver_t *d, const jsonl_request_t *r) {
    unsigned char scratch[80];
    const void *body;
    uint32_t reply_size = 0, size = request_body(r, scratch, &body);
    uint8_t op = proto_ops[r->op];
    if ((op == PROTO_OP_CREATE_ACCOUNTS || op == PROTO_OP_CREATE_TRANSFERS) && r->count == 0) {
        jsonl_reply_results(&d->out, NULL, 0, false); /* as `cellpay ledger`; nothing to send */
        return;
    }
    int32_t status =
        client_call(d->client, op, body, size, d->reply, PROTO_MESSAGE_MAX, &reply_size, NULL);
    bool test_op = op == PROTO_OP_TEST_SET_BALANCES || op == PROTO_OP_TEST_SET_CLOCK;
    if (status < 0)
        reply_client_error(d, status);
    else if (status == PROTO_STATUS_REFUSED && test_op)
        jsonl_reply_error(&d->out, "test ops are refused (run the node with --test-ops)");
    else if (status == PROTO_STATUS_NOT_FOUND)
        jsonl_reply_error(&d->out, "account not found"); /* as `cellpay ledger --test-ops` */
    else if (status != PROTO_STATUS_OK)
        jsonl_reply_error(&d->out, proto_status_str((uint32_t)status));
    else
        reply_ok(d, op, reply_size);
}

static void handle_line(client_driver_t *d, const char *line, size_t len) {
    d->out.len = 0;
    jsonl_request_t req;
    char err[256];
    if (len > LINE_MAX_BYTES)
        jsonl_reply_error(&d->out, "line too long (limit 64 MiB)");
    else if (jsonl_parse(d->parser, line, len, &req, err, sizeof err) != 0)
        jsonl_reply_error(&d->out, err);
    else
        execute(d, &req);
}

static int client_run(client_driver_t *d, FILE *in, FILE *out) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, in)) >= 0) {
        if (len > 0 && line[len - 1] == '\n') len--;
        handle_line(d, line, (size_t)len);
        fwrite(d->out.buf, 1, d->out.len, out);
        fputc('\n', out);
        if (fflush(out) != 0) {
            fprintf(stderr, "cellpay client: writing replies failed: %s\n", strerror(errno));
            rc = 1;
        }
    }
    free(line);
    return rc;
}

static int client_main(const char *addr, uint32_t timeout_ms) {
    client_options_t opt = {
        .sessions = 1,
        .requests_max = 1,
        .deadline_ms = timeout_ms,
        .attempt_timeout_ms = timeout_ms < ATTEMPT_MS_MAX ? timeout_ms : ATTEMPT_MS_MAX,
    };
    client_driver_t d = {0};
    int rc = client_open(&d.client, addr, &opt);
    if (rc != 0) {
        fprintf(stderr, "cellpay client: --addr \"%s\": %s\n", addr, client_status_str(rc));
        return rc == CLIENT_ERR_ADDRESS ? 2 : 1;
    }
    d.parser = jsonl_parser_create();
    d.reply = malloc(PROTO_MESSAGE_MAX);
    if (!d.parser || !d.reply) {
        fprintf(stderr, "cellpay client: out of memory\n");
        rc = 1;
    } else {
        rc = client_run(&d, stdin, stdout);
    }
    client_close(d.client);
    jsonl_out_free(&d.out);
    jsonl_parser_destroy(d.parser);
    free(d.reply);
    return rc;
}

int cmd_client(int argc, char **argv) {
    const char *addr = NULL;
    uint32_t timeout_ms = TIMEOUT_MS_DEFAULT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(client_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--addr")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "cellpay: --addr needs a value\n");
                return 2;
            }
            addr = argv[++i];
        } else if (!strcmp(a, "--timeout-ms")) {
            if (!args_u32(argc, argv, &i, 1, TIMEOUT_MS_MAX, &timeout_ms)) return 2;
        } else {
            fprintf(stderr, "cellpay client: unknown option \"%s\"\n\n%s", a, client_usage);
            return 2;
        }
    }
    if (!addr) {
        fprintf(stderr, "cellpay client: --addr is required\n\n%s", client_usage);
        return 2;
    }
    return client_main(addr, timeout_ms);
}

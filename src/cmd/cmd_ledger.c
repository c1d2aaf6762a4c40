/* `cellpay ledger`: the in-memory JSON Lines driver of the ledger (docs/ledger.md). One reply
 * line per request line, in order; a deterministic clock, so the same input gives the same
 * output byte for byte. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/constants.h"
#include "cmd/cmd.h"
#include "cmd/cmd_args.h"
#include "ledger/ledger.h"
#include "ledger/ledger_jsonl.h"

#define LINE_MAX_BYTES (64u << 20)

static const char ledger_usage[] =
    "usage: cellpay ledger [--test-ops] [--clock-start NS] [--accounts-max N] [--transfers-max N]\n"
    "\n"
    "Reads ledger requests as JSON Lines on stdin and writes one JSON reply line per request\n"
    "line on stdout (shared/docs/ledger.md has the requests). In memory only: nothing is kept\n"
    "after the process ends.\n"
    "\n"
    "  --test-ops          accept test_set_balances and test_set_clock\n"
    "  --clock-start NS    the clock's starting value in nanoseconds (default 0)\n"
    "  --accounts-max N    account table capacity (default 1048576)\n"
    "  --transfers-max N   transfer table capacity (default 4194304)\n";

typedef struct driver {
    ledger_t *ledger;
    jsonl_parser_t *parser;
    jsonl_out_t out;
    bool test_ops;
    uint64_t clock;
    ledger_result_t *results;
    ledger_account_t *accounts;
    ledger_transfer_t *transfers;
    ledger_balance_t *balances;
} driver_t;

/* Advances the clock by n; false (clock unchanged) when it would pass 2^63-1. */
static bool clock_advance(driver_t *d, uint64_t n) {
    if (n > CP_TIMESTAMP_MAX - d->clock) return false;
    d->clock += n;
    return true;
}

static void execute_create(driver_t *d, const jsonl_request_t *r) {
    if (!clock_advance(d, r->count)) {
        jsonl_reply_error(&d->out, "the clock would pass 2^63-1");
        return;
    }
    bool transfers = r->op == JSONL_CREATE_TRANSFERS;
    ledger_status_t st =
        transfers ? ledger_create_transfers(d->ledger, d->clock, r->transfers, r->count, d->results)
                  : ledger_create_accounts(d->ledger, d->clock, r->accounts, r->count, d->results);
    if (st != LEDGER_OK)
        jsonl_reply_error(&d->out, ledger_status_str(st));
    else
        jsonl_reply_results(&d->out, d->results, r->count, transfers);
}

static void execute(driver_t *d, const jsonl_request_t *r) {
    uint32_t n;
    switch (r->op) {
    case JSONL_CREATE_ACCOUNTS:
    case JSONL_CREATE_TRANSFERS: execute_create(d, r); return;
    case JSONL_LOOKUP_ACCOUNTS:
        n = ledger_lookup_accounts(d->ledger, r->ids, r->count, d->accounts);
        jsonl_reply_accounts(&d->out, d->accounts, n);
        return;
    case JSONL_LOOKUP_TRANSFERS:
        n = ledger_lookup_transfers(d->ledger, r->ids, r->count, d->transfers);
        jsonl_reply_transfers(&d->out, d->transfers, n);
        return;
    case JSONL_GET_ACCOUNT_TRANSFERS:
        n = ledger_get_account_transfers(d->ledger, &r->account_filter, d->transfers);
        jsonl_reply_transfers(&d->out, d->transfers, n);
        return;
    case JSONL_GET_ACCOUNT_BALANCES:
        n = ledger_get_account_balances(d->ledger, &r->account_filter, d->balances);
        jsonl_reply_balances(&d->out, d->balances, n);
        return;
    case JSONL_QUERY_ACCOUNTS:
        n = ledger_query_accounts(d->ledger, &r->query_filter, d->accounts);
        jsonl_reply_accounts(&d->out, d->accounts, n);
        return;
    case JSONL_QUERY_TRANSFERS:
        n = ledger_query_transfers(d->ledger, &r->query_filter, d->transfers);
        jsonl_reply_transfers(&d->out, d->transfers, n);
        return;
    case JSONL_TICK:
        if (!clock_advance(d, r->nanoseconds)) {
            jsonl_reply_error(&d->out, "the clock would pass 2^63-1");
            return;
        }
        ledger_expire(d->ledger, d->clock);
        jsonl_reply_ok(&d->out);
        return;
    case JSONL_TEST_SET_BALANCES:
    case JSONL_TEST_SET_CLOCK: break;
    }
    if (!d->test_ops) {
        jsonl_reply_error(&d->out, "test ops are refused (run with --test-ops)");
    } else if (r->op == JSONL_TEST_SET_CLOCK) {
        if (r->nanoseconds > CP_TIMESTAMP_MAX) {
            jsonl_reply_error(&d->out, "timestamp is out of range");
            return;
        }
        d->clock = r->nanoseconds;
        jsonl_reply_ok(&d->out);
    } else if (!ledger_test_set_balances(d->ledger, r->account_id, r->balances[0], r->balances[1],
                                         r->balances[2], r->balances[3])) {
        jsonl_reply_error(&d->out, "account not found");
    } else {
        jsonl_reply_ok(&d->out);
    }
}

static void handle_line(driver_t *d, const char *line, size_t len) {
    d->out.len = 0;
    jsonl_request_t req;
    char err[256];
    if (!clock_advance(d, 1))
        jsonl_reply_error(&d->out, "the clock would pass 2^63-1");
    else if (len > LINE_MAX_BYTES)
        jsonl_reply_error(&d->out, "line too long (limit 64 MiB)");
    else if (jsonl_parse(d->parser, line, len, &req, err, sizeof err) != 0)
        jsonl_reply_error(&d->out, err);
    else
        execute(d, &req);
}

int cmd_ledger_run(FILE *in, FILE *out, bool test_ops, unsigned long long clock_start) {
    ledger_config_t cfg = {.accounts_max = CP_LEDGER_ACCOUNTS_DEFAULT,
                           .transfers_max = CP_LEDGER_TRANSFERS_DEFAULT};
    return cmd_ledger_run_with(in, out, test_ops, clock_start, &cfg);
}

int cmd_ledger_run_with(FILE *in, FILE *out, bool test_ops, unsigned long long clock_start,
                        const ledger_config_t *cfg) {
    driver_t d = {.test_ops = test_ops, .clock = clock_start};
    d.ledger = ledger_create(cfg);
    d.parser = jsonl_parser_create();
    d.results = calloc(CP_BATCH_EVENTS_MAX, sizeof d.results[0]);
    d.accounts = calloc(CP_BATCH_EVENTS_MAX, sizeof d.accounts[0]);
    d.transfers = calloc(CP_BATCH_EVENTS_MAX, sizeof d.transfers[0]);
    d.balances = calloc(CP_BATCH_EVENTS_MAX, sizeof d.balances[0]);
    int rc = 0;
    if (!d.ledger || !d.parser || !d.results || !d.accounts || !d.transfers || !d.balances) {
        fprintf(stderr, "cellpay ledger: out of memory for the configured capacities\n");
        rc = 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while (rc == 0 && (len = getline(&line, &cap, in)) >= 0) {
        if (len > 0 && line[len - 1] == '\n') len--;
        handle_line(&d, line, (size_t)len);
        fwrite(d.out.buf, 1, d.out.len, out);
        fputc('\n', out);
        if (fflush(out) != 0) {
            fprintf(stderr, "cellpay ledger: writing replies failed: %s\n", strerror(errno));
            rc = 1;
        }
    }
    free(line);
    jsonl_out_free(&d.out);
    free(d.results);
    free(d.accounts);
    free(d.transfers);
    free(d.balances);
    jsonl_parser_destroy(d.parser);
    ledger_destroy(d.ledger);
    return rc;
}

int cmd_ledger(int argc, char **argv) {
    bool test_ops = false;
    unsigned long long clock_start = 0;
    ledger_config_t cfg = {.accounts_max = CP_LEDGER_ACCOUNTS_DEFAULT,
                           .transfers_max = CP_LEDGER_TRANSFERS_DEFAULT};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(ledger_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--test-ops")) {
            test_ops = true;
        } else if (!strcmp(a, "--clock-start")) {
            if (!args_u64(argc, argv, &i, CP_TIMESTAMP_MAX, &clock_start)) return 2;
        } else if (!strcmp(a, "--accounts-max")) {
            if (!args_u32(argc, argv, &i, 1, CP_LEDGER_TABLE_MAX, &cfg.accounts_max)) return 2;
        } else if (!strcmp(a, "--transfers-max")) {
            if (!args_u32(argc, argv, &i, 1, CP_LEDGER_TABLE_MAX, &cfg.transfers_max)) return 2;
        } else {
            fprintf(stderr, "cellpay ledger: unknown option \"%s\"\n\n%s", a, ledger_usage);
            return 2;
        }
    }
    return cmd_ledger_run_with(stdin, stdout, test_ops, clock_start, &cfg);
}

/* The JSON Lines form of ledger requests and replies (docs/ledger.md, "The JSON Lines
 * driver"): one request object per line in, one reply object per line out. Parsing and
 * formatting only; executing a request is the caller's (cellpay ledger executes against an
 * in-memory ledger, cellpay client against a cell). No I/O. */
#ifndef CP_LEDGER_JSONL_H
#define CP_LEDGER_JSONL_H

#include <stddef.h>
#include <stdint.h>

#include "ledger/ledger.h"

typedef enum jsonl_op {
    JSONL_CREATE_ACCOUNTS,
    JSONL_CREATE_TRANSFERS,
    JSONL_LOOKUP_ACCOUNTS,
    JSONL_LOOKUP_TRANSFERS,
    JSONL_GET_ACCOUNT_TRANSFERS,
    JSONL_GET_ACCOUNT_BALANCES,
    JSONL_QUERY_ACCOUNTS,
    JSONL_QUERY_TRANSFERS,
    JSONL_TICK,
    JSONL_TEST_SET_BALANCES,
    JSONL_TEST_SET_CLOCK,
} jsonl_op_t;

/* A parsed request. The arrays are owned by the parser and hold up to CP_BATCH_EVENTS_MAX
 * entries; they stay valid until the next jsonl_parse(). */
typedef struct jsonl_request {
    jsonl_op_t op;
    uint32_t count; /* events or ids */
    ledger_account_t *accounts;
    ledger_transfer_t *transfers;
    u128 *ids;
    ledger_account_filter_t account_filter;
    ledger_query_filter_t query_filter;
    uint64_t nanoseconds; /* tick: how far; test_set_clock: the new clock */
    u128 account_id;      /* test_set_balances */
    u128 balances[4];     /* debits_pending, debits_posted, credits_pending, credits_posted */
} jsonl_request_t;

typedef struct jsonl_parser jsonl_parser_t;

/* NULL when out of memory. The parser is reused for every line. */
jsonl_parser_t *jsonl_parser_create(void);
void jsonl_parser_destroy(jsonl_parser_t *p);

/* Parses one line (without its newline). Returns 0 and fills *req, or -1 and writes a
 * message of at most err_size bytes (NUL-terminated, plain ASCII) into err. */
int jsonl_parse(jsonl_parser_t *p, const char *line, size_t len, jsonl_request_t *req, char *err,
                size_t err_size);

/* Output buffer for replies; grows as needed (allocation only when it grows). */
typedef struct jsonl_out {
    char *buf;
    size_t len;
    size_t cap;
} jsonl_out_t;

void jsonl_out_free(jsonl_out_t *o);

/* Each writes one complete reply object (no newline) at the end of o. */
void jsonl_reply_results(jsonl_out_t *o, const ledger_result_t *results, uint32_t count,
                         bool transfers);
void jsonl_reply_accounts(jsonl_out_t *o, const ledger_account_t *accounts, uint32_t count);
void jsonl_reply_transfers(jsonl_out_t *o, const ledger_transfer_t *transfers, uint32_t count);
void jsonl_reply_balances(jsonl_out_t *o, const ledger_balance_t *balances, uint32_t count);
void jsonl_reply_ok(jsonl_out_t *o);
void jsonl_reply_error(jsonl_out_t *o, const char *message);

#endif

/* Limits of cellpay, in one place. Every table, queue and batch is bounded by one of these. */
#ifndef CP_CONSTANTS_H
#define CP_CONSTANTS_H

/* Events (accounts or transfers) in one batch: one log entry, one wire message. 8189
 * 128-byte events plus a 256-byte header fit a 1 MiB message. */
#define CP_BATCH_EVENTS_MAX 8189u

/* Rows one query may return; a larger limit is clamped to it. */
#define CP_QUERY_LIMIT_MAX 8189u

/* Default table capacities of an in-memory ledger (cellpay ledger, tests). A cell sizes its
 * tables from its configuration instead. */
#define CP_LEDGER_ACCOUNTS_DEFAULT (1u << 20)
#define CP_LEDGER_TRANSFERS_DEFAULT (1u << 22)

/* Hard upper bound of any ledger table: indexes are 32-bit. */
#define CP_LEDGER_TABLE_MAX ((1u << 31) - 1)

/* Timestamps live in [1, 2^63-1]: the top bit is reserved. */
#define CP_TIMESTAMP_MAX ((uint64_t)INT64_MAX)

/* HTTP (src/gateway/http.c). The API's contract caps a request body at 64 KiB (413 beyond);
 * the request line and headers get 16 KiB (431 beyond), as common servers do. */
#define CP_HTTP_BODY_MAX (64u * 1024u)
#define CP_HTTP_HEAD_MAX (16u * 1024u)
/* Headers kept per request; more is 431 as well (a client this chatty is not ours). */
#define CP_HTTP_HEADERS_MAX 64u
/* Open connections of one server by default; the listener refuses more (and logs it). */
#define CP_HTTP_CONNS_DEFAULT 1024u
/* A request must arrive whole (headers and body) within this, else 408 and close. */
#define CP_HTTP_REQUEST_TIMEOUT_MS_DEFAULT 10000u
/* A keep-alive connection with no request under way is closed after this. */
#define CP_HTTP_IDLE_TIMEOUT_MS_DEFAULT 60000u

#endif

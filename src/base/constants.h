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

#endif

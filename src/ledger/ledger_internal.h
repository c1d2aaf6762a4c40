/* Private to src/ledger/: the ledger's tables and the helpers its files share. */
#ifndef CP_LEDGER_INTERNAL_H
#define CP_LEDGER_INTERNAL_H

#include <string.h>

#include "base/assert.h"
#include "base/constants.h"
#include "ledger/ledger.h"
#include "ledger/ledger_index.h"

CP_STATIC_ASSERT(sizeof(ledger_account_t) == 128, "account is 128 bytes");
CP_STATIC_ASSERT(sizeof(ledger_transfer_t) == 128, "transfer is 128 bytes");
CP_STATIC_ASSERT(sizeof(ledger_balance_t) == 128, "balance row is 128 bytes");
CP_STATIC_ASSERT(sizeof(ledger_account_filter_t) == 128, "account filter is 128 bytes");
CP_STATIC_ASSERT(sizeof(ledger_query_filter_t) == 64, "query filter is 64 bytes");
CP_STATIC_ASSERT(offsetof(ledger_account_t, timestamp) == 120 &&
                     offsetof(ledger_account_t, flags) == 118 &&
                     offsetof(ledger_account_t, ledger) == 112 &&
                     offsetof(ledger_account_t, user_data_64) == 96,
                 "account layout");
CP_STATIC_ASSERT(offsetof(ledger_transfer_t, pending_id) == 64 &&
                     offsetof(ledger_transfer_t, timeout) == 108 &&
                     offsetof(ledger_transfer_t, flags) == 118 &&
                     offsetof(ledger_transfer_t, timestamp) == 120,
                 "transfer layout");
CP_STATIC_ASSERT(offsetof(ledger_account_filter_t, timestamp_min) == 48 &&
                     offsetof(ledger_account_filter_t, flags) == 68 &&
                     offsetof(ledger_query_filter_t, flags) == 56,
                 "filter layout");

/* Life of a pending transfer; LT_NONE for every other transfer. */
enum { LT_NONE = 0, LT_PENDING, LT_POSTED, LT_VOIDED, LT_EXPIRED };

/* Per transfer row, beside the 128-byte transfer. Each account's transfers form a list
 * linked backwards (newest first) through prev_dr / prev_cr, so appending a transfer touches
 * only rows the transfer already touches. */
typedef struct ltmeta {
    uint32_t prev_dr; /* previous transfer row of the debit account, LINDEX_NONE at the end */
    uint32_t prev_cr;
    uint32_t balance_dr; /* balance row of the debit account (history), LINDEX_NONE if none */
    uint32_t balance_cr;
    uint8_t status; /* LT_* */
    uint8_t pad[3];
} ltmeta_t;

/* Per account row: the newest transfer row touching the account, LINDEX_NONE if none. */
typedef uint32_t lameta_t;

/* One balance-history row: an account's balances right after a transfer touched it; its
 * timestamp is the transfer's. */
typedef struct lbalance {
    u128 debits_pending;
    u128 debits_posted;
    u128 credits_pending;
    u128 credits_posted;
} lbalance_t;

/* A pending transfer waiting for its timeout. Stale entries (posted or voided meanwhile)
 * are skipped when they reach the top of the heap. */
typedef struct lexpiry {
    uint64_t expires_at;
    uint64_t timestamp;
    uint32_t transfer;
    uint32_t pad;
} lexpiry_t;

/* One saved memory range of the undo log of an open linked chain. */
typedef struct lundo {
    void *ptr;
    uint32_t size;
    uint32_t offset; /* where the old bytes sit in undo_bytes */
} lundo_t;

/* Counters restored wholesale when a chain rolls back. */
typedef struct lcounters {
    uint32_t accounts;
    uint32_t transfers;
    uint32_t balances;
    uint32_t failed_ids;
    uint32_t pending_open;
    uint32_t chain_expiries;
    uint64_t account_timestamp_max;
    uint64_t transfer_timestamp_max;
} lcounters_t;

struct ledger {
    ledger_config_t config;

    ledger_account_t *accounts;
    lameta_t *ameta;
    ledger_transfer_t *transfers;
    ltmeta_t *tmeta;
    lbalance_t *balances;
    u128 *failed_ids;
    lindex_t accounts_ix, transfers_ix, failed_ix;

    lexpiry_t *expiry; /* binary min-heap by (expires_at, timestamp) */
    uint32_t expiry_count;

    lcounters_t n;           /* live counters */
    uint64_t last_timestamp; /* the newest batch timestamp: the ledger's clock */

    /* Open linked chain: undo log and the state at its start. */
    bool chain_open;
    lcounters_t chain_start;
    lundo_t *undo;
    uint32_t undo_count;
    unsigned char *undo_bytes;
    uint32_t undo_bytes_used;
    uint32_t *chain_expiry; /* pending transfers of the open chain that will need expiring */
};

/* Remembers the bytes at ptr so that a chain rollback restores them; no-op outside a chain. */
void ledger_undo_save(ledger_t *l, void *ptr, uint32_t size);

static inline uint32_t ledger_account_row(const ledger_t *l, u128 id) {
    return lindex_find(&l->accounts_ix, id, lindex_hash(id));
}

static inline uint32_t ledger_transfer_row(const ledger_t *l, u128 id) {
    return lindex_find(&l->transfers_ix, id, lindex_hash(id));
}

static inline uint64_t ledger_expires_at(const ledger_transfer_t *p) {
    return p->timestamp + (uint64_t)p->timeout * 1000000000ull;
}

/* Implemented in ledger_transfer.c. */
uint32_t ledger_transfer_create(ledger_t *l, uint64_t timestamp, const void *transfer,
                                uint64_t *ts_out);
void ledger_expiry_push(ledger_t *l, uint32_t transfer_row);
void ledger_transfer_prefetch_slots(const ledger_t *l, const ledger_transfer_t *t);
void ledger_transfer_prefetch_rows(const ledger_t *l, const ledger_transfer_t *t);
/* Accounts and transfers are stored in timestamp order (timestamp at the same offset in both):
 * the first row of a table whose timestamp is >= ts. */
static inline uint32_t ledger_rows_lower_bound(const void *rows, uint32_t count, uint64_t ts) {
    const unsigned char *r = rows; /* 128-byte rows, the layout asserted in ledger.c */
    uint32_t lo = 0, hi = count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        uint64_t v;
        memcpy(&v, r + (size_t)mid * 128 + offsetof(ledger_transfer_t, timestamp), sizeof v);
        if (v < ts)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool ledger_transfer_timestamp_exists(const ledger_t *l, uint64_t ts);
bool ledger_account_timestamp_exists(const ledger_t *l, uint64_t ts);

#endif

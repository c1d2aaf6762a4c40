/* The ledger: accounts and transfers with the debit/credit semantics of docs/ledger.md
 * (shared/docs/ledger.md is the contract). A deterministic state machine: time comes in with
 * each batch, there is no I/O, and every table is allocated once, at ledger_create().
 *
 * Ownership: ledger_create() returns a ledger the caller destroys with ledger_destroy();
 * every array passed in stays the caller's; query results are copied into caller buffers. */
#ifndef CP_LEDGER_H
#define CP_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/u128.h"

/* ---- Wire and storage structs: 128 bytes each, little-endian, fixed layout. ---- */

typedef struct ledger_account {
    u128 id;
    u128 debits_pending;
    u128 debits_posted;
    u128 credits_pending;
    u128 credits_posted;
    u128 user_data_128;
    uint64_t user_data_64;
    uint32_t user_data_32;
    uint32_t reserved;
    uint32_t ledger;
    uint16_t code;
    uint16_t flags;
    uint64_t timestamp;
} ledger_account_t;

typedef struct ledger_transfer {
    u128 id;
    u128 debit_account_id;
    u128 credit_account_id;
    u128 amount;
    u128 pending_id;
    u128 user_data_128;
    uint64_t user_data_64;
    uint32_t user_data_32;
    uint32_t timeout; /* seconds */
    uint32_t ledger;
    uint16_t code;
    uint16_t flags;
    uint64_t timestamp;
} ledger_transfer_t;

/* One row of an account's balance history (accounts with the history flag). */
typedef struct ledger_balance {
    u128 debits_pending;
    u128 debits_posted;
    u128 credits_pending;
    u128 credits_posted;
    uint64_t timestamp;
    uint8_t reserved[56];
} ledger_balance_t;

enum {
    LEDGER_ACCOUNT_LINKED = 1u << 0,
    LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS = 1u << 1,
    LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS = 1u << 2,
    LEDGER_ACCOUNT_HISTORY = 1u << 3,
    LEDGER_ACCOUNT_IMPORTED = 1u << 4,
    LEDGER_ACCOUNT_CLOSED = 1u << 5,
    LEDGER_ACCOUNT_FLAGS_VALID = (1u << 6) - 1,
};

enum {
    LEDGER_TRANSFER_LINKED = 1u << 0,
    LEDGER_TRANSFER_PENDING = 1u << 1,
    LEDGER_TRANSFER_POST_PENDING = 1u << 2,
    LEDGER_TRANSFER_VOID_PENDING = 1u << 3,
    LEDGER_TRANSFER_BALANCING_DEBIT = 1u << 4,
    LEDGER_TRANSFER_BALANCING_CREDIT = 1u << 5,
    LEDGER_TRANSFER_CLOSING_DEBIT = 1u << 6,
    LEDGER_TRANSFER_CLOSING_CREDIT = 1u << 7,
    LEDGER_TRANSFER_IMPORTED = 1u << 8,
    LEDGER_TRANSFER_FLAGS_VALID = (1u << 9) - 1,
};

/* Query filter flags (get_account_transfers / get_account_balances use all three,
 * query_accounts / query_transfers only reversed). */
enum {
    LEDGER_FILTER_DEBITS = 1u << 0,
    LEDGER_FILTER_CREDITS = 1u << 1,
    LEDGER_FILTER_REVERSED = 1u << 2,
};

/* Result codes. Values are stable (they travel on the wire). Within each operation the
 * numeric order is the order of precedence: when one event fails several checks, it gets
 * the smallest code. `created` is 0. The X-macro keeps names and values in one list. */
#define LEDGER_ACCOUNT_RESULTS(X)                                                                  \
    X(CREATED, created)                                                                            \
    X(LINKED_EVENT_CHAIN_OPEN, linked_event_chain_open)                                            \
    X(LINKED_EVENT_FAILED, linked_event_failed)                                                    \
    X(IMPORTED_EVENT_EXPECTED, imported_event_expected)                                            \
    X(IMPORTED_EVENT_NOT_EXPECTED, imported_event_not_expected)                                    \
    X(TIMESTAMP_MUST_BE_ZERO, timestamp_must_be_zero)                                              \
    X(IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE, imported_event_timestamp_out_of_range)                \
    X(IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE, imported_event_timestamp_must_not_advance)        \
    X(RESERVED_FIELD, reserved_field)                                                              \
    X(RESERVED_FLAG, reserved_flag)                                                                \
    X(ID_MUST_NOT_BE_ZERO, id_must_not_be_zero)                                                    \
    X(ID_MUST_NOT_BE_INT_MAX, id_must_not_be_int_max)                                              \
    X(EXISTS_WITH_DIFFERENT_FLAGS, exists_with_different_flags)                                    \
    X(EXISTS_WITH_DIFFERENT_USER_DATA_128, exists_with_different_user_data_128)                    \
    X(EXISTS_WITH_DIFFERENT_USER_DATA_64, exists_with_different_user_data_64)                      \
    X(EXISTS_WITH_DIFFERENT_USER_DATA_32, exists_with_different_user_data_32)                      \
    X(EXISTS_WITH_DIFFERENT_LEDGER, exists_with_different_ledger)                                  \
    X(EXISTS_WITH_DIFFERENT_CODE, exists_with_different_code)                                      \
    X(EXISTS, exists)                                                                              \
    X(FLAGS_ARE_MUTUALLY_EXCLUSIVE, flags_are_mutually_exclusive)                                  \
    X(DEBITS_PENDING_MUST_BE_ZERO, debits_pending_must_be_zero)                                    \
    X(DEBITS_POSTED_MUST_BE_ZERO, debits_posted_must_be_zero)                                      \
    X(CREDITS_PENDING_MUST_BE_ZERO, credits_pending_must_be_zero)                                  \
    X(CREDITS_POSTED_MUST_BE_ZERO, credits_posted_must_be_zero)                                    \
    X(LEDGER_MUST_NOT_BE_ZERO, ledger_must_not_be_zero)                                            \
    X(CODE_MUST_NOT_BE_ZERO, code_must_not_be_zero)                                                \
    X(IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS, imported_event_timestamp_must_not_regress)

#define LEDGER_TRANSFER_RESULTS(X)                                                                 \
    X(CREATED, created)                                                                            \
    X(LINKED_EVENT_CHAIN_OPEN, linked_event_chain_open)                                            \
    X(LINKED_EVENT_FAILED, linked_event_failed)                                                    \
    X(IMPORTED_EVENT_EXPECTED, imported_event_expected)                                            \
    X(IMPORTED_EVENT_NOT_EXPECTED, imported_event_not_expected)                                    \
    X(TIMESTAMP_MUST_BE_ZERO, timestamp_must_be_zero)                                              \
    X(IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE, imported_event_timestamp_out_of_range)                \
    X(IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE, imported_event_timestamp_must_not_advance)        \
    X(RESERVED_FLAG, reserved_flag)                                                                \
    X(ID_MUST_NOT_BE_ZERO, id_must_not_be_zero)                                                    \
    X(ID_MUST_NOT_BE_INT_MAX, id_must_not_be_int_max)                                              \
    X(EXISTS_WITH_DIFFERENT_FLAGS, exists_with_different_flags)                                    \
    X(EXISTS_WITH_DIFFERENT_PENDING_ID, exists_with_different_pending_id)                          \
    X(EXISTS_WITH_DIFFERENT_TIMEOUT, exists_with_different_timeout)                                \
    X(EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID, exists_with_different_debit_account_id)              \
    X(EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID, exists_with_different_credit_account_id)            \
    X(EXISTS_WITH_DIFFERENT_AMOUNT, exists_with_different_amount)                                  \
    X(EXISTS_WITH_DIFFERENT_USER_DATA_128, exists_with_different_user_data_128)                    \
    X(EXISTS_WITH_DIFFERENT_USER_DATA_64, exists_with_different_user_data_64)                      \
    X(EXISTS_WITH_DIFFERENT_USER_DATA_32, exists_with_different_user_data_32)                      \
    X(EXISTS_WITH_DIFFERENT_LEDGER, exists_with_different_ledger)                                  \
    X(EXISTS_WITH_DIFFERENT_CODE, exists_with_different_code)                                      \
    X(EXISTS, exists)                                                                              \
    X(ID_ALREADY_FAILED, id_already_failed)                                                        \
    X(FLAGS_ARE_MUTUALLY_EXCLUSIVE, flags_are_mutually_exclusive)                                  \
    X(DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO, debit_account_id_must_not_be_zero)                        \
    X(DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX, debit_account_id_must_not_be_int_max)                  \
    X(CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO, credit_account_id_must_not_be_zero)                      \
    X(CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX, credit_account_id_must_not_be_int_max)                \
    X(ACCOUNTS_MUST_BE_DIFFERENT, accounts_must_be_different)                                      \
    X(PENDING_ID_MUST_BE_ZERO, pending_id_must_be_zero)                                            \
    X(PENDING_ID_MUST_NOT_BE_ZERO, pending_id_must_not_be_zero)                                    \
    X(PENDING_ID_MUST_NOT_BE_INT_MAX, pending_id_must_not_be_int_max)                              \
    X(PENDING_ID_MUST_BE_DIFFERENT, pending_id_must_be_different)                                  \
    X(TIMEOUT_RESERVED_FOR_PENDING_TRANSFER, timeout_reserved_for_pending_transfer)                \
    X(CLOSING_TRANSFER_MUST_BE_PENDING, closing_transfer_must_be_pending)                          \
    X(LEDGER_MUST_NOT_BE_ZERO, ledger_must_not_be_zero)                                            \
    X(CODE_MUST_NOT_BE_ZERO, code_must_not_be_zero)                                                \
    X(DEBIT_ACCOUNT_NOT_FOUND, debit_account_not_found)                                            \
    X(CREDIT_ACCOUNT_NOT_FOUND, credit_account_not_found)                                          \
    X(ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER, accounts_must_have_the_same_ledger)                      \
    X(TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS,                                              \
      transfer_must_have_the_same_ledger_as_accounts)                                              \
    X(PENDING_TRANSFER_NOT_FOUND, pending_transfer_not_found)                                      \
    X(PENDING_TRANSFER_NOT_PENDING, pending_transfer_not_pending)                                  \
    X(PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID,                                             \
      pending_transfer_has_different_debit_account_id)                                             \
    X(PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID,                                            \
      pending_transfer_has_different_credit_account_id)                                            \
    X(PENDING_TRANSFER_HAS_DIFFERENT_LEDGER, pending_transfer_has_different_ledger)                \
    X(PENDING_TRANSFER_HAS_DIFFERENT_CODE, pending_transfer_has_different_code)                    \
    X(EXCEEDS_PENDING_TRANSFER_AMOUNT, exceeds_pending_transfer_amount)                            \
    X(PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT, pending_transfer_has_different_amount)                \
    X(PENDING_TRANSFER_ALREADY_POSTED, pending_transfer_already_posted)                            \
    X(PENDING_TRANSFER_ALREADY_VOIDED, pending_transfer_already_voided)                            \
    X(PENDING_TRANSFER_EXPIRED, pending_transfer_expired)                                          \
    X(IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS, imported_event_timestamp_must_not_regress)        \
    X(IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT,                                        \
      imported_event_timestamp_must_postdate_debit_account)                                        \
    X(IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT,                                       \
      imported_event_timestamp_must_postdate_credit_account)                                       \
    X(IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO, imported_event_timeout_must_be_zero)                    \
    X(DEBIT_ACCOUNT_ALREADY_CLOSED, debit_account_already_closed)                                  \
    X(CREDIT_ACCOUNT_ALREADY_CLOSED, credit_account_already_closed)                                \
    X(OVERFLOWS_DEBITS_PENDING, overflows_debits_pending)                                          \
    X(OVERFLOWS_CREDITS_PENDING, overflows_credits_pending)                                        \
    X(OVERFLOWS_DEBITS_POSTED, overflows_debits_posted)                                            \
    X(OVERFLOWS_CREDITS_POSTED, overflows_credits_posted)                                          \
    X(OVERFLOWS_DEBITS, overflows_debits)                                                          \
    X(OVERFLOWS_CREDITS, overflows_credits)                                                        \
    X(OVERFLOWS_TIMEOUT, overflows_timeout)                                                        \
    X(EXCEEDS_CREDITS, exceeds_credits)                                                            \
    X(EXCEEDS_DEBITS, exceeds_debits)

#define LEDGER_ENUM_ACCOUNT(up, low) LEDGER_ACCOUNT_##up,
#define LEDGER_ENUM_TRANSFER(up, low) LEDGER_TRANSFER_##up,
typedef enum ledger_account_result {
    LEDGER_ACCOUNT_RESULTS(LEDGER_ENUM_ACCOUNT) LEDGER_ACCOUNT_RESULT_COUNT
} ledger_account_result_t;
typedef enum ledger_transfer_result {
    LEDGER_TRANSFER_RESULTS(LEDGER_ENUM_TRANSFER) LEDGER_TRANSFER_RESULT_COUNT
} ledger_transfer_result_t;
#undef LEDGER_ENUM_ACCOUNT
#undef LEDGER_ENUM_TRANSFER

/* One result per event: the code and, for created / exists, the object's timestamp. */
typedef struct ledger_result {
    uint32_t result;
    uint32_t reserved;
    uint64_t timestamp;
} ledger_result_t;

/* System-level outcomes of a whole call. Anything but LEDGER_OK means nothing was applied. */
typedef enum ledger_status {
    LEDGER_OK = 0,
    LEDGER_ERR_BATCH_TOO_LARGE, /* more than CP_BATCH_EVENTS_MAX events */
    LEDGER_ERR_CLOCK,           /* the batch timestamp does not advance past the last one */
    LEDGER_ERR_ACCOUNTS_FULL,   /* the batch could exceed the account table's capacity */
    LEDGER_ERR_TRANSFERS_FULL,  /* ... the transfer table's capacity */
    LEDGER_ERR_BALANCES_FULL,   /* ... the balance-history table's capacity */
    LEDGER_ERR_FAILED_IDS_FULL, /* ... the table of failed transfer ids */
} ledger_status_t;

const char *ledger_status_str(ledger_status_t status);
const char *ledger_account_result_str(uint32_t result); /* NULL when out of range */
const char *ledger_transfer_result_str(uint32_t result);
bool ledger_account_result_parse(const char *s, size_t len, uint32_t *out);
bool ledger_transfer_result_parse(const char *s, size_t len, uint32_t *out);

typedef struct ledger_config {
    uint32_t accounts_max;
    uint32_t transfers_max;
    uint32_t balances_max;   /* balance-history rows; 0 = 2 * transfers_max */
    uint32_t failed_ids_max; /* ids of transfers that failed for state reasons; 0 = transfers_max */
    bool prefault;           /* commit all table memory at creation instead of on first use */
} ledger_config_t;

typedef struct ledger ledger_t;

/* Allocates every table for the configured capacities (memory is touched lazily, so a large
 * capacity costs address space, not RAM, until it is used). NULL when out of memory or a
 * capacity is 0 or above CP_LEDGER_TABLE_MAX. */
ledger_t *ledger_create(const ledger_config_t *config);
void ledger_destroy(ledger_t *ledger);

/* Empties the ledger: afterwards it is as ledger_create() returned it, with the same
 * capacities and the memory already touched kept (a replica that loses its state and rebuilds
 * it, over and over, in the simulator). O(accounts + transfers + failed ids). */
void ledger_reset(ledger_t *ledger);

/* Applies a batch. The batch owns the timestamps (timestamp - count, timestamp]: event i is
 * stamped timestamp - count + i + 1. `timestamp` must be above every timestamp used so far
 * and at most 2^63-1. results[i] is written for every event. */
ledger_status_t ledger_create_accounts(ledger_t *ledger, uint64_t timestamp,
                                       const ledger_account_t *events, uint32_t count,
                                       ledger_result_t *results);
ledger_status_t ledger_create_transfers(ledger_t *ledger, uint64_t timestamp,
                                        const ledger_transfer_t *events, uint32_t count,
                                        ledger_result_t *results);

/* Expires every pending transfer whose expiry time is <= now, in order of expiry time, then
 * creation time; returns how many expired. */
uint32_t ledger_expire(ledger_t *ledger, uint64_t now);

/* The earliest expiry time of a still-pending transfer, 0 when none. */
uint64_t ledger_next_expiry(ledger_t *ledger);

/* ---- Queries. Each returns the number of objects written to out. ---- */

/* Filters are wire structs too: fixed size, reserved bytes must be zero (else the filter is
 * invalid and the query returns nothing). */
typedef struct ledger_account_filter {
    u128 account_id;
    u128 user_data_128;
    uint64_t user_data_64;
    uint32_t user_data_32;
    uint16_t code;
    uint16_t reserved_1;
    uint64_t timestamp_min;
    uint64_t timestamp_max;
    uint32_t limit;
    uint32_t flags; /* LEDGER_FILTER_* */
    uint8_t reserved[56];
} ledger_account_filter_t;

typedef struct ledger_query_filter {
    u128 user_data_128;
    uint64_t user_data_64;
    uint32_t user_data_32;
    uint32_t ledger;
    uint16_t code;
    uint16_t reserved_1;
    uint32_t limit;
    uint64_t timestamp_min;
    uint64_t timestamp_max;
    uint32_t flags; /* LEDGER_FILTER_REVERSED */
    uint32_t reserved_2;
} ledger_query_filter_t;

/* Missing ids are simply absent from the output; out has room for count objects. */
uint32_t ledger_lookup_accounts(const ledger_t *ledger, const u128 *ids, uint32_t count,
                                ledger_account_t *out);
uint32_t ledger_lookup_transfers(const ledger_t *ledger, const u128 *ids, uint32_t count,
                                 ledger_transfer_t *out);

/* out has room for min(filter->limit, CP_QUERY_LIMIT_MAX) objects. */
uint32_t ledger_get_account_transfers(const ledger_t *ledger, const ledger_account_filter_t *f,
                                      ledger_transfer_t *out);
uint32_t ledger_get_account_balances(const ledger_t *ledger, const ledger_account_filter_t *f,
                                     ledger_balance_t *out);
uint32_t ledger_query_accounts(const ledger_t *ledger, const ledger_query_filter_t *f,
                               ledger_account_t *out);
uint32_t ledger_query_transfers(const ledger_t *ledger, const ledger_query_filter_t *f,
                                ledger_transfer_t *out);

/* ---- Images: the whole state as memory regions, for snapshots (no I/O here). ----
 * Saving: ledger_image_header(), then write the header and the bytes of each region of
 * ledger_image_regions() (valid until the ledger next changes; a forked child can write them
 * while the parent goes on). Restoring: read and check the header, create a ledger with at
 * least its capacities, fill the regions of ledger_image_restore_regions() with the saved
 * bytes, then ledger_image_finish() rebuilds the indexes and checks the invariants. */

typedef struct ledger_image_header {
    uint64_t magic;
    uint32_t version;
    uint32_t accounts;
    uint32_t transfers;
    uint32_t balances;
    uint32_t failed_ids;
    uint32_t pending_open;
    uint64_t last_timestamp;
    uint64_t account_timestamp_max;
    uint64_t transfer_timestamp_max;
    uint8_t reserved[72];
} ledger_image_header_t;

typedef struct ledger_region {
    void *ptr;
    size_t size;
} ledger_region_t;

#define LEDGER_IMAGE_REGIONS 6u

void ledger_image_header(const ledger_t *ledger, ledger_image_header_t *out);
uint32_t ledger_image_regions(const ledger_t *ledger, const ledger_image_header_t *h,
                              ledger_region_t out[LEDGER_IMAGE_REGIONS]);
/* NULL when an image with this header fits a ledger of this configuration, else why not. */
const char *ledger_image_check(const ledger_image_header_t *h, const ledger_config_t *config);
/* On a new, empty ledger: where the saved regions must be read to. */
uint32_t ledger_image_restore_regions(ledger_t *ledger, const ledger_image_header_t *h,
                                      ledger_region_t out[LEDGER_IMAGE_REGIONS]);
/* NULL when the restored ledger is whole and consistent, else what is wrong (then destroy it). */
const char *ledger_image_finish(ledger_t *ledger, const ledger_image_header_t *h);

/* ---- Introspection (tests, metrics). ---- */

typedef struct ledger_stats {
    uint32_t accounts;
    uint32_t transfers;
    uint32_t balances;
    uint32_t failed_ids;
    uint32_t pending_open; /* pending transfers not yet posted, voided or expired */
    uint64_t last_timestamp;
} ledger_stats_t;

void ledger_stats(const ledger_t *ledger, ledger_stats_t *out);

/* The capacities in effect (zeros of the configuration resolved): a layer above that must
 * know before it starts whether a batch will be admitted (payments: nothing half-applied). */
void ledger_capacity(const ledger_t *ledger, ledger_config_t *out);

/* XXH3-128 of a canonical form of the whole state (ledger_hash.c): every account and transfer
 * row in timestamp order, pending states, balance history, failed ids and the clock. Equal
 * for ledgers that applied the same batches, whatever their capacities; any difference in
 * what the ledger would answer from now on changes it. O(accounts + transfers); between
 * batches only. Replicas compare it to prove they hold the same state. */
u128 ledger_state_hash(const ledger_t *ledger);

/* Overwrites an account's balances; only for the --test-ops driver (constructing overflow
 * cases). Returns false when the account does not exist. */
bool ledger_test_set_balances(ledger_t *ledger, u128 account_id, u128 debits_pending,
                              u128 debits_posted, u128 credits_pending, u128 credits_posted);

/* Checks the ledger's invariants (per ledger value: sum of debits == sum of credits, posted
 * and pending; no constrained account past its limit; indexes consistent). Returns NULL when
 * they hold, else a description of the first broken one. O(accounts + transfers). */
const char *ledger_check_invariants(const ledger_t *ledger);

#endif

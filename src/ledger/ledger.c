/* The ledger's tables, the batch loop with linked chains, and create_accounts. Transfers are
 * in ledger_transfer.c, queries in ledger_query.c. */
#include "ledger/ledger_internal.h"

#include <stdlib.h>
#include <string.h>

#include "base/table.h"

/* Undo log bounds for one open chain: a transfer saves at most two accounts, two account
 * list heads and one pending status, each rounded up to 16 bytes of payload. */
#define UNDO_RECORDS_PER_EVENT 8u
#define UNDO_BYTES_PER_EVENT 512u

/* ---- Result names ---- */

#define LEDGER_NAME(up, low) #low,
static const char *const account_result_names[] = {LEDGER_ACCOUNT_RESULTS(LEDGER_NAME)};
static const char *const transfer_result_names[] = {LEDGER_TRANSFER_RESULTS(LEDGER_NAME)};
#undef LEDGER_NAME

/* The batch loop assigns these codes to both kinds of event. */
#define SAME_CODE(name)                                                                            \
    CP_STATIC_ASSERT((int)LEDGER_ACCOUNT_##name == (int)LEDGER_TRANSFER_##name, #name)
SAME_CODE(LINKED_EVENT_FAILED);
SAME_CODE(LINKED_EVENT_CHAIN_OPEN);
SAME_CODE(IMPORTED_EVENT_EXPECTED);
SAME_CODE(IMPORTED_EVENT_NOT_EXPECTED);
SAME_CODE(TIMESTAMP_MUST_BE_ZERO);
SAME_CODE(IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE);
SAME_CODE(IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE);
#undef SAME_CODE

const char *ledger_account_result_str(uint32_t r) {
    return r < LEDGER_ACCOUNT_RESULT_COUNT ? account_result_names[r] : NULL;
}

const char *ledger_transfer_result_str(uint32_t r) {
    return r < LEDGER_TRANSFER_RESULT_COUNT ? transfer_result_names[r] : NULL;
}

static bool names_parse(const char *const *names, uint32_t count, const char *s, size_t len,
                        uint32_t *out) {
    for (uint32_t i = 0; i < count; i++) {
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0) {
            *out = i;
            return true;
        }
    }
    return false;
}

bool ledger_account_result_parse(const char *s, size_t len, uint32_t *out) {
    return names_parse(account_result_names, LEDGER_ACCOUNT_RESULT_COUNT, s, len, out);
}

bool ledger_transfer_result_parse(const char *s, size_t len, uint32_t *out) {
    return names_parse(transfer_result_names, LEDGER_TRANSFER_RESULT_COUNT, s, len, out);
}

const char *ledger_status_str(ledger_status_t status) {
    switch (status) {
    case LEDGER_OK: return "ok";
    case LEDGER_ERR_BATCH_TOO_LARGE: return "batch has more events than the limit of 8189";
    case LEDGER_ERR_CLOCK: return "batch timestamp does not advance past the ledger's clock";
    case LEDGER_ERR_ACCOUNTS_FULL: return "account table is full";
    case LEDGER_ERR_TRANSFERS_FULL: return "transfer table is full";
    case LEDGER_ERR_BALANCES_FULL: return "balance history table is full";
    case LEDGER_ERR_FAILED_IDS_FULL: return "failed transfer id table is full";
    }
    return "unknown status";
}

/* ---- Life cycle ---- */

static void ledger_prefault(ledger_t *l) {
    const ledger_config_t *c = &l->config;
    cp_table_prefault(l->accounts, c->accounts_max, sizeof l->accounts[0]);
    cp_table_prefault(l->ameta, c->accounts_max, sizeof l->ameta[0]);
    cp_table_prefault(l->transfers, c->transfers_max, sizeof l->transfers[0]);
    cp_table_prefault(l->tmeta, c->transfers_max, sizeof l->tmeta[0]);
    cp_table_prefault(l->balances, c->balances_max, sizeof l->balances[0]);
    cp_table_prefault(l->failed_ids, c->failed_ids_max, sizeof l->failed_ids[0]);
    cp_table_prefault(l->expiry, c->transfers_max, sizeof l->expiry[0]);
    lindex_t *ixs[] = {&l->accounts_ix, &l->transfers_ix, &l->failed_ix};
    for (size_t i = 0; i < sizeof ixs / sizeof ixs[0]; i++) {
        lindex_presize(ixs[i]);
        cp_table_prefault(ixs[i]->slots, ixs[i]->mask + 1, sizeof(uint64_t));
    }
}

ledger_t *ledger_create(const ledger_config_t *config) {
    ledger_config_t c = *config;
    if (c.balances_max == 0)
        c.balances_max =
            c.transfers_max <= CP_LEDGER_TABLE_MAX / 2 ? c.transfers_max * 2 : CP_LEDGER_TABLE_MAX;
    if (c.failed_ids_max == 0) c.failed_ids_max = c.transfers_max;
    if (c.accounts_max == 0 || c.transfers_max == 0 || c.accounts_max > CP_LEDGER_TABLE_MAX ||
        c.transfers_max > CP_LEDGER_TABLE_MAX || c.balances_max > CP_LEDGER_TABLE_MAX ||
        c.failed_ids_max > CP_LEDGER_TABLE_MAX)
        return NULL;

    ledger_t *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->config = c;
    /* Accounts are looked up at random and added slowly: huge pages (base/table.h). */
    l->accounts = cp_table_alloc_huge(c.accounts_max, sizeof l->accounts[0]);
    l->ameta = cp_table_alloc_huge(c.accounts_max, sizeof l->ameta[0]);
    l->transfers = cp_table_alloc(c.transfers_max, sizeof l->transfers[0]);
    l->tmeta = cp_table_alloc(c.transfers_max, sizeof l->tmeta[0]);
    l->balances = cp_table_alloc(c.balances_max, sizeof l->balances[0]);
    l->failed_ids = cp_table_alloc(c.failed_ids_max, sizeof l->failed_ids[0]);
    l->expiry = cp_table_alloc(c.transfers_max, sizeof l->expiry[0]);
    /* Mapped like the tables, not calloc'ed: once a large block was freed, malloc serves the
     * next from its heap and calloc clears all 5 MB of the undo log at every creation, though
     * only linked chains ever touch it. */
    l->undo =
        cp_table_alloc((size_t)CP_BATCH_EVENTS_MAX * UNDO_RECORDS_PER_EVENT, sizeof l->undo[0]);
    l->undo_bytes = cp_table_alloc(CP_BATCH_EVENTS_MAX, UNDO_BYTES_PER_EVENT);
    l->chain_expiry = cp_table_alloc(CP_BATCH_EVENTS_MAX, sizeof l->chain_expiry[0]);
    bool ok = l->accounts && l->ameta && l->transfers && l->tmeta && l->balances && l->failed_ids &&
              l->expiry && l->undo && l->undo_bytes && l->chain_expiry;
    ok = ok && lindex_init(&l->accounts_ix, c.accounts_max, l->accounts, sizeof l->accounts[0]);
    ok = ok && lindex_init(&l->transfers_ix, c.transfers_max, l->transfers, sizeof l->transfers[0]);
    ok = ok && lindex_init(&l->failed_ix, c.failed_ids_max, l->failed_ids, sizeof l->failed_ids[0]);
    if (!ok) {
        ledger_destroy(l);
        return NULL;
    }
    if (c.prefault) ledger_prefault(l);
    return l;
}

void ledger_destroy(ledger_t *l) {
    if (!l) return;
    lindex_free(&l->accounts_ix);
    lindex_free(&l->transfers_ix);
    lindex_free(&l->failed_ix);
    cp_table_free(l->accounts, l->config.accounts_max, sizeof l->accounts[0]);
    cp_table_free(l->ameta, l->config.accounts_max, sizeof l->ameta[0]);
    cp_table_free(l->transfers, l->config.transfers_max, sizeof l->transfers[0]);
    cp_table_free(l->tmeta, l->config.transfers_max, sizeof l->tmeta[0]);
    cp_table_free(l->balances, l->config.balances_max, sizeof l->balances[0]);
    cp_table_free(l->failed_ids, l->config.failed_ids_max, sizeof l->failed_ids[0]);
    cp_table_free(l->expiry, l->config.transfers_max, sizeof l->expiry[0]);
    cp_table_free(l->undo, (size_t)CP_BATCH_EVENTS_MAX * UNDO_RECORDS_PER_EVENT, sizeof l->undo[0]);
    cp_table_free(l->undo_bytes, CP_BATCH_EVENTS_MAX, UNDO_BYTES_PER_EVENT);
    cp_table_free(l->chain_expiry, CP_BATCH_EVENTS_MAX, sizeof l->chain_expiry[0]);
    free(l);
}

void ledger_reset(ledger_t *l) {
    cp_assert(!l->chain_open);
    lindex_clear(&l->accounts_ix, l->n.accounts);
    lindex_clear(&l->transfers_ix, l->n.transfers);
    lindex_clear(&l->failed_ix, l->n.failed_ids);
    /* Rows past the counters are dead: every row is written whole when it is next used, as
     * after a chain's rollback. */
    l->n = (lcounters_t){0};
    l->expiry_count = 0;
    l->last_timestamp = 0;
}

/* ---- Linked chains: an undo log of saved memory plus the counters at the chain's start.
 * Rows created inside the chain are appended, so undoing them is removing their index
 * entries (newest first) and truncating. ---- */

void ledger_undo_save(ledger_t *l, void *ptr, uint32_t size) {
    if (!l->chain_open) return;
    uint32_t padded = (size + 15u) & ~15u;
    cp_assert(l->undo_count < CP_BATCH_EVENTS_MAX * UNDO_RECORDS_PER_EVENT);
    cp_assert(l->undo_bytes_used + padded <= CP_BATCH_EVENTS_MAX * UNDO_BYTES_PER_EVENT);
    lundo_t *u = &l->undo[l->undo_count++];
    u->ptr = ptr;
    u->size = size;
    u->offset = l->undo_bytes_used;
    memcpy(l->undo_bytes + u->offset, ptr, size);
    l->undo_bytes_used += padded;
}

static void chain_begin(ledger_t *l) {
    cp_assert(!l->chain_open);
    l->chain_open = true;
    l->chain_start = l->n;
    l->undo_count = 0;
    l->undo_bytes_used = 0;
    l->n.chain_expiries = 0;
}

static void chain_rollback(ledger_t *l) {
    cp_assert(l->chain_open);
    for (uint32_t i = l->undo_count; i-- > 0;) {
        const lundo_t *u = &l->undo[i];
        memcpy(u->ptr, l->undo_bytes + u->offset, u->size);
    }
    for (uint32_t r = l->n.transfers; r-- > l->chain_start.transfers;)
        lindex_remove(&l->transfers_ix, lindex_hash(l->transfers[r].id), r);
    for (uint32_t r = l->n.accounts; r-- > l->chain_start.accounts;)
        lindex_remove(&l->accounts_ix, lindex_hash(l->accounts[r].id), r);
    /* Failed ids are recorded only after a rollback (ledger_batch), never inside the chain. */
    cp_assert(l->n.failed_ids == l->chain_start.failed_ids);
    l->n = l->chain_start;
    l->chain_open = false;
}

static void chain_commit(ledger_t *l) {
    cp_assert(l->chain_open);
    for (uint32_t i = 0; i < l->n.chain_expiries; i++) ledger_expiry_push(l, l->chain_expiry[i]);
    l->n.chain_expiries = 0;
    l->chain_open = false;
}

/* ---- The batch loop, shared by both create operations ---- */

/* How far ahead of the applied transfer the loop prefetches index slots, then account rows:
 * far enough for a memory read to land, near enough to stay in cache. */
#define PREFETCH_SLOTS_AHEAD 16u
#define PREFETCH_ROWS_AHEAD 8u

/* Validates and applies one event stamped `timestamp`; writes the object's timestamp through
 * ts_out for created and exists, and returns the result code. */
typedef uint32_t (*create_fn)(ledger_t *l, uint64_t timestamp, const void *event, uint64_t *ts_out);

/* The 128-byte account and transfer share the positions of flags (linked is bit 0) and
 * timestamp, which is all the batch loop reads. */
CP_STATIC_ASSERT(offsetof(ledger_account_t, flags) == offsetof(ledger_transfer_t, flags) &&
                     offsetof(ledger_account_t, timestamp) ==
                         offsetof(ledger_transfer_t, timestamp),
                 "shared event layout");

static inline uint16_t event_flags(const void *e) {
    return ((const ledger_transfer_t *)e)->flags;
}
static inline uint64_t event_timestamp(const void *e) {
    return ((const ledger_transfer_t *)e)->timestamp;
}

/* The checks every event passes before its own: the batch-wide import rule and the
 * timestamp rules. Returns 0 (created) when they pass. */
static uint32_t check_event_time(const void *e, bool batch_imported, uint16_t imported_flag,
                                 uint64_t batch_timestamp) {
    bool imported = (event_flags(e) & imported_flag) != 0;
    if (imported != batch_imported)
        return imported ? LEDGER_TRANSFER_IMPORTED_EVENT_NOT_EXPECTED
                        : LEDGER_TRANSFER_IMPORTED_EVENT_EXPECTED;
    uint64_t ts = event_timestamp(e);
    if (!imported) return ts != 0 ? LEDGER_TRANSFER_TIMESTAMP_MUST_BE_ZERO : 0;
    if (ts < 1 || ts > CP_TIMESTAMP_MAX)
        return LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE;
    if (ts >= batch_timestamp) return LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE;
    return 0;
}

static void record_failed_id(ledger_t *l, u128 id) {
    uint64_t h = lindex_hash(id);
    if (lindex_find(&l->failed_ix, id, h) != LINDEX_NONE) return;
    cp_assert(l->n.failed_ids < l->config.failed_ids_max); /* reserved by ledger_batch_room */
    l->failed_ids[l->n.failed_ids] = id;
    lindex_insert(&l->failed_ix, h, l->n.failed_ids);
    l->n.failed_ids++;
}

/* Results that depend on state, not on the event: the id is remembered as failed so that a
 * retry cannot succeed later and change the outcome. */
static bool transfer_result_is_transient(uint32_t r) {
    switch (r) {
    case LEDGER_TRANSFER_DEBIT_ACCOUNT_NOT_FOUND:
    case LEDGER_TRANSFER_CREDIT_ACCOUNT_NOT_FOUND:
    case LEDGER_TRANSFER_PENDING_TRANSFER_NOT_FOUND:
    case LEDGER_TRANSFER_EXCEEDS_CREDITS:
    case LEDGER_TRANSFER_EXCEEDS_DEBITS:
    case LEDGER_TRANSFER_DEBIT_ACCOUNT_ALREADY_CLOSED:
    case LEDGER_TRANSFER_CREDIT_ACCOUNT_ALREADY_CLOSED: return true;
    default: return false;
    }
}

static ledger_status_t ledger_batch(ledger_t *l, uint64_t timestamp, const void *events,
                                    size_t stride, uint32_t count, ledger_result_t *results,
                                    uint16_t imported_flag, bool transfers, create_fn create) {
    const unsigned char *base = events;
    bool batch_imported = count > 0 && (event_flags(base) & imported_flag);
    uint32_t chain_start = UINT32_MAX;
    bool chain_broken = false;

    for (uint32_t i = 0; i < count; i++) {
        const void *e = base + (size_t)i * stride;
        if (transfers) {
            if (i + PREFETCH_SLOTS_AHEAD < count)
                ledger_transfer_prefetch_slots(
                    l, (const void *)(base + (size_t)(i + PREFETCH_SLOTS_AHEAD) * stride));
            if (i + PREFETCH_ROWS_AHEAD < count)
                ledger_transfer_prefetch_rows(
                    l, (const void *)(base + (size_t)(i + PREFETCH_ROWS_AHEAD) * stride));
        }
        bool linked = event_flags(e) & LEDGER_TRANSFER_LINKED;
        uint64_t ts = timestamp - count + i + 1;
        uint32_t r;
        results[i].timestamp = 0;
        if (linked && chain_start == UINT32_MAX) {
            chain_start = i;
            chain_begin(l);
        }
        if (linked && i == count - 1)
            r = LEDGER_TRANSFER_LINKED_EVENT_CHAIN_OPEN;
        else if (chain_broken)
            r = LEDGER_TRANSFER_LINKED_EVENT_FAILED;
        else {
            r = check_event_time(e, batch_imported, imported_flag, timestamp);
            if (r == 0) r = create(l, ts, e, &results[i].timestamp);
        }
        results[i].result = r;
        results[i].reserved = 0;

        if (r != 0 && chain_start != UINT32_MAX && !chain_broken) {
            chain_broken = true;
            chain_rollback(l);
            for (uint32_t j = chain_start; j < i; j++)
                results[j] = (ledger_result_t){.result = LEDGER_TRANSFER_LINKED_EVENT_FAILED};
        }
        if (transfers && transfer_result_is_transient(r))
            record_failed_id(l, ((const ledger_transfer_t *)e)->id);
        if (chain_start != UINT32_MAX &&
            (!linked || r == LEDGER_TRANSFER_LINKED_EVENT_CHAIN_OPEN)) {
            if (!chain_broken) chain_commit(l);
            chain_start = UINT32_MAX;
            chain_broken = false;
        }
    }
    cp_assert(!l->chain_open);
    l->last_timestamp = timestamp;
    return LEDGER_OK;
}

/* Checks what can fail for a whole batch before anything is applied: nothing is half done. */
static ledger_status_t ledger_batch_admit(const ledger_t *l, uint64_t timestamp, uint32_t count) {
    if (count > CP_BATCH_EVENTS_MAX) return LEDGER_ERR_BATCH_TOO_LARGE;
    if (timestamp <= l->last_timestamp || timestamp > CP_TIMESTAMP_MAX ||
        timestamp - l->last_timestamp < count)
        return LEDGER_ERR_CLOCK;
    return LEDGER_OK;
}

/* ---- create_accounts ---- */

static uint32_t account_exists(const ledger_account_t *a, const ledger_account_t *e) {
    if (a->flags != e->flags) return LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_FLAGS;
    if (a->user_data_128 != e->user_data_128)
        return LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_USER_DATA_128;
    if (a->user_data_64 != e->user_data_64)
        return LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_USER_DATA_64;
    if (a->user_data_32 != e->user_data_32)
        return LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_USER_DATA_32;
    if (a->ledger != e->ledger) return LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_LEDGER;
    if (a->code != e->code) return LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_CODE;
    return LEDGER_ACCOUNT_EXISTS;
}

/* Validates and inserts one account; `timestamp` is the one the batch gives this event. The
 * result timestamp is written through *ts_out for created and exists. */
static uint32_t account_create(ledger_t *l, uint64_t timestamp, const ledger_account_t *a,
                               uint64_t *ts_out) {
    if (a->reserved != 0) return LEDGER_ACCOUNT_RESERVED_FIELD;
    if (a->flags & ~LEDGER_ACCOUNT_FLAGS_VALID) return LEDGER_ACCOUNT_RESERVED_FLAG;
    if (a->id == 0) return LEDGER_ACCOUNT_ID_MUST_NOT_BE_ZERO;
    if (a->id == U128_MAX) return LEDGER_ACCOUNT_ID_MUST_NOT_BE_INT_MAX;
    uint64_t h = lindex_hash(a->id);
    uint32_t row = lindex_find(&l->accounts_ix, a->id, h);
    if (row != LINDEX_NONE) {
        uint32_t r = account_exists(a, &l->accounts[row]);
        /* Only a true `exists` answers with the original; a mismatch is a failure. */
        if (r == LEDGER_ACCOUNT_EXISTS) *ts_out = l->accounts[row].timestamp;
        return r;
    }
    if ((a->flags & LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) &&
        (a->flags & LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS))
        return LEDGER_ACCOUNT_FLAGS_ARE_MUTUALLY_EXCLUSIVE;
    if (a->debits_pending != 0) return LEDGER_ACCOUNT_DEBITS_PENDING_MUST_BE_ZERO;
    if (a->debits_posted != 0) return LEDGER_ACCOUNT_DEBITS_POSTED_MUST_BE_ZERO;
    if (a->credits_pending != 0) return LEDGER_ACCOUNT_CREDITS_PENDING_MUST_BE_ZERO;
    if (a->credits_posted != 0) return LEDGER_ACCOUNT_CREDITS_POSTED_MUST_BE_ZERO;
    if (a->ledger == 0) return LEDGER_ACCOUNT_LEDGER_MUST_NOT_BE_ZERO;
    if (a->code == 0) return LEDGER_ACCOUNT_CODE_MUST_NOT_BE_ZERO;
    if (a->flags & LEDGER_ACCOUNT_IMPORTED) {
        if (a->timestamp <= l->n.account_timestamp_max ||
            ledger_transfer_timestamp_exists(l, a->timestamp))
            return LEDGER_ACCOUNT_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS;
        timestamp = a->timestamp;
    }

    cp_assert(l->n.accounts < l->config.accounts_max); /* reserved by the admission check */
    row = l->n.accounts++;
    ledger_account_t *s = &l->accounts[row];
    *s = *a;
    s->timestamp = timestamp;
    l->ameta[row] = LINDEX_NONE;
    lindex_insert(&l->accounts_ix, h, row);
    cp_assert(timestamp > l->n.account_timestamp_max);
    l->n.account_timestamp_max = timestamp;
    *ts_out = timestamp;
    return LEDGER_ACCOUNT_CREATED;
}

static uint32_t account_create_fn(ledger_t *l, uint64_t timestamp, const void *e,
                                  uint64_t *ts_out) {
    return account_create(l, timestamp, e, ts_out);
}

ledger_status_t ledger_create_accounts(ledger_t *l, uint64_t timestamp,
                                       const ledger_account_t *events, uint32_t count,
                                       ledger_result_t *results) {
    ledger_status_t st = ledger_batch_admit(l, timestamp, count);
    if (st != LEDGER_OK) return st;
    if (count > l->config.accounts_max - l->n.accounts) return LEDGER_ERR_ACCOUNTS_FULL;
    return ledger_batch(l, timestamp, events, sizeof *events, count, results,
                        LEDGER_ACCOUNT_IMPORTED, false, account_create_fn);
}

ledger_status_t ledger_create_transfers(ledger_t *l, uint64_t timestamp,
                                        const ledger_transfer_t *events, uint32_t count,
                                        ledger_result_t *results) {
    ledger_status_t st = ledger_batch_admit(l, timestamp, count);
    if (st != LEDGER_OK) return st;
    if (count > l->config.transfers_max - l->n.transfers) return LEDGER_ERR_TRANSFERS_FULL;
    if ((uint64_t)count * 2 > l->config.balances_max - l->n.balances)
        return LEDGER_ERR_BALANCES_FULL;
    if (count > l->config.failed_ids_max - l->n.failed_ids) return LEDGER_ERR_FAILED_IDS_FULL;
    return ledger_batch(l, timestamp, events, sizeof *events, count, results,
                        LEDGER_TRANSFER_IMPORTED, true, ledger_transfer_create);
}

/* ---- Introspection ---- */

void ledger_stats(const ledger_t *l, ledger_stats_t *out) {
    *out = (ledger_stats_t){
        .accounts = l->n.accounts,
        .transfers = l->n.transfers,
        .balances = l->n.balances,
        .failed_ids = l->n.failed_ids,
        .pending_open = l->n.pending_open,
        .last_timestamp = l->last_timestamp,
    };
}

void ledger_capacity(const ledger_t *l, ledger_config_t *out) {
    *out = l->config;
}

bool ledger_test_set_balances(ledger_t *l, u128 id, u128 debits_pending, u128 debits_posted,
                              u128 credits_pending, u128 credits_posted) {
    uint32_t row = ledger_account_row(l, id);
    if (row == LINDEX_NONE) return false;
    ledger_account_t *a = &l->accounts[row];
    a->debits_pending = debits_pending;
    a->debits_posted = debits_posted;
    a->credits_pending = credits_pending;
    a->credits_posted = credits_posted;
    return true;
}

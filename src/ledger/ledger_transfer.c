/* create_transfers: validation in the order of docs/ledger.md, then the balance changes;
 * post / void of pending transfers; expiry of pending transfers by their timeout. */
#include "ledger/ledger_internal.h"

#include <string.h>

#define F_PENDING LEDGER_TRANSFER_PENDING
#define F_POST LEDGER_TRANSFER_POST_PENDING
#define F_VOID LEDGER_TRANSFER_VOID_PENDING
#define F_BAL_DR LEDGER_TRANSFER_BALANCING_DEBIT
#define F_BAL_CR LEDGER_TRANSFER_BALANCING_CREDIT
#define F_CLOSE_DR LEDGER_TRANSFER_CLOSING_DEBIT
#define F_CLOSE_CR LEDGER_TRANSFER_CLOSING_CREDIT
#define F_IMPORTED LEDGER_TRANSFER_IMPORTED

/* ---- Timestamps of objects, for the uniqueness rule of imported events. Both tables are
 * stored in timestamp order. ---- */

bool ledger_transfer_timestamp_exists(const ledger_t *l, uint64_t ts) {
    uint32_t i = ledger_rows_lower_bound(l->transfers, l->n.transfers, ts);
    return i < l->n.transfers && l->transfers[i].timestamp == ts;
}

bool ledger_account_timestamp_exists(const ledger_t *l, uint64_t ts) {
    uint32_t i = ledger_rows_lower_bound(l->accounts, l->n.accounts, ts);
    return i < l->n.accounts && l->accounts[i].timestamp == ts;
}

/* ---- Idempotency: a second event with an existing id ---- */

static uint32_t exists_user_data(const ledger_transfer_t *t, const ledger_transfer_t *e,
                                 const ledger_transfer_t *p) {
    /* For post / void, 0 means "inherited from the pending transfer". */
    u128 ud128 = (p && t->user_data_128 == 0) ? p->user_data_128 : t->user_data_128;
    uint64_t ud64 = (p && t->user_data_64 == 0) ? p->user_data_64 : t->user_data_64;
    uint32_t ud32 = (p && t->user_data_32 == 0) ? p->user_data_32 : t->user_data_32;
    if (ud128 != e->user_data_128) return LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_USER_DATA_128;
    if (ud64 != e->user_data_64) return LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_USER_DATA_64;
    if (ud32 != e->user_data_32) return LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_USER_DATA_32;
    return LEDGER_TRANSFER_EXISTS;
}

static uint32_t exists_post_void(const ledger_transfer_t *t, const ledger_transfer_t *e,
                                 const ledger_transfer_t *p) {
    if (t->debit_account_id != 0 && t->debit_account_id != e->debit_account_id)
        return LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID;
    if (t->credit_account_id != 0 && t->credit_account_id != e->credit_account_id)
        return LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID;
    u128 all = (t->flags & F_VOID) ? 0 : U128_MAX; /* the amount that means "all of it" */
    u128 amount = t->amount == all ? p->amount : t->amount;
    if (amount != e->amount) return LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_AMOUNT;
    uint32_t r = exists_user_data(t, e, p);
    if (r != LEDGER_TRANSFER_EXISTS) return r;
    if (t->ledger != 0 && t->ledger != e->ledger)
        return LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_LEDGER;
    if (t->code != 0 && t->code != e->code) return LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_CODE;
    return LEDGER_TRANSFER_EXISTS;
}

static uint32_t transfer_exists(const ledger_t *l, const ledger_transfer_t *t,
                                const ledger_transfer_t *e) {
    if (t->flags != e->flags) return LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_FLAGS;
    if (t->pending_id != e->pending_id) return LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_PENDING_ID;
    if (t->timeout != e->timeout) return LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_TIMEOUT;
    if (t->flags & (F_POST | F_VOID)) {
        uint32_t prow = ledger_transfer_row(l, t->pending_id);
        cp_assert(prow != LINDEX_NONE); /* e was created against it */
        return exists_post_void(t, e, &l->transfers[prow]);
    }
    if (t->debit_account_id != e->debit_account_id)
        return LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID;
    if (t->credit_account_id != e->credit_account_id)
        return LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID;
    /* A balancing transfer's amount is an upper bound: any bound at least what moved matches. */
    bool balancing = t->flags & (F_BAL_DR | F_BAL_CR);
    if (balancing ? t->amount < e->amount : t->amount != e->amount)
        return LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_AMOUNT;
    uint32_t r = exists_user_data(t, e, NULL);
    if (r != LEDGER_TRANSFER_EXISTS) return r;
    if (t->ledger != e->ledger) return LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_LEDGER;
    if (t->code != e->code) return LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_CODE;
    return LEDGER_TRANSFER_EXISTS;
}

/* ---- Applying: every change goes through these, which feed the undo log of a chain ---- */

static uint32_t balance_append(ledger_t *l, const ledger_account_t *a) {
    if (!(a->flags & LEDGER_ACCOUNT_HISTORY)) return LINDEX_NONE;
    cp_assert(l->n.balances < l->config.balances_max); /* reserved by the admission check */
    uint32_t row = l->n.balances++;
    l->balances[row] =
        (lbalance_t){a->debits_pending, a->debits_posted, a->credits_pending, a->credits_posted};
    return row;
}

/* Stores s (complete, with its timestamp) as a new transfer row and links it into both
 * accounts' lists; call after the balances changed, so history rows see the new balances. */
static uint32_t transfer_append(ledger_t *l, const ledger_transfer_t *s, uint64_t hash,
                                uint32_t dr_row, uint32_t cr_row, uint8_t status) {
    cp_assert(l->n.transfers < l->config.transfers_max); /* reserved by the admission check */
    cp_assert(s->timestamp > l->n.transfer_timestamp_max);
    uint32_t row = l->n.transfers++;
    l->transfers[row] = *s;
    ltmeta_t *m = &l->tmeta[row];
    ledger_undo_save(l, &l->ameta[dr_row], sizeof l->ameta[0]);
    ledger_undo_save(l, &l->ameta[cr_row], sizeof l->ameta[0]);
    m->prev_dr = l->ameta[dr_row];
    m->prev_cr = l->ameta[cr_row];
    l->ameta[dr_row] = row;
    l->ameta[cr_row] = row;
    m->balance_dr = balance_append(l, &l->accounts[dr_row]);
    m->balance_cr = balance_append(l, &l->accounts[cr_row]);
    m->status = status;
    lindex_insert(&l->transfers_ix, hash, row);
    l->n.transfer_timestamp_max = s->timestamp;
    return row;
}

static void expiry_schedule(ledger_t *l, uint32_t row) {
    if (l->chain_open) {
        /* Pushed when the chain commits, dropped when it rolls back. */
        cp_assert(l->n.chain_expiries < CP_BATCH_EVENTS_MAX);
        l->chain_expiry[l->n.chain_expiries++] = row;
    } else {
        ledger_expiry_push(l, row);
    }
}

/* ---- Ordinary transfers (single-phase and pending) ---- */

/* The amount a transfer really moves: the requested one, clamped by balancing flags. */
static u128 transfer_amount(const ledger_transfer_t *t, const ledger_account_t *dr,
                            const ledger_account_t *cr) {
    u128 amount = t->amount;
    if (t->flags & F_BAL_DR)
        amount = u128_min(amount,
                          u128_sub_sat(dr->credits_posted, dr->debits_posted + dr->debits_pending));
    if (t->flags & F_BAL_CR)
        amount = u128_min(
            amount, u128_sub_sat(cr->debits_posted, cr->credits_posted + cr->credits_pending));
    return amount;
}

static uint32_t check_amount(const ledger_transfer_t *t, uint64_t ts, u128 amount,
                             const ledger_account_t *dr, const ledger_account_t *cr) {
    u128 sum;
    if (t->flags & F_PENDING) {
        if (!u128_add_checked(amount, dr->debits_pending, &sum))
            return LEDGER_TRANSFER_OVERFLOWS_DEBITS_PENDING;
        if (!u128_add_checked(amount, cr->credits_pending, &sum))
            return LEDGER_TRANSFER_OVERFLOWS_CREDITS_PENDING;
    }
    if (!u128_add_checked(amount, dr->debits_posted, &sum))
        return LEDGER_TRANSFER_OVERFLOWS_DEBITS_POSTED;
    if (!u128_add_checked(amount, cr->credits_posted, &sum))
        return LEDGER_TRANSFER_OVERFLOWS_CREDITS_POSTED;
    /* pending + posted never overflows: every earlier transfer passed this same check. */
    u128 dr_total = dr->debits_pending + dr->debits_posted;
    u128 cr_total = cr->credits_pending + cr->credits_posted;
    if (!u128_add_checked(amount, dr_total, &dr_total)) return LEDGER_TRANSFER_OVERFLOWS_DEBITS;
    if (!u128_add_checked(amount, cr_total, &cr_total)) return LEDGER_TRANSFER_OVERFLOWS_CREDITS;
    if (ts + (uint64_t)t->timeout * 1000000000ull > CP_TIMESTAMP_MAX)
        return LEDGER_TRANSFER_OVERFLOWS_TIMEOUT;
    if ((dr->flags & LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) &&
        dr_total > dr->credits_posted)
        return LEDGER_TRANSFER_EXCEEDS_CREDITS;
    if ((cr->flags & LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS) && cr_total > cr->debits_posted)
        return LEDGER_TRANSFER_EXCEEDS_DEBITS;
    return LEDGER_TRANSFER_CREATED;
}

/* The imported-event checks of a transfer stamped ts; 0 when they pass. */
static uint32_t check_imported(const ledger_t *l, uint64_t ts) {
    if (ts <= l->n.transfer_timestamp_max || ledger_account_timestamp_exists(l, ts))
        return LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS;
    return 0;
}

static uint32_t check_fields(const ledger_transfer_t *t) {
    if (t->debit_account_id == 0) return LEDGER_TRANSFER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO;
    if (t->debit_account_id == U128_MAX)
        return LEDGER_TRANSFER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX;
    if (t->credit_account_id == 0) return LEDGER_TRANSFER_CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO;
    if (t->credit_account_id == U128_MAX)
        return LEDGER_TRANSFER_CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX;
    if (t->credit_account_id == t->debit_account_id)
        return LEDGER_TRANSFER_ACCOUNTS_MUST_BE_DIFFERENT;
    if (t->pending_id != 0) return LEDGER_TRANSFER_PENDING_ID_MUST_BE_ZERO;
    if (!(t->flags & F_PENDING)) {
        if (t->timeout != 0) return LEDGER_TRANSFER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER;
        if (t->flags & (F_CLOSE_DR | F_CLOSE_CR))
            return LEDGER_TRANSFER_CLOSING_TRANSFER_MUST_BE_PENDING;
    }
    if (t->ledger == 0) return LEDGER_TRANSFER_LEDGER_MUST_NOT_BE_ZERO;
    if (t->code == 0) return LEDGER_TRANSFER_CODE_MUST_NOT_BE_ZERO;
    return 0;
}

static uint32_t transfer_ordinary(ledger_t *l, uint64_t ts, const ledger_transfer_t *t,
                                  uint64_t hash) {
    uint32_t r = check_fields(t);
    if (r) return r;
    uint32_t dr_row = ledger_account_row(l, t->debit_account_id);
    if (dr_row == LINDEX_NONE) return LEDGER_TRANSFER_DEBIT_ACCOUNT_NOT_FOUND;
    uint32_t cr_row = ledger_account_row(l, t->credit_account_id);
    if (cr_row == LINDEX_NONE) return LEDGER_TRANSFER_CREDIT_ACCOUNT_NOT_FOUND;
    ledger_account_t *dr = &l->accounts[dr_row], *cr = &l->accounts[cr_row];
    if (dr->ledger != cr->ledger) return LEDGER_TRANSFER_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER;
    if (t->ledger != dr->ledger)
        return LEDGER_TRANSFER_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS;
    if (t->flags & F_IMPORTED) {
        if ((r = check_imported(l, ts))) return r;
        if (ts <= dr->timestamp)
            return LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT;
        if (ts <= cr->timestamp)
            return LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT;
        if (t->timeout != 0) return LEDGER_TRANSFER_IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO;
    }
    if (dr->flags & LEDGER_ACCOUNT_CLOSED) return LEDGER_TRANSFER_DEBIT_ACCOUNT_ALREADY_CLOSED;
    if (cr->flags & LEDGER_ACCOUNT_CLOSED) return LEDGER_TRANSFER_CREDIT_ACCOUNT_ALREADY_CLOSED;
    u128 amount = transfer_amount(t, dr, cr);
    if ((r = check_amount(t, ts, amount, dr, cr))) return r;

    ledger_undo_save(l, dr, sizeof *dr);
    ledger_undo_save(l, cr, sizeof *cr);
    bool pending = t->flags & F_PENDING;
    if (pending) {
        dr->debits_pending += amount;
        cr->credits_pending += amount;
        if (t->flags & F_CLOSE_DR) dr->flags |= LEDGER_ACCOUNT_CLOSED;
        if (t->flags & F_CLOSE_CR) cr->flags |= LEDGER_ACCOUNT_CLOSED;
        l->n.pending_open++;
    } else {
        dr->debits_posted += amount;
        cr->credits_posted += amount;
    }
    ledger_transfer_t s = *t;
    s.amount = amount;
    s.timestamp = ts;
    uint32_t row = transfer_append(l, &s, hash, dr_row, cr_row, pending ? LT_PENDING : LT_NONE);
    if (pending && t->timeout != 0) expiry_schedule(l, row);
    return LEDGER_TRANSFER_CREATED;
}

/* ---- Post and void ---- */

static uint32_t check_post_void_fields(const ledger_transfer_t *t) {
    if ((t->flags & F_POST) && (t->flags & F_VOID))
        return LEDGER_TRANSFER_FLAGS_ARE_MUTUALLY_EXCLUSIVE;
    if (t->flags & (F_PENDING | F_BAL_DR | F_BAL_CR | F_CLOSE_DR | F_CLOSE_CR))
        return LEDGER_TRANSFER_FLAGS_ARE_MUTUALLY_EXCLUSIVE;
    if (t->pending_id == 0) return LEDGER_TRANSFER_PENDING_ID_MUST_NOT_BE_ZERO;
    if (t->pending_id == U128_MAX) return LEDGER_TRANSFER_PENDING_ID_MUST_NOT_BE_INT_MAX;
    if (t->pending_id == t->id) return LEDGER_TRANSFER_PENDING_ID_MUST_BE_DIFFERENT;
    if (t->timeout != 0) return LEDGER_TRANSFER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER;
    return 0;
}

static uint32_t check_against_pending(const ledger_transfer_t *t, const ledger_transfer_t *p,
                                      u128 *amount) {
    if (!(p->flags & F_PENDING)) return LEDGER_TRANSFER_PENDING_TRANSFER_NOT_PENDING;
    if (t->debit_account_id != 0 && t->debit_account_id != p->debit_account_id)
        return LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID;
    if (t->credit_account_id != 0 && t->credit_account_id != p->credit_account_id)
        return LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID;
    if (t->ledger != 0 && t->ledger != p->ledger)
        return LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_LEDGER;
    if (t->code != 0 && t->code != p->code)
        return LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_CODE;
    bool is_void = t->flags & F_VOID;
    u128 all = is_void ? 0 : U128_MAX; /* the amount that means "all of it" */
    *amount = t->amount == all ? p->amount : t->amount;
    if (*amount > p->amount) return LEDGER_TRANSFER_EXCEEDS_PENDING_TRANSFER_AMOUNT;
    if (is_void && *amount < p->amount)
        return LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT;
    return 0;
}

static uint32_t check_pending_status(const ledger_t *l, uint32_t prow, uint64_t ts) {
    const ledger_transfer_t *p = &l->transfers[prow];
    switch (l->tmeta[prow].status) {
    case LT_PENDING: break;
    case LT_POSTED: return LEDGER_TRANSFER_PENDING_TRANSFER_ALREADY_POSTED;
    case LT_VOIDED: return LEDGER_TRANSFER_PENDING_TRANSFER_ALREADY_VOIDED;
    case LT_EXPIRED: return LEDGER_TRANSFER_PENDING_TRANSFER_EXPIRED;
    default: cp_assert(!"a pending transfer has a pending status");
    }
    /* Expired at its expiry time, whether or not ledger_expire() has run yet. */
    if (p->timeout != 0 && ledger_expires_at(p) <= ts)
        return LEDGER_TRANSFER_PENDING_TRANSFER_EXPIRED;
    return 0;
}

/* Releases the pending amount of p on both accounts; reopens what p closed when it is voided
 * or expires (a posted closing transfer keeps its accounts closed). */
static void pending_release(ledger_t *l, uint32_t prow, uint8_t status, u128 posted,
                            ledger_account_t *dr, ledger_account_t *cr) {
    const ledger_transfer_t *p = &l->transfers[prow];
    ledger_undo_save(l, dr, sizeof *dr);
    ledger_undo_save(l, cr, sizeof *cr);
    ledger_undo_save(l, &l->tmeta[prow], sizeof l->tmeta[prow]);
    cp_assert(dr->debits_pending >= p->amount && cr->credits_pending >= p->amount);
    dr->debits_pending -= p->amount;
    cr->credits_pending -= p->amount;
    dr->debits_posted += posted;
    cr->credits_posted += posted;
    if (status != LT_POSTED) {
        if (p->flags & F_CLOSE_DR) dr->flags &= (uint16_t)~LEDGER_ACCOUNT_CLOSED;
        if (p->flags & F_CLOSE_CR) cr->flags &= (uint16_t)~LEDGER_ACCOUNT_CLOSED;
    }
    l->tmeta[prow].status = status;
    cp_assert(l->n.pending_open > 0);
    l->n.pending_open--;
}

static uint32_t transfer_post_void(ledger_t *l, uint64_t ts, const ledger_transfer_t *t,
                                   uint64_t hash) {
    uint32_t r = check_post_void_fields(t);
    if (r) return r;
    uint32_t prow = ledger_transfer_row(l, t->pending_id);
    if (prow == LINDEX_NONE) return LEDGER_TRANSFER_PENDING_TRANSFER_NOT_FOUND;
    const ledger_transfer_t *p = &l->transfers[prow];
    u128 amount;
    if ((r = check_against_pending(t, p, &amount))) return r;
    if ((r = check_pending_status(l, prow, ts))) return r;
    if ((t->flags & F_IMPORTED) && (r = check_imported(l, ts))) return r;
    uint32_t dr_row = ledger_account_row(l, p->debit_account_id);
    uint32_t cr_row = ledger_account_row(l, p->credit_account_id);
    cp_assert(dr_row != LINDEX_NONE && cr_row != LINDEX_NONE);
    ledger_account_t *dr = &l->accounts[dr_row], *cr = &l->accounts[cr_row];
    bool is_void = t->flags & F_VOID;
    /* The only movement a closed account allows is a void. */
    if (!is_void && (dr->flags & LEDGER_ACCOUNT_CLOSED))
        return LEDGER_TRANSFER_DEBIT_ACCOUNT_ALREADY_CLOSED;
    if (!is_void && (cr->flags & LEDGER_ACCOUNT_CLOSED))
        return LEDGER_TRANSFER_CREDIT_ACCOUNT_ALREADY_CLOSED;

    pending_release(l, prow, is_void ? LT_VOIDED : LT_POSTED, is_void ? 0 : amount, dr, cr);
    ledger_transfer_t s = {
        .id = t->id,
        .debit_account_id = p->debit_account_id,
        .credit_account_id = p->credit_account_id,
        .amount = amount,
        .pending_id = t->pending_id,
        .user_data_128 = t->user_data_128 ? t->user_data_128 : p->user_data_128,
        .user_data_64 = t->user_data_64 ? t->user_data_64 : p->user_data_64,
        .user_data_32 = t->user_data_32 ? t->user_data_32 : p->user_data_32,
        .timeout = 0,
        .ledger = p->ledger,
        .code = p->code,
        .flags = t->flags,
        .timestamp = ts,
    };
    transfer_append(l, &s, hash, dr_row, cr_row, LT_NONE);
    return LEDGER_TRANSFER_CREATED;
}

/* ---- Prefetching: the batch loop calls these for events ahead of the one it applies, so
 * that the random reads of index slots and then account rows overlap instead of queueing.
 * Pure hints: they change nothing. ---- */

void ledger_transfer_prefetch_slots(const ledger_t *l, const ledger_transfer_t *t) {
    lindex_prefetch(&l->transfers_ix, lindex_hash(t->id));
    lindex_prefetch(&l->accounts_ix, lindex_hash(t->debit_account_id));
    lindex_prefetch(&l->accounts_ix, lindex_hash(t->credit_account_id));
}

void ledger_transfer_prefetch_rows(const ledger_t *l, const ledger_transfer_t *t) {
    lindex_prefetch_row(&l->accounts_ix, lindex_hash(t->debit_account_id),
                        sizeof(ledger_account_t));
    lindex_prefetch_row(&l->accounts_ix, lindex_hash(t->credit_account_id),
                        sizeof(ledger_account_t));
}

/* ---- One transfer event ---- */

uint32_t ledger_transfer_create(ledger_t *l, uint64_t timestamp, const void *event,
                                uint64_t *ts_out) {
    const ledger_transfer_t *t = event;
    if (t->flags & ~LEDGER_TRANSFER_FLAGS_VALID) return LEDGER_TRANSFER_RESERVED_FLAG;
    if (t->id == 0) return LEDGER_TRANSFER_ID_MUST_NOT_BE_ZERO;
    if (t->id == U128_MAX) return LEDGER_TRANSFER_ID_MUST_NOT_BE_INT_MAX;
    uint64_t hash = lindex_hash(t->id);
    uint32_t row = lindex_find(&l->transfers_ix, t->id, hash);
    if (row != LINDEX_NONE) {
        uint32_t r = transfer_exists(l, t, &l->transfers[row]);
        /* Only a true `exists` answers with the original; a mismatch is a failure. */
        if (r == LEDGER_TRANSFER_EXISTS) *ts_out = l->transfers[row].timestamp;
        return r;
    }
    if (l->n.failed_ids != 0 && lindex_find(&l->failed_ix, t->id, hash) != LINDEX_NONE)
        return LEDGER_TRANSFER_ID_ALREADY_FAILED;
    uint64_t ts = (t->flags & F_IMPORTED) ? t->timestamp : timestamp;
    uint32_t r = (t->flags & (F_POST | F_VOID)) ? transfer_post_void(l, ts, t, hash)
                                                : transfer_ordinary(l, ts, t, hash);
    if (r == LEDGER_TRANSFER_CREATED) *ts_out = ts;
    return r;
}

/* ---- Expiry: a binary min-heap by (expires_at, creation timestamp) ---- */

static bool expiry_less(const lexpiry_t *a, const lexpiry_t *b) {
    return a->expires_at != b->expires_at ? a->expires_at < b->expires_at
                                          : a->timestamp < b->timestamp;
}

void ledger_expiry_push(ledger_t *l, uint32_t row) {
    const ledger_transfer_t *p = &l->transfers[row];
    cp_assert(l->expiry_count < l->config.transfers_max);
    lexpiry_t x = {ledger_expires_at(p), p->timestamp, row, 0};
    uint32_t i = l->expiry_count++;
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!expiry_less(&x, &l->expiry[parent])) break;
        l->expiry[i] = l->expiry[parent];
        i = parent;
    }
    l->expiry[i] = x;
}

static void expiry_pop(ledger_t *l) {
    cp_assert(l->expiry_count > 0);
    lexpiry_t x = l->expiry[--l->expiry_count];
    uint32_t n = l->expiry_count, i = 0;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && expiry_less(&l->expiry[c + 1], &l->expiry[c])) c++;
        if (!expiry_less(&l->expiry[c], &x)) break;
        l->expiry[i] = l->expiry[c];
        i = c;
    }
    if (n > 0) l->expiry[i] = x;
}

/* Drops heap entries whose transfer was posted or voided meanwhile. */
static void expiry_drop_stale(ledger_t *l) {
    while (l->expiry_count > 0 && l->tmeta[l->expiry[0].transfer].status != LT_PENDING)
        expiry_pop(l);
}

uint64_t ledger_next_expiry(ledger_t *l) {
    expiry_drop_stale(l);
    return l->expiry_count > 0 ? l->expiry[0].expires_at : 0;
}

uint32_t ledger_expire(ledger_t *l, uint64_t now) {
    cp_assert(!l->chain_open);
    uint32_t expired = 0;
    for (;;) {
        expiry_drop_stale(l);
        if (l->expiry_count == 0 || l->expiry[0].expires_at > now) break;
        uint32_t prow = l->expiry[0].transfer;
        expiry_pop(l);
        const ledger_transfer_t *p = &l->transfers[prow];
        ledger_account_t *dr = &l->accounts[ledger_account_row(l, p->debit_account_id)];
        ledger_account_t *cr = &l->accounts[ledger_account_row(l, p->credit_account_id)];
        pending_release(l, prow, LT_EXPIRED, 0, dr, cr);
        expired++;
    }
    if (now > l->last_timestamp) l->last_timestamp = now;
    return expired;
}

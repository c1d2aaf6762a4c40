/* Lookups, the account filters (transfers and balance history of one account) and the query
 * filters over whole tables; and the invariant check. Read-only. */
#include "ledger/ledger_internal.h"

#include <stdlib.h>
#include <string.h>

uint32_t ledger_lookup_accounts(const ledger_t *l, const u128 *ids, uint32_t count,
                                ledger_account_t *out) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t row = ledger_account_row(l, ids[i]);
        if (row != LINDEX_NONE) out[n++] = l->accounts[row];
    }
    return n;
}

uint32_t ledger_lookup_transfers(const ledger_t *l, const u128 *ids, uint32_t count,
                                 ledger_transfer_t *out) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t row = ledger_transfer_row(l, ids[i]);
        if (row != LINDEX_NONE) out[n++] = l->transfers[row];
    }
    return n;
}

/* ---- Filters ---- */

typedef struct range {
    uint64_t min, max; /* inclusive */
    uint32_t limit;
    bool reversed;
} range_t;

/* The shared rules: timestamps in [1, 2^63-1] or 0 (open), min <= max when max is set,
 * limit > 0 (clamped to CP_QUERY_LIMIT_MAX). */
static bool range_parse(uint64_t tmin, uint64_t tmax, uint32_t limit, uint16_t flags, range_t *r) {
    if (tmin > CP_TIMESTAMP_MAX || tmax > CP_TIMESTAMP_MAX) return false;
    if (tmax != 0 && tmin > tmax) return false;
    if (limit == 0) return false;
    r->min = tmin ? tmin : 1;
    r->max = tmax ? tmax : CP_TIMESTAMP_MAX;
    r->limit = limit < CP_QUERY_LIMIT_MAX ? limit : CP_QUERY_LIMIT_MAX;
    r->reversed = flags & LEDGER_FILTER_REVERSED;
    return true;
}

static bool account_filter_valid(const ledger_account_filter_t *f, range_t *r) {
    static const uint8_t zero[sizeof f->reserved];
    if (f->reserved_1 != 0 || memcmp(f->reserved, zero, sizeof zero) != 0) return false;
    if (f->account_id == 0 || f->account_id == U128_MAX) return false;
    if (f->flags & ~(LEDGER_FILTER_DEBITS | LEDGER_FILTER_CREDITS | LEDGER_FILTER_REVERSED))
        return false;
    if (!(f->flags & (LEDGER_FILTER_DEBITS | LEDGER_FILTER_CREDITS))) return false;
    return range_parse(f->timestamp_min, f->timestamp_max, f->limit, f->flags, r);
}

static bool user_data_match(u128 f128, uint64_t f64, uint32_t f32, u128 v128, uint64_t v64,
                            uint32_t v32) {
    return (f128 == 0 || f128 == v128) && (f64 == 0 || f64 == v64) && (f32 == 0 || f32 == v32);
}

static bool account_filter_match(const ledger_account_filter_t *f, const ledger_transfer_t *t) {
    bool side = ((f->flags & LEDGER_FILTER_DEBITS) && t->debit_account_id == f->account_id) ||
                ((f->flags & LEDGER_FILTER_CREDITS) && t->credit_account_id == f->account_id);
    return side &&
           user_data_match(f->user_data_128, f->user_data_64, f->user_data_32, t->user_data_128,
                           t->user_data_64, t->user_data_32) &&
           (f->code == 0 || f->code == t->code);
}

/* Walks the account's transfers (its list runs newest first) and collects the rows that match
 * the filter, in the requested order, into rows[]; returns how many. For ascending order the
 * oldest `limit` matches are wanted, which are the last ones the walk meets: a ring keeps them. */
static uint32_t account_transfer_rows(const ledger_t *l, const ledger_account_filter_t *f,
                                      const range_t *r, uint32_t rows[CP_QUERY_LIMIT_MAX]) {
    uint32_t arow = ledger_account_row(l, f->account_id);
    if (arow == LINDEX_NONE) return 0;
    uint64_t seen = 0;
    for (uint32_t t = l->ameta[arow]; t != LINDEX_NONE;) {
        const ledger_transfer_t *x = &l->transfers[t];
        uint32_t next =
            x->debit_account_id == f->account_id ? l->tmeta[t].prev_dr : l->tmeta[t].prev_cr;
        if (x->timestamp < r->min) break;
        if (x->timestamp <= r->max && account_filter_match(f, x)) {
            rows[seen % r->limit] = t;
            seen++;
            if (r->reversed && seen == r->limit) break;
        }
        t = next;
    }
    uint32_t n = seen < r->limit ? (uint32_t)seen : r->limit;
    if (!r->reversed) {
        /* rows[] holds the last n matches met, in ring order; put them oldest first. */
        uint32_t tmp[CP_QUERY_LIMIT_MAX];
        for (uint32_t i = 0; i < n; i++) tmp[i] = rows[(seen - 1 - i) % r->limit];
        memcpy(rows, tmp, n * sizeof rows[0]);
    }
    return n;
}

uint32_t ledger_get_account_transfers(const ledger_t *l, const ledger_account_filter_t *f,
                                      ledger_transfer_t *out) {
    range_t r;
    if (!account_filter_valid(f, &r)) return 0;
    uint32_t rows[CP_QUERY_LIMIT_MAX];
    uint32_t n = account_transfer_rows(l, f, &r, rows);
    for (uint32_t i = 0; i < n; i++) out[i] = l->transfers[rows[i]];
    return n;
}

uint32_t ledger_get_account_balances(const ledger_t *l, const ledger_account_filter_t *f,
                                     ledger_balance_t *out) {
    range_t r;
    if (!account_filter_valid(f, &r)) return 0;
    uint32_t arow = ledger_account_row(l, f->account_id);
    if (arow == LINDEX_NONE || !(l->accounts[arow].flags & LEDGER_ACCOUNT_HISTORY)) return 0;
    uint32_t rows[CP_QUERY_LIMIT_MAX];
    uint32_t n = account_transfer_rows(l, f, &r, rows);
    for (uint32_t i = 0; i < n; i++) {
        const ledger_transfer_t *t = &l->transfers[rows[i]];
        const ltmeta_t *m = &l->tmeta[rows[i]];
        uint32_t b = t->debit_account_id == f->account_id ? m->balance_dr : m->balance_cr;
        cp_assert(b != LINDEX_NONE);
        const lbalance_t *x = &l->balances[b];
        out[i] = (ledger_balance_t){
            .debits_pending = x->debits_pending,
            .debits_posted = x->debits_posted,
            .credits_pending = x->credits_pending,
            .credits_posted = x->credits_posted,
            .timestamp = t->timestamp,
        };
    }
    return n;
}

/* ---- Query filters: a scan of the timestamp range of a table kept in timestamp order ---- */

static bool query_filter_valid(const ledger_query_filter_t *f, range_t *r) {
    if (f->reserved_1 != 0 || f->reserved_2 != 0) return false;
    if (f->flags & ~LEDGER_FILTER_REVERSED) return false;
    return range_parse(f->timestamp_min, f->timestamp_max, f->limit, f->flags, r);
}

/* Both 128-byte kinds keep user_data and code at the same offsets, and ledger too. */
CP_STATIC_ASSERT(
    offsetof(ledger_account_t, user_data_128) == offsetof(ledger_transfer_t, user_data_128) &&
        offsetof(ledger_account_t, user_data_64) == offsetof(ledger_transfer_t, user_data_64) &&
        offsetof(ledger_account_t, user_data_32) == offsetof(ledger_transfer_t, user_data_32) &&
        offsetof(ledger_account_t, ledger) == offsetof(ledger_transfer_t, ledger) &&
        offsetof(ledger_account_t, code) == offsetof(ledger_transfer_t, code) &&
        offsetof(ledger_account_t, timestamp) == offsetof(ledger_transfer_t, timestamp),
    "query fields share offsets");

static uint32_t query_table(const void *table, uint32_t count, const ledger_query_filter_t *f,
                            void *out) {
    range_t r;
    if (!query_filter_valid(f, &r)) return 0;
    const ledger_transfer_t *rows = table; /* the shared layout (asserted above) */
    uint32_t lo = ledger_rows_lower_bound(table, count, r.min);
    uint32_t hi = ledger_rows_lower_bound(table, count, r.max + 1); /* max <= 2^63-1 */
    uint32_t n = 0;
    for (uint32_t k = 0; k < hi - lo && n < r.limit; k++) {
        const ledger_transfer_t *x = &rows[r.reversed ? hi - 1 - k : lo + k];
        if (!user_data_match(f->user_data_128, f->user_data_64, f->user_data_32, x->user_data_128,
                             x->user_data_64, x->user_data_32))
            continue;
        if ((f->ledger && f->ledger != x->ledger) || (f->code && f->code != x->code)) continue;
        memcpy((unsigned char *)out + (size_t)n * sizeof rows[0], x, sizeof rows[0]);
        n++;
    }
    return n;
}

uint32_t ledger_query_accounts(const ledger_t *l, const ledger_query_filter_t *f,
                               ledger_account_t *out) {
    return query_table(l->accounts, l->n.accounts, f, out);
}

uint32_t ledger_query_transfers(const ledger_t *l, const ledger_query_filter_t *f,
                                ledger_transfer_t *out) {
    return query_table(l->transfers, l->n.transfers, f, out);
}

/* ---- Invariants ---- */

typedef struct ledger_sums {
    uint32_t ledger;
    u128 debits_pending, debits_posted, credits_pending, credits_posted;
} ledger_sums_t;

static int sums_cmp(const void *a, const void *b) {
    uint32_t x = ((const ledger_sums_t *)a)->ledger, y = ((const ledger_sums_t *)b)->ledger;
    return (x > y) - (x < y);
}

/* Per ledger value: the sum of debits equals the sum of credits, posted and pending. */
static const char *ledger_check_sums(const ledger_t *l) {
    uint32_t na = l->n.accounts;
    ledger_sums_t *s = calloc(na ? na : 1, sizeof *s);
    cp_assert(s != NULL);
    for (uint32_t i = 0; i < na; i++) {
        const ledger_account_t *a = &l->accounts[i];
        s[i] = (ledger_sums_t){a->ledger, a->debits_pending, a->debits_posted, a->credits_pending,
                               a->credits_posted};
    }
    qsort(s, na, sizeof *s, sums_cmp);
    const char *err = NULL;
    for (uint32_t i = 0; i < na && !err;) {
        ledger_sums_t sum = {0};
        uint32_t j = i;
        for (; j < na && s[j].ledger == s[i].ledger; j++) {
            sum.debits_pending += s[j].debits_pending;
            sum.debits_posted += s[j].debits_posted;
            sum.credits_pending += s[j].credits_pending;
            sum.credits_posted += s[j].credits_posted;
        }
        if (sum.debits_posted != sum.credits_posted)
            err = "a ledger's posted debits and credits differ";
        else if (sum.debits_pending != sum.credits_pending)
            err = "a ledger's pending debits and credits differ";
        i = j;
    }
    free(s);
    return err;
}

/* Recomputes every account's four balances from the transfers alone and compares; sums per
 * ledger value then balance by construction, and are checked too (modulo 2^128, which still
 * catches any one-sided change). */
const char *ledger_check_invariants(const ledger_t *l) {
    uint32_t na = l->n.accounts;
    u128(*b)[4] = calloc(na ? na : 1, sizeof *b);
    cp_assert(b != NULL);
    const char *err = NULL;
    uint32_t pending_open = 0;
    for (uint32_t i = 0; i < l->n.transfers && !err; i++) {
        const ledger_transfer_t *t = &l->transfers[i];
        if (ledger_transfer_row(l, t->id) != i)
            err = "transfer index does not find a transfer";
        else if (i > 0 && t->timestamp <= l->transfers[i - 1].timestamp)
            err = "transfers are not in timestamp order";
        uint32_t dr = ledger_account_row(l, t->debit_account_id);
        uint32_t cr = ledger_account_row(l, t->credit_account_id);
        if (!err && (dr == LINDEX_NONE || cr == LINDEX_NONE))
            err = "transfer names a missing account";
        if (err) break;
        if (t->flags & LEDGER_TRANSFER_PENDING) {
            if (l->tmeta[i].status == LT_PENDING) {
                b[dr][0] += t->amount;
                b[cr][2] += t->amount;
                pending_open++;
            }
        } else if (!(t->flags & LEDGER_TRANSFER_VOID_PENDING)) {
            b[dr][1] += t->amount;
            b[cr][3] += t->amount;
        }
    }
    if (!err && pending_open != l->n.pending_open) err = "open pending count is off";
    for (uint32_t i = 0; i < na && !err; i++) {
        const ledger_account_t *a = &l->accounts[i];
        if (ledger_account_row(l, a->id) != i)
            err = "account index does not find an account";
        else if (a->debits_pending != b[i][0] || a->debits_posted != b[i][1] ||
                 a->credits_pending != b[i][2] || a->credits_posted != b[i][3])
            err = "account balances differ from the sum of its transfers";
        else if ((a->flags & LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) &&
                 a->debits_pending + a->debits_posted > a->credits_posted)
            err = "an account's debits exceed its credits";
        else if ((a->flags & LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS) &&
                 a->credits_pending + a->credits_posted > a->debits_posted)
            err = "an account's credits exceed its debits";
    }
    free(b);
    return err ? err : ledger_check_sums(l);
}

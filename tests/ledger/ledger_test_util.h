/* Shared helpers of the ledger unit tests: a ledger with its own batch clock, constructors of
 * accounts and transfers, one-event batches, and assertions that print result names and
 * 128-bit values. Everything is static inline: each test file is its own executable. */
#ifndef CP_LEDGER_TEST_UTIL_H
#define CP_LEDGER_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/constants.h"
#include "base/u128.h"
#include "ledger/ledger.h"

#define TL_NS_PER_S 1000000000ull
#define TL_TS_MAX ((uint64_t)INT64_MAX) /* 2^63-1 */

/* A ledger and the timestamp of its last batch. Event i of a batch of n gets clock + 1 + i;
 * the batch takes timestamp clock + n. */
typedef struct tl {
    ledger_t *l;
    uint64_t clock;
    bool balances_forced; /* ledger_test_set_balances was used: invariants are off */
} tl_t;

static inline tl_t *tl_new_cfg(uint32_t accounts_max, uint32_t transfers_max) {
    tl_t *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    ledger_config_t c = {.accounts_max = accounts_max, .transfers_max = transfers_max};
    t->l = ledger_create(&c);
    if (!t->l) {
        free(t);
        return NULL;
    }
    t->clock = 1000;
    return t;
}

static inline tl_t *tl_new(void) {
    return tl_new_cfg(1024, 4096);
}

static inline void tl_free(tl_t *t) {
    if (!t) return;
    ledger_destroy(t->l);
    free(t);
}

static inline int tl_setup(void **state) {
    *state = tl_new();
    return *state ? 0 : -1;
}

/* Every scenario ends with the invariants checked (unless balances were forced). */
static inline int tl_teardown(void **state) {
    tl_t *t = *state;
    int rc = 0;
    if (t && !t->balances_forced) {
        const char *e = ledger_check_invariants(t->l);
        if (e) {
            print_error("ledger invariant broken at the end of the test: %s\n", e);
            rc = -1;
        }
    }
    tl_free(t);
    return rc;
}

/* ---- Printing ---- */

static inline const char *tl_tr_name(uint32_t r) {
    const char *s = ledger_transfer_result_str(r);
    return s ? s : "<out of range>";
}

static inline const char *tl_ar_name(uint32_t r) {
    const char *s = ledger_account_result_str(r);
    return s ? s : "<out of range>";
}

/* Decimal text of v in a rotating set of static buffers (several per message). */
static inline const char *tl_u128_str(u128 v) {
    static char bufs[8][U128_DEC_MAX + 1];
    static unsigned next;
    char *b = bufs[next++ % 8];
    u128_format(v, b);
    return b;
}

#define assert_tr(got, want)                                                                       \
    do {                                                                                           \
        uint32_t tl_g_ = (got), tl_w_ = (want);                                                    \
        if (tl_g_ != tl_w_)                                                                        \
            fail_msg("transfer result %s (%u), expected %s (%u)", tl_tr_name(tl_g_), tl_g_,        \
                     tl_tr_name(tl_w_), tl_w_);                                                    \
    } while (0)

#define assert_ar(got, want)                                                                       \
    do {                                                                                           \
        uint32_t tl_g_ = (got), tl_w_ = (want);                                                    \
        if (tl_g_ != tl_w_)                                                                        \
            fail_msg("account result %s (%u), expected %s (%u)", tl_ar_name(tl_g_), tl_g_,         \
                     tl_ar_name(tl_w_), tl_w_);                                                    \
    } while (0)

#define assert_u128(got, want)                                                                     \
    do {                                                                                           \
        u128 tl_g_ = (got), tl_w_ = (want);                                                        \
        if (tl_g_ != tl_w_)                                                                        \
            fail_msg("%s == %s, expected %s", #got, tl_u128_str(tl_g_), tl_u128_str(tl_w_));       \
    } while (0)

#define assert_status(got, want)                                                                   \
    do {                                                                                           \
        ledger_status_t tl_g_ = (got), tl_w_ = (want);                                             \
        if (tl_g_ != tl_w_)                                                                        \
            fail_msg("status '%s' (%d), expected '%s' (%d)", ledger_status_str(tl_g_), (int)tl_g_, \
                     ledger_status_str(tl_w_), (int)tl_w_);                                        \
    } while (0)

/* Asserts the ledger's invariants hold. */
#define tl_check(t)                                                                                \
    do {                                                                                           \
        const char *tl_e_ = ledger_check_invariants((t)->l);                                       \
        if (tl_e_) fail_msg("ledger invariant broken: %s", tl_e_);                                 \
    } while (0)

/* ---- Clock ---- */

/* Moves the clock forward to ts (the next batch starts after it). */
static inline void tl_set_clock(tl_t *t, uint64_t ts) {
    assert_true(ts >= t->clock);
    t->clock = ts;
}

static inline void tl_advance(tl_t *t, uint64_t ns) {
    t->clock += ns;
}

/* Runs ledger_expire(now) and moves the clock to now (if later). */
static inline uint32_t tl_expire(tl_t *t, uint64_t now) {
    uint32_t n = ledger_expire(t->l, now);
    if (now > t->clock) t->clock = now;
    return n;
}

/* ---- Constructors ---- */

static inline ledger_account_t tl_acct(u128 id, uint32_t ledger, uint16_t code, uint16_t flags) {
    return (ledger_account_t){.id = id, .ledger = ledger, .code = code, .flags = flags};
}

/* A transfer on ledger 1 with code 1. */
static inline ledger_transfer_t tl_tr(u128 id, u128 dr, u128 cr, u128 amount, uint16_t flags) {
    return (ledger_transfer_t){.id = id,
                               .debit_account_id = dr,
                               .credit_account_id = cr,
                               .amount = amount,
                               .ledger = 1,
                               .code = 1,
                               .flags = flags};
}

static inline ledger_transfer_t tl_pending(u128 id, u128 dr, u128 cr, u128 amount,
                                           uint32_t timeout) {
    ledger_transfer_t x = tl_tr(id, dr, cr, amount, LEDGER_TRANSFER_PENDING);
    x.timeout = timeout;
    return x;
}

/* Post / void with every optional field 0 ("same as the pending transfer"). */
static inline ledger_transfer_t tl_post(u128 id, u128 pending_id, u128 amount) {
    return (ledger_transfer_t){.id = id,
                               .pending_id = pending_id,
                               .amount = amount,
                               .flags = LEDGER_TRANSFER_POST_PENDING};
}

static inline ledger_transfer_t tl_void(u128 id, u128 pending_id, u128 amount) {
    return (ledger_transfer_t){.id = id,
                               .pending_id = pending_id,
                               .amount = amount,
                               .flags = LEDGER_TRANSFER_VOID_PENDING};
}

/* ---- Batches ---- */

/* Applies a batch at the next timestamps; asserts LEDGER_OK. Returns the batch timestamp. */
static inline uint64_t tl_accounts(tl_t *t, const ledger_account_t *ev, uint32_t n,
                                   ledger_result_t *res) {
    uint64_t ts = t->clock + (n ? n : 1);
    assert_status(ledger_create_accounts(t->l, ts, ev, n, res), LEDGER_OK);
    t->clock = ts;
    return ts;
}

static inline uint64_t tl_transfers(tl_t *t, const ledger_transfer_t *ev, uint32_t n,
                                    ledger_result_t *res) {
    uint64_t ts = t->clock + (n ? n : 1);
    assert_status(ledger_create_transfers(t->l, ts, ev, n, res), LEDGER_OK);
    t->clock = ts;
    return ts;
}

/* One account in its own batch; returns the result code, *ts_out the result timestamp. */
static inline uint32_t tl_account1_ts(tl_t *t, ledger_account_t a, uint64_t *ts_out) {
    ledger_result_t r = {0};
    tl_accounts(t, &a, 1, &r);
    if (ts_out) *ts_out = r.timestamp;
    return r.result;
}

static inline uint32_t tl_account1(tl_t *t, ledger_account_t a) {
    return tl_account1_ts(t, a, NULL);
}

/* Creates an account (asserting `created`); returns its timestamp. */
static inline uint64_t tl_create_account(tl_t *t, u128 id, uint32_t ledger, uint16_t code,
                                         uint16_t flags) {
    uint64_t ts = 0;
    assert_ar(tl_account1_ts(t, tl_acct(id, ledger, code, flags), &ts), LEDGER_ACCOUNT_CREATED);
    assert_int_equal(ts, t->clock);
    return ts;
}

/* Creates accounts first..last on ledger 1, code 1, with flags. */
static inline void tl_create_accounts_range(tl_t *t, u128 first, u128 last, uint16_t flags) {
    for (u128 id = first; id <= last; id++) tl_create_account(t, id, 1, 1, flags);
}

static inline uint32_t tl_transfer1_ts(tl_t *t, ledger_transfer_t x, uint64_t *ts_out) {
    ledger_result_t r = {0};
    tl_transfers(t, &x, 1, &r);
    if (ts_out) *ts_out = r.timestamp;
    return r.result;
}

/* One transfer in its own batch; returns the result code. */
static inline uint32_t tl_transfer1(tl_t *t, ledger_transfer_t x) {
    return tl_transfer1_ts(t, x, NULL);
}

/* One transfer that must be created; returns its timestamp. */
static inline uint64_t tl_ok(tl_t *t, ledger_transfer_t x) {
    uint64_t ts = 0;
    assert_tr(tl_transfer1_ts(t, x, &ts), LEDGER_TRANSFER_CREATED);
    assert_int_equal(ts, t->clock);
    return ts;
}

/* Asserts results[i].result == want[i] for a transfer batch. */
static inline void tl_assert_tr_results(const ledger_result_t *res, const uint32_t *want,
                                        uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        if (res[i].result != want[i])
            fail_msg("event %u: transfer result %s (%u), expected %s (%u)", i,
                     tl_tr_name(res[i].result), res[i].result, tl_tr_name(want[i]), want[i]);
    }
}

static inline void tl_assert_ar_results(const ledger_result_t *res, const uint32_t *want,
                                        uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        if (res[i].result != want[i])
            fail_msg("event %u: account result %s (%u), expected %s (%u)", i,
                     tl_ar_name(res[i].result), res[i].result, tl_ar_name(want[i]), want[i]);
    }
}

/* ---- Lookups ---- */

static inline bool tl_find_account(tl_t *t, u128 id, ledger_account_t *out) {
    ledger_account_t tmp;
    uint32_t n = ledger_lookup_accounts(t->l, &id, 1, &tmp);
    if (n && out) *out = tmp;
    return n == 1;
}

static inline ledger_account_t tl_account(tl_t *t, u128 id) {
    ledger_account_t a;
    if (!tl_find_account(t, id, &a)) fail_msg("account %s not found", tl_u128_str(id));
    return a;
}

static inline bool tl_find_transfer(tl_t *t, u128 id, ledger_transfer_t *out) {
    ledger_transfer_t tmp;
    uint32_t n = ledger_lookup_transfers(t->l, &id, 1, &tmp);
    if (n && out) *out = tmp;
    return n == 1;
}

static inline ledger_transfer_t tl_transfer(tl_t *t, u128 id) {
    ledger_transfer_t x;
    if (!tl_find_transfer(t, id, &x)) fail_msg("transfer %s not found", tl_u128_str(id));
    return x;
}

/* Asserts an account's four balances. */
#define tl_assert_balances(t, id, dp, dpo, cp, cpo)                                                \
    do {                                                                                           \
        ledger_account_t tl_a_ = tl_account((t), (id));                                            \
        assert_u128(tl_a_.debits_pending, (dp));                                                   \
        assert_u128(tl_a_.debits_posted, (dpo));                                                   \
        assert_u128(tl_a_.credits_pending, (cp));                                                  \
        assert_u128(tl_a_.credits_posted, (cpo));                                                  \
    } while (0)

static inline bool tl_closed(tl_t *t, u128 id) {
    return (tl_account(t, id).flags & LEDGER_ACCOUNT_CLOSED) != 0;
}

static inline ledger_stats_t tl_stats(tl_t *t) {
    ledger_stats_t s;
    ledger_stats(t->l, &s);
    return s;
}

/* An account filter over both sides with a generous limit. */
static inline ledger_account_filter_t tl_afilter(u128 account_id) {
    return (ledger_account_filter_t){.account_id = account_id,
                                     .flags = LEDGER_FILTER_DEBITS | LEDGER_FILTER_CREDITS,
                                     .limit = 1000};
}

#endif

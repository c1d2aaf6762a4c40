/* Expiry of pending transfers (ledger_expire, ledger_next_expiry, expiry checked on use,
 * chains, overflows_timeout), the system-level statuses of a batch: capacity, clock and
 * batch size, and ledger_reset. */
#include "ledger_test_util.h"

#define CREATED LEDGER_TRANSFER_CREATED
#define EXPIRED LEDGER_TRANSFER_PENDING_TRANSFER_EXPIRED
#define F_LINKED LEDGER_TRANSFER_LINKED

enum { A = 1, B = 2, C = 3, D = 4 };

static int ex_setup(void **state) {
    tl_t *t = tl_new();
    if (!t) return -1;
    *state = t;
    tl_create_accounts_range(t, A, D, 0);
    tl_advance(t, 1000);
    return 0;
}

/* ======================= ledger_expire order ======================= */

static void test_expire_in_order_of_expiry_time(void **state) {
    tl_t *t = *state;
    /* Created in the order P1, P2, P3; they expire in the order P2, P3, P1. */
    uint64_t t1 = tl_ok(t, tl_pending(1, A, B, 1, 3));
    uint64_t t2 = tl_ok(t, tl_pending(2, C, D, 2, 1));
    uint64_t t3 = tl_ok(t, tl_pending(3, A, C, 4, 2));
    uint64_t e1 = t1 + 3 * TL_NS_PER_S, e2 = t2 + TL_NS_PER_S, e3 = t3 + 2 * TL_NS_PER_S;
    assert_int_equal(tl_stats(t).pending_open, 3);
    assert_int_equal(ledger_next_expiry(t->l), e2);
    assert_int_equal(tl_expire(t, e2 - 1), 0);
    tl_assert_balances(t, C, 2, 0, 4, 0);
    assert_int_equal(tl_expire(t, e2), 1);
    tl_assert_balances(t, C, 0, 0, 4, 0); /* P2 released, P3 not */
    tl_assert_balances(t, D, 0, 0, 0, 0);
    assert_int_equal(ledger_next_expiry(t->l), e3);
    assert_int_equal(tl_expire(t, e3), 1);
    tl_assert_balances(t, A, 1, 0, 0, 0);
    tl_assert_balances(t, C, 0, 0, 0, 0);
    assert_int_equal(ledger_next_expiry(t->l), e1);
    assert_int_equal(tl_stats(t).pending_open, 1);
    assert_int_equal(tl_expire(t, e1), 1);
    tl_assert_balances(t, A, 0, 0, 0, 0);
    tl_assert_balances(t, B, 0, 0, 0, 0);
    assert_int_equal(ledger_next_expiry(t->l), 0);
    assert_int_equal(tl_stats(t).pending_open, 0);
    /* Nothing left: expiring again does nothing. */
    assert_int_equal(tl_expire(t, e1 + 100 * TL_NS_PER_S), 0);
    tl_check(t);
}

static void test_expire_all_due_at_once(void **state) {
    tl_t *t = *state;
    uint64_t t1 = tl_ok(t, tl_pending(1, A, B, 1, 3));
    tl_ok(t, tl_pending(2, A, B, 2, 1));
    tl_ok(t, tl_pending(3, A, B, 4, 2));
    uint64_t t4 = tl_ok(t, tl_pending(4, A, B, 8, 4));
    assert_int_equal(tl_expire(t, t1 + 3 * TL_NS_PER_S), 3);
    tl_assert_balances(t, A, 8, 0, 0, 0);
    assert_int_equal(ledger_next_expiry(t->l), t4 + 4 * TL_NS_PER_S);
    tl_check(t);
}

static void test_expire_same_expiry_time(void **state) {
    tl_t *t = *state;
    /* Two transfers created 1 s apart, the older with the longer timeout: the same expiry
     * time (ties are ordered by creation time). A third one expires 5 ns later. */
    uint64_t ta = tl_ok(t, tl_pending(1, A, B, 1, 2));
    tl_set_clock(t, ta + TL_NS_PER_S - 1);
    uint64_t tb = tl_ok(t, tl_pending(2, C, D, 2, 1));
    assert_int_equal(tb, ta + TL_NS_PER_S);
    tl_advance(t, 4);
    uint64_t tc = tl_ok(t, tl_pending(3, A, D, 4, 1));
    uint64_t at = ta + 2 * TL_NS_PER_S;
    assert_int_equal(ledger_next_expiry(t->l), at);
    assert_int_equal(tl_expire(t, at - 1), 0);
    assert_int_equal(tl_expire(t, at), 2);
    tl_assert_balances(t, A, 4, 0, 0, 0);
    tl_assert_balances(t, C, 0, 0, 0, 0);
    assert_int_equal(ledger_next_expiry(t->l), tc + TL_NS_PER_S);
    assert_int_equal(tc + TL_NS_PER_S, at + 5);
    assert_int_equal(tl_expire(t, at + 5), 1);
    tl_check(t);
}

/* ======================= expiry checked on use ======================= */

static void test_post_void_at_and_after_expiry_time(void **state) {
    tl_t *t = *state;
    uint64_t tp = tl_ok(t, tl_pending(1, A, B, 10, 1));
    uint64_t at = tp + TL_NS_PER_S;
    tl_set_clock(t, at - 1);
    ledger_transfer_t post = tl_post(2, 1, U128_MAX);
    uint64_t ts = 0;
    assert_tr(tl_transfer1_ts(t, post, &ts), EXPIRED);
    assert_int_equal(t->clock, at); /* the post was stamped exactly at the expiry time */
    /* No expiry ran yet: the amount is still reserved and the transfer still scheduled. */
    tl_assert_balances(t, A, 10, 0, 0, 0);
    assert_int_equal(tl_stats(t).pending_open, 1);
    assert_int_equal(ledger_next_expiry(t->l), at);
    /* After the expiry time, a void too. */
    assert_tr(tl_transfer1(t, tl_void(3, 1, 0)), EXPIRED);
    assert_tr(tl_transfer1(t, tl_post(4, 1, 1)), EXPIRED);
    assert_false(tl_find_transfer(t, 2, NULL));
    /* Now the expiry runs and releases it. */
    assert_int_equal(tl_expire(t, t->clock), 1);
    tl_assert_balances(t, A, 0, 0, 0, 0);
    assert_int_equal(tl_stats(t).pending_open, 0);
    assert_tr(tl_transfer1(t, tl_post(5, 1, 1)), EXPIRED);
    assert_tr(tl_transfer1(t, tl_void(5, 1, 0)), EXPIRED);
    /* Not transient: the ids are free. */
    assert_int_equal(tl_stats(t).failed_ids, 0);
    tl_check(t);
}

static void test_post_void_just_before_expiry(void **state) {
    tl_t *t = *state;
    uint64_t tp = tl_ok(t, tl_pending(1, A, B, 10, 1));
    tl_set_clock(t, tp + TL_NS_PER_S - 2); /* the post lands 1 ns before the expiry */
    uint64_t ts = tl_ok(t, tl_post(2, 1, 4));
    assert_int_equal(ts, tp + TL_NS_PER_S - 1);
    tl_assert_balances(t, A, 0, 4, 0, 0);
    assert_int_equal(ledger_next_expiry(t->l), 0);
    assert_int_equal(tl_expire(t, tp + 10 * TL_NS_PER_S), 0);
    tl_assert_balances(t, A, 0, 4, 0, 0);
    /* Void just before. */
    uint64_t tq = tl_ok(t, tl_pending(3, C, D, 7, 2));
    tl_set_clock(t, tq + 2 * TL_NS_PER_S - 2);
    tl_ok(t, tl_void(4, 3, 0));
    assert_int_equal(tl_expire(t, tq + 10 * TL_NS_PER_S), 0);
    tl_assert_balances(t, C, 0, 0, 0, 0);
    assert_int_equal(tl_stats(t).pending_open, 0);
    tl_check(t);
}

static void test_post_in_batch_straddling_expiry(void **state) {
    tl_t *t = *state;
    /* One batch whose events straddle the expiry time: event timestamps decide. */
    uint64_t tp = tl_ok(t, tl_pending(1, A, B, 10, 1));
    uint64_t tq = tl_ok(t, tl_pending(2, C, D, 10, 1));
    assert_int_equal(tq, tp + 1);
    uint64_t at = tp + TL_NS_PER_S;
    /* Batch of 3 at timestamp `at`: events at at-2, at-1, at. */
    ledger_transfer_t ev[3] = {tl_tr(9, A, B, 1, 0), tl_post(3, 2, U128_MAX),
                               tl_post(4, 1, U128_MAX)};
    ledger_result_t res[3];
    tl_set_clock(t, at - 3);
    uint64_t bts = tl_transfers(t, ev, 3, res);
    assert_int_equal(bts, at);
    uint32_t want[3] = {CREATED, CREATED, EXPIRED};
    tl_assert_tr_results(res, want, 3);
    tl_assert_balances(t, C, 0, 10, 0, 0);
    tl_assert_balances(t, A, 10, 1, 0, 0);
    assert_int_equal(tl_expire(t, at), 1);
    tl_assert_balances(t, A, 0, 1, 0, 0);
    tl_check(t);
}

static void test_expired_transfer_releases_pending(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_tr(1, A, B, 100, 0));
    uint64_t tp = tl_ok(t, tl_pending(2, A, B, 30, 2));
    tl_ok(t, tl_pending(3, A, B, 5, 0)); /* no timeout: stays */
    tl_assert_balances(t, A, 35, 100, 0, 0);
    tl_assert_balances(t, B, 0, 0, 35, 100);
    assert_int_equal(tl_expire(t, tp + 2 * TL_NS_PER_S), 1);
    tl_assert_balances(t, A, 5, 100, 0, 0);
    tl_assert_balances(t, B, 0, 0, 5, 100);
    assert_int_equal(tl_stats(t).pending_open, 1);
    /* The pending transfer itself is unchanged in lookups. */
    ledger_transfer_t p = tl_transfer(t, 2);
    assert_u128(p.amount, 30);
    assert_int_equal(p.timestamp, tp);
    assert_int_equal(p.timeout, 2);
    /* No transfer object is created by an expiry. */
    assert_int_equal(tl_stats(t).transfers, 3);
    assert_tr(tl_transfer1(t, tl_void(4, 2, 0)), EXPIRED);
    tl_ok(t, tl_post(4, 3, U128_MAX));
    assert_int_equal(tl_expire(t, t->clock + 1000 * TL_NS_PER_S), 0);
    tl_check(t);
}

static void test_expired_limit_room_is_released(void **state) {
    tl_t *t = *state;
    tl_create_account(t, 10, 1, 1, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS);
    tl_ok(t, tl_tr(1, A, 10, 10, 0));
    uint64_t tp = tl_ok(t, tl_pending(2, 10, B, 10, 1));
    assert_tr(tl_transfer1(t, tl_tr(3, 10, B, 1, 0)), LEDGER_TRANSFER_EXCEEDS_CREDITS);
    assert_int_equal(tl_expire(t, tp + TL_NS_PER_S), 1);
    tl_ok(t, tl_tr(4, 10, B, 10, 0));
    tl_assert_balances(t, 10, 0, 10, 0, 10);
    tl_check(t);
}

/* ======================= ledger_next_expiry ======================= */

static void test_next_expiry(void **state) {
    tl_t *t = *state;
    assert_int_equal(ledger_next_expiry(t->l), 0);
    tl_ok(t, tl_pending(1, A, B, 1, 0)); /* never expires */
    tl_ok(t, tl_tr(2, A, B, 1, 0));
    assert_int_equal(ledger_next_expiry(t->l), 0);
    uint64_t t3 = tl_ok(t, tl_pending(3, A, B, 1, 10));
    assert_int_equal(ledger_next_expiry(t->l), t3 + 10 * TL_NS_PER_S);
    uint64_t t4 = tl_ok(t, tl_pending(4, A, B, 1, 2));
    assert_int_equal(ledger_next_expiry(t->l), t4 + 2 * TL_NS_PER_S);
    uint64_t t5 = tl_ok(t, tl_pending(5, A, B, 1, 30));
    assert_int_equal(ledger_next_expiry(t->l), t4 + 2 * TL_NS_PER_S);
    /* Resolving the earliest moves it on. */
    tl_ok(t, tl_post(6, 4, U128_MAX));
    assert_int_equal(ledger_next_expiry(t->l), t3 + 10 * TL_NS_PER_S);
    tl_ok(t, tl_void(7, 3, 0));
    assert_int_equal(ledger_next_expiry(t->l), t5 + 30 * TL_NS_PER_S);
    tl_ok(t, tl_void(8, 5, 0));
    assert_int_equal(ledger_next_expiry(t->l), 0);
    assert_int_equal(tl_expire(t, t5 + 1000 * TL_NS_PER_S), 0);
    assert_int_equal(tl_stats(t).pending_open, 1);
    tl_check(t);
}

static void test_next_expiry_large_timeout(void **state) {
    tl_t *t = *state;
    /* timeout * 1e9 does not fit in 32 bits. */
    uint64_t t1 = tl_ok(t, tl_pending(1, A, B, 1, UINT32_MAX));
    assert_int_equal(ledger_next_expiry(t->l), t1 + (uint64_t)UINT32_MAX * TL_NS_PER_S);
    assert_int_equal(tl_expire(t, t1 + (uint64_t)UINT32_MAX * TL_NS_PER_S - 1), 0);
    assert_int_equal(tl_expire(t, t1 + (uint64_t)UINT32_MAX * TL_NS_PER_S), 1);
    tl_check(t);
}

/* ======================= expiry and chains ======================= */

static void test_rolled_back_pending_never_expires(void **state) {
    tl_t *t = *state;
    ledger_transfer_t bad = tl_tr(3, A, B, 1, 0);
    bad.code = 0;
    ledger_transfer_t ev[3] = {tl_pending(1, A, B, 5, 1), tl_pending(2, C, D, 6, 1), bad};
    ev[0].flags |= F_LINKED;
    ev[1].flags |= F_LINKED;
    ledger_result_t res[3];
    tl_transfers(t, ev, 3, res);
    uint32_t want[3] = {LEDGER_TRANSFER_LINKED_EVENT_FAILED, LEDGER_TRANSFER_LINKED_EVENT_FAILED,
                        LEDGER_TRANSFER_CODE_MUST_NOT_BE_ZERO};
    tl_assert_tr_results(res, want, 3);
    assert_int_equal(ledger_next_expiry(t->l), 0);
    assert_int_equal(tl_stats(t).pending_open, 0);
    /* Reuse the ids and rows with transfers that don't expire. */
    tl_ok(t, tl_pending(1, A, B, 5, 0));
    tl_ok(t, tl_pending(2, C, D, 6, 0));
    assert_int_equal(tl_expire(t, t->clock + 100 * TL_NS_PER_S), 0);
    tl_assert_balances(t, A, 5, 0, 0, 0);
    tl_assert_balances(t, C, 6, 0, 0, 0);
    assert_int_equal(tl_stats(t).pending_open, 2);
    tl_check(t);
}

static void test_committed_chain_pending_expires(void **state) {
    tl_t *t = *state;
    ledger_transfer_t ev[2] = {tl_pending(1, A, B, 5, 1), tl_tr(2, C, D, 1, 0)};
    ev[0].flags |= F_LINKED;
    ledger_result_t res[2];
    tl_transfers(t, ev, 2, res);
    uint32_t want[2] = {CREATED, CREATED};
    tl_assert_tr_results(res, want, 2);
    assert_int_equal(ledger_next_expiry(t->l), res[0].timestamp + TL_NS_PER_S);
    assert_int_equal(tl_expire(t, res[0].timestamp + TL_NS_PER_S), 1);
    tl_assert_balances(t, A, 0, 0, 0, 0);
    tl_check(t);
}

static void test_chain_posting_expired_transfer_breaks(void **state) {
    tl_t *t = *state;
    uint64_t tp = tl_ok(t, tl_pending(1, A, B, 5, 1));
    tl_set_clock(t, tp + 2 * TL_NS_PER_S);
    ledger_transfer_t ev[3] = {tl_tr(2, C, D, 1, F_LINKED), tl_post(3, 1, U128_MAX),
                               tl_tr(4, C, D, 2, 0)};
    ledger_result_t res[3];
    tl_transfers(t, ev, 3, res);
    uint32_t want[3] = {LEDGER_TRANSFER_LINKED_EVENT_FAILED, EXPIRED, CREATED};
    tl_assert_tr_results(res, want, 3);
    tl_assert_balances(t, C, 0, 2, 0, 0);
    tl_assert_balances(t, A, 5, 0, 0, 0);
    assert_int_equal(tl_expire(t, t->clock), 1);
    tl_assert_balances(t, A, 0, 0, 0, 0);
    tl_check(t);
}

static void test_chain_post_rolled_back_then_expires(void **state) {
    tl_t *t = *state;
    /* A chain posts a pending transfer, then fails: the pending transfer is pending again and
     * still expires on time. */
    uint64_t tp = tl_ok(t, tl_pending(1, A, B, 5, 1));
    ledger_transfer_t bad = tl_tr(3, A, A, 1, 0);
    ledger_transfer_t ev[2] = {tl_post(2, 1, U128_MAX), bad};
    ev[0].flags |= F_LINKED;
    ledger_result_t res[2];
    tl_transfers(t, ev, 2, res);
    uint32_t want[2] = {LEDGER_TRANSFER_LINKED_EVENT_FAILED,
                        LEDGER_TRANSFER_ACCOUNTS_MUST_BE_DIFFERENT};
    tl_assert_tr_results(res, want, 2);
    assert_int_equal(ledger_next_expiry(t->l), tp + TL_NS_PER_S);
    assert_int_equal(tl_expire(t, tp + TL_NS_PER_S), 1);
    tl_assert_balances(t, A, 0, 0, 0, 0);
    assert_tr(tl_transfer1(t, tl_post(2, 1, U128_MAX)), EXPIRED);
    tl_check(t);
}

/* ======================= overflows_timeout ======================= */

static void test_overflows_timeout_boundary(void **state) {
    tl_t *t = *state;
    uint64_t span = 10 * TL_NS_PER_S;
    tl_set_clock(t, TL_TS_MAX - span - 1);
    uint64_t ts = tl_ok(t, tl_pending(1, A, B, 1, 10)); /* expires exactly at 2^63-1 */
    assert_int_equal(ts + span, TL_TS_MAX);
    assert_tr(tl_transfer1(t, tl_pending(2, A, B, 1, 10)), LEDGER_TRANSFER_OVERFLOWS_TIMEOUT);
    tl_ok(t, tl_pending(3, A, B, 1, 9));
    assert_tr(tl_transfer1(t, tl_pending(4, A, B, 1, UINT32_MAX)),
              LEDGER_TRANSFER_OVERFLOWS_TIMEOUT);
    assert_false(tl_find_transfer(t, 2, NULL));
    assert_int_equal(tl_stats(t).failed_ids, 0);
    assert_int_equal(ledger_next_expiry(t->l), t->clock - 1 + 9 * TL_NS_PER_S);
    assert_int_equal(tl_expire(t, TL_TS_MAX), 2);
    tl_check(t);
}

/* ======================= capacity, clock, batch size ======================= */

static void test_accounts_full(void **state) {
    (void)state;
    tl_t *t = tl_new_cfg(2, 3);
    assert_non_null(t);
    ledger_account_t ev[3] = {tl_acct(1, 1, 1, 0), tl_acct(2, 1, 1, 0), tl_acct(3, 1, 1, 0)};
    ledger_result_t res[3];
    assert_status(ledger_create_accounts(t->l, t->clock + 3, ev, 3, res), LEDGER_ERR_ACCOUNTS_FULL);
    ledger_stats_t s = tl_stats(t);
    assert_int_equal(s.accounts, 0);
    assert_int_equal(s.last_timestamp, 0);
    assert_false(tl_find_account(t, 1, NULL));
    /* Nothing applied, not even the clock: the same timestamp works for a batch that fits. */
    tl_create_account(t, 1, 1, 1, 0);
    /* 1 used of 2: a batch of 2 could overflow, even if one event would only be `exists`. */
    ledger_account_t ev2[2] = {tl_acct(1, 1, 1, 0), tl_acct(2, 1, 1, 0)};
    uint64_t before = tl_stats(t).last_timestamp;
    assert_status(ledger_create_accounts(t->l, t->clock + 2, ev2, 2, res),
                  LEDGER_ERR_ACCOUNTS_FULL);
    assert_false(tl_find_account(t, 2, NULL));
    assert_int_equal(tl_stats(t).last_timestamp, before);
    tl_create_account(t, 2, 1, 1, 0);
    /* Full: even an event that would fail needs room. */
    ledger_account_t bad = tl_acct(0, 1, 1, 0);
    assert_status(ledger_create_accounts(t->l, t->clock + 1, &bad, 1, res),
                  LEDGER_ERR_ACCOUNTS_FULL);
    assert_int_equal(tl_stats(t).accounts, 2);
    tl_check(t);
    tl_free(t);
}

static void test_transfers_full(void **state) {
    (void)state;
    tl_t *t = tl_new_cfg(2, 3);
    assert_non_null(t);
    tl_create_account(t, A, 1, 1, 0);
    tl_create_account(t, B, 1, 1, 0);
    ledger_transfer_t ev[4] = {tl_tr(1, A, B, 1, 0), tl_tr(2, A, B, 2, 0), tl_tr(3, A, B, 4, 0),
                               tl_tr(4, A, B, 8, 0)};
    ledger_result_t res[4];
    assert_status(ledger_create_transfers(t->l, t->clock + 4, ev, 4, res),
                  LEDGER_ERR_TRANSFERS_FULL);
    assert_int_equal(tl_stats(t).transfers, 0);
    tl_transfers(t, ev, 2, res);
    assert_tr(res[0].result, CREATED);
    assert_tr(res[1].result, CREATED);
    ledger_stats_t s0 = tl_stats(t);
    /* 2 used of 3: a batch of 2 is refused as a whole. */
    assert_status(ledger_create_transfers(t->l, t->clock + 2, &ev[2], 2, res),
                  LEDGER_ERR_TRANSFERS_FULL);
    ledger_stats_t s1 = tl_stats(t);
    assert_int_equal(s1.transfers, s0.transfers);
    assert_int_equal(s1.last_timestamp, s0.last_timestamp);
    assert_false(tl_find_transfer(t, 3, NULL));
    tl_assert_balances(t, A, 0, 3, 0, 0);
    /* One fits. */
    tl_transfers(t, &ev[2], 1, res);
    assert_tr(res[0].result, CREATED);
    tl_assert_balances(t, A, 0, 7, 0, 0);
    /* Full now, even for a resubmission that would only be `exists`. */
    assert_status(ledger_create_transfers(t->l, t->clock + 1, &ev[0], 1, res),
                  LEDGER_ERR_TRANSFERS_FULL);
    assert_int_equal(tl_stats(t).transfers, 3);
    tl_check(t);
    tl_free(t);
}

static void test_balances_and_failed_ids_full(void **state) {
    (void)state;
    ledger_config_t c = {
        .accounts_max = 4, .transfers_max = 100, .balances_max = 3, .failed_ids_max = 1};
    ledger_t *l = ledger_create(&c);
    assert_non_null(l);
    ledger_account_t acc[2] = {tl_acct(A, 1, 1, LEDGER_ACCOUNT_HISTORY), tl_acct(B, 1, 1, 0)};
    ledger_result_t res[4];
    assert_status(ledger_create_accounts(l, 10, acc, 2, res), LEDGER_OK);
    /* Two transfers could need 4 balance rows (both sides with history): refused. */
    ledger_transfer_t ev[2] = {tl_tr(1, A, B, 1, 0), tl_tr(2, A, B, 1, 0)};
    assert_status(ledger_create_transfers(l, 20, ev, 2, res), LEDGER_ERR_BALANCES_FULL);
    ledger_stats_t s;
    ledger_stats(l, &s);
    assert_int_equal(s.transfers, 0);
    assert_int_equal(s.last_timestamp, 10);
    assert_status(ledger_create_transfers(l, 20, ev, 1, res), LEDGER_OK);
    assert_tr(res[0].result, CREATED);
    assert_null(ledger_check_invariants(l));
    ledger_destroy(l);

    ledger_config_t c2 = {.accounts_max = 4, .transfers_max = 100, .failed_ids_max = 1};
    l = ledger_create(&c2);
    assert_non_null(l);
    assert_status(ledger_create_accounts(l, 10, acc, 2, res), LEDGER_OK);
    ledger_transfer_t miss = tl_tr(1, A, 99, 1, 0);
    assert_status(ledger_create_transfers(l, 11, &miss, 1, res), LEDGER_OK);
    assert_tr(res[0].result, LEDGER_TRANSFER_CREDIT_ACCOUNT_NOT_FOUND);
    /* The failed-id table is full now: any batch that could fail transiently is refused. */
    ledger_transfer_t ok = tl_tr(2, A, B, 1, 0);
    assert_status(ledger_create_transfers(l, 12, &ok, 1, res), LEDGER_ERR_FAILED_IDS_FULL);
    ledger_stats(l, &s);
    assert_int_equal(s.transfers, 0);
    assert_int_equal(s.failed_ids, 1);
    assert_null(ledger_check_invariants(l));
    ledger_destroy(l);
}

static void test_clock_must_advance(void **state) {
    tl_t *t = *state;
    ledger_transfer_t ev[3] = {tl_tr(1, A, B, 1, 0), tl_tr(2, A, B, 1, 0), tl_tr(3, A, B, 1, 0)};
    ledger_result_t res[3];
    uint64_t last = tl_stats(t).last_timestamp;
    assert_true(last > 0);
    /* Not advancing. */
    assert_status(ledger_create_transfers(t->l, last, ev, 1, res), LEDGER_ERR_CLOCK);
    assert_status(ledger_create_transfers(t->l, last - 1, ev, 1, res), LEDGER_ERR_CLOCK);
    assert_status(ledger_create_transfers(t->l, 0, ev, 1, res), LEDGER_ERR_CLOCK);
    /* Advancing by less than the batch size. */
    assert_status(ledger_create_transfers(t->l, last + 2, ev, 3, res), LEDGER_ERR_CLOCK);
    /* Past 2^63-1. */
    assert_status(ledger_create_transfers(t->l, TL_TS_MAX + 1, ev, 1, res), LEDGER_ERR_CLOCK);
    assert_status(ledger_create_transfers(t->l, UINT64_MAX, ev, 1, res), LEDGER_ERR_CLOCK);
    /* The same for accounts. */
    ledger_account_t a = tl_acct(50, 1, 1, 0);
    assert_status(ledger_create_accounts(t->l, last, &a, 1, res), LEDGER_ERR_CLOCK);
    assert_status(ledger_create_accounts(t->l, TL_TS_MAX + 1, &a, 1, res), LEDGER_ERR_CLOCK);
    ledger_account_t aa[2] = {tl_acct(50, 1, 1, 0), tl_acct(51, 1, 1, 0)};
    assert_status(ledger_create_accounts(t->l, last + 1, aa, 2, res), LEDGER_ERR_CLOCK);
    /* Nothing was applied. */
    ledger_stats_t s = tl_stats(t);
    assert_int_equal(s.transfers, 0);
    assert_int_equal(s.accounts, 4);
    assert_int_equal(s.last_timestamp, last);
    assert_false(tl_find_account(t, 50, NULL));
    tl_assert_balances(t, A, 0, 0, 0, 0);
    /* Exactly n ahead is fine; event timestamps fill (last, ts]. */
    assert_status(ledger_create_transfers(t->l, last + 3, ev, 3, res), LEDGER_OK);
    assert_int_equal(res[0].timestamp, last + 1);
    assert_int_equal(res[2].timestamp, last + 3);
    t->clock = last + 3;
    /* The largest timestamp is accepted. */
    assert_status(ledger_create_transfers(t->l, TL_TS_MAX, &ev[0], 1, res), LEDGER_OK);
    assert_tr(res[0].result, LEDGER_TRANSFER_EXISTS);
    assert_int_equal(tl_stats(t).last_timestamp, TL_TS_MAX);
    assert_status(ledger_create_transfers(t->l, TL_TS_MAX, &ev[0], 1, res), LEDGER_ERR_CLOCK);
    tl_check(t);
}

static void test_batch_too_large(void **state) {
    (void)state;
    tl_t *t = tl_new_cfg(CP_BATCH_EVENTS_MAX + 8, 20000);
    assert_non_null(t);
    uint32_t n = CP_BATCH_EVENTS_MAX + 1;
    ledger_account_t *acc = calloc(n, sizeof *acc);
    ledger_transfer_t *tr = calloc(n, sizeof *tr);
    ledger_result_t *res = calloc(n, sizeof *res);
    assert_non_null(acc);
    assert_non_null(tr);
    assert_non_null(res);
    for (uint32_t i = 0; i < n; i++) {
        acc[i] = tl_acct(i + 1, 1, 1, 0);
        tr[i] = tl_tr(i + 1, 1, 2, 1, 0);
    }
    assert_status(ledger_create_accounts(t->l, t->clock + n, acc, n, res),
                  LEDGER_ERR_BATCH_TOO_LARGE);
    assert_int_equal(tl_stats(t).accounts, 0);
    assert_int_equal(tl_stats(t).last_timestamp, 0);
    /* The largest batch is fine. */
    tl_accounts(t, acc, n - 1, res);
    assert_ar(res[n - 2].result, LEDGER_ACCOUNT_CREATED);
    assert_int_equal(tl_stats(t).accounts, n - 1);
    ledger_stats_t s0 = tl_stats(t);
    assert_status(ledger_create_transfers(t->l, t->clock + n, tr, n, res),
                  LEDGER_ERR_BATCH_TOO_LARGE);
    ledger_stats_t s1 = tl_stats(t);
    assert_int_equal(s1.transfers, 0);
    assert_int_equal(s1.last_timestamp, s0.last_timestamp);
    tl_assert_balances(t, 1, 0, 0, 0, 0);
    tl_transfers(t, tr, n - 1, res);
    assert_tr(res[n - 2].result, CREATED);
    tl_assert_balances(t, 1, 0, n - 1, 0, 0);
    tl_check(t);
    free(acc);
    free(tr);
    free(res);
    tl_free(t);
}

/* ======================= ledger_reset ======================= */

/* Fills t's ledger: accounts A (no overdraft) to D (with history), transfers 1..n among B..D
 * (enough to make long probe runs in the index), transfer n + 1 failed for want of funds and
 * n + 2 pending with a timeout. */
static void reset_fill(tl_t *t, uint32_t n) {
    tl_create_account(t, A, 1, 1, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS);
    tl_create_accounts_range(t, B, D, LEDGER_ACCOUNT_HISTORY);
    for (uint32_t id = 1; id <= n; id++) tl_ok(t, tl_tr(id, B + id % 3, B + (id + 1) % 3, id, 0));
    assert_tr(tl_transfer1(t, tl_tr(n + 1, A, B, 1, 0)), LEDGER_TRANSFER_EXCEEDS_CREDITS);
    tl_ok(t, tl_pending(n + 2, C, D, 5, 1));
    tl_check(t);
}

/* Afterwards the ledger is as created: nothing found by id (the index must not find the old
 * rows, which are still in memory), no failed id, no expiry, the clock back at 0; the same
 * ids are created anew, and an image taken before the reset restores into it. Several rounds,
 * so that every round starts from a ledger reset with its indexes full. */
static void test_reset_empties_the_ledger(void **state) {
    (void)state;
    const uint32_t n = 400; /* of 512: the transfer index is 40% full */
    tl_t *t = tl_new_cfg(8, 512);
    assert_non_null(t);
    for (int round = 0; round < 3; round++) {
        reset_fill(t, n);
        ledger_account_t b_before = tl_account(t, B);
        ledger_image_header_t h;
        ledger_region_t r[LEDGER_IMAGE_REGIONS];
        ledger_image_header(t->l, &h);
        uint32_t count = ledger_image_regions(t->l, &h, r);
        void *saved[LEDGER_IMAGE_REGIONS];
        for (uint32_t k = 0; k < count; k++) {
            saved[k] = malloc(r[k].size ? r[k].size : 1);
            assert_non_null(saved[k]);
            memcpy(saved[k], r[k].ptr, r[k].size);
        }

        ledger_reset(t->l);
        ledger_stats_t st = tl_stats(t);
        assert_int_equal(st.accounts + st.transfers + st.balances + st.failed_ids, 0);
        assert_int_equal(st.pending_open, 0);
        assert_int_equal(st.last_timestamp, 0);
        assert_int_equal(ledger_next_expiry(t->l), 0);
        for (uint32_t id = 1; id <= n + 2; id++) assert_false(tl_find_transfer(t, id, NULL));
        assert_false(tl_find_account(t, A, NULL));
        tl_check(t);

        /* The image of the filled ledger restores into the reset one. */
        ledger_region_t w[LEDGER_IMAGE_REGIONS];
        assert_int_equal(ledger_image_restore_regions(t->l, &h, w), count);
        for (uint32_t k = 0; k < count; k++) {
            memcpy(w[k].ptr, saved[k], w[k].size);
            free(saved[k]);
        }
        assert_null(ledger_image_finish(t->l, &h));
        ledger_account_t b_after = tl_account(t, B);
        assert_memory_equal(&b_before, &b_after, sizeof b_after);
        assert_true(tl_find_transfer(t, n, NULL));
        assert_int_equal(tl_stats(t).failed_ids, 1);

        ledger_reset(t->l);
        t->clock = 1000; /* the ledger's clock started over: earlier timestamps are fine */
        if (round == 2) break;
        /* The old ids are new again: created, not `exists` nor `id_already_failed`. */
        tl_create_account(t, A, 1, 1, 0);
        tl_create_account(t, B, 1, 1, 0);
        tl_ok(t, tl_tr(n + 1, A, B, 1, 0));
        tl_ok(t, tl_tr(1, B, A, 1, 0));
        tl_check(t);
        ledger_reset(t->l);
        t->clock = 1000;
    }
    tl_free(t);
}

#define T(f) cmocka_unit_test_setup_teardown(f, ex_setup, tl_teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_expire_in_order_of_expiry_time),
        T(test_expire_all_due_at_once),
        T(test_expire_same_expiry_time),
        T(test_post_void_at_and_after_expiry_time),
        T(test_post_void_just_before_expiry),
        T(test_post_in_batch_straddling_expiry),
        T(test_expired_transfer_releases_pending),
        T(test_expired_limit_room_is_released),
        T(test_next_expiry),
        T(test_next_expiry_large_timeout),
        T(test_rolled_back_pending_never_expires),
        T(test_committed_chain_pending_expires),
        T(test_chain_posting_expired_transfer_breaks),
        T(test_chain_post_rolled_back_then_expires),
        T(test_overflows_timeout_boundary),
        T(test_accounts_full),
        T(test_transfers_full),
        T(test_balances_and_failed_ids_full),
        T(test_clock_must_advance),
        T(test_batch_too_large),
        cmocka_unit_test(test_reset_empties_the_ledger),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

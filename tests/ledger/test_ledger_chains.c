/* Linked chains: all-or-nothing, the rollback of every kind of effect, how results are
 * reported around the failing event, open chains, and failed-id recording inside chains. */
#include "ledger_test_util.h"

#define CREATED LEDGER_TRANSFER_CREATED
#define FAILED LEDGER_TRANSFER_LINKED_EVENT_FAILED
#define OPEN LEDGER_TRANSFER_LINKED_EVENT_CHAIN_OPEN
#define F_LINKED LEDGER_TRANSFER_LINKED
#define F_PENDING LEDGER_TRANSFER_PENDING
#define F_CLOSE_DR LEDGER_TRANSFER_CLOSING_DEBIT

enum { A = 1, B = 2, C = 3, D = 4, H = 5 /* history */, DMNEC = 6, MISSING = 999 };

static int ch_setup(void **state) {
    tl_t *t = tl_new();
    if (!t) return -1;
    *state = t;
    tl_create_account(t, A, 1, 1, 0);
    tl_create_account(t, B, 1, 1, 0);
    tl_create_account(t, C, 1, 1, 0);
    tl_create_account(t, D, 1, 1, 0);
    tl_create_account(t, H, 1, 1, LEDGER_ACCOUNT_HISTORY);
    tl_create_account(t, DMNEC, 1, 1, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS);
    tl_advance(t, 1000);
    return 0;
}

static ledger_transfer_t linked(ledger_transfer_t x) {
    x.flags |= F_LINKED;
    return x;
}

/* A transfer that fails validation without touching state (ledger 0). */
static ledger_transfer_t bad(u128 id) {
    ledger_transfer_t x = tl_tr(id, A, B, 1, 0);
    x.ledger = 0;
    return x;
}

static void run(tl_t *t, const ledger_transfer_t *ev, uint32_t n, const uint32_t *want) {
    ledger_result_t res[64];
    assert_true(n <= 64);
    tl_transfers(t, ev, n, res);
    tl_assert_tr_results(res, want, n);
    tl_check(t);
}

/* ---- rollback of every kind of effect ---- */

static void test_rollback_balances_and_transfers(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_tr(100, A, B, 1000, 0));
    ledger_stats_t s0 = tl_stats(t);
    ledger_transfer_t ev[4] = {linked(tl_tr(1, A, B, 10, 0)), linked(tl_pending(2, C, D, 5, 0)),
                               linked(tl_tr(3, B, C, 7, 0)), bad(4)};
    uint32_t want[4] = {FAILED, FAILED, FAILED, LEDGER_TRANSFER_LEDGER_MUST_NOT_BE_ZERO};
    run(t, ev, 4, want);
    tl_assert_balances(t, A, 0, 1000, 0, 0);
    tl_assert_balances(t, B, 0, 0, 0, 1000);
    tl_assert_balances(t, C, 0, 0, 0, 0);
    tl_assert_balances(t, D, 0, 0, 0, 0);
    for (u128 id = 1; id <= 4; id++) assert_false(tl_find_transfer(t, id, NULL));
    ledger_stats_t s1 = tl_stats(t);
    assert_int_equal(s1.transfers, s0.transfers);
    assert_int_equal(s1.pending_open, s0.pending_open);
    assert_int_equal(s1.failed_ids, 0);
    /* The ids are usable again, with new timestamps. */
    uint64_t ts = tl_ok(t, tl_tr(1, A, B, 10, 0));
    tl_ok(t, tl_pending(2, C, D, 5, 0));
    tl_ok(t, tl_tr(3, B, C, 7, 0));
    assert_true(ts > s0.last_timestamp + 4);
    tl_assert_balances(t, C, 5, 0, 0, 7);
    tl_check(t);
}

static void test_rollback_account_transfer_lists(void **state) {
    tl_t *t = *state;
    uint64_t ts0 = tl_ok(t, tl_tr(100, A, B, 1, 0));
    ledger_transfer_t ev[3] = {linked(tl_tr(1, A, B, 1, 0)), linked(tl_tr(2, B, A, 1, 0)), bad(3)};
    uint32_t want[3] = {FAILED, FAILED, LEDGER_TRANSFER_LEDGER_MUST_NOT_BE_ZERO};
    run(t, ev, 3, want);
    /* get_account_transfers sees only the committed one, then the next one appends fine. */
    ledger_account_filter_t f = tl_afilter(A);
    ledger_transfer_t out[8];
    assert_int_equal(ledger_get_account_transfers(t->l, &f, out), 1);
    assert_int_equal(out[0].timestamp, ts0);
    uint64_t ts1 = tl_ok(t, tl_tr(2, B, A, 3, 0));
    assert_int_equal(ledger_get_account_transfers(t->l, &f, out), 2);
    assert_u128(out[0].id, 100);
    assert_u128(out[1].id, 2);
    assert_int_equal(out[1].timestamp, ts1);
    f = tl_afilter(B);
    assert_int_equal(ledger_get_account_transfers(t->l, &f, out), 2);
}

static void test_rollback_post_restores_pending(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(10, A, B, 100, 0));
    ledger_transfer_t ev[2] = {linked(tl_post(11, 10, 60)), bad(12)};
    uint32_t want[2] = {FAILED, LEDGER_TRANSFER_LEDGER_MUST_NOT_BE_ZERO};
    run(t, ev, 2, want);
    tl_assert_balances(t, A, 100, 0, 0, 0);
    tl_assert_balances(t, B, 0, 0, 100, 0);
    assert_int_equal(tl_stats(t).pending_open, 1);
    assert_false(tl_find_transfer(t, 11, NULL));
    /* Still pending: it can be posted (with the same post id) after the rollback. */
    tl_ok(t, tl_post(11, 10, 60));
    tl_assert_balances(t, A, 0, 60, 0, 0);
    assert_int_equal(tl_stats(t).pending_open, 0);
    tl_check(t);
}

static void test_rollback_void_restores_pending(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(10, A, B, 100, 0));
    ledger_transfer_t ev[3] = {linked(tl_void(11, 10, 0)), linked(tl_tr(12, A, B, 1, 0)), bad(13)};
    uint32_t want[3] = {FAILED, FAILED, LEDGER_TRANSFER_LEDGER_MUST_NOT_BE_ZERO};
    run(t, ev, 3, want);
    tl_assert_balances(t, A, 100, 0, 0, 0);
    assert_int_equal(tl_stats(t).pending_open, 1);
    /* A post, not already_voided. */
    tl_ok(t, tl_post(14, 10, U128_MAX));
    tl_assert_balances(t, A, 0, 100, 0, 0);
    tl_check(t);
}

static void test_rollback_post_then_void_in_same_chain(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(10, A, B, 100, 0));
    /* Inside the chain the pending transfer is posted, so the void sees already_posted: the
     * chain breaks there and the post is undone. */
    ledger_transfer_t ev[2] = {linked(tl_post(11, 10, 60)), tl_void(12, 10, 0)};
    uint32_t want[2] = {FAILED, LEDGER_TRANSFER_PENDING_TRANSFER_ALREADY_POSTED};
    run(t, ev, 2, want);
    tl_assert_balances(t, A, 100, 0, 0, 0);
    tl_ok(t, tl_void(12, 10, 0));
    tl_assert_balances(t, A, 0, 0, 0, 0);
    tl_check(t);
}

static void test_rollback_closing_flag(void **state) {
    tl_t *t = *state;
    ledger_transfer_t close = tl_pending(10, A, B, 5, 0);
    close.flags |= F_CLOSE_DR;
    ledger_transfer_t ev[2] = {linked(close), bad(11)};
    uint32_t want[2] = {FAILED, LEDGER_TRANSFER_LEDGER_MUST_NOT_BE_ZERO};
    run(t, ev, 2, want);
    assert_false(tl_closed(t, A));
    tl_assert_balances(t, A, 0, 0, 0, 0);
    tl_ok(t, tl_tr(12, A, B, 1, 0));
    /* Closing inside a chain makes later chain events on that account fail, which rolls the
     * closing back too. */
    ledger_transfer_t ev2[2] = {linked(close), tl_tr(13, A, C, 1, 0)};
    uint32_t want2[2] = {FAILED, LEDGER_TRANSFER_DEBIT_ACCOUNT_ALREADY_CLOSED};
    run(t, ev2, 2, want2);
    assert_false(tl_closed(t, A));
    tl_check(t);
}

static void test_rollback_void_reopen(void **state) {
    tl_t *t = *state;
    ledger_transfer_t close = tl_pending(10, A, B, 5, 0);
    close.flags |= F_CLOSE_DR;
    tl_ok(t, close);
    assert_true(tl_closed(t, A));
    ledger_transfer_t ev[2] = {linked(tl_void(11, 10, 0)), bad(12)};
    uint32_t want[2] = {FAILED, LEDGER_TRANSFER_LEDGER_MUST_NOT_BE_ZERO};
    run(t, ev, 2, want);
    assert_true(tl_closed(t, A));
    tl_assert_balances(t, A, 5, 0, 0, 0);
    /* A void followed by a transfer from the reopened account, in one chain, works. */
    ledger_transfer_t ev2[2] = {linked(tl_void(11, 10, 0)), tl_tr(12, A, C, 3, 0)};
    uint32_t want2[2] = {CREATED, CREATED};
    run(t, ev2, 2, want2);
    assert_false(tl_closed(t, A));
    tl_assert_balances(t, A, 0, 3, 0, 0);
}

static void test_rollback_created_accounts(void **state) {
    tl_t *t = *state;
    ledger_stats_t s0 = tl_stats(t);
    ledger_account_t ev[3] = {tl_acct(20, 1, 1, LEDGER_ACCOUNT_LINKED),
                              tl_acct(21, 1, 1, LEDGER_ACCOUNT_LINKED | LEDGER_ACCOUNT_HISTORY),
                              tl_acct(22, 0, 1, 0)};
    ledger_result_t res[3];
    tl_accounts(t, ev, 3, res);
    uint32_t want[3] = {LEDGER_ACCOUNT_LINKED_EVENT_FAILED, LEDGER_ACCOUNT_LINKED_EVENT_FAILED,
                        LEDGER_ACCOUNT_LEDGER_MUST_NOT_BE_ZERO};
    tl_assert_ar_results(res, want, 3);
    assert_false(tl_find_account(t, 20, NULL));
    assert_false(tl_find_account(t, 21, NULL));
    assert_int_equal(tl_stats(t).accounts, s0.accounts);
    /* Transfers can't use them. */
    assert_tr(tl_transfer1(t, tl_tr(1, 20, A, 1, 0)), LEDGER_TRANSFER_DEBIT_ACCOUNT_NOT_FOUND);
    /* Query does not see them. */
    ledger_query_filter_t q = {.limit = 100};
    ledger_account_t out[16];
    assert_int_equal(ledger_query_accounts(t->l, &q, out), s0.accounts);
    /* The ids are usable again. */
    uint64_t ts = tl_create_account(t, 20, 1, 1, 0);
    tl_create_account(t, 21, 1, 1, 0);
    assert_int_equal(tl_account(t, 20).timestamp, ts);
    assert_int_equal(tl_account(t, 20).flags, 0);
    tl_check(t);
}

static void test_chains_in_create_accounts(void **state) {
    tl_t *t = *state;
    ledger_account_t ev[5] = {tl_acct(20, 1, 1, LEDGER_ACCOUNT_LINKED),
                              tl_acct(21, 1, 1, LEDGER_ACCOUNT_LINKED), tl_acct(22, 1, 1, 0),
                              tl_acct(23, 1, 1, LEDGER_ACCOUNT_LINKED),
                              tl_acct(A, 1, 1, 0) /* exists: breaks the chain */};
    ledger_result_t res[5];
    tl_accounts(t, ev, 5, res);
    uint32_t want[5] = {LEDGER_ACCOUNT_CREATED, LEDGER_ACCOUNT_CREATED, LEDGER_ACCOUNT_CREATED,
                        LEDGER_ACCOUNT_LINKED_EVENT_FAILED, LEDGER_ACCOUNT_EXISTS};
    tl_assert_ar_results(res, want, 5);
    assert_int_equal(res[4].timestamp, tl_account(t, A).timestamp);
    assert_true(tl_find_account(t, 22, NULL));
    assert_false(tl_find_account(t, 23, NULL));
    /* Open chain at the end of an account batch. */
    ledger_account_t ev2[2] = {tl_acct(24, 1, 1, 0), tl_acct(25, 1, 1, LEDGER_ACCOUNT_LINKED)};
    tl_accounts(t, ev2, 2, res);
    uint32_t want2[2] = {LEDGER_ACCOUNT_CREATED, LEDGER_ACCOUNT_LINKED_EVENT_CHAIN_OPEN};
    tl_assert_ar_results(res, want2, 2);
    assert_false(tl_find_account(t, 25, NULL));
    tl_check(t);
}

static void test_rollback_imported_account_timestamps(void **state) {
    tl_t *t = *state;
    /* A rolled-back imported account does not raise the bar for later imports. */
    uint64_t base = t->clock - 100;
    ledger_account_t a = tl_acct(20, 1, 1, LEDGER_ACCOUNT_IMPORTED | LEDGER_ACCOUNT_LINKED);
    a.timestamp = base + 50;
    ledger_account_t b = tl_acct(21, 0, 1, LEDGER_ACCOUNT_IMPORTED);
    b.timestamp = base + 60;
    ledger_account_t ev[2] = {a, b};
    ledger_result_t res[2];
    tl_accounts(t, ev, 2, res);
    uint32_t want[2] = {LEDGER_ACCOUNT_LINKED_EVENT_FAILED, LEDGER_ACCOUNT_LEDGER_MUST_NOT_BE_ZERO};
    tl_assert_ar_results(res, want, 2);
    ledger_account_t c = tl_acct(22, 1, 1, LEDGER_ACCOUNT_IMPORTED);
    c.timestamp = base + 10;
    assert_ar(tl_account1(t, c), LEDGER_ACCOUNT_CREATED);
    assert_int_equal(tl_account(t, 22).timestamp, base + 10);
    tl_check(t);
}

static void test_rollback_imported_transfer_timestamps(void **state) {
    tl_t *t = *state;
    uint64_t base = t->clock - 100;
    ledger_transfer_t a = tl_tr(1, A, B, 5, LEDGER_TRANSFER_IMPORTED | F_LINKED);
    a.timestamp = base + 50;
    ledger_transfer_t b = tl_tr(2, A, B, 5, LEDGER_TRANSFER_IMPORTED);
    b.timestamp = base + 60;
    b.ledger = 0;
    ledger_transfer_t ev[2] = {a, b};
    uint32_t want[2] = {FAILED, LEDGER_TRANSFER_LEDGER_MUST_NOT_BE_ZERO};
    run(t, ev, 2, want);
    ledger_transfer_t c = tl_tr(3, A, B, 5, LEDGER_TRANSFER_IMPORTED);
    c.timestamp = base + 10;
    assert_tr(tl_transfer1(t, c), CREATED);
    assert_int_equal(tl_transfer(t, 3).timestamp, base + 10);
    tl_assert_balances(t, A, 0, 5, 0, 0);
    tl_check(t);
}

static void test_rollback_balance_history(void **state) {
    tl_t *t = *state;
    uint64_t ts0 = tl_ok(t, tl_tr(1, H, B, 10, 0));
    uint32_t rows0 = tl_stats(t).balances;
    ledger_transfer_t ev[4] = {linked(tl_tr(2, H, B, 20, 0)), linked(tl_pending(3, B, H, 30, 0)),
                               linked(tl_tr(4, A, B, 1, 0)), bad(5)};
    uint32_t want[4] = {FAILED, FAILED, FAILED, LEDGER_TRANSFER_LEDGER_MUST_NOT_BE_ZERO};
    run(t, ev, 4, want);
    assert_int_equal(tl_stats(t).balances, rows0);
    ledger_account_filter_t f = tl_afilter(H);
    ledger_balance_t out[8];
    assert_int_equal(ledger_get_account_balances(t->l, &f, out), 1);
    assert_int_equal(out[0].timestamp, ts0);
    assert_u128(out[0].debits_posted, 10);
    /* The next committed transfer gets the next row with the right balances. */
    uint64_t ts1 = tl_ok(t, tl_pending(3, B, H, 30, 0));
    assert_int_equal(ledger_get_account_balances(t->l, &f, out), 2);
    assert_int_equal(out[1].timestamp, ts1);
    assert_u128(out[1].debits_posted, 10);
    assert_u128(out[1].credits_pending, 30);
    assert_u128(out[1].debits_pending, 0);
    tl_check(t);
}

static void test_rollback_expiry_never_fires(void **state) {
    tl_t *t = *state;
    ledger_transfer_t ev[2] = {linked(tl_pending(1, A, B, 10, 1)), bad(2)};
    uint32_t want[2] = {FAILED, LEDGER_TRANSFER_LEDGER_MUST_NOT_BE_ZERO};
    run(t, ev, 2, want);
    assert_int_equal(ledger_next_expiry(t->l), 0);
    /* The row it used is taken by a pending transfer without timeout. */
    tl_ok(t, tl_pending(3, C, D, 7, 0));
    assert_int_equal(tl_expire(t, t->clock + 100 * TL_NS_PER_S), 0);
    assert_int_equal(tl_stats(t).pending_open, 1);
    tl_assert_balances(t, C, 7, 0, 0, 0);
    tl_ok(t, tl_post(4, 3, U128_MAX));
    tl_check(t);
}

static void test_rollback_expiry_keeps_committed_ones(void **state) {
    tl_t *t = *state;
    uint64_t ts1 = tl_ok(t, tl_pending(1, A, B, 10, 5));
    /* A committed chain schedules its expiry; a rolled-back one does not. */
    ledger_transfer_t ev[4] = {linked(tl_pending(2, C, D, 1, 3)), tl_tr(3, A, B, 1, 0),
                               linked(tl_pending(4, C, D, 2, 1)), bad(5)};
    uint32_t want[4] = {CREATED, CREATED, FAILED, LEDGER_TRANSFER_LEDGER_MUST_NOT_BE_ZERO};
    ledger_result_t res[4];
    tl_transfers(t, ev, 4, res);
    tl_assert_tr_results(res, want, 4);
    uint64_t ts2 = res[0].timestamp;
    assert_int_equal(ledger_next_expiry(t->l), ts2 + 3 * TL_NS_PER_S);
    assert_true(ts2 + 3 * TL_NS_PER_S < ts1 + 5 * TL_NS_PER_S);
    assert_int_equal(tl_expire(t, ts2 + 3 * TL_NS_PER_S), 1);
    tl_assert_balances(t, C, 0, 0, 0, 0);
    assert_int_equal(ledger_next_expiry(t->l), ts1 + 5 * TL_NS_PER_S);
    assert_int_equal(tl_expire(t, ts1 + 5 * TL_NS_PER_S), 1);
    assert_int_equal(ledger_next_expiry(t->l), 0);
    tl_assert_balances(t, A, 0, 1, 0, 0);
    tl_check(t);
}

/* ---- how results are reported ---- */

static void test_exists_breaks_chain(void **state) {
    tl_t *t = *state;
    uint64_t ts5 = tl_ok(t, tl_tr(5, A, B, 1, 0));
    /* `exists` (at the end of the chain) breaks it: the earlier member is undone. */
    ledger_transfer_t ev[2] = {linked(tl_tr(6, A, B, 2, 0)), tl_tr(5, A, B, 1, 0)};
    ledger_result_t res[3];
    tl_transfers(t, ev, 2, res);
    uint32_t want[2] = {FAILED, LEDGER_TRANSFER_EXISTS};
    tl_assert_tr_results(res, want, 2);
    assert_int_equal(res[1].timestamp, ts5);
    assert_false(tl_find_transfer(t, 6, NULL));
    tl_assert_balances(t, A, 0, 1, 0, 0);
    /* The first event of a chain being `exists` breaks it too. */
    ledger_transfer_t ev2[2] = {linked(tl_tr(5, A, B, 1, 0)), tl_tr(8, A, B, 1, 0)};
    tl_transfers(t, ev2, 2, res);
    /* linked is part of the compared flags: the stored one has none. */
    uint32_t want2[2] = {LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_FLAGS, FAILED};
    tl_assert_tr_results(res, want2, 2);
    /* A chain member stored with linked is `exists` when resubmitted identically. */
    ledger_transfer_t ev3[2] = {linked(tl_tr(9, A, B, 1, 0)), tl_tr(10, A, B, 1, 0)};
    uint32_t want3[2] = {CREATED, CREATED};
    run(t, ev3, 2, want3);
    assert_int_equal(tl_transfer(t, 9).flags, F_LINKED);
    uint32_t want4[2] = {LEDGER_TRANSFER_EXISTS, FAILED};
    tl_transfers(t, ev3, 2, res);
    tl_assert_tr_results(res, want4, 2);
    tl_assert_balances(t, A, 0, 3, 0, 0);
    tl_check(t);
}

static void test_chain_broken_in_the_middle(void **state) {
    tl_t *t = *state;
    ledger_transfer_t dbad = tl_tr(0, 0, 0, 0, F_LINKED); /* invalid itself, never validated */
    ledger_transfer_t ev[7] = {tl_tr(1, A, B, 1, 0),
                               linked(tl_tr(2, A, B, 2, 0)),
                               linked(tl_tr(3, A, B, 4, 0)),
                               linked(tl_tr(4, A, A, 8, 0)),
                               dbad,
                               tl_tr(6, A, B, 16, 0),
                               tl_tr(7, A, B, 32, 0)};
    uint32_t want[7] = {CREATED, FAILED, FAILED, LEDGER_TRANSFER_ACCOUNTS_MUST_BE_DIFFERENT,
                        FAILED,  FAILED, CREATED};
    ledger_result_t res[7];
    uint64_t ts = tl_transfers(t, ev, 7, res);
    tl_assert_tr_results(res, want, 7);
    tl_assert_balances(t, A, 0, 33, 0, 0);
    assert_int_equal(res[0].timestamp, ts - 6);
    assert_int_equal(res[6].timestamp, ts);
    assert_int_equal(tl_transfer(t, 7).timestamp, ts);
    for (u128 id = 2; id <= 6; id++) assert_false(tl_find_transfer(t, id, NULL));
    tl_check(t);
}

static void test_open_chain_at_end_of_batch(void **state) {
    tl_t *t = *state;
    /* One event with linked. */
    ledger_transfer_t one = linked(tl_tr(1, A, B, 1, 0));
    uint32_t want1[1] = {OPEN};
    run(t, &one, 1, want1);
    /* A committed chain, a lone event, then an open chain. */
    ledger_transfer_t ev[5] = {linked(tl_tr(2, A, B, 1, 0)), tl_tr(3, A, B, 2, 0),
                               tl_tr(4, A, B, 4, 0), linked(tl_tr(5, A, B, 8, 0)),
                               linked(tl_tr(6, A, B, 16, 0))};
    uint32_t want[5] = {CREATED, CREATED, CREATED, FAILED, OPEN};
    run(t, ev, 5, want);
    tl_assert_balances(t, A, 0, 7, 0, 0);
    assert_false(tl_find_transfer(t, 5, NULL));
    assert_false(tl_find_transfer(t, 6, NULL));
    /* The open-chain event's id is not remembered as failed. */
    tl_ok(t, tl_tr(6, A, B, 1, 0));
    tl_ok(t, tl_tr(1, A, B, 1, 0));
    /* After a break, the last linked event still gets chain_open. */
    ledger_transfer_t ev2[3] = {linked(bad(7)), linked(tl_tr(8, A, B, 1, 0)),
                                linked(tl_tr(9, A, B, 1, 0))};
    uint32_t want2[3] = {LEDGER_TRANSFER_LEDGER_MUST_NOT_BE_ZERO, FAILED, OPEN};
    run(t, ev2, 3, want2);
}

static void test_independent_chains_in_one_batch(void **state) {
    tl_t *t = *state;
    ledger_transfer_t ev[6] = {linked(tl_tr(1, A, B, 1, 0)), tl_tr(2, A, B, 2, 0),
                               linked(tl_tr(3, A, B, 4, 0)), bad(4),
                               linked(tl_tr(5, A, B, 8, 0)), tl_tr(6, A, B, 16, 0)};
    uint32_t want[6] = {CREATED, CREATED, FAILED, LEDGER_TRANSFER_LEDGER_MUST_NOT_BE_ZERO,
                        CREATED, CREATED};
    run(t, ev, 6, want);
    tl_assert_balances(t, A, 0, 27, 0, 0);
}

static void test_id_reusable_later_in_same_batch(void **state) {
    tl_t *t = *state;
    ledger_transfer_t ev[3] = {linked(tl_tr(1, A, B, 1, 0)), bad(2), tl_tr(1, A, B, 5, 0)};
    uint32_t want[3] = {FAILED, LEDGER_TRANSFER_LEDGER_MUST_NOT_BE_ZERO, CREATED};
    run(t, ev, 3, want);
    assert_u128(tl_transfer(t, 1).amount, 5);
    tl_assert_balances(t, A, 0, 5, 0, 0);
}

static void test_chain_events_see_earlier_chain_effects(void **state) {
    tl_t *t = *state;
    /* Funding then spending from a limited account, and pending then post, in one chain. */
    ledger_transfer_t ev[4] = {linked(tl_tr(1, A, DMNEC, 50, 0)), linked(tl_tr(2, DMNEC, B, 50, 0)),
                               linked(tl_pending(3, C, D, 9, 0)), tl_post(4, 3, 4)};
    uint32_t want[4] = {CREATED, CREATED, CREATED, CREATED};
    run(t, ev, 4, want);
    tl_assert_balances(t, DMNEC, 0, 50, 0, 50);
    tl_assert_balances(t, C, 0, 4, 0, 0);
    /* The same shape with a failure at the end rolls everything back. */
    ledger_transfer_t ev2[5] = {
        linked(tl_tr(11, A, DMNEC, 50, 0)), linked(tl_tr(12, DMNEC, B, 50, 0)),
        linked(tl_pending(13, C, D, 9, 0)), linked(tl_post(14, 13, 4)), tl_tr(15, DMNEC, B, 1, 0)};
    uint32_t want2[5] = {FAILED, FAILED, FAILED, FAILED, LEDGER_TRANSFER_EXCEEDS_CREDITS};
    run(t, ev2, 5, want2);
    tl_assert_balances(t, DMNEC, 0, 50, 0, 50);
    tl_assert_balances(t, C, 0, 4, 0, 0);
    assert_int_equal(tl_stats(t).pending_open, 0);
}

/* ---- failed ids inside chains ---- */

static void test_transient_failure_in_chain_records_failed_id(void **state) {
    tl_t *t = *state;
    ledger_transfer_t ev[3] = {linked(tl_tr(1, A, B, 1, 0)), linked(tl_tr(2, MISSING, B, 1, 0)),
                               tl_tr(3, A, B, 1, 0)};
    uint32_t want[3] = {FAILED, LEDGER_TRANSFER_DEBIT_ACCOUNT_NOT_FOUND, FAILED};
    run(t, ev, 3, want);
    assert_int_equal(tl_stats(t).failed_ids, 1);
    assert_tr(tl_transfer1(t, tl_tr(2, A, B, 1, 0)), LEDGER_TRANSFER_ID_ALREADY_FAILED);
    /* The others were linked_event_failed: free. */
    tl_ok(t, tl_tr(1, A, B, 1, 0));
    tl_ok(t, tl_tr(3, A, B, 1, 0));
    /* exceeds_credits in a chain after funding in the same chain (rolled back). */
    ledger_transfer_t ev2[2] = {linked(tl_tr(4, A, DMNEC, 5, 0)), tl_tr(5, DMNEC, B, 6, 0)};
    uint32_t want2[2] = {FAILED, LEDGER_TRANSFER_EXCEEDS_CREDITS};
    run(t, ev2, 2, want2);
    assert_int_equal(tl_stats(t).failed_ids, 2);
    tl_ok(t, tl_tr(4, A, DMNEC, 5, 0));
    assert_tr(tl_transfer1(t, tl_tr(5, DMNEC, B, 5, 0)), LEDGER_TRANSFER_ID_ALREADY_FAILED);
    tl_check(t);
}

static void test_no_failed_id_for_unvalidated_chain_members(void **state) {
    tl_t *t = *state;
    /* After the break, a member that would have failed transiently is not validated and its
     * id is not recorded. */
    ledger_transfer_t ev[2] = {linked(bad(1)), tl_tr(2, MISSING, B, 1, 0)};
    uint32_t want[2] = {LEDGER_TRANSFER_LEDGER_MUST_NOT_BE_ZERO, FAILED};
    run(t, ev, 2, want);
    assert_int_equal(tl_stats(t).failed_ids, 0);
    tl_ok(t, tl_tr(2, A, B, 1, 0));
    /* Same for a chain_open last event. */
    ledger_transfer_t ev2[2] = {tl_tr(3, A, B, 1, 0), linked(tl_tr(4, MISSING, B, 1, 0))};
    uint32_t want2[2] = {CREATED, OPEN};
    run(t, ev2, 2, want2);
    assert_int_equal(tl_stats(t).failed_ids, 0);
    tl_ok(t, tl_tr(4, A, B, 1, 0));
}

static void test_failed_id_in_chain_then_same_id_later_in_batch(void **state) {
    tl_t *t = *state;
    ledger_transfer_t ev[3] = {linked(tl_tr(1, A, B, 1, 0)), tl_tr(2, A, MISSING, 1, 0),
                               tl_tr(2, A, B, 1, 0)};
    uint32_t want[3] = {FAILED, LEDGER_TRANSFER_CREDIT_ACCOUNT_NOT_FOUND,
                        LEDGER_TRANSFER_ID_ALREADY_FAILED};
    run(t, ev, 3, want);
    tl_assert_balances(t, A, 0, 0, 0, 0);
}

/* ---- a long chain ---- */

static void test_long_chain_rollback(void **state) {
    (void)state;
    tl_t *t = tl_new_cfg(16, 20000);
    assert_non_null(t);
    tl_create_account(t, A, 1, 1, LEDGER_ACCOUNT_HISTORY);
    tl_create_account(t, B, 1, 1, LEDGER_ACCOUNT_HISTORY);
    tl_ok(t, tl_pending(1, A, B, 1, 0));
    ledger_stats_t s0 = tl_stats(t);
    /* A full batch: 4094 pending transfers, their 4094 posts, and a failing last event. */
    uint32_t n = CP_BATCH_EVENTS_MAX, half = (n - 1) / 2;
    ledger_transfer_t *ev = calloc(n, sizeof *ev);
    ledger_result_t *res = calloc(n, sizeof *res);
    assert_non_null(ev);
    assert_non_null(res);
    for (uint32_t i = 0; i < half; i++) {
        ev[i] = linked(tl_pending(100 + i, A, B, 3, 1));
        ev[half + i] = linked(tl_post(100000 + i, 100 + i, 2));
    }
    ev[n - 1] = tl_void(99, 1, 5); /* wrong amount */
    tl_transfers(t, ev, n, res);
    for (uint32_t i = 0; i < n - 1; i++) assert_tr(res[i].result, FAILED);
    assert_tr(res[n - 1].result, LEDGER_TRANSFER_EXCEEDS_PENDING_TRANSFER_AMOUNT);
    ledger_stats_t s1 = tl_stats(t);
    assert_int_equal(s1.transfers, s0.transfers);
    assert_int_equal(s1.balances, s0.balances);
    assert_int_equal(s1.pending_open, 1);
    tl_assert_balances(t, A, 1, 0, 0, 0);
    assert_int_equal(ledger_next_expiry(t->l), 0);
    tl_check(t);
    /* Now the same chain without the failure commits. */
    ev[n - 1] = tl_void(99, 1, 0);
    tl_transfers(t, ev, n, res);
    for (uint32_t i = 0; i < n; i++) assert_tr(res[i].result, CREATED);
    tl_assert_balances(t, A, 0, 2 * (u128)half, 0, 0);
    tl_check(t);
    free(ev);
    free(res);
    tl_free(t);
}

#define T(f) cmocka_unit_test_setup_teardown(f, ch_setup, tl_teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_rollback_balances_and_transfers),
        T(test_rollback_account_transfer_lists),
        T(test_rollback_post_restores_pending),
        T(test_rollback_void_restores_pending),
        T(test_rollback_post_then_void_in_same_chain),
        T(test_rollback_closing_flag),
        T(test_rollback_void_reopen),
        T(test_rollback_created_accounts),
        T(test_chains_in_create_accounts),
        T(test_rollback_imported_account_timestamps),
        T(test_rollback_imported_transfer_timestamps),
        T(test_rollback_balance_history),
        T(test_rollback_expiry_never_fires),
        T(test_rollback_expiry_keeps_committed_ones),
        T(test_exists_breaks_chain),
        T(test_chain_broken_in_the_middle),
        T(test_open_chain_at_end_of_batch),
        T(test_independent_chains_in_one_batch),
        T(test_id_reusable_later_in_same_batch),
        T(test_chain_events_see_earlier_chain_effects),
        T(test_transient_failure_in_chain_records_failed_id),
        T(test_no_failed_id_for_unvalidated_chain_members),
        T(test_failed_id_in_chain_then_same_id_later_in_batch),
        T(test_long_chain_rollback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

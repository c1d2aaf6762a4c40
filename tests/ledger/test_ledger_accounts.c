/* create_accounts: every result code, and the precedence between neighbouring codes wherever
 * one event can trigger both (shared/docs/ledger.md, "Result codes and their precedence"). */
#include "ledger_test_util.h"

#define A_CREATED LEDGER_ACCOUNT_CREATED

/* One account in its own batch, expecting `want`; checks invariants. */
static void expect1(tl_t *t, ledger_account_t a, uint32_t want) {
    assert_ar(tl_account1(t, a), want);
    tl_check(t);
}

/* ---- created ---- */

static void test_created_stores_fields(void **state) {
    tl_t *t = *state;
    ledger_account_t a =
        tl_acct(7, 3, 9, LEDGER_ACCOUNT_HISTORY | LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS);
    a.user_data_128 = (u128)1 << 100;
    a.user_data_64 = 1ull << 60;
    a.user_data_32 = 77;
    uint64_t ts = 0;
    assert_ar(tl_account1_ts(t, a, &ts), A_CREATED);
    assert_int_equal(ts, t->clock);
    ledger_account_t s = tl_account(t, 7);
    assert_u128(s.id, 7);
    assert_int_equal(s.ledger, 3);
    assert_int_equal(s.code, 9);
    assert_int_equal(s.flags, a.flags);
    assert_u128(s.user_data_128, (u128)1 << 100);
    assert_int_equal(s.user_data_64, 1ull << 60);
    assert_int_equal(s.user_data_32, 77);
    assert_int_equal(s.timestamp, ts);
    assert_int_equal(s.reserved, 0);
    tl_assert_balances(t, 7, 0, 0, 0, 0);
    assert_int_equal(tl_stats(t).accounts, 1);
    tl_check(t);
}

static void test_created_batch_timestamps(void **state) {
    tl_t *t = *state;
    /* Event i gets ts - n + i + 1; a failing event still consumes its slot. */
    ledger_account_t ev[4] = {tl_acct(1, 1, 1, 0), tl_acct(0, 1, 1, 0), tl_acct(2, 1, 1, 0),
                              tl_acct(3, 1, 1, 0)};
    ledger_result_t res[4];
    uint64_t ts = t->clock + 10;
    assert_status(ledger_create_accounts(t->l, ts, ev, 4, res), LEDGER_OK);
    t->clock = ts;
    uint32_t want[4] = {A_CREATED, LEDGER_ACCOUNT_ID_MUST_NOT_BE_ZERO, A_CREATED, A_CREATED};
    tl_assert_ar_results(res, want, 4);
    assert_int_equal(res[0].timestamp, ts - 4 + 0 + 1);
    assert_int_equal(res[2].timestamp, ts - 4 + 2 + 1);
    assert_int_equal(res[3].timestamp, ts);
    assert_int_equal(tl_account(t, 1).timestamp, ts - 3);
    assert_int_equal(tl_account(t, 2).timestamp, ts - 1);
    assert_int_equal(tl_account(t, 3).timestamp, ts);
    assert_int_equal(tl_stats(t).last_timestamp, ts);
    tl_check(t);
}

static void test_created_stores_linked_and_closed_flags(void **state) {
    tl_t *t = *state;
    /* closed is accepted at creation and stored; a linked account (in a complete chain) keeps
     * the linked bit. */
    expect1(t, tl_acct(1, 1, 1, LEDGER_ACCOUNT_CLOSED), A_CREATED);
    assert_true(tl_closed(t, 1));
    ledger_account_t ev[2] = {tl_acct(2, 1, 1, LEDGER_ACCOUNT_LINKED), tl_acct(3, 1, 1, 0)};
    ledger_result_t res[2];
    tl_accounts(t, ev, 2, res);
    uint32_t want[2] = {A_CREATED, A_CREATED};
    tl_assert_ar_results(res, want, 2);
    assert_int_equal(tl_account(t, 2).flags, LEDGER_ACCOUNT_LINKED);
    tl_check(t);
}

/* ---- Batch-level codes ---- */

static void test_linked_event_chain_open(void **state) {
    tl_t *t = *state;
    /* A one-event batch with linked. */
    expect1(t, tl_acct(1, 1, 1, LEDGER_ACCOUNT_LINKED), LEDGER_ACCOUNT_LINKED_EVENT_CHAIN_OPEN);
    assert_false(tl_find_account(t, 1, NULL));
    /* A chain still open at the end: the earlier members fail, the last is chain_open. */
    ledger_account_t ev[3] = {tl_acct(2, 1, 1, 0), tl_acct(3, 1, 1, LEDGER_ACCOUNT_LINKED),
                              tl_acct(4, 1, 1, LEDGER_ACCOUNT_LINKED)};
    ledger_result_t res[3];
    tl_accounts(t, ev, 3, res);
    uint32_t want[3] = {A_CREATED, LEDGER_ACCOUNT_LINKED_EVENT_FAILED,
                        LEDGER_ACCOUNT_LINKED_EVENT_CHAIN_OPEN};
    tl_assert_ar_results(res, want, 3);
    assert_true(tl_find_account(t, 2, NULL));
    assert_false(tl_find_account(t, 3, NULL));
    assert_false(tl_find_account(t, 4, NULL));
    tl_check(t);
}

static void test_linked_event_failed(void **state) {
    tl_t *t = *state;
    ledger_account_t ev[3] = {tl_acct(1, 1, 1, LEDGER_ACCOUNT_LINKED),
                              tl_acct(2, 0, 1, LEDGER_ACCOUNT_LINKED), tl_acct(3, 1, 1, 0)};
    ledger_result_t res[3];
    tl_accounts(t, ev, 3, res);
    uint32_t want[3] = {LEDGER_ACCOUNT_LINKED_EVENT_FAILED, LEDGER_ACCOUNT_LEDGER_MUST_NOT_BE_ZERO,
                        LEDGER_ACCOUNT_LINKED_EVENT_FAILED};
    tl_assert_ar_results(res, want, 3);
    assert_int_equal(tl_stats(t).accounts, 0);
    tl_check(t);
}

static void test_chain_open_beats_own_failure_of_last_event(void **state) {
    tl_t *t = *state;
    /* The last event of the batch with linked gets chain_open even if it is invalid itself,
     * and even after the chain broke (linked_event_chain_open precedes linked_event_failed). */
    ledger_account_t ev[2] = {tl_acct(0, 1, 1, LEDGER_ACCOUNT_LINKED),
                              tl_acct(2, 0, 0, LEDGER_ACCOUNT_LINKED)};
    ledger_result_t res[2];
    tl_accounts(t, ev, 2, res);
    uint32_t want[2] = {LEDGER_ACCOUNT_ID_MUST_NOT_BE_ZERO, LEDGER_ACCOUNT_LINKED_EVENT_CHAIN_OPEN};
    tl_assert_ar_results(res, want, 2);
    tl_check(t);
}

static void test_linked_event_failed_beats_event_checks(void **state) {
    tl_t *t = *state;
    /* After the break, later chain members are not validated at all: an imported mismatch,
     * a non-zero timestamp or a zero id all give linked_event_failed. */
    ledger_account_t bad_ts = tl_acct(3, 1, 1, LEDGER_ACCOUNT_LINKED);
    bad_ts.timestamp = 5;
    ledger_account_t imp = tl_acct(4, 1, 1, LEDGER_ACCOUNT_LINKED | LEDGER_ACCOUNT_IMPORTED);
    imp.timestamp = 5;
    ledger_account_t ev[5] = {tl_acct(1, 0, 1, LEDGER_ACCOUNT_LINKED), bad_ts, imp,
                              tl_acct(0, 1, 1, 0), tl_acct(9, 1, 1, 0)};
    ledger_result_t res[5];
    tl_accounts(t, ev, 5, res);
    uint32_t want[5] = {LEDGER_ACCOUNT_LEDGER_MUST_NOT_BE_ZERO, LEDGER_ACCOUNT_LINKED_EVENT_FAILED,
                        LEDGER_ACCOUNT_LINKED_EVENT_FAILED, LEDGER_ACCOUNT_LINKED_EVENT_FAILED,
                        A_CREATED};
    tl_assert_ar_results(res, want, 5);
    assert_true(tl_find_account(t, 9, NULL));
    tl_check(t);
}

static void test_imported_event_expected(void **state) {
    tl_t *t = *state;
    ledger_account_t a = tl_acct(1, 1, 1, LEDGER_ACCOUNT_IMPORTED);
    a.timestamp = 10;
    ledger_account_t ev[2] = {a, tl_acct(2, 1, 1, 0)};
    ledger_result_t res[2];
    tl_accounts(t, ev, 2, res);
    uint32_t want[2] = {A_CREATED, LEDGER_ACCOUNT_IMPORTED_EVENT_EXPECTED};
    tl_assert_ar_results(res, want, 2);
    assert_false(tl_find_account(t, 2, NULL));
    tl_check(t);
}

static void test_imported_event_not_expected(void **state) {
    tl_t *t = *state;
    ledger_account_t a = tl_acct(2, 1, 1, LEDGER_ACCOUNT_IMPORTED);
    a.timestamp = 10;
    ledger_account_t ev[2] = {tl_acct(1, 1, 1, 0), a};
    ledger_result_t res[2];
    tl_accounts(t, ev, 2, res);
    uint32_t want[2] = {A_CREATED, LEDGER_ACCOUNT_IMPORTED_EVENT_NOT_EXPECTED};
    tl_assert_ar_results(res, want, 2);
    assert_false(tl_find_account(t, 2, NULL));
    tl_check(t);
}

static void test_imported_expected_beats_timestamp_must_be_zero(void **state) {
    tl_t *t = *state;
    ledger_account_t a = tl_acct(1, 1, 1, LEDGER_ACCOUNT_IMPORTED);
    a.timestamp = 10;
    ledger_account_t b = tl_acct(2, 1, 1, 0);
    b.timestamp = 11; /* also timestamp_must_be_zero */
    ledger_account_t ev[2] = {a, b};
    ledger_result_t res[2];
    tl_accounts(t, ev, 2, res);
    uint32_t want[2] = {A_CREATED, LEDGER_ACCOUNT_IMPORTED_EVENT_EXPECTED};
    tl_assert_ar_results(res, want, 2);
    tl_check(t);
}

static void test_imported_not_expected_beats_out_of_range(void **state) {
    tl_t *t = *state;
    ledger_account_t b = tl_acct(2, 1, 1, LEDGER_ACCOUNT_IMPORTED);
    b.timestamp = 0; /* also out of range */
    ledger_account_t ev[2] = {tl_acct(1, 1, 1, 0), b};
    ledger_result_t res[2];
    tl_accounts(t, ev, 2, res);
    uint32_t want[2] = {A_CREATED, LEDGER_ACCOUNT_IMPORTED_EVENT_NOT_EXPECTED};
    tl_assert_ar_results(res, want, 2);
    tl_check(t);
}

static void test_timestamp_must_be_zero(void **state) {
    tl_t *t = *state;
    ledger_account_t a = tl_acct(1, 1, 1, 0);
    a.timestamp = 1;
    expect1(t, a, LEDGER_ACCOUNT_TIMESTAMP_MUST_BE_ZERO);
    assert_false(tl_find_account(t, 1, NULL));
    /* ... and it precedes reserved_field / reserved_flag / id checks. */
    a.reserved = 1;
    a.flags = 1u << 6;
    a.id = 0;
    expect1(t, a, LEDGER_ACCOUNT_TIMESTAMP_MUST_BE_ZERO);
}

static void test_imported_timestamp_out_of_range(void **state) {
    tl_t *t = *state;
    ledger_account_t a = tl_acct(1, 1, 1, LEDGER_ACCOUNT_IMPORTED);
    a.timestamp = 0;
    expect1(t, a, LEDGER_ACCOUNT_IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE);
    /* Above 2^63-1: also "advances" past the batch, out_of_range comes first. */
    a.timestamp = TL_TS_MAX + 1;
    expect1(t, a, LEDGER_ACCOUNT_IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE);
    a.timestamp = UINT64_MAX;
    expect1(t, a, LEDGER_ACCOUNT_IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE);
    assert_int_equal(tl_stats(t).accounts, 0);
    /* The lower bound itself is fine. */
    a.timestamp = 1;
    expect1(t, a, A_CREATED);
    assert_int_equal(tl_account(t, 1).timestamp, 1);
}

static void test_imported_timestamp_must_not_advance(void **state) {
    tl_t *t = *state;
    ledger_account_t a = tl_acct(1, 1, 1, LEDGER_ACCOUNT_IMPORTED);
    /* Equal to the batch timestamp. */
    a.timestamp = t->clock + 1;
    expect1(t, a, LEDGER_ACCOUNT_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE);
    a.timestamp = t->clock + 100;
    expect1(t, a, LEDGER_ACCOUNT_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE);
    /* ... and it precedes reserved_field. */
    a.timestamp = t->clock + 1;
    a.reserved = 1;
    expect1(t, a, LEDGER_ACCOUNT_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE);
    assert_int_equal(tl_stats(t).accounts, 0);
    /* Just below the batch timestamp is fine. */
    a.reserved = 0;
    a.timestamp = t->clock; /* the batch will be clock + 1 */
    uint64_t ts = 0;
    assert_ar(tl_account1_ts(t, a, &ts), A_CREATED);
    assert_int_equal(ts, t->clock - 1);
    assert_int_equal(tl_account(t, 1).timestamp, t->clock - 1);
    tl_check(t);
}

/* ---- Field checks ---- */

static void test_reserved_field(void **state) {
    tl_t *t = *state;
    ledger_account_t a = tl_acct(1, 1, 1, 0);
    a.reserved = 1;
    expect1(t, a, LEDGER_ACCOUNT_RESERVED_FIELD);
    /* reserved_field precedes reserved_flag. */
    a.flags = 1u << 6;
    expect1(t, a, LEDGER_ACCOUNT_RESERVED_FIELD);
    assert_false(tl_find_account(t, 1, NULL));
}

static void test_reserved_flag(void **state) {
    tl_t *t = *state;
    for (unsigned bit = 6; bit < 16; bit++) {
        ledger_account_t a = tl_acct(1, 1, 1, (uint16_t)(1u << bit));
        expect1(t, a, LEDGER_ACCOUNT_RESERVED_FLAG);
    }
    /* reserved_flag precedes id_must_not_be_zero. */
    expect1(t, tl_acct(0, 1, 1, 1u << 15), LEDGER_ACCOUNT_RESERVED_FLAG);
    assert_int_equal(tl_stats(t).accounts, 0);
}

static void test_id_must_not_be_zero(void **state) {
    tl_t *t = *state;
    expect1(t, tl_acct(0, 1, 1, 0), LEDGER_ACCOUNT_ID_MUST_NOT_BE_ZERO);
    /* ... even with every later check failing too. */
    ledger_account_t a = tl_acct(0, 0, 0,
                                 LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS |
                                     LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS);
    a.debits_posted = 1;
    expect1(t, a, LEDGER_ACCOUNT_ID_MUST_NOT_BE_ZERO);
    assert_int_equal(tl_stats(t).accounts, 0);
}

static void test_id_must_not_be_int_max(void **state) {
    tl_t *t = *state;
    expect1(t, tl_acct(U128_MAX, 1, 1, 0), LEDGER_ACCOUNT_ID_MUST_NOT_BE_INT_MAX);
    ledger_account_t a = tl_acct(U128_MAX, 0, 0,
                                 LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS |
                                     LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS);
    expect1(t, a, LEDGER_ACCOUNT_ID_MUST_NOT_BE_INT_MAX);
    assert_int_equal(tl_stats(t).accounts, 0);
    /* 2^128-2 is an ordinary id. */
    expect1(t, tl_acct(U128_MAX - 1, 1, 1, 0), A_CREATED);
}

/* ---- Idempotency ---- */

static ledger_account_t base_account(void) {
    ledger_account_t a = tl_acct(5, 2, 3, LEDGER_ACCOUNT_HISTORY);
    a.user_data_128 = 128;
    a.user_data_64 = 64;
    a.user_data_32 = 32;
    return a;
}

static uint64_t create_base(tl_t *t) {
    uint64_t ts = 0;
    assert_ar(tl_account1_ts(t, base_account(), &ts), A_CREATED);
    return ts;
}

static void test_exists_returns_original_timestamp(void **state) {
    tl_t *t = *state;
    uint64_t ts0 = create_base(t);
    uint64_t ts = 0;
    assert_ar(tl_account1_ts(t, base_account(), &ts), LEDGER_ACCOUNT_EXISTS);
    assert_int_equal(ts, ts0);
    assert_true(t->clock > ts0);
    assert_int_equal(tl_account(t, 5).timestamp, ts0);
    assert_int_equal(tl_stats(t).accounts, 1);
    /* Also within one batch: the second copy is `exists` with the first one's timestamp. */
    ledger_account_t a = tl_acct(6, 1, 1, 0);
    ledger_account_t ev[2] = {a, a};
    ledger_result_t res[2];
    uint64_t bts = tl_accounts(t, ev, 2, res);
    uint32_t want[2] = {A_CREATED, LEDGER_ACCOUNT_EXISTS};
    tl_assert_ar_results(res, want, 2);
    assert_int_equal(res[0].timestamp, bts - 1);
    assert_int_equal(res[1].timestamp, bts - 1);
    tl_check(t);
}

static void test_exists_ignores_balances_and_later_checks(void **state) {
    tl_t *t = *state;
    create_base(t);
    /* Balances are not compared, and the exists check comes before the must-be-zero checks. */
    ledger_account_t a = base_account();
    a.debits_pending = 1;
    a.debits_posted = 2;
    a.credits_pending = 3;
    a.credits_posted = 4;
    expect1(t, a, LEDGER_ACCOUNT_EXISTS);
    tl_assert_balances(t, 5, 0, 0, 0, 0);
}

static void test_exists_with_different_each_field(void **state) {
    tl_t *t = *state;
    create_base(t);
    ledger_account_t a;
    a = base_account();
    a.flags = LEDGER_ACCOUNT_HISTORY | LEDGER_ACCOUNT_CLOSED;
    expect1(t, a, LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_FLAGS);
    a = base_account();
    a.flags = 0;
    expect1(t, a, LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_FLAGS);
    a = base_account();
    a.user_data_128 = 129;
    expect1(t, a, LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_USER_DATA_128);
    a = base_account();
    a.user_data_64 = 65;
    expect1(t, a, LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_USER_DATA_64);
    a = base_account();
    a.user_data_32 = 33;
    expect1(t, a, LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_USER_DATA_32);
    a = base_account();
    a.ledger = 7;
    expect1(t, a, LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_LEDGER);
    a = base_account();
    a.code = 8;
    expect1(t, a, LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_CODE);
    /* The stored account is untouched. */
    ledger_account_t s = tl_account(t, 5);
    assert_int_equal(s.ledger, 2);
    assert_int_equal(s.code, 3);
    assert_u128(s.user_data_128, 128);
}

static void test_exists_with_different_precedence(void **state) {
    tl_t *t = *state;
    create_base(t);
    ledger_account_t a;
    /* flags vs user_data_128 */
    a = base_account();
    a.flags = 0;
    a.user_data_128 = 1;
    expect1(t, a, LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_FLAGS);
    /* user_data_128 vs user_data_64 */
    a = base_account();
    a.user_data_128 = 1;
    a.user_data_64 = 1;
    expect1(t, a, LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_USER_DATA_128);
    /* user_data_64 vs user_data_32 */
    a = base_account();
    a.user_data_64 = 1;
    a.user_data_32 = 1;
    expect1(t, a, LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_USER_DATA_64);
    /* user_data_32 vs ledger */
    a = base_account();
    a.user_data_32 = 1;
    a.ledger = 1;
    expect1(t, a, LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_USER_DATA_32);
    /* ledger vs code */
    a = base_account();
    a.ledger = 1;
    a.code = 1;
    expect1(t, a, LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_LEDGER);
    /* All differ: flags. */
    a = tl_acct(5, 9, 9, 0);
    expect1(t, a, LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_FLAGS);
}

static void test_id_checks_beat_exists(void **state) {
    tl_t *t = *state;
    /* An event that repeats nothing but is invalid in its id never reaches the lookup; an event
     * with an existing id is compared before field validation: ledger 0 / code 0 on a
     * resubmission are "different", not "must not be zero". */
    create_base(t);
    ledger_account_t a = base_account();
    a.ledger = 0;
    expect1(t, a, LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_LEDGER);
    a = base_account();
    a.code = 0;
    expect1(t, a, LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_CODE);
    /* Mutually exclusive flags on an existing id: exists_with_different_flags. */
    a = base_account();
    a.flags = LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS |
              LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS;
    expect1(t, a, LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_FLAGS);
    /* reserved_field / reserved_flag precede the exists check. */
    a = base_account();
    a.reserved = 1;
    expect1(t, a, LEDGER_ACCOUNT_RESERVED_FIELD);
    a = base_account();
    a.flags |= 1u << 9;
    expect1(t, a, LEDGER_ACCOUNT_RESERVED_FLAG);
}

static void test_exists_after_closing_is_different_flags(void **state) {
    tl_t *t = *state;
    /* Once a closing transfer closed the account, the original create differs in flags. */
    tl_create_account(t, 1, 1, 1, 0);
    tl_create_account(t, 2, 1, 1, 0);
    tl_ok(t, (ledger_transfer_t){.id = 1,
                                 .debit_account_id = 1,
                                 .credit_account_id = 2,
                                 .ledger = 1,
                                 .code = 1,
                                 .flags = LEDGER_TRANSFER_PENDING | LEDGER_TRANSFER_CLOSING_DEBIT});
    expect1(t, tl_acct(1, 1, 1, 0), LEDGER_ACCOUNT_EXISTS_WITH_DIFFERENT_FLAGS);
    expect1(t, tl_acct(1, 1, 1, LEDGER_ACCOUNT_CLOSED), LEDGER_ACCOUNT_EXISTS);
    expect1(t, tl_acct(2, 1, 1, 0), LEDGER_ACCOUNT_EXISTS);
}

/* ---- Later field checks ---- */

static void test_flags_are_mutually_exclusive(void **state) {
    tl_t *t = *state;
    uint16_t both = LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS |
                    LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS;
    expect1(t, tl_acct(1, 1, 1, both), LEDGER_ACCOUNT_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
    /* ... precedes debits_pending_must_be_zero (and all later checks). */
    ledger_account_t a = tl_acct(1, 0, 0, both);
    a.debits_pending = 1;
    a.credits_posted = 1;
    expect1(t, a, LEDGER_ACCOUNT_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
    assert_false(tl_find_account(t, 1, NULL));
    /* Each one alone is fine. */
    expect1(t, tl_acct(1, 1, 1, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS), A_CREATED);
    expect1(t, tl_acct(2, 1, 1, LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS), A_CREATED);
}

static void test_balances_must_be_zero_each(void **state) {
    tl_t *t = *state;
    ledger_account_t a;
    a = tl_acct(1, 1, 1, 0);
    a.debits_pending = 1;
    expect1(t, a, LEDGER_ACCOUNT_DEBITS_PENDING_MUST_BE_ZERO);
    a = tl_acct(1, 1, 1, 0);
    a.debits_posted = 1;
    expect1(t, a, LEDGER_ACCOUNT_DEBITS_POSTED_MUST_BE_ZERO);
    a = tl_acct(1, 1, 1, 0);
    a.credits_pending = U128_MAX;
    expect1(t, a, LEDGER_ACCOUNT_CREDITS_PENDING_MUST_BE_ZERO);
    a = tl_acct(1, 1, 1, 0);
    a.credits_posted = 1;
    expect1(t, a, LEDGER_ACCOUNT_CREDITS_POSTED_MUST_BE_ZERO);
    assert_int_equal(tl_stats(t).accounts, 0);
}

static void test_balances_must_be_zero_precedence(void **state) {
    tl_t *t = *state;
    ledger_account_t a;
    /* debits_pending vs debits_posted */
    a = tl_acct(1, 0, 0, 0);
    a.debits_pending = 1;
    a.debits_posted = 1;
    a.credits_pending = 1;
    a.credits_posted = 1;
    expect1(t, a, LEDGER_ACCOUNT_DEBITS_PENDING_MUST_BE_ZERO);
    /* debits_posted vs credits_pending */
    a.debits_pending = 0;
    expect1(t, a, LEDGER_ACCOUNT_DEBITS_POSTED_MUST_BE_ZERO);
    /* credits_pending vs credits_posted */
    a.debits_posted = 0;
    expect1(t, a, LEDGER_ACCOUNT_CREDITS_PENDING_MUST_BE_ZERO);
    /* credits_posted vs ledger_must_not_be_zero */
    a.credits_pending = 0;
    expect1(t, a, LEDGER_ACCOUNT_CREDITS_POSTED_MUST_BE_ZERO);
    /* ledger vs code */
    a.credits_posted = 0;
    expect1(t, a, LEDGER_ACCOUNT_LEDGER_MUST_NOT_BE_ZERO);
    assert_int_equal(tl_stats(t).accounts, 0);
}

static void test_ledger_must_not_be_zero(void **state) {
    tl_t *t = *state;
    expect1(t, tl_acct(1, 0, 1, 0), LEDGER_ACCOUNT_LEDGER_MUST_NOT_BE_ZERO);
    /* ledger precedes code */
    expect1(t, tl_acct(1, 0, 0, 0), LEDGER_ACCOUNT_LEDGER_MUST_NOT_BE_ZERO);
    assert_false(tl_find_account(t, 1, NULL));
}

static void test_code_must_not_be_zero(void **state) {
    tl_t *t = *state;
    expect1(t, tl_acct(1, 1, 0, 0), LEDGER_ACCOUNT_CODE_MUST_NOT_BE_ZERO);
    assert_false(tl_find_account(t, 1, NULL));
    /* Accounts never remember failed ids: a corrected retry is created. */
    expect1(t, tl_acct(1, 1, 1, 0), A_CREATED);
}

/* ---- Imported accounts ---- */

static void test_imported_created_keeps_timestamp(void **state) {
    tl_t *t = *state;
    tl_set_clock(t, 10000);
    ledger_account_t a = tl_acct(1, 1, 1, LEDGER_ACCOUNT_IMPORTED);
    a.timestamp = 500;
    ledger_account_t b = tl_acct(2, 1, 1, LEDGER_ACCOUNT_IMPORTED);
    b.timestamp = 600;
    ledger_account_t ev[2] = {a, b};
    ledger_result_t res[2];
    tl_accounts(t, ev, 2, res);
    uint32_t want[2] = {A_CREATED, A_CREATED};
    tl_assert_ar_results(res, want, 2);
    assert_int_equal(res[0].timestamp, 500);
    assert_int_equal(res[1].timestamp, 600);
    assert_int_equal(tl_account(t, 1).timestamp, 500);
    assert_int_equal(tl_account(t, 2).timestamp, 600);
    assert_int_equal(tl_account(t, 2).flags, LEDGER_ACCOUNT_IMPORTED);
    /* Resubmission with another timestamp: the timestamp is not compared. */
    b.timestamp = 700;
    uint64_t ts = 0;
    assert_ar(tl_account1_ts(t, b, &ts), LEDGER_ACCOUNT_EXISTS);
    assert_int_equal(ts, 600);
    tl_check(t);
}

static void test_imported_must_not_regress(void **state) {
    tl_t *t = *state;
    tl_set_clock(t, 10000);
    ledger_account_t a = tl_acct(1, 1, 1, LEDGER_ACCOUNT_IMPORTED);
    a.timestamp = 500;
    expect1(t, a, A_CREATED);
    /* Equal to the newest account's timestamp, and below it. */
    ledger_account_t b = tl_acct(2, 1, 1, LEDGER_ACCOUNT_IMPORTED);
    b.timestamp = 500;
    expect1(t, b, LEDGER_ACCOUNT_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
    b.timestamp = 499;
    expect1(t, b, LEDGER_ACCOUNT_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
    /* Also against a non-imported account created later. */
    uint64_t ts3 = tl_create_account(t, 3, 1, 1, 0);
    tl_advance(t, 100);
    b.timestamp = ts3;
    expect1(t, b, LEDGER_ACCOUNT_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
    b.timestamp = ts3 - 1;
    expect1(t, b, LEDGER_ACCOUNT_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
    assert_false(tl_find_account(t, 2, NULL));
    b.timestamp = ts3 + 1;
    expect1(t, b, A_CREATED);
    /* Within one batch, the second must follow the first. */
    ledger_account_t c = tl_acct(4, 1, 1, LEDGER_ACCOUNT_IMPORTED);
    c.timestamp = ts3 + 10;
    ledger_account_t d = tl_acct(5, 1, 1, LEDGER_ACCOUNT_IMPORTED);
    d.timestamp = ts3 + 5;
    ledger_account_t ev[2] = {c, d};
    ledger_result_t res[2];
    tl_accounts(t, ev, 2, res);
    uint32_t want[2] = {A_CREATED, LEDGER_ACCOUNT_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS};
    tl_assert_ar_results(res, want, 2);
    tl_check(t);
}

static void test_imported_must_not_regress_transfer_timestamp(void **state) {
    tl_t *t = *state;
    /* An imported account may not take the timestamp of an existing transfer. */
    tl_create_account(t, 1, 1, 1, 0);
    tl_create_account(t, 2, 1, 1, 0);
    tl_advance(t, 100);
    uint64_t tts = tl_ok(t, tl_tr(1, 1, 2, 5, 0));
    tl_advance(t, 100);
    ledger_account_t a = tl_acct(3, 1, 1, LEDGER_ACCOUNT_IMPORTED);
    a.timestamp = tts;
    expect1(t, a, LEDGER_ACCOUNT_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
    a.timestamp = tts + 1;
    expect1(t, a, A_CREATED);
    assert_int_equal(tl_account(t, 3).timestamp, tts + 1);
}

static void test_imported_checks_order(void **state) {
    tl_t *t = *state;
    tl_set_clock(t, 10000);
    ledger_account_t a = tl_acct(1, 1, 1, LEDGER_ACCOUNT_IMPORTED);
    a.timestamp = 500;
    expect1(t, a, A_CREATED);
    /* out_of_range precedes everything after it (reserved_field, ids, regress). */
    ledger_account_t b = tl_acct(0, 0, 0, LEDGER_ACCOUNT_IMPORTED);
    b.reserved = 1;
    b.timestamp = 0;
    expect1(t, b, LEDGER_ACCOUNT_IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE);
    /* must_not_advance precedes reserved_flag. */
    b = tl_acct(2, 1, 1, LEDGER_ACCOUNT_IMPORTED | (1u << 7));
    b.timestamp = t->clock + 1;
    expect1(t, b, LEDGER_ACCOUNT_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE);
    /* The exists check precedes must_not_regress (a resubmission of an imported account). */
    expect1(t, a, LEDGER_ACCOUNT_EXISTS);
    /* code_must_not_be_zero precedes must_not_regress. */
    b = tl_acct(2, 1, 0, LEDGER_ACCOUNT_IMPORTED);
    b.timestamp = 400;
    expect1(t, b, LEDGER_ACCOUNT_CODE_MUST_NOT_BE_ZERO);
    /* flags_are_mutually_exclusive precedes must_not_regress. */
    b = tl_acct(2, 1, 1,
                LEDGER_ACCOUNT_IMPORTED | LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS |
                    LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS);
    b.timestamp = 400;
    expect1(t, b, LEDGER_ACCOUNT_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
    /* With everything else right: must_not_regress. */
    b = tl_acct(2, 1, 1, LEDGER_ACCOUNT_IMPORTED);
    b.timestamp = 400;
    expect1(t, b, LEDGER_ACCOUNT_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
    assert_int_equal(tl_stats(t).accounts, 1);
}

static void test_result_names(void **state) {
    (void)state;
    /* Names round-trip, numeric order is the documented precedence order. */
    static const char *const order[] = {"created",
                                        "linked_event_chain_open",
                                        "linked_event_failed",
                                        "imported_event_expected",
                                        "imported_event_not_expected",
                                        "timestamp_must_be_zero",
                                        "imported_event_timestamp_out_of_range",
                                        "imported_event_timestamp_must_not_advance",
                                        "reserved_field",
                                        "reserved_flag",
                                        "id_must_not_be_zero",
                                        "id_must_not_be_int_max",
                                        "exists_with_different_flags",
                                        "exists_with_different_user_data_128",
                                        "exists_with_different_user_data_64",
                                        "exists_with_different_user_data_32",
                                        "exists_with_different_ledger",
                                        "exists_with_different_code",
                                        "exists",
                                        "flags_are_mutually_exclusive",
                                        "debits_pending_must_be_zero",
                                        "debits_posted_must_be_zero",
                                        "credits_pending_must_be_zero",
                                        "credits_posted_must_be_zero",
                                        "ledger_must_not_be_zero",
                                        "code_must_not_be_zero",
                                        "imported_event_timestamp_must_not_regress"};
    assert_int_equal(LEDGER_ACCOUNT_RESULT_COUNT, sizeof order / sizeof order[0]);
    for (uint32_t i = 0; i < LEDGER_ACCOUNT_RESULT_COUNT; i++) {
        assert_string_equal(ledger_account_result_str(i), order[i]);
        uint32_t v = 99;
        assert_true(ledger_account_result_parse(order[i], strlen(order[i]), &v));
        assert_int_equal(v, i);
    }
    assert_null(ledger_account_result_str(LEDGER_ACCOUNT_RESULT_COUNT));
}

#define T(f) cmocka_unit_test_setup_teardown(f, tl_setup, tl_teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_created_stores_fields),
        T(test_created_batch_timestamps),
        T(test_created_stores_linked_and_closed_flags),
        T(test_linked_event_chain_open),
        T(test_linked_event_failed),
        T(test_chain_open_beats_own_failure_of_last_event),
        T(test_linked_event_failed_beats_event_checks),
        T(test_imported_event_expected),
        T(test_imported_event_not_expected),
        T(test_imported_expected_beats_timestamp_must_be_zero),
        T(test_imported_not_expected_beats_out_of_range),
        T(test_timestamp_must_be_zero),
        T(test_imported_timestamp_out_of_range),
        T(test_imported_timestamp_must_not_advance),
        T(test_reserved_field),
        T(test_reserved_flag),
        T(test_id_must_not_be_zero),
        T(test_id_must_not_be_int_max),
        T(test_exists_returns_original_timestamp),
        T(test_exists_ignores_balances_and_later_checks),
        T(test_exists_with_different_each_field),
        T(test_exists_with_different_precedence),
        T(test_id_checks_beat_exists),
        T(test_exists_after_closing_is_different_flags),
        T(test_flags_are_mutually_exclusive),
        T(test_balances_must_be_zero_each),
        T(test_balances_must_be_zero_precedence),
        T(test_ledger_must_not_be_zero),
        T(test_code_must_not_be_zero),
        T(test_imported_created_keeps_timestamp),
        T(test_imported_must_not_regress),
        T(test_imported_must_not_regress_transfer_timestamp),
        T(test_imported_checks_order),
        T(test_result_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

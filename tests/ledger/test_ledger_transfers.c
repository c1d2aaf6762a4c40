/* create_transfers: every result code, precedence between neighbouring codes, balancing,
 * closing, post / void, idempotency, id_already_failed and imported transfers
 * (shared/docs/ledger.md is the contract). */
#include "ledger_test_util.h"

#define CREATED LEDGER_TRANSFER_CREATED
#define F_LINKED LEDGER_TRANSFER_LINKED
#define F_PENDING LEDGER_TRANSFER_PENDING
#define F_POST LEDGER_TRANSFER_POST_PENDING
#define F_VOID LEDGER_TRANSFER_VOID_PENDING
#define F_BAL_DR LEDGER_TRANSFER_BALANCING_DEBIT
#define F_BAL_CR LEDGER_TRANSFER_BALANCING_CREDIT
#define F_CLOSE_DR LEDGER_TRANSFER_CLOSING_DEBIT
#define F_CLOSE_CR LEDGER_TRANSFER_CLOSING_CREDIT
#define F_IMPORTED LEDGER_TRANSFER_IMPORTED

/* Accounts of the fixture. */
enum {
    A = 1,      /* ledger 1, no limits */
    B = 2,      /* ledger 1, no limits */
    L2 = 3,     /* ledger 2 */
    DMNEC = 4,  /* ledger 1, debits_must_not_exceed_credits */
    CMNED = 5,  /* ledger 1, credits_must_not_exceed_debits */
    C = 6,      /* ledger 1, no limits */
    D = 7,      /* ledger 1, no limits */
    CLOSED = 8, /* ledger 1, created closed */
    MISSING = 999,
};

static int tx_setup(void **state) {
    tl_t *t = tl_new();
    if (!t) return -1;
    *state = t;
    tl_create_account(t, A, 1, 1, 0);
    tl_create_account(t, B, 1, 1, 0);
    tl_create_account(t, L2, 2, 1, 0);
    tl_create_account(t, DMNEC, 1, 1, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS);
    tl_create_account(t, CMNED, 1, 1, LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS);
    tl_create_account(t, C, 1, 1, 0);
    tl_create_account(t, D, 1, 1, 0);
    tl_create_account(t, CLOSED, 1, 1, LEDGER_ACCOUNT_CLOSED);
    tl_advance(t, 1000);
    return 0;
}

/* One transfer in its own batch, expecting `want`; checks invariants. */
static void expect1(tl_t *t, ledger_transfer_t x, uint32_t want) {
    assert_tr(tl_transfer1(t, x), want);
    tl_check(t);
}

/* Same, and the id must not be stored afterwards (unless it existed before). */
static void expect_fail(tl_t *t, ledger_transfer_t x, uint32_t want) {
    bool existed = tl_find_transfer(t, x.id, NULL);
    ledger_stats_t s0 = tl_stats(t);
    expect1(t, x, want);
    ledger_stats_t s1 = tl_stats(t);
    assert_int_equal(s1.transfers, s0.transfers);
    assert_int_equal(s1.pending_open, s0.pending_open);
    if (!existed) assert_false(tl_find_transfer(t, x.id, NULL));
}

/* ======================= created, basics ======================= */

static void test_created_single_phase(void **state) {
    tl_t *t = *state;
    ledger_transfer_t x = tl_tr(10, A, B, 123, 0);
    x.user_data_128 = (u128)7 << 90;
    x.user_data_64 = 64;
    x.user_data_32 = 32;
    x.code = 77;
    uint64_t ts = tl_ok(t, x);
    ledger_transfer_t s = tl_transfer(t, 10);
    assert_u128(s.debit_account_id, A);
    assert_u128(s.credit_account_id, B);
    assert_u128(s.amount, 123);
    assert_u128(s.user_data_128, (u128)7 << 90);
    assert_int_equal(s.user_data_64, 64);
    assert_int_equal(s.user_data_32, 32);
    assert_int_equal(s.ledger, 1);
    assert_int_equal(s.code, 77);
    assert_int_equal(s.flags, 0);
    assert_int_equal(s.timestamp, ts);
    assert_u128(s.pending_id, 0);
    tl_assert_balances(t, A, 0, 123, 0, 0);
    tl_assert_balances(t, B, 0, 0, 0, 123);
    assert_int_equal(tl_stats(t).transfers, 1);
    tl_check(t);
}

static void test_created_batch_timestamps(void **state) {
    tl_t *t = *state;
    ledger_transfer_t ev[3] = {tl_tr(1, A, B, 1, 0), tl_tr(2, A, A, 1, 0), tl_tr(3, A, B, 1, 0)};
    ledger_result_t res[3];
    uint64_t ts = t->clock + 50;
    assert_status(ledger_create_transfers(t->l, ts, ev, 3, res), LEDGER_OK);
    t->clock = ts;
    uint32_t want[3] = {CREATED, LEDGER_TRANSFER_ACCOUNTS_MUST_BE_DIFFERENT, CREATED};
    tl_assert_tr_results(res, want, 3);
    assert_int_equal(res[0].timestamp, ts - 2);
    assert_int_equal(res[2].timestamp, ts);
    assert_int_equal(tl_transfer(t, 1).timestamp, ts - 2);
    assert_int_equal(tl_transfer(t, 3).timestamp, ts);
    assert_int_equal(tl_stats(t).last_timestamp, ts);
    tl_check(t);
}

static void test_amount_zero_is_legal(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_tr(1, A, B, 0, 0));
    tl_ok(t, tl_pending(2, A, B, 0, 0));
    assert_u128(tl_transfer(t, 1).amount, 0);
    assert_u128(tl_transfer(t, 2).amount, 0);
    /* Even from a must-not-exceed account with nothing in it. */
    tl_ok(t, tl_tr(3, DMNEC, B, 0, 0));
    tl_ok(t, tl_tr(4, A, CMNED, 0, 0));
    tl_assert_balances(t, A, 0, 0, 0, 0);
    assert_int_equal(tl_stats(t).pending_open, 1);
    tl_check(t);
}

static void test_created_pending(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(1, A, B, 40, 0));
    tl_assert_balances(t, A, 40, 0, 0, 0);
    tl_assert_balances(t, B, 0, 0, 40, 0);
    ledger_transfer_t s = tl_transfer(t, 1);
    assert_int_equal(s.flags, F_PENDING);
    assert_u128(s.amount, 40);
    assert_int_equal(tl_stats(t).pending_open, 1);
    tl_check(t);
}

static void test_ordinary_transfers_skip_flags_mutually_exclusive(void **state) {
    tl_t *t = *state;
    /* pending + both balancing + both closing is fine for a non-post/void transfer. */
    ledger_transfer_t x =
        tl_tr(1, A, B, 5, F_PENDING | F_BAL_DR | F_BAL_CR | F_CLOSE_DR | F_CLOSE_CR);
    tl_ok(t, x);
    assert_u128(tl_transfer(t, 1).amount, 0); /* A has no credits, B no debits */
    assert_true(tl_closed(t, A));
    assert_true(tl_closed(t, B));
    tl_check(t);
}

/* ======================= batch-level codes ======================= */

static void test_linked_event_chain_open(void **state) {
    tl_t *t = *state;
    expect_fail(t, tl_tr(1, A, B, 1, F_LINKED), LEDGER_TRANSFER_LINKED_EVENT_CHAIN_OPEN);
    tl_assert_balances(t, A, 0, 0, 0, 0);
    /* It is not a transient failure: the id is free. */
    tl_ok(t, tl_tr(1, A, B, 1, 0));
}

static void test_linked_event_failed(void **state) {
    tl_t *t = *state;
    ledger_transfer_t ev[2] = {tl_tr(1, A, B, 1, F_LINKED), tl_tr(2, A, B, 1, 0)};
    ev[1].ledger = 0;
    ledger_result_t res[2];
    tl_transfers(t, ev, 2, res);
    uint32_t want[2] = {LEDGER_TRANSFER_LINKED_EVENT_FAILED,
                        LEDGER_TRANSFER_LEDGER_MUST_NOT_BE_ZERO};
    tl_assert_tr_results(res, want, 2);
    assert_false(tl_find_transfer(t, 1, NULL));
    tl_assert_balances(t, A, 0, 0, 0, 0);
    tl_check(t);
}

static void test_chain_open_beats_linked_event_failed(void **state) {
    tl_t *t = *state;
    ledger_transfer_t ev[3] = {tl_tr(1, A, B, 1, F_LINKED), tl_tr(2, A, A, 1, F_LINKED),
                               tl_tr(3, A, B, 1, F_LINKED)};
    ledger_result_t res[3];
    tl_transfers(t, ev, 3, res);
    uint32_t want[3] = {LEDGER_TRANSFER_LINKED_EVENT_FAILED,
                        LEDGER_TRANSFER_ACCOUNTS_MUST_BE_DIFFERENT,
                        LEDGER_TRANSFER_LINKED_EVENT_CHAIN_OPEN};
    tl_assert_tr_results(res, want, 3);
    assert_int_equal(tl_stats(t).transfers, 0);
    tl_check(t);
}

static void test_linked_event_failed_beats_imported_checks(void **state) {
    tl_t *t = *state;
    ledger_transfer_t imp = tl_tr(2, A, B, 1, F_IMPORTED | F_LINKED);
    imp.timestamp = 3;
    ledger_transfer_t tsnz = tl_tr(3, A, B, 1, F_LINKED);
    tsnz.timestamp = 3;
    ledger_transfer_t ev[4] = {tl_tr(1, A, B, 1, F_LINKED | (1u << 12)), imp, tsnz,
                               tl_tr(0, 0, 0, 0, 0)};
    ledger_result_t res[4];
    tl_transfers(t, ev, 4, res);
    uint32_t want[4] = {LEDGER_TRANSFER_RESERVED_FLAG, LEDGER_TRANSFER_LINKED_EVENT_FAILED,
                        LEDGER_TRANSFER_LINKED_EVENT_FAILED, LEDGER_TRANSFER_LINKED_EVENT_FAILED};
    tl_assert_tr_results(res, want, 4);
    tl_check(t);
}

static void test_imported_event_expected(void **state) {
    tl_t *t = *state;
    ledger_transfer_t a = tl_tr(1, A, B, 1, F_IMPORTED);
    a.timestamp = t->clock - 10;
    ledger_transfer_t b = tl_tr(2, A, B, 1, 0);
    ledger_transfer_t c = tl_tr(3, A, B, 1, 0);
    c.timestamp = 77; /* also timestamp_must_be_zero: imported_event_expected first */
    ledger_transfer_t ev[3] = {a, b, c};
    ledger_result_t res[3];
    tl_transfers(t, ev, 3, res);
    uint32_t want[3] = {CREATED, LEDGER_TRANSFER_IMPORTED_EVENT_EXPECTED,
                        LEDGER_TRANSFER_IMPORTED_EVENT_EXPECTED};
    tl_assert_tr_results(res, want, 3);
    assert_false(tl_find_transfer(t, 2, NULL));
    assert_int_equal(tl_transfer(t, 1).timestamp, a.timestamp);
    tl_check(t);
}

static void test_imported_event_not_expected(void **state) {
    tl_t *t = *state;
    ledger_transfer_t b = tl_tr(2, A, B, 1, F_IMPORTED);
    b.timestamp = t->clock - 10;
    ledger_transfer_t c = tl_tr(3, A, B, 1, F_IMPORTED);
    c.timestamp = 0; /* also out of range: not_expected first */
    ledger_transfer_t ev[3] = {tl_tr(1, A, B, 1, 0), b, c};
    ledger_result_t res[3];
    tl_transfers(t, ev, 3, res);
    uint32_t want[3] = {CREATED, LEDGER_TRANSFER_IMPORTED_EVENT_NOT_EXPECTED,
                        LEDGER_TRANSFER_IMPORTED_EVENT_NOT_EXPECTED};
    tl_assert_tr_results(res, want, 3);
    assert_false(tl_find_transfer(t, 2, NULL));
    tl_check(t);
}

static void test_timestamp_must_be_zero(void **state) {
    tl_t *t = *state;
    ledger_transfer_t x = tl_tr(1, A, B, 1, 0);
    x.timestamp = 1;
    expect_fail(t, x, LEDGER_TRANSFER_TIMESTAMP_MUST_BE_ZERO);
    /* ... precedes reserved_flag and id checks. */
    x.flags = 1u << 9;
    x.id = 0;
    expect_fail(t, x, LEDGER_TRANSFER_TIMESTAMP_MUST_BE_ZERO);
}

static void test_imported_timestamp_out_of_range(void **state) {
    tl_t *t = *state;
    ledger_transfer_t x = tl_tr(1, A, B, 1, F_IMPORTED);
    x.timestamp = 0;
    expect_fail(t, x, LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE);
    /* Above 2^63-1 (which also advances past the batch): out_of_range first. */
    x.timestamp = TL_TS_MAX + 1;
    expect_fail(t, x, LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE);
    x.timestamp = UINT64_MAX;
    x.flags |= 1u << 9;
    expect_fail(t, x, LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE);
}

static void test_imported_timestamp_must_not_advance(void **state) {
    tl_t *t = *state;
    ledger_transfer_t x = tl_tr(1, A, B, 1, F_IMPORTED);
    x.timestamp = t->clock + 1; /* == the batch timestamp */
    expect_fail(t, x, LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE);
    x.timestamp = t->clock + 1000;
    expect_fail(t, x, LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE);
    /* ... precedes reserved_flag. */
    x.timestamp = t->clock + 1;
    x.flags |= 1u << 10;
    expect_fail(t, x, LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE);
    /* One below the batch timestamp is fine. */
    x.flags = F_IMPORTED;
    x.timestamp = t->clock;
    uint64_t ts = 0;
    assert_tr(tl_transfer1_ts(t, x, &ts), CREATED);
    assert_int_equal(ts, t->clock - 1);
    tl_check(t);
}

/* ======================= reserved flag, ids ======================= */

static void test_reserved_flag(void **state) {
    tl_t *t = *state;
    for (unsigned bit = 9; bit < 16; bit++)
        expect_fail(t, tl_tr(1, A, B, 1, (uint16_t)(1u << bit)), LEDGER_TRANSFER_RESERVED_FLAG);
    /* reserved_flag precedes id_must_not_be_zero. */
    expect_fail(t, tl_tr(0, A, B, 1, 1u << 9), LEDGER_TRANSFER_RESERVED_FLAG);
    /* ... and the exists check. */
    tl_ok(t, tl_tr(5, A, B, 1, 0));
    expect1(t, tl_tr(5, A, B, 1, 1u << 9), LEDGER_TRANSFER_RESERVED_FLAG);
}

static void test_id_must_not_be_zero(void **state) {
    tl_t *t = *state;
    expect_fail(t, tl_tr(0, A, B, 1, 0), LEDGER_TRANSFER_ID_MUST_NOT_BE_ZERO);
    /* ... precedes debit_account_id_must_not_be_zero and everything after. */
    expect_fail(t, tl_tr(0, 0, 0, 0, F_POST | F_VOID), LEDGER_TRANSFER_ID_MUST_NOT_BE_ZERO);
}

static void test_id_must_not_be_int_max(void **state) {
    tl_t *t = *state;
    expect_fail(t, tl_tr(U128_MAX, A, B, 1, 0), LEDGER_TRANSFER_ID_MUST_NOT_BE_INT_MAX);
    expect_fail(t, tl_tr(U128_MAX, 0, 0, 0, F_POST | F_VOID),
                LEDGER_TRANSFER_ID_MUST_NOT_BE_INT_MAX);
    /* pending_id == id == MAX: id first. */
    expect_fail(t, tl_post(U128_MAX, U128_MAX, 0), LEDGER_TRANSFER_ID_MUST_NOT_BE_INT_MAX);
}

/* ======================= idempotency ======================= */

static ledger_transfer_t base_transfer(void) {
    ledger_transfer_t x = tl_tr(100, A, B, 10, 0);
    x.user_data_128 = 128;
    x.user_data_64 = 64;
    x.user_data_32 = 32;
    return x;
}

static void test_exists_returns_original_timestamp(void **state) {
    tl_t *t = *state;
    uint64_t ts0 = tl_ok(t, base_transfer());
    uint64_t ts = 0;
    assert_tr(tl_transfer1_ts(t, base_transfer(), &ts), LEDGER_TRANSFER_EXISTS);
    assert_int_equal(ts, ts0);
    assert_true(t->clock > ts0);
    /* Nothing moved twice. */
    tl_assert_balances(t, A, 0, 10, 0, 0);
    assert_int_equal(tl_stats(t).transfers, 1);
    /* Twice in one batch. */
    ledger_transfer_t ev[2] = {tl_tr(101, A, B, 1, 0), tl_tr(101, A, B, 1, 0)};
    ledger_result_t res[2];
    uint64_t bts = tl_transfers(t, ev, 2, res);
    uint32_t want[2] = {CREATED, LEDGER_TRANSFER_EXISTS};
    tl_assert_tr_results(res, want, 2);
    assert_int_equal(res[0].timestamp, bts - 1);
    assert_int_equal(res[1].timestamp, bts - 1);
    tl_assert_balances(t, A, 0, 11, 0, 0);
    tl_check(t);
}

static void test_exists_with_different_each_field(void **state) {
    tl_t *t = *state;
    tl_ok(t, base_transfer());
    ledger_transfer_t x;
    x = base_transfer();
    x.flags = F_LINKED; /* the linked bit counts too; complete the chain with a second event */
    {
        ledger_transfer_t ev[2] = {x, tl_tr(102, A, B, 1, 0)};
        ledger_result_t res[2];
        tl_transfers(t, ev, 2, res);
        uint32_t want[2] = {LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_FLAGS,
                            LEDGER_TRANSFER_LINKED_EVENT_FAILED};
        tl_assert_tr_results(res, want, 2);
    }
    x = base_transfer();
    x.flags = F_PENDING;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_FLAGS);
    x = base_transfer();
    x.pending_id = 5;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_PENDING_ID);
    x = base_transfer();
    x.timeout = 5;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_TIMEOUT);
    x = base_transfer();
    x.debit_account_id = C;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID);
    x = base_transfer();
    x.credit_account_id = C;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID);
    x = base_transfer();
    x.amount = 11;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_AMOUNT);
    x = base_transfer();
    x.amount = 9;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_AMOUNT);
    x = base_transfer();
    x.user_data_128 = 1;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_USER_DATA_128);
    x = base_transfer();
    x.user_data_64 = 1;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_USER_DATA_64);
    x = base_transfer();
    x.user_data_32 = 1;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_USER_DATA_32);
    x = base_transfer();
    x.ledger = 2;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_LEDGER);
    x = base_transfer();
    x.code = 2;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_CODE);
    /* The stored transfer is unchanged. */
    ledger_transfer_t s = tl_transfer(t, 100);
    assert_u128(s.amount, 10);
    assert_int_equal(s.code, 1);
    tl_assert_balances(t, A, 0, 10, 0, 0);
}

static void test_exists_with_different_precedence(void **state) {
    tl_t *t = *state;
    tl_ok(t, base_transfer());
    ledger_transfer_t x;
    /* flags vs pending_id */
    x = base_transfer();
    x.flags = F_PENDING;
    x.pending_id = 5;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_FLAGS);
    /* pending_id vs timeout */
    x = base_transfer();
    x.pending_id = 5;
    x.timeout = 5;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_PENDING_ID);
    /* timeout vs debit_account_id */
    x = base_transfer();
    x.timeout = 5;
    x.debit_account_id = C;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_TIMEOUT);
    /* debit vs credit */
    x = base_transfer();
    x.debit_account_id = C;
    x.credit_account_id = D;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID);
    /* credit vs amount */
    x = base_transfer();
    x.credit_account_id = D;
    x.amount = 1;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID);
    /* amount vs user_data_128 */
    x = base_transfer();
    x.amount = 1;
    x.user_data_128 = 1;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_AMOUNT);
    /* user_data_128 vs user_data_64 */
    x = base_transfer();
    x.user_data_128 = 1;
    x.user_data_64 = 1;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_USER_DATA_128);
    /* user_data_64 vs user_data_32 */
    x = base_transfer();
    x.user_data_64 = 1;
    x.user_data_32 = 1;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_USER_DATA_64);
    /* user_data_32 vs ledger */
    x = base_transfer();
    x.user_data_32 = 1;
    x.ledger = 2;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_USER_DATA_32);
    /* ledger vs code */
    x = base_transfer();
    x.ledger = 2;
    x.code = 2;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_LEDGER);
}

static void test_exists_check_precedes_validation(void **state) {
    tl_t *t = *state;
    tl_ok(t, base_transfer());
    ledger_transfer_t x;
    /* A resubmission is compared even when it is invalid otherwise. */
    x = base_transfer();
    x.debit_account_id = 0;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID);
    x = base_transfer();
    x.credit_account_id = U128_MAX;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID);
    x = base_transfer();
    x.ledger = 0;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_LEDGER);
    x = base_transfer();
    x.code = 0;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_CODE);
    x = base_transfer();
    x.flags = F_POST | F_VOID;
    expect1(t, x, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_FLAGS);
    /* The state changed since (account now closed by a closing transfer): still exists. */
    tl_ok(t, (ledger_transfer_t){.id = 50,
                                 .debit_account_id = A,
                                 .credit_account_id = B,
                                 .ledger = 1,
                                 .code = 1,
                                 .flags = F_PENDING | F_CLOSE_DR});
    assert_true(tl_closed(t, A));
    expect1(t, base_transfer(), LEDGER_TRANSFER_EXISTS);
}

static void test_exists_beats_exceeds_credits(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_tr(1, A, DMNEC, 10, 0));
    tl_ok(t, tl_tr(2, DMNEC, B, 10, 0)); /* drains it */
    expect1(t, tl_tr(2, DMNEC, B, 10, 0), LEDGER_TRANSFER_EXISTS);
    tl_assert_balances(t, DMNEC, 0, 10, 0, 10);
}

/* A pending transfer and a partial post of it with some fields inherited. */
static void setup_post(tl_t *t) {
    ledger_transfer_t p = tl_pending(200, A, B, 100, 0);
    p.user_data_128 = 11;
    p.user_data_64 = 12;
    p.user_data_32 = 13;
    tl_ok(t, p);
    ledger_transfer_t q = tl_post(201, 200, 60);
    q.user_data_64 = 99; /* own value; the rest inherited */
    tl_ok(t, q);
}

static ledger_transfer_t base_post(void) {
    ledger_transfer_t q = tl_post(201, 200, 60);
    q.user_data_64 = 99;
    return q;
}

static void test_post_stores_inherited_fields(void **state) {
    tl_t *t = *state;
    setup_post(t);
    ledger_transfer_t s = tl_transfer(t, 201);
    assert_u128(s.debit_account_id, A);
    assert_u128(s.credit_account_id, B);
    assert_int_equal(s.ledger, 1);
    assert_int_equal(s.code, 1);
    assert_u128(s.user_data_128, 11);
    assert_int_equal(s.user_data_64, 99);
    assert_int_equal(s.user_data_32, 13);
    assert_u128(s.amount, 60);
    assert_u128(s.pending_id, 200);
    assert_int_equal(s.timeout, 0);
    assert_int_equal(s.flags, F_POST);
    tl_assert_balances(t, A, 0, 60, 0, 0);
    tl_assert_balances(t, B, 0, 0, 0, 60);
    /* All user_data 0: all three inherited, by a post and by a void. */
    ledger_transfer_t p = tl_pending(210, C, D, 5, 0);
    p.user_data_128 = 21;
    p.user_data_64 = 22;
    p.user_data_32 = 23;
    p.code = 7;
    tl_ok(t, p);
    p.id = 211;
    tl_ok(t, p);
    tl_ok(t, tl_post(212, 210, U128_MAX));
    tl_ok(t, tl_void(213, 211, 0));
    for (u128 id = 212; id <= 213; id++) {
        ledger_transfer_t x = tl_transfer(t, id);
        assert_u128(x.user_data_128, 21);
        assert_int_equal(x.user_data_64, 22);
        assert_int_equal(x.user_data_32, 23);
        assert_int_equal(x.code, 7);
        assert_int_equal(x.ledger, 1);
        assert_u128(x.debit_account_id, C);
        assert_u128(x.credit_account_id, D);
        assert_u128(x.amount, 5);
    }
    tl_check(t);
}

static void test_post_exists_zero_means_inherited(void **state) {
    tl_t *t = *state;
    setup_post(t);
    uint64_t ts0 = tl_transfer(t, 201).timestamp;
    ledger_transfer_t q;
    uint64_t ts = 0;
    /* Same event. */
    assert_tr(tl_transfer1_ts(t, base_post(), &ts), LEDGER_TRANSFER_EXISTS);
    assert_int_equal(ts, ts0);
    /* Explicit values equal to the inherited ones. */
    q = base_post();
    q.debit_account_id = A;
    q.credit_account_id = B;
    q.ledger = 1;
    q.code = 1;
    q.user_data_128 = 11;
    q.user_data_32 = 13;
    expect1(t, q, LEDGER_TRANSFER_EXISTS);
    /* user_data_64 0 means "the pending's" (12), but the post stored its own 99. */
    q = base_post();
    q.user_data_64 = 0;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_USER_DATA_64);
    q = base_post();
    q.user_data_64 = 12;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_USER_DATA_64);
    q = base_post();
    q.user_data_128 = 12;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_USER_DATA_128);
    q = base_post();
    q.user_data_32 = 14;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_USER_DATA_32);
    q = base_post();
    q.debit_account_id = C;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID);
    q = base_post();
    q.credit_account_id = C;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID);
    q = base_post();
    q.amount = 61;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_AMOUNT);
    /* MAX means "the pending amount" (100) != the stored 60. */
    q = base_post();
    q.amount = U128_MAX;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_AMOUNT);
    q = base_post();
    q.ledger = 2;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_LEDGER);
    q = base_post();
    q.code = 2;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_CODE);
    q = base_post();
    q.flags = F_VOID;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_FLAGS);
    q = base_post();
    q.pending_id = 300;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_PENDING_ID);
    q = base_post();
    q.timeout = 1;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_TIMEOUT);
}

static void test_post_exists_precedence(void **state) {
    tl_t *t = *state;
    setup_post(t);
    ledger_transfer_t q;
    /* flags vs pending_id */
    q = base_post();
    q.flags = F_VOID;
    q.pending_id = 300;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_FLAGS);
    /* pending_id vs timeout */
    q = base_post();
    q.pending_id = 300;
    q.timeout = 1;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_PENDING_ID);
    /* timeout vs debit */
    q = base_post();
    q.timeout = 1;
    q.debit_account_id = C;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_TIMEOUT);
    /* debit vs credit */
    q = base_post();
    q.debit_account_id = C;
    q.credit_account_id = C;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID);
    /* credit vs amount */
    q = base_post();
    q.credit_account_id = C;
    q.amount = 1;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID);
    /* amount vs user_data_128 */
    q = base_post();
    q.amount = 1;
    q.user_data_128 = 1;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_AMOUNT);
    /* user_data_128 vs 64 */
    q = base_post();
    q.user_data_128 = 1;
    q.user_data_64 = 1;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_USER_DATA_128);
    /* user_data_64 vs 32 */
    q = base_post();
    q.user_data_64 = 1;
    q.user_data_32 = 1;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_USER_DATA_64);
    /* user_data_32 vs ledger */
    q = base_post();
    q.user_data_32 = 1;
    q.ledger = 2;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_USER_DATA_32);
    /* ledger vs code */
    q = base_post();
    q.ledger = 2;
    q.code = 2;
    expect1(t, q, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_LEDGER);
}

static void test_post_full_exists_with_max(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(300, A, B, 50, 0));
    tl_ok(t, tl_post(301, 300, U128_MAX));
    assert_u128(tl_transfer(t, 301).amount, 50);
    expect1(t, tl_post(301, 300, U128_MAX), LEDGER_TRANSFER_EXISTS);
    expect1(t, tl_post(301, 300, 50), LEDGER_TRANSFER_EXISTS);
    expect1(t, tl_post(301, 300, 0), LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_AMOUNT);
    expect1(t, tl_post(301, 300, 49), LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_AMOUNT);
}

static void test_void_exists_zero_means_pending_amount(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(400, A, B, 70, 0));
    tl_ok(t, tl_void(401, 400, 0));
    assert_u128(tl_transfer(t, 401).amount, 70);
    expect1(t, tl_void(401, 400, 0), LEDGER_TRANSFER_EXISTS);
    expect1(t, tl_void(401, 400, 70), LEDGER_TRANSFER_EXISTS);
    expect1(t, tl_void(401, 400, 69), LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_AMOUNT);
    expect1(t, tl_void(401, 400, U128_MAX), LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_AMOUNT);
    ledger_transfer_t v = tl_void(401, 400, 0);
    v.user_data_32 = 5; /* pending has 0, so the stored void has 0 */
    expect1(t, v, LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_USER_DATA_32);
}

static void test_balancing_exists_amount_upper_bound(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_tr(1, B, DMNEC, 50, 0));
    tl_ok(t, tl_tr(500, DMNEC, B, 100, F_BAL_DR));
    assert_u128(tl_transfer(t, 500).amount, 50);
    /* Any bound at least the stored amount is the same transfer. */
    expect1(t, tl_tr(500, DMNEC, B, 100, F_BAL_DR), LEDGER_TRANSFER_EXISTS);
    expect1(t, tl_tr(500, DMNEC, B, 50, F_BAL_DR), LEDGER_TRANSFER_EXISTS);
    expect1(t, tl_tr(500, DMNEC, B, U128_MAX, F_BAL_DR), LEDGER_TRANSFER_EXISTS);
    expect1(t, tl_tr(500, DMNEC, B, 49, F_BAL_DR), LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_AMOUNT);
    expect1(t, tl_tr(500, DMNEC, B, 0, F_BAL_DR), LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_AMOUNT);
    tl_assert_balances(t, DMNEC, 0, 50, 0, 50);
}

/* ======================= id_already_failed ======================= */

static void test_id_already_failed_for_each_transient_code(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(900, A, B, 5, 0));
    struct {
        ledger_transfer_t x;
        uint32_t code;
    } cases[] = {
        {tl_tr(1, MISSING, B, 1, 0), LEDGER_TRANSFER_DEBIT_ACCOUNT_NOT_FOUND},
        {tl_tr(2, A, MISSING, 1, 0), LEDGER_TRANSFER_CREDIT_ACCOUNT_NOT_FOUND},
        {tl_post(3, MISSING, 0), LEDGER_TRANSFER_PENDING_TRANSFER_NOT_FOUND},
        {tl_tr(4, DMNEC, B, 1, 0), LEDGER_TRANSFER_EXCEEDS_CREDITS},
        {tl_tr(5, A, CMNED, 1, 0), LEDGER_TRANSFER_EXCEEDS_DEBITS},
        {tl_tr(6, CLOSED, B, 1, 0), LEDGER_TRANSFER_DEBIT_ACCOUNT_ALREADY_CLOSED},
        {tl_tr(7, A, CLOSED, 1, 0), LEDGER_TRANSFER_CREDIT_ACCOUNT_ALREADY_CLOSED},
    };
    uint32_t n = sizeof cases / sizeof cases[0];
    for (uint32_t i = 0; i < n; i++) {
        uint32_t before = tl_stats(t).failed_ids;
        expect_fail(t, cases[i].x, cases[i].code);
        assert_int_equal(tl_stats(t).failed_ids, before + 1);
        /* The same event again, then a perfectly valid event with that id. */
        expect_fail(t, cases[i].x, LEDGER_TRANSFER_ID_ALREADY_FAILED);
        expect_fail(t, tl_tr(cases[i].x.id, A, B, 1, 0), LEDGER_TRANSFER_ID_ALREADY_FAILED);
        assert_int_equal(tl_stats(t).failed_ids, before + 1);
    }
    /* Even once the state that made them fail changed. */
    tl_create_account(t, MISSING, 1, 1, 0);
    expect_fail(t, tl_tr(1, MISSING, B, 1, 0), LEDGER_TRANSFER_ID_ALREADY_FAILED);
    expect_fail(t, tl_tr(2, A, MISSING, 1, 0), LEDGER_TRANSFER_ID_ALREADY_FAILED);
    tl_ok(t, tl_tr(50, A, DMNEC, 10, 0));
    expect_fail(t, tl_tr(4, DMNEC, B, 1, 0), LEDGER_TRANSFER_ID_ALREADY_FAILED);
    tl_assert_balances(t, A, 5, 10, 0, 0);
}

static void test_id_already_failed_precedence(void **state) {
    tl_t *t = *state;
    expect_fail(t, tl_tr(1, MISSING, B, 1, 0), LEDGER_TRANSFER_DEBIT_ACCOUNT_NOT_FOUND);
    /* id_already_failed precedes flags_are_mutually_exclusive and every later check. */
    expect_fail(t, tl_tr(1, 0, 0, 0, F_POST | F_VOID), LEDGER_TRANSFER_ID_ALREADY_FAILED);
    expect_fail(t, tl_tr(1, 0, 0, 0, 0), LEDGER_TRANSFER_ID_ALREADY_FAILED);
    expect_fail(t, tl_post(1, 0, 0), LEDGER_TRANSFER_ID_ALREADY_FAILED);
    /* The id checks and reserved_flag still come first. */
    expect_fail(t, tl_tr(1, A, B, 1, 1u << 9), LEDGER_TRANSFER_RESERVED_FLAG);
}

static void test_failed_id_is_not_a_pending_transfer(void **state) {
    tl_t *t = *state;
    /* A pending transfer that failed with exceeds_credits: its id is not found by post/void
     * nor by lookups. */
    expect_fail(t, tl_pending(1, DMNEC, B, 10, 0), LEDGER_TRANSFER_EXCEEDS_CREDITS);
    expect_fail(t, tl_post(2, 1, U128_MAX), LEDGER_TRANSFER_PENDING_TRANSFER_NOT_FOUND);
    expect_fail(t, tl_void(3, 1, 0), LEDGER_TRANSFER_PENDING_TRANSFER_NOT_FOUND);
    ledger_transfer_t out[1];
    u128 id = 1;
    assert_int_equal(ledger_lookup_transfers(t->l, &id, 1, out), 0);
}

static void test_no_id_already_failed_for_other_codes(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_tr(1000, A, B, 5, 0));      /* single-phase, for not_pending */
    tl_ok(t, tl_pending(1001, A, B, 5, 0)); /* pending, posted below */
    tl_ok(t, tl_post(1002, 1001, U128_MAX));
    tl_ok(t, tl_pending(1003, A, B, 5, 0)); /* pending, voided below */
    tl_ok(t, tl_void(1004, 1003, 0));
    tl_ok(t, tl_pending(1005, A, B, 5, 0));   /* open pending */
    tl_ok(t, tl_tr(1006, C, D, U128_MAX, 0)); /* C's debits_posted is full */
    ledger_transfer_t imp = tl_tr(19, A, B, 1, F_IMPORTED);
    imp.timestamp = 1; /* regresses */
    ledger_transfer_t tsnz = tl_tr(20, A, B, 1, 0);
    tsnz.timestamp = 5;
    ledger_transfer_t pid = tl_tr(10, A, B, 1, 0);
    pid.pending_id = 5;
    ledger_transfer_t tmo = tl_tr(11, A, B, 1, 0);
    tmo.timeout = 5;
    ledger_transfer_t l0 = tl_tr(12, A, B, 1, 0);
    l0.ledger = 0;
    ledger_transfer_t c0 = tl_tr(13, A, B, 1, 0);
    c0.code = 0;
    ledger_transfer_t tl_wrong = tl_tr(15, A, B, 1, 0);
    tl_wrong.ledger = 2;
    ledger_transfer_t pdiff = tl_post(22, 1005, 1);
    pdiff.debit_account_id = C;
    struct {
        ledger_transfer_t x;
        uint32_t code;
    } cases[] = {
        {tl_tr(1, A, B, 1, F_LINKED), LEDGER_TRANSFER_LINKED_EVENT_CHAIN_OPEN},
        {tsnz, LEDGER_TRANSFER_TIMESTAMP_MUST_BE_ZERO},
        {tl_tr(2, A, B, 1, 1u << 13), LEDGER_TRANSFER_RESERVED_FLAG},
        {tl_tr(3, A, B, 1, F_POST | F_VOID), LEDGER_TRANSFER_FLAGS_ARE_MUTUALLY_EXCLUSIVE},
        {tl_tr(4, 0, B, 1, 0), LEDGER_TRANSFER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO},
        {tl_tr(5, U128_MAX, B, 1, 0), LEDGER_TRANSFER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX},
        {tl_tr(6, A, 0, 1, 0), LEDGER_TRANSFER_CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO},
        {tl_tr(7, A, U128_MAX, 1, 0), LEDGER_TRANSFER_CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX},
        {tl_tr(8, A, A, 1, 0), LEDGER_TRANSFER_ACCOUNTS_MUST_BE_DIFFERENT},
        {pid, LEDGER_TRANSFER_PENDING_ID_MUST_BE_ZERO},
        {tl_post(9, 0, 1), LEDGER_TRANSFER_PENDING_ID_MUST_NOT_BE_ZERO},
        {tl_post(16, U128_MAX, 1), LEDGER_TRANSFER_PENDING_ID_MUST_NOT_BE_INT_MAX},
        {tl_post(17, 17, 1), LEDGER_TRANSFER_PENDING_ID_MUST_BE_DIFFERENT},
        {tmo, LEDGER_TRANSFER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER},
        {tl_tr(18, A, B, 1, F_CLOSE_DR), LEDGER_TRANSFER_CLOSING_TRANSFER_MUST_BE_PENDING},
        {l0, LEDGER_TRANSFER_LEDGER_MUST_NOT_BE_ZERO},
        {c0, LEDGER_TRANSFER_CODE_MUST_NOT_BE_ZERO},
        {tl_tr(14, A, L2, 1, 0), LEDGER_TRANSFER_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER},
        {tl_wrong, LEDGER_TRANSFER_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS},
        {tl_post(21, 1000, 1), LEDGER_TRANSFER_PENDING_TRANSFER_NOT_PENDING},
        {pdiff, LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID},
        {tl_post(23, 1005, 6), LEDGER_TRANSFER_EXCEEDS_PENDING_TRANSFER_AMOUNT},
        {tl_void(24, 1005, 4), LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT},
        {tl_post(25, 1001, 1), LEDGER_TRANSFER_PENDING_TRANSFER_ALREADY_POSTED},
        {tl_void(26, 1003, 0), LEDGER_TRANSFER_PENDING_TRANSFER_ALREADY_VOIDED},
        {tl_tr(27, C, D, 1, 0), LEDGER_TRANSFER_OVERFLOWS_DEBITS_POSTED},
    };
    uint32_t n = sizeof cases / sizeof cases[0];
    for (uint32_t i = 0; i < n; i++) expect_fail(t, cases[i].x, cases[i].code);
    /* The imported one needs a batch of its own kind. */
    expect_fail(t, imp, LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
    assert_int_equal(tl_stats(t).failed_ids, 0);
    /* Every id is still free. */
    for (uint32_t i = 0; i < n; i++) {
        ledger_transfer_t ok = tl_tr(cases[i].x.id, A, B, 1, 0);
        tl_ok(t, ok);
    }
    tl_ok(t, tl_tr(imp.id, A, B, 1, 0));
    tl_check(t);
}

static void test_expired_is_not_transient(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(1, A, B, 5, 1));
    tl_advance(t, 2 * TL_NS_PER_S);
    expect_fail(t, tl_post(2, 1, U128_MAX), LEDGER_TRANSFER_PENDING_TRANSFER_EXPIRED);
    assert_int_equal(tl_stats(t).failed_ids, 0);
    tl_ok(t, tl_tr(2, A, B, 1, 0));
}

/* ======================= flags_are_mutually_exclusive ======================= */

static void test_flags_are_mutually_exclusive(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(1, A, B, 10, 0));
    uint16_t combos[] = {F_POST | F_VOID,     F_POST | F_PENDING, F_VOID | F_PENDING,
                         F_POST | F_BAL_DR,   F_VOID | F_BAL_CR,  F_POST | F_CLOSE_DR,
                         F_VOID | F_CLOSE_CR, F_POST | F_BAL_CR,  F_VOID | F_BAL_DR,
                         F_POST | F_CLOSE_CR, F_VOID | F_CLOSE_DR};
    for (uint32_t i = 0; i < sizeof combos / sizeof combos[0]; i++) {
        ledger_transfer_t q = tl_post(2, 1, 0);
        q.flags = combos[i];
        expect_fail(t, q, LEDGER_TRANSFER_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
    }
    tl_assert_balances(t, A, 10, 0, 0, 0);
    /* ... precedes the pending_id checks and timeout. */
    ledger_transfer_t q = tl_post(2, 0, 0);
    q.flags = F_POST | F_VOID;
    q.timeout = 1;
    expect_fail(t, q, LEDGER_TRANSFER_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
    /* ... and the (ordinary) account id checks. */
    q = tl_tr(2, 0, 0, 0, F_VOID | F_PENDING);
    expect_fail(t, q, LEDGER_TRANSFER_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
}

/* ======================= account id checks ======================= */

static void test_account_id_checks(void **state) {
    tl_t *t = *state;
    expect_fail(t, tl_tr(1, 0, B, 1, 0), LEDGER_TRANSFER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO);
    expect_fail(t, tl_tr(1, U128_MAX, B, 1, 0),
                LEDGER_TRANSFER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX);
    expect_fail(t, tl_tr(1, A, 0, 1, 0), LEDGER_TRANSFER_CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO);
    expect_fail(t, tl_tr(1, A, U128_MAX, 1, 0),
                LEDGER_TRANSFER_CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX);
    expect_fail(t, tl_tr(1, A, A, 1, 0), LEDGER_TRANSFER_ACCOUNTS_MUST_BE_DIFFERENT);
    expect_fail(t, tl_tr(1, MISSING, MISSING, 1, 0), LEDGER_TRANSFER_ACCOUNTS_MUST_BE_DIFFERENT);
}

static void test_account_id_checks_precedence(void **state) {
    tl_t *t = *state;
    ledger_transfer_t x;
    /* debit zero vs credit zero (and all later ones) */
    x = tl_tr(1, 0, 0, 1, 0);
    x.pending_id = 1;
    x.timeout = 1;
    x.ledger = 0;
    x.code = 0;
    expect_fail(t, x, LEDGER_TRANSFER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO);
    /* debit int_max vs credit zero */
    x.debit_account_id = U128_MAX;
    expect_fail(t, x, LEDGER_TRANSFER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX);
    /* debit int_max vs credit int_max / accounts_must_be_different */
    x.credit_account_id = U128_MAX;
    expect_fail(t, x, LEDGER_TRANSFER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX);
    /* credit zero vs pending_id_must_be_zero */
    x.debit_account_id = A;
    x.credit_account_id = 0;
    expect_fail(t, x, LEDGER_TRANSFER_CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO);
    /* credit int_max vs pending_id_must_be_zero */
    x.credit_account_id = U128_MAX;
    expect_fail(t, x, LEDGER_TRANSFER_CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX);
    /* accounts_must_be_different vs pending_id_must_be_zero */
    x.credit_account_id = A;
    expect_fail(t, x, LEDGER_TRANSFER_ACCOUNTS_MUST_BE_DIFFERENT);
    /* pending_id_must_be_zero vs timeout_reserved (single-phase) and later */
    x.credit_account_id = B;
    expect_fail(t, x, LEDGER_TRANSFER_PENDING_ID_MUST_BE_ZERO);
}

/* ======================= pending_id / timeout / closing ======================= */

static void test_pending_id_must_be_zero(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(1, A, B, 5, 0));
    ledger_transfer_t x = tl_tr(2, A, B, 1, 0);
    x.pending_id = 1;
    expect_fail(t, x, LEDGER_TRANSFER_PENDING_ID_MUST_BE_ZERO);
    x.flags = F_PENDING;
    expect_fail(t, x, LEDGER_TRANSFER_PENDING_ID_MUST_BE_ZERO);
    /* Ordinary transfers skip the pending-transfer checks. */
    x.flags = 0;
    x.pending_id = MISSING;
    expect_fail(t, x, LEDGER_TRANSFER_PENDING_ID_MUST_BE_ZERO);
}

static void test_pending_id_checks_of_post_void(void **state) {
    tl_t *t = *state;
    expect_fail(t, tl_post(1, 0, 0), LEDGER_TRANSFER_PENDING_ID_MUST_NOT_BE_ZERO);
    expect_fail(t, tl_void(1, 0, 0), LEDGER_TRANSFER_PENDING_ID_MUST_NOT_BE_ZERO);
    expect_fail(t, tl_post(1, U128_MAX, 0), LEDGER_TRANSFER_PENDING_ID_MUST_NOT_BE_INT_MAX);
    expect_fail(t, tl_void(1, U128_MAX, 0), LEDGER_TRANSFER_PENDING_ID_MUST_NOT_BE_INT_MAX);
    expect_fail(t, tl_post(1, 1, 0), LEDGER_TRANSFER_PENDING_ID_MUST_BE_DIFFERENT);
    expect_fail(t, tl_void(1, 1, 0), LEDGER_TRANSFER_PENDING_ID_MUST_BE_DIFFERENT);
    /* Each precedes timeout_reserved_for_pending_transfer. */
    ledger_transfer_t q = tl_post(1, 0, 0);
    q.timeout = 1;
    expect_fail(t, q, LEDGER_TRANSFER_PENDING_ID_MUST_NOT_BE_ZERO);
    q.pending_id = U128_MAX;
    expect_fail(t, q, LEDGER_TRANSFER_PENDING_ID_MUST_NOT_BE_INT_MAX);
    q.pending_id = 1;
    expect_fail(t, q, LEDGER_TRANSFER_PENDING_ID_MUST_BE_DIFFERENT);
}

static void test_timeout_reserved_for_pending_transfer(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(1, A, B, 5, 0));
    ledger_transfer_t x = tl_tr(2, A, B, 1, 0);
    x.timeout = 1;
    expect_fail(t, x, LEDGER_TRANSFER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER);
    /* ... precedes closing_transfer_must_be_pending. */
    x.flags = F_CLOSE_DR;
    expect_fail(t, x, LEDGER_TRANSFER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER);
    /* Post and void with a timeout; precedes pending_transfer_not_found. */
    ledger_transfer_t q = tl_post(3, 1, 0);
    q.timeout = 1;
    expect_fail(t, q, LEDGER_TRANSFER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER);
    q = tl_void(3, 1, 0);
    q.timeout = 1;
    expect_fail(t, q, LEDGER_TRANSFER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER);
    q = tl_void(3, MISSING, 0);
    q.timeout = 1;
    expect_fail(t, q, LEDGER_TRANSFER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER);
    tl_assert_balances(t, A, 5, 0, 0, 0);
}

static void test_closing_transfer_must_be_pending(void **state) {
    tl_t *t = *state;
    expect_fail(t, tl_tr(1, A, B, 1, F_CLOSE_DR), LEDGER_TRANSFER_CLOSING_TRANSFER_MUST_BE_PENDING);
    expect_fail(t, tl_tr(1, A, B, 1, F_CLOSE_CR), LEDGER_TRANSFER_CLOSING_TRANSFER_MUST_BE_PENDING);
    assert_false(tl_closed(t, A));
    assert_false(tl_closed(t, B));
    /* ... precedes ledger_must_not_be_zero. */
    ledger_transfer_t x = tl_tr(1, A, B, 1, F_CLOSE_DR);
    x.ledger = 0;
    x.code = 0;
    expect_fail(t, x, LEDGER_TRANSFER_CLOSING_TRANSFER_MUST_BE_PENDING);
}

/* ======================= ledger / code / accounts ======================= */

static void test_ledger_and_code_must_not_be_zero(void **state) {
    tl_t *t = *state;
    ledger_transfer_t x = tl_tr(1, A, B, 1, 0);
    x.ledger = 0;
    expect_fail(t, x, LEDGER_TRANSFER_LEDGER_MUST_NOT_BE_ZERO);
    /* ledger vs code */
    x.code = 0;
    expect_fail(t, x, LEDGER_TRANSFER_LEDGER_MUST_NOT_BE_ZERO);
    x.ledger = 1;
    expect_fail(t, x, LEDGER_TRANSFER_CODE_MUST_NOT_BE_ZERO);
    /* code vs debit_account_not_found */
    x.debit_account_id = MISSING;
    expect_fail(t, x, LEDGER_TRANSFER_CODE_MUST_NOT_BE_ZERO);
    /* Pending too. */
    x = tl_pending(1, A, B, 1, 0);
    x.ledger = 0;
    expect_fail(t, x, LEDGER_TRANSFER_LEDGER_MUST_NOT_BE_ZERO);
    assert_int_equal(tl_stats(t).failed_ids, 0);
}

static void test_account_not_found(void **state) {
    tl_t *t = *state;
    expect_fail(t, tl_tr(1, MISSING, B, 1, 0), LEDGER_TRANSFER_DEBIT_ACCOUNT_NOT_FOUND);
    expect_fail(t, tl_tr(2, A, MISSING, 1, 0), LEDGER_TRANSFER_CREDIT_ACCOUNT_NOT_FOUND);
    /* debit vs credit */
    expect_fail(t, tl_tr(3, MISSING, MISSING + 1, 1, 0), LEDGER_TRANSFER_DEBIT_ACCOUNT_NOT_FOUND);
    /* debit_not_found precedes the ledger checks (transfer on a wrong ledger too). */
    ledger_transfer_t x = tl_tr(4, MISSING, L2, 1, 0);
    x.ledger = 9;
    expect_fail(t, x, LEDGER_TRANSFER_DEBIT_ACCOUNT_NOT_FOUND);
    x = tl_tr(5, L2, MISSING, 1, 0);
    expect_fail(t, x, LEDGER_TRANSFER_CREDIT_ACCOUNT_NOT_FOUND);
}

static void test_ledger_mismatch(void **state) {
    tl_t *t = *state;
    expect_fail(t, tl_tr(1, A, L2, 1, 0), LEDGER_TRANSFER_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER);
    ledger_transfer_t x = tl_tr(2, A, B, 1, 0);
    x.ledger = 2;
    expect_fail(t, x, LEDGER_TRANSFER_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS);
    /* accounts_must_have_the_same_ledger vs transfer_must_have... (matches neither / cr). */
    x = tl_tr(3, A, L2, 1, 0);
    x.ledger = 2;
    expect_fail(t, x, LEDGER_TRANSFER_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER);
    x.ledger = 7;
    expect_fail(t, x, LEDGER_TRANSFER_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER);
    /* transfer_must_have_the_same_ledger precedes the closed check and the limits. */
    x = tl_tr(4, CLOSED, DMNEC, 1, 0);
    x.ledger = 2;
    expect_fail(t, x, LEDGER_TRANSFER_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS);
    x = tl_tr(5, DMNEC, B, 1, 0);
    x.ledger = 2;
    expect_fail(t, x, LEDGER_TRANSFER_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS);
    assert_int_equal(tl_stats(t).failed_ids, 0);
    /* On ledger 2 it works between ledger-2 accounts. */
    tl_create_account(t, 30, 2, 1, 0);
    x = tl_tr(6, L2, 30, 1, 0);
    x.ledger = 2;
    tl_ok(t, x);
}

/* ======================= pending-transfer checks ======================= */

static void test_pending_transfer_not_found(void **state) {
    tl_t *t = *state;
    expect_fail(t, tl_post(1, MISSING, 0), LEDGER_TRANSFER_PENDING_TRANSFER_NOT_FOUND);
    expect_fail(t, tl_void(2, MISSING, 0), LEDGER_TRANSFER_PENDING_TRANSFER_NOT_FOUND);
    /* Post/void skip the ordinary account checks: ids that would be invalid for a
     * single-phase transfer don't matter before the pending transfer is found. */
    ledger_transfer_t q = tl_post(3, MISSING, 0);
    q.debit_account_id = U128_MAX;
    q.credit_account_id = U128_MAX;
    q.ledger = 0;
    q.code = 0;
    expect_fail(t, q, LEDGER_TRANSFER_PENDING_TRANSFER_NOT_FOUND);
}

static void test_pending_transfer_not_pending(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_tr(1, A, B, 5, 0));
    expect_fail(t, tl_post(2, 1, 0), LEDGER_TRANSFER_PENDING_TRANSFER_NOT_PENDING);
    expect_fail(t, tl_void(2, 1, 0), LEDGER_TRANSFER_PENDING_TRANSFER_NOT_PENDING);
    /* A post itself is not pending either. */
    tl_ok(t, tl_pending(3, A, B, 5, 0));
    tl_ok(t, tl_post(4, 3, 5));
    expect_fail(t, tl_void(5, 4, 0), LEDGER_TRANSFER_PENDING_TRANSFER_NOT_PENDING);
    /* not_pending vs has_different_debit_account_id */
    ledger_transfer_t q = tl_post(2, 1, 0);
    q.debit_account_id = C;
    q.amount = 999;
    expect_fail(t, q, LEDGER_TRANSFER_PENDING_TRANSFER_NOT_PENDING);
    tl_assert_balances(t, A, 0, 10, 0, 0);
}

static void test_pending_transfer_has_different_fields(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(1, A, B, 10, 0));
    ledger_transfer_t q;
    q = tl_post(2, 1, 5);
    q.debit_account_id = C;
    expect_fail(t, q, LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID);
    q = tl_void(2, 1, 0);
    q.credit_account_id = C;
    expect_fail(t, q, LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID);
    q = tl_post(2, 1, 5);
    q.ledger = 2;
    expect_fail(t, q, LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_LEDGER);
    q = tl_post(2, 1, 5);
    q.code = 2;
    expect_fail(t, q, LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_CODE);
    /* Post/void never get accounts_must_be_different: debit == credit == wrong id. */
    q = tl_post(2, 1, 5);
    q.debit_account_id = C;
    q.credit_account_id = C;
    expect_fail(t, q, LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID);
    /* Swapped accounts. */
    q = tl_post(2, 1, 5);
    q.debit_account_id = B;
    q.credit_account_id = A;
    expect_fail(t, q, LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID);
    /* user_data may differ freely; explicit matching fields are fine. */
    q = tl_post(2, 1, 5);
    q.debit_account_id = A;
    q.credit_account_id = B;
    q.ledger = 1;
    q.code = 1;
    q.user_data_128 = 555;
    tl_ok(t, q);
    assert_u128(tl_transfer(t, 2).user_data_128, 555);
    tl_assert_balances(t, A, 0, 5, 0, 0);
}

static void test_pending_transfer_has_different_precedence(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(1, A, B, 10, 0));
    ledger_transfer_t q;
    /* debit vs credit */
    q = tl_post(2, 1, 5);
    q.debit_account_id = C;
    q.credit_account_id = D;
    expect_fail(t, q, LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID);
    /* credit vs ledger */
    q = tl_post(2, 1, 5);
    q.credit_account_id = D;
    q.ledger = 2;
    expect_fail(t, q, LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID);
    /* ledger vs code */
    q = tl_post(2, 1, 5);
    q.ledger = 2;
    q.code = 2;
    expect_fail(t, q, LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_LEDGER);
    /* code vs exceeds_pending_transfer_amount */
    q = tl_post(2, 1, 11);
    q.code = 2;
    expect_fail(t, q, LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_CODE);
    /* exceeds_pending_transfer_amount is the void's "wrong amount" when above. */
    q = tl_void(2, 1, 11);
    expect_fail(t, q, LEDGER_TRANSFER_EXCEEDS_PENDING_TRANSFER_AMOUNT);
}

static void test_exceeds_pending_transfer_amount(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(1, A, B, 10, 0));
    expect_fail(t, tl_post(2, 1, 11), LEDGER_TRANSFER_EXCEEDS_PENDING_TRANSFER_AMOUNT);
    expect_fail(t, tl_post(2, 1, U128_MAX - 1), LEDGER_TRANSFER_EXCEEDS_PENDING_TRANSFER_AMOUNT);
    expect_fail(t, tl_void(2, 1, 11), LEDGER_TRANSFER_EXCEEDS_PENDING_TRANSFER_AMOUNT);
    /* For a void, MAX is not "all". */
    expect_fail(t, tl_void(2, 1, U128_MAX), LEDGER_TRANSFER_EXCEEDS_PENDING_TRANSFER_AMOUNT);
    tl_assert_balances(t, A, 10, 0, 0, 0);
}

static void test_pending_transfer_has_different_amount(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(1, A, B, 10, 0));
    expect_fail(t, tl_void(2, 1, 9), LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT);
    expect_fail(t, tl_void(2, 1, 1), LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT);
    /* A post below the pending amount is a partial post, not a different amount. */
    tl_ok(t, tl_post(3, 1, 9));
    /* different_amount precedes already_posted. */
    expect_fail(t, tl_void(4, 1, 9), LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT);
    /* exceeds_pending_transfer_amount precedes already_posted too. */
    expect_fail(t, tl_post(4, 1, 11), LEDGER_TRANSFER_EXCEEDS_PENDING_TRANSFER_AMOUNT);
    expect_fail(t, tl_void(4, 1, 0), LEDGER_TRANSFER_PENDING_TRANSFER_ALREADY_POSTED);
}

static void test_already_posted_and_voided(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(1, A, B, 10, 0));
    tl_ok(t, tl_post(2, 1, 10));
    expect_fail(t, tl_post(3, 1, 10), LEDGER_TRANSFER_PENDING_TRANSFER_ALREADY_POSTED);
    expect_fail(t, tl_void(3, 1, 0), LEDGER_TRANSFER_PENDING_TRANSFER_ALREADY_POSTED);
    tl_ok(t, tl_pending(4, A, B, 10, 0));
    tl_ok(t, tl_void(5, 4, 0));
    expect_fail(t, tl_post(6, 4, U128_MAX), LEDGER_TRANSFER_PENDING_TRANSFER_ALREADY_VOIDED);
    expect_fail(t, tl_void(6, 4, 10), LEDGER_TRANSFER_PENDING_TRANSFER_ALREADY_VOIDED);
    tl_assert_balances(t, A, 0, 10, 0, 0);
    tl_assert_balances(t, B, 0, 0, 0, 10);
    assert_int_equal(tl_stats(t).failed_ids, 0);
}

static void test_already_posted_beats_expired(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(1, A, B, 10, 1));
    tl_ok(t, tl_post(2, 1, 10));
    tl_ok(t, tl_pending(3, A, B, 10, 1));
    tl_ok(t, tl_void(4, 3, 0));
    tl_advance(t, 5 * TL_NS_PER_S);
    expect_fail(t, tl_post(5, 1, 10), LEDGER_TRANSFER_PENDING_TRANSFER_ALREADY_POSTED);
    expect_fail(t, tl_void(5, 3, 0), LEDGER_TRANSFER_PENDING_TRANSFER_ALREADY_VOIDED);
    assert_int_equal(tl_expire(t, t->clock + 1), 0);
    expect_fail(t, tl_post(5, 1, 10), LEDGER_TRANSFER_PENDING_TRANSFER_ALREADY_POSTED);
}

static void test_pending_transfer_expired(void **state) {
    tl_t *t = *state;
    uint64_t ts = tl_ok(t, tl_pending(1, A, B, 10, 1));
    tl_set_clock(t, ts + TL_NS_PER_S - 1); /* the next event is exactly at the expiry time */
    expect_fail(t, tl_post(2, 1, 10), LEDGER_TRANSFER_PENDING_TRANSFER_EXPIRED);
    /* Not yet released: no expiry ran. */
    tl_assert_balances(t, A, 10, 0, 0, 0);
    assert_int_equal(tl_expire(t, t->clock), 1);
    tl_assert_balances(t, A, 0, 0, 0, 0);
    expect_fail(t, tl_void(2, 1, 0), LEDGER_TRANSFER_PENDING_TRANSFER_EXPIRED);
    /* expired precedes the closed checks (post/void on a closed account). */
    uint64_t ts2 = tl_ok(t, tl_pending(3, A, B, 10, 1));
    tl_ok(t, (ledger_transfer_t){.id = 4,
                                 .debit_account_id = A,
                                 .credit_account_id = B,
                                 .ledger = 1,
                                 .code = 1,
                                 .flags = F_PENDING | F_CLOSE_DR});
    tl_set_clock(t, ts2 + 2 * TL_NS_PER_S);
    expect_fail(t, tl_post(5, 3, 10), LEDGER_TRANSFER_PENDING_TRANSFER_EXPIRED);
}

/* ======================= imported transfers ======================= */

/* An imported transfer batch of one at the next batch timestamp; the event keeps its own. */
static uint32_t imported1(tl_t *t, ledger_transfer_t x, uint64_t ts) {
    x.flags |= F_IMPORTED;
    x.timestamp = ts;
    return tl_transfer1(t, x);
}

static void test_imported_transfer_created(void **state) {
    tl_t *t = *state;
    uint64_t when = t->clock - 500; /* after every account, before the batch */
    ledger_transfer_t x = tl_tr(1, A, B, 7, F_IMPORTED);
    x.timestamp = when;
    uint64_t rts = 0;
    assert_tr(tl_transfer1_ts(t, x, &rts), CREATED);
    assert_int_equal(rts, when);
    ledger_transfer_t s = tl_transfer(t, 1);
    assert_int_equal(s.timestamp, when);
    assert_int_equal(s.flags, F_IMPORTED);
    tl_assert_balances(t, A, 0, 7, 0, 0);
    /* Resubmitted with another timestamp: the timestamp is not compared. */
    x.timestamp = when + 1;
    assert_tr(tl_transfer1_ts(t, x, &rts), LEDGER_TRANSFER_EXISTS);
    assert_int_equal(rts, when);
    /* A pending imported transfer with timeout 0, then an imported post of it. */
    assert_tr(imported1(t, tl_pending(2, A, B, 5, 0), when + 10), CREATED);
    assert_tr(imported1(t, tl_post(3, 2, U128_MAX), when + 20), CREATED);
    assert_int_equal(tl_transfer(t, 3).timestamp, when + 20);
    tl_assert_balances(t, A, 0, 12, 0, 0);
    assert_int_equal(ledger_next_expiry(t->l), 0);
    tl_check(t);
}

static void test_imported_must_not_regress(void **state) {
    tl_t *t = *state;
    uint64_t when = t->clock - 500;
    assert_tr(imported1(t, tl_tr(1, A, B, 1, 0), when), CREATED);
    /* Equal to and below the newest transfer. */
    assert_tr(imported1(t, tl_tr(2, A, B, 1, 0), when),
              LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
    assert_tr(imported1(t, tl_tr(2, A, B, 1, 0), when - 1),
              LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
    /* Also the post/void path. */
    assert_tr(imported1(t, tl_pending(3, A, B, 5, 0), when + 10), CREATED);
    assert_tr(imported1(t, tl_post(4, 3, 5), when + 10),
              LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
    assert_tr(imported1(t, tl_void(4, 3, 0), when + 5),
              LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
    /* Equal to an account's timestamp (and still after both accounts). */
    uint64_t acc_ts = tl_create_account(t, 40, 1, 1, 0);
    tl_advance(t, 100);
    assert_tr(imported1(t, tl_tr(5, A, B, 1, 0), acc_ts),
              LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
    assert_tr(imported1(t, tl_tr(5, A, B, 1, 0), acc_ts + 1), CREATED);
    /* A non-imported transfer moves the bar. */
    uint64_t ts6 = tl_ok(t, tl_tr(6, A, B, 1, 0));
    tl_advance(t, 100);
    assert_tr(imported1(t, tl_tr(7, A, B, 1, 0), ts6),
              LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
    assert_int_equal(tl_stats(t).failed_ids, 0);
    tl_check(t);
}

static void test_imported_postdate_accounts(void **state) {
    tl_t *t = *state;
    uint64_t early = t->clock - 500;
    uint64_t e_ts = tl_create_account(t, 40, 1, 1, 0);
    tl_advance(t, 100);
    uint64_t f_ts = tl_create_account(t, 41, 1, 1, 0);
    tl_advance(t, 100);
    /* Before the debit account: */
    assert_tr(imported1(t, tl_tr(1, 40, B, 1, 0), early),
              LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT);
    assert_tr(imported1(t, tl_tr(1, A, 40, 1, 0), early),
              LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT);
    /* debit vs credit */
    assert_tr(imported1(t, tl_tr(1, 41, 40, 1, 0), early),
              LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT);
    /* Between the two. */
    assert_tr(imported1(t, tl_tr(1, 40, 41, 1, 0), e_ts + 1),
              LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT);
    assert_tr(imported1(t, tl_tr(1, 41, 40, 1, 0), e_ts + 1),
              LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT);
    /* regress precedes postdate: a transfer after the accounts, then an early import. */
    assert_tr(imported1(t, tl_tr(1, 40, 41, 1, 0), f_ts + 1), CREATED);
    assert_tr(imported1(t, tl_tr(2, 40, 41, 1, 0), e_ts - 1),
              LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
    /* transfer_must_have_the_same_ledger precedes regress. */
    ledger_transfer_t x = tl_tr(2, 40, 41, 1, 0);
    x.ledger = 2;
    assert_tr(imported1(t, x, e_ts - 1),
              LEDGER_TRANSFER_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS);
    /* debit_account_not_found precedes regress. */
    assert_tr(imported1(t, tl_tr(3, MISSING, 41, 1, 0), e_ts - 1),
              LEDGER_TRANSFER_DEBIT_ACCOUNT_NOT_FOUND);
    assert_int_equal(tl_stats(t).failed_ids, 1);
    tl_check(t);
}

static void test_imported_timeout_must_be_zero(void **state) {
    tl_t *t = *state;
    uint64_t when = t->clock - 500;
    assert_tr(imported1(t, tl_pending(1, A, B, 1, 1), when),
              LEDGER_TRANSFER_IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO);
    /* postdate_credit precedes timeout_must_be_zero. */
    uint64_t e_ts = tl_create_account(t, 40, 1, 1, 0);
    tl_advance(t, 100);
    assert_tr(imported1(t, tl_pending(1, A, 40, 1, 1), e_ts - 1),
              LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT);
    /* timeout_must_be_zero precedes debit_account_already_closed. */
    assert_tr(imported1(t, tl_pending(1, CLOSED, B, 1, 1), e_ts + 1),
              LEDGER_TRANSFER_IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO);
    /* A single-phase imported transfer with a timeout: timeout_reserved first. */
    ledger_transfer_t x = tl_tr(1, A, B, 1, 0);
    x.timeout = 1;
    assert_tr(imported1(t, x, e_ts + 1), LEDGER_TRANSFER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER);
    assert_int_equal(tl_stats(t).failed_ids, 0);
    assert_int_equal(tl_stats(t).transfers, 0);
    /* Imported onto a closed account: the closed check comes after the import checks. */
    assert_tr(imported1(t, tl_tr(1, CLOSED, B, 1, 0), e_ts + 1),
              LEDGER_TRANSFER_DEBIT_ACCOUNT_ALREADY_CLOSED);
}

static void test_imported_post_of_expired(void **state) {
    tl_t *t = *state;
    /* A non-imported pending with timeout 1 s, a later transfer, then an imported post stamped
     * after the expiry but before the later transfer: expired precedes regress. */
    uint64_t pts = tl_ok(t, tl_pending(1, A, B, 5, 1));
    tl_advance(t, 3 * TL_NS_PER_S);
    tl_ok(t, tl_tr(2, A, B, 1, 0));
    tl_advance(t, 100);
    assert_tr(imported1(t, tl_post(3, 1, 5), pts + 2 * TL_NS_PER_S),
              LEDGER_TRANSFER_PENDING_TRANSFER_EXPIRED);
    /* Stamped before the expiry but regressing. */
    assert_tr(imported1(t, tl_post(3, 1, 5), pts + 1),
              LEDGER_TRANSFER_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS);
}

/* ======================= closed accounts ======================= */

static void test_account_already_closed(void **state) {
    tl_t *t = *state;
    expect_fail(t, tl_tr(1, CLOSED, B, 1, 0), LEDGER_TRANSFER_DEBIT_ACCOUNT_ALREADY_CLOSED);
    expect_fail(t, tl_tr(2, A, CLOSED, 1, 0), LEDGER_TRANSFER_CREDIT_ACCOUNT_ALREADY_CLOSED);
    expect_fail(t, tl_pending(3, CLOSED, B, 1, 0), LEDGER_TRANSFER_DEBIT_ACCOUNT_ALREADY_CLOSED);
    /* debit vs credit */
    tl_create_account(t, 40, 1, 1, LEDGER_ACCOUNT_CLOSED);
    expect_fail(t, tl_tr(4, CLOSED, 40, 1, 0), LEDGER_TRANSFER_DEBIT_ACCOUNT_ALREADY_CLOSED);
    /* closed precedes the overflow checks and the limits. */
    tl_ok(t, tl_pending(5, A, B, U128_MAX, 0));
    expect_fail(t, tl_pending(6, A, CLOSED, 1, 0), LEDGER_TRANSFER_CREDIT_ACCOUNT_ALREADY_CLOSED);
    expect_fail(t, tl_tr(7, DMNEC, CLOSED, 1, 0), LEDGER_TRANSFER_CREDIT_ACCOUNT_ALREADY_CLOSED);
    expect_fail(t, tl_pending(8, CLOSED, B, 1, 0), LEDGER_TRANSFER_DEBIT_ACCOUNT_ALREADY_CLOSED);
    /* A closing transfer on a closed account. */
    expect_fail(t,
                (ledger_transfer_t){.id = 9,
                                    .debit_account_id = CLOSED,
                                    .credit_account_id = B,
                                    .ledger = 1,
                                    .code = 1,
                                    .flags = F_PENDING | F_CLOSE_DR},
                LEDGER_TRANSFER_DEBIT_ACCOUNT_ALREADY_CLOSED);
}

/* ======================= overflow and limits ======================= */

static void test_overflows_each(void **state) {
    tl_t *t = *state;
    /* debits_pending */
    tl_ok(t, tl_pending(1, A, B, U128_MAX, 0));
    expect_fail(t, tl_pending(2, A, C, 1, 0), LEDGER_TRANSFER_OVERFLOWS_DEBITS_PENDING);
    /* credits_pending */
    expect_fail(t, tl_pending(3, C, B, 1, 0), LEDGER_TRANSFER_OVERFLOWS_CREDITS_PENDING);
    /* debits (pending + posted) for a single-phase transfer */
    expect_fail(t, tl_tr(4, A, C, 1, 0), LEDGER_TRANSFER_OVERFLOWS_DEBITS);
    /* credits */
    expect_fail(t, tl_tr(5, C, B, 1, 0), LEDGER_TRANSFER_OVERFLOWS_CREDITS);
    /* amount 0 never overflows */
    tl_ok(t, tl_tr(6, A, B, 0, 0));
    tl_ok(t, tl_pending(7, A, B, 0, 0));
    /* debits_posted / credits_posted */
    tl_ok(t, tl_tr(8, C, D, U128_MAX, 0));
    tl_create_account(t, 40, 1, 1, 0);
    expect_fail(t, tl_tr(9, C, 40, 1, 0), LEDGER_TRANSFER_OVERFLOWS_DEBITS_POSTED);
    expect_fail(t, tl_tr(10, 40, D, 1, 0), LEDGER_TRANSFER_OVERFLOWS_CREDITS_POSTED);
    /* Posted overflow is checked for pending transfers too. */
    expect_fail(t, tl_pending(11, C, 40, 1, 0), LEDGER_TRANSFER_OVERFLOWS_DEBITS_POSTED);
    expect_fail(t, tl_pending(12, 40, D, 1, 0), LEDGER_TRANSFER_OVERFLOWS_CREDITS_POSTED);
    assert_int_equal(tl_stats(t).failed_ids, 0);
}

static void test_overflows_precedence(void **state) {
    tl_t *t = *state;
    for (u128 id = 40; id <= 49; id++) tl_create_account(t, id, 1, 1, 0);
    /* debits_pending vs credits_pending: A full pending debits, B full pending credits. */
    tl_ok(t, tl_pending(1, A, B, U128_MAX, 0));
    expect_fail(t, tl_pending(2, A, B, 1, 0), LEDGER_TRANSFER_OVERFLOWS_DEBITS_PENDING);
    /* credits_pending vs debits_posted: 40 has full debits_posted, B full credits_pending. */
    tl_ok(t, tl_tr(3, 40, 41, U128_MAX, 0));
    expect_fail(t, tl_pending(4, 40, B, 1, 0), LEDGER_TRANSFER_OVERFLOWS_CREDITS_PENDING);
    /* debits_posted vs credits_posted: 40 -> 41 again. */
    expect_fail(t, tl_tr(5, 40, 41, 1, 0), LEDGER_TRANSFER_OVERFLOWS_DEBITS_POSTED);
    /* credits_posted vs debits (total): A full pending debits, 41 full credits_posted. */
    expect_fail(t, tl_tr(6, A, 41, 1, 0), LEDGER_TRANSFER_OVERFLOWS_CREDITS_POSTED);
    /* debits vs credits (totals): A full pending debits, B full pending credits. */
    expect_fail(t, tl_tr(7, A, B, 1, 0), LEDGER_TRANSFER_OVERFLOWS_DEBITS);
    /* debits_pending (pending only) vs debits (total) */
    expect_fail(t, tl_pending(8, A, 42, 1, 0), LEDGER_TRANSFER_OVERFLOWS_DEBITS_PENDING);
}

static void test_overflows_credits_beats_exceeds(void **state) {
    tl_t *t = *state;
    /* Split B's credits over pending and posted so that only the totals overflow. */
    u128 half = U128_MAX / 2;
    tl_ok(t, tl_tr(1, C, B, half, 0));
    tl_ok(t, tl_pending(2, D, B, U128_MAX - half, 0));
    expect_fail(t, tl_tr(3, A, B, 1, 0), LEDGER_TRANSFER_OVERFLOWS_CREDITS);
    /* overflows_credits precedes exceeds_credits (DMNEC has no credits). */
    expect_fail(t, tl_tr(4, DMNEC, B, 1, 0), LEDGER_TRANSFER_OVERFLOWS_CREDITS);
    assert_int_equal(tl_stats(t).failed_ids, 0);
    /* Mirror: C's debits split. */
    tl_ok(t, tl_pending(5, C, D, U128_MAX - half, 0));
    expect_fail(t, tl_tr(6, C, A, 1, 0), LEDGER_TRANSFER_OVERFLOWS_DEBITS);
    tl_check(t);
}

static void test_overflows_timeout(void **state) {
    tl_t *t = *state;
    /* ts + timeout * 1e9 must stay <= 2^63-1. Event ts = batch ts for a one-event batch. */
    uint64_t limit = TL_TS_MAX - TL_NS_PER_S;
    tl_set_clock(t, limit - 1); /* next event at `limit`: exactly 2^63-1 */
    tl_ok(t, tl_pending(1, A, B, 1, 1));
    assert_int_equal(tl_transfer(t, 1).timestamp, limit);
    assert_int_equal(ledger_next_expiry(t->l), TL_TS_MAX);
    /* Next event at limit + 1: passes 2^63-1. */
    expect_fail(t, tl_pending(2, A, B, 1, 1), LEDGER_TRANSFER_OVERFLOWS_TIMEOUT);
    /* The largest timeout. */
    expect_fail(t, tl_pending(3, A, B, 1, UINT32_MAX), LEDGER_TRANSFER_OVERFLOWS_TIMEOUT);
    /* No timeout: fine. */
    tl_ok(t, tl_pending(4, A, B, 1, 0));
    /* overflows_credits_pending precedes overflows_timeout. */
    tl_ok(t, tl_pending(5, C, D, U128_MAX, 0));
    expect_fail(t, tl_pending(6, A, D, 1, 1), LEDGER_TRANSFER_OVERFLOWS_CREDITS_PENDING);
    /* overflows_timeout precedes exceeds_credits / exceeds_debits. */
    expect_fail(t, tl_pending(7, DMNEC, B, 1, 1), LEDGER_TRANSFER_OVERFLOWS_TIMEOUT);
    expect_fail(t, tl_pending(8, A, CMNED, 1, 1), LEDGER_TRANSFER_OVERFLOWS_TIMEOUT);
    assert_int_equal(tl_stats(t).failed_ids, 0);
}

static void test_overflows_timeout_largest(void **state) {
    tl_t *t = *state;
    /* The largest timeout that fits: ts = 2^63-1 - (2^32-1) * 1e9. */
    uint64_t span = (uint64_t)UINT32_MAX * TL_NS_PER_S;
    tl_set_clock(t, TL_TS_MAX - span - 1);
    tl_ok(t, tl_pending(1, A, B, 1, UINT32_MAX));
    expect_fail(t, tl_pending(2, A, B, 1, UINT32_MAX), LEDGER_TRANSFER_OVERFLOWS_TIMEOUT);
    tl_ok(t, tl_pending(3, A, B, 1, UINT32_MAX - 1));
}

static void test_overflows_with_test_set_balances(void **state) {
    tl_t *t = *state;
    /* ledger_test_set_balances builds states no transfer sequence reaches cheaply; it breaks
     * the invariants on purpose, so they are not checked here. */
    t->balances_forced = true;
    assert_false(ledger_test_set_balances(t->l, MISSING, 0, 0, 0, 0));
    assert_true(ledger_test_set_balances(t->l, A, U128_MAX - 5, 0, 0, 0));
    tl_assert_balances(t, A, U128_MAX - 5, 0, 0, 0);
    assert_tr(tl_transfer1(t, tl_pending(1, A, B, 6, 0)), LEDGER_TRANSFER_OVERFLOWS_DEBITS_PENDING);
    assert_tr(tl_transfer1(t, tl_pending(2, A, B, 5, 0)), CREATED);
    assert_true(ledger_test_set_balances(t->l, C, 0, 0, 0, U128_MAX - 1));
    assert_tr(tl_transfer1(t, tl_tr(3, D, C, 2, 0)), LEDGER_TRANSFER_OVERFLOWS_CREDITS_POSTED);
    /* Split totals: each part fits, the sum does not. */
    assert_true(ledger_test_set_balances(t->l, D, 10, U128_MAX - 10, 0, 0));
    assert_tr(tl_transfer1(t, tl_tr(4, D, B, 1, 0)), LEDGER_TRANSFER_OVERFLOWS_DEBITS);
    assert_tr(tl_transfer1(t, tl_tr(5, D, B, 0, 0)), CREATED);
    assert_int_equal(tl_stats(t).failed_ids, 0);
}

static void test_exceeds_credits_and_debits(void **state) {
    tl_t *t = *state;
    expect_fail(t, tl_tr(1, DMNEC, B, 1, 0), LEDGER_TRANSFER_EXCEEDS_CREDITS);
    expect_fail(t, tl_tr(2, A, CMNED, 1, 0), LEDGER_TRANSFER_EXCEEDS_DEBITS);
    /* exceeds_credits precedes exceeds_debits. */
    expect_fail(t, tl_tr(3, DMNEC, CMNED, 1, 0), LEDGER_TRANSFER_EXCEEDS_CREDITS);
    /* Fund DMNEC with 100; pending debits count against the limit. */
    tl_ok(t, tl_tr(10, A, DMNEC, 100, 0));
    tl_ok(t, tl_pending(11, DMNEC, B, 60, 0));
    expect_fail(t, tl_pending(12, DMNEC, B, 41, 0), LEDGER_TRANSFER_EXCEEDS_CREDITS);
    expect_fail(t, tl_tr(13, DMNEC, B, 41, 0), LEDGER_TRANSFER_EXCEEDS_CREDITS);
    tl_ok(t, tl_tr(14, DMNEC, B, 40, 0)); /* exactly to the limit */
    tl_assert_balances(t, DMNEC, 60, 40, 0, 100);
    expect_fail(t, tl_tr(15, DMNEC, B, 1, 0), LEDGER_TRANSFER_EXCEEDS_CREDITS);
    /* Pending credits don't count as credits. */
    tl_ok(t, tl_pending(16, A, DMNEC, 50, 0));
    expect_fail(t, tl_tr(17, DMNEC, B, 1, 0), LEDGER_TRANSFER_EXCEEDS_CREDITS);
    /* Mirror: CMNED with 100 debits. */
    tl_ok(t, tl_tr(20, CMNED, A, 100, 0));
    tl_ok(t, tl_pending(21, B, CMNED, 60, 0));
    expect_fail(t, tl_tr(22, B, CMNED, 41, 0), LEDGER_TRANSFER_EXCEEDS_DEBITS);
    tl_ok(t, tl_tr(23, B, CMNED, 40, 0));
    tl_assert_balances(t, CMNED, 0, 100, 60, 40);
    /* Voiding releases room. */
    tl_ok(t, tl_void(24, 21, 0));
    tl_ok(t, tl_tr(25, B, CMNED, 60, 0));
    tl_check(t);
}

static void test_post_and_void_skip_limits(void **state) {
    tl_t *t = *state;
    /* A post moves at most what was reserved, so it needs no limit or overflow check. */
    tl_ok(t, tl_tr(1, A, DMNEC, 10, 0));
    tl_ok(t, tl_pending(2, DMNEC, B, 10, 0));
    tl_ok(t, tl_post(3, 2, U128_MAX));
    tl_assert_balances(t, DMNEC, 0, 10, 0, 10);
    tl_check(t);
}

/* ======================= balancing ======================= */

static void test_balancing_debit(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_tr(1, B, DMNEC, 100, 0));
    tl_ok(t, tl_pending(2, DMNEC, B, 20, 0));
    tl_ok(t, tl_tr(3, DMNEC, B, 30, 0));
    /* Available: 100 - (30 + 20) = 50. */
    tl_ok(t, tl_tr(4, DMNEC, C, U128_MAX, F_BAL_DR));
    assert_u128(tl_transfer(t, 4).amount, 50);
    assert_int_equal(tl_transfer(t, 4).flags, F_BAL_DR);
    tl_assert_balances(t, DMNEC, 20, 80, 0, 100);
    tl_assert_balances(t, C, 0, 0, 0, 50);
    /* Nothing left: amount 0 is stored. */
    tl_ok(t, tl_tr(5, DMNEC, C, 10, F_BAL_DR));
    assert_u128(tl_transfer(t, 5).amount, 0);
    tl_assert_balances(t, DMNEC, 20, 80, 0, 100);
    tl_check(t);
}

static void test_balancing_debit_clamp_and_unlimited_account(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_tr(1, B, A, 100, 0));
    /* The requested amount is an upper bound: 10 of the 100 available. */
    tl_ok(t, tl_tr(2, A, C, 10, F_BAL_DR));
    assert_u128(tl_transfer(t, 2).amount, 10);
    tl_assert_balances(t, A, 0, 10, 0, 100);
    /* Works on an account without limit flags too, and for a pending transfer. */
    tl_ok(t, tl_tr(3, A, C, U128_MAX, F_BAL_DR | F_PENDING));
    assert_u128(tl_transfer(t, 3).amount, 90);
    tl_assert_balances(t, A, 90, 10, 0, 100);
    /* An account whose debits already exceed its credits: 0 (saturating). */
    tl_ok(t, tl_tr(4, D, B, 5, 0));
    tl_ok(t, tl_tr(5, D, B, 5, F_BAL_DR));
    assert_u128(tl_transfer(t, 5).amount, 0);
    tl_check(t);
}

static void test_balancing_credit(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_tr(1, CMNED, B, 100, 0));
    tl_ok(t, tl_pending(2, B, CMNED, 20, 0));
    tl_ok(t, tl_tr(3, B, CMNED, 30, 0));
    /* Available: 100 - (30 + 20) = 50. */
    tl_ok(t, tl_tr(4, C, CMNED, U128_MAX, F_BAL_CR));
    assert_u128(tl_transfer(t, 4).amount, 50);
    tl_assert_balances(t, CMNED, 0, 100, 20, 80);
    tl_assert_balances(t, C, 0, 50, 0, 0);
    tl_ok(t, tl_tr(5, C, CMNED, 7, F_BAL_CR));
    assert_u128(tl_transfer(t, 5).amount, 0);
    /* Clamp by the requested amount. */
    tl_ok(t, tl_tr(6, CMNED, D, 40, 0));
    tl_ok(t, tl_tr(7, C, CMNED, 15, F_BAL_CR));
    assert_u128(tl_transfer(t, 7).amount, 15);
    tl_check(t);
}

static void test_balancing_both(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_tr(1, B, DMNEC, 50, 0)); /* DMNEC can give 50 */
    tl_ok(t, tl_tr(2, CMNED, B, 30, 0)); /* CMNED can take 30 */
    tl_ok(t, tl_tr(3, DMNEC, CMNED, U128_MAX, F_BAL_DR | F_BAL_CR));
    assert_u128(tl_transfer(t, 3).amount, 30);
    tl_ok(t, tl_tr(4, CMNED, B, 100, 0)); /* CMNED can take 100 more */
    tl_ok(t, tl_tr(5, DMNEC, CMNED, U128_MAX, F_BAL_DR | F_BAL_CR));
    assert_u128(tl_transfer(t, 5).amount, 20); /* now DMNEC is the smaller */
    /* The requested amount is the smallest. */
    tl_ok(t, tl_tr(6, B, DMNEC, 50, 0));
    tl_ok(t, tl_tr(7, DMNEC, CMNED, 5, F_BAL_DR | F_BAL_CR));
    assert_u128(tl_transfer(t, 7).amount, 5);
    tl_assert_balances(t, DMNEC, 0, 55, 0, 100);
    tl_check(t);
}

static void test_balancing_clamped_amount_in_checks(void **state) {
    tl_t *t = *state;
    /* The limit and overflow checks use the moved amount, not the requested one. */
    tl_ok(t, tl_tr(1, B, DMNEC, 10, 0));
    tl_ok(t, tl_tr(2, DMNEC, C, U128_MAX, F_BAL_DR));
    assert_u128(tl_transfer(t, 2).amount, 10);
    tl_ok(t, tl_tr(3, C, D, U128_MAX - 10, 0)); /* C debits: MAX-10 */
    tl_ok(t, tl_tr(4, B, C, 5, 0));
    tl_ok(t, tl_tr(5, C, B, U128_MAX, F_BAL_DR)); /* C: credits 15 < debits: 0 */
    assert_u128(tl_transfer(t, 5).amount, 0);
    tl_check(t);
}

/* ======================= closing ======================= */

static ledger_transfer_t closing(u128 id, u128 dr, u128 cr, uint16_t which, uint32_t timeout) {
    ledger_transfer_t x = tl_pending(id, dr, cr, 0, timeout);
    x.flags |= which;
    return x;
}

static void test_closing_debit_closes_debit_account(void **state) {
    tl_t *t = *state;
    tl_ok(t, closing(1, A, B, F_CLOSE_DR, 0));
    assert_true(tl_closed(t, A));
    assert_false(tl_closed(t, B));
    expect_fail(t, tl_tr(2, A, B, 1, 0), LEDGER_TRANSFER_DEBIT_ACCOUNT_ALREADY_CLOSED);
    expect_fail(t, tl_tr(3, C, A, 1, 0), LEDGER_TRANSFER_CREDIT_ACCOUNT_ALREADY_CLOSED);
    expect_fail(t, tl_pending(4, A, C, 1, 0), LEDGER_TRANSFER_DEBIT_ACCOUNT_ALREADY_CLOSED);
    tl_ok(t, tl_tr(5, B, C, 1, 0));
    assert_int_equal(tl_transfer(t, 1).flags, F_PENDING | F_CLOSE_DR);
}

static void test_closing_credit_and_both(void **state) {
    tl_t *t = *state;
    tl_ok(t, closing(1, A, B, F_CLOSE_CR, 0));
    assert_false(tl_closed(t, A));
    assert_true(tl_closed(t, B));
    expect_fail(t, tl_tr(2, A, B, 1, 0), LEDGER_TRANSFER_CREDIT_ACCOUNT_ALREADY_CLOSED);
    tl_ok(t, closing(3, C, D, F_CLOSE_DR | F_CLOSE_CR, 0));
    assert_true(tl_closed(t, C));
    assert_true(tl_closed(t, D));
    /* With an amount: the amount is reserved as usual. */
    tl_create_account(t, 40, 1, 1, 0);
    tl_create_account(t, 41, 1, 1, 0);
    ledger_transfer_t x = closing(4, 40, 41, F_CLOSE_DR, 0);
    x.amount = 9;
    tl_ok(t, x);
    tl_assert_balances(t, 40, 9, 0, 0, 0);
    assert_true(tl_closed(t, 40));
    tl_check(t);
}

static void test_void_of_closing_reopens(void **state) {
    tl_t *t = *state;
    ledger_transfer_t x = closing(1, A, B, F_CLOSE_DR | F_CLOSE_CR, 0);
    x.amount = 5;
    tl_ok(t, x);
    assert_true(tl_closed(t, A));
    assert_true(tl_closed(t, B));
    tl_ok(t, tl_void(2, 1, 0));
    assert_false(tl_closed(t, A));
    assert_false(tl_closed(t, B));
    tl_assert_balances(t, A, 0, 0, 0, 0);
    tl_ok(t, tl_tr(3, A, B, 1, 0));
    tl_check(t);
}

static void test_post_of_closing_keeps_closed(void **state) {
    tl_t *t = *state;
    ledger_transfer_t x = closing(1, A, B, F_CLOSE_DR, 0);
    x.amount = 5;
    tl_ok(t, x);
    /* The only movement a closed account allows is a void. */
    expect_fail(t, tl_post(2, 1, U128_MAX), LEDGER_TRANSFER_DEBIT_ACCOUNT_ALREADY_CLOSED);
    assert_true(tl_closed(t, A));
    tl_assert_balances(t, A, 5, 0, 0, 0);
    expect_fail(t, tl_post(2, 1, 1), LEDGER_TRANSFER_ID_ALREADY_FAILED);
    tl_ok(t, closing(3, C, D, F_CLOSE_CR, 0));
    expect_fail(t, tl_post(4, 3, 0), LEDGER_TRANSFER_CREDIT_ACCOUNT_ALREADY_CLOSED);
    assert_true(tl_closed(t, D));
    /* Void still works and reopens. */
    tl_ok(t, tl_void(5, 1, 0));
    assert_false(tl_closed(t, A));
    tl_check(t);
}

static void test_void_of_other_pending_keeps_closed(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(1, A, B, 10, 0));
    tl_ok(t, tl_pending(2, A, B, 20, 0));
    tl_ok(t, closing(3, A, C, F_CLOSE_DR, 0));
    assert_true(tl_closed(t, A));
    /* A pending transfer on a closed account can be voided; the account stays closed. */
    tl_ok(t, tl_void(4, 1, 0));
    assert_true(tl_closed(t, A));
    tl_assert_balances(t, A, 20, 0, 0, 0);
    /* ... but not posted. */
    expect_fail(t, tl_post(5, 2, U128_MAX), LEDGER_TRANSFER_DEBIT_ACCOUNT_ALREADY_CLOSED);
    tl_assert_balances(t, A, 20, 0, 0, 0);
    tl_check(t);
}

static void test_void_reopens_only_what_it_closed(void **state) {
    tl_t *t = *state;
    tl_ok(t, closing(1, A, B, F_CLOSE_DR, 0)); /* closes A only */
    tl_ok(t, closing(2, C, B, F_CLOSE_CR, 0)); /* closes B */
    assert_true(tl_closed(t, A));
    assert_true(tl_closed(t, B));
    assert_false(tl_closed(t, C));
    tl_ok(t, tl_void(3, 1, 0)); /* reopens A; B was closed by another transfer */
    assert_false(tl_closed(t, A));
    assert_true(tl_closed(t, B));
    expect_fail(t, tl_tr(4, A, B, 1, 0), LEDGER_TRANSFER_CREDIT_ACCOUNT_ALREADY_CLOSED);
    tl_ok(t, tl_void(5, 2, 0));
    assert_false(tl_closed(t, B));
    tl_ok(t, tl_tr(6, A, B, 1, 0));
    tl_check(t);
}

static void test_expiry_of_closing_credit_reopens(void **state) {
    tl_t *t = *state;
    uint64_t ts = tl_ok(t, closing(1, A, B, F_CLOSE_CR, 2));
    assert_true(tl_closed(t, B));
    assert_false(tl_closed(t, A));
    assert_int_equal(tl_expire(t, ts + 2 * TL_NS_PER_S), 1);
    assert_false(tl_closed(t, B));
    tl_ok(t, tl_tr(2, A, B, 1, 0));
    tl_check(t);
}

static void test_expiry_of_closing_reopens(void **state) {
    tl_t *t = *state;
    uint64_t ts = tl_ok(t, closing(1, A, B, F_CLOSE_DR, 1));
    assert_true(tl_closed(t, A));
    assert_int_equal(tl_expire(t, ts + TL_NS_PER_S - 1), 0);
    assert_true(tl_closed(t, A));
    assert_int_equal(tl_expire(t, ts + TL_NS_PER_S), 1);
    assert_false(tl_closed(t, A));
    tl_ok(t, tl_tr(2, A, B, 1, 0));
    /* An expiry of a non-closing pending transfer leaves a closed account closed. */
    tl_ok(t, tl_pending(3, C, D, 4, 1));
    tl_ok(t, closing(4, C, D, F_CLOSE_DR, 0));
    assert_int_equal(tl_expire(t, t->clock + 2 * TL_NS_PER_S), 1);
    assert_true(tl_closed(t, C));
    tl_assert_balances(t, C, 0, 0, 0, 0);
    tl_check(t);
}

/* ======================= post / void ======================= */

static void test_post_partial(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(1, A, B, 100, 0));
    assert_int_equal(tl_stats(t).pending_open, 1);
    tl_ok(t, tl_post(2, 1, 60));
    tl_assert_balances(t, A, 0, 60, 0, 0);
    tl_assert_balances(t, B, 0, 0, 0, 60);
    assert_u128(tl_transfer(t, 2).amount, 60);
    assert_u128(tl_transfer(t, 1).amount, 100); /* the pending transfer is unchanged */
    assert_int_equal(tl_stats(t).pending_open, 0);
    /* Resolved once. */
    expect_fail(t, tl_post(3, 1, 40), LEDGER_TRANSFER_PENDING_TRANSFER_ALREADY_POSTED);
    tl_check(t);
}

static void test_post_full_with_max_and_exact(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(1, A, B, 100, 0));
    tl_ok(t, tl_post(2, 1, U128_MAX));
    assert_u128(tl_transfer(t, 2).amount, 100);
    tl_assert_balances(t, A, 0, 100, 0, 0);
    tl_ok(t, tl_pending(3, A, B, 30, 0));
    tl_ok(t, tl_post(4, 3, 30));
    assert_u128(tl_transfer(t, 4).amount, 30);
    tl_assert_balances(t, A, 0, 130, 0, 0);
    tl_assert_balances(t, B, 0, 0, 0, 130);
    tl_check(t);
}

static void test_post_zero(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(1, A, B, 100, 0));
    tl_ok(t, tl_post(2, 1, 0));
    assert_u128(tl_transfer(t, 2).amount, 0);
    tl_assert_balances(t, A, 0, 0, 0, 0);
    tl_assert_balances(t, B, 0, 0, 0, 0);
    expect_fail(t, tl_void(3, 1, 0), LEDGER_TRANSFER_PENDING_TRANSFER_ALREADY_POSTED);
    assert_int_equal(tl_stats(t).pending_open, 0);
    /* Resubmitting the zero post is `exists`; MAX (= the pending 100) differs. */
    expect1(t, tl_post(2, 1, 0), LEDGER_TRANSFER_EXISTS);
    expect1(t, tl_post(2, 1, U128_MAX), LEDGER_TRANSFER_EXISTS_WITH_DIFFERENT_AMOUNT);
    tl_check(t);
}

static void test_void_zero_and_exact(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_tr(9, B, A, 7, 0));
    tl_ok(t, tl_pending(1, A, B, 100, 0));
    tl_ok(t, tl_void(2, 1, 0));
    ledger_transfer_t v = tl_transfer(t, 2);
    assert_u128(v.amount, 100);
    assert_int_equal(v.flags, F_VOID);
    assert_u128(v.debit_account_id, A);
    tl_assert_balances(t, A, 0, 0, 0, 7);
    tl_assert_balances(t, B, 0, 7, 0, 0);
    tl_ok(t, tl_pending(3, A, B, 50, 0));
    tl_ok(t, tl_void(4, 3, 50));
    assert_u128(tl_transfer(t, 4).amount, 50);
    tl_assert_balances(t, A, 0, 0, 0, 7);
    assert_int_equal(tl_stats(t).pending_open, 0);
    tl_check(t);
}

static void test_void_wrong_amount(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(1, A, B, 100, 0));
    expect_fail(t, tl_void(2, 1, 99), LEDGER_TRANSFER_PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT);
    expect_fail(t, tl_void(2, 1, 101), LEDGER_TRANSFER_EXCEEDS_PENDING_TRANSFER_AMOUNT);
    tl_assert_balances(t, A, 100, 0, 0, 0);
    tl_ok(t, tl_void(2, 1, 100));
}

static void test_post_void_of_pending_with_max_amount(void **state) {
    tl_t *t = *state;
    tl_ok(t, tl_pending(1, A, B, U128_MAX, 0));
    /* A void with MAX is exact here. */
    tl_ok(t, tl_void(2, 1, U128_MAX));
    tl_ok(t, tl_pending(3, A, B, U128_MAX, 0));
    tl_ok(t, tl_post(4, 3, U128_MAX - 1));
    tl_assert_balances(t, A, 0, U128_MAX - 1, 0, 0);
    tl_check(t);
}

static void test_post_in_same_batch_as_pending(void **state) {
    tl_t *t = *state;
    ledger_transfer_t ev[3] = {tl_pending(1, A, B, 10, 0), tl_post(2, 1, 4), tl_post(3, 1, 4)};
    ledger_result_t res[3];
    tl_transfers(t, ev, 3, res);
    uint32_t want[3] = {CREATED, CREATED, LEDGER_TRANSFER_PENDING_TRANSFER_ALREADY_POSTED};
    tl_assert_tr_results(res, want, 3);
    tl_assert_balances(t, A, 0, 4, 0, 0);
    tl_check(t);
}

/* ======================= names ======================= */

static void test_result_names(void **state) {
    (void)state;
    static const char *const order[] = {"created",
                                        "linked_event_chain_open",
                                        "linked_event_failed",
                                        "imported_event_expected",
                                        "imported_event_not_expected",
                                        "timestamp_must_be_zero",
                                        "imported_event_timestamp_out_of_range",
                                        "imported_event_timestamp_must_not_advance",
                                        "reserved_flag",
                                        "id_must_not_be_zero",
                                        "id_must_not_be_int_max",
                                        "exists_with_different_flags",
                                        "exists_with_different_pending_id",
                                        "exists_with_different_timeout",
                                        "exists_with_different_debit_account_id",
                                        "exists_with_different_credit_account_id",
                                        "exists_with_different_amount",
                                        "exists_with_different_user_data_128",
                                        "exists_with_different_user_data_64",
                                        "exists_with_different_user_data_32",
                                        "exists_with_different_ledger",
                                        "exists_with_different_code",
                                        "exists",
                                        "id_already_failed",
                                        "flags_are_mutually_exclusive",
                                        "debit_account_id_must_not_be_zero",
                                        "debit_account_id_must_not_be_int_max",
                                        "credit_account_id_must_not_be_zero",
                                        "credit_account_id_must_not_be_int_max",
                                        "accounts_must_be_different",
                                        "pending_id_must_be_zero",
                                        "pending_id_must_not_be_zero",
                                        "pending_id_must_not_be_int_max",
                                        "pending_id_must_be_different",
                                        "timeout_reserved_for_pending_transfer",
                                        "closing_transfer_must_be_pending",
                                        "ledger_must_not_be_zero",
                                        "code_must_not_be_zero",
                                        "debit_account_not_found",
                                        "credit_account_not_found",
                                        "accounts_must_have_the_same_ledger",
                                        "transfer_must_have_the_same_ledger_as_accounts",
                                        "pending_transfer_not_found",
                                        "pending_transfer_not_pending",
                                        "pending_transfer_has_different_debit_account_id",
                                        "pending_transfer_has_different_credit_account_id",
                                        "pending_transfer_has_different_ledger",
                                        "pending_transfer_has_different_code",
                                        "exceeds_pending_transfer_amount",
                                        "pending_transfer_has_different_amount",
                                        "pending_transfer_already_posted",
                                        "pending_transfer_already_voided",
                                        "pending_transfer_expired",
                                        "imported_event_timestamp_must_not_regress",
                                        "imported_event_timestamp_must_postdate_debit_account",
                                        "imported_event_timestamp_must_postdate_credit_account",
                                        "imported_event_timeout_must_be_zero",
                                        "debit_account_already_closed",
                                        "credit_account_already_closed",
                                        "overflows_debits_pending",
                                        "overflows_credits_pending",
                                        "overflows_debits_posted",
                                        "overflows_credits_posted",
                                        "overflows_debits",
                                        "overflows_credits",
                                        "overflows_timeout",
                                        "exceeds_credits",
                                        "exceeds_debits"};
    assert_int_equal(LEDGER_TRANSFER_RESULT_COUNT, sizeof order / sizeof order[0]);
    for (uint32_t i = 0; i < LEDGER_TRANSFER_RESULT_COUNT; i++) {
        assert_string_equal(ledger_transfer_result_str(i), order[i]);
        uint32_t v = 999;
        assert_true(ledger_transfer_result_parse(order[i], strlen(order[i]), &v));
        assert_int_equal(v, i);
    }
    assert_null(ledger_transfer_result_str(LEDGER_TRANSFER_RESULT_COUNT));
    uint32_t v;
    assert_false(ledger_transfer_result_parse("exist", 5, &v));
}

#define T(f) cmocka_unit_test_setup_teardown(f, tx_setup, tl_teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_created_single_phase),
        T(test_created_batch_timestamps),
        T(test_amount_zero_is_legal),
        T(test_created_pending),
        T(test_ordinary_transfers_skip_flags_mutually_exclusive),
        T(test_linked_event_chain_open),
        T(test_linked_event_failed),
        T(test_chain_open_beats_linked_event_failed),
        T(test_linked_event_failed_beats_imported_checks),
        T(test_imported_event_expected),
        T(test_imported_event_not_expected),
        T(test_timestamp_must_be_zero),
        T(test_imported_timestamp_out_of_range),
        T(test_imported_timestamp_must_not_advance),
        T(test_reserved_flag),
        T(test_id_must_not_be_zero),
        T(test_id_must_not_be_int_max),
        T(test_exists_returns_original_timestamp),
        T(test_exists_with_different_each_field),
        T(test_exists_with_different_precedence),
        T(test_exists_check_precedes_validation),
        T(test_exists_beats_exceeds_credits),
        T(test_post_stores_inherited_fields),
        T(test_post_exists_zero_means_inherited),
        T(test_post_exists_precedence),
        T(test_post_full_exists_with_max),
        T(test_void_exists_zero_means_pending_amount),
        T(test_balancing_exists_amount_upper_bound),
        T(test_id_already_failed_for_each_transient_code),
        T(test_id_already_failed_precedence),
        T(test_failed_id_is_not_a_pending_transfer),
        T(test_no_id_already_failed_for_other_codes),
        T(test_expired_is_not_transient),
        T(test_flags_are_mutually_exclusive),
        T(test_account_id_checks),
        T(test_account_id_checks_precedence),
        T(test_pending_id_must_be_zero),
        T(test_pending_id_checks_of_post_void),
        T(test_timeout_reserved_for_pending_transfer),
        T(test_closing_transfer_must_be_pending),
        T(test_ledger_and_code_must_not_be_zero),
        T(test_account_not_found),
        T(test_ledger_mismatch),
        T(test_pending_transfer_not_found),
        T(test_pending_transfer_not_pending),
        T(test_pending_transfer_has_different_fields),
        T(test_pending_transfer_has_different_precedence),
        T(test_exceeds_pending_transfer_amount),
        T(test_pending_transfer_has_different_amount),
        T(test_already_posted_and_voided),
        T(test_already_posted_beats_expired),
        T(test_pending_transfer_expired),
        T(test_imported_transfer_created),
        T(test_imported_must_not_regress),
        T(test_imported_postdate_accounts),
        T(test_imported_timeout_must_be_zero),
        T(test_imported_post_of_expired),
        T(test_account_already_closed),
        T(test_overflows_each),
        T(test_overflows_precedence),
        T(test_overflows_credits_beats_exceeds),
        T(test_overflows_timeout),
        T(test_overflows_timeout_largest),
        T(test_exceeds_credits_and_debits),
        T(test_post_and_void_skip_limits),
        T(test_balancing_debit),
        T(test_balancing_debit_clamp_and_unlimited_account),
        T(test_balancing_credit),
        T(test_balancing_both),
        T(test_balancing_clamped_amount_in_checks),
        T(test_closing_debit_closes_debit_account),
        T(test_closing_credit_and_both),
        T(test_void_of_closing_reopens),
        T(test_post_of_closing_keeps_closed),
        T(test_void_of_other_pending_keeps_closed),
        T(test_expiry_of_closing_reopens),
        T(test_void_reopens_only_what_it_closed),
        T(test_expiry_of_closing_credit_reopens),
        T(test_overflows_with_test_set_balances),
        T(test_post_partial),
        T(test_post_full_with_max_and_exact),
        T(test_post_zero),
        T(test_void_zero_and_exact),
        T(test_void_wrong_amount),
        T(test_post_void_of_pending_with_max_amount),
        T(test_post_in_same_batch_as_pending),
        T(test_result_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

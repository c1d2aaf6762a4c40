/* Queries: lookups, get_account_transfers, get_account_balances, query_accounts,
 * query_transfers, and the invalid-filter rules (shared/docs/ledger.md, "Queries"). */
#include "ledger_test_util.h"

#define F_DR LEDGER_FILTER_DEBITS
#define F_CR LEDGER_FILTER_CREDITS
#define F_REV LEDGER_FILTER_REVERSED

enum { A = 1, B = 2, C = 3, D = 4, E = 5 };

/* The fixture: five accounts and seven transfers, each in its own batch, with gaps. */
typedef struct qfix {
    tl_t *t;
    uint64_t ats[6]; /* ats[id] = account timestamp */
    uint64_t ts[8];  /* ts[k] = timestamp of transfer k (1..7) */
} qfix_t;

static void make_account(qfix_t *q, u128 id, u128 ud128, uint64_t ud64, uint32_t ud32,
                         uint32_t ledger, uint16_t code, uint16_t flags) {
    ledger_account_t a = tl_acct(id, ledger, code, flags);
    a.user_data_128 = ud128;
    a.user_data_64 = ud64;
    a.user_data_32 = ud32;
    uint64_t ts = 0;
    assert_ar(tl_account1_ts(q->t, a, &ts), LEDGER_ACCOUNT_CREATED);
    q->ats[id] = ts;
    tl_advance(q->t, 10);
}

static void make_transfer(qfix_t *q, u128 id, u128 dr, u128 cr, u128 amount, u128 ud128,
                          uint64_t ud64, uint32_t ud32, uint32_t ledger, uint16_t code) {
    ledger_transfer_t x = tl_tr(id, dr, cr, amount, 0);
    x.user_data_128 = ud128;
    x.user_data_64 = ud64;
    x.user_data_32 = ud32;
    x.ledger = ledger;
    x.code = code;
    q->ts[id] = tl_ok(q->t, x);
    tl_advance(q->t, 10);
}

static int q_setup(void **state) {
    qfix_t *q = calloc(1, sizeof *q);
    if (!q) return -1;
    q->t = tl_new();
    if (!q->t) return -1;
    *state = q;
    make_account(q, A, 10, 20, 30, 1, 1, LEDGER_ACCOUNT_HISTORY);
    make_account(q, B, 10, 21, 30, 1, 2, 0);
    make_account(q, C, 11, 20, 31, 1, 1, LEDGER_ACCOUNT_HISTORY);
    make_account(q, D, 10, 22, 32, 2, 1, 0);
    make_account(q, E, 12, 23, 33, 2, 3, 0);
    make_transfer(q, 1, A, B, 1, 100, 200, 300, 1, 1);
    make_transfer(q, 2, B, A, 2, 100, 201, 300, 1, 2);
    make_transfer(q, 3, A, C, 4, 101, 200, 301, 1, 1);
    make_transfer(q, 4, C, A, 8, 100, 200, 300, 1, 3);
    make_transfer(q, 5, A, B, 16, 101, 201, 301, 1, 2);
    make_transfer(q, 6, B, C, 32, 0, 0, 0, 1, 1);
    make_transfer(q, 7, D, E, 64, 0, 0, 0, 2, 1);
    return 0;
}

static int q_teardown(void **state) {
    qfix_t *q = *state;
    int rc = 0;
    if (q) {
        void *inner = q->t;
        rc = tl_teardown(&inner); /* checks the invariants, frees */
    }
    free(q);
    return rc;
}

/* Asserts the ids of out[0..n) are want[0..wn). */
#define assert_ids(out, n, ...)                                                                    \
    do {                                                                                           \
        const u128 want_[] = {__VA_ARGS__};                                                        \
        assert_ids_(out, sizeof(out[0]), n, want_, sizeof want_ / sizeof want_[0], __LINE__);      \
    } while (0)

static void assert_ids_(const void *out, size_t stride, uint32_t n, const u128 *want, size_t wn,
                        int line) {
    char got[512] = "", exp[512] = "";
    for (uint32_t i = 0; i < n && strlen(got) < 480; i++) {
        u128 id;
        memcpy(&id, (const unsigned char *)out + i * stride, sizeof id);
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s ", tl_u128_str(id));
    }
    for (size_t i = 0; i < wn && strlen(exp) < 480; i++)
        snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%s ", tl_u128_str(want[i]));
    if (strcmp(got, exp) != 0) fail_msg("line %d: ids [%s], expected [%s]", line, got, exp);
}

static ledger_account_filter_t af(u128 id, uint16_t flags) {
    return (ledger_account_filter_t){.account_id = id, .flags = flags, .limit = 100};
}

static ledger_query_filter_t qf(void) {
    return (ledger_query_filter_t){.limit = 100};
}

/* ======================= lookups ======================= */

static void test_lookup_accounts(void **state) {
    qfix_t *q = *state;
    ledger_account_t out[8];
    u128 ids[5] = {E, 77, A, 0, U128_MAX};
    uint32_t n = ledger_lookup_accounts(q->t->l, ids, 5, out);
    assert_ids(out, n, E, A);
    assert_int_equal(out[0].timestamp, q->ats[E]);
    assert_int_equal(out[1].user_data_64, 20);
    assert_int_equal(ledger_lookup_accounts(q->t->l, ids, 0, out), 0);
    u128 none[2] = {77, 78};
    assert_int_equal(ledger_lookup_accounts(q->t->l, none, 2, out), 0);
    tl_check(q->t);
}

static void test_lookup_transfers(void **state) {
    qfix_t *q = *state;
    ledger_transfer_t out[8];
    u128 ids[6] = {3, 99, 1, 7, 0, A};
    uint32_t n = ledger_lookup_transfers(q->t->l, ids, 5, out);
    assert_ids(out, n, 3, 1, 7);
    assert_int_equal(out[0].timestamp, q->ts[3]);
    assert_u128(out[2].amount, 64);
    /* Account ids are not transfer ids (A == 1 is transfer 1 though). */
    n = ledger_lookup_transfers(q->t->l, &ids[5], 1, out);
    assert_ids(out, n, 1);
}

/* ======================= get_account_transfers ======================= */

static void test_account_transfers_sides(void **state) {
    qfix_t *q = *state;
    ledger_transfer_t out[16];
    ledger_account_filter_t f = af(A, F_DR);
    uint32_t n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 1, 3, 5);
    f = af(A, F_CR);
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 2, 4);
    f = af(A, F_DR | F_CR);
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 1, 2, 3, 4, 5);
    for (uint32_t i = 1; i < n; i++) assert_true(out[i].timestamp > out[i - 1].timestamp);
    f = af(C, F_DR | F_CR);
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 3, 4, 6);
    /* The account need not have history, nor exist. */
    f = af(E, F_CR);
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 7);
    f = af(77, F_DR | F_CR);
    assert_int_equal(ledger_get_account_transfers(q->t->l, &f, out), 0);
}

static void test_account_transfers_user_data_and_code(void **state) {
    qfix_t *q = *state;
    ledger_transfer_t out[16];
    ledger_account_filter_t f;
    uint32_t n;
    f = af(A, F_DR | F_CR);
    f.user_data_128 = 100;
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 1, 2, 4);
    f = af(A, F_DR | F_CR);
    f.user_data_64 = 200;
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 1, 3, 4);
    f = af(A, F_DR | F_CR);
    f.user_data_32 = 300;
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 1, 2, 4);
    f = af(A, F_DR | F_CR);
    f.code = 1;
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 1, 3);
    /* AND of the fields. */
    f = af(A, F_DR | F_CR);
    f.user_data_128 = 100;
    f.code = 2;
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 2);
    f = af(A, F_DR | F_CR);
    f.user_data_128 = 100;
    f.user_data_64 = 200;
    f.user_data_32 = 300;
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 1, 4);
    /* With a side. */
    f = af(A, F_CR);
    f.user_data_64 = 200;
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 4);
    f = af(A, F_DR);
    f.code = 3;
    assert_int_equal(ledger_get_account_transfers(q->t->l, &f, out), 0);
}

static void test_account_transfers_timestamp_range(void **state) {
    qfix_t *q = *state;
    ledger_transfer_t out[16];
    ledger_account_filter_t f;
    uint32_t n;
    /* Inclusive at both ends. */
    f = af(A, F_DR | F_CR);
    f.timestamp_min = q->ts[3];
    f.timestamp_max = q->ts[5];
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 3, 4, 5);
    f.timestamp_min = q->ts[3] + 1;
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 4, 5);
    f.timestamp_max = q->ts[5] - 1;
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 4);
    f.timestamp_min = f.timestamp_max = q->ts[4];
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 4);
    /* 0 = open. */
    f = af(A, F_DR | F_CR);
    f.timestamp_min = q->ts[4];
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 4, 5);
    f = af(A, F_DR | F_CR);
    f.timestamp_max = q->ts[2];
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 1, 2);
    /* The whole valid range. */
    f = af(A, F_DR | F_CR);
    f.timestamp_min = 1;
    f.timestamp_max = TL_TS_MAX;
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 1, 2, 3, 4, 5);
    /* Reversed within a range. */
    f = af(A, F_DR | F_CR | F_REV);
    f.timestamp_min = q->ts[2];
    f.timestamp_max = q->ts[4];
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 4, 3, 2);
}

static void test_account_transfers_limit_and_reversed(void **state) {
    qfix_t *q = *state;
    ledger_transfer_t out[16];
    ledger_account_filter_t f;
    uint32_t n;
    f = af(A, F_DR | F_CR);
    f.limit = 2;
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 1, 2);
    f.limit = 1;
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 1);
    f = af(A, F_DR | F_CR | F_REV);
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 5, 4, 3, 2, 1);
    f.limit = 2;
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 5, 4);
    /* limit together with a filter. */
    f = af(A, F_DR | F_CR);
    f.user_data_128 = 100;
    f.limit = 2;
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 1, 2);
    f.flags |= F_REV;
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 4, 2);
    /* limit exactly the match count. */
    f = af(A, F_DR);
    f.limit = 3;
    n = ledger_get_account_transfers(q->t->l, &f, out);
    assert_ids(out, n, 1, 3, 5);
}

static void test_account_transfers_pagination(void **state) {
    qfix_t *q = *state;
    /* More transfers so that paging crosses several pages. */
    for (u128 id = 10; id < 30; id++) {
        ledger_transfer_t x = (id % 3 == 0) ? tl_tr(id, B, A, 1, 0) : tl_tr(id, A, C, 1, 0);
        x.code = (uint16_t)(1 + id % 2);
        tl_ok(q->t, x);
    }
    ledger_transfer_t all[64], page[64];
    ledger_account_filter_t f = af(A, F_DR | F_CR);
    f.code = 2;
    uint32_t total = ledger_get_account_transfers(q->t->l, &f, all);
    assert_true(total > 6);
    for (uint32_t limit = 1; limit <= 4; limit++) {
        /* Forward: move timestamp_min to last + 1. */
        uint32_t got = 0;
        ledger_account_filter_t p = f;
        p.limit = limit;
        for (int guard = 0; guard < 100; guard++) {
            uint32_t n = ledger_get_account_transfers(q->t->l, &p, page);
            assert_true(n <= limit);
            for (uint32_t i = 0; i < n; i++) {
                assert_true(got < total);
                assert_u128(page[i].id, all[got].id);
                got++;
            }
            if (n < limit) break;
            p.timestamp_min = page[n - 1].timestamp + 1;
        }
        assert_int_equal(got, total);
        /* Backward: reversed, move timestamp_max to last - 1. */
        got = 0;
        p = f;
        p.limit = limit;
        p.flags |= F_REV;
        for (int guard = 0; guard < 100; guard++) {
            uint32_t n = ledger_get_account_transfers(q->t->l, &p, page);
            for (uint32_t i = 0; i < n; i++) {
                assert_true(got < total);
                assert_u128(page[i].id, all[total - 1 - got].id);
                got++;
            }
            if (n < limit) break;
            p.timestamp_max = page[n - 1].timestamp - 1;
        }
        assert_int_equal(got, total);
    }
}

static void test_account_transfers_post_void_and_expired(void **state) {
    qfix_t *q = *state;
    tl_t *t = q->t;
    ledger_transfer_t p = tl_pending(40, A, C, 10, 0);
    p.user_data_128 = 4040;
    p.code = 9;
    tl_ok(t, p);
    ledger_transfer_t post = tl_post(41, 40, 3); /* inherits user_data_128 and code */
    tl_ok(t, post);
    ledger_transfer_t p2 = tl_pending(42, C, A, 5, 1);
    p2.user_data_128 = 4040;
    uint64_t ts42 = tl_ok(t, p2);
    assert_int_equal(tl_expire(t, ts42 + TL_NS_PER_S), 1);
    ledger_transfer_t out[16];
    ledger_account_filter_t f = af(A, F_DR | F_CR);
    f.user_data_128 = 4040;
    uint32_t n = ledger_get_account_transfers(t->l, &f, out);
    assert_ids(out, n, 40, 41, 42); /* the expired pending transfer still shows */
    f.code = 9;
    n = ledger_get_account_transfers(t->l, &f, out);
    assert_ids(out, n, 40, 41);
    /* The post is on the debit side of A (its accounts come from the pending transfer). */
    f = af(A, F_DR);
    f.timestamp_min = tl_transfer(t, 40).timestamp;
    n = ledger_get_account_transfers(t->l, &f, out);
    assert_ids(out, n, 40, 41);
}

/* ======================= get_account_balances ======================= */

static void assert_row(const ledger_balance_t *r, u128 dp, u128 dpo, u128 cp, u128 cpo,
                       uint64_t ts) {
    assert_u128(r->debits_pending, dp);
    assert_u128(r->debits_posted, dpo);
    assert_u128(r->credits_pending, cp);
    assert_u128(r->credits_posted, cpo);
    assert_int_equal(r->timestamp, ts);
}

static void test_balances_rows(void **state) {
    qfix_t *q = *state;
    ledger_balance_t out[16];
    ledger_account_filter_t f = af(A, F_DR | F_CR);
    uint32_t n = ledger_get_account_balances(q->t->l, &f, out);
    assert_int_equal(n, 5);
    assert_row(&out[0], 0, 1, 0, 0, q->ts[1]);
    assert_row(&out[1], 0, 1, 0, 2, q->ts[2]);
    assert_row(&out[2], 0, 5, 0, 2, q->ts[3]);
    assert_row(&out[3], 0, 5, 0, 10, q->ts[4]);
    assert_row(&out[4], 0, 21, 0, 10, q->ts[5]);
    /* C: credit side of 3 and 6, debit side of 4. */
    f = af(C, F_DR | F_CR);
    n = ledger_get_account_balances(q->t->l, &f, out);
    assert_int_equal(n, 3);
    assert_row(&out[0], 0, 0, 0, 4, q->ts[3]);
    assert_row(&out[1], 0, 8, 0, 4, q->ts[4]);
    assert_row(&out[2], 0, 8, 0, 36, q->ts[6]);
}

static void test_balances_only_for_history_accounts(void **state) {
    qfix_t *q = *state;
    ledger_balance_t out[16];
    ledger_transfer_t tout[16];
    ledger_account_filter_t f = af(B, F_DR | F_CR);
    assert_int_equal(ledger_get_account_transfers(q->t->l, &f, tout), 4);
    assert_int_equal(ledger_get_account_balances(q->t->l, &f, out), 0);
    f = af(E, F_CR);
    assert_int_equal(ledger_get_account_balances(q->t->l, &f, out), 0);
    f = af(77, F_DR | F_CR);
    assert_int_equal(ledger_get_account_balances(q->t->l, &f, out), 0);
}

static void test_balances_filters_apply_to_transfer(void **state) {
    qfix_t *q = *state;
    ledger_balance_t out[16];
    ledger_account_filter_t f;
    uint32_t n;
    f = af(A, F_DR);
    n = ledger_get_account_balances(q->t->l, &f, out);
    assert_int_equal(n, 3);
    assert_row(&out[0], 0, 1, 0, 0, q->ts[1]);
    assert_row(&out[1], 0, 5, 0, 2, q->ts[3]);
    assert_row(&out[2], 0, 21, 0, 10, q->ts[5]);
    f = af(A, F_CR);
    n = ledger_get_account_balances(q->t->l, &f, out);
    assert_int_equal(n, 2);
    assert_row(&out[0], 0, 1, 0, 2, q->ts[2]);
    assert_row(&out[1], 0, 5, 0, 10, q->ts[4]);
    f = af(A, F_DR | F_CR);
    f.code = 1;
    n = ledger_get_account_balances(q->t->l, &f, out);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].timestamp, q->ts[1]);
    assert_int_equal(out[1].timestamp, q->ts[3]);
    f = af(A, F_DR | F_CR);
    f.user_data_128 = 100;
    f.user_data_64 = 200;
    n = ledger_get_account_balances(q->t->l, &f, out);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].timestamp, q->ts[1]);
    assert_int_equal(out[1].timestamp, q->ts[4]);
    f = af(A, F_DR | F_CR);
    f.user_data_32 = 301;
    n = ledger_get_account_balances(q->t->l, &f, out);
    assert_int_equal(n, 2);
    assert_int_equal(out[1].timestamp, q->ts[5]);
    f = af(A, F_DR | F_CR | F_REV);
    f.limit = 2;
    n = ledger_get_account_balances(q->t->l, &f, out);
    assert_int_equal(n, 2);
    assert_row(&out[0], 0, 21, 0, 10, q->ts[5]);
    assert_row(&out[1], 0, 5, 0, 10, q->ts[4]);
    f = af(A, F_DR | F_CR);
    f.timestamp_min = q->ts[2];
    f.timestamp_max = q->ts[3];
    n = ledger_get_account_balances(q->t->l, &f, out);
    assert_int_equal(n, 2);
    assert_row(&out[0], 0, 1, 0, 2, q->ts[2]);
    assert_row(&out[1], 0, 5, 0, 2, q->ts[3]);
}

static void test_balances_two_phase_rows_no_expiry_row(void **state) {
    (void)state;
    tl_t *t = tl_new();
    tl_create_account(t, 1, 1, 1, LEDGER_ACCOUNT_HISTORY);
    tl_create_account(t, 2, 1, 1, LEDGER_ACCOUNT_HISTORY);
    uint64_t ts[8];
    ts[0] = tl_ok(t, tl_pending(10, 1, 2, 10, 0));
    ts[1] = tl_ok(t, tl_post(11, 10, 6));
    ts[2] = tl_ok(t, tl_pending(12, 1, 2, 5, 0));
    ts[3] = tl_ok(t, tl_void(13, 12, 0));
    ts[4] = tl_ok(t, tl_pending(14, 1, 2, 7, 1));
    assert_int_equal(tl_expire(t, ts[4] + TL_NS_PER_S), 1);
    tl_assert_balances(t, 1, 0, 6, 0, 0);
    ts[5] = tl_ok(t, tl_tr(15, 2, 1, 3, 0));
    ledger_balance_t out[16];
    ledger_account_filter_t f = af(1, F_DR | F_CR);
    uint32_t n = ledger_get_account_balances(t->l, &f, out);
    assert_int_equal(n, 6); /* five transfers on the debit side, one on the credit side */
    assert_row(&out[0], 10, 0, 0, 0, ts[0]);
    assert_row(&out[1], 0, 6, 0, 0, ts[1]);
    assert_row(&out[2], 5, 6, 0, 0, ts[2]);
    assert_row(&out[3], 0, 6, 0, 0, ts[3]);
    assert_row(&out[4], 7, 6, 0, 0, ts[4]);
    assert_row(&out[5], 0, 6, 0, 3, ts[5]); /* the expiry released 7 without a row */
    /* The other side's rows hold the credit account's balances. */
    f = af(2, F_DR | F_CR);
    n = ledger_get_account_balances(t->l, &f, out);
    assert_int_equal(n, 6);
    assert_row(&out[0], 0, 0, 10, 0, ts[0]);
    assert_row(&out[1], 0, 0, 0, 6, ts[1]);
    assert_row(&out[4], 0, 0, 7, 6, ts[4]);
    assert_row(&out[5], 0, 3, 0, 6, ts[5]);
    tl_check(t);
    tl_free(t);
}

static void test_balances_history_on_one_side_only(void **state) {
    (void)state;
    tl_t *t = tl_new();
    tl_create_account(t, 1, 1, 1, 0);
    tl_create_account(t, 2, 1, 1, LEDGER_ACCOUNT_HISTORY);
    uint64_t ts = tl_ok(t, tl_tr(10, 1, 2, 4, 0));
    assert_int_equal(tl_stats(t).balances, 1);
    ledger_balance_t out[4];
    ledger_account_filter_t f = af(2, F_CR);
    assert_int_equal(ledger_get_account_balances(t->l, &f, out), 1);
    assert_row(&out[0], 0, 0, 0, 4, ts);
    f = af(1, F_DR);
    assert_int_equal(ledger_get_account_balances(t->l, &f, out), 0);
    tl_check(t);
    tl_free(t);
}

/* ======================= query_accounts / query_transfers ======================= */

static void test_query_accounts(void **state) {
    qfix_t *q = *state;
    ledger_account_t out[16];
    ledger_query_filter_t f;
    uint32_t n;
    f = qf();
    n = ledger_query_accounts(q->t->l, &f, out);
    assert_ids(out, n, A, B, C, D, E);
    f = qf();
    f.user_data_128 = 10;
    n = ledger_query_accounts(q->t->l, &f, out);
    assert_ids(out, n, A, B, D);
    f.user_data_64 = 20;
    n = ledger_query_accounts(q->t->l, &f, out);
    assert_ids(out, n, A);
    f = qf();
    f.user_data_32 = 30;
    n = ledger_query_accounts(q->t->l, &f, out);
    assert_ids(out, n, A, B);
    f = qf();
    f.ledger = 2;
    n = ledger_query_accounts(q->t->l, &f, out);
    assert_ids(out, n, D, E);
    f = qf();
    f.code = 1;
    n = ledger_query_accounts(q->t->l, &f, out);
    assert_ids(out, n, A, C, D);
    f.ledger = 1;
    n = ledger_query_accounts(q->t->l, &f, out);
    assert_ids(out, n, A, C);
    f.user_data_32 = 31;
    n = ledger_query_accounts(q->t->l, &f, out);
    assert_ids(out, n, C);
    f = qf();
    f.ledger = 3;
    assert_int_equal(ledger_query_accounts(q->t->l, &f, out), 0);
    /* Range, inclusive. */
    f = qf();
    f.timestamp_min = q->ats[B];
    f.timestamp_max = q->ats[D];
    n = ledger_query_accounts(q->t->l, &f, out);
    assert_ids(out, n, B, C, D);
    f.timestamp_min = q->ats[B] + 1;
    f.timestamp_max = q->ats[D] - 1;
    n = ledger_query_accounts(q->t->l, &f, out);
    assert_ids(out, n, C);
    f = qf();
    f.timestamp_min = q->ats[D];
    n = ledger_query_accounts(q->t->l, &f, out);
    assert_ids(out, n, D, E);
    f = qf();
    f.timestamp_max = q->ats[A];
    n = ledger_query_accounts(q->t->l, &f, out);
    assert_ids(out, n, A);
    /* Limit and reversed. */
    f = qf();
    f.limit = 2;
    n = ledger_query_accounts(q->t->l, &f, out);
    assert_ids(out, n, A, B);
    f.flags = F_REV;
    n = ledger_query_accounts(q->t->l, &f, out);
    assert_ids(out, n, E, D);
    f = qf();
    f.flags = F_REV;
    n = ledger_query_accounts(q->t->l, &f, out);
    assert_ids(out, n, E, D, C, B, A);
    f.user_data_128 = 10;
    f.limit = 2;
    n = ledger_query_accounts(q->t->l, &f, out);
    assert_ids(out, n, D, B);
    f.flags = 0;
    n = ledger_query_accounts(q->t->l, &f, out);
    assert_ids(out, n, A, B);
    f = qf();
    f.flags = F_REV;
    f.timestamp_min = q->ats[B];
    f.timestamp_max = q->ats[D];
    f.limit = 2;
    n = ledger_query_accounts(q->t->l, &f, out);
    assert_ids(out, n, D, C);
    assert_int_equal(out[0].timestamp, q->ats[D]);
}

static void test_query_transfers(void **state) {
    qfix_t *q = *state;
    ledger_transfer_t out[16];
    ledger_query_filter_t f;
    uint32_t n;
    f = qf();
    n = ledger_query_transfers(q->t->l, &f, out);
    assert_ids(out, n, 1, 2, 3, 4, 5, 6, 7);
    f = qf();
    f.ledger = 2;
    n = ledger_query_transfers(q->t->l, &f, out);
    assert_ids(out, n, 7);
    f = qf();
    f.code = 1;
    n = ledger_query_transfers(q->t->l, &f, out);
    assert_ids(out, n, 1, 3, 6, 7);
    f.ledger = 1;
    n = ledger_query_transfers(q->t->l, &f, out);
    assert_ids(out, n, 1, 3, 6);
    f = qf();
    f.user_data_128 = 100;
    n = ledger_query_transfers(q->t->l, &f, out);
    assert_ids(out, n, 1, 2, 4);
    f = qf();
    f.user_data_64 = 201;
    n = ledger_query_transfers(q->t->l, &f, out);
    assert_ids(out, n, 2, 5);
    f = qf();
    f.user_data_32 = 301;
    f.user_data_64 = 200;
    n = ledger_query_transfers(q->t->l, &f, out);
    assert_ids(out, n, 3);
    f.code = 2;
    assert_int_equal(ledger_query_transfers(q->t->l, &f, out), 0);
    /* Ranges, limit, reversed. */
    f = qf();
    f.timestamp_min = q->ts[2];
    f.timestamp_max = q->ts[6];
    n = ledger_query_transfers(q->t->l, &f, out);
    assert_ids(out, n, 2, 3, 4, 5, 6);
    f.timestamp_min = q->ts[2] + 1;
    f.timestamp_max = q->ts[6] - 1;
    n = ledger_query_transfers(q->t->l, &f, out);
    assert_ids(out, n, 3, 4, 5);
    f.limit = 2;
    n = ledger_query_transfers(q->t->l, &f, out);
    assert_ids(out, n, 3, 4);
    f.flags = F_REV;
    n = ledger_query_transfers(q->t->l, &f, out);
    assert_ids(out, n, 5, 4);
    f = qf();
    f.flags = F_REV;
    f.code = 2;
    n = ledger_query_transfers(q->t->l, &f, out);
    assert_ids(out, n, 5, 2);
    f = qf();
    f.timestamp_min = q->ts[7];
    n = ledger_query_transfers(q->t->l, &f, out);
    assert_ids(out, n, 7);
    f.timestamp_min = q->ts[7] + 1;
    assert_int_equal(ledger_query_transfers(q->t->l, &f, out), 0);
}

static void test_query_pagination(void **state) {
    qfix_t *q = *state;
    ledger_transfer_t all[16], page[16];
    ledger_query_filter_t f = qf();
    f.ledger = 1;
    uint32_t total = ledger_query_transfers(q->t->l, &f, all);
    assert_int_equal(total, 6);
    uint32_t got = 0;
    f.limit = 4;
    for (int guard = 0; guard < 10; guard++) {
        uint32_t n = ledger_query_transfers(q->t->l, &f, page);
        for (uint32_t i = 0; i < n; i++) assert_u128(page[i].id, all[got++].id);
        if (n < f.limit) break;
        f.timestamp_min = page[n - 1].timestamp + 1;
    }
    assert_int_equal(got, total);
}

/* ======================= invalid filters ======================= */

static void test_invalid_account_filters(void **state) {
    qfix_t *q = *state;
    ledger_transfer_t tout[16];
    ledger_balance_t bout[16];
    ledger_account_filter_t good = af(A, F_DR | F_CR);
    assert_int_equal(ledger_get_account_transfers(q->t->l, &good, tout), 5);
    assert_int_equal(ledger_get_account_balances(q->t->l, &good, bout), 5);
    ledger_account_filter_t bad[16];
    int nb = 0;
    bad[nb] = good, bad[nb++].account_id = 0;
    bad[nb] = good, bad[nb++].account_id = U128_MAX;
    bad[nb] = good, bad[nb++].timestamp_min = TL_TS_MAX + 1;
    bad[nb] = good, bad[nb++].timestamp_min = UINT64_MAX;
    bad[nb] = good, bad[nb++].timestamp_max = TL_TS_MAX + 1;
    bad[nb] = good, bad[nb++].timestamp_max = UINT64_MAX;
    bad[nb] = good, bad[nb].timestamp_min = q->ts[5], bad[nb++].timestamp_max = q->ts[1];
    bad[nb] = good, bad[nb].timestamp_min = q->ts[3] + 1, bad[nb++].timestamp_max = q->ts[3];
    bad[nb] = good, bad[nb++].limit = 0;
    bad[nb] = good, bad[nb++].flags = 0;
    bad[nb] = good, bad[nb++].flags = F_REV;
    /* Wire-struct rules of ledger.h: reserved bytes zero, no unknown flag bits. */
    bad[nb] = good, bad[nb++].flags = F_DR | F_CR | (1u << 3);
    bad[nb] = good, bad[nb++].reserved_1 = 1;
    bad[nb] = good, bad[nb++].reserved[55] = 1;
    for (int i = 0; i < nb; i++) {
        if (ledger_get_account_transfers(q->t->l, &bad[i], tout) != 0)
            fail_msg("invalid account filter #%d returned transfers", i);
        if (ledger_get_account_balances(q->t->l, &bad[i], bout) != 0)
            fail_msg("invalid account filter #%d returned balances", i);
    }
    /* Valid edge cases: min > max is fine when max is open; min == max; the edges of the
     * timestamp range. */
    ledger_account_filter_t f = good;
    f.timestamp_min = q->ts[3];
    f.timestamp_max = 0;
    assert_int_equal(ledger_get_account_transfers(q->t->l, &f, tout), 3);
    f.timestamp_min = TL_TS_MAX;
    assert_int_equal(ledger_get_account_transfers(q->t->l, &f, tout), 0);
    f.timestamp_min = 0;
    f.timestamp_max = TL_TS_MAX;
    assert_int_equal(ledger_get_account_transfers(q->t->l, &f, tout), 5);
    assert_int_equal(ledger_get_account_balances(q->t->l, &f, bout), 5);
    f.timestamp_max = 1;
    assert_int_equal(ledger_get_account_transfers(q->t->l, &f, tout), 0);
}

static void test_invalid_query_filters(void **state) {
    qfix_t *q = *state;
    ledger_transfer_t tout[16];
    ledger_account_t aout[16];
    ledger_query_filter_t good = qf();
    assert_int_equal(ledger_query_transfers(q->t->l, &good, tout), 7);
    assert_int_equal(ledger_query_accounts(q->t->l, &good, aout), 5);
    ledger_query_filter_t bad[12];
    int nb = 0;
    bad[nb] = good, bad[nb++].timestamp_min = TL_TS_MAX + 1;
    bad[nb] = good, bad[nb++].timestamp_min = UINT64_MAX;
    bad[nb] = good, bad[nb++].timestamp_max = TL_TS_MAX + 1;
    bad[nb] = good, bad[nb++].timestamp_max = UINT64_MAX;
    bad[nb] = good, bad[nb].timestamp_min = q->ts[5], bad[nb++].timestamp_max = q->ts[1];
    bad[nb] = good, bad[nb++].limit = 0;
    bad[nb] = good, bad[nb++].flags = F_REV | F_DR; /* only `reversed` exists here */
    bad[nb] = good, bad[nb++].reserved_1 = 1;
    bad[nb] = good, bad[nb++].reserved_2 = 1;
    for (int i = 0; i < nb; i++) {
        if (ledger_query_transfers(q->t->l, &bad[i], tout) != 0)
            fail_msg("invalid query filter #%d returned transfers", i);
        if (ledger_query_accounts(q->t->l, &bad[i], aout) != 0)
            fail_msg("invalid query filter #%d returned accounts", i);
    }
    ledger_query_filter_t f = good;
    f.timestamp_min = q->ts[5];
    assert_int_equal(ledger_query_transfers(q->t->l, &f, tout), 3);
    f.timestamp_min = 1;
    f.timestamp_max = TL_TS_MAX;
    assert_int_equal(ledger_query_transfers(q->t->l, &f, tout), 7);
    assert_int_equal(ledger_query_accounts(q->t->l, &f, aout), 5);
}

/* ======================= limit clamp ======================= */

static void test_limit_clamped(void **state) {
    (void)state;
    tl_t *t = tl_new_cfg(16, 20000);
    assert_non_null(t);
    tl_create_account(t, 1, 1, 1, LEDGER_ACCOUNT_HISTORY);
    tl_create_account(t, 2, 1, 1, 0);
    uint32_t total = CP_QUERY_LIMIT_MAX + 11;
    ledger_transfer_t *ev = calloc(CP_BATCH_EVENTS_MAX, sizeof *ev);
    ledger_result_t *res = calloc(CP_BATCH_EVENTS_MAX, sizeof *res);
    assert_non_null(ev);
    assert_non_null(res);
    uint32_t made = 0;
    while (made < total) {
        uint32_t n = total - made < CP_BATCH_EVENTS_MAX ? total - made : CP_BATCH_EVENTS_MAX;
        for (uint32_t i = 0; i < n; i++) ev[i] = tl_tr(1 + made + i, 1, 2, 1, 0);
        tl_transfers(t, ev, n, res);
        for (uint32_t i = 0; i < n; i++) assert_tr(res[i].result, LEDGER_TRANSFER_CREATED);
        made += n;
    }
    /* Room for the clamp plus a canary. */
    size_t room = CP_QUERY_LIMIT_MAX + 8;
    ledger_transfer_t *tout = malloc(room * sizeof *tout);
    ledger_balance_t *bout = malloc(room * sizeof *bout);
    assert_non_null(tout);
    assert_non_null(bout);
    memset(tout, 0xab, room * sizeof *tout);
    memset(bout, 0xab, room * sizeof *bout);
    ledger_account_filter_t f = af(1, F_DR);
    f.limit = UINT32_MAX;
    assert_int_equal(ledger_get_account_transfers(t->l, &f, tout), CP_QUERY_LIMIT_MAX);
    assert_u128(tout[0].id, 1);
    assert_u128(tout[CP_QUERY_LIMIT_MAX - 1].id, CP_QUERY_LIMIT_MAX);
    unsigned char canary[sizeof *tout];
    memset(canary, 0xab, sizeof canary);
    assert_memory_equal(&tout[CP_QUERY_LIMIT_MAX], canary, sizeof canary);
    f.limit = CP_QUERY_LIMIT_MAX + 1;
    f.flags |= F_REV;
    assert_int_equal(ledger_get_account_transfers(t->l, &f, tout), CP_QUERY_LIMIT_MAX);
    assert_u128(tout[0].id, total);
    assert_u128(tout[CP_QUERY_LIMIT_MAX - 1].id, total - CP_QUERY_LIMIT_MAX + 1);
    f.flags = F_DR;
    f.limit = UINT32_MAX;
    assert_int_equal(ledger_get_account_balances(t->l, &f, bout), CP_QUERY_LIMIT_MAX);
    assert_u128(bout[CP_QUERY_LIMIT_MAX - 1].debits_posted, CP_QUERY_LIMIT_MAX);
    assert_memory_equal(&bout[CP_QUERY_LIMIT_MAX], canary, sizeof *bout);
    ledger_query_filter_t qq = {.limit = UINT32_MAX};
    memset(tout, 0xab, room * sizeof *tout);
    assert_int_equal(ledger_query_transfers(t->l, &qq, tout), CP_QUERY_LIMIT_MAX);
    assert_u128(tout[CP_QUERY_LIMIT_MAX - 1].id, CP_QUERY_LIMIT_MAX);
    assert_memory_equal(&tout[CP_QUERY_LIMIT_MAX], canary, sizeof canary);
    qq.flags = F_REV;
    assert_int_equal(ledger_query_transfers(t->l, &qq, tout), CP_QUERY_LIMIT_MAX);
    assert_u128(tout[0].id, total);
    ledger_account_t aout[4];
    assert_int_equal(ledger_query_accounts(t->l, &qq, aout), 2);
    /* A limit exactly at the maximum and just below it. */
    f = af(1, F_DR);
    f.limit = CP_QUERY_LIMIT_MAX;
    assert_int_equal(ledger_get_account_transfers(t->l, &f, tout), CP_QUERY_LIMIT_MAX);
    f.limit = CP_QUERY_LIMIT_MAX - 1;
    assert_int_equal(ledger_get_account_transfers(t->l, &f, tout), CP_QUERY_LIMIT_MAX - 1);
    assert_u128(tout[CP_QUERY_LIMIT_MAX - 2].id, CP_QUERY_LIMIT_MAX - 1);
    tl_check(t);
    free(tout);
    free(bout);
    free(ev);
    free(res);
    tl_free(t);
}

#define T(f) cmocka_unit_test_setup_teardown(f, q_setup, q_teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_lookup_accounts),
        T(test_lookup_transfers),
        T(test_account_transfers_sides),
        T(test_account_transfers_user_data_and_code),
        T(test_account_transfers_timestamp_range),
        T(test_account_transfers_limit_and_reversed),
        T(test_account_transfers_pagination),
        T(test_account_transfers_post_void_and_expired),
        T(test_balances_rows),
        T(test_balances_only_for_history_accounts),
        T(test_balances_filters_apply_to_transfer),
        T(test_balances_two_phase_rows_no_expiry_row),
        T(test_balances_history_on_one_side_only),
        T(test_query_accounts),
        T(test_query_transfers),
        T(test_query_pagination),
        T(test_invalid_account_filters),
        T(test_invalid_query_filters),
        T(test_limit_clamped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

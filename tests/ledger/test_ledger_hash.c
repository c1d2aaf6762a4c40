/* ledger_state_hash: equal for ledgers that applied the same batches whatever their
 * capacities and memory history (restored from an image, stale expiry-heap entries); changed
 * by any single difference in events, balances, pending states, balance history, transfer
 * lists, failed ids or the clock. */
#include "ledger_test_util.h"

#include "ledger/ledger_internal.h"

enum { A = 1, B = 2, C = 3, D = 4, H = 5 };

#define F_LINKED LEDGER_TRANSFER_LINKED

/* A history that reaches every part of the state: accounts with and without balance history,
 * single-phase transfers, a pending transfer posted, one voided, one expired, one left
 * pending with a timeout, a chain that commits and one that rolls back, and transfers that
 * fail for a state reason (their ids are remembered). `amount_delta` changes the amount of
 * one transfer; `void_not_post` voids the pending transfer that is otherwise posted. */
typedef struct variant {
    u128 amount_delta;
    bool void_not_post;
} variant_t;

static void history(tl_t *t, variant_t v) {
    tl_create_accounts_range(t, A, D, 0);
    tl_create_account(t, H, 1, 1, LEDGER_ACCOUNT_HISTORY);
    tl_ok(t, tl_tr(1, A, B, 10, 0));
    tl_ok(t, tl_tr(2, H, C, 7 + v.amount_delta, 0));
    tl_ok(t, tl_pending(3, A, H, 5, 0));
    tl_ok(t, v.void_not_post ? tl_void(4, 3, 0) : tl_post(4, 3, 0));
    tl_ok(t, tl_pending(5, B, C, 3, 0));
    tl_ok(t, tl_void(6, 5, 0));
    uint64_t ts = tl_ok(t, tl_pending(7, C, D, 2, 1));
    tl_expire(t, ts + TL_NS_PER_S); /* 7 expires */
    tl_ok(t, tl_pending(8, D, H, 4, 3600));
    ledger_transfer_t chain[3] = {tl_tr(9, A, C, 1, F_LINKED), tl_tr(10, C, H, 1, F_LINKED),
                                  tl_tr(11, H, A, 1, 0)};
    ledger_result_t r[3];
    tl_transfers(t, chain, 3, r);
    for (int i = 0; i < 3; i++) assert_tr(r[i].result, LEDGER_TRANSFER_CREATED);
    ledger_transfer_t broken[2] = {tl_tr(12, A, B, 1, F_LINKED), tl_tr(13, A, 99, 1, 0)};
    tl_transfers(t, broken, 2, r);
    assert_tr(r[1].result, LEDGER_TRANSFER_CREDIT_ACCOUNT_NOT_FOUND);
    assert_tr(tl_transfer1(t, tl_tr(14, 98, B, 1, 0)), LEDGER_TRANSFER_DEBIT_ACCOUNT_NOT_FOUND);
    tl_ok(t, tl_tr(15, B, H, 2, 0));
}

static u128 hash_of(tl_t *t) {
    return ledger_state_hash(t->l);
}

static tl_t *built(uint32_t accounts_max, uint32_t transfers_max, variant_t v) {
    tl_t *t = tl_new_cfg(accounts_max, transfers_max);
    assert_non_null(t);
    history(t, v);
    tl_check(t);
    return t;
}

/* A copy of t's ledger through its snapshot image, into a ledger of other capacities. */
static ledger_t *image_copy(const ledger_t *l, uint32_t accounts_max, uint32_t transfers_max) {
    ledger_image_header_t h;
    ledger_image_header(l, &h);
    ledger_region_t from[LEDGER_IMAGE_REGIONS], to[LEDGER_IMAGE_REGIONS];
    ledger_image_regions(l, &h, from);
    ledger_config_t c = {.accounts_max = accounts_max, .transfers_max = transfers_max};
    ledger_t *copy = ledger_create(&c);
    assert_non_null(copy);
    uint32_t n = ledger_image_restore_regions(copy, &h, to);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(from[i].size, to[i].size);
        if (to[i].size) memcpy(to[i].ptr, from[i].ptr, to[i].size);
    }
    assert_null(ledger_image_finish(copy, &h));
    return copy;
}

static void test_empty_ledgers_hash_alike(void **state) {
    (void)state;
    tl_t *a = tl_new_cfg(16, 16), *b = tl_new_cfg(1000, 5000);
    assert_true(hash_of(a) == hash_of(b));
    assert_true(hash_of(a) != 0);
    tl_free(a);
    tl_free(b);
}

static void test_same_history_hashes_alike_whatever_the_capacity(void **state) {
    (void)state;
    tl_t *a = built(8, 64, (variant_t){0}), *b = built(1000, 5000, (variant_t){0});
    assert_true(hash_of(a) == hash_of(b));
    /* And stays so, step by step, as both go on. */
    for (u128 id = 100; id < 140; id++) {
        ledger_transfer_t x = tl_tr(id, 1 + (uint32_t)(id % 4), H, id % 3 + 1, 0);
        assert_int_equal(tl_transfer1(a, x), tl_transfer1(b, x));
        assert_true(hash_of(a) == hash_of(b));
    }
    tl_free(a);
    tl_free(b);
}

static void test_hash_is_a_pure_function_of_the_state(void **state) {
    (void)state;
    tl_t *a = built(64, 64, (variant_t){0});
    u128 h = hash_of(a);
    /* Reads and a no-op expiry at the current clock change nothing. */
    ledger_account_t acc;
    assert_true(tl_find_account(a, A, &acc));
    assert_int_equal(ledger_expire(a->l, a->clock), 0);
    assert_true(hash_of(a) == h);
    tl_free(a);
}

static void test_restored_image_hashes_alike(void **state) {
    (void)state;
    /* The original's expiry heap holds stale entries (posted, voided, expired transfers);
     * the restored one's is rebuilt from the rows; its tables have other capacities. */
    tl_t *a = built(64, 64, (variant_t){0});
    ledger_t *copy = image_copy(a->l, 512, 1024);
    assert_true(ledger_state_hash(copy) == hash_of(a));
    ledger_destroy(copy);
    tl_free(a);
}

static void test_one_amount_changes_the_hash(void **state) {
    (void)state;
    tl_t *a = built(64, 64, (variant_t){0}), *b = built(64, 64, (variant_t){.amount_delta = 1});
    assert_true(hash_of(a) != hash_of(b));
    tl_free(a);
    tl_free(b);
}

static void test_post_versus_void_changes_the_hash(void **state) {
    (void)state;
    tl_t *a = built(64, 64, (variant_t){0}), *b = built(64, 64, (variant_t){.void_not_post = true});
    assert_true(hash_of(a) != hash_of(b));
    tl_free(a);
    tl_free(b);
}

static void test_one_more_event_changes_the_hash(void **state) {
    (void)state;
    tl_t *a = built(64, 64, (variant_t){0}), *b = built(64, 64, (variant_t){0});
    /* The same batch timestamp for both: one creates a transfer, the other's event fails
     * validation (not remembered), so the only difference is one transfer row. */
    assert_int_equal(tl_transfer1(a, tl_tr(50, A, B, 1, 0)), LEDGER_TRANSFER_CREATED);
    assert_int_equal(tl_transfer1(b, tl_tr(50, A, A, 1, 0)),
                     LEDGER_TRANSFER_ACCOUNTS_MUST_BE_DIFFERENT);
    assert_int_equal(a->clock, b->clock);
    assert_true(hash_of(a) != hash_of(b));
    tl_free(a);
    tl_free(b);
}

static void test_a_failed_id_changes_the_hash(void **state) {
    (void)state;
    tl_t *a = built(64, 64, (variant_t){0}), *b = built(64, 64, (variant_t){0});
    /* Both fail; only a's failure depends on state and is remembered (id_already_failed). */
    assert_int_equal(tl_transfer1(a, tl_tr(51, A, 97, 1, 0)),
                     LEDGER_TRANSFER_CREDIT_ACCOUNT_NOT_FOUND);
    assert_int_equal(tl_transfer1(b, tl_tr(51, A, A, 1, 0)),
                     LEDGER_TRANSFER_ACCOUNTS_MUST_BE_DIFFERENT);
    assert_int_equal(tl_stats(a).failed_ids, tl_stats(b).failed_ids + 1);
    assert_true(hash_of(a) != hash_of(b));
    tl_free(a);
    tl_free(b);
}

static void test_a_balance_changes_the_hash(void **state) {
    (void)state;
    tl_t *a = built(64, 64, (variant_t){0});
    u128 h = hash_of(a);
    ledger_account_t acc = tl_account(a, C);
    assert_true(ledger_test_set_balances(a->l, C, acc.debits_pending, acc.debits_posted,
                                         acc.credits_pending, acc.credits_posted + 1));
    a->balances_forced = true;
    assert_true(hash_of(a) != h);
    assert_true(ledger_test_set_balances(a->l, C, acc.debits_pending, acc.debits_posted,
                                         acc.credits_pending, acc.credits_posted));
    assert_true(hash_of(a) == h);
    tl_free(a);
}

static void test_expiry_changes_the_hash(void **state) {
    (void)state;
    tl_t *a = built(64, 64, (variant_t){0});
    u128 before = hash_of(a);
    assert_int_equal(tl_expire(a, a->clock + 3601 * TL_NS_PER_S), 1); /* transfer 8 */
    assert_true(hash_of(a) != before);
    tl_free(a);
}

static void test_the_clock_changes_the_hash(void **state) {
    (void)state;
    tl_t *a = built(64, 64, (variant_t){0}), *b = built(64, 64, (variant_t){0});
    /* Nothing due: only the clock moves, which decides which batch timestamps are refused. */
    assert_int_equal(ledger_expire(a->l, a->clock + 1), 0);
    assert_true(hash_of(a) != hash_of(b));
    tl_free(a);
    tl_free(b);
}

/* Differences no public call can make alone, made directly in the tables: each must show. */
static void test_each_part_of_a_row_meta_is_hashed(void **state) {
    (void)state;
    tl_t *a = built(64, 64, (variant_t){0});
    ledger_t *l = a->l;
    u128 h = hash_of(a);
    uint32_t pending8 = ledger_transfer_row(l, 8);
    assert_int_equal(l->tmeta[pending8].status, LT_PENDING);
    l->tmeta[pending8].status = LT_VOIDED;
    assert_true(hash_of(a) != h);
    l->tmeta[pending8].status = LT_PENDING;
    assert_true(hash_of(a) == h);

    uint32_t t15 = ledger_transfer_row(l, 15);
    uint32_t prev = l->tmeta[t15].prev_dr;
    assert_int_not_equal(prev, LINDEX_NONE);
    l->tmeta[t15].prev_dr = LINDEX_NONE;
    assert_true(hash_of(a) != h);
    l->tmeta[t15].prev_dr = prev;

    uint32_t bal = l->tmeta[t15].balance_cr; /* H keeps history */
    assert_int_not_equal(bal, LINDEX_NONE);
    l->balances[bal].credits_posted++;
    assert_true(hash_of(a) != h);
    l->balances[bal].credits_posted--;

    uint32_t ra = ledger_account_row(l, A);
    uint32_t head = l->ameta[ra];
    l->ameta[ra] = LINDEX_NONE;
    assert_true(hash_of(a) != h);
    l->ameta[ra] = head;

    l->n.pending_open++;
    assert_true(hash_of(a) != h);
    l->n.pending_open--;
    assert_true(hash_of(a) == h);
    tl_free(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_ledgers_hash_alike),
        cmocka_unit_test(test_same_history_hashes_alike_whatever_the_capacity),
        cmocka_unit_test(test_hash_is_a_pure_function_of_the_state),
        cmocka_unit_test(test_restored_image_hashes_alike),
        cmocka_unit_test(test_one_amount_changes_the_hash),
        cmocka_unit_test(test_post_versus_void_changes_the_hash),
        cmocka_unit_test(test_one_more_event_changes_the_hash),
        cmocka_unit_test(test_a_failed_id_changes_the_hash),
        cmocka_unit_test(test_a_balance_changes_the_hash),
        cmocka_unit_test(test_expiry_changes_the_hash),
        cmocka_unit_test(test_the_clock_changes_the_hash),
        cmocka_unit_test(test_each_part_of_a_row_meta_is_hashed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

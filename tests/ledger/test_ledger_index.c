/* The hash index (src/ledger/ledger_index.h) against a plain reference: a row table whose
 * rows start with their id and a flag per row saying whether it is indexed. Random inserts,
 * removals (the undo of a chain: the newest rows) and clears drive the slot array through its
 * growths; after every step each row is found exactly when indexed, ids never inserted are
 * not found, and the entry count matches. Ids come from a small pool now and then so that
 * fingerprints and home slots collide and removals shift long runs.
 *
 * Environment: CELLPAY_SEED (default: from the clock; always printed as "seed=<N>"). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "base/prng.h"
#include "ledger/ledger_index.h"

typedef struct row {
    u128 id;
    uint64_t pad; /* rows are wider than their id, as in every real table */
} row_t;

typedef struct model {
    row_t *rows;
    uint32_t nrows; /* rows [0, nrows) are indexed, as in the ledger's append-only tables */
    uint32_t capacity;
} model_t;

static uint64_t test_seed(void) {
    const char *s = getenv("CELLPAY_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL);
    printf("seed=%" PRIu64 "\n", seed);
    return seed;
}

static u128 fresh_id(prng_t *r, uint32_t n) {
    /* Mostly random ids; sometimes ids that differ only in high bits, which hash apart but
     * stress the fingerprint compare; never an id already in the table (row n's own). */
    u128 id = prng_chance_ppm(r, 100000) ? ((u128)n << 64) | 7u
                                         : ((u128)prng_next(r) << 64) | prng_next(r);
    return id ^ ((u128)n << 100);
}

/* Every indexed row when `all`, else 256 random ones. */
static void check(const lindex_t *ix, const model_t *m, prng_t *r, bool all) {
    assert_int_equal(ix->count, m->nrows);
    for (uint32_t k = 0; k < (all ? m->nrows : (m->nrows ? 256u : 0u)); k++) {
        uint32_t i = all ? k : (uint32_t)prng_below(r, m->nrows);
        assert_int_equal(lindex_find(ix, m->rows[i].id, lindex_hash(m->rows[i].id)), i);
    }
    /* Rows removed by an undo (beyond nrows, their ids still in the table) are not found. */
    for (uint32_t i = m->nrows; i < m->capacity && i < m->nrows + 64; i++)
        if (m->rows[i].id != 0)
            assert_int_equal(lindex_find(ix, m->rows[i].id, lindex_hash(m->rows[i].id)),
                             LINDEX_NONE);
    for (int k = 0; k < 64; k++) {
        u128 id = ((u128)prng_next(r) << 64) | prng_next(r) | ((u128)1 << 127);
        assert_int_equal(lindex_find(ix, id, lindex_hash(id)), LINDEX_NONE);
    }
    /* Never more than half full, and never grown past the size for the full capacity. */
    assert_true((uint64_t)ix->count * 2 <= ix->mask + 1);
    assert_true(ix->mask + 1 <= ix->max_slots);
}

static void run_case(uint64_t seed, uint32_t capacity, uint32_t steps) {
    prng_t r = {seed};
    model_t m = {.rows = calloc(capacity, sizeof(row_t)), .capacity = capacity};
    assert_non_null(m.rows);
    lindex_t ix;
    assert_true(lindex_init(&ix, capacity, m.rows, sizeof(row_t)));
    uint64_t first_slots = ix.mask + 1;
    for (uint32_t s = 0; s < steps; s++) {
        uint64_t dice = prng_below(&r, 1000);
        if (dice < 8 && m.nrows > 0) { /* undo the newest rows, newest first */
            uint32_t k = 1 + (uint32_t)prng_below(&r, m.nrows < 50 ? m.nrows : 50);
            for (uint32_t i = 0; i < k; i++) {
                row_t *row = &m.rows[--m.nrows];
                lindex_remove(&ix, lindex_hash(row->id), m.nrows);
            }
        } else if (dice < 9) {
            lindex_clear(&ix, m.nrows);
            m.nrows = 0;
        } else if (m.nrows < capacity) {
            row_t *row = &m.rows[m.nrows];
            row->id = fresh_id(&r, m.nrows);
            lindex_insert(&ix, lindex_hash(row->id), m.nrows++);
        }
        if (s % 997 == 0) check(&ix, &m, &r, s % 99700 == 0);
    }
    check(&ix, &m, &r, true);
    /* Large cases must have grown from a small array (the point of growing). */
    if (capacity >= 100000) assert_true(first_slots < ix.max_slots / 64);
    lindex_free(&ix);
    free(m.rows);
}

static void test_random_small(void **state) {
    (void)state;
    uint64_t seed = test_seed();
    /* Tiny tables: the first array is already the largest. */
    for (uint32_t cap = 1; cap <= 40; cap++) run_case(seed + cap, cap, 400);
}

static void test_random_grows(void **state) {
    (void)state;
    uint64_t seed = test_seed();
    run_case(seed, 5000, 20000);
    run_case(seed + 1, 300000, 400000); /* grows from 4096 slots to 2^20 */
}

static void test_presize(void **state) {
    (void)state;
    row_t rows[64] = {0};
    lindex_t ix;
    assert_true(lindex_init(&ix, 100000, rows, sizeof rows[0]));
    assert_true(ix.mask + 1 < ix.max_slots);
    lindex_presize(&ix);
    assert_int_equal(ix.mask + 1, ix.max_slots);
    assert_int_equal(ix.max_slots, 262144); /* the power of two >= twice the capacity */
    for (uint32_t i = 0; i < 64; i++) {
        rows[i].id = (u128)i * 1000003u + 1;
        lindex_insert(&ix, lindex_hash(rows[i].id), i);
    }
    for (uint32_t i = 0; i < 64; i++)
        assert_int_equal(lindex_find(&ix, rows[i].id, lindex_hash(rows[i].id)), i);
    lindex_free(&ix);
}

static void test_too_large(void **state) {
    (void)state;
    lindex_t ix;
    assert_false(lindex_init(&ix, (1u << 31) + 1, NULL, 16));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_small),
        cmocka_unit_test(test_random_grows),
        cmocka_unit_test(test_presize),
        cmocka_unit_test(test_too_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

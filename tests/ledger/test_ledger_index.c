/* The hash index (src/ledger/ledger_index.h) against a plain reference: a row table whose
 * rows start with their id and a flag per row saying whether it is indexed. Random inserts,
 * removals of any row (as payments' tables do) and of the newest rows (the undo of a chain),
 * and clears drive the slot array through its growths up to its largest size; after every
 * step each row is found exactly when indexed, ids never inserted are not found, and the
 * entry count matches. Ids come from a small pool now and then so that fingerprints and home
 * slots collide and removals shift long runs.
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
#include <string.h>
#include <time.h>

#include "base/prng.h"
#include "ledger/ledger_index.h"

typedef struct row {
    u128 id;
    uint64_t pad; /* rows are wider than their id, as in every real table */
} row_t;

typedef struct model {
    row_t *rows;
    bool *indexed;
    uint32_t nrows; /* rows [0, nrows) exist; the index holds those flagged */
    uint32_t entries;
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

static void check_row(const lindex_t *ix, const model_t *m, uint32_t i) {
    uint32_t want = m->indexed[i] ? i : LINDEX_NONE;
    assert_int_equal(lindex_find(ix, m->rows[i].id, lindex_hash(m->rows[i].id)), want);
}

/* Every row when `all`, else 256 random ones. */
static void check(const lindex_t *ix, const model_t *m, prng_t *r, bool all) {
    assert_int_equal(ix->count, m->entries);
    if (all)
        for (uint32_t i = 0; i < m->nrows; i++) check_row(ix, m, i);
    else
        for (uint32_t k = 0; m->nrows && k < 256; k++)
            check_row(ix, m, (uint32_t)prng_below(r, m->nrows));
    for (int k = 0; k < 64; k++) {
        u128 id = ((u128)prng_next(r) << 64) | prng_next(r) | ((u128)1 << 127);
        assert_int_equal(lindex_find(ix, id, lindex_hash(id)), LINDEX_NONE);
    }
    /* Never more than half full, and never grown past the size for the full capacity. */
    assert_true((uint64_t)ix->count * 2 <= ix->mask + 1);
    assert_true(ix->mask + 1 <= ix->max_slots);
}

static void insert(lindex_t *ix, model_t *m, prng_t *r) {
    uint32_t i = m->nrows++;
    m->rows[i].id = fresh_id(r, i);
    m->indexed[i] = true;
    m->entries++;
    lindex_insert(ix, lindex_hash(m->rows[i].id), i);
}

static void unindex(lindex_t *ix, model_t *m, uint32_t i) {
    cp_assert(m->indexed[i]);
    lindex_remove(ix, lindex_hash(m->rows[i].id), i);
    m->indexed[i] = false;
    m->entries--;
}

/* ppm per step: removals of any row, undo of the newest rows, clears. */
typedef struct mix {
    uint32_t remove_ppm, undo_ppm, clear_ppm;
} mix_t;

static void step(lindex_t *ix, model_t *m, prng_t *r, const mix_t *mix) {
    uint64_t dice = prng_below(r, 1000000);
    if (dice < mix->remove_ppm && m->entries > 0) {
        for (;;) { /* a random indexed row; they are at least entries / nrows of the rows */
            uint32_t i = (uint32_t)prng_below(r, m->nrows);
            if (m->indexed[i]) {
                unindex(ix, m, i);
                return;
            }
        }
    }
    dice -= mix->remove_ppm;
    if (dice < mix->undo_ppm && m->nrows > 0) {
        uint32_t k = 1 + (uint32_t)prng_below(r, m->nrows < 50 ? m->nrows : 50);
        for (uint32_t j = 0; j < k; j++) {
            uint32_t i = --m->nrows;
            if (m->indexed[i]) unindex(ix, m, i);
        }
        return;
    }
    dice -= mix->undo_ppm;
    if (dice < mix->clear_ppm) {
        lindex_clear(ix, m->nrows);
        memset(m->indexed, 0, m->capacity * sizeof m->indexed[0]);
        m->nrows = m->entries = 0;
        return;
    }
    if (m->nrows < m->capacity) insert(ix, m, r);
}

/* Runs `steps` steps of the mix on an index for `capacity` rows; returns the largest slot
 * count the index reached. */
static uint64_t run_case(uint64_t seed, uint32_t capacity, uint32_t steps, mix_t mix) {
    prng_t r = {seed};
    model_t m = {.rows = calloc(capacity, sizeof(row_t)),
                 .indexed = calloc(capacity, sizeof(bool)),
                 .capacity = capacity};
    assert_true(m.rows && m.indexed);
    lindex_t ix;
    assert_true(lindex_init(&ix, capacity, m.rows, sizeof(row_t)));
    uint64_t largest = 0;
    for (uint32_t s = 0; s < steps; s++) {
        step(&ix, &m, &r, &mix);
        if (ix.mask + 1 > largest) largest = ix.mask + 1;
        if (s % 997 == 0 || capacity <= 64) check(&ix, &m, &r, s % 99700 == 0 || capacity <= 64);
    }
    check(&ix, &m, &r, true);
    /* Rows beyond nrows that an undo left behind, and ids of unindexed rows, are not found:
     * a clear over more rows than are indexed (a load that failed half-way) is harmless. */
    uint32_t rows_before = m.nrows;
    while (m.nrows < capacity && m.nrows < rows_before + 100) insert(&ix, &m, &r);
    for (uint32_t i = rows_before; i < m.nrows; i++) unindex(&ix, &m, i);
    lindex_clear(&ix, m.nrows);
    assert_int_equal(ix.count, 0);
    for (uint32_t i = 0; i < m.nrows; i++)
        assert_int_equal(lindex_find(&ix, m.rows[i].id, lindex_hash(m.rows[i].id)), LINDEX_NONE);
    lindex_free(&ix);
    free(m.rows);
    free(m.indexed);
    return largest;
}

static void test_random_small(void **state) {
    (void)state;
    uint64_t seed = test_seed();
    /* Tiny tables: the first array is already the largest. */
    for (uint32_t cap = 1; cap <= 40; cap++)
        run_case(seed + cap, cap, 400, (mix_t){100000, 10000, 2000});
}

static void test_random_grows(void **state) {
    (void)state;
    uint64_t seed = test_seed();
    /* Few removals, no clears: the array grows from 4096 slots to its largest. */
    uint32_t cap = 300000;
    uint64_t largest = run_case(seed, cap, cap + cap / 10, (mix_t){20000, 100, 0});
    assert_int_equal(largest, 1u << 20); /* the power of two >= twice 300000 */
    /* Many removals of any row and undos, with clears: growth amid deletions. */
    run_case(seed + 1, 20000, 200000, (mix_t){300000, 5000, 20});
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

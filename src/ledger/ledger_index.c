#include "ledger/ledger_index.h"

#include "base/table.h"

#include <sys/mman.h>

/* The first slot array: 4096 slots (32 KiB) or fewer when the table is small. */
#define LINDEX_START_SLOTS 4096u

static uint32_t log2_u64(uint64_t n) {
    return 63u - (uint32_t)__builtin_clzll(n);
}

static void lindex_size(lindex_t *ix, uint64_t n) {
    cp_assert(n >= 16 && n <= ix->max_slots && (n & (n - 1)) == 0);
    ix->mask = n - 1;
    ix->shift = 32u - log2_u64(n);
}

bool lindex_init(lindex_t *ix, uint32_t capacity, const void *rows, size_t stride) {
    *ix = (lindex_t){.rows = rows, .stride = stride};
    if (capacity > (1u << 31)) return false;
    uint64_t max = 16;
    while (max < (uint64_t)capacity * 2) max <<= 1;
    ix->max_slots = max;
    for (int r = 0; r < 2; r++)
        if (!(ix->region[r] = cp_table_alloc_huge(max, sizeof(uint64_t)))) {
            lindex_free(ix);
            return false;
        }
    ix->slots = ix->region[0];
    lindex_size(ix, max < LINDEX_START_SLOTS ? max : LINDEX_START_SLOTS);
    return true;
}

void lindex_free(lindex_t *ix) {
    for (int r = 0; r < 2; r++) cp_table_free(ix->region[r], ix->max_slots, sizeof(uint64_t));
    ix->region[0] = ix->region[1] = ix->slots = NULL;
}

void lindex_presize(lindex_t *ix) {
    cp_assert(ix->count == 0);
    lindex_size(ix, ix->max_slots);
}

void lindex_grow(lindex_t *ix) {
    uint64_t *from = ix->slots, n = ix->mask + 1;
    uint64_t *to = from == ix->region[0] ? ix->region[1] : ix->region[0];
    lindex_size(ix, n * 2);
    ix->slots = to;
    /* Each entry's home in the larger array is one more bit of its fingerprint. */
    for (uint64_t i = 0; i < n; i++) {
        if (from[i] == 0) continue;
        uint64_t j = (from[i] >> 32) >> ix->shift;
        while (to[j] != 0) j = (j + 1) & ix->mask;
        to[j] = from[i];
    }
    /* The region left must be all zero for the growth after next. From 2 MiB on its memory
     * goes back to the system (zero again on the next touch); a smaller array is cleared in
     * place, which keeps the huge page it lies in whole. */
    size_t bytes = n * sizeof from[0];
    if (bytes < (2u << 20) || madvise(from, bytes, MADV_DONTNEED) != 0) memset(from, 0, bytes);
}

void lindex_remove(lindex_t *ix, uint64_t hash, uint32_t row) {
    uint64_t i = lindex_home(ix, hash);
    while ((uint32_t)ix->slots[i] != row + 1) {
        cp_assert(ix->slots[i] != 0);
        i = (i + 1) & ix->mask;
    }
    /* Backward-shift deletion: move every later entry of the run whose home slot lies at or
     * before the hole into the hole. */
    uint64_t hole = i;
    for (uint64_t j = (i + 1) & ix->mask; ix->slots[j] != 0; j = (j + 1) & ix->mask) {
        uint64_t home = (ix->slots[j] >> 32) >> ix->shift;
        /* Is home cyclically outside (hole, j]? Then the entry may move to the hole. */
        bool movable = (hole <= j) ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            ix->slots[hole] = ix->slots[j];
            hole = j;
        }
    }
    ix->slots[hole] = 0;
    ix->count--;
}

void lindex_clear(lindex_t *ix, uint32_t count) {
    /* A run of occupied slots starts with an entry in its home slot, and every entry lies in
     * the run of its home slot. Clearing from each entry's home slot to the end of its run
     * therefore empties every run: a slot found empty here was emptied by a walk that started
     * at or before it and went on to the end of the run. Rows in [0, count) that are not
     * indexed (a load that failed half-way) only start walks that clear nothing or more of a
     * run that is going anyway. */
    cp_assert(ix->count <= count);
    for (uint32_t r = 0; r < count; r++)
        for (uint64_t i = lindex_home(ix, lindex_hash(lindex_row_id(ix, r))); ix->slots[i] != 0;
             i = (i + 1) & ix->mask)
            ix->slots[i] = 0;
    ix->count = 0;
}

#include "ledger/ledger_index.h"

#include "base/table.h"

bool lindex_init(lindex_t *ix, uint32_t capacity, const void *rows, size_t stride) {
    uint64_t n = 16;
    while (n < (uint64_t)capacity * 2) n <<= 1;
    ix->slots = cp_table_alloc(n, sizeof ix->slots[0]);
    ix->mask = n - 1;
    ix->rows = rows;
    ix->stride = stride;
    return ix->slots != NULL;
}

void lindex_free(lindex_t *ix) {
    cp_table_free(ix->slots, ix->mask + 1, sizeof ix->slots[0]);
    ix->slots = NULL;
}

void lindex_remove(lindex_t *ix, uint64_t hash, uint32_t row) {
    uint64_t i = hash & ix->mask;
    while ((uint32_t)ix->slots[i] != row + 1) {
        cp_assert(ix->slots[i] != 0);
        i = (i + 1) & ix->mask;
    }
    /* Backward-shift deletion: move every later entry of the run whose home slot lies at or
     * before the hole into the hole. */
    uint64_t hole = i;
    for (uint64_t j = (i + 1) & ix->mask; ix->slots[j] != 0; j = (j + 1) & ix->mask) {
        uint32_t r = (uint32_t)ix->slots[j] - 1;
        uint64_t home = lindex_hash(lindex_row_id(ix, r)) & ix->mask;
        /* Is home cyclically outside (hole, j]? Then the entry may move to the hole. */
        bool movable = (hole <= j) ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            ix->slots[hole] = ix->slots[j];
            hole = j;
        }
    }
    ix->slots[hole] = 0;
}

void lindex_clear(lindex_t *ix, uint32_t count) {
    /* A run of occupied slots starts with an entry in its home slot, and every entry lies in
     * the run of its home slot. Clearing from each entry's home slot to the end of its run
     * therefore empties every run: a slot found empty here was emptied by a walk that started
     * at or before it and went on to the end of the run. */
    for (uint32_t r = 0; r < count; r++)
        for (uint64_t i = lindex_hash(lindex_row_id(ix, r)) & ix->mask; ix->slots[i] != 0;
             i = (i + 1) & ix->mask)
            ix->slots[i] = 0;
}

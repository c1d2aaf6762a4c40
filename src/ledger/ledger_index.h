/* An open-addressing hash index from a u128 id to a 32-bit row number of a table whose rows
 * start with that id (accounts, transfers, failed ids). Linear probing; each 8-byte slot holds
 * the hash's top 32 bits (a fingerprint) and row+1 (0 = empty), so a miss touches only the
 * slot array and a hit touches one row. Deletion (the undo of a linked chain) shifts entries
 * back, so there are no tombstones.
 *
 * The slot array grows with its entries, doubling whenever it would pass half full, up to the
 * size that keeps the table's full capacity at most half full. Sizing it to its content rather
 * than its capacity matters because hashing spreads the first few hundred entries over every
 * page: a full-size array of a 4M-row table is 64 MiB committed and zeroed almost at once,
 * most of it on the request path. A slot's home is the top bits of its fingerprint, so growing
 * moves entries without reading a row (entries of one home are then told apart by the other
 * 32 - log2(slots) bits of the fingerprint: 9 at 8M slots). Both arrays a growth alternates
 * between are reserved (address space only) at creation, so growing never fails. A growth is
 * one pause of the insert that triggers it: rehashing 2M entries into a fresh 64 MiB array
 * measured ~130 ms here, once in the life of a 4M-row table; lindex_presize avoids them all. */
#ifndef CP_LEDGER_INDEX_H
#define CP_LEDGER_INDEX_H

#include <stdint.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "base/assert.h"
#include "base/u128.h"

typedef struct lindex {
    uint64_t *slots; /* mask + 1 slots at the start of one of the two regions */
    uint64_t mask;
    uint32_t shift;            /* home slot of a hash: (hash >> 32) >> shift */
    uint32_t count;            /* entries */
    uint64_t *region[2];       /* max_slots each; the one slots is not in is all zero */
    uint64_t max_slots;        /* a power of two, at least twice the table's capacity */
    const unsigned char *rows; /* the table: row r starts at rows + r * stride with its id */
    size_t stride;
} lindex_t;

#define LINDEX_NONE UINT32_MAX

static inline uint64_t lindex_hash(u128 id) {
    return XXH3_64bits(&id, sizeof id);
}

static inline uint64_t lindex_home(const lindex_t *ix, uint64_t hash) {
    return (hash >> 32) >> ix->shift;
}

static inline u128 lindex_row_id(const lindex_t *ix, uint32_t row) {
    u128 id;
    memcpy(&id, ix->rows + (size_t)row * ix->stride, sizeof id);
    return id;
}

static inline void lindex_prefetch(const lindex_t *ix, uint64_t hash) {
    __builtin_prefetch(&ix->slots[lindex_home(ix, hash)]);
}

/* Prefetches the row that probably holds the id (the first fingerprint match; it is not
 * compared, which would cost the very miss the prefetch is hiding). Call after
 * lindex_prefetch(ix, hash) had time to bring the slot in. */
static inline void lindex_prefetch_row(const lindex_t *ix, uint64_t hash, size_t row_bytes) {
    uint64_t fp = hash >> 32;
    for (uint64_t i = lindex_home(ix, hash);; i = (i + 1) & ix->mask) {
        uint64_t s = ix->slots[i];
        if (s == 0) return;
        if ((s >> 32) == fp) {
            const unsigned char *row = ix->rows + (size_t)((uint32_t)s - 1) * ix->stride;
            for (size_t off = 0; off < row_bytes; off += 64) __builtin_prefetch(row + off);
            return;
        }
    }
}

/* The row holding id, or LINDEX_NONE. */
static inline uint32_t lindex_find(const lindex_t *ix, u128 id, uint64_t hash) {
    uint64_t fp = hash >> 32;
    for (uint64_t i = lindex_home(ix, hash);; i = (i + 1) & ix->mask) {
        uint64_t s = ix->slots[i];
        if (s == 0) return LINDEX_NONE;
        if ((s >> 32) == fp) {
            uint32_t row = (uint32_t)s - 1;
            if (lindex_row_id(ix, row) == id) return row;
        }
    }
}

/* Doubles the slot array (an O(entries) pause, rare: at each power of two of the entries). */
void lindex_grow(lindex_t *ix);

/* Adds id -> row; the id must not be present. */
static inline void lindex_insert(lindex_t *ix, uint64_t hash, uint32_t row) {
    if ((uint64_t)ix->count * 2 + 2 > ix->mask + 1 && ix->mask + 1 < ix->max_slots) lindex_grow(ix);
    /* Never full: the table's capacity fills at most half of max_slots. */
    cp_assert(ix->count < ix->mask);
    uint64_t i = lindex_home(ix, hash);
    while (ix->slots[i] != 0) i = (i + 1) & ix->mask;
    ix->slots[i] = ((hash >> 32) << 32) | ((uint64_t)row + 1);
    ix->count++;
}

/* Removes the entry of row (which must be present), shifting later entries of the probe run
 * back so that every remaining entry stays reachable from its home slot. */
void lindex_remove(lindex_t *ix, uint64_t hash, uint32_t row);

/* Removes every entry, in O(count + the probe runs they sit in) rather than O(slots): every
 * indexed row must lie in [0, count) (rows there that are not indexed do no harm). */
void lindex_clear(lindex_t *ix, uint32_t count);

/* An index for a table of `capacity` rows (at most 2^31); false when out of address space. */
bool lindex_init(lindex_t *ix, uint32_t capacity, const void *rows, size_t stride);

/* Sizes the (empty) slot array for the full capacity at once: for callers that commit all
 * memory up front (cp_table_prefault) and want no growth later. */
void lindex_presize(lindex_t *ix);
void lindex_free(lindex_t *ix);

#endif

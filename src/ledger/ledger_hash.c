/* The ledger's state hash: XXH3-128 over a canonical byte form of everything that decides
 * what the ledger answers from now on. Two replicas that applied the same entries must hash
 * alike whatever their capacities, their hash-index layout or the history of their expiry
 * heap; any difference a client could ever observe must change the hash.
 *
 * The canonical form, all integers little-endian (the structs' layouts are asserted in
 * ledger_internal.h; cellpay runs on little-endian hosts only):
 *   a 64-byte header: "CPLHASH1", version, the row counts, pending_open, the clock
 *     (last_timestamp) and the highest account and transfer timestamps (they bound imports);
 *   every account row in timestamp order (the table's order), each followed by the timestamp
 *     of the newest transfer that touches it (0: none) and 8 zero bytes;
 *   every transfer row in timestamp order, each followed by a 24-byte trailer: the
 *     timestamps of the previous transfer of its debit and of its credit account (0: none),
 *     its pending state (LT_*), and which balance-history rows it has; then those rows;
 *   the ids of transfers that failed for a state reason, in the order they failed (the
 *     order is part of the history every replica applies alike).
 * Row numbers are never hashed: links are hashed as the timestamps they lead to. The hash
 * indexes and the expiry heap are derived from the rows and left out. */
#include "ledger/ledger_internal.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#define HASH_MAGIC 0x31485341484C5043ull /* "CPLHASH1" */
#define HASH_VERSION 1u
#define HASH_BUF 8192u

typedef struct hash_header {
    uint64_t magic;
    uint32_t version;
    uint32_t accounts;
    uint32_t transfers;
    uint32_t balances;
    uint32_t failed_ids;
    uint32_t pending_open;
    uint64_t last_timestamp;
    uint64_t account_timestamp_max;
    uint64_t transfer_timestamp_max;
    uint8_t reserved[8];
} hash_header_t;
CP_STATIC_ASSERT(sizeof(hash_header_t) == 64, "hash header is 64 bytes");

typedef struct hash_account_trailer {
    uint64_t newest_transfer; /* timestamp, 0 = none */
    uint64_t reserved;
} hash_account_trailer_t;
CP_STATIC_ASSERT(sizeof(hash_account_trailer_t) == 16, "account trailer is 16 bytes");

typedef struct hash_transfer_trailer {
    uint64_t prev_dr; /* timestamp of the debit account's previous transfer, 0 = none */
    uint64_t prev_cr;
    uint8_t status; /* LT_* */
    uint8_t balance_dr;
    uint8_t balance_cr;
    uint8_t reserved[5];
} hash_transfer_trailer_t;
CP_STATIC_ASSERT(sizeof(hash_transfer_trailer_t) == 24, "transfer trailer is 24 bytes");
CP_STATIC_ASSERT(sizeof(lbalance_t) == 64, "balance row is 64 bytes");

/* Small records go through a buffer: XXH3's streaming update has a per-call cost that would
 * dominate at 24 bytes a call. */
typedef struct hasher {
    XXH3_state_t state;
    unsigned char buf[HASH_BUF];
    size_t len;
} hasher_t;

static void put(hasher_t *h, const void *p, size_t n) {
    if (h->len + n > sizeof h->buf) {
        XXH3_128bits_update(&h->state, h->buf, h->len);
        h->len = 0;
    }
    cp_assert(n <= sizeof h->buf);
    memcpy(h->buf + h->len, p, n);
    h->len += n;
}

static uint64_t transfer_ts(const ledger_t *l, uint32_t row) {
    return row == LINDEX_NONE ? 0 : l->transfers[row].timestamp;
}

u128 ledger_state_hash(const ledger_t *l) {
    cp_assert(!l->chain_open); /* between batches only: a chain is never left open */
    hasher_t hs, *h = &hs;     /* on the stack: hashing must not fail for want of memory */
    XXH3_128bits_reset(&h->state);
    h->len = 0;

    hash_header_t hdr = {
        .magic = HASH_MAGIC,
        .version = HASH_VERSION,
        .accounts = l->n.accounts,
        .transfers = l->n.transfers,
        .balances = l->n.balances,
        .failed_ids = l->n.failed_ids,
        .pending_open = l->n.pending_open,
        .last_timestamp = l->last_timestamp,
        .account_timestamp_max = l->n.account_timestamp_max,
        .transfer_timestamp_max = l->n.transfer_timestamp_max,
    };
    put(h, &hdr, sizeof hdr);

    for (uint32_t r = 0; r < l->n.accounts; r++) {
        hash_account_trailer_t t = {.newest_transfer = transfer_ts(l, l->ameta[r])};
        put(h, &l->accounts[r], sizeof l->accounts[r]);
        put(h, &t, sizeof t);
    }

    for (uint32_t r = 0; r < l->n.transfers; r++) {
        const ltmeta_t *m = &l->tmeta[r];
        hash_transfer_trailer_t t = {
            .prev_dr = transfer_ts(l, m->prev_dr),
            .prev_cr = transfer_ts(l, m->prev_cr),
            .status = m->status,
            .balance_dr = m->balance_dr != LINDEX_NONE,
            .balance_cr = m->balance_cr != LINDEX_NONE,
        };
        put(h, &l->transfers[r], sizeof l->transfers[r]);
        put(h, &t, sizeof t);
        if (t.balance_dr) put(h, &l->balances[m->balance_dr], sizeof l->balances[0]);
        if (t.balance_cr) put(h, &l->balances[m->balance_cr], sizeof l->balances[0]);
    }

    for (uint32_t r = 0; r < l->n.failed_ids; r++)
        put(h, &l->failed_ids[r], sizeof l->failed_ids[r]);

    XXH3_128bits_update(&h->state, h->buf, h->len);
    XXH128_hash_t d = XXH3_128bits_digest(&h->state);
    return ((u128)d.high64 << 64) | d.low64;
}

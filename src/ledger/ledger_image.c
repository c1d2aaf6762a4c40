/* The ledger's state as a list of memory regions, for snapshots: what must be saved is the
 * rows of every table plus a few counters; the hash indexes and the expiry heap are derived
 * and rebuilt on restore. No I/O here: the caller writes and reads the regions. */
#include "ledger/ledger_internal.h"

#include <string.h>

#define IMAGE_MAGIC 0x45474D49444C4350ull /* "PCLDIMGE" */
#define IMAGE_VERSION 1u

CP_STATIC_ASSERT(sizeof(ledger_image_header_t) == 128, "image header is 128 bytes");

static void add(ledger_region_t *r, uint32_t *n, void *p, size_t bytes) {
    r[*n] = (ledger_region_t){p, bytes};
    (*n)++;
}

static uint32_t regions(ledger_t *l, const ledger_image_header_t *h, ledger_region_t *out) {
    uint32_t n = 0;
    add(out, &n, l->accounts, (size_t)h->accounts * sizeof l->accounts[0]);
    add(out, &n, l->ameta, (size_t)h->accounts * sizeof l->ameta[0]);
    add(out, &n, l->transfers, (size_t)h->transfers * sizeof l->transfers[0]);
    add(out, &n, l->tmeta, (size_t)h->transfers * sizeof l->tmeta[0]);
    add(out, &n, l->balances, (size_t)h->balances * sizeof l->balances[0]);
    add(out, &n, l->failed_ids, (size_t)h->failed_ids * sizeof l->failed_ids[0]);
    cp_assert(n == LEDGER_IMAGE_REGIONS);
    return n;
}

void ledger_image_header(const ledger_t *l, ledger_image_header_t *h) {
    cp_assert(!l->chain_open);
    *h = (ledger_image_header_t){
        .magic = IMAGE_MAGIC,
        .version = IMAGE_VERSION,
        .accounts = l->n.accounts,
        .transfers = l->n.transfers,
        .balances = l->n.balances,
        .failed_ids = l->n.failed_ids,
        .pending_open = l->n.pending_open,
        .last_timestamp = l->last_timestamp,
        .account_timestamp_max = l->n.account_timestamp_max,
        .transfer_timestamp_max = l->n.transfer_timestamp_max,
    };
}

uint32_t ledger_image_regions(const ledger_t *l, const ledger_image_header_t *h,
                              ledger_region_t out[LEDGER_IMAGE_REGIONS]) {
    /* The regions are only read by the caller; the cast keeps one region list for both. */
    return regions((ledger_t *)l, h, out);
}

const char *ledger_image_check(const ledger_image_header_t *h, const ledger_config_t *c) {
    if (h->magic != IMAGE_MAGIC) return "not a ledger image";
    if (h->version != IMAGE_VERSION) return "unsupported ledger image version";
    if (h->accounts > c->accounts_max) return "the image has more accounts than the capacity";
    if (h->transfers > c->transfers_max) return "the image has more transfers than the capacity";
    uint32_t balances_max = c->balances_max ? c->balances_max : c->transfers_max * 2;
    uint32_t failed_max = c->failed_ids_max ? c->failed_ids_max : c->transfers_max;
    if (h->balances > balances_max) return "the image has more balance rows than the capacity";
    if (h->failed_ids > failed_max) return "the image has more failed ids than the capacity";
    if (h->pending_open > h->transfers) return "the image's pending count is impossible";
    return NULL;
}

uint32_t ledger_image_restore_regions(ledger_t *l, const ledger_image_header_t *h,
                                      ledger_region_t out[LEDGER_IMAGE_REGIONS]) {
    cp_assert(l->n.accounts == 0 && l->n.transfers == 0 && l->last_timestamp == 0);
    cp_assert(ledger_image_check(h, &l->config) == NULL);
    return regions(l, h, out);
}

/* Every row number stored in a row must point inside its table (and backwards in time), so
 * that no walk over a restored image can leave the tables. */
static const char *check_links(const ledger_t *l) {
    for (uint32_t r = 0; r < l->n.accounts; r++)
        if (l->ameta[r] != LINDEX_NONE && l->ameta[r] >= l->n.transfers)
            return "an account's transfer list points outside the image";
    for (uint32_t r = 0; r < l->n.transfers; r++) {
        const ltmeta_t *m = &l->tmeta[r];
        if ((m->prev_dr != LINDEX_NONE && m->prev_dr >= r) ||
            (m->prev_cr != LINDEX_NONE && m->prev_cr >= r))
            return "a transfer list link points outside the image";
        if ((m->balance_dr != LINDEX_NONE && m->balance_dr >= l->n.balances) ||
            (m->balance_cr != LINDEX_NONE && m->balance_cr >= l->n.balances))
            return "a balance row link points outside the image";
        if (m->status > LT_EXPIRED) return "a transfer has an unknown pending status";
    }
    return NULL;
}

const char *ledger_image_finish(ledger_t *l, const ledger_image_header_t *h) {
    l->n = (lcounters_t){
        .accounts = h->accounts,
        .transfers = h->transfers,
        .balances = h->balances,
        .failed_ids = h->failed_ids,
        .pending_open = h->pending_open,
        .account_timestamp_max = h->account_timestamp_max,
        .transfer_timestamp_max = h->transfer_timestamp_max,
    };
    l->last_timestamp = h->last_timestamp;
    const char *err = check_links(l);
    if (err) return err;
    for (uint32_t r = 0; r < h->accounts; r++) {
        u128 id = l->accounts[r].id;
        if (ledger_account_row(l, id) != LINDEX_NONE) return "duplicate account id in the image";
        lindex_insert(&l->accounts_ix, lindex_hash(id), r);
    }
    for (uint32_t r = 0; r < h->transfers; r++) {
        u128 id = l->transfers[r].id;
        if (ledger_transfer_row(l, id) != LINDEX_NONE) return "duplicate transfer id in the image";
        lindex_insert(&l->transfers_ix, lindex_hash(id), r);
        const ledger_transfer_t *t = &l->transfers[r];
        if (l->tmeta[r].status == LT_PENDING && t->timeout != 0) ledger_expiry_push(l, r);
    }
    for (uint32_t r = 0; r < h->failed_ids; r++)
        lindex_insert(&l->failed_ix, lindex_hash(l->failed_ids[r]), r);
    /* The rows came from outside: check them as a whole before anyone trusts them. */
    return ledger_check_invariants(l);
}

/* libFuzzer target: the payments layer (src/cell/pay.h) over a small ledger. The input is a
 * series of records, each a header byte then a body:
 *   header bit 7 set: a raw 256-byte pay_request_t (bit 6 clear) or pay_query_t (bit 6 set),
 *     short tails zero padded, to exercise the checks of the wire structs;
 *   else: 16 bytes drawn into a request from small pools of uids, currencies, amounts, texts
 *     and keys, so that requests meet each other's rows (merchants, users, payments, keys);
 *     the cross-cell kinds name the orders drawn so far (credit, release) or an order of
 *     another cell (payment of an order), uid 30 being of another cell; refunds of
 *     cross-cell payments name their merchant's cell (TCC), decide and ack name the refund
 *     activities drawn so far, and try / confirm / cancel name a few refund ids of another
 *     cell's drawing for buyer 30, so that they meet each other; transfers name a recipient
 *     of this cell (peer_cell 0) or of another (uid 30's cell), and a branch step is often a
 *     transfer's (tcc_type, recipient a user of this cell), whose T ids are drawn like R's;
 *     orders name a buyer's cell (the other one, this one: invalid, or none), and resolves
 *     name the orders of another cell's drawing that payments of orders name, so that a
 *     tombstone meets a late payment;
 *   header bits 0..5: how far the clock moves first (bit 5: by about 12 h, for key expiry;
 *     the ledger then expires pending transfers, as the cell does).
 * Checked after every record: every answer has a known code and echoes the kind; an answer
 * that must change nothing (an error without a stored key, invalid, wrong cell, full,
 * conflict, a replay) left the payments and the ledger exactly as they were; the ledger's
 * invariants hold (balances sum to zero per currency, no account below its limit); the outbox's
 * backlog is its unacknowledged records; the stale refund activities are trying ones; the
 * stale orders name a buyer's cell that is not this one. At the
 * end the image round trip gives the same state
 * hash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "cell/pay.h"

static const uint64_t UIDS[8] = {0, 10, 11, 12, 20, 21, 30, UINT64_MAX};

static uint32_t currency(uint8_t b) {
    static const char *const codes[4] = {"CNY", "USD", "EUR", "cny"};
    return pay_currency_pack(codes[b & 3]);
}

static u128 amount(const uint8_t *b) {
    switch (b[0] & 7) {
    case 0: return 0;
    case 1: return U128_MAX - b[1];
    case 2: return (u128)1 << 127;
    default: return (u128)b[1] * 3 + (b[0] >> 3);
    }
}

#define OWN_CELL 1u
#define OTHER_CELL 3u /* uid 30's zone */

typedef struct drawn {
    u128 payments[16]; /* payment ids answered created (local and of orders) */
    uint32_t n_payments;
    pay_object_t orders[16]; /* orders answered created */
    uint32_t n_orders;
    u128 acts[16]; /* refund and transfer activities answered trying */
    uint32_t n_acts;
} drawn_t;

/* The TCC fields: a refund naming its payment's merchant cell; decide and ack of a drawn
 * activity; try / confirm / cancel of a refund id drawn by another cell for buyer 30. */
static void drawn_tcc(const uint8_t *b, const drawn_t *d, pay_request_t *r) {
    static const uint8_t codes[6] = {PAY_OK,
                                     PAY_ERR_INSUFFICIENT_FUNDS,
                                     PAY_ERR_OVERFLOW,
                                     PAY_ERR_CANCELLED,
                                     PAY_ERR_NOT_FOUND,
                                     PAY_ERR_CURRENCY_MISMATCH};
    if (r->kind == PAY_KIND_REFUND && (b[13] & 1)) {
        r->peer_cell = (uint32_t)((uint64_t)r->payment_id >> 40) & PAY_CELL_MAX;
        if (b[15] & 16) r->actor = UIDS[6]; /* the merchant of the other cell's orders */
    }
    bool of_act = r->kind == PAY_KIND_DECIDE || (r->kind == PAY_KIND_ACK && (b[13] & 2));
    if (of_act && d->n_acts) {
        r->payment_id = d->acts[b[14] % d->n_acts];
        r->uid = (uint64_t)(r->payment_id >> 64);
    }
    if (r->kind == PAY_KIND_DECIDE) {
        r->code = codes[b[15] % 6];
        if ((b[13] & 12) != 12) r->actor = 0; /* mostly valid: decides are rare enough */
        if ((b[13] & 96) != 96) r->idem_key = r->body_hash = 0;
    }
    if (r->kind == PAY_KIND_TRY || r->kind == PAY_KIND_CONFIRM || r->kind == PAY_KIND_CANCEL) {
        r->uid = UIDS[6];
        r->payment_id = ((u128)r->uid << 64) | ((u128)OTHER_CELL << 40) | (1 + (b[14] & 3));
        r->peer_cell = (b[13] & 4) ? OWN_CELL : OTHER_CELL;
        if (!(b[13] & 32)) r->idem_key = r->body_hash = 0;
        if (b[15] & 8) r->amount = 5 + (b[15] & 3); /* the same few amounts: they match */
        if (b[15] & 16) r->actor = UIDS[1];
        if (b[15] & 32) r->currency = currency(0);
        if (b[15] & 64) { /* a transfer's branch: the recipient is this cell's user */
            r->tcc_type = (b[13] & 128) ? 2 : PAY_TCC_TRANSFER; /* 2: unknown */
            r->recipient = UIDS[1 + (b[12] % 5)];
            if (!(b[13] & 16)) r->actor = 0;
        }
    }
    if (r->kind == PAY_KIND_TRANSFER) {
        r->recipient = UIDS[b[12] & 7];
        r->peer_cell = (b[13] & 1) ? OTHER_CELL : (b[13] & 2) ? OWN_CELL : 0;
        if (!(b[13] & 8)) r->actor = 0;
        if (!(b[13] & 4)) r->payment_id = 0;
        if (!(b[15] & 1)) r->funding = 0;
    }
}

/* A resolve asks about an order drawn by another cell, as the payments of orders name them
 * (drawn_xcell), for a buyer of this cell, with the payments' body hashes. */
static void drawn_resolve(const uint8_t *b, pay_request_t *r) {
    if (r->kind != PAY_KIND_RESOLVE) return;
    uint32_t drawing = (b[13] & 2) ? OTHER_CELL : OWN_CELL;
    r->payment_id = ((u128)r->uid << 64) | ((u128)drawing << 40) | (1 + (b[14] & 7));
    r->peer_cell = (b[13] & 4) ? OWN_CELL : drawing;
    if (!(b[15] & 3)) r->actor = UIDS[6]; /* the merchant's cell: 30's */
    if (!(b[13] & 32)) r->idem_key = 0;
    r->body_hash = 1 + ((b[9] >> 1) & 1);
}

/* The cross-cell fields: an order's payment, credit, release; an order of another cell. */
static void drawn_xcell(const uint8_t *b, const drawn_t *d, pay_request_t *r) {
    static const uint8_t codes[4] = {PAY_ERR_NOT_FOUND, PAY_ERR_CANCELLED, PAY_ERR_OVERFLOW,
                                     PAY_ERR_DUPLICATE_OUT_TRADE_NO};
    if (r->kind == PAY_KIND_PAYMENT && (b[13] & 1)) { /* the payment of another cell's order */
        uint32_t drawing = (b[13] & 2) ? OTHER_CELL : OWN_CELL;
        r->payment_id = ((u128)r->uid << 64) | ((u128)drawing << 40) | (1 + (b[14] & 7));
        r->idem_key = r->payment_id;
        r->peer_cell = (b[13] & 4) ? OWN_CELL : drawing;
        if (!(b[15] & 3)) r->actor = UIDS[6]; /* the merchant's cell: 30's */
    }
    bool relay = r->kind == PAY_KIND_RELEASE || r->kind == PAY_KIND_CREDIT;
    if (relay && d->n_orders && (b[13] & 8)) {
        const pay_object_t *o = &d->orders[b[14] % d->n_orders];
        r->payment_id = o->id;
        r->actor = o->merchant;
        if (r->kind == PAY_KIND_CREDIT && (b[13] & 16)) {
            r->uid = o->uid;
            r->amount = o->amount;
            r->currency = o->currency;
        }
    }
    if (r->kind == PAY_KIND_ACK || r->kind == PAY_KIND_CREDIT)
        r->uid = (uint64_t)(r->payment_id >> 64);
    if (r->kind == PAY_KIND_CREDIT) r->peer_cell = (b[15] & 4) ? OWN_CELL : OTHER_CELL;
    if (r->kind == PAY_KIND_RELEASE) r->code = codes[b[15] & 3];
    if ((relay || r->kind == PAY_KIND_ACK) && !(b[13] & 32)) r->idem_key = r->body_hash = 0;
    if (r->kind == PAY_KIND_ORDER && (b[13] & 64)) r->uid = UIDS[6]; /* a buyer elsewhere */
    if (r->kind == PAY_KIND_ORDER)
        r->peer_cell = (b[15] & 8) ? 0 : (b[15] & 16) ? OWN_CELL : OTHER_CELL;
    drawn_resolve(b, r);
    drawn_tcc(b, d, r);
}

/* 16 bytes -> one request among the small pools. */
static void drawn_request(const uint8_t *b, const drawn_t *d, pay_request_t *r) {
    const u128 *payments = d->payments;
    uint32_t n_payments = d->n_payments;
    memset(r, 0, sizeof *r);
    r->kind = (uint8_t)(b[0] % 19); /* 0, 6, 7 and 18: invalid kinds */
    r->uid = UIDS[b[1] & 7];
    r->actor = (b[2] & 8) ? UIDS[b[2] & 7] : 0;
    r->currency = currency(b[3]);
    r->amount = amount(b + 4);
    r->funding = (uint8_t)(b[6] & 3) == 3 ? 2 : 1;
    if (b[7] & 7) snprintf(r->text, sizeof r->text, "t%u", b[7] >> 3);
    memset(r->secret, b[8], sizeof r->secret);
    if (b[9] & 1) {
        r->idem_key = 1 + (b[9] >> 4);
        r->body_hash = 1 + ((b[9] >> 1) & 1);
    }
    if (n_payments && (b[10] & 3)) {
        r->payment_id = payments[b[11] % n_payments];
    } else {
        r->payment_id = ((u128)UIDS[b[11] & 7] << 64) | b[12];
    }
    if (r->kind == PAY_KIND_PAYMENT || r->kind == PAY_KIND_ORDER) r->payment_id = 0;
    drawn_xcell(b, d, r);
}

static bool must_change_nothing(const pay_request_t *r, const pay_object_t *o) {
    if (o->replayed) return true;
    /* A refused Try is recorded (so a repeat answers the same); a decide's answer of kind
     * refund is the decision (a cancel answers the refusal); trying is recorded. */
    if (r->kind == PAY_KIND_TRY &&
        (o->code == PAY_ERR_INSUFFICIENT_FUNDS || o->code == PAY_ERR_OVERFLOW ||
         o->code == PAY_ERR_NOT_FOUND || o->code == PAY_ERR_CURRENCY_MISMATCH))
        return false;
    if (r->kind == PAY_KIND_DECIDE && (o->kind == PAY_KIND_REFUND || o->kind == PAY_KIND_TRANSFER))
        return false;
    /* A resolve answered cancelled may have stored its tombstone. */
    if (r->kind == PAY_KIND_RESOLVE && o->kind == PAY_KIND_PAYMENT && o->code == PAY_ERR_CANCELLED)
        return false;
    switch (o->code) {
    case PAY_OK:
    case PAY_CREATED:
    case PAY_TRYING: return false;
    case PAY_ERR_INVALID:
    case PAY_ERR_WRONG_CELL:
    case PAY_ERR_FULL:
    case PAY_ERR_IDEMPOTENCY_CONFLICT: return true;
    default: return r->idem_key == 0; /* else the error answer was stored with the key */
    }
}

static void check(bool ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_pay: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pay_config_t pc = {.merchants_max = 4,
                       .users_max = 6,
                       .payments_max = 16,
                       .refunds_max = 16,
                       .topups_max = 16,
                       .idempotency_max = 8,
                       .orders_max = 8,
                       .outbox_max = 4,
                       .tcc_max = 8,
                       .cell_id = OWN_CELL};
    cp_zones_add(&pc.zones, 1);
    cp_zones_add(&pc.zones, 2);
    pay_t *pay = pay_create(&pc);
    ledger_config_t lc = {.accounts_max = 24, .transfers_max = 48};
    ledger_t *l = ledger_create(&lc);
    cp_assert(pay && l);
    static pay_object_t out[PAY_LIST_MAX + 2];
    static pay_outbox_item_t outbox[8];
    drawn_t d = {0};
    uint64_t clock = 1000;
    size_t pos = 0;
    while (pos < size) {
        uint8_t h = data[pos++];
        clock += (h & 31) * 1000000007ull + ((h & 32) ? 43200ull * 1000000000ull : 0);
        if (h & 32) ledger_expire(l, clock);
        uint8_t raw[256] = {0};
        size_t want = (h & 0x80) ? 256 : 16;
        size_t take = size - pos < want ? size - pos : want;
        memcpy(raw, data + pos, take);
        pos += take;
        if ((h & 0xC0) == 0xC0) {
            pay_query_t q;
            memcpy(&q, raw, sizeof q);
            uint32_t n = pay_query(pay, l, &q, out);
            check(n >= 1 && n <= PAY_LIST_MAX + 2, "query answer count");
            for (uint32_t i = 0; i < n; i++) check(out[i].code < PAY_CODE_COUNT, "query code");
            check(n == 1 || (q.kind == PAY_Q_USER_PAYMENTS && n <= q.limit + 2), "list size");
            continue;
        }
        pay_request_t r;
        if (h & 0x80)
            memcpy(&r, raw, sizeof r);
        else
            drawn_request(raw, &d, &r);
        u128 ph = pay_state_hash(pay), lh = ledger_state_hash(l);
        uint64_t before = clock;
        pay_object_t o;
        pay_apply(pay, l, &clock, &r, &o);
        check(o.code < PAY_CODE_COUNT, "answer code");
        /* A decide answers the refund or transfer (its decision) unless the decide itself
         * fails. */
        check(o.replayed || o.kind == r.kind ||
                  (r.kind == PAY_KIND_DECIDE &&
                   (o.kind == PAY_KIND_REFUND || o.kind == PAY_KIND_TRANSFER)) ||
                  (r.kind == PAY_KIND_RESOLVE && o.kind == PAY_KIND_PAYMENT),
              "answer kind");
        check(clock >= before, "clock went back");
        if (must_change_nothing(&r, &o)) {
            check(pay_state_hash(pay) == ph, "a refused request changed the payments");
            check(ledger_state_hash(l) == lh, "a refused request changed the ledger");
        }
        if (o.code == PAY_CREATED && o.kind == PAY_KIND_PAYMENT && !o.replayed) {
            check(o.refunded == 0 && o.amount == r.amount, "payment answer");
            check(o.merchant_credit == (r.payment_id != 0), "payment's merchant credit");
            if (d.n_payments < 16) d.payments[d.n_payments++] = o.id;
        }
        if (o.code == PAY_CREATED && o.kind == PAY_KIND_ORDER && !o.replayed) {
            check(o.amount == r.amount && (uint64_t)(o.id >> 64) == r.uid, "order answer");
            if (d.n_orders < 16) d.orders[d.n_orders++] = o;
        }
        if (o.code == PAY_TRYING && !o.replayed && d.n_acts < 16) d.acts[d.n_acts++] = o.id;
        static u128 stale[16];
        uint32_t n_stale = pay_activities_stale(pay, clock, 0, stale, 16);
        check(n_stale <= pay_activities_trying(pay), "stale activities are trying ones");
        static pay_order_stale_t stale_orders[8];
        uint32_t n_orders = pay_orders_stale(pay, clock, 0, 0, stale_orders, 8);
        for (uint32_t i = 0; i < n_orders; i++)
            check(stale_orders[i].peer_cell != 0 && stale_orders[i].peer_cell != OWN_CELL &&
                      (uint64_t)(stale_orders[i].payment_id >> 64) == stale_orders[i].buyer,
                  "stale orders name their buyer's cell");
        uint32_t backlog = pay_outbox_backlog(pay);
        check(backlog <= pc.outbox_max && pay_outbox_pending(pay, 0, outbox, 8) == backlog,
              "outbox backlog");
        const char *err = ledger_check_invariants(l);
        if (err) {
            fprintf(stderr, "fuzz_pay: ledger invariant broken: %s\n", err);
            abort();
        }
    }
    /* Every payment answered created is there, and the image restores to the same state. */
    for (uint32_t i = 0; i < d.n_payments; i++) {
        pay_query_t q = {.kind = PAY_Q_PAYMENT, .id = d.payments[i]};
        check(pay_query(pay, l, &q, out) == 1 && out[0].code == PAY_OK, "payment lost");
        check(out[0].refunded <= out[0].amount, "refunded beyond the payment");
    }
    pay_image_header_t ih;
    pay_image_header(pay, &ih);
    check(pay_image_check(&ih, &pc) == NULL, "image header");
    ledger_region_t src[PAY_IMAGE_REGIONS], dst[PAY_IMAGE_REGIONS];
    uint32_t n = pay_image_regions(pay, &ih, src);
    pay_t *copy = pay_create(&pc);
    cp_assert(copy && pay_image_restore_regions(copy, &ih, dst) == n);
    for (uint32_t i = 0; i < n; i++)
        if (src[i].size) memcpy(dst[i].ptr, src[i].ptr, src[i].size);
    const char *why = pay_image_finish(copy, &ih);
    if (why) fprintf(stderr, "fuzz_pay: image: %s\n", why);
    check(why == NULL, "image of a good state refused");
    check(pay_state_hash(copy) == pay_state_hash(pay), "image hash");
    pay_destroy(copy);
    pay_destroy(pay);
    ledger_destroy(l);
    return 0;
}

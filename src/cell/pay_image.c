/* Payments: the state hash and images for snapshots. What is saved is the used rows of every
 * table and the counters; the indexes are derived and rebuilt on restore, after the rows were
 * checked against each other (an image comes from disk or the network). */
#include <string.h>

#include "cell/pay_internal.h"

/* Version 2 added the cross-cell orders and outbox (and two fields of the payment row);
 * version 3 the refund activities and branches (the tcc table, counted where the header had
 * the outbox's head, which follows from outbox_seq) and the outbox records' kind; version 4
 * user-to-user transfers (tcc rows of type transfer, and the outbox records' tcc_type);
 * version 5 the resolver's fields of the order row (the buyer's cell, the body hash). */
#define PAY_IMAGE_MAGIC 0x354547414D594150ull    /* "PAYMAGE5" */
#define PAY_IMAGE_MAGIC_V4 0x344547414D594150ull /* "PAYMAGE4" */
#define PAY_IMAGE_MAGIC_V3 0x334547414D594150ull /* "PAYMAGE3" */
#define PAY_IMAGE_MAGIC_V2 0x324547414D594150ull /* "PAYMAGE2" */
#define PAY_IMAGE_MAGIC_V1 0x314547414D594150ull /* "PAYMAGE1" */
#define PAY_HASH_MAGIC 0x3548534148594150ull     /* "PAYHASH5" */

/* The outbox ring's rows in use are [head, head + count) modulo its size: the rows from
 * head to the end of the array, then from 0. How many are in the first part. */
static uint32_t outbox_first_part(uint32_t head, uint32_t count, uint32_t max) {
    return count < max - head ? count : max - head;
}

/* ---- Hash ---- */

static void hash_rows(XXH3_state_t *s, const void *rows, size_t count, size_t size) {
    if (count) XXH3_128bits_update(s, rows, count * size);
}

u128 pay_state_hash(const pay_t *p) {
    XXH3_state_t s;
    XXH3_INITSTATE(&s);
    XXH3_128bits_reset(&s);
    const uint64_t magic = PAY_HASH_MAGIC;
    XXH3_128bits_update(&s, &magic, sizeof magic);
    XXH3_128bits_update(&s, &p->n, sizeof p->n);
    hash_rows(&s, p->merchants, p->n.merchants, sizeof p->merchants[0]);
    hash_rows(&s, p->users, p->n.users, sizeof p->users[0]);
    hash_rows(&s, p->payments, p->n.payments, sizeof p->payments[0]);
    hash_rows(&s, p->refunds, p->n.refunds, sizeof p->refunds[0]);
    hash_rows(&s, p->topups, p->n.topups, sizeof p->topups[0]);
    hash_rows(&s, p->idem, p->n.idem_count, sizeof p->idem[0]);
    hash_rows(&s, p->orders, p->n.orders, sizeof p->orders[0]);
    /* The outbox in its FIFO order, the part after the ring's end first. */
    uint32_t first = outbox_first_part(p->n.outbox_head, p->n.outbox_count, p->config.outbox_max);
    hash_rows(&s, p->outbox + p->n.outbox_head, first, sizeof p->outbox[0]);
    hash_rows(&s, p->outbox, p->n.outbox_count - first, sizeof p->outbox[0]);
    hash_rows(&s, p->tcc, p->n.tcc, sizeof p->tcc[0]);
    XXH128_hash_t h = XXH3_128bits_digest(&s);
    return ((u128)h.high64 << 64) | h.low64;
}

/* ---- Image header and regions ---- */

CP_STATIC_ASSERT(sizeof(pay_counts_t) == 72, "counts are packed");

void pay_image_header(const pay_t *p, pay_image_header_t *h) {
    *h = (pay_image_header_t){
        .magic = PAY_IMAGE_MAGIC,
        .sequence = p->n.seq,
        .merchants = p->n.merchants,
        .users = p->n.users,
        .payments = p->n.payments,
        .refunds = p->n.refunds,
        .topups = p->n.topups,
        .idempotency_count = p->n.idem_count,
        .idempotency_head = p->n.idem_head,
        .orders = p->n.orders,
        .outbox_count = p->n.outbox_count,
        .tcc = p->n.tcc,
        .outbox_seq = p->n.outbox_seq,
    };
    cp_assert(p->n.outbox_head ==
              pay_outbox_head(p->n.outbox_seq, p->n.outbox_count, p->config.outbox_max));
}

static void add(ledger_region_t *r, uint32_t *n, void *ptr, size_t bytes) {
    r[*n] = (ledger_region_t){ptr, bytes};
    (*n)++;
}

static uint32_t regions(pay_t *p, const pay_image_header_t *h, ledger_region_t *out) {
    uint32_t n = 0;
    add(out, &n, p->merchants, (size_t)h->merchants * sizeof p->merchants[0]);
    add(out, &n, p->users, (size_t)h->users * sizeof p->users[0]);
    add(out, &n, p->payments, (size_t)h->payments * sizeof p->payments[0]);
    add(out, &n, p->refunds, (size_t)h->refunds * sizeof p->refunds[0]);
    add(out, &n, p->topups, (size_t)h->topups * sizeof p->topups[0]);
    add(out, &n, p->idem, (size_t)h->idempotency_count * sizeof p->idem[0]);
    add(out, &n, p->orders, (size_t)h->orders * sizeof p->orders[0]);
    uint32_t head = pay_outbox_head(h->outbox_seq, h->outbox_count, p->config.outbox_max);
    uint32_t first = outbox_first_part(head, h->outbox_count, p->config.outbox_max);
    add(out, &n, p->outbox + head, (size_t)first * sizeof p->outbox[0]);
    add(out, &n, p->outbox, (size_t)(h->outbox_count - first) * sizeof p->outbox[0]);
    add(out, &n, p->tcc, (size_t)h->tcc * sizeof p->tcc[0]);
    cp_assert(n <= PAY_IMAGE_REGIONS);
    return n;
}

uint32_t pay_image_regions(const pay_t *p, const pay_image_header_t *h,
                           ledger_region_t out[PAY_IMAGE_REGIONS]) {
    /* The regions are only read by the caller; the cast keeps one region list for both. */
    return regions((pay_t *)p, h, out);
}

const char *pay_image_check(const pay_image_header_t *h, const pay_config_t *c) {
    if (h->magic == PAY_IMAGE_MAGIC_V1)
        return "a payments image of version 1 (before cross-cell payments): not supported";
    if (h->magic == PAY_IMAGE_MAGIC_V2)
        return "a payments image of version 2 (before cross-cell refunds): not supported";
    if (h->magic == PAY_IMAGE_MAGIC_V3)
        return "a payments image of version 3 (before user-to-user transfers): not supported";
    if (h->magic == PAY_IMAGE_MAGIC_V4)
        return "a payments image of version 4 (before the order resolver): not supported";
    if (h->magic != PAY_IMAGE_MAGIC) return "not a payments image";
    if (h->merchants > c->merchants_max) return "the image has more merchants than the capacity";
    if (h->users > c->users_max) return "the image has more users than the capacity";
    if (h->payments > c->payments_max) return "the image has more payments than the capacity";
    if (h->refunds > c->refunds_max) return "the image has more refunds than the capacity";
    if (h->topups > c->topups_max) return "the image has more top-ups than the capacity";
    /* The ring's row order is its FIFO order: it must fit the ring exactly as it was. */
    if (h->idempotency_count > c->idempotency_max)
        return "the image has more idempotency keys than the capacity";
    if (h->idempotency_count < c->idempotency_max ? h->idempotency_head != h->idempotency_count
                                                  : h->idempotency_head >= c->idempotency_max)
        return "the image's idempotency ring does not fit this capacity";
    if (h->sequence > PAY_SEQ_MAX) return "the image's sequence is impossible";
    if (h->orders > c->orders_max) return "the image has more orders than the capacity";
    if (h->outbox_count > c->outbox_max) return "the image's outbox does not fit this capacity";
    if (h->outbox_count > h->outbox_seq || h->outbox_seq > UINT64_MAX / 2)
        return "the image's outbox sequence is impossible";
    if (h->tcc > c->tcc_max)
        return "the image has more refund activities and branches than the capacity";
    return NULL;
}

uint32_t pay_image_restore_regions(pay_t *p, const pay_image_header_t *h,
                                   ledger_region_t out[PAY_IMAGE_REGIONS]) {
    cp_assert(p->n.merchants == 0 && p->n.users == 0 && p->n.payments == 0 && p->n.seq == 0);
    cp_assert(pay_image_check(h, &p->config) == NULL);
    return regions(p, h, out);
}

/* ---- Restoring: rebuild the indexes, checking every row on the way ---- */

/* The refusals a transfer's Try stores (pay.c's try_refusal()). */
static bool transfer_refusal(uint8_t code) {
    return code == PAY_ERR_NOT_FOUND || code == PAY_ERR_CURRENCY_MISMATCH ||
           code == PAY_ERR_OVERFLOW;
}

static bool seq_ok(const pay_t *p, u128 id, uint64_t route_uid) {
    uint64_t lo = (uint64_t)id;
    return (uint64_t)(id >> 64) == route_uid && (lo >> PAY_SEQ_BITS) == p->config.cell_id &&
           (lo & PAY_SEQ_MAX) != 0 && (lo & PAY_SEQ_MAX) <= p->n.seq;
}

static const char *finish_merchants_users(pay_t *p) {
    for (uint32_t r = 0; r < p->n.merchants; r++) {
        const pay_merchant_row_t *m = &p->merchants[r];
        if (m->uid == 0 || (m->uid >> 64) != 0 || m->reserved) return "a merchant row is corrupt";
        if (pay_find(&p->merchants_ix, m->uid) != LINDEX_NONE) return "duplicate merchant";
        lindex_insert(&p->merchants_ix, lindex_hash(m->uid), r);
    }
    for (uint32_t r = 0; r < p->n.users; r++) {
        const pay_user_row_t *u = &p->users[r];
        if ((u->uid >> 64) != 0 || u->reserved) return "a user row is corrupt";
        if (u->newest != LINDEX_NONE &&
            (u->newest >= p->n.payments || p->payments[u->newest].buyer != (uint64_t)u->uid))
            return "a user's newest payment is not its own";
        if (pay_find(&p->users_ix, u->uid) != LINDEX_NONE) return "duplicate user";
        lindex_insert(&p->users_ix, lindex_hash(u->uid), r);
    }
    return NULL;
}

/* A cross-cell payment's id was drawn by its merchant's cell (by that cell's sequence); its
 * out_trade_no is held there, not here. */
static const char *finish_payment_credit(const pay_t *p, const pay_payment_row_t *x) {
    if (x->credit == PAY_CREDIT_LOCAL) {
        if (!seq_ok(p, x->id, x->buyer)) return "a payment id is corrupt";
        if (x->peer_cell || x->outbox_seq) return "a local payment's cross-cell fields are set";
        if (pay_find(&p->merchants_ix, x->merchant) == LINDEX_NONE)
            return "a payment's merchant is unknown";
        return NULL;
    }
    uint64_t lo = (uint64_t)x->id;
    if (x->credit > PAY_CREDIT_CREDITED || x->peer_cell > PAY_CELL_MAX ||
        x->peer_cell == p->config.cell_id || (uint64_t)(x->id >> 64) != x->buyer ||
        (lo >> PAY_SEQ_BITS) != x->peer_cell || (lo & PAY_SEQ_MAX) == 0 || x->outbox_seq == 0 ||
        x->outbox_seq > p->n.outbox_seq)
        return "a cross-cell payment is corrupt";
    return NULL;
}

static const char *finish_payments(pay_t *p) {
    for (uint32_t r = 0; r < p->n.payments; r++) {
        pay_payment_row_t *x = &p->payments[r];
        const char *err = finish_payment_credit(p, x);
        if (err) return err;
        if (x->dup_key != pay_payment_dup_key(x->merchant, x->text) ||
            !pay_text_valid(x->text, true))
            return "a payment's out_trade_no key is corrupt";
        if (x->amount == 0 || !pay_currency_valid(x->currency)) return "a payment is corrupt";
        if (x->prev != LINDEX_NONE && (x->prev >= r || p->payments[x->prev].buyer != x->buyer))
            return "a payment's list link is corrupt";
        if (pay_find(&p->users_ix, x->buyer) == LINDEX_NONE) return "a payment's buyer is unknown";
        bool local = x->credit == PAY_CREDIT_LOCAL;
        if (pay_find(&p->payments_ix, x->id) != LINDEX_NONE ||
            (local && pay_find(&p->payments_dup_ix, x->dup_key) != LINDEX_NONE))
            return "duplicate payment";
        lindex_insert(&p->payments_ix, lindex_hash(x->id), r);
        if (local) lindex_insert(&p->payments_dup_ix, lindex_hash(x->dup_key), r);
    }
    return NULL;
}

/* Refunds: each names a payment (a cross-cell payment's refund is a confirmed activity's:
 * finish_tcc()). */
static const char *finish_refunds(pay_t *p) {
    for (uint32_t r = 0; r < p->n.refunds; r++) {
        pay_refund_row_t *x = &p->refunds[r];
        if (!seq_ok(p, x->id, x->buyer)) return "a refund id is corrupt";
        if (x->payment_row >= p->n.payments) return "a refund's payment is outside the image";
        const pay_payment_row_t *pr = &p->payments[x->payment_row];
        if (pr->id != x->payment_id || pr->buyer != x->buyer || pr->merchant != x->merchant ||
            pr->currency != x->currency || x->amount == 0)
            return "a refund does not match its payment";
        if (x->dup_key != pay_refund_dup_key(x->payment_id, x->text) ||
            !pay_text_valid(x->text, true))
            return "a refund's out_request_no key is corrupt";
        if (pay_find(&p->refunds_ix, x->id) != LINDEX_NONE ||
            pay_find(&p->refunds_dup_ix, x->dup_key) != LINDEX_NONE)
            return "duplicate refund";
        lindex_insert(&p->refunds_ix, lindex_hash(x->id), r);
        lindex_insert(&p->refunds_dup_ix, lindex_hash(x->dup_key), r);
    }
    return NULL;
}

/* Each payment's refunded is exactly its refunds' sum plus its trying activities' amounts.
 * Summing per payment by walking the refunds once per payment would be quadratic; instead
 * subtract each from a running copy and check it reaches zero exactly. */
static bool refunded_take(pay_payment_row_t *pr, u128 amount) {
    if (pr->refunded < amount) return false;
    pr->refunded -= amount;
    return true;
}

/* A refund activity still trying: its amount is held in its payment's refunded. */
static bool is_trying(const pay_tcc_row_t *a) {
    return a->role == PAY_TCC_ACTIVITY && a->type == PAY_TCC_REFUND &&
           a->state == PAY_ACTIVITY_TRYING;
}

static const char *finish_refunded(pay_t *p) {
    const char *err = NULL;
    uint32_t r = 0, t = 0;
    for (; r < p->n.refunds; r++)
        if (!refunded_take(&p->payments[p->refunds[r].payment_row], p->refunds[r].amount)) {
            err = "refunds exceed their payment's refunded";
            break;
        }
    for (; !err && t < p->n.tcc; t++)
        if (is_trying(&p->tcc[t]) &&
            !refunded_take(&p->payments[p->tcc[t].payment_row], p->tcc[t].amount)) {
            err = "refunds exceed their payment's refunded";
            break;
        }
    for (uint32_t i = 0; !err && i < p->n.payments; i++)
        if (p->payments[i].refunded != 0) err = "a payment's refunded is not its refunds' sum";
    /* Put the sums back (the subtraction was a check, not a change), as far as it went. */
    while (r-- > 0) p->payments[p->refunds[r].payment_row].refunded += p->refunds[r].amount;
    while (t-- > 0)
        if (is_trying(&p->tcc[t])) p->payments[p->tcc[t].payment_row].refunded += p->tcc[t].amount;
    for (uint32_t i = 0; !err && i < p->n.payments; i++)
        if (p->payments[i].refunded > p->payments[i].amount) err = "refunds exceed a payment";
    return err;
}

static const char *finish_topups_idem(pay_t *p) {
    for (uint32_t r = 0; r < p->n.topups; r++) {
        const pay_topup_row_t *t = &p->topups[r];
        if (!seq_ok(p, t->id, t->uid) || t->amount == 0 || t->reserved || t->reserved_2)
            return "a top-up row is corrupt";
    }
    for (uint32_t r = 0; r < p->n.idem_count; r++) {
        const pay_idem_row_t *x = &p->idem[r];
        if (x->live > 1 || x->reserved) return "an idempotency row is corrupt";
        if (!x->live) continue;
        if (pay_find(&p->idem_ix, x->key) != LINDEX_NONE) return "duplicate idempotency key";
        lindex_insert(&p->idem_ix, lindex_hash(x->key), r);
    }
    return NULL;
}

/* Orders: drawn by this cell; the reserved and credited ones hold their out_trade_no (but a
 * credited one whose out_trade_no a payment took after its release: pay.c), which no local
 * payment holds too. */
static const char *finish_orders(pay_t *p) {
    for (uint32_t r = 0; r < p->n.orders; r++) {
        pay_order_row_t *x = &p->orders[r];
        if (!seq_ok(p, x->id, x->buyer) || x->amount == 0 || !pay_currency_valid(x->currency) ||
            x->reserved || x->holds_otn > 1 || x->state < PAY_ORDER_RESERVED ||
            x->state > PAY_ORDER_CREDITED || x->reserved_2 || x->reserved_3 ||
            x->peer_cell > PAY_CELL_MAX || x->peer_cell == p->config.cell_id)
            return "an order row is corrupt";
        if (x->holds_otn != (x->state == PAY_ORDER_RESERVED) && x->state != PAY_ORDER_CREDITED)
            return "an order's out_trade_no is held in the wrong state";
        if (x->dup_key != pay_payment_dup_key(x->merchant, x->text) ||
            !pay_text_valid(x->text, true))
            return "an order's out_trade_no key is corrupt";
        if (pay_find(&p->merchants_ix, x->merchant) == LINDEX_NONE)
            return "an order's merchant is unknown";
        if (pay_find(&p->orders_ix, x->id) != LINDEX_NONE) return "duplicate order";
        lindex_insert(&p->orders_ix, lindex_hash(x->id), r);
        if (!x->holds_otn) continue;
        if (pay_find(&p->orders_dup_ix, x->dup_key) != LINDEX_NONE ||
            pay_find(&p->payments_dup_ix, x->dup_key) != LINDEX_NONE)
            return "an out_trade_no is held twice";
        lindex_insert(&p->orders_dup_ix, lindex_hash(x->dup_key), r);
    }
    p->orders_low = 0;
    pay_orders_low_advance(p);
    return NULL;
}

/* A refund activity (this cell drew R): its payment is a cross-cell one and its own; trying,
 * it holds its out_request_no; decided, it has its outbox record (seq in range) and,
 * confirmed, its refund row (id R); cancelled, a cancel code and no refund row. */
static const char *finish_activity(pay_t *p, uint32_t row) {
    const pay_tcc_row_t *a = &p->tcc[row];
    if (!seq_ok(p, a->id, a->buyer) || a->payment_row >= p->n.payments)
        return "an activity is corrupt";
    const pay_payment_row_t *pr = &p->payments[a->payment_row];
    if (pr->id != a->payment_id || pr->buyer != a->buyer || pr->merchant != a->merchant ||
        pr->currency != a->currency || pr->peer_cell != a->peer_cell ||
        pr->credit == PAY_CREDIT_LOCAL)
        return "an activity does not match its payment";
    if (a->dup_key != pay_refund_dup_key(a->payment_id, a->text) || !pay_text_valid(a->text, true))
        return "an activity's out_request_no key is corrupt";
    uint32_t refund = pay_find(&p->refunds_ix, a->id);
    bool confirmed = a->state == PAY_ACTIVITY_CONFIRMING || a->state == PAY_ACTIVITY_CONFIRMED;
    bool cancelled = a->state == PAY_ACTIVITY_CANCELLING || a->state == PAY_ACTIVITY_CANCELLED;
    bool code_ok = cancelled ? a->code == PAY_ERR_INSUFFICIENT_FUNDS ||
                                   a->code == PAY_ERR_OVERFLOW || a->code == PAY_ERR_CANCELLED
                             : a->code == 0;
    if (!code_ok || (refund != LINDEX_NONE) != confirmed)
        return "an activity's decision is corrupt";
    if (confirmed &&
        (p->refunds[refund].amount != a->amount || p->refunds[refund].dup_key != a->dup_key ||
         p->refunds[refund].payment_row != a->payment_row))
        return "a confirmed activity does not match its refund";
    if (a->state == PAY_ACTIVITY_TRYING) {
        if (a->outbox_seq != 0) return "a trying activity has an outbox record";
        if (pay_find(&p->refunds_dup_ix, a->dup_key) != LINDEX_NONE ||
            pay_find(&p->tcc_dup_ix, a->dup_key) != LINDEX_NONE)
            return "an out_request_no is held twice";
        lindex_insert(&p->tcc_dup_ix, lindex_hash(a->dup_key), row);
        p->n.tcc_trying++;
        return NULL;
    }
    if (!confirmed && !cancelled) return "an activity's state is corrupt";
    if (a->outbox_seq == 0 || a->outbox_seq > p->n.outbox_seq)
        return "a decided activity's outbox record is corrupt";
    return NULL;
}

/* A transfer (this cell drew T for the sender, a user of this cell): in one cell, succeeded
 * at once with nothing to deliver; across cells, an activity as a refund's, without the
 * payment, whose cancel codes are a transfer Try's refusals. */
static const char *finish_transfer(pay_t *p, uint32_t row) {
    const pay_tcc_row_t *a = &p->tcc[row];
    if (!seq_ok(p, a->id, a->buyer) || a->dup_key || a->payment_id || a->payment_row ||
        !pay_zero(a->text, PAY_TEXT_MAX) || a->buyer == a->merchant ||
        a->merchant == PAY_SYSTEM_UID || pay_find(&p->users_ix, a->buyer) == LINDEX_NONE)
        return "a transfer row is corrupt";
    if (a->peer_cell == 0) {
        if (a->state != PAY_ACTIVITY_CONFIRMED || a->code || a->outbox_seq || a->idem_key ||
            pay_find(&p->users_ix, a->merchant) == LINDEX_NONE)
            return "a transfer within the cell is corrupt";
        return NULL;
    }
    bool cancelled = a->state == PAY_ACTIVITY_CANCELLING || a->state == PAY_ACTIVITY_CANCELLED;
    /* Across cells: the recipient is another cell's (pay.c refuses one of ours wrong_cell). */
    if (a->peer_cell == p->config.cell_id || pay_owns_uid(p, a->merchant) ||
        a->state < PAY_ACTIVITY_TRYING || a->state > PAY_ACTIVITY_CANCELLED ||
        (cancelled ? a->code != PAY_ERR_CANCELLED && !transfer_refusal(a->code) : a->code != 0))
        return "a transfer's decision is corrupt";
    if (a->state == PAY_ACTIVITY_TRYING) {
        if (a->outbox_seq != 0) return "a trying transfer has an outbox record";
        p->n.tcc_trying++;
        return NULL;
    }
    if (a->outbox_seq == 0 || a->outbox_seq > p->n.outbox_seq)
        return "a decided transfer's outbox record is corrupt";
    return NULL;
}

/* A branch (another cell drew R for one of its buyers; T for one of its senders). */
static const char *finish_branch(const pay_t *p, const pay_tcc_row_t *b) {
    uint64_t lo = (uint64_t)b->id;
    if ((uint64_t)(b->id >> 64) != b->buyer || (lo >> 63) != 0 ||
        (lo >> PAY_SEQ_BITS) != b->peer_cell || (lo & PAY_SEQ_MAX) == 0 ||
        b->peer_cell == p->config.cell_id)
        return "a branch's id is corrupt";
    if (b->dup_key || b->payment_id || b->idem_key || b->payment_row || b->outbox_seq ||
        !pay_zero(b->text, PAY_TEXT_MAX))
        return "a branch row is corrupt";
    bool refusal_ok = b->type == PAY_TCC_TRANSFER
                          ? transfer_refusal(b->code)
                          : b->code == PAY_ERR_INSUFFICIENT_FUNDS || b->code == PAY_ERR_OVERFLOW;
    if (b->state < PAY_BRANCH_TRIED || b->state > PAY_BRANCH_CANCELLED ||
        (b->state == PAY_BRANCH_REFUSED ? !refusal_ok : b->code != 0) ||
        b->merchant == PAY_SYSTEM_UID || (b->type == PAY_TCC_TRANSFER && b->merchant == b->buyer))
        return "a branch's state is corrupt";
    return NULL;
}

/* The tcc table: activities and branches by R; then each confirmed refund of a cross-cell
 * payment is a confirmed activity's. */
static const char *finish_tcc(pay_t *p) {
    for (uint32_t r = 0; r < p->n.tcc; r++) {
        const pay_tcc_row_t *x = &p->tcc[r];
        if (x->type > PAY_TCC_TRANSFER || x->amount == 0 || !pay_currency_valid(x->currency) ||
            x->peer_cell > PAY_CELL_MAX)
            return "a refund activity or branch row is corrupt";
        if (pay_find(&p->tcc_ix, x->id) != LINDEX_NONE)
            return "duplicate refund activity or branch";
        bool transfer = x->role == PAY_TCC_ACTIVITY && x->type == PAY_TCC_TRANSFER;
        const char *err = transfer                      ? finish_transfer(p, r)
                          : x->role == PAY_TCC_ACTIVITY ? finish_activity(p, r)
                          : x->role == PAY_TCC_BRANCH
                              ? finish_branch(p, x)
                              : "a refund activity or branch row is corrupt";
        if (err) return err;
        lindex_insert(&p->tcc_ix, lindex_hash(x->id), r);
    }
    for (uint32_t r = 0; r < p->n.refunds; r++) {
        const pay_refund_row_t *x = &p->refunds[r];
        if (p->payments[x->payment_row].credit == PAY_CREDIT_LOCAL) continue;
        uint32_t a = pay_find(&p->tcc_ix, x->id);
        if (a == LINDEX_NONE || p->tcc[a].role != PAY_TCC_ACTIVITY ||
            p->tcc[a].type != PAY_TCC_REFUND)
            return "a refund of a cross-cell payment has no activity";
    }
    return NULL;
}

/* The record seq (in the ring) against what it delivers: its payment (credit) or activity
 * (confirm, cancel), whose state says whether it is acknowledged. */
static const char *finish_outbox_record(const pay_t *p, const pay_outbox_row_t *x, uint64_t seq) {
    bool acked = x->acked == 1;
    if (x->kind == PAY_KIND_CREDIT) {
        if (x->tcc_type) return "an outbox record is corrupt";
        uint32_t row = pay_find(&p->payments_ix, x->payment_id);
        const pay_payment_row_t *pr = row == LINDEX_NONE ? NULL : &p->payments[row];
        if (!pr || pr->outbox_seq != seq || pr->amount != x->amount || pr->buyer != x->buyer ||
            pr->merchant != x->merchant || pr->currency != x->currency ||
            pr->peer_cell != x->peer_cell || (pr->credit == PAY_CREDIT_CREDITED) != acked)
            return "an outbox record does not match its payment";
        return NULL;
    }
    uint32_t row = pay_find(&p->tcc_ix, x->payment_id);
    const pay_tcc_row_t *a = row == LINDEX_NONE ? NULL : &p->tcc[row];
    uint8_t pending = x->kind == PAY_KIND_CONFIRM  ? PAY_ACTIVITY_CONFIRMING
                      : x->kind == PAY_KIND_CANCEL ? PAY_ACTIVITY_CANCELLING
                                                   : 0;
    if (!pending || !a || a->role != PAY_TCC_ACTIVITY || a->type != x->tcc_type ||
        a->outbox_seq != seq || a->amount != x->amount || a->buyer != x->buyer ||
        a->merchant != x->merchant || a->currency != x->currency || a->peer_cell != x->peer_cell ||
        a->state != pending + acked)
        return "an outbox record does not match its refund activity";
    return NULL;
}

/* The outbox: consecutive seqs up to outbox_seq, the head not acknowledged (it would have
 * been reclaimed), each record its payment's or activity's, acknowledged exactly when that
 * is credited or its decision delivered; and every pending payment and undelivered decision
 * has its record (as many of them as unacked records, each naming a distinct one). */
static const char *finish_outbox(pay_t *p) {
    uint64_t first = p->n.outbox_seq - p->n.outbox_count + 1;
    uint32_t unacked = 0, pending = 0;
    for (uint64_t seq = first; seq <= p->n.outbox_seq; seq++) {
        const pay_outbox_row_t *x = &p->outbox[pay_outbox_row(p, seq)];
        if (x->seq != seq || x->acked > 1 || x->reserved_2 || (seq == first && x->acked))
            return "an outbox row is corrupt";
        const char *err = finish_outbox_record(p, x, seq);
        if (err) return err;
        unacked += !x->acked;
    }
    for (uint32_t r = 0; r < p->n.payments; r++)
        pending += p->payments[r].credit == PAY_CREDIT_PENDING;
    for (uint32_t r = 0; r < p->n.tcc; r++)
        pending +=
            p->tcc[r].role == PAY_TCC_ACTIVITY && (p->tcc[r].state == PAY_ACTIVITY_CONFIRMING ||
                                                   p->tcc[r].state == PAY_ACTIVITY_CANCELLING);
    if (pending != unacked) return "a pending payment or decision has no outbox record";
    p->n.outbox_unacked = unacked;
    return NULL;
}

const char *pay_image_finish(pay_t *p, const pay_image_header_t *h) {
    p->n = (pay_counts_t){
        .merchants = h->merchants,
        .users = h->users,
        .payments = h->payments,
        .refunds = h->refunds,
        .topups = h->topups,
        .idem_count = h->idempotency_count,
        .idem_head = h->idempotency_head,
        .orders = h->orders,
        .outbox_count = h->outbox_count,
        .outbox_head = pay_outbox_head(h->outbox_seq, h->outbox_count, p->config.outbox_max),
        .tcc = h->tcc,
        .seq = h->sequence,
        .outbox_seq = h->outbox_seq,
    };
    const char *err = finish_merchants_users(p);
    if (!err) err = finish_payments(p);
    if (!err) err = finish_refunds(p);
    if (!err) err = finish_topups_idem(p);
    if (!err) err = finish_orders(p);
    if (!err) err = finish_tcc(p);
    if (!err) err = finish_refunded(p);
    if (!err) err = finish_outbox(p);
    return err;
}

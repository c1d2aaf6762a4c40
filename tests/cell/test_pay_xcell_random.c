/* Cross-cell payments at random between two cells (docs/cross-cell.md), against a reference
 * model. Cells 1 (zone 1: uids 10..19) and 2 (zone 2: uids 20..29) each have merchants and
 * users, and each pays the other's merchants. The test plays the gateway (orders, payments of
 * orders, releases after refusals; it may die between any two steps, and clients retry with
 * the same key) and the relay (batches of outbox records delivered as credits in random
 * order, duplicated or lost; acknowledgements duplicated or lost too). Every answer's code
 * (and id where the model knows it) is checked against the model, and at the end, once
 * everything is delivered: every payment the buyer's cell made is credited exactly once,
 * every balance is the model's, the balances of users and merchants of both cells add up to
 * the top-ups per currency, and the clearing positions of each pair of cells net to zero.
 * Refunds of cross-cell payments (TCC) are drawn too: the gateway's refund, Try and decide,
 * each answer possibly lost (the step is sent again), the gateway dying between any two steps,
 * a Try delayed past its decision (and past the Cancel's delivery: anti-hanging), the relay's
 * confirm / cancel deliveries lost, repeated and reordered like credits, and the buyer's
 * cell's recovery cancelling activities left trying; at the end no activity is trying, no
 * pending transfer is left in either ledger, and every refund's money is the model's.
 * CELLPAY_SEED=N replays one seed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "base/prng.h"
#include "pay_test_util.h"

#define N_STEPS 4000u
#define CAP 4096u
#define OUTBOX 16u /* small: back pressure happens */
#define N_OTN 150u
#define MAXU 30u /* uids 0..29 */
#define MAXM 64u /* messages in flight */
#define N_ORN 6u /* out_request_no's per payment: duplicates happen */
#define STALE_NS 5000000000ull

/* ---- The model ---- */

typedef struct m_order {
    u128 id;
    uint64_t merchant, buyer;
    u128 amount;
    uint32_t cur, otn;
    uint8_t state; /* 1 reserved, 2 failed, 3 credited */
    bool holds;
} m_order_t;

typedef struct m_key {
    uint64_t actor;
    u128 key, body;
    uint8_t kind, code;
    u128 id;
} m_key_t;

typedef struct m_xpay { /* a cross-cell payment in its buyer's cell */
    u128 id, amount;
    uint64_t buyer, merchant;
    uint32_t cur;
    uint64_t seq; /* its outbox record */
    bool acked;
    u128 refunded; /* confirmed and trying refunds */
} m_xpay_t;

typedef struct m_act { /* a refund activity in the buyer's cell */
    u128 id, pay_id, amount;
    uint64_t buyer, merchant, created;
    uint32_t cur, orn;
    uint8_t state; /* 1 trying, 2 confirming, 3 confirmed, 4 cancelling, 5 cancelled */
    uint8_t code;  /* cancelled with */
    uint64_t seq;  /* its decision's outbox record */
    bool acked;
} m_act_t;

typedef struct m_branch { /* a branch in the merchant's cell */
    u128 id, amount;
    uint8_t state; /* 1 tried, 2 refused, 3 confirmed, 4 cancelled */
    uint8_t code;
} m_branch_t;

/* A refund a client may repeat (same key, same body). */
typedef struct m_rclient {
    uint32_t bi; /* the buyer's cell (index) */
    u128 pay_id, amount, key;
    uint64_t actor;
    uint32_t orn;
} m_rclient_t;

typedef struct m_cell {
    fx_t f;
    uint32_t cell;
    u128 bal[MAXU][2];         /* user balances (CNY, USD) */
    bool acct[MAXU][2];        /* the user has an account in the currency */
    u128 recv[MAXU][2];        /* merchant receivables */
    u128 clearing[2];          /* position (credits - debits) toward the other cell */
    uint8_t held[MAXU][N_OTN]; /* 0 free, 1 a local payment, 2 an order */
    m_order_t orders[CAP];
    uint32_t n_orders;
    m_key_t keys[CAP];
    uint32_t n_keys;
    m_xpay_t xpays[CAP];
    uint32_t n_xpays;
    uint64_t outbox_seq;
    uint32_t outbox_count, outbox_unacked; /* count: from the oldest unacknowledged */
    u128 pend[MAXU][2];                    /* merchant receivables held by Tries (debits_pending) */
    m_act_t acts[CAP];
    uint32_t n_acts;
    m_branch_t branches[CAP];
    uint32_t n_branches;
} m_cell_t;

/* A client request the gateway may be asked to repeat (same key, same body). */
typedef struct m_client {
    uint32_t mcell; /* the merchant's cell (index) */
    uint64_t merchant, buyer;
    u128 amount, key;
    uint32_t cur, otn;
} m_client_t;

typedef struct world {
    m_cell_t c[2];
    m_client_t clients[CAP];
    uint32_t n_clients;
    pay_outbox_item_t credits[MAXM]; /* deliveries in flight */
    uint32_t credit_from[MAXM];      /* each one's buyer's cell (index) */
    uint32_t n_credits;
    u128 acks[MAXM]; /* acknowledgements in flight */
    uint32_t ack_to[MAXM];
    uint32_t n_acks;
    uint64_t from[2]; /* each relay's next seq; 0 after a leader change: from the oldest */
    u128 topped[2];   /* per currency */
    uint64_t key_next;
    /* order, payment of an order, local, credit, release, refund, try, decide, confirm or
     * cancel */
    uint32_t stats[9][PAY_CODE_COUNT];
    m_rclient_t rclients[CAP];
    uint32_t n_rclients;
    pay_request_t tries[MAXM]; /* delayed Tries in flight */
    uint32_t try_to[MAXM];     /* each one's merchant's cell (index) */
    uint32_t n_tries;
} world_t;

static uint32_t CUR(int i) {
    return i ? USD() : CNY();
}

static int cur_ix(uint32_t cur) {
    return cur == USD();
}

static uint32_t cell_of(uint64_t uid) {
    return (uint32_t)(uid / 10) - 1; /* 10..19: 0 (cell 1), 20..29: 1 (cell 2) */
}

static bool is_merchant(uint64_t uid) {
    return uid % 10 <= 1; /* 10, 11, 20, 21; 19 and 29 are not */
}

static bool is_user(uint64_t uid) {
    return uid % 10 >= 2 && uid % 10 <= 7; /* 8 is not */
}

static void otn_text(uint32_t otn, char text[PAY_TEXT_MAX]) {
    memset(text, 0, PAY_TEXT_MAX);
    snprintf(text, PAY_TEXT_MAX, "t%u", otn);
}

static m_key_t *m_key(m_cell_t *c, uint64_t actor, u128 key) {
    for (uint32_t i = 0; i < c->n_keys; i++)
        if (c->keys[i].actor == actor && c->keys[i].key == key) return &c->keys[i];
    return NULL;
}

static void m_key_add(m_cell_t *c, uint64_t actor, u128 key, u128 body, const pay_object_t *o) {
    assert_true(c->n_keys < CAP);
    c->keys[c->n_keys++] = (m_key_t){
        .actor = actor, .key = key, .body = body, .kind = o->kind, .code = o->code, .id = o->id};
}

static m_order_t *m_order(m_cell_t *c, u128 id) {
    for (uint32_t i = 0; i < c->n_orders; i++)
        if (c->orders[i].id == id) return &c->orders[i];
    return NULL;
}

static m_xpay_t *m_xpay(m_cell_t *c, u128 id) {
    for (uint32_t i = 0; i < c->n_xpays; i++)
        if (c->xpays[i].id == id) return &c->xpays[i];
    return NULL;
}

static m_act_t *m_act(m_cell_t *c, u128 id) {
    for (uint32_t i = 0; i < c->n_acts; i++)
        if (c->acts[i].id == id) return &c->acts[i];
    return NULL;
}

static m_branch_t *m_branch(m_cell_t *c, u128 id) {
    for (uint32_t i = 0; i < c->n_branches; i++)
        if (c->branches[i].id == id) return &c->branches[i];
    return NULL;
}

static pay_object_t apply(m_cell_t *c, const pay_request_t *r) {
    pay_object_t o = fx_apply(&c->f, r);
    assert_true(o.code < PAY_CODE_COUNT);
    return o;
}

static void expect(const pay_object_t *o, uint8_t kind, uint8_t code, const char *what) {
    if (o->kind != kind || o->code != code) {
        printf("%s: got kind %u code %u, model kind %u code %u\n", what, o->kind, o->code, kind,
               code);
        fail();
    }
}

/* ---- Setup ---- */

static void world_init(world_t *w) {
    memset(w, 0, sizeof *w);
    for (uint32_t i = 0; i < 2; i++) {
        m_cell_t *c = &w->c[i];
        c->cell = i + 1;
        pay_config_t pc = pay_test_config(CAP);
        pc.cell_id = c->cell;
        pc.outbox_max = OUTBOX;
        cp_zones_add(&pc.zones, c->cell);
        fx_init(&c->f, &pc, 4 * CAP);
        for (uint64_t u = 10 * c->cell; u < 10 * c->cell + 10; u++) {
            if (is_merchant(u)) {
                pay_request_t r = rq_merchant(u, (uint8_t)u);
                expect((pay_object_t[]){apply(c, &r)}, PAY_KIND_MERCHANT, PAY_CREATED, "merchant");
            }
            if (!is_user(u)) continue;
            for (int k = 0; k < 2; k++) {
                if (k == 1 && u % 2) continue; /* odd uids have no USD account */
                pay_request_t r = rq_user(u, CUR(k));
                expect((pay_object_t[]){apply(c, &r)}, PAY_KIND_USER, PAY_CREATED, "user");
                c->acct[u][k] = true;
            }
        }
    }
}

static void topup(world_t *w, uint64_t uid, int k, u128 amount) {
    m_cell_t *c = &w->c[cell_of(uid)];
    pay_request_t r = rq_topup(uid, CUR(k), amount);
    pay_object_t o = apply(c, &r);
    if (!is_user(uid)) return expect(&o, PAY_KIND_TOPUP, PAY_ERR_NOT_FOUND, "topup");
    if (!c->acct[uid][k]) return expect(&o, PAY_KIND_TOPUP, PAY_ERR_CURRENCY_MISMATCH, "topup");
    expect(&o, PAY_KIND_TOPUP, PAY_CREATED, "topup");
    c->bal[uid][k] += amount;
    w->topped[k] += amount;
}

/* ---- The gateway ---- */

static u128 order_body(const m_client_t *cl) {
    return cl->amount * 131 + cl->otn * 7 + (u128)cl->buyer * 1000003 + cl->cur;
}

static bool stored_refusal(uint8_t code) {
    return code == PAY_ERR_NOT_FOUND || code == PAY_ERR_INSUFFICIENT_FUNDS ||
           code == PAY_ERR_CURRENCY_MISMATCH || code == PAY_ERR_OVERFLOW;
}

/* Step 1, in the merchant's cell: the order. */
static pay_object_t gw_order(world_t *w, const m_client_t *cl) {
    m_cell_t *m = &w->c[cl->mcell];
    pay_request_t r = {.kind = PAY_KIND_ORDER,
                       .actor = cl->merchant,
                       .uid = cl->buyer,
                       .currency = cl->cur,
                       .amount = cl->amount,
                       .funding = 1,
                       .idem_key = cl->key,
                       .body_hash = order_body(cl)};
    otn_text(cl->otn, r.text);
    pay_object_t o = apply(m, &r);
    w->stats[0][o.code]++;
    const m_key_t *k = m_key(m, cl->merchant, cl->key);
    if (k) { /* the key's stored answer: the order, or the refusal a release left */
        expect(&o, k->kind, k->code, "order replay");
        assert_true(o.replayed == 1 && o.id == k->id);
        return o;
    }
    uint8_t code = !is_merchant(cl->merchant)       ? PAY_ERR_NOT_FOUND
                   : m->held[cl->merchant][cl->otn] ? PAY_ERR_DUPLICATE_OUT_TRADE_NO
                                                    : PAY_CREATED;
    expect(&o, PAY_KIND_ORDER, code, "order");
    if (code == PAY_CREATED) {
        assert_true((uint64_t)(o.id >> 64) == cl->buyer);
        assert_true((((uint64_t)o.id >> 40) & PAY_CELL_MAX) == m->cell);
        assert_true(m_order(m, o.id) == NULL && m->n_orders < CAP);
        m->orders[m->n_orders++] = (m_order_t){.id = o.id,
                                               .merchant = cl->merchant,
                                               .buyer = cl->buyer,
                                               .amount = cl->amount,
                                               .cur = cl->cur,
                                               .otn = cl->otn,
                                               .state = 1,
                                               .holds = true};
        m->held[cl->merchant][cl->otn] = 2;
    }
    m_key_add(m, cl->merchant, cl->key, order_body(cl), &o);
    return o;
}

/* Step 2, in the buyer's cell: the payment of the order. */
static pay_object_t gw_xpay(world_t *w, const m_order_t *x, uint32_t mcell) {
    m_cell_t *b = &w->c[1 - mcell];
    pay_request_t r = {.kind = PAY_KIND_PAYMENT,
                       .actor = x->merchant,
                       .uid = x->buyer,
                       .currency = x->cur,
                       .amount = x->amount,
                       .funding = 1,
                       .payment_id = x->id,
                       .idem_key = x->id,
                       .body_hash = x->id + 5,
                       .peer_cell = mcell + 1};
    otn_text(x->otn, r.text);
    pay_object_t o = apply(b, &r);
    w->stats[1][o.code]++;
    const m_key_t *k = m_key(b, x->merchant, x->id);
    if (k) {
        expect(&o, k->kind, k->code, "payment replay");
        assert_true(o.replayed == 1 && o.id == k->id);
        return o;
    }
    int c = cur_ix(x->cur);
    uint8_t code = !is_user(x->buyer)                ? PAY_ERR_NOT_FOUND
                   : !b->acct[x->buyer][c]           ? PAY_ERR_CURRENCY_MISMATCH
                   : b->outbox_count >= OUTBOX       ? PAY_ERR_FULL
                   : b->bal[x->buyer][c] < x->amount ? PAY_ERR_INSUFFICIENT_FUNDS
                                                     : PAY_CREATED;
    expect(&o, PAY_KIND_PAYMENT, code, "payment of an order");
    if (code == PAY_ERR_FULL) return o; /* not stored: a retry goes through later */
    if (code == PAY_CREATED) {
        assert_true(o.id == x->id && o.merchant_credit == 1 && o.peer_cell == mcell + 1);
        b->bal[x->buyer][c] -= x->amount;
        b->clearing[c] += x->amount;
        assert_true(b->n_xpays < CAP);
        b->xpays[b->n_xpays++] = (m_xpay_t){.id = x->id,
                                            .amount = x->amount,
                                            .buyer = x->buyer,
                                            .merchant = x->merchant,
                                            .cur = x->cur,
                                            .seq = ++b->outbox_seq};
        b->outbox_count++;
        b->outbox_unacked++;
    }
    m_key_add(b, x->merchant, x->id, x->id + 5, &o);
    return o;
}

/* Step 3, in the merchant's cell: a release (after a refusal; or, rarely, sent in error). */
static void gw_release(world_t *w, uint32_t mcell, m_order_t *x, uint8_t code) {
    m_cell_t *m = &w->c[mcell];
    pay_request_t r = {
        .kind = PAY_KIND_RELEASE, .actor = x->merchant, .payment_id = x->id, .code = code};
    pay_object_t o = apply(m, &r);
    w->stats[4][o.code]++;
    if (x->state == 3) return expect(&o, PAY_KIND_RELEASE, PAY_ERR_INVALID, "release");
    expect(&o, PAY_KIND_RELEASE, PAY_OK, "release");
    if (x->state == 2) return;
    x->state = 2;
    x->holds = false;
    m->held[x->merchant][x->otn] = 0;
    for (uint32_t i = 0; i < m->n_keys; i++) /* the order's key answers the refusal */
        if (m->keys[i].kind == PAY_KIND_ORDER && m->keys[i].id == x->id)
            m->keys[i] = (m_key_t){.actor = m->keys[i].actor,
                                   .key = m->keys[i].key,
                                   .body = m->keys[i].body,
                                   .kind = PAY_KIND_PAYMENT,
                                   .code = code};
}

/* One client request through the gateway, which may die after any step. */
static void gw_request(world_t *w, const m_client_t *cl, prng_t *g) {
    pay_object_t o = gw_order(w, cl);
    if (o.kind != PAY_KIND_ORDER || o.code != PAY_CREATED) return; /* answered */
    if (prng_below(g, 10) == 0) return;                            /* died */
    m_order_t *x = m_order(&w->c[cl->mcell], o.id);
    assert_non_null(x);
    pay_object_t p = gw_xpay(w, x, cl->mcell);
    if (!stored_refusal(p.code)) return;
    if (prng_below(g, 10) == 0) return; /* died before the release */
    gw_release(w, cl->mcell, x, p.code);
}

static void new_client(world_t *w, prng_t *g) {
    assert_true(w->n_clients < CAP);
    m_client_t *cl = &w->clients[w->n_clients++];
    cl->mcell = (uint32_t)prng_below(g, 2);
    uint64_t mbase = 10 * (cl->mcell + 1), bbase = 10 * (2 - cl->mcell);
    uint64_t mi = prng_below(g, 20);
    cl->merchant = mbase + (mi < 9 ? 0 : mi < 18 ? 1 : 9);
    cl->buyer = bbase + 2 + prng_below(g, 7); /* 8: no such user */
    cl->cur = CUR(prng_below(g, 4) == 0);
    cl->amount = 1 + prng_below(g, prng_below(g, 4) == 0 ? 900 : 120);
    cl->otn = (uint32_t)prng_below(g, N_OTN);
    cl->key = ++w->key_next;
    gw_request(w, cl, g);
}

/* A payment with buyer and merchant in one cell (no key). */
static void local_payment(world_t *w, prng_t *g) {
    uint32_t ci = (uint32_t)prng_below(g, 2);
    m_cell_t *c = &w->c[ci];
    uint64_t base = 10 * (ci + 1);
    uint64_t merchant = base + (prng_below(g, 10) == 0 ? 9 : prng_below(g, 2));
    uint64_t buyer = base + 2 + prng_below(g, 7);
    int k = prng_below(g, 4) == 0;
    u128 amount = 1 + prng_below(g, 150);
    uint32_t otn = (uint32_t)prng_below(g, N_OTN);
    char text[PAY_TEXT_MAX];
    otn_text(otn, text);
    pay_request_t r = rq_payment(merchant, buyer, CUR(k), amount, text);
    pay_object_t o = apply(c, &r);
    w->stats[2][o.code]++;
    uint8_t code = !is_merchant(merchant)      ? PAY_ERR_NOT_FOUND
                   : !is_user(buyer)           ? PAY_ERR_NOT_FOUND
                   : !c->acct[buyer][k]        ? PAY_ERR_CURRENCY_MISMATCH
                   : c->held[merchant][otn]    ? PAY_ERR_DUPLICATE_OUT_TRADE_NO
                   : c->bal[buyer][k] < amount ? PAY_ERR_INSUFFICIENT_FUNDS
                                               : PAY_CREATED;
    expect(&o, PAY_KIND_PAYMENT, code, "local payment");
    if (code != PAY_CREATED) return;
    assert_int_equal(o.merchant_credit, 0);
    c->bal[buyer][k] -= amount;
    c->recv[merchant][k] += amount;
    c->held[merchant][otn] = 1;
}

/* ---- The relay ---- */

/* The model's unacknowledged records of cell b from seq `from` on, in seq order: payments'
 * credits and refund activities' decisions. */
static uint32_t m_records(const m_cell_t *b, uint64_t from, pay_outbox_item_t *out) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < b->n_xpays; i++) {
        const m_xpay_t *x = &b->xpays[i];
        if (x->acked || x->seq < from) continue;
        assert_true(n < OUTBOX);
        out[n++] = (pay_outbox_item_t){.payment_id = x->id,
                                       .amount = x->amount,
                                       .buyer = x->buyer,
                                       .merchant = x->merchant,
                                       .seq = x->seq,
                                       .currency = x->cur,
                                       .kind = PAY_KIND_CREDIT};
    }
    for (uint32_t i = 0; i < b->n_acts; i++) {
        const m_act_t *a = &b->acts[i];
        if ((a->state != 2 && a->state != 4) || a->acked || a->seq < from) continue;
        assert_true(n < OUTBOX);
        out[n++] = (pay_outbox_item_t){.payment_id = a->id,
                                       .amount = a->amount,
                                       .buyer = a->buyer,
                                       .merchant = a->merchant,
                                       .seq = a->seq,
                                       .currency = a->cur,
                                       .kind = a->state == 2 ? PAY_KIND_CONFIRM : PAY_KIND_CANCEL};
    }
    for (uint32_t i = 1; i < n; i++) /* insertion sort by seq */
        for (uint32_t j = i; j > 0 && out[j - 1].seq > out[j].seq; j--) {
            pay_outbox_item_t t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return n;
}

/* A batch of the buyer's cell's unacknowledged records from the relay's cursor: the model's,
 * oldest first. A new relay (after a leader change: restart) starts over from the oldest. */
static void relay_fetch(world_t *w, uint32_t bi, bool restart) {
    m_cell_t *b = &w->c[bi];
    if (restart) w->from[bi] = 0;
    pay_outbox_item_t items[OUTBOX + 1], model[OUTBOX];
    uint32_t n = pay_outbox_pending(b->f.pay, w->from[bi], items, OUTBOX + 1);
    assert_int_equal(pay_outbox_backlog(b->f.pay), b->outbox_unacked);
    uint32_t j = m_records(b, w->from[bi], model);
    assert_int_equal(n, j);
    for (uint32_t i = 0; i < n; i++)
        assert_true(items[i].payment_id == model[i].payment_id && items[i].seq == model[i].seq &&
                    items[i].amount == model[i].amount && items[i].buyer == model[i].buyer &&
                    items[i].merchant == model[i].merchant &&
                    items[i].currency == model[i].currency && items[i].kind == model[i].kind &&
                    items[i].peer_cell == 2 - bi);
    if (n) w->from[bi] = items[n - 1].seq + 1;
    for (uint32_t i = 0; i < n && w->n_credits < MAXM; i++) {
        w->credits[w->n_credits] = items[i];
        w->credit_from[w->n_credits++] = bi;
    }
}

static pay_object_t branch_step(world_t *w, uint32_t mi, const pay_request_t *r);

static void relay_deliver(world_t *w, prng_t *g, bool lossy) {
    uint32_t i = (uint32_t)prng_below(g, w->n_credits);
    pay_outbox_item_t it = w->credits[i];
    uint32_t bi = w->credit_from[i];
    if (!lossy || prng_below(g, 4) != 0) { /* else it stays in flight: delivered again */
        w->credits[i] = w->credits[w->n_credits - 1];
        w->credit_from[i] = w->credit_from[w->n_credits - 1];
        w->n_credits--;
        if (lossy && prng_below(g, 10) == 0) return; /* lost */
    }
    m_cell_t *m = &w->c[1 - bi];
    if (it.kind != PAY_KIND_CREDIT) { /* a refund activity's decision */
        pay_request_t r = {.kind = it.kind,
                           .actor = it.merchant,
                           .uid = it.buyer,
                           .payment_id = it.payment_id,
                           .amount = it.amount,
                           .currency = it.currency,
                           .peer_cell = bi + 1};
        pay_object_t o = branch_step(w, 1 - bi, &r);
        assert_true(o.code == PAY_OK || o.code == PAY_CREATED);
        if ((lossy && prng_below(g, 8) == 0) || w->n_acks >= MAXM) return;
        w->acks[w->n_acks] = it.payment_id;
        w->ack_to[w->n_acks++] = bi;
        return;
    }
    pay_request_t r = {.kind = PAY_KIND_CREDIT,
                       .actor = it.merchant,
                       .uid = it.buyer,
                       .payment_id = it.payment_id,
                       .amount = it.amount,
                       .currency = it.currency,
                       .peer_cell = bi + 1};
    pay_object_t o = apply(m, &r);
    w->stats[3][o.code]++;
    m_order_t *x = m_order(m, it.payment_id);
    assert_non_null(x);
    expect(&o, PAY_KIND_CREDIT, x->state == 3 ? PAY_OK : PAY_CREATED, "credit");
    if (o.code == PAY_CREATED) {
        int c = cur_ix(it.currency);
        m->recv[it.merchant][c] += it.amount;
        m->clearing[c] -= it.amount;
        if (x->state == 2 && !m->held[x->merchant][x->otn]) {
            m->held[x->merchant][x->otn] = 2;
            x->holds = true;
        }
        x->state = 3;
    }
    if ((lossy && prng_below(g, 8) == 0) || w->n_acks >= MAXM) return; /* the ack is lost */
    w->acks[w->n_acks] = it.payment_id;
    w->ack_to[w->n_acks++] = bi;
}

static void relay_ack(world_t *w, prng_t *g, bool lossy) {
    uint32_t i = (uint32_t)prng_below(g, w->n_acks);
    u128 id = w->acks[i];
    m_cell_t *b = &w->c[w->ack_to[i]];
    if (!lossy || prng_below(g, 4) != 0) {
        w->acks[i] = w->acks[w->n_acks - 1];
        w->ack_to[i] = w->ack_to[w->n_acks - 1];
        w->n_acks--;
    }
    pay_request_t r = {.kind = PAY_KIND_ACK, .uid = (uint64_t)(id >> 64), .payment_id = id};
    pay_object_t o = apply(b, &r);
    expect(&o, PAY_KIND_ACK, PAY_OK, "ack");
    m_xpay_t *x = m_xpay(b, id);
    m_act_t *a = x ? NULL : m_act(b, id);
    assert_true(x || (a && a->state >= 2));
    bool *acked_now = x ? &x->acked : &a->acked;
    if (*acked_now) return;
    *acked_now = true;
    if (a) a->state++; /* confirming -> confirmed, cancelling -> cancelled */
    b->outbox_unacked--;
    /* Reclaimed: the records from the head that are acknowledged. */
    for (uint64_t seq = b->outbox_seq - b->outbox_count + 1; b->outbox_count > 0; seq++) {
        bool acked = false;
        for (uint32_t j = 0; j < b->n_xpays; j++)
            if (b->xpays[j].seq == seq) acked = b->xpays[j].acked;
        for (uint32_t j = 0; j < b->n_acts; j++)
            if (b->acts[j].seq == seq && b->acts[j].state >= 2) acked = b->acts[j].acked;
        if (!acked) break;
        b->outbox_count--;
    }
}

/* ---- Refunds of cross-cell payments (TCC) ---- */

static void m_record(m_cell_t *b, m_act_t *a) {
    a->seq = ++b->outbox_seq;
    a->acked = false;
    b->outbox_count++;
    b->outbox_unacked++;
}

/* The key of the refund answered trying now answers the decision (kind, code, id). */
static void m_key_decided(m_cell_t *b, const m_act_t *a, uint8_t code, u128 id) {
    for (uint32_t i = 0; i < b->n_keys; i++)
        if (b->keys[i].kind == PAY_KIND_REFUND && b->keys[i].code == PAY_TRYING &&
            b->keys[i].id == a->id) {
            b->keys[i].code = code;
            b->keys[i].id = id;
        }
}

/* A branch step (try, confirm, cancel) applied to the merchant's cell mi, against the model. */
static pay_object_t branch_step(world_t *w, uint32_t mi, const pay_request_t *r) {
    m_cell_t *m = &w->c[mi];
    pay_object_t o = apply(m, r);
    w->stats[r->kind == PAY_KIND_TRY ? 6 : 8][o.code]++;
    m_branch_t *br = m_branch(m, r->payment_id);
    int c = cur_ix(r->currency);
    u128 *recv = &m->recv[r->actor][c], *pend = &m->pend[r->actor][c];
    uint8_t code = PAY_OK;
    if (r->kind == PAY_KIND_TRY) {
        if (br) {
            code = br->state == 2 ? br->code : br->state == 4 ? PAY_ERR_CANCELLED : PAY_OK;
        } else {
            assert_true(m->n_branches < CAP);
            br = &m->branches[m->n_branches++];
            *br = (m_branch_t){.id = r->payment_id, .amount = r->amount, .state = 1};
            if (*recv - *pend >= r->amount) {
                code = PAY_CREATED;
                *pend += r->amount;
            } else {
                code = br->code = PAY_ERR_INSUFFICIENT_FUNDS;
                br->state = 2;
            }
        }
    } else if (r->kind == PAY_KIND_CONFIRM) {
        code = !br              ? PAY_ERR_NOT_FOUND
               : br->state == 3 ? PAY_OK
               : br->state == 1 ? PAY_CREATED
                                : PAY_ERR_CANCELLED;
        if (code == PAY_CREATED) {
            *pend -= r->amount;
            *recv -= r->amount;
            m->clearing[c] += r->amount;
            br->state = 3;
        }
    } else {
        if (!br) {
            assert_true(m->n_branches < CAP);
            br = &m->branches[m->n_branches++];
            *br = (m_branch_t){.id = r->payment_id, .amount = r->amount, .state = 4};
            code = PAY_CREATED;
        } else {
            code = br->state == 4 ? PAY_OK : br->state == 3 ? PAY_ERR_INVALID : PAY_CREATED;
            if (br->state == 1) *pend -= r->amount;
            if (code == PAY_CREATED) br->state = 4;
        }
    }
    bool error = code != PAY_OK && code != PAY_CREATED;
    expect(&o, r->kind, code, "branch step");
    if (!error) assert_true(o.id == r->payment_id && o.amount == r->amount);
    return o;
}

/* The decision on activity R in the buyer's cell bi, against the model. */
static pay_object_t gw_decide(world_t *w, uint32_t bi, u128 id, uint8_t code) {
    m_cell_t *b = &w->c[bi];
    m_act_t *a = m_act(b, id);
    assert_non_null(a);
    pay_request_t r = {
        .kind = PAY_KIND_DECIDE, .uid = (uint64_t)(id >> 64), .payment_id = id, .code = code};
    pay_object_t o = apply(b, &r);
    w->stats[7][o.code]++;
    if (a->state == 1 && b->outbox_count >= OUTBOX) {
        expect(&o, PAY_KIND_DECIDE, PAY_ERR_FULL, "decide");
        return o;
    }
    if (a->state == 1) {
        m_xpay_t *x = m_xpay(b, a->pay_id);
        int c = cur_ix(a->cur);
        if (code == PAY_OK) {
            b->bal[a->buyer][c] += a->amount;
            b->clearing[c] -= a->amount;
            a->state = 2;
            m_key_decided(b, a, PAY_CREATED, a->id);
        } else {
            x->refunded -= a->amount;
            a->state = 4;
            a->code = code;
            m_key_decided(b, a, code, 0);
        }
        m_record(b, a);
    }
    bool confirmed = a->state == 2 || a->state == 3;
    expect(&o, PAY_KIND_REFUND, confirmed ? PAY_CREATED : a->code, "decide");
    if (confirmed) assert_true(o.id == a->id && o.amount == a->amount);
    return o;
}

/* The buyer's cell's recovery: activities trying for older_than are decided cancelled. */
static void recovery(world_t *w, uint32_t bi, uint64_t older_than) {
    m_cell_t *b = &w->c[bi];
    u128 got[CAP];
    uint32_t n = pay_activities_stale(b->f.pay, b->f.clock, older_than, got, CAP);
    uint32_t j = 0;
    for (uint32_t i = 0; i < b->n_acts; i++) {
        const m_act_t *a = &b->acts[i];
        if (a->state != 1 || b->f.clock - a->created < older_than) continue;
        assert_true(j < n && got[j] == a->id);
        j++;
    }
    assert_int_equal(n, j);
    for (uint32_t i = 0; i < n; i++) gw_decide(w, bi, got[i], PAY_ERR_CANCELLED);
}

/* The gateway after the refund answered trying: Try, then decide; it may die between steps,
 * an answer may be lost (the step is sent again), the Try may be delayed (in flight). */
static void gw_try_decide(world_t *w, uint32_t bi, const m_act_t *a, prng_t *g) {
    pay_request_t t = {.kind = PAY_KIND_TRY,
                       .actor = a->merchant,
                       .uid = a->buyer,
                       .payment_id = a->id,
                       .amount = a->amount,
                       .currency = a->cur,
                       .peer_cell = bi + 1};
    if (prng_below(g, 8) == 0 && w->n_tries < MAXM) { /* delayed; the gateway gives up */
        w->tries[w->n_tries] = t;
        w->try_to[w->n_tries++] = 1 - bi;
        return;
    }
    pay_object_t o = branch_step(w, 1 - bi, &t);
    if (prng_below(g, 6) == 0) o = branch_step(w, 1 - bi, &t); /* the answer was lost */
    if (prng_below(g, 10) == 0) return;                        /* died */
    uint8_t code = o.code == PAY_CREATED ? PAY_OK : o.code;
    u128 id = a->id;
    gw_decide(w, bi, id, code);
    if (prng_below(g, 6) == 0) gw_decide(w, bi, id, code);
}

static bool orn_held(const m_cell_t *b, u128 pay_id, uint32_t orn) {
    for (uint32_t i = 0; i < b->n_acts; i++) {
        const m_act_t *a = &b->acts[i];
        if (a->pay_id == pay_id && a->orn == orn && a->state <= 3) return true;
    }
    return false;
}

/* A refund of a cross-cell payment through the gateway (a client's, maybe a repeat). */
static void gw_refund(world_t *w, const m_rclient_t *rc, prng_t *g) {
    m_cell_t *b = &w->c[rc->bi];
    pay_request_t r = {.kind = PAY_KIND_REFUND,
                       .actor = rc->actor,
                       .payment_id = rc->pay_id,
                       .amount = rc->amount,
                       .idem_key = rc->key,
                       .body_hash = rc->key * 3 + 1,
                       .peer_cell = 2 - rc->bi};
    snprintf(r.text, sizeof r.text, "q%u", rc->orn);
    uint64_t clock = b->f.clock;
    pay_object_t o = apply(b, &r);
    w->stats[5][o.code]++;
    const m_key_t *k = m_key(b, rc->actor, rc->key);
    if (k) {
        expect(&o, k->kind, k->code, "refund replay");
        assert_true(o.replayed == 1 && o.id == k->id);
    } else {
        m_xpay_t *x = m_xpay(b, rc->pay_id);
        assert_non_null(x);
        uint8_t code = rc->actor != x->merchant               ? PAY_ERR_NOT_FOUND
                       : orn_held(b, x->id, rc->orn)          ? PAY_ERR_DUPLICATE_OUT_REQUEST_NO
                       : x->refunded + rc->amount > x->amount ? PAY_ERR_REFUND_EXCEEDS
                                                              : PAY_TRYING;
        expect(&o, PAY_KIND_REFUND, code, "refund");
        if (code == PAY_TRYING) {
            assert_true((uint64_t)(o.id >> 64) == x->buyer);
            assert_true((((uint64_t)o.id >> 40) & PAY_CELL_MAX) == b->cell);
            assert_true(o.peer_cell == 2 - rc->bi && m_act(b, o.id) == NULL && b->n_acts < CAP);
            b->acts[b->n_acts++] = (m_act_t){.id = o.id,
                                             .pay_id = x->id,
                                             .amount = rc->amount,
                                             .buyer = x->buyer,
                                             .merchant = x->merchant,
                                             .created = clock,
                                             .cur = x->cur,
                                             .orn = rc->orn,
                                             .state = 1};
            x->refunded += rc->amount;
        }
        m_key_add(b, rc->actor, rc->key, rc->key * 3 + 1, &o);
    }
    if (o.code != PAY_TRYING || prng_below(g, 10) == 0) return; /* answered, or died */
    gw_try_decide(w, rc->bi, m_act(b, o.id), g);
}

static void new_refund(world_t *w, prng_t *g) {
    uint32_t bi = (uint32_t)prng_below(g, 2);
    m_cell_t *b = &w->c[bi];
    if (!b->n_xpays || w->n_rclients >= CAP) return;
    const m_xpay_t *x = &b->xpays[prng_below(g, b->n_xpays)];
    m_rclient_t *rc = &w->rclients[w->n_rclients++];
    *rc = (m_rclient_t){.bi = bi,
                        .pay_id = x->id,
                        .amount = 1 + prng_below(g, (uint64_t)x->amount),
                        .key = ++w->key_next,
                        .actor = prng_below(g, 20) == 0 ? x->merchant ^ 1 : x->merchant,
                        .orn = (uint32_t)prng_below(g, N_ORN)};
    if (prng_below(g, 3) == 0) rc->amount = 1 + prng_below(g, 1 + (uint64_t)x->amount / 4);
    gw_refund(w, rc, g);
}

/* A delayed Try arrives (maybe after its decision, maybe after the cancel's delivery). */
static void try_arrives(world_t *w, prng_t *g) {
    uint32_t i = (uint32_t)prng_below(g, w->n_tries);
    pay_request_t t = w->tries[i];
    uint32_t mi = w->try_to[i];
    w->tries[i] = w->tries[--w->n_tries];
    w->try_to[i] = w->try_to[w->n_tries];
    branch_step(w, mi, &t);
}

/* ---- The end: everything delivered, then the whole state against the model ---- */

static u128 position(const fx_t *f, u128 id) {
    ledger_account_t a;
    if (ledger_lookup_accounts(f->ledger, &id, 1, &a) != 1) return 0;
    return a.credits_posted - a.debits_posted;
}

static uint32_t m_trying(const m_cell_t *c) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->n_acts; i++) n += c->acts[i].state == 1;
    return n;
}

/* The relay and the recovery until nothing is in flight; then the delayed Tries arrive,
 * after their activities' cancels were delivered (anti-hanging), and so on. */
static void drain(world_t *w, prng_t *g) {
    for (uint32_t round = 0; round < 100; round++) {
        recovery(w, 0, 0);
        recovery(w, 1, 0);
        relay_fetch(w, 0, true);
        relay_fetch(w, 1, true);
        while (w->n_credits) relay_deliver(w, g, false);
        while (w->n_acks) relay_ack(w, g, false);
        for (int i = 0; i < 2; i++)
            assert_int_equal(pay_activities_trying(w->c[i].f.pay), m_trying(&w->c[i]));
        if (w->c[0].outbox_unacked || w->c[1].outbox_unacked || m_trying(&w->c[0]) ||
            m_trying(&w->c[1]))
            continue;
        if (!w->n_tries) return;
        while (w->n_tries) try_arrives(w, g);
    }
    fail_msg("the relay did not drain");
}

static uint32_t pending_open(const fx_t *f) {
    ledger_stats_t st;
    ledger_stats(f->ledger, &st);
    return st.pending_open;
}

/* Refunds at the end: every activity decided and delivered; confirmed ones are refunds of
 * their amount, cancelled ones are not; every payment's refunded is its confirmed ones' sum;
 * every branch of the merchant's cell is confirmed exactly when its activity is; nothing is
 * held pending. */
static void check_refunds(world_t *w, uint32_t ci) {
    m_cell_t *c = &w->c[ci], *peer = &w->c[1 - ci];
    assert_int_equal(pending_open(&c->f), 0);
    for (uint32_t r = 0; r < MAXU; r++)
        for (int k = 0; k < 2; k++) assert_true(c->pend[r][k] == 0);
    pay_object_t out[PAY_LIST_MAX + 2];
    for (uint32_t i = 0; i < c->n_acts; i++) {
        const m_act_t *a = &c->acts[i];
        assert_true(a->acked && (a->state == 3 || a->state == 5));
        pay_query_t q = {.kind = PAY_Q_REFUND, .id = a->id};
        assert_int_equal(fx_query(&c->f, &q, out), 1);
        assert_int_equal(out[0].code, a->state == 3 ? PAY_OK : PAY_ERR_NOT_FOUND);
        if (a->state == 3) assert_true(out[0].amount == a->amount);
        const m_branch_t *br = m_branch(peer, a->id);
        assert_true(a->state == 3 ? br && br->state == 3 : !br || br->state == 4);
    }
    for (uint32_t i = 0; i < c->n_xpays; i++) {
        pay_query_t q = {.kind = PAY_Q_PAYMENT, .id = c->xpays[i].id};
        assert_int_equal(fx_query(&c->f, &q, out), 1);
        assert_true(out[0].refunded == c->xpays[i].refunded);
    }
    for (uint32_t i = 0; i < c->n_branches; i++)
        assert_true(c->branches[i].state == 3 || c->branches[i].state == 4);
}

static void check_end(world_t *w) {
    u128 sum[2] = {0};
    for (uint32_t ci = 0; ci < 2; ci++) {
        m_cell_t *c = &w->c[ci], *peer = &w->c[1 - ci];
        assert_int_equal(pay_outbox_backlog(c->f.pay), 0);
        assert_null(ledger_check_invariants(c->f.ledger));
        for (uint64_t u = 10 * c->cell; u < 10 * c->cell + 10; u++)
            for (int k = 0; k < 2; k++) {
                if (c->acct[u][k]) assert_true(fx_balance(&c->f, u, CUR(k)) == c->bal[u][k]);
                u128 recv = position(&c->f, pay_account_id(u, PAY_ACCOUNT_MERCHANT, CUR(k)));
                assert_true(recv == c->recv[u][k]);
                sum[k] += c->bal[u][k] + c->recv[u][k];
            }
        for (int k = 0; k < 2; k++) {
            u128 mine = position(&c->f, pay_clearing_account_id(peer->cell, CUR(k)));
            u128 theirs = position(&peer->f, pay_clearing_account_id(c->cell, CUR(k)));
            assert_true(mine == c->clearing[k]);
            assert_true(mine + theirs == 0); /* netted out */
        }
        /* Every payment the buyer's cell made: credited once in the merchant's cell, which
         * holds exactly one credit leg for it; acknowledged here. */
        for (uint32_t i = 0; i < c->n_xpays; i++) {
            const m_xpay_t *x = &c->xpays[i];
            assert_true(x->acked);
            const m_order_t *o = m_order(peer, x->id);
            assert_true(o && o->state == 3);
            u128 leg = pay_leg_id(x->id);
            ledger_transfer_t t;
            assert_int_equal(ledger_lookup_transfers(peer->f.ledger, &leg, 1, &t), 1);
            assert_true(t.amount == x->amount && t.code == PAY_LEDGER_CODE_CREDIT &&
                        t.user_data_128 == x->id);
            pay_query_t q = {.kind = PAY_Q_PAYMENT, .id = x->id};
            pay_object_t out[PAY_LIST_MAX + 2];
            assert_int_equal(fx_query(&c->f, &q, out), 1);
            assert_true(out[0].code == PAY_OK && out[0].merchant_credit == 0 &&
                        out[0].peer_cell == peer->cell);
        }
        /* No credit without a payment: credited orders are the other cell's payments. */
        for (uint32_t i = 0; i < c->n_orders; i++)
            if (c->orders[i].state == 3) assert_non_null(m_xpay(peer, c->orders[i].id));
    }
    for (int k = 0; k < 2; k++) assert_true(sum[k] == w->topped[k]);
    check_refunds(w, 0);
    check_refunds(w, 1);
}

static void check_images(world_t *w) {
    for (uint32_t ci = 0; ci < 2; ci++) {
        fx_t *f = &w->c[ci].f;
        pay_image_header_t h;
        pay_image_header(f->pay, &h);
        assert_null(pay_image_check(&h, &f->config));
        ledger_region_t src[PAY_IMAGE_REGIONS], dst[PAY_IMAGE_REGIONS];
        uint32_t n = pay_image_regions(f->pay, &h, src);
        pay_t *copy = pay_create(&f->config);
        assert_int_equal(pay_image_restore_regions(copy, &h, dst), n);
        for (uint32_t i = 0; i < n; i++)
            if (src[i].size) memcpy(dst[i].ptr, src[i].ptr, src[i].size);
        const char *err = pay_image_finish(copy, &h);
        if (err) fail_msg("image: %s", err);
        assert_true(pay_state_hash(copy) == pay_state_hash(f->pay));
        pay_destroy(copy);
    }
}

/* The refunds' share of the steps. */
static void step_refund(world_t *w, prng_t *g, uint64_t c) {
    if (c < 112) return new_refund(w, g);
    if (c < 116 && w->n_rclients) /* a client retries: same key, same body */
        return gw_refund(w, &w->rclients[prng_below(g, w->n_rclients)], g);
    /* A few stay in flight to the end, when their cancels were delivered. */
    if (c < 119 && w->n_tries > 4) return try_arrives(w, g);
    if (c < 123) {
        uint32_t bi = (uint32_t)prng_below(g, 2);
        w->c[bi].f.clock += (1 + prng_below(g, 3)) * 1000000000ull;
        return recovery(w, bi, STALE_NS);
    }
    if (c == 124) check_images(w);
}

static void step(world_t *w, prng_t *g) {
    uint64_t c = prng_below(g, 125);
    if (c >= 100) return step_refund(w, g, c);
    if (c < 30) return new_client(w, g);
    if (c < 42 && w->n_clients) /* a client retries: same key, same body */
        return gw_request(w, &w->clients[prng_below(g, w->n_clients)], g);
    if (c < 50) return local_payment(w, g);
    if (c < 55) {
        uint64_t u = 10 * (1 + prng_below(g, 2)) + 2 + prng_below(g, 7);
        return topup(w, u, prng_below(g, 3) == 0, 1 + prng_below(g, 500));
    }
    if (c < 65) return relay_fetch(w, (uint32_t)prng_below(g, 2), prng_below(g, 8) == 0);
    if (c < 82 && w->n_credits) return relay_deliver(w, g, true);
    if (c < 99 && w->n_acks) return relay_ack(w, g, true);
    uint32_t mi = (uint32_t)prng_below(g, 2);
    m_cell_t *m = &w->c[mi];
    if (c == 99 && m->n_orders) { /* a release sent in error (or late) */
        static const uint8_t codes[] = {PAY_ERR_NOT_FOUND, PAY_ERR_INSUFFICIENT_FUNDS,
                                        PAY_ERR_CURRENCY_MISMATCH, PAY_ERR_OVERFLOW};
        gw_release(w, mi, &m->orders[prng_below(g, m->n_orders)], codes[prng_below(g, 4)]);
    }
}

static void run_seed(uint64_t seed) {
    printf("test_pay_xcell_random: seed %" PRIu64 " (CELLPAY_SEED=%" PRIu64 " replays it)\n", seed,
           seed);
    fflush(stdout);
    static world_t w;
    world_init(&w);
    prng_t g = {seed};
    for (uint64_t u = 12; u < 28; u++)
        if (is_user(u)) {
            topup(&w, u, 0, 1000);
            topup(&w, u, 1, 300);
        }
    for (uint32_t i = 0; i < N_STEPS; i++) step(&w, &g);
    drain(&w, &g);
    /* Refunds give buyers money back, and a full outbox answers before the balance: one
     * payment more than any buyer has, with the outbox empty, is refused for its funds. */
    m_client_t *cl = &w.clients[w.n_clients++];
    *cl = (m_client_t){.mcell = 0,
                       .merchant = 10,
                       .buyer = 22,
                       .amount = 1000000,
                       .cur = CUR(0),
                       .otn = N_OTN - 1,
                       .key = ++w.key_next};
    while (cl->otn > 0 && w.c[0].held[10][cl->otn]) cl->otn--;
    pay_object_t big = gw_order(&w, cl);
    expect(&big, PAY_KIND_ORDER, PAY_CREATED, "the big order");
    pay_object_t refused = gw_xpay(&w, m_order(&w.c[0], big.id), 0);
    expect(&refused, PAY_KIND_PAYMENT, PAY_ERR_INSUFFICIENT_FUNDS, "the big payment");
    gw_release(&w, 0, m_order(&w.c[0], big.id), PAY_ERR_INSUFFICIENT_FUNDS);
    drain(&w, &g);
    check_end(&w);
    check_images(&w);
    static const char *const what[9] = {
        "order",  "payment of an order", "local payment", "credit", "release", "refund", "try",
        "decide", "confirm or cancel"};
    for (int k = 0; k < 9; k++) {
        printf("  %s:", what[k]);
        for (int c = 0; c < PAY_CODE_COUNT; c++)
            if (w.stats[k][c]) printf(" %d:%u", c, w.stats[k][c]);
        printf("\n");
    }
    /* A seed that never met these tests little. */
    assert_true(w.stats[0][PAY_ERR_DUPLICATE_OUT_TRADE_NO] && w.stats[1][PAY_CREATED] &&
                w.stats[1][PAY_ERR_INSUFFICIENT_FUNDS] && w.stats[1][PAY_ERR_FULL] &&
                w.stats[3][PAY_OK] && w.stats[4][PAY_OK]);
    assert_true(w.stats[5][PAY_TRYING] && w.stats[5][PAY_ERR_DUPLICATE_OUT_REQUEST_NO] &&
                w.stats[6][PAY_CREATED] && w.stats[6][PAY_ERR_CANCELLED] &&
                w.stats[7][PAY_CREATED] && w.stats[7][PAY_ERR_CANCELLED] &&
                w.stats[8][PAY_CREATED] && w.stats[8][PAY_OK]);
    for (int i = 0; i < 2; i++) fx_free(&w.c[i].f);
}

static void test_random(void **state) {
    (void)state;
    const char *s = getenv("CELLPAY_SEED");
    if (s) {
        run_seed(strtoull(s, NULL, 10));
        return;
    }
    prng_t seeds = {(uint64_t)time(NULL)};
    for (int i = 0; i < 6; i++) run_seed(prng_next(&seeds));
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_random)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

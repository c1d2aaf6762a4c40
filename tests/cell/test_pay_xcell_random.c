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
 * CELLPAY_SEED=N replays one seed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "base/prng.h"
#include "pay_test_util.h"

#define N_STEPS 4000u
#define CAP 4096u
#define OUTBOX 10u /* small: back pressure happens */
#define N_OTN 150u
#define MAXU 30u /* uids 0..29 */
#define MAXM 64u /* messages in flight */

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
} m_xpay_t;

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
    uint32_t stats[5][PAY_CODE_COUNT]; /* order, payment of an order, local, credit, release */
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

/* A batch of the buyer's cell's unacknowledged records from the relay's cursor: the model's,
 * oldest first. A new relay (after a leader change: restart) starts over from the oldest. */
static void relay_fetch(world_t *w, uint32_t bi, bool restart) {
    m_cell_t *b = &w->c[bi];
    if (restart) w->from[bi] = 0;
    pay_outbox_item_t items[OUTBOX + 1];
    uint32_t n = pay_outbox_pending(b->f.pay, w->from[bi], items, OUTBOX + 1);
    assert_int_equal(pay_outbox_backlog(b->f.pay), b->outbox_unacked);
    uint32_t j = 0;
    for (uint32_t i = 0; i < b->n_xpays; i++) {
        const m_xpay_t *x = &b->xpays[i];
        if (x->acked || x->seq < w->from[bi]) continue;
        assert_true(j < n && items[j].payment_id == x->id && items[j].seq == x->seq &&
                    items[j].amount == x->amount && items[j].buyer == x->buyer &&
                    items[j].merchant == x->merchant && items[j].currency == x->cur &&
                    items[j].peer_cell == 2 - bi);
        j++;
    }
    assert_int_equal(n, j);
    if (n) w->from[bi] = items[n - 1].seq + 1;
    for (uint32_t i = 0; i < n && w->n_credits < MAXM; i++) {
        w->credits[w->n_credits] = items[i];
        w->credit_from[w->n_credits++] = bi;
    }
}

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
    assert_non_null(x);
    if (x->acked) return;
    x->acked = true;
    b->outbox_unacked--;
    /* Reclaimed: the records from the head that are acknowledged. */
    for (uint64_t seq = b->outbox_seq - b->outbox_count + 1; b->outbox_count > 0; seq++) {
        bool acked = false;
        for (uint32_t j = 0; j < b->n_xpays; j++)
            if (b->xpays[j].seq == seq) acked = b->xpays[j].acked;
        if (!acked) break;
        b->outbox_count--;
    }
}

/* ---- The end: everything delivered, then the whole state against the model ---- */

static u128 position(const fx_t *f, u128 id) {
    ledger_account_t a;
    if (ledger_lookup_accounts(f->ledger, &id, 1, &a) != 1) return 0;
    return a.credits_posted - a.debits_posted;
}

static void drain(world_t *w, prng_t *g) {
    for (uint32_t round = 0; round < 100; round++) {
        relay_fetch(w, 0, true);
        relay_fetch(w, 1, true);
        while (w->n_credits) relay_deliver(w, g, false);
        while (w->n_acks) relay_ack(w, g, false);
        if (w->c[0].outbox_unacked == 0 && w->c[1].outbox_unacked == 0) return;
    }
    fail_msg("the relay did not drain");
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
        assert_null(pay_image_finish(copy, &h));
        assert_true(pay_state_hash(copy) == pay_state_hash(f->pay));
        pay_destroy(copy);
    }
}

static void step(world_t *w, prng_t *g) {
    uint64_t c = prng_below(g, 100);
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
    check_end(&w);
    check_images(&w);
    static const char *const what[5] = {"order", "payment of an order", "local payment", "credit",
                                        "release"};
    for (int k = 0; k < 5; k++) {
        printf("  %s:", what[k]);
        for (int c = 0; c < PAY_CODE_COUNT; c++)
            if (w.stats[k][c]) printf(" %d:%u", c, w.stats[k][c]);
        printf("\n");
    }
    /* A seed that never met these tests little. */
    assert_true(w.stats[0][PAY_ERR_DUPLICATE_OUT_TRADE_NO] && w.stats[1][PAY_CREATED] &&
                w.stats[1][PAY_ERR_INSUFFICIENT_FUNDS] && w.stats[1][PAY_ERR_FULL] &&
                w.stats[3][PAY_OK] && w.stats[4][PAY_OK]);
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

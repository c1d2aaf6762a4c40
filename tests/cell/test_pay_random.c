/* The payments layer against a reference model: plain arrays and linear searches that follow
 * pay.h's rules the obvious way. Thousands of random requests per seed (valid and not, keyed
 * and not, replays, routing outside the cell's zones, amounts that overflow), every answer
 * compared byte for byte, the clock step by step, and at the end every balance, the sums
 * per currency, every payment, every list and an image round trip.
 * CELLPAY_SEED=N replays one seed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "base/prng.h"
#include "pay_test_util.h"

#define N_REQ 4000u
#define CAP 8192u
#define CELL 7u

typedef struct m_acct {
    uint64_t uid;
    uint32_t kind, cur;
    u128 credits, debits;
    uint64_t ts;
} m_acct_t;

typedef struct m_merchant {
    uint64_t uid;
    uint64_t created;
    uint8_t secret[PAY_SECRET_SIZE];
} m_merchant_t;

typedef struct m_idem {
    uint64_t actor;
    u128 key, body;
    uint64_t created;
    bool live;
    pay_object_t answer;
} m_idem_t;

typedef struct model {
    uint64_t clock, seq;
    m_merchant_t merchants[64];
    uint32_t n_merchants;
    uint64_t users[64];
    uint32_t n_users;
    m_acct_t accts[256];
    uint32_t n_accts;
    pay_object_t payments[CAP], refunds[CAP];
    uint32_t n_payments, n_refunds;
    m_idem_t idem[CAP];
    uint32_t n_idem;
} model_t;

static uint32_t EUR(void) {
    return pay_currency_pack("EUR");
}

static bool m_owns(uint64_t uid) {
    uint32_t z = (uint32_t)((uid / 10) % 100);
    return z == 1 || z == 2;
}

static m_acct_t *m_acct(model_t *m, uint64_t uid, uint32_t kind, uint32_t cur) {
    for (uint32_t i = 0; i < m->n_accts; i++)
        if (m->accts[i].uid == uid && m->accts[i].kind == kind && m->accts[i].cur == cur)
            return &m->accts[i];
    return NULL;
}

static m_acct_t *m_acct_add(model_t *m, uint64_t uid, uint32_t kind, uint32_t cur) {
    m->clock += 2;
    assert_true(m->n_accts < 256);
    m->accts[m->n_accts] = (m_acct_t){.uid = uid, .kind = kind, .cur = cur, .ts = m->clock};
    return &m->accts[m->n_accts++];
}

static bool m_user(const model_t *m, uint64_t uid) {
    for (uint32_t i = 0; i < m->n_users; i++)
        if (m->users[i] == uid) return true;
    return false;
}

static m_merchant_t *m_merchant(model_t *m, uint64_t uid) {
    for (uint32_t i = 0; i < m->n_merchants; i++)
        if (m->merchants[i].uid == uid) return &m->merchants[i];
    return NULL;
}

static pay_object_t err(uint8_t kind, pay_code_t code) {
    return (pay_object_t){.kind = kind, .code = (uint8_t)code};
}

/* The ledger's verdict on moving a from dr to cr (zeros when cr does not exist yet). */
static pay_code_t m_check(const m_acct_t *dr, const m_acct_t *cr, u128 a, bool constrained) {
    u128 t;
    if (!u128_add_checked(dr->debits, a, &t)) return PAY_ERR_OVERFLOW;
    if (cr && !u128_add_checked(cr->credits, a, &t)) return PAY_ERR_OVERFLOW;
    if (constrained && dr->debits + a > dr->credits) return PAY_ERR_INSUFFICIENT_FUNDS;
    return PAY_OK;
}

static u128 m_next_id(model_t *m, uint64_t uid) {
    m->clock += 2;
    m->seq++;
    return ((u128)uid << 64) | ((u128)CELL << 40) | m->seq;
}

static pay_object_t m_merchant_req(model_t *m, const pay_request_t *r) {
    if (m_merchant(m, r->uid)) return err(PAY_KIND_MERCHANT, PAY_ERR_MERCHANT_EXISTS);
    m_merchant_t *x = &m->merchants[m->n_merchants++];
    *x = (m_merchant_t){.uid = r->uid, .created = m->clock};
    memcpy(x->secret, r->secret, PAY_SECRET_SIZE);
    pay_object_t o = {.id = r->uid,
                      .uid = r->uid,
                      .created_at = m->clock / 1000000,
                      .kind = PAY_KIND_MERCHANT,
                      .code = PAY_CREATED};
    memcpy(o.secret, r->secret, PAY_SECRET_SIZE);
    return o;
}

static pay_object_t m_user_req(model_t *m, const pay_request_t *r) {
    m_acct_t *a = m_acct(m, r->uid, PAY_ACCOUNT_USER, r->currency);
    bool created = a == NULL;
    if (!a) a = m_acct_add(m, r->uid, PAY_ACCOUNT_USER, r->currency);
    if (!m_user(m, r->uid)) m->users[m->n_users++] = r->uid;
    return (pay_object_t){.id = pay_account_id(r->uid, PAY_ACCOUNT_USER, r->currency),
                          .uid = r->uid,
                          .created_at = a->ts / 1000000,
                          .currency = r->currency,
                          .kind = PAY_KIND_USER,
                          .code = created ? PAY_CREATED : PAY_OK};
}

static pay_object_t m_topup_req(model_t *m, const pay_request_t *r) {
    const uint8_t k = PAY_KIND_TOPUP;
    if (!m_user(m, r->uid)) return err(k, PAY_ERR_NOT_FOUND);
    m_acct_t *u = m_acct(m, r->uid, PAY_ACCOUNT_USER, r->currency);
    if (!u) return err(k, PAY_ERR_CURRENCY_MISMATCH);
    m_acct_t *bank = m_acct(m, PAY_SYSTEM_UID, PAY_ACCOUNT_BANK, r->currency);
    m_acct_t zero = {0};
    pay_code_t c = m_check(bank ? bank : &zero, u, r->amount, false);
    if (c != PAY_OK) return err(k, c);
    if (!bank) bank = m_acct_add(m, PAY_SYSTEM_UID, PAY_ACCOUNT_BANK, r->currency);
    u128 id = m_next_id(m, r->uid);
    bank->debits += r->amount;
    u->credits += r->amount;
    return (pay_object_t){.id = id,
                          .amount = r->amount,
                          .uid = r->uid,
                          .created_at = m->clock / 1000000,
                          .currency = r->currency,
                          .kind = k,
                          .code = PAY_CREATED};
}

static pay_object_t m_payment_req(model_t *m, const pay_request_t *r) {
    const uint8_t k = PAY_KIND_PAYMENT;
    if (!m_owns(r->actor)) return err(k, PAY_ERR_WRONG_CELL); /* a local payment, wrongly routed */
    if (!m_merchant(m, r->actor)) return err(k, PAY_ERR_NOT_FOUND);
    if (!m_user(m, r->uid)) return err(k, PAY_ERR_NOT_FOUND);
    m_acct_t *b = m_acct(m, r->uid, PAY_ACCOUNT_USER, r->currency);
    if (!b) return err(k, PAY_ERR_CURRENCY_MISMATCH);
    for (uint32_t i = 0; i < m->n_payments; i++)
        if (m->payments[i].merchant == r->actor && !memcmp(m->payments[i].text, r->text, 64))
            return err(k, PAY_ERR_DUPLICATE_OUT_TRADE_NO);
    m_acct_t *ma = m_acct(m, r->actor, PAY_ACCOUNT_MERCHANT, r->currency);
    pay_code_t c = m_check(b, ma, r->amount, true);
    if (c != PAY_OK) return err(k, c);
    if (!ma) ma = m_acct_add(m, r->actor, PAY_ACCOUNT_MERCHANT, r->currency);
    u128 id = m_next_id(m, r->uid);
    b->debits += r->amount;
    ma->credits += r->amount;
    pay_object_t o = {.id = id,
                      .amount = r->amount,
                      .uid = r->uid,
                      .merchant = r->actor,
                      .created_at = m->clock / 1000000,
                      .currency = r->currency,
                      .kind = k,
                      .code = PAY_OK};
    memcpy(o.text, r->text, 64);
    m->payments[m->n_payments++] = o;
    o.code = PAY_CREATED;
    return o;
}

static pay_object_t m_refund_req(model_t *m, const pay_request_t *r) {
    const uint8_t k = PAY_KIND_REFUND;
    pay_object_t *p = NULL;
    for (uint32_t i = 0; i < m->n_payments; i++)
        if (m->payments[i].id == r->payment_id) p = &m->payments[i];
    if (!p || p->merchant != r->actor) return err(k, PAY_ERR_NOT_FOUND);
    for (uint32_t i = 0; i < m->n_refunds; i++)
        if (m->refunds[i].payment_id == p->id && !memcmp(m->refunds[i].text, r->text, 64))
            return err(k, PAY_ERR_DUPLICATE_OUT_REQUEST_NO);
    if (r->amount > p->amount - p->refunded) return err(k, PAY_ERR_REFUND_EXCEEDS);
    m_acct_t *ma = m_acct(m, p->merchant, PAY_ACCOUNT_MERCHANT, p->currency);
    m_acct_t *b = m_acct(m, p->uid, PAY_ACCOUNT_USER, p->currency);
    pay_code_t c = m_check(ma, b, r->amount, true);
    if (c != PAY_OK) return err(k, c);
    u128 id = m_next_id(m, p->uid);
    ma->debits += r->amount;
    b->credits += r->amount;
    p->refunded += r->amount;
    pay_object_t o = {.id = id,
                      .amount = r->amount,
                      .payment_id = p->id,
                      .uid = p->uid,
                      .merchant = p->merchant,
                      .created_at = m->clock / 1000000,
                      .currency = p->currency,
                      .kind = k,
                      .code = PAY_OK};
    memcpy(o.text, r->text, 64);
    m->refunds[m->n_refunds++] = o;
    o.code = PAY_CREATED;
    return o;
}

static bool m_valid(const pay_request_t *r) {
    bool cur_ok = r->currency == CNY() || r->currency == USD() || r->currency == EUR();
    size_t len = strnlen(r->text, 64);
    for (size_t i = len; i < 64; i++)
        if (r->text[i]) return false;
    if (r->reserved[0] || r->kind < 1 || r->kind > 5) return false;
    if (r->kind >= PAY_KIND_TOPUP && r->amount == 0) return false;
    if (r->kind >= PAY_KIND_PAYMENT && len == 0) return false;
    switch (r->kind) {
    case PAY_KIND_MERCHANT: return r->uid != 0 && r->uid != PAY_SYSTEM_UID;
    case PAY_KIND_USER:
    case PAY_KIND_TOPUP: return r->uid != PAY_SYSTEM_UID && cur_ok;
    case PAY_KIND_PAYMENT:
        return r->actor != 0 && r->actor != PAY_SYSTEM_UID && r->uid != PAY_SYSTEM_UID && cur_ok &&
               r->funding <= 1;
    default: return r->actor != 0 && (uint64_t)(r->payment_id >> 64) != PAY_SYSTEM_UID;
    }
}

static pay_object_t m_apply(model_t *m, const pay_request_t *r) {
    if (!m_valid(r)) return err(r->kind, PAY_ERR_INVALID);
    uint64_t route = r->kind == PAY_KIND_REFUND ? (uint64_t)(r->payment_id >> 64) : r->uid;
    if (!m_owns(route)) return err(r->kind, PAY_ERR_WRONG_CELL);
    m_idem_t *hit = NULL;
    if (r->idem_key) {
        for (uint32_t i = 0; i < m->n_idem; i++)
            if (m->idem[i].live && m->idem[i].actor == r->actor && m->idem[i].key == r->idem_key &&
                m->clock - m->idem[i].created < PAY_IDEMPOTENCY_NS)
                hit = &m->idem[i];
        if (hit && hit->body != r->body_hash) return err(r->kind, PAY_ERR_IDEMPOTENCY_CONFLICT);
        if (hit) {
            pay_object_t o = hit->answer;
            o.replayed = 1;
            return o;
        }
    }
    uint64_t start = m->clock;
    pay_object_t o;
    switch (r->kind) {
    case PAY_KIND_MERCHANT: o = m_merchant_req(m, r); break;
    case PAY_KIND_USER: o = m_user_req(m, r); break;
    case PAY_KIND_TOPUP: o = m_topup_req(m, r); break;
    case PAY_KIND_PAYMENT: o = m_payment_req(m, r); break;
    default: o = m_refund_req(m, r); break;
    }
    if (r->idem_key && o.code != PAY_ERR_WRONG_CELL) { /* a wrong-cell refusal is not kept */
        for (uint32_t i = 0; i < m->n_idem; i++)
            if (m->idem[i].actor == r->actor && m->idem[i].key == r->idem_key)
                m->idem[i].live = false;
        assert_true(m->n_idem < CAP);
        m->idem[m->n_idem++] = (m_idem_t){.actor = r->actor,
                                          .key = r->idem_key,
                                          .body = r->body_hash,
                                          .created = start,
                                          .live = true,
                                          .answer = o};
    }
    return o;
}

/* ---- Random requests ---- */

static const uint64_t UIDS[] = {10, 11, 12, 13, 20, 21, 22, 30, 31, 0, PAY_SYSTEM_UID};

static uint64_t pick_uid(prng_t *g) {
    uint64_t i = prng_below(g, 100);
    if (i < 85) return UIDS[i % 7];
    if (i < 95) return UIDS[7 + i % 2];
    return UIDS[9 + i % 2];
}

static u128 pick_amount(prng_t *g) {
    uint64_t c = prng_below(g, 100);
    if (c < 2) return 0;
    if (c < 4) return U128_MAX - prng_below(g, 1000);
    return 1 + prng_below(g, c < 60 ? 50 : 400);
}

static pay_request_t random_request(prng_t *g, const model_t *m) {
    pay_request_t r = {0};
    uint64_t c = prng_below(g, 100);
    r.kind = c < 8    ? PAY_KIND_MERCHANT
             : c < 20 ? PAY_KIND_USER
             : c < 40 ? PAY_KIND_TOPUP
             : c < 75 ? PAY_KIND_PAYMENT
             : c < 99 ? PAY_KIND_REFUND
                      : (uint8_t[]){6, 7, 12}[prng_below(g, 3)]; /* objects-only, unknown */
    r.uid = pick_uid(g);
    r.actor = r.kind >= PAY_KIND_PAYMENT ? pick_uid(g) : prng_below(g, 4) == 0 ? pick_uid(g) : 0;
    uint64_t cc = prng_below(g, 20);
    r.currency = cc < 12 ? CNY() : cc < 18 ? USD() : cc == 18 ? EUR() : 0;
    r.amount = pick_amount(g);
    r.funding = prng_below(g, 50) == 0 ? 2 : 1;
    if (prng_below(g, 40) != 0)
        snprintf(r.text, 8, "t%u", (unsigned)prng_below(g, r.kind == PAY_KIND_PAYMENT ? 400 : 12));
    if (r.kind == PAY_KIND_MERCHANT) memset(r.secret, (int)prng_below(g, 256), PAY_SECRET_SIZE);
    if (r.kind == PAY_KIND_REFUND) {
        if (m->n_payments && prng_below(g, 10) < 8) {
            const pay_object_t *p = &m->payments[prng_below(g, m->n_payments)];
            r.payment_id = p->id;
            if (prng_below(g, 4)) r.actor = p->merchant;
        } else {
            r.payment_id = ((u128)pick_uid(g) << 64) | ((u128)CELL << 40) | prng_below(g, 50);
        }
    }
    if (prng_below(g, 100) == 0) r.reserved[0] = 1;
    if (prng_below(g, 2)) {
        r.idem_key = 1 + prng_below(g, 30);
        r.body_hash = 1 + prng_below(g, 2);
    }
    return r;
}

/* ---- Checks of the whole state against the model ---- */

static void check_state(fx_t *f, model_t *m) {
    u128 sum_c[3] = {0}, sum_d[3] = {0};
    for (uint32_t i = 0; i < m->n_accts; i++) {
        const m_acct_t *a = &m->accts[i];
        u128 id = pay_account_id(a->uid, (pay_account_kind_t)a->kind, a->cur);
        ledger_account_t la;
        assert_int_equal(ledger_lookup_accounts(f->ledger, &id, 1, &la), 1);
        assert_true(la.credits_posted == a->credits && la.debits_posted == a->debits);
        int c = a->cur == CNY() ? 0 : a->cur == USD() ? 1 : 2;
        sum_c[c] += la.credits_posted; /* mod 2^128: balances sum to zero */
        sum_d[c] += la.debits_posted;
    }
    for (int c = 0; c < 3; c++) assert_true(sum_c[c] == sum_d[c]);
    ledger_stats_t st;
    ledger_stats(f->ledger, &st);
    assert_int_equal(st.accounts, m->n_accts);
    assert_null(ledger_check_invariants(f->ledger));

    pay_object_t out[PAY_LIST_MAX + 2];
    for (uint32_t i = 0; i < m->n_payments; i++) {
        pay_query_t q = {.kind = PAY_Q_PAYMENT, .id = m->payments[i].id};
        assert_int_equal(fx_query(f, &q, out), 1);
        assert_memory_equal(&out[0], &m->payments[i], sizeof out[0]);
    }
    for (uint32_t i = 0; i < m->n_refunds; i++) {
        pay_query_t q = {.kind = PAY_Q_REFUND, .id = m->refunds[i].id};
        assert_int_equal(fx_query(f, &q, out), 1);
        assert_memory_equal(&out[0], &m->refunds[i], sizeof out[0]);
    }
    /* Each user's list, in pages of 7, newest first. */
    for (uint32_t u = 0; u < m->n_users; u++) {
        uint64_t uid = m->users[u];
        pay_query_t q = {.kind = PAY_Q_USER_PAYMENTS, .uid = uid, .limit = 7};
        int32_t i = (int32_t)m->n_payments - 1;
        for (;;) {
            uint32_t n = fx_query(f, &q, out);
            assert_int_equal(out[0].code, PAY_OK);
            uint32_t k = 1;
            for (; k < n && k <= 7; k++) {
                while (i >= 0 && m->payments[i].uid != uid) i--;
                assert_true(i >= 0);
                assert_memory_equal(&out[k], &m->payments[i], sizeof out[k]);
                i--;
            }
            if (n <= 8) break;
            q.after = out[7].id;
        }
        while (i >= 0 && m->payments[i].uid != uid) i--;
        assert_true(i < 0);
    }
}

static void check_image(fx_t *f) {
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

static void run_seed(uint64_t seed) {
    printf("test_pay_random: seed %" PRIu64 " (CELLPAY_SEED=%" PRIu64 " replays it)\n", seed, seed);
    fflush(stdout);
    prng_t g = {seed};
    fx_t f;
    pay_config_t pc = pay_test_config(CAP);
    pc.cell_id = CELL;
    cp_zones_add(&pc.zones, 1);
    cp_zones_add(&pc.zones, 2);
    fx_init(&f, &pc, CAP);
    model_t *m = calloc(1, sizeof *m);
    assert_non_null(m);
    m->clock = f.clock;
    pay_request_t recent[16];
    uint32_t n_recent = 0, codes[PAY_CODE_COUNT] = {0}, replays = 0;
    for (uint32_t i = 0; i < N_REQ; i++) {
        pay_request_t r;
        if (n_recent && prng_below(&g, 10) == 0)
            r = recent[prng_below(&g, n_recent < 16 ? n_recent : 16)];
        else
            r = random_request(&g, m);
        recent[n_recent++ % 16] = r;
        pay_object_t want = m_apply(m, &r);
        pay_object_t got = fx_apply(&f, &r);
        if (memcmp(&want, &got, sizeof got) != 0)
            fail_msg("request %u (kind %u): code %u, model %u", i, r.kind, got.code, want.code);
        assert_int_equal(f.clock, m->clock);
        codes[got.code < PAY_CODE_COUNT ? got.code : 0]++;
        replays += got.replayed;
        uint64_t step =
            prng_below(&g, 300) == 0 ? PAY_IDEMPOTENCY_NS / 3 : prng_below(&g, 1000000000);
        f.clock += step;
        m->clock += step;
    }
    check_state(&f, m);
    check_image(&f);
    /* What the seed exercised: a seed that hits only a few codes tests little. */
    printf("  codes:");
    for (uint32_t c = 0; c < PAY_CODE_COUNT; c++) printf(" %u", codes[c]);
    printf("; replays %u, payments %u, refunds %u\n", replays, m->n_payments, m->n_refunds);
    /* cross_cell answers only a refund of a cross-cell payment, which this one cell's
     * requests never make (tests of two cells do). */
    for (uint32_t c = 0; c < PAY_CODE_COUNT; c++)
        if (c != PAY_ERR_FULL && c != PAY_ERR_CROSS_CELL && c != PAY_TRYING &&
            c != PAY_ERR_CANCELLED)
            assert_true(codes[c] > 0);
    free(m);
    fx_free(&f);
}

static void test_random(void **state) {
    (void)state;
    const char *s = getenv("CELLPAY_SEED");
    if (s) {
        run_seed(strtoull(s, NULL, 10));
        return;
    }
    prng_t seeds = {(uint64_t)time(NULL)};
    for (int i = 0; i < 8; i++) run_seed(prng_next(&seeds));
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_random)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

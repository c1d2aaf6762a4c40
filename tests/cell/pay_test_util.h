/* Helpers of the payments tests: a pay state over a ledger, and request builders. */
#ifndef CP_PAY_TEST_UTIL_H
#define CP_PAY_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cell/pay.h"

typedef struct fx {
    pay_t *pay;
    ledger_t *ledger;
    uint64_t clock;
    pay_config_t config;
} fx_t;

static inline pay_config_t pay_test_config(uint32_t cap) {
    return (pay_config_t){.merchants_max = cap,
                          .users_max = cap,
                          .payments_max = cap,
                          .refunds_max = cap,
                          .topups_max = cap,
                          .idempotency_max = cap,
                          .orders_max = cap,
                          .outbox_max = cap,
                          .tcc_max = cap,
                          .cell_id = 7};
}

static inline void fx_init(fx_t *f, const pay_config_t *pc, uint32_t ledger_cap) {
    memset(f, 0, sizeof *f);
    f->config = *pc;
    f->pay = pay_create(pc);
    ledger_config_t lc = {.accounts_max = ledger_cap, .transfers_max = ledger_cap};
    f->ledger = ledger_create(&lc);
    f->clock = 1000000000ull; /* 1 s */
    assert_non_null(f->pay);
    assert_non_null(f->ledger);
}

static inline void fx_free(fx_t *f) {
    pay_destroy(f->pay);
    ledger_destroy(f->ledger);
}

static inline pay_object_t fx_apply(fx_t *f, const pay_request_t *r) {
    pay_object_t o;
    memset(&o, 0xAB, sizeof o); /* every byte must be written */
    pay_apply(f->pay, f->ledger, &f->clock, r, &o);
    return o;
}

static inline uint32_t CNY(void) {
    return pay_currency_pack("CNY");
}
static inline uint32_t USD(void) {
    return pay_currency_pack("USD");
}

static inline pay_request_t rq_merchant(uint64_t uid, uint8_t secret_byte) {
    pay_request_t r = {.kind = PAY_KIND_MERCHANT, .uid = uid};
    memset(r.secret, secret_byte, sizeof r.secret);
    return r;
}
static inline pay_request_t rq_user(uint64_t uid, uint32_t cur) {
    return (pay_request_t){.kind = PAY_KIND_USER, .uid = uid, .currency = cur};
}
static inline pay_request_t rq_topup(uint64_t uid, uint32_t cur, u128 amount) {
    return (pay_request_t){.kind = PAY_KIND_TOPUP, .uid = uid, .currency = cur, .amount = amount};
}
static inline pay_request_t rq_payment(uint64_t merchant, uint64_t buyer, uint32_t cur, u128 amount,
                                       const char *text) {
    pay_request_t r = {.kind = PAY_KIND_PAYMENT,
                       .actor = merchant,
                       .uid = buyer,
                       .currency = cur,
                       .amount = amount,
                       .funding = 1};
    strncpy(r.text, text, sizeof r.text);
    return r;
}
static inline pay_request_t rq_refund(uint64_t merchant, u128 payment, u128 amount,
                                      const char *text) {
    pay_request_t r = {
        .kind = PAY_KIND_REFUND, .actor = merchant, .payment_id = payment, .amount = amount};
    strncpy(r.text, text, sizeof r.text);
    return r;
}

static inline uint32_t fx_query(const fx_t *f, const pay_query_t *q, pay_object_t *out) {
    return pay_query(f->pay, f->ledger, q, out);
}

/* A user's available balance (asserting the query succeeds). */
static inline u128 fx_balance(const fx_t *f, uint64_t uid, uint32_t cur) {
    pay_query_t q = {.kind = PAY_Q_BALANCE, .uid = uid, .currency = cur};
    pay_object_t o[PAY_LIST_MAX + 2];
    assert_int_equal(fx_query(f, &q, o), 1);
    assert_int_equal(o[0].code, PAY_OK);
    return o[0].amount;
}

static inline void fx_assert_code(const pay_object_t *o, uint8_t kind, pay_code_t code) {
    assert_int_equal(o->code, code);
    assert_int_equal(o->kind, kind);
}

/* ---- Several cells (the cross-cell tests): shared so that each test builds them alike ---- */

/* A payments config for cell `cell` whose zone (by the default rule, uids cell*10 ..
 * cell*10+9) is its only one. */
static inline pay_config_t pay_test_cell_config(uint32_t cell, uint32_t cap) {
    pay_config_t pc = pay_test_config(cap);
    pc.cell_id = cell;
    cp_zones_add(&pc.zones, cell);
    return pc;
}

/* Applies r, asserting the answer's kind and code. */
static inline pay_object_t fx_ok(fx_t *f, const pay_request_t *r, uint8_t kind, pay_code_t code) {
    pay_object_t o = fx_apply(f, r);
    fx_assert_code(&o, kind, code);
    return o;
}

/* A ledger account (zeros when there is none). */
static inline ledger_account_t fx_account(const fx_t *f, u128 id) {
    ledger_account_t a = {0};
    ledger_lookup_accounts(f->ledger, &id, 1, &a);
    return a;
}

/* Credits minus debits posted (wrapping: a clearing position may be negative). */
static inline u128 fx_position(const fx_t *f, u128 id) {
    ledger_account_t a = fx_account(f, id);
    return a.credits_posted - a.debits_posted;
}

static inline uint32_t fx_pending_open(const fx_t *f) {
    ledger_stats_t st;
    ledger_stats(f->ledger, &st);
    return st.pending_open;
}

/* A relay's delivery was applied (now or before). */
static inline bool fx_delivered(uint8_t code) {
    return code == PAY_OK || code == PAY_CREATED;
}

/* A new payments state restored from f's image (header, regions, finish); *err is what
 * pay_image_finish() said. corrupt_offset, when not 0, flips a bit of that byte of the tcc
 * rows' region (the last one) first. */
static inline pay_t *fx_image_copy(const fx_t *f, const char **err, uint32_t corrupt_offset) {
    pay_image_header_t h;
    pay_image_header(f->pay, &h);
    assert_null(pay_image_check(&h, &f->config));
    ledger_region_t src[PAY_IMAGE_REGIONS], dst[PAY_IMAGE_REGIONS];
    uint32_t n = pay_image_regions(f->pay, &h, src);
    assert_int_equal(n, PAY_IMAGE_REGIONS);
    pay_t *to = pay_create(&f->config);
    assert_non_null(to);
    assert_int_equal(pay_image_restore_regions(to, &h, dst), n);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(src[i].size, dst[i].size);
        if (src[i].size) memcpy(dst[i].ptr, src[i].ptr, src[i].size);
    }
    if (corrupt_offset) ((unsigned char *)dst[n - 1].ptr)[corrupt_offset] ^= 1;
    *err = pay_image_finish(to, &h);
    return to;
}

/* The cell restarts: its payments state is replaced by its image's restoration (the same
 * state hash), the ledger kept as it is. */
static inline void fx_restart(fx_t *f) {
    const char *err = "unset";
    pay_t *copy = fx_image_copy(f, &err, 0);
    assert_null(err);
    assert_true(pay_state_hash(copy) == pay_state_hash(f->pay));
    pay_destroy(f->pay);
    f->pay = copy;
}

/* f's image restores to the same state: its hash, trying activities and outbox backlog. */
static inline void fx_assert_image_same(fx_t *f) {
    const char *err = "unset";
    pay_t *copy = fx_image_copy(f, &err, 0);
    assert_null(err);
    assert_true(pay_state_hash(copy) == pay_state_hash(f->pay));
    assert_int_equal(pay_activities_trying(copy), pay_activities_trying(f->pay));
    assert_int_equal(pay_outbox_backlog(copy), pay_outbox_backlog(f->pay));
    pay_destroy(copy);
}

/* A TCC activity's decision (id: R or T; its upper half is the initiator's user) and an ack
 * of an outbox record of id. */
static inline pay_request_t rq_decide(u128 id, pay_code_t code) {
    return (pay_request_t){.kind = PAY_KIND_DECIDE,
                           .uid = (uint64_t)(id >> 64),
                           .payment_id = id,
                           .code = (uint8_t)code};
}

static inline pay_request_t rq_ack(u128 id) {
    return (pay_request_t){.kind = PAY_KIND_ACK, .uid = (uint64_t)(id >> 64), .payment_id = id};
}

/* The relay's recovery in the initiator's cell f, as the relay does it: the clock moves on by
 * stale_ns, and every activity trying that long is decided cancelled (its decision, of kind
 * `kind`, answered cancelled). Returns how many. */
static inline uint32_t fx_recover(fx_t *f, uint64_t stale_ns, uint8_t kind) {
    f->clock += stale_ns;
    u128 stale[64];
    uint32_t n = pay_activities_stale(f->pay, f->clock, stale_ns, stale, 64);
    for (uint32_t i = 0; i < n; i++) {
        pay_request_t d = rq_decide(stale[i], PAY_ERR_CANCELLED);
        fx_ok(f, &d, kind, PAY_ERR_CANCELLED);
    }
    return n;
}

/* ---- The TCC crash-point table (test_pay_tcc.c: refunds; test_pay_transfer.c: transfers) ----
 * Each step of a TCC flow (the start in the initiator's cell: the refund or the transfer; the
 * Try in the participant's; the decide; the relay's delivery of the decision; its ack) with
 * each way it can go wrong. */

typedef enum tcc_step { S_START, S_TRY, S_DECIDE, S_DELIVER, S_ACK, S_COUNT } step_t;

typedef enum tcc_fault {
    F_NONE,
    F_REQ_LOST,
    F_ANS_LOST,
    F_REPEAT,
    F_DIE_BEFORE,
    F_DIE_AFTER,
    F_DELAYED, /* try only: in flight until after the cancel reached the participant */
    F_RESTART, /* the cell that applied the step restarts from its image right after */
} fault_t;

typedef struct crash {
    step_t step;
    fault_t fault;
} crash_t;

/* The rows; *n gets how many. */
static inline const crash_t *tcc_crash_points(size_t *n) {
    static const crash_t points[] = {
        {S_START, F_NONE},        {S_START, F_REQ_LOST},   {S_START, F_ANS_LOST},
        {S_START, F_REPEAT},      {S_START, F_DIE_BEFORE}, {S_START, F_DIE_AFTER},
        {S_TRY, F_REQ_LOST},      {S_TRY, F_ANS_LOST},     {S_TRY, F_REPEAT},
        {S_TRY, F_DIE_BEFORE},    {S_TRY, F_DIE_AFTER},    {S_TRY, F_DELAYED},
        {S_DECIDE, F_REQ_LOST},   {S_DECIDE, F_ANS_LOST},  {S_DECIDE, F_REPEAT},
        {S_DECIDE, F_DIE_BEFORE}, {S_DECIDE, F_DIE_AFTER}, {S_DELIVER, F_REQ_LOST},
        {S_DELIVER, F_ANS_LOST},  {S_DELIVER, F_REPEAT},   {S_ACK, F_REQ_LOST},
        {S_ACK, F_REPEAT},        {S_START, F_RESTART},    {S_TRY, F_RESTART},
        {S_DECIDE, F_RESTART},    {S_DELIVER, F_RESTART},  {S_ACK, F_RESTART},
    };
    *n = sizeof points / sizeof points[0];
    return points;
}

/* Sends r to f as the sender (the gateway) would with fault: the answer the sender ends up
 * with; *dead when the sender dies here (the answer is then meaningless). */
static inline pay_object_t tcc_send(fx_t *f, const pay_request_t *r, fault_t fault, bool *dead) {
    pay_object_t o = {0};
    switch (fault) {
    case F_DIE_BEFORE: *dead = true; return o;
    case F_DIE_AFTER: *dead = true; return fx_apply(f, r);
    case F_ANS_LOST: (void)fx_apply(f, r); return fx_apply(f, r);
    case F_RESTART:
        o = fx_apply(f, r);
        fx_restart(f);
        return o;
    case F_REPEAT: {
        o = fx_apply(f, r);
        pay_object_t again = fx_apply(f, r);
        assert_int_equal(again.code == PAY_CREATED ? PAY_OK : again.code,
                         o.code == PAY_CREATED ? PAY_OK : o.code);
        return o;
    }
    default: return fx_apply(f, r); /* none; request lost: the retry is the one applied */
    }
}

#endif

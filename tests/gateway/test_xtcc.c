/* The gateway's steps of a cross-cell refund or transfer without a network
 * (src/gateway/xtcc.h): which refunds and transfers are cross-cell, the Try and decide sent,
 * and where every answer of the participant's and the initiator's cell leads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "client/client.h"
#include "gateway/xtcc.h"

#define BUYER 200300ull
#define MERCHANT 100030ull
#define CELL_B 2u
#define CELL_M 1u
#define CNY 0x594e43u

static u128 object_id(uint64_t uid, uint32_t cell, uint64_t seq) {
    return ((u128)uid << 64) | ((u128)cell << 40) | seq;
}

/* The buyer's cell's trying answer for refund R = (BUYER, CELL_B, 9). */
static pay_object_t trying(void) {
    pay_object_t o = {.id = object_id(BUYER, CELL_B, 9),
                      .amount = 40,
                      .payment_id = object_id(BUYER, CELL_M, 3),
                      .uid = BUYER,
                      .merchant = MERCHANT,
                      .created_at = 5,
                      .currency = CNY,
                      .kind = PAY_KIND_REFUND,
                      .code = PAY_TRYING,
                      .peer_cell = CELL_M};
    strcpy(o.text, "r-1");
    return o;
}

static void test_id_cell_and_peer(void **state) {
    (void)state;
    assert_int_equal(xtcc_id_cell(object_id(BUYER, 7, 1)), 7);
    assert_int_equal(xtcc_id_cell(object_id(BUYER, PAY_CELL_MAX, (1ull << 40) - 1)), PAY_CELL_MAX);
    /* The leg bit (63) is not part of the cell. */
    assert_int_equal(xtcc_id_cell(pay_leg_id(object_id(BUYER, 7, 1))), 7);
    /* A cross-cell payment's id was drawn by the merchant's cell: that cell is named. */
    assert_int_equal(xtcc_refund_peer_cell(object_id(BUYER, CELL_M, 3), CELL_B), CELL_M);
    /* A local payment's id was drawn by the buyer's cell: nothing to name. */
    assert_int_equal(xtcc_refund_peer_cell(object_id(BUYER, CELL_B, 3), CELL_B), 0);
    /* Route table cell numbers are wider than an id's 23 bits: never taken as equal. */
    assert_int_equal(xtcc_refund_peer_cell(object_id(BUYER, 5, 3), 5ull | (1ull << 23)), 5);
}

static void test_trying(void **state) {
    (void)state;
    pay_object_t o = trying();
    assert_true(xtcc_trying(0, &o, 1));
    o.replayed = 1; /* the key's answer from a gateway that stopped mid-way */
    assert_true(xtcc_trying(0, &o, 1));
    assert_false(xtcc_trying(CLIENT_ERR_TIMEOUT, &o, 1));
    assert_false(xtcc_trying(0, &o, 0));
    o.code = PAY_CREATED; /* decided before: the client's answer as it is */
    assert_false(xtcc_trying(0, &o, 1));
    o = (pay_object_t){.kind = PAY_KIND_REFUND, .code = PAY_ERR_CANCELLED};
    assert_false(xtcc_trying(0, &o, 1));
}

static void test_try_build(void **state) {
    (void)state;
    pay_object_t o = trying();
    pay_request_t q;
    memset(&q, 0xff, sizeof q);
    assert_true(xtcc_try_build(&o, &q));
    pay_request_t want = {.kind = PAY_KIND_TRY,
                          .payment_id = o.id,
                          .actor = MERCHANT,
                          .uid = BUYER,
                          .amount = 40,
                          .currency = CNY,
                          .peer_cell = CELL_B};
    /* Every other byte zero: no key (a Try is idempotent by R), no text, no reserved. */
    assert_memory_equal(&q, &want, sizeof q);
    pay_object_t bad = trying();
    bad.uid = BUYER + 1; /* R is not the buyer's */
    assert_false(xtcc_try_build(&bad, &q));
    bad = trying();
    bad.peer_cell = CELL_B; /* R drawn by the merchant's cell */
    assert_false(xtcc_try_build(&bad, &q));
    bad = trying();
    bad.amount = 0;
    assert_false(xtcc_try_build(&bad, &q));
}

static void test_decision(void **state) {
    (void)state;
    const pay_request_t rtry = {.kind = PAY_KIND_TRY, .tcc_type = PAY_TCC_REFUND};
    pay_object_t a = {.kind = PAY_KIND_TRY, .code = PAY_CREATED};
    assert_int_equal(xtcc_decision(&rtry, 0, &a, 1), PAY_OK);
    a.code = PAY_OK; /* a repeat of a tried branch */
    assert_int_equal(xtcc_decision(&rtry, 0, &a, 1), PAY_OK);
    /* The branch's refusals reach the client. */
    uint8_t refusals[] = {PAY_ERR_INSUFFICIENT_FUNDS, PAY_ERR_OVERFLOW, PAY_ERR_CANCELLED};
    for (size_t i = 0; i < sizeof refusals; i++) {
        a.code = refusals[i];
        assert_int_equal(xtcc_decision(&rtry, 0, &a, 1), refusals[i]);
    }
    /* Anything else: the gateway gives up, with cancelled. */
    uint8_t others[] = {PAY_ERR_FULL, PAY_ERR_WRONG_CELL, PAY_ERR_INVALID, PAY_ERR_NOT_FOUND};
    for (size_t i = 0; i < sizeof others; i++) {
        a.code = others[i];
        assert_int_equal(xtcc_decision(&rtry, 0, &a, 1), PAY_ERR_CANCELLED);
    }
    a.code = PAY_CREATED;
    assert_int_equal(xtcc_decision(&rtry, CLIENT_ERR_TIMEOUT, &a, 1), PAY_ERR_CANCELLED);
    assert_int_equal(xtcc_decision(&rtry, CLIENT_ERR_UNREACHABLE, &a, 0), PAY_ERR_CANCELLED);
    assert_int_equal(xtcc_decision(&rtry, 0, &a, 2), PAY_ERR_CANCELLED);
    a.kind = PAY_KIND_REFUND; /* not an answer to a Try */
    assert_int_equal(xtcc_decision(&rtry, 0, &a, 1), PAY_ERR_CANCELLED);
}

static void test_decide_build(void **state) {
    (void)state;
    pay_object_t o = trying();
    pay_request_t t, d;
    assert_true(xtcc_try_build(&o, &t));
    memset(&d, 0xff, sizeof d);
    xtcc_decide_build(&t, PAY_OK, &d);
    pay_request_t want = {
        .kind = PAY_KIND_DECIDE, .payment_id = o.id, .uid = BUYER, .code = PAY_OK};
    assert_memory_equal(&d, &want, sizeof d); /* actor 0, no amount, no peer_cell */
    /* From a decide (a confirm turned into a cancel), in place. */
    xtcc_decide_build(&d, PAY_ERR_OVERFLOW, &d);
    want.code = PAY_ERR_OVERFLOW;
    assert_memory_equal(&d, &want, sizeof d);
}

static void test_after_decide(void **state) {
    (void)state;
    uint8_t code = 0;
    pay_object_t r = {.kind = PAY_KIND_REFUND, .code = PAY_CREATED};
    assert_int_equal(xtcc_after_decide(PAY_TCC_REFUND, 0, &r, 1, PAY_OK, &code), XTCC_ANSWER);
    /* The decision that won (the recovery's cancel, say), whatever was asked. */
    r.code = PAY_ERR_CANCELLED;
    assert_int_equal(xtcc_after_decide(PAY_TCC_REFUND, 0, &r, 1, PAY_OK, &code), XTCC_ANSWER);
    r.code = PAY_ERR_INSUFFICIENT_FUNDS;
    assert_int_equal(xtcc_after_decide(PAY_TCC_REFUND, 0, &r, 1, PAY_ERR_INSUFFICIENT_FUNDS, &code),
                     XTCC_ANSWER);
    r.code = PAY_TRYING; /* never a decision */
    assert_int_equal(xtcc_after_decide(PAY_TCC_REFUND, 0, &r, 1, PAY_OK, &code), XTCC_RETRY);
    /* The decide's own failures: no decision known. */
    pay_object_t d = {.kind = PAY_KIND_DECIDE, .code = PAY_ERR_FULL};
    assert_int_equal(xtcc_after_decide(PAY_TCC_REFUND, 0, &d, 1, PAY_OK, &code), XTCC_RETRY);
    d.code = PAY_ERR_NOT_FOUND;
    assert_int_equal(xtcc_after_decide(PAY_TCC_REFUND, 0, &d, 1, PAY_OK, &code), XTCC_RETRY);
    assert_int_equal(xtcc_after_decide(PAY_TCC_REFUND, CLIENT_ERR_TIMEOUT, &r, 1, PAY_OK, &code),
                     XTCC_RETRY);
    assert_int_equal(xtcc_after_decide(PAY_TCC_REFUND, 0, &r, 0, PAY_OK, &code), XTCC_RETRY);
    /* A confirm the buyer's balance cannot take changed nothing: cancel with overflow. */
    d.code = PAY_ERR_OVERFLOW;
    code = 0;
    assert_int_equal(xtcc_after_decide(PAY_TCC_REFUND, 0, &d, 1, PAY_OK, &code), XTCC_CANCEL);
    assert_int_equal(code, PAY_ERR_OVERFLOW);
    /* ... but a cancel that fails is not cancelled again in a loop. */
    assert_int_equal(xtcc_after_decide(PAY_TCC_REFUND, 0, &d, 1, PAY_ERR_OVERFLOW, &code),
                     XTCC_RETRY);
}

/* ---- Transfers: the sender's cell A initiates, the recipient's cell C takes the credit ---- */

#define SENDER 200040ull
#define RECIPIENT 200300ull
#define CELL_A 1u
#define CELL_C 2u

/* The sender's cell's trying answer for transfer T = (SENDER, CELL_A, 4). */
static pay_object_t transfer_trying(void) {
    return (pay_object_t){.id = object_id(SENDER, CELL_A, 4),
                          .amount = 250,
                          .uid = SENDER,
                          .created_at = 5,
                          .currency = CNY,
                          .kind = PAY_KIND_TRANSFER,
                          .code = PAY_TRYING,
                          .peer_cell = CELL_C,
                          .status = PAY_TRANSFER_TRYING,
                          .recipient = RECIPIENT};
}

static void test_transfer_peer_cell(void **state) {
    (void)state;
    assert_int_equal(xtcc_transfer_peer_cell(CELL_A, CELL_A), 0); /* local: one step */
    assert_int_equal(xtcc_transfer_peer_cell(CELL_A, CELL_C), CELL_C);
    /* A cell number no id can carry: not cross-cell (the cell then refuses it as it is). */
    assert_int_equal(xtcc_transfer_peer_cell(CELL_A, (uint64_t)PAY_CELL_MAX + 1), 0);
}

static void test_transfer_try(void **state) {
    (void)state;
    pay_object_t o = transfer_trying();
    assert_true(xtcc_trying(0, &o, 1));
    o.replayed = 1;
    assert_true(xtcc_trying(0, &o, 1));
    o.code = PAY_CREATED; /* decided: the client's answer */
    assert_false(xtcc_trying(0, &o, 1));
    o = transfer_trying();
    pay_request_t q;
    memset(&q, 0xff, sizeof q);
    assert_true(xtcc_try_build(&o, &q));
    pay_request_t want = {.kind = PAY_KIND_TRY,
                          .payment_id = o.id,
                          .uid = SENDER,
                          .amount = 250,
                          .currency = CNY,
                          .peer_cell = CELL_A,
                          .tcc_type = PAY_TCC_TRANSFER,
                          .recipient = RECIPIENT};
    assert_memory_equal(&q, &want, sizeof q);               /* actor 0: the operator's */
    assert_int_equal(pay_request_route_uid(&q), RECIPIENT); /* to the recipient's cell */
    pay_object_t bad = transfer_trying();
    bad.recipient = 0;
    assert_false(xtcc_try_build(&bad, &q));
    bad = transfer_trying();
    bad.uid = SENDER + 1; /* T is not the sender's */
    assert_false(xtcc_try_build(&bad, &q));
    bad = transfer_trying();
    bad.peer_cell = CELL_A; /* T drawn by the recipient's cell */
    assert_false(xtcc_try_build(&bad, &q));
    /* The decide goes back to the sender's cell with T. */
    pay_request_t d;
    xtcc_decide_build(&want, PAY_OK, &d);
    pay_request_t want_d = {
        .kind = PAY_KIND_DECIDE, .payment_id = o.id, .uid = SENDER, .code = PAY_OK};
    assert_memory_equal(&d, &want_d, sizeof d);
    assert_int_equal(pay_request_route_uid(&d), SENDER);
}

static void test_transfer_decision(void **state) {
    (void)state;
    const pay_request_t ttry = {.kind = PAY_KIND_TRY, .tcc_type = PAY_TCC_TRANSFER};
    const pay_request_t rtry = {.kind = PAY_KIND_TRY, .tcc_type = PAY_TCC_REFUND};
    pay_object_t a = {.kind = PAY_KIND_TRY, .code = PAY_CREATED};
    assert_int_equal(xtcc_decision(&ttry, 0, &a, 1), PAY_OK);
    a.code = PAY_OK;
    assert_int_equal(xtcc_decision(&ttry, 0, &a, 1), PAY_OK);
    /* A transfer branch's refusals (pay.h) are the decision; the sender's cell takes only
     * those (and cancelled) for a transfer. */
    uint8_t refusals[] = {PAY_ERR_NOT_FOUND, PAY_ERR_CURRENCY_MISMATCH, PAY_ERR_OVERFLOW,
                          PAY_ERR_CANCELLED};
    for (size_t i = 0; i < sizeof refusals; i++) {
        a.code = refusals[i];
        assert_int_equal(xtcc_decision(&ttry, 0, &a, 1), refusals[i]);
    }
    /* A refund's refusal is not a transfer's, and the other way round. */
    a.code = PAY_ERR_INSUFFICIENT_FUNDS;
    assert_int_equal(xtcc_decision(&ttry, 0, &a, 1), PAY_ERR_CANCELLED);
    a.code = PAY_ERR_CURRENCY_MISMATCH;
    assert_int_equal(xtcc_decision(&rtry, 0, &a, 1), PAY_ERR_CANCELLED);
    uint8_t others[] = {PAY_ERR_FULL, PAY_ERR_WRONG_CELL, PAY_ERR_INVALID, PAY_TRYING};
    for (size_t i = 0; i < sizeof others; i++) {
        a.code = others[i];
        assert_int_equal(xtcc_decision(&ttry, 0, &a, 1), PAY_ERR_CANCELLED);
    }
    a.code = PAY_CREATED;
    assert_int_equal(xtcc_decision(&ttry, CLIENT_ERR_TIMEOUT, &a, 1), PAY_ERR_CANCELLED);
}

static void test_transfer_after_decide(void **state) {
    (void)state;
    uint8_t code = 0;
    pay_object_t t = {.kind = PAY_KIND_TRANSFER, .code = PAY_CREATED};
    assert_int_equal(xtcc_after_decide(PAY_TCC_TRANSFER, 0, &t, 1, PAY_OK, &code), XTCC_ANSWER);
    t.code = PAY_ERR_NOT_FOUND; /* cancelled with the Try's refusal */
    assert_int_equal(xtcc_after_decide(PAY_TCC_TRANSFER, 0, &t, 1, PAY_ERR_NOT_FOUND, &code),
                     XTCC_ANSWER);
    t.code = PAY_ERR_CANCELLED; /* the recovery's decision won */
    assert_int_equal(xtcc_after_decide(PAY_TCC_TRANSFER, 0, &t, 1, PAY_OK, &code), XTCC_ANSWER);
    /* Another activity's kind is no decision of this one. */
    assert_int_equal(xtcc_after_decide(PAY_TCC_REFUND, 0, &t, 1, PAY_OK, &code), XTCC_RETRY);
    pay_object_t r = {.kind = PAY_KIND_REFUND, .code = PAY_CREATED};
    assert_int_equal(xtcc_after_decide(PAY_TCC_TRANSFER, 0, &r, 1, PAY_OK, &code), XTCC_RETRY);
    pay_object_t d = {.kind = PAY_KIND_DECIDE, .code = PAY_ERR_FULL};
    assert_int_equal(xtcc_after_decide(PAY_TCC_TRANSFER, 0, &d, 1, PAY_OK, &code), XTCC_RETRY);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_cell_and_peer),   cmocka_unit_test(test_trying),
        cmocka_unit_test(test_try_build),          cmocka_unit_test(test_decision),
        cmocka_unit_test(test_decide_build),       cmocka_unit_test(test_after_decide),
        cmocka_unit_test(test_transfer_peer_cell), cmocka_unit_test(test_transfer_try),
        cmocka_unit_test(test_transfer_decision),  cmocka_unit_test(test_transfer_after_decide),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The gateway's steps of a cross-cell refund or transfer (xtcc.h), without the network. */
#include "gateway/xtcc.h"

#define XTCC_CELL_SHIFT 40u /* pay.h: the drawing cell is above the 40-bit sequence */

uint32_t xtcc_id_cell(u128 id) {
    return (uint32_t)(((uint64_t)id >> XTCC_CELL_SHIFT) & PAY_CELL_MAX);
}

uint32_t xtcc_refund_peer_cell(u128 payment_id, uint64_t buyer_cell) {
    uint32_t drew = xtcc_id_cell(payment_id);
    return drew != buyer_cell ? drew : 0;
}

uint32_t xtcc_transfer_peer_cell(uint64_t sender_cell, uint64_t recipient_cell) {
    /* A cell number the ids cannot carry would be refused by the cell as invalid anyway. */
    if (sender_cell == recipient_cell || recipient_cell > PAY_CELL_MAX) return 0;
    return (uint32_t)recipient_cell;
}

static bool one_answer(int32_t status, uint32_t count) {
    return status == 0 && count == 1;
}

/* The kind of an activity's object, and of its decision: the refund, or the transfer. */
static uint8_t activity_kind(uint8_t tcc_type) {
    return tcc_type == PAY_TCC_TRANSFER ? PAY_KIND_TRANSFER : PAY_KIND_REFUND;
}

bool xtcc_trying(int32_t status, const pay_object_t *reply, uint32_t count) {
    return one_answer(status, count) &&
           (reply->kind == PAY_KIND_REFUND || reply->kind == PAY_KIND_TRANSFER) &&
           reply->code == PAY_TRYING;
}

/* The activity is its initiator's (the id's upper half) and was drawn by the initiator's
 * cell, which is not the participant's: else the participant's cell would refuse the Try as
 * invalid anyway. */
static bool activity_fits(const pay_object_t *t, uint64_t party) {
    return (uint64_t)(t->id >> 64) == t->uid && xtcc_id_cell(t->id) != t->peer_cell && party != 0 &&
           t->amount != 0;
}

bool xtcc_try_build(const pay_object_t *t, pay_request_t *out) {
    bool transfer = t->kind == PAY_KIND_TRANSFER;
    if (!activity_fits(t, transfer ? t->recipient : t->merchant)) return false;
    *out = (pay_request_t){
        .kind = PAY_KIND_TRY,
        .payment_id = t->id,
        .actor = transfer ? 0 : t->merchant,
        .uid = t->uid,
        .amount = t->amount,
        .currency = t->currency,
        .peer_cell = xtcc_id_cell(t->id),
        .tcc_type = transfer ? PAY_TCC_TRANSFER : PAY_TCC_REFUND,
        .recipient = transfer ? t->recipient : 0,
    };
    return true;
}

/* The refusals the participant's cell records on a branch of this type (pay.h): final, so
 * the client hears them. */
static bool try_refusal(uint8_t tcc_type, uint8_t code) {
    if (code == PAY_ERR_CANCELLED || code == PAY_ERR_OVERFLOW) return true;
    if (tcc_type == PAY_TCC_TRANSFER)
        return code == PAY_ERR_NOT_FOUND || code == PAY_ERR_CURRENCY_MISMATCH;
    return code == PAY_ERR_INSUFFICIENT_FUNDS;
}

uint8_t xtcc_decision(const pay_request_t *try_req, int32_t status, const pay_object_t *reply,
                      uint32_t count) {
    if (!one_answer(status, count) || reply->kind != PAY_KIND_TRY) return PAY_ERR_CANCELLED;
    if (reply->code == PAY_CREATED || reply->code == PAY_OK) return PAY_OK;
    return try_refusal(try_req->tcc_type, reply->code) ? reply->code : PAY_ERR_CANCELLED;
}

void xtcc_decide_build(const pay_request_t *try_req, uint8_t code, pay_request_t *out) {
    *out = (pay_request_t){
        .kind = PAY_KIND_DECIDE,
        .payment_id = try_req->payment_id,
        .uid = try_req->uid,
        .code = code,
    };
}

xtcc_next_t xtcc_after_decide(uint8_t tcc_type, int32_t status, const pay_object_t *reply,
                              uint32_t count, uint8_t asked, uint8_t *cancel_code) {
    if (!one_answer(status, count)) return XTCC_RETRY;
    /* A decision (this one, or an earlier one that won: the first decide wins) is the
     * activity's object or its refusal, of the activity's kind; the decide's own failures are
     * kind DECIDE. */
    if (reply->kind == activity_kind(tcc_type) && reply->code != PAY_TRYING) return XTCC_ANSWER;
    if (reply->kind == PAY_KIND_DECIDE && reply->code == PAY_ERR_OVERFLOW && asked == PAY_OK) {
        *cancel_code = PAY_ERR_OVERFLOW;
        return XTCC_CANCEL;
    }
    return XTCC_RETRY;
}

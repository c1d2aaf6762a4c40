/* The gateway's steps of a cross-cell refund (xrefund.h), without the network. */
#include "gateway/xrefund.h"

#define XREFUND_CELL_SHIFT 40u /* pay.h: the drawing cell is above the 40-bit sequence */

uint32_t xrefund_id_cell(u128 id) {
    return (uint32_t)(((uint64_t)id >> XREFUND_CELL_SHIFT) & PAY_CELL_MAX);
}

uint32_t xrefund_peer_cell(u128 payment_id, uint64_t buyer_cell) {
    uint32_t drew = xrefund_id_cell(payment_id);
    return drew != buyer_cell ? drew : 0;
}

static bool one_answer(int32_t status, uint32_t count) {
    return status == 0 && count == 1;
}

bool xrefund_trying(int32_t status, const pay_object_t *reply, uint32_t count) {
    return one_answer(status, count) && reply->kind == PAY_KIND_REFUND && reply->code == PAY_TRYING;
}

bool xrefund_try_build(const pay_object_t *t, pay_request_t *out) {
    uint32_t buyer_cell = xrefund_id_cell(t->id);
    /* R is the buyer's (its upper half) and was drawn by the buyer's cell, which is not the
     * merchant's: else the merchant's cell would refuse the Try as invalid anyway. */
    if ((uint64_t)(t->id >> 64) != t->uid || buyer_cell == t->peer_cell || t->merchant == 0 ||
        t->amount == 0)
        return false;
    *out = (pay_request_t){
        .kind = PAY_KIND_TRY,
        .payment_id = t->id,
        .actor = t->merchant,
        .uid = t->uid,
        .amount = t->amount,
        .currency = t->currency,
        .peer_cell = buyer_cell,
    };
    return true;
}

uint8_t xrefund_decision(int32_t status, const pay_object_t *reply, uint32_t count) {
    if (!one_answer(status, count) || reply->kind != PAY_KIND_TRY) return PAY_ERR_CANCELLED;
    switch (reply->code) {
    case PAY_CREATED:
    case PAY_OK: return PAY_OK;
    /* The refusals the merchant's cell records for the branch: the client hears them. */
    case PAY_ERR_INSUFFICIENT_FUNDS:
    case PAY_ERR_OVERFLOW:
    case PAY_ERR_CANCELLED: return reply->code;
    }
    return PAY_ERR_CANCELLED;
}

void xrefund_decide_build(const pay_request_t *try_req, uint8_t code, pay_request_t *out) {
    *out = (pay_request_t){
        .kind = PAY_KIND_DECIDE,
        .payment_id = try_req->payment_id,
        .uid = try_req->uid,
        .code = code,
    };
}

xrefund_next_t xrefund_after_decide(int32_t status, const pay_object_t *reply, uint32_t count,
                                    uint8_t asked, uint8_t *cancel_code) {
    if (!one_answer(status, count)) return XREFUND_RETRY;
    /* A decision (this one, or an earlier one that won: the first decide wins) is a refund
     * object or its refusal, kind REFUND; the decide's own failures are kind DECIDE. */
    if (reply->kind == PAY_KIND_REFUND && reply->code != PAY_TRYING) return XREFUND_ANSWER;
    if (reply->kind == PAY_KIND_DECIDE && reply->code == PAY_ERR_OVERFLOW && asked == PAY_OK) {
        *cancel_code = PAY_ERR_OVERFLOW;
        return XREFUND_CANCEL;
    }
    return XREFUND_RETRY;
}

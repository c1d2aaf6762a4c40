/* The gateway's part of a refund of a cross-cell payment (TCC, docs/cross-cell.md), as pure
 * functions over the cells' items: which refunds are cross-cell, the Try and the decide the
 * gateway sends, and what each answer leads to. gateway.c drives the steps on its loop; the
 * unit tests call these directly. Nothing here allocates or does I/O.
 *
 * The steps: the refund goes to the buyer's cell B with peer_cell = the merchant's cell M and
 * is answered PAY_TRYING (an activity R holds the amount); the Try goes to M, which holds the
 * merchant's money; the decide goes to B, whose answer (the refund, or the refusal it was
 * cancelled with) is the client's. */
#ifndef CP_XREFUND_H
#define CP_XREFUND_H

#include <stdbool.h>
#include <stdint.h>

#include "base/u128.h"
#include "cell/pay.h"

/* The cell that drew an object id: bits 40..62 of its low half (pay.h "Object ids"). */
uint32_t xrefund_id_cell(u128 id);

/* The merchant's cell to name in the refund of payment_id, whose buyer's cell the route table
 * says is buyer_cell: the cell that drew the payment id when that is another cell (a
 * cross-cell payment's id is drawn by the merchant's cell), else 0 (a local payment). */
uint32_t xrefund_peer_cell(u128 payment_id, uint64_t buyer_cell);

/* Is the buyer's cell's answer to a refund (status: the client's, count items) the trying
 * answer of a cross-cell refund, fresh or replayed, so that the Try comes next? */
bool xrefund_trying(int32_t status, const pay_object_t *reply, uint32_t count);

/* The Try of the refund activity that the trying answer names, for the merchant's cell
 * (routed by out->actor). False when the answer does not name a refund of its buyer drawn by
 * another cell than the merchant's (a cell's bug: nothing is sent). */
bool xrefund_try_build(const pay_object_t *trying, pay_request_t *out);

/* The decision on the merchant's cell's answer to the Try: PAY_OK (confirm) when it holds the
 * money (created, or ok for a repeat); its refusal when it refused (insufficient_funds,
 * overflow, cancelled); else PAY_ERR_CANCELLED. The last is always safe: nothing moved yet,
 * and the Cancel voids a Try that did get through, or leaves an empty rollback that refuses a
 * late one. */
uint8_t xrefund_decision(int32_t status, const pay_object_t *reply, uint32_t count);

/* The decide of the Try's refund (try_req: what xrefund_try_build made) with code, for the
 * buyer's cell (routed by out->uid). */
void xrefund_decide_build(const pay_request_t *try_req, uint8_t code, pay_request_t *out);

/* What the buyer's cell's answer to a decide leads to. */
typedef enum xrefund_next {
    XREFUND_ANSWER = 1, /* the decision (the refund, or its refusal): the client's answer */
    XREFUND_CANCEL,     /* the confirm could not be done and changed nothing: cancel instead */
    XREFUND_RETRY,      /* no decision known: the client retries with the same key */
} xrefund_next_t;

/* asked: the decide's code. For XREFUND_CANCEL, *cancel_code is the code to decide with (a
 * confirm refused overflow: the buyer's balance cannot take the refund, which no retry
 * changes). */
xrefund_next_t xrefund_after_decide(int32_t status, const pay_object_t *reply, uint32_t count,
                                    uint8_t asked, uint8_t *cancel_code);

#endif

/* The gateway's part of the cross-cell TCC flows (docs/cross-cell.md): a refund of a
 * cross-cell payment and a user-to-user transfer across cells, as pure functions over the
 * cells' items: which refunds are cross-cell, the Try and the decide the gateway sends, and
 * what each answer leads to. gateway.c drives the steps on its loop; the unit tests call these
 * directly. Nothing here allocates or does I/O.
 *
 * The steps, the same for both: the request goes to the initiator's cell (a refund: the
 * buyer's cell B with peer_cell = the merchant's cell M; a transfer: the sender's cell A with
 * peer_cell = the recipient's cell C) and is answered PAY_TRYING (an activity holds the
 * amount); the Try goes to the participant's cell (M, which holds the merchant's money; C,
 * which holds the recipient's credit); the decide goes to the initiator's cell, whose answer
 * (the object, or the refusal it was cancelled with) is the client's. What differs is the
 * Try's fields, where it is routed (pay_request_route_uid: the merchant, the recipient) and
 * the refusals a Try of each type can give. */
#ifndef CP_XTCC_H
#define CP_XTCC_H

#include <stdbool.h>
#include <stdint.h>

#include "base/u128.h"
#include "cell/pay.h"

/* The cell that drew an object id: bits 40..62 of its low half (pay.h "Object ids"). */
uint32_t xtcc_id_cell(u128 id);

/* The merchant's cell to name in the refund of payment_id, whose buyer's cell the route table
 * says is buyer_cell: the cell that drew the payment id when that is another cell (a
 * cross-cell payment's id is drawn by the merchant's cell), else 0 (a local payment). */
uint32_t xtcc_refund_peer_cell(u128 payment_id, uint64_t buyer_cell);

/* The recipient's cell to name in a transfer, from the route table's cells of sender and
 * recipient: 0 when they are one cell (a local transfer), else the recipient's. */
uint32_t xtcc_transfer_peer_cell(uint64_t sender_cell, uint64_t recipient_cell);

/* Is the initiator's cell's answer to a refund or transfer (status: the client's, count
 * items) the trying answer of a cross-cell one, fresh or replayed, so that the Try comes
 * next? */
bool xtcc_trying(int32_t status, const pay_object_t *reply, uint32_t count);

/* The Try of the activity that the trying answer names, for the participant's cell (routed by
 * pay_request_route_uid(out)): a refund's (tcc_type refund, actor = the merchant) or a
 * transfer's (tcc_type transfer, recipient, actor 0). False when the answer does not name an
 * activity of its initiator (buyer, sender) drawn by another cell than the participant's (a
 * cell's bug: nothing is sent). */
bool xtcc_try_build(const pay_object_t *trying, pay_request_t *out);

/* The decision on the participant's cell's answer to the Try try_req: PAY_OK (confirm) when
 * it holds the money (created, or ok for a repeat); its refusal when it refused with one the
 * Try of that type records (a refund's: insufficient_funds, overflow; a transfer's:
 * not_found, currency_mismatch, overflow; either: cancelled); else PAY_ERR_CANCELLED. The
 * last is always safe: nothing moved in the participant's cell yet, and the Cancel voids a
 * Try that did get through, or leaves an empty rollback that refuses a late one. (The
 * initiator's cell refuses as invalid a decide whose refusal is not its type's.) */
uint8_t xtcc_decision(const pay_request_t *try_req, int32_t status, const pay_object_t *reply,
                      uint32_t count);

/* The decide of the Try's activity (try_req: what xtcc_try_build made) with code, for the
 * initiator's cell (routed by out->uid). Its tcc_type stays 0 (pay.h: a decide carries none);
 * the caller keeps the type (xtcc_after_decide). */
void xtcc_decide_build(const pay_request_t *try_req, uint8_t code, pay_request_t *out);

/* What the initiator's cell's answer to a decide leads to. */
typedef enum xtcc_next {
    XTCC_ANSWER = 1, /* the decision (the object, or its refusal): the client's answer */
    XTCC_CANCEL,     /* the confirm could not be done and changed nothing: cancel instead */
    XTCC_RETRY,      /* no decision known: the client retries with the same key */
} xtcc_next_t;

/* tcc_type: the activity's (pay_tcc_type_t); asked: the decide's code. For XTCC_CANCEL,
 * *cancel_code is the code to decide with (a refund's confirm refused overflow: the buyer's
 * balance cannot take the refund, which no retry changes). */
xtcc_next_t xtcc_after_decide(uint8_t tcc_type, int32_t status, const pay_object_t *reply,
                              uint32_t count, uint8_t asked, uint8_t *cancel_code);

#endif

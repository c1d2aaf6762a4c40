/* The parts of the payments wire format (pay.h) that both sides of the protocol use: currency
 * codes and the uid a request is routed by. Kept apart from the state machine (pay.c) so the
 * gateway links them without the cell's tables. */
#include <string.h>

#include "base/assert.h"
#include "cell/pay.h"

CP_STATIC_ASSERT(sizeof(pay_request_t) == 256, "pay_request_t is a 256-byte wire item");
CP_STATIC_ASSERT(sizeof(pay_object_t) == 256, "pay_object_t is a 256-byte wire item");
CP_STATIC_ASSERT(sizeof(pay_query_t) == 256, "pay_query_t is a 256-byte wire item");

uint32_t pay_currency_pack(const char code[3]) {
    uint32_t v = 0;
    for (uint32_t i = 0; i < 3; i++) {
        if (code[i] < 'A' || code[i] > 'Z') return 0;
        v |= (uint32_t)(unsigned char)code[i] << (8 * i);
    }
    return v;
}

void pay_currency_unpack(uint32_t currency, char out[4]) {
    for (uint32_t i = 0; i < 3; i++) out[i] = (char)((currency >> (8 * i)) & 0xff);
    out[3] = '\0';
}

/* Ids carry their owning user's uid in the upper 64 bits (pay.h). */
static uint64_t id_uid(u128 id) {
    return (uint64_t)(id >> 64);
}

uint64_t pay_request_route_uid(const pay_request_t *r) {
    switch (r->kind) {
    case PAY_KIND_REFUND: return id_uid(r->payment_id);
    /* The merchant's cell keeps its orders (docs/cross-cell.md). */
    case PAY_KIND_ORDER:
    case PAY_KIND_RELEASE:
    case PAY_KIND_CREDIT: return r->actor;
    /* The branches of cross-cell refunds are the merchant's, of transfers the recipient's. */
    case PAY_KIND_TRY:
    case PAY_KIND_CONFIRM:
    case PAY_KIND_CANCEL: return r->tcc_type == PAY_TCC_TRANSFER ? r->recipient : r->actor;
    }
    return r->uid;
}

uint64_t pay_query_route_uid(const pay_query_t *q) {
    return q->kind == PAY_Q_PAYMENT || q->kind == PAY_Q_REFUND || q->kind == PAY_Q_TRANSFER
               ? id_uid(q->id)
               : q->uid;
}

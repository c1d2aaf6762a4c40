/* Payments: answering reads (pay_query_t). Reads change nothing; a merchant sees only its
 * own payments and refunds, anything else is not_found to it (api-v1.md). */
#include <string.h>

#include "cell/pay_internal.h"

static uint32_t one(pay_object_t *out, uint8_t kind, pay_code_t code) {
    out[0] = (pay_object_t){.kind = kind, .code = (uint8_t)code};
    return 1;
}

static uint8_t object_kind(uint8_t q) {
    switch (q) {
    case PAY_Q_MERCHANT: return PAY_KIND_MERCHANT;
    case PAY_Q_PAYMENT: return PAY_KIND_PAYMENT;
    case PAY_Q_REFUND: return PAY_KIND_REFUND;
    case PAY_Q_BALANCE: return PAY_KIND_BALANCE;
    case PAY_Q_USER_PAYMENTS: return PAY_KIND_LIST;
    case PAY_Q_USER: return PAY_KIND_USER;
    case PAY_Q_TRANSFER: return PAY_KIND_TRANSFER;
    }
    return 0;
}

static bool query_valid(const pay_query_t *q) {
    if (!pay_zero(q->reserved, sizeof q->reserved)) return false;
    switch (q->kind) {
    case PAY_Q_MERCHANT:
    case PAY_Q_PAYMENT:
    case PAY_Q_REFUND:
    case PAY_Q_TRANSFER: return true;
    case PAY_Q_BALANCE:
    case PAY_Q_USER: return pay_currency_valid(q->currency);
    case PAY_Q_USER_PAYMENTS: return q->limit >= 1 && q->limit <= PAY_LIST_MAX;
    }
    return false;
}

static uint32_t query_merchant(const pay_t *p, const pay_query_t *q, pay_object_t *out) {
    uint32_t row = pay_find(&p->merchants_ix, q->uid);
    if (row == LINDEX_NONE) return one(out, PAY_KIND_MERCHANT, PAY_ERR_NOT_FOUND);
    const pay_merchant_row_t *m = &p->merchants[row];
    out[0] = (pay_object_t){.id = m->uid,
                            .uid = q->uid,
                            .created_at = m->created_at / PAY_NS_PER_MS,
                            .kind = PAY_KIND_MERCHANT,
                            .code = PAY_OK};
    memcpy(out[0].secret, m->secret, PAY_SECRET_SIZE);
    return 1;
}

static uint32_t query_payment(const pay_t *p, const pay_query_t *q, pay_object_t *out) {
    uint32_t row = pay_find(&p->payments_ix, q->id);
    if (row == LINDEX_NONE || (q->actor != 0 && p->payments[row].merchant != q->actor))
        return one(out, PAY_KIND_PAYMENT, PAY_ERR_NOT_FOUND);
    pay_payment_object(&p->payments[row], &out[0]);
    return 1;
}

static uint32_t query_refund(const pay_t *p, const pay_query_t *q, pay_object_t *out) {
    uint32_t row = pay_find(&p->refunds_ix, q->id);
    if (row == LINDEX_NONE || (q->actor != 0 && p->refunds[row].merchant != q->actor))
        return one(out, PAY_KIND_REFUND, PAY_ERR_NOT_FOUND);
    pay_refund_object(&p->refunds[row], &out[0]);
    return 1;
}

/* A transfer, by its row in the sender's cell; the operator's only (users have no keys of
 * their own and merchants are no party to it). */
static uint32_t query_transfer(const pay_t *p, const pay_query_t *q, pay_object_t *out) {
    uint32_t row = pay_find(&p->tcc_ix, q->id);
    if (row == LINDEX_NONE || q->actor != 0 || p->tcc[row].role != PAY_TCC_ACTIVITY ||
        p->tcc[row].type != PAY_TCC_TRANSFER)
        return one(out, PAY_KIND_TRANSFER, PAY_ERR_NOT_FOUND);
    pay_transfer_object(&p->tcc[row], &out[0]);
    return 1;
}

/* BALANCE and USER: the user's account in the currency. */
static uint32_t query_account(const pay_t *p, const ledger_t *l, const pay_query_t *q,
                              pay_object_t *out) {
    uint8_t kind = object_kind(q->kind);
    if (pay_find(&p->users_ix, q->uid) == LINDEX_NONE) return one(out, kind, PAY_ERR_NOT_FOUND);
    u128 id = pay_account_id(q->uid, PAY_ACCOUNT_USER, q->currency);
    ledger_account_t a;
    if (ledger_lookup_accounts(l, &id, 1, &a) != 1)
        return one(out, kind, PAY_ERR_CURRENCY_MISMATCH);
    out[0] = (pay_object_t){.id = id,
                            .uid = q->uid,
                            .created_at = a.timestamp / PAY_NS_PER_MS,
                            .currency = q->currency,
                            .kind = kind,
                            .code = PAY_OK};
    if (kind == PAY_KIND_BALANCE) {
        /* The account may not go below zero, so this does not saturate in practice. */
        out[0].amount = u128_sub_sat(a.credits_posted, a.debits_posted + a.debits_pending);
        out[0].refunded = a.debits_pending;
    }
    return 1;
}

static uint32_t query_list(const pay_t *p, const pay_query_t *q, pay_object_t *out) {
    uint32_t urow = pay_find(&p->users_ix, q->uid);
    if (urow == LINDEX_NONE) return one(out, PAY_KIND_LIST, PAY_ERR_NOT_FOUND);
    uint32_t row = p->users[urow].newest;
    if (q->after != 0) {
        uint32_t a = pay_find(&p->payments_ix, q->after);
        if (a == LINDEX_NONE || p->payments[a].buyer != q->uid)
            return one(out, PAY_KIND_LIST, PAY_ERR_NOT_FOUND);
        row = p->payments[a].prev;
    }
    out[0] = (pay_object_t){.uid = q->uid, .kind = PAY_KIND_LIST, .code = PAY_OK};
    uint32_t n = 1;
    /* limit + 1 items: one more than asked tells the gateway there are more (has_more). */
    for (; row != LINDEX_NONE && n < q->limit + 2; row = p->payments[row].prev) {
        cp_assert(row < p->n.payments && p->payments[row].buyer == q->uid);
        pay_payment_object(&p->payments[row], &out[n++]);
    }
    return n;
}

uint32_t pay_query(const pay_t *p, const ledger_t *l, const pay_query_t *q, pay_object_t *out) {
    if (!query_valid(q)) return one(out, object_kind(q->kind), PAY_ERR_INVALID);
    if (!pay_owns_uid(p, pay_query_route_uid(q)))
        return one(out, object_kind(q->kind), PAY_ERR_WRONG_CELL);
    switch (q->kind) {
    case PAY_Q_MERCHANT: return query_merchant(p, q, out);
    case PAY_Q_PAYMENT: return query_payment(p, q, out);
    case PAY_Q_REFUND: return query_refund(p, q, out);
    case PAY_Q_BALANCE:
    case PAY_Q_USER: return query_account(p, l, q, out);
    case PAY_Q_USER_PAYMENTS: return query_list(p, q, out);
    case PAY_Q_TRANSFER: return query_transfer(p, q, out);
    }
    cp_assert(!"query_valid() admits known kinds only");
    return 0;
}

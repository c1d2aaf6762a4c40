/* The answer side of api.h: pay codes to HTTP statuses, and pay_object_t as the API's JSON.
 * Field order is fixed so that the same object always renders to the same bytes (a replayed
 * answer is byte for byte the first). */
#include <stdio.h>
#include <string.h>

#include "base/assert.h"
#include "client/client.h"
#include "gateway/api.h"

typedef struct code_row {
    int status;
    const char *code;
    const char *message;
} code_row_t;

static const code_row_t code_rows[PAY_CODE_COUNT] = {
    [PAY_OK] = {200, NULL, NULL},
    [PAY_CREATED] = {201, NULL, NULL},
    [PAY_ERR_NOT_FOUND] = {404, "not_found", "no such object"},
    [PAY_ERR_INSUFFICIENT_FUNDS] = {402, "insufficient_funds",
                                    "the balance does not cover the amount"},
    [PAY_ERR_CURRENCY_MISMATCH] = {400, "currency_mismatch", "no account in that currency"},
    [PAY_ERR_REFUND_EXCEEDS] = {409, "refund_exceeds_payment",
                                "the refunds would exceed the payment"},
    [PAY_ERR_IDEMPOTENCY_CONFLICT] = {409, "idempotency_conflict",
                                      "this Idempotency-Key was used with another request"},
    [PAY_ERR_DUPLICATE_OUT_TRADE_NO] = {409, "duplicate_out_trade_no",
                                        "this merchant already has a payment with that "
                                        "out_trade_no"},
    [PAY_ERR_DUPLICATE_OUT_REQUEST_NO] = {409, "duplicate_out_request_no",
                                          "this payment already has a refund with that "
                                          "out_request_no"},
    [PAY_ERR_MERCHANT_EXISTS] = {409, "merchant_exists", "the merchant exists"},
    [PAY_ERR_CROSS_CELL] = {422, "cross_cell_unsupported",
                            "the merchant and the buyer live in different cells"},
    [PAY_ERR_WRONG_CELL] = {503, "wrong_cell",
                            "the route table sent this request to a cell that does not own "
                            "it; retry"},
    [PAY_ERR_FULL] = {503, "unavailable", "the cell is full"},
    [PAY_ERR_INVALID] = {400, "invalid_request", "the cell refused the request"},
    [PAY_ERR_OVERFLOW] = {400, "invalid_request", "the amount would overflow a balance"},
    /* Never final: the gateway goes on from the Try. A client sees it only if a gateway
     * lets it through; the key then finds the refund trying and the gateway continues. */
    [PAY_TRYING] = {503, "unavailable",
                    "the refund is still in progress: retry with the same Idempotency-Key"},
    [PAY_ERR_CANCELLED] = {409, "cancelled",
                           "the refund was cancelled before the merchant's cell held the money; "
                           "nothing moved and its out_request_no is free again: retry with a new "
                           "Idempotency-Key"},
};

int api_code_status(uint32_t code, const char **error_code, const char **message) {
    if (code >= PAY_CODE_COUNT) {
        *error_code = "internal_error";
        *message = "the cell answered an unknown code";
        return 500;
    }
    *error_code = code_rows[code].code;
    *message = code_rows[code].message;
    return code_rows[code].status;
}

/* ---- Values ---- */

static void put_key(json_out_t *o, const char *key) {
    json_out_raw(o, ",\"");
    json_out_raw(o, key);
    json_out_raw(o, "\":");
}

static void put_money(json_out_t *o, const char *key, u128 v) {
    char dec[U128_DEC_MAX + 1];
    size_t n = u128_format(v, dec);
    put_key(o, key);
    json_out_str(o, dec, n);
}

static void put_uid(json_out_t *o, const char *key, uint64_t uid) {
    put_money(o, key, uid);
}

static void put_id(json_out_t *o, const char *key, const char *prefix, u128 id) {
    char s[API_ID_MAX];
    size_t n = api_id_format(prefix, id, s);
    put_key(o, key);
    json_out_str(o, s, n);
}

static void put_currency(json_out_t *o, uint32_t currency) {
    char c[4];
    pay_currency_unpack(currency, c);
    put_key(o, "currency");
    json_out_str(o, c, strnlen(c, 3));
}

static void put_text(json_out_t *o, const char *key, const char *text) {
    put_key(o, key);
    json_out_str(o, text, strnlen(text, PAY_TEXT_MAX));
}

static void put_literal(json_out_t *o, const char *key, const char *value) {
    put_key(o, key);
    json_out_str(o, value, strlen(value));
}

static void put_number(json_out_t *o, const char *key, uint64_t v) {
    char s[U128_DEC_MAX + 1];
    u128_format(v, s);
    put_key(o, key);
    json_out_raw(o, s);
}

/* Opens the object: {"object":"<name>" — every field after it starts with a comma. */
static void open_object(json_out_t *o, const char *name) {
    json_out_raw(o, "{\"object\":\"");
    json_out_raw(o, name);
    json_out_raw(o, "\"");
}

/* ---- Objects ---- */

static void render_merchant(json_out_t *o, const pay_object_t *m) {
    static const char hex[] = "0123456789abcdef";
    char secret[2 * PAY_SECRET_SIZE];
    for (uint32_t i = 0; i < PAY_SECRET_SIZE; i++) {
        secret[2 * i] = hex[m->secret[i] >> 4];
        secret[2 * i + 1] = hex[m->secret[i] & 15];
    }
    open_object(o, "merchant");
    put_uid(o, "id", m->uid);
    put_uid(o, "uid", m->uid);
    put_key(o, "secret");
    json_out_str(o, secret, sizeof secret);
    json_out_raw(o, "}");
}

static void render_user(json_out_t *o, const pay_object_t *u) {
    open_object(o, "user");
    put_uid(o, "id", u->uid);
    put_uid(o, "uid", u->uid);
    put_currency(o, u->currency);
    put_money(o, "account_id", u->id);
    json_out_raw(o, "}");
}

static void render_topup(json_out_t *o, const pay_object_t *t) {
    open_object(o, "topup");
    put_id(o, "id", "tu_", t->id);
    put_literal(o, "status", "succeeded");
    put_uid(o, "uid", t->uid);
    put_money(o, "amount", t->amount);
    put_currency(o, t->currency);
    put_number(o, "created_at", t->created_at);
    json_out_raw(o, "}");
}

static void render_payment(json_out_t *o, const pay_object_t *p) {
    open_object(o, "payment");
    put_id(o, "id", "pay_", p->id);
    put_literal(o, "status", "succeeded");
    put_uid(o, "buyer_uid", p->uid);
    put_uid(o, "merchant_uid", p->merchant);
    put_money(o, "amount", p->amount);
    put_currency(o, p->currency);
    put_text(o, "out_trade_no", p->text);
    put_number(o, "created_at", p->created_at);
    put_money(o, "refunded", p->refunded);
    put_literal(o, "merchant_credit", p->merchant_credit ? "pending" : "credited");
    json_out_raw(o, "}");
}

static void render_refund(json_out_t *o, const pay_object_t *r) {
    open_object(o, "refund");
    put_id(o, "id", "re_", r->id);
    put_id(o, "payment_id", "pay_", r->payment_id);
    put_money(o, "amount", r->amount);
    put_literal(o, "status", "succeeded");
    put_currency(o, r->currency);
    put_text(o, "out_request_no", r->text);
    put_uid(o, "buyer_uid", r->uid);
    put_uid(o, "merchant_uid", r->merchant);
    put_number(o, "created_at", r->created_at);
    json_out_raw(o, "}");
}

static void render_balance(json_out_t *o, const pay_object_t *b) {
    open_object(o, "balance");
    put_uid(o, "id", b->uid); /* every object has an id (api-v1): a balance is its user's */
    put_uid(o, "uid", b->uid);
    put_currency(o, b->currency);
    put_money(o, "available", b->amount);
    put_money(o, "pending", b->refunded);
    json_out_raw(o, "}");
}

/* A transfer's status as the API names it; NULL for a value no cell answers. */
static const char *transfer_status(uint8_t status) {
    switch (status) {
    case PAY_TRANSFER_TRYING: return "pending";
    case PAY_TRANSFER_SUCCEEDED: return "succeeded";
    case PAY_TRANSFER_CANCELLED: return "cancelled";
    }
    return NULL;
}

/* The fields of a transfer up to its status, and created_at. With query, what only the
 * transfer's query knows: a cancelled one's reason (the error code it was cancelled with) and
 * a succeeded one's recipient_credit (a local one was credited in the same entry). */
static void render_transfer(json_out_t *o, const pay_object_t *t, bool query) {
    const char *status = transfer_status(t->status);
    open_object(o, "transfer");
    put_id(o, "id", "tr_", t->id);
    put_uid(o, "from_uid", t->uid);
    put_uid(o, "to_uid", t->recipient);
    put_money(o, "amount", t->amount);
    put_currency(o, t->currency);
    put_literal(o, "status", status ? status : "unknown");
    if (query && t->status == PAY_TRANSFER_CANCELLED) {
        const char *code, *message;
        int st = api_code_status(t->cancel_code, &code, &message);
        put_literal(o, "cancel_reason", st >= 400 ? code : "cancelled");
    }
    if (query && t->status == PAY_TRANSFER_SUCCEEDED)
        put_literal(o, "recipient_credit", t->merchant_credit ? "pending" : "credited");
    put_number(o, "created_at", t->created_at);
    json_out_raw(o, "}");
}

void api_render_object(json_out_t *o, const pay_object_t *obj) {
    switch (obj->kind) {
    case PAY_KIND_MERCHANT: render_merchant(o, obj); return;
    case PAY_KIND_USER: render_user(o, obj); return;
    case PAY_KIND_TOPUP: render_topup(o, obj); return;
    case PAY_KIND_PAYMENT: render_payment(o, obj); return;
    case PAY_KIND_REFUND: render_refund(o, obj); return;
    case PAY_KIND_BALANCE: render_balance(o, obj); return;
    case PAY_KIND_TRANSFER: render_transfer(o, obj, false); return;
    default: json_out_raw(o, "{}"); return; /* a cell's bug: refused by api_render_reply */
    }
}

/* ---- Replies ---- */

/* The TCC codes' messages speak of refunds (code_rows); a transfer's and a payment's say what
 * they mean for them. */
static const char *endpoint_message(api_endpoint_t e, uint8_t code, const char *message) {
    if (e == API_EP_TRANSFER_CREATE && code == PAY_ERR_CANCELLED)
        return "the transfer was cancelled: the recipient's cell did not take it in time, and "
               "nothing moved; retry with a new Idempotency-Key";
    if (e == API_EP_TRANSFER_CREATE && code == PAY_TRYING)
        return "the transfer is still in progress: retry with the same Idempotency-Key";
    /* A cross-cell payment whose request stopped after its order was reserved: the merchant's
     * cell gave the order up (docs/cross-cell.md, resolving orders left reserved). */
    if (e == API_EP_PAYMENT_CREATE && code == PAY_ERR_CANCELLED)
        return "the payment was cancelled: its order was given up before the buyer's cell paid "
               "it, and nothing moved; its out_trade_no is free again: retry with a new "
               "Idempotency-Key";
    return message;
}

static size_t render_error(char *buf, size_t cap, int status, const char *code, const char *message,
                           int *http_status) {
    *http_status = status;
    size_t n = json_out_error(buf, cap, code, message, NULL);
    cp_assert(n > 0);
    return n;
}

/* The kind of object each endpoint answers with. */
static uint8_t endpoint_kind(api_endpoint_t e) {
    switch (e) {
    case API_EP_MERCHANT_CREATE: return PAY_KIND_MERCHANT;
    case API_EP_USER_CREATE: return PAY_KIND_USER;
    case API_EP_TOPUP_CREATE: return PAY_KIND_TOPUP;
    case API_EP_BALANCE: return PAY_KIND_BALANCE;
    case API_EP_USER_PAYMENTS: return PAY_KIND_LIST;
    case API_EP_PAYMENT_CREATE:
    case API_EP_PAYMENT_GET: return PAY_KIND_PAYMENT;
    case API_EP_REFUND_CREATE:
    case API_EP_REFUND_GET: return PAY_KIND_REFUND;
    case API_EP_TRANSFER_CREATE:
    case API_EP_TRANSFER_GET: return PAY_KIND_TRANSFER;
    default: return 0;
    }
}

/* A list: objs[0] is the head, then up to limit + 1 payments (one more: has_more). */
static size_t render_list(const pay_object_t *objs, uint32_t n, uint32_t limit, char *buf,
                          size_t cap) {
    json_out_t o;
    json_out_init(&o, buf, cap);
    uint32_t items = n - 1, shown = items < limit ? items : limit;
    json_out_raw(&o, "{\"object\":\"list\",\"data\":[");
    for (uint32_t i = 0; i < shown; i++) {
        if (i) json_out_raw(&o, ",");
        api_render_object(&o, &objs[1 + i]);
    }
    json_out_raw(&o, items > limit ? "],\"has_more\":true}" : "],\"has_more\":false}");
    return o.overflow ? 0 : o.len;
}

static bool reply_valid(api_endpoint_t e, const pay_object_t *objs, uint32_t n) {
    if (n == 0 || objs[0].kind != endpoint_kind(e)) return false;
    if (objs[0].kind == PAY_KIND_TRANSFER) return n == 1 && transfer_status(objs[0].status);
    if (e != API_EP_USER_PAYMENTS) return n == 1;
    for (uint32_t i = 1; i < n; i++)
        if (objs[i].kind != PAY_KIND_PAYMENT) return false;
    return n <= PAY_LIST_MAX + 2;
}

size_t api_render_reply(api_endpoint_t e, int32_t status, const pay_object_t *objs, uint32_t n,
                        uint32_t limit, char *buf, size_t cap, int *http_status, bool *replayed) {
    *replayed = false;
    if (status != 0)
        return render_error(buf, cap, 503, "unavailable", client_status_str(status), http_status);
    if (n == 0)
        return render_error(buf, cap, 500, "internal_error", "the cell answered nothing",
                            http_status);
    /* An error answer means only its code (pay.h): its kind is not checked. A replayed error
     * is the same error again. */
    const char *code, *message;
    int st = api_code_status(objs[0].code, &code, &message);
    *replayed = objs[0].replayed != 0;
    message = endpoint_message(e, objs[0].code, message);
    if (st >= 400) return render_error(buf, cap, st, code, message, http_status);
    if (!reply_valid(e, objs, n)) {
        *replayed = false;
        return render_error(buf, cap, 500, "internal_error", "the cell's answer does not fit",
                            http_status);
    }
    *http_status = st;
    if (e == API_EP_USER_PAYMENTS) {
        *http_status = 200;
        return render_list(objs, n, limit, buf, cap);
    }
    json_out_t o;
    json_out_init(&o, buf, cap);
    if (e == API_EP_TRANSFER_GET)
        render_transfer(&o, &objs[0], true);
    else
        api_render_object(&o, &objs[0]);
    return o.overflow ? 0 : o.len;
}

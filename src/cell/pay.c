/* Payments: applying requests (pay.h). Every request is checked whole before anything
 * changes: its shape, its routing, its idempotency key, the rows it names, the capacity of
 * every table it will touch (ours and the ledger's) and the balances the ledger will check;
 * only then does money move (the ledger transfer, the last fallible step) and rows get
 * inserted. So an answer other than CREATED / OK never leaves a trace but the clock. */
#include "cell/pay_internal.h"

#include <stdlib.h>
#include <string.h>

#include "base/constants.h"
#include "base/table.h"

CP_STATIC_ASSERT(sizeof(pay_image_header_t) == 64, "pay image header is 64 bytes");
CP_STATIC_ASSERT(offsetof(pay_request_t, idem_key) == 0 && offsetof(pay_request_t, amount) == 48 &&
                     offsetof(pay_request_t, actor) == 64 && offsetof(pay_request_t, text) == 120,
                 "pay_request_t layout");
CP_STATIC_ASSERT(offsetof(pay_object_t, id) == 0 && offsetof(pay_object_t, uid) == 64 &&
                     offsetof(pay_object_t, kind) == 92 && offsetof(pay_object_t, text) == 128,
                 "pay_object_t layout");
CP_STATIC_ASSERT(offsetof(pay_query_t, kind) == 56, "pay_query_t layout");
CP_STATIC_ASSERT(offsetof(pay_request_t, peer_cell) == 184 &&
                     offsetof(pay_request_t, tcc_type) == 188 &&
                     offsetof(pay_request_t, recipient) == 192,
                 "pay_request_t transfer fields");
CP_STATIC_ASSERT(offsetof(pay_object_t, peer_cell) == 192 &&
                     offsetof(pay_object_t, status) == 196 &&
                     offsetof(pay_object_t, recipient) == 200,
                 "pay_object_t transfer fields");
CP_STATIC_ASSERT(sizeof(pay_outbox_item_t) == 80 && offsetof(pay_outbox_item_t, kind) == 64 &&
                     offsetof(pay_outbox_item_t, tcc_type) == 65,
                 "pay_outbox_item_t layout");

/* ---- Small shared helpers ---- */

u128 pay_hash128(const void *p, size_t n) {
    XXH128_hash_t h = XXH3_128bits(p, n);
    return ((u128)h.high64 << 64) | h.low64;
}

u128 pay_payment_dup_key(uint64_t merchant, const char text[PAY_TEXT_MAX]) {
    struct {
        uint64_t merchant, zero;
        char text[PAY_TEXT_MAX];
    } in = {.merchant = merchant};
    memcpy(in.text, text, PAY_TEXT_MAX);
    return pay_hash128(&in, sizeof in);
}

u128 pay_refund_dup_key(u128 payment_id, const char text[PAY_TEXT_MAX]) {
    struct {
        u128 payment_id;
        char text[PAY_TEXT_MAX];
    } in = {.payment_id = payment_id};
    memcpy(in.text, text, PAY_TEXT_MAX);
    return pay_hash128(&in, sizeof in);
}

u128 pay_idem_key(uint64_t actor, u128 idem_key) {
    struct {
        u128 idem_key;
        uint64_t actor, zero;
    } in = {.idem_key = idem_key, .actor = actor};
    return pay_hash128(&in, sizeof in);
}

bool pay_zero(const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i]) return false;
    return true;
}

bool pay_owns_uid(const pay_t *pay, uint64_t uid) {
    return cp_zones_has(&pay->config.zones, cp_zone_of(&pay->config.zone_rule, uid));
}

bool pay_currency_valid(uint32_t currency) {
    char c[4];
    pay_currency_unpack(currency, c);
    return currency != 0 && (currency >> 24) == 0 && pay_currency_pack(c) == currency;
}

/* NUL-padded: once a NUL comes, only NULs follow (so equal texts are equal bytes, which the
 * duplicate keys hash). */
bool pay_text_valid(const char text[PAY_TEXT_MAX], bool required) {
    size_t len = strnlen(text, PAY_TEXT_MAX);
    if (required && len == 0) return false;
    return pay_zero(text + len, PAY_TEXT_MAX - len);
}

void pay_payment_object(const pay_payment_row_t *p, pay_object_t *o) {
    *o = (pay_object_t){
        .id = p->id,
        .amount = p->amount,
        .refunded = p->refunded,
        .uid = p->buyer,
        .merchant = p->merchant,
        .created_at = p->created_at / PAY_NS_PER_MS,
        .currency = p->currency,
        .kind = PAY_KIND_PAYMENT,
        .code = PAY_OK,
        .merchant_credit = p->credit == PAY_CREDIT_PENDING,
        .peer_cell = p->peer_cell,
    };
    memcpy(o->text, p->text, PAY_TEXT_MAX);
}

void pay_refund_object(const pay_refund_row_t *r, pay_object_t *o) {
    *o = (pay_object_t){
        .id = r->id,
        .amount = r->amount,
        .payment_id = r->payment_id,
        .uid = r->buyer,
        .merchant = r->merchant,
        .created_at = r->created_at / PAY_NS_PER_MS,
        .currency = r->currency,
        .kind = PAY_KIND_REFUND,
        .code = PAY_OK,
    };
    memcpy(o->text, r->text, PAY_TEXT_MAX);
}

/* A transfer's row in its sender's cell, as its query shows it. */
void pay_transfer_object(const pay_tcc_row_t *a, pay_object_t *o) {
    cp_assert(a->role == PAY_TCC_ACTIVITY && a->type == PAY_TCC_TRANSFER);
    bool cancelled = a->state == PAY_ACTIVITY_CANCELLING || a->state == PAY_ACTIVITY_CANCELLED;
    *o = (pay_object_t){
        .id = a->id,
        .amount = a->amount,
        .uid = a->buyer,
        .created_at = a->created_at / PAY_NS_PER_MS,
        .currency = a->currency,
        .kind = PAY_KIND_TRANSFER,
        .code = PAY_OK,
        /* Decided confirm, the recipient's cell not acknowledged yet: credit on its way. */
        .merchant_credit = a->state == PAY_ACTIVITY_CONFIRMING,
        .peer_cell = a->peer_cell,
        .status = a->state == PAY_ACTIVITY_TRYING ? PAY_TRANSFER_TRYING
                  : cancelled                     ? PAY_TRANSFER_CANCELLED
                                                  : PAY_TRANSFER_SUCCEEDED,
        .cancel_code = cancelled ? a->code : 0,
        .recipient = a->merchant,
    };
}

/* ---- Creation ---- */

/* Each table, its capacity and how it is allocated (base/table.h): merchants and users are
 * looked up at random and added slowly (huge pages); the rest are appended per request. */
#define PAY_TABLES(X)                                                                              \
    X(merchants, merchants_max, cp_table_alloc_huge)                                               \
    X(users, users_max, cp_table_alloc_huge)                                                       \
    X(payments, payments_max, cp_table_alloc)                                                      \
    X(refunds, refunds_max, cp_table_alloc)                                                        \
    X(topups, topups_max, cp_table_alloc)                                                          \
    X(idem, idempotency_max, cp_table_alloc)                                                       \
    X(orders, orders_max, cp_table_alloc)                                                          \
    X(outbox, outbox_max, cp_table_alloc)                                                          \
    X(tcc, tcc_max, cp_table_alloc)

pay_t *pay_create(const pay_config_t *config) {
    const pay_config_t *c = config;
    if (!c->merchants_max || !c->users_max || !c->payments_max || !c->refunds_max ||
        !c->topups_max || !c->idempotency_max || !c->orders_max || !c->outbox_max || !c->tcc_max ||
        c->cell_id > PAY_CELL_ID_MAX)
        return NULL;
    if ((c->zone_rule.divisor | c->zone_rule.modulus) != 0 && cp_zone_rule_check(&c->zone_rule))
        return NULL;
    pay_t *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->config = *c;
    if (cp_zones_is_empty(&p->config.zones)) p->config.zones = cp_zones_all();
    bool ok = true;
#define ALLOC(t, max, alloc) ok = ok && (p->t = alloc(c->max, sizeof p->t[0])) != NULL;
    PAY_TABLES(ALLOC)
#undef ALLOC
    ok =
        ok && lindex_init(&p->merchants_ix, c->merchants_max, p->merchants, sizeof p->merchants[0]);
    ok = ok && lindex_init(&p->users_ix, c->users_max, p->users, sizeof p->users[0]);
    ok = ok && lindex_init(&p->payments_ix, c->payments_max, p->payments, sizeof p->payments[0]);
    ok = ok && lindex_init(&p->payments_dup_ix, c->payments_max, &p->payments[0].dup_key,
                           sizeof p->payments[0]);
    ok = ok && lindex_init(&p->refunds_ix, c->refunds_max, p->refunds, sizeof p->refunds[0]);
    ok = ok && lindex_init(&p->refunds_dup_ix, c->refunds_max, &p->refunds[0].dup_key,
                           sizeof p->refunds[0]);
    ok = ok && lindex_init(&p->idem_ix, c->idempotency_max, p->idem, sizeof p->idem[0]);
    ok = ok && lindex_init(&p->orders_ix, c->orders_max, p->orders, sizeof p->orders[0]);
    ok = ok &&
         lindex_init(&p->orders_dup_ix, c->orders_max, &p->orders[0].dup_key, sizeof p->orders[0]);
    ok = ok && lindex_init(&p->tcc_ix, c->tcc_max, p->tcc, sizeof p->tcc[0]);
    ok = ok && lindex_init(&p->tcc_dup_ix, c->tcc_max, &p->tcc[0].dup_key, sizeof p->tcc[0]);
    if (!ok) {
        pay_destroy(p);
        return NULL;
    }
    return p;
}

void pay_destroy(pay_t *p) {
    if (!p) return;
#define FREE(t, max, alloc)                                                                        \
    if (p->t) cp_table_free(p->t, p->config.max, sizeof p->t[0]);
    PAY_TABLES(FREE)
#undef FREE
    lindex_free(&p->merchants_ix);
    lindex_free(&p->users_ix);
    lindex_free(&p->payments_ix);
    lindex_free(&p->payments_dup_ix);
    lindex_free(&p->refunds_ix);
    lindex_free(&p->refunds_dup_ix);
    lindex_free(&p->idem_ix);
    lindex_free(&p->orders_ix);
    lindex_free(&p->orders_dup_ix);
    lindex_free(&p->tcc_ix);
    lindex_free(&p->tcc_dup_ix);
    free(p);
}

/* ---- Request checks ---- */

static bool actor_valid(uint64_t actor);

/* The participant's steps of a cross-cell refund or transfer: all carry the Try's fields. */
static bool kind_is_branch_step(uint8_t kind) {
    return kind == PAY_KIND_TRY || kind == PAY_KIND_CONFIRM || kind == PAY_KIND_CANCEL;
}

static bool request_needs_amount(uint8_t kind) {
    return kind == PAY_KIND_TOPUP || kind == PAY_KIND_PAYMENT || kind == PAY_KIND_REFUND ||
           kind == PAY_KIND_ORDER || kind == PAY_KIND_CREDIT || kind == PAY_KIND_TRANSFER ||
           kind_is_branch_step(kind);
}

static bool request_needs_text(uint8_t kind) {
    return kind == PAY_KIND_PAYMENT || kind == PAY_KIND_REFUND || kind == PAY_KIND_ORDER;
}

/* A cross-cell payment (of an order), a credit and the branch steps name the other cell;
 * nothing else does. */
static bool request_uses_peer_cell(const pay_request_t *r) {
    return (r->kind == PAY_KIND_PAYMENT && r->payment_id != 0) || r->kind == PAY_KIND_CREDIT ||
           r->kind == PAY_KIND_REFUND || r->kind == PAY_KIND_TRANSFER ||
           r->kind == PAY_KIND_ORDER || r->kind == PAY_KIND_RESOLVE || kind_is_branch_step(r->kind);
}

/* The refusals a Try stores on its branch: a refund's merchant lacks the money; a transfer's
 * recipient is unknown, has no account in the currency, or its balance would overflow. */
static bool try_refusal(uint8_t type, uint8_t code) {
    if (type == PAY_TCC_TRANSFER)
        return code == PAY_ERR_NOT_FOUND || code == PAY_ERR_CURRENCY_MISMATCH ||
               code == PAY_ERR_OVERFLOW;
    return code == PAY_ERR_INSUFFICIENT_FUNDS || code == PAY_ERR_OVERFLOW;
}

/* A decide's code: confirm, or a refusal a Try stores, or the recovery's cancelled (which
 * activity it is, refund or transfer, is checked against its row). */
static bool decide_code_valid(uint8_t code) {
    return code == PAY_OK || code == PAY_ERR_CANCELLED || try_refusal(PAY_TCC_REFUND, code) ||
           try_refusal(PAY_TCC_TRANSFER, code);
}

/* tcc_type and recipient: a branch step names its type and the party in the participant's
 * cell (a refund's merchant: actor; a transfer's recipient, the operator acting); a transfer
 * names its recipient; nothing else uses them. */
static bool tcc_fields_valid(const pay_request_t *r) {
    if (!pay_zero(r->reserved_2, sizeof r->reserved_2)) return false;
    bool recipient_ok = r->recipient != PAY_SYSTEM_UID && r->recipient != r->uid;
    if (r->kind == PAY_KIND_TRANSFER) return r->tcc_type == 0 && recipient_ok;
    if (!kind_is_branch_step(r->kind)) return r->tcc_type == 0 && r->recipient == 0;
    if (r->tcc_type == PAY_TCC_TRANSFER) return r->actor == 0 && recipient_ok;
    return r->tcc_type == PAY_TCC_REFUND && r->recipient == 0 && actor_valid(r->actor);
}

/* The refusals of a buyer's cell that are stored under the payment's key, so the only ones a
 * release may leave under the order's key (docs/cross-cell.md): a payment's, or the
 * tombstone a resolve stores (cancelled). */
static bool release_code_valid(uint8_t code) {
    return code == PAY_ERR_NOT_FOUND || code == PAY_ERR_INSUFFICIENT_FUNDS ||
           code == PAY_ERR_CURRENCY_MISMATCH || code == PAY_ERR_OVERFLOW ||
           code == PAY_ERR_CANCELLED;
}

static bool actor_valid(uint64_t actor) {
    return actor != 0 && actor != PAY_SYSTEM_UID;
}

/* A payment id drawn by a merchant's cell for an order of buyer: (buyer << 64), leg bit 0,
 * the drawing cell and a sequence number above 0. */
static bool order_id_valid(u128 id, uint64_t buyer, uint64_t drawing_cell) {
    uint64_t lo = (uint64_t)id;
    return (uint64_t)(id >> 64) == buyer && (lo >> 63) == 0 &&
           (lo >> PAY_SEQ_BITS) == drawing_cell && (lo & PAY_SEQ_MAX) != 0;
}

static bool payment_valid(const pay_request_t *r) {
    /* funding 0 is taken as balance too, the only funding until credit exists */
    bool ok = actor_valid(r->actor) && r->uid != PAY_SYSTEM_UID &&
              pay_currency_valid(r->currency) && r->funding <= 1;
    if (!ok || r->payment_id == 0) return ok;
    /* Of an order: its id was drawn by the merchant's cell, and it is the key (the buyer's
     * cell answers a repeat from its ring). */
    return order_id_valid(r->payment_id, r->uid, r->peer_cell) && r->idem_key == r->payment_id;
}

/* The relay's kinds and release are idempotent by their payment id: no key. */
static bool relay_valid(const pay_request_t *r) {
    if (r->idem_key != 0 || r->body_hash != 0 || r->payment_id == 0) return false;
    switch (r->kind) {
    case PAY_KIND_RELEASE: return actor_valid(r->actor) && release_code_valid(r->code);
    case PAY_KIND_CREDIT:
        return actor_valid(r->actor) && r->uid != PAY_SYSTEM_UID &&
               pay_currency_valid(r->currency) && (uint64_t)(r->payment_id >> 64) == r->uid;
    case PAY_KIND_ACK: return (uint64_t)(r->payment_id >> 64) == r->uid;
    case PAY_KIND_TRY:
    case PAY_KIND_CONFIRM:
    case PAY_KIND_CANCEL:
        /* R was drawn by the buyer's cell (peer_cell) for that buyer (T: by the sender's for
         * the sender); actor or recipient: tcc_fields_valid(). */
        return r->uid != PAY_SYSTEM_UID && pay_currency_valid(r->currency) &&
               order_id_valid(r->payment_id, r->uid, r->peer_cell);
    case PAY_KIND_DECIDE:
        return r->actor == 0 && (uint64_t)(r->payment_id >> 64) == r->uid &&
               r->uid != PAY_SYSTEM_UID && decide_code_valid(r->code);
    }
    return false;
}

/* A resolve names an order of the merchant's cell (peer_cell) for that buyer, and carries the
 * order's body_hash (for the tombstone) but no key: it is idempotent by P. */
static bool resolve_valid(const pay_request_t *r) {
    return r->idem_key == 0 && actor_valid(r->actor) && r->uid != PAY_SYSTEM_UID &&
           order_id_valid(r->payment_id, r->uid, r->peer_cell);
}

/* The request's shape alone (no state): INVALID when it is not one the API or the relay can
 * send (pay.h: the fields per kind). */
static bool request_valid(const pay_request_t *r) {
    if (r->reserved_1 || !pay_zero(r->reserved, sizeof r->reserved)) return false;
    if (r->kind < PAY_KIND_MERCHANT || r->kind > PAY_KIND_RESOLVE || r->kind == PAY_KIND_BALANCE ||
        r->kind == PAY_KIND_LIST)
        return false;
    if (!tcc_fields_valid(r)) return false;
    if (r->code != 0 && r->kind != PAY_KIND_RELEASE && r->kind != PAY_KIND_DECIDE) return false;
    if (request_uses_peer_cell(r) ? r->peer_cell > PAY_CELL_MAX : r->peer_cell != 0) return false;
    if (request_needs_amount(r->kind) && r->amount == 0) return false;
    if (!pay_text_valid(r->text, request_needs_text(r->kind))) return false;
    switch (r->kind) {
    case PAY_KIND_MERCHANT: return r->uid != 0 && r->uid != PAY_SYSTEM_UID;
    case PAY_KIND_USER:
    case PAY_KIND_TOPUP: return r->uid != PAY_SYSTEM_UID && pay_currency_valid(r->currency);
    case PAY_KIND_PAYMENT: return payment_valid(r);
    case PAY_KIND_REFUND: return r->actor != 0 && (uint64_t)(r->payment_id >> 64) != PAY_SYSTEM_UID;
    case PAY_KIND_ORDER:
        return actor_valid(r->actor) && r->uid != PAY_SYSTEM_UID &&
               pay_currency_valid(r->currency) && r->funding <= 1 && r->payment_id == 0;
    case PAY_KIND_TRANSFER:
        /* The operator's: users have no keys of their own. */
        return r->actor == 0 && r->uid != PAY_SYSTEM_UID && pay_currency_valid(r->currency) &&
               r->payment_id == 0 && r->funding == 0;
    case PAY_KIND_RESOLVE: return resolve_valid(r);
    }
    return relay_valid(r);
}

static void answer_error(pay_object_t *out, uint8_t kind, pay_code_t code) {
    *out = (pay_object_t){.kind = kind, .code = (uint8_t)code};
}

/* ---- Money movement through the ledger ---- */

/* One side of a transfer: its account, and whether it is created on first use (the bank
 * clearing account of a top-up, a merchant's receivable, a clearing account toward another
 * cell) rather than required to exist. */
typedef struct pay_side {
    u128 id;
    /* The account code (pay_account_kind_t) and flags it is created with; code 0: it must
     * exist. */
    uint16_t lazy_code;
    uint16_t lazy_flags;
} pay_side_t;

typedef struct pay_move {
    u128 id;
    pay_side_t debit;
    pay_side_t credit;
    u128 amount;
    u128 user_data;
    uint32_t currency;
    uint16_t code;
    bool fresh_id; /* id is next_id(): the sequence moves on once the id reached the ledger */
    uint32_t pending_timeout; /* not 0: a pending transfer (a Try) with this timeout, seconds */
} pay_move_t;

static pay_side_t side_existing(u128 id) {
    return (pay_side_t){.id = id};
}

/* The cell's bank clearing account: where top-ups come from, no limit. */
static pay_side_t side_bank(uint32_t currency) {
    return (pay_side_t){.id = pay_account_id(PAY_SYSTEM_UID, PAY_ACCOUNT_BANK, currency),
                        .lazy_code = PAY_ACCOUNT_BANK};
}

/* A merchant's receivable, created on its first payment; it may not go below zero. */
static pay_side_t side_receivable(uint64_t merchant, uint32_t currency) {
    return (pay_side_t){.id = pay_account_id(merchant, PAY_ACCOUNT_MERCHANT, currency),
                        .lazy_code = PAY_ACCOUNT_MERCHANT,
                        .lazy_flags = LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS};
}

/* Clearing toward another cell: credited in the buyer's cell, debited in the merchant's, so
 * no limit (its position is what the relay has yet to net out). */
static pay_side_t side_clearing(uint32_t peer_cell, uint32_t currency) {
    return (pay_side_t){.id = pay_clearing_account_id(peer_cell, currency),
                        .lazy_code = PAY_ACCOUNT_CLEARING};
}

static bool lookup_account(const ledger_t *l, u128 id, ledger_account_t *out) {
    return ledger_lookup_accounts(l, &id, 1, out) == 1;
}

/* What the ledger will say about the transfer, known before anything is created: its checks
 * in its own order of precedence (overflows, then exceeds_credits). */
static pay_code_t move_precheck(const ledger_account_t *dr, const ledger_account_t *cr, u128 a,
                                bool pending) {
    u128 t;
    if (pending && (!u128_add_checked(dr->debits_pending, a, &t) ||
                    !u128_add_checked(cr->credits_pending, a, &t)))
        return PAY_ERR_OVERFLOW;
    if (!u128_add_checked(dr->debits_posted, a, &t)) return PAY_ERR_OVERFLOW;
    if (!u128_add_checked(cr->credits_posted, a, &t)) return PAY_ERR_OVERFLOW;
    if (!u128_add_checked(dr->debits_pending, dr->debits_posted, &t) || !u128_add_checked(t, a, &t))
        return PAY_ERR_OVERFLOW;
    u128 dr_total = t;
    if (!u128_add_checked(cr->credits_pending, cr->credits_posted, &t) ||
        !u128_add_checked(t, a, &t))
        return PAY_ERR_OVERFLOW;
    if ((dr->flags & LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) &&
        dr_total > dr->credits_posted)
        return PAY_ERR_INSUFFICIENT_FUNDS;
    return PAY_OK;
}

/* Room for `accounts` new accounts and one transfer in the ledger, two clock steps per
 * ledger call, and a sequence number. */
static bool ledger_room(const pay_t *p, const ledger_t *l, uint64_t clock, uint32_t accounts,
                        bool fresh_id) {
    ledger_config_t cap;
    ledger_stats_t st;
    ledger_capacity(l, &cap);
    ledger_stats(l, &st);
    uint64_t calls = accounts + 1;
    if (clock >= CP_TIMESTAMP_MAX || CP_TIMESTAMP_MAX - clock < 2 * calls) return false;
    if (st.last_timestamp >= clock + 2) return false; /* the clock was set back (tests) */
    if (accounts > cap.accounts_max - st.accounts) return false;
    if (st.transfers >= cap.transfers_max || st.failed_ids >= cap.failed_ids_max) return false;
    if (cap.balances_max - st.balances < 2) return false;
    return !fresh_id || p->n.seq < PAY_SEQ_MAX;
}

static pay_code_t transfer_code(uint32_t result) {
    switch (result) {
    case LEDGER_TRANSFER_CREATED: return PAY_CREATED;
    case LEDGER_TRANSFER_EXCEEDS_CREDITS: return PAY_ERR_INSUFFICIENT_FUNDS;
    case LEDGER_TRANSFER_OVERFLOWS_DEBITS_PENDING:
    case LEDGER_TRANSFER_OVERFLOWS_CREDITS_PENDING:
    case LEDGER_TRANSFER_OVERFLOWS_DEBITS_POSTED:
    case LEDGER_TRANSFER_OVERFLOWS_CREDITS_POSTED:
    case LEDGER_TRANSFER_OVERFLOWS_DEBITS:
    case LEDGER_TRANSFER_OVERFLOWS_CREDITS: return PAY_ERR_OVERFLOW;
    default: return PAY_ERR_INVALID; /* an id or account made by raw ledger ops collides */
    }
}

/* One side's account: found, or (lazy) zeros to be created; false when it must exist and
 * does not. */
static bool move_side(const ledger_t *l, const pay_side_t *side, ledger_account_t *a,
                      bool *create) {
    *create = false;
    if (lookup_account(l, side->id, a)) return true;
    *a = (ledger_account_t){.id = side->id};
    *create = side->lazy_code != 0;
    return *create;
}

static void create_account(ledger_t *l, uint64_t *clock, uint32_t currency,
                           const pay_side_t *side) {
    ledger_account_t a = {
        .id = side->id, .ledger = currency, .code = side->lazy_code, .flags = side->lazy_flags};
    ledger_result_t res;
    *clock += 2;
    ledger_status_t st = ledger_create_accounts(l, *clock, &a, 1, &res);
    cp_assert(st == LEDGER_OK); /* ledger_room() admitted it */
    cp_assert(res.result == LEDGER_ACCOUNT_CREATED);
}

/* Moves the money: PAY_CREATED with *ts the transfer's timestamp, or why not (then nothing
 * changed but the clock, unless the ledger disagrees with the precheck, which only raw
 * ledger commands on the same ids can make happen). */
static pay_code_t move_money(pay_t *p, ledger_t *l, uint64_t *clock, const pay_move_t *m,
                             uint64_t *ts) {
    ledger_account_t dr, cr;
    bool create_dr, create_cr;
    if (!move_side(l, &m->debit, &dr, &create_dr) || !move_side(l, &m->credit, &cr, &create_cr))
        return PAY_ERR_INSUFFICIENT_FUNDS; /* a receivable that never received anything */
    if (!ledger_room(p, l, *clock, (uint32_t)create_dr + create_cr, m->fresh_id))
        return PAY_ERR_FULL;
    /* A pending transfer's expiry must be a timestamp (else overflows_timeout): only a clock
     * at the end of time fails that, so it is the cell's limit, not the request's fault. */
    uint64_t timeout_ns = (uint64_t)m->pending_timeout * 1000000000ull;
    if (m->pending_timeout && CP_TIMESTAMP_MAX - *clock < timeout_ns + 8) return PAY_ERR_FULL;
    pay_code_t pre = move_precheck(&dr, &cr, m->amount, m->pending_timeout != 0);
    if (pre != PAY_OK) return pre;
    if (create_dr) create_account(l, clock, m->currency, &m->debit);
    if (create_cr) create_account(l, clock, m->currency, &m->credit);
    ledger_transfer_t t = {
        .id = m->id,
        .debit_account_id = m->debit.id,
        .credit_account_id = m->credit.id,
        .amount = m->amount,
        .user_data_128 = m->user_data,
        .ledger = m->currency,
        .code = m->code,
        .timeout = m->pending_timeout,
        .flags = m->pending_timeout ? LEDGER_TRANSFER_PENDING : 0,
    };
    ledger_result_t res;
    *clock += 2;
    ledger_status_t st = ledger_create_transfers(l, *clock, &t, 1, &res);
    cp_assert(st == LEDGER_OK);
    /* The id reached the ledger: even if it failed there (and is now a failed id) it must not
     * be handed out again. */
    if (m->fresh_id) p->n.seq++;
    *ts = res.timestamp ? res.timestamp : *clock;
    return transfer_code(res.result);
}

static u128 next_id(const pay_t *p, uint64_t route_uid) {
    return ((u128)route_uid << 64) | ((u128)p->config.cell_id << PAY_SEQ_BITS) | (p->n.seq + 1);
}

/* ---- The kinds ---- */

static void apply_merchant(pay_t *p, uint64_t *clock, const pay_request_t *r, pay_object_t *o) {
    if (pay_find(&p->merchants_ix, r->uid) != LINDEX_NONE)
        return answer_error(o, PAY_KIND_MERCHANT, PAY_ERR_MERCHANT_EXISTS);
    if (p->n.merchants >= p->config.merchants_max)
        return answer_error(o, PAY_KIND_MERCHANT, PAY_ERR_FULL);
    uint32_t row = p->n.merchants++;
    pay_merchant_row_t *m = &p->merchants[row];
    *m = (pay_merchant_row_t){.uid = r->uid, .created_at = *clock};
    memcpy(m->secret, r->secret, PAY_SECRET_SIZE);
    lindex_insert(&p->merchants_ix, lindex_hash(m->uid), row);
    *o = (pay_object_t){.id = r->uid,
                        .uid = r->uid,
                        .created_at = *clock / PAY_NS_PER_MS,
                        .kind = PAY_KIND_MERCHANT,
                        .code = PAY_CREATED};
    memcpy(o->secret, r->secret, PAY_SECRET_SIZE);
}

static uint32_t add_user(pay_t *p, uint64_t uid, uint64_t clock) {
    uint32_t row = p->n.users++;
    p->users[row] = (pay_user_row_t){.uid = uid, .newest = LINDEX_NONE, .created_at = clock};
    lindex_insert(&p->users_ix, lindex_hash(p->users[row].uid), row);
    return row;
}

static void apply_user(pay_t *p, ledger_t *l, uint64_t *clock, const pay_request_t *r,
                       pay_object_t *o) {
    u128 account = pay_account_id(r->uid, PAY_ACCOUNT_USER, r->currency);
    bool new_row = pay_find(&p->users_ix, r->uid) == LINDEX_NONE;
    ledger_account_t a;
    bool new_account = !lookup_account(l, account, &a);
    if (new_row && p->n.users >= p->config.users_max)
        return answer_error(o, PAY_KIND_USER, PAY_ERR_FULL);
    if (new_account) {
        ledger_config_t cap;
        ledger_stats_t st;
        ledger_capacity(l, &cap);
        ledger_stats(l, &st);
        if (st.accounts >= cap.accounts_max || *clock > CP_TIMESTAMP_MAX - 2 ||
            st.last_timestamp >= *clock + 2)
            return answer_error(o, PAY_KIND_USER, PAY_ERR_FULL);
        a = (ledger_account_t){.id = account,
                               .ledger = r->currency,
                               .code = PAY_ACCOUNT_USER,
                               .flags = LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS};
        ledger_result_t res;
        *clock += 2;
        cp_assert(ledger_create_accounts(l, *clock, &a, 1, &res) == LEDGER_OK);
        cp_assert(res.result == LEDGER_ACCOUNT_CREATED);
        a.timestamp = res.timestamp;
    }
    if (new_row) add_user(p, r->uid, *clock);
    *o = (pay_object_t){.id = account,
                        .uid = r->uid,
                        .created_at = a.timestamp / PAY_NS_PER_MS,
                        .currency = r->currency,
                        .kind = PAY_KIND_USER,
                        .code = new_account ? PAY_CREATED : PAY_OK};
}

static void apply_topup(pay_t *p, ledger_t *l, uint64_t *clock, const pay_request_t *r,
                        pay_object_t *o) {
    if (pay_find(&p->users_ix, r->uid) == LINDEX_NONE)
        return answer_error(o, PAY_KIND_TOPUP, PAY_ERR_NOT_FOUND);
    u128 account = pay_account_id(r->uid, PAY_ACCOUNT_USER, r->currency);
    ledger_account_t a;
    if (!lookup_account(l, account, &a))
        return answer_error(o, PAY_KIND_TOPUP, PAY_ERR_CURRENCY_MISMATCH);
    if (p->n.topups >= p->config.topups_max) return answer_error(o, PAY_KIND_TOPUP, PAY_ERR_FULL);
    pay_move_t m = {
        .id = next_id(p, r->uid),
        .debit = side_bank(r->currency),
        .credit = side_existing(account),
        .amount = r->amount,
        .currency = r->currency,
        .code = PAY_LEDGER_CODE_TOPUP,
        .fresh_id = true,
    };
    uint64_t ts = 0;
    pay_code_t code = move_money(p, l, clock, &m, &ts);
    if (code != PAY_CREATED) return answer_error(o, PAY_KIND_TOPUP, code);
    uint32_t row = p->n.topups++;
    p->topups[row] = (pay_topup_row_t){
        .id = m.id, .amount = r->amount, .uid = r->uid, .created_at = ts, .currency = r->currency};
    *o = (pay_object_t){.id = m.id,
                        .amount = r->amount,
                        .uid = r->uid,
                        .created_at = ts / PAY_NS_PER_MS,
                        .currency = r->currency,
                        .kind = PAY_KIND_TOPUP,
                        .code = PAY_CREATED};
}

/* Is the merchant's out_trade_no held, by a local payment or a live order (reserved or
 * credited)? Both kinds share the merchant's one namespace (api.md). */
static bool otn_taken(const pay_t *p, u128 dup) {
    return pay_find(&p->payments_dup_ix, dup) != LINDEX_NONE ||
           pay_find(&p->orders_dup_ix, dup) != LINDEX_NONE;
}

/* A new payment row of the buyer (its list's newest), indexed by id. */
static pay_payment_row_t *add_payment(pay_t *p, uint32_t buyer_row, const pay_request_t *r, u128 id,
                                      uint64_t ts) {
    cp_assert(p->n.payments < p->config.payments_max);
    uint32_t row = p->n.payments++;
    pay_payment_row_t *pr = &p->payments[row];
    *pr = (pay_payment_row_t){
        .id = id,
        .dup_key = pay_payment_dup_key(r->actor, r->text),
        .amount = r->amount,
        .buyer = r->uid,
        .merchant = r->actor,
        .created_at = ts,
        .currency = r->currency,
        .prev = p->users[buyer_row].newest,
    };
    memcpy(pr->text, r->text, PAY_TEXT_MAX);
    p->users[buyer_row].newest = row;
    lindex_insert(&p->payments_ix, lindex_hash(pr->id), row);
    return pr;
}

/* Buyer and merchant both in this cell: one transfer, buyer -> merchant's receivable. */
static void apply_local_payment(pay_t *p, ledger_t *l, uint64_t *clock, const pay_request_t *r,
                                pay_object_t *o) {
    const uint8_t k = PAY_KIND_PAYMENT;
    /* The merchant's receivable account is in its own zone: a merchant of another cell is paid
     * through an order there and a payment of that order here (docs/cross-cell.md); the
     * gateway sends those, so this one came by an outdated route: wrong_cell, retried. */
    if (!pay_owns_uid(p, r->actor)) return answer_error(o, k, PAY_ERR_WRONG_CELL);
    if (pay_find(&p->merchants_ix, r->actor) == LINDEX_NONE)
        return answer_error(o, k, PAY_ERR_NOT_FOUND);
    uint32_t buyer_row = pay_find(&p->users_ix, r->uid);
    if (buyer_row == LINDEX_NONE) return answer_error(o, k, PAY_ERR_NOT_FOUND);
    u128 buyer_account = pay_account_id(r->uid, PAY_ACCOUNT_USER, r->currency);
    ledger_account_t a;
    if (!lookup_account(l, buyer_account, &a)) return answer_error(o, k, PAY_ERR_CURRENCY_MISMATCH);
    u128 dup = pay_payment_dup_key(r->actor, r->text);
    if (otn_taken(p, dup)) return answer_error(o, k, PAY_ERR_DUPLICATE_OUT_TRADE_NO);
    if (p->n.payments >= p->config.payments_max) return answer_error(o, k, PAY_ERR_FULL);
    pay_move_t m = {
        .id = next_id(p, r->uid),
        .debit = side_existing(buyer_account),
        .credit = side_receivable(r->actor, r->currency),
        .amount = r->amount,
        .currency = r->currency,
        .code = PAY_LEDGER_CODE_PAYMENT,
        .fresh_id = true,
    };
    uint64_t ts = 0;
    pay_code_t code = move_money(p, l, clock, &m, &ts);
    if (code != PAY_CREATED) return answer_error(o, k, code);
    pay_payment_row_t *pr = add_payment(p, buyer_row, r, m.id, ts);
    lindex_insert(&p->payments_dup_ix, lindex_hash(pr->dup_key), (uint32_t)(pr - p->payments));
    pay_payment_object(pr, o);
    o->code = PAY_CREATED;
}

/* ---- The outbox: a FIFO ring of the cross-cell payments whose credit is to be delivered.
 * Records are numbered 1, 2, ... (seq); an acknowledged record is reclaimed once every
 * older one is, so the ring holds exactly the records from the oldest unacknowledged one. */

uint32_t pay_outbox_row(const pay_t *p, uint64_t seq) {
    uint64_t first = p->n.outbox_seq - p->n.outbox_count + 1;
    cp_assert(seq >= first && seq <= p->n.outbox_seq);
    return (uint32_t)((p->n.outbox_head + (seq - first)) % p->config.outbox_max);
}

/* Appends x (its seq and acked are set here); returns its seq. */
static uint64_t outbox_append(pay_t *p, pay_outbox_row_t x) {
    cp_assert(p->n.outbox_count < p->config.outbox_max);
    uint64_t seq = ++p->n.outbox_seq;
    p->n.outbox_count++;
    p->n.outbox_unacked++;
    x.seq = seq;
    x.acked = 0;
    p->outbox[pay_outbox_row(p, seq)] = x;
    return seq;
}

static uint64_t outbox_append_credit(pay_t *p, const pay_payment_row_t *pr) {
    return outbox_append(p, (pay_outbox_row_t){
                                .payment_id = pr->id,
                                .amount = pr->amount,
                                .buyer = pr->buyer,
                                .merchant = pr->merchant,
                                .currency = pr->currency,
                                .peer_cell = pr->peer_cell,
                                .kind = PAY_KIND_CREDIT,
                            });
}

static void outbox_ack(pay_t *p, uint64_t seq) {
    pay_outbox_row_t *x = &p->outbox[pay_outbox_row(p, seq)];
    cp_assert(x->seq == seq && !x->acked);
    x->acked = 1;
    p->n.outbox_unacked--;
    while (p->n.outbox_count > 0 && p->outbox[p->n.outbox_head].acked) {
        p->outbox[p->n.outbox_head] = (pay_outbox_row_t){0};
        p->n.outbox_head = p->n.outbox_head + 1 == p->config.outbox_max ? 0 : p->n.outbox_head + 1;
        p->n.outbox_count--;
    }
}

uint32_t pay_outbox_pending(const pay_t *p, uint64_t from, pay_outbox_item_t *out, uint32_t max) {
    uint64_t first = p->n.outbox_seq - p->n.outbox_count + 1;
    uint32_t n = 0;
    for (uint64_t seq = from > first ? from : first; seq <= p->n.outbox_seq && n < max; seq++) {
        const pay_outbox_row_t *x = &p->outbox[pay_outbox_row(p, seq)];
        if (x->acked) continue;
        out[n++] = (pay_outbox_item_t){.payment_id = x->payment_id,
                                       .amount = x->amount,
                                       .buyer = x->buyer,
                                       .merchant = x->merchant,
                                       .seq = x->seq,
                                       .currency = x->currency,
                                       .peer_cell = x->peer_cell,
                                       .kind = (uint8_t)x->kind,
                                       .tcc_type = (uint8_t)x->tcc_type};
    }
    return n;
}

uint32_t pay_outbox_backlog(const pay_t *p) {
    return p->n.outbox_unacked;
}

/* A payment of an order made before (its key expired from the ring since): the same one
 * is found again; another request naming its id is not one the gateway sends. */
static void xcell_payment_again(const pay_t *p, uint32_t row, const pay_request_t *r,
                                pay_object_t *o) {
    const pay_payment_row_t *pr = &p->payments[row];
    if (pr->credit == PAY_CREDIT_LOCAL || pr->buyer != r->uid || pr->merchant != r->actor ||
        pr->amount != r->amount || pr->currency != r->currency || pr->peer_cell != r->peer_cell)
        return answer_error(o, PAY_KIND_PAYMENT, PAY_ERR_INVALID);
    pay_payment_object(pr, o);
}

/* The buyer's side of a cross-cell payment (docs/cross-cell.md), one entry: buyer ->
 * clearing toward the merchant's cell (transfer id = the order's payment id), the payment
 * row, the outbox record. The out_trade_no was checked by the merchant's cell. */
static void apply_xcell_payment(pay_t *p, ledger_t *l, uint64_t *clock, const pay_request_t *r,
                                pay_object_t *o) {
    const uint8_t k = PAY_KIND_PAYMENT;
    if (r->peer_cell == p->config.cell_id) return answer_error(o, k, PAY_ERR_INVALID);
    /* The merchant is this cell's: the gateway's route table is not the cells' (wrong_cell is
     * not stored, and a retry by a corrected table pays locally). */
    if (pay_owns_uid(p, r->actor)) return answer_error(o, k, PAY_ERR_WRONG_CELL);
    uint32_t again = pay_find(&p->payments_ix, r->payment_id);
    if (again != LINDEX_NONE) return xcell_payment_again(p, again, r, o);
    uint32_t buyer_row = pay_find(&p->users_ix, r->uid);
    if (buyer_row == LINDEX_NONE) return answer_error(o, k, PAY_ERR_NOT_FOUND);
    u128 buyer_account = pay_account_id(r->uid, PAY_ACCOUNT_USER, r->currency);
    ledger_account_t a;
    if (!lookup_account(l, buyer_account, &a)) return answer_error(o, k, PAY_ERR_CURRENCY_MISMATCH);
    /* Back pressure on a stalled relay: nothing may debit without its outbox record. */
    if (p->n.outbox_count >= p->config.outbox_max) return answer_error(o, k, PAY_ERR_FULL);
    if (p->n.payments >= p->config.payments_max) return answer_error(o, k, PAY_ERR_FULL);
    pay_move_t m = {
        .id = r->payment_id,
        .debit = side_existing(buyer_account),
        .credit = side_clearing(r->peer_cell, r->currency),
        .amount = r->amount,
        .currency = r->currency,
        .code = PAY_LEDGER_CODE_PAYMENT,
    };
    uint64_t ts = 0;
    pay_code_t code = move_money(p, l, clock, &m, &ts);
    if (code != PAY_CREATED) return answer_error(o, k, code);
    pay_payment_row_t *pr = add_payment(p, buyer_row, r, m.id, ts);
    pr->peer_cell = r->peer_cell;
    pr->credit = PAY_CREDIT_PENDING;
    pr->outbox_seq = outbox_append_credit(p, pr);
    pay_payment_object(pr, o);
    o->code = PAY_CREATED;
}

static void apply_payment(pay_t *p, ledger_t *l, uint64_t *clock, const pay_request_t *r,
                          pay_object_t *o) {
    if (r->payment_id != 0) return apply_xcell_payment(p, l, clock, r, o);
    apply_local_payment(p, l, clock, r, o);
}

static void apply_tcc_ack(pay_t *p, const pay_request_t *r, pay_object_t *o);

/* The buyer's cell learns that the merchant's cell applied an outbox record: credited a
 * payment, or confirmed / cancelled a refund activity's branch. */
static void apply_ack(pay_t *p, const pay_request_t *r, pay_object_t *o) {
    uint32_t row = pay_find(&p->payments_ix, r->payment_id);
    if (row == LINDEX_NONE) return apply_tcc_ack(p, r, o);
    if (p->payments[row].credit == PAY_CREDIT_LOCAL)
        return answer_error(o, PAY_KIND_ACK, PAY_ERR_NOT_FOUND);
    pay_payment_row_t *pr = &p->payments[row];
    if (pr->credit == PAY_CREDIT_PENDING) {
        outbox_ack(p, pr->outbox_seq);
        pr->credit = PAY_CREDIT_CREDITED;
    }
    *o = (pay_object_t){
        .id = pr->id, .uid = pr->buyer, .peer_cell = pr->peer_cell, .kind = PAY_KIND_ACK};
}

/* A refund row (and its indexes) for a refund whose money moved (transfer id, ts). */
static pay_refund_row_t *add_refund(pay_t *p, uint32_t prow, u128 id, u128 dup, u128 amount,
                                    const char text[PAY_TEXT_MAX], uint64_t ts) {
    cp_assert(p->n.refunds < p->config.refunds_max);
    const pay_payment_row_t *pr = &p->payments[prow];
    uint32_t row = p->n.refunds++;
    pay_refund_row_t *rr = &p->refunds[row];
    *rr = (pay_refund_row_t){
        .id = id,
        .dup_key = dup,
        .payment_id = pr->id,
        .amount = amount,
        .buyer = pr->buyer,
        .merchant = pr->merchant,
        .created_at = ts,
        .currency = pr->currency,
        .payment_row = prow,
    };
    memcpy(rr->text, text, PAY_TEXT_MAX);
    lindex_insert(&p->refunds_ix, lindex_hash(rr->id), row);
    lindex_insert(&p->refunds_dup_ix, lindex_hash(rr->dup_key), row);
    return rr;
}

static void apply_xcell_refund(pay_t *p, uint64_t clock, const pay_request_t *r, uint32_t prow,
                               u128 dup, u128 refunded, pay_object_t *o);

static void apply_refund(pay_t *p, ledger_t *l, uint64_t *clock, const pay_request_t *r,
                         pay_object_t *o) {
    const uint8_t k = PAY_KIND_REFUND;
    uint32_t prow = pay_find(&p->payments_ix, r->payment_id);
    /* Another merchant's payment does not exist for this one (merchant isolation). */
    if (prow == LINDEX_NONE || p->payments[prow].merchant != r->actor)
        return answer_error(o, k, PAY_ERR_NOT_FOUND);
    pay_payment_row_t *pr = &p->payments[prow];
    /* Refunds taken, and refunds of a cross-cell payment still trying, hold theirs. */
    u128 dup = pay_refund_dup_key(pr->id, r->text);
    if (pay_find(&p->refunds_dup_ix, dup) != LINDEX_NONE ||
        pay_find(&p->tcc_dup_ix, dup) != LINDEX_NONE)
        return answer_error(o, k, PAY_ERR_DUPLICATE_OUT_REQUEST_NO);
    u128 refunded;
    if (!u128_add_checked(pr->refunded, r->amount, &refunded) || refunded > pr->amount)
        return answer_error(o, k, PAY_ERR_REFUND_EXCEEDS);
    /* The merchant's receivable is in its own cell: it must hold the money before the buyer
     * gets it here (TCC, docs/cross-cell.md). The caller names that cell when it runs the TCC
     * steps; one that does not (a gateway before TCC) gets cross_cell, as before. */
    if (r->peer_cell != (pr->credit == PAY_CREDIT_LOCAL ? 0 : pr->peer_cell))
        return answer_error(o, k, r->peer_cell ? PAY_ERR_INVALID : PAY_ERR_CROSS_CELL);
    if (pr->credit != PAY_CREDIT_LOCAL)
        return apply_xcell_refund(p, *clock, r, prow, dup, refunded, o);
    if (p->n.refunds >= p->config.refunds_max) return answer_error(o, k, PAY_ERR_FULL);
    pay_move_t m = {
        .id = next_id(p, pr->buyer),
        .debit = side_existing(pay_account_id(pr->merchant, PAY_ACCOUNT_MERCHANT, pr->currency)),
        .credit = side_existing(pay_account_id(pr->buyer, PAY_ACCOUNT_USER, pr->currency)),
        .amount = r->amount,
        .user_data = pr->id,
        .currency = pr->currency,
        .code = PAY_LEDGER_CODE_REFUND,
        .fresh_id = true,
    };
    uint64_t ts = 0;
    pay_code_t code = move_money(p, l, clock, &m, &ts);
    if (code != PAY_CREATED) return answer_error(o, k, code);
    pr->refunded = refunded;
    pay_refund_row_t *rr = add_refund(p, prow, m.id, dup, r->amount, r->text, ts);
    pay_refund_object(rr, o);
    o->code = PAY_CREATED;
}

/* ---- Idempotency keys: a FIFO ring, each key kept 24 h by the cell clock ---- */

static bool idem_expired(const pay_idem_row_t *row, uint64_t clock) {
    return clock >= row->created_at && clock - row->created_at >= PAY_IDEMPOTENCY_NS;
}

/* The live, unexpired row of key, or LINDEX_NONE. */
static uint32_t idem_lookup(const pay_t *p, u128 key, uint64_t clock) {
    uint32_t row = pay_find(&p->idem_ix, key);
    if (row == LINDEX_NONE || idem_expired(&p->idem[row], clock)) return LINDEX_NONE;
    return row;
}

/* Is there a ring row to store a new key in? */
static bool idem_room(const pay_t *p, uint64_t clock) {
    if (p->n.idem_count < p->config.idempotency_max) return true;
    return idem_expired(&p->idem[p->n.idem_head], clock);
}

static void idem_unindex(pay_t *p, uint32_t row) {
    pay_idem_row_t *old = &p->idem[row];
    if (!old->live) return;
    lindex_remove(&p->idem_ix, lindex_hash(old->key), row);
    old->live = 0;
}

static void idem_store(pay_t *p, u128 key, u128 body_hash, uint64_t clock,
                       const pay_object_t *answer) {
    uint32_t row = p->n.idem_head;
    if (p->n.idem_count == p->config.idempotency_max)
        idem_unindex(p, row);
    else
        p->n.idem_count++;
    /* An expired row with the same key may still be indexed: it gives way to the new one. */
    uint32_t stale = pay_find(&p->idem_ix, key);
    if (stale != LINDEX_NONE) idem_unindex(p, stale);
    p->idem[row] = (pay_idem_row_t){
        .key = key, .body_hash = body_hash, .created_at = clock, .live = 1, .answer = *answer};
    lindex_insert(&p->idem_ix, lindex_hash(key), row);
    p->n.idem_head = row + 1 == p->config.idempotency_max ? 0 : row + 1;
}

/* ---- Cross-cell orders, in the merchant's cell (docs/cross-cell.md) ---- */

static void order_object(const pay_order_row_t *x, pay_object_t *o) {
    *o = (pay_object_t){
        .id = x->id,
        .amount = x->amount,
        .uid = x->buyer,
        .merchant = x->merchant,
        .created_at = x->created_at / PAY_NS_PER_MS,
        .currency = x->currency,
        .kind = PAY_KIND_ORDER,
        .code = PAY_OK,
    };
    memcpy(o->text, x->text, PAY_TEXT_MAX);
}

static void order_hold_otn(pay_t *p, uint32_t row) {
    cp_assert(!p->orders[row].holds_otn);
    p->orders[row].holds_otn = 1;
    lindex_insert(&p->orders_dup_ix, lindex_hash(p->orders[row].dup_key), row);
}

static void order_free_otn(pay_t *p, uint32_t row) {
    cp_assert(p->orders[row].holds_otn);
    p->orders[row].holds_otn = 0;
    lindex_remove(&p->orders_dup_ix, lindex_hash(p->orders[row].dup_key), row);
}

/* Reserves the out_trade_no and draws the payment id; the buyer's cell pays it next. */
static void apply_order(pay_t *p, uint64_t clock, const pay_request_t *r, pay_object_t *o) {
    const uint8_t k = PAY_KIND_ORDER;
    if (r->peer_cell == p->config.cell_id) return answer_error(o, k, PAY_ERR_INVALID);
    /* A buyer of this cell pays locally, in one request: the gateway's table is wrong. */
    if (pay_owns_uid(p, r->uid)) return answer_error(o, k, PAY_ERR_WRONG_CELL);
    if (pay_find(&p->merchants_ix, r->actor) == LINDEX_NONE)
        return answer_error(o, k, PAY_ERR_NOT_FOUND);
    u128 dup = pay_payment_dup_key(r->actor, r->text);
    if (otn_taken(p, dup)) return answer_error(o, k, PAY_ERR_DUPLICATE_OUT_TRADE_NO);
    if (p->n.orders >= p->config.orders_max || p->n.seq >= PAY_SEQ_MAX)
        return answer_error(o, k, PAY_ERR_FULL);
    uint32_t row = p->n.orders++;
    pay_order_row_t *x = &p->orders[row];
    *x = (pay_order_row_t){
        .id = next_id(p, r->uid),
        .dup_key = dup,
        .idem_key = r->idem_key ? pay_idem_key(r->actor, r->idem_key) : 0,
        .amount = r->amount,
        .buyer = r->uid,
        .merchant = r->actor,
        .created_at = clock,
        .currency = r->currency,
        .state = PAY_ORDER_RESERVED,
        .body_hash = r->body_hash,
        .peer_cell = r->peer_cell,
    };
    memcpy(x->text, r->text, PAY_TEXT_MAX);
    p->n.seq++;
    lindex_insert(&p->orders_ix, lindex_hash(x->id), row);
    order_hold_otn(p, row);
    order_object(x, o);
    o->code = PAY_CREATED;
}

/* The buyer's cell refused the order's payment: the out_trade_no is free again and the
 * order's key (if still kept) answers that refusal, as a local payment's key would. */
static void apply_release(pay_t *p, const pay_request_t *r, pay_object_t *o) {
    const uint8_t k = PAY_KIND_RELEASE;
    uint32_t row = pay_find(&p->orders_ix, r->payment_id);
    if (row == LINDEX_NONE || p->orders[row].merchant != r->actor)
        return answer_error(o, k, PAY_ERR_NOT_FOUND);
    pay_order_row_t *x = &p->orders[row];
    /* The money moved: the buyer's cell did not refuse it, whoever says so. */
    if (x->state == PAY_ORDER_CREDITED) return answer_error(o, k, PAY_ERR_INVALID);
    if (x->state == PAY_ORDER_RESERVED) {
        order_free_otn(p, row);
        x->state = PAY_ORDER_FAILED;
        uint32_t key_row = x->idem_key ? pay_find(&p->idem_ix, x->idem_key) : LINDEX_NONE;
        /* The key may have expired and been taken by a later request: only the order's own
         * answer is replaced. */
        if (key_row != LINDEX_NONE && p->idem[key_row].answer.kind == PAY_KIND_ORDER &&
            p->idem[key_row].answer.id == x->id)
            answer_error(&p->idem[key_row].answer, PAY_KIND_PAYMENT, (pay_code_t)r->code);
        pay_orders_low_advance(p);
    }
    *o = (pay_object_t){.id = x->id, .uid = x->buyer, .merchant = x->merchant, .kind = k};
}

/* The order was paid: it is credited, and holds its out_trade_no. A released (failed) order
 * gets it back unless a payment or order took it meanwhile; then both stand (two paid orders
 * with one out_trade_no), which only a release of a payment the buyer's cell made can lead
 * to: the money moved, so the credit may not be refused. */
static void order_credited(pay_t *p, uint32_t row) {
    pay_order_row_t *x = &p->orders[row];
    if (x->state == PAY_ORDER_FAILED && !otn_taken(p, x->dup_key)) order_hold_otn(p, row);
    x->state = PAY_ORDER_CREDITED;
    pay_orders_low_advance(p);
}

void pay_orders_low_advance(pay_t *p) {
    while (p->orders_low < p->n.orders && p->orders[p->orders_low].state != PAY_ORDER_RESERVED)
        p->orders_low++;
}

uint32_t pay_orders_reserved(const pay_t *p) {
    uint32_t n = 0;
    for (uint32_t row = p->orders_low; row < p->n.orders; row++)
        n += p->orders[row].state == PAY_ORDER_RESERVED;
    return n;
}

uint32_t pay_orders_stale(const pay_t *p, uint64_t clock, uint64_t older_than, u128 after,
                          pay_order_stale_t *out, uint32_t max) {
    uint32_t n = 0, start = p->orders_low;
    uint32_t after_row = after ? pay_find(&p->orders_ix, after) : LINDEX_NONE;
    if (after_row != LINDEX_NONE && after_row >= start) start = after_row + 1;
    /* Rows are appended in clock order: the first one too young ends the look. */
    for (uint32_t row = start; row < p->n.orders && n < max; row++) {
        const pay_order_row_t *x = &p->orders[row];
        if (clock < x->created_at || clock - x->created_at < older_than) break;
        if (x->state != PAY_ORDER_RESERVED || x->peer_cell == 0) continue;
        out[n++] = (pay_order_stale_t){.payment_id = x->id,
                                       .body_hash = x->body_hash,
                                       .buyer = x->buyer,
                                       .merchant = x->merchant,
                                       .peer_cell = x->peer_cell};
    }
    return n;
}

/* The buyer's cell, asked by the merchant's cell's resolver about an order left reserved
 * (pay.h: resolve). The payment, the refusal stored under its key, or else a tombstone under
 * that key so that no later payment of it moves money: the order is given up either way. */
static void apply_resolve(pay_t *p, uint64_t clock, const pay_request_t *r, pay_object_t *o) {
    const uint8_t k = PAY_KIND_RESOLVE;
    if (r->peer_cell == p->config.cell_id) return answer_error(o, k, PAY_ERR_INVALID);
    if (pay_owns_uid(p, r->actor)) return answer_error(o, k, PAY_ERR_WRONG_CELL);
    uint32_t row = pay_find(&p->payments_ix, r->payment_id);
    if (row != LINDEX_NONE) {
        const pay_payment_row_t *pr = &p->payments[row];
        if (pr->credit == PAY_CREDIT_LOCAL || pr->merchant != r->actor)
            return answer_error(o, k, PAY_ERR_INVALID);
        return pay_payment_object(pr, o); /* code ok: its credit is on its way */
    }
    u128 key = pay_idem_key(r->actor, r->payment_id);
    uint32_t key_row = idem_lookup(p, key, clock);
    if (key_row != LINDEX_NONE) {
        /* No payment row: a refusal of the payment (a success made one), or the tombstone.
         * Anything else under that key is another request's that took it (a raw request
         * naming P as its key): nothing the resolver may release on. */
        const pay_object_t *stored = &p->idem[key_row].answer;
        if (stored->kind != PAY_KIND_PAYMENT || stored->code == PAY_OK ||
            stored->code == PAY_CREATED)
            return answer_error(o, k, PAY_ERR_INVALID);
        *o = *stored;
        o->replayed = 0;
        return;
    }
    if (!idem_room(p, clock)) return answer_error(o, k, PAY_ERR_FULL);
    answer_error(o, PAY_KIND_PAYMENT, PAY_ERR_CANCELLED);
    idem_store(p, key, r->body_hash, clock, o);
}

static bool transfer_exists(const ledger_t *l, u128 id) {
    ledger_transfer_t t;
    return ledger_lookup_transfers(l, &id, 1, &t) == 1;
}

/* The relay's delivery of an outbox record: clearing toward the buyer's cell -> merchant,
 * transfer id pay_leg_id(payment id), which makes every later delivery a no-op. */
static void apply_credit(pay_t *p, ledger_t *l, uint64_t *clock, const pay_request_t *r,
                         pay_object_t *o) {
    const uint8_t k = PAY_KIND_CREDIT;
    if (r->peer_cell == p->config.cell_id || pay_owns_uid(p, r->uid) ||
        !order_id_valid(r->payment_id, r->uid, p->config.cell_id))
        return answer_error(o, k, PAY_ERR_INVALID); /* not an order of this cell's drawing */
    uint32_t row = pay_find(&p->orders_ix, r->payment_id);
    const pay_order_row_t *x = row == LINDEX_NONE ? NULL : &p->orders[row];
    if (x && (x->amount != r->amount || x->currency != r->currency || x->merchant != r->actor))
        return answer_error(o, k, PAY_ERR_INVALID);
    pay_code_t code = PAY_OK;
    if (!transfer_exists(l, pay_leg_id(r->payment_id)) && (!x || x->state != PAY_ORDER_CREDITED)) {
        pay_move_t m = {
            .id = pay_leg_id(r->payment_id),
            .debit = side_clearing(r->peer_cell, r->currency),
            .credit = side_receivable(r->actor, r->currency),
            .amount = r->amount,
            .user_data = r->payment_id,
            .currency = r->currency,
            .code = PAY_LEDGER_CODE_CREDIT,
        };
        uint64_t ts = 0;
        code = move_money(p, l, clock, &m, &ts);
        if (code != PAY_CREATED) return answer_error(o, k, code);
    }
    if (x) order_credited(p, row);
    *o = (pay_object_t){.id = r->payment_id,
                        .amount = r->amount,
                        .uid = r->uid,
                        .merchant = r->actor,
                        .currency = r->currency,
                        .kind = k,
                        .code = (uint8_t)code,
                        .peer_cell = r->peer_cell};
}

/* ---- Cross-cell refunds by TCC (docs/cross-cell.md) ----
 * The buyer's cell B records a refund activity R (trying), the merchant's cell M tries
 * (pending transfer leg(R) and a branch record), B decides in one entry (confirm: the money
 * from clearing to the buyer and the refund row; cancel: the hold released) and writes the
 * decision to the outbox, which the relay delivers to M as a Confirm (post) or Cancel (void).
 * Every step is idempotent by R; M's branch record gives empty rollback and anti-hanging. */

static pay_tcc_row_t *tcc_add(pay_t *p, const pay_tcc_row_t *x) {
    cp_assert(p->n.tcc < p->config.tcc_max);
    uint32_t row = p->n.tcc++;
    p->tcc[row] = *x;
    lindex_insert(&p->tcc_ix, lindex_hash(x->id), row);
    return &p->tcc[row];
}

/* The refund as the API sees it while trying (or cancelled): from the activity. */
static void activity_object(const pay_tcc_row_t *a, pay_object_t *o) {
    *o = (pay_object_t){
        .id = a->id,
        .amount = a->amount,
        .payment_id = a->payment_id,
        .uid = a->buyer,
        .merchant = a->merchant,
        .created_at = a->created_at / PAY_NS_PER_MS,
        .currency = a->currency,
        .kind = PAY_KIND_REFUND,
        .code = PAY_TRYING,
        .peer_cell = a->peer_cell,
    };
    memcpy(o->text, a->text, PAY_TEXT_MAX);
}

/* Step 1, B: the refund of a cross-cell payment, checked as a local one by apply_refund().
 * No money moves: the amount is held against the payment (so concurrent refunds cannot pass
 * it) and the out_request_no is taken until the decision. */
static void apply_xcell_refund(pay_t *p, uint64_t clock, const pay_request_t *r, uint32_t prow,
                               u128 dup, u128 refunded, pay_object_t *o) {
    pay_payment_row_t *pr = &p->payments[prow];
    if (p->n.tcc >= p->config.tcc_max || p->n.seq >= PAY_SEQ_MAX)
        return answer_error(o, PAY_KIND_REFUND, PAY_ERR_FULL);
    pay_tcc_row_t x = {
        .id = next_id(p, pr->buyer),
        .dup_key = dup,
        .payment_id = pr->id,
        .amount = r->amount,
        .idem_key = r->idem_key ? pay_idem_key(r->actor, r->idem_key) : 0,
        .buyer = pr->buyer,
        .merchant = pr->merchant,
        .created_at = clock,
        .currency = pr->currency,
        .peer_cell = pr->peer_cell,
        .payment_row = prow,
        .role = PAY_TCC_ACTIVITY,
        .state = PAY_ACTIVITY_TRYING,
    };
    memcpy(x.text, r->text, PAY_TEXT_MAX);
    p->n.seq++;
    pay_tcc_row_t *a = tcc_add(p, &x);
    lindex_insert(&p->tcc_dup_ix, lindex_hash(a->dup_key), (uint32_t)(a - p->tcc));
    p->n.tcc_trying++;
    pr->refunded = refunded;
    activity_object(a, o);
}

/* The refund's key (if it is still the activity's) answers the decision from now on, as a
 * released order's key answers the refusal. */
static void activity_store_answer(pay_t *p, const pay_tcc_row_t *a, const pay_object_t *answer) {
    uint32_t key_row = a->idem_key ? pay_find(&p->idem_ix, a->idem_key) : LINDEX_NONE;
    if (key_row == LINDEX_NONE) return;
    pay_object_t *stored = &p->idem[key_row].answer;
    uint8_t kind = a->type == PAY_TCC_TRANSFER ? PAY_KIND_TRANSFER : PAY_KIND_REFUND;
    if (stored->kind == kind && stored->code == PAY_TRYING && stored->id == a->id)
        *stored = *answer;
}

/* A transfer's write answer (created or trying): its object as a query shows it, but for
 * merchant_credit, which changes when the recipient's cell acknowledges; an answer stored
 * under a key is replayed byte for byte, so it leaves that out. */
static void transfer_answer(const pay_tcc_row_t *a, pay_code_t code, pay_object_t *o) {
    pay_transfer_object(a, o);
    o->code = (uint8_t)code;
    o->merchant_credit = 0;
}

/* The decided answer: the refund (transfer) created, or the refusal it was cancelled with. */
static void activity_decided_answer(const pay_t *p, const pay_tcc_row_t *a, pay_object_t *o) {
    uint8_t kind = a->type == PAY_TCC_TRANSFER ? PAY_KIND_TRANSFER : PAY_KIND_REFUND;
    if (a->state == PAY_ACTIVITY_CANCELLING || a->state == PAY_ACTIVITY_CANCELLED)
        return answer_error(o, kind, (pay_code_t)a->code);
    if (a->type == PAY_TCC_TRANSFER) return transfer_answer(a, PAY_CREATED, o);
    uint32_t row = pay_find(&p->refunds_ix, a->id);
    cp_assert(row != LINDEX_NONE);
    pay_refund_object(&p->refunds[row], o);
    o->code = PAY_CREATED;
}

/* The decision's outbox record: the relay delivers it to M as kind. */
static uint64_t outbox_append_decision(pay_t *p, const pay_tcc_row_t *a, uint8_t kind) {
    return outbox_append(p, (pay_outbox_row_t){
                                .payment_id = a->id,
                                .amount = a->amount,
                                .buyer = a->buyer,
                                .merchant = a->merchant,
                                .currency = a->currency,
                                .peer_cell = a->peer_cell,
                                .kind = kind,
                                .tcc_type = a->type,
                            });
}

/* Confirm, B: clearing toward M -> buyer (transfer id R), the refund row, the record. */
static void decide_confirm(pay_t *p, ledger_t *l, uint64_t *clock, pay_tcc_row_t *a,
                           pay_object_t *o) {
    if (p->n.refunds >= p->config.refunds_max)
        return answer_error(o, PAY_KIND_DECIDE, PAY_ERR_FULL);
    pay_move_t m = {
        .id = a->id,
        .debit = side_clearing(a->peer_cell, a->currency),
        .credit = side_existing(pay_account_id(a->buyer, PAY_ACCOUNT_USER, a->currency)),
        .amount = a->amount,
        .user_data = a->payment_id,
        .currency = a->currency,
        .code = PAY_LEDGER_CODE_REFUND,
    };
    uint64_t ts = 0;
    pay_code_t code = move_money(p, l, clock, &m, &ts);
    /* Nothing changed (an overflow of the buyer's balance, or full): the gateway cancels. */
    if (code != PAY_CREATED) return answer_error(o, PAY_KIND_DECIDE, code);
    lindex_remove(&p->tcc_dup_ix, lindex_hash(a->dup_key), (uint32_t)(a - p->tcc));
    add_refund(p, a->payment_row, a->id, a->dup_key, a->amount, a->text, ts);
    a->state = PAY_ACTIVITY_CONFIRMING;
    a->outbox_seq = outbox_append_decision(p, a, PAY_KIND_CONFIRM);
    p->n.tcc_trying--;
    activity_decided_answer(p, a, o);
    activity_store_answer(p, a, o);
}

/* Cancel, B: the hold released and the out_request_no free again; nothing moved. */
static void decide_cancel(pay_t *p, pay_tcc_row_t *a, uint8_t code, pay_object_t *o) {
    pay_payment_row_t *pr = &p->payments[a->payment_row];
    cp_assert(pr->refunded >= a->amount);
    pr->refunded -= a->amount;
    lindex_remove(&p->tcc_dup_ix, lindex_hash(a->dup_key), (uint32_t)(a - p->tcc));
    a->state = PAY_ACTIVITY_CANCELLING;
    a->code = code;
    a->outbox_seq = outbox_append_decision(p, a, PAY_KIND_CANCEL);
    p->n.tcc_trying--;
    activity_decided_answer(p, a, o);
    activity_store_answer(p, a, o);
}

static pay_code_t hold_resolve(pay_t *p, ledger_t *l, uint64_t *clock, u128 pending_id,
                               u128 phase2_id, bool post);

/* Step 3 of a transfer, A, one entry: confirm posts the sender's held money (T), cancel voids
 * it; the record to C either way. A hold that expired (the sender's money released by the
 * ledger, so it can no longer be taken) is decided cancelled, whatever was asked: A is the
 * coordinator, and C then gets the Cancel. */
static void decide_transfer(pay_t *p, ledger_t *l, uint64_t *clock, pay_tcc_row_t *a, uint8_t code,
                            pay_object_t *o) {
    bool confirm = code == PAY_OK;
    pay_code_t res = hold_resolve(p, l, clock, a->id, pay_tcc_phase2_id(a->id), confirm);
    if (res == PAY_ERR_CANCELLED && confirm) {
        confirm = false;
        code = PAY_ERR_CANCELLED;
    } else if (res != PAY_CREATED && res != PAY_ERR_CANCELLED) {
        return answer_error(o, PAY_KIND_DECIDE, res); /* full: nothing changed */
    }
    a->state = confirm ? PAY_ACTIVITY_CONFIRMING : PAY_ACTIVITY_CANCELLING;
    a->code = confirm ? 0 : code;
    a->outbox_seq = outbox_append_decision(p, a, confirm ? PAY_KIND_CONFIRM : PAY_KIND_CANCEL);
    p->n.tcc_trying--;
    activity_decided_answer(p, a, o);
    activity_store_answer(p, a, o);
}

/* Step 3, B (A): the gateway's (or the recovery's) decision. The first one wins. */
static void apply_decide(pay_t *p, ledger_t *l, uint64_t *clock, const pay_request_t *r,
                         pay_object_t *o) {
    uint32_t row = pay_find(&p->tcc_ix, r->payment_id);
    /* A transfer within this cell (peer_cell 0) was never anyone's to decide. */
    if (row == LINDEX_NONE || p->tcc[row].role != PAY_TCC_ACTIVITY || p->tcc[row].buyer != r->uid ||
        p->tcc[row].peer_cell == 0)
        return answer_error(o, PAY_KIND_DECIDE, PAY_ERR_NOT_FOUND);
    pay_tcc_row_t *a = &p->tcc[row];
    /* A cancel names a refusal the Try of this kind of activity can give. */
    if (r->code != PAY_OK && r->code != PAY_ERR_CANCELLED && !try_refusal(a->type, r->code))
        return answer_error(o, PAY_KIND_DECIDE, PAY_ERR_INVALID);
    if (a->state != PAY_ACTIVITY_TRYING) return activity_decided_answer(p, a, o);
    /* Nothing may be decided without its record to M (back pressure, as a payment's). */
    if (p->n.outbox_count >= p->config.outbox_max)
        return answer_error(o, PAY_KIND_DECIDE, PAY_ERR_FULL);
    if (a->type == PAY_TCC_TRANSFER) return decide_transfer(p, l, clock, a, r->code, o);
    if (r->code == PAY_OK) return decide_confirm(p, l, clock, a, o);
    decide_cancel(p, a, r->code, o);
}

/* The relay's acknowledgement of a decision's delivery. */
static void apply_tcc_ack(pay_t *p, const pay_request_t *r, pay_object_t *o) {
    uint32_t row = pay_find(&p->tcc_ix, r->payment_id);
    pay_tcc_row_t *a = row == LINDEX_NONE ? NULL : &p->tcc[row];
    if (!a || a->role != PAY_TCC_ACTIVITY || a->state == PAY_ACTIVITY_TRYING || a->peer_cell == 0)
        return answer_error(o, PAY_KIND_ACK, PAY_ERR_NOT_FOUND);
    if (a->state == PAY_ACTIVITY_CONFIRMING || a->state == PAY_ACTIVITY_CANCELLING) {
        outbox_ack(p, a->outbox_seq);
        a->state =
            a->state == PAY_ACTIVITY_CONFIRMING ? PAY_ACTIVITY_CONFIRMED : PAY_ACTIVITY_CANCELLED;
    }
    *o = (pay_object_t){
        .id = a->id, .uid = a->buyer, .peer_cell = a->peer_cell, .kind = PAY_KIND_ACK};
}

uint32_t pay_activities_trying(const pay_t *p) {
    return p->n.tcc_trying;
}

uint32_t pay_activities_stale(const pay_t *p, uint64_t clock, uint64_t older_than, u128 *out,
                              uint32_t max) {
    uint32_t n = 0, seen = 0;
    /* Rows are appended in clock order: oldest first. */
    for (uint32_t row = 0; row < p->n.tcc && seen < p->n.tcc_trying && n < max; row++) {
        const pay_tcc_row_t *a = &p->tcc[row];
        if (a->role != PAY_TCC_ACTIVITY || a->state != PAY_ACTIVITY_TRYING) continue;
        seen++;
        if (clock >= a->created_at && clock - a->created_at >= older_than) out[n++] = a->id;
    }
    return n;
}

/* ---- The merchant's cell's branches ---- */

/* A transfer's branch keeps its recipient where a refund's keeps its merchant. */
static void branch_answer(const pay_tcc_row_t *b, uint8_t kind, pay_code_t code, pay_object_t *o) {
    bool transfer = b->type == PAY_TCC_TRANSFER;
    *o = (pay_object_t){
        .id = b->id,
        .amount = b->amount,
        .uid = b->buyer,
        .merchant = transfer ? 0 : b->merchant,
        .created_at = b->created_at / PAY_NS_PER_MS,
        .currency = b->currency,
        .kind = kind,
        .code = (uint8_t)code,
        .peer_cell = b->peer_cell,
        .recipient = transfer ? b->merchant : 0,
    };
}

/* The branch's party in this cell: a refund's merchant, a transfer's recipient. */
static uint64_t branch_party(const pay_request_t *r) {
    return r->tcc_type == PAY_TCC_TRANSFER ? r->recipient : r->actor;
}

/* The branch of R, LINDEX_NONE when none; *bad when a row of R names another refund or
 * transfer (its type, amount, currency, merchant or recipient, buyer or sender, or their
 * cell): a request the relay does not make. */
static uint32_t branch_find(const pay_t *p, const pay_request_t *r, bool *bad) {
    uint32_t row = pay_find(&p->tcc_ix, r->payment_id);
    *bad = false;
    if (row == LINDEX_NONE) return row;
    const pay_tcc_row_t *b = &p->tcc[row];
    /* R drawn by another cell (checked) is never one of this cell's activities. */
    cp_assert(b->role == PAY_TCC_BRANCH);
    *bad = b->amount != r->amount || b->currency != r->currency || b->merchant != branch_party(r) ||
           b->buyer != r->uid || b->peer_cell != r->peer_cell || b->type != r->tcc_type;
    return row;
}

static pay_tcc_row_t branch_row(const pay_request_t *r, uint64_t clock, uint8_t state) {
    return (pay_tcc_row_t){
        .id = r->payment_id,
        .amount = r->amount,
        .buyer = r->uid,
        .merchant = branch_party(r),
        .created_at = clock,
        .currency = r->currency,
        .peer_cell = r->peer_cell,
        .role = PAY_TCC_BRANCH,
        .state = state,
        .type = r->tcc_type,
    };
}

/* Is the request's buyer's cell another cell (the branch steps come from there)? */
static bool branch_request_ok(const pay_t *p, const pay_request_t *r) {
    return r->peer_cell != p->config.cell_id && !pay_owns_uid(p, r->uid);
}

/* The Try's pending transfer leg(R): a refund's takes the merchant's money toward the buyer's
 * cell; a transfer's brings the money from the sender's cell to the recipient, who must have
 * an account in the currency (else the refusal, PAY_OK when it may be tried). */
static pay_code_t branch_move(const pay_t *p, const ledger_t *l, const pay_request_t *r,
                              pay_move_t *m) {
    *m = (pay_move_t){
        .id = pay_leg_id(r->payment_id),
        .amount = r->amount,
        .user_data = r->payment_id,
        .currency = r->currency,
        .pending_timeout = PAY_TCC_TRY_TIMEOUT_S,
    };
    if (r->tcc_type == PAY_TCC_REFUND) {
        m->debit = side_existing(pay_account_id(r->actor, PAY_ACCOUNT_MERCHANT, r->currency));
        m->credit = side_clearing(r->peer_cell, r->currency);
        m->code = PAY_LEDGER_CODE_REFUND_TRY;
        return PAY_OK;
    }
    u128 account = pay_account_id(r->recipient, PAY_ACCOUNT_USER, r->currency);
    ledger_account_t a;
    if (pay_find(&p->users_ix, r->recipient) == LINDEX_NONE) return PAY_ERR_NOT_FOUND;
    if (!lookup_account(l, account, &a)) return PAY_ERR_CURRENCY_MISMATCH;
    m->debit = side_clearing(r->peer_cell, r->currency);
    m->credit = side_existing(account);
    m->code = PAY_LEDGER_CODE_TRANSFER_CREDIT;
    return PAY_OK;
}

/* Step 2, M (C): the Try holds the merchant's money in a pending transfer leg(R) (brings the
 * sender's to the recipient, pending: not available before the Confirm posts it). */
static void apply_try(pay_t *p, ledger_t *l, uint64_t *clock, const pay_request_t *r,
                      pay_object_t *o) {
    const uint8_t k = PAY_KIND_TRY;
    bool bad;
    if (!branch_request_ok(p, r)) return answer_error(o, k, PAY_ERR_INVALID);
    uint32_t row = branch_find(p, r, &bad);
    if (bad) return answer_error(o, k, PAY_ERR_INVALID);
    if (row != LINDEX_NONE) {
        const pay_tcc_row_t *b = &p->tcc[row];
        switch (b->state) {
        case PAY_BRANCH_REFUSED: return answer_error(o, k, (pay_code_t)b->code);
        /* Anti-hanging: a Try after its Cancel holds nothing, ever. */
        case PAY_BRANCH_CANCELLED: return answer_error(o, k, PAY_ERR_CANCELLED);
        }
        return branch_answer(b, k, PAY_OK, o);
    }
    if (p->n.tcc >= p->config.tcc_max) return answer_error(o, k, PAY_ERR_FULL);
    pay_move_t m;
    uint64_t ts = 0;
    pay_code_t code = branch_move(p, l, r, &m);
    if (code == PAY_OK) code = move_money(p, l, clock, &m, &ts);
    bool refused = try_refusal(r->tcc_type, (uint8_t)code);
    /* Full or invalid: not recorded, the relay's retry may succeed. */
    if (code != PAY_CREATED && !refused) return answer_error(o, k, code);
    pay_tcc_row_t x = branch_row(r, *clock, refused ? PAY_BRANCH_REFUSED : PAY_BRANCH_TRIED);
    x.code = refused ? (uint8_t)code : 0;
    const pay_tcc_row_t *b = tcc_add(p, &x);
    if (refused) return answer_error(o, k, code);
    branch_answer(b, k, PAY_CREATED, o);
}

/* Posts or voids a held pending transfer (a branch's leg(R), a transfer's T in its sender's
 * cell) with the transfer id phase2_id: PAY_CREATED; PAY_ERR_CANCELLED when it expired (its
 * money is released already); PAY_ERR_FULL; PAY_ERR_INVALID when the ledger disagrees (raw
 * ledger commands on the same ids). */
static pay_code_t hold_resolve(pay_t *p, ledger_t *l, uint64_t *clock, u128 leg, u128 phase2_id,
                               bool post) {
    ledger_transfer_t pend;
    if (ledger_lookup_transfers(l, &leg, 1, &pend) != 1) return PAY_ERR_INVALID;
    if (!ledger_room(p, l, *clock, 0, false)) return PAY_ERR_FULL;
    /* Expired at its expiry time, whether or not ledger_expire() ran: then the ledger would
     * refuse the post or void (leaving a failed id), and there is nothing left to void. */
    uint64_t expires = pend.timestamp + (uint64_t)pend.timeout * 1000000000ull;
    if (pend.timeout != 0 && expires <= *clock + 2) return PAY_ERR_CANCELLED;
    ledger_transfer_t t = {
        .id = phase2_id,
        .debit_account_id = pend.debit_account_id,
        .credit_account_id = pend.credit_account_id,
        .amount = pend.amount,
        .pending_id = leg,
        .user_data_128 = pend.user_data_128,
        .ledger = pend.ledger,
        .code = pend.code,
        .flags = post ? LEDGER_TRANSFER_POST_PENDING : LEDGER_TRANSFER_VOID_PENDING,
    };
    ledger_result_t res;
    *clock += 2;
    cp_assert(ledger_create_transfers(l, *clock, &t, 1, &res) == LEDGER_OK);
    return res.result == LEDGER_TRANSFER_CREATED ? PAY_CREATED : PAY_ERR_INVALID;
}

static pay_code_t branch_resolve(pay_t *p, ledger_t *l, uint64_t *clock, const pay_tcc_row_t *b,
                                 bool post) {
    return hold_resolve(p, l, clock, pay_leg_id(b->id), pay_tcc_phase2_id(b->id), post);
}

/* Step 4, M: the decision confirm. Only a tried branch has money to post: anything else is
 * refused and changes nothing (it cannot happen unless a cell is broken). */
static void apply_confirm(pay_t *p, ledger_t *l, uint64_t *clock, const pay_request_t *r,
                          pay_object_t *o) {
    const uint8_t k = PAY_KIND_CONFIRM;
    bool bad;
    if (!branch_request_ok(p, r)) return answer_error(o, k, PAY_ERR_INVALID);
    uint32_t row = branch_find(p, r, &bad);
    if (bad) return answer_error(o, k, PAY_ERR_INVALID);
    if (row == LINDEX_NONE) return answer_error(o, k, PAY_ERR_NOT_FOUND);
    pay_tcc_row_t *b = &p->tcc[row];
    if (b->state == PAY_BRANCH_CONFIRMED) return branch_answer(b, k, PAY_OK, o);
    if (b->state != PAY_BRANCH_TRIED) return answer_error(o, k, PAY_ERR_CANCELLED);
    pay_code_t code = branch_resolve(p, l, clock, b, true);
    if (code != PAY_CREATED) return answer_error(o, k, code);
    b->state = PAY_BRANCH_CONFIRMED;
    branch_answer(b, k, PAY_CREATED, o);
}

/* Step 4, M: the decision cancel; with no Try yet, empty rollback (recorded, so that a late
 * Try is refused). */
static void apply_cancel(pay_t *p, ledger_t *l, uint64_t *clock, const pay_request_t *r,
                         pay_object_t *o) {
    const uint8_t k = PAY_KIND_CANCEL;
    bool bad;
    if (!branch_request_ok(p, r)) return answer_error(o, k, PAY_ERR_INVALID);
    uint32_t row = branch_find(p, r, &bad);
    if (bad) return answer_error(o, k, PAY_ERR_INVALID);
    if (row == LINDEX_NONE) {
        if (p->n.tcc >= p->config.tcc_max) return answer_error(o, k, PAY_ERR_FULL);
        pay_tcc_row_t x = branch_row(r, *clock, PAY_BRANCH_CANCELLED);
        return branch_answer(tcc_add(p, &x), k, PAY_CREATED, o);
    }
    pay_tcc_row_t *b = &p->tcc[row];
    switch (b->state) {
    case PAY_BRANCH_CANCELLED: return branch_answer(b, k, PAY_OK, o);
    /* The money moved in both cells: the buyer's cell did not cancel it, whoever says so. */
    case PAY_BRANCH_CONFIRMED: return answer_error(o, k, PAY_ERR_INVALID);
    case PAY_BRANCH_TRIED: {
        pay_code_t code = branch_resolve(p, l, clock, b, false);
        /* Expired: the ledger released the money already; the cancel still holds. */
        if (code != PAY_CREATED && code != PAY_ERR_CANCELLED) return answer_error(o, k, code);
        break;
    }
    }
    b->state = PAY_BRANCH_CANCELLED;
    b->code = 0; /* a refused branch's refusal: cancelled is all there is to say now */
    branch_answer(b, k, PAY_CREATED, o);
}

/* ---- User-to-user transfers (docs/cross-cell.md) ----
 * In one cell: one entry, sender -> recipient (transfer id T), the transfer's row. Across
 * cells, TCC with the sender's cell A as initiator: the transfer request holds the sender's
 * money at once (pending T, sender -> clearing toward C) and records the activity T trying;
 * the recipient's cell C tries a credit branch (apply_try, tcc_type transfer); A decides
 * (decide_transfer) and its outbox carries the decision to C, as for refunds. */

/* Checks the sender (and, in this cell, the recipient): PAY_OK or the refusal. */
static pay_code_t transfer_parties(const pay_t *p, const ledger_t *l, const pay_request_t *r,
                                   bool local) {
    ledger_account_t a;
    if (pay_find(&p->users_ix, r->uid) == LINDEX_NONE) return PAY_ERR_NOT_FOUND;
    if (local && pay_find(&p->users_ix, r->recipient) == LINDEX_NONE) return PAY_ERR_NOT_FOUND;
    if (!lookup_account(l, pay_account_id(r->uid, PAY_ACCOUNT_USER, r->currency), &a))
        return PAY_ERR_CURRENCY_MISMATCH;
    if (local &&
        !lookup_account(l, pay_account_id(r->recipient, PAY_ACCOUNT_USER, r->currency), &a))
        return PAY_ERR_CURRENCY_MISMATCH;
    return PAY_OK;
}

/* The money's move: within the cell sender -> recipient; across cells sender -> clearing
 * toward C, pending: the sender's money is held until A decides, and the timeout frees it
 * only if nobody decides for a day (a decide then finds it expired and cancels). */
static pay_move_t transfer_move(const pay_t *p, const pay_request_t *r, bool local) {
    u128 to = pay_account_id(r->recipient, PAY_ACCOUNT_USER, r->currency);
    return (pay_move_t){
        .id = next_id(p, r->uid),
        .debit = side_existing(pay_account_id(r->uid, PAY_ACCOUNT_USER, r->currency)),
        .credit = local ? side_existing(to) : side_clearing(r->peer_cell, r->currency),
        .amount = r->amount,
        .user_data = local ? 0 : (u128)r->recipient,
        .currency = r->currency,
        .code = PAY_LEDGER_CODE_TRANSFER,
        .fresh_id = true,
        .pending_timeout = local ? 0 : PAY_TCC_TRY_TIMEOUT_S,
    };
}

/* The transfer's row: succeeded at once within the cell, else the activity, trying; its key
 * (across cells) so that the decision replaces the trying answer under it. */
static pay_tcc_row_t transfer_row(const pay_request_t *r, u128 id, uint64_t ts, bool local) {
    return (pay_tcc_row_t){
        .id = id,
        .amount = r->amount,
        .idem_key = !local && r->idem_key ? pay_idem_key(r->actor, r->idem_key) : 0,
        .buyer = r->uid,
        .merchant = r->recipient,
        .created_at = ts,
        .currency = r->currency,
        .peer_cell = r->peer_cell,
        .role = PAY_TCC_ACTIVITY,
        .state = local ? PAY_ACTIVITY_CONFIRMED : PAY_ACTIVITY_TRYING,
        .type = PAY_TCC_TRANSFER,
    };
}

static void apply_transfer(pay_t *p, ledger_t *l, uint64_t *clock, const pay_request_t *r,
                           pay_object_t *o) {
    const uint8_t k = PAY_KIND_TRANSFER;
    bool local = r->peer_cell == 0;
    if (r->peer_cell == p->config.cell_id) return answer_error(o, k, PAY_ERR_INVALID);
    /* The gateway names C from its route table; a table that disagrees with this cell's
     * zones (a recipient of ours named elsewhere, or one not ours named here) is retried once
     * it is right: wrong_cell is not stored. */
    if (pay_owns_uid(p, r->recipient) != local) return answer_error(o, k, PAY_ERR_WRONG_CELL);
    pay_code_t code = transfer_parties(p, l, r, local);
    if (code != PAY_OK) return answer_error(o, k, code);
    if (p->n.tcc >= p->config.tcc_max) return answer_error(o, k, PAY_ERR_FULL);
    pay_move_t m = transfer_move(p, r, local);
    uint64_t ts = 0;
    code = move_money(p, l, clock, &m, &ts);
    if (code != PAY_CREATED) return answer_error(o, k, code);
    pay_tcc_row_t x = transfer_row(r, m.id, ts, local);
    const pay_tcc_row_t *a = tcc_add(p, &x);
    if (!local) p->n.tcc_trying++;
    transfer_answer(a, local ? PAY_CREATED : PAY_TRYING, o);
}

/* ---- pay_apply ---- */

static void apply_kind(pay_t *p, ledger_t *l, uint64_t *clock, const pay_request_t *r,
                       pay_object_t *o) {
    switch (r->kind) {
    case PAY_KIND_MERCHANT: return apply_merchant(p, clock, r, o);
    case PAY_KIND_USER: return apply_user(p, l, clock, r, o);
    case PAY_KIND_TOPUP: return apply_topup(p, l, clock, r, o);
    case PAY_KIND_PAYMENT: return apply_payment(p, l, clock, r, o);
    case PAY_KIND_REFUND: return apply_refund(p, l, clock, r, o);
    case PAY_KIND_ORDER: return apply_order(p, *clock, r, o);
    case PAY_KIND_RELEASE: return apply_release(p, r, o);
    case PAY_KIND_CREDIT: return apply_credit(p, l, clock, r, o);
    case PAY_KIND_ACK: return apply_ack(p, r, o);
    case PAY_KIND_TRY: return apply_try(p, l, clock, r, o);
    case PAY_KIND_DECIDE: return apply_decide(p, l, clock, r, o);
    case PAY_KIND_CONFIRM: return apply_confirm(p, l, clock, r, o);
    case PAY_KIND_CANCEL: return apply_cancel(p, l, clock, r, o);
    case PAY_KIND_TRANSFER: return apply_transfer(p, l, clock, r, o);
    case PAY_KIND_RESOLVE: return apply_resolve(p, *clock, r, o);
    default: cp_assert(!"request_valid() admits known kinds only");
    }
}

void pay_apply(pay_t *p, ledger_t *l, uint64_t *clock, const pay_request_t *r, pay_object_t *o) {
    if (!request_valid(r)) return answer_error(o, r->kind, PAY_ERR_INVALID);
    if (!pay_owns_uid(p, pay_request_route_uid(r)))
        return answer_error(o, r->kind, PAY_ERR_WRONG_CELL);
    if (r->idem_key == 0) return apply_kind(p, l, clock, r, o);
    u128 key = pay_idem_key(r->actor, r->idem_key);
    uint32_t row = idem_lookup(p, key, *clock);
    if (row != LINDEX_NONE) {
        if (p->idem[row].body_hash != r->body_hash)
            return answer_error(o, r->kind, PAY_ERR_IDEMPOTENCY_CONFLICT);
        *o = p->idem[row].answer;
        o->replayed = 1;
        return;
    }
    if (!idem_room(p, *clock)) return answer_error(o, r->kind, PAY_ERR_FULL);
    uint64_t started = *clock;
    apply_kind(p, l, clock, r, o);
    /* Not stored: the request did not happen here. A cross-cell refusal belongs to no cell's
     * keys either: the merchant's key must stay free for its own cell (the gateway refuses
     * cross-cell requests before they get here; this one came by an outdated route). */
    if (o->code == PAY_ERR_WRONG_CELL || o->code == PAY_ERR_FULL || o->code == PAY_ERR_INVALID ||
        o->code == PAY_ERR_CROSS_CELL)
        return;
    idem_store(p, key, r->body_hash, started, o);
}

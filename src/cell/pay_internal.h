/* The payments state's rows and indexes, shared by pay.c (requests), pay_query.c (reads)
 * and pay_image.c (hash, snapshots). Every table is a fixed array allocated once; every
 * row starts with its u128 key so that an lindex can point at it, and a second lindex points
 * at a second key inside the same row (the duplicate checks). */
#ifndef CP_PAY_INTERNAL_H
#define CP_PAY_INTERNAL_H

#include <stddef.h>

#include "base/assert.h"
#include "cell/pay.h"
#include "ledger/ledger_index.h"

#define PAY_SEQ_BITS 40u
#define PAY_SEQ_MAX ((1ull << PAY_SEQ_BITS) - 1)
#define PAY_CELL_ID_MAX ((uint64_t)PAY_CELL_MAX)
#define PAY_NS_PER_MS 1000000ull

typedef struct pay_merchant_row {
    u128 uid;            /* key: the merchant's uid */
    uint64_t created_at; /* cell clock, ns */
    uint64_t reserved;
    uint8_t secret[PAY_SECRET_SIZE];
} pay_merchant_row_t;

typedef struct pay_user_row {
    u128 uid;        /* key: the user's uid */
    uint32_t newest; /* payments row of its newest payment as buyer, LINDEX_NONE: none */
    uint32_t reserved;
    uint64_t created_at; /* cell clock, ns */
} pay_user_row_t;

typedef struct pay_payment_row {
    u128 id;
    u128 dup_key; /* pay_payment_dup_key(merchant, out_trade_no) */
    u128 amount;
    u128 refunded; /* sum of its refunds, <= amount */
    uint64_t buyer;
    uint64_t merchant;
    uint64_t created_at; /* cell clock, ns (the ledger transfer's timestamp) */
    uint32_t currency;
    uint32_t prev; /* the buyer's previous payment row, LINDEX_NONE: none */
    char text[PAY_TEXT_MAX];
    uint32_t peer_cell;  /* cross-cell: the merchant's cell; 0: a local payment */
    uint32_t credit;     /* pay_credit_t */
    uint64_t outbox_seq; /* cross-cell: its outbox record's seq; 0: local */
} pay_payment_row_t;

/* The merchant's side of a cross-cell payment, as its buyer's cell sees it. A local payment
 * is credited in its own entry. */
typedef enum pay_credit {
    PAY_CREDIT_LOCAL = 0,
    PAY_CREDIT_PENDING = 1,  /* cross-cell, its outbox record not acknowledged yet */
    PAY_CREDIT_CREDITED = 2, /* cross-cell, acknowledged: the merchant's cell credited it */
} pay_credit_t;

/* A cross-cell order in the merchant's cell (docs/cross-cell.md). */
typedef enum pay_order_state {
    PAY_ORDER_RESERVED = 1, /* holds its out_trade_no, waiting for the buyer's cell */
    PAY_ORDER_FAILED = 2,   /* released: the buyer's cell refused, out_trade_no free */
    PAY_ORDER_CREDITED = 3, /* the merchant received the money */
} pay_order_state_t;

typedef struct pay_order_row {
    u128 id;       /* key: the payment id drawn for it */
    u128 dup_key;  /* pay_payment_dup_key(merchant, out_trade_no) */
    u128 idem_key; /* pay_idem_key(merchant, the order's key); 0: it came without a key */
    u128 amount;
    uint64_t buyer;
    uint64_t merchant;
    uint64_t created_at; /* cell clock, ns */
    uint32_t currency;
    uint8_t state;     /* pay_order_state_t */
    uint8_t holds_otn; /* 1: its dup_key is in orders_dup_ix (out_trade_no taken by it) */
    uint16_t reserved;
    char text[PAY_TEXT_MAX];
    u128 body_hash;     /* the order request's: a resolve's tombstone in the buyer's cell
                         * must answer a late payment of it as a replay (pay.h) */
    uint32_t peer_cell; /* the buyer's cell (0: not named; never resolved) */
    uint32_t reserved_2;
    uint64_t reserved_3;
} pay_order_row_t;

/* One outbox record in the buyer's cell: a cross-cell payment whose credit the relay has to
 * deliver. Kept until it is acknowledged and every older record is too (a FIFO ring). */
typedef struct pay_outbox_row {
    u128 payment_id;
    u128 amount;
    uint64_t buyer;
    uint64_t merchant;
    uint64_t seq;
    uint32_t currency;
    uint32_t peer_cell;
    uint32_t acked;    /* 1: acknowledged (reclaimed once it reaches the head) */
    uint32_t kind;     /* pay_kind_t to deliver: CREDIT (payment_id: the payment), CONFIRM or
                        * CANCEL (payment_id: a refund or transfer activity) */
    uint32_t tcc_type; /* CONFIRM, CANCEL: pay_tcc_type_t (a transfer's: merchant = recipient) */
    uint32_t reserved_2;
} pay_outbox_row_t;

/* Cross-cell refunds and transfers by TCC (docs/cross-cell.md). One table holds both roles a
 * cell plays: the initiator's activities and the participant's branches, keyed by R (or T).
 * They never collide: an activity's id was drawn by this cell, a branch's by another. (One
 * table, not two, because the image header has room for one more count only.) Transfers
 * within one cell are rows here too (activities decided in their own entry, peer_cell 0), so
 * that every transfer T has its row in its sender's cell, where its query is routed.
 * A transfer's row: buyer = the sender, merchant = the recipient, type PAY_TCC_TRANSFER;
 * dup_key, payment_id, payment_row and text are 0. */
typedef enum pay_tcc_role {
    PAY_TCC_ACTIVITY = 1,
    PAY_TCC_BRANCH = 2,
} pay_tcc_role_t;

typedef enum pay_activity_state {
    PAY_ACTIVITY_TRYING = 1,     /* held against the payment, out_request_no taken; a
                                  * transfer: the pending transfer T holds the sender's money */
    PAY_ACTIVITY_CONFIRMING = 2, /* refunded here; its CONFIRM record not acknowledged */
    PAY_ACTIVITY_CONFIRMED = 3,  /* and acknowledged */
    PAY_ACTIVITY_CANCELLING = 4, /* hold released; its CANCEL record not acknowledged */
    PAY_ACTIVITY_CANCELLED = 5,  /* and acknowledged */
} pay_activity_state_t;

typedef enum pay_branch_state {
    PAY_BRANCH_TRIED = 1,     /* the pending transfer leg(R) holds the merchant's money (a
                               * transfer: brings the recipient's) */
    PAY_BRANCH_REFUSED = 2,   /* the Try was refused (code); nothing held */
    PAY_BRANCH_CONFIRMED = 3, /* leg(R) posted */
    PAY_BRANCH_CANCELLED = 4, /* voided (or expired), or cancelled with no Try: no Try may hold */
} pay_branch_state_t;

typedef struct pay_tcc_row {
    u128 id;         /* key: R */
    u128 dup_key;    /* activity: pay_refund_dup_key(payment, out_request_no); branch: 0 */
    u128 payment_id; /* activity: the payment refunded; branch: 0 */
    u128 amount;
    u128 idem_key; /* activity: pay_idem_key(actor, the refund's key); 0: none, branch */
    uint64_t buyer;
    uint64_t merchant;
    uint64_t created_at; /* cell clock, ns */
    uint64_t outbox_seq; /* activity decided: its outbox record; else 0 */
    uint32_t currency;
    uint32_t peer_cell;      /* activity: the merchant's cell; branch: the buyer's cell */
    uint32_t payment_row;    /* activity: its payment's row; branch: 0 */
    uint8_t role;            /* pay_tcc_role_t */
    uint8_t state;           /* pay_activity_state_t / pay_branch_state_t */
    uint8_t code;            /* activity cancelling/cancelled, branch refused: the refusal */
    uint8_t type;            /* pay_tcc_type_t */
    char text[PAY_TEXT_MAX]; /* activity: out_request_no */
} pay_tcc_row_t;

typedef struct pay_refund_row {
    u128 id;
    u128 dup_key; /* pay_refund_dup_key(payment id, out_request_no) */
    u128 payment_id;
    u128 amount;
    uint64_t buyer;
    uint64_t merchant;
    uint64_t created_at;
    uint32_t currency;
    uint32_t payment_row;
    char text[PAY_TEXT_MAX];
} pay_refund_row_t;

typedef struct pay_topup_row {
    u128 id;
    u128 amount;
    uint64_t uid;
    uint64_t created_at;
    uint32_t currency;
    uint32_t reserved;
    uint64_t reserved_2;
} pay_topup_row_t;

/* One stored idempotency key. `live` is 0 once the key expired and was replaced by a new
 * row with the same key (its index entry then points at the new row). */
typedef struct pay_idem_row {
    u128 key; /* pay_idem_key(actor, idem_key) */
    u128 body_hash;
    uint64_t created_at; /* cell clock, ns */
    uint32_t live;
    uint32_t reserved;
    pay_object_t answer;
} pay_idem_row_t;

CP_STATIC_ASSERT(sizeof(pay_merchant_row_t) == 64, "merchant row");
CP_STATIC_ASSERT(sizeof(pay_user_row_t) == 32, "user row");
CP_STATIC_ASSERT(sizeof(pay_payment_row_t) == 176, "payment row");
CP_STATIC_ASSERT(sizeof(pay_order_row_t) == 192, "order row");
CP_STATIC_ASSERT(sizeof(pay_outbox_row_t) == 80, "outbox row");
CP_STATIC_ASSERT(sizeof(pay_tcc_row_t) == 192, "tcc row");
CP_STATIC_ASSERT(offsetof(pay_tcc_row_t, id) == 0, "key first");
CP_STATIC_ASSERT(offsetof(pay_tcc_row_t, dup_key) == 16, "second key");
CP_STATIC_ASSERT(offsetof(pay_order_row_t, id) == 0, "key first");
CP_STATIC_ASSERT(offsetof(pay_order_row_t, dup_key) == 16, "second key");
CP_STATIC_ASSERT(sizeof(pay_refund_row_t) == 160, "refund row");
CP_STATIC_ASSERT(sizeof(pay_topup_row_t) == 64, "top-up row");
CP_STATIC_ASSERT(sizeof(pay_idem_row_t) == 304, "idempotency row");
CP_STATIC_ASSERT(offsetof(pay_merchant_row_t, uid) == 0, "key first");
CP_STATIC_ASSERT(offsetof(pay_user_row_t, uid) == 0, "key first");
CP_STATIC_ASSERT(offsetof(pay_payment_row_t, id) == 0, "key first");
CP_STATIC_ASSERT(offsetof(pay_payment_row_t, dup_key) == 16, "second key");
CP_STATIC_ASSERT(offsetof(pay_refund_row_t, id) == 0, "key first");
CP_STATIC_ASSERT(offsetof(pay_refund_row_t, dup_key) == 16, "second key");
CP_STATIC_ASSERT(offsetof(pay_idem_row_t, key) == 0, "key first");

typedef struct pay_counts {
    uint32_t merchants, users, payments, refunds, topups;
    uint32_t idem_count; /* rows of the ring in use */
    uint32_t idem_head;  /* the ring row written next (the oldest once the ring is full) */
    uint32_t orders;
    uint32_t outbox_count;   /* outbox rows in use, acknowledged or not */
    uint32_t outbox_head;    /* the outbox row of the oldest record */
    uint32_t outbox_unacked; /* records not acknowledged (derived: the relay's backlog) */
    uint32_t tcc;            /* rows of the tcc table (activities and branches) */
    uint64_t seq;            /* the last object sequence number handed out */
    uint64_t outbox_seq;     /* the last outbox seq handed out (records are numbered from 1) */
    uint32_t tcc_trying;     /* activities trying (derived) */
    uint32_t reserved;       /* explicit, so the hash of the counters has no padding */
} pay_counts_t;

struct pay {
    pay_config_t config; /* zones resolved: never empty */
    pay_merchant_row_t *merchants;
    pay_user_row_t *users;
    pay_payment_row_t *payments;
    pay_refund_row_t *refunds;
    pay_topup_row_t *topups;
    pay_idem_row_t *idem;
    pay_order_row_t *orders;
    pay_outbox_row_t *outbox;
    pay_tcc_row_t *tcc;
    pay_counts_t n;
    /* Derived, not hashed: every order below this row is released or credited (an order
     * never becomes reserved again), so pay_orders_stale() starts here. */
    uint32_t orders_low;
    /* payments_dup_ix: local payments only (a cross-cell one's out_trade_no is the merchant
     * cell's, held there by its order); orders_dup_ix: the orders that hold theirs. */
    /* tcc_ix: every activity and branch by R; tcc_dup_ix: the trying activities, by the
     * out_request_no they hold (a decided one's is its refund row's, or free). */
    lindex_t merchants_ix, users_ix, payments_ix, payments_dup_ix, refunds_ix, refunds_dup_ix,
        idem_ix, orders_ix, orders_dup_ix, tcc_ix, tcc_dup_ix;
};

u128 pay_hash128(const void *p, size_t n);
u128 pay_payment_dup_key(uint64_t merchant, const char text[PAY_TEXT_MAX]);
u128 pay_refund_dup_key(u128 payment_id, const char text[PAY_TEXT_MAX]);
u128 pay_idem_key(uint64_t actor, u128 idem_key);

static inline uint32_t pay_find(const lindex_t *ix, u128 key) {
    return lindex_find(ix, key, lindex_hash(key));
}

bool pay_owns_uid(const pay_t *pay, uint64_t uid);
bool pay_currency_valid(uint32_t currency);
bool pay_text_valid(const char text[PAY_TEXT_MAX], bool required);
bool pay_zero(const void *p, size_t n);
/* The object of a payment / refund row (code PAY_OK). */
void pay_payment_object(const pay_payment_row_t *p, pay_object_t *out);
void pay_refund_object(const pay_refund_row_t *r, pay_object_t *out);
/* The object of a transfer's row (an activity of type transfer; code PAY_OK). */
void pay_transfer_object(const pay_tcc_row_t *a, pay_object_t *out);
/* The outbox row of seq (which must be in the ring). */
uint32_t pay_outbox_row(const pay_t *pay, uint64_t seq);
/* Moves orders_low past the orders that are no longer reserved. */
void pay_orders_low_advance(pay_t *pay);
/* The outbox ring's head row: always (outbox_seq - outbox_count) mod outbox_max, as records
 * are numbered from 1 into row 0 and both move on by one (so the image need not carry it). */
static inline uint32_t pay_outbox_head(uint64_t outbox_seq, uint32_t count, uint32_t max) {
    return (uint32_t)((outbox_seq - count) % max);
}

#endif

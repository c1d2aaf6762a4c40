/* Payments: the layer of the cell state machine behind the HTTP API (shared/docs/api-v1.md).
 * Merchants and their secrets, users, top-ups, payment orders, refunds and the API's
 * idempotency keys live here, in the owning cell's replicated state, and every money movement
 * they make is a ledger transfer applied in the same log entry. Deterministic like the rest of
 * the cell: time is the cell's clock, randomness (a merchant's secret) comes in the request.
 *
 * Wire. PROTO_OP_PAY (a write) carries whole pay_request_t items and is answered with one
 * pay_object_t per item, in order; items are independent (one failing changes nothing of the
 * others), so the client may merge concurrent submissions into one message. PROTO_OP_PAY_QUERY
 * (a read) carries one pay_query_t and is answered with pay_object_t items (see pay_query_t).
 *
 * Accounts (docs/api.md): every API account is a ledger account whose id's upper 64 bits are
 * the owner's uid (so it routes to the owner's zone), then a 32-bit kind and the currency:
 *   user balance         (uid << 64) | (PAY_ACCOUNT_USER << 32)     | currency
 *   merchant receivable  (uid << 64) | (PAY_ACCOUNT_MERCHANT << 32) | currency
 *   bank clearing        (PAY_SYSTEM_UID << 64) | (PAY_ACCOUNT_BANK << 32) | currency
 * The ledger number of every account and transfer is the currency (pay_currency_pack()); the
 * account code is its pay_account_kind_t, the transfer code PAY_LEDGER_CODE_* below (a
 * refund's transfer carries its payment id in user_data_128). User
 * and merchant accounts may not go below zero (debits_must_not_exceed_credits); the cell's
 * bank-clearing account is where top-ups come from and goes negative by what was topped up.
 *
 * Object ids (payments, refunds, top-ups; also their ledger transfer ids): the owning user's
 * uid in the upper 64 bits, so the gateway routes a request that names only an id, then a leg
 * bit (bit 63 of the low half: 0 for the object itself, 1 for the second leg of a cross-cell
 * payment, pay_leg_id()), the number of the cell that made the id (23 bits) and that cell's
 * sequence (40 bits). The API writes them as a prefix and 32 lowercase hex digits: "pay_...",
 * "re_...", "tu_...".
 *
 * Cross-cell payments (docs/cross-cell.md): buyer and merchant in different cells. The
 * merchant's cell keeps the merchant's idempotency keys and out_trade_no's, so it reserves an
 * order first (PAY_KIND_ORDER, which also draws the payment id); the buyer's cell then pays
 * it in one entry (PAY_KIND_PAYMENT with payment_id set): buyer -> its clearing account toward
 * the merchant's cell, the payment row, and an outbox record. The relay delivers outbox
 * records as PAY_KIND_CREDIT items to the merchant's cell (clearing toward the buyer's cell ->
 * merchant, transfer id pay_leg_id(payment id), so a repeat is recognized by the ledger) and
 * acknowledges them in the buyer's cell with PAY_KIND_ACK. A payment the buyer's cell refuses
 * gives its order back with PAY_KIND_RELEASE. A refund of a cross-cell payment is TCC
 * (docs/cross-cell.md): the buyer's cell records a refund activity (PAY_KIND_REFUND answered
 * PAY_TRYING), the merchant's cell holds the money in a pending transfer (PAY_KIND_TRY), the
 * buyer's cell decides (PAY_KIND_DECIDE) and its outbox carries the decision to the merchant's
 * cell (PAY_KIND_CONFIRM / PAY_KIND_CANCEL). A user-to-user transfer (PAY_KIND_TRANSFER) is one
 * entry within a cell, and across cells the same TCC steps with the sender's cell as initiator
 * (the sender's money held at once, answered PAY_TRYING) and a credit branch in the
 * recipient's cell (tcc_type PAY_TCC_TRANSFER). Clearing accounts:
 *   clearing toward cell C  (PAY_SYSTEM_UID << 64) | ((C << 8 | PAY_ACCOUNT_CLEARING) << 32)
 *                           | currency   (pay_clearing_account_id()) */
#ifndef CP_PAY_H
#define CP_PAY_H

#include <stdbool.h>
#include <stdint.h>

#include "base/u128.h"
#include "base/zone.h"
#include "ledger/ledger.h"

#define PAY_TEXT_MAX 64u          /* out_trade_no, out_request_no */
#define PAY_SECRET_SIZE 32u       /* a merchant's HMAC key, bytes */
#define PAY_SYSTEM_UID UINT64_MAX /* the cell's own accounts; no user may have it */
#define PAY_LIST_MAX 100u         /* items a list query returns at most (+1 for has_more) */
#define PAY_IDEMPOTENCY_NS (86400ull * 1000000000ull) /* keys are kept 24 h */

/* Ledger transfer codes of the money the payments layer moves. */
#define PAY_LEDGER_CODE_TOPUP 1u   /* bank clearing -> user */
#define PAY_LEDGER_CODE_PAYMENT 2u /* user -> merchant receivable */
#define PAY_LEDGER_CODE_REFUND 3u  /* merchant receivable -> user */
#define PAY_LEDGER_CODE_CREDIT 4u  /* cross-cell: clearing toward the buyer's cell -> merchant */
/* Cross-cell refund, merchant's cell: the pending transfer merchant -> clearing toward the
 * buyer's cell (id pay_leg_id(R)), and its post or void (id pay_tcc_phase2_id(R)). In the
 * buyer's cell the refund's transfer (clearing toward the merchant's cell -> buyer, id R) is
 * coded PAY_LEDGER_CODE_REFUND, as a local refund's. */
#define PAY_LEDGER_CODE_REFUND_TRY 5u
/* How long the merchant's cell holds a Try's pending transfer before the ledger voids it on
 * its own (seconds). Only the last line of defence: the buyer's cell decides every activity
 * (its gateway at once, or its relay's recovery after pay_activities_stale()) and the relay
 * delivers the decision within seconds, so the timeout fires only if the buyer's cell or its
 * relay is gone for a day. It must be long because a Confirm arriving after it can no longer
 * take the money (the hold was released): the refund would stand in the buyer's cell with the
 * merchant's cell never debited (see docs/cross-cell.md). */
#define PAY_TCC_TRY_TIMEOUT_S 86400u
/* A cross-cell payment's first leg (buyer -> clearing toward the merchant's cell) is coded
 * PAY_LEDGER_CODE_PAYMENT, as a local payment. */
/* User-to-user transfers (docs/cross-cell.md): sender -> recipient in one cell (id T); across
 * cells, in the sender's cell A the pending transfer sender -> clearing toward the recipient's
 * cell (id T) and its post or void (id pay_tcc_phase2_id(T)). */
#define PAY_LEDGER_CODE_TRANSFER 6u
/* ... and in the recipient's cell C the pending transfer clearing toward A -> recipient (id
 * pay_leg_id(T)) and its post or void (id pay_tcc_phase2_id(T)). */
#define PAY_LEDGER_CODE_TRANSFER_CREDIT 7u

#define PAY_CELL_MAX ((1u << 23) - 1) /* cell numbers: 23 bits of every object id */

typedef enum pay_account_kind {
    PAY_ACCOUNT_USER = 1,
    PAY_ACCOUNT_MERCHANT = 2,
    PAY_ACCOUNT_BANK = 3,
    PAY_ACCOUNT_CLEARING = 4, /* toward one other cell: its number is in bits 8..31 of the kind */
} pay_account_kind_t;

/* What a request does / what an object is. */
typedef enum pay_kind {
    PAY_KIND_MERCHANT = 1, /* create a merchant (operator) */
    PAY_KIND_USER = 2,     /* open a user's account in a currency (operator) */
    PAY_KIND_TOPUP = 3,    /* money from the cell's bank clearing to a user (operator) */
    PAY_KIND_PAYMENT = 4,  /* buyer -> merchant (merchant) */
    PAY_KIND_REFUND = 5,   /* merchant -> buyer, against a payment (merchant) */
    PAY_KIND_BALANCE = 6,  /* objects only: a user's balance in a currency */
    PAY_KIND_LIST = 7,     /* objects only: the head item of a list query's reply */
    /* Cross-cell payments (docs/cross-cell.md); the gateway and the relay send these. */
    PAY_KIND_ORDER = 8,   /* merchant's cell: reserve out_trade_no and a payment id (merchant) */
    PAY_KIND_RELEASE = 9, /* merchant's cell: the buyer's cell refused; free the order */
    PAY_KIND_CREDIT = 10, /* merchant's cell: the relay's delivery of one outbox record */
    PAY_KIND_ACK = 11,    /* buyer's cell: the relay's acknowledgement of one delivery */
    /* Cross-cell refunds by TCC (docs/cross-cell.md): the refund is PAY_KIND_REFUND in the
     * buyer's cell, answered PAY_TRYING; then these. */
    PAY_KIND_TRY = 12,     /* merchant's cell: hold the refund's money (pending transfer) */
    PAY_KIND_DECIDE = 13,  /* buyer's cell: confirm or cancel a trying refund activity */
    PAY_KIND_CONFIRM = 14, /* merchant's cell: the relay's delivery of a confirm: post */
    PAY_KIND_CANCEL = 15,  /* merchant's cell: the relay's delivery of a cancel: void */
    /* A user-to-user transfer (operator), in one cell or by TCC across cells: then the same
     * TRY / DECIDE / CONFIRM / CANCEL with tcc_type PAY_TCC_TRANSFER (docs/cross-cell.md). */
    PAY_KIND_TRANSFER = 16,
    /* Buyer's cell: the merchant's cell's relay asks about an order left reserved (its
     * gateway died and its client never retried): paid, refused, or never to be paid. */
    PAY_KIND_RESOLVE = 17,
} pay_kind_t;

/* What a TCC step is about. A refund's branch debits the participant's merchant (its
 * receivable holds the money, then pays it out); a transfer's branch credits the
 * participant's user (the money arrives pending, then is posted). Same table, same steps. */
typedef enum pay_tcc_type {
    PAY_TCC_REFUND = 0,
    PAY_TCC_TRANSFER = 1,
} pay_tcc_type_t;

/* A transfer's state as its queries and answers show it (pay_object_t.status). */
typedef enum pay_transfer_status {
    PAY_TRANSFER_TRYING = 1,    /* cross-cell: the sender's money held, not decided yet */
    PAY_TRANSFER_SUCCEEDED = 2, /* posted in the sender's cell (recipient's: merchant_credit) */
    PAY_TRANSFER_CANCELLED = 3, /* nothing moved; cancel_code says why */
} pay_transfer_status_t;

/* The outcome of a request or query; the gateway maps it to an HTTP status and error code
 * (docs/api.md). Values are stable: they are stored with idempotency keys. */
typedef enum pay_code {
    PAY_OK = 0,                           /* 200: found, or opened before (user) */
    PAY_CREATED = 1,                      /* 201 */
    PAY_ERR_NOT_FOUND = 2,                /* 404 not_found */
    PAY_ERR_INSUFFICIENT_FUNDS = 3,       /* 402 insufficient_funds */
    PAY_ERR_CURRENCY_MISMATCH = 4,        /* 400 currency_mismatch: no account in that currency */
    PAY_ERR_REFUND_EXCEEDS = 5,           /* 409 refund_exceeds_payment */
    PAY_ERR_IDEMPOTENCY_CONFLICT = 6,     /* 409 idempotency_conflict */
    PAY_ERR_DUPLICATE_OUT_TRADE_NO = 7,   /* 409 duplicate_out_trade_no */
    PAY_ERR_DUPLICATE_OUT_REQUEST_NO = 8, /* 409 duplicate_out_request_no */
    PAY_ERR_MERCHANT_EXISTS = 9,          /* 409 merchant_exists */
    PAY_ERR_CROSS_CELL = 10, /* 422 cross_cell_unsupported: e.g. refund of a cross-cell payment */
    PAY_ERR_WRONG_CELL = 11, /* 503 wrong_cell: the routing uid is not in this cell's zones */
    PAY_ERR_FULL = 12,       /* 503 unavailable: a table of the cell is full */
    PAY_ERR_INVALID = 13,    /* 400 invalid_request: e.g. the reserved uid, unknown kind */
    PAY_ERR_OVERFLOW = 14,   /* 400 invalid_request: the amount would overflow a balance */
    /* Not an outcome yet: a refund of a cross-cell payment is recorded (held against the
     * payment, out_request_no taken) and the merchant's cell must Try next; the gateway
     * then decides (PAY_KIND_DECIDE), which replaces this answer under the key. */
    PAY_TRYING = 15,
    /* A cross-cell step after its cancel: a Try of a refund its buyer's cell cancelled
     * (anti-hanging), a Confirm of a refused or cancelled branch, or a refund the buyer's
     * cell gave up on (recovery; e.g. 409 or 503 retry with a new key). */
    PAY_ERR_CANCELLED = 16,
    PAY_CODE_COUNT = 17,
} pay_code_t;

/* One API write (256 bytes). Fields a kind does not use should be zero; only the reserved
 * bytes are checked (else PAY_ERR_INVALID). Checked per kind, else PAY_ERR_INVALID: a known
 * kind; amount > 0 (top-up, payment, refund, order, credit, transfer and the TCC steps);
 * currency three letters A-Z (user, top-up, payment, order, credit, transfer); text NUL-padded
 * (nothing after the first NUL) and not empty for payment, order and refund; merchant uid not 0 nor
 * PAY_SYSTEM_UID; uid not PAY_SYSTEM_UID; payment, order, refund, release, credit: actor != 0;
 * payment and order: funding 0 or 1 (both mean balance); peer_cell <= PAY_CELL_MAX and not the
 * cell's own where the kind uses it, else 0; code 0 but for release; release, credit, ack: idem_key
 * and body_hash 0 (they are idempotent by their payment id).
 *
 * The cross-cell kinds, field by field (docs/cross-cell.md):
 *   order    (merchant's cell, routed by actor) idem_key and body_hash of the API request,
 *            actor, uid = buyer (of another cell, else invalid), amount, currency, funding,
 *            text = out_trade_no, peer_cell = the buyer's cell (the gateway's route table; 0
 *            from a gateway that does not name it: such an order is never resolved; this
 *            cell's own: invalid). Answer: kind ORDER, id = the payment id drawn, created
 *            (or the stored answer of the key: an ORDER, or the PAYMENT error a release left).
 *   payment  with payment_id != 0 (buyer's cell, routed by uid): the order's payment_id,
 *            idem_key = payment_id (the gateway's key for the buyer's cell), body_hash, actor,
 *            uid, amount, currency, funding, text, peer_cell = the merchant's cell (the
 *            cell in payment_id). The merchant must be of another cell, else invalid.
 *            Answer: the payment, merchant_credit 1 (pending) and peer_cell set.
 *   release  (merchant's cell, routed by actor) payment_id, actor, code = the buyer's cell's
 *            refusal: the order's out_trade_no is free again and its key answers that error.
 *            code: not_found, insufficient_funds, currency_mismatch or overflow (the
 *            refusals the buyer's cell stores), or cancelled (the buyer's cell answered a
 *            resolve, or a late payment, with its tombstone), else invalid. Answer: kind
 *            RELEASE, id = payment_id, code ok (also when released before); not_found: no
 *            such order of this merchant; invalid: the order was credited (nothing changes).
 *   credit   (merchant's cell, routed by actor) payment_id, actor, uid = buyer, amount,
 *            currency, peer_cell = the buyer's cell. Answer: kind CREDIT, id = payment_id,
 *            code created (credited now) or ok (credited before); invalid when payment_id
 *            was not drawn by this cell for that buyer or its order differs (amount,
 *            currency, merchant).
 *   ack      (buyer's cell, routed by uid) payment_id, uid: the merchant's cell applied the
 *            delivered outbox record: a credit (payment_id = the payment) or a confirm /
 *            cancel (payment_id = R). Answer: kind ACK, code ok (also when acknowledged
 *            before); not_found when no cross-cell payment or decided refund activity has
 *            that id.
 *   resolve  (buyer's cell, routed by uid; sent by the merchant's cell's relay for an order
 *            reserved too long, pay_orders_stale()) payment_id = P, actor = merchant, uid =
 *            buyer, body_hash = the order's (its API request's hash, which the gateway also
 *            sends with the payment), peer_cell = the merchant's cell (the cell in P);
 *            idem_key 0 (idempotent by P). Answer, kind PAYMENT: the payment P exists: the
 *            payment, code ok (the merchant's cell waits for its credit); a refusal is stored
 *            under (merchant, key P): that answer; neither: a tombstone is stored under
 *            (merchant, key P) with body_hash, {kind PAYMENT, code cancelled}, and that is the
 *            answer. So a late payment of P gets the tombstone replayed (or, with another
 *            body, idempotency_conflict) and moves nothing while the key is kept (24 h; a
 *            gateway sends P only within its cell deadlines of learning it from M, and after
 *            the release M's key answers the refusal, not P). Errors of the resolve itself,
 *            kind RESOLVE: invalid (P not drawn by peer_cell for uid; the payment P is not
 *            that merchant's cross-cell payment; another kind of request took key P),
 *            wrong_cell (the merchant is this cell's),
 *            full (the idempotency ring: nothing stored, asked again later).
 *
 * Cross-cell refunds (TCC; the buyer's cell B is initiator and coordinator, the merchant's
 * cell M the participant). R is a refund id drawn by B, (buyer << 64) | (B << 40) | seq.
 *   refund   (B, routed by payment_id) of a cross-cell payment, fields as a local refund's
 *            and peer_cell = M (the cell in the payment id; with peer_cell 0 the answer is
 *            cross_cell, what a gateway that does not run TCC gets; a local payment's
 *            refund with peer_cell set is invalid): checked as one (found and the actor's,
 * out_request_no free, amount within the rest), then a refund activity R is recorded trying:
 * refunded += amount (held) and the out_request_no taken; no money moves. Answer: kind REFUND, code
 *            PAY_TRYING, id R, payment_id, amount, uid = buyer, merchant, currency,
 *            created_at, text, peer_cell = M; stored under the key like any answer.
 *   try      (M, routed by actor) payment_id = R, actor, uid = buyer, amount, currency,
 *            peer_cell = B (R drawn by B for that buyer, else invalid). First Try: a pending
 *            transfer pay_leg_id(R) merchant -> clearing toward B (timeout
 *            PAY_TCC_TRY_TIMEOUT_S) and the branch record tried: created. Refused
 *            (insufficient_funds, overflow): the branch is recorded refused and every
 *            repeat answers the same. A repeat of a tried (or confirmed) branch: ok. After
 *            a Cancel of R (also one that found no Try): cancelled (anti-hanging).
 *   decide   (B, routed by uid) payment_id = R, uid = buyer, code = ok (confirm) or the
 *            Try's refusal (cancel: insufficient_funds, overflow, cancelled; the relay's
 *            recovery, and a gateway giving up on a Try it cannot get done, e.g. unavailable,
 *            cancel with cancelled), else invalid. Confirm: clearing toward M ->
 *            buyer (transfer id R, coded as a refund), the refund row, an outbox record
 *            CONFIRM; answer the refund object created. Cancel: the hold released, the
 *            out_request_no free again, an outbox record CANCEL; answer the refusal
 *            (kind REFUND, code the refusal). Either answer replaces the trying one under
 *            the refund's key. The first decision wins: a repeat answers it again, whatever
 *            it asks. Errors of the decide itself have kind DECIDE (not_found: no activity
 *            R of that buyer; full: the outbox or refunds table is full; overflow).
 *   confirm  (M, routed by actor) the fields of the Try: posts the pending transfer; the
 *            branch confirmed: created, ok when before. A branch that was never tried
 *            (not_found), or was refused, cancelled or expired (cancelled) is refused and
 *            nothing changes: no money is made.
 *   cancel   (M, routed by actor) the fields of the Try: voids the pending transfer of a
 *            tried branch; a refused one is marked cancelled; with no branch record one is
 *            recorded cancelled (empty rollback). Created, ok when cancelled before;
 *            invalid for a confirmed branch (nothing changes).
 * try, decide, confirm, cancel carry no idempotency key (idempotent by R); actor is 0 for
 * decide; code is 0 but for decide.
 *
 * User-to-user transfers (the operator's, actor 0: users have no keys of their own; the
 * sender's cell A is initiator and coordinator, the recipient's cell C the participant). T is
 * a transfer id drawn by A, (sender << 64) | (A << 40) | seq; the API writes it "tr_...".
 *   transfer (A, routed by uid) uid = sender, recipient, amount, currency, idem_key and
 *            body_hash as any API write, peer_cell = 0 when the recipient is A's, else C
 *            (the gateway's route table); payment_id, funding, tcc_type 0. Invalid: recipient
 *            = sender or the reserved uid, peer_cell = A. wrong_cell (not stored): a
 *            recipient in A's zones with peer_cell C, or one outside them with peer_cell 0.
 *            Refusals, stored under the key: not_found (the sender; the recipient, local),
 *            currency_mismatch (no account in the currency: the sender's; the recipient's,
 *            local), insufficient_funds, overflow; full is not stored.
 *            Local: one entry, sender -> recipient (transfer id T, PAY_LEDGER_CODE_TRANSFER),
 *            the transfer's row; answer kind TRANSFER, created, status succeeded.
 *            Across cells, one entry: the activity T trying and the pending transfer T
 *            sender -> clearing toward C (timeout PAY_TCC_TRY_TIMEOUT_S), so the money is
 *            held at once. Answer: kind TRANSFER, code PAY_TRYING, status trying, id T,
 *            amount, currency, uid = sender, recipient, created_at, peer_cell = C.
 *   try, confirm, cancel of a transfer (C, routed by recipient): tcc_type PAY_TCC_TRANSFER,
 *            payment_id = T, uid = sender, recipient, amount, currency, peer_cell = A, actor
 *            0. As a refund's, but the Try's pending transfer pay_leg_id(T) is clearing
 *            toward A -> recipient (PAY_LEDGER_CODE_TRANSFER_CREDIT): the recipient gets the
 *            money only when the Confirm posts it. The Try's refusals, stored on the branch:
 *            not_found (no such user in C), currency_mismatch (no account in the currency),
 *            overflow. Answers: id T, amount, uid = sender, recipient, currency, created_at,
 *            peer_cell = A (merchant 0).
 *   decide   (A) payment_id = T, uid = sender, code ok, a transfer Try's refusal (not_found,
 *            currency_mismatch, overflow) or cancelled, else invalid. Confirm: T posted
 *            (transfer id pay_tcc_phase2_id(T)), an outbox record CONFIRM; answer the
 *            transfer, created, status succeeded. Cancel: T voided, an outbox record CANCEL;
 *            answer the refusal (kind TRANSFER, code the refusal). A confirm that finds T
 *            expired (nobody decided for PAY_TCC_TRY_TIMEOUT_S) decides cancelled. As for
 *            refunds: the answer replaces the trying one under the key, the first decision
 *            wins, the relay delivers the record and acks it (PAY_KIND_ACK of T), and
 *            pay_activities_stale() lists a transfer trying too long. Decide and ack of a
 *            transfer within one cell: not_found. */
typedef struct pay_request {
    u128 idem_key;     /* XXH3-128 of the Idempotency-Key header's value; 0: no key */
    u128 body_hash;    /* XXH3-128 of method, path and body as sent: a replay must match */
    u128 payment_id;   /* refund: the payment refunded; cross-cell kinds: the payment or R */
    u128 amount;       /* top-up, payment, refund, order, credit: minor units, above 0 */
    uint64_t actor;    /* the signed merchant making the request; 0: the operator */
    uint64_t uid;      /* merchant, user, top-up: the uid; payment, order, credit, ack: buyer */
    uint32_t currency; /* pay_currency_pack(); refunds take the payment's */
    uint8_t kind;      /* pay_kind_t */
    uint8_t funding;   /* payment: 1 balance (the only one until credit exists) */
    uint8_t code;      /* release: the pay_code_t the buyer's cell answered; decide */
    uint8_t reserved_1;
    uint8_t secret[PAY_SECRET_SIZE]; /* merchant: its new secret, drawn by the gateway */
    char text[PAY_TEXT_MAX];         /* out_trade_no / out_request_no, NUL-padded */
    uint32_t peer_cell; /* cross-cell payment, refund, credit, try, confirm, cancel, transfer,
                         * resolve: the other cell; order: the buyer's cell */
    uint8_t tcc_type;   /* try, confirm, cancel: pay_tcc_type_t; else 0 */
    uint8_t reserved_2[3];
    uint64_t recipient; /* transfer, and try / confirm / cancel of a transfer: the recipient */
    uint8_t reserved[56];
} pay_request_t;

/* One answer or stored object (256 bytes). A request's answer is the object it created or
 * found with `code` its outcome; on an error only kind and code are meaningful (every other
 * byte is zero; kind echoes the request's, but a decide's decision is kind REFUND). Per kind:
 *   merchant: id = uid, uid, created_at, secret;
 *   user:     id = the account id, uid, currency, created_at (the account's);
 *   top-up:   id, amount, uid, currency, created_at;
 *   payment:  id, amount, refunded (including refunds still trying), uid = buyer, merchant,
 *             currency, created_at, merchant_credit, text = out_trade_no;
 *   refund:   id, amount, payment_id, uid = buyer, merchant, currency, created_at,
 *             text = out_request_no (the trying answer of a cross-cell refund also
 *             peer_cell = the merchant's cell);
 *   balance:  id = the account id, uid, currency, amount = available (credits_posted -
 *             debits_posted - debits_pending), refunded = pending (debits_pending);
 *   list:     the head of a list reply: uid and code only (items follow; more than `limit`
 *             items means has_more);
 *   try, confirm, cancel: id = R, amount, uid = buyer, merchant, currency, created_at (the
 *             branch record's), peer_cell = the buyer's cell;
 *   ack:      id = the payment or R, uid, peer_cell;
 *   transfer: id = T, amount, uid = sender, recipient, currency, created_at, peer_cell (0:
 *             within the cell), status; a query also cancel_code (cancelled: the refusal)
 *             and merchant_credit (1: succeeded, the recipient's cell has not acknowledged
 *             its credit yet). A cancelled transfer's write answer is an error (kind, code). */
typedef struct pay_object {
    u128 id;             /* payment, refund, top-up: its id; user: the account id; merchant: uid */
    u128 amount;         /* payment, refund, top-up; balance: available */
    u128 refunded;       /* payment: refunded so far; balance: pending (debits held) */
    u128 payment_id;     /* refund: its payment */
    uint64_t uid;        /* user, merchant, top-up, balance: the uid; payment, refund: the buyer */
    uint64_t merchant;   /* payment, refund: the merchant */
    uint64_t created_at; /* unix milliseconds, from the cell's clock */
    uint32_t currency;
    uint8_t kind;                    /* pay_kind_t */
    uint8_t code;                    /* pay_code_t */
    uint8_t replayed;                /* 1: the stored answer of an earlier request with this key */
    uint8_t merchant_credit;         /* payment: 0 credited, 1 pending (cross-cell, not acked) */
    uint8_t secret[PAY_SECRET_SIZE]; /* merchant: its secret (creation, and the gateway's query) */
    char text[PAY_TEXT_MAX];         /* payment: out_trade_no; refund: out_request_no */
    uint32_t peer_cell;              /* cross-cell payment: the merchant's cell; outbox items */
    uint8_t status;                  /* transfer: pay_transfer_status_t */
    uint8_t cancel_code;             /* transfer cancelled: the refusal (pay_code_t) */
    uint16_t reserved_2;
    uint64_t recipient; /* transfer (and its try, confirm, cancel): the recipient's uid */
    uint8_t reserved[48];
} pay_object_t;

typedef enum pay_query_kind {
    PAY_Q_MERCHANT = 1,      /* uid: the merchant with its secret (for the gateway's check) */
    PAY_Q_PAYMENT = 2,       /* id; actor: a merchant sees only its own (else not_found) */
    PAY_Q_REFUND = 3,        /* id; actor as above */
    PAY_Q_BALANCE = 4,       /* uid, currency */
    PAY_Q_USER_PAYMENTS = 5, /* uid; newest first, limit, after (0: from the newest) */
    PAY_Q_USER = 6,          /* uid, currency: the user object */
    PAY_Q_TRANSFER = 7,      /* id (routed by its upper half: the sender); operator only */
} pay_query_kind_t;

/* One API read (256 bytes). The reply: for a list, one PAY_KIND_LIST head object whose code
 * is the outcome (not_found: no such user, or `after` is not one of its payments), then up to
 * limit + 1 items (more than limit: has_more); otherwise exactly one object with its code. */
typedef struct pay_query {
    u128 id;    /* payment / refund id */
    u128 after; /* list: continue after this payment (starting_after) */
    uint64_t uid;
    uint64_t actor; /* the merchant asking; 0: the operator */
    uint32_t currency;
    uint32_t limit; /* list: 1 ..= PAY_LIST_MAX */
    uint8_t kind;   /* pay_query_kind_t */
    /* 199, not 183: with 183 the struct was 240 bytes while the wire item (proto.c) is 256;
     * the named fields keep their offsets, only the reserved tail grew. */
    uint8_t reserved[199];
} pay_query_t;

/* "CNY" -> its ledger number: the three letters' bytes, little-endian. 0 when not A-Z x3. */
uint32_t pay_currency_pack(const char code[3]);
/* The letters of a packed currency into out[4] (NUL-terminated). */
void pay_currency_unpack(uint32_t currency, char out[4]);

/* The uid a request / query is routed by: the user, buyer, merchant (a transfer's TCC
 * steps in the recipient's cell: the recipient), or for ids (refunds, payment, refund and
 * transfer queries) the id's upper 64 bits. */
uint64_t pay_request_route_uid(const pay_request_t *r);
uint64_t pay_query_route_uid(const pay_query_t *q);

static inline u128 pay_account_id(uint64_t uid, pay_account_kind_t kind, uint32_t currency) {
    return ((u128)uid << 64) | ((u128)kind << 32) | currency;
}

/* ---- The state ---- */

typedef struct pay_config {
    uint32_t merchants_max;
    uint32_t users_max;
    uint32_t payments_max;
    uint32_t refunds_max;
    uint32_t topups_max;
    uint32_t idempotency_max; /* keys kept at once (each for 24 h) */
    uint32_t orders_max;      /* cross-cell orders reserved in this (the merchant's) cell */
    uint32_t outbox_max;      /* cross-cell payments not yet acknowledged, at once */
    uint32_t tcc_max;         /* TCC activities, branches, and transfers within the cell */
    uint64_t cell_id;         /* goes into every object id (bits 40..62 of the low half) */
    cp_zones_t zones;         /* the cell's zones (empty: all) */
    cp_zone_rule_t zone_rule; /* zeros: the default */
} pay_config_t;

typedef struct pay pay_t;

pay_t *pay_create(const pay_config_t *config);
void pay_destroy(pay_t *pay);

/* Applies one request at the cell's clock: *clock is advanced as the cell advances it for a
 * ledger batch (and every money movement is a ledger transfer through `ledger`); out gets
 * the answer. An invalid request (unknown kind, reserved bytes, reserved uid) is answered
 * PAY_ERR_INVALID and changes nothing. With an idempotency key, the answer is stored and a
 * later request with the same actor and key gets it again (replayed = 1) when its body_hash
 * matches, PAY_ERR_IDEMPOTENCY_CONFLICT when not; answers of wrong_cell, full, invalid and
 * cross_cell are not stored (the request did not happen in this cell). */
void pay_apply(pay_t *pay, ledger_t *ledger, uint64_t *clock, const pay_request_t *req,
               pay_object_t *out);

/* Answers a query; out has room for PAY_LIST_MAX + 2 objects. Returns how many it wrote. */
uint32_t pay_query(const pay_t *pay, const ledger_t *ledger, const pay_query_t *q,
                   pay_object_t *out);

/* ---- Cross-cell ---- */

/* The second leg of a cross-cell payment (the credit in the merchant's cell): the payment id
 * with the leg bit set. Unique in the whole system, and derived, so any repeat names it. */
static inline u128 pay_leg_id(u128 payment_id) {
    return payment_id | ((u128)1 << 63);
}

static inline u128 pay_clearing_account_id(uint32_t peer_cell, uint32_t currency) {
    return ((u128)PAY_SYSTEM_UID << 64) |
           ((u128)(((uint32_t)peer_cell << 8) | PAY_ACCOUNT_CLEARING) << 32) | currency;
}

/* The post or void of a cross-cell refund's pending transfer leg(R) in the merchant's cell.
 * A ledger transfer needs an id of its own; R's low half (leg bit set) is unique in the whole
 * system (the drawing cell and its sequence), and no object id has the reserved uid in its
 * upper half, so this id is unique too. Only one of post and void ever happens. */
static inline u128 pay_tcc_phase2_id(u128 r) {
    return ((u128)PAY_SYSTEM_UID << 64) | (uint64_t)pay_leg_id(r);
}

/* One unacknowledged outbox record: what the relay delivers to the merchant's cell, as a
 * request of `kind`: PAY_KIND_CREDIT (a payment's credit; payment_id = the payment),
 * PAY_KIND_CONFIRM or PAY_KIND_CANCEL (a refund or transfer activity's decision; payment_id =
 * R or T). The fields fill the request as they are named (uid = buyer, actor = merchant,
 * tcc_type; a transfer's: uid = its sender, recipient, actor 0), peer_cell = the relay's own
 * cell; the delivery is acknowledged with PAY_KIND_ACK of payment_id and uid. */
typedef struct pay_outbox_item {
    u128 payment_id;
    u128 amount;
    uint64_t buyer; /* a transfer's: its sender */
    union {
        uint64_t merchant;  /* tcc_type PAY_TCC_REFUND (and credits) */
        uint64_t recipient; /* tcc_type PAY_TCC_TRANSFER */
    };
    uint64_t seq; /* its place in the outbox: increasing, never reused */
    uint32_t currency;
    uint32_t peer_cell; /* the merchant's (recipient's) cell */
    uint8_t kind;       /* pay_kind_t: CREDIT, CONFIRM or CANCEL */
    uint8_t tcc_type;   /* CONFIRM, CANCEL: pay_tcc_type_t; CREDIT: 0 */
    uint8_t reserved[6];
} pay_outbox_item_t;

/* Up to max unacknowledged records with seq >= from, oldest first; returns how many. The
 * relay's whole input: a new leader calls it with from = 0 and starts over. */
uint32_t pay_outbox_pending(const pay_t *pay, uint64_t from, pay_outbox_item_t *out, uint32_t max);
/* How many records are not acknowledged (the relay's backlog). */
uint32_t pay_outbox_backlog(const pay_t *pay);

/* Recovery of refund and transfer activities whose gateway died: up to max ids of activities
 * (R or T) still
 * trying that were recorded at least older_than ns before clock (the cell's clock), oldest
 * first; returns how many. The relay decides them cancelled (PAY_KIND_DECIDE, code
 * PAY_ERR_CANCELLED). O(activities and branches). */
uint32_t pay_activities_stale(const pay_t *pay, uint64_t clock, uint64_t older_than, u128 *out,
                              uint32_t max);
/* An order reserved in this (the merchant's) cell and not yet paid nor released, as the
 * relay's resolver needs it to ask the buyer's cell (PAY_KIND_RESOLVE). */
typedef struct pay_order_stale {
    u128 payment_id;    /* P */
    u128 body_hash;     /* the order request's (0 if it came without a key) */
    uint64_t buyer;     /* P's upper half */
    uint64_t merchant;  /* the order's merchant */
    uint32_t peer_cell; /* the buyer's cell, as the order's request named it */
    uint32_t reserved;
    uint64_t reserved_2;
} pay_order_stale_t;

/* Resolving orders left reserved (their gateway died after the order, their client never
 * retried): up to max orders reserved (not credited, not released) that were made at least
 * older_than ns before clock (the cell's clock) and name their buyer's cell, oldest first;
 * returns how many. The relay asks each buyer's cell (PAY_KIND_RESOLVE) and releases the
 * orders it did not pay (PAY_KIND_RELEASE, code its refusal or cancelled). Starts at the
 * oldest order that may still be reserved (orders never become reserved again), or with
 * after (not 0: an order id an earlier call returned) just after that order: the resolver's
 * cursor, so that orders beyond the first max (behind paid ones waiting for their credit)
 * are reached too. */
uint32_t pay_orders_stale(const pay_t *pay, uint64_t clock, uint64_t older_than, u128 after,
                          pay_order_stale_t *out, uint32_t max);
/* How many orders are reserved (waiting for the buyer's cell's payment, or for its credit).
 * O(orders from the oldest reserved one on): for status, not for every entry. */
uint32_t pay_orders_reserved(const pay_t *pay);

/* How many refund and transfer activities are trying (not decided). */
uint32_t pay_activities_trying(const pay_t *pay);

/* XXH3-128 of the whole payments state (every table's rows and the sequence). */
u128 pay_state_hash(const pay_t *pay);

/* ---- Images, as the ledger's (ledger.h): a header, then regions written back to back. ---- */
typedef struct pay_image_header {
    uint64_t magic;
    uint64_t sequence;
    uint32_t merchants, users, payments, refunds, topups;
    uint32_t idempotency_count, idempotency_head;
    uint32_t orders;
    uint32_t outbox_count; /* the outbox ring's rows in use; its head follows from outbox_seq */
    uint32_t tcc;          /* refund activities and branches (one table) */
    uint64_t outbox_seq;   /* the last outbox seq handed out */
} pay_image_header_t;

#define PAY_IMAGE_REGIONS 10u

void pay_image_header(const pay_t *pay, pay_image_header_t *out);
uint32_t pay_image_regions(const pay_t *pay, const pay_image_header_t *h,
                           ledger_region_t out[PAY_IMAGE_REGIONS]);
const char *pay_image_check(const pay_image_header_t *h, const pay_config_t *config);
uint32_t pay_image_restore_regions(pay_t *pay, const pay_image_header_t *h,
                                   ledger_region_t out[PAY_IMAGE_REGIONS]);
/* Rebuilds the indexes after the regions were filled; NULL, or what is inconsistent. */
const char *pay_image_finish(pay_t *pay, const pay_image_header_t *h);

#endif

/* The relay's deciding part (docs/cross-cell.md): what to send, to whom, when to send again.
 * Deterministic and without I/O, so the node's driver (relay.c) and the cross-cell simulator
 * (xcell_sim.h) run the very same code: time is a tick count the caller passes in (and the
 * cell's clock, for recovery only), input is the cell's payments state read between entries,
 * output is messages for the caller to send, and the caller brings each message's answer back
 * (or says it could not send it).
 *
 * A message is one batch: credits (PAY_KIND_CREDIT items, at most RELAY_CORE_BATCH_MAX) to one
 * merchants' cell, and after the answer, in the same batch's memory, the acknowledgements
 * (PAY_KIND_ACK items) of the credited records to the relay's own cell. A batch is named by its
 * handle (0 .. RELAY_CORE_BATCHES - 1) until its last answer or relay_core_unsent(); its items
 * stay valid until then. Every message needs exactly one relay_core_answer() or
 * relay_core_unsent(), the faults' duplicates too (their answers are dropped).
 *
 * Recovery (a refund activity whose gateway died): every RELAY_CORE_RECOVER_TICKS ticks as
 * leader, with no recovery batch in flight, up to RELAY_CORE_BATCH_MAX activities trying for
 * longer than recover_after_ns (pay_activities_stale()) go to the own cell as one batch of
 * PAY_KIND_DECIDE items, code PAY_ERR_CANCELLED. The first decision wins in the cell, so a
 * gateway's decision made meanwhile stands; the CANCEL record a decide writes goes out as any
 * outbox record. A failed recovery batch is simply made again at the next look.
 *
 * Resolving orders left reserved (a cross-cell order whose gateway died after the order and
 * whose client never retried), as the merchants' cell: every RELAY_CORE_RECOVER_TICKS ticks as
 * leader, with no resolver batch in flight, up to RELAY_CORE_BATCH_MAX orders reserved for
 * longer than recover_after_ns (pay_orders_stale()) go as PAY_KIND_RESOLVE items to their
 * buyers' cells, one batch per cell (at most RELAY_CORE_RESOLVE_BATCHES in a look; the other
 * orders wait for the next). From the answer, in the same batch's memory, each order the
 * buyer's cell did not pay (its stored refusal, or cancelled: its tombstone) is released in the
 * own cell (PAY_KIND_RELEASE with that code): the message after a resolve batch's answer goes
 * to the own cell, as a credit batch's acknowledgements do. A paid order waits for its credit;
 * a failed batch (faults too) is made again at the next look; `resolved` counts the releases
 * answered ok.
 *
 * Per target cell the core keeps the first outbox record not yet sent in this term of
 * leadership; a batch whose answer is not "credited" (an error, a timeout, an item refused)
 * sends that cell back to its first record and pauses it. Records are only ever sent again,
 * never skipped: the merchant's cell recognizes a repeat by the credit's transfer id. */
#ifndef CP_RELAY_CORE_H
#define CP_RELAY_CORE_H

#include <stdbool.h>
#include <stdint.h>

#include "cell/pay.h"

#define RELAY_CORE_BATCH_MAX 1024u   /* credits per message */
#define RELAY_CORE_BATCHES 8u        /* messages in flight at once, credits and acks */
#define RELAY_CORE_BACKOFF_TICKS 50u /* a cell whose batch failed rests this long */
#define RELAY_CORE_RESCAN_TICKS 100u /* backlog, nothing in flight, this long: start over */
#define RELAY_CORE_FAULT_DELAY_TICKS 20u
#define RELAY_CORE_RECOVER_TICKS 100u /* ticks between looks for stale activities and orders */
#define RELAY_CORE_RESOLVE_BATCHES 4u /* resolve batches per look at most: credits go on too */
/* How long a refund activity may stay trying before the relay decides it cancelled, by
 * default: far more than the gateway's longest refund flow (refund, Try, decide: three round
 * trips of at most its cell deadline, 5 s by default, and their retries). A live gateway that
 * is overtaken only sees its refund refused as cancelled. */
#define RELAY_CORE_RECOVER_AFTER_NS (60ull * 1000000000ull)

/* Told what goes wrong and right, for the driver's log: what, the cell, and why (may be NULL:
 * the driver says why from the status of the answer, or has said it already). */
typedef void (*relay_core_log_fn)(void *ctx, const char *what, uint64_t cell, int32_t status,
                                  const char *why);

typedef struct relay_core_config {
    uint64_t cell_id; /* this cell's number: credits name it, acknowledgements go to it */
    /* Faults on purpose (fault tests and the simulator): with this chance in percent each
     * batch is lost on its way, or its answer is, or it is sent twice, or held back for up to
     * RELAY_CORE_FAULT_DELAY_TICKS (so later batches overtake it). 0: none. */
    uint32_t fault_pct;
    uint64_t fault_seed;
    relay_core_log_fn log; /* NULL: no log */
    void *log_ctx;
    /* Recovery: a refund activity trying for this long by the cell's clock (ns) is decided
     * cancelled by the relay (its gateway died); an order reserved this long is resolved with
     * its buyer's cell. 0: RELAY_CORE_RECOVER_AFTER_NS. */
    uint64_t recover_after_ns;
} relay_core_config_t;

typedef struct relay_msg {
    uint32_t batch;             /* the handle to answer with */
    uint64_t cell;              /* where it goes: a merchants' cell, or the own cell (acks) */
    const pay_request_t *items; /* valid until the batch's answer or unsent */
    uint32_t count;
} relay_msg_t;

typedef struct relay_stats {
    uint64_t delivered; /* credit items the merchants' cells answered created or ok */
    uint64_t acked;     /* ack items its own cell answered ok */
    uint64_t failures;  /* batches that came back with an error, to be sent again */
    uint64_t faults;    /* faults made on purpose (fault_pct) */
    uint64_t recovered; /* recovery's decide items its own cell answered with a decision */
    uint64_t resolved;  /* orders left reserved the resolver released (answered ok) */
} relay_stats_t;

typedef struct relay_core relay_core_t;

/* NULL when out of memory. All its memory is taken here: nothing is allocated per message. */
relay_core_t *relay_core_create(const relay_core_config_t *config);
void relay_core_destroy(relay_core_t *core);

/* One tick at `tick` (never decreasing) and `now`, the clock that stamps the cell's entries
 * (ns; only compared with the activities' times): whether the cell leads, and its payments
 * state (read only, between entries; NULL when the driver cannot send now, e.g. no route table
 * yet). Becoming leader starts over from the oldest record. Writes up to RELAY_CORE_BATCHES
 * messages to out (max must be at least that) and returns how many. */
uint32_t relay_core_tick(relay_core_t *core, uint64_t tick, uint64_t now, bool leader,
                         const pay_t *pay, relay_msg_t *out, uint32_t max);

/* The answer of batch's message: status 0 and n objects, one per item, or an error status
 * (the client's, or a timeout). Returns true when it has a follow-up message to send (the
 * acknowledgements of the credited items, to the own cell), written to *follow_up. */
bool relay_core_answer(relay_core_t *core, uint32_t batch, int32_t status,
                       const pay_object_t *objects, uint32_t n, relay_msg_t *follow_up);

/* The driver could not send batch's message (why: for the log; NULL when it said already).
 * Its records are sent again after a rest. */
void relay_core_unsent(relay_core_t *core, uint32_t batch, const char *why);

relay_stats_t relay_core_stats(const relay_core_t *core);
/* Batches in flight (sent, or held back, and not yet answered). */
uint32_t relay_core_busy(const relay_core_t *core);
/* After the last tick as leader: a backlog, yet nothing in flight and no cell resting after a
 * failure, so nothing that will bring its records back. Only a record lost track of (skipped,
 * or a failure that did not send its cell back; in a node also an answer that never came) does
 * that; the rescan after RELAY_CORE_RESCAN_TICKS finds it. The simulator, where every request
 * is answered or times out, takes it for a bug. */
bool relay_core_stuck(const relay_core_t *core);

#endif

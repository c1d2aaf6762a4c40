/* The relay (docs/cross-cell.md): on a cell's leader, delivers the cell's outbox records
 * (cross-cell payments whose merchant is not yet credited) to the merchants' cells as
 * items of their kind (a payment's credit, a refund's confirm or cancel), in batches per target
 * cell, and acknowledges each delivered record in its own cell with PAY_KIND_ACK. It also
 * decides cancelled the refund activities whose gateway died (relay_core.h: recovery).
 *
 * It keeps no progress of its own that matters: what to deliver is the cell's state (the
 * unacknowledged records, pay_outbox_pending()), so a new leader, a restarted process or a
 * lost answer only means records are delivered again, which the merchant's cell recognizes
 * by the credit's transfer id (pay_leg_id()). In memory it keeps only a cursor (the first
 * record not yet sent in this term of leadership) and the batches in flight.
 *
 * It finds the other cells, and its own (acknowledgements go through the client library to
 * whichever replica leads), in a route table file (route.h), read again when it changes.
 * Everything runs on the node's loop: relay_tick() from its timer, the clients' callbacks.
 * What to send and when is decided by the relay's core (relay_core.h); this part only owns
 * the clients, the route table and the log. */
#ifndef CP_RELAY_H
#define CP_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "cell/pay.h"
#include "txn/relay_core.h"

struct uv_loop_s;

typedef struct relay_config {
    struct uv_loop_s *loop;
    const char *routes_path; /* the route table file; must outlive the relay */
    uint64_t cell_id;        /* this cell's number: acknowledgements go to it */
    const char *name;        /* log prefix, e.g. "cellpay node cell 2" */
    /* For fault tests only (`cellpay node --relay-faults`): with this chance in percent,
     * each batch is lost on its way, or its answer is, or it is sent twice, or held back for
     * up to 200 ms (so later batches overtake it). 0: none. (relay_core_config_t) */
    uint32_t fault_pct;
    uint64_t fault_seed;
    /* Recovery: a refund activity trying this long (ns) is decided cancelled by the relay
     * (`cellpay node --tcc-recover-after`). 0: RELAY_CORE_RECOVER_AFTER_NS. */
    uint64_t recover_after_ns;
} relay_config_t;

typedef struct relay relay_t;

/* NULL when out of memory. Nothing is sent before the first relay_tick() as leader. */
relay_t *relay_create(const relay_config_t *config);

/* Called on every tick of the node with the clock that stamps its entries (ns), whether it
 * leads, and its payments state (read only here, between entries). Becoming leader starts over
 * from the oldest record. */
void relay_tick(relay_t *relay, uint64_t now, bool leader, const pay_t *pay);

/* What the relay has done since it was created (for status and tests). */
relay_stats_t relay_stats(const relay_t *relay);

/* Closes its clients (batches in flight are dropped: their records stay unacknowledged)
 * and frees it. On the loop's thread, outside the relay's own callbacks. */
void relay_close(relay_t *relay);

#endif

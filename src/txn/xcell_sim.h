/* A deterministic simulator of cross-cell payments (docs/cross-cell.md): 2 or 3 cells, each a
 * real cell_t (its own cell number and disjoint zones) applying entries with cell_apply_entry(),
 * the relay's real core (relay_core.h) on each, clients that pay across cells with the
 * gateway's three steps, and a network between them, all driven by one seed.
 *
 * The model of a cell. Each cell is a durable log of committed entries applied to one cell_t,
 * not a simulated Raft group: the Raft simulator (raft_sim.h) replicates a state machine of
 * its own (a hash chain and a fixed ledger), and making it carry cell_t entries and several
 * groups is a change of its own; what the cross-cell protocol depends on is only that an
 * entry, once answered, is applied for good, that the relay's memory is lost with its leader,
 * and that messages in flight may be lost. So a "crash / leader change" rebuilds the cell by
 * replaying its whole log into a fresh cell_t (the state hash must equal the one before),
 * gives it a new relay core (a new term: fresh memory, answers to the old one are dropped),
 * and keeps it down for a few ticks (requests to it are lost); the old relay's requests still
 * in flight may yet be applied. A "leader flap" keeps the core but has it lose and regain
 * leadership (it starts over from the oldest record).
 *
 * The network loses, duplicates (a request applied twice), delays (up to hundreds of ticks,
 * so it reorders) messages and answers. Requesters (the relays, the clients) match answers to
 * their outstanding request, as the client library does, and take a request unanswered by
 * its deadline for timed out; a request that timed out may still be applied later.
 *
 * Clients: each pays with a new Idempotency-Key and out_trade_no: order to the merchant's cell,
 * payment with payment_id (and the payment id as key) to the buyer's cell, release to the
 * merchant's cell on a final refusal (some buyers have little money, one per cell has no
 * account, one has none in the currency). A lost answer or a timeout is retried from the
 * order with the same key; some clients repeat a finished payment once more with its key,
 * and some try the out_trade_no of their last paid order under a new key. Some refund their
 * last paid payment by TCC with the gateway's steps (refund to the buyer's cell, answered
 * trying; Try to the merchant's; decide as the Try answered), retried from the refund with the
 * same key; the gateway may die between two steps (or with a step on its way) and never come
 * back, leaving the activity to the relay's recovery (recover_after: 400 ticks of sim time).
 * Orders name their buyer's cell; now and then a gateway dies right after an order and its
 * client never retries, leaving the order to its merchant's cell's resolver (after the same
 * recover_after), and half of those leave their payment on its way, arriving 800 to 1200
 * ticks later (so mostly after the resolver's tombstone). Some transfer money between buyers
 * as the gateway does (src/gateway/xtcc.c, linked): the transfer to the sender's cell with
 * peer_cell from the route table (0 within one cell, one in six), answered trying; the Try
 * xtcc_try_build() makes to the recipient's cell; the decide xtcc_decision() says to the
 * sender's cell (a Try not answered in time: cancelled), then xtcc_after_decide(); a lost
 * answer of the transfer or the decide is retried from the transfer with the same key. Some go
 * to a recipient with no account (the Try refuses not_found) or none in the currency (USD
 * senders send USD, which one buyer per cell holds: currency_mismatch); poor senders run out
 * (insufficient_funds). The gateway dies between any two steps, or with a step on its way,
 * and never comes back: the sender's cell's relay recovers the activity (cancelled).
 *
 * Checked after every applied entry: the ledger's invariants (ledger_check_invariants) in
 * that cell; an order draws a new payment id; a payment is debited at most once; every
 * replayed answer of a payment, and of an order's key, equals its first (all but the replayed
 * flag; a released order's key answers the refusal); a credit is
 * created at most once and only for a payment debited in its buyer's cell, and is never
 * refused; an ack follows a credit; a release never frees a paid order; a resolve is answered
 * paid only for a debited payment, else with the payment's first answer or a new tombstone
 * (which becomes its first answer); no payment is debited after its order was released or
 * tombstoned; a reused out_trade_no
 * is refused as a duplicate; a refund activity is of a debited payment of its buyer's cell,
 * decided once (later decides answer the first decision, a confirm only when asked); a Try
 * holds at most once and never after its Cancel; a Confirm or Cancel is never refused and
 * follows the decision, created once; the buyer's cell's outbox backlog equals its payments
 * and decided refunds not yet acknowledged; no relay is stuck (relay_core_stuck(): a backlog,
 * nothing in flight, no cell resting: a record skipped or a failure not sent back, which its rescan
 * would hide). Transfers: one decision per activity (a later decide answers it), its hold
 * posted or voided by it in the same entry; a replayed transfer answer is trying only while
 * undecided and created only once confirmed; a Try holds only for a recipient with an account
 * in the currency (and refuses only one without); and every buyer's account in a cell that
 * applied an entry is what the model says: posted credits its top-up, confirmed refunds and
 * transfers in (a recipient's posted only by its Confirm, so never before its activity was
 * confirmed), posted debits its payments and transfers out, debits pending what its transfers
 * trying hold (the sender's hold exactly while trying), credits pending its Tries not yet
 * decided there. After a crash: the replayed state hash equals the one before. After the calm
 * period (no loss, duplication, crash, flap; the relays' own faults stay) every client has
 * finished, and: every outbox backlog is zero; every transfer's query says its decision (credit
 * acknowledged), its holds posted on both sides if confirmed, else voided; every debited payment is
 * credited exactly once (transfer pay_leg_id(P) in the merchant's cell, P in the buyer's) and
 * acknowledged, every other never credited; no order is left reserved in any cell; no refund
 * activity is trying in any cell and no transfer pending; each activity was decided and its
 * decision delivered once and acknowledged; each payment's refunded (as its buyer's cell answers
 * it) is its confirmed refunds and at most its amount; each merchant's receivable equals the sum of
 * its debited payments less its confirmed refunds, each buyer's balance the reference model's from
 * the records alone (top-up - payments + refunds - transfers out + transfers in, counting only what
 * was confirmed); money is conserved per currency (CNY, USD: balances and receivables add up to the
 * top-ups); each pair of cells' clearing positions net to zero per currency (and each side is what
 * the payments, refunds and transfers made it); a client's success is a debited payment whose
 * answers it got equal the first, a client's refusal one never debited; each cell rebuilt from its
 * log hashes the same.
 *
 * Used by tests/sim/test_xcell_sim.c and `cellpay sim --cells N`. Reproducible from the seed. */
#ifndef CP_XCELL_SIM_H
#define CP_XCELL_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define XC_SIM_CELLS_MAX 3u

typedef struct xc_sim_config {
    uint64_t seed;
    uint32_t cells; /* 2 or 3 */
} xc_sim_config_t;

typedef struct xc_sim xc_sim_t;

xc_sim_t *xc_sim_create(const xc_sim_config_t *c);
void xc_sim_destroy(xc_sim_t *s);

/* steps ticks of traffic and faults; false at the first violated invariant. */
bool xc_sim_run(xc_sim_t *s, uint32_t steps);
/* No more faults (but the relays' own) nor new payments: everything must settle within a
 * bound of ticks, then the final checks. false (with the failure set) when not. */
bool xc_sim_calm(xc_sim_t *s);
const char *xc_sim_failure(const xc_sim_t *s);
/* The last events (up to 64), one per line, then the failure. */
void xc_sim_print_trace(const xc_sim_t *s, FILE *f);

typedef struct xc_sim_stats {
    uint64_t steps, entries, orders, debited, refused, released, credited, acked;
    uint64_t replays_checked, duplicates_refused, crashes, flaps, lost, duplicated;
    uint64_t timeouts, relay_faults, relay_failures;
    /* Refunds: activities recorded, decided each way, gateways that died in one, and the
     * activities the relays recovered (decided cancelled). */
    uint64_t refunds, refunds_confirmed, refunds_cancelled, gateways_died, recovered;
    /* Orders whose gateway died right after them (for good), their payments that arrived late,
     * the tombstones the buyers' cells stored, and the orders the resolvers released. */
    uint64_t orders_abandoned, late_payments, tombstones, resolved;
    /* Transfers: across cells (activities recorded), decided each way, refused by the
     * recipient's cell's Try (no such user, no account in the currency), and within a cell. */
    uint64_t transfers, transfers_confirmed, transfers_cancelled, transfers_try_refused;
    uint64_t transfers_local;
} xc_sim_stats_t;
void xc_sim_stats(const xc_sim_t *s, xc_sim_stats_t *out);

#endif

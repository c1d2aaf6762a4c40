/* The cell state machine: what every replica of a cell applies, entry by entry, to reach the
 * same state. Today it is the ledger, the payments layer (with the outbox of cross-cell
 * payments) and the cell's clock; credit and risk will join it. Deterministic: an entry's effect
 * depends only on the state and the entry (its timestamp comes in with it). No I/O.
 *
 * An entry body is a sequence of commands, each a 32-byte cell_command_t and its body (the
 * 128-byte events or the op's fixed body of docs/protocol.md). */
#ifndef CP_CELL_H
#define CP_CELL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/zone.h"
#include "cell/pay.h"
#include "ledger/ledger.h"
#include "proto/proto.h"

typedef struct cell_command {
    u128 client_id;
    uint64_t request_id;
    uint32_t size;     /* body bytes that follow */
    uint8_t operation; /* proto_op_t: a command that changes state */
    uint8_t reserved[3];
} cell_command_t;

typedef struct cell_config {
    ledger_config_t ledger;
    /* The zones the cell owns (docs/routing.md): it refuses, whole and with
     * PROTO_STATUS_WRONG_CELL, a create_accounts or create_transfers that names an account of
     * any other zone. The empty set means every zone, so a zero-initialized configuration is
     * the single cell that serves everyone. Like the capacities it must be the same on every
     * replica and for the cell's whole life: replaying a log under other zones would give
     * other results. */
    cp_zones_t zones;
    cp_zone_rule_t zone_rule; /* all zeros: the default (uid / 10) mod 100 */
    /* The payments layer. Its zones and zone rule are the cell's own (copied at creation,
     * whatever is here); cell_id goes into every object id (the node sets it from --cell).
     * A capacity of 0 is derived from the ledger's: merchants and users from accounts_max,
     * payments, refunds, top-ups, idempotency keys, cross-cell orders and outbox records from
     * transfers_max. */
    pay_config_t pay;
} cell_config_t;

typedef struct cell cell_t;

cell_t *cell_create(const cell_config_t *config);
void cell_destroy(cell_t *cell);

/* Does op change state (so it goes through the log), or is it a read? */
bool cell_op_is_write(uint8_t op);

/* Called once per command of an applied entry, in order: status (proto_status_t), the
 * timestamp the command's batch got, and the reply body (valid during the call). */
typedef void (*cell_reply_fn)(void *ctx, const cell_command_t *cmd, uint32_t status,
                              uint64_t timestamp, const void *reply, uint32_t reply_size);

/* Do all the accounts a create_accounts / create_transfers body names live in the cell's
 * zones? (Other ops name no account: true.) The state machine refuses a command when not;
 * the node asks first, so a wrong request does not cost a log entry. */
bool cell_owns_command(const cell_t *cell, uint8_t op, const void *body, uint32_t size);

/* Checks that an entry body is a well-formed sequence of write commands; NULL when it is,
 * else what is wrong. cell_apply_entry() only takes checked entries. */
const char *cell_entry_check(const void *body, uint32_t size);

/* Applies one entry: first the clock moves to max(clock, entry_timestamp) and due pending
 * transfers expire, then each command applies in order. */
void cell_apply_entry(cell_t *cell, uint64_t entry_timestamp, const void *body, uint32_t size,
                      cell_reply_fn reply, void *ctx);

/* Answers a read op (lookups and queries) from the current state into out (room for
 * PROTO_MESSAGE_MAX bytes); returns the reply body's size. The body must have passed
 * proto_check_message(). */
uint32_t cell_read(const cell_t *cell, uint8_t op, const void *body, uint32_t size, void *out);

/* XXH3-128 of the cell's whole state: its clock, ledger_state_hash(), pay_state_hash(), and the
 * zones and zone rule it serves. Replicas of one cell that applied the same log prefix hash alike
 * (the status op reports it at the applied index); a replica configured with other zones does not.
 */
u128 cell_state_hash(const cell_t *cell);

uint64_t cell_clock(const cell_t *cell);
ledger_t *cell_ledger(cell_t *cell);
pay_t *cell_pay(cell_t *cell);
/* The payments configuration a cell of this configuration runs (zones copied, capacities
 * derived): what a payments image must fit. */
pay_config_t cell_pay_config(const cell_config_t *config);

/* ---- Images for snapshots: the cell's own header, then the ledger's and the payments'
 * images (snapshot.c). ---- */
typedef struct cell_image_header {
    uint64_t magic;
    uint64_t clock;
    uint8_t reserved[48];
} cell_image_header_t;

void cell_image_header(const cell_t *cell, cell_image_header_t *out);
/* A new cell from an image header: NULL when the header is not a cell's. */
const char *cell_image_apply(cell_t *cell, const cell_image_header_t *h);

#endif

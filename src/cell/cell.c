#include "cell/cell.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/constants.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#define CELL_IMAGE_MAGIC 0x4547414D494C4C43ull /* "CLLIMAGE" */
#define CELL_HASH_MAGIC 0x33485341484C4C43ull  /* "CLLHASH3" */

CP_STATIC_ASSERT(sizeof(cell_command_t) == 32, "command header is 32 bytes");
CP_STATIC_ASSERT(sizeof(cell_image_header_t) == 64, "cell image header is 64 bytes");

struct cell {
    ledger_t *ledger;
    uint64_t clock;
    ledger_result_t *results;
    pay_t *pay;
    pay_object_t *answers; /* scratch: the answers of one pay command */
    cp_zones_t zones;      /* configuration, not state: the same for the cell's whole life */
    cp_zone_rule_t zone_rule;
};

/* Items of one pay command: its answers (256 bytes each) must fit a reply message. */
#define CELL_PAY_ITEMS_MAX ((PROTO_MESSAGE_MAX - PROTO_HEADER_SIZE) / sizeof(pay_object_t))
CP_STATIC_ASSERT(CELL_PAY_ITEMS_MAX == 4095, "a pay command carries 1..4095 items");
CP_STATIC_ASSERT((PAY_LIST_MAX + 2) * sizeof(pay_object_t) <= PROTO_MESSAGE_MAX - PROTO_HEADER_SIZE,
                 "a list reply fits a message");

static uint32_t or_default(uint32_t v, uint32_t d) {
    return v ? v : d;
}

/* The payments configuration the cell runs: its own zones, and capacities derived from the
 * ledger's where none are given. */
pay_config_t cell_pay_config(const cell_config_t *config) {
    pay_config_t pc = config->pay;
    uint32_t accounts = config->ledger.accounts_max, transfers = config->ledger.transfers_max;
    pc.merchants_max = or_default(pc.merchants_max, accounts);
    pc.users_max = or_default(pc.users_max, accounts);
    pc.payments_max = or_default(pc.payments_max, transfers);
    pc.refunds_max = or_default(pc.refunds_max, transfers);
    pc.topups_max = or_default(pc.topups_max, transfers);
    pc.idempotency_max = or_default(pc.idempotency_max, transfers);
    /* An order and an outbox record each go with a transfer (the credit, the debit). */
    pc.orders_max = or_default(pc.orders_max, transfers);
    pc.outbox_max = or_default(pc.outbox_max, transfers);
    /* A refund activity or branch goes with a transfer too (the refund, the Try). */
    pc.tcc_max = or_default(pc.tcc_max, transfers);
    pc.zones = config->zones;
    pc.zone_rule = config->zone_rule;
    return pc;
}

cell_t *cell_create(const cell_config_t *config) {
    cell_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->zones = cp_zones_is_empty(&config->zones) ? cp_zones_all() : config->zones;
    c->zone_rule = config->zone_rule;
    cp_assert((c->zone_rule.divisor | c->zone_rule.modulus) == 0 ||
              cp_zone_rule_check(&c->zone_rule) == NULL);
    c->ledger = ledger_create(&config->ledger);
    c->results = calloc(CP_BATCH_EVENTS_MAX, sizeof c->results[0]);
    pay_config_t pc = cell_pay_config(config);
    c->pay = pay_create(&pc);
    c->answers = calloc(CELL_PAY_ITEMS_MAX, sizeof c->answers[0]);
    if (!c->ledger || !c->results || !c->pay || !c->answers) {
        cell_destroy(c);
        return NULL;
    }
    return c;
}

void cell_destroy(cell_t *c) {
    if (!c) return;
    ledger_destroy(c->ledger);
    free(c->results);
    pay_destroy(c->pay);
    free(c->answers);
    free(c);
}

uint64_t cell_clock(const cell_t *c) {
    return c->clock;
}
ledger_t *cell_ledger(cell_t *c) {
    return c->ledger;
}
pay_t *cell_pay(cell_t *c) {
    return c->pay;
}

/* The cell's own state is its clock (it can run ahead of the ledger's: tick and
 * test_set_clock move it alone); the results buffer is scratch. The zones and the zone rule
 * are configuration, but they decide answers as state does: a replica started with other
 * zones than its group would diverge, and hashing them makes it show at once (the status op),
 * not at the first request it answers differently. */
typedef struct cell_hash_input {
    uint64_t magic;
    uint64_t clock;
    u128 ledger;
    u128 pay;
    uint64_t zones[2];
    uint64_t zone_divisor, zone_modulus; /* the rule in effect (never 0: the default spelled) */
} cell_hash_input_t;
CP_STATIC_ASSERT(sizeof(cell_hash_input_t) == 80, "cell hash input is 80 bytes");

u128 cell_state_hash(const cell_t *c) {
    cp_zone_rule_t rule = cp_zone_rule_effective(&c->zone_rule);
    cell_hash_input_t in = {
        .magic = CELL_HASH_MAGIC,
        .clock = c->clock,
        .ledger = ledger_state_hash(c->ledger),
        .pay = pay_state_hash(c->pay),
        .zones = {c->zones.bits[0], c->zones.bits[1]},
        .zone_divisor = rule.divisor,
        .zone_modulus = rule.modulus,
    };
    XXH128_hash_t d = XXH3_128bits(&in, sizeof in);
    return ((u128)d.high64 << 64) | d.low64;
}

bool cell_op_is_write(uint8_t op) {
    switch (op) {
    case PROTO_OP_CREATE_ACCOUNTS:
    case PROTO_OP_CREATE_TRANSFERS:
    case PROTO_OP_TICK:
    case PROTO_OP_TEST_SET_BALANCES:
    case PROTO_OP_TEST_SET_CLOCK:
    case PROTO_OP_PAY: return true;
    default: return false;
    }
}

const char *cell_entry_check(const void *body, uint32_t size) {
    const unsigned char *p = body;
    uint32_t pos = 0;
    while (pos < size) {
        if (size - pos < sizeof(cell_command_t)) return "truncated command header";
        cell_command_t c;
        memcpy(&c, p + pos, sizeof c);
        pos += sizeof c;
        if (!cell_op_is_write(c.operation)) return "a command that is not a write";
        if (c.reserved[0] | c.reserved[1] | c.reserved[2]) return "reserved command bytes set";
        if (c.size > size - pos) return "command body runs past the entry";
        uint32_t item = proto_request_item_size(c.operation);
        bool batch =
            c.operation == PROTO_OP_CREATE_ACCOUNTS || c.operation == PROTO_OP_CREATE_TRANSFERS;
        if (c.operation == PROTO_OP_PAY) {
            if (c.size % item != 0 || c.size == 0 || c.size / item > CELL_PAY_ITEMS_MAX)
                return "command body has the wrong size";
        } else if (batch ? (c.size % item != 0 || c.size / item > CP_BATCH_EVENTS_MAX)
                         : c.size != item) {
            return "command body has the wrong size";
        }
        pos += c.size;
    }
    return NULL;
}

static bool owns_account(const cell_t *c, const unsigned char *event, size_t offset) {
    u128 id;
    memcpy(&id, event + offset, sizeof id);
    return cp_zones_has(&c->zones, cp_zone_of(&c->zone_rule, cp_account_uid(id)));
}

bool cell_owns_command(const cell_t *c, uint8_t op, const void *body, uint32_t size) {
    const unsigned char *p = body;
    if (op == PROTO_OP_CREATE_ACCOUNTS) {
        for (uint32_t pos = 0; pos + sizeof(ledger_account_t) <= size; pos += 128)
            if (!owns_account(c, p + pos, offsetof(ledger_account_t, id))) return false;
    } else if (op == PROTO_OP_CREATE_TRANSFERS) {
        /* Both sides: a transfer between users of two cells is cross-cell, which needs the
         * cross-cell transactions (DESIGN.md) and is refused until they exist. An id of 0
         * names no account (a post or void takes the pending transfer's accounts, and the
         * pending transfer passed this check); the ledger judges it as usual. */
        for (uint32_t pos = 0; pos + sizeof(ledger_transfer_t) <= size; pos += 128) {
            const unsigned char *e = p + pos;
            u128 debit, credit;
            memcpy(&debit, e + offsetof(ledger_transfer_t, debit_account_id), sizeof debit);
            memcpy(&credit, e + offsetof(ledger_transfer_t, credit_account_id), sizeof credit);
            if (debit != 0 && !owns_account(c, e, offsetof(ledger_transfer_t, debit_account_id)))
                return false;
            if (credit != 0 && !owns_account(c, e, offsetof(ledger_transfer_t, credit_account_id)))
                return false;
        }
    }
    return true;
}

/* Moves the clock by n (+1 for the command itself, as the JSON Lines driver does per line). */
static bool clock_advance(cell_t *c, uint64_t n) {
    if (n >= CP_TIMESTAMP_MAX - c->clock) return false;
    c->clock += n + 1;
    return true;
}

static uint32_t ledger_status_to_proto(ledger_status_t st) {
    switch (st) {
    case LEDGER_OK: return PROTO_STATUS_OK;
    case LEDGER_ERR_CLOCK: return PROTO_STATUS_CLOCK;
    case LEDGER_ERR_BATCH_TOO_LARGE: /* cell_entry_check() keeps batches in bounds */
    case LEDGER_ERR_ACCOUNTS_FULL:
    case LEDGER_ERR_TRANSFERS_FULL:
    case LEDGER_ERR_BALANCES_FULL:
    case LEDGER_ERR_FAILED_IDS_FULL: return PROTO_STATUS_LEDGER_FULL;
    }
    return PROTO_STATUS_REFUSED;
}

/* Items one by one, each answered (pay.h: independent items). The items are copied out of
 * the entry, which gives no alignment guarantee for their 16-byte fields. */
static void apply_pay(cell_t *c, const cell_command_t *cmd, const void *body, cell_reply_fn reply,
                      void *ctx) {
    uint32_t n = cmd->size / (uint32_t)sizeof(pay_request_t);
    cp_assert(n >= 1 && n <= CELL_PAY_ITEMS_MAX); /* cell_entry_check() */
    for (uint32_t i = 0; i < n; i++) {
        pay_request_t r;
        memcpy(&r, (const unsigned char *)body + (size_t)i * sizeof r, sizeof r);
        pay_apply(c->pay, c->ledger, &c->clock, &r, &c->answers[i]);
    }
    reply(ctx, cmd, PROTO_STATUS_OK, c->clock, c->answers, n * (uint32_t)sizeof c->answers[0]);
}

static void apply_command(cell_t *c, const cell_command_t *cmd, const void *body,
                          cell_reply_fn reply, void *ctx) {
    uint32_t n = cmd->size / 128;
    uint64_t u64;
    u128 b[5];
    switch (cmd->operation) {
    case PROTO_OP_CREATE_ACCOUNTS:
    case PROTO_OP_CREATE_TRANSFERS: {
        /* Before anything moves, even the clock: a refused command leaves no trace. */
        if (!cell_owns_command(c, cmd->operation, body, cmd->size)) {
            reply(ctx, cmd, PROTO_STATUS_WRONG_CELL, c->clock, NULL, 0);
            return;
        }
        if (!clock_advance(c, n)) break;
        ledger_status_t st =
            cmd->operation == PROTO_OP_CREATE_ACCOUNTS
                ? ledger_create_accounts(c->ledger, c->clock, body, n, c->results)
                : ledger_create_transfers(c->ledger, c->clock, body, n, c->results);
        uint32_t status = ledger_status_to_proto(st);
        reply(ctx, cmd, status, c->clock, c->results,
              status == PROTO_STATUS_OK ? n * (uint32_t)sizeof c->results[0] : 0);
        return;
    }
    case PROTO_OP_TICK:
        memcpy(&u64, body, sizeof u64);
        if (!clock_advance(c, u64)) break;
        ledger_expire(c->ledger, c->clock);
        reply(ctx, cmd, PROTO_STATUS_OK, c->clock, NULL, 0);
        return;
    case PROTO_OP_TEST_SET_BALANCES:
        memcpy(b, body, sizeof b);
        reply(ctx, cmd,
              ledger_test_set_balances(c->ledger, b[0], b[1], b[2], b[3], b[4])
                  ? PROTO_STATUS_OK
                  : PROTO_STATUS_NOT_FOUND,
              c->clock, NULL, 0);
        return;
    case PROTO_OP_PAY: apply_pay(c, cmd, body, reply, ctx); return;
    case PROTO_OP_TEST_SET_CLOCK:
        memcpy(&u64, body, sizeof u64);
        if (u64 > CP_TIMESTAMP_MAX) break;
        c->clock = u64;
        reply(ctx, cmd, PROTO_STATUS_OK, c->clock, NULL, 0);
        return;
    default: cp_assert(!"cell_entry_check() admits only writes");
    }
    reply(ctx, cmd, PROTO_STATUS_CLOCK, c->clock, NULL, 0);
}

void cell_apply_entry(cell_t *c, uint64_t entry_timestamp, const void *body, uint32_t size,
                      cell_reply_fn reply, void *ctx) {
    if (entry_timestamp > c->clock && entry_timestamp <= CP_TIMESTAMP_MAX)
        c->clock = entry_timestamp;
    ledger_expire(c->ledger, c->clock);
    const unsigned char *p = body;
    for (uint32_t pos = 0; pos < size;) {
        cell_command_t cmd;
        memcpy(&cmd, p + pos, sizeof cmd);
        pos += sizeof cmd;
        cp_assert(cmd.size <= size - pos); /* cell_entry_check() ran */
        apply_command(c, &cmd, p + pos, reply, ctx);
        pos += cmd.size;
    }
}

uint32_t cell_read(const cell_t *c, uint8_t op, const void *body, uint32_t size, void *out) {
    uint32_t n = 0;
    ledger_account_filter_t af;
    ledger_query_filter_t qf;
    switch (op) {
    case PROTO_OP_PING: return 0;
    case PROTO_OP_LOOKUP_ACCOUNTS:
        n = ledger_lookup_accounts(c->ledger, body, size / 16, out);
        break;
    case PROTO_OP_LOOKUP_TRANSFERS:
        n = ledger_lookup_transfers(c->ledger, body, size / 16, out);
        break;
    case PROTO_OP_GET_ACCOUNT_TRANSFERS:
        memcpy(&af, body, sizeof af);
        n = ledger_get_account_transfers(c->ledger, &af, out);
        break;
    case PROTO_OP_GET_ACCOUNT_BALANCES:
        memcpy(&af, body, sizeof af);
        n = ledger_get_account_balances(c->ledger, &af, out);
        break;
    case PROTO_OP_QUERY_ACCOUNTS:
        memcpy(&qf, body, sizeof qf);
        n = ledger_query_accounts(c->ledger, &qf, out);
        break;
    case PROTO_OP_QUERY_TRANSFERS:
        memcpy(&qf, body, sizeof qf);
        n = ledger_query_transfers(c->ledger, &qf, out);
        break;
    case PROTO_OP_PAY_QUERY: {
        pay_query_t q;
        cp_assert(size == sizeof q); /* proto_check_message() */
        memcpy(&q, body, sizeof q);
        pay_object_t objs[PAY_LIST_MAX + 2];
        uint32_t k = pay_query(c->pay, c->ledger, &q, objs);
        memcpy(out, objs, k * sizeof objs[0]);
        return k * (uint32_t)sizeof objs[0];
    }
    default: cp_assert(!"cell_read() takes reads only");
    }
    return n * 128;
}

void cell_image_header(const cell_t *c, cell_image_header_t *h) {
    *h = (cell_image_header_t){.magic = CELL_IMAGE_MAGIC, .clock = c->clock};
}

const char *cell_image_apply(cell_t *c, const cell_image_header_t *h) {
    if (h->magic != CELL_IMAGE_MAGIC) return "not a cell image";
    c->clock = h->clock;
    return NULL;
}

#include "proto/proto.h"

#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "base/assert.h"

CP_STATIC_ASSERT(sizeof(proto_header_t) == PROTO_HEADER_SIZE, "header is 128 bytes");
CP_STATIC_ASSERT(
    offsetof(proto_header_t, checksum_body) == 16 && offsetof(proto_header_t, client_id) == 32 &&
        offsetof(proto_header_t, request_id) == 48 && offsetof(proto_header_t, timestamp) == 56 &&
        offsetof(proto_header_t, magic) == 64 && offsetof(proto_header_t, size) == 68 &&
        offsetof(proto_header_t, version) == 72 && offsetof(proto_header_t, operation) == 74 &&
        offsetof(proto_header_t, command) == 75 && offsetof(proto_header_t, status) == 76 &&
        offsetof(proto_header_t, cell) == 80 && offsetof(proto_header_t, reserved) == 88,
    "header layout");
CP_STATIC_ASSERT(sizeof(proto_status_reply_t) == 256, "status reply is 256 bytes");
CP_STATIC_ASSERT(offsetof(proto_status_reply_t, cell) == 16 &&
                     offsetof(proto_status_reply_t, applied_index) == 64 &&
                     offsetof(proto_status_reply_t, snapshot_index) == 72 &&
                     offsetof(proto_status_reply_t, node_id) == 80 &&
                     offsetof(proto_status_reply_t, role) == 88 &&
                     offsetof(proto_status_reply_t, learners) == 90 &&
                     offsetof(proto_status_reply_t, members) == 96 &&
                     offsetof(proto_status_reply_t, member_match) == 128 &&
                     offsetof(proto_status_reply_t, outbox_backlog) == 192 &&
                     offsetof(proto_status_reply_t, relay_recovered) == 216 &&
                     offsetof(proto_status_reply_t, tcc_trying) == 224 &&
                     offsetof(proto_status_reply_t, relay_resolved) == 232 &&
                     offsetof(proto_status_reply_t, orders_reserved) == 240 &&
                     offsetof(proto_status_reply_t, reserved_2) == 248 &&
                     sizeof(proto_status_reply_t) == 256,
                 "status reply layout");
CP_STATIC_ASSERT(sizeof(proto_transfer_leader_t) == 16 &&
                     offsetof(proto_transfer_leader_t, reserved) == 4,
                 "transfer_leader body is 16 bytes");
CP_STATIC_ASSERT(sizeof(proto_member_change_t) == 64 && offsetof(proto_member_change_t, addr) == 8,
                 "member change body is 64 bytes");

const char *proto_error_str(proto_error_t e) {
    switch (e) {
    case PROTO_OK: return "ok";
    case PROTO_NEED_MORE: return "incomplete message";
    case PROTO_BAD_MAGIC: return "bad magic (not a cellpay message)";
    case PROTO_BAD_VERSION: return "unsupported protocol version";
    case PROTO_BAD_HEADER_CHECKSUM: return "bad header checksum";
    case PROTO_BAD_RESERVED: return "reserved header bytes are not zero";
    case PROTO_BAD_SIZE: return "bad message size";
    case PROTO_BAD_OPERATION: return "unknown operation";
    case PROTO_BAD_COMMAND: return "unexpected command";
    case PROTO_BAD_BODY_CHECKSUM: return "bad body checksum";
    case PROTO_BAD_CLIENT: return "client id must not be zero";
    }
    return "unknown error";
}

const char *proto_status_str(uint32_t s) {
    switch (s) {
    case PROTO_STATUS_OK: return "ok";
    case PROTO_STATUS_NOT_LEADER: return "not the leader";
    case PROTO_STATUS_BUSY: return "busy";
    case PROTO_STATUS_REFUSED: return "refused (test ops are off)";
    case PROTO_STATUS_LEDGER_FULL: return "ledger table full";
    case PROTO_STATUS_CLOCK: return "clock cannot advance";
    case PROTO_STATUS_WRONG_CELL: return "wrong cell";
    case PROTO_STATUS_NOT_FOUND: return "not found";
    case PROTO_STATUS_INVALID: return "invalid argument";
    case PROTO_STATUS_CONF_PENDING: return "a membership change is under way";
    }
    return "unknown status";
}

static const char *const op_names[PROTO_OP_MAX + 1] = {
    [PROTO_OP_PING] = "ping",
    [PROTO_OP_CREATE_ACCOUNTS] = "create_accounts",
    [PROTO_OP_CREATE_TRANSFERS] = "create_transfers",
    [PROTO_OP_LOOKUP_ACCOUNTS] = "lookup_accounts",
    [PROTO_OP_LOOKUP_TRANSFERS] = "lookup_transfers",
    [PROTO_OP_GET_ACCOUNT_TRANSFERS] = "get_account_transfers",
    [PROTO_OP_GET_ACCOUNT_BALANCES] = "get_account_balances",
    [PROTO_OP_QUERY_ACCOUNTS] = "query_accounts",
    [PROTO_OP_QUERY_TRANSFERS] = "query_transfers",
    [PROTO_OP_TICK] = "tick",
    [PROTO_OP_TEST_SET_BALANCES] = "test_set_balances",
    [PROTO_OP_TEST_SET_CLOCK] = "test_set_clock",
    [PROTO_OP_STATUS] = "status",
    [PROTO_OP_TRANSFER_LEADER] = "transfer_leader",
    [PROTO_OP_ADD_REPLICA] = "add_replica",
    [PROTO_OP_REMOVE_REPLICA] = "remove_replica",
    [PROTO_OP_PAY] = "pay",
    [PROTO_OP_PAY_QUERY] = "pay_query",
};

const char *proto_op_str(uint32_t op) {
    return op >= 1 && op <= PROTO_OP_MAX ? op_names[op] : "unknown";
}

/* Item sizes by op: {request, reply}. A size of 0 means the body must be empty. */
static const uint32_t item_size[PROTO_OP_MAX + 1][2] = {
    [PROTO_OP_PING] = {0, 0},
    [PROTO_OP_CREATE_ACCOUNTS] = {128, 16},
    [PROTO_OP_CREATE_TRANSFERS] = {128, 16},
    [PROTO_OP_LOOKUP_ACCOUNTS] = {16, 128},
    [PROTO_OP_LOOKUP_TRANSFERS] = {16, 128},
    [PROTO_OP_GET_ACCOUNT_TRANSFERS] = {128, 128},
    [PROTO_OP_GET_ACCOUNT_BALANCES] = {128, 128},
    [PROTO_OP_QUERY_ACCOUNTS] = {64, 128},
    [PROTO_OP_QUERY_TRANSFERS] = {64, 128},
    [PROTO_OP_TICK] = {16, 0},
    [PROTO_OP_TEST_SET_BALANCES] = {80, 0},
    [PROTO_OP_TEST_SET_CLOCK] = {16, 0},
    [PROTO_OP_STATUS] = {0, sizeof(proto_status_reply_t)},
    [PROTO_OP_TRANSFER_LEADER] = {sizeof(proto_transfer_leader_t), 0},
    [PROTO_OP_ADD_REPLICA] = {sizeof(proto_member_change_t), 0},
    [PROTO_OP_REMOVE_REPLICA] = {sizeof(proto_member_change_t), 0},
    [PROTO_OP_PAY] = {256, 256},       /* pay_request_t, pay_object_t */
    [PROTO_OP_PAY_QUERY] = {256, 256}, /* pay_query_t, pay_object_t */
};

uint32_t proto_request_item_size(uint8_t op) {
    return op >= 1 && op <= PROTO_OP_MAX ? item_size[op][0] : 0;
}

uint32_t proto_reply_item_size(uint8_t op) {
    return op >= 1 && op <= PROTO_OP_MAX ? item_size[op][1] : 0;
}

static u128 checksum(const void *p, size_t n) {
    XXH128_hash_t h = XXH3_128bits(p, n);
    return ((u128)h.high64 << 64) | h.low64;
}

void proto_seal(proto_header_t *h, const void *body, uint32_t body_size) {
    cp_assert(body_size <= PROTO_MESSAGE_MAX - PROTO_HEADER_SIZE);
    h->magic = PROTO_MAGIC;
    h->version = PROTO_VERSION;
    h->size = PROTO_HEADER_SIZE + body_size;
    h->checksum_body = checksum(body, body_size);
    h->checksum = checksum((const unsigned char *)h + 16, PROTO_HEADER_SIZE - 16);
}

proto_error_t proto_check_header(const void *buf, size_t len, uint32_t *size) {
    if (len < PROTO_HEADER_SIZE) return PROTO_NEED_MORE;
    proto_header_t h;
    memcpy(&h, buf, sizeof h);
    /* Magic first, so that a stranger speaking another protocol gets a plain answer. */
    if (h.magic != PROTO_MAGIC) return PROTO_BAD_MAGIC;
    if (h.checksum != checksum((const unsigned char *)buf + 16, PROTO_HEADER_SIZE - 16))
        return PROTO_BAD_HEADER_CHECKSUM;
    if (h.version != PROTO_VERSION) return PROTO_BAD_VERSION;
    for (size_t i = 0; i < sizeof h.reserved; i++)
        if (h.reserved[i] != 0) return PROTO_BAD_RESERVED;
    if (h.size < PROTO_HEADER_SIZE || h.size > PROTO_MESSAGE_MAX) return PROTO_BAD_SIZE;
    if (h.operation < 1 || h.operation > PROTO_OP_MAX) return PROTO_BAD_OPERATION;
    if (h.command != PROTO_REQUEST && h.command != PROTO_REPLY) return PROTO_BAD_COMMAND;
    *size = h.size;
    return PROTO_OK;
}

proto_error_t proto_check_message(const proto_header_t *h, const void *body, uint8_t command) {
    if (h->command != command) return PROTO_BAD_COMMAND;
    if (h->client_id == 0) return PROTO_BAD_CLIENT;
    uint32_t body_size = h->size - PROTO_HEADER_SIZE;
    uint32_t item = command == PROTO_REQUEST ? proto_request_item_size(h->operation)
                                             : proto_reply_item_size(h->operation);
    bool single =
        h->operation == PROTO_OP_GET_ACCOUNT_TRANSFERS ||
        h->operation == PROTO_OP_GET_ACCOUNT_BALANCES || h->operation == PROTO_OP_QUERY_ACCOUNTS ||
        h->operation == PROTO_OP_QUERY_TRANSFERS || h->operation == PROTO_OP_TICK ||
        h->operation == PROTO_OP_TEST_SET_BALANCES || h->operation == PROTO_OP_TEST_SET_CLOCK ||
        h->operation == PROTO_OP_TRANSFER_LEADER || h->operation == PROTO_OP_PAY_QUERY;
    if (item == 0) {
        if (body_size != 0) return PROTO_BAD_SIZE;
    } else if (body_size % item != 0 || body_size / item > PROTO_ITEMS_MAX ||
               (command == PROTO_REQUEST && single && body_size != item)) {
        return PROTO_BAD_SIZE;
    }
    if (h->checksum_body != checksum(body, body_size)) return PROTO_BAD_BODY_CHECKSUM;
    return PROTO_OK;
}

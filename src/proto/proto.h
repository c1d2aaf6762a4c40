/* The binary protocol between clients and cells (docs/protocol.md): a 128-byte header, then a
 * body of fixed-size items. Encoding and validation only; no I/O. */
#ifndef CP_PROTO_H
#define CP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/u128.h"

#define PROTO_MAGIC 0x59415043u /* "CPAY" little-endian */
#define PROTO_VERSION 1u
#define PROTO_HEADER_SIZE 128u
#define PROTO_MESSAGE_MAX (1u << 20)
#define PROTO_ITEMS_MAX 8189u /* items in one body: a full batch of 128-byte events fits */

typedef struct proto_header {
    u128 checksum;      /* XXH3-128 of header bytes [16, 128) */
    u128 checksum_body; /* XXH3-128 of the body (of nothing when size == 128) */
    u128 client_id;     /* the client's random id; not 0 */
    uint64_t request_id;
    uint64_t timestamp; /* replies: the timestamp the cell gave the request's batch */
    uint32_t magic;
    uint32_t size; /* header + body, bytes */
    uint16_t version;
    uint8_t operation; /* proto_op_t */
    uint8_t command;   /* proto_command_t */
    uint32_t status;   /* replies: proto_status_t */
    uint64_t cell;     /* the cell the request is meant for; 0 = whichever answers */
    uint8_t reserved[40];
} proto_header_t;

typedef enum proto_command {
    PROTO_REQUEST = 1,
    PROTO_REPLY = 2,
} proto_command_t;

/* Operations. Body items: create_* take 128-byte events and reply 16-byte results; lookups
 * take 16-byte ids and reply 128-byte objects; the account filters take one 128-byte filter,
 * query filters one 64-byte filter. */
typedef enum proto_op {
    PROTO_OP_PING = 1,
    PROTO_OP_CREATE_ACCOUNTS = 2,
    PROTO_OP_CREATE_TRANSFERS = 3,
    PROTO_OP_LOOKUP_ACCOUNTS = 4,
    PROTO_OP_LOOKUP_TRANSFERS = 5,
    PROTO_OP_GET_ACCOUNT_TRANSFERS = 6,
    PROTO_OP_GET_ACCOUNT_BALANCES = 7,
    PROTO_OP_QUERY_ACCOUNTS = 8,
    PROTO_OP_QUERY_TRANSFERS = 9,
    PROTO_OP_TICK = 10,              /* body: u64 nanoseconds + 8 reserved bytes */
    PROTO_OP_TEST_SET_BALANCES = 11, /* body: u128 account id + 4 u128 balances (80 bytes) */
    PROTO_OP_TEST_SET_CLOCK = 12,    /* body: u64 timestamp + 8 reserved bytes */
    /* Administration, answered by the replica asked (not through the log, not only by the
     * leader). Not authenticated yet: a node's client port must stay on loopback. */
    PROTO_OP_STATUS = 13,          /* body: empty; reply: one proto_status_reply_t */
    PROTO_OP_TRANSFER_LEADER = 14, /* body: one proto_transfer_leader_t; reply: empty */
    PROTO_OP_ADD_REPLICA = 15,     /* leader; body: one proto_member_change_t; reply: empty */
    PROTO_OP_REMOVE_REPLICA = 16,  /* leader; body: one proto_member_change_t; reply: empty */
    /* The payment API's state (src/cell/pay.h). */
    PROTO_OP_PAY = 17,       /* write; body: pay_request_t items; reply: one pay_object_t each */
    PROTO_OP_PAY_QUERY = 18, /* read; body: one pay_query_t; reply: pay_object_t items */
    PROTO_OP_MAX = 18,
} proto_op_t;

typedef enum proto_status {
    PROTO_STATUS_OK = 0,
    PROTO_STATUS_NOT_LEADER = 1,  /* ask another replica */
    PROTO_STATUS_BUSY = 2,        /* try again later */
    PROTO_STATUS_REFUSED = 3,     /* the cell will not apply it (test op without --test-ops) */
    PROTO_STATUS_LEDGER_FULL = 4, /* a table is full; nothing applied */
    PROTO_STATUS_CLOCK = 5,       /* the clock could not advance */
    PROTO_STATUS_WRONG_CELL = 6,
    PROTO_STATUS_NOT_FOUND = 7, /* test_set_balances: no such account */
    PROTO_STATUS_INVALID = 8,   /* a bad argument: transfer_leader to an unknown node or itself */
    PROTO_STATUS_CONF_PENDING = 9, /* a membership change is under way: try again later */
} proto_status_t;

/* Raft roles as the status op reports them (the numbering of rf_role_t). */
typedef enum proto_role {
    PROTO_ROLE_FOLLOWER = 0,
    PROTO_ROLE_PRE_CANDIDATE = 1,
    PROTO_ROLE_CANDIDATE = 2,
    PROTO_ROLE_LEADER = 3,
} proto_role_t;

#define PROTO_STATUS_MEMBERS_MAX 8u

/* The reply body of PROTO_OP_STATUS: what one replica knows of itself and its group, read
 * at one instant of its event loop (so state_hash is the state at exactly applied_index). */
typedef struct proto_status_reply {
    u128 state_hash;         /* cell_state_hash() of the state at applied_index */
    uint64_t cell;           /* the cell's number (--cell) */
    uint64_t term;           /* the replica's current term */
    uint64_t first_index;    /* the oldest entry still in its Raft log window */
    uint64_t last_index;     /* its newest log entry (maybe not yet durable) */
    uint64_t durable_index;  /* entries up to here are on its disk */
    uint64_t commit_index;   /* what it knows to be committed */
    uint64_t applied_index;  /* what its state machine has applied */
    uint64_t snapshot_index; /* its newest snapshot on disk (0: none) */
    uint32_t node_id;        /* this replica */
    uint32_t leader_id;      /* the leader it knows of, 0 when none */
    uint8_t role;            /* proto_role_t */
    uint8_t member_count;    /* entries used in members[] and member_match[] */
    uint8_t learners;        /* bit i: members[i] is a learner (else a voter) */
    uint8_t reserved_1[5];
    /* The group's members as this replica knows them (none: a replica waiting to be added). */
    uint32_t members[PROTO_STATUS_MEMBERS_MAX];
    /* The leader only (0 elsewhere): the last index known durable and matching on each
     * member, in the order of members[] (its own: its durable index). */
    uint64_t member_match[PROTO_STATUS_MEMBERS_MAX];
    /* Cross-cell (docs/cross-cell.md): outbox records not yet acknowledged, in the state at
     * applied_index; and, on a replica whose relay ran, what it delivered and acknowledged
     * since the process started, the stale refund activities it decided and the orders left
     * reserved it released. */
    uint64_t outbox_backlog;
    uint64_t relay_delivered;
    uint64_t relay_acked;
    uint64_t relay_recovered; /* refund activities its relay decided cancelled (recovery) */
    uint64_t tcc_trying;      /* TCC activities of the cell not decided yet, at applied_index */
    uint64_t relay_resolved;  /* orders left reserved its relay's resolver released */
    uint64_t orders_reserved; /* cross-cell orders of the cell not yet paid or credited */
    uint8_t reserved_2[8];
} proto_status_reply_t;

/* The request body of PROTO_OP_ADD_REPLICA (the replica joins as a learner; the leader makes
 * it a voter once it has caught up) and PROTO_OP_REMOVE_REPLICA (addr all zero). */
typedef struct proto_member_change {
    uint32_t id;
    uint8_t reserved[4];
    char addr[56]; /* the new replica's peer address, "HOST:PORT", NUL-padded */
} proto_member_change_t;

/* The request body of PROTO_OP_TRANSFER_LEADER. */
typedef struct proto_transfer_leader {
    uint32_t target; /* the voter to hand leadership to; 0 = the most up-to-date follower */
    uint8_t reserved[12];
} proto_transfer_leader_t;

typedef enum proto_error {
    PROTO_OK = 0,
    PROTO_NEED_MORE, /* not a whole header / message yet */
    PROTO_BAD_MAGIC,
    PROTO_BAD_VERSION,
    PROTO_BAD_HEADER_CHECKSUM,
    PROTO_BAD_RESERVED,
    PROTO_BAD_SIZE, /* below the header, above 1 MiB, or not whole items */
    PROTO_BAD_OPERATION,
    PROTO_BAD_COMMAND,
    PROTO_BAD_BODY_CHECKSUM,
    PROTO_BAD_CLIENT,
} proto_error_t;

const char *proto_error_str(proto_error_t e);
const char *proto_status_str(uint32_t status);
const char *proto_op_str(uint32_t op);

/* Size of one body item of a request / reply of op, and how many a message may carry. */
uint32_t proto_request_item_size(uint8_t op);
uint32_t proto_reply_item_size(uint8_t op);

/* Fills in magic, version, size and both checksums of a header whose other fields are set,
 * for the body that follows it. */
void proto_seal(proto_header_t *h, const void *body, uint32_t body_size);

/* Validates the header at buf (len bytes available; at least PROTO_HEADER_SIZE for anything
 * but PROTO_NEED_MORE). On PROTO_OK, *size is the whole message's size. */
proto_error_t proto_check_header(const void *buf, size_t len, uint32_t *size);

/* Validates a whole message (header already checked): the body's checksum and item size.
 * `command` is the command expected (requests at a cell, replies at a client). */
proto_error_t proto_check_message(const proto_header_t *h, const void *body, uint8_t command);

#endif

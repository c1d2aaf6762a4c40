/* Private to the node: its state, shared by node.c (serving) and node_recover.c (start-up,
 * snapshots). */
#ifndef CP_NODE_INTERNAL_H
#define CP_NODE_INTERNAL_H

#include <stdarg.h>
#include <uv.h>

#include "cell/cell.h"
#include "proto/proto.h"
#include "repl/hardstate.h"
#include "repl/members.h"
#include "repl/node.h"
#include "txn/relay.h"
#include "repl/peer.h"
#include "repl/raft.h"
#include "repl/wal.h"

#define NODE_CONNS_MAX 1024u
#define NODE_ENTRIES 8u           /* entry buffers: open + written-but-not-applied */
#define NODE_ENTRY_COMMANDS 8189u /* requests in one entry */
/* A log entry: a 16-byte prefix (u64 timestamp, u64 kind: keeps the commands 16-byte
 * aligned), then commands and their bodies. Raft's membership entries are stored in the log
 * behind the same prefix with kind NODE_KIND_MEMBERS (their Raft data has no prefix). */
#define NODE_ENTRY_PREFIX 16u
#define NODE_KIND_COMMANDS 0u
#define NODE_KIND_MEMBERS 1u
#define NODE_ENTRY_BYTES (WAL_BODY_MAX - NODE_ENTRY_PREFIX)
#define NODE_RBUF (PROTO_MESSAGE_MAX + (64u << 10))
#define NODE_OUTBUF_MAX (64u << 20) /* replies a client may leave unread */
/* The Raft log window: every entry after the newest snapshot must fit (a snapshot is taken
 * at a quarter of it). Memory is committed only as it is used. */
#define NODE_WINDOW_ENTRIES (1u << 18)
#define NODE_WINDOW_BYTES (512ull << 20)

typedef struct outbuf {
    char *buf;
    size_t len, cap;
} outbuf_t;

typedef struct conn {
    uv_tcp_t tcp;
    uv_write_t wreq;
    node_t *node;
    uint32_t slot, gen;
    unsigned char *rbuf;
    size_t rlen;
    outbuf_t out[2]; /* out[out_fill] accumulates; the other may be in flight */
    int out_fill;
    bool writing, closing, waiting;
    /* A waiting read: asked for a read index (read_asked), then got it (read_index > 0). */
    bool read_asked;
    uint64_t read_index;
} conn_t;

typedef struct entry_req {
    uint32_t slot, gen;    /* the connection to answer */
    proto_header_t header; /* the request's header, for the reply */
} entry_req_t;

/* A batch of requests: body[0, NODE_ENTRY_PREFIX) holds the timestamp given when it is
 * proposed, then the commands (cell.h). Once proposed it has its log index and term. */
typedef struct entry {
    unsigned char *body;
    uint32_t size, events, ncmds; /* size: command bytes after the timestamp */
    entry_req_t *reqs;
    uint64_t index, term;
} entry_t;

struct node {
    node_config_t config;
    char name[64];       /* prefix of its log lines */
    char start_err[256]; /* the last line logged while starting: why it could not */
    bool started;        /* it listens and serves: lines are no longer kept in start_err */
    uv_loop_t loop_storage;
    uv_loop_t *loop; /* &loop_storage: a loop of its own, so that nodes can share a process */
    uv_tcp_t server;
    uint16_t port; /* the client port bound */
    char host[64]; /* the client address's host */
    uv_timer_t timer;
    uv_async_t stop_async; /* node_stop() from another thread */
    bool signals;          /* node_run(): SIGTERM and SIGINT stop it */
    uv_signal_t sigterm, sigint;
    uv_thread_t thread; /* node_start(): the thread running the loop */
    uv_sem_t opened;    /* posted by that thread once it serves or has failed */
    int open_rc;
    int exit_rc;
    cell_t *cell;
    wal_t *wal;
    rf_t *rf;
    peer_net_t *net;
    hardstate_t hs;
    uint64_t lead_term; /* the term this node leads in, 0 when it does not */
    relay_t *relay;     /* config.routes_path given: the cross-cell relay */

    conn_t *conns[NODE_CONNS_MAX];
    uint32_t conn_count, conn_gen;
    conn_t *waiting[NODE_CONNS_MAX];
    uint32_t waiting_count;

    /* Entry sequence numbers: [applied_seq, open_seq) are proposed and wait to be applied,
     * open_seq is the one filling up. */
    entry_t entries[NODE_ENTRIES];
    uint64_t applied_seq, open_seq;
    uint64_t applied_index, last_entry_ts;
    bool syncing, tick_wanted, stopping, stopped, waking;
    uint64_t reads_ctx; /* read-index requests issued */
    wal_sync_t sync;
    wal_status_t sync_rc;
    uv_work_t sync_req;
    unsigned char *read_buf;
    unsigned char *apply_buf; /* an aligned copy of the entry being applied */

    /* Snapshots (node_recover.c). */
    uint64_t log_bytes_since_snapshot;
    int snapshot_pid;                /* a child writing a snapshot, 0 = none */
    uint64_t snapshot_index;         /* the newest snapshot written */
    uint64_t snapshot_pending_index; /* the one the child is writing */
    uint64_t snapshot_pending_term;

    /* Membership (node_members.c): every address seen, and the peers connected for. */
    mb_book_t book;
    rf_members_t members_seen; /* the membership the peer network was last set up for */
    bool members_synced;
    uint64_t promote_at_tick; /* ticks until the leader next looks for learners to promote */

    /* Snapshot transfer (node_xfer.c). */
    int rx_fd;                /* the snapshot being received, -1: none */
    bool rx_broken;           /* writing it failed: its install fails */
    unsigned char *chunk_buf; /* RF_SNAP_CHUNK_MAX bytes: a chunk being sent */

    /* The state hash a status request computed last (node_admin.c): asked again without
     * having applied anything since, the node answers from it. */
    struct {
        const cell_t *cell;
        uint64_t applied_index;
        u128 hash;
        bool valid;
    } hash_cache;
};

/* One line on stderr, "<name>: <text>", written by one call (lines of nodes on several
 * threads do not interleave). */
void node_log(node_t *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void node_stop_finish(node_t *n);
void node_wake_waiting(node_t *n);
void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* node_recover.c */
int node_recover(node_t *n);
void node_snapshot_maybe(node_t *n);
void node_snapshot_poll(node_t *n);
void node_snapshot_wait(node_t *n);

/* node_members.c */
int node_members_init(node_t *n, const mb_record_t *snap, rf_config_t *c);
void node_members_learn(node_t *n, const rf_entry_t *e);
void node_members_sync(node_t *n);
void node_members_tick(node_t *n);
bool node_members_record(node_t *n, uint64_t index, mb_record_t *out);
/* Leader: proposes op on id with the new membership's addresses (from the book). */
rf_status_t node_members_propose(node_t *n, rf_conf_op_t op, uint32_t id);
/* The log body of Raft entry e (the prefix added for a membership entry), and back. */
const void *node_log_body(const rf_entry_t *e, unsigned char *scratch, uint32_t *size);
bool node_log_entry(const void *body, uint32_t size, uint64_t term, rf_entry_t *out);

/* node_xfer.c */
void node_snap_report(node_t *n, uint64_t index, uint64_t term);
void node_snap_send(node_t *n, const rf_msg_t *m);
void node_snap_write(node_t *n, const rf_snap_chunk_t *c);
void node_snap_install(node_t *n, const rf_snap_chunk_t *c);

/* node_admin.c: status and transfer_leader, answered by any replica. node_admin_request()
 * returns the reply's status and writes its body to out (PROTO_MESSAGE_MAX bytes), *size. */
bool node_admin_op(uint8_t op);
uint32_t node_admin_request(node_t *n, const proto_header_t *h, const void *body, void *out,
                            uint32_t *size);

#endif

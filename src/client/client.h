/* The C client of a cell (docs/protocol.md): connects to a cell's replicas, sends requests,
 * merges concurrent create_accounts / create_transfers submissions into one message, and
 * retries through disconnects, timeouts and leader changes until a request is answered or its
 * deadline passes.
 *
 * Threads. A client owns one I/O thread (a libuv loop) that does all network work (or runs on
 * the caller's loop: client_options_t.loop). Any
 * thread may call client_submit() and client_stats(); client_call() and client_close() may be
 * called from any thread but the I/O thread (that is, not from inside a callback).
 *
 * Callbacks. Every accepted submission (client_submit() returned 0) gets exactly one call of
 * its callback, ON THE CLIENT'S I/O THREAD, with:
 *   - status: a proto_status_t (>= 0) from the cell, or a negative client_error_t
 *     (CLIENT_ERR_TIMEOUT when the deadline passed, CLIENT_ERR_CLOSED when client_close()
 *     came first);
 *   - timestamp: the timestamp the cell gave the request's batch (writes), else 0;
 *   - reply, reply_size: the reply body, valid only during the call, 16-byte aligned (it can
 *     be read as the ledger structs). For create_* with status ok: exactly this submission's
 *     results, one 16-byte ledger_result_t per event, in the submission's order; for pay with
 *     status ok: one 256-byte pay_object_t per pay_request_t of this submission, in order; for
 *     create_* and pay with another status, and for client errors: empty; for the other ops:
 *     the cell's reply body as sent (the objects found; empty for ping, tick and the test ops).
 * A callback must return quickly and must not block: it holds up every other request. It may
 * call client_submit(), never client_call() or client_close().
 *
 * Batching. create_accounts / create_transfers / pay submissions that wait for a free session
 * are merged, in submission order, into one message of at most as many items as fit in
 * PROTO_MESSAGE_MAX (8189 128-byte events; 4095 256-byte pay requests), and the reply's
 * results are split back. Only submissions of the same op merge. A submission whose last
 * event is `linked` (its chain would run into the next submitter's events) or whose first
 * event is `imported` (the batch's first event decides import mode) is always sent alone.
 * A merged batch is applied as one: a batch-wide status (ledger_full, clock) reaches every
 * submitter in it.
 *
 * Retries. A message that gets no valid reply (disconnect, attempt timeout, a reply that fails
 * validation) or the status not_leader is sent again, byte for byte (same client id and request
 * id), on a new connection to the next address; busy is retried after a short backoff on the
 * same connection. Writes are idempotent by the ids inside them, so a retry is safe, but a
 * retried create may answer `exists` (with the original timestamp) or `id_already_failed`
 * for events the lost attempt had applied: treat `exists` as success. Exception: `tick` is
 * not idempotent; a retried tick may advance the cell's clock twice.
 *
 * Finding the leader. A session whose connection broke goes to the address that last
 * answered, unless that is where it failed; then it tries the addresses one after the other
 * without waiting, and waits only after a whole round of them failed (backoff_min_ms,
 * doubling per round up to backoff_max_ms): an election ends at an address nobody can
 * predict. When a session gets an answer at a new address (the cell elected a new leader),
 * the sessions waiting to reconnect go there at once, and new messages go first to sessions
 * connected there.
 *
 * Ordering. With one session, messages go out one at a time in submission order. With
 * several sessions, up to `sessions` messages are in flight at once and the cell may apply
 * them in any order: a caller that needs B after A waits for A's callback before submitting B.
 *
 * Connections. Every session connects at client_open() and stays connected, reconnecting
 * as above (at most backoff_max_ms apart) while the cell cannot be reached.
 *
 * Memory. Everything is allocated in client_open(): 2 MiB of buffers per session (a whole
 * request and a whole reply) and one small slot per request of requests_max. Nothing is
 * allocated per request. */
#ifndef CP_CLIENT_H
#define CP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

#define CLIENT_ADDRESSES_MAX 16u
#define CLIENT_SESSIONS_MAX 256u
#define CLIENT_REQUESTS_MAX (1u << 20)

/* Negative statuses: the client's own outcomes, never a cell's. */
typedef enum client_error {
    CLIENT_OK = 0,
    CLIENT_ERR_TIMEOUT = -1,     /* no answer before the request's deadline */
    CLIENT_ERR_CLOSED = -2,      /* client_close() ran before the answer came */
    CLIENT_ERR_INVALID = -3,     /* bad op or body size for the op (not accepted) */
    CLIENT_ERR_FULL = -4,        /* requests_max submissions outstanding (not accepted) */
    CLIENT_ERR_ADDRESS = -5,     /* client_open(): the address list does not parse */
    CLIENT_ERR_SYSTEM = -6,      /* client_open(): out of memory or the loop / thread failed */
    CLIENT_ERR_UNREACHABLE = -7, /* client_call_once(): no connection, or no valid reply on it */
} client_error_t;

/* Options of client_open(). A field left 0 takes its default. */
typedef struct client_options {
    uint32_t sessions;           /* connections, each one message in flight (1 ..= 256; 1) */
    uint32_t requests_max;       /* submissions outstanding at once (1 ..= 2^20; 1024) */
    uint32_t attempt_timeout_ms; /* one attempt (connect, or send to reply) (1000) */
    uint32_t deadline_ms;        /* from submission to giving up with CLIENT_ERR_TIMEOUT (10000) */
    uint32_t backoff_min_ms;     /* first wait after a round of addresses / on busy (10) */
    uint32_t backoff_max_ms;     /* the wait doubles up to this (500) */
    uint64_t cell;               /* written into every header's cell field (0: any) */
    /* NULL: the client runs its own I/O thread. Else the client runs on this loop, which the
     * caller runs: no thread of its own, no wake-up between threads (an event loop that sends
     * many requests saves two thread hand-offs per batch). Then client_open(),
     * client_submit() and client_close() must be called on the loop's thread, callbacks run
     * there, client_call() is not available, and client_close() does not block: it answers
     * what is outstanding with CLIENT_ERR_CLOSED and the client is freed once the loop has
     * run its handles' closes (call it outside the client's own callbacks). */
    struct uv_loop_s *loop;
} client_options_t;

typedef struct client client_t;

typedef void (*client_callback_t)(void *ctx, int32_t status, uint64_t timestamp, const void *reply,
                                  uint32_t reply_size);

/* Opens a client of the cell whose replicas listen at `addresses`, "HOST:PORT[,HOST:PORT...]"
 * (at most 16; HOST an IPv4 literal or localhost), and starts its I/O thread, which connects
 * in the background. options may be NULL. Returns 0 and sets *out, or CLIENT_ERR_ADDRESS,
 * CLIENT_ERR_INVALID (an option out of range, or backoff_min_ms > backoff_max_ms) or
 * CLIENT_ERR_SYSTEM. */
int client_open(client_t **out, const char *addresses, const client_options_t *options);

/* Stops the I/O thread and frees the client. Callbacks of requests not yet answered run
 * (before it returns) with CLIENT_ERR_CLOSED; submissions made during or after it are not
 * accepted. Not from the I/O thread. */
void client_close(client_t *client);

/* Queues a request of op (proto_op_t) with body (size bytes: whole items of the op, 1 ..= 8189
 * events for create_*, 1 ..= 4095 requests for pay, exactly one item for the filter / tick /
 * test ops). The body is
 * BORROWED: it must stay valid and unchanged until the callback has run. Returns 0 when
 * accepted (then the callback runs exactly once), else CLIENT_ERR_INVALID / _FULL / _CLOSED
 * and the callback never runs. Thread-safe. */
int client_submit(client_t *client, uint8_t op, const void *body, uint32_t size,
                  client_callback_t callback, void *ctx);

/* Submits and waits. Returns the status (as the callback would get it, or client_submit()'s
 * error). Copies at most reply_capacity bytes of the reply body into reply and sets
 * *reply_size to the body's whole size (so *reply_size > reply_capacity means it was cut);
 * *timestamp gets the batch timestamp. reply_size and timestamp may be NULL. Not from the I/O
 * thread. */
int32_t client_call(client_t *client, uint8_t op, const void *body, uint32_t size, void *reply,
                    uint32_t reply_capacity, uint32_t *reply_size, uint64_t *timestamp);

/* Counters since client_open(), for tests and benchmarks; any thread. */
typedef struct client_stats {
    uint64_t submitted;       /* submissions accepted */
    uint64_t messages;        /* messages built (one per batch; a resend is not a new one) */
    uint64_t sends;           /* messages written to a connection, resends included */
    uint64_t connects;        /* connections established */
    uint64_t breaks;          /* connections given up: error, timeout, bad reply, not_leader */
    uint64_t replies_invalid; /* replies that failed validation */
    uint64_t timeouts;        /* submissions that reached their deadline */
    char last_error[128];     /* why the last connection was given up ("" when none) */
} client_stats_t;

void client_stats(client_t *client, client_stats_t *out);

/* One request to ONE replica, no retries, no failover, no I/O thread (client_once.c): for
 * administration tools, which must hear what the replica they ask answers — not_leader
 * included. Connects to address (one HOST:PORT), sends op with body, waits at most timeout_ms
 * in all, closes. Returns the reply's status (>= 0) and copies at most reply_capacity bytes of
 * its body into reply (*reply_size: the body's whole size); or CLIENT_ERR_ADDRESS,
 * CLIENT_ERR_INVALID (op or body size), CLIENT_ERR_TIMEOUT, CLIENT_ERR_UNREACHABLE (refused,
 * broken, or a reply that fails validation), CLIENT_ERR_SYSTEM. Any thread; blocking. Not for
 * writes: without retries it cannot know whether a lost request was applied. */
int32_t client_call_once(const char *address, uint8_t op, const void *body, uint32_t size,
                         void *reply, uint32_t reply_capacity, uint32_t *reply_size,
                         uint32_t timeout_ms);

/* A short text for a negative client_error_t, or proto_status_str() for a cell status. */
const char *client_status_str(int32_t status);

#endif

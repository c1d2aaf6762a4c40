/* The network between the replicas of one cell: every replica listens on its peer address
 * and keeps one outgoing TCP connection to each other replica, over which it sends Raft
 * messages as checksummed frames (src/repl/raft_wire.h). Runs on the node's libuv loop.
 *
 * Delivery is best effort, which is what Raft asks of a network: a message to a peer that is
 * not connected, or whose send buffer is full (a slow or stuck peer), is dropped and counted;
 * Raft resends what matters. Within one connection messages arrive in order. A frame that
 * fails validation (checksum, cell, malformed header) closes that incoming connection and is
 * logged; nothing else is affected. */
#ifndef CP_PEER_H
#define CP_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "repl/raft.h"

#define PEER_SENDBUF_MAX (64u << 20) /* queued bytes to one peer before messages are dropped */
#define PEER_MAX 16u /* peers a node ever connects to (members come and go; none is forgotten) */

typedef struct peer_addr {
    uint32_t id;
    char addr[64]; /* "HOST:PORT", IPv4 literal or localhost */
} peer_addr_t;

/* A received message, valid during the call. */
typedef void (*peer_recv_fn)(void *ctx, const rf_msg_t *m);

typedef struct peer_stats {
    uint64_t sent, dropped, received, bad_frames, connects;
} peer_stats_t;

typedef struct peer_net peer_net_t;

/* Listens on the address of `self` in peers[] and starts connecting to the others. Returns
 * NULL with a message in err when the address does not parse or cannot be bound. */
peer_net_t *peer_net_create(uv_loop_t *loop, uint64_t cell, uint32_t self, const peer_addr_t *peers,
                            uint32_t count, peer_recv_fn recv, void *ctx, char *err,
                            size_t err_size);

/* Queues m for its destination (m->h.to); never blocks. */
void peer_net_send(peer_net_t *net, const rf_msg_t *m);

/* Starts connecting to a new peer (a member added to the group). 0, also when id is known with
 * this address already; -1 when the address does not parse, id has another address or
 * PEER_MAX peers exist. Peers are never removed: a removed member is just not sent to. */
int peer_net_add(peer_net_t *net, uint32_t id, const char *addr);

/* The prefix of the net's log lines (default "cellpay node"); they go on with ": peers: ". */
void peer_net_set_log_name(peer_net_t *net, const char *name);

void peer_net_stats(const peer_net_t *net, peer_stats_t *out);

/* Closes every connection and the listener; the net is freed once the loop has run the
 * close callbacks (run the loop until it has no more active handles). */
void peer_net_close(peer_net_t *net);

/* "HOST:PORT" (an IPv4 literal or localhost, port 1..65535) to an address; false when it
 * does not parse. */
bool peer_parse_addr(const char *s, struct sockaddr_in *out);

/* Parses "1=HOST:PORT,2=HOST:PORT,..." into out (at most max); returns the count, or 0 with
 * a message in err. */
uint32_t peer_parse_list(const char *s, peer_addr_t *out, uint32_t max, char *err, size_t err_size);

#endif

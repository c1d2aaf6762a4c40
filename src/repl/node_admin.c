/* The node's administration ops (docs/protocol.md): status and transfer_leader. They are
 * answered by the replica asked, leader or not, straight from its event loop: they do not go
 * through the log (they change no cell state) and need no read index (status describes this
 * replica, whatever it knows). Not authenticated yet: the client port must stay on loopback. */
#include <string.h>

#include "base/assert.h"
#include "repl/node_internal.h"

CP_STATIC_ASSERT(RF_NODES_MAX <= PROTO_STATUS_VOTERS_MAX, "every voter fits the status reply");
CP_STATIC_ASSERT((int)PROTO_ROLE_FOLLOWER == (int)RF_FOLLOWER &&
                     (int)PROTO_ROLE_PRE_CANDIDATE == (int)RF_PRE_CANDIDATE &&
                     (int)PROTO_ROLE_CANDIDATE == (int)RF_CANDIDATE &&
                     (int)PROTO_ROLE_LEADER == (int)RF_LEADER,
                 "status roles are the Raft roles");

bool node_admin_op(uint8_t op) {
    return op == PROTO_OP_STATUS || op == PROTO_OP_TRANSFER_LEADER;
}

/* The id Raft knows this replica by, and the group's voters: --peers, or a group of one. */
static uint32_t self_id(const node_t *n) {
    return n->config.peer_count ? n->config.node_id : 1;
}

static uint32_t voters(const node_t *n, uint32_t out[RF_NODES_MAX]) {
    if (n->config.peer_count == 0) {
        out[0] = 1;
        return 1;
    }
    for (uint32_t i = 0; i < n->config.peer_count; i++) out[i] = n->config.peers[i].id;
    return n->config.peer_count;
}

/* The state hash is a pass over the whole state; a replica that is asked again without
 * having applied anything since answers from the last one. (One node runs per process:
 * node_run() owns the default loop, so one cache serves.) */
static struct {
    const cell_t *cell;
    uint64_t applied_index;
    u128 hash;
    bool valid;
} hash_cache;

static u128 state_hash(const node_t *n) {
    if (!hash_cache.valid || hash_cache.cell != n->cell ||
        hash_cache.applied_index != n->applied_index) {
        hash_cache.cell = n->cell;
        hash_cache.applied_index = n->applied_index;
        hash_cache.hash = cell_state_hash(n->cell);
        hash_cache.valid = true;
    }
    return hash_cache.hash;
}

static uint32_t admin_status(node_t *n, void *out, uint32_t *size) {
    rf_info_t info;
    rf_status(n->rf, &info);
    proto_status_reply_t s = {
        .state_hash = state_hash(n),
        .cell = n->config.cell_id,
        .term = info.term,
        .first_index = info.first_index,
        .last_index = info.last_index,
        .durable_index = info.durable_index,
        .commit_index = info.commit_index,
        .applied_index = n->applied_index,
        .snapshot_index = n->snapshot_index,
        .node_id = self_id(n),
        .leader_id = info.leader,
        .role = (uint8_t)info.role,
    };
    uint32_t ids[RF_NODES_MAX];
    s.voter_count = (uint8_t)voters(n, ids);
    for (uint32_t i = 0; i < s.voter_count; i++) {
        s.voters[i] = ids[i];
        s.voter_match[i] = rf_peer_match(n->rf, ids[i]);
    }
    memcpy(out, &s, sizeof s);
    *size = sizeof s;
    return PROTO_STATUS_OK;
}

/* Target 0: the follower with the highest acknowledged index (the lowest id of equals), the
 * one that can take over soonest. RF_NONE when the group has no other voter. */
static uint32_t most_up_to_date_follower(const node_t *n) {
    uint32_t ids[RF_NODES_MAX], count = voters(n, ids), best = RF_NONE;
    uint64_t best_match = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (ids[i] == self_id(n)) continue;
        uint64_t m = rf_peer_match(n->rf, ids[i]);
        if (best == RF_NONE || m > best_match || (m == best_match && ids[i] < best)) {
            best = ids[i];
            best_match = m;
        }
    }
    return best;
}

static uint32_t admin_transfer_leader(node_t *n, const void *body) {
    proto_transfer_leader_t req;
    memcpy(&req, body, sizeof req);
    for (size_t i = 0; i < sizeof req.reserved; i++)
        if (req.reserved[i] != 0) return PROTO_STATUS_INVALID;
    if (n->lead_term == 0) return PROTO_STATUS_NOT_LEADER;
    uint32_t to = req.target != 0 ? req.target : most_up_to_date_follower(n);
    if (to == RF_NONE) return PROTO_STATUS_INVALID; /* a group of one: nobody to hand over to */
    /* The core sends TimeoutNow once the target has the whole log; the node's next ready
     * (at the latest its next tick) carries it. Proposals get not_leader meanwhile, so the
     * clients move on to the new leader. */
    rf_status_t st = rf_transfer_leadership(n->rf, to);
    switch (st) {
    case RF_OK: node_log("transferring leadership to replica %u", to); return PROTO_STATUS_OK;
    case RF_ERR_NOT_LEADER: return PROTO_STATUS_NOT_LEADER;
    default: return PROTO_STATUS_INVALID; /* not a voter, or this replica itself */
    }
}

uint32_t node_admin_request(node_t *n, const proto_header_t *h, const void *body, void *out,
                            uint32_t *size) {
    *size = 0;
    switch (h->operation) {
    case PROTO_OP_STATUS: return admin_status(n, out, size);
    case PROTO_OP_TRANSFER_LEADER: return admin_transfer_leader(n, body);
    default: cp_assert(!"node_admin_request() takes admin ops only");
    }
    return PROTO_STATUS_INVALID;
}

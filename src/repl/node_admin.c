/* The node's administration ops (docs/protocol.md): status, transfer_leader, add_replica and
 * remove_replica. They are answered by the replica asked, straight from its event loop: they
 * change no cell state and need no read index (status describes this replica, whatever it
 * knows); the membership changes are proposed by the leader as Raft membership entries.
 * Not authenticated yet: the client port must stay on loopback. */
#include <string.h>

#include "base/assert.h"
#include "repl/node_internal.h"

CP_STATIC_ASSERT(RF_NODES_MAX <= PROTO_STATUS_MEMBERS_MAX, "every member fits the status reply");
CP_STATIC_ASSERT((int)PROTO_ROLE_FOLLOWER == (int)RF_FOLLOWER &&
                     (int)PROTO_ROLE_PRE_CANDIDATE == (int)RF_PRE_CANDIDATE &&
                     (int)PROTO_ROLE_CANDIDATE == (int)RF_CANDIDATE &&
                     (int)PROTO_ROLE_LEADER == (int)RF_LEADER,
                 "status roles are the Raft roles");

bool node_admin_op(uint8_t op) {
    return op == PROTO_OP_STATUS || op == PROTO_OP_TRANSFER_LEADER || op == PROTO_OP_ADD_REPLICA ||
           op == PROTO_OP_REMOVE_REPLICA;
}

/* The id Raft knows this replica by, and the group's voters: --peers, or a group of one. */
static uint32_t self_id(const node_t *n) {
    return n->config.peer_count ? n->config.node_id : 1;
}

/* The state hash is a pass over the whole state; a replica that is asked again without
 * having applied anything since answers from the last one (kept per node: several nodes may
 * share a process). */
static u128 state_hash(node_t *n) {
    if (!n->hash_cache.valid || n->hash_cache.cell != n->cell ||
        n->hash_cache.applied_index != n->applied_index) {
        n->hash_cache.cell = n->cell;
        n->hash_cache.applied_index = n->applied_index;
        n->hash_cache.hash = cell_state_hash(n->cell);
        n->hash_cache.valid = true;
    }
    return n->hash_cache.hash;
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
        .outbox_backlog = pay_outbox_backlog(cell_pay(n->cell)),
        .tcc_trying = pay_activities_trying(cell_pay(n->cell)),
        .orders_reserved = pay_orders_reserved(cell_pay(n->cell)),
    };
    if (n->relay) {
        relay_stats_t rs = relay_stats(n->relay);
        s.relay_delivered = rs.delivered;
        s.relay_acked = rs.acked;
        s.relay_recovered = rs.recovered;
        s.relay_resolved = rs.resolved;
    }
    rf_members_t m;
    rf_members(n->rf, &m);
    s.member_count = (uint8_t)m.count;
    for (uint32_t i = 0; i < m.count; i++) {
        s.members[i] = m.ids[i];
        if (!(m.voters >> i & 1)) s.learners |= (uint8_t)(1u << i);
        (void)rf_peer_match(n->rf, m.ids[i], &s.member_match[i]);
    }
    memcpy(out, &s, sizeof s);
    *size = sizeof s;
    return PROTO_STATUS_OK;
}

/* Target 0: the follower with the highest acknowledged index (the lowest id of equals), the
 * one that can take over soonest. RF_NONE when the group has no other voter. */
static uint32_t most_up_to_date_follower(const node_t *n) {
    rf_members_t mm;
    rf_members(n->rf, &mm);
    uint32_t best = RF_NONE;
    uint64_t best_match = 0;
    for (uint32_t i = 0; i < mm.count; i++) {
        uint32_t id = mm.ids[i];
        uint64_t m = 0;
        if (id == self_id(n) || !(mm.voters >> i & 1) || !rf_peer_match(n->rf, id, &m)) continue;
        if (best == RF_NONE || m > best_match || (m == best_match && id < best)) {
            best = id;
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
    case RF_OK: node_log(n, "transferring leadership to replica %u", to); return PROTO_STATUS_OK;
    case RF_ERR_NOT_LEADER: return PROTO_STATUS_NOT_LEADER;
    default: return PROTO_STATUS_INVALID; /* not a voter, or this replica itself */
    }
}

static uint32_t rf_to_proto(rf_status_t st) {
    switch (st) {
    case RF_OK: return PROTO_STATUS_OK;
    case RF_ERR_NOT_LEADER: return PROTO_STATUS_NOT_LEADER;
    case RF_ERR_CONF_PENDING: return PROTO_STATUS_CONF_PENDING;
    case RF_ERR_INVALID:
    case RF_ERR_TOO_BIG: return PROTO_STATUS_INVALID;
    default: return PROTO_STATUS_BUSY; /* not ready in its term yet, transferring, full */
    }
}

/* add_replica: the replica joins as a learner (the leader promotes it once it has caught up,
 * node_members_tick); remove_replica: it leaves, voter or learner (the leader too). The
 * answer comes when the change is proposed; `cellpay admin` then watches the status. */
static uint32_t admin_member_change(node_t *n, uint8_t op, const void *body) {
    proto_member_change_t req;
    memcpy(&req, body, sizeof req);
    for (size_t i = 0; i < sizeof req.reserved; i++)
        if (req.reserved[i] != 0) return PROTO_STATUS_INVALID;
    size_t len = strnlen(req.addr, sizeof req.addr);
    if (len == sizeof req.addr) return PROTO_STATUS_INVALID; /* not NUL-terminated */
    for (size_t i = len; i < sizeof req.addr; i++)
        if (req.addr[i] != 0) return PROTO_STATUS_INVALID;
    if (n->lead_term == 0) return PROTO_STATUS_NOT_LEADER;
    if (!n->net) return PROTO_STATUS_INVALID; /* no --peers: a group of one stays one */
    if (op == PROTO_OP_ADD_REPLICA) {
        mb_addr_t a;
        const char *known = mb_book_get(&n->book, req.id);
        if (req.id == RF_NONE || !mb_addr_parse(req.addr, &a)) return PROTO_STATUS_INVALID;
        if (known && strcmp(known, req.addr) != 0) {
            /* A removed replica's id stays tied to its address: reuse would confuse peers. */
            node_log(n, "refusing to add replica %u at %s: that id was at %s", req.id, req.addr,
                     known);
            return PROTO_STATUS_INVALID;
        }
        if (!known && !mb_book_put(&n->book, req.id, req.addr)) return PROTO_STATUS_INVALID;
    } else if (len != 0) {
        return PROTO_STATUS_INVALID;
    }
    rf_conf_op_t cop = op == PROTO_OP_ADD_REPLICA ? RF_CONF_ADD_LEARNER : RF_CONF_REMOVE;
    uint32_t st = rf_to_proto(node_members_propose(n, cop, req.id));
    if (st == PROTO_STATUS_OK)
        node_log(n, "%s replica %u%s%s", op == PROTO_OP_ADD_REPLICA ? "adding" : "removing", req.id,
                 len ? " at " : "", req.addr);
    return st;
}

uint32_t node_admin_request(node_t *n, const proto_header_t *h, const void *body, void *out,
                            uint32_t *size) {
    uint32_t body_size = h->size - PROTO_HEADER_SIZE, want = proto_request_item_size(h->operation);
    *size = 0;
    if (body_size != want) return PROTO_STATUS_INVALID; /* exactly one item (or none) */
    switch (h->operation) {
    case PROTO_OP_STATUS: return admin_status(n, out, size);
    case PROTO_OP_TRANSFER_LEADER: return admin_transfer_leader(n, body);
    case PROTO_OP_ADD_REPLICA:
    case PROTO_OP_REMOVE_REPLICA: return admin_member_change(n, h->operation, body);
    default: cp_assert(!"node_admin_request() takes admin ops only");
    }
    return PROTO_STATUS_INVALID;
}

/* The membership of a node's group (raft.h, MEMBERSHIP; members.h): where the members'
 * addresses come from, how membership entries are stored in the log, and the leader's
 * promotion of learners that have caught up. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "repl/node_internal.h"

const void *node_log_body(const rf_entry_t *e, unsigned char *scratch, uint32_t *size) {
    if (e->type != RF_ENTRY_MEMBERS) {
        *size = e->size;
        return e->data;
    }
    uint64_t prefix[2] = {0, NODE_KIND_MEMBERS};
    memcpy(scratch, prefix, sizeof prefix);
    memcpy(scratch + NODE_ENTRY_PREFIX, e->data, e->size);
    *size = e->size + NODE_ENTRY_PREFIX;
    return scratch;
}

bool node_log_entry(const void *body, uint32_t size, uint64_t term, rf_entry_t *out) {
    uint64_t kind = NODE_KIND_COMMANDS;
    if (size >= NODE_ENTRY_PREFIX) memcpy(&kind, (const unsigned char *)body + 8, sizeof kind);
    if (kind == NODE_KIND_COMMANDS) {
        *out = (rf_entry_t){.term = term, .size = size, .data = body};
        return true;
    }
    if (kind != NODE_KIND_MEMBERS) return false;
    *out = (rf_entry_t){.term = term,
                        .size = size - NODE_ENTRY_PREFIX,
                        .data = (const unsigned char *)body + NODE_ENTRY_PREFIX,
                        .type = RF_ENTRY_MEMBERS};
    return true;
}

/* The addresses a membership entry carries go into the book as soon as the entry is in the
 * log: the membership takes effect then, and its new members must be reachable. */
void node_members_learn(node_t *n, const rf_entry_t *e) {
    rf_members_t m;
    mb_addrs_t a;
    if (e->type != RF_ENTRY_MEMBERS || !rf_members_decode(e->data, e->size, &m)) return;
    if (e->size != sizeof(rf_members_wire_t) + sizeof a) return;
    memcpy(&a, (const unsigned char *)e->data + sizeof(rf_members_wire_t), sizeof a);
    if (!mb_book_learn(&n->book, &m, &a))
        node_log(n, "a membership entry's addresses do not parse");
}

/* The starting membership: the snapshot's when it stores one, else --peers (or, with --join,
 * none). Addresses: --peers, then the snapshot's. */
int node_members_init(node_t *n, const mb_record_t *snap, rf_config_t *c) {
    const node_config_t *nc = &n->config;
    for (uint32_t i = 0; i < nc->peer_count; i++)
        if (!mb_book_put(&n->book, nc->peers[i].id, nc->peers[i].addr)) return -1;
    rf_members_t m;
    if (snap->members.magic != 0) {
        if (!rf_members_decode(&snap->members, sizeof snap->members, &m) ||
            !mb_book_learn(&n->book, &m, &snap->addrs)) {
            node_log(n, "the snapshot's membership record is damaged");
            return -1;
        }
        c->voter_count = c->learner_count = 0;
        for (uint32_t i = 0; i < m.count; i++) {
            if (m.voters >> i & 1)
                c->voters[c->voter_count++] = m.ids[i];
            else
                c->learners[c->learner_count++] = m.ids[i];
        }
    }
    return 0;
}

/* The membership a snapshot at index stores, with every member's address. */
bool node_members_record(node_t *n, uint64_t index, mb_record_t *out) {
    rf_members_t m;
    memset(out, 0, sizeof *out);
    if (!rf_members_at(n->rf, index, &m) || !mb_book_addrs(&n->book, &m, &out->addrs)) return false;
    rf_members_encode(&m, &out->members);
    return true;
}

/* Connects to every member the peer network does not know yet; runs after every ready, so it
 * looks only when the membership changed. */
void node_members_sync(node_t *n) {
    if (!n->net) return;
    rf_members_t m;
    rf_members(n->rf, &m);
    if (n->members_synced && memcmp(&m, &n->members_seen, sizeof m) == 0) return;
    n->members_seen = m;
    n->members_synced = true;
    for (uint32_t i = 0; i < m.count; i++) {
        if (m.ids[i] == n->config.node_id) continue;
        const char *addr = mb_book_get(&n->book, m.ids[i]);
        if (!addr || peer_net_add(n->net, m.ids[i], addr) != 0)
            node_log(n, "no usable address for member %u", m.ids[i]);
    }
}

/* Leader: a learner whose log has caught up with the commit index becomes a voter; one change
 * at a time, so at most one per look (every 10 ticks). */
void node_members_tick(node_t *n) {
    if (++n->promote_at_tick < 10) return;
    n->promote_at_tick = 0;
    rf_members_t m;
    rf_info_t inf;
    rf_members(n->rf, &m);
    rf_status(n->rf, &inf);
    for (uint32_t i = 0; i < m.count && inf.role == RF_LEADER; i++) {
        uint64_t match = 0;
        if ((m.voters >> i & 1) || !rf_peer_match(n->rf, m.ids[i], &match)) continue;
        if (match < inf.commit_index) continue;
        if (node_members_propose(n, RF_CONF_PROMOTE, m.ids[i]) == RF_OK)
            node_log(n, "replica %u has caught up: promoting it to voter", m.ids[i]);
        return;
    }
}

rf_status_t node_members_propose(node_t *n, rf_conf_op_t op, uint32_t id) {
    rf_members_t m, next;
    mb_addrs_t a;
    rf_members(n->rf, &m);
    rf_status_t st = rf_members_change(&m, op, id, &next);
    if (st != RF_OK) return st;
    if (!mb_book_addrs(&n->book, &next, &a)) return RF_ERR_INVALID;
    return rf_propose_members(n->rf, op, id, &a, sizeof a, NULL);
}

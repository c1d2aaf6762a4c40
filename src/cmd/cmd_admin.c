/* `cellpay admin`: administration of running cells over the binary protocol's admin ops
 * (docs/protocol.md): the status of every replica of a cell, leadership transfer, and adding
 * and removing replicas. Each
 * replica is asked directly (client_call_once): an admin tool must hear each replica's own
 * answer, which the failover of the client library would hide. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client.h"
#include "cmd/cmd.h"
#include "cmd/cmd_args.h"
#include "proto/proto.h"

#define ADMIN_REPLICAS_MAX CLIENT_ADDRESSES_MAX
#define TIMEOUT_MS_DEFAULT 5000u
#define ADD_TIMEOUT_MS_DEFAULT 120000u /* a new replica may need a whole snapshot first */
#define TIMEOUT_MS_MAX 3600000u
#define ASK_MS_MAX 1000u /* one replica's answer to one question */
#define POLL_MS 50u
#define RETRY_MS 500u /* ask the leader again when it still leads in the same term */

static const char admin_usage[] =
    "usage: cellpay admin cell status --addr HOST:PORT[,HOST:PORT...] [--timeout-ms N]\n"
    "       cellpay admin cell transfer-leader --addr HOST:PORT[,HOST:PORT...] [--to ID]\n"
    "                                          [--timeout-ms N]\n"
    "       cellpay admin cell add-replica --addr HOST:PORT[,...] --id N --peer-addr HOST:PORT\n"
    "                                      [--timeout-ms N]\n"
    "       cellpay admin cell remove-replica --addr HOST:PORT[,...] --id N [--timeout-ms N]\n"
    "       cellpay admin routes show|init|set --file PATH ...  (`admin routes --help`: the\n"
    "                                          route table file that cellpay gateway reads)\n"
    "       cellpay admin check (--routes FILE | --data DIR)  (`admin check --help`: every\n"
    "                                          cell's debits and credits per ledger, added up)\n"
    "\n"
    "Administration of one cell's replicas (`cellpay node`), each asked directly at its\n"
    "client address. The admin ops are not authenticated yet: keep the nodes' --listen\n"
    "addresses on loopback.\n"
    "\n"
    "cell status\n"
    "  Prints one line per replica: its id, Raft role, term, the leader it knows, its log\n"
    "  indexes (first in its Raft window, last, durable, commit, applied), its newest\n"
    "  snapshot, the hash of its state at its applied index, and the group's voters and\n"
    "  learners as it knows them; the leader adds each member's acknowledged index\n"
    "  (match=ID:INDEX,...). Replicas that applied the same index must show the same hash.\n"
    "  Exits 1 when a replica does not answer (its line says why).\n"
    "\n"
    "cell transfer-leader\n"
    "  Finds the leader among the replicas, asks it to hand leadership to --to ID (default:\n"
    "  the follower with the most of the log), waits until a replica leads in a newer term\n"
    "  and prints it. The leader gives a transfer up when its target has not caught up within\n"
    "  an election timeout (a slow disk there, say), so while it still leads in the same term\n"
    "  it is asked again every 0.5 s. The leader takes no writes while a transfer runs.\n"
    "  Exits 1 when there is no leader, the leader refuses (an unknown id), or no new leader\n"
    "  is seen within --timeout-ms.\n"
    "\n"
    "cell add-replica\n"
    "  Asks the leader to add replica --id, whose peer address is --peer-addr, to the group.\n"
    "  Start that replica first: `cellpay node --cell C --id N --join --peers LIST` with LIST\n"
    "  naming the current members and itself. It joins as a learner (it gets the log, or the\n"
    "  leader's snapshot, but does not vote); the leader makes it a voter once it has caught\n"
    "  up. Waits until it is a voter (default --timeout-ms 120000); exits 1 when it is not.\n"
    "\n"
    "cell remove-replica\n"
    "  Asks the leader to remove replica --id (a voter, a learner, or the leader itself, which\n"
    "  then hands over to the others) and waits until a leader no longer lists it. The removed\n"
    "  replica's process keeps running outside the group: stop it. Membership changes go one\n"
    "  at a time; while one is under way the next waits (and retries within --timeout-ms).\n"
    "\n"
    "  --addr LIST       the client addresses (--listen) of the cell's replicas, IPv4 or\n"
    "                    localhost, at most 16 (required)\n"
    "  --to ID           transfer-leader: the replica (its --id) to lead next\n"
    "  --id N            add-replica, remove-replica: the replica's id\n"
    "  --peer-addr H:P   add-replica: the new replica's peer address (its entry in --peers)\n"
    "  --timeout-ms N    status: per replica; the others: in all (default 5000)\n";

typedef struct replica {
    char addr[64];
    int32_t st; /* the status call's outcome: PROTO_STATUS_OK, a cell status, or client error */
    proto_status_reply_t s;
} replica_t;

static uint32_t split_addresses(const char *list, replica_t *out) {
    uint32_t n = 0;
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (n == ADMIN_REPLICAS_MAX || len == 0 || len >= sizeof out[n].addr) return 0;
        memcpy(out[n].addr, p, len);
        out[n].addr[len] = '\0';
        n++;
        if (!comma) break;
        p = comma + 1;
        if (!*p) return 0; /* a trailing comma */
    }
    return n;
}

static void ask_status(replica_t *r, uint32_t timeout_ms) {
    uint32_t size = 0;
    r->st =
        client_call_once(r->addr, PROTO_OP_STATUS, NULL, 0, &r->s, sizeof r->s, &size, timeout_ms);
    if (r->st == PROTO_STATUS_OK && size != sizeof r->s) r->st = CLIENT_ERR_UNREACHABLE;
}

static const char *role_str(uint8_t role) {
    switch (role) {
    case PROTO_ROLE_FOLLOWER: return "follower";
    case PROTO_ROLE_PRE_CANDIDATE: return "pre-candidate";
    case PROTO_ROLE_CANDIDATE: return "candidate";
    case PROTO_ROLE_LEADER: return "leader";
    }
    return "unknown";
}

static void print_status(const replica_t *r) {
    if (r->st != PROTO_STATUS_OK) {
        printf("%s error: %s\n", r->addr, client_status_str(r->st));
        return;
    }
    const proto_status_reply_t *s = &r->s;
    printf("%s id=%" PRIu32 " role=%s term=%" PRIu64 " leader=%" PRIu32 " first=%" PRIu64
           " last=%" PRIu64 " durable=%" PRIu64 " commit=%" PRIu64 " applied=%" PRIu64
           " snapshot=%" PRIu64 " hash=%016" PRIx64 "%016" PRIx64,
           r->addr, s->node_id, role_str(s->role), s->term, s->leader_id, s->first_index,
           s->last_index, s->durable_index, s->commit_index, s->applied_index, s->snapshot_index,
           (uint64_t)(s->state_hash >> 64), (uint64_t)s->state_hash);
    uint32_t count =
        s->member_count < PROTO_STATUS_MEMBERS_MAX ? s->member_count : PROTO_STATUS_MEMBERS_MAX;
    for (int learners = 0; learners < 2; learners++) {
        printf(learners ? " learners=" : " voters=");
        bool any = false;
        for (uint32_t i = 0; i < count; i++)
            if (((s->learners >> i) & 1) == (unsigned)learners) {
                printf("%s%" PRIu32, any ? "," : "", s->members[i]);
                any = true;
            }
        if (!any) printf("-");
    }
    if (s->role == PROTO_ROLE_LEADER)
        for (uint32_t i = 0; i < count; i++)
            printf("%s%" PRIu32 ":%" PRIu64, i ? "," : " match=", s->members[i],
                   s->member_match[i]);
    printf(" outbox=%" PRIu64 " relay_delivered=%" PRIu64 " relay_acked=%" PRIu64
           " relay_recovered=%" PRIu64 " tcc_trying=%" PRIu64 " relay_resolved=%" PRIu64
           " orders_reserved=%" PRIu64,
           s->outbox_backlog, s->relay_delivered, s->relay_acked, s->relay_recovered, s->tcc_trying,
           s->relay_resolved, s->orders_reserved);
    putchar('\n');
}

static int admin_status(replica_t *rs, uint32_t n, uint32_t timeout_ms) {
    int rc = 0;
    for (uint32_t i = 0; i < n; i++) {
        ask_status(&rs[i], timeout_ms);
        print_status(&rs[i]);
        if (rs[i].st != PROTO_STATUS_OK) rc = 1;
    }
    return rc;
}

/* The replica that leads in the highest term among those that answer; -1 when none does. */
static int find_leader(replica_t *rs, uint32_t n, uint32_t ask_ms) {
    int best = -1;
    for (uint32_t i = 0; i < n; i++) {
        ask_status(&rs[i], ask_ms);
        if (rs[i].st == PROTO_STATUS_OK && rs[i].s.role == PROTO_ROLE_LEADER &&
            (best < 0 || rs[i].s.term > rs[best].s.term))
            best = (int)i;
    }
    return best;
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(uint32_t ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int admin_transfer(replica_t *rs, uint32_t n, uint32_t to, uint32_t timeout_ms) {
    uint64_t deadline = now_ms() + timeout_ms;
    uint32_t ask_ms = timeout_ms < ASK_MS_MAX ? timeout_ms : ASK_MS_MAX;
    int old = find_leader(rs, n, ask_ms);
    if (old < 0) {
        fprintf(stderr, "cellpay admin: no replica of --addr leads the cell now\n");
        return 1;
    }
    proto_status_reply_t was = rs[old].s;
    if (to == was.node_id) {
        printf("replica %" PRIu32 " (%s) already leads, term %" PRIu64 "\n", to, rs[old].addr,
               was.term);
        return 0;
    }
    proto_transfer_leader_t req = {.target = to};
    uint32_t requests = 0;
    uint64_t asked = 0;
    for (;;) {
        if (requests == 0 || now_ms() - asked >= RETRY_MS) {
            int32_t st = client_call_once(rs[old].addr, PROTO_OP_TRANSFER_LEADER, &req, sizeof req,
                                          NULL, 0, NULL, ask_ms);
            /* not_leader on a later request: it stepped down meanwhile; the loop looks. */
            if (st != PROTO_STATUS_OK && !(requests > 0 && st == PROTO_STATUS_NOT_LEADER)) {
                fprintf(stderr,
                        "cellpay admin: replica %" PRIu32 " (%s) did not start the transfer: %s\n",
                        was.node_id, rs[old].addr,
                        st != PROTO_STATUS_INVALID ? client_status_str(st)
                        : to != 0                  ? "it has no voter of that id"
                                                   : "it has no follower to hand over to");
                return 1;
            }
            requests++;
            asked = now_ms();
        }
        if (now_ms() >= deadline) break;
        sleep_ms(POLL_MS);
        /* Done when a replica leads in a newer term: the old leader steps down as the target
         * campaigns. */
        int now = find_leader(rs, n, ask_ms);
        if (now >= 0 && rs[now].s.node_id == was.node_id) continue; /* still: ask again */
        if (now < 0 || rs[now].s.term <= was.term) {
            asked = now_ms(); /* an election runs: wait for its outcome before asking again */
            continue;
        }
        printf("leader: replica %" PRIu32 " (%s), term %" PRIu64 "; was replica %" PRIu32
               ", term %" PRIu64 " (%" PRIu32 " request%s)\n",
               rs[now].s.node_id, rs[now].addr, rs[now].s.term, was.node_id, was.term, requests,
               requests == 1 ? "" : "s");
        if (to != 0 && rs[now].s.node_id != to) {
            fprintf(stderr,
                    "cellpay admin: replica %" PRIu32 " was asked for but %" PRIu32
                    " was elected\n",
                    to, rs[now].s.node_id);
            return 1;
        }
        return 0;
    }
    fprintf(stderr, "cellpay admin: no new leader within %" PRIu32 " ms (%" PRIu32 " request%s)\n",
            timeout_ms, requests, requests == 1 ? "" : "s");
    return 1;
}

/* Whether status s lists id as a member, and as a voter. */
static bool lists(const proto_status_reply_t *s, uint32_t id, bool *voter) {
    for (uint32_t i = 0; i < s->member_count && i < PROTO_STATUS_MEMBERS_MAX; i++)
        if (s->members[i] == id) {
            *voter = !((s->learners >> i) & 1);
            return true;
        }
    return false;
}

/* add-replica / remove-replica: ask whoever leads (again after a leader change or while an
 * earlier change is under way), then watch the leader's status until the change shows. */
static int admin_members(replica_t *rs, uint32_t n, bool add, uint32_t id, const char *peer,
                         uint32_t timeout_ms) {
    uint64_t deadline = now_ms() + timeout_ms;
    proto_member_change_t req = {.id = id};
    if (add) snprintf(req.addr, sizeof req.addr, "%s", peer);
    bool asked = false;
    int32_t last = PROTO_STATUS_OK;
    while (now_ms() < deadline) {
        int l = find_leader(rs, n, ASK_MS_MAX);
        bool voter = false, member = l >= 0 && lists(&rs[l].s, id, &voter);
        if (l >= 0 && (add ? member && voter : !member) && (asked || !add)) {
            printf("replica %" PRIu32 " %s; leader: replica %" PRIu32 " (%s), term %" PRIu64 "\n",
                   id, add ? "is a voter" : "is out of the group", rs[l].s.node_id, rs[l].addr,
                   rs[l].s.term);
            return 0;
        }
        if (l >= 0 && !(add && member)) {
            last =
                client_call_once(rs[l].addr, add ? PROTO_OP_ADD_REPLICA : PROTO_OP_REMOVE_REPLICA,
                                 &req, sizeof req, NULL, 0, NULL, ASK_MS_MAX);
            if (last == PROTO_STATUS_INVALID) {
                fprintf(stderr, "cellpay admin: replica %" PRIu32 " refused: %s\n", rs[l].s.node_id,
                        add ? "the id is a member already, was used at another address, the "
                              "group is full (7), or --peer-addr does not parse"
                            : "the id is not a member, or it is the last voter");
                return 1;
            }
            if (last == PROTO_STATUS_OK) asked = true;
        } else if (l >= 0) {
            asked = true; /* a learner now: the leader promotes it once it has caught up */
        }
        sleep_ms(POLL_MS * 4);
    }
    fprintf(stderr, "cellpay admin: replica %" PRIu32 " is not %s within %" PRIu32 " ms%s%s\n", id,
            add ? "a voter" : "out of the group", timeout_ms,
            last != PROTO_STATUS_OK ? "; last answer: " : "",
            last != PROTO_STATUS_OK ? client_status_str(last) : "");
    return 1;
}

int cmd_admin(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "routes")) return cmd_admin_routes(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "check")) return cmd_admin_check(argc - 1, argv + 1);
    if (argc >= 2 &&
        (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))) {
        fputs(admin_usage, stdout);
        return 0;
    }
    static const char *const subs[] = {"status", "transfer-leader", "add-replica",
                                       "remove-replica"};
    int sub = -1;
    for (int k = 0; k < 4 && argc >= 3; k++)
        if (!strcmp(argv[2], subs[k])) sub = k;
    if (argc < 3 || strcmp(argv[1], "cell") != 0 || sub < 0) {
        fprintf(stderr,
                "cellpay admin: expected `cell status`, `cell transfer-leader`, "
                "`cell add-replica` or `cell remove-replica`\n\n%s",
                admin_usage);
        return 2;
    }
    bool transfer = sub == 1, members = sub >= 2;
    const char *addr = NULL, *peer = NULL;
    uint32_t to = 0, id = 0, timeout_ms = sub == 2 ? ADD_TIMEOUT_MS_DEFAULT : TIMEOUT_MS_DEFAULT;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(admin_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--addr") && i + 1 < argc) {
            addr = argv[++i];
        } else if (!strcmp(a, "--to") && transfer) {
            if (!args_u32(argc, argv, &i, 1, UINT32_MAX, &to)) return 2;
        } else if (!strcmp(a, "--id") && members) {
            if (!args_u32(argc, argv, &i, 1, UINT32_MAX, &id)) return 2;
        } else if (!strcmp(a, "--peer-addr") && sub == 2 && i + 1 < argc) {
            peer = argv[++i];
        } else if (!strcmp(a, "--timeout-ms")) {
            if (!args_u32(argc, argv, &i, 1, TIMEOUT_MS_MAX, &timeout_ms)) return 2;
        } else {
            fprintf(stderr, "cellpay admin: unknown option or missing value \"%s\"\n\n%s", a,
                    admin_usage);
            return 2;
        }
    }
    static replica_t rs[ADMIN_REPLICAS_MAX];
    uint32_t n = addr ? split_addresses(addr, rs) : 0;
    if (n == 0) {
        fprintf(stderr, "cellpay admin: --addr takes HOST:PORT[,HOST:PORT...] (at most %u)\n",
                ADMIN_REPLICAS_MAX);
        return 2;
    }
    if (members && (id == 0 || (sub == 2 && (!peer || strlen(peer) >= 56)))) {
        fprintf(stderr, "cellpay admin: %s needs --id N%s\n", subs[sub],
                sub == 2 ? " and --peer-addr HOST:PORT" : "");
        return 2;
    }
    if (members) return admin_members(rs, n, sub == 2, id, peer, timeout_ms);
    return transfer ? admin_transfer(rs, n, to, timeout_ms) : admin_status(rs, n, timeout_ms);
}

/* `cellpay admin`: administration of running cells over the binary protocol's admin ops
 * (docs/protocol.md): the status of every replica of a cell, and leadership transfer. Each
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
#define TIMEOUT_MS_MAX 3600000u
#define ASK_MS_MAX 1000u /* one replica's answer to one question */
#define POLL_MS 50u
#define RETRY_MS 500u /* ask the leader again when it still leads in the same term */

static const char admin_usage[] =
    "usage: cellpay admin cell status --addr HOST:PORT[,HOST:PORT...] [--timeout-ms N]\n"
    "       cellpay admin cell transfer-leader --addr HOST:PORT[,HOST:PORT...] [--to ID]\n"
    "                                          [--timeout-ms N]\n"
    "\n"
    "Administration of one cell's replicas (`cellpay node`), each asked directly at its\n"
    "client address. The admin ops are not authenticated yet: keep the nodes' --listen\n"
    "addresses on loopback.\n"
    "\n"
    "cell status\n"
    "  Prints one line per replica: its id, Raft role, term, the leader it knows, its log\n"
    "  indexes (first in its Raft window, last, durable, commit, applied), its newest\n"
    "  snapshot, and the hash of its state at its applied index; the leader adds each\n"
    "  voter's acknowledged index (match=ID:INDEX,...). Replicas that applied the same index\n"
    "  must show the same hash. Exits 1 when a replica does not answer (its line says why).\n"
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
    "  --addr LIST       the client addresses (--listen) of the cell's replicas, IPv4 or\n"
    "                    localhost, at most 16 (required)\n"
    "  --to ID           transfer-leader: the replica (its --id) to lead next\n"
    "  --timeout-ms N    status: per replica; transfer-leader: in all (default 5000)\n"
    "\n"
    "Membership changes (adding or removing replicas) are not built yet.\n";

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
    if (s->role == PROTO_ROLE_LEADER) {
        uint32_t count =
            s->voter_count < PROTO_STATUS_VOTERS_MAX ? s->voter_count : PROTO_STATUS_VOTERS_MAX;
        for (uint32_t i = 0; i < count; i++)
            printf("%s%" PRIu32 ":%" PRIu64, i ? "," : " match=", s->voters[i], s->voter_match[i]);
    }
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

int cmd_admin(int argc, char **argv) {
    if (argc >= 2 &&
        (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))) {
        fputs(admin_usage, stdout);
        return 0;
    }
    if (argc < 3 || strcmp(argv[1], "cell") != 0 ||
        (strcmp(argv[2], "status") != 0 && strcmp(argv[2], "transfer-leader") != 0)) {
        fprintf(stderr, "cellpay admin: expected `cell status` or `cell transfer-leader`\n\n%s",
                admin_usage);
        return 2;
    }
    bool transfer = !strcmp(argv[2], "transfer-leader");
    const char *addr = NULL;
    uint32_t to = 0, timeout_ms = TIMEOUT_MS_DEFAULT;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(admin_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--addr") && i + 1 < argc) {
            addr = argv[++i];
        } else if (!strcmp(a, "--to") && transfer) {
            if (!args_u32(argc, argv, &i, 1, UINT32_MAX, &to)) return 2;
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
    return transfer ? admin_transfer(rs, n, to, timeout_ms) : admin_status(rs, n, timeout_ms);
}

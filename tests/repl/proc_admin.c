/* The admin ops on real processes: PROTO_OP_STATUS answered by every replica (a one-voter
 * node, a leader, followers), its state hash stable across a restart and moved by writes;
 * PROTO_OP_TRANSFER_LEADER from the leader (to a given replica, to the most up-to-date
 * follower), refused by followers and for bad targets; and `cellpay admin cell status |
 * transfer-leader` as a command: its lines and its exit codes.
 *
 * usage: proc_admin CELLPAY_BINARY */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "client/client.h"
#include "ledger/ledger.h"
#include "node_proc.h"
#include "proto/proto.h"

static const char *cellpay;
static int checks;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            exit(1);                                                                               \
        }                                                                                          \
        checks++;                                                                                  \
    } while (0)

static void make_dir(char *dir, size_t n) {
    snprintf(dir, n, "/tmp/cellpay-admin-XXXXXX");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
}

static void remove_dir(const char *dir) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static int32_t status_of(const node_proc_t *np, proto_status_reply_t *s) {
    uint32_t size = 0;
    int32_t st = client_call_once(np->addr, PROTO_OP_STATUS, NULL, 0, s, sizeof *s, &size, 2000);
    if (st == PROTO_STATUS_OK) CHECK(size == sizeof *s, "status reply of %u bytes", size);
    return st;
}

static int32_t transfer_to(const node_proc_t *np, uint32_t target, uint8_t reserved) {
    proto_transfer_leader_t req = {.target = target};
    req.reserved[11] = reserved;
    return client_call_once(np->addr, PROTO_OP_TRANSFER_LEADER, &req, sizeof req, NULL, 0, NULL,
                            2000);
}

/* Runs a shell command line; returns its exit code and its stdout in out. */
static int run(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL, "popen %s", cmd);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void create_transfer(const char *addr, uint32_t id) {
    client_t *c;
    client_options_t o = {.deadline_ms = 10000};
    CHECK(client_open(&c, addr, &o) == 0, "client_open");
    ledger_account_t a[2] = {{.id = 1, .ledger = 1, .code = 1}, {.id = 2, .ledger = 1, .code = 1}};
    ledger_result_t r[2];
    CHECK(client_call(c, PROTO_OP_CREATE_ACCOUNTS, a, sizeof a, r, sizeof r, NULL, NULL) == 0,
          "create_accounts");
    ledger_transfer_t t = {.id = id,
                           .debit_account_id = 1,
                           .credit_account_id = 2,
                           .amount = 5,
                           .ledger = 1,
                           .code = 1};
    CHECK(client_call(c, PROTO_OP_CREATE_TRANSFERS, &t, sizeof t, r, sizeof r[0], NULL, NULL) == 0,
          "create_transfers");
    CHECK(r[0].result == LEDGER_TRANSFER_CREATED || r[0].result == LEDGER_TRANSFER_EXISTS,
          "transfer created");
    client_close(c);
}

/* A one-voter node answers status as the leader of a group of one; the hash moves with a
 * write and is the same after a restart that recovers the same log. */
static void one_voter(void) {
    char dir[64];
    make_dir(dir, sizeof dir);
    node_proc_t np;
    CHECK(np_start(&np, cellpay, dir, 0, NULL), "node start");
    proto_status_reply_t s0, s1, s2;
    /* Answered from the start, before it has elected itself. */
    CHECK(status_of(&np, &s0) == PROTO_STATUS_OK, "status of a one-voter node");
    for (uint64_t t0 = np_now_ms(); s0.role != PROTO_ROLE_LEADER && np_now_ms() - t0 < 5000;) {
        np_sleep_ms(10);
        CHECK(status_of(&np, &s0) == PROTO_STATUS_OK, "status of a one-voter node");
    }
    CHECK(s0.role == PROTO_ROLE_LEADER && s0.node_id == 1 && s0.leader_id == 1, "leads alone");
    CHECK(s0.member_count == 1 && s0.members[0] == 1, "voters {1}");
    CHECK(s0.commit_index == s0.applied_index && s0.durable_index >= s0.applied_index,
          "indexes in order");
    create_transfer(np.addr, 7);
    CHECK(status_of(&np, &s1) == PROTO_STATUS_OK, "status");
    CHECK(s1.applied_index > s0.applied_index, "applied moved with the writes");
    CHECK(s1.state_hash != s0.state_hash, "the writes changed the state hash");
    CHECK(s1.member_match[0] == s1.durable_index, "a leader's own match is its durable index");
    CHECK(transfer_to(&np, 0, 0) == PROTO_STATUS_INVALID, "no follower to transfer to");
    CHECK(transfer_to(&np, 1, 0) == PROTO_STATUS_INVALID, "transfer to itself");
    CHECK(transfer_to(&np, 2, 1) == PROTO_STATUS_INVALID, "reserved bytes set");
    /* Restart: the log replays to the same state. */
    CHECK(np_stop(&np, SIGTERM) == 0, "clean stop");
    CHECK(np_start(&np, cellpay, dir, 0, NULL), "node restart");
    uint64_t t0 = np_now_ms();
    for (;;) {
        CHECK(status_of(&np, &s2) == PROTO_STATUS_OK, "status after restart");
        if (s2.applied_index > s1.applied_index || np_now_ms() - t0 > 5000) break;
        np_sleep_ms(10);
    }
    /* The new term's no-op is applied on top; it changes no state. */
    CHECK(s2.applied_index > s1.applied_index, "the restarted node appended its no-op");
    CHECK(s2.state_hash == s1.state_hash, "the same state after recovery");
    char out[4096], cmd[512];
    snprintf(cmd, sizeof cmd, "%s admin cell status --addr %s", cellpay, np.addr);
    CHECK(run(cmd, out, sizeof out) == 0, "admin cell status exits 0");
    char want[64];
    snprintf(want, sizeof want, "hash=%016" PRIx64 "%016" PRIx64, (uint64_t)(s2.state_hash >> 64),
             (uint64_t)s2.state_hash);
    CHECK(strstr(out, "id=1 role=leader") && strstr(out, want), "status line: %s", out);
    np_stop(&np, SIGTERM);
    remove_dir(dir);
}

/* Three replicas: every one answers status; only the leader transfers. */
static void three_replicas(void) {
    char dirs[3][64], peers[256], addrs[256];
    node_proc_t np[3];
    int ports[3];
    size_t pl = 0, al = 0;
    for (int i = 0; i < 3; i++) {
        make_dir(dirs[i], sizeof dirs[i]);
        ports[i] = np_free_port();
        pl += (size_t)snprintf(peers + pl, sizeof peers - pl, "%s%d=127.0.0.1:%d", i ? "," : "",
                               i + 1, np_free_port());
    }
    for (int i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof id, "%d", i + 1);
        const char *extra[] = {"--cell", "4", "--id", id, "--peers", peers, NULL};
        CHECK(np_start(&np[i], cellpay, dirs[i], ports[i], extra), "replica %d start", i + 1);
        al += (size_t)snprintf(addrs + al, sizeof addrs - al, "%s%s", i ? "," : "", np[i].addr);
    }
    create_transfer(addrs, 1);
    /* Wait until every replica has applied the same index, then compare. */
    proto_status_reply_t s[3];
    int leader = -1;
    uint64_t t0 = np_now_ms();
    for (;;) {
        leader = -1;
        bool same = true;
        for (int i = 0; i < 3; i++) {
            CHECK(status_of(&np[i], &s[i]) == PROTO_STATUS_OK, "replica %d answers", i + 1);
            if (s[i].role == PROTO_ROLE_LEADER) leader = i;
            same = same && s[i].applied_index == s[0].applied_index;
        }
        for (int k = 0; same && leader >= 0 && k < 3; k++)
            same = s[leader].member_match[k] == s[leader].applied_index;
        if (same && leader >= 0) break;
        CHECK(np_now_ms() - t0 < 10000, "replicas did not converge");
        np_sleep_ms(10);
    }
    for (int i = 0; i < 3; i++) {
        CHECK(s[i].node_id == (uint32_t)i + 1 && s[i].cell == 4, "replica %d: ids", i + 1);
        CHECK(s[i].member_count == 3 && s[i].learners == 0 && s[i].members[0] == 1 &&
                  s[i].members[2] == 3,
              "voters");
        CHECK(s[i].leader_id == (uint32_t)leader + 1, "replica %d knows the leader", i + 1);
        CHECK(s[i].state_hash == s[0].state_hash, "replica %d: same state", i + 1);
        if (i != leader) {
            CHECK(s[i].role == PROTO_ROLE_FOLLOWER && s[i].member_match[0] == 0, "a follower");
            CHECK(transfer_to(&np[i], 0, 0) == PROTO_STATUS_NOT_LEADER, "followers refuse");
        } else {
            for (int k = 0; k < 3; k++)
                CHECK(s[i].member_match[k] == s[i].applied_index, "the leader's match of %d",
                      k + 1);
        }
    }
    CHECK(transfer_to(&np[leader], 9, 0) == PROTO_STATUS_INVALID, "an unknown target");
    CHECK(transfer_to(&np[leader], (uint32_t)leader + 1, 0) == PROTO_STATUS_INVALID, "itself");

    /* Through the command: to a given replica, then to whichever is most up to date. */
    char out[4096], cmd[768];
    int target = (leader + 1) % 3;
    snprintf(cmd, sizeof cmd, "%s admin cell transfer-leader --addr %s --to %d", cellpay, addrs,
             target + 1);
    CHECK(run(cmd, out, sizeof out) == 0, "transfer-leader --to exits 0: %s", out);
    char want[64];
    snprintf(want, sizeof want, "leader: replica %d (%s)", target + 1, np[target].addr);
    CHECK(strstr(out, want) != NULL, "transfer-leader prints the new leader: %s", out);
    proto_status_reply_t now;
    CHECK(status_of(&np[target], &now) == PROTO_STATUS_OK && now.role == PROTO_ROLE_LEADER &&
              now.term > s[leader].term,
          "replica %d leads in a newer term", target + 1);
    snprintf(cmd, sizeof cmd, "%s admin cell transfer-leader --addr %s", cellpay, addrs);
    CHECK(run(cmd, out, sizeof out) == 0, "transfer-leader exits 0: %s", out);
    CHECK(strstr(out, "leader: replica") && strstr(out, "was replica"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s admin cell transfer-leader --addr %s --to 9 2>&1", cellpay,
             addrs);
    CHECK(run(cmd, out, sizeof out) == 1, "an unknown --to exits 1");
    CHECK(strstr(out, "no voter of that id") != NULL, "and says why: %s", out);

    /* A target that cannot catch up within an election timeout: the leader gives the
     * transfer up and goes on; the command asks again while the old leader leads in the
     * same term, and the transfer succeeds once the target runs again. */
    int lead = -1;
    for (int i = 0; i < 3 && lead < 0; i++)
        if (status_of(&np[i], &now) == PROTO_STATUS_OK && now.role == PROTO_ROLE_LEADER) lead = i;
    CHECK(lead >= 0, "a leader");
    int slow = (lead + 1) % 3;
    kill(np[slow].pid, SIGSTOP);
    create_transfer(np[lead].addr, 2); /* the stopped replica lacks it: no TimeoutNow yet */
    snprintf(cmd, sizeof cmd,
             "%s admin cell transfer-leader --addr %s --to %d --timeout-ms 10000 2>&1", cellpay,
             addrs, slow + 1);
    FILE *pipe = popen(cmd, "r");
    CHECK(pipe != NULL, "popen");
    np_sleep_ms(2500); /* the command's first request is given up while the target sleeps */
    kill(np[slow].pid, SIGCONT);
    size_t got = fread(out, 1, sizeof out - 1, pipe);
    out[got] = '\0';
    int st = pclose(pipe);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "transfer to a slow target: %s", out);
    snprintf(want, sizeof want, "leader: replica %d (", slow + 1);
    CHECK(strstr(out, want) && !strstr(out, "(1 request)"), "asked again: %s", out);
    printf("transfer to a stopped target: %s", out);

    /* Status of all three, then with one address where nothing answers. */
    snprintf(cmd, sizeof cmd, "%s admin cell status --addr %s", cellpay, addrs);
    CHECK(run(cmd, out, sizeof out) == 0, "status exits 0");
    int lines = 0, leaders = 0;
    for (char *p = out; (p = strchr(p, '\n')); p++) lines++;
    for (char *p = out; (p = strstr(p, "role=leader")); p++) leaders++;
    CHECK(lines == 3 && leaders == 1, "three lines, one leader: %s", out);
    snprintf(cmd, sizeof cmd, "%s admin cell status --addr %s,127.0.0.1:%d --timeout-ms 500",
             cellpay, addrs, np_free_port());
    CHECK(run(cmd, out, sizeof out) == 1, "a replica that does not answer: exit 1");
    CHECK(strstr(out, " error: ") != NULL, "its line says so: %s", out);
    for (int i = 0; i < 3; i++) {
        np_stop(&np[i], SIGTERM);
        remove_dir(dirs[i]);
    }
}

static void usage_errors(void) {
    char out[8192], cmd[512];
    snprintf(cmd, sizeof cmd, "%s admin --help", cellpay);
    CHECK(run(cmd, out, sizeof out) == 0 && strstr(out, "cell transfer-leader"), "admin --help");
    CHECK(strstr(out, "cell add-replica") && strstr(out, "cell remove-replica"), "membership");
    snprintf(cmd, sizeof cmd, "%s help", cellpay);
    CHECK(run(cmd, out, sizeof out) == 0 && strstr(out, "  admin "), "admin in the command list");
    snprintf(cmd, sizeof cmd, "%s admin cell add-replica --addr 127.0.0.1:1 --id 4 2>/dev/null",
             cellpay);
    CHECK(run(cmd, out, sizeof out) == 2, "add-replica without --peer-addr");
    snprintf(cmd, sizeof cmd, "%s admin cell remove-replica --addr 127.0.0.1:1 2>/dev/null",
             cellpay);
    CHECK(run(cmd, out, sizeof out) == 2, "remove-replica without --id");
    snprintf(cmd, sizeof cmd, "%s admin cell status 2>/dev/null", cellpay);
    CHECK(run(cmd, out, sizeof out) == 2, "status without --addr");
    snprintf(cmd, sizeof cmd, "%s admin cell status --addr 127.0.0.1:1 --to 2 2>/dev/null",
             cellpay);
    CHECK(run(cmd, out, sizeof out) == 2, "--to is transfer-leader's");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: proc_admin CELLPAY_BINARY\n");
        return 2;
    }
    cellpay = argv[1];
    alarm(120); /* a hang ends the test; the nodes die with it (PR_SET_PDEATHSIG) */
    usage_errors();
    one_voter();
    three_replicas();
    printf("admin ops: %d checks passed\n", checks);
    return 0;
}

/* Membership changes on real processes: a cell of replicas 1-3 under load (snapshots every
 * MiB, so the log a new replica would need is long gone); replica 4 starts with --join and is
 * added with `cellpay admin cell add-replica`: it receives the leader's snapshot as a learner,
 * catches up and is promoted to voter. Then the leader removes itself with remove-replica and
 * hands over. Then one more of the old replicas is killed: the cell goes on with the remaining
 * old replica and replica 4 as its quorum, every acknowledged transfer is there, balances equal
 * the transfers that exist, and the two replicas' state hashes agree.
 *
 * usage: proc_members CELLPAY_BINARY   (CELLPAY_SEED=N replays) */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/prng.h"
#include "client/client.h"
#include "ledger/ledger.h"
#include "node_proc.h"

#define REPLICAS 4 /* ids 1-3 start the group, 4 joins */
#define ACCOUNTS 16u
#define TRANSFERS_MAX 400000u

static const char *cellpay;
static uint64_t seed;
static char dirs[REPLICAS][64], logs[REPLICAS][80], peers3[256], peers4[256], addrs[256];
static int peer_ports[REPLICAS];
static int client_ports[REPLICAS];
static node_proc_t np[REPLICAS];

static uint8_t acked_flag[TRANSFERS_MAX + 1];
static uint64_t acked_ts[TRANSFERS_MAX + 1];
static ledger_transfer_t sent[TRANSFERS_MAX + 1];
static atomic_uint next_id = 1;
static atomic_bool stop_load;
static atomic_ulong acked;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "FAIL (seed=%llu): ", (unsigned long long)seed);                           \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        exit(1);                                                                                   \
    } while (0)

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) FAIL("bind");
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* Starts replica i with its stderr appended to logs[i] (read back to see what it did). */
static void start(int i, bool join) {
    char id[16];
    snprintf(id, sizeof id, "%d", i + 1);
    /* A joining replica's --peers names the members and itself. */
    const char *extra[] = {"--cell",
                           "1",
                           "--id",
                           id,
                           "--peers",
                           join ? peers4 : peers3,
                           "--snapshot-mib",
                           "1",
                           "--accounts-max",
                           "64",
                           "--transfers-max",
                           "500000",
                           join ? "--join" : NULL,
                           NULL};
    int saved = dup(2);
    FILE *f = fopen(logs[i], "a");
    if (!f) FAIL("cannot open %s", logs[i]);
    dup2(fileno(f), 2);
    bool ok = np_start(&np[i], cellpay, dirs[i], client_ports[i], extra);
    dup2(saved, 2);
    close(saved);
    fclose(f);
    if (!ok) FAIL("replica %d did not start", i + 1);
}

static bool log_says(int i, const char *what) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "grep -q '%s' %s", what, logs[i]);
    return system(cmd) == 0;
}

static void *load(void *p) {
    client_t *c = p;
    prng_t rng = {seed ^ (uint64_t)pthread_self()};
    ledger_transfer_t b[64];
    ledger_result_t r[64];
    while (!atomic_load(&stop_load)) {
        uint32_t n = 1 + (uint32_t)prng_below(&rng, 64);
        uint32_t first = atomic_fetch_add(&next_id, n);
        if (first + n > TRANSFERS_MAX) break;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t dr = 1 + (uint32_t)prng_below(&rng, ACCOUNTS), cr = dr % ACCOUNTS + 1;
            b[i] = (ledger_transfer_t){.id = first + i,
                                       .debit_account_id = dr,
                                       .credit_account_id = cr,
                                       .amount = 1 + prng_below(&rng, 100),
                                       .ledger = 1,
                                       .code = 1};
            sent[first + i] = b[i];
        }
        uint32_t size = 0;
        if (client_call(c, PROTO_OP_CREATE_TRANSFERS, b, n * 128, r, sizeof r, &size, NULL) != 0)
            continue;
        for (uint32_t i = 0; i < n; i++) {
            if (r[i].result != LEDGER_TRANSFER_CREATED) continue;
            acked_flag[b[i].id] = 1;
            acked_ts[b[i].id] = r[i].timestamp;
        }
        atomic_fetch_add(&acked, n);
    }
    return NULL;
}

/* Runs the load until `count` more transfers are acknowledged (or 60 s pass). */
static void load_for(client_t *c, unsigned long count) {
    atomic_store(&stop_load, false);
    pthread_t th[2];
    unsigned long before = atomic_load(&acked);
    for (int t = 0; t < 2; t++) pthread_create(&th[t], NULL, load, c);
    uint64_t t0 = np_now_ms();
    while (atomic_load(&acked) - before < count && np_now_ms() - t0 < 60000) np_sleep_ms(20);
    atomic_store(&stop_load, true);
    for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
    if (atomic_load(&acked) - before < count) FAIL("load stalled");
}

static void verify(client_t *c) {
    static ledger_transfer_t found[8189];
    u128 ids[8189], debits[ACCOUNTS + 1] = {0}, credits[ACCOUNTS + 1] = {0};
    uint32_t last = atomic_load(&next_id), checked = 0;
    for (uint32_t from = 1; from < last && from <= TRANSFERS_MAX; from += 8189) {
        uint32_t n = 0, size = 0, k = 0;
        for (uint32_t id = from; id < from + 8189 && id < last && id <= TRANSFERS_MAX; id++)
            ids[n++] = id;
        if (client_call(c, PROTO_OP_LOOKUP_TRANSFERS, ids, n * 16, found, sizeof found, &size,
                        NULL) != 0)
            FAIL("lookup_transfers");
        for (uint32_t i = 0; i < n; i++) {
            uint32_t id = (uint32_t)ids[i];
            bool present = k < size / 128 && found[k].id == id;
            if (acked_flag[id] && (!present || found[k].timestamp != acked_ts[id]))
                FAIL("acknowledged transfer %u %s", id, present ? "changed" : "lost");
            if (present) {
                if (found[k].amount != sent[id].amount) FAIL("transfer %u altered", id);
                debits[(uint32_t)found[k].debit_account_id] += found[k].amount;
                credits[(uint32_t)found[k].credit_account_id] += found[k].amount;
                k++;
                checked++;
            }
        }
    }
    ledger_account_t acc[ACCOUNTS];
    for (uint32_t i = 0; i < ACCOUNTS; i++) ids[i] = i + 1;
    uint32_t size = 0;
    if (client_call(c, PROTO_OP_LOOKUP_ACCOUNTS, ids, ACCOUNTS * 16, acc, sizeof acc, &size,
                    NULL) != 0 ||
        size != sizeof acc)
        FAIL("lookup_accounts");
    for (uint32_t i = 0; i < ACCOUNTS; i++) {
        uint32_t id = (uint32_t)acc[i].id;
        if (acc[i].debits_posted != debits[id] || acc[i].credits_posted != credits[id])
            FAIL("account %u: balances differ from its transfers", id);
    }
    printf("verified %u transfers and %u accounts\n", checked, ACCOUNTS);
}

static int32_t status_of(int i, proto_status_reply_t *s) {
    uint32_t size = 0;
    int32_t st = client_call_once(np[i].addr, PROTO_OP_STATUS, NULL, 0, s, sizeof *s, &size, 1000);
    return st == 0 && size != sizeof *s ? -1 : st;
}

/* The replica that leads in the highest term, by its own status; -1 when none within 10 s. */
static int find_leader(void) {
    for (int round = 0; round < 100; round++) {
        int best = -1;
        uint64_t term = 0;
        for (int i = 0; i < REPLICAS; i++) {
            proto_status_reply_t s;
            if (np[i].pid > 0 && status_of(i, &s) == 0 && s.role == PROTO_ROLE_LEADER &&
                s.term > term)
                best = i, term = s.term;
        }
        if (best >= 0) return best;
        np_sleep_ms(100);
    }
    return -1;
}

/* Runs `cellpay admin` with args; returns its exit status, its output in out. */
static int admin(const char *args, char *out, size_t cap) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s admin cell %s --addr %s 2>&1", cellpay, args, addrs);
    FILE *p = popen(cmd, "r");
    if (!p) FAIL("popen");
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    printf("$ cellpay admin cell %s\n%s", args, out);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool voter_in(const proto_status_reply_t *s, uint32_t id) {
    for (uint32_t k = 0; k < s->member_count; k++)
        if (s->members[k] == id) return !((s->learners >> k) & 1);
    return false;
}

/* Stops the load; waits until the replicas up have applied the same index; compares hashes. */
static void same_state(void) {
    for (int round = 0; round < 200; round++) {
        proto_status_reply_t s[REPLICAS];
        bool same = true;
        int first = -1;
        for (int i = 0; i < REPLICAS; i++) {
            if (np[i].pid <= 0) continue;
            if (status_of(i, &s[i]) != 0) FAIL("status of replica %d", i + 1);
            if (first < 0) first = i;
            same = same && s[i].applied_index == s[first].applied_index &&
                   s[i].commit_index == s[first].commit_index;
        }
        if (same) {
            for (int i = 0; i < REPLICAS; i++)
                if (np[i].pid > 0 && s[i].state_hash != s[first].state_hash)
                    FAIL("replicas %d and %d differ at index %llu", first + 1, i + 1,
                         (unsigned long long)s[i].applied_index);
            printf("replicas up agree at index %llu\n", (unsigned long long)s[first].applied_index);
            return;
        }
        np_sleep_ms(50);
    }
    FAIL("the replicas up did not reach the same applied index");
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    cellpay = argv[1];
    seed =
        getenv("CELLPAY_SEED") ? strtoull(getenv("CELLPAY_SEED"), NULL, 10) : (uint64_t)time(NULL);
    printf("seed=%llu\n", (unsigned long long)seed);
    size_t p3 = 0, p4 = 0, al = 0;
    for (int i = 0; i < REPLICAS; i++) {
        snprintf(dirs[i], sizeof dirs[i], "/tmp/cellpay-members-XXXXXX");
        if (!mkdtemp(dirs[i])) FAIL("mkdtemp");
        snprintf(logs[i], sizeof logs[i], "%s.log", dirs[i]);
        client_ports[i] = free_port();
        peer_ports[i] = free_port();
        if (i < 3)
            p3 += (size_t)snprintf(peers3 + p3, sizeof peers3 - p3, "%s%d=127.0.0.1:%d",
                                   i ? "," : "", i + 1, peer_ports[i]);
        p4 += (size_t)snprintf(peers4 + p4, sizeof peers4 - p4, "%s%d=127.0.0.1:%d", i ? "," : "",
                               i + 1, peer_ports[i]);
        al += (size_t)snprintf(addrs + al, sizeof addrs - al, "%s127.0.0.1:%d", i ? "," : "",
                               client_ports[i]);
    }
    for (int i = 0; i < 3; i++) start(i, false);
    client_t *c;
    client_options_t o = {.sessions = 2, .deadline_ms = 20000, .attempt_timeout_ms = 300};
    if (client_open(&c, addrs, &o) != 0) FAIL("client_open");
    ledger_account_t a[ACCOUNTS] = {0};
    ledger_result_t r[ACCOUNTS];
    for (uint32_t i = 0; i < ACCOUNTS; i++)
        a[i] = (ledger_account_t){.id = i + 1, .ledger = 1, .code = 1};
    if (client_call(c, PROTO_OP_CREATE_ACCOUNTS, a, sizeof a, r, sizeof r, NULL, NULL) != 0)
        FAIL("create accounts");
    load_for(c, 40000);

    start(3, true);
    proto_status_reply_t s;
    if (status_of(3, &s) != 0 || s.member_count != 0) FAIL("a joining replica knows no members");
    char out[4096], args[256];
    snprintf(args, sizeof args, "add-replica --id 4 --peer-addr 127.0.0.1:%d", peer_ports[3]);
    if (admin(args, out, sizeof out) != 0) FAIL("add-replica failed");
    load_for(c, 5000);
    if (status_of(3, &s) != 0 || !voter_in(&s, 4) || s.applied_index == 0)
        FAIL("replica 4 is not a voter with the cell's state");
    if (!log_says(3, "installed snapshot")) FAIL("replica 4 did not catch up by snapshot");
    snprintf(args, sizeof args, "add-replica --id 4 --peer-addr 127.0.0.1:%d", peer_ports[3]);
    if (admin(args, out, sizeof out) != 0) FAIL("adding a voter again is not a no-op");

    int l = find_leader();
    if (l < 0) FAIL("no leader");
    snprintf(args, sizeof args, "remove-replica --id %d", l + 1);
    if (admin(args, out, sizeof out) != 0) FAIL("remove-replica of the leader failed");
    if (!log_says(l, "removing replica")) FAIL("the leader did not log the removal");
    np_stop(&np[l], SIGTERM);
    load_for(c, 5000);
    if (admin(args, out, sizeof out) != 0 || !strstr(out, "is out of the group"))
        FAIL("removing a replica that is out already is not a no-op");

    /* One more old replica goes: the other and replica 4 are the quorum of three. */
    int old = l == 0 ? 1 : 0;
    np_stop(&np[old], SIGKILL);
    load_for(c, 5000);
    verify(c);
    client_close(c);
    same_state();
    char cmd[300];
    for (int i = 0; i < REPLICAS; i++) {
        if (np[i].pid > 0) {
            int st = np_stop(&np[i], SIGTERM);
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                FAIL("replica %d did not stop cleanly", i + 1);
        }
        snprintf(cmd, sizeof cmd, "rm -rf %s %s", dirs[i], logs[i]);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dirs[i]);
    }
    printf("membership changes: passed\n");
    return 0;
}

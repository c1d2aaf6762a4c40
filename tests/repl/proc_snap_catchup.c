/* Replicas that fall behind the leader's log catch up from its snapshot, as real processes:
 * three replicas snapshotting every MiB of log; one follower is killed while the others
 * write several MiB (so the leader's log no longer holds what it needs), comes back and
 * receives the leader's snapshot in chunks; then the same happens to the other follower.
 * Both install the snapshot and follow the log again; then the old leader is killed, so the
 * two rebuilt replicas alone form the quorum, and every acknowledged transfer must be there,
 * with balances equal to the transfers that exist. (A replica that lost its data must come
 * back under a new id, through remove-replica and add-replica: Raft counts on what a replica
 * acknowledged staying on its disk.)
 *
 * usage: proc_snap_catchup CELLPAY_BINARY   (CELLPAY_SEED=N replays) */
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

#define REPLICAS 3
#define ACCOUNTS 16u
#define TRANSFERS_MAX 400000u

static const char *cellpay;
static uint64_t seed;
static char dirs[REPLICAS][64], logs[REPLICAS][80], peers[256], addrs[256];
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
static void start(int i) {
    char id[16];
    snprintf(id, sizeof id, "%d", i + 1);
    const char *extra[] = {"--cell",
                           "1",
                           "--id",
                           id,
                           "--peers",
                           peers,
                           "--snapshot-mib",
                           "1",
                           "--accounts-max",
                           "64",
                           "--transfers-max",
                           "500000",
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

static int find_leader(void) {
    for (int round = 0; round < 100; round++) {
        for (int i = 0; i < REPLICAS; i++) {
            if (np[i].pid <= 0) continue;
            client_t *c;
            client_options_t o = {.deadline_ms = 150, .attempt_timeout_ms = 100};
            if (client_open(&c, np[i].addr, &o) != 0) continue;
            int32_t st = client_call(c, PROTO_OP_PING, NULL, 0, NULL, 0, NULL, NULL);
            client_close(c);
            if (st == 0) return i;
        }
        np_sleep_ms(100);
    }
    return -1;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    cellpay = argv[1];
    seed =
        getenv("CELLPAY_SEED") ? strtoull(getenv("CELLPAY_SEED"), NULL, 10) : (uint64_t)time(NULL);
    printf("seed=%llu\n", (unsigned long long)seed);
    size_t pl = 0, al = 0;
    for (int i = 0; i < REPLICAS; i++) {
        snprintf(dirs[i], sizeof dirs[i], "/tmp/cellpay-snapcu-XXXXXX");
        if (!mkdtemp(dirs[i])) FAIL("mkdtemp");
        snprintf(logs[i], sizeof logs[i], "%s.log", dirs[i]);
        client_ports[i] = free_port();
        pl += (size_t)snprintf(peers + pl, sizeof peers - pl, "%s%d=127.0.0.1:%d", i ? "," : "",
                               i + 1, free_port());
        al += (size_t)snprintf(addrs + al, sizeof addrs - al, "%s127.0.0.1:%d", i ? "," : "",
                               client_ports[i]);
    }
    for (int i = 0; i < REPLICAS; i++) start(i);
    client_t *c;
    client_options_t o = {.sessions = 2, .deadline_ms = 20000, .attempt_timeout_ms = 300};
    if (client_open(&c, addrs, &o) != 0) FAIL("client_open");
    ledger_account_t a[ACCOUNTS] = {0};
    ledger_result_t r[ACCOUNTS];
    for (uint32_t i = 0; i < ACCOUNTS; i++)
        a[i] = (ledger_account_t){.id = i + 1, .ledger = 1, .code = 1};
    if (client_call(c, PROTO_OP_CREATE_ACCOUNTS, a, sizeof a, r, sizeof r, NULL, NULL) != 0)
        FAIL("create accounts");
    load_for(c, 5000);
    int l = find_leader();
    if (l < 0) FAIL("no leader");
    int f1 = (l + 1) % REPLICAS, f2 = (l + 2) % REPLICAS;
    /* f1 stops; 40,000 transfers (over 5 MiB of log) go by: the leader snapshots and drops the
     * log f1 would need. */
    np_stop(&np[f1], SIGKILL);
    load_for(c, 40000);
    start(f1);
    load_for(c, 5000);
    np_stop(&np[f2], SIGKILL);
    load_for(c, 40000);
    start(f2);
    load_for(c, 5000);
    char cmd[300];
    for (int k = 0;
         k < 200 && !(log_says(f1, "installed snapshot") && log_says(f2, "installed snapshot"));
         k++)
        np_sleep_ms(50);
    if (!log_says(f1, "installed snapshot")) FAIL("replica %d did not install a snapshot", f1 + 1);
    if (!log_says(f2, "installed snapshot")) FAIL("replica %d did not install a snapshot", f2 + 1);
    printf("replicas %d and %d caught up by snapshot\n", f1 + 1, f2 + 1);
    load_for(c, 2000); /* they follow the log again */
    /* The old leader goes: the two rebuilt replicas alone hold the cell. */
    np_stop(&np[l], SIGKILL);
    load_for(c, 2000);
    verify(c);
    client_close(c);
    for (int i = 0; i < REPLICAS; i++) {
        if (np[i].pid > 0) {
            int st = np_stop(&np[i], SIGTERM);
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                FAIL("replica %d did not stop cleanly", i + 1);
        }
        snprintf(cmd, sizeof cmd, "rm -rf %s %s", dirs[i], logs[i]);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dirs[i]);
    }
    printf("snapshot catch-up: passed\n");
    return 0;
}

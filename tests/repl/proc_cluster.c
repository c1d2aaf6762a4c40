/* A cell of three replicas as real processes on loopback: load through the client library
 * (which finds the leader by itself), SIGKILL the leader again and again, restart it, and
 * check after every failover that every acknowledged transfer is on the new leader with its
 * original timestamp and that balances add up to exactly the transfers that exist.
 *
 * usage: proc_cluster CELLPAY_BINARY   (CELLPAY_SEED=N replays, CELLPAY_KILLS=N kills) */
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
#define TRANSFERS_MAX 200000u

static const char *cellpay;
static uint64_t seed;
static char dirs[REPLICAS][64], peers[256], addrs[256];
static int client_ports[REPLICAS];
static node_proc_t np[REPLICAS];

typedef struct tinfo {
    uint8_t acked;
    uint32_t result;
    uint64_t timestamp;
} tinfo_t;
static tinfo_t info[TRANSFERS_MAX + 1];
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

static void start(int i) {
    char id[16];
    snprintf(id, sizeof id, "%d", i + 1);
    const char *extra[] = {"--cell", "1", "--id", id, "--peers", peers, NULL};
    if (!np_start(&np[i], cellpay, dirs[i], client_ports[i], extra))
        FAIL("replica %d did not start", i + 1);
}

/* The replica that answers a ping is the leader; -1 when none does within the wait. */
static int find_leader(void) {
    for (int round = 0; round < 50; round++) {
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

static void *load(void *p) {
    client_t *c = p;
    prng_t rng = {seed ^ (uint64_t)pthread_self()};
    ledger_transfer_t b[16];
    ledger_result_t r[16];
    while (!atomic_load(&stop_load)) {
        uint32_t n = 1 + (uint32_t)prng_below(&rng, 16);
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
        for (uint32_t i = 0; i < n; i++) info[b[i].id] = (tinfo_t){1, r[i].result, r[i].timestamp};
        atomic_fetch_add(&acked, n);
    }
    return NULL;
}

/* On the current leader: every acknowledged transfer is there with its timestamp, and the
 * balances are exactly the sum of the transfers that exist. */
static void verify(client_t *c) {
    static ledger_transfer_t found[8189];
    u128 ids[8189], debits[ACCOUNTS + 1] = {0}, credits[ACCOUNTS + 1] = {0};
    uint32_t last = atomic_load(&next_id);
    for (uint32_t from = 1; from < last && from <= TRANSFERS_MAX; from += 8189) {
        uint32_t n = 0, size = 0, k = 0;
        for (uint32_t id = from; id < from + 8189 && id < last; id++) ids[n++] = id;
        if (client_call(c, PROTO_OP_LOOKUP_TRANSFERS, ids, n * 16, found, sizeof found, &size,
                        NULL) != 0)
            FAIL("lookup_transfers after failover");
        for (uint32_t i = 0; i < n; i++) {
            uint32_t id = (uint32_t)ids[i];
            bool present = k < size / 128 && found[k].id == id;
            if (info[id].acked && info[id].result == LEDGER_TRANSFER_CREATED &&
                (!present || found[k].timestamp != info[id].timestamp))
                FAIL("acknowledged transfer %u %s after failover", id,
                     present ? "changed" : "lost");
            if (present) {
                if (found[k].amount != sent[id].amount) FAIL("transfer %u altered", id);
                debits[(uint32_t)found[k].debit_account_id] += found[k].amount;
                credits[(uint32_t)found[k].credit_account_id] += found[k].amount;
                k++;
            }
        }
    }
    ledger_account_t acc[ACCOUNTS];
    for (uint32_t i = 0; i < ACCOUNTS; i++) ids[i] = i + 1;
    uint32_t size = 0;
    if (client_call(c, PROTO_OP_LOOKUP_ACCOUNTS, ids, ACCOUNTS * 16, acc, sizeof acc, &size,
                    NULL) != 0 ||
        size != sizeof acc)
        FAIL("lookup_accounts after failover");
    for (uint32_t i = 0; i < ACCOUNTS; i++) {
        uint32_t id = (uint32_t)acc[i].id;
        if (acc[i].debits_posted != debits[id] || acc[i].credits_posted != credits[id])
            FAIL("account %u: balances differ from its transfers (applied twice or lost)", id);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    cellpay = argv[1];
    seed =
        getenv("CELLPAY_SEED") ? strtoull(getenv("CELLPAY_SEED"), NULL, 10) : (uint64_t)time(NULL);
    int kills = getenv("CELLPAY_KILLS") ? atoi(getenv("CELLPAY_KILLS")) : 10;
    printf("seed=%llu kills=%d\n", (unsigned long long)seed, kills);
    size_t pl = 0, al = 0;
    for (int i = 0; i < REPLICAS; i++) {
        snprintf(dirs[i], sizeof dirs[i], "/tmp/cellpay-cluster-XXXXXX");
        if (!mkdtemp(dirs[i])) FAIL("mkdtemp");
        client_ports[i] = np_free_port();
        pl += (size_t)snprintf(peers + pl, sizeof peers - pl, "%s%d=127.0.0.1:%d", i ? "," : "",
                               i + 1, np_free_port());
        al += (size_t)snprintf(addrs + al, sizeof addrs - al, "%s127.0.0.1:%d", i ? "," : "",
                               client_ports[i]);
    }
    for (int i = 0; i < REPLICAS; i++) start(i);
    client_t *c;
    client_options_t o = {.sessions = 2, .deadline_ms = 15000, .attempt_timeout_ms = 300};
    if (client_open(&c, addrs, &o) != 0) FAIL("client_open");
    ledger_account_t a[ACCOUNTS] = {0};
    ledger_result_t r[ACCOUNTS];
    for (uint32_t i = 0; i < ACCOUNTS; i++)
        a[i] = (ledger_account_t){.id = i + 1, .ledger = 1, .code = 1};
    if (client_call(c, PROTO_OP_CREATE_ACCOUNTS, a, sizeof a, r, sizeof r, NULL, NULL) != 0)
        FAIL("create accounts");
    prng_t rng = {seed};
    uint64_t failover_ms_max = 0;
    for (int k = 0; k < kills; k++) {
        atomic_store(&stop_load, false);
        pthread_t th[2];
        for (int t = 0; t < 2; t++) pthread_create(&th[t], NULL, load, c);
        np_sleep_ms(200 + prng_below(&rng, 400));
        int leader = find_leader();
        if (leader < 0) FAIL("no leader before kill %d", k + 1);
        unsigned long before = atomic_load(&acked);
        uint64_t t0 = np_now_ms();
        np_stop(&np[leader], SIGKILL);
        /* The load goes on against the others: wait until more is acknowledged. */
        while (atomic_load(&acked) == before && np_now_ms() - t0 < 20000) np_sleep_ms(5);
        if (atomic_load(&acked) == before) FAIL("no progress within 20 s after killing the leader");
        uint64_t failover = np_now_ms() - t0;
        if (failover > failover_ms_max) failover_ms_max = failover;
        atomic_store(&stop_load, true);
        for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
        verify(c);
        start(leader);
        printf(
            "kill %d: leader %d killed, load resumed after %llu ms, %lu transfers acknowledged\n",
            k + 1, leader + 1, (unsigned long long)failover, atomic_load(&acked));
    }
    verify(c);
    client_close(c);
    for (int i = 0; i < REPLICAS; i++) {
        int st = np_stop(&np[i], SIGTERM);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) FAIL("replica %d did not stop cleanly", i + 1);
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dirs[i]);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dirs[i]);
    }
    printf("longest pause in acknowledgements after a leader kill: %llu ms\n",
           (unsigned long long)failover_ms_max);
    printf("cluster failover: %d passed, 0 failed\n", kills);
    return 0;
}

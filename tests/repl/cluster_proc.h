/* A cell of replicas (three, or cl_init_n's count) as real processes for fault tests: start /
 * kill / restart them,
 * optionally with every peer link through a link_proxy.h proxy, keep a transfer load running
 * through the client library (which finds the leader and fails over by itself), and check
 * after a fault:
 *   - every acknowledged transfer is there with its original timestamp and amount, and every
 *     account's balances are exactly the sum of the transfers that exist (nothing lost,
 *     nothing applied twice) — read through the leader;
 *   - once the load stops, every replica reaches the same applied index (PROTO_OP_STATUS)
 *     and reports the same state hash there, which extends the first check to every replica.
 * A failing check prints the seed and exits non-zero; the replicas die with the test
 * (PR_SET_PDEATHSIG in np_start) and a watchdog ends a test that hangs. */
#ifndef CP_TEST_CLUSTER_PROC_H
#define CP_TEST_CLUSTER_PROC_H

#define _GNU_SOURCE /* accept4 (link_proxy.h): include this header first */

#include <arpa/inet.h>
#include <inttypes.h>
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
#include "link_proxy.h"
#include "node_proc.h"

#define CL_REPLICAS 3     /* the usual group */
#define CL_REPLICAS_MAX 4 /* with a replica that joins later */
#define CL_ACCOUNTS 16u
#define CL_TRANSFERS_MAX 1000000u
#define CL_LOAD_THREADS 3
#define CL_BATCH_MAX 16u

typedef struct cl_replica {
    node_proc_t np;
    char dir[64];
    int client_port, peer_port;
    char peers[512]; /* this replica's --peers */
    char log[80];    /* its stderr, when cl.logs */
} cl_replica_t;

/* What was sent as transfer `id` and what its acknowledgement said (16 bytes a transfer). */
typedef struct cl_tinfo {
    uint64_t timestamp; /* acknowledged: the timestamp it was given */
    uint16_t amount;
    uint8_t debit, credit; /* account ids */
    uint8_t acked;
    uint8_t result;
    uint8_t reserved[2];
} cl_tinfo_t;

static struct cluster {
    const char *cellpay;
    uint64_t seed;
    prng_t rng; /* the test's own choices (which replica, how long) */
    int n;      /* replicas */
    int group;  /* the first `group` start as the group; the others start with --join */
    const char *const *extra; /* more arguments for every replica (NULL-ended), or NULL */
    bool logs;                /* each replica's stderr goes to r[i].log (cl_log_says) */
    cl_replica_t r[CL_REPLICAS_MAX];
    char addrs[256];
    bool proxied;
    lp_net_t net;
    int link[CL_REPLICAS_MAX][CL_REPLICAS_MAX]; /* proxy of the link i -> j */
    client_t *client;
    /* Load. */
    pthread_t threads[CL_LOAD_THREADS];
    atomic_bool load_stop;
    atomic_uint next_id;
    atomic_ulong acked, acked_exists, call_errors;
    cl_tinfo_t info[CL_TRANSFERS_MAX + 1];
    u128 hash_empty; /* the state hash before any transfer */
} cl;

#define CL_FAIL(...)                                                                               \
    do {                                                                                           \
        fprintf(stderr, "FAIL (seed=%" PRIu64 ") %s:%d: ", cl.seed, __FILE__, __LINE__);           \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        exit(1);                                                                                   \
    } while (0)

static void cl_watchdog(int sig) {
    (void)sig;
    static const char msg[] = "FAIL: the test ran past its watchdog; replicas are killed\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(3); /* the replicas get SIGKILL from PR_SET_PDEATHSIG */
}

/* Sets up directories and ports for n replicas, the first `group` of them the group (the
 * others join later: their --peers also names the group); with `proxied`, every peer link
 * i -> j goes through its own proxy, so each replica gets its own --peers. The seed comes
 * from CELLPAY_SEED or the clock and is printed. watchdog_s: the test's time limit. */
static inline void cl_init_n(const char *cellpay, bool proxied, unsigned watchdog_s, int n,
                             int group) {
    if (n < 1 || n > CL_REPLICAS_MAX || group < 1 || group > n) CL_FAIL("cl_init_n(%d)", n);
    cl.n = n;
    cl.group = group;
    cl.cellpay = cellpay;
    cl.seed = getenv("CELLPAY_SEED") ? strtoull(getenv("CELLPAY_SEED"), NULL, 10)
                                     : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    cl.rng.state = cl.seed;
    cl.proxied = proxied;
    atomic_store(&cl.next_id, 1);
    printf("seed=%" PRIu64 "\n", cl.seed);
    fflush(stdout);
    signal(SIGALRM, cl_watchdog);
    alarm(watchdog_s);
    size_t al = 0;
    for (int i = 0; i < cl.n; i++) {
        snprintf(cl.r[i].dir, sizeof cl.r[i].dir, "/tmp/cellpay-faults-XXXXXX");
        if (!mkdtemp(cl.r[i].dir)) CL_FAIL("mkdtemp");
        snprintf(cl.r[i].log, sizeof cl.r[i].log, "%s.log", cl.r[i].dir);
        cl.r[i].client_port = np_free_port();
        cl.r[i].peer_port = np_free_port();
        al += (size_t)snprintf(cl.addrs + al, sizeof cl.addrs - al, "%s127.0.0.1:%d", i ? "," : "",
                               cl.r[i].client_port);
    }
    for (int i = 0; i < cl.n; i++) {
        for (int j = 0; j < cl.n; j++) {
            cl.link[i][j] = -1;
            if (proxied && i != j && (cl.link[i][j] = lp_add(&cl.net, cl.r[j].peer_port)) < 0)
                CL_FAIL("proxy for link %d -> %d", i + 1, j + 1);
        }
    }
    if (proxied && !lp_start(&cl.net, cl.seed ^ 0x5eed)) CL_FAIL("proxy thread");
    for (int i = 0; i < cl.n; i++) {
        size_t pl = 0;
        for (int j = 0; j < cl.n; j++) {
            if (j >= cl.group && j != i) continue; /* a later replica is added, not listed */
            int port = i == j || !proxied ? cl.r[j].peer_port : cl.net.links[cl.link[i][j]].port;
            pl += (size_t)snprintf(cl.r[i].peers + pl, sizeof cl.r[i].peers - pl,
                                   "%s%d=127.0.0.1:%d", j ? "," : "", j + 1, port);
        }
    }
}

static inline void cl_init(const char *cellpay, bool proxied, unsigned watchdog_s) {
    cl_init_n(cellpay, proxied, watchdog_s, CL_REPLICAS, CL_REPLICAS);
}

static inline void cl_start(int i) {
    char id[16];
    snprintf(id, sizeof id, "%d", i + 1);
    const char *args[24] = {"--cell", "1", "--id", id, "--peers", cl.r[i].peers};
    int argc = 6;
    if (i >= cl.group) args[argc++] = "--join";
    for (int k = 0; cl.extra && cl.extra[k] && argc < 23; k++) args[argc++] = cl.extra[k];
    args[argc] = NULL;
    int saved = -1;
    FILE *f = NULL;
    if (cl.logs) { /* np_start's child inherits stderr: point it at the log for the fork */
        if (!(f = fopen(cl.r[i].log, "a"))) CL_FAIL("cannot open %s", cl.r[i].log);
        fflush(stderr);
        saved = dup(2);
        dup2(fileno(f), 2);
    }
    bool ok = np_start(&cl.r[i].np, cl.cellpay, cl.r[i].dir, cl.r[i].client_port, args);
    if (f) {
        dup2(saved, 2);
        close(saved);
        fclose(f);
    }
    if (!ok) CL_FAIL("replica %d did not start", i + 1);
}

/* Whether replica i's log (cl.logs) has a line containing `what`. */
static inline bool cl_log_says(int i, const char *what) {
    FILE *f = fopen(cl.r[i].log, "r");
    char line[512];
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f)) found = strstr(line, what) != NULL;
    if (f) fclose(f);
    return found;
}

static inline bool cl_alive(int i) {
    return cl.r[i].np.pid > 0;
}

/* SIGKILL (or another signal that ends it) and reap. */
static inline void cl_kill(int i, int sig) {
    np_stop(&cl.r[i].np, sig);
}

/* ---- Status ---- */

static inline int32_t cl_status(int i, proto_status_reply_t *s) {
    uint32_t size = 0;
    int32_t st =
        client_call_once(cl.r[i].np.addr, PROTO_OP_STATUS, NULL, 0, s, sizeof *s, &size, 500);
    if (st == PROTO_STATUS_OK && size != sizeof *s) CL_FAIL("status reply of %u bytes", size);
    if (st == PROTO_STATUS_OK && s->node_id != (uint32_t)i + 1)
        CL_FAIL("replica %d answers status as replica %u", i + 1, s->node_id);
    return st;
}

static inline void cl_print_status(int i, const proto_status_reply_t *s) {
    printf("  replica %d: role=%u term=%" PRIu64 " leader=%u last=%" PRIu64 " commit=%" PRIu64
           " applied=%" PRIu64 " hash=%016" PRIx64 "%016" PRIx64 "\n",
           i + 1, s->role, s->term, s->leader_id, s->last_index, s->commit_index, s->applied_index,
           (uint64_t)(s->state_hash >> 64), (uint64_t)s->state_hash);
}

/* The live replica that leads in the highest term, by its own status; -1 when none within
 * wait_ms. */
static inline int cl_leader(uint64_t wait_ms, proto_status_reply_t *out) {
    uint64_t t0 = np_now_ms();
    do {
        int best = -1;
        proto_status_reply_t s, bs = {0};
        for (int i = 0; i < cl.n; i++) {
            if (!cl_alive(i) || cl_status(i, &s) != PROTO_STATUS_OK) continue;
            if (s.role == PROTO_ROLE_LEADER && (best < 0 || s.term > bs.term)) best = i, bs = s;
        }
        if (best >= 0) {
            if (out) *out = bs;
            return best;
        }
        np_sleep_ms(20);
    } while (np_now_ms() - t0 < wait_ms);
    return -1;
}

/* Waits (load stopped) until every live replica answers with the same applied index, which
 * is the leader's last index, and checks that they all report the same state hash there.
 * Returns the ms it took. */
static inline uint64_t cl_converge(const char *what, uint64_t wait_ms) {
    uint64_t t0 = np_now_ms();
    proto_status_reply_t s[CL_REPLICAS_MAX];
    int live[CL_REPLICAS_MAX], nl = 0;
    for (int i = 0; i < cl.n; i++)
        if (cl_alive(i)) live[nl++] = i;
    if (nl == 0) CL_FAIL("no replica runs (%s)", what);
    const proto_status_reply_t *s0 = &s[live[0]];
    for (;;) {
        bool answered = true;
        for (int k = 0; k < nl; k++)
            answered = answered && cl_status(live[k], &s[live[k]]) == PROTO_STATUS_OK;
        int leaders = 0;
        bool same = answered;
        for (int k = 0; answered && k < nl; k++) {
            const proto_status_reply_t *x = &s[live[k]];
            leaders += x->role == PROTO_ROLE_LEADER;
            same = same && x->applied_index == s0->applied_index &&
                   x->commit_index == x->applied_index && x->term == s0->term;
            if (x->role == PROTO_ROLE_LEADER && x->last_index != x->applied_index) same = false;
        }
        if (same && leaders == 1) break;
        if (np_now_ms() - t0 > wait_ms) {
            fprintf(stderr, "replicas did not converge (%s); last statuses:\n", what);
            for (int k = 0; k < nl; k++)
                if (answered || cl_status(live[k], &s[live[k]]) == PROTO_STATUS_OK)
                    cl_print_status(live[k], &s[live[k]]);
            CL_FAIL("no common applied index within %" PRIu64 " ms after %s", wait_ms, what);
        }
        np_sleep_ms(20);
    }
    uint64_t took = np_now_ms() - t0;
    for (int k = 1; k < nl; k++) {
        if (s[live[k]].state_hash != s0->state_hash) {
            for (int j = 0; j < nl; j++) cl_print_status(live[j], &s[live[j]]);
            CL_FAIL("replicas %d and %d applied index %" PRIu64 " but their states differ (%s)",
                    live[0] + 1, live[k] + 1, s0->applied_index, what);
        }
    }
    if (atomic_load(&cl.acked) > 0 && s0->state_hash == cl.hash_empty)
        CL_FAIL("the state hash did not change with the transfers (%s)", what);
    printf("  %s: all %d live replicas at applied index %" PRIu64 " (term %" PRIu64
           ") within %" PRIu64 " ms, state hash %016" PRIx64 "%016" PRIx64 " on all\n",
           what, nl, s0->applied_index, s0->term, took, (uint64_t)(s0->state_hash >> 64),
           (uint64_t)s0->state_hash);
    return took;
}

/* ---- Load ---- */

static inline void *cl_load_main(void *arg) {
    prng_t rng = {cl.seed ^ (0x9e3779b97f4a7c15ull * (uintptr_t)arg)};
    ledger_transfer_t b[CL_BATCH_MAX];
    ledger_result_t r[CL_BATCH_MAX];
    while (!atomic_load(&cl.load_stop)) {
        uint32_t n = 1 + (uint32_t)prng_below(&rng, CL_BATCH_MAX);
        uint32_t first = atomic_fetch_add(&cl.next_id, n);
        if (first + n > CL_TRANSFERS_MAX) CL_FAIL("the load ran out of transfer ids");
        for (uint32_t i = 0; i < n; i++) {
            uint8_t dr = (uint8_t)(1 + prng_below(&rng, CL_ACCOUNTS));
            uint8_t cr = (uint8_t)(1 + (dr + prng_below(&rng, CL_ACCOUNTS - 1)) % CL_ACCOUNTS);
            uint16_t amount = (uint16_t)(1 + prng_below(&rng, 1000));
            b[i] = (ledger_transfer_t){.id = first + i,
                                       .debit_account_id = dr,
                                       .credit_account_id = cr,
                                       .amount = amount,
                                       .ledger = 1,
                                       .code = 1};
            cl.info[first + i] = (cl_tinfo_t){.amount = amount, .debit = dr, .credit = cr};
        }
        uint32_t size = 0;
        int32_t st =
            client_call(cl.client, PROTO_OP_CREATE_TRANSFERS, b, n * 128, r, sizeof r, &size, NULL);
        if (st != PROTO_STATUS_OK) {
            /* A timeout leaves these ids unknown: they may or may not exist; verify counts
             * whatever is there. */
            atomic_fetch_add(&cl.call_errors, 1);
            continue;
        }
        if (size != n * sizeof r[0]) CL_FAIL("create_transfers: %u bytes of results", size);
        for (uint32_t i = 0; i < n; i++) {
            if (r[i].result != LEDGER_TRANSFER_CREATED && r[i].result != LEDGER_TRANSFER_EXISTS)
                CL_FAIL("transfer %u: result %s", first + i,
                        ledger_transfer_result_str(r[i].result));
            if (r[i].result == LEDGER_TRANSFER_EXISTS) atomic_fetch_add(&cl.acked_exists, 1);
            cl.info[first + i].acked = 1;
            cl.info[first + i].result = (uint8_t)r[i].result;
            cl.info[first + i].timestamp = r[i].timestamp;
        }
        atomic_fetch_add(&cl.acked, n);
    }
    return NULL;
}

/* Opens the client, creates the accounts and records the state hash before any transfer. */
static inline void cl_open_client(void) {
    client_options_t o = {
        .sessions = CL_LOAD_THREADS + 1, .deadline_ms = 20000, .attempt_timeout_ms = 400};
    if (client_open(&cl.client, cl.addrs, &o) != 0) CL_FAIL("client_open");
    ledger_account_t a[CL_ACCOUNTS];
    ledger_result_t r[CL_ACCOUNTS];
    for (uint32_t i = 0; i < CL_ACCOUNTS; i++)
        a[i] = (ledger_account_t){.id = i + 1, .ledger = 1, .code = 1};
    if (client_call(cl.client, PROTO_OP_CREATE_ACCOUNTS, a, sizeof a, r, sizeof r, NULL, NULL) != 0)
        CL_FAIL("create accounts");
    for (uint32_t i = 0; i < CL_ACCOUNTS; i++)
        if (r[i].result != LEDGER_ACCOUNT_CREATED) CL_FAIL("account %u not created", i + 1);
    proto_status_reply_t s;
    int leader = cl_leader(5000, &s);
    if (leader < 0) CL_FAIL("no leader after creating the accounts");
    cl.hash_empty = s.state_hash;
}

static inline void cl_load_start(void) {
    atomic_store(&cl.load_stop, false);
    for (uintptr_t t = 0; t < CL_LOAD_THREADS; t++)
        if (pthread_create(&cl.threads[t], NULL, cl_load_main, (void *)(t + 1)) != 0)
            CL_FAIL("pthread_create");
}

static inline void cl_load_stop(void) {
    atomic_store(&cl.load_stop, true);
    for (int t = 0; t < CL_LOAD_THREADS; t++) pthread_join(cl.threads[t], NULL);
}

/* Waits until at least `more` further transfers are acknowledged; returns the ms it took. */
static inline uint64_t cl_wait_acks(unsigned long more, uint64_t wait_ms, const char *what) {
    unsigned long before = atomic_load(&cl.acked);
    uint64_t t0 = np_now_ms();
    while (atomic_load(&cl.acked) < before + more) {
        if (np_now_ms() - t0 > wait_ms)
            CL_FAIL("%s: %lu acknowledgements in %" PRIu64 " ms, wanted %lu", what,
                    atomic_load(&cl.acked) - before, wait_ms, more);
        np_sleep_ms(2);
    }
    return np_now_ms() - t0;
}

/* ---- Checks through the leader ---- */

static inline void cl_verify(const char *what) {
    static ledger_transfer_t found[8189];
    static u128 ids[8189];
    u128 debits[CL_ACCOUNTS + 1] = {0}, credits[CL_ACCOUNTS + 1] = {0};
    uint32_t last = atomic_load(&cl.next_id), present_count = 0, acked_count = 0;
    for (uint32_t from = 1; from < last; from += 8189) {
        uint32_t n = 0, size = 0, k = 0;
        for (uint32_t id = from; id < from + 8189 && id < last; id++) ids[n++] = id;
        int32_t st = client_call(cl.client, PROTO_OP_LOOKUP_TRANSFERS, ids, n * 16, found,
                                 sizeof found, &size, NULL);
        if (st != 0) CL_FAIL("lookup_transfers (%s): %s", what, client_status_str(st));
        for (uint32_t i = 0; i < n; i++) {
            uint32_t id = (uint32_t)ids[i];
            bool present = k < size / 128 && found[k].id == id;
            if (cl.info[id].acked) {
                acked_count++;
                if (!present) CL_FAIL("acknowledged transfer %u lost (%s)", id, what);
                if (found[k].timestamp != cl.info[id].timestamp)
                    CL_FAIL("acknowledged transfer %u has timestamp %" PRIu64 ", was %" PRIu64
                            " (%s)",
                            id, found[k].timestamp, cl.info[id].timestamp, what);
            }
            if (present) {
                const ledger_transfer_t *t = &found[k];
                const cl_tinfo_t *s = &cl.info[id];
                if (t->amount != s->amount || t->debit_account_id != s->debit ||
                    t->credit_account_id != s->credit)
                    CL_FAIL("transfer %u altered (%s)", id, what);
                debits[(uint32_t)t->debit_account_id] += t->amount;
                credits[(uint32_t)t->credit_account_id] += t->amount;
                present_count++;
                k++;
            }
        }
        if (k != size / 128) CL_FAIL("lookup_transfers returned transfers not asked for");
    }
    ledger_account_t acc[CL_ACCOUNTS];
    for (uint32_t i = 0; i < CL_ACCOUNTS; i++) ids[i] = i + 1;
    uint32_t size = 0;
    if (client_call(cl.client, PROTO_OP_LOOKUP_ACCOUNTS, ids, CL_ACCOUNTS * 16, acc, sizeof acc,
                    &size, NULL) != 0 ||
        size != sizeof acc)
        CL_FAIL("lookup_accounts (%s)", what);
    for (uint32_t i = 0; i < CL_ACCOUNTS; i++) {
        uint32_t id = (uint32_t)acc[i].id;
        if (acc[i].debits_posted != debits[id] || acc[i].credits_posted != credits[id])
            CL_FAIL("account %u: balances differ from the sum of its transfers (%s)", id, what);
    }
    printf("  %s: %u acknowledged transfers all present with their timestamps; %u exist "
           "(%u from requests that timed out); balances equal the transfers\n",
           what, acked_count, present_count, present_count - acked_count);
}

/* Stops everything and removes the data directories (after a pass). */
static inline void cl_finish(void) {
    client_close(cl.client);
    for (int i = 0; i < cl.n; i++) {
        if (!cl_alive(i)) continue;
        int st = np_stop(&cl.r[i].np, SIGTERM);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            CL_FAIL("replica %d did not stop cleanly", i + 1);
    }
    if (cl.proxied) lp_stop(&cl.net);
    for (int i = 0; i < cl.n; i++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf %s %s", cl.r[i].dir, cl.r[i].log);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", cl.r[i].dir);
    }
}

#endif

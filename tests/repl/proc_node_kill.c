/* Kill test of a durable cell on real processes: load through the client library, SIGKILL the
 * node at random moments, restart it, and check that nothing acknowledged was lost or
 * changed, that re-sending unanswered batches applies them at most once, and that balances
 * are exactly what the applied transfers add up to.
 *
 * usage: proc_node_kill CELLPAY_BINARY      (CELLPAY_SEED=N replays a run,
 *                                            CELLPAY_KILLS=N changes the number of kills) */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/prng.h"
#include "client/client.h"
#include "ledger/ledger.h"
#include "node_proc.h"

#define ACCOUNTS 64u
#define BANK 1u /* the one account without a limit: it funds the others */
#define BATCH_MAX 40u
#define THREADS 4u
#define TRANSFERS_MAX 400000u

static const char *cellpay;
static char dir[256];
static uint64_t seed;

/* What the test knows of every transfer id it ever sent. */
enum { T_UNSENT = 0, T_ACKED, T_UNANSWERED };
typedef struct tinfo {
    uint8_t state;
    uint32_t result;    /* when acked */
    uint64_t timestamp; /* when acked */
} tinfo_t;

static tinfo_t info[TRANSFERS_MAX + 1];
static ledger_transfer_t sent[TRANSFERS_MAX + 1];
static atomic_uint next_id = 1;
static atomic_bool stop_load;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t acked_batches, unanswered_batches;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "FAIL (seed=%llu): ", (unsigned long long)seed);                           \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        exit(1);                                                                                   \
    } while (0)

static client_t *open_client(const node_proc_t *np, uint32_t deadline_ms) {
    client_t *c;
    client_options_t o = {
        .sessions = THREADS, .deadline_ms = deadline_ms, .attempt_timeout_ms = 500};
    if (client_open(&c, np->addr, &o) != 0) FAIL("client_open %s", np->addr);
    return c;
}

static void setup_accounts(client_t *c) {
    ledger_account_t a[ACCOUNTS];
    memset(a, 0, sizeof a);
    for (uint32_t i = 0; i < ACCOUNTS; i++) {
        a[i].id = i + 1;
        a[i].ledger = 1;
        a[i].code = 1;
        a[i].flags = i + 1 == BANK ? 0 : LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS;
    }
    ledger_result_t r[ACCOUNTS];
    uint32_t size = 0;
    int32_t st = client_call(c, PROTO_OP_CREATE_ACCOUNTS, a, sizeof a, r, sizeof r, &size, NULL);
    if (st != 0 || size != sizeof r) FAIL("create_accounts: %s", client_status_str(st));
    for (uint32_t i = 0; i < ACCOUNTS; i++)
        if (r[i].result != LEDGER_ACCOUNT_CREATED) FAIL("account %u not created", i + 1);
}

/* A batch of transfers with fresh ids: the bank funds accounts, accounts pay each other
 * (some of them more than they have, so that failures are recorded too). */
static uint32_t make_batch(prng_t *rng, ledger_transfer_t *b) {
    uint32_t n = 1 + (uint32_t)prng_below(rng, BATCH_MAX);
    uint32_t first = atomic_fetch_add(&next_id, n);
    if (first + n > TRANSFERS_MAX) return 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t dr =
            prng_chance_ppm(rng, 300000) ? BANK : 2 + (uint32_t)prng_below(rng, ACCOUNTS - 1);
        uint32_t cr;
        do cr = 1 + (uint32_t)prng_below(rng, ACCOUNTS);
        while (cr == dr);
        b[i] = (ledger_transfer_t){.id = first + i,
                                   .debit_account_id = dr,
                                   .credit_account_id = cr,
                                   .amount = 1 + prng_below(rng, dr == BANK ? 1000 : 300),
                                   .ledger = 1,
                                   .code = 1};
        sent[first + i] = b[i];
    }
    return n;
}

typedef struct load_arg {
    client_t *client;
    uint64_t seed;
} load_arg_t;

static void *load(void *p) {
    load_arg_t *a = p;
    prng_t rng = {a->seed};
    ledger_transfer_t b[BATCH_MAX];
    ledger_result_t r[BATCH_MAX];
    while (!atomic_load(&stop_load)) {
        uint32_t n = make_batch(&rng, b);
        if (n == 0) break;
        uint32_t size = 0;
        uint64_t ts = 0;
        int32_t st =
            client_call(a->client, PROTO_OP_CREATE_TRANSFERS, b, n * 128, r, sizeof r, &size, &ts);
        pthread_mutex_lock(&mu);
        if (st == 0) {
            if (size != n * sizeof r[0]) FAIL("reply of %u bytes for %u transfers", size, n);
            for (uint32_t i = 0; i < n; i++)
                info[b[i].id] = (tinfo_t){T_ACKED, r[i].result, r[i].timestamp};
            acked_batches++;
        } else {
            for (uint32_t i = 0; i < n; i++) info[b[i].id].state = T_UNANSWERED;
            unanswered_batches++;
        }
        pthread_mutex_unlock(&mu);
    }
    return NULL;
}

/* Re-sends every unanswered transfer (in batches) and checks the answers: each was applied
 * before the crash (exists / id_already_failed) or is applied now, exactly once. */
static void resend_unanswered(client_t *c) {
    ledger_transfer_t b[BATCH_MAX];
    ledger_result_t r[BATCH_MAX];
    uint32_t n = 0, last = atomic_load(&next_id);
    for (uint32_t id = 1; id <= last && id <= TRANSFERS_MAX; id++) {
        if (info[id].state == T_UNANSWERED) b[n++] = sent[id];
        if (n < BATCH_MAX && !(id == last || id == TRANSFERS_MAX)) continue;
        if (n == 0) continue;
        uint32_t size = 0;
        int32_t st =
            client_call(c, PROTO_OP_CREATE_TRANSFERS, b, n * 128, r, sizeof r, &size, NULL);
        if (st != 0) FAIL("resend after restart: %s", client_status_str(st));
        for (uint32_t i = 0; i < n; i++) {
            uint32_t res = r[i].result;
            bool ok = res == LEDGER_TRANSFER_CREATED || res == LEDGER_TRANSFER_EXISTS ||
                      res == LEDGER_TRANSFER_ID_ALREADY_FAILED ||
                      res == LEDGER_TRANSFER_EXCEEDS_CREDITS;
            if (!ok)
                FAIL("resent transfer %llu answered %s", (unsigned long long)b[i].id,
                     ledger_transfer_result_str(res));
            info[b[i].id] = (tinfo_t){T_ACKED, res, r[i].timestamp};
        }
        n = 0;
    }
}

/* Every acknowledged transfer is there with its result; balances are the sum of exactly the
 * transfers that exist. */
static void verify(client_t *c) {
    static ledger_transfer_t found[8189];
    u128 ids[8189];
    u128 bal[ACCOUNTS + 1][2];
    memset(bal, 0, sizeof bal);
    uint32_t last = atomic_load(&next_id), checked = 0;
    for (uint32_t from = 1; from < last && from <= TRANSFERS_MAX; from += 8189) {
        uint32_t n = 0;
        for (uint32_t id = from; id < from + 8189 && id < last && id <= TRANSFERS_MAX; id++)
            ids[n++] = id;
        uint32_t size = 0;
        int32_t st = client_call(c, PROTO_OP_LOOKUP_TRANSFERS, ids, n * 16, found, sizeof found,
                                 &size, NULL);
        if (st != 0) FAIL("lookup_transfers: %s", client_status_str(st));
        uint32_t k = 0, nf = size / 128;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t id = (uint32_t)ids[i];
            const tinfo_t *t = &info[id];
            bool present = k < nf && found[k].id == id;
            bool created = t->state == T_ACKED && (t->result == LEDGER_TRANSFER_CREATED ||
                                                   t->result == LEDGER_TRANSFER_EXISTS);
            if (t->state == T_ACKED && created != present)
                FAIL("transfer %u acknowledged as %s is %s", id,
                     ledger_transfer_result_str(t->result), present ? "present" : "missing");
            if (present && t->state == T_ACKED && t->result == LEDGER_TRANSFER_CREATED &&
                found[k].timestamp != t->timestamp)
                FAIL("transfer %u changed its timestamp", id);
            if (present) {
                if (found[k].amount != sent[id].amount ||
                    found[k].debit_account_id != sent[id].debit_account_id)
                    FAIL("transfer %u is not what was sent", id);
                bal[(uint32_t)found[k].debit_account_id][0] += found[k].amount;
                bal[(uint32_t)found[k].credit_account_id][1] += found[k].amount;
                k++;
            }
            checked++;
        }
        if (k != nf) FAIL("lookup returned transfers out of order");
    }
    ledger_account_t acc[ACCOUNTS];
    for (uint32_t i = 0; i < ACCOUNTS; i++) ids[i] = i + 1;
    uint32_t size = 0;
    int32_t st =
        client_call(c, PROTO_OP_LOOKUP_ACCOUNTS, ids, ACCOUNTS * 16, acc, sizeof acc, &size, NULL);
    if (st != 0 || size != sizeof acc) FAIL("lookup_accounts: %s", client_status_str(st));
    u128 dsum = 0, csum = 0;
    for (uint32_t i = 0; i < ACCOUNTS; i++) {
        uint32_t id = (uint32_t)acc[i].id;
        if (acc[i].debits_posted != bal[id][0] || acc[i].credits_posted != bal[id][1])
            FAIL("account %u balances differ from its transfers", id);
        if (id != BANK && acc[i].debits_posted > acc[i].credits_posted)
            FAIL("account %u is overdrawn", id);
        dsum += acc[i].debits_posted;
        csum += acc[i].credits_posted;
    }
    if (dsum != csum) FAIL("debits and credits differ");
    printf("verified %u transfer ids\n", checked);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: proc_node_kill CELLPAY_BINARY\n");
        return 2;
    }
    cellpay = argv[1];
    const char *s = getenv("CELLPAY_SEED");
    seed = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL);
    uint32_t kills = getenv("CELLPAY_KILLS") ? (uint32_t)atoi(getenv("CELLPAY_KILLS")) : 20;
    printf("seed=%llu kills=%u\n", (unsigned long long)seed, kills);
    snprintf(dir, sizeof dir, "/tmp/cellpay-kill-XXXXXX");
    if (!mkdtemp(dir)) FAIL("mkdtemp");
    /* Small snapshots, so that kills also land during and after snapshots. */
    const char *extra[] = {
        "--accounts-max", "1024", "--transfers-max", "1000000", "--snapshot-mib", "1", NULL};
    node_proc_t np;
    if (!np_start(&np, cellpay, dir, 0, extra)) FAIL("node did not start");
    client_t *c = open_client(&np, 5000);
    setup_accounts(c);
    client_close(c);
    prng_t rng = {seed};
    for (uint32_t k = 0; k < kills; k++) {
        c = open_client(&np, 1500);
        atomic_store(&stop_load, false);
        pthread_t th[THREADS];
        load_arg_t la[THREADS];
        for (uint32_t t = 0; t < THREADS; t++) {
            la[t] = (load_arg_t){c, prng_next(&rng)};
            pthread_create(&th[t], NULL, load, &la[t]);
        }
        np_sleep_ms(50 + prng_below(&rng, 700));
        int st = np_stop(&np, SIGKILL);
        if (!WIFSIGNALED(st)) FAIL("node exited by itself before the kill (status %d)", st);
        atomic_store(&stop_load, true);
        for (uint32_t t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
        client_close(c);
        int port = np.port;
        if (!np_start(&np, cellpay, dir, port, extra))
            FAIL("node did not restart after kill %u", k + 1);
        c = open_client(&np, 10000);
        resend_unanswered(c);
        verify(c);
        client_close(c);
        printf("kill %u: %llu batches acknowledged, %llu unanswered so far\n", k + 1,
               (unsigned long long)acked_batches, (unsigned long long)unanswered_batches);
    }
    int st = np_stop(&np, SIGTERM);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) FAIL("SIGTERM did not stop the node cleanly");
    if (acked_batches == 0) FAIL("no batch was ever acknowledged: the test tested nothing");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    printf("node kill: %u passed, 0 failed\n", kills);
    return 0;
}

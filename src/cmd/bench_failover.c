/* `cellpay bench failover`: how long a cell of three replicas stops acknowledging new work
 * when its leader is SIGKILLed under load, and whether anything acknowledged was lost or any
 * money applied twice.
 *
 * The load: `clients` threads, each sending small create_transfers requests one after the
 * other through one client library (which knows all three addresses and finds the leader by
 * itself). Every transfer's fields follow from its id and the seed, so nothing but the
 * acknowledgement has to be remembered per transfer.
 *
 * One kill: find the leader (the only replica that answers ping with ok), SIGKILL it, and
 * measure the time from the kill to the first acknowledgement (created or exists) of a
 * request submitted after the kill. Requests that were in flight at the kill are retried by
 * the client and answered by the new leader too, but they do not end the measurement: the
 * failover ends when new work gets through. Then restart the killed replica on its data
 * directory and addresses, and wait until the group is whole again before the next kill. */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/constants.h"
#include "base/prng.h"
#include "client/client.h"
#include "cmd/bench_cluster.h"
#include "cmd/cmd_args.h"
#include "ledger/ledger.h"

#define FO_REPLICAS 3u
#define FO_BATCH_MAX 8u       /* transfers in one request, 1 ..= 8: small, like payments */
#define FO_IDS_MAX (1u << 23) /* transfer ids the load may use in one run */
#define FO_KILLS_MAX 1000u
#define FO_DEADLINE_MS 30000u /* a request rides through a failover within this */
#define FO_FAILOVER_WAIT_MS 60000u
#define FO_LEADER_WAIT_MS 20000u

typedef struct fo_opts {
    uint32_t kills, clients, accounts, election_ms;
    unsigned long long seed;
} fo_opts_t;

enum { FO_UNSENT, FO_ACKED, FO_FAILED, FO_UNANSWERED };

/* What is known of one transfer id. The load thread that sent it writes state and timestamp;
 * verification (after the load threads are joined) counts where it was found. */
typedef struct fo_rec {
    uint64_t timestamp; /* acknowledged (created or exists): the cell's timestamp */
    uint8_t state;
    uint8_t found;        /* in lookup_transfers replies */
    uint8_t listed_debit; /* in its debit account's get_account_transfers */
    uint8_t listed_credit;
} fo_rec_t;

typedef struct fo {
    fo_opts_t o;
    client_t *client;
    fo_rec_t *rec; /* by transfer id, 1 ..= FO_IDS_MAX */
    _Atomic uint32_t next_id, threads;
    atomic_bool stop, ids_exhausted;
    /* Kill k happened at kill_ns[k]; its failover ends at first_ack_ns[k]. A load thread
     * reads kills (acquire) before kill_ns, so it never compares against a kill not yet
     * recorded, and it only ever writes the slot of the kill it compared against. */
    _Atomic uint32_t kills;
    uint64_t kill_ns[FO_KILLS_MAX];
    _Atomic uint64_t first_ack_ns[FO_KILLS_MAX];
    _Atomic uint64_t acked, failed_events, unanswered;
    _Atomic int32_t last_error;
} fo_t;

/* Transfer id -> its fields: a pure function of the seed, so verification can recompute
 * what was sent. Debit and credit are different accounts of 1 ..= accounts. */
static void fo_transfer(const fo_t *f, uint32_t id, ledger_transfer_t *t) {
    prng_t r = {f->o.seed * 0x100000001b3ull ^ id};
    uint64_t dr = prng_below(&r, f->o.accounts);
    uint64_t cr = (dr + 1 + prng_below(&r, f->o.accounts - 1)) % f->o.accounts;
    *t = (ledger_transfer_t){.id = id,
                             .debit_account_id = 1 + dr,
                             .credit_account_id = 1 + cr,
                             .amount = 1 + prng_below(&r, 1000),
                             .ledger = 1,
                             .code = 1};
}

/* An acknowledgement of a request submitted at t: when that was after the latest kill, and
 * nothing submitted after that kill was acknowledged yet, this one ends its failover. */
static void fo_note_ack(fo_t *f, uint64_t submitted_ns) {
    uint32_t k = atomic_load_explicit(&f->kills, memory_order_acquire);
    if (k == 0 || submitted_ns <= f->kill_ns[k - 1]) return;
    uint64_t none = 0;
    atomic_compare_exchange_strong(&f->first_ack_ns[k - 1], &none, bc_now_ns());
}

static void *fo_load(void *arg) {
    fo_t *f = arg;
    prng_t rng = {f->o.seed + 1 + atomic_fetch_add(&f->threads, 1)}; /* request sizes */
    ledger_transfer_t body[FO_BATCH_MAX];
    ledger_result_t res[FO_BATCH_MAX];
    while (!atomic_load(&f->stop)) {
        uint32_t n = 1 + (uint32_t)prng_below(&rng, FO_BATCH_MAX);
        uint32_t first = atomic_fetch_add(&f->next_id, n);
        if (first + n - 1 > FO_IDS_MAX) {
            atomic_store(&f->ids_exhausted, true);
            break;
        }
        for (uint32_t i = 0; i < n; i++) fo_transfer(f, first + i, &body[i]);
        uint64_t submitted = bc_now_ns();
        int32_t st;
        uint32_t size = 0;
        /* The client retries through failovers until its deadline. A request it gave up on
         * may or may not have been applied; only an answer tells (exists), so it is sent
         * again as it was, a few more times even once the load is asked to stop. */
        for (uint32_t attempt = 0;; attempt++) {
            st = client_call(f->client, PROTO_OP_CREATE_TRANSFERS, body, n * 128, res, sizeof res,
                             &size, NULL);
            if (st == PROTO_STATUS_OK) break;
            atomic_store(&f->last_error, st);
            if (attempt >= 3 && atomic_load(&f->stop)) break;
            bc_sleep_ms(10); /* a status that comes back at once must not spin */
        }
        if (st != PROTO_STATUS_OK) {
            for (uint32_t i = 0; i < n; i++) f->rec[first + i].state = FO_UNANSWERED;
            atomic_fetch_add(&f->unanswered, n);
            continue;
        }
        uint32_t acked = 0;
        for (uint32_t i = 0; i < n; i++) {
            fo_rec_t *r = &f->rec[first + i];
            if (res[i].result == LEDGER_TRANSFER_CREATED ||
                res[i].result == LEDGER_TRANSFER_EXISTS) {
                r->state = FO_ACKED;
                r->timestamp = res[i].timestamp;
                acked++;
            } else {
                r->state = FO_FAILED;
            }
        }
        if (acked) fo_note_ack(f, submitted);
        atomic_fetch_add(&f->acked, acked);
        atomic_fetch_add(&f->failed_events, n - acked);
    }
    return NULL;
}

/* The replica that leads: the only one that answers ping with ok (node.c answers not_leader
 * on the others, which the client retries until the short deadline). -1 when no single
 * replica does within FO_LEADER_WAIT_MS. */
static int fo_find_leader(bc_cluster_t *cl) {
    uint64_t t0 = bc_now_ns();
    while (bc_now_ns() - t0 < (uint64_t)FO_LEADER_WAIT_MS * 1000000) {
        int leader = -1, leaders = 0;
        for (uint32_t i = 0; i < FO_REPLICAS; i++) {
            if (!bc_alive(cl, i)) continue;
            client_t *c;
            client_options_t o = {.deadline_ms = 200, .attempt_timeout_ms = 150};
            if (client_open(&c, cl->r[i].addr, &o) != 0) continue;
            if (client_call(c, PROTO_OP_PING, NULL, 0, NULL, 0, NULL, NULL) == PROTO_STATUS_OK) {
                leader = (int)i;
                leaders++;
            }
            client_close(c);
        }
        if (leaders == 1) return leader;
        bc_sleep_ms(50);
    }
    return -1;
}

static int fo_accounts(fo_t *f) {
    static ledger_account_t a[CP_BATCH_EVENTS_MAX];
    static ledger_result_t r[CP_BATCH_EVENTS_MAX];
    for (uint32_t done = 0; done < f->o.accounts;) {
        uint32_t n =
            f->o.accounts - done < CP_BATCH_EVENTS_MAX ? f->o.accounts - done : CP_BATCH_EVENTS_MAX;
        for (uint32_t i = 0; i < n; i++)
            a[i] = (ledger_account_t){.id = done + i + 1, .ledger = 1, .code = 1};
        int32_t st =
            client_call(f->client, PROTO_OP_CREATE_ACCOUNTS, a, n * 128, r, sizeof r, NULL, NULL);
        /* exists: the client resent a batch whose first answer was lost. */
        for (uint32_t i = 0; st == 0 && i < n; i++)
            if (r[i].result != LEDGER_ACCOUNT_CREATED && r[i].result != LEDGER_ACCOUNT_EXISTS)
                st = PROTO_STATUS_REFUSED;
        if (st != 0) {
            fprintf(stderr, "cellpay bench failover: creating accounts: %s\n",
                    client_status_str(st));
            return -1;
        }
        done += n;
    }
    return 0;
}

/* ---- Verification, against the leader after the load has stopped ---- */

/* Says what is wrong, for the first few findings only: one broken run must not print a
 * million lines. */
static void fo_complain(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fo_complain(const char *fmt, ...) {
    static uint32_t said;
    if (said++ >= 20) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("cellpay bench failover: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

typedef struct fo_check {
    uint64_t lost, duplicated, unlisted;
    u128 *debits, *credits; /* by account id: the sums of the transfers that exist */
    ledger_transfer_t *buf; /* one whole reply */
} fo_check_t;

static bool fo_same(const ledger_transfer_t *a, const ledger_transfer_t *b) {
    return a->id == b->id && a->debit_account_id == b->debit_account_id &&
           a->credit_account_id == b->credit_account_id && a->amount == b->amount &&
           a->ledger == b->ledger && a->code == b->code && a->flags == b->flags;
}

/* Every id ever submitted is looked up: an acknowledged one must be there as sent, with the
 * timestamp of its acknowledgement; whatever is there adds to its accounts' sums. */
static int fo_check_lookups(fo_t *f, fo_check_t *k, uint32_t ids) {
    static u128 want[CP_BATCH_EVENTS_MAX];
    for (uint32_t from = 1; from <= ids; from += CP_BATCH_EVENTS_MAX) {
        uint32_t n = ids - from + 1 < CP_BATCH_EVENTS_MAX ? ids - from + 1 : CP_BATCH_EVENTS_MAX;
        for (uint32_t i = 0; i < n; i++) want[i] = from + i;
        uint32_t size = 0;
        int32_t st = client_call(f->client, PROTO_OP_LOOKUP_TRANSFERS, want, n * 16, k->buf,
                                 CP_BATCH_EVENTS_MAX * 128, &size, NULL);
        if (st != 0) {
            fprintf(stderr, "cellpay bench failover: lookup_transfers: %s\n",
                    client_status_str(st));
            return -1;
        }
        for (uint32_t i = 0; i < size / 128; i++) {
            const ledger_transfer_t *t = &k->buf[i];
            if (t->id < from || t->id >= from + n) {
                fo_complain("a lookup returned an id not asked for");
                k->duplicated++;
                continue;
            }
            uint32_t id = (uint32_t)t->id;
            fo_rec_t *r = &f->rec[id];
            if (r->found++) {
                k->duplicated++; /* the same id twice in one reply */
                continue;
            }
            ledger_transfer_t sent;
            fo_transfer(f, id, &sent);
            if (!fo_same(t, &sent) || (r->state == FO_ACKED && t->timestamp != r->timestamp)) {
                fo_complain("transfer %u differs from what was %s", id,
                            r->state == FO_ACKED ? "acknowledged" : "sent");
                k->lost++;
            }
            if (t->debit_account_id >= 1 && t->debit_account_id <= f->o.accounts)
                k->debits[(uint32_t)t->debit_account_id] += t->amount;
            if (t->credit_account_id >= 1 && t->credit_account_id <= f->o.accounts)
                k->credits[(uint32_t)t->credit_account_id] += t->amount;
        }
        for (uint32_t id = from; id < from + n; id++) {
            if (f->rec[id].state == FO_ACKED && !f->rec[id].found) {
                fo_complain("acknowledged transfer %u not found", id);
                k->lost++;
            }
        }
    }
    return 0;
}

/* Each account's posted balances must equal the sums of the transfers that exist; its
 * history (get_account_transfers) must list each of them once. */
static int fo_check_accounts(fo_t *f, fo_check_t *k) {
    static ledger_account_t acc[CP_BATCH_EVENTS_MAX];
    static u128 want[CP_BATCH_EVENTS_MAX];
    for (uint32_t from = 1; from <= f->o.accounts; from += CP_BATCH_EVENTS_MAX) {
        uint32_t n = f->o.accounts - from + 1 < CP_BATCH_EVENTS_MAX ? f->o.accounts - from + 1
                                                                    : CP_BATCH_EVENTS_MAX;
        for (uint32_t i = 0; i < n; i++) want[i] = from + i;
        uint32_t size = 0;
        int32_t st = client_call(f->client, PROTO_OP_LOOKUP_ACCOUNTS, want, n * 16, acc, sizeof acc,
                                 &size, NULL);
        if (st != 0 || size != n * 128) {
            fprintf(stderr, "cellpay bench failover: lookup_accounts: %s\n",
                    st ? client_status_str(st) : "accounts missing");
            return -1;
        }
        for (uint32_t i = 0; i < n; i++) {
            uint32_t id = (uint32_t)acc[i].id;
            if (acc[i].id != from + i || acc[i].debits_posted != k->debits[id] ||
                acc[i].credits_posted != k->credits[id] || acc[i].debits_pending != 0 ||
                acc[i].credits_pending != 0) {
                fo_complain("account %u's balances differ from the sums of its transfers",
                            from + i);
                k->duplicated++;
            }
        }
    }
    for (uint32_t a = 1; a <= f->o.accounts; a++) {
        ledger_account_filter_t flt = {.account_id = a,
                                       .limit = CP_QUERY_LIMIT_MAX,
                                       .flags = LEDGER_FILTER_DEBITS | LEDGER_FILTER_CREDITS};
        for (;;) {
            uint32_t size = 0;
            int32_t st = client_call(f->client, PROTO_OP_GET_ACCOUNT_TRANSFERS, &flt, sizeof flt,
                                     k->buf, CP_QUERY_LIMIT_MAX * 128, &size, NULL);
            if (st != 0) {
                fprintf(stderr, "cellpay bench failover: get_account_transfers: %s\n",
                        client_status_str(st));
                return -1;
            }
            uint32_t got = size / 128;
            for (uint32_t i = 0; i < got; i++) {
                const ledger_transfer_t *t = &k->buf[i];
                if (t->id < 1 || t->id > FO_IDS_MAX || !f->rec[(uint32_t)t->id].found) {
                    fo_complain("account %u lists a transfer that lookup_transfers does not find",
                                a);
                    k->duplicated++;
                    continue;
                }
                fo_rec_t *r = &f->rec[(uint32_t)t->id];
                uint8_t *seen = t->debit_account_id == a ? &r->listed_debit : &r->listed_credit;
                if ((*seen)++ == 1) { /* the second time: found twice */
                    fo_complain("transfer %u is listed twice for account %u", (uint32_t)t->id, a);
                    k->duplicated++;
                }
            }
            if (got < CP_QUERY_LIMIT_MAX) break;
            flt.timestamp_min = k->buf[got - 1].timestamp + 1;
        }
    }
    uint32_t ids = atomic_load(&f->next_id) - 1;
    for (uint32_t id = 1; id <= ids && id <= FO_IDS_MAX; id++)
        if (f->rec[id].found && (!f->rec[id].listed_debit || !f->rec[id].listed_credit))
            k->unlisted++;
    return 0;
}

static int fo_verify(fo_t *f, fo_check_t *k) {
    uint32_t ids = atomic_load(&f->next_id) - 1;
    if (ids > FO_IDS_MAX) ids = FO_IDS_MAX;
    k->debits = calloc(f->o.accounts + 1, sizeof *k->debits);
    k->credits = calloc(f->o.accounts + 1, sizeof *k->credits);
    k->buf = malloc(CP_BATCH_EVENTS_MAX * sizeof *k->buf);
    int rc = -1;
    if (k->debits && k->credits && k->buf && fo_check_lookups(f, k, ids) == 0)
        rc = fo_check_accounts(f, k);
    free(k->debits);
    free(k->credits);
    free(k->buf);
    return rc;
}

/* ---- The run ---- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Restarts replica i and waits until the group is whole: it runs, a single leader answers,
 * and the load has been acknowledged for a while with all three up — a time for the
 * restarted replica to catch up on what it missed before the next kill (followers answer
 * no queries, so how far it got cannot be asked). */
static int fo_heal(fo_t *f, bc_cluster_t *cl, uint32_t i, uint32_t settle_ms) {
    int rc = -1;
    for (uint32_t attempt = 0; attempt < 5 && rc != 0; attempt++) {
        if (attempt) bc_sleep_ms(200); /* its port may still be held for a moment */
        rc = bc_start_replica(cl, i);
    }
    if (rc != 0) return -1;
    if (fo_find_leader(cl) < 0) {
        fprintf(stderr, "cellpay bench failover: no leader after replica %u was restarted\n",
                i + 1);
        return -1;
    }
    uint64_t before = atomic_load(&f->acked);
    bc_sleep_ms(settle_ms);
    for (uint32_t r = 0; r < FO_REPLICAS; r++) {
        if (!bc_alive(cl, r)) {
            fprintf(stderr, "cellpay bench failover: replica %u ended on its own\n", r + 1);
            return -1;
        }
    }
    if (atomic_load(&f->acked) == before) {
        fprintf(stderr,
                "cellpay bench failover: no transfer acknowledged for %u ms after the "
                "restart\n",
                settle_ms);
        return -1;
    }
    return 0;
}

static int fo_run(fo_t *f, bc_cluster_t *cl) {
    uint32_t election_ms = f->o.election_ms ? f->o.election_ms : 150;
    uint32_t settle_ms = 5 * election_ms > 1000 ? 5 * election_ms : 1000;
    prng_t rng = {f->o.seed};
    double failover_ms[FO_KILLS_MAX];
    pthread_t threads[CLIENT_SESSIONS_MAX];
    uint32_t started = 0;
    int rc = fo_accounts(f);
    while (rc == 0 && started < f->o.clients) {
        if (pthread_create(&threads[started], NULL, fo_load, f) != 0)
            rc = -1;
        else
            started++;
    }
    /* The load runs before the first kill: the first failover starts from a cell at work. */
    if (rc == 0) bc_sleep_ms(settle_ms);
    if (rc == 0 && atomic_load(&f->acked) == 0) {
        fprintf(stderr, "cellpay bench failover: no transfer acknowledged before the kills\n");
        rc = -1;
    }
    for (uint32_t k = 0; rc == 0 && k < f->o.kills; k++) {
        /* A seeded pause, so the kills land at different points of the heartbeat cycle. */
        bc_sleep_ms(100 + (uint32_t)prng_below(&rng, 400));
        int leader = fo_find_leader(cl);
        if (leader < 0) {
            fprintf(stderr, "cellpay bench failover: no single leader before kill %u\n", k + 1);
            rc = -1;
            break;
        }
        uint64_t t_kill = 0;
        bc_kill(cl, (uint32_t)leader, SIGKILL, &t_kill);
        f->kill_ns[k] = t_kill;
        atomic_store_explicit(&f->kills, k + 1, memory_order_release);
        uint64_t end = 0;
        while ((end = atomic_load(&f->first_ack_ns[k])) == 0 &&
               bc_now_ns() - t_kill < (uint64_t)FO_FAILOVER_WAIT_MS * 1000000)
            bc_sleep_ms(1);
        if (end == 0) {
            fprintf(stderr,
                    "cellpay bench failover: kill %u: nothing submitted after the kill was "
                    "acknowledged within %u ms\n",
                    k + 1, FO_FAILOVER_WAIT_MS);
            rc = -1;
            break;
        }
        failover_ms[k] = (double)(end - t_kill) / 1e6;
        uint64_t t_heal = bc_now_ns();
        if (fo_heal(f, cl, (uint32_t)leader, settle_ms) != 0) {
            rc = -1;
            break;
        }
        printf("kill %u/%u: leader replica %d SIGKILLed; failover %.1f ms; restarted, group "
               "whole again after %.1f s; %llu transfers acknowledged so far\n",
               k + 1, f->o.kills, leader + 1, failover_ms[k], (double)(bc_now_ns() - t_heal) / 1e9,
               (unsigned long long)atomic_load(&f->acked));
        fflush(stdout);
    }
    atomic_store(&f->stop, true);
    for (uint32_t t = 0; t < started; t++) pthread_join(threads[t], NULL);
    if (atomic_load(&f->ids_exhausted)) {
        fprintf(stderr, "cellpay bench failover: the load used up its %u transfer ids\n",
                FO_IDS_MAX);
        rc = -1;
    }
    if (rc != 0) return rc;
    fo_check_t check = {0};
    if (fo_find_leader(cl) < 0 || fo_verify(f, &check) != 0) {
        fprintf(stderr, "cellpay bench failover: the cell could not be verified\n");
        return -1;
    }
    uint64_t acked = atomic_load(&f->acked), failed = atomic_load(&f->failed_events),
             unanswered = atomic_load(&f->unanswered);
    printf("verified: %u transfers submitted, %llu acknowledged, %llu refused, %llu "
           "unanswered; %u accounts\n",
           atomic_load(&f->next_id) - 1, (unsigned long long)acked, (unsigned long long)failed,
           (unsigned long long)unanswered, f->o.accounts);
    if (failed || unanswered)
        fprintf(stderr, "cellpay bench failover: the last client error: %s\n",
                client_status_str(atomic_load(&f->last_error)));
    if (check.unlisted)
        fprintf(stderr,
                "cellpay bench failover: %llu transfers exist but are missing from their "
                "accounts' histories\n",
                (unsigned long long)check.unlisted);
    qsort(failover_ms, f->o.kills, sizeof failover_ms[0], cmp_double);
    printf("failover p50_ms=%.1f max_ms=%.1f lost=%llu duplicated=%llu\n",
           failover_ms[(f->o.kills - 1) / 2], failover_ms[f->o.kills - 1],
           (unsigned long long)check.lost, (unsigned long long)check.duplicated);
    return check.lost || check.duplicated || check.unlisted || failed ? 1 : 0;
}

static int fo_parse(int argc, char **argv, fo_opts_t *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool ok;
        if (!strcmp(a, "--kills"))
            ok = args_u32(argc, argv, &i, 1, FO_KILLS_MAX, &o->kills);
        else if (!strcmp(a, "--clients"))
            ok = args_u32(argc, argv, &i, 1, CLIENT_SESSIONS_MAX, &o->clients);
        else if (!strcmp(a, "--accounts"))
            ok = args_u32(argc, argv, &i, 2, 1u << 20, &o->accounts);
        else if (!strcmp(a, "--seed"))
            ok = args_u64(argc, argv, &i, UINT64_MAX, &o->seed);
        else if (!strcmp(a, "--election-ms"))
            ok = args_u32(argc, argv, &i, 40, 60000, &o->election_ms);
        else {
            fprintf(stderr,
                    "cellpay bench failover: unknown option \"%s\" (see cellpay bench --help)\n",
                    a);
            return 2;
        }
        if (!ok) return 2;
    }
    return 0;
}

int bench_failover(int argc, char **argv) {
    static fo_t f; /* large (the kill tables); one per process */
    f.o = (fo_opts_t){.kills = 5, .clients = 8, .accounts = 1000, .seed = 1};
    int rc = fo_parse(argc, argv, &f.o);
    if (rc) return rc;
    atomic_store(&f.next_id, 1);
    f.rec = calloc((size_t)FO_IDS_MAX + 1, sizeof *f.rec);
    if (!f.rec) {
        fprintf(stderr, "cellpay bench failover: out of memory\n");
        return 1;
    }
    bc_cluster_t cl;
    bc_options_t bo = {.replicas = FO_REPLICAS,
                       .accounts_max = f.o.accounts + 16,
                       .transfers_max = FO_IDS_MAX + 16,
                       .election_ms = f.o.election_ms,
                       .logs = true};
    rc = bc_start(&cl, &bo);
    if (rc == 0) {
        printf("a cell of %u replicas in %s (election timeout %u ms), client addresses %s; "
               "%u clients, %u accounts, seed %llu\n",
               FO_REPLICAS, cl.root, f.o.election_ms ? f.o.election_ms : 150, cl.addrs, f.o.clients,
               f.o.accounts, f.o.seed);
        fflush(stdout);
        client_options_t co = {.sessions = f.o.clients,
                               .requests_max = 2 * f.o.clients + 2,
                               .deadline_ms = FO_DEADLINE_MS};
        rc = client_open(&f.client, cl.addrs, &co);
        if (rc != 0) fprintf(stderr, "cellpay bench failover: %s\n", client_status_str(rc));
    }
    if (rc == 0) {
        rc = fo_run(&f, &cl);
        client_close(f.client);
    }
    if (rc < 0) bc_dump_logs(&cl, 10);
    bc_stop(&cl);
    free(f.rec);
    return rc ? 1 : 0;
}

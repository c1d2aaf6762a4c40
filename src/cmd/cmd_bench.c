/* `cellpay bench ...`: measurements. They print figures; nothing here asserts a timing. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/constants.h"
#include "base/prng.h"
#include "cmd/cmd.h"
#include "cmd/cmd_args.h"
#include "ledger/ledger.h"

static const char bench_usage[] =
    "usage: cellpay bench ledger [--accounts N] [--transfers N] [--batch N] [--hot-share F]\n"
    "                            [--seed S]\n"
    "       cellpay bench node [--replicas 1] [--clients N] [--batch N] [--transfers N]\n"
    "                          [--accounts N] [--addr HOST:PORT] [--seed S]\n"
    "       cellpay bench failover [--kills N] [--clients N] [--accounts N] [--seed S]\n"
    "                              [--election-ms MS]\n"
    "       cellpay bench http [--connections N] [--duration S] [--hot-share F] ...\n"
    "                          (see `cellpay bench http --help`)\n"
    "\n"
    "bench ledger applies single-phase transfers to an in-memory ledger on one thread and\n"
    "prints, as its last line,\n"
    "  ledger_apply transfers_per_second=<N> accounts=<N> batch=<N> hot_share=<F>\n"
    "Only the ledger's apply calls are timed; generating the transfers is not.\n"
    "\n"
    "  --accounts N    accounts created first (default 1000000)\n"
    "  --transfers N   transfers applied (default 10000000)\n"
    "  --batch N       transfers per batch, 1..8189 (default 8189)\n"
    "  --hot-share F   fraction of transfers that credit one single account (default 0)\n"
    "  --seed S        random seed (default 1)\n"
    "\n"
    "bench node starts `cellpay node` in a temporary directory (or uses --addr), drives it\n"
    "through the client library with N requests in flight on N connections, and prints as its\n"
    "last line\n"
    "  node_durable transfers_per_second=<N> p50_ms=<x> p99_ms=<y> batch=<N> clients=<N>\n"
    "Latency is per request, from submission to its durable, applied reply.\n"
    "\n"
    "  --replicas N    replicas of the cell: 1, 3 or 5 (all on this machine)\n"
    "  --clients N     connections and requests in flight (default 8)\n"
    "  --batch N       transfers per request, 1..8189 (default 8189)\n"
    "  --transfers N   transfers in all (default 1000000)\n"
    "  --accounts N    accounts (default 10000)\n"
    "  --addr H:P      use a running node (its data stays)\n"
    "\n"
    "bench failover starts a cell of three replicas on this machine (loopback, data in a\n"
    "temporary directory removed at the end) and keeps N client threads sending small\n"
    "create_transfers requests (1 to 8 transfers each, one request in flight per thread)\n"
    "through one client library that knows all three addresses. Then, --kills times: it\n"
    "finds the leader (the replica that answers ping with ok), SIGKILLs it, restarts it on\n"
    "the same data directory and addresses, and waits until a leader answers and transfers\n"
    "have been acknowledged for a while (max(1 s, 5 x the election timeout)) with all three\n"
    "up. The failover time of a kill runs from the signal to the first acknowledgement of a\n"
    "request SUBMITTED after it: the election, the client finding the new leader, and the\n"
    "first commit on it. Requests that were in flight at the kill are retried by the client\n"
    "and do not count. The clients, the replicas and the measuring share this machine.\n"
    "\n"
    "At the end it stops the load and checks the cell through its leader:\n"
    "  lost        acknowledged transfers (created, or exists on a resend) that\n"
    "              lookup_transfers does not find, or finds with other accounts, amount or\n"
    "              timestamp (and any transfer found that differs from what was sent);\n"
    "  duplicated  accounts whose posted balances differ from the sums of the transfers that\n"
    "              exist (lookups over every id ever submitted), plus transfers found twice\n"
    "              (in a lookup reply or in an account's get_account_transfers).\n"
    "It prints a line per kill and, as its last line,\n"
    "  failover p50_ms=<x> max_ms=<y> lost=<N> duplicated=<N>\n"
    "(p50: the median kill, the lower one of an even count). It exits 1 when lost or\n"
    "duplicated is not 0, when a transfer was refused or is missing from its accounts'\n"
    "histories, or when the cell could not be driven or checked.\n"
    "\n"
    "  --kills N        leader kills (default 5)\n"
    "  --clients N      load threads, and as many connections (default 8)\n"
    "  --accounts N     accounts the transfers move money between (default 1000)\n"
    "  --seed S         the transfers' accounts and amounts, and the pauses between kills\n"
    "                   (default 1)\n"
    "  --election-ms MS the replicas' --election-ms (default: the node's, 150)\n";

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

typedef struct bench_ledger_opts {
    uint32_t accounts, transfers, batch, hot_ppm;
    unsigned long long seed;
} bench_ledger_opts_t;

static int bench_ledger_accounts(ledger_t *l, uint32_t count, uint64_t *clock,
                                 ledger_account_t *buf, ledger_result_t *res) {
    for (uint32_t done = 0; done < count;) {
        uint32_t n = count - done < CP_BATCH_EVENTS_MAX ? count - done : CP_BATCH_EVENTS_MAX;
        for (uint32_t i = 0; i < n; i++)
            buf[i] = (ledger_account_t){.id = (u128)(done + i + 1), .ledger = 1, .code = 1};
        *clock += n;
        if (ledger_create_accounts(l, *clock, buf, n, res) != LEDGER_OK) return -1;
        for (uint32_t i = 0; i < n; i++)
            if (res[i].result != LEDGER_ACCOUNT_CREATED) return -1;
        done += n;
    }
    return 0;
}

static int bench_ledger(const bench_ledger_opts_t *o) {
    /* Like a cell, the benchmark commits its tables at start-up: the apply loop measured
     * below then takes no page faults. */
    ledger_config_t cfg = {.accounts_max = o->accounts,
                           .transfers_max = o->transfers,
                           .balances_max = 2 * CP_BATCH_EVENTS_MAX, /* no history accounts */
                           .failed_ids_max = CP_BATCH_EVENTS_MAX,   /* no failures expected */
                           .prefault = true};
    ledger_t *l = ledger_create(&cfg);
    ledger_account_t *abuf = calloc(CP_BATCH_EVENTS_MAX, sizeof *abuf);
    ledger_transfer_t *tbuf = calloc(CP_BATCH_EVENTS_MAX, sizeof *tbuf);
    ledger_result_t *res = calloc(CP_BATCH_EVENTS_MAX, sizeof *res);
    if (!l || !abuf || !tbuf || !res) {
        fprintf(stderr, "cellpay bench ledger: out of memory\n");
        return 1;
    }
    uint64_t clock = 0;
    if (bench_ledger_accounts(l, o->accounts, &clock, abuf, res) != 0) {
        fprintf(stderr, "cellpay bench ledger: creating accounts failed\n");
        return 1;
    }
    prng_t rng = {o->seed};
    u128 hot = 1;
    uint64_t apply_ns = 0, failed = 0;
    for (uint32_t done = 0; done < o->transfers;) {
        uint32_t n = o->transfers - done < o->batch ? o->transfers - done : o->batch;
        for (uint32_t i = 0; i < n; i++) {
            u128 cr = prng_chance_ppm(&rng, o->hot_ppm) ? hot : 1 + prng_below(&rng, o->accounts);
            u128 dr;
            do dr = 1 + prng_below(&rng, o->accounts);
            while (dr == cr);
            tbuf[i] = (ledger_transfer_t){.id = (u128)(done + i + 1),
                                          .debit_account_id = dr,
                                          .credit_account_id = cr,
                                          .amount = 1 + prng_below(&rng, 100000),
                                          .ledger = 1,
                                          .code = 1};
        }
        clock += n;
        uint64_t t0 = now_ns();
        ledger_status_t st = ledger_create_transfers(l, clock, tbuf, n, res);
        apply_ns += now_ns() - t0;
        if (st != LEDGER_OK) {
            fprintf(stderr, "cellpay bench ledger: %s\n", ledger_status_str(st));
            return 1;
        }
        for (uint32_t i = 0; i < n; i++) failed += res[i].result != LEDGER_TRANSFER_CREATED;
        done += n;
    }
    if (failed)
        fprintf(stderr, "cellpay bench ledger: %llu transfers failed\n",
                (unsigned long long)failed);
    double secs = (double)apply_ns / 1e9; /* a measurement, not money */
    printf("applied %u transfers in %.3f s (apply time only)\n", o->transfers, secs);
    printf("ledger_apply transfers_per_second=%.0f accounts=%u batch=%u hot_share=%u.%06u\n",
           secs > 0 ? (double)o->transfers / secs : 0.0, o->accounts, o->batch,
           o->hot_ppm / 1000000, o->hot_ppm % 1000000);
    free(abuf);
    free(tbuf);
    free(res);
    ledger_destroy(l);
    return failed ? 1 : 0;
}

int bench_node(int argc, char **argv);
int bench_failover(int argc, char **argv);
int bench_http(int argc, char **argv);

int cmd_bench(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(bench_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "node")) return bench_node(argc - 1, argv + 1);
    if (!strcmp(argv[1], "failover")) return bench_failover(argc - 1, argv + 1);
    if (!strcmp(argv[1], "http")) return bench_http(argc - 1, argv + 1);
    if (strcmp(argv[1], "ledger") != 0) {
        fprintf(stderr, "cellpay bench: unknown benchmark \"%s\"\n\n%s", argv[1], bench_usage);
        return 2;
    }
    bench_ledger_opts_t o = {1000000, 10000000, CP_BATCH_EVENTS_MAX, 0, 1};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        bool ok;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(bench_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--accounts"))
            ok = args_u32(argc, argv, &i, 2, CP_LEDGER_TABLE_MAX, &o.accounts);
        else if (!strcmp(a, "--transfers"))
            ok = args_u32(argc, argv, &i, 1, CP_LEDGER_TABLE_MAX, &o.transfers);
        else if (!strcmp(a, "--batch"))
            ok = args_u32(argc, argv, &i, 1, CP_BATCH_EVENTS_MAX, &o.batch);
        else if (!strcmp(a, "--hot-share"))
            ok = args_ppm(argc, argv, &i, &o.hot_ppm);
        else if (!strcmp(a, "--seed"))
            ok = args_u64(argc, argv, &i, UINT64_MAX, &o.seed);
        else {
            fprintf(stderr, "cellpay bench ledger: unknown option \"%s\"\n\n%s", a, bench_usage);
            return 2;
        }
        if (!ok) return 2;
    }
    return bench_ledger(&o);
}

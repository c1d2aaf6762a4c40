/* `cellpay bench node`: durable throughput and latency of one cell, measured from a client. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/constants.h"
#include "base/prng.h"
#include "client/client.h"
#include "cmd/bench_cluster.h"
#include "cmd/cmd_args.h"
#include "ledger/ledger.h"

typedef struct bn_opts {
    uint32_t replicas, clients, batch, transfers, accounts;
    unsigned long long seed;
    const char *addr;
} bn_opts_t;

typedef struct bn_slot {
    ledger_transfer_t *body;
    uint32_t n;
    uint64_t t0;
    struct bn *bench;
} bn_slot_t;

typedef struct bn {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bn_slot_t *slots;
    uint32_t *free_slots, free_count;
    uint64_t *latency_ns;
    uint32_t latencies;
    uint64_t failed_events, failed_requests;
    int32_t last_error;
} bn_t;

static void bn_done(void *ctx, int32_t status, uint64_t ts, const void *reply, uint32_t size) {
    (void)ts;
    bn_slot_t *s = ctx;
    bn_t *b = s->bench;
    uint64_t lat = bc_now_ns() - s->t0;
    uint64_t failed = 0;
    if (status == 0) {
        const ledger_result_t *r = reply;
        for (uint32_t i = 0; i < size / sizeof *r; i++)
            failed += r[i].result != LEDGER_TRANSFER_CREATED;
    }
    pthread_mutex_lock(&b->mu);
    b->latency_ns[b->latencies++] = lat;
    b->failed_events += failed;
    if (status != 0) {
        b->failed_requests++;
        b->last_error = status;
    }
    b->free_slots[b->free_count++] = (uint32_t)(s - b->slots);
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static int bn_accounts(client_t *c, const bn_opts_t *o, u128 base) {
    static ledger_account_t a[CP_BATCH_EVENTS_MAX];
    static ledger_result_t r[CP_BATCH_EVENTS_MAX];
    for (uint32_t done = 0; done < o->accounts;) {
        uint32_t n =
            o->accounts - done < CP_BATCH_EVENTS_MAX ? o->accounts - done : CP_BATCH_EVENTS_MAX;
        for (uint32_t i = 0; i < n; i++)
            a[i] = (ledger_account_t){.id = base + done + i + 1, .ledger = 1, .code = 1};
        int32_t st = client_call(c, PROTO_OP_CREATE_ACCOUNTS, a, n * 128, r, sizeof r, NULL, NULL);
        if (st != 0) {
            fprintf(stderr, "cellpay bench node: creating accounts: %s\n", client_status_str(st));
            return -1;
        }
        done += n;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int bn_run(client_t *c, const bn_opts_t *o) {
    bn_t b = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    uint32_t requests = (o->transfers + o->batch - 1) / o->batch;
    b.slots = calloc(o->clients, sizeof *b.slots);
    b.free_slots = calloc(o->clients, sizeof *b.free_slots);
    b.latency_ns = calloc(requests, sizeof *b.latency_ns);
    for (uint32_t i = 0; b.slots && b.free_slots && i < o->clients; i++) {
        b.slots[i] = (bn_slot_t){.body = calloc(o->batch, sizeof(ledger_transfer_t)), .bench = &b};
        if (!b.slots[i].body) return 1;
        b.free_slots[b.free_count++] = i;
    }
    if (!b.slots || !b.free_slots || !b.latency_ns) return 1;
    u128 base = (u128)o->seed << 64;
    if (bn_accounts(c, o, base) != 0) return 1;
    prng_t rng = {o->seed};
    uint64_t t0 = bc_now_ns();
    for (uint32_t done = 0; done < o->transfers;) {
        pthread_mutex_lock(&b.mu);
        while (b.free_count == 0) pthread_cond_wait(&b.cv, &b.mu);
        bn_slot_t *s = &b.slots[b.free_slots[--b.free_count]];
        pthread_mutex_unlock(&b.mu);
        s->n = o->transfers - done < o->batch ? o->transfers - done : o->batch;
        for (uint32_t i = 0; i < s->n; i++) {
            uint64_t dr = 1 + prng_below(&rng, o->accounts), cr;
            do cr = 1 + prng_below(&rng, o->accounts);
            while (cr == dr);
            s->body[i] = (ledger_transfer_t){.id = base + ((u128)1 << 40) + done + i,
                                             .debit_account_id = base + dr,
                                             .credit_account_id = base + cr,
                                             .amount = 1 + prng_below(&rng, 100000),
                                             .ledger = 1,
                                             .code = 1};
        }
        s->t0 = bc_now_ns();
        int rc = client_submit(c, PROTO_OP_CREATE_TRANSFERS, s->body, s->n * 128, bn_done, s);
        if (rc != 0) {
            fprintf(stderr, "cellpay bench node: submit: %s\n", client_status_str(rc));
            return 1;
        }
        done += s->n;
    }
    pthread_mutex_lock(&b.mu);
    while (b.free_count < o->clients) pthread_cond_wait(&b.cv, &b.mu);
    pthread_mutex_unlock(&b.mu);
    double secs = (double)(bc_now_ns() - t0) / 1e9; /* measurements, not money */
    qsort(b.latency_ns, b.latencies, sizeof b.latency_ns[0], cmp_u64);
    double p50 = (double)b.latency_ns[b.latencies / 2] / 1e6;
    double p99 = (double)b.latency_ns[(uint64_t)b.latencies * 99 / 100] / 1e6;
    if (b.failed_requests || b.failed_events)
        fprintf(stderr,
                "cellpay bench node: %llu requests failed (last: %s), %llu transfers not created\n",
                (unsigned long long)b.failed_requests, client_status_str(b.last_error),
                (unsigned long long)b.failed_events);
    printf("%u transfers in %u requests in %.3f s\n", o->transfers, requests, secs);
    printf("node_durable transfers_per_second=%.0f p50_ms=%.2f p99_ms=%.2f batch=%u clients=%u\n",
           (double)o->transfers / secs, p50, p99, o->batch, o->clients);
    for (uint32_t i = 0; i < o->clients; i++) free(b.slots[i].body);
    free(b.slots);
    free(b.free_slots);
    free(b.latency_ns);
    return b.failed_requests || b.failed_events ? 1 : 0;
}

static int bn_parse(int argc, char **argv, bn_opts_t *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool ok;
        if (!strcmp(a, "--replicas"))
            ok = args_u32(argc, argv, &i, 1, 5, &o->replicas);
        else if (!strcmp(a, "--clients"))
            ok = args_u32(argc, argv, &i, 1, CLIENT_SESSIONS_MAX, &o->clients);
        else if (!strcmp(a, "--batch"))
            ok = args_u32(argc, argv, &i, 1, CP_BATCH_EVENTS_MAX, &o->batch);
        else if (!strcmp(a, "--transfers"))
            ok = args_u32(argc, argv, &i, 1, 1u << 30, &o->transfers);
        else if (!strcmp(a, "--accounts"))
            ok = args_u32(argc, argv, &i, 2, 1u << 24, &o->accounts);
        else if (!strcmp(a, "--seed"))
            ok = args_u64(argc, argv, &i, UINT32_MAX, &o->seed);
        else if (!strcmp(a, "--addr") && i + 1 < argc)
            ok = (o->addr = argv[++i]) != NULL;
        else {
            fprintf(stderr,
                    "cellpay bench node: unknown option \"%s\" (see cellpay bench --help)\n", a);
            return 2;
        }
        if (!ok) return 2;
    }
    if (o->replicas != 1 && o->replicas != 3 && o->replicas != 5) {
        fprintf(stderr, "cellpay bench node: --replicas takes 1, 3 or 5\n");
        return 2;
    }
    return 0;
}

int bench_node(int argc, char **argv) {
    bn_opts_t o = {.replicas = 1,
                   .clients = 8,
                   .batch = CP_BATCH_EVENTS_MAX,
                   .transfers = 1000000,
                   .accounts = 10000,
                   .seed = 1};
    int rc = bn_parse(argc, argv, &o);
    if (rc) return rc;
    bc_cluster_t cluster = {0};
    if (!o.addr) {
        bc_options_t bo = {.replicas = o.replicas,
                           .accounts_max = o.accounts + 16,
                           .transfers_max = o.transfers + 16};
        rc = bc_start(&cluster, &bo);
        for (uint32_t i = 0; rc == 0 && i < o.replicas; i++)
            printf("replica %u started in %s, listening on %s\n", i + 1, cluster.r[i].dir,
                   cluster.r[i].addr);
        o.addr = cluster.addrs;
    }
    client_t *c = NULL;
    client_options_t co = {
        .sessions = o.clients, .requests_max = o.clients * 2, .deadline_ms = 60000};
    if (rc == 0 && (rc = client_open(&c, o.addr, &co)) != 0)
        fprintf(stderr, "cellpay bench node: %s\n", client_status_str(rc));
    else if (rc == 0)
        rc = bn_run(c, &o);
    if (c) client_close(c);
    bc_stop(&cluster);
    return rc ? 1 : 0;
}

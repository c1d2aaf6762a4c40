/* The client library against a fake cell (fake_server.h): a real cell_t behind a TCP server on
 * 127.0.0.1 that can drop, delay, hold, refuse and corrupt on command. Every wait is bounded;
 * the only randomness (the merge test's events) comes from a printed seed, which
 * CLIENT_TEST_SEED overrides. `test_client --serve` runs the fake cell alone (see serve()). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/prng.h"
#include "client/client.h"
#include "fake_server.h"

#define REPLY_CAP PROTO_MESSAGE_MAX
#define WAIT_MS 10000u /* the bound of every wait for something that must happen */

/* Waits up to ms for cond; the caller asserts it afterwards. */
#define WAIT_UNTIL(cond, ms)                                                                       \
    do {                                                                                           \
        for (uint32_t wait_i_ = 0; wait_i_ < (ms) && !(cond); wait_i_++) uv_sleep(1);              \
    } while (0)

static uint64_t seed;
static _Alignas(16) unsigned char reply[REPLY_CAP];

/* ---- Building requests. ---- */

static ledger_account_t account(u128 id, uint16_t flags) {
    return (ledger_account_t){.id = id, .ledger = 1, .code = 1, .flags = flags};
}

static ledger_transfer_t transfer(u128 id, u128 debit, u128 credit, u128 amount, uint16_t flags) {
    return (ledger_transfer_t){.id = id,
                               .debit_account_id = debit,
                               .credit_account_id = credit,
                               .amount = amount,
                               .ledger = 1,
                               .code = 1,
                               .flags = flags};
}

static client_t *client_for(const fake_server_t *f, const client_options_t *o) {
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", f->port);
    client_t *c = NULL;
    assert_int_equal(client_open(&c, addr, o), 0);
    return c;
}

static int32_t call(client_t *c, uint8_t op, const void *body, uint32_t size, uint32_t *n,
                    uint64_t *ts) {
    return client_call(c, op, body, size, reply, REPLY_CAP, n, ts);
}

/* Creates accounts 1 and 2 (ledger 1) through the client. */
static void create_accounts_1_2(client_t *c) {
    ledger_account_t a[2] = {account(1, 0), account(2, LEDGER_ACCOUNT_HISTORY)};
    uint32_t n;
    assert_int_equal(call(c, PROTO_OP_CREATE_ACCOUNTS, a, sizeof a, &n, NULL), PROTO_STATUS_OK);
    assert_int_equal(n, 32);
}

static const ledger_result_t *results(void) {
    return (const ledger_result_t *)reply;
}

/* The stored object of a transfer / account, read from the fake cell directly. */
static ledger_transfer_t cell_transfer(fake_server_t *f, u128 id) {
    ledger_transfer_t t = {0};
    fake_lock(f);
    uint32_t n = ledger_lookup_transfers(cell_ledger(f->cell), &id, 1, &t);
    fake_unlock(f);
    assert_int_equal(n, 1);
    return t;
}

static ledger_account_t cell_account(fake_server_t *f, u128 id) {
    ledger_account_t a = {0};
    fake_lock(f);
    uint32_t n = ledger_lookup_accounts(cell_ledger(f->cell), &id, 1, &a);
    fake_unlock(f);
    assert_int_equal(n, 1);
    return a;
}

static void assert_u128(u128 got, u128 want) {
    if (got != want)
        fail_msg("got %llu, want %llu", (unsigned long long)got, (unsigned long long)want);
}

/* ---- Asynchronous outcomes. ---- */

typedef struct outcome {
    _Atomic int calls;
    int32_t status;
    uint64_t timestamp;
    uint32_t size;
    client_t *resubmit; /* when set: submit again from inside the callback */
    int resubmit_rc;
    _Alignas(16) unsigned char reply[1024];
} outcome_t;

static void on_outcome(void *ctx, int32_t status, uint64_t timestamp, const void *body,
                       uint32_t size) {
    outcome_t *o = ctx;
    o->status = status;
    o->timestamp = timestamp;
    o->size = size;
    if (size) memcpy(o->reply, body, size < sizeof o->reply ? size : sizeof o->reply);
    if (o->resubmit)
        o->resubmit_rc = client_submit(o->resubmit, PROTO_OP_PING, NULL, 0, on_outcome, o);
    atomic_fetch_add(&o->calls, 1);
}

static const ledger_result_t *outcome_results(const outcome_t *o) {
    return (const ledger_result_t *)o->reply;
}

/* Submits a lookup of account 1: a request that never merges, to occupy a session. */
static const u128 plug_ids[1] = {1};
static void submit_plug(client_t *c, outcome_t *o) {
    assert_int_equal(
        client_submit(c, PROTO_OP_LOOKUP_ACCOUNTS, plug_ids, sizeof plug_ids, on_outcome, o), 0);
}

/* ---- Tests. ---- */

static void round_trip_reads(client_t *c, uint64_t transfer_ts) {
    uint32_t n;
    u128 ids[3] = {1, 2, 99};
    assert_int_equal(call(c, PROTO_OP_LOOKUP_ACCOUNTS, ids, sizeof ids, &n, NULL), 0);
    assert_int_equal(n, 2 * 128);
    const ledger_account_t *a = (const ledger_account_t *)reply;
    assert_u128(a[0].id, 1);
    assert_u128(a[0].debits_posted, 100);
    assert_u128(a[1].credits_posted, 100);
    u128 tid = 10;
    assert_int_equal(call(c, PROTO_OP_LOOKUP_TRANSFERS, &tid, sizeof tid, &n, NULL), 0);
    assert_int_equal(n, 128);
    assert_int_equal(((const ledger_transfer_t *)reply)->timestamp, transfer_ts);
    ledger_account_filter_t af = {
        .account_id = 1, .limit = 10, .flags = LEDGER_FILTER_DEBITS | LEDGER_FILTER_CREDITS};
    assert_int_equal(call(c, PROTO_OP_GET_ACCOUNT_TRANSFERS, &af, sizeof af, &n, NULL), 0);
    assert_int_equal(n, 128);
    assert_u128(((const ledger_transfer_t *)reply)->id, 10);
    af.account_id = 2;
    assert_int_equal(call(c, PROTO_OP_GET_ACCOUNT_BALANCES, &af, sizeof af, &n, NULL), 0);
    assert_int_equal(n, 128);
    assert_u128(((const ledger_balance_t *)reply)->credits_posted, 100);
    assert_int_equal(((const ledger_balance_t *)reply)->timestamp, transfer_ts);
    ledger_query_filter_t qf = {.ledger = 1, .limit = 10};
    assert_int_equal(call(c, PROTO_OP_QUERY_ACCOUNTS, &qf, sizeof qf, &n, NULL), 0);
    assert_int_equal(n, 2 * 128);
    assert_int_equal(call(c, PROTO_OP_QUERY_TRANSFERS, &qf, sizeof qf, &n, NULL), 0);
    assert_int_equal(n, 128);
}

static void round_trip_clock_and_test_ops(client_t *c, fake_server_t *f) {
    uint32_t n;
    fake_lock(f);
    uint64_t before = cell_clock(f->cell);
    fake_unlock(f);
    uint64_t tick[2] = {1000, 0};
    assert_int_equal(call(c, PROTO_OP_TICK, tick, sizeof tick, &n, NULL), 0);
    assert_int_equal(n, 0);
    fake_lock(f);
    assert_true(cell_clock(f->cell) >= before + 1000);
    fake_unlock(f);
    u128 balances[5] = {1, 0, 7, 0, 0};
    assert_int_equal(call(c, PROTO_OP_TEST_SET_BALANCES, balances, sizeof balances, &n, NULL), 0);
    assert_u128(cell_account(f, 1).debits_posted, 7);
    uint64_t clock[2] = {123456789, 0};
    assert_int_equal(call(c, PROTO_OP_TEST_SET_CLOCK, clock, sizeof clock, &n, NULL), 0);
    fake_lock(f);
    assert_int_equal(cell_clock(f->cell), 123456789);
    fake_unlock(f);
    atomic_store(&f->test_ops, false);
    assert_int_equal(call(c, PROTO_OP_TEST_SET_CLOCK, clock, sizeof clock, &n, NULL),
                     PROTO_STATUS_REFUSED);
}

static void test_every_op_round_trip(void **state) {
    (void)state;
    fake_server_t *f = fake_start();
    client_t *c = client_for(f, NULL);
    uint32_t n;
    uint64_t ts;
    assert_int_equal(call(c, PROTO_OP_PING, NULL, 0, &n, NULL), PROTO_STATUS_OK);
    assert_int_equal(n, 0);
    ledger_account_t a[2] = {account(1, 0), account(2, LEDGER_ACCOUNT_HISTORY)};
    assert_int_equal(call(c, PROTO_OP_CREATE_ACCOUNTS, a, sizeof a, &n, &ts), 0);
    assert_int_equal(n, 32);
    assert_int_equal(results()[0].result, LEDGER_ACCOUNT_CREATED);
    assert_int_equal(results()[1].result, LEDGER_ACCOUNT_CREATED);
    assert_int_equal(results()[1].timestamp, ts); /* the batch's timestamp is its last event's */
    assert_int_equal(results()[0].timestamp + 1, ts);
    ledger_transfer_t t = transfer(10, 1, 2, 100, 0);
    assert_int_equal(call(c, PROTO_OP_CREATE_TRANSFERS, &t, sizeof t, &n, &ts), 0);
    assert_int_equal(n, 16);
    assert_int_equal(results()[0].result, LEDGER_TRANSFER_CREATED);
    round_trip_reads(c, ts);
    round_trip_clock_and_test_ops(c, f);
    client_close(c);
    fake_stop(f);
}

static void test_invalid_and_full_submissions(void **state) {
    (void)state;
    fake_server_t *f = fake_start();
    client_options_t o = {.requests_max = 2};
    client_t *c = client_for(f, &o);
    outcome_t out[3] = {0};
    static _Alignas(16) unsigned char big[(PROTO_ITEMS_MAX + 1) * 128];
    struct {
        uint8_t op;
        uint32_t size;
    } bad[] = {
        {0, 0},
        {PROTO_OP_MAX + 1, 0},
        {PROTO_OP_CREATE_ACCOUNTS, 0},
        {PROTO_OP_CREATE_ACCOUNTS, 100},
        {PROTO_OP_CREATE_TRANSFERS, (PROTO_ITEMS_MAX + 1) * 128},
        {PROTO_OP_GET_ACCOUNT_TRANSFERS, 256},
        {PROTO_OP_QUERY_ACCOUNTS, 128},
        {PROTO_OP_PING, 16},
        {PROTO_OP_TICK, 8},
        {PROTO_OP_LOOKUP_ACCOUNTS, 17},
        {PROTO_OP_LOOKUP_ACCOUNTS, (PROTO_ITEMS_MAX + 1) * 16},
        {PROTO_OP_STATUS, 16},
        {PROTO_OP_TRANSFER_LEADER, 0},
        {PROTO_OP_TRANSFER_LEADER, 32},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(client_submit(c, bad[i].op, big, bad[i].size, on_outcome, &out[2]),
                         CLIENT_ERR_INVALID);
    atomic_store(&f->gate, true);
    submit_plug(c, &out[0]);
    submit_plug(c, &out[1]);
    assert_int_equal(client_submit(c, PROTO_OP_PING, NULL, 0, on_outcome, &out[2]),
                     CLIENT_ERR_FULL);
    fake_open_gate(f);
    WAIT_UNTIL(out[0].calls == 1 && out[1].calls == 1, WAIT_MS);
    assert_int_equal(out[0].status, 0);
    assert_int_equal(out[1].status, 0);
    assert_int_equal(out[2].calls, 0); /* refused submissions never call back */
    client_close(c);
    fake_stop(f);
}

/* ---- Merging concurrent submissions. ---- */

#define MT_THREADS 4
#define MT_SUBS 16
#define MT_EVENTS_MAX 8

typedef struct submission {
    ledger_transfer_t events[MT_EVENTS_MAX];
    uint32_t expected[MT_EVENTS_MAX];
    uint32_t count;
    int rc;
    outcome_t out;
} submission_t;

typedef struct submitter {
    client_t *client;
    submission_t subs[MT_SUBS];
} submitter_t;

/* A transfer that fails (or not) in a way chosen by kind, so that results swapped between
 * submitters would not match. */
static void mt_event(submission_t *s, uint32_t j, u128 id, uint32_t kind) {
    ledger_transfer_t t = transfer(id, 1, 2, 1 + kind, 0);
    uint32_t want = LEDGER_TRANSFER_CREATED;
    switch (kind % 5) {
    case 1: t.code = 0, want = LEDGER_TRANSFER_CODE_MUST_NOT_BE_ZERO; break;
    case 2: t.debit_account_id = 999, want = LEDGER_TRANSFER_DEBIT_ACCOUNT_NOT_FOUND; break;
    case 3:
        t.ledger = 2, want = LEDGER_TRANSFER_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS;
        break;
    case 4: t.credit_account_id = 1, want = LEDGER_TRANSFER_ACCOUNTS_MUST_BE_DIFFERENT; break;
    default: break;
    }
    s->events[j] = t;
    s->expected[j] = want;
}

static void mt_build(submitter_t *m, uint32_t thread, prng_t *r) {
    for (uint32_t k = 0; k < MT_SUBS; k++) {
        submission_t *s = &m->subs[k];
        s->count = 1 + (uint32_t)prng_below(r, MT_EVENTS_MAX);
        for (uint32_t j = 0; j < s->count; j++)
            mt_event(s, j, 1000 + ((u128)thread * MT_SUBS + k) * MT_EVENTS_MAX + j,
                     (uint32_t)prng_below(r, 5));
    }
}

static void mt_submit(void *arg) {
    submitter_t *m = arg;
    for (uint32_t k = 0; k < MT_SUBS; k++) {
        submission_t *s = &m->subs[k];
        s->rc = client_submit(m->client, PROTO_OP_CREATE_TRANSFERS, s->events,
                              s->count * (uint32_t)sizeof s->events[0], on_outcome, &s->out);
    }
}

/* Each submission got its own results, in its order, and a thread's submissions applied in
 * the order it made them (one session: FIFO). Returns the sum of created amounts. */
static u128 mt_check(fake_server_t *f, const submitter_t *m) {
    u128 created = 0;
    uint64_t last_ts = 0;
    for (uint32_t k = 0; k < MT_SUBS; k++) {
        const submission_t *s = &m->subs[k];
        assert_int_equal(s->rc, 0);
        assert_int_equal(s->out.calls, 1);
        assert_int_equal(s->out.status, PROTO_STATUS_OK);
        assert_int_equal(s->out.size, s->count * 16);
        for (uint32_t j = 0; j < s->count; j++) {
            const ledger_result_t *r = &outcome_results(&s->out)[j];
            assert_int_equal(r->result, s->expected[j]);
            if (r->result != LEDGER_TRANSFER_CREATED) continue;
            assert_int_equal(r->timestamp, cell_transfer(f, s->events[j].id).timestamp);
            assert_true(r->timestamp > last_ts);
            last_ts = r->timestamp;
            created += s->events[j].amount;
        }
    }
    return created;
}

static void expect_log_items(fake_server_t *f, uint32_t at, uint8_t op, uint32_t items) {
    fake_lock(f);
    fake_log_t e = f->log[at];
    fake_unlock(f);
    assert_int_equal(e.op, op);
    assert_int_equal(e.items, items);
}

static void test_concurrent_submissions_merge(void **state) {
    (void)state;
    fake_server_t *f = fake_start();
    client_options_t o = {.attempt_timeout_ms = 30000, .deadline_ms = 60000};
    client_t *c = client_for(f, &o);
    create_accounts_1_2(c);
    static submitter_t m[MT_THREADS];
    prng_t r = {seed};
    for (uint32_t t = 0; t < MT_THREADS; t++) {
        memset(&m[t], 0, sizeof m[t]);
        m[t].client = c;
        mt_build(&m[t], t, &r);
    }
    /* The plug holds the only session, so that every submission waits in the queue. */
    outcome_t plug = {0};
    uint32_t base = fake_log_count(f);
    atomic_store(&f->gate, true);
    submit_plug(c, &plug);
    WAIT_UNTIL(fake_log_count(f) == base + 1, WAIT_MS);
    assert_int_equal(fake_log_count(f), base + 1);
    uv_thread_t threads[MT_THREADS];
    for (uint32_t t = 0; t < MT_THREADS; t++)
        assert_int_equal(uv_thread_create(&threads[t], mt_submit, &m[t]), 0);
    for (uint32_t t = 0; t < MT_THREADS; t++) uv_thread_join(&threads[t]);
    fake_open_gate(f);
    bool all_done = false;
    for (uint32_t i = 0; i < WAIT_MS && !all_done; i++, uv_sleep(1)) {
        all_done = true;
        for (uint32_t t = 0; t < MT_THREADS; t++)
            for (uint32_t k = 0; k < MT_SUBS; k++) all_done &= m[t].subs[k].out.calls >= 1;
    }
    assert_true(all_done);
    uv_sleep(20); /* a second callback, if any, would show now */
    uint32_t messages = fake_log_count(f) - base - 1;
    printf("merge: %u submissions arrived in %u message(s)\n", MT_THREADS * MT_SUBS, messages);
    assert_true(messages < MT_THREADS * MT_SUBS);
    u128 created = 0;
    for (uint32_t t = 0; t < MT_THREADS; t++) created += mt_check(f, &m[t]);
    assert_u128(cell_account(f, 1).debits_posted, created); /* each applied exactly once */
    client_close(c);
    fake_stop(f);
}

/* ---- Merged pay submissions. ---- */

#define PAY_SUBS 24u
#define PAY_ITEMS_PER_SUB_MAX 5u

typedef struct pay_sub {
    pay_request_t req[PAY_ITEMS_PER_SUB_MAX];
    uint32_t items;
    _Atomic int calls;
    int32_t status;
    uint32_t size;
    _Alignas(16) pay_object_t got[PAY_ITEMS_PER_SUB_MAX];
} pay_sub_t;

static void on_pay(void *ctx, int32_t status, uint64_t timestamp, const void *body, uint32_t size) {
    (void)timestamp;
    pay_sub_t *p = ctx;
    p->status = status;
    p->size = size;
    if (size <= sizeof p->got) memcpy(p->got, body, size);
    atomic_fetch_add(&p->calls, 1);
}

static void pay_subs_build(pay_sub_t *subs, uint32_t n) {
    for (uint32_t k = 0; k < n; k++) {
        pay_sub_t *p = &subs[k];
        memset(p, 0, sizeof *p);
        p->items = 1 + k % PAY_ITEMS_PER_SUB_MAX;
        for (uint32_t j = 0; j < p->items; j++)
            p->req[j] = (pay_request_t){.idem_key = ((u128)(k + 1) << 64) | (j + 1),
                                        .amount = 1000 * (k + 1) + j,
                                        .uid = k + 1,
                                        .kind = PAY_KIND_PAYMENT};
    }
}

/* Each submitter gets exactly its own answers, one per item, in order. */
static void pay_subs_check(const pay_sub_t *subs, uint32_t n) {
    for (uint32_t k = 0; k < n; k++) {
        const pay_sub_t *p = &subs[k];
        assert_int_equal(atomic_load(&p->calls), 1);
        assert_int_equal(p->status, PROTO_STATUS_OK);
        assert_int_equal(p->size, p->items * sizeof(pay_object_t));
        for (uint32_t j = 0; j < p->items; j++) {
            assert_u128(p->got[j].id, p->req[j].idem_key);
            assert_u128(p->got[j].amount, p->req[j].amount);
            assert_int_equal(p->got[j].uid, k + 1);
            assert_int_equal(p->got[j].code, PAY_CREATED);
        }
    }
}

static void test_pay_submissions_merge(void **state) {
    (void)state;
    fake_server_t *f = fake_start();
    client_options_t o = {.attempt_timeout_ms = 30000, .deadline_ms = 60000};
    client_t *c = client_for(f, &o);
    static pay_sub_t subs[PAY_SUBS];
    pay_subs_build(subs, PAY_SUBS);
    outcome_t plug = {0};
    uint32_t base = fake_log_count(f);
    atomic_store(&f->gate, true);
    submit_plug(c, &plug);
    WAIT_UNTIL(fake_log_count(f) == base + 1, WAIT_MS);
    assert_int_equal(fake_log_count(f), base + 1);
    uint32_t items = 0;
    for (uint32_t k = 0; k < PAY_SUBS; k++) {
        assert_int_equal(client_submit(c, PROTO_OP_PAY, subs[k].req,
                                       subs[k].items * (uint32_t)sizeof(pay_request_t), on_pay,
                                       &subs[k]),
                         0);
        items += subs[k].items;
    }
    fake_open_gate(f);
    WAIT_UNTIL(atomic_load(&subs[PAY_SUBS - 1].calls) == 1, WAIT_MS);
    uv_sleep(20); /* a second callback, if any, would show now */
    pay_subs_check(subs, PAY_SUBS);
    /* All waited behind the plug: they went out as one message with every item. */
    assert_int_equal(fake_log_count(f), base + 2);
    expect_log_items(f, base + 1, PROTO_OP_PAY, items);
    client_close(c);
    fake_stop(f);
}

/* 256-byte items: a message holds (1 MiB - 128) / 256 = 4095 of them, not PROTO_ITEMS_MAX. */
static void test_pay_merge_respects_message_size(void **state) {
    (void)state;
    fake_server_t *f = fake_start();
    client_options_t o = {.attempt_timeout_ms = 30000, .deadline_ms = 60000};
    client_t *c = client_for(f, &o);
    enum { MAX = (PROTO_MESSAGE_MAX - PROTO_HEADER_SIZE) / 256, A = 4000, B = 95 };
    CP_STATIC_ASSERT(MAX == 4095 && A + B == MAX, "A + B fill a message exactly");
    static pay_request_t reqs[A + B + 2];
    memset(reqs, 0, sizeof reqs);
    for (uint32_t i = 0; i < A + B + 2; i++)
        reqs[i] = (pay_request_t){.idem_key = i + 1, .amount = i + 1, .kind = PAY_KIND_PAYMENT};
    static _Alignas(16) unsigned char too_many[(MAX + 1) * 256];
    assert_int_equal(client_submit(c, PROTO_OP_PAY, too_many, sizeof too_many, on_outcome, NULL),
                     CLIENT_ERR_INVALID);
    outcome_t plug = {0}, out[3] = {0};
    uint32_t base = fake_log_count(f);
    atomic_store(&f->gate, true);
    submit_plug(c, &plug);
    WAIT_UNTIL(fake_log_count(f) == base + 1, WAIT_MS);
    /* A + B fit one message; A + B + 2 do not: the third submission goes in a second. */
    uint32_t sizes[3] = {A * 256, B * 256, 2 * 256}, at = 0;
    for (uint32_t k = 0; k < 3; k++) {
        assert_int_equal(client_submit(c, PROTO_OP_PAY, reqs + at, sizes[k], on_outcome, &out[k]),
                         0);
        at += sizes[k] / 256;
    }
    fake_open_gate(f);
    WAIT_UNTIL(atomic_load(&out[2].calls) == 1, WAIT_MS);
    for (uint32_t k = 0; k < 3; k++) {
        assert_int_equal(atomic_load(&out[k].calls), 1);
        assert_int_equal(out[k].status, PROTO_STATUS_OK);
        assert_int_equal(out[k].size, sizes[k]);
    }
    /* The first answer of each: the echo of its own first request. */
    pay_object_t first;
    memcpy(&first, out[1].reply, sizeof first);
    assert_u128(first.id, A + 1);
    memcpy(&first, out[2].reply, sizeof first);
    assert_u128(first.id, A + B + 1);
    assert_int_equal(fake_log_count(f), base + 3);
    expect_log_items(f, base + 1, PROTO_OP_PAY, A + B);
    expect_log_items(f, base + 2, PROTO_OP_PAY, 2);
    client_close(c);
    fake_stop(f);
}

/* ---- Submissions that must travel alone. ---- */

static void expect_log(fake_server_t *f, uint32_t at, uint8_t op, uint32_t items, u128 first) {
    fake_lock(f);
    fake_log_t e = f->log[at];
    fake_unlock(f);
    assert_int_equal(e.op, op);
    assert_int_equal(e.items, items);
    assert_u128(e.first_id, first);
}

static void test_linked_and_imported_not_merged(void **state) {
    (void)state;
    fake_server_t *f = fake_start();
    client_t *c = client_for(f, NULL);
    create_accounts_1_2(c);
    outcome_t plug = {0}, out[8] = {0};
    uint32_t base = fake_log_count(f);
    atomic_store(&f->gate, true);
    submit_plug(c, &plug);
    WAIT_UNTIL(fake_log_count(f) == base + 1, WAIT_MS);
    fake_lock(f);
    uint64_t clock = cell_clock(f->cell); /* the lookup plug did not move it */
    fake_unlock(f);
    ledger_transfer_t ta = transfer(20, 1, 2, 1, 0);
    ledger_transfer_t tb[2] = {transfer(21, 1, 2, 1, LEDGER_TRANSFER_LINKED),
                               transfer(22, 1, 2, 1, LEDGER_TRANSFER_LINKED)};
    ledger_transfer_t tc = transfer(23, 1, 2, 1, 0), td = transfer(24, 1, 2, 1, 0);
    /* Unused timestamp after every account: A takes clock + 2, B clock + 4..5. */
    ledger_account_t ae = account(50, LEDGER_ACCOUNT_IMPORTED);
    ae.timestamp = clock + 1;
    ledger_account_t af = account(51, 0), ag = account(52, 0);
    ledger_transfer_t th = transfer(25, 1, 2, 1, 0); /* mergeable, but another op than G */
    const struct {
        uint8_t op;
        const void *body;
        uint32_t size;
    } sub[8] = {
        {PROTO_OP_CREATE_TRANSFERS, &ta, 128}, {PROTO_OP_CREATE_TRANSFERS, tb, 256},
        {PROTO_OP_CREATE_TRANSFERS, &tc, 128}, {PROTO_OP_CREATE_TRANSFERS, &td, 128},
        {PROTO_OP_CREATE_ACCOUNTS, &ae, 128},  {PROTO_OP_CREATE_ACCOUNTS, &af, 128},
        {PROTO_OP_CREATE_ACCOUNTS, &ag, 128},  {PROTO_OP_CREATE_TRANSFERS, &th, 128},
    };
    for (int i = 0; i < 8; i++)
        assert_int_equal(client_submit(c, sub[i].op, sub[i].body, sub[i].size, on_outcome, &out[i]),
                         0);
    uv_sleep(50); /* let the I/O thread queue them all behind the plug */
    fake_open_gate(f);
    WAIT_UNTIL(out[7].calls == 1, WAIT_MS);
    assert_int_equal(fake_log_count(f), base + 7);
    expect_log(f, base + 1, PROTO_OP_CREATE_TRANSFERS, 1, 20); /* A: B may not follow it */
    expect_log(f, base + 2, PROTO_OP_CREATE_TRANSFERS, 2, 21); /* B alone */
    expect_log(f, base + 3, PROTO_OP_CREATE_TRANSFERS, 2, 23); /* C and D merged */
    expect_log(f, base + 4, PROTO_OP_CREATE_ACCOUNTS, 1, 50);  /* E alone (imported) */
    expect_log(f, base + 5, PROTO_OP_CREATE_ACCOUNTS, 2, 51);  /* F and G merged */
    expect_log(f, base + 6, PROTO_OP_CREATE_TRANSFERS, 1, 25); /* H: not with G */
    uint32_t want[8][2] = {
        {LEDGER_TRANSFER_CREATED},
        {LEDGER_TRANSFER_LINKED_EVENT_FAILED, LEDGER_TRANSFER_LINKED_EVENT_CHAIN_OPEN},
        {LEDGER_TRANSFER_CREATED},
        {LEDGER_TRANSFER_CREATED},
        {LEDGER_ACCOUNT_CREATED},
        {LEDGER_ACCOUNT_CREATED},
        {LEDGER_ACCOUNT_CREATED}};
    for (int i = 0; i < 8; i++) {
        assert_int_equal(out[i].calls, 1);
        assert_int_equal(out[i].status, 0);
        assert_int_equal(out[i].size, sub[i].size / 8);
        for (uint32_t j = 0; j < sub[i].size / 128; j++)
            assert_int_equal(outcome_results(&out[i])[j].result, want[i][j]);
    }
    assert_int_equal(outcome_results(&out[4])[0].timestamp, clock + 1);
    client_close(c);
    fake_stop(f);
}

/* ---- Retries. ---- */

/* The one message of the last `count` log entries was the same message each time. */
static void expect_resent(fake_server_t *f, uint32_t from, uint32_t count) {
    fake_lock(f);
    assert_int_equal(f->log_count, from + count);
    for (uint32_t i = from + 1; i < from + count; i++) {
        assert_true(f->log[i].client_id == f->log[from].client_id);
        assert_int_equal(f->log[i].request_id, f->log[from].request_id);
    }
    fake_unlock(f);
}

static void test_drop_after_apply_resends(void **state) {
    (void)state;
    fake_server_t *f = fake_start();
    client_options_t o = {.backoff_min_ms = 1, .backoff_max_ms = 20};
    client_t *c = client_for(f, &o);
    create_accounts_1_2(c);
    client_stats_t before, after;
    client_stats(c, &before);
    uint32_t base = fake_log_count(f), n;
    atomic_store(&f->drop_count, 1);
    ledger_transfer_t t[2] = {transfer(30, 1, 2, 100, 0), transfer(31, 1, 2, 50, 0)};
    assert_int_equal(call(c, PROTO_OP_CREATE_TRANSFERS, t, sizeof t, &n, NULL), 0);
    assert_int_equal(n, 32);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(results()[i].result, LEDGER_TRANSFER_EXISTS);
        assert_int_equal(results()[i].timestamp, cell_transfer(f, t[i].id).timestamp);
    }
    assert_u128(cell_account(f, 1).debits_posted, 150); /* applied once, not twice */
    expect_resent(f, base, 2);
    client_stats(c, &after);
    assert_int_equal(after.messages, before.messages + 1);
    assert_int_equal(after.sends, before.sends + 2);
    assert_true(after.breaks >= before.breaks + 1);
    assert_true(after.connects >= before.connects + 1);
    client_close(c);
    fake_stop(f);
}

static void test_attempt_timeout_then_success(void **state) {
    (void)state;
    fake_server_t *f = fake_start();
    client_options_t o = {
        .attempt_timeout_ms = 100, .deadline_ms = 8000, .backoff_min_ms = 1, .backoff_max_ms = 20};
    client_t *c = client_for(f, &o);
    create_accounts_1_2(c);
    uint32_t base = fake_log_count(f), n;
    atomic_store(&f->delay_ms, 400); /* past the attempt timeout */
    atomic_store(&f->delay_count, 2);
    ledger_transfer_t t = transfer(40, 1, 2, 7, 0);
    assert_int_equal(call(c, PROTO_OP_CREATE_TRANSFERS, &t, sizeof t, &n, NULL), 0);
    assert_int_equal(results()[0].result, LEDGER_TRANSFER_EXISTS);
    assert_int_equal(results()[0].timestamp, cell_transfer(f, 40).timestamp);
    assert_u128(cell_account(f, 1).debits_posted, 7);
    expect_resent(f, base, 3);
    client_stats_t st;
    client_stats(c, &st);
    assert_true(st.breaks >= 2);
    assert_non_null(strstr(st.last_error, "no reply in time"));
    client_close(c);
    fake_stop(f);
}

static void test_cell_down_then_back(void **state) {
    (void)state;
    fake_server_t *f = fake_start();
    client_options_t o = {
        .attempt_timeout_ms = 100, .deadline_ms = 8000, .backoff_min_ms = 1, .backoff_max_ms = 20};
    client_t *c = client_for(f, &o);
    create_accounts_1_2(c);
    fake_set_listening(f, false);
    outcome_t out = {0};
    ledger_transfer_t t = transfer(60, 1, 2, 9, 0);
    assert_int_equal(client_submit(c, PROTO_OP_CREATE_TRANSFERS, &t, sizeof t, on_outcome, &out),
                     0);
    uv_sleep(200);
    assert_int_equal(out.calls, 0); /* still trying */
    client_stats_t st;
    client_stats(c, &st);
    assert_true(st.breaks >= 2);
    fake_set_listening(f, true);
    WAIT_UNTIL(out.calls == 1, WAIT_MS);
    assert_int_equal(out.calls, 1);
    assert_int_equal(out.status, 0);
    assert_int_equal(outcome_results(&out)[0].result, LEDGER_TRANSFER_CREATED);
    assert_u128(cell_account(f, 1).debits_posted, 9);
    client_close(c);
    fake_stop(f);
}

static void test_deadline_when_cell_gone(void **state) {
    (void)state;
    fake_server_t *f = fake_start();
    client_options_t o = {
        .attempt_timeout_ms = 100, .deadline_ms = 300, .backoff_min_ms = 5, .backoff_max_ms = 50};
    client_t *c = client_for(f, &o);
    fake_stop(f); /* nobody listens on that port any more */
    outcome_t out = {0};
    uint64_t t0 = uv_hrtime();
    submit_plug(c, &out);
    WAIT_UNTIL(out.calls == 1, WAIT_MS);
    uint64_t elapsed_ms = (uv_hrtime() - t0) / 1000000;
    assert_int_equal(out.calls, 1);
    assert_int_equal(out.status, CLIENT_ERR_TIMEOUT);
    assert_true(elapsed_ms >= 290 && elapsed_ms < 5000);
    uint32_t n;
    assert_int_equal(call(c, PROTO_OP_PING, NULL, 0, &n, NULL), CLIENT_ERR_TIMEOUT);
    client_stats_t st;
    client_stats(c, &st);
    assert_int_equal(st.timeouts, 2);
    assert_non_null(strstr(st.last_error, "connecting"));
    client_close(c);
}

static void test_deadline_when_cell_silent(void **state) {
    (void)state;
    fake_server_t *f = fake_start();
    client_options_t o = {.attempt_timeout_ms = 100, .deadline_ms = 300};
    client_t *c = client_for(f, &o);
    atomic_store(&f->gate, true); /* accepts, applies, never answers */
    outcome_t out = {0};
    assert_int_equal(client_submit(c, PROTO_OP_PING, NULL, 0, on_outcome, &out), 0);
    WAIT_UNTIL(out.calls == 1, WAIT_MS);
    assert_int_equal(out.calls, 1);
    assert_int_equal(out.status, CLIENT_ERR_TIMEOUT);
    assert_true(fake_log_count(f) >= 2); /* it was resent before the deadline */
    client_close(c);
    fake_stop(f);
}

static void test_corrupt_replies_break_connection(void **state) {
    (void)state;
    fake_server_t *f = fake_start();
    client_options_t o = {.backoff_min_ms = 1, .backoff_max_ms = 20};
    client_t *c = client_for(f, &o);
    create_accounts_1_2(c);
    for (int kind = FAKE_CORRUPT_BODY; kind <= FAKE_CORRUPT_TRAILING; kind++) {
        client_stats_t before, after;
        client_stats(c, &before);
        atomic_store(&f->corruption, kind);
        atomic_store(&f->corrupt_count, 1);
        ledger_transfer_t t = transfer(70 + (u128)kind, 1, 2, 1, 0);
        uint32_t n;
        assert_int_equal(call(c, PROTO_OP_CREATE_TRANSFERS, &t, sizeof t, &n, NULL), 0);
        assert_int_equal(results()[0].timestamp, cell_transfer(f, t.id).timestamp);
        /* Trailing bytes may arrive after the reply was taken: then it was `created`. */
        if (kind != FAKE_CORRUPT_TRAILING)
            assert_int_equal(results()[0].result, LEDGER_TRANSFER_EXISTS);
        WAIT_UNTIL((client_stats(c, &after), after.replies_invalid > before.replies_invalid),
                   WAIT_MS);
        printf("corruption %d: %s\n", kind, after.last_error);
        assert_int_equal(after.replies_invalid, before.replies_invalid + 1);
        assert_true(after.breaks > before.breaks);
    }
    atomic_store(&f->corruption, FAKE_CORRUPT_BODY);
    atomic_store(&f->corrupt_count, 1);
    u128 id = 2;
    uint32_t n;
    assert_int_equal(call(c, PROTO_OP_LOOKUP_ACCOUNTS, &id, sizeof id, &n, NULL), 0);
    assert_int_equal(n, 128);
    assert_u128(((const ledger_account_t *)reply)->id, 2);
    assert_u128(cell_account(f, 1).debits_posted, 6); /* six transfers of 1, each once */
    client_close(c);
    fake_stop(f);
}

static void test_busy_and_not_leader(void **state) {
    (void)state;
    fake_server_t *f = fake_start();
    client_options_t o = {.backoff_min_ms = 1, .backoff_max_ms = 20};
    client_t *c = client_for(f, &o);
    create_accounts_1_2(c);
    client_stats_t s0, s1, s2;
    client_stats(c, &s0);
    uint32_t base = fake_log_count(f), n;
    atomic_store(&f->busy_count, 1);
    ledger_transfer_t t = transfer(80, 1, 2, 3, 0);
    assert_int_equal(call(c, PROTO_OP_CREATE_TRANSFERS, &t, sizeof t, &n, NULL), 0);
    assert_int_equal(results()[0].result, LEDGER_TRANSFER_CREATED); /* busy applied nothing */
    expect_resent(f, base, 2);
    client_stats(c, &s1);
    assert_int_equal(s1.breaks, s0.breaks); /* busy: same connection */
    assert_int_equal(s1.connects, s0.connects);
    atomic_store(&f->not_leader_count, 1);
    u128 id = 1;
    assert_int_equal(call(c, PROTO_OP_LOOKUP_ACCOUNTS, &id, sizeof id, &n, NULL), 0);
    assert_int_equal(n, 128);
    expect_resent(f, base + 2, 2);
    client_stats(c, &s2);
    assert_int_equal(s2.breaks, s1.breaks + 1); /* not_leader: another connection */
    assert_int_equal(s2.connects, s1.connects + 1);
    assert_u128(cell_account(f, 1).debits_posted, 3);
    client_close(c);
    fake_stop(f);
}

static void test_failover_across_addresses(void **state) {
    (void)state;
    fake_server_t *dead = fake_start(), *follower = fake_start(), *leader = fake_start();
    uint16_t dead_port = dead->port;
    fake_stop(dead);
    atomic_store(&follower->always_not_leader, true);
    char addr[96];
    snprintf(addr, sizeof addr, "127.0.0.1:%u,localhost:%u,127.0.0.1:%u", dead_port, follower->port,
             leader->port);
    client_options_t o = {.backoff_min_ms = 1, .backoff_max_ms = 20};
    client_t *c = NULL;
    assert_int_equal(client_open(&c, addr, &o), 0);
    create_accounts_1_2(c);
    ledger_stats_t ls;
    fake_lock(leader);
    ledger_stats(cell_ledger(leader->cell), &ls);
    fake_unlock(leader);
    assert_int_equal(ls.accounts, 2);
    assert_true(fake_log_count(follower) >= 1);
    /* Leadership moves to the follower: the client must find it. */
    atomic_store(&leader->always_not_leader, true);
    atomic_store(&follower->always_not_leader, false);
    uint32_t asked = fake_log_count(follower), n;
    u128 id = 1;
    assert_int_equal(call(c, PROTO_OP_LOOKUP_ACCOUNTS, &id, sizeof id, &n, NULL), 0);
    assert_int_equal(n, 0); /* the follower's own (empty) cell answered */
    assert_int_equal(fake_log_count(follower), asked + 1);
    client_close(c);
    fake_stop(follower);
    fake_stop(leader);
}

/* A round of the addresses does not wait: a dead one and a follower cost nothing, while any
 * backoff (15 to 30 s) would outlast the request's deadline. */
static void test_round_of_addresses_without_waiting(void **state) {
    (void)state;
    fake_server_t *dead = fake_start(), *follower = fake_start(), *leader = fake_start();
    uint16_t dead_port = dead->port;
    fake_stop(dead);
    atomic_store(&follower->always_not_leader, true);
    char addr[96];
    snprintf(addr, sizeof addr, "127.0.0.1:%u,127.0.0.1:%u,127.0.0.1:%u", dead_port, follower->port,
             leader->port);
    client_options_t o = {.deadline_ms = 5000, .backoff_min_ms = 30000, .backoff_max_ms = 30000};
    client_t *c = NULL;
    assert_int_equal(client_open(&c, addr, &o), 0);
    create_accounts_1_2(c);
    client_stats_t st;
    client_stats(c, &st);
    assert_int_equal(st.breaks, 2); /* refused by the dead one, not_leader from the follower */
    client_close(c);
    fake_stop(follower);
    fake_stop(leader);
}

/* Sessions sitting out a long backoff after a whole round of not_leader go to a new leader as
 * soon as another session finds it, long before their backoff (15 to 30 s) ends. */
static void test_sessions_follow_a_found_leader(void **state) {
    (void)state;
    fake_server_t *a = fake_start(), *b = fake_start();
    atomic_store(&a->always_not_leader, true);
    atomic_store(&b->always_not_leader, true);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u,127.0.0.1:%u", a->port, b->port);
    client_options_t o = {
        .sessions = 3, .deadline_ms = 60000, .backoff_min_ms = 30000, .backoff_max_ms = 30000};
    client_t *c = NULL;
    assert_int_equal(client_open(&c, addr, &o), 0);
    WAIT_UNTIL(atomic_load(&a->connections) == 3, WAIT_MS);
    assert_int_equal(atomic_load(&a->connections), 3);
    outcome_t out[3] = {0};
    submit_plug(c, &out[0]);
    submit_plug(c, &out[1]);
    /* Two sessions try a, then b at once, then wait; the third stays idle at a. */
    client_stats_t st;
    WAIT_UNTIL((client_stats(c, &st), st.breaks == 4), WAIT_MS);
    assert_int_equal(st.breaks, 4);
    assert_int_equal(fake_log_count(b), 2);
    atomic_store(&b->always_not_leader, false);
    /* The idle one gets the next request: not_leader at a, then b answers at once. */
    submit_plug(c, &out[2]);
    WAIT_UNTIL(out[0].calls + out[1].calls + out[2].calls == 3, WAIT_MS);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(out[i].calls, 1);
        assert_int_equal(out[i].status, PROTO_STATUS_OK);
    }
    assert_int_equal(fake_log_count(b), 5);
    client_close(c);
    fake_stop(a);
    fake_stop(b);
}

static void test_sessions_keep_k_in_flight(void **state) {
    (void)state;
    fake_server_t *f = fake_start();
    client_options_t o = {.sessions = 4};
    client_t *c = client_for(f, &o);
    outcome_t out[5] = {0};
    atomic_store(&f->gate, true);
    for (int i = 0; i < 5; i++) submit_plug(c, &out[i]);
    WAIT_UNTIL(fake_log_count(f) == 4, WAIT_MS);
    uv_sleep(30);
    assert_int_equal(fake_log_count(f), 4); /* four in flight, the fifth waits */
    fake_lock(f);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < i; j++) assert_true(f->log[i].client_id != f->log[j].client_id);
    fake_unlock(f);
    fake_open_gate(f);
    WAIT_UNTIL(out[0].calls + out[1].calls + out[2].calls + out[3].calls + out[4].calls == 5,
               WAIT_MS);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(out[i].calls, 1);
        assert_int_equal(out[i].status, 0);
    }
    client_close(c);
    fake_stop(f);
}

static void test_close_with_requests_in_flight(void **state) {
    (void)state;
    enum { N = 40 };
    fake_server_t *f = fake_start();
    client_options_t o = {.sessions = 2};
    client_t *c = client_for(f, &o);
    static outcome_t out[N];
    static ledger_transfer_t t[N];
    memset(out, 0, sizeof out);
    atomic_store(&f->gate, true);
    for (int i = 0; i < N; i++) {
        t[i] = transfer(90 + (u128)i, 1, 2, 1, 0);
        if (i % 3 == 0)
            submit_plug(c, &out[i]);
        else
            assert_int_equal(client_submit(c, PROTO_OP_CREATE_TRANSFERS, &t[i], sizeof t[i],
                                           on_outcome, &out[i]),
                             0);
    }
    out[N - 1].resubmit = c;
    WAIT_UNTIL(fake_log_count(f) == 2, WAIT_MS);
    assert_int_equal(fake_log_count(f), 2);
    client_close(c);
    for (int i = 0; i < N; i++) {
        assert_int_equal(out[i].calls, 1);
        assert_int_equal(out[i].status, CLIENT_ERR_CLOSED);
    }
    assert_int_equal(out[N - 1].resubmit_rc, CLIENT_ERR_CLOSED);
    fake_stop(f);
}

static void test_open_rejects_bad_addresses(void **state) {
    (void)state;
    const char *bad[] = {"",
                         "127.0.0.1",
                         "127.0.0.1:",
                         ":80",
                         "127.0.0.1:0",
                         "127.0.0.1:65536",
                         "example.com:80",
                         "1.2.3:80",
                         "127.0.0.1:80,",
                         "127.0.0.1:8x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        client_t *c = NULL;
        assert_int_equal(client_open(&c, bad[i], NULL), CLIENT_ERR_ADDRESS);
        assert_null(c);
    }
    client_options_t o = {.sessions = CLIENT_SESSIONS_MAX + 1};
    client_t *c = NULL;
    assert_int_equal(client_open(&c, "127.0.0.1:1", &o), CLIENT_ERR_INVALID);
}

/* `test_client --serve [--test-ops]`: the fake cell as a process, for test_client_cmd.sh; test
 * ops are refused without --test-ops, as by a node. Prints its port, then serves until stdin
 * closes (at most 10 minutes). */
static int serve(int argc, char **argv) {
    fake_server_t *f = fake_start();
    atomic_store(&f->test_ops, argc > 2 && !strcmp(argv[2], "--test-ops"));
    printf("%u\n", f->port);
    fflush(stdout);
    struct pollfd in = {.fd = 0, .events = POLLIN};
    char b[64];
    for (int i = 0; i < 600 && poll(&in, 1, 1000) >= 0; i++)
        if ((in.revents & (POLLIN | POLLHUP)) && read(0, b, sizeof b) <= 0) break;
    fake_stop(f);
    return 0;
}

/* ---- A client on the caller's loop (client_options_t.loop) ---- */

typedef struct chain {
    client_t *c;
    uv_loop_t *loop;
    pay_request_t req;
    uint32_t left, answered, bad;
    bool closed;
} chain_t;

/* One request at a time, the next submitted from the callback of the one before: each reply
 * may come before the write's callback has run (the fake cell answers at once), which the
 * client must take as the answer it is, not as stray bytes (a break and a resend). */
static void chain_next(chain_t *ch);

static void on_chain(void *ctx, int32_t status, uint64_t timestamp, const void *answer,
                     uint32_t size) {
    (void)timestamp;
    chain_t *ch = ctx;
    pay_object_t o;
    ch->answered++;
    if (status != 0 || size != sizeof o) {
        ch->bad++;
    } else {
        memcpy(&o, answer, sizeof o);
        ch->bad += o.id != ch->req.idem_key || o.code != PAY_CREATED || o.replayed;
    }
    if (ch->left > 0) chain_next(ch);
}

static void chain_next(chain_t *ch) {
    ch->left--;
    ch->req.idem_key++; /* a new key each time: a resent message would come back replayed */
    assert_int_equal(client_submit(ch->c, PROTO_OP_PAY, &ch->req, sizeof ch->req, on_chain, ch), 0);
}

static void test_shared_loop(void **state) {
    (void)state;
    fake_server_t *f = fake_start();
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    client_options_t o = {.loop = &loop, .deadline_ms = 60000};
    chain_t ch = {.loop = &loop, .left = 3000};
    ch.c = client_for(f, &o);
    ch.req = (pay_request_t){.kind = PAY_KIND_USER, .uid = 7, .idem_key = (u128)1 << 100};
    chain_next(&ch);
    while (ch.answered < 3000 && uv_run(&loop, UV_RUN_ONCE)) {
    }
    assert_int_equal(ch.answered, 3000);
    assert_int_equal(ch.bad, 0);
    client_stats_t st;
    client_stats(ch.c, &st);
    assert_int_equal(st.breaks, 0); /* no reply was taken for stray bytes */
    assert_int_equal(st.sends, st.messages);
    /* A request still waiting when the client closes is answered CLOSED, on this loop, and
     * the client is freed once the loop has run its closes. */
    ch.left = 1; /* this one only */
    chain_next(&ch);
    client_close(ch.c);
    assert_int_equal(ch.answered, 3001);
    assert_int_equal(ch.bad, 1);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    fake_stop(f);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--serve")) return serve(argc, argv);
    const char *env = getenv("CLIENT_TEST_SEED");
    seed = env ? strtoull(env, NULL, 10) : uv_hrtime();
    printf("test_client: seed %llu (set CLIENT_TEST_SEED to repeat)\n", (unsigned long long)seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_rejects_bad_addresses),
        cmocka_unit_test(test_shared_loop),
        cmocka_unit_test(test_every_op_round_trip),
        cmocka_unit_test(test_invalid_and_full_submissions),
        cmocka_unit_test(test_concurrent_submissions_merge),
        cmocka_unit_test(test_linked_and_imported_not_merged),
        cmocka_unit_test(test_pay_submissions_merge),
        cmocka_unit_test(test_pay_merge_respects_message_size),
        cmocka_unit_test(test_drop_after_apply_resends),
        cmocka_unit_test(test_attempt_timeout_then_success),
        cmocka_unit_test(test_cell_down_then_back),
        cmocka_unit_test(test_deadline_when_cell_gone),
        cmocka_unit_test(test_deadline_when_cell_silent),
        cmocka_unit_test(test_corrupt_replies_break_connection),
        cmocka_unit_test(test_busy_and_not_leader),
        cmocka_unit_test(test_failover_across_addresses),
        cmocka_unit_test(test_round_of_addresses_without_waiting),
        cmocka_unit_test(test_sessions_follow_a_found_leader),
        cmocka_unit_test(test_sessions_keep_k_in_flight),
        cmocka_unit_test(test_close_with_requests_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

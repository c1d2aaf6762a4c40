/* node_start() / node_stop(): several nodes in one process, each on its own thread and loop,
 * listening on ephemeral ports, leading their one-voter groups, stopping cleanly and
 * restarting on the same data; a start that fails says why and leaves the others alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <dirent.h>

#include "base/constants.h"
#include "client/client.h"
#include "proto/proto.h"
#include "ledger/ledger.h"
#include "repl/node.h"

typedef struct fixture {
    char root[64];
    char dirs[3][128];
    char names[3][32];
} fixture_t;

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof *f);
    snprintf(f->root, sizeof f->root, "/tmp/cellpay-node-start-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    for (int i = 0; i < 3; i++) {
        snprintf(f->dirs[i], sizeof f->dirs[i], "%s/cell-%d", f->root, i + 1);
        snprintf(f->names[i], sizeof f->names[i], "cellpay node cell %d", i + 1);
    }
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->root);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static node_config_t config(fixture_t *f, int i) {
    cp_zones_t zones = {0};
    for (uint32_t z = (uint32_t)i * 50; z < (uint32_t)i * 50 + 50 && z < CP_ZONES; z++)
        cp_zones_add(&zones, z);
    return (node_config_t){
        .name = f->names[i],
        .data_dir = f->dirs[i],
        .listen = "127.0.0.1:0",
        .cell_id = (uint64_t)i + 1,
        .tick_ms = 10,
        .election_ticks = 15,
        .heartbeat_ticks = 3,
        .cell.ledger = {.accounts_max = 1024, .transfers_max = 4096},
        .cell.zones = zones,
        .zones_given = true,
        .snapshot_log_bytes = 64ull << 20,
    };
}

/* Polls the node's status until it leads (at most 10 s); returns its reply. */
static proto_status_reply_t wait_leader(const node_t *n) {
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)node_port(n));
    proto_status_reply_t st = {0};
    for (int tries = 0; tries < 500; tries++) {
        uint32_t size = 0;
        int32_t rc = client_call_once(addr, PROTO_OP_STATUS, NULL, 0, &st, sizeof st, &size, 1000);
        if (rc == PROTO_STATUS_OK && size == sizeof st && st.role == PROTO_ROLE_LEADER) return st;
        struct timespec pause = {.tv_nsec = 20000000};
        nanosleep(&pause, NULL);
    }
    fail_msg("node on %s does not lead", addr);
    return st;
}

static void two_nodes_serve_stop_and_restart(void **state) {
    fixture_t *f = *state;
    char err[256];
    node_config_t c0 = config(f, 0), c1 = config(f, 1);
    node_t *a = node_start(&c0, err, sizeof err);
    assert_non_null(a);
    node_t *b = node_start(&c1, err, sizeof err);
    assert_non_null(b);
    assert_int_not_equal(node_port(a), 0);
    assert_int_not_equal(node_port(b), 0);
    assert_int_not_equal(node_port(a), node_port(b));
    assert_int_equal(wait_leader(a).cell, 1);
    assert_int_equal(wait_leader(b).cell, 2);
    assert_int_equal(node_stop(b), 0);
    assert_int_equal(wait_leader(a).cell, 1); /* the other one is not disturbed */
    assert_int_equal(node_stop(a), 0);

    a = node_start(&c0, err, sizeof err);
    assert_non_null(a);
    assert_int_equal(wait_leader(a).cell, 1);
    assert_int_equal(node_stop(a), 0);
}

static void a_failed_start_says_why(void **state) {
    fixture_t *f = *state;
    char err[256] = "";
    node_config_t c0 = config(f, 0);
    node_t *a = node_start(&c0, err, sizeof err);
    assert_non_null(a);

    /* The same data directory twice: the log is locked by the first. */
    node_t *twin = node_start(&c0, err, sizeof err);
    assert_null(twin);
    assert_true(strlen(err) > 0);

    /* Other zones than those the directory was created with. */
    node_config_t other = c0;
    other.cell.zones = (cp_zones_t){0};
    cp_zones_add(&other.cell.zones, 99);
    err[0] = '\0';
    assert_null(node_start(&other, err, sizeof err));
    assert_non_null(strstr(err, "zones"));

    /* A listen address that does not parse. */
    node_config_t bad = config(f, 2);
    bad.listen = "nowhere";
    err[0] = '\0';
    assert_null(node_start(&bad, err, sizeof err));
    assert_non_null(strstr(err, "--listen"));

    assert_int_equal(wait_leader(a).cell, 1); /* still serving */
    assert_int_equal(node_stop(a), 0);
}

#define ACCOUNTS 20u

static void addr_of(const node_t *n, char *out, size_t size) {
    snprintf(out, size, "127.0.0.1:%u", (unsigned)node_port(n));
}

/* Creates account k of uid (one request: one log entry and sync). */
static void create_account(const node_t *n, uint64_t uid, uint32_t k) {
    char addr[32];
    addr_of(n, addr, sizeof addr);
    ledger_account_t a = {.id = ((u128)uid << 64) | (k + 1), .ledger = 1, .code = 1};
    ledger_result_t r[1];
    uint32_t size = 0;
    int32_t rc =
        client_call_once(addr, PROTO_OP_CREATE_ACCOUNTS, &a, sizeof a, r, sizeof r, &size, 5000);
    assert_int_equal(rc, PROTO_STATUS_OK);
}

static uint32_t lookup_count(const node_t *n, uint64_t uid) {
    char addr[32];
    addr_of(n, addr, sizeof addr);
    u128 ids[ACCOUNTS];
    for (uint32_t k = 0; k < ACCOUNTS; k++) ids[k] = ((u128)uid << 64) | (k + 1);
    static ledger_account_t found[ACCOUNTS];
    uint32_t size = 0;
    int32_t rc = client_call_once(addr, PROTO_OP_LOOKUP_ACCOUNTS, ids, sizeof ids, found,
                                  sizeof found, &size, 5000);
    assert_int_equal(rc, PROTO_STATUS_OK);
    return size / (uint32_t)sizeof found[0];
}

static bool has_snapshot(const char *dir) {
    DIR *d = opendir(dir);
    bool found = false;
    for (struct dirent *e; d && (e = readdir(d));)
        found = found || (strncmp(e->d_name, "snap-", 5) == 0 && strstr(e->d_name, ".snap"));
    if (d) closedir(d);
    return found;
}

/* Snapshots are written by a child forked from the node's thread while other nodes' threads
 * run: each node's child writes its own cell, the parent reaps only its own child, and the
 * snapshot is one a restart recovers from. */
static void snapshots_with_nodes_on_threads(void **state) {
    fixture_t *f = *state;
    char err[256];
    node_config_t c[2] = {config(f, 0), config(f, 1)};
    node_t *n[2];
    for (int i = 0; i < 2; i++) {
        c[i].snapshot_log_bytes = 1; /* a snapshot after every sync */
        n[i] = node_start(&c[i], err, sizeof err);
        assert_non_null(n[i]);
        wait_leader(n[i]);
    }
    const uint64_t uids[2] = {0, 500}; /* zones 0 and 50: cell 1's and cell 2's */
    /* Interleaved: one node's snapshot child runs while the other applies and forks. */
    for (uint32_t k = 0; k < ACCOUNTS; k++)
        for (int i = 0; i < 2; i++) create_account(n[i], uids[i], k);
    for (int i = 0; i < 2; i++) {
        int tries = 0;
        while (!has_snapshot(f->dirs[i]) && tries++ < 500) {
            struct timespec pause = {.tv_nsec = 20000000};
            nanosleep(&pause, NULL);
        }
        assert_true(has_snapshot(f->dirs[i]));
        assert_true(wait_leader(n[i]).snapshot_index > 0);
    }
    for (int i = 0; i < 2; i++) assert_int_equal(node_stop(n[i]), 0);
    for (int i = 0; i < 2; i++) {
        n[i] = node_start(&c[i], err, sizeof err);
        assert_non_null(n[i]);
        wait_leader(n[i]);
        assert_int_equal(lookup_count(n[i], uids[i]), ACCOUNTS);
        assert_int_equal(lookup_count(n[i], uids[1 - i]), 0);
    }
    for (int i = 0; i < 2; i++) assert_int_equal(node_stop(n[i]), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(two_nodes_serve_stop_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(a_failed_start_says_why, setup, teardown),
        cmocka_unit_test_setup_teardown(snapshots_with_nodes_on_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

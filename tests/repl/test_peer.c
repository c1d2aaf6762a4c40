/* The replicas' network on loopback: three nets in one loop exchange Raft messages in order;
 * a peer that is down loses messages and is reconnected when it comes back; a bad frame
 * closes only its connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "node_proc.h"
#include "repl/peer.h"
#include "repl/raft_wire.h"

#define N 3

typedef struct got {
    uint32_t count;
    uint64_t last_index; /* messages carry a sequence in index */
    bool in_order;
    uint32_t entry_bytes;
} got_t;

static got_t got[N + 1];
static peer_addr_t addrs[N];

static void recv_cb(void *ctx, const rf_msg_t *m) {
    got_t *g = &got[(uintptr_t)ctx];
    if (m->h.index != g->last_index + 1) g->in_order = false;
    g->last_index = m->h.index;
    g->count++;
    for (uint32_t i = 0; i < m->h.entry_count; i++) g->entry_bytes += m->entries[i].size;
}

static void run_for(uv_loop_t *loop, int ms) {
    for (int i = 0; i < ms; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

static peer_net_t *make(uv_loop_t *loop, uint32_t id) {
    char err[256];
    peer_net_t *n =
        peer_net_create(loop, 42, id, addrs, N, recv_cb, (void *)(uintptr_t)id, err, sizeof err);
    if (!n) fprintf(stderr, "%s\n", err);
    assert_non_null(n);
    return n;
}

static rf_msg_t msg(uint32_t from, uint32_t to, uint64_t seq, rf_entry_t *e, uint32_t ne) {
    rf_msg_t m = {.h = {.term = 1,
                        .index = seq,
                        .from = from,
                        .to = to,
                        .type = ne ? RF_MSG_APP : RF_MSG_HEARTBEAT,
                        .entry_count = ne},
                  .entries = e};
    return m;
}

static void test_delivery_and_reconnect(void **state) {
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    memset(got, 0, sizeof got);
    for (int i = 0; i < N; i++) {
        addrs[i].id = (uint32_t)i + 1;
        snprintf(addrs[i].addr, sizeof addrs[i].addr, "127.0.0.1:%d", np_free_port());
        got[i + 1].in_order = true;
    }
    peer_net_t *a = make(&loop, 1), *b = make(&loop, 2), *c = make(&loop, 3);
    run_for(&loop, 200); /* connections come up */
    static char big[300000];
    memset(big, 7, sizeof big);
    rf_entry_t e[2] = {{1, 5, "hello", 0}, {1, sizeof big, big, 0}};
    for (uint64_t s = 1; s <= 500; s++) {
        rf_msg_t m = msg(1, 2, s, e, s % 50 == 0 ? 2 : 0);
        peer_net_send(a, &m);
    }
    run_for(&loop, 500);
    assert_int_equal(got[2].count, 500);
    assert_true(got[2].in_order);
    assert_int_equal(got[2].entry_bytes, 10 * (5 + sizeof big));

    /* Node 3 goes away: what is sent to it is lost, not queued forever. */
    peer_net_close(c);
    run_for(&loop, 100);
    peer_stats_t st;
    peer_net_stats(a, &st);
    uint64_t dropped = st.dropped;
    for (uint64_t s = 1; s <= 10; s++) {
        rf_msg_t m = msg(1, 3, s, NULL, 0);
        peer_net_send(a, &m);
    }
    run_for(&loop, 100);
    peer_net_stats(a, &st);
    assert_true(st.dropped > dropped);
    /* It comes back on the same address: node 1 reconnects by itself and delivery resumes. */
    memset(&got[3], 0, sizeof got[3]);
    got[3].in_order = true;
    c = make(&loop, 3);
    run_for(&loop, 1500);
    got[3].last_index = 0;
    for (uint64_t s = 1; s <= 20; s++) {
        rf_msg_t m = msg(1, 3, s, NULL, 0);
        peer_net_send(a, &m);
    }
    run_for(&loop, 300);
    assert_int_equal(got[3].count, 20);
    assert_true(got[3].in_order);

    /* Garbage on a peer port closes that connection only; node 2 still hears node 1. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(strchr(addrs[1].addr, ':') + 1))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char junk[200];
    memset(junk, 0x41, sizeof junk);
    assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    run_for(&loop, 100);
    char r;
    assert_int_equal(read(fd, &r, 1), 0); /* closed by node 2 */
    close(fd);
    peer_net_stats(b, &st);
    assert_int_equal(st.bad_frames, 1);
    uint32_t before = got[2].count;
    got[2].last_index = 0;
    rf_msg_t m = msg(1, 2, 1, NULL, 0);
    peer_net_send(a, &m);
    run_for(&loop, 100);
    assert_int_equal(got[2].count, before + 1);

    peer_net_close(a);
    peer_net_close(b);
    peer_net_close(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0); /* every handle closed */
}

static void test_parse_list(void **state) {
    (void)state;
    peer_addr_t p[RF_NODES_MAX];
    char err[256];
    assert_int_equal(peer_parse_list("1=127.0.0.1:7001,2=localhost:7002,3=127.0.0.1:7003", p,
                                     RF_NODES_MAX, err, sizeof err),
                     3);
    assert_int_equal(p[1].id, 2);
    assert_string_equal(p[1].addr, "localhost:7002");
    const char *bad[] = {"",
                         "1=127.0.0.1",
                         "0=127.0.0.1:1",
                         "1=127.0.0.1:1,1=127.0.0.1:2",
                         "x=127.0.0.1:1",
                         "1=127.0.0.1:70000",
                         "1=example.com:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(peer_parse_list(bad[i], p, RF_NODES_MAX, err, sizeof err), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_list),
        cmocka_unit_test(test_delivery_and_reconnect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

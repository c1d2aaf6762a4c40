/* Network faults on a cell of three replicas as real processes, every peer link through its
 * own proxy (link_proxy.h), under a transfer load from the client library:
 *   (c) the leader is partitioned from the other two (its four links cut): it must step down
 *       by itself (check-quorum), the other two elect a leader and the clients resume; when
 *       the links heal, the old leader rejoins as a follower without deposing the new one
 *       (pre-vote) and catches up;
 *   (d) a slow follower: first every frame to it is delayed 100-300 ms, then it is SIGSTOPped
 *       and SIGCONTed again and again; the other two carry the load and it catches up.
 * After each: every acknowledged transfer is there with its original timestamp, balances equal
 * the sum of the transfers, and every replica reaches the same applied index with the same
 * state hash (cluster_proc.h).
 *
 * usage: proc_cluster_net CELLPAY_BINARY   (CELLPAY_SEED=N replays the test's choices) */
#include "cluster_proc.h"

static void cut_replica(int x, bool cut) {
    for (int j = 0; j < CL_REPLICAS; j++) {
        if (j == x) continue;
        lp_cut(&cl.net, cl.link[x][j], cut);
        lp_cut(&cl.net, cl.link[j][x], cut);
    }
    lp_sync(&cl.net);
}

/* What a failure report needs: every replica's status and every link's counters. */
static void dump_state(void) {
    proto_status_reply_t s;
    for (int k = 0; k < CL_REPLICAS; k++) {
        int32_t st = cl_status(k, &s);
        if (st == PROTO_STATUS_OK)
            cl_print_status(k, &s);
        else
            printf("  replica %d: %s\n", k + 1, client_status_str(st));
    }
    for (int a = 0; a < CL_REPLICAS; a++) {
        for (int b = 0; b < CL_REPLICAS; b++) {
            if (a == b) continue;
            lp_link_t *l = &cl.net.links[cl.link[a][b]];
            printf("  link %d->%d: %s, %lu bytes, %lu connections, %lu refused\n", a + 1, b + 1,
                   atomic_load(&l->cut) ? "cut" : "up", atomic_load(&l->bytes),
                   atomic_load(&l->connections), atomic_load(&l->refused));
        }
    }
}

/* Waits until replica i answers status with `pred` true; returns the ms it took. */
static uint64_t wait_status(int i, bool (*pred)(const proto_status_reply_t *, const void *),
                            const void *arg, uint64_t wait_ms, const char *what,
                            proto_status_reply_t *out) {
    uint64_t t0 = np_now_ms();
    proto_status_reply_t s;
    for (;;) {
        if (cl_status(i, &s) == PROTO_STATUS_OK && pred(&s, arg)) break;
        if (np_now_ms() - t0 > wait_ms) {
            dump_state();
            CL_FAIL("replica %d: %s within %" PRIu64 " ms", i + 1, what, wait_ms);
        }
        np_sleep_ms(5);
    }
    if (out) *out = s;
    return np_now_ms() - t0;
}

static bool not_leader(const proto_status_reply_t *s, const void *arg) {
    (void)arg;
    return s->role != PROTO_ROLE_LEADER;
}

/* A follower of the given leader status' term and id that has applied its commit index. */
static bool follows(const proto_status_reply_t *s, const void *arg) {
    const proto_status_reply_t *l = arg;
    return s->role == PROTO_ROLE_FOLLOWER && s->term == l->term && s->leader_id == l->node_id &&
           s->applied_index >= l->commit_index;
}

/* (c) */
static void partition_leader(void) {
    printf("(c) partition the leader from the other two under load\n");
    cl_load_start();
    cl_wait_acks(200, 10000, "load before the partition");
    proto_status_reply_t old, now, fresh;
    int leader = cl_leader(5000, &old);
    if (leader < 0) CL_FAIL("no leader before the partition");
    cut_replica(leader, true);
    uint64_t t0 = np_now_ms();
    uint64_t step_down = wait_status(leader, not_leader, NULL, 5000,
                                     "the partitioned leader did not step down", &now);
    /* A new leader among the others, in a newer term. */
    int next = -1;
    while (next < 0 || next == leader || fresh.term <= old.term) {
        if (np_now_ms() - t0 > 10000) CL_FAIL("no new leader among the other two in 10 s");
        next = cl_leader(100, &fresh);
        np_sleep_ms(5);
    }
    uint64_t elected = np_now_ms() - t0;
    cl_wait_acks(300, 20000, "load after the partition");
    uint64_t resumed = np_now_ms() - t0;
    /* Held apart a while: it must not lead again, nor (pre-vote) raise its term. */
    np_sleep_ms(500 + prng_below(&cl.rng, 1000));
    proto_status_reply_t iso;
    if (cl_status(leader, &iso) != PROTO_STATUS_OK) CL_FAIL("partitioned replica went silent");
    if (iso.role == PROTO_ROLE_LEADER) CL_FAIL("the partitioned replica leads again");
    printf("  replica %d (leader, term %" PRIu64 ") cut off: stepped down after %" PRIu64
           " ms; replica %d elected in term %" PRIu64 " after %" PRIu64
           " ms; clients resumed (300 acks) after %" PRIu64 " ms; the isolated replica is a %s "
           "in term %" PRIu64 "\n",
           leader + 1, old.term, step_down, next + 1, fresh.term, elected, resumed,
           iso.role == PROTO_ROLE_FOLLOWER ? "follower" : "pre-candidate", iso.term);
    if (iso.term != old.term)
        CL_FAIL("the isolated replica's term moved from %" PRIu64 " to %" PRIu64
                " (pre-vote should keep it)",
                old.term, iso.term);
    unsigned long during = atomic_load(&cl.acked);
    cut_replica(leader, false);
    uint64_t t1 = np_now_ms();
    proto_status_reply_t ls;
    if (cl_leader(5000, &ls) < 0) CL_FAIL("no leader after healing");
    wait_status(leader, follows, &ls, 10000, "did not rejoin as a caught-up follower", NULL);
    uint64_t rejoined = np_now_ms() - t1;
    cl_wait_acks(200, 10000, "load after healing");
    proto_status_reply_t after;
    int still = cl_leader(5000, &after);
    cl_load_stop();
    printf("  healed after %lu acknowledged: replica %d rejoined as a follower of replica %d "
           "(term %" PRIu64 ") and caught up within %" PRIu64
           " ms of healing; replica %d leads in term "
           "%" PRIu64 " after healing\n",
           during, leader + 1, ls.node_id, ls.term, rejoined, still + 1, after.term);
    if (still != next || after.term != fresh.term)
        CL_FAIL("the rejoining replica disrupted the new leader (replica %d term %" PRIu64
                " -> replica %d term %" PRIu64 ")",
                next + 1, fresh.term, still + 1, after.term);
    cl_verify("after the partition healed");
    cl_converge("after the partition healed", 20000);
}

/* (d) */
static void slow_follower(void) {
    printf("(d) a slow follower under load\n");
    proto_status_reply_t ls;
    int leader = cl_leader(5000, &ls);
    if (leader < 0) CL_FAIL("no leader");
    int f = (leader + 1 + (int)prng_below(&cl.rng, CL_REPLICAS - 1)) % CL_REPLICAS;
    cl_load_start();
    cl_wait_acks(200, 10000, "load before slowing a follower");
    for (int j = 0; j < CL_REPLICAS; j++)
        if (j != f) lp_delay(&cl.net, cl.link[j][f], 100, 300);
    unsigned long a0 = atomic_load(&cl.acked);
    uint64_t t0 = np_now_ms();
    uint64_t lag_max = 0;
    proto_status_reply_t s, l;
    while (np_now_ms() - t0 < 2000) {
        np_sleep_ms(100);
        if (cl_status(f, &s) == PROTO_STATUS_OK && cl_leader(1000, &l) >= 0 &&
            l.commit_index > s.applied_index && l.commit_index - s.applied_index > lag_max)
            lag_max = l.commit_index - s.applied_index;
    }
    unsigned long delayed = atomic_load(&cl.acked) - a0;
    for (int j = 0; j < CL_REPLICAS; j++)
        if (j != f) lp_delay(&cl.net, cl.link[j][f], 0, 0);
    if (delayed < 300) CL_FAIL("only %lu acknowledged in 2 s with a slow follower", delayed);
    if (lag_max == 0) CL_FAIL("the delayed follower never lagged: the delay did not act");
    printf("  frames to replica %d delayed 100-300 ms for 2 s: %lu acknowledged meanwhile; it "
           "lagged the leader's commit by up to %" PRIu64 " entries\n",
           f + 1, delayed, lag_max);

    unsigned long a1 = atomic_load(&cl.acked);
    uint64_t stopped_ms = 0, t1 = np_now_ms();
    int stops = 5;
    for (int k = 0; k < stops; k++) {
        uint64_t stop = 100 + prng_below(&cl.rng, 400), run = 50 + prng_below(&cl.rng, 300);
        kill(cl.r[f].np.pid, SIGSTOP);
        np_sleep_ms(stop);
        kill(cl.r[f].np.pid, SIGCONT);
        np_sleep_ms(run);
        stopped_ms += stop;
    }
    unsigned long paused = atomic_load(&cl.acked) - a1;
    if (paused < 300) CL_FAIL("only %lu acknowledged while a follower was stopped", paused);
    cl_wait_acks(200, 10000, "load after the slow follower");
    cl_load_stop();
    proto_status_reply_t end;
    int leader_end = cl_leader(5000, &end);
    printf("  replica %d SIGSTOPped %d times (%" PRIu64 " ms of %" PRIu64
           " ms): %lu acknowledged meanwhile; replica %d leads in term %" PRIu64
           " (was replica %d, term %" PRIu64 ")\n",
           f + 1, stops, stopped_ms, np_now_ms() - t1, paused, leader_end + 1, end.term, leader + 1,
           ls.term);
    cl_verify("after the slow follower");
    cl_converge("after the slow follower", 20000);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: proc_cluster_net CELLPAY_BINARY\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    cl_init(argv[1], true, 240);
    for (int i = 0; i < CL_REPLICAS; i++) cl_start(i);
    uint64_t t0 = np_now_ms();
    cl_open_client();
    partition_leader();
    slow_follower();
    printf("%lu transfers acknowledged (%lu answered `exists` after a retry), %lu calls gave up; "
           "%" PRIu64 " ms\n",
           atomic_load(&cl.acked), atomic_load(&cl.acked_exists), atomic_load(&cl.call_errors),
           np_now_ms() - t0);
    cl_finish();
    printf("cluster network faults: 2 passed, 0 failed\n");
    return 0;
}

/* Crash faults on a cell of three replicas as real processes, under a transfer load from the
 * client library:
 *   (a) a follower is SIGKILLed, the other two go on, the follower restarts and catches up
 *       from the leader's log;
 *   (b) all three are SIGKILLed at once and restarted; the cell elects a leader again and the
 *       clients resume by themselves.
 * After each round: every acknowledged transfer is there with its original timestamp,
 * balances equal the sum of the transfers (nothing applied twice), and once the load stops
 * every replica reaches the same applied index with the same state hash (cluster_proc.h).
 *
 * usage: proc_cluster_crash CELLPAY_BINARY   (CELLPAY_SEED=N replays the test's choices) */
#include "cluster_proc.h"

#define ROUNDS 2

/* (a) */
static void follower_kill(int round) {
    printf("(a) round %d: SIGKILL a follower under load\n", round + 1);
    cl_load_start();
    cl_wait_acks(200, 10000, "load before the kill");
    proto_status_reply_t ls;
    int leader = cl_leader(5000, &ls);
    if (leader < 0) CL_FAIL("no leader before the kill");
    int f = (leader + 1 + (int)prng_below(&cl.rng, CL_REPLICAS - 1)) % CL_REPLICAS;
    cl_kill(f, SIGKILL);
    uint64_t down_ms = 300 + prng_below(&cl.rng, 700);
    uint64_t t0 = np_now_ms();
    /* Two of three are a quorum: the load must not stall while it is down. */
    cl_wait_acks(300, 10000, "load with a follower down");
    uint64_t first_acks = np_now_ms() - t0;
    while (np_now_ms() - t0 < down_ms) np_sleep_ms(5);
    unsigned long acked_while_down = atomic_load(&cl.acked);
    cl_start(f);
    /* Caught up: it applied what the leader had committed when it came back. */
    proto_status_reply_t s;
    if (cl_leader(5000, &ls) < 0) CL_FAIL("no leader after the restart");
    uint64_t target = ls.commit_index, t1 = np_now_ms();
    for (;;) {
        if (cl_status(f, &s) == PROTO_STATUS_OK && s.applied_index >= target) break;
        if (np_now_ms() - t1 > 15000)
            CL_FAIL("restarted replica %d did not reach index %" PRIu64 " in 15 s", f + 1, target);
        np_sleep_ms(10);
    }
    uint64_t catch_up = np_now_ms() - t1;
    cl_wait_acks(200, 10000, "load after the restart");
    cl_load_stop();
    printf("  replica %d (a follower of replica %d) killed for %" PRIu64
           " ms: 300 acknowledgements within %" PRIu64 " ms of the kill; restarted, it applied "
           "the leader's commit index %" PRIu64 " within %" PRIu64 " ms; %lu acknowledged so far\n",
           f + 1, leader + 1, down_ms, first_acks, target, catch_up, acked_while_down);
    cl_verify("after the follower's restart");
    cl_converge("after the follower's restart", 20000);
}

/* (b) */
static void kill_all(int round) {
    printf("(b) round %d: SIGKILL all three replicas at once under load\n", round + 1);
    cl_load_start();
    cl_wait_acks(200, 10000, "load before the kill");
    for (int i = 0; i < CL_REPLICAS; i++) kill(cl.r[i].np.pid, SIGKILL);
    for (int i = 0; i < CL_REPLICAS; i++) cl_kill(i, SIGKILL); /* reaps */
    unsigned long before = atomic_load(&cl.acked);
    uint64_t down_ms = 100 + prng_below(&cl.rng, 400);
    np_sleep_ms(down_ms);
    uint64_t t0 = np_now_ms();
    for (int i = 0; i < CL_REPLICAS; i++) cl_start(i);
    /* The clients retry on their own, against whichever replica leads now. */
    cl_wait_acks(100, 20000, "load after restarting all");
    uint64_t resumed = np_now_ms() - t0;
    proto_status_reply_t s;
    int leader = cl_leader(5000, &s);
    cl_wait_acks(200, 10000, "load after restarting all");
    cl_load_stop();
    printf("  all down for %" PRIu64 " ms with %lu acknowledged; after the restart the load "
           "resumed within %" PRIu64 " ms of the restart; replica %d leads in term %" PRIu64 "\n",
           down_ms, before, resumed, leader + 1, s.term);
    cl_verify("after restarting all");
    cl_converge("after restarting all", 20000);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: proc_cluster_crash CELLPAY_BINARY\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    cl_init(argv[1], false, 240);
    for (int i = 0; i < CL_REPLICAS; i++) cl_start(i);
    uint64_t t0 = np_now_ms();
    cl_open_client();
    for (int r = 0; r < ROUNDS; r++) follower_kill(r);
    for (int r = 0; r < ROUNDS; r++) kill_all(r);
    printf("%lu transfers acknowledged (%lu answered `exists` after a retry), %lu calls gave up; "
           "%" PRIu64 " ms\n",
           atomic_load(&cl.acked), atomic_load(&cl.acked_exists), atomic_load(&cl.call_errors),
           np_now_ms() - t0);
    cl_finish();
    printf("cluster crash faults: %d passed, 0 failed\n", 2 * ROUNDS);
    return 0;
}

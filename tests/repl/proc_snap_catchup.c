/* Replicas that fall behind the leader's log catch up from its snapshot, as real processes:
 * three replicas snapshotting every MiB of log; one follower is killed while the others
 * write several MiB (so the leader's log no longer holds what it needs), comes back and
 * receives the leader's snapshot in chunks; then the same happens to the other follower.
 * Both install the snapshot and follow the log again; then the old leader is killed, so the
 * two rebuilt replicas alone form the quorum, every acknowledged transfer must be there with
 * balances equal to the transfers that exist, and the two must report the same state hash.
 * (A replica that lost its data must come back under a new id, through remove-replica and
 * add-replica: Raft counts on what a replica acknowledged staying on its disk.)
 *
 * usage: proc_snap_catchup CELLPAY_BINARY   (CELLPAY_SEED=N replays) */
#include "cluster_proc.h"

static const char *const snapshot_often[] = {"--snapshot-mib", "1", NULL};

/* Kills follower f, lets the others write past the log it would need, restarts it. */
static void fall_behind(int f) {
    cl_kill(f, SIGKILL);
    cl_wait_acks(40000, 60000, "load while a follower is down");
    cl_start(f);
    cl_wait_acks(5000, 60000, "load after the follower restarted");
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    cl.extra = snapshot_often;
    cl.logs = true;
    cl_init(argv[1], false, 240);
    for (int i = 0; i < CL_REPLICAS; i++) cl_start(i);
    cl_open_client();
    cl_load_start();
    cl_wait_acks(5000, 30000, "first load");
    int l = cl_leader(10000, NULL);
    if (l < 0) CL_FAIL("no leader");
    int f1 = (l + 1) % CL_REPLICAS, f2 = (l + 2) % CL_REPLICAS;
    fall_behind(f1);
    fall_behind(f2);
    for (int k = 0; k < 200 && !(cl_log_says(f1, "installed snapshot") &&
                                 cl_log_says(f2, "installed snapshot"));
         k++)
        np_sleep_ms(50);
    for (int i = 0; i < 2; i++) {
        int f = i ? f2 : f1;
        if (!cl_log_says(f, "installed snapshot"))
            CL_FAIL("replica %d did not install a snapshot", f + 1);
    }
    printf("replicas %d and %d caught up by snapshot\n", f1 + 1, f2 + 1);
    cl_wait_acks(2000, 30000, "load after the catch-up"); /* they follow the log again */
    /* The old leader goes: the two rebuilt replicas alone hold the cell. */
    cl_kill(l, SIGKILL);
    cl_wait_acks(2000, 30000, "load after the old leader died");
    cl_load_stop();
    cl_verify("after both followers were rebuilt from snapshots");
    cl_converge("the two rebuilt replicas", 20000);
    cl_finish();
    printf("snapshot catch-up: passed\n");
    return 0;
}

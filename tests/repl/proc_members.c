/* Membership changes on real processes: a cell of replicas 1-3 under load (snapshots every
 * MiB, so the log a new replica would need is long gone); replica 4 starts with --join and is
 * added with `cellpay admin cell add-replica`: it receives the leader's snapshot as a learner,
 * catches up and is promoted to voter. Then the leader removes itself with remove-replica and
 * hands over. Then one more of the old replicas is killed: the cell goes on with the remaining
 * old replica and replica 4 as its quorum, every acknowledged transfer is there, balances equal
 * the transfers that exist, and the two replicas' state hashes agree.
 *
 * usage: proc_members CELLPAY_BINARY   (CELLPAY_SEED=N replays) */
#include "cluster_proc.h"

static const char *const snapshot_often[] = {"--snapshot-mib", "1", NULL};

/* Runs `cellpay admin cell ARGS --addr <every replica>`; its exit status, its output in out. */
static int admin(const char *args, char *out, size_t cap) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s admin cell %s --addr %s 2>&1", cl.cellpay, args, cl.addrs);
    FILE *p = popen(cmd, "r");
    if (!p) CL_FAIL("popen");
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    printf("$ cellpay admin cell %s\n%s", args, out);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool voter_in(const proto_status_reply_t *s, uint32_t id) {
    for (uint32_t k = 0; k < s->member_count; k++)
        if (s->members[k] == id) return !((s->learners >> k) & 1);
    return false;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    cl.extra = snapshot_often;
    cl.logs = true;
    cl_init_n(argv[1], false, 240, 4, 3);
    for (int i = 0; i < 3; i++) cl_start(i);
    cl_open_client();
    cl_load_start();
    cl_wait_acks(40000, 60000, "load before the new replica");

    cl_start(3);
    proto_status_reply_t s;
    if (cl_status(3, &s) != 0 || s.member_count != 0) CL_FAIL("a joining replica knows members");
    char out[4096], args[256];
    snprintf(args, sizeof args, "add-replica --id 4 --peer-addr 127.0.0.1:%d", cl.r[3].peer_port);
    if (admin(args, out, sizeof out) != 0) CL_FAIL("add-replica failed");
    cl_wait_acks(5000, 30000, "load with four voters");
    if (cl_status(3, &s) != 0 || !voter_in(&s, 4) || s.applied_index == 0)
        CL_FAIL("replica 4 is not a voter with the cell's state");
    if (!cl_log_says(3, "installed snapshot")) CL_FAIL("replica 4 did not catch up by snapshot");
    if (admin(args, out, sizeof out) != 0) CL_FAIL("adding a voter again is not a no-op");

    int l = cl_leader(10000, NULL);
    if (l < 0) CL_FAIL("no leader");
    snprintf(args, sizeof args, "remove-replica --id %d", l + 1);
    if (admin(args, out, sizeof out) != 0) CL_FAIL("remove-replica of the leader failed");
    if (!cl_log_says(l, "removing replica")) CL_FAIL("the leader did not log the removal");
    cl_kill(l, SIGTERM);
    cl_wait_acks(5000, 30000, "load after the leader left");
    if (admin(args, out, sizeof out) != 0 || !strstr(out, "is out of the group"))
        CL_FAIL("removing a replica that is out already is not a no-op");

    /* One more old replica goes: the other and replica 4 are the quorum of three. */
    int old = l == 0 ? 1 : 0;
    cl_kill(old, SIGKILL);
    cl_wait_acks(5000, 30000, "load on the remaining old replica and replica 4");
    cl_load_stop();
    cl_verify("after the membership changes");
    cl_converge("the remaining old replica and replica 4", 20000);
    cl_finish();
    printf("membership changes: passed\n");
    return 0;
}

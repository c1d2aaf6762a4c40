/* Start-up and snapshots of a node: the data directory's layout, the capacities fixed at
 * creation, recovery (newest whole snapshot, then the log after it), and snapshots written
 * by a forked child while the parent goes on serving.
 *
 * DIR/cell.conf   the ledger capacities, written once: replaying a log against other
 *                 capacities could give other results, so they never change
 * DIR/wal/        the write-ahead log (src/repl/wal.h)
 * DIR/snap-*.snap snapshots (src/repl/snapshot.h); the newest two are kept, and the log is
 *                 released only up to the older one, so a damaged newest snapshot still
 *                 leaves a way to recover (older snapshot + log). */
#define _GNU_SOURCE /* close_range */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/assert.h"
#include "repl/node_internal.h"
#include "repl/snapshot.h"

/* Reads DIR/cell.conf, or writes it from the configuration on first start. */
static int node_capacities(node_t *n) {
    char path[SNAPSHOT_PATH_MAX];
    snprintf(path, sizeof path, "%s/cell.conf", n->config.data_dir);
    ledger_config_t *c = &n->config.cell.ledger;
    FILE *f = fopen(path, "r");
    if (f) {
        unsigned long long a = 0, t = 0;
        int got = fscanf(f, "accounts_max=%llu\ntransfers_max=%llu\n", &a, &t);
        fclose(f);
        if (got != 2 || a == 0 || t == 0 || a > UINT32_MAX || t > UINT32_MAX) {
            node_log("%s is damaged; it must say accounts_max=N and transfers_max=N", path);
            return -1;
        }
        if (n->config.capacities_given && (a != c->accounts_max || t != c->transfers_max)) {
            node_log("%s fixes accounts_max=%llu transfers_max=%llu; the data directory cannot "
                     "change them",
                     path, a, t);
            return -1;
        }
        c->accounts_max = (uint32_t)a;
        c->transfers_max = (uint32_t)t;
        return 0;
    }
    char tmp[SNAPSHOT_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f) {
        node_log("cannot write %s: %s", tmp, strerror(errno));
        return -1;
    }
    fprintf(f, "accounts_max=%u\ntransfers_max=%u\n", c->accounts_max, c->transfers_max);
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        node_log("cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void replay_reply(void *ctx, const cell_command_t *cmd, uint32_t status, uint64_t ts,
                         const void *reply, uint32_t size) {
    (void)ctx, (void)cmd, (void)status, (void)ts, (void)reply, (void)size;
}

/* Applies every log entry after `from` to the cell. */
static int node_replay(node_t *n, uint64_t from) {
    wal_iter_t it;
    if (wal_iter_open(n->wal, from + 1, &it) != WAL_OK) {
        node_log("cannot read the log from index %" PRIu64, from + 1);
        return -1;
    }
    uint64_t count = 0;
    int rc;
    wal_entry_t e;
    while ((rc = wal_iter_next(&it, &e, n->entries[0].body, NODE_ENTRY_BYTES)) == 1) {
        const char *why = cell_entry_check(n->entries[0].body, e.body_size);
        if (why) {
            node_log("log entry %" PRIu64 " is not a valid batch (%s); refusing to start", e.index,
                     why);
            wal_iter_close(&it);
            return -1;
        }
        cell_apply_entry(n->cell, e.timestamp, n->entries[0].body, e.body_size, replay_reply, NULL);
        n->applied_index = e.index;
        if (e.timestamp > n->last_entry_ts) n->last_entry_ts = e.timestamp;
        count++;
    }
    char iter_err[sizeof it.err];
    memcpy(iter_err, it.err, sizeof iter_err);
    wal_iter_close(&it);
    if (rc < 0) {
        node_log("reading the log failed at index %" PRIu64 ": %s", n->applied_index + 1, iter_err);
        return -1;
    }
    node_log("recovered: snapshot at index %" PRIu64 ", %" PRIu64 " log entries replayed, at index "
             "%" PRIu64,
             from, count, n->applied_index);
    return 0;
}

int node_recover(node_t *n) {
    const char *dir = n->config.data_dir;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        node_log("cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    if (node_capacities(n) != 0) return -1;
    char err[512], wal_dir[SNAPSHOT_PATH_MAX];
    uint64_t snap_index = 0, snap_term = 0;
    if (snapshot_load(dir, &n->config.cell, &n->cell, &snap_index, &snap_term, err, sizeof err)) {
        node_log("%s", err);
        return -1;
    }
    if (!n->cell && !(n->cell = cell_create(&n->config.cell))) {
        node_log("out of memory for the cell's tables");
        return -1;
    }
    snprintf(wal_dir, sizeof wal_dir, "%s/wal", dir);
    wal_options_t opt = {0};
    if (wal_open(wal_dir, &opt, &n->wal, err, sizeof err) != 0) {
        node_log("cannot open the log: %s", err);
        return -1;
    }
    uint64_t first = wal_first_index(n->wal), last = wal_last_index(n->wal);
    if (last > snap_index && first > snap_index + 1) {
        node_log("the log starts at index %" PRIu64 " but the newest whole snapshot covers only "
                 "up to %" PRIu64 "; entries in between are missing, refusing to start",
                 first, snap_index);
        return -1;
    }
    n->applied_index = snap_index;
    n->snapshot_index = snap_index;
    return node_replay(n, snap_index);
}

/* ---- Snapshots ---- */

void node_snapshot_maybe(node_t *n) {
    if (n->config.snapshot_log_bytes == 0 || n->snapshot_pid != 0 ||
        n->log_bytes_since_snapshot < n->config.snapshot_log_bytes)
        return;
    /* Between entries the state is whole; the child writes that copy-on-write view while the
     * parent serves on. (Each page the parent then writes is copied once: memory, not time,
     * pays for the snapshot.) */
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        node_log("cannot fork to write a snapshot: %s; will retry", strerror(errno));
        return;
    }
    if (pid == 0) {
        /* The child must not keep the parent's sockets and files: a restarted node could not
         * bind its port, and clients would not see the parent's connections close. And it
         * must not outlive the parent. */
        close_range(3, ~0u, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1); /* the parent is already gone */
        const char *what = "";
        int rc = snapshot_write(n->config.data_dir, n->cell, n->applied_index, 1, &what);
        if (rc != 0) {
            char msg[256];
            int len = snprintf(msg, sizeof msg, "cellpay node: snapshot %s failed: %s\n", what,
                               strerror(-rc));
            if (write(2, msg, (size_t)len) < 0) _exit(2);
        }
        _exit(rc == 0 ? 0 : 1);
    }
    n->snapshot_pid = pid;
    n->snapshot_pending_index = n->applied_index;
    n->log_bytes_since_snapshot = 0;
}

static void snapshot_finished(node_t *n, int status) {
    n->snapshot_pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        node_log("snapshot at index %" PRIu64 " failed; the log keeps everything",
                 n->snapshot_pending_index);
        return;
    }
    /* Keep this snapshot and the one before; the log from the older one on. */
    uint64_t older = n->snapshot_index;
    n->snapshot_index = n->snapshot_pending_index;
    snapshot_prune(n->config.data_dir, older);
    if (older > 0 && wal_release_before(n->wal, older + 1) != 0)
        node_log("releasing the log before index %" PRIu64 " failed; it stays", older + 1);
    node_log("snapshot at index %" PRIu64 " written", n->snapshot_index);
}

void node_snapshot_poll(node_t *n) {
    if (n->snapshot_pid == 0) return;
    int status;
    pid_t r = waitpid(n->snapshot_pid, &status, WNOHANG);
    if (r == n->snapshot_pid) snapshot_finished(n, status);
}

void node_snapshot_wait(node_t *n) {
    if (n->snapshot_pid == 0) return;
    int status;
    while (waitpid(n->snapshot_pid, &status, 0) < 0 && errno == EINTR) {
    }
    snapshot_finished(n, status);
}

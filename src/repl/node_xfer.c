/* Snapshot transfer between replicas (raft.h, SNAPSHOTS): the leader reads the chunks the
 * core asks for from its snapshot files; a follower writes received chunks to one temporary
 * file, then verifies the whole snapshot, installs it durably and restarts its log after it.
 *
 * The order of the install is what makes a crash at any point safe: the snapshot gets its
 * final name (fsynced, directory fsynced) before the log is reset, and recovery treats a log
 * that does not continue the newest snapshot as left behind by such an install
 * (node_recover.c). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "repl/node_internal.h"
#include "repl/snapshot.h"

static void rx_path(const node_t *n, char *out, size_t size) {
    snprintf(out, size, "%s/snap-receiving.part", n->config.data_dir);
}

void node_snap_report(node_t *n, uint64_t index, uint64_t term) {
    char path[SNAPSHOT_PATH_MAX];
    struct stat st;
    snapshot_path(n->config.data_dir, index, path, sizeof path);
    if (stat(path, &st) != 0 || st.st_size <= 0) {
        node_log(n, "cannot stat snapshot %s: %s; it is not offered to lagging replicas", path,
                 strerror(errno));
        return;
    }
    rf_snapshot_avail(n->rf, index, term, (uint64_t)st.st_size);
}

/* Leader: the chunk m asks for, read from the snapshot file, sent with its bytes. A file that
 * cannot be read drops the message; the core resends (and restarts with a newer snapshot once
 * this one falls behind its window). */
void node_snap_send(node_t *n, const rf_msg_t *m) {
    char path[SNAPSHOT_PATH_MAX];
    snapshot_path(n->config.data_dir, m->h.index, path, sizeof path);
    uint32_t size = m->entries[0].size;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? pread(fd, n->chunk_buf, size, (off_t)m->h.ctx) : -1;
    if (fd >= 0) close(fd);
    if (got != (ssize_t)size) {
        node_log(n, "cannot read %u bytes at %" PRIu64 " of %s for replica %u", size, m->h.ctx,
                 path, m->h.to);
        return;
    }
    rf_entry_t e = {.term = m->entries[0].term, .size = size, .data = n->chunk_buf};
    rf_msg_t c = {.h = m->h, .entries = &e};
    peer_net_send(n->net, &c);
}

/* Follower: one chunk, in order (the core checked). Offset 0 starts the file afresh. */
void node_snap_write(node_t *n, const rf_snap_chunk_t *c) {
    char path[SNAPSHOT_PATH_MAX];
    rx_path(n, path, sizeof path);
    if (c->offset == 0) {
        if (n->rx_fd >= 0) close(n->rx_fd);
        n->rx_fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
        n->rx_broken = n->rx_fd < 0;
        node_log(n, "receiving snapshot %" PRIu64 " (%" PRIu64 " bytes) from the leader", c->index,
                 c->total);
    }
    if (n->rx_fd < 0 || n->rx_broken) {
        n->rx_broken = true;
        return;
    }
    const unsigned char *p = c->data;
    for (uint64_t done = 0; done < c->size;) {
        ssize_t w = pwrite(n->rx_fd, p + done, c->size - done, (off_t)(c->offset + done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            node_log(n, "writing the received snapshot failed: %s", strerror(errno));
            n->rx_broken = true;
            return;
        }
        done += (uint64_t)w;
    }
}

/* A snapshot being written from the old state is of no use once a newer one is installed. */
static void snapshot_child_cancel(node_t *n) {
    if (n->snapshot_pid == 0) return;
    kill(n->snapshot_pid, SIGKILL);
    int status;
    while (waitpid(n->snapshot_pid, &status, 0) < 0 && errno == EINTR) {
    }
    n->snapshot_pid = 0;
}

static bool snap_verify(node_t *n, const rf_snap_chunk_t *c, const char *path, cell_t **cell,
                        rf_members_t *m) {
    bool ok = n->rx_fd >= 0 && !n->rx_broken && fsync(n->rx_fd) == 0;
    if (n->rx_fd >= 0) close(n->rx_fd);
    n->rx_fd = -1;
    if (!ok) {
        node_log(n, "the received snapshot %" PRIu64 " could not be written whole", c->index);
        return false;
    }
    char err[512];
    uint64_t index, term;
    mb_record_t rec;
    if (snapshot_load_file(path, &n->config.cell, cell, &index, &term, &rec, err, sizeof err) !=
        0) {
        node_log(n, "%s", err);
        return false;
    }
    if (!rf_members_decode(&rec.members, sizeof rec.members, m) ||
        !mb_book_learn(&n->book, m, &rec.addrs)) {
        node_log(n, "the received snapshot %" PRIu64 " holds no valid membership", index);
        cell_destroy(*cell);
        *cell = NULL;
        return false;
    }
    if (index != c->index || term != c->term) {
        node_log(n,
                 "the received snapshot says index %" PRIu64 " term %" PRIu64
                 ", the leader announced %" PRIu64 " term %" PRIu64,
                 index, term, c->index, c->term);
        cell_destroy(*cell);
        *cell = NULL;
        return false;
    }
    return true;
}

/* Follower, after the ready with the last chunk: verify, install, reset the log. */
void node_snap_install(node_t *n, const rf_snap_chunk_t *c) {
    char path[SNAPSHOT_PATH_MAX];
    rx_path(n, path, sizeof path);
    cell_t *cell = NULL;
    rf_members_t m;
    if (!snap_verify(n, c, path, &cell, &m)) {
        unlink(path);
        rf_snapshot_failed(n->rf);
        return;
    }
    snapshot_child_cancel(n);
    int rc = snapshot_install(n->config.data_dir, path, c->index);
    if (rc != 0) {
        node_log(n, "installing the received snapshot failed: %s", strerror(-rc));
        cell_destroy(cell);
        unlink(path);
        rf_snapshot_failed(n->rf);
        return;
    }
    /* From here the snapshot is the node's newest: a failure to reset the log is survivable
     * only by a restart, whose recovery finishes the reset. */
    if (wal_reset(n->wal, c->index, c->term) != WAL_OK) {
        node_log(n, "fatal: resetting the log to the installed snapshot failed (%s); stopping",
                 wal_error(n->wal));
        exit(1);
    }
    cell_destroy(n->cell);
    n->cell = cell;
    n->applied_index = n->snapshot_index = c->index;
    n->log_bytes_since_snapshot = 0;
    /* Should this replica lead next, its entries' timestamps go on from the cell's clock. */
    if (cell_clock(cell) > n->last_entry_ts) n->last_entry_ts = cell_clock(cell);
    snapshot_prune(n->config.data_dir, c->index);
    rf_snapshot_installed(n->rf, c->index, c->term, &m);
    node_snap_report(n, c->index, c->term);
    node_log(n, "installed snapshot %" PRIu64 " (term %" PRIu64 ") from the leader", c->index,
             c->term);
}

/* Start-up and snapshots of a node: the data directory's layout, the capacities fixed at
 * creation, recovery (newest whole snapshot, then the log after it), and snapshots written
 * by a forked child while the parent goes on serving.
 *
 * DIR/cell.conf   the ledger capacities and the zones the cell owns, written once:
 *                 replaying a log against other capacities or zones could give other
 *                 results, so they never change
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
#include <time.h>
#include <unistd.h>

#include "base/assert.h"
#include "repl/node_internal.h"
#include "repl/snapshot.h"

/* cell.conf's cell line fixes the cell's number: payment ids carry it (pay.h), so a log
 * replayed under another number would give other ids. Older files have no such line. */
static int node_conf_cell(node_t *n, const char *path, const char *buf) {
    const char *cl = strstr(buf, "\ncell=");
    unsigned long long stored;
    if (!cl) return 0;
    if (sscanf(cl, "\ncell=%llu", &stored) != 1) {
        node_log(n, "%s is damaged: its cell line", path);
        return -1;
    }
    if (stored != n->config.cell_id) {
        node_log(n,
                 "%s fixes cell=%llu; --cell %llu differs, and the number of a data directory's "
                 "cell cannot change (its payment ids carry it)",
                 path, stored, (unsigned long long)n->config.cell_id);
        return -1;
    }
    return 0;
}

/* Reads DIR/cell.conf, or writes it from the configuration on first start. Its zones and
 * zone_rule lines came later: a file without them was written for a cell that owned every
 * zone under the default rule. */
static int node_capacities(node_t *n) {
    char path[SNAPSHOT_PATH_MAX];
    snprintf(path, sizeof path, "%s/cell.conf", n->config.data_dir);
    ledger_config_t *c = &n->config.cell.ledger;
    cp_zones_t *zones = &n->config.cell.zones;
    cp_zones_t want = cp_zones_is_empty(zones) ? cp_zones_all() : *zones;
    char want_text[CP_ZONES_TEXT_MAX], stored_text[CP_ZONES_TEXT_MAX], err[160];
    cp_zones_format(&want, want_text, sizeof want_text);
    cp_zone_rule_t want_rule = cp_zone_rule_effective(&n->config.cell.zone_rule);
    FILE *f = fopen(path, "r");
    if (f) {
        char buf[1024];
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        unsigned long long a = 0, t = 0;
        int got = sscanf(buf, "accounts_max=%llu\ntransfers_max=%llu\n", &a, &t);
        if (got != 2 || a == 0 || t == 0 || a > UINT32_MAX || t > UINT32_MAX) {
            node_log(n, "%s is damaged; it must say accounts_max=N and transfers_max=N", path);
            return -1;
        }
        cp_zones_t stored = cp_zones_all();
        const char *zl = strstr(buf, "\nzones=");
        if (zl) {
            zl += strlen("\nzones=");
            if (!cp_zones_parse(zl, strcspn(zl, "\n"), &stored, err, sizeof err)) {
                node_log(n, "%s is damaged: its zones line: %s", path, err);
                return -1;
            }
        }
        if (node_conf_cell(n, path, buf) != 0) return -1;
        if (n->config.capacities_given && (a != c->accounts_max || t != c->transfers_max)) {
            node_log(n,
                     "%s fixes accounts_max=%llu transfers_max=%llu; the data directory cannot "
                     "change them",
                     path, a, t);
            return -1;
        }
        cp_zone_rule_t stored_rule = cp_zone_rule_effective(NULL);
        const char *rl = strstr(buf, "\nzone_rule=");
        if (rl) {
            rl += strlen("\nzone_rule=");
            if (!cp_zone_rule_parse(rl, strcspn(rl, "\n"), &stored_rule, err, sizeof err)) {
                node_log(n, "%s is damaged: its zone_rule line: %s", path, err);
                return -1;
            }
        }
        if (n->config.zone_rule_given && (stored_rule.divisor != want_rule.divisor ||
                                          stored_rule.modulus != want_rule.modulus)) {
            node_log(n,
                     "%s fixes zone_rule=%llu/%llu; --zone-rule %llu/%llu differs, and the zone "
                     "rule of a data directory cannot change (its log was applied under it)",
                     path, (unsigned long long)stored_rule.divisor,
                     (unsigned long long)stored_rule.modulus, (unsigned long long)want_rule.divisor,
                     (unsigned long long)want_rule.modulus);
            return -1;
        }
        n->config.cell.zone_rule = stored_rule;
        cp_zones_format(&stored, stored_text, sizeof stored_text);
        if (n->config.zones_given && !cp_zones_equal(&stored, &want)) {
            node_log(n,
                     "%s fixes zones=%s; --zones %s differs, and the zones of a data directory "
                     "cannot change (its log was applied under them)",
                     path, stored_text, want_text);
            return -1;
        }
        c->accounts_max = (uint32_t)a;
        c->transfers_max = (uint32_t)t;
        *zones = stored;
        return 0;
    }
    char tmp[SNAPSHOT_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f) {
        node_log(n, "cannot write %s: %s", tmp, strerror(errno));
        return -1;
    }
    fprintf(f, "accounts_max=%u\ntransfers_max=%u\nzones=%s\nzone_rule=%llu/%llu\ncell=%llu\n",
            c->accounts_max, c->transfers_max, want_text, (unsigned long long)want_rule.divisor,
            (unsigned long long)want_rule.modulus, (unsigned long long)n->config.cell_id);
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        node_log(n, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    *zones = want;
    n->config.cell.zone_rule = want_rule;
    return 0;
}

/* Node ids and voters: the group of --peers (none with --join), or a group of one (id 1). */
static void raft_config(const node_t *n, rf_config_t *c) {
    const node_config_t *nc = &n->config;
    *c = (rf_config_t){
        .id = nc->peer_count ? nc->node_id : 1,
        .election_ticks = nc->election_ticks,
        .heartbeat_ticks = nc->heartbeat_ticks,
        .pre_vote = true,
        .check_quorum = true,
        .window_entries = NODE_WINDOW_ENTRIES,
        .window_bytes = NODE_WINDOW_BYTES,
    };
    if (nc->peer_count == 0) c->voters[c->voter_count++] = 1;
    for (uint32_t i = 0; i < nc->peer_count && !nc->join; i++)
        c->voters[c->voter_count++] = nc->peers[i].id;
}

/* The term of the log's entry at index (which must be in the log), 0 when unreadable. */
static uint64_t wal_term_of(node_t *n, uint64_t index) {
    wal_iter_t it;
    wal_entry_t e = {0};
    if (wal_iter_open(n->wal, index, &it) != WAL_OK) return 0;
    int rc = wal_iter_next(&it, &e, n->entries[0].body, NODE_ENTRY_BYTES + NODE_ENTRY_PREFIX);
    wal_iter_close(&it);
    return rc == 1 ? e.term : 0;
}

/* A snapshot installed from the leader is renamed into place before the log is reset
 * (node_xfer.c); a crash in between leaves a log that ends before the snapshot or holds
 * another entry at its index. Such a log is not this cell's history after the snapshot, and
 * nothing in it after that point was committed (a committed entry at the snapshot's index
 * would have the snapshot's term), so the reset is finished here. */
static int node_log_continues(node_t *n, uint64_t snap_index, uint64_t snap_term) {
    uint64_t first = wal_first_index(n->wal), last = wal_last_index(n->wal);
    if (snap_index == 0 || first > snap_index) return 0; /* starts right after it */
    uint64_t term = last >= snap_index ? wal_term_of(n, snap_index) : 0;
    if (term == snap_term) return 0;
    node_log(n,
             "the log (entries %" PRIu64 "..%" PRIu64 ") does not continue snapshot %" PRIu64
             " (term %" PRIu64 "): finishing an install from the leader, the log restarts after it",
             first, last, snap_index, snap_term);
    if (wal_reset(n->wal, snap_index, snap_term) != WAL_OK) {
        node_log(n, "resetting the log failed: %s", wal_error(n->wal));
        return -1;
    }
    return 0;
}

/* Hands the durable log after the snapshot to the Raft core. Nothing is applied here: the
 * core hands entries out for apply once it knows they are committed. */
static int node_load_log(node_t *n, uint64_t from) {
    if (from > wal_last_index(n->wal)) return 0;
    wal_iter_t it;
    if (wal_iter_open(n->wal, from, &it) != WAL_OK) {
        node_log(n, "cannot read the log from index %" PRIu64, from);
        return -1;
    }
    int rc;
    uint64_t count = 0;
    wal_entry_t e;
    unsigned char *buf = n->entries[0].body;
    while ((rc = wal_iter_next(&it, &e, buf, NODE_ENTRY_BYTES + NODE_ENTRY_PREFIX)) == 1) {
        rf_entry_t x;
        if (!node_log_entry(buf, e.body_size, e.term, &x)) {
            node_log(n, "log entry %" PRIu64 " is of an unknown kind; refusing to start", e.index);
            rc = -1;
            break;
        }
        node_members_learn(n, &x);
        if (!rf_load_entry(n->rf, &x)) {
            node_log(n,
                     "the log after the snapshot (%" PRIu64 " entries so far) does not fit the "
                     "Raft window; refusing to start",
                     count);
            rc = -1;
            break;
        }
        if (e.timestamp > n->last_entry_ts) n->last_entry_ts = e.timestamp;
        count++;
    }
    char iter_err[sizeof it.err];
    memcpy(iter_err, it.err, sizeof iter_err);
    wal_iter_close(&it);
    if (rc < 0) {
        if (iter_err[0]) node_log(n, "reading the log failed: %s", iter_err);
        return -1;
    }
    node_log(n, "recovered: snapshot at index %" PRIu64 ", %" PRIu64 " log entries after it",
             from - 1, count);
    return 0;
}

/* The log's recovery reports, as the node's lines (they name the cell). */
static void wal_log_line(void *ctx, const char *line) {
    node_log(ctx, "%s", line);
}

int node_recover(node_t *n) {
    const char *dir = n->config.data_dir;
    /* Private, as every file in it (0600): the log and the snapshots hold merchants' secrets. */
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        node_log(n, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    if (node_capacities(n) != 0) return -1;
    char err[512], wal_dir[SNAPSHOT_PATH_MAX];
    if (hardstate_open(&n->hs, dir, err, sizeof err) != 0) {
        node_log(n, "%s", err);
        return -1;
    }
    uint64_t snap_index = 0, snap_term = 0;
    mb_record_t members;
    if (snapshot_load(dir, &n->config.cell, &n->cell, &snap_index, &snap_term, &members, err,
                      sizeof err)) {
        node_log(n, "%s", err);
        return -1;
    }
    if (!n->cell && !(n->cell = cell_create(&n->config.cell))) {
        node_log(n, "out of memory for the cell's tables");
        return -1;
    }
    snprintf(wal_dir, sizeof wal_dir, "%s/wal", dir);
    wal_options_t opt = {.log = wal_log_line, .log_ctx = n};
    if (wal_open(wal_dir, &opt, &n->wal, err, sizeof err) != 0) {
        node_log(n, "cannot open the log: %s", err);
        return -1;
    }
    uint64_t first = wal_first_index(n->wal), last = wal_last_index(n->wal);
    if (last > snap_index && first > snap_index + 1) {
        node_log(n,
                 "the log starts at index %" PRIu64 " but the newest whole snapshot covers only "
                 "up to %" PRIu64 "; entries in between are missing, refusing to start",
                 first, snap_index);
        return -1;
    }
    if (node_log_continues(n, snap_index, snap_term) != 0) return -1;
    rf_config_t rc;
    raft_config(n, &rc);
    if (node_members_init(n, &members, &rc) != 0) return -1;
    rc.term = n->hs.term;
    rc.vote = n->hs.vote;
    /* A node's term is never below its log's last term (a log written before the hard state
     * existed); raising it gives up nothing: it holds no vote in that term. */
    if (wal_last_term(n->wal) > rc.term) rc.term = wal_last_term(n->wal), rc.vote = RF_NONE;
    rc.log_start_index = snap_index;
    rc.log_start_term = snap_term;
    /* Nodes of one process started in the same second must not share their election
     * timeouts' randomness: the cell, the replica and the node's address tell them apart. */
    rc.seed = (uint64_t)getpid() ^ ((uint64_t)time(NULL) << 20) ^ (n->config.cell_id << 40) ^
              ((uint64_t)n->config.node_id << 32) ^ (uint64_t)(uintptr_t)n;
    if (!(n->rf = rf_create(&rc))) {
        node_log(n, "cannot create the Raft group (bad --peers or out of memory)");
        return -1;
    }
    n->applied_index = snap_index;
    n->snapshot_index = snap_index;
    if (snap_index > 0) node_snap_report(n, snap_index, snap_term);
    return node_load_log(n, snap_index + 1);
}

/* ---- Snapshots ---- */

void node_snapshot_maybe(node_t *n) {
    /* Snapshots also bound the entries the Raft window must hold after a restart. */
    bool due = (n->config.snapshot_log_bytes != 0 &&
                n->log_bytes_since_snapshot >= n->config.snapshot_log_bytes) ||
               n->applied_index - n->snapshot_index >= NODE_WINDOW_ENTRIES / 4;
    if (!due || n->snapshot_pid != 0 || n->applied_index == n->snapshot_index) return;
    /* Between entries the state is whole; the child writes that copy-on-write view while the
     * parent serves on. (Each page the parent then writes is copied once: memory, not time,
     * pays for the snapshot.) */
    n->snapshot_pending_index = n->applied_index;
    n->snapshot_pending_term = rf_term_at(n->rf, n->applied_index);
    mb_record_t members;
    bool have_members = n->config.peer_count > 0;
    if (have_members && !node_members_record(n, n->applied_index, &members)) {
        node_log(n, "a member's address is unknown; no snapshot at index %" PRIu64,
                 n->applied_index);
        return;
    }
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        node_log(n, "cannot fork to write a snapshot: %s; will retry", strerror(errno));
        return;
    }
    if (pid == 0) {
        /* The child only writes the snapshot and exits: with nodes on other threads (node_start)
         * it has only this thread, and anything another thread locked stays locked. It reads
         * only this node's cell, which this thread alone changes, so its copy is whole.
         * The child must not keep the parent's sockets and files: a restarted node could not
         * bind its port, and clients would not see the parent's connections close. And it
         * must not outlive the parent. */
        close_range(3, ~0u, 0);
        /* Sent when the forking thread ends, not the process: a node's thread waits for its
         * child before it ends (node_stop_finish -> node_snapshot_wait). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1); /* the parent is already gone */
        const char *what = "";
        int rc = snapshot_write(n->config.data_dir, n->cell, n->snapshot_pending_index,
                                n->snapshot_pending_term, have_members ? &members : NULL, &what);
        if (rc != 0) {
            /* Other threads of the process (other nodes) may have held locks at the fork,
             * which stay held here: no stdio, no malloc, no strerror (its gettext locks). */
            char msg[256];
            int len = snprintf(msg, sizeof msg, "%s: snapshot %s failed (errno %d)\n", n->name,
                               what, -rc);
            if (len > 0 && write(2, msg, (size_t)len < sizeof msg ? (size_t)len : sizeof msg) < 0)
                _exit(2);
        }
        _exit(rc == 0 ? 0 : 1);
    }
    n->snapshot_pid = pid;
    n->log_bytes_since_snapshot = 0;
}

static void snapshot_finished(node_t *n, int status) {
    n->snapshot_pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        node_log(n, "snapshot at index %" PRIu64 " failed; the log keeps everything",
                 n->snapshot_pending_index);
        return;
    }
    /* Keep this snapshot and the one before; the log from the older one on. */
    uint64_t older = n->snapshot_index;
    n->snapshot_index = n->snapshot_pending_index;
    snapshot_prune(n->config.data_dir, older);
    if (older > 0 && wal_release_before(n->wal, older + 1) != 0)
        node_log(n, "releasing the log before index %" PRIu64 " failed; it stays", older + 1);
    if (older > 0) rf_compact(n->rf, older);
    node_snap_report(n, n->snapshot_index, n->snapshot_pending_term);
    node_log(n, "snapshot at index %" PRIu64 " written", n->snapshot_index);
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

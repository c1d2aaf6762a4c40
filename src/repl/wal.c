/* The write-ahead log: segment files of checksummed entries, recovery that tells a torn tail
 * from corruption, and group commit split across two threads. Format and rules: wal.h. */
#include "repl/wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "base/assert.h"

CP_STATIC_ASSERT(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the header is stored as laid out");
CP_STATIC_ASSERT(sizeof(wal_entry_t) == WAL_HEADER_SIZE, "header is 64 bytes");
CP_STATIC_ASSERT(offsetof(wal_entry_t, checksum) == 0 &&
                     offsetof(wal_entry_t, checksum_body) == 16 &&
                     offsetof(wal_entry_t, index) == 32 && offsetof(wal_entry_t, term) == 40 &&
                     offsetof(wal_entry_t, timestamp) == 48 &&
                     offsetof(wal_entry_t, body_size) == 56 && offsetof(wal_entry_t, magic) == 60,
                 "header layout");
CP_STATIC_ASSERT(WAL_BODY_MAX % 8 == 0, "the largest entry needs no padding");

#define WAL_NAME_LEN 28 /* "wal-" + 20 digits + ".log" */
#define WAL_RESET_NAME "wal-reset"
#define WAL_RESET_TMP "wal-reset.tmp"
#define WAL_RESET_SIZE 40u
#define WAL_DIR_MAX (PATH_MAX - WAL_NAME_LEN - 2)

typedef struct wal_segment {
    uint64_t first;     /* index of its first entry, as in its name */
    uint64_t last;      /* index of its last entry; first - 1 when empty */
    uint64_t last_term; /* term of that entry (of the one before it when empty) */
    uint64_t size;      /* bytes of valid entries */
    int fd;             /* read-write; -1 once it holds only durable entries and is not last */
} wal_segment_t;

struct wal {
    wal_options_t opt;
    char dir[WAL_DIR_MAX + 1];
    int dir_fd; /* holds the flock that keeps a second wal_t out */
    wal_segment_t *segs;
    uint32_t seg_count;
    uint64_t last_index;
    uint64_t last_term;
    uint64_t base_term; /* of entry first - 1, when known (reset, release); else 0 */
    uint64_t durable_index;
    uint64_t captured_index; /* covered by the running sync or a finished one */
    uint64_t gen;            /* bumped by each truncation and reset: voids the running sync */
    bool dir_dirty;          /* a segment was created since the last captured dir fsync */
    bool syncing;
    bool broken;
    int sync_fds[WAL_SYNC_FDS_MAX]; /* what the running sync references */
    uint32_t sync_fd_count;
    int zombies[WAL_SYNC_FDS_MAX]; /* fds of removed segments, closed by wal_sync_end */
    uint32_t zombie_count;
    uint32_t iters_open;
    wal_reader_t reader; /* recovery and truncation */
    char err[512];
};

const char *wal_status_str(wal_status_t st) {
    switch (st) {
    case WAL_OK: return "ok";
    case WAL_ERR_IO: return "I/O error";
    case WAL_ERR_CORRUPT: return "log corrupt";
    case WAL_ERR_RANGE: return "index out of range";
    case WAL_ERR_TOO_BIG: return "entry too big";
    case WAL_ERR_FULL: return "too many segments";
    case WAL_ERR_BROKEN: return "a sync failed: durability unknown, reopen the log";
    case WAL_ERR_LOCKED: return "log directory in use";
    case WAL_ERR_NOMEM: return "out of memory";
    case WAL_ERR_INVALID: return "invalid argument";
    }
    return "unknown status";
}

/* ---- small helpers ---- */

__attribute__((format(printf, 4, 5))) static wal_status_t
wal_fail(char *err, size_t n, wal_status_t st, const char *fmt, ...) {
    if (n > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, n, fmt, ap);
        va_end(ap);
    }
    return st;
}

__attribute__((format(printf, 2, 3))) static void wal_log(const wal_t *w, const char *fmt, ...) {
    char line[PATH_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (w->opt.log)
        w->opt.log(w->opt.log_ctx, line);
    else
        fprintf(stderr, "%s\n", line);
}

static u128 wal_hash(const void *p, size_t n) {
    static const uint8_t nothing[1];
    XXH128_hash_t h = XXH3_128bits(n ? p : nothing, n);
    return ((u128)h.high64 << 64) | h.low64;
}

static uint64_t wal_entry_size(uint32_t body_size) {
    return WAL_HEADER_SIZE + (((uint64_t)body_size + 7) & ~(uint64_t)7);
}

static void wal_seg_path(const wal_t *w, uint64_t first, char *buf, size_t n) {
    snprintf(buf, n, "%s/wal-%020" PRIu64 ".log", w->dir, first);
}

/* "wal-<20 digits>.log" -> its index; 0 for any other name. */
static uint64_t wal_parse_name(const char *name) {
    if (strlen(name) != WAL_NAME_LEN || memcmp(name, "wal-", 4) != 0 ||
        memcmp(name + 24, ".log", 4) != 0)
        return 0;
    uint64_t v = 0;
    for (int i = 4; i < 24; i++) {
        if (name[i] < '0' || name[i] > '9') return 0;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return 0;
        v = v * 10 + d;
    }
    return v;
}

static int wal_fsync_fd(const wal_t *w, int fd) {
    if (w->opt.no_sync) return 0;
    return fsync(fd) == 0 ? 0 : errno;
}

/* pwritev until everything is written: a short write is not an error, just a retry. */
static int wal_pwritev_all(int fd, struct iovec *iov, int cnt, uint64_t off) {
    while (cnt > 0) {
        ssize_t k = pwritev(fd, iov, cnt, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return errno;
        if (k == 0) return EIO;
        off += (uint64_t)k;
        size_t left = (size_t)k;
        while (cnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

/* ---- reading and verifying entries ---- */

static void wal_reader_reset(wal_reader_t *r, int fd, uint64_t limit) {
    r->fd = fd;
    r->limit = limit;
    r->len = 0;
    r->off = 0;
}

/* Points *p at file bytes [off, off + n), reading ahead as far as the buffer and the limit
 * allow, so that a sequential scan costs one pread per buffer. Returns 0 or an errno. */
static int wal_reader_get(wal_reader_t *r, uint64_t off, uint32_t n, const uint8_t **p) {
    cp_assert(n <= r->cap && off <= r->limit && n <= r->limit - off);
    if (off >= r->off && off + n <= r->off + r->len) {
        *p = r->buf + (off - r->off);
        return 0;
    }
    uint64_t want = r->limit - off < r->cap ? r->limit - off : r->cap;
    uint64_t got = 0;
    r->len = 0;
    while (got < want) {
        ssize_t k = pread(r->fd, r->buf + got, want - got, (off_t)(off + got));
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return errno;
        if (k == 0) break;
        got += (uint64_t)k;
    }
    if (got < n) return ENODATA; /* the file is shorter than it was */
    r->off = off;
    r->len = (uint32_t)got;
    *p = r->buf;
    return 0;
}

typedef enum wal_check { WAL_CHECK_OK, WAL_CHECK_BAD, WAL_CHECK_IO } wal_check_t;

typedef struct wal_found {
    wal_entry_t h;
    const char *why; /* WAL_CHECK_BAD: what is wrong */
    int err_no;      /* WAL_CHECK_IO */
} wal_found_t;

static wal_check_t wal_bad(wal_found_t *f, const char *why) {
    f->why = why;
    return WAL_CHECK_BAD;
}

static bool wal_header_ok(const uint8_t *p, wal_entry_t *h, const char **why) {
    memcpy(h, p, sizeof *h);
    *why = h->magic != WAL_MAGIC                                   ? "bad magic"
           : h->checksum != wal_hash(p + 16, WAL_HEADER_SIZE - 16) ? "bad header checksum"
           : h->body_size > WAL_BODY_MAX                           ? "body size above WAL_BODY_MAX"
           : h->index == 0                                         ? "index 0"
                                                                   : NULL;
    return *why == NULL;
}

/* Checks the header at off (8-aligned, <= r->limit), and that the whole entry fits. */
static wal_check_t wal_check_header(wal_reader_t *r, uint64_t off, wal_found_t *f) {
    const uint8_t *p;
    if (r->limit - off < WAL_HEADER_SIZE) return wal_bad(f, "incomplete header");
    if ((f->err_no = wal_reader_get(r, off, WAL_HEADER_SIZE, &p))) return WAL_CHECK_IO;
    if (!wal_header_ok(p, &f->h, &f->why)) return WAL_CHECK_BAD;
    if (r->limit - off < wal_entry_size(f->h.body_size)) return wal_bad(f, "incomplete body");
    return WAL_CHECK_OK;
}

/* Body checksum and zero padding of the entry at off whose header f holds, hashed in
 * buffer-sized pieces so that a reader needs WAL_READ_BUF bytes, not a whole entry. Copies
 * the body to out unless out is NULL. */
static wal_check_t wal_check_body(wal_reader_t *r, uint64_t off, wal_found_t *f, uint8_t *out) {
    XXH3_state_t st;
    XXH3_128bits_reset(&st);
    uint64_t body = f->h.body_size, padded = wal_entry_size(f->h.body_size) - WAL_HEADER_SIZE;
    off += WAL_HEADER_SIZE;
    for (uint64_t pos = 0; pos < padded;) {
        uint32_t n = (uint32_t)(padded - pos < r->cap ? padded - pos : r->cap);
        const uint8_t *p;
        if ((f->err_no = wal_reader_get(r, off + pos, n, &p))) return WAL_CHECK_IO;
        uint32_t part = pos >= body ? 0 : (uint32_t)(body - pos < n ? body - pos : n);
        XXH3_128bits_update(&st, p, part);
        if (out && part > 0) memcpy(out + pos, p, part);
        for (uint32_t i = part; i < n; i++)
            if (p[i] != 0) return wal_bad(f, "padding not zero");
        pos += n;
    }
    XXH128_hash_t h = XXH3_128bits_digest(&st);
    if (f->h.checksum_body != (((u128)h.high64 << 64) | h.low64))
        return wal_bad(f, "bad body checksum");
    return WAL_CHECK_OK;
}

/* Verifies the entry at off: header, size bounds, body, padding. */
static wal_check_t wal_check_entry(wal_reader_t *r, uint64_t off, wal_found_t *f) {
    wal_check_t c = wal_check_header(r, off, f);
    return c == WAL_CHECK_OK ? wal_check_body(r, off, f, NULL) : c;
}

/* Why the header at off cannot start entry idx, or NULL when it can (*e: a read error). */
static const char *wal_walk_step(wal_reader_t *r, uint64_t off, uint64_t idx, wal_entry_t *h,
                                 int *e) {
    const uint8_t *p;
    const char *why;
    *e = 0;
    if (r->limit - off < WAL_HEADER_SIZE) return "incomplete header";
    if ((*e = wal_reader_get(r, off, WAL_HEADER_SIZE, &p))) return "read error";
    if (!wal_header_ok(p, h, &why)) return why;
    if (h->index != idx) return "unexpected index";
    if (wal_entry_size(h->body_size) > r->limit - off) return "incomplete body";
    return NULL;
}

/* Steps over the headers of a segment (verified once already) from its first entry to entry
 * target: *off gets where target starts, *term the term of the entry before it (0 if none).
 * Cheaper than reading whole entries: bodies are skipped. */
static wal_status_t wal_walk(wal_reader_t *r, const char *file, uint64_t first, uint64_t target,
                             uint64_t *off, uint64_t *term, char *err, size_t n) {
    *off = 0;
    *term = 0;
    for (uint64_t idx = first; idx < target; idx++) {
        wal_entry_t h;
        int e;
        const char *why = wal_walk_step(r, *off, idx, &h, &e);
        if (e) return wal_fail(err, n, WAL_ERR_IO, "wal: read %s: %s", file, strerror(e));
        if (why)
            return wal_fail(err, n, WAL_ERR_CORRUPT,
                            "wal: %s at offset %" PRIu64 " (index %" PRIu64 "): %s", file, *off,
                            idx, why);
        *off += wal_entry_size(h.body_size);
        *term = h.term;
    }
    return WAL_OK;
}

/* ---- segments and fds ---- */

/* The segment holding index, or the last one when index is past the end. */
static uint32_t wal_seg_find(const wal_t *w, uint64_t index) {
    uint32_t lo = 0, hi = w->seg_count; /* answer in [lo, hi) */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (w->segs[mid].first <= index)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static bool wal_sync_holds(const wal_t *w, int fd) {
    for (uint32_t i = 0; w->syncing && i < w->sync_fd_count; i++)
        if (w->sync_fds[i] == fd) return true;
    return false;
}

/* Closes a removed segment's fd, or leaves it to wal_sync_end when the running sync uses it:
 * closing it would let the number be reused under the worker's fdatasync. */
static void wal_fd_release(wal_t *w, int fd) {
    if (fd < 0) return;
    if (!wal_sync_holds(w, fd)) {
        close(fd);
        return;
    }
    cp_assert(w->zombie_count < WAL_SYNC_FDS_MAX);
    w->zombies[w->zombie_count++] = fd;
}

/* Keeps fds bounded: a segment that is not last and holds only durable entries needs none. */
static void wal_close_durable(wal_t *w) {
    for (uint32_t i = 0; i + 1 < w->seg_count; i++) {
        wal_segment_t *s = &w->segs[i];
        if (s->fd >= 0 && s->last <= w->durable_index && !wal_sync_holds(w, s->fd)) {
            close(s->fd);
            s->fd = -1;
        }
    }
}

static wal_status_t wal_seg_open(wal_t *w, wal_segment_t *s, char *err, size_t n) {
    if (s->fd >= 0) return WAL_OK;
    char path[PATH_MAX];
    wal_seg_path(w, s->first, path, sizeof path);
    s->fd = open(path, O_RDWR | O_CLOEXEC);
    if (s->fd < 0) return wal_fail(err, n, WAL_ERR_IO, "wal: open %s: %s", path, strerror(errno));
    return WAL_OK;
}

/* A new, empty last segment for entries from first on. The directory is fsynced by the next
 * sync (or right away when sync_now), before any entry in it counts as durable. */
static wal_status_t wal_seg_create(wal_t *w, uint64_t first, bool sync_now, char *err, size_t n) {
    if (w->seg_count == w->opt.segments_max)
        return wal_fail(err, n, WAL_ERR_FULL, "wal: %s holds segments_max (%" PRIu32 ") segments",
                        w->dir, w->opt.segments_max);
    char path[PATH_MAX];
    wal_seg_path(w, first, path, sizeof path);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return wal_fail(err, n, WAL_ERR_IO, "wal: create %s: %s", path, strerror(errno));
    int e = sync_now ? wal_fsync_fd(w, w->dir_fd) : 0;
    if (e) {
        close(fd);
        unlink(path);
        return wal_fail(err, n, WAL_ERR_IO, "wal: fsync %s: %s", w->dir, strerror(e));
    }
    w->segs[w->seg_count++] = (wal_segment_t){
        .first = first, .last = first - 1, .last_term = w->last_term, .size = 0, .fd = fd};
    if (!sync_now) w->dir_dirty = true;
    return WAL_OK;
}

/* Unlinks the segments from keep on, newest first, then fsyncs the directory: a crash in
 * between leaves a shorter but gap-free log. A failure leaves the log BROKEN (memory and disk
 * may disagree); recovery sorts it out. */
static wal_status_t wal_seg_remove_from(wal_t *w, uint32_t keep, char *err, size_t n) {
    if (keep >= w->seg_count) return WAL_OK;
    while (w->seg_count > keep) {
        wal_segment_t *s = &w->segs[w->seg_count - 1];
        char path[PATH_MAX];
        wal_seg_path(w, s->first, path, sizeof path);
        if (unlink(path) != 0) {
            w->broken = true;
            return wal_fail(err, n, WAL_ERR_IO, "wal: unlink %s: %s", path, strerror(errno));
        }
        wal_fd_release(w, s->fd);
        w->seg_count--;
    }
    int e = wal_fsync_fd(w, w->dir_fd);
    if (e) w->broken = true;
    if (e) return wal_fail(err, n, WAL_ERR_IO, "wal: fsync %s: %s", w->dir, strerror(e));
    return WAL_OK;
}

/* Cuts segment i to size bytes ending with entry last (term last_term), durably. */
static wal_status_t wal_seg_cut(wal_t *w, uint32_t i, uint64_t size, uint64_t last,
                                uint64_t last_term, char *err, size_t n) {
    wal_segment_t *s = &w->segs[i];
    cp_assert(s->fd >= 0);
    int e = ftruncate(s->fd, (off_t)size) == 0 ? wal_fsync_fd(w, s->fd) : errno;
    if (e) {
        w->broken = true;
        char path[PATH_MAX];
        wal_seg_path(w, s->first, path, sizeof path);
        return wal_fail(err, n, WAL_ERR_IO, "wal: truncate %s: %s", path, strerror(e));
    }
    s->size = size;
    s->last = last;
    s->last_term = last_term;
    return WAL_OK;
}

/* ---- reset: the marker and the file steps (the protocol: RESET in wal.h) ---- */

/* The calls of a reset that change files, each offered to options.fault first (tests inject
 * failures and crashes there). Each returns 0 or an errno. */
static int wal_fault(const wal_t *w, const char *call) {
    return w->opt.fault ? w->opt.fault(w->opt.fault_ctx, call) : 0;
}

static int wal_r_create(const wal_t *w, const char *path, int flags, int *fd) {
    *fd = -1;
    int e = wal_fault(w, "create");
    if (e) return e;
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | flags, 0600);
    return *fd < 0 ? errno : 0;
}

static int wal_r_write(const wal_t *w, int fd, const void *p, size_t n) {
    int e = wal_fault(w, "write");
    struct iovec iov = {(void *)(uintptr_t)p, n};
    return e ? e : wal_pwritev_all(fd, &iov, 1, 0);
}

static int wal_r_fsync(const wal_t *w, int fd) {
    int e = wal_fault(w, "fsync");
    return e ? e : wal_fsync_fd(w, fd);
}

static int wal_r_rename(const wal_t *w, const char *from, const char *to) {
    int e = wal_fault(w, "rename");
    return e ? e : rename(from, to) == 0 ? 0 : errno;
}

static int wal_r_unlink(const wal_t *w, const char *path) {
    int e = wal_fault(w, "unlink");
    return e ? e : unlink(path) == 0 ? 0 : errno;
}

static void wal_file_path(const wal_t *w, const char *name, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s", w->dir, name);
}

static void wal_marker_encode(uint8_t *rec, uint64_t index, uint64_t term) {
    uint32_t magic = WAL_RESET_MAGIC;
    memset(rec, 0, WAL_RESET_SIZE);
    memcpy(rec + 16, &index, 8);
    memcpy(rec + 24, &term, 8);
    memcpy(rec + 32, &magic, 4);
    u128 sum = wal_hash(rec + 16, WAL_RESET_SIZE - 16);
    memcpy(rec, &sum, 16);
}

/* Step 1: the marker written, synced, renamed into place, the directory synced. *renamed tells
 * whether the rename was made: from then on a crash may finish the reset, so a failure can no
 * longer be undone. Before it, the temporary file is removed and nothing has changed. */
static wal_status_t wal_reset_commit(wal_t *w, uint64_t index, uint64_t term, bool *renamed) {
    uint8_t rec[WAL_RESET_SIZE];
    wal_marker_encode(rec, index, term);
    char tmp[PATH_MAX], marker[PATH_MAX];
    wal_file_path(w, WAL_RESET_TMP, tmp, sizeof tmp);
    wal_file_path(w, WAL_RESET_NAME, marker, sizeof marker);
    *renamed = false;
    const char *what = "create";
    int fd, e = wal_r_create(w, tmp, O_TRUNC, &fd);
    bool created = fd >= 0;
    if (!e && (e = wal_r_write(w, fd, rec, sizeof rec))) what = "write";
    /* Synced before the rename: the name wal-reset must never point at a torn file, so that a
     * marker that does not verify can be called corruption. */
    if (!e && (e = wal_r_fsync(w, fd))) what = "fsync";
    if (created) close(fd);
    if (!e && (e = wal_r_rename(w, tmp, marker))) what = "rename";
    if (e) {
        if (created) wal_r_unlink(w, tmp); /* a leftover is removed by the next open anyway */
        return wal_fail(w->err, sizeof w->err, WAL_ERR_IO, "wal: reset: %s %s: %s", what, tmp,
                        strerror(e));
    }
    *renamed = true;
    /* The commit point is reached once the rename is durable; before this fsync returns, a
     * crash may still leave the old log. */
    if ((e = wal_r_fsync(w, w->dir_fd)))
        return wal_fail(w->err, sizeof w->err, WAL_ERR_IO, "wal: reset: fsync %s: %s", w->dir,
                        strerror(e));
    return WAL_OK;
}

/* Steps 2 and 3, once a marker for index is durable: every segment unlinked (in any order:
 * the marker voids them all; newest first all the same), the empty segment index + 1
 * created, the directory synced (the unlinks and the new segment must be on disk before the
 * marker that stands for them goes, or a crash could bring back old segments without it), the
 * marker unlinked, the directory synced (appends may begin only once the marker is gone for
 * good: while it exists, recovery deletes every segment). Segments are described by w->segs
 * (fds open or not). Whatever it returns, memory describes the reset log afterwards: on disk
 * the marker makes the next open finish the job. */
static wal_status_t wal_reset_files(wal_t *w, uint64_t index, uint64_t term, char *err, size_t n) {
    char path[PATH_MAX];
    const char *what = "unlink";
    int e = 0, fd = -1;
    for (uint32_t i = w->seg_count; i-- > 0 && !e;) {
        wal_seg_path(w, w->segs[i].first, path, sizeof path);
        e = wal_r_unlink(w, path);
    }
    if (!e) {
        wal_seg_path(w, index + 1, path, sizeof path);
        if ((e = wal_r_create(w, path, O_EXCL, &fd))) what = "create";
    }
    if (!e && (e = wal_r_fsync(w, w->dir_fd)))
        what = "fsync", snprintf(path, sizeof path, "%s", w->dir);
    /* The old fds go (a running sync's stay open until its wal_sync_end). */
    for (uint32_t i = 0; i < w->seg_count; i++) wal_fd_release(w, w->segs[i].fd);
    w->segs[0] =
        (wal_segment_t){.first = index + 1, .last = index, .last_term = term, .size = 0, .fd = fd};
    w->seg_count = 1;
    w->last_index = index;
    w->last_term = w->base_term = term;
    if (!e) {
        wal_file_path(w, WAL_RESET_NAME, path, sizeof path);
        e = wal_r_unlink(w, path);
    }
    if (!e && (e = wal_r_fsync(w, w->dir_fd)))
        what = "fsync", snprintf(path, sizeof path, "%s", w->dir);
    if (e) return wal_fail(err, n, WAL_ERR_IO, "wal: reset: %s %s: %s", what, path, strerror(e));
    return WAL_OK;
}

/* ---- open: directory, lock, listing ---- */

static wal_status_t wal_alloc(const char *dir, const wal_options_t *opt, wal_t **out, char *err,
                              size_t n) {
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    if (len == 0 || len > WAL_DIR_MAX)
        return wal_fail(err, n, WAL_ERR_INVALID, "wal: bad directory name \"%s\"", dir);
    wal_options_t o = opt ? *opt : (wal_options_t){0};
    if (o.segment_size == 0) o.segment_size = WAL_SEGMENT_SIZE_DEFAULT;
    if (o.first_index == 0) o.first_index = 1;
    if (o.segments_max == 0) o.segments_max = WAL_SEGMENTS_MAX_DEFAULT;
    if (o.first_index > UINT64_MAX / 2)
        return wal_fail(err, n, WAL_ERR_INVALID, "wal: first_index too large");
    wal_t *w = calloc(1, sizeof *w);
    if (w) w->segs = calloc(o.segments_max, sizeof *w->segs);
    if (w) w->reader.buf = malloc(WAL_READ_BUF);
    if (!w || !w->segs || !w->reader.buf) {
        if (w) free(w->segs);
        free(w);
        return wal_fail(err, n, WAL_ERR_NOMEM, "wal: out of memory");
    }
    w->opt = o;
    memcpy(w->dir, dir, len);
    w->dir[len] = 0;
    w->dir_fd = -1;
    w->reader.cap = WAL_READ_BUF;
    w->reader.fd = -1;
    *out = w;
    return WAL_OK;
}

static void wal_free(wal_t *w) {
    if (!w) return;
    for (uint32_t i = 0; i < w->seg_count; i++)
        if (w->segs[i].fd >= 0) close(w->segs[i].fd);
    if (w->dir_fd >= 0) close(w->dir_fd);
    free(w->reader.buf);
    free(w->segs);
    free(w);
}

/* fsyncs the directory that holds path, after path was created in it. */
static wal_status_t wal_fsync_parent(const wal_t *w, const char *path, char *err, size_t n) {
    char parent[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(parent, sizeof parent, ".");
    else if (slash == path)
        snprintf(parent, sizeof parent, "/");
    else
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - path), path);
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int e = fd < 0 ? errno : wal_fsync_fd(w, fd);
    if (fd >= 0) close(fd);
    if (e) return wal_fail(err, n, WAL_ERR_IO, "wal: fsync %s: %s", parent, strerror(e));
    return WAL_OK;
}

/* mkdir -p, fsyncing the parent of each directory created so that the log's own directory
 * entry is durable too. */
static wal_status_t wal_mkdirs(const wal_t *w, char *err, size_t n) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", w->dir);
    size_t len = strlen(path);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != 0) continue;
        path[i] = 0;
        if (mkdir(path, 0700) == 0) {
            wal_status_t st = wal_fsync_parent(w, path, err, n);
            if (st != WAL_OK) return st;
        } else if (errno != EEXIST) {
            return wal_fail(err, n, WAL_ERR_IO, "wal: mkdir %s: %s", path, strerror(errno));
        }
        if (i < len) path[i] = '/';
    }
    return WAL_OK;
}

static wal_status_t wal_lock_dir(wal_t *w, char *err, size_t n) {
    w->dir_fd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dir_fd < 0 && errno == ENOENT) {
        wal_status_t st = wal_mkdirs(w, err, n);
        if (st != WAL_OK) return st;
        w->dir_fd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (w->dir_fd < 0)
        return wal_fail(err, n, WAL_ERR_IO, "wal: open %s: %s", w->dir, strerror(errno));
    if (flock(w->dir_fd, LOCK_EX | LOCK_NB) != 0)
        return wal_fail(err, n, errno == EWOULDBLOCK ? WAL_ERR_LOCKED : WAL_ERR_IO,
                        "wal: lock %s: %s", w->dir,
                        errno == EWOULDBLOCK ? "in use by another wal" : strerror(errno));
    return WAL_OK;
}

static int wal_seg_cmp(const void *a, const void *b) {
    uint64_t x = ((const wal_segment_t *)a)->first, y = ((const wal_segment_t *)b)->first;
    return (x > y) - (x < y);
}

/* Fills w->segs with the segment files, sorted by first index. Nothing is opened yet. */
static wal_status_t wal_list(wal_t *w, char *err, size_t n) {
    DIR *d = fdopendir(dup(w->dir_fd));
    if (!d) return wal_fail(err, n, WAL_ERR_IO, "wal: list %s: %s", w->dir, strerror(errno));
    wal_status_t st = WAL_OK;
    struct dirent *e;
    while (st == WAL_OK && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len != WAL_NAME_LEN || memcmp(e->d_name, "wal-", 4) != 0 ||
            memcmp(e->d_name + len - 4, ".log", 4) != 0)
            continue; /* not ours */
        uint64_t first = wal_parse_name(e->d_name);
        if (first == 0 || first > UINT64_MAX / 2)
            st = wal_fail(err, n, WAL_ERR_CORRUPT, "wal: %s/%s: not a valid segment name", w->dir,
                          e->d_name);
        else if (w->seg_count == w->opt.segments_max)
            st = wal_fail(err, n, WAL_ERR_FULL,
                          "wal: %s has more than segments_max (%" PRIu32 ") segments", w->dir,
                          w->opt.segments_max);
        else
            w->segs[w->seg_count++] = (wal_segment_t){.first = first, .last = first - 1, .fd = -1};
    }
    closedir(d);
    if (st == WAL_OK) qsort(w->segs, w->seg_count, sizeof *w->segs, wal_seg_cmp);
    return st;
}

/* An interrupted reset (RESET in wal.h): *pending and the marker's index and term when a
 * committed one is there. A marker that does not verify fails the open before anything
 * changes; a temporary one (a reset that never committed) is removed. */
static wal_status_t wal_reset_pending(wal_t *w, bool *pending, uint64_t *index, uint64_t *term,
                                      char *err, size_t n) {
    char path[PATH_MAX];
    wal_file_path(w, WAL_RESET_NAME, path, sizeof path);
    *pending = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT)
        return wal_fail(err, n, WAL_ERR_IO, "wal: open %s: %s", path, strerror(errno));
    if (fd >= 0) {
        uint8_t rec[WAL_RESET_SIZE + 1] = {0};
        ssize_t got = pread(fd, rec, sizeof rec, 0);
        int e = errno;
        close(fd);
        if (got < 0) return wal_fail(err, n, WAL_ERR_IO, "wal: read %s: %s", path, strerror(e));
        u128 sum;
        uint32_t magic = 0, zero = 0;
        memcpy(&sum, rec, 16);
        memcpy(index, rec + 16, 8);
        memcpy(term, rec + 24, 8);
        memcpy(&magic, rec + 32, 4);
        memcpy(&zero, rec + 36, 4);
        if (got != WAL_RESET_SIZE || magic != WAL_RESET_MAGIC || zero != 0 ||
            sum != wal_hash(rec + 16, WAL_RESET_SIZE - 16) || *index >= UINT64_MAX / 2)
            return wal_fail(err, n, WAL_ERR_CORRUPT,
                            "wal: %s is damaged: a reset of the log was under way and whether "
                            "its segments were already removed is unknown; refusing to open",
                            path);
        *pending = true;
    }
    wal_file_path(w, WAL_RESET_TMP, path, sizeof path);
    if (unlink(path) == 0) wal_log(w, "wal: removing %s (a reset that never committed)", path);
    return WAL_OK;
}

/* ---- open: recovery ---- */

typedef enum wal_stop {
    WAL_STOP_NONE,  /* the chain ran to the end of the last segment */
    WAL_STOP_BAD,   /* bytes that are not a valid entry */
    WAL_STOP_INDEX, /* a valid entry with another index than the next */
    WAL_STOP_TERM,  /* a valid entry whose term goes backwards */
    WAL_STOP_NAME,  /* a segment named for another index than the next */
} wal_stop_t;

/* Where the valid chain stopped, and why. */
typedef struct wal_scan {
    wal_stop_t kind;
    uint32_t seg;
    uint64_t off;
    uint64_t file_size; /* of that segment */
    uint64_t expected;  /* the index the chain needed there */
    uint64_t term;      /* the chain's last term */
    const char *why;    /* WAL_STOP_BAD */
    wal_entry_t h;      /* WAL_STOP_INDEX, WAL_STOP_TERM: the entry found */
} wal_scan_t;

/* A valid entry after the stop point. */
typedef struct wal_hit {
    bool found;
    uint32_t seg;
    uint64_t off;
    uint64_t index;
} wal_hit_t;

static wal_status_t wal_open_ro(wal_t *w, uint32_t i, uint64_t *size, char *err, size_t n) {
    char path[PATH_MAX];
    wal_seg_path(w, w->segs[i].first, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return wal_fail(err, n, WAL_ERR_IO, "wal: open %s: %s", path, strerror(e));
    }
    wal_reader_reset(&w->reader, fd, (uint64_t)st.st_size);
    *size = (uint64_t)st.st_size;
    return WAL_OK;
}

static wal_status_t wal_read_error(const wal_t *w, uint32_t i, int e, char *err, size_t n) {
    char path[PATH_MAX];
    wal_seg_path(w, w->segs[i].first, path, sizeof path);
    return wal_fail(err, n, WAL_ERR_IO, "wal: read %s: %s", path, strerror(e));
}

/* Follows the chain through segment i; sets sc->kind when it stops there. */
static wal_status_t wal_scan_segment(wal_t *w, uint32_t i, wal_scan_t *sc, char *err, size_t n) {
    wal_segment_t *s = &w->segs[i];
    if (i == 0) sc->expected = s->first;
    if (s->first != sc->expected) {
        *sc = (wal_scan_t){
            .kind = WAL_STOP_NAME, .seg = i, .expected = sc->expected, .term = sc->term};
        return WAL_OK;
    }
    uint64_t size, off = 0;
    wal_status_t st = wal_open_ro(w, i, &size, err, n);
    if (st != WAL_OK) return st;
    while (off < size) {
        wal_found_t f = {0};
        wal_check_t c = wal_check_entry(&w->reader, off, &f);
        if (c == WAL_CHECK_IO) {
            st = wal_read_error(w, i, f.err_no, err, n);
            break;
        }
        sc->kind = c == WAL_CHECK_BAD          ? WAL_STOP_BAD
                   : f.h.index != sc->expected ? WAL_STOP_INDEX
                   : f.h.term < sc->term       ? WAL_STOP_TERM
                                               : WAL_STOP_NONE;
        sc->why = f.why;
        sc->h = f.h;
        if (sc->kind != WAL_STOP_NONE) break;
        off += wal_entry_size(f.h.body_size);
        sc->expected++;
        sc->term = f.h.term;
    }
    close(w->reader.fd);
    sc->seg = i;
    sc->off = off;
    sc->file_size = size;
    *s = (wal_segment_t){
        .first = s->first, .last = sc->expected - 1, .last_term = sc->term, .size = off, .fd = -1};
    return st;
}

/* Searches every 8-aligned offset from (segment i, off) to the end of the log for a valid
 * entry. Slow (a hash per 8 bytes), but only run where the chain stopped. */
static wal_status_t wal_search_valid(wal_t *w, uint32_t i, uint64_t off, wal_hit_t *hit, char *err,
                                     size_t n) {
    *hit = (wal_hit_t){0};
    for (; i < w->seg_count && !hit->found; i++, off = 0) {
        uint64_t size;
        wal_status_t st = wal_open_ro(w, i, &size, err, n);
        if (st != WAL_OK) return st;
        for (uint64_t o = off; o + WAL_HEADER_SIZE <= size; o += 8) {
            wal_found_t f;
            wal_check_t c = wal_check_entry(&w->reader, o, &f);
            if (c == WAL_CHECK_IO) st = wal_read_error(w, i, f.err_no, err, n);
            if (c == WAL_CHECK_OK) *hit = (wal_hit_t){true, i, o, f.h.index};
            if (c != WAL_CHECK_BAD) break;
        }
        close(w->reader.fd);
        if (st != WAL_OK) return st;
    }
    return WAL_OK;
}

static wal_status_t wal_corruption(const wal_t *w, const wal_scan_t *sc, const wal_hit_t *hit,
                                   char *err, size_t n) {
    char at[PATH_MAX], next[PATH_MAX];
    wal_seg_path(w, w->segs[sc->seg].first, at, sizeof at);
    wal_seg_path(w, w->segs[hit->seg].first, next, sizeof next);
    switch (sc->kind) {
    case WAL_STOP_INDEX:
        return wal_fail(err, n, WAL_ERR_CORRUPT,
                        "wal: %s at offset %" PRIu64 " holds index %" PRIu64 " where index %" PRIu64
                        " belongs: entries missing or out of "
                        "order",
                        at, sc->off, sc->h.index, sc->expected);
    case WAL_STOP_TERM:
        return wal_fail(err, n, WAL_ERR_CORRUPT,
                        "wal: %s at offset %" PRIu64 ": index %" PRIu64 " has term %" PRIu64
                        ", below the term %" PRIu64 " before it",
                        at, sc->off, sc->h.index, sc->h.term, sc->term);
    case WAL_STOP_NAME:
        return wal_fail(err, n, WAL_ERR_CORRUPT,
                        "wal: missing entries: the log reaches index %" PRIu64
                        " but the next segment is %s (a valid entry, index %" PRIu64
                        ", at %s offset %" PRIu64 ")",
                        sc->expected - 1, at, hit->index, next, hit->off);
    default:
        return wal_fail(err, n, WAL_ERR_CORRUPT,
                        "wal: corrupt entry in %s at offset %" PRIu64 " (index %" PRIu64
                        "): %s; a valid entry (index %" PRIu64 ") follows in "
                        "%s at offset %" PRIu64 ", so this is not a torn tail: refusing to open",
                        at, sc->off, sc->expected, sc->why ? sc->why : "?", hit->index, next,
                        hit->off);
    }
}

/* A torn tail: removes what follows the stop point (no valid entry does) and reports it. */
static wal_status_t wal_repair_tail(wal_t *w, const wal_scan_t *sc, char *err, size_t n) {
    char at[PATH_MAX];
    wal_seg_path(w, w->segs[sc->seg].first, at, sizeof at);
    bool drop_stop = sc->off == 0 && sc->seg > 0;
    const char *why = sc->kind == WAL_STOP_NAME ? "segment named for another index" : sc->why;
    wal_log(w,
            "wal: torn tail at %s offset %" PRIu64 " (index %" PRIu64 "): %s; no valid entry "
            "follows: %s",
            at, sc->off, sc->expected, why, drop_stop ? "removing the segment" : "truncating");
    for (uint32_t i = w->seg_count - 1; i > sc->seg; i--) {
        char path[PATH_MAX];
        wal_seg_path(w, w->segs[i].first, path, sizeof path);
        wal_log(w, "wal: removing %s (after the torn tail)", path);
    }
    wal_status_t st = wal_seg_remove_from(w, drop_stop ? sc->seg : sc->seg + 1, err, n);
    if (st != WAL_OK || drop_stop) return st;
    wal_log(w, "wal: truncating %s from %" PRIu64 " to %" PRIu64 " bytes", at, sc->file_size,
            sc->off);
    wal_segment_t *s = &w->segs[sc->seg];
    st = wal_seg_open(w, s, err, n);
    if (st != WAL_OK) return st;
    return wal_seg_cut(w, sc->seg, sc->off, s->last, s->last_term, err, n);
}

/* What was read may sit only in the page cache (the previous process crashed before its
 * sync), so everything is synced before it is reported durable. Keeps the last fd open. */
static wal_status_t wal_sync_all(wal_t *w, char *err, size_t n) {
    for (uint32_t i = 0; i < w->seg_count; i++) {
        wal_segment_t *s = &w->segs[i];
        wal_status_t st = wal_seg_open(w, s, err, n);
        if (st != WAL_OK) return st;
        int e = w->opt.no_sync || fdatasync(s->fd) == 0 ? 0 : errno;
        if (e)
            return wal_fail(err, n, WAL_ERR_IO, "wal: fdatasync segment %" PRIu64 ": %s", s->first,
                            strerror(e));
        if (i + 1 < w->seg_count) close(s->fd), s->fd = -1;
    }
    int e = wal_fsync_fd(w, w->dir_fd);
    if (e) return wal_fail(err, n, WAL_ERR_IO, "wal: fsync %s: %s", w->dir, strerror(e));
    return WAL_OK;
}

static wal_status_t wal_recover(wal_t *w, char *err, size_t n) {
    wal_scan_t sc = {.kind = WAL_STOP_NONE};
    wal_status_t st = WAL_OK;
    for (uint32_t i = 0; i < w->seg_count && sc.kind == WAL_STOP_NONE && st == WAL_OK; i++)
        st = wal_scan_segment(w, i, &sc, err, n);
    if (st == WAL_OK && sc.kind != WAL_STOP_NONE) {
        wal_hit_t hit;
        st = wal_search_valid(w, sc.seg, sc.off, &hit, err, n);
        if (st == WAL_OK && hit.found) return wal_corruption(w, &sc, &hit, err, n);
        if (st == WAL_OK) st = wal_repair_tail(w, &sc, err, n);
    }
    if (st == WAL_OK) st = wal_sync_all(w, err, n);
    if (st != WAL_OK) return st;
    w->last_index = w->segs[w->seg_count - 1].last;
    w->last_term = sc.term;
    return WAL_OK;
}

wal_status_t wal_open(const char *dir, const wal_options_t *opt, wal_t **out, char *err,
                      size_t err_size) {
    cp_assert(dir != NULL && out != NULL && (err != NULL || err_size == 0));
    *out = NULL;
    if (err_size > 0) err[0] = 0;
    wal_t *w = NULL;
    wal_status_t st = wal_alloc(dir, opt, &w, err, err_size);
    if (st == WAL_OK) st = wal_lock_dir(w, err, err_size);
    bool reset = false;
    uint64_t reset_index = 0, reset_term = 0;
    if (st == WAL_OK) st = wal_reset_pending(w, &reset, &reset_index, &reset_term, err, err_size);
    if (st == WAL_OK) st = wal_list(w, err, err_size);
    if (st == WAL_OK && reset) {
        wal_log(w,
                "wal: finishing an interrupted reset to index %" PRIu64 " (term %" PRIu64
                "): removing %" PRIu32 " segment(s), the log continues at %" PRIu64,
                reset_index, reset_term, w->seg_count, reset_index + 1);
        /* Term 0, not the marker's: the same log opened after a clean reset reads 0 too. */
        st = wal_reset_files(w, reset_index, 0, err, err_size);
    } else if (st == WAL_OK && w->seg_count == 0) {
        st = wal_seg_create(w, w->opt.first_index, true, err, err_size);
        if (st == WAL_OK) w->last_index = w->opt.first_index - 1;
    } else if (st == WAL_OK) {
        st = wal_recover(w, err, err_size);
    }
    if (st != WAL_OK) {
        wal_free(w);
        return st;
    }
    w->durable_index = w->captured_index = w->last_index;
    cp_assert(w->segs[w->seg_count - 1].fd >= 0);
    *out = w;
    return WAL_OK;
}

void wal_close(wal_t *w) {
    if (!w) return;
    cp_assert(!w->syncing && w->iters_open == 0);
    wal_free(w);
}

uint64_t wal_first_index(const wal_t *w) {
    return w->segs[0].first;
}
uint64_t wal_last_index(const wal_t *w) {
    return w->last_index;
}
uint64_t wal_last_term(const wal_t *w) {
    return w->last_term;
}
uint64_t wal_durable_index(const wal_t *w) {
    return w->durable_index;
}
const char *wal_error(const wal_t *w) {
    return w->err;
}
uint32_t wal_segment_count(const wal_t *w) {
    return w->seg_count;
}

/* ---- append ---- */

wal_status_t wal_append(wal_t *w, uint64_t term, uint64_t timestamp, const void *body,
                        uint32_t size, uint64_t *index) {
    cp_assert(w != NULL && (body != NULL || size == 0));
    cp_assert(term >= w->last_term);
    if (w->broken) return wal_fail(w->err, sizeof w->err, WAL_ERR_BROKEN, "wal: broken");
    if (size > WAL_BODY_MAX)
        return wal_fail(w->err, sizeof w->err, WAL_ERR_TOO_BIG,
                        "wal: body of %" PRIu32 " bytes above WAL_BODY_MAX", size);
    wal_segment_t *s = &w->segs[w->seg_count - 1];
    if (s->size >= w->opt.segment_size && s->last >= s->first) {
        wal_status_t st = wal_seg_create(w, w->last_index + 1, false, w->err, sizeof w->err);
        if (st != WAL_OK) return st;
        wal_close_durable(w);
        s = &w->segs[w->seg_count - 1];
    }
    wal_entry_t h = {.index = w->last_index + 1,
                     .term = term,
                     .timestamp = timestamp,
                     .body_size = size,
                     .magic = WAL_MAGIC};
    h.checksum_body = wal_hash(body, size);
    h.checksum = wal_hash((const uint8_t *)&h + 16, WAL_HEADER_SIZE - 16);
    static const uint8_t zeros[8];
    uint64_t total = wal_entry_size(size);
    struct iovec iov[3] = {{&h, WAL_HEADER_SIZE},
                           {(void *)(uintptr_t)body, size},
                           {(void *)(uintptr_t)zeros, total - WAL_HEADER_SIZE - size}};
    int e = wal_pwritev_all(s->fd, iov, 3, s->size);
    if (e) {
        /* Cut the partial entry so a later sync cannot persist it; if even that fails, memory
         * and disk disagree. */
        if (ftruncate(s->fd, (off_t)s->size) != 0) w->broken = true;
        return wal_fail(w->err, sizeof w->err, WAL_ERR_IO, "wal: write segment %" PRIu64 ": %s",
                        s->first, strerror(e));
    }
    s->size += total;
    s->last = h.index;
    s->last_term = term;
    w->last_index = h.index;
    w->last_term = term;
    if (index) *index = h.index;
    return WAL_OK;
}

/* ---- group commit ---- */

bool wal_sync_begin(wal_t *w, wal_sync_t *s) {
    cp_assert(w != NULL && s != NULL && !w->syncing);
    *s = (wal_sync_t){
        .index = w->captured_index, .gen = w->gen, .dir_fd = -1, .no_sync = w->opt.no_sync};
    w->syncing = true;
    w->sync_fd_count = 0;
    if (w->broken) return false;
    if (w->captured_index < w->last_index) {
        uint64_t from = w->captured_index + 1;
        for (uint32_t i = wal_seg_find(w, from); i < w->seg_count && s->fd_count < WAL_SYNC_FDS_MAX;
             i++) {
            const wal_segment_t *seg = &w->segs[i];
            if (seg->last < seg->first) continue; /* the empty last segment */
            cp_assert(seg->fd >= 0);
            s->fds[s->fd_count++] = seg->fd;
            s->index = seg->last;
        }
    }
    if (w->dir_dirty) s->dir_fd = w->dir_fd;
    w->dir_dirty = false;
    w->captured_index = s->index;
    memcpy(w->sync_fds, s->fds, sizeof s->fds);
    w->sync_fd_count = s->fd_count;
    return s->fd_count > 0 || s->dir_fd >= 0;
}

wal_status_t wal_sync_run(wal_sync_t *s) {
    cp_assert(s != NULL && s->fd_count <= WAL_SYNC_FDS_MAX);
    if (s->no_sync) return WAL_OK;
    for (uint32_t i = 0; i < s->fd_count; i++) {
        if (fdatasync(s->fds[i]) != 0) {
            s->err_no = errno;
            return WAL_ERR_IO;
        }
    }
    if (s->dir_fd >= 0 && fsync(s->dir_fd) != 0) {
        s->err_no = errno;
        return WAL_ERR_IO;
    }
    return WAL_OK;
}

void wal_sync_end(wal_t *w, wal_sync_t *s, wal_status_t rc) {
    cp_assert(w != NULL && s != NULL && w->syncing);
    w->syncing = false;
    w->sync_fd_count = 0;
    for (uint32_t i = 0; i < w->zombie_count; i++) close(w->zombies[i]);
    w->zombie_count = 0;
    if (rc != WAL_OK) {
        /* Never retried: after a failed fsync the dirty pages may be dropped and the error
         * cleared, so a second fsync could succeed over lost data. */
        w->broken = true;
        wal_fail(w->err, sizeof w->err, WAL_ERR_BROKEN,
                 "wal: sync failed (%s): durability "
                 "unknown; close and reopen",
                 s->err_no ? strerror(s->err_no) : wal_status_str(rc));
        return;
    }
    /* Broken: the capture that moved captured_index may be the one that failed. */
    if (w->broken) return;
    if (s->gen == w->gen && s->index > w->durable_index) {
        cp_assert(s->index <= w->last_index);
        w->durable_index = s->index;
    }
    wal_close_durable(w);
}

/* ---- truncate, release ---- */

/* Where entry index + 1 starts in segment k, and the term of entry index. */
static wal_status_t wal_locate_cut(wal_t *w, uint32_t k, uint64_t index, uint64_t *off,
                                   uint64_t *term) {
    wal_segment_t *s = &w->segs[k];
    wal_status_t st = wal_seg_open(w, s, w->err, sizeof w->err);
    if (st != WAL_OK) return st;
    char path[PATH_MAX];
    wal_seg_path(w, s->first, path, sizeof path);
    wal_reader_reset(&w->reader, s->fd, s->size);
    st = wal_walk(&w->reader, path, s->first, index + 1, off, term, w->err, sizeof w->err);
    if (st == WAL_OK && index + 1 == s->first)
        *term = k > 0 ? w->segs[k - 1].last_term : w->base_term;
    return st;
}

wal_status_t wal_truncate_after(wal_t *w, uint64_t index) {
    cp_assert(w != NULL && w->iters_open == 0);
    if (w->broken) return wal_fail(w->err, sizeof w->err, WAL_ERR_BROKEN, "wal: broken");
    if (index + 1 < wal_first_index(w) || index > w->last_index)
        return wal_fail(w->err, sizeof w->err, WAL_ERR_RANGE,
                        "wal: truncate after %" PRIu64 ": outside [%" PRIu64 ", %" PRIu64 "]",
                        index, wal_first_index(w) - 1, w->last_index);
    if (index == w->last_index) return WAL_OK;
    uint32_t k = wal_seg_find(w, index + 1);
    /* Entry index + 1 opening a segment other than the first: drop that segment whole. */
    bool drop_k = k > 0 && w->segs[k].first == index + 1;
    uint32_t kept = drop_k ? k - 1 : k;
    uint64_t cut = 0, term = 0;
    wal_status_t st = drop_k ? wal_seg_open(w, &w->segs[kept], w->err, sizeof w->err)
                             : wal_locate_cut(w, k, index, &cut, &term);
    if (st == WAL_OK) st = wal_seg_remove_from(w, kept + 1, w->err, sizeof w->err);
    if (st == WAL_OK && !drop_k) st = wal_seg_cut(w, k, cut, index, term, w->err, sizeof w->err);
    if (st != WAL_OK) return st;
    cp_assert(w->segs[w->seg_count - 1].last == index);
    w->last_index = index;
    w->last_term = w->segs[w->seg_count - 1].last_term;
    if (w->durable_index > index) w->durable_index = index;
    /* A running sync may cover entries that are gone now; it counts for nothing (gen), and
     * what it would have covered below index must be captured again. */
    w->captured_index = w->durable_index;
    w->dir_dirty |= w->syncing;
    w->gen++;
    return WAL_OK;
}

wal_status_t wal_release_before(wal_t *w, uint64_t index) {
    cp_assert(w != NULL);
    if (w->broken) return wal_fail(w->err, sizeof w->err, WAL_ERR_BROKEN, "wal: broken");
    uint32_t gone = 0;
    wal_status_t st = WAL_OK;
    while (gone + 1 < w->seg_count && w->segs[gone].last < index) {
        char path[PATH_MAX];
        wal_seg_path(w, w->segs[gone].first, path, sizeof path);
        if (unlink(path) != 0) {
            st = wal_fail(w->err, sizeof w->err, WAL_ERR_IO, "wal: unlink %s: %s", path,
                          strerror(errno));
            break;
        }
        /* One directory fsync per unlink: a crash must not bring back an older segment after
         * a newer one is gone, which would read as a gap. */
        int e = wal_fsync_fd(w, w->dir_fd);
        if (e) {
            w->broken = true;
            st = wal_fail(w->err, sizeof w->err, WAL_ERR_IO, "wal: fsync %s: %s", w->dir,
                          strerror(e));
        }
        wal_fd_release(w, w->segs[gone].fd);
        w->base_term = w->segs[gone].last_term;
        gone++;
        if (e) break;
    }
    memmove(w->segs, w->segs + gone, (w->seg_count - gone) * sizeof *w->segs);
    w->seg_count -= gone;
    return st;
}

wal_status_t wal_reset(wal_t *w, uint64_t index, uint64_t term) {
    cp_assert(w != NULL && w->iters_open == 0);
    if (w->broken) return wal_fail(w->err, sizeof w->err, WAL_ERR_BROKEN, "wal: broken");
    /* index + 1 names the new segment; wal_list rejects names above UINT64_MAX / 2. */
    if (index >= UINT64_MAX / 2)
        return wal_fail(w->err, sizeof w->err, WAL_ERR_RANGE,
                        "wal: reset to %" PRIu64 ": index too large", index);
    bool renamed;
    wal_status_t st = wal_reset_commit(w, index, term, &renamed);
    if (!renamed) return st; /* nothing changed: the old log stands */
    if (st == WAL_OK) st = wal_reset_files(w, index, term, w->err, sizeof w->err);
    /* A running sync covers entries that are gone, and possibly fds of unlinked files: it
     * counts for nothing (gen), whichever index it captured, even one the new log reaches
     * again by later appends. */
    w->gen++;
    if (st != WAL_OK) {
        /* Memory and disk may disagree (the disk holds the old log, or a committed marker the
         * next open acts on): only a restart can tell which. */
        w->broken = true;
        if (w->durable_index > w->last_index) w->durable_index = w->last_index;
        w->captured_index = w->durable_index;
        return st;
    }
    /* Every entry up to index is gone or covered by the caller's snapshot, so nothing up to it
     * can be lost any more; the new segment's name is durable (step 2's directory fsync). */
    w->durable_index = w->captured_index = index;
    w->dir_dirty = false;
    return WAL_OK;
}

/* ---- iteration ---- */

__attribute__((format(printf, 3, 4))) static int wal_iter_fail(wal_iter_t *it, wal_status_t st,
                                                               const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->err, sizeof it->err, fmt, ap);
    va_end(ap);
    it->status = st;
    return -1;
}

wal_status_t wal_iter_open(wal_t *w, uint64_t from, wal_iter_t *it) {
    cp_assert(w != NULL && it != NULL);
    *it = (wal_iter_t){.wal = w, .next = from, .reader = {.fd = -1, .cap = WAL_READ_BUF}};
    if (from < wal_first_index(w) || from > w->last_index + 1)
        return wal_fail(w->err, sizeof w->err, WAL_ERR_RANGE,
                        "wal: iterate from %" PRIu64 ": outside [%" PRIu64 ", %" PRIu64 "]", from,
                        wal_first_index(w), w->last_index + 1);
    it->reader.buf = malloc(WAL_READ_BUF);
    if (!it->reader.buf) return wal_fail(w->err, sizeof w->err, WAL_ERR_NOMEM, "wal: no memory");
    w->iters_open++;
    return WAL_OK;
}

/* Opens the segment holding it->next (own read-only fd: the log may close or remove its
 * own) and finds the entry's offset, unless the iterator is already there. */
static int wal_iter_position(wal_iter_t *it, const wal_segment_t *s) {
    if (it->seg_first == s->first) return 0;
    if (it->reader.fd >= 0) close(it->reader.fd);
    it->seg_first = 0;
    char path[PATH_MAX];
    wal_seg_path(it->wal, s->first, path, sizeof path);
    it->reader.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (it->reader.fd < 0)
        return wal_iter_fail(it, WAL_ERR_IO, "wal: open %s: %s", path, strerror(errno));
    wal_reader_reset(&it->reader, it->reader.fd, s->size);
    uint64_t term;
    wal_status_t st = wal_walk(&it->reader, path, s->first, it->next, &it->offset, &term, it->err,
                               sizeof it->err);
    if (st != WAL_OK) return it->status = st, -1;
    it->seg_first = s->first;
    return 0;
}

int wal_iter_next(wal_iter_t *it, wal_entry_t *hdr, void *body, uint32_t cap) {
    cp_assert(it != NULL && it->wal != NULL && hdr != NULL && (body != NULL || cap == 0));
    wal_t *w = it->wal;
    it->status = WAL_OK;
    if (it->next > w->last_index) return 0;
    if (it->next < wal_first_index(w))
        return wal_iter_fail(it, WAL_ERR_RANGE, "wal: index %" PRIu64 " was released", it->next);
    const wal_segment_t *s = &w->segs[wal_seg_find(w, it->next)];
    if (wal_iter_position(it, s) != 0) return -1;
    it->reader.limit = s->size; /* grows with appends */
    wal_found_t f = {0};
    wal_check_t c = wal_check_header(&it->reader, it->offset, &f);
    if (c == WAL_CHECK_OK && f.h.index != it->next) c = wal_bad(&f, "unexpected index");
    if (c == WAL_CHECK_OK) {
        *hdr = f.h;
        if (f.h.body_size > cap)
            return wal_iter_fail(it, WAL_ERR_TOO_BIG,
                                 "wal: index %" PRIu64 ": body of %" PRIu32
                                 " bytes, buffer of %" PRIu32,
                                 it->next, f.h.body_size, cap);
        c = wal_check_body(&it->reader, it->offset, &f, body);
    }
    if (c == WAL_CHECK_IO)
        return wal_iter_fail(it, WAL_ERR_IO, "wal: read segment %" PRIu64 ": %s", s->first,
                             strerror(f.err_no));
    if (c != WAL_CHECK_OK)
        return wal_iter_fail(it, WAL_ERR_CORRUPT,
                             "wal: segment %" PRIu64 " offset %" PRIu64 " (index %" PRIu64 "): %s",
                             s->first, it->offset, it->next, f.why);
    it->offset += wal_entry_size(f.h.body_size);
    it->next++;
    return 1;
}

void wal_iter_close(wal_iter_t *it) {
    if (!it || !it->wal) return;
    if (it->reader.fd >= 0) close(it->reader.fd);
    if (it->reader.buf) {
        free(it->reader.buf);
        cp_assert(it->wal->iters_open > 0);
        it->wal->iters_open--;
    }
    *it = (wal_iter_t){0};
}

/* The write-ahead log of a cell: the storage under its Raft log (and, today, under a
 * single-replica durable cell). Its one promise: an entry the log has reported durable
 * (wal_durable_index) survives any crash; everything else may be lost, never altered.
 *
 * ON DISK
 * A directory of segment files `wal-<index of their first entry, 20 digits>.log`. The last
 * segment takes the appends; once it holds at least one entry and options.segment_size bytes,
 * the next append starts a new segment. Entries never span segments, and indexes are 1-based
 * and consecutive across all segments. Other file names in the directory are ignored, except
 * the reset marker below.
 *
 * A segment is a sequence of entries and nothing else (no segment header: the name carries
 * the first index, and an empty file is a valid, empty segment). An entry is a 64-byte header,
 * the body (opaque to the log, at most WAL_BODY_MAX bytes), then zero bytes up to the next
 * multiple of 8. The header, little-endian:
 *
 *     [ 0, 16) u128 checksum       XXH3-128 of header bytes [16, 64)
 *     [16, 32) u128 checksum_body  XXH3-128 of the body_size body bytes (padding excluded)
 *     [32, 40) u64  index          1-based, consecutive
 *     [40, 48) u64  term           never below the previous entry's term
 *     [48, 56) u64  timestamp      the leader's; not checked by the log
 *     [56, 60) u32  body_size      at most WAL_BODY_MAX
 *     [60, 64) u32  magic          WAL_MAGIC ("CPWL")
 *
 * The header checksum covers checksum_body, so header and body are bound together. An entry
 * is valid when its magic, both checksums, its size bounds and its zero padding all check.
 *
 * While a reset (wal_reset) is under way the directory also holds its marker, `wal-reset`
 * (written as `wal-reset.tmp`, then renamed), 40 bytes, little-endian:
 *
 *     [ 0, 16) u128 checksum       XXH3-128 of bytes [16, 40)
 *     [16, 24) u64  index          the log continues at index + 1
 *     [24, 32) u64  term           the reset's term (reported, not needed to finish it)
 *     [32, 36) u32  magic          WAL_RESET_MAGIC ("CPWR")
 *     [36, 40) u32  zero
 *
 * RESET (wal_reset)
 * Replacing every segment by one empty segment named index + 1 takes several file operations,
 * and recovery must never see some old segments next to the new one: old ones above index + 1
 * would read as a gap (corruption: the node would refuse to start), old ones below it as a log
 * that ends before the snapshot. So the reset commits through the marker:
 *   1. write wal-reset.tmp, fsync it, rename it to wal-reset, fsync the directory. The
 *      rename is the commit point: wal-reset only ever names a complete, synced file.
 *   2. unlink every segment (newest first), create the empty wal-<index + 1>.log, fsync the
 *      directory.
 *   3. unlink wal-reset, fsync the directory.
 * Nothing is appended before step 3 is durable, so while wal-reset exists every segment in
 * the directory is an old one or the new, empty one: all of them can go. A crash at any point
 * of a reset therefore recovers one of exactly two logs: the old one, unchanged (crash before
 * the rename reached the disk), or the reset one, empty, first index index + 1 (after).
 * Never a mix, and never the empty log at options.first_index that an empty directory gives.
 * (A build of the log from before resets ignores the marker: it must not open a directory
 * whose reset was interrupted.)
 *
 * RECOVERY (wal_open)
 * An interrupted reset is settled first. wal-reset.tmp is removed: that reset never committed
 * and the segments are untouched. A wal-reset that verifies is a committed reset: open
 * finishes steps 2 and 3 (reported through options.log) and returns the reset log. A
 * wal-reset that does not verify is corruption, as the rename publishes only a synced file:
 * wal_open fails and changes nothing (whether step 2 had begun is unknown).
 * The segments are read in index order and every entry is verified. The valid chain is the
 * longest run from the first segment's first entry where each entry is valid, has the next
 * index (the first entry of a segment: the index in the segment's name) and a term no lower
 * than its predecessor. Where the chain stops (an invalid entry, a valid entry with the wrong
 * index or term, a segment named for another index, or garbage after the last entry), every
 * 8-byte-aligned offset after that point, in that segment and every later one, is searched
 * for a valid entry:
 *   - none found: a torn tail, what a crash leaves of writes that were never synced. Later
 *     segments are removed (the directory fsynced), the segment holding the stop point is
 *     truncated to it (a segment other than the first whose stop point is at offset 0 is
 *     removed instead) and fsynced; every step is reported through options.log.
 *   - one found: corruption, or a missing segment. wal_open fails with a message naming the
 *     file, the offset and the index, and changes nothing on disk.
 * The rule is conservative on purpose: a valid entry after a bad one means the bad one was
 * once written whole, so it may have been acknowledged; deleting it could lose acknowledged
 * data. (A power loss that writes back pages out of order can in rare cases produce the same
 * picture from unsynced data; an operator, or Raft catch-up from the peers, resolves it.) A
 * synced entry is only ever lost to the torn-tail rule when it is the last valid thing on
 * disk and the medium corrupted it.
 * Finally every segment and the directory are fsynced, so all recovered entries are durable:
 * wal_durable_index() == wal_last_index() after open.
 *
 * THREADS
 * A wal_t belongs to one thread (the event loop), except wal_sync_run(), which runs on any
 * thread on a wal_sync_t captured by wal_sync_begin() and touches no wal_t state. One sync at
 * a time: begin, run, end, then the next begin. Appends may go on while a sync runs; the sync
 * makes durable exactly the entries appended before its begin (or a prefix of them when more
 * than WAL_SYNC_FDS_MAX segments are unsynced; then sync again). Segment fds that a running
 * sync references stay open until its wal_sync_end(), even when their segment is released,
 * truncated or reset away meanwhile.
 *
 * ERRORS
 * Functions return wal_status_t (WAL_OK is 0); wal_error() holds a message about the last
 * failure. A failed sync leaves the log BROKEN: the kernel may have dropped the unwritten
 * pages and cleared the error (fsyncgate), so nothing appended since the last good sync can be
 * trusted. The durable index never moves again, later appends, truncations, releases and
 * resets fail with WAL_ERR_BROKEN and syncs do nothing. The caller should stop the node: even a
 * reopen in the same boot may read cached pages that never reached the disk; a restart (or, with
 * Raft, catch-up from the peers) is the way back. A failed append write is cut back off the file
 * and reported (WAL_ERR_IO, nothing added); if that cut fails too, the log is BROKEN. Misuse
 * (a sync begun twice, a term going backwards, truncating or resetting while an iterator is
 * open) trips cp_assert. */
#ifndef CP_WAL_H
#define CP_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/u128.h"

#define WAL_MAGIC 0x4c575043u       /* "CPWL" little-endian */
#define WAL_RESET_MAGIC 0x52575043u /* "CPWR" little-endian: the reset marker */
#define WAL_HEADER_SIZE 64u
/* A batch (8189 128-byte events plus its header, 1 MiB) and room for what the log's users
 * wrap around it. */
#define WAL_BODY_MAX ((1u << 20) + (64u << 10))
#define WAL_ENTRY_MAX (WAL_HEADER_SIZE + WAL_BODY_MAX) /* WAL_BODY_MAX is a multiple of 8 */
/* The read buffer of the log and of each iterator; larger bodies are hashed in pieces. */
#define WAL_READ_BUF (64u << 10)
#define WAL_SEGMENT_SIZE_DEFAULT (64ull << 20)
#define WAL_SEGMENTS_MAX_DEFAULT 4096u
/* Segments one sync can cover (see THREADS above). */
#define WAL_SYNC_FDS_MAX 8u

/* The entry header, as on disk. */
typedef struct wal_entry {
    u128 checksum;      /* XXH3-128 of header bytes [16, 64) */
    u128 checksum_body; /* XXH3-128 of the body */
    uint64_t index;
    uint64_t term;
    uint64_t timestamp;
    uint32_t body_size;
    uint32_t magic;
} wal_entry_t;

typedef enum wal_status {
    WAL_OK = 0,
    WAL_ERR_IO,      /* a system call failed (wal_error() says which and why) */
    WAL_ERR_CORRUPT, /* data that must be valid is not: a checksum, an index, a gap */
    WAL_ERR_RANGE,   /* an index outside what the call accepts */
    WAL_ERR_TOO_BIG, /* a body above WAL_BODY_MAX, or above the caller's buffer */
    WAL_ERR_FULL,    /* options.segments_max segments exist */
    WAL_ERR_BROKEN,  /* a sync failed earlier: stop (see ERRORS above) */
    WAL_ERR_LOCKED,  /* another wal_t (this or another process) has the directory open */
    WAL_ERR_NOMEM,
    WAL_ERR_INVALID, /* bad options or directory name */
} wal_status_t;

const char *wal_status_str(wal_status_t st);

typedef struct wal_options {
    uint64_t segment_size; /* roll over at this many bytes; 0: WAL_SEGMENT_SIZE_DEFAULT */
    uint64_t first_index;  /* the first index of a log created empty; 0: 1. Else ignored */
    uint32_t segments_max; /* bound on segment files; 0: WAL_SEGMENTS_MAX_DEFAULT */
    /* TESTS AND FUZZING ONLY: skip every fsync/fdatasync. Durability claims become lies. */
    bool no_sync;
    /* Receives recovery reports (torn tails truncated, files removed) as single lines.
     * NULL: written to stderr. */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    /* TESTS ONLY: asked before each call that changes files in a reset (wal_reset(), and
     * wal_open() finishing an interrupted one): create, write, fsync, rename, unlink. A
     * non-zero errno fails that call with it, unmade. A hook that fails every call from the
     * n-th on is a crash before the n-th call. NULL: no hook. */
    int (*fault)(void *ctx, const char *call);
    void *fault_ctx;
} wal_options_t;

typedef struct wal wal_t;

/* Opens (creating the directory and a first empty segment when missing) and recovers the log
 * in dir, as described above. opt may be NULL (defaults). On success *out owns the directory
 * (an exclusive flock) until wal_close(). On failure *out is NULL and err (if err_size > 0)
 * holds a one-line message. */
wal_status_t wal_open(const char *dir, const wal_options_t *opt, wal_t **out, char *err,
                      size_t err_size);

/* Closes the files. Writes nothing and syncs nothing: what was not reported durable may be
 * lost. No sync may be running (wal_sync_end first) and no iterator open. */
void wal_close(wal_t *w);

/* The index range held: [first, last]. An empty log has last == first - 1; its term is that of
 * entry first - 1 as far as the log knows it (after wal_reset(): the reset's term; after
 * wal_release_before(): the last released entry's), else 0 (an empty log as opened: a segment
 * stores no term besides its entries'). */
uint64_t wal_first_index(const wal_t *w);
uint64_t wal_last_index(const wal_t *w);
uint64_t wal_last_term(const wal_t *w);
/* Every entry up to this index is on stable storage. */
uint64_t wal_durable_index(const wal_t *w);
/* The message of the last failed call; "" when none failed. Valid until the next call. */
const char *wal_error(const wal_t *w);
/* Segment files currently in the log. */
uint32_t wal_segment_count(const wal_t *w);

/* Writes the next entry (index wal_last_index() + 1, returned in *index if not NULL) with
 * write(2): in the page cache, not yet durable. term must be >= wal_last_term(). Starts a new
 * segment first when the last one is full. Never allocates. On WAL_ERR_IO nothing was added. */
wal_status_t wal_append(wal_t *w, uint64_t term, uint64_t timestamp, const void *body,
                        uint32_t size, uint64_t *index);

/* Group commit, in three steps (see THREADS above). Fields are private except index and
 * err_no. */
typedef struct wal_sync {
    uint64_t index; /* durable once this sync succeeds */
    int err_no;     /* errno of the failed call after wal_sync_run() failed */
    uint64_t gen;
    int fds[WAL_SYNC_FDS_MAX];
    uint32_t fd_count;
    int dir_fd; /* -1: the directory needs no fsync */
    bool no_sync;
} wal_sync_t;

/* Loop thread: captures what the next sync must flush. Returns false when there is nothing
 * to flush (wal_sync_run() would be a no-op; wal_sync_end() must still be called). */
bool wal_sync_begin(wal_t *w, wal_sync_t *s);
/* Any thread: fdatasync of the captured segments, fsync of the directory when a segment was
 * created since the last sync (removals fsync it on the spot). Returns WAL_OK or WAL_ERR_IO
 * (s->err_no set). Never retried inside: after a failed fsync the pages may be gone. */
wal_status_t wal_sync_run(wal_sync_t *s);
/* Loop thread: rc is what wal_sync_run() returned. On WAL_OK advances the durable index to
 * s->index (unless wal_truncate_after() or wal_reset() ran meanwhile: then that sync counts for
 * nothing). On failure the log becomes BROKEN for good. */
void wal_sync_end(wal_t *w, wal_sync_t *s, wal_status_t rc);

/* Drops every entry after index (a Raft log conflict), index in [first - 1, last]. The
 * removal is durable when this returns: later segments are unlinked (directory fsynced)
 * before the last kept one is truncated and fsynced, so a crash in between leaves a
 * consistent log. The durable index drops to index if it was above. No iterator may be open. */
wal_status_t wal_truncate_after(wal_t *w, uint64_t index);

/* Discards every entry; the log continues at index + 1 with last term `term`: a Raft follower
 * installing a snapshot of everything up to index (whose last entry has that term). Afterwards
 * wal_first_index() == index + 1, wal_last_index() == wal_durable_index() == index,
 * wal_last_term() == term, and one empty segment, wal-<index + 1>.log, is left; appends go on
 * at index + 1 with terms >= term. index may be below, inside or beyond the log (below
 * UINT64_MAX / 2, else WAL_ERR_RANGE); term may be below the old last term (the entries that
 * had it are gone). Durable when it returns WAL_OK. A crash at any point recovers either the
 * old log, unchanged, or exactly the reset one (see RESET above); a reopened reset log is
 * empty, so its term reads 0 until an entry is appended. A running sync counts for nothing
 * (its fds stay open until wal_sync_end()). No iterator may be open. WAL_ERR_IO from a call
 * before the marker's rename changed nothing, and the log goes on; from one after it, the log
 * is BROKEN (a restart finds the reset log, or the old one when the rename never reached the
 * disk). */
wal_status_t wal_reset(wal_t *w, uint64_t index, uint64_t term);

/* Deletes the segments all of whose entries are below index (a snapshot covers them), oldest
 * first, never the last segment; the directory is fsynced after each unlink. The first index
 * afterwards is the first index of the oldest segment kept, which may be below index. */
wal_status_t wal_release_before(wal_t *w, uint64_t index);

/* A reader over one segment file with a buffer: private to the log, public for wal_iter_t. */
typedef struct wal_reader {
    int fd;
    uint64_t limit; /* bytes that may be read */
    uint8_t *buf;
    uint32_t cap;
    uint32_t len;
    uint64_t off; /* file offset of buf[0] */
} wal_reader_t;

/* Streaming replay. The caller owns the struct; wal_iter_open() allocates one read buffer
 * (WAL_READ_BUF bytes) that wal_iter_close() frees. Every entry read is verified again. */
typedef struct wal_iter {
    wal_t *wal;
    uint64_t next;      /* the index wal_iter_next() returns next */
    uint64_t seg_first; /* the segment the reader has open; 0: none */
    uint64_t offset;    /* where entry `next` starts in it */
    wal_reader_t reader;
    wal_status_t status; /* why wal_iter_next() last returned -1 */
    char err[320];
} wal_iter_t;

/* from must be in [first, last + 1]. The iterator sees entries appended after it was opened.
 * On failure there is nothing to close (wal_iter_close() is harmless anyway).
 * wal_release_before() may run while it is open (reading released entries then fails with
 * WAL_ERR_RANGE); wal_truncate_after() and wal_reset() may not. */
wal_status_t wal_iter_open(wal_t *w, uint64_t from, wal_iter_t *it);
/* 1: the next entry's header in *hdr and its body in body[0, hdr->body_size); 0: no entry
 * after the last one (yet); -1: it->status and it->err say why. WAL_ERR_TOO_BIG: the body does
 * not fit in cap; *hdr is filled, nothing is consumed, call again with a larger buffer. */
int wal_iter_next(wal_iter_t *it, wal_entry_t *hdr, void *body, uint32_t cap);
void wal_iter_close(wal_iter_t *it);

#endif

/* Snapshots of a cell: the cell's and the ledger's images in one checksummed file,
 * DIR/snap-<log index, 20 digits>.snap, holding the state after applying every log entry up
 * to that index. Written to a temporary file, fsynced, renamed, directory fsynced; so a file
 * with the final name is always complete unless the disk itself damaged it, which the
 * checksums catch.
 *
 * File: a 512-byte header (magic, version, index, term, the cell image header, the ledger
 * image header, the group's membership and its members' addresses (mb_record_t), the
 * payments image header, the byte count and XXH3-128 of the data, and an XXH3-128 of the
 * header itself), then the ledger image's regions and the payments image's regions, back to
 * back, under the one data checksum. */
#ifndef CP_SNAPSHOT_H
#define CP_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "cell/cell.h"
#include "repl/members.h"

#define SNAPSHOT_PATH_MAX 4096

/* Writes the snapshot of `cell` at log index/term into dir. Safe to call in a forked child
 * (no allocation). Returns 0, or -errno with *what naming the step that failed. */
int snapshot_write(const char *dir, const cell_t *cell, uint64_t index, uint64_t term,
                   const mb_record_t *members, const char **what);

/* Loads the newest snapshot in dir that is whole: *cell is a new cell (NULL when dir holds
 * no snapshot at all) and *index its log index. Damaged snapshots are reported on stderr
 * and skipped for an older one. Returns 0, or -1 with a message in err when a snapshot
 * cannot be used at all (e.g. it does not fit the configured capacities). */
int snapshot_load(const char *dir, const cell_config_t *config, cell_t **cell, uint64_t *index,
                  uint64_t *term, mb_record_t *members, char *err, size_t err_size);

/* The file name of the snapshot at index in dir. */
void snapshot_path(const char *dir, uint64_t index, char *out, size_t size);

/* Verifies one snapshot file (e.g. received from the leader) and loads it: 0 with *cell,
 * *index, *term; or -1 with the reason in err. */
int snapshot_load_file(const char *path, const cell_config_t *config, cell_t **cell,
                       uint64_t *index, uint64_t *term, mb_record_t *members, char *err,
                       size_t err_size);

/* Gives the whole, fsynced file at path (in dir) the name of the snapshot at index, and
 * fsyncs dir: from then on it is the newest snapshot. 0 or -errno. */
int snapshot_install(const char *dir, const char *path, uint64_t index);

/* Deletes snapshot files (and stale temporary files) with an index below keep_from. */
void snapshot_prune(const char *dir, uint64_t keep_from);

#endif

/* libFuzzer target: the write-ahead log's recovery (src/repl/wal.h) fed arbitrary segment
 * files. Input: a flags byte, then (when flags bit 0 is set) a u16 split point, then the bytes
 * of one segment file, or of two (split at that point). A file is named for the index in its
 * first header when flags bit 1 is set (so the fuzzer reaches valid multi-segment logs), else
 * 1 and 2 + (flags >> 2).
 *
 * Whatever the bytes, wal_open must not crash. When it fails it must leave the files exactly
 * as they were. When it succeeds: every entry must read back and verify (checked here
 * independently of the log's own checks), indexes must be consecutive, and the repaired log
 * must be clean: an append, a close and a second open must succeed without any repair. Then
 * the log is reset to an index near its end (below, at or beyond it, from the input's last
 * byte): it must hold nothing, continue at index + 1, and reopen as exactly that, one empty
 * segment file plus the entry appended after the reset, with no repair. */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "base/assert.h"
#include "repl/wal.h"

static char fuzz_dir[64];
static uint8_t *fuzz_body;
static uint8_t *fuzz_file;
static unsigned fuzz_repairs;

static void fuzz_clean(void) {
    DIR *d = opendir(fuzz_dir);
    if (!d) return;
    struct dirent *e;
    char path[128];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", fuzz_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

static void fuzz_cleanup_at_exit(void) {
    fuzz_clean();
    rmdir(fuzz_dir);
}

static void fuzz_init(void) {
    if (fuzz_dir[0]) return;
    snprintf(fuzz_dir, sizeof fuzz_dir, "/tmp/cellpay-fuzz-wal-XXXXXX");
    cp_assert(mkdtemp(fuzz_dir) != NULL);
    fuzz_body = malloc(WAL_BODY_MAX);
    fuzz_file = malloc(1 << 22);
    cp_assert(fuzz_body && fuzz_file);
    atexit(fuzz_cleanup_at_exit);
}

static void fuzz_count_repair(void *ctx, const char *line) {
    (void)ctx, (void)line;
    fuzz_repairs++;
}

static void fuzz_path(uint64_t first, char *buf, size_t n) {
    snprintf(buf, n, "%s/wal-%020llu.log", fuzz_dir, (unsigned long long)first);
}

static uint64_t fuzz_name(const uint8_t *p, size_t n, uint8_t flags, uint64_t fallback) {
    uint64_t index = 0;
    if ((flags & 2) && n >= 40) memcpy(&index, p + 32, 8);
    return index >= 1 && index < (1ull << 40) ? index : fallback;
}

static void fuzz_write(uint64_t first, const uint8_t *p, size_t n) {
    char path[128];
    fuzz_path(first, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cp_assert(fd >= 0);
    cp_assert(n == 0 || write(fd, p, n) == (ssize_t)n);
    close(fd);
}

/* The file still holds exactly p[0, n). */
static void fuzz_assert_unchanged(uint64_t first, const uint8_t *p, size_t n) {
    char path[128];
    fuzz_path(first, path, sizeof path);
    int fd = open(path, O_RDONLY);
    cp_assert(fd >= 0);
    ssize_t got = read(fd, fuzz_file, (1 << 22));
    close(fd);
    cp_assert(got == (ssize_t)n && memcmp(fuzz_file, p, n) == 0);
}

static int fuzz_u128_eq(u128 a, XXH128_hash_t h) {
    return a == (((u128)h.high64 << 64) | h.low64);
}

/* Reads the whole log and checks every entry independently. */
static void fuzz_read_all(wal_t *w) {
    wal_iter_t it;
    cp_assert(wal_iter_open(w, wal_first_index(w), &it) == WAL_OK);
    wal_entry_t h;
    uint64_t next = wal_first_index(w);
    int rc;
    while ((rc = wal_iter_next(&it, &h, fuzz_body, WAL_BODY_MAX)) == 1) {
        cp_assert(h.index == next++);
        cp_assert(h.magic == WAL_MAGIC && h.body_size <= WAL_BODY_MAX);
        cp_assert(fuzz_u128_eq(h.checksum, XXH3_128bits((const uint8_t *)&h + 16, 48)));
        cp_assert(fuzz_u128_eq(h.checksum_body, XXH3_128bits(fuzz_body, h.body_size)));
    }
    if (rc != 0) fprintf(stderr, "iteration failed: %s\n", it.err);
    cp_assert(rc == 0);
    cp_assert(next == wal_last_index(w) + 1);
    wal_iter_close(&it);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_init();
    if (size < 1 || size > (1 << 22)) return 0;
    uint8_t flags = data[0];
    size_t skip = flags & 1 ? 3 : 1;
    if (size < skip) return 0;
    const uint8_t *a = data + skip;
    size_t n = size - skip, na = n;
    if (flags & 1) na = (size_t)(data[1] | data[2] << 8) % (n + 1);
    const uint8_t *b = a + na;
    size_t nb = n - na;
    uint64_t name_a = fuzz_name(a, na, flags, 1);
    uint64_t name_b = fuzz_name(b, nb, flags, 2 + (flags >> 2));
    if (name_b == name_a) name_b++;
    fuzz_clean();
    fuzz_write(name_a, a, na);
    if (flags & 1) fuzz_write(name_b, b, nb);

    wal_options_t opt = {.segment_size = 64u << (flags >> 5),
                         .segments_max = 8,
                         .no_sync = true,
                         .log = fuzz_count_repair};
    wal_t *w = NULL;
    char err[512];
    if (wal_open(fuzz_dir, &opt, &w, err, sizeof err) != WAL_OK) {
        cp_assert(w == NULL);
        fuzz_assert_unchanged(name_a, a, na);
        if (flags & 1) fuzz_assert_unchanged(name_b, b, nb);
        return 0;
    }
    fuzz_read_all(w);
    uint64_t last = wal_last_index(w);
    uint64_t index = 0;
    cp_assert(wal_append(w, wal_last_term(w), 1, data, (uint32_t)(size < 100 ? size : 100),
                         &index) == WAL_OK);
    cp_assert(index == last + 1);
    wal_close(w);

    fuzz_repairs = 0;
    cp_assert(wal_open(fuzz_dir, &opt, &w, err, sizeof err) == WAL_OK);
    cp_assert(fuzz_repairs == 0 && wal_last_index(w) == last + 1);
    fuzz_read_all(w);

    uint64_t to = last + 1 + data[size - 1] % 7, term = wal_last_term(w) / 2 + 1;
    to = to > 3 ? to - 3 : 0; /* [last - 2, last + 4], not below 0 */
    cp_assert(wal_reset(w, to, term) == WAL_OK);
    cp_assert(wal_first_index(w) == to + 1 && wal_last_index(w) == to &&
              wal_durable_index(w) == to && wal_last_term(w) == term && wal_segment_count(w) == 1);
    fuzz_read_all(w);
    cp_assert(wal_append(w, term, 2, data, (uint32_t)(size < 50 ? size : 50), &index) == WAL_OK);
    cp_assert(index == to + 1);
    wal_close(w);
    fuzz_repairs = 0;
    cp_assert(wal_open(fuzz_dir, &opt, &w, err, sizeof err) == WAL_OK);
    cp_assert(fuzz_repairs == 0 && wal_first_index(w) == to + 1 && wal_last_index(w) == to + 1 &&
              wal_last_term(w) == term && wal_segment_count(w) == 1);
    fuzz_read_all(w);
    wal_close(w);
    return 0;
}

/* Tests of the write-ahead log (src/repl/wal.h): round trips, segment rollover, torn tails
 * (truncated body, truncated header, garbage, flipped last byte, lost last segment) against
 * corruption in the middle (which must refuse to open and change nothing), truncation,
 * release, reset (below, inside, beyond the log; during a sync; a crash before each of its
 * file operations), group commit from two threads, a failed sync, and a randomized crash
 * test.
 *
 * Every test runs in its own mkdtemp directory under /tmp, removed afterwards. Bodies are
 * derived from (index, timestamp), so any entry read back can be checked byte for byte.
 * Environment: CELLPAY_SEED (the randomized test; default from the clock, always printed). */
#define _GNU_SOURCE /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/prng.h"
#include "repl/wal.h"

#define MODEL_MAX 20000u
#define DIR_FILES_MAX 4096u

/* ---- what was written: entry i is model.size[i] bytes derived from (i, model.ts[i]) ---- */

typedef struct model {
    uint64_t first, last; /* the log holds [first, last] */
    uint32_t size[MODEL_MAX];
    uint64_t term[MODEL_MAX];
    uint64_t ts[MODEL_MAX];
    uint64_t clock; /* unique timestamps, so a rewritten index gets different bytes */
} model_t;

typedef struct fixture {
    char root[64];
    char dir[96]; /* the log's directory: root/wal */
    model_t m;
    uint8_t *buf; /* WAL_BODY_MAX + 1 bytes */
    uint8_t *buf2;
} fixture_t;

static char log_lines[1 << 16];

static void capture_log(void *ctx, const char *line) {
    (void)ctx;
    size_t used = strlen(log_lines);
    snprintf(log_lines + used, sizeof log_lines - used, "%s\n", line);
}

static void body_fill(uint8_t *p, uint32_t size, uint64_t index, uint64_t ts) {
    prng_t r = {index * 0x9e3779b97f4a7c15ull ^ ts};
    for (uint32_t i = 0; i < size; i++) p[i] = (uint8_t)prng_next(&r);
}

static uint64_t esize(uint32_t body_size) {
    return 64 + (((uint64_t)body_size + 7) & ~7ull);
}

static wal_options_t opts(uint64_t segment_size) {
    return (wal_options_t){.segment_size = segment_size, .log = capture_log};
}

static wal_t *open_ok(fixture_t *f, const wal_options_t *o) {
    char err[512];
    wal_t *w = NULL;
    wal_status_t st = wal_open(f->dir, o, &w, err, sizeof err);
    if (st != WAL_OK) fail_msg("wal_open: %s (%s)", wal_status_str(st), err);
    return w;
}

static void append(fixture_t *f, wal_t *w, uint64_t term, uint32_t size) {
    model_t *m = &f->m;
    uint64_t idx = m->last + 1, got = 0;
    assert_true(idx < MODEL_MAX && size <= WAL_BODY_MAX);
    m->size[idx] = size;
    m->term[idx] = term;
    m->ts[idx] = ++m->clock;
    body_fill(f->buf, size, idx, m->ts[idx]);
    wal_status_t st = wal_append(w, term, m->ts[idx], f->buf, size, &got);
    if (st != WAL_OK) fail_msg("wal_append: %s", wal_error(w));
    assert_int_equal(got, idx);
    m->last = idx;
    assert_int_equal(wal_last_index(w), idx);
    assert_int_equal(wal_last_term(w), term);
}

static void sync_all(wal_t *w) {
    for (int round = 0; round < 1000 && wal_durable_index(w) < wal_last_index(w); round++) {
        wal_sync_t s;
        wal_sync_begin(w, &s);
        wal_status_t rc = wal_sync_run(&s);
        assert_int_equal(rc, WAL_OK);
        wal_sync_end(w, &s, rc);
    }
    assert_int_equal(wal_durable_index(w), wal_last_index(w));
}

/* Reads [from, m.last] back through an iterator and compares every byte and field. */
static void check_from(fixture_t *f, wal_t *w, uint64_t from) {
    model_t *m = &f->m;
    assert_int_equal(wal_first_index(w), m->first);
    assert_int_equal(wal_last_index(w), m->last);
    wal_iter_t it;
    assert_int_equal(wal_iter_open(w, from, &it), WAL_OK);
    wal_entry_t h;
    for (uint64_t i = from; i <= m->last; i++) {
        int rc = wal_iter_next(&it, &h, f->buf, WAL_BODY_MAX);
        if (rc != 1) fail_msg("index %" PRIu64 ": rc %d: %s", i, rc, it.err);
        assert_int_equal(h.index, i);
        assert_int_equal(h.term, m->term[i]);
        assert_int_equal(h.timestamp, m->ts[i]);
        assert_int_equal(h.body_size, m->size[i]);
        body_fill(f->buf2, m->size[i], i, m->ts[i]);
        if (m->size[i] > 0) assert_memory_equal(f->buf, f->buf2, m->size[i]);
    }
    assert_int_equal(wal_iter_next(&it, &h, f->buf, WAL_BODY_MAX), 0);
    wal_iter_close(&it);
}

static void check_all(fixture_t *f, wal_t *w) {
    check_from(f, w, f->m.first);
}

/* ---- files ---- */

static void seg_path(const fixture_t *f, uint64_t first, char *buf, size_t n) {
    snprintf(buf, n, "%s/wal-%020" PRIu64 ".log", f->dir, first);
}

static int64_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

static void truncate_file(const char *path, uint64_t size) {
    assert_int_equal(truncate(path, (off_t)size), 0);
}

static void flip_byte(const char *path, uint64_t off) {
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
    b ^= 0x5a;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

static void append_bytes(const char *path, const void *p, size_t n) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, n), (ssize_t)n);
    close(fd);
}

static int u64_cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The first indexes of the segment files in the directory, sorted. */
static uint32_t list_segments(const fixture_t *f, uint64_t *out) {
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    uint32_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long long v;
        if (strlen(e->d_name) == 28 && sscanf(e->d_name, "wal-%20llu.log", &v) == 1) {
            assert_true(n < DIR_FILES_MAX);
            out[n++] = v;
        }
    }
    closedir(d);
    qsort(out, n, sizeof *out, u64_cmp);
    return n;
}

/* All segment files' bytes concatenated with their names: to prove a failed open changed
 * nothing. Caller frees. */
static char *dir_image(const fixture_t *f, size_t *len) {
    static uint64_t segs[DIR_FILES_MAX];
    uint32_t n = list_segments(f, segs);
    size_t cap = 1 << 20, used = 0;
    char *img = malloc(cap);
    assert_non_null(img);
    for (uint32_t i = 0; i < n; i++) {
        char path[256];
        seg_path(f, segs[i], path, sizeof path);
        int64_t size = file_size(path);
        assert_true(size >= 0);
        while (used + (size_t)size + 64 > cap) img = realloc(img, cap *= 2);
        assert_non_null(img);
        used += (size_t)sprintf(img + used, "%" PRIu64 ":%" PRId64 ":", segs[i], size);
        int fd = open(path, O_RDONLY);
        assert_int_equal(read(fd, img + used, (size_t)size), size);
        close(fd);
        used += (size_t)size;
    }
    *len = used;
    return img;
}

/* Byte offset of entry index in its segment and that segment's first index, replaying the
 * rollover rule (valid while one segment_size was used throughout). */
static uint64_t entry_pos(const model_t *m, uint64_t segment_size, uint64_t index,
                          uint64_t *seg_first) {
    uint64_t off = 0;
    *seg_first = m->first;
    for (uint64_t i = m->first; i < index; i++) {
        off += esize(m->size[i]);
        if (off >= segment_size) *seg_first = i + 1, off = 0;
    }
    return off;
}

/* ---- fixture ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->root, sizeof f->root, "/tmp/cellpay-wal-XXXXXX");
    if (!mkdtemp(f->root)) return -1;
    snprintf(f->dir, sizeof f->dir, "%s/wal", f->root);
    f->m.first = 1;
    f->buf = malloc(WAL_BODY_MAX + 1);
    f->buf2 = malloc(WAL_BODY_MAX + 1);
    log_lines[0] = 0;
    *state = f;
    return f->buf && f->buf2 ? 0 : -1;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    nftw(f->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f->buf);
    free(f->buf2);
    free(f);
    return 0;
}

/* ---- round trip ---- */

static void test_roundtrip(void **state) {
    fixture_t *f = *state;
    wal_options_t o = opts(0);
    wal_t *w = open_ok(f, &o);
    assert_int_equal(wal_first_index(w), 1);
    assert_int_equal(wal_last_index(w), 0);
    assert_int_equal(wal_durable_index(w), 0);
    static const uint32_t sizes[] = {0, 1, 7, 8, 9, 63, 64, 65, 1000, 4096, WAL_BODY_MAX, 3};
    for (uint32_t i = 0; i < sizeof sizes / sizeof *sizes; i++) append(f, w, 1 + i / 3, sizes[i]);
    assert_int_equal(wal_durable_index(w), 0); /* appended is not durable */
    assert_int_equal(wal_append(w, 9, 0, f->buf, WAL_BODY_MAX + 1, NULL), WAL_ERR_TOO_BIG);
    assert_int_equal(wal_last_index(w), f->m.last);
    sync_all(w);
    check_all(f, w);
    wal_close(w);

    w = open_ok(f, &o);
    assert_string_equal(log_lines, ""); /* a clean log reports nothing */
    assert_int_equal(wal_last_term(w), f->m.term[f->m.last]);
    assert_int_equal(wal_durable_index(w), f->m.last);
    check_all(f, w);
    check_from(f, w, 5);
    check_from(f, w, f->m.last + 1);
    assert_int_equal(wal_iter_open(w, f->m.last + 2, &(wal_iter_t){0}), WAL_ERR_RANGE);
    append(f, w, 9, 100);
    check_all(f, w);
    wal_close(w);
    char path[256];
    seg_path(f, 1, path, sizeof path);
    uint64_t total = 0;
    for (uint64_t i = 1; i <= f->m.last; i++) total += esize(f->m.size[i]);
    assert_int_equal(file_size(path), total); /* exactly the entries: nothing else on disk */
}

/* An iterator sees later appends, and a too-small buffer is an error that consumes nothing. */
static void test_iterator_follows_and_small_buffer(void **state) {
    fixture_t *f = *state;
    wal_options_t o = opts(0);
    wal_t *w = open_ok(f, &o);
    wal_iter_t it;
    wal_entry_t h;
    assert_int_equal(wal_iter_open(w, 1, &it), WAL_OK);
    assert_int_equal(wal_iter_next(&it, &h, f->buf, WAL_BODY_MAX), 0);
    append(f, w, 1, 500);
    assert_int_equal(wal_iter_next(&it, &h, f->buf, 499), -1);
    assert_int_equal(it.status, WAL_ERR_TOO_BIG);
    assert_int_equal(h.body_size, 500);
    assert_int_equal(wal_iter_next(&it, &h, f->buf, 500), 1);
    assert_int_equal(h.index, 1);
    assert_int_equal(wal_iter_next(&it, &h, f->buf, 500), 0);
    wal_iter_close(&it);
    wal_close(w);
}

/* ---- rollover ---- */

static void test_rollover_many_segments(void **state) {
    fixture_t *f = *state;
    const uint64_t seg_size = 256;
    wal_options_t o = opts(seg_size);
    wal_t *w = open_ok(f, &o);
    prng_t r = {42};
    for (int i = 0; i < 300; i++) append(f, w, 1 + (uint64_t)i / 50, (uint32_t)prng_below(&r, 400));
    sync_all(w);
    /* Exactly the segments the rule predicts: a new one once the last holds >= seg_size. */
    static uint64_t want[DIR_FILES_MAX], got[DIR_FILES_MAX];
    uint32_t nwant = 0;
    for (uint64_t i = 1; i <= f->m.last; i++) {
        uint64_t first;
        if (entry_pos(&f->m, seg_size, i, &first) == 0) want[nwant++] = first;
    }
    uint32_t ngot = list_segments(f, got);
    assert_true(nwant > 50);
    assert_int_equal(ngot, nwant);
    assert_memory_equal(got, want, nwant * sizeof *want);
    assert_int_equal(wal_segment_count(w), nwant);
    wal_close(w);
    /* Each file starts with the entry its name says. */
    for (uint32_t i = 0; i < ngot; i++) {
        char path[256];
        seg_path(f, got[i], path, sizeof path);
        wal_entry_t h;
        int fd = open(path, O_RDONLY);
        assert_int_equal(read(fd, &h, sizeof h), sizeof h);
        close(fd);
        assert_int_equal(h.index, got[i]);
    }
    w = open_ok(f, &o);
    assert_string_equal(log_lines, "");
    check_all(f, w);
    check_from(f, w, got[ngot / 2]);     /* from a segment's first entry */
    check_from(f, w, got[ngot / 2] + 1); /* from inside one */
    append(f, w, 9, 10);
    check_all(f, w);
    wal_close(w);
}

/* ---- torn tails ---- */

/* Ten entries of 100..1000 bytes, synced and closed. seg_size 0: one segment; else several. */
static void torn_setup(fixture_t *f, uint64_t seg_size) {
    wal_options_t o = opts(seg_size);
    wal_t *w = open_ok(f, &o);
    for (uint32_t i = 1; i <= 10; i++) append(f, w, 1 + i / 4, 100 * i);
    sync_all(w);
    wal_close(w);
}

/* After damage that leaves `survivors` entries and the last file `size_after` bytes: reopen
 * recovers, reports, appends continue at the right index, and a second open is clean. */
static void torn_expect(fixture_t *f, uint64_t seg_size, uint64_t survivors, const char *file,
                        int64_t size_after) {
    wal_options_t o = opts(seg_size);
    log_lines[0] = 0;
    wal_t *w = open_ok(f, &o);
    if (!strstr(log_lines, "torn tail")) fail_msg("no torn tail report in: %s", log_lines);
    assert_int_equal(wal_last_index(w), survivors);
    assert_int_equal(wal_durable_index(w), survivors);
    assert_int_equal(file_size(file), size_after);
    f->m.last = survivors;
    check_all(f, w);
    append(f, w, 7, 333);
    assert_int_equal(wal_last_index(w), survivors + 1);
    sync_all(w);
    wal_close(w);
    log_lines[0] = 0;
    w = open_ok(f, &o);
    assert_string_equal(log_lines, "");
    check_all(f, w);
    wal_close(w);
}

static void torn_last(fixture_t *f, uint64_t seg_size, char *path, uint64_t *off) {
    uint64_t first;
    *off = entry_pos(&f->m, seg_size ? seg_size : UINT64_MAX, f->m.last, &first);
    seg_path(f, first, path, 256);
}

static void torn_mid_body(fixture_t *f, uint64_t seg_size) {
    torn_setup(f, seg_size);
    char path[256];
    uint64_t off;
    torn_last(f, seg_size, path, &off);
    truncate_file(path, off + 64 + f->m.size[10] / 2);
    torn_expect(f, seg_size, 9, path, (int64_t)off);
}

static void torn_mid_header(fixture_t *f, uint64_t seg_size) {
    torn_setup(f, seg_size);
    char path[256];
    uint64_t off;
    torn_last(f, seg_size, path, &off);
    truncate_file(path, off + 30);
    torn_expect(f, seg_size, 9, path, (int64_t)off);
}

static void torn_garbage(fixture_t *f, uint64_t seg_size) {
    torn_setup(f, seg_size);
    char path[256];
    uint64_t off;
    torn_last(f, seg_size, path, &off);
    int64_t size = file_size(path);
    prng_t r = {7};
    for (uint32_t i = 0; i < 3000; i++) f->buf[i] = (uint8_t)prng_next(&r);
    append_bytes(path, f->buf, 3000);
    torn_expect(f, seg_size, 10, path, size);
}

static void torn_flipped_body(fixture_t *f, uint64_t seg_size) {
    torn_setup(f, seg_size);
    char path[256];
    uint64_t off;
    torn_last(f, seg_size, path, &off);
    flip_byte(path, off + 64 + 500);
    torn_expect(f, seg_size, 9, path, (int64_t)off);
}

static void test_torn_mid_body(void **state) {
    torn_mid_body(*state, 0);
}
static void test_torn_mid_header(void **state) {
    torn_mid_header(*state, 0);
}
static void test_torn_garbage(void **state) {
    torn_garbage(*state, 0);
}
static void test_torn_flipped_body(void **state) {
    torn_flipped_body(*state, 0);
}
static void test_torn_mid_body_segments(void **state) {
    torn_mid_body(*state, 1500);
}
static void test_torn_mid_header_segments(void **state) {
    torn_mid_header(*state, 1500);
}
static void test_torn_garbage_segments(void **state) {
    torn_garbage(*state, 1500);
}
static void test_torn_flipped_body_segments(void **state) {
    torn_flipped_body(*state, 1500);
}

/* Zeros after the last entry (a file extended but never written) are a torn tail too. */
static void test_torn_zeros(void **state) {
    fixture_t *f = *state;
    torn_setup(f, 0);
    char path[256];
    seg_path(f, 1, path, sizeof path);
    int64_t size = file_size(path);
    memset(f->buf, 0, 4096);
    append_bytes(path, f->buf, 4096);
    torn_expect(f, 0, 10, path, size);
}

/* The last segment holds only a torn first entry: the segment goes, the one before it is the
 * last again, and the next append recreates the file under the same name. */
static void test_torn_whole_last_segment(void **state) {
    fixture_t *f = *state;
    const uint64_t seg_size = 1; /* one entry per segment */
    torn_setup(f, seg_size);
    char path[256];
    seg_path(f, 10, path, sizeof path);
    truncate_file(path, 40);
    wal_options_t o = opts(seg_size);
    wal_t *w = open_ok(f, &o);
    assert_non_null(strstr(log_lines, "removing the segment"));
    assert_int_equal(file_size(path), -1);
    assert_int_equal(wal_last_index(w), 9);
    assert_int_equal(wal_segment_count(w), 9);
    f->m.last = 9;
    append(f, w, 5, 10);
    assert_true(file_size(path) > 0);
    sync_all(w);
    wal_close(w);
    w = open_ok(f, &o);
    check_all(f, w);
    wal_close(w);
}

/* A crash that lost the unsynced end of one segment and left the next one empty: both are the
 * torn tail (no valid entry after the damage); the empty later segment is removed. */
static void test_torn_across_segments(void **state) {
    fixture_t *f = *state;
    const uint64_t seg_size = 1500;
    torn_setup(f, seg_size);
    uint64_t last_first, prev_first;
    entry_pos(&f->m, seg_size, 10, &last_first);
    uint64_t off = entry_pos(&f->m, seg_size, last_first - 1, &prev_first);
    assert_true(prev_first < last_first);
    char last[256], prev[256];
    seg_path(f, last_first, last, sizeof last);
    seg_path(f, prev_first, prev, sizeof prev);
    truncate_file(last, 0);
    truncate_file(prev, off + 100);
    wal_options_t o = opts(seg_size);
    wal_t *w = open_ok(f, &o);
    assert_non_null(strstr(log_lines, "removing"));
    assert_int_equal(file_size(last), -1);
    assert_int_equal(file_size(prev), (int64_t)off);
    assert_int_equal(wal_last_index(w), last_first - 2);
    f->m.last = last_first - 2;
    check_all(f, w);
    wal_close(w);
}

/* ---- corruption: a bad entry followed by a valid one ---- */

static void expect_corrupt(fixture_t *f, uint64_t seg_size, const char *want1, const char *want2) {
    size_t len0, len1;
    char *before = dir_image(f, &len0);
    wal_options_t o = opts(seg_size);
    wal_t *w = NULL;
    char err[512] = "";
    log_lines[0] = 0;
    assert_int_equal(wal_open(f->dir, &o, &w, err, sizeof err), WAL_ERR_CORRUPT);
    assert_null(w);
    if (!strstr(err, want1) || !strstr(err, want2))
        fail_msg("message \"%s\" lacks \"%s\" or \"%s\"", err, want1, want2);
    assert_string_equal(log_lines, "");
    char *after = dir_image(f, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0); /* nothing changed on disk */
    free(before);
    free(after);
}

static void test_corrupt_body_middle(void **state) {
    fixture_t *f = *state;
    torn_setup(f, 0);
    char path[256], at[64];
    seg_path(f, 1, path, sizeof path);
    uint64_t first, off = entry_pos(&f->m, UINT64_MAX, 5, &first);
    flip_byte(path, off + 64 + 250);
    snprintf(at, sizeof at, "offset %" PRIu64 " (index 5)", off);
    expect_corrupt(f, 0, at, "wal-00000000000000000001.log");
}

static void test_corrupt_header_middle(void **state) {
    fixture_t *f = *state;
    torn_setup(f, 0);
    char path[256], at[64];
    seg_path(f, 1, path, sizeof path);
    uint64_t first, off = entry_pos(&f->m, UINT64_MAX, 5, &first);
    flip_byte(path, off + 41); /* the term */
    snprintf(at, sizeof at, "offset %" PRIu64 " (index 5)", off);
    expect_corrupt(f, 0, at, "bad header checksum");
}

/* The damaged entry ends its segment; the valid entry after it is in the next file. */
static void test_corrupt_end_of_non_last_segment(void **state) {
    fixture_t *f = *state;
    const uint64_t seg_size = 1500;
    torn_setup(f, seg_size);
    uint64_t second, first;
    entry_pos(&f->m, seg_size, 10, &second);
    uint64_t off = entry_pos(&f->m, seg_size, second - 1, &first);
    char path[256], at[96];
    seg_path(f, first, path, sizeof path);
    flip_byte(path, off + 64 + 10);
    snprintf(at, sizeof at, "wal-%020" PRIu64 ".log at offset %" PRIu64 " (index %" PRIu64 ")",
             first, off, second - 1);
    expect_corrupt(f, seg_size, at, "not a torn tail");
}

/* A header flip in the middle of a non-last segment. */
static void test_corrupt_header_non_last_segment(void **state) {
    fixture_t *f = *state;
    const uint64_t seg_size = 3000;
    torn_setup(f, seg_size);
    char path[256];
    seg_path(f, 1, path, sizeof path);
    assert_true(f->m.size[1] + 64 < seg_size);
    flip_byte(path, esize(f->m.size[1]) + 60); /* entry 2's magic */
    expect_corrupt(f, seg_size, "(index 2)", "bad magic");
}

static void test_missing_segment(void **state) {
    fixture_t *f = *state;
    const uint64_t seg_size = 1;
    torn_setup(f, seg_size);
    char path[256];
    seg_path(f, 4, path, sizeof path);
    assert_int_equal(unlink(path), 0);
    expect_corrupt(f, seg_size, "missing entries", "index 3");
}

/* Two valid entries with a gap between them inside one segment (spliced from two logs). */
static void test_index_gap_inside_segment(void **state) {
    fixture_t *f = *state;
    torn_setup(f, 0);
    char path[256];
    seg_path(f, 1, path, sizeof path);
    uint64_t first, off3 = entry_pos(&f->m, UINT64_MAX, 3, &first);
    uint64_t off4 = entry_pos(&f->m, UINT64_MAX, 4, &first);
    uint64_t off5 = entry_pos(&f->m, UINT64_MAX, 5, &first);
    int fd = open(path, O_RDWR);
    assert_int_equal(pread(fd, f->buf, off5 - off4, (off_t)off4), (ssize_t)(off5 - off4));
    assert_int_equal(pwrite(fd, f->buf, off5 - off4, (off_t)off3), (ssize_t)(off5 - off4));
    assert_int_equal(ftruncate(fd, (off_t)(off3 + off5 - off4)), 0);
    close(fd);
    expect_corrupt(f, 0, "holds index 4 where index 3", "wal-00000000000000000001.log");
}

/* A valid entry whose term is below its predecessor's (spliced in from another log). */
static void test_term_going_backwards(void **state) {
    fixture_t *f = *state;
    wal_options_t o = opts(0);
    wal_t *w = open_ok(f, &o);
    for (int i = 0; i < 3; i++) append(f, w, 5, 40);
    sync_all(w);
    wal_close(w);
    char other[128], err[256];
    snprintf(other, sizeof other, "%s/other", f->root);
    assert_int_equal(wal_open(other, &o, &w, err, sizeof err), WAL_OK);
    for (int i = 0; i < 4; i++) assert_int_equal(wal_append(w, 1, 9, f->buf, 40, NULL), WAL_OK);
    wal_close(w);
    char path[256];
    snprintf(path, sizeof path, "%s/wal-%020d.log", other, 1);
    int fd = open(path, O_RDONLY);
    assert_int_equal(pread(fd, f->buf, esize(40), 3 * (off_t)esize(40)), (ssize_t)esize(40));
    close(fd);
    seg_path(f, 1, path, sizeof path);
    append_bytes(path, f->buf, esize(40));
    expect_corrupt(f, 0, "index 4 has term 1", "below the term 5");
}

/* Damage done after open is caught when the entry is read, not returned as data. */
static void test_iterator_verifies_again(void **state) {
    fixture_t *f = *state;
    wal_options_t o = opts(0);
    wal_t *w = open_ok(f, &o);
    for (int i = 0; i < 4; i++) append(f, w, 1, 300);
    sync_all(w);
    char path[256];
    seg_path(f, 1, path, sizeof path);
    flip_byte(path, 2 * esize(300) + 64 + 7); /* entry 3's body */
    wal_iter_t it;
    wal_entry_t h;
    assert_int_equal(wal_iter_open(w, 1, &it), WAL_OK);
    assert_int_equal(wal_iter_next(&it, &h, f->buf, WAL_BODY_MAX), 1);
    assert_int_equal(wal_iter_next(&it, &h, f->buf, WAL_BODY_MAX), 1);
    assert_int_equal(wal_iter_next(&it, &h, f->buf, WAL_BODY_MAX), -1);
    assert_int_equal(it.status, WAL_ERR_CORRUPT);
    assert_non_null(strstr(it.err, "index 3"));
    wal_iter_close(&it);
    wal_close(w);
}

/* Bodies larger than the read buffer are verified in pieces: a flip deep inside one, and a
 * non-zero padding byte (padding is outside both checksums), are caught; the same damage in
 * the last entry is a torn tail. */
static void test_large_body_and_padding(void **state) {
    fixture_t *f = *state;
    wal_options_t o = opts(0);
    wal_t *w = open_ok(f, &o);
    append(f, w, 1, 100);
    append(f, w, 1, 200001); /* 7 padding bytes */
    append(f, w, 1, 100);
    sync_all(w);
    wal_close(w);
    char path[256];
    seg_path(f, 1, path, sizeof path);
    uint64_t body2 = esize(100) + 64;
    flip_byte(path, body2 + 150000);
    expect_corrupt(f, 0, "(index 2)", "bad body checksum");
    flip_byte(path, body2 + 150000);
    flip_byte(path, body2 + 200001 + 3);
    expect_corrupt(f, 0, "(index 2)", "padding not zero");
    flip_byte(path, body2 + 200001 + 3);
    w = open_ok(f, &o);
    check_all(f, w); /* the iterator copies the large body piece by piece */
    wal_close(w);
    truncate_file(path, body2 + 199000);
    torn_expect(f, 0, 1, path, (int64_t)esize(100));
}

/* ---- truncate_after, release_before ---- */

static void test_truncate_after(void **state) {
    fixture_t *f = *state;
    const uint64_t seg_size = 300;
    wal_options_t o = opts(seg_size);
    wal_t *w = open_ok(f, &o);
    for (uint32_t i = 0; i < 30; i++) append(f, w, 1 + i / 10, 40 + 13 * i);
    sync_all(w);
    assert_int_equal(wal_truncate_after(w, 30), WAL_OK); /* no-op */
    assert_int_equal(wal_truncate_after(w, 31), WAL_ERR_RANGE);
    assert_int_equal(wal_truncate_after(w, 12), WAL_OK);
    f->m.last = 12;
    assert_int_equal(wal_last_index(w), 12);
    assert_int_equal(wal_last_term(w), f->m.term[12]);
    assert_int_equal(wal_durable_index(w), 12);
    uint64_t first, off = entry_pos(&f->m, seg_size, 13, &first);
    static uint64_t segs[DIR_FILES_MAX];
    uint32_t n = list_segments(f, segs);
    assert_true(segs[n - 1] <= 12); /* later files are gone */
    char path[256];
    seg_path(f, segs[n - 1], path, sizeof path);
    assert_int_equal(file_size(path), (int64_t)off);
    check_all(f, w);
    append(f, w, 8, 77); /* index 13, new term */
    sync_all(w);
    wal_close(w);
    w = open_ok(f, &o);
    assert_string_equal(log_lines, "");
    check_all(f, w);
    wal_close(w);
}

/* Truncating at a segment boundary removes the segment whole; truncating to first - 1 empties
 * the log. */
static void test_truncate_boundary_and_empty(void **state) {
    fixture_t *f = *state;
    const uint64_t seg_size = 1;
    wal_options_t o = opts(seg_size);
    wal_t *w = open_ok(f, &o);
    for (uint32_t i = 0; i < 10; i++) append(f, w, 2, 50);
    sync_all(w);
    char path[256];
    seg_path(f, 6, path, sizeof path);
    assert_int_equal(wal_truncate_after(w, 5), WAL_OK);
    assert_int_equal(file_size(path), -1);
    assert_int_equal(wal_segment_count(w), 5);
    f->m.last = 5;
    check_all(f, w);
    append(f, w, 3, 60); /* recreates segment 6 */
    assert_true(file_size(path) > 0);
    assert_int_equal(wal_truncate_after(w, 0), WAL_OK);
    assert_int_equal(wal_last_index(w), 0);
    assert_int_equal(wal_last_term(w), 0);
    assert_int_equal(wal_segment_count(w), 1);
    seg_path(f, 1, path, sizeof path);
    assert_int_equal(file_size(path), 0);
    f->m.last = 0;
    append(f, w, 4, 5);
    sync_all(w);
    wal_close(w);
    w = open_ok(f, &o);
    check_all(f, w);
    wal_close(w);
}

static void test_release_before(void **state) {
    fixture_t *f = *state;
    const uint64_t seg_size = 300;
    wal_options_t o = opts(seg_size);
    wal_t *w = open_ok(f, &o);
    for (uint32_t i = 0; i < 40; i++) append(f, w, 1, 100);
    sync_all(w);
    uint64_t seg20, seg_last;
    entry_pos(&f->m, seg_size, 20, &seg20);
    entry_pos(&f->m, seg_size, 40, &seg_last);
    assert_true(seg20 > 1 && seg20 < seg_last);
    wal_iter_t it;
    wal_entry_t h;
    assert_int_equal(wal_iter_open(w, 1, &it), WAL_OK);
    assert_int_equal(wal_iter_next(&it, &h, f->buf, WAL_BODY_MAX), 1);

    assert_int_equal(wal_release_before(w, 20), WAL_OK);
    f->m.first = seg20;
    static uint64_t segs[DIR_FILES_MAX];
    uint32_t n = list_segments(f, segs);
    assert_int_equal(segs[0], seg20); /* every file below is gone */
    assert_int_equal(n, wal_segment_count(w));
    assert_int_equal(wal_first_index(w), seg20);
    check_all(f, w);
    /* The open iterator is behind the released part now. */
    assert_int_equal(wal_iter_next(&it, &h, f->buf, WAL_BODY_MAX), -1);
    assert_int_equal(it.status, WAL_ERR_RANGE);
    wal_iter_close(&it);
    assert_int_equal(wal_iter_open(w, 1, &it), WAL_ERR_RANGE);
    wal_iter_close(&it);

    assert_int_equal(wal_release_before(w, UINT64_MAX), WAL_OK); /* never the last segment */
    assert_int_equal(list_segments(f, segs), 1);
    assert_int_equal(segs[0], seg_last);
    f->m.first = seg_last;
    wal_close(w);
    w = open_ok(f, &o);
    check_all(f, w);
    wal_close(w);
}

/* ---- group commit ---- */

static void *sync_thread(void *arg) {
    wal_sync_t *s = arg;
    return (void *)(intptr_t)wal_sync_run(s);
}

static wal_status_t join_rc(pthread_t t) {
    void *rc;
    assert_int_equal(pthread_join(t, &rc), 0);
    return (wal_status_t)(intptr_t)rc;
}

/* The worker syncs while the loop thread appends (across new segments): the sync makes
 * durable what was appended before its begin, and nothing after. */
static void test_group_commit_two_threads(void **state) {
    fixture_t *f = *state;
    wal_options_t o = opts(4096);
    wal_t *w = open_ok(f, &o);
    for (int i = 0; i < 50; i++) append(f, w, 1, 200);
    for (int round = 0; round < 20; round++) {
        wal_sync_t s;
        uint64_t before = wal_last_index(w);
        assert_true(wal_sync_begin(w, &s));
        assert_int_equal(s.index, before);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, sync_thread, &s), 0);
        for (int i = 0; i < 40; i++) append(f, w, 1 + (uint64_t)round, 100 + 10 * (uint32_t)i);
        assert_true(wal_durable_index(w) < before); /* not before wal_sync_end */
        wal_status_t rc = join_rc(t);
        assert_int_equal(rc, WAL_OK);
        wal_sync_end(w, &s, rc);
        assert_int_equal(wal_durable_index(w), before);
    }
    assert_true(wal_segment_count(w) > 10);
    sync_all(w);
    wal_close(w);
    w = open_ok(f, &o);
    check_all(f, w);
    wal_close(w);
}

/* More unsynced segments than one sync takes: each sync covers a prefix of whole segments. */
static void test_sync_prefix_of_segments(void **state) {
    fixture_t *f = *state;
    wal_options_t o = opts(1);
    wal_t *w = open_ok(f, &o);
    for (int i = 0; i < 20; i++) append(f, w, 1, 10);
    wal_sync_t s;
    assert_true(wal_sync_begin(w, &s));
    assert_int_equal(s.fd_count, WAL_SYNC_FDS_MAX);
    assert_int_equal(s.index, WAL_SYNC_FDS_MAX);
    wal_sync_end(w, &s, wal_sync_run(&s));
    assert_int_equal(wal_durable_index(w), WAL_SYNC_FDS_MAX);
    sync_all(w);
    assert_int_equal(wal_durable_index(w), 20);
    assert_false(wal_sync_begin(w, &s)); /* nothing left */
    wal_sync_end(w, &s, wal_sync_run(&s));
    wal_close(w);
}

/* Segments released while a sync that references them runs: their fds stay open (a closed
 * fd would make fdatasync fail with EBADF, or sync someone else's file). */
static void test_release_during_sync(void **state) {
    fixture_t *f = *state;
    wal_options_t o = opts(1);
    wal_t *w = open_ok(f, &o);
    for (int i = 0; i < 6; i++) append(f, w, 1, 10);
    wal_sync_t s;
    assert_true(wal_sync_begin(w, &s));
    assert_int_equal(s.fd_count, 6);
    assert_int_equal(wal_release_before(w, UINT64_MAX), WAL_OK);
    assert_int_equal(wal_segment_count(w), 1);
    for (uint32_t i = 0; i < s.fd_count; i++) assert_true(fcntl(s.fds[i], F_GETFD) >= 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, sync_thread, &s), 0);
    wal_status_t rc = join_rc(t);
    assert_int_equal(rc, WAL_OK);
    wal_sync_end(w, &s, rc);
    assert_int_equal(wal_durable_index(w), 6);
    for (uint32_t i = 0; i + 1 < s.fd_count; i++) /* closed now */
        assert_int_equal(fcntl(s.fds[i], F_GETFD), -1);
    wal_close(w);
}

/* A truncation while a sync runs voids that sync: its index may name entries that are gone
 * and rewritten. */
static void test_truncate_during_sync(void **state) {
    fixture_t *f = *state;
    wal_options_t o = opts(500);
    wal_t *w = open_ok(f, &o);
    for (int i = 0; i < 10; i++) append(f, w, 1, 100);
    sync_all(w);
    for (int i = 0; i < 20; i++) append(f, w, 1, 100);
    wal_sync_t s;
    assert_true(wal_sync_begin(w, &s));
    assert_int_equal(s.index, 30);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, sync_thread, &s), 0);
    assert_int_equal(wal_truncate_after(w, 15), WAL_OK);
    f->m.last = 15;
    for (int i = 0; i < 20; i++) append(f, w, 2, 100); /* 16..35, unsynced */
    wal_status_t rc = join_rc(t);
    wal_sync_end(w, &s, rc);
    assert_int_equal(rc, WAL_OK);
    assert_true(wal_durable_index(w) <= 15);
    sync_all(w);
    wal_close(w);
    w = open_ok(f, &o);
    check_all(f, w);
    wal_close(w);
}

/* fsyncgate: one failed sync and the log refuses to pretend; a reopen reads the truth. */
static void test_failed_sync_is_fatal(void **state) {
    fixture_t *f = *state;
    wal_options_t o = opts(0);
    wal_t *w = open_ok(f, &o);
    for (int i = 0; i < 5; i++) append(f, w, 1, 10);
    sync_all(w);
    append(f, w, 1, 10);
    wal_sync_t s;
    assert_true(wal_sync_begin(w, &s));
    s.err_no = EIO;
    wal_sync_end(w, &s, WAL_ERR_IO);
    assert_int_equal(wal_durable_index(w), 5);
    assert_non_null(strstr(wal_error(w), "Input/output error"));
    assert_int_equal(wal_append(w, 1, 0, f->buf, 1, NULL), WAL_ERR_BROKEN);
    assert_int_equal(wal_truncate_after(w, 2), WAL_ERR_BROKEN);
    assert_int_equal(wal_release_before(w, 2), WAL_ERR_BROKEN);
    assert_false(wal_sync_begin(w, &s));
    wal_sync_end(w, &s, wal_sync_run(&s));
    assert_int_equal(wal_durable_index(w), 5);
    wal_close(w);
    w = open_ok(f, &o);
    assert_int_equal(wal_durable_index(w), 6);
    check_all(f, w);
    wal_close(w);
}

/* ---- reset ---- */

static void aux_path(const fixture_t *f, const char *name, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s", f->dir, name);
}

/* On disk, a reset to index leaves one empty segment named index + 1 and no marker. */
static void expect_reset_files(const fixture_t *f, uint64_t index) {
    static uint64_t segs[DIR_FILES_MAX];
    assert_int_equal(list_segments(f, segs), 1);
    assert_int_equal(segs[0], index + 1);
    char path[256];
    seg_path(f, index + 1, path, sizeof path);
    assert_int_equal(file_size(path), 0);
    aux_path(f, "wal-reset", path, sizeof path);
    assert_int_equal(file_size(path), -1);
    aux_path(f, "wal-reset.tmp", path, sizeof path);
    assert_int_equal(file_size(path), -1);
}

/* The state wal_reset(w, index, term) promises, in memory and on disk; the model follows. */
static void expect_reset(fixture_t *f, wal_t *w, uint64_t index, uint64_t term) {
    assert_int_equal(wal_first_index(w), index + 1);
    assert_int_equal(wal_last_index(w), index);
    assert_int_equal(wal_durable_index(w), index);
    assert_int_equal(wal_last_term(w), term);
    assert_int_equal(wal_segment_count(w), 1);
    expect_reset_files(f, index);
    f->m.first = index + 1;
    f->m.last = index;
    check_all(f, w);
}

/* Syncs, closes and reopens: the reopened log must be clean (nothing to repair) and hold
 * exactly the model. */
static wal_t *reopen(fixture_t *f, wal_t *w, const wal_options_t *o) {
    sync_all(w);
    wal_close(w);
    log_lines[0] = 0;
    w = open_ok(f, o);
    assert_string_equal(log_lines, "");
    assert_int_equal(wal_durable_index(w), f->m.last);
    check_all(f, w);
    return w;
}

static void test_reset_empty_log(void **state) {
    fixture_t *f = *state;
    wal_options_t o = opts(0);
    wal_t *w = open_ok(f, &o);
    assert_int_equal(wal_reset(w, 0, 0), WAL_OK); /* where it is: the same file name */
    expect_reset(f, w, 0, 0);
    assert_int_equal(wal_reset(w, 41, 3), WAL_OK);
    expect_reset(f, w, 41, 3);
    w = reopen(f, w, &o);
    assert_int_equal(wal_first_index(w), 42);
    assert_int_equal(wal_last_term(w), 0); /* an empty segment stores no term */
    append(f, w, 3, 100);                  /* index 42 */
    append(f, w, 4, 0);
    w = reopen(f, w, &o);
    assert_int_equal(wal_first_index(w), 42);
    assert_int_equal(wal_last_index(w), 43);
    assert_int_equal(wal_last_term(w), 4);
    wal_close(w);
}

/* Resets inside the log (at a segment boundary, so the new file takes the name of an old one
 * that holds entries, and off one), below it, beyond it, at its end with a lower term; each
 * followed by appends and a reopen. Also: a truncation back to the reset point restores the
 * reset's term, as a release does for the last released entry's. */
static void test_reset_below_inside_beyond(void **state) {
    fixture_t *f = *state;
    const uint64_t seg_size = 300; /* 100-byte bodies: two entries a segment */
    wal_options_t o = opts(seg_size);
    wal_t *w = open_ok(f, &o);
    for (uint32_t i = 0; i < 40; i++) append(f, w, 1 + i / 10, 100);
    sync_all(w);
    for (uint32_t i = 0; i < 5; i++) append(f, w, 5, 100); /* an unsynced tail */
    assert_true(wal_segment_count(w) > 10);

    assert_int_equal(wal_reset(w, 24, 4), WAL_OK); /* inside, off a boundary (25 is not one) */
    expect_reset(f, w, 24, 4);
    for (uint32_t i = 0; i < 10; i++) append(f, w, 4 + i / 5, 100); /* 25..34 */
    w = reopen(f, w, &o);
    assert_int_equal(wal_first_index(w), 25);

    static uint64_t segs[DIR_FILES_MAX];
    uint32_t n = list_segments(f, segs);
    assert_true(n >= 3 && segs[1] == 27);
    char path[256];
    seg_path(f, 27, path, sizeof path);
    assert_true(file_size(path) > 0);
    assert_int_equal(wal_reset(w, 26, 6), WAL_OK); /* the new file is named 27 too */
    expect_reset(f, w, 26, 6);
    for (uint32_t i = 0; i < 10; i++) append(f, w, 6, 100); /* 27..36 */
    w = reopen(f, w, &o);

    assert_int_equal(wal_reset(w, 3, 7), WAL_OK); /* below */
    expect_reset(f, w, 3, 7);
    for (uint32_t i = 0; i < 6; i++) append(f, w, 7, 100); /* 4..9 */
    w = reopen(f, w, &o);

    assert_int_equal(wal_reset(w, 500, 8), WAL_OK); /* beyond */
    expect_reset(f, w, 500, 8);
    append(f, w, 9, 100);
    append(f, w, 9, 100);
    assert_int_equal(wal_truncate_after(w, 500), WAL_OK);
    f->m.last = 500;
    assert_int_equal(wal_last_term(w), 8);                         /* the reset's, not 0 */
    for (uint32_t i = 0; i < 8; i++) append(f, w, 9 + i / 4, 100); /* 501..508 */
    w = reopen(f, w, &o);
    assert_int_equal(wal_first_index(w), 501);

    /* At the end, with a term below the last one (the entries that had it are gone). */
    assert_int_equal(wal_reset(w, 508, 2), WAL_OK);
    expect_reset(f, w, 508, 2);
    for (uint32_t i = 0; i < 12; i++) append(f, w, 2 + i / 4, 100); /* 509..520 */
    sync_all(w);
    assert_int_equal(wal_release_before(w, 515), WAL_OK);
    f->m.first = wal_first_index(w);
    assert_true(f->m.first > 509);
    assert_int_equal(wal_truncate_after(w, f->m.first - 1), WAL_OK);
    f->m.last = f->m.first - 1;
    assert_int_equal(wal_last_term(w), f->m.term[f->m.last]);
    append(f, w, 5, 100);
    w = reopen(f, w, &o);
    wal_close(w);
}

static void test_reset_range_and_broken(void **state) {
    fixture_t *f = *state;
    wal_options_t o = opts(0);
    wal_t *w = open_ok(f, &o);
    for (int i = 0; i < 5; i++) append(f, w, 1, 10);
    sync_all(w);
    size_t len0, len1;
    char *before = dir_image(f, &len0);
    assert_int_equal(wal_reset(w, UINT64_MAX / 2, 1), WAL_ERR_RANGE);
    assert_int_equal(wal_reset(w, UINT64_MAX, 1), WAL_ERR_RANGE);
    char *after = dir_image(f, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    free(before);
    free(after);
    check_all(f, w);

    /* The largest index accepted: the new segment's name must still open. */
    const uint64_t top = UINT64_MAX / 2 - 1;
    assert_int_equal(wal_reset(w, top, 1), WAL_OK);
    uint64_t index = 0;
    assert_int_equal(wal_append(w, 1, 1, "x", 1, &index), WAL_OK);
    assert_int_equal(index, top + 1);
    sync_all(w);
    wal_close(w);
    w = open_ok(f, &o);
    assert_int_equal(wal_first_index(w), top + 1);
    assert_int_equal(wal_last_index(w), top + 1);

    /* A broken log refuses, and changes nothing. */
    assert_int_equal(wal_reset(w, 0, 0), WAL_OK);
    expect_reset(f, w, 0, 0);
    append(f, w, 1, 10);
    sync_all(w);
    append(f, w, 1, 10);
    wal_sync_t s;
    assert_true(wal_sync_begin(w, &s));
    s.err_no = EIO;
    wal_sync_end(w, &s, WAL_ERR_IO);
    before = dir_image(f, &len0);
    assert_int_equal(wal_reset(w, 10, 2), WAL_ERR_BROKEN);
    after = dir_image(f, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    free(before);
    free(after);
    assert_int_equal(wal_last_index(w), 2);
    wal_close(w);
}

/* A reset while a sync runs: the sync's fds stay open until wal_sync_end, and the sync counts
 * for nothing, even though the new log reaches (and passes) the index it captured again with
 * entries that sync never saw. */
static void test_reset_during_sync(void **state) {
    fixture_t *f = *state;
    wal_options_t o = opts(500);
    wal_t *w = open_ok(f, &o);
    for (int i = 0; i < 10; i++) append(f, w, 1, 100);
    sync_all(w);
    for (int i = 0; i < 20; i++) append(f, w, 1, 100);
    wal_sync_t s;
    assert_true(wal_sync_begin(w, &s));
    assert_int_equal(s.index, 30);
    assert_true(s.fd_count > 1);
    assert_int_equal(wal_reset(w, 15, 2), WAL_OK);
    expect_reset(f, w, 15, 2);
    for (uint32_t i = 0; i < s.fd_count; i++) assert_true(fcntl(s.fds[i], F_GETFD) >= 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, sync_thread, &s), 0);
    for (int i = 0; i < 25; i++) append(f, w, 2, 100); /* 16..40: past 30, unsynced */
    wal_status_t rc = join_rc(t);
    assert_int_equal(rc, WAL_OK);
    wal_sync_end(w, &s, rc);
    assert_int_equal(wal_durable_index(w), 15);
    for (uint32_t i = 0; i < s.fd_count; i++) /* every one was an old segment's: closed now */
        assert_int_equal(fcntl(s.fds[i], F_GETFD), -1);
    sync_all(w);
    assert_int_equal(wal_durable_index(w), 40);

    /* Beyond, with the worker really running meanwhile: the durable index is the reset's, not
     * lowered to the old capture nor raised to the entries appended since. */
    for (int i = 0; i < 5; i++) append(f, w, 2, 100);
    assert_true(wal_sync_begin(w, &s));
    assert_int_equal(s.index, 45);
    assert_int_equal(pthread_create(&t, NULL, sync_thread, &s), 0);
    assert_int_equal(wal_reset(w, 100, 3), WAL_OK);
    expect_reset(f, w, 100, 3);
    for (int i = 0; i < 5; i++) append(f, w, 3, 100); /* 101..105 */
    rc = join_rc(t);
    assert_int_equal(rc, WAL_OK);
    wal_sync_end(w, &s, rc);
    assert_int_equal(wal_durable_index(w), 100);
    w = reopen(f, w, &o);
    assert_int_equal(wal_first_index(w), 101);
    wal_close(w);
}

/* Runs fn in a child process and expects it to die by cp_assert (abort). */
static void expect_abort(fixture_t *f, void (*fn)(fixture_t *)) {
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, 2); /* the assertion message is expected */
        fn(f);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void reset_with_iterator_open(fixture_t *f) {
    wal_options_t o = opts(0);
    wal_t *w = open_ok(f, &o);
    append(f, w, 1, 10);
    wal_iter_t it;
    assert_int_equal(wal_iter_open(w, 1, &it), WAL_OK);
    wal_reset(w, 5, 1);
}

static void append_below_reset_term(fixture_t *f) {
    wal_options_t o = opts(0);
    wal_t *w = open_ok(f, &o);
    assert_int_equal(wal_reset(w, 5, 3), WAL_OK);
    wal_append(w, 2, 0, "x", 1, NULL);
}

static void test_reset_misuse_asserts(void **state) {
    fixture_t *f = *state;
    expect_abort(f, reset_with_iterator_open);
    expect_abort(f, append_below_reset_term);
}

/* Crash simulation: options.fault fails every file operation of a reset from the n-th on, so
 * the reset stops there as if the process had died; then a plain open must recover the old
 * log unchanged or the reset one, never fail and never a mix. A crash during open's finishing
 * of a committed reset is tried the same way. (The page cache survives such a "crash": what it
 * cannot show is an unsynced operation lost by the disk; the fsyncs between the steps are what
 * rule that out, see RESET in wal.h.) */

typedef struct crash_hook {
    uint32_t calls;     /* made so far */
    uint32_t crash_at;  /* fail calls from this one on */
    uint32_t rename_at; /* the number of the rename call (the commit point), when seen */
    uint32_t failed;
    bool once;     /* fail call crash_at only: an I/O error, not a crash */
    char seq[512]; /* the calls made, first letters: c(reate) w(rite) f(sync) r(ename) u(nlink) */
} crash_hook_t;

static int crash_fault(void *ctx, const char *call) {
    crash_hook_t *h = ctx;
    uint32_t n = h->calls++;
    if (strcmp(call, "rename") == 0) h->rename_at = n;
    size_t len = strlen(h->seq);
    if (n < h->crash_at && len + 1 < sizeof h->seq) h->seq[len] = call[0];
    if (n < h->crash_at || (h->once && n > h->crash_at)) return 0;
    h->failed++;
    return EIO;
}

static int rm_all(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag;
    return ftw->level > 0 ? remove(path) : 0;
}

/* A fresh log: 20 entries over several segments, the last 5 unsynced. Closed. */
static void crash_log_build(fixture_t *f, const wal_options_t *o) {
    nftw(f->dir, rm_all, 16, FTW_DEPTH | FTW_PHYS);
    f->m.first = 1;
    f->m.last = 0;
    wal_t *w = open_ok(f, o);
    for (uint32_t i = 0; i < 15; i++) append(f, w, 1 + i / 6, 100 + 10 * i);
    sync_all(w);
    for (uint32_t i = 0; i < 5; i++) append(f, w, 3, 50);
    wal_close(w);
}

typedef enum { OUTCOME_OLD, OUTCOME_NEW } outcome_t;

/* Opens after a crash and tells which log came back; fails the test on anything else. The
 * model must hold the old log (never empty); `image` is its files' bytes. *finished: whether
 * the open reported finishing a reset. */
static outcome_t crash_outcome(fixture_t *f, const wal_options_t *o, const char *image,
                               size_t image_len, uint64_t index, bool *finished) {
    log_lines[0] = 0;
    wal_t *w = open_ok(f, o);
    *finished = strstr(log_lines, "finishing an interrupted reset") != NULL;
    outcome_t out;
    if (wal_first_index(w) == index + 1 && wal_last_index(w) == index) {
        out = OUTCOME_NEW;
        assert_int_equal(wal_durable_index(w), index);
        assert_int_equal(wal_segment_count(w), 1);
        expect_reset_files(f, index);
        static model_t old;
        old = f->m;
        f->m.first = index + 1;
        f->m.last = index;
        append(f, w, 9, 77); /* the reset log works: appends, survives a reopen */
        w = reopen(f, w, o);
        f->m = old;
    } else {
        out = OUTCOME_OLD;
        assert_int_equal(wal_durable_index(w), f->m.last);
        check_all(f, w);
        size_t len;
        char *now = dir_image(f, &len);
        assert_int_equal(len, image_len);
        assert_memory_equal(now, image, len);
        free(now);
        char path[256];
        aux_path(f, "wal-reset.tmp", path, sizeof path);
        assert_int_equal(file_size(path), -1);
    }
    wal_close(w);
    return out;
}

static void crash_reset_to(fixture_t *f, uint64_t index, uint64_t term) {
    crash_hook_t hook = {0};
    wal_options_t o = opts(300), plain = opts(300);
    o.no_sync = plain.no_sync = true; /* the hook sees every fsync call all the same */
    o.fault = crash_fault;
    o.fault_ctx = &hook;
    uint32_t olds = 0, news = 0;
    char marker[256];
    aux_path(f, "wal-reset", marker, sizeof marker);
    for (uint32_t k = 0;; k++) {
        crash_log_build(f, &plain);
        size_t image_len;
        char *image = dir_image(f, &image_len);
        static uint64_t segs[DIR_FILES_MAX];
        uint32_t old_segments = list_segments(f, segs);
        hook = (crash_hook_t){.crash_at = UINT32_MAX, .rename_at = UINT32_MAX};
        wal_t *w = open_ok(f, &o);
        assert_int_equal(hook.calls, 0); /* a clean open makes no reset calls */
        hook.crash_at = k;
        wal_status_t st = wal_reset(w, index, term);
        if (hook.failed == 0) { /* k is past the last call: the reset went through */
            assert_int_equal(st, WAL_OK);
            expect_reset(f, w, index, term);
            /* The order the crash outcomes rest on, fsyncs included (a missing one would not
             * show above: the page cache survives these crashes): the marker synced before
             * its rename, the rename synced before any segment goes, the new segment synced
             * before the marker goes, and that synced before the reset returns. */
            char want[sizeof hook.seq] = "cwfrf";
            size_t len = strlen(want);
            for (uint32_t i = 0; i < old_segments; i++) want[len++] = 'u';
            memcpy(want + len, "cfuf", 5);
            assert_string_equal(hook.seq, want);
            wal_close(w);
            free(image);
            break;
        }
        assert_int_equal(st, WAL_ERR_IO);
        assert_non_null(strstr(wal_error(w), "Input/output error"));
        wal_close(w);
        bool marker_left = file_size(marker) >= 0, finished;
        outcome_t out = crash_outcome(f, &plain, image, image_len, index, &finished);
        /* Old exactly while the marker had no name yet; new from then on. */
        assert_int_equal(out, k > hook.rename_at ? OUTCOME_NEW : OUTCOME_OLD);
        assert_int_equal(finished, marker_left);
        out == OUTCOME_NEW ? news++ : olds++;
        free(image);
    }
    assert_true(olds == 4 && news >= 6); /* create, write, fsync, rename; then the rest */

    /* A crash in open, while it finishes a committed reset (stopped right at the commit:
     * every old segment still there), at each of its calls; then a plain open. */
    for (uint32_t j = 0;; j++) {
        crash_log_build(f, &plain);
        size_t image_len;
        char *image = dir_image(f, &image_len);
        static uint64_t segs[DIR_FILES_MAX];
        uint32_t old_segments = list_segments(f, segs);
        assert_true(old_segments > 2 && old_segments < 100);
        hook = (crash_hook_t){.crash_at = UINT32_MAX, .rename_at = UINT32_MAX};
        wal_t *w = open_ok(f, &o);
        hook.crash_at = 4; /* create, write, fsync, rename: then the directory's fsync fails */
        assert_int_equal(wal_reset(w, index, term), WAL_ERR_IO);
        assert_int_equal(hook.rename_at, 3);
        wal_close(w);
        hook = (crash_hook_t){.crash_at = j, .rename_at = UINT32_MAX};
        char err[512];
        w = NULL;
        wal_status_t st = wal_open(f->dir, &o, &w, err, sizeof err);
        bool done = hook.failed == 0, finished;
        if (done) {
            assert_int_equal(st, WAL_OK);
            wal_close(w);
            char want[sizeof hook.seq] = {0}; /* steps 2 and 3, in the same order */
            memset(want, 'u', old_segments);
            memcpy(want + old_segments, "cfuf", 5);
            assert_string_equal(hook.seq, want);
        } else {
            assert_int_equal(st, WAL_ERR_IO);
            assert_null(w);
        }
        /* Either way a plain open now finds the reset log, finishing it while the marker
         * is there (it goes last). */
        bool marker_left = file_size(marker) >= 0;
        assert_true(!done || !marker_left);
        assert_int_equal(crash_outcome(f, &plain, image, image_len, index, &finished), OUTCOME_NEW);
        assert_int_equal(finished, marker_left);
        free(image);
        if (done) break;
    }
}

static void test_reset_crash_each_step(void **state) {
    fixture_t *f = *state;
    crash_reset_to(f, 7, 5);   /* inside */
    crash_reset_to(f, 0, 0);   /* below: the new file takes the name of the first one */
    crash_reset_to(f, 20, 3);  /* at the end */
    crash_reset_to(f, 300, 9); /* beyond */
}

/* One failed call, not a crash. Before the marker's rename nothing changed: the temporary file
 * is gone and the log goes on. From the rename on, the log is BROKEN: memory holds the old log
 * (the commit may not be on disk) or the reset one, and a restart finds the reset one. */
static void test_reset_failed_call(void **state) {
    fixture_t *f = *state;
    crash_hook_t hook;
    wal_options_t o = opts(300), plain = opts(300);
    o.fault = crash_fault;
    o.fault_ctx = &hook;
    char tmp[256];
    aux_path(f, "wal-reset.tmp", tmp, sizeof tmp);
    for (uint32_t k = 0; k < 6; k++) {
        crash_log_build(f, &plain);
        hook = (crash_hook_t){.crash_at = k, .rename_at = UINT32_MAX, .once = true};
        wal_t *w = open_ok(f, &o);
        assert_int_equal(wal_reset(w, 30, 4), WAL_ERR_IO);
        assert_int_equal(hook.failed, 1);
        if (k <= hook.rename_at) {
            assert_int_equal(file_size(tmp), -1);
            check_all(f, w);
            append(f, w, 3, 10);
            w = reopen(f, w, &plain);
            assert_int_equal(wal_first_index(w), 1);
        } else {
            assert_int_equal(wal_append(w, 5, 0, "x", 1, NULL), WAL_ERR_BROKEN);
            assert_int_equal(wal_reset(w, 30, 4), WAL_ERR_BROKEN);
            assert_int_equal(wal_first_index(w), k == 4 ? 1 : 31); /* memory: old, or reset */
            wal_close(w);
            log_lines[0] = 0;
            w = open_ok(f, &plain);
            assert_non_null(strstr(log_lines, "finishing an interrupted reset"));
            assert_int_equal(wal_first_index(w), 31);
            assert_int_equal(wal_last_index(w), 30);
            expect_reset_files(f, 30);
        }
        wal_close(w);
    }
}

/* A leftover temporary marker is a reset that never committed: removed, the log as it was. A
 * named marker that does not verify cannot come from a crash: the open refuses and changes
 * nothing; once repaired, the open finishes the reset. */
static void test_reset_marker_files(void **state) {
    fixture_t *f = *state;
    wal_options_t o = opts(300);
    crash_log_build(f, &o);
    char tmp[256], marker[256];
    aux_path(f, "wal-reset.tmp", tmp, sizeof tmp);
    aux_path(f, "wal-reset", marker, sizeof marker);
    append_bytes(tmp, "half a marker", 13);
    log_lines[0] = 0;
    wal_t *w = open_ok(f, &o);
    assert_non_null(strstr(log_lines, "never committed"));
    assert_int_equal(file_size(tmp), -1);
    check_all(f, w);

    /* A committed marker: the reset stopped right after the rename. */
    crash_hook_t hook = {.crash_at = UINT32_MAX};
    wal_close(w);
    o.fault = crash_fault;
    o.fault_ctx = &hook;
    w = open_ok(f, &o);
    hook.crash_at = 4;
    assert_int_equal(wal_reset(w, 12, 4), WAL_ERR_IO);
    wal_close(w);
    o.fault = NULL;
    assert_int_equal(file_size(marker), 40);
    flip_byte(marker, 20); /* the index */
    expect_corrupt(f, 300, "wal-reset is damaged", "refusing to open");
    assert_int_equal(file_size(marker), 40);
    flip_byte(marker, 20);
    truncate_file(marker, 39);
    expect_corrupt(f, 300, "wal-reset is damaged", "refusing to open");
    append_bytes(marker, "\0\0", 2); /* 41 bytes */
    expect_corrupt(f, 300, "wal-reset is damaged", "refusing to open");
    truncate_file(marker, 40);
    log_lines[0] = 0;
    w = open_ok(f, &o);
    assert_non_null(strstr(log_lines, "finishing an interrupted reset to index 12 (term 4)"));
    assert_int_equal(wal_first_index(w), 13);
    assert_int_equal(wal_last_index(w), 12);
    expect_reset_files(f, 12);
    wal_close(w);
}

/* ---- open ---- */

static void test_open_lock_dirs_and_names(void **state) {
    fixture_t *f = *state;
    snprintf(f->dir, sizeof f->dir, "%s/a/b/wal", f->root); /* created, parents too */
    wal_options_t o = opts(0);
    o.first_index = 100;
    wal_t *w = open_ok(f, &o);
    assert_int_equal(wal_first_index(w), 100);
    assert_int_equal(wal_last_index(w), 99);
    f->m.first = 100;
    f->m.last = 99;
    append(f, w, 3, 10);
    wal_t *w2 = NULL;
    char err[256];
    assert_int_equal(wal_open(f->dir, &o, &w2, err, sizeof err), WAL_ERR_LOCKED);
    assert_null(w2);
    sync_all(w);
    wal_close(w);
    char path[256];
    snprintf(path, sizeof path, "%s/notes.txt", f->dir);
    append_bytes(path, "x", 1);
    snprintf(path, sizeof path, "%s/wal-1.log", f->dir);
    append_bytes(path, "x", 1);
    o.first_index = 1; /* ignored: the log exists */
    w = open_ok(f, &o);
    check_all(f, w);
    wal_close(w);
    snprintf(path, sizeof path, "%s/wal-0000000000000000000x.log", f->dir);
    append_bytes(path, "x", 1);
    assert_int_equal(wal_open(f->dir, &o, &w2, err, sizeof err), WAL_ERR_CORRUPT);
    assert_non_null(strstr(err, "not a valid segment name"));
}

/* ---- randomized crashes ---- */

/* The end offset of entry `durable` in the file at path when it lives there (else 0): a crash
 * may cut anywhere after it, never before. Parses the headers independently of the log. */
static uint64_t durable_end(const char *path, uint64_t durable) {
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    uint64_t off = 0, end = 0;
    wal_entry_t h;
    while (pread(fd, &h, sizeof h, (off_t)off) == (ssize_t)sizeof h && h.magic == WAL_MAGIC) {
        off += esize(h.body_size);
        if (h.index <= durable) end = off;
    }
    close(fd);
    return end;
}

static void crash(fixture_t *f, prng_t *r, uint64_t durable) {
    static uint64_t segs[DIR_FILES_MAX];
    uint32_t n = list_segments(f, segs);
    char path[256];
    seg_path(f, segs[n - 1], path, sizeof path);
    if (n > 1 && segs[n - 1] > durable && prng_chance_ppm(r, 100000)) {
        assert_int_equal(unlink(path), 0); /* its directory entry never reached the disk */
        return;
    }
    uint64_t lo = durable_end(path, durable), hi = (uint64_t)file_size(path);
    truncate_file(path, lo + prng_below(r, hi - lo + 1));
    if (prng_chance_ppm(r, 300000)) {
        uint32_t k = (uint32_t)prng_below(r, 2000);
        for (uint32_t i = 0; i < k; i++) f->buf[i] = (uint8_t)prng_next(r);
        append_bytes(path, f->buf, k);
    }
}

static uint32_t random_size(prng_t *r) {
    if (prng_chance_ppm(r, 5000)) return (uint32_t)prng_below(r, WAL_BODY_MAX + 1);
    if (prng_chance_ppm(r, 50000)) return (uint32_t)prng_below(r, 20000);
    return (uint32_t)prng_below(r, 600);
}

static void test_random_crashes(void **state) {
    fixture_t *f = *state;
    const char *env = getenv("CELLPAY_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
    printf("seed=%" PRIu64 "\n", seed);
    fflush(stdout);
    prng_t r = {seed};
    uint64_t term = 1;
    for (int round = 0; round < 40; round++) {
        static const uint64_t sizes[] = {1, 200, 1000, 5000, 100000, 1 << 20};
        wal_options_t o = opts(sizes[prng_below(&r, 6)] + prng_below(&r, 100));
        /* Real fsyncs in a quarter of the rounds: the model checked is the same either way,
         * and a log of tiny segments costs one fdatasync per file at each open. */
        o.no_sync = prng_chance_ppm(&r, 750000);
        wal_t *w = open_ok(f, &o);
        assert_int_equal(wal_durable_index(w), f->m.last);
        check_all(f, w);
        uint64_t durable = wal_durable_index(w);
        uint32_t n = 1 + (uint32_t)prng_below(&r, 150);
        for (uint32_t i = 0; i < n && f->m.last + 2 < MODEL_MAX; i++) {
            if (prng_chance_ppm(&r, 20000)) term++;
            append(f, w, term, random_size(&r));
            if (prng_chance_ppm(&r, 100000)) sync_all(w), durable = f->m.last;
        }
        if (prng_chance_ppm(&r, 100000) && durable > f->m.first) {
            assert_int_equal(
                wal_release_before(w, f->m.first + prng_below(&r, durable - f->m.first)), WAL_OK);
            f->m.first = wal_first_index(w);
        }
        wal_close(w);
        crash(f, &r, durable);
        w = open_ok(f, &o);
        uint64_t last = wal_last_index(w);
        if (last < durable || last > f->m.last)
            fail_msg("seed=%" PRIu64 " round %d: recovered to %" PRIu64 ", durable %" PRIu64
                     ", written %" PRIu64,
                     seed, round, last, durable, f->m.last);
        f->m.last = last;
        if (last > 0) term = term > f->m.term[last] ? term : f->m.term[last];
        check_all(f, w);
        wal_close(w);
    }
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_roundtrip),
        T(test_iterator_follows_and_small_buffer),
        T(test_rollover_many_segments),
        T(test_torn_mid_body),
        T(test_torn_mid_header),
        T(test_torn_garbage),
        T(test_torn_flipped_body),
        T(test_torn_mid_body_segments),
        T(test_torn_mid_header_segments),
        T(test_torn_garbage_segments),
        T(test_torn_flipped_body_segments),
        T(test_torn_zeros),
        T(test_torn_whole_last_segment),
        T(test_torn_across_segments),
        T(test_corrupt_body_middle),
        T(test_corrupt_header_middle),
        T(test_corrupt_end_of_non_last_segment),
        T(test_corrupt_header_non_last_segment),
        T(test_missing_segment),
        T(test_index_gap_inside_segment),
        T(test_term_going_backwards),
        T(test_iterator_verifies_again),
        T(test_large_body_and_padding),
        T(test_truncate_after),
        T(test_truncate_boundary_and_empty),
        T(test_release_before),
        T(test_reset_empty_log),
        T(test_reset_below_inside_beyond),
        T(test_reset_range_and_broken),
        T(test_group_commit_two_threads),
        T(test_sync_prefix_of_segments),
        T(test_release_during_sync),
        T(test_truncate_during_sync),
        T(test_reset_during_sync),
        T(test_reset_misuse_asserts),
        T(test_reset_crash_each_step),
        T(test_reset_failed_call),
        T(test_reset_marker_files),
        T(test_failed_sync_is_fatal),
        T(test_open_lock_dirs_and_names),
        T(test_random_crashes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

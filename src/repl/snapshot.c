#include "repl/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "base/assert.h"
#include "cell/pay.h"

#define SNAP_MAGIC 0x31304150414E5343ull /* "CSNAPA01" */
/* Version 2 added the payments image (header and regions after the ledger's). A version 1
 * snapshot was written before payments existed: it loads with empty payments. */
#define SNAP_VERSION 2u
#define SNAP_VERSION_NO_PAY 1u

typedef struct snap_header {
    u128 checksum;      /* XXH3-128 of header bytes [16, 256) */
    u128 data_checksum; /* XXH3-128 of the data that follows the header */
    uint64_t magic;
    uint32_t version;
    uint32_t reserved_1;
    uint64_t index;
    uint64_t term;
    uint64_t data_size;
    cell_image_header_t cell;
    ledger_image_header_t ledger;
    mb_record_t members;    /* the group's membership at index (magic 0: none stored) */
    pay_image_header_t pay; /* version 2 */
    uint8_t reserved[56];
} snap_header_t;

CP_STATIC_ASSERT(sizeof(snap_header_t) == 512, "snapshot header is 512 bytes");

static u128 hash128(const void *p, size_t n) {
    XXH128_hash_t h = XXH3_128bits(p, n);
    return ((u128)h.high64 << 64) | h.low64;
}

static u128 state_digest(XXH3_state_t *st) {
    XXH128_hash_t h = XXH3_128bits_digest(st);
    return ((u128)h.high64 << 64) | h.low64;
}

static int write_all(int fd, const void *p, size_t n) {
    const char *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -errno;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n) {
    char *b = p;
    while (n > 0) {
        ssize_t r = read(fd, b, n > (1u << 30) ? (1u << 30) : n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -errno;
        if (r == 0) return -EIO; /* shorter than its header says: truncated */
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static int fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* ---- Writing ---- */

static int write_body(int fd, const cell_t *cell, snap_header_t *h) {
    ledger_region_t r[LEDGER_IMAGE_REGIONS + PAY_IMAGE_REGIONS];
    uint32_t nr = ledger_image_regions(cell_ledger((cell_t *)cell), &h->ledger, r);
    nr += pay_image_regions(cell_pay((cell_t *)cell), &h->pay, r + nr);
    XXH3_state_t st; /* on the stack: no allocation in a forked child */
    XXH3_128bits_reset(&st);
    h->data_size = 0;
    for (uint32_t i = 0; i < nr; i++) {
        int rc = write_all(fd, r[i].ptr, r[i].size);
        if (rc) return rc;
        XXH3_128bits_update(&st, r[i].ptr, r[i].size);
        h->data_size += r[i].size;
    }
    h->data_checksum = state_digest(&st);
    return 0;
}

int snapshot_write(const char *dir, const cell_t *cell, uint64_t index, uint64_t term,
                   const mb_record_t *members, const char **what) {
    char tmp[SNAPSHOT_PATH_MAX], final[SNAPSHOT_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/snap-%020llu.tmp", dir, (unsigned long long)index);
    snapshot_path(dir, index, final, sizeof final);
    snap_header_t h = {.magic = SNAP_MAGIC, .version = SNAP_VERSION, .index = index, .term = term};
    if (members) h.members = *members;
    cell_image_header(cell, &h.cell);
    ledger_image_header(cell_ledger((cell_t *)cell), &h.ledger);
    pay_image_header(cell_pay((cell_t *)cell), &h.pay);

    *what = "create";
    int fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) return -errno;
    int rc = write_all(fd, &h, sizeof h); /* a placeholder until the checksums are known */
    if (rc == 0) rc = write_body(fd, cell, &h);
    if (rc == 0) {
        h.checksum = hash128((const unsigned char *)&h + 16, sizeof h - 16);
        *what = "write header";
        rc = pwrite(fd, &h, sizeof h, 0) == (ssize_t)sizeof h ? 0 : -EIO;
    }
    if (rc == 0) {
        *what = "fsync";
        rc = fsync(fd) == 0 ? 0 : -errno;
    }
    close(fd);
    if (rc == 0) {
        *what = "rename";
        rc = rename(tmp, final) == 0 ? 0 : -errno;
    }
    if (rc == 0) {
        *what = "fsync directory";
        rc = fsync_dir(dir);
    }
    if (rc != 0) unlink(tmp);
    return rc;
}

/* ---- Reading ---- */

/* Snapshot indexes in dir, newest first; returns how many (at most max). */
static uint32_t list_snapshots(const char *dir, uint64_t *out, uint32_t max) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    uint32_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long long idx;
        char tail[8];
        if (sscanf(e->d_name, "snap-%20llu.%7s", &idx, tail) == 2 && !strcmp(tail, "snap") &&
            n < max)
            out[n++] = idx;
    }
    closedir(d);
    for (uint32_t i = 1; i < n; i++) /* insertion sort, newest first */
        for (uint32_t j = i; j > 0 && out[j] > out[j - 1]; j--) {
            uint64_t t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return n;
}

/* NULL when the images of h fit tables of config, else why not. */
static const char *fit_check(const snap_header_t *h, const cell_config_t *config) {
    const char *why = ledger_image_check(&h->ledger, &config->ledger);
    if (why || h->version == SNAP_VERSION_NO_PAY) return why;
    pay_config_t pc = cell_pay_config(config);
    return pay_image_check(&h->pay, &pc);
}

/* Loads one snapshot file; NULL on success, else why it cannot be used. */
static const char *load_one(int fd, const cell_config_t *config, snap_header_t *h, cell_t **out) {
    if (read_all(fd, h, sizeof *h) != 0) return "shorter than its header";
    if (h->magic != SNAP_MAGIC) return "not a cellpay snapshot";
    if (h->checksum != hash128((const unsigned char *)h + 16, sizeof *h - 16))
        return "header checksum mismatch";
    if (h->version != SNAP_VERSION && h->version != SNAP_VERSION_NO_PAY)
        return "unsupported snapshot version";
    bool has_pay = h->version != SNAP_VERSION_NO_PAY;
    const char *why = fit_check(h, config);
    if (why) return why;
    cell_t *cell = cell_create(config);
    if (!cell) return "out of memory";
    ledger_region_t r[LEDGER_IMAGE_REGIONS + PAY_IMAGE_REGIONS];
    uint32_t nr = ledger_image_restore_regions(cell_ledger(cell), &h->ledger, r);
    if (has_pay) nr += pay_image_restore_regions(cell_pay(cell), &h->pay, r + nr);
    XXH3_state_t st;
    XXH3_128bits_reset(&st);
    uint64_t total = 0;
    for (uint32_t i = 0; i < nr && !why; i++) {
        if (read_all(fd, r[i].ptr, r[i].size) != 0) why = "truncated";
        XXH3_128bits_update(&st, r[i].ptr, r[i].size);
        total += r[i].size;
    }
    if (!why && total != h->data_size) why = "data size does not match its header";
    if (!why && state_digest(&st) != h->data_checksum) why = "data checksum mismatch";
    if (!why) why = ledger_image_finish(cell_ledger(cell), &h->ledger);
    if (!why && has_pay) why = pay_image_finish(cell_pay(cell), &h->pay);
    if (!why) why = cell_image_apply(cell, &h->cell);
    if (why) {
        cell_destroy(cell);
        return why;
    }
    *out = cell;
    return NULL;
}

void snapshot_path(const char *dir, uint64_t index, char *out, size_t size) {
    snprintf(out, size, "%s/snap-%020llu.snap", dir, (unsigned long long)index);
}

int snapshot_load_file(const char *path, const cell_config_t *config, cell_t **cell,
                       uint64_t *index, uint64_t *term, mb_record_t *members, char *err,
                       size_t err_size) {
    *cell = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, err_size, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    snap_header_t h = {0};
    const char *why = load_one(fd, config, &h, cell);
    close(fd);
    if (why) {
        snprintf(err, err_size, "snapshot %s cannot be used: %s", path, why);
        return -1;
    }
    *index = h.index;
    *term = h.term;
    *members = h.members;
    return 0;
}

int snapshot_install(const char *dir, const char *path, uint64_t index) {
    char final[SNAPSHOT_PATH_MAX];
    snapshot_path(dir, index, final, sizeof final);
    if (rename(path, final) != 0) return -errno;
    return fsync_dir(dir);
}

int snapshot_load(const char *dir, const cell_config_t *config, cell_t **cell, uint64_t *index,
                  uint64_t *term, mb_record_t *members, char *err, size_t err_size) {
    uint64_t idx[256];
    uint32_t n = list_snapshots(dir, idx, 256);
    *cell = NULL;
    *index = *term = 0;
    memset(members, 0, sizeof *members);
    for (uint32_t i = 0; i < n; i++) {
        char path[SNAPSHOT_PATH_MAX];
        snapshot_path(dir, idx[i], path, sizeof path);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            snprintf(err, err_size, "cannot open %s: %s", path, strerror(errno));
            return -1;
        }
        snap_header_t h = {0};
        const char *why = load_one(fd, config, &h, cell);
        if (why && h.magic == SNAP_MAGIC && fit_check(&h, config) &&
            h.checksum == hash128((const unsigned char *)&h + 16, sizeof h - 16)) {
            /* Whole, but larger than this node's tables: the capacities changed under an
             * existing data directory, which replay would turn into different results. */
            snprintf(err, err_size, "snapshot %s does not fit the configured capacities: %s", path,
                     fit_check(&h, config));
            return -1;
        }
        close(fd);
        if (!why) {
            *index = h.index;
            *term = h.term;
            *members = h.members;
            return 0;
        }
        fprintf(stderr, "cellpay: snapshot %s is damaged or unusable (%s); trying an older one\n",
                path, why);
    }
    return 0;
}

void snapshot_prune(const char *dir, uint64_t keep_from) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long long idx;
        char tail[8];
        if (sscanf(e->d_name, "snap-%20llu.%7s", &idx, tail) != 2) continue;
        if (idx >= keep_from && strcmp(tail, "tmp") != 0) continue;
        char path[SNAPSHOT_PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    fsync_dir(dir);
}

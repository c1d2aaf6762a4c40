#include "repl/hardstate.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "base/assert.h"
#include "base/u128.h"

#define HS_MAGIC 0x5445535446415243ull /* "CRAFTSET" */
#define HS_SLOT 64u

typedef struct hs_slot {
    u128 checksum;
    uint64_t magic;
    uint64_t seq;
    uint64_t term;
    uint32_t vote;
    uint8_t zero[20];
} hs_slot_t;

CP_STATIC_ASSERT(sizeof(hs_slot_t) == HS_SLOT, "hard state slot is 64 bytes");

static u128 slot_sum(const hs_slot_t *s) {
    XXH128_hash_t h = XXH3_128bits((const unsigned char *)s + 16, sizeof *s - 16);
    return ((u128)h.high64 << 64) | h.low64;
}

static bool slot_valid(const hs_slot_t *s) {
    static const uint8_t zero[sizeof s->zero];
    return s->magic == HS_MAGIC && s->checksum == slot_sum(s) &&
           memcmp(s->zero, zero, sizeof zero) == 0;
}

static int write_slot(hardstate_t *hs, uint64_t seq, uint64_t term, uint32_t vote) {
    hs_slot_t s = {.magic = HS_MAGIC, .seq = seq, .term = term, .vote = vote};
    s.checksum = slot_sum(&s);
    off_t off = (off_t)(seq % 2) * HS_SLOT;
    if (pwrite(hs->fd, &s, sizeof s, off) != (ssize_t)sizeof s) return errno ? -errno : -EIO;
    if (fdatasync(hs->fd) != 0) return -errno;
    return 0;
}

int hardstate_open(hardstate_t *hs, const char *dir, char *err, size_t err_size) {
    char path[4096];
    snprintf(path, sizeof path, "%s/raft.state", dir);
    *hs = (hardstate_t){.fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)};
    if (hs->fd < 0) {
        snprintf(err, err_size, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    hs_slot_t s[2];
    ssize_t n = pread(hs->fd, s, sizeof s, 0);
    if (n == 0) { /* new: write both slots, so that a later torn slot always has a partner */
        int rc = write_slot(hs, 0, 0, 0);
        if (rc == 0) rc = write_slot(hs, 1, 0, 0);
        hs->seq = 1;
        if (rc == 0) return 0;
        snprintf(err, err_size, "cannot write %s: %s", path, strerror(-rc));
        return -1;
    }
    bool ok0 = n == (ssize_t)sizeof s && slot_valid(&s[0]);
    bool ok1 = n == (ssize_t)sizeof s && slot_valid(&s[1]);
    if (!ok0 && !ok1) {
        snprintf(err, err_size, "%s is damaged (no valid slot): refusing to guess the votes given",
                 path);
        close(hs->fd);
        hs->fd = -1;
        return -1;
    }
    const hs_slot_t *best = !ok1 || (ok0 && s[0].seq > s[1].seq) ? &s[0] : &s[1];
    hs->seq = best->seq;
    hs->term = best->term;
    hs->vote = best->vote;
    return 0;
}

int hardstate_save(hardstate_t *hs, uint64_t term, uint32_t vote) {
    cp_assert(term >= hs->term);
    int rc = write_slot(hs, hs->seq + 1, term, vote);
    if (rc != 0) return rc;
    hs->seq++;
    hs->term = term;
    hs->vote = vote;
    return 0;
}

void hardstate_close(hardstate_t *hs) {
    if (hs->fd >= 0) close(hs->fd);
    hs->fd = -1;
}

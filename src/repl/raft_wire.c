#include "repl/raft_wire.h"

#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "base/assert.h"
#include "base/u128.h"

typedef struct rfw_desc {
    uint64_t term;
    uint32_t size;
    uint32_t type; /* rf_entry_type_t */
} rfw_desc_t;

CP_STATIC_ASSERT(sizeof(rfw_desc_t) == 16, "entry descriptor is 16 bytes");
CP_STATIC_ASSERT(sizeof(rf_msg_hdr_t) == 64, "message header is 64 bytes");

#define PAD8(n) (((n) + 7u) & ~7u)

const char *rfw_error_str(rfw_error_t e) {
    switch (e) {
    case RFW_OK: return "ok";
    case RFW_NEED_MORE: return "incomplete frame";
    case RFW_BAD_MAGIC: return "bad magic (not a raft frame)";
    case RFW_BAD_SIZE: return "bad frame size";
    case RFW_BAD_CHECKSUM: return "bad frame checksum";
    case RFW_BAD_CELL: return "frame of another cell";
    case RFW_BAD_MESSAGE: return "malformed raft message";
    }
    return "unknown error";
}

static u128 checksum(const void *p, size_t n) {
    XXH128_hash_t h = XXH3_128bits(p, n);
    return ((u128)h.high64 << 64) | h.low64;
}

uint32_t rfw_frame_size(const rf_msg_t *m) {
    uint32_t n = m->h.entry_count;
    if (n > RF_MSG_ENTRIES_MAX || (n > 0 && m->h.type != RF_MSG_APP && m->h.type != RF_MSG_SNAP))
        return 0;
    uint64_t size = RFW_PREFIX + sizeof(rf_msg_hdr_t) + (uint64_t)n * sizeof(rfw_desc_t);
    for (uint32_t i = 0; i < n; i++) {
        if (m->entries[i].size > RF_ENTRY_MAX) return 0;
        size += PAD8((uint64_t)m->entries[i].size);
    }
    return size <= RFW_FRAME_MAX ? (uint32_t)size : 0;
}

uint32_t rfw_encode(const rf_msg_t *m, uint64_t cell, void *buf, uint32_t cap) {
    uint32_t size = rfw_frame_size(m);
    if (size == 0 || size > cap) return 0;
    unsigned char *b = buf;
    uint32_t magic = RFW_MAGIC, pos = RFW_PREFIX;
    memcpy(b + 16, &magic, 4);
    memcpy(b + 20, &size, 4);
    memcpy(b + 24, &cell, 8);
    memcpy(b + pos, &m->h, sizeof m->h);
    pos += sizeof m->h;
    for (uint32_t i = 0; i < m->h.entry_count; i++) {
        rfw_desc_t d = {m->entries[i].term, m->entries[i].size, m->entries[i].type};
        memcpy(b + pos, &d, sizeof d);
        pos += sizeof d;
    }
    for (uint32_t i = 0; i < m->h.entry_count; i++) {
        uint32_t n = m->entries[i].size;
        if (n) memcpy(b + pos, m->entries[i].data, n);
        memset(b + pos + n, 0, PAD8(n) - n);
        pos += PAD8(n);
    }
    cp_assert(pos == size);
    u128 c = checksum(b + 16, size - 16);
    memcpy(b, &c, sizeof c);
    return size;
}

rfw_error_t rfw_peek(const void *buf, size_t len, uint32_t *size) {
    if (len < RFW_PREFIX) return RFW_NEED_MORE;
    uint32_t magic, s;
    memcpy(&magic, (const unsigned char *)buf + 16, 4);
    memcpy(&s, (const unsigned char *)buf + 20, 4);
    if (magic != RFW_MAGIC) return RFW_BAD_MAGIC;
    if (s < RFW_PREFIX + sizeof(rf_msg_hdr_t) || s > RFW_FRAME_MAX || s % 8 != 0)
        return RFW_BAD_SIZE;
    *size = s;
    return RFW_OK;
}

/* Header fields a sender can never produce: rejected before the core sees them. */
static bool header_valid(const rf_msg_hdr_t *h) {
    if (h->type < RF_MSG_APP || h->type > RF_MSG_SNAP_RESP) return false;
    if (h->entry_count > RF_MSG_ENTRIES_MAX) return false;
    if (h->type == RF_MSG_SNAP ? h->entry_count != 1 : h->entry_count > 0 && h->type != RF_MSG_APP)
        return false; /* a snapshot chunk is one entry; only appends carry entries besides */
    if (h->from == RF_NONE || h->to == RF_NONE || h->from == h->to) return false;
    if (h->reject > 1 || (h->flags & ~RF_FLAG_TRANSFER) || h->reserved != 0) return false;
    return true;
}

rfw_error_t rfw_decode(const void *buf, uint32_t size, uint64_t cell, rf_msg_t *m,
                       rf_entry_t entries[RF_MSG_ENTRIES_MAX]) {
    uint32_t s = 0;
    rfw_error_t e = rfw_peek(buf, size, &s);
    if (e != RFW_OK) return e == RFW_NEED_MORE ? RFW_BAD_SIZE : e;
    if (s != size) return RFW_BAD_SIZE;
    const unsigned char *b = buf;
    u128 c;
    memcpy(&c, b, sizeof c);
    if (c != checksum(b + 16, size - 16)) return RFW_BAD_CHECKSUM;
    uint64_t frame_cell;
    memcpy(&frame_cell, b + 24, 8);
    if (frame_cell != cell) return RFW_BAD_CELL;
    memcpy(&m->h, b + RFW_PREFIX, sizeof m->h);
    if (!header_valid(&m->h)) return RFW_BAD_MESSAGE;
    uint64_t pos =
        RFW_PREFIX + sizeof(rf_msg_hdr_t) + (uint64_t)m->h.entry_count * sizeof(rfw_desc_t);
    if (pos > size) return RFW_BAD_MESSAGE;
    for (uint32_t i = 0; i < m->h.entry_count; i++) {
        rfw_desc_t d;
        memcpy(&d, b + RFW_PREFIX + sizeof(rf_msg_hdr_t) + i * sizeof d, sizeof d);
        if (d.type > RF_ENTRY_MEMBERS || (d.type && m->h.type != RF_MSG_APP) ||
            d.size > RF_ENTRY_MAX || PAD8((uint64_t)d.size) > size - pos)
            return RFW_BAD_MESSAGE;
        for (uint32_t k = d.size; k < PAD8(d.size); k++)
            if (b[pos + k] != 0) return RFW_BAD_MESSAGE;
        entries[i] = (rf_entry_t){.term = d.term,
                                  .size = d.size,
                                  .data = d.size ? b + pos : NULL,
                                  .type = (uint8_t)d.type};
        pos += PAD8(d.size);
    }
    if (pos != size) return RFW_BAD_MESSAGE; /* bytes that belong to nothing */
    m->entries = m->h.entry_count ? entries : NULL;
    return RFW_OK;
}

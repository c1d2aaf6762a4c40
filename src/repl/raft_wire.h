/* Raft messages between the replicas of a cell, on the wire: one checksummed frame per
 * message over TCP. Encoding and validation only; no I/O.
 *
 * Frame (little-endian):
 *   [ 0, 16) u128 checksum   XXH3-128 of frame bytes [16, size)
 *   [16, 20) u32  magic      RFW_MAGIC ("CPRF")
 *   [20, 24) u32  size       the whole frame, bytes, <= RFW_FRAME_MAX
 *   [24, 32) u64  cell       the cell whose group the message belongs to
 *   [32, 96) rf_msg_hdr_t   the message header (src/repl/raft.h)
 *   then entry_count descriptors {u64 term, u32 size, u32 type}, then the entry bodies back
 *   to back, each padded with zeros to a multiple of 8.
 * A frame that fails any check is rejected whole: the receiver drops the connection (Raft
 * tolerates lost messages; it does not tolerate altered ones). */
#ifndef CP_RAFT_WIRE_H
#define CP_RAFT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "repl/raft.h"

#define RFW_MAGIC 0x46525043u /* "CPRF" little-endian */
#define RFW_PREFIX 32u        /* checksum, magic, size, cell */
/* One append carries at most RF_MSG_ENTRIES_MAX entries; their bodies are bounded by the
 * group's msg_bytes_max (at least one entry, up to RF_ENTRY_MAX). */
#define RFW_FRAME_MAX (RFW_PREFIX + 64u + RF_MSG_ENTRIES_MAX * 16u + 2u * RF_ENTRY_MAX)

typedef enum rfw_error {
    RFW_OK = 0,
    RFW_NEED_MORE, /* not a whole frame yet */
    RFW_BAD_MAGIC,
    RFW_BAD_SIZE,
    RFW_BAD_CHECKSUM,
    RFW_BAD_CELL,    /* a frame of another cell's group */
    RFW_BAD_MESSAGE, /* a header or descriptor field out of range */
} rfw_error_t;

const char *rfw_error_str(rfw_error_t e);

/* Bytes the frame of m takes; 0 when m cannot be framed (too many or too large entries). */
uint32_t rfw_frame_size(const rf_msg_t *m);

/* Writes the frame of m for `cell` into buf (cap bytes); returns its size, 0 when it does not
 * fit or cannot be framed. */
uint32_t rfw_encode(const rf_msg_t *m, uint64_t cell, void *buf, uint32_t cap);

/* Looks at the start of a stream: RFW_OK with *size once a frame's prefix is there and its
 * size is sane (the frame may still be incomplete: wait for *size bytes), RFW_NEED_MORE before
 * that, else the error. */
rfw_error_t rfw_peek(const void *buf, size_t len, uint32_t *size);

/* Validates a whole frame of `size` bytes and decodes it into *m, whose entries (at most
 * RF_MSG_ENTRIES_MAX, in `entries`) point into buf: valid while buf is. */
rfw_error_t rfw_decode(const void *buf, uint32_t size, uint64_t cell, rf_msg_t *m,
                       rf_entry_t entries[RF_MSG_ENTRIES_MAX]);

#endif

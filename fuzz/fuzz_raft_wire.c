/* libFuzzer target: the decoder of Raft frames between replicas. Any input is rejected or
 * decodes; a decoded frame, encoded again, gives back exactly the input bytes. Random bytes
 * rarely carry a valid checksum, so half of the inputs get theirs fixed up first: that lets
 * the fuzzer reach the header and descriptor checks behind it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "base/assert.h"
#include "repl/raft_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    bool fix = data[0] & 1;
    data++, size--;
    uint32_t frame = 0;
    if (rfw_peek(data, size, &frame) != RFW_OK || frame > size) return 0;
    unsigned char *in = malloc(frame), *again = malloc(frame);
    cp_assert(in && again);
    memcpy(in, data, frame);
    if (fix) {
        XXH128_hash_t h = XXH3_128bits(in + 16, frame - 16);
        memcpy(in, &h.low64, 8);
        memcpy(in + 8, &h.high64, 8);
    }
    rf_msg_t m;
    rf_entry_t e[RF_MSG_ENTRIES_MAX];
    uint64_t cell;
    memcpy(&cell, in + 24, 8);
    if (rfw_decode(in, frame, cell, &m, e) == RFW_OK) {
        cp_assert(rfw_encode(&m, cell, again, frame) == frame);
        cp_assert(memcmp(again, in, frame) == 0);
    }
    free(in);
    free(again);
    return 0;
}

/* libFuzzer target: the binary protocol decoder, fed a byte stream as a node reads it from a
 * connection (any split of whole and partial messages). Every message it accepts must be
 * whole and consistent: the size within bounds, the body a whole number of the op's items, and
 * the checksums those of the bytes; a rejected stream stops with an error, never a crash. */
#include <stdint.h>
#include <string.h>

#include "base/assert.h"
#include "proto/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t pos = 0;
    while (pos < size) {
        uint32_t msg_size = 0;
        proto_error_t e = proto_check_header(data + pos, size - pos, &msg_size);
        if (e == PROTO_NEED_MORE) break;
        if (e != PROTO_OK) {
            cp_assert(proto_error_str(e) != NULL);
            break;
        }
        cp_assert(msg_size >= PROTO_HEADER_SIZE && msg_size <= PROTO_MESSAGE_MAX);
        if (size - pos < msg_size) break;
        proto_header_t h;
        memcpy(&h, data + pos, sizeof h);
        const uint8_t *body = data + pos + PROTO_HEADER_SIZE;
        e = proto_check_message(&h, body, h.command);
        if (e == PROTO_OK) {
            uint32_t body_size = msg_size - PROTO_HEADER_SIZE;
            uint32_t item = h.command == PROTO_REQUEST ? proto_request_item_size(h.operation)
                                                       : proto_reply_item_size(h.operation);
            cp_assert(item == 0 ? body_size == 0 : body_size % item == 0);
            cp_assert(h.client_id != 0);
            /* The admin ops' requests are fixed: status has no body, transfer_leader one. */
            if (h.command == PROTO_REQUEST && h.operation == PROTO_OP_STATUS)
                cp_assert(body_size == 0);
            if (h.command == PROTO_REQUEST && h.operation == PROTO_OP_TRANSFER_LEADER)
                cp_assert(body_size == sizeof(proto_transfer_leader_t));
            if (h.command == PROTO_REPLY && h.operation == PROTO_OP_STATUS)
                cp_assert(body_size % sizeof(proto_status_reply_t) == 0);
            /* Re-sealing an accepted message reproduces it exactly. */
            proto_header_t again = h;
            proto_seal(&again, body, body_size);
            cp_assert(memcmp(&again, &h, sizeof h) == 0);
        }
        pos += msg_size;
    }
    return 0;
}

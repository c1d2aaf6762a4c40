/* Raft frames between replicas: round trips, and every kind of damage rejected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "repl/raft_wire.h"

static unsigned char buf[1 << 16];

static rf_msg_t append_msg(rf_entry_t *e, uint32_t n) {
    rf_msg_t m = {.h = {.term = 7,
                        .index = 41,
                        .log_term = 6,
                        .commit = 40,
                        .from = 1,
                        .to = 3,
                        .entry_count = n,
                        .type = RF_MSG_APP},
                  .entries = e};
    return m;
}

static void test_round_trip(void **state) {
    (void)state;
    const char *a = "first entry", *b = "second, longer entry body";
    rf_entry_t e[3] = {{6, (uint32_t)strlen(a), a, 0},
                       {7, 0, NULL, RF_ENTRY_MEMBERS},
                       {7, (uint32_t)strlen(b), b, 0}};
    rf_msg_t m = append_msg(e, 3);
    uint32_t size = rfw_encode(&m, 9, buf, sizeof buf);
    assert_int_equal(size, rfw_frame_size(&m));
    assert_int_equal(size % 8, 0);
    uint32_t peek = 0;
    assert_int_equal(rfw_peek(buf, 20, &peek), RFW_NEED_MORE);
    assert_int_equal(rfw_peek(buf, size, &peek), RFW_OK);
    assert_int_equal(peek, size);
    rf_msg_t out;
    rf_entry_t oe[RF_MSG_ENTRIES_MAX];
    assert_int_equal(rfw_decode(buf, size, 9, &out, oe), RFW_OK);
    assert_memory_equal(&out.h, &m.h, sizeof m.h);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(out.entries[i].term, e[i].term);
        assert_int_equal(out.entries[i].size, e[i].size);
        assert_int_equal(out.entries[i].type, e[i].type);
        if (e[i].size)
            assert_memory_equal(out.entries[i].data, e[i].data, e[i].size);
        else
            assert_null(out.entries[i].data);
    }
    /* A vote message: no entries. */
    rf_msg_t v = {
        .h = {.term = 8, .index = 50, .log_term = 7, .from = 2, .to = 1, .type = RF_MSG_VOTE}};
    size = rfw_encode(&v, 9, buf, sizeof buf);
    assert_int_equal(rfw_decode(buf, size, 9, &out, oe), RFW_OK);
    assert_null(out.entries);
    assert_memory_equal(&out.h, &v.h, sizeof v.h);
}

static void test_damage_rejected(void **state) {
    (void)state;
    const char *a = "payload";
    rf_entry_t e[1] = {{3, 7, a, 0}};
    rf_msg_t m = append_msg(e, 1);
    uint32_t size = rfw_encode(&m, 9, buf, sizeof buf);
    rf_msg_t out;
    rf_entry_t oe[RF_MSG_ENTRIES_MAX];
    /* Every single flipped byte is caught (by the checksum, the magic or the size). */
    for (uint32_t i = 0; i < size; i++) {
        buf[i] ^= 0x20;
        assert_int_not_equal(rfw_decode(buf, size, 9, &out, oe), RFW_OK);
        buf[i] ^= 0x20;
    }
    assert_int_equal(rfw_decode(buf, size, 9, &out, oe), RFW_OK);
    assert_int_equal(rfw_decode(buf, size, 10, &out, oe), RFW_BAD_CELL);
    assert_int_equal(rfw_decode(buf, size - 8, 9, &out, oe), RFW_BAD_SIZE);
    /* Too small a buffer to encode into. */
    assert_int_equal(rfw_encode(&m, 9, buf, size - 1), 0);
}

static void test_invalid_messages(void **state) {
    (void)state;
    rf_msg_t out;
    rf_entry_t oe[RF_MSG_ENTRIES_MAX];
    rf_msg_t bad[] = {
        {.h = {.term = 1, .from = 1, .to = 1, .type = RF_MSG_VOTE}}, /* to itself */
        {.h = {.term = 1, .from = 0, .to = 2, .type = RF_MSG_VOTE}}, /* from nobody */
        {.h = {.term = 1, .from = 1, .to = 2, .type = 0}},           /* no such type */
        {.h = {.term = 1, .from = 1, .to = 2, .type = RF_MSG_SNAP_RESP + 1}},
        {.h = {.term = 1, .from = 1, .to = 2, .type = RF_MSG_SNAP}}, /* a chunk without bytes */
        {.h = {.term = 1, .from = 1, .to = 2, .type = RF_MSG_VOTE, .reject = 2}},
        {.h = {.term = 1, .from = 1, .to = 2, .type = RF_MSG_VOTE, .reserved = 1}},
        {.h = {.term = 1, .from = 1, .to = 2, .type = RF_MSG_VOTE, .flags = 0x80}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint32_t size = rfw_encode(&bad[i], 1, buf, sizeof buf);
        assert_int_not_equal(size, 0);
        assert_int_equal(rfw_decode(buf, size, 1, &out, oe), RFW_BAD_MESSAGE);
    }
    /* Entries on a message that is not an append cannot even be framed. */
    rf_entry_t e[1] = {{1, 1, "x", 0}};
    rf_msg_t hb = {.h = {.term = 1, .from = 1, .to = 2, .type = RF_MSG_HEARTBEAT, .entry_count = 1},
                   .entries = e};
    assert_int_equal(rfw_frame_size(&hb), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_damage_rejected),
        cmocka_unit_test(test_invalid_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

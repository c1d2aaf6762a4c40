/* The Raft hard state file: saves survive reopen, a torn newest slot falls back to the
 * previous state, a file with both slots damaged is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "repl/hardstate.h"

static char dir[64], path[128], err[512];

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/cellpay-hs-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(path, sizeof path, "%s/raft.state", dir);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    unlink(path);
    rmdir(dir);
    return 0;
}

static void corrupt(long off) {
    int fd = open(path, O_RDWR);
    unsigned char b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0xff;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

static void test_save_and_reopen(void **state) {
    (void)state;
    hardstate_t hs;
    assert_int_equal(hardstate_open(&hs, dir, err, sizeof err), 0);
    assert_int_equal(hs.term, 0);
    assert_int_equal(hs.vote, 0);
    for (uint64_t t = 1; t <= 5; t++)
        assert_int_equal(hardstate_save(&hs, t, (uint32_t)(t % 3 + 1)), 0);
    hardstate_close(&hs);
    assert_int_equal(hardstate_open(&hs, dir, err, sizeof err), 0);
    assert_int_equal(hs.term, 5);
    assert_int_equal(hs.vote, 5 % 3 + 1);
    hardstate_close(&hs);
}

static void test_torn_newest_slot(void **state) {
    (void)state;
    hardstate_t hs;
    assert_int_equal(hardstate_open(&hs, dir, err, sizeof err), 0);
    assert_int_equal(hardstate_save(&hs, 7, 2), 0); /* seq 2: slot 0 */
    assert_int_equal(hardstate_save(&hs, 8, 3), 0); /* seq 3: slot 1 */
    hardstate_close(&hs);
    corrupt(64 + 40); /* the newest slot (its vote): the checksum no longer holds */
    assert_int_equal(hardstate_open(&hs, dir, err, sizeof err), 0);
    assert_int_equal(hs.term, 7); /* the previous state: never a newer one made up */
    assert_int_equal(hs.vote, 2);
    /* Saving again overwrites the damaged slot and is read back. */
    assert_int_equal(hardstate_save(&hs, 9, 1), 0);
    hardstate_close(&hs);
    assert_int_equal(hardstate_open(&hs, dir, err, sizeof err), 0);
    assert_int_equal(hs.term, 9);
    hardstate_close(&hs);
}

static void test_both_slots_damaged(void **state) {
    (void)state;
    hardstate_t hs;
    assert_int_equal(hardstate_open(&hs, dir, err, sizeof err), 0);
    assert_int_equal(hardstate_save(&hs, 3, 1), 0);
    hardstate_close(&hs);
    corrupt(20);
    corrupt(64 + 20);
    assert_int_equal(hardstate_open(&hs, dir, err, sizeof err), -1);
    assert_non_null(strstr(err, "damaged"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_save_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_newest_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_both_slots_damaged, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

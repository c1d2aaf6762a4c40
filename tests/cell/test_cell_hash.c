/* cell_state_hash: cells that applied the same entries hash alike whatever their capacities;
 * the cell's own clock (moved alone by tick and test_set_clock) is part of the state, and so
 * is every ledger row. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cell/cell.h"

typedef struct entry {
    _Alignas(16) unsigned char bytes[4096];
    uint32_t size;
} entry_t;

static void add(entry_t *e, uint8_t op, const void *body, uint32_t size) {
    cell_command_t c = {.client_id = 1, .request_id = e->size + 1, .size = size, .operation = op};
    memcpy(e->bytes + e->size, &c, sizeof c);
    memcpy(e->bytes + e->size + sizeof c, body, size);
    e->size += (uint32_t)sizeof c + size;
}

static void ignore(void *ctx, const cell_command_t *cmd, uint32_t status, uint64_t timestamp,
                   const void *reply, uint32_t reply_size) {
    (void)ctx, (void)cmd, (void)timestamp, (void)reply, (void)reply_size;
    assert_int_equal(status, PROTO_STATUS_OK);
}

static void apply(cell_t *c, uint64_t ts, const entry_t *e) {
    assert_null(cell_entry_check(e->bytes, e->size));
    cell_apply_entry(c, ts, e->bytes, e->size, ignore, NULL);
}

static cell_t *cell_new(uint32_t accounts_max, uint32_t transfers_max) {
    cell_config_t cfg = {.ledger = {.accounts_max = accounts_max, .transfers_max = transfers_max}};
    cell_t *c = cell_create(&cfg);
    assert_non_null(c);
    return c;
}

/* Two accounts, then transfers of `amount` between them. */
static void history(cell_t *c, uint64_t amount) {
    entry_t e = {.size = 0};
    ledger_account_t a[2] = {{.id = 1, .ledger = 1, .code = 1}, {.id = 2, .ledger = 1, .code = 1}};
    add(&e, PROTO_OP_CREATE_ACCOUNTS, a, sizeof a);
    apply(c, 1000, &e);
    e.size = 0;
    for (uint32_t i = 0; i < 4; i++) {
        ledger_transfer_t t = {.id = 10 + i,
                               .debit_account_id = 1 + i % 2,
                               .credit_account_id = 2 - i % 2,
                               .amount = amount,
                               .ledger = 1,
                               .code = 1};
        add(&e, PROTO_OP_CREATE_TRANSFERS, &t, sizeof t);
    }
    apply(c, 2000, &e);
}

static void test_same_entries_hash_alike(void **state) {
    (void)state;
    cell_t *a = cell_new(4, 16), *b = cell_new(100, 1000);
    assert_true(cell_state_hash(a) == cell_state_hash(b));
    history(a, 5);
    history(b, 5);
    assert_true(cell_state_hash(a) == cell_state_hash(b));
    cell_destroy(a);
    cell_destroy(b);
}

static void test_a_ledger_difference_changes_the_hash(void **state) {
    (void)state;
    cell_t *a = cell_new(4, 16), *b = cell_new(4, 16);
    history(a, 5);
    history(b, 6);
    assert_int_equal(cell_clock(a), cell_clock(b));
    assert_true(cell_state_hash(a) != cell_state_hash(b));
    cell_destroy(a);
    cell_destroy(b);
}

static void test_the_cell_clock_changes_the_hash(void **state) {
    (void)state;
    cell_t *a = cell_new(4, 16), *b = cell_new(4, 16);
    history(a, 5);
    history(b, 5);
    /* test_set_clock moves the cell's clock and leaves the ledger alone. */
    entry_t e = {.size = 0};
    uint64_t clock[2] = {cell_clock(a) + 100, 0};
    add(&e, PROTO_OP_TEST_SET_CLOCK, clock, sizeof clock);
    u128 ledger_before = ledger_state_hash(cell_ledger(a));
    apply(a, 0, &e);
    assert_true(ledger_state_hash(cell_ledger(a)) == ledger_before);
    assert_true(cell_state_hash(a) != cell_state_hash(b));
    cell_destroy(a);
    cell_destroy(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_entries_hash_alike),
        cmocka_unit_test(test_a_ledger_difference_changes_the_hash),
        cmocka_unit_test(test_the_cell_clock_changes_the_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Payments inside the cell: the pay op through cell_apply_entry (items answered in order,
 * independent of each other), its entry checks, pay_query through cell_read, the cell's hash
 * covering payments, and a snapshot written and loaded back with the payments image. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cell/cell.h"
#include "repl/snapshot.h"

typedef struct entry {
    _Alignas(16) unsigned char bytes[4 * 256 + 64];
    uint32_t size;
} entry_t;

typedef struct got {
    uint32_t status, size, calls;
    pay_object_t objs[4];
} got_t;

static void add(entry_t *e, uint8_t op, const void *body, uint32_t size) {
    cell_command_t c = {.client_id = 1, .request_id = 1, .size = size, .operation = op};
    memcpy(e->bytes + e->size, &c, sizeof c);
    memcpy(e->bytes + e->size + sizeof c, body, size);
    e->size += (uint32_t)sizeof c + size;
}

static void record(void *ctx, const cell_command_t *cmd, uint32_t status, uint64_t timestamp,
                   const void *reply, uint32_t size) {
    (void)cmd, (void)timestamp;
    got_t *g = ctx;
    g->status = status;
    g->size = size;
    g->calls++;
    assert_true(size <= sizeof g->objs);
    memcpy(g->objs, reply, size);
}

static cell_config_t config(void) {
    return (cell_config_t){.ledger = {.accounts_max = 64, .transfers_max = 64},
                           .pay = {.cell_id = 3}};
}

/* Applies one pay command of n requests; the answers land in g. */
static void pay_cmd(cell_t *c, const pay_request_t *r, uint32_t n, got_t *g) {
    entry_t e = {.size = 0};
    add(&e, PROTO_OP_PAY, r, n * (uint32_t)sizeof *r);
    assert_null(cell_entry_check(e.bytes, e.size));
    memset(g, 0, sizeof *g);
    cell_apply_entry(c, cell_clock(c) + 1000, e.bytes, e.size, record, g);
    assert_int_equal(g->calls, 1);
    assert_int_equal(g->status, PROTO_STATUS_OK);
    assert_int_equal(g->size, n * 256);
}

static void setup_state(cell_t *c) {
    pay_request_t r[4] = {
        {.kind = PAY_KIND_MERCHANT, .uid = 1001},
        {.kind = PAY_KIND_USER, .uid = 2001, .currency = pay_currency_pack("CNY")},
        {.kind = PAY_KIND_TOPUP, .uid = 2001, .currency = pay_currency_pack("CNY"), .amount = 90},
        {.kind = PAY_KIND_PAYMENT,
         .actor = 1001,
         .uid = 2001,
         .currency = pay_currency_pack("CNY"),
         .amount = 40,
         .idem_key = 5,
         .text = "o1"},
    };
    got_t g;
    pay_cmd(c, r, 4, &g);
    for (int i = 0; i < 4; i++) assert_int_equal(g.objs[i].code, PAY_CREATED);
    assert_true(g.objs[3].id >> 64 == 2001);
    assert_true(((uint64_t)g.objs[3].id >> 40) == 3); /* the cell number */
}

static void test_pay_in_cell(void **state) {
    (void)state;
    assert_true(cell_op_is_write(PROTO_OP_PAY));
    assert_false(cell_op_is_write(PROTO_OP_PAY_QUERY));
    cell_config_t cc = config();
    cell_t *c = cell_create(&cc);
    assert_non_null(c);
    u128 empty = cell_state_hash(c);
    setup_state(c);
    assert_true(cell_state_hash(c) != empty);

    /* Items are independent: a failing one between two good ones changes nothing of them. */
    pay_request_t r[3] = {
        {.kind = PAY_KIND_TOPUP, .uid = 2001, .currency = pay_currency_pack("CNY"), .amount = 1},
        {.kind = PAY_KIND_TOPUP, .uid = 2999, .currency = pay_currency_pack("CNY"), .amount = 1},
        {.kind = PAY_KIND_TOPUP, .uid = 2001, .currency = pay_currency_pack("CNY"), .amount = 2},
    };
    got_t g;
    pay_cmd(c, r, 3, &g);
    assert_int_equal(g.objs[0].code, PAY_CREATED);
    assert_int_equal(g.objs[1].code, PAY_ERR_NOT_FOUND);
    assert_int_equal(g.objs[2].code, PAY_CREATED);

    pay_query_t q = {.kind = PAY_Q_BALANCE, .uid = 2001, .currency = pay_currency_pack("CNY")};
    static unsigned char out[PROTO_MESSAGE_MAX];
    assert_int_equal(cell_read(c, PROTO_OP_PAY_QUERY, &q, sizeof q, out), 256);
    pay_object_t o;
    memcpy(&o, out, sizeof o);
    assert_int_equal(o.code, PAY_OK);
    assert_true(o.amount == 90 - 40 + 3);

    /* Entry checks: whole items, at least one. */
    entry_t e = {.size = 0};
    add(&e, PROTO_OP_PAY, r, 255);
    assert_non_null(cell_entry_check(e.bytes, e.size));
    e.size = 0;
    add(&e, PROTO_OP_PAY, r, 0);
    assert_non_null(cell_entry_check(e.bytes, e.size));
    cell_destroy(c);
}

static void test_pay_snapshot(void **state) {
    (void)state;
    char dir[] = "/tmp/cellpay-test-pay-XXXXXX";
    assert_non_null(mkdtemp(dir));
    cell_config_t cc = config();
    cell_t *c = cell_create(&cc);
    setup_state(c);
    const char *what = NULL;
    assert_int_equal(snapshot_write(dir, c, 9, 1, NULL, &what), 0);
    cell_t *back = NULL;
    uint64_t index = 0, term = 0;
    mb_record_t members;
    char err[256] = "";
    assert_int_equal(snapshot_load(dir, &cc, &back, &index, &term, &members, err, sizeof err), 0);
    assert_non_null(back);
    assert_int_equal(index, 9);
    assert_true(cell_state_hash(back) == cell_state_hash(c));
    /* The restored payments answer as before: the keyed payment replays. */
    pay_request_t again = {.kind = PAY_KIND_PAYMENT,
                           .actor = 1001,
                           .uid = 2001,
                           .currency = pay_currency_pack("CNY"),
                           .amount = 40,
                           .idem_key = 5,
                           .text = "o1"};
    got_t g;
    pay_cmd(back, &again, 1, &g);
    assert_int_equal(g.objs[0].code, PAY_CREATED);
    assert_int_equal(g.objs[0].replayed, 1);

    /* Capacities too small for the payments image: refused outright. */
    cell_config_t small = cc;
    small.pay.payments_max = 1;
    small.pay.merchants_max = 1;
    small.pay.users_max = 1;
    small.pay.idempotency_max = 1;
    cell_t *none = NULL;
    assert_int_equal(snapshot_load(dir, &small, &none, &index, &term, &members, err, sizeof err),
                     -1);
    assert_null(none);

    /* A flipped byte in the payments regions (the file's tail): the checksum refuses it. */
    char path[SNAPSHOT_PATH_MAX];
    snapshot_path(dir, 9, path, sizeof path);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, -100, SEEK_END), 0);
    int ch = fgetc(f);
    assert_int_equal(fseek(f, -100, SEEK_END), 0);
    fputc(ch ^ 0x40, f);
    fclose(f);
    assert_int_equal(snapshot_load_file(path, &cc, &none, &index, &term, &members, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "checksum"));
    unlink(path);
    rmdir(dir);
    cell_destroy(back);
    cell_destroy(c);
}

/* Cross-cell state in a cell of zone 1: the capacities are derived, and a snapshot carries the
 * orders, the outbox, and the refund activities and branches. */
static void test_xcell_snapshot(void **state) {
    (void)state;
    cell_config_t cc = config();
    cp_zones_add(&cc.zones, 1); /* uids 10..19 */
    pay_config_t pc = cell_pay_config(&cc);
    assert_int_equal(pc.orders_max, 64);
    assert_int_equal(pc.outbox_max, 64);
    assert_int_equal(pc.tcc_max, 64);
    cell_t *c = cell_create(&cc);
    uint32_t cny = pay_currency_pack("CNY");
    u128 p = ((u128)12 << 64) | ((u128)4 << 40) | 1; /* drawn by cell 4 for buyer 12 */
    pay_request_t r[5] = {
        {.kind = PAY_KIND_MERCHANT, .uid = 11},
        {.kind = PAY_KIND_USER, .uid = 12, .currency = cny},
        {.kind = PAY_KIND_TOPUP, .uid = 12, .currency = cny, .amount = 90},
        {.kind = PAY_KIND_ORDER,
         .actor = 11,
         .uid = 21,
         .currency = cny,
         .amount = 5,
         .idem_key = 1,
         .text = "o1"},
        {.kind = PAY_KIND_PAYMENT,
         .actor = 41,
         .uid = 12,
         .currency = cny,
         .amount = 30,
         .payment_id = p,
         .idem_key = p,
         .peer_cell = 4,
         .text = "x1"},
    };
    got_t g;
    pay_cmd(c, r, 3, &g);
    for (int i = 0; i < 3; i++) assert_int_equal(g.objs[i].code, PAY_CREATED);
    pay_cmd(c, r + 3, 2, &g);
    assert_int_equal(g.objs[0].kind, PAY_KIND_ORDER);
    assert_int_equal(g.objs[0].code, PAY_CREATED);
    assert_int_equal(g.objs[1].code, PAY_CREATED);
    assert_int_equal(g.objs[1].merchant_credit, 1);
    assert_int_equal(pay_outbox_backlog(cell_pay(c)), 1);
    /* A refund of the cross-cell payment (trying); a branch refused (merchant 11 has nothing)
     * and one cancelled before any Try, for refunds drawn by cell 4 for its buyer 41. */
    u128 r1 = ((u128)41 << 64) | ((u128)4 << 40) | 7, r2 = r1 + 1;
    pay_request_t t[3] = {
        {.kind = PAY_KIND_REFUND,
         .actor = 41,
         .payment_id = p,
         .amount = 10,
         .peer_cell = 4,
         .text = "r1"},
        {.kind = PAY_KIND_TRY,
         .actor = 11,
         .uid = 41,
         .payment_id = r1,
         .amount = 3,
         .currency = cny,
         .peer_cell = 4},
        {.kind = PAY_KIND_CANCEL,
         .actor = 11,
         .uid = 41,
         .payment_id = r2,
         .amount = 3,
         .currency = cny,
         .peer_cell = 4},
    };
    pay_cmd(c, t, 3, &g);
    assert_int_equal(g.objs[0].code, PAY_TRYING);
    assert_int_equal(g.objs[1].code, PAY_ERR_INSUFFICIENT_FUNDS);
    assert_int_equal(g.objs[2].code, PAY_CREATED);
    assert_int_equal(pay_activities_trying(cell_pay(c)), 1);

    char dir[] = "/tmp/cellpay-test-xcell-XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *what = NULL;
    assert_int_equal(snapshot_write(dir, c, 4, 1, NULL, &what), 0);
    cell_t *back = NULL;
    uint64_t index = 0, term = 0;
    mb_record_t members;
    char err[256] = "";
    assert_int_equal(snapshot_load(dir, &cc, &back, &index, &term, &members, err, sizeof err), 0);
    assert_true(cell_state_hash(back) == cell_state_hash(c));
    pay_outbox_item_t it;
    assert_int_equal(pay_outbox_pending(cell_pay(back), 0, &it, 1), 1);
    assert_true(it.payment_id == p && it.amount == 30 && it.peer_cell == 4);
    assert_int_equal(it.kind, PAY_KIND_CREDIT);
    assert_int_equal(pay_activities_trying(cell_pay(back)), 1);
    /* The restored cell remembers the branches: a late Try of r2 is refused, r1's repeats. */
    pay_cmd(back, t + 1, 1, &g);
    assert_int_equal(g.objs[0].code, PAY_ERR_INSUFFICIENT_FUNDS);
    t[1].payment_id = r2;
    pay_cmd(back, t + 1, 1, &g);
    assert_int_equal(g.objs[0].code, PAY_ERR_CANCELLED);
    char path[SNAPSHOT_PATH_MAX];
    snapshot_path(dir, 4, path, sizeof path);
    unlink(path);
    rmdir(dir);
    cell_destroy(back);
    cell_destroy(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pay_in_cell),
        cmocka_unit_test(test_pay_snapshot),
        cmocka_unit_test(test_xcell_snapshot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

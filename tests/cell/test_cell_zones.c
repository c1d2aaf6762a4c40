/* A cell refuses commands for zones it does not own: a create_accounts or create_transfers
 * naming any account whose owner uid (upper 64 bits of its id) is in another zone is refused
 * whole with wrong_cell, and nothing of it is applied, not even the clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cell/cell.h"

typedef struct entry {
    _Alignas(16) unsigned char bytes[8192];
    uint32_t size;
} entry_t;

#define REPLIES_MAX 8u
typedef struct replies {
    uint32_t count;
    uint32_t status[REPLIES_MAX];
    uint32_t size[REPLIES_MAX];
    uint32_t result[REPLIES_MAX]; /* the first event's result of an OK create */
} replies_t;

static void add(entry_t *e, uint8_t op, const void *body, uint32_t size) {
    cell_command_t c = {.client_id = 1, .request_id = e->size + 1, .size = size, .operation = op};
    memcpy(e->bytes + e->size, &c, sizeof c);
    memcpy(e->bytes + e->size + sizeof c, body, size);
    e->size += (uint32_t)sizeof c + size;
}

static void record(void *ctx, const cell_command_t *cmd, uint32_t status, uint64_t timestamp,
                   const void *reply, uint32_t reply_size) {
    (void)cmd, (void)timestamp;
    replies_t *r = ctx;
    assert_true(r->count < REPLIES_MAX);
    r->status[r->count] = status;
    r->size[r->count] = reply_size;
    if (reply_size >= sizeof(ledger_result_t))
        r->result[r->count] = ((const ledger_result_t *)reply)->result;
    r->count++;
}

static replies_t apply(cell_t *c, uint64_t ts, const entry_t *e) {
    replies_t r = {0};
    assert_null(cell_entry_check(e->bytes, e->size));
    cell_apply_entry(c, ts, e->bytes, e->size, record, &r);
    return r;
}

/* An account of uid's: the uid in the upper 64 bits, n in the lower. */
static u128 acct(uint64_t uid, uint64_t n) {
    return ((u128)uid << 64) | n;
}

static ledger_account_t account(u128 id) {
    return (ledger_account_t){.id = id, .ledger = 1, .code = 1};
}

static ledger_transfer_t transfer(uint64_t id, u128 debit, u128 credit) {
    return (ledger_transfer_t){.id = id,
                               .debit_account_id = debit,
                               .credit_account_id = credit,
                               .amount = 5,
                               .ledger = 1,
                               .code = 1};
}

static cell_t *cell_with_zones(const char *list) {
    cell_config_t cfg = {.ledger = {.accounts_max = 64, .transfers_max = 64}};
    char err[128];
    if (list) assert_true(cp_zones_parse(list, strlen(list), &cfg.zones, err, sizeof err));
    cell_t *c = cell_create(&cfg);
    assert_non_null(c);
    return c;
}

static bool exists(cell_t *c, u128 id) {
    ledger_account_t out;
    return ledger_lookup_accounts(cell_ledger(c), &id, 1, &out) == 1;
}

/* uid 490 is in zone 49, 500 in zone 50, 12345 in zone 34. */
static void test_accounts_by_zone(void **state) {
    (void)state;
    cell_t *c = cell_with_zones("0-49");
    entry_t e = {.size = 0};
    ledger_account_t a = account(acct(490, 1));
    add(&e, PROTO_OP_CREATE_ACCOUNTS, &a, sizeof a);
    replies_t r = apply(c, 1000, &e);
    assert_int_equal(r.count, 1);
    assert_int_equal(r.status[0], PROTO_STATUS_OK);
    assert_true(exists(c, acct(490, 1)));

    u128 h = cell_state_hash(c);
    uint64_t clock = cell_clock(c);
    e.size = 0;
    a = account(acct(500, 1));
    add(&e, PROTO_OP_CREATE_ACCOUNTS, &a, sizeof a);
    r = apply(c, 0, &e);
    assert_int_equal(r.count, 1);
    assert_int_equal(r.status[0], PROTO_STATUS_WRONG_CELL);
    assert_int_equal(r.size[0], 0);
    assert_false(exists(c, acct(500, 1)));
    assert_int_equal(cell_clock(c), clock);
    assert_true(cell_state_hash(c) == h);

    /* A batch with one foreign account among owned ones: nothing of it. */
    ledger_account_t batch[3] = {account(acct(12345, 1)), account(acct(7, 2)),
                                 account(acct(5501, 3))};
    assert_true(cell_owns_command(c, PROTO_OP_CREATE_ACCOUNTS, batch, 2 * sizeof batch[0]));
    assert_false(cell_owns_command(c, PROTO_OP_CREATE_ACCOUNTS, batch, sizeof batch));
    e.size = 0;
    add(&e, PROTO_OP_CREATE_ACCOUNTS, batch, sizeof batch);
    r = apply(c, 0, &e);
    assert_int_equal(r.status[0], PROTO_STATUS_WRONG_CELL);
    assert_false(exists(c, acct(12345, 1)));
    assert_false(exists(c, acct(7, 2)));
    assert_true(cell_state_hash(c) == h);
    cell_destroy(c);
}

static void test_transfers_by_zone(void **state) {
    (void)state;
    cell_t *c = cell_with_zones("0-49");
    entry_t e = {.size = 0};
    ledger_account_t a[2] = {account(acct(100, 1)), account(acct(490, 1))};
    add(&e, PROTO_OP_CREATE_ACCOUNTS, a, sizeof a);
    assert_int_equal(apply(c, 1000, &e).status[0], PROTO_STATUS_OK);
    u128 h = cell_state_hash(c);

    /* Either side in a foreign zone: cross-cell, refused. */
    ledger_transfer_t out = transfer(1, acct(100, 1), acct(500, 1));
    ledger_transfer_t in = transfer(2, acct(500, 1), acct(100, 1));
    ledger_transfer_t local = transfer(3, acct(100, 1), acct(490, 1));
    e.size = 0;
    add(&e, PROTO_OP_CREATE_TRANSFERS, &out, sizeof out);
    add(&e, PROTO_OP_CREATE_TRANSFERS, &in, sizeof in);
    ledger_transfer_t mixed[2] = {local, out};
    add(&e, PROTO_OP_CREATE_TRANSFERS, mixed, sizeof mixed);
    replies_t r = apply(c, 0, &e);
    assert_int_equal(r.count, 3);
    for (uint32_t i = 0; i < 3; i++) assert_int_equal(r.status[i], PROTO_STATUS_WRONG_CELL);
    assert_true(cell_state_hash(c) == h);

    /* Within the cell's zones: applied (in the same entry as a refused command). */
    e.size = 0;
    add(&e, PROTO_OP_CREATE_TRANSFERS, &out, sizeof out);
    add(&e, PROTO_OP_CREATE_TRANSFERS, &local, sizeof local);
    r = apply(c, 0, &e);
    assert_int_equal(r.status[0], PROTO_STATUS_WRONG_CELL);
    assert_int_equal(r.status[1], PROTO_STATUS_OK);
    assert_int_equal(r.size[1], sizeof(ledger_result_t));
    assert_int_equal(r.result[1], 0);

    /* A post of a pending transfer names no accounts (ids 0): the ledger judges it. */
    ledger_transfer_t pending = local, post = {0};
    pending.id = 4;
    pending.flags = LEDGER_TRANSFER_PENDING;
    post.id = 5;
    post.pending_id = 4;
    post.amount = 5;
    post.flags = LEDGER_TRANSFER_POST_PENDING;
    e.size = 0;
    add(&e, PROTO_OP_CREATE_TRANSFERS, &pending, sizeof pending);
    add(&e, PROTO_OP_CREATE_TRANSFERS, &post, sizeof post);
    r = apply(c, 0, &e);
    assert_int_equal(r.status[0], PROTO_STATUS_OK);
    assert_int_equal(r.status[1], PROTO_STATUS_OK);
    assert_int_equal(r.result[0], 0);
    assert_int_equal(r.result[1], 0);
    cell_destroy(c);
}

/* The default configuration owns every zone; other ops are never refused. */
static void test_default_owns_all(void **state) {
    (void)state;
    cell_t *c = cell_with_zones(NULL);
    entry_t e = {.size = 0};
    ledger_account_t a[3] = {account(acct(500, 1)), account(acct(990, 1)), account(1)};
    add(&e, PROTO_OP_CREATE_ACCOUNTS, a, sizeof a);
    ledger_transfer_t t = transfer(1, acct(500, 1), acct(990, 1));
    add(&e, PROTO_OP_CREATE_TRANSFERS, &t, sizeof t);
    replies_t r = apply(c, 1000, &e);
    assert_int_equal(r.status[0], PROTO_STATUS_OK);
    assert_int_equal(r.status[1], PROTO_STATUS_OK);
    assert_int_equal(r.result[1], 0);
    cell_destroy(c);

    c = cell_with_zones("60-69");
    uint64_t tick[2] = {5, 0};
    assert_true(cell_owns_command(c, PROTO_OP_TICK, tick, sizeof tick));
    e.size = 0;
    add(&e, PROTO_OP_TICK, tick, sizeof tick);
    assert_int_equal(apply(c, 1000, &e).status[0], PROTO_STATUS_OK);
    /* A cell of zones 60-69 owns uid 600..699 + k*1000. */
    e.size = 0;
    ledger_account_t b[2] = {account(acct(600, 1)), account(acct(1699, 1))};
    add(&e, PROTO_OP_CREATE_ACCOUNTS, b, sizeof b);
    assert_int_equal(apply(c, 0, &e).status[0], PROTO_STATUS_OK);
    cell_destroy(c);
}

/* Two cells configured alike stay alike; a non-default zone rule applies. */
static void test_zone_rule(void **state) {
    (void)state;
    cell_config_t cfg = {.ledger = {.accounts_max = 8, .transfers_max = 8},
                         .zone_rule = {.divisor = 1, .modulus = 100}};
    cp_zones_add(&cfg.zones, 7);
    cell_t *c = cell_create(&cfg);
    assert_non_null(c);
    ledger_account_t a = account(acct(107, 1)); /* zone 7 under 1/100, zone 10 by default */
    assert_true(cell_owns_command(c, PROTO_OP_CREATE_ACCOUNTS, &a, sizeof a));
    a = account(acct(70, 1));
    assert_false(cell_owns_command(c, PROTO_OP_CREATE_ACCOUNTS, &a, sizeof a));
    cell_destroy(c);
}

/* The zones are in the state hash: replicas configured apart show it before they diverge. */
static void test_zones_in_the_hash(void **state) {
    (void)state;
    cell_t *all = cell_with_zones(NULL), *all2 = cell_with_zones("0-99"),
           *half = cell_with_zones("0-49"), *other = cell_with_zones("0-48");
    assert_true(cell_state_hash(all) == cell_state_hash(all2));
    assert_true(cell_state_hash(all) != cell_state_hash(half));
    assert_true(cell_state_hash(half) != cell_state_hash(other));
    cell_config_t cfg = {.ledger = {.accounts_max = 64, .transfers_max = 64},
                         .zone_rule = {.divisor = 10, .modulus = 100}};
    cell_t *spelled = cell_create(&cfg);
    assert_non_null(spelled);
    assert_true(cell_state_hash(spelled) == cell_state_hash(all));
    cfg.zone_rule.divisor = 1;
    cell_t *rule = cell_create(&cfg);
    assert_non_null(rule);
    assert_true(cell_state_hash(rule) != cell_state_hash(all));
    cell_destroy(all);
    cell_destroy(all2);
    cell_destroy(half);
    cell_destroy(other);
    cell_destroy(spelled);
    cell_destroy(rule);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accounts_by_zone),  cmocka_unit_test(test_transfers_by_zone),
        cmocka_unit_test(test_default_owns_all),  cmocka_unit_test(test_zone_rule),
        cmocka_unit_test(test_zones_in_the_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

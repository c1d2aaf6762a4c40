/* The JSON Lines codec: every integer form, flags as names or raw bits, filters, and the
 * errors of malformed requests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ledger/ledger_jsonl.h"

static jsonl_parser_t *parser;
static jsonl_request_t req;
static char err[256];

static int parse(const char *line) {
    return jsonl_parse(parser, line, strlen(line), &req, err, sizeof err);
}

static void expect_error(const char *line, const char *message) {
    assert_int_equal(parse(line), -1);
    assert_string_equal(err, message);
}

static void test_integer_forms(void **state) {
    (void)state;
    assert_int_equal(parse("{\"op\":\"create_transfers\",\"events\":[{\"id\":"
                           "340282366920938463463374607431768211455,"
                           "\"amount\":\"340282366920938463463374607431768211454\",\"user_data_"
                           "64\":18446744073709551615,"
                           "\"timeout\":\"4294967295\",\"code\":65535,\"ledger\":7}]}"),
                     0);
    assert_int_equal(req.op, JSONL_CREATE_TRANSFERS);
    assert_int_equal(req.count, 1);
    const ledger_transfer_t *t = &req.transfers[0];
    assert_true(t->id == U128_MAX);
    assert_true(t->amount == U128_MAX - 1);
    assert_true(t->user_data_64 == UINT64_MAX);
    assert_int_equal(t->timeout, UINT32_MAX);
    assert_int_equal(t->code, 65535);
    assert_int_equal(t->ledger, 7);
    assert_true(t->debit_account_id == 0); /* omitted fields are 0 */
    expect_error("{\"op\":\"create_transfers\",\"events\":[{\"timeout\":4294967296}]}",
                 "timeout is out of range");
    expect_error("{\"op\":\"create_transfers\",\"events\":[{\"amount\":1e3}]}",
                 "amount must be a non-negative integer below 2^128");
    expect_error("{\"op\":\"create_transfers\",\"events\":[{\"amount\":\"\"}]}",
                 "amount must be a non-negative integer below 2^128");
    expect_error("{\"op\":\"create_transfers\",\"events\":[{\"amount\":true}]}",
                 "amount must be a non-negative integer below 2^128");
    expect_error("{\"op\":\"create_transfers\",\"events\":[{\"amount\":[1]}]}",
                 "amount must be an integer");
}

static void test_flags(void **state) {
    (void)state;
    assert_int_equal(parse("{\"op\":\"create_accounts\",\"events\":[{\"flags\":[\"linked\","
                           "\"closed\",\"history\"]},"
                           "{\"flags\":65535},{\"flags\":\"3\"},{\"flags\":[]}]}"),
                     0);
    assert_int_equal(req.count, 4);
    assert_int_equal(req.accounts[0].flags,
                     LEDGER_ACCOUNT_LINKED | LEDGER_ACCOUNT_CLOSED | LEDGER_ACCOUNT_HISTORY);
    assert_int_equal(req.accounts[1].flags, 65535);
    assert_int_equal(req.accounts[2].flags, 3);
    assert_int_equal(req.accounts[3].flags, 0);
    /* Transfer flags are their own names; an account flag name is unknown there. */
    expect_error("{\"op\":\"create_transfers\",\"events\":[{\"flags\":[\"history\"]}]}",
                 "unknown transfer flag \"history\"");
    assert_int_equal(parse("{\"op\":\"create_transfers\",\"events\":[{\"flags\":[\"imported\","
                           "\"closing_credit\"]}]}"),
                     0);
    assert_int_equal(req.transfers[0].flags,
                     LEDGER_TRANSFER_IMPORTED | LEDGER_TRANSFER_CLOSING_CREDIT);
    expect_error("{\"op\":\"create_accounts\",\"events\":[{\"flags\":65536}]}",
                 "flags is out of range");
    /* Reserved bits have no name: replies print them as their value, and that parses back. */
    assert_int_equal(
        parse("{\"op\":\"create_accounts\",\"events\":[{\"flags\":[\"history\",512,\"64\"]}]}"), 0);
    assert_int_equal(req.accounts[0].flags, LEDGER_ACCOUNT_HISTORY | 512 | 64);
    expect_error("{\"op\":\"create_accounts\",\"events\":[{\"flags\":[70000]}]}",
                 "unknown account flag \"70000\"");
}

static void test_filters(void **state) {
    (void)state;
    assert_int_equal(
        parse(
            "{\"op\":\"get_account_transfers\",\"filter\":{\"account_id\":\"5\",\"user_data_32\":9,"
            "\"code\":3,\"timestamp_min\":\"10\",\"timestamp_max\":20,\"limit\":4,"
            "\"flags\":[\"credits\",\"reversed\"]}}"),
        0);
    const ledger_account_filter_t *f = &req.account_filter;
    assert_true(f->account_id == 5);
    assert_int_equal(f->user_data_32, 9);
    assert_int_equal(f->code, 3);
    assert_int_equal(f->timestamp_min, 10);
    assert_int_equal(f->timestamp_max, 20);
    assert_int_equal(f->limit, 4);
    assert_int_equal(f->flags, LEDGER_FILTER_CREDITS | LEDGER_FILTER_REVERSED);
    assert_int_equal(parse("{\"op\":\"query_transfers\",\"filter\":{\"ledger\":2,\"limit\":1,"
                           "\"flags\":[\"reversed\"]}}"),
                     0);
    assert_int_equal(req.query_filter.ledger, 2);
    assert_int_equal(req.query_filter.flags, LEDGER_FILTER_REVERSED);
    expect_error("{\"op\":\"query_transfers\",\"filter\":{\"account_id\":\"1\"}}",
                 "unknown filter field \"account_id\"");
    expect_error("{\"op\":\"get_account_balances\",\"filter\":{\"ledger\":1}}",
                 "unknown filter field \"ledger\"");
}

static void test_requests(void **state) {
    (void)state;
    assert_int_equal(parse("  {\"ids\":[\"1\",2],\"op\":\"lookup_transfers\"}  "), 0);
    assert_int_equal(req.op, JSONL_LOOKUP_TRANSFERS);
    assert_int_equal(req.count, 2);
    assert_true(req.ids[0] == 1 && req.ids[1] == 2);
    assert_int_equal(parse("{\"op\":\"tick\",\"seconds\":3}"), 0);
    assert_int_equal(req.nanoseconds, 3000000000ull);
    assert_int_equal(
        parse("{\"op\":\"test_set_balances\",\"account_id\":\"4\",\"credits_posted\":\"9\"}"), 0);
    assert_true(req.account_id == 4 && req.balances[3] == 9 && req.balances[0] == 0);
    expect_error("{\"op\":\"tick\",\"seconds\":18446744073709551615}", "seconds is out of range");
    expect_error("{\"op\":\"tick\",\"seconds\":1,\"seconds\":2}", "repeated field \"seconds\"");
    expect_error("{\"op\":\"lookup_accounts\",\"op\":\"lookup_accounts\",\"ids\":[]}",
                 "repeated field \"op\"");
    expect_error("{\"op\":\"lookup_accounts\",\"events\":[]}",
                 "unknown field \"events\" for op lookup_accounts");
    expect_error("{\"op\":\"lookup_accounts\"}", "op lookup_accounts needs \"ids\"");
    expect_error("{\"op\":\"lookup_accounts\",\"ids\":[]}{}",
                 "trailing data after the request object");
    expect_error("\"op\"", "a request must be a JSON object");
    expect_error("   ", "empty line");
    expect_error("{\"op\":\"create_accounts\",\"events\":[{\"id\":1}", "malformed JSON");
    expect_error("{\"op\":\"create_accounts\",\"events\":[1]}", "each account must be an object");
}

static void test_replies(void **state) {
    (void)state;
    jsonl_out_t o = {0};
    ledger_result_t r[2] = {{LEDGER_TRANSFER_CREATED, 0, 12},
                            {LEDGER_TRANSFER_EXCEEDS_CREDITS, 0, 0}};
    jsonl_reply_results(&o, r, 2, true);
    assert_string_equal(o.buf, "{\"results\":[{\"result\":\"created\",\"timestamp\":\"12\"},"
                               "{\"result\":\"exceeds_credits\",\"timestamp\":\"0\"}]}");
    o.len = 0;
    ledger_account_t a = {.id = U128_MAX,
                          .ledger = 1,
                          .code = 2,
                          .flags = LEDGER_ACCOUNT_HISTORY | (1u << 9),
                          .timestamp = 5};
    jsonl_reply_accounts(&o, &a, 1);
    assert_string_equal(
        o.buf, "{\"accounts\":[{\"id\":\"340282366920938463463374607431768211455\","
               "\"debits_pending\":\"0\",\"debits_posted\":\"0\",\"credits_pending\":\"0\","
               "\"credits_posted\":\"0\",\"user_data_128\":\"0\",\"user_data_64\":\"0\","
               "\"user_data_32\":0,\"reserved\":0,\"ledger\":1,\"code\":2,"
               "\"flags\":[\"history\",512],\"timestamp\":\"5\"}]}");
    o.len = 0;
    jsonl_reply_error(&o, "bad \"x\"\n");
    assert_string_equal(o.buf, "{\"error\":\"bad \\\"x\\\"\\u000a\"}");
    jsonl_out_free(&o);
}

int main(void) {
    parser = jsonl_parser_create();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integer_forms), cmocka_unit_test(test_flags),
        cmocka_unit_test(test_filters),       cmocka_unit_test(test_requests),
        cmocka_unit_test(test_replies),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    jsonl_parser_destroy(parser);
    return rc;
}

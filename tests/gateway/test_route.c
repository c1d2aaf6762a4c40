/* The route table: the zone rule, zone lists, the text format (good tables parse, bad ones
 * are refused with the line and the reason), the normalized round trip, changes, and the
 * atomic save. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/route.h"

static rt_table_t table, again;
static char err[512];
static char text[RT_TEXT_MAX];

static bool parse(const char *s) {
    err[0] = '\0';
    return rt_parse(s, strlen(s), &table, err, sizeof err);
}

/* s must be refused with an error containing want. */
static void refused(const char *s, const char *want) {
    if (parse(s)) fail_msg("accepted:\n%s", s);
    if (!strstr(err, want)) fail_msg("error \"%s\" does not say \"%s\"", err, want);
}

static void test_zone_rule(void **state) {
    (void)state;
    assert_int_equal(cp_zone_of(NULL, 0), 0);
    assert_int_equal(cp_zone_of(NULL, 9), 0);
    assert_int_equal(cp_zone_of(NULL, 10), 1);
    assert_int_equal(cp_zone_of(NULL, 2088123456789), 78); /* ...789: digits 7 and 8 */
    assert_int_equal(cp_zone_of(NULL, 999), 99);
    assert_int_equal(cp_zone_of(NULL, 1000), 0);
    assert_int_equal(cp_zone_of(NULL, UINT64_MAX), (UINT64_MAX / 10) % 100);
    cp_zone_rule_t r = {1, 100};
    assert_null(cp_zone_rule_check(&r));
    assert_int_equal(cp_zone_of(&r, 1234), 34);
    r = (cp_zone_rule_t){100, 50};
    assert_int_equal(cp_zone_of(&r, 12345), 23);
    r = (cp_zone_rule_t){0, 100};
    assert_non_null(cp_zone_rule_check(&r));
    r = (cp_zone_rule_t){10, 0};
    assert_non_null(cp_zone_rule_check(&r));
    r = (cp_zone_rule_t){10, 101};
    assert_non_null(cp_zone_rule_check(&r));
    assert_int_equal(cp_account_uid(((u128)42 << 64) | 7), 42);
    assert_true(cp_zone_rule_parse("1/7", 3, &r, err, sizeof err));
    assert_true(r.divisor == 1 && r.modulus == 7);
    r = cp_zone_rule_effective(NULL);
    assert_true(r.divisor == 10 && r.modulus == 100);
    const char *bad[] = {"",
                         "10",
                         "10/",
                         "/100",
                         "0/100",
                         "10/0",
                         "10/101",
                         "10/100/1",
                         "a/b",
                         "-1/100",
                         "99999999999999999999999/100"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (cp_zone_rule_parse(bad[i], strlen(bad[i]), &r, err, sizeof err))
            fail_msg("zone rule \"%s\" accepted", bad[i]);
    }
}

static void test_zone_lists(void **state) {
    (void)state;
    cp_zones_t z;
    char out[CP_ZONES_TEXT_MAX];
    const char *s = "60-69,0-24,50";
    assert_true(cp_zones_parse(s, strlen(s), &z, err, sizeof err));
    assert_int_equal(cp_zones_count(&z), 36);
    assert_true(cp_zones_has(&z, 0) && cp_zones_has(&z, 24) && cp_zones_has(&z, 50));
    assert_false(cp_zones_has(&z, 25) || cp_zones_has(&z, 49) || cp_zones_has(&z, 70));
    cp_zones_format(&z, out, sizeof out);
    assert_string_equal(out, "0-24,50,60-69");
    z = cp_zones_all();
    assert_int_equal(cp_zones_count(&z), 100);
    cp_zones_format(&z, out, sizeof out);
    assert_string_equal(out, "0-99");
    /* The longest list: every other zone. */
    memset(&z, 0, sizeof z);
    for (uint32_t i = 0; i < 100; i += 2) cp_zones_add(&z, i);
    assert_true(cp_zones_format(&z, out, sizeof out) < sizeof out);
    const char *bad[] = {"",  "100", "5-3", "1,1", "0-10,5", "1,", ",1",
                         "a", "1-",  "-1",  "1 2", "0000",   "1;2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (cp_zones_parse(bad[i], strlen(bad[i]), &z, err, sizeof err))
            fail_msg("zone list \"%s\" accepted", bad[i]);
    }
}

static void test_good_table(void **state) {
    (void)state;
    const char *s = "# production\n"
                    "  version 7\n"
                    "rule 10 100\r\n"
                    "zones 50-99 -> 2\n"
                    "cell 2 127.0.0.1:7101,127.0.0.1:7102\n"
                    "cell 1\t127.0.0.1:7001\n"
                    "zones 0-24,26-49 -> 1   # not a comment here: refused below\n";
    refused(s, "line 7: too many words");
    s = "# production\n"
        "  version 7\n"
        "rule 10 100\r\n"
        "zones 50-99 -> 2\n"
        "cell 2 127.0.0.1:7101,127.0.0.1:7102\n"
        "cell 1\t127.0.0.1:7001\n"
        "zones 0-24,26-49 -> 1\n"
        "zones 25 -> 2";
    assert_true(parse(s));
    assert_int_equal(table.version, 7);
    assert_int_equal(table.cell_count, 2);
    assert_int_equal(table.cells[0].id, 1); /* sorted */
    assert_int_equal(table.cells[1].addr_count, 2);
    assert_string_equal(table.cells[1].addrs[1], "127.0.0.1:7102");
    assert_int_equal(table.zone_cell[0], 1);
    assert_int_equal(table.zone_cell[25], 2);
    assert_int_equal(table.zone_cell[49], 1);
    assert_int_equal(rt_cell_of_uid(&table, 255), 2);
    assert_int_equal(rt_cell_of_uid(&table, 1490), 1);
    assert_ptr_equal(rt_find_cell(&table, 2), &table.cells[1]);
    assert_null(rt_find_cell(&table, 3));
    cp_zones_t z = rt_cell_zones(&table, 2);
    assert_int_equal(cp_zones_count(&z), 51);

    size_t n = rt_format(&table, text, sizeof text);
    assert_true(n < sizeof text);
    assert_int_equal(n, strlen(text));
    assert_int_equal(rt_format(&table, NULL, 0), n);
    assert_string_equal(text, "# cellpay route table (docs/routing.md)\n"
                              "version 7\n"
                              "rule 10 100\n"
                              "cell 1 127.0.0.1:7001\n"
                              "cell 2 127.0.0.1:7101,127.0.0.1:7102\n"
                              "zones 0-24 -> 1\n"
                              "zones 25 -> 2\n"
                              "zones 26-49 -> 1\n"
                              "zones 50-99 -> 2\n");
    assert_true(rt_parse(text, n, &again, err, sizeof err));
    assert_true(rt_equal(&table, &again));

    /* The rule is optional; the default is 10/100. A cell may own no zone (a spare). */
    assert_true(parse("version 1\ncell 1 localhost:1\ncell 9 h-9.example:65535\n"
                      "zones 0-99 -> 1\n"));
    assert_int_equal(table.rule.divisor, 10);
    assert_int_equal(table.rule.modulus, 100);
    assert_int_equal(table.cell_count, 2);
    assert_true(parse("version 18446744073709551615\nrule 1 7\ncell 4294967295 a:1,b:2,c:3,d:4,"
                      "e:5,f:6,g:7\nzones 0-99 -> 4294967295\n"));
    assert_int_equal(rt_zone(&table, 15), 1);
}

static void test_bad_tables(void **state) {
    (void)state;
    refused("", "no \"version N\" line");
    refused("cell 1 a:1\nzones 0-99 -> 1\n", "no \"version N\" line");
    refused("version 1\nversion 2\n", "line 2: a second version line (the first is line 1)");
    refused("version 0\n", "line 1: the version must be");
    refused("version -1\n", "line 1: the version must be");
    refused("version 18446744073709551616\n", "line 1: the version must be");
    refused("version\n", "line 1: expected \"version N\"");
    refused("version 1\nrule 0 100\n", "line 2: the zone rule's divisor");
    refused("version 1\nrule 10 101\n", "line 2: the zone rule's modulus");
    refused("version 1\nrule 10\n", "line 2: expected \"rule DIVISOR MODULUS\"");
    refused("version 1\nroute 1\n", "line 2: unknown statement \"route\"");
    refused("version 1\ncell 1 a:1\nzones 0-49 -> 1\n", "zones 50-99 are not assigned");
    refused("version 1\ncell 1 a:1\nzones 0-49 -> 1\nzones 40-99 -> 1\n",
            "line 4: zone 40 is already assigned on line 3");
    refused("version 1\ncell 1 a:1\nzones 0-99 -> 2\n",
            "line 3: cell 2 has no \"cell 2 HOST:PORT,...\" line");
    refused("version 1\ncell 1 a:1\nzones 0-100 -> 1\n", "line 3: zone 100 is out of range");
    refused("version 1\ncell 1 a:1\nzones 9-0 -> 1\n", "line 3: zone range 9-0 runs backwards");
    refused("version 1\ncell 1 a:1\nzones 0-99 => 1\n", "line 3: expected \"zones A-B");
    refused("version 1\ncell 1 a:1\nzones 0-99 -> x\n", "line 3: the cell number");
    /* 0 means "no other cell" in cross-cell requests: no cell has it. */
    refused("version 1\ncell 0 a:1\nzones 0-99 -> 0\n", "line 2: the cell number must be 1..");
    refused("version 1\ncell 1 a:1\nzones 0-99 -> 0\n", "line 3: the cell number must be 1..");
    refused("version 1\ncell 1 a:1\ncell 1 b:1\n",
            "line 3: cell 1 is given twice (first on line 2)");
    refused("version 1\ncell 4294967296 a:1\n", "line 2: the cell number");
    refused("version 1\ncell 1\n", "line 2: expected \"cell C");
    refused("version 1\ncell 1 a:1,,b:2\n", "line 2: cell 1 has an empty address");
    refused("version 1\ncell 1 a:1,\n", "line 2: cell 1 has an empty address");
    refused("version 1\ncell 1 a\n", "line 2: cell 1: address \"a\" has no \":PORT\"");
    refused("version 1\ncell 1 :80\n", "has no host");
    refused("version 1\ncell 1 a:0\n", "has no port in 1..65535");
    refused("version 1\ncell 1 a:65536\n", "has no port in 1..65535");
    refused("version 1\ncell 1 a_b:1\n", "a character a host cannot have");
    refused("version 1\ncell 1 a:1,b:1,c:1,d:1,e:1,f:1,g:1,h:1\n", "more than 7 addresses");
    refused("version 1\ncell 1 a:1,a:1\n", "lists address a:1 twice");
    refused("version 1\ncell 1 a:1\ncell 2 b:1,a:1\n", "line 3: address a:1 is already cell 1's");
    refused("version 1\ncell 1 "
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1\n",
            "is too long");
    refused("version 1\x01\n", "line 1: a control character (byte 0x01)");
    static const char nul[] = "version 1\n\0";
    assert_false(rt_parse(nul, sizeof nul - 1, &table, err, sizeof err));
    assert_non_null(strstr(err, "line 2: a control character (byte 0x00)"));
    /* More cells than a table holds. */
    char *big = malloc(RT_TEXT_MAX);
    assert_non_null(big);
    size_t n = (size_t)sprintf(big, "version 1\n");
    for (uint32_t i = 0; i <= RT_CELLS_MAX; i++)
        n += (size_t)sprintf(big + n, "cell %u h:%u\n", i + 1, i + 1);
    assert_false(rt_parse(big, n, &table, err, sizeof err));
    assert_non_null(strstr(err, "line 130: more than 128 cells"));
    free(big);
}

static void test_changes(void **state) {
    (void)state;
    assert_true(parse("version 4\ncell 1 a:1\nzones 0-99 -> 1\n"));
    cp_zones_t z;
    assert_true(cp_zones_parse("50-99", 5, &z, err, sizeof err));
    assert_false(rt_assign(&table, &z, 2, err, sizeof err));
    assert_non_null(strstr(err, "no cell 2"));
    assert_int_equal(table.version, 4);
    assert_false(rt_set_cell(&table, 2, "b:1,a:1", err, sizeof err));
    assert_non_null(strstr(err, "address a:1 is already cell 1's"));
    assert_false(rt_set_cell(&table, 2, "b", err, sizeof err));
    assert_true(rt_set_cell(&table, 2, "b:1,b:2", err, sizeof err));
    assert_false(rt_set_cell(&table, 0, "c:1", err, sizeof err)); /* 0: no cell */
    assert_non_null(strstr(err, "the cell number must be 1..4294967295"));
    assert_true(rt_assign(&table, &z, 2, err, sizeof err));
    assert_int_equal(table.version, 5);
    assert_int_equal(table.zone_cell[49], 1);
    assert_int_equal(table.zone_cell[50], 2);
    assert_true(rt_validate(&table, err, sizeof err));
    /* Replacing a cell's addresses may reuse its own. */
    assert_true(rt_set_cell(&table, 1, "a:1,a:2", err, sizeof err));
    assert_int_equal(table.cells[0].addr_count, 2);
    size_t n = rt_format(&table, text, sizeof text);
    assert_true(rt_parse(text, n, &again, err, sizeof err));
    assert_true(rt_equal(&table, &again));
    again.zone_cell[3] = 2;
    assert_false(rt_equal(&table, &again));
    again.zone_cell[3] = 7;
    assert_false(rt_validate(&again, err, sizeof err));
    assert_non_null(strstr(err, "zone 3 goes to cell 7, which has no addresses"));
}

static void test_save_and_load(void **state) {
    (void)state;
    char dir[] = "/tmp/cellpay-route-XXXXXX", path[64], tmp[80];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/routes", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_false(rt_load(path, &table, err, sizeof err));
    assert_non_null(strstr(err, "No such file"));
    assert_true(parse("version 9\ncell 1 a:1\ncell 2 b:2\nzones 0-9 -> 2\nzones 10-99 -> 1\n"));
    assert_true(rt_save(path, &table, err, sizeof err));
    assert_int_equal(access(tmp, F_OK), -1);
    assert_true(rt_load(path, &again, err, sizeof err));
    assert_true(rt_equal(&table, &again));
    /* A save replaces the file. */
    table.version = 10;
    assert_true(rt_save(path, &table, err, sizeof err));
    assert_true(rt_load(path, &again, err, sizeof err));
    assert_int_equal(again.version, 10);
    /* An invalid table is not saved. */
    table.version = 0;
    assert_false(rt_save(path, &table, err, sizeof err));
    assert_true(rt_load(path, &again, err, sizeof err));
    assert_int_equal(again.version, 10);
    /* Errors of a file name it and the line. */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("version 1\nbogus\n", f);
    fclose(f);
    assert_false(rt_load(path, &again, err, sizeof err));
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "line 2: unknown statement \"bogus\""));
    unlink(path);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zone_rule),  cmocka_unit_test(test_zone_lists),
        cmocka_unit_test(test_good_table), cmocka_unit_test(test_bad_tables),
        cmocka_unit_test(test_changes),    cmocka_unit_test(test_save_and_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

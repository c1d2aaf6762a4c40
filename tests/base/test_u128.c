/* Decimal parsing and formatting of u128 (src/base/u128.h) against a reference written here
 * the slow way (one 128-bit division per digit), at the edges (0, 2^64 - 1, 2^64, 10^19,
 * 2^128 - 1, one past it) and at random values of every size.
 *
 * Environment: CELLPAY_SEED (default: from the clock; always printed as "seed=<N>"). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/prng.h"
#include "base/u128.h"

static void ref_format(u128 v, char *out) {
    char tmp[64];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + (unsigned)(v % 10));
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    out[n] = '\0';
}

static void round_trip(u128 v) {
    char want[64], got[U128_DEC_MAX + 1];
    ref_format(v, want);
    size_t n = u128_format(v, got);
    assert_string_equal(got, want);
    assert_int_equal(n, strlen(want));
    u128 back = 0;
    assert_true(u128_parse(got, n, &back));
    assert_true(back == v);
}

static void test_edges(void **state) {
    (void)state;
    const u128 ten19 = 10000000000000000000ull;
    u128 edges[] = {0,
                    1,
                    9,
                    10,
                    UINT64_MAX - 1,
                    UINT64_MAX,
                    (u128)UINT64_MAX + 1,
                    ten19 - 1,
                    ten19,
                    ten19 + 1,
                    ten19 * ten19 - 1,
                    ten19 * ten19,
                    ten19 * ten19 * 10,
                    U128_MAX / 10,
                    U128_MAX - 1,
                    U128_MAX};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) round_trip(edges[i]);
    char s[64];
    ref_format(U128_MAX, s);
    assert_string_equal(s, "340282366920938463463374607431768211455");
    u128 v = 0;
    assert_false(u128_parse("340282366920938463463374607431768211456", 39, &v));
    assert_false(u128_parse("340282366920938463463374607431768211460", 39, &v));
    assert_false(u128_parse("3402823669209384634633746074317682114550", 40, &v));
    assert_true(
        u128_parse("0000000000000000000000000000000000000000000000000000000000000007", 64, &v));
    assert_true(v == 7);
    assert_false(u128_parse("", 0, &v));
    assert_false(u128_parse("12a", 3, &v));
    assert_false(u128_parse("-1", 2, &v));
}

static void test_random(void **state) {
    (void)state;
    const char *env = getenv("CELLPAY_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
    printf("seed=%" PRIu64 "\n", seed);
    prng_t r = {seed};
    for (int i = 0; i < 200000; i++) {
        u128 v = ((u128)prng_next(&r) << 64) | prng_next(&r);
        v >>= prng_below(&r, 128); /* every magnitude */
        round_trip(v);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* 128-bit unsigned integers: ids and amounts. Decimal text is the only external form. */
#ifndef CP_U128_H
#define CP_U128_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef unsigned __int128 u128;

#define U128_MAX (~(u128)0)
#define U128_DEC_MAX 40 /* digits of 2^128-1 = 340282366920938463463374607431768211455 */

/* Parses exactly len bytes of plain decimal digits (no sign, no spaces; "0" but no other
 * leading zero is fine either way). Returns false on an empty string, a non-digit or a value
 * above 2^128-1. */
bool u128_parse(const char *s, size_t len, u128 *out);

/* Writes the decimal form and a NUL into buf (at least U128_DEC_MAX + 1 bytes); returns the
 * number of digits written. */
size_t u128_format(u128 v, char *buf);

/* a + b into *out; false (and *out untouched) when the sum passes 2^128-1. */
static inline bool u128_add_checked(u128 a, u128 b, u128 *out) {
    u128 s = a + b;
    if (s < a) return false;
    *out = s;
    return true;
}

/* a - b saturating at 0. */
static inline u128 u128_sub_sat(u128 a, u128 b) {
    return a > b ? a - b : 0;
}

static inline u128 u128_min(u128 a, u128 b) {
    return a < b ? a : b;
}

#endif

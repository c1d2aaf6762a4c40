#include "base/u128.h"

#include "base/assert.h"

bool u128_parse(const char *s, size_t len, u128 *out) {
    if (len == 0 || len > 64) return false;
    /* v * 10 + d overflows exactly when v > LIM or v == LIM and d > 5 (both constants, so no
     * 128-bit division per digit). */
    const u128 lim = U128_MAX / 10;
    CP_STATIC_ASSERT(U128_MAX % 10 == 5, "the last digit of 2^128-1");
    u128 v = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9) return false;
        if (v > lim || (v == lim && d > 5)) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

size_t u128_format(u128 v, char *buf) {
    char tmp[U128_DEC_MAX];
    size_t n = 0;
    /* Digits come from 64-bit divisions (a multiply each); only a value past 2^64 costs one
     * or two 128-bit divisions, for its 19-digit chunks. */
    const uint64_t chunk = 10000000000000000000ull;
    while (v > UINT64_MAX) {
        uint64_t low = (uint64_t)(v % chunk);
        v /= chunk;
        for (int i = 0; i < 19; i++, low /= 10) tmp[n++] = (char)('0' + low % 10);
    }
    uint64_t w = (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + w % 10);
        w /= 10;
    } while (w != 0);
    for (size_t i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return n;
}

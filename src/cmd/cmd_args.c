#include "cmd/cmd_args.h"

#include <stdio.h>
#include <string.h>

#include "base/u128.h"

static const char *value_of(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "cellpay: %s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

bool args_u64(int argc, char **argv, int *i, unsigned long long max, unsigned long long *out) {
    const char *opt = argv[*i], *v = value_of(argc, argv, i);
    u128 x;
    if (!v) return false;
    if (!u128_parse(v, strlen(v), &x) || x > max) {
        fprintf(stderr, "cellpay: %s takes a whole number from 0 to %llu, not \"%s\"\n", opt, max,
                v);
        return false;
    }
    *out = (unsigned long long)x;
    return true;
}

bool args_u32(int argc, char **argv, int *i, uint32_t min, uint32_t max, uint32_t *out) {
    const char *opt = argv[*i], *v = value_of(argc, argv, i);
    u128 x;
    if (!v) return false;
    if (!u128_parse(v, strlen(v), &x) || x < min || x > max) {
        fprintf(stderr, "cellpay: %s takes a whole number from %u to %u, not \"%s\"\n", opt, min,
                max, v);
        return false;
    }
    *out = (uint32_t)x;
    return true;
}

bool args_ppm(int argc, char **argv, int *i, uint32_t *out_ppm) {
    const char *opt = argv[*i], *v = value_of(argc, argv, i);
    if (!v) return false;
    const char *dot = strchr(v, '.');
    size_t int_len = dot ? (size_t)(dot - v) : strlen(v);
    size_t frac_len = dot ? strlen(dot + 1) : 0;
    u128 whole = 0, frac = 0;
    bool ok = int_len > 0 && u128_parse(v, int_len, &whole) && frac_len <= 6 &&
              (!dot || (frac_len > 0 && u128_parse(dot + 1, frac_len, &frac)));
    for (size_t k = frac_len; k < 6; k++) frac *= 10;
    u128 ppm = whole * 1000000 + frac;
    if (!ok || whole > 1 || ppm > 1000000) {
        fprintf(stderr, "cellpay: %s takes a fraction from 0 to 1 (e.g. 0.5), not \"%s\"\n", opt,
                v);
        return false;
    }
    *out_ppm = (uint32_t)ppm;
    return true;
}

#include "base/zone.h"

#include <stdio.h>
#include <string.h>

#include "base/assert.h"

CP_STATIC_ASSERT(CP_ZONES <= 128, "a zone set is 128 bits");

const char *cp_zone_rule_check(const cp_zone_rule_t *r) {
    if (r->divisor == 0) return "the zone rule's divisor must be at least 1";
    if (r->modulus == 0 || r->modulus > CP_ZONES) return "the zone rule's modulus must be 1..100";
    return NULL;
}

uint32_t cp_zone_of(const cp_zone_rule_t *r, uint64_t uid) {
    cp_zone_rule_t e = cp_zone_rule_effective(r);
    cp_assert(e.divisor != 0 && e.modulus != 0 && e.modulus <= CP_ZONES);
    return (uint32_t)((uid / e.divisor) % e.modulus);
}

cp_zone_rule_t cp_zone_rule_effective(const cp_zone_rule_t *r) {
    if (r && (r->divisor | r->modulus)) return *r;
    return (cp_zone_rule_t){CP_ZONE_DIVISOR_DEFAULT, CP_ZONE_MODULUS_DEFAULT};
}

/* A decimal u64 of s[0, len): digits only. */
static bool decimal(const char *s, size_t len, uint64_t *out) {
    uint64_t v = 0;
    if (len == 0 || len > 20) return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool cp_zone_rule_parse(const char *s, size_t len, cp_zone_rule_t *out, char *err,
                        size_t err_size) {
    const char *slash = memchr(s, '/', len);
    cp_zone_rule_t r;
    if (!slash || !decimal(s, (size_t)(slash - s), &r.divisor) ||
        !decimal(slash + 1, len - (size_t)(slash - s) - 1, &r.modulus)) {
        snprintf(err, err_size, "a zone rule is DIVISOR/MODULUS, e.g. 10/100");
        return false;
    }
    const char *why = cp_zone_rule_check(&r);
    if (why) {
        snprintf(err, err_size, "%s", why);
        return false;
    }
    *out = r;
    return true;
}

cp_zones_t cp_zones_all(void) {
    cp_zones_t z = {{0}};
    for (uint32_t i = 0; i < CP_ZONES; i++) cp_zones_add(&z, i);
    return z;
}

bool cp_zones_has(const cp_zones_t *z, uint32_t zone) {
    return zone < CP_ZONES && (z->bits[zone / 64] >> (zone % 64) & 1) != 0;
}

void cp_zones_add(cp_zones_t *z, uint32_t zone) {
    cp_assert(zone < CP_ZONES);
    z->bits[zone / 64] |= 1ull << (zone % 64);
}

bool cp_zones_is_empty(const cp_zones_t *z) {
    return (z->bits[0] | z->bits[1]) == 0;
}

bool cp_zones_equal(const cp_zones_t *a, const cp_zones_t *b) {
    return a->bits[0] == b->bits[0] && a->bits[1] == b->bits[1];
}

uint32_t cp_zones_count(const cp_zones_t *z) {
    return (uint32_t)(__builtin_popcountll(z->bits[0]) + __builtin_popcountll(z->bits[1]));
}

/* A zone number at s[*pos]: 1-3 decimal digits, below CP_ZONES. */
static bool zone_number(const char *s, size_t len, size_t *pos, uint32_t *out, char *err,
                        size_t err_size) {
    size_t start = *pos;
    uint32_t v = 0;
    while (*pos < len && s[*pos] >= '0' && s[*pos] <= '9' && *pos - start < 4)
        v = v * 10 + (uint32_t)(s[(*pos)++] - '0');
    if (*pos == start) {
        snprintf(err, err_size, "expected a zone number at \"%.*s\"",
                 (int)(len - start > 16 ? 16 : len - start), s + start);
        return false;
    }
    if (v >= CP_ZONES || *pos - start > 3) {
        snprintf(err, err_size, "zone %.*s is out of range (zones are 0-%u)", (int)(*pos - start),
                 s + start, CP_ZONES - 1);
        return false;
    }
    *out = v;
    return true;
}

bool cp_zones_parse(const char *s, size_t len, cp_zones_t *out, char *err, size_t err_size) {
    cp_zones_t z = {{0}};
    size_t pos = 0;
    if (len == 0) {
        snprintf(err, err_size, "the zone list is empty");
        return false;
    }
    for (;;) {
        uint32_t a, b;
        if (!zone_number(s, len, &pos, &a, err, err_size)) return false;
        b = a;
        if (pos < len && s[pos] == '-') {
            pos++;
            if (!zone_number(s, len, &pos, &b, err, err_size)) return false;
            if (b < a) {
                snprintf(err, err_size, "zone range %u-%u runs backwards", a, b);
                return false;
            }
        }
        for (uint32_t i = a; i <= b; i++) {
            if (cp_zones_has(&z, i)) {
                snprintf(err, err_size, "zone %u is listed twice", i);
                return false;
            }
            cp_zones_add(&z, i);
        }
        if (pos == len) break;
        if (s[pos] != ',') {
            snprintf(err, err_size, "unexpected \"%c\" in the zone list (expected \",\" or \"-\")",
                     s[pos] >= 0x20 && s[pos] < 0x7f ? s[pos] : '?');
            return false;
        }
        if (++pos == len) {
            snprintf(err, err_size, "the zone list ends with \",\"");
            return false;
        }
    }
    *out = z;
    return true;
}

size_t cp_zones_format(const cp_zones_t *z, char *out, size_t out_size) {
    size_t n = 0;
    if (out_size) out[0] = '\0';
    for (uint32_t i = 0; i < CP_ZONES;) {
        if (!cp_zones_has(z, i)) {
            i++;
            continue;
        }
        uint32_t j = i;
        while (j + 1 < CP_ZONES && cp_zones_has(z, j + 1)) j++;
        int w = j == i ? snprintf(out + (n < out_size ? n : out_size),
                                  n < out_size ? out_size - n : 0, "%s%u", n ? "," : "", i)
                       : snprintf(out + (n < out_size ? n : out_size),
                                  n < out_size ? out_size - n : 0, "%s%u-%u", n ? "," : "", i, j);
        n += (size_t)w;
        i = j + 1;
    }
    return n;
}

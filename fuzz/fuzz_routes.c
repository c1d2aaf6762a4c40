/* libFuzzer target: the route table's text parser. Any input is parsed or refused with a
 * message, never a crash; an accepted table is valid, and its normalized text parses back to
 * an equal table whose text is the same again (the round trip `admin routes` relies on). */
#include <stdint.h>
#include <string.h>

#include "base/assert.h"
#include "gateway/route.h"

static rt_table_t a, b;
static char text[RT_TEXT_MAX], text2[RT_TEXT_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    err[0] = '\0';
    if (!rt_parse((const char *)data, size, &a, err, sizeof err)) {
        cp_assert(err[0] != '\0');
        return 0;
    }
    cp_assert(rt_validate(&a, err, sizeof err));
    size_t n = rt_format(&a, text, sizeof text);
    cp_assert(n < sizeof text);
    cp_assert(rt_parse(text, n, &b, err, sizeof err));
    cp_assert(rt_equal(&a, &b));
    size_t n2 = rt_format(&b, text2, sizeof text2);
    cp_assert(n2 == n && memcmp(text, text2, n) == 0);
    for (uint32_t z = 0; z < RT_ZONES; z++) cp_assert(rt_find_cell(&a, a.zone_cell[z]) != NULL);
    return 0;
}

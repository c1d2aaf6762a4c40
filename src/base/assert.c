#include "base/assert.h"

void cp_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "cellpay: assertion failed: %s (%s:%d)\n", expr, file, line);
    fflush(stderr);
    abort();
}

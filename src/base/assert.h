/* Always-on assertions. An invariant that does not hold means the process state can no
 * longer be trusted with money, so cellpay stops instead of going on (release builds too). */
#ifndef CP_ASSERT_H
#define CP_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

__attribute__((noreturn, cold)) void cp_assert_fail(const char *expr, const char *file, int line);

#define cp_assert(expr)                                                                            \
    do {                                                                                           \
        if (__builtin_expect(!(expr), 0)) cp_assert_fail(#expr, __FILE__, __LINE__);               \
    } while (0)

#define CP_STATIC_ASSERT(expr, msg) _Static_assert(expr, msg)

#define CP_LIKELY(x) __builtin_expect(!!(x), 1)
#define CP_UNLIKELY(x) __builtin_expect(!!(x), 0)

#endif

/* Signature checks on arbitrary header values and bodies (src/gateway/auth.h): the input is
 * split at NUL bytes into method, path, timestamp, signature and body. Nothing may crash, and
 * an input that passes must carry the signature auth_sign computes. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/assert.h"
#include "gateway/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char buf[4096];
    if (size >= sizeof buf) return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    const char *field[4] = {"", "", "", ""};
    size_t at = 0;
    for (int f = 0; f < 4 && at <= size; f++) {
        field[f] = buf + at;
        at += strlen(buf + at) + 1;
    }
    const char *body = at <= size ? buf + at : "";
    size_t body_len = at <= size ? size - at : 0;
    static const char secret[] = "fuzz-secret";
    uint64_t now = 1764000000;
    auth_result_t r = auth_check(secret, sizeof secret - 1, field[0], field[1], field[2], field[3],
                                 body, body_len, now);
    if (r == AUTH_OK) {
        char want[AUTH_HEX_MAX + 1];
        auth_sign(secret, sizeof secret - 1, field[0], field[1], field[2], body, body_len, want);
        cp_assert(strcmp(want, field[3]) == 0);
    }
    (void)auth_bearer_ok(field[0], field[1]);
    return 0;
}

/* Request signatures and the admin key (src/gateway/auth.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/auth.h"

/* RFC 4231, test cases 1 and 2: the MAC itself. */
static void test_hmac_vectors(void **state) {
    (void)state;
    char out[AUTH_HEX_MAX + 1];
    unsigned char k1[20];
    memset(k1, 0x0b, sizeof k1);
    auth_hmac_hex(k1, sizeof k1, "Hi There", 8, out);
    assert_string_equal(out, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    auth_hmac_hex("Jefe", 4, "what do ya want for nothing?", 28, out);
    assert_string_equal(out, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static const char secret[] = "3f5e0c8a9b1d2e4f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7";
static const char body[] = "{\"buyer_uid\":\"1001\",\"amount\":\"1999\",\"currency\":\"CNY\"}";

/* The signature is the MAC of METHOD\nPATH\nTIMESTAMP\nBODY, as one string would give. */
static void test_sign_is_the_mac_of_the_canonical_string(void **state) {
    (void)state;
    char a[AUTH_HEX_MAX + 1], b[AUTH_HEX_MAX + 1], canon[512];
    auth_sign(secret, strlen(secret), "POST", "/v1/payments?x=1", "1764000000", body, strlen(body),
              a);
    int n = snprintf(canon, sizeof canon, "POST\n/v1/payments?x=1\n1764000000\n%s", body);
    auth_hmac_hex(secret, strlen(secret), canon, (size_t)n, b);
    assert_string_equal(a, b);
}

static auth_result_t check(const char *method, const char *path, const char *ts, const char *sig,
                           const char *b, uint64_t now) {
    return auth_check(secret, strlen(secret), method, path, ts, sig, b, b ? strlen(b) : 0, now);
}

static void test_check(void **state) {
    (void)state;
    char sig[AUTH_HEX_MAX + 1];
    uint64_t now = 1764000000;
    auth_sign(secret, strlen(secret), "POST", "/v1/payments", "1764000000", body, strlen(body),
              sig);
    assert_int_equal(check("POST", "/v1/payments", "1764000000", sig, body, now), AUTH_OK);
    assert_int_equal(check("POST", "/v1/payments", "1764000000", sig, body, now + 300), AUTH_OK);
    assert_int_equal(check("POST", "/v1/payments", "1764000000", sig, body, now - 300), AUTH_OK);
    assert_int_equal(check("POST", "/v1/payments", "1764000000", sig, body, now + 301), AUTH_STALE);
    assert_int_equal(check("POST", "/v1/payments", "1764000000", sig, body, now - 301), AUTH_STALE);
    /* Anything signed that differs: body, path, method, timestamp. */
    assert_int_equal(check("POST", "/v1/payments", "1764000000", sig, "{}", now),
                     AUTH_BAD_SIGNATURE);
    assert_int_equal(check("POST", "/v1/refunds", "1764000000", sig, body, now),
                     AUTH_BAD_SIGNATURE);
    assert_int_equal(check("GET", "/v1/payments", "1764000000", sig, body, now),
                     AUTH_BAD_SIGNATURE);
    assert_int_equal(check("POST", "/v1/payments", "1764000001", sig, body, now),
                     AUTH_BAD_SIGNATURE);
    /* Malformed headers. */
    assert_int_equal(check("POST", "/v1/payments", NULL, sig, body, now), AUTH_MISSING);
    assert_int_equal(check("POST", "/v1/payments", "1764000000", NULL, body, now), AUTH_MISSING);
    assert_int_equal(check("POST", "/v1/payments", "", sig, body, now), AUTH_BAD_TIMESTAMP);
    assert_int_equal(check("POST", "/v1/payments", "+1764000000", sig, body, now),
                     AUTH_BAD_TIMESTAMP);
    assert_int_equal(check("POST", "/v1/payments", "1764000000 ", sig, body, now),
                     AUTH_BAD_TIMESTAMP);
    assert_int_equal(check("POST", "/v1/payments", "99999999999999999999999", sig, body, now),
                     AUTH_BAD_TIMESTAMP);
    char upper[AUTH_HEX_MAX + 1];
    for (int i = 0; i <= (int)AUTH_HEX_MAX; i++)
        upper[i] = (sig[i] >= 'a' && sig[i] <= 'f') ? (char)(sig[i] - 32) : sig[i];
    if (strcmp(upper, sig) != 0) /* lowercase hex only, as the contract says */
        assert_int_equal(check("POST", "/v1/payments", "1764000000", upper, body, now),
                         AUTH_BAD_SIGNATURE);
    sig[AUTH_HEX_MAX - 1] = '\0';
    assert_int_equal(check("POST", "/v1/payments", "1764000000", sig, body, now),
                     AUTH_BAD_SIGNATURE);
    assert_string_equal(auth_error_code(AUTH_STALE), "stale_timestamp");
    assert_string_equal(auth_error_code(AUTH_BAD_SIGNATURE), "invalid_signature");
    assert_string_equal(auth_error_code(AUTH_MISSING), "unauthorized");
}

/* A keyed context gives what auth_sign gives, call after call, and checks the same way; two
 * keys in turn do not mix. */
static void test_keyed(void **state) {
    (void)state;
    static const char other[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    auth_key_t *k = auth_key_new(secret, strlen(secret));
    auth_key_t *o = auth_key_new(other, strlen(other));
    assert_non_null(k);
    assert_non_null(o);
    const char *bodies[] = {body, "{}", "", body};
    for (int i = 0; i < 4; i++) {
        const char *b = bodies[i];
        char want[AUTH_HEX_MAX + 1], got[AUTH_HEX_MAX + 1], want_o[AUTH_HEX_MAX + 1];
        auth_sign(secret, strlen(secret), "POST", "/v1/payments", "1764000000", b, strlen(b), want);
        auth_key_sign(k, "POST", "/v1/payments", "1764000000", b, strlen(b), got);
        assert_string_equal(got, want);
        auth_sign(other, strlen(other), "POST", "/v1/payments", "1764000000", b, strlen(b), want_o);
        auth_key_sign(o, "POST", "/v1/payments", "1764000000", b, strlen(b), got);
        assert_string_equal(got, want_o);
        assert_int_equal(
            auth_key_check(k, "POST", "/v1/payments", "1764000000", want, b, strlen(b), 1764000000),
            AUTH_OK);
        assert_int_equal(auth_key_check(k, "POST", "/v1/payments", "1764000000", want_o, b,
                                        strlen(b), 1764000000),
                         AUTH_BAD_SIGNATURE);
        assert_int_equal(
            auth_key_check(k, "POST", "/v1/payments", "1764000000", want, b, strlen(b), 1764000301),
            AUTH_STALE);
        assert_int_equal(
            auth_key_check(k, "POST", "/v1/payments", NULL, want, b, strlen(b), 1764000000),
            AUTH_MISSING);
    }
    auth_key_free(k);
    auth_key_free(o);
    auth_key_free(NULL);
}

static void test_bearer(void **state) {
    (void)state;
    const char *key = secret;
    char header[128];
    snprintf(header, sizeof header, "Bearer %s", key);
    assert_true(auth_bearer_ok(header, key));
    assert_false(auth_bearer_ok(NULL, key));
    assert_false(auth_bearer_ok(key, key)); /* no scheme */
    header[strlen(header) - 1] ^= 1;
    assert_false(auth_bearer_ok(header, key));
    snprintf(header, sizeof header, "Bearer %s0", key);
    assert_false(auth_bearer_ok(header, key));
    assert_false(auth_bearer_ok("Bearer ", ""));
}

static void test_admin_key_file(void **state) {
    (void)state;
    char dir[] = "/tmp/cellpay-auth-XXXXXX", path[128], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/admin.key", dir);
    char k1[AUTH_HEX_MAX + 1], k2[AUTH_HEX_MAX + 1];
    assert_int_equal(auth_admin_key(dir, k1, err, sizeof err), 0);
    assert_int_equal(strlen(k1), AUTH_HEX_MAX);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(auth_admin_key(dir, k2, err, sizeof err), 0); /* the same key again */
    assert_string_equal(k1, k2);
    char other[] = "/tmp/cellpay-auth-XXXXXX";
    assert_non_null(mkdtemp(other));
    assert_int_equal(auth_admin_key(other, k2, err, sizeof err), 0);
    assert_string_not_equal(k1, k2); /* fresh randomness per data directory */
    chmod(path, 0644);
    assert_int_equal(auth_admin_key(dir, k2, err, sizeof err), -1);
    assert_non_null(strstr(err, "chmod 600"));
    FILE *f = fopen(path, "w");
    fputs("not a key\n", f);
    fclose(f);
    chmod(path, 0600);
    assert_int_equal(auth_admin_key(dir, k2, err, sizeof err), -1);
    assert_non_null(strstr(err, "damaged"));
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir, other);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hmac_vectors),
        cmocka_unit_test(test_sign_is_the_mac_of_the_canonical_string),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_keyed),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_admin_key_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

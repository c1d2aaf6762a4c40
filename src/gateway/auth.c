#include "gateway/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/assert.h"

const char *auth_error_code(auth_result_t r) {
    switch (r) {
    case AUTH_OK: return "ok";
    case AUTH_MISSING: return "unauthorized";
    case AUTH_BAD_TIMESTAMP:
    case AUTH_STALE: return "stale_timestamp";
    case AUTH_BAD_SIGNATURE: return "invalid_signature";
    }
    return "unauthorized";
}

static void to_hex(const unsigned char *p, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* A MAC context with its digest set: later inits pass no parameters, since looking the digest
 * up by name again costs as much as a quarter of a short request's MAC. NULL: no memory. */
static EVP_MAC_CTX *mac_ctx_new(void) {
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac); /* the context holds its own reference */
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    if (c && !EVP_MAC_CTX_set_params(c, params)) {
        EVP_MAC_CTX_free(c);
        c = NULL;
    }
    return c;
}

/* parts[0..n) into c, which init has just (re)started, and the MAC as lowercase hex. */
static void mac_finish(EVP_MAC_CTX *c, bool ok, const void *const *parts, const size_t *lens,
                       size_t n, char out[AUTH_HEX_MAX + 1]) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t len = 0;
    for (size_t i = 0; ok && i < n; i++) ok = lens[i] == 0 || EVP_MAC_update(c, parts[i], lens[i]);
    ok = ok && EVP_MAC_final(c, mac, &len, sizeof mac);
    cp_assert(ok && len == AUTH_HEX_MAX / 2); /* libcrypto without HMAC-SHA256: unusable */
    to_hex(mac, len, out);
}

/* HMAC-SHA256 over parts[0..n) under key, as lowercase hex. One MAC context per thread, made
 * once and re-keyed per call: no allocation per request once warm. */
static _Thread_local EVP_MAC_CTX *ctx;

void auth_thread_done(void) {
    EVP_MAC_CTX_free(ctx);
    ctx = NULL;
}

static void mac_hex(const void *key, size_t key_len, const void *const *parts, const size_t *lens,
                    size_t n, char out[AUTH_HEX_MAX + 1]) {
    if (!ctx) ctx = mac_ctx_new();
    bool ok = ctx && EVP_MAC_init(ctx, key, key_len, NULL);
    mac_finish(ctx, ok, parts, lens, n, out);
}

void auth_hmac_hex(const void *key, size_t key_len, const void *data, size_t data_len,
                   char out[AUTH_HEX_MAX + 1]) {
    mac_hex(key, key_len, &data, &data_len, 1, out);
}

/* METHOD "\n" PATH_WITH_QUERY "\n" TIMESTAMP "\n" BODY, without copying it into one buffer. */
#define SIGNED_PARTS(method, path_query, timestamp, body, body_len)                                \
    const void *parts[] = {method, "\n", path_query, "\n", timestamp, "\n", body};                 \
    size_t lens[] = {strlen(method), 1, strlen(path_query), 1, strlen(timestamp), 1, body_len}

void auth_sign(const void *secret, size_t secret_len, const char *method, const char *path_query,
               const char *timestamp, const void *body, size_t body_len,
               char out[AUTH_HEX_MAX + 1]) {
    SIGNED_PARTS(method, path_query, timestamp, body, body_len);
    mac_hex(secret, secret_len, parts, lens, 7, out);
}

/* The context keeps the key's inner and outer blocks: a restart without a key copies them
 * instead of hashing the key again. */
struct auth_key {
    EVP_MAC_CTX *ctx;
};

auth_key_t *auth_key_new(const void *secret, size_t secret_len) {
    auth_key_t *k = malloc(sizeof *k);
    if (!k) return NULL;
    k->ctx = mac_ctx_new();
    if (!k->ctx || !EVP_MAC_init(k->ctx, secret, secret_len, NULL)) {
        auth_key_free(k);
        return NULL;
    }
    return k;
}

void auth_key_free(auth_key_t *k) {
    if (!k) return;
    EVP_MAC_CTX_free(k->ctx);
    free(k);
}

void auth_key_sign(auth_key_t *k, const char *method, const char *path_query, const char *timestamp,
                   const void *body, size_t body_len, char out[AUTH_HEX_MAX + 1]) {
    SIGNED_PARTS(method, path_query, timestamp, body, body_len);
    mac_finish(k->ctx, EVP_MAC_init(k->ctx, NULL, 0, NULL), parts, lens, 7, out);
}

/* Seconds as the header gives them: 1 to 20 decimal digits, no sign, no spaces. */
static bool parse_seconds(const char *s, uint64_t *out) {
    size_t n = strlen(s);
    if (n == 0 || n > AUTH_TIMESTAMP_MAX) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static bool lower_hex64(const char *s) {
    if (strnlen(s, AUTH_HEX_MAX + 1) != AUTH_HEX_MAX) return false;
    /* No early exit: a signature's digits are random, and a branch per digit mispredicts. */
    bool ok = true;
    for (size_t i = 0; i < AUTH_HEX_MAX; i++) {
        unsigned c = (unsigned char)s[i];
        ok &= (c - '0' < 10u) | (c - 'a' < 6u);
    }
    return ok;
}

/* What is checked before any MAC is computed: AUTH_OK when the MAC is to be compared. */
static auth_result_t check_headers(const char *timestamp, const char *signature, uint64_t now_s) {
    if (!timestamp || !signature) return AUTH_MISSING;
    uint64_t ts;
    if (!parse_seconds(timestamp, &ts)) return AUTH_BAD_TIMESTAMP;
    if ((ts > now_s ? ts - now_s : now_s - ts) > AUTH_WINDOW_S) return AUTH_STALE;
    if (!lower_hex64(signature)) return AUTH_BAD_SIGNATURE;
    return AUTH_OK;
}

auth_result_t auth_check(const void *secret, size_t secret_len, const char *method,
                         const char *path_query, const char *timestamp, const char *signature,
                         const void *body, size_t body_len, uint64_t now_s) {
    auth_result_t r = check_headers(timestamp, signature, now_s);
    if (r != AUTH_OK) return r;
    char want[AUTH_HEX_MAX + 1];
    auth_sign(secret, secret_len, method, path_query, timestamp, body, body_len, want);
    return CRYPTO_memcmp(want, signature, AUTH_HEX_MAX) == 0 ? AUTH_OK : AUTH_BAD_SIGNATURE;
}

auth_result_t auth_key_check(auth_key_t *k, const char *method, const char *path_query,
                             const char *timestamp, const char *signature, const void *body,
                             size_t body_len, uint64_t now_s) {
    auth_result_t r = check_headers(timestamp, signature, now_s);
    if (r != AUTH_OK) return r;
    char want[AUTH_HEX_MAX + 1];
    auth_key_sign(k, method, path_query, timestamp, body, body_len, want);
    return CRYPTO_memcmp(want, signature, AUTH_HEX_MAX) == 0 ? AUTH_OK : AUTH_BAD_SIGNATURE;
}

bool auth_bearer_ok(const char *authorization, const char *admin_key) {
    static const char prefix[] = "Bearer ";
    size_t klen = strlen(admin_key);
    if (!authorization || strncmp(authorization, prefix, sizeof prefix - 1) != 0) return false;
    const char *given = authorization + sizeof prefix - 1;
    if (klen == 0 || strlen(given) != klen) return false;
    return CRYPTO_memcmp(given, admin_key, klen) == 0;
}

int auth_random_hex(char *out, size_t bytes) {
    unsigned char buf[64];
    if (bytes > sizeof buf) return -EINVAL;
    for (size_t got = 0; got < bytes;) {
        ssize_t r = getrandom(buf + got, bytes - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -errno;
        got += (size_t)r;
    }
    to_hex(buf, bytes, out);
    OPENSSL_cleanse(buf, sizeof buf);
    return 0;
}

static int key_read(const char *path, char key[AUTH_HEX_MAX + 1], char *err, size_t err_size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, err_size, "cannot read %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    char buf[AUTH_HEX_MAX + 2];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (st.st_mode & 077) {
        snprintf(err, err_size, "%s may be read by others (mode %03o); chmod 600 it", path,
                 (unsigned)(st.st_mode & 0777));
        return -1;
    }
    if (n > 0 && buf[n - 1] == '\n') n--;
    buf[n < 0 ? 0 : n] = '\0';
    if (!lower_hex64(buf)) {
        snprintf(err, err_size, "%s is damaged: it must hold 64 lowercase hex digits", path);
        return -1;
    }
    memcpy(key, buf, AUTH_HEX_MAX + 1);
    return 0;
}

int auth_admin_key(const char *dir, char key[AUTH_HEX_MAX + 1], char *err, size_t err_size) {
    char path[4096], tmp[4104];
    snprintf(path, sizeof path, "%s/admin.key", dir);
    if (access(path, F_OK) == 0) return key_read(path, key, err, err_size);
    int rc = auth_random_hex(key, AUTH_SECRET_BYTES);
    if (rc != 0) {
        snprintf(err, err_size, "no random bytes for the admin key: %s", strerror(-rc));
        return -1;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    char line[AUTH_HEX_MAX + 1];
    memcpy(line, key, AUTH_HEX_MAX);
    line[AUTH_HEX_MAX] = '\n';
    bool ok = fd >= 0 && write(fd, line, sizeof line) == (ssize_t)sizeof line && fsync(fd) == 0;
    if (fd >= 0) ok = close(fd) == 0 && ok;
    ok = ok && rename(tmp, path) == 0;
    int dfd = ok ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    ok = ok && dfd >= 0 && fsync(dfd) == 0;
    if (dfd >= 0) close(dfd);
    if (!ok) {
        snprintf(err, err_size, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

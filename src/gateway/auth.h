/* Authentication of API requests (shared/docs/api-v1.md, "Authentication"):
 *   - merchants sign every request: X-Cellpay-Signature is the lowercase hex
 *     HMAC-SHA256(secret, METHOD "\n" PATH_WITH_QUERY "\n" TIMESTAMP "\n" BODY), and
 *     X-Cellpay-Timestamp (unix seconds) must be within AUTH_WINDOW_S of the server's clock;
 *   - operators send `Authorization: Bearer <admin key>`; the embedded default keeps the key
 *     in <data dir>/admin.key (mode 0600), written with a fresh random key on first start.
 * Comparisons of secrets and signatures take the same time whatever the bytes (no timing
 * oracle). Nothing here logs a secret. Time comes in (now_s); no clock inside. */
#ifndef CP_AUTH_H
#define CP_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_WINDOW_S 300u     /* accepted distance between a request's timestamp and now */
#define AUTH_SECRET_BYTES 32u  /* a merchant secret or the admin key, before hex */
#define AUTH_HEX_MAX 64u       /* hex of an HMAC-SHA256, or of a 32-byte secret */
#define AUTH_TIMESTAMP_MAX 20u /* digits of a u64 */

typedef enum auth_result {
    AUTH_OK = 0,
    AUTH_MISSING,       /* a header is absent: 401 unauthorized */
    AUTH_BAD_TIMESTAMP, /* not a decimal number of seconds: 401 stale_timestamp */
    AUTH_STALE,         /* more than AUTH_WINDOW_S from now: 401 stale_timestamp */
    AUTH_BAD_SIGNATURE, /* not 64 lowercase hex digits, or not the right MAC: 401 invalid_signature
                         */
} auth_result_t;

/* The API error code of a failed check (api-v1.md): "unauthorized", "stale_timestamp" or
 * "invalid_signature". */
const char *auth_error_code(auth_result_t r);

/* out: the lowercase hex HMAC-SHA256 of data under key, NUL-terminated (65 bytes). */
void auth_hmac_hex(const void *key, size_t key_len, const void *data, size_t data_len,
                   char out[AUTH_HEX_MAX + 1]);

/* The signature a merchant computes for a request. */
void auth_sign(const void *secret, size_t secret_len, const char *method, const char *path_query,
               const char *timestamp, const void *body, size_t body_len,
               char out[AUTH_HEX_MAX + 1]);

/* Checks a signed request; timestamp and signature are the header values (NULL: absent). */
auth_result_t auth_check(const void *secret, size_t secret_len, const char *method,
                         const char *path_query, const char *timestamp, const char *signature,
                         const void *body, size_t body_len, uint64_t now_s);

/* A secret's MAC context, keyed once: signing or checking under it skips hashing the key
 * again (about a third of the MAC of a short request). Each is used by one thread at a time. */
typedef struct auth_key auth_key_t;

/* NULL when out of memory. */
auth_key_t *auth_key_new(const void *secret, size_t secret_len);
void auth_key_free(auth_key_t *k); /* NULL: nothing */

/* auth_sign and auth_check under k's secret. */
void auth_key_sign(auth_key_t *k, const char *method, const char *path_query, const char *timestamp,
                   const void *body, size_t body_len, char out[AUTH_HEX_MAX + 1]);
auth_result_t auth_key_check(auth_key_t *k, const char *method, const char *path_query,
                             const char *timestamp, const char *signature, const void *body,
                             size_t body_len, uint64_t now_s);

/* Frees the calling thread's MAC context (made on its first signature check): for a thread
 * that checked signatures and is about to end, e.g. the gateway's when gateway_run returns. */
void auth_thread_done(void);

/* Whether an Authorization header value is "Bearer <key>" for this admin key. */
bool auth_bearer_ok(const char *authorization, const char *admin_key);

/* bytes random bytes from the kernel as lowercase hex into out (2 * bytes + 1). 0 or -errno. */
int auth_random_hex(char *out, size_t bytes);

/* Reads <dir>/admin.key, or creates it (a fresh random key, mode 0600, written to a temporary
 * file, fsynced, renamed, directory fsynced) when it does not exist. A key file that is not
 * 64 hex digits, or that others may read, is refused. 0, or -1 with a message in err. */
int auth_admin_key(const char *dir, char key[AUTH_HEX_MAX + 1], char *err, size_t err_size);

#endif

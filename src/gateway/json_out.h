/* A tiny JSON writer for the gateway's answers: strings escaped so that any bytes (a client's
 * path, a parser's error text) come out as valid JSON in valid UTF-8. Writes into a buffer
 * the caller owns; never allocates. */
#ifndef CP_JSON_OUT_H
#define CP_JSON_OUT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct json_out {
    char *buf;     /* the caller's buffer, NUL-terminated after every call when cap > 0 */
    size_t cap;    /* bytes of buf */
    size_t len;    /* bytes written, not counting the NUL */
    bool overflow; /* something did not fit: len stops at the last whole piece */
} json_out_t;

void json_out_init(json_out_t *o, char *buf, size_t cap);
/* Appends raw text (the caller's JSON punctuation and literals) as is. */
void json_out_raw(json_out_t *o, const char *s);
/* Appends len bytes of s as a quoted JSON string: quote, backslash and control characters
 * escaped, invalid UTF-8 replaced by U+FFFD. */
void json_out_str(json_out_t *o, const char *s, size_t len);

/* The API's error object, {"error":{"code":C,"message":M[,"param":P]}}: param may be NULL.
 * Returns the bytes written (0 if it did not fit in cap). */
size_t json_out_error(char *buf, size_t cap, const char *code, const char *message,
                      const char *param);

#endif

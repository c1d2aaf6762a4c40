/* JSON output for the gateway (see json_out.h). */
#include "gateway/json_out.h"

#include <stdint.h>
#include <string.h>

#include "base/assert.h"

void json_out_init(json_out_t *o, char *buf, size_t cap) {
    *o = (json_out_t){.buf = buf, .cap = cap};
    if (cap > 0) buf[0] = '\0';
}

/* Appends n bytes or nothing: a piece never lands half, so an overflowed text is still cut
 * at a boundary the caller chose. */
static bool put(json_out_t *o, const char *s, size_t n) {
    if (o->overflow || o->cap == 0 || n > o->cap - 1 - o->len) {
        o->overflow = true;
        return false;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
    return true;
}

void json_out_raw(json_out_t *o, const char *s) {
    put(o, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when the bytes there are not one
 * (overlong forms, surrogates and code points past U+10FFFF included). */
static size_t utf8_len(const unsigned char *s, size_t left) {
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    if (left < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

void json_out_str(json_out_t *o, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    put(o, "\"", 1);
    for (size_t i = 0; i < len && !o->overflow;) {
        /* A run of printable ASCII that needs no escape goes in one piece. */
        size_t run = i;
        while (run < len && u[run] >= 0x20 && u[run] < 0x7f && u[run] != '"' && u[run] != '\\')
            run++;
        if (run > i) {
            put(o, s + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = u[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            put(o, esc, 2);
        } else if (c == '\n') {
            put(o, "\\n", 2);
        } else if (c == '\r') {
            put(o, "\\r", 2);
        } else if (c == '\t') {
            put(o, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
            put(o, esc, 6);
        } else {
            size_t n = utf8_len(u + i, len - i);
            if (n == 0) {
                put(o, "\\ufffd", 6);
                i++;
                continue;
            }
            put(o, s + i, n);
            i += n;
            continue;
        }
        i++;
    }
    put(o, "\"", 1);
}

size_t json_out_error(char *buf, size_t cap, const char *code, const char *message,
                      const char *param) {
    cp_assert(code != NULL && message != NULL);
    json_out_t o;
    json_out_init(&o, buf, cap);
    json_out_raw(&o, "{\"error\":{\"code\":");
    json_out_str(&o, code, strlen(code));
    json_out_raw(&o, ",\"message\":");
    json_out_str(&o, message, strlen(message));
    if (param) {
        json_out_raw(&o, ",\"param\":");
        json_out_str(&o, param, strlen(param));
    }
    json_out_raw(&o, "}}");
    return o.overflow ? 0 : o.len;
}

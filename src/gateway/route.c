#include "gateway/route.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/assert.h"

#define TOKENS_MAX 5u

typedef struct token {
    const char *p;
    size_t len;
} token_t;

static bool token_is(const token_t *t, const char *word) {
    return t->len == strlen(word) && memcmp(t->p, word, t->len) == 0;
}

/* A decimal u64 in [0, max]: digits only, no sign, no spaces. */
static bool parse_u64(const token_t *t, uint64_t max, uint64_t *out) {
    if (t->len == 0 || t->len > 20) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < t->len; i++) {
        char c = t->p[i];
        if (c < '0' || c > '9') return false;
        uint64_t d = (uint64_t)(c - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    if (v > max) return false;
    *out = v;
    return true;
}

/* A client address: HOST:PORT with a host of letters, digits, '.' and '-' (IPv4 or a name;
 * the client library resolves only those) and a port in 1..65535. */
static const char *addr_check(const char *p, size_t len) {
    if (len >= RT_ADDR_SIZE) return "is too long (at most 55 characters)";
    const char *colon = memchr(p, ':', len);
    if (!colon) return "has no \":PORT\"";
    size_t host = (size_t)(colon - p);
    if (host == 0) return "has no host";
    for (size_t i = 0; i < host; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-'))
            return "has a character a host cannot have";
    }
    token_t port = {colon + 1, len - host - 1};
    uint64_t v;
    if (!parse_u64(&port, 65535, &v) || v == 0) return "has no port in 1..65535";
    return NULL;
}

/* Does any cell but skip have the address? Its id in *owner. */
static bool addr_taken(const rt_table_t *t, const rt_cell_t *skip, const char *addr,
                       uint64_t *owner) {
    for (uint32_t i = 0; i < t->cell_count; i++) {
        const rt_cell_t *c = &t->cells[i];
        if (c == skip) continue;
        for (uint32_t j = 0; j < c->addr_count; j++) {
            if (strcmp(c->addrs[j], addr) == 0) {
                *owner = c->id;
                return true;
            }
        }
    }
    return false;
}

/* Parses "HOST:PORT[,HOST:PORT...]" into c (its id already set). */
static bool parse_addrs(const char *p, size_t len, rt_cell_t *c, char *err, size_t err_size) {
    c->addr_count = 0;
    memset(c->addrs, 0, sizeof c->addrs);
    size_t pos = 0;
    for (;;) {
        const char *comma = memchr(p + pos, ',', len - pos);
        size_t n = comma ? (size_t)(comma - (p + pos)) : len - pos;
        if (n == 0) {
            snprintf(err, err_size, "cell %llu has an empty address in its list",
                     (unsigned long long)c->id);
            return false;
        }
        const char *why = addr_check(p + pos, n);
        if (why) {
            snprintf(err, err_size, "cell %llu: address \"%.*s\" %s", (unsigned long long)c->id,
                     (int)(n > 64 ? 64 : n), p + pos, why);
            return false;
        }
        if (c->addr_count == RT_REPLICAS_MAX) {
            snprintf(err, err_size, "cell %llu has more than %u addresses",
                     (unsigned long long)c->id, RT_REPLICAS_MAX);
            return false;
        }
        memcpy(c->addrs[c->addr_count], p + pos, n);
        for (uint32_t i = 0; i < c->addr_count; i++) {
            if (strcmp(c->addrs[i], c->addrs[c->addr_count]) == 0) {
                snprintf(err, err_size, "cell %llu lists address %s twice",
                         (unsigned long long)c->id, c->addrs[i]);
                return false;
            }
        }
        c->addr_count++;
        if (!comma) return true;
        pos += n + 1;
    }
}

static int cell_cmp(const void *a, const void *b) {
    uint64_t x = ((const rt_cell_t *)a)->id, y = ((const rt_cell_t *)b)->id;
    return x < y ? -1 : x > y;
}

static rt_cell_t *find_cell(rt_table_t *t, uint64_t id) {
    for (uint32_t i = 0; i < t->cell_count; i++)
        if (t->cells[i].id == id) return &t->cells[i];
    return NULL;
}

const rt_cell_t *rt_find_cell(const rt_table_t *t, uint64_t id) {
    return find_cell((rt_table_t *)t, id);
}

uint32_t rt_zone(const rt_table_t *t, uint64_t uid) {
    return cp_zone_of(&t->rule, uid);
}

uint64_t rt_cell_of_uid(const rt_table_t *t, uint64_t uid) {
    return t->zone_cell[rt_zone(t, uid)];
}

cp_zones_t rt_cell_zones(const rt_table_t *t, uint64_t id) {
    cp_zones_t z = {{0}};
    for (uint32_t i = 0; i < RT_ZONES; i++)
        if (t->zone_cell[i] == id) cp_zones_add(&z, i);
    return z;
}

/* The parser's state besides the table: where each thing was said, for error messages. */
typedef struct parse_state {
    uint32_t version_line, rule_line;
    uint32_t zone_line[RT_ZONES]; /* 0: not assigned yet */
    uint32_t cell_line[RT_CELLS_MAX];
} parse_state_t;

static bool parse_line(rt_table_t *t, parse_state_t *ps, uint32_t line, const token_t *tok,
                       uint32_t ntok, char *err, size_t err_size) {
    uint64_t v, m;
#define FAIL(...)                                                                                  \
    do {                                                                                           \
        int w_ = snprintf(err, err_size, "line %u: ", line);                                       \
        if (w_ > 0 && (size_t)w_ < err_size)                                                       \
            snprintf(err + w_, err_size - (size_t)w_, __VA_ARGS__);                                \
        return false;                                                                              \
    } while (0)
    if (token_is(&tok[0], "version")) {
        if (ntok != 2) FAIL("expected \"version N\"");
        if (ps->version_line)
            FAIL("a second version line (the first is line %u)", ps->version_line);
        if (!parse_u64(&tok[1], UINT64_MAX, &v) || v == 0)
            FAIL("the version must be a whole number from 1 to 2^64-1");
        t->version = v;
        ps->version_line = line;
        return true;
    }
    if (token_is(&tok[0], "rule")) {
        if (ntok != 3) FAIL("expected \"rule DIVISOR MODULUS\"");
        if (ps->rule_line) FAIL("a second rule line (the first is line %u)", ps->rule_line);
        if (!parse_u64(&tok[1], UINT64_MAX, &v) || !parse_u64(&tok[2], UINT64_MAX, &m))
            FAIL("the rule's divisor and modulus must be whole numbers");
        cp_zone_rule_t r = {v, m};
        const char *why = cp_zone_rule_check(&r);
        if (why) FAIL("%s", why);
        t->rule = r;
        ps->rule_line = line;
        return true;
    }
    if (token_is(&tok[0], "cell")) {
        if (ntok != 3) FAIL("expected \"cell C HOST:PORT[,HOST:PORT...]\"");
        /* 0 is no cell: cross-cell requests name "no other cell" with it. */
        if (!parse_u64(&tok[1], RT_CELL_ID_MAX, &v) || v == 0)
            FAIL("the cell number must be 1..4294967295");
        rt_cell_t *old = find_cell(t, v);
        if (old)
            FAIL("cell %llu is given twice (first on line %u)", (unsigned long long)v,
                 ps->cell_line[old - t->cells]);
        if (t->cell_count == RT_CELLS_MAX) FAIL("more than %u cells", RT_CELLS_MAX);
        rt_cell_t *c = &t->cells[t->cell_count];
        c->id = v;
        char why[160];
        if (!parse_addrs(tok[2].p, tok[2].len, c, why, sizeof why)) FAIL("%s", why);
        for (uint32_t i = 0; i < c->addr_count; i++) {
            if (addr_taken(t, c, c->addrs[i], &m))
                FAIL("address %s is already cell %llu's", c->addrs[i], (unsigned long long)m);
        }
        ps->cell_line[t->cell_count++] = line;
        return true;
    }
    if (token_is(&tok[0], "zones")) {
        if (ntok != 4 || !token_is(&tok[2], "->")) FAIL("expected \"zones A-B[,C...] -> CELL\"");
        cp_zones_t z;
        char why[160];
        if (!cp_zones_parse(tok[1].p, tok[1].len, &z, why, sizeof why)) FAIL("%s", why);
        if (!parse_u64(&tok[3], RT_CELL_ID_MAX, &v) || v == 0)
            FAIL("the cell number must be 1..4294967295");
        for (uint32_t i = 0; i < RT_ZONES; i++) {
            if (!cp_zones_has(&z, i)) continue;
            if (ps->zone_line[i])
                FAIL("zone %u is already assigned on line %u", i, ps->zone_line[i]);
            ps->zone_line[i] = line;
            t->zone_cell[i] = v;
        }
        return true;
    }
    FAIL("unknown statement \"%.*s\" (expected version, rule, cell or zones)",
         (int)(tok[0].len > 32 ? 32 : tok[0].len), tok[0].p);
#undef FAIL
}

bool rt_parse(const char *text, size_t len, rt_table_t *t, char *err, size_t err_size) {
    static const parse_state_t zero_state;
    parse_state_t ps = zero_state;
    memset(t, 0, sizeof *t);
    t->rule = (cp_zone_rule_t){CP_ZONE_DIVISOR_DEFAULT, CP_ZONE_MODULUS_DEFAULT};
    if (len > RT_TEXT_MAX) {
        snprintf(err, err_size, "the table is larger than %u bytes", RT_TEXT_MAX);
        return false;
    }
    uint32_t line = 0;
    for (size_t pos = 0; pos < len;) {
        line++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len, next = nl ? end + 1 : len;
        if (end > pos && text[end - 1] == '\r') end--; /* a file written on Windows */
        token_t tok[TOKENS_MAX];
        uint32_t ntok = 0;
        for (size_t i = pos; i < end;) {
            char c = text[i];
            if (c == ' ' || c == '\t') {
                i++;
                continue;
            }
            if (c == '#' && ntok == 0) break; /* a comment line */
            if ((unsigned char)c < 0x20 || c == 0x7f) {
                snprintf(err, err_size, "line %u: a control character (byte 0x%02x)", line,
                         (unsigned char)c);
                return false;
            }
            size_t j = i;
            while (j < end && text[j] != ' ' && text[j] != '\t' &&
                   !((unsigned char)text[j] < 0x20 || text[j] == 0x7f))
                j++;
            if (ntok == TOKENS_MAX) {
                snprintf(err, err_size, "line %u: too many words", line);
                return false;
            }
            tok[ntok++] = (token_t){text + i, j - i};
            i = j;
        }
        if (ntok > 0 && !parse_line(t, &ps, line, tok, ntok, err, err_size)) return false;
        pos = next;
    }
    if (!ps.version_line) {
        snprintf(err, err_size, "no \"version N\" line");
        return false;
    }
    cp_zones_t missing = {{0}};
    for (uint32_t i = 0; i < RT_ZONES; i++)
        if (!ps.zone_line[i]) cp_zones_add(&missing, i);
    if (!cp_zones_is_empty(&missing)) {
        char list[CP_ZONES_TEXT_MAX];
        cp_zones_format(&missing, list, sizeof list);
        snprintf(err, err_size,
                 "zones %s are not assigned to any cell (every zone 0-%u needs a "
                 "\"zones ... -> CELL\" line)",
                 list, RT_ZONES - 1);
        return false;
    }
    for (uint32_t i = 0; i < RT_ZONES; i++) {
        if (!find_cell(t, t->zone_cell[i])) {
            snprintf(err, err_size,
                     "line %u: cell %llu has no \"cell %llu HOST:PORT,...\" line "
                     "giving its addresses",
                     ps.zone_line[i], (unsigned long long)t->zone_cell[i],
                     (unsigned long long)t->zone_cell[i]);
            return false;
        }
    }
    qsort(t->cells, t->cell_count, sizeof t->cells[0], cell_cmp);
    cp_assert(rt_validate(t, err, err_size)); /* what parsing checked, checked again */
    return true;
}

bool rt_validate(const rt_table_t *t, char *err, size_t err_size) {
    const char *why = cp_zone_rule_check(&t->rule);
    if (t->version == 0) why = "the version is 0";
    if (why) {
        snprintf(err, err_size, "%s", why);
        return false;
    }
    if (t->cell_count > RT_CELLS_MAX) {
        snprintf(err, err_size, "more than %u cells", RT_CELLS_MAX);
        return false;
    }
    for (uint32_t i = 0; i < t->cell_count; i++) {
        const rt_cell_t *c = &t->cells[i];
        if (c->id == 0 || c->id > RT_CELL_ID_MAX || (i > 0 && c->id <= t->cells[i - 1].id)) {
            snprintf(err, err_size, "cell %llu is out of order or out of range",
                     (unsigned long long)c->id);
            return false;
        }
        if (c->addr_count == 0 || c->addr_count > RT_REPLICAS_MAX) {
            snprintf(err, err_size, "cell %llu needs 1 to %u addresses", (unsigned long long)c->id,
                     RT_REPLICAS_MAX);
            return false;
        }
        for (uint32_t j = 0; j < c->addr_count; j++) {
            size_t n = strnlen(c->addrs[j], RT_ADDR_SIZE);
            uint64_t owner;
            if (n == RT_ADDR_SIZE || (why = addr_check(c->addrs[j], n)) != NULL) {
                snprintf(err, err_size, "cell %llu: address %u %s", (unsigned long long)c->id, j,
                         why ? why : "is too long");
                return false;
            }
            for (uint32_t k = 0; k < j; k++) {
                if (strcmp(c->addrs[k], c->addrs[j]) == 0) {
                    snprintf(err, err_size, "cell %llu lists address %s twice",
                             (unsigned long long)c->id, c->addrs[j]);
                    return false;
                }
            }
            if (addr_taken(t, c, c->addrs[j], &owner)) {
                snprintf(err, err_size, "address %s is both cell %llu's and cell %llu's",
                         c->addrs[j], (unsigned long long)owner, (unsigned long long)c->id);
                return false;
            }
        }
    }
    for (uint32_t i = 0; i < RT_ZONES; i++) {
        if (!rt_find_cell(t, t->zone_cell[i])) {
            snprintf(err, err_size, "zone %u goes to cell %llu, which has no addresses", i,
                     (unsigned long long)t->zone_cell[i]);
            return false;
        }
    }
    return true;
}

/* snprintf into out at n, counting what does not fit. */
static size_t put(char *out, size_t out_size, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static size_t put(char *out, size_t out_size, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char dummy[1];
    int w = n < out_size ? vsnprintf(out + n, out_size - n, fmt, ap) : vsnprintf(dummy, 0, fmt, ap);
    va_end(ap);
    cp_assert(w >= 0);
    return n + (size_t)w;
}

void rt_cell_addresses(const rt_cell_t *c, char *out, size_t cap) {
    size_t len = 0;
    out[0] = '\0';
    for (uint32_t i = 0; i < c->addr_count; i++) {
        int n =
            snprintf(out + len, cap - len, "%s%.*s", i ? "," : "", (int)RT_ADDR_SIZE, c->addrs[i]);
        cp_assert(n > 0 && (size_t)n < cap - len);
        len += (size_t)n;
    }
}

size_t rt_format(const rt_table_t *t, char *out, size_t out_size) {
    size_t n = 0;
    if (out_size) out[0] = '\0';
    n = put(out, out_size, n,
            "# cellpay route table (docs/routing.md)\nversion %llu\nrule %llu %llu\n",
            (unsigned long long)t->version, (unsigned long long)t->rule.divisor,
            (unsigned long long)t->rule.modulus);
    for (uint32_t i = 0; i < t->cell_count; i++) {
        const rt_cell_t *c = &t->cells[i];
        n = put(out, out_size, n, "cell %llu ", (unsigned long long)c->id);
        for (uint32_t j = 0; j < c->addr_count; j++)
            n = put(out, out_size, n, "%s%s", j ? "," : "", c->addrs[j]);
        n = put(out, out_size, n, "\n");
    }
    for (uint32_t i = 0; i < RT_ZONES;) {
        uint32_t j = i;
        while (j + 1 < RT_ZONES && t->zone_cell[j + 1] == t->zone_cell[i]) j++;
        if (j == i)
            n = put(out, out_size, n, "zones %u -> %llu\n", i, (unsigned long long)t->zone_cell[i]);
        else
            n = put(out, out_size, n, "zones %u-%u -> %llu\n", i, j,
                    (unsigned long long)t->zone_cell[i]);
        i = j + 1;
    }
    return n;
}

bool rt_equal(const rt_table_t *a, const rt_table_t *b) {
    if (a->version != b->version || a->rule.divisor != b->rule.divisor ||
        a->rule.modulus != b->rule.modulus || a->cell_count != b->cell_count ||
        memcmp(a->zone_cell, b->zone_cell, sizeof a->zone_cell) != 0)
        return false;
    for (uint32_t i = 0; i < a->cell_count; i++) {
        const rt_cell_t *x = &a->cells[i], *y = &b->cells[i];
        if (x->id != y->id || x->addr_count != y->addr_count) return false;
        for (uint32_t j = 0; j < x->addr_count; j++)
            if (strncmp(x->addrs[j], y->addrs[j], RT_ADDR_SIZE) != 0) return false;
    }
    return true;
}

bool rt_set_cell(rt_table_t *t, uint64_t id, const char *addrs, char *err, size_t err_size) {
    if (id == 0 || id > RT_CELL_ID_MAX) {
        snprintf(err, err_size, "the cell number must be 1..4294967295");
        return false;
    }
    rt_cell_t c = {.id = id};
    if (!parse_addrs(addrs, strlen(addrs), &c, err, err_size)) return false;
    rt_cell_t *old = find_cell(t, id);
    for (uint32_t i = 0; i < c.addr_count; i++) {
        uint64_t owner;
        if (addr_taken(t, old, c.addrs[i], &owner)) {
            snprintf(err, err_size, "address %s is already cell %llu's", c.addrs[i],
                     (unsigned long long)owner);
            return false;
        }
    }
    if (!old) {
        if (t->cell_count == RT_CELLS_MAX) {
            snprintf(err, err_size, "the table already has %u cells", RT_CELLS_MAX);
            return false;
        }
        old = &t->cells[t->cell_count++];
    }
    *old = c;
    qsort(t->cells, t->cell_count, sizeof t->cells[0], cell_cmp);
    return true;
}

bool rt_assign(rt_table_t *t, const cp_zones_t *zones, uint64_t id, char *err, size_t err_size) {
    if (!find_cell(t, id)) {
        snprintf(err, err_size, "the table has no cell %llu (give its addresses first)",
                 (unsigned long long)id);
        return false;
    }
    if (t->version == UINT64_MAX) {
        snprintf(err, err_size, "the version cannot grow past 2^64-1");
        return false;
    }
    for (uint32_t i = 0; i < RT_ZONES; i++)
        if (cp_zones_has(zones, i)) t->zone_cell[i] = id;
    t->version++;
    return true;
}

bool rt_load(const char *path, rt_table_t *out, char *err, size_t err_size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return false;
    }
    char *buf = malloc(RT_TEXT_MAX + 1);
    size_t n = buf ? fread(buf, 1, RT_TEXT_MAX + 1, f) : 0;
    bool read_err = !buf || ferror(f);
    fclose(f);
    if (read_err || n > RT_TEXT_MAX) {
        snprintf(err, err_size, "%s: %s", path,
                 read_err ? "cannot read it" : "larger than a route table can be");
        free(buf);
        return false;
    }
    char why[512];
    bool ok = rt_parse(buf, n, out, why, sizeof why);
    free(buf);
    if (!ok) snprintf(err, err_size, "%s: %s", path, why);
    return ok;
}

static bool write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

bool rt_save(const char *path, const rt_table_t *t, char *err, size_t err_size) {
    if (!rt_validate(t, err, err_size)) return false;
    size_t len = rt_format(t, NULL, 0);
    char *text = malloc(len + 1), *tmp = malloc(strlen(path) + 8), *dir = strdup(path);
    bool ok = false;
    int fd = -1;
    const char *what = "out of memory";
    if (!text || !tmp || !dir) goto out;
    rt_format(t, text, len + 1);
    sprintf(tmp, "%s.tmp", path);
    what = "cannot write the temporary file";
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || !write_all(fd, text, len) || fsync(fd) != 0) goto out;
    int rc = close(fd);
    fd = -1;
    if (rc != 0) goto out;
    what = "cannot rename the temporary file into place";
    if (rename(tmp, path) != 0) goto out;
    /* The rename itself is durable only once the directory is. */
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");
    what = "cannot sync the directory";
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) goto out;
    ok = fsync(dfd) == 0;
    close(dfd);
out:
    if (!ok) {
        int e = errno;
        if (fd >= 0) close(fd);
        if (tmp && fd >= 0) unlink(tmp);
        snprintf(err, err_size, "%s: %s: %s", path, what, strerror(e));
    }
    free(text);
    free(tmp);
    free(dir);
    return ok;
}

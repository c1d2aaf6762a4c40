#include "repl/members.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool mb_addr_parse(const char *s, mb_addr_t *out) {
    struct sockaddr_in sa;
    if (!peer_parse_addr(s, &sa)) return false;
    *out = (mb_addr_t){.ip = sa.sin_addr.s_addr, .port = sa.sin_port};
    return true;
}

void mb_addr_format(const mb_addr_t *a, char *out, size_t size) {
    char host[INET_ADDRSTRLEN];
    struct in_addr ip = {.s_addr = a->ip};
    inet_ntop(AF_INET, &ip, host, sizeof host);
    snprintf(out, size, "%s:%u", host, ntohs(a->port));
}

bool mb_book_put(mb_book_t *b, uint32_t id, const char *addr) {
    uint32_t i = 0;
    while (i < b->count && b->e[i].id != id) i++;
    if (i == MB_BOOK_MAX || strlen(addr) >= sizeof b->e[i].addr) return false;
    if (i == b->count) b->count++;
    b->e[i].id = id;
    strcpy(b->e[i].addr, addr);
    return true;
}

const char *mb_book_get(const mb_book_t *b, uint32_t id) {
    for (uint32_t i = 0; i < b->count; i++)
        if (b->e[i].id == id) return b->e[i].addr;
    return NULL;
}

bool mb_book_learn(mb_book_t *b, const rf_members_t *m, const mb_addrs_t *addrs) {
    for (uint32_t i = 0; i < m->count; i++) {
        char s[64];
        if (addrs->a[i].ip == 0 || addrs->a[i].zero != 0) return false;
        mb_addr_format(&addrs->a[i], s, sizeof s);
        if (!mb_book_put(b, m->ids[i], s)) return false;
    }
    return true;
}

bool mb_book_addrs(const mb_book_t *b, const rf_members_t *m, mb_addrs_t *out) {
    memset(out, 0, sizeof *out);
    for (uint32_t i = 0; i < m->count; i++) {
        const char *s = mb_book_get(b, m->ids[i]);
        if (!s || !mb_addr_parse(s, &out->a[i])) return false;
    }
    return true;
}

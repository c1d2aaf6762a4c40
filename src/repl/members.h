/* The membership of a cell's group as a node keeps it: who is in it (raft.h, MEMBERSHIP) and
 * where each member listens for its peers. Membership entries carry the addresses of the new
 * membership (mb_addrs_t as the entry's extra bytes); snapshots store an mb_record_t, so a
 * replica restarted or rebuilt from a snapshot knows every member's address. */
#ifndef CP_MEMBERS_H
#define CP_MEMBERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "repl/peer.h"
#include "repl/raft.h"

/* An IPv4 peer address, as stored: the address and port in network byte order. */
typedef struct mb_addr {
    uint32_t ip;
    uint16_t port;
    uint16_t zero;
} mb_addr_t;
_Static_assert(sizeof(mb_addr_t) == 8, "mb_addr_t is 8 bytes");

/* The addresses of a membership's members, in the order of its ids. */
typedef struct mb_addrs {
    mb_addr_t a[RF_NODES_MAX];
} mb_addrs_t;
_Static_assert(sizeof(mb_addrs_t) == 56, "mb_addrs_t is 56 bytes");

/* A membership with its addresses (magic 0 in members: none stored). */
typedef struct mb_record {
    rf_members_wire_t members;
    mb_addrs_t addrs;
    uint8_t reserved[8];
} mb_record_t;
_Static_assert(sizeof(mb_record_t) == 128, "mb_record_t is 128 bytes");

/* "HOST:PORT" (an IPv4 literal or localhost) to an address; false when it does not parse. */
bool mb_addr_parse(const char *s, mb_addr_t *out);
void mb_addr_format(const mb_addr_t *a, char *out, size_t size);

/* The node's address book: every id it has seen an address for. */
#define MB_BOOK_MAX 32u
typedef struct mb_book {
    peer_addr_t e[MB_BOOK_MAX];
    uint32_t count;
} mb_book_t;

/* Records id's address (replacing an older one); false when the book is full. */
bool mb_book_put(mb_book_t *b, uint32_t id, const char *addr);
const char *mb_book_get(const mb_book_t *b, uint32_t id);
/* Learns the addresses a membership entry or record carries; false when they do not parse. */
bool mb_book_learn(mb_book_t *b, const rf_members_t *m, const mb_addrs_t *addrs);
/* The addresses of m's members from the book; false when one is missing. */
bool mb_book_addrs(const mb_book_t *b, const rf_members_t *m, mb_addrs_t *out);

#endif

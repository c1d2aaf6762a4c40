/* The route table (docs/routing.md): which cell serves each of the 100 zones, and where each
 * cell's replicas take client requests. It is what the gateway needs to send a user's request
 * to the cell that owns the user's zone. Versioned: every change bumps the version, so a
 * holder of two tables knows which is newer.
 *
 * The table is kept as text, one statement a line:
 *
 *   # a comment; blank lines are ignored
 *   version 7
 *   rule 10 100                               (optional: zone = (uid / 10) mod 100)
 *   cell 1 127.0.0.1:7001,127.0.0.1:7002
 *   zones 0-49 -> 1
 *   zones 50-99 -> 2
 *
 * Parsing checks everything a router relies on; rt_format() writes the normalized form
 * (cells by number, zone ranges ascending), which parses back to an equal table. */
#ifndef CP_ROUTE_H
#define CP_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/zone.h"

#define RT_ZONES CP_ZONES
#define RT_REPLICAS_MAX 7u        /* client addresses of one cell: a 7-voter group at most */
#define RT_CELLS_MAX 128u         /* cells a table may name (more than zones: spare cells) */
#define RT_ADDR_SIZE 56u          /* "HOST:PORT" and its NUL, as in proto_member_change_t */
#define RT_CELL_ID_MAX UINT32_MAX /* `cellpay node --cell` numbers */
#define RT_TEXT_MAX (256u << 10)  /* a table's text; a full one is far smaller */

typedef struct rt_cell {
    uint64_t id;
    uint32_t addr_count;
    char addrs[RT_REPLICAS_MAX][RT_ADDR_SIZE]; /* NUL-padded */
} rt_cell_t;

typedef struct rt_table {
    uint64_t version;
    cp_zone_rule_t rule;          /* always explicit here (the default is 10/100) */
    uint64_t zone_cell[RT_ZONES]; /* the cell serving each zone */
    uint32_t cell_count;
    rt_cell_t cells[RT_CELLS_MAX]; /* ascending by id */
} rt_table_t;

/* The zone of uid under the table's rule, and the cell that serves it. */
uint32_t rt_zone(const rt_table_t *t, uint64_t uid);
uint64_t rt_cell_of_uid(const rt_table_t *t, uint64_t uid);
/* The cell's client addresses as one list, "HOST:PORT[,HOST:PORT...]" (what client_open()
 * takes), into out; cap of RT_REPLICAS_MAX * RT_ADDR_SIZE always suffices. */
void rt_cell_addresses(const rt_cell_t *c, char *out, size_t cap);
/* The cell's entry, NULL when the table does not name it. */
const rt_cell_t *rt_find_cell(const rt_table_t *t, uint64_t id);
/* The zones the table gives to cell id. */
cp_zones_t rt_cell_zones(const rt_table_t *t, uint64_t id);

/* Parses len bytes of text. False with "line N: what is wrong" in err when the text is not a
 * valid table (then *out is unspecified). */
bool rt_parse(const char *text, size_t len, rt_table_t *out, char *err, size_t err_size);
/* Checks a table built or changed in memory by the same rules as rt_parse(); false with what
 * is wrong in err when it breaks one. */
bool rt_validate(const rt_table_t *t, char *err, size_t err_size);
/* Writes the normalized text of a valid table; returns the length it needs (as snprintf). */
size_t rt_format(const rt_table_t *t, char *out, size_t out_size);
bool rt_equal(const rt_table_t *a, const rt_table_t *b);

/* Sets (adds or replaces) cell id's client addresses, "HOST:PORT[,HOST:PORT...]". */
bool rt_set_cell(rt_table_t *t, uint64_t id, const char *addrs, char *err, size_t err_size);
/* Gives zones to cell id, which the table must name, and bumps the version. */
bool rt_assign(rt_table_t *t, const cp_zones_t *zones, uint64_t id, char *err, size_t err_size);

/* Reads and parses a table file (errors name the file). */
bool rt_load(const char *path, rt_table_t *out, char *err, size_t err_size);
/* Writes the table atomically: readers see the old file or the new one, whole, and after a
 * crash the file is one of the two (temp file, fsync, rename, fsync of the directory). */
bool rt_save(const char *path, const rt_table_t *t, char *err, size_t err_size);

#endif

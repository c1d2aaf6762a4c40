/* Memory for large fixed-capacity tables, allocated once at start-up. Anonymous mappings
 * are zero-filled and committed page by page on first touch, so capacity costs address space
 * until it is used; transparent huge pages are requested so that a table of millions of rows
 * costs few page faults and TLB misses. */
#ifndef CP_TABLE_H
#define CP_TABLE_H

#include <stddef.h>

/* count * size zeroed bytes, or NULL (also when count * size overflows). */
void *cp_table_alloc(size_t count, size_t size);

/* Commits the memory of a table now rather than on first touch: for servers and benchmarks
 * that want no page faults (and no zeroing) on the hot path later. */
void cp_table_prefault(void *p, size_t count, size_t size);
void cp_table_free(void *p, size_t count, size_t size);

#endif

/* Memory for large fixed-capacity tables, allocated once at start-up. Anonymous mappings
 * are zero-filled and committed page by page on first touch, so capacity costs address space
 * until it is used.
 *
 * Row tables, filled in order, take small pages: a huge page is zeroed in one 2 MiB piece
 * on the request path (a few milliseconds' stall of the cell; on virtual machines that hand
 * free memory back to the host, fresh huge pages measured ~5x the cost per byte of small
 * ones). Arrays touched at random from their first entries on (hash indexes) take huge pages:
 * all of their pages are touched soon anyway, and lookups then cost fewer TLB misses. */
#ifndef CP_TABLE_H
#define CP_TABLE_H

#include <stddef.h>

/* count * size zeroed bytes in small pages, or NULL (also when count * size overflows). */
void *cp_table_alloc(size_t count, size_t size);

/* The same with transparent huge pages requested: for arrays accessed at random. */
void *cp_table_alloc_huge(size_t count, size_t size);

/* Commits the memory of a table now (in huge pages where the kernel allows) rather than on
 * first touch: for servers and benchmarks that want no page faults (and no zeroing) on the
 * hot path later. */
void cp_table_prefault(void *p, size_t count, size_t size);
void cp_table_free(void *p, size_t count, size_t size);

#endif

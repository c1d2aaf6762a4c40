#include "base/table.h"

#include <stdint.h>
#include <sys/mman.h>

void *cp_table_alloc(size_t count, size_t size) {
    if (count == 0 || size == 0 || count > SIZE_MAX / size) return NULL;
    void *p = mmap(NULL, count * size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void *cp_table_alloc_huge(size_t count, size_t size) {
    void *p = cp_table_alloc(count, size);
    /* Advice only: where huge pages are off, the table still works with small pages. */
    if (p) (void)madvise(p, count * size, MADV_HUGEPAGE);
    return p;
}

void cp_table_free(void *p, size_t count, size_t size) {
    if (p) munmap(p, count * size);
}

void cp_table_prefault(void *p, size_t count, size_t size) {
    if (!p) return;
    size_t bytes = count * size;
    /* Committed now, the table may as well take huge pages: fewer TLB misses, no later cost. */
    (void)madvise(p, bytes, MADV_HUGEPAGE);
#ifdef MADV_POPULATE_WRITE
    if (madvise(p, bytes, MADV_POPULATE_WRITE) == 0) return;
#endif
    /* Older kernels: touch one byte a page (the memory is zero, so writing zero keeps it). */
    volatile unsigned char *b = p;
    for (size_t off = 0; off < bytes; off += 4096) b[off] = 0;
}

/*
 * Another allocator's malloc_usable_size, preloaded after libshed.so (as a
 * program linked with jemalloc has one after it in the search order).  It
 * must never be asked about glibc's blocks: it answers 1 (usable.c).
 */
#include <stddef.h>

size_t malloc_usable_size(void *ptr)
{
    (void)ptr;
    return 1;
}

/*
 * Force-included (-include) into the cmocka suite test/test_*.c to build it a
 * second time against libshed.so through the standard names: every shed_*
 * allocation call becomes the malloc-family call that the preloaded library
 * serves.  shed_trim, shed_stats and shed_config keep their own names.
 *
 * shed.h is included first so that its declarations of the shed_* names are
 * read before the renames (its include guard then makes later includes
 * no-ops); otherwise they would redeclare malloc & co. with other types.
 */
#ifndef SHED_PRELOAD_NAMES_H
#define SHED_PRELOAD_NAMES_H

#include <malloc.h>
#include <stdlib.h>
#include <shed.h>

#define shed_malloc        malloc
#define shed_calloc        calloc
#define shed_realloc       realloc
#define shed_free          free
#define shed_aligned_alloc aligned_alloc
/* glibc's malloc_usable_size takes a non-const pointer. */
#define shed_usable_size(p) malloc_usable_size((void *)(p))

#endif

/*
 * valgrind client requests, always compiled in: memcheck then sees shed's
 * blocks as it sees malloc's.  Outside valgrind g.valgrind is false and the
 * requests are skipped by one predictable branch.
 */
#ifndef SHED_VG_H
#define SHED_VG_H

#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>

#define VG(request)                      \
    do {                                 \
        if (unlikely(g.valgrind)) {      \
            request;                     \
        }                                \
    } while (0)

/* The requests of the fast paths, out of line so that they cost those paths
 * no stack frame. */
void vg_malloclike(void *block, size_t size) HIDDEN __attribute__((noinline, cold));
void vg_freelike(void *block) HIDDEN __attribute__((noinline, cold));

#endif

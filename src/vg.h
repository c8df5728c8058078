/*
 * Memory checkers: valgrind's client requests, always compiled in, so that
 * memcheck sees shed's blocks as it sees malloc's; and ASan's manual
 * poisoning in -fsanitize=address builds.  Outside both, g.checker is false
 * and the fast paths skip all of this with one predictable branch.
 */
#ifndef SHED_VG_H
#define SHED_VG_H

#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>

#if defined(__SANITIZE_ADDRESS__)
#define SHED_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SHED_ASAN 1
#endif
#endif
#ifdef SHED_ASAN
#include <sanitizer/asan_interface.h>
#else
#define SHED_ASAN 0
#define ASAN_POISON_MEMORY_REGION(a, n) ((void)(a), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(a, n) ((void)(a), (void)(n))
#endif

#define VG(request)                      \
    do {                                 \
        if (unlikely(g.valgrind)) {      \
            request;                     \
        }                                \
    } while (0)

/* The fast paths' requests, out of line so that they cost those paths no
 * stack frame.  A block handed out: size bytes become accessible.  A block
 * freed: the whole block (usable bytes) becomes inaccessible; under valgrind
 * chk_free_early runs before any check, so memcheck reports a bad free at the
 * caller's line first. */
void chk_alloc(void *block, size_t size) HIDDEN __attribute__((noinline, cold));
void chk_free_early(void *block) HIDDEN __attribute__((noinline, cold));
void chk_free(void *block, size_t usable) HIDDEN __attribute__((noinline, cold));
void chk_noaccess(void *addr, size_t len) HIDDEN;
void chk_table(void *addr, size_t len, bool used) HIDDEN;

#endif

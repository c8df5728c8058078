/*
 * Helpers shared by the cmocka tests (test/test_*.c).
 *
 * The tests call only the API of include/shed.h.  test/preload/ compiles the
 * same sources a second time with -include test/preload/names.h, which maps
 * shed_malloc & co to the standard names; then SHED_TEST_PRELOAD is 1 and a
 * test that needs "nothing but my calls allocate" relaxes that one check.
 */
#ifndef SHED_TEST_H
#define SHED_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/types.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <valgrind/valgrind.h>

#include "shed.h"
#include "child.h"
#include "rand.h"

#ifdef shed_malloc
#define SHED_TEST_PRELOAD 1
#else
#define SHED_TEST_PRELOAD 0
#endif

/* glibc's own allocator, to make "foreign" pointers. */
extern void *__libc_malloc(size_t);
extern void __libc_free(void *);

/* Sanitizer builds: gcc says so with __SANITIZE_*__, clang with
 * __has_feature.  TSan's runtime runs a thread of its own, for the whole
 * life of the process. */
#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN 1
#endif
#endif
#ifndef ASAN
#define ASAN 0
#endif
#if defined(__SANITIZE_THREAD__)
#define TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TSAN 1
#endif
#endif
#ifndef TSAN
#define TSAN 0
#endif
#define SANITIZED (ASAN || TSAN)

/* A block of the system allocator, as shed's large blocks are: glibc's own,
 * or in a sanitizer build the sanitizer's (which shed then uses too). */
#if SANITIZED
#define system_malloc malloc
#else
#define system_malloc __libc_malloc
#endif

static inline size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static inline void *page_of(const void *p)
{
    return (void *)((uintptr_t)p & ~(uintptr_t)(page_size() - 1));
}

static inline size_t round16(size_t n)
{
    return n == 0 ? 16 : (n + 15) & ~(size_t)15;
}

/* Running under memcheck, or built with ASan: shed then makes only the
 * requested bytes of a block addressable. */
#define CHECKED (ASAN || RUNNING_ON_VALGRIND != 0)

/* Iteration counts scale down under valgrind, or with SHED_TEST_SCALE=N
 * (percent of the full count, at least 1 iteration). */
static inline long scaled(long n)
{
    const char *s = getenv("SHED_TEST_SCALE");
    long pct = s ? atol(s) : (RUNNING_ON_VALGRIND ? 5 : 100);
    if (pct <= 0)
        pct = 1;
    long r = n * pct / 100;
    return r > 0 ? r : 1;
}

/* The usable size shed reports for a pool block of n bytes: n rounded up to
 * 16, but under memcheck n itself (only the requested bytes are addressable
 * there, and shed says so, as valgrind's own malloc_usable_size does). */
static inline size_t usable_of(size_t n)
{
    return CHECKED ? n : round16(n);
}

/* The medium classes, as shed(7) lists them. */
static const size_t medium_sizes[SHED_MEDIUM_CLASSES] = {
    640, 768, 896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096,
    5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384, 20480, 24576, 28672, 32768,
    40960, 49152, 57344, 65536, 81920, 98304, 114688, 131072,
};

/* The block size of the medium class that serves n bytes aligned to align
 * (a power of two; 0 or 1 for none), 0 when no medium class does (too big,
 * or no class a multiple of the alignment). */
static inline size_t medium_block(size_t n, size_t align)
{
    for (int c = 0; c < SHED_MEDIUM_CLASSES; c++)
        if (medium_sizes[c] >= n && (align <= 1 || medium_sizes[c] % align == 0))
            return n > SHED_MAX_BLOCK || align > SHED_MAX_BLOCK ? medium_sizes[c] : 0;
    return 0;
}

/* Medium blocks in use, over the medium classes. */
static inline size_t medium_in_use(const struct shed_stats *st)
{
    size_t n = 0;
    for (int c = 0; c < SHED_MEDIUM_CLASSES; c++)
        n += st->medium[c].blocks_in_use;
    return n;
}

/* Bytes of a block of req bytes that a test writes: all the usable size,
 * but under memcheck only the requested bytes are addressable (as with
 * glibc's malloc under valgrind), and writing more is reported. */
static inline size_t writable(const void *p, size_t req)
{
    return CHECKED ? req : shed_usable_size(p);
}

/* Is the page holding addr in memory?  -1 if mincore fails. */
static inline int resident(const void *addr)
{
    unsigned char v = 0;
    if (mincore(page_of(addr), page_size(), &v) != 0)
        return -1;
    return v & 1;
}

static inline uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A byte pattern that depends on the block's address, a seed and the offset,
 * so that a block handed out twice, or overwritten by a neighbour, shows. */
static inline unsigned char pat(const void *blk, unsigned seed, size_t i)
{
    uintptr_t a = (uintptr_t)blk;
    return (unsigned char)((a >> 4) ^ (a >> 12) ^ (seed * 131u) ^ (i * 7u) ^ 0x5a);
}

static inline void fill(void *blk, size_t n, unsigned seed)
{
    unsigned char *b = blk;
    for (size_t i = 0; i < n; i++)
        b[i] = pat(blk, seed, i);
}

/* Offset of the first byte that differs from the pattern, or -1. */
static inline long check_fill(const void *blk, size_t n, unsigned seed)
{
    const unsigned char *b = blk;
    for (size_t i = 0; i < n; i++)
        if (b[i] != pat(blk, seed, i))
            return (long)i;
    return -1;
}

/* Read the line of shed_stats_print() with the settings ("  release=... backend=... "). */
static inline void stats_settings(char *buf, size_t len)
{
    FILE *f = tmpfile();
    buf[0] = 0;
    if (!f)
        return;
    shed_stats_print(f);
    rewind(f);
    while (fgets(buf, (int)len, f) && strncmp(buf, "  release=", 10) != 0)
        ;
    if (strncmp(buf, "  release=", 10) != 0)
        buf[0] = 0;
    fclose(f);
}

/*
 * Run a program (argv[0], usually this test itself with "--child ...") with
 * SHED_CONF and SHED_STATS set to conf and stats (unset when NULL); out and
 * err get its stdout and stderr (NUL-terminated, truncated to len).  Returns
 * the wait status.  The child is exec'ed, not just forked: under valgrind it
 * then runs natively (no --trace-children), so deliberate bad calls and
 * aborts in it are about shed, not about memcheck.
 */
static inline int run_exec(char *const argv[], const char *conf, const char *stats,
                           char *out, char *err, size_t len)
{
    return child_run(NULL, NULL, argv[0], argv, conf, stats, out, err, len);
}

#endif

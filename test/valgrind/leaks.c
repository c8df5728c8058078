/*
 * Leaks and a use after free of a reused block, for memcheck.
 * check-leaks.sh runs it under valgrind twice: linked with libshed.a (the
 * shed_* calls), and built with -DUSE_MALLOC and preloaded with libshed.so
 * (malloc and free).  Each phase starts with a line "**PID** phase NAME"
 * (VALGRIND_PRINTF) and ends with a leak check that reports what is new
 * since the last one (VALGRIND_DO_ADDED_LEAK_CHECK):
 *   one C   (C = 0..31) a block of class C leaked alone: the first block of
 *           its class, then a block of that class that stays referenced
 *           (kept[]); memcheck must report the first "definitely lost" at
 *           the line marked LEAK-ONE, and not the kept one;
 *   bulk    70 blocks of every class leaked at once (several bitmap words
 *           and pools per class): all definitely lost, at LEAK-BULK;
 *   mone C  (C = 0..31) the same for medium class C (640 B to 128 KiB, in
 *           spans): the first block of its class, which starts its span,
 *           definitely lost at MLEAK-ONE, the referenced one (MKEEP) not;
 *   mbulk   20 blocks of every medium class leaked at once (three spans
 *           of the 32 KiB class, ten of the 128 KiB one): all definitely lost, at MLEAK-BULK;
 *   heap    (linked only) a block of a heap, a medium one and a large one
 *           (from the system allocator, which the heap keeps a set of): the
 *           heap is not destroyed, and memcheck must still report all three
 *           definitely lost, at LEAK-HEAP, LEAK-HEAP-MEDIUM and
 *           LEAK-HEAP-LARGE, as only destroying the heap would free them;
 *   uaf     a 40-byte block freed, 40 bytes allocated again, then a write
 *           through the stale pointer: memcheck reports an invalid write at
 *           the line marked UAF, as it does on its own malloc (which, like
 *           shed's quarantine under a checker, does not hand the freed
 *           block out again at once);
 *   muaf    the same with a 4 KiB block (medium), at MUAF.
 * At exit the kept blocks are still referenced: "still reachable", at KEEP
 * and MKEEP.
 * Built with -O0 -g, so that each call stays at its line.
 */
#include <stdlib.h>
#include <string.h>
#include <valgrind/memcheck.h>

#ifdef USE_MALLOC
#define ALLOC malloc
#define FREE free
#else
#include "shed.h"
#define ALLOC shed_malloc
#define FREE shed_free
#endif

#define NCLASSES 32
#define BULK 70
#define MED_NCLASSES 32
#define MED_BULK 20

static void *volatile kept[NCLASSES];
static void *volatile mkept[MED_NCLASSES];

/* Sizes of class c, all different so that a report names its block. */
static size_t leak_size(int c) { return (size_t)(c + 1) * 16 - 3; }
static size_t kept_size(int c) { return (size_t)(c + 1) * 16 - 7; }

/* Medium class c: four per doubling from 640 bytes (640, 768, 896, 1024,
 * 1280, ...), as shed(7) lists them; the sizes just below it, as above. */
static size_t medium_class(int c)
{
    size_t base = (size_t)512 << (c / 4);
    return base + (size_t)(c % 4 + 1) * (base / 4);
}
static size_t mleak_size(int c) { return medium_class(c) - 3; }
static size_t mkept_size(int c) { return medium_class(c) - 7; }

/* memset returns its pointer, which a register may still hold at the leak
 * check (memcheck counts registers as roots): overwrite it. */
static __attribute__((noinline)) void scrub(void)
{
    char volatile buf[64];
    memset((char *)buf, 0, sizeof buf);
}

static void phase(const char *name, int arg)
{
    if (arg >= 0)
        VALGRIND_PRINTF("phase %s %d\n", name, arg);
    else
        VALGRIND_PRINTF("phase %s\n", name);
}

int main(void)
{
    for (int c = 0; c < NCLASSES; c++) {
        phase("one", c);
        void *volatile p = ALLOC(leak_size(c));            /* LEAK-ONE */
        memset(p, 1, leak_size(c));
        kept[c] = ALLOC(kept_size(c));                     /* KEEP */
        memset(kept[c], 2, kept_size(c));
        p = NULL;
        scrub();
        VALGRIND_DO_ADDED_LEAK_CHECK;
    }

    phase("bulk", -1);
    for (int c = 0; c < NCLASSES; c++) {
        for (int i = 0; i < BULK; i++) {
            void *volatile p = ALLOC(leak_size(c));        /* LEAK-BULK */
            memset(p, 3, leak_size(c));
            p = NULL;
        }
    }
    scrub();
    VALGRIND_DO_ADDED_LEAK_CHECK;

    for (int c = 0; c < MED_NCLASSES; c++) {
        phase("mone", c);
        void *volatile p = ALLOC(mleak_size(c));           /* MLEAK-ONE */
        memset(p, 1, mleak_size(c));
        mkept[c] = ALLOC(mkept_size(c));                   /* MKEEP */
        memset(mkept[c], 2, mkept_size(c));
        p = NULL;
        scrub();
        VALGRIND_DO_ADDED_LEAK_CHECK;
    }

    phase("mbulk", -1);
    for (int c = 0; c < MED_NCLASSES; c++) {
        for (int i = 0; i < MED_BULK; i++) {
            void *volatile p = ALLOC(mleak_size(c));       /* MLEAK-BULK */
            memset(p, 3, mleak_size(c));
            p = NULL;
        }
    }
    scrub();
    VALGRIND_DO_ADDED_LEAK_CHECK;

#ifndef USE_MALLOC
    phase("heap", -1);
    shed_heap_t *h = shed_heap_new(0);
    void *volatile hp = shed_heap_malloc(h, 100);          /* LEAK-HEAP */
    memset(hp, 6, 100);
    hp = shed_heap_malloc(h, 5000);                        /* LEAK-HEAP-MEDIUM */
    memset(hp, 7, 5000);
    hp = shed_heap_malloc(h, 200000);                      /* LEAK-HEAP-LARGE */
    memset(hp, 8, 200000);
    hp = NULL;
    scrub();
    VALGRIND_DO_ADDED_LEAK_CHECK;
#endif

    phase("uaf", -1);
    char *volatile stale = ALLOC(40);
    memset(stale, 4, 40);
    FREE(stale);
    char *volatile again = ALLOC(40);
    memset(again, 5, 40);
    stale[0] = 6;                                          /* UAF */
    FREE(again);

    phase("muaf", -1);
    stale = ALLOC(4096);
    memset(stale, 4, 4096);
    FREE(stale);
    again = ALLOC(4096);
    memset(again, 5, 4096);
    stale[100] = 6;                                        /* MUAF */
    FREE(again);
    phase("end", -1);
    return 0;
}

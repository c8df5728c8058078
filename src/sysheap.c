/*
 * glibc's heap under LD_PRELOAD, where it holds shed's large blocks (over
 * SHED_MEDIUM_MAX) and nothing else.
 *
 * glibc gives the top of its heap back (brk, or a shrink of a thread
 * arena's heap) whenever a free leaves more than its trim threshold free
 * there, 128 KiB until the program frees a block glibc had mapped on its
 * own; and it maps every block over its mmap threshold (128 KiB, then the
 * size of the largest mapped block freed) afresh, faulting each page in.
 * A heap of large blocks only, with no small block to hold its top, then
 * shrinks at nearly every free and faults its pages in again at the next
 * malloc (mimalloc-bench's mstress: 123 brk calls and 22,700 faults
 * preloaded, 19 and 5,400 to 12,300 under glibc alone), and blocks of a
 * few MiB fault in whole at every malloc (its malloc-large: 510,000
 * faults).  So at the first large request shed sets glibc's mmap threshold
 * to the most glibc allows (32 MiB on 64-bit: its dynamic threshold
 * never goes higher either) and its trim threshold out of reach (which
 * stops the dynamic adjustment, then moot), so that freed blocks up to
 * 32 MiB stay in the heap for the next request.  The
 * free memory glibc then keeps goes back through the release thread
 * instead: once a large block was freed and delay_ms passed, the thread
 * calls malloc_trim(0), which advises every free page of glibc's heaps,
 * top and middle; shed_trim does the same at once.  In the linked library
 * (libshed.a) glibc's heap is the program's own, and none of this is done.
 */
#include <limits.h>
#include <malloc.h>

#include "shed_impl.h"

#ifdef SHED_PRELOAD

/* glibc's most for M_MMAP_THRESHOLD on 64-bit systems
 * (DEFAULT_MMAP_THRESHOLD_MAX). */
#define SYS_MMAP_MAX (32 << 20)

static _Atomic bool primed;
/* now_ms() (never 0) of the first large free since the last trim; 0 when
 * there is none.  Written by a free only when it changes from 0. */
static _Atomic uint32_t freed_ms;

void sys_heap_prime(void)
{
    if (RELAXED_LOAD(g.opt.release) == REL_INLINE || atomic_exchange(&primed, true))
        return;                   /* inline: glibc gives back at once, as before */
    /* Where glibc's most is smaller (32-bit: 512 KiB) the call fails; the
     * trim threshold is then left alone, as setting it would also freeze
     * the mmap threshold at 128 KiB. */
    if (sys_mallopt(M_MMAP_THRESHOLD, SYS_MMAP_MAX))
        sys_mallopt(M_TRIM_THRESHOLD, INT_MAX);   /* shed trims: below */
}

bool sys_heap_primed(void)
{
    return RELAXED_LOAD(primed);
}

void sys_heap_freed(void)
{
    if (RELAXED_LOAD(freed_ms) || !RELAXED_LOAD(primed))
        return;
    uint32_t now = now_ms(), none = 0;
    if (atomic_compare_exchange_strong(&freed_ms, &none, now ? now : 1))
        releaser_kick_later();
}

bool sys_heap_dirty(void)
{
    return RELAXED_LOAD(freed_ms) != 0;
}

uint32_t sys_heap_pass(bool all)
{
    uint32_t since = RELAXED_LOAD(freed_ms);
    if (!since)
        return UINT32_MAX;
    uint32_t age = now_ms() - since, delay = RELAXED_LOAD(g.opt.delay_ms);
    if (!all && age < delay)
        return delay - age;
    RELAXED_STORE(freed_ms, 0);   /* a free from now on stamps again */
    malloc_trim(0);
    return UINT32_MAX;
}

#endif

/*
 * Statistics, gathered when asked for: the fast paths keep no counters.
 * Blocks in use and how full each pool is come from the pools' bitmaps,
 * read here under g.lock (which keeps the pool states still) but without
 * the owners' cooperation: an owner changes its bitmap with plain relaxed
 * stores and no lock, so a pool being allocated from meanwhile may be
 * counted a few blocks off.  That is the price of keeping malloc and free
 * free of counters; a quiet process gets exact numbers.
 * The reports (text, JSON, the heap map) are in report.c and heapmap.c.
 */
#include <errno.h>
#include <string.h>

#include "shed_impl.h"

/* Blocks live in p, a pool in use (relaxed reads: see above). */
static unsigned pool_live(struct pool *p)
{
    unsigned nfree = 0;
    for (unsigned w = 0; w < g.nwords; w++)
        nfree += (unsigned)__builtin_popcountll(pool_free_word(p, w));
    if (unlikely(g.checker))
        nfree += quarantine_count(p);   /* freed, held back */
    unsigned n = g.nblocks[size_class(RELAXED_LOAD(p->size))];
    return nfree < n ? n - nfree : 0;
}

static enum shed_fill_bin fill_bin(size_t live, size_t n)
{
    if (live == 0)
        return SHED_FILL_EMPTY;
    if (live >= n)
        return SHED_FILL_FULL;
    if (live * 10 < n)
        return SHED_FILL_UNDER10;
    if (live * 2 < n)
        return SHED_FILL_UNDER50;
    if (live * 10 < n * 9)
        return SHED_FILL_UNDER90;
    return SHED_FILL_UNDER100;
}

/* Pool pidx, in use: its class (< NCLS), or NCLS while it is being set up
 * (no owner yet: it holds no block, and its size may be the last class's). */
static unsigned used_pool(size_t pidx, unsigned *live)
{
    struct pool *p = desc_of(pidx);
    if (!RELAXED_LOAD(p->owner)) {
        *live = 0;
        return NCLS;
    }
    *live = pool_live(p);
    return size_class(RELAXED_LOAD(p->size));
}

/* The complete snapshot; st is the library's own struct.  g.lock held. */
static void collect_pools(struct shed_stats *st)
{
    for (size_t a = 0; a < g.narenas; a++) {
        const struct arena *ar = &g.arenas[a];
        st->pools_untouched += (size_t)__builtin_popcountll(ar->released & ~ar->touched);
        for (uint64_t m = ar->used; m; m &= m - 1) {
            unsigned live, c = used_pool(a * POOLS_PER_ARENA + (size_t)__builtin_ctzll(m), &live);
            if (c == NCLS)
                continue;
            enum shed_fill_bin b = fill_bin(live, g.nblocks[c]);
            st->classes[c].blocks_in_use += live;
            st->fill[c].pools_by_fill[b]++;
            st->pools_by_fill[b]++;
        }
    }
}

static void stats_fill(struct shed_stats *st)
{
    memset(st, 0, sizeof *st);
    if (!shed_ready())
        return;
    pthread_mutex_lock(&g.lock);
    collect_pools(st);
    for (unsigned c = 0; c < NCLS; c++) {
        struct shed_class_stats *cs = &st->classes[c];
        cs->block_size = (c + 1) * SHED_CLASS_STEP;
        cs->bytes_in_use = cs->blocks_in_use * cs->block_size;
        cs->pools_in_use = g.class_pools[c];
        st->fill[c].blocks_per_pool = g.nblocks[c];
        st->blocks_in_use += cs->blocks_in_use;
        st->bytes_in_use += cs->bytes_in_use;
    }
    arena_check();
    st->pools_in_use = g.npools_used;
    st->pools_dirty = g.npools_dirty;
    st->pools_releasing = g.npools_releasing;
    st->pools_released = g.npools_released;
    st->arenas = g.narenas - g.first_arena;
    st->bytes_mapped = (st->arenas * POOLS_PER_ARENA) << g.page_shift;
    pthread_mutex_unlock(&g.lock);

    st->pool_size = g.page_size;
    st->bytes_reserved = g.region_size;
    st->bytes_resident = arena_resident_bytes();
    st->release_syscalls = RELAXED_LOAD(g.c.syscalls);
    st->release_syscalls_app = RELAXED_LOAD(g.c.app_syscalls);
    st->release_batches = RELAXED_LOAD(g.c.batches);
    st->release_ranges = RELAXED_LOAD(g.c.ranges);
    st->pages_released = RELAXED_LOAD(g.c.pages);
    st->release_failures = RELAXED_LOAD(g.c.failures);
    st->release_ns = RELAXED_LOAD(g.c.ns);
    st->pools_reused_dirty = RELAXED_LOAD(g.c.reused_dirty);
    st->large_allocs = RELAXED_LOAD(g.c.large) + theaps_large_allocs();
    medium_stats(st);
    st->errors = RELAXED_LOAD(g.c.errors);
}

/* shed 0.2's struct shed_stats: the same up to medium[], which had 24
 * classes (to 32 KiB), then the four span fields, then its end. */
#define MED_NCLS_0_2 24
#define SHED_STATS_SIZE_0_2                                                                    \
    (offsetof(struct shed_stats, medium) + MED_NCLS_0_2 * sizeof(struct shed_class_stats) +   \
     sizeof(struct shed_stats) - offsetof(struct shed_stats, spans_in_use))
_Static_assert(sizeof(struct shed_stats) - offsetof(struct shed_stats, spans_in_use) ==
                   4 * sizeof(size_t),
               "shed 0.2's struct ended with the four span fields: a new field goes after "
               "them, and SHED_STATS_SIZE_0_2 counts only those four");

/* Rewrite st in place into shed 0.2's layout: the span fields move down
 * over the classes that 0.2 did not have. */
static void stats_as_0_2(struct shed_stats *st)
{
    char *tail = (char *)&st->medium[MED_NCLS_0_2];
    memmove(tail, &st->spans_in_use, 4 * sizeof(size_t));
}

/* The caller's struct may be older (smaller) than ours, or newer: copy what
 * both know, zero the rest of theirs, never write past size. */
EXPORT int shed_stats_get(struct shed_stats *st, size_t size)
{
    if (!st || size < SHED_STATS_SIZE_0_1) {
        errno = EINVAL;
        return -1;
    }
    struct shed_stats mine;
    stats_fill(&mine);
    if (size == SHED_STATS_SIZE_0_2)
        stats_as_0_2(&mine);
    size_t n = size < sizeof mine ? size : sizeof mine;
    mine.size = n;
    memcpy(st, &mine, n);
    if (size > n)
        memset((char *)st + n, 0, size - n);
    return 0;
}

/* The symbol programs built against shed 0.1.0 call: their struct ends at
 * errors.  (shed.h's macro of the same name calls shed_stats_get.) */
#undef shed_stats
EXPORT int shed_stats(struct shed_stats *st)
{
    return shed_stats_get(st, SHED_STATS_SIZE_0_1);
}

/* The heap map's cells: one per carved pool, up to max, in address order.
 * Returns the number of carved pools.  Holds g.lock while it reads. */
size_t stats_pool_cells(unsigned char *cell, size_t max)
{
    pthread_mutex_lock(&g.lock);
    size_t first = g.first_arena * POOLS_PER_ARENA;   /* not carved */
    size_t npools = g.narenas * POOLS_PER_ARENA - first;
    for (size_t k = 0; k < npools && k < max; k++) {
        size_t i = first + k;
        const struct arena *ar = &g.arenas[i / POOLS_PER_ARENA];
        uint64_t bit = 1ull << (i % POOLS_PER_ARENA);
        unsigned live, c;
        if (ar->used & bit) {
            c = used_pool(i, &live);
            cell[k] = (unsigned char)(CELL_USED + fill_bin(live, c < NCLS ? g.nblocks[c] : 1));
        } else if (ar->dirty & bit) {
            cell[k] = CELL_DIRTY;
        } else if (ar->releasing & bit) {
            cell[k] = CELL_RELEASING;
        } else {
            cell[k] = ar->touched & bit ? CELL_RELEASED : CELL_UNTOUCHED;
        }
    }
    pthread_mutex_unlock(&g.lock);
    return npools;
}

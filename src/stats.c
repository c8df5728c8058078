/*
 * Statistics, gathered when asked for: the fast paths keep no counters.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "shed_impl.h"

EXPORT int shed_stats(struct shed_stats *st)
{
    if (!st) {
        errno = EINVAL;
        return -1;
    }
    memset(st, 0, sizeof *st);
    if (!shed_ready())
        return 0;

    /* Blocks in use, counted from the pools' bitmaps: no counter on the
     * fast paths.  A pool still being set up (size 0) holds none. */
    pthread_mutex_lock(&g.lock);
    for (size_t a = 0; a < g.narenas; a++) {
        for (uint64_t m = g.arenas[a].used; m; m &= m - 1) {
            struct pool *p = desc_of(a * POOLS_PER_ARENA + (size_t)__builtin_ctzll(m));
            unsigned size = RELAXED_LOAD(p->size);
            if (!RELAXED_LOAD(p->owner))
                continue;
            size_t nfree = 0;
            for (unsigned w = 0; w < g.nwords; w++)
                nfree += (size_t)__builtin_popcountll(pool_free_word(p, w));
            st->classes[size_class(size)].blocks_in_use += g.nblocks[size_class(size)] - nfree;
        }
    }
    for (unsigned c = 0; c < NCLS; c++) {
        struct shed_class_stats *cs = &st->classes[c];
        cs->block_size = (c + 1) * SHED_CLASS_STEP;
        cs->bytes_in_use = cs->blocks_in_use * cs->block_size;
        cs->pools_in_use = g.class_pools[c];
        st->blocks_in_use += cs->blocks_in_use;
        st->bytes_in_use += cs->bytes_in_use;
    }
    st->pools_in_use = g.npools_used;
    st->pools_dirty = g.npools_dirty;
    st->pools_releasing = g.npools_releasing;
    st->pools_released = g.npools_released;
    st->arenas = g.narenas;
    st->bytes_mapped = (g.narenas * POOLS_PER_ARENA) << g.page_shift;
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
    st->large_allocs = RELAXED_LOAD(g.c.large);
    st->errors = RELAXED_LOAD(g.c.errors);
    return 0;
}

EXPORT void shed_stats_print(FILE *out)
{
    struct shed_stats st;
    if (!out)
        return;
    shed_stats(&st);
    fprintf(out, "shed: release=%s backend=%s pool=%zu B\n",
            option_choice_name("release", RELAXED_LOAD(g.opt.release)),
            option_choice_name("backend", os_backend_in_use()), st.pool_size);
    fprintf(out, "  class  blocks      bytes        pools\n");
    for (unsigned c = 0; c < NCLS; c++) {
        const struct shed_class_stats *cs = &st.classes[c];
        if (cs->blocks_in_use || cs->pools_in_use)
            fprintf(out, "  %5zu  %-10zu  %-11zu  %zu\n", cs->block_size,
                    cs->blocks_in_use, cs->bytes_in_use, cs->pools_in_use);
    }
    fprintf(out, "  total  %-10zu  %-11zu  %zu\n", st.blocks_in_use, st.bytes_in_use,
            st.pools_in_use);
    fprintf(out, "  pools: %zu in use, %zu dirty, %zu releasing, %zu released; %zu arenas\n",
            st.pools_in_use, st.pools_dirty, st.pools_releasing, st.pools_released, st.arenas);
    fprintf(out, "  bytes: %zu reserved, %zu mapped, %zu resident\n",
            st.bytes_reserved, st.bytes_mapped, st.bytes_resident);
    fprintf(out, "  release: %" PRIu64 " syscalls (%" PRIu64 " from the program's threads), %"
            PRIu64 " batches, %" PRIu64 " ranges, %" PRIu64 " pages, %" PRIu64
            " failures, %.3f ms\n",
            st.release_syscalls, st.release_syscalls_app, st.release_batches, st.release_ranges,
            st.pages_released, st.release_failures, (double)st.release_ns / 1e6);
    fprintf(out, "  other: %" PRIu64 " dirty pools reused, %" PRIu64
            " large allocations, %" PRIu64 " errors\n",
            st.pools_reused_dirty, st.large_allocs, st.errors);
}

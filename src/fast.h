/*
 * The fast paths of malloc and free, inlined into each entry point that has
 * one (shed_malloc and shed_free here, malloc and free in preload.c), so that
 * the common case is one function, no call, and no argument set up for the
 * slow path it does not take.  Everything else is in alloc.c, slow.c (malloc's
 * slow path) and free.c.
 */
#ifndef SHED_FAST_H
#define SHED_FAST_H

#include "shed_impl.h"

#define ALWAYS_INLINE inline __attribute__((always_inline))

void *alloc_slow(size_t req, size_t rounded, size_t align) HIDDEN;
void *alloc_large(size_t size, size_t align) HIDDEN;
void  free_slow(void *ptr, const char *call) HIDDEN;
void  free_other(void *ptr, const char *call, struct pool *p, size_t off) HIDDEN;

/* A block of rounded bytes (a multiple of SHED_CLASS_STEP, up to
 * SHED_MAX_BLOCK; 0 for malloc(0)); req is the size the caller asked for
 * (for memcheck), align the alignment it needs.  The fast path: the word of
 * the thread's current pool that th->fast[] points at has a free block.
 * th->epoch == g.epoch says that no freeze or thaw came since the slow path
 * last looked (so the pool is not sealed), that no checker wants to see the
 * block, that th is a theap (not NO_THEAP), and that free() has not asked
 * for a release thread to be started (releaser_wake). */
static ALWAYS_INLINE void *alloc_fast(size_t req, size_t rounded, size_t align)
{
    struct theap *th = tls_heap;
    struct cur_word *c = (struct cur_word *)((char *)th->fast + rounded * 2);
    uint64_t m;
    if (likely(th->epoch == RELAXED_LOAD(g.epoch)) &&
        likely((m = RELAXED_LOAD(*c->word)) != 0))
        return cur_word_take(c, m, rounded);
    return alloc_slow(req, rounded, align);
}

static ALWAYS_INLINE void *malloc_fast(size_t size)
{
    if (likely(size <= SHED_MAX_BLOCK))
        return alloc_fast(size, (size + SHED_CLASS_STEP - 1) & ~(size_t)(SHED_CLASS_STEP - 1), 0);
    return alloc_large(size, 0);
}

/* The owner frees block i of p: false, with nothing changed, when the block
 * is free already.  The remote bitmap is not read here (another cache line):
 * a block freed by another thread and again by its owner is caught at the
 * merge. */
static inline bool owner_free(struct theap *th, struct pool *p, size_t i)
{
    _Atomic uint64_t *f = &free_map(p)[i / 64];
    uint64_t word = RELAXED_LOAD(*f), freed = word | 1ull << (i % 64);
    if (unlikely(freed == word))
        return false;
    RELAXED_STORE(*f, freed);
    --p->to_settle;
    CHECK(pool_nfree(p) <= p->settle_at && p->settle_at <= p->nblocks, pool_addr(p));
    if (unlikely(p->to_settle < 0))
        theap_settle(th, p);
    return true;
}

/* The fast path: the calling thread owns the pool, ptr starts one of its
 * blocks, and the block is allocated.  A pool it does not own goes to
 * free_other (free.c: the remote free, with what was found here); anything
 * else (NULL, a pointer outside the region, any pointer under a checker:
 * g.fast_size is 0 then) takes free_slow, which looks again, and reports or
 * hands the block on. */
static ALWAYS_INLINE void free_fast(void *ptr, const char *call)
{
    size_t off = (size_t)((char *)ptr - g.region), i;
    if (likely(off < g.fast_size)) {
        struct pool *p = desc_at(off);
        struct theap *th = tls_heap;            /* never a pool's owner if NO_THEAP */
        if (unlikely(RELAXED_LOAD(p->owner) != th))
            return free_other(ptr, call, p, off); /* another thread's, or none's */
        if (likely(block_index(off & g.page_mask, p->magic, &i)) &&
            likely((uint16_t)i < p->nblocks) &&   /* i < 2^13: see block_index */
            likely(owner_free(th, p, i)))
            return;
    }
    free_slow(ptr, call);
}

#endif

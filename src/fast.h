/*
 * The fast paths of malloc and free, inlined into each entry point that has
 * one (shed_malloc and shed_free here, malloc and free in preload.c), so that
 * the common case is one function, no call, and no argument set up for the
 * slow path it does not take: for pool blocks, and for medium blocks the
 * owner's medium cache (its pop and its park).  Everything else is in
 * alloc.c, slow.c (malloc's slow path), free.c and medium.c.
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

/* ---- medium blocks: the owner's cache (medium.c has the rest, and the
 * "owner's bracket" that mown_mark and mown_leave are the two halves of) ---- */

extern uint8_t med_class_of_128[SHED_MEDIUM_MAX / 128] HIDDEN;  /* by (size - 1) / 128 */
/* What the fast paths read of a medium class, in one entry (one address to
 * form for the three): see medium_classes_init. */
struct med_class {
    uint32_t magic;              /* block index = off * magic >> 40 */
    uint16_t units;              /* a block's share of the cache's budget */
    uint8_t cap;                 /* blocks the cache holds */
    uint8_t unused;
};
extern struct med_class med_cls[MED_NCLS] HIDDEN;
#define MCACHE_BUDGET_UNITS ((uint32_t)(MCACHE_BUDGET / 128))
void *medium_malloc_span(struct theap *th, unsigned c, size_t size, size_t align) HIDDEN;
void  medium_free_mine_at(struct theap *th, struct span *s, void *ptr, const char *call) HIDDEN;
void  mcache_first_parked(struct theap *th) HIDDEN;

/* Owner: mark itself busy; true when its steal word is 0 (the fast
 * paths' case), else the caller claims (mown_claim) before it goes on. */
static ALWAYS_INLINE bool mown_mark(struct theap *th)
{
    RELAXED_STORE(th->mc_busy, 1);
    atomic_signal_fence(memory_order_seq_cst);   /* the barrier: membarrier's */
    return likely(atomic_load_explicit(&th->mc_steal, memory_order_acquire) == 0);
}

/* Owner: leave its medium state (everything written before is seen by a
 * stealer that sees busy == 0). */
static ALWAYS_INLINE void mown_leave(struct theap *th)
{
    atomic_store_explicit(&th->mc_busy, 0, memory_order_release);
}

/* The count of parked blocks that b may be among (mc_hint): a
 * multiplicative hash of its address, as blocks of the large classes sit at
 * few offsets of their spans.  A count is a byte (twice the counts in the
 * same 4 KiB as 16-bit ones: half the frees that find theirs taken and
 * look through the stack); one at MCACHE_HINT_MAX parks no more. */
static ALWAYS_INLINE _Atomic uint8_t *mcache_hint(struct theap *th, const void *b)
{
    _Static_assert((MCACHE_HINTS & (MCACHE_HINTS - 1)) == 0, "a power of two");
    uint64_t h = ((uintptr_t)b >> 7) * 0x9E3779B97F4A7C15ull;
    return &th->mc_hint[h >> (64 - __builtin_ctz(MCACHE_HINTS))];
}

/* The parked units of th once a block of class c is parked too: within
 * MCACHE_BUDGET_UNITS, the block may be parked (if its class has room). */
static ALWAYS_INLINE uint32_t mcache_units_with(struct theap *th, unsigned c)
{
    return RELAXED_LOAD(th->mc_units) + med_cls[c].units;
}

/* Owner: b on top of th's stack of class c, which holds n (fewer than its
 * cap); hint is b's (mcache_hint), which counts h, units th's parked units
 * with b (mcache_units_with, within the budget). */
static ALWAYS_INLINE void mcache_push(struct theap *th, unsigned c, unsigned n, void *b,
                                      _Atomic uint8_t *hint, unsigned h, uint32_t units)
{
    CHECK(n < med_cls[c].cap && units <= MCACHE_BUDGET_UNITS &&
          units == RELAXED_LOAD(th->mc_units) + med_cls[c].units &&
          h == RELAXED_LOAD(*hint) && h < MCACHE_HINT_MAX, b);
    RELAXED_STORE(th->mc_blk[c][n], (uintptr_t)b);
    RELAXED_STORE(th->mc_n[c], (uint8_t)(n + 1));
    RELAXED_STORE(th->mc_units, units);
    RELAXED_STORE(*hint, (uint8_t)(h + 1));
}

/* Owner: the latest parked block of class c, of which th has n. */
static ALWAYS_INLINE void *mcache_pop(struct theap *th, unsigned c, unsigned n)
{
    size_t k = n - 1;
    void *b = (void *)RELAXED_LOAD(th->mc_blk[c][k]);
    _Atomic uint8_t *h = mcache_hint(th, b);
    RELAXED_STORE(th->mc_n[c], (uint8_t)k);
    RELAXED_STORE(th->mc_units, RELAXED_LOAD(th->mc_units) - med_cls[c].units);
    RELAXED_STORE(*h, (uint8_t)(RELAXED_LOAD(*h) - 1));
    return b;
}

/* malloc's medium block (size over SHED_MAX_BLOCK): the latest parked block
 * of its class, popped here with no call; the rest (no parked block, a
 * steal word to look at, no theap yet, no medium region, over
 * SHED_MEDIUM_MAX) is medium.c's and alloc.c's.  Under a checker nothing is
 * parked.  NO_THEAP's steal word is never 0: its mark fails. */
static ALWAYS_INLINE void *medium_malloc_fast(size_t size)
{
    struct theap *th = tls_heap;
    if (unlikely(size > SHED_MEDIUM_MAX))
        return alloc_large(size, 0);
    unsigned c = med_class_of_128[(size - 1) >> 7], n;
    if (likely(mown_mark(th)) && likely((n = RELAXED_LOAD(th->mc_n[c])) != 0)) {
        void *b = mcache_pop(th, c, n);
        mown_leave(th);
        return b;
    }
    return medium_malloc_span(th, c, size, 0);    /* th marked: it leaves */
}

static ALWAYS_INLINE void *malloc_fast(size_t size)
{
    if (likely(size <= SHED_MAX_BLOCK))
        return alloc_fast(size, (size + SHED_CLASS_STEP - 1) & ~(size_t)(SHED_CLASS_STEP - 1), 0);
    return medium_malloc_fast(size);
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

/* The owner's free of a medium block, in line: ptr starts block i of a span
 * the calling thread owns, blocks may be parked (med.park_size: no checker,
 * release not inline), and it is not parked already (its hint is 0); the
 * block is parked (the first of its class: then mcache_first_parked wakes
 * the release thread if it must), or handed to medium_free_mine_at (one too
 * many: the older half goes to the spans).  Anything else (another thread's
 * span, a bad pointer, a double free, a steal word to look at, a hint to
 * look behind) goes on to medium_free_mine_at or free_slow, which look
 * again, and report or hand the block on.  Every call is a tail call, so
 * that the small path of free() saves no registers. */
static ALWAYS_INLINE void medium_free_fast(void *ptr, const char *call)
{
    size_t off = (size_t)((char *)ptr - med.base);
    if (!(off < RELAXED_LOAD(med.park_size)))   /* 0 under a checker, or inline */
        return free_slow(ptr, call);
    struct span *s = &med.spans[off >> SPAN_SHIFT];
    struct theap *th = tls_heap;                /* never a span's owner if NO_THEAP */
    if (RELAXED_LOAD(s->owner) != th)
        return free_slow(ptr, call);
    size_t boff = off & (SPAN_BYTES - 1);
    unsigned c = s->cls, i = (unsigned)((boff * med_cls[c].magic) >> 40);
    if (unlikely((size_t)i * RELAXED_LOAD(s->size) != boff) || unlikely(i >= s->nblocks))
        return free_slow(ptr, call);
    /* after the mark, s is still th's unless a steal ran (its word is set) */
    if (unlikely(!mown_mark(th))) {
        mown_leave(th);
        return free_slow(ptr, call);
    }
    _Atomic uint8_t *hint = mcache_hint(th, ptr);
    unsigned n = RELAXED_LOAD(th->mc_n[c]);
    uint32_t units;
    if (likely(RELAXED_LOAD(*hint) == 0) &&
        likely(!(RELAXED_LOAD(s->free[i / 64]) >> (i % 64) & 1)) &&
        likely(n < med_cls[c].cap) && likely(!RELAXED_LOAD(s->sealed)) &&
        likely((units = mcache_units_with(th, c)) <= MCACHE_BUDGET_UNITS)) {
        mcache_push(th, c, n, ptr, hint, 0, units);  /* not one too many */
        if (unlikely(n == 0))
            return mcache_first_parked(th);       /* it leaves */
        mown_leave(th);
        return;
    }
    medium_free_mine_at(th, s, ptr, call);        /* th marked: it leaves */
}

/* The fast path: the calling thread owns the pool, ptr starts one of its
 * blocks, and the block is allocated (or, outside the region, the medium
 * fast path above).  A pool it does not own goes to free_other (free.c: the
 * remote free, with what was found here); anything else (NULL, a pointer
 * outside both regions, any pointer under a checker: g.fast_size is 0 then)
 * takes free_slow, which looks again, and reports or hands the block on. */
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
        return free_slow(ptr, call);
    }
    medium_free_fast(ptr, call);
}

#endif

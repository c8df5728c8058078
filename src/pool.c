/*
 * Blocks within a pool: the free bitmap the owner allocates from, and the
 * remote bitmap other threads free into.  See struct pool for the invariants.
 */
#include "shed_impl.h"


/* Make an acquired (empty) pool ready for blocks of class cls.  No lock: the
 * pool is in no one's hands, and a free racing in from another thread (a
 * stale pointer) reads the owner with acquire, so it sees either no owner or
 * every field set. */
void pool_init(struct pool *p, struct theap *owner, unsigned cls)
{
    unsigned size = (cls + 1) * SHED_CLASS_STEP, n = g.nblocks[cls];
    CHECK(RELAXED_LOAD(p->owner) == NULL, pool_addr(p));
    for (unsigned w = 0; w < g.nwords; w++)     /* remote[] is zero already */
        RELAXED_STORE(free_map(p)[w], block_bits(n, w));
    p->nblocks = (uint16_t)n;
    p->settle_at = (uint16_t)n;
    pool_set_nfree(p, n);
    p->cls = (uint8_t)cls;
    p->magic = g.magic[cls];     /* (pending is 0: struct pool_remote is not touched) */
    RELAXED_STORE(p->sealed, 0);
    pool_place(p, IN_NONE);
    p->next = p->prev = 0;
    RELAXED_STORE(p->size, (uint16_t)size);
    owner->npools++;
    atomic_store_explicit(&p->owner, owner, memory_order_release);
    pool_check(p);
}

/* Owner: merge the blocks other threads freed.  Caller holds the stripe lock.
 * A block freed remotely and then again by the owner shows up here.  Other
 * threads set remote bits meanwhile without the lock (free_remote_fast):
 * pending is cleared first and each word read, then cleared of what was read
 * with an atomic AND, so a bit set after the read stays, and its free, which
 * then sees pending 0, pushes the pool again (free.c, "Remote frees"). */
void pool_merge_remote(struct pool *p)
{
    struct pool_remote *pr = remote_of(p);
    if (atomic_load_explicit(&pr->pending, memory_order_relaxed))  /* a read leaves an */
        atomic_store(&pr->pending, 0);                             /* untouched page unmapped */
    for (unsigned w = 0, n = pool_words(p); w < n; w++) {   /* none set beyond */
        uint64_t r = atomic_load(&remote_map(p)[w]), f = RELAXED_LOAD(free_map(p)[w]);
        if (!r)
            continue;
        CHECK((r & ~block_bits(p->nblocks, w)) == 0, pool_addr(p));  /* none >= nblocks */
        if (unlikely(r & f)) {
            size_t idx = (size_t)w * 64 + (size_t)__builtin_ctzll(r & f);
            shed_error(E_DOUBLE, pool_addr(p) + idx * RELAXED_LOAD(p->size), "free");
        }
        /* free first: a reader without the stripe lock (pool_free_word)
         * then sees each block in one of the two at least */
        RELAXED_STORE(free_map(p)[w], f | r);
        atomic_fetch_and_explicit(&remote_map(p)[w], ~r, memory_order_release);
        pool_set_nfree(p, pool_nfree(p) + (unsigned)__builtin_popcountll(r & ~f));
    }
#ifdef SHED_DEBUG
    for (unsigned w = pool_words(p); w < g.nwords; w++)
        CHECK(RELAXED_LOAD(remote_map(p)[w]) == 0, pool_addr(p));
#endif
}

/* Per-class constants for the running page size.  The block index is
 * offset * magic >> 32 with magic = ceil(2^32 / size) (see block_index). */
void pool_classes_init(void)
{
    for (unsigned c = 0; c < NCLS; c++) {
        uint32_t size = (c + 1) * SHED_CLASS_STEP;
        g.magic[c] = (uint32_t)((((uint64_t)1 << 32) + size - 1) / size);
        g.nblocks[c] = (uint16_t)(g.page_size / size);
        /* A third of a pool: each refill of the current pool then serves
         * that many blocks.  A half is faster in churn (fewer refills) but
         * keeps more half-empty pools: +0.5 MB per child in bench/fork. */
        g.avail_min[c] = (uint16_t)(g.nblocks[c] / 3 > 2 ? g.nblocks[c] / 3 : 2);
    }
}

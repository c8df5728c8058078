/*
 * The allocation slow path: what malloc does when the word of the current
 * pool that its fast path (fast.h) reads has no free block.  In order: merge
 * remote frees and catch up with a freeze, a thaw or a request for the
 * release thread (theap_catch_up); another word of the current pool; the
 * head of the class's avail list; an orphaned pool; a run of pools from an
 * arena (pool_fetch).  The common case, the current pool used up and the
 * avail head taking its place, alloc_slow does itself, with no call; the
 * rest goes through alloc_slower to theap_alloc_slow.
 */
#include "fast.h"
#include "vg.h"

/* A block of th's current pool p of class cls, which has one.  Under a
 * checker fast[] keeps no block address (shed_impl.h): work it out. */
static inline void *cur_take(struct theap *th, unsigned cls, struct pool *p)
{
    struct cur_word *c = &th->fast[cls + 1], open;
    if (unlikely(g.checker)) {
        open = *c;
        open.base = cur_word_base(p, c->word);
        c = &open;
    }
    return cur_word_take(c, RELAXED_LOAD(*c->word), RELAXED_LOAD(p->size));
}

/* g.epoch moved (a freeze or a thaw), or th is new: no current pool may be
 * sealed, a thaw relists the pools that were, and the fast path may run
 * again (never under a checker, which must see every block). */
static void theap_sync(struct theap *th, unsigned epoch)
{
    for (unsigned c = 0; c < NCLS; c++) {
        struct pool *p = th->cur[c];
        if (p != NO_POOL && RELAXED_LOAD(p->sealed)) {
            list_remove(th, p);          /* no longer current, in no list */
            pool_set_aside(p);
        }
    }
    if (th->thaw_seen != RELAXED_LOAD(g.thaw_epoch))
        theap_relist(th);
    if (!g.checker)
        th->epoch = epoch;
}

/* Before the slow path picks a pool: merge remote frees, and catch up with a
 * freeze or thaw, or with free() asking for a release thread (releaser_wake
 * moves the epoch for that after a fork, or sets g.thread_due).  Out of
 * line: the pool switch below stays a leaf. */
static COLD void theap_catch_up(struct theap *th)
{
    if (atomic_load_explicit(&th->pending, memory_order_relaxed))
        theap_drain(th);
    if (RELAXED_LOAD(th->mc_steal))
        mcache_flush(th);                /* asked for: medium.c */
    unsigned epoch = atomic_load_explicit(&g.epoch, memory_order_acquire);
    if (th->epoch != epoch) {
        releaser_ensure();
        theap_sync(th, epoch);
    } else if (RELAXED_LOAD(g.thread_due)) {
        releaser_ensure();
    }
}

/* A pool of class cls from outside th's lists: an orphan, else a run of
 * pools from an arena (the first is returned, the others become spares).
 * NULL when the region is exhausted. */
static COLD struct pool *pool_fetch(struct theap *th, unsigned cls)
{
    struct pool *p, *run[POOL_RUN];
    releaser_ensure();                   /* where a thread may start: see there */
    if (!th->is_heap && (p = orphan_adopt(th, cls)))
        return p;
    size_t n = arena_acquire_pools(cls, run, POOL_RUN);
    if (!n)
        return NULL;
    while (--n > 0) {                    /* spares: the next one pops first */
        pool_init(run[n], th, cls);
        list_push(th, run[n]);
    }
    pool_init(run[0], th, cls);
    return run[0];
}

/* A block of class cls: from the current pool, else from the remote frees,
 * the other owned pools, an orphan, then a pool from an arena.  NULL when the
 * region is exhausted.  (The inline fast path tries the current pool's word
 * first.)  The common case, the current pool full and the avail head taking
 * its place, calls nothing. */
void *theap_alloc_slow(struct theap *th, unsigned cls)
{
    if (unlikely(atomic_load_explicit(&th->pending, memory_order_relaxed) != NULL) ||
        unlikely(th->epoch != atomic_load_explicit(&g.epoch, memory_order_acquire)) ||
        unlikely(RELAXED_LOAD(g.thread_due) != 0) || unlikely(RELAXED_LOAD(th->mc_steal)))
        theap_catch_up(th);
    struct pool *p = th->cur[cls];
    if (p != NO_POOL) {
        if (pool_can_take(p)) {         /* its free blocks are in another word */
            struct cur_word *c = &th->fast[cls + 1];
            cur_word_set(c, p, pool_next_word(p, (unsigned)(c->word - free_map(p))));
            pool_check(p);
            return cur_take(th, cls, p);
        }
        th->cur[cls] = NO_POOL;         /* fast[] follows below */
        pool_place(p, IN_FULL);
    }
    for (;;) {
        if ((p = th->avail[cls])) {      /* the head: its settle_at stays */
            th->avail[cls] = pool_at(p->next);
        } else if (!(p = pool_fetch(th, cls))) {
            theap_set_cur(th, cls, NO_POOL);
            return NULL;
        }
        if (unlikely(RELAXED_LOAD(p->sealed))) {  /* frozen since it was listed */
            pool_set_aside(p);
            continue;
        }
        p->where = IN_CUR;               /* from a list or none: settle_at stays */
        theap_set_cur(th, cls, p);
        pool_check(p);
        return cur_take(th, cls, p);
    }
}

/* A block from th, which the caller owns or has locked (a heap). */
void *theap_alloc(struct theap *th, size_t size)
{
    void *b = theap_alloc_slow(th, size_class(size));
    if (b && unlikely(g.checker))
        chk_alloc(b, size);
    return b;
}

/* Everything but the fast path (fast.h) and the common pool switch
 * (alloc_slow below): a checker to tell, a new theap, a new pool, or no
 * pool at all (then the system allocator serves, with the alignment asked
 * for). */
static __attribute__((noinline)) void *alloc_slower(size_t req, unsigned cls, size_t align)
{
    struct theap *th = tls_heap;
    void *b;
    if (th == NO_THEAP && !(th = theap_get()))
        return alloc_large(req, align);   /* no region */
    if (!(b = theap_alloc_slow(th, cls)))
        return alloc_large(req, align);   /* region exhausted, or no memory */
    if (unlikely(g.checker))
        chk_alloc(b, req);
    return b;
}

/* malloc's slow path.  Its common case first, the pool switch at its
 * cheapest: th is synced (th->epoch == g.epoch: a theap, no checker, no
 * freeze since), has no remote frees to merge and no release thread to
 * start, its current pool of class cls is used up (not just its word), and
 * the avail head is not sealed: that head becomes the current pool.  This
 * is what theap_alloc_slow does in that case, less what these conditions
 * make moot, and with no call (docs/performance.md, "Larson, second
 * pass"). */
void *alloc_slow(size_t req, size_t rounded, size_t align)
{
    unsigned cls = size_class(rounded);
    struct theap *th = tls_heap;
    struct cur_word *c = &th->fast[cls + 1];
    struct pool *p = c->pool, *n = th->avail[cls];
    if (unlikely(th->epoch != atomic_load_explicit(&g.epoch, memory_order_acquire)) ||
        unlikely(n == NULL) || unlikely(p == NO_POOL) || unlikely(pool_nfree(p) != 0) ||
        unlikely(RELAXED_LOAD(n->sealed)) ||
        unlikely(atomic_load_explicit(&th->pending, memory_order_relaxed) != NULL) ||
        unlikely(RELAXED_LOAD(g.thread_due) != 0))
        return alloc_slower(req, cls, align);
    pool_place(p, IN_FULL);              /* used up: settles at avail_min */
    th->avail[cls] = pool_at(n->next);   /* the head: its settle_at stays */
    n->where = IN_CUR;
    th->cur[cls] = n;
    cur_word_set(c, n, pool_first_word(n));
    pool_check(p);
    pool_check(n);
    return cur_word_take(c, RELAXED_LOAD(*c->word), RELAXED_LOAD(n->size));
}

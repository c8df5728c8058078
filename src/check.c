/*
 * The checking build (-DSHED_DEBUG, make check-debug): walks that verify the
 * invariants shed_impl.h states, called where the state they check changes
 * (pool_check, arena_check, theap_check, and for medium blocks span_check
 * and mtheap_check).  In the normal build this file is
 * empty and the calls compile to nothing.  A failed check prints one line,
 * "shed: internal check failed: <what> at <file>:<line>, pool <address>",
 * and aborts (check_failed, error.c).  The places that bend an invariant on
 * purpose are written beside it in shed_impl.h; the walks skip them here.
 */
#include "shed_impl.h"

#ifdef SHED_DEBUG

#define FAIL_UNLESS(cond, at) \
    do { if (unlikely(!(cond))) check_failed(#cond, (at), file, line); } while (0)

/* Owner (or the holder of a shared theap's lock): p's descriptor. */
void pool_check_at(struct pool *p, const char *file, int line)
{
    struct theap *o = RELAXED_LOAD(p->owner);
    /* Not in use, or a fork()ed child's inherited pool: its descriptor may
     * be as another thread of the parent left it mid-change (inherit.c). */
    if (!o || theap_inherited(o))
        return;
    const void *at = pool_addr(p);
    unsigned cls = p->cls, n = p->nblocks, nfree = 0;
    FAIL_UNLESS(cls < NCLS, at);
    FAIL_UNLESS(n == g.nblocks[cls] && p->magic == g.magic[cls], at);
    FAIL_UNLESS(RELAXED_LOAD(p->size) == (cls + 1) * SHED_CLASS_STEP, at);
    for (unsigned w = 0; w < g.nwords; w++) {
        uint64_t f = RELAXED_LOAD(free_map(p)[w]);
        FAIL_UNLESS((f & ~block_bits(n, w)) == 0, at);     /* none >= nblocks */
        nfree += (unsigned)__builtin_popcountll(f);
    }
    FAIL_UNLESS(nfree == pool_nfree(p), at);
    FAIL_UNLESS(p->where <= IN_FULL, at);
    FAIL_UNLESS((p->where == IN_CUR) == (o->cur[cls] == p), at);
    if (p->where == IN_CUR) {
        struct cur_word *c = &o->fast[cls + 1];
        size_t w = (size_t)(c->word - free_map(p));
        FAIL_UNLESS(c->pool == p && w < g.nwords, at);
        /* under a checker, no block address (shed_impl.h) */
        FAIL_UNLESS(c->base == (g.checker ? NULL : pool_addr(p) + w * 64 * (cls + 1) * SHED_CLASS_STEP),
                    at);
    }
    if (p->where == IN_AVAIL)
        FAIL_UNLESS(nfree > 0, at);
    if (p->where != IN_FULL) {
        FAIL_UNLESS(p->settle_at == n, at);
        /* nfree == settle_at only all free: a spare, or a current pool
         * that theap_settle keeps. */
        FAIL_UNLESS(p->to_settle >= -1, at);
    } else if (p->settle_at == n) {
        /* Sealed when placed, and unsealed since only by a thaw that the
         * owner relists after (theap_relist). */
        FAIL_UNLESS(RELAXED_LOAD(p->sealed) || o->thaw_seen != RELAXED_LOAD(g.thaw_epoch) ||
                    o->shared, at);
        FAIL_UNLESS(p->to_settle >= 0, at);
    } else {
        FAIL_UNLESS(p->settle_at == g.avail_min[cls], at);
        /* Fewer than avail_min free, but in the orphanage while its remote
         * frees wait to be merged (orphan_adopt). */
        FAIL_UNLESS(p->to_settle >= 0 || o == g.orphanage, at);
    }
}

/* Owner: th's current pools and avail lists.  empty: th should own none. */
void theap_check_at(struct theap *th, bool empty, const char *file, int line)
{
    if (theap_inherited(th))
        return;
    size_t listed = 0;
    for (unsigned c = 0; c < NCLS; c++) {
        struct pool *p = th->cur[c];
        if (p != NO_POOL) {
            FAIL_UNLESS(RELAXED_LOAD(p->owner) == th && p->cls == c, pool_addr(p));
            pool_check_at(p, file, line);
            listed++;
        } else {
            FAIL_UNLESS(th->fast[c + 1].pool == NO_POOL, th);
        }
        for (p = th->avail[c]; p; p = pool_at(p->next)) {
            FAIL_UNLESS(RELAXED_LOAD(p->owner) == th && p->cls == c, pool_addr(p));
            FAIL_UNLESS(p->where == IN_AVAIL, pool_addr(p));
            FAIL_UNLESS(!p->next || pool_at(p->next)->prev == pool_ref(p), pool_addr(p));
            pool_check_at(p, file, line);
            listed++;
        }
    }
    FAIL_UNLESS(listed <= th->npools, th);
    if (empty)
        FAIL_UNLESS(th->npools == 0, th);
}

/* Caller holds g.lock: arena a's masks are one state per carved pool, and
 * its count and bucket places follow from them. */
static void arena_check_one(struct arena *a, const char *file, int line)
{
    char *base = g.region + ((size_t)a->index * POOLS_PER_ARENA << g.page_shift);
    uint64_t u = a->used, d = a->dirty, r = a->releasing, f = a->released;
    uint64_t two = (u & d) | (u & r) | (u & f) | (d & r) | (d & f) | (r & f);
    uint64_t bad = two | ~(u | d | r | f) | (a->held & ~r) | (a->sealed & ~(u | d | r)) |
                   ((u | d | (r & ~a->held)) & ~a->touched);
    /* the first pool whose bits are wrong, else the arena's first */
    const void *at = base + ((size_t)(bad ? __builtin_ctzll(bad) : 0) << g.page_shift);
    FAIL_UNLESS(((u & d) | (u & r) | (u & f) | (d & r) | (d & f) | (r & f)) == 0, at);
    FAIL_UNLESS((u | d | r | f) == ~0ull, at);
    FAIL_UNLESS((a->held & ~r) == 0, at);
    FAIL_UNLESS((a->sealed & ~(u | d | r)) == 0, at);
    FAIL_UNLESS(((u | d | (r & ~a->held)) & ~a->touched) == 0, at);
    FAIL_UNLESS(a->nused == __builtin_popcountll(u), at);
    FAIL_UNLESS(a->bucket[B_DIRTY] == ((d & ~a->sealed) ? a->nused : -1), at);
    FAIL_UNLESS(a->bucket[B_RELEASED] == (f ? a->nused : -1), at);
    FAIL_UNLESS(!(g.dirty_arenas[a->index / 64] >> (a->index % 64) & 1) == !d, at);
}

/* Caller holds g.lock: the arena of pool p. */
void arena_check_pool_at(const struct pool *p, const char *file, int line)
{
    arena_check_one(&g.arenas[pool_index(p) / POOLS_PER_ARENA], file, line);
}

/* Caller holds g.lock: every carved arena, and the counts against the
 * masks (the in-use count per class from the descriptors' classes, which
 * arena_acquire_pools sets under the lock). */
void arena_check_at(const char *file, int line)
{
    size_t n[4] = { 0 }, per_class[NCLS] = { 0 };
    for (size_t i = g.first_arena; i < g.narenas; i++) {   /* carved */
        struct arena *a = &g.arenas[i];
        FAIL_UNLESS(a->index == i, g.region + (i * POOLS_PER_ARENA << g.page_shift));
        arena_check_one(a, file, line);
        n[0] += (size_t)__builtin_popcountll(a->used);
        n[1] += (size_t)__builtin_popcountll(a->dirty);
        n[2] += (size_t)__builtin_popcountll(a->releasing);
        n[3] += (size_t)__builtin_popcountll(a->released);
        for (uint64_t m = a->used; m; m &= m - 1) {
            struct pool *p = desc_of(i * POOLS_PER_ARENA + (size_t)__builtin_ctzll(m));
            unsigned cls = p->cls;
            FAIL_UNLESS(cls < NCLS, pool_addr(p));
            per_class[cls]++;
        }
    }
    const void *at = g.region;
    FAIL_UNLESS(g.npools_used == n[0] && g.npools_dirty == n[1], at);
    FAIL_UNLESS(g.npools_releasing == n[2] && g.npools_released == n[3], at);
    for (unsigned c = 0; c < NCLS; c++)
        FAIL_UNLESS(g.class_pools[c] == per_class[c], at);
}

/* ---- spans (medium blocks) ---- */

static inline char *span_start(const struct span *s)
{
    return med.base + ((size_t)(s - med.spans) << SPAN_SHIFT);
}

/* The owner (or the holder of a shared theap's lock), not holding s's
 * stripe lock: s's descriptor against the invariants of struct span.  The
 * stripe lock is taken to read owner, pending and remote[] as one.  An
 * owned span: free[] and remote[] have no bit at or above nblocks, nfree is
 * popcount(free[]), the owner's pages and live[] counts are those the
 * blocks not free in free[] touch (a block freed remotely, not merged, or
 * held in the quarantine is still live there), where is IN_CUR iff it is
 * its owner's current span, and remote[] is empty unless the span is on a
 * pending stack.  (free[] and remote[] may share a bit while it is pending:
 * a program's double free, by another thread then by the owner, which the
 * merge reports.)  Unowned: remote[], pending, owned and live[] all zero. */
void span_check_at(struct span *s, const char *file, int line)
{
    const void *at = span_start(s);
    FAIL_UNLESS(s >= med.spans && (size_t)(s - med.spans) < RELAXED_LOAD(med.ncarved), at);
    struct slock *m = &g.stripes[(size_t)(s - med.spans) % NSTRIPES].m;
    slock_lock(m);
    struct theap *o = RELAXED_LOAD(s->owner);
    uint8_t pending = s->pending;
    uint64_t remote[SPAN_WORDS];
    for (unsigned w = 0; w < SPAN_WORDS; w++)
        remote[w] = RELAXED_LOAD(s->remote[w]);
    slock_unlock(m);
    /* A fork()ed child's inherited span: as the parent's threads left it. */
    if (o && theap_inherited(o))
        return;
    uint64_t owned = RELAXED_LOAD(s->owned);
    FAIL_UNLESS((owned & ~med.all_pages) == 0, at);
    if (!o) {
        for (unsigned w = 0; w < SPAN_WORDS; w++)
            FAIL_UNLESS(remote[w] == 0, at);
        FAIL_UNLESS(pending == 0 && owned == 0, at);
        for (unsigned j = 0; j < 64; j++)
            FAIL_UNLESS(s->live[j] == 0, at);
        return;
    }
    unsigned n = s->nblocks, nfree = 0;
    size_t size = RELAXED_LOAD(s->size);
    FAIL_UNLESS(s->cls < MED_NCLS && size >= SHED_MAX_BLOCK + 1 && size <= SHED_MEDIUM_MAX, at);
    FAIL_UNLESS(n == SPAN_BYTES / size && n <= SPAN_WORDS * 64, at);
    bool any_remote = false;
    for (unsigned w = 0; w < SPAN_WORDS; w++) {
        uint64_t f = RELAXED_LOAD(s->free[w]);
        FAIL_UNLESS((f & ~block_bits(n, w)) == 0, at);           /* none >= nblocks */
        FAIL_UNLESS((remote[w] & ~block_bits(n, w)) == 0, at);
        nfree += (unsigned)__builtin_popcountll(f);
        any_remote |= remote[w] != 0;
    }
    FAIL_UNLESS(nfree == s->nfree, at);
    FAIL_UNLESS(!any_remote || pending, at);                       /* merged when not */
    /* the pages' counts and the owner's pages, from the blocks not free */
    uint8_t live[64] = { 0 };
    uint64_t own = 0;
    for (unsigned i = 0; i < n; i++) {
        if (RELAXED_LOAD(s->free[i / 64]) >> (i % 64) & 1)
            continue;
        unsigned first = (unsigned)((size_t)i * size >> g.page_shift);
        unsigned last = (unsigned)(((size_t)i * size + size - 1) >> g.page_shift);
        live[first]++;
        if (last != first)
            live[last]++;
        for (unsigned j = first; j <= last; j++)
            own |= 1ull << j;
    }
    for (unsigned j = 0; j < 64; j++)
        FAIL_UNLESS(s->live[j] == live[j], (const char *)at + ((size_t)j << g.page_shift));
    FAIL_UNLESS(owned == own, at);
    FAIL_UNLESS(s->where <= IN_FULL, at);
    FAIL_UNLESS((s->where == IN_CUR) == (o->mcur[s->cls] == s), at);
    if (s->where == IN_AVAIL)
        FAIL_UNLESS(s->nfree > 0, at);
}

/* Owner: th's current spans and avail lists (every span on them owned by
 * th, of its class, placed as listed).  empty: th should own none.  The
 * theap keeps descriptors (in med.spans), never an address in the medium
 * region ("No block addresses"). */
void mtheap_check_at(struct theap *th, bool empty, const char *file, int line)
{
    if (theap_inherited(th) || !med.base)
        return;
    size_t listed = 0;
    for (unsigned c = 0; c < MED_NCLS; c++) {
        struct span *s = th->mcur[c];
        if (s) {
            FAIL_UNLESS(!in_medium(s), th);
            FAIL_UNLESS(RELAXED_LOAD(s->owner) == th && s->cls == c, span_start(s));
            FAIL_UNLESS(s->where == IN_CUR, span_start(s));
            span_check_at(s, file, line);
            listed++;
        }
        uint32_t prev = 0;
        for (uint32_t ref = th->mavail[c]; ref; ref = med.spans[ref - 1].next) {
            s = &med.spans[ref - 1];
            FAIL_UNLESS(RELAXED_LOAD(s->owner) == th && s->cls == c, span_start(s));
            FAIL_UNLESS(s->where == IN_AVAIL && s->prev == prev, span_start(s));
            span_check_at(s, file, line);
            prev = ref;
            listed++;
            FAIL_UNLESS(listed <= th->nspans, th);
        }
    }
    FAIL_UNLESS(listed <= th->nspans, th);
    if (empty)
        FAIL_UNLESS(th->nspans == 0, th);
}

#endif /* SHED_DEBUG */

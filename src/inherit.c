/*
 * The child of fork().  Every pool in use was the parent's, and its page of
 * descriptors is still shared with the parent: writing one descriptor copies
 * a page.  So the child takes no pool over at fork.  Each theap that was live
 * (every thread's, the forking thread's too, and the orphanage, which a
 * fresh one replaces) becomes "inherited" (g.gen moves on, and the old
 * orphanage is g.orphanage_inherited, so that no theap's page is written
 * to say so): it keeps
 * its pools, nobody allocates from them, and a free into one of them sets a
 * bit in the inherit map (imap, one bit per block, written only in the child)
 * instead of the descriptor.  The forking thread starts a new theap.
 * theap_reclaim_inherited later rebuilds each inherited pool from its
 * bitmaps and hands it to the orphanage (or back to its arena when empty).
 */
#include <sys/mman.h>

#include "shed_impl.h"

/* Inherited frees that make the reclaim worth its copies of descriptor
 * pages: one per 512 bytes of inherited pools, on average (8 per pool of
 * 4 KiB, 32 per pool of 16 KiB: the same share of a pool's blocks whatever
 * the page size). */
#define INHERIT_RECLAIM_SHIFT 9

static size_t inherit_reclaim_frees(size_t pools)
{
    return pools << (g.page_shift - INHERIT_RECLAIM_SHIFT);
}

/* Map the inherit map (struct imap) for the arenas carved at the fork, and
 * write its header only: each arena's chunk is laid out at its first
 * inherited free (imap_lay_out).  Room for the worst case, every pool of
 * every arena inherited with nwords words; NULL when it cannot be mapped
 * or its offsets would not fit base[]. */
static struct imap *imap_new(void)
{
    size_t head = (sizeof(struct imap) + g.narenas * sizeof(uint32_t) + 63) & ~(size_t)63;
    size_t chunk = IMAP_POS_BYTES + POOLS_PER_ARENA * g.nwords * sizeof(uint64_t);
    size_t bytes = head + g.narenas * chunk;
    if (bytes > UINT32_MAX)
        return NULL;
    struct imap *m = os_map(bytes);
    if (!m)
        return NULL;
    m->bytes = bytes;
    m->narenas = g.narenas;
    m->next = head;
    return m;
}

/* p's words in the map, laying out its arena's chunk first if it has none:
 * a place for each pool of the arena an inherited theap owns (which stays
 * so until the reclaim; the child's own pools there are not).  Under g.lock
 * (below the caller's stripe lock in the lock order), one layout at a time;
 * the offset is published last, with release, for imap_of's readers. */
static _Atomic uint64_t *imap_lay_out(struct pool *p)
{
    struct imap *m = g.imap;
    size_t a = pool_index(p) / POOLS_PER_ARENA;
    pthread_mutex_lock(&g.lock);
    if (!RELAXED_LOAD(m->base[a])) {
        char *chunk = (char *)m + m->next;
        _Atomic uint16_t *pos = (_Atomic uint16_t *)chunk;
        unsigned off = 0;                 /* < 64 * nwords: fits pos */
        for (uint64_t used = g.arenas[a].used; used; used &= used - 1) {
            unsigned j = (unsigned)__builtin_ctzll(used);
            struct pool *q = desc_of(a * POOLS_PER_ARENA + j);
            struct theap *th = RELAXED_LOAD(q->owner);
            if (th && theap_inherited(th)) {
                RELAXED_STORE(pos[j], (uint16_t)(off + 1));
                off += pool_words(q);
            }
        }
        m->next += IMAP_POS_BYTES + off * sizeof(uint64_t);
        atomic_store_explicit(&m->base[a], (uint32_t)(chunk - (char *)m), memory_order_release);
    }
    pthread_mutex_unlock(&g.lock);
    return imap_of(p);
}

/* In the atfork child handler, single-threaded.  The other threads may have
 * stopped in the middle of anything that needs no lock (a free, a list
 * update, a drain), so nothing of theirs is trusted until the reclaim
 * rebuilds it from the bitmaps.  A pool some thread was taking from an
 * arena, not owned yet, goes back now (read-only elsewhere: no copies). */
void inherit_fork_child(void)
{
    g.in_fork_child = true;
    if (g.imap) {                         /* a child's child: the last fork's */
        theap_reclaim_inherited();        /* pools first, then its map goes */
        os_unmap(g.imap, g.imap->bytes);
        g.imap = NULL;
    }
    /* The orphanage's pools are the parent's too: adopting one, or merging
     * its remote frees, would write the parent's pages.  It is inherited
     * like the threads' theaps, and a fresh one takes its place. */
    struct theap *o = g.orphanage, *fresh;
    if ((o->npools || o->nspans) && (fresh = theap_new(true))) {
        RELAXED_STORE(g.orphanage_inherited, o);   /* o's page stays shared */
        g.orphanage = fresh;
        RELAXED_STORE(g.norphans, 0);
    }
    RELAXED_STORE(g.gen, RELAXED_LOAD(g.gen) + 1);   /* the live theaps are
                                                         inherited now */
    size_t n = 0;
    for (size_t a = 0; a < g.narenas; a++) {
        for (uint64_t used = g.arenas[a].used; used; used &= used - 1) {
            struct pool *p = desc_of(a * POOLS_PER_ARENA + (size_t)__builtin_ctzll(used));
            struct theap *th = RELAXED_LOAD(p->owner);
            if (!th)
                arena_return_pool(p);     /* taken but never set up */
            else if (theap_inherited(th))
                n++;
        }
    }
    RELAXED_STORE(g.inherit_frees, 0);
    RELAXED_STORE(g.inherit_pools, n);
    if (n && !(g.imap = imap_new()))
        theap_reclaim_inherited();        /* no map: take the pools over now */
    else if (n)
        g.fork_arenas = g.narenas;        /* new pools from new arenas */
    /* The forking thread starts afresh.  Its key still names the theap
     * now inherited, which theap_exit leaves alone (a call here would be
     * one more page of libc's code for the child to fault in). */
    tls_heap = NO_THEAP;
    g.in_fork_child = false;
}

/* A free into a pool of an inherited theap, under the pool's stripe lock,
 * the block known allocated: mark it in the imap. */
void inherit_free(struct pool *p, size_t idx)
{
    _Atomic uint64_t *w = imap_of(p);
    if (!w)                               /* the arena's first */
        w = imap_lay_out(p);              /* inherited: it has words */
    w += idx / 64;
    RELAXED_STORE(*w, RELAXED_LOAD(*w) | 1ull << (idx % 64));
    inherit_count_frees(1);
}

/* n more frees into inherited blocks (a medium block counts one per 512
 * bytes): ask for a reclaim when they reach the threshold. */
void inherit_count_frees(size_t n)
{
    size_t before = RELAXED_ADD(g.inherit_frees, n);
    size_t at = inherit_reclaim_frees(RELAXED_LOAD(g.inherit_pools));
    if (before < at && before + n >= at)
        releaser_collect_soon();          /* worth a reclaim now */
}

/* If p is an inherited pool, take it over (caller holds g.orphan_lock, so
 * nobody else changes its owner): merge its remote and inherited frees,
 * recount, and give it to the orphanage, or back to its arena when empty. */
static bool reclaim_pool(struct pool *p, void *arg)
{
    (void)arg;
    struct theap *th = RELAXED_LOAD(p->owner);
    if (!th || !theap_inherited(th))
        return false;                     /* free, or the child's own */
    struct theap *o = g.orphanage;
    struct slock *m = stripe_of(p);
    slock_lock(m);                        /* against frees into it */
    pool_merge_remote(p);
    _Atomic uint64_t *im = g.imap ? imap_of(p) : NULL;
    unsigned nfree = 0;
    for (unsigned w = 0; w < pool_words(p); w++) {
        uint64_t f = RELAXED_LOAD(free_map(p)[w]) | (im ? RELAXED_LOAD(im[w]) : 0);
        RELAXED_STORE(free_map(p)[w], f);
        nfree += (unsigned)__builtin_popcountll(f);
    }
    if (im)                               /* its bits are in free[] now */
        RELAXED_STORE(*imap_pos(p), 0);
    pool_set_nfree(p, nfree);
    pool_place(p, IN_NONE);
    bool empty = nfree == p->nblocks;
    if (!empty) {
        RELAXED_STORE(p->owner, o);
        th->npools--;
        o->npools++;
    }
    slock_unlock(m);
    if (empty)
        pool_retire(p);
    else
        orphanage_place(p);
    return false;
}

/* Hand every pool of the inherited theaps to the orphanage, then recycle
 * those theaps.  Safe with other threads running: an inherited pool is only
 * ever freed into (under its stripe lock), and a pool that is not inherited
 * is left alone. */
void theap_reclaim_inherited(void)
{
    pthread_mutex_lock(&g.orphan_lock);
    if (RELAXED_LOAD(g.inherit_pools) == 0) {
        pthread_mutex_unlock(&g.orphan_lock);
        return;
    }
    used_pools_each(reclaim_pool, NULL);
    medium_reclaim_inherited();
    pthread_mutex_lock(&g.theap_lock);
    for (struct theap *th = g.theaps; th; th = th->all_next) {
        if (theap_inherited(th)) {
            theap_clear(th);
            RELAXED_STORE(th->gen, THEAP_NO_GEN);
            if (th == RELAXED_LOAD(g.orphanage_inherited))
                RELAXED_STORE(g.orphanage_inherited, NULL);
            th->live = false;
            th->free_next = g.theap_free;
            g.theap_free = th;
        }
    }
    pthread_mutex_unlock(&g.theap_lock);
    theap_check(g.orphanage, false);
    RELAXED_STORE(g.inherit_pools, 0);
    RELAXED_STORE(g.inherit_frees, 0);
    arena_fork_done();                    /* the parent's arenas are ours now */
    pthread_mutex_unlock(&g.orphan_lock);
}

/* The release thread and shed_trim: reclaim once enough inherited blocks
 * were freed (or always, for force: shed_trim, shed_thaw). */
void inherited_collect(bool force)
{
    size_t n = RELAXED_LOAD(g.inherit_pools);
    if (n && (force ? RELAXED_LOAD(g.inherit_frees) > 0
                    : RELAXED_LOAD(g.inherit_frees) >= inherit_reclaim_frees(n)))
        theap_reclaim_inherited();
}


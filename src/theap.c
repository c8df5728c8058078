/*
 * Thread heaps: which pools a thread owns, how it gets more, how blocks freed
 * by other threads come back to it, and where its pools go when it exits.
 *
 * A theap keeps, per class, a current pool (blocks come from it) and a list
 * of other pools with free blocks; "full" pools are on no list at all (so a
 * pool filling up costs no list operation), and are found again through
 * their descriptor when blocks are freed.  Lists change only in the owning
 * thread (or, for the orphanage, under g.orphan_lock), so none of this needs
 * atomics but the pending stack.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>

#include "shed_impl.h"
#include "vg.h"

__thread struct theap *tls_heap __attribute__((tls_model("initial-exec"))) = NO_THEAP;

/* ---- owner's lists ---- */

/* A fast[] slot with no pool behind it: its word (NO_POOL's) is zero. */
static void cur_word_clear(struct cur_word *c)
{
    *c = (struct cur_word){ .word = free_map(NO_POOL), .pool = NO_POOL };
}

/* Make p (or NO_POOL) the current pool of class cls, and point malloc's
 * fast path at p's first word with a free block. */
static inline void theap_set_cur(struct theap *th, unsigned cls, struct pool *p)
{
    struct cur_word *c = &th->fast[cls + 1];
    th->cur[cls] = p;
    if (p == NO_POOL) {
        cur_word_clear(c);
    } else {
        unsigned w = pool_first_word(p);
        c->word = &free_map(p)[w];
        c->base = pool_addr(p) + (size_t)w * 64 * LOAD(p->size);
        c->pool = p;
    }
}

static void list_push(struct theap *th, struct pool *p)
{
    pool_place(p, IN_AVAIL);
    struct pool **head = &th->avail[p->cls];
    p->next = pool_ref(*head);
    if (*head)
        (*head)->prev = pool_ref(p);
    *head = p;
}

/* Take p out of whatever place it has in th (current pool or a list).  The
 * head's prev link is never read, so taking the head leaves the next pool's
 * descriptor alone (it may be a cache line the owner has not touched lately). */
static void list_remove(struct theap *th, struct pool *p)
{
    if (p->where == IN_CUR) {
        theap_set_cur(th, p->cls, NO_POOL);
    } else if (p->where == IN_AVAIL) {
        struct pool **head = &th->avail[p->cls];
        if (*head == p) {
            *head = pool_at(p->next);
        } else {
            pool_at(p->prev)->next = p->next;
            if (p->next)
                pool_at(p->next)->prev = p->prev;
        }
    }
    pool_place(p, IN_NONE);
}

/* ---- theap life cycle ---- */

/* A theap that owns no pool: no current pool, empty lists. */
static void theap_clear(struct theap *th)
{
    for (unsigned c = 0; c < NCLS; c++) {
        theap_set_cur(th, c, NO_POOL);
        th->avail[c] = NULL;
    }
    th->npools = 0;
    cur_word_clear(&th->fast[0]);    /* malloc(0)'s slot: always the slow path */
    atomic_store(&th->pending, NULL);
}

struct theap *theap_new(bool shared)
{
    pthread_mutex_lock(&g.theap_lock);
    struct theap *th = g.theap_free;
    if (th) {
        g.theap_free = th->free_next;
    } else {
        th = os_map(sizeof *th);     /* never freed: remote frees may read it */
        if (th) {
            th->all_next = g.theaps;
            g.theaps = th;
        }
    }
    if (th) {
        theap_clear(th);
        th->shared = shared;
        th->live = true;
        th->thaw_seen = LOAD(g.thaw_epoch);
        th->epoch = 1;               /* odd: never g.epoch, so not yet synced */
    }
    pthread_mutex_unlock(&g.theap_lock);
    return th;
}

/* The calling thread's theap, made on first use; NULL when shed has no region
 * (the caller then falls back to the system allocator). */
struct theap *theap_get(void)
{
    struct theap *th = tls_heap;
    if (likely(th != NO_THEAP))
        return th;
    if (!shed_ready() || !(th = theap_new(false)))
        return NULL;
    tls_heap = th;
    pthread_setspecific(g.key, th);   /* so theap_exit runs at thread exit */
    return th;
}

/* A theap with no pools left goes back on the free list. */
void theap_recycle(struct theap *th)
{
    pthread_mutex_lock(&g.theap_lock);
    th->is_heap = false;
    th->live = false;
    th->free_next = g.theap_free;
    g.theap_free = th;
    pthread_mutex_unlock(&g.theap_lock);
}

/* Thread exit (pthread key destructor): hand the pools to the orphanage. */
static void theap_exit(void *arg)
{
    struct theap *th = arg;
    tls_heap = NO_THEAP;
    theap_abandon(th);
    theap_recycle(th);
}

int theap_setup(void)
{
    if (pthread_key_create(&g.key, theap_exit) != 0)
        return -1;
    g.orphanage = theap_new(true);
    return g.orphanage ? 0 : -1;
}

/* ---- giving pools back ---- */

/* p is empty and out of every list: back to its arena, then per the policy.
 * bulk: one of many that go back together (a thread's exit, a heap's
 * destruction, shed_trim), which the caller releases in one pass after
 * (release_retired), rather than with a system call each. */
static void pool_retire_as(struct pool *p, bool bulk)
{
    pthread_mutex_t *m = stripe_of(p);
    LOAD(p->owner)->npools--;
    pthread_mutex_lock(m);
    STORE(p->owner, NULL);
    pthread_mutex_unlock(m);
    arena_return_pool(p);
    if (g.in_fork_child || bulk)  /* no thread starts in an atfork handler */
        return;
    switch (LOAD(g.opt.release)) {
    case REL_INLINE:
        release_pool_now(p);
        break;
    case REL_BATCHED:
        releaser_kick(p);
        break;
    default:
        break;
    }
}

static void pool_retire(struct pool *p)
{
    pool_retire_as(p, false);
}

/* p, out of th's lists, was sealed (shed_freeze): it gives no more blocks.
 * Empty (a spare pool, or a current one whose blocks were all freed), it goes
 * back to its arena now, since no free will come to retire it; else it waits
 * on no list until its blocks are freed. */
static void pool_set_aside(struct pool *p)
{
    if (pool_nfree(p) == p->nblocks)
        pool_retire(p);
    else
        pool_place(p, IN_FULL);
}

/* After p gained free blocks: retire it if empty (a current pool stays, but
 * for inline release), or put it back on the avail list. */
void theap_settle(struct theap *th, struct pool *p)
{
    if (pool_nfree(p) == p->nblocks) {
        if (p->where == IN_CUR && LOAD(g.opt.release) != REL_INLINE)
            return;
        list_remove(th, p);
        pool_retire(p);
    } else if (p->where == IN_FULL) {
        if (pool_nfree(p) >= g.avail_min[p->cls] && !LOAD(p->sealed))
            list_push(th, p);
        else
            pool_place(p, IN_FULL);    /* sealed meanwhile: settle when empty */
    }
}

/* Merge the remote frees of every pool on th's pending stack. */
void theap_drain(struct theap *th)
{
    struct pool *p = atomic_exchange_explicit(&th->pending, NULL, memory_order_acquire);
    while (p) {
        struct pool *next = cold_of(p)->pnext;  /* read before pending is cleared */
        pthread_mutex_t *m = stripe_of(p);
        pthread_mutex_lock(m);
        pool_merge_remote(p);
        pthread_mutex_unlock(m);
        theap_settle(th, p);
        p = next;
    }
}

/* Retire th's empty pools: current ones and spares (shed_trim, whose
 * release pass follows). */
void theap_flush_empty(struct theap *th)
{
    theap_drain(th);
    for (unsigned c = 0; c < NCLS; c++) {
        struct pool *p = th->cur[c], *next;
        if (p != NO_POOL && pool_nfree(p) == p->nblocks) {
            list_remove(th, p);
            pool_retire_as(p, true);
        }
        for (p = th->avail[c]; p; p = next) {
            next = pool_at(p->next);
            if (pool_nfree(p) == p->nblocks) {
                list_remove(th, p);
                pool_retire_as(p, true);
            }
        }
    }
}

/* Move p from th to the theap to; false when p has remote frees waiting on
 * th's pending stack (the caller drains and tries again). */
static bool pool_transfer(struct theap *th, struct pool *p, struct theap *to)
{
    pthread_mutex_t *m = stripe_of(p);
    pthread_mutex_lock(m);
    bool ok = !cold_of(p)->pending;
    if (ok)
        STORE(p->owner, to);
    pthread_mutex_unlock(m);
    if (ok) {
        list_remove(th, p);
        th->npools--;
        to->npools++;
    }
    return ok;
}

/* Call fn on every pool in use, as the arenas' masks show it a mask at a
 * time (the arena lock is not held while fn runs: fn may move the pool),
 * until fn returns true. */
static void used_pools_each(bool (*fn)(struct pool *, void *), void *arg)
{
    pthread_mutex_lock(&g.lock);
    size_t narenas = g.narenas;
    pthread_mutex_unlock(&g.lock);
    for (size_t a = 0; a < narenas; a++) {
        pthread_mutex_lock(&g.lock);
        uint64_t used = g.arenas[a].used;
        pthread_mutex_unlock(&g.lock);
        for (; used; used &= used - 1)
            if (fn(desc_of(a * POOLS_PER_ARENA + (size_t)__builtin_ctzll(used)), arg))
                return;
    }
}

struct full_walk {
    struct theap *th;
    void (*fn)(struct theap *, struct pool *, void *);
    void *arg;
    size_t left;                 /* full pools of th not seen yet */
};

static bool full_pool(struct pool *p, void *arg)
{
    struct full_walk *w = arg;
    if (LOAD(p->owner) == w->th && p->where == IN_FULL) {
        w->fn(w->th, p, w->arg);
        w->left--;
    }
    return w->left == 0;
}

/* Call fn on every pool th owns: current, on an avail list, or on no list
 * (found by a walk over the arenas' in-use masks, which stops once it has
 * found them all: a thread that exits owning none walks nothing).  fn may
 * move the pool. */
static void theap_for_each_pool(struct theap *th,
                                void (*fn)(struct theap *, struct pool *, void *), void *arg)
{
    size_t owned = th->npools, listed = 0;
    for (unsigned c = 0; c < NCLS; c++) {
        if (th->cur[c] != NO_POOL) {
            fn(th, th->cur[c], arg);
            listed++;
        }
        for (struct pool *p = th->avail[c], *next; p; p = next) {
            next = pool_at(p->next);
            fn(th, p, arg);
            listed++;
        }
    }
    struct full_walk w = { th, fn, arg, owned - listed };
    if (w.left > 0)
        used_pools_each(full_pool, &w);
}

static void relist_pool(struct theap *th, struct pool *p, void *arg)
{
    (void)arg;
    if (p->where == IN_FULL && pool_nfree(p) > 0 && !LOAD(p->sealed))
        list_push(th, p);
    else if (p->where == IN_FULL)
        pool_place(p, IN_FULL);          /* unsealed: settle at avail_min */
}

/* After shed_thaw(): pools that were sealed go back on the avail lists, so
 * that their free blocks are used again. */
void theap_relist(struct theap *th)
{
    th->thaw_seen = LOAD(g.thaw_epoch);
    theap_for_each_pool(th, relist_pool, NULL);
}

/* p, just handed to the orphanage (caller holds g.orphan_lock): on its avail
 * list when it has blocks to give, else on no list. */
static void orphanage_place(struct pool *p)
{
    if (pool_nfree(p) && !LOAD(p->sealed))
        list_push(g.orphanage, p);
    else
        pool_place(p, IN_FULL);
    ADD(g.norphans, 1);
}

struct abandon {
    bool left;                   /* a pool had remote frees pending */
    size_t retired;              /* pools gone back to their arenas */
};

/* Move one pool of th to the orphanage, or back to its arena when empty. */
static void abandon_pool(struct theap *th, struct pool *p, void *arg)
{
    struct abandon *a = arg;
    struct theap *o = g.orphanage;
    if (pool_nfree(p) == p->nblocks) {
        list_remove(th, p);
        pool_retire_as(p, true);
        a->retired++;
    } else if (pool_transfer(th, p, o)) {
        orphanage_place(p);
    } else {
        a->left = true;
    }
}

/* Hand every pool of th to the orphanage (thread exit, or the other threads'
 * theaps in a fork()ed child). */
void theap_abandon(struct theap *th)
{
    pthread_mutex_lock(&g.orphan_lock);
    struct abandon a = { true, 0 };
    while (a.left) {
        a.left = false;
        theap_drain(th);
        theap_for_each_pool(th, abandon_pool, &a);
        if (a.left)
            sched_yield();
    }
    pthread_mutex_unlock(&g.orphan_lock);
    release_retired(a.retired);
}

/* Tell memcheck that the live blocks of p are gone. */
static void vg_free_live(struct pool *p)
{
    for (size_t i = 0; i < p->nblocks; i++)
        if (!block_is_free(p, i))
            chk_free_early(pool_addr(p) + i * LOAD(p->size));
}

static void destroy_pool(struct theap *th, struct pool *p, void *arg)
{
    (void)arg;
    if (unlikely(g.valgrind))
        vg_free_live(p);
    /* A retired pool has no remote bits and is on no pending stack.  Only
     * what is set is cleared: a page of struct cold never touched stays so. */
    for (unsigned w = 0; w < g.nwords; w++)
        if (LOAD(remote_map(p)[w]))
            STORE(remote_map(p)[w], 0);
    if (cold_of(p)->pending)
        cold_of(p)->pending = 0;
    chk_noaccess(pool_addr(p), g.page_size);
    list_remove(th, p);
    pool_retire_as(p, true);
}

/* shed_heap_destroy: every pool of the heap goes back, live blocks or not.
 * Caller holds the heap's lock; frees racing with it are reported. */
void theap_destroy_pools(struct theap *th)
{
    theap_drain(th);
    size_t owned = th->npools;           /* destroy_pool retires them all */
    theap_for_each_pool(th, destroy_pool, NULL);
    /* Pools pushed for remote frees meanwhile are retired already. */
    atomic_store(&th->pending, NULL);
    release_retired(owned);
}

/*
 * The child of fork().  Every pool in use was the parent's, and its page of
 * descriptors is still shared with the parent: writing one descriptor copies
 * a page.  So the child takes no pool over at fork.  Each theap that was live
 * (every thread's, the forking thread's too) becomes "inherited": it keeps
 * its pools, nobody allocates from them, and a free into one of them sets a
 * bit in the inherit map (imap, one bit per block, written only in the child)
 * instead of the descriptor.  The forking thread starts a new theap.
 * theap_reclaim_inherited later rebuilds each inherited pool from its
 * bitmaps and hands it to the orphanage (or back to its arena when empty).
 */

/* Inherited frees that make the reclaim worth its copies of descriptor
 * pages: one per 512 bytes of inherited pools, on average (8 per pool of
 * 4 KiB, 32 per pool of 16 KiB: the same share of a pool's blocks whatever
 * the page size). */
#define INHERIT_RECLAIM_SHIFT 9

static size_t inherit_reclaim_frees(size_t pools)
{
    return pools << (g.page_shift - INHERIT_RECLAIM_SHIFT);
}

/* Map and lay out the inherit map (struct imap) for the pools of the
 * inherited theaps; NULL when it cannot be mapped.  The mapping has room for
 * nwords words per pool, but only the pages of base and pos are written
 * here, and those of the words as frees come: packed, they take a bit per
 * block. */
static struct imap *imap_build(void)
{
    size_t npools = g.narenas * POOLS_PER_ARENA;
    size_t head = sizeof(struct imap) + g.narenas * sizeof(uint32_t) + npools * sizeof(uint16_t);
    head = (head + 63) & ~(size_t)63;
    size_t bytes = head + npools * g.nwords * sizeof(uint64_t);
    struct imap *m = os_map(bytes);
    if (!m)
        return NULL;
    m->bytes = bytes;
    m->npools = npools;
    m->base = (uint32_t *)(m + 1);
    m->pos = (uint16_t *)(m->base + g.narenas);
    m->words = (_Atomic uint64_t *)((char *)m + head);
    uint32_t next = 0;
    for (size_t a = 0; a < g.narenas; a++) {
        unsigned off = 0;                 /* < 64 * nwords: fits pos */
        m->base[a] = next;
        for (uint64_t used = g.arenas[a].used; used; used &= used - 1) {
            size_t i = a * POOLS_PER_ARENA + (size_t)__builtin_ctzll(used);
            struct pool *p = desc_of(i);
            struct theap *th = LOAD(p->owner);
            if (th && LOAD(th->inherited)) {
                m->pos[i] = (uint16_t)(off + 1);
                off += pool_words(p);
            }
        }
        next += off;
    }
    return m;
}

/* In the atfork child handler, single-threaded.  The other threads may have
 * stopped in the middle of anything that needs no lock (a free, a list
 * update, a drain), so nothing of theirs is trusted until the reclaim
 * rebuilds it from the bitmaps.  A pool some thread was taking from an
 * arena, not owned yet, goes back now (read-only elsewhere: no copies). */
void theap_fork_child(void)
{
    g.in_fork_child = true;
    if (g.imap) {                         /* a child's child: the last fork's */
        theap_reclaim_inherited();        /* pools first, then its map goes */
        munmap(g.imap, g.imap->bytes);
        g.imap = NULL;
    }
    for (struct theap *th = g.theaps; th; th = th->all_next)
        if (th->live && !th->shared)
            STORE(th->inherited, true);
    size_t n = 0;
    for (size_t a = 0; a < g.narenas; a++) {
        for (uint64_t used = g.arenas[a].used; used; used &= used - 1) {
            struct pool *p = desc_of(a * POOLS_PER_ARENA + (size_t)__builtin_ctzll(used));
            struct theap *th = LOAD(p->owner);
            if (!th)
                arena_return_pool(p);     /* taken but never set up */
            else if (LOAD(th->inherited))
                n++;
        }
    }
    STORE(g.inherit_frees, 0);
    STORE(g.inherit_pools, n);
    if (n && !(g.imap = imap_build()))
        theap_reclaim_inherited();        /* no map: take the pools over now */
    tls_heap = NO_THEAP;                  /* the forking thread starts afresh */
    pthread_setspecific(g.key, NULL);
    g.in_fork_child = false;
}

/* A free into a pool of an inherited theap, under the pool's stripe lock,
 * the block known allocated: mark it in the imap. */
static void inherit_free(struct pool *p, size_t idx)
{
    _Atomic uint64_t *w = &imap_of(p)[idx / 64];   /* inherited: it has words */
    STORE(*w, LOAD(*w) | 1ull << (idx % 64));
    size_t n = ADD(g.inherit_frees, 1) + 1;
    if (n == inherit_reclaim_frees(LOAD(g.inherit_pools)))
        releaser_collect_soon();          /* worth a reclaim now */
}

/* If p is an inherited pool, take it over (caller holds g.orphan_lock, so
 * nobody else changes its owner): merge its remote and inherited frees,
 * recount, and give it to the orphanage, or back to its arena when empty. */
static bool reclaim_pool(struct pool *p, void *arg)
{
    (void)arg;
    struct theap *th = LOAD(p->owner);
    if (!th || !LOAD(th->inherited))
        return false;                     /* free, or the child's own */
    struct theap *o = g.orphanage;
    pthread_mutex_t *m = stripe_of(p);
    pthread_mutex_lock(m);                /* against frees into it */
    pool_merge_remote(p);
    _Atomic uint64_t *im = g.imap ? imap_of(p) : NULL;
    unsigned nfree = 0;
    for (unsigned w = 0; w < pool_words(p); w++) {
        uint64_t f = LOAD(free_map(p)[w]) | (im ? LOAD(im[w]) : 0);
        STORE(free_map(p)[w], f);
        nfree += (unsigned)__builtin_popcountll(f);
    }
    if (im)                               /* its bits are in free[] now */
        g.imap->pos[pool_index(p)] = 0;
    pool_set_nfree(p, nfree);
    pool_place(p, IN_NONE);
    bool empty = nfree == p->nblocks;
    if (!empty) {
        STORE(p->owner, o);
        th->npools--;
        o->npools++;
    }
    pthread_mutex_unlock(m);
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
    if (LOAD(g.inherit_pools) == 0) {
        pthread_mutex_unlock(&g.orphan_lock);
        return;
    }
    used_pools_each(reclaim_pool, NULL);
    pthread_mutex_lock(&g.theap_lock);
    for (struct theap *th = g.theaps; th; th = th->all_next) {
        if (LOAD(th->inherited)) {
            theap_clear(th);
            STORE(th->inherited, false);
            th->live = false;
            th->free_next = g.theap_free;
            g.theap_free = th;
        }
    }
    pthread_mutex_unlock(&g.theap_lock);
    STORE(g.inherit_pools, 0);
    STORE(g.inherit_frees, 0);
    pthread_mutex_unlock(&g.orphan_lock);
}

/* The release thread and shed_trim: reclaim once enough inherited blocks
 * were freed (or always, for force: shed_trim, shed_thaw). */
void inherited_collect(bool force)
{
    size_t n = LOAD(g.inherit_pools);
    if (n && (force ? LOAD(g.inherit_frees) > 0
                    : LOAD(g.inherit_frees) >= inherit_reclaim_frees(n)))
        theap_reclaim_inherited();
}

/* Take an orphaned pool with free blocks of class cls, if there is one. */
static struct pool *orphan_adopt(struct theap *th, unsigned cls)
{
    if (LOAD(g.norphans) == 0 || pthread_mutex_trylock(&g.orphan_lock) != 0)
        return NULL;
    struct theap *o = g.orphanage;
    theap_drain(o);
    struct pool *p;
    while ((p = o->avail[cls]) && !pool_transfer(o, p, th)) {
        list_remove(o, p);               /* remote frees raced in: later */
        pool_place(p, IN_FULL);
    }
    if (p)
        ADD(g.norphans, (size_t)-1);
    pthread_mutex_unlock(&g.orphan_lock);
    return p;
}

/* Let the orphanage notice remote frees, so its emptied pools get released. */
void orphanage_collect(void)
{
    if (LOAD(g.norphans) == 0)
        return;
    pthread_mutex_lock(&g.orphan_lock);
    theap_drain(g.orphanage);
    pthread_mutex_unlock(&g.orphan_lock);
}

/* ---- allocation slow path ---- */

/* A block of th's current pool p of class cls, which has one. */
static inline void *cur_take(struct theap *th, unsigned cls, struct pool *p)
{
    struct cur_word *c = &th->fast[cls + 1];
    return cur_word_take(c, LOAD(*c->word), LOAD(p->size));
}

/* g.epoch moved (a freeze or a thaw), or th is new: no current pool may be
 * sealed, a thaw relists the pools that were, and the fast path may run
 * again (never under a checker, which must see every block). */
static void theap_sync(struct theap *th, unsigned epoch)
{
    for (unsigned c = 0; c < NCLS; c++) {
        struct pool *p = th->cur[c];
        if (p != NO_POOL && LOAD(p->sealed)) {
            theap_set_cur(th, c, NO_POOL);
            pool_set_aside(p);
        }
    }
    if (th->thaw_seen != LOAD(g.thaw_epoch))
        theap_relist(th);
    if (!g.checker)
        th->epoch = epoch;
}

/* Before the slow path picks a pool: merge remote frees, and catch up with a
 * freeze or thaw, or with free() asking for a release thread (releaser_wake
 * moves the epoch for that).  Out of line: the pool switch below stays a
 * leaf. */
static COLD void theap_catch_up(struct theap *th)
{
    if (atomic_load_explicit(&th->pending, memory_order_relaxed))
        theap_drain(th);
    unsigned epoch = atomic_load_explicit(&g.epoch, memory_order_acquire);
    if (th->epoch != epoch) {
        releaser_ensure();
        theap_sync(th, epoch);
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
        unlikely(th->epoch != atomic_load_explicit(&g.epoch, memory_order_acquire)))
        theap_catch_up(th);
    struct pool *p = th->cur[cls];
    if (p != NO_POOL) {
        if (pool_can_take(p)) {         /* its free blocks are in another word */
            theap_set_cur(th, cls, p);
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
        if (unlikely(LOAD(p->sealed))) {  /* frozen since it was listed */
            pool_set_aside(p);
            continue;
        }
        p->where = IN_CUR;               /* from a list or none: settle_at stays */
        theap_set_cur(th, cls, p);
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

/* ---- frees from a thread that does not own the pool ---- */

void free_remote(struct pool *p, size_t idx, unsigned size, void *ptr, const char *call)
{
    uint64_t bit = 1ull << (idx % 64);
    pthread_mutex_t *m = stripe_of(p);
    pthread_mutex_lock(m);
    /* Re-check under the lock: the pool may have been retired meanwhile. */
    if (!atomic_load_explicit(&p->owner, memory_order_acquire) || LOAD(p->size) != size ||
        block_is_free(p, idx)) {
        pthread_mutex_unlock(m);
        shed_error(E_DOUBLE, ptr, call);
        return;
    }
    if (unlikely(LOAD(LOAD(p->owner)->inherited))) {
        inherit_free(p, idx);
        pthread_mutex_unlock(m);
        return;
    }
    _Atomic uint64_t *r = &remote_map(p)[idx / 64];
    STORE(*r, LOAD(*r) | bit);
    bool wake = false;
    if (!cold_of(p)->pending) {
        struct theap *o = LOAD(p->owner);
        wake = o->shared;
        cold_of(p)->pending = 1;
        cold_of(p)->pnext = atomic_load_explicit(&o->pending, memory_order_relaxed);
        while (!atomic_compare_exchange_weak_explicit(&o->pending, &cold_of(p)->pnext, p,
                                                      memory_order_release,
                                                      memory_order_relaxed))
            ;
    }
    pthread_mutex_unlock(m);
    if (wake)
        releaser_collect_soon();
}

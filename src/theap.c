/*
 * Thread heaps: which pools a thread owns and in which list, a theap's life
 * cycle, and how pools leave it (settling after frees, retiring empty pools,
 * merging remote frees, walking every pool it owns).  Where the blocks come
 * from when the current pool is used up is slow.c; a fork()ed child's
 * inherited pools are inherit.c; the pools of exited threads, orphan.c.
 *
 * A theap keeps, per class, a current pool (blocks come from it) and a list
 * of other pools with free blocks; "full" pools are on no list at all (so a
 * pool filling up costs no list operation), and are found again through
 * their descriptor when blocks are freed.  Lists change only in the owning
 * thread (or, for the orphanage, under g.orphan_lock), so none of this needs
 * atomics but the pending stack.
 */
#include "shed_impl.h"
#include "vg.h"

__thread struct theap *tls_heap __attribute__((tls_model("initial-exec"))) = NO_THEAP;

/* ---- owner's lists ---- */

/* p, placed IN_AVAIL, goes on top of th's avail list of its class. */
static inline void list_link(struct theap *th, struct pool *p)
{
    struct pool **head = &th->avail[p->cls];
    p->next = pool_ref(*head);
    if (*head)
        (*head)->prev = pool_ref(p);
    *head = p;
}

void list_push(struct theap *th, struct pool *p)
{
    CHECK(pool_nfree(p) > 0, pool_addr(p));      /* a listed pool has free blocks */
    pool_place(p, IN_AVAIL);
    list_link(th, p);
}

/* Take p out of whatever place it has in th (current pool or a list).  The
 * head's prev link is never read, so taking the head leaves the next pool's
 * descriptor alone (it may be a cache line the owner has not touched lately). */
void list_remove(struct theap *th, struct pool *p)
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
void theap_clear(struct theap *th)
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
        /* never freed: remote frees may read it */
        th = g.theap_nspare_used < THEAP_SPARE ? g.theap_spare[g.theap_nspare_used++]
                                               : os_map(sizeof *th);
        if (th) {
            th->all_next = g.theaps;
            g.theaps = th;
        }
    }
    if (th) {
        theap_clear(th);
        th->shared = shared;
        th->live = true;
        RELAXED_STORE(th->gen, shared ? THEAP_NO_GEN : RELAXED_LOAD(g.gen));
        th->thaw_seen = RELAXED_LOAD(g.thaw_epoch);
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
    RELAXED_STORE(th->gen, THEAP_NO_GEN);
    th->free_next = g.theap_free;
    g.theap_free = th;
    pthread_mutex_unlock(&g.theap_lock);
}

/* The system allocator's requests counted in theaps (struct theap's nlarge):
 * every theap ever made, recycled ones too, keeps its count. */
uint64_t theaps_large_allocs(void)
{
    uint64_t n = 0;
    pthread_mutex_lock(&g.theap_lock);
    for (struct theap *th = g.theaps; th; th = th->all_next)
        n += RELAXED_LOAD(th->nlarge);
    pthread_mutex_unlock(&g.theap_lock);
    return n;
}

/* Thread exit (pthread key destructor): hand the pools to the orphanage. */
static void theap_exit(void *arg)
{
    struct theap *th = arg;
    if (th != tls_heap)
        return;    /* a fork()ed child's thread that never allocated: the
                      parent's theap, inherited (inherit_fork_child) */
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
void pool_retire_as(struct pool *p, bool bulk)
{
    struct slock *m = stripe_of(p);
    CHECK(RELAXED_LOAD(p->owner) != NULL, pool_addr(p));
    pool_check(p);                    /* before it is another's to change */
    CHECK(bulk || pool_nfree(p) == p->nblocks, pool_addr(p)); /* live blocks: a heap, in bulk */
    RELAXED_LOAD(p->owner)->npools--;
    slock_lock(m);
    RELAXED_STORE(p->owner, NULL);
    /* seq_cst: a lock-free remote free that ORed its bit after this sees
     * life move (free.c, "Remote frees") */
    atomic_fetch_add(&p->life, 1);
    slock_unlock(m);
    arena_return_pool(p);
    if (g.in_fork_child || bulk)  /* no thread starts in an atfork handler */
        return;
    switch (RELAXED_LOAD(g.opt.release)) {
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

void pool_retire(struct pool *p)
{
    pool_retire_as(p, false);
}

/* p, out of th's lists, was sealed (shed_freeze): it gives no more blocks.
 * Empty (a spare pool, or a current one whose blocks were all freed), it goes
 * back to its arena now, since no free will come to retire it; else it waits
 * on no list until its blocks are freed. */
void pool_set_aside(struct pool *p)
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
    unsigned nfree = pool_nfree(p);
    /* The common case first: a used-up pool got avail_min blocks back (its
     * to_settle went negative at settle_at == avail_min). */
    if (likely(p->where == IN_FULL) && likely(nfree < p->nblocks) &&
        likely(nfree >= g.avail_min[p->cls]) && likely(!RELAXED_LOAD(p->sealed))) {
        pool_place(p, IN_AVAIL);       /* list_push, its check made above */
        list_link(th, p);
        return pool_check(p);
    }
    if (nfree == p->nblocks) {
        if (p->where == IN_CUR && RELAXED_LOAD(g.opt.release) != REL_INLINE)
            return pool_check(p);
        list_remove(th, p);
        pool_retire(p);                /* which checks p first */
    } else if (p->where == IN_FULL) {
        pool_place(p, IN_FULL);        /* sealed meanwhile: settle when empty */
        pool_check(p);
    } else {
        pool_check(p);
    }
}

/* Merge the remote frees of every pool on th's pending stack. */
void theap_drain(struct theap *th)
{
    if (atomic_load_explicit(&th->mpending, memory_order_relaxed))
        medium_drain(th);                /* spans: medium.c */
    struct pool *p = atomic_exchange_explicit(&th->pending, NULL, memory_order_acquire);
    while (p) {
        struct pool *next = remote_of(p)->pnext;  /* read before pending is cleared */
        struct slock *m = stripe_of(p);
        slock_lock(m);
        pool_merge_remote(p);
        slock_unlock(m);
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
    theap_check(th, false);
}

/* Move p from th to the theap to; false when p has remote frees waiting on
 * th's pending stack (the caller drains and tries again). */
bool pool_transfer(struct theap *th, struct pool *p, struct theap *to)
{
    struct slock *m = stripe_of(p);
    slock_lock(m);
    bool ok = !atomic_load_explicit(&remote_of(p)->pending, memory_order_relaxed);
    if (ok)
        RELAXED_STORE(p->owner, to);
    slock_unlock(m);
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
void used_pools_each(bool (*fn)(struct pool *, void *), void *arg)
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
    if (RELAXED_LOAD(p->owner) == w->th && p->where == IN_FULL) {
        w->fn(w->th, p, w->arg);
        w->left--;
    }
    return w->left == 0;
}

/* Call fn on every pool th owns: current, on an avail list, or on no list
 * (found by a walk over the arenas' in-use masks, which stops once it has
 * found them all: a thread that exits owning none walks nothing).  fn may
 * move the pool. */
void theap_for_each_pool(struct theap *th,
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
    if (p->where == IN_FULL && pool_nfree(p) > 0 && !RELAXED_LOAD(p->sealed))
        list_push(th, p);
    else if (p->where == IN_FULL)
        pool_place(p, IN_FULL);          /* unsealed: settle at avail_min */
}

/* After shed_thaw(): pools that were sealed go back on the avail lists, so
 * that their free blocks are used again. */
void theap_relist(struct theap *th)
{
    th->thaw_seen = RELAXED_LOAD(g.thaw_epoch);
    theap_for_each_pool(th, relist_pool, NULL);
    theap_check(th, false);
}

static void destroy_pool(struct theap *th, struct pool *p, void *arg)
{
    (void)arg;
    if (unlikely(g.checker))
        quarantine_destroy_pool(p);   /* memcheck hears that its blocks are gone */
    /* A retired pool has no remote bits and is on no pending stack.  Only
     * what is set is cleared: a page of struct pool_remote never touched stays so. */
    for (unsigned w = 0; w < g.nwords; w++)
        if (RELAXED_LOAD(remote_map(p)[w]))
            RELAXED_STORE(remote_map(p)[w], 0);
    if (atomic_load_explicit(&remote_of(p)->pending, memory_order_relaxed))
        atomic_store_explicit(&remote_of(p)->pending, 0, memory_order_relaxed);
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
    theap_check(th, true);
    release_retired(owned);
}

bool theap_fork_busy(void)
{
    for (int i = 0; i < NSTRIPES; i++)
        if (slock_held(&g.stripes[i].m))
            return true;
    return mutex_held(&g.theap_lock);
}

/* fork(): the theap list's lock, then every stripe lock (they guard pool
 * ownership and remote frees), in index order. */
void theap_fork_prepare(void)
{
    pthread_mutex_lock(&g.theap_lock);
    for (int i = 0; i < NSTRIPES; i++)
        slock_lock(&g.stripes[i].m);
}

void theap_fork_parent(void)
{
    for (int i = 0; i < NSTRIPES; i++)
        slock_unlock(&g.stripes[i].m);
    pthread_mutex_unlock(&g.theap_lock);
}

void theap_fork_child(void)
{
    fork_child_unlock(&g.theap_lock);
    for (int i = 0; i < NSTRIPES; i++)
        slock_init(&g.stripes[i].m);
}

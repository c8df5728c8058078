/*
 * The orphanage: a shared theap, under g.orphan_lock, that takes the pools a
 * thread still owns when it exits (and, in a fork()ed child, the inherited
 * pools once reclaimed: inherit.c).  Its empty pools go back to their arenas;
 * the others wait on its avail lists until a thread that needs a pool of
 * their class adopts one (before carving a fresh one), or until remote frees
 * empty them (orphanage_collect, from the release thread).
 */
#include <sched.h>

#include "shed_impl.h"

/* p, just handed to the orphanage (caller holds g.orphan_lock): on its avail
 * list when it has blocks to give, else on no list. */
void orphanage_place(struct pool *p)
{
    if (pool_nfree(p) && !RELAXED_LOAD(p->sealed))
        list_push(g.orphanage, p);
    else
        pool_place(p, IN_FULL);
    pool_check(p);
    RELAXED_ADD(g.norphans, 1);
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
    theap_check(th, true);
    theap_check(g.orphanage, false);
    medium_abandon(th);
    pthread_mutex_unlock(&g.orphan_lock);
    release_retired(a.retired);
}

/* Take an orphaned pool with free blocks of class cls, if there is one. */
struct pool *orphan_adopt(struct theap *th, unsigned cls)
{
    if (RELAXED_LOAD(g.norphans) == 0 || pthread_mutex_trylock(&g.orphan_lock) != 0)
        return NULL;
    struct theap *o = g.orphanage;
    theap_drain(o);
    struct pool *p;
    while ((p = o->avail[cls]) && !pool_transfer(o, p, th)) {
        list_remove(o, p);               /* remote frees raced in: later */
        pool_place(p, IN_FULL);
    }
    if (p)
        RELAXED_ADD(g.norphans, (size_t)-1);
    pthread_mutex_unlock(&g.orphan_lock);
    return p;
}

/* Let the orphanage notice remote frees, so its emptied pools get released. */
void orphanage_collect(void)
{
    if (RELAXED_LOAD(g.norphans) == 0)
        return;
    pthread_mutex_lock(&g.orphan_lock);
    theap_drain(g.orphanage);
    pthread_mutex_unlock(&g.orphan_lock);
}

/* fork(): the orphanage's lock, held across it. */
MUTEX_FORK_HOOKS(orphan, g.orphan_lock)

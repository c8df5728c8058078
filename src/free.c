/*
 * shed_free, and what its fast path (fast.h: the owner's free, a few bit
 * operations on the pool's descriptor) leaves to the slow one.  The freed
 * block itself is never written.
 */
#include "fast.h"
#include "vg.h"

/* A block the checkers have seen to: the owner's free, or the remote one. */
static inline void free_block(void *ptr, const char *call, struct pool *p, size_t idx,
                              unsigned size, struct theap *owner)
{
    struct theap *th = tls_heap;
    if (unlikely(owner != th))           /* never NO_THEAP */
        return free_remote(p, idx, size, ptr, call);
    if (unlikely(!owner_free(th, p, idx)))
        shed_error(E_DOUBLE, ptr, call);
}

/* A block of the system allocator, or a pointer that is not shed's. */
static __attribute__((noinline)) void free_foreign(void *ptr)
{
    if (ptr) {
        heap_take_large(ptr);       /* a heap's large block leaves its set */
        sys_free(ptr);
        sys_heap_freed();
    }
}

/* A pointer inside the region: check it, then free the block.  checked:
 * tell ASan, once the block is known good, and hold the block in the
 * quarantine (quarantine.c) rather than give it back now. */
static inline __attribute__((always_inline)) void free_in_region(void *ptr, const char *call,
                                                                 bool checked)
{
    struct pool *p;
    size_t idx;
    unsigned size;
    struct theap *owner;
    int err = block_locate(ptr, &p, &idx, &size, &owner);
    if (unlikely(err >= 0))
        return shed_error(err, ptr, call);
    if (checked) {
        if (block_is_free(p, idx))
            return shed_error(E_DOUBLE, ptr, call);
        chk_free(ptr, size);
        if (quarantine_put(ptr, size, call))
            return;
    }
    free_block(ptr, call, p, idx, size, owner);
}

/* A block leaving the quarantine, checked when it was freed. */
void free_now(void *ptr, const char *call)
{
    if (!in_region(ptr))
        return medium_free_now(ptr, call);
    free_in_region(ptr, call, false);
}

/* Under valgrind or ASan: memcheck hears of the free first, so that it
 * reports a bad one at the caller's line; ASan poisons the block after. */
static __attribute__((noinline)) void free_checked(void *ptr, const char *call)
{
    chk_free_early(ptr);
    free_in_region(ptr, call, true);
}

/*
 * Remote frees.  A thread frees block idx of a pool that another theap owns
 * by setting the block's bit in the pool's remote bitmap with an atomic OR,
 * with no lock; only the push of the pool onto its owner's pending stack,
 * once until the owner merges, takes the pool's stripe lock (remote_publish).
 * The owner's merge (pool_merge_remote, under the stripe lock) clears
 * pending first, then takes the bits it read out of the remote words with
 * an atomic AND.  All four accesses that pair up are sequentially
 * consistent: a free's OR then its load of pending, the merge's store of
 * pending then its read of the words.  So a free that sees pending 1 set
 * its bit before the merge cleared pending, and that merge (or an earlier
 * one) takes the bit; a free that sees pending 0 takes the lock and pushes
 * the pool unless its bit is gone (merged) or pending is 1 again (another
 * free pushed it).  No valid free is lost, and a pool is on at most one
 * stack (pending is set under the lock, only when it was 0).
 *
 * Double frees.  The OR's old value tells a block freed twice remotely
 * (nothing changed: it only reports).  A block the owner holds free (its
 * free[] bit), or one an inherited pool holds (a fork()ed child: g.gen is 0
 * in a process that never forked, g.imap set only in a child), goes to the
 * locked free_remote, which checks again under the lock and reports.  A
 * block freed remotely and then by its owner is caught at the merge (r & f),
 * as before.
 *
 * Retirement.  A valid free's block is live until its bit is merged, so its
 * pool cannot be retired (all blocks free in free[]) before that, and its
 * owner changes only by pool_transfer, which waits for pending to be 0: the
 * pool is pushed to the theap that owns it then, read under the lock.  Once
 * merged, the pool may be retired at once, even before the free's next
 * instruction.  A bad free races with retirement when the block was freed
 * by another hand between its checks and its OR, and the pool retired too:
 * the OR may land in a retired pool.  pool_retire_as bumps the pool's life
 * under the stripe lock (sequentially consistent), and the free read life
 * before the owner (free_other) and reads it again after its OR: when it
 * moved, the free takes the lock (remote_publish) whatever pending says.
 * There, an owner of NULL means the pool is retired: the bit still set is
 * the bad free's (nothing merges a retired pool), cleared and reported; a
 * bit already gone was merged before the retirement (a valid free).  An
 * owner again means a new life: the bit, if set, is pushed to it, and its
 * merge reports it if the block is free there (r & f).  Left open: a bad
 * free whose bit lands in the pool's next life after its new owner has
 * handed that block out (the retirement, the arena and the new owner all
 * between the bad free's checks and its OR, a few instructions) marks a
 * live block free unreported; the locked free before this path had its own
 * window for such races (a pool retired while on a pending stack).  A bad
 * free whose OR came before the retirement leaves a bit that the owner's
 * merge reports (r & f) if the pool is pending, as with the locked free.
 * test_errors' remote cases and test/internal/test_remote cover the paths.
 */
/* Under p's stripe lock, p not pending: mark it pending and push it on
 * owner o's pending stack.  True when o is shared (a heap's, or an exited
 * thread's), whose pools the release thread collects. */
static bool pending_push(struct pool *p, struct theap *o)
{
    struct pool_remote *pr = remote_of(p);
    atomic_store_explicit(&pr->pending, 1, memory_order_relaxed);
    pr->pnext = atomic_load_explicit(&o->pending, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&o->pending, &pr->pnext, p,
                                                  memory_order_release, memory_order_relaxed))
        ;
    return o->shared;
}

__attribute__((noinline)) void remote_publish(struct pool *p, unsigned w, uint64_t bit, void *ptr,
                                              const char *call)
{
    struct slock *m = stripe_of(p);
    _Atomic uint64_t *r = &remote_map(p)[w];
    struct pool_remote *pr = remote_of(p);
    slock_lock(m);
    struct theap *o = RELAXED_LOAD(p->owner);
    bool set = (atomic_load_explicit(r, memory_order_relaxed) & bit) != 0;
    if (unlikely(o == NULL)) {
        if (!set) {                  /* merged, then the pool was retired */
            slock_unlock(m);
            return;
        }
        /* retired with the bit set: nobody merges a retired pool, and its
         * retirement found every block free, so whoever set the bit freed
         * a free block */
        atomic_fetch_and_explicit(r, ~bit, memory_order_relaxed);
        slock_unlock(m);
        return shed_error(E_DOUBLE, ptr, call);
    }
    bool wake = set && !atomic_load_explicit(&pr->pending, memory_order_relaxed) &&
                pending_push(p, o);
    slock_unlock(m);
    if (wake)
        releaser_collect_soon();
}

/* Block idx of p, which another theap owned when free_other read p's life
 * (then the owner, with acquire): see "Remote frees" above. */
static void free_remote_fast(struct pool *p, size_t idx, unsigned life, void *ptr,
                             const char *call)
{
    unsigned w = (unsigned)(idx / 64);
    uint64_t bit = 1ull << (idx % 64);
    if (unlikely(RELAXED_LOAD(free_map(p)[w]) & bit) || unlikely(RELAXED_LOAD(g.gen) != 0) ||
        unlikely(g.imap != NULL))
        return free_remote(p, idx, RELAXED_LOAD(p->size), ptr, call);
    _Atomic uint64_t *r = &remote_map(p)[w];
    if (unlikely(atomic_fetch_or(r, bit) & bit))
        return shed_error(E_DOUBLE, ptr, call);  /* freed remotely, not merged yet */
    if (likely(atomic_load(&p->life) == life) && likely(atomic_load(&remote_of(p)->pending)))
        return;
    remote_publish(p, w, bit, ptr, call);
}

/* What the fast path (fast.h) did not take: NULL, a pointer outside the
 * region, any pointer under a checker, and every bad pointer (a block
 * another thread owns goes to free_other). */
void free_slow(void *ptr, const char *call)
{
    if (!in_region(ptr))
        return in_medium(ptr) ? medium_free(ptr, call) : free_foreign(ptr);
    if (g.checker)
        return free_checked(ptr, call);
    free_in_region(ptr, call, false);
}

/* The fast path found ptr's pool p (ptr at offset off in the region, no
 * checker) owned by another theap, or by none: a remote free, found as the
 * fast path found it, not again through block_locate; anything odd goes
 * the whole way (free_slow). */
void free_other(void *ptr, const char *call, struct pool *p, size_t off)
{
    size_t i;
    unsigned life = atomic_load(&p->life);   /* before owner: "Remote frees" above */
    struct theap *o = atomic_load_explicit(&p->owner, memory_order_acquire);
    if (likely(o != NULL) && likely(o != tls_heap) &&
        likely(block_index(off & g.page_mask, p->magic, &i)) &&
        likely((uint16_t)i < p->nblocks))    /* i < 2^13: see block_index */
        return free_remote_fast(p, i, life, ptr, call);
    free_slow(ptr, call);
}

void shed_free_impl(void *ptr, const char *call)
{
    free_fast(ptr, call);
}

void chk_alloc(void *block, size_t size)
{
    VALGRIND_MALLOCLIKE_BLOCK(block, size, 0, 0);
    ASAN_UNPOISON_MEMORY_REGION(block, size);
}

void chk_free_early(void *block)
{
    (void)block;                 /* with -DNVALGRIND, the request is empty */
    VALGRIND_FREELIKE_BLOCK(block, 0);
}

void chk_free(void *block, size_t usable)
{
    (void)block, (void)usable;
    ASAN_POISON_MEMORY_REGION(block, usable);
}

void chk_noaccess(void *addr, size_t len)
{
    VG(VALGRIND_MAKE_MEM_NOACCESS(addr, len));
    ASAN_POISON_MEMORY_REGION(addr, len);
}

/* Under memcheck: [addr, addr + len) of a metadata table is in use (used)
 * or not yet (carved later).  memcheck's leak check reads every word of a
 * defined mapping, where it skips no-access memory 64 KiB at a time: 1 GiB of
 * descriptor tables cost seconds per leak check while defined. */
void chk_table(void *addr, size_t len, bool used)
{
    (void)addr, (void)len;       /* with -DNVALGRIND, the requests are empty */
    if (!g.valgrind)
        return;
    if (used)
        VALGRIND_MAKE_MEM_DEFINED(addr, len);
    else
        VALGRIND_MAKE_MEM_NOACCESS(addr, len);
}

EXPORT void shed_free(void *ptr)
{
    free_fast(ptr, "shed_free");
}

/* A block of a pool another theap owns, the locked way (free_remote_fast
 * takes the common case without the lock): under the pool's stripe lock,
 * check it, set its bit in the remote bitmap and push the pool (once) on the
 * owner's pending stack, which the owner drains when it next needs blocks
 * (theap_drain).  The owner's bitmap is not written: it is the owner's. */
void free_remote(struct pool *p, size_t idx, unsigned size, void *ptr, const char *call)
{
    uint64_t bit = 1ull << (idx % 64);
    struct slock *m = stripe_of(p);
    slock_lock(m);
    /* Re-check under the lock: the pool may have been retired meanwhile. */
    if (!atomic_load_explicit(&p->owner, memory_order_acquire) ||
        RELAXED_LOAD(p->size) != size ||
        block_is_free(p, idx)) {
        slock_unlock(m);
        shed_error(E_DOUBLE, ptr, call);
        return;
    }
    if (unlikely(theap_inherited(RELAXED_LOAD(p->owner)))) {
        inherit_free(p, idx);
        slock_unlock(m);
        return;
    }
    /* an OR: lock-free frees (free_remote_fast) set other bits meanwhile */
    atomic_fetch_or(&remote_map(p)[idx / 64], bit);
    bool wake = !atomic_load_explicit(&remote_of(p)->pending, memory_order_relaxed) &&
                pending_push(p, RELAXED_LOAD(p->owner));
    slock_unlock(m);
    if (wake)
        releaser_collect_soon();
}

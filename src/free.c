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

/* What the fast path (fast.h) did not take: NULL, a pointer outside the
 * region, any pointer under a checker, a block another thread owns, and
 * every bad pointer. */
void free_slow(void *ptr, const char *call)
{
    size_t off = (size_t)((char *)ptr - g.region), i;
    if (off >= g.region_size)            /* !in_region(ptr) */
        return in_medium(ptr) ? medium_free(ptr, call) : free_foreign(ptr);
    /* A block of a pool another thread owns, the common case here: found
     * as the fast path found it, not again through block_locate (no
     * checker: g.fast_size is 0 under one).  free_remote re-checks the
     * owner and size under the stripe lock; anything odd goes the whole
     * way below. */
    if (likely(off < g.fast_size)) {
        struct pool *p = desc_at(off);
        struct theap *o = atomic_load_explicit(&p->owner, memory_order_acquire);
        if (likely(o != NULL) && likely(o != tls_heap) &&
            likely(block_index(off & g.page_mask, p->magic, &i)) &&
            likely((uint16_t)i < p->nblocks))   /* i < 2^13: see block_index */
            return free_remote(p, i, RELAXED_LOAD(p->size), ptr, call);
    }
    if (g.checker)
        return free_checked(ptr, call);
    free_in_region(ptr, call, false);
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

/* A block of a pool another theap owns: under the pool's stripe lock, set
 * its bit in the remote bitmap and push the pool (once) on the owner's
 * pending stack, which the owner drains when it next needs blocks
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
    _Atomic uint64_t *r = &remote_map(p)[idx / 64];
    RELAXED_STORE(*r, RELAXED_LOAD(*r) | bit);
    bool wake = false;
    if (!remote_of(p)->pending) {
        struct theap *o = RELAXED_LOAD(p->owner);
        wake = o->shared;
        remote_of(p)->pending = 1;
        remote_of(p)->pnext = atomic_load_explicit(&o->pending, memory_order_relaxed);
        while (!atomic_compare_exchange_weak_explicit(&o->pending, &remote_of(p)->pnext, p,
                                                      memory_order_release,
                                                      memory_order_relaxed))
            ;
    }
    slock_unlock(m);
    if (wake)
        releaser_collect_soon();
}

/*
 * shed_free: the owner's free is a few bit operations on the pool's metadata;
 * the freed block itself is never written.
 */
#include "shed_impl.h"
#include "vg.h"

/* The owner frees block i of p: false, with nothing changed, when the block
 * is free already.  The remote bitmap is not read here (another cache line):
 * a block freed by another thread and again by its owner is caught at the
 * merge. */
static inline bool owner_free(struct theap *th, struct pool *p, size_t i)
{
    _Atomic uint64_t *f = &free_map(p)[i / 64];
    uint64_t bit = 1ull << (i % 64), word = LOAD(*f);
    if (unlikely(word & bit))
        return false;
    STORE(*f, word | bit);
    if (unlikely(++p->nfree >= p->settle_at))
        theap_settle(th, p);
    return true;
}

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
    }
}

/* A pointer inside the region: check it, then free the block.  checked:
 * tell ASan, once the block is known good. */
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
    if (checked)
        chk_free(ptr, size);
    free_block(ptr, call, p, idx, size, owner);
}

/* Under valgrind or ASan: memcheck hears of the free first, so that it
 * reports a bad one at the caller's line; ASan poisons the block after. */
static __attribute__((noinline)) void free_checked(void *ptr, const char *call)
{
    chk_free_early(ptr);
    free_in_region(ptr, call, true);
}

/* The careful path, for what the fast path did not take. */
static __attribute__((noinline)) void free_slow(void *ptr, const char *call)
{
    free_in_region(ptr, call, false);
}

/* NULL, a pointer outside the region, or any pointer under a checker
 * (g.fast_size is 0 then). */
static __attribute__((noinline)) void free_other(void *ptr, const char *call)
{
    if (!in_region(ptr))
        return free_foreign(ptr);
    if (g.checker)
        return free_checked(ptr, call);
    free_slow(ptr, call);
}

/* The fast path: the calling thread owns the pool, ptr starts one of its
 * blocks, and the block is allocated.  Anything else takes free_slow, which
 * looks again, and reports or hands the block to its owner. */
void shed_free_impl(void *ptr, const char *call)
{
    size_t off = (size_t)((char *)ptr - g.region), i;
    if (unlikely(off >= g.fast_size))
        return free_other(ptr, call);
    struct pool *p = desc_at(off);
    struct theap *th = tls_heap;                /* never a pool's owner if NO_THEAP */
    if (likely(LOAD(p->owner) == th) && likely(block_index(off & g.page_mask, p->magic, &i)) &&
        likely(i < p->nblocks) && likely(owner_free(th, p, i)))
        return;
    free_slow(ptr, call);
}

void chk_alloc(void *block, size_t size)
{
    VALGRIND_MALLOCLIKE_BLOCK(block, size, 0, 0);
    ASAN_UNPOISON_MEMORY_REGION(block, size);
}

void chk_free_early(void *block)
{
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

EXPORT void shed_free(void *ptr)
{
    shed_free_impl(ptr, "shed_free");
}

/*
 * Allocation entry points, and what their fast path (fast.h: the thread's
 * current pool for the class has a free block) leaves to medium blocks or
 * the system allocator (alloc_large); the slow path for pools is slow.c.
 */
#include <dlfcn.h>
#include <errno.h>
#include <gnu/lib-names.h>
#include <malloc.h>
#include <string.h>

#include "fast.h"
#include "vg.h"

/* One more request for the system allocator: in the thread's theap (one
 * writer, no shared line), or in g.c.large for a thread that has none. */
static inline void count_large(void)
{
    struct theap *th = tls_heap;
    if (likely(th != NO_THEAP))
        RELAXED_BUMP(th->nlarge, 1);
    else
        RELAXED_ADD(g.c.large, 1);
}

/* alloc_large for a thread without a theap yet. */
static __attribute__((noinline)) void *alloc_large_new(size_t size, size_t align)
{
    struct theap *th = theap_get();
    return th ? medium_malloc(th, size, align) : alloc_system(size, align);
}

/* What the pools do not serve: a medium block (medium.c) when a medium
 * class fits, else a block from the system allocator, aligned to align when
 * it is more than malloc's 16 bytes.  Sets errno on failure. */
void *alloc_large(size_t size, size_t align)
{
    if (size <= SHED_MEDIUM_MAX && align <= SHED_MEDIUM_MAX) {
        struct theap *th = tls_heap;
        if (likely(th != NO_THEAP))
            return medium_malloc(th, size, align);   /* tail calls: no frame */
        return alloc_large_new(size, align);        /* the thread's first */
    }
    return alloc_system(size, align);
}

/* A block from the system allocator (what neither pools nor spans serve). */
void *alloc_system(size_t size, size_t align)
{
    count_large();
    if (unlikely(!sys_heap_primed()))
        sys_heap_prime();
    return align > SHED_CLASS_STEP ? sys_memalign(align, size) : sys_malloc(size);
}

void *shed_malloc_impl(size_t size)
{
    return malloc_fast(size);
}

EXPORT void *shed_malloc(size_t size)
{
    return malloc_fast(size);
}

EXPORT void *shed_calloc(size_t nmemb, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(nmemb, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    if (total > SHED_MEDIUM_MAX) {
        count_large();
        return sys_calloc(total, 1);
    }
    void *b = malloc_fast(total);      /* in line: no call before memset's */
    if (b)
        memset(b, 0, total);
    return b;
}

void *shed_aligned_impl(size_t align, size_t size)
{
    if (align == 0 || (align & (align - 1))) {
        errno = EINVAL;
        return NULL;
    }
    if (align <= SHED_CLASS_STEP)
        return shed_malloc_impl(size);
    /* A class whose size is a multiple of align has every block aligned. */
    if (align <= SHED_MAX_BLOCK && size <= SHED_MAX_BLOCK) {
        size_t rounded = (size + align - 1) & ~(align - 1);
        if (rounded <= SHED_MAX_BLOCK)
            return alloc_fast(size, rounded ? rounded : align, align);
    }
    return alloc_large(size, align);
}

EXPORT void *shed_aligned_alloc(size_t alignment, size_t size)
{
    return shed_aligned_impl(alignment, size);
}

/* Usable size of a block of the system allocator. */
size_t sys_usable_size(void *ptr)
{
#ifdef SHED_PRELOAD
    /* Our own malloc_usable_size is the one the program sees, and the next one
     * in the search order may be another allocator's (a program linked with
     * jemalloc, as Debian's redis-server is): ask glibc's, which made the
     * block. */
    static size_t (*fn)(void *);
    if (!fn) {
        void *libc = dlopen(LIBC_SO, RTLD_LAZY | RTLD_NOLOAD);
        fn = libc ? (size_t (*)(void *))dlsym(libc, "malloc_usable_size") : NULL;
    }
    return fn ? fn(ptr) : 0;
#else
    return malloc_usable_size(ptr);
#endif
}

/* The usable size of a live shed block, 0 after reporting a bad pointer. */
static size_t block_size(const void *ptr, const char *call)
{
    struct pool *p;
    size_t idx;
    unsigned size;
    struct theap *owner;
    int err = block_locate(ptr, &p, &idx, &size, &owner);
    if (err < 0 && (block_is_free(p, idx) || (g.checker && quarantine_holds(ptr))))
        err = E_DOUBLE;
    if (unlikely(err >= 0)) {
        shed_error(err, ptr, call);
        return 0;
    }
    return size;
}

size_t shed_usable_impl(const void *ptr, const char *call)
{
    if (!ptr)
        return 0;
    if (!in_region(ptr) && !in_medium(ptr))
        return sys_usable_size((void *)ptr);
    size_t size = in_region(ptr) ? block_size(ptr, call) : medium_usable(ptr, call);
    /* Under memcheck or ASan only the requested bytes are addressable: say
     * so, as valgrind's own malloc_usable_size does, or writing the rest is
     * an error. */
    return unlikely(g.checker) && size ? shed_data_len((void *)ptr, size) : size;
}

EXPORT size_t shed_usable_size(const void *ptr)
{
    return shed_usable_impl(ptr, "shed_usable_size");
}

/* Bytes of a block that hold data: under memcheck, up to the first byte the
 * caller did not ask for (copying the rest would be reported as ours). */
size_t shed_data_len(void *ptr, size_t usable)
{
#if SHED_ASAN
    void *poisoned = __asan_region_is_poisoned(ptr, usable);
    return poisoned ? (size_t)((char *)poisoned - (char *)ptr) : usable;
#endif
    if (!g.valgrind)
        return usable;
    VALGRIND_DISABLE_ERROR_REPORTING;
    uintptr_t bad = VALGRIND_CHECK_MEM_IS_ADDRESSABLE(ptr, usable);
    VALGRIND_ENABLE_ERROR_REPORTING;
    return bad ? bad - (uintptr_t)ptr : usable;
}

/* realloc's common case in line (CPython grows its lists, strings and
 * buffers with it, nearly always into the next class): a small block of a
 * pool the calling thread owns and no heap, under no checker (g.fast_size
 * is 0 then), the block in use in every bitmap as block_size wants it.  It
 * stays when the size keeps its class, else moves through malloc's and
 * free's fast paths, without block_size's call and look-up and
 * shed_free_impl's.  false, with nothing done, for the general path. */
static ALWAYS_INLINE bool realloc_owned(void *ptr, size_t size, const char *call, void **out)
{
    size_t off = (size_t)((char *)ptr - g.region), i;
    if (!(off < g.fast_size))
        return false;
    struct pool *p = desc_at(off);
    if (RELAXED_LOAD(p->owner) != tls_heap || !block_index(off & g.page_mask, p->magic, &i) ||
        (uint16_t)i >= p->nblocks || block_is_free(p, i))
        return false;
    size_t old = RELAXED_LOAD(p->size);
    if (size <= SHED_MAX_BLOCK && size_class(size) == size_class(old)) {
        *out = ptr;
        return true;
    }
    void *n = malloc_fast(size);
    if (n) {
        memcpy(n, ptr, old < size ? old : size);
        free_fast(ptr, call);          /* looks again: malloc may have run the slow path */
    }
    *out = n;                          /* NULL: errno is ENOMEM */
    return true;
}

/* realloc, the new block from heap (NULL: the calling thread's).  A heap's
 * large block reallocated by shed_realloc stays in that heap. */
void *shed_realloc_impl(void *ptr, size_t size, const char *call, struct shed_heap *heap)
{
    if (!ptr)
        return heap ? shed_heap_malloc(heap, size) : shed_malloc_impl(size);
    if (size == 0) {                   /* glibc: free, and return NULL */
        shed_free_impl(ptr, call);
        return NULL;
    }
    void *moved;
    if (!heap && realloc_owned(ptr, size, call, &moved))
        return moved;
    size_t old;
    struct shed_heap *from = NULL;
    if (in_region(ptr) || in_medium(ptr)) {
        bool small = in_region(ptr);
        if (!(old = small ? block_size(ptr, call) : medium_usable(ptr, call))) {
            errno = EINVAL;
            return NULL;               /* reported; the block is left alone */
        }
        /* Same class: nothing to do (a checker wants the move, for sizes). */
        if (!heap && !g.checker &&
            (small ? size <= SHED_MAX_BLOCK && size_class(size) == size_class(old)
                   : size > SHED_MAX_BLOCK && size <= old &&
                     medium_class(size, 0) == medium_class(old, 0)))
            return ptr;
        old = shed_data_len(ptr, old);
    } else {
        if ((from = heap_take_large(ptr)) && !heap)
            heap = from;
        if (!heap && (size > SHED_MEDIUM_MAX || atomic_load(&g.state) != S_READY))
            return sys_realloc(ptr, size);   /* stays large, or no pools */
        old = sys_usable_size(ptr);
    }
    void *n = heap ? shed_heap_malloc(heap, size) : shed_malloc_impl(size);
    if (!n) {
        if (from)
            heap_put_large(from, ptr);  /* ptr untouched, still the heap's */
        return NULL;                   /* errno is ENOMEM */
    }
    memcpy(n, ptr, old < size ? old : size);
    shed_free_impl(ptr, call);
    return n;
}

EXPORT void *shed_realloc(void *ptr, size_t size)
{
    return shed_realloc_impl(ptr, size, "shed_realloc", NULL);
}

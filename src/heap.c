/*
 * Heaps: separate sets of pools.  Blocks of different heaps never share a
 * pool, so a heap made for long-lived data keeps its pages apart from the
 * churn of short-lived blocks (they stay clean, and shared with fork()ed
 * children), and shed_heap_destroy() frees all its blocks at once.
 *
 * A heap is a shared theap under the heap's mutex: any thread may allocate
 * from it, and frees of its blocks take the cross-thread path of theap.c.
 * Its blocks larger than SHED_MAX_BLOCK come from the system allocator and
 * are remembered in a small open-addressing set, so that destroy frees them.
 * Under memcheck such a block the program no longer points at is a leak, as
 * a small block of the heap is: only destroying the heap would free it.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "shed_impl.h"
#include "vg.h"

#define HEAP_LIVE 0x48454150u     /* "HEAP" */
#define HEAP_DEAD 0xdeadbeefu

struct shed_heap {
    _Atomic uint32_t magic;
    pthread_mutex_t lock;
    struct theap *th;
    struct shed_heap *next;       /* live heaps, or recycled ones */
    uintptr_t *large;             /* set of system blocks, hidden (hide_addr:
                                     memcheck must not count them as reachable
                                     from here, shed_impl.h); 0 = empty slot */
    size_t large_cap, large_n;
};

static pthread_mutex_t heaps_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shed_heap *heaps, *heaps_free;
static _Atomic size_t nlarge;     /* system blocks held by all heaps */

/* ---- the set of large blocks (caller holds the heap's lock) ---- */

static size_t slot_of(uintptr_t hidden, size_t cap)
{
    return (hidden >> 4) * 0x9e3779b97f4a7c15ull >> 7 & (cap - 1);
}

static bool large_add(struct shed_heap *h, void *ptr)
{
    if (2 * (h->large_n + 1) > h->large_cap) {
        size_t cap = h->large_cap ? 2 * h->large_cap : 64;
        uintptr_t *t = os_map(cap * sizeof *t);
        if (!t)
            return false;
        for (size_t i = 0; i < h->large_cap; i++) {
            if (!h->large[i])
                continue;
            size_t j = slot_of(h->large[i], cap);
            while (t[j])
                j = (j + 1) & (cap - 1);
            t[j] = h->large[i];
        }
        if (h->large)
            os_unmap(h->large, h->large_cap * sizeof *t);
        h->large = t;
        h->large_cap = cap;
    }
    uintptr_t e = hide_addr(ptr);
    size_t j = slot_of(e, h->large_cap);
    while (h->large[j])
        j = (j + 1) & (h->large_cap - 1);
    h->large[j] = e;
    h->large_n++;
    RELAXED_ADD(nlarge, 1);
    return true;
}

static bool large_remove(struct shed_heap *h, void *ptr)
{
    if (!h->large_n)
        return false;
    uintptr_t want = hide_addr(ptr);
    size_t mask = h->large_cap - 1, j = slot_of(want, h->large_cap);
    while (h->large[j] && h->large[j] != want)
        j = (j + 1) & mask;
    if (!h->large[j])
        return false;
    h->large[j] = 0;
    /* Re-insert the rest of the cluster so that lookups still find it. */
    for (size_t k = (j + 1) & mask; h->large[k]; k = (k + 1) & mask) {
        uintptr_t e = h->large[k];
        h->large[k] = 0;
        size_t s = slot_of(e, h->large_cap);
        while (h->large[s])
            s = (s + 1) & mask;
        h->large[s] = e;
    }
    h->large_n--;
    RELAXED_ADD(nlarge, (size_t)-1);
    return true;
}

/* A system block given to shed_free/shed_realloc: if a heap holds it, take it
 * out of that heap and return the heap. */
struct shed_heap *heap_take_large(void *ptr)
{
    if (RELAXED_LOAD(nlarge) == 0)
        return NULL;
    pthread_mutex_lock(&heaps_lock);
    struct shed_heap *h = heaps;
    for (; h; h = h->next) {
        pthread_mutex_lock(&h->lock);
        bool found = large_remove(h, ptr);
        pthread_mutex_unlock(&h->lock);
        if (found)
            break;
    }
    pthread_mutex_unlock(&heaps_lock);
    return h;
}

/* ---- the API ---- */

static bool heap_ok(shed_heap_t *h, const char *call)
{
    if (likely(h && RELAXED_LOAD(h->magic) == HEAP_LIVE))
        return true;
    shed_error(E_HEAP, h, call);
    errno = EINVAL;
    return false;
}

EXPORT shed_heap_t *shed_heap_new(unsigned flags)
{
    if (flags != 0) {
        errno = EINVAL;
        return NULL;
    }
    if (!shed_ready()) {
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_lock(&heaps_lock);
    struct shed_heap *h = heaps_free;
    if (h)
        heaps_free = h->next;
    pthread_mutex_unlock(&heaps_lock);
    if (!h) {
        h = os_map(sizeof *h);        /* never unmapped: stale handles are caught */
        if (!h) {
            errno = ENOMEM;
            return NULL;
        }
        pthread_mutex_init(&h->lock, NULL);
    }
    if (!(h->th = theap_new(true))) {
        errno = ENOMEM;
        return NULL;
    }
    h->th->is_heap = true;
    pthread_mutex_lock(&heaps_lock);
    h->next = heaps;
    heaps = h;
    RELAXED_STORE(h->magic, HEAP_LIVE);
    pthread_mutex_unlock(&heaps_lock);
    return h;
}

EXPORT void *shed_heap_malloc(shed_heap_t *h, size_t size)
{
    if (!heap_ok(h, "shed_heap_malloc"))
        return NULL;
    void *b;
    pthread_mutex_lock(&h->lock);
    if (size <= SHED_MAX_BLOCK) {
        b = theap_alloc(h->th, size);
        if (!b)
            errno = ENOMEM;
    } else if (size <= SHED_MEDIUM_MAX && (b = medium_alloc(h->th, size, 0))) {
        if (unlikely(g.checker))
            chk_alloc(b, size);
    } else if ((b = sys_malloc(size)) && !large_add(h, b)) {
        sys_free(b);
        b = NULL;
        errno = ENOMEM;
    }
    pthread_mutex_unlock(&h->lock);
    return b;
}

EXPORT void *shed_heap_calloc(shed_heap_t *h, size_t nmemb, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(nmemb, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    void *b = shed_heap_malloc(h, total);
    if (b)
        memset(b, 0, total);
    return b;
}

EXPORT void *shed_heap_realloc(shed_heap_t *h, void *ptr, size_t size)
{
    if (!heap_ok(h, "shed_heap_realloc"))
        return NULL;
    return shed_realloc_impl(ptr, size, "shed_heap_realloc", h);
}

/* A large block taken out of h's set by a realloc that then failed. */
void heap_put_large(struct shed_heap *h, void *ptr)
{
    pthread_mutex_lock(&h->lock);
    large_add(h, ptr);
    pthread_mutex_unlock(&h->lock);
}

EXPORT void shed_heap_destroy(shed_heap_t *h)
{
    if (!h)
        return;
    if (!heap_ok(h, "shed_heap_destroy"))
        return;
    pthread_mutex_lock(&heaps_lock);
    for (struct shed_heap **pp = &heaps; *pp; pp = &(*pp)->next) {
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    }
    pthread_mutex_unlock(&heaps_lock);

    pthread_mutex_lock(&h->lock);
    RELAXED_STORE(h->magic, HEAP_DEAD);
    theap_destroy_pools(h->th);
    medium_destroy(h->th);
    for (size_t i = 0; i < h->large_cap; i++)
        if (h->large[i])
            sys_free(unhide_addr(h->large[i]));
    RELAXED_ADD(nlarge, -h->large_n);
    if (h->large)
        os_unmap(h->large, h->large_cap * sizeof *h->large);
    h->large = NULL;
    h->large_cap = h->large_n = 0;
    theap_recycle(h->th);
    h->th = NULL;
    pthread_mutex_unlock(&h->lock);

    pthread_mutex_lock(&heaps_lock);
    h->next = heaps_free;
    heaps_free = h;
    pthread_mutex_unlock(&heaps_lock);
}

/* Merge the remote frees of every heap, so its emptied pools are released
 * even when nobody allocates from it (the release thread, shed_trim). */
void heaps_collect(void)
{
    pthread_mutex_lock(&heaps_lock);
    for (struct shed_heap *h = heaps; h; h = h->next) {
        if (pthread_mutex_trylock(&h->lock) == 0) {
            theap_drain(h->th);
            pthread_mutex_unlock(&h->lock);
        }
    }
    pthread_mutex_unlock(&heaps_lock);
}

bool heap_fork_busy(void)
{
    if (mutex_held(&heaps_lock))
        return true;
    for (struct shed_heap *h = heaps; h; h = h->next)
        if (mutex_held(&h->lock))
            return true;
    return false;
}

/* fork(): every heap's lock is held across it, after the list's. */
void heap_fork_prepare(void)
{
    pthread_mutex_lock(&heaps_lock);
    for (struct shed_heap *h = heaps; h; h = h->next)
        pthread_mutex_lock(&h->lock);
}

void heap_fork_parent(void)
{
    for (struct shed_heap *h = heaps; h; h = h->next)
        pthread_mutex_unlock(&h->lock);
    pthread_mutex_unlock(&heaps_lock);
}

void heap_fork_child(void)
{
    for (struct shed_heap *h = heaps; h; h = h->next)
        fork_child_unlock(&h->lock);
    fork_child_unlock(&heaps_lock);
}

EXPORT void shed_freeze(void)
{
    if (!shed_ready())
        return;
    if (tls_heap != NO_THEAP)
        mcache_flush(tls_heap);    /* the caller's parked blocks: free now */
    arena_seal_all(true);
}

EXPORT void shed_thaw(void)
{
    if (!shed_ready())
        return;
    theap_reclaim_inherited();     /* a child: the parent's pools, reusable */
    arena_seal_all(false);         /* each theap relists its pools */
    pthread_mutex_lock(&g.orphan_lock);
    theap_relist(g.orphanage);
    pthread_mutex_unlock(&g.orphan_lock);
}

/*
 * The standard allocation names, for LD_PRELOAD=libshed.so (built into the
 * shared library only).  What pools do not serve goes to glibc's own
 * __libc_malloc family, and its blocks are freed back there.
 */
#include <dlfcn.h>
#include <errno.h>
#include <gnu/lib-names.h>
#include <malloc.h>
#include <stdlib.h>
#include <unistd.h>

#include "fast.h"

/* glibc sets its allocator up on the first call into it, and the thread that
 * makes that call takes glibc's main arena without counting itself in (the
 * count starts at one, for the main thread).  Without us, the dynamic loader
 * makes it on the main thread.  With us, the first request passed on to glibc
 * could come from any thread, or from two at once, which both then hold the
 * main arena on a count of one: glibc aborts as the second exits
 * ("a->attached_threads > 0").  So shed makes that call as it sets itself up
 * (shed_init_slow), before it passes any request on: at the first malloc of
 * the process, made by the main thread (a thread's creator allocates its
 * thread-local storage first).  A program that never allocates (true(1))
 * pays for neither.  (test/preload/first_large.c)
 *
 * The call is mallopt(3) with a parameter glibc does not know (it changes
 * nothing and returns 1): it sets the allocator up as malloc's first call
 * does, but makes no heap, where a malloc(1) grew the break (two brk(2)
 * calls) and wrote a page of it in every process, which most short ones
 * never use again (docs/performance.md, "Process start, part two"). */
void preload_first_use(void)
{
    sys_mallopt(0, 0);
}

EXPORT void *malloc(size_t size)
{
    return malloc_fast(size);
}

EXPORT void free(void *ptr)
{
    free_fast(ptr, "free");
}

EXPORT void cfree(void *ptr)
{
    shed_free_impl(ptr, "cfree");
}

EXPORT void *calloc(size_t nmemb, size_t size)
{
    return shed_calloc(nmemb, size);
}

EXPORT void *realloc(void *ptr, size_t size)
{
    return shed_realloc_impl(ptr, size, "realloc", NULL);
}

EXPORT void *reallocarray(void *ptr, size_t nmemb, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(nmemb, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return shed_realloc_impl(ptr, total, "reallocarray", NULL);
}

EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
    if (align < sizeof(void *) || (align & (align - 1)))
        return EINVAL;
    int saved = errno;
    void *p = shed_aligned_impl(align, size);
    if (!p)
        return ENOMEM;
    errno = saved;                 /* posix_memalign leaves errno alone */
    *out = p;
    return 0;
}

EXPORT void *memalign(size_t align, size_t size)
{
    /* glibc rounds a bad alignment up to a power of two. */
    if (align & (align - 1)) {
        size_t a = 1;
        while (a < align && a)
            a <<= 1;
        align = a ? a : align;
    }
    return shed_aligned_impl(align ? align : 1, size);
}

/* Does the glibc underneath serve aligned_alloc with an alignment that is
 * not a power of two?  Up to 2.37 its aligned_alloc is memalign (rounding
 * up, 0 taken as 1); from 2.38 on it fails with EINVAL, as C17 says.  Asked
 * once, of glibc's own aligned_alloc, only when such an alignment comes. */
static bool libc_aligned_lenient(void)
{
    static _Atomic int lenient = -1;
    int l = atomic_load_explicit(&lenient, memory_order_relaxed);
    if (l < 0) {
        void *libc = dlopen(LIBC_SO, RTLD_LAZY | RTLD_NOLOAD);
        void *(*fn)(size_t, size_t) =
            libc ? (void *(*)(size_t, size_t))dlsym(libc, "aligned_alloc") : NULL;
        void *p = fn && fn != aligned_alloc ? fn(3, 1) : NULL;
        if (p)
            sys_free(p);
        l = p != NULL;
        atomic_store_explicit(&lenient, l, memory_order_relaxed);
    }
    return l;
}

EXPORT void *aligned_alloc(size_t align, size_t size)
{
    if (align && !(align & (align - 1)))
        return shed_aligned_impl(align, size);
    if (libc_aligned_lenient())
        return memalign(align, size);
    errno = EINVAL;
    return NULL;
}

EXPORT void *valloc(size_t size)
{
    return shed_aligned_impl((size_t)sysconf(_SC_PAGESIZE), size);
}

EXPORT void *pvalloc(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t rounded = (size + page - 1) & ~(page - 1);
    if (rounded < size) {
        errno = ENOMEM;
        return NULL;
    }
    return shed_aligned_impl(page, rounded ? rounded : page);
}

EXPORT size_t malloc_usable_size(void *ptr)
{
    return shed_usable_impl(ptr, "malloc_usable_size");
}

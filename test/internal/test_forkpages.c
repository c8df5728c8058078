/*
 * The pages shed itself writes in a fork()ed child.  A parent builds a heap
 * of 40 MiB of small blocks (Python-like sizes) and 2 MiB of medium ones,
 * freezes it, and forks; the child frees a few of the parent's blocks (in
 * two arenas, and a medium one), allocates and frees some of its own, then
 * counts, with /proc/self/pagemap (bit 56: mapped by this process only, so
 * copied or new since the fork), the pages of shed's own memory it has:
 *   - the inherit maps (g.imap, med.imap): laid out an arena at a time, at
 *     its first inherited free, so a child that frees into two arenas
 *     writes one page of map, whatever the size of the heap;
 *   - the descriptors, remote bitmaps and arena masks of the parent's pools
 *     (the tables' pages the child's own pools do not share): none;
 *   - the parent's theaps (the forking thread's, the orphanage): none;
 *   - shed's globals (struct global g, struct medium med): what the child
 *     handler writes (fresh locks) and what the child's own work writes.
 * The parent waits meanwhile and writes nothing of shed's (release=manual),
 * so a page the child sees exclusive is one the child wrote.  Some kernels
 * (seen on 6.18 in a VM) give a process a zeroed page of its own where it
 * reads a page of a private mapping nobody wrote, instead of the shared
 * zero page (read_owns_page): there a page that is exclusive but all zero
 * holds nothing of the parent's and was not written by the child, and is
 * not counted.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <valgrind/valgrind.h>

#include "../rand.h"

#include "shed_impl.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

struct result {                   /* written by the child (MAP_SHARED) */
    long imap, med_imap;          /* pages of the maps present */
    long descs, remotes, arenas;  /* parent's table pages copied */
    long theaps;                  /* parent's theaps' pages copied */
    long spans, span_descs;       /* parent's spans' pages and descriptors */
    long global, medium;          /* pages of g and med copied */
    long imap_pages, inherited, errors;
};

static size_t psize(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* Does a read of a page of a private mapping that nobody wrote give this
 * process a page of its own (exclusive), rather than the shared zero page? */
static bool read_owns_page(int fd)
{
    volatile char *p = mmap(NULL, psize(), PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return false;
    (void)*p;
    uint64_t e = 0;
    bool own = pread(fd, &e, sizeof e, (off_t)((uintptr_t)p / psize() * sizeof e)) ==
               (ssize_t)sizeof e && (e >> 56 & 1);
    munmap((void *)p, psize());
    return own;
}

static bool all_zero(const void *page)
{
    const uint64_t *w = page;
    for (size_t i = 0; i < psize() / sizeof *w; i++)
        if (w[i])
            return false;
    return true;
}

static bool zero_reads_own;      /* read_owns_page(), in the child */

/* Pages of [addr, addr + len) that are present and mapped by this process
 * only (/proc/self/pagemap bits 63 and 56), but for pages all zero where a
 * read makes a page exclusive (zero_reads_own); with want_present, those
 * present at all (a fresh mapping's pages are the child's whatever it
 * wrote). */
static long count_pages(int fd, const void *addr, size_t len, bool want_present)
{
    uintptr_t lo = (uintptr_t)addr & ~(uintptr_t)(psize() - 1);
    uintptr_t hi = ((uintptr_t)addr + len + psize() - 1) & ~(uintptr_t)(psize() - 1);
    long n = 0;
    for (uintptr_t a = lo; a < hi; a += psize()) {
        uint64_t e;
        if (pread(fd, &e, sizeof e, (off_t)(a / psize() * sizeof e)) != (ssize_t)sizeof e)
            return -1;
        n += (e >> 63 & 1) && (want_present || ((e >> 56 & 1) &&
                                                !(zero_reads_own && all_zero((void *)a))));
    }
    return n;
}

/* A thread of the parent's that leaves pools with free blocks to the
 * orphanage when it exits. */
static void *orphan_maker(void *arg)
{
    void **blk = arg;
    for (int i = 0; i < 1024; i++) {
        blk[i] = shed_malloc(16 + 16 * (size_t)(i % 8));
        if (blk[i])
            memset(blk[i], 3, 16);
    }
    for (int i = 0; i < 1024; i += 2)
        shed_free(blk[i]);
    return NULL;
}

static void child_work(void **b, size_t n, void **mb, size_t nm, struct result *r)
{
    size_t narenas = g.narenas;   /* the parent's, before the child carves */
    size_t nspans = med.ncarved;
    /* frees into two arenas of the parent's: the first and the middle */
    shed_free(b[1]);
    b[1] = NULL;
    shed_free(b[n / 2]);
    b[n / 2] = NULL;
    shed_free(mb[nm / 2]);
    mb[nm / 2] = NULL;
    /* blocks of the child's own, some freed */
    void *own[256];
    uint64_t rnd = 99;
    for (int i = 0; i < 256; i++)
        if (!(own[i] = shed_malloc(python_size(&rnd))))
            r->errors++;
    for (int i = 0; i < 256; i += 2)
        shed_free(own[i]);
    void *med_own = shed_malloc(3000);
    if (!med_own)
        r->errors++;
    else
        memset(med_own, 1, 3000);

    int fd = open("/proc/self/pagemap", O_RDONLY);
    if (fd < 0) {
        r->errors += 1000;
        return;
    }
    /* (its reads would be of no-access memory to memcheck and ASan, whose
     * runs assert nothing of the counts) */
    zero_reads_own = !SANITIZED && !RUNNING_ON_VALGRIND && read_owns_page(fd);
    r->inherited = (long)RELAXED_LOAD(g.inherit_pools);
    if (g.imap) {
        r->imap_pages = (long)(g.imap->bytes / psize());
        r->imap = count_pages(fd, g.imap, g.imap->bytes, true);
    }
    if (med.imap)
        r->med_imap = count_pages(fd, med.imap, med.imap_spans * SPAN_WORDS * sizeof(uint64_t), true);
    /* the parent's pools' tables: its arenas (the child's own pools come
     * from arenas carved after, sealed ones being the parent's) */
    size_t stride = (size_t)1 << g.desc_shift;
    r->descs = count_pages(fd, g.descs + g.first_arena * POOLS_PER_ARENA * stride,
                           (narenas - g.first_arena) * POOLS_PER_ARENA * stride, false);
    r->remotes = count_pages(fd, g.remotes + g.first_arena * POOLS_PER_ARENA * stride,
                             (narenas - g.first_arena) * POOLS_PER_ARENA * stride, false);
    r->arenas = count_pages(fd, g.arenas, narenas * sizeof(struct arena), false);
    for (struct theap *th = g.theaps; th; th = th->all_next)
        if (th != tls_heap && th != g.orphanage)   /* the child's own */
            r->theaps += count_pages(fd, th, sizeof *th, false);
    if (med.base) {
        r->spans = count_pages(fd, med.base, nspans << SPAN_SHIFT, false);
        size_t whole = nspans * sizeof(struct span) & ~(psize() - 1);
        r->span_descs = count_pages(fd, med.spans, whole, false);
    }
    r->global = count_pages(fd, &g, sizeof g, false);
    r->medium = count_pages(fd, &med, sizeof med, false);
    close(fd);
    /* everything the child did not free is intact */
    for (size_t i = 0; i < n; i++)
        if (b[i] && *(unsigned char *)b[i] != (unsigned char)i)
            r->errors++;
    for (int i = 1; i < 256; i += 2)
        shed_free(own[i]);
    shed_free(med_own);
}

static void test_child_writes(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=manual,freeze_on_fork=0"), 0);
    size_t total = (size_t)40 << 20, n = total / 100, nm = 512;
    if (RUNNING_ON_VALGRIND)
        total /= 20, n /= 20;
    void **b = mmap(NULL, n * sizeof *b, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void **mb = mmap(NULL, nm * sizeof *mb, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(b != MAP_FAILED && mb != MAP_FAILED);
    uint64_t rnd = 42;
    size_t bytes = 0;
    size_t k = 0;
    for (; bytes < total && k < n; k++) {
        size_t s = python_size(&rnd);
        b[k] = shed_malloc(s);
        assert_non_null(b[k]);
        memset(b[k], (unsigned char)k, s);
        bytes += s;
    }
    for (size_t i = 0; i < nm; i++) {
        mb[i] = shed_malloc(1024 + 4096 * (i % 2));
        assert_non_null(mb[i]);
        memset(mb[i], 7, 1024);
    }
    /* a span of 2 KiB blocks, written then all freed: a free span whose
     * pages are resident, the parent's */
    void *tmp[2 * SPAN_BYTES / 2048];
    for (size_t i = 0; i < sizeof tmp / sizeof *tmp; i++) {
        tmp[i] = shed_malloc(2048);
        assert_non_null(tmp[i]);
        memset(tmp[i], 9, 2048);
    }
    for (size_t i = 0; i < sizeof tmp / sizeof *tmp; i++)
        shed_free(tmp[i]);
    size_t cap = n;
    n = k;
    void **orph = mmap(NULL, 1024 * sizeof *orph, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(orph != MAP_FAILED);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, orphan_maker, orph), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    shed_freeze();
    struct result *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(r != MAP_FAILED);
    memset(r, 0, sizeof *r);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        child_work(b, n, mb, nm, r);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    print_message("      child of a %zu MiB heap (%ld inherited pools): inherit map %ld of %ld "
                  "pages, medium map %ld; copied: descriptors %ld, remote bitmaps %ld, arena "
                  "masks %ld, parent's theaps %ld, spans %ld, span descriptors %ld, g %ld of %zu, "
                  "med %ld\n",
                  bytes >> 20, r->inherited, r->imap, r->imap_pages, r->med_imap, r->descs,
                  r->remotes, r->arenas, r->theaps, r->spans, r->span_descs, r->global,
                  (sizeof g + psize() - 1) / psize(), r->medium);
    assert_int_equal(r->errors, 0);
    if (!SANITIZED && !RUNNING_ON_VALGRIND) {
        assert_true(r->inherited > 0);
        assert_true(r->imap <= 1);
        assert_true(r->med_imap <= 1);
        assert_int_equal(r->descs, 0);
        assert_int_equal(r->remotes, 0);
        assert_int_equal(r->theaps, 0);
        assert_int_equal(r->spans, 0);
        assert_int_equal(r->span_descs, 0);
    }
    shed_thaw();
    for (size_t i = 0; i < n; i++)
        shed_free(b[i]);
    for (size_t i = 0; i < nm; i++)
        shed_free(mb[i]);
    for (int i = 1; i < 1024; i += 2)
        shed_free(orph[i]);
    munmap(orph, 1024 * sizeof *orph);
    munmap(r, sizeof *r);
    munmap(b, cap * sizeof *b);
    munmap(mb, nm * sizeof *mb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_child_writes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

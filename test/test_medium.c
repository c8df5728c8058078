/*
 * Medium blocks (SHED_MAX_BLOCK + 1 to SHED_MEDIUM_MAX bytes), served from
 * spans of 256 KiB: every class and alignment, realloc across the small,
 * medium and large ranges, the release of a partly live span's pages
 * (mincore), frees from other threads, heaps, freeze and fork().
 * Bookkeeping arrays come from mmap, so that under the preloaded library
 * they share no span with the blocks under test.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "shed_test.h"

#define SPAN ((size_t)256 * 1024)

static void *scratch(size_t bytes)
{
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    return m;
}

static uintptr_t span_of(const void *p)
{
    return (uintptr_t)p / SPAN;
}

/* Every class, with sizes from just above the class below to the class's
 * own: usable size exact, 16-byte aligned, page-aligned when the class is a
 * multiple of the page, and 40 live blocks of each size all intact. */
static void test_every_class(void **state)
{
    (void)state;
    enum { K = 40 };
    void **p = scratch(K * sizeof *p);
    for (int c = 0; c < SHED_MEDIUM_CLASSES; c++) {
        size_t lo = c ? medium_sizes[c - 1] + 1 : SHED_MAX_BLOCK + 1, hi = medium_sizes[c];
        const size_t sizes[] = { lo, lo + 15, (lo + hi) / 2, hi - 1, hi };
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
            size_t n = sizes[s];
            for (int i = 0; i < K; i++) {
                p[i] = shed_malloc(n);
                assert_non_null(p[i]);
                assert_int_equal((uintptr_t)p[i] % 16, 0);
                if (hi % page_size() == 0)
                    assert_int_equal((uintptr_t)p[i] % page_size(), 0);
                assert_int_equal(shed_usable_size(p[i]), CHECKED ? n : hi);
                fill(p[i], writable(p[i], n), (unsigned)(n + i));
            }
            for (int i = 0; i < K; i++) {
                assert_int_equal(check_fill(p[i], writable(p[i], n), (unsigned)(n + i)), -1);
                shed_free(p[i]);
            }
        }
    }
    munmap(p, K * sizeof *p);
}

/* Every alignment up to the medium limit: the class is a multiple of it. */
static void test_aligned(void **state)
{
    (void)state;
    for (size_t a = 32; a <= SHED_MEDIUM_MAX; a *= 2) {
        const size_t sizes[] = { 513,   700,   1024,  4000,  4096,  9000,
                                 20000, 32768, 40000, 65536, 70000, SHED_MEDIUM_MAX };
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            size_t n = sizes[i], m = medium_block(n, a);
            struct shed_stats s0, s1;
            shed_stats(&s0);
            void *p = shed_aligned_alloc(a, n);
            shed_stats(&s1);
            assert_non_null(p);
            assert_int_equal((uintptr_t)p % a, 0);
            assert_int_equal(s1.large_allocs, s0.large_allocs + (m == 0));
            if (m)
                assert_int_equal(shed_usable_size(p), CHECKED ? n : m);
            fill(p, writable(p, n), (unsigned)a);
            assert_int_equal(check_fill(p, writable(p, n), (unsigned)a), -1);
            shed_free(p);
        }
    }
}

/* A pattern that does not depend on the address (realloc moves blocks). */
static void put(unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(i * 7 + i / 251);
}

static long differs(const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)(i * 7 + i / 251))
            return (long)i;
    return -1;
}

/* realloc up and down across small, medium and large blocks keeps the
 * contents; within a medium class it stays in place. */
static void test_realloc_ranges(void **state)
{
    (void)state;
    const size_t chain[] = { 100,  600,   5000,   40000, 3000, 200,    33000, 700,
                             512,  513,   32768,  70000, 200000, 131072, 131073, 131072,
                             1000, 99000, 150000, 16 };
    unsigned char *p = shed_malloc(chain[0]);
    assert_non_null(p);
    put(p, chain[0]);
    for (size_t i = 1; i < sizeof chain / sizeof *chain; i++) {
        size_t keep = chain[i - 1] < chain[i] ? chain[i - 1] : chain[i];
        p = shed_realloc(p, chain[i]);
        assert_non_null(p);
        assert_int_equal(differs(p, keep), -1);
        put(p, chain[i]);
    }
    shed_free(p);
    if (!CHECKED) {                      /* a checker wants the move */
        char *q = shed_malloc(1100);     /* class 1280 */
        assert_non_null(q);
        assert_ptr_equal(shed_realloc(q, 1280), q);
        assert_ptr_equal(shed_realloc(q, 1025), q);
        char *r = shed_realloc(q, 1281);
        assert_ptr_not_equal(r, q);
        shed_free(r);
        q = shed_malloc(100000);         /* class 114688, 2 a span */
        assert_non_null(q);
        assert_ptr_equal(shed_realloc(q, 114688), q);
        assert_ptr_equal(shed_realloc(q, 98305), q);
        r = shed_realloc(q, 114689);
        assert_ptr_not_equal(r, q);
        shed_free(r);
    }
}

/* Under a checker (memcheck, ASan) a freed medium block is held back, as a
 * small one is (test_alloc's test_quarantine): the next blocks of its size
 * are others, so that a write through a stale pointer finds it no-access.
 * Without a checker it is handed out again at once.  Held or not, it is free
 * for shed_stats; quarantine_kb=0 turns the holding off. */
static void test_quarantine(void **state)
{
    (void)state;
    enum { N = 64, SIZE = 4096, CLS = 11 };  /* medium_sizes[11] == 4096 */
    assert_int_equal(medium_sizes[CLS], SIZE);
    void *p = shed_malloc(SIZE), **q = scratch(N * sizeof *q);
    assert_non_null(p);
    memset(p, 1, SIZE);
    struct shed_stats a, b;
    shed_stats(&a);
    shed_free(p);
    shed_stats(&b);
    assert_int_equal(b.medium[CLS].blocks_in_use + 1, a.medium[CLS].blocks_in_use);
    int seen = 0;
    for (int i = 0; i < N; i++)
        seen += (q[i] = shed_malloc(SIZE)) == p;
    assert_int_equal(seen, CHECKED ? 0 : 1);
    for (int i = 0; i < N; i++)
        shed_free(q[i]);

    assert_int_equal(shed_config("quarantine_kb=0"), 0);
    p = shed_malloc(SIZE);
    shed_free(p);
    q[0] = shed_malloc(SIZE);
    assert_ptr_equal(q[0], p);
    shed_free(q[0]);
    assert_int_equal(shed_config("quarantine_kb=20000"), 0);   /* the default */
    munmap(q, N * sizeof *q);
}

/* Which pages of [base, base + len) are in memory, one char each. */
static void resident_map(char *base, size_t len, unsigned char *vec)
{
    assert_int_equal(mincore(base, len, vec), 0);
}

/*
 * A span whose blocks straddle pages (640 bytes: 6.4 to a 4 KiB page), one
 * block in every three pages' worth left live: after shed_trim exactly the pages that no live
 * block touches leave memory, live blocks keep their contents, and the
 * others come back as fresh pages when reused.  blocks come from alloc.
 */
static void check_partial_release(void *(*alloc)(void *, size_t), void (*release)(void *),
                                  void *ctx)
{
    enum { SIZE = 640 };
    size_t n = 2 * (SPAN / SIZE);
    char **p = scratch(n * sizeof *p);
    for (size_t i = 0; i < n; i++) {
        p[i] = alloc(ctx, SIZE);
        assert_non_null(p[i]);
        fill(p[i], SIZE, 3);
    }
    /* the span of the middle block, all of whose blocks are ours */
    char *base = (char *)(span_of(p[n / 2]) * SPAN);
    size_t mine = 0;
    for (size_t i = 0; i < n; i++)
        mine += span_of(p[i]) == span_of(base);
    assert_int_equal(mine, SPAN / SIZE);
    size_t stride = 3 * page_size() / SIZE + 1;
    for (size_t i = 0; i < n; i++)
        if (i % stride != 5) {
            shed_free(p[i]);
            p[i] = NULL;
        }
    release(ctx);
    size_t npages = SPAN / page_size();
    unsigned char *vec = scratch(npages), *want = scratch(npages);
    for (size_t i = 0; i < n; i++) {
        if (!p[i] || span_of(p[i]) != span_of(base))
            continue;
        size_t first = (size_t)(p[i] - base) / page_size();
        size_t last = (size_t)(p[i] + SIZE - 1 - base) / page_size();
        for (size_t j = first; j <= last; j++)
            want[j] = 1;
    }
    resident_map(base, SPAN, vec);
    size_t kept = 0, gone = 0;
    for (size_t j = 0; j < npages; j++) {
        if ((vec[j] & 1) != want[j])
            fail_msg("page %zu of the span: resident %d, a live block there %d", j,
                     vec[j] & 1, want[j]);
        kept += want[j];
        gone += !want[j];
    }
    assert_true(kept > 0 && gone > 0);
    for (size_t i = 0; i < n; i++)
        if (p[i]) {
            assert_int_equal(check_fill(p[i], SIZE, 3), -1);
            shed_free(p[i]);
        }
    munmap(p, n * sizeof *p);
    munmap(vec, npages);
    munmap(want, npages);
}

static void *thread_alloc(void *ctx, size_t n)
{
    (void)ctx;
    return shed_malloc(n);
}

static void trim(void *ctx)
{
    (void)ctx;
    shed_trim();
}

static void *heap_alloc(void *ctx, size_t n)
{
    return shed_heap_malloc(ctx, n);
}

static void test_release_partly_live(void **state)
{
    (void)state;
    if (page_size() > SPAN / 8)
        skip();                           /* 640 B never straddles there */
    /* Under a checker (memcheck, ASan) the quarantine would hold the freed
     * blocks, and the pages they touch, back: off. */
    assert_int_equal(shed_config("release=manual,quarantine_kb=0"), 0);
    /* a heap's spans hold only its blocks, whatever else the process does */
    shed_heap_t *h = shed_heap_new(0);
    assert_non_null(h);
    check_partial_release(heap_alloc, trim, h);
    shed_heap_destroy(h);
    if (!SHED_TEST_PRELOAD)               /* preloaded, stdio's buffers may share */
        check_partial_release(thread_alloc, trim, NULL);
    assert_int_equal(shed_config("release=batched,quarantine_kb=20000"), 0);
}

/* Two page-sized blocks (page-aligned: each its page's only block) from
 * alloc, filled with 1 and 2. */
static void two_pages(void *(*alloc)(void *, size_t), void *ctx, char **a, char **b)
{
    size_t pg = page_size();
    *a = alloc(ctx, pg);
    *b = alloc(ctx, pg);
    assert_non_null(*a);
    assert_non_null(*b);
    fill(*a, writable(*a, pg), 1);
    fill(*b, writable(*b, pg), 2);
}

/* a's page went back, b's stayed, with b's contents. */
static void check_a_released(const char *a, const char *b)
{
    assert_int_equal(resident(a), 0);
    assert_int_equal(resident(b), 1);
    assert_int_equal(check_fill(b, writable(b, page_size()), 2), -1);
}

/* Wait (up to 5 s, polling) for the release thread to take the page. */
static void wait_released(void *ctx)
{
    char *page = ctx;
    for (int i = 0; i < 500 && resident(page) == 1; i++)
        usleep(10000);
}

/* Batched mode: the release thread gives back an emptied page-sized
 * block's page while the other blocks of the span stay live; the second
 * block's page stays. */
static void test_release_batched(void **state)
{
    (void)state;
    size_t pg = page_size();
    if (pg > SHED_MEDIUM_MAX)
        skip();                           /* no class of a page */
    /* thread_after_kb=0: the release thread starts at the next allocation,
     * where it would wait for 4 MiB of pools in this small process. */
    assert_int_equal(shed_config("release=batched,delay_ms=20,thread_after_kb=0,quarantine_kb=0"),
                     0);
    shed_heap_t *h = shed_heap_new(0);
    assert_non_null(h);
    char *a, *b;
    two_pages(heap_alloc, h, &a, &b);
    assert_int_equal(resident(a), 1);
    shed_free(a);
    wait_released(a);
    check_a_released(a, b);
    char *c = shed_heap_malloc(h, pg);   /* the released slot, refaulted */
    assert_ptr_equal(c, a);
    fill(c, writable(c, pg), 3);
    assert_int_equal(check_fill(c, writable(c, pg), 3), -1);
    shed_heap_destroy(h);
    assert_int_equal(shed_config("delay_ms=100,quarantine_kb=20000"), 0);
}

/* One churning thread: blocks of 513 B-32 KiB, each filled and checked
 * before its free; returns non-NULL when a block lost its contents (a page
 * of it given back while it was live: the page would read as zeros). */
static void *churn_checked(void *arg)
{
    enum { WS = 64 };
    char *b[WS] = { 0 };
    size_t len[WS] = { 0 };
    unsigned seed = (unsigned)(uintptr_t)arg * 7919u + 1;
    long steps = scaled(30000);
    for (long k = 0; k < steps; k++) {
        seed = seed * 1103515245u + 12345u;
        size_t i = (seed >> 16) % WS;
        if (b[i]) {
            if (check_fill(b[i], writable(b[i], len[i]), (unsigned)i) != -1)
                return b[i];
            shed_free(b[i]);
        }
        len[i] = SHED_MAX_BLOCK + 1 + (seed >> 4) % (SHED_MEDIUM_MAX - SHED_MAX_BLOCK);
        if (!(b[i] = shed_malloc(len[i])))
            return (void *)1;
        fill(b[i], writable(b[i], len[i]), (unsigned)i);
    }
    for (size_t i = 0; i < WS; i++)
        shed_free(b[i]);
    return NULL;
}

/* The release thread, with no delay, takes idle pages of the very spans
 * two threads are churning: no page is given back while a live block
 * touches it (every block is checked before its free). */
static void test_release_races_owner(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=batched,delay_ms=0"), 0);
    pthread_t t[2];
    void *bad[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, churn_checked, (void *)(uintptr_t)i), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], &bad[i]);
    assert_null(bad[0]);
    assert_null(bad[1]);
    struct shed_stats st;
    shed_stats(&st);
    assert_true(st.pages_released > 0);
    assert_int_equal(shed_config("delay_ms=100"), 0);
}

static _Atomic int churners_left;

static void *churn_and_count(void *arg)
{
    void *bad = churn_checked(arg);
    atomic_fetch_sub(&churners_left, 1);
    return bad;
}

/* Two threads churn (parking and popping blocks of every class) while this
 * one calls shed_trim over and over, which flushes the caches of the
 * threads not inside a call at that moment (and the release thread, with
 * no delay, asks and flushes too): no block is handed out twice nor given
 * back while live (every block is checked before its free). */
static void test_cache_steal_races_owner(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=batched,delay_ms=0,quarantine_kb=0"), 0);
    pthread_t t[2];
    void *bad[2];
    atomic_store(&churners_left, 2);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, churn_and_count, (void *)(uintptr_t)(i + 5)),
                         0);
    long trims = 0;
    while (atomic_load(&churners_left) > 0) {
        shed_trim();
        trims++;
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], &bad[i]);
    assert_null(bad[0]);
    assert_null(bad[1]);
    assert_true(trims > 0);
    assert_int_equal(shed_config("delay_ms=100,quarantine_kb=20000"), 0);
}

/* ---- the cache of freed blocks (shed.7: a thread's freed medium blocks
 * are parked for its next mallocs of their class) ---- */

/* A freed block comes back to the next malloc of its class (the latest
 * first), and the blocks around it keep their contents through any number
 * of frees and mallocs parked in between. */
static void test_cache_reuse(void **state)
{
    (void)state;
    enum { N = 64 };
    char **p = scratch(N * sizeof *p);
    for (int i = 0; i < N; i++) {
        p[i] = shed_malloc(1500);
        assert_non_null(p[i]);
        fill(p[i], writable(p[i], 1500), (unsigned)i);
    }
    char *a = p[10], *b = p[20];
    shed_free(a);
    shed_free(b);
    char *c = shed_malloc(1500), *d = shed_malloc(1500);
    if (!CHECKED) {                       /* memcheck and ASan: no cache */
        assert_ptr_equal(c, b);
        assert_ptr_equal(d, a);
    }
    p[10] = d;
    p[20] = c;
    fill(c, writable(c, 1500), 20);
    fill(d, writable(d, 1500), 10);
    for (int round = 0; round < 50; round++) {
        for (int i = round % 3; i < N; i += 3)
            shed_free(p[i]);
        for (int i = round % 3; i < N; i += 3) {
            p[i] = shed_malloc(1500);
            assert_non_null(p[i]);
            fill(p[i], writable(p[i], 1500), (unsigned)(i + round));
        }
        for (int i = 0; i < N; i++) {
            int last = i % 3 == round % 3 ? round
                     : round > 0 && i % 3 == (round - 1) % 3 ? round - 1
                     : round > 1 ? round - 2 : -1;
            unsigned seed = (unsigned)(last < 0 ? i : i + last);
            assert_int_equal(check_fill(p[i], writable(p[i], 1500), seed), -1);
        }
    }
    for (int i = 0; i < N; i++)
        shed_free(p[i]);
    munmap(p, N * sizeof *p);
}

/* A class's cache holds up to 16 blocks, 32 KiB ones too, within the
 * thread's budget of parked bytes (1267 KiB for the classes up to 32 KiB,
 * shed_impl.h's MCACHE_BUDGET): a free over it gives back the older half
 * of its own class, or, when its class holds fewer than two, of the class
 * that holds most (shed.7, "The medium cache").  Manual release: no
 * release thread flushes the cache meanwhile. */
static void test_cache_budget(void **state)
{
    (void)state;
    if (CHECKED)
        skip();                           /* memcheck and ASan: no cache */
    enum { N = 16, K = 3 };
    static const size_t size[K] = { 32768, 28672, 24576 };
    char *(*b)[N] = scratch(K * sizeof *b);
    assert_int_equal(shed_config("release=manual,quarantine_kb=0"), 0);

    /* 512 + 448 KiB parked, then 12 of 24 KiB (1248 KiB); the 13th gives
     * back the 6 oldest of its class, then all fit (1200 KiB) */
    shed_trim();                          /* this thread's cache empty */
    for (int k = 0; k < K; k++)
        for (int i = 0; i < N; i++)
            assert_non_null(b[k][i] = shed_malloc(size[k]));
    for (int k = 0; k < K; k++)
        for (int i = 0; i < N; i++)
            shed_free(b[k][i]);
    for (int i = N - 1; i >= 6; i--)
        assert_ptr_equal(shed_malloc(size[2]), b[2][i]);
    char *y = shed_malloc(size[2]);
    assert_ptr_not_equal(y, b[2][5]);
    for (int i = N - 1; i >= 0; i--)      /* all 16 of 32 KiB */
        assert_ptr_equal(shed_malloc(size[0]), b[0][i]);
    shed_free(y);
    for (int i = 6; i < N; i++)
        shed_free(b[2][i]);
    for (int i = 0; i < N; i++)
        shed_free(b[0][i]);

    /* 512 + 448 KiB, 12 of 24 KiB (1248 KiB), then a 20 KiB block: over,
     * with its class empty, so the 32 KiB class gives back its 8 oldest */
    shed_trim();
    for (int k = 0; k < K; k++)
        for (int i = 0; i < N; i++)
            assert_non_null(b[k][i] = shed_malloc(size[k]));
    char *x = shed_malloc(20480);
    assert_non_null(x);
    for (int k = 0; k < K; k++)
        for (int i = 0; i < (k == 2 ? 12 : N); i++)
            shed_free(b[k][i]);
    shed_free(x);
    assert_ptr_equal(shed_malloc(20480), x);
    for (int i = N - 1; i >= 8; i--)
        assert_ptr_equal(shed_malloc(size[0]), b[0][i]);
    y = shed_malloc(size[0]);
    assert_ptr_not_equal(y, b[0][7]);
    for (int i = 11; i >= 0; i--)         /* the 24 KiB ones stayed */
        assert_ptr_equal(shed_malloc(size[2]), b[2][i]);
    shed_free(x);
    shed_free(y);
    for (int i = 8; i < N; i++)           /* the 28 KiB ones are parked */
        shed_free(b[0][i]);
    for (int i = 0; i < N; i++)
        shed_free(b[2][i]);
    shed_trim();
    munmap(b, K * sizeof *b);
    assert_int_equal(shed_config("release=batched,quarantine_kb=20000"), 0);
}

/* A page-sized block freed into the cache: shed_trim gives its page back
 * (the cache is flushed first), the live neighbour's page stays. */
static void test_cache_trim_releases(void **state)
{
    (void)state;
    size_t pg = page_size();
    if (pg > SHED_MEDIUM_MAX)
        skip();                           /* no class of a page */
    /* no quarantine: under a checker, nothing is cached nor held */
    assert_int_equal(shed_config("release=manual,quarantine_kb=0"), 0);
    char *a, *b;
    two_pages(thread_alloc, NULL, &a, &b);
    shed_free(a);
    shed_trim();
    check_a_released(a, b);
    shed_free(b);
    assert_int_equal(shed_config("release=batched,quarantine_kb=20000"), 0);
}

/* Batched mode: a block parked in the cache of a thread that goes on
 * allocating does not keep its page: the release thread asks the thread
 * to flush, and the page goes back (here polled up to 10 s, with a
 * medium malloc and free between looks, where the thread flushes). */
static void test_cache_release_thread(void **state)
{
    (void)state;
    size_t pg = page_size();
    if (pg > SHED_MEDIUM_MAX)
        skip();
    assert_int_equal(
        shed_config("release=batched,delay_ms=20,thread_after_kb=0,quarantine_kb=0"), 0);
    char *a, *b;
    two_pages(thread_alloc, NULL, &a, &b);
    shed_free(a);
    for (int i = 0; i < 1000 && resident(a) == 1; i++) {
        usleep(10000);
        shed_free(shed_malloc(700));
    }
    check_a_released(a, b);
    shed_free(b);
    assert_int_equal(shed_config("delay_ms=100,quarantine_kb=20000"), 0);
}

struct parked {
    char *blk[8];
    size_t size;
};

static void *park_and_exit(void *arg)
{
    struct parked *pk = arg;
    for (int i = 0; i < 8; i++) {
        pk->blk[i] = shed_malloc(pk->size);
        fill(pk->blk[i], writable(pk->blk[i], pk->size), 7);
    }
    for (int i = 0; i < 8; i++)
        shed_free(pk->blk[i]);            /* parked, then the thread ends */
    return NULL;
}

/* A thread that exits with blocks in its cache gives them back: they are
 * no longer in use, and their span, emptied, has its pages released. */
static void test_cache_thread_exit(void **state)
{
    (void)state;
    size_t pg = page_size();
    if (pg > SHED_MEDIUM_MAX)
        skip();
    assert_int_equal(shed_config("release=manual,quarantine_kb=0"), 0);
    struct parked *pk = scratch(sizeof *pk);
    pk->size = pg;
    struct shed_stats s0, s1;
    shed_stats(&s0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, park_and_exit, pk), 0);
    pthread_join(t, NULL);
    shed_stats(&s1);
    assert_int_equal(medium_in_use(&s1), medium_in_use(&s0));
    shed_trim();
    for (int i = 0; i < 8; i++)
        assert_int_equal(resident(pk->blk[i]), 0);
    munmap(pk, sizeof *pk);
    assert_int_equal(shed_config("release=batched,quarantine_kb=20000"), 0);
}

/* A thread that parks page-sized blocks (each its page's only block), then
 * waits on a pipe: it makes no call into shed until told. */
struct idle_parker {
    int fd[2];
    char *blk[8];
    char *keep;                           /* live through it all */
    _Atomic int parked;
    int parked_resident;                  /* blk[] all in memory once parked */
    int lost;                             /* keep's contents changed */
};

static void *park_and_block(void *arg)
{
    struct idle_parker *pk = arg;
    size_t pg = page_size();
    pk->keep = shed_malloc(pg);
    fill(pk->keep, writable(pk->keep, pg), 9);
    for (int i = 0; i < 8; i++) {
        pk->blk[i] = shed_malloc(pg);
        fill(pk->blk[i], writable(pk->blk[i], pg), (unsigned)i);
    }
    for (int i = 0; i < 8; i++)
        shed_free(pk->blk[i]);            /* parked (the first: its class's) */
    /* Looked at here, at once: the release thread may flush them two delays
     * from now, before a busy machine lets the test's thread look. */
    pk->parked_resident = 1;
    for (int i = 0; i < 8; i++)
        pk->parked_resident &= resident(pk->blk[i]) == 1;
    atomic_store(&pk->parked, 1);
    char c;
    while (read(pk->fd[0], &c, 1) < 0 && errno == EINTR)
        ;
    pk->lost = check_fill(pk->keep, writable(pk->keep, pg), 9) != -1;
    shed_free(pk->keep);
    return NULL;
}

/* Any of the parked blocks' pages still in memory? */
static bool any_resident(struct idle_parker *pk)
{
    for (int i = 0; i < 8; i++)
        if (resident(pk->blk[i]))
            return true;
    return false;
}

/* Start a parker and wait (up to 10 s) until its blocks are parked. */
static void start_parker(struct idle_parker *pk, pthread_t *t)
{
    assert_int_equal(pipe(pk->fd), 0);
    assert_int_equal(pthread_create(t, NULL, park_and_block, pk), 0);
    for (int i = 0; i < 1000 && !atomic_load(&pk->parked); i++)
        usleep(10000);
    assert_true(atomic_load(&pk->parked));
}

/* Wake the parker: its live block kept its contents. */
static void stop_parker(struct idle_parker *pk, pthread_t t)
{
    assert_int_equal(write(pk->fd[1], "x", 1), 1);
    pthread_join(t, NULL);
    assert_int_equal(pk->lost, 0);
    close(pk->fd[0]);
    close(pk->fd[1]);
}

/* Batched mode: the blocks parked by a thread that then waits, making no
 * call, leave memory all the same: the release thread asks it to flush,
 * then, one delay later, flushes its cache itself.  Polled up to 10 s; this
 * thread makes no call that could flush the other's cache (it allocates
 * blocks of another class, which starts the release thread). */
static void test_cache_idle_thread(void **state)
{
    (void)state;
    size_t pg = page_size();
    if (pg > SHED_MEDIUM_MAX || CHECKED)
        skip();                           /* memcheck and ASan: no cache */
    assert_int_equal(
        shed_config("release=batched,delay_ms=20,thread_after_kb=0,quarantine_kb=0"), 0);
    struct idle_parker *pk = scratch(sizeof *pk);
    pthread_t t;
    start_parker(pk, &t);
    assert_int_equal(pk->parked_resident, 1);
    for (int i = 0; i < 1000 && any_resident(pk); i++) {
        usleep(10000);
        shed_free(shed_malloc(20000));
    }
    for (int i = 0; i < 8; i++)
        assert_int_equal(resident(pk->blk[i]), 0);
    assert_int_equal(resident(pk->keep), 1);
    stop_parker(pk, t);
    munmap(pk, sizeof *pk);
    assert_int_equal(shed_config("delay_ms=100,quarantine_kb=20000"), 0);
}

/* Manual mode: shed_trim flushes the cache of a thread that waits, and
 * gives the pages back at once. */
static void test_cache_idle_trim(void **state)
{
    (void)state;
    size_t pg = page_size();
    if (pg > SHED_MEDIUM_MAX || CHECKED)
        skip();
    assert_int_equal(shed_config("release=manual,quarantine_kb=0"), 0);
    struct idle_parker *pk = scratch(sizeof *pk);
    pthread_t t;
    start_parker(pk, &t);
    shed_trim();
    for (int i = 0; i < 8; i++)
        assert_int_equal(resident(pk->blk[i]), 0);
    assert_int_equal(resident(pk->keep), 1);
    stop_parker(pk, t);
    munmap(pk, sizeof *pk);
    assert_int_equal(shed_config("release=batched,quarantine_kb=20000"), 0);
}

struct fork_parker {
    pthread_barrier_t b;
    char *blk[8];
    char *keep;                           /* here, not on the thread's stack:
                                             the child's leak check sees it */
};

static void *park_and_wait(void *arg)
{
    struct fork_parker *pk = arg;
    char *keep = pk->keep = shed_malloc(2500);
    for (int i = 0; i < 8; i++)
        pk->blk[i] = shed_malloc(2500);
    for (int i = 0; i < 8; i++)
        shed_free(pk->blk[i]);
    pthread_barrier_wait(&pk->b);         /* parked */
    pthread_barrier_wait(&pk->b);         /* the fork is done */
    shed_free(keep);
    return NULL;
}

/* fork() while another thread has blocks parked: in the child they are
 * never handed out (the child's view: still allocated, in the spans the
 * child takes over at its trim), whatever the child allocates; the parent's
 * thread still has them. */
static void test_cache_fork(void **state)
{
    (void)state;
    enum { N = 400 };
    struct fork_parker *pk = scratch(sizeof *pk);
    pthread_barrier_init(&pk->b, NULL, 2);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, park_and_wait, pk), 0);
    pthread_barrier_wait(&pk->b);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int bad = 0;
        char **p = scratch(N * sizeof *p);
        for (int round = 0; round < 2; round++) {
            for (int i = 0; i < N; i++) {
                p[i] = shed_malloc(2500);
                bad |= !p[i];
                for (int k = 0; k < 8; k++)
                    bad |= p[i] == pk->blk[k];
                fill(p[i], writable(p[i], 2500), (unsigned)i);
            }
            for (int i = 0; i < N; i++) {
                bad |= check_fill(p[i], writable(p[i], 2500), (unsigned)i) != -1;
                shed_free(p[i]);
            }
            shed_trim();                  /* the parent's spans: the child's */
        }
        _exit(bad ? 3 : 0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    pthread_barrier_wait(&pk->b);
    pthread_join(t, NULL);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    pthread_barrier_destroy(&pk->b);
    munmap(pk, sizeof *pk);
}

/* Parked blocks count as free in shed_stats. */
static void test_cache_stats(void **state)
{
    (void)state;
    struct shed_stats s0, s1, s2;
    shed_stats(&s0);
    char *p = shed_malloc(5000);
    assert_non_null(p);
    shed_stats(&s1);
    shed_free(p);
    shed_stats(&s2);
    if (!SHED_TEST_PRELOAD) {
        assert_int_equal(medium_in_use(&s1), medium_in_use(&s0) + 1);
        assert_int_equal(medium_in_use(&s2), medium_in_use(&s0));
    }
}

/* ---- other threads ---- */

enum { RING = 512 };
struct ring {
    char *slot[RING];
    size_t size[RING];
    _Atomic int full[RING];
    size_t count;
};

static void *consumer(void *arg)
{
    struct ring *r = arg;
    for (size_t k = 0; k < r->count; k++) {
        size_t i = k % RING;
        while (!atomic_load(&r->full[i]))
            sched_yield();
        char *b = r->slot[i];
        if (check_fill(b, writable(b, r->size[i]), (unsigned)r->size[i]) != -1)
            return (void *)1;
        shed_free(b);
        atomic_store(&r->full[i], 0);
    }
    return NULL;
}

/* Blocks made by one thread and freed by another, checked by contents, with
 * the freeing thread's frees reaching the owner's spans (its later blocks
 * are intact and distinct). */
static void test_cross_thread(void **state)
{
    (void)state;
    struct ring *r = scratch(sizeof *r);
    r->count = (size_t)scaled(20000);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, consumer, r), 0);
    unsigned seed = 1;
    for (size_t k = 0; k < r->count; k++) {
        size_t i = k % RING;
        while (atomic_load(&r->full[i]))
            sched_yield();
        seed = seed * 1103515245u + 12345u;
        size_t n = SHED_MAX_BLOCK + 1 + (seed >> 8) % (SHED_MEDIUM_MAX - SHED_MAX_BLOCK);
        char *b = shed_malloc(n);
        assert_non_null(b);
        fill(b, writable(b, n), (unsigned)n);
        r->slot[i] = b;
        r->size[i] = n;
        atomic_store(&r->full[i], 1);
    }
    void *bad;
    pthread_join(t, &bad);
    assert_null(bad);
    munmap(r, sizeof *r);
}

static void *make_and_exit(void *arg)
{
    char **p = arg;
    for (int i = 0; i < 64; i++) {
        p[i] = shed_malloc(1000 + (size_t)i * 300);
        fill(p[i], writable(p[i], 1000 + (size_t)i * 300), (unsigned)i);
    }
    return NULL;
}

/* A thread exits with live blocks: its spans go to the orphanage; the
 * blocks stay intact, are freed from here, and their spans empty. */
static void test_orphans(void **state)
{
    (void)state;
    char **p = scratch(64 * sizeof *p);
    pthread_t t;
    struct shed_stats s0, s1;
    shed_stats(&s0);
    assert_int_equal(pthread_create(&t, NULL, make_and_exit, p), 0);
    pthread_join(t, NULL);
    for (int i = 0; i < 64; i++) {
        assert_int_equal(check_fill(p[i], writable(p[i], 1000 + (size_t)i * 300), (unsigned)i),
                         -1);
        shed_free(p[i]);
    }
    shed_trim();                           /* merges the orphanage's frees */
    shed_stats(&s1);
    if (!SHED_TEST_PRELOAD)
        assert_int_equal(medium_in_use(&s1), medium_in_use(&s0));
    munmap(p, 64 * sizeof *p);
}

/* ---- heaps, freeze, fork ---- */

/* A heap's medium blocks share no span with the thread's; destroying the
 * heap frees them all. */
static void test_heap(void **state)
{
    (void)state;
    enum { N = 300 };
    char **mine = scratch(N * sizeof *mine), **its = scratch(N * sizeof *its);
    shed_heap_t *h = shed_heap_new(0);
    assert_non_null(h);
    struct shed_stats s0, s1, s2;
    shed_stats(&s0);
    for (int i = 0; i < N; i++) {
        size_t n = 600 + (size_t)i * 97;
        mine[i] = shed_malloc(n);
        its[i] = shed_heap_malloc(h, n);
        assert_non_null(mine[i]);
        assert_non_null(its[i]);
        fill(its[i], writable(its[i], n), 4);
    }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            assert_true(span_of(mine[i]) != span_of(its[j]));
    shed_stats(&s1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(check_fill(its[i], writable(its[i], 600 + (size_t)i * 97), 4), -1);
        shed_free(mine[i]);
    }
    assert_int_equal(medium_in_use(&s1), medium_in_use(&s0) + 2 * N);
    shed_heap_destroy(h);
    shed_stats(&s2);
    if (!SHED_TEST_PRELOAD)
        assert_int_equal(medium_in_use(&s2), medium_in_use(&s0));
    munmap(mine, N * sizeof *mine);
    munmap(its, N * sizeof *its);
}

/* After shed_freeze no new medium block lands in a span that was in use;
 * after shed_thaw they may again. */
static void test_freeze(void **state)
{
    (void)state;
    enum { N = 200 };
    char **old = scratch(N * sizeof *old), **young = scratch(N * sizeof *young);
    for (int i = 0; i < N; i++) {
        old[i] = shed_malloc(2000);
        assert_non_null(old[i]);
    }
    for (int i = 0; i < N; i += 2)
        shed_free(old[i]);                 /* room in the old spans */
    shed_freeze();
    for (int i = 0; i < N; i++) {
        young[i] = shed_malloc(2000);
        assert_non_null(young[i]);
        for (int j = 1; j < N; j += 2)
            assert_true(span_of(young[i]) != span_of(old[j]));
    }
    shed_thaw();
    for (int i = 0; i < N; i++)
        shed_free(young[i]);
    for (int i = 1; i < N; i += 2)
        shed_free(old[i]);
    munmap(old, N * sizeof *old);
    munmap(young, N * sizeof *young);
}

/* fork(): the child sees the parent's medium blocks intact, frees some,
 * makes its own; the parent's are untouched by what the child did. */
static void test_fork(void **state)
{
    (void)state;
    enum { N = 200 };
    char **p = scratch(N * sizeof *p);
    for (int i = 0; i < N; i++) {
        p[i] = shed_malloc(700 + (size_t)i * 150);
        assert_non_null(p[i]);
        fill(p[i], writable(p[i], 700 + (size_t)i * 150), 5);
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int bad = 0;
        for (int i = 0; i < N; i++) {
            bad |= check_fill(p[i], writable(p[i], 700 + (size_t)i * 150), 5) != -1;
            if (i % 2)
                shed_free(p[i]);
        }
        for (int round = 0; round < 3; round++) {
            for (int i = 1; i < N; i += 2) {
                p[i] = shed_malloc(900 + (size_t)i * 100);
                bad |= !p[i];
                fill(p[i], writable(p[i], 900 + (size_t)i * 100), 6);
            }
            for (int i = 1; i < N; i += 2) {
                bad |= check_fill(p[i], writable(p[i], 900 + (size_t)i * 100), 6) != -1;
                shed_free(p[i]);
            }
        }
        shed_trim();                       /* reclaims the parent's spans */
        for (int i = 0; i < N; i += 2) {
            bad |= check_fill(p[i], writable(p[i], 700 + (size_t)i * 150), 5) != -1;
            shed_free(p[i]);
        }
        _exit(bad ? 3 : 0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(check_fill(p[i], writable(p[i], 700 + (size_t)i * 150), 5), -1);
        shed_free(p[i]);
    }
    munmap(p, N * sizeof *p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_class),
        cmocka_unit_test(test_aligned),
        cmocka_unit_test(test_realloc_ranges),
        cmocka_unit_test(test_quarantine),
        cmocka_unit_test(test_release_partly_live),
        cmocka_unit_test(test_release_batched),
        cmocka_unit_test(test_release_races_owner),
        cmocka_unit_test(test_cache_reuse),
        cmocka_unit_test(test_cache_budget),
        cmocka_unit_test(test_cache_trim_releases),
        cmocka_unit_test(test_cache_release_thread),
        cmocka_unit_test(test_cache_thread_exit),
        cmocka_unit_test(test_cache_idle_thread),
        cmocka_unit_test(test_cache_idle_trim),
        cmocka_unit_test(test_cache_steal_races_owner),
        cmocka_unit_test(test_cache_stats),
        cmocka_unit_test(test_cache_fork),
        cmocka_unit_test(test_cross_thread),
        cmocka_unit_test(test_orphans),
        cmocka_unit_test(test_heap),
        cmocka_unit_test(test_freeze),
        cmocka_unit_test(test_fork),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

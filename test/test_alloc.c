/*
 * Allocation contracts: every size class, alignment, calloc, realloc, free,
 * usable sizes and foreign pointers.
 */
#include "shed_test.h"

#include <malloc.h>

static uint64_t large_allocs(void)
{
    struct shed_stats st;
    shed_stats(&st);
    return st.large_allocs;
}

/* Every size 0..512 and some above: non-NULL, 16-byte aligned, usable size
 * rounded up to 16 (at least the request above 512), and the whole usable
 * size ours: all blocks stay live and filled, so an overlap shows. */
static void test_every_size(void **state)
{
    (void)state;
    enum { PER = 3, TOP = 600 };
    static void *blk[TOP + 1][PER];
    for (size_t n = 0; n <= TOP; n++) {
        for (int k = 0; k < PER; k++) {
            void *p = shed_malloc(n);
            assert_non_null(p);
            assert_int_equal((uintptr_t)p % 16, 0);
            size_t u = shed_usable_size(p);
            if (n <= SHED_MAX_BLOCK)
                assert_int_equal(u, usable_of(n));
            else
                assert_true(u >= n);
            fill(p, writable(p, n), (unsigned)n);
            blk[n][k] = p;
        }
    }
    for (size_t n = 0; n <= TOP; n++) {
        for (int k = 0; k < PER; k++) {
            void *p = blk[n][k];
            assert_int_equal(check_fill(p, writable(p, n), (unsigned)n), -1);
            shed_free(p);
        }
    }
}

/* Around the class boundaries and the limits: 512 is a pool block, 513 a
 * medium block of 640, SHED_MEDIUM_MAX + 1 goes to the system allocator. */
static void test_boundaries(void **state)
{
    (void)state;
    static const size_t sizes[] = { 1, 15, 16, 17, 31, 32, 33, 255, 256, 257,
                                    495, 496, 497, 511, 512 };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        uint64_t before = large_allocs();
        void *p = shed_malloc(sizes[i]);
        assert_int_equal(large_allocs(), before);
        assert_non_null(p);
        assert_int_equal(shed_usable_size(p), usable_of(sizes[i]));
        shed_free(p);
    }
    static const size_t over[] = { SHED_MAX_BLOCK + 1, SHED_MEDIUM_MAX, SHED_MEDIUM_MAX + 1 };
    for (size_t i = 0; i < sizeof over / sizeof *over; i++) {
        size_t n = over[i];
        uint64_t before = large_allocs();
        void *big = shed_malloc(n);
        assert_non_null(big);
        assert_int_equal(large_allocs(), before + (n > SHED_MEDIUM_MAX));
        if (n <= SHED_MEDIUM_MAX)
            assert_int_equal(shed_usable_size(big), CHECKED ? n : medium_block(n, 0));
        else
            assert_true(shed_usable_size(big) >= n);
        assert_int_equal((uintptr_t)big % 16, 0);
        fill(big, n, 7);
        assert_int_equal(check_fill(big, n, 7), -1);
        shed_free(big);
    }
}

/* malloc(0) gives distinct, freeable 16-byte blocks. */
static void test_malloc_zero(void **state)
{
    (void)state;
    void *a = shed_malloc(0), *b = shed_malloc(0);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_int_equal(shed_usable_size(a), usable_of(0));
    size_t w = writable(a, 0);
    memset(a, 1, w);
    memset(b, 2, w);
    for (size_t i = 0; i < w; i++)
        assert_int_equal(((unsigned char *)a)[i], 1);
    shed_free(a);
    shed_free(b);
}

static void test_malloc_huge_fails(void **state)
{
    (void)state;
    errno = 0;
    void *p = shed_malloc((size_t)1 << 62);
    assert_null(p);
    assert_int_equal(errno, ENOMEM);
}

/* Every power-of-two alignment, with sizes around it.  Pools serve it when
 * alignment and rounded size fit in 512 bytes, a medium class when one is a
 * multiple of the alignment; glibc serves the rest. */
static void test_aligned_alloc(void **state)
{
    (void)state;
    for (size_t a = 1; a <= 65536; a *= 2) {
        const size_t sizes[] = { 1, a / 2 ? a / 2 : 1, a > 1 ? a - 1 : 1, a, a + 1,
                                 3 * a, 500, 512, 513, 4096, 5000, 32768, 32769 };
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            size_t n = sizes[i];
            size_t rounded = (n + a - 1) & ~(a - 1);
            bool pooled = a <= SHED_MAX_BLOCK && rounded <= SHED_MAX_BLOCK;
            uint64_t before = large_allocs();
            void *p = shed_aligned_alloc(a, n);
            assert_non_null(p);
            assert_int_equal((uintptr_t)p % a, 0);
            size_t u = shed_usable_size(p);
            size_t medium = pooled ? 0 : medium_block(n, a);
            if (pooled) {
                assert_int_equal(large_allocs(), before);
                assert_int_equal(u, CHECKED ? n : round16(rounded));
            } else if (medium) {
                assert_int_equal(large_allocs(), before);
                assert_int_equal(u, CHECKED ? n : medium);
            } else {
                assert_int_equal(large_allocs(), before + 1);
                assert_true(u >= n);
            }
            size_t w = writable(p, n);
            fill(p, w, (unsigned)(a + n));
            assert_int_equal(check_fill(p, w, (unsigned)(a + n)), -1);
            shed_free(p);
        }
    }
}

/* Pool-served aligned blocks that all stay live at once are all aligned and
 * do not overlap. */
static void test_aligned_many(void **state)
{
    (void)state;
    enum { N = 64 };
    void *p[N];
    for (size_t a = 32; a <= SHED_MAX_BLOCK; a *= 2) {
        for (int i = 0; i < N; i++) {
            p[i] = shed_aligned_alloc(a, 20);
            assert_non_null(p[i]);
            assert_int_equal((uintptr_t)p[i] % a, 0);
            fill(p[i], writable(p[i], 20), (unsigned)i);
        }
        for (int i = 0; i < N; i++) {
            assert_int_equal(check_fill(p[i], writable(p[i], 20), (unsigned)i), -1);
            shed_free(p[i]);
        }
    }
}

static void test_aligned_bad(void **state)
{
    (void)state;
#ifdef SHED_PRELOAD_NAMES_H
    /* aligned_alloc, the drop-in, does what the glibc underneath does with
     * these (test/preload/semantics.c checks); shed_aligned_alloc says no. */
    skip();
#endif
    static const size_t bad[] = { 3, 5, 6, 12, 24, 48, 96, 100, 768, 1000, 4095, 4097,
                                  ((size_t)1 << 20) + 16 };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        errno = 0;
        assert_null(shed_aligned_alloc(bad[i], 16));
        assert_int_equal(errno, EINVAL);
    }
}

/* calloc zeroes, also blocks that come back dirty from a free. */
static void test_calloc_zero(void **state)
{
    (void)state;
    enum { N = 64 };
    void *p[N];
    /* Under a checker freed blocks wait in the quarantine before they are
     * handed out again; this test needs them back at once. */
    assert_int_equal(shed_config("quarantine_kb=0"), 0);
    for (size_t s = 16; s <= SHED_MAX_BLOCK + 16; s += 16) {
        for (int i = 0; i < N; i++) {
            p[i] = shed_malloc(s);
            assert_non_null(p[i]);
            memset(p[i], 0xAA, s);
        }
        for (int i = 0; i < N; i++)
            shed_free(p[i]);
        int reused = 0;
        void *q[N];
        for (int i = 0; i < N; i++) {
            /* split s into nmemb * size in different ways */
            q[i] = i % 2 ? shed_calloc(s / 16, 16) : shed_calloc(1, s);
            assert_non_null(q[i]);
            const unsigned char *b = q[i];
            for (size_t k = 0; k < s; k++)
                assert_int_equal(b[k], 0);
            for (int j = 0; j < N; j++)
                reused += q[i] == p[j];
        }
        /* the dirty blocks were handed out again (else this proves little) */
        if (s <= SHED_MAX_BLOCK)
            assert_true(reused > 0);
        for (int i = 0; i < N; i++)
            shed_free(q[i]);
    }
    void *z = shed_calloc(0, 8);
    assert_non_null(z);
    shed_free(z);
    assert_int_equal(shed_config("quarantine_kb=20000"), 0);   /* the default */
}

static void test_calloc_overflow(void **state)
{
    (void)state;
    static const size_t pairs[][2] = {
        { SIZE_MAX, 2 }, { 2, SIZE_MAX }, { SIZE_MAX / 2 + 1, 2 },
        { (size_t)1 << 33, (size_t)1 << 31 }, { SIZE_MAX, SIZE_MAX } };
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        errno = 0;
        assert_null(shed_calloc(pairs[i][0], pairs[i][1]));
        assert_int_equal(errno, ENOMEM);
    }
}

/* Pattern independent of the block's address, to follow data through moves. */
static void fill_data(void *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        ((unsigned char *)p)[i] = (unsigned char)(i * 13 + seed);
}

static long check_data(const void *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (((const unsigned char *)p)[i] != (unsigned char)(i * 13 + seed))
            return (long)i;
    return -1;
}

/* realloc through a chain of sizes: within a class, across classes, to and
 * from large; the common prefix survives every step. */
static void test_realloc_chain(void **state)
{
    (void)state;
    static const size_t chain[] = { 1, 10, 16, 17, 30, 32, 100, 64, 65, 512, 513, 4000,
                                    200000, 300, 299, 5, 511, 1000, 512, 16, 1 };
    size_t cur = chain[0];
    unsigned char *p = shed_realloc(NULL, cur);     /* realloc(NULL) = malloc */
    assert_non_null(p);
    fill_data(p, cur, 1);
    for (size_t i = 1; i < sizeof chain / sizeof *chain; i++) {
        size_t n = chain[i];
        p = shed_realloc(p, n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        assert_true(shed_usable_size(p) >= n);
        if (n <= SHED_MAX_BLOCK)
            assert_int_equal(shed_usable_size(p), usable_of(n));
        assert_int_equal(check_data(p, cur < n ? cur : n, 1), -1);
        fill_data(p, n, 1);
        cur = n;
    }
    shed_free(p);
}

/* Growing and shrinking inside one class keeps the data too. */
static void test_realloc_same_class(void **state)
{
    (void)state;
    unsigned char *p = shed_malloc(33);
    fill_data(p, 33, 9);
    p = shed_realloc(p, 48);
    assert_non_null(p);
    assert_int_equal(shed_usable_size(p), 48);
    assert_int_equal(check_data(p, 33, 9), -1);
    p = shed_realloc(p, 34);
    assert_non_null(p);
    assert_int_equal(check_data(p, 33, 9), -1);
    shed_free(p);
}

/* Under a checker (memcheck, ASan) a freed block is held back, as memcheck's
 * own malloc holds it, so that a write through a stale pointer finds it
 * no-access rather than reused: the next blocks of its size are others.
 * Without a checker it is handed out again at once.  Held or not, it is free
 * for shed_stats; quarantine_kb=0 turns the holding off. */
static void test_quarantine(void **state)
{
    (void)state;
    enum { N = 64 };
    void *p = shed_malloc(72), *q[N];
    assert_non_null(p);
    memset(p, 1, 72);
    struct shed_stats a, b;
    shed_stats(&a);
    shed_free(p);
    shed_stats(&b);
    assert_int_equal(b.classes[4].blocks_in_use + 1, a.classes[4].blocks_in_use);
    int seen = 0;
    for (int i = 0; i < N; i++)
        seen += (q[i] = shed_malloc(72)) == p;
    assert_int_equal(seen, CHECKED ? 0 : 1);
    for (int i = 0; i < N; i++)
        shed_free(q[i]);

    assert_int_equal(shed_config("quarantine_kb=0"), 0);
    p = shed_malloc(72);
    shed_free(p);
    q[0] = shed_malloc(72);
    assert_ptr_equal(q[0], p);
    shed_free(q[0]);
    assert_int_equal(shed_config("quarantine_kb=20000"), 0);   /* the default */
}

/* realloc(p, 0) frees p and returns NULL (glibc). */
static void test_realloc_zero(void **state)
{
    (void)state;
    void *p = shed_malloc(40);
    assert_non_null(p);
    struct shed_stats a, b;
    shed_stats(&a);
    assert_null(shed_realloc(p, 0));
    shed_stats(&b);
    assert_int_equal(b.classes[2].blocks_in_use + 1, a.classes[2].blocks_in_use);
}

/* A failed realloc leaves the block alone. */
static void test_realloc_fail_keeps_block(void **state)
{
    (void)state;
    unsigned char *p = shed_malloc(100);
    fill_data(p, 100, 3);
    errno = 0;
    assert_null(shed_realloc(p, (size_t)1 << 62));
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(check_data(p, 100, 3), -1);
    shed_free(p);
}

static void test_free_null(void **state)
{
    (void)state;
    struct shed_stats a, b;
    shed_stats(&a);
    shed_free(NULL);
    assert_int_equal(shed_usable_size(NULL), 0);
    shed_stats(&b);
    assert_int_equal(a.blocks_in_use, b.blocks_in_use);
    assert_int_equal(a.errors, b.errors);
}

/* A block of glibc's own allocator given to shed is forwarded to glibc: its
 * usable size is glibc's, free really frees it (glibc's in-use bytes drop;
 * under valgrind, its leak check would see it otherwise), realloc moves it. */
static void test_foreign_pointer(void **state)
{
    (void)state;
    struct shed_stats a, b;
    shed_stats(&a);
    unsigned char *q = system_malloc(4000);
    assert_non_null(q);
    assert_true(shed_usable_size(q) >= 4000);
    struct mallinfo2 m0 = mallinfo2();
    shed_free(q);
    struct mallinfo2 m1 = mallinfo2();
    if (!RUNNING_ON_VALGRIND && !SANITIZED)     /* glibc's own counters */
        assert_true(m0.uordblks >= m1.uordblks + 4000);

    q = system_malloc(1000);
    fill_data(q, 1000, 5);
    unsigned char *r = shed_realloc(q, 100);          /* into a pool */
    assert_non_null(r);
    assert_int_equal(shed_usable_size(r), usable_of(100));
    assert_int_equal(check_data(r, 100, 5), -1);
    shed_free(r);

    q = system_malloc(1000);
    fill_data(q, 1000, 6);
    r = shed_realloc(q, 3000);                        /* stays with glibc */
    assert_non_null(r);
    assert_int_equal(check_data(r, 1000, 6), -1);
    shed_free(r);
    shed_stats(&b);
    assert_int_equal(a.errors, b.errors);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_size),
        cmocka_unit_test(test_boundaries),
        cmocka_unit_test(test_malloc_zero),
        cmocka_unit_test(test_malloc_huge_fails),
        cmocka_unit_test(test_aligned_alloc),
        cmocka_unit_test(test_aligned_many),
        cmocka_unit_test(test_aligned_bad),
        cmocka_unit_test(test_calloc_zero),
        cmocka_unit_test(test_calloc_overflow),
        cmocka_unit_test(test_realloc_chain),
        cmocka_unit_test(test_realloc_same_class),
        cmocka_unit_test(test_realloc_zero),
        cmocka_unit_test(test_quarantine),
        cmocka_unit_test(test_realloc_fail_keeps_block),
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_foreign_pointer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

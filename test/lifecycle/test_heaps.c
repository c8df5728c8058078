/*
 * Heaps: blocks of two heaps and of the default heap never share a
 * page; shed_heap_destroy frees every block (small and large) and gives
 * every page back; heaps are used from several threads with cross-thread
 * frees; shed_free, shed_usable_size and shed_realloc take heap blocks.
 */
#include "lc.h"

#include <malloc.h>

static size_t uniq_pages(void **b, size_t n, void **pages)
{
    for (size_t i = 0; i < n; i++)
        pages[i] = page_of(b[i]);
    qsort(pages, n, sizeof *pages, lc_cmp_ptr);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || pages[k - 1] != pages[i])
            pages[k++] = pages[i];
    return k;
}

/* Interleaved allocations of every class from heaps A and B and from the
 * default heap: three disjoint sets of pages. */
static void test_no_shared_pages(void **state)
{
    (void)state;
    size_t n = (size_t)scaled(6000);
    void **b[3], **pg[3];
    size_t np[3];
    shed_heap_t *h[2] = { shed_heap_new(0), shed_heap_new(0) };
    assert_non_null(h[0]);
    assert_non_null(h[1]);
    assert_ptr_not_equal(h[0], h[1]);
    for (int k = 0; k < 3; k++) {
        b[k] = lc_scratch(n * sizeof(void *));
        pg[k] = lc_scratch(n * sizeof(void *));
    }
    for (size_t i = 0; i < n; i++) {
        size_t size = 1 + (i * 37) % SHED_MAX_BLOCK;
        for (int k = 0; k < 3; k++) {
            b[k][i] = k < 2 ? shed_heap_malloc(h[k], size) : shed_malloc(size);
            assert_non_null(b[k][i]);
            fill(b[k][i], size, (unsigned)k);
        }
    }
    for (int k = 0; k < 3; k++)
        np[k] = uniq_pages(b[k], n, pg[k]);
    for (int k = 0; k < 3; k++)
        for (int j = k + 1; j < 3; j++)
            for (size_t i = 0; i < np[k]; i++)
                assert_false(lc_in_pages(pg[j], np[j], pg[k][i]));
    /* contents intact; the default heap's and B's blocks freed one by one */
    for (size_t i = 0; i < n; i++) {
        size_t size = 1 + (i * 37) % SHED_MAX_BLOCK;
        for (int k = 0; k < 3; k++)
            assert_int_equal(check_fill(b[k][i], size, (unsigned)k), -1);
        shed_free(b[2][i]);
        shed_free(b[1][i]);
    }
    shed_heap_destroy(h[0]);
    shed_heap_destroy(h[1]);
    for (int k = 0; k < 3; k++) {
        munmap(b[k], n * sizeof(void *));
        munmap(pg[k], n * sizeof(void *));
    }
}

/* glibc's count of bytes in use (arena and mmapped chunks). */
static size_t glibc_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* Destroy frees every block: the counters drop back, the large blocks go
 * back to glibc, and the pages leave memory (released by the background
 * thread for one heap, by shed_trim for the other). */
static void destroy_one(bool trim)
{
    shed_trim();
    assert_true(lc_wait_settled(0, LC_WAIT_MS));
    struct shed_stats s0 = lc_stats();
    size_t g0 = glibc_in_use();

    shed_heap_t *h = shed_heap_new(0);
    assert_non_null(h);
    size_t n = (size_t)scaled(20000), nl = 16, large_bytes = 0;
    void **b = lc_scratch(n * sizeof(void *));
    void **pages = lc_scratch(n * sizeof(void *));
    for (size_t i = 0; i < n; i++) {
        size_t size = 16 + (i * 53) % (SHED_MAX_BLOCK - 16);
        b[i] = i % 3 ? shed_heap_malloc(h, size) : shed_heap_calloc(h, 1, size);
        assert_non_null(b[i]);
        if (i % 3 == 0)
            for (size_t j = 0; j < size; j++)
                assert_int_equal(((unsigned char *)b[i])[j], 0);
        fill(b[i], size, 9);
    }
    void *large[16];
    for (size_t i = 0; i < nl; i++) {
        /* glibc's heap and its mmap */
        size_t size = i % 2 ? SHED_MEDIUM_MAX + 1000 + i * 100 : (256 << 10) + i * 4096;
        large[i] = shed_heap_malloc(h, size);
        assert_non_null(large[i]);
        memset(large[i], (int)i, size);
        large_bytes += size;
    }
    size_t np = uniq_pages(b, n, pages);
    struct shed_stats s1 = lc_stats();
    assert_int_equal(s1.blocks_in_use, s0.blocks_in_use + n);
    assert_true(s1.pools_in_use >= s0.pools_in_use + np);
    /* memcheck's malloc has no mallinfo; a sanitizer's is not glibc's */
    if (!RUNNING_ON_VALGRIND && !SANITIZED)
        assert_true(glibc_in_use() >= g0 + large_bytes);
    assert_int_equal(lc_resident_count(pages, np), np);

    shed_heap_destroy(h);
    struct shed_stats s2 = lc_stats();
    assert_int_equal(s2.blocks_in_use, s0.blocks_in_use);
    assert_int_equal(s2.pools_in_use, s0.pools_in_use);
    assert_true(s2.pools_dirty + s2.pools_releasing + s2.pages_released - s0.pages_released >= np);
    /* every large block went back to glibc (under memcheck, its leak
     * check says so) */
    if (!RUNNING_ON_VALGRIND && !SANITIZED)
        assert_true(glibc_in_use() < g0 + large_bytes / 16);
    if (trim) {
        assert_true(shed_trim() >= np * page_size());
        assert_int_equal(lc_resident_count(pages, np), 0);
    } else {
        assert_true(lc_wait_released(pages, np, 0, LC_WAIT_MS));
    }
    assert_true(lc_wait_settled(0, LC_WAIT_MS));
    struct shed_stats s3 = lc_stats();
    assert_true(s3.pages_released >= s0.pages_released + np);
    assert_true(s3.bytes_resident <= s0.bytes_resident + 2 * page_size());
    munmap(b, n * sizeof(void *));
    munmap(pages, n * sizeof(void *));
}

static void test_destroy_background(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=batched,delay_ms=0"), 0);
    destroy_one(false);
}

static void test_destroy_trim(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=manual"), 0);
    destroy_one(true);
    assert_int_equal(shed_config("release=batched"), 0);
}

/* The calls of the default heap take heap blocks. */
static void test_default_calls(void **state)
{
    (void)state;
    shed_heap_t *h = shed_heap_new(0);
    assert_non_null(h);
    assert_null(shed_heap_new(1));
    for (size_t size = 1; size <= SHED_MAX_BLOCK; size += 13) {
        unsigned char *p = shed_heap_malloc(h, size);
        assert_non_null(p);
        assert_int_equal(shed_usable_size(p), usable_of(size));
        fill(p, size, 4);
        /* shed_realloc grows it (same class or not), keeps the content */
        unsigned char *q = shed_realloc(p, size + 40);
        assert_non_null(q);
        assert_true(shed_usable_size(q) >= size + 40);
        assert_int_equal(lc_check_moved(q, p, size, 4), -1);
        /* ... and shed_heap_realloc moves it back into the heap */
        unsigned char *r = shed_heap_realloc(h, q, size);
        assert_non_null(r);
        assert_int_equal(lc_check_moved(r, p, size, 4), -1);
        shed_free(r);
    }
    /* large blocks: usable size, realloc both ways, free of one of them */
    unsigned char *l = shed_heap_malloc(h, 5000);
    assert_non_null(l);
    assert_true(shed_usable_size(l) >= 5000);
    fill(l, 5000, 5);
    unsigned char *l2 = shed_realloc(l, 9000);
    assert_non_null(l2);
    assert_int_equal(lc_check_moved(l2, l, 5000, 5), -1);
    unsigned char *s = shed_heap_realloc(h, l2, 100);
    assert_non_null(s);
    assert_int_equal(lc_check_moved(s, l, 100, 5), -1);
    unsigned char *l3 = shed_heap_realloc(h, s, 700);
    assert_non_null(l3);
    assert_int_equal(lc_check_moved(l3, l, 100, 5), -1);
    unsigned char *l4 = shed_heap_malloc(h, 3000);
    assert_non_null(l4);
    shed_free(l3);                /* then destroy must not free it again */
    assert_non_null(shed_heap_realloc(h, NULL, 10));
    shed_heap_destroy(h);         /* frees l4 and the 10-byte block */
    shed_heap_destroy(NULL);
}

/* Threads share two heaps: each allocates from both, hands half of its
 * blocks to the next thread, which checks and frees them (remote frees);
 * shed_heap_realloc from other threads too.  Nothing is lost or mixed up. */
enum { NT = 3, BOX = 512 };
struct box {
    pthread_mutex_t m;
    void *b[BOX];
    size_t size[BOX];
    unsigned seed[BOX];
    size_t n;
};
struct hw {
    int id;
    shed_heap_t **h;
    struct box *in, *out;
    long rounds, errors;
    void **keep;
    size_t nkeep;
};

static void *heap_worker(void *arg)
{
    struct hw *w = arg;
    uint64_t rnd = 99u + (uint64_t)w->id;
    void *b[256];
    size_t sz[256];
    w->keep = lc_scratch(4096 * sizeof(void *));
    for (long r = 0; r < w->rounds; r++) {
        unsigned seed = (unsigned)(r * NT + w->id);
        for (int i = 0; i < 256; i++) {
            sz[i] = 1 + test_rand(&rnd) % SHED_MAX_BLOCK;
            b[i] = shed_heap_malloc(w->h[i % 2], sz[i]);
            if (!b[i]) {
                w->errors++;
                return NULL;
            }
            fill(b[i], sz[i], seed);
        }
        for (int i = 0; i < 256; i++) {
            w->errors += check_fill(b[i], sz[i], seed) != -1;
            if (i % 4 == 0) {
                /* grow within the heap */
                void *q = shed_heap_realloc(w->h[i % 2], b[i], sz[i] + 100);
                if (!q || lc_check_moved(q, b[i], sz[i], seed) != -1)
                    w->errors++;
                shed_free(q);
            } else if (i % 4 == 1) {
                pthread_mutex_lock(&w->out->m);
                bool put = w->out->n < BOX;
                if (put) {
                    size_t j = w->out->n++;
                    w->out->b[j] = b[i], w->out->size[j] = sz[i], w->out->seed[j] = seed;
                }
                pthread_mutex_unlock(&w->out->m);
                if (!put)
                    shed_free(b[i]);
            } else if (i % 64 == 2 && w->nkeep < 4096) {
                w->keep[w->nkeep++] = b[i];   /* left for destroy */
            } else {
                shed_free(b[i]);
            }
        }
        pthread_mutex_lock(&w->in->m);
        for (size_t j = 0; j < w->in->n; j++) {
            w->errors += check_fill(w->in->b[j], w->in->size[j], w->in->seed[j]) != -1;
            shed_free(w->in->b[j]);
        }
        w->in->n = 0;
        pthread_mutex_unlock(&w->in->m);
    }
    return NULL;
}

static void test_heaps_threads(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=batched,delay_ms=0"), 0);
    struct shed_stats s0 = lc_stats();
    shed_heap_t *h[2] = { shed_heap_new(0), shed_heap_new(0) };
    assert_non_null(h[0]);
    assert_non_null(h[1]);
    struct box *bx = lc_scratch(NT * sizeof *bx);
    struct hw w[NT];
    pthread_t t[NT];
    for (int i = 0; i < NT; i++) {
        pthread_mutex_init(&bx[i].m, NULL);
        w[i] = (struct hw){ .id = i, .h = h, .in = &bx[i], .out = &bx[(i + 1) % NT],
                            .rounds = scaled(2000) };
    }
    for (int i = 0; i < NT; i++)
        assert_int_equal(pthread_create(&t[i], NULL, heap_worker, &w[i]), 0);
    for (int i = 0; i < NT; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    size_t left = 0, kept = 0;
    long errors = 0;
    for (int i = 0; i < NT; i++) {
        left += bx[i].n;
        kept += w[i].nkeep;
        errors += w[i].errors;
    }
    assert_int_equal(errors, 0);
    struct shed_stats s1 = lc_stats();
    assert_int_equal(s1.blocks_in_use, s0.blocks_in_use + left + kept);
    /* the kept blocks are all in the two heaps' pages: destroy takes them */
    shed_heap_destroy(h[0]);
    shed_heap_destroy(h[1]);
    struct shed_stats s2 = lc_stats();
    assert_int_equal(s2.blocks_in_use, s0.blocks_in_use);
    assert_int_equal(s2.pools_in_use, s0.pools_in_use);
    for (int i = 0; i < NT; i++)
        munmap(w[i].keep, 4096 * sizeof(void *));
    shed_trim();
    assert_true(lc_wait_settled(0, LC_WAIT_MS));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_shared_pages),
        cmocka_unit_test(test_destroy_background),
        cmocka_unit_test(test_destroy_trim),
        cmocka_unit_test(test_default_calls),
        cmocka_unit_test(test_heaps_threads),
    };
    /* The release thread starts at the first pool, as before
     * thread_after_kb: test_destroy_background waits for it with no malloc
     * after the destruction (at SHED_TEST_SCALE=5 the heap is too small to
     * start it by its size). */
    if (shed_config("thread_after_kb=0") != 0)
        return 1;
    return cmocka_run_group_tests_name("lifecycle/heaps", tests, NULL, NULL);
}

/*
 * Large blocks (over SHED_MEDIUM_MAX), which shed passes to glibc.  Under
 * LD_PRELOAD glibc's heap holds nothing else, and shed looks after it
 * (src/sysheap.c): blocks freed and allocated again reuse its pages rather
 * than glibc giving its top back and faulting it in at every round, and the
 * release thread gives the free pages back once they have waited delay_ms.
 * Linked (libshed.a), glibc's heap is the program's and left alone: the
 * tests skip.
 */
#include <sys/resource.h>

#include "shed_test.h"

static long minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* Eight live blocks of 140-300 KiB, one replaced at each step, each written
 * whole: after a warm-up, the pages are glibc's heap's own and stay.  Before
 * shed set glibc's thresholds (glibc alone does the same), its heap shrank
 * and grew again at nearly every step: about 4.7 faults a step. */
static void test_large_reuse(void **state)
{
    (void)state;
    if (!SHED_TEST_PRELOAD || CHECKED)
        skip();
    assert_int_equal(shed_config("release=manual"), 0);   /* no trim meanwhile */
    enum { LIVE = 8, STEPS = 400 };
    char *b[LIVE] = { 0 };
    size_t len[LIVE] = { 0 };
    unsigned seed = 7;
    long before = 0;
    for (int k = 0; k < 2 * STEPS; k++) {
        if (k == STEPS)
            before = minor_faults();
        seed = seed * 1103515245u + 12345u;
        int i = (int)((seed >> 16) % LIVE);
        if (b[i])
            assert_int_equal(check_fill(b[i], len[i], (unsigned)i), -1);
        shed_free(b[i]);
        len[i] = 140000 + (seed >> 4) % 160001;
        b[i] = shed_malloc(len[i]);
        assert_non_null(b[i]);
        fill(b[i], len[i], (unsigned)i);
    }
    long faults = minor_faults() - before;
    for (int i = 0; i < LIVE; i++)
        shed_free(b[i]);
    assert_true(faults < STEPS / 2);
    assert_int_equal(shed_config("release=batched"), 0);
}

/* Four live blocks of 5-25 MiB (mimalloc-bench's malloc-large), one
 * replaced at each step, a byte written every 64 KiB: after a warm-up the
 * blocks reuse glibc's heap.  Before shed set glibc's mmap threshold to
 * its most (32 MiB), glibc mapped each block afresh (its threshold
 * followed the largest mapped block freed, and sizes come in any order),
 * and every touched page faulted: 102 faults a step here, against 16
 * (a new block that fits no hole still grows the heap). */
static void test_large_reuse_mib(void **state)
{
    (void)state;
    if (!SHED_TEST_PRELOAD || CHECKED)
        skip();
    assert_int_equal(shed_config("release=manual"), 0);   /* no trim meanwhile */
    enum { LIVE = 4, WARM = 300, STEPS = 100, STRIDE = 64 << 10 };
    char *b[LIVE] = { 0 };
    size_t len[LIVE] = { 0 };
    unsigned seed = 11;
    long before = 0;
    for (int k = 0; k < WARM + STEPS; k++) {
        if (k == WARM)
            before = minor_faults();
        seed = seed * 1103515245u + 12345u;
        int i = (int)((seed >> 16) % LIVE);
        for (size_t o = 0; b[i] && o < len[i]; o += STRIDE)
            assert_int_equal(b[i][o], (char)(i + o / STRIDE));
        shed_free(b[i]);
        len[i] = ((size_t)5 << 20) + (size_t)(seed >> 4) % ((size_t)20 << 20);
        b[i] = shed_malloc(len[i]);
        assert_non_null(b[i]);
        for (size_t o = 0; o < len[i]; o += STRIDE)
            b[i][o] = (char)(i + o / STRIDE);
    }
    long faults = minor_faults() - before;
    for (int i = 0; i < LIVE; i++)
        shed_free(b[i]);
    assert_true(faults < STEPS * 40);
    assert_int_equal(shed_config("release=batched"), 0);
}

/* Two large blocks of 1 MiB, filled with seeds seed and seed + 1; a is
 * freed, and the page in its middle returned, resident. */
static char *one_freed(char **b, unsigned seed)
{
    size_t n = 1 << 20;
    char *a = shed_malloc(n);
    *b = shed_malloc(n);
    assert_non_null(a);
    assert_non_null(*b);
    fill(a, n, seed);
    fill(*b, n, seed + 1);
    shed_free(a);
    assert_int_equal(resident(a + n / 2), 1);
    return a + n / 2;
}

/* Batched mode: a large block freed in the middle of glibc's heap (a live
 * one above it, so glibc cannot give it back by shrinking the heap) leaves
 * memory within delay_ms or so (the release thread's malloc_trim), and the
 * live block keeps its contents. */
static void test_large_released(void **state)
{
    (void)state;
    if (!SHED_TEST_PRELOAD || CHECKED)
        skip();
    /* delay_ms=1000: the page is looked at before the thread may trim */
    assert_int_equal(shed_config("release=batched,delay_ms=1000,thread_after_kb=0"), 0);
    char *b, *mid = one_freed(&b, 1);
    assert_int_equal(shed_config("delay_ms=20"), 0);
    shed_free(shed_malloc(16));   /* an allocation: the thread may start */
    for (int i = 0; i < 500 && resident(mid) == 1; i++)
        usleep(10000);
    assert_true(resident(mid) != 1);      /* advised, or the heap shrank */
    assert_int_equal(check_fill(b, 1 << 20, 2), -1);
    shed_free(b);
    assert_int_equal(shed_config("delay_ms=100"), 0);
}

/* shed_trim gives glibc's free pages back at once, in any mode. */
static void test_large_trim(void **state)
{
    (void)state;
    if (!SHED_TEST_PRELOAD || CHECKED)
        skip();
    assert_int_equal(shed_config("release=manual"), 0);
    char *b, *mid = one_freed(&b, 3);     /* manual: still resident */
    shed_trim();
    assert_true(resident(mid) != 1);      /* advised, or the heap shrank */
    assert_int_equal(check_fill(b, 1 << 20, 4), -1);
    shed_free(b);
    assert_int_equal(shed_config("release=batched"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_large_reuse),
        cmocka_unit_test(test_large_reuse_mib),
        cmocka_unit_test(test_large_released),
        cmocka_unit_test(test_large_trim),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

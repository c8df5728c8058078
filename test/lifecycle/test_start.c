/*
 * When the release thread starts (release.c's header comment): not for a
 * short process, which never frees a pool, frees less than delay_ms before
 * it ends, or reuses what it freed; at an allocation once a retired pool has
 * waited delay_ms and is still dirty; at a pool fetch once the process has
 * taken thread_after_kb of pools, so that a process that big may then free
 * everything and sleep, and still see its pages go.  Each test runs in a
 * fork()ed child: a fresh start, with no thread and its pools counted from
 * zero.
 */
#include "lc.h"

enum { BS = 256 };

/* Allocate and free 2 MiB of small blocks (less than thread_after_kb) of
 * several classes, pools emptied and reused, with delay_ms far off: no
 * thread. */
static int small_process(void)
{
    if (shed_config("delay_ms=60000") != 0 || lc_threads() != 1)
        return 2;
    size_t n = ((size_t)2 << 20) / 128, i;
    void **b = lc_scratch(n * sizeof *b);
    for (int round = 0; round < 3; round++) {
        for (i = 0; i < n; i++)
            if (!(b[i] = shed_malloc(16 + (i % 15) * 16)))
                return 3;
        for (i = 0; i < n; i++)
            shed_free(b[i]);
    }
    struct shed_stats st = lc_stats();
    if (st.pools_dirty == 0)
        return 4;            /* the frees did empty pools */
    return lc_threads() == 1 ? 0 : 5;
}

static void test_small_process_no_thread(void **state)
{
    (void)state;
    lc_in_child(small_process, "small process");
}

/* thread_after_kb=1024: no thread at 512 KiB of pools, one at the pool
 * fetch past 1 MiB; then everything is freed and the program only sleeps,
 * and the pages go (the thread runs). */
static int size_starts(void)
{
    if (shed_config("thread_after_kb=1024,delay_ms=0") != 0)
        return 2;
    size_t pools_half = ((size_t)512 << 10) / page_size();
    struct lc_set a, b;
    lc_fill_pools(&a, BS, pools_half / 2, 20);
    if (lc_threads() != 1)
        return 3;
    lc_fill_pools(&b, BS, pools_half * 2, 21);
    if (lc_threads() != 2)
        return 4;
    lc_free_pages(&a, a.nfull);
    lc_free_pages(&b, b.nfull);
    if (!lc_wait_released(a.full, a.nfull, 0, LC_WAIT_MS) ||
        !lc_wait_released(b.full, b.nfull, 0, LC_WAIT_MS))
        return 5;
    lc_free_all(&a);
    lc_free_all(&b);
    return 0;
}

static void test_size_starts_thread(void **state)
{
    (void)state;
    lc_in_child(size_starts, "size starts");
}

/* A few pools freed, delay_ms=30: no thread at the free, nor at the
 * allocation slow paths before the delay (a new word of a pool of another
 * class, taken before the frees, so that it takes no pool, which could be
 * one of those freed); the first slow path after it starts one, which
 * releases those it does not take.  shed's clock, read before the frees
 * and after the slow paths, says which of them came before the due time:
 * all, when the two readings are less than the delay apart (the due time is
 * the first free's stamp plus the delay); if the machine kept this process
 * off the CPU longer, one may have started the thread, and then it was past
 * the due time.  Either way free() and sleep start none, and a slow path
 * past the due time leaves one running. */
static int due_starts(void)
{
    const uint32_t delay = 30;
    if (shed_config("delay_ms=30") != 0)
        return 2;
    struct lc_set s;
    void *small[70];
    small[0] = shed_malloc(32);        /* its pool holds 128 blocks */
    lc_fill_pools(&s, BS, 8, 22);
    uint32_t c0 = lc_shed_ms();        /* <= the first free's stamp */
    lc_free_pages(&s, 8);
    uint32_t c1 = lc_shed_ms();        /* >= the first free's stamp */
    for (int i = 1; i < 70; i++)       /* past a word of 64 blocks */
        if (!(small[i] = shed_malloc(32)) || page_of(small[i]) != page_of(small[0]))
            return 8;
    uint32_t c2 = lc_shed_ms();        /* >= the slow paths' clock */
    long threads = lc_threads();
    if (threads != 1 && (threads != 2 || c2 - c0 < delay))
        return 3;                      /* none before the due time */
    if (threads == 1 && (lc_resident_count(s.full, 8) != 8 || lc_stats().pools_dirty < 8))
        return 4;                      /* no thread, nothing released */
    lc_sleep_until_shed_ms(c1 + delay);  /* the start is due */
    if (lc_threads() != threads)
        return 5;                      /* free() and sleep start none */
    void *late = shed_malloc(400);     /* a new class: a slow path */
    if (!late || lc_threads() != 2)
        return 6;
    /* The new class took a run of POOL_RUN (4) of them; the rest go. */
    if (!lc_wait_released(s.full, 8, 4, LC_WAIT_MS))
        return 7;
    for (int i = 0; i < 70; i++)
        shed_free(small[i]);
    shed_free(late);
    lc_free_all(&s);
    return 0;
}

static void test_due_starts_thread(void **state)
{
    (void)state;
    lc_in_child(due_starts, "due starts");
}

/* Pools emptied and taken again before the delay: at the due time nothing
 * is dirty, so the slow path starts no thread.  (If taking them again took
 * the delay or longer by shed's clock, under a slow machine or a page-size
 * shim, a slow path may have been past the due time while pools were
 * still dirty: the test cannot tell, and says so.) */
static int reused_no_thread(void)
{
    const uint32_t delay = 200;
    if (shed_config("delay_ms=200") != 0)
        return 2;
    struct lc_set s;
    lc_fill_pools(&s, BS, 4, 23);
    uint32_t c0 = lc_shed_ms();        /* <= the first free's stamp */
    lc_free_pages(&s, 4);
    uint32_t c1 = lc_shed_ms();        /* >= the first free's stamp */
    /* The current pool's rest, then the 4 dirty ones (a run): 5 pools. */
    size_t per = page_size() / BS, n = 5 * per;
    void **again = lc_scratch(n * sizeof *again);
    for (size_t i = 0; i < n; i++)
        if (!(again[i] = shed_malloc(BS)))
            return 4;
    if (lc_shed_ms() - c0 >= delay)
        return 77;
    if (lc_stats().pools_dirty != 0)
        return 5;
    lc_sleep_until_shed_ms(c1 + delay);
    void *late = shed_malloc(400);     /* a slow path, past the due time */
    if (!late || lc_threads() != 1)
        return 6;
    shed_free(late);
    for (size_t i = 0; i < n; i++)
        shed_free(again[i]);
    lc_free_all(&s);
    return 0;
}

static void test_reused_no_thread(void **state)
{
    (void)state;
    lc_in_child(reused_no_thread, "reused no thread");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_process_no_thread),
        cmocka_unit_test(test_size_starts_thread),
        cmocka_unit_test(test_due_starts_thread),
        cmocka_unit_test(test_reused_no_thread),
    };
    return cmocka_run_group_tests_name("lifecycle/start", tests, NULL, NULL);
}

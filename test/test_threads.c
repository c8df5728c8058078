/*
 * Threads: several threads allocate, fill, check and free at once, and pass
 * blocks to each other through a shared ring, so that most frees are
 * cross-thread.  Every block carries a pattern derived from its address, its
 * size and the thread that made it, checked just before it is freed: a block
 * handed out twice, or written by a neighbour, shows as a mismatch.
 *
 * cmocka is not thread safe: the workers count problems in atomics, and the
 * main thread asserts after joining them.
 */
#include "shed_test.h"

#include <pthread.h>
#include <stdatomic.h>

enum { NTHREADS = 6, RING = 1024, LOCAL = 256 };

struct item {
    void *p;
    unsigned size, seed;
};

/* A bounded queue shared by all threads; a mutex is enough here, since the
 * allocator is what is under test. */
static struct {
    pthread_mutex_t m;
    struct item it[RING];
    size_t head, count;
} ring = { .m = PTHREAD_MUTEX_INITIALIZER };

static _Atomic long bad_pattern, bad_size, null_blocks, allocs, frees, remote;

static bool ring_push(struct item it)
{
    pthread_mutex_lock(&ring.m);
    bool ok = ring.count < RING;
    if (ok)
        ring.it[(ring.head + ring.count++) % RING] = it;
    pthread_mutex_unlock(&ring.m);
    return ok;
}

static bool ring_pop(struct item *it)
{
    pthread_mutex_lock(&ring.m);
    bool ok = ring.count > 0;
    if (ok) {
        *it = ring.it[ring.head];
        ring.head = (ring.head + 1) % RING;
        ring.count--;
    }
    pthread_mutex_unlock(&ring.m);
    return ok;
}

static uint32_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s >> 11);
}

/* Python-like sizes, mostly small, some large (served by glibc). */
static unsigned pick_size(uint64_t *s)
{
    uint32_t r = rnd(s) % 100;
    if (r < 60)
        return 1 + rnd(s) % 64;
    if (r < 90)
        return 65 + rnd(s) % 192;
    if (r < 98)
        return 257 + rnd(s) % 256;
    return 513 + rnd(s) % 3000;
}

/* The first problem seen, for the failure message. */
static struct {
    pthread_mutex_t m;
    char what[160];
} first_bad = { .m = PTHREAD_MUTEX_INITIALIZER };

static void note_bad(_Atomic long *counter, struct item it, const char *what, long value)
{
    if (atomic_fetch_add(counter, 1) == 0) {
        pthread_mutex_lock(&first_bad.m);
        if (!first_bad.what[0])
            snprintf(first_bad.what, sizeof first_bad.what,
                     "block %p of %u bytes (seed %u): %s %ld", it.p, it.size, it.seed, what,
                     value);
        pthread_mutex_unlock(&first_bad.m);
    }
}

static void check_and_free(struct item it)
{
    size_t u = shed_usable_size(it.p);
    if (it.size <= SHED_MAX_BLOCK ? u != usable_of(it.size) : u < it.size)
        note_bad(&bad_size, it, "usable size", (long)u);
    long off = check_fill(it.p, it.size, it.seed);
    if (off != -1)
        note_bad(&bad_pattern, it, "pattern differs at offset", off);
    shed_free(it.p);
    atomic_fetch_add(&frees, 1);
}

struct worker {
    unsigned id;
    long iters;
    unsigned pass_pct;     /* share of new blocks handed to the ring */
};

static void *work(void *arg)
{
    struct worker *w = arg;
    uint64_t s = 0x9e3779b97f4a7c15ull * (w->id + 1);
    struct item local[LOCAL];
    size_t nlocal = 0;
    for (long i = 0; i < w->iters; i++) {
        uint32_t op = rnd(&s) % 100;
        if (op < 50) {
            struct item it = { NULL, pick_size(&s), w->id * 1000003u + (unsigned)i };
            it.p = shed_malloc(it.size);
            if (!it.p) {
                atomic_fetch_add(&null_blocks, 1);
                continue;
            }
            atomic_fetch_add(&allocs, 1);
            fill(it.p, it.size, it.seed);
            if (rnd(&s) % 100 < w->pass_pct && ring_push(it))
                continue;
            if (nlocal == LOCAL) {             /* make room: free a random one */
                size_t k = rnd(&s) % LOCAL;
                check_and_free(local[k]);
                local[k] = local[--nlocal];
            }
            local[nlocal++] = it;
        } else if (op < 80) {
            struct item it;
            if (ring_pop(&it)) {
                check_and_free(it);
                atomic_fetch_add(&remote, 1);
            }
        } else if (nlocal > 0) {
            size_t k = rnd(&s) % nlocal;
            check_and_free(local[k]);
            local[k] = local[--nlocal];
        }
    }
    while (nlocal > 0)
        check_and_free(local[--nlocal]);
    return NULL;
}

static void run_stress(const char *conf, unsigned pass_pct)
{
    assert_int_equal(shed_config(conf), 0);
    struct shed_stats s0, s1;
    shed_stats(&s0);
    atomic_store(&bad_pattern, 0);
    atomic_store(&bad_size, 0);
    first_bad.what[0] = 0;
    atomic_store(&null_blocks, 0);
    atomic_store(&allocs, 0);
    atomic_store(&frees, 0);
    atomic_store(&remote, 0);

    pthread_t t[NTHREADS];
    struct worker w[NTHREADS];
    for (unsigned i = 0; i < NTHREADS; i++) {
        w[i] = (struct worker){ i, scaled(250000), pass_pct };
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (unsigned i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    struct item it;
    while (ring_pop(&it))                      /* what nobody took */
        check_and_free(it);

    if (atomic_load(&bad_pattern) || atomic_load(&bad_size))
        fail_msg("%ld bad patterns, %ld bad usable sizes; first: %s",
                 atomic_load(&bad_pattern), atomic_load(&bad_size), first_bad.what);
    assert_int_equal(atomic_load(&null_blocks), 0);
    assert_int_equal(atomic_load(&allocs), atomic_load(&frees));
    /* most frees of passed blocks happened in another thread */
    assert_true(atomic_load(&remote) > 0);
    shed_stats(&s1);
    assert_int_equal(s1.errors, s0.errors);
    /* all freed: the counts are back (pthread and stdio allocate too when
     * the library is preloaded, so only then is this not exact) */
    if (!SHED_TEST_PRELOAD) {
        assert_int_equal(s1.blocks_in_use, s0.blocks_in_use);
        for (int c = 0; c < SHED_NUM_CLASSES; c++)
            assert_int_equal(s1.classes[c].blocks_in_use, s0.classes[c].blocks_in_use);
    }
}

static void test_stress_batched(void **state)
{
    (void)state;
    run_stress("release=batched,delay_ms=1", 40);
}

/* inline release: pools empty and are advised while other threads allocate
 * into the same arenas. */
static void test_stress_inline(void **state)
{
    (void)state;
    run_stress("release=inline", 40);
}

/* Nearly every block changes threads before it is freed. */
static void test_stress_all_remote(void **state)
{
    (void)state;
    run_stress("release=batched,delay_ms=0", 95);
}

/* Blocks of threads that have exited (their pools orphaned) are freed by
 * the main thread, and their pools are emptied and reused. */
static void *alloc_and_exit(void *arg)
{
    struct item *out = arg;
    for (int i = 0; i < 200; i++) {
        out[i].size = 1 + (unsigned)(i * 37) % 512;
        out[i].seed = (unsigned)i;
        out[i].p = shed_malloc(out[i].size);
        if (out[i].p)
            fill(out[i].p, out[i].size, out[i].seed);
    }
    return NULL;
}

static void test_orphans(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=inline"), 0);
    static struct item blocks[8][200];
    for (int r = 0; r < 8; r++) {
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, alloc_and_exit, blocks[r]), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
    }
    atomic_store(&bad_pattern, 0);
    atomic_store(&bad_size, 0);
    first_bad.what[0] = 0;
    for (int r = 0; r < 8; r++) {
        for (int i = 0; i < 200; i++) {
            assert_non_null(blocks[r][i].p);
            check_and_free(blocks[r][i]);
        }
    }
    if (atomic_load(&bad_pattern) || atomic_load(&bad_size))
        fail_msg("%ld bad patterns, %ld bad usable sizes; first: %s",
                 atomic_load(&bad_pattern), atomic_load(&bad_size), first_bad.what);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stress_batched),
        cmocka_unit_test(test_stress_inline),
        cmocka_unit_test(test_stress_all_remote),
        cmocka_unit_test(test_orphans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The block cache (struct theap's cache[]): malloc hands out the blocks its
 * thread freed last, first.  A cached block is free in its pool's bitmap as
 * any other, so: a pool retired with blocks in the cache and taken again for
 * another class never gives one of them out as the old class; a double free
 * of a cached block is reported and the block is handed out once; a pool
 * whose blocks are all free leaves memory as before (mincore); a sealed
 * pool's blocks are not handed out from the cache after shed_freeze; a
 * fork()ed child does not hand out the parent's live blocks.
 * Bookkeeping arrays come from mmap, so that under the preloaded library
 * they do not share pools with the blocks under test.
 */
#include "shed_test.h"

enum { CACHE = 32, MAXB = 4096 };   /* CACHE: src/shed_impl.h's BLOCK_CACHE */

static void *scratch(size_t bytes)
{
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    return m;
}

static size_t in_page(void **p, size_t n, const void *page)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += p[i] && page_of(p[i]) == page;
    return k;
}

/* Fill four pools' worth of size-byte blocks (pattern 1) into p; return a
 * page that holds only these blocks and is not the current pool's. */
static void *fill_pools(void **p, size_t *n, size_t size)
{
    size_t per = page_size() / size;
    void *target = NULL;
    while (!target) {
        for (size_t i = 0; i < 4 * per; i++) {
            assert_true(*n < MAXB);
            p[*n] = shed_malloc(size);
            assert_non_null(p[*n]);
            fill(p[*n], size, 1);
            (*n)++;
        }
        void *last = page_of(p[*n - 1]);
        for (size_t i = 0; i < *n && !target; i++)
            if (page_of(p[i]) != last && in_page(p, *n, page_of(p[i])) == per)
                target = page_of(p[i]);
    }
    return target;
}

static void free_page(void **p, size_t n, const void *page, size_t size)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] && page_of(p[i]) == page) {
            assert_int_equal(check_fill(p[i], size, 1), -1);
            shed_free(p[i]);
            p[i] = NULL;
        }
    }
}

static void free_rest(void **p, size_t n, size_t size, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i]) {
            assert_int_equal(check_fill(p[i], size, seed), -1);
            shed_free(p[i]);
            p[i] = NULL;
        }
    }
}

/* A pool emptied through the cache goes back to its arena; taken again for
 * 32-byte blocks, none of its slots comes out of a 16-byte malloc. */
static void test_retired_pool_other_class(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=manual"), 0);
    void **small = scratch(MAXB * sizeof(void *)), **mid = scratch(MAXB * sizeof(void *));
    size_t ns = 0, nm = 0, hits = 0;
    void *target = fill_pools(small, &ns, 16);
    free_page(small, ns, target, 16);
    struct shed_stats st;
    shed_stats(&st);
    size_t bound = (st.arenas * 64 + 16) * (page_size() / 32);
    while (!hits && nm < bound && nm < MAXB) {
        mid[nm] = shed_malloc(32);
        assert_non_null(mid[nm]);
        hits += page_of(mid[nm]) == target;
        nm++;
    }
    assert_int_equal(hits, 1);               /* the empty pool was taken again */
    for (size_t i = 0; i < nm; i++)
        fill(mid[i], 32, 2);
    void **again = scratch(2 * CACHE * sizeof(void *));
    for (size_t i = 0; i < 2 * CACHE; i++) {
        again[i] = shed_malloc(16);
        assert_non_null(again[i]);
        assert_ptr_not_equal(page_of(again[i]), target);
        fill(again[i], 16, 3);
    }
    free_rest(mid, nm, 32, 2);
    free_rest(again, 2 * CACHE, 16, 3);
    free_rest(small, ns, 16, 1);
    munmap(small, MAXB * sizeof(void *));
    munmap(mid, MAXB * sizeof(void *));
    munmap(again, 2 * CACHE * sizeof(void *));
    assert_int_equal(shed_config("release=batched"), 0);
}

/* A block freed twice while it sits in the cache: the second free is
 * reported, and the block comes out of malloc once. */
static void test_double_free_cached(void **state)
{
    (void)state;
    assert_int_equal(shed_config("on_error=report"), 0);
    struct shed_stats s0, s1;
    shed_stats(&s0);
    void *b = shed_malloc(64);
    assert_non_null(b);
    shed_free(b);

    int fd[2], saved = dup(2);
    assert_int_equal(pipe(fd), 0);
    dup2(fd[1], 2);
    close(fd[1]);
    VALGRIND_DISABLE_ERROR_REPORTING;
    shed_free(b);
    VALGRIND_ENABLE_ERROR_REPORTING;
    dup2(saved, 2);
    close(saved);
    char err[4096], want[128], line[256];
    read_to_end(fd[0], err, sizeof err);
    close(fd[0]);
    snprintf(want, sizeof want, "shed: double free of %p in ", b);
    assert_true(find_line(err, want, line, sizeof line));
    assert_int_equal(count_lines(err, "shed: "), 1);
    shed_stats(&s1);
    assert_int_equal(s1.errors, s0.errors + 1);

    void *q[CACHE];
    for (int i = 0; i < CACHE; i++) {
        q[i] = shed_malloc(64);
        assert_non_null(q[i]);
        fill(q[i], 64, 4);
        for (int j = 0; j < i; j++)
            assert_ptr_not_equal(q[i], q[j]);
    }
    for (int i = 0; i < CACHE; i++) {
        assert_int_equal(check_fill(q[i], 64, 4), -1);
        shed_free(q[i]);
    }
    assert_int_equal(shed_config("on_error=abort"), 0);
}

/* Blocks in the cache do not keep their page: emptied, it leaves memory at
 * once under release=inline, and at shed_trim() under release=manual. */
static void test_cached_page_released(void **state)
{
    (void)state;
    const char *modes[] = { "release=inline", "release=manual" };
    for (int m = 0; m < 2; m++) {
        assert_int_equal(shed_config(modes[m]), 0);
        void **p = scratch(MAXB * sizeof(void *));
        size_t n = 0;
        void *target = fill_pools(p, &n, 256);
        assert_int_equal(resident(target), 1);
        free_page(p, n, target, 256);
        if (m == 1) {
            assert_int_equal(resident(target), 1);
            shed_trim();
        }
        if (!CHECKED)                    /* memcheck keeps pages it tracks */
            assert_int_equal(resident(target), 0);
        free_rest(p, n, 256, 1);
        munmap(p, MAXB * sizeof(void *));
    }
    assert_int_equal(shed_config("release=batched"), 0);
}

/* After shed_freeze(), blocks freed before it (cached) and after it (into a
 * sealed pool) are not handed out again: new blocks come from fresh pools. */
static void test_freeze_skips_cache(void **state)
{
    (void)state;
    enum { N = 96 };
    void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = shed_malloc(48);
        assert_non_null(p[i]);
        fill(p[i], 48, 5);
    }
    for (int i = 0; i < N; i += 3) {
        shed_free(p[i]);
        p[i] = NULL;
    }
    shed_freeze();
    void *q[N];
    q[0] = shed_malloc(48);              /* the thread sees the freeze */
    assert_non_null(q[0]);
    for (int j = 0; j < N; j++)
        assert_true(!p[j] || page_of(q[0]) != page_of(p[j]));
    fill(q[0], 48, 6);
    shed_free(p[1]);                     /* a sealed pool's block */
    void *sealed = page_of(p[1]);
    p[1] = NULL;
    for (int i = 1; i < N; i++) {
        q[i] = shed_malloc(48);
        assert_non_null(q[i]);
        assert_ptr_not_equal(page_of(q[i]), sealed);
        for (int j = 0; j < N; j++)
            assert_true(!p[j] || page_of(q[i]) != page_of(p[j]));
        fill(q[i], 48, 6);
    }
    shed_thaw();
    for (int i = 0; i < N; i++) {
        if (p[i]) {
            assert_int_equal(check_fill(p[i], 48, 5), -1);
            shed_free(p[i]);
        }
        assert_int_equal(check_fill(q[i], 48, 6), -1);
        shed_free(q[i]);
    }
}

/* fork() with blocks in the parent's cache: the child allocates without
 * handing out the parent's live blocks, and so does the parent after. */
static void test_fork_with_cache(void **state)
{
    (void)state;
    enum { N = 96 };
    void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = shed_malloc(48);
        assert_non_null(p[i]);
        fill(p[i], 48, 7);
    }
    for (int i = 0; i < N; i += 3) {
        shed_free(p[i]);
        p[i] = NULL;
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        void *q[N];
        int bad = 0;
        for (int i = 0; i < N; i++) {
            if (!(q[i] = shed_malloc(48)))
                _exit(2);
            for (int j = 0; j < N; j++)
                bad |= q[i] == p[j];
            fill(q[i], 48, 8);
        }
        for (int i = 0; i < N; i++) {
            bad |= check_fill(q[i], 48, 8) != -1;
            bad |= p[i] && check_fill(p[i], 48, 7) != -1;
            shed_free(q[i]);
        }
        _exit(bad);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    void *q[N];
    for (int i = 0; i < N; i++) {
        q[i] = shed_malloc(48);
        assert_non_null(q[i]);
        for (int j = 0; j < N; j++)
            assert_ptr_not_equal(q[i], p[j]);
        fill(q[i], 48, 9);
    }
    for (int i = 0; i < N; i++) {
        if (p[i]) {
            assert_int_equal(check_fill(p[i], 48, 7), -1);
            shed_free(p[i]);
        }
        assert_int_equal(check_fill(q[i], 48, 9), -1);
        shed_free(q[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retired_pool_other_class),
        cmocka_unit_test(test_double_free_cached),
        cmocka_unit_test(test_cached_page_released),
        cmocka_unit_test(test_freeze_skips_cache),
        cmocka_unit_test(test_fork_with_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Freeze and fork: a parent allocates many small blocks (some by a
 * second thread), forks, and the child frees a quarter of the parent's blocks
 * and allocates as many new ones.  Without freeze the child's blocks land in
 * the holes of the parent's pages, which the kernel then copies; after
 * shed_freeze() (or with freeze_on_fork=1) not one of the parent's pages is
 * copied (/proc/self/pagemap: still shared), and the child's Private_Dirty
 * (/proc/self/smaps_rollup) grows only by its own new pools, its arrays and
 * shed's metadata.  shed_thaw() makes the holes usable again.
 */
#include "lc.h"

struct parent {
    void **b;
    size_t *sz;
    size_t n, cap;
    void **pages;                 /* the parent's pages, sorted */
    size_t np;
};

struct result {                   /* written by the child (MAP_SHARED) */
    long copied, pages, errors;   /* pages: those holding live parent blocks */
    long pd_before, pd_after;     /* Private_Dirty, kB */
    long new_pools, freed, allocated, array_kb, freed_pools;
};

static pthread_mutex_t tm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t tc = PTHREAD_COND_INITIALIZER;
static int tstate;                /* 1 allocated, 2 may finish */

struct alloc_job {
    struct parent *p;
    size_t from, to;
    uint64_t seed;
};

static void alloc_range(struct alloc_job *j)
{
    uint64_t rnd = j->seed;
    for (size_t i = j->from; i < j->to; i++) {
        size_t s = python_size(&rnd);
        j->p->b[i] = shed_malloc(s);
        assert_non_null(j->p->b[i]);
        j->p->sz[i] = s;
        fill(j->p->b[i], s, 1);
    }
}

/* The helper thread allocates its share and stays alive across the fork. */
static void *helper(void *arg)
{
    alloc_range(arg);
    pthread_mutex_lock(&tm);
    tstate = 1;
    pthread_cond_broadcast(&tc);
    while (tstate != 2)
        pthread_cond_wait(&tc, &tm);
    pthread_mutex_unlock(&tm);
    return NULL;
}

static pthread_t helper_thread;

static void parent_alloc(struct parent *p, size_t bytes)
{
    p->cap = bytes / 100 + 16;
    p->b = lc_scratch(p->cap * sizeof(void *));
    p->sz = lc_scratch(p->cap * sizeof(size_t));
    p->pages = lc_scratch(p->cap * sizeof(void *));
    p->n = p->cap;
    /* the first third by a second thread, the rest by this one */
    struct alloc_job tj = { p, 0, p->n / 3, 77 }, mj = { p, p->n / 3, p->n, 78 };
    tstate = 0;
    assert_int_equal(pthread_create(&helper_thread, NULL, helper, &tj), 0);
    pthread_mutex_lock(&tm);
    while (tstate != 1)
        pthread_cond_wait(&tc, &tm);
    pthread_mutex_unlock(&tm);
    alloc_range(&mj);
    for (size_t i = 0; i < p->n; i++)
        p->pages[i] = page_of(p->b[i]);
    qsort(p->pages, p->n, sizeof *p->pages, lc_cmp_ptr);
    p->np = 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->np == 0 || p->pages[p->np - 1] != p->pages[i])
            p->pages[p->np++] = p->pages[i];
}

static void parent_free(struct parent *p)
{
    pthread_mutex_lock(&tm);
    tstate = 2;
    pthread_cond_broadcast(&tc);
    pthread_mutex_unlock(&tm);
    assert_int_equal(pthread_join(helper_thread, NULL), 0);
    for (size_t i = 0; i < p->n; i++) {
        assert_int_equal(check_fill(p->b[i], p->sz[i], 1), -1);
        shed_free(p->b[i]);
    }
    munmap(p->b, p->cap * sizeof(void *));
    munmap(p->sz, p->cap * sizeof(size_t));
    munmap(p->pages, p->cap * sizeof(void *));
    shed_trim();
}

/* In the child: free every 4th parent block, allocate as many new blocks,
 * check everything, measure. */
static void child_work(struct parent *p, struct result *r)
{
    struct shed_stats s0;
    shed_stats(&s0);
    size_t m = p->n / 4 + 1;
    r->array_kb = (long)((m * (sizeof(void *) + sizeof(size_t)) + 8191) / 1024);
    r->pd_before = lc_rollup_kb("Private_Dirty");
    void **nb = lc_scratch(m * sizeof(void *));
    size_t *ns = lc_scratch(m * sizeof(size_t));
    for (size_t i = 0; i < p->n; i += 4) {
        r->errors += check_fill(p->b[i], p->sz[i], 1) != -1;
        shed_free(p->b[i]);
        r->freed++;
    }
    uint64_t rnd = 4242;
    for (size_t i = 0; i < m; i++) {
        ns[i] = python_size(&rnd);
        nb[i] = shed_malloc(ns[i]);
        if (!nb[i]) {
            r->errors++;
            return;
        }
        fill(nb[i], ns[i], 2);
        r->allocated++;
    }
    for (size_t i = 0; i < p->n; i++)
        if (i % 4)
            r->errors += check_fill(p->b[i], p->sz[i], 1) != -1;
    for (size_t i = 0; i < m; i++)
        r->errors += check_fill(nb[i], ns[i], 2) != -1;
    struct shed_stats s1;
    shed_stats(&s1);
    r->pd_after = lc_rollup_kb("Private_Dirty");
    r->new_pools = (long)(s1.pools_in_use + s1.pools_dirty) - (long)(s0.pools_in_use + s0.pools_dirty);
    int fd = open("/proc/self/pagemap", O_RDONLY);
    if (fd < 0) {
        r->errors += 1000;
        return;
    }
    /* the pages that hold a live parent block (those whose parent blocks
     * were all freed here may have been released and reused: fresh pages) */
    void **live = lc_scratch(p->n * sizeof(void *));
    size_t nl = 0;
    for (size_t i = 0; i < p->n; i++)
        if (i % 4)
            live[nl++] = page_of(p->b[i]);
    qsort(live, nl, sizeof *live, lc_cmp_ptr);
    size_t k = 0;
    for (size_t i = 0; i < nl; i++)
        if (k == 0 || live[k - 1] != live[i])
            live[k++] = live[i];
    for (size_t i = 0; i < k; i++) {
        int e = lc_page_exclusive(fd, live[i]);
        r->copied += e == 1;
        r->errors += e < 0;
    }
    close(fd);
    r->pages = (long)k;
}

/* fork(), with a zeroed result both processes see. */
static pid_t fork_with_result(struct result **r)
{
    *r = lc_shared(sizeof **r);
    memset(*r, 0, sizeof **r);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    return pid;
}

enum mode { NO_FREEZE, FREEZE, FREEZE_ON_FORK };
static const char *const names[] = { "no freeze", "shed_freeze", "freeze_on_fork=1" };
static struct result last[3];

static void run_fork(enum mode mode)
{
    assert_int_equal(shed_config("release=batched,delay_ms=0,freeze_on_fork=0"), 0);
    struct parent p;
    parent_alloc(&p, (size_t)scaled(16 << 20));
    if (mode == FREEZE)
        shed_freeze();
    if (mode == FREEZE_ON_FORK)
        assert_int_equal(shed_config("freeze_on_fork=1"), 0);
    struct result *r;
    pid_t pid = fork_with_result(&r);
    if (pid == 0) {
        child_work(&p, r);
        _exit(0);
    }
    int status = lc_wait_child(pid, 30000);
    assert_int_equal(shed_config("freeze_on_fork=0"), 0);
    shed_thaw();
    assert_true(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    last[mode] = *r;
    long pd = r->pd_after - r->pd_before;
    print_message("      %-17s child: %ld of %ld parent pages copied, Private_Dirty +%ld kB "
                  "(%ld new pools, %ld kB of arrays), %ld freed, %ld allocated\n",
                  names[mode], r->copied, r->pages, pd, r->new_pools, r->array_kb,
                  r->freed, r->allocated);
    assert_int_equal(r->errors, 0);
    assert_true(r->pages > 0);
    assert_int_equal(r->allocated, (long)(p.n / 4 + 1));
    /* Freeze or not, the child takes none of the parent's pools: its frees
     * go to the inherit map and its blocks to pools of its own. */
    assert_int_equal(r->copied, 0);
    if (!CHECKED && !TSAN) {
        /* new pools, the child's arrays, the inherit map (a few words per
         * pool freed into), plus 512 kB for the stack, stdio, libc and what
         * the kernel counts (not under a checker: ASan's shadow of what the
         * child writes is copied too; nor under TSan, whose shadow of what
         * the child reads and writes took 12 MB more on a kernel that gives
         * a page of its own for a read of a page nobody wrote) */
        long bound = r->new_pools * (long)page_size() / 1024 + r->array_kb +
                     r->pages / 8 * (long)page_size() / 1024 + 512;
        assert_true(pd <= bound);
    }
    munmap(r, sizeof *r);
    parent_free(&p);
}

static void test_fork_no_freeze(void **state)
{
    (void)state;
    run_fork(NO_FREEZE);
}

static void test_fork_freeze(void **state)
{
    (void)state;
    run_fork(FREEZE);
}

static void test_fork_freeze_on_fork(void **state)
{
    (void)state;
    run_fork(FREEZE_ON_FORK);
}

/* In a fork()ed child: free every fourth of the parent's blocks from block
 * first on, free the blocks again[0..nagain) once more (each one reported,
 * but under memcheck, which reports them itself), and check the stats before
 * and after shed_trim.  What is wrong is counted in r. */
static void child_free_quarter(struct parent *p, size_t first, const size_t *again,
                               size_t nagain, struct result *r)
{
    struct shed_stats s0, s1, s2;
    shed_stats(&s0);
    size_t freed = 0;
    for (size_t i = first; i < p->n; i += 4, freed++)
        shed_free(p->b[i]);
    uint64_t bad = RUNNING_ON_VALGRIND ? 0 : nagain;
    if (bad) {
        shed_config("on_error=report");
        for (size_t k = 0; k < nagain; k++)
            shed_free(p->b[again[k]]);
        shed_config("on_error=abort");
    }
    shed_stats(&s1);
    r->errors += s1.errors != s0.errors + bad;
    r->errors += s1.blocks_in_use != s0.blocks_in_use - freed;
    shed_trim();
    shed_stats(&s2);
    r->errors += s2.blocks_in_use != s1.blocks_in_use;
}

/* A fork()ed child frees a quarter of the parent's blocks (one twice: the
 * error is reported at once and changes nothing), then shed_trim() takes the
 * parent's pools over: the stats count the frees before and after, and the
 * child's new blocks now fill the holes (copying those pages). */
static void test_fork_reclaim(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=batched,delay_ms=0,freeze_on_fork=0"), 0);
    struct parent p;
    parent_alloc(&p, (size_t)scaled(4 << 20));
    struct result *r;
    pid_t pid = fork_with_result(&r);
    if (pid == 0) {
        child_free_quarter(&p, 0, (const size_t[]){ 0 }, 1, r);
        size_t m = p.n / 4 + 1;
        void **nb = lc_scratch(m * sizeof(void *));
        uint64_t rnd = 99;
        size_t *ns = lc_scratch(m * sizeof(size_t));
        for (size_t i = 0; i < m; i++) {
            ns[i] = python_size(&rnd);
            nb[i] = shed_malloc(ns[i]);
            fill(nb[i], ns[i], 3);
            r->copied += lc_in_pages(p.pages, p.np, page_of(nb[i]));
        }
        for (size_t i = 0; i < p.n; i++)
            if (i % 4)
                r->errors += check_fill(p.b[i], p.sz[i], 1) != -1;
        for (size_t i = 0; i < m; i++)
            r->errors += check_fill(nb[i], ns[i], 3) != -1;
        r->allocated = (long)m;
        _exit(0);
    }
    int status = lc_wait_child(pid, 30000);
    assert_true(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    print_message("      after shed_trim: %ld of %ld new blocks in the parent's pages\n",
                  r->copied, r->allocated);
    assert_int_equal(r->errors, 0);
    assert_true(r->copied > r->allocated / 2);
    munmap(r, sizeof *r);
    parent_free(&p);
}

/* fork() in a fork()ed child: the grandchild takes over what the child freed
 * into the parent's pools (it is free there at once: freeing it again is a
 * double free), keeps its own record of what it frees, and every block still
 * live keeps its content. */
static void test_fork_twice(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=batched,delay_ms=0,freeze_on_fork=0"), 0);
    struct parent p;
    parent_alloc(&p, (size_t)scaled(1 << 20));
    struct result *r;
    pid_t pid = fork_with_result(&r);
    if (pid == 0) {
        for (size_t i = 0; i < p.n; i += 4)
            shed_free(p.b[i]);
        struct result *r2;
        pid_t gpid = fork_with_result(&r2);
        if (gpid == 0) {
            /* Block 0 was freed by the child, block 1 here. */
            child_free_quarter(&p, 1, (const size_t[]){ 0, 1 }, 2, r2);
            for (size_t i = 0; i < p.n; i++)
                if (i % 4 >= 2)
                    r2->errors += check_fill(p.b[i], p.sz[i], 1) != -1;
            _exit(0);
        }
        int gstatus = lc_wait_child(gpid, 30000);
        r->errors += !(gstatus >= 0 && WIFEXITED(gstatus) && WEXITSTATUS(gstatus) == 0);
        r->errors += r2->errors;
        for (size_t i = 0; i < p.n; i++)
            if (i % 4)
                r->errors += check_fill(p.b[i], p.sz[i], 1) != -1;
        _exit(0);
    }
    int status = lc_wait_child(pid, 30000);
    assert_true(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(r->errors, 0);
    munmap(r, sizeof *r);
    parent_free(&p);
}

/* m new blocks of 64 bytes in nb, filled with seed; returns how many are in
 * the sorted pages[np] (the page skip not counted). */
static size_t alloc_counting(void **nb, size_t m, unsigned seed, void *const *pages, size_t np,
                             const void *skip)
{
    size_t in = 0;
    for (size_t i = 0; i < m; i++) {
        nb[i] = shed_malloc(64);
        assert_non_null(nb[i]);
        fill(nb[i], 64, seed);
        in += lc_in_pages(pages, np, page_of(nb[i])) && page_of(nb[i]) != skip;
    }
    return in;
}

/* Check that alloc_counting's blocks kept their contents, and free them. */
static void check_free_blocks(void **nb, size_t m, unsigned seed)
{
    for (size_t i = 0; i < m; i++) {
        assert_int_equal(check_fill(nb[i], 64, seed), -1);
        shed_free(nb[i]);
    }
}

/* In one process: sealed pools get no new blocks; an emptied sealed pool is
 * not reused before it is released; after shed_thaw() the holes are used
 * again.  A second thread's sealed pools too. */
static void test_thaw(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=manual"), 0);
    shed_trim();
    struct lc_set s;
    lc_fill_pools(&s, 64, 32, 6);
    void **pages = lc_scratch(s.n * sizeof(void *));
    size_t np = 0;
    for (size_t i = 0; i < s.n; i++)
        pages[np++] = page_of(s.b[i]);
    qsort(pages, np, sizeof *pages, lc_cmp_ptr);
    size_t k = 0;
    for (size_t i = 0; i < np; i++)
        if (k == 0 || pages[k - 1] != pages[i])
            pages[k++] = pages[i];
    np = k;

    shed_freeze();
    /* every 4th block freed: holes in every sealed page; one page emptied */
    size_t holes = 0;
    void *empty = s.full[0];
    for (size_t i = 0; i < s.n; i++) {
        if (i % 4 == 0 || page_of(s.b[i]) == empty) {
            assert_int_equal(check_fill(s.b[i], 64, 6), -1);
            shed_free(s.b[i]);
            s.b[i] = NULL;
            holes++;
        }
    }
    assert_int_equal(lc_stats().pools_dirty, 1);
    size_t m = holes * 2;
    void **nb = lc_scratch(m * sizeof(void *));
    assert_int_equal(alloc_counting(nb, m, 7, pages, np, NULL), 0);
    /* released, the emptied page is a fresh page and may be used again */
    assert_true(shed_trim() >= page_size());
    assert_int_equal(resident(empty), 0);
    check_free_blocks(nb, m, 7);

    shed_thaw();
    size_t in_sealed = alloc_counting(nb, m, 8, pages, np, empty);
    print_message("      after thaw: %zu of %zu new blocks in the %zu holes of the "
                  "formerly sealed pages\n", in_sealed, m, holes);
    assert_true(in_sealed >= holes / 2);
    check_free_blocks(nb, m, 8);
    lc_free_all(&s);
    munmap(nb, m * sizeof(void *));
    munmap(pages, s.cap * sizeof(void *));
    assert_int_equal(shed_config("release=batched"), 0);
}

/* Pools that were on the owner's list of pools with free blocks when
 * shed_freeze() came (their holes made before it) give no new blocks: the
 * slow path that takes one off the list sees it sealed and passes it by.
 * After shed_thaw() their holes are used again, all of them before eight
 * pools' worth of new blocks (the other pools with free blocks, relisted
 * with them, hold fewer than that). */
static void test_freeze_listed(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=manual"), 0);
    shed_trim();
    struct lc_set s;
    lc_fill_pools(&s, 64, 4, 9);
    void *pages[2] = { s.full[0], s.full[1] };
    qsort(pages, 2, sizeof *pages, lc_cmp_ptr);
    size_t holes = 0;
    for (size_t i = 0; i < s.n; i++) {     /* every other block of two pools */
        if (i % 2 == 0 && lc_in_pages(pages, 2, page_of(s.b[i]))) {
            assert_int_equal(check_fill(s.b[i], 64, 9), -1);
            shed_free(s.b[i]);
            s.b[i] = NULL;
            holes++;
        }
    }
    assert_true(holes >= 2 * (page_size() / 64 / 2 - 1));   /* half of each */

    shed_freeze();
    size_t m = 8 * (page_size() / 64);
    void **nb = lc_scratch(m * sizeof(void *));
    assert_int_equal(alloc_counting(nb, m, 10, pages, 2, NULL), 0);
    check_free_blocks(nb, m, 10);

    shed_thaw();
    assert_int_equal(alloc_counting(nb, m, 11, pages, 2, NULL), holes);
    check_free_blocks(nb, m, 11);
    lc_free_all(&s);
    munmap(nb, m * sizeof(void *));
    assert_int_equal(shed_config("release=batched"), 0);
}

/* release=manual: nothing releases a sealed pool that empties, so once no
 * other pool is free it is reused rather than more of the region carved.
 * A program that freezes (as freeze_on_fork does at every fork), then drops
 * what it built, round after round: here a 16 MiB region (64 arenas) and 96
 * rounds of an arena's worth each.  It carved an arena a round, then ran out
 * of region and passed its requests to glibc. */
enum { UNRELEASED_ROUNDS = 96 };
static const char *self;          /* argv[0], to run again */

static int unreleased_child(void)
{
    struct lc_set s;
    for (unsigned round = 0; round < UNRELEASED_ROUNDS; round++) {
        lc_fill_pools(&s, 256, 64, 20 + round);   /* an arena's worth */
        shed_freeze();
        lc_free_all(&s);
    }
    struct shed_stats st = lc_stats();
    printf("arenas=%zu large=%llu\n", st.arenas, (unsigned long long)st.large_allocs);
    return 0;
}

static void test_freeze_unreleased(void **state)
{
    (void)state;
    char out[4096], err[4096];
    char *argv[] = { (char *)self, "--unreleased", NULL };
    int st = run_exec(argv, "region_mb=16,release=manual", NULL, out, err, sizeof out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    size_t arenas;
    unsigned long long large;
    assert_int_equal(sscanf(out, "arenas=%zu large=%llu", &arenas, &large), 2);
    print_message("      %d rounds: %zu arenas, %llu requests passed on\n",
                  UNRELEASED_ROUNDS, arenas, large);
    assert_true(arenas <= 3);
    assert_int_equal(large, 0);
}

int main(int argc, char **argv)
{
    self = argv[0];
    /* These tests check what freeing releases; under a checker (valgrind,
     * ASan) the quarantine would hold the freed blocks and their pools
     * back: off. */
    if (shed_config("quarantine_kb=0") != 0)
        return 1;
    if (argc > 1 && strcmp(argv[1], "--unreleased") == 0)
        return unreleased_child();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_no_freeze),
        cmocka_unit_test(test_fork_freeze),
        cmocka_unit_test(test_fork_freeze_on_fork),
        cmocka_unit_test(test_fork_reclaim),
        cmocka_unit_test(test_fork_twice),
        cmocka_unit_test(test_thaw),
        cmocka_unit_test(test_freeze_listed),
        cmocka_unit_test(test_freeze_unreleased),
    };
    return cmocka_run_group_tests_name("lifecycle/freeze", tests, NULL, NULL);
}

/*
 * Pool release: once every block of a pool is freed, its page leaves memory
 * (mincore) when the release mode says so, the stats count it, and the pool
 * is reused correctly afterwards.
 *
 * The test fills several pools with 256-byte blocks and picks as "target" a
 * page that holds only its own blocks and is not the thread's current pool
 * (a thread keeps its current pool when it empties).  Its bookkeeping arrays
 * come from mmap, so that under the preloaded library they do not share
 * pools with the blocks under test.
 */
#include <pthread.h>

#include "shed_test.h"

enum { BS = 256, MAXB = 4096 };

struct set {
    void **p;           /* MAXB slots, NULL when freed */
    size_t n;
    void *target;       /* the page whose blocks are freed */
    void *last;         /* page of the last block: the current pool */
};

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

/* Fill at least `pools` pools with BS-byte blocks and choose the target. */
static void make_pools(struct set *s, size_t pools)
{
    size_t per = page_size() / BS;
    s->p = scratch(MAXB * sizeof(void *));
    s->n = 0;
    s->target = NULL;
    while (!s->target) {
        for (size_t i = 0; i < (pools + 1) * per; i++) {
            assert_true(s->n < MAXB);
            void *b = shed_malloc(BS);
            assert_non_null(b);
            fill(b, BS, 1);
            s->p[s->n++] = b;
        }
        s->last = page_of(s->p[s->n - 1]);
        for (size_t i = 0; i < s->n && !s->target; i++) {
            void *pg = page_of(s->p[i]);
            if (pg != s->last && in_page(s->p, s->n, pg) == per)
                s->target = pg;
        }
    }
    assert_int_equal(resident(s->target), 1);
}

/* Check and free the target's blocks. */
static void free_target(struct set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->p[i] && page_of(s->p[i]) == s->target) {
            assert_int_equal(check_fill(s->p[i], BS, 1), -1);
            shed_free(s->p[i]);
            s->p[i] = NULL;
        }
    }
}

static void free_all(struct set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->p[i]) {
            assert_int_equal(check_fill(s->p[i], BS, 1), -1);
            shed_free(s->p[i]);
        }
    }
    munmap(s->p, MAXB * sizeof(void *));
}

/* Allocate blocks of `size` until the released target page is handed out
 * again and filled; it must be, before any new arena is carved.  Every block
 * gets a pattern, and every pattern must survive the others' writes. */
static void reuse_target(struct set *s, size_t size)
{
    struct shed_stats st;
    shed_stats(&st);
    size_t per = page_size() / size;
    size_t bound = (st.arenas * 64 + 16) * per;
    void **q = scratch(bound * sizeof(void *));
    size_t n = 0, hits = 0;
    while (hits < per && n < bound) {
        void *b = shed_malloc(size);
        assert_non_null(b);
        hits += page_of(b) == s->target;
        q[n++] = b;
    }
    assert_int_equal(hits, per);
    for (size_t i = 0; i < n; i++)
        fill(q[i], size, 2);
    assert_int_equal(resident(s->target), 1);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(check_fill(q[i], size, 2), -1);
        shed_free(q[i]);
    }
    munmap(q, bound * sizeof(void *));
}

static bool wait_gone(const void *page, unsigned ms)
{
    uint64_t deadline = now_ms() + ms;
    while (resident(page) != 0) {
        if (now_ms() > deadline)
            return false;
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
    }
    return true;
}

/* inline: the page leaves as the pool's last block is freed. */
static void test_inline(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=inline,advice=dontneed,backend=auto"), 0);
    struct set s;
    make_pools(&s, 4);
    struct shed_stats s0, s1;
    shed_stats(&s0);
    free_target(&s);
    shed_stats(&s1);
    assert_int_equal(resident(s.target), 0);
    assert_int_equal(s1.pages_released, s0.pages_released + 1);
    assert_int_equal(s1.pools_in_use + 1, s0.pools_in_use);
    assert_int_equal(s1.pools_released, s0.pools_released + 1);
    assert_true(s1.release_syscalls > s0.release_syscalls);
    assert_int_equal(s1.release_failures, s0.release_failures);
    reuse_target(&s, BS);
    free_all(&s);
}

/* Free the target's blocks (every other one, or all that are left), after
 * checking each; returns the first bad one, or NULL. */
struct target_job { struct set *s; bool all; };

static void *free_target_part(void *arg)
{
    struct target_job *j = arg;
    size_t k = 0;
    for (size_t i = 0; i < j->s->n; i++) {
        void *b = j->s->p[i];
        if (!b || page_of(b) != j->s->target || (!j->all && k++ % 2))
            continue;
        if (check_fill(b, BS, 1) != -1)
            return b;
        shed_free(b);
        j->s->p[i] = NULL;
    }
    return NULL;
}

/* inline, with the target emptied by another thread's frees (all of them,
 * or the half its owner left): the owner takes those frees in at its next
 * slow path, and the page leaves then, as at the owner's own last free. */
static void test_inline_remote(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=inline,advice=dontneed,backend=auto"), 0);
    for (int owner_half = 0; owner_half <= 1; owner_half++) {
        struct set s;
        make_pools(&s, 4);
        struct shed_stats s0, s1;
        shed_stats(&s0);
        if (owner_half)
            assert_null(free_target_part(&(struct target_job){ &s, false }));
        struct target_job job = { &s, true };
        pthread_t t;
        void *bad;
        assert_int_equal(pthread_create(&t, NULL, free_target_part, &job), 0);
        assert_int_equal(pthread_join(t, &bad), 0);
        assert_null(bad);
        assert_int_equal(in_page(s.p, s.n, s.target), 0);
        assert_int_equal(resident(s.target), 1);   /* not yet taken in */
        /* Slow paths of another class: the first merges what was freed. */
        void *q[64];
        for (int i = 0; i < 64; i++)
            assert_non_null(q[i] = shed_malloc(512));
        for (int i = 0; i < 64; i++)
            shed_free(q[i]);
        shed_stats(&s1);
        assert_int_equal(resident(s.target), 0);
        assert_true(s1.pages_released >= s0.pages_released + 1);
        assert_int_equal(s1.release_failures, s0.release_failures);
        reuse_target(&s, BS);
        free_all(&s);
    }
}

/* A thread that allocates one block of XS bytes and frees it, then records
 * the stats: what follows them is its exit. */
enum { XS = 432 };               /* a class no other test here uses */

static void *one_block(void *arg)
{
    void *b = shed_malloc(XS), *bad = NULL;
    if (!b)
        return arg;
    fill(b, XS, 3);
    if (check_fill(b, XS, 3) != -1)
        bad = b;
    shed_free(b);
    shed_stats(arg);
    return bad;
}

/* inline: a thread's exit gives its empty pools back in one pass, not a
 * system call each.  They must be resident for mincore to see them go: the
 * thread takes pools that manual mode left dirty (dirty before fresh), its
 * current one and the spares taken with it, and the pass at its exit takes
 * every free pool left, those spares among them. */
static void test_inline_thread_exit(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=manual"), 0);
    shed_trim();
    size_t per = page_size() / XS, n = 8 * per;
    void **b = scratch(n * sizeof *b), **pages = scratch(n * sizeof *pages);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(b[i] = shed_malloc(XS));
        fill(b[i], XS, 2);
    }
    /* the pages that only these blocks use (not the current pool's) */
    size_t np = 0;
    for (size_t i = 0; i < n; i++) {
        void *pg = page_of(b[i]);
        bool listed = false;
        for (size_t k = 0; k < np; k++)
            listed |= pages[k] == pg;
        if (!listed && pg != page_of(b[n - 1]) && in_page(b, n, pg) == per)
            pages[np++] = pg;
    }
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(check_fill(b[i], XS, 2), -1);
        shed_free(b[i]);
    }
    assert_true(np >= 4);
    struct shed_stats s0, before, s1;
    shed_stats(&s0);
    assert_true(s0.pools_dirty >= np);
    for (size_t k = 0; k < np; k++)
        assert_int_equal(resident(pages[k]), 1);

    assert_int_equal(shed_config("release=inline"), 0);
    pthread_t t;
    void *bad;
    assert_int_equal(pthread_create(&t, NULL, one_block, &before), 0);
    assert_int_equal(pthread_join(t, &bad), 0);
    assert_null(bad);
    shed_stats(&s1);
    for (size_t k = 0; k < np; k++)
        assert_int_equal(resident(pages[k]), 0);
    assert_int_equal(s1.pools_dirty, 0);
    assert_int_equal(s1.release_batches - before.release_batches, 1);
    assert_true(s1.pages_released - before.pages_released >= np - 1);
    assert_int_equal(s1.release_failures, s0.release_failures);
    munmap(b, n * sizeof *b);
    munmap(pages, n * sizeof *pages);
}

/* manual: the page stays until shed_trim(), which also releases the thread's
 * emptied current pool; the pool is then reused by another class. */
static void test_manual_trim(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=manual"), 0);
    shed_trim();
    struct set s;
    make_pools(&s, 4);
    struct shed_stats s0, s1, s2;
    shed_stats(&s0);
    free_target(&s);
    shed_stats(&s1);
    assert_int_equal(resident(s.target), 1);
    assert_int_equal(s1.pages_released, s0.pages_released);
    assert_int_equal(s1.pools_dirty, s0.pools_dirty + 1);
    size_t got = shed_trim();
    shed_stats(&s2);
    assert_true(got >= page_size());
    assert_int_equal(resident(s.target), 0);
    assert_true(s2.pages_released >= s1.pages_released + 1);
    assert_int_equal(s2.pools_dirty, 0);
    assert_int_equal((s2.pages_released - s1.pages_released) * page_size(), got);

    reuse_target(&s, 48);
    void *last = s.last;
    free_all(&s);
    got = shed_trim();
    assert_true(got >= page_size());
    if (!SHED_TEST_PRELOAD)           /* nothing else shares our current pool */
        assert_int_equal(resident(last), 0);
}

/* off: nothing is released by frees. */
static void test_off(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=off"), 0);
    struct set s;
    make_pools(&s, 4);
    struct shed_stats s0, s1;
    shed_stats(&s0);
    free_target(&s);
    free_all(&s);
    shed_stats(&s1);
    assert_int_equal(resident(s.target), 1);
    assert_int_equal(s1.pages_released, s0.pages_released);
    assert_int_equal(s1.release_syscalls, s0.release_syscalls);
    /* every pool that emptied stays dirty */
    size_t emptied = s0.pools_in_use - s1.pools_in_use;
    assert_true(emptied >= 1);
    assert_int_equal(s1.pools_dirty, s0.pools_dirty + emptied);
    assert_int_equal(shed_config("release=manual"), 0);
    assert_true(shed_trim() >= emptied * page_size());
}

/* batched: the background thread releases the page after delay_ms; poll
 * with a deadline. */
static void test_batched(void **state)
{
    (void)state;
    enum { DELAY = 300 };
    assert_int_equal(shed_config("release=batched,delay_ms=0"), 0);
    /* Warm-up: the first pool retired starts the background thread, and
     * pthread_create allocates (its TLS); under the preloaded library that
     * may take the very pool just freed.  Start the thread before the
     * measured round: free a pool and wait until no pool is left dirty. */
    struct set s;
    make_pools(&s, 1);
    free_target(&s);
    uint64_t deadline = now_ms() + 5000;
    struct shed_stats w;
    while (shed_stats(&w) == 0 && w.pools_dirty > 0 && now_ms() < deadline)
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
    assert_int_equal(w.pools_dirty, 0);
    free_all(&s);

    assert_int_equal(shed_config("delay_ms=300"), 0);
    make_pools(&s, 4);
    struct shed_stats s0, s1;
    shed_stats(&s0);
    uint64_t t0 = now_ms();
    free_target(&s);
    int early = resident(s.target);
    uint64_t t1 = now_ms();
    if (t1 - t0 < DELAY / 2)          /* not yet due: must still be there */
        assert_int_equal(early, 1);
    if (!wait_gone(s.target, 5000 + DELAY)) {
        shed_stats_print(stderr);
        fail_msg("page %p still resident after %d ms", s.target, 5000 + DELAY);
    }
    /* The thread counts the release after the call that made it, so the
     * page may be seen gone a moment before the counters move. */
    uint64_t deadline2 = now_ms() + 5000;
    while (shed_stats(&s1) == 0 &&
           (s1.pages_released < s0.pages_released + 1 ||
            s1.release_batches <= s0.release_batches) &&
           now_ms() < deadline2)
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
    assert_true(s1.pages_released >= s0.pages_released + 1);
    assert_true(s1.release_batches > s0.release_batches);
    reuse_target(&s, BS);
    free_all(&s);
}

/* advice=free: MADV_FREE lets the kernel take the page lazily, so it may
 * stay resident; the stats count the release. */
static void test_advice_free(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=inline,advice=free"), 0);
    struct set s;
    make_pools(&s, 4);
    struct shed_stats s0, s1;
    shed_stats(&s0);
    free_target(&s);
    shed_stats(&s1);
    assert_int_equal(s1.pages_released, s0.pages_released + 1);
    assert_int_equal(s1.pools_released, s0.pools_released + 1);
    assert_int_equal(s1.release_failures, s0.release_failures);
    reuse_target(&s, BS);
    free_all(&s);
    assert_int_equal(shed_config("advice=dontneed"), 0);
}

/* Fill pools and free the target's blocks, in the inline mode: exactly its
 * page leaves memory, with no failure. */
static void release_target(struct set *s, size_t pools)
{
    make_pools(s, pools);
    struct shed_stats s0, s1;
    shed_stats(&s0);
    free_target(s);
    shed_stats(&s1);
    assert_int_equal(resident(s->target), 0);
    assert_int_equal(s1.pages_released, s0.pages_released + 1);
    assert_int_equal(s1.release_failures, s0.release_failures);
}

/* Each backend releases, without failures, and is the one in use. */
static void test_backends(void **state)
{
    (void)state;
    static const char *const names[] = { "madvise", "process_madvise", "auto" };
    for (int i = 0; i < 3; i++) {
        char conf[64], head[256];
        snprintf(conf, sizeof conf, "release=inline,backend=%s", names[i]);
        assert_int_equal(shed_config(conf), 0);
        struct set s;
        release_target(&s, 2);
        /* probed by the first release at the latest */
        stats_settings(head, sizeof head);
        if (i == 0)
            assert_non_null(strstr(head, "backend=madvise "));
        else    /* process_madvise when the kernel allows it, else madvise */
            assert_true(strstr(head, "backend=madvise ") ||
                        strstr(head, "backend=process_madvise "));
        free_all(&s);
    }
}

/* off and manual with stats_interval_ms: shed's thread runs for the JSON
 * lines, and ends before a fork.  It must not release the dirty pools then,
 * as it does in batched mode: off and manual release only at shed_trim. */
static void test_fork_keeps_dirty(void **state)
{
    (void)state;
    static const char *const modes[] = { "release=off", "release=manual" };
    for (unsigned m = 0; m < 2; m++) {
        struct set r;                 /* a release first, so that the backend is chosen */
        assert_int_equal(shed_config("release=inline"), 0);
        release_target(&r, 2);
        free_all(&r);
        assert_int_equal(shed_config(modes[m]), 0);
        assert_int_equal(shed_config("stats_file=/dev/null,stats_interval_ms=60000"), 0);
        struct set s;
        make_pools(&s, 4);
        free_target(&s);
        struct shed_stats s0, s1;
        shed_stats(&s0);
        assert_true(s0.pools_dirty >= 1);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            _exit(0);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        shed_stats(&s1);
        assert_int_equal(resident(s.target), 1);
        assert_int_equal(s1.pages_released, s0.pages_released);
        assert_int_equal(s1.pools_dirty, s0.pools_dirty);
        assert_int_equal(shed_config("stats_interval_ms=0,release=manual"), 0);
        assert_true(shed_trim() >= page_size());
        assert_int_equal(resident(s.target), 0);
        free_all(&s);
    }
}

/* Releases through process_madvise (where the kernel allows it) leave no
 * descriptor open, and go on working in a fork()ed child.  (A kernel
 * without the PIDFD_SELF_PROCESS sentinel: test/attack/test_faults.c.) */
static void test_no_descriptor(void **state)
{
    (void)state;
    assert_int_equal(open_pidfds(), 0);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(shed_config("release=inline,backend=process_madvise"), 0);
        struct set s;
        release_target(&s, 2);
        assert_int_equal(open_pidfds(), 0);
        free_all(&s);
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct set s;
        make_pools(&s, 2);
        free_target(&s);
        _exit(resident(s.target) != 0 ? 1 : open_pidfds() != 0 ? 2 : 0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(shed_config("backend=auto"), 0);
}

int main(void)
{
    /* Every test here frees blocks and checks that their pools empty and go
     * back to the kernel.  Under a checker the quarantine would hold the
     * freed blocks, and so their pools, back: off for this program. */
    if (shed_config("quarantine_kb=0") != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inline),
        cmocka_unit_test(test_inline_remote),
        cmocka_unit_test(test_inline_thread_exit),
        cmocka_unit_test(test_manual_trim),
        cmocka_unit_test(test_off),
        cmocka_unit_test(test_fork_keeps_dirty),
        cmocka_unit_test(test_advice_free),
        cmocka_unit_test(test_backends),
        cmocka_unit_test(test_no_descriptor),
        /* last: its background thread keeps releasing what it left dirty */
        cmocka_unit_test(test_batched),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

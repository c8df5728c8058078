/*
 * fork() under load: the process forks at least 200 times while two other
 * threads allocate and free whole pools and the release thread is busy
 * (delay_ms=0).  Each child allocates, frees a whole pool's worth, waits
 * (bounded poll) until mincore shows the pages gone, which needs a release
 * thread of its own, checks its counters, and exits 0.  A child that does not
 * exit within 20 s is killed and fails the test (a lock held across fork):
 * longer than a correct child can take, which may wait LC_WAIT_MS twice.
 * And a child whose only thread ends (pthread_exit) before it allocates
 * leaves its parent's theap, inherited, alone.
 */
#include "lc.h"

enum { CHURNERS = 2, CHILD_MS = 4 * LC_WAIT_MS };

static _Atomic int stop;

struct churner {
    int id;
    _Atomic long rounds;
    long errors;
};

static void *churn(void *arg)
{
    struct churner *c = arg;
    uint64_t rnd = 12345u + (uint64_t)c->id * 777u;
    void **b = lc_scratch(2048 * sizeof(void *));
    while (!atomic_load(&stop)) {
        size_t size = 16 * (1 + test_rand(&rnd) % 32);
        size_t n = (page_size() / size) * (2 + test_rand(&rnd) % 6);
        if (n > 2048)
            n = 2048;
        unsigned seed = (unsigned)c->rounds;
        for (size_t i = 0; i < n; i++) {
            b[i] = shed_malloc(size);
            if (!b[i]) {
                c->errors++;
                n = i;
                break;
            }
            fill(b[i], size, seed);
        }
        for (size_t i = 0; i < n; i++) {
            c->errors += check_fill(b[i], size, seed) != -1;
            shed_free(b[i]);
        }
        c->rounds++;
    }
    munmap(b, 2048 * sizeof(void *));
    return NULL;
}

/* The child: its exit code says what went wrong. */
static int child(void)
{
    struct shed_stats s0;
    if (shed_stats(&s0) != 0)
        return 10;
    enum { N = 4096 };
    static void *b[N];          /* static: not the blocks' pages */
    size_t per = page_size() / 128, n = 5 * per;
    for (size_t i = 0; i < n; i++) {
        if (!(b[i] = shed_malloc(128)))
            return 11;
        fill(b[i], 128, 3);
    }
    /* pages wholly ours, except the current pool's (the last block's) */
    void *pages[8];
    size_t np = 0;
    for (size_t i = 0; i + per <= n; i += per) {
        void *pg = page_of(b[i]);
        size_t k = 0;
        for (size_t j = 0; j < n; j++)
            k += page_of(b[j]) == pg;
        if (k == per && pg != page_of(b[n - 1]) && np < 8)
            pages[np++] = pg;
    }
    for (size_t i = 0; i < n; i++) {
        if (check_fill(b[i], 128, 3) != -1)
            return 12;
        shed_free(b[i]);
    }
    if (np == 0)
        return 13;
    /* settled too: the pages leave memory a moment before the stats count
     * them (the count follows the system call) */
    if (!lc_wait_released(pages, np, 0, LC_WAIT_MS) || !lc_wait_settled(0, LC_WAIT_MS))
        return 14;
    struct shed_stats s1;
    shed_stats(&s1);
    if (s1.pages_released < s0.pages_released + np)
        return 15;
    if (s1.release_syscalls_app != s0.release_syscalls_app)
        return 16;
    return 0;
}

static void test_fork_under_churn(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=batched,delay_ms=0"), 0);
    /* Every thread is past its start before the first fork: the release
     * thread has released pages, each churner has churned.  (A thread still
     * starting may hold a lock that no atfork handler takes: ASan's
     * allocator's, whose lock a child then inherits held for ever.) */
    struct lc_set warm;
    lc_fill_pools(&warm, 256, 2, 7);
    void *warm_pages[2] = { warm.full[0], warm.full[1] };
    lc_free_all(&warm);
    assert_true(lc_wait_released(warm_pages, 2, 0, LC_WAIT_MS));
    struct churner c[CHURNERS];
    pthread_t t[CHURNERS];
    atomic_store(&stop, 0);
    for (int i = 0; i < CHURNERS; i++) {
        c[i] = (struct churner){ .id = i };
        assert_int_equal(pthread_create(&t[i], NULL, churn, &c[i]), 0);
    }
    uint64_t deadline = now_ms() + LC_WAIT_MS;
    for (int i = 0; i < CHURNERS; i++)
        while (atomic_load(&c[i].rounds) == 0 && now_ms() < deadline)
            lc_sleep_ms(1);
    for (int i = 0; i < CHURNERS; i++)
        assert_true(atomic_load(&c[i].rounds) > 0);
    struct shed_stats s0 = lc_stats();

    long forks = scaled(250);
    if (forks < 5)
        forks = 5;
    long failed = 0, hung = 0;
    uint64_t t0 = now_ms(), worst = 0;
    for (long f = 0; f < forks; f++) {
        /* the parent's own churn: a pool's worth freed now and then */
        void *mine[32];
        for (int i = 0; i < 32; i++)
            mine[i] = shed_malloc(256);
        fflush(NULL);
        uint64_t t1 = now_ms();
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            _exit(child());
        for (int i = 0; i < 32; i++)
            shed_free(mine[i]);
        int status = lc_wait_child(pid, CHILD_MS);
        if (now_ms() - t1 > worst)
            worst = now_ms() - t1;
        if (status == -1) {
            hung++;
            print_message("      fork %ld: child hung (killed after %u ms)\n", f, CHILD_MS);
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            failed++;
            print_message("      fork %ld: child status %#x (exit %d)\n", f, status,
                          WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        }
        if (hung + failed > 5)
            break;
    }
    atomic_store(&stop, 1);
    long errors = 0, rounds = 0;
    for (int i = 0; i < CHURNERS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        errors += c[i].errors;
        rounds += c[i].rounds;
    }
    print_message("      %ld forks in %llu ms (slowest child %llu ms), %ld churn rounds meanwhile\n",
                  forks, (unsigned long long)(now_ms() - t0), (unsigned long long)worst, rounds);
    assert_int_equal(hung, 0);
    assert_int_equal(failed, 0);
    assert_int_equal(errors, 0);
    assert_true(rounds > 0);
    /* the parent's threads made no release call either */
    struct shed_stats s1 = lc_stats();
    assert_int_equal(s1.release_syscalls_app, s0.release_syscalls_app);
    assert_true(s1.pages_released > s0.pages_released);
}

/* ---- a child whose forking thread ends first ---- */

/* A fork()ed child's only thread ends with pthread_exit before allocating
 * anything.  The key of shed's thread heaps still names the parent's theap
 * there (the child does not clear it), inherited, and its destructor must
 * leave it alone: had it abandoned it, the parent's empty current pool
 * would go back, and the pools in use drop.  The process exits after the
 * destructors; an exit handler compares. */
static size_t first_pools;

static void first_check(void)
{
    struct shed_stats st;
    _exit(shed_stats(&st) != 0 ? 10 : st.pools_in_use == first_pools ? 0 : 11);
}

static int main_exits_first(void)
{
    struct lc_set s;
    lc_fill_pools(&s, 96, 4, 21);
    shed_free(shed_malloc(200));         /* an empty current pool */
    pid_t pid = fork();
    if (pid < 0)
        return 2;
    if (pid == 0) {
        struct shed_stats st;
        if (shed_stats(&st) != 0)
            _exit(9);
        first_pools = st.pools_in_use;   /* the child's, after the fork */
        if (atexit(first_check) != 0)
            _exit(3);
        pthread_exit(NULL);
    }
    int status = lc_wait_child(pid, 4 * LC_WAIT_MS);
    if (status == -1 || !WIFEXITED(status))
        return 4;
    lc_free_all(&s);
    return WEXITSTATUS(status);
}

static void test_child_main_exits_first(void **state)
{
    (void)state;
    lc_in_child(main_exits_first, "a child whose only thread ends first");
}

int main(void)
{
    /* These tests check what freeing releases; under a checker (valgrind,
     * ASan) the quarantine would hold the freed blocks and their pools
     * back: off. */
    if (shed_config("quarantine_kb=0") != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_under_churn),
        cmocka_unit_test(test_child_main_exits_first),
    };
    /* These tests are about what the thread does, not when it starts
     * (test_start.c): it starts at the first pool, as it did before
     * thread_after_kb. */
    if (shed_config("thread_after_kb=0") != 0)
        return 1;
    return cmocka_run_group_tests_name("lifecycle/fork", tests, NULL, NULL);
}

/*
 * The release thread.  In batched mode (the default) freed pools
 * leave memory within a bounded wait while the program's own threads make no
 * release call; delay_ms and max_dirty are honoured; the release statistics
 * are consistent with each other; inline mode, for contrast, releases from
 * the freeing thread; a fork() ends the thread first.  The tests run in this
 * order in one process and rely on it (release_syscalls_app is a counter of
 * the whole run).
 */
#include "lc.h"

enum { BS = 256 };

/* Batched with the defaults: every fully freed pool is released by the
 * background thread within LC_WAIT_MS; no call comes from this thread. */
static void test_batched_releases(void **state)
{
    (void)state;
    struct lc_set s;
    size_t pools = (size_t)scaled(64);
    if (pools < 8)
        pools = 8;
    lc_fill_pools(&s, BS, pools, 1);
    struct shed_stats s0 = lc_stats();
    assert_int_equal(s0.release_syscalls_app, 0);
    assert_int_equal(lc_resident_count(s.full, s.nfull), s.nfull);
    size_t resident0 = s0.bytes_resident;

    size_t freed = lc_free_pages(&s, s.nfull);
    assert_int_equal(freed, s.nfull * (page_size() / BS));
    /* The default delay is 100 ms: the pools are dirty for a while first. */
    assert_true(lc_wait_released(s.full, s.nfull, 0, LC_WAIT_MS));
    assert_true(lc_wait_settled(0, LC_WAIT_MS));

    struct shed_stats s1 = lc_stats();
    assert_true(s1.pages_released >= s0.pages_released + s.nfull);
    assert_true(s1.release_syscalls > s0.release_syscalls);
    assert_int_equal(s1.release_syscalls_app, 0);
    assert_int_equal(s1.release_failures, 0);
    assert_int_equal(s1.blocks_in_use, s0.blocks_in_use - freed);
    assert_true(s1.pools_in_use <= s0.pools_in_use - s.nfull);
    assert_true(s1.bytes_resident <= resident0 - s.nfull * page_size());
    lc_free_all(&s);
    assert_true(lc_wait_settled(0, LC_WAIT_MS));
    assert_int_equal(lc_stats().release_syscalls_app, 0);
}

/* delay_ms=2000: a freed pool stays resident and counted dirty for a while
 * (watched for up to 1.5 s after the free), then shed_trim() releases it at
 * once.  Another pool, left alone, goes after 2 s and not before.  The
 * clock is shed's own (lc_shed_ms), read before the free, which it stamps
 * no earlier, and after each look: a look (or a trim) tells something while
 * the clock read after it is less than the delay past the free, as no pool
 * was claimed by the thread before it then; a release seen means the clock
 * read after the look is the delay past the free at least, however long
 * the test was kept off the CPU in between.  A machine that kept it off
 * the CPU for the whole delay leaves a pool with no look or trim that
 * tells: then the next one is watched, 3 at most. */
static void test_delay(void **state)
{
    (void)state;
    const uint32_t delay = 2000;
    assert_int_equal(shed_config("delay_ms=2000"), 0);
    assert_true(lc_wait_settled(0, LC_WAIT_MS));
    struct lc_set s;
    lc_fill_pools(&s, BS, 4, 2);
    assert_int_equal(lc_stats().pools_dirty, 0);

    bool told = false;
    for (size_t k = 1; k <= 3 && !told; k++) {
        struct shed_stats s0 = lc_stats();
        uint32_t c0 = lc_shed_ms();
        unsigned checks = 0;
        lc_free_pages(&s, k);             /* page full[k - 1] */
        do {
            int r = resident(s.full[k - 1]);
            struct shed_stats st = lc_stats();
            if (lc_shed_ms() - c0 >= delay)
                break;
            assert_int_equal(r, 1);
            assert_int_equal(st.pools_dirty, 1);
            assert_int_equal(st.pages_released, s0.pages_released);
            checks++;
            lc_sleep_ms(50);
        } while (lc_shed_ms() - c0 < 1500);

        size_t bytes = shed_trim();
        int r = resident(s.full[k - 1]);
        struct shed_stats s2 = lc_stats();
        if (checks == 0 || lc_shed_ms() - c0 >= delay) {
            /* the thread may have claimed it first: it goes all the same */
            assert_true(lc_wait_released(&s.full[k - 1], 1, 0, LC_WAIT_MS));
            assert_true(lc_wait_settled(0, LC_WAIT_MS));
            continue;
        }
        assert_true(bytes >= page_size());
        assert_int_equal(r, 0);
        assert_int_equal(s2.pools_dirty, 0);
        assert_true(s2.pages_released >= s0.pages_released + 1);
        told = true;
    }
    assert_true(told);

    /* Left alone: not released before 2 s, released within 2 s +
     * LC_WAIT_MS. */
    uint32_t c0 = lc_shed_ms();
    uint64_t t0 = now_ms();
    lc_free_pages(&s, 4);                 /* now page full[3] */
    void *pg = s.full[3];
    while (resident(pg) != 0) {
        assert_true(now_ms() - t0 < delay + LC_WAIT_MS);
        lc_sleep_ms(10);
    }
    uint32_t took = lc_shed_ms() - c0;
    print_message("      delay_ms=2000: released after %u ms\n", (unsigned)took);
    assert_true(took >= delay);
    lc_free_all(&s);
    assert_int_equal(shed_config("delay_ms=0"), 0);
    shed_trim();
}

/* max_dirty=8: of 20 freed pools the release thread leaves 8 dirty. */
static void test_max_dirty(void **state)
{
    (void)state;
    assert_int_equal(shed_config("delay_ms=0,max_dirty=8"), 0);
    shed_trim();
    struct lc_set s;
    lc_fill_pools(&s, BS, 20, 3);
    assert_int_equal(lc_stats().pools_dirty, 0);
    lc_free_pages(&s, 20);
    /* The thread releases 12 of them, and stops there. */
    assert_true(lc_wait_released(s.full, 20, 8, LC_WAIT_MS));
    assert_true(lc_wait_settled(8, LC_WAIT_MS));
    struct shed_stats st = lc_stats();
    assert_int_equal(st.pools_dirty, 8);
    assert_int_equal(lc_resident_count(s.full, 20), 8);
    /* It stays so: another 200 ms of polling sees no change. */
    uint64_t t0 = now_ms();
    while (now_ms() - t0 < 200) {
        assert_int_equal(lc_stats().pools_dirty, 8);
        lc_sleep_ms(10);
    }
    assert_int_equal(lc_resident_count(s.full, 20), 8);
    /* shed_trim ignores max_dirty. */
    assert_true(shed_trim() >= 8 * page_size());
    assert_int_equal(lc_resident_count(s.full, 20), 0);
    assert_int_equal(lc_stats().pools_dirty, 0);
    assert_int_equal(shed_config("max_dirty=0"), 0);
    lc_free_all(&s);
    shed_trim();
}

/* The counters agree with each other and with the pool states. */
static void check_consistent(const struct shed_stats *st, const char *backend)
{
    assert_true(st->release_ranges <= st->pages_released);
    assert_true(st->release_batches <= st->release_syscalls);
    assert_true(st->release_syscalls_app <= st->release_syscalls);
    if (st->pages_released)
        assert_true(st->release_batches > 0 && st->release_ns > 0);
    assert_int_equal(st->release_failures, 0);
    if (strcmp(backend, "process_madvise") == 0)
        assert_true(st->release_syscalls <= st->release_ranges);
    else if (strcmp(backend, "madvise") == 0)
        assert_int_equal(st->release_syscalls, st->release_ranges);
    size_t pools = 0, blocks = 0, bytes = 0;
    for (int c = 0; c < SHED_NUM_CLASSES; c++) {
        pools += st->classes[c].pools_in_use;
        blocks += st->classes[c].blocks_in_use;
        bytes += st->classes[c].bytes_in_use;
    }
    assert_int_equal(pools, st->pools_in_use);
    assert_int_equal(blocks, st->blocks_in_use);
    assert_int_equal(bytes, st->bytes_in_use);
    assert_int_equal(st->pools_in_use + st->pools_dirty + st->pools_releasing + st->pools_released,
                     st->arenas * 64);
    assert_true(st->bytes_resident <= st->bytes_mapped);
}

/* Release with each backend; the counters of what was done this time. */
static void stats_with_backend(const char *backend)
{
    char conf[128], line[256];
    snprintf(conf, sizeof conf, "release=batched,delay_ms=0,backend=%s", backend);
    assert_int_equal(shed_config(conf), 0);
    stats_settings(line, sizeof line);
    if (!strstr(line, backend)) {
        print_message("      backend %s not in use here (%s), skipped\n", backend, line);
        return;
    }
    shed_trim();
    assert_true(lc_wait_settled(0, LC_WAIT_MS));
    struct lc_set s;
    lc_fill_pools(&s, 64, 40, 4);
    struct shed_stats s0 = lc_stats();
    /* every other page: 20 ranges that cannot merge */
    for (size_t i = 0; i < s.n; i++) {
        void *pg = page_of(s.b[i]);
        for (size_t k = 0; k < 40; k += 2)
            if (pg == s.full[k]) {
                shed_free(s.b[i]);
                s.b[i] = NULL;
            }
    }
    void *pages[20];
    for (size_t k = 0; k < 20; k++)
        pages[k] = s.full[2 * k];
    assert_true(lc_wait_released(pages, 20, 0, LC_WAIT_MS));
    assert_true(lc_wait_settled(0, LC_WAIT_MS));
    struct shed_stats s1 = lc_stats();
    struct shed_stats d = s1;
    d.release_syscalls -= s0.release_syscalls;
    d.release_syscalls_app -= s0.release_syscalls_app;
    d.release_batches -= s0.release_batches;
    d.release_ranges -= s0.release_ranges;
    d.pages_released -= s0.pages_released;
    d.release_ns -= s0.release_ns;
    d.release_failures -= s0.release_failures;
    print_message("      %s: %llu syscalls, %llu batches, %llu ranges, %llu pages, %llu ns\n",
                  backend, (unsigned long long)d.release_syscalls,
                  (unsigned long long)d.release_batches, (unsigned long long)d.release_ranges,
                  (unsigned long long)d.pages_released, (unsigned long long)d.release_ns);
    assert_true(d.pages_released >= 20);
    assert_true(d.release_ranges >= 20);    /* none of them adjacent */
    assert_int_equal(d.release_syscalls_app, 0);
    check_consistent(&d, backend);
    check_consistent(&s1, "any");
    lc_free_all(&s);
}

static void test_stats_process_madvise(void **state)
{
    (void)state;
    stats_with_backend("process_madvise");
}

static void test_stats_madvise(void **state)
{
    (void)state;
    stats_with_backend("madvise");
    assert_int_equal(shed_config("backend=auto"), 0);
}

/* A batched pass merges adjacent pools into one range. */
static void test_ranges_merge(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=manual"), 0);
    struct lc_set s;
    lc_fill_pools(&s, BS, 16, 5);
    shed_trim();
    struct shed_stats s0 = lc_stats();
    lc_free_pages(&s, 16);
    /* count the runs of adjacent pages among the 16 */
    size_t runs = 1;
    for (size_t k = 1; k < 16; k++)
        runs += (char *)s.full[k] != (char *)s.full[k - 1] + page_size();
    assert_true(shed_trim() >= 16 * page_size());
    struct shed_stats s1 = lc_stats();
    assert_true(s1.pages_released - s0.pages_released >= 16);
    assert_true(s1.release_ranges - s0.release_ranges <= runs + 2);
    assert_int_equal(lc_resident_count(s.full, 16), 0);
    lc_free_all(&s);
    assert_int_equal(shed_config("release=batched"), 0);
}

/* inline, for contrast: the freeing thread makes the call, at once. */
static void test_inline(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=inline"), 0);
    struct lc_set s;
    lc_fill_pools(&s, BS, 4, 6);
    struct shed_stats s0 = lc_stats();
    lc_free_pages(&s, 4);
    struct shed_stats s1 = lc_stats();
    assert_int_equal(lc_resident_count(s.full, 4), 0);
    assert_true(s1.pages_released >= s0.pages_released + 4);
    assert_true(s1.release_syscalls_app >= s0.release_syscalls_app + 4);
    lc_free_all(&s);
    check_consistent(&s1, "any");
    assert_int_equal(shed_config("release=batched"), 0);
}

/* Threads of this process, -1 if unreadable.  It must not allocate (see
 * below). */
static long thread_count(void)
{
    return lc_proc_field("/proc/self/status", "Threads");
}

/* The tests that count threads, or need the process to end with its last
 * thread, cannot under TSan, which runs one of its own: in a process from
 * its first pthread_create on, and in the child of a fork from a
 * single-threaded process. */
static bool tsan_skip(void)
{
    if (TSAN)
        print_message("      under TSan, which runs a thread of its own, skipped\n");
    return TSAN;
}

/* free() never starts the release thread: glibc calls free with its own
 * locks held (its stack cache, as an ended thread's TLS is freed), and
 * pthread_create takes them too.  A fork()ed child has no release thread:
 * its frees leave it so; its first malloc, which takes a pool, starts one. */
static void test_free_starts_no_thread(void **state)
{
    (void)state;
    if (tsan_skip())
        return;
    struct lc_set s;
    lc_fill_pools(&s, BS, 4, 9);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (thread_count() != 1)
            _exit(2);
        for (size_t i = 0; i < s.n; i++)    /* into the inherited pools */
            shed_free(s.b[i]);
        if (thread_count() != 1)
            _exit(3);
        void *b = shed_malloc(BS);          /* this child's first pool */
        if (!b || thread_count() != 2)
            _exit(4);
        shed_free(b);
        shed_trim();                        /* the frees all went through */
        _exit(s.nfull >= 4 && lc_resident_count(s.full, s.nfull) == 0 ? 0 : 5);
    }
    int status = lc_wait_child(pid, 4 * LC_WAIT_MS);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    lc_free_all(&s);
}

/* release=inline runs no thread (shed.7 offers it to programs that must
 * never have one): a fork()ed child, which has none yet, takes pools and
 * empties them, and they leave memory with the child still alone. */
static void test_inline_runs_no_thread(void **state)
{
    (void)state;
    if (tsan_skip())
        return;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (shed_config("release=inline") != 0 || thread_count() != 1)
            _exit(2);
        struct lc_set s;
        lc_fill_pools(&s, BS, 4, 10);
        lc_free_pages(&s, 4);
        if (lc_resident_count(s.full, 4) != 0)
            _exit(3);
        _exit(thread_count() == 1 ? 0 : 4);
    }
    int status = lc_wait_child(pid, 4 * LC_WAIT_MS);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* fork() with the release thread running: the thread ends first, after
 * releasing every dirty pool (delay_ms notwithstanding), so that parent and
 * child come out of the fork with one thread each (Python >= 3.12 counts
 * them at once, and warns if there are more).  The parent's malloc takes
 * pools and starts no thread; once it has emptied a pool (free() may not
 * start one), its next malloc does, and that thread releases the pool. */
static void test_fork_ends_thread(void **state)
{
    (void)state;
    if (tsan_skip())
        return;
    assert_int_equal(shed_config("delay_ms=60000"), 0);
    struct lc_set w, s, t;
    /* The earlier tests forked: a pool emptied, then a malloc, start a
     * thread here again. */
    lc_fill_pools(&w, BS, 2, 10);
    lc_free_all(&w);
    lc_fill_pools(&s, BS, 4, 11);
    assert_int_equal(thread_count(), 2);
    lc_free_pages(&s, 4);
    assert_int_equal(lc_resident_count(s.full, 4), 4);   /* dirty: 60 s to go */
    uint64_t app = lc_stats().release_syscalls_app;

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(thread_count() == 1 ? 0 : 2);
    long after = thread_count();
    int status = lc_wait_child(pid, 4 * LC_WAIT_MS);
    assert_int_equal(after, 1);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(lc_resident_count(s.full, 4), 0);
    struct shed_stats s1 = lc_stats();
    assert_int_equal(s1.pools_dirty, 0);
    assert_int_equal(s1.release_syscalls_app, app);      /* the thread did it */

    assert_int_equal(shed_config("delay_ms=0"), 0);
    lc_fill_pools(&t, BS, 4, 12);         /* takes pools, none emptied yet */
    void *a = shed_malloc(48);            /* a current pool of another class */
    assert_non_null(a);
    assert_int_equal(thread_count(), 1);
    lc_free_pages(&t, 4);                 /* emptied: free() starts no thread */
    assert_int_equal(thread_count(), 1);
    assert_int_equal(lc_resident_count(t.full, 4), 4);
    void *b = shed_malloc(48);            /* the next malloc does (a's pool) */
    assert_non_null(b);
    assert_int_equal(thread_count(), 2);
    assert_true(lc_wait_released(t.full, 4, 0, LC_WAIT_MS));
    assert_int_equal(lc_stats().release_syscalls_app, app);
    shed_free(a);
    shed_free(b);
    lc_free_all(&s);
    lc_free_all(&t);
    assert_int_equal(shed_config("delay_ms=100"), 0);
}

/* A thread with a cancellation pending forks (fork() is no cancellation
 * point) while the release thread runs: the fork must complete, the thread
 * be cancelled at its next cancellation point, and later forks work.  (Were
 * the wait for the release thread cancellable, the thread would die in the
 * atfork handler holding its locks, and every later fork would hang.)  Run
 * in a child, which is killed if it hangs. */
static void *fork_cancelled(void *arg)
{
    pthread_barrier_t *bar = arg;
    int old;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    pthread_barrier_wait(bar);            /* cancelled meanwhile */
    pthread_barrier_wait(bar);
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old);
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    waitpid(pid, NULL, 0);                /* a cancellation point */
    return NULL;
}

static void test_fork_cancelled(void **state)
{
    (void)state;
    if (SANITIZED) {  /* ASan leaves a cancelled thread's stack poisoned; TSan
                         takes the child's first lock of rel.mx for a second */
        print_message("      under a sanitizer, skipped\n");
        return;
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Many dirty pools: the thread's last pass at the fork takes a
         * while, so the fork waits for it, cancellably or not. */
        struct lc_set s;
        if (shed_config("delay_ms=60000") != 0)
            _exit(2);
        lc_fill_pools(&s, BS, 2000, 14);
        lc_free_all(&s);
        void *b = shed_malloc(BS);        /* the release thread runs */
        if (!b || thread_count() != 2)
            _exit(2);
        shed_free(b);                     /* memcheck's leak check at _exit */
        pthread_barrier_t bar;
        pthread_t t;
        void *ret = NULL;
        pthread_barrier_init(&bar, NULL, 2);
        if (pthread_create(&t, NULL, fork_cancelled, &bar) != 0)
            _exit(3);
        pthread_barrier_wait(&bar);
        pthread_cancel(t);
        pthread_barrier_wait(&bar);
        pthread_join(t, &ret);
        if (ret != PTHREAD_CANCELED)
            _exit(4);
        pid_t again = fork();
        if (again == 0)
            _exit(0);
        int status;
        _exit(again > 0 && waitpid(again, &status, 0) == again && status == 0 ? 0 : 5);
    }
    int status = lc_wait_child(pid, 4 * LC_WAIT_MS);
    assert_int_not_equal(status, -1);            /* -1: it hung */
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static _Atomic int *exit_mark;

static void mark_exit(void)
{
    *exit_mark = 1;
}

/* The program's last thread calls pthread_exit() while the release thread
 * lives.  glibc ends a process when its last thread ends, and ours counts:
 * the process must still end, soon after the release thread has nothing
 * left to do, with status 0 and its exit handlers run.  (The child is the
 * case of a pre-fork server or Python's os.fork() in a thread: its only
 * thread is the one that forked, and it ends with pthread_exit.) */
static void test_last_thread_exits(void **state)
{
    (void)state;
    if (tsan_skip())  /* TSan's own thread keeps any such process alive */
        return;
    exit_mark = lc_shared(page_size());
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct lc_set s;
        lc_fill_pools(&s, BS, 4, 8);
        lc_free_pages(&s, 4);
        /* The release thread has started in this child and run. */
        if (!lc_wait_released(s.full, 4, 0, LC_WAIT_MS))
            _exit(3);
        atexit(mark_exit);
        pthread_exit(NULL);
    }
    int status = lc_wait_child(pid, 4 * LC_WAIT_MS);
    assert_int_not_equal(status, -1);            /* -1: it never ended */
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(*exit_mark, 1);
}

int main(void)
{
    /* These tests check what freeing releases; under a checker (valgrind,
     * ASan) the quarantine would hold the freed blocks and their pools
     * back: off. */
    if (shed_config("quarantine_kb=0") != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batched_releases),
        cmocka_unit_test(test_delay),
        cmocka_unit_test(test_max_dirty),
        cmocka_unit_test(test_stats_process_madvise),
        cmocka_unit_test(test_stats_madvise),
        cmocka_unit_test(test_ranges_merge),
        cmocka_unit_test(test_inline),
        cmocka_unit_test(test_free_starts_no_thread),
        cmocka_unit_test(test_inline_runs_no_thread),
        cmocka_unit_test(test_fork_ends_thread),
        cmocka_unit_test(test_fork_cancelled),
        cmocka_unit_test(test_last_thread_exits),
    };
    /* These tests are about what the thread does, not when it starts
     * (test_start.c): it starts at the first pool, as it did before
     * thread_after_kb. */
    if (shed_config("thread_after_kb=0") != 0)
        return 1;
    return cmocka_run_group_tests_name("lifecycle/batched", tests, NULL, NULL);
}

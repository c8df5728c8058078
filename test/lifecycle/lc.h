/*
 * Helpers of the lifecycle tests (test/lifecycle/): the release thread,
 * fork(), heaps and freeze.  Built on test/shed_test.h.
 *
 * Waiting for the release thread is always a poll with a deadline (every
 * 10 ms, LC_WAIT_MS at most), never a fixed sleep.  What must not have
 * happened yet (a release before delay_ms, a start before its due time) is
 * asserted only as far as shed's clock, read before and after the events
 * (lc_shed_ms), says it cannot have: a process kept off the CPU may see
 * any delay pass between two lines.  A cost is bounded in CPU time, which
 * the load does not stretch, not wall time.  Bookkeeping arrays come from
 * mmap, so that they never share pages with the blocks under test.
 */
#ifndef LC_H
#define LC_H

#include "../shed_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#define LC_WAIT_MS 5000u         /* how long the release thread may take */

static inline void lc_sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* shed's clock (os.c's now_ms: CLOCK_MONOTONIC_COARSE in ms, truncated
 * alike), by which it stamps retired pools and due times.  Read around an
 * event, it bounds the stamp shed gave it: a test derives from it what
 * must have happened, whatever time the machine's load put in between. */
static inline uint32_t lc_shed_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

/* Sleep until shed's clock reads `when` or later. */
static inline void lc_sleep_until_shed_ms(uint32_t when)
{
    int32_t left;
    while ((left = (int32_t)(when - lc_shed_ms())) > 0)
        lc_sleep_ms((unsigned)left);
}

static inline void *lc_scratch(size_t bytes)
{
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    return m;
}

/* Shared with fork()ed children. */
static inline void *lc_shared(size_t bytes)
{
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    return m;
}

static inline struct shed_stats lc_stats(void)
{
    struct shed_stats st;
    assert_int_equal(shed_stats(&st), 0);
    return st;
}

/* How many of the n pages are resident now (mincore; -1 counts as resident). */
static inline size_t lc_resident_count(void *const *pages, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += resident(pages[i]) != 0;
    return k;
}

/* Poll until at most `left` of the pages are resident; false at the deadline. */
static inline bool lc_wait_released(void *const *pages, size_t n, size_t left, unsigned ms)
{
    uint64_t deadline = now_ms() + ms;
    while (lc_resident_count(pages, n) > left) {
        if (now_ms() > deadline)
            return false;
        lc_sleep_ms(10);
    }
    return true;
}

/* Poll until the release thread has nothing dirty left beyond `keep` pools
 * and nothing in flight. */
static inline bool lc_wait_settled(size_t keep, unsigned ms)
{
    uint64_t deadline = now_ms() + ms;
    for (;;) {
        struct shed_stats st;
        shed_stats(&st);
        if (st.pools_dirty <= keep && st.pools_releasing == 0)
            return true;
        if (now_ms() > deadline)
            return false;
        lc_sleep_ms(10);
    }
}

/*
 * A set of blocks of one size spread over whole pools.  lc_fill_pools()
 * allocates until at least `pools` pages hold nothing but the set's blocks
 * and are not the page of the last block (the thread's current pool, which
 * a thread keeps when it empties), and lists those pages in full[].
 */
struct lc_set {
    void **b;
    size_t n, cap, size;
    unsigned seed;
    void **full;                 /* pages wholly ours, not the current one */
    size_t nfull;
};

static inline int lc_cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

static inline void lc_fill_pools(struct lc_set *s, size_t size, size_t pools, unsigned seed)
{
    size_t per = page_size() / round16(size);
    memset(s, 0, sizeof *s);
    s->size = size;
    s->seed = seed;
    s->cap = (pools + 3) * per * 2 + 64;
    s->b = lc_scratch(s->cap * sizeof(void *));
    s->full = lc_scratch(s->cap * sizeof(void *));
    void **pg = lc_scratch(s->cap * sizeof(void *));
    size_t want = (pools + 2) * per;
    for (;;) {
        while (s->n < want && s->n < s->cap) {
            void *b = shed_malloc(size);
            assert_non_null(b);
            fill(b, size, seed);
            s->b[s->n++] = b;
        }
        /* pages with exactly `per` of our blocks, but the last block's */
        for (size_t i = 0; i < s->n; i++)
            pg[i] = page_of(s->b[i]);
        qsort(pg, s->n, sizeof *pg, lc_cmp_ptr);
        void *cur = page_of(s->b[s->n - 1]);
        s->nfull = 0;
        for (size_t i = 0; i < s->n;) {
            size_t j = i;
            while (j < s->n && pg[j] == pg[i])
                j++;
            if (j - i == per && pg[i] != cur)
                s->full[s->nfull++] = pg[i];
            i = j;
        }
        if (s->nfull >= pools || s->n >= s->cap)
            break;
        want += per;
    }
    munmap(pg, s->cap * sizeof(void *));
    assert_true(s->nfull >= pools);
}

static inline bool lc_in_pages(void *const *pages, size_t n, const void *pg)
{
    return bsearch(&pg, pages, n, sizeof *pages, lc_cmp_ptr) != NULL;
}

/* Check and free the set's blocks in the first k full pages (all when k is
 * larger); returns how many blocks were freed. */
static inline size_t lc_free_pages(struct lc_set *s, size_t k)
{
    if (k > s->nfull)
        k = s->nfull;
    size_t freed = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->b[i] && lc_in_pages(s->full, k, page_of(s->b[i]))) {
            assert_int_equal(check_fill(s->b[i], s->size, s->seed), -1);
            shed_free(s->b[i]);
            s->b[i] = NULL;
            freed++;
        }
    }
    return freed;
}

static inline size_t lc_live(const struct lc_set *s)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++)
        k += s->b[i] != NULL;
    return k;
}

static inline void lc_free_all(struct lc_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->b[i]) {
            assert_int_equal(check_fill(s->b[i], s->size, s->seed), -1);
            shed_free(s->b[i]);
        }
    }
    munmap(s->b, s->cap * sizeof(void *));
    munmap(s->full, s->cap * sizeof(void *));
    memset(s, 0, sizeof *s);
}

/* The first n pages of a set are kept sorted for lc_in_pages: full[] is
 * built in address order, so any prefix is sorted. */

/* The number in a "Field:" line of a /proc file, -1 when unreadable.  Plain
 * system calls: it allocates nothing. */
static inline long lc_proc_field(const char *path, const char *field)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    size_t fl = strlen(field);
    for (char *s = buf; s && *s; s = strchr(s, '\n') ? strchr(s, '\n') + 1 : NULL)
        if (strncmp(s, field, fl) == 0 && s[fl] == ':')
            return atol(s + fl + 1);
    return -1;
}

/* A field of /proc/self/smaps_rollup, in kB. */
static inline long lc_rollup_kb(const char *field)
{
    return lc_proc_field("/proc/self/smaps_rollup", field);
}

/* /proc/self/pagemap: is the page present and mapped by this process only
 * (bit 56)?  After fork(), a page the child (or the parent) wrote has been
 * copied and is exclusive; a page nobody wrote is still shared.
 * Returns 1 exclusive, 0 shared or absent, -1 on error. */
static inline int lc_page_exclusive(int pagemap_fd, const void *page)
{
    uint64_t e;
    off_t off = (off_t)((uintptr_t)page / page_size() * sizeof e);
    if (pread(pagemap_fd, &e, sizeof e, off) != (ssize_t)sizeof e)
        return -1;
    return (e >> 63 & 1) && (e >> 56 & 1);
}

/* check_fill for a block that moved (realloc): the pattern was written at
 * `was`.  Offset of the first wrong byte, or -1. */
static inline long lc_check_moved(const void *blk, const void *was, size_t n, unsigned seed)
{
    const unsigned char *b = blk;
    for (size_t i = 0; i < n; i++)
        if (b[i] != pat(was, seed, i))
            return (long)i;
    return -1;
}

static inline pid_t lc_gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* Wait for a child at most ms (ten times that under memcheck); kill it and
 * return -1 if it is still running (a hang).  Otherwise the wait status.
 * Under memcheck a child runs 20 to 50 times slower than natively, and on a
 * loaded machine a child of test_fork took 24 s where 10 s were allowed: the
 * bound is for a child that never ends, so it may be generous. */
static inline int lc_wait_child(pid_t pid, unsigned ms)
{
    uint64_t deadline = now_ms() + (RUNNING_ON_VALGRIND ? 10ull : 1ull) * ms;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return -2;
        if (now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        lc_sleep_ms(1);
    }
}

/* Threads of this process, -1 if unreadable (allocates nothing). */
static inline long lc_threads(void)
{
    return lc_proc_field("/proc/self/status", "Threads");
}

/* Run fn in a fork()ed child (a fresh start for shed's thread: none runs,
 * pools are counted from zero), killed after 4 * LC_WAIT_MS as hung; fn
 * returns 0, 77 to skip (what says why), or the failing step.  Not under
 * TSan, which runs a thread of its own. */
static inline void lc_in_child(int (*fn)(void), const char *what)
{
    if (TSAN) {
        print_message("      under TSan, skipped\n");
        return;
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)   /* pools empty as the blocks are freed, checker or not */
        _exit(shed_config("quarantine_kb=0") != 0 ? 98 : fn());
    int status = lc_wait_child(pid, 4 * LC_WAIT_MS);
    if (status == -1)
        fail_msg("%s: hung (killed)", what);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77) {
        print_message("      %s: cannot be told here (see the test), skipped\n", what);
        return;
    }
    if (WEXITSTATUS(status) != 0)
        fail_msg("%s: failed at step %d", what, WEXITSTATUS(status));
}

#endif

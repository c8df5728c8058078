/*
 * Fault injection (src/shed_testing.h): the kernel refuses memory, advice
 * or a thread, and shed keeps working, loses nothing and says so.
 * Each case runs in a fresh process (this program exec'ed with the case's
 * name), so that shed starts there with the fault in place.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "attack.h"
#include "shed_testing.h"

#define PAGE ((size_t)sysconf(_SC_PAGESIZE))
#define FAIL(code) return fprintf(stderr, "fail %d at line %d\n", code, __LINE__), code

static struct shed_stats st(void)
{
    struct shed_stats s;
    shed_stats(&s);
    return s;
}

static int resident(const void *p)
{
    unsigned char v = 0;
    void *page = (void *)((uintptr_t)p & ~(uintptr_t)(PAGE - 1));
    return mincore(page, PAGE, &v) == 0 ? v & 1 : -1;
}

static size_t vm_size(void)
{
    char line[256];
    size_t kb = 0;
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %zu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * 1024;
}

static int limit_as(size_t bytes)
{
    struct rlimit r = { bytes, bytes };
    return setrlimit(RLIMIT_AS, &r);
}

/* ---- out of memory: commit and fallback both fail ---- */

enum { MAXP = 1 << 16 };
static void *ptrs[MAXP];

static int oom(void)
{
    char *keep = shed_malloc(100);
    memset(keep, 0x21, 100);
    /* Fill the arenas there are: once a new one is needed, its commit fails
     * and blocks come from the system allocator (counted as large). */
    shed__fault_inject(SHED_FAULT_COMMIT, -1);
    size_t n = 0, large0 = st().large_allocs;
    while (n < MAXP && st().large_allocs == large0)
        if (!(ptrs[n++] = shed_malloc(512)))
            FAIL(2);
    size_t shed_blocks = st().blocks_in_use, first_sys = n - 1;
    /* The system allocator's blocks keep the alignment asked for. */
    char *al = shed_aligned_alloc(64, 448);
    if (!al || (uintptr_t)al % 64 || st().large_allocs == large0)
        FAIL(11);
    /* Now the system allocator runs out too, for every size. */
    if (limit_as(vm_size() + (1 << 20)) != 0)
        FAIL(3);
    for (size_t size = 512; size >= 1; size /= 2) {
        errno = 0;
        while (n < MAXP && (ptrs[n] = shed_malloc(size)))
            n++;
        if (n == MAXP || errno != ENOMEM)
            FAIL(4);
    }
    errno = 0;
    if (shed_calloc(1, 300) || errno != ENOMEM)
        FAIL(5);
    errno = 0;
    if (shed_aligned_alloc(64, 448) || errno != ENOMEM)
        FAIL(6);
    errno = 0;
    if (shed_realloc(keep, 400) || errno != ENOMEM || !all_byte(keep, 100, 0x21))
        FAIL(7);
    if (st().blocks_in_use != shed_blocks)
        FAIL(8);
    /* Memory comes back (the system's blocks freed): allocation works. */
    shed_free(al);
    for (size_t i = first_sys; i < n; i++)
        shed_free(ptrs[i]);
    char *p = shed_malloc(512);
    if (!p)
        FAIL(9);
    memset(p, 0x5c, 512);
    /* The kernel commits again: new arenas, blocks from shed's pools. */
    shed__fault_inject(SHED_FAULT_COMMIT, 0);
    size_t large1 = st().large_allocs;
    void *q = shed_malloc(512);
    char *r = shed_realloc(keep, 400);
    if (!q || !r || !all_byte(r, 100, 0x21) || st().large_allocs != large1 ||
        st().blocks_in_use != shed_blocks + 1 || !all_byte(p, 512, 0x5c))
        FAIL(10);
    return 0;
}

/* ---- failed releases: the pool stays dirty, usable, and counted ---- */

/* Eight blocks of 512 bytes fill one pool. */
static char *fill_pool(char *blk[8], unsigned char c)
{
    for (int i = 0; i < 8; i++) {
        if (!(blk[i] = shed_malloc(512)))
            return NULL;
        memset(blk[i], c, 512);
    }
    return blk[0];
}

static bool pool_ok(char *blk[8], unsigned char c)
{
    for (int i = 0; i < 8; i++)
        if (!all_byte(blk[i], 512, c))
            return false;
    return true;
}

static void free_pool(char *blk[8])
{
    for (int i = 0; i < 8; i++)
        shed_free(blk[i]);
}

/* With the faults of `sites` on, a trim releases nothing and counts its
 * failed calls; the pool is reused as it is; with them off, it goes. */
static int release_fails(const int *sites, int nsites)
{
    char *blk[8];
    char *first = fill_pool(blk, 0x31);
    if (!first)
        FAIL(2);
    free_pool(blk);
    for (int i = 0; i < nsites; i++)
        shed__fault_inject(sites[i], -1);
    struct shed_stats a = st();
    size_t got = shed_trim();
    struct shed_stats b = st();
    if (got != 0 || resident(first) != 1 || b.pools_dirty == 0 || b.pages_released != a.pages_released)
        FAIL(3);
    if (b.release_failures - a.release_failures == 0 ||
        b.release_failures - a.release_failures != b.release_syscalls - a.release_syscalls)
        FAIL(4);
    /* Reused: the same page, dirty, comes back, and holds what is written. */
    if (fill_pool(blk, 0x42) != first || !pool_ok(blk, 0x42) || st().pools_reused_dirty == a.pools_reused_dirty)
        FAIL(5);
    free_pool(blk);
    for (int i = 0; i < nsites; i++)
        shed__fault_inject(sites[i], 0);
    got = shed_trim();
    struct shed_stats c = st();
    if (got < PAGE || resident(first) != 0 || c.pools_dirty != 0 ||
        c.release_failures != b.release_failures)
        FAIL(6);
    /* And still usable after its release. */
    if (!fill_pool(blk, 0x53) || !pool_ok(blk, 0x53))
        FAIL(7);
    free_pool(blk);
    return 0;
}

static bool backend_is(const char *name)
{
    char line[256] = "";
    FILE *f = tmpfile();
    if (!f)
        return false;
    shed_stats_print(f);
    rewind(f);
    while (fgets(line, sizeof line, f) && strncmp(line, "  release=", 10) != 0)
        line[0] = 0;
    fclose(f);
    char want[64];
    snprintf(want, sizeof want, " backend=%s ", name);
    return strstr(line, want) != NULL;
}

static int madvise_fails(void)
{
    if (shed_config("release=manual,backend=madvise") != 0 || !backend_is("madvise"))
        FAIL(20);
    int sites[] = { SHED_FAULT_MADVISE };
    return release_fails(sites, 1);
}

static int pmadvise_fails(void)
{
    if (shed_config("release=manual,backend=process_madvise") != 0)
        FAIL(20);
    /* The backend is probed at the first release. */
    char *blk[8];
    char *first = fill_pool(blk, 0x64);
    free_pool(blk);
    if (shed_trim() < PAGE || resident(first) != 0)
        FAIL(22);
    if (!backend_is("process_madvise"))
        return 77;                     /* this kernel has no process_madvise */
    /* process_madvise fails, madvise takes over: released all the same,
     * and the failed call is counted. */
    if (fill_pool(blk, 0x64) != first || !pool_ok(blk, 0x64))
        FAIL(23);
    free_pool(blk);
    shed__fault_inject(SHED_FAULT_PMADVISE, -1);
    struct shed_stats a = st();
    if (shed_trim() < PAGE || resident(first) != 0 || st().release_failures != a.release_failures + 1)
        FAIL(21);
    int sites[] = { SHED_FAULT_PMADVISE, SHED_FAULT_MADVISE };
    return release_fails(sites, 2);
}

/* ---- a kernel without the PIDFD_SELF_PROCESS sentinel (before 6.14):
 * process_madvise through a pidfd opened for each call, none kept ---- */

static int pidfd_self_fails(void)
{
    shed__fault_inject(SHED_FAULT_PIDFD_SELF, -1);
    if (shed_config("release=manual,backend=process_madvise") != 0)
        FAIL(20);
    for (int round = 0; round < 3; round++) {
        char *blk[8];
        char *first = fill_pool(blk, (unsigned char)(0x40 + round));
        if (round > 0 && !pool_ok(blk, (unsigned char)(0x40 + round)))
            FAIL(21);
        free_pool(blk);
        struct shed_stats a = st();
        if (shed_trim() < PAGE || resident(first) != 0)
            FAIL(22);
        if (round == 0 && !backend_is("process_madvise"))
            return 77;                 /* no process_madvise on ourselves here */
        if (!backend_is("process_madvise") || st().release_failures != a.release_failures)
            FAIL(23);
        if (open_pidfds() != 0)
            FAIL(24);
    }
    return 0;
}

/* ---- the release thread cannot start: release inline, say it once ---- */

static int thread_fails(void)
{
    /* The thread starts at the first pool (not only once one is due). */
    if (shed_config("thread_after_kb=0") != 0)
        FAIL(5);
    shed__fault_inject(SHED_FAULT_THREAD, 1);
    for (int round = 0; round < 2; round++) {
        /* Four pools of 256-byte blocks (16 a pool with 4 KiB pages, 256
         * with 64 KiB ones). */
        const int per = (int)(PAGE / 256), N = 4 * per;
        char *b[4 * (128 << 10) / 256];   /* up to shed's largest page */
        for (int i = 0; i < N; i++) {
            if (!(b[i] = shed_malloc(256)))
                FAIL(2);
            memset(b[i], 0x70 + round, 256);
        }
        for (int i = 0; i < N; i++)
            if (!all_byte(b[i], 256, (unsigned char)(0x70 + round)))
                FAIL(3);
        char *last = b[N - 1];            /* in the current pool: kept */
        struct shed_stats a = st();
        for (int i = 0; i < N; i++)
            shed_free(b[i]);
        struct shed_stats s = st();
        /* No waiting: the pools left memory during the frees, advised by
         * this thread. */
        int gone = 0;
        for (int i = 0; i < N; i += per)
            gone += (uintptr_t)b[i] / PAGE != (uintptr_t)last / PAGE && resident(b[i]) == 0;
        if (gone < 2 || s.pages_released < a.pages_released + 2 ||
            s.release_syscalls_app <= a.release_syscalls_app)
            FAIL(4);
    }
    return 0;
}

/* ---- no heap region: everything from the system allocator ---- */

static int no_region(void)
{
    for (int round = 0; round < 3; round++) {
        for (size_t n = 0; n <= 1100; n += 7) {
            char *p = round == 1 ? shed_calloc(1, n) : shed_malloc(n);
            if (!p || shed_usable_size(p) < n || (round == 1 && !all_byte(p, n, 0)))
                FAIL(2);
            memset(p, (int)n, n);
            char *q = shed_realloc(p, n + 300);
            if (!q || !all_byte(q, n, (unsigned char)n))
                FAIL(3);
            shed_free(q);
        }
        void *a = shed_aligned_alloc(256, 100);
        if (!a || (uintptr_t)a % 256)
            FAIL(4);
        shed_free(a);
    }
    errno = 0;
    if (shed_heap_new(0) != NULL || errno != ENOMEM)
        FAIL(5);
    struct shed_stats s = st();
    if (shed_trim() != 0 || s.bytes_reserved != 0 || s.blocks_in_use != 0)
        FAIL(6);
    return 0;
}

static int reserve_fails(void)
{
    shed__fault_inject(SHED_FAULT_RESERVE, -1);
    return no_region();
}

static int rlimit_as(void)
{
    /* Less room than the smallest region (16 MiB) */
    if (limit_as(vm_size() + (12 << 20)) != 0)
        FAIL(20);
    return no_region();
}

/* ---- the tests: run a case afresh, check its status and stderr ---- */

/* release=off with stats_interval_ms: the thread, there for the JSON lines
 * only, cannot start.  Nothing is released (off), the blocks are sound, and
 * the warning (test_stats_thread_fails) says what is lost. */
static int stats_thread_fails(void)
{
    shed__fault_inject(SHED_FAULT_THREAD, 1);
    if (shed_config("release=off,stats_interval_ms=10,stats_file=/dev/null") != 0)
        FAIL(2);
    const int per = (int)(PAGE / 256), N = 4 * per;
    char *b[4 * (128 << 10) / 256];
    for (int i = 0; i < N; i++) {
        if (!(b[i] = shed_malloc(256)))
            FAIL(3);
        memset(b[i], 0x70, 256);
    }
    struct shed_stats a = st();
    for (int i = 0; i < N; i++) {
        if (!all_byte(b[i], 256, 0x70))
            FAIL(4);
        shed_free(b[i]);
    }
    struct shed_stats s = st();
    if (s.pages_released != a.pages_released || s.pools_dirty < a.pools_dirty + 2)
        FAIL(5);
    return 0;
}

struct mode { const char *name; int (*fn)(void); };
static const struct mode modes[] = {
    { "oom", oom }, { "madvise", madvise_fails }, { "pmadvise", pmadvise_fails },
    { "thread", thread_fails }, { "reserve", reserve_fails }, { "rlimit", rlimit_as },
    { "pidfd_self", pidfd_self_fails }, { "stats_thread", stats_thread_fails },
};

static int run(const char *mode, char *err, size_t len)
{
    /* The cases check what freeing releases; under a checker (ASan) the
     * quarantine would hold the freed blocks and their pools back: off. */
    int status = run_fresh(mode, "quarantine_kb=0", err, len);
    if (!WIFEXITED(status))
        fail_msg("%s: child killed (status %#x); stderr:\n%s", mode, status, err);
    return WEXITSTATUS(status);
}

static void expect_clean(const char *mode, const char *warning)
{
    char err[8192];
    int code = run(mode, err, sizeof err);
    if (code != 0)
        fail_msg("%s: child exit %d; stderr:\n%s", mode, code, err);
    if (warning ? count_lines(err, "shed: ") != 1 || !has_line(err, warning)
                : err[0] != 0)
        fail_msg("%s: want %s%s%s on stderr, got:\n%s", mode, warning ? "only the line \"" : "nothing",
                 warning ? warning : "", warning ? "\"" : "", err);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    if (ATTACK_SANITIZED)
        skip();                   /* needs RLIMIT_AS, which the shadow fills */
    expect_clean("oom", NULL);
}

static void test_madvise_fails(void **state)
{
    (void)state;
    expect_clean("madvise", NULL);
}

/* A case of process_madvise, skipped where the kernel has none for us. */
static void expect_clean_pmadvise(const char *mode)
{
    char err[8192];
    if (run(mode, err, sizeof err) == 77) {
        print_message("process_madvise unavailable on this kernel: not tested\n");
        skip();
    }
    expect_clean(mode, NULL);
}

static void test_process_madvise_fails(void **state)
{
    (void)state;
    expect_clean_pmadvise("pmadvise");
}

static void test_pidfd_self_fails(void **state)
{
    (void)state;
    expect_clean_pmadvise("pidfd_self");
}

static void test_thread_fails(void **state)
{
    (void)state;
    expect_clean("thread", "shed: cannot start the release thread, releasing inline: "
                           "Resource temporarily unavailable");
}

static void test_stats_thread_fails(void **state)
{
    (void)state;
    expect_clean("stats_thread", "shed: cannot start the thread for stats_interval_ms, "
                                 "no stats written: Resource temporarily unavailable");
}

static void test_reserve_fails(void **state)
{
    (void)state;
    expect_clean("reserve", "shed: cannot reserve the heap region; using the system allocator");
    expect_clean("rlimit", "shed: cannot reserve the heap region; using the system allocator");
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
            if (strcmp(argv[1], modes[i].name) == 0)
                return modes[i].fn();
        return 100;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_madvise_fails),
        cmocka_unit_test(test_process_madvise_fails),
        cmocka_unit_test(test_pidfd_self_fails),
        cmocka_unit_test(test_thread_fails),
        cmocka_unit_test(test_stats_thread_fails),
        cmocka_unit_test(test_reserve_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

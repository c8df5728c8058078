/*
 * Run under strace by strace_check.sh: batched mode (the default), the main
 * thread and two application threads allocate and free whole pools until
 * the release thread has released enough pages.  It prints the ids of the
 * program's threads and the bounds of shed's region, so that the script can
 * tell who made each madvise/process_madvise call, and on what.  The
 * application threads stay alive until exit (so glibc's own madvise of an
 * exiting thread's stack does not happen).
 */
#include "lc.h"

#include <inttypes.h>

static pthread_barrier_t start, held, done;
static _Atomic int fails;

/* Allocate and free 6 pools' worth of blocks, ROUNDS times.  With HELD, the
 * last round's frees wait until every thread holds its blocks: then no thread
 * is still allocating to reuse another's emptied pools, and at least 3 * 5
 * pools (each thread keeps its current one) are left for the release
 * thread. */
static void churn(unsigned seed, long rounds, pthread_barrier_t *hold)
{
    void *b[1024];
    size_t per = page_size() / 256;
    for (long r = 0; r < rounds; r++) {
        size_t n = per * 6;
        for (size_t i = 0; i < n; i++) {
            if (!(b[i] = shed_malloc(256))) {
                printf("FAIL shed_malloc: %s\n", strerror(errno));
                _exit(1);        /* not return: the others wait at HELD */
            }
            fill(b[i], 256, seed + (unsigned)r);
        }
        if (hold && r == rounds - 1)
            pthread_barrier_wait(hold);
        for (size_t i = 0; i < n; i++) {
            if (check_fill(b[i], 256, seed + (unsigned)r) != -1)
                atomic_fetch_add(&fails, 1);
            shed_free(b[i]);
        }
    }
}

static void *app(void *arg)
{
    printf("APP %d\n", (int)lc_gettid());
    fflush(stdout);
    pthread_barrier_wait(&start);
    churn((unsigned)(uintptr_t)arg, 200, &held);
    pthread_barrier_wait(&done);
    for (;;)
        pause();                 /* until the process exits */
    return NULL;
}

/* Wait (bounded) until the release thread has done its work. */
static void settle(struct shed_stats *st, uint64_t pages)
{
    uint64_t deadline = now_ms() + LC_WAIT_MS;
    do {
        lc_sleep_ms(10);
        shed_stats(st);
    } while ((st->pools_dirty > 0 || st->pages_released < pages) && now_ms() < deadline);
}

/* A fork()ed child: its main thread is an application thread too, and its
 * releases come from its own release thread. */
static int child(void)
{
    printf("APP %d\n", (int)lc_gettid());
    fflush(stdout);
    struct shed_stats s0, s1;
    shed_stats(&s0);
    churn(11, 50, NULL);
    settle(&s1, s0.pages_released + 4);
    printf("CHILD pages_released=%" PRIu64 " release_syscalls_app=%" PRIu64 "\n",
           s1.pages_released - s0.pages_released, s1.release_syscalls_app - s0.release_syscalls_app);
    fflush(stdout);
    return atomic_load(&fails) || s1.pages_released < s0.pages_released + 4 ||
           s1.release_syscalls_app != s0.release_syscalls_app;
}

int main(void)
{
    shed_config("delay_ms=20,thread_after_kb=0");  /* a thread from the first pool on */
    printf("MAIN %d\n", (int)lc_gettid());
    pthread_barrier_init(&start, NULL, 3);
    pthread_barrier_init(&held, NULL, 3);
    pthread_barrier_init(&done, NULL, 3);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, app, (void *)(uintptr_t)(i + 1) ) != 0)
            return 2;
    /* The program's first block is the first of the region's first pool
     * (nothing allocated from shed before: stdio uses glibc's malloc). */
    void *first = shed_malloc(16);
    struct shed_stats st;
    shed_stats(&st);
    uintptr_t lo = (uintptr_t)page_of(first);
    printf("REGION %#" PRIxPTR " %#" PRIxPTR "\n", lo, lo + st.bytes_reserved);
    fflush(stdout);
    shed_free(first);
    pthread_barrier_wait(&start);
    churn(7, 200, &held);
    pthread_barrier_wait(&done);
    settle(&st, 10);
    pid_t pid = fork();
    if (pid == 0)
        _exit(child());
    int status = lc_wait_child(pid, 10000);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("CHILD failed: status %#x\n", status);
        atomic_fetch_add(&fails, 1);
    }
    printf("STATS pages_released=%" PRIu64 " release_syscalls=%" PRIu64
           " release_syscalls_app=%" PRIu64 " pools_dirty=%zu fails=%d\n",
           st.pages_released, st.release_syscalls, st.release_syscalls_app, st.pools_dirty,
           atomic_load(&fails));
    fflush(stdout);
    return atomic_load(&fails) || st.pages_released < 10 || st.pools_dirty > 0 ||
           st.release_syscalls_app != 0;
}

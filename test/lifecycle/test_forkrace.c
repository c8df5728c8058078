/*
 * fork() racing the release thread, in the three ways that hung before
 * their fixes (each test hangs or stalls on the code before it; the child
 * that runs it is killed after 4 * LC_WAIT_MS):
 *   - a SCHED_FIFO thread forks on the CPU of the ending release thread:
 *     the wait for the kernel to let that thread go must sleep, not yield
 *     (a real-time thread's sched_yield gives the CPU to no lower thread);
 *   - a signal handler forks while the release thread is being started: the
 *     fork waits for the start to finish, so the start must hold signals;
 *   - backend=io_uring, a fork from a library's constructor (the loader's
 *     lock held) while the release thread makes its first release: liburing
 *     must have been loaded where the backend was chosen, or the thread
 *     waits for the loader's lock and the fork for the thread.
 */
#include "lc.h"

#include <dlfcn.h>
#include <sched.h>
#include <signal.h>

enum { BS = 256 };

static char self[4096];

/* pthread_create as shed calls it (libshed.a binds to this one): when armed,
 * a signal arrives just as the thread is created. */
static _Atomic int raise_in_create;

int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    static int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
    if (!real)
        real = (int (*)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *))
            dlsym(RTLD_NEXT, "pthread_create");
    if (atomic_exchange(&raise_in_create, 0))
        raise(SIGUSR1);
    return real(t, attr, fn, arg);
}

/* Fork, the child exits at once; 0 when all went well. */
static int fork_and_wait(void)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0)
        _exit(0);
    int status;
    return waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0
               ? 0 : -1;
}

/* ---- a signal handler forks while the thread starts ---- */

static _Atomic int handler_forks, handler_failed;

static void fork_in_handler(int sig)
{
    (void)sig;
    int saved = errno;
    if (fork_and_wait() != 0)
        handler_failed = 1;
    handler_forks++;
    errno = saved;
}

static int signal_fork(void)
{
    struct sigaction sa = { .sa_handler = fork_in_handler };
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) != 0 || shed_config("thread_after_kb=0") != 0)
        return 2;
    for (int round = 0; round < 3; round++) {
        struct lc_set s;
        raise_in_create = 1;
        lc_fill_pools(&s, BS, 4, 30 + (unsigned)round);  /* starts the thread */
        if (raise_in_create || handler_forks != round + 1 || handler_failed)
            return 3;
        lc_free_all(&s);                 /* after the fork: a start is due */
    }
    return 0;
}

static void test_signal_handler_forks(void **state)
{
    (void)state;
    lc_in_child(signal_fork, "fork in a signal handler");
}

/* ---- a SCHED_FIFO thread forks ---- */

/* The calling thread's CPU time, in microseconds. */
static uint64_t thread_cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* took[0]: the CPU time the fork cost this thread (us), took[1]: its wall
 * time (ms); UINT64_MAX when the fork failed. */
static void *rt_forker(void *arg)
{
    uint64_t *took = arg, c0 = thread_cpu_us(), t0 = now_ms();
    bool ok = fork_and_wait() == 0;
    took[0] = ok ? thread_cpu_us() - c0 : UINT64_MAX;
    took[1] = now_ms() - t0;
    return NULL;
}

/* Every thread on one CPU (the release thread inherits the mask of the
 * thread that starts it: here the main one, so it is not real-time); a
 * SCHED_FIFO thread forks while the release thread has dirty pools to
 * release first.  The fork sleeps while it waits for the release thread to
 * end and for the kernel to let it go, so each of three forks costs the
 * forker a few milliseconds of CPU (the fork itself) however long other
 * processes keep the CPU from the release thread.  Yielding instead, the
 * forker spun and kept the CPU from the ending thread until the kernel's
 * real-time throttling (5% of each second for the others, here) let it run:
 * about 950 ms a fork, of the forker's CPU time as of the wall clock's.  So
 * the bound is on the forker's CPU time (CLOCK_THREAD_CPUTIME_ID), which a
 * loaded machine does not stretch, as it does the wall time. */
static int rt_fork(void)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu() < 0 ? 0 : sched_getcpu(), &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0 ||
        shed_config("thread_after_kb=0,delay_ms=60000") != 0)
        return 2;
    uint64_t worst = 0, worst_ms = 0;
    for (int round = 0; round < 3; round++) {
        struct lc_set s;
        lc_fill_pools(&s, BS, 8, 40 + (unsigned)round);
        lc_free_pages(&s, 4);            /* dirty pools: the thread's last pass */
        void *b = shed_malloc(48);       /* a slow path: the thread runs */
        if (!b || lc_threads() != 2)
            return 3;
        pthread_attr_t attr;
        struct sched_param sp = { .sched_priority = 1 };
        pthread_attr_init(&attr);
        pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
        pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
        pthread_attr_setschedparam(&attr, &sp);
        pthread_t t;
        uint64_t took[2] = { 0, 0 };
        int err = pthread_create(&t, &attr, rt_forker, took);
        pthread_attr_destroy(&attr);
        if (err == EPERM)
            return 77;                   /* no CAP_SYS_NICE */
        if (err || pthread_join(t, NULL) != 0 || took[0] == UINT64_MAX)
            return 4;
        worst = took[0] > worst ? took[0] : worst;
        worst_ms = took[1] > worst_ms ? took[1] : worst_ms;
        shed_free(b);
        lc_free_all(&s);
    }
    printf("costliest fork from the SCHED_FIFO thread: %llu us of its CPU time "
           "(slowest: %llu ms)\n", (unsigned long long)worst, (unsigned long long)worst_ms);
    fflush(stdout);
    return worst < 250000 ? 0 : 5;
}

static void test_rt_thread_forks(void **state)
{
    (void)state;
    lc_in_child(rt_fork, "SCHED_FIFO fork");
}

/* ---- a fork from a constructor, backend=io_uring ---- */

static struct lc_set uring_set;
static int hook_status;

/* Runs in ctor_fork.so's constructor, the loader's lock held: pools are
 * emptied with delay_ms=0, the release thread wakes for its first release,
 * and the fork waits for the thread to end. */
static void ctor_hook(void)
{
    if (shed_config("delay_ms=0") != 0) {
        hook_status = 5;
        return;
    }
    lc_free_pages(&uring_set, uring_set.nfull);
    lc_sleep_ms(100);                    /* the thread is at its release */
    hook_status = fork_and_wait() == 0 ? 0 : 6;
}

static int uring_ctor_fork(void)
{
    alarm(4 * LC_WAIT_MS / 1000);        /* a hang ends as a failure */
    lc_fill_pools(&uring_set, BS, 16, 50);
    if (lc_threads() != 2)
        return 2;
    char lib[4096 + 64], addr[32];
    snprintf(lib, sizeof lib, "%s", self);
    char *slash = strrchr(lib, '/');
    if (!slash)
        return 3;
    snprintf(slash, sizeof lib - (size_t)(slash - lib), "/../lifecycle-tools/ctor_fork.so");
    snprintf(addr, sizeof addr, "%llx", (unsigned long long)(uintptr_t)ctor_hook);
    setenv("LC_CTOR_HOOK", addr, 1);
    if (access(lib, R_OK) != 0)
        return 77;                       /* a sanitizer's build: none there */
    void *h = dlopen(lib, RTLD_NOW);
    if (!h)
        return 4;
    if (hook_status)
        return hook_status;
    return lc_wait_released(uring_set.full, uring_set.nfull, 0, LC_WAIT_MS) ? 0 : 7;
}

static void test_uring_fork_in_constructor(void **state)
{
    (void)state;
    if (SANITIZED) {
        print_message("      under a sanitizer, skipped\n");
        return;
    }
    char out[4096], err[4096];
    char *argv[] = { self, "uring", NULL };
    int status = run_exec(argv, "backend=io_uring,thread_after_kb=0,delay_ms=60000", NULL, out,
                          err, sizeof out);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        print_message("      no lifecycle-tools/ctor_fork.so beside this build, skipped\n");
        return;
    }
    if (strstr(err, "io_uring backend unavailable")) {
        print_message("      io_uring unavailable here (liburing, kernel), skipped\n");
        return;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || err[0])
        fail_msg("uring: status %#x\nstderr: %s", status, err);
}

int main(int argc, char **argv)
{
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return 1;
    self[n] = 0;
    if (argc > 1)
        return strcmp(argv[1], "uring") == 0 ? uring_ctor_fork() : 100;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signal_handler_forks),
        cmocka_unit_test(test_rt_thread_forks),
        cmocka_unit_test(test_uring_fork_in_constructor),
    };
    return cmocka_run_group_tests_name("lifecycle/forkrace", tests, NULL, NULL);
}

/*
 * release_cost: what it costs to give pages back, per backend.
 *
 * Fills a region of pools with 512-byte blocks, frees every block of every
 * other pool (so no two free pools are adjacent: one range per page, the
 * worst case for batching), and times the release with a second application
 * thread running (its TLB has to be shot down on every advice).  Each
 * configuration runs in its own child process; the median of the repeats is
 * printed.  Usage: release_cost [pages] [repeats]
 */
#include <pthread.h>
#include <shed.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif

static atomic_int stop;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* The second application thread: keeps touching its own memory. */
static void *spinner(void *arg)
{
    volatile char *mem = arg;
    for (unsigned i = 0; !atomic_load_explicit(&stop, memory_order_relaxed); i++)
        mem[(i * 4096u) % (1u << 20)]++;
    return NULL;
}

struct result { double us_per_page, call_us_per_page; unsigned long calls, pages; };

/* The kernel's share: the same pages advised by a bare loop of
 * process_madvise calls of 1024 ranges, without shed. */
static struct result bare_kernel(size_t pages)
{
    struct result r = { 0, 0, 0, 0 };
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *region = mmap(NULL, pages * page, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *mem = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (region == MAP_FAILED || mem == MAP_FAILED || pidfd < 0)
        return r;
    memset(region, 1, pages * page);
    pthread_t t;
    pthread_create(&t, NULL, spinner, mem);
    static struct iovec iov[1024];
    double t0 = now_us();
    for (size_t p = 0; p < pages;) {
        size_t n = 0;
        for (; n < 1024 && p < pages; p += 2, n++)
            iov[n] = (struct iovec){ region + p * page, page };
        if (syscall(SYS_process_madvise, pidfd, iov, n, MADV_DONTNEED, 0) < 0)
            break;
        r.calls++;
        r.pages += n;
    }
    double t1 = now_us();
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    if (r.pages)
        r.us_per_page = r.call_us_per_page = (t1 - t0) / (double)r.pages;
    return r;
}

/* One measurement, in the calling (child) process. */
static struct result measure(const char *conf, size_t pages)
{
    if (!conf)
        return bare_kernel(pages);
    struct result r = { 0, 0, 0, 0 };
    if (shed_config(conf) != 0) {
        fprintf(stderr, "bad config %s\n", conf);
        exit(2);
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE), per = page / 512, n = pages * per;
    char **blocks = mmap(NULL, n * sizeof *blocks, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (size_t i = 0; i < n; i++) {
        blocks[i] = shed_malloc(512);
        memset(blocks[i], 1, 512);
    }
    char *mem = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    pthread_t t;
    pthread_create(&t, NULL, spinner, mem);

    struct shed_stats s0, s1;
    bool is_inline = strstr(conf, "release=inline") != NULL;
    shed_stats(&s0);
    double t0 = now_us();
    for (size_t i = 0; i < n; i++)
        if (((uintptr_t)blocks[i] / page) % 2 == 0)
            shed_free(blocks[i]);
    double t1 = now_us();
    if (!is_inline)
        shed_trim();
    double t2 = now_us();
    shed_stats(&s1);
    atomic_store(&stop, 1);
    pthread_join(t, NULL);

    r.pages = s1.pages_released - s0.pages_released;
    r.calls = s1.release_syscalls - s0.release_syscalls;
    if (r.pages) {
        /* inline pays inside the frees; the others inside shed_trim. */
        r.us_per_page = (is_inline ? t1 - t0 : t2 - t1) / (double)r.pages;
        r.call_us_per_page = (double)(s1.release_ns - s0.release_ns) / 1e3 / (double)r.pages;
    }
    return r;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    size_t pages = argc > 1 ? strtoul(argv[1], NULL, 10) : 32768;
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    static const struct { const char *name, *conf; } cases[] = {
        { "inline, madvise per page", "release=inline,backend=madvise" },
        { "trim, madvise per range", "release=manual,backend=madvise" },
        { "trim, process_madvise x1024", "release=manual,backend=process_madvise,batch=1024" },
        { "trim, process_madvise x64", "release=manual,backend=process_madvise,batch=64" },
        { "trim, io_uring", "release=manual,backend=io_uring" },
        { "kernel alone, process_madvise", NULL },
    };
    printf("release cost: every other page of %zu pages freed, second thread running, "
           "median of %d\n", pages, reps);
    printf("%-30s %12s %14s %10s %8s\n", "method", "us/page", "us/page(call)", "syscalls",
           "pages");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        double us[16], cus[16];
        struct result last = { 0, 0, 0, 0 };
        int ok = 0;
        for (int i = 0; i < reps && i < 16; i++) {
            int fd[2];
            if (pipe(fd) != 0)
                return 1;
            pid_t pid = fork();
            if (pid == 0) {
                close(fd[0]);
                struct result r = measure(cases[c].conf, pages);
                if (write(fd[1], &r, sizeof r) != sizeof r)
                    _exit(1);
                _exit(0);
            }
            close(fd[1]);
            struct result r;
            if (read(fd[0], &r, sizeof r) == sizeof r && r.pages) {
                us[ok] = r.us_per_page;
                cus[ok++] = r.call_us_per_page;
                last = r;
            }
            close(fd[0]);
            waitpid(pid, NULL, 0);
        }
        if (!ok) {
            printf("%-30s %12s\n", cases[c].name, "unavailable");
            continue;
        }
        qsort(us, (size_t)ok, sizeof us[0], cmp);
        qsort(cus, (size_t)ok, sizeof cus[0], cmp);
        printf("%-30s %12.3f %14.3f %10lu %8lu\n", cases[c].name, us[ok / 2], cus[ok / 2],
               last.calls, last.pages);
    }
    return 0;
}

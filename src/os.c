/*
 * Platform glue: address space, page advice, clocks.  Everything that talks
 * to the kernel is here, so the rest of shed never calls mmap or madvise.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shed_impl.h"
#include "shed_testing.h"

_Static_assert((int)SHED_FAULT_URING == (int)F_URING &&
               (int)SHED_FAULT_PIDFD_SELF == (int)F_PIDFD_SELF, "shed_testing.h matches fault_site");

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif

/* process_madvise names the process by a pidfd.  Where the kernel knows the
 * PIDFD_SELF_PROCESS sentinel (Linux 6.14+) shed passes that, else it opens a
 * pidfd for the call and closes it after: shed keeps no descriptor open,
 * which a program would see (/proc/self/fd, Python's subprocess tests) or
 * close under us (closefrom) and then reuse for something else. */
#define PIDFD_SELF_PROCESS (-10001)
static _Atomic bool pm_self;     /* the sentinel works here */
static _Atomic int backend_used = -1;   /* -1: not probed yet */
static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;

/* Fault injection: fault_left[s] > 0 fails that many calls, < 0 every one. */
static _Atomic int fault_left[NFAULTS];

bool fault_hit(enum fault_site site)
{
    int n = atomic_load_explicit(&fault_left[site], memory_order_relaxed);
    while (n != 0) {
        if (n < 0)
            return true;
        if (atomic_compare_exchange_weak(&fault_left[site], &n, n - 1))
            return true;
    }
    return false;
}

EXPORT void shed__fault_inject(int site, int count)
{
    if (site >= 0 && site < NFAULTS)
        atomic_store(&fault_left[site], count);
}

/* Address space this process may still map under RLIMIT_AS (the limit less
 * its virtual size now, from /proc/self/statm), SIZE_MAX with no limit. */
size_t os_address_room(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_AS, &r) != 0 || r.rlim_cur == RLIM_INFINITY)
        return SIZE_MAX;
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    size_t used = n > 0 ? (buf[n] = 0, strtoul(buf, NULL, 10) * g.page_size) : 0;
    return (size_t)r.rlim_cur > used ? (size_t)r.rlim_cur - used : 0;
}

/* Reserve the heap region: address space only, no memory, no swap. Halve the
 * request until it fits (RLIMIT_AS, overcommit limits); 0 means none. */
void *os_reserve(size_t *size)
{
    for (size_t sz = *size; sz >= MIN_REGION; sz /= 2) {
        if (fault_hit(F_RESERVE))
            continue;
        void *p = mmap(NULL, sz, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p != MAP_FAILED) {
            *size = sz;
            return p;
        }
    }
    return NULL;
}

/* Read-write memory for the metadata table, touched lazily. */
void *os_map(size_t size)
{
    if (fault_hit(F_MAP))
        return NULL;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Address space for a metadata table, made writable a part at a time by
 * os_commit as arenas are carved.  Read-only until then: under strict
 * overcommit (vm.overcommit_memory=2) the kernel ignores MAP_NORESERVE and
 * charges a writable private mapping in full, which for the tables of a
 * 32 GiB region would be 1 GiB, and a mapping it cannot write it does not
 * charge.  Readable, so that a wild pointer into the region reads a zero
 * descriptor (the kernel's zero page) and is reported. */
void *os_map_table(size_t size)
{
    if (fault_hit(F_MAP))
        return NULL;
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Make a freshly carved arena, or its part of a table, usable. */
int os_commit(void *addr, size_t size)
{
    if (fault_hit(F_COMMIT)) {
        errno = ENOMEM;
        return -1;
    }
    return mprotect(addr, size, PROT_READ | PROT_WRITE);
}

static long pmadvise(const struct iovec *iov, size_t n, int advice)
{
    if (fault_hit(F_PMADVISE)) {
        errno = EINVAL;
        return -1;
    }
    if (pm_self)
        return fault_hit(F_PIDFD_SELF) ? (errno = EBADF, -1)
                                       : syscall(SYS_process_madvise, PIDFD_SELF_PROCESS, iov, n,
                                                 advice, 0);
    int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (fd < 0)
        return -1;
    long r = syscall(SYS_process_madvise, fd, iov, n, advice, 0);
    int err = errno;
    close(fd);
    errno = err;
    return r;
}

/* Pick the release backend: process_madvise on ourselves if the kernel
 * accepts our advice there (Linux 6.13+ for DONTNEED), through the sentinel
 * if it can, else madvise.  Under valgrind always madvise: it does not know
 * process_madvise.  The probe advises a scratch page, so it runs at the first
 * release (on the release thread in batched mode), never at start-up; it
 * makes system calls only (io_uring was loaded by os_probe_backend). */
static int probe_choice(void)
{
    int want = RELAXED_LOAD(g.opt.backend);
    if (want == BK_URING) {
        if (uring_available())
            return BK_URING;
        shed_warn("io_uring backend unavailable, using madvise", NULL);
        return BK_MADV;
    }
    if (want == BK_MADV || g.valgrind)
        return BK_MADV;
    /* Advise one page of scratch memory with the advice we will use. */
    void *scratch = mmap(NULL, g.page_size, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (scratch == MAP_FAILED)
        return BK_MADV;
    memset(scratch, 1, g.page_size);
    struct iovec v = { scratch, g.page_size };
    bool ok = false;
    for (int self = 1; self >= 0 && !ok; self--) {
        pm_self = self;
        ok = pmadvise(&v, 1, RELAXED_LOAD(g.opt.advice)) == (long)g.page_size;
    }
    munmap(scratch, g.page_size);
    return ok ? BK_PMADV : BK_MADV;
}

/* Forget the choice (start-up, a new backend or advice), and load what
 * the backend asked for needs: io_uring is loaded here, on the thread that
 * chose it, never at the first release (see uring_load). */
void os_probe_backend(void)
{
    if (RELAXED_LOAD(g.opt.backend) == BK_URING)
        uring_load();
    /* madvise needs no probe; the others advise a scratch page first. */
    backend_used = RELAXED_LOAD(g.opt.backend) == BK_MADV || g.valgrind ? BK_MADV : -1;
}

int os_backend_in_use(void)
{
    return backend_used < 0 ? BK_AUTO : backend_used;
}

/* A fork()ed child: a fresh probe lock (threads: the parent had other
 * threads, one of which may have held it), and a probe at its first
 * release.  (No prepare or parent hook: the probe lock is held only around
 * the probe, which takes no other lock of shed.)  What is as it should be already is
 * not written: the first write to a page copies it in the child. */
void os_fork_child(bool threads)
{
    uring_fork_child();
    if (threads)
        pthread_mutex_init(&probe_lock, NULL);
    if (backend_used != -1)
        backend_used = -1;
}

void os_count_call(uint64_t t0, bool failed)
{
    RELAXED_ADD(g.c.syscalls, 1);
    if (!tls_is_releaser)
        RELAXED_ADD(g.c.app_syscalls, 1);
    RELAXED_ADD(g.c.ns, now_ns() - t0);
    if (failed)
        RELAXED_ADD(g.c.failures, 1);
}

/* Advise n page ranges; ok[i] says whether range i was advised.  Returns the
 * number of ranges advised.  process_madvise takes up to opt.batch ranges a
 * call; a range it refuses is retried with madvise, and a range madvise
 * refuses stays resident (the caller keeps its pools dirty). */
size_t os_advise(struct iovec *iov, size_t n, bool *ok)
{
    int advice = RELAXED_LOAD(g.opt.advice);
    size_t batch = RELAXED_LOAD(g.opt.batch), done = 0, i = 0;

    if (unlikely(backend_used < 0)) {
        pthread_mutex_lock(&probe_lock);   /* inline releases may race here */
        if (backend_used < 0)
            backend_used = probe_choice();
        pthread_mutex_unlock(&probe_lock);
    }

    if (backend_used == BK_URING) {
        done = uring_advise(iov, n, advice, ok);
        if (done == n)
            return done;
        /* what io_uring refused is retried with madvise below */
    }

    while (i < n && backend_used == BK_PMADV) {
        size_t k = n - i < batch ? n - i : batch;
        uint64_t t0 = now_ns();
        long r = pmadvise(iov + i, k, advice);
        os_count_call(t0, r < 0);
        if (r < 0)
            break;                    /* the rest go to madvise */
        /* r bytes were advised: whole ranges, in order. */
        size_t bytes = (size_t)r, j = i;
        while (j < i + k && bytes >= iov[j].iov_len) {
            bytes -= iov[j].iov_len;
            ok[j++] = true;
        }
        done += j - i;
        if (j == i)
            break;
        i = j;
    }
    for (; i < n; i++) {
        if (ok[i])
            continue;
        uint64_t t0 = now_ns();
        int r = fault_hit(F_MADVISE) ? (errno = EAGAIN, -1)
                                     : madvise(iov[i].iov_base, iov[i].iov_len, advice);
        os_count_call(t0, r != 0);
        ok[i] = r == 0;
        done += r == 0;
    }
    return done;
}

uint32_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* stderr without stdio: stdio may allocate, and we may be inside malloc. */
void os_write_err(const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w <= 0 && errno != EINTR)
            return;
        if (w > 0) {
            s += w;
            n -= (size_t)w;
        }
    }
}

/* ---- threads, as the kernel counts them (the release thread's end) ---- */

/* Is the calling thread (never the main one) the only one of the process
 * left?  /proc/self/stat gives the main thread's state (field 3) and the
 * number of threads (field 20).  A main thread that called pthread_exit is
 * a zombie, and still counted, until the last thread ends.  False when the
 * file cannot be read.  Plain system calls: no allocation. */
bool os_thread_is_last(void)
{
    char buf[1024];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = 0;
    char *p = strrchr(buf, ')');      /* the end of field 2, the command name */
    if (!p || p[1] != ' ')
        return false;
    bool main_ended = p[2] == 'Z' || p[2] == 'X';
    for (int field = 2; *p && field < 20; p++)
        field += *p == ' ';
    long threads = strtol(p, NULL, 10);
    return threads == 1 || (threads == 2 && main_ended);
}

/* A handle on the calling thread's /proc entry (an O_PATH descriptor, -1 if
 * none), for os_thread_wait_gone. */
int os_thread_handle(void)
{
    return open("/proc/thread-self", O_PATH | O_CLOEXEC);
}

/* Wait until the kernel no longer counts the thread whose /proc entry fd
 * is, for 100 ms at the most: its files go when the count drops, a moment
 * after the thread has ended for pthreads (what pthread_join waits for).
 * Sleeps rather than yields, which a real-time thread would not. */
void os_thread_wait_gone(int fd)
{
    uint64_t t0 = now_ns();
    long ns = 10000;
    while (faccessat(fd, "stat", F_OK, 0) == 0 && now_ns() - t0 < 100000000u) {
        struct timespec ts = { 0, ns };
        nanosleep(&ts, NULL);
        ns = ns < 1000000 ? ns * 2 : ns;
    }
    close(fd);
}

/* ---- asymmetric barriers (the pages of spans: span.c) ---- */

#ifndef SYS_membarrier
#define SYS_membarrier 324
#endif
#define MB_PRIVATE_EXPEDITED          (1 << 3)
#define MB_REGISTER_PRIVATE_EXPEDITED (1 << 4)

/* Ask for membarrier(2)'s private expedited command (Linux 4.14+), which
 * a fork()ed child must ask for again; false when it cannot be had (or
 * under valgrind, which does not know it). */
bool os_barrier_register(void)
{
    return !g.valgrind &&
           syscall(SYS_membarrier, MB_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

/* A full memory barrier on every running thread of the process; false if
 * the kernel refused. */
bool os_barrier_all(void)
{
    return syscall(SYS_membarrier, MB_PRIVATE_EXPEDITED, 0, 0) == 0;
}

/* ---- mappings ---- */

void os_unmap(void *addr, size_t size)
{
    munmap(addr, size);
}

/* Pages of [addr, addr + npages pages) in memory now (mincore); 0 when it
 * cannot tell. */
size_t os_resident_pages(void *addr, size_t npages)
{
    unsigned char *vec = os_map(npages);
    if (!vec)
        return 0;
    size_t resident = 0;
    if (mincore(addr, npages << g.page_shift, vec) == 0)
        for (size_t i = 0; i < npages; i++)
            resident += vec[i] & 1;
    munmap(vec, npages);
    return resident;
}

/* ---- stripe locks (struct slock): the contended side ---- */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* l was held: spin a little (the holder has a few dozen instructions to
 * run), then mark it contended (2) and sleep on it until it is free. */
void slock_wait(struct slock *l)
{
    for (int i = 0; i < 64; i++) {
        cpu_relax();
        uint32_t free_ = 0;
        if (atomic_load_explicit(&l->v, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&l->v, &free_, 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return;
    }
    while (atomic_exchange_explicit(&l->v, 2, memory_order_acquire) != 0)
        syscall(SYS_futex, &l->v, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
}

/* The holder of l, which a thread may sleep on, let it go: wake one. */
void slock_wake(struct slock *l)
{
    syscall(SYS_futex, &l->v, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/*
 * Soak: 8 threads allocate, check and free blocks for SECONDS seconds, a
 * quarter of them freed by another thread (through a shared mailbox),
 * while the main thread forks (the children allocate, check, free and
 * exit), trims, freezes and thaws, and fills and destroys heaps.  Every
 * block is checked before it is freed; RSS must stay under a bound; the
 * figures are printed at the end.   usage: soak SECONDS
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/auxv.h>
#include <sys/wait.h>
#include <time.h>

#include "attack.h"

enum { THREADS = 8, SLOTS = 1024, MAILBOX = 256, MAX_SIZE = 4096 };
/* At most THREADS * SLOTS + MAILBOX blocks of MAX_SIZE are live at once. */
#define LIVE_MAX ((size_t)(THREADS * SLOTS + MAILBOX) * MAX_SIZE)

static _Atomic bool stop;
static _Atomic(unsigned char *) mailbox[MAILBOX];
static _Atomic uint64_t n_ops, n_remote, n_bad;

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A block holds its size in its first 8 bytes (when it has them), then a
 * pattern of its address and size. */
static unsigned char pat(const unsigned char *b, size_t i)
{
    return (unsigned char)(((uintptr_t)b >> 4) + i * 7);
}

static unsigned char *make(size_t size)
{
    unsigned char *b = shed_malloc(size);
    if (!b)
        return NULL;
    size_t from = size >= 8 ? 8 : 0;
    if (from)
        memcpy(b, &size, 8);
    for (size_t i = from; i < size; i++)
        b[i] = pat(b, i);
    return b;
}

#define IN_BLOCK SIZE_MAX     /* check_free: the size is in the block */

/* Check and free a block of size bytes. */
static void check_free(unsigned char *b, size_t size)
{
    if (size == IN_BLOCK)
        memcpy(&size, b, 8);
    size_t from = size >= 8 ? 8 : 0, bad = 0;
    if (from && memcmp(b, &size, 8) != 0)
        bad++;
    for (size_t i = from; i < size && !bad; i++)
        bad += b[i] != pat(b, i);
    if (bad || shed_usable_size(b) < size) {
        fprintf(stderr, "soak: block %p of %zu bytes corrupted\n", (void *)b, size);
        atomic_fetch_add(&n_bad, 1);
    }
    shed_free(b);
}

static size_t pick_size(uint64_t *s)
{
    uint64_t r = rnd(s);
    return r % 20 == 0 ? SHED_MAX_BLOCK + 1 + r / 20 % (MAX_SIZE - SHED_MAX_BLOCK) : r / 20 % 513;
}

static void *worker(void *arg)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1), ops = 0, remote = 0;
    unsigned char *blk[SLOTS] = { 0 };
    size_t size[SLOTS];
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        uint64_t r = rnd(&seed);
        unsigned i = (unsigned)(r % SLOTS);
        if (blk[i]) {
            check_free(blk[i], size[i]);
            blk[i] = NULL;
        } else if (r >> 20 & 3) {
            size[i] = pick_size(&seed);
            blk[i] = make(size[i]);
        } else {
            /* Post a block to the mailbox; free whatever another left. */
            unsigned char *b = make(16 + rnd(&seed) % 497);
            b = atomic_exchange(&mailbox[r >> 24 & (MAILBOX - 1)], b);
            if (b) {
                check_free(b, IN_BLOCK);
                remote++;
            }
        }
        ops++;
    }
    for (unsigned i = 0; i < SLOTS; i++)
        if (blk[i])
            check_free(blk[i], size[i]);
    atomic_fetch_add(&n_ops, ops);
    atomic_fetch_add(&n_remote, remote);
    return NULL;
}

static size_t rss(void)
{
    long pages = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    /* statm counts the kernel's pages, which sysconf reports too, except
     * under test/pages/bigpage.so (make check-pages) */
    return (size_t)res * (size_t)getauxval(AT_PAGESZ);
}

/* A forked child: its own blocks, checked, freed; then exit. */
static int child_work(void)
{
    uint64_t seed = (uint64_t)getpid() * 2654435761u;
    unsigned char *b[512];
    size_t sz[512];
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 512; i++)
            b[i] = make(sz[i] = pick_size(&seed));
        for (int i = 0; i < 512; i++)
            check_free(b[i], sz[i]);
    }
    shed_trim();
    return atomic_load(&n_bad) ? 1 : 0;
}

static void nap_ms(long ms);

/* The child exited 0 within 10 s; a hung one is killed and reported. */
static bool child_ok(pid_t pid)
{
    int status = 0;
    for (int ms = 0; ms < 10000; ms += 5) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (r < 0)
            return false;
        nap_ms(5);
    }
    fprintf(stderr, "soak: child %d hung for 10 s (killed)\n", (int)pid);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return false;
}

static void heap_round(uint64_t *seed)
{
    shed_heap_t *h = shed_heap_new(0);
    for (int i = 0; h && i < 500; i++) {
        size_t n = pick_size(seed);
        unsigned char *p = shed_heap_malloc(h, n);
        if (p)
            memset(p, 0xa5, n);
        if (!p || !all_byte(p, n, 0xa5))
            atomic_fetch_add(&n_bad, 1);
    }
    if (!h)
        atomic_fetch_add(&n_bad, 1);
    shed_heap_destroy(h);
}

static void nap_ms(long ms)
{
    struct timespec ts = { ms / 1000, ms % 1000 * 1000000 };
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 30;
    shed_free(shed_malloc(1));
    size_t rss0 = rss(), rss_max = rss0, bound = rss0 + 2 * LIVE_MAX + ((size_t)64 << 20);
    uint64_t forks = 0, trims = 0, freezes = 0, heaps = 0, bad_children = 0, seed = 42;
    pthread_t t[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0)
            return fprintf(stderr, "soak: pthread_create failed\n"), 2;

    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned tick = 0;; tick++) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9 >= seconds)
            break;
        switch (tick % 4) {
        case 0: {
            fflush(NULL);
            pid_t pid = fork();
            if (pid == 0)
                _exit(child_work());
            if (pid < 0 || !child_ok(pid))
                bad_children++;
            forks++;
            break;
        }
        case 1:
            shed_trim();
            trims++;
            break;
        case 2:
            shed_freeze();
            nap_ms(5);
            shed_thaw();
            freezes++;
            break;
        case 3:
            heap_round(&seed);
            heaps++;
            break;
        }
        size_t r = rss();
        rss_max = r > rss_max ? r : rss_max;
        nap_ms(20);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < MAILBOX; i++)
        if (mailbox[i])
            check_free(mailbox[i], IN_BLOCK);
    shed_trim();
    struct shed_stats st;
    shed_stats(&st);

    printf("soak: %.0f s, %d threads: %llu operations (%llu cross-thread frees), %llu forks, "
           "%llu trims, %llu freeze/thaw, %llu heaps\n", seconds, THREADS,
           (unsigned long long)n_ops, (unsigned long long)n_remote, (unsigned long long)forks,
           (unsigned long long)trims, (unsigned long long)freezes, (unsigned long long)heaps);
    printf("soak: RSS %zu MiB at start, %zu MiB at most (bound %zu MiB); at the end %zu blocks "
           "in use, %zu KiB of shed's pools resident, %llu release calls, %llu failed\n",
           rss0 >> 20, rss_max >> 20, bound >> 20, st.blocks_in_use, st.bytes_resident >> 10,
           (unsigned long long)st.release_syscalls, (unsigned long long)st.release_failures);
    int fail = 0;
    if (n_bad)
        fail = fprintf(stderr, "soak: %llu corrupted blocks\n", (unsigned long long)n_bad);
    if (bad_children)
        fail = fprintf(stderr, "soak: %llu children failed\n", (unsigned long long)bad_children);
    if (rss_max > bound)
        fail = fprintf(stderr, "soak: RSS went over the bound\n");
    if (st.blocks_in_use != 0 || st.bytes_resident > ((size_t)4 << 20))
        fail = fprintf(stderr, "soak: blocks or pages left after freeing everything\n");
    return fail ? 1 : 0;
}

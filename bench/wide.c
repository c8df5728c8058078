/*
 * wide: a wide size mix over several threads, as allocator stress tests
 * run it.  THREADS threads share one array of slots, WS per thread; each
 * step picks a slot (in its own share 7 times in 8, anywhere otherwise, so
 * about one free in ten is of another thread's block), puts a new block
 * there and frees the block it replaces, after checking its contents.
 * Sizes: 3 in 4 small, log-uniform over 16-512 bytes; 1 in 4 medium,
 * log-uniform over 513 B-32 KiB.  Prints wall ns per step (all threads'
 * steps) and the peak RSS (VmHWM).
 * Usage: wide [STEPS [WS [THREADS]]]   (STEPS per thread)
 */
#include "common.h"
#include <pthread.h>
#include <stdatomic.h>

static size_t steps, ws;
static unsigned nthreads;
static char *_Atomic *slots;
static atomic_int failed;

/* Log-uniform between lo and hi (powers of two apart, roughly). */
static size_t log_uniform(uint64_t r, size_t lo, size_t hi)
{
    unsigned octaves = 0;
    while ((lo << (octaves + 1)) <= hi)
        octaves++;
    size_t base = lo << (r % octaves);
    size_t n = base + (size_t)((r >> 8) % base);
    return n > hi ? hi : n;
}

static size_t wide_size(uint64_t *seed)
{
    uint64_t r = rng_next(seed);
    return r % 4 ? log_uniform(r >> 2, 16, 512) : log_uniform(r >> 2, 513, 32768);
}

/* A block holds its size in its first bytes and the size's low byte last. */
static void tag(char *b, size_t n)
{
    memcpy(b, &n, sizeof n);
    b[n - 1] = (char)n;
}

static void check_and_free(char *b)
{
    size_t n;
    memcpy(&n, b, sizeof n);
    if (n < 16 || n > 32768 || b[n - 1] != (char)n) {
        if (!atomic_fetch_add(&failed, 1))
            fprintf(stderr, "wide: block %p corrupted\n", (void *)b);
        return;
    }
    free(b);
}

static void *worker(void *arg)
{
    size_t t = (size_t)arg;
    uint64_t seed = 0x9E3779B97F4A7C15ULL ^ (t * 0x1234567ULL + 1);
    size_t total = ws * nthreads;
    for (size_t s = 0; s < steps; s++) {
        uint64_t r = rng_next(&seed);
        size_t i = r % 8 ? t * ws + (size_t)((r >> 3) % ws) : (size_t)((r >> 3) % total);
        size_t n = wide_size(&seed);
        char *b = malloc(n);
        if (!b)
            die_oom();
        tag(b, n);
        char *old = atomic_exchange(&slots[i], b);
        if (old)
            check_and_free(old);
    }
    return NULL;
}

static size_t peak_rss(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %zu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * 1024;
}

int main(int argc, char **argv)
{
    steps = argc > 1 ? parse_count(argv[1]) : 1000000;
    ws = argc > 2 ? parse_count(argv[2]) : 2000;
    nthreads = argc > 3 ? (unsigned)parse_count(argv[3]) : 4;
    if (nthreads > 64)
        nthreads = 64;
    slots = map_array(ws * nthreads * sizeof *slots);
    pthread_t th[64];
    uint64_t t0 = now_ns();
    for (unsigned t = 0; t < nthreads; t++)
        if (pthread_create(&th[t], NULL, worker, (void *)(size_t)t)) {
            fprintf(stderr, "wide: pthread_create failed\n");
            return 2;
        }
    for (unsigned t = 0; t < nthreads; t++)
        pthread_join(th[t], NULL);
    uint64_t t1 = now_ns();
    for (size_t i = 0; i < ws * nthreads; i++)
        if (slots[i])
            check_and_free(slots[i]);
    if (atomic_load(&failed)) {
        fprintf(stderr, "wide: %d blocks corrupted: FAILED\n", atomic_load(&failed));
        return 1;
    }
    metric("wide_ns", (double)(t1 - t0) / (double)(steps * nthreads));
    metric("wide_peak", (double)peak_rss());
    fprintf(stderr, "wide: %u threads, %zu steps each, working set %zu each\n", nthreads,
            steps, ws);
    return 0;
}

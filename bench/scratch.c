/*
 * scratch: cache-scratch, after the Hoard benchmark of that name (Berger
 * et al.): passive false sharing.  The main thread allocates one small
 * object per worker, one after another, so they likely share a cache line,
 * and hands one to each of THREADS workers.  Each worker frees the object
 * it was given (a cross-thread free), then ITERS times allocates an object
 * of the same SIZE, writes and reads every byte of it REPS times, and frees
 * it.  An allocator that gives a worker a block on a line another worker
 * writes (for instance the freed neighbour of its first object) makes the
 * line bounce between the cores, and the run takes many times longer.
 * Prints the wall time in ms, and how many workers were given, at their
 * first malloc, a block on a 64-byte line that another worker's block also
 * touches (a count that does not depend on the machine: on one whose two
 * CPUs share a core's cache, false sharing costs no time).  A byte that does not read back what the
 * worker wrote is reported and the program exits 1.
 * Usage: scratch [THREADS [ITERS [SIZE [REPS]]]]
 */
#include "common.h"
#include <pthread.h>
#include <stdatomic.h>

#define MAX_THREADS 64

static size_t iters, size, reps;
static char *first[MAX_THREADS];
static uintptr_t got[MAX_THREADS];  /* each worker's first block */
static atomic_int failed;

static void *worker(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    free(first[id]);
    for (size_t i = 0; i < iters; i++) {
        volatile char *p = malloc(size);
        if (!p)
            die_oom();
        if (i == 0)
            got[id] = (uintptr_t)p;
        unsigned char want = (unsigned char)(id * 61 + i);
        for (size_t r = 0; r < reps; r++)
            for (size_t k = 0; k < size; k++) {
                unsigned char b = (unsigned char)(want + r + k);
                p[k] = (char)b;
                if ((unsigned char)p[k] != b) {
                    fprintf(stderr, "scratch: thread %zu block %p byte %zu "
                            "is %02x, want %02x\n", (size_t)id, (void *)p, k,
                            (unsigned char)p[k], b);
                    atomic_store(&failed, 1);
                    r = reps;
                    break;
                }
            }
        free((void *)p);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    size_t threads = argc > 1 ? parse_count(argv[1]) : 2;
    iters = argc > 2 ? parse_count(argv[2]) : 1000;
    size = argc > 3 ? parse_count(argv[3]) : 8;
    reps = argc > 4 ? parse_count(argv[4]) : 100000;
    if (threads > MAX_THREADS) {
        fprintf(stderr, "scratch: THREADS is at most %d: %zu\n", MAX_THREADS,
                threads);
        return 2;
    }
    for (size_t k = 0; k < threads; k++)
        if (!(first[k] = malloc(size)))
            die_oom();
    pthread_t t[MAX_THREADS];
    uint64_t t0 = now_ns();
    for (uintptr_t k = 0; k < threads; k++)
        if (pthread_create(&t[k], NULL, worker, (void *)k)) {
            fprintf(stderr, "scratch: pthread_create failed\n");
            return 2;
        }
    for (size_t k = 0; k < threads; k++)
        pthread_join(t[k], NULL);
    uint64_t t1 = now_ns();
    if (atomic_load(&failed)) {
        fprintf(stderr, "scratch: content check FAILED\n");
        return 1;
    }
    size_t shared = 0;
    for (size_t k = 0; k < threads; k++)
        for (size_t j = 0; j < threads; j++)
            if (j != k && got[k] / 64 <= (got[j] + size - 1) / 64 &&
                got[j] / 64 <= (got[k] + size - 1) / 64) {
                shared++;
                break;
            }
    metric("scratch_ms", (double)(t1 - t0) / 1e6);
    metric("scratch_shared", (double)shared);
    return 0;
}

/*
 * threxit: the cost of a short-lived thread beside a large heap.
 * LIVE small blocks stay allocated (by the main thread) while THREADS
 * threads are started and joined one after the other, each allocating and
 * freeing a few small blocks.  An allocator that, at thread exit, looks at
 * every pool in use pays for the whole heap at each exit.  Prints us per
 * thread (start + join).
 * Usage: threxit [LIVE [THREADS]]
 */
#include <pthread.h>

#include "common.h"

static void *worker(void *arg)
{
    char *b[8];
    for (int i = 0; i < 8; i++) {
        if (!(b[i] = malloc(32 + (size_t)i * 16)))
            die_oom();
        b[i][0] = (char)i;
    }
    for (int i = 0; i < 8; i++)
        free(b[i]);
    return arg;
}

int main(int argc, char **argv)
{
    size_t live = argc > 1 ? parse_count(argv[1]) : 10000000;
    size_t threads = argc > 2 ? parse_count(argv[2]) : 2000;
    char **keep = map_array(live * sizeof *keep);
    for (size_t i = 0; i < live; i++)
        if (!(keep[i] = malloc(16 + (i % 8) * 16)))
            die_oom();
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < threads; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, NULL) != 0 || pthread_join(t, NULL) != 0) {
            fprintf(stderr, "threxit: cannot start a thread\n");
            return 1;
        }
    }
    uint64_t t1 = now_ns();
    metric("threxit_us", (double)(t1 - t0) / 1e3 / (double)threads);
    for (size_t i = 0; i < live; i++)
        free(keep[i]);
    return 0;
}

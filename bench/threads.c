/*
 * threads: two workloads with two threads.
 *  churn2   two threads churn at once, each on its own working set (as in
 *           churn.c); prints wall ns per step over both threads' steps.
 *  prodcons one thread allocates and fills blocks, passes them through a
 *           ring to a second thread that checks every byte and frees them:
 *           every free is a cross-thread free.  Prints wall ns per block.
 * A block whose content is wrong is reported and the program exits 1.
 * Usage: threads [STEPS [WS [BLOCKS]]]
 */
#include "common.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

static size_t steps, ws, blocks;
static atomic_int failed;

static void *churn_thread(void *arg)
{
    uint64_t seed = 0x9E3779B97F4A7C15ULL ^ (uintptr_t)arg;
    char **slot = map_array(ws * sizeof *slot);
    for (size_t i = 0; i < ws; i++) {
        if (!(slot[i] = malloc(py_size(&seed))))
            die_oom();
        memcpy(slot[i], &i, sizeof i);
    }
    size_t *owner = map_array(ws * sizeof *owner); /* index last written */
    for (size_t i = 0; i < ws; i++)
        owner[i] = i;
    for (size_t s = 0; s < steps; s++) {
        size_t i = (size_t)(rng_next(&seed) % ws);
        free(slot[i]);
        if (!(slot[i] = malloc(py_size(&seed))))
            die_oom();
        owner[i] = s + ws;
        memcpy(slot[i], &owner[i], sizeof owner[i]);
    }
    /* Checked at the end, not per step, to time the same work as churn.c. */
    for (size_t i = 0; i < ws; i++) {
        size_t tag;
        memcpy(&tag, slot[i], sizeof tag);
        if (tag != owner[i]) {
            fprintf(stderr, "threads/churn2: block %p holds %zx, want %zx\n",
                    (void *)slot[i], tag, owner[i]);
            atomic_store(&failed, 1);
        }
        free(slot[i]);
    }
    munmap(slot, ws * sizeof *slot);
    munmap(owner, ws * sizeof *owner);
    return NULL;
}

/* Single-producer single-consumer ring of block pointers. */
#define RING 4096
static char *ring[RING];
static _Atomic size_t head, tail; /* head: next to write; tail: next to read */

static inline unsigned char fill_byte(size_t seq, size_t k)
{
    return (unsigned char)(seq * 31 + k);
}

static void *producer(void *arg)
{
    (void)arg;
    uint64_t seed = 42;
    for (size_t seq = 0; seq < blocks; seq++) {
        size_t n = py_size(&seed);
        char *p = malloc(n);
        if (!p)
            die_oom();
        for (size_t k = 0; k < n; k++)
            p[k] = (char)fill_byte(seq, k);
        size_t h = atomic_load_explicit(&head, memory_order_relaxed);
        while (h - atomic_load_explicit(&tail, memory_order_acquire) == RING)
            sched_yield();
        ring[h % RING] = p;
        atomic_store_explicit(&head, h + 1, memory_order_release);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    uint64_t seed = 42;  /* same sequence of sizes as the producer */
    for (size_t seq = 0; seq < blocks; seq++) {
        size_t n = py_size(&seed);
        size_t t = atomic_load_explicit(&tail, memory_order_relaxed);
        while (atomic_load_explicit(&head, memory_order_acquire) == t)
            sched_yield();
        char *p = ring[t % RING];
        atomic_store_explicit(&tail, t + 1, memory_order_release);
        for (size_t k = 0; k < n; k++) {
            if ((unsigned char)p[k] != fill_byte(seq, k)) {
                fprintf(stderr, "threads/prodcons: block %zu (%p) byte %zu is "
                        "%02x, want %02x\n", seq, (void *)p, k,
                        (unsigned char)p[k], fill_byte(seq, k));
                atomic_store(&failed, 1);
                break;
            }
        }
        free(p);
    }
    return NULL;
}

static double run2(void *(*a)(void *), void *(*b)(void *))
{
    pthread_t ta, tb;
    uint64_t t0 = now_ns();
    if (pthread_create(&ta, NULL, a, (void *)1) ||
        pthread_create(&tb, NULL, b, (void *)2)) {
        fprintf(stderr, "pthread_create failed\n");
        exit(2);
    }
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    return (double)(now_ns() - t0);
}

int main(int argc, char **argv)
{
    steps = argc > 1 ? parse_count(argv[1]) : 2000000;
    ws = argc > 2 ? parse_count(argv[2]) : 100000;
    blocks = argc > 3 ? parse_count(argv[3]) : 1000000;

    double churn = run2(churn_thread, churn_thread);
    double pc = run2(producer, consumer);
    if (atomic_load(&failed)) {
        fprintf(stderr, "threads: content check FAILED\n");
        return 1;
    }
    metric("threads_churn2_ns", churn / (2.0 * (double)steps));
    metric("threads_prodcons_ns", pc / (double)blocks);
    return 0;
}

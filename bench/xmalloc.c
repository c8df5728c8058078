/*
 * xmalloc: after Lever and Boreham's xmalloc-test.  Two producer threads
 * allocate batches of BATCH blocks of Python-like sizes and pass them
 * through a queue to two consumer threads, which free them: every free is a
 * cross-thread free, and a block's pool sees frees from both consumers.
 * Prints blocks per second (each one malloc and one free), in millions.
 * The queue is a bounded ring of batches under a mutex; its batches hold
 * the pointers inline and come from mmap, so only the blocks come from the
 * measured allocator.  Every new block is written whole; a consumer reads
 * each block's head and last byte before freeing it: a wrong block is
 * reported and the program exits 1.
 * Usage: xmalloc [BLOCKS [BATCH]]   (BLOCKS per producer)
 */
#include "common.h"
#include <pthread.h>
#include <stdatomic.h>

#define MAX_BATCH 256
#define DEPTH 64            /* batches in the queue */
#define PRODUCERS 2
#define CONSUMERS 2

struct batch {
    size_t n;
    char *blk[MAX_BATCH];
    size_t len[MAX_BATCH];
    uint64_t tag[MAX_BATCH];
};

static struct batch *ring;  /* DEPTH batches, from mmap */
static size_t head, tail;   /* under mx: next to write, next to read */
static int producing = PRODUCERS;
static pthread_mutex_t mx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_full = PTHREAD_COND_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER;
static size_t blocks, batch_len;
static atomic_int failed;
static _Atomic size_t consumed;

static void *producer(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    uint64_t seed = 0x9E3779B97F4A7C15ULL * (id + 1);
    struct batch b;
    for (size_t done = 0; done < blocks; done += b.n) {
        b.n = blocks - done < batch_len ? blocks - done : batch_len;
        for (size_t i = 0; i < b.n; i++) {
            b.len[i] = py_size(&seed);
            b.tag[i] = block_tag(id, done + i);
            if (!(b.blk[i] = malloc(b.len[i])))
                die_oom();
            fill_block(b.blk[i], b.len[i], b.tag[i]);
        }
        pthread_mutex_lock(&mx);
        while (head - tail == DEPTH)
            pthread_cond_wait(&not_full, &mx);
        memcpy(&ring[head % DEPTH], &b, sizeof b);
        head++;
        pthread_cond_signal(&not_empty);
        pthread_mutex_unlock(&mx);
    }
    pthread_mutex_lock(&mx);
    producing--;
    pthread_cond_broadcast(&not_empty);
    pthread_mutex_unlock(&mx);
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    struct batch b;
    size_t n = 0;
    for (;;) {
        pthread_mutex_lock(&mx);
        while (head == tail && producing)
            pthread_cond_wait(&not_empty, &mx);
        if (head == tail) {
            pthread_mutex_unlock(&mx);
            break;
        }
        memcpy(&b, &ring[tail % DEPTH], sizeof b);
        tail++;
        pthread_cond_signal(&not_full);
        pthread_mutex_unlock(&mx);
        for (size_t i = 0; i < b.n; i++) {
            if (!check_block(b.blk[i], b.len[i], b.tag[i])) {
                fprintf(stderr, "xmalloc: block %p (%zu B) does not hold its "
                        "tag %llx\n", (void *)b.blk[i], b.len[i],
                        (unsigned long long)b.tag[i]);
                atomic_store(&failed, 1);
            }
            free(b.blk[i]);
        }
        n += b.n;
    }
    atomic_fetch_add(&consumed, n);
    return NULL;
}

int main(int argc, char **argv)
{
    blocks = argc > 1 ? parse_count(argv[1]) : 2000000;
    batch_len = argc > 2 ? parse_count(argv[2]) : 64;
    if (batch_len > MAX_BATCH) {
        fprintf(stderr, "xmalloc: BATCH is at most %d: %zu\n", MAX_BATCH,
                batch_len);
        return 2;
    }
    ring = map_array(DEPTH * sizeof *ring);
    pthread_t t[PRODUCERS + CONSUMERS];
    uint64_t t0 = now_ns();
    for (uintptr_t k = 0; k < PRODUCERS + CONSUMERS; k++)
        if (pthread_create(&t[k], NULL, k < PRODUCERS ? producer : consumer,
                           (void *)k)) {
            fprintf(stderr, "xmalloc: pthread_create failed\n");
            return 2;
        }
    for (int k = 0; k < PRODUCERS + CONSUMERS; k++)
        pthread_join(t[k], NULL);
    uint64_t t1 = now_ns();
    if (atomic_load(&failed) || consumed != PRODUCERS * blocks) {
        fprintf(stderr, "xmalloc: content check FAILED (%zu of %zu blocks "
                "came through)\n", (size_t)consumed, PRODUCERS * blocks);
        return 1;
    }
    metric("xmalloc_mops", (double)consumed / (double)(t1 - t0) * 1e3);
    return 0;
}

/*
 * 8 threads in a ring: each allocates messages (sizes from 1 byte to past
 * the pool limit, so both shed and glibc blocks), fills them with a pattern
 * derived from (sender, sequence number), and posts them to the next thread,
 * which checks every byte, reallocs some (contents must survive) and frees
 * them: every block is freed by a thread other than the one that made it.
 *
 * Prints a summary that depends only on the messages, not on scheduling, so
 * its output with and without LD_PRELOAD=libshed.so must be identical.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NTHREADS = 8, PER_THREAD = 100000 };

struct msg {
    struct msg *next;
    uint32_t sender, seq;
    size_t size;                    /* bytes of data[] */
    unsigned char data[];
};

struct inbox {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct msg *head;               /* LIFO list: order does not matter */
};

static struct inbox inbox[NTHREADS];
static uint64_t checksum[NTHREADS], bytes[NTHREADS];
static int bad[NTHREADS];

static unsigned char pattern(uint32_t sender, uint32_t seq, size_t i)
{
    return (unsigned char)(sender * 31 + seq * 7 + i * 13);
}

/* Python-like sizes: mostly small, some medium, a few beyond 512 bytes. */
static size_t msg_size(uint32_t sender, uint32_t seq)
{
    uint32_t x = (sender + 1) * 2654435761u ^ seq * 2246822519u;
    x ^= x >> 15;
    switch (x % 10) {
    case 0:  return 512 + x % 2000;                 /* glibc's */
    case 1: case 2: case 3: return x % 480;
    default: return x % 100;
    }
}

static void post(struct inbox *b, struct msg *m)
{
    pthread_mutex_lock(&b->lock);
    m->next = b->head;
    b->head = m;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

/* Take every waiting message; block for one when wait is set. */
static struct msg *take_all(struct inbox *b, int wait)
{
    pthread_mutex_lock(&b->lock);
    while (wait && !b->head)
        pthread_cond_wait(&b->cond, &b->lock);
    struct msg *m = b->head;
    b->head = NULL;
    pthread_mutex_unlock(&b->lock);
    return m;
}

static int check(const struct msg *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (m->data[i] != pattern(m->sender, m->seq, i))
            return 0;
    return 1;
}

/* Check, sometimes realloc (grow or shrink), then free a received message. */
static void consume(int self, struct msg *m)
{
    if (!check(m, m->size)) {
        fprintf(stderr, "thread %d: message %u from %u corrupted\n", self, m->seq, m->sender);
        bad[self]++;
    }
    checksum[self] += (uint64_t)m->sender << 32 | m->seq;
    bytes[self] += m->size;
    if (m->seq % 4 == 0) {
        size_t keep = m->size / 2 + m->seq % 300;
        size_t kept = keep < m->size ? keep : m->size;
        struct msg *r = realloc(m, sizeof *m + keep);
        if (!r) {
            fprintf(stderr, "thread %d: realloc failed\n", self);
            bad[self]++;
        } else {
            m = r;
            if (!check(m, kept)) {
                fprintf(stderr, "thread %d: realloc lost message %u\n", self, m->seq);
                bad[self]++;
            }
        }
    }
    free(m);
}

static void *worker(void *arg)
{
    int self = (int)(intptr_t)arg;
    struct inbox *out = &inbox[(self + 1) % NTHREADS], *in = &inbox[self];
    uint32_t received = 0;
    for (uint32_t seq = 0; seq < PER_THREAD; seq++) {
        size_t n = msg_size((uint32_t)self, seq);
        struct msg *m = malloc(sizeof *m + n);
        if (!m) {
            fprintf(stderr, "thread %d: malloc(%zu) failed\n", self, sizeof *m + n);
            exit(1);
        }
        m->sender = (uint32_t)self;
        m->seq = seq;
        m->size = n;
        for (size_t i = 0; i < n; i++)
            m->data[i] = pattern(m->sender, seq, i);
        post(out, m);
        if (seq % 64 == 0)          /* drain now and then so memory stays bounded */
            for (struct msg *r = take_all(in, 0), *next; r; r = next, received++) {
                next = r->next;
                consume(self, r);
            }
    }
    while (received < PER_THREAD)
        for (struct msg *r = take_all(in, 1), *next; r; r = next, received++) {
            next = r->next;
            consume(self, r);
        }
    return NULL;
}

int main(void)
{
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        pthread_mutex_init(&inbox[i].lock, NULL);
        pthread_cond_init(&inbox[i].cond, NULL);
    }
    for (int i = 0; i < NTHREADS; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    int errors = 0;
    for (int i = 0; i < NTHREADS; i++) {
        printf("thread %d: received checksum %016" PRIx64 ", %" PRIu64 " bytes\n",
               i, checksum[i], bytes[i]);
        errors += bad[i];
    }
    printf("%d messages, %d errors\n", NTHREADS * PER_THREAD, errors);
    return errors != 0;
}

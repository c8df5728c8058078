/*
 * larson: a larson-style server (after Larson and Krishnan's benchmark).
 * Two threads each own a set of SLOTS blocks of random sizes LO..HI bytes.
 * A step frees a random slot and allocates a new block into it.  Every EVERY
 * steps a thread hands its whole set to the other thread, which frees what it
 * inherited (every one of those frees is a cross-thread free), and starts
 * over with a new set.  Prints malloc+free pairs per second over both
 * threads (the frees of an inherited set and the mallocs of a new set count
 * as pairs too).
 * Every new block is written whole; every block is read (its head and its
 * last byte) and checked before it is freed: a wrong block is reported and
 * the program exits 1.
 * Usage: larson [STEPS [SLOTS [EVERY [LO-HI]]]]   (STEPS per thread)
 */
#include "common.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

struct set {
    char **blk;
    size_t *len;
};

struct worker {
    int id;
    struct set sets[2];          /* one in use, one possibly handed over */
    _Atomic(struct set *) inbox; /* a set handed over by the other thread */
    atomic_int done;             /* its steps are over */
    size_t pairs;
};

static size_t steps, slots, every, lo = 16, hi = 512;
static struct worker workers[2];
static atomic_int failed;

static size_t next_size(uint64_t *seed)
{
    return lo + (size_t)(rng_next(seed) % (hi - lo + 1));
}

static char *new_block(size_t n, uint64_t tag)
{
    char *p = malloc(n);
    if (!p)
        die_oom();
    fill_block(p, n, tag);
    return p;
}

static void free_block(char *p, size_t n, uint64_t tag, const char *what)
{
    if (!check_block(p, n, tag)) {
        fprintf(stderr, "larson: %s block %p (%zu B) does not hold its tag "
                "%llx\n", what, (void *)p, n, (unsigned long long)tag);
        atomic_store(&failed, 1);
    }
    free(p);
}

static uint64_t tag_of(const struct set *s, size_t i)
{
    return block_tag((uintptr_t)s, i ^ s->len[i] << 32);
}

static void fill_set(struct set *s, uint64_t *seed)
{
    for (size_t i = 0; i < slots; i++) {
        s->len[i] = next_size(seed);
        s->blk[i] = new_block(s->len[i], tag_of(s, i));
    }
}

/* Free a set the other thread handed over, if there is one. */
static size_t drain_inbox(struct worker *w)
{
    struct set *s = atomic_load_explicit(&w->inbox, memory_order_acquire);
    if (!s)
        return 0;
    for (size_t i = 0; i < slots; i++)
        free_block(s->blk[i], s->len[i], tag_of(s, i), "inherited");
    atomic_store_explicit(&w->inbox, NULL, memory_order_release);
    return slots;
}

static void *run(void *arg)
{
    struct worker *w = arg, *other = &workers[!w->id];
    uint64_t seed = 0x9E3779B97F4A7C15ULL * (uint64_t)(w->id + 1);
    int cur = 0;
    size_t pairs = 0;
    fill_set(&w->sets[cur], &seed);
    for (size_t s = 1; s <= steps; s++) {
        struct set *set = &w->sets[cur];
        size_t i = (size_t)(rng_next(&seed) % slots);
        free_block(set->blk[i], set->len[i], tag_of(set, i), "own");
        set->len[i] = next_size(&seed);
        set->blk[i] = new_block(set->len[i], tag_of(set, i));
        pairs++;
        if (s % every)
            continue;
        /* Hand the set over once the other thread has freed the last one
         * (that one is our other set, which we then fill and use). */
        pairs += drain_inbox(w);
        while (atomic_load_explicit(&other->inbox, memory_order_acquire)) {
            pairs += drain_inbox(w);
            sched_yield();
        }
        atomic_store_explicit(&other->inbox, set, memory_order_release);
        cur = !cur;
        fill_set(&w->sets[cur], &seed);
    }
    /* The other thread may still wait to hand us a set: take them until it
     * is done too. */
    atomic_store(&w->done, 1);
    while (!atomic_load(&other->done)) {
        pairs += drain_inbox(w);
        sched_yield();
    }
    pairs += drain_inbox(w);
    w->pairs = pairs;
    return NULL;
}

int main(int argc, char **argv)
{
    steps = argc > 1 ? parse_count(argv[1]) : 2000000;
    slots = argc > 2 ? parse_count(argv[2]) : 1000;
    every = argc > 3 ? parse_count(argv[3]) : 10000;
    if (argc > 4 && (sscanf(argv[4], "%zu-%zu", &lo, &hi) != 2 || lo < 8 ||
                     hi < lo)) {
        fprintf(stderr, "larson: sizes are LO-HI bytes, 8 <= LO <= HI: %s\n",
                argv[4]);
        return 2;
    }
    pthread_t t[2];
    for (int k = 0; k < 2; k++) {
        workers[k].id = k;
        for (int j = 0; j < 2; j++) {
            workers[k].sets[j].blk = map_array(slots * sizeof(char *));
            workers[k].sets[j].len = map_array(slots * sizeof(size_t));
        }
    }
    uint64_t t0 = now_ns();
    for (int k = 0; k < 2; k++)
        if (pthread_create(&t[k], NULL, run, &workers[k])) {
            fprintf(stderr, "larson: pthread_create failed\n");
            return 2;
        }
    for (int k = 0; k < 2; k++)
        pthread_join(t[k], NULL);
    uint64_t t1 = now_ns();
    size_t pairs = workers[0].pairs + workers[1].pairs;
    /* What is left: the set each thread used last (the inboxes are empty). */
    for (int k = 0; k < 2; k++) {
        int last = (int)((steps / every) & 1);  /* the set in use at the end */
        struct set *s = &workers[k].sets[last];
        for (size_t i = 0; i < slots; i++)
            free_block(s->blk[i], s->len[i], tag_of(s, i), "own");
    }
    if (atomic_load(&failed)) {
        fprintf(stderr, "larson: content check FAILED\n");
        return 1;
    }
    char name[64];
    snprintf(name, sizeof name, "larson_%zu_%zu_mops", lo, hi);
    metric(name, (double)pairs / (double)(t1 - t0) * 1e3);
    return 0;
}

/*
 * reuse: how soon an allocator hands a freed block out again, under the
 * churn workload (bench/churn.c).  A diagnostic, not a race: a block freed
 * at step s and returned by malloc at step s + d has reuse distance d.  A
 * short distance means the new block's cache lines are likely still cached
 * (the caller touched it before freeing it, or the allocator's free wrote
 * it), so the caller's first write to it is cheap.
 * Prints the median distance as a metric and the histogram by decade.
 * Usage: reuse [STEPS [WS]]
 */
#include "common.h"

#define TABLE_BITS 22                /* 4M slots */

/* Open addressing, address -> step freed (0: not freed, or reused since). */
static uintptr_t keys[1u << TABLE_BITS];
static size_t freed_at[1u << TABLE_BITS];

static size_t *freed_slot(const void *block)
{
    uintptr_t k = (uintptr_t)block;
    size_t h = (size_t)((k * 0x9E3779B97F4A7C15ULL) >> (64 - TABLE_BITS));
    while (keys[h] && keys[h] != k)
        h = (h + 1) & ((1u << TABLE_BITS) - 1);
    keys[h] = k;
    return &freed_at[h];
}

int main(int argc, char **argv)
{
    size_t steps = argc > 1 ? parse_count(argv[1]) : 2000000;
    size_t ws = argc > 2 ? parse_count(argv[2]) : 100000;
    /* Every address handed out takes a slot (at most WS + STEPS of them);
     * keep the table under 3/4 full, so that a probe always ends. */
    size_t room = (size_t)(1u << TABLE_BITS) / 4 * 3;
    if (ws + steps > room) {
        fprintf(stderr, "reuse: WS + STEPS at most %zu\n", room);
        return 2;
    }
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    char **slot = map_array(ws * sizeof *slot);
    size_t decade[8] = { 0 }, fresh = 0;

    for (size_t i = 0; i < ws; i++)
        if (!(slot[i] = malloc(py_size(&seed))))
            die_oom();
    for (size_t s = 1; s <= steps; s++) {
        size_t i = (size_t)(rng_next(&seed) % ws);
        *freed_slot(slot[i]) = s;
        free(slot[i]);
        if (!(slot[i] = malloc(py_size(&seed))))
            die_oom();
        size_t *f = freed_slot(slot[i]);
        if (*f == 0) {
            fresh++;                 /* never freed during the run */
        } else {
            unsigned d = 0;
            for (size_t dist = s - *f; dist >= 10 && d < 7; dist /= 10)
                d++;
            decade[d]++;
        }
        *f = 0;
    }
    for (size_t i = 0; i < ws; i++)
        free(slot[i]);

    /* The median distance, as the decade it falls in (below 10^(d + 1)),
     * and the share of new blocks reused within 10^k steps of their free. */
    size_t seen = 0;
    unsigned d = 0;
    while (d < 7 && (seen += decade[d]) < steps / 2)
        d++;
    double bound = 10;
    for (unsigned k = 0; k < d; k++)
        bound *= 10;
    metric("reuse_median_below", bound);
    seen = 0;
    for (unsigned k = 0; k < 6; k++) {
        char name[32];
        seen += decade[k];
        snprintf(name, sizeof name, "reuse_within_1e%u", k + 1);
        metric(name, (double)seen / (double)steps);
    }
    fprintf(stderr, "reuse: %zu steps, working set %zu: new %zu", steps, ws, fresh);
    for (unsigned k = 0; k < 8; k++)
        fprintf(stderr, ", <1e%u %zu", k + 1, decade[k]);
    fprintf(stderr, "\n");
    return 0;
}

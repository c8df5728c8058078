/*
 * churn: single-thread throughput with a steady working set.
 * A working set of WS blocks; each step frees a random one and allocates a
 * new one of a Python-like size (or, given LO-HI, of a size drawn evenly from
 * LO..HI bytes: 496-496 is one size class, 257-512 sixteen of them).  Prints
 * ns per step (one free + one malloc).
 * Usage: churn [STEPS [WS [LO-HI]]]
 */
#include "common.h"

static size_t lo, hi;            /* 0: Python-like sizes */

static size_t next_size(uint64_t *seed)
{
    return lo ? lo + (size_t)(rng_next(seed) % (hi - lo + 1)) : py_size(seed);
}

int main(int argc, char **argv)
{
    size_t steps = argc > 1 ? parse_count(argv[1]) : 5000000;
    size_t ws = argc > 2 ? parse_count(argv[2]) : 100000;
    if (argc > 3 && (sscanf(argv[3], "%zu-%zu", &lo, &hi) != 2 || lo < 8 || hi < lo)) {
        /* 8: each block holds its step number */
        fprintf(stderr, "churn: sizes are LO-HI bytes, 8 <= LO <= HI: %s\n", argv[3]);
        return 2;
    }
    uint64_t seed = 0x9E3779B97F4A7C15ULL, sum = 0;
    char **slot = map_array(ws * sizeof *slot);
    size_t *len = map_array(ws * sizeof *len);

    for (size_t i = 0; i < ws; i++) {
        len[i] = next_size(&seed);
        if (!(slot[i] = malloc(len[i])))
            die_oom();
        memcpy(slot[i], &i, sizeof i);
        slot[i][len[i] - 1] = (char)i;
    }

    uint64_t t0 = now_ns();
    for (size_t s = 0; s < steps; s++) {
        size_t i = (size_t)(rng_next(&seed) % ws);
        free(slot[i]);
        len[i] = next_size(&seed);
        if (!(slot[i] = malloc(len[i])))
            die_oom();
        /* Write both ends of the new block, as a caller initialising it
         * would: an allocator pays for the cache misses its layout causes. */
        memcpy(slot[i], &s, sizeof s);
        slot[i][len[i] - 1] = (char)s;
    }
    uint64_t t1 = now_ns();

    for (size_t i = 0; i < ws; i++) {
        sum += (unsigned char)slot[i][len[i] - 1];
        free(slot[i]);
    }
    metric("churn_ns", (double)(t1 - t0) / (double)steps);
    fprintf(stderr, "churn: %zu steps, working set %zu, checksum %llx\n",
            steps, ws, (unsigned long long)sum);
    return 0;
}

/*
 * burst: allocate N Python-like blocks, then free them all, in LIFO order
 * (last allocated first) and in FIFO order.  Prints ns per malloc+free pair
 * for each order, over ROUNDS bursts of each.
 * Usage: burst [N [ROUNDS]]
 */
#include "common.h"

static double burst(char **p, const uint16_t *size, size_t n, int fifo)
{
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        if (!(p[i] = malloc(size[i])))
            die_oom();
        p[i][0] = (char)i;  /* touch the block */
    }
    if (fifo) {
        for (size_t i = 0; i < n; i++)
            free(p[i]);
    } else {
        for (size_t i = n; i-- > 0;)
            free(p[i]);
    }
    return (double)(now_ns() - t0);
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? parse_count(argv[1]) : 500000;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    uint64_t seed = 0x243F6A8885A308D3ULL;
    char **p = map_array(n * sizeof *p);
    uint16_t *size = map_array(n * sizeof *size);

    /* Sizes drawn before timing: the burst loop measures the allocator. */
    for (size_t i = 0; i < n; i++)
        size[i] = (uint16_t)py_size(&seed);

    /* One untimed burst warms the allocator up (page faults, metadata). */
    burst(p, size, n, 0);
    double lifo = 0, fifo = 0;
    for (int r = 0; r < rounds; r++) {
        lifo += burst(p, size, n, 0);
        fifo += burst(p, size, n, 1);
    }
    metric("burst_lifo_ns", lifo / ((double)n * rounds));
    metric("burst_fifo_ns", fifo / ((double)n * rounds));
    return 0;
}

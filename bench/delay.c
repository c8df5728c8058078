/*
 * delay: how long should a free pool wait before it is released?
 *
 * A program that works in bursts (allocate N blocks, free them, idle for GAP
 * ms, again) under release=batched with several delay_ms values.  A delay
 * shorter than the gap releases every pool between bursts, and the next burst
 * pays a page fault per page; a longer one keeps the pages for reuse.
 * Prints, per delay: ns per malloc+free pair (the bursts only), pages
 * released per burst.  Each configuration runs in its own process (re-exec).
 * Usage: delay [N [BURSTS]]
 */
#include <shed.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void run(size_t n, int bursts, int gap_ms)
{
    char **p = shed_malloc(n * sizeof *p);   /* large: from the system */
    unsigned seed = 1;
    double busy = 0;
    struct shed_stats s0, s1;
    shed_stats(&s0);
    for (int b = 0; b < bursts; b++) {
        double t0 = now_ns();
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245 + 12345;
            size_t size = 16 + (seed >> 16) % 240;
            p[i] = shed_malloc(size);
            p[i][0] = (char)i;
        }
        for (size_t i = 0; i < n; i++)
            shed_free(p[i]);
        busy += now_ns() - t0;
        usleep((useconds_t)gap_ms * 1000);
    }
    shed_stats(&s1);
    printf("%10.1f %12.0f\n", busy / ((double)n * bursts),
           (double)(s1.pages_released - s0.pages_released) / bursts);
    shed_free(p);
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    int bursts = argc > 2 ? atoi(argv[2]) : 10;
    if (argc > 4) {                          /* child: delay and gap given */
        char conf[64];
        snprintf(conf, sizeof conf, "release=batched,delay_ms=%s", argv[3]);
        shed_config(conf);
        run(n, bursts, atoi(argv[4]));
        return 0;
    }
    static const char *delays[] = { "0", "10", "50", "100", "200", "1000" };
    static const int gaps[] = { 20, 80 };
    printf("bursts of %zu blocks (16-255 B), %d bursts, idle gap between them\n", n, bursts);
    for (size_t gi = 0; gi < sizeof gaps / sizeof gaps[0]; gi++) {
        printf("gap %d ms\n  delay_ms   ns/pair  pages released per burst\n", gaps[gi]);
        for (size_t d = 0; d < sizeof delays / sizeof delays[0]; d++) {
            char nb[32], bb[32], gb[32];
            snprintf(nb, sizeof nb, "%zu", n);
            snprintf(bb, sizeof bb, "%d", bursts);
            snprintf(gb, sizeof gb, "%d", gaps[gi]);
            printf("  %8s ", delays[d]);
            fflush(stdout);
            char cmd[512];
            snprintf(cmd, sizeof cmd, "%s %s %s %s %s", argv[0], nb, bb, delays[d], gb);
            if (system(cmd) != 0)
                return 1;
        }
    }
    return 0;
}

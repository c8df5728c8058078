/*
 * frag: how much memory goes back to the kernel after most of a large
 * structure is dropped.  Allocates N blocks of Python-like sizes (written in
 * full, as objects are initialised), then frees all but a kept set:
 *   random  a random 5% of the blocks
 *   sparse  one block in a thousand
 *   phase   the last 5% allocated (a program phase that outlives the rest)
 * and stays alive and idle for WAIT_MS, sampling RSS, because an
 * allocator's background thread may be what lowers it.
 *
 * RSS is reported as heap bytes: RSS minus the RSS before the first
 * allocation minus the resident pages of this program's own bookkeeping
 * arrays (mmap'd, never in the allocator's heap; counted with mincore).  The survivors' lower bound is the number of
 * distinct pages that hold a byte of a kept block, times the page size.
 * Given LO-HI, sizes are drawn evenly from LO..HI bytes instead (8 <= LO <=
 * HI <= 65535: 513-32768 is shed's medium blocks).
 * Usage: frag random|sparse|phase [N [WAIT_MS [LO-HI]]]
 */
#include "common.h"
#include <errno.h>

#define MAX_SAMPLES 4096
static struct { double t_ms; double heap; } sample[MAX_SAMPLES];
static int nsample;
static long page;
static size_t baseline;

/* This program's own arrays (mmap'd), whose resident pages are not heap. */
static struct { void *p; size_t len; } own[8];
static int nown;

static void *own_array(size_t bytes)
{
    own[nown].p = map_array(bytes);
    own[nown].len = bytes;
    return own[nown++].p;
}

static void own_unmap(void *p)
{
    for (int i = 0; i < nown; i++)
        if (own[i].p == p) {
            munmap(p, own[i].len);
            own[i].len = 0;
        }
}

/* Exact, with mincore(2): only the pages touched so far are resident. */
static size_t own_resident(void)
{
    static unsigned char vec[1 << 16];
    size_t total = 0;
    for (int i = 0; i < nown; i++) {
        size_t npages = (own[i].len + page - 1) / page;
        for (size_t at = 0; at < npages; at += sizeof vec) {
            size_t k = npages - at < sizeof vec ? npages - at : sizeof vec;
            if (mincore((char *)own[i].p + at * page, k * page, vec))
                continue;
            for (size_t j = 0; j < k; j++)
                total += vec[j] & 1;
        }
    }
    return total * (size_t)page;
}

static double heap_now(void)
{
    size_t o = own_resident();
    return (double)rss_bytes() - (double)baseline - (double)o;
}

static void record(uint64_t t, uint64_t t_ref)
{
    if (nsample < MAX_SAMPLES) {
        sample[nsample].t_ms = ((double)t - (double)t_ref) / 1e6;
        sample[nsample].heap = heap_now();
        nsample++;
    }
}

static int cmp_uptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static void sleep_until(uint64_t t)
{
    struct timespec ts = { (time_t)(t / 1000000000u), (long)(t % 1000000000u) };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: frag random|sparse|phase [N [WAIT_MS [LO-HI]]]\n");
        return 2;
    }
    size_t lo = 0, hi = 0;
    if (argc > 4 && (sscanf(argv[4], "%zu-%zu", &lo, &hi) != 2 || lo < 8 || hi < lo ||
                     hi > 65535)) {
        fprintf(stderr, "frag: sizes are LO-HI bytes, 8 <= LO <= HI <= 65535: %s\n", argv[4]);
        return 2;
    }
    const char *mode = argv[1];
    size_t n = argc > 2 ? parse_count(argv[2]) : 2000000;
    int wait_ms = argc > 3 ? atoi(argv[3]) : 1000;
    int m = !strcmp(mode, "random") ? 0 : !strcmp(mode, "sparse") ? 1
          : !strcmp(mode, "phase") ? 2 : -1;
    if (m < 0) {
        fprintf(stderr, "frag: unknown mode %s\n", mode);
        return 2;
    }
    page = sysconf(_SC_PAGESIZE);
    uint64_t seed = 0xB7E151628AED2A6BULL, keep_seed = 7;

    free(malloc(16));  /* the allocator's start-up belongs to the baseline */
    baseline = rss_bytes();

    char **ptr = own_array(n * sizeof *ptr);
    uint16_t *size = own_array(n * sizeof *size);
    size_t cap = n / 10 + 1024, nkeep = 0;
    char **kept = own_array(cap * sizeof *kept);
    uint32_t *kept_id = own_array(cap * sizeof *kept_id);
    uint16_t *kept_size = own_array(cap * sizeof *kept_size);
    size_t every = n / 64 ? n / 64 : 1;

    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        size[i] = (uint16_t)(lo ? lo + rng_next(&seed) % (hi - lo + 1) : py_size(&seed));
        if (!(ptr[i] = malloc(size[i])))
            die_oom();
        memset(ptr[i], (int)(i & 0xff), size[i]);
        if (i % every == 0)
            record(now_ns(), t0);
    }
    uint64_t t1 = now_ns();
    record(t1, t0);
    double peak = sample[nsample - 1].heap;

    for (size_t i = 0; i < n; i++) {
        int keep = m == 0 ? rng_next(&keep_seed) % 100 < 5
                 : m == 1 ? i % 1000 == 500
                 : i >= n - n / 20;
        if (keep && nkeep < cap) {
            kept[nkeep] = ptr[i];
            kept_id[nkeep] = (uint32_t)i;
            kept_size[nkeep] = size[i];
            nkeep++;
        } else {
            free(ptr[i]);
        }
        if (i % every == 0)  /* the drop itself, for the plot */
            record(now_ns(), t0);
    }
    own_unmap(ptr);
    own_unmap(size);
    uint64_t t2 = now_ns();  /* the drop is done: time 0 */

    double at[3] = { 0, 0, 0 };
    for (int k = 0; k * 10 <= wait_ms; k++) {
        if (k)
            sleep_until(t2 + (uint64_t)k * 10000000u);
        record(now_ns(), t0);
        if (k == 0 || k == 10 || k == 100)
            at[k == 0 ? 0 : k == 10 ? 1 : 2] = sample[nsample - 1].heap;
    }

    /* Survivors: content intact, and the pages they occupy (every one of a
     * block that spans several). */
    size_t per = (hi ? hi : 512) / (size_t)page + 2;
    uintptr_t *pg = map_array((per * nkeep + 1) * sizeof *pg);
    size_t npg = 0;
    int bad = 0;
    for (size_t j = 0; j < nkeep; j++) {
        unsigned char want = (unsigned char)(kept_id[j] & 0xff);
        unsigned char *p = (unsigned char *)kept[j];
        if (p[0] != want || p[kept_size[j] - 1] != want) {
            if (!bad++)
                fprintf(stderr, "frag: kept block %u (%p) corrupted\n",
                        kept_id[j], (void *)p);
        }
        uintptr_t a = (uintptr_t)p / page, b = ((uintptr_t)p + kept_size[j] - 1) / page;
        for (uintptr_t q = a; q <= b; q++)
            pg[npg++] = q;
    }
    qsort(pg, npg, sizeof *pg, cmp_uptr);
    size_t distinct = 0;
    for (size_t j = 0; j < npg; j++)
        distinct += j == 0 || pg[j] != pg[j - 1];
    double bound = (double)distinct * (double)page;
    for (size_t j = 0; j < nkeep; j++)
        free(kept[j]);
    if (bad) {
        fprintf(stderr, "frag: %d kept blocks corrupted: FAILED\n", bad);
        return 1;
    }

    double drop_ms = (double)(t2 - t0) / 1e6;
    for (int k = 0; k < nsample; k++)
        printf("rss %.1f %.0f\n", sample[k].t_ms - drop_ms, sample[k].heap);
    metric("frag_alloc_ns", (double)(t1 - t0) / (double)n);
    metric("frag_drop_ns", (double)(t2 - t1) / (double)(n - nkeep));
    metric("frag_kept", (double)nkeep);
    metric("frag_peak", peak);
    metric("frag_rss0", at[0]);
    metric("frag_rss100", at[1]);
    metric("frag_rss1000", at[2]);
    metric("frag_bound", bound);
    metric("frag_ratio1000", at[2] / bound);
    return 0;
}

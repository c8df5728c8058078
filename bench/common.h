/*
 * Shared helpers for the shed benchmark workloads.
 *
 * The workloads call the standard malloc/free names, so every allocator is
 * measured the same way: by LD_PRELOAD of its shared library (glibc: none).
 * Each program prints its results on stdout as lines
 *     metric NAME VALUE
 *     rss T_MS HEAP_BYTES        (frag workloads: RSS time series)
 * which bench/run.py parses.  Diagnostics go to stderr; a failed content
 * check exits with status 1.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: a few cycles, so the RNG does not hide the allocator. */
static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Python-like object sizes: 60% 16-64 B, 30% 65-256 B, 10% 257-512 B. */
static inline size_t py_size(uint64_t *s)
{
    uint64_t r = rng_next(s);
    unsigned pick = (unsigned)(r % 100);
    r >>= 8;
    if (pick < 60)
        return 16 + (size_t)(r % 49);
    if (pick < 90)
        return 65 + (size_t)(r % 192);
    return 257 + (size_t)(r % 256);
}

/* Resident set size in bytes, from /proc/self/statm (one read syscall). */
static inline size_t rss_bytes(void)
{
    static int fd = -1;
    static long page;
    char buf[128];
    if (fd < 0) {
        fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
        page = sysconf(_SC_PAGESIZE);
        if (fd < 0)
            return 0;
    }
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    unsigned long size, res;
    if (sscanf(buf, "%lu %lu", &size, &res) != 2)
        return 0;
    return (size_t)res * (size_t)page;
}

/* Bookkeeping arrays come from mmap, not malloc, so they never sit in the
 * measured allocator's heap and can be handed back on their own. */
static inline void *map_array(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    return p;
}

static inline void die_oom(void)
{
    fprintf(stderr, "malloc returned NULL\n");
    exit(2);
}

/* Size argument: decimal with an optional k/M suffix. */
static inline size_t parse_count(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (*end == 'k' || *end == 'K')
        v *= 1e3;
    else if (*end == 'm' || *end == 'M')
        v *= 1e6;
    return v < 1 ? 1 : (size_t)v;
}

static inline void metric(const char *name, double value)
{
    printf("metric %s %.3f\n", name, value);
}

/* A block's content for the workloads that check every block: an 8-byte tag
 * at its head and the tag's last byte everywhere after it, so a block of 8 B
 * holds the tag alone.  block_tag mixes an owner and an index into one. */
static inline uint64_t block_tag(uint64_t owner, uint64_t index)
{
    uint64_t x = (owner ^ (index * 0x9E3779B97F4A7C15ULL)) * 0xBF58476D1CE4E5B9ULL;
    return x ^ x >> 31;
}

static inline unsigned char tag_byte(uint64_t tag)
{
    unsigned char b[sizeof tag];
    memcpy(b, &tag, sizeof tag);
    return b[sizeof tag - 1];
}

/* Write all of an n-byte block (n >= 8), as a caller initialising it would. */
static inline void fill_block(char *p, size_t n, uint64_t tag)
{
    memset(p + sizeof tag, tag_byte(tag), n - sizeof tag);
    memcpy(p, &tag, sizeof tag);
}

/* Read a block before it is freed: its head and its last byte, where an
 * allocator's free-list link or a neighbour's overrun would show. */
static inline int check_block(const char *p, size_t n, uint64_t tag)
{
    uint64_t head;
    memcpy(&head, p, sizeof head);
    return head == tag && (unsigned char)p[n - 1] == tag_byte(tag);
}

#endif

/*
 * reports: the program that check_reports.py drives.  It makes a known
 * allocation pattern in a fresh process and writes what shed reports of it
 * (text, JSON, the heap map) beside the truth (shed_stats_get's fields as
 * "key value" lines), so that the script can check every output against
 * the struct.
 *
 *   reports pattern DIR   class 64: two full pools, one half full, one
 *                         under 10%; pools of class 256 trimmed (released),
 *                         of class 512 freed (dirty; run it with
 *                         release=manual); then DIR/{stats.txt,stats.json,
 *                         map.svg,truth.txt}
 *   reports big DIR       130 arenas of pools of 512-byte blocks (a map
 *                         drawn at one cell per 2 pools): DIR/{map.svg,truth.txt}
 *   reports lines FILE N  wait until FILE (the stats_file, or stderr when
 *                         FILE is "-") has N lines, 10 s at the most; then
 *                         fork: the child waits for 2 lines of its own, the
 *                         parent for N more after the fork.  Exit 1 on a
 *                         timeout, saying which wait failed.
 *   reports warned        wait until stderr, a regular file, has a "shed:"
 *                         line (10 s at the most), then 10 intervals more
 *                         (to show it comes once)
 *   reports noop          one malloc and exit (for SHED_CONF's messages)
 *   reports classes       a block of every class, live at exit (a JSON
 *                         object of over 4 KiB)
 *   reports closefds DIR  one malloc, then as a daemon does: close every
 *                         descriptor from 3 on, and open DIR/fd0..fd19
 *                         (descriptors 3 to 22), left open at exit
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shed.h"

static void die(const char *what)
{
    fprintf(stderr, "reports: %s: %s\n", what, strerror(errno));
    exit(2);
}

static FILE *open_in(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        die(path);
    return f;
}

static void *xmalloc(size_t n)
{
    void *p = shed_malloc(n);
    if (!p)
        die("shed_malloc");
    memset(p, 0x5a, n);
    return p;
}

/* The truth: every field of struct shed_stats, named as in shed.h. */
static void write_truth(const char *dir)
{
    struct shed_stats st;
    if (shed_stats(&st) != 0)
        die("shed_stats");
    FILE *f = open_in(dir, "truth.txt");
#define T(field) fprintf(f, #field " %llu\n", (unsigned long long)st.field)
    T(size); T(blocks_in_use); T(bytes_in_use); T(pools_in_use); T(pools_dirty);
    T(pools_releasing); T(pools_released); T(pools_untouched); T(arenas);
    T(pool_size); T(bytes_reserved); T(bytes_mapped); T(bytes_resident);
    T(release_syscalls); T(release_syscalls_app); T(release_batches);
    T(release_ranges); T(pages_released); T(release_failures); T(release_ns);
    T(pools_reused_dirty); T(large_allocs); T(errors);
#undef T
    for (int b = 0; b < SHED_FILL_BINS; b++)
        fprintf(f, "pools_by_fill.%d %zu\n", b, st.pools_by_fill[b]);
    for (int c = 0; c < SHED_NUM_CLASSES; c++) {
        fprintf(f, "class.%zu %zu %zu %zu %zu", st.classes[c].block_size,
                st.classes[c].blocks_in_use, st.classes[c].bytes_in_use,
                st.classes[c].pools_in_use, st.fill[c].blocks_per_pool);
        for (int b = 0; b < SHED_FILL_BINS; b++)
            fprintf(f, " %zu", st.fill[c].pools_by_fill[b]);
        fprintf(f, "\n");
    }
    fclose(f);
}

static void write_map(const char *dir)
{
    FILE *f = open_in(dir, "map.svg");
    if (shed_heap_map_svg(f) != 0)
        die("shed_heap_map_svg");
    if (fclose(f) != 0)
        die("map.svg");
}

/* Fill n pools of blocks of size bytes, one after the other. */
static void **fill_pools(size_t size, size_t n, size_t *count)
{
    size_t per = (size_t)sysconf(_SC_PAGESIZE) / size;
    void **p = malloc(n * per * sizeof *p);
    if (!p)
        die("malloc");
    for (size_t i = 0; i < n * per; i++)
        p[i] = xmalloc(size);
    *count = n * per;
    return p;
}

static int pattern(const char *dir)
{
    size_t per = (size_t)sysconf(_SC_PAGESIZE) / 64, n;
    /* class 64, in this fresh process: blocks come from one pool until it
     * is full, then the next: 3 full pools and r blocks in a fourth ... */
    size_t r = per / 20 ? per / 20 : 1, total = 3 * per + r;
    void **p = malloc(total * sizeof *p);
    if (!p)
        die("malloc");
    for (size_t i = 0; i < total; i++)
        p[i] = xmalloc(64);
    /* ... then half the first pool's blocks go: 2 full, 1 half, 1 under 10% */
    for (size_t i = 0; i < per / 2; i++)
        shed_free(p[i]);
    /* free and resident pools: class 512, freed at the end (release=manual
     * keeps them); released pools that were used: class 256, freed and
     * trimmed (before, as the 512s would take them again) */
    size_t nd;
    void **d = fill_pools(512, 8, &nd);
    void **q = fill_pools(256, 8, &n);
    for (size_t i = 0; i < n; i++)
        shed_free(q[i]);
    shed_trim();
    for (size_t i = 0; i < nd; i++)
        shed_free(d[i]);

    FILE *f = open_in(dir, "stats.txt");
    shed_stats_print(f);
    fclose(f);
    f = open_in(dir, "stats.json");
    shed_stats_print_json(f);
    fclose(f);
    write_map(dir);
    write_truth(dir);
    return 0;
}

static int big(const char *dir)
{
    size_t n;
    fill_pools(512, 130 * 64, &n);
    write_map(dir);
    write_truth(dir);
    return 0;
}

/* Lines in the file, or in stderr when it is a regular file ("-"). */
static size_t count_lines(const char *path, pid_t pid)
{
    char buf[65536], want[32];
    int fd = strcmp(path, "-") == 0 ? open("/proc/self/fd/2", O_RDONLY) : open(path, O_RDONLY);
    size_t lines = 0;
    ssize_t n;
    int len = snprintf(want, sizeof want, "{\"pid\":%d,", (int)pid);
    if (fd < 0)
        return 0;
    /* a line is counted when it starts with this pid's key and ends */
    char line[64];
    size_t at = 0;
    bool mine = false;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < n; i++) {
            if (at < sizeof line)
                line[at] = buf[i];
            if (++at == (size_t)len)
                mine = memcmp(line, want, (size_t)len) == 0;
            if (buf[i] == '\n') {
                lines += mine;
                at = 0;
                mine = false;
            }
        }
    close(fd);
    return lines;
}

/* Wait until path has n lines of pid's, 10 s at the most. */
static bool wait_lines(const char *path, pid_t pid, size_t n)
{
    for (int i = 0; i < 1000; i++) {
        if (count_lines(path, pid) >= n)
            return true;
        /* a malloc now and then, as a program would (the thread of a
         * forked parent restarts at its next malloc) */
        shed_free(xmalloc(32));
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "reports: %s has %zu lines of pid %d, not %zu, after 10 s\n", path,
            count_lines(path, pid), (int)pid, n);
    return false;
}

static int lines(const char *path, size_t n)
{
    void *keep = xmalloc(100);                /* the thread starts with pools */
    if (!wait_lines(path, getpid(), n))
        return 1;
    fflush(NULL);
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0)
        _exit(wait_lines(path, getpid(), 2) ? 0 : 1);
    size_t before = count_lines(path, getpid());
    bool ok = wait_lines(path, getpid(), before + n);
    int status;
    waitpid(child, &status, 0);
    shed_free(keep);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "reports: the child's wait failed\n");
        return 1;
    }
    return ok ? 0 : 1;
}

static bool stderr_has_warning(void)
{
    char buf[4096];
    int fd = open("/proc/self/fd/2", O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return false;
    buf[n] = 0;
    return strstr(buf, "shed: ") != NULL;
}

static int warned(void)
{
    void *keep = xmalloc(100);                /* the thread starts with pools */
    for (int i = 0; i < 1000 && !stderr_has_warning(); i++) {
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
    }
    struct timespec ts = { 0, 200000000 };
    nanosleep(&ts, NULL);
    shed_free(keep);
    return stderr_has_warning() ? 0 : 1;
}

/* A program that closes the descriptors it did not open (daemons do), then
 * opens files of its own: shed's copy of stderr, taken at its start, is
 * gone, and its number is one of these files'. */
static int closefds(const char *dir)
{
    shed_free(xmalloc(16));
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    for (int i = 0; i < 20; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/fd%d", dir, i);
        if (open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644) < 0)
            die(path);
    }
    return 0;
}

static int classes(void)
{
    for (size_t size = 16; size <= 512; size += 16)
        xmalloc(size);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "classes") == 0)
        return classes();
    if (argc == 3 && strcmp(argv[1], "closefds") == 0)
        return closefds(argv[2]);
    if (argc == 2 && strcmp(argv[1], "warned") == 0)
        return warned();
    if (argc == 3 && strcmp(argv[1], "pattern") == 0)
        return pattern(argv[2]);
    if (argc == 3 && strcmp(argv[1], "big") == 0)
        return big(argv[2]);
    if (argc == 4 && strcmp(argv[1], "lines") == 0)
        return lines(argv[2], strtoul(argv[3], NULL, 10));
    if (argc == 2 && strcmp(argv[1], "noop") == 0) {
        shed_free(xmalloc(16));
        return 0;
    }
    fprintf(stderr, "usage: reports pattern DIR | big DIR | lines FILE N | noop | classes | closefds DIR\n");
    return 2;
}

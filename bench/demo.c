/*
 * demo: the story shed exists for, in numbers.
 *
 * A program builds a large hash table of small objects (a node, a key string
 * and a value, with Python-like sizes), then drops most of it.  How much
 * memory does the kernel get back?  With release=off (CPython obmalloc's
 * behaviour) the freed pages stay resident; with inline or batched release
 * every page without a live block goes back.  Two drop patterns: keep every
 * 1000th object (survivors scattered over the whole heap: the case where
 * obmalloc, freeing only whole arenas, gives nothing back) and keep the
 * newest 5% (a cache of recent entries).
 *
 * Each (pattern, release mode) runs in its own child process, this program
 * re-executed with SHED_CONF set, so that every measurement starts from a
 * fresh process and RSS belongs to that run alone.  The child prints one
 * "result" line; the parent gathers the lines into a table.  The next child
 * starts when the previous one begins its 1 s wait, so only the waits
 * overlap.  A child that fails (a crash, a hang, a wrong survivor) shows as
 * a failed row: the demo goes on, and exits with status 1 at the end.
 *
 * With --out DIR, the runs of the first pattern also write, in DIR, the heap
 * map (shed_heap_map_svg) before the drop and 1 s after it, and what
 * shed_stats_print (as SHED_STATS=1 prints it) says 1 s after it; the
 * parent prints the batched run's and names the maps.
 *
 *   demo [--out DIR]     run everything, print the tables
 *   demo --child PATTERN one run, in the release mode SHED_CONF gives (and
 *                        the files in SHED_DEMO_OUT, when set)
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shed.h"

#define NOBJ      1000000u     /* objects built */
#define SETTLE_MS 1000         /* wait before the second RSS reading */
#define CHILD_TIMEOUT 30       /* seconds; a hung child is killed */

/* ---------------------------------------------------------------- child -- */

/* A node is 48 bytes, like a small PyObject; key and value are separate
 * blocks, as a dict entry's str and tuple are. */
struct obj {
    struct obj *next;          /* hash chain */
    char *key;
    unsigned char *val;
    uint64_t hash;
    uint32_t seq;              /* allocation order: what the patterns keep */
    uint32_t vsize;
    uint64_t spare;
};
_Static_assert(sizeof(struct obj) == 48, "a node is one 48-byte block");

struct table {
    struct obj **b;
    size_t mask;
};

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;          /* xorshift64: same sequence in every mode */
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Python-like sizes: 60% 16-64 B, 30% 65-256 B, 10% 257-512 B. */
static size_t value_size(void)
{
    uint64_t r = next_rand();
    unsigned pct = r % 100;
    r >>= 8;
    if (pct < 60)
        return 16 + r % 49;
    if (pct < 90)
        return 65 + r % 192;
    return 257 + r % 256;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;      /* FNV-1a */
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void *xmalloc(size_t n)
{
    void *p = shed_malloc(n);
    if (!p) {
        fprintf(stderr, "demo: out of memory\n");
        exit(1);
    }
    return p;
}

static void table_init(struct table *t, size_t n)
{
    size_t size = 16;
    while (size < n)
        size <<= 1;
    t->b = calloc(size, sizeof *t->b);         /* large: glibc's, not shed's */
    if (!t->b) {
        fprintf(stderr, "demo: out of memory\n");
        exit(1);
    }
    t->mask = size - 1;
}

static void table_put(struct table *t, struct obj *o)
{
    struct obj **slot = &t->b[o->hash & t->mask];
    o->next = *slot;
    *slot = o;
}

static struct obj *make_obj(uint32_t seq)
{
    char key[64];
    /* 10..60 characters, like identifiers and short text */
    int len = snprintf(key, sizeof key, "user:%u:%.*s", seq,
                       (int)(next_rand() % 48), "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV");
    struct obj *o = xmalloc(sizeof *o);
    o->key = memcpy(xmalloc((size_t)len + 1), key, (size_t)len + 1);
    o->vsize = (uint32_t)value_size();
    o->val = xmalloc(o->vsize);
    memset(o->val, (int)(seq & 0xff), o->vsize);
    o->hash = hash_str(key);
    o->seq = seq;
    return o;
}

static void free_obj(struct obj *o)
{
    shed_free(o->val);
    shed_free(o->key);
    shed_free(o);
}

/* With SHED_DEMO_OUT set: the file DIR/PATTERN-MODE-WHAT, opened for
 * writing; NULL otherwise (or when it cannot be opened: said on stderr). */
static FILE *out_file(const char *pattern, const char *what)
{
    const char *dir = getenv("SHED_DEMO_OUT"), *conf = getenv("SHED_CONF");
    const char *mode = conf && strncmp(conf, "release=", 8) == 0 ? conf + 8 : "default";
    char path[4096];
    if (!dir)
        return NULL;
    snprintf(path, sizeof path, "%s/%s-%s-%s", dir, pattern, mode, what);
    FILE *f = fopen(path, "w");
    if (!f)
        fprintf(stderr, "demo: %s: %s\n", path, strerror(errno));
    return f;
}

static void write_map(const char *pattern, const char *what)
{
    FILE *f = out_file(pattern, what);
    if (f && shed_heap_map_svg(f) != 0)
        fprintf(stderr, "demo: shed_heap_map_svg: %s\n", strerror(errno));
    if (f)
        fclose(f);
}

/* The drop patterns: which objects survive. */
struct pattern {
    const char *name, *what;
    int (*keep)(uint32_t seq);
};

static int keep_every_1000th(uint32_t seq) { return seq % 1000 == 0; }
static int keep_newest_5pct(uint32_t seq) { return seq >= NOBJ - NOBJ / 20; }

static const struct pattern patterns[] = {
    { "every1000", "keep every 1000th object (a few survivors scattered over the whole heap)",
      keep_every_1000th },
    { "newest5", "keep the newest 5% (a cache that keeps its recent entries)",
      keep_newest_5pct },
};
#define NPATTERNS (sizeof patterns / sizeof patterns[0])

static int cmp_uptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* Distinct pages holding a live block: the least RSS for these survivors
 * that any allocator could reach without moving them. */
static size_t survivor_pages(const struct table *t, size_t nsurv)
{
    uintptr_t *pg = malloc(3 * nsurv * sizeof *pg);
    size_t n = 0, distinct = 0, ps = (size_t)sysconf(_SC_PAGESIZE);
    if (!pg)
        return 0;
    for (size_t i = 0; i <= t->mask; i++)
        for (struct obj *o = t->b[i]; o; o = o->next) {
            pg[n++] = (uintptr_t)o / ps;
            pg[n++] = (uintptr_t)o->key / ps;
            pg[n++] = (uintptr_t)o->val / ps;
        }
    qsort(pg, n, sizeof *pg, cmp_uptr);
    for (size_t i = 0; i < n; i++)
        distinct += i == 0 || pg[i] != pg[i - 1];
    free(pg);
    return distinct;
}

static int run_child(const char *pname)
{
    const struct pattern *pat = NULL;
    for (size_t i = 0; i < NPATTERNS; i++)
        if (strcmp(patterns[i].name, pname) == 0)
            pat = &patterns[i];
    if (!pat) {
        fprintf(stderr, "demo: unknown pattern %s\n", pname);
        return 2;
    }
    long base = rss_kb();

    /* Build. */
    struct table t;
    table_init(&t, NOBJ);
    for (uint32_t i = 0; i < NOBJ; i++)
        table_put(&t, make_obj(i));
    struct shed_stats st;
    shed_stats(&st);
    size_t built_bytes = st.bytes_in_use;
    long built = rss_kb();
    bool maps = pat == &patterns[0];
    if (maps)
        write_map(pat->name, "before.svg");

    /* Drop: walk the table in hash order (so frees come in no particular
     * address order, as in a real program), then shrink the table for the
     * survivors, as a hash table does when it is rebuilt. */
    double t0 = now_ms();
    size_t nsurv = 0;
    struct obj *keep = NULL;
    for (size_t i = 0; i <= t.mask; i++)
        for (struct obj *o = t.b[i], *next; o; o = next) {
            next = o->next;
            if (pat->keep(o->seq)) {
                o->next = keep;
                keep = o;
                nsurv++;
            } else {
                free_obj(o);
            }
        }
    free(t.b);
    table_init(&t, 2 * nsurv);
    for (struct obj *o = keep, *next; o; o = next) {
        next = o->next;
        table_put(&t, o);
    }
    double drop_ms = now_ms() - t0;
    long after = rss_kb();

    /* The survivors must be intact. */
    size_t checked = 0;
    for (size_t i = 0; i <= t.mask; i++)
        for (struct obj *o = t.b[i]; o; o = o->next) {
            char want[32];
            int n = snprintf(want, sizeof want, "user:%u:", o->seq);
            if (!pat->keep(o->seq) || strncmp(o->key, want, (size_t)n) != 0 ||
                o->hash != hash_str(o->key)) {
                fprintf(stderr, "demo: survivor %u damaged\n", o->seq);
                return 1;
            }
            for (uint32_t k = 0; k < o->vsize; k++)
                if (o->val[k] != (o->seq & 0xff)) {
                    fprintf(stderr, "demo: value of survivor %u damaged\n", o->seq);
                    return 1;
                }
            checked++;
        }
    if (checked != nsurv) {
        fprintf(stderr, "demo: %zu survivors found, %zu expected\n", checked, nsurv);
        return 1;
    }

    /* Tell the parent it may start the next run while this one waits. */
    printf("settling\n");
    fflush(stdout);
    struct timespec settle = { SETTLE_MS / 1000, (SETTLE_MS % 1000) * 1000000L };
    nanosleep(&settle, NULL);
    long later = rss_kb();
    shed_stats(&st);
    if (maps) {
        write_map(pat->name, "after.svg");
        FILE *f = out_file(pat->name, "stats.txt");
        shed_stats_print(f);
        if (f)
            fclose(f);
    }
    printf("result base=%ld built=%ld after=%ld later=%ld drop_ms=%.1f "
           "built_bytes=%zu live=%zu survivors=%zu pages=%zu pagesize=%zu "
           "resident=%zu calls=%llu\n",
           base, built, after, later, drop_ms, built_bytes, st.bytes_in_use,
           nsurv, survivor_pages(&t, nsurv), st.pool_size, st.bytes_resident,
           (unsigned long long)st.release_syscalls);
    return 0;
}

/* --------------------------------------------------------------- parent -- */

struct run {
    const char *pattern, *mode;
    pid_t pid;
    FILE *in;                  /* the child's stdout and stderr */
    char msg[160];             /* its first line that is not ours */
    int ok;
    char why[256];             /* when !ok */
    long base, built, after, later;
    double drop_ms;
    size_t built_bytes, live, survivors, pages, pagesize, resident;
    unsigned long long calls;
};

static void start(const char *self, struct run *r)
{
    int fd[2];
    if (pipe(fd) != 0) {
        snprintf(r->why, sizeof r->why, "pipe: %s", strerror(errno));
        return;
    }
    fflush(stdout);
    if ((r->pid = fork()) < 0) {
        snprintf(r->why, sizeof r->why, "fork: %s", strerror(errno));
        close(fd[0]);
        close(fd[1]);
        return;
    }
    if (r->pid == 0) {
        char conf[64];
        snprintf(conf, sizeof conf, "release=%s", r->mode);
        setenv("SHED_CONF", conf, 1);
        dup2(fd[1], 1);
        dup2(fd[1], 2);
        close(fd[0]);
        close(fd[1]);
        alarm(CHILD_TIMEOUT);  /* survives exec: a hang ends as SIGALRM */
        execl(self, self, "--child", r->pattern, (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", self, strerror(errno));
        _exit(127);
    }
    close(fd[1]);
    r->in = fdopen(fd[0], "r");
}

/* Read the child's lines until it says "settling" (or ends). */
static void read_until_settling(struct run *r)
{
    char line[512];
    while (r->in && fgets(line, sizeof line, r->in)) {
        if (strcmp(line, "settling\n") == 0)
            return;
        if (sscanf(line, "result base=%ld built=%ld after=%ld later=%ld drop_ms=%lf "
                   "built_bytes=%zu live=%zu survivors=%zu pages=%zu pagesize=%zu "
                   "resident=%zu calls=%llu",
                   &r->base, &r->built, &r->after, &r->later, &r->drop_ms,
                   &r->built_bytes, &r->live, &r->survivors, &r->pages,
                   &r->pagesize, &r->resident, &r->calls) == 12) {
            r->ok = 1;
        } else if (!r->msg[0]) {
            line[strcspn(line, "\n")] = 0;
            line[sizeof r->msg - 1] = 0;      /* keep the first line, cut */
            memcpy(r->msg, line, sizeof r->msg);
        }
    }
}

static void finish(struct run *r)
{
    if (r->pid <= 0)
        return;                /* never started: why says so */
    read_until_settling(r);    /* then the rest, up to the end */
    read_until_settling(r);
    if (r->in)
        fclose(r->in);
    int status;
    while (waitpid(r->pid, &status, 0) < 0 && errno == EINTR)
        ;
    const char *sep = r->msg[0] ? ": " : "";
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        snprintf(r->why, sizeof r->why, "%s%s%s",
                 sig == SIGALRM ? "hung, killed after the timeout" : strsignal(sig), sep, r->msg);
        r->ok = 0;
    } else if (WEXITSTATUS(status) != 0 || !r->ok) {
        snprintf(r->why, sizeof r->why, "exit status %d%s%s", WEXITSTATUS(status), sep, r->msg);
        r->ok = 0;
    }
}

static double mib(double bytes) { return bytes / 1048576; }

static const char *modes[] = { "off", "inline", "batched" };
enum { NMODES = 3 };

/* One pattern's table; returns the number of failed runs. */
static int print_table(const struct pattern *pat, const struct run *runs)
{
    const struct run *any = NULL;
    int failed = 0;
    for (int m = NMODES - 1; m >= 0; m--)
        if (runs[m].ok)
            any = &runs[m];
    printf("\n%s\n", pat->what);
    if (any)
        printf("  built: %.0f MiB of blocks, RSS %.0f MiB; then %zu objects survive\n",
               mib(any->built_bytes), mib(any->built * 1024.0), any->survivors);
    printf("  %-8s %10s %8s %13s %13s %9s\n",
           "release", "live", "drop", "RSS at drop", "RSS +1 s", "madvise");
    for (int m = 0; m < NMODES; m++) {
        const struct run *r = &runs[m];
        if (!r->ok) {
            printf("  %-8s FAILED: %s\n", modes[m], r->why);
            failed++;
            continue;
        }
        printf("  %-8s %6.2f MiB %5.0f ms %9.1f MiB %9.1f MiB %9llu\n",
               modes[m], mib(r->live), r->drop_ms, mib(r->after * 1024.0),
               mib(r->later * 1024.0), r->calls);
        if (r->msg[0])
            printf("  %-8s (said: %s)\n", "", r->msg);
    }
    if (any)
        printf("  %-8s %10s %8s %13s %9.1f MiB\n", "bound", "", "", "",
               mib(any->pages * (double)any->pagesize + any->base * 1024.0));
    return failed;
}

/* What the batched run of the first pattern wrote: its stats, and where
 * the maps are. */
static void show_outputs(const char *dir)
{
    char path[4096], line[256];
    snprintf(path, sizeof path, "%s/%s-batched-stats.txt", dir, patterns[0].name);
    FILE *f = fopen(path, "r");
    if (f) {
        printf("\nWhat shed_stats_print (SHED_STATS=1) says 1 s after the drop, with one object\n"
               "in 1000 kept and release=batched (%s):\n", path);
        while (fgets(line, sizeof line, f))
            fputs(line, stdout);
        fclose(f);
    }
    printf("\nHeap maps (shed_heap_map_svg) of that pattern before the drop and 1 s after, for\n"
           "each mode: %s/%s-{off,inline,batched}-{before,after}.svg\n", dir, patterns[0].name);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--child") == 0)
        return run_child(argv[2]);
    const char *out = argc == 3 && strcmp(argv[1], "--out") == 0 ? argv[2] : NULL;
    if (argc != 1 && !out) {
        fprintf(stderr, "usage: %s [--out DIR]\n", argv[0]);
        return 2;
    }
    if (out)
        setenv("SHED_DEMO_OUT", out, 1);     /* the children write there */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        perror("readlink /proc/self/exe");
        return 1;
    }
    self[n] = 0;

    printf("shed demo: a program builds a hash table of %u objects (3 small blocks each:\n"
           "a 48-byte node, a key string, a value of 16..512 bytes), then drops most of them.\n"
           "How much of its memory does the kernel get back?  Each row is a fresh process\n"
           "run with SHED_CONF=release=<mode>:\n"
           "  live     bytes the survivors occupy (shed_stats bytes_in_use)\n"
           "  drop     time the program spent freeing (in its own thread)\n"
           "  RSS      the process's resident memory (VmRSS) right after the drop, and %.0f s later\n"
           "  madvise  release system calls made (from free, or from shed's thread)\n"
           "  bound    pages holding a live block, plus the program's RSS before it built:\n"
           "           the least an allocator could keep without moving the survivors\n",
           NOBJ, SETTLE_MS / 1000.0);

    /* Each run starts when the previous one begins its wait, so the waits
     * overlap and only one run works at a time. */
    struct run runs[NPATTERNS][NMODES];
    memset(runs, 0, sizeof runs);
    for (size_t p = 0; p < NPATTERNS; p++)
        for (int m = 0; m < NMODES; m++) {
            struct run *r = &runs[p][m];
            r->pattern = patterns[p].name;
            r->mode = modes[m];
            start(self, r);
            read_until_settling(r);
        }
    int failed = 0;
    for (size_t p = 0; p < NPATTERNS; p++) {
        for (int m = 0; m < NMODES; m++)
            finish(&runs[p][m]);
        failed += print_table(&patterns[p], runs[p]);
    }

    /* The one sentence, from the first pattern's numbers. */
    const struct run *off = &runs[0][0], *inl = &runs[0][1], *bat = &runs[0][2];
    if (off->ok && inl->ok && bat->ok)
        printf("\nWith one object in 1000 kept, release=off (CPython obmalloc's behaviour) keeps\n"
               "%.0f MiB resident for %.1f MiB of live data; inline and batched give back all but\n"
               "%.0f MiB, batched from its own thread with %llu madvise calls instead of %llu,\n"
               "so the program's drop takes %.0f ms instead of inline's %.0f ms (off: %.0f ms).\n",
               mib(off->later * 1024.0), mib(off->live), mib(bat->later * 1024.0),
               bat->calls, inl->calls, bat->drop_ms, inl->drop_ms, off->drop_ms);
    if (bat->ok)               /* why RSS stays above the bound */
        printf("(Above the bound: %.1f MiB outside the pools, mostly shed's pool metadata.)\n",
               mib((bat->later - bat->base) * 1024.0 - bat->resident));
    if (out)
        show_outputs(out);
    if (failed)
        printf("\n%d run(s) failed: see above.\n", failed);
    return failed ? 1 : 0;
}

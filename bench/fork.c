/*
 * bench/fork: the memory a pre-fork server's workers keep private.
 *
 *   fork [--freeze] [--free-first] [load_mb [children [steps [ws]]]]
 *        defaults: 150 MB, 4 children, 2,000,000 steps, 20,000-block working set
 *        --free-first: the child frees its 10% of the parent's blocks before
 *        the churn (then the churn can fill those holes: what freeze is for)
 *
 * The parent allocates about load_mb of small blocks with Python-like sizes
 * (the load phase: a server importing its code and data), optionally calls
 * shed_freeze() (--freeze; found with dlsym, so only under shed), then forks
 * the children.  Each child reads every block of the parent (and checks its
 * content), runs `steps` churn steps on its own working set of `ws` blocks
 * (free a random slot's block, allocate a new one), frees a random 10% of the
 * parent's blocks, and then, once every child has done so, reads its
 * Private_Dirty and Pss from /proc/self/smaps_rollup.  The parent prints the
 * mean per child.  It calls plain malloc/free, so that any allocator can be
 * LD_PRELOADed (see bench/fork.sh).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXCHILD 64

struct shared {
    pthread_barrier_t done, measured;
    struct { long private_dirty, pss, rss; int ok; } child[MAXCHILD];
};

static uint64_t rnd_state = 0x2545f4914f6cdd1dull;
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* CPython-like object sizes: many 32..64-byte objects (ints, small tuples,
 * short strings), fewer dicts and lists, a tail up to 512 bytes. */
static size_t obj_size(uint64_t *s)
{
    uint64_t x = rnd(s) % 100;
    if (x < 30)
        return 24 + rnd(s) % 25;          /* 24..48 */
    if (x < 60)
        return 48 + rnd(s) % 33;          /* 48..80 */
    if (x < 80)
        return 80 + rnd(s) % 97;          /* 80..176 */
    if (x < 95)
        return 176 + rnd(s) % 161;        /* 176..336 */
    return 336 + rnd(s) % 177;            /* 336..512 */
}

static void *map(size_t bytes)
{
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    return m;
}

static long rollup_kb(const char *field)
{
    int fd = open("/proc/self/smaps_rollup", O_RDONLY);
    char buf[4096];
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    size_t fl = strlen(field);
    for (char *s = buf; s && *s; s = strchr(s, '\n') ? strchr(s, '\n') + 1 : NULL)
        if (strncmp(s, field, fl) == 0 && s[fl] == ':')
            return atol(s + fl + 1);
    return -1;
}

static unsigned char byte_of(size_t i, size_t k)
{
    return (unsigned char)(i * 31 + k * 7 + 1);
}

/* A random 10% of the parent's blocks (a different 10% in each child). */
static void free_parents(void **b, size_t n, int c)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t h = (i + (uint64_t)c * 1000003u) * 0x9e3779b97f4a7c15ull;
        if ((h >> 32) % 10 == 0)
            free(b[i]);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    int freeze = 0, free_first = 0, a = 1;
    for (; a < argc && argv[a][0] == '-'; a++) {
        if (strcmp(argv[a], "--freeze") == 0)
            freeze = 1;
        else if (strcmp(argv[a], "--free-first") == 0)
            free_first = 1;
        else
            break;
    }
    double load_mb = a < argc ? atof(argv[a++]) : 150;
    int nchild = a < argc ? atoi(argv[a++]) : 4;
    long steps = a < argc ? atol(argv[a++]) : 2000000;
    size_t ws = a < argc ? (size_t)atol(argv[a++]) : 20000;
    if (nchild < 1 || nchild > MAXCHILD || ws < 1 || load_mb <= 0) {
        fprintf(stderr, "usage: fork [--freeze] [--free-first] [load_mb [children [steps [ws]]]]\n");
        return 2;
    }

    /* The load phase.  The bookkeeping is mmap'd: not the allocator's. */
    size_t want = (size_t)(load_mb * 1048576), cap = want / 24 + 16, n = 0, bytes = 0;
    void **b = map(cap * sizeof *b);
    uint16_t *sz = map(cap * sizeof *sz);
    uint64_t s = rnd_state;
    double t0 = now_s();
    while (bytes < want && n < cap) {
        size_t z = obj_size(&s);
        unsigned char *p = malloc(z);
        if (!p) {
            perror("malloc");
            return 2;
        }
        for (size_t k = 0; k < z; k++)
            p[k] = byte_of(n, k);
        b[n] = p, sz[n] = (uint16_t)z, n++;
        bytes += z;
    }
    double t_load = now_s() - t0;
    if (freeze) {
        void (*fr)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "shed_freeze");
        if (!fr) {
            fprintf(stderr, "fork: --freeze needs shed (no shed_freeze here)\n");
            return 2;
        }
        fr();
    }
    long parent_rss = rollup_kb("Rss");

    struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return 2;
    pthread_barrierattr_t ba;
    pthread_barrierattr_init(&ba);
    pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED);
    pthread_barrier_init(&sh->done, &ba, (unsigned)nchild + 1);
    pthread_barrier_init(&sh->measured, &ba, (unsigned)nchild + 1);

    fflush(NULL);
    t0 = now_s();
    pid_t pids[MAXCHILD];
    for (int c = 0; c < nchild; c++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid > 0) {
            pids[c] = pid;
            continue;
        }
        /* the child */
        int ok = 1;
        uint64_t cs = 0x1234567ull + (uint64_t)c * 0x9e3779b97f4a7c15ull;
        for (size_t i = 0; i < n; i++) {           /* read every block */
            const unsigned char *p = b[i];
            for (size_t k = 0; k < sz[i]; k++)
                if (p[k] != byte_of(i, k))
                    ok = 0;
        }
        if (free_first)
            free_parents(b, n, c);
        void **w = map(ws * sizeof *w);
        for (size_t i = 0; i < ws; i++) {
            size_t z = obj_size(&cs);
            if (!(w[i] = malloc(z)))
                ok = 0;
            else
                memset(w[i], (int)i, z);
        }
        for (long st = 0; st < steps; st++) {      /* churn */
            size_t i = rnd(&cs) % ws, z = obj_size(&cs);
            free(w[i]);
            if (!(w[i] = malloc(z)))
                ok = 0;
            else
                memset(w[i], (int)st, z < 64 ? z : 64);
        }
        if (!free_first)
            free_parents(b, n, c);
        pthread_barrier_wait(&sh->done);           /* every child is done */
        sh->child[c].private_dirty = rollup_kb("Private_Dirty");
        sh->child[c].pss = rollup_kb("Pss");
        sh->child[c].rss = rollup_kb("Rss");
        sh->child[c].ok = ok;
        pthread_barrier_wait(&sh->measured);
        _exit(ok ? 0 : 1);
    }
    pthread_barrier_wait(&sh->done);
    double t_children = now_s() - t0;
    pthread_barrier_wait(&sh->measured);
    int bad = 0;
    for (int c = 0; c < nchild; c++) {
        int st;
        if (waitpid(pids[c], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0 ||
            !sh->child[c].ok || sh->child[c].private_dirty < 0)
            bad = 1;
    }
    double pd = 0, pss = 0, rss = 0;
    for (int c = 0; c < nchild; c++) {
        pd += (double)sh->child[c].private_dirty / 1024 / nchild;
        pss += (double)sh->child[c].pss / 1024 / nchild;
        rss += (double)sh->child[c].rss / 1024 / nchild;
    }
    printf("fork: blocks=%zu load_mb=%.1f freeze=%d free_first=%d children=%d steps=%ld ws=%zu "
           "parent_rss_mb=%.1f child_private_dirty_mb=%.2f child_pss_mb=%.2f "
           "child_rss_mb=%.1f load_s=%.2f children_s=%.2f%s\n",
           n, (double)bytes / 1048576, freeze, free_first, nchild, steps, ws, (double)parent_rss / 1024,
           pd, pss, rss, t_load, t_children, bad ? " FAILED" : "");
    return bad;
}

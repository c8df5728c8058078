/*
 * The standard allocation calls, as served by LD_PRELOAD=libshed.so, keep
 * glibc's documented semantics.  Run only under the preload: the program
 * finds shed_stats with dlsym and fails when it is absent, and uses the
 * stats to check that small blocks really come from shed's pools (and that
 * what pools cannot serve goes to glibc).
 *
 * Plain C with a CHECK macro rather than cmocka: cmocka allocates between
 * the calls under test, which would blur the exact stats deltas.
 */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <shed.h>

extern void __libc_free(void *);

static int failures;

#define CHECK(cond, ...)                                                \
    do {                                                                \
        if (!(cond) && ++failures <= 20) { /* the first 20 say enough */ \
            fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                               \
            fputc('\n', stderr);                                        \
        }                                                               \
    } while (0)

static int (*stats_fn)(struct shed_stats *, size_t);

/* Read through a volatile so that the compiler neither warns about nor folds
 * the impossible sizes. */
static volatile size_t size_max = SIZE_MAX;

static struct shed_stats stats(void)
{
    struct shed_stats st;
    stats_fn(&st, sizeof st);
    for (int c = 0; c < SHED_MEDIUM_CLASSES; c++)   /* shed's blocks, all */
        st.blocks_in_use += st.medium[c].blocks_in_use;
    return st;
}

/* The medium classes, as shed.7 lists them. */
static const size_t medium_sizes[SHED_MEDIUM_CLASSES] = {
    640, 768, 896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096,
    5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384, 20480, 24576, 28672, 32768,
    40960, 49152, 57344, 65536, 81920, 98304, 114688, 131072,
};

/* The medium class serving size bytes aligned to align, 0 for none. */
static size_t medium_block(size_t align, size_t size)
{
    for (int c = 0; c < SHED_MEDIUM_CLASSES; c++)
        if (medium_sizes[c] >= size && medium_sizes[c] % align == 0)
            return medium_sizes[c];
    return 0;
}

/* Would shed serve this aligned request from a pool or a span (the rules
 * in shed.7)? */
static int from_pool(size_t align, size_t size)
{
    size_t a = align < SHED_CLASS_STEP ? SHED_CLASS_STEP : align;
    size_t need = size ? size : 1;
    if (a <= SHED_MAX_BLOCK && ((need + a - 1) & ~(a - 1)) <= SHED_MAX_BLOCK)
        return 1;
    return medium_block(a, need) != 0;
}

/* Check one aligned block: alignment, usable size, and where it came from
 * (the stats delta across the call, taken by the caller). */
static void check_block(const char *call, void *p, size_t align, size_t size,
                        const struct shed_stats *before)
{
    struct shed_stats after = stats();
    CHECK(p != NULL, "%s(%zu, %zu) failed", call, align, size);
    if (!p)
        return;
    CHECK((uintptr_t)p % align == 0, "%s(%zu, %zu) = %p misaligned", call, align, size, p);
    CHECK(malloc_usable_size(p) >= size, "%s(%zu, %zu): usable %zu", call, align, size,
          malloc_usable_size(p));
    size_t pooled = after.blocks_in_use - before->blocks_in_use;
    uint64_t large = after.large_allocs - before->large_allocs;
    if (from_pool(align, size))
        CHECK(pooled == 1 && large == 0, "%s(%zu, %zu): expected a pool block, "
              "got %zu blocks and %llu large", call, align, size, pooled,
              (unsigned long long)large);
    else
        CHECK(pooled == 0 && large == 1, "%s(%zu, %zu): expected a glibc block, "
              "got %zu blocks and %llu large", call, align, size, pooled,
              (unsigned long long)large);
}

/* posix_memalign, aligned_alloc and memalign at every valid alignment from
 * 8 to 65536, sizes around each.  All blocks of one alignment stay live
 * while their whole usable size is written, so overlaps show up. */
static void test_aligned(void)
{
    enum { PER = 3 * 6 };
    for (size_t a = sizeof(void *); a <= 65536; a <<= 1) {
        const size_t sizes[6] = { 1, a - 1, a, a + 1, 2 * a, 0 };
        void *blocks[PER];
        int n = 0;
        for (int i = 0; i < 6; i++) {
            size_t s = sizes[i];
            struct shed_stats before = stats();
            void *p = NULL;
            int rc = posix_memalign(&p, a, s);
            CHECK(rc == 0, "posix_memalign(%zu, %zu) = %d", a, s, rc);
            check_block("posix_memalign", p, a, s, &before);
            blocks[n++] = p;

            before = stats();
            p = aligned_alloc(a, s);
            check_block("aligned_alloc", p, a, s, &before);
            blocks[n++] = p;

            before = stats();
            p = memalign(a, s);
            check_block("memalign", p, a, s, &before);
            blocks[n++] = p;
        }
        for (int i = 0; i < n; i++)
            if (blocks[i])
                memset(blocks[i], i + 1, malloc_usable_size(blocks[i]));
        for (int i = 0; i < n; i++) {
            if (!blocks[i])
                continue;
            const unsigned char *c = blocks[i];
            size_t u = malloc_usable_size(blocks[i]), j = 0;
            while (j < u && c[j] == (unsigned char)(i + 1))
                j++;
            CHECK(j == u, "alignment %zu block %d: byte %zu of %zu overwritten", a, i, j, u);
        }
        struct shed_stats before = stats();
        for (int i = 0; i < n; i++)
            free(blocks[i]);
        struct shed_stats after = stats();
        size_t pooled = 0;
        for (int i = 0; i < 6; i++)
            pooled += 3 * (size_t)from_pool(a, sizes[i]);
        CHECK(before.blocks_in_use - after.blocks_in_use == pooled,
              "alignment %zu: freeing gave back %zu pool blocks, expected %zu", a,
              before.blocks_in_use - after.blocks_in_use, pooled);
    }
}

static void test_bad_alignment(void)
{
    const size_t bad[] = { 0, 1, 2, 3, 4, 12, 24, 48, 100, 65535, SIZE_MAX };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *p = &p;                       /* must be left unchanged */
        errno = 1234;
        int rc = posix_memalign(&p, bad[i], 16);
        CHECK(rc == EINVAL, "posix_memalign(%zu) = %d, expected EINVAL", bad[i], rc);
        CHECK(p == &p, "posix_memalign(%zu) wrote the result on failure", bad[i]);
        CHECK(errno == 1234, "posix_memalign(%zu) changed errno", bad[i]);
    }
    /* memalign rounds an alignment that is not a power of two up to one. */
    const size_t odd[][2] = { { 24, 32 }, { 48, 64 }, { 100, 128 }, { 3000, 4096 } };
    for (int i = 0; i < 4; i++) {
        void *p = memalign(odd[i][0], 40);
        CHECK(p && (uintptr_t)p % odd[i][1] == 0, "memalign(%zu, 40) = %p", odd[i][0], p);
        free(p);
    }
}

/* Alignments that are not powers of two: each call does what the glibc
 * underneath does with it (glibc's own functions, found in libc.so.6 with
 * dlsym, tell): up to 2.37 aligned_alloc is memalign, rounding up; from
 * 2.38 on it fails with EINVAL.  A block has the alignment glibc's would
 * (the next power of two) and the size asked for. */
static void test_odd_alignment_as_glibc(void)
{
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    CHECK(libc != NULL, "libc.so.6 not loaded");
    if (!libc)
        return;
    typedef void *(*align_fn)(size_t, size_t);
    struct { const char *name; align_fn ours; } calls[] = {
        { "aligned_alloc", aligned_alloc }, { "memalign", memalign } };
    const size_t odd[] = { 0, 1, 2, 3, 5, 6, 12, 24, 48, 100, 1000, 3000, 4097 };
    for (int c = 0; c < 2; c++) {
        align_fn theirs = (align_fn)dlsym(libc, calls[c].name);
        CHECK(theirs && theirs != calls[c].ours, "glibc's %s not found", calls[c].name);
        if (!theirs || theirs == calls[c].ours)
            continue;
        for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
            errno = 0;
            void *g = theirs(odd[i], 100);
            int gerr = errno;
            if (g)
                __libc_free(g);
            errno = 0;
            void *p = calls[c].ours(odd[i], 100);
            int perr = errno;
            size_t want = 1;
            while (want < odd[i])
                want <<= 1;
            CHECK(!p == !g, "%s(%zu, 100) = %p where glibc gives %p", calls[c].name, odd[i],
                  p, g);
            CHECK(p || perr == gerr, "%s(%zu, 100): errno %d where glibc sets %d",
                  calls[c].name, odd[i], perr, gerr);
            CHECK(!p || ((uintptr_t)p % want == 0 && malloc_usable_size(p) >= 100),
                  "%s(%zu, 100) = %p: not aligned to %zu or too small", calls[c].name, odd[i],
                  p, want);
            free(p);
        }
    }
    /* posix_memalign rejects them in every glibc, errno untouched. */
    int (*their_pm)(void **, size_t, size_t) =
        (int (*)(void **, size_t, size_t))dlsym(libc, "posix_memalign");
    for (size_t i = 0; their_pm && i < sizeof odd / sizeof odd[0]; i++) {
        void *g = NULL, *p = NULL;
        int grc = their_pm(&g, odd[i], 100), prc = posix_memalign(&p, odd[i], 100);
        if (!grc)
            __libc_free(g);
        CHECK(prc == grc, "posix_memalign(%zu, 100) = %d where glibc gives %d", odd[i], prc,
              grc);
        if (!prc)
            free(p);
    }
}

static void test_page_aligned(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t sizes[] = { 0, 1, 100, page - 1, page, page + 1 };
    for (int i = 0; i < 6; i++) {
        size_t s = sizes[i];
        void *p = valloc(s);
        CHECK(p && (uintptr_t)p % page == 0, "valloc(%zu) = %p", s, p);
        CHECK(p && malloc_usable_size(p) >= s, "valloc(%zu): usable too small", s);
        if (p)
            memset(p, 0x5a, s);
        free(p);

        /* pvalloc rounds the size up to whole pages, at least one. */
        size_t want = s ? (s + page - 1) / page * page : page;
        p = pvalloc(s);
        CHECK(p && (uintptr_t)p % page == 0, "pvalloc(%zu) = %p", s, p);
        CHECK(p && malloc_usable_size(p) >= want, "pvalloc(%zu): usable %zu < %zu", s,
              p ? malloc_usable_size(p) : 0, want);
        if (p)
            memset(p, 0xa5, want);
        free(p);
    }
}

static void test_malloc_zero(void)
{
    enum { N = 100 };
    void *p[N];
    struct shed_stats before = stats();
    for (int i = 0; i < N; i++) {
        p[i] = malloc(0);
        CHECK(p[i] != NULL, "malloc(0) returned NULL");
    }
    struct shed_stats mid = stats();
    CHECK(mid.blocks_in_use - before.blocks_in_use == N,
          "malloc(0) x %d made %zu shed blocks", N, mid.blocks_in_use - before.blocks_in_use);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < i; j++)
            CHECK(p[i] != p[j], "malloc(0) returned %p twice", p[i]);
    for (int i = 0; i < N; i++)
        free(p[i]);
    CHECK(stats().blocks_in_use == before.blocks_in_use, "malloc(0) blocks not freed");
}

static void test_realloc_edges(void)
{
    const size_t SMAX = size_max;
    struct shed_stats before = stats();
    char *p = realloc(NULL, 100);               /* = malloc(100) */
    CHECK(p != NULL && malloc_usable_size(p) >= 100, "realloc(NULL, 100)");
    CHECK(stats().blocks_in_use == before.blocks_in_use + 1, "realloc(NULL, 100) not a shed block");
    memset(p, 'x', 100);

    /* A failed realloc leaves the block as it was.  keep hides p from
     * GCC's use-after-free warning, which cannot know the call failed. */
    char *volatile keep = p;
    errno = 0;
    CHECK(realloc(p, SMAX) == NULL && errno == ENOMEM, "realloc(p, SMAX)");
    errno = 0;
    CHECK(reallocarray(p, SMAX / 2, 3) == NULL && errno == ENOMEM, "reallocarray overflow");
    p = keep;
    int intact = 1;
    for (int i = 0; i < 100; i++)
        intact &= p[i] == 'x';
    CHECK(intact, "failed realloc or reallocarray changed the block");

    char *q = reallocarray(p, 20, 10);          /* 200 bytes: still a pool block */
    CHECK(q && q[0] == 'x' && q[99] == 'x', "reallocarray(p, 20, 10) lost the contents");
    CHECK(q && malloc_usable_size(q) >= 200, "reallocarray(p, 20, 10): usable too small");
    if (q)
        p = q;

    CHECK(realloc(p, 0) == NULL, "realloc(p, 0) returned a block");   /* frees p */
    CHECK(stats().blocks_in_use == before.blocks_in_use, "realloc(p, 0) did not free");
}

static void test_overflow(void)
{
    const size_t SMAX = size_max;
    errno = 0;
    CHECK(malloc(SMAX) == NULL && errno == ENOMEM, "malloc(SMAX)");
    errno = 0;
    CHECK(malloc(SMAX - 4096) == NULL && errno == ENOMEM, "malloc(SMAX - 4096)");
    errno = 0;
    CHECK(calloc(SMAX / 2 + 1, 2) == NULL && errno == ENOMEM, "calloc overflow");
    errno = 0;
    CHECK(calloc(SMAX >> 31, SMAX >> 31) == NULL && errno == ENOMEM, "calloc 2^66");
    errno = 0;
    CHECK(reallocarray(NULL, SMAX, 2) == NULL && errno == ENOMEM, "reallocarray(NULL) overflow");
    errno = 0;
    CHECK(aligned_alloc(64, SMAX) == NULL && errno == ENOMEM, "aligned_alloc(64, SMAX)");
    errno = 0;
    CHECK(memalign(64, SMAX - 32) == NULL && errno == ENOMEM, "memalign(64, SMAX - 32)");
    void *p = &p;
    CHECK(posix_memalign(&p, 64, SMAX) == ENOMEM && p == &p, "posix_memalign(64, SMAX)");
    errno = 0;
    CHECK(pvalloc(SMAX) == NULL && errno == ENOMEM, "pvalloc(SMAX)");
}

/* Every size class and a few large sizes: usable size, zeroing, routing. */
static void test_sizes(void)
{
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL)");
    for (size_t s = 1; s <= SHED_MEDIUM_MAX + 2000; s += s < 2 * SHED_MAX_BLOCK ? 7 : 997) {
        struct shed_stats before = stats();
        unsigned char *p = calloc(1, s);
        struct shed_stats after = stats();
        CHECK(p != NULL, "calloc(1, %zu)", s);
        if (!p)
            continue;
        size_t u = malloc_usable_size(p);
        CHECK(u >= s, "calloc(1, %zu): usable %zu", s, u);
        if (s <= SHED_MAX_BLOCK) {
            CHECK(u == (s + 15) / 16 * 16, "calloc(1, %zu): usable %zu, not rounded to 16", s, u);
            CHECK(after.blocks_in_use == before.blocks_in_use + 1, "calloc(1, %zu) not from a pool", s);
        } else if (s <= SHED_MEDIUM_MAX) {
            CHECK(u == medium_block(1, s), "calloc(1, %zu): usable %zu, not its class", s, u);
            CHECK(after.blocks_in_use == before.blocks_in_use + 1, "calloc(1, %zu) not from a span", s);
        } else {
            CHECK(after.large_allocs == before.large_allocs + 1, "calloc(1, %zu) not sent to glibc", s);
        }
        size_t z = 0;
        while (z < s && p[z] == 0)
            z++;
        CHECK(z == s, "calloc(1, %zu): byte %zu not zero", s, z);
        memset(p, 0xff, u);                     /* dirty it for the next calloc */
        free(p);
    }
}

int main(void)
{
    stats_fn = (int (*)(struct shed_stats *, size_t))dlsym(RTLD_DEFAULT, "shed_stats_get");
    if (!stats_fn) {
        fprintf(stderr, "semantics: shed_stats not found: run with LD_PRELOAD=libshed.so\n");
        return 1;
    }
    /* In the default batched mode the first free pool starts the release
     * thread, whose own allocations (pthread_create's) come from shed too
     * and would blur the exact block counts checked here. */
    int (*config)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT, "shed_config");
    if (!config || config("release=manual") != 0) {
        fprintf(stderr, "semantics: shed_config(\"release=manual\") failed\n");
        return 1;
    }
    test_aligned();
    test_bad_alignment();
    test_odd_alignment_as_glibc();
    test_page_aligned();
    test_malloc_zero();
    test_realloc_edges();
    test_overflow();
    test_sizes();
    if (failures) {
        fprintf(stderr, "semantics: %d checks failed\n", failures);
        return 1;
    }
    printf("semantics: all checks passed\n");
    return 0;
}

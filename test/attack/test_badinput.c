/*
 * Bad input, each case in a forked child: by default shed prints exactly one
 * line "shed: <error> <address> in <call>()" and aborts; with
 * on_error=report it prints the same line, counts it in stats.errors, leaves
 * memory alone and goes on working.  Then sizes near SIZE_MAX and bad
 * alignments: NULL with the right errno, nothing else disturbed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <signal.h>

#include "attack.h"

enum { KEEP = 16 };   /* blocks of other sizes that must stay intact */

struct ctx {
    void *keep[KEEP];
    const char *error; /* the error words the line must have */
    bool report;
};

/* Before the bad call: the line shed must print, as "want: <line>". */
static void expect(struct ctx *c, const void *addr, const char *call)
{
    char line[200];
    snprintf(line, sizeof line, "want: shed: %s %p in %s()\n", c->error, addr, call);
    write(2, line, strlen(line));
}

/* ---- the bad calls: NULL when what followed was right ---- */

static const char *double_free(struct ctx *c)
{
    void *p = shed_malloc(40);
    shed_free(p);
    expect(c, p, "shed_free");
    shed_free(p);
    return NULL;
}

static const char *interior(struct ctx *c)
{
    char *p = shed_malloc(64);
    memset(p, 0x11, 64);
    expect(c, p + 8, "shed_free");
    shed_free(p + 8);
    if (shed_usable_size(p) != 64 || !all_byte(p, 64, 0x11))
        return "block changed";
    shed_free(p);      /* still live: an ordinary free */
    return NULL;
}

/* Past the last block of a pool: 4096 / 48 = 85 blocks, 16 bytes left over.
 * An address shed never handed out (and never could). */
static const char *never_handed_out(struct ctx *c)
{
    char *p = shed_malloc(48);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *pool = (char *)((uintptr_t)p & ~(uintptr_t)(page - 1));
    expect(c, pool + page / 48 * 48, "shed_free");
    shed_free(pool + page / 48 * 48);
    shed_free(p);
    return NULL;
}

static const char *destroyed_heap_block(struct ctx *c)
{
    shed_heap_t *h = shed_heap_new(0);
    void *p = shed_heap_malloc(h, 96);
    shed_heap_destroy(h);
    expect(c, p, "shed_free");
    shed_free(p);
    return NULL;
}

static const char *realloc_freed(struct ctx *c)
{
    void *p = shed_malloc(200);
    shed_free(p);
    expect(c, p, "shed_realloc");
    errno = 0;
    void *q = shed_realloc(p, 300);
    return q == NULL && errno == EINVAL ? NULL : "realloc did not fail with EINVAL";
}

static const char *destroyed_heap_malloc(struct ctx *c)
{
    shed_heap_t *h = shed_heap_new(0);
    shed_heap_destroy(h);
    expect(c, h, "shed_heap_malloc");
    errno = 0;
    void *q = shed_heap_malloc(h, 32);
    return q == NULL && errno == EINVAL ? NULL : "heap_malloc did not fail with EINVAL";
}

struct bad_case {
    const char *name, *error;
    const char *(*run)(struct ctx *);
};

static const struct bad_case cases[] = {
    { "double free", "double free of", double_free },
    { "interior pointer", "interior pointer", interior },
    { "never handed out", "invalid pointer", never_handed_out },
    { "block of a destroyed heap", "double free of", destroyed_heap_block },
    { "realloc of a freed block", "double free of", realloc_freed },
    { "heap_malloc on a destroyed heap", "invalid heap", destroyed_heap_malloc },
};
#define NCASES (sizeof cases / sizeof cases[0])

/* The child: keep some blocks, make the bad call (printing the line it
 * expects first), check what survives.  Exit codes: 0 fine, 2.. what went
 * wrong (1: the case itself, said on stderr). */
static int child(void *arg)
{
    const struct bad_case *bc = arg;
    struct ctx c = { .error = bc->error };
    const char *mode = getenv("ATTACK_REPORT");
    if (mode && shed_config("on_error=report") != 0)
        return 2;
    c.report = mode != NULL;
    for (int i = 0; i < KEEP; i++) {
        size_t n = 16 + 31 * (size_t)i;
        if (!(c.keep[i] = shed_malloc(n)))
            return 3;
        fill_byte(c.keep[i], n, (unsigned char)(i + 1));
    }
    struct shed_stats before, after;
    shed_stats(&before);
    const char *wrong = bc->run(&c);
    shed_stats(&after);
    if (wrong) {
        fprintf(stderr, "wrong: %s\n", wrong);
        return 1;
    }
    if (after.errors != before.errors + 1)
        return 4;
    for (int i = 0; i < KEEP; i++)
        if (!all_byte(c.keep[i], 16 + 31 * (size_t)i, (unsigned char)(i + 1)))
            return 5;
    /* Still working: new blocks, the kept ones freed cleanly. */
    for (int i = 0; i < 100; i++) {
        char *p = shed_malloc((size_t)i * 5);
        fill_byte(p, (size_t)i * 5, 0x77);
        if (!all_byte(p, (size_t)i * 5, 0x77))
            return 6;
        shed_free(p);
    }
    for (int i = 0; i < KEEP; i++)
        shed_free(c.keep[i]);
    shed_stats(&after);
    return after.errors == before.errors + 1 ? 0 : 7;
}

/* What the child printed after shed's line: "want: <expected line>". */
static void check_one(const struct bad_case *bc, bool report)
{
    char err[8192], want[200];
    if (report)
        setenv("ATTACK_REPORT", "1", 1);
    else
        unsetenv("ATTACK_REPORT");
    int status = run_child(child, (void *)bc, err, sizeof err);
    unsetenv("ATTACK_REPORT");
    const char *w = strstr(err, "want: ");
    if (report ? !WIFEXITED(status) || WEXITSTATUS(status) != 0
               : !WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
        fail_msg("%s (%s): child status %#x, stderr:\n%s", bc->name,
                 report ? "report" : "abort", status, err);
    if (!w)
        fail_msg("%s: no \"want:\" line in:\n%s", bc->name, err);
    snprintf(want, sizeof want, "%.*s", (int)strcspn(w + 6, "\n"), w + 6);
    if (count_lines(err, "shed: ") != 1 || !has_line(err, want))
        fail_msg("%s (%s): want exactly one line \"%s\", stderr:\n%s", bc->name,
                 report ? "report" : "abort", want, err);
}

static void test_bad_abort(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES; i++)
        check_one(&cases[i], false);
}

static void test_bad_report(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES; i++)
        check_one(&cases[i], true);
}

/* ---- sizes and alignments: NULL and errno, the rest untouched ---- */

#define EXPECT_FAIL(call, err)                 \
    do {                                       \
        errno = 0;                             \
        void *r_ = (call);                     \
        if (r_ != NULL || errno != (err))      \
            fail_msg("%s: %p errno %d, want NULL errno %d", #call, r_, errno, err); \
    } while (0)

static void test_huge_sizes(void **state)
{
    (void)state;
    char *small = shed_malloc(100), *large = shed_malloc(5000);
    fill_byte(small, 100, 0x3c);
    fill_byte(large, 5000, 0x4d);
    shed_heap_t *h = shed_heap_new(0);
    assert_non_null(h);
    char *hb = shed_heap_malloc(h, 64);
    fill_byte(hb, 64, 0x5e);
    struct shed_stats st0, st1;
    shed_stats(&st0);
    const size_t sizes[] = { SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4096, SIZE_MAX / 2 + 1 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        EXPECT_FAIL(shed_malloc(n), ENOMEM);
        EXPECT_FAIL(shed_calloc(1, n), ENOMEM);
        EXPECT_FAIL(shed_calloc(n, 1), ENOMEM);
        EXPECT_FAIL(shed_realloc(small, n), ENOMEM);
        EXPECT_FAIL(shed_realloc(large, n), ENOMEM);
        EXPECT_FAIL(shed_aligned_alloc(16, n), ENOMEM);
        EXPECT_FAIL(shed_aligned_alloc(64, n), ENOMEM);
        EXPECT_FAIL(shed_aligned_alloc(4096, n), ENOMEM);
        EXPECT_FAIL(shed_heap_malloc(h, n), ENOMEM);
        EXPECT_FAIL(shed_heap_calloc(h, 1, n), ENOMEM);
        EXPECT_FAIL(shed_heap_realloc(h, hb, n), ENOMEM);
    }
    /* calloc overflow: the product wraps to something small. */
    EXPECT_FAIL(shed_calloc(SIZE_MAX / 2 + 2, 2), ENOMEM);       /* wraps to 2 */
    EXPECT_FAIL(shed_calloc((SIZE_MAX >> 4) + 2, 16), ENOMEM);   /* wraps to 16 */
    EXPECT_FAIL(shed_calloc(SIZE_MAX, SIZE_MAX), ENOMEM);        /* wraps to 1 */
    EXPECT_FAIL(shed_heap_calloc(h, SIZE_MAX / 2 + 2, 2), ENOMEM);
    /* The blocks the failed calls were given are still there, unchanged. */
    assert_true(all_byte(small, 100, 0x3c));
    assert_true(all_byte(large, 5000, 0x4d));
    assert_true(all_byte(hb, 64, 0x5e));
    assert_int_equal(shed_usable_size(small), ATTACK_ASAN ? 100 : 112);
    shed_stats(&st1);
    assert_int_equal(st1.blocks_in_use, st0.blocks_in_use);
    assert_int_equal(st1.errors, st0.errors);
    shed_free(small);
    shed_free(large);
    shed_heap_destroy(h);
}

static void test_bad_alignment(void **state)
{
    (void)state;
    const size_t aligns[] = { 0, 3, 24, 48, 100, 192, 4095, 4097, SIZE_MAX, (SIZE_MAX >> 1) + 2 };
    const size_t sizes[] = { 0, 1, 64, 512, 4096 };
    for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++)
        for (size_t j = 0; j < sizeof sizes / sizeof sizes[0]; j++)
            EXPECT_FAIL(shed_aligned_alloc(aligns[i], sizes[j]), EINVAL);
    /* and every power of two works, aligned */
    for (size_t a = 1; a <= 8192; a *= 2) {
        void *p = shed_aligned_alloc(a, 100);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % a, 0);
        shed_free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_abort),
        cmocka_unit_test(test_bad_report),
        cmocka_unit_test(test_huge_sizes),
        cmocka_unit_test(test_bad_alignment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

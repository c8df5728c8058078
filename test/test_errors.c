/*
 * Bad pointers: double free, interior pointer, a pointer into the region
 * that was never handed out.  Each case runs in a child (this program
 * re-executed as "--child CASE") whose stderr is captured.  By default shed
 * prints one line "shed: <error> <address> in <call>()" and aborts; with
 * on_error=report it prints the line, ignores the call, and the allocator
 * goes on working.  A child prints "addr <pointer>" before its bad call, so
 * that the parent can check that shed names the right address.
 */
#include "shed_test.h"

#include <pthread.h>

static const char *self;

static void say(const void *p)
{
    fprintf(stderr, "addr %p\n", p);        /* stderr: unbuffered */
}

/* A 48-byte class leaves a tail at the end of every page (4096 = 85 * 48 +
 * 16, and likewise for any larger power of two): no block starts there, so
 * no call ever handed it out. */
static void *page_tail(void *blk48)
{
    return (char *)page_of(blk48) + page_size() / 48 * 48;
}

static void *alloc_in_thread(void *arg)
{
    *(void **)arg = shed_malloc(64);
    return NULL;
}

/* The child cases.  Each returns only if shed did not abort. */
static int child_case(const char *name)
{
    if (!strcmp(name, "double-free")) {
        void *p = shed_malloc(32);
        say(p);
        shed_free(p);
        shed_free(p);
    } else if (!strcmp(name, "remote-double-free")) {
        /* the block's owner has exited; both frees are cross-thread */
        void *p = NULL;
        pthread_t t;
        if (pthread_create(&t, NULL, alloc_in_thread, &p) || pthread_join(t, NULL) || !p)
            return 10;
        say(p);
        shed_free(p);
        shed_free(p);
    } else if (!strcmp(name, "double-free-released")) {
        /* the pool's only block: with inline release its pool is retired at
         * once, and the second free is seen in a free pool's metadata */
        if (shed_config("release=inline") != 0)
            return 10;
        void *p = shed_malloc(496);
        say(p);
        shed_free(p);
        shed_free(p);
    } else if (!strcmp(name, "interior-8") || !strcmp(name, "interior-63")) {
        char *p = shed_malloc(64);
        char *q = p + (name[9] == '8' ? 8 : 63);
        say(q);
        shed_free(q);
    } else if (!strcmp(name, "invalid")) {
        void *p = shed_malloc(48);
        say(page_tail(p));
        shed_free(page_tail(p));
    } else if (!strcmp(name, "usable-freed")) {
        void *p = shed_malloc(100);
        say(p);
        shed_free(p);
        return (int)shed_usable_size(p);
    } else if (!strcmp(name, "realloc-freed")) {
        void *p = shed_malloc(100);
        say(p);
        shed_free(p);
        return shed_realloc(p, 200) ? 1 : 0;
    } else {
        return 20;
    }
    return 0;
}

/* Run a case; expect SIGABRT after exactly one shed line, which starts with
 * "shed: <what> <addr> in " (the call's name differs when the tests run
 * through the preloaded standard names). */
static void expect_abort(const char *name, const char *what)
{
    char *argv[] = { (char *)self, "--child", (char *)name, NULL };
    char out[8192], err[8192], line[256], want[256];
    int status = run_exec(argv, NULL, NULL, out, err, sizeof err);
    void *addr = NULL;
    if (!find_line(err, "addr ", line, sizeof line) || sscanf(line, "addr %p", &addr) != 1)
        fail_msg("case %s printed no address; stderr:\n%s", name, err);
    snprintf(want, sizeof want, "shed: %s %p in ", what, addr);
    if (!find_line(err, want, line, sizeof line))
        fail_msg("case %s: no line starting \"%s\"; stderr:\n%s", name, want, err);
    assert_int_equal(count_lines(err, "shed: "), 1);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
        fail_msg("case %s: status %#x, not SIGABRT", name, status);
}

static void test_double_free(void **state)
{
    (void)state;
    expect_abort("double-free", "double free of");
}

static void test_remote_double_free(void **state)
{
    (void)state;
    expect_abort("remote-double-free", "double free of");
}

static void test_double_free_released(void **state)
{
    (void)state;
    expect_abort("double-free-released", "double free of");
}

static void test_interior(void **state)
{
    (void)state;
    expect_abort("interior-8", "interior pointer");
    expect_abort("interior-63", "interior pointer");
}

static void test_invalid(void **state)
{
    (void)state;
    expect_abort("invalid", "invalid pointer");
}

/* usable_size and realloc of a freed block are caught the same way. */
static void test_freed_block_calls(void **state)
{
    (void)state;
    expect_abort("usable-freed", "double free of");
    expect_abort("realloc-freed", "double free of");
}

/*
 * on_error=report, in this process: three bad calls give three lines and
 * change nothing; the blocks involved are intact, the allocator still works.
 * stderr goes to a pipe around the bad calls only.  Under valgrind memcheck
 * would report the same bad calls (as it should): switched off around them.
 */
static void test_report_continues(void **state)
{
    (void)state;
    assert_int_equal(shed_config("on_error=report"), 0);
    struct shed_stats s0, s1;
    shed_stats(&s0);
    unsigned char *live = shed_malloc(64), *dead = shed_malloc(64), *b48 = shed_malloc(48);
    assert_non_null(live);
    assert_non_null(dead);
    assert_non_null(b48);
    fill(live, 64, 1);
    fill(b48, 48, 2);
    shed_free(dead);

    int fd[2], saved = dup(2);
    assert_int_equal(pipe(fd), 0);
    dup2(fd[1], 2);
    close(fd[1]);
    VALGRIND_DISABLE_ERROR_REPORTING;
    shed_free(dead);                     /* double free */
    shed_free(live + 16);                /* interior */
    shed_free(page_tail(b48));           /* never handed out */
    VALGRIND_ENABLE_ERROR_REPORTING;
    dup2(saved, 2);
    close(saved);
    char err[4096], want[128], line[256];
    read_to_end(fd[0], err, sizeof err);
    close(fd[0]);

    shed_stats(&s1);
    assert_int_equal(s1.errors, s0.errors + 3);
    assert_int_equal(count_lines(err, "shed: "), 3);
    snprintf(want, sizeof want, "shed: double free of %p in ", (void *)dead);
    assert_true(find_line(err, want, line, sizeof line));
    snprintf(want, sizeof want, "shed: interior pointer %p in ", (void *)(live + 16));
    assert_true(find_line(err, want, line, sizeof line));
    snprintf(want, sizeof want, "shed: invalid pointer %p in ", page_tail(b48));
    assert_true(find_line(err, want, line, sizeof line));

    assert_int_equal(check_fill(live, 64, 1), -1);
    assert_int_equal(check_fill(b48, 48, 2), -1);
    assert_int_equal(shed_usable_size(live), 64);
    /* The double free did not free the block twice: a whole pool's worth of
     * 64-byte blocks are all distinct. */
    enum { N = 128 };
    void *q[N];
    for (int i = 0; i < N; i++) {
        q[i] = shed_malloc(64);
        assert_non_null(q[i]);
        fill(q[i], 64, 3);
        for (int j = 0; j < i; j++)
            assert_ptr_not_equal(q[i], q[j]);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(check_fill(q[i], 64, 3), -1);
        shed_free(q[i]);
    }
    shed_free(live);
    shed_free(b48);
    shed_stats(&s1);
    assert_int_equal(s1.errors, s0.errors + 3);
    assert_int_equal(shed_config("on_error=abort"), 0);
}

/*
 * Every byte of the first two and the last two block slots of a pool of
 * each class, of the live block's own slot (wherever earlier tests left it:
 * with 16 KiB pages it may be far from either end), and of the page's tail
 * beyond the last block: the live block's start is its block, the start of a
 * free slot a freed block ("double free"), any other byte of a slot an
 * interior pointer, any byte of the tail an invalid pointer.  (The block
 * index is found by a multiply and a look at the product's low half, exact
 * for every offset of a page: this walks the offsets where an inexact one
 * would show first.)
 */
static void test_every_offset(void **state)
{
    (void)state;
    assert_int_equal(shed_config("on_error=report"), 0);
    struct shed_stats s0, s1;
    shed_stats(&s0);
    size_t page = page_size(), interior = 0, invalid = 0, freed = 0, found = 0, wrong = 0;
    FILE *log = tmpfile();
    assert_non_null(log);
    int saved = dup(2);
    dup2(fileno(log), 2);
    VALGRIND_DISABLE_ERROR_REPORTING;
    for (size_t size = 16; size <= 512; size += 16) {
        char *b = shed_malloc(size), *base = page_of(b);
        size_t n = page / size, bo = (size_t)(b - base);
        for (size_t off = 0; off < page; off++) {
            if (n > 4 && off >= 2 * size && off < (n - 2) * size &&
                (off < bo || off >= bo + size))
                continue;                  /* a middle slot but the block's */
            size_t got = shed_usable_size(base + off);
            if (off % size == 0 && off / size < n) {
                if (base + off == b)
                    found += got == size;
                else if (got == 0)
                    freed++;               /* a free slot */
                else
                    wrong += got != size;  /* another live block (preloaded:
                                              the C library's, say) */
            } else {
                if (off >= n * size)
                    invalid++;             /* the tail */
                else
                    interior++;
                wrong += got != 0;
            }
        }
        shed_free(b);
    }
    VALGRIND_ENABLE_ERROR_REPORTING;
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    size_t nint = 0, ninv = 0, nfreed = 0;
    char line[256];
    rewind(log);
    while (fgets(line, sizeof line, log)) {
        nint += strncmp(line, "shed: interior pointer ", 23) == 0;
        ninv += strncmp(line, "shed: invalid pointer ", 22) == 0;
        nfreed += strncmp(line, "shed: double free of ", 21) == 0;
    }
    fclose(log);
    shed_stats(&s1);
    assert_int_equal(found, 32);           /* each class's block found */
    assert_int_equal(wrong, 0);
    assert_int_equal(nint, interior);
    assert_int_equal(ninv, invalid);
    assert_int_equal(nfreed, freed);
    assert_int_equal(s1.errors, s0.errors + interior + invalid + freed);
    assert_true(interior > 0 && invalid > 0);
    assert_int_equal(shed_config("on_error=abort"), 0);
}

int main(int argc, char **argv)
{
    self = argv[0];
    if (argc > 2 && !strcmp(argv[1], "--child"))
        return child_case(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_double_free),
        cmocka_unit_test(test_remote_double_free),
        cmocka_unit_test(test_double_free_released),
        cmocka_unit_test(test_interior),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_freed_block_calls),
        cmocka_unit_test(test_report_continues),
        cmocka_unit_test(test_every_offset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

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

static void *free_in_thread(void *arg)
{
    shed_free(arg);
    return NULL;
}

/* Free p on a thread of its own; nonzero if the thread did not run. */
static int free_elsewhere(void *p)
{
    pthread_t t;
    return pthread_create(&t, NULL, free_in_thread, p) || pthread_join(t, NULL);
}

/* A block of size bytes freed here, then again by another thread (a
 * neighbour stays live, so that its pool or span is not given up). */
static int free_here_then_elsewhere(size_t size)
{
    void *keep = shed_malloc(size), *p = shed_malloc(size);
    shed_free(p);
    say(p);
    if (free_elsewhere(p))
        return 10;
    shed_free(keep);
    return 0;
}

/* Park a medium block in this thread's cache, and stay alive (with it
 * parked) until told; then, with again, free it again. */
struct parker {
    pthread_barrier_t b;
    void *p;
    bool again;
};
static void *park_and_wait(void *arg)
{
    struct parker *pk = arg;
    void *keep = shed_malloc(3000);
    pk->p = shed_malloc(3000);
    shed_free(pk->p);
    pthread_barrier_wait(&pk->b);
    pthread_barrier_wait(&pk->b);
    if (pk->again)
        shed_free(pk->p);
    shed_free(keep);
    return NULL;
}

static void *alloc_medium_in_thread(void *arg)
{
    *(void **)arg = shed_malloc(3000);
    return NULL;
}

/* Medium blocks come from spans of 256 KiB (shed.7); the 28672-byte class
 * holds 9 blocks a span and leaves a tail of 4 KiB no call hands out. */
#define SPAN (256 * 1024)
static void *span_tail(void *blk28k)
{
    return (char *)((uintptr_t)blk28k & ~(uintptr_t)(SPAN - 1)) + SPAN / 28672 * 28672;
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
    } else if (!strcmp(name, "owner-then-remote-double-free")) {
        /* freed by its owner, then by another thread (the lock-free remote
         * free sees the block free in its owner's bitmap) */
        return free_here_then_elsewhere(64);
    } else if (!strcmp(name, "merged-remote-double-free")) {
        /* freed by another thread, merged by its owner (shed_trim drains),
         * then freed by another thread again */
        void *keep = shed_malloc(64), *p = shed_malloc(64);
        if (free_elsewhere(p))
            return 10;
        shed_trim();
        say(p);
        if (free_elsewhere(p))
            return 10;
        shed_free(keep);
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
    } else if (!strcmp(name, "m-double-free")) {
        void *keep = shed_malloc(2000), *p = shed_malloc(2000);
        say(p);
        shed_free(p);
        shed_free(p);
        shed_free(keep);
    } else if (!strcmp(name, "m-parked-double-free")) {
        /* p is parked in this thread's cache under younger blocks of its
         * class (the cache is the theap's: see shed.7) */
        void *keep = shed_malloc(2000), *p = shed_malloc(2000), *q[3];
        for (int i = 0; i < 3; i++)
            q[i] = shed_malloc(2000);
        shed_free(p);
        for (int i = 0; i < 3; i++)
            shed_free(q[i]);
        say(p);
        shed_free(p);
        shed_free(keep);
    } else if (!strcmp(name, "m-stolen-double-free")) {
        /* parked in the cache of a thread that waits (no call of its own),
         * flushed by shed_trim from here, then freed again by its owner */
        struct parker pk = { .again = true };
        pthread_t t;
        if (shed_config("release=manual") != 0)
            return 10;
        pthread_barrier_init(&pk.b, NULL, 2);
        if (pthread_create(&t, NULL, park_and_wait, &pk))
            return 10;
        pthread_barrier_wait(&pk.b);      /* p is parked, its owner waits */
        say(pk.p);
        shed_trim();                      /* the flush, by this thread */
        pthread_barrier_wait(&pk.b);      /* its owner frees p again */
        pthread_join(t, NULL);
    } else if (!strcmp(name, "m-parked-remote-double-free")) {
        /* freed here (parked), then again by another thread */
        return free_here_then_elsewhere(3000);
    } else if (!strcmp(name, "m-parked-fork-double-free")) {
        /* parked in the cache of a thread of the parent that is alive at
         * the fork, freed again in the child */
        struct parker pk = { .again = false };
        pthread_t t;
        pthread_barrier_init(&pk.b, NULL, 2);
        if (pthread_create(&t, NULL, park_and_wait, &pk))
            return 10;
        pthread_barrier_wait(&pk.b);      /* p is parked */
        void *p = pk.p;
        say(p);
        pid_t pid = fork();
        if (pid == 0) {
            shed_free(p);
            _exit(0);
        }
        int status;
        if (pid < 0 || waitpid(pid, &status, 0) != pid)
            return 10;
        pthread_barrier_wait(&pk.b);      /* the thread may exit */
        pthread_join(t, NULL);
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT)
            abort();                       /* as the child did */
    } else if (!strcmp(name, "m-remote-double-free")) {
        void *p = NULL;
        pthread_t t;
        if (pthread_create(&t, NULL, alloc_medium_in_thread, &p) || pthread_join(t, NULL) || !p)
            return 10;
        say(p);
        shed_free(p);
        shed_free(p);
    } else if (!strcmp(name, "m-double-free-released")) {
        /* the last of its span, which is not the current span any more and
         * goes back once emptied: the second free finds no owner */
        if (shed_config("release=inline") != 0)
            return 10;
        void *a[18];
        int j = -1;
        for (int i = 0; i < 18; i++) {
            a[i] = shed_malloc(32768);
            if (j < 0 && i > 0 && ((uintptr_t)a[i] & (SPAN - 1)) == SPAN - 32768)
                j = i;
        }
        if (j < 0)
            return 11;
        for (int i = 0; i < 18; i++)
            if (i != j && ((uintptr_t)a[i] ^ (uintptr_t)a[j]) < SPAN)
                shed_free(a[i]);
        say(a[j]);
        shed_free(a[j]);
        shed_free(a[j]);
    } else if (!strcmp(name, "m-interior")) {
        char *p = shed_malloc(5000);
        say(p + 4096);
        shed_free(p + 4096);
    } else if (!strcmp(name, "m-invalid")) {
        void *p = shed_malloc(28000);
        say(span_tail(p));
        shed_free(span_tail(p));
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

static void test_owner_then_remote_double_free(void **state)
{
    (void)state;
    expect_abort("owner-then-remote-double-free", "double free of");
    expect_abort("merged-remote-double-free", "double free of");
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

/* The verdicts an every-offset walk expects (test_every_offset and
 * test_medium_every_offset), and what shed_usable_size said. */
struct verdicts {
    size_t interior, invalid, freed, found, wrong, errors0;
    FILE *log;
    int saved;
};

/* Start a walk: shed reports and carries on, into a log (not stderr). */
static void walk_begin(struct verdicts *v)
{
    struct shed_stats st;
    memset(v, 0, sizeof *v);
    assert_int_equal(shed_config("on_error=report"), 0);
    shed_stats(&st);
    v->errors0 = st.errors;
    v->log = tmpfile();
    assert_non_null(v->log);
    v->saved = dup(2);
    dup2(fileno(v->log), 2);
    VALGRIND_DISABLE_ERROR_REPORTING;
}

/* Byte off of a slab (pool or span) of n blocks of size at base, whose live
 * block is b: ask shed_usable_size, and count what it should have said. */
static void walk_judge(struct verdicts *v, char *base, size_t off, size_t size, size_t n,
                       const char *b)
{
    size_t got = shed_usable_size(base + off);
    if (off % size == 0 && off / size < n) {
        if (base + off == b)
            v->found += got == size;
        else if (got == 0)
            v->freed++;                /* a free slot */
        else
            v->wrong += got != size;   /* another live block (preloaded: the C
                                          library's, say) */
    } else {
        if (off >= n * size)
            v->invalid++;              /* the tail */
        else
            v->interior++;
        v->wrong += got != 0;
    }
}

/* End a walk: one line per verdict, of the right kind; found live blocks. */
static void walk_end(struct verdicts *v, size_t found)
{
    VALGRIND_ENABLE_ERROR_REPORTING;
    fflush(stderr);
    dup2(v->saved, 2);
    close(v->saved);
    size_t nint = 0, ninv = 0, nfreed = 0;
    char line[256];
    rewind(v->log);
    while (fgets(line, sizeof line, v->log)) {
        nint += strncmp(line, "shed: interior pointer ", 23) == 0;
        ninv += strncmp(line, "shed: invalid pointer ", 22) == 0;
        nfreed += strncmp(line, "shed: double free of ", 21) == 0;
    }
    fclose(v->log);
    struct shed_stats st;
    shed_stats(&st);
    assert_int_equal(v->found, found);
    assert_int_equal(v->wrong, 0);
    assert_int_equal(nint, v->interior);
    assert_int_equal(ninv, v->invalid);
    assert_int_equal(nfreed, v->freed);
    assert_int_equal(st.errors, v->errors0 + v->interior + v->invalid + v->freed);
    assert_true(v->interior > 0 && v->invalid > 0);
    assert_int_equal(shed_config("on_error=abort"), 0);
}

/* The same errors on medium blocks (spans). */
static void test_medium_errors(void **state)
{
    (void)state;
    expect_abort("m-double-free", "double free of");
    expect_abort("m-parked-double-free", "double free of");
    expect_abort("m-stolen-double-free", "double free of");
    expect_abort("m-parked-remote-double-free", "double free of");
    expect_abort("m-parked-fork-double-free", "double free of");
    expect_abort("m-remote-double-free", "double free of");
    expect_abort("m-double-free-released", "double free of");
    expect_abort("m-interior", "interior pointer");
    expect_abort("m-invalid", "invalid pointer");
}

/* Every byte of a medium block's slot, of the next slot (free) and of the
 * span's tail, for every medium class (three bytes of each 64: the first,
 * the second, the last): the same verdicts as for pools. */
static void test_medium_every_offset(void **state)
{
    (void)state;
    struct verdicts v;
    walk_begin(&v);
    for (int c = 0; c < SHED_MEDIUM_CLASSES; c++) {
        size_t size = medium_sizes[c], n = SPAN / size;
        /* a fresh span: a whole one's worth of blocks, then one more */
        void **all = malloc((n + 1) * sizeof *all);
        for (size_t i = 0; i <= n; i++)
            all[i] = shed_malloc(size);
        char *b = all[n], *base = (char *)((uintptr_t)b & ~(uintptr_t)(SPAN - 1));
        for (size_t i = 0; i < n; i++)
            shed_free(all[i]);
        free(all);
        size_t bo = (size_t)(b - base);
        for (size_t k = 0; k < 3 * (SPAN / 64); k++) {
            size_t off = k / 3 * 64 + (size_t[]){ 0, 1, 63 }[k % 3];
            if (off < n * size && (off < bo || off >= bo + 2 * size))
                continue;                  /* other slots: like the next one */
            walk_judge(&v, base, off, size, n, b);
        }
        shed_free(b);
    }
    walk_end(&v, SHED_MEDIUM_CLASSES);
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
    struct verdicts v;
    size_t page = page_size();
    walk_begin(&v);
    for (size_t size = 16; size <= 512; size += 16) {
        char *b = shed_malloc(size), *base = page_of(b);
        size_t n = page / size, bo = (size_t)(b - base);
        for (size_t off = 0; off < page; off++) {
            if (n > 4 && off >= 2 * size && off < (n - 2) * size &&
                (off < bo || off >= bo + size))
                continue;                  /* a middle slot but the block's */
            walk_judge(&v, base, off, size, n, b);
        }
        shed_free(b);
    }
    walk_end(&v, 32);                      /* each class's block found */
}

int main(int argc, char **argv)
{
    self = argv[0];
    if (argc > 2 && !strcmp(argv[1], "--child"))
        return child_case(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_double_free),
        cmocka_unit_test(test_remote_double_free),
        cmocka_unit_test(test_owner_then_remote_double_free),
        cmocka_unit_test(test_double_free_released),
        cmocka_unit_test(test_interior),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_medium_errors),
        cmocka_unit_test(test_medium_every_offset),
        cmocka_unit_test(test_freed_block_calls),
        cmocka_unit_test(test_report_continues),
        cmocka_unit_test(test_every_offset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

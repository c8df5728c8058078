/*
 * The lock-free remote free's locked tail (remote_publish, src/free.c,
 * "Remote frees"), driven into the states a race leaves, one at a time, in
 * a child each: a bad free's bit that lands in a pool retired meanwhile is
 * cleared and reported with the exact line, and a valid free whose bit was
 * merged before its pool was retired is not reported.  Skipped under a
 * checker (ASan, memcheck), whose quarantine keeps the freed block, so
 * that its pool is not retired.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>

#include "shed_impl.h"
#include "child.h"

static char out[256], err[4096];

/* A block alone in a fresh pool of its class, freed with release=inline
 * retires the pool at once; its pool, word and bit. */
struct lone {
    char *b;
    struct pool *p;
    unsigned w;
    uint64_t bit;
};

enum { SKIP = 77 };   /* under a checker: the quarantine holds the block */

static int lone_block(struct lone *l)
{
    if (shed_config("release=inline") != 0 || !(l->b = shed_malloc(496)))
        return 10;
    if (g.checker)
        return SKIP;
    size_t off = (size_t)(l->b - g.region), i;
    l->p = desc_at(off);
    if (!block_index(off & g.page_mask, l->p->magic, &i))
        return 11;
    l->w = (unsigned)(i / 64);
    l->bit = 1ull << (i % 64);
    printf("%p\n", (void *)l->b);
    fflush(stdout);
    return 0;
}

/* The owner frees the block and the pool is retired; then a remote free of
 * the same block, which passed its checks before, sets its bit (its OR) and
 * takes the lock: the double free is reported, and the bit cleared. */
static int bad_free_into_retired(void *arg)
{
    (void)arg;
    struct lone l;
    int e = lone_block(&l);
    if (e)
        return e;
    shed_free(l.b);
    if (RELAXED_LOAD(l.p->owner) != NULL)
        return 12;                       /* not retired: the test is moot */
    atomic_fetch_or(&remote_map(l.p)[l.w], l.bit);
    shed_config("on_error=report");
    remote_publish(l.p, l.w, l.bit, l.b, "free");
    if (RELAXED_LOAD(remote_map(l.p)[l.w]) & l.bit)
        return 13;                       /* the stray bit stayed */
    abort();                             /* as on_error=abort would have */
}

static void *free_it(void *b)
{
    shed_free(b);
    return NULL;
}

/* A valid remote free, merged by the owner, whose pool is then retired
 * before the free's own tail runs: nothing to report, nothing to push. */
static int merged_then_retired(void *arg)
{
    (void)arg;
    struct lone l;
    int e = lone_block(&l);
    pthread_t t;
    if (e)
        return e;
    if (pthread_create(&t, NULL, free_it, l.b) || pthread_join(t, NULL))
        return 14;
    theap_drain(tls_heap);               /* merges it: all free, retired */
    if (RELAXED_LOAD(l.p->owner) != NULL)
        return 12;
    remote_publish(l.p, l.w, l.bit, l.b, "free");
    if (RELAXED_LOAD(remote_map(l.p)[l.w]) & l.bit ||
        atomic_load(&remote_of(l.p)->pending))
        return 15;
    return 0;
}

static void test_bad_free_into_retired(void **state)
{
    (void)state;
    int st = child_run(bad_free_into_retired, NULL, NULL, NULL, NULL, NULL, out, err, sizeof err);
    void *b = NULL;
    char want[128], line[256];
    if (WIFEXITED(st) && WEXITSTATUS(st) == SKIP)
        skip();
    if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT))
        fail_msg("status %#x; stderr: %s", st, err);
    assert_int_equal(sscanf(out, "%p", &b), 1);
    snprintf(want, sizeof want, "shed: double free of %p in free()", b);
    if (!find_line(err, want, line, sizeof line))
        fail_msg("no line \"%s\"; stderr: %s", want, err);
    assert_int_equal(count_lines(err, "shed:"), 1);
}

static void test_merged_then_retired(void **state)
{
    (void)state;
    int st = child_run(merged_then_retired, NULL, NULL, NULL, NULL, NULL, out, err, sizeof err);
    if (WIFEXITED(st) && WEXITSTATUS(st) == SKIP)
        skip();
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("status %#x; stderr: %s", st, err);
    assert_int_equal(count_lines(err, "shed:"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_free_into_retired),
        cmocka_unit_test(test_merged_then_retired),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

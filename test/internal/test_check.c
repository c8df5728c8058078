/*
 * The checking build's checks can fail (built only against the debug
 * library, make check-debug): a child corrupts one piece of shed's state,
 * then calls what checks it; it must die of SIGABRT after one line
 * "shed: internal check failed: <what> at <file>:<line>, pool <address>"
 * naming the check, the place and the pool.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "shed_impl.h"
#include "child.h"

#ifndef SHED_DEBUG
#error "test_check.c tests the checking build: compile it with -DSHED_DEBUG"
#endif

static char out[256], err[4096];

/* Run fn in a child; it must abort with the check's line, which names what
 * and the pool whose address the child wrote to stdout. */
static void expect_abort(int (*fn)(void *), const char *what, const char *where)
{
    int st = child_run(fn, NULL, NULL, NULL, NULL, NULL, out, err, sizeof err);
    char want[256], line[512];
    void *pool = NULL;
    assert_int_equal(sscanf(out, "%p", &pool), 1);
    snprintf(want, sizeof want, "shed: internal check failed: %s at %s", what, where);
    if (!find_line(err, "shed: internal check failed:", line, sizeof line))
        fail_msg("no check failed; stderr: %s", err);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    assert_int_equal(count_lines(err, "shed:"), 1);
    if (strncmp(line, want, strlen(want)) != 0)
        fail_msg("got \"%s\", want \"%s...\"", line, want);
    char addr[64];
    snprintf(addr, sizeof addr, ", pool %p", pool);
    assert_non_null(strstr(line, addr));
}

/* In the child (the parent's pools are inherited there, and not checked):
 * a block of the largest class (bits to spare in its pool's bitmap) and its
 * pool, whose address goes to stdout. */
static struct pool *child_pool(void)
{
    char *block = shed_malloc(SHED_MAX_BLOCK);
    struct pool *p = desc_at((size_t)(block - g.region));
    printf("%p\n", (void *)(uintptr_t)pool_addr(p));
    fflush(stdout);
    return p;
}

/* One free block too many in the count: shed_trim's walk of the thread's
 * pools (theap_check) sees it. */
static int count_off_by_one(void *arg)
{
    (void)arg;
    child_pool()->to_settle--;
    shed_trim();
    return 0;
}

/* A free bit beyond the pool's last block. */
static int bit_past_the_end(void *arg)
{
    (void)arg;
    struct pool *p = child_pool();
    free_map(p)[p->nblocks / 64] |= 1ull << (p->nblocks % 64);
    pool_set_nfree(p, pool_nfree(p) + 1);
    shed_trim();
    return 0;
}

/* A pool both in use and dirty in its arena's masks: shed_stats checks the
 * arenas (arena_check). */
static int two_states(void *arg)
{
    (void)arg;
    size_t pidx = pool_index(child_pool());
    g.arenas[pidx / POOLS_PER_ARENA].dirty |= 1ull << (pidx % POOLS_PER_ARENA);
    struct shed_stats s;
    shed_stats(&s);
    return 0;
}

static void test_count(void **state)
{
    (void)state;
    expect_abort(count_off_by_one, "nfree == pool_nfree(p)", "src/theap.c:");
}

static void test_bit_past_end(void **state)
{
    (void)state;
    expect_abort(bit_past_the_end, "(f & ~block_bits(n, w)) == 0", "src/theap.c:");
}

static void test_masks(void **state)
{
    (void)state;
    expect_abort(two_states, "((u & d) | (u & r) | (u & f) | (d & r) | (d & f) | (r & f)) == 0",
                 "src/stats.c:");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_count),
        cmocka_unit_test(test_bit_past_end),
        cmocka_unit_test(test_masks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The checking build's checks can fail (built only against the debug
 * library, make check-debug): a child corrupts one piece of shed's state,
 * then calls what checks it; it must die of SIGABRT after one line
 * "shed: internal check failed: <what> at <file>:<line>, pool <address>"
 * naming the check, the place and the pool ("span <address>" and its first
 * page for a span).
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
static void expect_abort_at(int (*fn)(void *), const char *what, const char *where,
                            const char *kind)
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
    snprintf(addr, sizeof addr, ", %s %p", kind, pool);
    if (!strstr(line, addr))
        fail_msg("\"%s\" does not name%s", line, addr);
}

static void expect_abort(int (*fn)(void *), const char *what, const char *where)
{
    expect_abort_at(fn, what, where, "pool");
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

/* In the child: a block of the largest medium class (8 blocks of a span
 * with 4 KiB pages: bits to spare in its bitmap's first word) and its span,
 * whose address goes to stdout. */
static struct span *child_span(void)
{
    char *block = shed_malloc(SHED_MEDIUM_MAX);
    struct span *s = &med.spans[(size_t)(block - med.base) >> SPAN_SHIFT];
    printf("%p\n", (void *)(block - ((size_t)(block - med.base) & (SPAN_BYTES - 1))));
    fflush(stdout);
    return s;
}

/* Then a block of another class: the slow path walks the theap's current
 * spans (mtheap_check), the corrupted one among them. */
static int walk_spans(void)
{
    shed_free(shed_malloc(SHED_MAX_BLOCK + 1));
    return 0;
}

/* A span's free count one off its bitmap. */
static int span_count_off(void *arg)
{
    (void)arg;
    child_span()->nfree--;
    return walk_spans();
}

/* A free bit beyond the span's last block. */
static int span_bit_past_end(void *arg)
{
    (void)arg;
    struct span *s = child_span();
    if (s->nblocks % 64 == 0)
        abort();                         /* pages too large for this test */
    atomic_fetch_or(&s->free[s->nblocks / 64], 1ull << (s->nblocks % 64));
    s->nfree++;
    return walk_spans();
}

/* A page's count of live blocks off the blocks: the span's page states. */
static int span_live_off(void *arg)
{
    (void)arg;
    child_span()->live[0]++;
    return walk_spans();
}

/* A page a live block touches not among the owner's pages (the releaser
 * could give it back under the block). */
static int span_page_not_owned(void *arg)
{
    (void)arg;
    struct span *s = child_span();
    atomic_store(&s->owned, atomic_load(&s->owned) & ~1ull);
    return walk_spans();
}

/* A remote free bit on a span that is on no pending stack: never merged. */
static int span_remote_lost(void *arg)
{
    (void)arg;
    struct span *s = child_span();
    atomic_fetch_or(&s->remote[0], 2ull);
    return walk_spans();
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

static void test_span_count(void **state)
{
    (void)state;
    expect_abort_at(span_count_off, "nfree == s->nfree", "src/medium.c:", "span");
}

static void test_span_bit_past_end(void **state)
{
    (void)state;
    expect_abort_at(span_bit_past_end, "(f & ~block_bits(n, w)) == 0", "src/medium.c:", "span");
}

static void test_span_live(void **state)
{
    (void)state;
    expect_abort_at(span_live_off, "s->live[j] == live[j]", "src/medium.c:", "span");
}

static void test_span_owned(void **state)
{
    (void)state;
    expect_abort_at(span_page_not_owned, "owned == own", "src/medium.c:", "span");
}

static void test_span_remote(void **state)
{
    (void)state;
    expect_abort_at(span_remote_lost, "!any_remote || pending", "src/medium.c:", "span");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_count),
        cmocka_unit_test(test_bit_past_end),
        cmocka_unit_test(test_masks),
        cmocka_unit_test(test_span_count),
        cmocka_unit_test(test_span_bit_past_end),
        cmocka_unit_test(test_span_live),
        cmocka_unit_test(test_span_owned),
        cmocka_unit_test(test_span_remote),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

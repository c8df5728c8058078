/*
 * The medium cache's hint counts (mcache_hint, "Medium cache" in
 * shed_impl.h): a count is a byte, and a block whose count is at its most
 * (MCACHE_HINT_MAX) is not parked but goes back to its span, the count
 * unchanged.  Skipped under a checker (ASan, memcheck), where nothing is
 * parked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "fast.h"

static bool free_in_span(const char *b)
{
    size_t off = (size_t)(b - med.base);
    struct span *s = &med.spans[off >> SPAN_SHIFT];
    size_t i = (off & (SPAN_BYTES - 1)) / RELAXED_LOAD(s->size);
    return RELAXED_LOAD(s->free[i / 64]) >> (i % 64) & 1;
}

static unsigned parked(const char *b)
{
    struct span *s = &med.spans[(size_t)(b - med.base) >> SPAN_SHIFT];
    return RELAXED_LOAD(tls_heap->mc_n[s->cls]);
}

static void test_hint_full(void **state)
{
    (void)state;
    char *keep = shed_malloc(1000), *b = shed_malloc(1000), *d = shed_malloc(1000);
    assert_true(keep && b && d);
    if (g.checker || !med.base) {
        shed_free(keep);
        shed_free(b);
        shed_free(d);
        skip();
    }
    shed_free(d);                        /* its class's stack is not empty */
    unsigned n = parked(b);
    assert_true(n > 0);
    _Atomic uint8_t *h = mcache_hint(tls_heap, b);
    uint8_t was = RELAXED_LOAD(*h);
    RELAXED_STORE(*h, MCACHE_HINT_MAX);
    shed_free(b);                        /* not parked: back to its span */
    assert_int_equal(parked(b), n);
    assert_int_equal(RELAXED_LOAD(*h), MCACHE_HINT_MAX);
    assert_true(free_in_span(b));
    RELAXED_STORE(*h, was);
    /* the same block, allocated and freed again with its count below the
     * most, is parked as before */
    char *e = shed_malloc(1000);
    assert_non_null(e);
    shed_free(e);
    assert_int_equal(parked(e), n);
    assert_false(free_in_span(e));
    shed_free(keep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hint_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

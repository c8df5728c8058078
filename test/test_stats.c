/*
 * Statistics: per-class counts move by exactly what the program allocates
 * and frees, the totals are the sums of the classes, every carved pool is in
 * exactly one state, and the printed table agrees with the struct.
 */
#include "shed_test.h"

/* Consistency that holds at any moment of a quiet process. */
static void check_sums(const struct shed_stats *st)
{
    size_t blocks = 0, bytes = 0, pools = 0;
    for (int c = 0; c < SHED_NUM_CLASSES; c++) {
        const struct shed_class_stats *cs = &st->classes[c];
        assert_int_equal(cs->block_size, (size_t)(c + 1) * SHED_CLASS_STEP);
        assert_int_equal(cs->bytes_in_use, cs->blocks_in_use * cs->block_size);
        /* a class's blocks fit in its pools */
        assert_true(cs->blocks_in_use <= cs->pools_in_use * (page_size() / cs->block_size));
        blocks += cs->blocks_in_use;
        bytes += cs->bytes_in_use;
        pools += cs->pools_in_use;
    }
    assert_int_equal(st->blocks_in_use, blocks);
    assert_int_equal(st->bytes_in_use, bytes);
    assert_int_equal(st->pools_in_use, pools);
    assert_int_equal(st->pool_size, page_size());
    assert_int_equal(st->pools_in_use + st->pools_dirty + st->pools_releasing +
                         st->pools_released,
                     st->arenas * 64);
    assert_int_equal(st->bytes_mapped, st->arenas * 64 * page_size());
    assert_true(st->bytes_mapped <= st->bytes_reserved);
    assert_true(st->bytes_resident <= st->bytes_mapped);
}

static void test_stats_null(void **state)
{
    (void)state;
    errno = 0;
    assert_int_equal(shed_stats(NULL), -1);
    assert_int_equal(errno, EINVAL);
}

/* For every class: allocate k blocks, free them; only that class moves, by
 * exactly k, and moves back. */
static void test_class_counts(void **state)
{
    (void)state;
    enum { MAXK = 200 };
    void *p[MAXK];
    struct shed_stats s0, s1, s2;
    for (int c = 0; c < SHED_NUM_CLASSES; c++) {
        size_t size = (size_t)(c + 1) * SHED_CLASS_STEP - (c % 3) * 5;
        int k = 3 + c * 6;                     /* up to 189: several pools */
        shed_stats(&s0);
        for (int i = 0; i < k; i++)
            p[i] = shed_malloc(size);
        shed_stats(&s1);
        for (int i = 0; i < k; i++)
            shed_free(p[i]);
        shed_stats(&s2);
        for (int i = 0; i < k; i++)
            assert_non_null(p[i]);
        for (int d = 0; d < SHED_NUM_CLASSES; d++) {
            size_t want = s0.classes[d].blocks_in_use + (d == c ? (size_t)k : 0);
            assert_int_equal(s1.classes[d].blocks_in_use, want);
            assert_int_equal(s2.classes[d].blocks_in_use, s0.classes[d].blocks_in_use);
        }
        /* the blocks needed at least ceil(k / per-pool) pools of the class */
        size_t per = page_size() / ((size_t)(c + 1) * SHED_CLASS_STEP);
        assert_true(s1.classes[c].pools_in_use >= ((size_t)k + per - 1) / per);
        assert_int_equal(s1.blocks_in_use, s0.blocks_in_use + (size_t)k);
        assert_int_equal(s1.bytes_in_use,
                         s0.bytes_in_use + (size_t)k * (size_t)(c + 1) * SHED_CLASS_STEP);
        assert_int_equal(s2.blocks_in_use, s0.blocks_in_use);
        check_sums(&s0);
        check_sums(&s1);
        check_sums(&s2);
    }
}

/* Requests above 512 bytes are counted as large and not as blocks. */
static void test_large_counted(void **state)
{
    (void)state;
    struct shed_stats s0, s1;
    shed_stats(&s0);
    void *a = shed_malloc(513), *b = shed_calloc(10, 100), *c = shed_aligned_alloc(4096, 64);
    shed_stats(&s1);
    bool all = a && b && c;
    shed_free(a);
    shed_free(b);
    shed_free(c);
    assert_true(all);
    assert_int_equal(s1.large_allocs, s0.large_allocs + 3);
    assert_int_equal(s1.blocks_in_use, s0.blocks_in_use);
}

/* The table printed agrees with the struct. */
static void test_stats_print(void **state)
{
    (void)state;
    void *p[10];
    for (int i = 0; i < 10; i++)
        p[i] = shed_malloc(200);
    FILE *f = tmpfile();        /* opened first: it may allocate */
    assert_non_null(f);
    struct shed_stats st;
    shed_stats(&st);
    shed_stats_print(f);
    rewind(f);
    char line[256];
    bool head = false, total = false, class208 = false;
    while (fgets(line, sizeof line, f)) {
        size_t a, b, c;
        head |= strncmp(line, "shed: release=", 14) == 0;
        if (sscanf(line, " total %zu %zu %zu", &a, &b, &c) == 3) {
            assert_int_equal(a, st.blocks_in_use);
            assert_int_equal(b, st.bytes_in_use);
            assert_int_equal(c, st.pools_in_use);
            total = true;
        } else if (sscanf(line, " 208 %zu %zu %zu", &a, &b, &c) == 3) {
            assert_int_equal(a, st.classes[12].blocks_in_use);
            assert_true(a >= 10);
            class208 = true;
        }
    }
    fclose(f);
    assert_true(head);
    assert_true(total);
    assert_true(class208);
    for (int i = 0; i < 10; i++)
        shed_free(p[i]);
}

int main(void)
{
    /* no background release while counts are compared */
    if (shed_config("release=manual") != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_null),
        cmocka_unit_test(test_class_counts),
        cmocka_unit_test(test_large_counted),
        cmocka_unit_test(test_stats_print),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

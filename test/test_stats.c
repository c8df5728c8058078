/*
 * Statistics: per-class counts move by exactly what the program allocates
 * and frees, the totals are the sums of the classes, every carved pool is in
 * exactly one state, and the printed table agrees with the struct.
 */
#include <pthread.h>

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
    size_t spans = 0;
    for (int c = 0; c < SHED_MEDIUM_CLASSES; c++) {
        const struct shed_class_stats *cs = &st->medium[c];
        assert_int_equal(cs->block_size, medium_sizes[c]);
        assert_int_equal(cs->bytes_in_use, cs->blocks_in_use * cs->block_size);
        assert_true(cs->blocks_in_use <= cs->pools_in_use * (st->span_size / cs->block_size));
        spans += cs->pools_in_use;
    }
    assert_int_equal(st->spans_in_use, spans);
    assert_true(st->medium_bytes_resident <= st->medium_bytes_mapped);
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

/* For every medium class: k blocks (several spans for the small classes)
 * move that class's count by exactly k, and back. */
static void test_medium_counts(void **state)
{
    (void)state;
    enum { MAXK = 900 };
    static void *p[MAXK];
    struct shed_stats s0, s1, s2;
    for (int c = 0; c < SHED_MEDIUM_CLASSES; c++) {
        size_t size = medium_sizes[c] - (c % 3) * 40;
        int k = c < 4 ? MAXK : 20 + c;
        shed_stats(&s0);
        for (int i = 0; i < k; i++) {
            p[i] = shed_malloc(size);
            assert_non_null(p[i]);
        }
        shed_stats(&s1);
        for (int i = 0; i < k; i++)
            shed_free(p[i]);
        shed_stats(&s2);
        for (int d = 0; d < SHED_MEDIUM_CLASSES; d++) {
            size_t want = s0.medium[d].blocks_in_use + (d == c ? (size_t)k : 0);
            assert_int_equal(s1.medium[d].blocks_in_use, want);
            assert_int_equal(s2.medium[d].blocks_in_use, s0.medium[d].blocks_in_use);
        }
        size_t per = s1.span_size / medium_sizes[c];
        assert_true(s1.medium[c].pools_in_use >= ((size_t)k + per - 1) / per);
        assert_int_equal(s1.blocks_in_use, s0.blocks_in_use);   /* pools' only */
        assert_int_equal(s1.large_allocs, s0.large_allocs);
        check_sums(&s1);
        check_sums(&s2);
    }
}

/* Requests above SHED_MEDIUM_MAX bytes are counted as large and not as
 * blocks. */
static void test_large_counted(void **state)
{
    (void)state;
    struct shed_stats s0, s1;
    shed_stats(&s0);
    void *a = shed_malloc(SHED_MEDIUM_MAX + 1), *b = shed_calloc(10, SHED_MEDIUM_MAX / 8),
         *c = shed_aligned_alloc(2 * SHED_MEDIUM_MAX, 64);
    shed_stats(&s1);
    bool all = a && b && c;
    shed_free(a);
    shed_free(b);
    shed_free(c);
    assert_true(all);
    assert_int_equal(s1.large_allocs, s0.large_allocs + 3);
    assert_int_equal(s1.blocks_in_use, s0.blocks_in_use);
}

/* Large requests are counted per thread: a thread's count outlives the
 * thread (its theap is recycled, not lost), and a thread whose first call is
 * a large one (it has no theap yet) is counted too. */
static void *large_only(void *arg)
{
    for (int i = 0; i < 5; i++)
        shed_free(shed_malloc(SHED_MEDIUM_MAX + 1000));
    return arg;
}

static void *small_then_large(void *arg)
{
    void *s = shed_malloc(16);
    for (int i = 0; i < 7; i++)
        shed_free(shed_malloc(SHED_MEDIUM_MAX + 600));
    shed_free(s);
    return arg;
}

static void test_large_counted_threads(void **state)
{
    (void)state;
    struct shed_stats s0, s1;
    pthread_t a, b;
    shed_stats(&s0);
    assert_int_equal(pthread_create(&a, NULL, large_only, NULL), 0);
    assert_int_equal(pthread_create(&b, NULL, small_then_large, NULL), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    shed_stats(&s1);
    assert_int_equal(s1.large_allocs, s0.large_allocs + 12);
}

/* A number of the text table: digits with thousands separators. */
static size_t text_number(const char **s)
{
    size_t v = 0;
    while (**s == ' ')
        (*s)++;
    for (; (**s >= '0' && **s <= '9') || **s == ','; (*s)++)
        if (**s != ',')
            v = v * 10 + (size_t)(**s - '0');
    return v;
}

/* A row of the class table: blocks, pools and the pools by fill (the live
 * bytes and the fill are skipped); false if line is not the row of name. */
static bool text_row(const char *line, const char *name, size_t *v)
{
    while (*line == ' ')
        line++;
    size_t n = strlen(name);
    if (strncmp(line, name, n) != 0 || line[n] != ' ')
        return false;
    line += n;
    v[0] = text_number(&line);
    line = strstr(line, " B") ? strstr(line, " B") + 2 : strstr(line, "iB") + 2;
    v[1] = text_number(&line);
    line = strchr(line, '|');
    if (!line)
        return false;
    line++;
    for (int b = 0; b < SHED_FILL_BINS; b++)
        v[2 + b] = text_number(&line);
    return true;
}

/* The table printed agrees with the struct: the headline, class 208's row
 * and the totals, histogram included. */
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
    size_t v[2 + SHED_FILL_BINS];
    while (fgets(line, sizeof line, f)) {
        head |= strncmp(line, "shed: ", 6) == 0 && strstr(line, " resident for ") &&
                strstr(line, " live");
        if (text_row(line, "total", v)) {
            assert_int_equal(v[0], st.blocks_in_use);
            assert_int_equal(v[1], st.pools_in_use);
            for (int b = 0; b < SHED_FILL_BINS; b++)
                assert_int_equal(v[2 + b], st.pools_by_fill[b]);
            total = true;
        } else if (text_row(line, "208", v)) {
            assert_int_equal(v[0], st.classes[12].blocks_in_use);
            assert_true(v[0] >= 10);
            assert_int_equal(v[1], st.classes[12].pools_in_use);
            for (int b = 0; b < SHED_FILL_BINS; b++)
                assert_int_equal(v[2 + b], st.fill[12].pools_by_fill[b]);
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

/* Pools by fill, in a fresh thread (no pool of its own yet): blocks of one
 * class come from one pool until it is full, so 3 pools and a few blocks
 * make 3 full pools and one under 10%; freeing half of the first pool's
 * blocks makes it half full (the 50%-90% bin).  The histograms move by
 * exactly that, and add up to the pools in use. */
struct fill_delta { struct shed_stats s0, s1, s2; size_t per, pools; };

static void *fill_thread(void *arg)
{
    struct fill_delta *d = arg;
    enum { SIZE = 64, C = SIZE / 16 - 1 };
    d->per = page_size() / SIZE;
    size_t n = 3 * d->per + (d->per / 20 ? d->per / 20 : 1);
    void **p = malloc(n * sizeof *p);
    shed_stats(&d->s0);
    for (size_t i = 0; i < n; i++)
        p[i] = shed_malloc(SIZE);
    shed_stats(&d->s1);
    for (size_t i = 0; i < d->per / 2; i++)
        shed_free(p[i]);
    shed_stats(&d->s2);
    for (size_t i = d->per / 2; i < n; i++)
        shed_free(p[i]);
    free(p);
    return NULL;
}

static void check_fill_sums(const struct shed_stats *st)
{
    size_t all[SHED_FILL_BINS] = { 0 }, pools = 0;
    for (int c = 0; c < SHED_NUM_CLASSES; c++) {
        size_t in_class = 0;
        for (int b = 0; b < SHED_FILL_BINS; b++) {
            all[b] += st->fill[c].pools_by_fill[b];
            in_class += st->fill[c].pools_by_fill[b];
        }
        assert_int_equal(in_class, st->classes[c].pools_in_use);
        assert_int_equal(st->fill[c].blocks_per_pool,
                         page_size() / st->classes[c].block_size);
    }
    for (int b = 0; b < SHED_FILL_BINS; b++) {
        assert_int_equal(all[b], st->pools_by_fill[b]);
        pools += all[b];
    }
    assert_int_equal(pools, st->pools_in_use);
    assert_true(st->pools_untouched <= st->pools_released);
    assert_int_equal(st->size, sizeof *st);
}

static void test_fill_histogram(void **state)
{
    (void)state;
    struct fill_delta d;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fill_thread, &d), 0);
    pthread_join(t, NULL);
    enum { C = 64 / 16 - 1 };
    long delta[2][SHED_FILL_BINS];
    for (int b = 0; b < SHED_FILL_BINS; b++) {
        delta[0][b] = (long)d.s1.fill[C].pools_by_fill[b] - (long)d.s0.fill[C].pools_by_fill[b];
        delta[1][b] = (long)d.s2.fill[C].pools_by_fill[b] - (long)d.s0.fill[C].pools_by_fill[b];
    }
    long taken = (long)d.s1.classes[C].pools_in_use - (long)d.s0.classes[C].pools_in_use;
    assert_true(taken >= 4);
    long want1[SHED_FILL_BINS] = { taken - 4, 1, 0, 0, 0, 3 };
    long want2[SHED_FILL_BINS] = { taken - 4, 1, 0, 1, 0, 2 };
    for (int b = 0; b < SHED_FILL_BINS; b++) {
        assert_int_equal(delta[0][b], want1[b]);
        assert_int_equal(delta[1][b], want2[b]);
    }
    check_fill_sums(&d.s0);
    check_fill_sums(&d.s1);
    check_fill_sums(&d.s2);
}

/* A program built against shed 0.1.0 calls shed_stats with the struct of
 * then: nothing is written past it.  One built against 0.2 (24 medium
 * classes) gets that struct's layout.  A newer, bigger struct gets zeros
 * past ours; a size below the first struct's is refused. */
static void test_stats_sizes(void **state)
{
    (void)state;
    enum { CANARY = 256 };
    size_t old = SHED_STATS_SIZE_0_1;
    unsigned char *buf = malloc(sizeof(struct shed_stats) + CANARY);
    assert_non_null(buf);
    void *keep = shed_malloc(100);
    struct shed_stats now;
    shed_stats(&now);

    memset(buf, 0xa5, old + CANARY);
    assert_int_equal((shed_stats)((struct shed_stats *)buf), 0);   /* the 0.1.0 symbol */
    for (size_t i = old; i < old + CANARY; i++)
        assert_int_equal(buf[i], 0xa5);
    assert_int_equal(((struct shed_stats *)buf)->blocks_in_use, now.blocks_in_use);
    assert_int_equal(((struct shed_stats *)buf)->pool_size, page_size());

    memset(buf, 0xa5, old + CANARY);
    assert_int_equal(shed_stats_get((struct shed_stats *)buf, old), 0);
    for (size_t i = old; i < old + CANARY; i++)
        assert_int_equal(buf[i], 0xa5);

    memset(buf, 0xa5, sizeof now + CANARY);
    assert_int_equal(shed_stats_get((struct shed_stats *)buf, sizeof now + CANARY), 0);
    assert_int_equal(((struct shed_stats *)buf)->size, sizeof now);
    for (size_t i = sizeof now; i < sizeof now + CANARY; i++)
        assert_int_equal(buf[i], 0);

    /* shed 0.2's struct: 24 medium classes, then the four span fields. */
    struct stats_0_2 {
        unsigned char head[offsetof(struct shed_stats, medium)];
        struct shed_class_stats medium[24];
        size_t spans_in_use, span_size, medium_bytes_mapped, medium_bytes_resident;
    } *v2 = (struct stats_0_2 *)buf;
    memset(buf, 0xa5, sizeof *v2 + CANARY);
    assert_int_equal(shed_stats_get((struct shed_stats *)buf, sizeof *v2), 0);
    assert_int_equal(((struct shed_stats *)buf)->size, sizeof *v2);
    assert_int_equal(v2->medium[23].block_size, 32768);
    assert_int_equal(v2->span_size, now.span_size);
    assert_true(v2->span_size > 0);
    assert_int_equal(v2->medium_bytes_mapped, now.medium_bytes_mapped);
    for (size_t i = sizeof *v2; i < sizeof *v2 + CANARY; i++)
        assert_int_equal(buf[i], 0xa5);

    errno = 0;
    assert_int_equal(shed_stats_get((struct shed_stats *)buf, old - 1), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(shed_stats_get(NULL, sizeof now), -1);
    assert_int_equal(errno, EINVAL);
    shed_free(keep);
    free(buf);
}

/* The JSON and the map calls: NULL is refused, and the JSON is one line
 * that starts with the pid. */
static void test_print_json_and_map(void **state)
{
    (void)state;
    errno = 0;
    assert_int_equal(shed_heap_map_svg(NULL), -1);
    assert_int_equal(errno, EINVAL);
    shed_stats_print_json(NULL);                  /* nothing, no crash */
    FILE *f = tmpfile();
    assert_non_null(f);
    shed_stats_print_json(f);
    rewind(f);
    char line[64], want[32];
    assert_non_null(fgets(line, sizeof line, f));
    snprintf(want, sizeof want, "{\"pid\":%d,", (int)getpid());
    assert_memory_equal(line, want, strlen(want));
    fclose(f);
    /* shed_config refuses bad values of the new keys with EINVAL */
    errno = 0;
    assert_int_equal(shed_config("stats_interval_ms=fast"), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(shed_config("stats_file="), -1);
    assert_int_equal(errno, EINVAL);
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
        cmocka_unit_test(test_large_counted_threads),
        cmocka_unit_test(test_medium_counts),
        cmocka_unit_test(test_stats_print),
        cmocka_unit_test(test_fill_histogram),
        cmocka_unit_test(test_stats_sizes),
        cmocka_unit_test(test_print_json_and_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Configuration: shed_config() accepts every key and valid value, refuses
 * unknown keys and bad values with -1/EINVAL (keeping the setting it had and
 * still applying the valid items), and SHED_CONF, read at start-up, reports
 * each bad item in one "shed: " line and keeps going.  The environment cases
 * re-execute this program with "--child", which prints the stats settings line.
 */
#include "shed_test.h"

static const char *self;     /* argv[0], to re-execute */

static void settings_have(const char *what)
{
    char head[256];
    stats_settings(head, sizeof head);
    if (!strstr(head, what))
        fail_msg("settings \"%s\" lacks \"%s\"", head, what);
}

static void test_valid_items(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "release=batched", "release=inline", "release=manual", "release=off",
        "advice=free", "advice=dontneed", "backend=madvise", "backend=process_madvise",
        "backend=auto", "delay_ms=0", "delay_ms=100", "max_dirty=0", "max_dirty=64",
        "batch=1", "batch=1024", "on_error=report", "on_error=abort", "stats=0",
        "release=manual,advice=dontneed,delay_ms=50,batch=16",
        "quarantine_kb=0", "quarantine_kb=4194304", "quarantine_kb=20000",
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        errno = 0;
        if (shed_config(ok[i]) != 0)
            fail_msg("shed_config(\"%s\") refused (errno %d)", ok[i], errno);
    }
    settings_have("release=manual ");
    assert_int_equal(shed_config("release=inline"), 0);
    settings_have("release=inline ");
}

static void test_bad_items(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "nonsense=1", "release=bogus", "release=", "release", "advice=sideways",
        "backend=carrier_pigeon", "delay_ms=abc", "delay_ms=-5", "delay_ms=12x",
        "batch=0", "on_error=maybe", "stats=2", "=1",
        "quarantine_kb=-1", "quarantine_kb=4194305", "quarantine_kb=1k",
    };
    assert_int_equal(shed_config("release=inline"), 0);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        errno = 0;
        if (shed_config(bad[i]) != -1 || errno != EINVAL)
            fail_msg("shed_config(\"%s\") accepted", bad[i]);
        settings_have("release=inline ");     /* the setting is kept */
    }
    errno = 0;
    assert_int_equal(shed_config(NULL), -1);
    assert_int_equal(errno, EINVAL);
}

/* A list with a bad item still applies the good ones. */
static void test_mixed_items(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=inline"), 0);
    errno = 0;
    assert_int_equal(shed_config("bogus=1,release=manual"), -1);
    assert_int_equal(errno, EINVAL);
    settings_have("release=manual ");
    assert_int_equal(shed_config("release=off,backend=nope"), -1);
    settings_have("release=off ");
}

static int run_self(const char *conf, const char *stats, char *out, char *err, size_t len)
{
    char *argv[] = { (char *)self, "--child", NULL };
    return run_exec(argv, conf, stats, out, err, len);
}

static void close_stderr(void)
{
    fclose(stderr);
}

static int child_main(bool closes)
{
    if (closes) {               /* as sort(1) does, at exit, after shed's handler */
        shed_free(shed_malloc(1));
        atexit(close_stderr);
    }
    void *p[100];
    for (int i = 0; i < 100; i++)
        p[i] = shed_malloc((size_t)i * 5);
    for (int i = 0; i < 100; i++)
        shed_free(p[i]);
    char head[256];
    stats_settings(head, sizeof head);
    fputs(head, stdout);
    struct shed_stats st;
    shed_stats(&st);
    printf("reserved=%zu\n", st.bytes_reserved);
    return 0;
}

static void test_env_conf(void **state)
{
    (void)state;
    char out[4096], err[4096];
    int st = run_self("release=manual,delay_ms=7", NULL, out, err, sizeof out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_non_null(strstr(out, "  release=manual "));
    assert_int_equal(count_lines(err, "shed: "), 0);
}

static void test_env_conf_bad(void **state)
{
    (void)state;
    char out[4096], err[4096];
    int st = run_self("bogus=1,release=manual,advice=sideways", NULL, out, err, sizeof out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* one line per bad item, each naming it; the good item applied */
    assert_int_equal(count_lines(err, "shed: "), 2);
    assert_non_null(strstr(err, "bogus"));
    assert_non_null(strstr(err, "advice=sideways"));
    assert_non_null(strstr(out, "  release=manual "));

    /* every item bad: defaults (release=batched) */
    st = run_self("release=sometimes", NULL, out, err, sizeof out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(count_lines(err, "shed: "), 1);
    assert_non_null(strstr(err, "release=sometimes"));
    assert_non_null(strstr(out, "  release=batched "));
}

/* region_mb, read at start-up only, sizes the region; a later shed_config
 * accepts it and changes nothing. */
static void test_env_region(void **state)
{
    (void)state;
    char out[4096], err[4096];
    int st = run_self("region_mb=64", NULL, out, err, sizeof out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_non_null(strstr(out, "reserved=67108864\n"));
    assert_int_equal(count_lines(err, "shed: "), 0);
    struct shed_stats s0, s1;
    shed_stats(&s0);
    assert_int_equal(shed_config("region_mb=64"), 0);
    shed_stats(&s1);
    assert_int_equal(s1.bytes_reserved, s0.bytes_reserved);
}

/* SHED_STATS=1 prints the table to stderr at exit. */
static void test_env_stats(void **state)
{
    (void)state;
    char out[4096], err[4096], line[256];
    int st = run_self(NULL, "1", out, err, sizeof out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_true(find_line(err, "  release=", line, sizeof line));
    assert_true(find_line(err, " total ", line, sizeof line));
    st = run_self(NULL, NULL, out, err, sizeof out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(count_lines(err, "shed: "), 0);

    /* The program closes stderr in an exit handler that runs before shed's:
     * the table still comes, on the copy of stderr shed took. */
    char *argv[] = { (char *)self, "--child-closes", NULL };
    st = run_exec(argv, NULL, "1", out, err, sizeof out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_true(find_line(err, "  release=", line, sizeof line));
    assert_true(find_line(err, " total ", line, sizeof line));
}

int main(int argc, char **argv)
{
    self = argv[0];
    if (argc > 1 && strcmp(argv[1], "--child") == 0)
        return child_main(false);
    if (argc > 1 && strcmp(argv[1], "--child-closes") == 0)
        return child_main(true);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_items),
        cmocka_unit_test(test_bad_items),
        cmocka_unit_test(test_mixed_items),
        cmocka_unit_test(test_env_conf),
        cmocka_unit_test(test_env_conf_bad),
        cmocka_unit_test(test_env_region),
        cmocka_unit_test(test_env_stats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Configuration: SHED_CONF="key=value,key=value" at start-up, shed_config()
 * from code.  A bad item is reported and ignored; the others still apply.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "shed_impl.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

struct choice { const char *name; int value; };

static const struct choice releases[] = {
    { "batched", REL_BATCHED }, { "inline", REL_INLINE },
    { "manual", REL_MANUAL }, { "off", REL_OFF }, { NULL, 0 } };
static const struct choice advices[] = {
    { "dontneed", MADV_DONTNEED }, { "free", MADV_FREE }, { NULL, 0 } };
static const struct choice backends[] = {
    { "auto", BK_AUTO }, { "process_madvise", BK_PMADV }, { "madvise", BK_MADV },
    { "io_uring", BK_URING }, { NULL, 0 } };
static const struct choice on_errors[] = {
    { "abort", 1 }, { "report", 0 }, { NULL, 0 } };
static const struct choice bools[] = {
    { "0", 0 }, { "1", 1 }, { "no", 0 }, { "yes", 1 }, { NULL, 0 } };
static const struct choice stats_kinds[] = {
    { "0", 0 }, { "1", 1 }, { "no", 0 }, { "yes", 1 }, { "json", 2 }, { NULL, 0 } };

enum kind { K_CHOICE, K_NUMBER, K_PATH };
struct key {
    const char *name;
    enum kind kind;
    const struct choice *choices;     /* K_CHOICE */
    unsigned long min, max;           /* K_NUMBER */
    _Atomic int *ivar;
    _Atomic unsigned *uvar;
    size_t *svar;                     /* region_mb: start-up only */
};

static const struct key keys[] = {
    { "release", K_CHOICE, releases, 0, 0, &g.opt.release, NULL, NULL },
    { "advice", K_CHOICE, advices, 0, 0, &g.opt.advice, NULL, NULL },
    { "backend", K_CHOICE, backends, 0, 0, &g.opt.backend, NULL, NULL },
    { "on_error", K_CHOICE, on_errors, 0, 0, &g.opt.on_error_abort, NULL, NULL },
    { "stats", K_CHOICE, stats_kinds, 0, 0, &g.opt.stats_at_exit, NULL, NULL },
    { "stats_interval_ms", K_NUMBER, NULL, 0, 86400000, NULL, &g.opt.stats_interval_ms, NULL },
    { "stats_file", K_PATH, NULL, 0, 0, NULL, NULL, NULL },
    { "freeze_on_fork", K_CHOICE, bools, 0, 0, &g.opt.freeze_on_fork, NULL, NULL },
    { "delay_ms", K_NUMBER, NULL, 0, 3600000, NULL, &g.opt.delay_ms, NULL },
    { "max_dirty", K_NUMBER, NULL, 0, UINT_MAX, NULL, &g.opt.max_dirty, NULL },
    { "batch", K_NUMBER, NULL, 1, IOV_MAX, NULL, &g.opt.batch, NULL },
    { "quarantine_kb", K_NUMBER, NULL, 0, 1u << 22, NULL, &g.opt.quarantine_kb, NULL },
    { "thread_after_kb", K_NUMBER, NULL, 0, 1u << 30, NULL, &g.opt.thread_after_kb, NULL },
    { "region_mb", K_NUMBER, NULL, 16, 1u << 22, NULL, NULL, &g.opt.region_size },
    { NULL, 0, NULL, 0, 0, NULL, NULL, NULL } };

/* The name of value among key's choices ("batched" for release=REL_BATCHED),
 * "?" for a value it does not name: the one table serves parsing and stats. */
const char *option_choice_name(const char *key, int value)
{
    for (const struct key *k = keys; k->name; k++)
        if (k->kind == K_CHOICE && strcmp(k->name, key) == 0)
            for (const struct choice *c = k->choices; c->name; c++)
                if (c->value == value)
                    return c->name;
    return "?";
}

void options_defaults(void)
{
    RELAXED_STORE(g.opt.release, REL_BATCHED);
    RELAXED_STORE(g.opt.advice, MADV_DONTNEED);
    RELAXED_STORE(g.opt.backend, BK_AUTO);
    RELAXED_STORE(g.opt.delay_ms, 100);
    RELAXED_STORE(g.opt.max_dirty, 0);
    RELAXED_STORE(g.opt.batch, IOV_MAX);
    RELAXED_STORE(g.opt.thread_after_kb, 4096);
    RELAXED_STORE(g.opt.on_error_abort, 1);
    RELAXED_STORE(g.opt.stats_at_exit, 0);
    RELAXED_STORE(g.opt.stats_interval_ms, 0);
    RELAXED_STORE(g.opt.freeze_on_fork, 0);
    RELAXED_STORE(g.opt.quarantine_kb, 20000);   /* memcheck's --freelist-vol */
    g.opt.region_size = DEFAULT_REGION;
}

/* Apply one "key=value"; false when it is not valid. */
static bool apply_one(char *item, bool report)
{
    char *eq = strchr(item, '=');
    if (eq)
        *eq = 0;
    const struct key *k = keys;
    while (k->name && strcmp(k->name, item) != 0)
        k++;
    if (!k->name || !eq) {
        if (report)
            shed_warn(k->name ? "missing value for SHED_CONF key" : "unknown SHED_CONF key", item);
        return false;
    }
    const char *val = eq + 1;
    if (k->kind == K_CHOICE) {
        const struct choice *c = k->choices;
        while (c->name && strcmp(c->name, val) != 0)
            c++;
        if (!c->name)
            goto bad;
        RELAXED_STORE(*k->ivar, c->value);
        return true;
    }
    if (k->kind == K_PATH) {          /* stats_file: report.c keeps it */
        if (!report_set_file(val))
            goto bad;
        return true;
    }
    char *end;
    errno = 0;
    unsigned long v = strtoul(val, &end, 10);
    if (errno || end == val || *end || *val == '-' || v < k->min || v > k->max)
        goto bad;
    if (k->uvar)
        RELAXED_STORE(*k->uvar, (unsigned)v);
    else if (atomic_load(&g.state) < S_READY)   /* SHED_CONF: while S_INITIALISING */
        *k->svar = (size_t)v << 20;
    return true;
bad:
    if (report) {
        *eq = '=';
        shed_warn("bad value in SHED_CONF, default kept", item);
    }
    return false;
}

int options_apply(const char *settings, bool report)
{
    char buf[1024];
    size_t n = strlen(settings);
    if (n >= sizeof buf) {
        if (report)
            shed_warn("SHED_CONF too long, ignored", NULL);
        return -1;
    }
    memcpy(buf, settings, n + 1);
    int bad = 0;
    for (char *save, *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save))
        bad |= !apply_one(item, report);
    return bad ? -1 : 0;
}

void options_from_env(void)
{
    const char *conf = getenv("SHED_CONF");
    if (conf)
        options_apply(conf, true);
    const char *st = getenv("SHED_STATS");
    if (st && *st && strcmp(st, "0") != 0)
        RELAXED_STORE(g.opt.stats_at_exit, strcmp(st, "json") == 0 ? 2 : 1);
}

EXPORT int shed_config(const char *settings)
{
    if (!settings) {
        errno = EINVAL;
        return -1;
    }
    shed_ready();          /* read SHED_CONF first, so these settings win */
    int old_backend = RELAXED_LOAD(g.opt.backend), old_advice = RELAXED_LOAD(g.opt.advice);
    int old_release = RELAXED_LOAD(g.opt.release);
    unsigned old_interval = RELAXED_LOAD(g.opt.stats_interval_ms);
    unsigned old_quarantine = RELAXED_LOAD(g.opt.quarantine_kb);
    int r = options_apply(settings, false);
    if (RELAXED_LOAD(g.opt.quarantine_kb) < old_quarantine)
        quarantine_trim();
    if (RELAXED_LOAD(g.opt.backend) != old_backend || RELAXED_LOAD(g.opt.advice) != old_advice)
        os_probe_backend();
    if (RELAXED_LOAD(g.opt.release) != old_release)
        medium_park_set();
    if (RELAXED_LOAD(g.opt.release) == REL_BATCHED && old_release != REL_BATCHED &&
        atomic_load(&g.state) == S_READY) {
        releaser_collect_soon();      /* pools freed meanwhile are due */
        releaser_ensure();
    }
    if (RELAXED_LOAD(g.opt.stats_interval_ms) != old_interval &&
        atomic_load(&g.state) == S_READY)
        releaser_stats_changed();     /* the thread writes the JSON lines */
    if (r)
        errno = EINVAL;
    return r;
}

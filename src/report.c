/*
 * Statistics for people and for tools: shed_stats_print (text),
 * shed_stats_print_json, the JSON lines the release thread writes every
 * stats_interval_ms, and the reports at exit (SHED_STATS, SHED_MAP).
 *
 * Everything goes through struct out, a buffer flushed with fwrite to a FILE
 * or with write(2) to a descriptor, and the numbers are formatted here, not
 * by printf: the release thread must not call the program's malloc (stdio
 * may), which would come back into shed while the thread is inside it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "shed_impl.h"

#define FMT_MAX 32                 /* the longest number fmt_* writes, and more */
/* Room for a whole report (the JSON object with every class is under
 * 16 KiB), written with one write(2), so that processes sharing a file or
 * stderr do not mix their lines. */
#define REPORT_MAX 32768

static const char *const bin_text[SHED_FILL_BINS] = { "empty", "<10%", "<50%", "<90%", "<100%",
                                                      "full" };
static const char *const bin_json[SHED_FILL_BINS] = { "empty", "under10", "under50", "under90",
                                                      "under100", "full" };

static const char *release_name(void)
{
    return option_choice_name("release", RELAXED_LOAD(g.opt.release));
}

static const char *backend_name(void)
{
    return option_choice_name("backend", os_backend_in_use());
}

/* ---- the buffer ---- */

void out_flush(struct out *o)
{
    const char *p = o->buf;
    size_t n = o->failed ? 0 : o->len;
    if (o->f && n && fwrite(p, 1, n, o->f) != n)
        o->failed = true;
    while (!o->f && n > 0) {
        ssize_t w = write(o->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            o->failed = true;
            break;
        }
        p += w;
        n -= (size_t)w;
    }
    o->len = 0;
}

static void out_mem(struct out *o, const char *s, size_t n)
{
    while (n > 0) {
        if (o->len == o->cap)
            out_flush(o);
        size_t k = o->cap - o->len < n ? o->cap - o->len : n;
        memcpy(o->buf + o->len, s, k);
        o->len += k;
        s += k;
        n -= k;
    }
}

void out_str(struct out *o, const char *s)
{
    out_mem(o, s, strlen(s));
}

/* s right-aligned in width columns. */
static void out_field(struct out *o, const char *s, size_t width)
{
    for (size_t n = strlen(s); n < width; n++)
        out_mem(o, " ", 1);
    out_str(o, s);
}

/* ---- numbers ---- */

static char *fmt_u64(char *buf, uint64_t v)
{
    char *p = buf + FMT_MAX - 1;
    *p = 0;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return p;
}

char *fmt_count(char *buf, uint64_t v)
{
    char *p = buf + FMT_MAX - 1;
    *p = 0;
    for (int digits = 0; digits == 0 || v; digits++) {
        if (digits && digits % 3 == 0)
            *--p = ',';
        *--p = (char)('0' + v % 10);
        v /= 10;
    }
    return p;
}

/* Bytes in B, KiB, MiB, GiB or TiB: one decimal below 10 of the unit. */
char *fmt_bytes(char *buf, uint64_t v)
{
    static const char *const units[] = { " B", " KiB", " MiB", " GiB", " TiB" };
    unsigned u = 0;
    uint64_t div = 1;
    while (u + 1 < sizeof units / sizeof units[0] && v >= div * 1024) {
        div *= 1024;
        u++;
    }
    uint64_t tenths = v / div * 10 + (v % div * 10 + div / 2) / div;
    char num[FMT_MAX], *p = fmt_u64(num, u && tenths < 100 ? tenths / 10 : (tenths + 5) / 10);
    size_t n = strlen(p);
    memcpy(buf, p, n);
    if (u && tenths < 100) {
        buf[n++] = '.';
        buf[n++] = (char)('0' + tenths % 10);
    }
    strcpy(buf + n, units[u]);
    return buf;
}

/* part of whole in percent, "-" when whole is 0, "<1%" for a little. */
static char *fmt_pct(char *buf, uint64_t part, uint64_t whole)
{
    if (!whole)
        return strcpy(buf, "-");
    if (part && part * 100 < whole)
        return strcpy(buf, "<1%");
    char num[FMT_MAX], *p = fmt_u64(num, (part * 100 + whole / 2) / whole);
    size_t n = strlen(p);
    memcpy(buf, p, n);
    strcpy(buf + n, "%");
    return buf;
}

/* printf for the reports, without malloc: %s a string, %u a uint64_t,
 * %n a uint64_t with thousands separators, %b a uint64_t of bytes in B to
 * TiB.  (size_t is uint64_t on the 64-bit systems shed runs on.) */
void out_fmt(struct out *o, const char *fmt, ...)
{
    char a[FMT_MAX];
    va_list ap;
    va_start(ap, fmt);
    for (const char *p = fmt; *p; p++) {
        const char *pct = strchr(p, '%');
        if (!pct) {
            out_str(o, p);
            break;
        }
        out_mem(o, p, (size_t)(pct - p));
        p = pct + 1;
        if (*p == 's')
            out_str(o, va_arg(ap, const char *));
        else if (*p == 'u')
            out_str(o, fmt_u64(a, va_arg(ap, uint64_t)));
        else if (*p == 'n')
            out_str(o, fmt_count(a, va_arg(ap, uint64_t)));
        else if (*p == 'b')
            out_str(o, fmt_bytes(a, va_arg(ap, uint64_t)));
        else
            break;
    }
    va_end(ap);
}

/* The noun for n of them. */
static const char *noun(uint64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

/* Blocks that the pools of class c now in use hold. */
static uint64_t class_capacity(const struct shed_stats *st, unsigned c)
{
    uint64_t pools = 0;
    for (unsigned b = 0; b < SHED_FILL_BINS; b++)
        pools += st->fill[c].pools_by_fill[b];
    return pools * st->fill[c].blocks_per_pool;
}

/* ---- the reports ---- */

/* The line that says it all: resident against live, and the biggest of the
 * reasons for the difference (sparse pools, free pools not yet released,
 * empty pools a thread keeps), or how full the pools are on average. */
void report_headline(struct out *o, const struct shed_stats *st)
{
    char a[FMT_MAX];
    out_fmt(o, "%b resident for %b live", st->bytes_resident, st->bytes_in_use);
    /* Empty pools are no reason: a thread's spare pools were never
     * touched, and cost no memory. */
    const struct { size_t pools; const char *what; } why[] = {
        { st->pools_by_fill[SHED_FILL_UNDER10], " pools under 10% full" },
        { st->pools_dirty + st->pools_releasing, " free pools not yet released" },
    };
    unsigned best = why[1].pools > why[0].pools;
    uint64_t extra = st->bytes_resident > st->bytes_in_use ? st->bytes_resident - st->bytes_in_use : 0;
    uint64_t bytes = (uint64_t)why[best].pools * st->pool_size;
    if (bytes > 0 && bytes * 4 >= extra) {
        out_fmt(o, ": %b in %n%s", bytes, why[best].pools, why[best].what);
    } else if (st->blocks_in_use) {
        uint64_t cap = 0;
        for (unsigned c = 0; c < NCLS; c++)
            cap += class_capacity(st, c) -
                   st->fill[c].pools_by_fill[SHED_FILL_EMPTY] * st->fill[c].blocks_per_pool;
        out_fmt(o, ": the pools that hold blocks are %s full", fmt_pct(a, st->blocks_in_use, cap));
    }
}

/* One row of the class table: size, blocks, live bytes, pools, fill, and
 * the pools by fill: 78 columns. */
static void text_row(struct out *o, const char *name, uint64_t blocks, uint64_t bytes,
                     uint64_t pools, uint64_t cap, const size_t *bins)
{
    char a[FMT_MAX];
    out_field(o, name, 6);
    out_field(o, fmt_count(a, blocks), 11);
    out_field(o, fmt_bytes(a, bytes), 9);
    out_field(o, fmt_count(a, pools), 8);
    out_field(o, fmt_pct(a, blocks, cap), 5);
    out_str(o, " |");
    for (unsigned b = 0; b < SHED_FILL_BINS; b++)
        out_field(o, fmt_count(a, bins[b]), b ? 6 : 7);
    out_str(o, "\n");
}

static void report_text(struct out *o, const struct shed_stats *st)
{
    char a[FMT_MAX];
    out_str(o, "shed: ");
    report_headline(o, st);
    out_fmt(o, "\n  release=%s backend=%s pool=%b\n", release_name(), backend_name(),
            st->pool_size);
    static const char *const head[] = { "size", "blocks", "live", "pools", "full" };
    static const unsigned width[] = { 6, 11, 9, 8, 5 };
    for (unsigned i = 0; i < 5; i++)
        out_field(o, head[i], width[i]);
    out_str(o, " |  pools by fill:\n");
    out_field(o, "|", 41);
    for (unsigned i = 0; i < SHED_FILL_BINS; i++)
        out_field(o, bin_text[i], i ? 6 : 7);
    out_str(o, "\n");
    uint64_t cap_all = 0;
    for (unsigned c = 0; c < NCLS; c++) {
        const struct shed_class_stats *cs = &st->classes[c];
        uint64_t cap = class_capacity(st, c);
        cap_all += cap;
        if (cs->blocks_in_use || cs->pools_in_use)
            text_row(o, fmt_u64(a, cs->block_size), cs->blocks_in_use, cs->bytes_in_use,
                     cs->pools_in_use, cap, st->fill[c].pools_by_fill);
    }
    text_row(o, "total", st->blocks_in_use, st->bytes_in_use, st->pools_in_use, cap_all,
             st->pools_by_fill);
    for (unsigned c = 0; c < MED_NCLS; c++) {
        const struct shed_class_stats *cs = &st->medium[c];
        if (cs->blocks_in_use || cs->pools_in_use)
            out_fmt(o, "  medium %n: %n blocks, %b live, %n %s\n", (uint64_t)cs->block_size,
                    (uint64_t)cs->blocks_in_use, (uint64_t)cs->bytes_in_use,
                    (uint64_t)cs->pools_in_use, noun(cs->pools_in_use, "span", "spans"));
    }
    out_fmt(o, "  spans: %n in use, %b carved, %b resident\n", (uint64_t)st->spans_in_use,
            (uint64_t)st->medium_bytes_mapped, (uint64_t)st->medium_bytes_resident);
    out_fmt(o, "  pools: %n in use, %n dirty, %n releasing, %n released (%n never used)\n",
            st->pools_in_use, st->pools_dirty, st->pools_releasing, st->pools_released,
            st->pools_untouched);
    out_fmt(o, "  arenas: %n, %b of %b reserved\n", st->arenas, st->bytes_mapped,
            st->bytes_reserved);
    out_fmt(o, "  released: %n %s (%b) in %n %s, %n %s, %n ms\n",
            st->pages_released, noun(st->pages_released, "page", "pages"),
            st->pages_released * st->pool_size,
            st->release_ranges, noun(st->release_ranges, "range", "ranges"),
            st->release_batches, noun(st->release_batches, "batch", "batches"),
            st->release_ns / 1000000);
    out_fmt(o, "  release calls: %n (%n from the program's threads), %n failed\n",
            st->release_syscalls, st->release_syscalls_app, st->release_failures);
    out_fmt(o, "  other: %n %s reused, %n %s, %n %s\n",
            st->pools_reused_dirty, noun(st->pools_reused_dirty, "dirty pool", "dirty pools"),
            st->large_allocs, noun(st->large_allocs, "large allocation", "large allocations"),
            st->errors, noun(st->errors, "error", "errors"));
}

static void json_bins(struct out *o, const size_t *bins)
{
    out_str(o, ",\"pools_by_fill\":");
    for (unsigned b = 0; b < SHED_FILL_BINS; b++)
        out_fmt(o, "%s\"%s\":%u", b ? "," : "{", bin_json[b], (uint64_t)bins[b]);
    out_str(o, "}");
}

/* One JSON object, on one line; the keys are the names of struct
 * shed_stats's fields, plus pid, time_ms, release_mode, backend, summary. */
static void report_json(struct out *o, const struct shed_stats *st)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    out_fmt(o, "{\"pid\":%u,\"time_ms\":%u,\"release_mode\":\"%s\",\"backend\":\"%s\","
               "\"summary\":\"", (uint64_t)getpid(),
            (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000,
            release_name(), backend_name());
    report_headline(o, st);           /* no character JSON must escape */
    out_str(o, "\"");
#define J(field) out_fmt(o, ",\"" #field "\":%u", (uint64_t)st->field)
    J(blocks_in_use); J(bytes_in_use); J(pools_in_use); J(pools_dirty);
    J(pools_releasing); J(pools_released); J(pools_untouched); J(arenas);
    J(pool_size); J(bytes_reserved); J(bytes_mapped); J(bytes_resident);
    J(release_syscalls); J(release_syscalls_app); J(release_batches);
    J(release_ranges); J(pages_released); J(release_failures); J(release_ns);
    J(pools_reused_dirty); J(large_allocs); J(errors);
    J(spans_in_use); J(span_size); J(medium_bytes_mapped); J(medium_bytes_resident);
#undef J
    json_bins(o, st->pools_by_fill);
    out_str(o, ",\"classes\":[");
    bool first = true;
    for (unsigned c = 0; c < NCLS; c++) {
        const struct shed_class_stats *cs = &st->classes[c];
        if (!cs->blocks_in_use && !cs->pools_in_use)
            continue;
        out_fmt(o, "%s{\"block_size\":%u,\"blocks_in_use\":%u,\"bytes_in_use\":%u,"
                   "\"pools_in_use\":%u,\"blocks_per_pool\":%u", first ? "" : ",",
                (uint64_t)cs->block_size, (uint64_t)cs->blocks_in_use,
                (uint64_t)cs->bytes_in_use, (uint64_t)cs->pools_in_use,
                (uint64_t)st->fill[c].blocks_per_pool);
        json_bins(o, st->fill[c].pools_by_fill);
        out_str(o, "}");
        first = false;
    }
    out_str(o, "],\"medium\":[");
    first = true;
    for (unsigned c = 0; c < MED_NCLS; c++) {
        const struct shed_class_stats *cs = &st->medium[c];
        if (!cs->blocks_in_use && !cs->pools_in_use)
            continue;
        out_fmt(o, "%s{\"block_size\":%u,\"blocks_in_use\":%u,\"bytes_in_use\":%u,"
                   "\"spans_in_use\":%u}", first ? "" : ",",
                (uint64_t)cs->block_size, (uint64_t)cs->blocks_in_use,
                (uint64_t)cs->bytes_in_use, (uint64_t)cs->pools_in_use);
        first = false;
    }
    out_str(o, "]}\n");
}

/* A report of the stats now, on out (nothing when out is NULL). */
static void print_to(FILE *out, void (*report)(struct out *, const struct shed_stats *))
{
    struct shed_stats st;
    char buf[4096];
    struct out o = { buf, 0, sizeof buf, out, -1, false };
    if (!out)
        return;
    shed_stats_get(&st, sizeof st);
    report(&o, &st);
    out_flush(&o);
}

EXPORT void shed_stats_print(FILE *out)
{
    print_to(out, report_text);
}

EXPORT void shed_stats_print_json(FILE *out)
{
    print_to(out, report_json);
}

/* ---- JSON lines from the release thread: stats_interval_ms ---- */

static struct {
    pthread_mutex_t lock;          /* path: shed_config against the thread */
    char path[256];                /* stats_file; "" for stderr */
    bool warned;                   /* that path could not be opened */
    /* the release thread's alone: */
    uint32_t next_ms;              /* when the next line is due */
    bool armed;
    char line[REPORT_MAX];         /* a line in one write(2) */
} rep = { .lock = PTHREAD_MUTEX_INITIALIZER };

bool report_set_file(const char *path)
{
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof rep.path)
        return false;
    pthread_mutex_lock(&rep.lock);
    memcpy(rep.path, path, n + 1);
    rep.warned = false;
    pthread_mutex_unlock(&rep.lock);
    return true;
}

void report_fork_child(void)
{
    pthread_mutex_init(&rep.lock, NULL);
}

/* Milliseconds until the next line is due: 0 now, UINT32_MAX never. */
uint32_t report_interval_due(void)
{
    uint32_t iv = RELAXED_LOAD(g.opt.stats_interval_ms), now = now_ms();
    if (!iv) {
        rep.armed = false;
        return UINT32_MAX;
    }
    if (!rep.armed || (int32_t)(rep.next_ms - now) > (int32_t)iv) {
        rep.next_ms = now + iv;            /* first, or the interval shrank */
        rep.armed = true;
    }
    int32_t d = (int32_t)(rep.next_ms - now);
    return d <= 0 ? 0 : (uint32_t)d;
}

/* The release thread: write a line if one is due.  The file is opened and
 * closed for each line, as shed keeps no descriptor open. */
void report_interval_tick(void)
{
    if (report_interval_due() != 0)
        return;
    uint32_t iv = RELAXED_LOAD(g.opt.stats_interval_ms), now = now_ms();
    rep.next_ms = (int32_t)(rep.next_ms + iv - now) > 0 ? rep.next_ms + iv : now + iv;
    char path[sizeof rep.path];
    pthread_mutex_lock(&rep.lock);
    memcpy(path, rep.path, sizeof path);
    pthread_mutex_unlock(&rep.lock);
    int fd = STDERR_FILENO;
    if (path[0] && (fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) < 0) {
        pthread_mutex_lock(&rep.lock);
        bool warn = !rep.warned && strcmp(path, rep.path) == 0;
        rep.warned |= warn;
        pthread_mutex_unlock(&rep.lock);
        if (warn)
            shed_warn("cannot open stats_file, no stats written", path);
        return;
    }
    struct shed_stats st;
    struct out o = { rep.line, 0, sizeof rep.line, NULL, fd, false };
    shed_stats_get(&st, sizeof st);
    report_json(&o, &st);
    out_flush(&o);
    if (fd != STDERR_FILENO)
        close(fd);
}

/* ---- at exit: SHED_STATS and SHED_MAP ---- */

static int stats_fd = -1;          /* a copy of stderr, for SHED_STATS */
static struct stat stats_fd_was;   /* what it was a copy of */
static char map_path[4096];        /* SHED_MAP */

/* The copy of stderr, if it is still that: a program may close the
 * descriptors it did not open (daemons do) and open files of its own, one
 * of which may then have the copy's number. */
static int stats_out(void)
{
    struct stat now;
    if (stats_fd >= 0 && fstat(stats_fd, &now) == 0 && now.st_dev == stats_fd_was.st_dev &&
        now.st_ino == stats_fd_was.st_ino)
        return stats_fd;
    return STDERR_FILENO;
}

/* Programs such as sort(1) close stderr in an exit handler of their own,
 * registered after ours and so run before it: print to the copy of it taken
 * at start-up. */
static void report_exit(void)
{
    static char buf[REPORT_MAX];   /* the report in one write(2) */
    int kind = RELAXED_LOAD(g.opt.stats_at_exit);
    if (kind) {
        struct shed_stats st;
        struct out o = { buf, 0, sizeof buf, NULL, stats_out(), false };
        shed_stats_get(&st, sizeof st);
        if (kind == 2)
            report_json(&o, &st);
        else
            report_text(&o, &st);
        out_flush(&o);
    }
    if (g.map_at_exit) {          /* map_path's page is touched only then */
        int fd = open(map_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        struct out o = { buf, 0, sizeof buf, NULL, fd, fd < 0 };
        if (fd >= 0) {
            heapmap_svg(&o);
            out_flush(&o);
            close(fd);
        }
        if (o.failed)
            shed_warn("cannot write the heap map of SHED_MAP", map_path);
    }
}

/* At start-up: what the exit reports need. */
void report_setup(void)
{
    const char *map = getenv("SHED_MAP");
    if (map && *map) {
        if (strlen(map) < sizeof map_path) {
            strcpy(map_path, map);
            g.map_at_exit = true;
        }
        else
            shed_warn("SHED_MAP too long, no heap map", NULL);
    }
    if (RELAXED_LOAD(g.opt.stats_at_exit) &&
        (stats_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 10)) >= 0 &&
        fstat(stats_fd, &stats_fd_was) != 0) {
        close(stats_fd);
        stats_fd = -1;
    }
    atexit(report_exit);
}

/*
 * Giving free pools back to the kernel.
 *
 * batched (default): pool_retire only marks the pool dirty and stamps the
 * time; a background thread (started by malloc: see releaser_ensure) claims
 * the pools that stayed free delay_ms, merges adjacent ones into ranges, and
 * advises them IOV_MAX ranges a call.  The program's own threads make no
 * release calls.  inline: the freeing thread advises the pool at once.
 * manual: only shed_trim().  off: never (trim still works on request).
 *
 * When the thread starts.  A short process (a shell's child that execs, a
 * sed, a grep) would pay more for the thread than the thread saves it, so
 * none runs until there is work worth it.  malloc starts it, never free
 * (see releaser_ensure), at whichever comes first:
 *   - a pool fetch, once the process has taken thread_after_kb of pools
 *     that were not dirty (4 MiB by default: pages it faulted in, which
 *     took far longer than a thread's start), as a process that big may
 *     free it all and sleep;
 *   - an allocation slow path (a new word of a pool's bitmap, at least one
 *     in 64 allocations of a class) once a retired pool has waited
 *     delay_ms and some pool is still dirty (g.thread_due, set by the first
 *     retired pool while no thread runs).
 * So a process that never frees a pool, or execs first, never starts one;
 * and a process that frees and then only sleeps, without a thread, keeps
 * at most thread_after_kb of free pools resident (shed.7).
 *
 * fork(): the thread ends before the fork, after releasing every dirty pool
 * in batched mode (in the others it runs for stats_interval_ms only), so
 * that the process forks as it would without shed: with only its own
 * threads, which programs count (Python 3.12 and later warn at os.fork()
 * when there is more than one).  Then the child counts its pools from zero;
 * the parent starts a thread again as above, but by its size only after it
 * retired a pool, so that none is back by the time a program counts them
 * after the fork (Python does so at once).
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "shed_impl.h"

#define MAX_RANGES 4096
/* With nothing dirty, the thread looks this often whether it is the last
 * thread of the process, and then ends.  glibc ends a process when its last
 * thread ends, and ours counts: a thread of ours that slept on would keep a
 * program alive for ever after its last thread called pthread_exit (and,
 * with every signal blocked here, deaf to SIGTERM). */
#define ALONE_CHECK_MS 1000
/* The thread's stack: its deepest path (a pass, a collection, /proc reads)
 * needs a few KiB; its buffers are static. */
#define RELEASER_STACK ((size_t)256 << 10)

/* NONE: no thread; STARTING: being created; DONE: it ended (alone, or
 * asked to by a fork); FAILED: it could not start (release inline); STOPPED:
 * the process exits; PAUSED: a fork is under way (whether or not a thread
 * ran), and none may start until it returns. */
enum { R_NONE, R_STARTING, R_RUNNING, R_DONE, R_FAILED, R_STOPPED, R_PAUSED };

static struct {
    pthread_mutex_t pass;          /* one release pass at a time (buffers) */
    pthread_mutex_t mx;            /* the thread's sleep, and state changes */
    pthread_cond_t cv;             /* wakes the thread */
    pthread_cond_t gone;           /* the state left STARTING or RUNNING */
    _Atomic int state;             /* R_* */
    _Atomic int idle;              /* asleep with nothing due */
    _Atomic uint64_t gen;          /* bumped by every retired pool */
    bool stop;
    bool flush;                    /* release every dirty pool before ending */
    int task_fd;                   /* the thread a fork ended: its /proc entry */
    _Atomic bool collect;          /* frees into pools nobody owns, while
                                      no thread ran: work for one */
    /* the pass's buffers last: a fork writes the locks, one page */
    struct iovec ranges[MAX_RANGES];
    bool ok[MAX_RANGES];
} rel = { .task_fd = -1, .pass = PTHREAD_MUTEX_INITIALIZER, .mx = PTHREAD_MUTEX_INITIALIZER,
          .cv = PTHREAD_COND_INITIALIZER, .gone = PTHREAD_COND_INITIALIZER };

static size_t advise_and_settle(struct iovec *iov, size_t n, bool *ok,
                                void (*settle)(struct iovec *, size_t, const bool *))
{
    memset(ok, 0, n * sizeof *ok);
    os_advise(iov, n, ok);
    settle(iov, n, ok);
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += ok[i] ? iov[i].iov_len : 0;
    RELAXED_ADD(g.c.batches, 1);
    return bytes;
}

/* inline: advise this one pool now, unless someone reused it already. */
void release_pool_now(struct pool *p)
{
    struct iovec v[3];
    bool ok[3];
    size_t n = arena_claim_pool(p, v);
    if (n)
        advise_and_settle(v, n, ok, arena_settle);
}

/* Claim with claim, advise and settle until nothing due is left. */
static size_t release_some(bool all, uint32_t *wait,
                           size_t (*claim)(bool, struct iovec *, size_t, uint32_t *),
                           void (*settle)(struct iovec *, size_t, const bool *))
{
    size_t bytes = 0;
    for (;;) {
        size_t n = claim(all, rel.ranges, MAX_RANGES, wait);
        if (n)
            bytes += advise_and_settle(rel.ranges, n, rel.ok, settle);
        if (unlikely(g.checker))   /* pools reused later: no block addresses */
            memset(rel.ranges, 0, n * sizeof *rel.ranges);
        if (*wait != 0 || n == 0)
            return bytes;
    }
}

/* Release the dirty pools, and the idle pages of spans, that are due (all
 * of them when all is set).  Returns the bytes released; *next_ms gets the
 * wait until the next one is due (UINT32_MAX when none is dirty). */
size_t release_pass(bool all, uint32_t *next_ms)
{
    uint32_t wait, span_wait = UINT32_MAX;
    pthread_mutex_lock(&rel.pass);
    size_t bytes = release_some(all, &wait, arena_claim, arena_settle);
    if (med.base) {
        bytes += release_some(all, &span_wait, span_claim, span_settle);
        if (RELAXED_LOAD(med.desc_more))  /* spans released whole: then */
            bytes += release_some(all, &span_wait, span_claim, span_settle);
    }                                     /* their descriptors */
    wait = span_wait < wait ? span_wait : wait;
    pthread_mutex_unlock(&rel.pass);
    if (next_ms)
        *next_ms = wait;
    return bytes;
}

__thread bool tls_is_releaser __attribute__((tls_model("initial-exec")));

/* Merge the frees into pools no thread will come back for (exited threads',
 * heaps'), so that those that emptied can be released. */
static void collect_unowned(bool force)
{
    inherited_collect(force);
    orphanage_collect();
    heaps_collect();
}

/* Wait on rel.cv (rel.mx held) for ms milliseconds at the most; true when
 * the time ran out. */
static bool releaser_sleep(uint32_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)ms * 1000000u;
    ts.tv_sec += (time_t)(ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    return pthread_cond_timedwait(&rel.cv, &rel.mx, &ts) == ETIMEDOUT;
}


/* Does the process want a release thread: batched mode, or JSON lines
 * every stats_interval_ms (which the thread writes, in any mode)? */
static bool releaser_wanted(void)
{
    return RELAXED_LOAD(g.opt.release) == REL_BATCHED ||
           RELAXED_LOAD(g.opt.stats_interval_ms) != 0;
}

static uint32_t min_ms(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

static void *releaser_main(void *arg)
{
    (void)arg;
    tls_is_releaser = true;
    uint32_t alone_checked = now_ms();
    pthread_mutex_lock(&rel.mx);
    while (!rel.stop) {
        uint64_t gen = atomic_load(&rel.gen);
        pthread_mutex_unlock(&rel.mx);
        if (RELAXED_LOAD(g.thread_due))
            RELAXED_STORE(g.thread_due, 0);   /* running: no start is due */
        uint32_t wait = UINT32_MAX;   /* another mode: sleep until batched again */
        if (RELAXED_LOAD(g.opt.release) == REL_BATCHED) {
            collect_unowned(false);
            release_pass(false, &wait);
            wait = min_ms(wait, medium_cache_ask());
            wait = min_ms(wait, sys_heap_pass(false));
        }
        report_interval_tick();       /* a JSON line, if one is due */
        pthread_mutex_lock(&rel.mx);
        if (rel.stop)
            break;
        if (wait == UINT32_MAX) {
            /* Nothing dirty: sleep until a retired pool kicks us, or a JSON
             * line is due, and end if the program's threads have all ended
             * meanwhile (looked at every ALONE_CHECK_MS).  The seq_cst pair
             * idle/gen makes sure a kick is never missed. */
            bool alone = false, due = false;
            atomic_store(&rel.idle, 1);
            while (atomic_load(&rel.gen) == gen && !rel.stop && !alone && !due) {
                uint32_t stats = report_interval_due(), ms = min_ms(ALONE_CHECK_MS, stats);
                bool timed_out = releaser_sleep(ms);
                due = timed_out && stats <= ALONE_CHECK_MS;
                if (timed_out &&
                    (ms == ALONE_CHECK_MS || now_ms() - alone_checked >= ALONE_CHECK_MS)) {
                    alone_checked = now_ms();
                    alone = os_thread_is_last();
                }
            }
            atomic_store(&rel.idle, 0);
            if (alone)
                break;
        } else if (wait > 0) {
            releaser_sleep(min_ms(wait, report_interval_due()));
        }
    }
    if (rel.flush) {
        /* A fork: nobody releases for a while; only in batched mode (the
         * thread may run for stats_interval_ms alone: off and manual release
         * at shed_trim only).  Even the process's first release makes only
         * system calls: io_uring, the one backend that needs the loader, was
         * loaded where it was chosen. */
        pthread_mutex_unlock(&rel.mx);
        if (RELAXED_LOAD(g.opt.release) == REL_BATCHED) {
            collect_unowned(false);
            release_pass(true, NULL);
        }
        pthread_mutex_lock(&rel.mx);
        rel.task_fd = os_thread_handle();
    }
    atomic_store(&rel.state, R_DONE);
    pthread_cond_broadcast(&rel.gone);
    pthread_mutex_unlock(&rel.mx);
    return NULL;
}

/* What is lost when the thread cannot start: in batched mode the pools are
 * released inline instead; the JSON lines of stats_interval_ms are not
 * written. */
static const char *start_failed(void)
{
    bool stats = RELAXED_LOAD(g.opt.stats_interval_ms) != 0;
    if (RELAXED_LOAD(g.opt.release) != REL_BATCHED)
        return "cannot start the thread for stats_interval_ms, no stats written";
    return stats ? "cannot start the release thread, releasing inline, no stats written"
                 : "cannot start the release thread, releasing inline";
}

/* Start the thread (the caller has set R_STARTING, with every signal
 * blocked, which the thread inherits); on failure, release inline from now
 * on.  No lock is held: pthread_create may call malloc.  The thread is
 * detached: nobody joins it (a fork waits for it otherwise: see
 * releaser_pause). */
static void releaser_start(void)
{
    pthread_attr_t attr;
    pthread_t t;
    int err = pthread_attr_init(&attr);
    if (!err)
        err = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* A small stack: glibc's default (8 MiB, the stack rlimit) would be the
     * largest writable mapping shed makes, charged in full under strict
     * overcommit.  EINVAL means the program's static TLS does not fit in
     * it: then the default. */
    if (!err && pthread_attr_setstacksize(&attr, RELEASER_STACK) != 0)
        err = EINVAL;
    if (!err)
        err = fault_hit(F_THREAD) ? EAGAIN : pthread_create(&t, &attr, releaser_main, NULL);
    if (err == EINVAL && !pthread_attr_setstacksize(&attr, 8u << 20))
        err = pthread_create(&t, &attr, releaser_main, NULL);
    pthread_attr_destroy(&attr);
    pthread_mutex_lock(&rel.mx);
    if (atomic_load(&rel.state) == R_STARTING)  /* not STOPPED meanwhile */
        atomic_store(&rel.state, err ? R_FAILED : R_RUNNING);
    pthread_cond_broadcast(&rel.gone);          /* releaser_stop may wait */
    pthread_mutex_unlock(&rel.mx);
    if (err)
        shed_warn(start_failed(), strerror(err));
}

/* Is there work for a thread (see the header comment)?  The due time is
 * taken by one caller only (the exchange), which then looks whether a pool
 * is still dirty: one retired and reused since needs no thread, and the
 * next retired pool sets a new due time. */
static bool start_wanted(void)
{
    size_t after = (size_t)RELAXED_LOAD(g.opt.thread_after_kb) << 10 >> g.page_shift;
    if (RELAXED_LOAD(g.pools_taken) >= after && !atomic_load(&g.fork_idle))
        return true;
    uint32_t due = RELAXED_LOAD(g.thread_due);
    if (due == 0 || (int32_t)(now_ms() - due) < 0 ||
        !atomic_compare_exchange_strong(&g.thread_due, &due, 0))
        return false;
    return atomic_exchange(&rel.collect, false) ||
           arena_dirty_pools() > RELAXED_LOAD(g.opt.max_dirty) || span_any_dirty() ||
           atomic_load(&med.mc_watch) || sys_heap_dirty();
}

/* Start the thread in batched mode if none runs and there is work for one
 * (start_wanted).  Called where malloc takes new pools, from malloc's slow
 * path while a start is due (g.thread_due) or after a freeze, and from
 * shed_config; never from free, which glibc calls with its own locks held
 * (its stack cache, as a thread's TLS is freed; the loader's, in dlclose),
 * locks that pthread_create takes too.  So a process that only frees keeps
 * the pools it empties dirty until it next allocates.  Once started, the
 * thread runs until the process ends, forks, or has no other thread left,
 * so only NONE starts one.  Signals stay blocked from STARTING on: a
 * handler that forks would wait for the start it interrupted
 * (releaser_pause). */
void releaser_ensure(void)
{
    if (likely(atomic_load_explicit(&rel.state, memory_order_relaxed) != R_NONE)) {
        if (RELAXED_LOAD(g.thread_due))
            RELAXED_STORE(g.thread_due, 0);   /* one runs, or none will */
        return;
    }
    if (!releaser_wanted()) {
        RELAXED_STORE(g.thread_due, 0);   /* shed_config sets it again */
        return;
    }
    /* JSON lines every stats_interval_ms need the thread whatever its work. */
    if (g.in_fork_child || tls_fork_alone ||
        (RELAXED_LOAD(g.opt.stats_interval_ms) ? atomic_load(&g.fork_idle) : !start_wanted()))
        return;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);   /* signals are the program's */
    pthread_mutex_lock(&rel.mx);
    bool start = atomic_load(&rel.state) == R_NONE;
    if (start)
        atomic_store(&rel.state, R_STARTING);
    pthread_mutex_unlock(&rel.mx);
    if (start)
        releaser_start();
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* No thread runs: the first retired pool makes one due delay_ms from now
 * (the allocation slow path looks: theap_alloc_slow). */
static void releaser_schedule(void)
{
    if (RELAXED_LOAD(g.thread_due) != 0)
        return;
    uint32_t due = now_ms() + RELAXED_LOAD(g.opt.delay_ms), none = 0;
    atomic_compare_exchange_strong(&g.thread_due, &none, due ? due : 1);
}

/* Wake the thread for new work; false when it could not be started, so the
 * caller must release by itself. */
static bool releaser_wake(void)
{
    atomic_fetch_add(&rel.gen, 1);
    if (atomic_load(&rel.idle)) {
        pthread_mutex_lock(&rel.mx);
        pthread_cond_signal(&rel.cv);
        pthread_mutex_unlock(&rel.mx);
    }
    int s = atomic_load(&rel.state);
    if (s == R_NONE || s == R_PAUSED)
        releaser_schedule();
    /* The parent of a fork, with work now and no thread: free() may not
     * start one, so every thread's next malloc is sent to the slow path
     * (theap_catch_up), which may, if the process is big enough; as a
     * freeze does, and as harmless. */
    if (atomic_load(&g.fork_idle) && atomic_exchange(&g.fork_idle, false))
        atomic_fetch_add_explicit(&g.epoch, 2, memory_order_release);
    return s != R_FAILED;    /* no thread yet: it waits */
}

/* A pool was retired in batched mode. */
void releaser_kick(struct pool *p)
{
    if (!releaser_wake())
        release_pool_now(p);
}

/* Pages of span s went idle (the span was not marked for the releaser):
 * as for a retired pool, wake the thread, or release them now. */
void releaser_kick_span(struct span *s)
{
    if (g.in_fork_child)
        return;
    int mode = RELAXED_LOAD(g.opt.release);
    if (mode == REL_INLINE || (mode == REL_BATCHED && !releaser_wake()))
        span_release_now(s);
}

/* Work for the thread once delay_ms has passed, in batched mode: a medium
 * block parked in a thread's empty cache stack of its class (the thread
 * asks for a flush: medium_cache_ask), a large block freed into glibc's
 * heap (it trims: sysheap.c). */
void releaser_kick_later(void)
{
    if (!g.in_fork_child && RELAXED_LOAD(g.opt.release) == REL_BATCHED)
        releaser_wake();
}

/* n pools were retired in bulk (pool_retire_as): in batched mode the thread
 * takes them as any others; inline (or with no thread) they go now, in one
 * pass, which advises them all a vectored call at a time, where one pool at
 * a time would cost a call each (a short thread leaves a few pools of each
 * class it used). */
void release_retired(size_t n)
{
    if (n == 0 || g.in_fork_child)
        return;
    int mode = RELAXED_LOAD(g.opt.release);
    if (mode == REL_INLINE || (mode == REL_BATCHED && !releaser_wake()))
        release_pass(true, NULL);
}

/* A block was freed into a pool of an exited thread or of a heap: nobody
 * may allocate there again soon, so the release thread collects it. */
void releaser_collect_soon(void)
{
    if (RELAXED_LOAD(g.opt.release) == REL_BATCHED) {
        if (atomic_load(&rel.state) != R_RUNNING && !atomic_load(&rel.collect))
            atomic_store(&rel.collect, true);
        releaser_wake();
    }
}

/* stats_interval_ms changed (shed_config): the thread, started if need be,
 * wakes to see when its next line is due. */
void releaser_stats_changed(void)
{
    releaser_wake();
    releaser_ensure();
}

/* At exit: stop the thread so that nothing runs during the exit handlers,
 * and start none after.  On the thread itself (it was the process's last, so
 * glibc called exit there) there is nothing to wait for. */
void releaser_stop(void)
{
    if (tls_is_releaser)
        return;
    pthread_mutex_lock(&rel.mx);
    rel.stop = true;
    pthread_cond_signal(&rel.cv);
    int s;
    while ((s = atomic_load(&rel.state)) == R_RUNNING || s == R_STARTING)
        pthread_cond_wait(&rel.gone, &rel.mx);
    if (s != R_FAILED)
        atomic_store(&rel.state, R_STOPPED);
    pthread_mutex_unlock(&rel.mx);
}


/* fork(), first of all (no lock of shed held, as the thread may need any):
 * end the thread, after it released every dirty pool, and wait until the
 * kernel has let it go, so that the process forks with its own threads only.
 * From its start until the fork returns no other thread starts one.  Not
 * cancellable, as fork() is not: the waits here are cancellation points. */
void releaser_pause(void)
{
    int cancel;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    pthread_mutex_lock(&rel.mx);
    while (atomic_load(&rel.state) == R_STARTING)
        pthread_cond_wait(&rel.gone, &rel.mx);
    bool running = atomic_load(&rel.state) == R_RUNNING;
    if (running) {
        rel.stop = rel.flush = true;
        pthread_cond_signal(&rel.cv);
        while (atomic_load(&rel.state) == R_RUNNING)
            pthread_cond_wait(&rel.gone, &rel.mx);
        rel.stop = rel.flush = false;
    }
    int s = atomic_load(&rel.state), fd = rel.task_fd;
    if (s == R_NONE || s == R_DONE)
        atomic_store(&rel.state, R_PAUSED);
    rel.task_fd = -1;
    pthread_mutex_unlock(&rel.mx);
    if (fd >= 0)
        os_thread_wait_gone(fd);
    pthread_setcancelstate(cancel, NULL);
}

/* After the fork (every lock of shed held, or none when the process had
 * one thread: init.c, fork_prepare): no thread, until
 * releaser_ensure starts one.  A start is due if pools stayed dirty (no
 * thread ran, or its last pass failed); the child counts the pools it takes
 * from zero.  A parent that wants JSON lines every stats_interval_ms starts
 * it at its next malloc (the epoch sends that to the slow path), not when
 * it first empties a pool: the lines go on across forks. */
void releaser_resume(bool parent)
{
    if (atomic_load(&rel.state) == R_PAUSED)
        atomic_store(&rel.state, R_NONE);
    bool stats = RELAXED_LOAD(g.opt.stats_interval_ms) != 0;
    /* Only what changes is written: after a fork every page of the process
     * is the child's too, and the first write to one copies it (a shell
     * forks for every subshell). */
    if (atomic_load(&g.fork_idle) != (parent && !stats))
        atomic_store(&g.fork_idle, parent && !stats);
    if (parent && stats)
        atomic_fetch_add_explicit(&g.epoch, 2, memory_order_release);
    /* A start stays due, or becomes due, while pools are dirty. */
    if (g.npools_dirty > 0)
        releaser_schedule();
    else if (RELAXED_LOAD(g.thread_due))
        RELAXED_STORE(g.thread_due, 0);
    if (!parent && RELAXED_LOAD(g.pools_taken))
        RELAXED_STORE(g.pools_taken, 0);
}

/* fork(): the pass lock (one release pass at a time) comes early in the
 * lock order, before the theaps' and the arenas' locks that a pass takes. */
MUTEX_FORK_HOOKS(release, rel.pass)

bool releaser_fork_busy(void)
{
    return mutex_held(&rel.mx);
}

/* fork(): the thread's sleep lock comes last in the lock order (a pool
 * retired under any other lock wakes the thread: releaser_kick). */
void releaser_fork_prepare(void)
{
    pthread_mutex_lock(&rel.mx);
}

void releaser_fork_parent(void)
{
    releaser_resume(true);
    pthread_mutex_unlock(&rel.mx);
}

void releaser_fork_child(void)
{
    pthread_cond_init(&rel.cv, NULL);
    pthread_cond_init(&rel.gone, NULL);
    atomic_store(&rel.idle, 0);
    rel.stop = false;
    releaser_resume(false);
    fork_child_unlock(&rel.mx);
}

EXPORT size_t shed_trim(void)
{
    if (!shed_ready())
        return 0;
    struct theap *th = tls_heap;
    if (th != NO_THEAP) {
        mcache_flush(th);          /* the caller's parked medium blocks */
        theap_flush_empty(th);
    }
    mcache_trim_all();             /* the other threads': now, or at their
                                      next call for those inside one */
    collect_unowned(true);
    sys_heap_pass(true);           /* glibc's free pages too (not counted) */
    return release_pass(true, NULL);
}

/*
 * Giving free pools back to the kernel.
 *
 * batched (default): pool_retire only marks the pool dirty and stamps the
 * time; a background thread, started when a pool is retired and none runs
 * (it ends when idle), claims the pools that stayed free delay_ms, merges
 * adjacent ones into ranges, and advises them IOV_MAX ranges a call.  The
 * program's own threads make no release calls.  inline: the freeing thread
 * advises the pool at once.  manual: only shed_trim().  off: never (trim
 * still works on request).
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "shed_impl.h"

#define MAX_RANGES 4096
/* The thread ends after this long with nothing dirty, and starts again at
 * the next retired pool.  glibc ends a process when its last thread ends, and
 * ours counts: a thread of ours that slept on would keep a program alive
 * after its last thread called pthread_exit (and, with every signal blocked
 * here, deaf to SIGTERM). */
#define IDLE_EXIT_MS 500

/* NONE: no thread; STARTING: a waker is creating it; DONE: it ended idle;
 * FAILED: it could not start (release inline); STOPPED: the process exits. */
enum { R_NONE, R_STARTING, R_RUNNING, R_DONE, R_FAILED, R_STOPPED };

static struct {
    pthread_mutex_t pass;          /* one release pass at a time (buffers) */
    struct iovec ranges[MAX_RANGES];
    bool ok[MAX_RANGES];

    pthread_mutex_t mx;            /* the thread's sleep, and state changes */
    pthread_cond_t cv;             /* wakes the thread */
    pthread_cond_t gone;           /* the thread has stopped (releaser_stop) */
    _Atomic int state;             /* R_* */
    _Atomic int idle;              /* asleep with nothing due */
    _Atomic uint64_t gen;          /* bumped by every retired pool */
    bool stop;
} rel = { .pass = PTHREAD_MUTEX_INITIALIZER, .mx = PTHREAD_MUTEX_INITIALIZER,
          .cv = PTHREAD_COND_INITIALIZER, .gone = PTHREAD_COND_INITIALIZER };

static size_t advise_and_settle(struct iovec *iov, size_t n, bool *ok)
{
    memset(ok, 0, n * sizeof *ok);
    os_advise(iov, n, ok);
    arena_settle(iov, n, ok);
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += ok[i] ? iov[i].iov_len : 0;
    ADD(g.c.batches, 1);
    return bytes;
}

/* inline: advise this one pool now, unless someone reused it already. */
void release_pool_now(struct pool *p)
{
    struct iovec v[3];
    bool ok[3];
    size_t n = arena_claim_pool(p, v);
    if (n)
        advise_and_settle(v, n, ok);
}

/* Release the dirty pools that are due (all of them when all is set).
 * Returns the bytes released; *next_ms gets the wait until the next one is
 * due (UINT32_MAX when no pool is dirty). */
size_t release_pass(bool all, uint32_t *next_ms)
{
    size_t bytes = 0;
    uint32_t wait;
    pthread_mutex_lock(&rel.pass);
    for (;;) {
        size_t n = arena_claim(all, rel.ranges, MAX_RANGES, &wait);
        if (n)
            bytes += advise_and_settle(rel.ranges, n, rel.ok);
        if (wait != 0 || n == 0)
            break;
    }
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

static void *releaser_main(void *arg)
{
    (void)arg;
    tls_is_releaser = true;
    pthread_mutex_lock(&rel.mx);
    while (!rel.stop) {
        uint64_t gen = atomic_load(&rel.gen);
        pthread_mutex_unlock(&rel.mx);
        uint32_t wait = UINT32_MAX;   /* another mode: sleep until batched again */
        if (LOAD(g.opt.release) == REL_BATCHED) {
            collect_unowned(false);
            release_pass(false, &wait);
        }
        pthread_mutex_lock(&rel.mx);
        if (rel.stop)
            break;
        if (wait == UINT32_MAX) {
            /* Nothing dirty: sleep until a retired pool kicks us, or end
             * after IDLE_EXIT_MS.  The seq_cst pair idle/gen makes sure a
             * kick is never missed: a kicker that comes after our last look
             * at gen sees idle set, takes rel.mx and finds us DONE (idle
             * stays set), or still asleep. */
            atomic_store(&rel.idle, 1);
            if (atomic_load(&rel.gen) == gen && releaser_sleep(IDLE_EXIT_MS) &&
                atomic_load(&rel.gen) == gen && !rel.stop &&
                atomic_load(&rel.state) == R_RUNNING)
                break;
            atomic_store(&rel.idle, 0);
        } else if (wait > 0) {
            releaser_sleep(wait);
        }
    }
    atomic_store(&rel.state, R_DONE);
    pthread_cond_broadcast(&rel.gone);
    pthread_mutex_unlock(&rel.mx);
    return NULL;
}

/* Start the thread (the caller has set R_STARTING); on failure, release
 * inline from now on.  No lock is held: pthread_create may call malloc.  The
 * thread is detached, so that one which ends idle needs nobody to join it. */
static void releaser_start(void)
{
    pthread_attr_t attr;
    pthread_t t;
    sigset_t all, old;
    int err = pthread_attr_init(&attr);
    if (!err)
        err = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);   /* signals are the program's */
    if (!err)
        err = fault_hit(F_THREAD) ? EAGAIN : pthread_create(&t, &attr, releaser_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    pthread_mutex_lock(&rel.mx);
    if (atomic_load(&rel.state) == R_STARTING)  /* not STOPPED meanwhile */
        atomic_store(&rel.state, err ? R_FAILED : R_RUNNING);
    pthread_cond_broadcast(&rel.gone);          /* releaser_stop may wait */
    pthread_mutex_unlock(&rel.mx);
    if (err)
        shed_warn("cannot start the release thread, releasing inline", strerror(err));
}

/* Wake the thread (starting it if need be) for new work; false when it
 * cannot run, so the caller must release by itself. */
static bool releaser_wake(void)
{
    atomic_fetch_add(&rel.gen, 1);
    if (likely(atomic_load(&rel.state) == R_RUNNING) && !atomic_load(&rel.idle))
        return true;              /* awake: it looks at gen before it sleeps */
    pthread_mutex_lock(&rel.mx);
    int s = atomic_load(&rel.state);
    if (s == R_RUNNING) {
        pthread_cond_signal(&rel.cv);
    } else if (s == R_NONE || s == R_DONE) {
        atomic_store(&rel.state, R_STARTING);
        atomic_store(&rel.idle, 0);
        rel.stop = false;
    }
    pthread_mutex_unlock(&rel.mx);
    if (s == R_NONE || s == R_DONE)
        releaser_start();
    return atomic_load(&rel.state) != R_FAILED;    /* stopped: exiting */
}

/* A pool was retired in batched mode. */
void releaser_kick(struct pool *p)
{
    if (!releaser_wake())
        release_pool_now(p);
}

/* A block was freed into a pool of an exited thread or of a heap: nobody
 * may allocate there again soon, so the release thread collects it. */
void releaser_collect_soon(void)
{
    if (LOAD(g.opt.release) == REL_BATCHED)
        releaser_wake();
}

/* At exit: stop the thread so that nothing runs during the exit handlers,
 * and start none after.  On the thread itself (it was the process's last and
 * ended idle, so glibc called exit there) there is nothing to wait for. */
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

/* fork(): the pass lock comes first in the lock order, the sleep lock last. */
void fork_prepare_release(bool first)
{
    pthread_mutex_lock(first ? &rel.pass : &rel.mx);
}

void fork_parent_release(void)
{
    pthread_mutex_unlock(&rel.mx);
    pthread_mutex_unlock(&rel.pass);
}

/* The child has no release thread: start one when a pool is next retired. */
void releaser_after_fork(void)
{
    pthread_mutex_init(&rel.pass, NULL);
    pthread_mutex_init(&rel.mx, NULL);
    pthread_cond_init(&rel.cv, NULL);
    pthread_cond_init(&rel.gone, NULL);
    atomic_store(&rel.idle, 0);
    int s = atomic_load(&rel.state);
    if (s == R_STARTING || s == R_RUNNING || s == R_DONE)
        atomic_store(&rel.state, R_NONE);
    rel.stop = false;
}

EXPORT size_t shed_trim(void)
{
    if (!shed_ready())
        return 0;
    struct theap *th = tls_heap;
    if (th != NO_THEAP)
        theap_flush_empty(th);
    collect_unowned(true);
    return release_pass(true, NULL);
}

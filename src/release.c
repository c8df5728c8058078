/*
 * Giving free pools back to the kernel.
 *
 * batched (default): pool_retire only marks the pool dirty and stamps the
 * time; a background thread, started the first time a pool is retired,
 * claims the pools that stayed free delay_ms, merges adjacent ones into
 * ranges, and advises them IOV_MAX ranges a call.  The program's own threads
 * make no release calls.  inline: the freeing thread advises the pool at
 * once.  manual: only shed_trim().  off: never (trim still works on request).
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "shed_impl.h"

#define MAX_RANGES 4096

enum { R_NONE, R_RUNNING, R_FAILED, R_STOPPED };

static struct {
    pthread_mutex_t pass;          /* one release pass at a time (buffers) */
    struct iovec ranges[MAX_RANGES];
    bool ok[MAX_RANGES];

    pthread_mutex_t mx;            /* the thread's sleep */
    pthread_cond_t cv;
    _Atomic int state;             /* R_* */
    _Atomic int idle;              /* asleep with nothing due */
    _Atomic uint64_t gen;          /* bumped by every retired pool */
    bool stop;
    pthread_t thread;
} rel = { .pass = PTHREAD_MUTEX_INITIALIZER, .mx = PTHREAD_MUTEX_INITIALIZER,
          .cv = PTHREAD_COND_INITIALIZER };

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
            /* Nothing dirty: sleep until a retired pool kicks us.  The
             * seq_cst pair idle/gen makes sure a kick is never missed. */
            atomic_store(&rel.idle, 1);
            if (atomic_load(&rel.gen) == gen)
                pthread_cond_wait(&rel.cv, &rel.mx);
            atomic_store(&rel.idle, 0);
        } else if (wait > 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)wait * 1000000u;
            ts.tv_sec += (time_t)(ns / 1000000000u);
            ts.tv_nsec = (long)(ns % 1000000000u);
            pthread_cond_timedwait(&rel.cv, &rel.mx, &ts);
        }
    }
    pthread_mutex_unlock(&rel.mx);
    return NULL;
}

/* Start the thread; on failure, release inline from now on. */
static void releaser_start(void)
{
    int expect = R_NONE;
    if (!atomic_compare_exchange_strong(&rel.state, &expect, R_RUNNING))
        return;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);   /* signals are the program's */
    rel.stop = false;
    int err = fault_hit(F_THREAD) ? EAGAIN
                                  : pthread_create(&rel.thread, NULL, releaser_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        atomic_store(&rel.state, R_FAILED);
        shed_warn("cannot start the release thread, releasing inline", strerror(err));
    }
}

/* Wake the thread (starting it if need be) for new work; false when it
 * cannot run, so the caller must release by itself. */
static bool releaser_wake(void)
{
    atomic_fetch_add(&rel.gen, 1);
    int s = atomic_load_explicit(&rel.state, memory_order_relaxed);
    if (unlikely(s != R_RUNNING)) {
        if (s == R_NONE)
            releaser_start();
        return atomic_load(&rel.state) != R_FAILED;   /* stopped: exiting */
    }
    if (atomic_load(&rel.idle)) {
        pthread_mutex_lock(&rel.mx);
        pthread_cond_signal(&rel.cv);
        pthread_mutex_unlock(&rel.mx);
    }
    return true;
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

/* At exit: stop the thread so that nothing runs during the exit handlers. */
void releaser_stop(void)
{
    if (atomic_load(&rel.state) != R_RUNNING)
        return;
    pthread_mutex_lock(&rel.mx);
    rel.stop = true;
    pthread_cond_signal(&rel.cv);
    pthread_mutex_unlock(&rel.mx);
    pthread_join(rel.thread, NULL);
    atomic_store(&rel.state, R_STOPPED);    /* no new thread while exiting */
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
    atomic_store(&rel.idle, 0);
    if (atomic_load(&rel.state) == R_RUNNING)
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

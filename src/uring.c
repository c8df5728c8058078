/*
 * The io_uring release backend (backend=io_uring): one IORING_OP_MADVISE per
 * range, submitted together.  liburing is loaded with dlopen() where this
 * backend is chosen (uring_load), so neither libshed.a nor libshed.so depends on it;
 * the backend is compiled only where <liburing.h> exists.
 */
#include "shed_impl.h"

#ifdef SHED_URING
#include <dlfcn.h>
#include <liburing.h>

#define RING_ENTRIES 256

static struct {
    int (*queue_init)(unsigned, struct io_uring *, unsigned);
    void (*queue_exit)(struct io_uring *);
    struct io_uring_sqe *(*get_sqe)(struct io_uring *);
    int (*submit_and_wait)(struct io_uring *, unsigned);
    unsigned (*peek_batch)(struct io_uring *, struct io_uring_cqe **, unsigned);
    struct io_uring ring;
    _Atomic int loaded;           /* 0 untried, 1 loaded, -1 unavailable */
    int state;                    /* the ring: 0 untried, 1 ready, -1 failed */
} u;

/* Load liburing (dlopen, which takes the dynamic loader's lock): only where
 * the backend is chosen, at start-up or in shed_config, on the program's
 * thread.  Never on the release thread, which a fork may be waiting for
 * while the forking thread holds the loader's lock (a fork from a library's
 * constructor): the two would wait for each other. */
bool uring_load(void)
{
    int l = atomic_load(&u.loaded);
    if (l)
        return l > 0;
    if (g.valgrind || fault_hit(F_URING)) {
        atomic_store(&u.loaded, -1);
        return false;
    }
    void *lib = dlopen("liburing.so.2", RTLD_NOW | RTLD_LOCAL);
    if (lib) {
        u.queue_init = (int (*)(unsigned, struct io_uring *, unsigned))dlsym(lib, "io_uring_queue_init");
        u.queue_exit = (void (*)(struct io_uring *))dlsym(lib, "io_uring_queue_exit");
        u.get_sqe = (struct io_uring_sqe * (*)(struct io_uring *))dlsym(lib, "io_uring_get_sqe");
        u.submit_and_wait = (int (*)(struct io_uring *, unsigned))dlsym(lib, "io_uring_submit_and_wait");
        u.peek_batch = (unsigned (*)(struct io_uring *, struct io_uring_cqe **, unsigned))
            dlsym(lib, "io_uring_peek_batch_cqe");
    }
    bool ok = lib && u.queue_init && u.queue_exit && u.get_sqe && u.submit_and_wait &&
              u.peek_batch;
    atomic_store(&u.loaded, ok ? 1 : -1);
    return ok;
}

/* The ring, set up at the first release (system calls only: liburing is
 * loaded already, or this says no). */
bool uring_available(void)
{
    if (u.state)
        return u.state > 0;
    u.state = -1;
    if (atomic_load(&u.loaded) <= 0 || u.queue_init(RING_ENTRIES, &u.ring, 0) != 0)
        return false;
    u.state = 1;
    g.uring_ring = true;
    return true;
}

/* Advise the ranges, RING_ENTRIES at a time; ok[i] says which succeeded. */
size_t uring_advise(struct iovec *iov, size_t n, int advice, bool *ok)
{
    size_t done = 0;
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        struct io_uring_sqe *sqe;
        while (i + k < n && (sqe = u.get_sqe(&u.ring))) {
            io_uring_prep_madvise(sqe, iov[i + k].iov_base, (off_t)iov[i + k].iov_len, advice);
            sqe->user_data = i + k;
            k++;
        }
        uint64_t t0 = now_ns();
        int r = u.submit_and_wait(&u.ring, (unsigned)k);
        os_count_call(t0, r < 0);
        for (size_t got = 0; r >= 0 && got < k;) {
            struct io_uring_cqe *cqes[RING_ENTRIES];
            unsigned c = u.peek_batch(&u.ring, cqes, RING_ENTRIES);
            if (c == 0 && u.submit_and_wait(&u.ring, 1) < 0)
                break;
            for (unsigned j = 0; j < c; j++) {
                bool good = cqes[j]->res == 0;
                ok[cqes[j]->user_data] = good;
                done += good;
                if (!good)
                    RELAXED_ADD(g.c.failures, 1);
            }
            io_uring_cq_advance(&u.ring, c);
            got += c;
        }
        if (r < 0)
            break;                /* the rest stay unadvised (ok[] false) */
        i += k;
    }
    return done;
}

/* The ring belongs to the parent: a child must not submit through it, and
 * sets up its own at its first release (liburing stays loaded). */
void uring_fork_child(void)
{
    /* u's page is not read unless a ring was made: the child's first touch
     * of a page its parent never touched costs a page fault. */
    if (!g.uring_ring)
        return;
    if (u.state > 0)
        u.queue_exit(&u.ring);
    u.state = 0;
    g.uring_ring = false;
}

#else /* no liburing headers at build time */

bool uring_load(void)
{
    return false;
}

bool uring_available(void)
{
    return false;
}

size_t uring_advise(struct iovec *iov, size_t n, int advice, bool *ok)
{
    (void)iov, (void)n, (void)advice, (void)ok;
    return 0;
}

void uring_fork_child(void)
{
}

#endif

/*
 * Start-up, fork() and exit.  shed initialises itself on first use, from
 * whichever thread allocates first; a malloc made while it initialises (from
 * inside the libc calls it makes) is served by the system allocator.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#if defined(__GLIBC__) && __has_include(<sys/single_threaded.h>)
#include <sys/single_threaded.h>
#define PROCESS_ONE_THREAD() (__libc_single_threaded != 0)
#else
#define PROCESS_ONE_THREAD() false   /* no way to know: take the locks */
#endif

#include "shed_impl.h"
#include "vg.h"

struct global g = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .theap_lock = PTHREAD_MUTEX_INITIALIZER,
    .orphan_lock = PTHREAD_MUTEX_INITIALIZER,
    /* an odd epoch and a steal word: alloc_fast and medium_malloc_fast
     * (fast.h) take their slow paths for a thread with no theap */
    .no_theap = { .epoch = 1, .gen = THEAP_NO_GEN, .mc_steal = MC_ASKED },
};

static __thread bool in_init;
__attribute__((destructor)) static void shed_fini(void)
{
    if (atomic_load(&g.state) == S_READY)
        releaser_stop();
}

__thread bool tls_fork_alone __attribute__((tls_model("initial-exec")));

/* Does a lock of shed read as held?  (Only a thread that a signal handler
 * interrupted while it held one, when the process has one thread.) */
static bool fork_busy(void)
{
    return heap_fork_busy() || quarantine_fork_busy() || release_fork_busy() ||
           orphan_fork_busy() || theap_fork_busy() || arena_fork_busy() ||
           span_fork_busy() || releaser_fork_busy();
}

/* fork(): every lock of shed is taken in the lock order (shed_impl.h),
 * outermost first, so that the child inherits none held mid-change.
 *
 * Unless the process has one thread (glibc's __libc_single_threaded: no
 * thread was ever made, the release thread included) and that thread holds
 * no lock of shed: then no lock can be held across the fork, so none is
 * taken, and the child has none to let go (tls_fork_alone, in the forking
 * thread's own memory).  Taking them and letting them go wrote five pages
 * of shed's in the parent and as many in the child, each copied after the
 * fork, and bound more of libc's functions in every child anew: a shell
 * pays that for each subshell (docs/performance.md, "Process start").
 * glibc skips its own malloc's locks in such a fork too.  A signal handler
 * that forks while the thread is inside shed with a lock held takes the
 * long way, as before. */
static void fork_prepare(void)
{
    if (PROCESS_ONE_THREAD() && !fork_busy()) {
        tls_fork_alone = true;    /* no thread starts until the fork returns */
        if (RELAXED_LOAD(g.opt.freeze_on_fork))
            arena_seal_all(true);
        return;
    }
    releaser_pause();             /* first: the thread may take any lock */
    if (RELAXED_LOAD(g.opt.freeze_on_fork))
        arena_seal_all(true);     /* the children never write our pools */
    heap_fork_prepare();          /* heaps_lock, then each heap's lock */
    quarantine_fork_prepare();    /* q.lock */
    release_fork_prepare();       /* rel.pass */
    orphan_fork_prepare();        /* g.orphan_lock */
    theap_fork_prepare();         /* g.theap_lock, then the stripe locks */
    arena_fork_prepare();         /* g.lock */
    span_fork_prepare();          /* med.lock */
    releaser_fork_prepare();      /* rel.mx */
}

static void fork_parent(void)
{
    if (tls_fork_alone) {
        tls_fork_alone = false;
        releaser_resume(true);
        return;
    }
    releaser_fork_parent();
    span_fork_parent();
    arena_fork_parent();
    theap_fork_parent();
    orphan_fork_parent();
    release_fork_parent();
    quarantine_fork_parent();
    heap_fork_parent();
}

/* Only the forking thread lives on: fresh locks, then the other threads'
 * theaps become inherited (inherit.c). */
static void fork_child(void)
{
    bool alone = tls_fork_alone;
    tls_fork_alone = false;
    if (alone) {
        releaser_resume(false);
    } else {
        releaser_fork_child();
        arena_fork_child();
        theap_fork_child();
        orphan_fork_child();
        release_fork_child();
        quarantine_fork_child();
        heap_fork_child();
    }
    os_fork_child(!alone);        /* the leaves: another thread's, at the fork */
    if (!alone)
        report_fork_child();
    span_fork_child();            /* a child's child: the last fork's spans */
    inherit_fork_child();
    span_fork_inherit();
}

static unsigned log2_ceil(size_t v)
{
    unsigned s = 0;
    while (((size_t)1 << s) < v)
        s++;
    return s;
}

static bool setup(void)
{
    options_defaults();
    options_from_env();
    g.valgrind = RUNNING_ON_VALGRIND != 0;
    g.checker = g.valgrind || SHED_ASAN;
    g.page_size = (size_t)sysconf(_SC_PAGESIZE);
    g.page_shift = log2_ceil(g.page_size);
    g.page_mask = g.page_size - 1;
    g.desc_mask = ~((g.page_size >> DESC_TO_PAGE) - 1);
    g.nwords = (unsigned)((g.page_size / SHED_CLASS_STEP + 63) / 64);
    g.desc_shift = g.page_shift - DESC_TO_PAGE;
    size_t words = g.nwords * sizeof(uint64_t);
    if (g.page_size < 4096 || g.page_size > MAX_PAGE ||
        sizeof(struct pool) + words > ((size_t)1 << g.desc_shift) ||
        sizeof(struct pool_remote) + words > ((size_t)1 << g.desc_shift))
        return false;             /* no page size Linux has */
    pool_classes_init();
    for (int i = 0; i < NSTRIPES; i++)
        slock_init(&g.stripes[i].m);

    size_t arena_bytes = (size_t)POOLS_PER_ARENA << g.page_shift;
    size_t size = g.opt.region_size, room = os_address_room();
    /* Under ulimit -v the reservation counts, PROT_NONE or not: take a
     * share of what is left, the tables (1/32 of the region) and the
     * medium region (a quarter of the share: span_setup) included,
     * or glibc's large blocks would find the rest too small.  Below
     * MIN_REGION none is made (os_reserve), and glibc serves all. */
    size_t share = room == SIZE_MAX ? SIZE_MAX : room / AS_SHARE / 33 * 32;
    if (size > share / 4 * 3)     /* the medium region has the other quarter */
        size = share / 4 * 3;
    size = size / arena_bytes * arena_bytes;
    if (!(g.region = os_reserve(&size)))
        return false;
    g.region_size = size / arena_bytes * arena_bytes;
    g.npools = g.region_size >> g.page_shift;
    g.narenas_max = g.npools / POOLS_PER_ARENA;
    /* The three tables in one mapping (one mmap(2), where three made the
     * same read-only area): descriptors, their remote parts, arenas[] in
     * whole pages of shed's size (arena_commit makes them writable a page
     * at a time), where the kernel's may be smaller. */
    size_t table = g.npools << g.desc_shift;
    char *tables = os_map_table(2 * table + ((g.narenas_max * sizeof(struct arena) +
                                              g.page_mask) & ~g.page_mask));
    if (tables) {
        g.descs = tables;
        g.remotes = tables + table;
        g.arenas = (struct arena *)(tables + 2 * table);
    }
    /* One mapping for what the first malloc writes of shed's own: the
     * orphanage's and the first thread's theaps on one page, with the first
     * words of the bitmap of arenas with dirty pools (256 MiB of pools in
     * 128 bytes), then THEAP_SPARE - 2 more theaps on a page of their own
     * (a second thread's, a fork()ed child's): a mapping and a page fault
     * each, saved. */
    size_t tsz = (sizeof(struct theap) + 63) & ~(size_t)63;
    size_t dirty_bytes = (g.narenas_max + 63) / 64 * sizeof(uint64_t);
    size_t more = (2 * tsz + dirty_bytes + g.page_mask) & ~g.page_mask;
    char *block = os_map(more + (THEAP_SPARE - 2) * tsz);
    if (block) {
        g.dirty_arenas = (uint64_t *)(block + 2 * tsz);
        for (unsigned i = 0; i < THEAP_SPARE; i++)
            g.theap_spare[i] = (struct theap *)(block + (i < 2 ? i * tsz : more + (i - 2) * tsz));
    }
    /* arenas[0] is written below, carved or not. */
    if (g.arenas && os_commit(g.arenas, g.page_size) == 0)
        g.arenas_ready = g.page_size;
    if (!g.descs || !g.remotes || !g.arenas || !g.arenas_ready || !g.dirty_arenas ||
        theap_setup() != 0) {
        os_unmap(g.region, size);
        g.region = NULL;
        g.region_size = 0;
        return false;
    }
    g.pool_delta = (uintptr_t)g.region - ((uintptr_t)g.descs << DESC_TO_PAGE);
    /* Under a checker arena 0 is never carved: g.region, the address of its
     * first pool, would keep that pool's first block reachable for memcheck
     * (shed_impl.h, "No block addresses").  Descriptors are made accessible
     * as their arena is carved (arena_new). */
    g.first_arena = g.narenas = g.checker ? 1 : 0;
    g.arenas[0].bucket[0] = g.arenas[0].bucket[1] = -1;
    chk_table(g.descs, g.npools << g.desc_shift, false);
    chk_table(g.remotes, g.npools << g.desc_shift, false);
    g.fast_size = g.checker ? 0 : g.region_size;
    /* none: medium blocks go to the system */
    span_setup(share == SIZE_MAX ? g.region_size : share / 4);
    os_probe_backend();
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    report_setup();               /* SHED_STATS and SHED_MAP at exit */
    return true;
}

int shed_init_slow(void)
{
    if (in_init)
        return 0;                  /* recursive malloc from our own set-up */
    int expect = S_NEW;
    if (atomic_compare_exchange_strong(&g.state, &expect, S_INITIALISING)) {
        in_init = true;
#if defined(SHED_PRELOAD) && !defined(SHED_SANITIZED)
        preload_first_use();      /* glibc's allocator, set up here (preload.c) */
#endif
        bool ok = setup();
        in_init = false;
        atomic_store_explicit(&g.state, ok ? S_READY : S_NO_REGION, memory_order_release);
        if (!ok)
            shed_warn("cannot reserve the heap region; using the system allocator", NULL);
        return ok;
    }
    while ((expect = atomic_load_explicit(&g.state, memory_order_acquire)) == S_INITIALISING)
        sched_yield();             /* another thread is setting up */
    return expect == S_READY;
}

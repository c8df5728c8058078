/*
 * Arenas and pool states.  Every function here runs under g.lock (taken
 * here), so the masks of struct arena change only in this file.
 *
 * Choosing a pool: a dirty pool first (no page fault), then a released one,
 * then a fresh arena; among arenas, the fullest (CPython's heuristic), so that
 * the emptiest arenas drain.  Arenas with free pools sit on bucket lists
 * indexed by their number of pools in use, one set for "has dirty pools" and
 * one for "has released pools"; a 64-bit mask per set says which buckets are
 * non-empty, so the choice is one count-leading-zeros.
 */
#include <string.h>
#include <sys/mman.h>

#include "shed_impl.h"
#include "vg.h"

static uint64_t pool_bit(size_t pidx)
{
    return 1ull << (pidx % POOLS_PER_ARENA);
}

/* Which set of bucket lists arena a belongs on (see g.bucket). */
static int bucket_set(const struct arena *a)
{
    return g.fork_arenas && a->index >= g.fork_arenas;
}

static void bucket_unlink(struct arena *a, int kind)
{
    int b = a->bucket[kind], set = bucket_set(a);
    if (b < 0)
        return;
    if (a->bprev[kind])
        a->bprev[kind]->bnext[kind] = a->bnext[kind];
    else
        g.bucket[set][kind][b] = a->bnext[kind];
    if (a->bnext[kind])
        a->bnext[kind]->bprev[kind] = a->bprev[kind];
    if (!g.bucket[set][kind][b])
        g.bucket_mask[set][kind] &= ~(1ull << b);
    a->bucket[kind] = -1;
}

static void bucket_link(struct arena *a, int kind)
{
    int b = a->nused, set = bucket_set(a);  /* b < 64 whenever the arena has a free pool */
    a->bucket[kind] = (int8_t)b;
    a->bprev[kind] = NULL;
    a->bnext[kind] = g.bucket[set][kind][b];
    if (a->bnext[kind])
        a->bnext[kind]->bprev[kind] = a;
    g.bucket[set][kind][b] = a;
    g.bucket_mask[set][kind] |= 1ull << b;
}

/* Put the arena on the bucket lists its masks call for.  The bitmap of
 * arenas with dirty pools is written only when its bit changes: in a
 * fork()ed child its page is the parent's. */
static void arena_reindex(struct arena *a)
{
    bucket_unlink(a, B_DIRTY);
    bucket_unlink(a, B_RELEASED);
    if (a->dirty & ~a->sealed)
        bucket_link(a, B_DIRTY);
    if (a->released)
        bucket_link(a, B_RELEASED);
    uint64_t *w = &g.dirty_arenas[a->index / 64], bit = 1ull << (a->index % 64);
    if (!(*w & bit) != !a->dirty)
        *w ^= bit;
}

/* The child's inherited pools are reclaimed (or it never had any): the
 * arenas it carved join the others' bucket lists.  Takes g.lock. */
void arena_fork_done(void)
{
    pthread_mutex_lock(&g.lock);
    size_t from = g.fork_arenas;
    if (from) {
        for (size_t i = from; i < g.narenas; i++) {
            bucket_unlink(&g.arenas[i], B_DIRTY);
            bucket_unlink(&g.arenas[i], B_RELEASED);
        }
        g.fork_arenas = 0;
        for (size_t i = from; i < g.narenas; i++)
            arena_reindex(&g.arenas[i]);
    }
    pthread_mutex_unlock(&g.lock);
}

/* Arenas made writable by one arena_commit: the next arena's mprotect(2)
 * calls are made with this one's, so that a fork()ed child (which carves an
 * arena of its own for its first pool: inherit.c) and a process growing past
 * its first arena find it ready, three system calls fewer each.  Nothing of
 * the next arena is touched until it is carved; strict overcommit charges
 * it (256 KiB and two pages of tables).  One at a time under a checker: an
 * arena not carved stays inaccessible there. */
#define COMMIT_ARENAS 2

/* Make arena i (not carved yet) usable, with those after it up to
 * COMMIT_ARENAS: its pools, its page of descriptors and of their remote
 * parts (64 descriptors of 1/64 page each), and arenas[] up to its entry.
 * Arenas are committed in order, so those below narenas_committed are. */
static int arena_commit(size_t i)
{
    if (i < g.narenas_committed)
        return 0;
    size_t n = g.checker ? 1 : COMMIT_ARENAS;
    if (n > g.narenas_max - i)
        n = g.narenas_max - i;
    size_t bytes = (size_t)POOLS_PER_ARENA << g.page_shift;
    if (os_commit(g.descs + i * g.page_size, n * g.page_size) != 0 ||
        os_commit(g.remotes + i * g.page_size, n * g.page_size) != 0)
        return -1;
    size_t need = (i + n) * sizeof(struct arena);
    if (need > g.arenas_ready) {
        size_t to = (need + g.page_mask) & ~g.page_mask;
        if (os_commit((char *)g.arenas + g.arenas_ready, to - g.arenas_ready) != 0)
            return -1;
        g.arenas_ready = to;
    }
    if (os_commit(g.region + i * bytes, n * bytes) != 0)
        return -1;
    g.narenas_committed = i + n;
    return 0;
}

static struct arena *arena_new(void)
{
    if (g.narenas == g.narenas_max)
        return NULL;
    size_t bytes = (size_t)POOLS_PER_ARENA << g.page_shift;
    char *base = g.region + g.narenas * bytes;
    if (arena_commit(g.narenas) != 0)
        return NULL;
    chk_noaccess(base, bytes);
    size_t descs = (size_t)POOLS_PER_ARENA << g.desc_shift;
    chk_table(desc_of(g.narenas * POOLS_PER_ARENA), descs, true);
    chk_table(remote_of(desc_of(g.narenas * POOLS_PER_ARENA)), descs, true);
    struct arena *a = &g.arenas[g.narenas];
    a->index = (uint32_t)g.narenas++;
    a->released = ~0ull;
    a->bucket[0] = a->bucket[1] = -1;
    g.npools_released += POOLS_PER_ARENA;
    return a;
}

static int highest(uint64_t mask)
{
    return 63 - __builtin_clzll(mask);
}

/* With no other pool free-dirty and none released, an arena whose dirty
 * pools are all sealed (shed_freeze), or NULL.  A sealed page waits for its
 * release to be reused, but not when the alternative is carving more of the
 * region (reused or fresh, it costs a page): with release=off or manual no
 * release comes, and a program that freezes at every fork would grow without
 * bound.  Caller holds g.lock. */
static struct arena *sealed_dirty_arena(void)
{
    if (g.bucket_mask[0][B_RELEASED] || g.bucket_mask[1][B_RELEASED] || g.npools_dirty == 0)
        return NULL;
    for (size_t w = 0; w < (g.narenas + 63) / 64; w++)
        if (g.dirty_arenas[w])
            return &g.arenas[w * 64 + (size_t)__builtin_ctzll(g.dirty_arenas[w])];
    return NULL;
}

/* Take up to want adjacent free pools for class cls (one class's blocks then
 * sit on neighbouring pages, as in a larger pool, while each page is still
 * released on its own).  Returns how many; 0 when the region is exhausted. */
size_t arena_acquire_pools(unsigned cls, struct pool **out, size_t want)
{
    pthread_mutex_lock(&g.lock);
    struct arena *a = NULL;
    uint64_t *from, usable;
    if (unlikely(g.fork_arenas)) {       /* a child: its own arenas first */
        if (g.bucket_mask[1][B_DIRTY]) {
            a = g.bucket[1][B_DIRTY][highest(g.bucket_mask[1][B_DIRTY])];
            from = &a->dirty;
            usable = a->dirty & ~a->sealed;
        } else if ((a = g.bucket_mask[1][B_RELEASED]
                            ? g.bucket[1][B_RELEASED][highest(g.bucket_mask[1][B_RELEASED])]
                            : arena_new())) {
            from = &a->released;
            usable = a->released;
        }
    }
    if (a) {
    } else if (g.bucket_mask[0][B_DIRTY]) {
        a = g.bucket[0][B_DIRTY][highest(g.bucket_mask[0][B_DIRTY])];
        from = &a->dirty;
        usable = a->dirty & ~a->sealed;  /* a sealed page waits for release */
    } else if ((a = sealed_dirty_arena())) {
        from = &a->dirty;                /* see sealed_dirty_arena */
        usable = a->dirty;
        a->sealed &= ~usable;
    } else {
        if (g.bucket_mask[0][B_RELEASED])
            a = g.bucket[0][B_RELEASED][highest(g.bucket_mask[0][B_RELEASED])];
        else if (!(a = arena_new())) {
            pthread_mutex_unlock(&g.lock);
            return 0;
        }
        from = &a->released;
        usable = a->released;
    }
    size_t n = 0;
    for (int bit = __builtin_ctzll(usable); n < want && bit < POOLS_PER_ARENA &&
                                            (usable >> bit & 1); bit++) {
        *from &= ~(1ull << bit);
        a->used |= 1ull << bit;
        a->touched |= 1ull << bit;
        out[n] = desc_of((size_t)a->index * POOLS_PER_ARENA + (size_t)bit);
        CHECK(RELAXED_LOAD(out[n]->owner) == NULL, pool_addr(out[n]));
        out[n++]->cls = (uint8_t)cls;     /* counted in class_pools[cls] */
    }
    if (from == &a->dirty) {
        g.npools_dirty -= n;
        RELAXED_ADD(g.c.reused_dirty, n);
    } else {
        g.npools_released -= n;
        RELAXED_BUMP(g.pools_taken, n);   /* new pages: release.c counts them */
    }
    a->nused = (uint8_t)(a->nused + n);
    arena_reindex(a);
    g.npools_used += n;
    g.class_pools[cls] += n;
    arena_check_pool(out[0]);
    pthread_mutex_unlock(&g.lock);
    return n;
}

/* An empty pool goes back to its arena as free-dirty. */
void arena_return_pool(struct pool *p)
{
    size_t pidx = pool_index(p);
    struct arena *a = &g.arenas[pidx / POOLS_PER_ARENA];
    pthread_mutex_lock(&g.lock);
    CHECK((a->used & pool_bit(pidx)) && RELAXED_LOAD(p->owner) == NULL, pool_addr(p));
    p->dirty_ms = now_ms();
    a->used &= ~pool_bit(pidx);
    a->dirty |= pool_bit(pidx);
    a->nused--;
    arena_reindex(a);
    g.npools_used--;
    g.npools_dirty++;
    g.class_pools[p->cls]--;
    arena_check_pool(p);
    pthread_mutex_unlock(&g.lock);
}

/* Append pool pidx to the ranges, merging with the last when adjacent. */
static bool add_range(struct iovec *iov, size_t *n, size_t cap, size_t pidx)
{
    char *addr = g.region + (pidx << g.page_shift);
    if (*n > 0 && (char *)iov[*n - 1].iov_base + iov[*n - 1].iov_len == addr) {
        iov[*n - 1].iov_len += g.page_size;
        return true;
    }
    if (*n == cap)
        return false;
    iov[(*n)++] = (struct iovec){ addr, g.page_size };
    return true;
}

/* When every pool that a page of descriptors describes is free (claimed now,
 * or released before), that page goes back too: a zero descriptor is all a
 * released pool needs.  The pools released before are held in "releasing"
 * meanwhile, so that no allocation writes the page while it is advised. */
/* Caller reindexes the arena afterwards (its released mask may shrink). */
static void add_desc_ranges(struct arena *a, uint64_t take, struct iovec *iov,
                            size_t *n, size_t cap)
{
    unsigned per_page = (unsigned)(g.page_size >> g.desc_shift);
    if (per_page > POOLS_PER_ARENA || !take)
        return;
    uint64_t one = per_page == 64 ? ~0ull : (1ull << per_page) - 1;
    for (unsigned first = 0; first < POOLS_PER_ARENA; first += per_page) {
        uint64_t page = one << first, hold = a->released & page;
        if (!(take & page) || ((take | hold) & page) != page || *n + 2 > cap)
            continue;
        a->released &= ~hold;
        a->releasing |= hold;
        a->held |= hold;
        g.npools_released -= (size_t)__builtin_popcountll(hold);
        g.npools_releasing += (size_t)__builtin_popcountll(hold);
        struct pool *d = desc_of((size_t)a->index * POOLS_PER_ARENA + first);
        iov[(*n)++] = (struct iovec){ d, g.page_size };
        iov[(*n)++] = (struct iovec){ remote_of(d), g.page_size };
    }
}

/* A page of descriptors was advised: its held pools are released again
 * (the second of its two pages, hot and cold, finds nothing left to do). */
static void settle_desc_range(const struct iovec *v)
{
    char *d = v->iov_base;
    if (d >= g.remotes && d < g.remotes + (g.npools << g.desc_shift))
        d = g.descs + (d - g.remotes);
    size_t pidx = pool_index((struct pool *)d);
    struct arena *a = &g.arenas[pidx / POOLS_PER_ARENA];
    unsigned per_page = (unsigned)(g.page_size >> g.desc_shift);
    uint64_t page = (per_page == 64 ? ~0ull : (1ull << per_page) - 1) << (pidx % POOLS_PER_ARENA);
    uint64_t hold = a->held & page;
    a->held &= ~hold;
    a->releasing &= ~hold;
    a->released |= hold;
    g.npools_releasing -= (size_t)__builtin_popcountll(hold);
    g.npools_released += (size_t)__builtin_popcountll(hold);
    arena_reindex(a);
}

/* Claim one dirty pool for release (inline mode): its page, and its page of
 * descriptors when that is all free, go into iov (room for 3).  Returns the
 * number of ranges, 0 if someone reused the pool meanwhile. */
size_t arena_claim_pool(struct pool *p, struct iovec *iov)
{
    size_t pidx = pool_index(p), n = 0;
    struct arena *a = &g.arenas[pidx / POOLS_PER_ARENA];
    pthread_mutex_lock(&g.lock);
    if (a->dirty & pool_bit(pidx)) {
        a->dirty &= ~pool_bit(pidx);
        a->releasing |= pool_bit(pidx);
        g.npools_dirty--;
        g.npools_releasing++;
        iov[n++] = (struct iovec){ pool_addr(p), g.page_size };
        add_desc_ranges(a, pool_bit(pidx), iov, &n, 3);
        arena_reindex(a);             /* after the masks are all changed */
    }
    arena_check_pool(p);
    pthread_mutex_unlock(&g.lock);
    return n;
}

/*
 * Claim dirty pools for release: those free for delay_ms or more (every one
 * when all is set), keeping max_dirty of them.  Claimed pools move to
 * "releasing" and are described as merged ranges in address order.  *next_ms
 * gets the time until the next pool comes of age (UINT32_MAX if none).
 */
size_t arena_claim(bool all, struct iovec *iov, size_t cap, uint32_t *next_ms)
{
    uint32_t now = now_ms(), delay = RELAXED_LOAD(g.opt.delay_ms), wait = UINT32_MAX;
    size_t keep = all ? 0 : RELAXED_LOAD(g.opt.max_dirty), n = 0;

    pthread_mutex_lock(&g.lock);
    size_t nwords = (g.narenas + 63) / 64;
    bool stop = false;
    for (size_t w = 0; w < nwords && !stop; w++) {
        for (uint64_t am = g.dirty_arenas[w]; am && !stop; am &= am - 1) {
            struct arena *a = &g.arenas[w * 64 + (size_t)__builtin_ctzll(am)];
            uint64_t take = 0;
            for (uint64_t m = a->dirty; m; m &= m - 1) {
                size_t pidx = (size_t)a->index * POOLS_PER_ARENA + (size_t)__builtin_ctzll(m);
                uint32_t age = now - desc_of(pidx)->dirty_ms;
                if (!all && age < delay && !(a->sealed & (m & -m))) {
                    if (delay - age < wait)
                        wait = delay - age;
                    continue;
                }
                if (g.npools_dirty <= keep || !add_range(iov, &n, cap, pidx)) {
                    stop = true;
                    break;
                }
                take |= m & -m;
                g.npools_dirty--;
                g.npools_releasing++;
            }
            a->dirty &= ~take;
            a->releasing |= take;
            add_desc_ranges(a, take, iov, &n, cap);
            arena_reindex(a);         /* after the masks are all changed */
        }
    }
    if (stop && g.npools_dirty > keep)
        wait = 0;          /* ran out of room: come back at once */
    arena_check();
    pthread_mutex_unlock(&g.lock);
    if (next_ms)
        *next_ms = wait;
    return n;
}

/* After the kernel was advised: claimed pools become released, or go back to
 * dirty when their range failed (they stay usable; the failure is counted). */
void arena_settle(struct iovec *iov, size_t n, const bool *ok)
{
    pthread_mutex_lock(&g.lock);
    for (size_t i = 0; i < n; i++) {
        if (!in_region(iov[i].iov_base)) {
            settle_desc_range(&iov[i]);   /* a page of descriptors */
            continue;
        }
        size_t first = (size_t)((char *)iov[i].iov_base - g.region) >> g.page_shift;
        size_t count = iov[i].iov_len >> g.page_shift;
        for (size_t pidx = first; pidx < first + count; pidx++) {
            struct arena *a = &g.arenas[pidx / POOLS_PER_ARENA];
            a->releasing &= ~pool_bit(pidx);
            if (ok[i]) {
                a->released |= pool_bit(pidx);
                a->sealed &= ~pool_bit(pidx);   /* a fresh page from now on */
            } else
                a->dirty |= pool_bit(pidx);
            g.npools_releasing--;
            if (ok[i])
                g.npools_released++;
            else
                g.npools_dirty++;
            if (pidx % POOLS_PER_ARENA == POOLS_PER_ARENA - 1 || pidx + 1 == first + count)
                arena_reindex(a);
        }
        if (ok[i]) {
            RELAXED_ADD(g.c.pages, count);
            RELAXED_ADD(g.c.ranges, 1);
        }
    }
    arena_check();
    pthread_mutex_unlock(&g.lock);
}

/* shed_freeze / shed_thaw: seal every pool in use now, or unseal all. */
void arena_seal_all(bool seal)
{
    span_seal_all(seal);                 /* and the spans (medium blocks) */
    pthread_mutex_lock(&g.lock);
    for (size_t i = 0; i < g.narenas; i++) {
        struct arena *a = &g.arenas[i];
        uint64_t m = seal ? a->used & ~a->sealed : a->sealed & a->used;
        for (; m; m &= m - 1)
            RELAXED_STORE(desc_of(i * POOLS_PER_ARENA + (size_t)__builtin_ctzll(m))->sealed,
                          seal);
        a->sealed = seal ? a->sealed | a->used : 0;
        arena_reindex(a);
    }
    arena_check();
    pthread_mutex_unlock(&g.lock);
    if (!seal)
        RELAXED_ADD(g.thaw_epoch, 1);       /* theaps relist their sealed pools */
    else if (med.base)
        mcache_ask_all();                /* no parked block of a sealed span
                                            is handed out again */
    /* Every thread's fast path stops once to look (theap_sync); after the
     * thaw count, so that a thread that sees the new epoch sees it too. */
    atomic_fetch_add_explicit(&g.epoch, 2, memory_order_release);
}

/* Bytes of the carved arenas that are in memory now (mincore). */
size_t arena_resident_bytes(void)
{
    pthread_mutex_lock(&g.lock);
    size_t npages = (g.narenas - g.first_arena) * POOLS_PER_ARENA;
    pthread_mutex_unlock(&g.lock);
    if (npages == 0)
        return 0;
    return os_resident_pages(g.region + (g.first_arena * POOLS_PER_ARENA << g.page_shift),
                             npages) << g.page_shift;
}

/* Pools free but resident now (the release thread's start: release.c). */
size_t arena_dirty_pools(void)
{
    pthread_mutex_lock(&g.lock);
    size_t n = g.npools_dirty;
    pthread_mutex_unlock(&g.lock);
    return n;
}

/* fork(): the arena lock, innermost but for the release thread's sleep lock. */
MUTEX_FORK_HOOKS(arena, g.lock)

/*
 * Spans: the medium region, carved into spans of SPAN_BYTES, and the states
 * of their pages (see "Spans" in shed_impl.h).  Which blocks of a span are
 * free, and who owns it, is medium.c; here is what does not depend on the
 * class: carving, the set of unowned spans, and giving idle pages back to
 * the kernel a page at a time, through the release thread's passes
 * (release.c) and the same backends (os_advise) as pools.
 */
#include <sched.h>
#include <string.h>

#include "shed_impl.h"
#include "vg.h"

struct medium med = { .lock = PTHREAD_MUTEX_INITIALIZER };

static inline size_t span_index(const struct span *s)
{
    return (size_t)(s - med.spans);
}

static inline char *span_addr(const struct span *s)
{
    return med.base + (span_index(s) << SPAN_SHIFT);
}

/* Pages of s that are idle (neither owned nor claimed) and resident: what
 * a release takes. */
static inline uint64_t idle_resident(const struct span *s)
{
    return ~RELAXED_LOAD(s->owned) & ~RELAXED_LOAD(s->claimed) & RELAXED_LOAD(s->resident) &
           med.all_pages;
}

/* Spans whose descriptors share a page of med.spans. */
static inline size_t spans_per_desc_page(void)
{
    return g.page_size / sizeof(struct span);
}

/* Set or clear bit i of bitmap b (plain stores: under med.lock). */
static inline void mb_set(enum med_bitmap b, size_t i)
{
    _Atomic uint64_t *w = med_word(b, i / 64);
    RELAXED_STORE(*w, RELAXED_LOAD(*w) | 1ull << (i % 64));
}

static inline void mb_clear(enum med_bitmap b, size_t i)
{
    _Atomic uint64_t *w = med_word(b, i / 64);
    RELAXED_STORE(*w, RELAXED_LOAD(*w) & ~(1ull << (i % 64)));
}

/* Span i is free (or all released): its page of descriptors may go back
 * (span_claim_descs looks).  Caller holds med.lock. */
static void desc_mark(size_t i)
{
    size_t k = i / spans_per_desc_page();
    mb_set(MB_DESC_DIRTY, k);
    RELAXED_STORE(med.desc_more, true);
}

/* Make the descriptors of spans [first, first + n) writable: the table is
 * read-only until then, so that strict overcommit charges what was carved,
 * not the whole region (as arena_commit does for the pools'). */
static int span_commit_descs(size_t first, size_t n)
{
    uintptr_t lo = (uintptr_t)&med.spans[first] & ~(uintptr_t)g.page_mask;
    uintptr_t hi = ((uintptr_t)&med.spans[first + n] + g.page_mask) & ~(uintptr_t)g.page_mask;
    return os_commit((void *)lo, hi - lo);
}

/* Reserve the medium region and map its tables (address space only: a
 * table's pages are touched as spans are carved).  0, or -1 with no medium
 * region (medium requests then go to the system allocator). */
int span_setup(size_t size)
{
    char *at;
    if (g.page_size > SPAN_BYTES / 2 || !(at = os_reserve(&size)))
        return -1;
    /* Spans are aligned to their size (a block's alignment is its size's
     * lowest bit): the unaligned head of the reservation goes back. */
    size_t head = (SPAN_BYTES - (uintptr_t)at % SPAN_BYTES) % SPAN_BYTES;
    if (head)
        os_unmap(at, head);
    med.base = at + head;
    size -= head;
    med.size = size & ~(SPAN_BYTES - 1);
    /* Under a checker, med.base must point at no block ("No block
     * addresses" in shed_impl.h): span 0 is never carved. */
    med.ncarved = med.ncommitted = g.checker ? 1 : 0;
    medium_classes_init();
    /* membarrier(2) is registered at the first release (barrier_ready):
     * a short process never releases a span. */
    RELAXED_STORE(med.asym, !g.valgrind);
    med.nspans = med.size >> SPAN_SHIFT;
    med.span_pages = (unsigned)(SPAN_BYTES >> g.page_shift);
    med.all_pages = med.span_pages == 64 ? ~0ull : (1ull << med.span_pages) - 1;
    /* The four bitmaps (desc_dirty has more than enough: a bit a page of
     * descriptors) in one mapping, interleaved a cache line at a time
     * (med_word): their first lines share a page, the only one a process
     * with less than 2 GiB of spans writes. */
    size_t lines = (med.nspans + MB_LINE_BITS - 1) / MB_LINE_BITS;
    med.spans = os_map_table((med.nspans * sizeof(struct span) + g.page_mask) & ~g.page_mask);
    med.bits = os_map(lines * MB_COUNT * MB_LINE_WORDS * sizeof(uint64_t));
    if (!med.spans || !med.bits) {
        os_unmap(med.base, size);
        med.base = NULL;
        med.size = 0;
        return -1;
    }
    medium_park_set();                   /* the free fast path's range */
    return 0;
}

/* Free spans looked at for one with resident pages before the lowest. */
#define ACQUIRE_LOOK 64

/* An unowned span, its pages idle (some maybe released): among the lowest
 * free ones, the first whose pages are still resident (no page fault, and
 * no new page while dirty ones wait for the releaser), else the lowest, so
 * that spans in use stay packed at the bottom; else a fresh one.  NULL when
 * the medium region is used up. */
struct span *span_acquire(void)
{
    struct span *s = NULL, *lowest = NULL;
    size_t seen = 0;
    pthread_mutex_lock(&med.lock);
    /* a fork()ed child: its own free spans, else a fresh one, and the
     * parent's only when the region is used up (second round) */
    size_t from = med.fork_spans < med.nspans ? med.fork_spans : 0;
again:
    for (size_t w = from / 64; w < (med.ncarved + 63) / 64 && !s && seen < ACQUIRE_LOOK; w++) {
        uint64_t m = RELAXED_LOAD(*med_word(MB_FREE, w));
        if (w == from / 64)
            m &= ~0ull << (from % 64);
        for (; m && seen < ACQUIRE_LOOK; m &= m - 1) {
            struct span *c = &med.spans[w * 64 + (size_t)__builtin_ctzll(m)];
            lowest = lowest ? lowest : c;
            seen++;
            if (RELAXED_LOAD(c->resident) & med.all_pages) {
                s = c;
                break;
            }
        }
    }
    s = s ? s : lowest;
    if (s) {
        size_t i = span_index(s);
        mb_clear(MB_FREE, i);
    }
    if (!s && med.ncarved < med.nspans) {
        if (med.ncarved == med.ncommitted) {
            size_t n = med.nspans - med.ncarved < SPAN_CHUNK ? med.nspans - med.ncarved
                                                              : SPAN_CHUNK;
            char *at = med.base + (med.ncommitted << SPAN_SHIFT);
            if (span_commit_descs(med.ncommitted, n) == 0 &&
                os_commit(at, n << SPAN_SHIFT) == 0) {
                chk_noaccess(at, n << SPAN_SHIFT);
                med.ncommitted += n;
            }
        }
        if (med.ncarved < med.ncommitted) {
            s = &med.spans[med.ncarved];     /* zero: every page idle, none
                                                resident */
            RELAXED_STORE(med.ncarved, med.ncarved + 1);  /* span_any_dirty */
        }
    }
    if (!s && from) {
        from = seen = 0;
        goto again;
    }
    if (s) {
        med.spans_used++;
        /* new pages for the process: they count towards thread_after_kb
         * as pools do (release.c) */
        RELAXED_BUMP(g.pools_taken, med.span_pages);
    }
    pthread_mutex_unlock(&med.lock);
    return s;
}

/* s, emptied and unowned now, joins the free spans; a sealed one waits
 * until its pages have all been released (span_settle) or a thaw. */
void span_return(struct span *s)
{
    pthread_mutex_lock(&med.lock);
    med.spans_used--;
    if (!RELAXED_LOAD(s->sealed)) {
        size_t i = span_index(s);
        mb_set(MB_FREE, i);
        desc_mark(i);
    }
    pthread_mutex_unlock(&med.lock);
}

/* Owner: take pages (not owned) before a block touching them is handed
 * out.  The owner publishes owned, then looks at claimed; a release sets
 * claimed, then looks at owned (claims_confirm), with a barrier between on
 * each side, so that one of the two sees the other: the release backs off
 * from a page the owner took, and the owner waits for a page the release
 * is advising to come back (it then refaults as a fresh page).  With
 * membarrier(2) the release's barrier runs on every thread, and the
 * owner's side is free: no atomic read-modify-write, no fence. */
void span_own_pages(struct span *s, uint64_t pages)
{
    RELAXED_STORE(s->owned, RELAXED_LOAD(s->owned) | pages);
    owner_fence();
    while (unlikely(RELAXED_LOAD(s->claimed) & pages))
        sched_yield();
    atomic_thread_fence(memory_order_acquire);  /* after the release's advice */
    if (~RELAXED_LOAD(s->resident) & pages)
        atomic_fetch_or(&s->resident, pages);
    if (RELAXED_LOAD(s->seen) & pages)
        atomic_fetch_and(&s->seen, ~pages);   /* not idle all along */
}

/* Owner: pages of s no live block touches any longer go idle; the span is
 * marked for the releaser (idle before the mark, the releaser clearing the
 * mark before it reads idle: neither misses the other). */
void span_idle_pages(struct span *s, uint64_t pages)
{
    atomic_store_explicit(&s->owned, RELAXED_LOAD(s->owned) & ~pages, memory_order_release);
    size_t i = span_index(s);
    uint64_t bit = 1ull << (i % 64);
    if (atomic_load(med_word(MB_DIRTY, i / 64)) & bit)
        return;
    RELAXED_STORE(s->idle_tick, RELAXED_LOAD(med.tick));
    atomic_fetch_or(med_word(MB_DIRTY, i / 64), bit);
    releaser_kick_span(s);
}

/* Append the page run [first, first + n) of s to iov, merging with the last
 * range when adjacent. */
static bool add_pages(struct iovec *iov, size_t *n, size_t cap, const struct span *s,
                      unsigned first, unsigned count)
{
    char *addr = span_addr(s) + ((size_t)first << g.page_shift);
    size_t len = (size_t)count << g.page_shift;
    if (*n > 0 && (char *)iov[*n - 1].iov_base + iov[*n - 1].iov_len == addr) {
        iov[*n - 1].iov_len += len;
        return true;
    }
    if (*n == cap)
        return false;
    iov[(*n)++] = (struct iovec){ addr, len };
    return true;
}

/* Claim the idle resident pages of s in mask (not final before
 * claims_confirm); returns them. */
static uint64_t claim_span(struct span *s, uint64_t mask)
{
    uint64_t want = idle_resident(s) & mask;
    return want ? ~atomic_fetch_or(&s->claimed, want) & want : 0;
}

struct claim {
    struct span *s;
    uint64_t pages;
};

/* Is membarrier(2)'s private expedited command registered for this
 * process?  Asked for here, at the first release that needs it, not at
 * start-up nor in every fork()ed child (whose registration is not its
 * parent's): a short process never releases a span.  Owners go without a
 * fence (med.asym) before it as after: the barrier comes after the
 * registration, and if that fails, claims_confirm gives up the pages of
 * owned spans and owners fence from then on. */
static bool barrier_ready(void)
{
    if (RELAXED_LOAD(med.barrier_registered))
        return true;
    bool ok = os_barrier_register();
    if (ok)
        RELAXED_STORE(med.barrier_registered, true);
    return ok;
}

/* The releasers' side of a store-then-load pair against every owner's
 * (span_own_pages; the medium cache's busy and steal words): a full
 * barrier on every running thread (membarrier(2)), whose owners then need
 * no fence of their own (med.asym), else a fence here.  false when the
 * barrier failed where owners did not fence: they may have raced this
 * time (they fence from now on). */
bool span_owners_barrier(void)
{
    bool asym = RELAXED_LOAD(med.asym), barrier = asym && barrier_ready() && os_barrier_all();
    if (!barrier)
        atomic_thread_fence(memory_order_seq_cst);
    if (asym && !barrier)
        RELAXED_STORE(med.asym, false);   /* owners fence from now on */
    return barrier || !asym;
}

/* After claiming: one barrier for all (see span_own_pages), then the pages
 * an owner took meanwhile are given up, and the others go into iov as
 * ranges (adjacent pages merged), as long as there is room; what does not
 * fit is given up too.  Returns false when iov filled up. */
static bool claims_confirm(struct claim *c, size_t nc, struct iovec *iov, size_t *n, size_t cap)
{
    bool raced = !span_owners_barrier();
    bool room = true;
    for (size_t k = 0; k < nc; k++) {
        struct span *s = c[k].s;
        uint64_t got = c[k].pages, back = 0;
        /* The barrier failed where owners did not fence: they may have
         * raced, so every page of an owned span is given up this pass. */
        if (raced && RELAXED_LOAD(s->owner))
            back = got;
        back |= got & RELAXED_LOAD(s->owned);
        got &= ~back;
        for (uint64_t m = got; m && room;) {
            unsigned first = (unsigned)__builtin_ctzll(m), len = 0;
            while (first + len < 64 && (m >> (first + len) & 1))
                len++;
            uint64_t run = (len == 64 ? ~0ull : ((1ull << len) - 1)) << first;
            if (!add_pages(iov, n, cap, s, first, len)) {
                room = false;
                break;
            }
            m &= ~run;
            got &= ~run;
        }
        back |= room ? 0 : got;
        if (back)
            atomic_fetch_and(&s->claimed, ~back);
    }
    return room;
}

/* A sealed unowned span whose pages are all released is a fresh span again:
 * it joins the free spans.  Caller holds med.lock. */
static void unseal_if_released(struct span *s)
{
    if (!RELAXED_LOAD(s->sealed) || RELAXED_LOAD(s->owner) ||
        (RELAXED_LOAD(s->resident) & med.all_pages))
        return;
    RELAXED_STORE(s->sealed, 0);
    size_t i = span_index(s);
    mb_set(MB_FREE, i);
    desc_mark(i);
}

/* Ticks a span's last idle page must have aged to be due: delay_ms is
 * DELAY_TICKS ticks, and one more makes sure whole ones went by. */
#define DELAY_TICKS 4

/* Advance the releaser's clock (med.tick) to now; returns the tick length. */
static uint32_t tick_advance(uint32_t now, uint32_t delay)
{
    uint32_t period = delay / DELAY_TICKS ? delay / DELAY_TICKS : 1;
    uint32_t k = (now - med.tick_ms) / period;
    if (k) {
        RELAXED_ADD(med.tick, k);
        med.tick_ms += k * period;
    }
    return period;
}

/* Pages of descriptors whose spans are all free and all released go back
 * too: a zero descriptor is a free span with every page idle and none
 * resident.  Those spans are held out of MB_FREE meanwhile, so that no
 * allocation writes the page while it is advised (span_settle puts them
 * back). */
static void claim_descs(struct iovec *iov, size_t *n, size_t cap)
{
    size_t per = spans_per_desc_page();
    pthread_mutex_lock(&med.lock);
    size_t npages = med.ncarved / per;    /* whole pages only */
    for (size_t w = 0; w < (npages + 63) / 64 && *n < cap; w++) {
        for (uint64_t m = RELAXED_LOAD(*med_word(MB_DESC_DIRTY, w)); m && *n < cap; m &= m - 1) {
            size_t k = w * 64 + (size_t)__builtin_ctzll(m), first = k * per;
            if (k >= npages)
                break;
            mb_clear(MB_DESC_DIRTY, k);
            bool all = true;
            for (size_t i = first; i < first + per && all; i++) {
                struct span *s = &med.spans[i];
                all = (RELAXED_LOAD(*med_word(MB_FREE, i / 64)) >> (i % 64) & 1) &&
                      !RELAXED_LOAD(s->owned) && !RELAXED_LOAD(s->claimed) &&
                      !(RELAXED_LOAD(s->resident) & med.all_pages);
            }
            if (!all)
                continue;
            for (size_t i = first; i < first + per; i++) {
                mb_clear(MB_FREE, i);
                mb_set(MB_HELD, i);
            }
            iov[(*n)++] = (struct iovec){ &med.spans[first], g.page_size };
        }
    }
    pthread_mutex_unlock(&med.lock);
}

/* A page of descriptors was advised (or not): its spans are free again. */
static void settle_descs(const struct iovec *v)
{
    size_t first = (size_t)((struct span *)v->iov_base - med.spans);
    pthread_mutex_lock(&med.lock);
    for (size_t i = first; i < first + spans_per_desc_page(); i++) {
        uint64_t bit = 1ull << (i % 64);
        if (RELAXED_LOAD(*med_word(MB_HELD, i / 64)) & bit) {
            mb_clear(MB_HELD, i);
            mb_set(MB_FREE, i);
        }
    }
    pthread_mutex_unlock(&med.lock);
}

/* Spans claimed in one pass at the most (one barrier for them all). */
#define CLAIMS_MAX 1024

/* The release pass's part for spans (under rel.pass): claim the idle
 * resident pages of the spans whose last page went idle delay_ms ago or
 * more (to a tick: at most delay_ms / 4 more; every one when all is set).
 * *next_ms gets the wait until the next is due (UINT32_MAX if none, 0 when
 * iov filled up).  Returns the number of ranges. */
size_t span_claim(bool all, struct iovec *iov, size_t cap, uint32_t *next_ms)
{
    uint32_t now = now_ms(), delay = RELAXED_LOAD(g.opt.delay_ms), wait = UINT32_MAX;
    uint32_t period = tick_advance(now, delay), tick = RELAXED_LOAD(med.tick);
    uint32_t into = now - med.tick_ms;   /* of the current tick */
    static struct claim claims[CLAIMS_MAX];  /* under rel.pass */
    size_t n = 0, nc = 0;
    RELAXED_STORE(med.desc_more, false);  /* claim_descs below sees them */
    pthread_mutex_lock(&med.lock);
    size_t nwords = (med.ncarved + 63) / 64;
    pthread_mutex_unlock(&med.lock);
    for (size_t w = 0; w < nwords; w++) {
        for (uint64_t m = atomic_load(med_word(MB_DIRTY, w)); m; m &= m - 1) {
            uint64_t bit = m & -m;
            struct span *s = &med.spans[w * 64 + (size_t)__builtin_ctzll(m)];
            atomic_fetch_and(med_word(MB_DIRTY, w), ~bit);
            struct theap *o = RELAXED_LOAD(s->owner);
            if (o && theap_inherited(o)) {
                /* a fork()ed child, a span of its parent's: claiming would
                 * write (so copy) the parent's descriptors; after the
                 * reclaim (inherit.c) */
                atomic_fetch_or(med_word(MB_DIRTY, w), bit);
                continue;
            }
            uint32_t age = tick - RELAXED_LOAD(s->idle_tick);
            uint32_t left = (DELAY_TICKS + 1) * period - into;   /* a delay */
            /* Every idle page goes on request or when sealed; else those
             * idle since the last look, in a span no thread owns too: one
             * emptied a moment ago is often taken again at once (an arena
             * freed whole after each piece of work, docs/performance.md). */
            bool whole = all || delay == 0 || RELAXED_LOAD(s->sealed);
            if (!whole && age <= DELAY_TICKS) {
                atomic_fetch_or(med_word(MB_DIRTY, w), bit);  /* not yet */
                left = (DELAY_TICKS + 1 - age) * period - into;
                wait = left < wait ? left : wait;
                continue;
            }
            if (nc == CLAIMS_MAX) {
                atomic_fetch_or(med_word(MB_DIRTY, w), bit);
                wait = 0;                 /* full: come back at once */
                goto out;
            }
            uint64_t got = claim_span(s, whole ? ~0ull : RELAXED_LOAD(s->seen));
            if (got)
                claims[nc++] = (struct claim){ s, got };
            if (whole && RELAXED_LOAD(s->sealed) && !RELAXED_LOAD(s->owner)) {
                pthread_mutex_lock(&med.lock);   /* released before it was sealed */
                unseal_if_released(s);
                pthread_mutex_unlock(&med.lock);
            }
            /* The pages idle now that were not: due at the next look, a
             * delay from now, if no block takes them meanwhile. */
            uint64_t rest = idle_resident(s);
            RELAXED_STORE(s->seen, rest);
            if (rest) {
                RELAXED_STORE(s->idle_tick, tick);
                atomic_fetch_or(med_word(MB_DIRTY, w), bit);
                wait = left < wait ? left : wait;
            }
        }
    }
out:
    if (nc && !claims_confirm(claims, nc, iov, &n, cap))
        wait = 0;                         /* iov full: come back at once */
    if (wait != 0)
        claim_descs(iov, &n, cap);
    *next_ms = wait;
    return n;
}

/* inline (or no release thread): advise the idle resident pages of s now. */
void span_release_now(struct span *s)
{
    struct iovec iov[32];                 /* 64 pages at most: 32 runs */
    bool ok[32] = { false };
    size_t n = 0;
    struct claim c = { s, claim_span(s, ~0ull) };
    if (c.pages)
        claims_confirm(&c, 1, iov, &n, 32);
    if (n) {
        os_advise(iov, n, ok);
        span_settle(iov, n, ok);
        RELAXED_ADD(g.c.batches, 1);
    }
}

/* After the kernel was advised: claimed pages go back to idle, as released
 * when their range was advised (else they stay resident, to try again). */
void span_settle(struct iovec *iov, size_t n, const bool *ok)
{
    for (size_t i = 0; i < n; i++) {
        if (!in_medium(iov[i].iov_base)) {
            settle_descs(&iov[i]);        /* a page of descriptors */
            continue;
        }
        size_t off = (size_t)((char *)iov[i].iov_base - med.base);
        size_t end = off + iov[i].iov_len;
        while (off < end) {
            struct span *s = &med.spans[off >> SPAN_SHIFT];
            size_t stop = ((off >> SPAN_SHIFT) + 1) << SPAN_SHIFT;
            stop = stop < end ? stop : end;
            unsigned first = (unsigned)((off & (SPAN_BYTES - 1)) >> g.page_shift);
            unsigned count = (unsigned)((stop - off) >> g.page_shift);
            uint64_t pages = (count == 64 ? ~0ull : (1ull << count) - 1) << first;
            size_t si = off >> SPAN_SHIFT;
            if (ok[i]) {
                atomic_fetch_and(&s->resident, ~pages);
                RELAXED_ADD(g.c.pages, count);
            } else {
                atomic_fetch_or(med_word(MB_DIRTY, si / 64), 1ull << (si % 64));
            }
            atomic_fetch_and_explicit(&s->claimed, ~pages, memory_order_release);
            if (ok[i] && !RELAXED_LOAD(s->owner) && !(RELAXED_LOAD(s->resident) & med.all_pages)) {
                pthread_mutex_lock(&med.lock);   /* a free span all released: */
                unseal_if_released(s);           /* reusable if sealed, and */
                desc_mark(si);                   /* its descriptor may go */
                pthread_mutex_unlock(&med.lock);
            }
            off = stop;
        }
        if (ok[i])
            RELAXED_ADD(g.c.ranges, 1);
    }
}

/* shed_freeze / shed_thaw: seal every span in use now, or unseal all (the
 * unowned sealed ones join the free spans; the owners relist theirs at their
 * next medium allocation, as g.thaw_epoch moves). */
void span_seal_all(bool seal)
{
    if (!med.base)
        return;
    pthread_mutex_lock(&med.lock);
    for (size_t i = 0; i < med.ncarved; i++) {
        struct span *s = &med.spans[i];
        if (seal) {
            if (RELAXED_LOAD(s->owner) && !RELAXED_LOAD(s->sealed))
                RELAXED_STORE(s->sealed, 1);
        } else if (RELAXED_LOAD(s->sealed)) {
            bool unowned = !RELAXED_LOAD(s->owner);
            RELAXED_STORE(s->sealed, 0);
            if (unowned)
                mb_set(MB_FREE, i);
        }
    }
    pthread_mutex_unlock(&med.lock);
}

/* Bytes of the carved spans that are in memory now (mincore). */
/* May some span have idle pages resident (a start of the release thread
 * is due: start_wanted)?  Reads the dirty bitmap only, without the lock. */
bool span_any_dirty(void)
{
    for (size_t w = 0; w < (RELAXED_LOAD(med.ncarved) + 63) / 64; w++)
        if (RELAXED_LOAD(*med_word(MB_DIRTY, w)))
            return true;
    return false;
}

size_t span_resident_bytes(void)
{
    pthread_mutex_lock(&med.lock);
    size_t n = med.ncarved;
    pthread_mutex_unlock(&med.lock);
    return n ? os_resident_pages(med.base, n * med.span_pages) << g.page_shift : 0;
}

bool span_fork_busy(void)
{
    return mutex_held(&med.lock);
}

/* fork(): med.lock, at g.lock's place in the lock order. */
void span_fork_prepare(void)
{
    pthread_mutex_lock(&med.lock);
}

void span_fork_parent(void)
{
    pthread_mutex_unlock(&med.lock);
}

/* The child, before the theaps of the parent's threads become inherited
 * (inherit.c): the lock let go, and the spans a previous fork left inherited
 * (this is a child's child) are reclaimed, with their map. */
void span_fork_child(void)
{
    if (mutex_held(&med.lock))           /* not when the fork took no lock */
        fork_child_unlock(&med.lock);
    /* membarrier's registration is the parent's, not the child's (asked
     * for again at the first release: barrier_ready) */
    if (RELAXED_LOAD(med.barrier_registered))
        RELAXED_STORE(med.barrier_registered, false);
    if (med.imap) {
        medium_reclaim_inherited();
        os_unmap(med.imap, med.imap_spans * SPAN_WORDS * sizeof(uint64_t));
        med.imap = NULL;
        med.imap_spans = 0;
    }
}

/* Then: the map where frees into the spans of the inherited theaps are
 * noted (medium.c), instead of in the spans' descriptors, whose pages are
 * still the parent's.  With no map the spans are reclaimed at once. */
void span_fork_inherit(void)
{
    size_t pages = med.base ? medium_inherited_pages() : 0;
    if (!pages)
        return;
    RELAXED_ADD(g.inherit_pools, pages);
    med.imap_spans = med.ncarved;
    if (!(med.imap = os_map(med.imap_spans * SPAN_WORDS * sizeof(uint64_t)))) {
        med.imap_spans = 0;
        medium_reclaim_inherited();
    } else {
        med.fork_spans = med.ncarved;     /* new spans from fresh ones */
    }
}

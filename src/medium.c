/*
 * Medium blocks, SHED_MAX_BLOCK + 1 to SHED_MEDIUM_MAX bytes: their classes,
 * and their allocation and free in the spans a theap owns (span.c has the
 * spans themselves and their pages).  The design is the pools' (theap.c,
 * slow.c, free.c, orphan.c, inherit.c) at a span's scale: the owner takes
 * and frees blocks with no lock and no atomic read-modify-write (even when
 * a page changes hands with the releaser: span_own_pages); other threads free into the remote
 * bitmap under the span's stripe lock and push the span on the owner's
 * pending stack; a fork()ed child notes its frees into the parent's spans in
 * med.imap; exited threads' spans go to the orphanage.
 *
 * Classes: four per doubling from 640 to 131072 bytes (640, 768, 896, 1024,
 * 1280, ...), every one a multiple of 128 bytes, so a block is 128-byte
 * aligned, and page-aligned when its size is a multiple of the page.  The
 * classes over 32 KiB hold 2 to 6 blocks a span: they are there for the
 * buffers programs make and drop over and over (zlib's 64 KiB windows and
 * tables, 128 KiB I/O buffers), which the system allocator would give back
 * and fault in again each time.
 */
#include <sched.h>
#include <string.h>

#include "fast.h"                 /* ALWAYS_INLINE */
#include "vg.h"

/* A full span is listed again once this share of its blocks is free. */
#define AVAIL_DIV 8

/* ---- classes ---- */

static inline unsigned mclass_of(size_t n)     /* n in SHED_MAX_BLOCK+1..MEDIUM_MAX */
{
    size_t v = n - 1;
    unsigned b = 63u - (unsigned)__builtin_clzll(v);
    return (b - 9) * 4 + (unsigned)((v - ((size_t)1 << b)) >> (b - 2));
}

static inline size_t mclass_size(unsigned c)
{
    unsigned b = c / 4 + 9;
    return ((size_t)1 << b) + (size_t)(c % 4 + 1) * ((size_t)1 << (b - 2));
}

/* Class by (size - 1) / 128: every class is a multiple of 128 bytes. */
uint8_t med_class_of_128[SHED_MEDIUM_MAX / 128];
/* Per class: block index = offset * magic >> 40, magic = ceil(2^40 / size);
 * the blocks a theap's medium cache holds, and each block's share of the
 * thread's budget of parked bytes, in units of 128 bytes (0 for the classes
 * over MCACHE_SHARED_MAX, which have only their cap): see "Medium cache". */
struct med_class med_cls[MED_NCLS];
_Static_assert(((uint64_t)1 << 40) / (SHED_MAX_BLOCK + 1) < ((uint64_t)1 << 32),
               "a magic fits 32 bits");

void medium_classes_init(void)
{
    for (unsigned c = 0; c < MED_NCLS; c++) {
        size_t size = mclass_size(c);
        med_cls[c].magic = (uint32_t)((((uint64_t)1 << 40) + size - 1) / size);
        if (size <= MCACHE_SHARED_MAX) {     /* the shared budget bounds them */
            med_cls[c].cap = MCACHE_SLOTS;
            med_cls[c].units = (uint16_t)(size / 128);
        } else {                             /* 1 to 3 blocks: see MCACHE_LEAST_BYTES */
            _Static_assert(MCACHE_LEAST_BYTES >= SHED_MEDIUM_MAX, "one block at least");
            size_t n = MCACHE_CLASS_BYTES / size, least = MCACHE_LEAST_BYTES / size;
            med_cls[c].cap = (uint8_t)(n > least ? n : least);
            med_cls[c].units = 0;
        }
    }
    for (unsigned k = SHED_MAX_BLOCK / 128; k < SHED_MEDIUM_MAX / 128; k++)
        med_class_of_128[k] = (uint8_t)mclass_of((size_t)k * 128 + 1);
}

/* med.park_size: the medium region's size where blocks may be parked (no
 * checker, release not inline), else 0; medium_free_fast's one range check,
 * and mcache_may_park's. */
void medium_park_set(void)
{
    bool park = med.base && !g.checker && RELAXED_LOAD(g.opt.release) != REL_INLINE;
    RELAXED_STORE(med.park_size, park ? med.size : 0);
}

/* The class for size bytes aligned to align (a power of two, or 0 for
 * malloc's), -1 if none. */
static ALWAYS_INLINE int mclass_for(size_t size, size_t align)
{
    if (size > SHED_MEDIUM_MAX || align > SHED_MEDIUM_MAX || !med.base)
        return -1;
    unsigned c = med_class_of_128[(size > SHED_MAX_BLOCK ? size - 1 : SHED_MAX_BLOCK) >> 7];
    while (unlikely(align > 128) && c < MED_NCLS && (mclass_size(c) & (align - 1)))
        c++;
    return c < MED_NCLS ? (int)c : -1;
}

int medium_class(size_t size, size_t align)
{
    return mclass_for(size, align);
}

/* ---- small helpers ---- */

static inline size_t span_idx(const struct span *s)
{
    return (size_t)(s - med.spans);
}

static inline char *span_base(const struct span *s)
{
    return med.base + (span_idx(s) << SPAN_SHIFT);
}

static inline struct span *span_at(uint32_t ref)
{
    return ref ? &med.spans[ref - 1] : NULL;
}

static inline struct slock *span_stripe(const struct span *s)
{
    return &g.stripes[span_idx(s) % NSTRIPES].m;
}

/* Block index of byte off of s (exact for off < SPAN_BYTES: magic is
 * ceil(2^40 / size), whose error is below 2^-22 of a block). */
static inline unsigned block_of(const struct span *s, size_t off)
{
    return (unsigned)((off * med_cls[s->cls].magic) >> 40);
}

/* The pages strictly inside the block at off, of size bytes: no other
 * block touches them, so they need no count (see struct span). */
static inline uint64_t pages_inside(unsigned first, unsigned last)
{
    return last > first + 1 ? ((2ull << (last - first - 2)) - 1) << (first + 1) : 0;
}

/* Owner: block at off, of size bytes, is handed out: count it in its first
 * and last pages, and take the pages that had no block in use from idle. */
static ALWAYS_INLINE void pages_hold(struct span *s, size_t off, size_t size)
{
    unsigned first = (unsigned)(off >> g.page_shift);
    unsigned last = (unsigned)((off + size - 1) >> g.page_shift);
    uint64_t need = pages_inside(first, last);
    if (s->live[first]++ == 0)
        need |= 1ull << first;
    if (last != first && s->live[last]++ == 0)
        need |= 1ull << last;
    if (need)
        span_own_pages(s, need);
}

/* Owner: block at off, of size bytes, is free again: the pages where it was
 * the last block in use go idle. */
static ALWAYS_INLINE void pages_drop(struct span *s, size_t off, size_t size)
{
    unsigned first = (unsigned)(off >> g.page_shift);
    unsigned last = (unsigned)((off + size - 1) >> g.page_shift);
    uint64_t gone = pages_inside(first, last);
    if (--s->live[first] == 0)
        gone |= 1ull << first;
    if (last != first && --s->live[last] == 0)
        gone |= 1ull << last;
    if (gone)
        span_idle_pages(s, gone);
}

/* Owner: count the blocks in use per page again from the bitmap (a span
 * taken over from a fork's parent); pages change hands to match. */
static void pages_recount(struct span *s)
{
    size_t size = RELAXED_LOAD(s->size);
    uint64_t own = 0;
    memset(s->live, 0, sizeof s->live);
    for (unsigned i = 0; i < s->nblocks; i++) {
        if (RELAXED_LOAD(s->free[i / 64]) >> (i % 64) & 1)
            continue;
        unsigned first = (unsigned)((size_t)i * size >> g.page_shift);
        unsigned last = (unsigned)(((size_t)i * size + size - 1) >> g.page_shift);
        s->live[first]++;
        if (last != first)
            s->live[last]++;
        own |= pages_inside(first, last) | 1ull << first | 1ull << last;
    }
    uint64_t had = RELAXED_LOAD(s->owned);
    if (had & ~own)
        span_idle_pages(s, had & ~own);
    if (own & ~had)
        span_own_pages(s, own & ~had);
}

/* Is block i of s free in any bitmap (the owner's, remote, a child's)? */
static bool mblock_is_free(struct span *s, unsigned i)
{
    uint64_t bit = 1ull << (i % 64), f;
    f = atomic_load_explicit(&s->remote[i / 64], memory_order_acquire);
    f |= RELAXED_LOAD(s->free[i / 64]);
    if (unlikely(med.imap != NULL) && span_idx(s) < med.imap_spans)
        f |= RELAXED_LOAD(med.imap[span_idx(s) * SPAN_WORDS + i / 64]);
    return (f & bit) != 0;
}

/* ---- the owner's lists ---- */

static void mlist_push(struct theap *th, struct span *s)
{
    uint32_t *head = &th->mavail[s->cls], ref = (uint32_t)span_idx(s) + 1;
    s->where = IN_AVAIL;
    s->prev = 0;
    s->next = *head;
    if (*head)
        span_at(*head)->prev = ref;
    *head = ref;
}

static void mlist_remove(struct theap *th, struct span *s)
{
    if (s->where == IN_CUR) {
        th->mcur[s->cls] = NULL;
    } else if (s->where == IN_AVAIL) {
        if (s->prev)
            span_at(s->prev)->next = s->next;
        else
            th->mavail[s->cls] = s->next;
        if (s->next)
            span_at(s->next)->prev = s->prev;
    }
    s->where = IN_NONE;
}

/* ---- span life cycle ---- */

/* Make an acquired span ready for blocks of class c, owned by th.  The
 * owner is stored last, with release: a racing stale free sees either no
 * owner or every field set. */
static void span_init(struct span *s, struct theap *th, unsigned c)
{
    size_t size = mclass_size(c);
    unsigned n = (unsigned)(SPAN_BYTES / size);
    for (unsigned w = 0; w < SPAN_WORDS; w++) {
        unsigned lo = w * 64;
        RELAXED_STORE(s->free[w], n <= lo ? 0 : n - lo >= 64 ? ~0ull : (1ull << (n - lo)) - 1);
    }
    s->nblocks = s->nfree = (uint16_t)n;
    s->cls = (uint8_t)c;
    s->where = IN_NONE;
    s->next = s->prev = 0;
    RELAXED_STORE(s->sealed, 0);
    RELAXED_STORE(s->size, (uint32_t)size);
    th->nspans++;
    atomic_store_explicit(&s->owner, th, memory_order_release);
    span_check(s);
}

/* s is empty and on no list: unowned, back to the free spans (its pages
 * are idle, and the releaser gives them back). */
static void span_retire(struct theap *th, struct span *s)
{
    struct slock *m = span_stripe(s);
    slock_lock(m);
    RELAXED_STORE(s->owner, NULL);
    slock_unlock(m);
    th->nspans--;
    if (RELAXED_LOAD(s->owned))
        span_idle_pages(s, RELAXED_LOAD(s->owned));
    span_check(s);                       /* unowned: nothing live, no page owned */
    span_return(s);
}

/* Move s from th to the theap to; false when remote frees of s wait on th's
 * pending stack (the caller drains and tries again). */
static bool span_transfer(struct theap *th, struct span *s, struct theap *to)
{
    struct slock *m = span_stripe(s);
    slock_lock(m);
    bool ok = !s->pending;
    if (ok)
        RELAXED_STORE(s->owner, to);
    slock_unlock(m);
    if (ok) {
        mlist_remove(th, s);
        th->nspans--;
        to->nspans++;
    }
    return ok;
}

/* After s gained free blocks: retire it when empty (the current span stays),
 * or list it again once it has a few free blocks. */
static ALWAYS_INLINE void span_settle_owner(struct theap *th, struct span *s)
{
    if (s->nfree == s->nblocks) {
        if (s->where == IN_CUR && !RELAXED_LOAD(s->sealed))
            return;
        span_check(s);
        mlist_remove(th, s);
        span_retire(th, s);
    } else if (s->where == IN_FULL && !RELAXED_LOAD(s->sealed) &&
               s->nfree >= (s->nblocks / AVAIL_DIV > 1 ? s->nblocks / AVAIL_DIV : 1)) {
        mlist_push(th, s);
        span_check(s);
    }
}

/* Call fn on every span th owns (a walk of the carved spans, which stops
 * once it has seen them all).  fn may move the span. */
static void theap_spans_each(struct theap *th, void (*fn)(struct theap *, struct span *, void *),
                             void *arg)
{
    size_t left = th->nspans;
    pthread_mutex_lock(&med.lock);
    size_t n = med.ncarved;
    pthread_mutex_unlock(&med.lock);
    for (size_t i = 0; i < n && left; i++) {
        struct span *s = &med.spans[i];
        if (RELAXED_LOAD(s->owner) == th) {
            left--;
            fn(th, s, arg);
        }
    }
}

/* ---- the medium cache (see "Medium cache" in shed_impl.h) ---- */

/* mcache_hint, mcache_push and mcache_pop are in fast.h. */

/* Owner: one more (d = 1) or one fewer (d = -1) parked block at b's hint. */
static inline void mcache_hint_add(struct theap *th, const void *b, int d)
{
    _Atomic uint8_t *h = mcache_hint(th, b);
    RELAXED_STORE(*h, (uint8_t)(RELAXED_LOAD(*h) + d));
}

/* Is b parked in o's cache of class c?  Any thread may ask: relaxed loads,
 * which see a park that happened before the question. */
static __attribute__((noinline)) bool mcache_look(struct theap *o, unsigned c, const void *b)
{
    unsigned n = RELAXED_LOAD(o->mc_n[c]);
    for (unsigned k = 0; k < n && k < MCACHE_SLOTS; k++)
        if (RELAXED_LOAD(o->mc_blk[c][k]) == (uintptr_t)b)
            return true;
    return false;
}

/* Is b parked in o's cache of class c?  Its hint first: a line the owner
 * writes only for blocks of that hint, where the stack's count is written
 * at every park and pop. */
static inline bool mcache_holds(struct theap *o, unsigned c, const void *b)
{
    return RELAXED_LOAD(*mcache_hint(o, b)) != 0 && mcache_look(o, c, b);
}

/* Owner: block i of s, of size bytes, is free again in its span. */
static ALWAYS_INLINE void span_free_block(struct theap *th, struct span *s, unsigned i,
                                          size_t size)
{
    _Atomic uint64_t *w = &s->free[i / 64];
    RELAXED_STORE(*w, RELAXED_LOAD(*w) | 1ull << (i % 64));
    s->nfree++;
    CHECK(s->nfree <= s->nblocks, span_base(s) + (size_t)i * size);
    pages_drop(s, (size_t)i * size, size);
    span_settle_owner(th, s);
}

/* Owner (or the release thread that took th's cache over: see "Medium
 * cache"): the k oldest blocks of th's cache of class c go back to their
 * spans; the others move down. */
static void mcache_flush_class(struct theap *th, unsigned c, unsigned k)
{
    unsigned n = RELAXED_LOAD(th->mc_n[c]);
    for (unsigned j = 0; j < k; j++) {
        char *b = (char *)RELAXED_LOAD(th->mc_blk[c][j]);
        size_t off = (size_t)(b - med.base);
        mcache_hint_add(th, b, -1);
        struct span *s = &med.spans[off >> SPAN_SHIFT];
        span_free_block(th, s, block_of(s, off & (SPAN_BYTES - 1)), RELAXED_LOAD(s->size));
    }
    for (unsigned j = k; j < n; j++)
        RELAXED_STORE(th->mc_blk[c][j - k], RELAXED_LOAD(th->mc_blk[c][j]));
    RELAXED_STORE(th->mc_n[c], (uint8_t)(n - k));
    RELAXED_STORE(th->mc_units, RELAXED_LOAD(th->mc_units) - k * med_cls[c].units);
}

/* Owner (or the release thread, as above): every block of th's cache goes
 * back to its span. */
static void mcache_flush_in(struct theap *th)
{
    for (unsigned c = 0; c < MED_NCLS; c++)
        if (RELAXED_LOAD(th->mc_n[c]))
            mcache_flush_class(th, c, RELAXED_LOAD(th->mc_n[c]));
}

/* ---- the owner's bracket, and the flush by another thread ----
 *
 * Why the owner marks itself busy.  A thread that parked blocks and then
 * blocks (a read, a condition variable) makes no medium call again, so the
 * release thread must be able to flush its cache itself: give the blocks
 * back to their spans (free[], nfree, live[], the pages, the lists), which
 * is everything the owner writes with plain stores.  The two must never
 * run at once, and the owner's paths must stay free of locked instructions
 * and fences.  So, a store-then-load pair on each side (Dekker's), whose
 * owner half costs two plain stores and one load:
 *   owner:    busy = 1; [barrier]; look at steal; ...work...; busy = 0
 *   stealer:  steal = MC_INTENT; barrier; look at busy; claim if 0
 * The barrier on the stealer's side is membarrier(2) (span_owners_barrier,
 * the one span_own_pages relies on), which puts a full fence on every
 * thread of the process that runs; so the owner's [barrier] is only a
 * compiler barrier (med.asym), or a real fence where membarrier is missing.
 * One of the two sees the other: either the stealer sees busy == 1 and
 * leaves the theap to its owner (which sees the intent at its next entry
 * and flushes itself), or the owner sees the intent (or the stealer's
 * claim) at its entry.  Both claim with a compare-and-swap from the value
 * they saw (MC_INTENT or MC_ASKED to MC_OWNER; MC_INTENT to MC_STEALER), so
 * one only wins; an owner that sees MC_STEALER waits (sched_yield) until
 * the stealer stores MC_NONE, with release (busy = 0 is a release too, and
 * both looks acquire: each side sees all the other wrote).  Only a stealer
 * sets MC_INTENT, and stealers run one at a time (under g.theap_lock), so
 * a steal of MC_INTENT is of the intent that the barrier ordered: an
 * intent the owner took meanwhile is not set again before the stealer's
 * claim fails.  Holding g.theap_lock, the stealer also keeps the theap
 * from being recycled (theap_new clears steal) under it.
 * The owner's side is every path that touches its medium state: medium
 * malloc and free of its own spans (pop and park included; their common
 * case is malloc_fast's and free_fast's, in fast.h), the merge of
 * remote frees (medium_drain), its own flushes (the small slow path,
 * shed_trim, shed_freeze) and thread exit (medium_abandon).  fork()'s
 * handlers touch none of it, and take g.theap_lock, so no steal runs
 * across a fork.  A call made inside the bracket that comes back into
 * shed (releaser_ensure may start a thread, whose set-up allocates) leaves
 * the bracket on its way out: the slow path enters again after it. */

/* The state in a steal word (without MC_FENCE). */
static inline unsigned mc_state(uint8_t v)
{
    return v & ~MC_FENCE;
}

/* Owner, entered, its steal word not 0: fence first if asked to (MC_FENCE:
 * no membarrier), then flush if a flush was asked for (MC_ASKED or
 * MC_INTENT: the owner's claim), or wait while a stealer does it for us
 * (MC_STEALER). */
static COLD void mown_claim(struct theap *th)
{
    if (RELAXED_LOAD(th->mc_steal) & MC_FENCE)
        atomic_thread_fence(memory_order_seq_cst);
    for (;;) {
        uint8_t v = atomic_load_explicit(&th->mc_steal, memory_order_acquire);
        if (mc_state(v) == MC_NONE)
            return;
        if (mc_state(v) == MC_DONE) {    /* seen: the caller looks again */
            if (atomic_compare_exchange_weak(&th->mc_steal, &v, v & MC_FENCE))
                return;
            continue;
        }
        if (mc_state(v) == MC_STEALER) {
            sched_yield();
            continue;
        }
        if (atomic_compare_exchange_weak(&th->mc_steal, &v, (v & MC_FENCE) | MC_OWNER)) {
            mcache_flush_in(th);
            atomic_fetch_and_explicit(&th->mc_steal, MC_FENCE, memory_order_release);
            return;
        }
    }
}

/* mown_mark (the owner marks itself busy) is in fast.h. */

/* Owner: enter its medium state (see above). */
static ALWAYS_INLINE void mown_enter(struct theap *th)
{
    if (unlikely(!mown_mark(th)))
        mown_claim(th);
}

/* mown_leave (the owner leaves it) is in fast.h. */

/* Owner: every block of th's cache goes back to its span. */
void mcache_flush(struct theap *th)
{
    mown_enter(th);
    mcache_flush_in(th);
    mown_leave(th);
}

/* Blocks parked in th's cache, all classes. */
static unsigned mcache_count(struct theap *th)
{
    unsigned n = 0;
    for (unsigned c = 0; c < MED_NCLS; c++)
        n += RELAXED_LOAD(th->mc_n[c]);
    return n;
}

/* A theap whose cache another thread may ask for and flush (g.theap_lock
 * held): a live thread's own. */
static bool mcache_of_thread(struct theap *th)
{
    return th->live && !th->shared && !theap_inherited(th);
}

/* Ask every thread with parked blocks to flush them at its next call
 * (shed_freeze: no parked block of a sealed span is handed out again; the
 * caller's own cache is flushed already). */
void mcache_ask_all(void)
{
    pthread_mutex_lock(&g.theap_lock);
    for (struct theap *th = g.theaps; th; th = th->all_next) {
        uint8_t v = atomic_load(&th->mc_steal);
        if (mcache_of_thread(th) && mcache_count(th))
            while (mc_state(v) == MC_NONE &&
                   !atomic_compare_exchange_weak(&th->mc_steal, &v, v | MC_ASKED))
                ;
    }
    pthread_mutex_unlock(&g.theap_lock);
}

/* One round of the flushes by another thread (see "the owner's bracket"):
 * every theap asked a round ago (MC_ASKED, or an intent left) whose owner
 * has not flushed since, or with trim every theap with parked blocks, gets
 * an intent; after the barrier, the cache of each whose owner is not busy
 * is flushed here.  Without trim, theaps with parked blocks and no request
 * are asked (for the next round), after the barrier, which also orders the
 * release thread's clear of med.mc_watch against a park (mcache_park).
 * Returns true when a request is left (a theap asked, or busy). */
static bool mcache_round(bool trim)
{
    bool left = false, ordered = true, asym = RELAXED_LOAD(med.asym);
    pthread_mutex_lock(&g.theap_lock);
    for (struct theap *th = g.theaps; th; th = th->all_next) {
        if (!mcache_of_thread(th))
            continue;
        uint8_t v = atomic_load(&th->mc_steal);
        if (!asym && !(v & MC_FENCE)) {
            /* no membarrier (any more): the owner fences from its next
             * entry, and no steal this round (it may be inside one that
             * did not) */
            v = atomic_fetch_or(&th->mc_steal, MC_FENCE) | MC_FENCE;
            ordered = false;
        }
        if (mc_state(v) == MC_ASKED || (trim && mc_state(v) == MC_NONE && mcache_count(th)))
            atomic_compare_exchange_strong(&th->mc_steal, &v, (v & MC_FENCE) | MC_INTENT);
    }
    if (!trim)
        atomic_store(&med.mc_watch, false);
    ordered &= span_owners_barrier();
    for (struct theap *th = g.theaps; th; th = th->all_next) {
        if (!mcache_of_thread(th))
            continue;
        uint8_t v = atomic_load(&th->mc_steal);
        if (mc_state(v) == MC_INTENT && ordered &&
            !atomic_load_explicit(&th->mc_busy, memory_order_acquire) &&
            atomic_compare_exchange_strong(&th->mc_steal, &v, (v & MC_FENCE) | MC_STEALER)) {
            mcache_flush_in(th);         /* the owner waits meanwhile */
            atomic_store_explicit(&th->mc_steal, (v & MC_FENCE) | MC_DONE, memory_order_release);
        } else if (mc_state(v) == MC_NONE && !trim && mcache_count(th)) {
            left |= atomic_compare_exchange_strong(&th->mc_steal, &v, v | MC_ASKED) ||
                    mc_state(v) != MC_NONE;
        } else if (mc_state(v) != MC_NONE && mc_state(v) != MC_DONE) {
            left = true;                 /* busy, or its owner flushes now */
        }
    }
    pthread_mutex_unlock(&g.theap_lock);
    return left || !ordered;             /* owners may have raced: again */
}

/* shed_trim: every other thread's parked blocks go back to their spans,
 * here for the threads not in a medium call now, at their next call for
 * the others. */
void mcache_trim_all(void)
{
    if (med.base)
        mcache_round(true);
}

/* The release thread, at each wake-up: once a block was parked into an
 * empty class stack (med.mc_watch), or while a request is left, a round
 * (mcache_round) delay_ms after the last at the earliest.  So a theap with
 * parked blocks is asked at most delay_ms after its first park, and its
 * cache is flushed by its owner at its next medium call (or small
 * allocation slow path), or by the release thread a round later if the
 * owner made none; its pages then go idle and are released as any others.
 * Returns the milliseconds until the next round (UINT32_MAX: nothing parked
 * since the last one, and no request left; a park wakes the thread). */
uint32_t medium_cache_ask(void)
{
    if (!med.base || (!atomic_load(&med.mc_watch) && !med.mc_left))
        return UINT32_MAX;
    uint32_t delay = RELAXED_LOAD(g.opt.delay_ms), since = now_ms() - med.mc_asked_ms;
    if (since < delay)
        return delay - since;
    med.mc_asked_ms = now_ms();
    med.mc_left = mcache_round(false);
    return med.mc_left ? (delay ? delay : 1) : UINT32_MAX;
}

/* A block was parked into th's empty stack of a class: the release thread
 * must come to ask for it within delay_ms. */
static COLD void mcache_watch(void)
{
    if (!atomic_exchange(&med.mc_watch, true))
        releaser_kick_later();
}

/* Owner: a block was parked into th's empty stack of a class: the release
 * thread must know (med.mc_watch: see mcache_round). */
static ALWAYS_INLINE void mcache_watch_park(struct theap *th)
{
    (void)th;
    owner_fence();
    if (unlikely(!RELAXED_LOAD(med.mc_watch)))
        mcache_watch();
}

/* May the owner th park a block of s (see "Medium cache")?  Not under a
 * checker nor with release=inline (med.park_size is 0 then), nor in a
 * sealed span. */
static ALWAYS_INLINE bool mcache_may_park(struct span *s)
{
    return likely(RELAXED_LOAD(med.park_size) != 0) && likely(!RELAXED_LOAD(s->sealed));
}

/* The class whose parked blocks count most in th's budget. */
static unsigned mcache_largest(struct theap *th)
{
    unsigned best = 0;
    uint32_t most = 0;
    for (unsigned c = 0; c < MED_NCLS; c++) {
        uint32_t u = RELAXED_LOAD(th->mc_n[c]) * (uint32_t)med_cls[c].units;
        if (u > most) {
            most = u;
            best = c;
        }
    }
    return best;
}

/* Owner: park b (block i of s, not parked, allocated) in th's cache of
 * class c; false when it may not be parked.  The first of its class, one
 * too many, or over the budget: medium_free parks the others itself.  A
 * full class gives its older half back to the spans; over the budget, so
 * does the class (its older half, when it has two blocks or more), else
 * the class that holds most of the budget. */
static bool mcache_park(struct theap *th, struct span *s, unsigned c, void *b)
{
    _Atomic uint8_t *hint = mcache_hint(th, b);
    if (!mcache_may_park(s) || unlikely(RELAXED_LOAD(*hint) == MCACHE_HINT_MAX))
        return false;
    unsigned n = RELAXED_LOAD(th->mc_n[c]);
    if (unlikely(n >= med_cls[c].cap)) {
        unsigned out = n > 1 ? n / 2 : n;   /* the older half; a cap of 1: it */
        mcache_flush_class(th, c, out);
        n -= out;
    }
    while (unlikely(mcache_units_with(th, c) > MCACHE_BUDGET_UNITS)) {
        unsigned v = n >= 2 ? c : mcache_largest(th), m = RELAXED_LOAD(th->mc_n[v]);
        mcache_flush_class(th, v, m > 1 ? m / 2 : m);
        n = RELAXED_LOAD(th->mc_n[c]);
    }
    mcache_push(th, c, n, b, hint, RELAXED_LOAD(*hint), mcache_units_with(th, c));
    if (n == 0)
        mcache_watch_park(th);
    return true;
}

/* Owner, marked: a block was parked into an empty stack; then it leaves
 * (free_fast's tail call). */
__attribute__((noinline)) void mcache_first_parked(struct theap *th)
{
    mcache_watch_park(th);
    mown_leave(th);
}

/* ---- allocation ---- */

static void mdrain(struct theap *th);

/* Owner: a block of s, which has a free one: the lowest, so that live
 * blocks stay packed at the span's start and its last pages go idle. */
static ALWAYS_INLINE void *span_take(struct span *s)
{
    unsigned w = 0;
    uint64_t m;
    CHECK(s->nfree > 0 && s->nfree <= s->nblocks, span_base(s));
    while (!(m = RELAXED_LOAD(s->free[w])))
        w++;
    RELAXED_STORE(s->free[w], m & (m - 1));
    s->nfree--;
    size_t size = RELAXED_LOAD(s->size), off = (w * 64 + (unsigned)__builtin_ctzll(m)) * size;
    pages_hold(s, off, size);
    return span_base(s) + off;
}

/* s, out of th's lists, was sealed: it gives no more blocks.  Empty, it is
 * retired now (no free will come to do it); else it waits on no list. */
static void span_set_aside(struct theap *th, struct span *s)
{
    if (s->nfree == s->nblocks)
        span_retire(th, s);
    else
        s->where = IN_FULL;
}

static void relist_span(struct theap *th, struct span *s, void *arg)
{
    (void)arg;
    if (s->where == IN_FULL && s->nfree && !RELAXED_LOAD(s->sealed))
        mlist_push(th, s);
}

/* An orphaned span of class c with free blocks, if there is one. */
static struct span *span_adopt(struct theap *th, unsigned c)
{
    if (th->is_heap || RELAXED_LOAD(g.norphans) == 0 ||
        pthread_mutex_trylock(&g.orphan_lock) != 0)
        return NULL;
    struct theap *o = g.orphanage;
    mdrain(o);
    struct span *s;
    while ((s = span_at(o->mavail[c])) && !span_transfer(o, s, th)) {
        mlist_remove(o, s);              /* remote frees raced in: later */
        s->where = IN_FULL;
    }
    if (s)
        RELAXED_ADD(g.norphans, (size_t)-1);
    pthread_mutex_unlock(&g.orphan_lock);
    return s;
}

static COLD void *medium_alloc_slow(struct theap *th, unsigned c)
{
    if (atomic_load_explicit(&th->mpending, memory_order_relaxed))
        mdrain(th);
    mtheap_check(th, false);
    if (unlikely(RELAXED_LOAD(g.thread_due) != 0)) {
        releaser_ensure();               /* idle pages waited: see release.c */
        mown_enter(th);                  /* again (see "the owner's bracket") */
    }
    unsigned thaw = RELAXED_LOAD(g.thaw_epoch);
    if (th->mthaw_seen != thaw) {
        th->mthaw_seen = thaw;
        theap_spans_each(th, relist_span, NULL);
        mtheap_check(th, false);
    }
    struct span *s = th->mcur[c];
    if (s) {
        if (s->nfree && !RELAXED_LOAD(s->sealed))
            return span_take(s);
        th->mcur[c] = NULL;
        if (RELAXED_LOAD(s->sealed))
            span_set_aside(th, s);
        else
            s->where = IN_FULL;
    }
    for (;;) {
        if ((s = span_at(th->mavail[c]))) {
            mlist_remove(th, s);
        } else if (!(s = span_adopt(th, c))) {
            releaser_ensure();           /* where a thread may start */
            mown_enter(th);
            if (!(s = span_acquire()))
                return NULL;
            span_init(s, th, c);
        }
        if (unlikely(RELAXED_LOAD(s->sealed))) {
            span_set_aside(th, s);
            continue;
        }
        if (!s->nfree) {                 /* an orphan whose frees are to come */
            s->where = IN_FULL;
            continue;
        }
        s->where = IN_CUR;
        th->mcur[c] = s;
        span_check(s);
        return span_take(s);
    }
}

/* Owner: mark th busy and pop its latest parked block of class c; NULL,
 * th left marked, when it has none or a steal word to look at (the
 * caller then goes on with medium_alloc_span). */
static ALWAYS_INLINE void *mcache_try_pop(struct theap *th, unsigned c)
{
    unsigned n;
    if (likely(mown_mark(th)) && likely((n = RELAXED_LOAD(th->mc_n[c])) != 0)) {
        void *b = mcache_pop(th, c, n);
        mown_leave(th);
        return b;
    }
    return NULL;
}

/* medium_alloc with no parked block to pop, or a steal word to look at
 * (th marked busy): out of line, so that the pop above saves no registers. */
static __attribute__((noinline)) void *medium_alloc_span(struct theap *th, unsigned c)
{
    void *b;
    if (unlikely(RELAXED_LOAD(th->mc_steal) != 0)) {
        mown_claim(th);
        unsigned n = RELAXED_LOAD(th->mc_n[c]);
        if (n) {
            b = mcache_pop(th, c, n);
            mown_leave(th);
            return b;
        }
    }
    struct span *s = th->mcur[c];
    if (likely(s != NULL) && likely(s->nfree != 0) && likely(!RELAXED_LOAD(s->sealed)))
        b = span_take(s);
    else
        b = medium_alloc_slow(th, c);
    mown_leave(th);
    return b;
}

/* A medium block of size bytes aligned to align from th (the caller's own
 * theap, or a heap's under its lock); NULL when no class fits or the medium
 * region is used up. */
void *medium_alloc(struct theap *th, size_t size, size_t align)
{
    int c = mclass_for(size, align);
    if (c < 0)
        return NULL;
    void *b = mcache_try_pop(th, (unsigned)c);
    if (likely(b != NULL))
        return b;
    return medium_alloc_span(th, (unsigned)c);
}

/* malloc's medium block for the calling thread's theap th (alloc_large):
 * as medium_alloc, announced to a checker, and from the system allocator
 * when no class fits or the medium region is used up.  Every path ends in
 * a tail call, so that the pop saves no registers.  medium_malloc_span is
 * also malloc_fast's (fast.h) when it has no parked block to pop. */
__attribute__((noinline)) void *medium_malloc_span(struct theap *th, unsigned c, size_t size,
                                                   size_t align)
{
    if (unlikely(th == NO_THEAP))        /* from malloc_fast: the thread's first */
        return alloc_large(size, align);
    if (unlikely(!med.base)) {           /* from malloc_fast: no medium region */
        mown_leave(th);
        return alloc_system(size, align);
    }
    void *b = medium_alloc_span(th, c);
    if (unlikely(!b))
        return alloc_system(size, align);
    if (unlikely(g.checker))
        chk_alloc(b, size);
    return b;
}

void *medium_malloc(struct theap *th, size_t size, size_t align)
{
    int c = mclass_for(size, align);
    if (unlikely(c < 0))
        return alloc_system(size, align);
    void *b = mcache_try_pop(th, (unsigned)c);     /* none under a checker */
    if (likely(b != NULL))
        return b;
    return medium_malloc_span(th, (unsigned)c, size, align);
}

/* ---- free ---- */

/* Find the block ptr (in the medium region) starts: -1 with *sp and *idx
 * set when it starts a block slot of an owned span, else the error. */
static ALWAYS_INLINE int span_locate(const void *ptr, struct span **sp, unsigned *idx)
{
    size_t off = (size_t)((const char *)ptr - med.base), boff = off & (SPAN_BYTES - 1);
    struct span *s = &med.spans[off >> SPAN_SHIFT];
    struct theap *o = atomic_load_explicit(&s->owner, memory_order_acquire);
    size_t size = RELAXED_LOAD(s->size);
    if (!o)
        return size && boff % size == 0 && boff / size < SPAN_BYTES / size ? E_DOUBLE : E_INVALID;
    unsigned i = block_of(s, boff);
    if (i >= s->nblocks)
        return E_INVALID;
    if ((size_t)i * size != boff)
        return E_INTERIOR;
    *sp = s;
    *idx = i;
    return -1;
}

/* Another thread's span: under the stripe lock, the block's bit in the
 * remote bitmap (or, in a fork()ed child, in med.imap), and the span on the
 * owner's pending stack. */
static __attribute__((noinline)) void span_free_remote(struct span *s, unsigned i, size_t size,
                                                       const void *ptr, const char *call)
{
    struct slock *m = span_stripe(s);
    slock_lock(m);
    struct theap *o = atomic_load_explicit(&s->owner, memory_order_acquire);
    if (!o || RELAXED_LOAD(s->size) != size || mblock_is_free(s, i) ||
        mcache_holds(o, s->cls, ptr)) {
        slock_unlock(m);
        shed_error(E_DOUBLE, ptr, call);
        return;
    }
    uint64_t bit = 1ull << (i % 64);
    if (unlikely(theap_inherited(o))) {
        _Atomic uint64_t *w = &med.imap[span_idx(s) * SPAN_WORDS + i / 64];
        RELAXED_STORE(*w, RELAXED_LOAD(*w) | bit);
        slock_unlock(m);
        inherit_count_frees(size >> 9);
        return;
    }
    RELAXED_STORE(s->remote[i / 64], RELAXED_LOAD(s->remote[i / 64]) | bit);
    bool wake = false;
    if (!s->pending) {
        wake = o->shared;
        s->pending = 1;
        s->pnext = atomic_load_explicit(&o->mpending, memory_order_relaxed);
        while (!atomic_compare_exchange_weak_explicit(&o->mpending, &s->pnext, s,
                                                      memory_order_release,
                                                      memory_order_relaxed))
            ;
    }
    slock_unlock(m);
    if (wake)
        releaser_collect_soon();
}

/* The owner's free that medium_free did not park at once: the first block
 * of its class, one too many, a flush asked for, or no parking at all (out
 * of line: medium_free saves no registers). */
static __attribute__((noinline)) void medium_free_owner(struct theap *th, struct span *s,
                                                        unsigned i, void *ptr)
{
    if (!mcache_park(th, s, s->cls, ptr))
        span_free_block(th, s, i, RELAXED_LOAD(s->size));
    mown_leave(th);
}

/* The owner's free of block i of s (th marked busy, the claim done): a
 * double free reported, else parked, else given back to s. */
static ALWAYS_INLINE void medium_free_mine(struct theap *th, struct span *s, unsigned i,
                                           void *ptr, const char *call)
{
    unsigned c = s->cls;
    _Atomic uint8_t *hint = mcache_hint(th, ptr);
    if (unlikely(RELAXED_LOAD(s->free[i / 64]) >> (i % 64) & 1) ||
        (unlikely(RELAXED_LOAD(*hint) != 0) && mcache_look(th, c, ptr))) {
        mown_leave(th);
        return shed_error(E_DOUBLE, ptr, call);
    }
    unsigned n = RELAXED_LOAD(th->mc_n[c]);
    uint32_t units = mcache_units_with(th, c);
    unsigned h = RELAXED_LOAD(*hint);
    if (likely(n - 1 < med_cls[c].cap - 1u) && likely(units <= MCACHE_BUDGET_UNITS) &&
        likely(mcache_may_park(s)) && likely(h != MCACHE_HINT_MAX)) {
        mcache_push(th, c, n, ptr, hint, h, units);  /* not the first, nor one too many */
        mown_leave(th);
        return;
    }
    medium_free_owner(th, s, i, ptr);
}

/* medium_free_mine of ptr, a block of s: out of line for free_fast (fast.h),
 * whose common case it does itself, and which keeps the block's index in no
 * register for it. */
__attribute__((noinline)) void medium_free_mine_at(struct theap *th, struct span *s, void *ptr,
                                                   const char *call)
{
    medium_free_mine(th, s, block_of(s, (size_t)((char *)ptr - span_base(s))), ptr, call);
}

/* The owner's free with a steal word to look at: claim, then look whether
 * s is still th's (a stealer may have emptied and retired it: the block
 * was parked, so this is a double free, which the remote free reports). */
static COLD void medium_free_claim(struct theap *th, struct span *s, unsigned i, size_t size,
                                   void *ptr, const char *call)
{
    mown_claim(th);
    if (RELAXED_LOAD(s->owner) != th) {
        mown_leave(th);
        return span_free_remote(s, i, size, ptr, call);
    }
    medium_free_mine(th, s, i, ptr, call);
}

/* Free a pointer into the medium region: check it, then the owner's free or
 * the remote one.  checked (under a checker): tell ASan, once the block is
 * known good, and hold the block in the quarantine (quarantine.c) rather
 * than give it back now, as free.c does for pool blocks. */
static ALWAYS_INLINE void medium_free_block(void *ptr, const char *call, bool checked)
{
    struct span *s;
    unsigned i;
    int err = span_locate(ptr, &s, &i);
    if (unlikely(err >= 0))
        return shed_error(err, ptr, call);
    size_t size = RELAXED_LOAD(s->size);
    if (unlikely(checked)) {
        if (mblock_is_free(s, i))
            return shed_error(E_DOUBLE, ptr, call);
        chk_free(ptr, size);
        if (quarantine_put(ptr, (unsigned)size, call))
            return;
    }
    struct theap *th = tls_heap;
    if (RELAXED_LOAD(s->owner) != th)
        return span_free_remote(s, i, size, ptr, call);
    /* after the mark, s is still th's unless a steal ran (the claim looks) */
    if (unlikely(!mown_mark(th)))
        return medium_free_claim(th, s, i, size, ptr, call);
    medium_free_mine(th, s, i, ptr, call);
}

void medium_free(void *ptr, const char *call)
{
    if (unlikely(g.checker)) {
        chk_free_early(ptr);     /* memcheck reports a bad free at the caller's line */
        return medium_free_block(ptr, call, true);
    }
    medium_free_block(ptr, call, false);
}

/* A block leaving the quarantine, checked when it was freed. */
void medium_free_now(void *ptr, const char *call)
{
    medium_free_block(ptr, call, false);
}

/* The usable size of a live medium block, 0 after reporting a bad one. */
size_t medium_usable(const void *ptr, const char *call)
{
    struct span *s;
    unsigned i;
    int err = span_locate(ptr, &s, &i);
    struct theap *o = err < 0 ? RELAXED_LOAD(s->owner) : NULL;
    if (err < 0 && (mblock_is_free(s, i) || (g.checker && quarantine_holds(ptr)) ||
                    (o && mcache_holds(o, s->cls, ptr))))
        err = E_DOUBLE;
    if (unlikely(err >= 0)) {
        shed_error(err, ptr, call);
        return 0;
    }
    return RELAXED_LOAD(s->size);
}

/* Owner, entered (or the holder of a shared theap's lock): merge the remote
 * frees of th's pending spans; pages they leave unused go idle. */
static void mdrain(struct theap *th)
{
    struct span *s = atomic_exchange_explicit(&th->mpending, NULL, memory_order_acquire);
    while (s) {
        struct span *next = s->pnext;
        struct slock *m = span_stripe(s);
        uint64_t merged[SPAN_WORDS];
        slock_lock(m);
        for (unsigned w = 0; w < SPAN_WORDS; w++) {
            uint64_t r = RELAXED_LOAD(s->remote[w]), f = RELAXED_LOAD(s->free[w]);
            merged[w] = 0;
            if (!r)
                continue;
            if (unlikely(r & f)) {
                size_t i = (size_t)w * 64 + (size_t)__builtin_ctzll(r & f);
                shed_error(E_DOUBLE, span_base(s) + i * RELAXED_LOAD(s->size), "free");
                r &= ~f;
            }
            if (unlikely(RELAXED_LOAD(th->mc_n[s->cls]) != 0)) {
                /* a block the owner freed, parked, then freed here again */
                for (uint64_t m2 = r; m2; m2 &= m2 - 1) {
                    size_t i = (size_t)w * 64 + (size_t)__builtin_ctzll(m2);
                    char *b = span_base(s) + i * RELAXED_LOAD(s->size);
                    if (mcache_holds(th, s->cls, b)) {
                        shed_error(E_DOUBLE, b, "free");
                        r &= ~(1ull << (i % 64));
                    }
                }
            }
            RELAXED_STORE(s->free[w], f | r);
            atomic_store_explicit(&s->remote[w], 0, memory_order_release);
            s->nfree = (uint16_t)(s->nfree + __builtin_popcountll(r));
            merged[w] = r;
        }
        s->pending = 0;
        slock_unlock(m);
        size_t size = RELAXED_LOAD(s->size);
        for (unsigned w = 0; w < SPAN_WORDS; w++)
            for (uint64_t r = merged[w]; r; r &= r - 1)
                pages_drop(s, (w * 64 + (size_t)__builtin_ctzll(r)) * size, size);
        span_check(s);
        span_settle_owner(th, s);
        s = next;
    }
}

/* mdrain for the owner (theap_drain) or a shared theap's lock holder. */
void medium_drain(struct theap *th)
{
    mown_enter(th);
    mdrain(th);
    mown_leave(th);
}

/* ---- a theap's spans as a whole ---- */

void medium_theap_clear(struct theap *th)
{
    /* the cache: only what is not zero, so that a fork()ed child's reclaim
     * writes no page of an inherited theap whose cache was empty */
    for (unsigned c = 0; c < MED_NCLS; c++)
        if (RELAXED_LOAD(th->mc_n[c]))
            RELAXED_STORE(th->mc_n[c], 0);
    if (RELAXED_LOAD(th->mc_units))
        RELAXED_STORE(th->mc_units, 0);
    if (RELAXED_LOAD(th->mc_steal))     /* left by a request, or by a fork */
        RELAXED_STORE(th->mc_steal, MC_NONE);
    if (RELAXED_LOAD(th->mc_busy))
        RELAXED_STORE(th->mc_busy, 0);
    for (unsigned h = 0; h < MCACHE_HINTS; h++)
        if (RELAXED_LOAD(th->mc_hint[h]))
            RELAXED_STORE(th->mc_hint[h], 0);
    memset(th->mcur, 0, sizeof th->mcur);
    memset(th->mavail, 0, sizeof th->mavail);
    atomic_store(&th->mpending, NULL);
    th->nspans = 0;
}

struct mabandon {
    bool left;                   /* a span had remote frees pending */
};

static void abandon_span(struct theap *th, struct span *s, void *arg)
{
    struct mabandon *a = arg;
    struct theap *o = g.orphanage;
    if (s->nfree == s->nblocks) {
        mlist_remove(th, s);
        span_retire(th, s);
    } else if (span_transfer(th, s, o)) {
        if (!RELAXED_LOAD(s->sealed) && s->nfree)
            mlist_push(o, s);
        else
            s->where = IN_FULL;          /* relisted by a merge (medium_drain) */
        span_check(s);
        RELAXED_ADD(g.norphans, 1);
    } else {
        a->left = true;
    }
}

/* Thread exit (theap_abandon, under g.orphan_lock): th's spans go to the
 * orphanage, or back when empty. */
void medium_abandon(struct theap *th)
{
    struct mabandon a = { true };
    mown_enter(th);
    mcache_flush_in(th);
    while (a.left) {
        a.left = false;
        mdrain(th);
        theap_spans_each(th, abandon_span, &a);
        if (a.left)
            sched_yield();
    }
    medium_theap_clear(th);
    mown_leave(th);
    mtheap_check(g.orphanage, false);
}

static void destroy_span(struct theap *th, struct span *s, void *arg)
{
    (void)arg;
    size_t size = RELAXED_LOAD(s->size);
    /* memcheck hears that the live blocks are gone; the quarantine forgets
     * those it holds (freed already) */
    for (unsigned i = 0; unlikely(g.checker) && i < s->nblocks; i++)
        if (!mblock_is_free(s, i) && !quarantine_forget(span_base(s) + i * size))
            chk_free_early(span_base(s) + i * size);
    for (unsigned w = 0; w < SPAN_WORDS; w++)
        if (RELAXED_LOAD(s->remote[w]))
            RELAXED_STORE(s->remote[w], 0);
    s->pending = 0;
    memset(s->live, 0, sizeof s->live);  /* the blocks in use go too */
    chk_noaccess(span_base(s), SPAN_BYTES);
    mlist_remove(th, s);
    span_retire(th, s);
}

/* shed_heap_destroy (under the heap's lock): every span of the heap goes
 * back, live blocks or not. */
void medium_destroy(struct theap *th)
{
    mdrain(th);
    theap_spans_each(th, destroy_span, NULL);
    mtheap_check(th, true);
    medium_theap_clear(th);
}

/* ---- fork()ed child ---- */

/* Pages of the spans owned by inherited theaps (the child's atfork
 * handler, single-threaded). */
size_t medium_inherited_pages(void)
{
    size_t n = 0;
    for (size_t i = 0; i < med.ncarved; i++) {
        struct theap *o = RELAXED_LOAD(med.spans[i].owner);
        n += o && theap_inherited(o) ? med.span_pages : 0;
    }
    return n;
}

/* Take over every span of the inherited theaps (under g.orphan_lock, or in
 * the atfork child handler): merge the frees made here (med.imap) and the
 * remote ones, recount, and hand it to the orphanage or, empty, back. */
void medium_reclaim_inherited(void)
{
    if (!med.base)
        return;
    bool in_child = g.in_fork_child;
    g.in_fork_child = true;              /* no release from here */
    pthread_mutex_lock(&med.lock);
    size_t n = med.ncarved;
    med.fork_spans = 0;                  /* the parent's spans are ours now */
    pthread_mutex_unlock(&med.lock);
    struct theap *o = g.orphanage;
    for (size_t i = 0; i < n; i++) {
        struct span *s = &med.spans[i];
        struct theap *th = RELAXED_LOAD(s->owner);
        if (!th || !theap_inherited(th))
            continue;
        struct slock *m = span_stripe(s);
        slock_lock(m);
        unsigned nfree = 0;
        for (unsigned w = 0; w < SPAN_WORDS; w++) {
            uint64_t f = RELAXED_LOAD(s->free[w]) | RELAXED_LOAD(s->remote[w]);
            if (med.imap && i < med.imap_spans)
                f |= RELAXED_LOAD(med.imap[i * SPAN_WORDS + w]);
            if (f != RELAXED_LOAD(s->free[w]))
                RELAXED_STORE(s->free[w], f);
            if (RELAXED_LOAD(s->remote[w]))
                RELAXED_STORE(s->remote[w], 0);
            nfree += (unsigned)__builtin_popcountll(f);
        }
        s->nfree = (uint16_t)nfree;
        s->pending = 0;
        s->where = IN_NONE;
        bool empty = nfree == s->nblocks;
        if (!empty) {
            RELAXED_STORE(s->owner, o);
            th->nspans--;
            o->nspans++;
        }
        slock_unlock(m);
        pages_recount(s);
        if (empty) {
            span_retire(th, s);
        } else {
            if (!RELAXED_LOAD(s->sealed) && s->nfree)
                mlist_push(o, s);
            else
                s->where = IN_FULL;
            span_check(s);
            RELAXED_ADD(g.norphans, 1);
        }
    }
    for (struct theap *th = g.theaps; th; th = th->all_next)
        if (theap_inherited(th))
            medium_theap_clear(th);
    g.in_fork_child = in_child;
}

/* ---- statistics ---- */

void medium_stats(struct shed_stats *st)
{
    if (!med.base)
        return;
    size_t parked[MED_NCLS] = { 0 };
    pthread_mutex_lock(&g.theap_lock);
    for (struct theap *th = g.theaps; th; th = th->all_next)
        for (unsigned c = 0; th->live && !theap_inherited(th) && c < MED_NCLS; c++)
            parked[c] += RELAXED_LOAD(th->mc_n[c]);
    pthread_mutex_unlock(&g.theap_lock);
    pthread_mutex_lock(&med.lock);
    for (size_t i = 0; i < med.ncarved; i++) {
        struct span *s = &med.spans[i];
        if (!RELAXED_LOAD(s->owner))
            continue;
        size_t nfree = 0;
        for (unsigned b = 0; b < s->nblocks; b++)   /* held: freed, for the program */
            nfree += mblock_is_free(s, b) ||
                     (g.checker && quarantine_holds(span_base(s) + b * RELAXED_LOAD(s->size)));
        st->medium[s->cls].blocks_in_use += s->nblocks - nfree;
        st->medium[s->cls].pools_in_use++;
    }
    st->spans_in_use = med.spans_used;
    st->medium_bytes_mapped = med.ncarved << SPAN_SHIFT;
    pthread_mutex_unlock(&med.lock);
    for (unsigned c = 0; c < MED_NCLS; c++) {
        struct shed_class_stats *cs = &st->medium[c];
        cs->block_size = mclass_size(c);
        cs->blocks_in_use -= parked[c] < cs->blocks_in_use ? parked[c] : cs->blocks_in_use;
        cs->bytes_in_use = cs->blocks_in_use * cs->block_size;
    }
    st->span_size = SPAN_BYTES;
    st->medium_bytes_resident = span_resident_bytes();
}

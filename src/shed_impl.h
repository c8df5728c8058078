/*
 * shed internals: every metadata structure and its invariants, in one place.
 *
 * The heap region is one reservation of address space, carved from the bottom
 * into arenas of 64 pools; a pool is one page of same-size blocks:
 *
 *   region  +----------------------+----------------------+----------- ... --+
 *           | arena 0              | arena 1              |  not yet carved   |
 *           +----------------------+----------------------+----------- ... --+
 *   arena   | pool 0 | pool 1 | ... | pool 63 |        64 pools, 64 pages
 *   pool    | block | block | block | ... | block | tail |   one page, one class
 *
 *   metadata tables (beside the region, never inside a pool page):
 *     descs[i]   one struct pool per pool of the region, indexed by
 *                (address - region) >> page_shift: the free-block bitmap and
 *                all the owner touches, one cache line with 4 KiB pages
 *     remotes[i] one struct pool_remote per pool, same index: what only frees from
 *                other threads touch (the remote bitmap)
 *     arenas[j]  one struct arena per arena: the 64-bit pool-state masks
 *   mapped read-only for the whole region (the three in one mapping) and
 *   made writable with the arena's pools as arenas are carved (one page of
 *   each table per arena; two arenas at a time, the next one ready for a
 *   fork()ed child: arena_commit), so that shed's commit charge follows
 *   what it uses (strict overcommit counts a writable private mapping in
 *   full); a descriptor of a pool never carved reads as zeros (not in
 *   use), as a wild pointer's must.
 *
 * So "is this pointer ours" is one subtraction and one comparison, a free
 * writes only the metadata table (the freed block's page stays shared with a
 * fork()ed child and can be marked no-access for valgrind at once), and a pool
 * page can be given back to the kernel without losing anything.
 *
 * Ownership.  Every pool in use is owned by one theap ("thread heap"): each
 * thread has its own, and the orphanage is a shared one, under a mutex, that
 * takes the pools of exited threads.  The owner allocates and frees blocks of
 * its pools with no atomic read-modify-write and no lock.  Any other thread
 * frees a block by setting its bit in the pool's remote bitmap with an atomic
 * OR, and pushes the pool once (under the pool's stripe lock) onto the
 * owner's pending stack; the owner merges remote bits into its free bitmap
 * when it next needs blocks ("Remote frees" at free_remote_fast, free.c).
 *
 * fork().  In the child, the theaps that were live (every thread's, and the
 * orphanage, which a fresh one replaces) become "inherited" (theap_inherited:
 * by generation, no theap written): their pools stay theirs, nobody
 * allocates from them, and a free into one sets the block's bit in the
 * inherit map g.imap (struct imap: a bit per block of each inherited pool,
 * the child's own memory, laid out an arena at a time) instead of writing
 * the descriptor, whose page is still shared with the parent.  Meanwhile the
 * child's new pools and spans come from arenas and spans it carves
 * (g.fork_arenas, med.fork_spans), not from the parent's free ones.
 * theap_reclaim_inherited later merges the map and hands the pools to the
 * orphanage.
 *
 * Pool life cycle (arena masks; exactly one bit per carved pool):
 *
 *   released --acquire--> used --last block freed--> dirty --delay--> releasing
 *       ^                  ^                           |                  |
 *       |                  +-------- acquire ----------+                  |
 *       +------------------------ madvise done ---------------------------+
 *       (a failed madvise puts the pool back into dirty)
 *
 * Fresh arenas start with every pool "released" (never touched, so not
 * resident).  Pools sealed by shed_freeze() are marked in a fifth mask; a
 * sealed pool that empties is not reused until it is released or thawed.
 * The arena lock (g.lock) guards the masks; a pool in "releasing"
 * belongs to whoever claimed it, so no allocation can get it while the kernel
 * is advised, and no live block can be in a pool that is advised.
 * Under g.lock, for each carved arena: the four state masks are disjoint and
 * cover its 64 pools; held is within releasing and sealed within used, dirty
 * or releasing; touched covers every pool used, dirty or releasing but held; nused is popcount(used); it is on the dirty bucket list
 * (at index nused) iff it has an unsealed dirty pool, on the released one
 * iff it has a released pool, and its bit of g.dirty_arenas is set iff it
 * has a dirty pool.  g.npools_used, _dirty, _releasing and _released are the
 * masks' popcounts summed, and g.class_pools[c] counts the pools in use whose
 * descriptor says class c.  [checked: arena_check_pool (the arena changed)
 * when a pool is taken or given back, arena_check (all, and the counts) at
 * each release pass, freeze, thaw and shed_stats.  bent: a pool "used" but
 * not yet set up (between arena_acquire_pools and pool_init) has no owner;
 * shed_stats' counters of system calls are read without any lock.]
 *
 * Spans (medium blocks, 513 B to 128 KiB).  A second reservation, the medium
 * region, is carved from the bottom into spans of SPAN_BYTES (256 KiB): a
 * span holds blocks of one medium class, packed from its start, so a block
 * may straddle pages; the tail past the last block is never touched.
 *
 *   medium region  | span 0 | span 1 | ... |  not yet carved  |
 *   span           | block | block | block | ... | block | tail |  one class
 *                  | page  | page  | page  | ... | page  |         (SPAN_BYTES / page)
 *
 *   metadata (beside the medium region, never inside a span):
 *     med.spans[i]  one struct span per span (256 bytes): free and remote
 *                   bitmaps, the owner, the page masks owned/claimed/
 *                   resident/seen and the per-page counts live[]
 *     med.bits      bitmaps (interleaved: med_word): MB_FREE, spans that
 *                   are carved and unowned; MB_DIRTY, spans that may have
 *                   idle pages not released; MB_DESC_DIRTY, MB_HELD: pages
 *                   of descriptors to give back when all
 *                   their spans are free and released (as for pools)
 *
 * A span is owned by a theap as a pool is (cur/avail lists per medium class,
 * a pending stack for remote frees, the stripe locks, inheritance in a
 * fork()ed child through med.imap).  Its pages have states of their own,
 * independent of the blocks' owner, so that a page goes back while other
 * blocks of its span are live: every page of a span is in exactly one of
 *   owned     a block the owner handed out touches it (the owner's mask,
 *             written with plain stores);
 *   idle      neither owned nor claimed: the releaser may claim it, if
 *             resident;
 *   claimed   (the releasers' mask, atomic) a release is advising it, and
 *             clears the bit (and its resident bit) when the kernel is done.
 * The owner marks a page owned before it hands out a block that touches it,
 * then looks at claimed; a release marks a page claimed, then (after one
 * membarrier(2) for all the pass's spans, which stands for a fence on the
 * owner's side) looks at owned: one sees the other, so the release backs
 * off from a page the owner took, or the owner waits for the page to come
 * back (the release of one range; only when a block is reused in the very
 * pass that releases its page).  The owner's paths thus have no atomic
 * read-modify-write: a locked instruction there waited for the program's
 * own pending stores (medium churn, 25% of the time in one fetch_or).  The
 * owner unmarks a page when the last block touching it is freed or merged.
 * So no page is advised while a live block touches it, and a block that
 * straddles two pages keeps both.  An unowned span has every page idle or
 * claimed.
 *
 * Lock order, outermost first (fork_prepare in init.c takes them all in
 * this order through each module's fork hooks):
 *   1. heaps_lock (heap.c), then each heap's own lock
 *   1b. q.lock (quarantine.c): only under a checker; held while a block
 *      leaves the quarantine for its pool (which takes 5 to 7)
 *   2. rel.pass (release.c): one release pass at a time
 *   3. g.orphan_lock (orphan.c)
 *   4. g.theap_lock (theap.c); held across a round of medium cache
 *      flushes by another thread (mcache_round), which takes 5, 6b, 7
 *   5. a stripe lock, g.stripes[pool index % NSTRIPES]: a pool's owner,
 *      life and pending flag, and the merge of its remote bitmap (a remote
 *      free sets its bit without it: free.c); one at a time (fork_prepare takes all in index order)
 *   6. g.lock (arena.c): arenas, pool states, buckets; in a fork()ed
 *      child also the inherit map's layout (imap_lay_out, under a stripe)
 *   6b. med.lock (span.c): spans carved and free (taken under g.lock only
 *      by shed_freeze and fork_prepare)
 *   7. rel.mx (release.c): the release thread's sleep and state
 * os.c's probe_lock and report.c's rep.lock (the stats_file path) are
 * leaves taken alone, made afresh in a fork()ed child.  A thread holding a lock may take
 * only locks further down; the release thread ends before fork_prepare takes
 * any (releaser_pause), as it may hold any of them.
 */
#ifndef SHED_IMPL_H
#define SHED_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "shed.h"

#define NCLS            SHED_NUM_CLASSES
#define MED_NCLS        SHED_MEDIUM_CLASSES
#define SPAN_SHIFT      18           /* a span is 256 KiB of address space */
#define SPAN_BYTES      ((size_t)1 << SPAN_SHIFT)
#define SPAN_WORDS      7            /* bitmap words: 409 blocks of 640 B */
#define SPAN_CHUNK      16           /* spans committed at once (4 MiB) */
#define MCACHE_SLOTS    16           /* medium cache: blocks per class */
#define MCACHE_SHARED_MAX ((size_t)32 << 10)   /* classes up to this share
                                        one budget of a thread's parked bytes */
#define MCACHE_BUDGET   ((size_t)1267 << 10)   /* that budget, a thread */
#define MCACHE_CLASS_BYTES ((size_t)64 << 10)  /* the classes above: at most
                                        this (but MCACHE_LEAST_BYTES) per class */
#define MCACHE_LEAST_BYTES ((size_t)128 << 10) /* and at least this, in 1 to 3
                                        blocks (3 of 40 KiB, 1 of 128 KiB) */
#define MCACHE_HINTS    4096         /* counts of parked blocks by address */
#define MCACHE_HINT_MAX 255          /* the most a count (a byte) holds */
#define POOLS_PER_ARENA 64
#define NSTRIPES        64           /* locks for cross-thread frees: one
                                        page, as every page of locks costs
                                        two copies at each fork (the parent
                                        unlocks, the child re-initialises) */
#define THEAP_SPARE     4            /* theaps mapped at start-up (init.c) */
#define POOL_RUN        4            /* adjacent pools a thread takes at once */
#define DEFAULT_REGION  ((size_t)32 << 30)
#define MIN_REGION      ((size_t)16 << 20)
/* Under RLIMIT_AS the region and its tables take at most 1/AS_SHARE of the
 * address space left at start-up, so that glibc's large blocks keep more
 * than 90% of what they would get without shed (init.c). */
#define AS_SHARE        16
/* A descriptor is 1/64 of a page (64 bytes with 4 KiB pages): room for the
 * bitmap of the smallest class, page/128 bytes, and the 32-byte header for
 * any page of 4 KiB or more, and a constant shift between the two tables. */
#define DESC_TO_PAGE    6
/* Largest page the block-index check (block_index) is exact for. */
#define MAX_PAGE        ((size_t)128 << 10)

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define HIDDEN      __attribute__((visibility("hidden")))
#define EXPORT      __attribute__((visibility("default")))
#define COLD        __attribute__((noinline, cold))   /* off the hot path */

/* Relaxed atomics: plain loads and stores on x86-64 and arm64, but they keep
 * the deliberate cross-thread reads (double-free checks, stats) well defined.
 * Where an order matters it is written out (memory_order_acquire/release);
 * an atomic_* call without _explicit is seq_cst on purpose: the release
 * thread's sleep handshake (rel.idle and rel.gen in release.c, a store then
 * a load on each side) needs it, and the others are off the fast paths. */
#define RELAXED_LOAD(x)     atomic_load_explicit(&(x), memory_order_relaxed)
#define RELAXED_STORE(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)
#define RELAXED_BUMP(x, n)  RELAXED_STORE(x, RELAXED_LOAD(x) + (n))      /* single writer */
#define RELAXED_ADD(x, n)   atomic_fetch_add_explicit(&(x), (n), memory_order_relaxed)

struct theap;

/* Where an owned pool sits in its owner: current, on the avail list, or on
 * no list (full, or too few free blocks to be worth a visit). */
enum pool_list { IN_NONE, IN_CUR, IN_AVAIL, IN_FULL };

/*
 * Pool descriptor, one per pool page, page_size >> DESC_TO_PAGE bytes apart
 * in the table: 64 bytes with 4 KiB pages, one cache line holding all that
 * the owner's malloc and free touch.  What only cross-thread frees touch
 * (the remote bitmap and the pending-stack link) is in a second table,
 * struct pool_remote, at the same index, so a program that frees where it
 * allocates never brings those pages in.
 * Invariants while the pool is in use (owner != NULL).  [checked: where the
 * checking build (SHED_DEBUG) verifies it; bent: where it does not hold on
 * purpose, which the checks allow for.]
 *   - a block's bit is set in free[] iff the owner may hand it out, and in
 *     remote[] iff another thread freed it and the owner has not merged it;
 *     never in both; bits at or above nblocks are never set.  [checked:
 *     pool_check (free[]), pool_merge_remote (remote[]: the merge empties
 *     it, and a bit in both is reported there).  bent: a program's double
 *     free, by another thread then by the owner, sets both until the merge
 *     reports it, so no walk checks the two against each other.]
 *   - pool_nfree(p), settle_at - 1 - to_settle, == popcount(free[]): the
 *     owner's free counts to_settle down, and calls theap_settle when it
 *     goes negative (one decrement and one branch); malloc counts it up.
 *     [checked: pool_check, at pool_init, theap_settle, the slow path's
 *     choice of a current pool, orphanage_place, pool_retire_as and the
 *     theap walks; cheaply at every owner's malloc and free.]
 *   - magic and size are those of class cls.  [checked: pool_check]
 *   - where says where the owner keeps it: IN_CUR iff it is cur[cls] (and
 *     fast[cls + 1] points into its bitmap).  [checked: pool_check]
 *   - a pool on an avail list has free blocks; a pool IN_FULL has fewer
 *     than avail_min[cls] of them, or is sealed (a pool re-enters the
 *     avail list only with avail_min free blocks, so that the owner does not
 *     hop between pools that have one free block each).  [checked:
 *     list_push, pool_check, theap_check.  bent: an orphaned pool whose
 *     remote frees wait on the orphanage's pending stack (orphan_adopt puts
 *     it IN_FULL whatever its count, the merge relists it); a thaw
 *     (arena_seal_all) unseals pools IN_FULL that their owner relists later
 *     (theap_relist).]
 *   - settle_at is the free count at which the owner's free calls
 *     theap_settle: avail_min[cls] for an unsealed pool IN_FULL, nblocks
 *     otherwise (pool_place keeps it so; a pool sealed meanwhile is put
 *     right by that call); so pool_nfree <= settle_at, equal only for a
 *     pool all free (a spare, or a current pool theap_settle keeps).
 *     [checked: pool_check, and to_settle at each owner's free.  bent: as
 *     the previous one.]
 *   - pending (in struct pool_remote) == 1 iff the pool is on its owner's pending
 *     stack; a remote bit is set with pending 0 only while the thread that
 *     set it has not yet pushed the pool (free_remote_fast, free.c).
 *   - life counts the pool's retirements (pool_retire_as, under the stripe
 *     lock): a lock-free remote free that sees it move knows the pool was
 *     retired under it, so its free was a double free (free.c).
 * While it is not in use, remote[] is all zero and pending 0 (so that
 * pool_init need not touch struct pool_remote, whose pages stay unmapped in a
 * program that frees where it allocates), size is the block size it
 * last held (to tell a double free from a wild pointer), and dirty_ms takes
 * the place of the list links.  [checked: owner is NULL when an arena hands
 * the pool out and when it takes it back (arena_acquire_pools,
 * arena_return_pool, pool_init); only a heap's destruction retires a pool
 * with live blocks (pool_retire_as).  The remote table is not read by the
 * checks where the code does not read it, so that its pages stay unmapped.]
 * owner, life and pending change only under the pool's stripe lock; remote[]
 * bits are set by atomic OR without it and cleared by the merge under it;
 * to_settle, settle_at, the list links and free[] stores belong to the owner
 * (free[] words are read by other threads, hence atomics).
 * [bent: pool_init stores owner without the stripe lock (the pool is in no
 * one's hands; a stale remote free reads owner with acquire); shed_stats,
 * the remote free and the double-free checks read other owners' free[]
 * without it (each word read once, atomically).  In a fork()ed child, the
 * descriptors of inherited pools are as the parent's threads left them,
 * maybe mid-change: the child never writes them (inherit.c) and the checks
 * skip them until reclaim_pool rebuilds them.]
 */
struct pool {
    struct theap *_Atomic owner; /* NULL while the pool is not in use */
    uint32_t magic;              /* block index = offset * magic >> 32 */
    _Atomic uint16_t size;       /* block size */
    uint16_t nblocks;
    int16_t to_settle;           /* settle_at - 1 - free blocks (pool_nfree) */
    uint16_t settle_at;          /* see above */
    uint8_t cls;
    uint8_t where;               /* enum pool_list */
    _Atomic uint8_t sealed;      /* frozen: no new blocks come from it */
    _Atomic uint8_t life;        /* bumped at each retirement (free.c) */
    union {
        struct { uint32_t next, prev; };  /* avail list: index + 1; the head's prev
                                             is stale (see list_remove) */
        uint32_t dirty_ms;       /* not in use: when it became free-dirty */
    };
    _Atomic uint64_t free[];     /* nwords */
};

_Static_assert(offsetof(struct pool, free) == 32, "life fills a hole: descriptors stay 64 bytes");

/* The part of a descriptor only cross-thread frees touch. */
struct pool_remote {
    struct pool *pnext;          /* pending stack */
    _Atomic uint8_t pending;     /* on the owner's pending stack */
    _Atomic uint64_t remote[];   /* nwords */
};

/* Per-arena pool states, one bit per pool, guarded by g.lock.  sealed marks
 * pools frozen by shed_freeze(): in use, or dirty and not to be reused before
 * the kernel has taken the page (then it is a fresh page, not the parent's). */
struct arena {
    uint64_t used, dirty, releasing, released, sealed;
    uint64_t held;               /* released pools held in "releasing" while
                                    their page of descriptors is advised */
    uint64_t touched;            /* pools ever used: a released pool outside
                                    it was never touched (the heap map) */
    uint32_t index;
    uint8_t nused;
    int8_t bucket[2];            /* which bucket list it is on, -1 if none */
    struct arena *bnext[2], *bprev[2];
};
enum { B_DIRTY, B_RELEASED };    /* bucket kinds: has dirty / has released pools */

/* A fork()ed child's inherit map: for each pool inherited at the fork,
 * ceil(nblocks / 64) words with a bit per block freed in the child.  It is
 * laid out an arena at a time, at the first inherited free into that arena
 * (imap_lay_out, under g.lock), as a chunk from the mapping's bottom up:
 * pos[64] (uint16_t per pool of the arena: 0 no place, not inherited or
 * reclaimed; else 1 + the index of its first word) then the words, packed.
 * base[a] is the chunk's offset in the mapping, 0 while arena a has none;
 * narenas covers the arenas carved at the fork.  Only the header page is
 * written at the fork, and a child that frees into a few arenas writes
 * one or two pages of map where the whole layout at once wrote a page per
 * 2,048 pools (test_forkpages: 1 page for a 40 MiB heap, where 7 were);
 * packed, a child that frees into every parent pool still pays a bit per
 * block, not nwords words per pool (bench/fork: 0.4 MB where 1.3 MB were). */
#define IMAP_POS_BYTES  (POOLS_PER_ARENA * sizeof(uint16_t))
struct imap {
    size_t bytes;                /* of the mapping that holds it all */
    size_t narenas;
    size_t next;                 /* where the next chunk goes (g.lock) */
    _Atomic uint32_t base[];     /* per arena: its chunk's offset, or 0 */
};

/*
 * No block addresses in shed's memory while a checker runs.  memcheck's leak
 * check (valgrind --leak-check) scans all memory that is not a block (shed's
 * tables and theaps, its globals, the stacks) for pointers: a block whose
 * start something points at is "still reachable", one that something points
 * into is "possibly lost", and only a block nothing points at is "definitely
 * lost".  So if shed keeps the address of a block the program owns, a leak of
 * that block is never reported.  Under a checker (g.checker):
 *   - cur_word.base is NULL (the fast path, its only reader, does not run;
 *     the slow path works the block's address out from the pool);
 *   - the quarantine (quarantine.c) and a heap's set of large blocks keep
 *     addresses hidden (hide_addr: the complement, a kernel-half address
 *     that points at nothing of the program's);
 *   - the release pass's buffer of pool addresses is cleared after use;
 *   - g.region is the address of pool 0: arena 0 is never carved
 *     (g.first_arena), so that no block is there.
 * A cache that holds blocks must do the same: keep them hidden, or stay
 * empty, while g.checker is set (the medium cache stays empty: see "Medium
 * cache").  (Under a checker the fast paths are off: g.fast_size is 0, and
 * th->epoch never matches g.epoch; see fast.h and theap_sync.)
 */
static inline uintptr_t hide_addr(const void *p)
{
    return ~(uintptr_t)p;
}
static inline void *unhide_addr(uintptr_t h)
{
    return (void *)~h;
}

/*
 * Span descriptor (see "Spans" above), one per span of the medium region,
 * in med.spans.  Invariants while the span is owned (owner != NULL):
 *   - a block's bit is set in free[] iff the owner may hand it out, in
 *     remote[] iff another thread freed it and the owner has not merged it;
 *     never both; no bit at or above nblocks;
 *   - nfree == popcount(free[]);
 *   - live[j] counts the blocks not free in free[] whose first or last page
 *     is j; a page strictly inside a block is touched by no other; own is
 *     the set of pages a block not free touches (live[j] != 0, or inside
 *     such a block); own, idle and the releaser's claim partition the
 *     span's pages;
 *   - where says which list of the owner holds it (enum pool_list); a span
 *     IN_AVAIL has free blocks and is not sealed;
 *   - pending == 1 iff it is on its owner's mpending stack.
 *   [checked: span_check (all of these but the claim: a release claims a
 *   page, then backs off from an owned one, so the two overlap for a
 *   moment) when a span is set up, chosen as current, merged, relisted,
 *   orphaned, reclaimed after a fork and retired; mtheap_check (the lists)
 *   in the slow path and at a heap's destruction.  bent: free[] and
 *   remote[] share a bit after a program's double free, by another thread
 *   then by the owner, until the merge reports it; so the walk checks only
 *   that remote[] is empty unless the span is pending.]
 * Unowned: remote[] zero, pending 0, own 0 and live[] zero, size the class
 * it last held (to tell a double free from a wild pointer), and its bit set
 * in MB_FREE unless it is sealed (then it waits for its pages to be
 * released) or held (its page of descriptors is being advised).  An
 * all-zero descriptor is a valid free span, every page idle and none
 * resident: what a fresh span is, and what a page of descriptors given back
 * to the kernel reads as.
 * owner and pending change under the span's stripe lock; free[], nfree,
 * own and the list links belong to the owner; idle and released are
 * atomics shared with the releaser.
 */
struct span {
    /* Cache line 0: what a free and a malloc of the owner read and write
     * (span_locate, the bitmap, the counts), with the first five words of
     * free[] (blocks 0 to 319: every class's whole bitmap but the two
     * smallest's, 640 and 768 bytes, whose last words are in line 1). */
    struct theap *_Atomic owner;
    _Atomic uint32_t size;       /* block size */
    uint16_t nblocks, nfree;
    uint8_t cls, where;
    _Atomic uint8_t sealed;      /* frozen: no new blocks come from it */
    uint8_t pending;
    _Atomic uint32_t idle_tick;  /* med.tick when a page last became idle */
    _Atomic uint64_t free[SPAN_WORDS];
    /* Line 1: the pages' states (span_own_pages, span_idle_pages) and the
     * list links. */
    _Atomic uint64_t owned;      /* owner: pages touched by blocks in use
                                    (plain stores; the releaser reads it) */
    _Atomic uint64_t claimed;    /* pages a release is advising */
    _Atomic uint64_t resident;   /* pages maybe in memory (touched since
                                    they were last given back) */
    _Atomic uint64_t seen;       /* pages idle and resident when the releaser
                                    last looked, not taken since: due at its
                                    next look */
    uint32_t next, prev;         /* avail list: span index + 1 */
    struct span *pnext;          /* pending stack */
    /* Line 2: what only frees from other threads touch. */
    _Atomic uint64_t remote[SPAN_WORDS];
    uint64_t unused;
    /* Line 3: the per-page counts (pages_hold, pages_drop). */
    uint8_t live[64];            /* owner: blocks in use that start or end
                                    in each page */
} __attribute__((aligned(256)));
_Static_assert(sizeof(struct span) == 256, "a page of descriptors holds whole spans");
_Static_assert(offsetof(struct span, free) == 24 && offsetof(struct span, owned) == 80 &&
               offsetof(struct span, remote) == 128 && offsetof(struct span, live) == 192,
               "the hot line of struct span (see above)");

/* The medium region and its tables (span.c). */
struct medium {
    char *base;                  /* the medium region, NULL when none */
    size_t size, nspans, ncommitted;
    _Atomic size_t park_size;    /* size, or 0 where no block is parked (a
                                    checker, release=inline: medium_park_set):
                                    medium_free_fast's one range check */
    _Atomic size_t ncarved;      /* grows under lock; span_any_dirty reads it without */
    unsigned span_pages;         /* pages per span (at most 64) */
    uint64_t all_pages;          /* mask of a span's pages */
    struct span *spans;
    _Atomic uint64_t *bits;      /* the bitmaps of enum med_bitmap, a cache
                                    line of each in turn (med_word) */
    _Atomic bool desc_more;      /* desc_dirty has marks since the last look */
    _Atomic bool asym;           /* membarrier(2) orders the owner's take of
                                    a page against a claim: the owner needs
                                    no fence (span_own_pages) */
    _Atomic bool barrier_registered; /* membarrier(2) asked for, in this
                                    process (span.c, barrier_ready) */
    _Atomic uint64_t *imap;      /* fork()ed child: SPAN_WORDS words a span,
                                    blocks of inherited spans freed here */
    size_t imap_spans;           /* spans the map covers (carved at the fork) */
    size_t fork_spans;           /* a fork()ed child with inherited spans:
                                    the spans carved at the fork, whose free
                                    ones it takes only when it can carve no
                                    more (their pages and descriptors are
                                    the parent's); 0 otherwise */
    size_t spans_used;
    /* The releaser's clock for the spans' delay, a tick every delay_ms / 4:
     * the owner stamps a span with it (one load, no clock call) */
    _Atomic uint32_t tick;
    uint32_t tick_ms;            /* when the last tick began (release pass) */
    _Atomic bool mc_watch;       /* a block was parked into an empty class
                                    stack since the release thread last asked
                                    the theaps to flush (medium_cache_ask) */
    uint32_t mc_asked_ms;        /* when it last asked */
    bool mc_left;                /* a request was left at the last round
                                    (medium_cache_ask: the thread's own) */
    pthread_mutex_t lock;        /* carving, MB_FREE, counts */
};
extern struct medium med HIDDEN;

/* The owner's half of a store-then-load pair against a releaser's
 * (span_owners_barrier): between the owner's store and its load, only a
 * compiler barrier where the releaser's membarrier(2) fences every thread
 * (med.asym), else a fence. */
static inline void owner_fence(void)
{
    if (RELAXED_LOAD(med.asym))
        atomic_signal_fence(memory_order_seq_cst);
    else
        atomic_thread_fence(memory_order_seq_cst);
}

/* The bitmaps of med.bits, a bit a span (MB_DESC_DIRTY: a bit a page of
 * descriptors). */
enum med_bitmap {
    MB_FREE,                     /* carved spans without owner (med.lock) */
    MB_DIRTY,                    /* spans that may have idle resident pages */
    MB_HELD,                     /* free spans whose page of descriptors is
                                    being advised (out of MB_FREE) */
    MB_DESC_DIRTY,               /* pages of descriptors that may be all
                                    free and released (med.lock) */
    MB_COUNT
};
#define MB_LINE_WORDS 8          /* words of one bitmap on a cache line */
#define MB_LINE_BITS  (MB_LINE_WORDS * 64)
/* Word w of bitmap b: lines of the four bitmaps in turn, so that each
 * line is written by the users of one bitmap only. */
static inline _Atomic uint64_t *med_word(enum med_bitmap b, size_t w)
{
    return &med.bits[(w / MB_LINE_WORDS * MB_COUNT + b) * MB_LINE_WORDS + w % MB_LINE_WORDS];
}

/* malloc's view of a class's current pool: the word of its free bitmap that
 * blocks come from, and the address of that word's first block.  Any word of
 * the current pool will do (frees go on setting bits in it); when the
 * current pool changes, so does this (theap_set_cur).  With no current pool,
 * word is NO_POOL's first word, which is zero.  Under a checker base is NULL:
 * see "No block addresses" above. */
struct cur_word {
    _Atomic uint64_t *word;
    char *base;
    struct pool *pool;
    void *unused;                /* 32 bytes: fast[size / 16] is at 2 * size */
};
_Static_assert(sizeof(struct cur_word) == 2 * SHED_CLASS_STEP, "alloc_fast indexes by 2 * size");

/* A theap's mc_steal: a flush of its medium cache asked for, and by whom
 * it is done (see "Medium cache"). */
enum mc_steal {
    MC_NONE,                     /* none asked for */
    MC_ASKED,                    /* asked (release thread, shed_freeze): the
                                    owner flushes at its next medium call */
    MC_OWNER,                    /* the owner flushes now */
    MC_STEALER,                  /* a stealer (the release thread, shed_trim)
                                    flushes now; the owner waits */
    MC_INTENT,                   /* a stealer will flush unless the owner is
                                    busy (then the owner does, at its next
                                    call) */
    MC_DONE,                     /* a stealer flushed: the owner's next entry
                                    clears it, and its free looks again at
                                    the span it had found (mown_claim) */
    MC_FENCE = 0x80              /* a bit beside the state: no membarrier,
                                    the owner fences at each entry */
};

/* A thread heap: the pools one thread (or one shared heap) owns.  It holds
 * no block address while a checker runs ("No block addresses" above), nor
 * may anything added to it (a cache of freed blocks). */
struct theap {
    struct cur_word fast[NCLS + 1];  /* by size slot, (size + 15) / 16: slot 0
                                    (malloc(0)) is never set, slot c + 1 is
                                    class c's current pool */
    struct pool *cur[NCLS];      /* pool blocks come from, per class */
    struct pool *avail[NCLS];    /* other owned pools with free blocks */
    struct pool *_Atomic pending;/* pools with remote frees to merge */
    struct theap *all_next;      /* every theap ever made (never freed) */
    struct theap *free_next;     /* recycled theaps */
    bool shared;                 /* the orphanage or a heap: used under a lock */
    bool is_heap;                /* a shed_heap: never adopts orphans */
    bool live;
    _Atomic unsigned gen;        /* g.gen when it became live (THEAP_NO_GEN:
                                    shared, or not live): one made before
                                    the last fork is inherited, and the
                                    child marks none (theap_inherited) */
    size_t npools;               /* pools it owns (current, listed or full):
                                    the walk for its full pools stops once
                                    it has seen them all */
    unsigned thaw_seen;          /* g.thaw_epoch when it last relisted */
    unsigned epoch;              /* g.epoch when the slow path last looked;
                                    the fast path runs only while equal */
    _Atomic uint64_t nlarge;     /* requests its thread sent to the system
                                    allocator (alloc_large): counted here, by
                                    the one thread, not in a counter every
                                    thread's requests over 512 bytes would
                                    bounce between cores; shed_stats sums */
    /* medium blocks (medium.c): per medium class, the current span and the
     * head of the list of other owned spans with free blocks (span refs) */
    struct span *mcur[MED_NCLS];
    uint32_t mavail[MED_NCLS];
    struct span *_Atomic mpending;   /* spans with remote frees to merge */
    size_t nspans;               /* spans it owns */
    unsigned mthaw_seen;         /* g.thaw_epoch when its spans were relisted */
    /* The medium cache (see "Medium cache" below): per medium class, the
     * blocks its thread freed and has not given back to their spans yet,
     * the latest on top (mc_blk[c][mc_n[c] - 1]). */
    _Atomic uint8_t mc_busy;     /* owner: 1 while it works on its medium
                                    state (mown_enter; plain stores) */
    _Atomic uint8_t mc_steal;    /* enum mc_steal: a flush asked for, and
                                    who does it (see "Medium cache") */
    _Atomic uint8_t mc_n[MED_NCLS];
    _Atomic uint32_t mc_units;   /* parked bytes of the classes up to
                                    MCACHE_SHARED_MAX, in units of 128 */
    _Atomic uintptr_t mc_blk[MED_NCLS][MCACHE_SLOTS];
    _Atomic uint8_t mc_hint[MCACHE_HINTS];  /* parked blocks by a hash of
                                    their address (mcache_hint): 0 says a
                                    block is not parked without a look */
};

/*
 * Medium cache.  A thread's free of a medium block of a span it owns parks
 * the block in its theap's cache for the block's class (mc_blk, a LIFO
 * stack of at most med_cls[class].cap blocks: MCACHE_SLOTS for the classes
 * up to MCACHE_SHARED_MAX, which share a budget of MCACHE_BUDGET parked
 * bytes a thread (mc_units, counted in med_cls[class].units units of 128
 * bytes); for the classes above, MCACHE_CLASS_BYTES / size blocks but
 * never fewer than MCACHE_LEAST_BYTES allows (3 of 40 KiB, 1 of 128 KiB);
 * 2139 KiB a thread with every cache full, as when each class up to 32 KiB
 * had a cap of its own), and its medium malloc of that class pops the
 * latest parked block first: neither touches the span's bitmap, counts or
 * pages.  The block itself is never written (the cache is in the theap,
 * shed's memory).  When a class's stack is full, a free gives its older
 * half back to the spans (mcache_flush_class: the owner's free, bitmap,
 * live[] and pages), then parks; over the budget, the older half of its
 * class, or of the class with most units when its own has fewer than two
 * blocks (mcache_park).
 * Invariants:
 *   - a parked block is allocated in its span's bitmaps (neither free[] nor
 *     remote[] has its bit), its span is owned by the theap that parks it,
 *     and it counts in live[] as a block in use; so a span with a parked
 *     block is never empty, and its pages stay owned;
 *   - mc_units is the sum of med_cls[c].units * mc_n[c], at most
 *     MCACHE_BUDGET / 128 (checked at each park);
 *   - mc_hint[h] counts the parked blocks whose address hashes to h
 *     (mcache_hint), all classes together; so a free whose count is 0 is of
 *     no parked block, and the owner looks no further; a count is at most
 *     MCACHE_HINT_MAX (a block whose count is there goes to its span);
 *   - no block is parked twice, nor parked and handed out: the owner's free
 *     looks for the block in the class's stack (mcache_holds, when its
 *     hint is not 0) after the bitmap, and reports a double free; a free
 *     from another thread looks
 *     in the owner's stack too (relaxed loads: it sees the owner's park if
 *     that happened before it), and the merge of remote frees (medium_drain)
 *     drops and reports a remote bit of a block still parked;
 *   - only a thread's own theap parks (not the orphanage, a heap, or an
 *     inherited theap), never under a checker ("No block addresses": the
 *     cache stays empty, every free goes to the span and to memcheck), never
 *     in a sealed span (shed_freeze: a parked block would be reused in the
 *     frozen span), and not while release=inline (which gives pages back at
 *     the free);
 *   - mc_n[c], mc_units, mc_blk and mc_hint, and everything the owner
 *     writes of its spans and lists, are written by the owner only while
 *     it is marked busy (mc_busy = 1, from its entry into a medium path to
 *     its leave: medium malloc and free, medium_drain, its flushes,
 *     medium_abandon),
 *     or by a stealer that claimed the theap (mc_steal MC_STEALER, which
 *     it sets only after it saw mc_busy == 0 past the barrier, and which
 *     the owner waits out at its entry); relaxed stores, read by other
 *     threads (the double-free look, shed_stats, the release thread) with
 *     relaxed loads.  [checked: test_medium's steal race (shed_trim in a
 *     loop against two churning threads) under TSan.  bent: a call that
 *     comes back into shed from inside the bracket (releaser_ensure's
 *     thread start) leaves it: the slow path enters again after it;]
 *   - the cache is emptied into the spans by its owner (mcache_flush): at
 *     shed_trim and shed_freeze (the caller's own), thread exit
 *     (medium_abandon), and when mc_steal is set, at its next entry (a
 *     medium malloc or free, theap_alloc_slow: not alloc_slow's inline
 *     pool switch, which looks at no more than it must); or by a
 *     stealer (mcache_round): shed_trim flushes every other thread's cache
 *     whose owner is not busy at that moment, and the release thread, at
 *     most delay_ms after a block was parked into an empty class stack
 *     (which wakes it: med.mc_watch, a store-then-load pair with the
 *     thread's clear-then-look, ordered by the same barrier), asks every
 *     theap with parked blocks (MC_ASKED), then, a round (delay_ms) later,
 *     flushes the cache of each that is still asked and not busy.  So a
 *     parked block keeps its pages at most about two delays beyond its
 *     free, then they are idle and go back on the normal schedule, whether
 *     its thread ever calls shed again or not; the owner's paths take no
 *     lock and, with membarrier(2), no fence (see "the owner's bracket" in
 *     medium.c; without it MC_FENCE makes every entry fence);
 *   - shed_stats counts parked blocks as free (each theap's mc_n, read
 *     without a lock: exact for the calling thread, a snapshot for others);
 *   - in a fork()ed child the inherited theaps' parked blocks stay
 *     allocated (their stacks are dropped at the reclaim: a leak of at most
 *     one cache per thread of the parent, the forking thread's too, never a
 *     block handed out twice; fork_prepare does not flush, as a fork from
 *     a signal handler may interrupt the thread inside a park or pop).
 */

/* g.state: set-up runs once, on first use (init.c). */
enum shed_state { S_NEW, S_INITIALISING, S_READY, S_NO_REGION };

enum release_mode { REL_BATCHED, REL_INLINE, REL_MANUAL, REL_OFF };
enum backend { BK_AUTO, BK_PMADV, BK_MADV, BK_URING };
enum err_kind { E_DOUBLE, E_INVALID, E_INTERIOR, E_HEAP };

struct options {
    _Atomic int release;         /* enum release_mode */
    _Atomic int advice;          /* MADV_DONTNEED or MADV_FREE */
    _Atomic int backend;         /* enum backend (requested) */
    _Atomic unsigned delay_ms;
    _Atomic unsigned max_dirty;
    _Atomic unsigned batch;
    _Atomic unsigned thread_after_kb; /* pools taken that start the thread */
    _Atomic int on_error_abort;
    _Atomic int stats_at_exit;   /* 0, 1 text, 2 JSON */
    _Atomic unsigned stats_interval_ms;  /* 0: no JSON lines from the thread
                                    (stats_file: see report.c) */
    _Atomic int freeze_on_fork;
    _Atomic unsigned quarantine_kb;  /* under a checker: freed blocks held */
    size_t region_size;
};

struct counters {
    _Atomic uint64_t syscalls, app_syscalls, batches, ranges, pages, failures, ns;
    _Atomic uint64_t reused_dirty, errors;
    _Atomic uint64_t large;      /* system-allocator requests of threads with
                                    no theap (the others: struct theap) */
};

/* A stripe lock: 0 free, 1 held, 2 held with a thread asleep on it (a
 * futex).  Not a pthread mutex: a remote free takes one per block, and
 * glibc's lock and unlock cost 57 instructions where this costs 6 when no
 * one waits (docs/performance.md, Speed work (2026-12-07), larson). */
struct slock { _Atomic uint32_t v; };
struct stripe { struct slock m; char pad[64 - sizeof(struct slock)]; };

struct global {
    _Atomic int state;           /* enum shed_state */
    char *region;
    size_t region_size, page_size, npools;
    size_t page_mask;            /* page_size - 1 */
    size_t desc_mask;            /* ~(page_size / 64 - 1): desc_at */
    uintptr_t pool_delta;        /* pool_addr(p) == p << DESC_TO_PAGE + this */
    size_t fast_size;            /* region_size, or 0 under a checker: the
                                    free fast path's one range check */
    _Atomic unsigned epoch;      /* even; +2 at each freeze and thaw, and
                                    when free() asks for a release thread */
    unsigned page_shift, desc_shift, nwords;   /* desc_shift: page_shift - 6 */
    char *descs;                 /* struct pool table */
    char *remotes;               /* struct pool_remote table, same stride */
    struct arena *arenas;
    size_t narenas, narenas_max;
    size_t first_arena;          /* 1 under a checker: arena 0 is never
                                    carved ("No block addresses") */
    size_t arenas_ready;         /* bytes of arenas[] made writable */
    size_t narenas_committed;    /* arenas whose pools and part of the
                                    tables are writable (arena_commit) */
    uint16_t nblocks[NCLS];
    uint16_t avail_min[NCLS];    /* free blocks that make a full pool available */
    uint32_t magic[NCLS];        /* offset * magic >> 32 == offset / size */

    pthread_mutex_t lock;        /* arenas, pool states, buckets */
    /* Bucket lists by [set][kind][nused]: set 1 holds a fork()ed child's
     * own arenas (index >= fork_arenas) while fork_arenas is set, so that
     * linking one never writes a parent arena's struct (a page the child
     * would copy); set 0 every other arena. */
    struct arena *bucket[2][2][POOLS_PER_ARENA];
    uint64_t bucket_mask[2][2];
    size_t fork_arenas;          /* a fork()ed child with inherited pools:
                                    the arenas carved at the fork, which it
                                    takes pools from only when it can carve
                                    no more (their descriptors and structs
                                    are on the parent's pages); 0 otherwise */
    uint64_t *dirty_arenas;      /* bitmap of arenas with dirty pools */
    size_t npools_used, npools_dirty, npools_releasing, npools_released;
    /* The release thread's start (release.c), away from the line of epoch
     * that every malloc reads, as both are written while the program runs: */
    _Atomic uint32_t thread_due; /* no release thread yet, a pool retired:
                                    now_ms() at which the allocation slow
                                    path may start one; 0 none */
    _Atomic size_t pools_taken;  /* pools taken fresh or released (not
                                    dirty) since start-up, or since the
                                    fork in a child: pages faulted in */
    _Atomic bool fork_idle;      /* the parent of a fork, no pool retired
                                    since: no thread by its size yet
                                    (release.c; here, beside the counts a
                                    fork()ed child writes anyway) */
    bool uring_ring;             /* uring.c made a ring (which a fork()ed
                                    child must let go) */
    bool map_at_exit;            /* SHED_MAP was given (report.c) */
    size_t class_pools[NCLS];

    pthread_mutex_t theap_lock;  /* theap list and free list */
    struct theap *theaps, *theap_free;
    struct theap *theap_spare[THEAP_SPARE]; /* the first theaps, mapped with
                                    g.dirty_arenas at start-up (init.c) */
    unsigned theap_nspare_used;
    pthread_key_t key;

    pthread_mutex_t orphan_lock;
    struct theap *orphanage;
    _Atomic size_t norphans;
    _Atomic unsigned thaw_epoch; /* bumped by shed_thaw() */
    struct imap *imap;           /* fork()ed child: blocks of inherited pools
                                    freed here (see inherit.c) */
    _Atomic size_t inherit_pools;/* pools of inherited theaps, 0 once reclaimed */
    _Atomic size_t inherit_frees;
    bool in_fork_child;          /* the atfork child handler is running */
    _Atomic unsigned gen;        /* forks this process descends from */
    struct theap *_Atomic orphanage_inherited;  /* a fork()ed child: the
                                    parent's orphanage until the reclaim */

    struct stripe stripes[NSTRIPES];

    struct options opt;
    struct counters c;
    bool valgrind;
    bool checker;                /* valgrind or ASan: announce blocks */

    /* Stand-ins that keep NULL checks off the fast paths: the theap of a
     * thread that has none yet (its epoch, odd, never matches g.epoch), and
     * the current pool of a class that has none (no free block). */
    struct theap no_theap;
    union { struct pool p; char bytes[sizeof(struct pool) + sizeof(uint64_t)]; } no_pool;
};
#define NO_THEAP (&g.no_theap)
#define NO_POOL  (&g.no_pool.p)

extern struct global g HIDDEN;

#define THEAP_NO_GEN (~0u)

/* A fork()ed child's theap of its parent's (one of a thread live at the
 * fork): its pools stay its own, nobody allocates from them, and frees into
 * them go to the inherit map (inherit.c).  Told apart by generation, so
 * that the child writes no page of its parent's theaps to mark them. */
static inline bool theap_inherited(const struct theap *th)
{
    unsigned gen = RELAXED_LOAD(th->gen);
    return (gen != THEAP_NO_GEN && gen != RELAXED_LOAD(g.gen)) ||
           unlikely(th == RELAXED_LOAD(g.orphanage_inherited));
}
extern __thread struct theap *tls_heap HIDDEN __attribute__((tls_model("initial-exec")));
extern __thread bool tls_is_releaser HIDDEN __attribute__((tls_model("initial-exec")));

/* ---- the checking build (-DSHED_DEBUG): check.c ----
 * CHECK(cond, at): a cheap check, inline where it stands; pool_check(p),
 * theap_check(th, empty), arena_check() (caller holds g.lock) and
 * arena_check_pool(p) (the arena of p, under g.lock): the walks, called
 * where what they check changes.  In the normal build they are nothing (and
 * their arguments are not evaluated). */
#ifdef SHED_DEBUG
void check_failed(const char *what, const void *at, const char *file, int line)
    HIDDEN COLD __attribute__((noreturn));
void pool_check_at(struct pool *p, const char *file, int line) HIDDEN;
void theap_check_at(struct theap *th, bool empty, const char *file, int line) HIDDEN;
void arena_check_at(const char *file, int line) HIDDEN;
void arena_check_pool_at(const struct pool *p, const char *file, int line) HIDDEN;
void span_check_at(struct span *s, const char *file, int line) HIDDEN;
void mtheap_check_at(struct theap *th, bool empty, const char *file, int line) HIDDEN;
#define CHECK(cond, at) \
    (likely(cond) ? (void)0 : check_failed(#cond, (at), __FILE__, __LINE__))
#define pool_check(p)            pool_check_at((p), __FILE__, __LINE__)
#define theap_check(th, empty)   theap_check_at((th), (empty), __FILE__, __LINE__)
#define arena_check()            arena_check_at(__FILE__, __LINE__)
#define arena_check_pool(p)      arena_check_pool_at((p), __FILE__, __LINE__)
#define span_check(s)            span_check_at((s), __FILE__, __LINE__)
#define mtheap_check(th, empty)  mtheap_check_at((th), (empty), __FILE__, __LINE__)
#else
#define CHECK(cond, at)          ((void)sizeof((cond) ? 1 : 0), (void)sizeof(at))
#define pool_check(p)            ((void)sizeof(p))
#define theap_check(th, empty)   ((void)sizeof(th), (void)sizeof(empty))
#define arena_check()            ((void)0)
#define arena_check_pool(p)      ((void)sizeof(p))
#define span_check(s)            ((void)sizeof(s))
#define mtheap_check(th, empty)  ((void)sizeof(th), (void)sizeof(empty))
#endif

/* ---- small helpers used on the fast paths ---- */
static inline struct pool *desc_of(size_t pidx)
{
    return (struct pool *)(g.descs + (pidx << g.desc_shift));
}
/* The descriptor of the pool at offset off of the region. */
static inline struct pool *desc_at(size_t off)
{
    return (struct pool *)(g.descs + ((off >> DESC_TO_PAGE) & g.desc_mask));
}
static inline size_t pool_index(const struct pool *p)
{
    return (size_t)((const char *)p - g.descs) >> g.desc_shift;
}
static inline char *pool_addr(const struct pool *p)
{
    /* region + (p - descs) * 64, with the constant part added once */
    return (char *)(((uintptr_t)p << DESC_TO_PAGE) + g.pool_delta);
}
/* Block index of byte boff of a pool of blocks with class magic magic, in
 * *idx; true when boff starts that block.  boff * magic is
 * idx * 2^32 + idx * e + r * magic for boff = idx * size + r, with
 * e = size * magic - 2^32 < size: so its low half is below 2^23 (idx * e
 * < page/16 * 512) iff r == 0 (r * magic >= 2^32 / 512 = 2^23), for pages up
 * to MAX_PAGE.  *idx < MAX_PAGE / 16 = 2^13 (fits 16 bits). */
static inline bool block_index(size_t boff, uint32_t magic, size_t *idx)
{
    uint64_t prod = (uint64_t)boff * magic;
    *idx = (size_t)(prod >> 32);
    return (uint32_t)prod < (1u << 23);
}
static inline bool in_region(const void *ptr)
{
    return (uintptr_t)ptr - (uintptr_t)g.region < g.region_size;
}
static inline unsigned size_class(size_t size)   /* size in 0..SHED_MAX_BLOCK */
{
    return (unsigned)((size - (size != 0)) >> 4);  /* 0 counts as 1 */
}
static inline struct slock *stripe_of(const struct pool *p)
{
    return &g.stripes[pool_index(p) % NSTRIPES].m;
}
void slock_wait(struct slock *l) HIDDEN;
void slock_wake(struct slock *l) HIDDEN;
static inline void slock_lock(struct slock *l)
{
    uint32_t free_ = 0;
    if (unlikely(!atomic_compare_exchange_strong_explicit(&l->v, &free_, 1, memory_order_acquire,
                                                          memory_order_relaxed)))
        slock_wait(l);
}
static inline void slock_unlock(struct slock *l)
{
    if (unlikely(atomic_exchange_explicit(&l->v, 0, memory_order_release) == 2))
        slock_wake(l);
}
static inline void slock_init(struct slock *l)
{
    atomic_store_explicit(&l->v, 0, memory_order_relaxed);
}
/* Held by anyone?  (fork() with one thread: theap_fork_busy.) */
static inline bool slock_held(struct slock *l)
{
    return atomic_load_explicit(&l->v, memory_order_relaxed) != 0;
}

static inline _Atomic uint64_t *free_map(struct pool *p)
{
    return p->free;
}
static inline struct pool_remote *remote_of(const struct pool *p)
{
    return (struct pool_remote *)(g.remotes + ((const char *)p - g.descs));
}
static inline _Atomic uint64_t *remote_map(struct pool *p)
{
    return remote_of(p)->remote;
}
/* List links are pool indices + 1, so that a descriptor fits a cache line. */
static inline struct pool *pool_at(uint32_t ref)
{
    return ref ? desc_of(ref - 1) : NULL;
}
static inline uint32_t pool_ref(const struct pool *p)
{
    return p ? (uint32_t)pool_index(p) + 1 : 0;
}

/* Owner: p's free blocks, and setting their count (see struct pool). */
static inline unsigned pool_nfree(const struct pool *p)
{
    return (unsigned)(p->settle_at - 1 - p->to_settle);
}
static inline void pool_set_nfree(struct pool *p, unsigned nfree)
{
    p->to_settle = (int16_t)(p->settle_at - 1 - (int)nfree);
}

/* May the owner take a block from p: it has one, and is not sealed? */
static inline bool pool_can_take(struct pool *p)
{
    return pool_nfree(p) != 0 && !RELAXED_LOAD(p->sealed);
}

/* The first word of p's bitmap with a free block (its last word if none). */
static inline unsigned pool_first_word(struct pool *p)
{
    unsigned w = 0;
    while (w + 1 < g.nwords && RELAXED_LOAD(free_map(p)[w]) == 0)
        w++;
    return w;
}

/* The word of p's bitmap after word from, in turn, that has a free block
 * (from itself when no other has).  In turn, not the first: a word is left
 * when it is used up, and the one visited longest ago has had the most time
 * to gather frees, where the first word gives back one block as soon as one
 * is freed, and malloc comes back to the slow path after each. */
static inline unsigned pool_next_word(struct pool *p, unsigned from)
{
    unsigned w = from;
    do
        w = w + 1 < g.nwords ? w + 1 : 0;
    while (w != from && RELAXED_LOAD(free_map(p)[w]) == 0);
    return w;
}

/* The first block of word w of p's bitmap. */
static inline char *cur_word_base(struct pool *p, const _Atomic uint64_t *w)
{
    return pool_addr(p) + (size_t)(w - free_map(p)) * 64 * RELAXED_LOAD(p->size);
}

/* Owner: take block ctz(m) of c's word, m being that word, non-zero, of
 * blocks of size bytes: malloc's fast path, and the slow path's. */
static inline void *cur_word_take(struct cur_word *c, uint64_t m, size_t size)
{
    CHECK(pool_nfree(c->pool) > 0 && (RELAXED_LOAD(*c->word) & m) == m, c->base);
    uint64_t rest = m & (m - 1);
    RELAXED_STORE(*c->word, rest);
    c->pool->to_settle++;
    char *b = c->base + (unsigned)__builtin_ctzll(m) * (unsigned)size;
    /* The next free block of the word (its last slot when none is left),
     * the next one taken: the caller will write it, and a store that misses
     * stalls where a prefetch does not.  With many live blocks the free
     * slots of a pool are scattered, and the neighbour this prefetched
     * before was mostly a live block (docs/performance.md, Speed work
     * (2026-12-07)). */
    __builtin_prefetch(c->base + (unsigned)__builtin_ctzll(rest | 1ull << 63) * (unsigned)size, 1);
    return b;
}

/* A fast[] slot with no pool behind it: its word (NO_POOL's) is zero. */
static inline void cur_word_clear(struct cur_word *c)
{
    *c = (struct cur_word){ .word = free_map(NO_POOL), .pool = NO_POOL };
}

/* Make p (or NO_POOL) the current pool of class cls, and point malloc's
 * fast path at p's first word with a free block. */
/* Point malloc's fast path c at word w of p's bitmap. */
static inline void cur_word_set(struct cur_word *c, struct pool *p, unsigned w)
{
    c->word = &free_map(p)[w];
    c->base = likely(!g.checker) ? cur_word_base(p, c->word) : NULL;
    c->pool = p;
}

static inline void theap_set_cur(struct theap *th, unsigned cls, struct pool *p)
{
    struct cur_word *c = &th->fast[cls + 1];
    th->cur[cls] = p;
    if (p == NO_POOL)
        cur_word_clear(c);
    else
        cur_word_set(c, p, pool_first_word(p));
}

/* Owner: put p in place where (enum pool_list) and set the free count at
 * which the owner's free calls theap_settle (see struct pool). */
static inline void pool_place(struct pool *p, enum pool_list where)
{
    unsigned nfree = pool_nfree(p);
    p->where = (uint8_t)where;
    p->settle_at = where == IN_FULL && !RELAXED_LOAD(p->sealed) ? g.avail_min[p->cls]
                                                                 : p->nblocks;
    pool_set_nfree(p, nfree);
}

/* Find the block that ptr, an address inside the region, starts.  Returns -1
 * with *pp, *idx, *size, *owner filled when ptr starts a block slot of a pool
 * in use (allocated or not), else the error to report. */
static inline int block_locate(const void *ptr, struct pool **pp, size_t *idx,
                               unsigned *size, struct theap **owner)
{
    size_t off = (size_t)((const char *)ptr - g.region);
    /* Under memcheck the descriptors of arenas not carved yet are no-access
     * (chk_table): say here what the zeroes there would. */
    if (unlikely(g.checker)) {
        size_t arena = (off >> g.page_shift) / POOLS_PER_ARENA;
        if (arena < g.first_arena || arena >= __atomic_load_n(&g.narenas, __ATOMIC_RELAXED))
            return E_INVALID;
    }
    struct pool *p = desc_at(off);
    struct theap *o = RELAXED_LOAD(p->owner);
    unsigned sz = RELAXED_LOAD(p->size);
    size_t boff = off & g.page_mask, i;
    if (unlikely(o == NULL)) {
        /* A free pool: a block start of the class it held was freed twice. */
        return sz && boff % sz == 0 && boff / sz < g.page_size / sz ? E_DOUBLE : E_INVALID;
    }
    bool starts = block_index(boff, g.magic[size_class(sz)], &i);
    if (unlikely(!starts || i >= p->nblocks))
        return i < p->nblocks ? E_INTERIOR : E_INVALID;
    *pp = p;
    *idx = i;
    *size = sz;
    *owner = o;
    return -1;
}

/* The bits of word w of a bitmap of n blocks that stand for blocks. */
static inline uint64_t block_bits(unsigned n, unsigned w)
{
    unsigned lo = w * 64;
    return n <= lo ? 0 : n - lo >= 64 ? ~0ull : (1ull << (n - lo)) - 1;
}

/* Words of a pool's bitmap that its class uses. */
static inline unsigned pool_words(const struct pool *p)
{
    return (p->nblocks + 63u) / 64u;
}

/* p's place in the inherit map (pos, see struct imap), NULL while its
 * arena has no chunk there (g.imap must be set). */
static inline _Atomic uint16_t *imap_pos(const struct pool *p)
{
    const struct imap *m = g.imap;
    size_t i = pool_index(p), a = i / POOLS_PER_ARENA;
    uint32_t off = a < m->narenas ? atomic_load_explicit(&m->base[a], memory_order_acquire) : 0;
    return off ? (_Atomic uint16_t *)((char *)m + off) + i % POOLS_PER_ARENA : NULL;
}

/* p's words in the inherit map, NULL when it has none (g.imap must be set). */
static inline _Atomic uint64_t *imap_of(const struct pool *p)
{
    _Atomic uint16_t *pos = imap_pos(p);
    unsigned w = pos ? RELAXED_LOAD(*pos) : 0;
    return w ? (_Atomic uint64_t *)(pos - pool_index(p) % POOLS_PER_ARENA +
                                    POOLS_PER_ARENA) + w - 1
             : NULL;
}

/* Word w of p's free blocks: the owner's, the remote ones and, in a fork()ed
 * child, those freed into an inherited pool.  Remote before free: a merge
 * running meanwhile (shed_stats holds no stripe lock) moves bits from remote
 * to free in the other order, so no block is missed. */
static inline uint64_t pool_free_word(struct pool *p, unsigned w)
{
    uint64_t f = atomic_load_explicit(&remote_map(p)[w], memory_order_acquire);
    f |= RELAXED_LOAD(free_map(p)[w]);
    _Atomic uint64_t *im;
    if (unlikely(g.imap != NULL) && (im = imap_of(p)) && w < pool_words(p))
        f |= RELAXED_LOAD(im[w]);
    return f;
}

/* Is block idx of p free (in any bitmap)? */
static inline bool block_is_free(struct pool *p, size_t idx)
{
    return (pool_free_word(p, (unsigned)(idx / 64)) >> (idx % 64) & 1) != 0;
}

/* init.c */
int  shed_init_slow(void) HIDDEN;
static inline bool shed_ready(void)
{
    int s = atomic_load_explicit(&g.state, memory_order_acquire);
    return likely(s == S_READY) || (s != S_NO_REGION && shed_init_slow());
}

/* fork() hooks, one set per module that holds locks, called by init.c in
 * the lock order (see "Lock order" above). */
#define FORK_HOOKS(m) \
    bool m##_fork_busy(void) HIDDEN; \
    void m##_fork_prepare(void) HIDDEN; \
    void m##_fork_parent(void) HIDDEN; \
    void m##_fork_child(void) HIDDEN;
FORK_HOOKS(heap)
FORK_HOOKS(quarantine)
FORK_HOOKS(release)
FORK_HOOKS(orphan)
FORK_HOOKS(theap)
FORK_HOOKS(arena)
FORK_HOOKS(releaser)
#undef FORK_HOOKS
/* Is the mutex held (by anyone)?  A plain read of glibc's lock word: fork()
 * in a process with one thread looks whether that thread holds a lock of
 * shed (a signal handler that interrupted it), without taking any. */
static inline bool mutex_held(pthread_mutex_t *m)
{
#ifdef __GLIBC__
    return __atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED) != 0;
#else
    (void)m;
    return true;                 /* unknown layout: say held, take the locks */
#endif
}
/* The forking thread's: this fork() took no lock (init.c, fork_prepare). */
extern __thread bool tls_fork_alone HIDDEN __attribute__((tls_model("initial-exec")));
/* A mutex that fork_prepare took, in the child: the forking thread, the
 * child's only one, holds it and unlocks it (POSIX's own use of
 * pthread_atfork).  Not pthread_mutex_init: ThreadSanitizer keeps a mutex
 * that is initialised again as held by the forking thread, and reported
 * the child's release thread taking it as a double lock. */
static inline void fork_child_unlock(pthread_mutex_t *m)
{
    pthread_mutex_unlock(m);
}
/* The hooks of a module whose one lock is lk: held across the fork (busy:
 * held now). */
#define MUTEX_FORK_HOOKS(m, lk) \
    bool m##_fork_busy(void) { return mutex_held(&(lk)); } \
    void m##_fork_prepare(void) { pthread_mutex_lock(&(lk)); } \
    void m##_fork_parent(void) { pthread_mutex_unlock(&(lk)); } \
    void m##_fork_child(void) { fork_child_unlock(&(lk)); }

/* Fault injection for the tests (shed_testing.h): the platform calls below
 * fail on demand. */
enum fault_site { F_RESERVE, F_MAP, F_COMMIT, F_MADVISE, F_PMADVISE, F_THREAD,
                  F_URING, F_PIDFD_SELF, NFAULTS };
bool     fault_hit(enum fault_site site) HIDDEN;

/* os.c: the platform glue */
void    *os_reserve(size_t *size) HIDDEN;
size_t   os_address_room(void) HIDDEN;
void    *os_map(size_t size) HIDDEN;
void    *os_map_table(size_t size) HIDDEN;
void     os_unmap(void *addr, size_t size) HIDDEN;
size_t   os_resident_pages(void *addr, size_t npages) HIDDEN;
int      os_commit(void *addr, size_t size) HIDDEN;
void     os_probe_backend(void) HIDDEN;
void     os_fork_child(bool threads) HIDDEN;
size_t   os_advise(struct iovec *iov, size_t n, bool *ok) HIDDEN;
uint32_t now_ms(void) HIDDEN;
uint64_t now_ns(void) HIDDEN;
void     os_write_err(const char *s) HIDDEN;
void     os_count_call(uint64_t t0, bool failed) HIDDEN;
bool     os_thread_is_last(void) HIDDEN;
bool     os_barrier_register(void) HIDDEN;
bool     os_barrier_all(void) HIDDEN;
int      os_thread_handle(void) HIDDEN;
void     os_thread_wait_gone(int fd) HIDDEN;

/* uring.c: the optional io_uring backend */
bool     uring_load(void) HIDDEN;
bool     uring_available(void) HIDDEN;
size_t   uring_advise(struct iovec *iov, size_t n, int advice, bool *ok) HIDDEN;
void     uring_fork_child(void) HIDDEN;
int      os_backend_in_use(void) HIDDEN;

/* arena.c: pool states */
size_t   arena_acquire_pools(unsigned cls, struct pool **out, size_t want) HIDDEN;
void     arena_return_pool(struct pool *p) HIDDEN;
size_t   arena_claim_pool(struct pool *p, struct iovec *iov) HIDDEN;
size_t   arena_claim(bool all, struct iovec *iov, size_t cap, uint32_t *next_ms) HIDDEN;
void     arena_settle(struct iovec *iov, size_t n, const bool *ok) HIDDEN;
void     arena_seal_all(bool seal) HIDDEN;
size_t   arena_resident_bytes(void) HIDDEN;
size_t   arena_dirty_pools(void) HIDDEN;
void     arena_fork_done(void) HIDDEN;

/* pool.c: blocks within a pool */
void     pool_init(struct pool *p, struct theap *owner, unsigned cls) HIDDEN;
void     pool_merge_remote(struct pool *p) HIDDEN;
void     pool_classes_init(void) HIDDEN;

/* theap.c: thread heaps, their lists, settling and retiring pools */
struct theap *theap_new(bool shared) HIDDEN;
struct theap *theap_get(void) HIDDEN;
int      theap_setup(void) HIDDEN;
void     theap_clear(struct theap *th) HIDDEN;
void     theap_recycle(struct theap *th) HIDDEN;
uint64_t theaps_large_allocs(void) HIDDEN;
void     list_push(struct theap *th, struct pool *p) HIDDEN;
void     list_remove(struct theap *th, struct pool *p) HIDDEN;
void     pool_retire(struct pool *p) HIDDEN;
void     pool_retire_as(struct pool *p, bool bulk) HIDDEN;
void     pool_set_aside(struct pool *p) HIDDEN;
bool     pool_transfer(struct theap *th, struct pool *p, struct theap *to) HIDDEN;
void     theap_settle(struct theap *th, struct pool *p) HIDDEN;
void     theap_drain(struct theap *th) HIDDEN;
void     theap_flush_empty(struct theap *th) HIDDEN;
void     theap_relist(struct theap *th) HIDDEN;
void     theap_destroy_pools(struct theap *th) HIDDEN;
void     used_pools_each(bool (*fn)(struct pool *, void *), void *arg) HIDDEN;
void     theap_for_each_pool(struct theap *th,
                             void (*fn)(struct theap *, struct pool *, void *),
                             void *arg) HIDDEN;

/* slow.c: the allocation slow path */
void    *theap_alloc_slow(struct theap *th, unsigned cls) HIDDEN;
void    *theap_alloc(struct theap *th, size_t size) HIDDEN;

/* orphan.c: the pools of exited threads */
void     theap_abandon(struct theap *th) HIDDEN;
void     orphanage_place(struct pool *p) HIDDEN;
struct pool *orphan_adopt(struct theap *th, unsigned cls) HIDDEN;
void     orphanage_collect(void) HIDDEN;

/* inherit.c: a fork()ed child's inherited pools */
void     inherit_fork_child(void) HIDDEN;
void     inherit_free(struct pool *p, size_t idx) HIDDEN;
void     theap_reclaim_inherited(void) HIDDEN;
void     inherited_collect(bool force) HIDDEN;
void     inherit_count_frees(size_t n) HIDDEN;

/* span.c: the medium region, spans and their pages' states */
int      span_setup(size_t size) HIDDEN;
struct span *span_acquire(void) HIDDEN;
void     span_return(struct span *s) HIDDEN;
void     span_own_pages(struct span *s, uint64_t pages) HIDDEN;
void     span_idle_pages(struct span *s, uint64_t pages) HIDDEN;
bool     span_owners_barrier(void) HIDDEN;
size_t   span_claim(bool all, struct iovec *iov, size_t cap, uint32_t *next_ms) HIDDEN;
void     span_settle(struct iovec *iov, size_t n, const bool *ok) HIDDEN;
void     span_seal_all(bool seal) HIDDEN;
size_t   span_resident_bytes(void) HIDDEN;
bool     span_any_dirty(void) HIDDEN;
bool     span_fork_busy(void) HIDDEN;
void     span_fork_prepare(void) HIDDEN;
void     span_fork_parent(void) HIDDEN;
void     span_fork_child(void) HIDDEN;
void     span_fork_inherit(void) HIDDEN;

/* medium.c: medium classes, their blocks and the theaps' spans */
void    *medium_alloc(struct theap *th, size_t size, size_t align) HIDDEN;
void    *medium_malloc(struct theap *th, size_t size, size_t align) HIDDEN;
void     medium_free(void *ptr, const char *call) HIDDEN;
void     medium_free_now(void *ptr, const char *call) HIDDEN;
size_t   medium_usable(const void *ptr, const char *call) HIDDEN;
int      medium_class(size_t size, size_t align) HIDDEN;
void     medium_classes_init(void) HIDDEN;
void     medium_park_set(void) HIDDEN;
void     medium_drain(struct theap *th) HIDDEN;
void     medium_abandon(struct theap *th) HIDDEN;
void     medium_destroy(struct theap *th) HIDDEN;
void     medium_theap_clear(struct theap *th) HIDDEN;
void     medium_reclaim_inherited(void) HIDDEN;
size_t   medium_inherited_pages(void) HIDDEN;
void     medium_stats(struct shed_stats *st) HIDDEN;
void     mcache_flush(struct theap *th) HIDDEN;
void     mcache_ask_all(void) HIDDEN;
void     mcache_trim_all(void) HIDDEN;
uint32_t medium_cache_ask(void) HIDDEN;
static inline bool in_medium(const void *ptr)
{
    return (uintptr_t)ptr - (uintptr_t)med.base < med.size;
}

/* quarantine.c: freed blocks held back under a checker */
bool     quarantine_put(void *b, unsigned size, const char *call) HIDDEN;
bool     quarantine_holds(const void *b) HIDDEN;
unsigned quarantine_count(struct pool *p) HIDDEN;
void     quarantine_trim(void) HIDDEN;
void     quarantine_destroy_pool(struct pool *p) HIDDEN;
bool     quarantine_forget(const void *b) HIDDEN;

/* heap.c: shed_heap */
struct shed_heap *heap_take_large(void *ptr) HIDDEN;
void     heap_put_large(struct shed_heap *h, void *ptr) HIDDEN;
void     heaps_collect(void) HIDDEN;

/* release.c: giving pools back */
void     release_pool_now(struct pool *p) HIDDEN;
size_t   release_pass(bool all, uint32_t *next_ms) HIDDEN;
void     releaser_ensure(void) HIDDEN;
void     releaser_kick(struct pool *p) HIDDEN;
void     releaser_kick_span(struct span *s) HIDDEN;
void     releaser_kick_later(void) HIDDEN;
void     span_release_now(struct span *s) HIDDEN;
void     release_retired(size_t n) HIDDEN;
void     releaser_collect_soon(void) HIDDEN;
void     releaser_stats_changed(void) HIDDEN;
void     releaser_pause(void) HIDDEN;
void     releaser_stop(void) HIDDEN;
void     releaser_resume(bool parent) HIDDEN;

/* alloc.c / free.c entry points shared with preload.c (fast paths: fast.h) */
void    *shed_malloc_impl(size_t size) HIDDEN;
void    *alloc_system(size_t size, size_t align) HIDDEN;
void     shed_free_impl(void *ptr, const char *call) HIDDEN;
void     free_remote(struct pool *p, size_t idx, unsigned size, void *ptr,
                     const char *call) HIDDEN;
void     remote_publish(struct pool *p, unsigned w, uint64_t bit, void *ptr,
                        const char *call) HIDDEN;
void     free_now(void *ptr, const char *call) HIDDEN;
void    *shed_realloc_impl(void *ptr, size_t size, const char *call,
                           struct shed_heap *heap) HIDDEN;
void    *shed_aligned_impl(size_t align, size_t size) HIDDEN;
size_t   shed_usable_impl(const void *ptr, const char *call) HIDDEN;
size_t   shed_data_len(void *ptr, size_t usable) HIDDEN;

/* error.c */
void     shed_error(enum err_kind kind, const void *ptr, const char *call) HIDDEN;
void     shed_warn(const char *msg, const char *detail) HIDDEN;

/* stats.c: what the reports read, beside shed_stats */
enum cell { CELL_USED = 0,      /* + enum shed_fill_bin: in use, by fill */
            CELL_DIRTY = SHED_FILL_BINS, CELL_RELEASING, CELL_RELEASED, CELL_UNTOUCHED,
            NCELLS };
size_t   stats_pool_cells(unsigned char *cell, size_t max) HIDDEN;

/* report.c: stats for people and tools, without malloc */
struct out {                     /* a buffer flushed to a FILE or a descriptor */
    char *buf;
    size_t len, cap;
    FILE *f;
    int fd;
    bool failed;
};
void     out_flush(struct out *o) HIDDEN;
void     out_str(struct out *o, const char *s) HIDDEN;
void     out_fmt(struct out *o, const char *fmt, ...) HIDDEN;  /* %s %u %n %b */
char    *fmt_count(char *buf, uint64_t v) HIDDEN;       /* "2,716" */
char    *fmt_bytes(char *buf, uint64_t v) HIDDEN;       /* "212 MiB" */
void     report_headline(struct out *o, const struct shed_stats *st) HIDDEN;
bool     report_set_file(const char *path) HIDDEN;
void     report_fork_child(void) HIDDEN;
uint32_t report_interval_due(void) HIDDEN;
void     report_interval_tick(void) HIDDEN;
void     report_setup(void) HIDDEN;

/* heapmap.c */
void     heapmap_svg(struct out *o) HIDDEN;

/* options.c */
void     options_defaults(void) HIDDEN;
void     options_from_env(void) HIDDEN;
int      options_apply(const char *settings, bool report) HIDDEN;
const char *option_choice_name(const char *key, int value) HIDDEN;

/* The system allocator, for what pools do not serve: glibc's own functions,
 * which a preloaded libshed.so cannot reach through the standard names.  A
 * sanitizer build (never preloaded) uses the standard names instead, which
 * the sanitizer intercepts, so that every system block is the sanitizer's. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SHED_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SHED_SANITIZED 1
#endif
#endif
#ifdef SHED_SANITIZED
#include <malloc.h>
#include <stdlib.h>
#define sys_malloc   malloc
#define sys_calloc   calloc
#define sys_realloc  realloc
#define sys_memalign memalign
#define sys_free     free
#define sys_mallopt  mallopt
#else
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void  __libc_free(void *);
extern int   __libc_mallopt(int, int);
#define sys_malloc   __libc_malloc
#define sys_calloc   __libc_calloc
#define sys_realloc  __libc_realloc
#define sys_memalign __libc_memalign
#define sys_free     __libc_free
#define sys_mallopt  __libc_mallopt
#endif
size_t   sys_usable_size(void *ptr) HIDDEN;
void     preload_first_use(void) HIDDEN;   /* preload.c (libshed.so only) */

/* sysheap.c: glibc's heap, which holds only shed's large blocks when
 * preloaded (libshed.so only; the linked library leaves it alone). */
#ifdef SHED_PRELOAD
void     sys_heap_prime(void) HIDDEN;      /* at the first large request */
bool     sys_heap_primed(void) HIDDEN;
void     sys_heap_freed(void) HIDDEN;      /* a large block was freed */
bool     sys_heap_dirty(void) HIDDEN;      /* freed since the last trim */
uint32_t sys_heap_pass(bool all) HIDDEN;   /* trim if due (all: now); ms to wait */
#else
static inline void sys_heap_prime(void) {}
static inline bool sys_heap_primed(void) { return false; }
static inline void sys_heap_freed(void) {}
static inline bool sys_heap_dirty(void) { return false; }
static inline uint32_t sys_heap_pass(bool all) { (void)all; return UINT32_MAX; }
#endif

#endif /* SHED_IMPL_H */

/*
 * The quarantine: under a memory checker (memcheck, ASan) a freed block is
 * not handed out again at once.  memcheck's own malloc keeps freed blocks out
 * of use until --freelist-vol bytes (20 MB) were freed after them, so that a
 * write through a stale pointer lands on a block that is still no-access and
 * is reported, where a block handed out again at once would take the write
 * silently.  shed does the same: a freed block, already no-access to the
 * checker, waits here in a FIFO with its bit still clear in its pool's
 * bitmaps (so its pool stays in use, and is not released, until it leaves)
 * until quarantine_kb KiB of blocks are held after it; then it goes back to
 * its pool as a free would.  A second free of a held block is a double free:
 * its bit in q.held says so.  Medium blocks (medium.c) are held the same
 * way, in the same FIFO, their bit still clear in their span's bitmaps (so
 * the span stays owned and the pages they touch stay owned: not released
 * while the block is held).
 *
 * Nothing here runs without a checker (the free fast path never gets here).
 * The FIFO keeps hidden addresses (hide_addr): shed's memory holds no block
 * address while a checker runs (shed_impl.h).
 */
#include "shed_impl.h"
#include "vg.h"

static struct {
    pthread_mutex_t lock;        /* everything below; see the lock order */
    uintptr_t *ring;             /* hidden addresses, oldest at ring[head] */
    size_t cap, head, n;         /* n entries from head, modulo cap */
    size_t bytes;                /* bytes of the blocks held */
    _Atomic uint64_t *held;      /* a bit per 16 bytes of the region, then
                                    a bit per 128 bytes of the medium region
                                    (MEDIUM_STEP): the block starting there
                                    is held (an entry whose bit is clear is
                                    skipped) */
} q = { .lock = PTHREAD_MUTEX_INITIALIZER };

static size_t limit(void)
{
    return (size_t)RELAXED_LOAD(g.opt.quarantine_kb) << 10;
}

/* Every medium class is a multiple of this: a medium block starts at a
 * multiple of it in the medium region. */
#define MEDIUM_STEP 128

/* Bit of the block at b (in the region or the medium region) in q.held. */
static size_t held_bit(const void *b)
{
    if (!in_region(b))
        return g.region_size / SHED_CLASS_STEP +
               (size_t)((const char *)b - med.base) / MEDIUM_STEP;
    return (size_t)((const char *)b - g.region) / SHED_CLASS_STEP;
}

/* Bytes of q.held. */
static size_t held_bytes(void)
{
    return (g.region_size / SHED_CLASS_STEP + med.size / MEDIUM_STEP + 63) / 64 * 8;
}

/* q.held, read without q.lock (NULL until the first block is held). */
static _Atomic uint64_t *held_map(void)
{
    return __atomic_load_n(&q.held, __ATOMIC_ACQUIRE);
}

static bool is_held(const void *b)
{
    size_t i = held_bit(b);
    _Atomic uint64_t *map = held_map();
    return map && (RELAXED_LOAD(map[i / 64]) >> (i % 64) & 1);
}

/* Set or clear the bit of b (q.lock held). */
static void set_held(const void *b, bool on)
{
    size_t i = held_bit(b);
    uint64_t w = RELAXED_LOAD(q.held[i / 64]), bit = 1ull << (i % 64);
    RELAXED_STORE(q.held[i / 64], on ? w | bit : w & ~bit);
}

static unsigned block_bytes(const void *b)
{
    if (!in_region(b))
        return RELAXED_LOAD(med.spans[(size_t)((const char *)b - med.base) >> SPAN_SHIFT].size);
    return RELAXED_LOAD(desc_at((size_t)((const char *)b - g.region))->size);
}

/* Room for one more entry (q.lock held); false when there is no memory. */
static bool make_room(void)
{
    if (!q.held) {
        _Atomic uint64_t *map = os_map(held_bytes());
        if (!map)
            return false;
        __atomic_store_n(&q.held, map, __ATOMIC_RELEASE);
    }
    if (q.n < q.cap)
        return true;
    size_t cap = q.cap ? 2 * q.cap : 4096;
    uintptr_t *ring = os_map(cap * sizeof *ring);
    if (!ring)
        return false;
    for (size_t i = 0; i < q.n; i++)
        ring[i] = q.ring[(q.head + i) % q.cap];
    if (q.ring)
        os_unmap(q.ring, q.cap * sizeof *q.ring);
    q.ring = ring;
    q.cap = cap;
    q.head = 0;
    return true;
}

/* Give the oldest blocks back to their pools until at most max bytes are
 * held (q.lock held: a heap's destruction waits, so that no block leaves for
 * a pool that is going away). */
static void evict(size_t max)
{
    while (q.bytes > max && q.n) {
        void *b = unhide_addr(q.ring[q.head]);
        q.ring[q.head] = 0;
        q.head = (q.head + 1) % q.cap;
        q.n--;
        if (!is_held(b))
            continue;           /* dropped by quarantine_destroy_pool */
        set_held(b, false);
        q.bytes -= block_bytes(b);
        free_now(b, "free");
    }
}

/* A block of size bytes that free() checked and told the checker about:
 * hold it.  False when the caller must free it now (the quarantine is off,
 * or has no memory).  A block held already is reported as a double free. */
bool quarantine_put(void *b, unsigned size, const char *call)
{
    size_t max = limit();
    if (max == 0)
        return false;
    pthread_mutex_lock(&q.lock);
    if (is_held(b)) {
        pthread_mutex_unlock(&q.lock);
        shed_error(E_DOUBLE, b, call);
        return true;
    }
    if (!make_room()) {
        pthread_mutex_unlock(&q.lock);
        return false;
    }
    q.ring[(q.head + q.n++) % q.cap] = hide_addr(b);
    set_held(b, true);
    q.bytes += size;
    evict(max);
    pthread_mutex_unlock(&q.lock);
    return true;
}

/* Is b a held block (freed, not yet back in its pool or span)?  No lock: a racing
 * free of the same block is the program's bug either way. */
bool quarantine_holds(const void *b)
{
    return is_held(b);
}

/* Blocks of p held here: freed, for the program and for shed_stats, though
 * their pool's bitmaps still count them in use.  A pool's bits in q.held
 * are whole words (a pool is page aligned). */
unsigned quarantine_count(struct pool *p)
{
    _Atomic uint64_t *map = held_map();
    if (!map)
        return 0;
    size_t first = held_bit(pool_addr(p)) / 64;
    unsigned n = 0;
    for (unsigned w = 0; w < g.nwords; w++)
        n += (unsigned)__builtin_popcountll(RELAXED_LOAD(map[first + w]));
    return n;
}

/* quarantine_kb changed (shed_config): hold no more than it says. */
void quarantine_trim(void)
{
    if (!g.checker || atomic_load(&g.state) != S_READY)
        return;
    pthread_mutex_lock(&q.lock);
    evict(limit());
    pthread_mutex_unlock(&q.lock);
}

/* shed_heap_destroy: every block of p goes at once.  The live ones are
 * freed to the checker; the held ones, freed already, are forgotten (their
 * entries are skipped when they come up; one that comes up after the block
 * was freed again takes it out early, which does no harm). */
void quarantine_destroy_pool(struct pool *p)
{
    unsigned size = RELAXED_LOAD(p->size);
    pthread_mutex_lock(&q.lock);
    for (size_t i = 0; i < p->nblocks; i++) {
        char *b = pool_addr(p) + i * size;
        if (is_held(b)) {
            set_held(b, false);
            q.bytes -= size;
        } else if (!block_is_free(p, i)) {
            chk_free_early(b);
        }
    }
    pthread_mutex_unlock(&q.lock);
}

/* shed_heap_destroy, a span of the heap: the block at b goes with it.  True
 * when it was held (freed already: forgotten now, its entry skipped when it
 * comes up), false when it was live (the caller tells the checker). */
bool quarantine_forget(const void *b)
{
    if (!held_map())
        return false;
    pthread_mutex_lock(&q.lock);
    bool held = is_held(b);
    if (held) {
        set_held(b, false);
        q.bytes -= block_bytes(b);
    }
    pthread_mutex_unlock(&q.lock);
    return held;
}

MUTEX_FORK_HOOKS(quarantine, q.lock)

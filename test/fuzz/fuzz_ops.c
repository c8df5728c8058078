/*
 * libFuzzer target: an input is a stream of allocator operations, run
 * against shed and against a reference model that knows, for each live
 * block, its size, the byte it was filled with, its alignment and its heap.
 * Every block's contents, every shed_usable_size and, after every operation,
 * stats.blocks_in_use are checked against the model; any difference aborts.
 *
 * An operation is one byte (op % NOPS) and its argument bytes; a missing
 * byte reads as 0.  "thread" hands the following operations to a second
 * thread (and back), which then frees blocks the first one allocated and the
 * other way round; it can also end that thread (its pools are orphaned).
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shed.h"

enum { NSLOTS = 64, NHEAPS = 4 };

enum {
    O_MALLOC, O_CALLOC, O_REALLOC, O_ALIGNED, O_FREE, O_TRIM, O_HEAP_NEW, O_HEAP_MALLOC,
    O_HEAP_CALLOC, O_HEAP_REALLOC, O_HEAP_DESTROY, O_FREEZE, O_THAW, O_THREAD, O_CONFIG,
    O_CHECK, NOPS
};

struct slot {
    unsigned char *p;      /* NULL: empty */
    size_t size;           /* bytes asked for */
    size_t align;          /* alignment asked for (16 for the plain calls) */
    unsigned char fill;
    int heap;              /* index in heaps[], -1 for none */
};

static struct slot slots[NSLOTS];
static shed_heap_t *heaps[NHEAPS];

struct op {
    int code;
    unsigned slot, heap;
    size_t size, align;
    unsigned char fill, arg;
};

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "fuzz_ops: %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
            abort();                                                       \
        }                                                                  \
    } while (0)

/* ---- the model's view of shed: which blocks come from pools, how big ---- */

static size_t round_up(size_t n, size_t a)
{
    return (n + a - 1) / a * a;
}

/* A pool block (counted in blocks_in_use) or the system allocator's? */
static bool is_small(size_t size, size_t align)
{
    if (size > SHED_MAX_BLOCK || align > SHED_MAX_BLOCK)
        return false;
    return round_up(size ? size : 1, align < 16 ? 16 : align) <= SHED_MAX_BLOCK;
}

/* The medium classes (shed.7), and the one serving size bytes aligned to
 * align: 0 when the request is small, or too big for a span. */
static const size_t medium_sizes[SHED_MEDIUM_CLASSES] = {
    640, 768, 896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096,
    5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384, 20480, 24576, 28672, 32768,
    40960, 49152, 57344, 65536, 81920, 98304, 114688, 131072,
};

static int medium_class(size_t size, size_t align)
{
    if (is_small(size, align))
        return -1;
    for (int c = 0; c < SHED_MEDIUM_CLASSES; c++)
        if (medium_sizes[c] >= size && (align <= 16 || medium_sizes[c] % align == 0))
            return c;
    return -1;
}

static size_t block_size(const struct slot *s);

static void check_block(const struct slot *s, const char *when)
{
    size_t usable = shed_usable_size(s->p);
    size_t align = s->align < 16 ? 16 : s->align;
    CHECK((uintptr_t)s->p % align == 0, "%p not aligned to %zu (%s)", (void *)s->p, align, when);
    /* Under ASan (always, here) shed reports a pool block's requested size:
     * only those bytes are unpoisoned. */
    if (block_size(s))
        CHECK(usable == s->size, "usable %zu for size %zu align %zu (%s)", usable, s->size,
              s->align, when);
    else
        CHECK(usable >= s->size, "usable %zu < size %zu (%s)", usable, s->size, when);
    for (size_t i = 0; i < s->size; i++)
        CHECK(s->p[i] == s->fill, "%p[%zu] = %#x, want %#x (size %zu, %s)", (void *)s->p, i,
              s->p[i], s->fill, s->size, when);
}

static void check_all(const char *when)
{
    for (int i = 0; i < NSLOTS; i++)
        if (slots[i].p)
            check_block(&slots[i], when);
}

/* The pool or span block size of a slot's block (0 for the system
 * allocator's). */
static size_t block_size(const struct slot *s)
{
    int c = medium_class(s->size, s->align);
    if (c >= 0)
        return medium_sizes[c];
    if (!is_small(s->size, s->align))
        return 0;
    return round_up(s->size ? s->size : 1, s->align < 16 ? 16 : s->align);
}

/* Blocks and bytes in use, in all and per class, as the model has them. */
static void check_count(const char *when)
{
    size_t blocks[SHED_NUM_CLASSES] = { 0 }, medium[SHED_MEDIUM_CLASSES] = { 0 };
    size_t total = 0, bytes = 0;
    for (int i = 0; i < NSLOTS; i++) {
        size_t bs = slots[i].p ? block_size(&slots[i]) : 0;
        int c = slots[i].p ? medium_class(slots[i].size, slots[i].align) : -1;
        if (c >= 0) {
            medium[c]++;
        } else if (bs) {
            blocks[bs / SHED_CLASS_STEP - 1]++;
            total++;                /* blocks_in_use counts the pools' */
            bytes += bs;
        }
    }
    struct shed_stats st;
    CHECK(shed_stats(&st) == 0, "shed_stats failed");
    CHECK(st.blocks_in_use == total && st.bytes_in_use == bytes,
          "blocks_in_use %zu bytes_in_use %zu, model %zu %zu (after %s)", st.blocks_in_use,
          st.bytes_in_use, total, bytes, when);
    for (int c = 0; c < SHED_NUM_CLASSES; c++)
        CHECK(st.classes[c].blocks_in_use == blocks[c], "class %d: %zu blocks, model %zu (after %s)",
              c, st.classes[c].blocks_in_use, blocks[c], when);
    for (int c = 0; c < SHED_MEDIUM_CLASSES; c++)
        CHECK(st.medium[c].blocks_in_use == medium[c],
              "medium class %d: %zu blocks, model %zu (after %s)", c,
              st.medium[c].blocks_in_use, medium[c], when);
}

/* A block just returned for size bytes: check it, fill it, record it. */
static bool trace;      /* FUZZ_TRACE=1: print every block handed out */

static void took(struct slot *s, void *p, size_t size, size_t align, int heap, unsigned char fill,
                 bool zeroed, const char *call)
{
    CHECK(p != NULL, "%s(%zu) failed: errno %d", call, size, errno);
    if (trace)
        fprintf(stderr, "slot %d: %s(%zu, align %zu, heap %d) = %p\n", (int)(s - slots), call,
                size, align, heap, p);
    s->p = p;
    s->size = size;
    s->align = align;
    s->heap = heap;
    s->fill = 0;
    if (zeroed) {
        s->fill = 0;
        check_block(s, call);
    }
    s->fill = fill;
    memset(p, fill, size);
    check_block(s, call);
}

static void drop(struct slot *s)
{
    s->p = NULL;
}

/* A request that cannot be met: NULL and errno, nothing else changed. */
static void expect_fail(void *p, int err, const char *call)
{
    CHECK(p == NULL && errno == err, "%s gave %p errno %d, want NULL errno %d", call, p, errno, err);
}

/* ---- executing one operation (on whichever thread) ---- */

static const char *const configs[] = {
    "release=batched,delay_ms=0", "release=inline", "release=manual", "release=off",
    "release=batched,delay_ms=5", "advice=free", "advice=dontneed", "release=batched",
};

static void run_op(const struct op *o)
{
    struct slot *s = &slots[o->slot];
    shed_heap_t *h = heaps[o->heap];
    bool huge = o->size > ((size_t)1 << 40);
    void *p;
    errno = 0;
    switch (o->code) {
    case O_MALLOC:
    case O_CALLOC:
        if (s->p)
            break;
        p = o->code == O_MALLOC ? shed_malloc(o->size) : shed_calloc(1, o->size);
        if (huge)
            expect_fail(p, ENOMEM, "malloc/calloc(huge)");
        else
            took(s, p, o->size, 16, -1, o->fill, o->code == O_CALLOC, "malloc/calloc");
        if (o->code == O_CALLOC && o->arg & 1)     /* and an overflowing one */
            expect_fail(shed_calloc(SIZE_MAX / 4 + 2, 8), ENOMEM, "calloc overflow");
        break;
    case O_REALLOC:
        if (s->p && s->heap >= 0)
            break;                      /* heap blocks: O_HEAP_REALLOC */
        if (s->p)
            check_block(s, "before realloc");
        p = shed_realloc(s->p, o->size);
        if (huge) {
            expect_fail(p, ENOMEM, "realloc(huge)");
        } else if (o->size == 0 && s->p) {
            CHECK(p == NULL, "realloc(p, 0) gave %p", p);
            drop(s);
        } else {
            /* The old contents survive up to the smaller size. */
            size_t keep = s->p ? (s->size < o->size ? s->size : o->size) : 0;
            for (size_t i = 0; p && i < keep; i++)
                CHECK(((unsigned char *)p)[i] == s->fill, "realloc lost byte %zu", i);
            took(s, p, o->size, 16, -1, o->fill, false, "realloc");
        }
        break;
    case O_ALIGNED:
        if (s->p)
            break;
        p = shed_aligned_alloc(o->align, o->size);
        if (o->align & (o->align - 1))
            expect_fail(p, EINVAL, "aligned_alloc(bad alignment)");
        else if (huge)
            expect_fail(p, ENOMEM, "aligned_alloc(huge)");
        else
            took(s, p, o->size, o->align, -1, o->fill, false, "aligned_alloc");
        break;
    case O_FREE:
        if (!s->p)
            break;
        check_block(s, "before free");
        shed_free(s->p);
        drop(s);
        break;
    case O_TRIM:
        shed_trim();
        check_all("trim");
        break;
    case O_HEAP_NEW:
        if (!h)
            CHECK((heaps[o->heap] = shed_heap_new(0)) != NULL, "heap_new failed");
        break;
    case O_HEAP_MALLOC:
    case O_HEAP_CALLOC:
        if (!h || s->p)
            break;
        p = o->code == O_HEAP_MALLOC ? shed_heap_malloc(h, o->size) : shed_heap_calloc(h, 1, o->size);
        if (huge)
            expect_fail(p, ENOMEM, "heap_malloc(huge)");
        else
            took(s, p, o->size, 16, (int)o->heap, o->fill, o->code == O_HEAP_CALLOC, "heap_malloc");
        break;
    case O_HEAP_REALLOC:        /* any block into heap h: the new one is h's */
        if (!h)
            break;
        if (s->p)
            check_block(s, "before heap_realloc");
        p = shed_heap_realloc(h, s->p, o->size);
        if (huge) {
            expect_fail(p, ENOMEM, "heap_realloc(huge)");
        } else if (o->size == 0 && s->p) {
            CHECK(p == NULL, "heap_realloc(p, 0) gave %p", p);
            drop(s);
        } else {
            size_t keep = s->p ? (s->size < o->size ? s->size : o->size) : 0;
            for (size_t i = 0; p && i < keep; i++)
                CHECK(((unsigned char *)p)[i] == s->fill, "heap_realloc lost byte %zu", i);
            took(s, p, o->size, 16, (int)o->heap, o->fill, false, "heap_realloc");
        }
        break;
    case O_HEAP_DESTROY:        /* every block of the heap goes with it */
        if (!h)
            break;
        shed_heap_destroy(h);
        heaps[o->heap] = NULL;
        for (int i = 0; i < NSLOTS; i++)
            if (slots[i].p && slots[i].heap == (int)o->heap)
                drop(&slots[i]);
        check_all("heap_destroy");
        break;
    case O_FREEZE:
        shed_freeze();
        check_all("freeze");
        break;
    case O_THAW:
        shed_thaw();
        check_all("thaw");
        break;
    case O_CONFIG:
        CHECK(shed_config(configs[o->arg % 8]) == 0, "shed_config(%s)", configs[o->arg % 8]);
        break;
    case O_CHECK:
        check_all("check");
        break;
    }
    check_count("an operation");
}

/* ---- the second thread: runs what it is handed, one op at a time ---- */

static struct {
    pthread_t t;
    bool running, active;       /* exists; ops go to it */
    sem_t go, done;
    const struct op *op;        /* NULL: exit */
} worker;

/* sem_wait returns early when a signal comes (libFuzzer's timer). */
static void wait_for(sem_t *s)
{
    while (sem_wait(s) != 0)
        CHECK(errno == EINTR, "sem_wait: errno %d", errno);
}

static void *worker_main(void *arg)
{
    (void)arg;
    for (;;) {
        wait_for(&worker.go);
        if (!worker.op)
            break;
        run_op(worker.op);
        sem_post(&worker.done);
    }
    return NULL;
}

static void worker_run(const struct op *o)
{
    if (!worker.running) {
        sem_init(&worker.go, 0, 0);
        sem_init(&worker.done, 0, 0);
        CHECK(pthread_create(&worker.t, NULL, worker_main, NULL) == 0, "pthread_create");
        worker.running = true;
    }
    worker.op = o;
    sem_post(&worker.go);
    if (o)
        wait_for(&worker.done);
    else {
        pthread_join(worker.t, NULL);
        worker.running = false;
    }
}

/* ---- decoding ---- */

struct input {
    const uint8_t *p;
    size_t n;
};

static uint8_t byte(struct input *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

/* Mostly pool sizes, sometimes medium ones (spans, up to just over the
 * medium limit), sometimes the system allocator's, rarely near SIZE_MAX. */
static size_t size_arg(struct input *in)
{
    uint8_t k = byte(in), v = byte(in);
    switch (k % 16) {
    case 13:
        return SHED_MAX_BLOCK + 1 + (size_t)v * 37;
    case 14:
        return SHED_MAX_BLOCK + 1 + (size_t)v * 127 + (k >> 4);
    case 15:                    /* 1 in 16 of these: ASan warns of each */
        if (v >= 240)
            return v & 1 ? SIZE_MAX - v : SIZE_MAX / 2 + v;
        return SHED_MAX_BLOCK + 1 + (size_t)v * 37 * 7;
    default:
        return (size_t)(k >> 4 & 1) * 256 + v;      /* 0..511 */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    struct input in = { data, n };
    trace = getenv("FUZZ_TRACE") != NULL;
    check_count("the previous input");
    while (in.n) {
        struct op o = { .code = byte(&in) % NOPS };
        o.slot = byte(&in) % NSLOTS;
        o.heap = o.slot % NHEAPS;
        o.fill = (uint8_t)(byte(&in) | 1);
        o.arg = o.fill;
        switch (o.code) {
        case O_MALLOC: case O_CALLOC: case O_REALLOC: case O_ALIGNED:
        case O_HEAP_MALLOC: case O_HEAP_CALLOC: case O_HEAP_REALLOC:
            o.size = size_arg(&in);
        }
        if (o.code == O_ALIGNED) {
            uint8_t a = byte(&in);
            o.align = (size_t)1 << (a % 14);
            if (a & 0x80)                                   /* not a power of two */
                o.align = o.align * 3 + (a & 0x40 ? 0 : 1);
        }
        if (o.code == O_THREAD) {
            if (o.arg & 2 && worker.running)
                worker_run(NULL);                           /* the thread exits */
            else
                worker.active = !worker.active;
            check_all("thread switch");
            continue;
        }
        if (worker.active)
            worker_run(&o);
        else
            run_op(&o);
    }
    /* Clean up on this thread (cross-thread frees of the worker's blocks). */
    check_all("end");
    for (int i = 0; i < NSLOTS; i++)
        if (slots[i].p && slots[i].heap < 0) {
            shed_free(slots[i].p);
            drop(&slots[i]);
        }
    for (int i = 0; i < NHEAPS; i++)
        if (heaps[i]) {
            shed_heap_destroy(heaps[i]);
            heaps[i] = NULL;
        }
    for (int i = 0; i < NSLOTS; i++)
        drop(&slots[i]);
    shed_thaw();
    worker.active = false;
    check_count("the end of the input");
    return 0;
}

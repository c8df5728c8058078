/*
 * shed: a small-object allocator that gives memory back to the kernel.
 *
 * Blocks of 1..512 bytes come from one-page pools; a pool whose blocks are
 * all free is returned to the kernel with madvise(2).  Blocks of 513 bytes
 * to 128 KiB come from spans of adjacent pages, each page of which goes back
 * once no live block touches it.  Larger requests go to the system
 * allocator.  See shed(7).
 */
#ifndef SHED_H
#define SHED_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this header and its library, as in the file VERSION
 * (make check-version keeps them equal). */
#define SHED_VERSION       "0.3.0"
#define SHED_VERSION_MAJOR 0
#define SHED_VERSION_MINOR 3
#define SHED_VERSION_PATCH 0

/* Blocks up to SHED_MAX_BLOCK bytes are served from pools, in
 * SHED_NUM_CLASSES size classes of SHED_CLASS_STEP bytes each. */
#define SHED_MAX_BLOCK   512
#define SHED_CLASS_STEP  16
#define SHED_NUM_CLASSES (SHED_MAX_BLOCK / SHED_CLASS_STEP)
/* Blocks of SHED_MAX_BLOCK + 1 up to SHED_MEDIUM_MAX bytes are served from
 * spans of adjacent pages, in SHED_MEDIUM_CLASSES classes (four per doubling:
 * 640, 768, 896, 1024, 1280, ... 131072 bytes; shed 0.2 stopped at 32768,
 * its 24th). */
#define SHED_MEDIUM_MAX     131072
#define SHED_MEDIUM_CLASSES 32

/* Allocation: the same contracts as malloc(3) and friends.  Failures return
 * NULL with errno set to ENOMEM (EINVAL for a bad alignment). */
void  *shed_malloc(size_t size);
void  *shed_calloc(size_t nmemb, size_t size);
void  *shed_realloc(void *ptr, size_t size);
void  *shed_aligned_alloc(size_t alignment, size_t size);
void   shed_free(void *ptr);
size_t shed_usable_size(const void *ptr);

/* Release every fully free pool to the kernel now; returns bytes released. */
size_t shed_trim(void);

/* Set configuration from code, with the syntax of SHED_CONF:
 * "key=value[,key=value...]".  Returns 0, or -1 with errno = EINVAL when an
 * item is unknown or malformed (the valid items are still applied). */
int shed_config(const char *settings);

struct shed_class_stats {
    size_t block_size;      /* bytes per block of this class */
    size_t blocks_in_use;   /* blocks handed out and not yet freed */
    size_t bytes_in_use;    /* blocks_in_use * block_size */
    size_t pools_in_use;    /* pools holding blocks of this class */
};

/* Pools by how full they are (blocks live / blocks a pool holds): the bins
 * of pools_by_fill. */
enum shed_fill_bin {
    SHED_FILL_EMPTY,        /* no block live (a thread's current or spare pool) */
    SHED_FILL_UNDER10,      /* under 10% of its blocks live */
    SHED_FILL_UNDER50,      /* 10% to under 50% */
    SHED_FILL_UNDER90,      /* 50% to under 90% */
    SHED_FILL_UNDER100,     /* 90% and more, not full */
    SHED_FILL_FULL,         /* every block live */
    SHED_FILL_BINS
};

struct shed_class_fill {
    size_t blocks_per_pool; /* blocks of this class one pool holds */
    size_t pools_by_fill[SHED_FILL_BINS];  /* its pools in use, by fill */
};

struct shed_stats {
    struct shed_class_stats classes[SHED_NUM_CLASSES];
    size_t blocks_in_use;       /* sums over the classes */
    size_t bytes_in_use;
    size_t pools_in_use;        /* pools assigned to a size class */
    size_t pools_dirty;         /* free pools whose page is still resident */
    size_t pools_releasing;     /* free pools claimed by the releaser now */
    size_t pools_released;      /* free pools given back (or never touched) */
    size_t arenas;              /* arenas carved from the region */
    size_t pool_size;           /* bytes per pool: the page size */
    size_t bytes_reserved;      /* address space of the heap region */
    size_t bytes_mapped;        /* address space of the arenas carved so far */
    size_t bytes_resident;      /* pages of the arenas now in memory */
    uint64_t release_syscalls;  /* madvise/process_madvise/io_uring calls */
    uint64_t release_syscalls_app; /* ... of them made by the program's own
                                  threads (0 in batched mode: all are made by
                                  shed's release thread) */
    uint64_t release_batches;   /* release passes that advised something */
    uint64_t release_ranges;    /* runs of adjacent pools advised */
    uint64_t pages_released;    /* pools given back to the kernel */
    uint64_t release_failures;  /* release calls that failed */
    uint64_t release_ns;        /* time spent inside release calls */
    uint64_t pools_reused_dirty;/* free pools reused before release */
    uint64_t large_allocs;      /* requests passed to the system allocator */
    uint64_t errors;            /* bad pointers reported */
    /* The struct ended here in shed 0.1.0 (SHED_STATS_SIZE_0_1 bytes).  New
     * fields are only ever appended, and shed fills as many bytes as the
     * caller says its struct has (shed_stats_get), so a program built
     * against an older shed.h keeps working with a newer library. */
    size_t size;                /* bytes of *st that shed filled */
    size_t pools_untouched;     /* of pools_released: never used since their
                                   arena was carved */
    size_t pools_by_fill[SHED_FILL_BINS];  /* pools in use by fill, all classes */
    struct shed_class_fill fill[SHED_NUM_CLASSES];  /* the same per class */
    /* Medium blocks (SHED_MAX_BLOCK + 1 to SHED_MEDIUM_MAX bytes): per class,
     * pools_in_use counts the spans that hold the class.  (shed 0.2 had 24
     * classes, to 32 KiB: a program built against its shed.h passes the
     * size of that struct and gets that layout.) */
    struct shed_class_stats medium[SHED_MEDIUM_CLASSES];
    size_t spans_in_use;        /* spans assigned to a medium class */
    size_t span_size;           /* bytes of address space per span */
    size_t medium_bytes_mapped; /* address space of the spans carved so far */
    size_t medium_bytes_resident; /* pages of those spans now in memory */
};
#define SHED_STATS_SIZE_0_1 offsetof(struct shed_stats, size)

/* Heaps: separate sets of pools.  Blocks of different heaps never share a
 * pool; shed_free, shed_realloc and shed_usable_size take a block of any heap,
 * and shed_heap_destroy frees every block of the heap at once.  flags must
 * be 0.  Calls on a destroyed heap are reported as bad input. */
typedef struct shed_heap shed_heap_t;
shed_heap_t *shed_heap_new(unsigned flags);
void  *shed_heap_malloc(shed_heap_t *heap, size_t size);
void  *shed_heap_calloc(shed_heap_t *heap, size_t nmemb, size_t size);
void  *shed_heap_realloc(shed_heap_t *heap, void *ptr, size_t size);
void   shed_heap_destroy(shed_heap_t *heap);

/* Freeze: seal every pool in use now, so that later allocations (here or in
 * fork()ed children) never go into those pages; thaw unseals them. */
void shed_freeze(void);
void shed_thaw(void);

/* Fill the first size bytes of *st (size is sizeof *st); returns 0, or -1
 * with errno = EINVAL when st is NULL or size is below SHED_STATS_SIZE_0_1. */
int  shed_stats_get(struct shed_stats *st, size_t size);
/* The same with the size of this header's struct.  The function (the
 * symbol that programs built against shed 0.1.0 call) fills the 0.1.0
 * fields only; the macro passes the size of the struct the caller has. */
int  shed_stats(struct shed_stats *st);
#define shed_stats(st) shed_stats_get((st), sizeof(struct shed_stats))
/* Print the statistics for people: sizes in KiB, MiB and GiB, a first line
 * that says where the memory is, occupancy per class. */
void shed_stats_print(FILE *out);
/* The same as one JSON object on one line (for tools). */
void shed_stats_print_json(FILE *out);
/* Draw the heap region as an SVG picture: a cell per pool, an arena a row,
 * coloured by state and fullness.  Returns 0, or -1 with errno set (EINVAL
 * when out is NULL, or what writing failed with). */
int  shed_heap_map_svg(FILE *out);

#ifdef __cplusplus
}
#endif
#endif /* SHED_H */

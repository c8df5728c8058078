/*
 * rounding: the size classes an allocator uses for medium requests (513 B to
 * 128 KiB), as malloc_usable_size shows them: the distinct usable sizes of
 * malloc(n) for every n from 513 to 131072, in one line.  Run preloaded with
 * each allocator (make bench-rounding), so that shed's classes can be set
 * beside jemalloc's and mimalloc's.  An allocator with more than MAX
 * distinct sizes there (glibc: a size every 16 bytes) prints the count only.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#define LO  513
#define HI  131072
#define MAX 64

int main(void)
{
    size_t seen[MAX], n = 0, last = 0, distinct = 0;
    for (size_t s = LO; s <= HI; s++) {
        void *p = malloc(s);
        if (!p) {
            perror("malloc");
            return 1;
        }
        size_t u = malloc_usable_size(p);
        free(p);
        if (u < s) {
            fprintf(stderr, "rounding: usable size %zu of malloc(%zu)\n", u, s);
            return 1;
        }
        if (u == last)
            continue;
        last = u;
        distinct++;
        if (n < MAX)
            seen[n++] = u;
    }
    if (distinct > MAX) {
        printf("%zu sizes\n", distinct);
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        printf("%s%zu", i ? " " : "", seen[i]);
    printf("\n");
    return 0;
}

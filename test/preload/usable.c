/*
 * Run with LD_PRELOAD="libshed.so decoy.so": the sizes of glibc's blocks
 * (larger than 512 bytes) come from glibc, not from the next allocator in
 * the search order.  A realloc that moves such a block into a pool copies
 * what glibc says it holds: with the decoy's answer, 1 byte.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    unsigned char *b = malloc(4096);
    if (!b)
        return 2;
    size_t n = malloc_usable_size(b);
    if (n < 4096) {
        printf("usable: malloc_usable_size of a 4096-byte block: %zu\n", n);
        return 1;
    }
    for (size_t i = 0; i < 4096; i++)
        b[i] = (unsigned char)(i * 7);
    b = realloc(b, 100);          /* into a pool of shed's */
    if (!b)
        return 2;
    for (size_t i = 0; i < 100; i++)
        if (b[i] != (unsigned char)(i * 7)) {
            printf("usable: byte %zu lost in realloc from 4096 to 100 bytes\n", i);
            return 1;
        }
    free(b);
    printf("usable: ok\n");
    return 0;
}

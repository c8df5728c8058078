/*
 * A plain C program, no shed API: frees badly through the standard names.
 * Run under LD_PRELOAD=libshed.so by preload_bad.sh.  It prints the address
 * it is about to give to free() on stdout first.
 *   badfree double | interior | ok
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "ok";
    char *p = malloc(64);
    char *keep = malloc(32);
    if (!p || !keep)
        return 2;
    memset(keep, 'k', 32);
    char *bad = strcmp(mode, "interior") == 0 ? p + 16 : p;
    printf("%p\n", (void *)bad);
    fflush(stdout);
    if (strcmp(mode, "double") == 0)
        free(p);
    if (strcmp(mode, "ok") != 0)
        free(bad);
    for (int i = 0; i < 32; i++)
        if (keep[i] != 'k')
            return 3;
    free(keep);
    if (strcmp(mode, "interior") == 0)
        free(p);
    return 0;
}

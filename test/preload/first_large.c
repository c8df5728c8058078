/*
 * Which thread sets glibc's allocator up: here the first request larger
 * than shed's blocks (so the first that shed passes on to glibc) comes from
 * a thread, not from the main thread.
 *
 * glibc sets its allocator up on the first call into it, and the thread
 * that does so takes glibc's main arena without counting itself in it (the
 * count starts at one, for the main thread).  Without shed the dynamic
 * loader makes that call, on the main thread.  If a thread made it, and
 * two threads raced to do so, both would hold the main arena on a count of
 * one, and glibc aborts when the second one exits ("malloc assertion failure
 * in __malloc_arena_thread_freeres: a->attached_threads > 0").  So under
 * LD_PRELOAD=libshed.so, shed makes that first call as it sets itself up,
 * at the process's first malloc (preload.c).
 *
 * The race itself is rare on an idle machine; what shows the set-up is that
 * a thread's first large block comes from an arena of its own, outside the
 * main arena (glibc's brk heap, between the end of the program's data and the
 * break), as without shed.  The output must be the same with and without
 * shed.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char end;                 /* the end of the program's data: ld(1) */

static void *first_large(void *arg)
{
    void *b = malloc(1000);
    if (b)
        memset(b, 1, 1000);
    *(void **)arg = b;
    return NULL;
}

int main(void)
{
    /* Nothing before this may reach glibc's allocator: no stdio yet (stdout's
     * buffer is a large block). */
    pthread_t t;
    void *b = NULL;
    if (pthread_create(&t, NULL, first_large, &b) != 0 || pthread_join(t, NULL) != 0 || !b)
        return 2;
    char *brk_now = sbrk(0);
    int in_main = (char *)b >= &end && (char *)b < brk_now;
    printf("a thread's first large block is %s glibc's main arena\n",
           in_main ? "in" : "outside");
    free(b);
    return 0;
}

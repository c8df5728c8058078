/*
 * A stand-in for a libshed.so of another version that has none of the calls
 * the module looks up: it is the malloc (through glibc's own) and has
 * shed_malloc, nothing else.  check.sh preloads it to see that the module
 * counts it active and that each call names the function it lacks.
 */
#include <stddef.h>

extern void *__libc_malloc(size_t size);

void *shed_malloc(size_t size);

void *malloc(size_t size)
{
    return __libc_malloc(size);
}

void *shed_malloc(size_t size)
{
    return __libc_malloc(size);
}

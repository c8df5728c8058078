/*
 * bigpage: makes a program on a 4 KiB-page kernel see larger pages, so that
 * shed and its tests run as they would on arm64 with 16 KiB or 64 KiB pages.
 * Preloaded, with SHED_FAKE_PAGE=16384 (a power of two, a multiple of the
 * real page size, at most 64 KiB):
 *   - sysconf(_SC_PAGESIZE) and getpagesize() return that size;
 *   - an anonymous mmap with no address given returns memory aligned to it,
 *     as a kernel with such pages would;
 *   - madvise and mincore refuse an address not aligned to it (EINVAL), as
 *     that kernel would, and mincore reports a page resident when any of its
 *     real pages is: a test that sees a page gone saw all of it gone.
 * What it cannot fake: the kernel still faults and frees memory 4 KiB at a
 * time, glibc's own page size stays 4 KiB, and so do the /proc counts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static size_t real_page, fake_page;

long __sysconf(int name);           /* glibc's, under the name it exports too */

/* The page size to show, 0 when SHED_FAKE_PAGE is unset or unusable. */
static size_t fake(void)
{
    if (!real_page) {
        real_page = (size_t)getauxval(AT_PAGESZ);
        const char *s = getenv("SHED_FAKE_PAGE");
        size_t v = s ? strtoul(s, NULL, 0) : 0;
        if (real_page >= 4096 && v > real_page && v <= 65536 && (v & (v - 1)) == 0)
            fake_page = v;
    }
    return fake_page;
}

long sysconf(int name)
{
    if ((name == _SC_PAGESIZE) && fake())
        return (long)fake_page;
    return __sysconf(name);
}

int getpagesize(void)
{
    return fake() ? (int)fake_page : (int)getauxval(AT_PAGESZ);
}

static void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (!fake() || addr || !(flags & MAP_ANONYMOUS) || len == 0 || len > SIZE_MAX / 2)
        return sys_mmap(addr, len, prot, flags, fd, off);
    /* Over-map by a fake page, then trim to an aligned start. */
    len = (len + real_page - 1) & ~(real_page - 1);
    char *p = sys_mmap(NULL, len + fake_page - real_page, prot, flags, fd, off);
    if (p == MAP_FAILED)
        return p;
    char *a = (char *)(((uintptr_t)p + fake_page - 1) & ~(uintptr_t)(fake_page - 1));
    if (a > p)
        syscall(SYS_munmap, p, (size_t)(a - p));
    size_t tail = (size_t)(p + len + fake_page - real_page - (a + len));
    if (tail)
        syscall(SYS_munmap, a + len, tail);
    return a;
}
void *mmap64(void *, size_t, int, int, int, off_t) __attribute__((alias("mmap")));

int madvise(void *addr, size_t len, int advice)
{
    if (fake() && (uintptr_t)addr % fake_page) {
        errno = EINVAL;
        return -1;
    }
    return (int)syscall(SYS_madvise, addr, len, advice);
}

int mincore(void *addr, size_t len, unsigned char *vec)
{
    if (!fake())
        return (int)syscall(SYS_mincore, addr, len, vec);
    if ((uintptr_t)addr % fake_page) {
        errno = EINVAL;
        return -1;
    }
    size_t per = fake_page / real_page, n = (len + fake_page - 1) / fake_page;
    unsigned char sub[16];               /* fake() allows 64 KiB of 4 KiB pages */
    for (size_t i = 0; i < n; i++) {
        if (syscall(SYS_mincore, (char *)addr + i * fake_page, fake_page, sub) != 0)
            return -1;
        vec[i] = 0;
        for (size_t j = 0; j < per; j++)
            vec[i] |= sub[j] & 1;
    }
    return 0;
}

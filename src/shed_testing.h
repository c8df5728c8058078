/*
 * Test-only hooks of libshed (not part of the public API, no man page).
 * Tests compile with -Isrc and include this header.
 */
#ifndef SHED_TESTING_H
#define SHED_TESTING_H

/* Make the next `count` calls of a platform primitive fail (count < 0: every
 * call until reset with 0).  The failures look like the kernel's: ENOMEM for
 * memory, EINVAL/EAGAIN for advice, EAGAIN for thread creation. */
enum shed_fault {
    SHED_FAULT_RESERVE,      /* mmap of the heap region (each size tried) */
    SHED_FAULT_MAP,          /* mmap of metadata */
    SHED_FAULT_COMMIT,       /* mprotect of a new arena: out of memory */
    SHED_FAULT_MADVISE,      /* madvise(2) */
    SHED_FAULT_PMADVISE,     /* process_madvise(2) */
    SHED_FAULT_THREAD,       /* pthread_create of the release thread */
    SHED_FAULT_URING,        /* setting up io_uring */
    SHED_FAULT_PIDFD_SELF,   /* process_madvise on PIDFD_SELF_PROCESS: EBADF,
                                as before Linux 6.14 */
};
void shed__fault_inject(int site, int count);

#endif

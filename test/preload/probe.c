/*
 * probe.so, preloaded beside libshed.so by programs.sh: at exit of every
 * process, append one line with shed's statistics to the file named by
 * $SHED_PROBE, so the test can tell that shed really served the program.
 *
 * Why not SHED_STATS=1: it prints to stderr, which some programs close
 * before exit (coreutils' close_stdout closes stderr too, so sort shows
 * nothing), and it mixes with the program's own stderr.  A destructor runs
 * after the atexit handlers, and writing with open/write needs no stdio.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <shed.h>

__attribute__((destructor)) static void probe_at_exit(void)
{
    const char *path = getenv("SHED_PROBE");
    int (*stats)(struct shed_stats *) =
        (int (*)(struct shed_stats *))dlsym(RTLD_DEFAULT, "shed_stats");
    if (!path)
        return;
    char exe[256] = "?", line[512];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 1] = '\0';
    struct shed_stats st;
    int len;
    if (stats && stats(&st) == 0)
        len = snprintf(line, sizeof line, "arenas=%zu mapped=%zu large=%llu errors=%llu exe=%s\n",
                       st.arenas, st.bytes_mapped, (unsigned long long)st.large_allocs,
                       (unsigned long long)st.errors, exe);
    else
        len = snprintf(line, sizeof line, "noshed exe=%s\n", exe);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        /* One write with O_APPEND: lines of concurrent processes stay whole.
         * A failed write shows up as a missing line in the test. */
        if (write(fd, line, (size_t)len) < 0)
            perror("probe.so");
        close(fd);
    }
}

/*
 * Run code in a child process and capture what it writes, for the cmocka
 * tests (test/shed_test.h) and the attack tests (test/attack/attack.h); the
 * few helpers that pick lines out of the captured text; and open_pidfds,
 * which both suites ask of a process.
 *
 * A child that misbehaves on purpose (bad frees, aborts, injected faults)
 * must not take the test process down with it, and its stderr is what the
 * test checks.
 */
#ifndef SHED_TEST_CHILD_H
#define SHED_TEST_CHILD_H

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* One read(2) of fd into buf[*got .. len-1), or, once buf is full, into a
 * scratch buffer: the rest is discarded but still read, so that the writer
 * never blocks on a full pipe.  Returns what read returned. */
static inline ssize_t read_some(int fd, char *buf, size_t len, size_t *got)
{
    char sink[512];
    bool room = *got < len - 1;
    ssize_t n = room ? read(fd, buf + *got, len - 1 - *got) : read(fd, sink, sizeof sink);
    if (n > 0 && room)
        *got += (size_t)n;
    return n;
}

/* Read fd to its end into buf (NUL-terminated, truncated to len >= 1). */
static inline void read_to_end(int fd, char *buf, size_t len)
{
    size_t got = 0;
    ssize_t n;
    while ((n = read_some(fd, buf, len, &got)) > 0 || (n < 0 && errno == EINTR))
        continue;
    buf[got] = 0;
}

/* One captured stream of a child: the read end of its pipe (-1 when not
 * captured, or once at EOF) and the buffer it goes to. */
struct child_pipe {
    int fd;
    char *buf;
    size_t len, got;
};

/* Open the pipe of one stream when its buffer is wanted; w gets the write
 * end (-1 if none).  Returns -1 if pipe(2) fails. */
static inline int child_pipe_open(struct child_pipe *p, char *buf, size_t len, int *w)
{
    int fd[2] = { -1, -1 };
    if (buf && pipe(fd) != 0)
        return -1;
    *p = (struct child_pipe){ .fd = fd[0], .buf = buf, .len = len };
    *w = fd[1];
    return 0;
}

static inline void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static inline void set_or_unset(const char *name, const char *value)
{
    if (value)
        setenv(name, value, 1);
    else
        unsetenv(name);
}

/* In the child: point stdout and stderr at the write ends given (or leave
 * them), close every pipe end, then exec or run fn.  Never returns. */
static inline _Noreturn void child_start(struct child_pipe p[2], int w[2], int (*fn)(void *), void *arg,
                                         const char *path, char *const argv[],
                                         const char *conf, const char *stats)
{
    for (int i = 0; i < 2; i++) {
        if (w[i] >= 0)
            dup2(w[i], i + 1);
        close_fd(&w[i]);
        close_fd(&p[i].fd);
    }
    if (path) {
        set_or_unset("SHED_CONF", conf);
        set_or_unset("SHED_STATS", stats);
        execv(path, argv);
        _exit(127);
    }
    _exit(fn(arg));
}

/* In the parent: read both pipes as the child writes, until both are at
 * EOF; then NUL-terminate the buffers.  Reading while the child runs (not
 * after the wait) is what lets a child write more than a pipe holds. */
static inline void child_drain(struct child_pipe p[2])
{
    while (p[0].fd >= 0 || p[1].fd >= 0) {
        struct pollfd pf[2] = { { .fd = p[0].fd, .events = POLLIN },
                                { .fd = p[1].fd, .events = POLLIN } };
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (!pf[i].revents)
                continue;
            ssize_t n = read_some(p[i].fd, p[i].buf, p[i].len, &p[i].got);
            if (n == 0 || (n < 0 && errno != EINTR))
                close_fd(&p[i].fd);
        }
    }
    for (int i = 0; i < 2; i++) {
        close_fd(&p[i].fd);       /* after a poll failure: the child gets EPIPE */
        if (p[i].buf)
            p[i].buf[p[i].got] = 0;
    }
}

/*
 * Fork a child; its stdout goes to out and its stderr to err (each
 * NUL-terminated and truncated to len >= 1 bytes; a NULL buffer leaves that
 * stream as it is).  With path set the child execs path with argv, SHED_CONF
 * and SHED_STATS set to conf and stats (unset when NULL): a process in which
 * shed has not started yet.  Otherwise it runs fn(arg) and exits with its
 * return value.  Returns the wait status, or -1.
 */
static inline int child_run(int (*fn)(void *), void *arg, const char *path, char *const argv[],
                            const char *conf, const char *stats, char *out, char *err,
                            size_t len)
{
    struct child_pipe p[2];
    int w[2] = { -1, -1 };
    if (child_pipe_open(&p[0], out, len, &w[0]) != 0)
        return -1;
    if (child_pipe_open(&p[1], err, len, &w[1]) != 0) {
        close_fd(&p[0].fd);
        close_fd(&w[0]);
        return -1;
    }
    fflush(NULL);               /* or the child would write our buffered output too */
    pid_t pid = fork();
    if (pid == 0)
        child_start(p, w, fn, arg, path, argv, conf, stats);
    close_fd(&w[0]);
    close_fd(&w[1]);
    if (pid < 0) {
        close_fd(&p[0].fd);
        close_fd(&p[1].fd);
        return -1;
    }
    child_drain(p);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return status;
}

/* The line after the one at s, or NULL after the last. */
static inline const char *next_line(const char *s)
{
    const char *nl = strchr(s, '\n');
    return nl ? nl + 1 : NULL;
}

/* Lines of text that start with prefix. */
static inline int count_lines(const char *text, const char *prefix)
{
    int n = 0;
    size_t k = strlen(prefix);
    for (const char *s = text; s && *s; s = next_line(s))
        n += strncmp(s, prefix, k) == 0;
    return n;
}

/* The first line of text that starts with prefix, copied to line (without
 * its newline, truncated to len); false if there is none. */
static inline bool find_line(const char *text, const char *prefix, char *line, size_t len)
{
    size_t k = strlen(prefix);
    for (const char *s = text; s && *s; s = next_line(s)) {
        if (strncmp(s, prefix, k) == 0) {
            size_t n = strcspn(s, "\n");
            if (n >= len)
                n = len - 1;
            memcpy(line, s, n);
            line[n] = 0;
            return true;
        }
    }
    return false;
}

/* Is line (without its newline) one of the lines of text? */
static inline bool has_line(const char *text, const char *line)
{
    size_t k = strlen(line);
    for (const char *s = text; s && *s; s = next_line(s))
        if (strcspn(s, "\n") == k && strncmp(s, line, k) == 0)
            return true;
    return false;
}

/* The descriptors of the process that are pidfds: shed must keep none open
 * (a program would see it in /proc/self/fd, as Python's subprocess tests
 * do, or close it under shed and open something else under its number). */
static inline int open_pidfds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[300], link[64];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(path, link, sizeof link - 1);
        if (len > 0) {
            link[len] = 0;
            n += strcmp(link, "anon_inode:[pidfd]") == 0;
        }
    }
    closedir(d);
    return n;
}

#endif

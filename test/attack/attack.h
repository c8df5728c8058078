/*
 * Helpers of the attack tests: run code in a child process and read what it
 * wrote to stderr; fill blocks with a byte and check them.
 */
#ifndef ATTACK_H
#define ATTACK_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shed.h"

/* Built with ASan or TSan: their allocators and RLIMIT_AS do not mix (the
 * shadow memory is address space too), and under ASan shed reports a pool
 * block's requested size as its usable size (only those bytes are
 * unpoisoned). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ATTACK_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define ATTACK_SANITIZED 1
#endif
#endif
#ifndef ATTACK_SANITIZED
#define ATTACK_SANITIZED 0
#endif
#if defined(__SANITIZE_ADDRESS__)
#define ATTACK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ATTACK_ASAN 1
#endif
#endif
#ifndef ATTACK_ASAN
#define ATTACK_ASAN 0
#endif

/* Read fd to its end into buf (NUL-terminated, truncated to len). */
static inline void read_to_end(int fd, char *buf, size_t len)
{
    size_t got = 0;
    char sink[256];
    ssize_t n;
    for (;;) {
        bool room = got < len - 1;
        n = room ? read(fd, buf + got, len - 1 - got) : read(fd, sink, sizeof sink);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (room)
            got += (size_t)n;
    }
    buf[got] = 0;
}

/*
 * Run fn(arg) in a forked child whose stderr goes to *err (len bytes).  The
 * child exits with fn's return value; with exec_mode set it instead runs this
 * program afresh (/proc/self/exe exec_mode), with SHED_CONF=conf when conf is
 * not NULL: a process in which shed has not started yet.  Returns the wait
 * status, or -1.
 */
static inline int run_in_child(int (*fn)(void *), void *arg, const char *exec_mode,
                               const char *conf, char *err, size_t len)
{
    int fd[2];
    if (pipe(fd) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 2);
        close(fd[1]);
        if (exec_mode) {
            if (conf)
                setenv("SHED_CONF", conf, 1);
            else
                unsetenv("SHED_CONF");
            execl("/proc/self/exe", "child", exec_mode, (char *)NULL);
            _exit(127);
        }
        _exit(fn(arg));
    }
    close(fd[1]);
    read_to_end(fd[0], err, len);
    close(fd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return status;
}

static inline int run_child(int (*fn)(void *), void *arg, char *err, size_t len)
{
    return run_in_child(fn, arg, NULL, NULL, err, len);
}

static inline int run_fresh(const char *mode, const char *conf, char *err, size_t len)
{
    return run_in_child(NULL, NULL, mode, conf, err, len);
}

/* Lines of text that start with prefix. */
static inline int count_lines(const char *text, const char *prefix)
{
    int n = 0;
    size_t k = strlen(prefix);
    for (const char *s = text; *s; s += strcspn(s, "\n") + (s[strcspn(s, "\n")] != 0))
        n += strncmp(s, prefix, k) == 0;
    return n;
}

/* Is line (without its newline) one of the lines of text? */
static inline bool has_line(const char *text, const char *line)
{
    size_t k = strlen(line);
    for (const char *s = text; *s; s += strcspn(s, "\n") + (s[strcspn(s, "\n")] != 0))
        if (strcspn(s, "\n") == k && strncmp(s, line, k) == 0)
            return true;
    return false;
}

static inline void fill_byte(void *p, size_t n, unsigned char c)
{
    memset(p, c, n);
}

/* Are the n bytes at p all c? */
static inline bool all_byte(const void *p, size_t n, unsigned char c)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != c)
            return false;
    return true;
}

#endif

/*
 * Helpers of the attack tests: run code in a child process and read what it
 * wrote to stderr (with test/child.h); fill blocks with a byte and check them.
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
#include "child.h"

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

/* Run fn(arg) in a forked child whose stderr goes to err (len bytes); the
 * child exits with fn's return value.  Returns the wait status, or -1. */
static inline int run_child(int (*fn)(void *), void *arg, char *err, size_t len)
{
    return child_run(fn, arg, NULL, NULL, NULL, NULL, NULL, err, len);
}

/* Run this program afresh as "child mode" (the attack programs dispatch on
 * argv[1]), with SHED_CONF=conf (unset when NULL) and SHED_STATS unset: a
 * process in which shed has not started yet.  Its stderr goes to err (len bytes).  Returns
 * the wait status, or -1. */
static inline int run_fresh(const char *mode, const char *conf, char *err, size_t len)
{
    char *argv[] = { (char *)"child", (char *)mode, NULL };
    return child_run(NULL, NULL, "/proc/self/exe", argv, conf, NULL, NULL, err, len);
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

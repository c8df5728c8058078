/*
 * Random numbers and sizes for the tests, without the rest of shed_test.h
 * (test/internal includes shed_impl.h, whose names shed_test.h repeats).
 */
#ifndef SHED_TEST_RAND_H
#define SHED_TEST_RAND_H

#include <stddef.h>
#include <stdint.h>

/* Deterministic random numbers (xorshift64), a state per thread or test. */
static inline uint64_t test_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Python-like sizes: mostly small objects, some up to 512 bytes. */
static inline size_t python_size(uint64_t *rnd)
{
    uint64_t x = test_rand(rnd) % 100;
    if (x < 50)
        return 16 + test_rand(rnd) % 48;
    if (x < 85)
        return 64 + test_rand(rnd) % 128;
    return 192 + test_rand(rnd) % 321;
}

#endif

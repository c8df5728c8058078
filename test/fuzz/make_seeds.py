#!/usr/bin/env python3
"""Writes the seed corpus test/fuzz/corpus/ (the op encoding of fuzz_ops.c)."""
import os

(MALLOC, CALLOC, REALLOC, ALIGNED, FREE, TRIM, HNEW, HMALLOC, HCALLOC, HREALLOC, HDESTROY,
 FREEZE, THAW, THREAD, CONFIG, CHECK) = range(16)


def op(code, slot=0, fill=1, size=None, align=None):
    b = [code, slot, fill] + list(size or ())
    return bytes(b + ([align] if align is not None else []))


def small(v, hi=0):       # 0..511
    return (hi << 4, v)


def large(v):             # 513 + 37 v
    return (13, v)


def huge(v):              # near SIZE_MAX (v >= 240)
    return (15, v)


seeds = {
    'malloc_free': [op(MALLOC, i, i * 3, small(i * 7)) for i in range(20)] +
                   [op(FREE, i) for i in range(20)],
    'calloc_realloc': [op(CALLOC, 1, 5, small(100)), op(REALLOC, 1, 9, small(200, 1)),
                       op(REALLOC, 1, 11, large(50)), op(REALLOC, 1, 13, small(3)),
                       op(REALLOC, 1, 15, huge(241)), op(REALLOC, 1, 1, small(0)), op(CHECK)],
    'aligned': [op(ALIGNED, i, 7, small(i * 11), a)
                for i, a in enumerate([0, 1, 4, 5, 6, 9, 10, 13, 0x85, 0xc4])],
    'heaps': [op(HNEW, 0), op(HNEW, 1), op(HMALLOC, 4, 3, small(40)), op(HMALLOC, 8, 5, large(3)),
              op(HCALLOC, 5, 7, small(90, 1)), op(MALLOC, 2, 9, small(60)),
              op(HREALLOC, 2, 11, small(80)), op(HREALLOC, 9, 13, small(10)),
              op(HDESTROY, 0), op(FREE, 5), op(HDESTROY, 1)],
    'threads': [op(MALLOC, i, 17, small(i * 9)) for i in range(16)] + [op(THREAD, 0, 0)] +
               [op(FREE, i) for i in range(0, 16, 2)] +
               [op(MALLOC, 40 + i, 19, small(i * 5)) for i in range(8)] + [op(THREAD, 0, 0)] +
               [op(FREE, 40 + i) for i in range(8)] + [op(THREAD, 0, 2), op(TRIM)],
    'freeze_trim': [op(CONFIG, 0, 5)] + [op(MALLOC, i, 21, small(48)) for i in range(10)] +
                   [op(FREEZE)] + [op(MALLOC, 20 + i, 23, small(48)) for i in range(10)] +
                   [op(FREE, i) for i in range(10)] +
                   [op(TRIM), op(THAW), op(CONFIG, 0, 1), op(TRIM)],
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus')
os.makedirs(out, exist_ok=True)
for name, ops in seeds.items():
    with open(os.path.join(out, name), 'wb') as f:
        f.write(b''.join(ops))

"""python workload: build a structure of small Python objects, drop most.

Run by bench/run.py with PYTHONMALLOC=malloc under each allocator (and once
with CPython's own pymalloc).  Builds N records of Python-like objects
(strings, tuples, small dicts and lists), keeps a random 5% of them, drops
the rest, then stays idle for WAIT_MS, sampling RSS as frag.c does.
Prints "metric NAME VALUE" lines.  Usage: pyobjs.py [N [WAIT_MS]]
"""
import gc
import os
import random
import sys
import time

PAGE = os.sysconf("SC_PAGESIZE")


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def make(i, rnd, alpha):
    """One record: a mix of the object kinds a Python program is made of."""
    k = i & 3
    j = rnd.randrange(200)
    s = alpha[j:j + 8 + rnd.randrange(120)]
    if k == 0:
        return s
    if k == 1:
        return (i, s)
    if k == 2:
        return {"id": i, "name": s}
    return [i, s, float(i)]


def count(s):
    """Decimal with an optional k or M suffix, as the C workloads take."""
    mult = {"k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6}.get(s[-1:], 0)
    return int(float(s[:-1]) * mult) if mult else int(float(s))


def main():
    n = count(sys.argv[1]) if len(sys.argv) > 1 else 500000
    wait_ms = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    rnd = random.Random(1)
    alpha = "".join(chr(97 + (x * 7) % 26) for x in range(400))
    gc.disable()  # the cyclic collector's passes would dominate the timing
    base = rss()
    t0 = time.perf_counter_ns()
    objs = [make(i, rnd, alpha) for i in range(n)]
    t1 = time.perf_counter_ns()
    peak = rss() - base
    kept = [o for o in objs if rnd.random() < 0.05]
    del objs
    t2 = time.perf_counter_ns()
    at = {}
    for ms in (0, 100, 1000):
        if ms > wait_ms:
            break
        time.sleep(max(0.0, (t2 + ms * 1e6 - time.perf_counter_ns()) / 1e9))
        at[ms] = rss() - base
    # Content check: every kept record still holds what was built.
    for o in kept:
        if isinstance(o, dict):
            assert o["name"] and o["id"] >= 0
        elif isinstance(o, (list, tuple)):
            assert o[1] and o[0] >= 0
        else:
            assert o
    print("metric py_build_ns %.3f" % ((t1 - t0) / n))
    print("metric py_drop_ns %.3f" % ((t2 - t1) / n))
    print("metric py_kept %d" % len(kept))
    print("metric py_peak %d" % peak)
    for ms, v in at.items():
        print("metric py_rss%d %d" % (ms, v))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""CPU time per step of a workload, shed against its peers, on a busy machine.

Usage: bench/cpustep.py ROUNDS STEPS NAME=LIB... -- COMMAND...
  COMMAND holds {} where the step count goes (bench/churn {} 100k); each
  NAME=LIB is preloaded in turn (LIB: a path, or mi, tc, je for mimalloc,
  tcmalloc, jemalloc; glibc for none).  A run's cost is the user+system time
  of COMMAND with STEPS steps minus that with 1 step (set-up and exit cancel
  out), divided by STEPS.  ROUNDS rounds alternate the order; the medians
  are printed, with each one's ratio to the best peer's.

Wall time on a shared 2-core machine counts the time other programs hold the
cores (runs of churn varied 2.5 times in an hour); CPU time does not.  Other
programs still share the caches: absolute figures moved by up to 30% between
runs, so compare only the allocators of one run (docs/performance.md,
section Speed work (2026-12-07)).
"""
import os
import statistics
import subprocess
import sys

LIBDIR = "/usr/lib/x86_64-linux-gnu/"
ALIAS = {"mi": LIBDIR + "libmimalloc.so.2", "tc": LIBDIR + "libtcmalloc_minimal.so.4",
         "je": LIBDIR + "libjemalloc.so.2", "glibc": ""}
PEERS = ("mi", "tc", "je")


def count(s):
    mult = {"k": 1e3, "m": 1e6}.get(s[-1].lower(), 1)
    return float(s[:-1] if mult != 1 else s) * mult


def cpu_seconds(cmd, lib, steps):
    env = dict(os.environ, LD_PRELOAD=ALIAS.get(lib, lib))
    p = subprocess.Popen([c.replace("{}", steps) for c in cmd], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    if status != 0:
        sys.exit("cpustep: %s failed under %s" % (" ".join(cmd), lib))
    return ru.ru_utime + ru.ru_stime


def main():
    if "--" not in sys.argv or len(sys.argv) < 6:
        sys.exit(__doc__)
    sep = sys.argv.index("--")
    rounds, steps = int(sys.argv[1]), sys.argv[2]
    libs = [a.split("=", 1) for a in sys.argv[3:sep]]
    cmd = sys.argv[sep + 1:]
    ns = {}
    for r in range(rounds):
        for name, lib in (libs if r % 2 == 0 else libs[::-1]):
            t = cpu_seconds(cmd, lib, steps) - cpu_seconds(cmd, lib, "1")
            ns.setdefault(name, []).append(t / count(steps) * 1e9)
    med = {n: statistics.median(v) for n, v in ns.items()}
    best = min((v for n, v in med.items() if n in PEERS), default=None)
    print(" ".join(cmd), " ".join(
        "%s %.1f%s" % (n, v, " (%.2fx)" % (v / best) if best else "") for n, v in med.items()))


if __name__ == "__main__":
    main()

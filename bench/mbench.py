#!/usr/bin/env python3
"""Programs of an outside suite (mimalloc-bench's bench/ directory, built
with its own CMakeLists.txt outside this tree) under shed and its peers.

Nothing of that suite is in this repository: build it where you like and
point --dir at the directory holding its binaries (cfrac, espresso, barnes,
larson, alloc-test, xmalloc-test, cache-scratch, cache-thrash, mstress,
rptest, glibc-simple, glibc-thread, malloc-large, mleak).  Each program runs
once per round under every allocator, the order rotated each round; the
medians of CPU time (user + system, from wait4) and peak RSS (GNU time's,
when /usr/bin/time is there) are printed,
and, for the programs that run for a fixed time and print a rate, the
median rate.  CPU time, not wall time: on a shared machine a program waits
for a CPU for as long as others keep it busy.

Usage: bench/mbench.py --dir DIR --lib-so build/libshed.so [--rounds 3]
                       [--only cfrac,espresso] [--threads 2]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import PEER_LIBS, find_lib  # noqa: E402

# name -> (command, the rate it prints or None); {t}: threads, {src}: the
# suite's bench/ sources (input files)
PROGRAMS = {
    "cfrac": ("./cfrac 17545186520507317056371138836327483792789528", None),
    "espresso": ("./espresso {src}/espresso/largest.espresso", None),
    "barnes": ("./barnes < {src}/barnes/input", None),
    "alloc-test1": ("./alloc-test 1", None),
    "alloc-testN": ("./alloc-test {t}", None),
    "glibc-simple": ("./glibc-simple", None),
    "cache-scratchN": ("./cache-scratch {t} 1000 1 2000000 {t}", None),
    "cache-thrashN": ("./cache-thrash {t} 1000 1 2000000 {t}", None),
    "mstressN": ("./mstress {t} 50 25", None),
    "malloc-large": ("./malloc-large", None),
    "mleak10": ("./mleak 5", None),
    # fixed duration: the rate is the measure
    "larsonN": ("./larson 5 8 1000 5000 100 4141 {t}",
                r"Throughput = (\d+)"),
    "xmalloc-testN": ("./xmalloc-test -w {t} -t 5 -s 64",
                      r"free/sec: ([\d.]+)"),
    "glibc-thread": ("./glibc-thread {t}", r"^(\d+) iterations"),
    "rptestN": ("./rptest {t} 0 1 2 500 1000 100 8 16000",
                r"(\d+) memory ops/CPU"),
}


# GNU time reports the program's own peak RSS: wait4's ru_maxrss starts
# from this script's, which a vfork()ed child inherits.
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def run_one(cmd, cwd, preload):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = preload
    argv = ["sh", "-c", cmd]
    if GNU_TIME:
        argv = [GNU_TIME, "-f", "mbench_rss_kib %M"] + argv
    p = subprocess.Popen(argv, cwd=cwd, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.read().decode(errors="replace")
    _, status, ru = os.wait4(p.pid, 0)
    m = re.search(r"^mbench_rss_kib (\d+)$", out, re.M)
    rss = int(m.group(1)) / 1024.0 if m else None
    return status, ru.ru_utime + ru.ru_stime, rss, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True, help="the suite's binaries")
    ap.add_argument("--src", help="the suite's bench/ sources "
                    "(default: DIR/../bench)")
    ap.add_argument("--lib-so", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--only", help="comma-separated subset")
    a = ap.parse_args()
    src = os.path.abspath(a.src or os.path.join(a.dir, "..", "bench"))
    allocs = {"glibc": None, "shed": os.path.abspath(a.lib_so)}
    for name, names in PEER_LIBS.items():
        path = find_lib(names)
        if path:
            allocs[name] = path
        else:
            print("mbench: %s not found, skipped" % name, file=sys.stderr)
    progs = {k: v for k, v in PROGRAMS.items()
             if (not a.only or k in a.only.split(",")) and
             os.path.exists(os.path.join(a.dir, v[0].split()[0]))}
    names = list(allocs)
    print("| program | measure | " + " | ".join(names) + " | shed / best peer |")
    print("|---|---|" + "--:|" * (len(names) + 1))
    failed = False
    for prog, (cmd, rate_re) in progs.items():
        cmd = cmd.format(t=a.threads, src=src)
        res = {n: [] for n in names}
        for r in range(a.rounds):
            for n in names[r % len(names):] + names[:r % len(names)]:
                status, cpu, rss, out = run_one(cmd, a.dir, allocs[n])
                if status != 0:
                    print("mbench: %s under %s failed (status %d): %s" %
                          (prog, n, status, out[-300:]), file=sys.stderr)
                    failed = True
                rate = None
                if rate_re:
                    m = re.search(rate_re, out, re.M)
                    rate = float(m.group(1)) if m else None
                res[n].append((cpu, rss, rate))
        # a rate a run did not print (larson under load, now and then)
        # leaves the median of the others
        med = {n: [statistics.median(got) if (got := [
            x[i] for x in v if x[i] is not None]) else None
            for i in range(3)] for n, v in res.items()}
        rows = [("CPU s", 0, min), ("peak RSS MiB", 1, min)]
        if rate_re:
            rows.insert(0, ("rate (higher is better)", 2, max))
        for label, i, best_of in rows:
            peers = [med[n][i] for n in names if n != "shed" and
                     med[n][i] is not None]
            best = best_of(peers) if peers else None
            ratio = ("%.2fx" % (med["shed"][i] / best)
                     if best and med["shed"][i] is not None else "-")
            print("| %s | %s | %s | %s |" % (
                prog, label,
                " | ".join("%.3g" % med[n][i] if med[n][i] is not None
                           else "-" for n in names), ratio), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

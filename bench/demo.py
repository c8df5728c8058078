#!/usr/bin/env python3
"""The Python story of `make demo`: what the kernel gets back from CPython.

A script builds a few million small objects, keeps one record in a thousand,
drops the rest and calls gc.collect().  It runs three times, each in a fresh
interpreter:

  pymalloc  CPython's own allocator (the default).  It gives memory back
            only when a whole arena empties, so a few survivors keep almost
            everything resident.
  glibc     PYTHONMALLOC=malloc: every object from glibc's malloc.
  shed      PYTHONMALLOC=malloc with LD_PRELOAD=libshed.so: every object of
            up to 512 bytes from shed's one-page pools, each pool given back
            to the kernel once it is empty.

Usage: demo.py LIBSHED_SO [--records N] [--rounds R]
       demo.py --child N       (one run; prints a "result" line)

The configurations are interleaved over R rounds (default 2); the table shows
the best build time of each (the machine may be busy) and the largest RSS.
A run that fails shows as a failed row; the exit status is then 1.
"""
import gc
import os
import signal
import subprocess
import sys
import time

SETTLE_S = 1.0          # wait before the second RSS reading
TIMEOUT_S = 120         # a hung run is killed
RSS_TARGET = 0.25       # shed's target: RSS after the drop <= 25% of pymalloc's
TIME_TARGET = 1.10      # ... with build time within 10% of pymalloc's


def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def child(n):
    """One run: build, drop, measure; print one line for the parent."""
    base = rss_kb()
    t0 = time.perf_counter()
    # A record is 6 objects: a tuple, an int, a str, a float, a list and the
    # list's item array, all between 16 and 100 bytes.
    records = [(i, "item-%d" % i, i * 0.5, [i]) for i in range(n)]
    build_s = time.perf_counter() - t0
    built = rss_kb()

    t0 = time.perf_counter()
    keep = records[::1000]
    del records
    gc.collect()
    drop_s = time.perf_counter() - t0
    after = rss_kb()
    time.sleep(SETTLE_S)
    later = rss_kb()

    for k, (i, s, f, lst) in enumerate(keep):       # the survivors are intact
        j = k * 1000
        if i != j or s != "item-%d" % j or f != j * 0.5 or lst != [j]:
            print("survivor %d damaged: %r" % (j, (i, s, f, lst)), file=sys.stderr)
            return 1
    with open("/proc/self/maps") as f:
        shed = int("libshed" in f.read())
    print("result base=%d built=%d after=%d later=%d build_s=%.4f drop_s=%.4f "
          "survivors=%d shed=%d" % (base, built, after, later, build_s, drop_s,
                                    len(keep), shed))
    return 0


def run(env, n):
    """Run a child; a dict of its results, or {"error": why}."""
    try:
        p = subprocess.run([sys.executable, __file__, "--child", str(n)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": "hung, killed after %d s" % TIMEOUT_S}
    res = {}
    for line in p.stdout.splitlines():
        if line.startswith("result "):
            res = {k: float(v) for k, v in (w.split("=") for w in line.split()[1:])}
    msg = (p.stderr.strip().splitlines() or [""])[0][:120]
    if p.returncode < 0:
        why = signal.Signals(-p.returncode).name
        return {"error": why + (": " + msg if msg else "")}
    if p.returncode != 0 or not res:
        return {"error": "exit status %d" % p.returncode + (": " + msg if msg else "")}
    if msg:
        res["warning"] = msg
    return res


def mib(kb):
    return kb / 1024


def main(argv):
    if len(argv) == 3 and argv[1] == "--child":
        return child(int(argv[2]))
    args = argv[1:]
    n, rounds = 600000, 2
    try:
        while len(args) > 1 and args[-2] in ("--records", "--rounds"):
            if args[-2] == "--records":
                n = int(args[-1])
            else:
                rounds = max(1, int(args[-1]))
            args = args[:-2]
        (lib,) = args
    except ValueError:
        print(__doc__.split("\n\n")[2], file=sys.stderr)
        return 2
    shown, lib = lib, os.path.abspath(lib)     # children may run elsewhere

    plain = {k: v for k, v in os.environ.items()
             if k not in ("PYTHONMALLOC", "LD_PRELOAD")}
    configs = [
        ("pymalloc", "CPython's default allocator", plain),
        ("glibc", "PYTHONMALLOC=malloc", dict(plain, PYTHONMALLOC="malloc")),
        ("shed", "PYTHONMALLOC=malloc LD_PRELOAD=%s" % shown,
         dict(plain, PYTHONMALLOC="malloc", LD_PRELOAD=lib)),
    ]
    print("\nPython %s: %d records of 6 small objects each (%.1f million objects);\n"
          "keep every 1000th record, drop the rest, gc.collect().  Build time: best of\n"
          "%d run(s).  RSS: the interpreter's VmRSS right after the drop and %.0f s later."
          % (sys.version.split()[0], n, n * 6 / 1e6, rounds, SETTLE_S))

    results = {name: [] for name, _, _ in configs}
    for _ in range(rounds):
        for name, _, env in configs:
            results[name].append(run(env, n))

    best = {}
    failed = 0
    print("  " + "; ".join("%s: %s" % (name, how) for name, how, _ in configs[:2]) +
          "\n  shed: %s" % configs[2][1])
    print("  %-8s %8s %10s %12s %10s" %
          ("malloc", "build", "RSS built", "RSS at drop", "RSS +1 s"))
    for name, how, _ in configs:
        good = [r for r in results[name] if "error" not in r]
        bad = [r for r in results[name] if "error" in r]
        if name == "shed":             # a run without shed proves nothing
            for r in good:
                if not r["shed"]:
                    r["error"] = "libshed.so was not loaded" + (
                        ": " + r["warning"] if "warning" in r else "")
            bad += [r for r in good if not r["shed"]]
            good = [r for r in good if r["shed"]]
        if not good:
            failed += 1
            print("  %-8s FAILED: %s" % (name, bad[0]["error"]))
            continue
        r = {"build_s": min(x["build_s"] for x in good),
             "built": max(x["built"] for x in good),
             "after": max(x["after"] for x in good),
             "later": max(x["later"] for x in good)}
        best[name] = r
        print("  %-8s %6.2f s %6.0f MiB %8.0f MiB %6.0f MiB" %
              (name, r["build_s"], mib(r["built"]), mib(r["after"]), mib(r["later"])))
        if bad:
            failed += 1
            print("  %-8s %d of %d runs FAILED: %s" % ("", len(bad), rounds, bad[0]["error"]))
        for x in good:
            if "warning" in x:
                print("  %-8s (said: %s)" % ("", x["warning"]))
                break

    if "pymalloc" in best and "shed" in best:
        p, s = best["pymalloc"], best["shed"]
        rss = s["later"] / p["later"]
        tim = s["build_s"] / p["build_s"]
        print("shed against pymalloc (shed's targets):\n"
              "  RSS 1 s after the drop  %6s of pymalloc's   target at most %-5s  %s\n"
              "  build time              %6s of pymalloc's   target at most %-5s  %s"
              % ("%.0f%%" % (100 * rss), "%.0f%%" % (100 * RSS_TARGET),
                 "met" if rss <= RSS_TARGET else "NOT met",
                 "%.2fx" % tim, "%.2fx" % TIME_TARGET,
                 "met" if tim <= TIME_TARGET else "NOT met"))
        print("pymalloc frees only whole arenas, so the few survivors keep almost all of them;\n"
              "with one-page pools, most pages empty out and shed gives them back.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

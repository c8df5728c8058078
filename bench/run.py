#!/usr/bin/env python3
"""Run every benchmark workload under every allocator, in one run.

Each allocator is the same workload binary with a different LD_PRELOAD
(glibc: none), so the programs are identical.  Within each repeat the
allocators are interleaved (and their order rotated) so that machine noise
spreads over all of them.  Timings are medians over the repeats.

Writes to the results directory: latest.csv (every measurement),
latest-summary.csv (medians, with min and max), latest-rss.csv (RSS time series of the frag
workloads), latest.md (the tables, with the command and date), rss.svg and
time.svg (gnuplot).  A QUICK run writes to results/quick/ instead, so it
never replaces the full results.

The threaded and real-program workloads (larson, larson-wide, xmalloc, scratch and the
real programs of bench/programs.py) run under the peers and shed-batched
only, and get tables of their own: throughput (higher is better) and the
programs' times with their geometric mean per allocator.

The pre-fork server (bench/prefork/measure.py: gunicorn with 4 workers under
pymalloc, the peers and shed) runs last, --prefork-repeats times (1; 0 skips
it), and its table (prefork.md) ends latest.md and the README's summary; it
is skipped, with one line, when gunicorn is missing.  make bench-prefork
runs it alone with three repeats.

Usage: bench/run.py --bin build/bench --lib-so build/libshed.so [--quick]
       bench/run.py --readme README.md --readme-from bench/results/latest.md
The README shows a summary of latest.md (readme_summary), between its
markers; the second form rewrites it from the last run without running.
"""
import argparse
import csv
import datetime
import glob
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import programs

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = ["glibc", "jemalloc", "mimalloc", "tcmalloc"]
SHED_MODES = ["off", "inline", "batched"]
SHORT_RUNS = ["churn", "burst"]     # run 4 * repeats - 1 times (see main)

# Shared-library names of the peers, best first; found by a path search.
PEER_LIBS = {
    "jemalloc": ["libjemalloc.so.2", "libjemalloc.so"],
    "mimalloc": ["libmimalloc.so.2", "libmimalloc.so"],
    "tcmalloc": ["libtcmalloc_minimal.so.4", "libtcmalloc.so.4",
                 "libtcmalloc_minimal.so", "libtcmalloc.so"],
}

# Sizes: (full, quick).  Full sizes are those the targets were set for
# (shed's targets: see targets() and docs/performance.md).
SIZES = {
    "churn": (["5M", "100k"], ["1M", "100k"]),
    "burst": (["500k", "3"], ["500k", "1"]),
    "threads": (["2M", "100k", "1M"], ["500k", "100k", "300k"]),
    "frag": (["2M", "1000"], ["500k", "1000"]),
    "python": (["500k", "1000"], ["100k", "1000"]),
    "reuse": (["2M", "100k"], ["500k", "100k"]),
    "threxit": (["10M", "2000"], ["1M", "500"]),
    "forkcost": (["300", "200k"], ["100", "200k"]),
    # process start (bench/procstart.sh): loop iterations, or files for git
    "proc-true": (["1000"], ["200"]),
    "proc-shell": (["400"], ["100"]),
    "proc-git": (["2000"], ["300"]),
    "larson": (["10M", "1000", "10000", "16-512"],
               ["2M", "1000", "10000", "16-512"]),
    "larson-wide": (["10M", "1000", "10000", "8-1000"],
                    ["2M", "1000", "10000", "8-1000"]),
    "xmalloc": (["5M", "64"], ["1M", "64"]),
    "scratch": (["2", "1000", "8", "50000"], ["2", "1000", "8", "10000"]),
    # medium blocks (513 B-32 KiB, shed's spans): churn and frag over that
    # range, and a wide mix (16 B-32 KiB) over 4 threads
    "mchurn": (["2M", "2000", "513-32768"], ["300k", "2000", "513-32768"]),
    "mfrag": (["20000", "1000", "513-32768"], ["5000", "1000", "513-32768"]),
    "wide": (["500k", "2000", "4"], ["100k", "2000", "4"]),
}
# The threaded and real-program workloads: short multi-threaded programs, run 2 * repeats + 1
# times, and the real programs (bench/programs.py), prog-NAME.  They run
# under the peers and NEW_SHED only.
THREADED = ["larson", "larson-wide", "xmalloc", "scratch"]
PROGS = ["prog-" + p for p in programs.PROGRAMS]
NEW_SHED = "shed-batched"
# The programs' tables and targets are in CPU time (user + system), steadier
# than wall time on a shared machine; wall time is in latest.csv (prog_s)
# and has a geometric mean of its own.
PROG_METRIC = "prog_cpu_s"
# Throughput metrics: (key, workload, label), higher is better.
THROUGHPUTS = [
    ("larson_16_512_mops", "larson",
     "larson-style server, 16-512 B, M pairs/s"),
    ("larson_8_1000_mops", "larson-wide",
     "larson-style server, 8-1000 B, M pairs/s"),
    ("xmalloc_mops", "xmalloc", "xmalloc-style, 2+2 threads, M blocks/s"),
]

# Timing metrics: (key, workload, label) in table order.
TIMINGS = [
    ("churn_ns", "churn", "churn, ns/step"),
    ("burst_lifo_ns", "burst", "burst LIFO, ns/pair"),
    ("burst_fifo_ns", "burst", "burst FIFO, ns/pair"),
    ("threads_churn2_ns", "threads", "2 threads churn, ns/step"),
    ("threads_prodcons_ns", "threads", "producer->consumer, ns/block"),
    ("threxit_us", "threxit", "thread start+join, us/thread"),
    ("fork_us", "forkcost", "fork(), 200k live blocks, us"),
    ("fork_round_us", "forkcost", "churn+fork+wait round, us"),
    ("frag_alloc_ns", "frag-random", "frag-random alloc, ns/block"),
    ("scratch_ms", "scratch", "cache-scratch, 2 threads, ms"),
    # process start: sizes in SIZES (1000 and 400 loops, 2000 files)
    ("proc_true_ms", "proc-true", "sh loop of /bin/true, ms"),
    ("proc_shell_ms", "proc-shell", "sh loop of subshell, sed, grep, expr, ms"),
    ("proc_git_ms", "proc-git", "git add, commit, gc, fsck, clone, ms"),
    ("churn_ns", "mchurn", "medium churn 513 B-32 KiB, ns/step"),
    ("frag_alloc_ns", "mfrag-sparse", "medium frag alloc, ns/block"),
    ("wide_ns", "wide", "wide mix 16 B-32 KiB, 4 threads, ns/step"),
]
# Process start (bench/procstart.sh): every process of the run preloaded.
PROC_STARTS = ["proc-true", "proc-shell", "proc-git"]
FRAGS = ["frag-random", "frag-sparse", "frag-phase"]
MFRAGS = ["mfrag-sparse", "mfrag-phase"]     # frag over medium sizes
# One colour per allocator in every plot.
COLOURS = {"glibc": "#9400d3", "jemalloc": "#009e73", "mimalloc": "#56b4e9",
           "tcmalloc": "#e69f00", "shed-off": "#bbbbbb",
           "shed-inline": "#0072b2", "shed-batched": "#e51e10"}
RELEASE_ADVICE = ("MADV_DONTNEED", "MADV_FREE", "MADV_REMOVE", "MADV_PAGEOUT",
                  "MADV_COLD")


def log(msg):
    print(msg, flush=True)


def find_lib(names):
    """Path of the first of names the dynamic linker or a lib dir knows."""
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True,
                             text=True).stdout
    except OSError:
        out = ""
    dirs = (glob.glob("/usr/lib/*-linux-*") + glob.glob("/lib/*-linux-*") +
            ["/usr/lib64", "/usr/lib", "/lib64", "/lib", "/usr/local/lib"] +
            glob.glob("/usr/local/lib/*-linux-*"))
    for name in names:
        m = re.search(r"^\s*%s \(.*\) => (\S+)$" % re.escape(name), out, re.M)
        if m and os.path.exists(m.group(1)):
            return m.group(1)
        for d in dirs:
            p = os.path.join(d, name)
            if os.path.exists(p):
                return p
    return None


class Alloc:
    def __init__(self, name, preload=None, env=None):
        self.name, self.preload, self.env = name, preload, env or {}

    def environ(self, extra=None):
        e = dict(os.environ)
        e.pop("LD_PRELOAD", None)
        e.pop("SHED_CONF", None)
        e.pop("SHED_STATS", None)
        e.pop("PYTHONMALLOC", None)
        if self.preload:
            e["LD_PRELOAD"] = self.preload
        e.update(self.env)
        e.update(extra or {})
        return e


def allocators(args, probe):
    found = [Alloc("glibc")]
    for peer in PEERS[1:]:
        lib = find_lib(PEER_LIBS[peer])
        if not lib:
            log("bench: skipping %s: none of %s found (install its Debian "
                "package)" % (peer, ", ".join(PEER_LIBS[peer])))
            continue
        found.append(Alloc(peer, lib))
    so = os.path.abspath(args.lib_so)
    if not os.path.exists(so):
        log("bench: skipping shed: %s not built" % so)
    else:
        for mode in SHED_MODES:
            found.append(Alloc("shed-" + mode, so,
                               {"SHED_CONF": "release=" + mode}))
    ok = []
    for a in found:
        # ld.so only warns when a preload fails; check it really loaded.
        r = subprocess.run([probe, "1000", "100"], env=a.environ(),
                           capture_output=True, text=True)
        if r.returncode != 0 or "cannot be preloaded" in r.stderr:
            log("bench: skipping %s: it does not run (%s)" %
                (a.name, r.stderr.strip().splitlines()[:1]))
            continue
        ok.append(a)
    if args.allocators:
        want = args.allocators.split(",")
        ok = [a for a in ok if a.name in want]
    return ok


def parse(out):
    metrics, rss = {}, []
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and f[0] == "metric":
            metrics[f[1]] = float(f[2])
        elif len(f) == 3 and f[0] == "rss":
            rss.append((float(f[1]), float(f[2])))
    return metrics, rss


def command(work, args):
    """argv of one workload."""
    quick = 1 if args.quick else 0
    b = os.path.abspath(args.bin)
    if work.startswith("frag-"):
        return [os.path.join(b, "frag"), work[5:]] + SIZES["frag"][quick]
    if work.startswith("mfrag-"):
        return [os.path.join(b, "frag"), work[6:]] + SIZES["mfrag"][quick]
    if work == "mchurn":
        return [os.path.join(b, "churn")] + SIZES["mchurn"][quick]
    if work == "python":
        return [args.python, os.path.join(HERE, "pyobjs.py")] + \
            SIZES["python"][quick]
    if work == "larson-wide":
        return [os.path.join(b, "larson")] + SIZES[work][quick]
    if work in PROC_STARTS:
        return ["sh", os.path.join(HERE, "procstart.sh"), work[5:]] + \
            SIZES[work][quick]
    return [os.path.join(b, work)] + SIZES[work][quick]


def run_one(work, alloc, args):
    extra = {}
    if work.startswith("prog-"):
        name = work[5:]
        if name in programs.PYTHON_PROGRAMS and alloc.name != "pymalloc":
            extra["PYTHONMALLOC"] = "malloc"
        env = alloc.environ(extra)
        if name == "redis" and alloc.name == "glibc" and args.libc:
            # Debian's redis-server is linked with libjemalloc: glibc's
            # malloc is the one it calls only when libc comes first.
            env["LD_PRELOAD"] = args.libc
        wall, cpu = args.programs.run(name, env)
        return {"prog_s": wall, PROG_METRIC: cpu}, []
    if work == "python":
        # pymalloc is measured as its own row, with glibc underneath.
        if alloc.name != "pymalloc":
            extra["PYTHONMALLOC"] = "malloc"
    r = subprocess.run(command(work, args), env=alloc.environ(extra),
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("%s under %s failed (exit %d): %s" %
                           (work, alloc.name, r.returncode, r.stderr.strip()))
    return parse(r.stdout)


def count_syscalls(work, alloc, args):
    """Release syscalls of one traced run: (main thread, other threads).

    The traced workloads are single-threaded, so the main thread is the
    program's own and any other thread is the allocator's."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "trace")
        envs = []
        for k, v in alloc.environ().items():
            if k in ("LD_PRELOAD", "SHED_CONF"):
                envs += ["-E", "%s=%s" % (k, v)]  # the tracee's, not strace's
        cmd = (["strace", "-f", "--seccomp-bpf", "-qq", "-o", out, "-e",
                "trace=execve,madvise,process_madvise,io_uring_enter"] + envs +
               command(work, args))
        env = alloc.environ()
        env.pop("LD_PRELOAD", None)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True,
                           timeout=300)
        if r.returncode != 0:
            raise RuntimeError("strace of %s under %s failed: %s" %
                               (work, alloc.name, r.stderr.strip()[-300:]))
        main_tid, mine, other = None, 0, 0
        with open(out) as f:
            for line in f:
                m = re.match(r"(\d+)\s+(\w+)\((.*)", line)
                if not m:
                    continue
                tid, call, rest = m.groups()
                if call == "execve":  # the first line: the main thread
                    main_tid = main_tid or tid
                    continue
                if call == "madvise" or call == "process_madvise":
                    if not any(a in rest for a in RELEASE_ADVICE):
                        continue
                if tid == main_tid:
                    mine += 1
                else:
                    other += 1
        return mine, other


def commit():
    """ ", commit abc1234" (with "+" if the tree has changes), or nothing."""
    try:
        git = lambda *a: subprocess.run(["git", "-C", HERE] + list(a),
                                        capture_output=True, text=True)
        h = git("rev-parse", "--short", "HEAD").stdout.strip()
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout
    except OSError:
        return ""
    return ", commit %s%s" % (h, "+" if dirty.strip() else "") if h else ""


def fmt(v, unit=""):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return "%.0f%s" % (v, unit)
    if abs(v) >= 10:
        return "%.1f%s" % (v, unit)
    return "%.2f%s" % (v, unit)


def mib(v):
    return None if v is None else v / 1048576.0


def table(header, rows, text_cols=1):
    """Markdown table; also readable as plain text on stdout.  The first
    text_cols columns are left-aligned, the numbers right-aligned."""
    w = [max(len(str(r[i])) for r in [header] + rows)
         for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w[i]) if i < text_cols
                                       else str(c).rjust(w[i])
                                       for i, c in enumerate(r)) + " |"
    sep = "|" + "|".join("-" * (w[i] + 1) + ("-" if i < text_cols else ":")
                         for i in range(len(header))) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="build/bench")
    ap.add_argument("--lib-so", default="build/libshed.so")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--out")
    ap.add_argument("--allocators", help="comma-separated subset")
    ap.add_argument("--workloads", help="comma-separated subset")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--readme", help="README to update between "
                    "<!-- bench:begin --> and <!-- bench:end -->")
    ap.add_argument("--shed-run", default="build/shed-run",
                    help="shed-run(1), for the pre-fork server's shed rows")
    ap.add_argument("--prefork-repeats", type=int, default=1,
                    help="repeats of the pre-fork server, run last "
                    "(bench/prefork/measure.py; 0: not run, latest.md keeps "
                    "its last prefork.md)")
    ap.add_argument("--readme-from", metavar="LATEST_MD",
                    help="run nothing: rewrite --readme's block from this "
                    "latest.md (after a merge, or a change to the summary)")
    args = ap.parse_args()
    if args.readme_from:
        with open(args.readme_from) as f:
            update_readme(args.readme or "README.md", f.read(),
                          os.path.dirname(os.path.abspath(args.readme_from)))
        return
    # Inputs of the real programs (a copy of the standard library, redis's
    # socket); removed at exit.
    tmp = tempfile.TemporaryDirectory(prefix="shed-bench-")
    args.tmp = tmp.name
    repeats = args.repeats = args.repeats or 3
    out_dir = args.out or os.path.join(HERE, "results",
                                       "quick" if args.quick else "")
    os.makedirs(out_dir, exist_ok=True)
    started = time.time()
    # Name the command that made the tables as the user typed it.
    cmdline = ("make bench" + (" QUICK=1" if args.quick else "")
               if os.environ.get("MAKELEVEL") else
               " ".join(["bench/run.py"] + sys.argv[1:]))

    allocs = allocators(args, os.path.join(os.path.abspath(args.bin), "churn"))
    names = [a.name for a in allocs]
    peers = [n for n in names if n in PEERS]
    timed = ["churn", "burst", "threads", "threxit", "forkcost", "mchurn",
             "wide"] + PROC_STARTS
    frags = FRAGS + MFRAGS
    works = args.workloads.split(",") if args.workloads else \
        timed + frags + ["python", "reuse"] + THREADED + PROGS
    if "proc-git" in works and not shutil.which("git"):
        log("bench: git not found: the git workload is skipped")
        works.remove("proc-git")
    for w in [w for w in works if w.startswith("prog-")]:
        miss = programs.missing_tools(w[5:])
        if miss:
            log("bench: skipping %s: install %s" % (w, " ".join(miss)))
            works.remove(w)
    new_allocs = [a for a in allocs if a.name in PEERS + [NEW_SHED]]
    args.libc = find_lib(["libc.so.6"])
    args.programs = programs.Programs(args.tmp, args.quick, args.python)
    # frag figures are RSS, not timings: one run each in QUICK mode.
    frag_repeats = 1 if args.quick else repeats
    # churn and burst take a fraction of a second a run: many more runs make
    # their medians hold on a shared machine.
    short_repeats = 4 * repeats - 1
    py_allocs = allocs + [Alloc("pymalloc")]

    plan = []
    for rep in range(max(repeats, short_repeats, 2 * repeats + 1)):
        for w in works:
            runs = short_repeats if w in SHORT_RUNS else \
                2 * repeats + 1 if w in THREADED else repeats
            if rep >= runs:
                continue
            if w in frags and rep >= frag_repeats:
                continue
            if w == "python" and rep >= frag_repeats:
                continue
            if w == "reuse" and rep > 0:      # no timing: one run says it all
                continue
            if w == "python":
                al = py_allocs
            elif w in THREADED:
                al = new_allocs
            elif w in PROGS:
                al = new_allocs + ([Alloc("pymalloc")] if w[5:] in
                                   programs.PYTHON_PROGRAMS else [])
            else:
                al = allocs
            k = rep % len(al)
            for a in al[k:] + al[:k]:  # rotate the order every repeat
                plan.append((rep, w, a))
    strace = shutil.which("strace")
    traced = []
    if strace and "shed-batched" in names:
        tw = ["burst", "frag-sparse"] if args.quick else \
            ["churn", "burst", "frag-sparse"]
        ta = [a for a in allocs if a.name.startswith("shed")] \
            if args.quick else allocs
        traced = [(w, a) for w in tw if w in works for a in ta]
    elif not strace:
        log("bench: strace not found: release syscalls are not counted")
    total = len(plan) + len(traced)
    log("bench: %d allocators (%s), %d repeats, %d steps" %
        (len(allocs), ", ".join(names), repeats, total))

    raw = []          # (workload, allocator, repeat, metric, value)
    rss = {}          # (workload, allocator) -> [(t_ms, heap)] of repeat 0
    step = 0
    for rep, w, a in plan:
        step += 1
        t0 = time.time()
        metrics, series = run_one(w, a, args)
        for k, v in metrics.items():
            raw.append((w, a.name, rep, k, v))
        if series and (w, a.name) not in rss:
            rss[(w, a.name)] = series
        key = {"churn": "churn_ns", "burst": "burst_lifo_ns",
               "threads": "threads_churn2_ns", "python": "py_build_ns",
               "threxit": "threxit_us", "forkcost": "fork_us",
               "reuse": "reuse_median_below", "larson": "larson_16_512_mops",
               "larson-wide": "larson_8_1000_mops", "xmalloc": "xmalloc_mops",
               "scratch": "scratch_ms", "mchurn": "churn_ns",
               "wide": "wide_ns"}.get(
                   w, PROG_METRIC if w in PROGS else
                   "proc_%s_ms" % w[5:] if w in PROC_STARTS else "frag_ratio1000")
        log("[%3d/%d] %-11s %-12s rep %d  %s=%s  (%.1f s)" %
            (step, total, w, a.name, rep + 1, key, fmt(metrics.get(key)),
             time.time() - t0))
    sysc = {}
    for w, a in traced:
        step += 1
        t0 = time.time()
        sysc[(w, a.name)] = count_syscalls(w, a, args)
        log("[%3d/%d] strace %-11s %-12s release syscalls main/other = "
            "%d/%d  (%.1f s)" % ((step, total, w, a.name) + sysc[(w, a.name)]
                                 + (time.time() - t0,)))

    def med(w, a, k):
        v = [x[4] for x in raw if x[0] == w and x[1] == a and x[3] == k]
        return statistics.median(v) if v else None

    def fastest(w, a, k):
        v = [x[4] for x in raw if x[0] == w and x[1] == a and x[3] == k]
        return min(v) if v else None

    # ---- tables
    date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    md = ["Made by `%s` on %s%s (%s, %s, Linux %s, %d CPUs); %d repeats "
          "(%d of %s, %d of %s), medians." % (
              cmdline, date, commit(), platform.node() or "host",
              platform.machine(), platform.release(), os.cpu_count() or 0,
              repeats, short_repeats, " and ".join(SHORT_RUNS),
              2 * repeats + 1, ", ".join(THREADED)), ""]
    trows = []
    for k, w, label in TIMINGS:
        if w in works:
            trows.append(ratio_row(label, {n: med(w, n, k) for n in names},
                                   names, peers, min))
    if trows:
        md += ["Time per operation (median; in brackets, the ratio to the "
               "best peer among %s; lower is better):" % ", ".join(peers), "",
               table(["workload"] + names, trows), ""]

    mrows = []
    for w in frags:
        if w not in works:
            continue
        for n in names:
            g = lambda k: med(w, n, k)
            b = g("frag_bound")
            r1 = g("frag_rss1000")
            mrows.append([w, n, fmt(mib(g("frag_peak"))),
                          fmt(mib(g("frag_rss0"))), fmt(mib(g("frag_rss100"))),
                          fmt(mib(r1)), fmt(mib(b)),
                          fmt(r1 / b) + "x" if b and r1 is not None else "-"])
    if mrows:
        md += ["Memory after the drop (heap RSS in MiB: process RSS minus the "
               "RSS before the first allocation and the workload's own "
               "arrays; bound = distinct pages holding a kept block):", "",
               table(["workload", "allocator", "peak", "+0 ms", "+100 ms",
                      "+1000 ms", "bound", "1 s / bound"], mrows, 2), ""]

    if "wide" in works:
        vals = {n: med("wide", n, "wide_peak") for n in names}
        best = min([vals[p] for p in peers if vals[p]] or [None])
        md += ["Peak RSS of the wide mix (bench/wide %s: VmHWM in MiB; in "
               "brackets, the ratio to the best peer):" %
               " ".join(SIZES["wide"][1 if args.quick else 0]), "",
               table(["wide mix"] + names,
                     [["peak RSS"] + ["-" if vals[n] is None else
                                      fmt(mib(vals[n])) +
                                      (" (%.2fx)" % (vals[n] / best)
                                       if best else "") for n in names]]),
               ""]

    if "python" in works:
        prow = []
        for a in py_allocs:
            g = lambda k: med("python", a.name, k)
            label = "pymalloc (default)" if a.name == "pymalloc" else \
                "malloc: " + a.name
            prow.append([label, fmt(g("py_build_ns")), fmt(g("py_drop_ns")),
                         fmt(mib(g("py_peak"))), fmt(mib(g("py_rss0"))),
                         fmt(mib(g("py_rss1000")))])
        md += ["CPython %s building %s records (str, tuple, dict, list) and "
               "keeping a random 5%% (PYTHONMALLOC=malloc under each "
               "allocator; heap RSS in MiB):" % (
                   platform.python_version(),
                   SIZES["python"][1 if args.quick else 0][0]), "",
               table(["python", "build ns/obj", "drop ns/obj", "peak",
                      "+0 ms", "+1000 ms"], prow), ""]

    if "reuse" in works:
        rrow = []
        for n in names:
            g = lambda k: med("reuse", n, k)
            rrow.append([n, fmt(g("reuse_median_below"))] +
                        ["%.0f%%" % (100 * g("reuse_within_1e%d" % k))
                         if g("reuse_within_1e%d" % k) is not None else "-"
                         for k in range(1, 6)])
        md += ["Reuse distance under churn (bench/reuse, %s steps, %s live "
               "blocks): how many steps after its free a block is handed out "
               "again; the median (as the power of ten it is below) and the "
               "share of new blocks that had been freed fewer than 10, 100, "
               "... steps before.  The sooner, the likelier its cache lines are "
               "still cached when the caller writes it:" %
               tuple(SIZES["reuse"][1 if args.quick else 0]), "",
               table(["allocator", "median below", "10", "100", "1000",
                      "10^4", "10^5"], rrow), ""]

    if sysc:
        srow = []
        tws = sorted({w for w, _ in sysc})
        for n in names:
            if any((w, n) in sysc for w in tws):
                srow.append([n] + ["%d / %d" % sysc[(w, n)] if (w, n) in sysc
                                   else "-" for w in tws])
        md += ["Release syscalls (madvise with a releasing advice, "
               "process_madvise, io_uring_enter), counted with strace -f on "
               "one run: the program's thread / the allocator's other threads. "
               "(The workloads are single-threaded: in batched mode every "
               "one of shed's calls is made by its release thread.)",
               "",
               table(["allocator"] + tws, srow), ""]

    md += new_tables(names, peers, med, works, args)
    md += targets(names, peers, med, fastest, works)
    md += extras(args)
    md.append("![RSS through the frag workloads](rss.svg)")
    md.append("![time per operation](time.svg)")
    if relative_rows(names, med, works):
        md.append("![the threaded and real-program workloads against the best peer](new.svg)")
    run_prefork(args, out_dir, cmdline)
    md += [""] + prefork(out_dir)
    text = "\n".join(md) + "\n"
    log("")
    log(text)

    # ---- files
    with open(os.path.join(out_dir, "latest.csv"), "w", newline="") as f:
        c = csv.writer(f)
        c.writerow(["workload", "allocator", "repeat", "metric", "value"])
        c.writerows(raw)
    with open(os.path.join(out_dir, "latest-summary.csv"), "w",
              newline="") as f:
        c = csv.writer(f)
        # min and max: how noisy each median is
        c.writerow(["workload", "allocator", "metric", "median", "runs",
                    "min", "max"])
        for key in sorted({(x[0], x[1], x[3]) for x in raw}):
            v = [x[4] for x in raw if (x[0], x[1], x[3]) == key]
            c.writerow(list(key) + [statistics.median(v), len(v), min(v),
                                    max(v)])
        for (w, n), (mine, other) in sorted(sysc.items()):
            c.writerow([w, n, "release_syscalls_main", mine, 1, mine, mine])
            c.writerow([w, n, "release_syscalls_other", other, 1, other,
                        other])
    with open(os.path.join(out_dir, "latest-rss.csv"), "w", newline="") as f:
        c = csv.writer(f)
        c.writerow(["workload", "allocator", "ms_since_drop", "heap_bytes"])
        for (w, n), s in sorted(rss.items()):
            c.writerows([w, n, t, h] for t, h in s)
    with open(os.path.join(out_dir, "latest.md"), "w") as f:
        f.write(text)
    plot(out_dir, names, rss, med, works)
    if args.readme and not args.quick:
        update_readme(args.readme, text, out_dir)
    log("bench: results in %s (%.0f s)" % (out_dir, time.time() - started))


def extras(args):
    """The two workloads with programs of their own: the release cost per
    backend (shed only: the peers have no backends) and the forking server
    (every allocator, by bench/fork.sh).  Their tables go in as printed."""
    b = os.path.abspath(args.bin)
    runs = [("Release cost per backend (bench/release_cost: every other page "
             "of a region freed, a second thread running)",
             [os.path.join(b, "release_cost")] +
             (["8192", "1"] if args.quick else ["65536", "3"])),
            ("Forking server (bench/fork.sh: the parent allocates small blocks "
             "and forks 4 children; mean child Private_Dirty and Pss)",
             ["sh", os.path.join(HERE, "fork.sh"), os.path.join(b, "fork"),
              os.path.abspath(args.lib_so)] +
             (["20", "2", "200000", "20000"] if args.quick else []))]
    md = []
    for title, cmd in runs:
        prog = cmd[0] if cmd[0] != "sh" else cmd[2]
        if not os.path.exists(prog):
            log("bench: %s skipped (not built)" % prog)
            continue
        log("bench: " + " ".join(cmd))
        try:
            out = subprocess.run(cmd, capture_output=True, text=True,
                                 timeout=300).stdout
        except subprocess.TimeoutExpired:
            out = "timed out\n"
        md += [title + ":", "", "```", out.rstrip(), "```", ""]
    return md


def ratio_row(label, vals, cols, peers, best_of):
    """A table row: each value of vals (None: "-") with, in brackets, its
    ratio to the best peer's (best_of: min for times, max for rates)."""
    best = best_of([vals[p] for p in peers if vals.get(p) is not None] or
                   [0])
    return [label] + ["-" if vals[n] is None else fmt(vals[n]) + (
        " (%.2fx)" % (vals[n] / best) if best else "") for n in cols]


def geomean(vals):
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def new_tables(names, peers, med, works, args):
    """The tables of the threaded and real-program workloads: the threaded workloads' throughput and the real
    programs' times, under the peers and NEW_SHED."""
    cols = [n for n in names if n in peers + [NEW_SHED]]
    md = []
    rows = []
    for k, w, label in THROUGHPUTS:
        if w in works:
            rows.append(ratio_row(label, {n: med(w, n, k) for n in cols},
                                  cols, peers, max))
    if rows:
        md += ["Throughput of the threaded workloads (median of %d "
               "runs; in brackets, the ratio to the best peer; higher is "
               "better; cache-scratch is in the time table above):" %
               (2 * args.repeats + 1), "", table(["workload"] + cols, rows),
               ""]
    if "scratch" in works:
        md += ["cache-scratch: workers given, at their first malloc, a block "
               "on a 64-byte line that the other worker's block touches "
               "(false sharing; a machine whose two CPUs share one core's "
               "cache does not show it in the time): " + ", ".join(
                   "%s %s" % (n, fmt(med("scratch", n, "scratch_shared")))
                   for n in cols) + ".", ""]
    progs = [w for w in PROGS if w in works]
    if not progs:
        return md
    pcols = cols + ["pymalloc"]
    rows = []
    for w in progs:
        rows.append(ratio_row(PROG_LABELS[w[5:]],
                              {n: med(w, n, PROG_METRIC) for n in pcols},
                              pcols, peers, min))
    # The geometric means over the programs every allocator ran.
    full = [w for w in progs if all(med(w, n, PROG_METRIC) for n in cols)]
    for k, label in ((PROG_METRIC, "geometric mean"),
                     ("prog_s", "geometric mean, wall time")):
        if full:
            g = {n: geomean([med(w, n, k) for w in full]) for n in cols}
            best = min(g[p] for p in peers if p in g)
            rows.append([label] + ["%.3f (%.2fx)" % (g[n], g[n] / best)
                                   for n in cols] + ["-"])
    md += ["Real programs, the allocator preloaded (bench/programs.py; CPU "
           "seconds, user + system, of the preloaded process (redis: the "
           "server's), median of %d runs; in brackets, the ratio to the best "
           "peer; lower is better; the Python programs run with "
           "PYTHONMALLOC=malloc, except under pymalloc, CPython's own, with "
           "glibc beneath; the last row is the geometric mean of the wall "
           "times, which also count waiting for a CPU):" % args.repeats, "",
           table(["program"] + pcols, rows), ""]
    return md


PROG_LABELS = {
    "compileall": "python3 -m compileall -f -q, the stdlib",
    "json": "python3 json dump+load round trip",
    "sqlite": "sqlite3: build, index, update, delete rows",
    "redis": "redis-server: SET/GET/LPUSH/LPOP, -P 16",
}


def targets(names, peers, med, fastest, works):
    """shed's targets, checked against this run's numbers: one second after
    the drop, frag-sparse and frag-phase (and their medium-size versions)
    within 1.10x of the survivors' bound (and every peer above 2x, or the
    workload shows nothing); churn, bursts, medium churn, and the wide mix's
    time and peak RSS at or below the best peer.  A speed
    target is met when shed is at or below the best peer both in the median
    and in the fastest run: on a shared machine a peer's median can be
    inflated by neighbours that the fastest run escaped."""
    s = "shed-batched"
    if s not in names or not peers:
        return []
    out = ["Targets (shed with release=batched):", ""]
    for w in ("frag-sparse", "frag-phase") + tuple(MFRAGS):
        if w not in works:
            continue
        r = lambda n: (med(w, n, "frag_rss1000") or 0) / \
            (med(w, n, "frag_bound") or 1)
        worst_peer = min(r(p) for p in peers)
        out.append("- %s: shed at %.2fx the bound one second after the drop "
                   "(target: within 1.10x): %s; every peer above 2x (lowest: "
                   "%.1fx): %s." % (w, r(s), "met" if r(s) <= 1.10 else
                                    "MISSED", worst_peer,
                                    "yes" if worst_peer > 2 else "no"))
    for w, k, label in (("churn", "churn_ns", "churn"),
                        ("burst", "burst_lifo_ns", "burst LIFO"),
                        ("burst", "burst_fifo_ns", "burst FIFO"),
                        ("mchurn", "churn_ns", "medium churn"),
                        ("wide", "wide_ns", "wide mix time"),
                        ("wide", "wide_peak", "wide mix peak RSS")):
        if w not in works:
            continue
        v = med(w, s, k)
        vals = {p: med(w, p, k) for p in peers if med(w, p, k) is not None}
        if v is None or not vals:
            continue
        bp = min(vals, key=vals.get)
        best = vals[bp]
        fast = {p: fastest(w, p, k) for p in vals}
        fp = min(fast, key=fast.get)
        fs = fastest(w, s, k)
        # peak RSS in MiB (the fastest run: the lowest), timings in ns
        unit, sc = (" MiB", 1 / 1048576.0) if k.endswith("_peak") else \
            (" ns", 1.0)
        out.append("- %s: median shed %.1f%s, best peer %s %.1f%s; %s run "
                   "shed %.1f%s, best peer %s %.1f%s (target: at or below, "
                   "in both): %s." %
                   (label, v * sc, unit, bp, best * sc, unit,
                    "lowest" if unit == " MiB" else "fastest", fs * sc, unit,
                    fp, fast[fp] * sc, unit,
                    "met" if v <= best and fs <= fast[fp] else "MISSED"))
    for k, w, label in THROUGHPUTS:
        v = med(w, s, k) if w in works else None
        vals = {p: med(w, p, k) for p in peers} if v else {}
        vals = {p: x for p, x in vals.items() if x is not None}
        if vals:
            bp = max(vals, key=vals.get)
            out.append("- %s: shed %.3g, best peer %s %.3g: %.2fx (target: "
                       "at or above): %s." % (label, v, bp, vals[bp],
                                              v / vals[bp], "met" if
                                              v >= vals[bp] else "MISSED"))
    v = med("scratch", s, "scratch_ms") if "scratch" in works else None
    vals = {p: med("scratch", p, "scratch_ms") for p in peers} if v else {}
    vals = {p: x for p, x in vals.items() if x is not None}
    if vals:
        bp = min(vals, key=vals.get)
        out.append("- cache-scratch: shed %.1f ms, best peer %s %.1f ms: "
                   "%.2fx (target: no worse): %s." % (
                       v, bp, vals[bp], v / vals[bp],
                       "met" if v <= vals[bp] else "MISSED"))
    progs = [w for w in PROGS if w in works and
             all(med(w, n, PROG_METRIC) for n in (s, "mimalloc"))]
    if progs and "mimalloc" in peers:
        gs = geomean([med(w, s, PROG_METRIC) for w in progs])
        gm = geomean([med(w, "mimalloc", PROG_METRIC) for w in progs])
        out.append("- real programs (%s): geometric mean of CPU time, shed "
                   "%.3f s, "
                   "mimalloc %.3f s: %.2fx (target: at or below): %s." % (
                       ", ".join(w[5:] for w in progs), gs, gm, gs / gm,
                       "met" if gs <= gm else "MISSED"))
    for w in ["prog-" + p for p in programs.PYTHON_PROGRAMS]:
        v, pm = (med(w, s, PROG_METRIC), med(w, "pymalloc", PROG_METRIC)) \
            if w in works else (None, None)
        if v and pm:
            out.append("- %s: shed %.3f s, pymalloc %.3f s: %.2fx (target: "
                       "within 1.05x): %s." % (
                           PROG_LABELS[w[5:]], v, pm, v / pm,
                           "met" if v <= 1.05 * pm else "MISSED"))
    return out + [""] if len(out) > 2 else []


def relative_rows(names, med, works):
    """The threaded and real-program rows as time relative to the best peer (throughputs
    inverted), so that lower is better in every one: [(label, {n: r})]."""
    peers = [n for n in names if n in PEERS]
    rows = []
    for k, w, label in THROUGHPUTS + [("scratch_ms", "scratch",
                                       "cache-scratch")] + [
            (PROG_METRIC, w, w[5:]) for w in PROGS]:
        if w not in works:
            continue
        v = {n: med(w, n, k) for n in names if med(w, n, k)}
        pv = [v[p] for p in peers if p in v]
        if not pv:
            continue
        if k.endswith("_mops"):
            best = max(pv)
            r = {n: best / x for n, x in v.items()}
        else:
            best = min(pv)
            r = {n: x / best for n, x in v.items()}
        rows.append((label.split(",")[0].replace("larson-style server",
                                                  "larson") +
                     (" " + label.split(",")[1].strip()
                      if w.startswith("larson") else ""), r))
    return rows


def plot_relative(out_dir, tmp, names, med, works):
    """gnuplot commands of new.svg: the threaded and real-program rows against the best peer."""
    rows = relative_rows(names, med, works)
    cols = [n for n in names if any(n in r for _, r in rows)]
    if not rows:
        return []
    p = os.path.join(tmp, "new.dat")
    with open(p, "w") as f:
        for label, r in rows:
            f.write('"%s" %s\n' % (label, " ".join(
                "%g" % r.get(n, 0) for n in cols)))
    return ["reset",
            "set terminal svg size 1200,420 dynamic font 'sans,11'",
            "set output '%s'" % os.path.join(out_dir, "new.svg"),
            "set title 'Threaded and real-program workloads: time relative to the best peer "
            "(throughputs inverted; lower is better)'",
            "set style data histograms",
            "set style histogram clustered gap 1",
            "set style fill solid 0.8 border -1", "set boxwidth 0.9",
            "set ylabel 'x the best peer'", "set grid ytics",
            "set key outside right", "set yrange [0:*]",
            "set xtics rotate by -20",
            "plot " + ", ".join(
                "'%s' using %d:xtic(1) lc rgb '%s' title '%s'" %
                (p, i + 2, COLOURS.get(n, "#000000"), n)
                for i, n in enumerate(cols)) + ", 1 notitle lc 'black'"]


def plot(out_dir, names, rss, med, works):
    gp = shutil.which("gnuplot")
    if not gp:
        log("bench: gnuplot not found: no SVG plots (install gnuplot-nox)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        cmds = ["set terminal svg size 1200,480 dynamic font 'sans,11'",
                "set output '%s'" % os.path.join(out_dir, "rss.svg"),
                "set multiplot layout 1,3 title 'Heap RSS through the frag "
                "workloads (the drop ends at 0 ms)'",
                "set logscale y", "set grid", "set yrange [0.5:*]",
                "set xrange [*:1050]", "set bmargin 8",
                "set key below horizontal maxrows 3 font ',9'",
                "set xlabel 'ms since the drop'", "set ylabel 'MiB'"]
        for w in FRAGS:
            series = []
            for i, n in enumerate(names):
                s = rss.get((w, n))
                if not s:
                    continue
                p = os.path.join(tmp, "%s-%d.dat" % (w, i))
                with open(p, "w") as f:
                    f.writelines("%g %g\n" % (t, max(h, 4096) / 1048576.0)
                                 for t, h in s)
                series.append("'%s' using 1:2 with lines lw 2 lc rgb '%s' "
                              "title '%s'" % (p, COLOURS.get(n, "#000000"), n))
            if not series:
                continue
            bounds = [med(w, n, "frag_bound") for n in names]
            bounds = [b for b in bounds if b]
            if bounds:
                p = os.path.join(tmp, "%s-bound.dat" % w)
                b = statistics.median(bounds) / 1048576.0
                t0 = min(t for n in names for t, _ in rss.get((w, n), []))
                with open(p, "w") as f:
                    f.write("%g %g\n1050 %g\n" % (t0, b, b))
                # Solid: some SVG renderers join a dashed line to its key.
                series.append("'%s' using 1:2 with lines lw 1.5 "
                              "lc 'black' title 'survivors bound'" % p)
            cmds += ["set title '%s'" % w, "plot " + ", ".join(series)]
            # One legend, under the first panel; the margins stay equal.
            cmds += ["unset key"]
        cmds += ["unset multiplot"]

        # ns only: one axis (threxit, in us, is in the table)
        rows = [(k, w, l) for k, w, l in TIMINGS
                if w in works and k.endswith("_ns")]
        if rows:
            p = os.path.join(tmp, "time.dat")
            with open(p, "w") as f:
                for k, w, label in rows:
                    f.write('"%s" %s\n' % (label.split(",")[0], " ".join(
                        "%g" % (med(w, n, k) or 0) for n in names)))
            cmds += ["reset",
                     "set terminal svg size 1200,420 dynamic font 'sans,11'",
                     "set output '%s'" % os.path.join(out_dir, "time.svg"),
                     "set title 'Time per operation (median; lower is better)'",
                     "set style data histograms",
                     "set style histogram clustered gap 1",
                     "set style fill solid 0.8 border -1", "set boxwidth 0.9",
                     "set ylabel 'ns per operation'", "set grid ytics",
                     "set key top left", "set logscale y",
                     "set yrange [1:*]",
                     "plot " + ", ".join(
                         "'%s' using %d:xtic(1) lc rgb '%s' title '%s'" %
                         (p, i + 2, COLOURS.get(n, "#000000"), n)
                         for i, n in enumerate(names))]
        cmds += plot_relative(out_dir, tmp, names, med, works)
        r = subprocess.run([gp], input="\n".join(cmds) + "\n", text=True,
                           capture_output=True)
        if r.returncode != 0:
            log("bench: gnuplot failed: %s" % r.stderr.strip())


# The paragraphs of latest.md that the README shows (by their first words):
# the run's line, the time table, the targets and the plots.  The README
# links to latest.md for the rest, so that it stays short.
README_PARTS = ("Made by ", "Time per operation", "Throughput of",
                "Real programs", "Targets ", "![", "Pre-fork server",
                "Pre-fork targets")


def readme_summary(text):
    """The README's part of latest.md: its paragraphs (split at blank lines
    outside code blocks) whose first line starts with one of README_PARTS,
    each with the table or list that follows its title."""
    paras, cur, fence = [], [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fence = not fence
        if not line.strip() and not fence:
            if cur:
                paras.append(cur)
            cur = []
        else:
            cur.append(line)
    if cur:
        paras.append(cur)
    out, take_next = [], False
    for p in paras:
        if take_next or p[0].startswith(README_PARTS):
            out.append("\n".join(p))
            # A title (ending in ':') brings the table or list after it.
            take_next = not take_next and p[0].endswith(":")
        else:
            take_next = False
    out.append("The other tables of this run (memory after the drop, "
               "CPython, reuse distance, release syscalls, cache-scratch's "
               "false sharing, release cost per backend, forking server) are "
               "in [latest.md](latest.md).")
    return "\n\n".join(out) + "\n"


def run_prefork(args, out_dir, cmdline):
    """The pre-fork server (bench/prefork/measure.py), last, with
    args.prefork_repeats repeats: it writes prefork.md, .csv and .svg into
    out_dir, which prefork() reads.  Skipped, with a line saying why, when
    gunicorn is missing or no repeat is asked for."""
    if args.prefork_repeats <= 0:
        return
    if not shutil.which("gunicorn"):
        log("bench: gunicorn not found: the pre-fork server is skipped "
            "(apt-get install gunicorn)")
        return
    t0 = time.time()
    cmd = [sys.executable, os.path.join(HERE, "prefork", "measure.py"),
           "--shed-run", args.shed_run, "--repeats", str(args.prefork_repeats),
           "--out", out_dir, "--no-publish",
           "--made-by", "%s (its last part: bench/prefork, %d repeat%s)" % (
               cmdline, args.prefork_repeats,
               "" if args.prefork_repeats == 1 else "s")]
    if args.quick:
        cmd.append("--quick")
    log("bench: the pre-fork server: %s" % " ".join(cmd))
    r = subprocess.run(cmd)
    if r.returncode != 0:
        raise RuntimeError("the pre-fork server failed (exit %d)" % r.returncode)
    log("bench: the pre-fork server took %.0f s" % (time.time() - t0))


def prefork(out_dir):
    """The pre-fork server's part, as its last run (make bench's last
    step, or make bench-prefork) wrote it to prefork.md, between markers
    where make bench-prefork puts its next results."""
    try:
        with open(os.path.join(out_dir, "prefork.md")) as f:
            text = f.read()
    except OSError:
        text = "Pre-fork server: not measured yet (make bench-prefork).\n"
    return [PREFORK_BEGIN, "", text.strip("\n"), "", PREFORK_END]


PREFORK_BEGIN, PREFORK_END = "<!-- prefork:begin -->", "<!-- prefork:end -->"


def splice(text, begin, end, part):
    """text with what lies between the markers begin and end replaced by
    part, a blank line on each side; None when it has not both."""
    if begin not in text or end not in text.split(begin, 1)[1]:
        return None
    head, rest = text.split(begin, 1)
    return (head + begin + "\n\n" + part.strip("\n") + "\n\n" + end +
            rest.split(end, 1)[1])


def update_readme(path, text, out_dir):
    """Replace what lies between the README's bench markers, if it has them,
    with readme_summary(text), its links made relative to the README."""
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    try:
        with open(path) as f:
            s = f.read()
    except OSError:
        return
    if begin not in s or end not in s:
        return
    rel = os.path.relpath(out_dir, os.path.dirname(os.path.abspath(path)))
    text = readme_summary(text)
    for f in ("rss.svg", "time.svg", "new.svg", "latest.md", "prefork.svg"):
        text = text.replace("](%s)" % f, "](%s/%s)" % (rel, f))
    head, rest = s.split(begin, 1)
    tail = rest.split(end, 1)[1]
    with open(path, "w") as f:
        f.write(head + begin + "\n" + text + end + tail)
    log("bench: updated %s" % path)


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        sys.exit("bench: %s" % e)

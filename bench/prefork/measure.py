#!/usr/bin/env python3
"""A pre-fork server measured: gunicorn under each allocator (make bench-prefork).

gunicorn (--preload, 4 sync workers, a unix socket) serves app.py, whose
master builds a dataset of a million dict entries (dataset.py) and forks
the workers.  A client on this machine sends a bounded number of requests,
each reading a slice of the dataset and answered with JSON; every response
is checked against dataset.py afterwards.  Each worker's Private_Dirty and
Pss (/proc/PID/smaps_rollup) are read once the workers are ready (a worker
that served no request) and after the load, with the requests per second.

Every configuration runs twice a repeat: with /items requests (the table's
rows), and with /touch requests over the same slices, which read the same
objects but allocate next to nothing; so a worker's private memory splits
into what it has at start, what CPython's reference counts write into the
shared objects it reads (touch - idle), and what comes of allocating (items
- touch).  Configurations alternate within each repeat; the tables give
medians over repeats of the mean over the 4 workers.

Fails (exit 1, saying why) when gunicorn does not start, a worker dies or is
replaced, or a response is wrong.

  python3 bench/prefork/measure.py --shed-run build/shed-run [--quick] [--out DIR]
"""
import argparse
import glob
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import dataset  # noqa: E402
import run  # noqa: E402  (bench/run.py)
from run import COLOURS, find_lib, PEER_LIBS, table  # noqa: E402

WORKERS = 4
MODES = ["items", "touch"]


class Fail(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- configurations ----

def configurations(shed_run):
    """(name, command prefix, environment, PREFORK_FREEZE) in table order."""
    rows = [("pymalloc", [], {}, ""),
            ("pymalloc+gc.freeze", [], {}, "gc"),
            ("glibc", [], {"PYTHONMALLOC": "malloc"}, "")]
    for peer in ("jemalloc", "mimalloc"):
        lib = find_lib(PEER_LIBS[peer])
        if lib:
            rows.append((peer, [], {"PYTHONMALLOC": "malloc", "LD_PRELOAD": lib}, ""))
        else:
            log("prefork: %s skipped (not installed: apt-get install lib%s-dev)" % (peer, peer))
    rows += [("shed", [shed_run], {}, ""),
             ("shed+freeze", [shed_run], {}, "gc+shed")]
    return rows


# ---- measuring a process ----

def rollup(pid):
    """Private_Dirty and Pss of pid, in bytes."""
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Private_Dirty", "Pss", "Rss"):
                out[k] = int(v.split()[0]) * 1024
    return out


def cpu_seconds(pid):
    """User and system time of pid so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return sorted(int(p) for p in f.read().split())
    except OSError:
        return []


# ---- the client ----

def request(sock_path, path):
    """(status, headers, body) of one GET over the unix socket."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(60)
        s.connect(sock_path)
        s.sendall(("GET %s HTTP/1.0\r\nHost: bench\r\n\r\n" % path).encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    finally:
        s.close()
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = dict(l.split(": ", 1) for l in lines[1:] if ": " in l)
    return status, headers, body


def load(sock_path, mode, starts, count, concurrency):
    """Send one request per start; (seconds, responses in order)."""
    out = [None] * len(starts)
    nxt = [0]
    lock = threading.Lock()
    errors = []

    def worker():
        while True:
            with lock:
                j = nxt[0]
                nxt[0] += 1
            if j >= len(starts) or errors:
                return
            try:
                out[j] = request(sock_path, "/%s?start=%d&count=%d" % (mode, starts[j], count))
            except OSError as e:
                errors.append("request %d: %s" % (j, e))

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.perf_counter() - t0
    if errors:
        raise Fail(errors[0])
    return secs, out


def verify(mode, starts, count, responses):
    """Every response right; requests served per worker pid."""
    served = {}
    for start, (status, headers, body) in zip(starts, responses):
        what = "/%s?start=%d&count=%d" % (mode, start, count)
        if status != 200:
            raise Fail("%s: status %d: %r" % (what, status, body[:200]))
        if mode == "items":
            got = json.loads(body)
            want = {"start": start, "items": [dataset.item(i) for i in range(start, start + count)]}
            if got != want:
                raise Fail("%s: wrong response %r" % (what, body[:200]))
        elif int(body) != dataset.touch_sum(start, count):
            raise Fail("%s: wrong checksum %r" % (what, body))
        w = int(headers.get("X-Worker", 0))
        served[w] = served.get(w, 0) + 1
    return served


# ---- one server ----

def run_server(cfg, mode, args, seed):
    """Start gunicorn, measure, load, measure, stop: a dict of results."""
    name, prefix, env_add, freeze = cfg
    tmp = tempfile.mkdtemp(prefix="prefork-")
    sock = os.path.join(tmp, "sock")
    ready = os.path.join(tmp, "ready")
    os.mkdir(ready)
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "PYTHONMALLOC", "SHED_CONF", "SHED_STATS", "PYTHONPATH"):
        env.pop(k, None)
    env.update(env_add)
    env.update({"PREFORK_ENTRIES": str(args.entries), "PREFORK_FREEZE": freeze,
                "PREFORK_READY_DIR": ready})
    cmd = prefix + [args.gunicorn, "--preload", "-w", str(WORKERS), "-k", "sync",
                    "-b", "unix:" + sock, "-c", os.path.join(HERE, "hooks.py"),
                    "--chdir", HERE, "--timeout", "300", "--log-level", "warning",
                    "app:application"]
    logf = open(os.path.join(tmp, "log"), "w+")
    master = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT)

    def log_tail():
        logf.seek(0)
        return "".join(logf.readlines()[-15:])

    try:
        deadline = time.time() + 600
        while len(os.listdir(ready)) < WORKERS:
            if master.poll() is not None:
                raise Fail("%s: gunicorn exited with %d:\n%s" % (name, master.returncode, log_tail()))
            if time.time() > deadline:
                raise Fail("%s: the workers were not ready in 600 s:\n%s" % (name, log_tail()))
            time.sleep(0.05)
        pids = sorted(int(p) for p in os.listdir(ready))
        if children(master.pid) != pids:
            raise Fail("%s: workers %s, ready %s" % (name, children(master.pid), pids))
        time.sleep(args.settle)
        master_mem = rollup(master.pid)
        idle = {p: rollup(p) for p in pids}

        rnd = random.Random(seed)
        starts = [rnd.randrange(args.entries - args.count) for _ in range(args.requests)]
        cpu0 = sum(cpu_seconds(p) for p in pids)
        secs, responses = load(sock, mode, starts, args.count, args.concurrency)
        cpu = sum(cpu_seconds(p) for p in pids) - cpu0
        time.sleep(args.settle)
        if master.poll() is not None or children(master.pid) != pids:
            raise Fail("%s: a worker died or was replaced during the load (workers %s, now %s):\n%s"
                       % (name, pids, children(master.pid), log_tail()))
        after = {p: rollup(p) for p in pids}
        served = verify(mode, starts, args.count, responses)
        if set(served) - set(pids):
            raise Fail("%s: responses from unknown workers %s" % (name, sorted(set(served) - set(pids))))
        return {"rps": len(starts) / secs, "cpu_ms": 1000.0 * cpu / len(starts),
                "master_rss": master_mem["Rss"],
                "idle_pd": [idle[p]["Private_Dirty"] for p in pids],
                "pd": [after[p]["Private_Dirty"] for p in pids],
                "pss": [after[p]["Pss"] for p in pids],
                "served": [served.get(p, 0) for p in pids]}
    finally:
        if master.poll() is None:
            master.send_signal(signal.SIGTERM)
            try:
                master.wait(60)
            except subprocess.TimeoutExpired:
                master.kill()
                master.wait()
        logf.close()
        shutil.rmtree(tmp, ignore_errors=True)


# ---- tables ----

def mb(v):
    return "%.1f" % (v / 1048576.0)


def summarise(names, results, args, cmdline):
    """The markdown page and the medians."""
    def med(name, mode, key, reduce=statistics.mean):
        v = [reduce(r[key]) if isinstance(r[key], list) else r[key]
             for r in results.get((name, mode), [])]
        return statistics.median(v) if v else None

    m = {n: {"rps": med(n, "items", "rps"), "cpu": med(n, "items", "cpu_ms"), "pd": med(n, "items", "pd"),
             "pss": med(n, "items", "pss"), "idle": med(n, "items", "idle_pd"),
             "touch": med(n, "touch", "pd"), "master": med(n, "items", "master_rss"),
             "served_min": med(n, "items", "served", min)} for n in names}
    base_rps = m.get("pymalloc", {}).get("rps")
    base_cpu = m.get("pymalloc", {}).get("cpu")
    base_pd = m.get("pymalloc+gc.freeze", {}).get("pd")
    rows = []
    for n in names:
        r = m[n]
        if r["pd"] is None:
            continue
        rows.append([n, "%.0f" % r["rps"],
                     "%.2fx" % (r["rps"] / base_rps) if base_rps else "-",
                     "%.2f" % r["cpu"], "%.2fx" % (r["cpu"] / base_cpu) if base_cpu else "-",
                     mb(r["pd"]), "%.2fx" % (r["pd"] / base_pd) if base_pd else "-",
                     mb(r["pss"]), mb(r["idle"]), mb(r["touch"]),
                     mb(r["touch"] - r["idle"]), mb(r["pd"] - r["touch"]), mb(r["master"])])
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    uname = os.uname()
    md = ["Pre-fork server (bench/prefork: gunicorn %s, --preload, %d sync workers on a unix "
          "socket; the master builds %s dict entries; %d requests of %d entries each, %d at a "
          "time, checked; Python %s). Made by `%s` on %s UTC (%s, Linux %s, %d CPUs); "
          "%d repeats, configurations alternating, medians of the mean over the workers "
          "(MiB):" % (args.gunicorn_version, WORKERS, "{:,}".format(args.entries), args.requests,
                      args.count, args.concurrency, args.python_version, cmdline, when,
                      uname.machine, uname.release, os.cpu_count(), args.repeats),
          "",
          table(["configuration", "req/s", "vs pymalloc", "CPU ms/req", "vs pymalloc",
                 "Private_Dirty",
                 "vs pymalloc+gc.freeze", "Pss", "idle", "touch", "touch-idle",
                 "items-touch", "master RSS"], rows),
          "",
          "req/s: the client's wall clock; CPU ms/req: the workers' user and system time "
          "over the load (/proc/PID/stat) per request, which other programs on the machine "
          "disturb less. "
          "Private_Dirty and Pss: a worker's, after the load. idle: a worker's Private_Dirty "
          "before it served a request; touch: after the same requests to /touch, which read "
          "the same entries but allocate next to nothing. So touch-idle is what CPython's "
          "reference counts write into the objects read, and items-touch what building the "
          "responses adds (allocating, and freeing, in the master's pages or in new ones).",
          ""]
    md += targets(m)
    md += ["", "![pre-fork server: worker private memory](prefork.svg)"]
    return "\n".join(md) + "\n", m


def targets(m):
    out = []
    sf, pg, pm = m.get("shed+freeze"), m.get("pymalloc+gc.freeze"), m.get("pymalloc")
    if not (sf and sf["pd"] is not None):
        return ["Pre-fork targets: no shed+freeze row."]
    others = {n: r["pd"] for n, r in m.items() if n != "shed+freeze" and r["pd"] is not None}
    low = min(others, key=others.get) if others else None
    out.append("- shed+freeze: a worker's Private_Dirty %s MiB, the lowest of all rows "
               "(next: %s, %s MiB): %s." % (mb(sf["pd"]), low, mb(others[low]) if low else "-",
                                            "met" if low and sf["pd"] < others[low] else "MISSED"))
    if pg and pg["pd"] is not None:
        out.append("- at most half of pymalloc+gc.freeze's (%s MiB): %.2fx, %s." % (
            mb(pg["pd"]), sf["pd"] / pg["pd"], "met" if sf["pd"] <= pg["pd"] / 2 else "MISSED"))
    if pm and pm["rps"]:
        out.append("- requests per second within 5%% of pymalloc's (%.0f): %.0f, %.2fx, %s; "
                   "in workers' CPU time per request %.2f ms against %.2f, %.2fx, %s." % (
                       pm["rps"], sf["rps"], sf["rps"] / pm["rps"],
                       "met" if sf["rps"] >= 0.95 * pm["rps"] else "MISSED",
                       sf["cpu"], pm["cpu"], sf["cpu"] / pm["cpu"],
                       "met" if sf["cpu"] <= pm["cpu"] / 0.95 else "MISSED"))
    return ["Pre-fork targets (shed+freeze):", ""] + out


def plot(out_dir, names, m):
    gp = shutil.which("gnuplot")
    if not gp:
        log("prefork: gnuplot not found: no plot (install gnuplot-nox)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        p = os.path.join(tmp, "prefork.dat")
        with open(p, "w") as f:
            for n in names:
                r = m[n]
                if r["pd"] is None:
                    continue
                f.write('"%s" %g %g %g\n' % (n, r["idle"] / 1048576.0, r["touch"] / 1048576.0,
                                             r["pd"] / 1048576.0))
        cmds = ["set terminal svg size 1000,420 dynamic font 'sans,11'",
                "set output '%s'" % os.path.join(out_dir, "prefork.svg"),
                "set title \"gunicorn --preload, 4 workers: a worker's Private_Dirty "
                "(median; lower is better)\"",
                "set style data histograms", "set style histogram clustered gap 1",
                "set style fill solid 0.8 border -1", "set boxwidth 0.9",
                "set ylabel 'MiB'", "set grid ytics", "set key top right",
                "set xtics rotate by -20", "set yrange [0:*]",
                "plot '%s' using 2:xtic(1) lc rgb '#bbbbbb' title 'served no request', "
                "'' using 3 lc rgb '%s' title '/touch requests (reads only)', "
                "'' using 4 lc rgb '%s' title '/items requests (reads, builds JSON)'"
                % (p, COLOURS.get("jemalloc", "#009e73"), COLOURS.get("shed-batched", "#d55e00"))]
        r = subprocess.run([gp], input="\n".join(cmds) + "\n", text=True, capture_output=True)
        if r.returncode != 0:
            log("prefork: gnuplot failed: %s" % r.stderr.strip())


def publish(out_dir, readme):
    """prefork.md into latest.md's pre-fork part, and the README's summary
    of latest.md made again (bench/run.py's), so that both show this run."""
    with open(os.path.join(out_dir, "prefork.md")) as f:
        part = f.read()
    latest = os.path.join(out_dir, "latest.md")
    try:
        with open(latest) as f:
            text = f.read()
    except OSError:
        log("prefork: no %s (run make bench): the README is left alone" % latest)
        return
    new = run.splice(text, run.PREFORK_BEGIN, run.PREFORK_END, part)
    if new is None:                 # a latest.md from before bench-prefork
        new = text.rstrip("\n") + "\n\n" + "\n".join(run.prefork(out_dir)) + "\n"
    with open(latest, "w") as f:
        f.write(new)
    if readme:
        run.update_readme(readme, new, out_dir)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shed-run", default="build/shed-run")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--entries", type=int)
    ap.add_argument("--requests", type=int)
    ap.add_argument("--count", type=int, default=50, help="entries per request")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds before each measurement (release delays)")
    ap.add_argument("--rows", help="comma-separated subset of the configurations")
    ap.add_argument("--out")
    ap.add_argument("--readme", help="README whose make bench summary to make again "
                    "(from latest.md, with this run's pre-fork part)")
    ap.add_argument("--no-publish", action="store_true",
                    help="leave latest.md and the README alone (make bench, "
                    "which writes both after this run)")
    ap.add_argument("--made-by", help="the command to name in prefork.md")
    ap.add_argument("--publish", action="store_true",
                    help="run nothing: put the last prefork.md into latest.md and --readme")
    args = ap.parse_args()
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.entries = args.entries or (200000 if args.quick else 1000000)
    args.requests = args.requests or (1000 if args.quick else 4000)
    out_dir = args.out or os.path.join(os.path.dirname(HERE), "results",
                                       "quick" if args.quick else "")
    os.makedirs(out_dir, exist_ok=True)
    if args.publish:
        publish(out_dir, args.readme)
        return
    args.gunicorn = shutil.which("gunicorn")
    if not args.gunicorn:
        sys.exit("prefork: gunicorn not found (apt-get install gunicorn)")
    args.gunicorn_version = subprocess.run([args.gunicorn, "--version"], capture_output=True,
                                           text=True).stdout.split()[-1].rstrip(")")
    with open(args.gunicorn) as f:
        interp = f.readline()[2:].strip().split()[0]
    args.python_version = subprocess.run([interp, "-c", "import platform; "
                                          "print(platform.python_version())"],
                                         capture_output=True, text=True).stdout.strip()
    shed_run = os.path.abspath(args.shed_run)
    if not os.access(shed_run, os.X_OK):
        sys.exit("prefork: %s not found (run make first)" % shed_run)
    cmdline = args.made_by or (
        "make bench-prefork" + (" QUICK=1" if args.quick else "")
        if os.environ.get("MAKELEVEL") else " ".join(["bench/prefork/measure.py"] + sys.argv[1:]))
    cfgs = configurations(shed_run)
    if args.rows:
        want = args.rows.split(",")
        cfgs = [c for c in cfgs if c[0] in want]
    names = [c[0] for c in cfgs]

    results = {}
    raw = []
    started = time.time()
    try:
        for rep in range(args.repeats):
            order = cfgs[rep % len(cfgs):] + cfgs[:rep % len(cfgs)]
            for cfg in order:
                for mode in MODES:
                    r = run_server(cfg, mode, args, seed=1000 + rep)
                    results.setdefault((cfg[0], mode), []).append(r)
                    raw.append([cfg[0], mode, rep, r])
                    log("prefork: %-18s %-5s repeat %d: %6.0f req/s, %.2f CPU ms/req, worker Private_Dirty %s "
                        "(idle %s) MiB, Pss %s MiB, requests per worker %s" % (
                            cfg[0], mode, rep + 1, r["rps"], r["cpu_ms"],
                            " ".join(mb(v) for v in r["pd"]), " ".join(mb(v) for v in r["idle_pd"]),
                            " ".join(mb(v) for v in r["pss"]), r["served"]))
    except Fail as e:
        sys.exit("prefork: FAILED: %s" % e)

    text, m = summarise(names, results, args, cmdline)
    log("")
    log(text)
    with open(os.path.join(out_dir, "prefork.csv"), "w") as f:
        f.write("configuration,mode,repeat,worker,requests_per_s,cpu_ms_per_request,idle_private_dirty,"
                "private_dirty,pss,served,master_rss\n")
        for name, mode, rep, r in raw:
            for w in range(len(r["pd"])):
                f.write("%s,%s,%d,%d,%.1f,%.3f,%d,%d,%d,%d,%d\n" % (
                    name, mode, rep, w, r["rps"], r["cpu_ms"], r["idle_pd"][w], r["pd"][w], r["pss"][w],
                    r["served"][w], r["master_rss"]))
    with open(os.path.join(out_dir, "prefork.md"), "w") as f:
        f.write(text)
    plot(out_dir, names, m)
    if not args.no_publish:
        publish(out_dir, args.readme)
    log("prefork: results in %s (%.0f s)" % (out_dir, time.time() - started))


if __name__ == "__main__":
    main()

"""Real programs, each run under an allocator by LD_PRELOAD and timed.

bench/run.py imports this module: Programs(tmp, quick, python) prepares
their inputs once in the directory tmp, and .run(name, env) runs one program
with the environment env (the allocator's LD_PRELOAD, and PYTHONMALLOC for
the Python programs), checks what it produced and returns its wall time and
its CPU time (user + system) in seconds.  On a shared machine the CPU time
is the steadier one: a wall time also counts the time the program waited for
a CPU.  A program whose output is wrong raises RuntimeError: a timing of a
run that corrupted its data is worthless.

  compileall  python3 -m compileall -f -q over a copy of the standard
              library (without its tests)
  json        bench/jsonrt.py: a json dump/load round trip of a large
              document, checked equal to the original
  sqlite      the sqlite3 shell, in memory: build, index, update and delete
              500k rows; the counts and sums it prints are checked
  redis       redis-benchmark (SET, GET, LPUSH, LPOP, -P 16) against a
              redis-server on a unix socket in tmp (port 0: nothing listens
              on the network); only the server is preloaded; its stored
              values are checked after the benchmark.  Wall time: the
              benchmark's; CPU time: the server's, over its whole life

Usage by hand: python3 bench/programs.py [--quick] NAME [LD_PRELOAD]
"""
import os
import resource
import shutil
import socket
import subprocess
import sys
import sysconfig
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAMS = ["compileall", "json", "sqlite", "redis"]
PYTHON_PROGRAMS = ["compileall", "json"]
# Commands each program needs, and the Debian package that has them.
TOOLS = {"sqlite": {"sqlite3": "sqlite3"},
         "redis": {"redis-server": "redis-server",
                   "redis-benchmark": "redis-tools",
                   "redis-cli": "redis-tools"}}
# Sizes: (full, quick).
SIZES = {"json": ("300000", "50000"), "sqlite": (500000, 100000),
         "redis": (200000, 50000)}


def missing_tools(name):
    """The Debian packages a program needs and that are not installed."""
    return sorted({pkg for cmd, pkg in TOOLS.get(name, {}).items()
                   if not shutil.which(cmd)})


class Programs:
    def __init__(self, tmp, quick, python):
        self.tmp, self.quick, self.python = tmp, quick, python
        self.stdlib = None

    def size(self, name):
        return SIZES[name][1 if self.quick else 0]

    def run(self, name, env):
        return getattr(self, "run_" + name)(env)

    # ---- compileall
    def prepare_stdlib(self):
        """A copy of the interpreter's standard library without its tests
        (some of them are meant not to compile), its extension modules and
        its caches; QUICK: only the modules whose names start with a-d."""
        if self.stdlib:
            return
        src = sysconfig.get_paths()["stdlib"]
        dst = os.path.join(self.tmp, "stdlib")
        skip = shutil.ignore_patterns("test", "tests", "idle_test",
                                      "site-packages", "dist-packages",
                                      "__pycache__", "*.pyc", "*.so",
                                      "config-*")

        def ignore(d, names):
            out = set(skip(d, names))
            if self.quick and os.path.samefile(d, src):
                out |= {n for n in names if n.lstrip("_")[:1].lower() > "d"}
            return out
        shutil.copytree(src, dst, ignore=ignore, symlinks=True)
        self.stdlib = dst
        self.sources = sorted(os.path.join(d, f)
                              for d, _, fs in os.walk(dst) for f in fs
                              if f.endswith(".py"))

    def run_compileall(self, env):
        self.prepare_stdlib()
        for d, sub, _ in os.walk(self.stdlib):
            if "__pycache__" in sub:
                shutil.rmtree(os.path.join(d, "__pycache__"))
                sub.remove("__pycache__")
        t = self.timed([self.python, "-m", "compileall", "-f", "-q",
                        self.stdlib], env)
        tag = sys.implementation.cache_tag
        missing = [s for s in self.sources if not os.path.exists(
            os.path.join(os.path.dirname(s), "__pycache__", "%s.%s.pyc" % (
                os.path.basename(s)[:-3], tag)))]
        if missing:
            raise RuntimeError("compileall wrote no .pyc for %d of %d files "
                               "(%s)" % (len(missing), len(self.sources),
                                         missing[0]))
        return t

    # ---- json
    def run_json(self, env):
        return self.timed([self.python, os.path.join(HERE, "jsonrt.py"),
                           self.size("json")], env)

    # ---- sqlite
    def run_sqlite(self, env):
        n = self.size("sqlite")
        # Rows: id 1..n, k a permutation of 0..n-1 (n is not a multiple of
        # 7919, a prime), v a text of 20-219 digits.  Then: index k and v,
        # make every third v one byte longer, delete the even ids and the
        # rows with k < n/10, and read the rest back through each index.
        sql = """
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT);
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<{n})
INSERT INTO t SELECT x, (x*7919)%{n}, printf('%0*d', 20+x%200, x) FROM c;
COMMIT;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_v ON t(v);
UPDATE t SET v = v || 'x' WHERE id % 3 = 0;
DELETE FROM t WHERE id % 2 = 0;
DELETE FROM t WHERE k < {tenth};
SELECT count(*), sum(k), sum(length(v)) FROM t NOT INDEXED;
SELECT count(*) FROM t INDEXED BY t_k WHERE k >= 0;
SELECT count(*) FROM t INDEXED BY t_v WHERE v > '';
""".format(n=n, tenth=n // 10)
        t, out = self.timed(["sqlite3", ":memory:"], env, stdin=sql,
                            output=True)
        kept = [x for x in range(1, n + 1)
                if x % 2 and (x * 7919) % n >= n // 10]
        cnt = len(kept)
        want = "%d|%d|%d\n%d\n%d" % (
            cnt, sum((x * 7919) % n for x in kept),
            sum(max(20 + x % 200, len(str(x))) + (x % 3 == 0) for x in kept),
            cnt, cnt)
        if out.strip() != want:
            raise RuntimeError("sqlite3 printed %r, want %r" %
                               (out.strip(), want))
        return t

    # ---- redis
    def run_redis(self, env):
        n = self.size("redis")
        cpu = None
        d = os.path.join(self.tmp, "redis")
        os.makedirs(d, exist_ok=True)
        sock = os.path.join(d, "redis.sock")
        server = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", sock,
             "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
             "--dir", d, "--daemonize", "no", "--loglevel", "warning",
             "--logfile", os.path.join(d, "log")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            self.wait_ready(server, sock, d)
            preload = env.get("LD_PRELOAD")
            if preload and not self.maps_hold(server.pid, preload):
                raise RuntimeError("redis-server does not have %s mapped"
                                   % preload)
            t, out = self.timed(
                ["redis-benchmark", "-s", sock, "-n", str(n), "-r", "100000",
                 "-d", "64", "-P", "16", "-t", "set,get,lpush,lpop", "-q",
                 "--csv"], dict(os.environ), output=True)
            tests = [ln.split(",")[0].strip('"') for ln in out.splitlines()
                     if ln.startswith('"')]
            if not {"SET", "GET", "LPUSH", "LPOP"} <= set(tests):
                raise RuntimeError("redis-benchmark printed %r" % out[-300:])
            self.check_redis(sock)
        finally:
            if server.poll() is None:
                subprocess.run(["redis-cli", "-s", sock, "shutdown", "nosave"],
                               capture_output=True, timeout=30)
                cpu = self.reap(server)
        if server.returncode != 0:
            raise RuntimeError("redis-server exited %d: %s" % (
                server.returncode, server.stderr.read().decode()[-300:]))
        if cpu is None:
            raise RuntimeError("redis-server ended before the benchmark did")
        return t[0], cpu

    @staticmethod
    def reap(proc):
        """Wait for proc (30 s at most, then kill it); its CPU seconds."""
        deadline = time.monotonic() + 30
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return ru.ru_utime + ru.ru_stime
            if time.monotonic() > deadline:
                proc.kill()
                deadline += 30
            time.sleep(0.01)

    @staticmethod
    def wait_ready(server, sock, d):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if server.poll() is not None:
                log = os.path.join(d, "log")
                raise RuntimeError("redis-server exited %d at its start: %s"
                                   % (server.returncode,
                                      open(log).read()[-300:]
                                      if os.path.exists(log) else ""))
            if os.path.exists(sock) and subprocess.run(
                    ["redis-cli", "-s", sock, "ping"], capture_output=True,
                    text=True).stdout.strip() == "PONG":
                return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer on %s" % sock)

    @staticmethod
    def maps_hold(pid, lib):
        try:
            with open("/proc/%d/maps" % pid) as f:
                return any(ln.rstrip().endswith(os.path.realpath(lib)) or
                           ln.rstrip().endswith(lib) for ln in f)
        except OSError:
            return False

    @staticmethod
    def check_redis(sock):
        """SET 2000 keys of different lengths through the socket, GET them
        back and compare; the benchmark itself checks nothing it reads."""
        def cmd(*a):
            return b"*%d\r\n" % len(a) + b"".join(
                b"$%d\r\n%s\r\n" % (len(x), x) for x in a)
        keys = [(b"check:%d" % i, (b"%d:" % i) * (1 + i % 97))
                for i in range(2000)]
        req = b"".join(cmd(b"SET", k, v) for k, v in keys) + \
            b"".join(cmd(b"GET", k) for k, _ in keys)
        want = b"+OK\r\n" * len(keys) + b"".join(
            b"$%d\r\n%s\r\n" % (len(v), v) for _, v in keys)
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(30)
        s.connect(sock)
        s.sendall(req)
        got = b""
        while len(got) < len(want):
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            got += chunk
        s.close()
        if got != want:
            raise RuntimeError("redis-server gave back wrong values (first "
                               "difference at byte %d)" % next(
                                   (i for i, (a, b) in enumerate(zip(got, want))
                                    if a != b), min(len(got), len(want))))

    # ---- common
    @staticmethod
    def timed(cmd, env, stdin=None, output=False):
        """Run cmd: (wall s, CPU s) [, its stdout].  The CPU time is that of
        the children this process waited for, of which cmd is the one."""
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        r = subprocess.run(cmd, env=env, input=stdin, capture_output=True,
                           text=True, timeout=600)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = (time.monotonic() - t0, ru1.ru_utime + ru1.ru_stime -
             ru0.ru_utime - ru0.ru_stime)
        if r.returncode != 0 or "cannot be preloaded" in r.stderr:
            raise RuntimeError("%s failed (exit %d): %s" % (
                " ".join(cmd[:3]), r.returncode, r.stderr.strip()[-300:]))
        return (t, r.stdout) if output else t


if __name__ == "__main__":
    import tempfile
    a = sys.argv[1:]
    quick = "--quick" in a
    a = [x for x in a if x != "--quick"]
    if not a or a[0] not in PROGRAMS:
        sys.exit("usage: programs.py [--quick] %s [LD_PRELOAD]" %
                 "|".join(PROGRAMS))
    e = dict(os.environ)
    if len(a) > 1:
        e["LD_PRELOAD"] = a[1]
    if a[0] in PYTHON_PROGRAMS:
        e.setdefault("PYTHONMALLOC", "malloc")
    with tempfile.TemporaryDirectory() as tmp:
        p = Programs(tmp, quick, sys.executable)
        print("%s: %.3f s wall, %.3f s CPU" % ((a[0],) + p.run(a[0], e)))

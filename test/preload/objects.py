# Run with PYTHONMALLOC=malloc so that every object goes through malloc:
# builds a million small objects (tuples, strings, dicts, lists, ints,
# floats, instances), keeps about one in a hundred, drops the rest, builds again,
# and checks the results; forks from a thread.  Prints a checksum that depends only on the
# computation, so the output with and without LD_PRELOAD=libshed.so must be
# identical.
import gc
import hashlib
import os
import signal
import sys
import threading
import time

N = 1_000_000


class Rec:
    __slots__ = ("key", "name", "tags")

    def __init__(self, key):
        self.key = key
        self.name = "rec-%07d" % key
        self.tags = [key % 7, key % 11, str(key % 13)]


def build(n, salt):
    objs = []
    for i in range(n):
        k = i * 7919 + salt
        kind = i % 4
        if kind == 0:
            objs.append((k, str(k), k * 0.5))
        elif kind == 1:
            objs.append({"k": k, "s": "x" * (k % 40), "l": [k] * (k % 5)})
        elif kind == 2:
            objs.append(Rec(k))
        else:
            objs.append("%d:%s" % (k, "y" * (k % 90)))
    return objs


def digest(objs):
    h = hashlib.sha256()
    for o in objs:
        if isinstance(o, Rec):
            o = (o.key, o.name, o.tags)
        elif isinstance(o, dict):
            o = sorted(o.items())
        h.update(repr(o).encode())
    return h.hexdigest()


objs = build(N, 1)
assert len(objs) == N
kept = objs[::101]
expect = digest(kept)
del objs
gc.collect()

# The survivors are intact after the drop and a second build reusing memory.
again = build(N // 2, 2)
assert digest(kept) == expect, "survivors changed"
assert sum(len(o) for o in again if isinstance(o, str)) == sum(
    len("%d:%s" % (i * 7919 + 2, "y" * ((i * 7919 + 2) % 90)))
    for i in range(3, N // 2, 4))
total = sum(r.key for r in kept if isinstance(r, Rec))
del again
gc.collect()

words = {}
for i in range(200_000):
    words.setdefault("w%d" % (i % 5000), []).append(i)
assert all(len(v) == 40 for v in words.values())


# fork() from a thread: the child's only thread is that one, and it ends by
# returning (pthread_exit), not by exit().  The child frees pools, so shed
# starts a release thread there, which must not keep the child alive.
def fork_from_thread(out):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        junk = build(50_000, 3)
        del junk
        gc.collect()
        os.write(w, b"child built and dropped")
        os.close(w)
        return
    os.close(w)
    got = b""
    while chunk := os.read(r, 100):
        got += chunk
    os.close(r)
    # A child that never ends is killed (and the check fails), so that it
    # cannot hold this program's stdout open for ever.
    deadline = time.monotonic() + 30
    while (st := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if st[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        st = (pid, "never ended")
    out.append((got.decode(), st[1]))


forked = []
t = threading.Thread(target=fork_from_thread, args=(forked,))
t.start()
t.join()
assert forked == [("child built and dropped", 0)], forked

print("kept", len(kept), "sum", total, "digest", expect)
print("words", len(words), hashlib.sha256(repr(sorted(words.items())[:50]).encode()).hexdigest())
sys.exit(0)

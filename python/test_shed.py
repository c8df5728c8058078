"""Tests of the Python module shed (run by python/check.sh, make check-python).

    python3 test_shed.py plain   shed is not the malloc: active() is False and
                                 every other call raises RuntimeError
    LD_PRELOAD=fake_shed.so python3 test_shed.py fake
                                 a malloc with shed_malloc but none of the
                                 calls: active() is True, each call raises
                                 RuntimeError naming the function it lacks
    shed-run -c release=manual python3 test_shed.py shed
                                 shed is the malloc: stats follow a known
                                 allocation pattern, trim() gives pages back,
                                 config() refuses bad settings, freeze() keeps
                                 a fork()ed child out of the parent's pages

Runs on Python 3.6 and later.  Prints one line per test; exits 1 at the
first failure.
"""
import gc
import io
import os
import re
import sys

import shed

NOT_SHED = ("shed is not this process's malloc: start the program with "
            "shed-run (for example: shed-run python3 script.py)")


def check(cond, what):
    if not cond:
        sys.stderr.write("test_shed (%s): FAILED: %s\n" % (sys.version.split()[0], what))
        sys.exit(1)


def raises(exc, fn, *args, **kw):
    """The exception fn(*args) raised, checked to be an exc."""
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    check(False, "%s%r did not raise %s" % (fn.__name__, args, exc.__name__))


# ---- plain: shed is not the malloc ----

def test_plain():
    check(shed.active() is False, "active() is %r in a process without shed" % shed.active())
    calls = [(shed.stats, ()), (shed.trim, ()), (shed.freeze, ()), (shed.thaw, ()),
             (shed.config, ("release=manual",)), (shed.print_stats, ()),
             (shed.stats_json, ()), (shed.heap_map_svg, ())]
    for fn, args in calls:
        e = raises(RuntimeError, fn, *args)
        check(str(e) == NOT_SHED, "%s() says %r" % (fn.__name__, str(e)))
    print("ok: plain: active() False, 8 calls raise RuntimeError naming shed-run")


def test_fake():
    check(shed.active() is True, "active() is %r with fake_shed.so" % shed.active())
    calls = [(shed.stats, (), "shed_stats"), (shed.trim, (), "shed_trim"),
             (shed.freeze, (), "shed_freeze"), (shed.thaw, (), "shed_thaw"),
             (shed.config, ("release=manual",), "shed_config"),
             (shed.print_stats, (), "shed_stats_print"),
             (shed.stats_json, (), "shed_stats_print_json"),
             (shed.heap_map_svg, (), "shed_heap_map_svg")]
    for fn, args, sym in calls:
        e = raises(RuntimeError, fn, *args)
        want = ("the libshed.so in this process has no %s(); use the shed-run of the "
                "same build as this module" % sym)
        check(str(e) == want, "%s() says %r" % (fn.__name__, str(e)))
    print("ok: a library without the calls: active() True, 8 calls name what is missing")


# ---- under shed ----

def rss():
    """Resident bytes of this process, from the kernel."""
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                return int(line.split()[1]) * 1024
    check(False, "no Rss line in /proc/self/smaps_rollup")


def test_active():
    check(shed.active() is True, "active() is %r under shed-run" % shed.active())
    check(os.environ.get("PYTHONMALLOC") == "malloc",
          "PYTHONMALLOC is %r under shed-run" % os.environ.get("PYTHONMALLOC"))
    print("ok: active() True, PYTHONMALLOC=malloc")


def test_stats_shape():
    s = shed.stats()
    cls = s["classes"]
    check(len(cls) == 32, "%d classes" % len(cls))
    check([c["block_size"] for c in cls] == [16 * (i + 1) for i in range(32)],
          "class sizes %r" % [c["block_size"] for c in cls])
    check(s["blocks_in_use"] == sum(c["blocks_in_use"] for c in cls),
          "blocks_in_use %d is not the sum over the classes" % s["blocks_in_use"])
    check(s["pool_size"] == os.sysconf("SC_PAGE_SIZE"),
          "pool_size %d, page size %d" % (s["pool_size"], os.sysconf("SC_PAGE_SIZE")))
    check(s["blocks_in_use"] > 1000, "only %d blocks in use in a running Python"
          % s["blocks_in_use"])
    # The fields that shed_stats_get() added after shed 0.1.0, when the
    # library has it: the size it filled, the pools by fill per class.
    if "size" in s:
        check(s["size"] > 1000, "size %d" % s["size"])
        check(len(s["pools_by_fill"]) == 6, "pools_by_fill %r" % s["pools_by_fill"])
        check([c["blocks_per_pool"] for c in cls] == [s["pool_size"] // (16 * (i + 1)) for i in range(32)],
              "blocks_per_pool %r" % [c["blocks_per_pool"] for c in cls])
    print("ok: stats(): %d fields, 32 classes of 16..512 bytes, %d blocks in use"
          % (len(s), s["blocks_in_use"]))


def test_stats_follow_allocations():
    """N bytes objects of one size: their class gains N blocks; freed and
    trimmed, their pools leave memory (release=manual: only trim() releases)."""
    n = 50000
    size = sys.getsizeof(b"x" * 100)        # the malloc request of one object
    k = (size + 15) // 16 - 1               # its class
    before = shed.stats()
    objs = [b"%0100d" % i for i in range(n)]
    during = shed.stats()
    grew = during["classes"][k]["blocks_in_use"] - before["classes"][k]["blocks_in_use"]
    check(grew >= n, "class %d grew by %d blocks for %d objects" % ((k + 1) * 16, grew, n))
    check(during["blocks_in_use"] - before["blocks_in_use"] >= n,
          "blocks_in_use grew by %d" % (during["blocks_in_use"] - before["blocks_in_use"]))
    check(during["bytes_in_use"] - before["bytes_in_use"] >= n * (k + 1) * 16,
          "bytes_in_use grew by %d" % (during["bytes_in_use"] - before["bytes_in_use"]))
    del objs
    gc.collect()
    after = shed.stats()
    check(after["classes"][k]["blocks_in_use"] < during["classes"][k]["blocks_in_use"] - n + n // 100,
          "class %d kept %d blocks after the free" % ((k + 1) * 16, after["classes"][k]["blocks_in_use"]))
    pool = after["pool_size"]
    pools = n * (k + 1) * 16 // pool          # pools those blocks filled
    check(after["pools_dirty"] >= pools * 9 // 10,
          "%d dirty pools after freeing %d pools' worth" % (after["pools_dirty"], pools))
    r0 = rss()
    released = shed.trim()
    r1 = rss()
    check(released >= pools * pool * 9 // 10,
          "trim() released %d bytes, the objects filled %d" % (released, pools * pool))
    check(r0 - r1 >= released * 9 // 10,
          "RSS fell by %d bytes when trim() said %d" % (r0 - r1, released))
    end = shed.stats()
    check(end["pages_released"] - after["pages_released"] >= pools * 9 // 10,
          "pages_released grew by %d, the objects filled %d pools"
          % (end["pages_released"] - after["pages_released"], pools))
    print("ok: %d objects of %d bytes: +%d blocks of class %d; trim() gave back %d KiB, RSS -%d KiB"
          % (n, size, grew, (k + 1) * 16, released // 1024, (r0 - r1) // 1024))


def test_config():
    check(shed.config("delay_ms=100") is None, "config() of a good setting returned something")
    e = raises(ValueError, shed.config, "delay_ms=abc")
    check(str(e) == "shed: bad setting 'delay_ms=abc': unknown key or bad value "
          "(see shed_config(3))", "config('delay_ms=abc') says %r" % str(e))
    e = raises(ValueError, shed.config, "nosuchkey=1,release=manual,on_error")
    check(str(e) == "shed: bad settings 'nosuchkey=1', 'on_error': unknown key or bad "
          "value (see shed_config(3)); the other settings were applied",
          "config('nosuchkey=1,release=manual,on_error') says %r" % str(e))
    raises(TypeError, shed.config, 5)
    raises(TypeError, shed.config)
    print("ok: config(): a good setting, bad ones raise ValueError naming them")


def test_print_stats():
    out = io.StringIO()
    check(shed.print_stats(file=out) is None, "print_stats() returned something")
    text = out.getvalue()
    check(text.startswith("shed: ") and re.search(r"^ *total ", text, re.M),
          "print_stats(file=) wrote %r" % text[:200])
    saved, sys.stdout = sys.stdout, io.StringIO()
    try:
        shed.print_stats()
        to_stdout = sys.stdout.getvalue()
    finally:
        sys.stdout = saved
    check(to_stdout.startswith("shed: "), "print_stats() wrote %r to stdout" % to_stdout[:200])
    print("ok: print_stats() to a file and to sys.stdout")


def pages_of(objs, pool):
    return set(id(o) // pool for o in objs)


def new_in(pages, m, pool):
    """How many of m new objects land in one of pages."""
    new = [b"%080d" % -i for i in range(m)]
    return sum(1 for o in new if id(o) // pool in pages)


def test_prefork():
    """gc.freeze(); shed.freeze(); os.fork(): the child's new objects never go
    into the pages of the parent's objects, though they have free blocks."""
    pool = shed.stats()["pool_size"]
    objs = [b"%080d" % i for i in range(40000)]
    keep = objs[::2]                      # every other block free: holes
    del objs
    pages = pages_of(keep, pool)
    # The control: unfrozen, new objects of that size fill the holes.
    control = new_in(pages, 10000, pool)
    check(control > 1000, "unfrozen, only %d of 10000 new objects reused a hole" % control)

    if hasattr(gc, "freeze"):             # Python 3.7 on
        gc.freeze()
    shed.freeze()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        n = new_in(pages, 20000, pool)
        intact = all(o == b"%080d" % (2 * i) for i, o in enumerate(keep))
        os.write(w, ("%d %d" % (n, intact)).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        reply = f.read().split()
    _, status = os.waitpid(pid, 0)
    shed.thaw()
    if hasattr(gc, "unfreeze"):
        gc.unfreeze()
    check(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "the child ended with status %d" % status)
    check(len(reply) == 2, "the child said %r" % reply)
    check(reply[1] == "1", "the child found the parent's objects changed")
    check(reply[0] == "0", "frozen, %s of the child's 20000 new objects went into the parent's pages"
          % reply[0])
    # And the parent, thawed, fills the holes again.
    again = new_in(pages, 10000, pool)
    check(again > 1000, "thawed, only %d of 10000 new objects reused a hole" % again)
    print("ok: pre-fork: unfrozen %d of 10000 new objects reuse the holes; after gc.freeze(), "
          "shed.freeze(), fork() the child's 20000 use none; thawed %d" % (control, again))


def test_json_and_map():
    """stats_json() says what stats() says; heap_map_svg() is an SVG with a
    cell per pool in use (a class 'used' cell, at one cell per pool)."""
    import json
    import xml.etree.ElementTree as ET
    keep = [bytearray(200) for _ in range(20000)]     # pools in use, held
    d, j = shed.stats(), json.loads(shed.stats_json())
    # The interpreter allocates between the two calls (the dict, the JSON
    # text): a few pools may come and go, not hundreds.
    check(abs(j["pools_in_use"] - d["pools_in_use"]) <= 32 and j["pools_in_use"] > 400,
          "stats_json() pools %r, stats() %r" % (j["pools_in_use"], d["pools_in_use"]))
    check(abs(j["blocks_in_use"] - d["blocks_in_use"]) < 1000,
          "stats_json() blocks %r, stats() %r" % (j["blocks_in_use"], d["blocks_in_use"]))
    svg = shed.heap_map_svg()
    root = ET.fromstring(svg)
    check(root.tag.endswith("svg"), "heap_map_svg() root is %r" % root.tag)
    check(svg.count("<rect") >= d["pools_in_use"] // 64,
          "heap_map_svg() has %d rects for %d pools in use" %
          (svg.count("<rect"), d["pools_in_use"]))
    del keep
    print("ok: stats_json() agrees with stats(); heap_map_svg() parses as SVG")


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "plain":
        test_plain()
    elif mode == "fake":
        test_fake()
    elif mode == "shed":
        test_active()
        test_stats_shape()
        test_stats_follow_allocations()
        test_config()
        test_print_stats()
        test_json_and_map()
        test_prefork()
    else:
        sys.exit("usage: test_shed.py plain|fake|shed")


if __name__ == "__main__":
    main()

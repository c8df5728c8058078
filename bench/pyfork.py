"""pyfork: CPython forks children that free some of the parent's objects.

The parent builds N (int, str) tuples; then, one after another, K children
each delete every 50th tuple and exit.  Deleting writes the reference count
of every freed object, so each page that holds one is copied into the child:
how many pages that is depends on how the allocator laid the objects out.
Prints the ms per fork (fork, the child's work, its exit and the wait) and
the first child's Private_Dirty after its deletions.  Run it by hand under
each allocator, alternating (an absolute path in LD_PRELOAD: pyenv's python3
is a script that runs its helpers from another directory), e.g.

  for lib in "" $PWD/build/libshed.so /usr/lib/x86_64-linux-gnu/libmimalloc.so.2; do
      PYTHONMALLOC=malloc LD_PRELOAD=$lib python3 bench/pyfork.py 2000000 10
  done

Usage: pyfork.py [N [K]]
"""
import os
import sys
import time


def private_dirty_kb():
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1])
    return -1


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000000
    k = max(1, int(sys.argv[2]) if len(sys.argv) > 2 else 10)
    data = [(i, str(i)) for i in range(n)]
    r, w = os.pipe()
    t0 = time.time()
    for child in range(k):
        pid = os.fork()
        if pid == 0:
            del data[::50]
            if child == 0:
                os.write(w, b"%d" % private_dirty_kb())
            os._exit(0)
        os.waitpid(pid, 0)
        if child == 0:
            dirty_kb = int(os.read(r, 64))
    t1 = time.time()
    print("metric pyfork_ms %.1f" % ((t1 - t0) * 1000 / k))
    print("metric pyfork_child_dirty_mb %.1f" % (dirty_kb / 1024))


if __name__ == "__main__":
    main()

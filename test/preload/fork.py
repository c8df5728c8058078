# Run with PYTHONMALLOC=malloc: a program that forks comes out of the fork
# with its own threads only, shed's release thread having ended first.
# Python 3.12 and later count the kernel's threads at os.fork() and warn
# when there is more than one: the warnings are printed.  Under the preload
# the release thread must be running before each fork (else the check would
# prove nothing), and the parent must count one thread after it, as Python
# does.  (The child may start a thread of its own as soon as it takes pools,
# which Python's own code after the fork does.)  Prints the same lines with
# and without the preload.
import os
import sys
import warnings

preloaded = "libshed" in os.environ.get("LD_PRELOAD", "")


def threads():
    with open("/proc/self/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[17])


for rnd in range(3):
    # Pools taken, emptied, then taken again: the release thread runs (in
    # the parent of a fork it starts again only so).
    data = [str(i) * 3 for i in range(200000)]
    del data
    data = [str(i) * 5 for i in range(200000)]
    del data[::2]
    if preloaded and threads() != 2:
        sys.exit("round %d: %d threads before the fork, expected 2 (shed's release thread)"
                 % (rnd, threads()))
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        after = threads()
    os.waitpid(pid, 0)
    print("round", rnd, "threads after the fork:", after,
          "warnings:", [str(w.message) for w in warned])

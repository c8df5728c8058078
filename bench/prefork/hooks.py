"""gunicorn server hooks for the pre-fork benchmark (gunicorn -c hooks.py).

PREFORK_FREEZE says what the master does once the dataset is loaded, right
before it forks the workers: "gc" calls gc.freeze() (CPython's advice for
pre-fork servers: a worker's collections then leave the master's objects
alone), "gc+shed" also shed.freeze() (the pools in use are sealed, so that
the workers' new blocks go to fresh pages).  Each worker, once ready, writes
its pid to PREFORK_READY_DIR, for measure.py to know when to start measuring.
"""
import gc
import os


def when_ready(server):
    what = os.environ.get("PREFORK_FREEZE", "")
    if "gc" in what.split("+"):
        gc.freeze()
    if "shed" in what.split("+"):
        import shed
        shed.freeze()


def post_worker_init(worker):
    d = os.environ.get("PREFORK_READY_DIR")
    if d:
        with open(os.path.join(d, str(os.getpid())), "w"):
            pass

"""The pre-fork benchmark's WSGI application (bench/prefork/measure.py runs it
under gunicorn with --preload: the master builds the dataset, its workers
share it).

  /items?start=S&count=C  entries S..S+C-1 as JSON: what a request of a real
                          service does (reads the dataset, builds a response)
  /touch?start=S&count=C  reads the same entries and answers a checksum,
                          allocating next to nothing (a few ints, freed at
                          once): its workers' private pages are what CPython's
                          reference counts write into the shared dataset
Each response names the worker (X-Worker: pid) for the client's count.
"""
import json
import os

import dataset

ENTRIES = int(os.environ.get("PREFORK_ENTRIES", "1000000"))
KEYS, DATA = dataset.build(ENTRIES)


def items(start, count):
    out = []
    for i in range(start, start + count):
        k = KEYS[i]
        name, score, tags, point = DATA[k]
        out.append({"key": k, "name": name, "score": score, "tags": tags,
                    "point": point})
    return json.dumps({"start": start, "items": out}).encode()


def touch(start, count):
    n = 0
    for i in range(start, start + count):
        k = KEYS[i]
        name, score, tags, point = DATA[k]
        n = (n + len(k) + len(name) + len(tags[0]) + point[0]) & 0xffff
    return b"%d" % n


def application(environ, start_response):
    q = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
    try:
        start, count = int(q["start"]), int(q["count"])
        if not (0 <= start and count > 0 and start + count <= ENTRIES):
            raise ValueError
    except (KeyError, ValueError):
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"start and count must name entries of the dataset\n"]
    path = environ.get("PATH_INFO", "")
    if path == "/items":
        body, ctype = items(start, count), "application/json"
    elif path == "/touch":
        body, ctype = touch(start, count), "text/plain"
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such path\n"]
    start_response("200 OK", [("Content-Type", ctype),
                              ("Content-Length", str(len(body))),
                              ("X-Worker", str(os.getpid()))])
    return [body]

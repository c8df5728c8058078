"""The pre-fork benchmark's dataset: entry i is a function of i alone, so
that the master (app.py) builds it and the client (measure.py) checks each
response against it without sharing anything but this file.

An entry is a dict item, key "user:0000042", value a tuple of a name (str),
a score (float), tags (a small list of str) and a point (a tuple of ints):
about ten objects and 450 bytes an entry, so a million entries make a
master of about 500 MB.
"""

WORDS = ["alder", "birch", "cedar", "dogwood", "elm", "fir", "ginkgo",
         "hazel", "juniper", "larch", "maple", "oak", "pine", "rowan",
         "spruce", "willow", "yew"]


def key(i):
    return "user:%07d" % i


def entry(i):
    """(key, value) of entry i."""
    return key(i), ("%s-%d" % (WORDS[i % len(WORDS)], i),
                    (i * 7919 % 100003) / 7.0,
                    ["tag%d" % (i % 97), "group%d" % (i % 13)],
                    (i % 1000 + 1000, i // 1000 + 1000))


def build(n):
    """The keys in order, and the dict."""
    keys = []
    data = {}
    for i in range(n):
        k, v = entry(i)
        keys.append(k)
        data[k] = v
    return keys, data


def item(i):
    """Entry i as a response carries it (after a JSON round trip)."""
    k, (name, score, tags, point) = entry(i)
    return {"key": k, "name": name, "score": score, "tags": tags,
            "point": list(point)}


def touch_sum(start, count):
    """What a /touch request over entries [start, start+count) answers."""
    n = 0
    for i in range(start, start + count):
        k, (name, score, tags, point) = entry(i)
        n = (n + len(k) + len(name) + len(tags[0]) + point[0]) & 0xffff
    return n

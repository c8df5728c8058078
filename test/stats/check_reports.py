#!/usr/bin/env python3
"""make check-reports: shed's reports say what shed_stats says.

Runs test/stats/reports (built with libshed.a) and checks
  - the known pattern's histogram (class 64: 2 full pools, 1 half full, 1
    under 10%), in the struct, the JSON and the text;
  - every number of shed_stats_print_json and of the text table against the
    struct (truth.txt);
  - the heap map: XML that parses, one cell per pool in the colour of its
    state, as many of each as the struct counts, the legend's counts, the
    scale of a big region (one cell per 2 pools), and a PNG from rsvg-convert;
  - SHED_STATS=1 and SHED_STATS=json at exit, SHED_MAP at exit;
  - stats_interval_ms: JSON lines in a stats_file and on stderr, across a
    fork, in batched and inline mode (the program waits for the lines, 10 s
    at the most, and fails if they do not come);
  - the exact "shed:" line for each bad value of the new keys.

Usage: check_reports.py REPORTS_BINARY
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

SVG = "{http://www.w3.org/2000/svg}"
BINS = ["empty", "under10", "under50", "under90", "under100", "full"]
TEXT_BINS = ["empty", "<10%", "<50%", "<90%", "<100%", "full"]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("  FAILED: " + what)
    return cond


def run(prog, args, conf=None, env=None, timeout=60):
    e = {k: v for k, v in os.environ.items()
         if k not in ("SHED_CONF", "SHED_STATS", "SHED_MAP", "LD_PRELOAD")}
    if conf is not None:
        e["SHED_CONF"] = conf
    e.update(env or {})
    return subprocess.run([prog] + args, env=e, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)


def read_truth(path):
    t, classes = {}, {}
    with open(path) as f:
        for line in f:
            k, *v = line.split()
            if k.startswith("class."):
                v = [int(x) for x in v]
                classes[int(k[6:])] = {
                    "blocks_in_use": v[0], "bytes_in_use": v[1], "pools_in_use": v[2],
                    "blocks_per_pool": v[3], "pools_by_fill": dict(zip(BINS, v[4:]))}
            elif k.startswith("pools_by_fill."):
                t.setdefault("pools_by_fill", {})[BINS[int(k[14:])]] = int(v[0])
            else:
                t[k] = int(v[0])
    t["classes"] = classes
    return t


def check_json(obj, t, where):
    """Every field of the JSON object against the truth."""
    for k, v in t.items():
        if k in ("classes", "size", "bytes_resident"):
            continue
        check(obj.get(k) == v, "%s: %s is %r, shed_stats says %r" % (where, k, obj.get(k), v))
    # mincore's count may move by a page or so (the printing allocates)
    check(abs(obj["bytes_resident"] - t["bytes_resident"]) <= 16 * t["pool_size"],
          "%s: bytes_resident %d, shed_stats says %d" % (where, obj["bytes_resident"],
                                                           t["bytes_resident"]))
    listed = {c["block_size"]: c for c in obj["classes"]}
    for size, c in t["classes"].items():
        if not c["blocks_in_use"] and not c["pools_in_use"]:
            check(size not in listed, "%s: class %d listed while empty" % (where, size))
            continue
        check(listed.get(size) == dict(c, block_size=size),
              "%s: class %d is %r, shed_stats says %r" % (where, size, listed.get(size), c))


def number(s):
    return int(s.replace(",", ""))


def check_text(text, t, where):
    """The headline, the class rows and the totals against the truth."""
    lines = text.splitlines()
    check(re.match(r"shed: [\d.]+ (B|KiB|MiB|GiB) resident for [\d.]+ (B|KiB|MiB|GiB) live",
                   lines[0]) is not None, "%s: headline %r" % (where, lines[0]))
    rows = {}
    for line in lines:
        m = re.match(r"\s+(\d+|total)\s+([\d,]+)\s+[\d.]+ (?:B|KiB|MiB|GiB)\s+([\d,]+)\s+"
                     r"(\S+)\s+\|" + r"\s+([\d,]+)" * 6 + r"\s*$", line)
        if m:
            rows[m.group(1)] = [number(m.group(2)), number(m.group(3))] + \
                [number(m.group(5 + i)) for i in range(6)]
    for size, c in t["classes"].items():
        want = [c["blocks_in_use"], c["pools_in_use"]] + [c["pools_by_fill"][b] for b in BINS]
        if c["blocks_in_use"] or c["pools_in_use"]:
            check(rows.get(str(size)) == want,
                  "%s: row of class %d is %r, shed_stats says %r" % (where, size,
                                                                     rows.get(str(size)), want))
    want = [t["blocks_in_use"], t["pools_in_use"]] + [t["pools_by_fill"][b] for b in BINS]
    check(rows.get("total") == want, "%s: total row %r, shed_stats says %r" %
          (where, rows.get("total"), want))
    m = re.search(r"pools: ([\d,]+) in use, ([\d,]+) dirty, ([\d,]+) releasing, "
                  r"([\d,]+) released \(([\d,]+) never used\)", text)
    check(m is not None and [number(x) for x in m.groups()] ==
          [t["pools_in_use"], t["pools_dirty"], t["pools_releasing"], t["pools_released"],
           t["pools_untouched"]], "%s: pools line" % where)


def svg_cells(path):
    root = ET.parse(path).getroot()
    check(root.tag == SVG + "svg", "%s: the root is <svg>" % path)
    groups = {g.get("id"): g for g in root.iter(SVG + "g")}
    cells = {}
    for r in groups["pools"].iter(SVG + "rect"):
        cells[r.get("class")] = cells.get(r.get("class"), 0) + 1
    legend = {}
    texts = [x.text for x in groups["legend"].iter(SVG + "text")]
    swatches = [r.get("class") for r in groups["legend"].iter(SVG + "rect")]
    for cls, count in zip(swatches, texts[2::2]):
        legend[cls] = number(count)
    title = " ".join(x.text for x in groups["title"].iter(SVG + "text"))
    return root, cells, legend, title


def states_of(t):
    want = dict(t["pools_by_fill"])
    want.update(dirty=t["pools_dirty"], releasing=t["pools_releasing"],
                released=t["pools_released"] - t["pools_untouched"],
                untouched=t["pools_untouched"])
    return want


def check_map(path, t, where, per=1):
    root, cells, legend, title = svg_cells(path)
    want = states_of(t)
    check(legend == want, "%s: legend %r, shed_stats says %r" % (where, legend, want))
    if per == 1:
        got = {k: cells.get(k, 0) for k in want}
        check(got == want, "%s: cells %r, shed_stats says %r" % (where, got, want))
        check("one cell per pool" in title, "%s: title %r" % (where, title))
    else:
        npools = t["arenas"] * 64
        check(sum(cells.values()) == (npools + per - 1) // per,
              "%s: %d cells for %d pools at %d per cell" % (where, sum(cells.values()),
                                                            npools, per))
        check("one cell per %d pools" % per in title, "%s: title %r" % (where, title))
    return root


def check_png(svg, png):
    r = subprocess.run(["rsvg-convert", "-o", png, svg], stderr=subprocess.PIPE, text=True)
    if not check(r.returncode == 0, "rsvg-convert %s: %s" % (svg, r.stderr.strip())):
        return
    with open(png, "rb") as f:
        head = f.read(24)
    root = ET.parse(svg).getroot()
    w, h = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    check(head[:8] == b"\x89PNG\r\n\x1a\n" and (w, h) == (int(root.get("width")),
                                                       int(root.get("height"))),
          "%s: a PNG of %dx%d, the SVG's size" % (png, w, h))


def main(prog):
    tmp = tempfile.mkdtemp(prefix="shed-reports-")

    print("== the known pattern (release=manual)")
    mapx = os.path.join(tmp, "exit.svg")
    r = run(prog, ["pattern", tmp], conf="release=manual",
            env={"SHED_STATS": "json", "SHED_MAP": mapx})
    check(r.returncode == 0, "reports pattern: exit %d: %s" % (r.returncode, r.stderr))
    t = read_truth(os.path.join(tmp, "truth.txt"))
    c64 = t["classes"][64]
    fill = c64["pools_by_fill"]
    check([fill[b] for b in ("full", "under90", "under10", "under50", "under100")] ==
          [2, 1, 1, 0, 0] and fill["empty"] == c64["pools_in_use"] - 4,
          "class 64: pools by fill %r, pattern made 2 full, 1 half, 1 under 10%%" % fill)
    check(c64["blocks_per_pool"] == t["pool_size"] // 64, "class 64: blocks_per_pool")
    check(t["pools_dirty"] >= 4 and t["pools_released"] > t["pools_untouched"],
          "pattern: %d dirty pools, %d released of which %d never used" %
          (t["pools_dirty"], t["pools_released"], t["pools_untouched"]))
    with open(os.path.join(tmp, "stats.json")) as f:
        text = f.read()
    check(text.count("\n") == 1 and text.endswith("}\n"), "stats.json is one line")
    check_json(json.loads(text), t, "shed_stats_print_json")
    with open(os.path.join(tmp, "stats.txt")) as f:
        check_text(f.read(), t, "shed_stats_print")
    check_map(os.path.join(tmp, "map.svg"), t, "shed_heap_map_svg")
    check_png(os.path.join(tmp, "map.svg"), os.path.join(tmp, "map.png"))
    # at exit: the same numbers (nothing changed after the truth was taken)
    last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "{}"
    check_json(json.loads(last), t, "SHED_STATS=json")
    check_map(mapx, t, "SHED_MAP")
    r = run(prog, ["pattern", tmp], conf="release=manual", env={"SHED_STATS": "1"})
    t = read_truth(os.path.join(tmp, "truth.txt"))
    check_text(r.stderr, t, "SHED_STATS=1")

    print("== SHED_STATS=json at exit: one write(2), as processes share stderr")
    trace = os.path.join(tmp, "classes.strace")
    r = subprocess.run(["strace", "-qq", "-o", trace, "-e", "trace=write", "-e", "signal=none",
                        "-s", "0", prog, "classes"],
                       env=dict(os.environ, SHED_STATS="json"), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    line = r.stderr.splitlines()[-1] if r.stderr.strip() else ""
    with open(trace) as f:
        writes = [int(m.group(1)) for m in
                  (re.match(r'write\(\d+, ""\.\.\., \d+\)\s+= (\d+)', x) for x in f) if m]
    check(r.returncode == 0 and len(line) > 4096 and json.loads(line)["classes"],
          "classes: exit %d, a JSON object of %d bytes" % (r.returncode, len(line)))
    check(writes and writes[-1] == len(line) + 1,
          "classes: the %d-byte JSON object took the writes %s" % (len(line) + 1, writes))

    print("== SHED_STATS=1 in a program that closes the descriptors it did not open")
    fds = os.path.join(tmp, "fds")
    os.mkdir(fds)
    r = run(prog, ["closefds", fds], env={"SHED_STATS": "1"})
    check(r.returncode == 0 and r.stderr.startswith("shed: "),
          "closefds: exit %d, stderr %r" % (r.returncode, r.stderr[:80]))
    for name in sorted(os.listdir(fds)):
        size = os.path.getsize(os.path.join(fds, name))
        check(size == 0, "closefds: the program's file %s got %d bytes of shed's report" %
              (name, size))

    print("== a big region: 130 arenas")
    r = run(prog, ["big", tmp], conf="release=manual")
    check(r.returncode == 0, "reports big: exit %d: %s" % (r.returncode, r.stderr))
    t = read_truth(os.path.join(tmp, "truth.txt"))
    check(t["arenas"] > 128, "big: %d arenas" % t["arenas"])
    check_map(os.path.join(tmp, "map.svg"), t, "big map", per=2)
    check_png(os.path.join(tmp, "map.svg"), os.path.join(tmp, "big.png"))

    print("== stats_interval_ms")
    for mode in ("batched", "inline"):
        path = os.path.join(tmp, "lines-%s.json" % mode)
        r = run(prog, ["lines", path, "5"],
                conf="release=%s,stats_interval_ms=20,stats_file=%s" % (mode, path))
        check(r.returncode == 0 and r.stderr == "",
              "%s: lines in a stats_file: exit %d: %s" % (mode, r.returncode, r.stderr))
        with open(path) as f:
            objs = [json.loads(x) for x in f]
        pids = {o["pid"] for o in objs}
        check(len(pids) == 2 and all(o["release_mode"] == mode for o in objs),
              "%s: %d lines from %d processes" % (mode, len(objs), len(pids)))
    err = os.path.join(tmp, "stderr.txt")
    with open(err, "w") as f:
        e = {k: v for k, v in os.environ.items() if k not in ("SHED_STATS", "SHED_MAP")}
        e["SHED_CONF"] = "stats_interval_ms=20"
        p = subprocess.run([prog, "lines", "-", "3"], env=e, stderr=f, timeout=60)
    with open(err) as f:
        lines = f.read().splitlines()
    check(p.returncode == 0 and len(lines) >= 6 and all(json.loads(x)["pid"] for x in lines),
          "lines on stderr: exit %d, %d lines" % (p.returncode, len(lines)))

    print("== bad values")
    bad = os.path.join(tmp, "no-such-dir", "x")
    for conf, env, want in [
            ("stats_interval_ms=abc", {}, "bad value in SHED_CONF, default kept: stats_interval_ms=abc"),
            ("stats_interval_ms=-5", {}, "bad value in SHED_CONF, default kept: stats_interval_ms=-5"),
            ("stats_interval_ms=86400001", {},
             "bad value in SHED_CONF, default kept: stats_interval_ms=86400001"),
            ("stats_file=", {}, "bad value in SHED_CONF, default kept: stats_file="),
            ("stats_file=" + "x" * 300, {},
             "bad value in SHED_CONF, default kept: stats_file=" + "x" * 200),
            ("stats=jsn", {}, "bad value in SHED_CONF, default kept: stats=jsn"),
            ("stats_interval_ms=10,stats_file=" + bad, {},
             "cannot open stats_file, no stats written: " + bad),
            ("", {"SHED_MAP": bad}, "cannot write the heap map of SHED_MAP: " + bad)]:
        if "stats_interval_ms=10" in conf:   # the thread's warning, once
            out = os.path.join(tmp, "warned.txt")
            with open(out, "w") as f:
                e = {k: v for k, v in os.environ.items() if k not in ("SHED_STATS", "SHED_MAP")}
                e["SHED_CONF"] = conf
                p = subprocess.run([prog, "warned"], env=e, stderr=f, timeout=60)
            with open(out) as f:
                got = f.read().splitlines()
            check(p.returncode == 0, "warned: exit %d" % p.returncode)
        else:
            r = run(prog, ["noop"], conf=conf, env=env)
            got = r.stderr.splitlines()
        want = ("shed: " + want)[:254]       # shed_warn's line is 254 characters at most
        check(got == [want], "%s %r: said %r, not %r" % (conf, env, got, [want]))

    if failures:
        print("check-reports: %d FAILED (the files are in %s)" % (len(failures), tmp))
        return 1
    shutil.rmtree(tmp)
    print("check-reports: text, JSON, heap map, exit reports, interval lines and messages agree "
          "with shed_stats")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

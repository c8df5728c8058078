"""A json dump/load round trip of a large document, as a web service does.

Builds a list of N records (ints, floats, short and long strings, nested
lists and dicts), dumps it to text, loads the text back and checks that the
result equals the document; exits 1 if not.  bench/programs.py times it
under each allocator (PYTHONMALLOC=malloc, and pymalloc).
Usage: python3 bench/jsonrt.py [N]
"""
import json
import sys


def record(i):
    return {"id": i, "name": "user%d" % i, "score": i * 0.25,
            "active": i % 3 == 0, "tags": ["t%d" % (i % 17), "g%d" % (i % 5)],
            "address": {"street": "%d Long Road" % (i % 1000),
                        "city": "city-%d" % (i % 97), "zip": "%05d" % i},
            "history": [{"at": i + k, "what": "x" * (k * 7 % 40)}
                        for k in range(i % 6)],
            "note": None if i % 4 else "n" * (i % 300)}


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300000
    doc = {"version": 1, "records": [record(i) for i in range(n)]}
    text = json.dumps(doc)
    back = json.loads(text)
    if back != doc:
        sys.exit("jsonrt: the loaded document differs from the dumped one")
    # Dump what was loaded: its text must be the same, byte for byte.
    if json.dumps(back) != text:
        sys.exit("jsonrt: the document dumped again differs")
    print("jsonrt: %d records, %d bytes of json" % (n, len(text)))


if __name__ == "__main__":
    main()

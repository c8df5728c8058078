#!/bin/sh
# cpython.sh LIBSHED_SO [PYTHON [TEST...]]
#
# CPython's own regression suite (python -m test) with every object in a
# shed block: PYTHONMALLOC=malloc and LD_PRELOAD=libshed.so.  The suite runs
# twice, plain and preloaded, with the same options; a test file that fails
# preloaded must fail plain too (some need a network, a terminal or devices
# this machine lacks).  A test file that fails only preloaded is run twice
# more, alone and preloaded, to tell a flaky test from shed: it fails the
# check only if it fails again.  TEST...: test files (default: all of them).
#
# Not part of make check: the suite takes minutes per run, and some of its
# tests are timed.  make check-cpython runs it; PRELOAD_PYTHON picks the
# interpreter (Debian's python3 needs libpython3.X-testsuite for its tests).
set -uf   # -f: the -i pattern below is not a file name
lib=$(realpath "$1")
shift
python=${1:-/usr/bin/python3}
if [ $# -gt 0 ]; then shift; fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shed-cpython.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

if ! "$python" -c 'import test.test_list' 2>/dev/null; then
    ver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || {
        echo "check-cpython: $python does not run as a Python interpreter" >&2
        exit 1
    }
    case $python in
    /usr/bin/*) sh "$(dirname "$0")/../../tools/need.sh" "libpython$ver-testsuite" || exit 1 ;;
    *) echo "check-cpython: $python has no test suite (import test.test_list failed)" >&2
       exit 1 ;;
    esac
fi

# The suite writes into its working directory and HOME; the AF_VSOCK tests
# wait forever for a peer on virtual machines without one, whatever malloc.
export HOME="$tmp/home" LC_ALL=C.UTF-8 PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
unset LD_PRELOAD SHED_CONF SHED_STATS PYTHONMALLOC
mkdir -p "$HOME"
jobs=$(nproc 2>/dev/null || echo 2)
opts="-j$jobs --timeout 900 -i *VSOCK*"

# failed LOG: the test files the summary of a run lists as failed, crashed,
# timed out or changing the environment, one a line.
failed() {
    awk '/^[0-9]+ tests? (failed|altered|crashed|timed out)/ { on = 1; next }
         on && /^    / { for (i = 1; i <= NF; i++) print $i; next }
         { on = 0 }' "$1" | sort -u
}

# suite LOG [PRELOAD] TEST...: one run of the suite, its summary in LOG.
# $opts is split into words on purpose (set -f keeps the pattern whole).
# shellcheck disable=SC2086
suite() {
    log=$1 pre=$2
    shift 2
    ( cd "$tmp" && if [ -n "$pre" ]; then
          env PYTHONMALLOC=malloc LD_PRELOAD="$pre" "$python" -m test $opts "$@"
      else
          "$python" -m test $opts "$@"
      fi ) > "$log" 2>&1
    grep -E '^(Total duration|Total tests|Tests result|Result):' "$log" | sed 's/^/    /'
}

echo "check-cpython: $("$python" -V 2>&1) plain, $jobs jobs"
suite "$tmp/plain.log" "" "$@"
echo "check-cpython: preloaded with PYTHONMALLOC=malloc"
suite "$tmp/shed.log" "$lib" "$@"
failed "$tmp/plain.log" > "$tmp/plain.failed"
failed "$tmp/shed.log" > "$tmp/shed.failed"
grep -Eq '^(Total tests|Tests result):' "$tmp/shed.log" || {
    echo "check-cpython: the preloaded run printed no summary:" >&2
    tail -20 "$tmp/shed.log" >&2
    exit 1
}
[ -s "$tmp/plain.failed" ] &&
    echo "check-cpython: failing plain too (not counted): $(tr '\n' ' ' < "$tmp/plain.failed")"

bad=
for t in $(comm -13 "$tmp/plain.failed" "$tmp/shed.failed"); do
    echo "check-cpython: $t failed only preloaded; running it again, alone"
    for try in 1 2; do
        if ( cd "$tmp" && env PYTHONMALLOC=malloc LD_PRELOAD="$lib" \
                 "$python" -m test --timeout 900 -v "$t" ) > "$tmp/$t.$try.log" 2>&1; then
            echo "check-cpython: $t passed on try $try (flaky, not counted)"
            continue 2
        fi
    done
    echo "check-cpython: $t fails preloaded; the end of its log:" >&2
    tail -40 "$tmp/$t.2.log" >&2
    bad="$bad $t"
done
if [ -n "$bad" ]; then
    echo "check-cpython: FAILED under ${lib##*/}:$bad" >&2
    exit 1
fi
echo "check-cpython: every test file passing plain passes preloaded"

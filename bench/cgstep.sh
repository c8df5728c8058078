#!/bin/sh
# Instructions, branch mispredictions and D1 misses per step of a workload,
# from cachegrind: the run with STEPS steps minus the run with 1 step (set-up
# and exit cancel out), divided by STEPS.  For shed, preload a build made
# with EXTRA_CFLAGS=-DNVALGRIND (under valgrind shed otherwise takes its
# checked slow paths, as memcheck needs).
# Usage: bench/cgstep.sh LIB STEPS COMMAND...   ({} in COMMAND: the steps)
#   make EXTRA_CFLAGS=-DNVALGRIND BUILD=build/nv
#   bench/cgstep.sh build/nv/libshed.so 1M build/bench/churn {} 100k
set -e
[ $# -ge 3 ] || { sed -n '2,9p' "$0"; exit 2; }
lib=$(realpath "$1"); steps=$2; shift 2
one() {   # steps -> "instructions mispredictions D1-misses"
    n=$1; shift
    cmd=$(printf '%s\n' "$@" | sed "s/{}/$n/g" | tr '\n' ' ')
    LD_PRELOAD=$lib valgrind --tool=cachegrind --cache-sim=yes --branch-sim=yes \
        --cachegrind-out-file=/dev/null $cmd 2>&1 >/dev/null |
        awk -F: '/I   refs|Mispredicts|D1  misses/ { split($2, v, " "); gsub(",", "", v[1]); printf "%s ", v[1] }'
}
a=$(one 1 "$@"); b=$(one "$steps" "$@")
python3 -c "
import sys
a, b, n = '$a'.split(), '$b'.split(), '$steps'
n = float(n[:-1]) * {'k': 1e3, 'M': 1e6, 'm': 1e6}[n[-1]] if n[-1] in 'kMm' else float(n)
i, d, m = [(float(y) - float(x)) / n for x, y in zip(a, b)]
print('instructions %.1f  mispredictions %.3f  D1 misses %.2f per step' % (i, m, d))"

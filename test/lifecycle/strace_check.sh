#!/bin/sh
# strace_check.sh PROG: run PROG (strace_prog.c) under
#   strace -f -e trace=madvise,process_madvise
# and attribute every such call to a thread.  Fails when a call was made by
# the main thread or an application thread (PROG prints their ids), when
# no call at all was seen (the check would prove nothing), or when PROG
# fails.  Calls on shed's region are shed's releases; the others are listed.
set -u
prog=$1
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
if ! strace -f -qq -e trace=madvise,process_madvise -o "$dir/trace" "$prog" >"$dir/out"; then
    echo "check-lifecycle-strace: $prog failed under strace:" >&2
    cat "$dir/out" >&2
    exit 1
fi
awk -v outf="$dir/out" '
function hex(s,   i, c, v) {
    s = tolower(s); sub(/^0x/, "", s); v = 0
    for (i = 1; i <= length(s); i++) {
        c = index("0123456789abcdef", substr(s, i, 1)); if (!c) break
        v = v * 16 + c - 1
    }
    return v
}
BEGIN {
    while ((getline l < outf) > 0) {
        split(l, f, " ")
        if (f[1] == "MAIN" || f[1] == "APP") { app[f[2]] = f[1]; napp++ }
        if (f[1] == "CHILD") child = l
        if (f[1] == "REGION") { lo = hex(f[2]); hi = hex(f[3]) }
        if (f[1] == "STATS") stats = l
    }
}
/madvise\(|process_madvise\(/ {
    tid = $1
    # the first address in the call: madvise(ADDR, ...) or an iovec
    # process_madvise(fd, [{iov_base=ADDR, ...
    a = $0; sub(/^[0-9]+ +/, "", a)
    if (match(a, /0x[0-9a-f]+/)) addr = hex(substr(a, RSTART, RLENGTH)); else addr = -1
    inreg = addr >= lo && addr < hi
    calls++
    if (tid in app) {
        bad++
        printf "  %s thread %s: %s%s\n", app[tid], tid, a, inreg ? "" : "   (not on shed'"'"'s region)"
    } else {
        by[tid]++
        if (inreg) shed++
    }
}
END {
    if (!napp || !hi) { print "check-lifecycle-strace: no thread ids or region from the program"; exit 1 }
    printf "check-lifecycle-strace: %d calls, %d on shed'"'"'s region by other threads", calls, shed
    for (t in by) printf " (thread %s: %d)", t, by[t]
    printf "; %d by the program'"'"'s %d threads\n  %s\n  %s\n", bad, napp, stats, child
    if (bad) { print "check-lifecycle-strace: FAIL: the program'"'"'s threads made release calls"; exit 1 }
    if (!shed) { print "check-lifecycle-strace: FAIL: no release call seen at all"; exit 1 }
}' "$dir/trace"

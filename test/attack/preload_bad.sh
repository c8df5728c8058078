#!/bin/sh
# preload_bad.sh BADFREE LIBSHED_SO: bad frees through plain free() under
# LD_PRELOAD give shed's one line "shed: <error> <address> in free()" and
# SIGABRT; with SHED_CONF=on_error=report the line and a clean exit.
prog=$1 lib=$2 fails=0 out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT

check() {   # check MODE CONF WANT_STATUS ERROR_WORDS
    SHED_CONF=$2 LD_PRELOAD=$lib "$prog" "$1" >"$out" 2>"$err"
    st=$?
    want="shed: $4 $(cat "$out") in free()"
    if [ "$st" != "$3" ] || [ "$(grep -c '^shed: ' "$err")" != 1 ] || ! grep -qxF "$want" "$err"; then
        echo "preload_bad: $1 ($2): status $st (want $3), want the one line \"$want\"; stderr:" >&2
        cat "$err" >&2
        fails=$((fails + 1))
    fi
}

# The program itself is fine when nothing is wrong.
if ! LD_PRELOAD=$lib "$prog" ok >/dev/null 2>"$err" || [ -s "$err" ]; then
    echo "preload_bad: the correct run failed or wrote to stderr:" >&2; cat "$err" >&2
    fails=$((fails + 1))
fi
# 134 = 128 + SIGABRT as the shell reports a child killed by abort()
check double "" 134 "double free of"
check interior "" 134 "interior pointer"
check double on_error=report 0 "double free of"
check interior on_error=report 0 "interior pointer"
[ $fails = 0 ] && echo "preload_bad: double free and interior pointer through free() reported as expected (4 runs)"
exit $fails

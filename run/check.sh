#!/bin/sh
# check.sh SHED_RUN PYTHON [INSTALLED_SHED_RUN]: the tests of "make check-run".
#
# What shed-run(1) promises: the library is preloaded (after the caller's
# LD_PRELOAD, not instead of it) and is the malloc; PYTHONMALLOC=malloc
# unless the caller set it; -c reaches shed as SHED_CONF (after the
# caller's) and --stats as SHED_STATS=1; the command's exit status comes
# back; a missing library, a missing command and bad usage get one line and
# a non-zero exit, and nothing runs.  INSTALLED_SHED_RUN, made by "make
# install" into a scratch PREFIX, must work the same way.
set -u
shed_run=${1:?usage: check.sh SHED_RUN PYTHON [INSTALLED_SHED_RUN]}
python=${2:?usage: check.sh SHED_RUN PYTHON [INSTALLED_SHED_RUN]}
installed=${3:-}
lib=$(cd "$(dirname "$shed_run")" && pwd)/libshed.so
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fails=0
unset LD_PRELOAD PYTHONMALLOC SHED_CONF SHED_STATS

fail() {
    echo "check-run: FAILED: $*" >&2
    fails=$((fails + 1))
}

# expect WHAT WANT GOT
expect() {
    [ "$3" = "$2" ] || fail "$1: expected '$2', got '$3'"
}

# one_line WHAT CODE FILE: a non-zero exit code and exactly one line.
one_line() {
    [ "$2" -ne 0 ] || fail "$1: exit status 0"
    [ "$(wc -l <"$3")" -eq 1 ] || { fail "$1: $(wc -l <"$3") lines on stderr:"; sed 's/^/    /' "$3" >&2; }
}

active='import shed; print(shed.active())'

# ---- the library is preloaded and is the malloc ----
expect "shed-run python3 -c '$active'" True "$("$shed_run" "$python" -c "$active")"
expect "LD_PRELOAD" "$lib" "$("$shed_run" sh -c 'echo "$LD_PRELOAD"')"
# Added to the caller's LD_PRELOAD (another library that is not a malloc).
other=$(ls /lib/*/libm.so.6 /usr/lib/*/libm.so.6 2>/dev/null | head -n 1)
expect "LD_PRELOAD=libm shed-run: LD_PRELOAD" "$other $lib" \
    "$(LD_PRELOAD=$other "$shed_run" sh -c 'echo "$LD_PRELOAD"')"
expect "LD_PRELOAD=libm shed-run: active()" True "$(LD_PRELOAD=$other "$shed_run" "$python" -c "$active")"

# ---- PYTHONMALLOC ----
pm='import os; print(os.environ.get("PYTHONMALLOC", "unset"))'
expect "PYTHONMALLOC by default" malloc "$("$shed_run" "$python" -c "$pm")"
expect "PYTHONMALLOC=pymalloc kept" pymalloc "$(PYTHONMALLOC=pymalloc "$shed_run" "$python" -c "$pm")"
expect "PYTHONMALLOC= (empty) kept" "" "$(PYTHONMALLOC= "$shed_run" sh -c 'echo "$PYTHONMALLOC"')"

# ---- -c and --stats reach shed ----
"$shed_run" -c bogus_key=1 "$python" -c pass 2>"$tmp/err"
expect "-c bogus_key=1: shed's warning" "shed: unknown SHED_CONF key: bogus_key" "$(cat "$tmp/err")"
expect "-c after the caller's SHED_CONF" "delay_ms=50,release=manual,max_dirty=4" \
    "$(SHED_CONF=delay_ms=50 "$shed_run" -c release=manual -cmax_dirty=4 sh -c 'echo "$SHED_CONF"')"
# release=manual from -c: nothing is released until trim(), however long.
"$shed_run" -c release=manual,delay_ms=0 "$python" -c '
import shed, time
x = [b"%0200d" % i for i in range(20000)]
del x
t = time.time() + 0.3
while time.time() < t:
    pass
s = shed.stats()
assert s["pages_released"] == 0 and s["pools_dirty"] > 500, s
print("ok")' >"$tmp/out" 2>&1
expect "-c release=manual,delay_ms=0: no release before trim()" ok "$(cat "$tmp/out")"
"$shed_run" --stats "$python" -c pass 2>"$tmp/err"
grep -q '^shed: ' "$tmp/err" && grep -q '^ *total ' "$tmp/err" ||
    { fail "--stats: no statistics at exit:"; sed 's/^/    /' "$tmp/err" >&2; }
expect "--stats: SHED_STATS" 1 "$("$shed_run" --stats sh -c 'echo "$SHED_STATS"')"
expect "no --stats: SHED_STATS" unset "$("$shed_run" sh -c 'echo "${SHED_STATS-unset}"')"

# ---- arguments and exit status pass through ----
expect "arguments" "-c|--stats|a b" "$("$shed_run" -- sh -c 'printf "%s|" "$@"; echo "$0"' "a b" -c --stats)"
"$shed_run" sh -c 'exit 3'
expect "exit status" 3 "$?"

# ---- failures: one line, non-zero, nothing run ----
sed -e "s|@LIBDIR@|$tmp/nowhere|" -e "s|@PYDIR@|$tmp/nowhere|" "$here/shed-run.in" >"$tmp/shed-run"
sh "$tmp/shed-run" touch "$tmp/ran" 2>"$tmp/err"
code=$?
one_line "missing library" "$code" "$tmp/err"
expect "missing library" "shed-run: $tmp/nowhere/libshed.so not found (build it with make, or install shed again)" \
    "$(cat "$tmp/err")"
"$shed_run" shed-no-such-command arg 2>"$tmp/err"
code=$?
one_line "missing command" "$code" "$tmp/err"
expect "missing command" "shed-run: shed-no-such-command: command not found" "$(cat "$tmp/err")"
"$shed_run" "$tmp/nowhere/prog" 2>"$tmp/err"
code=$?
one_line "missing program path" "$code" "$tmp/err"
expect "missing program path" "shed-run: $tmp/nowhere/prog: command not found" "$(cat "$tmp/err")"
usage="usage: shed-run [-c key=value,...] [--stats] [--] command [args...]"
"$shed_run" 2>"$tmp/err"
code=$?
one_line "no command" "$code" "$tmp/err"
expect "no command" "shed-run: no command given ($usage)" "$(cat "$tmp/err")"
"$shed_run" --bogus touch "$tmp/ran" 2>"$tmp/err"
code=$?
one_line "unknown option" "$code" "$tmp/err"
expect "unknown option" "shed-run: unknown option '--bogus' ($usage)" "$(cat "$tmp/err")"
"$shed_run" -c 2>"$tmp/err"
code=$?
one_line "-c without a value" "$code" "$tmp/err"
expect "-c without a value" "shed-run: -c needs a value (key=value,...)" "$(cat "$tmp/err")"
expect "--help" "$usage" "$("$shed_run" --help)"
rm -f "$tmp/ran"
"$shed_run" -c release=manual --bogus touch "$tmp/ran" 2>/dev/null
[ -e "$tmp/ran" ] && fail "a command ran after a usage error"

# ---- installed ----
if [ -n "$installed" ]; then
    expect "installed shed-run: active()" True "$(env -u PYTHONPATH "$installed" "$python" -c "$active")"
    expect "installed shed-run: LD_PRELOAD" "$(cd "$(dirname "$installed")/.." && pwd)/lib/libshed.so" \
        "$("$installed" sh -c 'echo "$LD_PRELOAD"')"
fi

if [ "$fails" -ne 0 ]; then
    echo "check-run: $fails failed" >&2
    exit 1
fi
echo "check-run: all passed"

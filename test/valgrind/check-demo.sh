#!/bin/sh
# check-demo.sh BINARY SOURCE: run the deliberately wrong program under
# memcheck and check that memcheck reports each of its bugs at the source
# line marked "BUG: <name>", with the right kind of report, and nothing else.
set -u
bin=$1 src=$2
name=$(basename "$src")
log=$(mktemp) err=$(mktemp)
trap 'rm -f "$log" "$err"' EXIT

SHED_CONF=on_error=report valgrind --error-exitcode=99 --log-file="$log" "$bin" 2>"$err"
rc=$?
fail=0
bad() { echo "check-memcheck-demo: FAIL: $*" >&2; fail=1; }

[ "$rc" = 99 ] || bad "valgrind exit status $rc, expected 99 (errors found)"

# One line per memcheck error: "<kind>|<frames of its stack>|<first detail line>".
errors=$(sed 's/^==[0-9]*== //' "$log" | awk '
    /^(Invalid|Conditional|Use of|Mismatched|Syscall param|Source and destination)/ {
        kind = $0; frames = ""; detail = ""; instack = 1; next }
    kind != "" && instack && /^   (at|by) / {
        if (match($0, /\([^()]*:[0-9]+\)$/)) frames = frames " " substr($0, RSTART + 1, RLENGTH - 2)
        next }
    kind != "" && instack { instack = 0; detail = $0; print kind "|" frames "|" detail; kind = "" }')

# expect MARKER KIND DETAIL: an error of KIND whose own stack (not the
# alloc/free stacks) passes through the marked line, with DETAIL in its
# description.
expect() {
    line=$(grep -n "BUG: $1 \*/" "$src" | cut -d: -f1)
    [ -n "$line" ] || { bad "no marker \"BUG: $1\" in $src"; return; }
    if printf '%s\n' "$errors" | grep -F -- "$2|" | grep -F -- " $name:$line" |
            grep -F -q -- "$3"; then
        echo "check-memcheck-demo: $1 reported at $name:$line ($2)"
    else
        bad "$1: no \"$2\" at $name:$line (\"$3\"); memcheck said:"
        printf '%s\n' "$errors" >&2
    fi
}

expect use-after-free "Invalid read of size 1" "inside a block of size 20 free'd"
expect double-free "Invalid free() / delete / delete[] / realloc()" "inside a block of size 20 free'd"
expect past-the-end "Invalid read of size 1" "0 bytes after a block of size 20 alloc'd"
expect medium-use-after-free "Invalid read of size 1" "inside a block of size 3,000 free'd"
expect medium-double-free "Invalid free() / delete / delete[] / realloc()" "inside a block of size 3,000 free'd"
expect medium-past-the-end "Invalid read of size 1" "0 bytes after a block of size 3,000 alloc'd"

n=$(printf '%s\n' "$errors" | grep -c .)
[ "$n" = 6 ] || bad "memcheck reported $n errors, expected exactly 6"
grep -q "ERROR SUMMARY: 6 errors" "$log" || bad "memcheck's summary does not say 6 errors"
[ "$(grep -c "^shed: double free of 0x[0-9a-f]* in " "$err")" = 2 ] ||
    bad "shed did not report both double frees"
grep -q "no leaks are possible\|definitely lost: 0 bytes" "$log" || bad "memcheck saw a leak"

[ "$fail" = 0 ] || { echo "--- valgrind log:" >&2; cat "$log" >&2; exit 1; }
echo "check-memcheck-demo: memcheck reported all 6 bugs (small and medium blocks) at their lines"

#!/bin/sh
# check-leaks.sh BINARY SOURCE [LIBSHED_SO]: run leaks.c's program under
# memcheck (preloading LIBSHED_SO with --soname-synonyms=somalloc=NONE when
# given, as the README says) and check that memcheck reports what it would on
# its own malloc: every leaked block "definitely lost" at its allocating line
# (each small and each medium class alone, then in bulk), a block still
# referenced not lost, and a write through a stale pointer, after its block's
# size was allocated again, as an invalid write at its line (a small and a
# medium block).  See leaks.c for the phases.
set -u
bin=$1 src=$2 so=${3:-}
name=$(basename "$src")
what=linked
[ -n "$so" ] && what=preloaded
log=$(mktemp)
trap 'rm -f "$log"' EXIT

if [ -n "$so" ]; then
    LD_PRELOAD=$so valgrind --soname-synonyms=somalloc=NONE --leak-check=full \
        --show-leak-kinds=all --log-file="$log" "$bin" >/dev/null 2>&1
else
    valgrind --leak-check=full --show-leak-kinds=all --log-file="$log" "$bin" >/dev/null 2>&1
fi

fail=0
bad() { echo "check-memcheck-leaks ($what): FAIL: $*" >&2; fail=1; }
line_of() {
    l=$(grep -n "/\* $1 \*/" "$src" | cut -d: -f1)
    [ -n "$l" ] || bad "no marker $1 in $src"
    echo "$l"
}
one=$(line_of LEAK-ONE) keep=$(line_of KEEP) bulk=$(line_of LEAK-BULK) uaf=$(line_of UAF)
mone=$(line_of MLEAK-ONE) mkeep=$(line_of MKEEP) mbulk=$(line_of MLEAK-BULK) muaf=$(line_of MUAF)

# One line per loss record: "phase|kind|bytes|+bytes|blocks|+blocks|frames",
# and per error: "phase|error|kind|frames|detail".  The +counts are those of
# VALGRIND_DO_ADDED_LEAK_CHECK; the check at exit has none (phase "end").
records=$(sed 's/^==[0-9]*== //' "$log" | tr -d , | awk '
    /^\*\*[0-9]+\*\* phase / { ph = $3 ($4 != "" ? " " $4 : ""); next }
    /^[0-9]+ (\(\+[0-9]+\) )?bytes in [0-9]+ (\(\+[0-9]+\) )?blocks are .* in loss record/ {
        added = ($2 ~ /^\(\+/)
        bytes = $1; pb = added ? substr($2, 3, length($2) - 3) : $1
        i = added ? 5 : 4
        blocks = $i; pk = added ? substr($(i + 1), 3, length($(i + 1)) - 3) : blocks
        kind = $0; sub(/.* blocks are /, "", kind); sub(/ in loss record.*/, "", kind)
        rec = ph "|" kind "|" bytes "|" pb "|" blocks "|" pk "|"; err = ""; next }
    /^(Invalid|Conditional|Use of|Mismatched)/ { err = ph "|error|" $0 "|"; rec = ""; next }
    /^   (at|by) / {
        if (match($0, /\([^()]*:[0-9]+\)$/)) f = " " substr($0, RSTART + 1, RLENGTH - 2); else f = ""
        if (rec != "") rec = rec f; else if (err != "") err = err f
        next }
    err != "" && /^ *Address / { print err "|" $0; err = ""; next }
    /^$/ { if (rec != "") print rec; rec = ""; next }')

# record PHASE KIND LINE: the +bytes and +blocks of the record of that kind
# allocated at LINE of the source in that phase ("" when there is none).
# Records made by pthread_create are not the program's blocks: the release
# thread's, which the first allocation starts, has a possibly lost DTV as
# any thread running at exit has.
record() {
    printf '%s\n' "$records" | awk -F'|' -v ph="$1" -v k="$2" -v at=" $name:$3" '
        $1 == ph && $2 == k && index($7 " ", at " ") && !index($7, "pthread_create.c") {
            print $4 " " $6 }'
}

# alone PHASE C SIZE LEAK KEEP WHAT: in phase "PHASE C", the SIZE-byte block
# allocated at line LEAK is definitely lost, and nothing allocated at line
# KEEP is lost at all.
alone() {
    got=$(record "$1 $2" "definitely lost" "$4")
    [ "$got" = "$3 1" ] ||
        bad "$6: the leaked $3-byte block is not reported definitely lost at $name:$4 (new: \"$got\")"
    for k in "definitely lost" "possibly lost" "indirectly lost"; do
        got=$(record "$1 $2" "$k" "$5")
        [ -z "$got" ] || bad "$6: the referenced block allocated at $name:$5 is reported $k"
    done
}

# bulk PHASE LINE BYTES BLOCKS: all those blocks allocated at LINE are
# definitely lost, none possibly lost or still reachable.
bulk() {
    got=$(record "$1" "definitely lost" "$2")
    [ "$got" = "$3 $4" ] ||
        bad "$1: expected $4 blocks ($3 bytes) definitely lost at $name:$2, new: \"$got\""
    [ -z "$(record "$1" "possibly lost" "$2")$(record "$1" "still reachable" "$2")" ] ||
        bad "$1: some leaked blocks are reported possibly lost or still reachable"
}

sum_one=0 sum_keep=0
for c in $(seq 0 31); do
    size=$(( (c + 1) * 16 - 3 )) ksize=$(( (c + 1) * 16 - 7 ))
    sum_one=$((sum_one + size)) sum_keep=$((sum_keep + ksize))
    alone one "$c" "$size" "$one" "$keep" "class $c"
done
[ "$fail" = 0 ] && echo "check-memcheck-leaks ($what): each class leaked alone: definitely lost at $name:$one; the referenced blocks are not"

bulk bulk "$bulk" "$((70 * sum_one))" "$((70 * 32))"
[ "$fail" = 0 ] && echo "check-memcheck-leaks ($what): 70 blocks of every class leaked at once: all 2240 definitely lost at $name:$bulk"

# Medium classes: four per doubling from 640 bytes (leaks.c's medium_class).
msum_one=0 msum_keep=0
for c in $(seq 0 31); do
    base=$((512 << (c / 4)))
    class=$((base + (c % 4 + 1) * (base / 4)))
    size=$((class - 3)) ksize=$((class - 7))
    msum_one=$((msum_one + size)) msum_keep=$((msum_keep + ksize))
    alone mone "$c" "$size" "$mone" "$mkeep" "medium class $c ($class B)"
done
[ "$fail" = 0 ] && echo "check-memcheck-leaks ($what): each medium class leaked alone: definitely lost at $name:$mone; the referenced blocks are not"

bulk mbulk "$mbulk" "$((20 * msum_one))" "$((20 * 32))"
[ "$fail" = 0 ] && echo "check-memcheck-leaks ($what): 20 blocks of every medium class leaked at once: all 640 definitely lost at $name:$mbulk"

if [ -z "$so" ]; then
    hp=$(line_of LEAK-HEAP) hm=$(line_of LEAK-HEAP-MEDIUM) hl=$(line_of LEAK-HEAP-LARGE)
    [ "$(record heap "definitely lost" "$hp")" = "100 1" ] ||
        bad "heap: the 100-byte block of a live heap is not reported definitely lost at $name:$hp"
    [ "$(record heap "definitely lost" "$hm")" = "5000 1" ] ||
        bad "heap: the 5000-byte (medium) block of a live heap is not reported definitely lost at $name:$hm"
    [ "$(record heap "definitely lost" "$hl")" = "200000 1" ] ||
        bad "heap: the 200000-byte (system) block of a live heap is not reported definitely lost at $name:$hl"
    [ "$fail" = 0 ] && echo "check-memcheck-leaks ($what): a live heap's small, medium and large blocks: definitely lost at $name:$hp, $name:$hm and $name:$hl"
fi

# (Where the freed block follows a live one memcheck may describe the
# address from that one, as shed's blocks have no red zones between them.)
if printf '%s\n' "$records" | grep -F "uaf|error|Invalid write of size 1|" |
        grep -F -q " $name:$uaf|"; then
    echo "check-memcheck-leaks ($what): write through a stale pointer after its size was allocated again: invalid write at $name:$uaf"
else
    bad "no \"Invalid write\" into a freed 40-byte block at $name:$uaf"
fi
if printf '%s\n' "$records" | grep -F "muaf|error|Invalid write of size 1|" |
        grep -F -q " $name:$muaf|"; then
    echo "check-memcheck-leaks ($what): the same with a 4 KiB (medium) block: invalid write at $name:$muaf"
else
    bad "no \"Invalid write\" into a freed 4096-byte block at $name:$muaf"
fi

# At exit: the referenced blocks reachable, the leaked ones lost, nothing else of ours.
[ "$(record end "still reachable" "$keep")" = "$sum_keep 32" ] ||
    bad "at exit the 32 referenced blocks allocated at $name:$keep are not all still reachable"
[ "$(record end "definitely lost" "$one")" = "$sum_one 32" ] ||
    bad "at exit the 32 blocks leaked at $name:$one are not all definitely lost"
[ "$(record end "still reachable" "$mkeep")" = "$msum_keep 32" ] ||
    bad "at exit the 32 referenced medium blocks allocated at $name:$mkeep are not all still reachable"
[ "$(record end "definitely lost" "$mone")" = "$msum_one 32" ] ||
    bad "at exit the 32 medium blocks leaked at $name:$mone are not all definitely lost"
for l in "$one" "$keep" "$bulk" "$mone" "$mkeep" "$mbulk"; do
    [ -z "$(record end "possibly lost" "$l")" ] || bad "a block allocated at $name:$l is reported possibly lost"
done

[ "$fail" = 0 ] || { echo "--- valgrind log:" >&2; grep -v "^==[0-9]*== *\(at\|by\) 0x" "$log" | head -150 >&2; exit 1; }
echo "check-memcheck-leaks ($what): all passed"

#!/bin/sh
# programs.sh LIBSHED_SO PROBE_SO BINDIR [PYTHON]
#
# Real programs under LD_PRELOAD=libshed.so must behave as without it: each
# case runs twice, plain and preloaded, and must exit 0 both times with the
# same stdout.  probe.so (preloaded too) records shed's statistics at the
# exit of every process, and each case must show that shed carved at least
# MIN arenas, i.e. really served the program's small blocks, and reported no
# bad pointer.  BINDIR holds the threads, first_large and cxx test programs.
set -u
lib=$(realpath "$1") probe=$(realpath "$2") bindir=$(realpath "$3")
python=${4:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shed-preload.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

# Same environment for both runs, and nothing from the user's set-up.
export LC_ALL=C PYTHONHASHSEED=0 PYTHONMALLOC=malloc PYTHONDONTWRITEBYTECODE=1
export HOME="$tmp/home" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME=shed GIT_AUTHOR_EMAIL=shed@example.org
export GIT_COMMITTER_NAME=shed GIT_COMMITTER_EMAIL=shed@example.org
export GIT_AUTHOR_DATE="2024-01-01T00:00:00Z" GIT_COMMITTER_DATE="2024-01-01T00:00:00Z"
unset LD_PRELOAD SHED_CONF SHED_STATS
mkdir -p "$HOME"

# p CMD...: run one program, preloaded in the second run.  env execs the
# program, so only the program itself (and its children) carry the preload.
p() {
    if [ -n "$preload" ]; then
        timeout 120 env LD_PRELOAD="$preload" SHED_PROBE="$probe_out" "$@"
    else
        timeout 120 "$@"
    fi
}

# Inputs, made once, plain: 2M lines of numbers and words.
awk 'BEGIN { srand(42); for (i = 0; i < 2000000; i++)
    printf "%d %s%d\n", int(rand() * 1e9), substr("abcdefghijklmnopqrstuvwxyz", i % 26 + 1, i % 7 + 1), i }' \
    > "$tmp/lines" || exit 1
head -c 4000000 "$tmp/lines" > "$tmp/lines4m"

case_python() {
    p "$python" "$here/objects.py"
}

case_fork() {
    p "$python" "$here/fork.py"
}

case_sort() {
    p sort "$tmp/lines" | sha256sum
    p sort -k2,2 -k1,1n --parallel=2 -S 16M "$tmp/lines" | sha256sum
}

case_xz() {
    p xz -3 -T1 -c "$tmp/lines4m" > "$tmp/x.xz" && sha256sum < "$tmp/x.xz" &&
    p xz -dc "$tmp/x.xz" | sha256sum
    p xz -2 -T2 -c "$tmp/lines4m" | p xz -dc | sha256sum
}

case_sqlite() {
    rm -f "$tmp/db"
    p sqlite3 "$tmp/db" <<'EOF'
CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 200000)
INSERT INTO t SELECT i, i % 97, 'name-' || (i * 7919 % 100003), (i % 1000) / 7.0 FROM c;
CREATE INDEX t_name ON t(name);
SELECT count(*), sum(grp), round(avg(val), 6), min(name), max(name) FROM t;
SELECT grp, count(*), round(sum(val), 3) FROM t GROUP BY grp ORDER BY grp LIMIT 10;
SELECT count(DISTINCT name), length(group_concat(name)) FROM t;
SELECT group_concat(name, ',') FROM (SELECT name FROM t ORDER BY name DESC LIMIT 20);
DELETE FROM t WHERE id % 3 = 0;
VACUUM;
SELECT count(*), sum(id), total(val) FROM t WHERE name > 'name-5';
PRAGMA integrity_check;
EOF
}

case_git() {
    rm -rf "$tmp/repo" && mkdir "$tmp/repo" && cd "$tmp/repo" || return 1
    p git init -q -b main . || return 1
    for c in 1 2 3 4 5 6 7 8 9 10 11 12; do
        for f in 1 2 3 4 5 6 7 8 9 10; do
            awk -v c="$c" -v f="$f" 'BEGIN { for (i = 0; i < 200; i++) print "line", i, "of", f, "in", (i % c ? 1 : c) }' > "file$f.txt"
        done
        mkdir -p "dir$c" && sed -n "1,${c}0p" file1.txt > "dir$c/part.txt"
        p git add -A && p git -c gc.auto=0 commit -q -m "commit $c" || return 1
    done
    p git log --stat --format='%H %s'
    p git -c pack.threads=1 gc -q && p git fsck --full --no-progress &&
    p git count-objects -v | grep -v size && p git rev-list --all --objects | sort &&
    p git diff --stat HEAD~5 HEAD
}

# The descriptors a program sees are its own: shed keeps none open (its
# releases here go through process_madvise where the kernel has it), in the
# program or in a child started with pass_fds.
case_fds() {
    p env SHED_CONF=release=inline "$python" -c '
import os, subprocess, sys
data = [str(i) * 3 for i in range(300000)]
del data                        # whole pools empty: released at once
print(sorted(os.listdir("/proc/self/fd")))
r, w = os.pipe()
show = "import os; print(sorted(os.listdir(\"/proc/self/fd\")))"
print(subprocess.run([sys.executable, "-c", show], pass_fds=(w,),
                     capture_output=True, text=True).stdout, end="")
'
}

case_cxx() {
    p "$bindir/cxx"
}

case_threads() {
    p "$bindir/threads"
}

case_first_large() {
    p "$bindir/first_large"
}

# check NAME MIN: run case_NAME plain and preloaded and compare.
fail=0
check() {
    name=$1 min=$2
    start=$(date +%s)
    preload='' probe_out=''
    ( "case_$name" ) > "$tmp/$name.plain" 2> "$tmp/$name.plain.err"
    rc_plain=$?
    preload="$lib:$probe" probe_out="$tmp/$name.probe"
    ( "case_$name" ) > "$tmp/$name.shed" 2> "$tmp/$name.shed.err"
    rc_shed=$?
    arenas=$(sed -n 's/^arenas=\([0-9]*\) .*/\1/p' "$tmp/$name.probe" 2>/dev/null | sort -n | tail -1)
    why=
    if [ $rc_plain -ne 0 ]; then
        why="fails without the preload (exit $rc_plain): $(tail -3 "$tmp/$name.plain.err")"
    elif [ $rc_shed -ne 0 ]; then
        why="exit $rc_shed under the preload: $(tail -3 "$tmp/$name.shed.err")"
    elif ! cmp -s "$tmp/$name.plain" "$tmp/$name.shed"; then
        why="output differs under the preload:
$(diff "$tmp/$name.plain" "$tmp/$name.shed" | head -10)"
    elif [ ! -s "$tmp/$name.plain" ]; then
        why="no output"
    elif [ -z "$arenas" ]; then
        why="no process reported shed's statistics: $(head -3 "$tmp/$name.probe" 2>/dev/null)"
    elif [ "$arenas" -lt "$min" ]; then
        why="shed carved $arenas arenas, expected at least $min: not really served by shed"
    elif grep -v ' errors=0 ' "$tmp/$name.probe" | grep -q .; then
        why="shed reported errors: $(grep -v ' errors=0 ' "$tmp/$name.probe" | head -3)"
    fi
    procs=$(cat "$tmp/$name.probe" 2>/dev/null | wc -l)
    if [ -z "$why" ]; then
        echo "preload: $name: same output, $procs processes, up to $arenas arenas ($(($(date +%s) - start)) s)"
    else
        echo "preload: $name: FAILED: $why" >&2
        fail=1
    fi
}

# The python case must hold far more than one arena (256 KiB): its million
# objects went through malloc.
check python 64
check fork 4
check sort 1
check xz 1
check sqlite 1
check git 1
check fds 1
check cxx 4
check threads 4
check first_large 1
exit $fail

#!/bin/sh
# procstart.sh KIND N: what a short process pays for its allocator.  Every
# process of the run inherits the allocator's LD_PRELOAD (run.py sets it),
# so each fork, exec and short-lived tool below starts it afresh.
#   true N    a shell loop of N x /bin/true
#   shell N   N iterations of a subshell, sed, grep and expr in a pipeline
#   git N     a repository of N files: add, commit, gc, fsck, clone (on
#             /dev/shm when it is there)
# Prints "metric proc_KIND_ms MS" (the wall time of the loop, set-up
# excluded), in the format of the other workloads (bench/common.h).
set -eu
kind=$1
n=$2
ms() { date +%s%N | cut -c1-13; }   # milliseconds since the epoch

case $kind in
true)
    t0=$(ms)
    i=0
    while [ "$i" -lt "$n" ]; do /bin/true; i=$((i + 1)); done
    t1=$(ms)
    ;;
shell)
    t0=$(ms)
    i=0
    while [ "$i" -lt "$n" ]; do
        x=$( (echo "line $i"; echo "other") | sed 's/line/row/' | grep row)
        i=$(expr "$i" + 1)
        [ -n "$x" ]
    done
    t1=$(ms)
    ;;
git)
    # on tmpfs where there is one: ext4's journal and writeback made the
    # git rows vary far more than the allocators differ
    if [ -d /dev/shm ] && [ -w /dev/shm ]; then
        dir=$(mktemp -d -p /dev/shm)
    else
        dir=$(mktemp -d)
    fi
    trap 'rm -rf "$dir"' EXIT
    export GIT_CONFIG_NOSYSTEM=1 HOME="$dir" GIT_AUTHOR_NAME=bench \
        GIT_AUTHOR_EMAIL=bench@example.org GIT_COMMITTER_NAME=bench \
        GIT_COMMITTER_EMAIL=bench@example.org \
        GIT_AUTHOR_DATE='2026-01-01T00:00:00Z' GIT_COMMITTER_DATE='2026-01-01T00:00:00Z'
    mkdir "$dir/repo"
    i=0
    while [ "$i" -lt "$n" ]; do
        printf 'file %d\n%d\n' "$i" "$((i * 7919))" >"$dir/repo/f$i.txt"
        i=$((i + 1))
    done
    t0=$(ms)
    cd "$dir/repo"
    git init -q -b main .
    git add -A
    git commit -q -m "$n files"
    git gc -q
    git fsck --no-progress >/dev/null
    git clone -q "$dir/repo" "$dir/clone"
    t1=$(ms)
    ;;
*)
    echo "procstart.sh: unknown kind $kind (true, shell or git)" >&2
    exit 2
    ;;
esac
echo "metric proc_${kind}_ms $((t1 - t0))"

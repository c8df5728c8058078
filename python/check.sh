#!/bin/sh
# check.sh SHED_RUN MODULE PYTHON FAKE_SO: the tests of "make check-python".
#
# python/test_shed.py runs with PYTHON and with every other python3.X found
# (on PATH, in /usr/bin and /usr/local/bin, and pyenv's versions), each
# three times: plain, where shed is not the malloc; with FAKE_SO preloaded,
# a malloc that lacks shed's calls; and under SHED_RUN.  Then the
# module is installed by pip, offline, into a directory of its own, from a
# copy of the tree, and runs from there.  Interpreters older than 3.6 are
# skipped (the module needs 3.6's limited API).  Fails naming every run
# that failed.
set -u
usage="usage: check.sh SHED_RUN MODULE PYTHON FAKE_SO"
shed_run=${1:?$usage}
module=${2:?$usage}
python=${3:?$usage}
fake=$(cd "$(dirname "${4:?$usage}")" && pwd)/$(basename "$4")
here=$(cd "$(dirname "$0")" && pwd)
moddir=$(cd "$(dirname "$module")" && pwd)
test=$here/test_shed.py
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
failed=

# Candidates, the given one first; one run per real executable.
candidates() {
    echo "$python"
    for d in $(echo "${PATH:-}" | tr ':' ' ') /usr/bin /usr/local/bin; do
        ls "$d"/python3.[0-9] "$d"/python3.[0-9][0-9] 2>/dev/null
    done
    ls "${PYENV_ROOT:-$HOME/.pyenv}"/versions/*/bin/python3 2>/dev/null
}
: >"$tmp/seen"
for py in $(candidates); do
    real=$("$py" -c 'import os, sys; print(os.path.realpath(sys.executable) if sys.version_info >= (3, 6) else "old")' 2>/dev/null) || continue
    [ "$real" = old ] && continue
    grep -qxF "$real" "$tmp/seen" && continue
    echo "$real" >>"$tmp/seen"
    version=$("$py" -c 'import sys; print(sys.version.split()[0])')
    echo "== check-python: $py (Python $version)"
    env -u LD_PRELOAD -u PYTHONMALLOC PYTHONPATH="$moddir" "$py" "$test" plain ||
        failed="$failed plain:$py"
    env -u PYTHONMALLOC LD_PRELOAD="$fake" PYTHONPATH="$moddir" "$py" "$test" fake ||
        failed="$failed fake:$py"
    env -u LD_PRELOAD -u PYTHONMALLOC "$shed_run" -c release=manual "$py" "$test" shed ||
        failed="$failed shed-run:$py"
done

# pip, with no network and no build isolation: setuptools and wheel are the
# system's.  A copy of the tree, so that pip's in-place build leaves the
# source alone.
echo "== check-python: pip install --no-build-isolation ./python ($python)"
mkdir -p "$tmp/src"
cp -R "$here" "$here/../include" "$tmp/src/"
if "$python" -m pip install -q --no-index --no-deps --no-build-isolation \
        --root-user-action=ignore --target "$tmp/site" "$tmp/src/python" >"$tmp/pip.log" 2>&1; then
    where=$(PYTHONPATH="$tmp/site" "$python" -c 'import shed; print(shed.__file__)')
    case $where in
        "$tmp/site/"*) ;;
        *) echo "check-python: the pip-installed module is not the one imported: $where" >&2
           failed="$failed pip" ;;
    esac
    env -u LD_PRELOAD -u PYTHONMALLOC PYTHONPATH="$tmp/site" "$python" "$test" plain ||
        failed="$failed pip-plain"
    env -u LD_PRELOAD -u PYTHONMALLOC PYTHONPATH="$tmp/site" "$shed_run" -c release=manual \
        "$python" "$test" shed || failed="$failed pip-shed-run"
else
    sed 's/^/    /' "$tmp/pip.log" >&2
    failed="$failed pip-install"
fi

if [ -n "$failed" ]; then
    echo "check-python: failed:$failed" >&2
    exit 1
fi
echo "check-python: all passed ($(wc -l <"$tmp/seen") interpreters, and pip)"

#!/bin/sh
# need.sh PKG...: make sure the Debian packages are installed.
# As root with apt-get, installs what is missing; otherwise prints one line
# naming the packages and fails.  Used by the Makefile before targets that
# need them, so no target dies with a bare compiler error.
missing=""
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "shed: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -qq $missing || { apt-get update -qq && apt-get install -y -qq $missing; }; } >/dev/null 2>&1 && exit 0
    echo "shed: could not install$missing; run: apt-get update && apt-get install$missing" >&2
    exit 1
fi
echo "shed: missing packages:$missing (install them with: sudo apt-get install$missing)" >&2
exit 1

#!/bin/sh
# check-version.sh VERSION HEADER PC MANDIR: the one version, in VERSION,
# is the one that HEADER (SHED_VERSION, and SHED_VERSION_MAJOR, _MINOR and
# _PATCH), the pkg-config file PC (Version:), every man page's .TH
# ("shed X.Y.Z") and the Python module's setup.py (beside VERSION) say.  Prints one line per disagreement and fails if any.
set -u
v=$(cat "$1") || exit 1
header=$2 pc=$3 mandir=$4
fails=0
fail() { echo "check-version: $*" >&2; fails=$((fails + 1)); }

case $v in
    [0-9]*.[0-9]*.[0-9]*) ;;
    *) fail "$1 holds '$v', not MAJOR.MINOR.PATCH" ;;
esac
def() { sed -n "s/^#define $1  *\\(.*\\)\$/\\1/p" "$header"; }
[ "$(def SHED_VERSION)" = "\"$v\"" ] || fail "$header: SHED_VERSION is $(def SHED_VERSION), not \"$v\""
dotted="$(def SHED_VERSION_MAJOR).$(def SHED_VERSION_MINOR).$(def SHED_VERSION_PATCH)"
[ "$dotted" = "$v" ] || fail "$header: SHED_VERSION_MAJOR.MINOR.PATCH is $dotted, not $v"
[ "$(sed -n 's/^Version: //p' "$pc")" = "$v" ] || fail "$pc: Version is not $v"
setup=$(dirname "$1")/python/setup.py
if [ -f "$setup" ]; then
    grep -q "^ *version=\"$v\"" "$setup" || fail "$setup: version= is not \"$v\""
fi
for page in "$mandir"/man1/*.1 "$mandir"/man3/*.3 "$mandir"/man7/*.7; do
    th=$(grep '^\.TH' "$page") || continue       # a .so link page
    case $th in
        *"\"shed $v\""*) ;;
        *) fail "$page: .TH does not say \"shed $v\": $th" ;;
    esac
done
[ "$fails" = 0 ] || exit 1
echo "check-version: $v in VERSION, $header, $pc, the man pages and python/setup.py"

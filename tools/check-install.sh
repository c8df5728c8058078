#!/bin/sh
# check-install.sh DESTDIR PREFIX VERSION: what make install put under
# DESTDIR/PREFIX is all there: both libraries, shed.h, shed-run and the
# Python module, every man page of man/, and a shed.pc that says PREFIX and
# VERSION.  One line per miss.
set -u
root=$1$2 prefix=$2 v=$3
fails=0
fail() { echo "check-install: $*" >&2; fails=$((fails + 1)); }
for f in lib/libshed.a lib/libshed.so include/shed.h lib/pkgconfig/shed.pc bin/shed-run \
         lib/shed/python/shed.abi3.so; do
    [ -f "$root/$f" ] || fail "$f not installed"
done
for page in man/man1/*.1 man/man3/*.3 man/man7/*.7; do
    cmp -s "$page" "$root/share/$page" || fail "share/$page not installed as in man/"
done
pc=$root/lib/pkgconfig/shed.pc
if [ -f "$pc" ]; then
    got=$(sed -n 's/^prefix=//p' "$pc")
    [ "$got" = "$prefix" ] || fail "shed.pc says prefix=$got, not $prefix"
    got=$(sed -n 's/^Version: //p' "$pc")
    [ "$got" = "$v" ] || fail "shed.pc says Version: $got, not $v"
fi
[ "$fails" = 0 ] || exit 1
echo "check-install: libraries, shed.h, shed-run, the Python module, $(ls man/man1/*.1 man/man3/*.3 man/man7/*.7 | wc -l) man pages and shed.pc (prefix $prefix, $v) installed"

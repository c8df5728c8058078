#!/bin/sh
# check-man.sh HEADER MANDIR [SRCDIR [LAUNCHER]]: the checks of "make check-man".
#
#  1. every function declared in HEADER (shed_*(...) outside comments and
#     preprocessor lines) has a page MANDIR/man3/NAME.3, and the page it
#     leads to (through a .so link if it is one) names the function in its
#     NAME section and declares it in its SYNOPSIS;
#  2. every page renders without a warning with "mandoc -Tlint -Wwarning"
#     and with "groff -man -ww -z" (-mdoc for mdoc pages), tbl included;
#     a page with a table starts with the '\" t line that man(1) needs;
#     its .TH (or .Dt) names the file;
#  3. a link page is one ".so manN/page.N" line whose target exists and is
#     not itself a link (mandoc lints .so pages badly: they are not linted);
#  4. every shed page referred to as shed...(N) exists;
#  5. every page fits 80 columns, and the complete example programs of
#     EXAMPLES compile against HEADER ($CC -fsyntax-only);
#  6. every SHED_CONF key of SRCDIR/options.c (when it can be parsed) is
#     documented in shed.7 and shed_config.3;
#  7. every field of a structure of HEADER is described (.I field) in a
#     man3 page;
#  8. every option of the shell script LAUNCHER (its case patterns that
#     start with a hyphen) is described (.B or .BI at the start of a .TP
#     item) in the OPTIONS of its page MANDIR/man1/NAME.1.
# Prints one line per problem and fails if there is any.
set -u
header=${1:?usage: check-man.sh HEADER MANDIR [SRCDIR [LAUNCHER]]}
mandir=${2:?usage: check-man.sh HEADER MANDIR [SRCDIR [LAUNCHER]]}
srcdir=${3:-}
launcher=${4:-}
fails=0
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "check-man: $*" >&2
    fails=$((fails + 1))
}

# The .so target of a link page (empty for a real page).  A link page is
# comment lines plus exactly one .so request.
so_target() {
    awk '/^\.\\"/ || /^'"'"'\\"/ || /^[ \t]*$/ { next }
         /^\.so[ \t]/ && !seen { t = $2; seen = 1; next }
         { other = 1 }
         END { if (seen && !other) print t }' "$1"
}

# Lines of section $2 (a .SH title) of page $1.
section() {
    awk -v want="$2" '/^\.SH/ { sub(/^\.SH[ \t]+/, ""); gsub(/"/, ""); on = ($0 == want); next }
                      on' "$1"
}

# ---- 1. every function in the header has a page ----
# Strip /* */ and // comments, drop preprocessor lines, then pick the
# identifiers shed_* that are followed by "(".
funcs=$(awk '
    { line = $0; out = "" }
    incomment { if ((i = index(line, "*/")) == 0) next
                line = substr(line, i + 2); incomment = 0 }
    {
        while ((i = index(line, "/*")) > 0) {
            out = out substr(line, 1, i - 1)
            rest = substr(line, i + 2)
            if ((j = index(rest, "*/")) == 0) { incomment = 1; line = ""; break }
            line = substr(rest, j + 2)
        }
        out = out line
        sub(/\/\/.*/, "", out)
        if (out ~ /^[ \t]*#/) next
        print out
    }' "$header" | grep -o 'shed_[a-z0-9_]*[ 	]*(' | sed 's/[ 	]*($//' | sort -u)
if [ -z "$funcs" ]; then
    fail "no shed_*() declaration found in $header (has the parser broken?)"
fi
nfuncs=0
for f in $funcs; do
    nfuncs=$((nfuncs + 1))
    page=$mandir/man3/$f.3
    if [ ! -f "$page" ]; then
        fail "$f() is declared in $header but has no page $page"
        continue
    fi
    t=$(so_target "$page")
    [ -n "$t" ] && page=$mandir/$t
    [ -f "$page" ] || continue                 # reported below
    if ! section "$page" NAME | grep -q "\\b$f\\b"; then
        fail "$page documents $f() but does not name it in NAME"
    fi
    if ! section "$page" SYNOPSIS | grep -q "\\b$f("; then
        fail "$page documents $f() but does not declare it in SYNOPSIS"
    fi
done

# ---- 2, 3. every page renders cleanly; links point somewhere ----
npages=0
nlinks=0
nexamples=0
incdir=$(dirname "$header")
for page in "$mandir"/man[1-9]/*.[1-9]; do
    [ -f "$page" ] || continue
    base=${page##*/}
    name=${base%.*}
    sec=${base##*.}
    t=$(so_target "$page")
    if [ -n "$t" ]; then
        nlinks=$((nlinks + 1))
        case $t in
            man[1-9]/*.[1-9]) ;;
            *) fail "$page: .so target '$t' is not of the form manN/page.N" ;;
        esac
        if [ ! -f "$mandir/$t" ]; then
            fail "$page: .so target $mandir/$t does not exist"
        elif [ -n "$(so_target "$mandir/$t")" ]; then
            fail "$page: .so target $mandir/$t is itself a link"
        fi
        continue
    fi
    if grep -q '^\.so[ 	]' "$page"; then
        fail "$page: a .so request in a page that is not a plain link page"
    fi
    npages=$((npages + 1))

    if grep -q '^\.Dd' "$page"; then
        macros=-mdoc
        th=$(sed -n 's/^\.Dt[ \t]\{1,\}\([^ \t]*\)[ \t]\{1,\}\([^ \t]*\).*/\1 \2/p' "$page" | head -n 1)
    else
        macros=-man
        th=$(sed -n 's/^\.TH[ \t]\{1,\}"\{0,1\}\([^ \t"]*\)"\{0,1\}[ \t]\{1,\}"\{0,1\}\([^ \t"]*\).*/\1 \2/p' "$page" | head -n 1)
    fi
    # Titles are compared without case: man-pages use lower case, mdoc upper.
    if [ "$(echo "$th" | tr 'A-Z' 'a-z')" != "$(echo "$name $sec" | tr 'A-Z' 'a-z')" ]; then
        fail "$page: title is '$th', expected '$name $sec'"
    fi

    # Preprocessors: what the '\" line asks for (man(1) runs them from it).
    pre=$(sed -n "1s/^'\\\\\" *\\([a-z]*\\).*/\\1/p" "$page")
    if grep -q '^\.TS' "$page" && ! echo "$pre" | grep -q t; then
        fail "$page: has a table (.TS) but does not start with the line '\\\" t"
    fi
    popts=-t
    echo "$pre" | grep -q e && popts="$popts -e"
    echo "$pre" | grep -q p && popts="$popts -p"

    # mandoc: warnings and worse (style messages are advice, not failures).
    if ! mandoc -Tlint -Wwarning "$page" >"$tmp/out" 2>&1 || [ -s "$tmp/out" ]; then
        fail "$page: mandoc -Tlint -Wwarning complains:"
        sed 's/^/    /' "$tmp/out" >&2
    fi
    # groff: all warnings on, no output.
    # shellcheck disable=SC2086
    if ! groff $popts $macros -ww -z "$page" >"$tmp/out" 2>&1 || [ -s "$tmp/out" ]; then
        fail "$page: groff $popts $macros -ww -z complains:"
        sed 's/^/    /' "$tmp/out" >&2
    fi
    # groff -z skips rendering details that only show at a given width
    # (lines too long for 80 columns in .EX blocks, for one): render once.
    if ! groff $popts $macros -ww -Tutf8 -rLL=78n "$page" >/dev/null 2>"$tmp/out" || [ -s "$tmp/out" ]; then
        fail "$page: groff $popts $macros -ww -Tutf8 complains:"
        sed 's/^/    /' "$tmp/out" >&2
    fi
    # Every line fits an 80-column terminal (examples and tables included).
    if [ "$macros" = -man ] || [ "$macros" = -mdoc ]; then
        w=$(mandoc -Tutf8 "$page" 2>/dev/null | sed 's/.\x08//g' | LC_ALL=C.UTF-8 wc -L)
        [ "${w:-0}" -le 80 ] || fail "$page: renders $w columns wide at the default width (limit 80)"
    fi

    # Complete example programs (an .EX block of EXAMPLES with a main())
    # must compile against the header.
    awk -v out="$tmp/ex-$name" '
        /^\.SH/ { ex = ($0 ~ /EXAMPLES?/); next }
        ex && /^\.EX/ { inex = 1; buf = ""; next }
        ex && /^\.EE/ { if (buf ~ /main\(/) { n++; printf "%s", buf > (out "-" n ".c") }
                        inex = 0; next }
        inex { buf = buf $0 "\n" }' "$page"
    for ex in "$tmp/ex-$name"-*.c; do
        [ -f "$ex" ] || continue
        nexamples=$((nexamples + 1))
        sed -i 's/\\f[BIRP]//g; s/\\-/-/g; s/\\(aq/'"'"'/g; s/\\~/ /g; s/\\e/\\/g' "$ex"
        if ! command -v "${CC:-cc}" >/dev/null 2>&1; then
            echo "check-man: no C compiler, example of $page not compiled" >&2
        elif ! "${CC:-cc}" -std=gnu11 -Wall -Wextra -Werror -fsyntax-only \
                -I"$incdir" -x c "$ex" >"$tmp/out" 2>&1; then
            fail "$page: the example program does not compile:"
            sed 's/^/    /' "$tmp/out" >&2
        fi
    done
done
if [ "$npages" -eq 0 ]; then
    fail "no pages under $mandir"
fi

# ---- 4. references to shed pages resolve ----
for page in "$mandir"/man[1-9]/*.[1-9]; do
    [ -f "$page" ] || continue
    [ -n "$(so_target "$page")" ] && continue
    # .BR shed_trim (3)  and  \fBshed_trim\fP(3)
    sed -n 's/\\f[BIRP]//g; s/^\.[BI]R\{0,1\} //; p' "$page" |
        grep -o '\bshed[a-z0-9_-]* *([1-9])' | tr -d ' ' | sort -u |
        while read -r ref; do
            n=${ref%%(*}
            s=${ref#*(}
            s=${s%)}
            [ -f "$mandir/man$s/$n.$s" ] || echo "$page refers to $ref, which has no page"
        done
done >"$tmp/refs"
if [ -s "$tmp/refs" ]; then
    while read -r l; do fail "$l"; done <"$tmp/refs"
fi

# ---- 6. every SHED_CONF key is documented ----
nkeys=0
if [ -n "$srcdir" ] && [ -f "$srcdir/options.c" ]; then
    keys=$(sed -n 's/^[ \t]*{[ \t]*"\([a-z_0-9]*\)",[ \t]*K_.*/\1/p' "$srcdir/options.c")
    for k in $keys; do
        nkeys=$((nkeys + 1))
        for page in "$mandir/man7/shed.7" "$mandir/man3/shed_config.3"; do
            grep -q "^\.[BIR]\{1,2\} *\"\{0,1\}$k=" "$page" 2>/dev/null ||
                fail "SHED_CONF key '$k' ($srcdir/options.c) is not documented in $page"
        done
    done
fi

# ---- 7. every field of the header's structures is documented ----
nfields=0
fields=$(awk '/^struct [a-z_0-9]+ \{/ { on = 1; next } on && /^\};/ { on = 0 }
              on { sub(/\/\*.*/, ""); if ($0 ~ /;/) print }' "$header" |
         sed -n 's/.*[ *]\([a-z_][a-z_0-9]*\)\(\[[^]]*\]\)\{0,1\};.*/\1/p' | sort -u)
for fl in $fields; do
    nfields=$((nfields + 1))
    grep -q "^\.I[RB]\{0,1\} *\(.*[ ,\"]\)\{0,1\}$fl\b" "$mandir"/man3/*.3 ||
        fail "field '$fl' of a structure in $header is not described (.I $fl) in any man3 page"
done

# ---- 8. every option of the launcher is documented ----
nopts=0
if [ -n "$launcher" ]; then
    prog=$(basename "$launcher" .in)
    page=$mandir/man1/$prog.1
    # "        -c)", "        -h | --help)", "        -c?*)": the option names.
    opts=$(sed -n 's/^[ \t]*\(-[-a-z|? *]*\))\([ \t].*\)\{0,1\}$/\1/p' "$launcher" |
           tr '|' '\n' | tr -d ' ' | grep -v '[?*]' | grep -vx -- '-\{1,2\}' | sort -u)
    if [ ! -f "$page" ]; then
        fail "$launcher has no page $page"
    else
        section "$page" OPTIONS | awk '/^\.TP/ { getline; print }' | sed 's/\\-/-/g' >"$tmp/items"
        for o in $opts; do
            nopts=$((nopts + 1))
            grep -q -- "^\.B[IR]\{0,1\} \(.*[ ,\"]\)\{0,1\}$o\b" "$tmp/items" ||
                fail "option $o of $launcher is not described (a .TP item) in OPTIONS of $page"
        done
        [ "$nopts" -gt 0 ] || fail "no option found in $launcher (has the parser broken?)"
    fi
fi

if [ "$fails" -ne 0 ]; then
    echo "check-man: FAILED ($fails problems)" >&2
    exit 1
fi
echo "check-man: ok: $nfuncs functions of $header, $npages pages, $nlinks links," \
     "$nexamples example programs, $nkeys SHED_CONF keys, $nfields structure fields," \
     "$nopts launcher options"

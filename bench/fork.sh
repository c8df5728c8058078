#!/bin/sh
# fork.sh BIN LIBSHED [load_mb children steps ws]: bench/fork under every
# allocator (LD_PRELOAD), one after the other, and a table of the mean
# child Private_Dirty and Pss, with shed's ratios to jemalloc; twice: in
# the order the targets were set for (churn, then free 10% of the parent's
# blocks), then with --free-first (the frees first, so the churn may fill
# the parent's holes: what freeze is for).
#   sh bench/fork.sh build/bench/fork build/libshed.so          (150 MB, 4 children)
#   sh bench/fork.sh build/bench/fork build/libshed.so 20 2 200000 20000   (quick)
# A peer whose library is not installed is skipped (and says so).
set -u
bin=$1; shed=$(readlink -f "$2"); shift 2
args="$*"
lib=/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
out=$(mktemp); trap 'rm -f "$out"' EXIT
for flags in "" --free-first; do
: >"$out"
echo "== bench/fork ${flags:-(churn, then free)}"
run() {     # label preload [env...]
    label=$1 so=$2; shift 2
    if [ -n "$so" ] && [ ! -e "$so" ]; then
        echo "fork.sh: $label skipped ($so not found)" >&2; return
    fi
    line=$(env ${so:+LD_PRELOAD=$so} "$@" "$bin" $flags $args) || {
        echo "fork.sh: $label FAILED: $line" >&2; echo "$label FAILED" >>"$out"; return; }
    echo "  $label: $line"
    echo "$label $line" >>"$out"
}
run glibc "" env
run jemalloc "$lib/libjemalloc.so.2" env
run mimalloc "$lib/libmimalloc.so.2" env
run tcmalloc "$lib/libtcmalloc_minimal.so.4" env
run shed "$shed" env
run shed+freeze "$shed" env SHED_CONF=freeze_on_fork=1
awk '
function val(k,   i, f) { for (i = 2; i <= NF; i++) { split($i, f, "="); if (f[1] == k) return f[2] } return "" }
$2 == "FAILED" { printf "%-12s  FAILED\n", $1; next }
{ name[++n] = $1; pd[n] = val("child_private_dirty_mb"); pss[n] = val("child_pss_mb")
  if ($1 == "jemalloc") { jpd = pd[n]; jpss = pss[n] }
  if (n == 1) printf "# load %s MB in %s blocks, %s children, %s churn steps on %s blocks each\n", \
      val("load_mb"), val("blocks"), val("children"), val("steps"), val("ws") }
END {
  printf "| allocator    | child Private_Dirty MB | child Pss MB | PD / jemalloc | Pss / jemalloc |\n"
  printf "|--------------|-----------------------:|-------------:|--------------:|---------------:|\n"
  for (i = 1; i <= n; i++) {
      r1 = jpd > 0 ? sprintf("%.2f", pd[i] / jpd) : "-"; r2 = jpss > 0 ? sprintf("%.2f", pss[i] / jpss) : "-"
      printf "| %-12s | %22.2f | %12.2f | %13s | %14s |\n", name[i], pd[i], pss[i], r1, r2
  }
  if (jpd > 0) for (i = 1; i <= n; i++) {
      if (name[i] == "shed+freeze") printf "target shed+freeze <= 0.5 x jemalloc: %s\n", pd[i] <= jpd / 2 ? "met" : "NOT met"
      if (name[i] == "shed") printf "target shed <= jemalloc: %s\n", pd[i] <= jpd ? "met" : "NOT met"
  }
}' "$out"
done

# Benchmarks: shed against glibc, jemalloc, mimalloc and tcmalloc, and the demo.
#   make bench           every workload, every allocator, 3 repeats (11 for
#                        churn and burst, which are short; 7 for the threaded
#                        threaded workloads) (about 10 min on an idle machine,
#                        of which the process-start rows, bench/procstart.sh, 5)
#   make bench QUICK=1   smaller sizes (about 3 min), results in
#                        bench/results/quick
#   make bench-smoke     every workload once under shed, tiny sizes (in check)
#   make bench-release   release cost per backend (process_madvise, madvise,
#                        io_uring)
#   make bench-delay     the choice of delay_ms
#   make bench-fork      bench/fork.sh: forking-server memory, peers
#   make bench-rounding  the medium size classes (513 B to 128 KiB) of shed,
#                        jemalloc and mimalloc, by malloc_usable_size
#   make demo            shed's story, in C and in Python: build a large
#                        structure of small blocks, drop most of it, and show
#                        what the kernel got back (not in make check: it
#                        measures, it does not test)
#   make docs-maps       the README's pair of heap maps, docs/heapmap-*.png
# The workloads call plain malloc/free; each allocator is LD_PRELOADed.

BENCH_PROGS  := churn burst threads frag reuse threxit forkcost fork larson \
                xmalloc scratch wide rounding
BENCH_BIN    := $(BENCH_PROGS:%=$(BUILD)/bench/%)
BENCH_CFLAGS := -std=gnu11 $(WARN) -O2 -g -D_GNU_SOURCE
BENCH_PEERS  := libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev
# The real programs of bench/programs.py (python3 is needed anyway).
BENCH_TOOLS  := sqlite3 redis-server redis-tools
# Programs that call shed's API (linked with libshed.a).
SHED_BENCH   := $(BUILD)/bench/release_cost $(BUILD)/bench/delay
DEMO_BIN     := $(BUILD)/demo
DEMO_OUT     := $(BUILD)/demo-out

.PHONY: bench bench-smoke bench-smoke-api bench-progs bench-release bench-delay bench-fork demo \
        docs-maps bench-rounding
bench-progs: $(BENCH_BIN) $(SHED_BENCH)

$(BENCH_BIN): $(BUILD)/bench/%: bench/%.c
	$(call compile,$(CC) $(BENCH_CFLAGS),-lpthread)

$(SHED_BENCH): $(BUILD)/bench/%: bench/%.c $(LIB_A)
	$(call compile,$(CC) $(BENCH_CFLAGS) -Iinclude,$(LIB_A) $(LIB_A_LIBS))

# A peer or tool that cannot be installed is skipped (run.py says so).  The
# pre-fork server (bench-prefork below) runs last, one repeat (run.py
# --prefork-repeats), skipped with a line when gunicorn is missing.
bench: $(LIB_SO) $(BENCH_BIN) $(SHED_BENCH) $(SHED_RUN) $(PY_MOD) | $(call need,python3)
	@for p in $(BENCH_PEERS) $(BENCH_TOOLS) gnuplot-nox strace git; do \
	    $(NEED) $$p || echo "bench: $$p unavailable; what needs it is skipped"; \
	done
	python3 bench/run.py --bin $(BUILD)/bench --lib-so $(LIB_SO) --shed-run $(SHED_RUN) \
	    $(if $(QUICK),--quick,--readme README.md)

# Tiny sizes, shed only (batched: the default), each workload once; fails
# when a workload fails or finds a block's content wrong.
bench-smoke: $(LIB_SO) $(BENCH_BIN) | $(call need,python3)
	@set -e; so=$(abspath $(LIB_SO)); b=$(BUILD)/bench; \
	run() { echo "bench-smoke: $$*"; LD_PRELOAD=$$so "$$@" >/dev/null; }; \
	run $$b/churn 100k 10k; \
	run $$b/burst 50k 1; \
	run $$b/reuse 50k 10k; \
	run $$b/threads 100k 10k 100k; \
	run $$b/threxit 10k 10; \
	run $$b/forkcost 10 10k; \
	run $$b/larson 20k 100 1000 16-512; \
	run $$b/larson 20k 100 1000 8-1000; \
	run $$b/xmalloc 20k 16; \
	run $$b/scratch 2 100 8 100; \
	for m in random sparse phase; do run $$b/frag $$m 100k 100; done; \
	run $$b/churn 100k 1000 513-32768; \
	run $$b/frag sparse 2000 100 513-32768; \
	run $$b/wide 20k 500 4; \
	run env PYTHONMALLOC=malloc python3 bench/pyobjs.py 20k 100; \
	run env PYTHONMALLOC=malloc python3 bench/jsonrt.py 2000; \
	run sh bench/procstart.sh true 20; run sh bench/procstart.sh shell 5; \
	echo "bench-smoke: all workloads ran under shed"

bench-release: $(BUILD)/bench/release_cost
	$< $(if $(QUICK),8192 1,65536 3)

bench-delay: $(BUILD)/bench/delay
	$< $(if $(QUICK),50000 4,200000 10)

# Keep them compiling and running in make check (tiny sizes).
bench-smoke-api: $(SHED_BENCH)
	$(BUILD)/bench/release_cost 256 1 >/dev/null
	$(BUILD)/bench/delay 2000 2 >/dev/null
	@echo "bench-smoke-api: release_cost and delay ran"

bench-fork: $(BUILD)/bench/fork $(LIB_SO)
	@for p in $(BENCH_PEERS); do \
	    $(NEED) $$p || echo "bench-fork: $$p unavailable; that peer is skipped"; done
	sh bench/fork.sh $(BUILD)/bench/fork $(LIB_SO)

# Each allocator preloaded in turn: its medium classes, and whether they are
# shed's (a peer that cannot be installed is skipped).
bench-rounding: $(BUILD)/bench/rounding $(LIB_SO)
	@for p in libjemalloc-dev libmimalloc-dev; do \
	    $(NEED) $$p || echo "bench-rounding: $$p unavailable; that peer is skipped"; done
	@set -e; lib=/usr/lib/$$(gcc -print-multiarch 2>/dev/null); \
	shed=$$(LD_PRELOAD=$(abspath $(LIB_SO)) $<); \
	echo "shed:     $$shed"; \
	for a in jemalloc mimalloc; do \
	    so=; for f in $$lib/lib$$a.so.2 $$lib/lib$$a.so; do [ -e $$f ] && so=$$f && break; done; \
	    [ -n "$$so" ] || continue; \
	    got=$$(LD_PRELOAD=$$so $<); \
	    printf '%-9s %s\n' "$$a:" "$$got"; \
	    [ "$$got" = "$$shed" ] && echo "  $$a: the same classes as shed" || \
	        echo "  $$a: differs from shed"; \
	done

# The C program bench/demo.c, linked with libshed.a, shows what the kernel
# gets back with each release mode (and its heap maps, in $(DEMO_OUT)); then,
# when python3 is present, bench/demo.py runs the same story in CPython under
# pymalloc, glibc and the preloaded libshed.so.  Both parts run even if the
# other failed; a failed run fails the target.
$(DEMO_BIN): bench/demo.c $(LIB_A)
	$(call compile,$(CC) $(PROG_CFLAGS) -Iinclude,$(LIB_A) $(LDLIBS))

demo: $(LIB_A) $(LIB_SO) $(DEMO_BIN)
	@mkdir -p $(DEMO_OUT)
	@st=0; $(DEMO_BIN) --out $(DEMO_OUT) || st=1; \
	if $(NEED) librsvg2-bin; then \
	    for f in $(DEMO_OUT)/*.svg; do rsvg-convert -o $${f%.svg}.png $$f || st=1; done; \
	    echo "(and as PNG: $(DEMO_OUT)/*.png)"; \
	else echo "(no PNG of the maps without rsvg-convert)"; fi; \
	if command -v python3 >/dev/null 2>&1; then \
	    python3 bench/demo.py $(LIB_SO) || st=1; \
	else \
	    echo; echo "(python3 not found: the Python part of the demo is skipped)"; \
	fi; exit $$st

# The pair of heap maps in the README: the demo's first pattern under
# release=batched, before the drop and 1 s after, as PNG in docs/.
DOCS_MAPS := docs/heapmap-before.png docs/heapmap-after.png

docs-maps: $(DEMO_BIN) | $(call need,librsvg2-bin)
	@mkdir -p $(DEMO_OUT)/docs docs
	SHED_CONF=release=batched SHED_DEMO_OUT=$(DEMO_OUT)/docs $(DEMO_BIN) --child every1000 >/dev/null
	rsvg-convert -o docs/heapmap-before.png $(DEMO_OUT)/docs/every1000-batched-before.svg
	rsvg-convert -o docs/heapmap-after.png $(DEMO_OUT)/docs/every1000-batched-after.svg

CHECK_TARGETS += bench-smoke bench-smoke-api

# A pre-fork server (bench/prefork/): gunicorn --preload with 4 workers under
# pymalloc (with and without gc.freeze), glibc, jemalloc, mimalloc, shed and
# shed with freeze; a worker's private memory and the requests per second.
# Three repeats (30 to 40 minutes on a busy 2-core machine; QUICK=1: a
# few); make bench runs it last with one.  Not in make check: it writes
# bench/results/prefork.{md,csv,svg}, puts its table into latest.md and
# makes the README's summary again.
.PHONY: bench-prefork
bench-prefork: $(LIB_SO) $(SHED_RUN) $(PY_MOD) | $(call need,gunicorn)
	@for p in libjemalloc-dev libmimalloc-dev gnuplot-nox; do \
	    $(NEED) $$p || echo "bench-prefork: $$p unavailable; what needs it is skipped"; \
	done
	$(PYTHON) bench/prefork/measure.py --shed-run $(SHED_RUN) \
	    $(if $(QUICK),--quick,--readme README.md)

# Benchmarks: shed against glibc, jemalloc, mimalloc and tcmalloc.
#   make bench           every workload, every allocator, 3 repeats (11 for
#                        churn and burst, which are short) (< 5 min)
#   make bench QUICK=1   smaller sizes (< 1 min), results in bench/results/quick
#   make bench-smoke     every workload once under shed, tiny sizes (in check)
# The workloads call plain malloc/free; each allocator is LD_PRELOADed.

BENCH_PROGS  := churn burst threads frag reuse threxit forkcost
BENCH_BIN    := $(BENCH_PROGS:%=$(BUILD)/bench/%)
BENCH_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -O2 -g -D_GNU_SOURCE
BENCH_PEERS  := libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev
SHED_BENCH   := $(BUILD)/bench/release_cost $(BUILD)/bench/delay

.PHONY: bench bench-smoke bench-progs
bench-progs: $(BENCH_BIN)

$(BENCH_BIN): $(BUILD)/bench/%: bench/%.c bench/common.h
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $< -o $@ -lpthread

# A peer or tool that cannot be installed is skipped by run.py, which says so.
bench: $(LIB_SO) $(BENCH_BIN) $(SHED_BENCH) $(BUILD)/bench/fork
	@$(NEED) python3
	@for p in $(BENCH_PEERS) gnuplot-nox strace; do \
	    $(NEED) $$p || echo "bench: $$p unavailable; what needs it is skipped"; \
	done
	python3 bench/run.py --bin $(BUILD)/bench --lib-so $(LIB_SO) \
	    $(if $(QUICK),--quick,--readme README.md)

# Tiny sizes, shed only (batched: the default), each workload once; fails
# when a workload fails or finds a block's content wrong.
bench-smoke: $(LIB_SO) $(BENCH_BIN)
	@$(NEED) python3
	@set -e; so=$(abspath $(LIB_SO)); b=$(BUILD)/bench; \
	run() { echo "bench-smoke: $$*"; LD_PRELOAD=$$so "$$@" >/dev/null; }; \
	run $$b/churn 100k 10k; \
	run $$b/burst 50k 1; \
	run $$b/reuse 50k 10k; \
	run $$b/threads 100k 10k 100k; \
	run $$b/threxit 10k 10; \
	run $$b/forkcost 10 10k; \
	for m in random sparse phase; do run $$b/frag $$m 100k 100; done; \
	run env PYTHONMALLOC=malloc python3 bench/pyobjs.py 20k 100; \
	echo "bench-smoke: all workloads ran under shed"

CHECK_TARGETS += bench-smoke

# Programs that call shed's API (linked with libshed.a): release cost per
# backend (process_madvise, madvise, io_uring) and the choice of delay_ms.
$(SHED_BENCH): $(BUILD)/bench/%: bench/%.c $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -Iinclude $< $(LIB_A) $(LIB_A_LIBS) -o $@

.PHONY: bench-release bench-delay
bench-release: $(BUILD)/bench/release_cost
	$< $(if $(QUICK),8192 1,65536 3)

bench-delay: $(BUILD)/bench/delay
	$< $(if $(QUICK),50000 4,200000 10)
bench-progs: $(SHED_BENCH)

# Keep them compiling and running in make check (tiny sizes).
.PHONY: bench-smoke-api
bench-smoke-api: $(SHED_BENCH)
	$(BUILD)/bench/release_cost 256 1 >/dev/null
	$(BUILD)/bench/delay 2000 2 >/dev/null
	@echo "bench-smoke-api: release_cost and delay ran"
CHECK_TARGETS += bench-smoke-api

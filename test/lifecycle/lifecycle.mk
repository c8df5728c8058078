# Lifecycle tests: the release thread (batched mode, claiming, fork), heaps
# and freeze with fork(), and the fork benchmark (included by the Makefile).
#   make check-lifecycle           the cmocka programs, then the strace check
#   make check-lifecycle-strace    batched mode under strace: every madvise /
#                                  process_madvise comes from shed's thread
#   make check-lifecycle-valgrind  the cmocka programs under memcheck, at
#                                  SHED_TEST_SCALE=$(LC_VG_SCALE) percent
#   make bench-fork                bench/fork.sh: forking-server memory, peers
# SHED_TEST_SCALE=N (percent) scales the iteration counts and sizes.

LC_SRC    := $(wildcard test/lifecycle/test_*.c)
LC_BIN    := $(LC_SRC:test/lifecycle/%.c=$(BUILD)/lifecycle/%)
LC_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -Iinclude -Isrc -D_GNU_SOURCE $(CFLAGS)
LC_HDRS   := test/lifecycle/lc.h test/shed_test.h test/child.h include/shed.h src/shed_testing.h
LC_VG_SCALE ?= 5
LC_VALGRIND := valgrind --error-exitcode=99 --leak-check=full \
               --errors-for-leak-kinds=definite \
               --suppressions=test/lifecycle/fork-child.supp \
               --show-possibly-lost=no --quiet

.PHONY: lc-deps check-lifecycle check-lifecycle-unit check-lifecycle-strace \
        check-lifecycle-valgrind bench-fork

lc-deps:
	@$(NEED) libcmocka-dev pkg-config

$(BUILD)/lifecycle/%: test/lifecycle/%.c $(LC_HDRS) $(LIB_A) | lc-deps
	@mkdir -p $(dir $@)
	$(CC) $(LC_CFLAGS) -o $@ $< $(LIB_A) \
	    $$(pkg-config --libs cmocka 2>/dev/null || echo -lcmocka) $(LIB_A_LIBS)

$(BUILD)/lifecycle-tools/strace_prog: test/lifecycle/strace_prog.c $(LC_HDRS) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LC_CFLAGS) -o $@ $< $(LIB_A) $(LIB_A_LIBS)

check-lifecycle-unit: lc-deps $(LC_BIN)
	@fail=""; for t in $(LC_BIN); do echo "== $$t"; $$t || fail="$$fail $$t"; done; \
	if [ -n "$$fail" ]; then echo "check-lifecycle-unit: FAILED:$$fail"; exit 1; fi
	@echo "check-lifecycle-unit: $(words $(LC_BIN)) test programs passed"

check-lifecycle-strace: $(BUILD)/lifecycle-tools/strace_prog
	@$(NEED) strace
	@sh test/lifecycle/strace_check.sh $(BUILD)/lifecycle-tools/strace_prog

check-lifecycle: check-lifecycle-unit check-lifecycle-strace

check-lifecycle-valgrind: lc-deps $(LC_BIN)
	@$(NEED) valgrind
	@fail=""; for t in $(LC_BIN); do echo "== valgrind $$t"; \
	    SHED_TEST_SCALE=$(LC_VG_SCALE) $(LC_VALGRIND) $$t || fail="$$fail $$t"; done; \
	if [ -n "$$fail" ]; then echo "check-lifecycle-valgrind: FAILED:$$fail"; exit 1; fi
	@echo "check-lifecycle-valgrind: $(words $(LC_BIN)) test programs clean under memcheck"

$(BUILD)/bench/fork: bench/fork.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -Wall -Wextra -Werror -O2 -g -D_GNU_SOURCE $< -o $@

bench-fork: $(BUILD)/bench/fork $(LIB_SO)
	@for p in libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev; do \
	    $(NEED) $$p || echo "bench-fork: $$p unavailable; that peer is skipped"; done
	sh bench/fork.sh $(BUILD)/bench/fork $(LIB_SO)

CHECK_TARGETS += check-lifecycle check-lifecycle-valgrind

# Lifecycle tests: the release thread (batched mode, claiming, fork), heaps
# and freeze with fork().
#   make check-lifecycle           the cmocka programs, then the strace check
#   make check-lifecycle-strace    batched mode under strace: every madvise /
#                                  process_madvise comes from shed's thread
#   make check-lifecycle-valgrind  the cmocka programs under memcheck, at
#                                  SHED_TEST_SCALE=$(LC_VG_SCALE) percent
#   make check-limits-strict-overcommit   BY HAND ONLY (root; changes a
#                                  system-wide setting for every process on
#                                  the machine while it runs): see below
# SHED_TEST_SCALE=N (percent) scales the iteration counts and sizes.

LC_SRC    := $(wildcard test/lifecycle/test_*.c)
LC_BIN    := $(LC_SRC:test/lifecycle/%.c=$(BUILD)/lifecycle/%)
LC_CFLAGS := $(PROG_CFLAGS) -Iinclude -Isrc
LC_VG_SCALE ?= 5
LC_VALGRIND := valgrind --error-exitcode=99 --leak-check=full \
               --errors-for-leak-kinds=definite \
               --suppressions=test/lifecycle/fork-child.supp \
               --show-possibly-lost=no --quiet

.PHONY: check-lifecycle check-lifecycle-unit check-lifecycle-strace check-lifecycle-valgrind

$(BUILD)/lifecycle/%: test/lifecycle/%.c $(LIB_A) | $(call need,libcmocka-dev pkg-config)
	$(call compile,$(CC) $(LC_CFLAGS),$(LIB_A) $(CMOCKA_LIBS) $(LIB_A_LIBS))

$(BUILD)/lifecycle-tools/strace_prog: test/lifecycle/strace_prog.c $(LIB_A)
	$(call compile,$(CC) $(LC_CFLAGS),$(LIB_A) $(LIB_A_LIBS))

# test_forkrace dlopens a library whose constructor forks.
$(BUILD)/lifecycle-tools/ctor_fork.so: test/lifecycle/ctor_fork.c
	$(call compile,$(CC) $(LC_CFLAGS) -shared -fPIC,)

$(BUILD)/lifecycle/test_forkrace: $(BUILD)/lifecycle-tools/ctor_fork.so

check-lifecycle-unit: $(LC_BIN)
	$(call run_tests,check-lifecycle-unit,$(LC_BIN))

check-lifecycle-strace: $(BUILD)/lifecycle-tools/strace_prog | $(call need,strace)
	@sh test/lifecycle/strace_check.sh $(BUILD)/lifecycle-tools/strace_prog

check-lifecycle: check-lifecycle-unit check-lifecycle-strace

check-lifecycle-valgrind: $(LC_BIN) | $(call need,valgrind)
	$(call run_tests,check-lifecycle-valgrind,$(LC_BIN),valgrind ,SHED_TEST_SCALE=$(LC_VG_SCALE) $(LC_VALGRIND),clean under memcheck)

SUITE_SRC += $(LC_SRC)
PAGES_BIN += $(LC_BIN)
CHECK_TARGETS += check-lifecycle check-lifecycle-valgrind

# BY HAND ONLY, never in make check: sets vm.overcommit_memory=2 (strict
# overcommit, system-wide: every process of the machine runs under it
# meanwhile), runs test_limits' commit-charge case and a preloaded python
# under it, and restores the old value, also when interrupted.  Do not run
# it on a machine shared with others.
.PHONY: check-limits-strict-overcommit
check-limits-strict-overcommit: $(BUILD)/lifecycle/test_limits $(LIB_SO)
	@old=$$(cat /proc/sys/vm/overcommit_memory) || exit 1; \
	trap 'echo $$old > /proc/sys/vm/overcommit_memory; \
	      echo "vm.overcommit_memory restored to $$old"' EXIT INT TERM; \
	echo "setting vm.overcommit_memory=2 (was $$old)"; \
	echo 2 > /proc/sys/vm/overcommit_memory || exit 1; \
	$(BUILD)/lifecycle/test_limits commit && \
	LD_PRELOAD=$(abspath $(LIB_SO)) python3 -c 'print("preloaded python3 ran")'

# shed under attack (included by the Makefile):
#   make check-attack      fault injection and bad input (test/attack/test_*.c)
#                          against $(LIB_A), and bad frees through LD_PRELOAD
#   make check-asan        the library built with clang and -fsanitize=address,
#   make check-ubsan       ... undefined, ... thread: the main cmocka suite
#   make check-tsan        (test/test_*.c), test/attack/test_*.c and
#                          test/lifecycle/test_*.c against it; check-asan
#                          also shows a use after free is caught
#   make check-fuzz-regress  the fuzz target replays its corpus and every
#                          file of test/fuzz/regressions/ (any failure fails)
#   make fuzz FUZZ_SECONDS=N   fuzz test/fuzz/fuzz_ops.c for N seconds
#   make check-fuzz        the regressions, then 60 seconds of fuzzing (.ci/run)
#   make soak SECONDS=N    8 threads, forks, trims, freezes, heaps; RSS bound
#                          (against the checking build)
#   make check-debug       the checking build (-DSHED_DEBUG, src/check.c):
#                          the cmocka suites (test/test_*.c, the attack and
#                          lifecycle programs, test/internal/test_*.c)
#                          against $(BUILD)/debug/libshed.a

ATTACK_OUT   := $(BUILD)/attack
ATTACK_SRC   := $(wildcard test/attack/test_*.c)
ATTACK_BIN   := $(ATTACK_SRC:test/attack/%.c=$(ATTACK_OUT)/%)
ATTACK_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -Iinclude -Isrc -Itest -D_GNU_SOURCE $(CFLAGS)
CMOCKA_LIBS  = $$(pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

.PHONY: attack-deps san-deps check-attack check-asan check-ubsan check-tsan \
        fuzz check-fuzz check-fuzz-regress soak

attack-deps:
	@$(NEED) libcmocka-dev pkg-config valgrind

$(ATTACK_OUT)/test_%: test/attack/test_%.c test/attack/attack.h test/child.h include/shed.h src/shed_testing.h $(LIB_A) | attack-deps
	@mkdir -p $(dir $@)
	$(CC) $(ATTACK_CFLAGS) -o $@ $< $(LIB_A) $(CMOCKA_LIBS) $(LIB_A_LIBS)

# A plain program (no shed API) that frees badly, run under LD_PRELOAD.
$(ATTACK_OUT)/badfree: test/attack/badfree.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -Wall -Wextra -Werror -fno-builtin $(CFLAGS) -o $@ $<

check-attack: attack-deps $(ATTACK_BIN) $(ATTACK_OUT)/badfree $(LIB_SO)
	@failed=; for t in $(ATTACK_BIN); do echo "== $$t"; $$t || failed="$$failed $${t##*/}"; done; \
	sh test/attack/preload_bad.sh $(ATTACK_OUT)/badfree $(LIB_SO) || failed="$$failed preload_bad"; \
	if [ -n "$$failed" ]; then echo "check-attack: failed:$$failed" >&2; exit 1; fi
	@echo "check-attack: $(words $(ATTACK_BIN)) test programs and the preload checks passed"

# ---- sanitizer builds: $(BUILD)/<san>/libshed.a and the test programs ----

SAN_CC      := clang
SAN_CFLAGS  := -std=gnu11 -Wall -Wextra -Werror -g -O1 -fno-omit-frame-pointer \
               -Iinclude -Isrc -Itest -D_GNU_SOURCE $(URING)
SAN_asan    := -fsanitize=address
SAN_ubsan   := -fsanitize=undefined -fno-sanitize-recover=all
SAN_tsan    := -fsanitize=thread
# The checking build is a variant as the sanitizers are, with the compiler
# and flags of the normal build and the checks compiled in.
SAN_debug   := -DSHED_DEBUG
VARIANT_CC_debug := $(CC)
VARIANT_CFLAGS_debug := -std=gnu11 $(WARN) $(CFLAGS) $(NO_SPLIT) -Iinclude -Isrc -Itest \
               -D_GNU_SOURCE $(URING)
# allocator_may_return_null=1: the tests ask for SIZE_MAX bytes on purpose;
# detect_leaks=0: the tests keep blocks on purpose (the bad-input children);
# detect_deadlocks=0: fork_prepare holds every lock of shed (more than 64),
# beyond what the deadlock detector can track (it fails a CHECK and hangs);
# die_after_fork=0: a fork()ed child starts shed's release thread, which TSan
# does not vouch for after a multi-threaded fork (the lifecycle tests do it
# on purpose, and run clean).
ENV_asan    := ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1
ENV_ubsan   := UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ENV_tsan    := TSAN_OPTIONS=halt_on_error=1:detect_deadlocks=0:allocator_may_return_null=1:die_after_fork=0
SAN_TESTS   := $(TEST_SRC) $(ATTACK_SRC)
# Under ASan also: a use after free of a shed block is caught.
SAN_EXTRA_asan := $(BUILD)/asan/test/attack/uaf
# Under each sanitizer also the lifecycle tests: the release thread, heaps,
# freeze and fork, against threads that allocate and free meanwhile.
# (lifecycle.mk's LC_SRC is not yet set here: it is included after this file.)
LC_TESTS := $(wildcard test/lifecycle/test_*.c)
SAN_EXTRA_asan += $(patsubst test/%.c,$(BUILD)/asan/test/%,$(LC_TESTS))
SAN_EXTRA_ubsan := $(patsubst test/%.c,$(BUILD)/ubsan/test/%,$(LC_TESTS))
SAN_EXTRA_tsan := $(patsubst test/%.c,$(BUILD)/tsan/test/%,$(LC_TESTS))
SAN_EXTRA_debug := $(patsubst test/%.c,$(BUILD)/debug/test/%,$(LC_TESTS) \
                     $(wildcard test/internal/test_*.c))

san-deps:
	@$(NEED) clang libclang-rt-14-dev libcmocka-dev pkg-config valgrind

# $(call san_rules,asan): objects, library and test programs of one sanitizer
# (or of the checking build: VARIANT_CC_debug and VARIANT_CFLAGS_debug).
define san_rules
VARIANT_CC_$(1) ?= $(SAN_CC)
VARIANT_CFLAGS_$(1) ?= $(SAN_CFLAGS)
$(BUILD)/$(1)/obj/%.o: src/%.c $(HDRS) | san-deps
	@mkdir -p $$(dir $$@)
	$$(VARIANT_CC_$(1)) $$(VARIANT_CFLAGS_$(1)) $(SAN_$(1)) -c $$< -o $$@

$(BUILD)/$(1)/libshed.a: $(SRC:src/%.c=$(BUILD)/$(1)/obj/%.o)
	@rm -f $$@
	ar rcs $$@ $$^

$(BUILD)/$(1)/test/%: test/%.c $$(wildcard test/*.h test/attack/*.h test/lifecycle/*.h) include/shed.h $(BUILD)/$(1)/libshed.a
	@mkdir -p $$(dir $$@)
	$$(VARIANT_CC_$(1)) $$(VARIANT_CFLAGS_$(1)) $(SAN_$(1)) -o $$@ $$< $(BUILD)/$(1)/libshed.a $$(CMOCKA_LIBS) $(LIB_A_LIBS)

SAN_BIN_$(1) := $(SAN_TESTS:test/%.c=$(BUILD)/$(1)/test/%) $(SAN_EXTRA_$(1))

check-$(1): san-deps $$(SAN_BIN_$(1))
	@failed=; for t in $$(SAN_BIN_$(1)); do echo "== $(1) $$$$t"; \
	    $(ENV_$(1)) $$$$t || failed="$$$$failed $$$${t#$(BUILD)/$(1)/test/}"; done; \
	if [ -n "$$$$failed" ]; then echo "check-$(1): failed:$$$$failed" >&2; exit 1; fi
	@echo "check-$(1): $$(words $$(SAN_BIN_$(1))) test programs passed under $(1)"
endef
$(foreach s,asan ubsan tsan debug,$(eval $(call san_rules,$(s))))

CHECK_TARGETS += check-attack check-asan check-ubsan check-tsan check-debug

# ---- fuzzing: libFuzzer + ASan over the library sources, checks compiled in ----

FUZZ_OUT     := $(BUILD)/fuzz
FUZZ_BIN     := $(FUZZ_OUT)/fuzz_ops
FUZZ_SECONDS ?= 60
# -rss_limit_mb: ASan's shadow plus shed's region reservation are address
# space, not memory; the limit checks RSS.
FUZZ_ENV     := ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1
FUZZ_FLAGS   := -max_len=512 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1

$(FUZZ_BIN): test/fuzz/fuzz_ops.c $(SRC) $(HDRS) | san-deps
	@mkdir -p $(dir $@)
	$(SAN_CC) $(SAN_CFLAGS) -DSHED_DEBUG -fsanitize=fuzzer,address -o $@ test/fuzz/fuzz_ops.c \
	    $(SRC) $(LIB_A_LIBS)

# Replays the seed corpus and every saved crash: each must run clean.
check-fuzz-regress: $(FUZZ_BIN)
	@files=$$(ls test/fuzz/corpus/* test/fuzz/regressions/* 2>/dev/null); \
	if ! $(FUZZ_ENV) $(FUZZ_BIN) $$files >$(FUZZ_OUT)/regress.log 2>&1; then \
	    cat $(FUZZ_OUT)/regress.log; echo "check-fuzz-regress: failed" >&2; exit 1; fi; \
	echo "check-fuzz-regress: $$(echo $$files | wc -w) inputs replayed clean"

# Fuzzes from the seed corpus into $(FUZZ_OUT)/corpus (the seeds stay as
# they are); a crash is left as $(FUZZ_OUT)/crash-*: copy it to
# test/fuzz/regressions/ once understood.
fuzz: $(FUZZ_BIN)
	@mkdir -p $(FUZZ_OUT)/corpus
	$(FUZZ_ENV) $(FUZZ_BIN) $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=$(FUZZ_OUT)/ $(FUZZ_OUT)/corpus test/fuzz/corpus

check-fuzz: check-fuzz-regress
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=60

CHECK_TARGETS += check-fuzz-regress

# ---- soak (not in make check) ----

SECONDS ?= 30

$(ATTACK_OUT)/soak: test/attack/soak.c test/attack/attack.h test/child.h include/shed.h \
                    $(BUILD)/debug/libshed.a
	@mkdir -p $(dir $@)
	$(CC) $(ATTACK_CFLAGS) -o $@ $< $(BUILD)/debug/libshed.a $(LIB_A_LIBS)

soak: $(ATTACK_OUT)/soak
	$(ATTACK_OUT)/soak $(SECONDS)

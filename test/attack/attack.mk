# shed under attack:
#   make check-attack      fault injection and bad input (test/attack/test_*.c)
#                          against $(LIB_A), and bad frees through LD_PRELOAD
#   make check-asan        the library built with clang and -fsanitize=address,
#   make check-ubsan       ... undefined, ... thread: the cmocka suites
#   make check-tsan        (SUITE_SRC: test/test_*.c, test/attack/test_*.c,
#                          test/lifecycle/test_*.c, test/internal's) against
#                          it; check-asan also shows a use after free is caught
#   make soak SECONDS=N    8 threads, forks, trims, freezes, heaps; RSS bound
#                          (against the checking build)

ATTACK_OUT    := $(BUILD)/attack
ATTACK_SRC    := $(wildcard test/attack/test_*.c)
ATTACK_BIN    := $(ATTACK_SRC:test/attack/%.c=$(ATTACK_OUT)/%)
ATTACK_CFLAGS := $(PROG_CFLAGS) -Iinclude -Isrc -Itest

.PHONY: check-attack soak

$(ATTACK_OUT)/test_%: test/attack/test_%.c $(LIB_A) | $(call need,libcmocka-dev pkg-config valgrind)
	$(call compile,$(CC) $(ATTACK_CFLAGS),$(LIB_A) $(CMOCKA_LIBS) $(LIB_A_LIBS))

# A plain program (no shed API) that frees badly, run under LD_PRELOAD.
$(ATTACK_OUT)/badfree: test/attack/badfree.c
	$(call compile,$(CC) $(PROG_CFLAGS) -fno-builtin)

check-attack: $(ATTACK_BIN) $(ATTACK_OUT)/badfree $(LIB_SO)
	@failed=; $(call run_each,$(ATTACK_BIN)); \
	sh test/attack/preload_bad.sh $(ATTACK_OUT)/badfree $(LIB_SO) || failed="$$failed preload_bad"; \
	$(call name_failures,check-attack,$(words $(ATTACK_BIN)) test programs and the preload checks passed)

# ---- sanitizer variants of the library (see "Variants" in the Makefile) ----

SAN_CC      := clang
SAN_NEED    := clang libclang-rt-14-dev
SAN_CFLAGS  := -std=gnu11 $(WARN) -g -O1 -fno-omit-frame-pointer \
               -Iinclude -Isrc -Itest -D_GNU_SOURCE $(URING)
# allocator_may_return_null=1: the tests ask for SIZE_MAX bytes on purpose;
# detect_leaks=0: the tests keep blocks on purpose (the bad-input children);
# detect_deadlocks=0: fork_prepare holds every lock of shed (more than 64),
# beyond what the deadlock detector can track (it fails a CHECK and hangs);
# die_after_fork=0: a fork()ed child starts shed's release thread, which TSan
# does not vouch for after a multi-threaded fork (the lifecycle tests do it
# on purpose, and run clean).
VARIANTS += asan ubsan tsan
VARIANT_CFLAGS_asan  := $(SAN_CFLAGS) -fsanitize=address
VARIANT_CFLAGS_ubsan := $(SAN_CFLAGS) -fsanitize=undefined -fno-sanitize-recover=all
VARIANT_CFLAGS_tsan  := $(SAN_CFLAGS) -fsanitize=thread
VARIANT_ENV_asan     := ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1
VARIANT_ENV_ubsan    := UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
VARIANT_ENV_tsan     := TSAN_OPTIONS=halt_on_error=1:detect_deadlocks=0:allocator_may_return_null=1:die_after_fork=0
$(foreach s,asan ubsan tsan,$(eval VARIANT_CC_$(s) := $(SAN_CC))$(eval VARIANT_NEED_$(s) := $(SAN_NEED)))
# Under ASan also: a use after free of a shed block is caught.
VARIANT_EXTRA_asan   += $(BUILD)/asan/test/attack/uaf

# ---- soak (not in make check) ----

SECONDS ?= 30

$(ATTACK_OUT)/soak: test/attack/soak.c $(DEBUG_LIB_A)
	$(call compile,$(CC) $(ATTACK_CFLAGS),$(DEBUG_LIB_A) $(LIB_A_LIBS))

soak: $(ATTACK_OUT)/soak
	$(ATTACK_OUT)/soak $(SECONDS)

SUITE_SRC += $(ATTACK_SRC)
PAGES_BIN += $(ATTACK_BIN)
CHECK_TARGETS += check-attack check-asan check-ubsan check-tsan

# Fuzzing: libFuzzer and ASan over the library sources, with the checking
# build's checks (-DSHED_DEBUG) compiled in.
#   make check-fuzz-regress  the fuzz target replays its corpus and every
#                            file of test/fuzz/regressions/ (any failure fails)
#   make fuzz FUZZ_SECONDS=N fuzz test/fuzz/fuzz_ops.c for N seconds
#   make check-fuzz          the regressions, then 60 seconds of fuzzing (.ci/run)

FUZZ_OUT     := $(BUILD)/fuzz
FUZZ_BIN     := $(FUZZ_OUT)/fuzz_ops
FUZZ_SECONDS ?= 60
# -rss_limit_mb: ASan's shadow plus shed's region reservation are address
# space, not memory; the limit checks RSS.
FUZZ_ENV     := ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1
FUZZ_FLAGS   := -max_len=512 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1

.PHONY: fuzz check-fuzz check-fuzz-regress

# The sources are compiled into the target (libFuzzer wants them
# instrumented), in one command: it depends on every source and header.
$(FUZZ_BIN): test/fuzz/fuzz_ops.c $(SRC) $(wildcard src/*.h include/*.h) | $$(call need,$$(SAN_NEED))
	@mkdir -p $(@D)
	$(SAN_CC) $(SAN_CFLAGS) -DSHED_DEBUG -fsanitize=fuzzer,address -o $@ \
	    test/fuzz/fuzz_ops.c $(SRC) $(LIB_A_LIBS)

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

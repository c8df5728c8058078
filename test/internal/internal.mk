# Tests of shed's internals (they include src/shed_impl.h):
#   make check-internal   test_block_index against libshed.a: block_index at
#                         every offset of every class, for pages of 4 KiB to
#                         MAX_PAGE; test_slock: the stripe lock, contended;
#                         test_remote: the remote free's locked tail;
#                         test_forkpages: the pages shed writes in a child
# Every variant runs test_block_index too, and the checking build
# (make check-debug) test_check: its checks fail on corrupted state.

INTERNAL_SRC := test/internal/test_block_index.c test/internal/test_slock.c \
                test/internal/test_remote.c test/internal/test_mcache.c \
                test/internal/test_forkpages.c
INTERNAL_BIN := $(INTERNAL_SRC:test/internal/%.c=$(BUILD)/internal/%)

.PHONY: check-internal

$(BUILD)/internal/%: test/internal/%.c $(LIB_A) | $(call need,libcmocka-dev pkg-config)
	$(call compile,$(CC) $(PROG_CFLAGS) -Iinclude -Isrc -Itest,$(LIB_A) $(CMOCKA_LIBS) $(LIB_A_LIBS))

check-internal: $(INTERNAL_BIN)
	$(call run_tests,check-internal,$(INTERNAL_BIN))

SUITE_SRC += $(INTERNAL_SRC)
VARIANT_EXTRA_debug += $(BUILD)/debug/test/internal/test_check
CHECK_TARGETS += check-internal

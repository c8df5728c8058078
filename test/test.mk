# The cmocka test suite and the valgrind checks:
#   make check-unit           every test/test_*.c as its own binary, run
#   make check-valgrind       the same binaries under memcheck; any error fails
#   make check-memcheck-demo  memcheck reports test/valgrind/wrong.c's bugs at
#                             their source lines
#   make check-memcheck-leaks memcheck reports test/valgrind/leaks.c's leaks
#                             and stale write, linked and preloaded
# Each test file is a separate binary, so that one file's configuration
# (release mode, on_error) never leaks into another's.

TEST_SRC    := $(wildcard test/test_*.c)
TEST_BIN    := $(TEST_SRC:test/%.c=$(BUILD)/test/%)
TEST_CFLAGS := $(PROG_CFLAGS) -Iinclude
# Under valgrind the tests run SHED_TEST_SCALE percent of their iterations.
VG_SCALE    ?= 20
VALGRIND    := valgrind --error-exitcode=99 --leak-check=full \
               --errors-for-leak-kinds=definite --quiet

.PHONY: test-bins check-unit check-valgrind check-memcheck-demo check-memcheck-leaks

$(BUILD)/test/%: test/%.c $(LIB_A) | $(call need,libcmocka-dev pkg-config valgrind)
	$(call compile,$(CC) $(TEST_CFLAGS),$(LIB_A) $(CMOCKA_LIBS) $(LDLIBS))

test-bins: $(TEST_BIN)

check-unit: $(TEST_BIN)
	$(call run_tests,check-unit,$(TEST_BIN))

check-valgrind: $(TEST_BIN)
	$(call run_tests,check-valgrind,$(TEST_BIN),valgrind ,SHED_TEST_SCALE=$(VG_SCALE) $(VALGRIND),clean under memcheck)

# The deliberately wrong program: -O0 so that every bad access stays at its line.
$(BUILD)/test/wrong: test/valgrind/wrong.c $(LIB_A) | $(call need,valgrind)
	$(call compile,$(CC) $(PROG_CFLAGS) -Iinclude -O0 -g,$(LIB_A) $(LDLIBS))

check-memcheck-demo: $(BUILD)/test/wrong
	@sh test/valgrind/check-demo.sh $(BUILD)/test/wrong test/valgrind/wrong.c

# Leaks and a stale write, reported as on memcheck's own malloc: linked
# (shed_malloc), and with malloc under the preload.  -O0 -g, as above.
$(BUILD)/test/leaks: test/valgrind/leaks.c $(LIB_A) | $(call need,valgrind)
	$(call compile,$(CC) $(PROG_CFLAGS) -Iinclude -O0 -g,$(LIB_A) $(LIB_A_LIBS))

$(BUILD)/test/leaks-malloc: test/valgrind/leaks.c | $(call need,valgrind)
	$(call compile,$(CC) $(PROG_CFLAGS) -O0 -g -DUSE_MALLOC,)

check-memcheck-leaks: $(BUILD)/test/leaks $(BUILD)/test/leaks-malloc $(LIB_SO)
	@sh test/valgrind/check-leaks.sh $(BUILD)/test/leaks test/valgrind/leaks.c
	@sh test/valgrind/check-leaks.sh $(BUILD)/test/leaks-malloc test/valgrind/leaks.c $(abspath $(LIB_SO))

SUITE_SRC += $(TEST_SRC)
PAGES_BIN += $(TEST_BIN)
CHECK_TARGETS += check-unit check-valgrind check-memcheck-demo check-memcheck-leaks

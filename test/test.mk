# The cmocka test suite and the valgrind checks (included by the Makefile).
#   make check-unit           every test/test_*.c as its own binary, run
#   make check-valgrind       the same binaries under memcheck; any error fails
#   make check-memcheck-demo  memcheck reports test/valgrind/wrong.c's bugs at
#                             their source lines
# Each test file is a separate binary, so that one file's configuration
# (release mode, on_error) never leaks into another's.

TEST_SRC    := $(wildcard test/test_*.c)
TEST_BIN    := $(TEST_SRC:test/%.c=$(BUILD)/test/%)
TEST_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -Iinclude -D_GNU_SOURCE $(CFLAGS)
# Under valgrind the tests run SHED_TEST_SCALE percent of their iterations.
VG_SCALE    ?= 20
VALGRIND    := valgrind --error-exitcode=99 --leak-check=full \
               --errors-for-leak-kinds=definite --quiet

.PHONY: test-deps test-bins check-unit check-valgrind check-memcheck-demo

# Runs every time (cheap): installs what is missing, or names it and stops.
test-deps:
	@$(NEED) libcmocka-dev pkg-config valgrind

$(BUILD)/test/%: test/%.c test/shed_test.h test/child.h include/shed.h $(LIB_A) | test-deps
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -o $@ $< $(LIB_A) \
	    $$(pkg-config --libs cmocka 2>/dev/null || echo -lcmocka) $(LDLIBS)

test-bins: $(TEST_BIN)

# Every program runs even when one fails; the failures are named at the end.
check-unit: test-deps $(TEST_BIN)
	@failed=; for t in $(TEST_BIN); do echo "== $$t"; \
	    $$t || failed="$$failed $${t##*/}"; done; \
	if [ -n "$$failed" ]; then echo "check-unit: FAILED:$$failed" >&2; exit 1; fi
	@echo "check-unit: $(words $(TEST_BIN)) test programs passed"

check-valgrind: test-deps $(TEST_BIN)
	@failed=; for t in $(TEST_BIN); do echo "== valgrind $$t"; \
	    SHED_TEST_SCALE=$(VG_SCALE) $(VALGRIND) $$t || failed="$$failed $${t##*/}"; done; \
	if [ -n "$$failed" ]; then echo "check-valgrind: FAILED:$$failed" >&2; exit 1; fi
	@echo "check-valgrind: $(words $(TEST_BIN)) test programs clean under memcheck"

# The deliberately wrong program: -O0 so that every bad access stays at its line.
$(BUILD)/test/wrong: test/valgrind/wrong.c include/shed.h $(LIB_A) | test-deps
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -Wall -Wextra -Werror -Iinclude -O0 -g -o $@ $< $(LIB_A) $(LDLIBS)

check-memcheck-demo: test-deps $(BUILD)/test/wrong
	@sh test/valgrind/check-demo.sh $(BUILD)/test/wrong test/valgrind/wrong.c

CHECK_TARGETS += check-unit check-valgrind check-memcheck-demo

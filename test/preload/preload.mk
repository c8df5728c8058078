# The drop-in malloc checks, all against $(LIB_SO) through the standard names:
#   make check-preload            all of the below
#   make check-preload-unit       the cmocka suite test/test_*.c, built again
#                                 with shed_malloc & co renamed to malloc & co
#                                 (test/preload/names.h), linked to libshed.so
#   make check-preload-semantics  posix_memalign & co keep glibc's semantics,
#                                 small blocks come from shed's pools, and the
#                                 sizes of glibc's blocks come from glibc even
#                                 with another allocator after shed
#   make check-preload-programs   python3, sort, xz, sqlite3, git, a C++ and a
#                                 threaded C program, and one whose first large
#                                 request comes from a thread, give the same
#                                 output with and without LD_PRELOAD=libshed.so
#   make check-cpython            CPython's own regression suite, plain and
#                                 preloaded (PYTHONMALLOC=malloc): not in
#                                 check-preload, it takes minutes a run

PRELOAD_OUT    := $(BUILD)/preload
PRELOAD_CFLAGS := $(PROG_CFLAGS) -Iinclude
# The same sources as test/test.mk's, linked dynamically: libshed.so comes
# before libc, so its malloc & co serve the whole program, cmocka included.
PRELOAD_UNIT_SRC := $(wildcard test/test_*.c)
PRELOAD_UNIT_BIN := $(PRELOAD_UNIT_SRC:test/%.c=$(PRELOAD_OUT)/%)
PRELOAD_SO_LINK  := -L$(BUILD) -lshed -Wl,-rpath,$(abspath $(BUILD))
# Under the standard names GCC knows the calls (builtins, glibc's alloc_size
# attributes): it could fold malloc/free pairs away, and it rejects what the
# suite does on purpose (sizes near SIZE_MAX, using the 16 usable bytes of a
# malloc(0) block, a block after a realloc that failed).
PRELOAD_UNIT_CFLAGS := -fno-builtin -Wno-alloc-size-larger-than -Wno-array-bounds
PRELOAD_PYTHON   ?= /usr/bin/python3

.PHONY: check-preload check-preload-unit check-preload-semantics check-preload-programs \
        check-cpython

$(PRELOAD_OUT)/test_%: test/test_%.c $(LIB_SO) | $(call need,libcmocka-dev pkg-config valgrind)
	$(call compile,$(CC) $(PRELOAD_CFLAGS) $(PRELOAD_UNIT_CFLAGS) -include test/preload/names.h,$(PRELOAD_SO_LINK) $(CMOCKA_LIBS) $(LDLIBS))

check-preload-unit: $(PRELOAD_UNIT_BIN)
	$(call run_tests,check-preload-unit,$(PRELOAD_UNIT_BIN),preload )

# -fno-builtin: GCC may otherwise fold or drop malloc/free pairs under test.
$(PRELOAD_OUT)/semantics: test/preload/semantics.c
	$(call compile,$(CC) $(PRELOAD_CFLAGS) -fno-builtin,-ldl)

$(PRELOAD_OUT)/usable: test/preload/usable.c
	$(call compile,$(CC) $(PRELOAD_CFLAGS) -fno-builtin)

$(PRELOAD_OUT)/decoy.so: test/preload/decoy.c
	$(call compile,$(CC) $(PRELOAD_CFLAGS) -shared -fPIC)

check-preload-semantics: $(PRELOAD_OUT)/semantics $(PRELOAD_OUT)/usable $(PRELOAD_OUT)/decoy.so $(LIB_SO)
	LD_PRELOAD=$(abspath $(LIB_SO)) $(PRELOAD_OUT)/semantics
	LD_PRELOAD="$(abspath $(LIB_SO)) $(abspath $(PRELOAD_OUT)/decoy.so)" $(PRELOAD_OUT)/usable

# probe.so reports shed's statistics at each process's exit (see probe.c).
$(PRELOAD_OUT)/probe.so: test/preload/probe.c
	$(call compile,$(CC) $(PRELOAD_CFLAGS) -shared -fPIC,-ldl)

$(PRELOAD_OUT)/threads $(PRELOAD_OUT)/first_large: $(PRELOAD_OUT)/%: test/preload/%.c
	$(call compile,$(CC) $(PRELOAD_CFLAGS),$(LDLIBS))

$(PRELOAD_OUT)/cxx: test/preload/cxx.cpp | $(call need,g++)
	$(call compile,g++ -std=gnu++17 $(WARN) $(CFLAGS))

check-preload-programs: $(LIB_SO) $(PRELOAD_OUT)/probe.so $(PRELOAD_OUT)/threads \
                        $(PRELOAD_OUT)/first_large $(PRELOAD_OUT)/cxx \
                        | $(call need,python3 sqlite3 xz-utils git)
	sh test/preload/programs.sh $(LIB_SO) $(PRELOAD_OUT)/probe.so $(PRELOAD_OUT) $(PRELOAD_PYTHON)

# CPYTHON_TESTS: test files to run (default: the whole suite).
check-cpython: $(LIB_SO) | $(call need,python3)
	sh test/preload/cpython.sh $(LIB_SO) $(PRELOAD_PYTHON) $(CPYTHON_TESTS)

check-preload: check-preload-unit check-preload-semantics check-preload-programs

PAGES_BIN += $(PRELOAD_UNIT_BIN)
CHECK_TARGETS += check-preload

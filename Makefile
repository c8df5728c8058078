# shed: build, test, benchmark and install.
#   make            libshed.a, libshed.so, the launcher shed-run and the
#                   Python module shed in build/
#   make check      every check of every fragment (CHECK_TARGETS)
#   make check-debug  the checking build (-DSHED_DEBUG) under the suites
#   make demo       the main job: what the kernel gets back
#   make bench      shed against its peers (QUICK=1 for a short run)
#   make install    PREFIX=/usr/local DESTDIR=
#
# Fragments.  Each folder with programs to build or run has one fragment,
# FOLDER/NAME.mk, listed in FRAGMENTS at the end.  A fragment defines the
# rules of its own folder and adds to the shared lists:
#   CHECK_TARGETS  targets that make check runs
#   SUITE_SRC      cmocka programs (test/.../test_*.c) that every library
#                  variant (checking build, sanitizers) runs too
#   PAGES_BIN      programs that check-pages runs with larger pages
#   VARIANTS       library variants (see "Variants" below)
# and uses what this file defines first: WARN, PROG_CFLAGS, CMOCKA_LIBS,
# DEPFLAGS, the recipes compile, run_tests, run_each and name_failures, and
# $(call need,PKG...).  Another fragment's variables are read only in
# recipes or, in prerequisites, as $$(VAR) (second expansion), so the order
# of FRAGMENTS does not matter.  Adding one: write FOLDER/NAME.mk, add it to
# FRAGMENTS (make refuses a fragment that exists but is not listed).

VERSION := $(shell cat VERSION)
CC      ?= cc
PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
NEED    := sh tools/need.sh

WARN    := -Wall -Wextra -Werror
CFLAGS  ?= -O2 -g
# gcc's hot/cold splitting guesses wrong on the allocation fast path (it
# moved the common return into .text.unlikely); keep each function whole.
NO_SPLIT := $(shell $(CC) -fno-reorder-blocks-and-partition -E -x c /dev/null >/dev/null 2>&1 && echo -fno-reorder-blocks-and-partition)
# The io_uring backend is compiled where liburing's header is (it loads the
# library at run time, so nothing links against it).
URING   := $(shell printf '\043include <liburing.h>\n' | $(CC) -E -x c - >/dev/null 2>&1 && echo -DSHED_URING)
SHED_CFLAGS := -std=gnu11 $(WARN) -fPIC -fvisibility=hidden -Iinclude -Isrc $(NO_SPLIT) \
               -D_GNU_SOURCE $(URING) $(EXTRA_CFLAGS)
LDLIBS  := -lpthread
# libshed.so's data layout (src/libshed.ld), where the linker takes the
# script (GNU ld and lld do).
SO_LAYOUT := $(shell $(CC) -shared -Wl,-T,src/libshed.ld -o /dev/null -x c /dev/null >/dev/null 2>&1 && echo -Wl,-T,src/libshed.ld)
# Test programs, tools and benchmarks.
PROG_CFLAGS := -std=gnu11 $(WARN) -D_GNU_SOURCE $(CFLAGS)
# Evaluated when a recipe runs, after need.sh installed pkg-config.
CMOCKA_LIBS = $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)
# Header dependencies: every compile writes $@.d, included at the end.
DEPFLAGS = -MMD -MP -MF $@.d -MT $@

SRC     := $(filter-out src/preload.c,$(wildcard src/*.c))
# Programs linked with libshed.a need these too.
LIB_A_LIBS := -lpthread -ldl
OBJ     := $(SRC:src/%.c=$(BUILD)/obj/%.o)
SO_OBJ  := $(SRC:src/%.c=$(BUILD)/pic/%.o) $(BUILD)/pic/preload.o

LIB_A   := $(BUILD)/libshed.a
LIB_SO  := $(BUILD)/libshed.so
# The launcher (run/run.mk) and the Python module (python/python.mk), built
# with the system python3 unless PYTHON= names another.
SHED_RUN := $(BUILD)/shed-run
PYTHON  ?= /usr/bin/python3
PY_MOD  := $(BUILD)/python/shed.abi3.so

.PHONY: all clean install check check-version check-install FORCE
.SECONDEXPANSION:
all: $(LIB_A) $(LIB_SO) $(SHED_RUN) $(PY_MOD)

# ---- shared recipes ----

# $(call need,PKG...): order-only prerequisites that install each Debian
# package through tools/need.sh once (a stamp in $(BUILD)/need/), or name it
# and stop: no target dies with a bare compiler error.
# (Precious: a stamp made by a pattern rule is otherwise intermediate, and
# make deleted it at the end of every run, so need.sh ran again each time.)
need = $(addprefix $(BUILD)/need/,$(1))
.PRECIOUS: $(BUILD)/need/%
$(BUILD)/need/%:
	@$(NEED) $*
	@mkdir -p $(@D) && touch $@

# $(call compile,COMPILER AND FLAGS,LIBRARIES): $@ from $< (a program, or
# with -c an object).
define compile
@mkdir -p $(@D)
$(1) $(DEPFLAGS) -o $@ $< $(2)
endef

# $(call run_each,PROGRAMS,LABEL,PREFIX,SUFFIX): shell text that runs every
# program (after PREFIX: an environment, a checker), each announced by
# "== LABEL program", and adds the failures (with SUFFIX) to $$failed.
run_each = for t in $(1); do echo "== $(2)$$t"; $(3) $$t || failed="$$failed $$t$(4)"; done
# $(call name_failures,TARGET,MESSAGE): fail naming $$failed, or say MESSAGE.
name_failures = if [ -n "$$failed" ]; then echo "$(1): FAILED:$$failed" >&2; exit 1; fi; \
	echo "$(1): $(2)"
# $(call run_tests,TARGET,PROGRAMS,LABEL,PREFIX,WHAT): the recipe of a check
# that runs programs: every one runs, then the failures are named.
run_tests = @failed=; $(call run_each,$(2),$(3),$(4)); \
	$(call name_failures,$(1),$(words $(2)) test program(s) $(or $(5),passed))

# ---- the library ----

# valgrind's client-request headers are compiled in.
$(BUILD)/obj/%.o: src/%.c | $(call need,valgrind)
	$(call compile,$(CC) $(CFLAGS) $(SHED_CFLAGS) -c)

$(BUILD)/pic/%.o: src/%.c | $(call need,valgrind)
	$(call compile,$(CC) $(CFLAGS) $(SHED_CFLAGS) -DSHED_PRELOAD -c)

$(LIB_A): $(OBJ)
	@rm -f $@
	ar rcs $@ $^

$(LIB_SO): $(SO_OBJ) src/libshed.ld
	$(CC) -shared -Wl,-soname,libshed.so $(SO_LAYOUT) -o $@ $(SO_OBJ) $(LDLIBS) -ldl

# Made at every make that needs it, and replaced only when it differs: it
# names PREFIX, which a file's date cannot tell (make check makes it for
# the default; make install PREFIX=... must not install that one).
$(BUILD)/shed.pc: FORCE
	@mkdir -p $(BUILD)
	@printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: shed\nDescription: small-object allocator that gives pages back to the kernel\nVersion: %s\nLibs: -L$${libdir} -lshed\nLibs.private: -lpthread -ldl\nCflags: -I$${includedir}\n' '$(PREFIX)' '$(VERSION)' > $@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@ && echo "made $@ (prefix $(PREFIX))"; fi
FORCE:

# shed-run is made again for PREFIX; the Python module goes where it looks.
install: all $(BUILD)/shed.pc
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include \
	    $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/shed/python \
	    $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man3 \
	    $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/shed.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(BUILD)/shed.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	$(call run_script,$(PREFIX)/lib,$(PREFIX)/lib/shed/python,$(BUILD)/shed-run.install)
	install -m 755 $(BUILD)/shed-run.install $(DESTDIR)$(PREFIX)/bin/shed-run
	install -m 644 $(PY_MOD) $(DESTDIR)$(PREFIX)/lib/shed/python/
	install -m 644 man/man1/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 man/man3/*.3 $(DESTDIR)$(PREFIX)/share/man/man3/
	install -m 644 man/man7/*.7 $(DESTDIR)$(PREFIX)/share/man/man7/

clean:
	rm -rf $(BUILD)

# make install into a scratch DESTDIR with a PREFIX of its own, after
# shed.pc was made for the default one (as make check-version makes it):
# every file is there, and shed.pc names that PREFIX and VERSION.
INSTALL_TRY := $(BUILD)/install-try
# After check-version, which reads the shed.pc this rewrites.
check-install: all check-version
	@rm -rf $(INSTALL_TRY) && $(MAKE) --no-print-directory -s $(BUILD)/shed.pc
	@$(MAKE) --no-print-directory -s install PREFIX=/opt/shed-try DESTDIR=$(abspath $(INSTALL_TRY))
	@sh tools/check-install.sh $(INSTALL_TRY) /opt/shed-try $(VERSION)
	@$(MAKE) --no-print-directory -s $(BUILD)/shed.pc

# VERSION is the one version: shed.pc is made from it, and shed.h's
# SHED_VERSION and every man page's .TH must say the same.
check-version: $(BUILD)/shed.pc
	@sh tools/check-version.sh VERSION include/shed.h $(BUILD)/shed.pc man

# ---- variants of the library: $(BUILD)/V/libshed.a and the suites ----
# A fragment (or this file) adds V to VARIANTS and sets VARIANT_CC_V and
# VARIANT_CFLAGS_V (library and programs alike), VARIANT_ENV_V (how its
# programs run), VARIANT_NEED_V (packages), and may add programs to
# VARIANT_EXTRA_V.  make check-V runs SUITE_SRC and VARIANT_EXTRA_V against
# $(BUILD)/V/libshed.a, each program at $(BUILD)/V/test/PATH (from test/PATH.c).
define variant_rules
$(BUILD)/$(1)/obj/%.o: src/%.c | $(call need,$(VARIANT_NEED_$(1)))
	$$(call compile,$(VARIANT_CC_$(1)) $(VARIANT_CFLAGS_$(1)) -c)

$(BUILD)/$(1)/libshed.a: $(SRC:src/%.c=$(BUILD)/$(1)/obj/%.o)
	@rm -f $$@
	ar rcs $$@ $$^

$(BUILD)/$(1)/test/%: test/%.c $(BUILD)/$(1)/libshed.a | $(call need,$(VARIANT_NEED_$(1)) libcmocka-dev pkg-config)
	$$(call compile,$(VARIANT_CC_$(1)) $(VARIANT_CFLAGS_$(1)),$(BUILD)/$(1)/libshed.a $$(CMOCKA_LIBS) $(LIB_A_LIBS))

VARIANT_BIN_$(1) := $(SUITE_SRC:test/%.c=$(BUILD)/$(1)/test/%) $(VARIANT_EXTRA_$(1))
.PHONY: check-$(1)
check-$(1): $$(VARIANT_BIN_$(1))
	$$(call run_tests,check-$(1),$$(VARIANT_BIN_$(1)),$(1) ,$(VARIANT_ENV_$(1)),passed under $(1))
endef

# The checking build (src/check.c): the compiler and flags of the normal
# build, the invariants of shed_impl.h checked where they change.  The fuzzer
# and the soak are built with it too.
VARIANTS += debug
VARIANT_CC_debug     := $(CC)
VARIANT_CFLAGS_debug := -std=gnu11 $(WARN) $(CFLAGS) $(NO_SPLIT) -Iinclude -Isrc -Itest \
                        -D_GNU_SOURCE $(URING) -DSHED_DEBUG
VARIANT_NEED_debug   := valgrind
DEBUG_LIB_A          := $(BUILD)/debug/libshed.a

FRAGMENTS := test/test.mk test/preload/preload.mk test/attack/attack.mk test/fuzz/fuzz.mk \
             test/lifecycle/lifecycle.mk test/pages/pages.mk test/internal/internal.mk \
             test/stats/stats.mk bench/bench.mk man/man.mk run/run.mk python/python.mk
include $(FRAGMENTS)
unlisted := $(filter-out $(FRAGMENTS),$(wildcard */*.mk */*/*.mk))
$(if $(unlisted),$(error fragments not in FRAGMENTS (Makefile): $(unlisted)))
CHECK_TARGETS += check-debug check-version check-install

$(foreach v,$(VARIANTS),$(eval $(call variant_rules,$(v))))
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

check: $(CHECK_TARGETS)
	@echo "make check: all passed ($(CHECK_TARGETS))"

# shed: build, test, benchmark and install.
#   make            libshed.a and libshed.so in build/
#   make check      cmocka tests, the same under valgrind, preload and man checks
#   make demo       the main job: what the kernel gets back
#   make bench      shed against its peers (QUICK=1 for a short run)
#   make install    PREFIX=/usr/local DESTDIR=
# Each part of the tree has its own fragment (test/test.mk,
# test/preload/preload.mk, test/attack/attack.mk, test/lifecycle/lifecycle.mk,
# test/stats/stats.mk,
# bench/bench.mk, bench/demo.mk, man/man.mk), included at the end.

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

SRC     := $(filter-out src/preload.c,$(wildcard src/*.c))
# Programs linked with libshed.a need these too.
LIB_A_LIBS := -lpthread -ldl
OBJ     := $(SRC:src/%.c=$(BUILD)/obj/%.o)
SO_OBJ  := $(SRC:src/%.c=$(BUILD)/pic/%.o) $(BUILD)/pic/preload.o
HDRS    := $(wildcard src/*.h) include/shed.h

LIB_A   := $(BUILD)/libshed.a
LIB_SO  := $(BUILD)/libshed.so

.PHONY: all deps clean install check demo bench
all: $(LIB_A) $(LIB_SO)

# valgrind's client-request headers are compiled in; make sure they exist.
$(BUILD)/.deps-build:
	@$(NEED) valgrind
	@mkdir -p $(BUILD) && touch $@

$(BUILD)/obj/%.o: src/%.c $(HDRS) $(BUILD)/.deps-build
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SHED_CFLAGS) -c $< -o $@

$(BUILD)/pic/%.o: src/%.c $(HDRS) $(BUILD)/.deps-build
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SHED_CFLAGS) -DSHED_PRELOAD -c $< -o $@

$(LIB_A): $(OBJ)
	@rm -f $@
	ar rcs $@ $^

$(LIB_SO): $(SO_OBJ)
	$(CC) -shared -Wl,-soname,libshed.so -o $@ $^ $(LDLIBS) -ldl

$(BUILD)/shed.pc: Makefile
	@mkdir -p $(BUILD)
	printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: shed\nDescription: small-object allocator that gives pages back to the kernel\nVersion: 0.1.0\nLibs: -L$${libdir} -lshed\nLibs.private: -lpthread -ldl\nCflags: -I$${includedir}\n' '$(PREFIX)' > $@

install: all $(BUILD)/shed.pc
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include \
	    $(DESTDIR)$(PREFIX)/share/man/man3 $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/shed.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(BUILD)/shed.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	install -m 644 man/man3/*.3 $(DESTDIR)$(PREFIX)/share/man/man3/
	install -m 644 man/man7/*.7 $(DESTDIR)$(PREFIX)/share/man/man7/

clean:
	rm -rf $(BUILD)

# Each fragment adds its checks to CHECK_TARGETS.
CHECK_TARGETS :=
-include test/test.mk
-include test/preload/preload.mk
-include test/attack/attack.mk
-include test/lifecycle/lifecycle.mk
-include bench/bench.mk
-include bench/demo.mk
-include man/man.mk
-include test/pages/pages.mk
-include test/stats/stats.mk

check: $(CHECK_TARGETS)
	@echo "make check: all passed ($(CHECK_TARGETS))"

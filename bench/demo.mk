# make demo: shed's story, in C and in Python: build a large structure of
# small blocks, drop most of it, and show what the kernel got back.
# The C program bench/demo.c, linked with libshed.a, shows what the kernel gets
# back with each release mode; then, when python3 is present, bench/demo.py
# runs the same story in CPython under pymalloc, glibc and the preloaded
# libshed.so.  Both parts run even if the other failed; a failed run fails the
# target.  Not part of make check: it measures, it does not test.

DEMO_BIN := $(BUILD)/demo

$(DEMO_BIN): bench/demo.c include/shed.h $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -std=gnu11 -Wall -Wextra -Werror -Iinclude $< $(LIB_A) $(LDLIBS) -o $@

demo: $(LIB_A) $(LIB_SO) $(DEMO_BIN)
	@st=0; $(DEMO_BIN) || st=1; \
	if command -v python3 >/dev/null 2>&1; then \
	    python3 bench/demo.py $(LIB_SO) || st=1; \
	else \
	    echo; echo "(python3 not found: the Python part of the demo is skipped)"; \
	fi; exit $$st

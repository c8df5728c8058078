# make demo: shed's story, in C and in Python: build a large structure of
# small blocks, drop most of it, and show what the kernel got back.
# The C program bench/demo.c, linked with libshed.a, shows what the kernel gets
# back with each release mode; then, when python3 is present, bench/demo.py
# runs the same story in CPython under pymalloc, glibc and the preloaded
# libshed.so.  Both parts run even if the other failed; a failed run fails the
# target.  Not part of make check: it measures, it does not test.

DEMO_BIN := $(BUILD)/demo
DEMO_OUT := $(BUILD)/demo-out

$(DEMO_BIN): bench/demo.c include/shed.h $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -std=gnu11 -Wall -Wextra -Werror -Iinclude $< $(LIB_A) $(LDLIBS) -o $@

demo: $(LIB_A) $(LIB_SO) $(DEMO_BIN)
	@mkdir -p $(DEMO_OUT)
	@st=0; $(DEMO_BIN) --out $(DEMO_OUT) || st=1; \
	if $(NEED) librsvg2-bin; then \
	    for f in $(DEMO_OUT)/*.svg; do rsvg-convert -o $${f%.svg}.png $$f || st=1; done; \
	    echo "(and as PNG: $(DEMO_OUT)/*.png)"; \
	else echo "(no PNG of the maps without rsvg-convert)"; fi; \
	if command -v python3 >/dev/null 2>&1; then \
	    python3 bench/demo.py $(LIB_SO) || st=1; \
	else \
	    echo; echo "(python3 not found: the Python part of the demo is skipped)"; \
	fi; exit $$st

# The pair of heap maps in the README: the demo's first pattern under
# release=batched, before the drop and 1 s after, as PNG in docs/.
DOCS_MAPS := docs/heapmap-before.png docs/heapmap-after.png

.PHONY: docs-maps
docs-maps: $(DEMO_BIN)
	@$(NEED) librsvg2-bin
	@mkdir -p $(DEMO_OUT)/docs docs
	SHED_CONF=release=batched SHED_DEMO_OUT=$(DEMO_OUT)/docs $(DEMO_BIN) --child every1000 >/dev/null
	rsvg-convert -o docs/heapmap-before.png $(DEMO_OUT)/docs/every1000-batched-before.svg
	rsvg-convert -o docs/heapmap-after.png $(DEMO_OUT)/docs/every1000-batched-after.svg

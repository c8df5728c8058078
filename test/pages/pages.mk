# The test programs as on a kernel with larger pages (arm64's 16 KiB and
# 64 KiB), run on this one:
#   make check-pages    the programs of PAGES_BIN (test/test_* linked to
#                       libshed.a, and to libshed.so under the standard
#                       names, the lifecycle and the attack programs), and
#                       the drop-in's semantics check, each with every page
#                       size in PAGE_SIZES
# test/pages/bigpage.c, preloaded, shows the program and shed a larger page
# size (sysconf), aligns anonymous mappings to it, and makes mincore and
# madvise judge by it.

PAGE_SIZES  ?= 16384 65536
BIGPAGE_SO  := $(BUILD)/pages/bigpage.so

.PHONY: check-pages

$(BIGPAGE_SO): test/pages/bigpage.c
	$(call compile,$(CC) -std=gnu11 $(WARN) $(CFLAGS) -shared -fPIC)

# getconf first: a preload that did not take would run the suite at 4 KiB.
check-pages: $(BIGPAGE_SO) $$(PAGES_BIN) $$(PRELOAD_OUT)/semantics $(LIB_SO)
	@failed=; for ps in $(PAGE_SIZES); do \
	    seen=$$(SHED_FAKE_PAGE=$$ps LD_PRELOAD=$(abspath $(BIGPAGE_SO)) getconf PAGESIZE); \
	    if [ "$$seen" != "$$ps" ]; then \
	        echo "check-pages: bigpage.so shows $$seen, not $$ps" >&2; exit 1; fi; \
	    $(call run_each,$(PAGES_BIN),$$ps-byte pages: ,SHED_FAKE_PAGE=$$ps LD_PRELOAD=$(abspath $(BIGPAGE_SO)),@$$ps); \
	    SHED_FAKE_PAGE=$$ps LD_PRELOAD="$(abspath $(BIGPAGE_SO)) $(abspath $(LIB_SO))" \
	        $(PRELOAD_OUT)/semantics || failed="$$failed semantics@$$ps"; done; \
	$(call name_failures,check-pages,$(words $(PAGES_BIN)) test programs and the semantics check passed with pages of $(PAGE_SIZES) bytes)

CHECK_TARGETS += check-pages

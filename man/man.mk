# man/man.mk: the manual.
#   make check-man          every function of include/shed.h has a page, and
#                           every page renders without a warning (mandoc
#                           -Tlint -Wwarning, groff -ww); see man/check-man.sh
#   make man                shed(7) in the terminal
#   make man MAN_PAGE=shed_malloc.3   another page (name.section)
# Pages: man/man1/shed-run.1 (the launcher), man/man3/*.3 (one per
# function, or a grouped page plus one-line ".so man3/page.3" link pages),
# man/man7/shed.7.

MAN_DIR     := man
MAN_PAGES   := $(wildcard $(MAN_DIR)/man1/*.1 $(MAN_DIR)/man3/*.3 $(MAN_DIR)/man7/*.7)
MAN_PAGE    ?= shed.7

.PHONY: check-man man
CHECK_TARGETS += check-man

check-man: | $(call need,mandoc groff)
	@sh $(MAN_DIR)/check-man.sh include/shed.h $(MAN_DIR) src run/shed-run.in

# From inside man/, so that the .so of a link page resolves; paged on a
# terminal, plain text (no overstrike) into a pipe or a file.
man: | $(call need,mandoc)
	@cd $(MAN_DIR) && page='man$(subst .,,$(suffix $(MAN_PAGE)))/$(notdir $(MAN_PAGE))' && \
	    test -f "$$page" || { echo "make man: no page $(MAN_DIR)/$$page" >&2; exit 1; } && \
	    if [ -t 1 ]; then mandoc -a "$$page"; \
	    else mandoc -Tutf8 "$$page" | sed 's/.\x08//g'; fi

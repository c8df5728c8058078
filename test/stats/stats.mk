# The reports of shed_stats.
#   make check-reports   test/stats/check_reports.py drives test/stats/reports:
#                        text, JSON and the heap map against shed_stats for a
#                        known allocation pattern; SHED_STATS and SHED_MAP at
#                        exit; stats_interval_ms lines; the messages for bad
#                        values.  Needs python3, rsvg-convert (librsvg2-bin)
#                        and strace.

$(BUILD)/stats/reports: test/stats/reports.c $(LIB_A)
	$(call compile,$(CC) $(PROG_CFLAGS) -Iinclude,$(LIB_A) $(LIB_A_LIBS))

.PHONY: check-reports
check-reports: $(BUILD)/stats/reports | $(call need,python3 librsvg2-bin strace)
	@python3 test/stats/check_reports.py $(BUILD)/stats/reports

CHECK_TARGETS += check-reports

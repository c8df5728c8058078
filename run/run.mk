# run/run.mk: the launcher shed-run.
#   make             builds $(BUILD)/shed-run too (see the Makefile): it
#                    runs a command with this build's libshed.so and Python
#                    module
#   make install     installs bin/shed-run, made for $(PREFIX) (see Makefile)
#   make check-run   the launcher's tests (run/check.sh)
# shed-run is run/shed-run.in with its two directories filled in.

# run_script(LIBDIR, PYDIR, OUT)
run_script = sed -e 's|@LIBDIR@|$(1)|g' -e 's|@PYDIR@|$(2)|g' run/shed-run.in > $(3).tmp && \
             chmod 755 $(3).tmp && mv $(3).tmp $(3)

.PHONY: check-run

$(SHED_RUN): run/shed-run.in run/run.mk
	@mkdir -p $(dir $@)
	$(call run_script,$(abspath $(BUILD)),$(abspath $(BUILD))/python,$@)

# Also installs into a scratch PREFIX and runs the installed launcher; after
# check-version, which reads the shed.pc that this install rewrites.
check-run: $(SHED_RUN) $(LIB_SO) $(PY_MOD) check-version
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(MAKE) --no-print-directory install PREFIX="$$tmp/prefix" >/dev/null && \
	sh run/check.sh $(SHED_RUN) $(PYTHON) "$$tmp/prefix/bin/shed-run"

CHECK_TARGETS += check-run

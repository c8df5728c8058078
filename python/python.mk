# python/python.mk: the Python module shed.
#   make                 builds it too: $(BUILD)/python/shed.abi3.so, which
#                        the build tree's shed-run puts on PYTHONPATH
#   make python          the module alone, with the system python3 (PYTHON=)
#   make check-python    its tests (python/check.sh): with $(PYTHON) and
#                        every other python3.X on the machine, plain and under
#                        the launcher, and once installed by pip (offline)
# One build serves every interpreter: the module uses CPython's limited API
# (shed.abi3.so, Python 3.6 on).  setuptools builds it, offline, with the
# interpreter's compiler and flags.

.PHONY: python check-python
python: $(PY_MOD)

$(PY_MOD): python/shedmodule.c python/setup.py include/shed.h | $(call need,python3-dev python3-setuptools)
	@mkdir -p $(dir $@)
	cd python && $(PYTHON) setup.py -q build_ext --build-lib $(abspath $(dir $@)) \
	    --build-temp $(abspath $(dir $@))/tmp

# A malloc with shed_malloc but none of the calls the module looks up.
$(BUILD)/python/fake_shed.so: python/fake_shed.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -std=gnu11 $(WARN) -shared -fPIC -o $@ $<

check-python: $(PY_MOD) $(SHED_RUN) $(LIB_SO) $(BUILD)/python/fake_shed.so | $(call need,python3-pip python3-wheel)
	sh python/check.sh $(SHED_RUN) $(PY_MOD) $(PYTHON) $(BUILD)/python/fake_shed.so

CHECK_TARGETS += check-python

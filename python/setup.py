# Builds the Python module shed (shedmodule.c) with the interpreter's own
# tools, offline: "make python" runs build_ext for the system python3, and
# "pip install --no-build-isolation ./python" installs it (setuptools and
# wheel from Debian's python3-setuptools and python3-wheel).  The module
# uses CPython's limited API, so the one shed.abi3.so serves Python 3.6 on.
import os

from setuptools import Extension, setup

here = os.path.dirname(os.path.abspath(__file__))
os.chdir(here)                  # sources are named relative to this file

setup(
    name="shed",
    version="0.3.0",         # VERSION says the same (make check-version)
    description="shed's calls (stats, trim, freeze, config) for Python "
                "programs run with shed-run",
    ext_modules=[Extension(
        "shed", ["shedmodule.c"],
        include_dirs=[os.path.join(here, "..", "include")],
        py_limited_api=True,
        extra_compile_args=["-std=gnu11", "-Wall", "-Wextra", "-Werror"],
        libraries=["dl"],
    )],
    options={"bdist_wheel": {"py_limited_api": "cp36"}},
)

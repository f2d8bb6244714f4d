# The compiled build: the relay's hot path (the sans-IO protocol, the
# session state, backends and pool, client connections, the proxy) is
# compiled ahead of time with mypyc, from the same typed Python. Everything
# else (pyproject.toml) is ordinary setuptools metadata.
#
# By default a build (pip install ., a wheel, an sdist installed) compiles
# the modules of COMPILED_PACKAGES, minus INTERPRETED. The pure-Python code
# is the fallback and runs the same tests (scripts/test.sh runs the unit
# suite both ways):
#   MYSQLPOOL_PROXY_COMPILE=0   build without compiling (pure Python)
#   pip install -e: never compiled (the extensions would shadow every edit)
#   no C compiler that finds the Python headers, or mypyc missing: the build
#   says so and goes on pure. A compile that fails after that check fails the
#   build (all or nothing: a module's extension without the shared library
#   would not import); MYSQLPOOL_PROXY_COMPILE=0 then installs pure Python.
# `mysqlpool_proxy.BUILD` says at run time which one runs (logged at
# start-up, shown by --version).
#
#   python setup.py build_ext --inplace    # compile in the source tree (scripts/compile.sh)
"""Build the mysqlpool_proxy package, compiling its hot path with mypyc where possible."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
# Sub-packages and modules compiled: the path every query and login takes.
COMPILED_PACKAGES = ("protocol", "core", "backend", "client", "proxy")
COMPILED_MODULES = ("constants.py", "errors.py", "reasons.py", "events.py")
# Kept interpreted: aiomysql's Connection subclassed (mypyc compiles no subclass of an interpreted class).
INTERPRETED = ("backend/adapter.py",)


def compiled_sources() -> list[str]:
    package = HERE / "mysqlpool_proxy"
    # (Not the packages' __init__.py: nothing runs there, and a package whose __init__ is an extension
    # of a shared library inside the package does not find its interpreted submodules.)
    found = [p for sub in COMPILED_PACKAGES for p in sorted((package / sub).glob("*.py")) if p.name != "__init__.py"]
    found += [package / name for name in COMPILED_MODULES]
    skipped = {package / name for name in INTERPRETED}
    return [str(p.relative_to(HERE)) for p in found if p not in skipped]


def can_compile() -> bool:
    """A C compiler that finds the Python headers (all mypyc's C needs)."""
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    probe = [*cc, "-fsyntax-only", f"-I{sysconfig.get_paths()['include']}", "-x", "c", "-"]
    try:
        return subprocess.run(probe, input=b"#include <Python.h>\n", capture_output=True, timeout=60).returncode == 0
    except OSError:
        return False


def ext_modules() -> list:
    if os.environ.get("MYSQLPOOL_PROXY_COMPILE", "1") == "0":
        return []
    if "editable_wheel" in sys.argv:  # pip install -e: the extensions would shadow every edit of the .py files
        print("mysqlpool-proxy: an editable install stays pure Python (scripts/compile.sh compiles the checkout)",
              file=sys.stderr)
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("mysqlpool-proxy: mypyc is not installed: building pure Python", file=sys.stderr)
        return []
    if not can_compile():
        print("mysqlpool-proxy: no C compiler with the Python headers (gcc, python3-dev): building pure Python",
              file=sys.stderr)
        return []
    os.chdir(HERE)  # mypyc names modules by their paths relative to the working directory
    # The shared library (the compiled code of every module; each module's own extension only imports it)
    # goes inside the package, where whatever finds the package finds it. Not multi_file: with a dotted
    # group name mypyc 2.4 writes C that does not compile.
    return mypycify(compiled_sources(), opt_level="3", debug_level="0", group_name="mysqlpool_proxy.compiled")


if __name__ == "__main__":  # (as pip's build backend runs it too; tests/unit/test_build.py imports it)
    setup(ext_modules=ext_modules())

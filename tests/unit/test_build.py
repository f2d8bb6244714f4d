# The build (setup.py, pyproject.toml's [build-system]): which modules are
# compiled with mypyc, what the isolated build environment installs for
# mypyc's type check, and how the running code says which build it is.
# Building the wheels themselves: tests/integration/test_wheel.py.
from __future__ import annotations

import re
import runpy
import tomllib
from pathlib import Path

import mysqlpool_proxy
from mysqlpool_proxy.protocol import framing

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def ranges(requirements: list[str]) -> dict[str, str]:
    """name (lower case) -> the rest of the requirement (its range and markers)."""
    out = {}
    for req in requirements:
        name = re.match(r"[A-Za-z0-9_.-]+", req)[0]
        out[name.lower()] = req[len(name):]
    return out


def setup_module_globals() -> dict:
    """setup.py's definitions, without running setup() (nothing is built)."""
    return runpy.run_path(str(ROOT / "setup.py"), run_name="setup")


def test_the_build_requirements_have_the_ranges_of_the_project_and_its_tests():
    build = ranges(PYPROJECT["build-system"]["requires"])
    known = ranges(PYPROJECT["project"]["dependencies"]) | ranges(PYPROJECT["project"]["optional-dependencies"]["test"])
    for name, rng in build.items():
        assert name in known, f"{name}: a build requirement the project neither depends on nor tests with"
        assert rng == known[name], f"{name}: {rng!r} to build, {known[name]!r} to run or test"


def test_the_compiled_modules_are_the_hot_path_and_exist():
    compiled = setup_module_globals()["compiled_sources"]()
    assert all((ROOT / path).is_file() for path in compiled)
    assert "mysqlpool_proxy/protocol/response.py" in compiled and "mysqlpool_proxy/client/connection.py" in compiled
    assert "mysqlpool_proxy/backend/adapter.py" not in compiled  # it subclasses aiomysql's Connection
    assert not [p for p in compiled if p.startswith(("mysqlpool_proxy/ops/", "mysqlpool_proxy/config"))]


def test_build_says_which_code_runs():
    loaded_from_source = Path(framing.__file__).suffix == ".py"
    assert ("pure Python" if loaded_from_source else "compiled") == mysqlpool_proxy.BUILD

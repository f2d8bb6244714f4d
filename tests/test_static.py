# Static checks, run as part of the suite so CI (./scripts/test.sh) runs them: mypy as
# configured in pyproject's [tool.mypy] (the whole package; protocol/ and core/ strictly),
# `mypy --strict` on those two layers as issue 11 states it, and `ruff check` with
# pyproject's [tool.ruff] rules on the package, the tests, bench/ and scripts/*.py. The
# tools come from the test extras and run from the venv this interpreter belongs to; a
# finding fails the test with the tool's output.
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: not resolved, a venv's python is a symlink
TIMEOUT = 240  # seconds: a cold mypy run over the package takes well under a minute


def run_tool(name: str, *args: str) -> None:
    tool = BIN / name
    if not tool.exists():
        pytest.fail(f"{tool} is missing: install the test extras (pip install -e '.[test]')")
    result = subprocess.run([str(tool), *args], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
                            check=False)
    if result.returncode != 0:
        command = " ".join([name, *args])
        pytest.fail(f"{command} (exit {result.returncode}):\n{result.stdout}{result.stderr}", pytrace=False)


def test_mypy_as_configured_passes() -> None:
    run_tool("mypy")


def test_mypy_strict_passes_on_protocol_and_core() -> None:
    run_tool("mypy", "--strict", "mysqlpool_proxy/protocol", "mysqlpool_proxy/core")


def test_ruff_passes() -> None:
    scripts = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "scripts").glob("*.py"))
    run_tool("ruff", "check", "--no-fix", "mysqlpool_proxy", "tests", "bench", *scripts)

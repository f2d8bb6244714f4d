# SQLAlchemy's own test suite, run straight to MariaDB and then through the
# proxy, compared test by test: a test that passes directly but not through
# the proxy is a regression of the proxy, unless KNOWN_DIFFERENCES names it
# with its cause. scripts/sqlalchemy-compat.py is the command line;
# tests/compat/test_sqlalchemy_suite.py runs it in CI. The Django comparison
# (django_suite.py) is the model; its proxy process and comparison are reused.
#
# The pieces, in the order a comparison uses them:
#   * sqlalchemy_sdist_dir(): the SQLAlchemy sdist of SQLALCHEMY_VERSION (the
#     only place its test/ folder and pytest plugin ship), fetched once into a
#     cache folder and unpacked there (lib/, test/ and the pytest
#     configuration; sdist.py). The sdist's
#     test/conftest.py puts its own lib/ first on sys.path, so the tests run
#     the SQLAlchemy they were written for, whatever version is installed;
#   * start_backend(): a private MariaDB (tests/support/mariadb.py) with the
#     account the runs use and the `test` and `test_schema` databases that
#     SQLAlchemy's README.unittests.rst asks for; one per run, so that the
#     direct run and the run through the proxy go side by side (the suite's
#     database names are fixed: two runs cannot share a server);
#   * django_suite.ProxyProcess: `python -m mysqlpool_proxy -c FILE`, a real
#     process (transaction pooling, max_size 4 by default);
#   * run_pytest(): `pytest --dburi mysql+DRIVER://... --backend-only` in the
#     unpacked sdist for each leg (a driver and the test files it runs), with
#     a JUnit XML file that parse_junit() turns into
#     {test id: {"outcome", "detail", "seconds"}};
#   * compare(): django_suite.compare() on the two outcome maps, then the
#     regressions that KNOWN_DIFFERENCES names are set apart with their cause.
from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from tests.compat.django_suite import (
    BAD_OUTCOMES,
    PASS,
    Comparison,
    ProxyProcess,
    ProxySettings,
    Regression,
    compare as compare_outcomes,
    error_line,
    format_comparison,
    innermost_test_frame,
    process_cpu_seconds,
)
from tests.compat.sdist import HarnessError, Sdist, unpacked_sdist

__all__ = ["HarnessError", "ProxyProcess", "ProxySettings"]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO_ROOT / ".cache" / "sqlalchemy-compat"

# The release whose test suite runs (its sdist's lib/ runs it, not the
# installed SQLAlchemy). Test ids, and so KNOWN_DIFFERENCES, are this
# release's: change them together.
SQLALCHEMY_VERSION = "2.1.9"


@dataclasses.dataclass(frozen=True)
class Leg:
    """One driver and the sdist's test paths it runs, directly and through the proxy."""
    name: str  # the prefix of its test ids
    dialect: str  # the scheme of the --dburi URL
    paths: tuple[str, ...]
    backend_only: bool = True  # pytest --backend-only: the tests marked as talking to the database


# With --backend-only, only the tests that talk to the database run (a few
# thousand), not the SQL compilation tests. PyMySQL runs them all: the MySQL
# dialect's own tests, the dialect compliance suite every backend passes
# (test/dialect/test_suite.py: types, reflection, DDL, CTEs, rowcounts...),
# INSERT with RETURNING-less "insertmanyvalues" batches, type round trips,
# Core and ORM transactions with savepoints, and the reconnect tests that run
# against a real server. mysqlclient (libmariadb underneath: its own
# handshake, packet splitting and result reading) runs the part that differs
# most by driver. Both runs of both legs take about 3 minutes on 2 cores.
# Wider by hand (scripts/sqlalchemy-compat.py --paths ... --all-tests), the
# ORM unit of work, sessions, versioning, locking, test/engine and Core
# queries, results and defaults (about 2,800 more tests) showed no
# difference either.
LEGS = (
    Leg("pymysql", "mysql+pymysql", (
        "test/dialect/mysql", "test/dialect/test_suite.py", "test/sql/test_types.py",
        "test/sql/test_insert_exec.py", "test/orm/test_transaction.py", "test/engine/test_transaction.py",
        "test/engine/test_reconnect.py",
    )),
    Leg("mysqldb", "mysql+mysqldb", (
        "test/dialect/mysql", "test/engine/test_transaction.py", "test/engine/test_reconnect.py",
    )),
)

# Tests that pass directly and not through the proxy for a reason that is a
# documented limitation of a pooling proxy, not a bug: test-id patterns
# (fnmatch on "LEG: " + normalise_test_id(), e.g.
# "pymysql: test/engine/test_transaction.py::TransactionTest::test_*") and
# the cause. Each one is reported, never counted as a regression; one that
# passes again is reported as stale. Empty: with SQLAlchemy 2.1.9 every
# selected test that passes directly passes through the proxy.
KNOWN_DIFFERENCES: dict[str, str] = {}

BACKEND_USER = "sqla"
BACKEND_PASSWORD = "sqla-compat-secret"
DATABASES = ("test", "test_schema")  # README.unittests.rst: `test` is the URL's, `test_schema` for schema tests

RUN_TIMEOUT = 600.0  # seconds one pytest run may take (a leg takes 1-3 minutes)
TEST_TIMEOUT = 120.0  # seconds one SQLAlchemy test may take (pytest-timeout), so a hang is one failure


# --------------------------------------------------------------------------
# The SQLAlchemy sdist
# --------------------------------------------------------------------------


def sqlalchemy_sdist_dir(version: str = SQLALCHEMY_VERSION, cache: Path = DEFAULT_CACHE, log=print) -> Path:
    """The unpacked sdist (lib/, test/, setup.cfg, pyproject.toml) of SQLAlchemy `version`, made once in `cache`."""
    sdist = Sdist("sqlalchemy", "SQLAlchemy", version, keep=("lib", "test", "setup.cfg", "pyproject.toml"),
                  marker="test/conftest.py", marker_is="SQLAlchemy's pytest plugin")
    return unpacked_sdist(sdist, cache, log)


# --------------------------------------------------------------------------
# The servers
# --------------------------------------------------------------------------


def start_backend(options: Mapping[str, object] | None = None):
    """A private MariaDB (or the MYSQL_TEST_URL server) with the runs' account and databases."""
    from tests.support.mariadb import start_server

    server = start_server(**(options or {}))
    try:
        server.create_user(BACKEND_USER, BACKEND_PASSWORD, grants="ALL PRIVILEGES ON *.*")
        for name in DATABASES:
            server.execute(f"DROP DATABASE IF EXISTS `{name}`")
            server.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    except BaseException:
        server.close()
        raise
    return server


def dburi(leg: Leg, host: str, port: int) -> str:
    return f"{leg.dialect}://{BACKEND_USER}:{BACKEND_PASSWORD}@{host}:{port}/test?charset=utf8mb4"


# --------------------------------------------------------------------------
# One pytest run of a leg
# --------------------------------------------------------------------------


@dataclasses.dataclass
class RunResult:
    name: str  # "direct" or "proxy"
    leg: str
    exit_code: int | None  # None: killed after the timeout
    seconds: float
    outcomes: dict[str, dict] | None  # None: no JUnit file (pytest crashed)
    log_path: Path
    cpu: dict[str, float] = dataclasses.field(default_factory=dict)  # CPU seconds of the proxy

    def counts(self) -> Counter:
        return Counter(entry["outcome"] for entry in (self.outcomes or {}).values())

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class PytestRun:
    """`pytest PATHS --dburi URL` in the unpacked sdist, started now, waited for by wait()."""

    def __init__(self, name: str, leg: Leg, sdist_dir: Path, *, host: str, port: int, workdir: Path,
                 timeout: float = RUN_TIMEOUT, watch_pid: int | None = None) -> None:
        self.name, self.leg, self.timeout, self.watch_pid = name, leg, timeout, watch_pid
        self.junit_path = workdir / f"junit-{leg.name}-{name}.xml"
        self.log_path = workdir / f"run-{leg.name}-{name}.log"
        self.junit_path.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "pytest", *leg.paths, "--dburi", dburi(leg, host, port),
               *(["--backend-only"] if leg.backend_only else []), "-p", "no:cacheprovider",
               f"--junitxml={self.junit_path}", "-o", "junit_family=xunit2", f"--timeout={TEST_TIMEOUT:.0f}", "-q"]
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
        self.cpu_before = process_cpu_seconds(watch_pid) if watch_pid else None
        self.began = time.monotonic()
        with open(self.log_path, "wb") as log:
            # Its own process group, so that a timeout ends whatever it started.
            self.proc = subprocess.Popen(cmd, cwd=sdist_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def wait(self) -> RunResult:
        try:
            code: int | None = self.proc.wait(max(0.0, self.began + self.timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(30)
            code = None
        seconds = time.monotonic() - self.began
        cpu = {}
        if self.watch_pid and self.cpu_before is not None:
            after = process_cpu_seconds(self.watch_pid)
            if after is not None:
                cpu["proxy"] = after - self.cpu_before
        outcomes = None
        if self.junit_path.exists():
            outcomes = {f"{self.leg.name}: {test_id}": entry
                        for test_id, entry in parse_junit(self.junit_path.read_text(errors="replace")).items()}
        return RunResult(self.name, self.leg.name, code, seconds, outcomes, self.log_path, cpu)


# --------------------------------------------------------------------------
# JUnit XML and test ids (pure)
# --------------------------------------------------------------------------

# SQLAlchemy names each backend test class after the database it runs on:
# "...DateTest_mariadb+pymysql_10_11_19". The suffix is the same for both
# runs of a leg but not across servers or drivers, so ids drop it.
_BACKEND_SUFFIX = re.compile(r"_(?:mariadb|mysql)\+\w+_\d+(?:_\d+)*$")


def normalise_test_id(classname: str, name: str) -> str:
    """'test/dialect/test_suite.py::DateTest::test_round_trip[x]' from a JUnit classname and name."""
    parts = classname.split(".")
    # classname is module.path.Class (a test function outside a class has module.path only)
    if parts and parts[-1][:1].isupper():
        module, cls = parts[:-1], _BACKEND_SUFFIX.sub("", parts[-1])
        return f"{'/'.join(module)}.py::{cls}::{name}"
    return f"{'/'.join(parts)}.py::{name}"


def parse_junit(text: str) -> dict[str, dict]:
    """{test id: {"outcome", "detail", "seconds"}} from pytest's JUnit XML; a test's setup or
    teardown error counts as its error."""
    outcomes: dict[str, dict] = {}
    root = ElementTree.fromstring(text)
    for case in root.iter("testcase"):
        test_id = normalise_test_id(case.get("classname", ""), case.get("name", ""))
        outcome, detail = PASS, ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "fail" if child.tag == "failure" else "error"
                detail = child.text or child.get("message", "")
                break
            if child.tag == "skipped":
                kind = child.get("type", "")
                outcome = "xfail" if kind == "pytest.xfail" else "skip"
                detail = child.get("message", "")
        previous = outcomes.get(test_id)
        if previous and previous["outcome"] in BAD_OUTCOMES:
            continue  # a teardown error is reported as a second testcase: keep the first bad outcome
        outcomes[test_id] = {"outcome": outcome, "detail": detail, "seconds": float(case.get("time") or 0.0)}
    return outcomes


# --------------------------------------------------------------------------
# Comparison (pure)
# --------------------------------------------------------------------------


@dataclasses.dataclass
class LegComparison:
    comparison: Comparison  # its regressions are the unexplained ones
    known: list[tuple[Regression, str]]  # regressions KNOWN_DIFFERENCES names, with the cause
    stale: list[str]  # KNOWN_DIFFERENCES patterns whose tests now pass through the proxy


def known_cause(test_id: str, known: Mapping[str, str]) -> str | None:
    return next((cause for pattern, cause in known.items() if fnmatch.fnmatchcase(test_id, pattern)), None)


def compare(direct: Mapping[str, Mapping], proxy: Mapping[str, Mapping],
            known: Mapping[str, str] = KNOWN_DIFFERENCES) -> LegComparison:
    """Regressions (pass directly, not through the proxy), those KNOWN_DIFFERENCES explains set apart."""
    comparison = compare_outcomes(direct, proxy)
    unexplained, explained = [], []
    for regression in comparison.regressions:
        regression = dataclasses.replace(regression, where=innermost_test_frame(regression.detail, "/test/"))
        cause = known_cause(regression.test_id, known)
        if cause is None:
            unexplained.append(regression)
        else:
            explained.append((regression, cause))
    comparison.regressions = unexplained
    failing = {regression.test_id for regression, _ in explained}
    stale = [pattern for pattern in known
             if not any(fnmatch.fnmatchcase(test_id, pattern) for test_id in failing)
             and any(fnmatch.fnmatchcase(test_id, pattern) and proxy.get(test_id, {}).get("outcome") == PASS
                     for test_id in direct)]
    return LegComparison(comparison, explained, stale)


def format_leg_comparison(result: LegComparison) -> str:
    lines = [format_comparison(result.comparison)]
    if result.known:
        lines.append(f"{len(result.known)} test(s) fail through the proxy as KNOWN_DIFFERENCES says (not counted):")
        lines += [f"      {regression.test_id}: {error_line(regression.detail, regression.proxy)} -- {cause}"
                  for regression, cause in result.known]
    lines += [f"KNOWN_DIFFERENCES entry {pattern!r} passes through the proxy now: remove it"
              for pattern in result.stale]
    return "\n".join(lines)


def describe_run(run: RunResult) -> str:
    counts = run.counts()
    parts = ", ".join(f"{counts[name]} {name}" for name in ("pass", "skip", "xfail", "fail", "error") if counts[name])
    status = "killed after the timeout" if run.exit_code is None else f"exit {run.exit_code}"
    cpu = "".join(f"; {label} CPU {seconds:.0f}s" for label, seconds in run.cpu.items())
    if run.outcomes is None:
        return f"{run.leg} {run.name}: no results ({status}, {run.seconds:.0f}s); log {run.log_path}"
    return f"{run.leg} {run.name}: {len(run.outcomes)} tests in {run.seconds:.0f}s ({status}): {parts}{cpu}"

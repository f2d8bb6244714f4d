# SQLAlchemy's own test suite, run straight to MariaDB and then through the
# proxy, compared test by test: a test that passes directly but not through
# the proxy is a regression of the proxy, unless KNOWN_DIFFERENCES names it
# with its cause. scripts/sqlalchemy-compat.py is the command line;
# tests/compat/test_sqlalchemy_suite.py runs it in CI. The Django comparison
# (django_suite.py) is the model; its proxy process is reused, and the pytest
# run and comparison are pytest_suite.py's, shared with driver_suite.py.
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
#   * pytest_run(): `pytest --dburi mysql+DRIVER://... --backend-only` in the
#     unpacked sdist for each leg (a driver and the test files it runs), with
#     a JUnit XML file that parse_junit() turns into
#     {test id: {"outcome", "detail", "seconds"}}, the ids normalised so that
#     both runs name a test alike;
#   * compare(): pytest_suite.compare() with KNOWN_DIFFERENCES: the tests that
#     pass directly and not through the proxy, those KNOWN_DIFFERENCES names
#     set apart with their cause.
from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from pathlib import Path

from tests.compat import pytest_suite
from tests.compat.django_suite import ProxyProcess, ProxySettings
from tests.compat.pytest_suite import LegComparison, RunResult, describe_run, format_leg_comparison
from tests.compat.sdist import HarnessError, Sdist, unpacked_sdist

__all__ = ["HarnessError", "LegComparison", "ProxyProcess", "ProxySettings", "RunResult", "describe_run",
           "format_leg_comparison"]

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


def pytest_run(name: str, leg: Leg, sdist_dir: Path, *, host: str, port: int, workdir: Path,
               timeout: float = RUN_TIMEOUT, watch_pid: int | None = None) -> pytest_suite.PytestRun:
    """`pytest PATHS --dburi URL` in the unpacked sdist, started now."""
    args = [*leg.paths, "--dburi", dburi(leg, host, port), *(["--backend-only"] if leg.backend_only else [])]
    return pytest_suite.PytestRun(name, leg.name, sdist_dir, args, workdir=workdir, timeout=timeout,
                                  watch_pid=watch_pid, test_id=junit_test_id)


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


def junit_test_id(case: ElementTree.Element) -> str:
    return normalise_test_id(case.get("classname", ""), case.get("name", ""))


def parse_junit(text: str) -> dict[str, dict]:
    """{test id: {"outcome", "detail", "seconds"}} from pytest's JUnit XML (see pytest_suite.parse_junit)."""
    return pytest_suite.parse_junit(text, junit_test_id)


def compare(direct: Mapping[str, Mapping], proxy: Mapping[str, Mapping],
            known: Mapping[str, str] = KNOWN_DIFFERENCES) -> LegComparison:
    """Regressions (pass directly, not through the proxy), those KNOWN_DIFFERENCES explains set apart."""
    return pytest_suite.compare(direct, proxy, known, "/test/")

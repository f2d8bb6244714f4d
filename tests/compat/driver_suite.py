# The drivers' own test suites, run straight to MariaDB and then through the
# proxy, compared test by test: a test that passes directly but not through
# the proxy is a regression of the proxy, unless KNOWN_DIFFERENCES names it
# with its cause. scripts/driver-compat.py is the command line;
# tests/compat/test_driver_suite.py runs it in CI.
#
# Which suites. PyMySQL's sdist does not ship PyMySQL's tests (pymysql/tests
# stay in its repository; 1.0.3 to 1.2.4, the installed one, ship only
# tests/test_auth.py, for MySQL 8's sha256_password and caching_sha2_password
# accounts, hard-wired to 127.0.0.1:3306, which MariaDB cannot pass directly).
# So the legs are:
#   * aiomysql: its tests are PyMySQL's, ported to asyncio (test_basic,
#     test_issues, test_nextset, test_load_local, test_sscursor,
#     test_dictcursor ...), and it runs on PyMySQL's packet and result code;
#     with its pool, TLS, LOCAL INFILE, and aiomysql.sa's transactions and
#     savepoints, about 240 tests. They run on the asyncio loop only: the
#     same tests again on uvloop (its conftest's second loop_type) differ
#     only in the client's loop and would double the time;
#   * mysqlclient: libmariadb underneath (its own handshake, TLS, packet
#     splitting and result reading): DB-API compliance, types, cursors,
#     executemany, about 190 tests.
# Each runs the tests of the installed version's sdist (sdist.py), from a
# copy per run (aiomysql's tests write a my.cnf beside themselves).
#
# What they expect, given both directly and through the proxy:
#   * aiomysql's conftest logs in as root with $MYSQL_ROOT_PASSWORD over TLS
#     and checks that `SHOW STATUS LIKE 'Ssl_version'` says TLS, creates its
#     databases (test_pymysql, test_pymysql2) itself, and its aiomysql.sa
#     tests need SQLAlchemy 1.3 (its requirements-dev.txt: 1.3.24; the
#     project's SQLAlchemy is 2.x), installed into a folder of its own;
#   * mysqlclient's read [MySQLdb-tests] from the option file $TESTDB names:
#     an account and a database of their own.
# So each server (tests/support/mariadb.py) gets a throwaway TLS certificate,
# local_infile on, lock_wait_timeout bounded (a test that dies holding a
# table lock would otherwise hang the next one's DROP TABLE for a day: the
# per-test timeout cannot interrupt a fixture's teardown), a password for
# root, and mysqlclient's account and database. The proxy is configured as a
# production user would: both accounts, TLS to clients with that
# certificate, TLS to the server verifying it (verify_identity), transaction
# pooling, max_size 4.
from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path

from tests.compat import pytest_suite
from tests.compat.django_suite import ProxyProcess, ProxySettings
from tests.compat.pytest_suite import LegComparison, RunResult, describe_run, file_test_id, format_leg_comparison
from tests.compat.sdist import HarnessError, Sdist, installed_into, unpacked_sdist

__all__ = ["HarnessError", "LegComparison", "ProxySettings", "RunResult", "describe_run", "format_leg_comparison"]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO_ROOT / ".cache" / "driver-compat"

ROOT_PASSWORD = "driver-compat-root"
MYSQLDB_USER = "mysqldb"
MYSQLDB_PASSWORD = "mysqldb-compat-secret"
MYSQLDB_DATABASE = "mysqldb_test"
ADDRESS_LABEL = "mariadb"  # aiomysql's --mysql-address label, part of its test ids ("test_x[asyncio-mariadb]")
SQLALCHEMY_FOR_AIOMYSQL = "sqlalchemy==1.3.24"  # aiomysql's requirements-dev.txt

SERVER_OPTIONS = {"local_infile": 1, "lock_wait_timeout": 30}
RUN_TIMEOUT = 300.0  # seconds one pytest run may take (the aiomysql leg takes about a minute)

# Tests that pass directly and not through the proxy for a reason that is a
# limitation of a pooling proxy a user can accept, not a bug: test-id
# patterns (fnmatch on "LEG: FILE::TEST[PARAMS]", where "[[]" is a literal
# "[") and the cause. Each one is reported, never counted as a regression;
# one that passes again is reported as stale.
KNOWN_DIFFERENCES: dict[str, str] = {
    "aiomysql: tests/test_issues.py::test_issue_36[[]*":
        "it looks for its own connection in SHOW PROCESSLIST and KILLs that id: through the proxy the process "
        "list is the server's, with the server's thread ids, while KILL takes the proxy's connection ids, those "
        "of CONNECTION_ID(); a client's id is the proxy's, not that of the server connection serving it (in "
        "transaction pooling, another one from one transaction to the next) (README: Identity, diagnostics and "
        "user variables)",
}


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What the runs need, made once: the unpacked sdists (by leg) and SQLAlchemy 1.3 for aiomysql's."""
    sdists: dict[str, Path]
    sqlalchemy_for_aiomysql: Path | None


@dataclasses.dataclass(frozen=True)
class Leg:
    """One driver's test suite: where it comes from and how a run points it at a server."""
    name: str  # the prefix of its test ids
    project: str  # its distribution name, whose installed version's sdist has the tests
    label: str
    marker: str  # a file of the sdist's tests that must be there
    # (host, port, the run's folder, what was prepared) -> pytest arguments and environment
    configure: Callable[[str, int, Path, Prepared], tuple[list[str], dict[str, str]]]

    def sdist(self) -> Sdist:
        return Sdist(self.project, self.label, metadata.version(self.project), keep=("tests",), marker=self.marker)


def aiomysql_run(host: str, port: int, folder: Path, prepared: Prepared) -> tuple[list[str], dict[str, str]]:
    env = {"MYSQL_ROOT_PASSWORD": ROOT_PASSWORD}
    if prepared.sqlalchemy_for_aiomysql is not None:
        env["PYTHONPATH"] = str(prepared.sqlalchemy_for_aiomysql)
    return ["tests", "--mysql-address", f"{ADDRESS_LABEL}={host}:{port}", "-k", "not uvloop"], env


def mysqlclient_run(host: str, port: int, folder: Path, prepared: Prepared) -> tuple[list[str], dict[str, str]]:
    option_file = folder / "compat.cnf"
    option_file.write_text(f"[MySQLdb-tests]\nhost = {host}\nport = {port}\nuser = {MYSQLDB_USER}\n"
                           f"password = {MYSQLDB_PASSWORD}\ndatabase = {MYSQLDB_DATABASE}\n"
                           "default-character-set = utf8mb4\n")
    return ["tests"], {"TESTDB": str(option_file)}


LEGS = (
    Leg("aiomysql", "aiomysql", "aiomysql", "tests/conftest.py", aiomysql_run),
    Leg("mysqlclient", "mysqlclient", "mysqlclient", "tests/configdb.py", mysqlclient_run),
)


def prepare(legs: list[Leg], cache: Path = DEFAULT_CACHE, log=print) -> Prepared:
    """The legs' sdists, downloaded and unpacked once into `cache`, and what their tests need besides."""
    sdists = {leg.name: unpacked_sdist(leg.sdist(), cache, log) for leg in legs}
    sqlalchemy = None
    if any(leg.name == "aiomysql" for leg in legs):
        sqlalchemy = installed_into(SQLALCHEMY_FOR_AIOMYSQL, cache / SQLALCHEMY_FOR_AIOMYSQL.replace("==", "-"), log)
    return Prepared(sdists, sqlalchemy)


# --------------------------------------------------------------------------
# The servers and the proxy
# --------------------------------------------------------------------------


def start_backend(tls):
    """A private MariaDB with TLS (`tls`: tests/support/tls.TlsFiles) and the accounts the suites use."""
    from tests.support.mariadb import external_url, start_server

    if external_url():
        raise HarnessError("the driver suites need private MariaDB servers (TLS certificates and root's password "
                           "are set at start); unset MYSQL_TEST_URL")
    server = start_server(ssl_cert=tls.cert, ssl_key=tls.key, ssl_ca=tls.cert, **SERVER_OPTIONS)
    try:
        # Over TCP from 127.0.0.1 (skip_name_resolve) root is 'root'@'127.0.0.1'.
        server.execute("ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY %s", (ROOT_PASSWORD,))
        server.root_password = ROOT_PASSWORD  # the helpers log in as root too
        server.create_user(MYSQLDB_USER, MYSQLDB_PASSWORD, grants="ALL PRIVILEGES ON *.*")
        server.create_database(MYSQLDB_DATABASE)
    except BaseException:
        server.close()
        raise
    return server


def start_proxy(server, workdir: Path, settings: ProxySettings, tls) -> ProxyProcess:
    """The proxy in front of `server`, set up as in production: both suites' accounts, TLS both ways."""
    users = [{"name": "root", "password": ROOT_PASSWORD}, {"name": MYSQLDB_USER, "password": MYSQLDB_PASSWORD}]
    sections: Mapping[str, Mapping[str, object]] = {
        "proxy": {"tls_cert": tls.cert, "tls_key": tls.key},
        "backend": {"ssl_mode": "verify_identity", "ssl_ca": tls.cert},
    }
    return ProxyProcess(server, workdir, settings, users=users, sections=sections).start()


# --------------------------------------------------------------------------
# One pytest run of a leg
# --------------------------------------------------------------------------


def pytest_run(name: str, leg: Leg, prepared: Prepared, *, host: str, port: int, workdir: Path,
               timeout: float = RUN_TIMEOUT, watch_pid: int | None = None,
               extra_args: tuple[str, ...] = ()) -> pytest_suite.PytestRun:
    """The leg's tests against host:port from a copy of them of this run's own, started now."""
    folder = workdir / f"{leg.name}-{name}"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(prepared.sdists[leg.name] / "tests", folder / "tests")
    args, env = leg.configure(host, port, folder, prepared)
    return pytest_suite.PytestRun(name, leg.name, folder, [*args, *extra_args], workdir=workdir, timeout=timeout,
                                  env=env, watch_pid=watch_pid, test_id=file_test_id)


def compare(direct: Mapping[str, Mapping], proxy: Mapping[str, Mapping],
            known: Mapping[str, str] = KNOWN_DIFFERENCES) -> LegComparison:
    """Regressions (pass directly, not through the proxy), those KNOWN_DIFFERENCES explains set apart."""
    return pytest_suite.compare(direct, proxy, known, "/tests/")

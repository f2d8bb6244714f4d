# Non-Python drivers through the proxy: Go (go-sql-driver/mysql), Java (MariaDB
# Connector/J), Node (mysql2) and PHP (mysqli and PDO over mysqlnd). Each is a
# small program in tests/drivers/<lang>/ that runs the same cases (listed in
# tests/drivers/README.md), plus a few of its own, against the mysql:// URL on
# its command line, and prints one JSON object per case:
# {"case", "ok", "result", "error"}.
#
# Each program runs once straight to a private MariaDB that offers TLS, and
# once through a proxy in transaction mode with max_size 4 that offers TLS
# too. Connector/J, mysql2 and mysqlnd refuse to go on without TLS once asked
# for it, so their "TLS preferred" case passing means TLS was used;
# go-sql-driver's "preferred" falls back silently, so Go also connects with a
# tls.Config that counts handshakes. A test fails when a case passes directly
# but not through the proxy, or gives another result, printing both lines. A
# case that fails directly as well means the program or the machine is
# broken: that fails the test too, saying so. Once the program has exited,
# the proxy must hold no client and no busy backend for it.
#
# The toolchains are Debian packages (golang-go with
# golang-github-go-sql-driver-mysql-dev, default-jdk-headless with
# libmariadb-java, nodejs, php-cli with php-mysql) and mysql2 from npm
# (`npm ci` in tests/drivers/node); ./scripts/test.sh installs them all. A
# missing one fails that language's test, naming what to install. Each
# program is compiled once per session, into a temporary folder.
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.mariadb import start_server
from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER, prepare_app_account
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

DRIVERS = Path(__file__).resolve().parents[1] / "drivers"
REPO_ROOT = DRIVERS.parents[1]
GO_DRIVER_SOURCE = Path("/usr/share/gocode/src/github.com/go-sql-driver/mysql")
MARIADB_JAR = Path("/usr/share/java/mariadb-java-client.jar")
BUILD_TIMEOUT = 300.0  # seconds; a cold Go build or javac on a busy 2-core machine
RUN_TIMEOUT = 120.0  # seconds for one run of all cases

# Every program runs at least these, in this order (PHP adds PDO's cases).
CASES = [
    "connect_tls_preferred", "connect_plain", "simple_query", "prepared_types", "multi_row", "transaction",
    "savepoint", "prepared_reuse", "pool_concurrency", "duplicate_key", "query_timeout", "kill_query",
    "large_result", "large_packet", "session_variable", "last_insert_id", "multi_statements",
]

CLIENT_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL", "MARIADB"))}


@dataclass(frozen=True)
class Program:
    language: str
    command: list[str]  # the URL is appended


def need_program(name: str, install: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed: {install} (./scripts/test.sh installs it when run as root)")
    return path


def need_path(path: Path, install: str) -> None:
    if not path.exists():
        pytest.fail(f"{path} is missing: {install} (./scripts/test.sh installs it when run as root)")


def build(command: list[str], what: str, **kwargs) -> None:
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=BUILD_TIMEOUT, **kwargs)
    if result.returncode != 0:
        pytest.fail(f"building the {what} program failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def go_program(out: Path) -> Program:
    go = need_program("go", "apt-get install golang-go")
    need_path(GO_DRIVER_SOURCE, "apt-get install golang-github-go-sql-driver-mysql-dev")
    # GOPATH mode against Debian's source tree: no module download, ever.
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": "/usr/share/gocode", "GOPROXY": "off", "GOFLAGS": "",
           "GOCACHE": str(REPO_ROOT / ".cache" / "go-build")}
    binary = out / "drivers-go"
    build([go, "build", "-o", str(binary), "."], "Go", cwd=DRIVERS / "go", env=env)
    return Program("go", [str(binary)])


def java_program(out: Path) -> Program:
    javac = need_program("javac", "apt-get install default-jdk-headless")
    java = need_program("java", "apt-get install default-jdk-headless")
    need_path(MARIADB_JAR, "apt-get install libmariadb-java")
    source = DRIVERS / "java" / "Drivers.java"
    build([javac, "-encoding", "UTF-8", "-d", str(out), "-cp", str(MARIADB_JAR), str(source)], "Java")
    return Program("java", [java, "-cp", f"{out}{os.pathsep}{MARIADB_JAR}", "Drivers"])


def node_program(out: Path) -> Program:  # nothing to build
    node = need_program("node", "apt-get install nodejs")
    need_path(DRIVERS / "node" / "node_modules" / "mysql2" / "package.json",
              "run `npm ci` in tests/drivers/node")
    return Program("node", [node, str(DRIVERS / "node" / "cases.js")])


def php_program(out: Path) -> Program:  # nothing to build
    php = need_program("php", "apt-get install php-cli php-mysql")
    check = subprocess.run([php, "-r", 'exit(extension_loaded("mysqli") && extension_loaded("pdo_mysql") ? 0 : 1);'],
                           check=False, capture_output=True, timeout=60)
    if check.returncode != 0:
        pytest.fail("PHP's mysqli and pdo_mysql extensions are missing: apt-get install php-mysql "
                    "(./scripts/test.sh installs it when run as root)")
    return Program("php", [php, str(DRIVERS / "php" / "cases.php")])


BUILDERS = {"go": go_program, "java": java_program, "node": node_program, "php": php_program}


class Programs:
    """Each language's program, built on first use, once per session. Built
    inside the test, so a missing toolchain is that test's failure."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory):
        self.tmp_path_factory = tmp_path_factory
        self.built: dict[str, Program] = {}

    def get(self, language: str) -> Program:
        if language not in self.built:
            self.built[language] = BUILDERS[language](self.tmp_path_factory.mktemp(f"drivers-{language}"))
        return self.built[language]


@pytest.fixture(scope="session")
def programs(tmp_path_factory) -> Programs:
    return Programs(tmp_path_factory)


@pytest.fixture(scope="module")
def tls_server(tls_files):
    """A private MariaDB offering TLS, with the app account."""
    server = start_server(ssl_cert=tls_files.cert, ssl_key=tls_files.key)
    try:
        prepare_app_account(server)
        yield server
    finally:
        server.close()


@pytest.fixture
def pooling_proxy(proxy_factory, tls_server, tls_files):
    return proxy_factory(tls_server, proxy={"tls_cert": tls_files.cert, "tls_key": tls_files.key},
                         pool={"mode": "transaction", "max_size": 4})


@dataclass
class Run:
    where: str
    returncode: int
    cases: dict[str, dict]  # case name -> its JSON object
    stdout: str
    stderr: str

    def describe(self) -> str:
        tail = "\n".join(self.stderr.splitlines()[-20:])
        return f"{self.where}: exit {self.returncode}\n--- stdout\n{self.stdout}--- stderr (tail)\n{tail}"


def run_cases(program: Program, target, where: str) -> Run:
    url = f"mysql://{APP_USER}:{APP_PASSWORD}@{target.host}:{target.port}/{APP_DB}"
    result = subprocess.run([*program.command, url], check=False, capture_output=True, text=True, env=CLIENT_ENV,
                            timeout=RUN_TIMEOUT)
    cases = {}
    for line in result.stdout.splitlines():
        try:
            case = json.loads(line)
        except json.JSONDecodeError:
            continue  # kept in stdout for the failure message
        cases[case["case"]] = case
    return Run(where, result.returncode, cases, result.stdout, result.stderr)


def line(case: dict | None) -> str:
    return "(not run)" if case is None else json.dumps(case, ensure_ascii=False)


def differences(direct: Run, proxied: Run) -> list[str]:
    """One paragraph per case that the proxy broke, or that is broken anyway."""
    problems = []
    for name in [*CASES, *(n for n in direct.cases if n not in CASES)]:
        d, p = direct.cases.get(name), proxied.cases.get(name)
        if d is None or not d["ok"]:
            problems.append(f"{name}: fails directly too (the program or the machine is broken, not the proxy)\n"
                            f"  direct: {line(d)}\n  proxy:  {line(p)}")
        elif p is None or not p["ok"]:
            problems.append(f"{name}: passes directly, FAILS through the proxy\n"
                            f"  direct: {line(d)}\n  proxy:  {line(p)}")
        elif p["result"] != d["result"]:
            problems.append(f"{name}: another result through the proxy\n  direct: {line(d)}\n  proxy:  {line(p)}")
    return problems


@pytest.mark.parametrize("language", sorted(BUILDERS))
def test_driver_gives_through_the_proxy_what_it_gets_directly(language, programs, tls_server, pooling_proxy):
    program = programs.get(language)
    direct = run_cases(program, tls_server, "direct")
    proxied = run_cases(program, pooling_proxy, "through the proxy")
    problems = differences(direct, proxied)
    if direct.returncode != 0 or proxied.returncode != 0:
        problems.append(f"a run exited non-zero:\n{direct.describe()}\n{proxied.describe()}")
    if problems:
        pytest.fail(f"{program.language}: " + "\n".join(problems), pytrace=False)
    if language == "java":  # the batch_bulk cases went as COM_STMT_BULK_EXECUTE (MariaDB's bulk operations)
        assert pooling_proxy.pool_stats()["queries"].get("stmt_bulk_execute", 0) >= 2
    # Once the program has exited, the proxy holds nothing for it.
    wait_until(lambda: pooling_proxy.client_count() == 0 and pool_settled(pooling_proxy.pool_stats()), 10,
               lambda: f"clients and backends released after the {program.language} run "
                       f"(clients {pooling_proxy.client_count()}, pool {pooling_proxy.pool_stats()})")


def pool_settled(stats: dict) -> bool:
    return stats["busy"] == 0 and stats["waiting"] == 0 and stats["idle"] <= 4


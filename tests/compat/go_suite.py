# go-sql-driver/mysql's own test suite, run straight to MariaDB and then
# through the proxy, compared test by test: a test that passes directly but
# not through the proxy is a regression of the proxy, unless
# KNOWN_DIFFERENCES names it with the failure it must show and its cause.
# scripts/go-compat.py is the command line; tests/compat/test_go_suite.py
# runs it in CI.
#
# The pieces, in the order a comparison uses them:
#   * build_test_binary(): `go test -c` of the driver's package from
#     Debian's golang-github-go-sql-driver-mysql-dev (the driver's whole
#     source, its *_test.go files included; it needs no other module),
#     copied from /usr/share/gocode into a GOPATH in the workdir with EDITS
#     made (two tests expect utf8 where today's servers say utf8mb3), built
#     in GOPATH mode: nothing is ever downloaded. The build cache is the one
#     the drivers test uses (.cache/go-build);
#   * list_tests() and SKIPPED: the binary's own list of tests, less the
#     one that needs the internet (Go 1.19's `-test.run` has no negation, so
#     the others are named in a `^(A|B|...)$` pattern);
#   * start_backend(): a private MariaDB (tests/support/mariadb.py) that
#     offers TLS, with the account and the `gotest` database the suite's
#     MYSQL_TEST_* variables name; one per run, so that the direct run and
#     the run through the proxy go side by side (the suite's table names are
#     fixed: two runs cannot share a database);
#   * django_suite.ProxyProcess: `python -m mysqlpool_proxy -c FILE`, a real
#     process, configured as in production: transaction pooling, max_size 4,
#     TLS offered to clients (the test certificate), plain TCP to the
#     server next to it (backend.ssl_mode's default);
#   * GoTestRun: the binary under `go tool test2json`, which turns `-test.v`
#     output into one JSON event per line; parse_test2json() makes them
#     {test id: {"outcome", "detail", "seconds"}} (a subtest's id is
#     "TestX/sub");
#   * compare(): which tests pass directly and not through the proxy; those
#     KNOWN_DIFFERENCES names count only while they fail with the failure it
#     expects, any other failure of theirs is a regression too;
#   * leftovers(): after the run through the proxy, the proxy must hold no
#     client connection and no busy server connection, and its log must show
#     no error.
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.compat.django_suite import HarnessError, ProxyProcess, ProxySettings

__all__ = ["HarnessError", "ProxySettings"]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WORKDIR = REPO_ROOT / ".cache" / "go-compat" / "last-run"
GO_CACHE = REPO_ROOT / ".cache" / "go-build"  # shared with tests/integration/test_drivers_other_languages.py
GOPATH = Path("/usr/share/gocode")
DRIVER_PACKAGE = "github.com/go-sql-driver/mysql"
DRIVER_SOURCE = GOPATH / "src" / DRIVER_PACKAGE
INSTALL_HINT = "apt-get install golang-go golang-github-go-sql-driver-mysql-dev (./scripts/test.sh does it as root)"

# Tests that never run, with the reason. Not differences: they do not reach
# a server at all, so they would say nothing about the proxy.
SKIPPED: dict[str, str] = {
    "TestConnectorReturnsTimeout": "dials 1.1.1.1:1234, a public address, to see a connect timeout; "
                                   "this machine and CI reach no address but their own",
}


@dataclasses.dataclass(frozen=True)
class Known:
    """A test that fails through the proxy for a documented reason: `failure` is a piece of the
    output it must fail with (any other failure is a regression), `cause` why a user can accept it."""
    failure: str
    cause: str


# Tests that pass directly and not through the proxy for a reason that is a
# documented limitation of a pooling proxy, not a bug. Each one is reported,
# never counted as a regression, while it fails with its `failure`; one
# that passes again is reported as stale, and fails the comparison.
KNOWN_DIFFERENCES: dict[str, Known] = {
    "TestConcurrent": Known(
        failure="Error 1040: Too many connections: mysqlpool-proxy pool",
        cause="it opens @@max_connections (151) transactions at once and keeps each open until all have "
              "begun, accepting only the server's bare 'Too many connections' for the ones refused. A pool "
              "runs max_size transactions at once (4 here): the others wait checkout_timeout (10 s) and get "
              "the same error number, 1040, with the proxy's message saying why (README, 'Errors your "
              "application can see'), and the 4 commit."),
    "TestTLS": Known(
        failure="no Cipher",
        cause="TLS ends at the proxy: the test's logins with tls=preferred and tls=skip-verify work, but "
              "SHOW STATUS LIKE 'Ssl_cipher' describes the server connection the statement ran on, "
              "which is plain TCP with backend.ssl_mode = \"disabled\", the default for a proxy next to "
              "its server (README, 'Limitations'). With ssl_mode = \"required\" the test passes."),
}

BACKEND_USER = "gotest"
BACKEND_PASSWORD = "gotest-secret"
DATABASE = "gotest"  # the suite's default MYSQL_TEST_DBNAME

BUILD_TIMEOUT = 300.0  # seconds for a cold `go test -c` on a busy 2-core machine
LIST_TIMEOUT = 60.0  # seconds for `-test.list`
RUN_TIMEOUT = 300.0  # seconds one run of the suite may take (about 50 s; TestConcurrent waits 10 s through the proxy)
DRAIN_TIMEOUT = 15.0  # seconds the proxy may take to see the suite's last connections go
DETAIL_LINES = 40  # lines of a test's output kept as its detail

PASS, FAIL, SKIP, ERROR, MISSING = "pass", "fail", "skip", "error", "missing"
BAD_OUTCOMES = frozenset({FAIL, ERROR})


# --------------------------------------------------------------------------
# The test binary
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Edit:
    """One replacement in a file of the copied driver tree; `old` must be there exactly once."""
    path: str
    old: str
    new: str


# The suite predates MariaDB 10.6 and MySQL 8.0.30, which name utf8 and its
# collations utf8mb3 when asked (`SELECT @@character_set_connection`), so
# TestCharset and TestCollation fail straight to the server on that name
# alone. They are the suite's checks of the charset and collation a login
# asks for (ascii, latin1_general_ci, binary, cp1257_bin...), state the
# proxy must carry to every server connection: these edits expect the new
# name, and nothing else changes.
EDITS = (
    Edit("driver_test.go", 'mustSetCharset("charset=none,utf8", "utf8")',
         'mustSetCharset("charset=none,utf8", "utf8mb3")'),
    Edit("driver_test.go", 'mustSetCharset("charset=utf8,ascii", "utf8")',
         'mustSetCharset("charset=utf8,ascii", "utf8mb3")'),
    Edit("driver_test.go", 'expected = collation\n',
         'expected = strings.Replace(collation, "utf8_", "utf8mb3_", 1)\n'),
)


def apply_edits(folder: Path, edits: Iterable[Edit] = EDITS) -> None:
    for edit in edits:
        path = folder / edit.path
        text = path.read_text()
        if text.count(edit.old) != 1:
            raise HarnessError(f"{DRIVER_SOURCE / edit.path} has {text.count(edit.old)} times {edit.old!r}, "
                               f"not once: another release of the driver? (go_suite.EDITS)")
        path.write_text(text.replace(edit.old, edit.new))


def copy_driver_tree(workdir: Path) -> Path:
    """A GOPATH in workdir holding Debian's driver source with EDITS made; returns the GOPATH."""
    gopath = workdir / "gopath"
    target = gopath / "src" / DRIVER_PACKAGE
    shutil.rmtree(gopath, ignore_errors=True)
    shutil.copytree(DRIVER_SOURCE, target)
    for path in target.rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)  # Debian's files are read-only to their owner
    apply_edits(target)
    return gopath


def run_env(workdir: Path) -> dict[str, str]:
    """The test binary's environment: none of the caller's MYSQL* variables, temporary files in workdir."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MYSQL", "MARIADB"))}
    env["TMPDIR"] = str(workdir)
    return env


def go_env(workdir: Path, gopath: Path) -> dict[str, str]:
    """GOPATH mode on a copy of Debian's source tree: no module, no proxy, no download, ever."""
    return {**run_env(workdir), "GO111MODULE": "off", "GOPATH": str(gopath), "GOPROXY": "off", "GOFLAGS": "",
            "GOCACHE": str(GO_CACHE)}


def build_test_binary(workdir: Path, log=print) -> Path:
    """The driver's test binary (`go test -c`) from a copy of its source with EDITS made, built into workdir."""
    go = shutil.which("go")
    if go is None:
        raise HarnessError(f"`go` is not installed: {INSTALL_HINT}")
    if not (DRIVER_SOURCE / "driver_test.go").exists():
        raise HarnessError(f"{DRIVER_SOURCE}/driver_test.go is missing: {INSTALL_HINT}")
    binary = workdir / "mysql.test"
    gopath = copy_driver_tree(workdir)
    log(f"building the test binary of {DRIVER_SOURCE} with {len(EDITS)} edits ({go_version(go)})")
    try:
        done = subprocess.run([go, "test", "-c", "-o", str(binary), DRIVER_PACKAGE], cwd=workdir,
                              env=go_env(workdir, gopath), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"`go test -c {DRIVER_PACKAGE}` took more than {BUILD_TIMEOUT:.0f}s") from exc
    if done.returncode != 0 or not binary.exists():
        raise HarnessError(f"`go test -c {DRIVER_PACKAGE}` failed ({done.returncode}):\n{done.stdout}")
    return binary


def go_version(go: str) -> str:
    done = subprocess.run([go, "version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    return done.stdout.strip()


def list_tests(binary: Path, workdir: Path) -> list[str]:
    """The top-level tests of the binary, in its order (`-test.list`)."""
    done = subprocess.run([str(binary), "-test.list", "."], cwd=workdir, env=run_env(workdir),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=LIST_TIMEOUT)
    names = [line.strip() for line in done.stdout.splitlines() if line.startswith("Test")]
    if done.returncode != 0 or not names:
        raise HarnessError(f"`{binary} -test.list .` listed no test ({done.returncode}):\n{done.stdout}")
    return names


def selected_tests(names: Iterable[str], skipped: Mapping[str, str] = SKIPPED,
                   only: Iterable[str] | None = None) -> list[str]:
    """The tests to run: `only` (all when None), less those `skipped` names."""
    wanted = set(only) if only is not None else None
    return [name for name in names if name not in skipped and (wanted is None or name in wanted)]


def run_pattern(names: Iterable[str]) -> str:
    """`-test.run` pattern matching exactly these top-level tests (and so their subtests)."""
    names = list(names)
    if not names:
        raise HarnessError("no test selected")
    return "^(" + "|".join(re.escape(name) for name in names) + ")$"


# --------------------------------------------------------------------------
# The servers
# --------------------------------------------------------------------------


def start_backend(tls):
    """A private MariaDB (or the MYSQL_TEST_URL server) offering TLS, with the suite's account and database."""
    from tests.support.mariadb import start_server

    server = start_server(ssl_cert=tls.cert, ssl_key=tls.key)
    try:
        server.create_user(BACKEND_USER, BACKEND_PASSWORD, grants="ALL PRIVILEGES ON *.*")
        server.execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")
        server.execute(f"CREATE DATABASE `{DATABASE}`")
    except BaseException:
        server.close()
        raise
    return server


def start_proxy(server, workdir: Path, settings: ProxySettings, tls,
                extra: Mapping[str, Mapping[str, object]] | None = None) -> ProxyProcess:
    """A proxy process in front of `server`, offering TLS to clients with the test certificate;
    `extra` adds or overrides settings ({"pool": {"ping_after": 0}})."""
    sections: dict[str, dict[str, object]] = {"proxy": {"tls_cert": tls.cert, "tls_key": tls.key}}
    for section, values in (extra or {}).items():
        sections.setdefault(section, {}).update(values)
    return ProxyProcess(server, workdir, settings, user=BACKEND_USER, password=BACKEND_PASSWORD,
                        sections=sections).start()


def parse_setting(text: str) -> tuple[str, str, object]:
    """'pool.ping_after=0' -> ("pool", "ping_after", 0): a TOML-ish number, true/false, or a string."""
    name, sep, raw = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not (sep and dot and section and key):
        raise HarnessError(f"a setting is section.key=value, not {text!r}")
    raw = raw.strip()
    value: object = {"true": True, "false": False}.get(raw, raw.strip('"'))
    for kind in (int, float):
        try:
            value = kind(raw)
            break
        except ValueError:
            pass
    return section, key, value


# --------------------------------------------------------------------------
# One run of the suite
# --------------------------------------------------------------------------


@dataclasses.dataclass
class RunResult:
    name: str  # "direct" or "proxy"
    exit_code: int | None  # None: killed after the timeout
    seconds: float
    outcomes: dict[str, dict]
    log_path: Path

    def counts(self) -> Counter:
        return Counter(entry["outcome"] for entry in self.outcomes.values())

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def suite_env(workdir: Path, host: str, port: int) -> dict[str, str]:
    """The variables driver_test.go reads (its init() and TestConcurrent)."""
    return {**run_env(workdir), "MYSQL_TEST_USER": BACKEND_USER, "MYSQL_TEST_PASS": BACKEND_PASSWORD,
            "MYSQL_TEST_PROT": "tcp", "MYSQL_TEST_ADDR": f"{host}:{port}", "MYSQL_TEST_DBNAME": DATABASE,
            "MYSQL_TEST_CONCURRENT": "1"}


class GoTestRun:
    """The test binary under `go tool test2json` against host:port, started now, waited for by wait()."""

    def __init__(self, name: str, binary: Path, tests: list[str], *, host: str, port: int, workdir: Path,
                 timeout: float = RUN_TIMEOUT) -> None:
        self.name, self.timeout = name, timeout
        self.events_path = workdir / f"{name}.jsonl"
        cmd = [shutil.which("go") or "go", "tool", "test2json", "-t", str(binary), "-test.v",
               "-test.run", run_pattern(tests), "-test.timeout", f"{timeout:.0f}s"]
        self.began = time.monotonic()
        with open(self.events_path, "wb") as out:
            # Its own process group, so that a timeout ends the binary under test2json too.
            self.proc = subprocess.Popen(cmd, cwd=workdir, env=suite_env(workdir, host, port), stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self) -> RunResult:
        try:
            # The binary stops itself at -test.timeout; a little more for test2json and the exit.
            code: int | None = self.proc.wait(max(0.0, self.began + self.timeout + 30 - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(30)
            code = None
        seconds = time.monotonic() - self.began
        outcomes = parse_test2json(self.events_path.read_text(errors="replace"))
        return RunResult(self.name, code, seconds, outcomes, self.events_path)


# --------------------------------------------------------------------------
# test2json events (pure)
# --------------------------------------------------------------------------


def parse_test2json(text: str) -> dict[str, dict]:
    """{test id: {"outcome", "detail", "seconds"}} from test2json's events. A test that started and
    never ended (the binary panicked or timed out) is an error; its output is its detail."""
    outputs: dict[str, list[str]] = {}
    outcomes: dict[str, dict] = {}
    package_output: list[str] = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            package_output.append(line + "\n")  # the binary's own words, outside test2json
            continue
        test, action = event.get("Test"), event.get("Action")
        if not test:
            if action == "output":
                package_output.append(event.get("Output", ""))
            continue
        if action == "run":
            outputs.setdefault(test, [])
        elif action == "output":
            outputs.setdefault(test, []).append(event.get("Output", ""))
        elif action in (PASS, FAIL, SKIP):
            outcomes[test] = {"outcome": action, "detail": tail(outputs.get(test, [])),
                              "seconds": float(event.get("Elapsed") or 0.0)}
    for test, lines in outputs.items():
        if test not in outcomes:
            outcomes[test] = {"outcome": ERROR, "seconds": 0.0,
                              "detail": tail([*lines, "(the test never ended; the binary said:)\n", *package_output])}
    return outcomes


def tail(lines: list[str], count: int = DETAIL_LINES) -> str:
    text = "".join(lines)
    kept = text.splitlines()[-count:]
    return "\n".join(kept)


def failure_line(detail: str) -> str:
    """The line that says why a test failed: the last `file_test.go:N: ...` line (t.Fatal's, or the last
    t.Error's; t.Log's look the same and come before), else the last line."""
    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    said = [line for line in lines if re.match(r"^\w+_test\.go:\d+: ", line)] or lines[-1:]
    line = said[-1] if said else ""
    return line if len(line) <= 300 else line[:297] + "..."


# --------------------------------------------------------------------------
# Comparison (pure)
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Regression:
    test_id: str
    direct: str
    proxy: str  # an outcome, or MISSING
    error: str  # the line that says why, through the proxy
    detail: str  # the test's output through the proxy
    expected: str | None = None  # the failure KNOWN_DIFFERENCES names for this test, when it failed otherwise


@dataclasses.dataclass
class Comparison:
    regressions: list[Regression]  # unexplained
    known: list[tuple[Regression, Known]]  # as KNOWN_DIFFERENCES expects
    stale: list[str]  # KNOWN_DIFFERENCES entries whose test passes through the proxy
    both_failed: list[str]
    proxy_only_passed: list[str]


def compare(direct: Mapping[str, Mapping], proxy: Mapping[str, Mapping],
            known: Mapping[str, Known] = KNOWN_DIFFERENCES) -> Comparison:
    """Regressions (pass directly, not through the proxy), those KNOWN_DIFFERENCES explains set apart."""
    result = Comparison([], [], [], [], [])
    for test_id in sorted(direct):
        direct_outcome = direct[test_id]["outcome"]
        through = proxy.get(test_id)
        proxy_outcome = through["outcome"] if through else MISSING
        if direct_outcome == PASS and proxy_outcome != PASS:
            detail = through["detail"] if through else "did not run through the proxy"
            regression = Regression(test_id, direct_outcome, proxy_outcome, failure_line(detail), detail)
            entry = known.get(test_id)
            if entry is None:
                result.regressions.append(regression)
            elif entry.failure in detail:
                result.known.append((regression, entry))
            else:
                result.regressions.append(dataclasses.replace(regression, expected=entry.failure))
        elif direct_outcome in BAD_OUTCOMES and proxy_outcome in BAD_OUTCOMES | {MISSING}:
            result.both_failed.append(test_id)
        elif direct_outcome in BAD_OUTCOMES and proxy_outcome == PASS:
            result.proxy_only_passed.append(test_id)
    result.stale = [name for name in known
                    if direct.get(name, {}).get("outcome") == PASS and proxy.get(name, {}).get("outcome") == PASS]
    return result


def format_comparison(result: Comparison) -> str:
    lines = []
    if result.regressions:
        lines.append(f"{len(result.regressions)} test(s) pass directly but not through the proxy:")
        for regression in result.regressions:
            lines.append(f"  {regression.test_id} ({regression.proxy}): {regression.error}")
            if regression.expected is not None:
                lines.append(f"      (KNOWN_DIFFERENCES expects it to fail with {regression.expected!r}, "
                             f"not like this)")
    else:
        lines.append("no regression: every test that passes directly passes through the proxy")
    if result.known:
        lines.append(f"{len(result.known)} test(s) fail through the proxy as KNOWN_DIFFERENCES says (not counted):")
        lines += [f"  {regression.test_id}: {regression.error} -- {entry.cause}" for regression, entry in result.known]
    lines += [f"KNOWN_DIFFERENCES entry {name!r} passes through the proxy now: remove it" for name in result.stale]
    lines.append(f"{len(result.both_failed)} test(s) fail both directly and through the proxy (not counted)"
                 + "".join(f"\n      {test_id}" for test_id in result.both_failed))
    if result.proxy_only_passed:
        lines.append(f"{len(result.proxy_only_passed)} test(s) pass through the proxy but not directly:")
        lines += [f"      {test_id}" for test_id in result.proxy_only_passed]
    return "\n".join(lines)


def describe_run(run: RunResult) -> str:
    counts = run.counts()
    parts = ", ".join(f"{counts[name]} {name}" for name in (PASS, SKIP, FAIL, ERROR) if counts[name])
    status = "killed after the timeout" if run.exit_code is None else f"exit {run.exit_code}"
    return f"{run.name}: {len(run.outcomes)} tests and subtests in {run.seconds:.0f}s ({status}): {parts}"


# --------------------------------------------------------------------------
# What the proxy is left with
# --------------------------------------------------------------------------

# Log lines that mean the proxy itself went wrong, whatever the clients saw.
_LOG_PROBLEM = re.compile(r"Traceback \(most recent call last\)| ERROR | CRITICAL ")


def log_problems(text: str, limit: int = 20) -> list[str]:
    """The proxy log's lines that show an internal error (a traceback, an ERROR line)."""
    return [line for line in text.splitlines() if _LOG_PROBLEM.search(line)][:limit]


def held_connections(metrics_text: str) -> dict[str, float]:
    """Client connections (any state) and busy server connections in a scrape of the proxy's metrics."""
    held = {"client connections": 0.0, "server connections in use": 0.0}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "mysqlpool_client_connections":
                held["client connections"] += sample.value
            elif sample.name == "mysqlpool_backend_connections" and sample.labels.get("state") == "in_use":
                held["server connections in use"] += sample.value
    return held


def leftovers(proxy: ProxyProcess, timeout: float = DRAIN_TIMEOUT) -> list[str]:
    """What the proxy still holds once the suite is done (waiting up to `timeout` for it to see the last
    connections go), and the internal errors its log shows; [] when all is clean."""
    from tests.support.waiting import wait_until

    url = f"http://127.0.0.1:{proxy.metrics_port}/metrics"
    held: dict[str, float] = {}

    def drained() -> bool:
        with urllib.request.urlopen(url, timeout=5) as resp:
            held.clear()
            held.update((what, count) for what, count in held_connections(resp.read().decode()).items() if count)
        return not held

    try:
        wait_until(drained, timeout, "the proxy holds no client and no busy server connection", interval=0.1)
        problems = []
    except AssertionError:
        problems = [f"{count:.0f} {what} {timeout:.0f}s after the suite ended" for what, count in held.items()]
    try:
        problems += [f"proxy log: {line}" for line in log_problems(proxy.log_path.read_text(errors="replace"))]
    except OSError as exc:
        problems.append(f"cannot read the proxy log: {exc}")
    return problems

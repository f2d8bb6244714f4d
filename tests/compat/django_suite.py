# Django's own test suite, run straight to MariaDB and then through the proxy,
# compared test by test: a test that passes directly but not through the proxy
# is a regression of the proxy. scripts/django-compat.py is the command line;
# tests/compat/test_django_suite.py runs it in CI.
#
# The pieces, in the order a comparison uses them:
#   * django_tests_dir(): the `tests/` folder of the Django sdist whose version
#     is installed (Django ships its test suite only in the sdist), fetched
#     once into a cache folder and unpacked there (sdist.py);
#   * start_backend(): a private MariaDB (tests/support/mariadb.py) with the
#     time zone tables loaded and one root-like account, `django`, which both
#     runs use (Django's test runner creates and drops its test databases);
#   * ProxyProcess: `python -m mysqlpool_proxy -c FILE`, a real process with a
#     real TOML file (transaction pooling, max_size 4 by default), ready when
#     its /readyz answers 200;
#   * run_django(): the sdist's tests/runtests.py in a subprocess, with
#     compat_settings (databases 'default' and 'other' at a host and port
#     given in the environment) and compat_runner, which leaves out EXCLUDED
#     and writes {test id: {"outcome", "detail", "seconds", "db_errors"}} to a
#     JSON file; its CPU time, the server's and the proxy's are measured, as
#     wall time says little on a shared machine;
#   * compare(): pure, from the two outcome maps to regressions, tests that
#     fail both ways, tests that pass only through the proxy, and the server
#     errors Django met only through the proxy (also those it swallowed).
from __future__ import annotations

import dataclasses
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

from tests.compat.sdist import HarnessError, Sdist, unpacked_sdist

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPAT_DIR = Path(__file__).resolve().parent
DEFAULT_CACHE = REPO_ROOT / ".cache" / "django-compat"

# The apps the issue names: transactions, savepoints, locking, two databases,
# DDL, fixtures and auth, i.e. most of what an application does with its
# database connection.
REQUIRED_APPS = (
    "transactions", "transaction_hooks", "select_for_update", "multiple_database", "queries", "backends",
    "basic", "model_fields", "bulk_create", "get_or_create", "update", "delete", "raw_query", "timezones",
    "aggregation", "expressions", "schema", "migrations", "fixtures", "auth_tests",
)
# More apps that use the database in ways the list above does not (window
# functions, prefetching over two databases, the session store, async ORM
# calls, check constraints, introspection, composite primary keys...), each
# a few seconds at most. Left out as too slow for what they add, in seconds
# of test time on 2 cores: cache (65, mostly sleeps), admin_views (27, views
# and templates), inspectdb (13), fixtures_regress (12), serializers (8),
# generic_relations and model_formsets (2-3 each, mostly forms).
EXTRA_APPS = (
    "db_functions", "lookup", "annotations", "expressions_case", "expressions_window", "prefetch_related",
    "select_related", "many_to_many", "many_to_one", "one_to_one", "model_inheritance", "custom_pk", "defer",
    "ordering", "constraints", "indexes", "introspection", "sessions_tests", "async", "test_utils",
    "update_only_fields", "force_insert_update", "composite_pk", "m2m_through", "filtered_relation", "dates",
    "datetimes", "queryset_pickle", "aggregation_regress", "delete_regress", "custom_lookups",
    "known_related_objects", "migrate_signals",
)
DEFAULT_APPS = REQUIRED_APPS + EXTRA_APPS
# Tests left out of both runs (test ids or prefixes of them), with the reason.
EXCLUDED = {
    "auth_tests.test_hashers": "password hashers: CPU only, no database (27 s of the auth_tests app's 45 s)",
    "serializers.test_deserialization.TestDeserializer.test_crafted_xml_performance":
        "compares two timings: fails at random, in either run, on a loaded machine",
}

BACKEND_USER = "django"
BACKEND_PASSWORD = "django-compat-secret"
ZONEINFO = Path("/usr/share/zoneinfo")

PROXY_READY_TIMEOUT = 30.0  # seconds until the proxy's /readyz must answer 200
PROXY_STOP_TIMEOUT = 20.0  # seconds a SIGTERMed proxy may take to exit
RUN_TIMEOUT = 900.0  # seconds one Django run may take (the whole default list takes 1-2 minutes)

PASS = "pass"
BAD_OUTCOMES = frozenset({"fail", "error", "xpass"})
MISSING = "missing"  # passed directly, never reported through the proxy


# --------------------------------------------------------------------------
# The Django test suite
# --------------------------------------------------------------------------


def installed_django_version() -> str:
    return metadata.version("django")


def django_tests_dir(version: str, cache: Path = DEFAULT_CACHE, log=print) -> Path:
    """The sdist's tests/ folder for Django `version`, downloaded and unpacked once into `cache`."""
    sdist = Sdist("django", "Django", version, keep=("tests",), marker="tests/runtests.py")
    return unpacked_sdist(sdist, cache, log) / "tests"


# --------------------------------------------------------------------------
# The server and the proxy
# --------------------------------------------------------------------------


def start_backend(options: Mapping[str, object] | None = None, log=print):
    """A private MariaDB (or the MYSQL_TEST_URL server) with the `django` account."""
    from tests.support.mariadb import ExternalServer, start_server

    server = start_server(**(options or {}))
    try:
        server.create_user(BACKEND_USER, BACKEND_PASSWORD, grants="ALL PRIVILEGES ON *.*")
        if not isinstance(server, ExternalServer):
            missing = load_time_zones(server)
            if missing:
                log(f"time zone tables not loaded ({missing}): a few timezones tests fail both ways")
    except BaseException:
        server.close()
        raise
    return server


def load_time_zones(server) -> str:
    """Load the system's zoneinfo into mysql.time_zone* (Django's timezones tests use CONVERT_TZ);
    what is missing for it ("" when loaded)."""
    from tests.support.mariadb import find_program

    to_sql, client = find_program("mariadb-tzinfo-to-sql"), find_program("mariadb")
    if not ZONEINFO.is_dir():
        return f"no {ZONEINFO}"
    if not (to_sql and client):
        return "no mariadb-tzinfo-to-sql or mariadb client"
    sql = subprocess.run([to_sql, str(ZONEINFO)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         check=True, timeout=120).stdout
    subprocess.run([client, "--no-defaults", "-h", server.host, "-P", str(server.port), "-u", server.root_user,
                    f"--password={server.root_password}", "mysql"],
                   input=sql, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True, timeout=120)
    return ""


@dataclasses.dataclass
class ProxySettings:
    pool_mode: str = "transaction"
    max_size: int = 4


class ProxyProcess:
    """`python -m mysqlpool_proxy -c FILE` in front of `server`, logging to log_path. `users` replaces
    the one [[users]] entry of `user` and `password`; `sections` adds settings ({"backend": {...}})."""

    def __init__(self, server, workdir: Path, settings: ProxySettings, *, user: str = BACKEND_USER,
                 password: str = BACKEND_PASSWORD, name: str = "proxy", users: list[dict] | None = None,
                 sections: Mapping[str, Mapping[str, object]] | None = None) -> None:
        from tests.support.net import free_port
        from tests.support.proxy import render_config

        self.port = free_port()
        self.metrics_port = free_port()
        self.config_path = workdir / f"{name}.toml"
        self.log_path = workdir / f"{name}.log"
        self.settings = settings
        config = {"proxy": {"listen": f"127.0.0.1:{self.port}", "shutdown_timeout": 5},
                  "pool": {"mode": settings.pool_mode, "max_size": settings.max_size},
                  "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"}}
        for section, values in (sections or {}).items():
            config[section] = {**config.get(section, {}), **values}
        self.config_path.write_text(render_config(
            server, users=users or [{"name": user, "password": password}], **config))
        self.proc: subprocess.Popen | None = None

    def start(self) -> ProxyProcess:
        env = dict(os.environ, PYTHONPATH=_pythonpath(REPO_ROOT))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "mysqlpool_proxy", "-c", str(self.config_path)],
                                         stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
        deadline = time.monotonic() + PROXY_READY_TIMEOUT
        while not self._ready():
            if self.proc.poll() is not None:
                raise HarnessError(f"the proxy exited with code {self.proc.returncode} at start:\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                self.stop()
                raise HarnessError(f"the proxy was not ready after {PROXY_READY_TIMEOUT:.0f}s:\n{self.log_tail()}")
            time.sleep(0.05)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(PROXY_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no proxy log)"

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _pythonpath(*first: Path) -> str:
    parts = [str(path) for path in first]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(parts)


# --------------------------------------------------------------------------
# One run of Django's test suite
# --------------------------------------------------------------------------


@dataclasses.dataclass
class RunResult:
    name: str  # "direct" or "proxy"
    exit_code: int | None  # None: killed after the timeout
    seconds: float
    outcomes: dict[str, dict] | None  # None: the runner wrote no results (crashed before or while running)
    log_path: Path
    cpu: dict[str, float] = dataclasses.field(default_factory=dict)  # CPU seconds: django, server, proxy

    def counts(self) -> Counter:
        return Counter(entry["outcome"] for entry in (self.outcomes or {}).values())

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def run_django(name: str, tests_dir: Path, *, host: str, port: int, labels: Iterable[str], workdir: Path,
               parallel: int = 2, failfast: bool = False, verbosity: int = 1, timeout: float = RUN_TIMEOUT,
               echo: bool = False, watch: Mapping[str, int | None] | None = None,
               exclude: Iterable[str] = tuple(EXCLUDED)) -> RunResult:
    """tests_dir/runtests.py with compat_settings against host:port; outcomes from compat_runner.
    `watch` names other processes ({"server": pid, "proxy": pid}) whose CPU time the run's is counted with."""
    results_path = workdir / f"results-{name}.json"
    log_path = workdir / f"run-{name}.log"
    results_path.unlink(missing_ok=True)
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env.update(
        PYTHONPATH=_pythonpath(COMPAT_DIR),
        DJANGO_COMPAT_HOST=host,
        DJANGO_COMPAT_PORT=str(port),
        DJANGO_COMPAT_USER=BACKEND_USER,
        DJANGO_COMPAT_PASSWORD=BACKEND_PASSWORD,
        DJANGO_COMPAT_DB_PREFIX=name,
        DJANGO_COMPAT_RESULTS=str(results_path),
        DJANGO_COMPAT_EXCLUDE=",".join(exclude),
    )
    cmd = [sys.executable, "runtests.py", "--settings=compat_settings", "--noinput", f"--parallel={parallel}",
           "--timing", f"--verbosity={verbosity}", *(["--failfast"] if failfast else []), *labels]
    watched = {label: pid for label, pid in (watch or {}).items() if pid}
    cpu_before = {label: process_cpu_seconds(pid) for label, pid in watched.items()}
    children_before = _children_cpu_seconds()
    began = time.monotonic()
    with open(log_path, "wb") as log:
        # Its own process group, so that a timeout also ends the --parallel workers.
        proc = subprocess.Popen(cmd, cwd=tests_dir, env=env, stdout=subprocess.PIPE if echo else log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        exit_code = _wait_logging(proc, log, echo, began + timeout)
    seconds = time.monotonic() - began
    cpu = {"django": _children_cpu_seconds() - children_before}
    for label, pid in watched.items():
        after = process_cpu_seconds(pid)
        if after is not None and cpu_before[label] is not None:
            cpu[label] = after - cpu_before[label]
    outcomes = json.loads(results_path.read_text()) if results_path.exists() else None
    return RunResult(name, exit_code, seconds, outcomes, log_path, cpu)


def _children_cpu_seconds() -> float:
    """CPU seconds of this process's waited-for children (runtests.py and, through it, its workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (from /proc), None where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_logging(proc: subprocess.Popen, log, echo: bool, deadline: float) -> int | None:
    """Wait for proc (copying its output to log and stdout when echo) until deadline; None if killed."""
    if echo:
        def copy() -> None:
            for line in proc.stdout:
                log.write(line)
                sys.stdout.buffer.write(line)
                sys.stdout.flush()

        copier = threading.Thread(target=copy, daemon=True)
        copier.start()
    try:
        code = proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        code = None
    if echo:
        copier.join(10)
    return code


# --------------------------------------------------------------------------
# Comparison (pure)
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Regression:
    test_id: str
    direct: str
    proxy: str  # an outcome, or MISSING
    error: str  # one line: the exception through the proxy
    where: str  # the innermost frame in Django's tests, "basic/tests.py:274 in test_x"
    detail: str  # the full traceback through the proxy


@dataclasses.dataclass
class Comparison:
    regressions: list[Regression]
    both_failed: list[str]
    proxy_only_passed: list[str]
    class_errors: dict[str, str]  # errors outside any test (setUpClass ...) seen through the proxy only
    # Server errors that Django met through the proxy and not directly, by test, whatever the
    # test's outcome: those in passing tests are the ones Django swallowed (a failed ROLLBACK TO
    # SAVEPOINT at the end of a test breaks the transaction of a later test).
    proxy_only_db_errors: dict[str, list[dict]]

    def groups(self) -> list[tuple[str, list[Regression]]]:
        """Regressions grouped by their error line, largest group first."""
        grouped: dict[str, list[Regression]] = defaultdict(list)
        for regression in self.regressions:
            grouped[regression.error].append(regression)
        return sorted(grouped.items(), key=lambda item: (-len(item[1]), item[0]))

    def db_error_groups(self) -> list[tuple[str, list[tuple[str, dict]]]]:
        """Proxy-only server errors grouped by errno and statement kind, largest group first."""
        grouped: dict[str, list[tuple[str, dict]]] = defaultdict(list)
        for test_id, errors in self.proxy_only_db_errors.items():
            for error in errors:
                grouped[f"{error['errno']} on {statement_kind(error['statement'])}"].append((test_id, error))
        return sorted(grouped.items(), key=lambda item: (-len(item[1]), item[0]))


def compare(direct: Mapping[str, Mapping], proxy: Mapping[str, Mapping]) -> Comparison:
    """Which tests pass directly and not through the proxy, and the rest, from two outcome maps."""
    class_errors = {test_id: entry["detail"] for test_id, entry in proxy.items()
                    if is_class_level(test_id) and test_id not in direct and entry["outcome"] in BAD_OUTCOMES}
    regressions, both_failed, proxy_only = [], [], []
    for test_id in sorted(direct):
        direct_outcome = direct[test_id]["outcome"]
        through = proxy.get(test_id)
        proxy_outcome = through["outcome"] if through else MISSING
        if direct_outcome == PASS and proxy_outcome != PASS:
            detail = through["detail"] if through else missing_detail(test_id, class_errors)
            regressions.append(Regression(test_id, direct_outcome, proxy_outcome, error_line(detail, proxy_outcome),
                                          innermost_test_frame(detail), detail))
        elif direct_outcome in BAD_OUTCOMES and proxy_outcome in BAD_OUTCOMES | {MISSING}:
            both_failed.append(test_id)
        elif direct_outcome in BAD_OUTCOMES and proxy_outcome == PASS:
            proxy_only.append(test_id)
    db_errors = {test_id: errors for test_id in sorted(proxy)
                 if (errors := extra_db_errors(direct.get(test_id, {}), proxy[test_id]))}
    return Comparison(regressions, both_failed, proxy_only, class_errors, db_errors)


def extra_db_errors(direct: Mapping, proxy: Mapping) -> list[dict]:
    """The server errors of a test through the proxy beyond those (same alias and errno) it met directly."""
    expected = Counter((error["alias"], error["errno"]) for error in direct.get("db_errors", ()))
    extra = []
    for error in proxy.get("db_errors", ()):
        key = (error["alias"], error["errno"])
        if expected[key] > 0:
            expected[key] -= 1
        else:
            extra.append(error)
    return extra


def statement_kind(statement: str) -> str:
    """The leading keywords of a statement: 'ROLLBACK TO SAVEPOINT', 'INSERT INTO', 'SELECT'."""
    words = []
    for word in statement.split()[:3]:
        if not (word.isalpha() and word.isupper()):
            break
        words.append(word)
    return " ".join(words) or statement.split(" ", 1)[0]


def is_class_level(test_id: str) -> bool:
    """unittest's ids for errors outside a test: 'setUpClass (app.tests.SomeTests)' and the like."""
    return " (" in test_id and test_id.endswith(")")


def missing_detail(test_id: str, class_errors: Mapping[str, str]) -> str:
    """Why a test never ran: the class-level error of its class or module, if one was seen."""
    for holder, detail in class_errors.items():
        scope = holder[holder.index(" (") + 2:-1]
        if test_id.startswith(scope + "."):
            return f"did not run: {holder} failed\n{detail}"
    return "did not run (no outcome was reported for it through the proxy)"


def error_line(detail: str, outcome: str) -> str:
    """The exception line of a traceback text (its first line when it has no traceback)."""
    if outcome == "skip":
        return f"skipped: {detail.strip()}"
    if outcome == "xpass":
        return "unexpected success"
    lines = detail.rstrip().splitlines()
    last_frame = max((i for i, line in enumerate(lines) if line.startswith('  File "')), default=None)
    if last_frame is None:
        rest = lines
    else:
        rest = lines[last_frame + 1:]
        while rest and rest[0].startswith("    "):
            rest = rest[1:]
    text = next((line.strip() for line in rest if line.strip()), outcome)
    return text if len(text) <= 300 else text[:297] + "..."


def innermost_test_frame(detail: str, marker: str = "/tests/") -> str:
    """The innermost traceback frame in Django's tests folder, as 'app/tests.py:12 in name'."""
    found = ""
    for line in detail.splitlines():
        line = line.strip()
        if line.startswith('File "') and marker in line and "compat_runner.py" not in line:
            path, _, rest = line[len('File "'):].partition('", line ')
            number, _, function = rest.partition(", in ")
            found = f"{path.rsplit(marker, 1)[1]}:{number} in {function}"
    return found


# --------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------


def describe_run(run: RunResult) -> str:
    counts = run.counts()
    order = ["pass", "skip", "xfail", "fail", "error", "xpass"]
    parts = ", ".join(f"{counts[name]} {name}" for name in order if counts[name])
    status = "killed after the timeout" if run.exit_code is None else f"exit {run.exit_code}"
    cpu = ", ".join(f"{label} {seconds:.0f}s" for label, seconds in run.cpu.items())
    if run.outcomes is None:
        return f"{run.name}: no results ({status}, {run.seconds:.0f}s); log {run.log_path}"
    return f"{run.name}: {len(run.outcomes)} tests in {run.seconds:.0f}s ({status}): {parts}; CPU time: {cpu}"


def format_comparison(comparison: Comparison, limit_per_group: int = 12) -> str:
    lines = []
    count = len(comparison.regressions)
    if count:
        lines.append(f"{count} test(s) pass directly but not through the proxy:")
        for error, group in comparison.groups():
            lines.append(f"  [{len(group)}] {error}")
            for regression in group[:limit_per_group]:
                where = f" at {regression.where}" if regression.where else ""
                lines.append(f"      {regression.test_id} ({regression.proxy}{where})")
            if len(group) > limit_per_group:
                lines.append(f"      ... and {len(group) - limit_per_group} more")
    else:
        lines.append("no regression: every test that passes directly passes through the proxy")
    lines += [f"  error outside any test, through the proxy only: {holder}: "
              f"{error_line(comparison.class_errors[holder], 'error')}" for holder in sorted(comparison.class_errors)]
    groups = comparison.db_error_groups()
    if groups:
        lines.append("server errors met through the proxy only (also those Django swallowed in passing tests):")
        for kind, errors in groups:
            test_ids = sorted({test_id for test_id, _ in errors})
            example = errors[0][1]
            lines.append(f"  [{len(errors)} in {len(test_ids)} test(s)] {kind}: "
                         f"({example['errno']}) {example['message'][:150]}; e.g. {example['alias']!r}: "
                         f"{example['statement'][:100]}")
            lines += [f"      {test_id}" for test_id in test_ids[:limit_per_group]]
            if len(test_ids) > limit_per_group:
                lines.append(f"      ... and {len(test_ids) - limit_per_group} more")
    lines.append(f"{len(comparison.both_failed)} test(s) fail both directly and through the proxy (not counted)")
    if comparison.proxy_only_passed:
        lines.append(f"{len(comparison.proxy_only_passed)} test(s) pass through the proxy but not directly:")
        lines += [f"      {test_id}" for test_id in comparison.proxy_only_passed]
    return "\n".join(lines)


def app_seconds(outcomes: Mapping[str, Mapping]) -> Counter:
    """Seconds spent in each app's tests (setUpClass and database setup not included)."""
    seconds: Counter = Counter()
    for test_id, entry in outcomes.items():
        seconds[test_id.split(".", 1)[0]] += entry.get("seconds") or 0.0
    return seconds


def report_json(runs: Mapping[str, RunResult], comparison: Comparison | None, meta: Mapping) -> dict:
    tests: dict[str, dict] = defaultdict(dict)
    for name, run in runs.items():
        for test_id, entry in (run.outcomes or {}).items():
            tests[test_id][name] = entry["outcome"]
    return {
        **meta,
        "runs": {name: {"exit_code": run.exit_code, "seconds": round(run.seconds, 1),
                        "cpu_seconds": {label: round(value, 1) for label, value in run.cpu.items()},
                        "counts": dict(run.counts()), "results": run.outcomes is not None,
                        "log": str(run.log_path)} for name, run in runs.items()},
        "regressions": [dataclasses.asdict(r) for r in comparison.regressions] if comparison else [],
        "both_failed": comparison.both_failed if comparison else [],
        "proxy_only_passed": comparison.proxy_only_passed if comparison else [],
        "class_errors": comparison.class_errors if comparison else {},
        "proxy_only_db_errors": comparison.proxy_only_db_errors if comparison else {},
        "tests": dict(sorted(tests.items())),
    }

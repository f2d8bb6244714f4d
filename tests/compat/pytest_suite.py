# Another project's own pytest suite, run once straight to MariaDB and once
# through the proxy, and compared test by test: what the SQLAlchemy
# comparison (sqlalchemy_suite.py) and the drivers' (driver_suite.py) share.
# Django's runner is its own (django_suite.py); its comparison of two outcome
# maps is the one used here.
#
#   * PytestRun: `pytest ARGS` in a folder (the unpacked sdist, or a copy of
#     its tests), in its own process group, with a JUnit XML file that
#     parse_junit() turns into {test id: {"outcome", "detail", "seconds"}},
#     each id prefixed with the leg's name ("pymysql: test/..."); the proxy's
#     CPU time over the run is measured too;
#   * compare(): django_suite.compare() on the two outcome maps, then the
#     regressions that a KNOWN_DIFFERENCES map (fnmatch pattern of test ids ->
#     the cause, a limitation of pooling a user would accept) names are set
#     apart with their cause; a pattern whose tests pass again is stale;
#   * conclude(): what the scripts (scripts/*-compat.py) do with the runs:
#     each leg compared and printed, report.json written (report()), and
#     the exit status (exit_status()).
from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tests.compat.django_suite import (
    BAD_OUTCOMES,
    PASS,
    Comparison,
    Regression,
    compare as compare_outcomes,
    error_line,
    format_comparison,
    innermost_test_frame,
    process_cpu_seconds,
)

EXIT_OK, EXIT_REGRESSIONS, EXIT_HARNESS = 0, 1, 2
TEST_TIMEOUT = 120.0  # seconds one test may take (pytest-timeout), so a hang is one failure


# --------------------------------------------------------------------------
# One pytest run
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


def class_and_name_id(case: ElementTree.Element) -> str:
    """'tests/test_x.py::Class::test_y[p]' from a testcase's classname ('tests.test_x.Class') and name."""
    parts = case.get("classname", "").split(".")
    if parts and parts[-1][:1].isupper():  # module.path.Class; a test function outside a class has module.path only
        return f"{'/'.join(parts[:-1])}.py::{parts[-1]}::{case.get('name', '')}"
    return f"{'/'.join(parts)}.py::{case.get('name', '')}"


def file_test_id(case: ElementTree.Element) -> str:
    """pytest's node id, 'tests/test_x.py::Class::test_y[p]', from a testcase's file (xunit1), classname
    ('tests.test_x.Class') and name: unlike the classname alone, it tells a lower-case class
    (mysqlclient's test_MySQLdb) from a module."""
    file, classname, name = case.get("file", ""), case.get("classname", ""), case.get("name", "")
    module = file[:-3].replace("/", ".") if file.endswith(".py") else None
    if module is None or not (classname == module or classname.startswith(module + ".")):
        return class_and_name_id(case)
    classes = classname[len(module) + 1:]
    return f"{file}::{classes.replace('.', '::')}::{name}" if classes else f"{file}::{name}"


class PytestRun:
    """`pytest ARGS` in `cwd`, started now, waited for by wait(). `env` is added to this process's
    environment less PYTHONPATH and PYTEST_ADDOPTS (the project's own must not leak in)."""

    def __init__(self, name: str, leg: str, cwd: Path, args: Sequence[str], *, workdir: Path, timeout: float,
                 env: Mapping[str, str] | None = None, watch_pid: int | None = None,
                 test_id: Callable[[ElementTree.Element], str] = class_and_name_id) -> None:
        self.name, self.leg, self.timeout, self.watch_pid, self.test_id = name, leg, timeout, watch_pid, test_id
        self.junit_path = workdir / f"junit-{leg}-{name}.xml"
        self.log_path = workdir / f"run-{leg}-{name}.log"
        self.junit_path.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", f"--junitxml={self.junit_path}",
               "-o", "junit_family=xunit1", f"--timeout={TEST_TIMEOUT:.0f}", "-q"]
        full_env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
        full_env.update(env or {})
        self.cpu_before = process_cpu_seconds(watch_pid) if watch_pid else None
        self.began = time.monotonic()
        with open(self.log_path, "wb") as log:
            # Its own process group, so that a timeout ends whatever it started.
            self.proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT,
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
            parsed = parse_junit(self.junit_path.read_text(errors="replace"), self.test_id)
            outcomes = {f"{self.leg}: {test_id}": entry for test_id, entry in parsed.items()}
        return RunResult(self.name, self.leg, code, seconds, outcomes, self.log_path, cpu)


def parse_junit(text: str, test_id: Callable[[ElementTree.Element], str] = class_and_name_id) -> dict[str, dict]:
    """{test id: {"outcome", "detail", "seconds"}} from pytest's JUnit XML; a test's setup or
    teardown error counts as its error."""
    outcomes: dict[str, dict] = {}
    root = ElementTree.fromstring(text)
    for case in root.iter("testcase"):
        case_id = test_id(case)
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
        previous = outcomes.get(case_id)
        if previous and previous["outcome"] in BAD_OUTCOMES:
            continue  # a teardown error is reported as a second testcase: keep the first bad outcome
        outcomes[case_id] = {"outcome": outcome, "detail": detail, "seconds": float(case.get("time") or 0.0)}
    return outcomes


def describe_run(run: RunResult) -> str:
    counts = run.counts()
    parts = ", ".join(f"{counts[name]} {name}" for name in ("pass", "skip", "xfail", "fail", "error") if counts[name])
    status = "killed after the timeout" if run.exit_code is None else f"exit {run.exit_code}"
    cpu = "".join(f"; {label} CPU {seconds:.0f}s" for label, seconds in run.cpu.items())
    if run.outcomes is None:
        return f"{run.leg} {run.name}: no results ({status}, {run.seconds:.0f}s); log {run.log_path}"
    return f"{run.leg} {run.name}: {len(run.outcomes)} tests in {run.seconds:.0f}s ({status}): {parts}{cpu}"


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


def compare(direct: Mapping[str, Mapping], proxy: Mapping[str, Mapping], known: Mapping[str, str],
            tests_marker: str) -> LegComparison:
    """Regressions (pass directly, not through the proxy), those `known` explains set apart.
    `tests_marker`: the folder in traceback paths whose frames are the suite's own ("/tests/")."""
    comparison = compare_outcomes(direct, proxy)
    unexplained, explained = [], []
    for regression in comparison.regressions:
        regression = dataclasses.replace(regression, where=innermost_test_frame(regression.detail, tests_marker))
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


# --------------------------------------------------------------------------
# The report and the exit status (pure)
# --------------------------------------------------------------------------


def report(runs: Mapping[tuple[str, str], RunResult], comparisons: Mapping[str, LegComparison],
           meta: Mapping[str, object]) -> dict:
    """The JSON report: `meta`, each run's counts, the regressions with their tracebacks, the
    known differences met, stale KNOWN_DIFFERENCES entries, and the tests that differ otherwise."""
    return {
        **meta,
        "runs": {f"{leg} {name}": {"exit_code": run.exit_code, "seconds": round(run.seconds, 1),
                                    "cpu_seconds": {k: round(v, 1) for k, v in run.cpu.items()},
                                    "counts": dict(run.counts()), "results": run.outcomes is not None,
                                    "log": str(run.log_path)}
                 for (leg, name), run in runs.items()},
        "regressions": [dataclasses.asdict(regression) for result in comparisons.values()
                        for regression in result.comparison.regressions],
        "known": [{**dataclasses.asdict(regression), "cause": cause} for result in comparisons.values()
                  for regression, cause in result.known],
        "stale_known_differences": [pattern for result in comparisons.values() for pattern in result.stale],
        "both_failed": [test_id for result in comparisons.values() for test_id in result.comparison.both_failed],
        "proxy_only_passed": [test_id for result in comparisons.values()
                              for test_id in result.comparison.proxy_only_passed],
    }


def exit_status(runs: Mapping[tuple[str, str], RunResult], comparisons: Mapping[str, LegComparison]) -> int:
    """EXIT_HARNESS when a run reported nothing or was killed, EXIT_REGRESSIONS when a test passed
    directly but not through the proxy unexplained, else EXIT_OK."""
    if any(not run.outcomes or run.exit_code is None for run in runs.values()):
        return EXIT_HARNESS
    return EXIT_REGRESSIONS if any(result.comparison.regressions for result in comparisons.values()) else EXIT_OK


def conclude(runs: Mapping[tuple[str, str], RunResult], legs: Sequence[str],
             compare_leg: Callable[[Mapping[str, Mapping], Mapping[str, Mapping]], LegComparison], *,
             compared: bool, meta: Mapping[str, object], workdir: Path, report_copy: Path | None,
             log: Callable[[str], None], seconds: float) -> int:
    """Compare each leg's direct and proxy runs (when `compared`) and print the result, write
    workdir/report.json (and `report_copy`), and return the exit status."""
    silent = [run for run in runs.values() if not run.outcomes]
    for run in silent:
        log(f"the {run.leg} {run.name} run reported no test; the end of {run.log_path}:\n{run.log_tail()}")
    comparisons = {}
    if compared and not silent:
        for leg in legs:
            result = compare_leg(runs[leg, "direct"].outcomes or {}, runs[leg, "proxy"].outcomes or {})
            comparisons[leg] = result
            print(f"== {leg}", flush=True)
            print(format_leg_comparison(result), flush=True)
    text = json.dumps(report(runs, comparisons, meta), indent=1)
    (workdir / "report.json").write_text(text)
    if report_copy is not None:
        report_copy.write_text(text)
    log(f"done in {seconds:.0f}s; logs and report.json in {workdir}")
    killed = [run for run in runs.values() if run.exit_code is None]
    if killed:
        log(f"killed after the timeout: {', '.join(f'{run.leg} {run.name}' for run in killed)}")
    return exit_status(runs, comparisons)

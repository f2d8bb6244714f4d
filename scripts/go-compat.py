#!/usr/bin/env python3
# go-sql-driver/mysql's own test suite, straight to a private MariaDB and
# through mysqlpool-proxy, compared test by test (see tests/compat/go_suite.py).
#
#   scripts/go-compat.py                         the whole suite, compared
#   scripts/go-compat.py --tests TestTLS,TestConcurrent   some tests only
#   scripts/go-compat.py --only proxy            one run, no comparison
#   scripts/go-compat.py --sequential            the two runs one after the other
#   scripts/go-compat.py --set pool.ping_after=0 other proxy settings
#
# It builds the suite from Debian's golang-github-go-sql-driver-mysql-dev in
# GOPATH mode (nothing is downloaded) and runs it with the MYSQL_TEST_*
# variables of driver_test.go, MYSQL_TEST_CONCURRENT included. The proxy is
# this checkout's, as a real process: transaction pooling, max_size 4, TLS
# offered to clients. By default the direct run and the run through the
# proxy go side by side, each against its own private MariaDB. Everything a
# run leaves (the proxy's config and log, each run's test2json events,
# report.json) is in --workdir.
#
# Exit status: 0 no regression, 1 regressions (listed), or the proxy was
# left holding connections or logged an internal error, 2 the comparison
# could not be made (no Go toolchain or driver source, a run crashed, the
# proxy died).
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.compat import go_suite as suite  # noqa: E402

EXIT_OK, EXIT_REGRESSIONS, EXIT_HARNESS = 0, 1, 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="go-sql-driver/mysql's tests directly and through mysqlpool-proxy.")
    parser.add_argument("--tests", help="comma-separated top-level tests to run (default: all but SKIPPED)")
    parser.add_argument("--only", choices=["direct", "proxy"], help="make one run, no comparison")
    parser.add_argument("--sequential", action="store_true",
                        help="the direct run, then the proxy run (default: side by side)")
    parser.add_argument("--max-size", type=int, default=4, help="the proxy's pool max_size (default 4)")
    parser.add_argument("--pool-mode", default="transaction", choices=["transaction", "session"],
                        help="the proxy's pool.mode")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="another proxy setting, e.g. --set pool.ping_after=0 --set proxy.workers=2")
    parser.add_argument("--timeout", type=float, default=suite.RUN_TIMEOUT, help="seconds per run")
    parser.add_argument("--workdir", type=Path, default=suite.DEFAULT_WORKDIR,
                        help="where logs and results go (emptied first; default .cache/go-compat/last-run)")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[go-compat] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    began = time.monotonic()
    try:
        binary = suite.build_test_binary(workdir, log)
        only = [name.strip() for name in args.tests.split(",") if name.strip()] if args.tests else None
        tests = suite.selected_tests(suite.list_tests(binary, workdir), only=only)
        log(f"{len(tests)} tests; not run: " + "; ".join(f"{name} ({why})" for name, why in suite.SKIPPED.items()))
        extra: dict[str, dict[str, object]] = {}
        for section, key, value in (suite.parse_setting(text) for text in args.set):
            extra.setdefault(section, {})[key] = value
        runs, leftovers, server_version = run_both(args, binary, tests, workdir, extra)
    except suite.HarnessError as exc:
        log(f"could not run the comparison: {exc}")
        return EXIT_HARNESS
    return conclude(args, runs, leftovers, server_version, workdir, time.monotonic() - began)


def run_both(args, binary: Path, tests: list[str], workdir: Path, extra: dict[str, dict[str, object]]):
    """({run name: RunResult}, what the proxy was left with, the server's version)."""
    from tests.support.tls import self_signed

    tls = self_signed(workdir)
    sequential = args.sequential or args.only is not None
    servers = [suite.start_backend(tls)]
    try:
        if not sequential:
            servers.append(suite.start_backend(tls))
        direct_server, proxied_server = servers[0], servers[-1]
        server_version = direct_server.server_version()
        settings = suite.ProxySettings(pool_mode=args.pool_mode, max_size=args.max_size)
        proxy = suite.start_proxy(proxied_server, workdir, settings, tls, extra)
        try:
            log(f"{server_version}: direct on port {direct_server.port}; mysqlpool-proxy on port {proxy.port} "
                f"({settings.pool_mode} pooling, max_size {settings.max_size}, TLS to clients"
                f"{''.join(f', {text}' for text in args.set)}) in front of port "
                f"{proxied_server.port}, log {proxy.log_path}; "
                f"{'one run after the other' if sequential else 'both runs side by side'}")
            options = dict(workdir=workdir, timeout=args.timeout)
            starters = {
                "direct": lambda: suite.GoTestRun("direct", binary, tests, host=direct_server.host,
                                                  port=direct_server.port, **options),
                "proxy": lambda: suite.GoTestRun("proxy", binary, tests, host="127.0.0.1", port=proxy.port, **options),
            }
            chosen = [start for name, start in starters.items() if args.only in (None, name)]
            if sequential:
                results = [start().wait() for start in chosen]
            else:
                started = [start() for start in chosen]
                results = [run.wait() for run in started]
            if proxy.exit_code() is not None:
                raise suite.HarnessError(f"the proxy exited with code {proxy.exit_code()} during the runs:\n"
                                         f"{proxy.log_tail()}")
            leftovers = suite.leftovers(proxy) if args.only in (None, "proxy") else []
        finally:
            proxy.stop()
    finally:
        for server in servers:
            server.close()
    runs = {run.name: run for run in results}
    for run in runs.values():
        log(suite.describe_run(run))
    return runs, leftovers, server_version


def conclude(args, runs, leftovers: list[str], server_version: str, workdir: Path, seconds: float) -> int:
    for run in runs.values():
        if not run.outcomes:
            log(f"the {run.name} run reported no test; the end of {run.log_path}:\n{run.log_tail()}")
            write_report(workdir, runs, None, leftovers, server_version)
            return EXIT_HARNESS
    comparison = None
    if args.only is None:
        comparison = suite.compare(runs["direct"].outcomes, runs["proxy"].outcomes)
        print(suite.format_comparison(comparison), flush=True)
    for problem in leftovers:
        log(f"after the run through the proxy: {problem}")
    write_report(workdir, runs, comparison, leftovers, server_version)
    log(f"done in {seconds:.0f}s; logs and report.json in {workdir}")
    if any(run.exit_code is None for run in runs.values()):
        log(f"a run was killed after {args.timeout:.0f}s")
        return EXIT_HARNESS
    failed = leftovers or (comparison is not None and (comparison.regressions or comparison.stale))
    return EXIT_REGRESSIONS if failed else EXIT_OK


def write_report(workdir: Path, runs, comparison, leftovers: list[str], server_version: str) -> None:
    report = {
        "driver": str(suite.DRIVER_SOURCE), "server": server_version,
        "known_differences": {name: dataclasses.asdict(entry) for name, entry in suite.KNOWN_DIFFERENCES.items()},
        "skipped": suite.SKIPPED,
        "runs": {name: {"exit_code": run.exit_code, "seconds": round(run.seconds, 1), "counts": dict(run.counts()),
                        "events": str(run.log_path)} for name, run in runs.items()},
        "regressions": [dataclasses.asdict(regression) for regression in comparison.regressions] if comparison else [],
        "known": [{**dataclasses.asdict(regression), "cause": entry.cause}
                  for regression, entry in comparison.known] if comparison else [],
        "stale_known_differences": comparison.stale if comparison else [],
        "both_failed": comparison.both_failed if comparison else [],
        "proxy_only_passed": comparison.proxy_only_passed if comparison else [],
        "leftovers": leftovers,
    }
    (workdir / "report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    sys.exit(main())

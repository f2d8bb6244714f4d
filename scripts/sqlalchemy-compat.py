#!/usr/bin/env python3
# SQLAlchemy's own test suite, straight to a private MariaDB and through
# mysqlpool-proxy, compared test by test (see tests/compat/sqlalchemy_suite.py).
#
#   scripts/sqlalchemy-compat.py                    both legs (PyMySQL, mysqlclient), compared
#   scripts/sqlalchemy-compat.py --legs pymysql     one driver
#   scripts/sqlalchemy-compat.py --paths test/engine/test_transaction.py   other sdist test paths
#   scripts/sqlalchemy-compat.py --only proxy       one run per leg, no comparison
#   scripts/sqlalchemy-compat.py --sequential       the two runs one after the other, on one server
#
# It fetches the SQLAlchemy sdist of sqlalchemy_suite.SQLALCHEMY_VERSION once
# into .cache/ and runs its tests with its own lib/ and pytest plugin, in the
# interpreter that runs this script (pytest, pytest-timeout, PyMySQL and
# mysqlclient from the project's test extras). The proxy is this checkout's,
# as a real process. By default the direct run and the run through the proxy
# go side by side, each against its own private MariaDB. Everything a run
# leaves (the proxy's config and log, each run's pytest output and JUnit
# XML, report.json) is in --workdir.
#
# Exit status: 0 no regression, 1 regressions (listed), 2 the comparison
# could not be made (the sdist is missing, a run crashed, the proxy died).
from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.compat import pytest_suite, sqlalchemy_suite as suite  # noqa: E402
from tests.compat.pytest_suite import EXIT_HARNESS  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="SQLAlchemy's test suite directly and through mysqlpool-proxy.")
    parser.add_argument("--legs", default=",".join(leg.name for leg in suite.LEGS),
                        help="comma-separated drivers to run (default: all of pymysql,mysqldb)")
    parser.add_argument("--paths", help="comma-separated sdist test paths instead of each leg's own")
    parser.add_argument("--all-tests", action="store_true",
                        help="also the tests not marked as backend tests (many of which use the database too)")
    parser.add_argument("--only", choices=["direct", "proxy"], help="make one run per leg, no comparison")
    parser.add_argument("--sequential", action="store_true",
                        help="the direct run, then the proxy run, on one server (default: side by side on two)")
    parser.add_argument("--max-size", type=int, default=4,
                        help="the proxy's pool max_size (default 4; with 2, IsolationLevelTest.test_per_connection "
                             "fails with 1040 after 10s: it keeps more transactions open at once than 2 backends)")
    parser.add_argument("--pool-mode", default="transaction", choices=["transaction", "session"],
                        help="the proxy's pool.mode")
    parser.add_argument("--timeout", type=float, default=suite.RUN_TIMEOUT, help="seconds per pytest run")
    parser.add_argument("--workdir", type=Path, default=suite.DEFAULT_CACHE / "last-run",
                        help="where logs and results go (emptied first; default .cache/sqlalchemy-compat/last-run)")
    parser.add_argument("--cache", type=Path, default=suite.DEFAULT_CACHE, help="where the SQLAlchemy sdist is kept")
    parser.add_argument("--report", type=Path, help="write the JSON report here too")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[sqlalchemy-compat] {message}", flush=True)


def chosen_legs(args) -> list[suite.Leg]:
    by_name = {leg.name: leg for leg in suite.LEGS}
    names = [name.strip() for name in args.legs.split(",") if name.strip()]
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise suite.HarnessError(f"unknown leg(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    paths = tuple(path.strip() for path in args.paths.split(",") if path.strip()) if args.paths else None
    legs = [dataclasses.replace(by_name[name], paths=paths) if paths else by_name[name] for name in names]
    return [dataclasses.replace(leg, backend_only=False) for leg in legs] if args.all_tests else legs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    began = time.monotonic()
    try:
        legs = chosen_legs(args)
        sdist_dir = suite.sqlalchemy_sdist_dir(suite.SQLALCHEMY_VERSION, args.cache, log)
        runs, server_version = run_legs(args, legs, sdist_dir, workdir)
    except suite.HarnessError as exc:
        log(f"could not run the comparison: {exc}")
        return EXIT_HARNESS
    return conclude(args, legs, runs, server_version, workdir, time.monotonic() - began)


def run_legs(args, legs, sdist_dir: Path, workdir: Path):
    """Each leg's direct and proxy runs; {(leg name, run name): RunResult}."""
    from tests.support.mariadb import ExternalServer

    runs = {}
    servers = [suite.start_backend()]
    try:
        sequential = args.sequential or args.only is not None or isinstance(servers[0], ExternalServer)
        if not sequential:
            servers.append(suite.start_backend())
        direct_server, proxied_server = servers[0], servers[-1]
        server_version = direct_server.server_version()
        settings = suite.ProxySettings(pool_mode=args.pool_mode, max_size=args.max_size)
        with suite.ProxyProcess(proxied_server, workdir, settings, user=suite.BACKEND_USER,
                                password=suite.BACKEND_PASSWORD) as proxy:
            log(f"{server_version}: direct on port {direct_server.port}; mysqlpool-proxy on port {proxy.port} "
                f"({settings.pool_mode} pooling, max_size {settings.max_size}) in front of port "
                f"{proxied_server.port}, log {proxy.log_path}; "
                f"{'one run after the other' if sequential else 'both runs side by side'}")
            for leg in legs:
                log(f"{leg.name}: {' '.join(leg.paths)}")
                for name, result in run_leg(args, leg, sdist_dir, workdir, direct_server, proxy, sequential):
                    runs[leg.name, name] = result
                    log(suite.describe_run(result))
                if proxy.exit_code() is not None:
                    raise suite.HarnessError(f"the proxy exited with code {proxy.exit_code()} during the runs:\n"
                                             f"{proxy.log_tail()}")
    finally:
        for server in servers:
            server.close()
    return runs, server_version


def run_leg(args, leg, sdist_dir: Path, workdir: Path, direct_server, proxy, sequential: bool):
    """[(run name, RunResult)] of one leg."""
    options = dict(workdir=workdir, timeout=args.timeout)

    def direct():
        return suite.pytest_run("direct", leg, sdist_dir, host=direct_server.host, port=direct_server.port, **options)

    def through_proxy():
        return suite.pytest_run("proxy", leg, sdist_dir, host="127.0.0.1", port=proxy.port,
                                watch_pid=proxy.proc.pid, **options)

    starters = [start for name, start in (("direct", direct), ("proxy", through_proxy))
                if args.only in (None, name)]
    if sequential:
        return [(run.name, run.wait()) for run in (start() for start in starters)]
    started = [start() for start in starters]
    return [(run.name, run.wait()) for run in started]


def conclude(args, legs, runs, server_version, workdir: Path, seconds: float) -> int:
    meta = {"sqlalchemy": suite.SQLALCHEMY_VERSION, "server": server_version,
            "proxy": {"mode": args.pool_mode, "max_size": args.max_size},
            "known_differences": suite.KNOWN_DIFFERENCES}
    return pytest_suite.conclude(runs, [leg.name for leg in legs], suite.compare, compared=args.only is None,
                                 meta=meta, workdir=workdir, report_copy=args.report, log=log, seconds=seconds)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
# The drivers' own test suites (aiomysql's, PyMySQL's tests ported; mysqlclient's),
# straight to a private MariaDB and through mysqlpool-proxy, compared test by
# test (see tests/compat/driver_suite.py).
#
#   scripts/driver-compat.py                         both legs, compared
#   scripts/driver-compat.py --legs aiomysql         one driver
#   scripts/driver-compat.py --pytest-args="-k test_load_local"   fewer tests (or more: -k "")
#   scripts/driver-compat.py --only proxy            one run per leg, no comparison
#   scripts/driver-compat.py --sequential            the two runs one after the other
#
# It fetches the sdists of the installed aiomysql and mysqlclient once into
# .cache/driver-compat (and installs SQLAlchemy 1.3 there for aiomysql.sa's
# tests) and runs their tests, in the interpreter that runs this script, with
# the installed drivers. The proxy is this checkout's, as a real process. By
# default the direct run and the run through the proxy go side by side, each
# against its own private MariaDB. Everything a run leaves (the proxy's
# config and log, each run's pytest output and JUnit XML, report.json) is in
# --workdir.
#
# Exit status: 0 no regression, 1 regressions (listed), 2 the comparison
# could not be made (an sdist is missing, a run crashed, the proxy died).
from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.compat import driver_suite as suite, pytest_suite  # noqa: E402
from tests.compat.pytest_suite import EXIT_HARNESS  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The drivers' test suites directly and through mysqlpool-proxy.")
    parser.add_argument("--legs", default=",".join(leg.name for leg in suite.LEGS),
                        help="comma-separated legs to run (default: all of aiomysql,mysqlclient)")
    parser.add_argument("--pytest-args", default="", help="more pytest arguments for every run (shell syntax)")
    parser.add_argument("--only", choices=["direct", "proxy"], help="make one run per leg, no comparison")
    parser.add_argument("--sequential", action="store_true",
                        help="the direct run, then the proxy run (default: side by side, on two servers)")
    parser.add_argument("--max-size", type=int, default=4, help="the proxy's pool max_size (default 4)")
    parser.add_argument("--pool-mode", default="transaction", choices=["transaction", "session"],
                        help="the proxy's pool.mode")
    parser.add_argument("--timeout", type=float, default=suite.RUN_TIMEOUT, help="seconds per pytest run")
    parser.add_argument("--workdir", type=Path, default=suite.DEFAULT_CACHE / "last-run",
                        help="where logs and results go (emptied first; default .cache/driver-compat/last-run)")
    parser.add_argument("--cache", type=Path, default=suite.DEFAULT_CACHE, help="where the sdists are kept")
    parser.add_argument("--report", type=Path, help="write the JSON report here too")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[driver-compat] {message}", flush=True)


def chosen_legs(args) -> list[suite.Leg]:
    by_name = {leg.name: leg for leg in suite.LEGS}
    names = [name.strip() for name in args.legs.split(",") if name.strip()]
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise suite.HarnessError(f"unknown leg(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    return [by_name[name] for name in names]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    began = time.monotonic()
    try:
        legs = chosen_legs(args)
        prepared = suite.prepare(legs, args.cache, log)
        runs, server_version = run_legs(args, legs, prepared, workdir)
    except suite.HarnessError as exc:
        log(f"could not run the comparison: {exc}")
        return EXIT_HARNESS
    return conclude(args, legs, runs, server_version, workdir, time.monotonic() - began)


def run_legs(args, legs, prepared, workdir: Path):
    """Each leg's direct and proxy runs; {(leg name, run name): RunResult}."""
    from tests.support.tls import self_signed

    tls_dir = workdir / "tls"
    tls_dir.mkdir()
    tls = self_signed(tls_dir)
    runs = {}
    sequential = args.sequential or args.only is not None
    servers = [suite.start_backend(tls)]
    try:
        if not sequential:
            servers.append(suite.start_backend(tls))
        direct_server, proxied_server = servers[0], servers[-1]
        server_version = direct_server.server_version()
        settings = suite.ProxySettings(pool_mode=args.pool_mode, max_size=args.max_size)
        proxy = suite.start_proxy(proxied_server, workdir, settings, tls)
        try:
            log(f"{server_version}: direct on port {direct_server.port}; mysqlpool-proxy on port {proxy.port} "
                f"({settings.pool_mode} pooling, max_size {settings.max_size}, TLS both ways) in front of port "
                f"{proxied_server.port}, log {proxy.log_path}; "
                f"{'one run after the other' if sequential else 'both runs side by side'}")
            for leg in legs:
                for name, result in run_leg(args, leg, prepared, workdir, direct_server, proxy, sequential):
                    runs[leg.name, name] = result
                    log(suite.describe_run(result))
                if proxy.exit_code() is not None:
                    raise suite.HarnessError(f"the proxy exited with code {proxy.exit_code()} during the runs:\n"
                                             f"{proxy.log_tail()}")
        finally:
            proxy.stop()
    finally:
        for server in servers:
            server.close()
    return runs, server_version


def run_leg(args, leg, prepared, workdir: Path, direct_server, proxy, sequential: bool):
    """[(run name, RunResult)] of one leg."""
    options = dict(workdir=workdir, timeout=args.timeout, extra_args=tuple(shlex.split(args.pytest_args)))

    def direct():
        return suite.pytest_run("direct", leg, prepared, host=direct_server.host, port=direct_server.port, **options)

    def through_proxy():
        return suite.pytest_run("proxy", leg, prepared, host="127.0.0.1", port=proxy.port, watch_pid=proxy.proc.pid,
                                **options)

    starters = [start for name, start in (("direct", direct), ("proxy", through_proxy)) if args.only in (None, name)]
    if sequential:
        return [(run.name, run.wait()) for run in (start() for start in starters)]
    started = [start() for start in starters]
    return [(run.name, run.wait()) for run in started]


def conclude(args, legs, runs, server_version, workdir: Path, seconds: float) -> int:
    meta = {"drivers": {leg.name: leg.sdist().version for leg in legs}, "server": server_version,
            "proxy": {"mode": args.pool_mode, "max_size": args.max_size},
            "known_differences": suite.KNOWN_DIFFERENCES}
    return pytest_suite.conclude(runs, [leg.name for leg in legs], suite.compare, compared=args.only is None,
                                 meta=meta, workdir=workdir, report_copy=args.report, log=log, seconds=seconds)


if __name__ == "__main__":
    sys.exit(main())

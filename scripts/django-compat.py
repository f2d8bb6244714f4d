#!/usr/bin/env python3
# Django's own test suite, straight to a private MariaDB and then through
# mysqlpool-proxy, compared test by test (see tests/compat/django_suite.py).
#
#   scripts/django-compat.py                      the default apps, both runs, compared
#   scripts/django-compat.py --apps transactions,basic.tests.ModelTest
#   scripts/django-compat.py --only direct        one run, no comparison
#   scripts/django-compat.py --parallel 1 -v 2    one worker, Django's verbose output
#   scripts/django-compat.py --failfast --echo    stop each run at its first failure, show the output live
#
# It uses the Django installed in the interpreter that runs it (run it with
# .venv/bin/python) and fetches that version's sdist once into .cache/.
# The proxy is this checkout's, as a real process (python -m mysqlpool_proxy).
# Everything a run leaves (the proxy's config and log, each run's Django
# output and results, report.json) is in --workdir.
#
# Exit status: 0 no regression, 1 regressions (listed), 2 the comparison
# could not be made (a run crashed, the proxy died, nothing ran).
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.compat import django_suite as suite  # noqa: E402

EXIT_OK, EXIT_REGRESSIONS, EXIT_HARNESS = 0, 1, 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Django's test suite directly and through mysqlpool-proxy.")
    parser.add_argument("--apps", default=",".join(suite.DEFAULT_APPS),
                        help="comma-separated Django test labels (apps, modules or classes); "
                             "'required' for the issue's 20 apps; default: those and some more")
    parser.add_argument("--only", choices=["direct", "proxy"], help="make one run only, no comparison")
    parser.add_argument("--parallel", type=int, default=2,
                        help="Django test processes per run (default 2; each holds up to one backend per "
                             "database alias, so keep parallel*2 <= --max-size)")
    parser.add_argument("--max-size", type=int, default=4, help="the proxy's pool max_size (default 4)")
    parser.add_argument("--pool-mode", default="transaction", choices=["transaction", "session"],
                        help="the proxy's pool.mode (session mode holds a backend per Django connection: "
                             "it needs --max-size of at least 2 * (parallel + 1))")
    parser.add_argument("--failfast", action="store_true", help="stop each run at its first failing test")
    parser.add_argument("-v", "--verbosity", type=int, default=1, help="Django's verbosity (0-3)")
    parser.add_argument("--echo", action="store_true", help="show Django's output while it runs")
    parser.add_argument("--timeout", type=float, default=suite.RUN_TIMEOUT, help="seconds per Django run")
    parser.add_argument("--workdir", type=Path, default=suite.DEFAULT_CACHE / "last-run",
                        help="where logs and results go (emptied first; default .cache/django-compat/last-run)")
    parser.add_argument("--cache", type=Path, default=suite.DEFAULT_CACHE, help="where the Django sdist is kept")
    parser.add_argument("--django-tests", type=Path,
                        help="a Django tests/ folder to use instead of the sdist's (e.g. of a git checkout)")
    parser.add_argument("--server-option", action="append", default=[], metavar="NAME=VALUE",
                        help="a mariadbd option for the private server, e.g. innodb_file_per_table=0 (repeatable)")
    parser.add_argument("--report", type=Path, help="write the JSON report here too")
    parser.add_argument("--timing", action="store_true", help="print the seconds spent in each app")
    return parser.parse_args(argv)


def labels_from(text: str) -> list[str]:
    labels = [label.strip() for label in text.replace(" ", ",").split(",") if label.strip()]
    return [name for label in labels for name in (suite.REQUIRED_APPS if label == "required" else [label])]


def log(message: str) -> None:
    print(f"[django-compat] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    labels = labels_from(args.apps)
    if not labels:
        log("no test labels given")
        return EXIT_HARNESS
    workdir = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    version = suite.installed_django_version()
    began = time.monotonic()
    try:
        tests_dir = (args.django_tests.resolve() if args.django_tests
                     else suite.django_tests_dir(version, args.cache, log))
        runs, server_version = run_both(args, labels, tests_dir, workdir)
    except suite.HarnessError as exc:
        log(f"could not run the comparison: {exc}")
        return EXIT_HARNESS
    return conclude(args, runs, labels, version, server_version, workdir, time.monotonic() - began)


def run_both(args, labels: list[str], tests_dir: Path, workdir: Path):
    """The direct run, then the run through the proxy (or --only one); {name: RunResult}."""
    options = dict(labels=labels, workdir=workdir, parallel=args.parallel, failfast=args.failfast,
                   verbosity=args.verbosity, timeout=args.timeout, echo=args.echo)
    runs = {}
    server_options = dict(option.split("=", 1) for option in args.server_option) if args.server_option else None
    server = suite.start_backend(server_options, log)
    try:
        server_version = server.server_version()
        if args.only in (None, "direct"):
            log(f"direct run: {len(labels)} labels against {server_version} on port {server.port}; "
                f"left out: {', '.join(suite.EXCLUDED)}")
            runs["direct"] = suite.run_django("direct", tests_dir, host=server.host, port=server.port,
                                              watch={"server": getattr(server, "pid", None)}, **options)
            log(suite.describe_run(runs["direct"]))
        if args.only in (None, "proxy"):
            settings = suite.ProxySettings(pool_mode=args.pool_mode, max_size=args.max_size)
            with suite.ProxyProcess(server, workdir, settings) as proxy:
                log(f"proxy run: mysqlpool-proxy on port {proxy.port} ({settings.pool_mode} pooling, "
                    f"max_size {settings.max_size}), log {proxy.log_path}")
                runs["proxy"] = suite.run_django("proxy", tests_dir, host="127.0.0.1", port=proxy.port,
                                                 watch={"server": getattr(server, "pid", None),
                                                        "proxy": proxy.proc.pid}, **options)
                if proxy.exit_code() is not None:
                    raise suite.HarnessError(f"the proxy exited with code {proxy.exit_code()} during the run:\n"
                                             f"{proxy.log_tail()}")
            log(suite.describe_run(runs["proxy"]))
    finally:
        server.close()
    return runs, server_version


def conclude(args, runs, labels, version, server_version, workdir: Path, seconds: float) -> int:
    for run in runs.values():
        if not run.outcomes:
            log(f"the {run.name} run reported no test; the end of {run.log_path}:\n{run.log_tail()}")
            write_report(args, workdir, runs, None, labels, version, server_version)
            return EXIT_HARNESS
    if args.timing:
        print_timing(runs)
    comparison = None
    if len(runs) == 2:
        comparison = suite.compare(runs["direct"].outcomes, runs["proxy"].outcomes)
        print(suite.format_comparison(comparison), flush=True)
    write_report(args, workdir, runs, comparison, labels, version, server_version)
    log(f"done in {seconds:.0f}s; logs and report.json in {workdir}")
    if any(run.exit_code is None for run in runs.values()):
        log(f"a run was killed after {args.timeout:.0f}s")
        return EXIT_HARNESS
    return EXIT_REGRESSIONS if comparison and comparison.regressions else EXIT_OK


def print_timing(runs) -> None:
    for run in runs.values():
        seconds = suite.app_seconds(run.outcomes)
        log(f"seconds in each app's tests, {run.name} run: "
            + ", ".join(f"{app} {value:.1f}" for app, value in seconds.most_common()))


def write_report(args, workdir: Path, runs, comparison, labels, version, server_version) -> None:
    meta = {"django": version, "server": server_version, "labels": labels, "excluded": suite.EXCLUDED,
            "parallel": args.parallel,
            "proxy": {"mode": args.pool_mode, "max_size": args.max_size}}
    text = json.dumps(suite.report_json(runs, comparison, meta), indent=1)
    (workdir / "report.json").write_text(text)
    if args.report:
        args.report.write_text(text)


if __name__ == "__main__":
    sys.exit(main())

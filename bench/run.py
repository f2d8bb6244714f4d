# THE benchmark command (bench/run.sh installs what it needs, then runs this):
#
#   .venv/bin/python -m bench.run [--quick] [--only WORKLOAD[,WORKLOAD...]] [--rounds N] [--out DIR] [--no-floor]
#
# Starts a private MariaDB (tests/support/mariadb.py, a free port on
# 127.0.0.1, its own datadir) and the proxy (the real CLI, one process per
# configuration), runs each workload directly against the server and
# through the proxy in alternation (the sysbench point selects and
# connect-per-request also through the floor legs: a bare uvloop relay and
# HAProxy, bench/floor.py), and writes to bench/results/<timestamp>/:
#   results.json   machine, settings, every row with all its samples, raw data
#   results.md     the table: workload, metric, direct, proxy, ratio, target, met?;
#                  the floor tables; where the CPU went
#   *.png          plots (bench/plots.py)
#   run.log, proxy/*.log, proxy/*.toml
#
# Workloads (all by default, in this order): point_sysbench, workers,
# point_python, connect, idle, large, mixed. See bench/workloads.py.
# The figures are only comparable within one run: proxy, server and load
# generator share the machine's cores.
"""Run the proxy benchmark: direct vs through the proxy, alternating."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import (  # noqa: E402
    machine as machine_info,
    sysbench as sb,
)
from bench.floor import find_haproxy, haproxy_version  # noqa: E402
from bench.report import Row, render_cpu_table, render_floor, render_markdown, render_text, summary_counts  # noqa: E402
from bench.workloads import NOISY_CORES, WORKLOADS, Bench, Settings, server_options  # noqa: E402

RESULTS = REPO / "bench" / "results"
QUIET_CORES = 0.2
QUIET_WINDOW = 15.0
ROUND_WINDOW = 3.0
ROUND_WAIT_LIMIT = 300.0


def parse_only(values: list[str] | None) -> list[str]:
    """--only a,b --only c -> ["a", "b", "c"] in WORKLOADS order; every name checked."""
    if not values:
        return list(WORKLOADS)
    wanted = {w.strip() for v in values for w in v.split(",") if w.strip()}
    unknown = sorted(wanted - set(WORKLOADS))
    if unknown:
        raise SystemExit(f"unknown workload(s): {', '.join(unknown)}; choose from: {', '.join(WORKLOADS)}")
    return [w for w in WORKLOADS if w in wanted]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="short durations and smaller counts (a smoke run)")
    ap.add_argument("--only", action="append", metavar="WORKLOAD",
                    help=f"run only these (comma-separated, repeatable): {', '.join(WORKLOADS)}")
    ap.add_argument("--rounds", type=int, help="direct/proxy rounds per measurement (default 3, --quick 2; at least 2)")
    ap.add_argument("--workers", type=int, help="[proxy] workers for the extra point-select leg (default 2)")
    ap.add_argument("--no-floor", action="store_true",
                    help="leave out the floor legs (the bare uvloop relay and HAProxy)")
    ap.add_argument("--out", type=Path, help="results folder (default bench/results/<timestamp>)")
    ap.add_argument("--proxy-source", default="worktree", metavar="REF",
                    help="what proxy code to measure: 'worktree' (default: mysqlpool_proxy/ as it is at the start, "
                         "copied, so edits during the run do not leak in) or a git ref such as HEAD")
    ap.add_argument("--pure", action="store_true",
                    help="measure the pure-Python proxy (default: its hot path compiled with mypyc, as installed)")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="MINUTES",
                    help=f"on a shared machine: before starting, wait (up to MINUTES) until other processes use "
                         f"under {QUIET_CORES} cores for {QUIET_WINDOW:.0f}s, and before each round of legs "
                         f"until they do for {ROUND_WINDOW:.0f}s (up to {ROUND_WAIT_LIMIT / 60:.0f} min)")
    return ap


class Logger:
    def __init__(self, path: Path):
        self.path = path
        self.t0 = time.monotonic()

    def __call__(self, message: str) -> None:
        line = f"[{time.monotonic() - self.t0:7.1f}s] {message}"
        print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def main(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    selected = parse_only(opts.only)
    settings = Settings.quick_settings() if opts.quick else Settings()
    if opts.rounds is not None:
        settings.rounds = max(2, opts.rounds)
    if opts.workers is not None:
        settings.workers = opts.workers
    settings.floor = not opts.no_floor
    stamp = time.strftime("%Y%m%d-%H%M%S") + ("-quick" if opts.quick else "")
    out = opts.out or RESULTS / stamp
    out.mkdir(parents=True, exist_ok=True)
    log = Logger(out / "run.log")
    sysbench = sb.find_sysbench()
    if not sysbench:
        log("sysbench not found: the sysbench rows are skipped (bench/run.sh installs it with apt-get)")
    haproxy = find_haproxy() if settings.floor else None
    if settings.floor and not haproxy:
        log("haproxy not found: the HAProxy legs are skipped (bench/run.sh installs it with apt-get)")
    log(f"results go to {out}; workloads: {', '.join(selected)}")

    from bench.procs import snapshot_proxy_source, start_server

    source = snapshot_proxy_source(out / "proxy_src", opts.proxy_source, compiled=not opts.pure)
    log(f"proxy code: {source['source']} at {source['commit']}"
        f"{' + local changes' if source['modified'] else ''}, copied to {source['path']} ({source['build']})")
    if opts.wait_quiet > 0:
        wait_quiet(opts.wait_quiet * 60, log)
    started_wall = time.time()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    log(f"load average at start: {load_at_start}")
    log("starting a private MariaDB server")
    server = start_server(server_options(settings))
    machine = machine_info.describe(server.server_version(), sb.sysbench_version(sysbench))
    machine.update(proxy_source=source["source"], git_commit=source["commit"],
                   proxy_source_modified=source["modified"], proxy_version=source["version"],
                   proxy_build=source["build"],
                   haproxy=haproxy_version(haproxy) if haproxy else None)
    log(f"machine: {machine_info.one_line(machine)}")
    bench = Bench(settings, server, out, sysbench, log=log, proxy_source=out / "proxy_src", haproxy=haproxy)
    if opts.wait_quiet > 0:
        bench.quiet_gate = lambda: wait_quiet(ROUND_WAIT_LIMIT, log, ROUND_WINDOW, verbose=False)
    try:
        if set(selected) & {"point_sysbench", "workers", "point_python", "connect", "mixed"}:
            bench.prepare_point_table()
        for name in selected:
            log(f"== {name}")
            began = time.monotonic()
            try:
                run_workload(bench, name, selected)
            except Exception as exc:  # recorded; the other workloads still run
                bench.fail(name, "workload", exc)
                bench.raw.setdefault("tracebacks", []).append(traceback.format_exc())
            log(f"   {name} took {time.monotonic() - began:.0f}s")
    except KeyboardInterrupt:
        bench.fail("run", "interrupted", "KeyboardInterrupt / SIGTERM: partial results")
    finally:
        log("stopping the server")
        server.close()
    results = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started_wall)),
        "duration_s": round(time.time() - started_wall, 1),
        "command": " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])]),
        "workloads": selected,
        "settings": dataclasses.asdict(settings),
        "machine": machine,
        "proxy_source": source,
        "rows": [r.to_json() for r in bench.rows],
        "targets": summary_counts(bench.rows),
        "failures": bench.failures,
        "noise": bench.noise,
        "floor": bench.floor,
        "loadavg_at_start": load_at_start,
        "raw": bench.raw,
        "series": bench.series,
    }
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "results.md").write_text(render_results_md(results, bench.rows))
    try:
        from bench.plots import make_plots

        for path in make_plots(results, out):
            log(f"plot: {path}")
    except ImportError as exc:
        log(f"no plots ({exc}); pip install -e '.[bench]'")
    print()
    print(render_text(bench.rows))
    counts = results["targets"]
    log(f"targets: {counts['met']} met, {counts['missed']} missed, {counts['unknown']} not evaluated; "
        f"{len(bench.failures)} failure(s); {results['duration_s']:.0f}s; {out / 'results.md'}")
    return 1 if bench.failures else 0


def wait_quiet(limit: float, log, window: float = QUIET_WINDOW, verbose: bool = True) -> bool:
    """Wait until other processes use under QUIET_CORES for `window` seconds (True), or `limit` s pass."""
    from bench.procs import cpu_snapshot, cpu_used

    deadline = time.monotonic() + limit
    waited = False
    while True:
        before = cpu_snapshot()
        time.sleep(window)
        cores = cpu_used(before, cpu_snapshot()).get("foreign", 0.0) / window
        if cores < QUIET_CORES:
            if verbose or waited:
                log(f"  machine quiet: other processes used {cores:.2f} cores over {window:.0f}s")
            return True
        if time.monotonic() >= deadline:
            log(f"  still busy ({cores:.2f} cores used by other processes); going on anyway")
            return False
        if not waited or verbose:
            log(f"  waiting for a quiet machine: other processes use {cores:.2f} cores")
        waited = True


def run_workload(bench: Bench, name: str, selected: list[str]) -> None:
    s = bench.settings
    if name == "point_sysbench":
        bench.point_sysbench(workers=s.workers if "workers" in selected else 0)
    elif name == "workers":
        if "point_sysbench" not in selected:  # else it ran as a third leg of point_sysbench
            bench.point_sysbench(clients=tuple(n for n in s.point_clients if n >= 32) or (32,), workers=s.workers,
                                 floor=False)
    elif name == "point_python":
        bench.point_python()
    elif name == "connect":
        bench.connect()
    elif name == "idle":
        bench.idle()
    elif name == "large":
        bench.large()
    elif name == "mixed":
        bench.mixed()
    else:  # pragma: no cover - parse_only rejects it
        raise ValueError(name)


def render_results_md(results: dict, rows: list[Row]) -> str:
    m = results["machine"]
    lines = [
        f"# mysqlpool-proxy benchmark, {results['started']}",
        "",
        f"Command: `{results['command']}` ({results['duration_s']:.0f}s). Proxy, server and load generator "
        f"share the same {m.get('cores')} cores, so the ratios are conservative.",
        "",
        render_markdown(rows, machine_info.one_line(m)),
    ]
    counts = results["targets"]
    lines.append(f"Targets: {counts['met']} met, {counts['missed']} missed, {counts['unknown']} not evaluated.")
    lines += ["", noise_summary(results.get("noise", []), results.get("loadavg_at_start"))]
    floor = render_floor(results.get("floor", []), results.get("noise", []))
    if floor:
        intro = FLOOR_INTRO if m.get("haproxy") else FLOOR_INTRO + " HAProxy was not installed: no HAProxy legs."
        lines += ["", "## The floor: a bare relay and HAProxy beside the proxy", "", intro, "", floor]
    cpu = render_cpu_table(results.get("noise", []))
    if cpu:
        lines += ["", "## Where the CPU went", "",
                  "Cores used on average during each leg (median over the rounds), by process. "
                  f"The machine has {m.get('cores')} cores.", "", cpu]
    if results["failures"]:
        lines += ["", "## Failures", ""]
        for f in results["failures"]:
            lines.append(f"- {f['workload']} / {f['what']}: {first_lines(f['error'])}")
    return "\n".join(lines) + "\n"


FLOOR_INTRO = (
    "The same load, in the same alternation, through a bare uvloop byte relay (bench/relay.py: one backend "
    "connection per client, no parsing) and through HAProxy in TCP mode (one thread). The relay is what any "
    "Python proxy pays to move the bytes; the proxy's CPU above it is its own work. Medians over the rounds; "
    "CPU per operation (query or connection) of the process in the middle and of mariadbd.")


def first_lines(text: str, n: int = 4) -> str:
    """The first n lines of an error, indented for a markdown list item (all of it is in results.json)."""
    lines = text.strip().splitlines()
    shown = "\n  ".join(lines[:n])
    return shown + (f"\n  (… {len(lines) - n} more lines in results.json)" if len(lines) > n else "")


def noise_summary(noise: list[dict], loadavg: list[float] | None) -> str:
    """One sentence on how quiet the machine was (other processes' CPU during the legs)."""
    text = f"Load average at start: {', '.join(f'{x:g}' for x in loadavg)}. " if loadavg else ""
    if not noise:
        return text + "No per-leg noise measurement."
    cores = sorted(n["foreign_cores"] for n in noise)
    noisy = [n for n in noise if n["foreign_cores"] > NOISY_CORES]
    text += (f"Other processes used {cores[len(cores) // 2]:.2f} cores (median over {len(noise)} legs, "
             f"max {cores[-1]:.2f}) while the bench ran")
    if noisy:
        text += f"; {len(noisy)} leg(s) above {NOISY_CORES} cores: " + ", ".join(
            f"{n['workload']} {n['leg']} r{n['round']} ({n['foreign_cores']:.2f})" for n in noisy[:8])
    return text + "."


if __name__ == "__main__":
    sys.exit(main())

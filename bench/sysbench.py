# sysbench, the C load generator: building its command lines and reading its
# report. Parsing is pure (tested in tests/unit/test_bench.py); running it is
# a plain subprocess call.
#
# The point-select and read/write runs use the stock Lua tests shipped with
# the Debian package (oltp_point_select, oltp_read_write); connect-per-request
# uses bench/connect_per_request.lua, which opens a connection, runs one
# point select and disconnects on every event.
#
# Latency: sysbench prints avg/max and one percentile (--percentile=99); the
# median comes from its histogram (--histogram=on), which lists
# "value | *** count" lines in milliseconds.
"""sysbench command lines and output parsing."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = [
    "SysbenchResult", "SysbenchError", "build_command", "parse_output", "parse_histogram",
    "histogram_percentile", "find_sysbench", "sysbench_version", "run", "CONNECT_SCRIPT",
]

CONNECT_SCRIPT = Path(__file__).resolve().parent / "connect_per_request.lua"


class SysbenchError(RuntimeError):
    """sysbench failed: exit status or a FATAL line; the message carries its output."""


@dataclass
class SysbenchResult:
    transactions: int = 0
    tps: float = 0.0
    queries: int = 0
    qps: float = 0.0
    ignored_errors: int = 0
    reconnects: int = 0
    total_time_s: float = 0.0
    events: int = 0
    latency_min_ms: float | None = None
    latency_avg_ms: float | None = None
    latency_max_ms: float | None = None
    latency_pct_ms: float | None = None  # the --percentile value (p99 here)
    percentile: int | None = None
    latency_p50_ms: float | None = None  # from the histogram, when printed
    histogram: list[tuple[float, int]] = field(default_factory=list)
    fatal: list[str] = field(default_factory=list)

    def to_json(self, with_histogram: bool = False) -> dict:
        data = asdict(self)
        if not with_histogram:
            data.pop("histogram")
        return data


_NUM = r"([0-9]+(?:\.[0-9]+)?)"
_PATTERNS = {
    "transactions": re.compile(rf"^\s*transactions:\s+(\d+)\s+\({_NUM} per sec\.\)", re.M),
    "queries": re.compile(rf"^\s*queries:\s+(\d+)\s+\({_NUM} per sec\.\)", re.M),
    "ignored_errors": re.compile(r"^\s*ignored errors:\s+(\d+)", re.M),
    "reconnects": re.compile(r"^\s*reconnects:\s+(\d+)", re.M),
    "total_time_s": re.compile(rf"^\s*total time:\s+{_NUM}s", re.M),
    "events": re.compile(r"^\s*total number of events:\s+(\d+)", re.M),
    "latency_min_ms": re.compile(rf"^\s*min:\s+{_NUM}\s*$", re.M),
    "latency_avg_ms": re.compile(rf"^\s*avg:\s+{_NUM}\s*$", re.M),
    "latency_max_ms": re.compile(rf"^\s*max:\s+{_NUM}\s*$", re.M),
    "latency_pct_ms": re.compile(rf"^\s*(\d+)th percentile:\s+{_NUM}\s*$", re.M),
}
_HIST_LINE = re.compile(rf"^\s*{_NUM}\s*\|[\s*]*?(\d+)\s*$")
_FATAL = re.compile(r"^.*\bFATAL:.*$", re.M)


def build_command(test: str, *, host: str, port: int, user: str, password: str, db: str,
                  threads: int = 1, seconds: float = 10, tables: int = 1, table_size: int = 100_000,
                  ps_mode: str = "disable", percentile: int = 99, histogram: bool = True,
                  action: str = "run", extra: list[str] | None = None, sysbench: str = "sysbench") -> list[str]:
    """The sysbench command line for `test` (a stock test name or a .lua path) and `action`."""
    cmd = [
        sysbench, str(test),
        f"--mysql-host={host}", f"--mysql-port={port}", f"--mysql-user={user}",
        f"--mysql-password={password}", f"--mysql-db={db}",
        f"--tables={tables}", f"--table-size={table_size}",
    ]
    if action == "run":
        cmd += [
            f"--threads={threads}", f"--time={max(1, round(seconds))}", "--events=0",
            f"--db-ps-mode={ps_mode}", "--report-interval=0", f"--percentile={percentile}",
            f"--histogram={'on' if histogram else 'off'}",
        ]
    elif action == "prepare":
        cmd += [f"--threads={threads}"]
    cmd += list(extra or [])
    cmd.append(action)
    return cmd


def parse_histogram(text: str) -> list[tuple[float, int]]:
    """(latency ms, count) pairs of sysbench's latency histogram, in the order printed."""
    out: list[tuple[float, int]] = []
    inside = False
    for line in text.splitlines():
        if "Latency histogram" in line:
            inside = True
            continue
        if not inside:
            continue
        m = _HIST_LINE.match(line)
        if m:
            out.append((float(m.group(1)), int(m.group(2))))
        elif line.strip().startswith("SQL statistics") or line.strip().startswith("General statistics"):
            break
    return out


def histogram_percentile(hist: list[tuple[float, int]], pct: float) -> float | None:
    """Nearest-rank percentile (ms) of a sysbench histogram."""
    total = sum(n for _, n in hist)
    if not total:
        return None
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile must be within 0..100, got {pct}")
    rank = max(1, -(-pct * total // 100))  # ceil without floats drifting
    seen = 0
    for value, n in sorted(hist):
        seen += n
        if seen >= rank:
            return value
    return sorted(hist)[-1][0]  # pragma: no cover - unreachable


def parse_output(text: str) -> SysbenchResult:
    """Read sysbench's final report (and its histogram, if printed)."""
    r = SysbenchResult()
    if m := _PATTERNS["transactions"].search(text):
        r.transactions, r.tps = int(m.group(1)), float(m.group(2))
    if m := _PATTERNS["queries"].search(text):
        r.queries, r.qps = int(m.group(1)), float(m.group(2))
    for name in ("ignored_errors", "reconnects", "events"):
        if m := _PATTERNS[name].search(text):
            setattr(r, name, int(m.group(1)))
    if m := _PATTERNS["total_time_s"].search(text):
        r.total_time_s = float(m.group(1))
    latency = text[text.find("Latency (ms):"):] if "Latency (ms):" in text else ""
    for name in ("latency_min_ms", "latency_avg_ms", "latency_max_ms"):
        if m := _PATTERNS[name].search(latency):
            setattr(r, name, float(m.group(1)))
    if m := _PATTERNS["latency_pct_ms"].search(latency):
        r.percentile, r.latency_pct_ms = int(m.group(1)), float(m.group(2))
    r.histogram = parse_histogram(text)
    r.latency_p50_ms = histogram_percentile(r.histogram, 50) if r.histogram else None
    r.fatal = [m.group(0).strip() for m in _FATAL.finditer(text)]
    return r


def find_sysbench() -> str | None:
    return shutil.which("sysbench")


def sysbench_version(path: str | None = None) -> str | None:
    path = path or find_sysbench()
    if not path:
        return None
    try:
        return subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def run(cmd: list[str], timeout: float, cwd: str | None = None) -> tuple[SysbenchResult, str]:
    """Run a sysbench command; (parsed result, full output). SysbenchError if it failed."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise SysbenchError(f"sysbench did not finish in {timeout:.0f}s: {' '.join(cmd)}") from exc
    output = done.stdout + ("\n" + done.stderr if done.stderr else "")
    result = parse_output(output)
    if done.returncode != 0 or result.fatal or (cmd[-1] == "run" and not result.events):
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise SysbenchError(f"sysbench exited {done.returncode}: {' '.join(_redact(cmd))}\n{tail}")
    return result, output


def _redact(cmd: list[str]) -> list[str]:
    return [a.split("=", 1)[0] + "=***" if a.startswith("--mysql-password=") else a for a in cmd]

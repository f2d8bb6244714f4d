# What the figures were measured on: cores, CPU model, memory, kernel, and
# the versions of everything in the path (Python, uvloop, drivers, MariaDB,
# sysbench, HAProxy, the proxy and its git commit). Every field is best effort.
"""Describe the machine and software a benchmark ran on."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _run(cmd: list[str]) -> str | None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=str(REPO))
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def describe(mariadb_version: str | None = None, sysbench_version: str | None = None) -> dict:
    dirty = _run(["git", "status", "--porcelain", "--", "mysqlpool_proxy"])
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _mem_total_gib(),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "uvloop": _version("uvloop"),
        "aiomysql": _version("aiomysql"),
        "pymysql": _version("PyMySQL"),
        "mariadb": mariadb_version,
        "sysbench": sysbench_version,
        "proxy_version": _version("mysqlpool-proxy"),
        "git_commit": _run(["git", "rev-parse", "--short=12", "HEAD"]),
        "proxy_source_modified": bool(dirty) if dirty is not None else None,
    }


def one_line(m: dict) -> str:
    """A one-line summary, for the table's heading."""
    parts = [
        f"{m.get('cores')} cores ({m.get('cpu_model')})",
        f"{m.get('memory_gib')} GiB RAM",
        f"{m.get('os')}, kernel {m.get('kernel')}",
        f"Python {m.get('python')}, uvloop {m.get('uvloop')}",
        f"MariaDB {m.get('mariadb')}",
    ]
    if m.get("sysbench"):
        parts.append(str(m["sysbench"]))
    if m.get("haproxy"):
        parts.append(str(m["haproxy"]))
    commit = m.get("git_commit")
    if commit:
        where = "" if m.get("proxy_source", "working tree") == "working tree" else f" ({m['proxy_source']})"
        build = f", {m['proxy_build']}" if m.get("proxy_build") else ""
        parts.append(f"proxy at {commit}{where}{' + local changes' if m.get('proxy_source_modified') else ''}{build}")
    return "; ".join(parts)

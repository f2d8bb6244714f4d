# PNG plots of a results.json (matplotlib, Agg backend: no display needed).
#
#   python -m bench.plots bench/results/<run>/results.json [--out DIR]
#
# point_select.png   throughput and p50/p99 latency per client count
# ratios.png         proxy/direct for every throughput-like row, with targets
# large_result.png   the proxy's RSS while streaming the large result
# idle_clients.png   RSS while 10,000 idle connections open
"""Plots of the benchmark results."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

MiB = 1024 * 1024
COLORS = {"direct": "#4c72b0", "proxy": "#dd8452", "proxy 2 workers": "#55a868"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _point_table(rows: list[dict], tool: str) -> dict[int, dict[str, dict]]:
    """clients -> leg -> metric -> value, for one load generator."""
    out: dict[int, dict[str, dict]] = {}
    pattern = re.compile(rf"^point select, {re.escape(tool)}, (\d+) clients?(, proxy workers = (\d+))?$")
    for r in rows:
        m = pattern.match(r["workload"])
        if not m or not r.get("available", True):
            continue
        n = int(m.group(1))
        legs = out.setdefault(n, {})
        if m.group(2):
            legs.setdefault("proxy 2 workers", {})[r["metric"]] = r["proxy"]
        else:
            legs.setdefault("direct", {})[r["metric"]] = r["direct"]
            legs.setdefault("proxy", {})[r["metric"]] = r["proxy"]
    return out


def plot_point_select(results: dict, path: Path) -> bool:
    rows = results["rows"]
    tools = [t for t in ("sysbench", "Python/aiomysql") if _point_table(rows, t)]
    if not tools:
        return False
    plt = _plt()
    fig, axes = plt.subplots(2, len(tools), figsize=(6.5 * len(tools), 8), squeeze=False)
    for col, tool in enumerate(tools):
        table = _point_table(rows, tool)
        clients = sorted(table)
        legs = [leg for leg in COLORS if any(leg in table[n] for n in clients)]
        width = 0.8 / len(legs)
        ax = axes[0][col]
        for i, leg in enumerate(legs):
            xs = [c + (i - (len(legs) - 1) / 2) * width for c in range(len(clients))]
            ys = [table[n].get(leg, {}).get("throughput") or 0 for n in clients]
            ax.bar(xs, ys, width, label=leg, color=COLORS[leg])
        ax.set_xticks(range(len(clients)), [f"{n} clients" for n in clients])
        ax.set_ylabel("queries/s")
        ax.set_title(f"Point selects, {tool}: throughput")
        ax.legend()
        ax = axes[1][col]
        latency_legs = [leg for leg in ("direct", "proxy") if leg in legs]
        for i, leg in enumerate(latency_legs):
            for j, (metric, hatch) in enumerate((("latency p50", ""), ("latency p99", "//"))):
                k = i * 2 + j
                xs = [c + (k - 1.5) * 0.2 for c in range(len(clients))]
                ys = [table[n].get(leg, {}).get(metric) or 0 for n in clients]
                ax.bar(xs, ys, 0.2, color=COLORS[leg], hatch=hatch, edgecolor="white",
                       label=f"{leg} {metric.split()[-1]}")
        ax.set_xticks(range(len(clients)), [f"{n} clients" for n in clients])
        ax.set_yscale("log")
        ax.set_ylabel("ms (log scale)")
        ax.set_title(f"Point selects, {tool}: latency p50 / p99")
        ax.legend(fontsize=8)
    fig.suptitle(_machine_title(results), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


THROUGHPUT_METRICS = ("throughput", "requests/s", "rows/s", "transactions/s")


def plot_ratios(results: dict, path: Path) -> bool:
    rows = [r for r in results["rows"] if r["metric"] in THROUGHPUT_METRICS and r.get("ratio") is not None
            and "slow client" not in r["workload"]]
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.5))
    labels = [r["workload"] for r in rows]
    ratios = [r["ratio"] for r in rows]
    colors = []
    for r in rows:
        met = r.get("met")
        colors.append("#55a868" if met else "#c44e52" if met is False else "#8c8c8c")
    ys = range(len(rows))
    ax.barh(ys, ratios, color=colors)
    for y, r in zip(ys, rows):
        t = r.get("target")
        if t and t["kind"] == "ratio_min":
            ax.plot([t["value"], t["value"]], [y - 0.4, y + 0.4], color="black", linewidth=2)
        ax.text(r["ratio"] + 0.01, y, f"{r['ratio']:.2f}", va="center", fontsize=8)
    ax.axvline(1.0, color="#444", linestyle=":", linewidth=1)
    ax.set_yticks(list(ys), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("proxy / direct (higher is better; black tick = target; green met, red missed, grey no target)")
    ax.set_title("Proxy vs direct, throughput-like metrics")
    fig.suptitle(_machine_title(results), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def plot_large_result(results: dict, path: Path) -> bool:
    series = results.get("series", {})
    runs = [(kind, s) for kind in ("large_fast", "large_cli", "large_slow") for s in series.get(kind, [])[:1]]
    if not runs:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    names = {"large_fast": "PyMySQL, full speed", "large_cli": "mariadb --quick", "large_slow": "slow client"}
    for kind, samples in runs:
        ax.plot([t for t, _ in samples], [rss / MiB for _, rss in samples], label=names[kind])
    large = results.get("raw", {}).get("large", {})
    base, buf = large.get("baseline_rss"), large.get("result_buffer_bytes")
    if base and buf:
        ax.axhline(base / MiB, color="#888", linestyle=":", linewidth=1, label="RSS before")
        ax.axhline((base + buf) / MiB, color="#c44e52", linestyle="--", linewidth=1,
                   label="before + result_buffer_bytes")
    ax.set_xlabel("seconds")
    ax.set_ylabel("proxy RSS (MiB)")
    ax.set_title("Proxy memory while streaming the large result")
    ax.legend(fontsize=8)
    fig.suptitle(_machine_title(results), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def plot_idle(results: dict, path: Path) -> bool:
    series = results.get("series", {})
    proxy = series.get("idle_proxy", [])
    direct = series.get("idle_direct", [])
    if not proxy and not direct:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for samples, label, color in ((proxy[:1], "proxy (Python process)", COLORS["proxy"]),
                                  (direct[:1], "mariadbd (direct)", COLORS["direct"])):
        for s in samples:
            base = s[0][1]
            ax.plot([t for t, _ in s], [(rss - base) / MiB for _, rss in s], label=label, color=color)
    ax.set_xlabel("seconds since the connections started opening")
    ax.set_ylabel("RSS growth (MiB)")
    ax.set_title("Memory while idle connections open")
    ax.legend(fontsize=8)
    fig.suptitle(_machine_title(results), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _machine_title(results: dict) -> str:
    m = results.get("machine", {})
    return f"{m.get('cores')} cores, {m.get('cpu_model')}; proxy, server and load generator share them"


PLOTS = {
    "point_select.png": plot_point_select,
    "ratios.png": plot_ratios,
    "large_result.png": plot_large_result,
    "idle_clients.png": plot_idle,
}


def make_plots(results: dict, out: Path) -> list[Path]:
    """Every plot the results have data for; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fn in PLOTS.items():
        if fn(results, out / name):
            written.append(out / name)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("results", type=Path, help="a results.json")
    ap.add_argument("--out", type=Path, help="folder for the PNGs (default: beside results.json)")
    opts = ap.parse_args(argv)
    results = json.loads(opts.results.read_text())
    for path in make_plots(results, opts.out or opts.results.parent):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

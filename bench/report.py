# The results table: one Row per (workload, metric) with the direct and
# proxied medians, their ratio, the target for it (if any) and
# whether it is met. Pure code (tested in tests/unit/test_bench.py): it never
# measures anything and never looks at a clock.
#
# Targets come in three kinds:
#   ratio_min   proxy / direct >= value    (throughput-like metrics)
#   delta_max   proxy - direct <= value    (added latency, in the row's unit)
#   proxy_max   proxy <= value             (a bound on the proxy alone)
#
# The floor tables (render_floor) put the bare relay and HAProxy legs beside
# direct and proxy for the same load: each leg's throughput, latency and CPU
# per operation (from the per-leg CPU accounting in results.json "noise"),
# then the proxy's CPU over the relay's and HAProxy's, mariadbd's CPU through
# the proxy over through the relay, and throughput against HAProxy, each
# against the target where it sets one (a load's "targets").
"""Result rows, target evaluation and table rendering."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.stats import median

__all__ = ["Target", "Row", "FloorLeg", "fmt_value", "render_markdown", "render_text", "summary_counts",
           "render_cpu_table", "render_floor", "floor_legs", "floor_comparisons", "judge"]

KINDS = ("ratio_min", "delta_max", "proxy_max")


@dataclass(frozen=True)
class Target:
    kind: str
    value: float
    unit: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown target kind {self.kind!r}; one of {', '.join(KINDS)}")

    def describe(self) -> str:
        if self.kind == "ratio_min":
            return f"≥ {self.value:g} × direct"
        if self.kind == "delta_max":
            return f"≤ +{self.value:g} {self.unit}".rstrip()
        return f"≤ {self.value:g} {self.unit}".rstrip()

    def to_json(self) -> dict:
        return {"kind": self.kind, "value": self.value, "unit": self.unit, "text": self.describe()}


@dataclass
class Row:
    workload: str
    metric: str
    unit: str
    direct: float | None = None
    proxy: float | None = None
    target: Target | None = None
    note: str = ""
    samples: dict[str, list[Any]] = field(default_factory=dict)
    available: bool = True

    @classmethod
    def from_samples(cls, workload: str, metric: str, unit: str, direct: list[float], proxy: list[float],
                     **kwargs) -> Row:
        """A row whose values are the medians of the samples (all kept)."""
        return cls(workload, metric, unit, median(direct), median(proxy),
                   samples={"direct": list(direct), "proxy": list(proxy)}, **kwargs)

    @property
    def ratio(self) -> float | None:
        if self.direct is None or self.proxy is None or self.direct == 0:
            return None
        return self.proxy / self.direct

    @property
    def delta(self) -> float | None:
        if self.direct is None or self.proxy is None:
            return None
        return self.proxy - self.direct

    def met(self) -> bool | None:
        """True/False against the target; None without a target or without the numbers."""
        t = self.target
        if t is None or not self.available:
            return None
        if t.kind == "ratio_min":
            return None if self.ratio is None else self.ratio >= t.value
        if t.kind == "delta_max":
            return None if self.delta is None else self.delta <= t.value
        return None if self.proxy is None else self.proxy <= t.value

    def verdict(self) -> str:
        """'yes', 'no (…)' with how far off, '—' (no target) or 'n/a'."""
        t = self.target
        if not self.available:
            return "n/a"
        if t is None:
            return "—"
        met = self.met()
        if met is None:
            return "n/a"
        if t.kind == "ratio_min":
            actual, need = self.ratio, t.value
            gap = f"{actual:.2f} vs {need:g}"
        elif t.kind == "delta_max":
            actual, need = self.delta, t.value
            gap = f"+{actual:.3g} vs +{need:g} {t.unit}".rstrip()
        else:
            actual, need = self.proxy, t.value
            gap = f"{actual:.3g} vs {need:g} {t.unit}".rstrip()
        if met:
            return f"yes ({gap})"
        if t.kind == "ratio_min":
            short = (need - actual) / need * 100
            return f"**no** ({gap}: {short:.0f}% short)"
        over = (actual - need) / need * 100 if need else float("inf")
        return f"**no** ({gap}: {over:.0f}% over)"

    def to_json(self) -> dict:
        return {
            "workload": self.workload, "metric": self.metric, "unit": self.unit,
            "direct": self.direct, "proxy": self.proxy, "ratio": self.ratio,
            "target": self.target.to_json() if self.target else None,
            "met": self.met(), "verdict": self.verdict(), "available": self.available,
            "note": self.note, "samples": self.samples,
        }

    @classmethod
    def from_json(cls, data: dict) -> Row:
        t = data.get("target")
        return cls(data["workload"], data["metric"], data["unit"], data.get("direct"), data.get("proxy"),
                   target=Target(t["kind"], t["value"], t.get("unit", "")) if t else None,
                   note=data.get("note", ""), samples=data.get("samples", {}),
                   available=data.get("available", True))


def fmt_value(value: float | None, unit: str = "") -> str:
    """A number for the table: thousands separators for big ones, 2-3 significant digits for small."""
    if value is None:
        return "n/a"
    a = abs(value)
    if a >= 1000:
        text = f"{value:,.0f}"
    elif a >= 100:
        text = f"{value:.0f}"
    elif a >= 10:
        text = f"{value:.1f}"
    elif a >= 1:
        text = f"{value:.2f}"
    elif a == 0:
        text = "0"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".rstrip() if unit else text


def fmt_ratio(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(rows: list[Row], machine_line: str = "", title: str = "") -> str:
    """The results table (GitHub markdown), then the rows' notes."""
    out = []
    if title:
        out += [f"### {title}", ""]
    if machine_line:
        out += [f"Machine: {machine_line}", ""]
    out.append("| Workload | Metric | Direct | Proxy | Proxy/direct | Target | Met? |")
    out.append("|---|---|--:|--:|--:|---|---|")
    notes = []
    for row in rows:
        workload = row.workload
        if row.note:
            notes.append(row)
            workload += f" [{len(notes)}]"
        out.append("| " + " | ".join(_cell(c) for c in (
            workload, row.metric, fmt_value(row.direct, row.unit), fmt_value(row.proxy, row.unit),
            fmt_ratio(row.ratio), row.target.describe() if row.target else "—", row.verdict())) + " |")
    if notes:
        out.append("")
        for i, row in enumerate(notes, 1):
            out.append(f"[{i}] {row.workload}, {row.metric}: {row.note}")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def render_text(rows: list[Row]) -> str:
    """A plain fixed-width table for the terminal."""
    header = ("workload", "metric", "direct", "proxy", "ratio", "target", "met?")
    body = [(r.workload, r.metric, fmt_value(r.direct, r.unit), fmt_value(r.proxy, r.unit), fmt_ratio(r.ratio),
             r.target.describe() if r.target else "-", r.verdict().replace("**", "")) for r in rows]
    widths = [max(len(str(x[i])) for x in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in body]
    return "\n".join(lines) + "\n"


def summary_counts(rows: list[Row]) -> dict[str, int]:
    """How many targets are met, missed, and could not be evaluated."""
    counts = {"met": 0, "missed": 0, "unknown": 0}
    for row in rows:
        if row.target is None:
            continue
        met = row.met()
        counts["met" if met else "missed" if met is False else "unknown"] += 1
    return counts


CPU_CATEGORIES = ("server", "middle", "loadgen", "harness", "kernel")


def middle_category(leg: str) -> str:
    """The CPU category of the process between client and server in a leg: the proxy (also for
    "proxy_2w" and, idle, for "direct"), the bare relay or HAProxy."""
    return leg if leg in ("relay", "haproxy") else "proxy"


def render_cpu_table(legs: list[dict]) -> str:
    """Where the CPU went: median cores per process kind for each workload and leg, and CPU
    microseconds per operation (query, request or row) of the server and of the leg's middle
    process (the proxy, the bare relay or HAProxy)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for leg in legs:
        groups.setdefault((leg["workload"], leg["leg"]), []).append(leg)
    if not groups:
        return ""
    out = ["| Workload | Leg | mariadbd | proxy or relay | load generator | harness | kernel threads "
           "| other processes | mariadbd µs/op | proxy or relay µs/op |",
           "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for (workload, leg), items in groups.items():
        middle = middle_category(leg)
        kinds = [middle if c == "middle" else c for c in CPU_CATEGORIES]
        cells = [median([i.get("cores", {}).get(c, 0.0) for i in items]) for c in kinds]
        cells.append(median([i.get("foreign_cores", 0.0) for i in items]))
        text = [f"{c:.2f}" for c in cells]
        for who in ("server", middle):
            per_op = median([i["us_per_op"].get(who, 0.0) for i in items if "us_per_op" in i])
            idle_middle = who == middle and (leg == "direct" or not per_op)  # a proxy may idle meanwhile
            text.append("—" if per_op is None or idle_middle else f"{per_op:.3g}")
        out.append(f"| {_cell(workload)} | {_cell(leg)} | " + " | ".join(text) + " |")
    return "\n".join(out) + "\n"


# -- the floor: direct, bare relay, HAProxy and proxy side by side ----------------------------------

FLOOR_LEG_NAMES = {"direct": "direct", "relay": "bare relay", "haproxy": "HAProxy", "proxy": "proxy"}

# The comparisons under the floor table: (key, what, numerator (leg, figure), denominator or None).
# A load's "targets" maps a key to ("max" | "min", limit) (the performance issue's targets).
FLOOR_COMPARISONS = (
    ("proxy_cpu_vs_relay", "proxy CPU / bare relay CPU, per operation", ("proxy", "middle_us"),
     ("relay", "middle_us")),
    ("proxy_cpu_vs_haproxy", "proxy CPU / HAProxy CPU, per operation", ("proxy", "middle_us"),
     ("haproxy", "middle_us")),
    ("server_cpu_vs_relay", "mariadbd CPU per operation, through the proxy / through the bare relay",
     ("proxy", "server_us"), ("relay", "server_us")),
    ("throughput_vs_haproxy", "throughput, proxy / HAProxy", ("proxy", "throughput"), ("haproxy", "throughput")),
    ("throughput_vs_direct", "throughput, proxy / direct", ("proxy", "throughput"), ("direct", "throughput")),
    ("proxy_us", "proxy CPU per operation (µs)", ("proxy", "middle_us"), None),
)
SHOWN_ONLY_WITH_A_TARGET = frozenset({"throughput_vs_direct", "proxy_us"})


@dataclass
class FloorLeg:
    """One leg of a floor load, as medians over its rounds."""

    leg: str
    rounds: int
    throughput: float | None
    latency_avg_ms: float | None
    latency_p99_ms: float | None
    middle_us: float | None  # CPU µs per operation of the proxy, the relay or HAProxy (None for direct)
    server_us: float | None  # CPU µs per operation of mariadbd


def floor_legs(load: dict, noise: list[dict]) -> dict[str, FloorLeg]:
    """The legs of one floor load: medians of its samples, CPU per operation from the noise entries
    the harness recorded for the same workload and leg."""
    out = {}
    for leg in FLOOR_LEG_NAMES:
        samples = load["legs"].get(leg)
        if samples is None:
            continue
        entries = [n for n in noise if n["workload"] == load["workload"] and n["leg"] == leg and "us_per_op" in n]
        middle = None if leg == "direct" else median([n["us_per_op"].get(middle_category(leg)) for n in entries])
        out[leg] = FloorLeg(leg, len(samples), median([s.get("qps") for s in samples]),
                            median([s.get("avg_ms") for s in samples]), median([s.get("p99_ms") for s in samples]),
                            middle, median([n["us_per_op"].get("server") for n in entries]))
    return out


def _floor_figure(legs: dict[str, FloorLeg], ref: tuple[str, str] | None) -> float | None:
    if ref is None:
        return 1.0
    leg = legs.get(ref[0])
    return None if leg is None else getattr(leg, ref[1])


def floor_comparisons(load: dict, legs: dict[str, FloorLeg]) -> list[tuple[str, str, float | None, tuple | None]]:
    """(key, what, value, target) for each comparison the load's legs allow (a leg left out: none)."""
    targets = load.get("targets", {})
    out = []
    for key, what, num, den in FLOOR_COMPARISONS:
        if num[0] not in legs or (den is not None and den[0] not in legs):
            continue
        if key in SHOWN_ONLY_WITH_A_TARGET and key not in targets:
            continue  # the figure is in the legs table already
        a, b = _floor_figure(legs, num), _floor_figure(legs, den)
        value = None if a is None or not b else a / b
        target = targets.get(key)
        out.append((key, what, value, tuple(target) if target else None))
    return out


def judge(value: float | None, target: tuple | None) -> tuple[str, str]:
    """(the target as text, the verdict) of a value against ("max" | "min", limit)."""
    if target is None:
        return "—", "—"
    kind, limit = target
    text = f"≤ {limit:g}" if kind == "max" else f"≥ {limit:g}"
    if value is None:
        return text, "n/a"
    met = value <= limit if kind == "max" else value >= limit
    if met:
        return text, f"yes ({value:.3g} vs {limit:g})"
    off = (value - limit) / limit * 100 if kind == "max" else (limit - value) / limit * 100
    return text, f"**no** ({value:.3g} vs {limit:g}: {off:.0f}% {'over' if kind == 'max' else 'short'})"


def render_floor(floor: list[dict], noise: list[dict]) -> str:
    """The floor tables: each leg's throughput, latency and CPU per operation, then the proxy
    against the bare relay and HAProxy (with the issue's targets where it sets one)."""
    if not floor:
        return ""
    out = ["| Load | Leg | Throughput | × direct | Latency avg | Latency p99 | proxy/relay/HAProxy CPU µs/op "
           "| mariadbd CPU µs/op |",
           "|---|---|--:|--:|--:|--:|--:|--:|"]
    comparisons = ["| Load | Comparison | Value | Target | Met? |", "|---|---|--:|---|---|"]
    for load in floor:
        legs = floor_legs(load, noise)
        direct = legs.get("direct")
        unit = load.get("unit", "q/s")
        for leg in legs.values():
            ratio = (leg.throughput / direct.throughput if direct and direct.throughput and leg.throughput
                     else None)
            cells = [load["load"], FLOOR_LEG_NAMES[leg.leg], fmt_value(leg.throughput, unit), fmt_ratio(ratio),
                     fmt_value(leg.latency_avg_ms, "ms"), fmt_value(leg.latency_p99_ms, "ms"),
                     "—" if leg.middle_us is None else f"{leg.middle_us:.3g}",
                     "n/a" if leg.server_us is None else f"{leg.server_us:.3g}"]
            out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        for key, what, value, target in floor_comparisons(load, legs):
            text, verdict = judge(value, target)
            shown = fmt_value(value) if key == "proxy_us" else fmt_ratio(value)
            comparisons.append("| " + " | ".join(_cell(c) for c in (load["load"], what, shown, text, verdict)) + " |")
    return "\n".join(out) + "\n\n" + "\n".join(comparisons) + "\n"

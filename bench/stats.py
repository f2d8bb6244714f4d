# Small statistics helpers of the benchmark, pure and dependency-free so the
# load generator (a separate process) and the unit tests can use them.
#
# LatencyHistogram keeps latencies in log-spaced buckets (1% wide), so a
# load generator can record millions of samples in a few kilobytes, several
# processes' histograms can be merged, and percentiles are exact to within
# the bucket width.
"""Histograms, percentiles and medians for the benchmark."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

__all__ = ["LatencyHistogram", "median", "percentile"]

# Relative bucket width: a latency is reported within 1% of its true value.
GROWTH = 1.01
_LOG_GROWTH = math.log(GROWTH)
# Latencies are stored in microseconds; anything below 1 µs goes to bucket 0.
_MIN_US = 1.0


def median(values: Iterable[float]) -> float | None:
    """The median of the values, None for none (not statistics.median: no exception)."""
    data = sorted(v for v in values if v is not None)
    if not data:
        return None
    mid = len(data) // 2
    if len(data) % 2:
        return float(data[mid])
    return (data[mid - 1] + data[mid]) / 2.0


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of already sorted values (pct in 0..100)."""
    if not sorted_values:
        return None
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile must be within 0..100, got {pct}")
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return float(sorted_values[rank - 1])


class LatencyHistogram:
    """Log-bucketed latency histogram (microsecond resolution, 1% bucket width)."""

    __slots__ = ("buckets", "count", "total_us")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total_us = 0.0

    @staticmethod
    def bucket_of(us: float) -> int:
        if us <= _MIN_US:
            return 0
        return int(math.log(us / _MIN_US) / _LOG_GROWTH) + 1

    @staticmethod
    def bucket_value(index: int) -> float:
        """The representative latency (µs) of a bucket: its geometric middle."""
        if index <= 0:
            return _MIN_US
        low = _MIN_US * GROWTH ** (index - 1)
        return low * math.sqrt(GROWTH)

    def add(self, seconds: float) -> None:
        us = seconds * 1e6
        b = self.bucket_of(us)
        self.buckets[b] = self.buckets.get(b, 0) + 1
        self.count += 1
        self.total_us += us

    def merge(self, other: LatencyHistogram) -> None:
        for b, n in other.buckets.items():
            self.buckets[b] = self.buckets.get(b, 0) + n
        self.count += other.count
        self.total_us += other.total_us

    def percentile_ms(self, pct: float) -> float | None:
        """The pct-th percentile in milliseconds (nearest rank over buckets)."""
        if not self.count:
            return None
        if not 0 <= pct <= 100:
            raise ValueError(f"percentile must be within 0..100, got {pct}")
        rank = max(1, math.ceil(pct / 100.0 * self.count))
        seen = 0
        for b in sorted(self.buckets):
            seen += self.buckets[b]
            if seen >= rank:
                return self.bucket_value(b) / 1000.0
        return self.bucket_value(max(self.buckets)) / 1000.0  # pragma: no cover - unreachable

    def mean_ms(self) -> float | None:
        return self.total_us / self.count / 1000.0 if self.count else None

    def to_json(self) -> dict:
        return {"count": self.count, "total_us": self.total_us,
                "buckets": {str(b): n for b, n in sorted(self.buckets.items())}}

    @classmethod
    def from_json(cls, data: Mapping) -> LatencyHistogram:
        h = cls()
        h.count = int(data.get("count", 0))
        h.total_us = float(data.get("total_us", 0.0))
        h.buckets = {int(b): int(n) for b, n in data.get("buckets", {}).items()}
        return h

"""Fixed-bucket histograms cheap enough for the relay's hot path.

A `Histogram` is a list of ints, one per bucket bound plus one for the
overflow, and a running sum. `observe()` finds the bucket with
`bucket_of()` (a value equal to a bound counts in that bound's bucket, as
Prometheus's `le` does: what `bisect_left` gives) and adds one; nothing else
runs. `bucket_of()` walks the bounds from the lowest: most values fall in the
first buckets (a point select's duration, a checkout that did not wait), and
compiled, the walk compares unboxed floats where a call of `bisect_left`
would box the value and compare objects. The metrics collector turns the counts into cumulative `le`
buckets when Prometheus scrapes (`cumulative()`). Pure: no I/O, no clock;
the caller measures and passes seconds.

The bucket bounds below are the ones the proxy records with; changing one
changes the exported `le` labels, so dashboards' quantiles move with it.
"""

from __future__ import annotations

__all__ = ["PING_BUCKETS", "QUERY_BUCKETS", "TRANSACTION_BUCKETS", "Histogram", "bucket_of"]

# A statement on the server: a point select takes ~0.2 ms, a report seconds.
QUERY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# BEGIN to COMMIT / ROLLBACK: a web request's few ms up to a batch job's minutes.
TRANSACTION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                       900.0)
# A COM_PING round trip: LAN sub-millisecond, a loaded or distant server more.
PING_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


def bucket_of(bounds: tuple[float, ...], value: float) -> int:
    """The index of the first bound >= `value` (len(bounds) past the last): bisect_left's answer."""
    i = 0
    for bound in bounds:
        if value <= bound:
            return i
        i += 1
    return i


class Histogram:
    """Counts per bucket (`counts[i]`: values <= bounds[i] and > bounds[i-1]; the last: above all) and a sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        assert list(bounds) == sorted(set(bounds)), "bounds must be increasing"
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bucket_of(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, values at or below it) per bucket, the last bound infinite: Prometheus's `le`."""
        out, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            running += count
            out.append((bound, running))
        return out

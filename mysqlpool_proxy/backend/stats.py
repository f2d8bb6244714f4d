"""A pool's counters: plain numbers and histograms, bumped where things happen, read at scrape time.

`PoolStats` is bumped by the pool's parts (checkouts and waits by the queue,
connects by the connector, closes by the pool, pings by the upkeep) and by
the client connection (queries, transactions, pins, bytes, their timings).
Nothing here does I/O or knows about Prometheus: ops/metrics.py reads it.
"""

from __future__ import annotations

from collections import Counter
from typing import Final

from ..core.histogram import PING_BUCKETS, QUERY_BUCKETS, TRANSACTION_BUCKETS, Histogram, bucket_of

__all__ = ["PoolStats", "WAIT_BUCKETS"]

WAIT_BUCKETS: Final[tuple[float, ...]] = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PoolStats:
    """Plain counters, read by the metrics collector at scrape time."""

    __slots__ = (
        "connects", "connect_errors", "closed", "checkouts", "wait_count", "wait_sum", "wait_buckets",
        "queries", "transactions", "pins", "query_time", "transaction_time", "ping_time", "bytes_in", "bytes_out",
    )

    def __init__(self) -> None:
        self.connects = 0
        self.connect_errors: Counter = Counter()  # error code -> count
        self.closed: Counter = Counter()  # BackendCloseReason value -> count
        self.checkouts = 0
        self.wait_count = 0
        self.wait_sum = 0.0
        self.wait_buckets: list[int] = [0] * (len(WAIT_BUCKETS) + 1)
        self.queries: dict[str, int] = {}  # command name -> count (count_query(); a plain dict: once per command)
        self.transactions = 0
        self.pins: Counter = Counter()  # PinReason value -> times a client got pinned
        # Recorded by ClientConnection where it counts queries and transactions, and by the pool's pings.
        self.query_time = Histogram(QUERY_BUCKETS)  # a relayed command: sent to the server -> response done
        self.transaction_time = Histogram(TRANSACTION_BUCKETS)  # the statement opening it -> the one ending it
        self.ping_time = Histogram(PING_BUCKETS)  # COM_PING round trips: keepalive and health probe
        self.bytes_in = 0  # from the pool's logged-in clients
        self.bytes_out = 0  # relayed from its backends to its clients

    def observe_wait(self, seconds: float) -> None:
        self.wait_count += 1
        self.wait_sum += seconds
        self.wait_buckets[bucket_of(WAIT_BUCKETS, seconds)] += 1  # past the last bound: the +Inf bucket

    def count_query(self, command: str) -> None:
        """A client command completed (`command`: its name, as CommandSpec.name)."""
        queries = self.queries
        queries[command] = queries.get(command, 0) + 1

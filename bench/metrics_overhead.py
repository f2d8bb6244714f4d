# What counting costs: plain counters in the proxy's own objects, read by a
# custom collector at scrape time (what mysqlpool_proxy.metrics does), versus
# prometheus-client metrics touched on every query.
#
# Part 1 times, per query, the bookkeeping the hot path does (a command
# counter, the byte counters, the checkout-wait histogram, the query-duration
# histogram) three ways: plain ints/Counters and core.histogram; prometheus-
# client with .labels(...) looked up each time; and prometheus-client
# children bound once. Part 2 times one scrape (collect +
# text exposition) of the real ProxyCollector with 0 to 10,000 connected
# clients, since the collector walks the clients for the per-state and
# pinned-client gauges. Everything runs in-process; nothing connects.
#
#   .venv/bin/python bench/metrics_overhead.py [--quick]
"""Benchmark: per-query metric bookkeeping and scrape cost."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import timeit
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import (
    CollectorRegistry,
    Counter as PromCounter,
    Histogram as PromHistogram,
)
from prometheus_client.exposition import generate_latest

from mysqlpool_proxy.backend.pool import WAIT_BUCKETS, PoolStats
from mysqlpool_proxy.client.connection import ClientState
from mysqlpool_proxy.config import load_config
from mysqlpool_proxy.constants import SERVER_STATUS
from mysqlpool_proxy.core.histogram import QUERY_BUCKETS
from mysqlpool_proxy.ops.metrics import build_registry
from mysqlpool_proxy.proxy.proxy import Proxy

# -- part 1: per query ------------------------------------------------------------------

class PlainStats:
    __slots__ = ("bytes_in", "bytes_out")

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0


def per_query_cases() -> dict[str, callable]:
    pool_stats, proxy_stats = PoolStats(), PlainStats()
    registry = CollectorRegistry(auto_describe=False)
    queries = PromCounter("q", "q", ["pool", "command"], registry=registry)
    traffic = PromCounter("b", "b", ["direction"], registry=registry)
    waits = PromHistogram("w", "w", ["pool"], buckets=WAIT_BUCKETS, registry=registry)
    bound_query = queries.labels("app", "query")
    bound_in, bound_out = traffic.labels("client_to_backend"), traffic.labels("backend_to_client")
    bound_wait = waits.labels("app")
    plain_int = PlainStats()
    plain_counter: Counter = Counter()

    def plain_query() -> None:
        pool_stats.queries["query"] += 1
        proxy_stats.bytes_in += 40
        proxy_stats.bytes_out += 200
        pool_stats.checkouts += 1
        pool_stats.observe_wait(0.0)

    query_time = pool_stats.query_time
    loop = asyncio.new_event_loop()
    clock = loop.time

    def plain_query_with_durations() -> None:
        # What ClientConnection does since the duration histograms: the above, plus the per-pool
        # bytes, the send time and the response-done time, and one observe() into the pool's histogram.
        pool_stats.queries["query"] += 1
        proxy_stats.bytes_in += 40
        pool_stats.bytes_in += 40
        proxy_stats.bytes_out += 200
        pool_stats.bytes_out += 200
        pool_stats.checkouts += 1
        pool_stats.observe_wait(0.0)
        started = clock()
        query_time.observe(clock() - started)

    def one_histogram_observe() -> None:
        query_time.observe(0.0003)

    def one_prom_histogram_observe() -> None:
        bound_query_time.observe(0.0003)

    bound_query_time = PromHistogram("d", "d", ["pool"], buckets=QUERY_BUCKETS, registry=registry).labels("app")

    def prom_labels_query() -> None:
        queries.labels("app", "query").inc()
        traffic.labels("client_to_backend").inc(40)
        traffic.labels("backend_to_client").inc(200)
        waits.labels("app").observe(0.0)

    def prom_bound_query() -> None:
        bound_query.inc()
        bound_in.inc(40)
        bound_out.inc(200)
        bound_wait.observe(0.0)

    def one_int() -> None:
        plain_int.bytes_in += 1

    def one_counter_key() -> None:
        plain_counter["query"] += 1

    def one_prom_labels() -> None:
        queries.labels("app", "query").inc()

    def one_prom_bound() -> None:
        bound_query.inc()

    return {
        "one increment: int attribute (+= 1)": one_int,
        "one increment: collections.Counter[key] += 1": one_counter_key,
        "one increment: prometheus Counter.labels(pool, cmd).inc()": one_prom_labels,
        "one increment: prometheus pre-bound child .inc()": one_prom_bound,
        "one duration: core.histogram.Histogram.observe (bisect, list of ints)": one_histogram_observe,
        "one duration: prometheus pre-bound Histogram child .observe()": one_prom_histogram_observe,
        "per query, plain (cmd Counter, 2 byte ints, checkouts, wait buckets)": plain_query,
        "per query, plain + per-pool bytes + 2 loop.time() + query duration": plain_query_with_durations,
        "per query, prometheus .labels(...) each time (counter, 2 counters, histogram)": prom_labels_query,
        "per query, prometheus pre-bound children": prom_bound_query,
    }


def time_per_call(fn, number: int, repeat: int) -> float:
    """Best-of-`repeat` nanoseconds per call (the loop overhead of timeit subtracted)."""
    empty = min(timeit.repeat(lambda: None, number=number, repeat=repeat))
    best = min(timeit.repeat(fn, number=number, repeat=repeat))
    return max(0.0, best - empty) / number * 1e9


# -- part 2: one scrape -------------------------------------------------------------------

ENV = {"MYSQLPOOL_USERS_0_NAME": "app", "MYSQLPOOL_USERS_0_PASSWORD": "pw",
       "MYSQLPOOL_USERS_1_NAME": "report", "MYSQLPOOL_USERS_1_PASSWORD": "pw"}
STATES = (ClientState.READY,) * 7 + (ClientState.ACTIVE, ClientState.CHECKOUT, ClientState.HANDSHAKE)


def proxy_with_clients(loop: asyncio.AbstractEventLoop, count: int) -> Proxy:
    proxy = Proxy(load_config(None, environ=ENV), loop)
    pools = list(proxy.pools.values())
    for i in range(count):
        client = proxy.new_client()
        client.state = STATES[i % len(STATES)]
        if client.state is not ClientState.HANDSHAKE:
            client.pool = pools[i % len(pools)]
        if client.pool is not None and i % 20 == 0:  # 5% hold a backend: in a transaction
            client.lease.backend = object()
            client.session.learn_status(SERVER_STATUS.SERVER_STATUS_IN_TRANS)
            if i % 100 == 0:  # and some also pinned by a user variable
                client.session.pins.user_variables = True
    for pool in pools:
        for cmd in ("query", "stmt_prepare", "stmt_execute", "stmt_close", "ping", "init_db"):
            pool.stats.queries[cmd] = 1000
        pool.stats.connect_errors[2003] = 3
    return proxy


def scrape_ms(proxy: Proxy, repeat: int) -> tuple[float, float, int]:
    registry = build_registry(proxy)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        body = generate_latest(registry)
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times), max(times), len(body)


# -- main ---------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    opts = args.parse_args(argv)
    number, repeat = (20_000, 3) if opts.quick else (200_000, 7)

    print(f"Python {sys.version.split()[0]}, {number:,} calls x best of {repeat}\n")
    print(f"{'per-query bookkeeping':<82} {'ns/op':>8}")
    for name, fn in per_query_cases().items():
        print(f"{name:<82} {time_per_call(fn, number, repeat):>8.0f}")

    print(f"\n{'one scrape (ProxyCollector, 2 pools)':<40} {'median ms':>10} {'max ms':>8} {'bytes':>8}")
    loop = asyncio.new_event_loop()
    try:
        for clients in (0, 1_000, 10_000):
            median, worst, size = scrape_ms(proxy_with_clients(loop, clients), 5 if opts.quick else 25)
            print(f"{f'{clients:,} connected clients':<40} {median:>10.2f} {worst:>8.2f} {size:>8,}")
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

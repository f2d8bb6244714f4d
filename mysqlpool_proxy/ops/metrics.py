# Prometheus metrics, computed at scrape time from the proxy's own objects.
#
# What this module owns: the metric names, types, labels and HELP texts
# (`ProxyCollector`), and the registry the HTTP endpoint serves
# (`build_registry`, a private CollectorRegistry, never the global default).
#
# How it works: the hot path only bumps plain ints and Counters
# (ProxyStats, PoolStats), records durations into fixed-bucket
# `core.histogram.Histogram`s (a list of ints and a sum), and keeps its
# collections (clients, idle, busy, waiters) as it needs them anyway.
# `ProxyCollector.collect()` reads them when Prometheus scrapes and builds
# fresh metric families, so a query never touches prometheus-client. The
# process/platform/gc collectors of prometheus-client are served with them.
# Label sets are bounded: `pool` is a backend user name from the config,
# every `reason`/`state`/`direction` label comes from a closed enum, `command`
# from the protocol's command table and `code` from MySQL error codes. No
# client address, user-supplied string or SQL ever becomes a label. Every
# labelled counter has its known values at 0 from the first scrape (all
# enum values, every command a client may send, CONNECT_ERROR_CODES), so
# rate() works before the first event.
#
# collect() must run on the proxy's event-loop thread (the HTTP endpoint
# does): it reads the proxy's objects without locks.
"""Prometheus collector for mysqlpool-proxy."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from .. import BUILD, __version__
from ..backend.pool import CAPACITY_ERRORS, WAIT_BUCKETS
from ..constants import CR, ER
from ..core.histogram import Histogram
from ..core.pins import PinReason
from ..core.states import ClientState
from ..protocol.command import COMMAND_NAMES, Handling, spec_for
from ..proxy.health import Cause
from ..reasons import BackendCloseReason, ClientCloseReason, RefusalReason

if TYPE_CHECKING:
    from ..backend.pool import Pool
    from ..client.connection import ClientConnection
    from ..proxy.proxy import Proxy

__all__ = ["ProxyCollector", "ClientCensus", "build_registry", "CLIENT_STATE_LABEL", "multiplexing_ratio"]

# Client connection state -> the `state` label of mysqlpool_client_connections.
# GREETING and HANDSHAKE (connected, not yet authenticated, so in no pool yet;
# clients also wait there while the proxy first reaches the server) get their
# own value, "handshake", so the states add up to all connected clients.
CLIENT_STATE_LABEL: dict[ClientState, str] = {
    ClientState.GREETING: "handshake",
    ClientState.HANDSHAKE: "handshake",
    ClientState.READY: "idle",
    ClientState.CHECKOUT: "waiting",
    ClientState.ACTIVE: "active",
    ClientState.INFILE: "active",
    ClientState.LOCAL: "active",
}
CLIENT_STATES = ("active", "idle", "waiting", "handshake")
POOL_CLIENT_STATES = ("active", "idle", "waiting")  # a client in "handshake" is in no pool yet
BACKEND_STATES = ("idle", "in_use", "connecting")
SESSION_MODE = PinReason.SESSION_MODE.value
# Label values exported at 0 before anything happened, so rate() and dashboards work from the first
# scrape: every command a client may send (not the refused ones), and the connect errors an operator
# acts on (cannot reach the server or timed out, lost during login, wrong password, out of connections).
COMMANDS = tuple(sorted(name for code, name in COMMAND_NAMES.items()
                        if spec_for(code).handling is not Handling.REFUSED))
CONNECT_ERROR_CODES = tuple(sorted({CR.CR_CONN_HOST_ERROR, CR.CR_SERVER_LOST, ER.ACCESS_DENIED_ERROR,
                                    *CAPACITY_ERRORS}))
_STATE_OF = attrgetter("state")
_POOL_OF = attrgetter("pool")


class ProxyCollector:
    """A prometheus-client custom collector reading one Proxy's counters at scrape time."""

    def __init__(self, proxy: Proxy):
        self.proxy = proxy
        # process_* (CPU, memory, open files, start time), python_info and python_gc_*, served with the
        # proxy's own families (so they get the worker label too). GCCollector insists on registering
        # somewhere: a registry of its own, never scraped.
        self._runtime: list[Collector] = [ProcessCollector(registry=None), PlatformCollector(registry=None),
                                          GCCollector(registry=CollectorRegistry(auto_describe=False))]

    def describe(self) -> list[Metric]:
        # Registering must not scrape; names need no up-front check in a private registry.
        return []

    def collect(self) -> Iterator[Metric]:
        worker = self.proxy.worker
        if worker is None:
            yield from self._families()
            return
        # With [proxy] workers > 1 each worker serves its own figures, labelled.
        for metric in self._families():
            metric.samples = [s._replace(labels={**s.labels, "worker": worker.label}) for s in metric.samples]
            yield metric

    def _families(self) -> Iterator[Metric]:
        proxy = self.proxy
        pools = list(proxy.pools.values())
        census = ClientCensus.of(list(proxy.clients.values()), proxy.session_mode)
        now = proxy.loop.time()
        yield from self._process_metrics(proxy)
        for collector in self._runtime:
            yield from collector.collect()
        yield from self._client_metrics(proxy, census)
        yield from self._pool_client_metrics(pools, census, now)
        yield from self._backend_metrics(pools)
        yield from self._backend_health_metrics(pools, now)
        yield _checkout_wait(pools)
        yield from self._traffic_metrics(proxy, pools)
        yield from self._pin_metrics(pools, census)
        yield _multiplexing(pools, census)

    # -- families, grouped by subject -----------------------------------------------

    @staticmethod
    def _process_metrics(proxy: Proxy) -> Iterator[Metric]:
        info = GaugeMetricFamily("mysqlpool_info", "mysqlpool-proxy build and pooling mode (always 1); build: "
                                 "compiled (the hot path compiled with mypyc) or pure Python.",
                                 labels=["version", "mode", "build"])
        info.add_metric([__version__, proxy.config.pool.mode, BUILD], 1)
        yield info
        readiness = proxy.readiness()  # once: the gauges below and /readyz come from the same decision
        yield GaugeMetricFamily(
            "mysqlpool_ready",
            "1 if /readyz answers 200: the proxy runs, the server accepts every pool's login and answered "
            "within backend.probe_interval; else 0 (mysqlpool_not_ready says why, /readyz in words).",
            value=1 if readiness.ready else 0)
        not_ready = GaugeMetricFamily(
            "mysqlpool_not_ready",
            "1 for the reason the proxy is not ready now (the one /readyz gives), 0 for the others; all 0 "
            "when ready.", labels=["reason"])
        for cause in Cause:
            not_ready.add_metric([cause.value], 1 if readiness.cause is cause else 0)
        yield not_ready

    @staticmethod
    def _client_metrics(proxy: Proxy, census: ClientCensus) -> Iterator[Metric]:
        by_state = census.by_state
        connections = GaugeMetricFamily(
            "mysqlpool_client_connections",
            "Client connections to the proxy by state: idle (between statements), active (a statement or "
            "proxy-local command runs), waiting (queued for a backend connection), handshake (not yet "
            "authenticated).", labels=["state"])
        for state in CLIENT_STATES:
            connections.add_metric([state], by_state[state])
        yield connections
        yield GaugeMetricFamily("mysqlpool_client_connections_max",
                                "Client connections allowed at once ([proxy] max_client_connections).",
                                value=proxy.config.proxy.max_client_connections)
        yield CounterMetricFamily("mysqlpool_client_connections_accepted",
                                  "Client connections accepted (admitted under max_client_connections while running).",
                                  value=proxy.stats.accepted)
        yield _counter_by_enum("mysqlpool_client_refused",
                               "Client requests refused with an error, by reason: max_clients and shutting_down "
                               "at connect, auth_failed at login, checkout_timeout and queue_full when no backend "
                               "connection came free.", "reason", RefusalReason, proxy.stats.refused)
        yield _counter_by_enum("mysqlpool_client_closed",
                               "Client connections closed, by reason.", "reason", ClientCloseReason,
                               proxy.stats.client_closed)

    @staticmethod
    def _pool_client_metrics(pools: list[Pool], census: ClientCensus, now: float) -> Iterator[Metric]:
        connections = GaugeMetricFamily(
            "mysqlpool_pool_client_connections",
            "Client connections logged in to the pool, by state (as mysqlpool_client_connections, whose "
            "handshake clients are in no pool yet).", labels=["pool", "state"])
        for pool in pools:
            for state in POOL_CLIENT_STATES:
                connections.add_metric([pool.name, state], census.per_pool_state[(pool.name, state)])
        yield connections
        yield _gauge_per_pool("mysqlpool_waiting_clients",
                              "Clients queued for a backend connection of the pool right now.",
                              pools, lambda p: len(p.waiters))
        yield _gauge_per_pool("mysqlpool_oldest_waiter_seconds",
                              "How long the client first in the pool's queue has waited for a backend "
                              "connection so far (0 when none waits).", pools, lambda p: p.oldest_wait(now))

    @staticmethod
    def _backend_metrics(pools: list[Pool]) -> Iterator[Metric]:
        connections = GaugeMetricFamily(
            "mysqlpool_backend_connections",
            "Backend (server) connections of the pool by state: idle in the pool, in_use (held by a client "
            "or by the proxy itself), connecting (being opened).", labels=["pool", "state"])
        for pool in pools:
            for state, value in zip(BACKEND_STATES, (len(pool.idle), len(pool.busy), pool.connecting)):
                connections.add_metric([pool.name, state], value)
        yield connections
        yield _gauge_per_pool("mysqlpool_backend_connections_max",
                              "Cap on the pool's backend connections (max_size).", pools, lambda p: p.max_size)
        yield _counter_per_pool("mysqlpool_backend_connects",
                                "Backend connections opened successfully.", pools, lambda p: p.stats.connects)
        errors = CounterMetricFamily("mysqlpool_backend_connect_errors",
                                     "Failed attempts to open a backend connection, by MySQL error code "
                                     "(2003 = cannot connect or timed out, 1045 = access denied, ...).",
                                     labels=["pool", "code"])
        for pool in pools:
            counts = pool.stats.connect_errors
            for code in sorted({*CONNECT_ERROR_CODES, *counts}):
                errors.add_metric([pool.name, str(code)], counts[code])
        yield errors
        closed = CounterMetricFamily("mysqlpool_backend_closed",
                                     "Backend connections closed, by reason.", labels=["pool", "reason"])
        for pool in pools:
            for reason in BackendCloseReason:
                closed.add_metric([pool.name, reason.value], pool.stats.closed[reason.value])
        yield closed

    @staticmethod
    def _backend_health_metrics(pools: list[Pool], now: float) -> Iterator[Metric]:
        yield _histogram_per_pool(
            "mysqlpool_backend_ping_seconds",
            "Round trip of the COM_PINGs the pool sends on its own backend connections (keepalive of idle "
            "ones, and the readiness probe's).", pools, lambda p: p.stats.ping_time)
        oldest = GaugeMetricFamily("mysqlpool_backend_connection_age_max_seconds",
                                   "Age of the pool's oldest open backend connection (0 with none; "
                                   "[pool] max_lifetime bounds it).", labels=["pool"])
        average = GaugeMetricFamily("mysqlpool_backend_connection_age_avg_seconds",
                                    "Average age of the pool's open backend connections (0 with none).",
                                    labels=["pool"])
        for pool in pools:
            ages = [now - b.created_at for b in (*pool.idle, *pool.busy)]
            oldest.add_metric([pool.name], max(ages, default=0.0))
            average.add_metric([pool.name], sum(ages) / len(ages) if ages else 0.0)
        yield oldest
        yield average

    @staticmethod
    def _traffic_metrics(proxy: Proxy, pools: list[Pool]) -> Iterator[Metric]:
        queries = CounterMetricFamily("mysqlpool_queries",
                                      "Client commands completed, by protocol command (query = COM_QUERY, "
                                      "stmt_execute = COM_STMT_EXECUTE, ...), including those the proxy "
                                      "answers itself.", labels=["pool", "command"])
        for pool in pools:
            counts = pool.stats.queries
            for command in sorted({*COMMANDS, *counts}):
                queries.add_metric([pool.name, command], counts.get(command, 0))
        yield queries
        yield _histogram_per_pool(
            "mysqlpool_query_duration_seconds",
            "Time from a client command going to the server until its whole response was relayed (not "
            "the wait for a backend connection: mysqlpool_checkout_wait_seconds); commands the proxy "
            "answers itself are not in it.", pools, lambda p: p.stats.query_time)
        yield _counter_per_pool("mysqlpool_transactions",
                                "Transactions ended (committed or rolled back) on the pool's connections.",
                                pools, lambda p: p.stats.transactions)
        yield _histogram_per_pool(
            "mysqlpool_transaction_duration_seconds",
            "Time from the statement that opened a transaction going to the server until the response to "
            "the one that ended it (COMMIT, ROLLBACK, DDL, ...).", pools, lambda p: p.stats.transaction_time)
        traffic = CounterMetricFamily("mysqlpool_bytes", "Bytes relayed between clients and backends.",
                                      labels=["direction"])
        traffic.add_metric(["client_to_backend"], proxy.stats.bytes_in)
        traffic.add_metric(["backend_to_client"], proxy.stats.bytes_out)
        yield traffic
        per_pool = CounterMetricFamily(
            "mysqlpool_pool_bytes",
            "Bytes received from the pool's logged-in clients (client_to_backend) and relayed from its "
            "backends to them (backend_to_client); mysqlpool_bytes also counts logins.",
            labels=["pool", "direction"])
        for pool in pools:
            per_pool.add_metric([pool.name, "client_to_backend"], pool.stats.bytes_in)
            per_pool.add_metric([pool.name, "backend_to_client"], pool.stats.bytes_out)
        yield per_pool

    @staticmethod
    def _pin_metrics(pools: list[Pool], census: ClientCensus) -> Iterator[Metric]:
        pinned = census.pinned
        gauge = GaugeMetricFamily(
            "mysqlpool_pinned_clients",
            "Connected clients holding a backend connection because of session state that cannot move "
            "(open transaction, user variables, temporary tables, locks, prepared statements, ...), by "
            "reason; a client with several reasons counts under each.", labels=["pool", "reason"])
        total = CounterMetricFamily("mysqlpool_pins",
                                    "Times a client became pinned to its backend connection, by reason.",
                                    labels=["pool", "reason"])
        for pool in pools:
            for reason in PinReason:
                gauge.add_metric([pool.name, reason.value], pinned[(pool.name, reason.value)])
                total.add_metric([pool.name, reason.value], pool.stats.pins[reason.value])
        yield gauge
        yield total


# -- helpers ------------------------------------------------------------------------

@dataclass(slots=True)
class ClientCensus:
    """What the client gauges need, counted over the connected clients at scrape time."""

    by_state: Counter  # CLIENT_STATE_LABEL value -> clients
    per_pool: Counter  # pool name -> clients logged in to it
    per_pool_state: Counter  # (pool name, CLIENT_STATE_LABEL value) -> clients logged in to it
    pinned: Counter  # (pool name, PinReason value) -> clients pinned for that reason

    @classmethod
    def of(cls, clients: Iterable[ClientConnection], session_mode: bool) -> ClientCensus:
        """Count `clients`.

        Only a client holding a backend connection can be pinned, so only those
        (at most the number of backend connections) are asked for their pin
        reasons: a scrape stays cheap with thousands of idle clients. In
        session pooling every client holding a backend also counts as pinned
        for "session_mode" (pinned_reasons() does not report that one).
        """
        # Counted with C-level loops (Counter(map(...)), comprehensions): this runs
        # for every client at every scrape. A CLOSED client leaves proxy.clients
        # in the same callback that closes it, so one is only ever seen by chance;
        # it is left out of the states and the pinned clients.
        pool_states = Counter(zip(map(_POOL_OF, clients), map(_STATE_OF, clients)))  # (Pool or None, ClientState)
        closed = ClientState.CLOSED
        holders = [c for c in clients if c.backend is not None and c.pool is not None and c.state is not closed]
        by_state: Counter = Counter()
        per_pool: Counter = Counter()
        per_pool_state: Counter = Counter()
        for (pool, state), count in pool_states.items():
            if pool is not None:
                per_pool[pool.name] += count
            if state in CLIENT_STATE_LABEL:  # not CLOSED
                label = CLIENT_STATE_LABEL[state]
                by_state[label] += count
                if pool is not None:
                    per_pool_state[(pool.name, label)] += count
        return cls(by_state, per_pool, per_pool_state, _pinned(holders, session_mode))


def _pinned(holders: list[ClientConnection], session_mode: bool) -> Counter:
    pinned: Counter = Counter()
    for client in holders:
        assert client.pool is not None  # (a client holding a backend has logged in)
        name = client.pool.name
        for reason in client.pinned_reasons():
            pinned[(name, reason.value)] += 1
        if session_mode:
            pinned[(name, SESSION_MODE)] += 1
    return pinned


def multiplexing_ratio(clients: int, in_use: int) -> float:
    """Connected clients per backend connection in use.

    With no backend connection in use the ratio is the client count (as if one
    were in use): 0 with no clients, and it never jumps to infinity or NaN.
    """
    return clients / max(in_use, 1)


def _multiplexing(pools: list[Pool], census: ClientCensus) -> Metric:
    family = GaugeMetricFamily(
        "mysqlpool_multiplexing_ratio",
        "Connected clients of the pool per backend connection in use (higher = more sharing); with none "
        "in use it equals the number of connected clients.", labels=["pool"])
    for pool in pools:
        family.add_metric([pool.name], multiplexing_ratio(census.per_pool[pool.name], len(pool.busy)))
    return family


def _checkout_wait(pools: list[Pool]) -> Metric:
    family = HistogramMetricFamily(
        "mysqlpool_checkout_wait_seconds",
        "Time a client command waited for a backend connection of the pool (0 when one was idle).",
        labels=["pool"])
    for pool in pools:
        stats = pool.stats
        family.add_metric([pool.name], cumulative_buckets(stats.wait_buckets), stats.wait_sum)
    return family


def _histogram_per_pool(name: str, documentation: str, pools: list[Pool], histogram) -> Metric:
    family = HistogramMetricFamily(name, documentation, labels=["pool"])
    for pool in pools:
        h: Histogram = histogram(pool)
        buckets = [("+Inf" if bound == float("inf") else repr(bound), count) for bound, count in h.cumulative()]
        family.add_metric([pool.name], buckets, h.sum)
    return family


def cumulative_buckets(per_bucket: list[int]) -> list[tuple[str, float]]:
    """PoolStats.wait_buckets (one count per WAIT_BUCKETS bound, then overflow) as Prometheus `le` buckets."""
    out: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*WAIT_BUCKETS, float("inf")), per_bucket):
        running += count
        out.append(("+Inf" if bound == float("inf") else repr(bound), running))
    return out


def _gauge_per_pool(name: str, documentation: str, pools: list[Pool], value) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=["pool"])
    for pool in pools:
        family.add_metric([pool.name], value(pool))
    return family


def _counter_per_pool(name: str, documentation: str, pools: list[Pool], value) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=["pool"])
    for pool in pools:
        family.add_metric([pool.name], value(pool))
    return family


def _counter_by_enum(name: str, documentation: str, label: str, values, counts: Counter) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for member in values:
        family.add_metric([member.value], counts[member.value])
    return family


def build_registry(proxy: Proxy) -> CollectorRegistry:
    """A private registry holding only this proxy's collector (never the global default one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyCollector(proxy))
    return registry

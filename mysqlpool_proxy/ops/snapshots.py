# What the operator sees of pools, clients and servers: one place for it.
#
# What this module owns: the rows of SHOW POOLS, SHOW CLIENTS and SHOW SERVERS
# (admin.py) and of the status page (status.py), so the two never disagree.
# Each table is a Table: its columns ("name:type" words, as
# protocol/resultset.columns() reads them: i integer, f float, else text) and
# a function proxy -> rows, with the column values in that order.
#
# How it works: the rows are read from the owners' public attributes at the
# moment of the call (nothing is cached or counted here). A `limit` keeps only
# the first rows in the table's order (pools by name as configured, clients
# and servers by id) without building the others; Table.count() says how many
# there are in all, so a caller can say how many it left out.
"""Snapshots of pools, clients and backends, shared by the admin console and the status page."""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.states import BackendState
from .metrics import CLIENT_STATE_LABEL

if TYPE_CHECKING:
    from ..backend.connection import BackendConnection
    from ..backend.pool import Pool
    from ..client.connection import ClientConnection
    from ..proxy.proxy import Proxy

__all__ = ["Table", "POOLS", "CLIENTS", "SERVERS", "pool_rows", "client_rows", "server_rows"]


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    spec: str  # the columns: "name name:i name:f"
    rows: Callable[[Proxy, int | None], list[tuple]]  # (proxy, limit) -> rows
    count: Callable[[Proxy], int]  # how many rows there are in all

    @property
    def column_names(self) -> list[str]:
        return [word.partition(":")[0] for word in self.spec.split()]

    def as_dicts(self, rows: Iterable[tuple]) -> list[dict[str, object]]:
        names = self.column_names
        return [dict(zip(names, row)) for row in rows]


def pool_rows(proxy: Proxy, limit: int | None = None) -> list[tuple]:
    now = proxy.loop.time()
    clients = Counter((c.pool, CLIENT_STATE_LABEL.get(c.state)) for c in proxy.clients.values())
    rows = []
    for pool in _first(proxy.pools.values(), limit):
        s = pool.stats
        avg_wait = s.wait_sum / s.wait_count if s.wait_count else 0.0
        error_age = None if pool.last_error_at is None else round(now - pool.last_error_at, 3)
        oldest = min((w.enqueued_at for w in pool.waiters if not w.done), default=now)
        rows.append((pool.name, pool.max_size, pool.configured_max_size, len(pool.idle), len(pool.busy),
                     pool.connecting, len(pool.waiters), pool.paused, s.checkouts, avg_wait, pool.last_error,
                     _wall_time(error_age), error_age, clients[(pool, "active")], clients[(pool, "idle")],
                     clients[(pool, "waiting")], round(now - oldest, 3)))
    return rows


def _wall_time(age: float | None) -> str | None:
    """The UTC time `age` seconds ago, as 2026-01-02T03:04:05Z."""
    if age is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - age))


def client_rows(proxy: Proxy, limit: int | None = None) -> list[tuple]:
    now = proxy.loop.time()
    rows = []
    for c in _lowest_ids(proxy.clients.values(), limit):
        schema = c.session.state.schema.decode("utf-8", "replace") if c.session.state.schema else None
        mode = ["session_mode"] if proxy.session_mode and c.backend else []  # pinned_reasons() omits it
        rows.append((
            c.id, c.user.name if c.user else None, c.pool.name if c.pool else None, c.peer, c.program,
            c.state.value, schema,
            round(now - c.connected_at, 3), round(now - c.last_active, 3), c.session.queries,
            c.backend.id if c.backend else None, ",".join(mode + [r.value for r in c.pinned_reasons()]),
        ))
    return rows


def server_rows(proxy: Proxy, limit: int | None = None) -> list[tuple]:
    now = proxy.loop.time()
    rows: list[tuple] = []
    for pool in proxy.pools.values():
        if limit is not None and len(rows) >= limit:
            break
        backends = _lowest_ids([*pool.idle, *pool.busy], None if limit is None else limit - len(rows))
        for b in backends:
            idle = round(now - b.idle_since, 3) if b.state is BackendState.IDLE else None
            rows.append((b.id, pool.name, b.thread_id, b.state.value, round(now - b.created_at, 3), idle,
                         getattr(b.holder, "id", None), b.commands, round(b.expires_at - now, 3)))
    return rows


def _first(pools: Iterable[Pool], limit: int | None) -> list[Pool]:
    pools = list(pools)
    return pools if limit is None else pools[:limit]


def _lowest_ids(items: Iterable[ClientConnection] | Iterable[BackendConnection],
                limit: int | None) -> list:
    if limit is None:
        return sorted(items, key=_id)
    return heapq.nsmallest(limit, items, key=_id)


def _id(item: ClientConnection | BackendConnection) -> int:
    return item.id


POOLS = Table("pools", "pool max_size:i configured_max_size:i idle:i in_use:i connecting:i waiting:i paused:i "
              "checkouts:i avg_wait_seconds:f last_error last_error_at last_error_age_seconds:f "
              "clients_active:i clients_idle:i clients_waiting:i oldest_wait_seconds:f",
              pool_rows, lambda proxy: len(proxy.pools))
CLIENTS = Table("clients", "id:i user pool address program state schema connected_seconds:f idle_seconds:f "
                "queries:i backend_id:i pinned", client_rows, lambda proxy: len(proxy.clients))
SERVERS = Table("servers", "id:i pool thread_id:i state age_seconds:f idle_seconds:f client_id:i commands:i "
                "expires_in_seconds:f", server_rows,
                lambda proxy: sum(len(p.idle) + len(p.busy) for p in proxy.pools.values()))

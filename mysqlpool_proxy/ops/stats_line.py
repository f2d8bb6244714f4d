"""The periodic stats line: one per pool in use, every `[log] stats_period` (PgBouncer's `stats:`).

`mysqlpool.stats: stats pool=app clients=40 waiting=0 backends_idle=2
backends_busy=3 queries_per_s=812.4 transactions_per_s=203.1 avg_wait_ms=0.3
max_wait_ms=4.1 timed_out=0`, or the same as JSON keys.

Everything comes from counters that exist anyway: the pool's collections
(sizes), PoolStats (queries, transactions, checkouts and their summed wait:
the rates and the average wait per checkout are differences since the last
line) and the pool's WaitWatch (the longest wait ended since the last line,
or the oldest client still waiting if longer; the timeouts). Clients are
counted in one pass over the proxy's clients. Nothing is kept per query. A
pool with no client, no backend and nothing done since the last line is left
out, so an idle proxy writes nothing. The janitor calls `tick()` at each of
its ticks; the period is read from the config then, so a reload changes it.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..backend.waits import oldest_wait
from ..logs import log_event

if TYPE_CHECKING:
    from ..backend.pool import Pool
    from ..proxy.proxy import Proxy

__all__ = ["StatsLine"]

log = logging.getLogger("mysqlpool.stats")


@dataclass(frozen=True, slots=True)
class _Totals:
    """A pool's cumulative counters at one line."""
    queries: int
    transactions: int
    checkouts: int
    wait_sum: float
    timed_out: int

    @staticmethod
    def of(pool: Pool) -> _Totals:
        s = pool.stats
        return _Totals(sum(s.queries.values()), s.transactions, s.wait_count, s.wait_sum, pool.waits.timeouts)


class StatsLine:
    """Writes the stats lines; holds each pool's totals as of the last one."""

    __slots__ = ("_last_at", "_totals")

    def __init__(self, now: float) -> None:
        self._last_at = now
        self._totals: dict[int, _Totals] = {}  # id(pool) -> its totals at the last line

    def tick(self, proxy: Proxy, now: float) -> None:
        period = proxy.config.log.stats_period
        if period <= 0:
            self._last_at = now
            return
        if now - self._last_at >= period:
            self.write(proxy, now)

    def write(self, proxy: Proxy, now: float) -> None:
        """One line per pool in use, with rates since the last line."""
        elapsed = max(now - self._last_at, 1e-9)
        self._last_at = now
        clients = Counter(id(c.pool) for c in proxy.clients.values() if c.pool is not None)
        pools = list(proxy.pools.values())
        totals = {}
        for pool in pools:
            now_totals = totals[id(pool)] = _Totals.of(pool)
            before = self._totals.get(id(pool), _Totals(0, 0, 0, 0.0, 0))
            longest = max(pool.waits.take_longest(), oldest_wait(pool, now))
            self._line(pool, clients[id(pool)], now_totals, before, elapsed, longest)
        self._totals = totals

    @staticmethod
    def _line(pool: Pool, clients: int, now: _Totals, before: _Totals, elapsed: float, longest: float) -> None:
        queries = now.queries - before.queries
        checkouts = now.checkouts - before.checkouts
        if not (clients or pool.size or queries or checkouts):
            return
        avg_wait = (now.wait_sum - before.wait_sum) / checkouts if checkouts else 0.0
        log_event(log, "info", "stats", pool=pool.name, clients=clients, waiting=len(pool.waiters),
                  backends_idle=len(pool.idle), backends_busy=len(pool.busy),
                  queries_per_s=round(queries / elapsed, 1),
                  transactions_per_s=round((now.transactions - before.transactions) / elapsed, 1),
                  avg_wait_ms=round(avg_wait * 1000, 1), max_wait_ms=round(longest * 1000, 1),
                  timed_out=now.timed_out - before.timed_out)

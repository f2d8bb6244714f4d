"""The upkeep of a pool's idle backends: keepalive pings, the health probe's ping, idle expiry, the recycling log.

`Upkeep` acts on the pool's idle backends between checkouts. The janitor's
pass (`maintain()`) retires idle backends past their lifetime, closes the
ones idle past `idle_timeout` beyond the `keep` most recent, and pings
those kept so the server's wait_timeout never ends them: a ping takes the
backend out to `pinging` (busy) and gives it back to the pool with its
`release` after the answer, or closes it (`ping_failed`). `ping_idle()`
does the same for the health probe on the most recently used idle backend.
`log_recycling()` writes one line summing up the backends closed since its
last call. Its only state is what that line last counted; the backends are
the pool's `Places`, the counters its `PoolStats`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Final

from ..core.states import BackendState
from ..protocol.response import Expect
from ..reasons import BackendCloseReason
from .connection import BackendConnection, BackendGone
from .places import Place, Places
from .stats import PoolStats

__all__ = ["Upkeep"]

log = logging.getLogger("mysqlpool.pool")

COM_PING: Final = b"\x0e"


class Upkeep:
    __slots__ = ("_name", "_loop", "_places", "_stats", "_release", "_closes_logged")

    def __init__(self, *, name: str, loop: asyncio.AbstractEventLoop, places: Places, stats: PoolStats,
                 release: Callable[[BackendConnection], None]):
        self._name = name
        self._loop = loop
        self._places = places
        self._stats = stats
        self._release = release  # the pool's: a pinged backend goes back through it
        self._closes_logged: Counter = Counter()  # stats.closed as of the last recycling summary

    def maintain(self, now: float, idle_timeout: float, keep: int, timeout: float) -> None:
        """Retire idle backends past their lifetime; past idle_timeout, close the ones above `keep`
        (min_idle) and ping the rest, each within `timeout`."""
        for backend in reversed(list(self._places.idle)):  # most recently used first: they are kept
            if now >= backend.expires_at:
                backend.close(BackendCloseReason.MAX_LIFETIME)
            elif now - backend.idle_since < idle_timeout:
                keep -= 1
            elif keep > 0:
                keep -= 1
                self._keepalive(backend, timeout)
            else:
                backend.close(BackendCloseReason.IDLE_TIMEOUT)

    def _keepalive(self, backend: BackendConnection, timeout: float) -> None:
        self._places.move(backend, Place.IDLE, Place.PINGING)
        backend.set_state(BackendState.RESERVED)
        self._loop.create_task(self._ping_then_release(backend, timeout))

    async def _ping_then_release(self, backend: BackendConnection, timeout: float) -> None:
        started = self._loop.time()
        try:
            result = await backend.run_internal(COM_PING, Expect.SIMPLE, timeout)
        except BackendGone:
            return
        self._stats.ping_time.observe(self._loop.time() - started)
        if result.error is not None:
            backend.close(BackendCloseReason.PING_FAILED)
            return
        backend.last_used = self._loop.time()
        self._release(backend)

    async def ping_idle(self, timeout: float) -> bool | None:
        """Ping the most recently used idle backend for the health probe (see Pool.ping_idle)."""
        idle = self._places.idle
        if not idle:
            return None
        backend = idle[-1]
        idle_since = backend.idle_since
        self._places.move(backend, Place.IDLE, Place.PINGING, len(idle) - 1)
        backend.set_state(BackendState.RESERVED)
        started = self._loop.time()
        try:
            result = await backend.run_internal(COM_PING, Expect.SIMPLE, timeout)
        except BackendGone as gone:
            return False if gone.reason is BackendCloseReason.ERROR else None
        self._stats.ping_time.observe(self._loop.time() - started)
        if result.error is not None:
            backend.close(BackendCloseReason.PING_FAILED)
            return True  # an error, but an answer
        self._release(backend)
        if backend.state is BackendState.IDLE:
            backend.idle_since = idle_since
        return True

    def log_recycling(self, size: int) -> None:
        """One line summing up the backends closed since the last call (`size`: the pool's now)."""
        closed = self._stats.closed
        delta = {reason: closed[reason] - self._closes_logged[reason] for reason in closed
                 if closed[reason] != self._closes_logged[reason]}
        if delta:
            self._closes_logged = Counter(closed)
            log.info("pool %s: closed %d backend connections (%s); %d open", self._name, sum(delta.values()),
                     ", ".join(f"{reason} {n}" for reason, n in sorted(delta.items())), size)

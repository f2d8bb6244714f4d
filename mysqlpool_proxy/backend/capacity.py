"""How many backends a pool may have now: its `max_size`, adapted to the server.

`Capacity` owns the configured `max_size` and what lowers it. Every new
backend reports the account's connection limit (`@@max_user_connections`,
which the server sets to the account's own MAX_USER_CONNECTIONS) and
`@@max_connections`; a configured `max_size` at or above either is lowered
to one below it (`learn_limits`, so the server never answers 1226), with a
warning, and lifted again when a later backend reports a higher limit. If
the server still refuses a new connection with 1040 or 1226 (other clients
of the same account, say), the connector calls `hold`: the pool keeps its
current size as its cap for CAPACITY_HOLD seconds and clients wait for the
backends it has. `max_size` is the effective cap, read at every check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..events import EventKind, record
from ..logs import log_event
from .places import Places

__all__ = ["Capacity", "CAPACITY_HOLD", "CAPACITY_ERRORS"]

log = logging.getLogger("mysqlpool.pool")

CAPACITY_HOLD = 60.0  # seconds the pool stays at its size after the server said "too many connections"
CAPACITY_ERRORS = (1040, 1203, 1226)  # ER_CON_COUNT_ERROR, ER_TOO_MANY_USER_CONNECTIONS (both numbers)


class Capacity:
    __slots__ = ("configured_max_size", "server_cap", "share", "_name", "_loop", "_places", "_hold_cap",
                 "_hold_until")

    def __init__(self, name: str, max_size: int, loop: asyncio.AbstractEventLoop, places: Places,
                 share: Callable[[int], int]):
        self.configured_max_size = max_size
        self.server_cap: int | None = None  # from the account's connection limits
        self.share = share  # this worker's part of a server limit
        self._name = name
        self._loop = loop
        self._places = places
        self._hold_cap: int | None = None  # after a 1040/1226 from the server
        self._hold_until = 0.0

    @property
    def max_size(self) -> int:
        """The effective cap: configured, lowered by the server's limits and capacity errors."""
        cap = self.configured_max_size
        if self.server_cap is not None and self.server_cap < cap:
            cap = self.server_cap
        if self._hold_cap is not None:
            if self._loop.time() < self._hold_until:
                cap = min(cap, self._hold_cap)
            else:
                self._hold_cap = None
                log.info("pool %s: capacity hold over; back to max_size %d", self._name, cap)
        return cap

    def learn_limits(self, max_user_connections: int, max_connections: int) -> None:
        """Keep the pool below what the server allows this account now (called for each new backend,
        so a limit raised again lifts the cap as a lowered one sets it; 0 is no limit)."""
        limits = [(n, what) for n, what in ((max_user_connections, "the account's max_user_connections"),
                                            (max_connections, "the server's max_connections")) if n > 0]
        cap = None
        if limits:
            limit, what = min(limits)
            cap = self.share(max(1, limit - 1))
            if cap >= self.configured_max_size:
                cap = None
            elif cap != self.server_cap:
                level = logging.WARNING if self.server_cap is None or cap < self.server_cap else logging.INFO
                log.log(level, "pool %s: max_size %d is at or above %s (%d); using %d so the server never refuses it",
                        self._name, self.configured_max_size, what, limit, cap)
        if cap is None and self.server_cap is not None:
            log.info("pool %s: the server's connection limits no longer cap it; back to max_size %d",
                     self._name, self.configured_max_size)
        self.server_cap = cap

    def hold(self, message: str) -> None:
        """The server refused a new connection as too many: stay at the current size for a while."""
        current = self._places.held
        if self._hold_cap is None:
            log_event(log, "warning", f"pool {self._name}: the server refused a new connection ({message}); holding "
                      f"the pool at {max(1, current)} connections for {CAPACITY_HOLD:.0f}s, clients wait for those",
                      pool=self._name, error=message, held_at=max(1, current))
            record(EventKind.CAPACITY_HOLD, f"the server refused a new connection ({message})", self._name)
        self._hold_cap = max(1, current)
        self._hold_until = self._loop.time() + CAPACITY_HOLD

"""Opening new backends for a pool: the connects in flight, and backing off while they fail.

`Connector` owns `opening` (the key of each connect in flight: the backend
does not exist yet, but the slot counts toward the caps), the run of
failures, the backoff and the last connect error. The pool decides when to
open and builds the backend from what `connect()` returns; the connector
makes the attempt and keeps the pace.

Connect failures back off exponentially, with jitter: up to BACKOFF_CAP
between attempts while no client waits, WAITING_BACKOFF_CAP while some do,
and one attempt at a time until one succeeds (the pool reads `failures`). A
client that starts waiting brings the next attempt forward
(`retry_soon_for`): to within WAITING_BACKOFF_CAP of the last failure (so
at once after a long backoff), and into the first half of its own wait. So
no client times out without an attempt made while it waited, and the
attempts still come at a pace set by time, not by how many clients arrive.
When a backoff ends the pool is told (`on_backoff_over`). A 1040/1226
("too many connections") also holds the pool at its size (`Capacity.hold()`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Awaitable, Callable, Sized

import pymysql

from ..constants import CR, ER
from ..events import EventKind, record
from ..logs import log_event
from .adapter import BackendParams, Opened
from .capacity import CAPACITY_ERRORS, Capacity
from .stats import PoolStats

__all__ = ["Connector", "BACKOFF_BASE", "BACKOFF_CAP", "WAITING_BACKOFF_CAP"]

log = logging.getLogger("mysqlpool.pool")

BACKOFF_BASE = 0.1
BACKOFF_CAP = 5.0  # seconds between connect attempts, at most, while no client waits
WAITING_BACKOFF_CAP = 1.0  # the same while clients wait


class Connector:
    __slots__ = ("opening", "failures", "backoff_until", "last_error", "last_error_code", "last_error_at",
                 "_failed_at", "_timer", "_name", "_loop", "_opener", "_stats", "_capacity", "_waiters",
                 "_on_backoff_over")

    def __init__(self, *, name: str, loop: asyncio.AbstractEventLoop, opener: Callable[..., Awaitable[Opened]],
                 stats: PoolStats, capacity: Capacity, waiters: Sized, on_backoff_over: Callable[[], None]):
        self.opening: list[int] = []  # the key of each backend being opened
        self.failures = 0  # connect attempts failed in a row
        self.backoff_until = 0.0  # no attempt before this loop time
        self.last_error: str = ""  # the last connect error, until a connect succeeds
        self.last_error_code: int = 0
        self.last_error_at: float | None = None  # loop time of that error
        self._failed_at = float("-inf")  # when the last connect attempt failed
        self._timer: asyncio.TimerHandle | None = None  # ends the backoff
        self._name = name
        self._loop = loop
        self._opener = opener
        self._stats = stats
        self._capacity = capacity
        self._waiters = waiters  # the pool's queue: the backoff is shorter while clients wait
        self._on_backoff_over = on_backoff_over

    def begin(self, key: int) -> None:
        """A connect for `key` is about to start: its slot counts from now."""
        self.opening.append(key)

    async def connect(self, key: int, params: BackendParams, want_collations: bool = False) -> Opened | None:
        """The attempt `begin(key)` announced: the connection, or None after a failure (logged, backed off)."""
        try:
            opened = await self._opener(params, want_collations=want_collations)
        except Exception as exc:  # every connect failure is handled the same way: back off
            self.opening.remove(key)
            self._failed(exc)
            return None
        self.opening.remove(key)
        self.end_failures()
        self.last_error, self.last_error_code, self.last_error_at = "", 0, None  # recovered
        self._stats.connects += 1
        return opened

    def _failed(self, exc: Exception) -> None:
        code, message = _describe_error(exc)
        self._stats.connect_errors[code] += 1
        if code in CAPACITY_ERRORS:
            self._capacity.hold(message)
        self.failures += 1
        self._failed_at = self._loop.time()
        delay = self._backoff_delay()
        if message != self.last_error or self.failures in (1, 10) or self.failures % 100 == 0:
            log_event(log, "warning", f"pool {self._name}: backend connect failed ({message}); attempt "
                      f"{self.failures}, retrying in {delay:.2f}s", pool=self._name, code=code, error=message,
                      attempt=self.failures, retry_in_s=round(delay, 3))
            record(EventKind.CONNECT_FAILED, f"backend connect failed ({message}); attempt {self.failures}",
                   self._name)
        self.last_error, self.last_error_code, self.last_error_at = message, code, self._loop.time()
        self.back_off(delay)

    def _backoff_delay(self) -> float:
        """Exponential in the failures so far, capped lower while clients wait; with jitter."""
        cap = WAITING_BACKOFF_CAP if self._waiters else BACKOFF_CAP
        return min(cap, BACKOFF_BASE * 2 ** min(self.failures - 1, 16)) * random.uniform(0.5, 1.0)

    def back_off(self, delay: float) -> None:
        """Open no backend for `delay` seconds (one timer; a longer backoff already running stays)."""
        self.backoff_until = max(self.backoff_until, self._loop.time() + delay)
        if self._timer is None:
            self._timer = self._loop.call_later(delay, self._backoff_over)

    def retry_soon_for(self, timeout: float) -> None:
        """A client starts waiting `timeout` while the pool backs off after a failure: the next
        attempt comes within WAITING_BACKOFF_CAP of that failure (at once if it was longer ago),
        and within the first half of this client's wait."""
        if not self.failures or self.backoff_until <= self._loop.time():
            return
        now = self._loop.time()
        soon = self._failed_at + WAITING_BACKOFF_CAP * random.uniform(0.5, 1.0)
        at = max(now, min(soon, now + timeout / 2))
        if at >= self.backoff_until:
            return
        self.backoff_until = at  # at == now: the enqueue's serve_waiters() opens one at once
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if at > now:
            self._timer = self._loop.call_at(at, self._backoff_over)

    def end_failures(self) -> None:
        """A connect succeeded, or the way to connect changed: the failures say nothing about the
        next attempt any more, and their backoff is over (its timer finds nothing left to wait for)."""
        if self.failures:
            self.failures = 0
            self.backoff_until = min(self.backoff_until, self._loop.time())

    def _backoff_over(self) -> None:
        self._timer = None
        remaining = self.backoff_until - self._loop.time()
        if remaining > 0:  # a later failure extended the backoff while this timer ran
            self._timer = self._loop.call_later(remaining, self._backoff_over)
            return
        self._on_backoff_over()

    def stop(self) -> None:
        """The pool shut down: no backoff timer left behind."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _describe_error(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        code = exc.args[0]
        text = exc.args[1] if len(exc.args) > 1 else ""
        if code == CR.CR_CONN_HOST_ERROR and isinstance(exc.__cause__, OSError):
            text += f" ({_os_reason(exc.__cause__)})"  # aiomysql's own message leaves it out
        return code, f"{code} {text}".strip()
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return CR.CR_CONN_HOST_ERROR, "connect timeout"
    if isinstance(exc, OSError):
        return CR.CR_CONN_HOST_ERROR, f"{exc.strerror or exc}"
    return ER.UNKNOWN_ERROR, f"{type(exc).__name__}: {exc}"


def _os_reason(exc: OSError) -> str:
    """Why a connect failed, as MySQL's client says it: `111 "Connection refused"`, or "timed out"."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if exc.errno:
        return f'{exc.errno} "{os.strerror(exc.errno)}"'
    return str(exc)

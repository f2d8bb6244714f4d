"""The queue of clients waiting for a backend of one pool: first come, first served, bounded, each with a deadline.

`WaitQueue` owns `waiters` (a FIFO of `Waiter`s) and its bound
(`max_waiting`). A waiter is a callback and a deadline timer, no task: the
queue calls its `deliver(backend, None)` or `deliver(None, exc)` once,
synchronously, and marks it `done`. A waiter past its deadline is dropped
and told (CheckoutTimeout, with the pool's `shortage()` as the detail),
never served late. When the queue already holds `max_waiting`, a newcomer
is refused at once (QueueFull).

The pool decides which backend a waiter gets: `serve()` hands backends
taken by the pool's `take` callable to the waiters in order, `hand()` one
backend to one waiter. Every queued wait that ends is reported to the
`WaitWatch` (`watch`, waits.py) for the slow-wait log, and every served one
to the pool's `PoolStats`.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from .connection import BackendConnection
from .stats import PoolStats
from .waits import WaitWatch

__all__ = ["WaitQueue", "Waiter", "CheckoutTimeout", "QueueFull"]


class CheckoutTimeout(Exception):
    def __init__(self, waited: float, detail: str):
        super().__init__(detail)
        self.waited = waited


class QueueFull(Exception):
    pass


@dataclass(slots=True)
class Waiter:
    """One checkout waiting in the queue. The pool calls `deliver(backend, None)` or
    `deliver(None, exc)` once, synchronously, and sets `done`; never after `cancel_wait`.
    A deliver callback that wants to act later schedules itself."""
    key: int
    deliver: Callable[[BackendConnection | None, Exception | None], None]
    enqueued_at: float
    no_schema: bool = False  # a client with no schema: only a backend with none will do
    timer: asyncio.TimerHandle | None = None
    done: bool = False


class WaitQueue:
    __slots__ = ("waiters", "max_waiting", "watch", "_loop", "_stats", "_shortage")

    def __init__(self, *, max_waiting: int, loop: asyncio.AbstractEventLoop, stats: PoolStats,
                 shortage: Callable[[], str]):
        self.waiters: deque[Waiter] = deque()
        self.max_waiting = max_waiting
        self.watch = WaitWatch()  # clients waiting long, logged as episodes (waits.py); the janitor checks it
        self._loop = loop
        self._stats = stats
        self._shortage = shortage  # why clients wait, for a CheckoutTimeout

    def add(self, key: int, timeout: float,
            deliver: Callable[[BackendConnection | None, Exception | None], None],
            no_schema: bool = False) -> Waiter:
        """A new waiter, last in line, told CheckoutTimeout after `timeout`. Raises QueueFull when
        `max_waiting` already wait."""
        if len(self.waiters) >= self.max_waiting:
            raise QueueFull(f"{len(self.waiters)} clients are already waiting")
        waiter = Waiter(key, deliver, self._loop.time(), no_schema)
        waiter.timer = self._loop.call_later(timeout, self._expire, waiter)
        self.waiters.append(waiter)
        return waiter

    def cancel(self, waiter: Waiter) -> None:
        """The waiter gave up (its client closed); a backend already delivered is the caller's."""
        if waiter.timer is not None:
            waiter.timer.cancel()
            waiter.timer = None
        if not waiter.done:
            waiter.done = True
            try:
                self.waiters.remove(waiter)
            except ValueError:
                pass

    def _expire(self, waiter: Waiter) -> None:
        waiter.timer = None
        if waiter.done:
            return
        try:
            self.waiters.remove(waiter)
        except ValueError:
            pass
        waiter.done = True
        waited = self._loop.time() - waiter.enqueued_at
        self.watch.timed_out(waited)
        waiter.deliver(None, CheckoutTimeout(waited, self._shortage()))

    def first_for(self, key: int) -> Waiter | None:
        """The first client in line that waits for a backend with `key`."""
        for w in self.waiters:
            if not w.done and w.key == key:
                return w
        return None

    def pending(self) -> Counter[int]:
        """How many clients wait, by key."""
        return Counter(w.key for w in self.waiters if not w.done)

    def hand(self, waiter: Waiter, backend: BackendConnection) -> None:
        """Give `backend` to `waiter`, out of its place in line."""
        self.waiters.remove(waiter)
        self._deliver(waiter, backend)

    def serve(self, take: Callable[[int, None, bool], BackendConnection | None]) -> bool:
        """Hand backends to the waiters in order, as long as `take(key, None, no_schema)` finds one;
        True if clients still wait."""
        waiters = self.waiters
        while waiters:
            w = waiters[0]
            if w.done:
                waiters.popleft()
                continue
            backend = take(w.key, None, w.no_schema)
            if backend is None:
                break
            waiters.popleft()
            self._deliver(w, backend)
        return bool(waiters)

    def _deliver(self, waiter: Waiter, backend: BackendConnection) -> None:
        if waiter.timer is not None:
            waiter.timer.cancel()
            waiter.timer = None
        waiter.done = True
        self._stats.checkouts += 1
        waited = self._loop.time() - waiter.enqueued_at
        self._stats.observe_wait(waited)
        self.watch.served(waited)
        waiter.deliver(backend, None)

    def refuse(self, exc: Exception, arrived_after: float, arrived_by: float) -> int:
        """Hand `exc` to the clients that started waiting after `arrived_after` and by `arrived_by`;
        returns how many."""
        told: list[Waiter] = []
        kept: list[Waiter] = []
        for w in self.waiters:
            if not w.done:
                (told if arrived_after < w.enqueued_at <= arrived_by else kept).append(w)
        if not told:
            return 0
        self.waiters.clear()
        self.waiters.extend(kept)
        for w in told:
            w.done = True
            if w.timer is not None:
                w.timer.cancel()
                w.timer = None
            self.watch.refused(self._loop.time() - w.enqueued_at)
            w.deliver(None, exc)
        return len(told)

    def refuse_all(self, exc: Exception) -> None:
        """The pool shut down: every client still waiting gets `exc`."""
        waiters = list(self.waiters)
        self.waiters.clear()
        for w in waiters:
            if not w.done:
                w.done = True
                if w.timer is not None:
                    w.timer.cancel()
                    w.timer = None
                w.deliver(None, exc)

    def oldest_wait(self, now: float) -> float:
        """Seconds the longest-waiting client has waited (the queue is FIFO), 0 with none waiting."""
        return now - self.waiters[0].enqueued_at if self.waiters else 0.0

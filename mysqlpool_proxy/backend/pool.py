"""Backend pools: one per backend user, hard-capped, with a FIFO of waiting clients.

A pool holds backend connections in collections: `idle` (LIFO: the most
recently used is reused first, so the others can age out), `busy` (owned by
a client or by the pool itself, `pinging` among them), `opening` (the key of
each connect in flight) and `closing` (closed backends whose sockets are not
closed yet: the server still counts them). A backend changes collection only
in `_move`. Every size is the length of a collection: the pool's size is the
sum of the four and never exceeds `max_size`; all pools together never
exceed `[backend] max_connections` (the `BackendLimiter`, whose use is the
sum of its pools' sizes). Whether the pool runs, is paused or is shut down is
its `state` (PoolState), a separate thing from any collection.

Backends differ by `key`: the capability bits that change what goes over the
wire (CLIENT_FOUND_ROWS, CLIENT_LOCAL_FILES, CLIENT_PS_MULTI_RESULTS, and
MariaDB's EXTENDED_METADATA, with which every column definition carries one
more field). A client only gets a backend with its key; at the cap, an idle
backend of another key is closed to make room (`RECLAIMED`).

Clients that find no idle backend wait in `waiters`, first come first
served. Each waiter has a deadline; a waiter past it is dropped and told
(CheckoutTimeout), never served late. When the queue already holds
`max_waiting_clients`, the newcomer is refused at once (QueueFull).
Backends are opened in the background, at most `max_connecting` at a time,
and each one that arrives goes to the first waiter that can use it.

Connect failures back off exponentially, with jitter: up to BACKOFF_CAP
between attempts while no client waits, WAITING_BACKOFF_CAP while some do,
and one attempt at a time until one succeeds. A client that starts waiting
brings the next attempt forward (`_retry_soon_for`): to within
WAITING_BACKOFF_CAP of the last failure (so at once after a long backoff),
and into the first half of its own wait. So no client times out without an
attempt made while it waited, and the attempts still come at a pace set by
time, not by how many clients arrive. Each failure is reported to
`on_connect_failed`, with the time the attempt started: the proxy decides
which of the clients that were waiting by then need not wait any longer,
and hands them their error with `refuse_waiters`.

Release never hands back a dirty backend: the caller resets or closes it
first. A backend past `max_lifetime` is closed at release instead of reused.

The cap adapts to the server. Every new backend reports the account's
connection limit (`@@max_user_connections`, which the server sets to the
account's own MAX_USER_CONNECTIONS) and `@@max_connections`; a configured
`max_size` at or above either is lowered to one below it (so the server
never answers 1226), with a warning. If the server still refuses a new
connection with 1040 or 1226 (other clients of the same account, say), the
pool treats its current size as its cap for CAPACITY_HOLD seconds and
clients wait for the backends it has.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Final

import pymysql

from ..constants import CLIENT, CR, ER, MARIADB_CLIENT_EXTENDED_METADATA
from ..core.histogram import PING_BUCKETS, QUERY_BUCKETS, TRANSACTION_BUCKETS, Histogram
from ..core.session import SessionState
from ..core.states import BackendState
from ..events import EventKind, record
from ..logs import log_event
from ..protocol.response import Expect
from ..reasons import BackendCloseReason
from .adapter import BackendParams, Opened, open_backend
from .connection import BackendConnection, BackendGone
from .waits import WaitWatch

__all__ = ["Pool", "PoolState", "BackendLimiter", "CheckoutTimeout", "QueueFull", "PoolStats", "WAIT_BUCKETS"]

log = logging.getLogger("mysqlpool.pool")

# Wire-semantic capability bits a backend must share with its client.
KEY_BITS = CLIENT.FOUND_ROWS | CLIENT.LOCAL_FILES | CLIENT.PS_MULTI_RESULTS | MARIADB_CLIENT_EXTENDED_METADATA

WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

BACKOFF_BASE = 0.1
BACKOFF_CAP = 5.0  # seconds between connect attempts, at most, while no client waits
WAITING_BACKOFF_CAP = 1.0  # the same while clients wait
EARLY_DEATH = 1.0  # seconds: a backend the server closes sooner makes the pool back off before opening more
CAPACITY_HOLD = 60.0  # seconds the pool stays at its size after the server said "too many connections"
CAPACITY_ERRORS = (1040, 1203, 1226)  # ER_CON_COUNT_ERROR, ER_TOO_MANY_USER_CONNECTIONS (both numbers)
RECENT = 8  # idle backends (most recently used first) searched for one already in a client's state
EXPIRY_LEAD = 2.0  # seconds before an idle backend's lifetime ends that its min_idle replacement opens


class PoolState(enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"  # checkouts wait; backends close as they come free
    CLOSED = "closed"  # shut down: waiters refused, backends close as they come free


class Place(enum.Enum):
    """Which of the pool's collections holds a backend."""
    NONE = "none"  # not yet in the pool, or its socket is closed
    IDLE = "idle"
    BUSY = "busy"
    PINGING = "pinging"  # in busy too: an idle backend the pool itself took out for a ping
    CLOSING = "closing"


# The members checkout and release compare with, as module globals: on Python 3.11 reading
# `Place.IDLE` runs EnumType's __getattr__ hook, ~20 times a global's cost.
_PLACE_IDLE: Final = Place.IDLE
_PLACE_BUSY: Final = Place.BUSY
_PLACE_PINGING: Final = Place.PINGING
_PLACE_CLOSING: Final = Place.CLOSING
_POOL_RUNNING: Final = PoolState.RUNNING
_POOL_PAUSED: Final = PoolState.PAUSED
_POOL_CLOSED: Final = PoolState.CLOSED
_BACKEND_IDLE: Final = BackendState.IDLE
_BACKEND_RESERVED: Final = BackendState.RESERVED


class CheckoutTimeout(Exception):
    def __init__(self, waited: float, detail: str):
        super().__init__(detail)
        self.waited = waited


class QueueFull(Exception):
    pass


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
        self.wait_buckets = [0] * (len(WAIT_BUCKETS) + 1)
        self.queries: Counter = Counter()  # command name -> count
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
        for i, bound in enumerate(WAIT_BUCKETS):
            if seconds <= bound:
                self.wait_buckets[i] += 1
                return
        self.wait_buckets[-1] += 1


class BackendLimiter:
    """The global cap on backend connections, shared by all pools."""

    __slots__ = ("max", "pools")

    def __init__(self, max_connections: int):
        self.max = max_connections
        self.pools: list[Pool] = []

    @property
    def used(self) -> int:
        return sum(pool.size for pool in self.pools)

    def available(self) -> int:
        return self.max - self.used

    def released(self) -> None:
        """A slot came free: let a pool that has waiters use it."""
        for pool in self.pools:
            if pool.waiters:
                pool.serve_waiters()
                if self.available() <= 0:
                    return

    def others_waiting(self, pool: Pool) -> bool:
        for p in self.pools:  # noqa: SIM110 - a loop, not any() over a generator: this runs at every release
            if p.waiters and p is not pool:
                return True
        return False

    def reclaim_idle(self, needy: Pool) -> bool:
        """Close the longest-idle backend of another pool so `needy` can open one."""
        candidates = [(b.idle_since, b) for p in self.pools if p is not needy for b in p.idle]
        if not candidates:
            return False
        min(candidates, key=lambda c: c[0])[1].close(BackendCloseReason.RECLAIMED)
        return True


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


class Pool:
    def __init__(
        self,
        *,
        name: str,
        params: BackendParams,
        max_size: int,
        min_idle: int,
        max_lifetime: float,
        max_waiting: int,
        max_connecting: int,
        limiter: BackendLimiter,
        loop: asyncio.AbstractEventLoop,
        on_opened: Callable[[Opened], SessionState],
        next_backend_id: Callable[[], int],
        opener: Callable[..., Awaitable[Opened]] = open_backend,
    ):
        self.name = name
        self.params = params
        self.configured_max_size = max_size
        self.server_cap: int | None = None  # from the account's connection limits
        self._capacity_cap: int | None = None  # after a 1040/1226 from the server
        self._capacity_until = 0.0
        self.min_idle = min_idle
        self.max_lifetime = max_lifetime
        self.max_waiting = max_waiting
        self.max_connecting = max_connecting
        self.limiter = limiter
        self.loop = loop
        self._on_opened = on_opened
        self._next_id = next_backend_id
        self._opener = opener
        self.state = PoolState.RUNNING
        self.idle: list[BackendConnection] = []
        self.busy: set[BackendConnection] = set()
        self.pinging: set[BackendConnection] = set()  # busy: idle backends taken out for a keepalive ping
        self.opening: list[int] = []  # the key of each backend being opened
        self.closing: set[BackendConnection] = set()  # closed, socket still open (the server counts them)
        self.waiters: deque[Waiter] = deque()
        self.stats = PoolStats()
        self.last_error: str = ""  # the last connect error, until a connect succeeds
        self.last_error_code: int = 0
        self.last_error_at: float | None = None  # loop time of that error
        self._failures = 0
        self._failed_at = float("-inf")  # when the last connect attempt failed
        # Told of each failed connect (the pool, when the attempt started); set by the proxy.
        self.on_connect_failed: Callable[[Pool, float], None] = lambda pool, started: None
        self._backoff_until = 0.0
        self._backoff_timer: asyncio.TimerHandle | None = None
        self._serving = False
        self.generation = 0  # bumped when the config changes how backends connect
        self.statement_cache_size = 256  # per backend; set from [pool] prepared_statement_cache_size
        self.waits = WaitWatch()  # clients waiting long, logged as episodes (waits.py); the janitor checks it
        self._closes_logged: Counter = Counter()  # stats.closed as of the last recycling summary
        self.share: Callable[[int], int] = lambda total: total  # this worker's part of a server limit
        limiter.pools.append(self)

    def __repr__(self) -> str:
        return f"<Pool {self.name} {self.state.value} idle={len(self.idle)} busy={len(self.busy)} " \
               f"connecting={self.connecting} closing={len(self.closing)}>"

    @property
    def paused(self) -> bool:
        return self.state is PoolState.PAUSED

    @property
    def shut_down(self) -> bool:
        return self.state is PoolState.CLOSED

    @property
    def connecting(self) -> int:
        return len(self.opening)

    def _move(self, backend: BackendConnection, src: Place, dst: Place, index: int = -1) -> None:
        """The one place a backend changes collection. `index`: its position in `idle`, if known."""
        if src is _PLACE_IDLE:
            if index >= 0:
                del self.idle[index]
            else:
                self.idle.remove(backend)
        elif src is _PLACE_BUSY or src is _PLACE_PINGING:
            self.busy.remove(backend)
            self.pinging.discard(backend)
        elif src is _PLACE_CLOSING:
            self.closing.remove(backend)
        if dst is _PLACE_IDLE:
            self.idle.append(backend)
        elif dst is _PLACE_BUSY:
            self.busy.add(backend)
        elif dst is _PLACE_PINGING:
            self.busy.add(backend)
            self.pinging.add(backend)
        elif dst is _PLACE_CLOSING:
            self.closing.add(backend)

    @property
    def max_size(self) -> int:
        """The effective cap: configured, lowered by the server's limits and capacity errors."""
        cap = self.configured_max_size
        if self.server_cap is not None and self.server_cap < cap:
            cap = self.server_cap
        if self._capacity_cap is not None:
            if self.loop.time() < self._capacity_until:
                cap = min(cap, self._capacity_cap)
            else:
                self._capacity_cap = None
                log.info("pool %s: capacity hold over; back to max_size %d", self.name, cap)
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
                        self.name, self.configured_max_size, what, limit, cap)
        if cap is None and self.server_cap is not None:
            log.info("pool %s: the server's connection limits no longer cap it; back to max_size %d",
                     self.name, self.configured_max_size)
        self.server_cap = cap

    @property
    def failing(self) -> bool:
        """The last attempt to open a backend failed (and none succeeded since)."""
        return self._failures > 0

    @property
    def failures(self) -> int:
        """Connect attempts failed in a row."""
        return self._failures

    @property
    def size(self) -> int:
        return len(self.idle) + len(self.busy) + len(self.opening) + len(self.closing)

    # -- checkout ---------------------------------------------------------------

    def try_acquire(self, key: int, state: SessionState | None = None,
                    no_schema: bool = False) -> BackendConnection | None:
        """An idle backend right now, without waiting; None if there is none or others wait first.
        Among the most recently used, one already in `state` is preferred (no sync needed)."""
        if self.waiters or self.state is _POOL_PAUSED:  # (not self.paused: the hot path)
            return None
        backend = self._take_idle(key, state, no_schema)
        if backend is not None:
            self.stats.checkouts += 1
            self.stats.observe_wait(0.0)
        return backend

    def _take_idle(self, key: int, state: SessionState | None = None,
                   no_schema: bool = False) -> BackendConnection | None:
        """LIFO among the idle backends usable with `key`; for a client with no schema (`no_schema`, or
        `state` without one) only backends with none, since a schema cannot be unselected. Among the
        few most recent, one already in `state` wins (no sync)."""
        if state is not None and state.schema is None:
            no_schema = True
        idle = self.idle
        chosen = -1
        for i in range(len(idle) - 1, max(-1, len(idle) - 1 - RECENT), -1):
            b = idle[i]
            if not _usable(b, key, no_schema):
                continue
            if state is None or b.session.same_as(state):
                chosen = i
                break
            if chosen < 0:
                chosen = i
        else:
            if chosen < 0:
                chosen = next((i for i in range(len(idle) - 1 - RECENT, -1, -1) if _usable(idle[i], key, no_schema)),
                              -1)
        if chosen < 0:
            return None
        backend = idle[chosen]
        self._move(backend, _PLACE_IDLE, _PLACE_BUSY, chosen)
        backend.set_state(_BACKEND_RESERVED)
        return backend

    async def acquire(self, key: int, timeout: float, no_schema: bool = False) -> BackendConnection:
        """Wait (FIFO, up to `timeout`) for a backend with `key` (and no schema selected, if asked)."""
        backend = self.try_acquire(key, no_schema=no_schema)
        if backend is not None:
            return backend
        future = self.loop.create_future()

        def deliver(backend: BackendConnection | None, exc: Exception | None) -> None:
            if future.cancelled():  # the awaiting task is gone: give the backend back
                if backend is not None:
                    self.loop.call_soon(self.give_back, backend)
            elif exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(backend)

        waiter = self.enqueue(key, timeout, deliver, no_schema)
        try:
            return await future
        except asyncio.CancelledError:
            self.cancel_wait(waiter)
            if future.done() and not future.cancelled() and future.exception() is None:
                self.give_back(future.result())  # handed just before the task was cancelled
            raise

    def enqueue(self, key: int, timeout: float,
                deliver: Callable[[BackendConnection | None, Exception | None], None],
                no_schema: bool = False) -> Waiter:
        """Queue a checkout (FIFO, up to `timeout`); `deliver` gets the backend or the error.
        `no_schema`: only a backend with no schema selected will do. Raises QueueFull at once
        when `max_waiting_clients` already wait."""
        if len(self.waiters) >= self.max_waiting:
            raise QueueFull(f"{len(self.waiters)} clients are already waiting")
        waiter = Waiter(key, deliver, self.loop.time(), no_schema)
        waiter.timer = self.loop.call_later(timeout, self._expire_waiter, waiter)
        self.waiters.append(waiter)
        self._retry_soon_for(timeout)
        self.serve_waiters()
        return waiter

    def cancel_wait(self, waiter: Waiter) -> None:
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

    def give_back(self, backend: BackendConnection) -> None:
        """A backend handed to a waiter that was gone by the time it arrived."""
        if not backend.closed and backend.holder is None:
            self.release(backend)

    def _expire_waiter(self, waiter: Waiter) -> None:
        waiter.timer = None
        if waiter.done:
            return
        try:
            self.waiters.remove(waiter)
        except ValueError:
            pass
        waiter.done = True
        waited = self.loop.time() - waiter.enqueued_at
        self.waits.timed_out(waited)
        waiter.deliver(None, CheckoutTimeout(waited, self.describe_shortage()))

    def oldest_wait(self, now: float) -> float:
        """Seconds the longest-waiting client has waited (the queue is FIFO), 0 with none waiting."""
        return now - self.waiters[0].enqueued_at if self.waiters else 0.0

    def describe_shortage(self) -> str:
        parts = [f"max_size {self.max_size}", f"{len(self.busy)} in use", f"{len(self.waiters)} waiting"]
        if self.paused:
            parts.append("pool paused")
        if self.last_error and self._failures:
            parts.append(f"last connect error: {self.last_error}")
        return ", ".join(parts)

    def _hand(self, waiter: Waiter, backend: BackendConnection) -> None:
        if waiter.timer is not None:
            waiter.timer.cancel()
            waiter.timer = None
        waiter.done = True
        self.stats.checkouts += 1
        waited = self.loop.time() - waiter.enqueued_at
        self.stats.observe_wait(waited)
        self.waits.served(waited)
        waiter.deliver(backend, None)

    def serve_waiters(self) -> None:
        """Give idle backends to waiters in order; open more if allowed and needed."""
        if self.state is not _POOL_RUNNING or self._serving:
            return
        self._serving = True
        try:
            self._serve_waiters()
        finally:
            self._serving = False

    def _serve_waiters(self) -> None:
        waiters = self.waiters
        while waiters:
            w = waiters[0]
            if w.done:
                waiters.popleft()
                continue
            backend = self._take_idle(w.key, no_schema=w.no_schema)
            if backend is None:
                break
            waiters.popleft()
            self._hand(w, backend)
        if waiters:
            self._open_for_waiters()

    def _open_for_waiters(self) -> None:
        now = self.loop.time()
        if now < self._backoff_until:
            return
        if self.size >= self.max_size and not self.idle:
            # Full, nothing idle to exchange (the usual case under load): only a backend held
            # for a last statement's diagnostics can come back now. Counting the waiters by
            # key here would cost O(waiters) on every checkout and release.
            self._take_soft_pinned()
            return
        pending = Counter(w.key for w in self.waiters if not w.done)
        head = self.waiters[0]  # the first waiter may need an idle backend exchanged
        at_once = 1 if self._failures else self.max_connecting  # while failing, one attempt at a time
        for key, count in pending.items():
            missing = count - self.opening.count(key)
            while missing > 0 and self.connecting < at_once:
                if not self._make_room(key, head.no_schema and key == head.key):
                    return
                self._start_open(key)
                missing -= 1

    def take_exact(self, backend: BackendConnection | None, owner: tuple[int, int]) -> BackendConnection | None:
        """This particular idle backend, if nothing ran on it since `owner`'s statement."""
        if backend is None or backend.last_owner != owner or backend.state is not BackendState.IDLE \
                or backend.pool is not self or self.waiters or self.paused:
            return None
        self._move(backend, Place.IDLE, Place.BUSY)
        backend.set_state(BackendState.RESERVED)
        self.stats.checkouts += 1
        self.stats.observe_wait(0.0)
        return backend

    def _take_soft_pinned(self) -> bool:
        """At the cap with clients waiting: take back a backend only held for a last statement's
        diagnostics (the soft pin) from an idle client."""
        for backend in self.busy:
            if backend.state is BackendState.RESERVED:  # most are BUSY running a statement
                client = backend.holder
                if client is not None and client.yield_soft_backend():
                    return True
        return False

    def _make_room(self, key: int, no_schema: bool = False) -> bool:
        """True if one more backend may be opened now (closing an idle one the waiters cannot use
        if needed: another key's, or one with a schema for a client with none)."""
        if self.size >= self.max_size:
            other = next((b for b in self.idle if not _usable(b, key, no_schema)), None)
            if other is None:
                self._take_soft_pinned()
                return False
            other.close(BackendCloseReason.RECLAIMED)
        if self.limiter.available() <= 0 and not self.limiter.reclaim_idle(self):
            return False
        return self.size < self.max_size and self.limiter.available() > 0

    # -- opening ----------------------------------------------------------------

    def _start_open(self, key: int) -> None:
        self.opening.append(key)
        self.loop.create_task(self._open(key))

    async def open_now(self, key: int = 0, *, want_collations: bool = False) -> bool:
        """Open one backend now if the caps allow (used at start to learn the server)."""
        if self.size >= self.max_size or self.limiter.available() <= 0 or self.shut_down:
            return False
        self.opening.append(key)
        return await self._open(key, want_collations)

    def params_for(self, key: int) -> BackendParams:
        return replace(self.params, found_rows=bool(key & CLIENT.FOUND_ROWS),
                       local_files=bool(key & CLIENT.LOCAL_FILES), ps_multi_results=bool(key & CLIENT.PS_MULTI_RESULTS),
                       extended_metadata=bool(key & MARIADB_CLIENT_EXTENDED_METADATA))

    async def _open(self, key: int, want_collations: bool = False) -> bool:
        started = self.loop.time()
        try:
            opened = await self._opener(self.params_for(key), want_collations=want_collations)
        except Exception as exc:  # every connect failure is handled the same way: back off
            self.opening.remove(key)
            self._connect_failed(exc, started)
            self.limiter.released()
            return False
        self.opening.remove(key)
        self._end_failures()
        self.last_error, self.last_error_code, self.last_error_at = "", 0, None  # recovered
        self.stats.connects += 1
        self.learn_limits(opened.max_user_connections, opened.max_connections)
        session = self._on_opened(opened)
        backend = BackendConnection(
            backend_id=self._next_id(), pool=self, key=key, thread_id=opened.thread_id, session=session,
            created_at=self.loop.time(), lifetime=self.max_lifetime, loop=self.loop,
        )
        self._move(backend, Place.NONE, Place.BUSY)
        backend.attach(opened.transport, opened.handoff)
        if backend.closed:
            return False
        if self.shut_down:
            backend.close(BackendCloseReason.SHUTDOWN)
            return False
        self.release(backend)
        if self.waiters:
            self.serve_waiters()  # more waiters than the opens in flight: open more
        return True

    def _connect_failed(self, exc: Exception, started: float) -> None:
        code, message = _describe_error(exc)
        self.stats.connect_errors[code] += 1
        if code in CAPACITY_ERRORS:
            self._hold_capacity(message)
        self._failures += 1
        self._failed_at = self.loop.time()
        delay = self._backoff_delay()
        if message != self.last_error or self._failures in (1, 10) or self._failures % 100 == 0:
            log_event(log, "warning", f"pool {self.name}: backend connect failed ({message}); attempt "
                      f"{self._failures}, retrying in {delay:.2f}s", pool=self.name, code=code, error=message,
                      attempt=self._failures, retry_in_s=round(delay, 3))
            record(EventKind.CONNECT_FAILED, f"backend connect failed ({message}); attempt {self._failures}",
                   self.name)
        self.last_error, self.last_error_code, self.last_error_at = message, code, self.loop.time()
        self._back_off(delay)
        self.on_connect_failed(self, started)

    def _backoff_delay(self) -> float:
        """Exponential in the failures so far, capped lower while clients wait; with jitter."""
        cap = WAITING_BACKOFF_CAP if self.waiters else BACKOFF_CAP
        return min(cap, BACKOFF_BASE * 2 ** min(self._failures - 1, 16)) * random.uniform(0.5, 1.0)

    def _back_off(self, delay: float) -> None:
        """Open no backend for `delay` seconds (one timer; a longer backoff already running stays)."""
        self._backoff_until = max(self._backoff_until, self.loop.time() + delay)
        if self._backoff_timer is None:
            self._backoff_timer = self.loop.call_later(delay, self._backoff_over)

    def _retry_soon_for(self, timeout: float) -> None:
        """A client starts waiting `timeout` while the pool backs off after a failure: the next
        attempt comes within WAITING_BACKOFF_CAP of that failure (at once if it was longer ago),
        and within the first half of this client's wait."""
        if not self._failures or self._backoff_until <= self.loop.time():
            return
        now = self.loop.time()
        soon = self._failed_at + WAITING_BACKOFF_CAP * random.uniform(0.5, 1.0)
        at = max(now, min(soon, now + timeout / 2))
        if at >= self._backoff_until:
            return
        self._backoff_until = at  # at == now: the enqueue's serve_waiters() opens one at once
        if self._backoff_timer is not None:
            self._backoff_timer.cancel()
            self._backoff_timer = None
        if at > now:
            self._backoff_timer = self.loop.call_at(at, self._backoff_over)

    def _end_failures(self) -> None:
        """A connect succeeded, or the way to connect changed: the failures say nothing about the
        next attempt any more, and their backoff is over (its timer finds nothing left to wait for)."""
        if self._failures:
            self._failures = 0
            self._backoff_until = min(self._backoff_until, self.loop.time())

    def refuse_waiters(self, exc: Exception, arrived_after: float, arrived_by: float) -> int:
        """Hand `exc` to the clients that started waiting after `arrived_after` and by `arrived_by`
        (the proxy knows they would wait for nothing); returns how many."""
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
            self.waits.refused(self.loop.time() - w.enqueued_at)
            w.deliver(None, exc)
        return len(told)

    def _hold_capacity(self, message: str) -> None:
        current = len(self.idle) + len(self.busy)
        if self._capacity_cap is None:
            log_event(log, "warning", f"pool {self.name}: the server refused a new connection ({message}); holding "
                      f"the pool at {max(1, current)} connections for {CAPACITY_HOLD:.0f}s, clients wait for those",
                      pool=self.name, error=message, held_at=max(1, current))
            record(EventKind.CAPACITY_HOLD, f"the server refused a new connection ({message})", self.name)
        self._capacity_cap = max(1, current)
        self._capacity_until = self.loop.time() + CAPACITY_HOLD

    def _backoff_over(self) -> None:
        self._backoff_timer = None
        remaining = self._backoff_until - self.loop.time()
        if remaining > 0:  # a later failure extended the backoff while this timer ran
            self._backoff_timer = self.loop.call_later(remaining, self._backoff_over)
            return
        self.serve_waiters()
        self.ensure_min_idle()

    # -- release and close --------------------------------------------------------

    def release(self, backend: BackendConnection) -> None:
        """Take back a clean backend (state RESERVED, no client state on it)."""
        if backend.closed:
            return
        backend.detach()  # its last client may have paused it or been paused by it: nobody inherits that
        if backend.unsent:
            backend.close(BackendCloseReason.DIRTY)  # the rest of a command would reach the next client's
            return
        now = self.loop.time()
        backend.last_used = now
        retire = self._retire_reason(backend, now)
        if retire is not None:
            backend.close(retire)
            return
        if self.state is not _POOL_PAUSED:
            for w in self.waiters:
                if w.done or w.key != backend.key:
                    continue
                if _usable(backend, w.key, w.no_schema):
                    self.waiters.remove(w)
                    self._hand(w, backend)
                else:
                    # The first in line needs a backend with no schema: exchange this one for a new
                    # one, which is theirs when it opens (a schema cannot be unselected).
                    backend.close(BackendCloseReason.RECLAIMED)
                return
        if self.limiter.others_waiting(self) and self.limiter.available() <= 0:
            # At the global cap another pool's clients wait: this slot is theirs.
            backend.close(BackendCloseReason.RECLAIMED)
            return
        self._move(backend, _PLACE_BUSY, _PLACE_IDLE)
        backend.set_state(_BACKEND_IDLE)
        backend.idle_since = now
        if self.waiters:
            self.serve_waiters()

    def _retire_reason(self, backend: BackendConnection, now: float) -> BackendCloseReason | None:
        if self.state is _POOL_CLOSED:
            return BackendCloseReason.SHUTDOWN
        if self.state is _POOL_PAUSED:
            return BackendCloseReason.PAUSED
        if backend.generation != self.generation:
            return BackendCloseReason.RELOAD
        if now >= backend.expires_at:
            return BackendCloseReason.MAX_LIFETIME
        if self.size > self.max_size:
            return BackendCloseReason.RECLAIMED  # the cap went down (reload, server limits)
        return None

    def expired(self, backend: BackendConnection, now: float) -> bool:
        """Should this backend be closed rather than reused the next time it is free?"""
        return self._retire_reason(backend, now) is not None

    def pause(self) -> None:
        """New checkouts wait; idle backends close now and busy ones when released."""
        if self.state is not PoolState.RUNNING:
            return
        self.state = PoolState.PAUSED
        log.info("pool %s paused: %d backends in use will close as their transactions end", self.name, len(self.busy))
        record(EventKind.PAUSE, f"paused: {len(self.busy)} backends in use close as their transactions end", self.name)
        self.close_idle(BackendCloseReason.PAUSED)

    def resume(self) -> None:
        if self.state is not PoolState.PAUSED:
            return
        self.state = PoolState.RUNNING
        log.info("pool %s resumed: %d clients waiting", self.name, len(self.waiters))
        record(EventKind.RESUME, f"resumed: {len(self.waiters)} clients waiting", self.name)
        self.serve_waiters()
        self.ensure_min_idle()

    def reconfigure(self, params: BackendParams, *, max_size: int, min_idle: int, max_lifetime: float,
                    max_waiting: int, max_connecting: int) -> None:
        """Apply a reloaded config; backends that connect differently retire as they come free."""
        if params != self.params:
            self.params = params
            self.generation += 1
            self.close_idle(BackendCloseReason.RELOAD)
            self._end_failures()  # (a refused login, say, was the old password's)
        self.configured_max_size = max_size
        self.min_idle = min_idle
        self.max_lifetime = max_lifetime
        self.max_waiting = max_waiting
        self.max_connecting = max_connecting
        for backend in list(self.idle):
            if self.size > self.max_size:
                backend.close(BackendCloseReason.RECLAIMED)
        self.serve_waiters()

    def on_backend_closed(self, backend: BackendConnection, previous: BackendState) -> None:
        """Bookkeeping for a backend that closed, whoever closed it and why."""
        self._move(backend, Place.IDLE if previous is BackendState.IDLE else Place.BUSY, Place.CLOSING)
        reason = backend.close_reason or BackendCloseReason.ERROR
        self.stats.closed[reason.value] += 1
        if reason is BackendCloseReason.SERVER_GONE and self.loop.time() - backend.created_at < EARLY_DEATH:
            # Closed right after opening (a DBA's KILL, say): back off before opening more, don't
            # storm. Not a connect failure: the server did answer (the health probe checks it still does).
            self._back_off(BACKOFF_BASE * random.uniform(0.5, 1.0))
        log.debug("pool %s: backend #%d (thread %d) closed: %s", self.name, backend.id, backend.thread_id, reason.value)

    def on_backend_gone(self, backend: BackendConnection) -> None:
        """A closed backend's socket is closed too: its slot may be used again."""
        self._move(backend, Place.CLOSING, Place.NONE)
        if self.waiters:
            self.serve_waiters()
        self.limiter.released()

    # -- maintenance ----------------------------------------------------------------

    def maintain(self, now: float, idle_timeout: float) -> None:
        """Janitor pass: retire idle backends past their lifetime; past idle_timeout, close the
        ones above min_idle and ping the rest (so the server's wait_timeout never ends them)."""
        keep = self.min_idle
        for backend in reversed(list(self.idle)):  # most recently used first: they are kept
            if now >= backend.expires_at:
                backend.close(BackendCloseReason.MAX_LIFETIME)
            elif now - backend.idle_since < idle_timeout:
                keep -= 1
            elif keep > 0:
                keep -= 1
                self._keepalive(backend)
            else:
                backend.close(BackendCloseReason.IDLE_TIMEOUT)
        self.ensure_min_idle()

    def _keepalive(self, backend: BackendConnection) -> None:
        self._move(backend, Place.IDLE, Place.PINGING)
        backend.set_state(BackendState.RESERVED)
        self.loop.create_task(self._ping_then_release(backend))

    async def _ping_then_release(self, backend: BackendConnection) -> None:
        started = self.loop.time()
        try:
            result = await backend.run_internal(b"\x0e", Expect.SIMPLE, self.params.connect_timeout)
        except BackendGone:
            return
        self.stats.ping_time.observe(self.loop.time() - started)
        if result.error is not None:
            backend.close(BackendCloseReason.PING_FAILED)
            return
        backend.last_used = self.loop.time()
        self.release(backend)

    async def ping_idle(self) -> bool | None:
        """Ping the most recently used idle backend for the health probe. A probe is not use: the
        backend's idle time still runs toward idle_timeout. True: the server answered; False: no
        answer within connect_timeout (the backend is closed); None: no backend idle, or the
        server closed it meanwhile (which says nothing about the server now)."""
        if not self.idle or self.state is not PoolState.RUNNING:
            return None
        backend = self.idle[-1]
        idle_since = backend.idle_since
        self._move(backend, Place.IDLE, Place.PINGING, len(self.idle) - 1)
        backend.set_state(BackendState.RESERVED)
        started = self.loop.time()
        try:
            result = await backend.run_internal(b"\x0e", Expect.SIMPLE, self.params.connect_timeout)
        except BackendGone as gone:
            return False if gone.reason is BackendCloseReason.ERROR else None
        self.stats.ping_time.observe(self.loop.time() - started)
        if result.error is not None:
            backend.close(BackendCloseReason.PING_FAILED)
            return True  # an error, but an answer
        self.release(backend)
        if backend.state is BackendState.IDLE:
            backend.idle_since = idle_since
        return True

    def log_recycling(self) -> None:
        """One line summing up the backends closed since the last call (the janitor calls it)."""
        closed = self.stats.closed
        delta = {reason: closed[reason] - self._closes_logged[reason] for reason in closed
                 if closed[reason] != self._closes_logged[reason]}
        if delta:
            self._closes_logged = Counter(closed)
            log.info("pool %s: closed %d backend connections (%s); %d open", self.name, sum(delta.values()),
                     ", ".join(f"{reason} {n}" for reason, n in sorted(delta.items())), self.size)

    def ensure_min_idle(self) -> None:
        """Keep min_idle backends ready, counting ones about to expire as already gone."""
        if not self.min_idle or self.state is not PoolState.RUNNING or self.loop.time() < self._backoff_until:
            return
        soon = self.loop.time() + EXPIRY_LEAD
        ready = sum(1 for b in self.idle if b.expires_at > soon) + len(self.pinging)
        while (ready + self.connecting < self.min_idle and self.size < self.max_size
               and self.limiter.available() > 0 and self.connecting < self.max_connecting):
            self._start_open(0)

    def close_idle(self, reason: BackendCloseReason) -> None:
        for backend in list(self.idle):
            backend.close(reason)

    def close(self) -> None:
        """Stop: refuse waiters, close idle backends now; busy ones close at release."""
        self.state = PoolState.CLOSED
        waiters = list(self.waiters)
        self.waiters.clear()
        for w in waiters:
            if not w.done:
                w.done = True
                if w.timer is not None:
                    w.timer.cancel()
                    w.timer = None
                w.deliver(None, CheckoutTimeout(0.0, "the proxy is shutting down"))
        self.close_idle(BackendCloseReason.SHUTDOWN)
        if self._backoff_timer is not None:
            self._backoff_timer.cancel()
            self._backoff_timer = None


def _usable(backend: BackendConnection, key: int, no_schema: bool) -> bool:
    """Can a client with `key` (and no schema, if `no_schema`) use this backend?"""
    return backend.key == key and not (no_schema and backend.session.schema is not None)


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

"""Backend pools: one per backend user, hard-capped, with a FIFO of waiting clients.

`Pool` is what the other layers use of a pool: checkout (`try_acquire`,
`take_exact`, `acquire`, `enqueue`), `release`, the backends' callbacks
(`on_backend_closed`, `on_backend_gone`), pause, resume, reload and close.
It decides; its parts each own one piece of state and know nothing of each
other's:

* `places` (places.py): the collections `idle`, `busy` (`pinging` among
  them) and `closing`, and `Places.move()`, the one method that moves a
  backend between them;
* `connector` (opening.py): `opening`, the key of each connect in flight,
  and the backoff and last error of failing connects;
* `capacity` (capacity.py): `max_size`, configured and adapted to the
  server's connection limits;
* `queue` (waiters.py): the clients waiting, first come first served, each
  with a deadline, bounded by `max_waiting_clients`;
* `upkeep` (upkeep.py): keepalive pings and idle expiry (the janitor's
  `maintain`), the health probe's ping, the recycling log line;
* `stats` (stats.py): the counters the metrics read.

Every size is the length of a collection: the pool's `size` is the sum of
idle, busy, opening and closing and never exceeds `max_size`; all pools
together never exceed `[backend] max_connections` (the `BackendLimiter`,
whose use is the sum of its pools' sizes). Whether the pool runs, is paused
or is shut down is its `state` (PoolState), not a collection.

Backends differ by `key`: the capability bits that change what goes over the
wire (CLIENT_FOUND_ROWS, CLIENT_LOCAL_FILES, CLIENT_PS_MULTI_RESULTS, and
MariaDB's EXTENDED_METADATA, with which every column definition carries one
more field). A client only gets a backend with its key; at the cap, an idle
backend of another key is closed to make room (`RECLAIMED`).

Clients that find no idle backend wait in the queue. Backends are opened in
the background, at most `max_connecting` at a time (one at a time while
connects fail), and each one that arrives goes to the first waiter that can
use it. Each failed connect is reported to `on_connect_failed`, with the
time the attempt started: the proxy decides which of the clients that were
waiting by then need not wait any longer, and hands them their error with
`refuse_waiters`.

Release never hands back a dirty backend: the caller resets or closes it
first. A backend past `max_lifetime`, or of an older config, or above a
lowered cap, is closed at release instead of reused (`_retire_reason`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Final

from ..constants import CLIENT, MARIADB_CLIENT_EXTENDED_METADATA
from ..core.session import SessionState
from ..core.states import BackendState
from ..events import EventKind, record
from ..reasons import BackendCloseReason
from .adapter import BackendParams, Opened, open_backend
from .capacity import CAPACITY_ERRORS, Capacity
from .connection import BackendConnection, Owner
from .opening import BACKOFF_BASE, Connector
from .places import Place, Places, usable
from .stats import WAIT_BUCKETS, PoolStats
from .upkeep import Upkeep
from .waiters import CheckoutTimeout, QueueFull, Waiter, WaitQueue

__all__ = ["Pool", "PoolState", "BackendLimiter", "CheckoutTimeout", "QueueFull", "PoolStats", "WAIT_BUCKETS",
           "Waiter", "CAPACITY_ERRORS", "KEY_BITS"]

log = logging.getLogger("mysqlpool.pool")

# Wire-semantic capability bits a backend must share with its client.
KEY_BITS: Final = CLIENT.FOUND_ROWS | CLIENT.LOCAL_FILES | CLIENT.PS_MULTI_RESULTS | MARIADB_CLIENT_EXTENDED_METADATA

EARLY_DEATH: Final = 1.0  # seconds: a backend the server closes sooner makes the pool back off before opening more
EXPIRY_LEAD: Final = 2.0  # seconds before an idle backend's lifetime ends that its min_idle replacement opens


class PoolState(enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"  # checkouts wait; backends close as they come free
    CLOSED = "closed"  # shut down: waiters refused, backends close as they come free


# The members checkout and release compare with, as module globals: on Python 3.11 reading
# `Place.IDLE` runs EnumType's __getattr__ hook, ~20 times a global's cost.
_PLACE_IDLE: Final = Place.IDLE
_PLACE_BUSY: Final = Place.BUSY
_POOL_RUNNING: Final = PoolState.RUNNING
_POOL_PAUSED: Final = PoolState.PAUSED
_POOL_CLOSED: Final = PoolState.CLOSED
_BACKEND_IDLE: Final = BackendState.IDLE


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


class Pool(Owner):
    __slots__ = (
        "name", "params", "generation", "min_idle", "max_lifetime", "max_connecting", "statement_cache_size",
        "limiter", "loop", "state", "on_connect_failed", "stats", "places", "capacity", "connector", "queue",
        "upkeep", "idle", "busy", "pinging", "closing", "opening", "waiters", "waits", "_on_opened", "_next_id",
        "_serving", "usual_key",
    )

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
        share: Callable[[int], int] = lambda total: total,  # this worker's part of a server limit
    ):
        self.name = name
        self.params = params
        self.generation = 0  # bumped when the config changes how backends connect
        self.min_idle = min_idle
        self.max_lifetime = max_lifetime
        self.max_connecting = max_connecting
        self.statement_cache_size = 256  # per backend; set from [pool] prepared_statement_cache_size
        self.limiter = limiter
        self.loop = loop
        self.state = PoolState.RUNNING
        # Told of each failed connect (the pool, when the attempt started); set by the proxy.
        self.on_connect_failed: Callable[[Pool, float], None] = lambda pool, started: None
        self._on_opened = on_opened
        self._next_id = next_backend_id
        self._serving = False
        self.usual_key = 0  # the key of the latest checkout: what min_idle backends are opened with
        self.stats = PoolStats()
        self.places = Places()
        self.capacity = Capacity(name, max_size, loop, self.places, share)
        self.queue = WaitQueue(max_waiting=max_waiting, loop=loop, stats=self.stats, shortage=self.describe_shortage)
        self.connector = Connector(name=name, loop=loop, opener=opener, stats=self.stats, capacity=self.capacity,
                                   waiters=self.queue.waiters, on_backoff_over=self._backoff_over)
        self.upkeep = Upkeep(name=name, loop=loop, places=self.places, stats=self.stats, release=self.release)
        # The parts' collections, read here (and by the proxy's status and metrics) as the pool's own;
        # each changes only in its owner.
        self.idle = self.places.idle
        self.busy = self.places.busy
        self.pinging = self.places.pinging
        self.closing = self.places.closing
        self.opening = self.connector.opening
        self.waiters = self.queue.waiters
        self.waits = self.queue.watch
        limiter.pools.append(self)

    def __repr__(self) -> str:
        return f"<Pool {self.name} {self.state.value} idle={len(self.idle)} busy={len(self.busy)} " \
               f"connecting={self.connecting} closing={len(self.closing)}>"

    # -- what the other layers read -----------------------------------------------

    @property
    def paused(self) -> bool:
        return self.state is PoolState.PAUSED

    @property
    def shut_down(self) -> bool:
        return self.state is PoolState.CLOSED

    @property
    def size(self) -> int:
        return len(self.idle) + len(self.busy) + len(self.opening) + len(self.closing)

    @property
    def connecting(self) -> int:
        return len(self.opening)

    @property
    def max_size(self) -> int:
        """The effective cap: configured, lowered by the server's limits and capacity errors."""
        return self.capacity.max_size

    @property
    def configured_max_size(self) -> int:
        return self.capacity.configured_max_size

    @property
    def server_cap(self) -> int | None:
        return self.capacity.server_cap

    @property
    def max_waiting(self) -> int:
        return self.queue.max_waiting

    @property
    def failing(self) -> bool:
        """The last attempt to open a backend failed (and none succeeded since)."""
        return self.connector.failures > 0

    @property
    def failures(self) -> int:
        """Connect attempts failed in a row."""
        return self.connector.failures

    @property
    def last_error(self) -> str:
        """The last connect error, until a connect succeeds."""
        return self.connector.last_error

    @property
    def last_error_code(self) -> int:
        return self.connector.last_error_code

    @property
    def last_error_at(self) -> float | None:
        return self.connector.last_error_at

    # -- checkout ---------------------------------------------------------------

    def try_acquire(self, key: int, state: SessionState | None = None,
                    no_schema: bool = False) -> BackendConnection | None:
        """An idle backend right now, without waiting; None if there is none or others wait first.
        Among the most recently used, one already in `state` is preferred (no sync needed)."""
        self.usual_key = key
        if self.waiters or self.state is _POOL_PAUSED:  # (not self.paused: the hot path)
            return None
        backend = self.places.take_idle(key, state, no_schema)
        if backend is not None:
            self.stats.checkouts += 1
            self.stats.observe_wait(0.0)
        return backend

    def take_exact(self, backend: BackendConnection | None, owner: tuple[int, int]) -> BackendConnection | None:
        """This particular idle backend, if nothing ran on it since `owner`'s statement."""
        if backend is None or backend.last_owner != owner or backend.state is not BackendState.IDLE \
                or backend.pool is not self or self.waiters or self.paused:
            return None
        self.places.move(backend, Place.IDLE, Place.BUSY)
        backend.set_state(BackendState.RESERVED)
        self.stats.checkouts += 1
        self.stats.observe_wait(0.0)
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
        self.usual_key = key
        waiter = self.queue.add(key, timeout, deliver, no_schema)
        self.connector.retry_soon_for(timeout)
        self.serve_waiters()
        return waiter

    def cancel_wait(self, waiter: Waiter) -> None:
        """The waiter gave up (its client closed); a backend already delivered is the caller's."""
        self.queue.cancel(waiter)

    def give_back(self, backend: BackendConnection) -> None:
        """A backend handed to a waiter that was gone by the time it arrived."""
        if not backend.closed and backend.holder is None:
            self.release(backend)

    def refuse_waiters(self, exc: Exception, arrived_after: float, arrived_by: float) -> int:
        """Hand `exc` to the clients that started waiting after `arrived_after` and by `arrived_by`
        (the proxy knows they would wait for nothing); returns how many."""
        return self.queue.refuse(exc, arrived_after, arrived_by)

    def oldest_wait(self, now: float) -> float:
        """Seconds the longest-waiting client has waited (the queue is FIFO), 0 with none waiting."""
        return self.queue.oldest_wait(now)

    def describe_shortage(self) -> str:
        parts = [f"max_size {self.max_size}", f"{len(self.busy)} in use", f"{len(self.waiters)} waiting"]
        if self.paused:
            parts.append("pool paused")
        if self.last_error and self.connector.failures:
            parts.append(f"last connect error: {self.last_error}")
        return ", ".join(parts)

    def serve_waiters(self) -> None:
        """Give idle backends to waiters in order; open more if allowed and needed."""
        if self.state is not _POOL_RUNNING or self._serving:
            return
        self._serving = True
        try:
            if self.queue.serve(self.places.take_idle):
                self._open_for_waiters()
        finally:
            self._serving = False

    def _open_for_waiters(self) -> None:
        now = self.loop.time()
        if now < self.connector.backoff_until:
            return
        if self.size >= self.max_size and not self.idle:
            # Full, nothing idle to exchange (the usual case under load): only a backend held
            # for a last statement's diagnostics can come back now. Counting the waiters by
            # key here would cost O(waiters) on every checkout and release.
            self._take_soft_pinned()
            return
        pending = self.queue.pending()
        head = self.waiters[0]  # the first waiter may need an idle backend exchanged
        at_once = 1 if self.connector.failures else self.max_connecting  # while failing, one attempt at a time
        for key, count in pending.items():
            missing = count - self.opening.count(key)
            while missing > 0 and self.connecting < at_once:
                if not self._make_room(key, head.no_schema and key == head.key):
                    return
                self._start_open(key)
                missing -= 1

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
            other = next((b for b in self.idle if not usable(b, key, no_schema)), None)
            if other is None:
                self._take_soft_pinned()
                return False
            other.close(BackendCloseReason.RECLAIMED)
        if self.limiter.available() <= 0 and not self.limiter.reclaim_idle(self):
            return False
        return self.size < self.max_size and self.limiter.available() > 0

    # -- opening ----------------------------------------------------------------

    def _start_open(self, key: int) -> None:
        self.connector.begin(key)
        self.loop.create_task(self._open(key))

    async def open_now(self, key: int = 0, *, want_collations: bool = False) -> bool:
        """Open one backend now if the caps allow (used at start to learn the server)."""
        if self.size >= self.max_size or self.limiter.available() <= 0 or self.shut_down:
            return False
        self.connector.begin(key)
        return await self._open(key, want_collations)

    def params_for(self, key: int) -> BackendParams:
        return replace(self.params, found_rows=bool(key & CLIENT.FOUND_ROWS),
                       local_files=bool(key & CLIENT.LOCAL_FILES), ps_multi_results=bool(key & CLIENT.PS_MULTI_RESULTS),
                       extended_metadata=bool(key & MARIADB_CLIENT_EXTENDED_METADATA))

    async def _open(self, key: int, want_collations: bool = False) -> bool:
        """The connect `connector.begin(key)` announced; a new backend goes to a waiter or to idle."""
        started = self.loop.time()
        opened = await self.connector.connect(key, self.params_for(key), want_collations)
        if opened is None:
            self.on_connect_failed(self, started)
            self.limiter.released()
            return False
        self.capacity.learn_limits(opened.max_user_connections, opened.max_connections)
        session = self._on_opened(opened)
        backend = BackendConnection(
            backend_id=self._next_id(), pool=self, key=key, thread_id=opened.thread_id, session=session,
            created_at=self.loop.time(), lifetime=self.max_lifetime, loop=self.loop,
        )
        self.places.move(backend, Place.NONE, Place.BUSY)
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

    def _backoff_over(self) -> None:
        self.serve_waiters()
        self.ensure_min_idle()

    def ensure_min_idle(self) -> None:
        """Keep min_idle backends ready, counting ones about to expire as already gone; new ones get
        the key clients asked for last (a pool's clients are usually of one driver, so of one key)."""
        if not self.min_idle or self.state is not PoolState.RUNNING or self.loop.time() < self.connector.backoff_until:
            return
        soon = self.loop.time() + EXPIRY_LEAD
        key = self.usual_key
        ready = sum(1 for b in self.idle if b.expires_at > soon and b.key == key) + len(self.pinging)
        while (ready + self.connecting < self.min_idle and self.size < self.max_size
               and self.limiter.available() > 0 and self.connecting < self.max_connecting):
            self._start_open(key)

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
        if self.waiters and self.state is not _POOL_PAUSED:
            waiter = self.queue.first_for(backend.key)
            if waiter is not None:
                if usable(backend, waiter.key, waiter.no_schema):
                    self.queue.hand(waiter, backend)
                else:
                    # The first in line needs a backend with no schema: exchange this one for a new
                    # one, which is theirs when it opens (a schema cannot be unselected).
                    backend.close(BackendCloseReason.RECLAIMED)
                return
        if self.limiter.others_waiting(self) and self.limiter.available() <= 0:
            # At the global cap another pool's clients wait: this slot is theirs.
            backend.close(BackendCloseReason.RECLAIMED)
            return
        self.places.move(backend, _PLACE_BUSY, _PLACE_IDLE)
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
        if self.size > self.capacity.max_size:
            return BackendCloseReason.RECLAIMED  # the cap went down (reload, server limits)
        return None

    def expired(self, backend: BackendConnection, now: float) -> bool:
        """Should this backend be closed rather than reused the next time it is free?"""
        return self._retire_reason(backend, now) is not None

    def on_backend_closed(self, backend: BackendConnection, previous: BackendState) -> None:
        """Bookkeeping for a backend that closed, whoever closed it and why."""
        self.places.move(backend, Place.IDLE if previous is BackendState.IDLE else Place.BUSY, Place.CLOSING)
        reason = backend.close_reason or BackendCloseReason.ERROR
        self.stats.closed[reason.value] += 1
        if reason is BackendCloseReason.SERVER_GONE and self.loop.time() - backend.created_at < EARLY_DEATH:
            # Closed right after opening (a DBA's KILL, say): back off before opening more, don't
            # storm. Not a connect failure: the server did answer (the health probe checks it still does).
            self.connector.back_off(BACKOFF_BASE * random.uniform(0.5, 1.0))
        log.debug("pool %s: backend #%d (thread %d) closed: %s", self.name, backend.id, backend.thread_id, reason.value)

    def on_backend_gone(self, backend: BackendConnection) -> None:
        """A closed backend's socket is closed too: its slot may be used again."""
        self.places.move(backend, Place.CLOSING, Place.NONE)
        if self.waiters:
            self.serve_waiters()
        self.limiter.released()

    # -- operator actions and maintenance ------------------------------------------------

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
            self.connector.end_failures()  # (a refused login, say, was the old password's)
        self.capacity.configured_max_size = max_size
        self.min_idle = min_idle
        self.max_lifetime = max_lifetime
        self.queue.max_waiting = max_waiting
        self.max_connecting = max_connecting
        for backend in list(self.idle):
            if self.size > self.max_size:
                backend.close(BackendCloseReason.RECLAIMED)
        self.serve_waiters()

    def maintain(self, now: float, idle_timeout: float) -> None:
        """Janitor pass: retire idle backends past their lifetime; past idle_timeout, close the
        ones above min_idle and ping the rest (so the server's wait_timeout never ends them)."""
        self.upkeep.maintain(now, idle_timeout, self.min_idle, self.params.connect_timeout)
        self.ensure_min_idle()

    async def ping_idle(self) -> bool | None:
        """Ping the most recently used idle backend for the health probe. A probe is not use: the
        backend's idle time still runs toward idle_timeout. True: the server answered; False: no
        answer within connect_timeout (the backend is closed); None: no backend idle, or the
        server closed it meanwhile (which says nothing about the server now)."""
        if self.state is not PoolState.RUNNING:
            return None
        return await self.upkeep.ping_idle(self.params.connect_timeout)

    def log_recycling(self) -> None:
        """One line summing up the backends closed since the last call (the janitor calls it)."""
        self.upkeep.log_recycling(self.size)

    def close_idle(self, reason: BackendCloseReason) -> None:
        for backend in list(self.idle):
            backend.close(reason)

    def close(self) -> None:
        """Stop: refuse waiters, close idle backends now; busy ones close at release."""
        self.state = PoolState.CLOSED
        self.queue.refuse_all(CheckoutTimeout(0.0, "the proxy is shutting down"))
        self.close_idle(BackendCloseReason.SHUTDOWN)
        self.connector.stop()

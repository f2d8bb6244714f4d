"""Readiness: may the proxy take new clients now? Decided from what the server did lately.

What this module owns: the readiness decision (`decide`, pure), the evidence it
is made from, the background probe, and the log line at each change. Proxy.ready(),
/readyz and the mysqlpool_ready / mysqlpool_not_ready gauges all read
`HealthMonitor.readiness()`, so they always agree.

The decision, in order (the first that fails is the reason given):
  1. the proxy is running (not starting, draining or stopped);
  2. the server accepts every pool's own login: a pool whose backend login is
     refused (1045 and the like) fails all its clients, so it is named;
  3. the server was reached once (the proxy knows its identity);
  4. no probe failed since the server last answered;
  5. the server answered within the last `backend.probe_interval` seconds.

Evidence that the server answers: a probe that succeeded, a backend opened (by
anyone), or bytes of a client's result relayed from a backend. Client commands
are not timed on the hot path: the monitor samples two counters (bytes relayed
from backends, backends opened) at each tick and each time readiness is asked,
and dates a change at the previous sample, a lower bound, so evidence never
looks fresher than it is.

The probe runs in a task of its own, one round at a time:
  * a ping on the most recently used idle backend (Pool.ping_idle; it does not
    count as use, so idle_timeout still retires that backend);
  * else, or when the ping got no answer, opening a backend (Pool.open_now; it
    stays in the pool for the next client). This is also what reconnects a pool
    that a DBA emptied, without waiting for a client;
  * else (every pool full or paused) a connection of its own, closed at once,
    if that stays within the server's limits for the account and within
    backend.max_connections; if not, readiness rests on client traffic alone.
  Each step is bounded by backend.connect_timeout. A connection the server
  closes at once (killed, lost during set-up) is no evidence either way: the
  round tries again at once, up to INCONCLUSIVE_TRIES times. Once the server
  answered, the round also tries the login of each pool that has never opened a
  backend or whose login is refused.
  While the proxy is not ready, a round runs every probe_interval / 4; while it
  is ready, only when nothing answered for probe_interval / 2 (so with client
  traffic there is no probe at all). Each wait gets jitter (x0.75 to x1), so
  proxies started together do not probe together.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pymysql

from ..backend.pool import CAPACITY_ERRORS
from ..constants import CR, ER
from ..events import EventKind, record
from ..logs import log_event
from ..protocol.framing import encode_packet

if TYPE_CHECKING:
    from ..backend.adapter import Opened
    from ..backend.pool import Pool
    from ..config import Config
    from ..core.server_info import ServerInfo
    from .users import UserEntry

__all__ = ["Cause", "Readiness", "Evidence", "Failure", "HealthMonitor", "HealthContext", "decide", "LOGIN_ERRORS"]

log = logging.getLogger("mysqlpool.health")

# The server refuses the proxy's own login: retrying the same credentials will not help.
LOGIN_ERRORS = frozenset((
    ER.DBACCESS_DENIED_ERROR, ER.ACCESS_DENIED_ERROR, ER.HOST_IS_BLOCKED, ER.HOST_NOT_PRIVILEGED,
    ER.NOT_SUPPORTED_AUTH_MODE, ER.MUST_CHANGE_PASSWORD_LOGIN,  # type: ignore[attr-defined]  # (not in types-PyMySQL)
    1698,  # ER_ACCESS_DENIED_NO_PASSWORD_ERROR
    4151,  # ER_ACCOUNT_HAS_BEEN_LOCKED (MariaDB)
    CR.CR_AUTH_PLUGIN_CANNOT_LOAD,
))
# The connection was closed under the probe after the server let it in: says nothing either way.
CLOSED_AT_ONCE_ERRORS = frozenset((
    CR.CR_SERVER_LOST, CR.CR_SERVER_GONE_ERROR, CR.CR_SERVER_LOST_EXTENDED,
    1927,  # ER_CONNECTION_KILLED
))
INCONCLUSIVE_TRIES = 3
JITTER = (0.75, 1.0)
MAX_TICK = 1.0  # seconds between samples of the evidence, at most
RUNNING = "running"  # ProxyState.RUNNING's value (proxy.py imports this module)
_COM_QUIT = encode_packet(b"\x01", 0)


class Cause(enum.Enum):
    """Why the proxy is not ready; the `reason` label of mysqlpool_not_ready."""

    STARTING = "starting"  # the first three are ProxyState values
    DRAINING = "draining"
    STOPPED = "stopped"
    LOGIN_REFUSED = "backend_login_refused"
    NOT_REACHED = "backend_not_reached"
    UNREACHABLE = "backend_unreachable"
    NOT_ANSWERING = "backend_not_answering"


@dataclass(frozen=True, slots=True)
class Readiness:
    cause: Cause | None  # None: ready
    reason: str  # what /readyz says

    @property
    def ready(self) -> bool:
        return self.cause is None


@dataclass(frozen=True, slots=True)
class Failure:
    """A probe that failed: when, what happened, and what it means."""

    at: float
    what: str
    cause: Cause


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything `decide` looks at."""

    proxy_state: str  # a ProxyState value
    server_known: bool
    last_answer: float | None  # when the server last answered (None: never)
    failure: Failure | None  # the last probe failure
    probe_since: float | None  # a probe round running since
    login_refusals: tuple[tuple[str, str], ...]  # (pool name, error) of pools whose login is refused
    where: str  # the server's address, for messages
    last_error: str  # the pools' last connect error, if any


READY = Readiness(None, "ok")


def decide(ev: Evidence, now: float, interval: float) -> Readiness:
    """Ready or not, and why (see the module comment for the rules)."""
    if ev.proxy_state != RUNNING:
        return Readiness(Cause(ev.proxy_state), f"proxy is {ev.proxy_state}")
    if ev.login_refusals:
        name, error = ev.login_refusals[0]
        more = len(ev.login_refusals) - 1
        also = f" (and {more} more pool{'s' if more > 1 else ''})" if more else ""
        return Readiness(Cause.LOGIN_REFUSED, f"backend login refused for pool {name!r}: {error}{also}")
    if not ev.server_known or ev.last_answer is None:
        detail = ev.failure.what if ev.failure else ev.last_error or "no answer yet"
        return Readiness(Cause.NOT_REACHED, f"backend not reached yet ({ev.where}: {detail})")
    failure = ev.failure
    if failure is not None and failure.at >= ev.last_answer:
        what = "backend unreachable" if failure.cause is Cause.UNREACHABLE else "backend not answering"
        return Readiness(failure.cause, f"{what} ({ev.where}: {failure.what})")
    silent = now - ev.last_answer
    if silent > interval:
        waiting = f", a probe has waited {now - ev.probe_since:.1f}s" if ev.probe_since is not None else ""
        return Readiness(Cause.NOT_ANSWERING,
                         f"backend not answering ({ev.where}: no answer for {silent:.1f}s{waiting})")
    return READY


class Outcome(enum.Enum):
    ANSWERED = "answered"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"


class TrafficStats(Protocol):
    bytes_out: int


class HealthContext(Protocol):
    """What the monitor reads of the proxy (proxy.py's Proxy is one; proxy.py imports this module)."""

    @property
    def config(self) -> Config: ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def state(self) -> enum.Enum: ...  # a ProxyState

    @property
    def server_info(self) -> ServerInfo | None: ...

    @property
    def stats(self) -> TrafficStats: ...

    @property
    def pools(self) -> Mapping[str, Pool]: ...

    @property
    def users(self) -> Mapping[bytes, UserEntry]: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...


class HealthMonitor:
    """The proxy's readiness state and its probe. Proxy.start() starts it; Proxy.ready() asks it."""

    def __init__(self, proxy: HealthContext, opener: Callable[..., Awaitable[Opened]],
                 uniform: Callable[[float, float], float] = random.uniform):
        self.proxy = proxy
        self.loop = proxy.loop
        self._opener = opener
        self._uniform = uniform
        self.last_answer: float | None = None
        self.failure: Failure | None = None
        self.probe_since: float | None = None
        self._seen = self._counters()
        self._sampled_at = self.loop.time()
        self._reported_ready = False
        self._round_ended = float("-inf")  # the first round starts at once
        self._jitter = uniform(*JITTER)
        self._round: asyncio.Task | None = None

    @property
    def interval(self) -> float:
        return self.proxy.config.backend.probe_interval

    def start(self) -> None:
        self.proxy.spawn(self._run())

    # -- the decision ----------------------------------------------------------------

    def readiness(self) -> Readiness:
        now = self.loop.time()
        self._sample(now)
        result = decide(self.evidence(), now, self.interval)
        if result.ready != self._reported_ready:
            self._reported_ready = result.ready
            self._log_change(result)
        return result

    def evidence(self) -> Evidence:
        proxy = self.proxy
        backend = proxy.config.backend
        pools = self._pools()
        return Evidence(
            proxy_state=proxy.state.value,
            server_known=proxy.server_info is not None,
            last_answer=self.last_answer,
            failure=self.failure,
            probe_since=self.probe_since,
            login_refusals=tuple((p.name, p.last_error) for p in pools if _login_refused(p)),
            where=backend.unix_socket or f"{backend.host}:{backend.port}",
            last_error=next((p.last_error for p in pools if p.failing and p.last_error), ""),
        )

    @staticmethod
    def _log_change(result: Readiness) -> None:
        record(EventKind.READY if result.ready else EventKind.NOT_READY,
               "the backend answers" if result.ready else result.reason)
        if result.ready:
            log_event(log, "info", "ready: the backend answers", ready=True)
        else:
            assert result.cause is not None
            level = "info" if result.cause in (Cause.STARTING, Cause.DRAINING, Cause.STOPPED) else "warning"
            log_event(log, level, f"not ready: {result.reason}", ready=False, cause=result.cause.value)

    def _counters(self) -> tuple[int, int]:
        return self.proxy.stats.bytes_out, sum(p.stats.connects for p in self.proxy.pools.values())

    def _sample(self, now: float) -> None:
        """Client traffic or a backend opened since the last sample: the server answered after it."""
        seen = self._counters()
        if seen != self._seen:
            self._seen = seen
            self._answered(self._sampled_at)
        self._sampled_at = now

    def _answered(self, at: float) -> Outcome:
        if self.last_answer is None or at > self.last_answer:
            self.last_answer = at
        return Outcome.ANSWERED

    def _failed(self, cause: Cause, what: str) -> Outcome:
        self.failure = Failure(self.loop.time(), what, cause)
        return Outcome.FAILED

    def _pools(self) -> list[Pool]:
        """The pools some user maps to (a pool left by a reload only finishes its clients)."""
        return list({id(e.pool): e.pool for e in self.proxy.users.values()}.values())

    # -- the probe loop ---------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                readiness = self.readiness()
                if self._round is None and self._due(readiness):
                    self._round = self.proxy.spawn(self._probe_round())
            except Exception:  # a bug here must not stop the probe for good
                log.exception("health check failed")
            await asyncio.sleep(min(self.interval / 8, MAX_TICK))

    def _due(self, readiness: Readiness) -> bool:
        if self.proxy.state.value != RUNNING:
            return False
        now = self.loop.time()
        if readiness.ready and self.last_answer is not None and self._round_ended > float("-inf"):  # (first: at start)
            return now >= self.last_answer + self.interval / 2 * self._jitter
        return now >= self._round_ended + self.interval / 4 * self._jitter

    async def _probe_round(self) -> None:
        self.probe_since = self.loop.time()
        try:
            if self._answered_lately() or await self._check_server() is Outcome.ANSWERED:
                await self._check_logins()
        except Exception:
            log.exception("health probe failed")
        finally:
            self.probe_since = None
            self._round_ended = self.loop.time()
            self._jitter = self._uniform(*JITTER)
            self._round = None
            self.readiness()  # log a change now, not at the next tick

    def _answered_lately(self) -> bool:
        """The server answered within interval / 4, and no probe failed since (the round at
        start, when the first backend was just opened, needs no ping)."""
        last, failure = self.last_answer, self.failure
        return last is not None and self.loop.time() - last < self.interval / 4 \
            and (failure is None or failure.at < last)

    async def _check_server(self) -> Outcome:
        pool = next((p for p in self._pools() if p.idle and not p.paused), None)
        if pool is not None:
            answered = await pool.ping_idle()
            if answered:
                return self._answered(self.loop.time())
            if answered is False:
                self._failed(Cause.NOT_ANSWERING,
                             f"no answer to a ping within {self.proxy.config.backend.connect_timeout:g}s")
        for _ in range(INCONCLUSIVE_TRIES):
            outcome = await self._connect()
            if outcome is not Outcome.INCONCLUSIVE:
                return outcome
        return Outcome.INCONCLUSIVE

    async def _connect(self) -> Outcome:
        pool = self._pool_to_open()
        if pool is None:
            return await self._connect_aside()
        stats = pool.stats
        connects, errors = stats.connects, sum(stats.connect_errors.values())
        opened = await self._open_in(pool)
        if opened or stats.connects > connects:  # opened, even if closed at once since
            return self._answered(self.loop.time())
        if opened is None:
            return self._failed(Cause.UNREACHABLE, f"no connection within {self._open_bound():g}s")
        if sum(stats.connect_errors.values()) == errors:
            return Outcome.INCONCLUSIVE  # it could not even try (clients took the room meanwhile)
        return self._classify(pool.last_error_code, pool.last_error)

    def _pool_to_open(self) -> Pool | None:
        """A pool with room for one more backend: one whose login is still unchecked first, one
        whose login is refused last (its 1045 still shows the server answers)."""
        usable = [p for p in self._pools() if not p.paused and p.size < p.max_size and p.limiter.available() > 0]
        usable.sort(key=lambda p: (_login_refused(p), p.stats.connects > 0))
        return usable[0] if usable else None

    async def _check_logins(self) -> None:
        """Try the login of each pool that never opened a backend or whose login is refused."""
        for pool in self._pools():
            unchecked = pool.stats.connects == 0 and not pool.connecting
            if (unchecked or _login_refused(pool)) and not pool.paused and pool.size < pool.max_size \
                    and pool.limiter.available() > 0 and await self._open_in(pool):
                self._answered(self.loop.time())

    async def _open_in(self, pool: Pool) -> bool | None:
        """Pool.open_now(), bounded: None if it took too long (it goes on by itself; a backend it
        opens lands in the pool). The opener bounds itself (connect_timeout to connect, as much
        again to set up), so that only happens with a broken opener."""
        task = self.proxy.spawn(pool.open_now())
        try:
            return await asyncio.wait_for(asyncio.shield(task), self._open_bound())
        except TimeoutError:
            return None

    def _open_bound(self) -> float:
        return 2 * self.proxy.config.backend.connect_timeout + 1.0

    async def _connect_aside(self) -> Outcome:
        """Every pool is full or paused: a connection outside the pools, closed at once, on the
        account of a pool whose cap leaves room below the server's limits (not one the server's
        max_user_connections or a "too many connections" capped), and within backend.max_connections.
        Without such a pool nothing is probed: readiness then rests on the clients' traffic."""
        pool = next((p for p in self._pools() if p.server_cap is None and p.max_size == p.configured_max_size
                     and p.limiter.available() > 0 and not _login_refused(p)), None)
        if pool is None:
            return Outcome.INCONCLUSIVE
        try:
            opened = await asyncio.wait_for(self._opener(pool.params_for(0)), self._open_bound())
        except TimeoutError:
            return self._failed(Cause.UNREACHABLE, "connect timeout")
        except Exception as exc:  # every connect failure is classified the same way
            return self._classify(*_describe(exc))
        opened.transport.write(_COM_QUIT)
        opened.transport.close()
        return self._answered(self.loop.time())

    def _classify(self, code: int, what: str) -> Outcome:
        """A failed connect: refusals and "too many connections" are answers too."""
        if code in CAPACITY_ERRORS or code in LOGIN_ERRORS:
            return self._answered(self.loop.time())
        if code in CLOSED_AT_ONCE_ERRORS:
            return Outcome.INCONCLUSIVE
        return self._failed(Cause.UNREACHABLE, what)


def _login_refused(pool: Pool) -> bool:
    return pool.failing and pool.last_error_code in LOGIN_ERRORS


def _describe(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        text = exc.args[1] if len(exc.args) > 1 else ""
        return exc.args[0], f"{exc.args[0]} {text}".strip()
    if isinstance(exc, OSError):
        return CR.CR_CONN_HOST_ERROR, f"{exc.strerror or exc}"
    return ER.UNKNOWN_ERROR, f"{type(exc).__name__}: {exc}"

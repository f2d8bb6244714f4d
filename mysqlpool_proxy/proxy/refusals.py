"""Clients the proxy turns away, and what it tells them: admission, and a backend that cannot be had.

Admission. Only clients that logged in (credentials verified) count against
[proxy] max_client_connections (`admit` refuses a new connection when they
are all there; `client_verified`, when they filled up while it logged in).
Connections still logging in (`Proxy.logging_in`, oldest first: from accept
to verified credentials) are bounded apart: at most MAX_LOGGING_IN at once
per process, each with HANDSHAKE_TIMEOUT from its greeting, and one more
closes the oldest of them (`_evict_oldest_login`), so idle or slow
unauthenticated sockets can never lock applications out. MariaDB counts
handshakes in max_connections and keeps one more connection for an
administrator; here the admin console has its own listener and bounds.

A backend that cannot be had. A client that needs a new backend while its
pool's connects fail waits up to checkout_timeout, as a short outage (a
restart) may end within it. It waits only for the pool's next attempt, and
gets the error as soon as that fails, when the proxy knows there is nothing
to wait for (`_refusing_since`): the pool holds no backend, its last connect
attempt failed, and either the server refused the proxy's own login (which
does not fix itself) or the server has not answered the proxy for longer
than checkout_timeout (then only clients that arrived after that: the
others keep their full wait). Readiness (health.py) holds what the server
did lately: the refused logins and when the server last answered are read
from it. The pool makes that next attempt soon for a new waiter (opening.py
`retry_soon_for`), and reports each failure with the time the attempt
started (`backend_failed`): only clients that were waiting by then are
told, so none is refused on an attempt older than its arrival, and one that
arrives just after the server is back is served. What they are told is
`describe_backend_problem`'s: the server's login error naming the proxy's
account and the config keys, or 2003 with what the proxy tried.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..backend.pool import CAPACITY_ERRORS
from ..client.constants import MAX_LOGGING_IN
from ..client.context import ClientHandle
from ..constants import CR, ER
from ..core.states import ClientState
from ..errors import ProxyError
from ..logs import log_event
from ..reasons import RefusalReason
from .health import LOGIN_ERRORS

if TYPE_CHECKING:
    import asyncio

    from ..backend.pool import Pool
    from ..config import Config
    from ..core.server_info import ServerInfo
    from .health import HealthMonitor
    from .users import UserEntry

__all__ = ["Refusals", "RefusalsContext"]

log = logging.getLogger("mysqlpool.proxy")


class AdmissionStats(Protocol):
    accepted: int
    refused: Counter[str]


class RefusalsContext(Protocol):
    """What refusals read of the proxy (proxy.py's Proxy is one; proxy.py imports this module)."""

    @property
    def config(self) -> Config: ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def accepting(self) -> bool: ...

    @property
    def stats(self) -> AdmissionStats: ...

    @property
    def clients(self) -> Mapping[int, object]: ...

    @property
    def server_info(self) -> ServerInfo | None: ...

    @property
    def health(self) -> HealthMonitor: ...

    @property
    def users(self) -> Mapping[bytes, UserEntry]: ...

    def user_pools(self) -> list[Pool]: ...

    def share(self, total: int) -> int: ...


class Refusals:
    """Who is let in, who is turned away and what they are told (see the module comment)."""

    __slots__ = ("proxy", "logging_in", "started_at", "_logged")

    def __init__(self, proxy: RefusalsContext) -> None:
        self.proxy = proxy
        self.logging_in: dict[int, Any] = {}  # the clients not logged in yet, oldest first
        self.started_at = proxy.loop.time()
        self._logged: dict[object, tuple[float, int]] = {}  # what _log_limited() logged: when, and left out since

    # -- admission ---------------------------------------------------------------------

    def admit(self, client: ClientHandle) -> ProxyError | None:
        """A new connection: refused while shutting down, or when max_client_connections clients are
        logged in already; it logs in in the meantime (see the module comment)."""
        if not self.proxy.accepting:
            self.refused(RefusalReason.SHUTTING_DOWN)
            return ProxyError(ER.SERVER_SHUTDOWN, "mysqlpool-proxy is shutting down")
        self.logging_in[client.id] = client
        if self.logged_in() >= self.client_limit():
            return self._too_many_clients()
        if len(self.logging_in) > MAX_LOGGING_IN:
            self._evict_oldest_login(client)
        self.proxy.stats.accepted += 1
        return None

    def client_verified(self, client: ClientHandle) -> ProxyError | None:
        """Its credentials are good: from now on it counts against max_client_connections."""
        self.logging_in.pop(client.id, None)
        if self.logged_in() > self.client_limit():
            return self._too_many_clients()
        return None

    def logged_in(self) -> int:
        return len(self.proxy.clients) - len(self.logging_in)

    def client_limit(self) -> int:
        return self.proxy.share(self.proxy.config.proxy.max_client_connections)

    def _too_many_clients(self) -> ProxyError:
        self.refused(RefusalReason.MAX_CLIENTS)
        return ProxyError(ER.CON_COUNT_ERROR, (
            f"Too many connections: mysqlpool-proxy already serves max_client_connections ({self.client_limit()}) "
            "clients"))

    def _evict_oldest_login(self, newcomer: ClientHandle) -> None:
        oldest = next(iter(self.logging_in.values()))
        self._log_limited("login_evicted", f"{MAX_LOGGING_IN} connections logging in at once: closed the oldest, "
                          f"from {oldest.peer}, to make room for one from {newcomer.peer}",
                          client_id=oldest.id, peer=oldest.peer)
        oldest.evict_from_login()

    def refused(self, reason: RefusalReason, detail: str = "", **fields: Any) -> None:
        """Count a refusal; log it, at most once a second per reason (with how many since)."""
        self.proxy.stats.refused[reason.value] += 1
        self._log_limited(reason, f"refused a client: {reason.value}" + (f": {detail}" if detail else ""),
                          reason=reason.value, **fields)

    def _log_limited(self, key, message: str, **fields: Any) -> None:
        """A warning, at most once a second per `key` (with how many were left out since)."""
        now = self.proxy.loop.time()
        last, unlogged = self._logged.get(key, (float("-inf"), 0))
        if now - last >= 1.0:
            more = f" (and {unlogged} more since the last report)" if unlogged else ""
            if unlogged:
                fields["left_out"] = unlogged
            log_event(log, "warning", message + more, **fields)
            self._logged[key] = (now, 0)
        else:
            self._logged[key] = (last, unlogged + 1)

    # -- a backend that cannot be had ------------------------------------------------------

    def backend_known_down(self, pool: Pool) -> bool:
        """Would a client of `pool` arriving now be refused at the next failed attempt?"""
        since = self._refusing_since(pool)
        return since is not None and self.proxy.loop.time() > since

    def _refusing_since(self, pool: Pool) -> float | None:
        """Clients of `pool` that came after this time need not wait for a new backend past the
        next failed attempt (None: all wait their checkout_timeout)."""
        if not pool.failing or pool.idle or pool.busy:
            return None
        if any(name == pool.name for name, _ in self.proxy.health.evidence().login_refusals):
            return float("-inf")
        if pool.last_error_code in CAPACITY_ERRORS:
            return None  # the server answers; it is full: clients wait for the backends there are
        return self._server_silent_since() + self.proxy.config.pool.checkout_timeout

    def _server_silent_since(self) -> float:
        """When the server last answered the proxy (readiness's evidence), or the start if never."""
        self.proxy.health.readiness()  # brings the evidence up to now
        last = self.proxy.health.last_answer
        return self.started_at if last is None else last

    def backend_failed(self, pool: Pool, started: float) -> None:
        """A connect attempt of `pool`, started at `started`, failed: tell the clients waiting
        since before it that now need not wait."""
        since = self._refusing_since(pool)
        if since is not None and pool.waiters:
            pool.refuse_waiters(self.describe_backend_problem(pool), arrived_after=since, arrived_by=started)
        if self.proxy.server_info is None:  # clients wait for it to be greeted: their user is not known yet
            times = [self._refusing_since(p) for p in self.proxy.user_pools()]
            if None in times:
                return  # told only when every pool would refuse them
            since = max(t for t in times if t is not None)
            waiting = [c for c in self.logging_in.values()
                       if c.state is ClientState.GREETING and since < c.connected_at <= started]
            error = self.describe_backend_problem() if waiting else None
            for client in waiting:
                client.refuse_before_greeting(error)

    def describe_backend_problem(self, pool: Pool | None = None) -> ProxyError:
        """What a client is told when it gets no backend because new connections to the server fail:
        the server's own login error, naming the proxy's backend account and the config keys, when
        the server refuses it; 1040 when the server says it is full; else 2003 (2002 through a Unix
        socket) saying what the proxy tried and the last error. Without a pool: the first failing one."""
        if pool is None:
            pools = self.proxy.user_pools()
            pool = next((p for p in pools if p.failing), pools[0])
        if pool.failing and pool.last_error_code in LOGIN_ERRORS:
            users = ", ".join(f"'{e.name}'" for e in self.proxy.users.values() if e.pool is pool)
            return ProxyError(pool.last_error_code, (
                f"mysqlpool-proxy cannot log in to the server with its backend account '{pool.name}' "
                f"(users[] {users}): {pool.last_error}; check users[].backend_user and "
                f"users[].backend_password (by default the user's name and password) in the proxy's config"))
        if pool.failing and pool.last_error_code in CAPACITY_ERRORS:
            return ProxyError(ER.CON_COUNT_ERROR, (
                f"Too many connections: the server refused mysqlpool-proxy a connection for pool '{pool.name}' "
                f"({pool.last_error})"))
        n = pool.failures
        tried = f"{n} connect attempt{'s' if n != 1 else ''} as '{pool.name}' failed, the last with " \
                f"{pool.last_error}" if n else f"no connection as '{pool.name}' yet"
        silent = self.proxy.loop.time() - self._server_silent_since()
        silence = (f"since the start, {silent:.1f}s ago" if self.proxy.health.last_answer is None
                   else f"for {silent:.1f}s")
        detail = f"mysqlpool-proxy: {tried}; no answer from the server {silence}"
        b = self.proxy.config.backend
        if b.unix_socket:
            return ProxyError(CR.CR_CONNECTION_ERROR,
                              f"Can't connect to local MySQL server through socket '{b.unix_socket}' ({detail})")
        return ProxyError(CR.CR_CONN_HOST_ERROR, f"Can't connect to MySQL server on '{b.host}:{b.port}' ({detail})")

    def backend_refused(self, client: ClientHandle, error: ProxyError) -> None:
        """Count and log a client refused for want of a backend (describe_backend_problem's error)."""
        if error.errno in LOGIN_ERRORS:
            reason = RefusalReason.BACKEND_LOGIN_REFUSED
        elif error.errno in (CR.CR_CONN_HOST_ERROR, CR.CR_CONNECTION_ERROR):
            reason = RefusalReason.BACKEND_UNREACHABLE
        else:
            reason = RefusalReason.CHECKOUT_TIMEOUT
        self.refused(reason, f"client #{client.id} from {client.peer}: {error.message}", client_id=client.id,
                     peer=client.peer, code=error.errno)

"""Why connections close: one closed enum per side, counted where they happen.

Every close goes through a `close(reason)` that logs the reason and bumps a
counter in the owning object's stats (the pool's for backends, the proxy's
for clients), which the metrics exporter reads at scrape time
(`mysqlpool_backend_closed_total{pool,reason}` and the client equivalents).
The values are the metric label values, so the label set stays bounded.
"""

from __future__ import annotations

import enum

__all__ = ["BackendCloseReason", "ClientCloseReason", "RefusalReason"]


class BackendCloseReason(enum.Enum):
    MAX_LIFETIME = "max_lifetime"  # older than [pool] max_lifetime, closed at a boundary
    IDLE_TIMEOUT = "idle_timeout"  # idle in the pool longer than idle_timeout
    SERVER_GONE = "server_gone"  # the server closed it (wait_timeout, KILL, restart)
    PING_FAILED = "ping_failed"  # COM_PING before checkout failed or timed out
    RESET_FAILED = "reset_failed"  # COM_RESET_CONNECTION / state restore failed
    DIRTY = "dirty"  # a client left it mid-response or in an unknown state
    RECLAIMED = "reclaimed"  # closed to make room for a backend another client needs
    PAUSED = "paused"  # the pool is paused (PAUSE): backends close as their transactions end
    RELOAD = "reload"  # the config changed how backends connect: old ones close as they come free
    ERROR = "error"  # protocol error, timeout or unexpected data
    ENDED_BY_SERVER = "ended_by_server"  # it answered with an error after which the server hangs up
    CLIENT_STALLED = "client_stalled"  # its client read nothing of a result for the server's net_write_timeout
    SHUTDOWN = "shutdown"  # the proxy is stopping or the pool was removed


class ClientCloseReason(enum.Enum):
    QUIT = "quit"  # COM_QUIT
    DISCONNECTED = "disconnected"  # the client closed its socket
    AUTH_FAILED = "auth_failed"
    MAX_CLIENTS = "max_clients"  # [proxy] max_client_connections reached
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    PROTOCOL_ERROR = "protocol_error"  # malformed packets from the client
    BACKEND_LOST = "backend_lost"  # its backend died while holding its transaction or pinned state
    IDLE_TIMEOUT = "idle_timeout"  # [proxy] client_idle_timeout
    KILLED = "killed"  # KILL from another client or the admin console
    RELEASED = "released"  # COMMIT / ROLLBACK ... RELEASE (or completion_type = RELEASE): the server hangs up
    SHUTDOWN = "shutdown"
    BACKEND_UNAVAILABLE = "backend_unavailable"  # refused at login: the server is down or refuses the proxy's login
    LOGIN_EVICTED = "login_evicted"  # the oldest of too many connections logging in at once


class RefusalReason(enum.Enum):
    """Requests refused with an error while the client stays connected (or at accept)."""

    MAX_CLIENTS = "max_clients"
    CHECKOUT_TIMEOUT = "checkout_timeout"
    QUEUE_FULL = "queue_full"
    AUTH_FAILED = "auth_failed"
    SHUTTING_DOWN = "shutting_down"
    BACKEND_UNREACHABLE = "backend_unreachable"  # no backend: the server cannot be reached
    BACKEND_LOGIN_REFUSED = "backend_login_refused"  # no backend: the server refuses the proxy's login


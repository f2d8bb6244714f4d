"""Errors: protocol violations, and errors the proxy reports to clients.

ProtocolError is raised by the sans-IO layer when bytes do not parse
(RemoteProtocolError: the peer sent something malformed) or when the proxy
asks it for something impossible (LocalProtocolError: a bug of ours).
ProxyError is an error a client is meant to see: it carries the MySQL error
number, SQLSTATE and message that become an ERR packet, never Python text.
"""

from __future__ import annotations

from .constants import ER, ER_MALFORMED_PACKET, sqlstate_for

ER_CONNECTION_KILLED = 1927  # MariaDB: KILL of the connection itself
ER_CLIENT_INTERACTION_TIMEOUT = 4031  # MySQL 8: closed for inactivity (wait_timeout)

# Errors after which the server closes the connection (it sends them, then hangs up):
# a backend that answered one is closed, never released to the pool.
CONNECTION_ENDING_ERRORS = frozenset((
    ER.SERVER_SHUTDOWN, ER.ABORTING_CONNECTION, ER.NEW_ABORTING_CONNECTION, ER.NET_PACKET_TOO_LARGE,
    ER.NET_READ_ERROR_FROM_PIPE, ER.NET_FCNTL_ERROR, ER.NET_PACKETS_OUT_OF_ORDER, ER.NET_UNCOMPRESS_ERROR,
    ER.NET_READ_ERROR, ER.NET_READ_INTERRUPTED, ER.NET_ERROR_ON_WRITE, ER.NET_WRITE_INTERRUPTED,
    ER.HANDSHAKE_ERROR, ER_CONNECTION_KILLED, ER_CLIENT_INTERACTION_TIMEOUT,
))


class ProtocolError(Exception):
    """Bytes that do not follow the MySQL protocol; `errno` is the error the peer is told."""

    def __init__(self, *args: object, errno: int = ER_MALFORMED_PACKET) -> None:
        super().__init__(*args)
        self.errno = errno


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed or out of order."""


class LocalProtocolError(ProtocolError):
    """The proxy used the protocol layer wrongly (a bug)."""


class PacketTooLarge(RemoteProtocolError):
    def __init__(self, *args: object) -> None:
        super().__init__(*args, errno=ER.NET_PACKET_TOO_LARGE)


class ProxyError(Exception):
    """An error to be sent to a client as an ERR packet."""

    def __init__(self, errno: int, message: str, sqlstate: str | None = None):
        super().__init__(message)
        self.errno = errno
        self.message = message
        self.sqlstate = sqlstate or sqlstate_for(errno)

    def __repr__(self) -> str:
        return f"ProxyError({self.errno}, {self.message!r}, {self.sqlstate!r})"

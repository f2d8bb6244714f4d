"""Opening backend connections with aiomysql, then taking over their transport.

aiomysql is the proxy's MySQL client: it dials, negotiates TLS, runs every
authentication plugin the server may ask for, and runs the proxy's own setup
query (session trackers on, limits read). After that the proxy relays raw
packets, so it takes the asyncio transport away from aiomysql's stream
reader and gives it to its own Protocol. Until the Protocol is set, the
transport still feeds aiomysql's reader: a server that closes the connection
right after the setup (a DBA's KILL, a restart) leaves its EOF, and maybe an
ERR packet, there. `Handoff.leftover()` hands both to the new Protocol, so a
backend killed in that window is never pooled as if it were alive.

MariaDB's extended capabilities. aiomysql (like PyMySQL) sets CLIENT_MYSQL
and sends none, so `MariaDBConnection` (aiomysql's Connection, three methods
overridden) negotiates them: it keeps the greeting, clears CLIENT_MYSQL in
the HandshakeResponse and writes the ones it wants into its last 4 reserved
bytes, when the server offers them: always STMT_BULK_OPERATIONS and
BULK_UNIT_RESULTS (they only let a client send COM_STMT_BULK_EXECUTE and
one of its flags; nothing else the server sends changes), and
EXTENDED_METADATA when the pool key asks for it (`BackendParams.
extended_metadata`: a backend for clients that negotiated it; a key that
asks for it on a server without it is a failed connect). On such a backend
every column definition has one more field, which aiomysql does not know:
while it runs the setup query, the definitions it reads are handed to it
without that field. `Opened.server_capabilities` has the server's extended
capabilities as bits 32 and up, and `Opened.extended_capabilities` those
this backend negotiated.

This is the only module that touches aiomysql's private attributes
(`Connection._reader`, `Connection._writer`; `_connect`, which
`aiomysql.connect()` calls, and the overridden `_get_server_information`,
`_request_authentication` and `_read_packet`), and the buffer of the asyncio
StreamReader aiomysql read with (`_buffer`: what the server sent after the
setup); pyproject pins aiomysql to a version range, and tests/integration
exercise the handoff and the negotiation.

Every TCP connection it opens (pooled backends and the side connections for
KILL) watches for a dead peer: a network that silently drops packets (no FIN,
no RST) would otherwise leave a statement waiting for ever. TCP keepalive
probes a silent connection, and TCP_USER_TIMEOUT (Linux) ends one whose data
or probes go unacknowledged, both derived from `[backend]
dead_connection_timeout`; the kernel then reports the connection lost, as if
the server had closed it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from dataclasses import dataclass, field

import aiomysql
import pymysql
from pymysql.protocol import FieldDescriptorPacket, MysqlPacket

from ..constants import (
    CLIENT,
    CLIENT_MYSQL,
    CR,
    MARIADB_CAPABILITIES,
    MARIADB_CLIENT_BULK_UNIT_RESULTS,
    MARIADB_CLIENT_EXTENDED_METADATA,
    MARIADB_CLIENT_STMT_BULK_OPERATIONS,
)
from ..errors import RemoteProtocolError
from ..protocol.packets import parse_handshake_v10
from ..protocol.rows import without_extended_metadata

__all__ = [
    "BackendParams", "Opened", "open_backend", "SETUP_SQL", "make_ssl_context", "run_side_query",
    "DeadPeerDetection", "dead_peer_detection", "watch_for_dead_peer", "MariaDBConnection",
    "BACKEND_MARIADB_CAPABILITIES", "KEYED_MARIADB_CAPABILITIES",
]

log = logging.getLogger("mysqlpool.backend")

# Server settings a new session starts with that the proxy must know: the trackers a
# client would have on a direct connection, and limits it keeps clients within.
SERVER_GLOBALS = (
    "session_track_system_variables", "session_track_schema", "session_track_state_change",
    "session_track_transaction_info", "max_allowed_packet", "max_prepared_stmt_count", "net_write_timeout",
)

# Turn on every tracker the proxy reads, then read what it needs to know.
SETUP_SQL = (
    "SET SESSION session_track_system_variables='*', session_track_schema=ON, "
    "session_track_state_change=ON, session_track_transaction_info='CHARACTERISTICS'; "
    "SELECT CONNECTION_ID(), @@session.wait_timeout, @@session.max_user_connections, @@global.max_connections, "
    "@@session.character_set_client, @@session.character_set_connection, @@session.character_set_results, "
    "@@session.collation_connection, " + ", ".join(f"@@global.{name}" for name in SERVER_GLOBALS)
)

TRACKERS_SQL = SETUP_SQL.split("; ", 1)[0]

# MariaDB capabilities every backend negotiates where the server has them, and those a backend
# negotiates when its pool key asks (Pool.params_for): what the proxy may offer its clients.
BACKEND_MARIADB_CAPABILITIES = MARIADB_CLIENT_STMT_BULK_OPERATIONS | MARIADB_CLIENT_BULK_UNIT_RESULTS
KEYED_MARIADB_CAPABILITIES = MARIADB_CLIENT_EXTENDED_METADATA

COLLATIONS_SQL = (
    "SELECT ID, CHARACTER_SET_NAME, COLLATION_NAME, IS_DEFAULT FROM information_schema.COLLATIONS WHERE ID IS NOT NULL"
)


@dataclass(frozen=True, slots=True)
class BackendParams:
    host: str
    port: int
    unix_socket: str
    user: str
    password: str
    charset: str
    connect_timeout: float
    ssl: ssl.SSLContext | None
    found_rows: bool
    local_files: bool
    ps_multi_results: bool = False
    dead_connection_timeout: float = 0.0  # seconds; 0 = the OS's keepalive and retransmission defaults
    extended_metadata: bool = False  # negotiate MARIADB_CLIENT_EXTENDED_METADATA (the server must have it)


class Handoff:
    """aiomysql's stream pair of a transport being taken over. The writer is kept until the
    transport is closed (a StreamWriter closes its transport when garbage-collected, Python 3.11+);
    the reader holds what arrived before the new Protocol was set."""

    __slots__ = ("_reader", "_writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader = reader
        self._writer = writer

    def leftover(self) -> tuple[bytes, bool]:
        """Bytes the server sent after the setup, and whether it closed its end: call it once the
        transport's protocol is the new one, so nothing more goes to the reader."""
        reader = self._reader
        buffer: bytearray = reader._buffer  # type: ignore[attr-defined]  # private: this module's one reach
        data = bytes(buffer)
        buffer.clear()
        return data, reader.at_eof() or reader.exception() is not None


@dataclass(slots=True)
class Opened:
    """A freshly authenticated backend, its transport no longer aiomysql's."""

    transport: asyncio.Transport
    handoff: Handoff | None  # None: the transport was never aiomysql's (tests' fakes)
    thread_id: int
    server_version: str
    server_capabilities: int  # MariaDB's extended ones as bits 32 and up
    status: int
    wait_timeout: float
    max_user_connections: int
    max_connections: int
    charset_vars: dict[bytes, bytes]
    collations: dict[int, tuple[str, str, bool]] | None  # id -> (charset, collation, is the charset's default)
    server_globals: dict[bytes, bytes] = field(default_factory=dict)  # SERVER_GLOBALS by name
    extended_capabilities: int = 0  # the MariaDB capabilities this backend negotiated


def make_ssl_context(mode: str, ca: str, cert: str, key: str) -> ssl.SSLContext | None:
    if mode == "disabled":
        return None
    ctx = ssl.create_default_context(cafile=ca or None)
    if mode in ("preferred", "required"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif mode == "verify_ca":
        ctx.check_hostname = False
    if cert:
        ctx.load_cert_chain(cert, key or None)
    return ctx


KEEPALIVE_PROBES = 3


@dataclass(frozen=True, slots=True)
class DeadPeerDetection:
    """TCP settings that find a silently dead connection within about `user_timeout_ms`."""

    idle: int  # TCP_KEEPIDLE: seconds of silence before the first keepalive probe
    interval: int  # TCP_KEEPINTVL: seconds between probes
    probes: int  # TCP_KEEPCNT: unanswered probes that end the connection (where TCP_USER_TIMEOUT is missing)
    user_timeout_ms: int  # TCP_USER_TIMEOUT: unacknowledged data or probes end the connection after this


def dead_peer_detection(timeout: float) -> DeadPeerDetection | None:
    """The settings for `[backend] dead_connection_timeout` (None for 0: the OS's defaults).

    The first probe goes after half the timeout of silence, the others share the rest, so
    idle + interval * probes is about the timeout; with TCP_USER_TIMEOUT Linux ends the
    connection once the timeout has passed with a probe (or data) unanswered."""
    if timeout <= 0:
        return None
    idle = max(1, round(timeout / 2))
    interval = max(1, round((timeout - idle) / KEEPALIVE_PROBES))
    return DeadPeerDetection(idle, interval, KEEPALIVE_PROBES, round(timeout * 1000))


def watch_for_dead_peer(sock, timeout: float) -> None:
    """Turn keepalive and the user timeout on for a TCP socket (Unix sockets need none)."""
    settings = dead_peer_detection(timeout)
    if settings is None or sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    idle_name = "TCP_KEEPIDLE" if hasattr(socket, "TCP_KEEPIDLE") else "TCP_KEEPALIVE"  # the latter: macOS
    options = (("SO_KEEPALIVE", socket.SOL_SOCKET, 1), (idle_name, socket.IPPROTO_TCP, settings.idle),
               ("TCP_KEEPINTVL", socket.IPPROTO_TCP, settings.interval),
               ("TCP_KEEPCNT", socket.IPPROTO_TCP, settings.probes),
               ("TCP_USER_TIMEOUT", socket.IPPROTO_TCP, settings.user_timeout_ms))
    for name, level, value in options:
        option = getattr(socket, name, None)
        if option is None:
            continue  # this OS lacks it: keepalive still works there, with its own defaults
        try:
            sock.setsockopt(level, option, value)
        except OSError as exc:
            log.warning("backend socket: cannot set %s to %s (%s); a silently dead connection may go "
                        "unnoticed longer", name, value, exc)


def _watch(conn: aiomysql.Connection, p: BackendParams) -> None:
    writer = conn._writer
    if writer is not None:
        watch_for_dead_peer(writer.transport.get_extra_info("socket"), p.dead_connection_timeout)


class MariaDBConnection(aiomysql.Connection):
    """aiomysql's Connection, negotiating MariaDB's extended capabilities `wanted` that the server has.

    It reads the server's from the greeting it keeps (`_read_packet` sees it first), clears
    CLIENT_MYSQL before aiomysql builds its HandshakeResponse, and writes the negotiated ones into
    the response's reserved bytes (and the SSLRequest's, which begins the same) as aiomysql writes
    it. With EXTENDED_METADATA, aiomysql reads each column definition without that field."""

    def __init__(self, *, wanted: int, required: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.wanted = wanted  # MariaDB capabilities to negotiate where the server has them
        self.required = required  # of those, the ones the backend is useless without
        self.greeting: bytes | None = None
        self.server_extended = 0  # the server's MariaDB capabilities (bits 32 and up)
        self.negotiated = 0  # those negotiated
        self._login_packets = False  # the SSLRequest / HandshakeResponse is being written

    async def _read_packet(self, packet_type=MysqlPacket):
        if packet_type is FieldDescriptorPacket and self.negotiated & MARIADB_CLIENT_EXTENDED_METADATA:
            packet_type = _column_definition
        packet = await super()._read_packet(packet_type)
        if self.greeting is None:
            self.greeting = packet.get_all_data()
        return packet

    async def _get_server_information(self) -> None:
        await super()._get_server_information()
        try:
            self.server_extended = parse_handshake_v10(self.greeting or b"").capabilities & MARIADB_CAPABILITIES
        except RemoteProtocolError:
            self.server_extended = 0  # (aiomysql read it: only what the proxy does not need can be odd)

    async def _request_authentication(self) -> None:
        self.negotiated = self.wanted & self.server_extended
        missing = self.required & ~self.negotiated
        if missing:
            raise pymysql.err.OperationalError(CR.CR_SERVER_HANDSHAKE_ERR, (
                f"the server does not offer the MariaDB capabilities 0x{missing >> 32:x} that the clients of "
                "this pool negotiated with the proxy"))
        if self.negotiated:
            self.client_flag &= ~CLIENT_MYSQL
        self._login_packets = bool(self.negotiated)
        try:
            await super()._request_authentication()
        finally:
            self._login_packets = False

    def write_packet(self, payload: bytes) -> None:
        if self._login_packets and len(payload) >= 32 and int.from_bytes(payload[:4], "little") == self.client_flag:
            payload = payload[:28] + (self.negotiated >> 32).to_bytes(4, "little") + payload[32:]
            self._login_packets = len(payload) == 32  # an SSLRequest: the response follows over TLS
        super().write_packet(payload)


def _column_definition(data: bytes, encoding: str) -> FieldDescriptorPacket:
    return FieldDescriptorPacket(without_extended_metadata(data), encoding)


async def _connect(p: BackendParams) -> MariaDBConnection:
    # A capability the proxy offers clients that changes what the server sends is the backend's
    # as its client has it (the pool's key: FOUND_ROWS, LOCAL_FILES, PS_MULTI_RESULTS, with which a
    # prepared CALL returns its OUT parameters as a result set); aiomysql adds MULTI_STATEMENTS and
    # MULTI_RESULTS, which every client the proxy serves gets too.
    flags = (CLIENT.SESSION_TRACK | (CLIENT.FOUND_ROWS if p.found_rows else 0)
             | (CLIENT.PS_MULTI_RESULTS if p.ps_multi_results else 0))
    kwargs = dict(
        user=p.user, password=p.password, charset=p.charset, autocommit=None, client_flag=flags,
        local_infile=p.local_files, connect_timeout=p.connect_timeout, ssl=p.ssl, program_name="mysqlpool-proxy",
    )
    if p.unix_socket:
        kwargs["unix_socket"] = p.unix_socket
    else:
        kwargs.update(host=p.host, port=p.port)
    keyed = MARIADB_CLIENT_EXTENDED_METADATA if p.extended_metadata else 0
    conn = MariaDBConnection(wanted=BACKEND_MARIADB_CAPABILITIES | keyed, required=keyed, **kwargs)
    await conn._connect()  # what aiomysql.connect() does with its own Connection
    return conn


async def open_backend(p: BackendParams, *, want_collations: bool = False) -> Opened:
    """Dial, authenticate and set up one backend connection; raises pymysql errors."""
    conn: MariaDBConnection = await asyncio.wait_for(_connect(p), p.connect_timeout)
    try:
        _watch(conn, p)
        row, collations = await asyncio.wait_for(_setup(conn, want_collations), p.connect_timeout)
    except BaseException:
        conn.close()
        raise
    transport, handoff = _take_transport(conn)
    opened = Opened(
        transport=transport,
        handoff=handoff,
        thread_id=int(row[0]),
        server_version=conn.get_server_info(),
        server_capabilities=conn.server_capabilities | conn.server_extended,
        status=conn.server_status,
        wait_timeout=float(row[1]),
        max_user_connections=int(row[2]),
        max_connections=int(row[3]),
        charset_vars={
            b"character_set_client": _b(row[4]), b"character_set_connection": _b(row[5]),
            b"character_set_results": _b(row[6]), b"collation_connection": _b(row[7]),
        },
        collations=collations,
        server_globals={name.encode(): _b(value) for name, value in zip(SERVER_GLOBALS, row[8:])},
        extended_capabilities=conn.negotiated,
    )
    return opened


def _b(value) -> bytes:
    if isinstance(value, int):
        return b"%d" % value
    return value.encode() if isinstance(value, str) else bytes(value)


async def _setup(conn: aiomysql.Connection, want_collations: bool):
    async with conn.cursor() as cur:
        await cur.execute(SETUP_SQL)
        await cur.nextset()
        row = await cur.fetchone()
        collations = None
        if want_collations:
            await cur.execute(COLLATIONS_SQL)
            collations = {int(i): (cs, name, (dflt or "").lower() == "yes")
                          for i, cs, name, dflt in await cur.fetchall()}
    return row, collations


def _take_transport(conn: aiomysql.Connection) -> tuple[asyncio.Transport, Handoff]:
    reader, writer = conn._reader, conn._writer
    if reader is None or writer is None:
        raise pymysql.err.OperationalError(CR.CR_SERVER_LOST, "Lost connection to server during backend setup")
    transport = writer.transport
    # Detach: aiomysql must neither read nor close this transport again.
    conn._reader = None
    conn._writer = None
    return transport, Handoff(reader, writer)


async def run_side_query(p: BackendParams, sql: str) -> None:
    """Run one statement on a short-lived connection of its own (e.g. KILL QUERY)."""
    conn = await asyncio.wait_for(_connect(p), p.connect_timeout)
    try:
        _watch(conn, p)
        async with conn.cursor() as cur:
            await asyncio.wait_for(cur.execute(sql), p.connect_timeout)
    finally:
        conn.close()

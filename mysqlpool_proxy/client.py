"""One client connection: handshake, commands, and when it holds a backend.

`ClientConnection` is the asyncio Protocol of a client socket. Its state:

    GREETING   waiting to learn the server's identity before greeting
    HANDSHAKE  authenticating (protocol/handshake.py drives it)
    READY      between commands; holds a backend only if it must (below)
    CHECKOUT   a command waits for a backend, or for one to be brought to
               this client's session state (a task runs only now)
    ACTIVE     a command is at the backend; its response is being relayed
    INFILE     the server asked for a LOCAL INFILE; the client's data is
               being relayed
    LOCAL      the proxy is answering a command itself, asynchronously
               (COM_CHANGE_USER, COM_RESET_CONNECTION, KILL)
    CLOSED

In transaction pooling a client holds a backend only while the server
reports a transaction open (SERVER_STATUS_IN_TRANS) or while it has pinned
state (session.Pins); otherwise the backend goes back to its pool as soon as
a response ends. In session pooling it holds one from its first command to
its last. Leaving with a dirty backend (mid-response, in a transaction,
pinned) resets or closes it, never returns it dirty.

The fast path (an idle backend already in the client's state) sends the
command synchronously from `data_received`; nothing awaits and no task is
created. Only a wait, a state sync or a ping runs as a task.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import TYPE_CHECKING

from .backend import BackendConnection, BackendGone, BackendState
from .constants import CLIENT, COMMAND, CR, ER, SERVER_STATUS
from .errors import ProtocolError, ProxyError
from .protocol import handshake as hs
from .protocol.command import CommandSpec, Handling, spec_for
from .protocol.framing import MAX_FRAME, FrameScanner, Oversized, Packet, PacketDecoder, encode_packet, next_seq
from .protocol.packets import make_eof, make_err, make_ok
from .protocol.response import Expect
from .protocol.rows import parse_text_result, sql_literal_for
from .protocol.sql import SqlEffects, analyze, parse_set_names, replace_connection_id, session_only
from .reasons import BackendCloseReason, ClientCloseReason, RefusalReason
from .session import Pins, PinReason, SessionState, SyncImpossible, apply_changes, sync_plan
from .statements import ClientStatement, ServerStatement, backend_statement_packet, statement_key

if TYPE_CHECKING:
    from .pool import Pool
    from .proxy import Proxy, UserEntry

__all__ = ["ClientState", "ClientConnection"]

log = logging.getLogger("mysqlpool.client")

IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
CURSOR_EXISTS = SERVER_STATUS.SERVER_STATUS_CURSOR_EXISTS
LAST_ROW_SENT = SERVER_STATUS.SERVER_STATUS_LAST_ROW_SENT
# Status bits that describe the session rather than one response.
STICKY_STATUS = IN_TRANS | AUTOCOMMIT | SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES | 0x2000 | 0x8000

HANDSHAKE_TIMEOUT = 10.0
# Bytes of pipelined input a busy client may queue before the proxy stops reading it.
MAX_QUEUED_INPUT = 1 << 20

ER_LOST_BACKEND = CR.CR_SERVER_LOST
ER_UNKNOWN_STMT_HANDLER = 1243
# Run before a diagnostics reader on a backend whose last statement was not this
# client's: a statement that uses a (derived) table resets the warnings list,
# and leaves ROW_COUNT() = -1 and FOUND_ROWS() = 1: the proxy's, not another client's.
NEUTRAL_DIAGNOSTICS = b"SELECT * FROM (SELECT 1) AS mysqlpool_neutral"
ER_STMT_HAS_NO_OPEN_CURSOR = 1421
# ER_XA_RBTIMEOUT, "Transaction branch was rolled back: took too long": the closest
# standard error to "your idle transaction was rolled back"; SQLSTATE class 40 is
# "transaction rollback", which retry logic in applications looks for.
ER_IDLE_TRANSACTION = 1400


class ClientState(enum.Enum):
    GREETING = "greeting"
    HANDSHAKE = "handshake"
    READY = "ready"
    CHECKOUT = "checkout"
    ACTIVE = "active"
    INFILE = "infile"
    LOCAL = "local"
    CLOSED = "closed"


_C = ClientState
_ALLOWED = {
    _C.GREETING: {_C.HANDSHAKE, _C.CLOSED},
    _C.HANDSHAKE: {_C.READY, _C.CLOSED},
    _C.READY: {_C.CHECKOUT, _C.ACTIVE, _C.LOCAL, _C.CLOSED},
    _C.CHECKOUT: {_C.ACTIVE, _C.READY, _C.CLOSED},
    _C.ACTIVE: {_C.READY, _C.INFILE, _C.CLOSED},
    _C.INFILE: {_C.ACTIVE, _C.CLOSED},
    _C.LOCAL: {_C.READY, _C.CLOSED},
    _C.CLOSED: set(),
}
# The table, on each member (a tuple: membership tests by identity, no enum hashing).
for _state, _next in _ALLOWED.items():
    _state.allowed = tuple(_next)


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "proxy", "id", "transport", "peer", "state", "decoder", "handshake", "user", "pool", "capabilities", "key",
        "session", "pins", "status", "backend", "charset", "scramble", "_cmd", "_effects", "_sql", "_stmt_id",
        "_prev_status", "_task", "_timer", "_infile", "_paused_by", "connected_at", "last_active", "_closing_reason",
        "change_user", "queries", "_writing_paused", "_cmd_seq", "_response_started", "_pending_error",
        "_query_timer", "stmts", "_stmt", "_next_stmt_id", "last_insert_id", "_last_backend",
    )

    def __init__(self, proxy: Proxy, conn_id: int):
        self.proxy = proxy
        self.id = conn_id
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.state = ClientState.GREETING
        self.decoder = PacketDecoder(proxy.config.proxy.max_packet_size)
        self.handshake: hs.ServerHandshake | None = None
        self.change_user: hs.ChangeUserAuth | None = None
        self.user: UserEntry | None = None
        self.pool: Pool | None = None
        self.capabilities = 0
        self.key = 0
        self.session = SessionState()
        self.pins = Pins()
        self.status = AUTOCOMMIT
        self.backend: BackendConnection | None = None
        self.charset = 0
        self.scramble = b""
        self._cmd: CommandSpec | None = None
        self._effects: SqlEffects | None = None
        self._sql = b""
        self._stmt_id = 0
        self._prev_status = 0
        self._task: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._infile: FrameScanner | None = None
        self._paused_by = 0  # bit 1: backend write buffer full; bit 2: too much queued input
        self._writing_paused = False
        self.connected_at = proxy.loop.time()
        self.last_active = self.connected_at
        self._closing_reason: ClientCloseReason | None = None
        self.queries = 0
        self._cmd_seq = 0
        self._response_started = False
        self._pending_error: ProxyError | None = None
        self._query_timer: asyncio.TimerHandle | None = None
        self.stmts: dict[int, ClientStatement] | None = None  # this client's prepared statements
        self._stmt: ClientStatement | None = None  # the statement of the command in flight
        self._next_stmt_id = 1
        self.last_insert_id = 0  # this client's LAST_INSERT_ID(), whatever backend it ran on
        self._last_backend: BackendConnection | None = None  # where its previous statement ran

    def __repr__(self) -> str:
        user = self.user.name if self.user else "?"
        return f"<Client #{self.id} {user}@{self.peer} {self.state.value}>"

    def set_state(self, new: ClientState) -> None:
        if new not in self.state.allowed:
            raise RuntimeError(f"client #{self.id}: illegal transition {self.state.value} -> {new.value}")
        self.state = new

    # -- connection lifecycle -------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else "localhost"
        transport.set_write_buffer_limits(high=self.proxy.config.pool.result_buffer_bytes)
        refusal = self.proxy.admit(self)
        if refusal is not None:
            self._refuse_at_accept(refusal)
            return
        self._timer = self.proxy.loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_timeout)
        if self.proxy.server_info is not None:
            self._greet()
        else:
            self._task = self.proxy.loop.create_task(self._greet_when_server_known())

    def _refuse_at_accept(self, error: ProxyError) -> None:
        self.transport.write(encode_packet(make_err(error.errno, error.sqlstate, error.message), 0))
        self.close(ClientCloseReason.MAX_CLIENTS)

    async def _greet_when_server_known(self) -> None:
        try:
            await asyncio.wait_for(self.proxy.server_known.wait(), self.proxy.config.pool.checkout_timeout)
        except asyncio.TimeoutError:
            detail = self.proxy.describe_backend_problem()
            err = ProxyError(ER.CON_COUNT_ERROR, f"mysqlpool-proxy: the backend server is unavailable ({detail})")
            self.transport.write(encode_packet(make_err(err.errno, err.sqlstate, err.message), 0))
            self.close(ClientCloseReason.BACKEND_UNAVAILABLE)
            return
        finally:
            self._task = None
        if self.state is ClientState.GREETING:
            self._greet()

    def _greet(self) -> None:
        info = self.proxy.server_info
        self.handshake = hs.ServerHandshake(
            connection_id=self.id, server_version=info.advertised_version, capabilities=info.client_capabilities,
            charset=info.charset_id, lookup=self.proxy.lookup_credentials, client_host=self.peer,
            tls_available=self.proxy.tls_context is not None,
        )
        self.scramble = self.handshake.scramble
        self.set_state(ClientState.HANDSHAKE)
        self.transport.write(self.handshake.greeting())

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self.state in (ClientState.GREETING, ClientState.HANDSHAKE):
            self.close(ClientCloseReason.HANDSHAKE_TIMEOUT)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(self._closing_reason or ClientCloseReason.DISCONNECTED)

    def eof_received(self) -> bool:
        return False

    def close(self, reason: ClientCloseReason) -> None:
        if self.state is ClientState.CLOSED:
            return
        self._closing_reason = reason
        self.state = ClientState.CLOSED
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._cancel_query_timer()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._leave_backend()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.proxy.client_closed(self, reason)

    def _leave_backend(self) -> None:
        """Give up the held backend without leaving anything of this client on it."""
        backend, self.backend = self.backend, None
        if backend is None or backend.closed:
            return
        backend.client = None
        if backend.state in (BackendState.BUSY, BackendState.INTERNAL):
            backend.close(BackendCloseReason.DIRTY)
        elif self.holds_state():
            self.proxy.reset_and_release(backend)
        else:
            backend.pool.release(backend)

    def holds_state(self) -> bool:
        return bool(self.status & IN_TRANS) or bool(self.pins)

    @property
    def in_transaction(self) -> bool:
        return bool(self.status & IN_TRANS)

    # -- flow control ----------------------------------------------------------------

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self.backend is not None:
            self.backend.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self.backend is not None:
            self.backend.resume_reading()

    def _pause_reading(self, why: int) -> None:
        if not self._paused_by and self.transport is not None:
            self.transport.pause_reading()
        self._paused_by |= why

    def _resume_reading(self, why: int) -> None:
        if self._paused_by & why:
            self._paused_by &= ~why
            if not self._paused_by and self.transport is not None and self.state is not ClientState.CLOSED:
                self.transport.resume_reading()

    def pause_reading_for_backend(self) -> None:
        self._pause_reading(1)

    def resume_reading_for_backend(self) -> None:
        self._resume_reading(1)

    # -- input ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.proxy.stats.bytes_in += len(data)
        state = self.state
        if state is ClientState.INFILE:
            self._infile_data(data)
            return
        decoder = self.decoder
        if state is ClientState.READY and not decoder.buffered:
            # Fast path: exactly one whole packet, as a command usually arrives.
            n = len(data)
            if n > 4 and (data[0] | data[1] << 8 | data[2] << 16) == n - 4 < min(MAX_FRAME, decoder.max_size):
                self._handle_packet(Packet(data[3], data[3], data[4:], data))
                if self.state is ClientState.READY and decoder.buffered:
                    self._process_input()
                return
        decoder.feed(data)
        if state is ClientState.READY or state is ClientState.HANDSHAKE:
            self._process_input()
        elif decoder.buffered > MAX_QUEUED_INPUT:
            self._pause_reading(2)

    def _process_input(self) -> None:
        """Handle queued packets while the client is free to have them handled."""
        decoder = self.decoder
        while self.state is ClientState.READY or self.state is ClientState.HANDSHAKE or (
                self.state is ClientState.LOCAL and self.change_user is not None):
            try:
                pkt = decoder.next_packet()
            except ProtocolError:
                self.close(ClientCloseReason.PROTOCOL_ERROR)
                return
            if pkt is None:
                break
            self._handle_packet(pkt)
        if self._paused_by & 2 and decoder.buffered <= MAX_QUEUED_INPUT:
            self._resume_reading(2)

    def _handle_packet(self, pkt) -> None:
        try:
            if self.state is ClientState.HANDSHAKE:
                self._handshake_packet(pkt)
            elif self.state is ClientState.LOCAL:
                self.proxy.local.change_user_packet(self, pkt)
            else:
                self._command(pkt)
        except Exception:  # a bug must cost this client its connection, never the proxy
            log.exception("client #%d: internal error handling a packet; closing it", self.id)
            if self.transport is not None and not self.transport.is_closing():
                self.send_error(pkt.last_seq if isinstance(pkt, Packet) else 0, ProxyError(
                    ER.UNKNOWN_ERROR, "mysqlpool-proxy internal error; the connection is closed"))
            self.close(ClientCloseReason.PROTOCOL_ERROR)

    # -- handshake -------------------------------------------------------------------

    def _handshake_packet(self, pkt) -> None:
        if isinstance(pkt, Oversized):
            self.close(ClientCloseReason.PROTOCOL_ERROR)
            return
        for event in self.handshake.receive(pkt):
            if isinstance(event, hs.Send):
                self.transport.write(event.data)
            elif isinstance(event, hs.StartTLS):
                self._task = self.proxy.loop.create_task(self._start_tls())
                return
            elif isinstance(event, hs.Failed):
                self.proxy.refused(RefusalReason.AUTH_FAILED, f"client #{self.id}: {event.message}")
                self.close(ClientCloseReason.AUTH_FAILED)
                return
            elif isinstance(event, hs.Verified):
                self._verified(event)

    async def _start_tls(self) -> None:
        loop = self.proxy.loop
        self._pause_reading(4)
        try:
            new_transport = await loop.start_tls(self.transport, self, self.proxy.tls_context, server_side=True)
        except (OSError, ConnectionError, asyncio.CancelledError):
            self.close(ClientCloseReason.PROTOCOL_ERROR)
            return
        finally:
            self._task = None
        self.transport = new_transport
        self._paused_by &= ~4

    def _verified(self, event: hs.Verified) -> None:
        entry = self.proxy.user_entry(event.user)
        self.user = entry
        self.pool = entry.pool
        self.capabilities = event.capabilities
        self.key = self.proxy.pool_key(event.capabilities)
        self.charset = event.charset or self.proxy.server_info.charset_id
        self.session = self.proxy.initial_session(self.charset, event.capabilities, event.database)
        self.pins = Pins()
        self.status = self.proxy.server_info.initial_status
        if event.database and not self.proxy.schema_known(entry, event.database):
            self.set_state(ClientState.READY)
            self.set_state(ClientState.LOCAL)
            self._task = self.proxy.loop.create_task(self._validate_schema_then_accept(event.database))
            return
        self._accept()

    def _accept(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport.write(self.handshake.accept(self.status & STICKY_STATUS))
        self.handshake = None
        if self.state is ClientState.HANDSHAKE:
            self.set_state(ClientState.READY)
        self.proxy.client_authenticated(self)

    async def _validate_schema_then_accept(self, schema: bytes) -> None:
        try:
            error = await self.proxy.check_schema(self, schema)
        finally:
            self._task = None
        if self.state is ClientState.CLOSED:
            return
        if error is not None:
            self.transport.write(self.handshake.reject(error.errno, error.message))
            self.close(ClientCloseReason.AUTH_FAILED)
            return
        self._accept()
        self.set_state(ClientState.READY)
        self._process_input()

    # -- commands ------------------------------------------------------------------

    def _command(self, pkt: Packet | Oversized) -> None:
        self.last_active = self.proxy.loop.time()
        if isinstance(pkt, Oversized):
            self.send_error(pkt.last_seq, ProxyError(
                ER.NET_PACKET_TOO_LARGE,
                f"Got a packet bigger than 'max_allowed_packet' bytes ({pkt.size} > {self.decoder.max_size}; "
                "mysqlpool-proxy [proxy] max_packet_size)"))
            return
        payload = pkt.payload
        if not payload:
            self.send_error(pkt.last_seq, ProxyError(ER.UNKNOWN_COM_ERROR, "Unknown command: empty packet"))
            return
        if self._pending_error is not None and payload[0] not in _NO_REPLY_CODES:
            err, self._pending_error = self._pending_error, None
            self.send_error(pkt.last_seq, err)
            return
        spec = spec_for(payload[0])
        handling = spec.handling
        if handling is Handling.RELAY or handling is Handling.NO_REPLY:
            self._relay_command(spec, pkt)
        elif handling is Handling.LOCAL:
            self.proxy.local.handle(self, spec, pkt)
        else:
            self.send_error(pkt.last_seq, ProxyError(
                ER.UNKNOWN_COM_ERROR,
                f"mysqlpool-proxy does not relay {spec.name.upper()} (command 0x{spec.code:02x}): "
                "replication and server administration commands must go to the server directly"))

    def _relay_command(self, spec: CommandSpec, pkt: Packet) -> None:
        payload = pkt.payload
        code = spec.code
        effects = None
        if code == COMMAND.COM_QUERY:
            if self.backend is None and len(payload) > 9 and payload[1] in (0x53, 0x73):  # "S"/"s": SET NAMES?
                names = parse_set_names(payload[1:])
                if names is not None and self.proxy.local.set_names(self, pkt, *names):
                    return
            effects = analyze(payload[1:])
            if effects.kill is not None and self.proxy.local.intercept_query(self, pkt, effects):
                return
            if effects.reads_connection_id:
                # The id a client sees is the proxy's (KILL takes it too), not a backend's.
                payload = b"\x03" + replace_connection_id(payload[1:], self.id)
                pkt = Packet(pkt.seq, (pkt.seq + len(payload) // MAX_FRAME) & 0xFF, payload,
                             encode_packet(payload, pkt.seq))
        self._stmt = None
        if code in _STMT_ID_COMMANDS:
            if not self._statement_command(code, pkt):
                return
        elif code == COMMAND.COM_STMT_PREPARE:
            self._stmt_id = self._next_stmt_id
            self._next_stmt_id += 1
        self._cmd = spec
        self._effects = effects
        self._sql = payload[1:] if effects is not None or code == COMMAND.COM_STMT_PREPARE else b""
        backend = self.backend
        if backend is None:
            if effects is not None and effects.reads_diagnostics:
                backend = self.pool.take_exact(self._last_backend, (self.id, self.queries))
            if backend is None:
                backend = self.pool.try_acquire(self.key, self.session)
            if backend is None:
                self._start_checkout(pkt)
                return
            self.backend = backend
            backend.client = self
            if self._needs_preparation(backend):
                self._start_checkout(pkt)
                return
        elif (backend.state is not BackendState.RESERVED or backend.closed
              or backend.session.multi_statements is not self.session.multi_statements
              or (self._stmt is not None and not backend.has_statement(self._stmt.key))
              or (effects is not None and self._identity_differs(backend, effects))):
            self._start_checkout(pkt)
            return
        self._send(backend, spec, pkt)

    def _identity_differs(self, backend: BackendConnection, fx: SqlEffects) -> bool:
        """Would this statement read another LAST_INSERT_ID() or diagnostics than this client's own?"""
        if fx.reads_insert_id and backend.last_insert_id != self.last_insert_id:
            return True
        return fx.reads_diagnostics and backend.last_owner != (self.id, self.queries)

    def _statement_command(self, code: int, pkt: Packet) -> bool:
        """Look up the client's statement; answer here what needs no backend. False: answered."""
        sid = int.from_bytes(pkt.payload[1:5], "little") if len(pkt.payload) >= 5 else -1
        self._stmt_id = sid
        stmt = self.stmts.get(sid) if self.stmts else None
        pins = self.pins
        if stmt is None:
            if code not in _NO_REPLY_CODES:
                self.send_error(pkt.last_seq, ProxyError(
                    ER_UNKNOWN_STMT_HANDLER, f"Unknown prepared statement handler ({sid}) given to mysqlpool-proxy"))
            return False
        if code == COMMAND.COM_STMT_CLOSE:
            del self.stmts[sid]
            self._drop_server_statement(stmt)
            return False
        if code == COMMAND.COM_STMT_RESET and sid not in pins.cursors and sid not in pins.long_data:
            self.send_ok(pkt.last_seq)  # nothing of it lives on a server: nothing to reset
            return False
        if code == COMMAND.COM_STMT_FETCH and sid not in pins.cursors:
            self.send_error(pkt.last_seq, ProxyError(ER_STMT_HAS_NO_OPEN_CURSOR,
                                                     f"The statement ({sid}) has no open cursor."))
            return False
        self._stmt = stmt
        return True

    def _drop_server_statement(self, stmt: ClientStatement) -> None:
        """A closed statement with a cursor or long data on the held backend: close it there too."""
        pins = self.pins
        if stmt.id in pins.cursors or stmt.id in pins.long_data:
            pins.cursors.discard(stmt.id)
            pins.long_data.discard(stmt.id)
            backend = self.backend
            if backend is not None and backend.statements is not None and not backend.closed:
                server = backend.statements.pop(stmt.key)
                if server is not None:
                    backend.close_server_statements((server,))
            if backend is not None and backend.state is BackendState.RESERVED:
                self._decide_hold(backend)

    def _needs_preparation(self, backend: BackendConnection) -> bool:
        if not backend.session.same_as(self.session):
            return True
        if self._stmt is not None and not backend.has_statement(self._stmt.key):
            return True
        if self._effects is not None and self._identity_differs(backend, self._effects):
            return True
        ping_after = self.proxy.config.pool.ping_after
        return self.proxy.loop.time() - backend.last_used > ping_after

    def _send(self, backend: BackendConnection, spec: CommandSpec, pkt: Packet) -> None:
        self.queries += 1
        raw = pkt.raw
        prepare_id = None
        if self._stmt is not None:
            raw = backend_statement_packet(self._stmt, backend.statements.get(self._stmt.key), pkt)
        elif spec.code == COMMAND.COM_STMT_PREPARE:
            prepare_id = self._stmt_id
        if spec.handling is Handling.NO_REPLY:
            backend.write(raw)
            self._no_reply_done(spec, backend)
            self._decide_hold(backend)
            return
        self._prev_status = self.status
        self._cmd_seq = pkt.last_seq
        self._response_started = False
        self.set_state(ClientState.ACTIVE)
        if self._writing_paused:
            backend.pause_reading()  # the client cannot take more yet: leave the result on the server
        binary = spec.code == COMMAND.COM_STMT_EXECUTE or spec.code == COMMAND.COM_STMT_FETCH
        backend.send_command(self, raw, spec.expect, binary=binary,
                             strip=not self.capabilities & CLIENT.SESSION_TRACK, prepare_id=prepare_id)
        query_timeout = self.proxy.config.pool.query_timeout
        if query_timeout > 0:
            self._query_timer = self.proxy.loop.call_later(query_timeout, self._query_timed_out, backend)

    def _no_reply_done(self, spec: CommandSpec, backend: BackendConnection | None = None) -> None:
        self.pool.stats.queries[spec.name] += 1
        if spec.code == COMMAND.COM_STMT_SEND_LONG_DATA and backend is not None and self._stmt is not None:
            # The data waits on the server statement for the execute that consumes it.
            self.pins.long_data.add(self._stmt.id)
            backend.statements.get(self._stmt.key).busy = True

    # -- the slow path: wait for a backend, bring it to this client's state ------------

    def _start_checkout(self, pkt: Packet) -> None:
        self.set_state(ClientState.CHECKOUT)
        self._task = self.proxy.loop.create_task(self._checkout(pkt))

    async def _checkout(self, pkt: Packet) -> None:
        spec = self._cmd
        try:
            backend = await self._prepared_backend()
        except ProxyError as err:
            self._task = None
            if self.state is ClientState.CLOSED:
                return
            self.set_state(ClientState.READY)
            backend = self.backend
            if backend is not None and backend.state is BackendState.RESERVED:
                self._decide_hold(backend)  # e.g. its schema is gone: the backend is not its to keep
            self.send_error(pkt.last_seq, err)
            self._process_input()
            return
        except asyncio.CancelledError:
            return
        self._task = None
        if self.state is ClientState.CLOSED:
            self._leave_backend()
            return
        self.set_state(ClientState.READY)
        self._send(backend, spec, pkt)
        if self.state is ClientState.READY:
            self._process_input()

    async def _prepared_backend(self) -> BackendConnection:
        """A backend in this client's session state; retries silently past dead ones."""
        cfg = self.proxy.config.pool
        loop = self.proxy.loop
        deadline = loop.time() + cfg.checkout_timeout
        while True:
            backend = self.backend
            if backend is None or backend.closed:
                if backend is not None:
                    self.backend = None
                    if self.holds_state():
                        raise ProxyError(ER_LOST_BACKEND, "Lost connection to backend; the transaction was rolled back")
                backend = await self._acquire(deadline)
                self.backend = backend
                backend.client = self
            try:
                await self._bring_to_state(backend, deadline)
                return backend
            except BackendGone:
                if self.holds_state():
                    self.backend = None
                    raise ProxyError(ER_LOST_BACKEND, "Lost connection to backend; the transaction was rolled back")
                continue  # a dead pooled backend: quietly take another

    async def _acquire(self, deadline: float) -> BackendConnection:
        from .pool import CheckoutTimeout, QueueFull
        pool = self.pool
        remaining = max(0.0, deadline - self.proxy.loop.time())
        try:
            return await pool.acquire(self.key, remaining)
        except QueueFull:
            self.proxy.refused(RefusalReason.QUEUE_FULL, f"pool {pool.name}: {len(pool.waiters)} clients waiting")
            raise ProxyError(ER.CON_COUNT_ERROR, (
                f"Too many connections: mysqlpool-proxy pool '{pool.name}' already has {len(pool.waiters)} clients "
                f"waiting for a backend connection (max_waiting_clients {pool.max_waiting}); try again later"))
        except CheckoutTimeout as exc:
            self.proxy.refused(RefusalReason.CHECKOUT_TIMEOUT, f"pool {pool.name} after {exc.waited:.1f}s ({exc})")
            raise ProxyError(ER.CON_COUNT_ERROR, (
                f"Too many connections: mysqlpool-proxy pool '{pool.name}' had no free backend connection after "
                f"waiting {exc.waited:.1f}s ({exc}); try again later"))

    async def _bring_to_state(self, backend: BackendConnection, deadline: float) -> None:
        timeout = max(0.5, min(self.proxy.config.backend.connect_timeout, deadline - self.proxy.loop.time()))
        if self.proxy.loop.time() - backend.last_used > self.proxy.config.pool.ping_after:
            result = await backend.run_internal(b"\x0e", Expect.SIMPLE, timeout)
            if result.error is not None:
                backend.close(BackendCloseReason.PING_FAILED)
                raise BackendGone(BackendCloseReason.PING_FAILED)
            backend.last_used = self.proxy.loop.time()
        try:
            steps = sync_plan(backend.session, self.session)
        except SyncImpossible:
            backend.close(BackendCloseReason.RECLAIMED)
            raise BackendGone(BackendCloseReason.RECLAIMED)
        for step in steps:
            await self.proxy.run_sync_step(backend, step, timeout)
        if steps:
            backend.session = self.session.copy()
            backend.last_owner = None
        await self._bring_identity(backend, timeout)
        stmt = self._stmt
        if stmt is not None and not backend.has_statement(stmt.key):
            await self.proxy.prepare_on(backend, stmt, timeout)

    async def _bring_identity(self, backend: BackendConnection, timeout: float) -> None:
        """Before a statement that reads LAST_INSERT_ID() or the last statement's diagnostics:
        give the backend this client's insert id; and if the diagnostics there are not this
        client's own, replace them by the proxy's own neutral ones (never another client's)."""
        fx = self._effects
        if fx is None:
            return
        if fx.reads_insert_id and backend.last_insert_id != self.last_insert_id:
            await self.proxy.run_hidden(backend, b"SELECT LAST_INSERT_ID(%d)" % self.last_insert_id, timeout)
            backend.last_insert_id = self.last_insert_id
        own = (self.id, self.queries)
        if fx.reads_diagnostics and backend.last_owner != own:
            await self.proxy.run_hidden(backend, NEUTRAL_DIAGNOSTICS, timeout)
            backend.last_owner = own

    # -- responses -------------------------------------------------------------------

    def relay_to_client(self, data: bytes) -> None:
        self._response_started = True
        self.proxy.stats.bytes_out += len(data)
        self.transport.write(data)

    def on_infile_request(self, backend: BackendConnection) -> None:
        self.set_state(ClientState.INFILE)
        self._infile = FrameScanner()
        leftover = self.decoder.take_buffer()
        if leftover:
            self._infile_data(leftover)

    def _infile_data(self, data: bytes) -> None:
        backend = self.backend
        end = self._infile.feed(data)
        if end < 0:
            backend.write(data)
            return
        backend.write(data[:end] if end < len(data) else data)
        self._infile = None
        self.set_state(ClientState.ACTIVE)
        backend.infile_sent()
        if end < len(data):
            self.decoder.feed(data[end:])

    def _query_timed_out(self, backend: BackendConnection) -> None:
        """[pool] query_timeout: stop the statement on the server (KILL QUERY from a side connection)."""
        self._query_timer = None
        if self.state is ClientState.ACTIVE and self.backend is backend and backend.state is BackendState.BUSY:
            log.info("client #%d: statement ran past query_timeout; killing it on backend thread %d",
                     self.id, backend.thread_id)
            self.proxy.kill_backend_query(backend, hard_after=self.proxy.config.backend.connect_timeout)

    def _cancel_query_timer(self) -> None:
        if self._query_timer is not None:
            self._query_timer.cancel()
            self._query_timer = None

    def on_response_done(self, backend: BackendConnection) -> None:
        if self._query_timer is not None:
            self._cancel_query_timer()
        tracker = backend.tracker
        spec = self._cmd
        ok = tracker.error is None
        if ok:
            self.status = tracker.status
        self._record_state(backend, tracker, ok)
        stats = self.pool.stats
        stats.queries[spec.name] += 1
        if self._prev_status & IN_TRANS:
            if not self.status & IN_TRANS:
                stats.transactions += 1
        elif self.status & IN_TRANS:
            stats.pins[PinReason.TRANSACTION.value] += 1  # a transaction pins until it ends
        self.set_state(ClientState.READY)
        fx = self._effects
        if tracker.last_insert_id:
            self.last_insert_id = backend.last_insert_id = tracker.last_insert_id
        backend.last_owner = (self.id, self.queries)
        self._last_backend = backend
        # Warnings and SQL_CALC_FOUND_ROWS are read by the next statement (SHOW WARNINGS,
        # FOUND_ROWS()): keep the backend for it, softly (yielded if others wait).
        diagnostics = bool(tracker.warnings or (fx is not None and fx.calc_found_rows))
        if diagnostics and not self.pins.diagnostics:
            self.pool.stats.pins[PinReason.DIAGNOSTICS.value] += 1
        self.pins.diagnostics = diagnostics
        if fx is not None and (fx.user_vars_written or fx.sets_insert_id) and not backend.closed:
            self.set_state(ClientState.LOCAL)
            self._task = self.proxy.loop.create_task(self._capture(backend, fx))
            return
        if not ok and self._status_uncertain(tracker):
            self.set_state(ClientState.LOCAL)
            self._task = self.proxy.loop.create_task(self._probe_status(backend))
            return
        self._decide_hold(backend)
        self._process_input()

    def _record_state(self, backend: BackendConnection, tracker, ok: bool) -> None:
        changes = tracker.changes
        effects = self._effects
        if changes is not None or (effects is not None and effects.sysvars_set_null and ok):
            apply_changes(self.session, changes, effects if ok else None)
            apply_changes(backend.session, changes, effects if ok else None)
        pins = self.pins
        code = self._cmd.code
        pin_related = changes is not None or (effects is not None and effects.any) or code in _STMT_ID_COMMANDS
        before = pins.reasons() if pin_related else None
        explained = pins.apply_sql(effects, ok) if effects is not None and effects.any else False
        if changes is not None:
            if changes.state_change and not explained:
                explained = self._cmd.code == COMMAND.COM_INIT_DB or (self._sql and session_only(self._sql))
            pins.apply_tracker(changes, explained)
            if self.status & IN_TRANS:
                pins.trx_characteristics = False  # they describe the open transaction, not the next one
        if code == COMMAND.COM_STMT_PREPARE:
            if tracker.prepare_ok is not None:
                self._register_statement(backend, tracker.prepare_ok)
        elif self._stmt is not None:
            self._statement_done(backend, code, tracker, ok)
        if before is not None:
            self.proxy.count_new_pins(self, before, pins.reasons())

    def _register_statement(self, backend: BackendConnection, prepare_ok: tuple[int, int, int, int]) -> None:
        server_id, columns, params, _warnings = prepare_ok
        key = statement_key(self.session, self._sql)
        if self.stmts is None:
            self.stmts = {}
        self.stmts[self._stmt_id] = ClientStatement(self._stmt_id, self._sql, key, params, columns)
        dropped = backend.statement_cache().put(key, ServerStatement(server_id, params, columns))
        if dropped:
            backend.close_server_statements(dropped)

    def _statement_done(self, backend: BackendConnection, code: int, tracker, ok: bool) -> None:
        sid = self._stmt.id
        pins = self.pins
        status = tracker.status
        if code == COMMAND.COM_STMT_EXECUTE:
            pins.long_data.discard(sid)
            if ok and status & CURSOR_EXISTS:
                pins.cursors.add(sid)
            else:
                pins.cursors.discard(sid)
        elif code == COMMAND.COM_STMT_FETCH:
            if not ok or status & LAST_ROW_SENT or not status & CURSOR_EXISTS:
                pins.cursors.discard(sid)
        elif code == COMMAND.COM_STMT_RESET:
            pins.cursors.discard(sid)
            pins.long_data.discard(sid)
        server = backend.statements.get(self._stmt.key) if backend.statements is not None else None
        if server is not None:
            server.busy = sid in pins.cursors or sid in pins.long_data

    def _status_uncertain(self, tracker) -> bool:
        """After an ERR the server's status is unknown unless nothing could have changed it."""
        if tracker.ok_count or tracker.result_sets:
            return True  # earlier statements of a multi-statement query ran
        prev = self._prev_status
        return bool(prev & IN_TRANS) or not prev & AUTOCOMMIT

    async def _capture(self, backend: BackendConnection, fx: SqlEffects) -> None:
        """Learn what the statement left in user variables and LAST_INSERT_ID(), so they can
        follow this client to another backend (one hidden SELECT; its status settles IN_TRANS too)."""
        names = fx.user_vars_written
        columns = [b"LAST_INSERT_ID()"] + [b"@`" + n.replace(b"`", b"``") + b"`" for n in names]
        try:
            result = await self.proxy.run_hidden(backend, b"SELECT " + b", ".join(columns),
                                                 self.proxy.config.backend.connect_timeout, collect=True)
            self.status = result.status
            self._remember_captured(backend, result.data, names, fx.sets_insert_id)
        except ProxyError:
            self.pins.user_variables = True  # could not learn them: keep the backend that has them
        except (BackendGone, ProtocolError):
            pass
        finally:
            self._task = None
        if self.state is ClientState.CLOSED:
            return
        self.set_state(ClientState.READY)
        self._decide_hold(backend)
        self._process_input()

    def _remember_captured(self, backend: BackendConnection, data: bytes, names: list[bytes], insert_id: bool) -> None:
        columns, rows = parse_text_result(data)
        row = rows[0]
        if insert_id and row[0] is not None:
            self.last_insert_id = backend.last_insert_id = int(row[0])
        charsets = self.proxy.server_info.charset_names()
        user_vars = self.session.user_vars
        for name, column, value in zip(names, columns[1:], row[1:]):
            if value is None:
                user_vars.pop(name, None)
            else:
                user_vars[name] = sql_literal_for(column, value, charsets)
        backend.session.user_vars = dict(user_vars)

    def yield_soft_backend(self) -> bool:
        """Give back a backend held only for the last statement's diagnostics (others are waiting)."""
        backend = self.backend
        if (backend is None or self.state is not ClientState.READY or self.status & IN_TRANS
                or not self.pins.only_soft() or self.proxy.session_mode):
            return False
        self.pins.diagnostics = False
        self.backend = None
        backend.client = None
        backend.pool.release(backend)
        return True

    async def _probe_status(self, backend: BackendConnection) -> None:
        try:
            result = await backend.run_internal(b"\x0e", Expect.SIMPLE, self.proxy.config.backend.connect_timeout)
            if result.error is None:
                self.status = result.status
        except BackendGone:
            pass
        finally:
            self._task = None
        if self.state is ClientState.CLOSED:
            return
        self.set_state(ClientState.READY)
        self._decide_hold(backend)
        self._process_input()

    def _decide_hold(self, backend: BackendConnection) -> None:
        if backend.closed:
            if self.backend is backend:
                self.backend = None
            return
        if self.holds_state():
            return
        if self.proxy.session_mode and not backend.pool.expired(backend, self.proxy.loop.time()):
            return
        self.backend = None
        backend.client = None
        backend.pool.release(backend)

    def on_backend_lost(self, backend: BackendConnection, was_busy: bool) -> None:
        """The backend this client held died. If its transaction or pinned state died with it,
        the client must not go on as if not: it is told, then closed. Otherwise a statement
        that was running gets an error and the client goes on; one not yet sent is retried."""
        self._cancel_query_timer()
        if self.backend is backend:
            self.backend = None
        state = self.state
        if state is ClientState.CLOSED:
            return
        active = state is ClientState.ACTIVE or state is ClientState.INFILE
        if self.holds_state():
            if active and not self._response_started:
                self.send_error(self._cmd_seq, ProxyError(
                    ER_LOST_BACKEND, "Lost connection to backend during query; the transaction was rolled back"))
            elif state is ClientState.READY:
                self.send_error(0, ProxyError(
                    ER_LOST_BACKEND, "Lost connection to backend; the open transaction or session state was lost"))
            self.close(ClientCloseReason.BACKEND_LOST)
            return
        if active:
            if self._response_started:
                self.close(ClientCloseReason.BACKEND_LOST)  # half a response is out: the stream is broken
                return
            self.set_state(ClientState.READY)
            self.send_error(self._cmd_seq, ProxyError(ER_LOST_BACKEND, "Lost connection to backend during query"))
            self._process_input()
        # CHECKOUT and LOCAL: their task sees BackendGone and carries on with another backend.

    # -- janitor hooks ------------------------------------------------------------------

    def keepalive_backend(self) -> None:
        """Ping the backend this idle client holds, before the server's wait_timeout ends it."""
        backend = self.backend
        self.set_state(ClientState.LOCAL)
        self._task = self.proxy.loop.create_task(self._keepalive(backend))

    async def _keepalive(self, backend: BackendConnection) -> None:
        try:
            result = await backend.run_internal(b"\x0e", Expect.SIMPLE, self.proxy.config.backend.connect_timeout)
            if result.error is None:
                backend.last_used = self.proxy.loop.time()
            else:
                backend.close(BackendCloseReason.PING_FAILED)
        except BackendGone:
            pass  # on_backend_lost has dealt with this client
        finally:
            self._task = None
        self._back_to_ready()

    def roll_back_idle_transaction(self, timeout: float) -> None:
        """[pool] idle_transaction_timeout: roll back, tell the client at its next statement, free the backend."""
        backend = self.backend
        log.info("client #%d idle in a transaction for %.0fs: rolling it back", self.id, timeout)
        self.set_state(ClientState.LOCAL)
        self._task = self.proxy.loop.create_task(self._roll_back(backend, timeout))

    async def _roll_back(self, backend: BackendConnection, timeout: float) -> None:
        err = ProxyError(ER_IDLE_TRANSACTION, (
            f"mysqlpool-proxy rolled back this connection's transaction: it was idle longer than "
            f"idle_transaction_timeout ({timeout:g}s)"), "40000")
        try:
            result = await backend.run_internal(b"\x03ROLLBACK", Expect.RESULT,
                                                self.proxy.config.backend.connect_timeout)
            if result.error is None:
                self.status = result.status
            else:
                backend.close(BackendCloseReason.DIRTY)
        except BackendGone:
            pass
        finally:
            self._task = None
        if self.state is ClientState.CLOSED:
            return
        if self.status & IN_TRANS or (self.backend is None and self.pins):
            # XA, or the state went with the backend: the session cannot go on.
            self.close(ClientCloseReason.IDLE_TIMEOUT)
            return
        self._pending_error = err
        if self.backend is not None:
            self._decide_hold(self.backend)
        self._back_to_ready()

    def _back_to_ready(self) -> None:
        if self.state is ClientState.LOCAL:
            self.set_state(ClientState.READY)
            self._process_input()

    # -- replies from the proxy itself --------------------------------------------------

    def send_error(self, last_seq: int, err: ProxyError) -> None:
        self.transport.write(encode_packet(make_err(err.errno, err.sqlstate, err.message, self.capabilities),
                                           next_seq(last_seq)))

    def send_ok(self, last_seq: int, info: bytes = b"") -> None:
        self.transport.write(encode_packet(make_ok(self.capabilities, self.status & STICKY_STATUS, info=info),
                                           next_seq(last_seq)))

    def send_eof(self, last_seq: int) -> None:
        self.transport.write(encode_packet(make_eof(self.status & STICKY_STATUS), next_seq(last_seq)))

    def pinned_reasons(self) -> list[PinReason]:
        reasons = self.pins.reasons()
        if self.status & IN_TRANS:
            reasons.insert(0, PinReason.TRANSACTION)
        return reasons


_NO_REPLY_CODES = frozenset((COMMAND.COM_STMT_CLOSE, COMMAND.COM_STMT_SEND_LONG_DATA, COMMAND.COM_QUIT))

_STMT_ID_COMMANDS = frozenset((
    COMMAND.COM_STMT_EXECUTE, COMMAND.COM_STMT_FETCH, COMMAND.COM_STMT_RESET, COMMAND.COM_STMT_CLOSE,
    COMMAND.COM_STMT_SEND_LONG_DATA,
))

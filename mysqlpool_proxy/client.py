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

In transaction pooling a client holds a backend only while a transaction is
open or while it has pinned state (session.Pins); otherwise the backend goes back to its pool as soon as
a response ends. In session pooling it holds one from its first command to
its last. A transaction is open while the server reports it
(SERVER_STATUS_IN_TRANS), and also, with autocommit off, from any statement
to the COMMIT or ROLLBACK that ends it, whatever the flag says: a SAVEPOINT
before the first table lives on that server connection
(protocol/transaction.py). Leaving with a dirty backend (mid-response, in a transaction,
pinned) resets or closes it, never returns it dirty.

The fast path (an idle backend already in the client's state) sends the
command synchronously from `data_received`; nothing awaits and no task is
created. Only a wait, a state sync or a ping runs as a task.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .backend import BackendConnection, BackendState
from .constants import CLIENT, COMMAND, ER, SERVER_STATUS
from .errors import CONNECTION_ENDING_ERRORS, ProtocolError, ProxyError
from .protocol import handshake as hs
from .protocol.command import CommandSpec, Handling, spec_for
from .protocol.response import Expect
from .protocol.framing import MAX_FRAME, FrameScanner, Oversized, Packet, PacketDecoder, encode_packet, next_seq
from .protocol.packets import make_eof, make_err, make_ok
from .protocol.session_track import Trackers
from .protocol.sql import ANSI_QUOTES, NO_BACKSLASH_ESCAPES, SqlEffects, analyze, parse_set_names, replace_connection_id, session_only
from .protocol.transaction import NOOP_MAX_LENGTH, leaves_transaction_open, noop_transaction_command
from .reasons import BackendCloseReason, ClientCloseReason
from .core.pins import Pins, PinReason
from .core.session import SessionState, apply_changes
from .core.capture import CHARSET_VARIABLES, Capture
from .core.statements import ClientStatement, backend_statement_packet
from .client_checkout import CheckoutMixin
from .client_handshake import HandshakeMixin
from .client_state import ClientState, IN_TRANS, AUTOCOMMIT, STICKY_STATUS, MAX_QUEUED_INPUT, ER_LOST_BACKEND, NO_REPLY_CODES, STMT_ID_COMMANDS
from .client_statements import StatementsMixin
from .client_tasks import TasksMixin

if TYPE_CHECKING:
    from .pool import Pool, Waiter
    from .proxy import Proxy, UserEntry

__all__ = ["ClientState", "ClientConnection", "STICKY_STATUS"]

log = logging.getLogger("mysqlpool.client")

_STATEMENT_COMMANDS = (COMMAND.COM_QUERY, COMMAND.COM_STMT_EXECUTE)
NO_BACKSLASH_STATUS = SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES
_PREPARE_RETRIED_ON = frozenset((ER.MAX_PREPARED_STMT_COUNT_REACHED,))
_NO_RETRY: frozenset[int] = frozenset()
_NOOP_FIRST = frozenset((b"c", b"C", b"r", b"R", b"s", b"S"))  # COMMIT, ROLLBACK, SET autocommit

class ClientConnection(HandshakeMixin, CheckoutMixin, StatementsMixin, TasksMixin, asyncio.Protocol):
    __slots__ = (
        "proxy", "id", "transport", "peer", "state", "decoder", "handshake", "user", "pool", "capabilities", "key",
        "session", "pins", "status", "backend", "charset", "scramble", "_cmd", "_effects", "_sql", "_stmt_id",
        "_prev_status", "_task", "_timer", "_infile", "_paused_by", "connected_at", "last_active", "_closing_reason",
        "change_user", "queries", "write_stalled_at", "_cmd_seq", "_response_started", "_pending_error",
        "_query_timer", "stmts", "_stmt", "_next_stmt_id", "last_insert_id", "_last_backend", "program",
        "_waiter", "_waiting", "trx_open", "trackers", "killed", "_sent",
    )

    def __init__(self, proxy: Proxy, conn_id: int):
        self.proxy = proxy
        self.id = conn_id
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.state = ClientState.GREETING
        self.decoder = PacketDecoder(hs.MAX_LOGIN_PACKET, strict=True)  # until authenticated
        self.handshake: hs.ServerHandshake | None = None
        self.change_user: hs.ChangeUserAuth | None = None
        self.user: UserEntry | None = None
        self.pool: Pool | None = None
        self.capabilities = 0
        self.key = 0
        self.session = SessionState()
        self.pins = Pins()
        self.status = AUTOCOMMIT
        self.trx_open = False  # a transaction is open, whether or not the server flags it (see above)
        self.trackers: Trackers | None = None  # its session trackers, as on a direct connection
        self.killed = False  # it KILLed itself in a multi-statement query: closed once the answer is out
        self._sent = b""  # the command in flight as the backend got it (to send again: see _retry_prepare)
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
        self.write_stalled_at: float | None = None  # since when its socket buffer has been full (it stopped reading)
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
        self.program: str | None = None  # from its connect attributes, for SHOW CLIENTS
        self._waiter: Waiter | None = None  # its place in the pool's queue (CHECKOUT without a task)
        self._waiting: tuple[Packet, float] | None = None  # the command that waits, and its deadline

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
        try:  # (the handshake timer starts with the greeting: _greet)
            if self.proxy.server_info is not None:
                self._greet()
            else:
                self._task = self.proxy.loop.create_task(self._greet_when_server_known())
        except Exception:  # a bug must cost this client its connection, at once, never the proxy
            log.exception("client #%d: internal error while greeting; closing it", self.id)
            self.close(ClientCloseReason.PROTOCOL_ERROR)

    def _refuse_at_accept(self, error: ProxyError) -> None:
        self.transport.write(encode_packet(make_err(error.errno, error.sqlstate, error.message), 0))
        self.close(ClientCloseReason.MAX_CLIENTS)

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
        if self._waiter is not None:
            self.pool.cancel_wait(self._waiter)
            self._waiter = None
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

    @property
    def quoting(self) -> int:
        """How the server reads quotes in this client's statements (its sql_mode), for SQL analysis."""
        mode = NO_BACKSLASH_ESCAPES if self.status & NO_BACKSLASH_STATUS else 0
        sql_mode = self.session.variables.get(b"sql_mode")
        if sql_mode and b"ANSI_QUOTES" in sql_mode.upper():
            mode |= ANSI_QUOTES
        return mode

    def holds_state(self) -> bool:
        return self.trx_open or bool(self.pins)

    @property
    def in_transaction(self) -> bool:
        return self.trx_open

    def learn_status(self, status: int) -> None:
        """The server's status after a command of the proxy's own on the client's backend."""
        self.status = status
        if status & IN_TRANS:
            self.trx_open = True
        elif status & AUTOCOMMIT:
            self.trx_open = False

    def reset_transaction(self, status: int) -> None:
        """The session starts afresh (reset, change user) or its transaction was rolled back."""
        self.status = status
        self.trx_open = bool(status & IN_TRANS)

    # -- flow control ----------------------------------------------------------------

    def pause_writing(self) -> None:
        self.write_stalled_at = self.proxy.loop.time()
        if self.backend is not None:
            self.backend.pause_reading()

    def resume_writing(self) -> None:
        self.write_stalled_at = None
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
        if state is ClientState.READY or state is ClientState.HANDSHAKE or (
                self.change_user is not None and self.awaiting_auth_data()):
            self._process_input()
        elif decoder.buffered > MAX_QUEUED_INPUT or state is ClientState.GREETING:
            self._pause_reading(2)  # (before its greeting a client has nothing to say)

    def _process_input(self) -> None:
        """Handle queued packets while the client is free to have them handled."""
        decoder = self.decoder
        while self.state is ClientState.READY or self.state is ClientState.HANDSHAKE or (
                self.change_user is not None and self.awaiting_auth_data()):
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

    # -- commands ------------------------------------------------------------------

    def _command(self, pkt: Packet | Oversized) -> None:
        self.last_active = self.proxy.loop.time()
        if pkt.seq != 0:
            self._out_of_order()  # never relayed: the server would drop the backend after answering it
            return
        if isinstance(pkt, Oversized):
            self.send_error(pkt.last_seq, ProxyError(
                ER.NET_PACKET_TOO_LARGE,
                f"Got a packet bigger than 'max_allowed_packet' bytes ({pkt.size} > {self.decoder.max_size}: "
                "the server's max_allowed_packet, or mysqlpool-proxy's [proxy] max_packet_size)"))
            return
        payload = pkt.payload
        if not payload:
            self.send_error(pkt.last_seq, ProxyError(ER.UNKNOWN_COM_ERROR, "Unknown command: empty packet"))
            return
        if self._pending_error is not None and payload[0] not in NO_REPLY_CODES:
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
            if self.backend is None and len(payload) <= NOOP_MAX_LENGTH and payload[1:2] in _NOOP_FIRST \
                    and not self.holds_state():  # COMMIT / ROLLBACK / SET autocommit with nothing open?
                noop = noop_transaction_command(payload[1:])
                if noop is not None and self.proxy.local.noop_transaction(self, pkt, noop):
                    return
            if self.backend is None and len(payload) > 9 and payload[1] in (0x53, 0x73):  # "S"/"s": SET NAMES?
                names = parse_set_names(payload[1:])
                if names is not None and self.proxy.local.set_names(self, pkt, *names):
                    return
            effects = analyze(payload[1:], self.quoting)
            if effects.kill is not None:
                pkt = self.proxy.local.kill_statements(self, pkt)
                if pkt is None:
                    return  # a lone KILL, answered by the proxy
                payload = pkt.payload
            if effects.reads_connection_id:
                # The id a client sees is the proxy's (KILL takes it too), not a backend's.
                payload = b"\x03" + replace_connection_id(payload[1:], self.id, self.quoting)
                pkt = Packet(pkt.seq, (pkt.seq + len(payload) // MAX_FRAME) & 0xFF, payload,
                             encode_packet(payload, pkt.seq))
        self._stmt = None
        if code in STMT_ID_COMMANDS:
            if not self._statement_command(code, pkt):
                return
            if code == COMMAND.COM_STMT_EXECUTE:
                effects = self._stmt.effects  # executing it does what its SQL does
        elif code == COMMAND.COM_STMT_PREPARE:
            self._stmt_id = self._next_stmt_id
            self._next_stmt_id += 1
            quoting = self.quoting
            if analyze(payload[1:], quoting).reads_connection_id:
                payload = b"\x16" + replace_connection_id(payload[1:], self.id, quoting)
                pkt = Packet(pkt.seq, (pkt.seq + len(payload) // MAX_FRAME) & 0xFF, payload,
                             encode_packet(payload, pkt.seq))
        self._cmd = spec
        self._effects = effects
        if effects is not None or code == COMMAND.COM_STMT_PREPARE:
            self._sql = self._stmt.sql if self._stmt is not None else payload[1:]
        else:
            self._sql = b""
        backend = self.backend
        if backend is None:
            if effects is not None and effects.reads_diagnostics:
                backend = self.pool.take_exact(self._last_backend, (self.id, self.queries))
            if backend is None:
                backend = self.pool.try_acquire(self.key, self.session)
            if backend is None:
                self._wait_for_backend(pkt)
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
        if self.write_stalled_at is not None:
            backend.pause_reading()  # the client cannot take more yet: leave the result on the server
        binary = spec.code == COMMAND.COM_STMT_EXECUTE or spec.code == COMMAND.COM_STMT_FETCH
        backend.send_command(self, raw, spec.expect, binary=binary, strip=not self.capabilities & CLIENT.SESSION_TRACK,
                             trackers=self.trackers, prepare_id=prepare_id,
                             retry_on=_PREPARE_RETRIED_ON if prepare_id is not None else _NO_RETRY)
        self._sent = raw
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

    # -- responses -------------------------------------------------------------------

    def relay_to_client(self, data: bytes) -> None:
        self._response_started = True
        self.proxy.stats.bytes_out += len(data)
        self.transport.write(data)

    def on_infile_request(self, backend: BackendConnection) -> None:
        self.set_state(ClientState.INFILE)
        self._infile = FrameScanner(next_seq(backend.tracker.infile_seq))
        leftover = self.decoder.take_buffer()
        if leftover:
            self._infile_data(leftover)

    def _infile_data(self, data: bytes) -> None:
        backend = self.backend
        try:
            end = self._infile.feed(data)
        except ProtocolError:
            self._out_of_order()  # as the server does; the backend, mid-transfer, is closed with the client
            return
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

    def _retry_prepare(self, backend: BackendConnection) -> bool:
        """The server refused a COM_STMT_PREPARE with 1461 (max_prepared_stmt_count, over all its
        connections): close this backend's idle cached statements and send the prepare again, once."""
        dropped = backend.statements.evict_idle() if backend.statements is not None else []
        if not dropped:
            return False
        log.info("client #%d: the server is at max_prepared_stmt_count; closing %d idle statements cached on "
                 "backend thread %d and preparing again", self.id, len(dropped), backend.thread_id)
        backend.close_server_statements(dropped)
        backend.send_command(self, self._sent, Expect.PREPARE, binary=False,
                             strip=not self.capabilities & CLIENT.SESSION_TRACK, trackers=self.trackers,
                             prepare_id=self._stmt_id)
        return True

    def on_response_done(self, backend: BackendConnection, held: bytes = b"") -> None:
        """The response to the client's command is complete (relayed, or `held` back: see send_command)."""
        if held:
            if self._retry_prepare(backend):
                return
            self.relay_to_client(held)
        if self._query_timer is not None:
            self._cancel_query_timer()
        tracker = backend.tracker
        spec = self._cmd
        ok = tracker.error is None
        was_open = self.trx_open
        if ok:
            self.status = tracker.status
        self._track_transaction(ok, bool(tracker.ok_count or tracker.result_sets))
        self._record_state(backend, tracker, ok)
        stats = self.pool.stats
        stats.queries[spec.name] += 1
        if was_open:
            if not self.trx_open:
                stats.transactions += 1
        elif self.trx_open:
            stats.pins[PinReason.TRANSACTION.value] += 1  # a transaction pins until it ends
        if not ok and tracker.error.errno in CONNECTION_ENDING_ERRORS or self.state is not ClientState.ACTIVE:
            self._response_ends_backend(backend)
            return
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
        follow_up = self._follow_up_for(tracker, ok, fx)
        if follow_up is not None and not backend.closed:
            self.set_state(ClientState.LOCAL)
            self._task = self.proxy.loop.create_task(self._follow_up(backend, *follow_up))
            return
        self._decide_hold(backend)
        self._process_input()

    def _response_ends_backend(self, backend: BackendConnection) -> None:
        """The server answered with an error after which it hangs up, or answered a LOCAL INFILE before
        the file's end (it gave up on the transfer): the backend is closed, never pooled. A client whose
        transaction or pinned state was there goes with it, as on a direct connection."""
        self._infile = None
        if self.backend is backend:
            self.backend = None
        backend.client = None
        backend.close(BackendCloseReason.ENDED_BY_SERVER)
        if self.state is ClientState.CLOSED:
            return
        if self.killed:
            self.close(ClientCloseReason.KILLED)
            return
        if self.state is ClientState.INFILE or self.holds_state():
            self.close(ClientCloseReason.BACKEND_LOST)
            return
        self.set_state(ClientState.READY)
        self._process_input()

    def _track_transaction(self, ok: bool, some_ran: bool) -> None:
        """Is a transaction open after this command? (The flag, and with autocommit off the statements.)"""
        status = self.status
        if status & (IN_TRANS | AUTOCOMMIT):
            # With autocommit on, nothing outlives a statement but a flagged transaction.
            self.learn_status(status)
        elif self._cmd.code not in _STATEMENT_COMMANDS:
            return  # preparing, COM_INIT_DB...: they open nothing and end nothing
        elif ok:
            self.trx_open = leaves_transaction_open(self._sql, bool(self._prev_status & AUTOCOMMIT), self.quoting)
        elif some_ran:
            self.trx_open = True  # statements before the failing one ran with autocommit off

    def _record_state(self, backend: BackendConnection, tracker, ok: bool) -> None:
        changes = tracker.changes
        effects = self._effects
        if changes is not None or (effects is not None and effects.sysvars_set_null and ok):
            apply_changes(self.session, changes, effects if ok else None)
            apply_changes(backend.session, changes, effects if ok else None)
        pins = self.pins
        code = self._cmd.code
        pin_related = changes is not None or (effects is not None and effects.any) or code in STMT_ID_COMMANDS
        before = pins.reasons() if pin_related else None
        explained = pins.apply_sql(effects, ok) if effects is not None and effects.any else False
        if changes is not None:
            if tracker.trackers is not None:
                self.trackers = tracker.trackers  # as the statement left them (session_track_* changed)
            if changes.state_change and not explained:
                explained = self.state_change_explained(changes)
                if not explained and not pins.unknown_state:
                    log.info("client #%d pinned to its backend: the server reported a state change after %s "
                             "that the proxy cannot carry over (%r)", self.id, self._cmd.name, changes)
            pins.apply_tracker(changes, explained)
            if self.trx_open:
                pins.trx_characteristics = False  # they describe the open transaction, not the next one
        if code == COMMAND.COM_STMT_PREPARE:
            if tracker.prepare_ok is not None:
                self._register_statement(backend, tracker.prepare_ok)
        elif self._stmt is not None:
            self._statement_done(backend, code, tracker, ok)
        if before is not None:
            self.proxy.count_new_pins(self, before, pins.reasons())

    def state_change_explained(self, changes) -> bool:
        """Does the command account for a 'state changed' report (so nothing unknown is left)?"""
        code = self._cmd.code
        if code == COMMAND.COM_INIT_DB:
            return True
        if code == COMMAND.COM_STMT_EXECUTE and changes.schema is not None:
            # The server executes a statement in the schema it was prepared in, switching there
            # and back: that (and only that) is what a schema report means here.
            return True
        return bool(self._sql) and session_only(self._sql, self.quoting)

    def _follow_up_for(self, tracker, ok: bool, fx: SqlEffects | None):
        """What must run on the backend, hidden, before it may go (None: nothing)."""
        capture = Capture(collations=self.proxy.server_info.collations)
        if fx is not None:
            capture.user_vars = list(fx.user_vars_written)
            capture.insert_id = fx.sets_insert_id
            capture.add_sysvars(fx.sysvars_untracked)
            capture.trackers = fx.session_tracking_changed and ok
        changes = tracker.changes
        if changes is not None and any(name in CHARSET_VARIABLES for name, _ in changes.variables):
            capture.add_sysvars(CHARSET_VARIABLES)  # one of them was reported; the others may have moved
        flush = tracker.eof_state_pending
        probe = not ok and self._status_uncertain(tracker)
        if capture or flush or probe:
            return flush, capture, probe
        return None

    def _status_uncertain(self, tracker) -> bool:
        """After an ERR the server's status is unknown unless nothing could have changed it."""
        if tracker.ok_count or tracker.result_sets:
            return True  # earlier statements of a multi-statement query ran
        prev = self._prev_status
        return self.trx_open or bool(prev & IN_TRANS) or not prev & AUTOCOMMIT

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
                    ER_LOST_BACKEND, "Lost connection to backend during query; the transaction is rolled back unless this "
                    "statement committed it"))
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

    # -- replies from the proxy itself --------------------------------------------------

    def _out_of_order(self) -> None:
        """A packet with a wrong sequence id: the server's error, then the connection is closed, as MariaDB does."""
        self.transport.write(encode_packet(make_err(
            ER.NET_PACKETS_OUT_OF_ORDER, "08S01", "Got packets out of order", self.capabilities), 0))
        self.close(ClientCloseReason.PROTOCOL_ERROR)

    def send_error(self, last_seq: int, err: ProxyError) -> None:
        self.transport.write(encode_packet(make_err(err.errno, err.sqlstate, err.message, self.capabilities),
                                           next_seq(last_seq)))

    def send_ok(self, last_seq: int, info: bytes = b"", variables: list[tuple[bytes, bytes]] | None = None) -> None:
        """OK from the proxy itself; `variables`: the system variables the statement set, reported as the
        client's own trackers would."""
        state = self.trackers.report(variables) if variables is not None and self.trackers is not None else None
        self.transport.write(encode_packet(make_ok(self.capabilities, self.status & STICKY_STATUS, info=info,
                                                   session_state=state), next_seq(last_seq)))

    def send_eof(self, last_seq: int) -> None:
        self.transport.write(encode_packet(make_eof(self.status & STICKY_STATUS), next_seq(last_seq)))

    def pinned_reasons(self) -> list[PinReason]:
        reasons = self.pins.reasons()
        if self.trx_open:
            reasons.insert(0, PinReason.TRANSACTION)
        return reasons



"""One client connection: the asyncio Protocol of a client socket, and the parts it is made of.

`ClientConnection` owns the socket (transport, packet decoder), its state
(core/states.py), its one background task at a time and its identity once
logged in (user, pool, capabilities). It reads commands, hands them on and
writes what goes back. The rest is in parts it holds, each the one owner of
its state:

* `phase`       the login and COM_CHANGE_USER (client/phase.py);
* `session`     what follows the client from backend to backend, and the
                decision after each response (core/client_session.py: pure);
* `lease`       its hold on a backend, and its place in the pool's queue
                (client/lease.py: the only code that links or unlinks them);
* `command`     the command in flight (core/client_session.py Command), built
                by `prepare_command()` (client/prepare.py);
* `flow`        why reading is paused, since when writing is (client/flow.py);
* `accounting`  a response's outcome for the backend and the pool's counts,
                and when the open transaction started (client/accounting.py);
* `query_timer` [pool] query_timeout (client/query_timer.py);
* `infile`      a LOAD DATA LOCAL INFILE transfer (client/infile.py).

In transaction pooling a client holds a backend only while a transaction is
open or while it has pinned state; otherwise the backend goes back to its
pool as soon as a response ends. In session pooling it holds one from its
first command to its last.

The fast path (an idle backend already in the client's state) sends the
command synchronously from `data_received`; nothing awaits and no task is
created. Only a wait for a backend that must first be prepared (a ping, a
state sync: client/checkout.py), the hidden statements after a response
(client/followups.py) and the commands the proxy answers itself
(client/local.py) run as tasks.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from typing import Any, Final

from ..backend.connection import BackendConnection
from ..backend.pool import Pool
from ..constants import CLIENT, COM_STMT_BULK_EXECUTE, COMMAND, ER
from ..core.client_session import NO_REPLY_CODES, STICKY_STATUS, ClientSession, Command
from ..core.pins import PinReason
from ..core.session import SessionState
from ..core.states import BackendState, ClientState, IllegalTransition
from ..errors import ProtocolError, ProxyError
from ..logs import log_event
from ..protocol import handshake as hs
from ..protocol.command import CommandSpec, Handling, spec_for
from ..protocol.framing import (
    MAX_FRAME,
    Oversized,
    Packet,
    PacketDecoder,
    encode_packet,
    next_seq,
)
from ..protocol.packets import make_eof_for, make_err, make_ok
from ..protocol.response import Expect
from ..protocol.session_track import Trackers
from ..protocol.sql import NO_EFFECTS
from ..reasons import BackendCloseReason, ClientCloseReason
from . import checkout, followups, local, statements
from .accounting import Accounting
from .constants import ER_LOST_BACKEND, MAX_QUEUED_INPUT
from .context import ClientContext, UserLike
from .flow import FlowControl, Paused
from .host import Client
from .infile import InfileRelay
from .lease import BackendLease
from .phase import ConnectionPhase
from .prepare import prepare_command
from .query_timer import QueryTimer

__all__ = ["ClientConnection"]

log = logging.getLogger("mysqlpool.client")

# The members the command path compares with, as module globals: on Python 3.11 reading
# `ClientState.READY` runs EnumType's __getattr__ hook, ~20 times a global's cost.
_GREETING: Final = ClientState.GREETING
_HANDSHAKE: Final = ClientState.HANDSHAKE
_LOCAL: Final = ClientState.LOCAL
_READY: Final = ClientState.READY
_ACTIVE: Final = ClientState.ACTIVE
_INFILE: Final = ClientState.INFILE
_CLOSED: Final = ClientState.CLOSED
_RESERVED: Final = BackendState.RESERVED
_SESSION_TRACK: Final = CLIENT.SESSION_TRACK
_DEPRECATE_EOF: Final = CLIENT.DEPRECATE_EOF
_RELAY: Final = Handling.RELAY
_NO_REPLY: Final = Handling.NO_REPLY
_ANSWERED_HERE: Final = Handling.LOCAL
# PyMySQL's COMMAND is a module: `COMMAND.COM_QUERY` would be two lookups by name at every statement.
_COM_STMT_PREPARE: Final = COMMAND.COM_STMT_PREPARE
_COM_STMT_EXECUTE: Final = COMMAND.COM_STMT_EXECUTE
_COM_STMT_FETCH: Final = COMMAND.COM_STMT_FETCH
_COM_STMT_BULK_EXECUTE: Final = COM_STMT_BULK_EXECUTE

_PREPARE_RETRIED_ON: Final = frozenset((ER.MAX_PREPARED_STMT_COUNT_REACHED,))
_NO_RETRY: Final[frozenset[int]] = frozenset()


@functools.lru_cache(maxsize=256)
def _proxy_ok(track: int, status: int, info: bytes, trackers: Trackers | None,
              variables: tuple[tuple[bytes, bytes], ...] | None) -> bytes:
    """The payload of an OK the proxy sends itself (see send_ok): the same for every client with the
    same trackers and status (the SET NAMES of every login, the no-op COMMITs of every pool)."""
    state = trackers.report(list(variables)) if variables is not None and trackers is not None else None
    return make_ok(track, status, info=info, session_state=state)


class ClientConnection(Client):
    __slots__ = (
        "proxy", "id", "transport", "peer", "state", "decoder", "flow", "phase", "session", "lease", "command",
        "accounting", "query_timer", "infile", "user", "pool", "capabilities", "key", "charset", "program",
        "connected_at", "last_active", "_closing_reason", "_task", "_unix_socket",
    )

    def __init__(self, proxy: ClientContext, conn_id: int):
        self.proxy = proxy
        self.id = conn_id
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._unix_socket = False  # no TCP peer address (connection_made)
        self.state = _GREETING
        self.decoder = PacketDecoder(hs.MAX_LOGIN_PACKET, strict=True)  # until authenticated
        self.flow = FlowControl()
        self.phase = ConnectionPhase(self)
        self.session = ClientSession(SessionState(), 0, None)  # its own once logged in
        self.lease = BackendLease(self)
        self.command: Command | None = None
        self.accounting = Accounting(self)
        self.query_timer = QueryTimer(self)
        self.infile = InfileRelay(self)
        # Its identity, once logged in (logged_in()).
        self.user: UserLike | None = None
        self.pool: Pool | None = None
        self.capabilities = 0
        self.key = 0  # the pool key: capability bits its backends must share (pool.py)
        self.charset = 0
        self.program: str | None = None  # from its connect attributes, for SHOW CLIENTS
        self.connected_at = proxy.loop.time()
        self.last_active = self.connected_at  # when its last command came (its start, while it runs)
        self._closing_reason: ClientCloseReason | None = None
        self._task: asyncio.Task[Any] | None = None  # the one background task it runs at a time

    def __repr__(self) -> str:
        user = self.user.name if self.user else "?"
        return f"<Client #{self.id} {user}@{self.peer} {self.state.value}>"

    def set_state(self, new: ClientState) -> None:
        """The one place the state changes (core/states.py has the table)."""
        if new not in self.state.allowed:
            raise IllegalTransition(self, self.state, new)
        self.state = new

    def run_task(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run `coro` as the client's one background task (forgotten when it ends)."""
        task = self.proxy.loop.create_task(coro)
        self._task = task
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if self._task is task:
            self._task = None

    @property
    def busy_with_task(self) -> bool:
        return self._task is not None

    # -- what others read -------------------------------------------------------------

    @property
    def backend(self) -> BackendConnection | None:
        """The backend it holds (the lease's)."""
        return self.lease.backend

    @property
    def in_transaction(self) -> bool:
        return self.session.trx_open

    def holds_state(self) -> bool:
        return self.session.holds_state()

    def pinned_reasons(self) -> list[PinReason]:
        return self.session.pinned_reasons()

    @property
    def write_stalled_at(self) -> float | None:
        return self.flow.stalled_since

    @property
    def trx_started_at(self) -> float | None:
        """When the statement that opened its transaction went out (its accounting's)."""
        return self.accounting.trx_started_at

    # -- connection lifecycle -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.use_transport(transport)  # type: ignore[arg-type]  # (uvloop's are asyncio.Transport-like)
        peer = transport.get_extra_info("peername")  # (uvloop builds a new address tuple at every call)
        self._unix_socket = not isinstance(peer, tuple)
        self.peer = "localhost" if self._unix_socket else peer[0]
        refusal = self.proxy.admit(self)
        if refusal is not None:
            self.write(encode_packet(make_err(refusal.errno, refusal.sqlstate, refusal.message), 0))
            self.close(ClientCloseReason.MAX_CLIENTS)
            return
        try:
            self.phase.start()  # (the handshake timer starts with the greeting)
        except Exception:  # a bug must cost this client its connection, at once, never the proxy
            log_event(log, "error", f"client #{self.id}: internal error while greeting; closing it", exc_info=True,
                      client_id=self.id, reason=ClientCloseReason.PROTOCOL_ERROR.value)
            self.close(ClientCloseReason.PROTOCOL_ERROR)

    def use_transport(self, transport: asyncio.Transport) -> None:
        """Its transport (a new one after the TLS upgrade)."""
        self.transport = transport
        self.flow.attach(transport)
        transport.set_write_buffer_limits(high=self.proxy.config.pool.result_buffer_bytes)

    def expected_packet_seq(self) -> int:
        """The sequence id the client's next packet must have: 0 for a command, the next one for
        LOCAL INFILE data or COM_CHANGE_USER's auth data (what compression renumbers by)."""
        state = self.state
        if state is ClientState.INFILE:
            seq = self.infile.expected_seq
            if seq is not None:
                return seq
        if state is ClientState.LOCAL:
            return self.phase.expected_seq()
        return 0

    def take_unread_input(self) -> bytes:
        """Bytes read but not parsed yet (the framing below changes: TLS, compression)."""
        return self.decoder.take_buffer()

    def on_unix_socket(self) -> bool:
        """Secure as it is, as for the server's require_secure_transport (no TCP peer address)."""
        return self._unix_socket

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(self._closing_reason or ClientCloseReason.DISCONNECTED)

    def eof_received(self) -> bool:
        return False

    def close(self, reason: ClientCloseReason) -> None:
        if self.state is _CLOSED:
            return
        self._closing_reason = reason
        self.set_state(_CLOSED)
        self.phase.stop()
        self.query_timer.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self.lease.leave(self.session.holds_state(), self.proxy.config.backend.connect_timeout, self.proxy.spawn)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.proxy.client_closed(self, reason)

    # -- login ---------------------------------------------------------------------

    def logged_in(self, event: hs.Verified, capabilities: int) -> None:
        """Credentials verified (the login, or COM_CHANGE_USER): its identity, and a fresh session."""
        proxy = self.proxy
        info = proxy.server_info
        assert info is not None
        entry = proxy.user_entry(event.user)
        self.user = entry
        self.pool = entry.pool
        self.capabilities = capabilities
        self.key = proxy.pool_key(capabilities)
        self.charset = event.charset & 0xFF if event.charset else (self.charset or info.charset_id)
        self.program = event.program or self.program
        self.session.restart(proxy.initial_session(self.charset, capabilities, event.database),
                             info.initial_status, info.trackers)

    def refuse_before_greeting(self, error: ProxyError) -> None:
        self.phase.refuse_before_greeting(error)

    def evict_from_login(self) -> None:
        self.phase.evict_from_login()

    def start_change_user(self, pkt: Packet) -> None:
        self.phase.start_change_user(pkt)

    def backend_handed(self, backend: BackendConnection | None, exc: Exception | None) -> None:
        """The pool's answer to the client's wait, called inside whatever released the backend: the
        client goes on from a loop callback (client/checkout.py)."""
        self.proxy.loop.call_soon(checkout.handed, self, backend, exc)

    async def acquire_backend(self, deadline: float) -> BackendConnection:
        """A backend of its pool, waiting up to `deadline` (the schema check of a login)."""
        return await checkout.acquire(self, deadline)

    def bound_input_for_login(self) -> None:
        """Until authenticated: one login packet at most, a larger one ends the connection."""
        self.decoder.limit(hs.MAX_LOGIN_PACKET, strict=True)

    def bound_input_for_commands(self) -> None:
        self.decoder.limit(self.proxy.max_packet_size)

    # -- flow control ----------------------------------------------------------------

    def pause_writing(self) -> None:
        self.flow.write_stalled(self.proxy.loop.time())
        backend = self.lease.backend
        if backend is not None:
            backend.pause_reading()

    def resume_writing(self) -> None:
        self.flow.write_resumed()
        backend = self.lease.backend
        if backend is not None:
            backend.resume_reading()

    def pause_reading_for_backend(self) -> None:
        self.flow.pause(Paused.BACKEND_FULL)

    def resume_reading_for_backend(self) -> None:
        self.flow.resume(Paused.BACKEND_FULL)

    # -- input ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.proxy.stats.bytes_in += len(data)
        pool = self.pool
        if pool is not None:  # logged in (the login's bytes count for the proxy only)
            pool.stats.bytes_in += len(data)
        state = self.state
        if state is _INFILE:
            self.infile.relay(data)
            return
        decoder = self.decoder
        if state is _READY and decoder.at_boundary:
            # Fast path: exactly one whole packet, as a command usually arrives.
            n = len(data)
            if n > 4 and (data[0] | data[1] << 8 | data[2] << 16) == n - 4 < min(MAX_FRAME, decoder.max_size):
                self.handle_packet(Packet(data[3], data[3], data[4:], data))
                if self.state is _READY and decoder.buffered:
                    self.process_input()
                return
        decoder.feed(data)
        if self._may_handle_input():
            self.process_input()
        elif state is ClientState.GREETING:
            self.flow.pause(Paused.NOT_GREETED)  # it has nothing to say before its greeting
        elif decoder.buffered > MAX_QUEUED_INPUT:
            self.flow.pause(Paused.INPUT_QUEUED)

    def _may_handle_input(self) -> bool:
        state = self.state
        return state is _READY or state is _HANDSHAKE or self.phase.awaiting_auth_data()

    def process_input(self) -> None:
        """Handle queued packets while the client is free to have them handled."""
        decoder = self.decoder
        while decoder.buffered and self._may_handle_input():
            try:
                pkt = decoder.next_packet()
            except ProtocolError:
                self.close(ClientCloseReason.PROTOCOL_ERROR)
                return
            if pkt is None:
                break
            self.handle_packet(pkt)
        if self.flow.paused & Paused.INPUT_QUEUED and decoder.buffered <= MAX_QUEUED_INPUT:
            self.flow.resume(Paused.INPUT_QUEUED)

    def handle_packet(self, pkt: Packet | Oversized) -> None:
        try:
            if self.state is _HANDSHAKE:
                self.phase.packet(pkt)
            elif self.state is _LOCAL:
                self.phase.change_user_packet(pkt)
            else:
                self._command(pkt)
        except Exception:  # a bug must cost this client its connection, never the proxy
            log_event(log, "error", f"client #{self.id}: internal error handling a packet; closing it", exc_info=True,
                      client_id=self.id, reason=ClientCloseReason.PROTOCOL_ERROR.value)
            if self.transport is not None and not self.transport.is_closing():
                self.send_error(pkt.last_seq if isinstance(pkt, Packet) else 0, ProxyError(
                    ER.UNKNOWN_ERROR, "mysqlpool-proxy internal error; the connection is closed"))
            self.close(ClientCloseReason.PROTOCOL_ERROR)

    # -- commands ------------------------------------------------------------------

    def _command(self, pkt: Packet | Oversized) -> None:
        now = self.last_active = self.proxy.loop.time()
        if pkt.seq != 0:
            self.out_of_order()  # never relayed: the server would drop the backend after answering it
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
        session = self.session
        if session.pending_error is not None and payload[0] not in NO_REPLY_CODES:
            err, session.pending_error = session.pending_error, None
            self.send_error(pkt.last_seq, err)
            return
        spec = spec_for(payload[0])
        handling = spec.handling
        if handling is _RELAY or handling is _NO_REPLY:
            self._relay_command(spec, pkt, now)
        elif handling is _ANSWERED_HERE:
            local.handle(self, spec, pkt)
        else:
            self.send_error(pkt.last_seq, ProxyError(
                ER.UNKNOWN_COM_ERROR,
                f"mysqlpool-proxy does not relay {spec.name.upper()} (command 0x{spec.code:02x}): "
                "replication and server administration commands must go to the server directly"))

    def _relay_command(self, spec: CommandSpec, pkt: Packet, now: float) -> None:
        """A command for the server (it came at `now`): answered here when it needs none, else sent to
        a backend."""
        prepared = prepare_command(self, spec, pkt)
        if prepared is None:
            return  # answered by the proxy
        command, pkt = prepared
        self.command = command
        backend = self.lease.backend
        session = self.session
        effects = command.effects
        if backend is None:
            pool = self.pool
            assert pool is not None
            if effects is not None and effects.reads_diagnostics:
                backend = pool.take_exact(self.lease.last_backend, (self.id, session.queries))
            if backend is None:
                backend = pool.try_acquire(self.key, session.state)
            if backend is None:
                checkout.wait_for_backend(self, pkt)
                return
            self.lease.take(backend)
            if checkout.needs_preparation(self, backend, now):
                checkout.start(self, pkt)
                return
        elif (backend.state is not _RESERVED or backend.closed
              or backend.session.multi_statements is not session.state.multi_statements
              or (command.stmt is not None and not backend.has_statement(command.stmt.key))
              or (effects is not None and effects is not NO_EFFECTS
                  and checkout.identity_differs(self, backend, effects))):
            checkout.start(self, pkt)
            return
        self.send(backend, pkt, now)

    def send(self, backend: BackendConnection, pkt: Packet, now: float | None = None) -> None:
        """Send the command in flight to `backend`, which is in the client's state (`now`: the loop's
        time, when the caller has it)."""
        command = self.command
        assert command is not None
        spec = command.spec
        session = self.session
        session.queries += 1
        raw = pkt.raw
        prepare_id = None
        stmt_ids = None
        stmt = command.stmt
        if stmt is not None:
            server = backend.statements.get(stmt.key) if backend.statements is not None else None
            assert server is not None
            raw = statements.backend_packet(stmt, server, pkt)
            if server.server_id != stmt.id:
                stmt_ids = (server.server_id, stmt.id)  # for the errors that name it
        elif spec.code == _COM_STMT_PREPARE:
            prepare_id = command.stmt_id
        if spec.handling is _NO_REPLY:
            backend.write(raw)
            statements.no_reply_done(self, backend)
            self.lease.hold_or_release(backend, self.keeps_backend(backend))
            return
        command.prev_status = session.status
        command.response_started = False
        command.sent = raw
        command.started = self.proxy.loop.time() if now is None else now
        self.set_state(_ACTIVE)
        if self.flow.stalled_since is not None:
            backend.pause_reading()  # the client cannot take more yet: leave the result on the server
        code = spec.code
        binary = code in (_COM_STMT_EXECUTE, _COM_STMT_FETCH, _COM_STMT_BULK_EXECUTE)
        assert spec.expect is not None
        capabilities = self.capabilities
        backend.send_command(raw, spec.expect, binary=binary, strip=not capabilities & _SESSION_TRACK,
                             trackers=session.trackers, prepare_id=prepare_id,
                             retry_on=_PREPARE_RETRIED_ON if prepare_id is not None else _NO_RETRY,
                             deprecate_eof=bool(capabilities & _DEPRECATE_EOF), stmt_ids=stmt_ids)
        query_timeout = self.proxy.query_timeout
        if query_timeout > 0:
            self.query_timer.start(backend, query_timeout)

    def keeps_backend(self, backend: BackendConnection) -> bool:
        """Does the client keep `backend` after a command? (Its state is there, or session pooling.)"""
        if self.session.holds_state():
            return True
        return self.proxy.session_mode and not backend.pool.expired(backend, self.proxy.loop.time())

    # -- responses -------------------------------------------------------------------

    def relay_to_client(self, data: bytes | bytearray) -> None:
        command = self.command
        if command is not None:
            command.response_started = True
        self.proxy.stats.bytes_out += len(data)
        pool = self.pool
        if pool is not None:
            pool.stats.bytes_out += len(data)
        assert self.transport is not None
        self.transport.write(data)

    def on_infile_request(self, backend: BackendConnection) -> None:
        self.infile.begin(backend)

    def _retry_prepare(self, backend: BackendConnection) -> bool:
        """The server refused a COM_STMT_PREPARE with 1461 (max_prepared_stmt_count, over all its
        connections): close this backend's idle cached statements and send the prepare again, once."""
        dropped = backend.statements.evict_idle() if backend.statements is not None else []
        command = self.command
        if not dropped or command is None:
            return False
        log.info("client #%d: the server is at max_prepared_stmt_count; closing %d idle statements cached on "
                 "backend thread %d and preparing again", self.id, len(dropped), backend.thread_id)
        backend.close_server_statements(dropped)
        backend.send_command(command.sent, Expect.PREPARE, binary=False,
                             strip=not self.capabilities & CLIENT.SESSION_TRACK, trackers=self.session.trackers,
                             prepare_id=command.stmt_id, deprecate_eof=bool(self.capabilities & CLIENT.DEPRECATE_EOF))
        return True

    def on_response_done(self, backend: BackendConnection, held: bytes | bytearray = b"") -> None:
        """The response to the client's command is complete (relayed, or `held` back: see send_command)."""
        if held:
            if self._retry_prepare(backend):
                return
            self.relay_to_client(held)
        if self.query_timer.handle is not None:
            self.query_timer.cancel()
        command = self.command
        proxy = self.proxy
        server_info = proxy.server_info
        assert command is not None and self.pool is not None and server_info is not None
        outcome = self.session.finish(command, backend.tracker, server_info.collations)
        now = proxy.loop.time()
        self.accounting.apply(backend, command, outcome, now)
        if outcome.ends_backend or self.state is not _ACTIVE:
            self._response_ends_backend(backend)
            return
        self.lease.ran_on(backend)
        follow_up = outcome.follow_up
        if follow_up is None and backend.report_held and not self.session.may_leave_report_held(command):
            follow_up = followups.fetch_report_only(self)
        if follow_up is not None and not backend.closed:
            self.set_state(_LOCAL)
            self.run_task(followups.run(self, backend, command, follow_up))
            return
        self.set_state(_READY)
        session = self.session
        keep = session.trx_open or bool(session.pins) or (  # (keeps_backend, inline: the hot path)
            proxy.session_mode and not backend.pool.expired(backend, now))
        self.lease.hold_or_release(backend, keep)
        self.process_input()

    def _response_ends_backend(self, backend: BackendConnection) -> None:
        """The server answered with an error after which it hangs up, or answered a LOCAL INFILE before
        the file's end (it gave up on the transfer): the backend is closed, never pooled. A client whose
        transaction or pinned state was there goes with it, as on a direct connection."""
        self.infile.forget()
        if self.lease.backend is backend:
            self.lease.drop()
        backend.close(BackendCloseReason.ENDED_BY_SERVER)
        if self.state is ClientState.CLOSED:
            return
        if self.session.ending is not None:
            self.close(self.session.ending)
            return
        if self.state is ClientState.INFILE or self.session.holds_state():
            self.close(ClientCloseReason.BACKEND_LOST)
            return
        self.set_state(ClientState.READY)
        self.process_input()

    def back_to_ready(self, backend: BackendConnection | None = None) -> None:
        """What the client waited for in its LOCAL state is over: keep or give back `backend`, go on."""
        if self.state is not _LOCAL:
            return  # closed meanwhile
        self.set_state(_READY)
        if backend is not None:
            self.lease.hold_or_release(backend, self.keeps_backend(backend))
        self.process_input()

    def yield_soft_backend(self) -> bool:
        """Give back a backend held only for the last statement's diagnostics (others are waiting)."""
        session = self.session
        if (self.lease.backend is None or self.state is not ClientState.READY or session.trx_open
                or not session.pins.only_soft() or self.proxy.session_mode):
            return False
        session.pins.diagnostics = False
        self.lease.release()
        return True

    def on_backend_lost(self, backend: BackendConnection, was_busy: bool) -> None:
        """The backend this client held died. If its transaction or pinned state died with it,
        the client must not go on as if not: it is told, then closed. Otherwise a statement
        that was running gets an error and the client goes on; one not yet sent is retried."""
        self.query_timer.cancel()
        self.lease.lost(backend)
        state = self.state
        if state is ClientState.CLOSED:
            return
        active = state is ClientState.ACTIVE or state is ClientState.INFILE
        command = self.command
        seq = command.seq if command is not None else 0
        started = command is not None and command.response_started
        if self.session.holds_state():
            if active and not started:
                self.send_error(seq, ProxyError(
                    ER_LOST_BACKEND, "Lost connection to backend during query; the transaction is rolled back "
                    "unless this statement committed it"))
            elif state is ClientState.READY:
                self.send_error(0, ProxyError(
                    ER_LOST_BACKEND, "Lost connection to backend; the open transaction or session state was lost"))
            self.close(ClientCloseReason.BACKEND_LOST)
            return
        if active:
            if started:
                self.close(ClientCloseReason.BACKEND_LOST)  # half a response is out: the stream is broken
                return
            self.set_state(ClientState.READY)
            self.send_error(seq, ProxyError(ER_LOST_BACKEND, "Lost connection to backend during query"))
            self.process_input()
        # CHECKOUT and LOCAL: their task sees BackendGone and carries on with another backend.

    # -- replies from the proxy itself --------------------------------------------------

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def out_of_order(self) -> None:
        """A packet with a wrong sequence id: the server's error, then the connection is closed, as MariaDB does."""
        self.write(encode_packet(make_err(
            ER.NET_PACKETS_OUT_OF_ORDER, "08S01", "Got packets out of order", self.capabilities), 0))
        self.close(ClientCloseReason.PROTOCOL_ERROR)

    def send_error(self, last_seq: int, err: ProxyError) -> None:
        self.write(encode_packet(make_err(err.errno, err.sqlstate, err.message, self.capabilities),
                                 next_seq(last_seq)))

    def send_ok(self, last_seq: int, info: bytes = b"", variables: list[tuple[bytes, bytes]] | None = None) -> None:
        """OK from the proxy itself; `variables`: the system variables the statement set, reported as the
        client's own trackers would."""
        session = self.session
        status = session.status & STICKY_STATUS
        if not self.capabilities & _SESSION_TRACK:  # (no state reported: the cache's key is the status alone)
            payload = _proxy_ok(0, status, info, None, None)
        else:
            payload = _proxy_ok(_SESSION_TRACK, status, info, session.trackers,
                                None if variables is None else tuple(variables))
        self.write(encode_packet(payload, next_seq(last_seq)))

    def send_eof(self, last_seq: int) -> None:
        """EOF from the proxy itself (COM_SET_OPTION's answer), in the client's framing."""
        self.write(encode_packet(make_eof_for(self.capabilities, self.session.status & STICKY_STATUS),
                                 next_seq(last_seq)))


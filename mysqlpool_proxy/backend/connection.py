"""One backend connection, after aiomysql handed its transport over.

`BackendConnection` is the asyncio Protocol of a server connection. Its
state (core/states.py: IDLE, RESERVED, BUSY, INTERNAL, CLOSED, and the moves
between them) says who may use it and what its bytes mean; `set_state` is
the only place it changes.

It talks upward through two small ports declared here: its `holder` (the
client it serves: relay bytes to it, tell it the response is done, that the
server asked for a LOCAL INFILE, that the backend died, that its write
buffer is full) and its `owner` (the pool: it closed; its socket is gone).
Both are base classes without behaviour that the client and the pool derive
from (a typing.Protocol costs a lookup by name at every call, compiled).
Only the client's lease (client/lease.py) sets or clears `holder`.

The relay is the hot path: `data_received` feeds the tracker (headers and
first bytes only), writes what belongs to the response to the client in one
call, and tells the client when the response is complete. Flow control runs
both ways: when the client's socket buffer is full the backend stops
reading, and when the backend's is full the client stops reading; a pause
never outlives the link (released or dead, the backend resumes the client
it paused).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ..constants import MARIADB_CLIENT_EXTENDED_METADATA
from ..core.session import SessionState
from ..core.statements import ServerStatement, StatementCache
from ..core.states import BackendState, IllegalTransition
from ..errors import ProtocolError
from ..protocol.framing import encode_packet
from ..protocol.packets import ErrPacket
from ..protocol.response import Expect, Phase, ResponseTracker
from ..protocol.session_track import StateChanges, Trackers
from ..reasons import BackendCloseReason

if TYPE_CHECKING:
    from .adapter import BackendParams, Handoff

__all__ = ["BackendConnection", "InternalResult", "BackendGone", "Holder", "Owner"]

log = logging.getLogger("mysqlpool.backend")

# The members the relay compares with at every packet, as module globals: on Python 3.11
# reading `BackendState.BUSY` runs EnumType's __getattr__ hook, ~20 times a global's cost.
_RESERVED: Final = BackendState.RESERVED
_BUSY: Final = BackendState.BUSY
_INTERNAL: Final = BackendState.INTERNAL
_CLOSED: Final = BackendState.CLOSED
_DONE: Final = Phase.DONE
_INFILE: Final = Phase.INFILE


class Holder(asyncio.Protocol):
    """The client a backend serves (ClientConnection derives from it, through client/host.py's Client):
    the socket protocol on the other side of the relay. A base class rather than a typing.Protocol, so
    that compiled, the relay's calls to it go through a vtable, not a lookup by name (every response
    calls two of them). No behaviour here: every method is the client's."""

    __slots__ = ()

    def relay_to_client(self, data: bytes | bytearray) -> None:
        raise NotImplementedError

    def on_response_done(self, backend: BackendConnection, held: bytes | bytearray = b"") -> None:
        raise NotImplementedError

    def on_infile_request(self, backend: BackendConnection) -> None:
        raise NotImplementedError

    def on_backend_lost(self, backend: BackendConnection, was_busy: bool) -> None:
        raise NotImplementedError

    def pause_reading_for_backend(self) -> None:
        raise NotImplementedError

    def resume_reading_for_backend(self) -> None:
        raise NotImplementedError

    def yield_soft_backend(self) -> bool:
        raise NotImplementedError


class Owner:
    """The pool a backend belongs to (Pool derives from it; a base class for the same reason as Holder)."""

    __slots__ = ()

    name: str
    params: BackendParams
    generation: int
    statement_cache_size: int

    def on_backend_closed(self, backend: BackendConnection, previous: BackendState) -> None:
        raise NotImplementedError

    def on_backend_gone(self, backend: BackendConnection) -> None:
        raise NotImplementedError

    def release(self, backend: BackendConnection) -> None:
        raise NotImplementedError

    def give_back(self, backend: BackendConnection) -> None:
        raise NotImplementedError

    def expired(self, backend: BackendConnection, now: float) -> bool:
        raise NotImplementedError


class BackendGone(Exception):
    """The backend closed (or was closed) before the proxy's command completed."""

    def __init__(self, reason: BackendCloseReason, detail: str = ""):
        super().__init__(detail or reason.value)
        self.reason = reason


@dataclass(slots=True)
class InternalResult:
    error: ErrPacket | None
    status: int
    changes: StateChanges | None
    prepare_ok: tuple[int, int, int, int] | None = None
    data: bytes = b""  # the whole response, when asked for (collect=True)


class BackendConnection(asyncio.Protocol):
    __slots__ = (
        "id", "pool", "key", "transport", "thread_id", "state", "session", "tracker", "holder", "created_at",
        "expires_at", "idle_since", "last_used", "close_reason", "_held", "_future", "_timer", "_reading_paused",
        "commands", "loop", "_handoff", "generation", "statements", "last_insert_id", "last_owner",
        "_collected", "_slot_held", "_paused_client", "_retry_on", "fresh", "report_held",
    )

    def __init__(self, *, backend_id: int, pool: Owner, key: int, thread_id: int, session: SessionState,
                 created_at: float, lifetime: float, loop: asyncio.AbstractEventLoop):
        self.id = backend_id
        self.pool = pool
        self.key = key
        self.thread_id = thread_id
        self.session = session
        self.fresh = session.copy()  # its session as opened: what a reset gives back (but the schema)
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.state = BackendState.RESERVED  # the pool owns it until it is released or handed out
        self.tracker = ResponseTracker()
        self.holder: Holder | None = None  # the client it serves (set and cleared by client/lease.py only)
        self.created_at = created_at
        # A few percent of jitter so backends opened together do not all expire together.
        self.expires_at = created_at + lifetime * random.uniform(0.95, 1.0)
        self.idle_since = created_at
        self.last_used = created_at
        self.close_reason: BackendCloseReason | None = None
        self._held: bytes | bytearray = b""
        self._future: asyncio.Future | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reading_paused = False
        self.commands = 0
        self._handoff: Handoff | None = None  # kept until the transport is closed (see adapter.Handoff)
        self.generation = pool.generation
        self.statements: StatementCache | None = None  # created at the first prepared statement
        self.last_insert_id = 0  # what LAST_INSERT_ID() returns on this connection now
        self.last_owner: tuple[int, int] | None = None  # (client id, its statement number) that ran last
        self._collected: list[bytes | bytearray] | None = None
        self._slot_held = True  # counted in the pool's size until its socket is closed
        self._paused_client: Holder | None = None  # the client whose reading it paused (its write buffer was full)
        self._retry_on: frozenset[int] = frozenset()  # see send_command
        # The server holds back a tracker report that an EOF could not carry (the EOF said "state
        # changed"): the next OK with a report of its own brings it, whatever command that is. Such a
        # backend never goes back to the pool (client/followups.py fetches the report first).
        self.report_held = False

    def __repr__(self) -> str:
        return f"<Backend #{self.id} thread={self.thread_id} {self.state.value} pool={self.pool.name}>"

    # -- state ----------------------------------------------------------------

    def set_state(self, new: BackendState) -> None:
        """The one place the state changes (core/states.py has the table)."""
        if new not in self.state.allowed:
            raise IllegalTransition(self, self.state, new)
        self.state = new

    @property
    def extended_metadata(self) -> bool:
        """Its column definitions carry MariaDB's extended metadata (its pool key asked: adapter.py)."""
        return bool(self.key & MARIADB_CLIENT_EXTENDED_METADATA)

    @property
    def closed(self) -> bool:
        return self.state is _CLOSED

    @property
    def unsent(self) -> int:
        """Bytes written to it that the server has not taken yet (it answered before reading them all)."""
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def attach(self, transport: asyncio.Transport, handoff: Handoff | None = None) -> None:
        """Take the transport over from the client library that opened it. What the server sent or
        did in between (an ERR, its EOF: a KILL right after the setup) is handled as if it came now."""
        self.transport = transport
        self._handoff = handoff
        transport.set_protocol(self)
        if transport.is_closing():
            self._lost(BackendCloseReason.SERVER_GONE)
            self._gone()
            return
        if handoff is None:
            return
        data, eof = handoff.leftover()
        if data:
            self.data_received(data)
        if eof and not self.closed:
            self._lost(BackendCloseReason.SERVER_GONE)
            transport.close()  # its connection_lost frees the pool slot

    # -- asyncio.Protocol ------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state is _BUSY:
            self._relay(data)
        elif state is _INTERNAL:
            self._internal_data(data)
        elif state is not _CLOSED:
            # Unsolicited: the server is telling us it is closing the connection.
            log.debug("backend #%d: %d unsolicited bytes in state %s", self.id, len(data), state.value)
            self.close(BackendCloseReason.SERVER_GONE)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(self.close_reason or BackendCloseReason.SERVER_GONE)
        self._gone()

    def pause_writing(self) -> None:
        client = self.holder
        if client is not None and self._paused_client is None:
            self._paused_client = client
            client.pause_reading_for_backend()

    def resume_writing(self) -> None:
        self._resume_paused_client()

    def _resume_paused_client(self) -> None:
        """The client this backend stopped reading (its write buffer was full) reads again. Called when
        the buffer drains, and whenever the backend is released or dies: a pause never outlives the link."""
        client, self._paused_client = self._paused_client, None
        if client is not None:
            client.resume_reading_for_backend()

    def detach(self) -> None:
        """It goes back to its pool: nothing of its last client stays paused, either way."""
        if self._paused_client is not None:  # (checked here: this runs at every release)
            self._resume_paused_client()
        if self._reading_paused:
            self.resume_reading()

    def after_reset(self) -> None:
        """COM_RESET_CONNECTION went through: the server keeps the schema and the multi-statements
        option, and gives back the rest as the connection was opened; no statement is left."""
        fresh = self.fresh.copy()
        fresh.schema = self.session.schema
        fresh.multi_statements = self.session.multi_statements
        self.session = fresh
        if self.statements is not None:
            self.statements.clear()
        self.last_insert_id = 0
        self.last_owner = None

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    # -- relaying a client's command ------------------------------------------

    def send_command(self, raw: bytes, expect: Expect, *, binary: bool, strip: bool,
                     trackers: Trackers | None = None, prepare_id: int | None = None,
                     retry_on: frozenset[int] = frozenset(), deprecate_eof: bool = False,
                     stmt_ids: tuple[int, int] | None = None) -> None:
        """Relay its holder's command. `retry_on`: error numbers that, as the whole response, are handed
        to the holder's on_response_done unrelayed (it may retry the command instead); `deprecate_eof`:
        the holder negotiated CLIENT_DEPRECATE_EOF, and gets the response in that framing; `stmt_ids`:
        (this server's, the holder's) id of the statement the command names, when they differ."""
        self.set_state(_BUSY)
        self.commands += 1
        self._retry_on = retry_on
        self.tracker.begin(expect, binary=binary, strip_session_track=strip, trackers=trackers, prepare_id=prepare_id,
                           deprecate_eof=deprecate_eof, stmt_ids=stmt_ids)
        assert self.transport is not None  # attach() comes before any command
        self.transport.write(raw)

    def statement_cache(self) -> StatementCache:
        if self.statements is None:
            self.statements = StatementCache(self.pool.statement_cache_size)
        return self.statements

    def has_statement(self, key: tuple) -> bool:
        return self.statements is not None and key in self.statements

    def close_server_statements(self, stmts: Iterable[ServerStatement]) -> None:
        """COM_STMT_CLOSE (no reply) for server statements evicted or dropped."""
        assert self.transport is not None  # attach() comes before any command
        for stmt in stmts:
            self.transport.write(encode_packet(b"\x19" + stmt.server_id.to_bytes(4, "little"), 0))

    def write(self, raw: bytes | bytearray) -> None:
        """Bytes with no response of their own (COM_STMT_CLOSE, LOCAL INFILE data)."""
        assert self.transport is not None  # attach() comes before any command
        self.transport.write(raw)

    def infile_sent(self) -> None:
        self.tracker.infile_sent()

    def _feed(self, data: bytes | bytearray) -> tuple[bytes | bytearray, int]:
        """The bytes to look at (with any held back before) and how many belong to the response;
        n < 0 when the response was malformed (the backend is then closed). For a CLIENT_DEPRECATE_EOF
        client they are a copy, which the tracker renumbers."""
        if self._held:
            data = self._held + data
            self._held = b""
        tracker = self.tracker
        try:
            if tracker.translating:
                buf = bytearray(data)
                return buf, tracker.feed_translating(buf)
            if type(data) is not bytes:
                data = bytes(data)
            return data, tracker.feed(data)
        except ProtocolError as exc:
            log.warning("backend #%d sent a malformed response: %s", self.id, exc)
            self.close(BackendCloseReason.ERROR)
            return data, -1

    def _relay(self, data: bytes | bytearray) -> None:
        data, n = self._feed(data)
        if n < 0:
            return
        tracker = self.tracker
        out = data if n == len(data) else data[:n]
        if tracker.rewrites:
            out = _apply_rewrites(out, tracker.rewrites)
        phase = tracker.phase
        client = self.holder
        assert client is not None
        if phase is _DONE:
            self.set_state(_RESERVED)
            if tracker.eof_state_pending or self.report_held:
                self._note_held_report(tracker)
            held = tracker.error is not None and tracker.error.errno in self._retry_on
            if not held:
                client.relay_to_client(out)
            if n < len(data):
                log.warning("backend #%d sent %d bytes after a complete response", self.id, len(data) - n)
                self.close(BackendCloseReason.ERROR)
            client.on_response_done(self, out if held else b"")
        elif phase is _INFILE:
            client.relay_to_client(out)
            client.on_infile_request(self)
        else:
            if n < len(data):
                self._held = data[n:]
            if out:
                client.relay_to_client(out)

    def _note_held_report(self, tracker: ResponseTracker) -> None:
        """After a response: is a tracker report held back now? (One was, and no OK brought it; or an
        EOF of this response said "state changed".)"""
        self.report_held = tracker.eof_state_pending or (self.report_held and tracker.changes is None)

    # -- the proxy's own commands -----------------------------------------------

    async def run_internal(self, payload: bytes, expect: Expect, timeout: float, *,
                           collect: bool = False) -> InternalResult:
        """Run one command of the proxy's own: its InternalResult, or BackendGone.
        With `collect`, the result carries the raw response (only for small ones: the proxy's own queries).

        A caller cancelled while it waits never learns what the command did (it may have run, its
        result not yet read back into the backend's session, its statement not recorded): the
        backend's state is unknown, so it is closed. A backend that closed before the call (its caller
        awaited something else meanwhile) raises BackendGone too."""
        if self.state is BackendState.CLOSED:
            raise BackendGone(self.close_reason or BackendCloseReason.SERVER_GONE)
        future = self._send_internal(payload, expect, timeout, collect)
        try:
            return await future
        except asyncio.CancelledError:
            self.close(BackendCloseReason.DIRTY)
            raise

    def _send_internal(self, payload: bytes, expect: Expect, timeout: float,
                       collect: bool) -> asyncio.Future[InternalResult]:
        self.set_state(_INTERNAL)
        self._collected = [] if collect else None
        fut = self.loop.create_future()
        self._future = fut
        self.tracker.begin(expect)
        self._timer = self.loop.call_later(timeout, self._internal_timeout)
        assert self.transport is not None  # attach() comes before any command
        self.transport.write(encode_packet(payload, 0))
        return fut

    def _internal_data(self, data: bytes | bytearray) -> None:
        data, n = self._feed(data)
        if n < 0:
            return
        tracker = self.tracker
        if tracker.phase is _INFILE:
            self.close(BackendCloseReason.ERROR)  # never asked for; refuse to go on
            return
        if self._collected is not None:
            self._collected.append(data[:n])
        if not tracker.done:
            self._held = data[n:]
            return
        if n < len(data):
            self.close(BackendCloseReason.ERROR)
            return
        self._cancel_timer()
        self.set_state(_RESERVED)
        self._note_held_report(tracker)
        collected, self._collected = self._collected, None
        if tracker.last_insert_id:
            self.last_insert_id = tracker.last_insert_id
        fut, self._future = self._future, None
        if fut is not None and not fut.done():
            fut.set_result(InternalResult(tracker.error, tracker.status, tracker.changes, tracker.prepare_ok,
                                          b"".join(collected) if collected else b""))

    def _internal_timeout(self) -> None:
        self._timer = None
        log.warning("backend #%d: no reply to an internal command in time", self.id)
        self.close(BackendCloseReason.ERROR)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- closing ----------------------------------------------------------------

    def close(self, reason: BackendCloseReason) -> None:
        """Stop using this backend now.

        A server waiting for a command is told COM_QUIT and closes its end; the
        pool slot is held until then (or until QUIT_WAIT passes), so the server
        never counts more connections than the caps. A server that is not
        reading commands would not read COM_QUIT until it had finished the
        command in flight: one sending a result would go on producing it for
        nobody, one waiting for LOCAL INFILE data would take COM_QUIT for more
        of the file, holding its locks. So then the proxy hangs up, as a client
        that dies does on a direct connection, and the server stops at once;
        bytes of a command it has not read yet are dropped with the socket.
        """
        if self.state is BackendState.CLOSED:
            return
        at_boundary = self.tracker.done and not self.unsent  # the server waits for a command, and only that
        self.close_reason = reason
        self._lost(reason)
        transport = self.transport
        if transport is None or transport.is_closing():
            self._gone()
            return
        if not at_boundary:
            transport.abort()  # its connection_lost frees the pool slot
            return
        try:
            transport.write(_COM_QUIT)
        except (OSError, RuntimeError):
            transport.abort()
            return
        self.resume_reading()  # to see the server's EOF
        self._timer = self.loop.call_later(QUIT_WAIT, transport.abort)

    def _lost(self, reason: BackendCloseReason) -> None:
        """No command goes to this backend any more; whoever used it is told."""
        if self.state is BackendState.CLOSED:
            return
        previous = self.state
        self.close_reason = self.close_reason or reason
        self.set_state(BackendState.CLOSED)
        self._cancel_timer()
        self.tracker.abort()
        fut, self._future = self._future, None
        if fut is not None and not fut.done():
            fut.set_exception(BackendGone(self.close_reason))
        self.pool.on_backend_closed(self, previous)
        self._resume_paused_client()
        client, self.holder = self.holder, None
        if client is not None:
            client.on_backend_lost(self, previous is BackendState.BUSY)

    def _gone(self) -> None:
        """The socket is closed: the pool slot is free."""
        self._cancel_timer()
        if self._slot_held:
            self._slot_held = False
            self.pool.on_backend_gone(self)


_COM_QUIT: Final = encode_packet(b"\x01", 0)
QUIT_WAIT: Final = 2.0  # seconds a closing backend waits for the server to close its end


def _apply_rewrites(data: bytes | bytearray, rewrites: list[tuple[int, int, bytes]]) -> bytes:
    parts = []
    pos = 0
    for start, end, new in rewrites:
        parts.append(data[pos:start])
        parts.append(new)
        pos = end
    parts.append(data[pos:])
    return b"".join(parts)

"""A client's binary-protocol prepared statements on the wire (core/statements.py has the model).

Commands that carry a statement id are looked up in the client's own table
(`lookup`); what needs no server is answered here (closing, resetting a
statement that lives on no server), and so is what the server would refuse
at once, with its own error: an execute that does not parse (see
protocol/stmt.py) is checked here, once, before any backend is taken (one
in MySQL 8's query-attribute form is made plain first: no backend takes
attributes), and so is a COM_STMT_BULK_EXECUTE (protocol/bulk.py: 1295 for
a client that did not negotiate bulk operations, whatever its backends
did); a long-data packet shorter than its header is dropped, as the server
drops it. The rest is the backend's side of a statement: the packet
with the backend's statement id (and the parameter types it has not seen),
the server statement cached after a prepare, and whether a cursor or long
data lives on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..backend.connection import BackendConnection
from ..constants import CLIENT_QUERY_ATTRIBUTES, COM_STMT_BULK_EXECUTE, COMMAND, ER, ER_MALFORMED_PACKET
from ..core.client_session import NO_REPLY_CODES
from ..core.statements import ClientStatement, ServerStatement, backend_statement_packet
from ..core.states import BackendState
from ..errors import ProxyError
from ..protocol.bulk import WRONG_BULK_ARGUMENTS, check_bulk, indicators_only, parse_bulk
from ..protocol.framing import Packet, same_frames, with_payload
from ..protocol.stmt import (
    EXECUTE_FIXED_SIZE,
    MALFORMED,
    WRONG_ARGUMENTS,
    ExecuteRefused,
    nulls_only,
    parse_execute,
    plain_execute,
)
from .constants import ER_STMT_HAS_NO_OPEN_CURSOR, ER_UNKNOWN_STMT_HANDLER

if TYPE_CHECKING:
    from .host import Client

__all__ = ["lookup", "backend_packet", "no_reply_done", "cache_prepared", "mark_busy"]

LONG_DATA_HEADER = 7  # 0x18 stmt_id(4) param_id(2): MariaDB ignores a shorter COM_STMT_SEND_LONG_DATA


def lookup(client: Client, code: int, pkt: Packet) -> tuple[ClientStatement, Packet] | None:
    """The client's statement the command names, and the packet as the server takes it (an execute of a
    client with query attributes, without them); None when the command was answered here (or dropped)."""
    payload = pkt.payload
    if code == COMMAND.COM_STMT_EXECUTE and len(payload) < EXECUTE_FIXED_SIZE:
        # The server checks this before it looks the statement up.
        client.send_error(pkt.last_seq, ProxyError(ER_MALFORMED_PACKET, MALFORMED))
        return None
    if code == COM_STMT_BULK_EXECUTE:
        try:
            check_bulk(payload, client.capabilities)  # (so does this)
        except ExecuteRefused as exc:
            client.send_error(pkt.last_seq, ProxyError(exc.errno, str(exc)))
            return None
    sid = int.from_bytes(payload[1:5], "little") if len(payload) >= 5 else -1
    session = client.session
    stmt = session.statements.get(sid)
    pins = session.pins
    if stmt is None:
        if code not in NO_REPLY_CODES:
            client.send_error(pkt.last_seq, ProxyError(
                ER_UNKNOWN_STMT_HANDLER, f"Unknown prepared statement handler ({sid}) given to mysqlpool-proxy"))
        return None
    if code == COMMAND.COM_STMT_CLOSE:
        del session.statements[sid]
        _drop_server_statement(client, stmt)
        return None
    if code == COMMAND.COM_STMT_EXECUTE:
        if client.capabilities & CLIENT_QUERY_ATTRIBUTES:
            try:
                payload = plain_execute(payload, stmt.params, stmt.types, stmt.id in pins.long_data)
            except ExecuteRefused as exc:
                client.send_error(pkt.last_seq, ProxyError(exc.errno, str(exc)))
                return None
            payload = same_frames(pkt, payload, b"\x00")  # (the server reads nothing after the values)
            pkt = with_payload(pkt, payload)
        refused = _execute_refused(client, stmt, payload)
        if refused is not None:
            client.send_error(pkt.last_seq, refused)
            return None
    elif code == COM_STMT_BULK_EXECUTE:
        refused = _bulk_refused(stmt, payload)
        if refused is not None:
            client.send_error(pkt.last_seq, refused)
            return None
    elif code == COMMAND.COM_STMT_SEND_LONG_DATA and len(payload) < LONG_DATA_HEADER:
        return None
    if code == COMMAND.COM_STMT_RESET and sid not in pins.cursors and sid not in pins.long_data:
        client.send_ok(pkt.last_seq)  # nothing of it lives on a server: nothing to reset
        return None
    if code == COMMAND.COM_STMT_FETCH and sid not in pins.cursors:
        client.send_error(pkt.last_seq, ProxyError(ER_STMT_HAS_NO_OPEN_CURSOR,
                                                   f"The statement ({sid}) has no open cursor"))
        return None
    return stmt, pkt


def _execute_refused(client: Client, stmt: ClientStatement, payload: bytes) -> ProxyError | None:
    """The server's error for an execute it refuses before running it (None: it runs)."""
    try:
        header = parse_execute(payload, stmt.params)
    except ExecuteRefused as exc:
        return ProxyError(exc.errno, str(exc))
    if (stmt.params and not header.types_bound and stmt.types is None
            and stmt.id not in client.session.pins.long_data and not nulls_only(payload, stmt.params)):
        return ProxyError(ER.WRONG_ARGUMENTS, WRONG_ARGUMENTS)  # no types: its client never bound any
    return None


def _bulk_refused(stmt: ClientStatement, payload: bytes) -> ProxyError | None:
    """The server's error for a bulk it refuses before running it (None: it runs)."""
    try:
        header = parse_bulk(payload, stmt.params)
    except ExecuteRefused as exc:
        return ProxyError(exc.errno, str(exc))
    if stmt.params and header.types is None and stmt.types is None and not indicators_only(payload):
        return ProxyError(ER.WRONG_ARGUMENTS, WRONG_BULK_ARGUMENTS)  # no types: its client never bound any
    return None


def _drop_server_statement(client: Client, stmt: ClientStatement) -> None:
    """A closed statement with a cursor or long data on the held backend: close it there too."""
    pins = client.session.pins
    if stmt.id not in pins.cursors and stmt.id not in pins.long_data:
        return
    pins.cursors.discard(stmt.id)
    pins.long_data.discard(stmt.id)
    backend = client.lease.backend
    if backend is None or backend.closed:
        return
    if backend.statements is not None:
        server = backend.statements.pop(stmt.key)
        if server is not None:
            backend.close_server_statements((server,))
    if backend.state is BackendState.RESERVED:
        client.lease.hold_or_release(backend, client.keeps_backend(backend))


def backend_packet(stmt: ClientStatement, server: ServerStatement, pkt: Packet) -> bytes:
    return backend_statement_packet(stmt, server, pkt)


def no_reply_done(client: Client, backend: BackendConnection) -> None:
    """COM_STMT_CLOSE or COM_STMT_SEND_LONG_DATA went to `backend` (the server answers neither)."""
    command = client.command
    assert command is not None and client.pool is not None
    client.pool.stats.count_query(command.spec.name)
    if command.spec.code == COMMAND.COM_STMT_SEND_LONG_DATA and command.stmt is not None:
        # The data waits on the server statement for the execute that consumes it.
        client.session.pins.long_data.add(command.stmt.id)
        mark_busy(backend, command.stmt, True)


def cache_prepared(backend: BackendConnection, stmt: ClientStatement,
                   prepare_ok: tuple[int, int, int, int] | None) -> None:
    """The server statement a client's prepare made on `backend`, in its cache."""
    assert prepare_ok is not None
    server_id, columns, params, _warnings = prepare_ok
    dropped = backend.statement_cache().put(stmt.key, ServerStatement(server_id, params, columns))
    if dropped:
        backend.close_server_statements(dropped)


def mark_busy(backend: BackendConnection, stmt: ClientStatement, busy: bool) -> None:
    """A cursor or long data lives on the statement's server statement (not evictable), or no more."""
    server = backend.statements.get(stmt.key) if backend.statements is not None else None
    if server is not None:
        server.busy = busy

"""A client's binary-protocol prepared statements (see statements.py for the model).

Commands that carry a statement id are looked up in the client's own table;
what needs no server is answered here (closing, resetting a statement that
lives on no server), and so is what the server would refuse at once, with
its own error: an execute that does not parse (see protocol/stmt.py) is
checked here, once, before any backend is taken; a long-data packet
shorter than its header is dropped, as the server drops it. Prepare
responses register statements; executes and fetches track the cursors and
long data that pin.
"""

from __future__ import annotations

import logging

from .backend import BackendConnection, BackendState
from .client_state import CURSOR_EXISTS, LAST_ROW_SENT, ER_UNKNOWN_STMT_HANDLER, ER_STMT_HAS_NO_OPEN_CURSOR, NO_REPLY_CODES
from .constants import COMMAND, ER, ER_MALFORMED_PACKET
from .errors import ProxyError
from .protocol.framing import Packet
from .protocol.sql import analyze
from .protocol.stmt import (
    EXECUTE_FIXED_SIZE, MALFORMED, WRONG_ARGUMENTS, ExecuteRefused, nulls_only, parse_execute,
)
from .core.statements import ClientStatement, ServerStatement, statement_key

__all__ = ["StatementsMixin"]

log = logging.getLogger("mysqlpool.client")

LONG_DATA_HEADER = 7  # 0x18 stmt_id(4) param_id(2): MariaDB ignores a shorter COM_STMT_SEND_LONG_DATA


class StatementsMixin:
    """Methods of ClientConnection (no state of its own)."""

    __slots__ = ()

    def _statement_command(self, code: int, pkt: Packet) -> bool:
        """Look up the client's statement; answer here what needs no backend. False: answered."""
        payload = pkt.payload
        if code == COMMAND.COM_STMT_EXECUTE and len(payload) < EXECUTE_FIXED_SIZE:
            # The server checks this before it looks the statement up.
            self.send_error(pkt.last_seq, ProxyError(ER_MALFORMED_PACKET, MALFORMED))
            return False
        sid = int.from_bytes(payload[1:5], "little") if len(payload) >= 5 else -1
        self._stmt_id = sid
        stmt = self.stmts.get(sid) if self.stmts else None
        pins = self.pins
        if stmt is None:
            if code not in NO_REPLY_CODES:
                self.send_error(pkt.last_seq, ProxyError(
                    ER_UNKNOWN_STMT_HANDLER, f"Unknown prepared statement handler ({sid}) given to mysqlpool-proxy"))
            return False
        if code == COMMAND.COM_STMT_CLOSE:
            del self.stmts[sid]
            self._drop_server_statement(stmt)
            return False
        if code == COMMAND.COM_STMT_EXECUTE:
            refused = self._execute_refused(stmt, payload)
            if refused is not None:
                self.send_error(pkt.last_seq, refused)
                return False
        elif code == COMMAND.COM_STMT_SEND_LONG_DATA and len(payload) < LONG_DATA_HEADER:
            return False
        if code == COMMAND.COM_STMT_RESET and sid not in pins.cursors and sid not in pins.long_data:
            self.send_ok(pkt.last_seq)  # nothing of it lives on a server: nothing to reset
            return False
        if code == COMMAND.COM_STMT_FETCH and sid not in pins.cursors:
            self.send_error(pkt.last_seq, ProxyError(ER_STMT_HAS_NO_OPEN_CURSOR,
                                                     f"The statement ({sid}) has no open cursor"))
            return False
        self._stmt = stmt
        return True

    def _execute_refused(self, stmt: ClientStatement, payload) -> ProxyError | None:
        """The server's error for an execute it refuses before running it (None: it runs)."""
        try:
            header = parse_execute(payload, stmt.params)
        except ExecuteRefused as exc:
            return ProxyError(exc.errno, str(exc))
        if (stmt.params and not header.types_bound and stmt.types is None and stmt.id not in self.pins.long_data
                and not nulls_only(payload, stmt.params)):
            return ProxyError(ER.WRONG_ARGUMENTS, WRONG_ARGUMENTS)  # no types: its client never bound any
        return None

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

    def _register_statement(self, backend: BackendConnection, prepare_ok: tuple[int, int, int, int]) -> None:
        server_id, columns, params, _warnings = prepare_ok
        key = statement_key(self.session, self._sql)
        if self.stmts is None:
            self.stmts = {}
        self.stmts[self._stmt_id] = ClientStatement(self._stmt_id, self._sql, key, params, columns, analyze(self._sql, self.quoting))
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

# FakeMySQLServer: the server side of one backend connection, at the packet
# level, after authentication and the proxy's setup. It answers the commands
# the proxy writes roughly as MariaDB 10.11 with CLIENT_SESSION_TRACK and the
# proxy's trackers on would (same packet shapes, status flags and
# session-state entries; the first result set of a transaction ends with an
# EOF that says "state changed", its report held until the next OK with a
# report of its own), and records them for the test to look at. It
# negotiated MariaDB's extended capabilities as the adapter does (bulk
# operations; extended metadata when its params ask, and then every column
# definition has the block): COM_STMT_BULK_EXECUTE runs its statement once,
# with MariaDB's errors for a statement without types and one without bulk
# operations negotiated.
#
# The server owns the session state (variables, schema, transaction, user
# variables, temporary tables, locks, prepared statements) and the wire side:
# it decodes commands from its FakeTransport, answers COM_PING, COM_INIT_DB,
# COM_RESET_CONNECTION, COM_SET_OPTION, COM_QUIT and the prepared-statement
# commands itself, and hands COM_QUERY text to its Interpreter
# (statements.py); the file of a LOAD DATA LOCAL INFILE it takes packet by
# packet, checking their sequence ids. Replies arrive on later loop iterations, as from a socket:
# late (latency), in chunks (chunk_size), or held until flush() (auto=False).
# A test scripts replies with on()/fail(); scripts come before the built-in
# behaviours. Not a SQL engine.
from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass
from typing import Any

from mysqlpool_proxy.backend.adapter import BACKEND_MARIADB_CAPABILITIES
from mysqlpool_proxy.constants import (
    CLIENT,
    COM_RESET_CONNECTION,
    COM_STMT_BULK_EXECUTE,
    COMMAND,
    MARIADB_CLIENT_EXTENDED_METADATA,
    MARIADB_CLIENT_STMT_BULK_OPERATIONS,
    SESSION_TRACK,
)
from mysqlpool_proxy.protocol.framing import PacketDecoder, encode_packet
from mysqlpool_proxy.protocol.packets import make_eof, make_err, make_ok
from mysqlpool_proxy.protocol.wire import Reader, int2, int4, lenenc_int
from tests.fakes.mariadb import GLOBALS, SERVER_EXTENDED_CAPABILITIES, SERVER_VERSION, SETUP_TRACKERS
from tests.fakes.packets import (
    ANSI_QUOTES,
    AUTOCOMMIT,
    CURSOR_EXISTS,
    IN_TRANS,
    LAST_ROW_SENT,
    MORE_RESULTS,
    NO_BACKSLASH_ESCAPES,
    as_bytes,
    binary_row,
    column_def,
    state_block,
    text_row,
)
from tests.fakes.replies import Command, Err, Rows, Script
from tests.fakes.sql import SqlError, split_top, tokenize
from tests.fakes.statements import Interpreter
from tests.fakes.transport import FakeTransport

SESSION_STATE_CHANGED = 0x4000


def merge_reports(held: list[tuple[int, bytes]], own: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """A held report and a later statement's own, as one OK brings them: each tracker once, the later
    value winning (system variables by name)."""
    def key(entry: tuple[int, bytes]) -> tuple[int, bytes]:
        kind, data = entry
        return (kind, Reader(data).lenenc_bytes() if kind == SESSION_TRACK.SYSTEM_VARIABLES else b"")

    newer = {key(e) for e in own}
    return [e for e in held if key(e) not in newer] + own


@dataclass
class _Stmt:
    """A prepared statement: its text and shape, and the rows left in its cursor."""

    sql: str
    columns: list[bytes]
    params: int
    cursor_rows: list | None = None
    types: bytes | None = None  # bound by an execute or a bulk


class FakeMySQLServer:
    """The server side of one backend connection, after authentication and the proxy's setup.

    Replies are delivered on later loop iterations (as from a socket), after
    `latency` virtual seconds, split into `chunk_size`-byte pieces if set. With
    `auto = False` replies are held until `flush()`. Scripts (`on`, `fail`)
    take precedence over the built-in behaviours.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: FakeTransport, *, thread_id: int = 1,
                 params: Any = None, latency: float = 0.0, chunk_size: int | None = None, auto: bool = True,
                 schemas: set[str] | None = None, version: str = SERVER_VERSION, quit_delay: float = 0.0):
        self.loop = loop
        self.quit_delay = quit_delay  # seconds before the server closes its end after COM_QUIT (a slow close)
        self.transport = transport
        self.thread_id = thread_id
        self.params = params
        keyed = MARIADB_CLIENT_EXTENDED_METADATA if getattr(params, "extended_metadata", False) else 0
        self.extended_capabilities = (BACKEND_MARIADB_CAPABILITIES | keyed) & SERVER_EXTENDED_CAPABILITIES
        self.version = version
        self.latency = latency
        self.chunk_size = chunk_size
        self.auto = auto
        self.schemas = schemas  # None: every schema exists
        transport.on_write = self.receive
        transport.on_close = self._transport_closed
        self.commands: list[Command] = []
        self.replies: list[bytes] = []  # each reply's bytes, as sent (before chunking)
        self.closed = False
        self.closed_by = ""  # "proxy" | "server"
        self.held = bytearray()
        self._outbox: deque[bytes] = deque()
        self._pumping = False
        self._decoder = PacketDecoder()
        self.scripts: list[Script] = []  # newest first: the first that hits answers
        self.sql = Interpreter(self)
        # session state
        self.variables: dict[bytes, bytes | None] = {**GLOBALS, **SETUP_TRACKERS}
        self.schema: bytes | None = None
        self.in_trans = False
        self.multi_statements = True
        self.user_vars: dict[str, bytes | None] = {}
        self.temp_tables: set[str] = set()
        self.locks: set[bytes] = set()
        self.trx_characteristics = b""
        self.statements: dict[int, _Stmt] = {}
        self._stmt_ids = itertools.count(1)
        self.resets = 0
        self.savepoints: set[str] = set()  # live until the transaction ends, as on MariaDB
        self.infile_seq: int | None = None  # a LOCAL INFILE transfer: the sequence id its next packet must have
        self.infile_data = bytearray()  # what the last one received
        self.trx_kind = b"T"  # the transaction state's first letter: T (BEGIN) or I (implicit)
        self.trx_read = False  # a result set was sent in the open transaction
        self.trx_write = False  # a row was written in it
        # Session-state entries an EOF could not carry (it said "state changed"): they come with
        # the next OK that has a report of its own, as on MariaDB (a bare OK brings none).
        self.held_report: list[tuple[int, bytes]] = []

    def __repr__(self) -> str:
        return f"<FakeMySQLServer thread={self.thread_id}{' closed' if self.closed else ''}>"

    # -- what the tests look at ---------------------------------------------------

    @property
    def queries(self) -> list[str]:
        return [c.sql for c in self.commands if c.code == COMMAND.COM_QUERY]

    @property
    def command_names(self) -> list[str]:
        return [c.name for c in self.commands]

    @property
    def status(self) -> int:
        mode = (self.variables.get(b"sql_mode") or b"").upper().split(b",")
        return ((AUTOCOMMIT if self.autocommit else 0) | (IN_TRANS if self.in_trans else 0)
                | (ANSI_QUOTES if b"ANSI_QUOTES" in mode or b"ANSI" in mode else 0)
                | (NO_BACKSLASH_ESCAPES if b"NO_BACKSLASH_ESCAPES" in mode else 0))

    @property
    def autocommit(self) -> bool:
        return self.variables.get(b"autocommit") == b"ON"

    @property
    def trackers_on(self) -> bool:
        return all(self.variables.get(k) == v for k, v in SETUP_TRACKERS.items())

    # -- scripting -----------------------------------------------------------------

    def on(self, match, reply, *, delay: float = 0.0, times: int | None = None) -> None:
        """Answer statements matching `match` (text, case/space-insensitive, or a regex) with `reply`.

        `reply` is Rows, Ok, Err, or a callable(server, sql) returning one.
        """
        self.scripts.insert(0, Script(match, reply, delay, times))

    def fail(self, match, errno: int = 1064, message: str = "scripted error", sqlstate: str = "42000",
             times: int | None = None) -> None:
        self.on(match, Err(errno, message, sqlstate), times=times)

    # -- the connection --------------------------------------------------------------

    def close(self, error: tuple[int, str] | None = None) -> None:
        """The server closes the connection (wait_timeout, KILL, restart), optionally saying why first."""
        if self.closed:
            return
        if error is not None:
            self.transport.feed(encode_packet(make_err(error[0], "HY000", error[1]), 0))
        self.closed = True
        self.closed_by = "server"
        self.transport.peer_close()

    def _quit(self) -> None:
        self.close()
        self.closed_by = "proxy"  # it closes because the proxy said COM_QUIT

    def _transport_closed(self) -> None:
        if not self.closed:
            self.closed = True
            self.closed_by = "proxy"

    def send_raw(self, data: bytes) -> None:
        """Bytes the server sends on its own (e.g. unsolicited packets)."""
        self.transport.feed(data)

    def flush(self, nbytes: int | None = None) -> None:
        """Deliver held reply bytes now (all, or the first `nbytes`)."""
        n = len(self.held) if nbytes is None else min(nbytes, len(self.held))
        data = bytes(self.held[:n])
        del self.held[:n]
        for piece in self._split(data):
            self.transport.feed(piece)

    def _split(self, data: bytes) -> list[bytes]:
        size = self.chunk_size
        if not size:
            return [data] if data else []
        return [data[i:i + size] for i in range(0, len(data), size)]

    def _emit(self, data: bytes, delay: float = 0.0) -> None:
        self.replies.append(data)
        if not self.auto:
            self.held += data
            return
        delay += self.latency
        if delay > 0:
            self.loop.call_later(delay, self._queue, data)
        else:
            self._queue(data)

    def _queue(self, data: bytes) -> None:
        self._outbox.extend(self._split(data))
        if not self._pumping:
            self._pumping = True
            self.loop.call_soon(self._pump)

    def _pump(self) -> None:
        if self.closed or not self._outbox:
            self._pumping = False
            self._outbox.clear()
            return
        self.transport.feed(self._outbox.popleft())
        if self._outbox:
            self.loop.call_soon(self._pump)
        else:
            self._pumping = False

    # -- commands --------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        if self.closed:
            return
        self._decoder.feed(data)
        while not self.closed:
            pkt = self._decoder.next_packet()
            if pkt is None:
                return
            if self.infile_seq is not None:
                self._infile_packet(pkt.seq, pkt.last_seq, pkt.payload)
            else:
                self._command(pkt.payload)

    def _infile_packet(self, seq: int, last_seq: int, payload: bytes) -> None:
        """A packet of the client's file, after the server asked for it: checked in order, as MariaDB does."""
        assert self.infile_seq is not None
        if seq != self.infile_seq:
            self.infile_seq = None
            self._emit(encode_packet(make_err(1156, "08S01", "Got packets out of order"), 0))
            self.close()
            return
        self.infile_seq = (last_seq + 1) & 0xFF
        if payload:
            self.infile_data += payload
            return
        lines = bytes(self.infile_data).count(b"\n")
        ok = self.ok_packet(affected=lines, info=b"Records: %d  Deleted: 0  Skipped: 0  Warnings: 0" % lines)
        self._emit(encode_packet(ok, self.infile_seq))
        self.infile_seq = None

    def _command(self, payload: bytes) -> None:
        code, arg = payload[0], payload[1:]
        self.commands.append(Command(code, arg, self.loop.time()))
        delay = 0.0
        if code == COMMAND.COM_QUERY:
            packets, delay = self.sql.query(arg.decode("latin-1"))
        elif code == COMMAND.COM_PING:
            packets = [self.ok_packet()]
        elif code == COMMAND.COM_INIT_DB:
            packets = self._init_db(arg)
        elif code == COMMAND.COM_SET_OPTION:
            option = int.from_bytes(arg[:2], "little")
            self.multi_statements = option == 0
            packets = [make_eof(self.status)]
        elif code == COM_RESET_CONNECTION:
            self._reset()
            packets = [self.ok_packet()]
        elif code == COMMAND.COM_QUIT:
            if self.quit_delay:
                self.loop.call_later(self.quit_delay, self._quit)
            else:
                self._quit()
            return
        elif code == COMMAND.COM_STMT_PREPARE:
            packets = self._prepare(arg.decode("latin-1"))
        elif code == COMMAND.COM_STMT_EXECUTE:
            packets = self._execute(arg)
        elif code == COM_STMT_BULK_EXECUTE:
            packets = self._bulk(arg)
        elif code == COMMAND.COM_STMT_FETCH:
            packets = self._fetch(arg)
        elif code == COMMAND.COM_STMT_RESET:
            stmt = self.statements.get(int.from_bytes(arg[:4], "little"))
            if stmt is None:
                packets = [make_err(1243, "HY000", "Unknown prepared statement handler given to mysqld_stmt_reset")]
            else:
                stmt.cursor_rows = None
                packets = [self.ok_packet()]
        elif code in (COMMAND.COM_STMT_CLOSE, COMMAND.COM_STMT_SEND_LONG_DATA):
            if code == COMMAND.COM_STMT_CLOSE:
                self.statements.pop(int.from_bytes(arg[:4], "little"), None)
            return  # no reply
        elif code == COMMAND.COM_STATISTICS:
            packets = [b"Uptime: 100  Threads: 1  Questions: 1  Slow queries: 0  Opens: 1  Open tables: 1"]
        else:
            packets = [make_err(1047, "08S01", "Unknown command")]
        if code == COMMAND.COM_QUERY and packets[-1][:1] == b"\xfb":
            self.infile_seq = (len(packets) + 1) & 0xFF  # after the request, the last packet
            self.infile_data = bytearray()
        self._emit(b"".join(encode_packet(p, i + 1) for i, p in enumerate(packets)), delay)

    # -- packets (the interpreter builds its replies with these too) ------------------

    def ok_packet(self, affected: int = 0, insert_id: int = 0, *, more: bool = False, info: bytes = b"",
                  changes: list[tuple[int, bytes]] | None = None) -> bytes:
        status = self.status | (MORE_RESULTS if more else 0)
        if changes and self.held_report:
            changes, self.held_report = merge_reports(self.held_report, changes), []
        block = state_block(changes) if changes else None
        return make_ok(CLIENT.PROTOCOL_41 | CLIENT.SESSION_TRACK, status, affected, insert_id, info=info,
                       session_state=block)

    def result_set_packets(self, columns: list[bytes], rows: list, *, more: bool = False,
                           binary: bool = False, state_changed: bool | None = None) -> list[bytes]:
        """A result set; its last EOF says "state changed" when its report must wait (see
        `_read_in_transaction`; `state_changed` given: as a result set built before said)."""
        if state_changed is None:
            state_changed = self._read_in_transaction()
        status = self.status | (MORE_RESULTS if more else 0)
        packets = [lenenc_int(len(columns))]
        packets += [self.column(c) for c in columns]
        packets.append(make_eof(status))
        packets += [(binary_row if binary else text_row)([as_bytes(v) for v in row]) for row in rows]
        packets.append(make_eof(status | (SESSION_STATE_CHANGED if state_changed else 0)))
        return packets

    def column(self, name: bytes) -> bytes:
        """A column definition as this connection has them (the extended-metadata block if negotiated)."""
        extended = b"" if self.extended_capabilities & MARIADB_CLIENT_EXTENDED_METADATA else None
        return column_def(name, extended=extended)

    def trx_state(self) -> bytes:
        """The transaction state as the tracker reports it: T_______ after BEGIN, T_R___S_ after a
        result set, T_R_W_S_ after a write too (I for a transaction autocommit = 0 started)."""
        return b"%s_%s_%s_%s_" % (self.trx_kind, b"R" if self.trx_read else b"_", b"W" if self.trx_write else b"_",
                                  b"S" if self.trx_read else b"_")

    def _read_in_transaction(self) -> bool:
        """The first result set of a transaction changes its state (a read: T_R___S_), which the
        trackers report; an EOF cannot carry the report, so it waits in `held_report`. True if so."""
        if not self.in_trans or self.trx_read:
            return False
        self.trx_read = True
        entries = self.sql.tracked({"trx_state": self.trx_state()})
        if not entries:
            return False
        self.held_report = merge_reports(self.held_report, entries)
        return True

    def _reset(self) -> None:
        """COM_RESET_CONNECTION: a fresh session (global values, trackers off), same schema."""
        self.resets += 1
        self.variables = dict(GLOBALS)
        self.in_trans = False
        self.savepoints.clear()
        self.user_vars.clear()
        self.temp_tables.clear()
        self.locks.clear()
        self.trx_characteristics = b""
        self.statements.clear()
        self.trx_read = self.trx_write = False
        self.held_report = []

    # -- COM_INIT_DB -------------------------------------------------------------------

    def _init_db(self, name: bytes) -> list[bytes]:
        if self.schemas is not None and name.decode() not in self.schemas:
            return [make_err(1049, "42000", f"Unknown database '{name.decode()}'")]
        self.schema = name
        return [self.ok_packet(changes=self.sql.tracked({"schema": name, "state_change": True}))]

    # -- prepared statements ---------------------------------------------------------------

    def _statement_shape(self, sql: str) -> tuple[list[bytes], int]:
        toks = tokenize(sql)
        params = sum(1 for t in toks if t.is_op("?"))
        for script in self.scripts:
            if script.hits(sql) and isinstance(script.reply, Rows):
                return [as_bytes(c) for c in script.reply.columns], params
        if toks and toks[0].is_word("select"):
            body = toks[1:]
            into = next((i for i, t in enumerate(body) if t.is_word("from", "into")), len(body))
            return [sql[p[0].start:p[-1].end].encode("latin-1") for p in split_top(body[:into], ",") if p], params
        return [], params

    def _prepare(self, sql: str) -> list[bytes]:
        for script in self.scripts:
            if script.hits(sql) and isinstance(script.reply, Err):
                e = script.reply
                return [make_err(e.errno, e.sqlstate, e.message)]
        columns, params = self._statement_shape(sql)
        stmt_id = next(self._stmt_ids)
        self.statements[stmt_id] = _Stmt(sql, columns, params)
        packets = [b"\x00" + int4(stmt_id) + int2(len(columns)) + int2(params) + b"\x00" + int2(0)]
        if params:
            packets += [self.column(b"?") for _ in range(params)] + [make_eof(self.status)]
        if columns:
            packets += [self.column(c) for c in columns] + [make_eof(self.status)]
        return packets

    def _bulk(self, arg: bytes) -> list[bytes]:
        """COM_STMT_BULK_EXECUTE: its statement runs once (the fake binds no values), answered with its OK."""
        if not self.extended_capabilities & MARIADB_CLIENT_STMT_BULK_OPERATIONS:
            return [make_err(1295, "HY000", "This command is not supported in the prepared statement protocol yet")]
        stmt = self.statements.get(int.from_bytes(arg[:4], "little"))
        if stmt is None:
            return [make_err(1243, "HY000", "Unknown prepared statement handler given to mysqld_stmt_execute")]
        if arg[4] & 128:
            stmt.types = arg[6:6 + 2 * stmt.params]
        elif stmt.types is None and any(b not in (1, 2, 3) for b in arg[6:]):  # values, but no types to read them
            return [make_err(1210, "HY000", "Incorrect arguments to mysqld_stmt_bulk_execute")]
        try:
            packets, _ = self.sql.query(stmt.sql)
        except SqlError as e:
            return [make_err(e.errno, e.sqlstate, e.message)]
        return packets

    def _execute(self, arg: bytes) -> list[bytes]:
        stmt = self.statements.get(int.from_bytes(arg[:4], "little"))
        if stmt is None:
            return [make_err(1243, "HY000", "Unknown prepared statement handler given to mysqld_stmt_execute")]
        bound_at = 9 + (stmt.params + 7) // 8  # the new-params-bound flag
        if stmt.params and len(arg) > bound_at and arg[bound_at] == 1:
            stmt.types = arg[bound_at + 1:bound_at + 1 + 2 * stmt.params]
        cursor = bool(arg[4] & 1) if len(arg) > 4 else False
        try:
            packets, _ = self.sql.query(stmt.sql)
        except SqlError as e:
            return [make_err(e.errno, e.sqlstate, e.message)]
        if not stmt.columns or packets[0][0] in (0x00, 0xFF):
            return packets
        rows = self._rows_of(packets, len(stmt.columns))
        state_changed = bool((packets[-1][3] | packets[-1][4] << 8) & SESSION_STATE_CHANGED)
        if cursor:
            stmt.cursor_rows = rows
            return ([lenenc_int(len(stmt.columns))] + [self.column(c) for c in stmt.columns]
                    + [make_eof(self.status | CURSOR_EXISTS | (SESSION_STATE_CHANGED if state_changed else 0))])
        return self.result_set_packets(stmt.columns, rows, binary=True, state_changed=state_changed)

    @staticmethod
    def _rows_of(packets: list[bytes], ncols: int) -> list:
        rows = []
        for p in packets[ncols + 2:-1]:
            r = Reader(p)
            row = []
            for _ in range(ncols):
                if p[r.pos] == 0xFB:
                    r.int1()
                    row.append(None)
                else:
                    row.append(r.lenenc_bytes())
            rows.append(row)
        return rows

    def _fetch(self, arg: bytes) -> list[bytes]:
        stmt = self.statements.get(int.from_bytes(arg[:4], "little"))
        if stmt is None or stmt.cursor_rows is None:
            return [make_err(1421, "HY000", "The statement has no open cursor")]
        n = int.from_bytes(arg[4:8], "little")
        rows, stmt.cursor_rows = stmt.cursor_rows[:n], stmt.cursor_rows[n:]
        packets = [binary_row(row) for row in rows]
        if stmt.cursor_rows:
            packets.append(make_eof(self.status | CURSOR_EXISTS))
        else:
            stmt.cursor_rows = None
            packets.append(make_eof(self.status | LAST_ROW_SENT))
        return packets

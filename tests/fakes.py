# Fakes for the middle test layer: pool, session and relay logic with no
# sockets and no sleeping (in the spirit of uvicorn's MockTransport/MockLoop).
#
# * VirtualClockLoop: a real SelectorEventLoop whose clock is virtual. When the
#   loop would block, time jumps to the next timer instead, so
#   `await asyncio.sleep(30)` returns at once with loop.time() 30 s later.
#   `run(coro)` runs a coroutine on a fresh one; `advance(s)` and `settle()`
#   move time / drain ready callbacks from inside it; `@virtual_time` turns an
#   `async def test_...` into a plain pytest test.
# * FakeTransport: an asyncio.Transport that records writes and lets a test
#   play the peer (deliver bytes, close, stall the write buffer).
# * FakeMySQLServer: the server side of one backend connection, at the packet
#   level: answers the commands the proxy writes roughly as MariaDB 10.11 with
#   CLIENT_SESSION_TRACK and the proxy's trackers on would, records them, and
#   can answer late, in chunks, or with scripted replies. Not a SQL engine.
# * FakeOpener / fake_opener(): the backend opener Pool and Proxy take; each
#   call wires a FakeTransport to a new FakeMySQLServer.
# * FakeClient: a MySQL client against a ClientConnection over a FakeTransport
#   (handshake, commands, parsed replies).
from __future__ import annotations

import asyncio
import functools
import itertools
import re
import selectors
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import pymysql

from mysqlpool_proxy.backend_adapter import Opened
from mysqlpool_proxy.constants import CLIENT, COM_RESET_CONNECTION, COMMAND, SERVER_STATUS, SESSION_TRACK
from mysqlpool_proxy.protocol import auth
from mysqlpool_proxy.protocol.command import COMMAND_NAMES
from mysqlpool_proxy.protocol.framing import PacketDecoder, encode_packet
from mysqlpool_proxy.protocol.packets import (
    EofPacket, ErrPacket, OkPacket, make_eof, make_err, make_ok, parse_eof, parse_err, parse_handshake_v10, parse_ok,
)
from mysqlpool_proxy.protocol.wire import Reader, int1, int2, int4, lenenc_bytes, lenenc_int

__all__ = [
    "VirtualClockLoop", "run", "virtual_time", "advance", "settle",
    "FakeTransport", "FakeMySQLServer", "Command", "Rows", "Ok", "Err",
    "FakeOpener", "fake_opener", "COLLATIONS", "SERVER_VERSION",
    "FakeClient", "Response", "Result", "ConnectionClosed", "proxy_config", "start_proxy",
]

IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
MORE_RESULTS = SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS
CURSOR_EXISTS = SERVER_STATUS.SERVER_STATUS_CURSOR_EXISTS
LAST_ROW_SENT = SERVER_STATUS.SERVER_STATUS_LAST_ROW_SENT
NO_BACKSLASH_ESCAPES = SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES
ANSI_QUOTES = 0x8000  # MariaDB's SERVER_STATUS_ANSI_QUOTES


# =============================================================================
# Virtual time
# =============================================================================


class _VirtualSelector(selectors.BaseSelector):
    """Real readiness (the loop's self-pipe still works), virtual waiting."""

    def __init__(self, loop: VirtualClockLoop):
        self._loop = loop
        self._real = selectors.DefaultSelector()

    def register(self, fileobj, events, data=None):
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj):
        return self._real.unregister(fileobj)

    def modify(self, fileobj, events, data=None):
        return self._real.modify(fileobj, events, data)

    def get_key(self, fileobj):
        return self._real.get_key(fileobj)

    def get_map(self):
        return self._real.get_map()

    def close(self):
        self._real.close()

    def select(self, timeout=None):
        events = self._real.select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            # Nothing scheduled: only a thread could still wake the loop.
            events = self._real.select(self._loop.real_wait)
            if not events:
                raise RuntimeError("VirtualClockLoop: nothing is scheduled and no I/O is pending; "
                                   "the test would wait forever")
            return events
        self._loop._jump(timeout)
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose time() only moves when the loop would otherwise wait."""

    def __init__(self, start: float = 1000.0, limit: float = 30 * 86400.0, real_wait: float = 2.0):
        self._now = float(start)
        self._limit = self._now + limit
        self.real_wait = real_wait
        super().__init__(selector=_VirtualSelector(self))
        self.errors: list[dict] = []
        self._settling: set = set()
        self.set_exception_handler(self._record_error)

    def time(self) -> float:
        return self._now

    def _jump(self, timeout: float) -> None:
        target = self._now + timeout
        if self._scheduled:
            when = self._scheduled[0].when()
            if abs(when - target) < 1e-6:
                target = when  # land exactly on the timer, not an ulp before it
        self._now = max(self._now, target)
        if self._now > self._limit:
            raise RuntimeError(f"VirtualClockLoop: virtual time passed its limit ({self._now:.0f}); "
                               "something waits forever")

    def _record_error(self, loop, context: dict) -> None:
        self.errors.append(context)
        loop.default_exception_handler(context)

    async def create_server(self, protocol_factory, *args, **kwargs):
        """No socket: a stand-in server, so Proxy.start() runs unchanged."""
        return _FakeListener(protocol_factory)

    async def create_unix_server(self, protocol_factory, *args, **kwargs):
        return _FakeListener(protocol_factory)

    async def settle(self, limit: int = 100_000) -> None:
        """Yield until no callback is ready at the current time (but other settling tasks' own steps)."""
        me = asyncio.current_task()
        self._settling.add(me)
        try:
            for _ in range(limit):
                await asyncio.sleep(0)
                if all(getattr(h._callback, "__self__", None) in self._settling for h in self._ready):
                    return
            raise RuntimeError("settle(): callbacks keep scheduling callbacks")
        finally:
            self._settling.discard(me)

    async def advance(self, seconds: float) -> None:
        """Let `seconds` of virtual time pass, running every timer due meanwhile."""
        await asyncio.sleep(seconds)
        await self.settle()


class _FakeListener:
    def __init__(self, protocol_factory):
        self.protocol_factory = protocol_factory
        self.sockets: list = []
        self._serving = True

    def close(self) -> None:
        self._serving = False

    def is_serving(self) -> bool:
        return self._serving

    async def wait_closed(self) -> None:
        return None


def _running() -> VirtualClockLoop:
    loop = asyncio.get_running_loop()
    if not isinstance(loop, VirtualClockLoop):
        raise RuntimeError("not running on a VirtualClockLoop")
    return loop


async def advance(seconds: float) -> None:
    await _running().advance(seconds)


async def settle() -> None:
    await _running().settle()


def run(coro, *, start: float = 1000.0, strict: bool = True):
    """Run `coro` on a new VirtualClockLoop; fail if any callback or task raised unhandled."""
    loop = VirtualClockLoop(start=start)
    asyncio.set_event_loop(loop)
    try:
        result = loop.run_until_complete(coro)
        loop.run_until_complete(loop.settle())
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
    if strict and loop.errors:
        raise AssertionError("unhandled errors on the event loop: "
                             + "; ".join(str(c.get("exception") or c.get("message")) for c in loop.errors))
    return result


def virtual_time(fn):
    """Decorator: an `async def test_...` run by run() (other fixtures still work)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return run(fn(*args, **kwargs))

    return wrapper


# =============================================================================
# Transport
# =============================================================================


class FakeTransport(asyncio.Transport):
    """Records what the protocol writes; the test (or a fake peer) plays the other end.

    Peer side: `feed(data)` delivers bytes (queued while reading is paused),
    `peer_close()` is the peer closing, `stall()`/`drain()` model a peer that
    stops reading (writes pile up; past the high-water mark the protocol gets
    pause_writing), `fill_buffer()`/`drain()` signal pause/resume directly.
    `on_write(data)` and `on_close()` hooks connect a fake peer.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.BaseProtocol | None = None, *,
                 peername: Any = ("127.0.0.1", 50000), name: str = ""):
        super().__init__()
        self.loop = loop
        self.name = name
        self._protocol = protocol
        self._extra = {"peername": peername, "sockname": ("127.0.0.1", 6033)}
        self.writes: list[bytes] = []  # every write() call, in order
        self.closing = False
        self.closed_by_peer = False
        self.reading_paused = False
        self.pause_reading_calls = 0
        self.resume_reading_calls = 0
        self.high_water = 64 * 1024
        self.low_water = 16 * 1024
        self.writing_paused = False  # pause_writing() signalled and not yet resumed
        self._stalled = False
        self._backlog: list[bytes] = []  # written while stalled: not yet seen by the peer
        self._buffered = 0
        self._inbox: deque[bytes] = deque()  # delivered while reading was paused
        self.on_write: Callable[[bytes], None] | None = None
        self.on_close: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"<FakeTransport {self.name}{' closing' if self.closing else ''}>"

    # -- asyncio.Transport -------------------------------------------------------

    def get_extra_info(self, name, default=None):
        return self._extra.get(name, default)

    def set_protocol(self, protocol) -> None:
        self._protocol = protocol

    def get_protocol(self):
        return self._protocol

    def is_closing(self) -> bool:
        return self.closing

    def write(self, data) -> None:
        data = bytes(data)
        if not data:
            return
        self.writes.append(data)
        if self.closing:
            return
        if self._stalled:
            self._backlog.append(data)
            self._buffered += len(data)
            if self._buffered > self.high_water and not self.writing_paused:
                self.writing_paused = True
                self._protocol.pause_writing()
            return
        if self.on_write is not None:
            self.on_write(data)

    def writelines(self, list_of_data) -> None:
        for data in list_of_data:
            self.write(data)

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self._inbox.clear()
        if self.on_close is not None:
            self.on_close()
        if self._protocol is not None:
            self.loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def is_reading(self) -> bool:
        return not self.reading_paused and not self.closing

    def pause_reading(self) -> None:
        self.pause_reading_calls += 1
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.resume_reading_calls += 1
        if not self.reading_paused:
            return
        self.reading_paused = False
        if self._inbox:
            self.loop.call_soon(self._flush_inbox)

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        self.high_water, self.low_water = high, low

    def get_write_buffer_limits(self):
        return self.low_water, self.high_water

    def get_write_buffer_size(self) -> int:
        return self._buffered

    # -- the peer ------------------------------------------------------------------

    @property
    def data(self) -> bytes:
        """Everything written so far."""
        return b"".join(self.writes)

    def feed(self, data: bytes) -> None:
        """The peer sends `data` (delivered now, or when reading resumes)."""
        if self.closing or not data:
            return
        if self.reading_paused or self._inbox:
            self._inbox.append(bytes(data))
            return
        self._protocol.data_received(bytes(data))

    def _flush_inbox(self) -> None:
        while self._inbox and not self.reading_paused and not self.closing:
            self._protocol.data_received(self._inbox.popleft())

    @property
    def pending_input(self) -> int:
        """Bytes the peer sent that wait for reading to resume."""
        return sum(len(d) for d in self._inbox)

    def peer_close(self, exc: Exception | None = None) -> None:
        """The peer closes (EOF), or the connection breaks with `exc`."""
        if self.closing:
            return
        self.closed_by_peer = True
        if exc is None and self._protocol is not None and self._protocol.eof_received():
            return  # the protocol keeps its half open
        self.close()

    def stall(self) -> None:
        """The peer stops reading: writes pile up in the buffer."""
        self._stalled = True

    def fill_buffer(self) -> None:
        """Signal a full write buffer (pause_writing) at once."""
        self._stalled = True
        self._buffered = max(self._buffered, self.high_water + 1)
        if not self.writing_paused:
            self.writing_paused = True
            self._protocol.pause_writing()

    def drain(self) -> None:
        """The peer reads everything buffered; resume_writing if it was paused."""
        self._stalled = False
        backlog, self._backlog = self._backlog, []
        self._buffered = 0
        if self.on_write is not None and not self.closing:
            for data in backlog:
                self.on_write(data)
        if self.writing_paused:
            self.writing_paused = False
            if not self.closing:
                self._protocol.resume_writing()


# =============================================================================
# Packet building helpers
# =============================================================================

T_LONGLONG = 0x08
T_VAR_STRING = 0xFD


def column_def(name: bytes, col_type: int = T_VAR_STRING, charset: int = 45, length: int = 1024) -> bytes:
    return (lenenc_bytes(b"def") + lenenc_bytes(b"") + lenenc_bytes(b"") + lenenc_bytes(b"") + lenenc_bytes(name)
            + lenenc_bytes(b"") + lenenc_int(0x0C) + int2(charset) + int4(length) + int1(col_type) + int2(0)
            + int1(0) + int2(0))


def text_row(values) -> bytes:
    return b"".join(b"\xfb" if v is None else lenenc_bytes(v) for v in values)


def binary_row(values) -> bytes:
    bitmap = bytearray((len(values) + 7 + 2) // 8)
    parts = []
    for i, v in enumerate(values):
        if v is None:
            bitmap[(i + 2) // 8] |= 1 << ((i + 2) % 8)
        else:
            parts.append(lenenc_bytes(v))
    return b"\x00" + bytes(bitmap) + b"".join(parts)


def _as_bytes(v) -> bytes | None:
    if v is None or isinstance(v, bytes):
        return v
    return str(v).encode()


def state_block(entries: list[tuple[int, bytes]]) -> bytes:
    return b"".join(bytes((kind,)) + lenenc_bytes(data) for kind, data in entries)


# =============================================================================
# Scripted replies
# =============================================================================


@dataclass
class Rows:
    """A result set: column names and rows (str/bytes/int/None values)."""

    columns: list
    rows: list = field(default_factory=list)


@dataclass
class Ok:
    affected_rows: int = 0
    last_insert_id: int = 0
    info: bytes = b""
    state_change: bool = False


@dataclass
class Err:
    errno: int = 1064
    message: str = "scripted error"
    sqlstate: str = "42000"


@dataclass
class Command:
    code: int
    arg: bytes
    at: float

    @property
    def name(self) -> str:
        return COMMAND_NAMES.get(self.code, f"0x{self.code:02x}")

    @property
    def sql(self) -> str:
        return self.arg.decode("utf-8", "replace")


def _norm(sql: str) -> str:
    return " ".join(sql.strip().rstrip(";").split()).lower()


class _Script:
    def __init__(self, match, reply, delay: float, times: int | None):
        self.match = match
        self.reply = reply
        self.delay = delay
        self.times = times

    def hits(self, sql: str) -> bool:
        if self.times == 0:
            return False
        if isinstance(self.match, re.Pattern):
            return self.match.search(sql) is not None
        return _norm(sql) == _norm(self.match)


# =============================================================================
# The fake server
# =============================================================================

SERVER_VERSION = "5.5.5-10.11.19-MariaDB"

# id -> (charset, collation, is the charset's default)
COLLATIONS = {45: ("utf8mb4", "utf8mb4_general_ci", True), 8: ("latin1", "latin1_swedish_ci", True),
              224: ("utf8mb4", "utf8mb4_unicode_ci", False)}
_DEFAULT_COLLATION = {b"utf8mb4": b"utf8mb4_general_ci", b"latin1": b"latin1_swedish_ci",
                      b"utf8mb3": b"utf8mb3_general_ci", b"utf8": b"utf8mb3_general_ci", b"binary": b"binary",
                      b"ascii": b"ascii_general_ci"}
_COLLATION_CHARSET = {b"utf8mb4_general_ci": b"utf8mb4", b"utf8mb4_unicode_ci": b"utf8mb4",
                      b"utf8mb4_bin": b"utf8mb4", b"latin1_swedish_ci": b"latin1", b"latin1_general_ci": b"latin1",
                      b"latin1_bin": b"latin1", b"utf8mb3_general_ci": b"utf8mb3", b"binary": b"binary",
                      b"ascii_general_ci": b"ascii"}

# The server's global values: what a fresh session (or a reset one) starts with.
GLOBALS: dict[bytes, bytes] = {
    b"autocommit": b"ON",
    b"character_set_client": b"utf8mb4",
    b"character_set_connection": b"utf8mb4",
    b"character_set_results": b"utf8mb4",
    b"collation_connection": b"utf8mb4_general_ci",
    b"sql_mode": b"STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION",
    b"time_zone": b"SYSTEM",
    b"wait_timeout": b"28800",
    b"interactive_timeout": b"28800",
    b"net_write_timeout": b"60",
    b"transaction_isolation": b"REPEATABLE-READ",
    b"tx_isolation": b"REPEATABLE-READ",
    b"max_statement_time": b"0.000000",
    b"sql_select_limit": b"18446744073709551615",
    b"foreign_key_checks": b"ON",
    b"unique_checks": b"ON",
    b"group_concat_max_len": b"1048576",
    b"lc_time_names": b"en_US",
    b"div_precision_increment": b"4",
    b"session_track_system_variables":
        b"autocommit,character_set_client,character_set_connection,character_set_results,redirect_url,time_zone",
    b"session_track_schema": b"ON",
    b"session_track_state_change": b"OFF",
    b"session_track_transaction_info": b"OFF",
    b"session_track_gtids": b"OFF",
}
_BOOLEAN_VARS = {b"autocommit", b"foreign_key_checks", b"unique_checks", b"session_track_schema",
                 b"session_track_state_change"}
# What the proxy's SETUP_SQL leaves on every backend it opens.
# The globals the proxy's setup query reads (backend_adapter.SERVER_GLOBALS), as a MariaDB 10.11 has them.
SERVER_GLOBALS = {
    b"session_track_system_variables": b"autocommit,character_set_client,character_set_connection,"
                                       b"character_set_results,time_zone",
    b"session_track_schema": b"1", b"session_track_state_change": b"0", b"session_track_transaction_info": b"OFF",
    b"max_allowed_packet": b"16777216", b"max_prepared_stmt_count": b"16382", b"net_write_timeout": b"60",
}

SETUP_TRACKERS = {b"session_track_system_variables": b"*", b"session_track_schema": b"ON",
                  b"session_track_state_change": b"ON", b"session_track_transaction_info": b"CHARACTERISTICS"}

_TOKEN = re.compile(r"""
     (?P<ws>\s+)
    |(?P<comment>/\*.*?\*/|--[ \t][^\n]*|\#[^\n]*)
    |(?P<hex>[xX]'[0-9a-fA-F]*')
    |(?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
    |(?P<qid>`(?:[^`]|``)*`)
    |(?P<sysvar>@@(?:(?:session|local|global)\.)?(?:`[^`]+`|[A-Za-z_][\w$]*))
    |(?P<uvar>@(?:`(?:[^`]|``)*`|[\w$.]+))
    |(?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    |(?P<word>[A-Za-z_$][\w$]*)
    |(?P<op>:=|<=|>=|<>|!=|.)
""", re.X | re.S | re.I)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "Z": "\x1a", "b": "\b"}


@dataclass
class _Tok:
    kind: str
    value: Any
    start: int
    end: int

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.value in words

    def is_op(self, op: str) -> bool:
        return self.kind == "op" and self.value == op


def _tokenize(sql: str) -> list[_Tok]:
    out = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup
        text = m.group()
        if kind in ("ws", "comment"):
            continue
        if kind == "hex":
            value: Any = bytes.fromhex(text[2:-1])
        elif kind == "str":
            q = text[0]
            body = text[1:-1].replace(q + q, q)
            value = re.sub(r"\\(.)", lambda x: _ESCAPES.get(x.group(1), x.group(1)), body).encode("latin-1")
        elif kind == "qid":
            value = text[1:-1].replace("``", "`").lower()
        elif kind == "sysvar":
            name = text[2:].lower()
            scope = "session"
            if "." in name:
                scope, name = name.split(".", 1)
                scope = "global" if scope == "global" else "session"
            value = (scope, name.strip("`"))
        elif kind == "uvar":
            value = text[1:].strip("`").lower()
        elif kind == "word":
            value = text.lower()
        else:
            value = text
        out.append(_Tok(kind, value, m.start(), m.end()))
    return out


def _split_top(tokens: list[_Tok], sep: str) -> list[list[_Tok]]:
    parts, cur, depth = [], [], 0
    for t in tokens:
        if t.is_op("("):
            depth += 1
        elif t.is_op(")"):
            depth -= 1
        if t.is_op(sep) and depth == 0:
            parts.append(cur)
            cur = []
        else:
            cur.append(t)
    parts.append(cur)
    return parts


class _SqlError(Exception):
    def __init__(self, errno: int, message: str, sqlstate: str = "HY000"):
        super().__init__(message)
        self.errno, self.message, self.sqlstate = errno, message, sqlstate


@dataclass
class _Stmt:
    sql: str
    columns: list[bytes]
    params: int
    cursor_rows: list | None = None


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
        self._scripts: list[_Script] = []
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
        self._scripts.insert(0, _Script(match, reply, delay, times))

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
            self._command(pkt.payload)

    def _command(self, payload: bytes) -> None:
        code, arg = payload[0], payload[1:]
        self.commands.append(Command(code, arg, self.loop.time()))
        delay = 0.0
        if code == COMMAND.COM_QUERY:
            packets, delay = self._query(arg.decode("latin-1"))
        elif code == COMMAND.COM_PING:
            packets = [self._ok()]
        elif code == COMMAND.COM_INIT_DB:
            packets = self._init_db(arg)
        elif code == COMMAND.COM_SET_OPTION:
            option = int.from_bytes(arg[:2], "little")
            self.multi_statements = option == 0
            packets = [make_eof(self.status)]
        elif code == COM_RESET_CONNECTION:
            self._reset()
            packets = [self._ok()]
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
        elif code == COMMAND.COM_STMT_FETCH:
            packets = self._fetch(arg)
        elif code == COMMAND.COM_STMT_RESET:
            stmt = self.statements.get(int.from_bytes(arg[:4], "little"))
            if stmt is None:
                packets = [make_err(1243, "HY000", "Unknown prepared statement handler given to mysqld_stmt_reset")]
            else:
                stmt.cursor_rows = None
                packets = [self._ok()]
        elif code in (COMMAND.COM_STMT_CLOSE, COMMAND.COM_STMT_SEND_LONG_DATA):
            if code == COMMAND.COM_STMT_CLOSE:
                self.statements.pop(int.from_bytes(arg[:4], "little"), None)
            return  # no reply
        elif code == COMMAND.COM_STATISTICS:
            packets = [b"Uptime: 100  Threads: 1  Questions: 1  Slow queries: 0  Opens: 1  Open tables: 1"]
        else:
            packets = [make_err(1047, "08S01", "Unknown command")]
        self._emit(b"".join(encode_packet(p, i + 1) for i, p in enumerate(packets)), delay)

    # -- packets -------------------------------------------------------------------

    def _ok(self, affected: int = 0, insert_id: int = 0, *, more: bool = False, info: bytes = b"",
            changes: list[tuple[int, bytes]] | None = None) -> bytes:
        status = self.status | (MORE_RESULTS if more else 0)
        block = state_block(changes) if changes else None
        return make_ok(CLIENT.PROTOCOL_41 | CLIENT.SESSION_TRACK, status, affected, insert_id, info=info,
                       session_state=block)

    def _result_set(self, columns: list[bytes], rows: list, *, more: bool = False, binary: bool = False) -> list[bytes]:
        status = self.status | (MORE_RESULTS if more else 0)
        packets = [lenenc_int(len(columns))]
        packets += [column_def(c) for c in columns]
        packets.append(make_eof(status))
        packets += [(binary_row if binary else text_row)([_as_bytes(v) for v in row]) for row in rows]
        packets.append(make_eof(status))
        return packets

    # -- tracked changes -------------------------------------------------------------

    def _tracked(self, changes: dict) -> list[tuple[int, bytes]]:
        """Session-state entries for what one statement changed, as the trackers in force report it."""
        v = self.variables
        entries: list[tuple[int, bytes]] = []
        tracked = v.get(b"session_track_system_variables") or b""
        names = set(tracked.split(b","))
        for name, value in changes.get("vars", {}).items():
            if value is not None and (tracked == b"*" or name in names):
                entries.append((SESSION_TRACK.SYSTEM_VARIABLES, lenenc_bytes(name) + lenenc_bytes(value)))
        if "schema" in changes and v.get(b"session_track_schema") == b"ON":
            entries.append((SESSION_TRACK.SCHEMA, lenenc_bytes(changes["schema"])))
        trx = v.get(b"session_track_transaction_info") or b"OFF"
        if trx != b"OFF":
            if "trx_state" in changes:
                entries.append((SESSION_TRACK.TRANSACTION_STATE, lenenc_bytes(changes["trx_state"])))
            if trx == b"CHARACTERISTICS" and "trx_chars" in changes:
                entries.append((SESSION_TRACK.TRANSACTION_CHARACTERISTICS, lenenc_bytes(changes["trx_chars"])))
        if changes.get("state_change") and v.get(b"session_track_state_change") == b"ON":
            entries.append((SESSION_TRACK.STATE_CHANGE, b"1"))
        return entries

    def _begin(self, changes: dict, explicit: bool) -> None:
        if not self.in_trans:
            self.in_trans = True
            changes["trx_state"] = (b"T" if explicit else b"I") + b"_______"

    def _end_trx(self, changes: dict) -> None:
        self.savepoints.clear()
        if self.in_trans:
            self.in_trans = False
            changes["trx_state"] = b"________"
        if self.trx_characteristics:
            self.trx_characteristics = b""
            changes["trx_chars"] = b""

    def _set_var(self, name: bytes, value: bytes | None, changes: dict) -> None:
        if name not in GLOBALS:
            raise _SqlError(1193, f"Unknown system variable '{name.decode()}'")
        if name in _BOOLEAN_VARS and value is not None:
            flag = value.upper()
            if flag not in (b"0", b"1", b"ON", b"OFF", b"TRUE", b"FALSE"):
                raise _SqlError(1231, f"Variable '{name.decode()}' can't be set to the value of '{value.decode()}'")
            value = b"ON" if flag in (b"1", b"ON", b"TRUE") else b"OFF"
        if name == b"autocommit" and value == b"ON" and self.variables[b"autocommit"] == b"OFF":
            self._end_trx(changes)  # turning autocommit on commits
        self.variables[name] = value
        changes.setdefault("vars", {})[name] = value
        changes["state_change"] = True
        if name == b"character_set_connection" and value is not None:
            coll = _DEFAULT_COLLATION.get(value.lower(), value + b"_general_ci")
            self.variables[b"collation_connection"] = coll
            changes["vars"][b"collation_connection"] = coll
        elif name == b"collation_connection" and value is not None:
            cs = _COLLATION_CHARSET.get(value.lower(), value.split(b"_")[0])
            self.variables[b"character_set_connection"] = cs
            changes["vars"][b"character_set_connection"] = cs

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

    # -- COM_INIT_DB -------------------------------------------------------------------

    def _init_db(self, name: bytes) -> list[bytes]:
        if self.schemas is not None and name.decode() not in self.schemas:
            return [make_err(1049, "42000", f"Unknown database '{name.decode()}'")]
        self.schema = name
        return [self._ok(changes=self._tracked({"schema": name, "state_change": True}))]

    # -- COM_QUERY --------------------------------------------------------------------

    def _query(self, sql: str) -> tuple[list[bytes], float]:
        tokens = _tokenize(sql)
        statements = [s for s in _split_top(tokens, ";") if s]
        if not statements:
            return [make_err(1065, "42000", "Query was empty")], 0.0
        if len(statements) > 1 and not self.multi_statements:
            return [make_err(1064, "42000", "You have an error in your SQL syntax (multi-statements are off)")], 0.0
        packets: list[bytes] = []
        delay = 0.0
        for i, stmt in enumerate(statements):
            more = i < len(statements) - 1
            text = sql[stmt[0].start:stmt[-1].end]
            try:
                out, d = self._statement(text, stmt, more)
            except _SqlError as e:
                packets.append(make_err(e.errno, e.sqlstate, e.message))
                break
            packets += out
            delay += d
        return packets, delay

    def _statement(self, text: str, toks: list[_Tok], more: bool) -> tuple[list[bytes], float]:
        for script in self._scripts:
            if script.hits(text):
                if script.times is not None:
                    script.times -= 1
                return self._scripted(script.reply, text, more), script.delay
        changes: dict = {}
        first = toks[0].value if toks[0].kind == "word" else ""
        second = toks[1].value if len(toks) > 1 and toks[1].kind == "word" else ""
        if first == "select":
            return self._select(text, toks, more)
        if first in ("begin", "start") and (first == "begin" or second == "transaction"):
            if self.in_trans:
                self._end_trx(changes)  # an implicit commit
            self._begin(changes, explicit=True)
            if self.trx_characteristics:
                changes["trx_chars"] = self.trx_characteristics
        elif first in ("commit", "rollback") and not any(t.is_word("to") for t in toks):
            self._end_trx(changes)
        elif first in ("savepoint", "rollback", "release"):
            # MariaDB: a savepoint lives while a transaction is open, or with autocommit off (even
            # before any table: no IN_TRANS then); ROLLBACK TO / RELEASE of an unknown one is 1305.
            name = str(toks[-1].value).lower()
            if first == "savepoint":
                if self.in_trans or not self.autocommit:
                    self.savepoints.add(name)
            elif name not in self.savepoints:
                raise _SqlError(1305, f"SAVEPOINT {toks[-1].value} does not exist", "42000")
            elif first == "release":
                self.savepoints.discard(name)
        elif first == "set":
            self._set(toks[1:], changes)
        elif first == "use" and len(toks) > 1:
            name = str(toks[1].value).encode()
            if self.schemas is not None and name.decode() not in self.schemas:
                raise _SqlError(1049, f"Unknown database '{name.decode()}'", "42000")
            self.schema = name
            changes["schema"] = name
            changes["state_change"] = True
        elif first == "create" and any(t.is_word("temporary") for t in toks[:3]):
            i = next(i for i, t in enumerate(toks) if t.is_word("table")) + 1
            while toks[i].is_word("if", "not", "exists"):
                i += 1
            self.temp_tables.add(str(toks[i].value))
            changes["state_change"] = True
        elif first == "drop" and any(t.is_word("table", "tables") for t in toks[:3]):
            names = [str(t.value) for t in toks if t.kind in ("word", "qid")
                     and not t.is_word("drop", "temporary", "table", "tables", "if", "exists")]
            dropped = self.temp_tables & set(names)
            if dropped:
                self.temp_tables -= dropped
                changes["state_change"] = True
        elif first in ("prepare", "deallocate") or (first == "drop" and second == "prepare"):
            changes["state_change"] = True
        elif first == "xa" and second in ("start", "begin"):
            self._begin(changes, explicit=True)
        elif first == "xa" and second in ("commit", "rollback"):
            self._end_trx(changes)
        elif first not in _PLAIN_STATEMENTS:
            raise _SqlError(1064, f"You have an error in your SQL syntax near '{text[:40]}' "
                            "(fake server: script it with on())", "42000")
        else:
            if not self.autocommit and first not in ("lock", "unlock", "do"):
                self._begin(changes, explicit=False)  # the statement touched a table
            affected = 1 if first in ("insert", "update", "delete", "replace") else 0
            return [self._ok(affected, more=more, changes=self._tracked(changes))], 0.0
        return [self._ok(more=more, changes=self._tracked(changes))], 0.0

    def _scripted(self, reply, sql: str, more: bool) -> list[bytes]:
        if callable(reply) and not isinstance(reply, (Rows, Ok, Err)):
            reply = reply(self, sql)
        if isinstance(reply, Err):
            raise _SqlError(reply.errno, reply.message, reply.sqlstate)
        if isinstance(reply, Rows):
            return self._result_set([_as_bytes(c) for c in reply.columns], reply.rows, more=more)
        if isinstance(reply, Ok):
            changes = {"state_change": True} if reply.state_change else {}
            return [self._ok(reply.affected_rows, reply.last_insert_id, more=more, info=reply.info,
                             changes=self._tracked(changes))]
        raise TypeError(f"cannot reply with {reply!r}")

    # -- SET --------------------------------------------------------------------------

    def _set(self, toks: list[_Tok], changes: dict) -> None:
        if toks and toks[0].is_word("global"):
            return  # global values are not session state
        if toks and toks[0].is_word("session", "local") and len(toks) > 1 and toks[1].is_word("transaction"):
            toks = toks[1:]
        if toks and toks[0].is_word("transaction"):
            words = " ".join(str(t.value).upper() for t in toks[1:])
            self.trx_characteristics = f"SET TRANSACTION {words};".encode()
            changes["trx_chars"] = self.trx_characteristics
            return
        scope = "session"
        for part in _split_top(toks, ","):
            if part and part[0].is_word("names"):  # SET NAMES cs [COLLATE coll], other = value, ...
                self._set_names(part, changes)
                continue
            if part and part[0].is_word("session", "local", "global"):
                scope = "global" if part[0].value == "global" else "session"
                part = part[1:]
            eq = next((i for i, t in enumerate(part) if t.is_op("=") or t.is_op(":=")), None)
            if eq != 1:
                raise _SqlError(1064, "You have an error in your SQL syntax (fake server: unsupported SET)", "42000")
            target, value = part[0], self._value(part[2:])
            if target.kind == "uvar":
                self.user_vars[target.value] = value
                changes["state_change"] = True
                continue
            if target.kind == "sysvar":
                var_scope, name = target.value
            elif target.kind in ("word", "qid"):
                var_scope, name = scope, target.value
            else:
                raise _SqlError(1064, "You have an error in your SQL syntax", "42000")
            if var_scope == "global":
                continue
            bname = name.encode()
            if value is _DEFAULT:
                value = GLOBALS.get(bname)
            self._set_var(bname, value, changes)

    def _set_names(self, toks: list[_Tok], changes: dict) -> None:
        cs = str(toks[1].value).encode() if toks[1].kind != "str" else toks[1].value
        for name in (b"character_set_client", b"character_set_results", b"character_set_connection"):
            self._set_var(name, cs.lower(), changes)
        if len(toks) > 3 and toks[2].is_word("collate"):
            coll = toks[3].value if toks[3].kind == "str" else str(toks[3].value).encode()
            self._set_var(b"collation_connection", coll.lower(), changes)

    def _value(self, toks: list[_Tok]):
        if len(toks) == 2 and toks[0].is_op("-") and toks[1].kind == "num":
            return b"-" + toks[1].value.encode()
        if (len(toks) in (2, 4) and toks[0].kind == "word" and toks[0].value.startswith("_")
                and toks[1].kind in ("hex", "str") and (len(toks) == 2 or toks[2].is_word("collate"))):
            return toks[1].value  # a character set introducer: _utf8mb4 X'31' [COLLATE c]
        if len(toks) != 1:
            raise _SqlError(1064, "You have an error in your SQL syntax (fake server: expressions unsupported)",
                            "42000")
        t = toks[0]
        if t.kind in ("str", "hex"):
            return t.value
        if t.kind == "num":
            return t.value.encode()
        if t.kind == "sysvar":
            return self.variables.get(t.value[1].encode())
        if t.kind == "uvar":
            return self.user_vars.get(t.value)
        if t.kind in ("word", "qid"):
            if t.kind == "word" and t.value == "null":
                return None
            if t.kind == "word" and t.value == "default":
                return _DEFAULT
            return str(t.value).encode()
        raise _SqlError(1064, "You have an error in your SQL syntax", "42000")

    # -- SELECT -------------------------------------------------------------------------

    def _select(self, text: str, toks: list[_Tok], more: bool) -> tuple[list[bytes], float]:
        body = toks[1:]
        into = next((i for i, t in enumerate(body) if t.is_word("into")), None)
        targets = []
        if into is not None:
            targets = [t.value for t in body[into + 1:] if t.kind == "uvar"]
            body = body[:into]
        if any(t.is_word("from") and not (i + 1 < len(body) and body[i + 1].is_word("dual"))
               for i, t in enumerate(body)):
            raise _SqlError(1146, "Table doesn't exist (fake server: script SELECT ... FROM with on())", "42S02")
        changes: dict = {}
        if not self.autocommit:
            self._begin(changes, explicit=False)
        columns, row, delay = [], [], 0.0
        for item in _split_top(body, ","):
            if not item:
                raise _SqlError(1064, "You have an error in your SQL syntax", "42000")
            name = text[item[0].start:item[-1].end].encode("latin-1")
            if len(item) >= 3 and item[-2].is_word("as"):
                name = str(item[-1].value).encode()
                item = item[:-2]
            value, d = self._eval(item, changes)
            delay += d
            columns.append(name)
            row.append(value)
        if targets:
            for target, value in zip(targets, row):
                self.user_vars[target] = value
            changes["state_change"] = True
            return [self._ok(1, more=more, changes=self._tracked(changes))], delay
        return self._result_set(columns, [row], more=more), delay

    def _eval(self, item: list[_Tok], changes: dict) -> tuple[bytes | None, float]:
        if len(item) >= 3 and item[0].kind == "uvar" and item[1].is_op(":="):
            value, d = self._eval(item[2:], changes)
            self.user_vars[item[0].value] = value
            return value, d
        if len(item) >= 3 and item[0].kind == "word" and item[1].is_op("(") and item[-1].is_op(")"):
            args = [self._value(a) if a else None for a in _split_top(item[2:-1], ",")] if len(item) > 3 else []
            return self._function(item[0].value, args)
        if len(item) == 1 and item[0].kind == "sysvar":
            scope, name = item[0].value
            bname = name.encode()
            if bname not in GLOBALS:
                raise _SqlError(1193, f"Unknown system variable '{name}'")
            return (GLOBALS[bname] if scope == "global" else self.variables.get(bname)), 0.0
        if len(item) == 1 and item[0].is_op("?"):
            return None, 0.0
        return self._value(item), 0.0

    def _function(self, name: str, args: list) -> tuple[bytes | None, float]:
        if name == "connection_id":
            return str(self.thread_id).encode(), 0.0
        if name in ("database", "schema"):
            return self.schema, 0.0
        if name == "version":
            return self.version.removeprefix("5.5.5-").encode(), 0.0
        if name == "sleep":
            return b"0", float(args[0] or 0)
        if name == "get_lock":
            self.locks.add(args[0])
            return b"1", 0.0
        if name == "release_lock":
            held = args[0] in self.locks
            self.locks.discard(args[0])
            return (b"1" if held else None), 0.0
        if name == "release_all_locks":
            n = len(self.locks)
            self.locks.clear()
            return str(n).encode(), 0.0
        if name == "last_insert_id":
            return b"0", 0.0
        # For the proxy's read-back of user variables (capture.py): the fake's user
        # variables are byte strings in utf8mb4 (or NULL).
        if name == "hex":
            return (None if args[0] is None else args[0].hex().upper().encode()), 0.0
        if name == "charset":
            return (None if args[0] is None else b"utf8mb4"), 0.0
        if name == "collation":
            return (None if args[0] is None else b"utf8mb4_general_ci"), 0.0
        raise _SqlError(1305, f"FUNCTION {name} does not exist (fake server)", "42000")

    # -- prepared statements ---------------------------------------------------------------

    def _statement_shape(self, sql: str) -> tuple[list[bytes], int]:
        toks = _tokenize(sql)
        params = sum(1 for t in toks if t.is_op("?"))
        for script in self._scripts:
            if script.hits(sql) and isinstance(script.reply, Rows):
                return [_as_bytes(c) for c in script.reply.columns], params
        if toks and toks[0].is_word("select"):
            body = toks[1:]
            into = next((i for i, t in enumerate(body) if t.is_word("from", "into")), len(body))
            return [sql[p[0].start:p[-1].end].encode("latin-1") for p in _split_top(body[:into], ",") if p], params
        return [], params

    def _prepare(self, sql: str) -> list[bytes]:
        for script in self._scripts:
            if script.hits(sql) and isinstance(script.reply, Err):
                e = script.reply
                return [make_err(e.errno, e.sqlstate, e.message)]
        columns, params = self._statement_shape(sql)
        stmt_id = next(self._stmt_ids)
        self.statements[stmt_id] = _Stmt(sql, columns, params)
        packets = [b"\x00" + int4(stmt_id) + int2(len(columns)) + int2(params) + b"\x00" + int2(0)]
        if params:
            packets += [column_def(b"?") for _ in range(params)] + [make_eof(self.status)]
        if columns:
            packets += [column_def(c) for c in columns] + [make_eof(self.status)]
        return packets

    def _execute(self, arg: bytes) -> list[bytes]:
        stmt = self.statements.get(int.from_bytes(arg[:4], "little"))
        if stmt is None:
            return [make_err(1243, "HY000", "Unknown prepared statement handler given to mysqld_stmt_execute")]
        cursor = bool(arg[4] & 1) if len(arg) > 4 else False
        try:
            packets, _ = self._query(stmt.sql)
        except _SqlError as e:
            return [make_err(e.errno, e.sqlstate, e.message)]
        if not stmt.columns or packets[0][0] in (0x00, 0xFF):
            return packets
        rows = self._rows_of(packets, len(stmt.columns))
        if cursor:
            stmt.cursor_rows = rows
            return ([lenenc_int(len(stmt.columns))] + [column_def(c) for c in stmt.columns]
                    + [make_eof(self.status | CURSOR_EXISTS)])
        return self._result_set(stmt.columns, rows, binary=True)

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


_DEFAULT = object()
# Statements the fake answers with a plain OK (and no other effect than the trackers').
_PLAIN_STATEMENTS = frozenset((
    "insert", "update", "delete", "replace", "create", "drop", "alter", "truncate", "rename", "lock", "unlock",
    "handler", "do", "flush", "grant", "revoke", "analyze", "optimize", "call", "savepoint", "release", "rollback",
    "load", "backup", "xa", "checksum",
))


# =============================================================================
# The opener
# =============================================================================

# What MariaDB 10.11 announces (CLIENT_MYSQL, bit 0, clear; no TLS configured).
SERVER_CAPABILITIES = (
    CLIENT.FOUND_ROWS | CLIENT.LONG_FLAG | CLIENT.CONNECT_WITH_DB | CLIENT.NO_SCHEMA | CLIENT.COMPRESS | CLIENT.ODBC
    | CLIENT.LOCAL_FILES | CLIENT.IGNORE_SPACE | CLIENT.PROTOCOL_41 | CLIENT.INTERACTIVE | CLIENT.IGNORE_SIGPIPE
    | CLIENT.TRANSACTIONS | CLIENT.SECURE_CONNECTION | CLIENT.MULTI_STATEMENTS | CLIENT.MULTI_RESULTS
    | CLIENT.PS_MULTI_RESULTS | CLIENT.PLUGIN_AUTH | CLIENT.CONNECT_ATTRS | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT.SESSION_TRACK | CLIENT.DEPRECATE_EOF
)


@dataclass
class Attempt:
    at: float
    params: Any
    want_collations: bool
    ok: bool = False


class FakeOpener:
    """An opener for Pool/Proxy: each successful call is a new FakeMySQLServer.

    `fail_next(n)` makes the next n attempts raise 2003; `go_down()` /
    `come_up()` fail every attempt in between; `delay` is the virtual time an
    attempt takes (past the params' connect_timeout it times out, as the real
    opener does). Server options (latency, chunk_size, auto, schemas) apply to
    every new server, and so do scripts given to `on()` / `fail()`.
    """

    def __init__(self, *, delay: float = 0.0, fail_times: int = 0, wait_timeout: float = 28800.0,
                 max_connections: int = 151, **server_options):
        self.delay = delay
        self.wait_timeout = wait_timeout
        self.max_connections = max_connections
        self.server_options = server_options
        self.servers: list[FakeMySQLServer] = []
        self.attempts: list[Attempt] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.peak_open = 0  # most servers open (or being opened) at once
        self._fail = fail_times
        self._down = False
        self._error: tuple[int, str] | None = None
        self._scripts: list[tuple[tuple, dict]] = []
        self._thread_ids = itertools.count(100)
        self.configure: Callable[[FakeMySQLServer], None] | None = None

    def fail_next(self, n: int, error: tuple[int, str] | None = None) -> None:
        self._fail = n
        self._error = error

    def go_down(self, error: tuple[int, str] | None = None) -> None:
        self._down = True
        self._error = error

    def come_up(self) -> None:
        self._down = False
        self._fail = 0

    def on(self, *args, **kwargs) -> None:
        self._scripts.append((("on",) + args, kwargs))
        for s in self.servers:
            s.on(*args, **kwargs)

    def fail(self, *args, **kwargs) -> None:
        self._scripts.append((("fail",) + args, kwargs))
        for s in self.servers:
            s.fail(*args, **kwargs)

    @property
    def alive(self) -> list[FakeMySQLServer]:
        return [s for s in self.servers if not s.closed]

    @property
    def failures(self) -> int:
        return sum(1 for a in self.attempts if not a.ok)

    async def __call__(self, params, *, want_collations: bool = False) -> Opened:
        loop = asyncio.get_running_loop()
        attempt = Attempt(loop.time(), params, want_collations)
        self.attempts.append(attempt)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.peak_open = max(self.peak_open, self.in_flight + len(self.alive))
        try:
            timeout = getattr(params, "connect_timeout", None) or 5.0
            if self.delay:
                await asyncio.sleep(min(self.delay, timeout))
                if self.delay > timeout:
                    raise asyncio.TimeoutError()
            if self._down or self._fail > 0:
                self._fail = max(0, self._fail - 1)
                errno, message = self._error or (
                    2003, f"Can't connect to MySQL server on '{getattr(params, 'host', '?')}' (111)")
                raise pymysql.err.OperationalError(errno, message)
        finally:
            self.in_flight -= 1
        attempt.ok = True
        transport = FakeTransport(loop, name=f"backend#{len(self.servers)}", peername=("127.0.0.1", 3306))
        server = FakeMySQLServer(loop, transport, thread_id=next(self._thread_ids), params=params,
                                 **self.server_options)
        for (kind, *args), kwargs in self._scripts:
            getattr(server, kind)(*args, **kwargs)
        if self.configure is not None:
            self.configure(server)
        self.servers.append(server)
        v = server.variables
        return Opened(
            transport=transport, stream_owner=None, thread_id=server.thread_id, server_version=server.version,
            server_capabilities=SERVER_CAPABILITIES, status=AUTOCOMMIT, wait_timeout=self.wait_timeout,
            max_user_connections=0, max_connections=self.max_connections,
            charset_vars={k: v[k] for k in (b"character_set_client", b"character_set_connection",
                                            b"character_set_results", b"collation_connection")},
            collations=dict(COLLATIONS) if want_collations else None,
            server_globals=dict(SERVER_GLOBALS),
        )

    def server_for(self, backend) -> FakeMySQLServer:
        """The fake server behind a BackendConnection."""
        return next(s for s in self.servers if s.transport is backend.transport)


def fake_opener(**options) -> FakeOpener:
    return FakeOpener(**options)


# =============================================================================
# A proxy on the fakes
# =============================================================================


def proxy_config(*, users=None, **sections):
    """A Config built directly: `pool={"max_size": 2}`, `backend={...}`, `proxy={...}`."""
    from mysqlpool_proxy.config import BackendConfig, Config, PoolConfig, ProxyConfig, UserConfig
    classes = {"proxy": ProxyConfig, "backend": BackendConfig, "pool": PoolConfig}
    kwargs = {name: classes[name](**values) for name, values in sections.items()}
    users = users or (UserConfig(name="app", password="pw"),)
    return Config(users=tuple(users), **kwargs)


async def start_proxy(opener: FakeOpener | None = None, *, users=None, **sections):
    """A started Proxy (no listening socket) whose backends come from `opener`; the server is known."""
    from mysqlpool_proxy.proxy import Proxy
    proxy = Proxy(proxy_config(users=users, **sections), asyncio.get_running_loop(), opener=opener or fake_opener())
    await proxy.start()
    await proxy.server_known.wait()
    await settle()
    return proxy


# =============================================================================
# The client
# =============================================================================


class ConnectionClosed(Exception):
    """The proxy closed the client's connection."""


@dataclass
class Result:
    """One result of a response: an OK, an ERR, a result set, or a bare EOF."""

    kind: str  # "ok" | "error" | "rows" | "cursor" | "eof" | "prepared" | "string"
    status: int = 0
    ok: OkPacket | None = None
    error: ErrPacket | None = None
    eof: EofPacket | None = None
    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    stmt_id: int = 0
    params: int = 0
    data: bytes = b""


@dataclass
class Response:
    results: list[Result]
    raw: bytes  # the response's bytes as received (headers included)

    @property
    def last(self) -> Result:
        return self.results[-1]

    @property
    def error(self) -> ErrPacket | None:
        return self.last.error

    @property
    def ok(self) -> OkPacket | None:
        return self.last.ok

    @property
    def status(self) -> int:
        return self.last.status

    @property
    def rows(self) -> list[tuple]:
        return next(r.rows for r in self.results if r.kind in ("rows", "eof", "cursor"))

    @property
    def columns(self) -> list[str]:
        return next(r.columns for r in self.results if r.kind in ("rows", "cursor"))

    @property
    def value(self):
        """The single value of a one-row, one-column result."""
        (row,) = self.rows
        (v,) = row
        return v

    def expect_ok(self) -> Response:
        if self.error is not None:
            raise AssertionError(f"expected success, got ERR {self.error.errno}: {self.error.message!r}")
        return self


# As PyMySQL asks (no PS_MULTI_RESULTS, which is part of the pool key: such a client shares the
# backends the proxy opens at start, which have the key 0).
DEFAULT_CLIENT_CAPS = (
    CLIENT.LONG_PASSWORD | CLIENT.LONG_FLAG | CLIENT.PROTOCOL_41 | CLIENT.TRANSACTIONS | CLIENT.SECURE_CONNECTION
    | CLIENT.MULTI_STATEMENTS | CLIENT.MULTI_RESULTS | CLIENT.PLUGIN_AUTH
    | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT.SESSION_TRACK
)


class FakeClient:
    """A MySQL client talking to one ClientConnection of `proxy` over a FakeTransport.

    `await FakeClient(proxy).connect()` handshakes; `await c.query(sql)`
    returns a parsed Response; `send_query()` + `await c.response()` split the
    two for in-flight tests. Reads wait in virtual time (`timeout`).
    """

    def __init__(self, proxy, *, user: str = "app", password: str = "pw", database: str | None = None,
                 session_track: bool = True, capabilities: int | None = None, charset: int = 45,
                 peer: tuple = ("10.0.0.7", 40001), timeout: float = 60.0):
        self.proxy = proxy
        self.loop = proxy.loop
        self.user, self.password, self.database = user, password, database
        caps = DEFAULT_CLIENT_CAPS if capabilities is None else capabilities
        if not session_track:
            caps &= ~CLIENT.SESSION_TRACK
        if database:
            caps |= CLIENT.CONNECT_WITH_DB
        self.wanted = caps
        self.capabilities = caps
        self.charset = charset
        self.timeout = timeout
        self.conn = proxy.new_client()
        self.transport = FakeTransport(self.loop, self.conn, peername=peer, name=f"client#{self.conn.id}")
        self.transport.on_write = self._on_write
        self.transport.on_close = self._wake
        self._decoder = PacketDecoder()
        self._arrived = asyncio.Event()
        self._binary_next = False
        self.greeting = None
        self.status = 0

    # -- bytes ----------------------------------------------------------------------

    def _on_write(self, data: bytes) -> None:
        self._decoder.feed(data)
        self._arrived.set()

    def _wake(self) -> None:
        self._arrived.set()

    @property
    def closed(self) -> bool:
        return self.transport.is_closing()

    async def packet(self, timeout: float | None = None):
        """The next packet from the proxy (a framing Packet)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = self.loop.time() + timeout
        while True:
            pkt = self._decoder.next_packet()
            if pkt is not None:
                return pkt
            if self.closed:
                raise ConnectionClosed("the proxy closed the connection")
            self._arrived.clear()
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                raise asyncio.TimeoutError(f"no reply from the proxy within {timeout}s (virtual)")
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                raise asyncio.TimeoutError(f"no reply from the proxy within {timeout}s (virtual)") from None

    def has_pending_bytes(self) -> bool:
        return self._decoder.buffered > 0

    # -- connection phase ---------------------------------------------------------------

    async def connect(self) -> FakeClient:
        await self.open()
        return await self.log_in()

    async def open(self) -> FakeClient:
        """Connect and read the greeting (OperationalError: an ERR came instead)."""
        self.conn.connection_made(self.transport)
        pkt = await self.packet()
        if pkt.payload[:1] == b"\xff":
            err = parse_err(pkt.payload)
            raise pymysql.err.OperationalError(err.errno, err.message.decode())
        self.greeting = parse_handshake_v10(pkt.payload)
        return self

    async def log_in(self) -> FakeClient:
        """Answer the greeting, and read the outcome (OperationalError: the login was refused)."""
        g = self.greeting
        caps = self.wanted & (g.capabilities | CLIENT.LONG_PASSWORD)
        self.capabilities = caps
        token = auth.client_scramble_native(self.password.encode(), g.scramble) if self.password else b""
        payload = int4(caps) + int4(1 << 24) + int1(self.charset) + b"\0" * 23 + self.user.encode() + b"\0"
        payload += lenenc_bytes(token) if caps & CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA else int1(len(token)) + token
        if caps & CLIENT.CONNECT_WITH_DB:
            payload += (self.database or "").encode() + b"\0"
        if caps & CLIENT.PLUGIN_AUTH:
            payload += auth.NATIVE + b"\0"
        self.transport.feed(encode_packet(payload, 1))
        pkt = await self.packet()
        if pkt.payload[:1] == b"\xfe":  # AuthSwitchRequest
            plugin, _, data = pkt.payload[1:].partition(b"\0")
            token = auth.client_scramble_native(self.password.encode(), data.rstrip(b"\0"))
            self.transport.feed(encode_packet(token, pkt.seq + 1))
            pkt = await self.packet()
        if pkt.payload[:1] == b"\xff":
            err = parse_err(pkt.payload)
            raise pymysql.err.OperationalError(err.errno, err.message.decode())
        ok = parse_ok(pkt.payload, caps)
        self.status = ok.status
        return self

    # -- commands ------------------------------------------------------------------------

    def send(self, payload: bytes, seq: int = 0) -> None:
        self.transport.feed(encode_packet(payload, seq))

    def send_query(self, sql: str | bytes) -> None:
        self.send(b"\x03" + (sql.encode() if isinstance(sql, str) else sql))

    async def query(self, sql: str | bytes, timeout: float | None = None) -> Response:
        self.send_query(sql)
        return await self.response(timeout=timeout)

    async def ping(self) -> Response:
        self.send(b"\x0e")
        return await self.response("simple")

    async def init_db(self, schema: str) -> Response:
        self.send(b"\x02" + schema.encode())
        return await self.response("simple")

    async def reset_connection(self) -> Response:
        self.send(bytes((COM_RESET_CONNECTION,)))
        return await self.response("simple")

    async def set_option(self, multi_statements: bool) -> Response:
        self.send(b"\x1b" + int2(0 if multi_statements else 1))
        return await self.response("simple")

    async def prepare(self, sql: str) -> Response:
        self.send(b"\x16" + sql.encode())
        return await self.response("prepare")

    async def execute(self, stmt_id: int, *, cursor: bool = False) -> Response:
        self.send(b"\x17" + int4(stmt_id) + int1(1 if cursor else 0) + int4(1))
        return await self.response(binary=True)

    async def fetch(self, stmt_id: int, rows: int, *, columns: int = 1) -> Response:
        self.send(b"\x1c" + int4(stmt_id) + int4(rows))
        return await self.response("fetch", binary=True, columns=columns)

    async def stmt_reset(self, stmt_id: int) -> Response:
        self.send(b"\x1a" + int4(stmt_id))
        return await self.response("simple")

    def close_statement(self, stmt_id: int) -> None:
        self.send(b"\x19" + int4(stmt_id))

    def quit(self) -> None:
        self.send(b"\x01")

    def disconnect(self) -> None:
        """The client goes away (socket closed)."""
        self.transport.peer_close()

    # -- replies -------------------------------------------------------------------------

    async def response(self, shape: str = "result", *, binary: bool = False, timeout: float | None = None,
                       columns: int | None = None) -> Response:
        raw: list[bytes] = []

        async def nxt() -> bytes:
            pkt = await self.packet(timeout)
            raw.append(pkt.raw)
            return pkt.payload

        results: list[Result] = []
        if shape == "simple":
            results.append(self._single(await nxt()))
        elif shape == "prepare":
            p = await nxt()
            if p[0] == 0xFF:
                results.append(Result("error", error=parse_err(p)))
            else:
                r = Reader(p)
                r.int1()
                stmt_id, ncols, nparams = r.int4(), r.int2(), r.int2()
                for count in (nparams, ncols):
                    if count:
                        for _ in range(count):
                            await nxt()
                        await nxt()  # EOF
                results.append(Result("prepared", stmt_id=stmt_id, params=nparams,
                                      columns=[""] * ncols))
        elif shape == "fetch":
            rows, end = await self._rows(nxt, columns, binary=True)
            results.append(end if end.kind == "error" else
                           Result("rows", status=end.status, eof=end.eof, rows=rows))
        else:
            while True:
                p = await nxt()
                first = p[0]
                if first in (0x00, 0xFF) or (first == 0xFE and len(p) < 9):
                    res = self._single(p)
                    results.append(res)
                    if res.kind == "ok" and res.status & MORE_RESULTS:
                        continue
                    break
                if first == 0xFB:
                    raise NotImplementedError("LOCAL INFILE requests are not supported by FakeClient")
                count = Reader(p).lenenc_int()
                columns = [self._column_name(await nxt()) for _ in range(count)]
                eof = parse_eof(await nxt())
                if binary and eof.status & CURSOR_EXISTS:
                    results.append(Result("cursor", status=eof.status, eof=eof, columns=columns))
                    break
                rows, end = await self._rows(nxt, count, binary=binary)
                if end.kind == "error":
                    results.append(end)
                    break
                results.append(Result("rows", status=end.status, eof=end.eof, columns=columns, rows=rows))
                if not end.status & MORE_RESULTS:
                    break
        response = Response(results, b"".join(raw))
        if results[-1].kind != "error":
            self.status = results[-1].status or self.status
        return response

    def _single(self, p: bytes) -> Result:
        if p[0] == 0xFF:
            return Result("error", error=parse_err(p))
        if p[0] == 0xFE and len(p) < 9:
            eof = parse_eof(p)
            return Result("eof", status=eof.status, eof=eof)
        if p[0] == 0x00:
            ok = parse_ok(p, self.capabilities)
            return Result("ok", status=ok.status, ok=ok)
        return Result("string", data=p)

    @staticmethod
    def _column_name(p: bytes) -> str:
        r = Reader(p)
        for _ in range(4):
            r.lenenc_bytes()
        return r.lenenc_bytes().decode("utf-8", "replace")

    async def _rows(self, nxt, ncols: int | None, *, binary: bool) -> tuple[list[tuple], Result]:
        rows = []
        while True:
            p = await nxt()
            if p[0] == 0xFF:
                return rows, Result("error", error=parse_err(p))
            if p[0] == 0xFE and len(p) < 9:
                eof = parse_eof(p)
                return rows, Result("eof", status=eof.status, eof=eof)
            rows.append(_binary_row(p, ncols) if binary else _text_row(p))


def _text_row(p: bytes) -> tuple:
    r = Reader(p)
    out = []
    while not r.at_end():
        if p[r.pos] == 0xFB:
            r.int1()
            out.append(None)
        else:
            out.append(r.lenenc_bytes().decode("utf-8", "replace"))
    return tuple(out)


def _binary_row(p: bytes, ncols: int | None) -> tuple:
    """Binary rows of string columns (all FakeMySQLServer sends); the raw payload if unknown."""
    if ncols is None:
        return (p,)
    nbitmap = (ncols + 7 + 2) // 8
    bitmap = p[1:1 + nbitmap]
    r = Reader(p, 1 + nbitmap)
    out = []
    for i in range(ncols):
        if bitmap[(i + 2) // 8] & (1 << ((i + 2) % 8)):
            out.append(None)
        else:
            out.append(r.lenenc_bytes().decode("utf-8", "replace"))
    return tuple(out)

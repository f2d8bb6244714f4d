# FakeClient: a MySQL client against one ClientConnection of a Proxy on the
# fakes, over a FakeTransport (no socket). It logs in with
# mysql_native_password (following an AuthSwitchRequest), asking for MariaDB's
# extended capabilities when its capabilities have any, sends commands
# (COM_QUERY, COM_PING, COM_INIT_DB, COM_RESET_CONNECTION, COM_SET_OPTION,
# prepared statements, cursors and bulk executes, COM_QUIT, or a raw payload)
# and parses the proxy's reply into a Response: its results (OK, ERR, result
# set with columns and rows in text or binary form, bare EOF), and its raw bytes.
# Reads wait in virtual time, with a timeout; a connection the proxy closed
# raises ConnectionClosed.
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pymysql

from mysqlpool_proxy.constants import CLIENT, COM_RESET_CONNECTION
from mysqlpool_proxy.protocol import auth
from mysqlpool_proxy.protocol.framing import PacketDecoder, encode_packet
from mysqlpool_proxy.protocol.packets import (
    EofPacket,
    ErrPacket,
    OkPacket,
    parse_eof,
    parse_err,
    parse_handshake_v10,
    parse_ok,
)
from mysqlpool_proxy.protocol.wire import Reader, int1, int2, int4, lenenc_bytes
from tests.fakes.packets import CURSOR_EXISTS, MORE_RESULTS
from tests.fakes.transport import FakeTransport


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
                raise TimeoutError(f"no reply from the proxy within {timeout}s (virtual)")
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                raise TimeoutError(f"no reply from the proxy within {timeout}s (virtual)") from None

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
        if caps >> 32:  # MariaDB's extended capabilities: asked for with CLIENT_MYSQL (LONG_PASSWORD) clear
            caps &= ~CLIENT.LONG_PASSWORD
        self.capabilities = caps
        token = auth.client_scramble_native(self.password.encode(), g.scramble) if self.password else b""
        payload = (int4(caps & 0xFFFFFFFF) + int4(1 << 24) + int1(self.charset) + b"\0" * 19 + int4(caps >> 32)
                   + self.user.encode() + b"\0")
        payload += lenenc_bytes(token) if caps & CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA else int1(len(token)) + token
        if caps & CLIENT.CONNECT_WITH_DB:
            payload += (self.database or "").encode() + b"\0"
        if caps & CLIENT.PLUGIN_AUTH:
            payload += auth.NATIVE + b"\0"
        self.transport.feed(encode_packet(payload, 1))
        pkt = await self.packet()
        if pkt.payload[:1] == b"\xfe":  # AuthSwitchRequest
            _plugin, _, data = pkt.payload[1:].partition(b"\0")
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

    async def bulk(self, stmt_id: int, rows: bytes, *, types: bytes | None = None) -> Response:
        """COM_STMT_BULK_EXECUTE with `rows` as the wire carries them, and `types` sent when given."""
        self.send(b"\xfa" + int4(stmt_id) + int2(0 if types is None else 128) + (types or b"") + rows)
        return await self.response(binary=True)

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
                       columns: int | None = None, infile: bytes | None = None) -> Response:
        """The reply to the command sent last, read in the framing the client negotiated, its sequence
        ids checked as a client checks them. `infile`: the file to send if the server asks for one."""
        raw: list[bytes] = []
        deprecate_eof = bool(self.capabilities & CLIENT.DEPRECATE_EOF)
        expected = [1]

        async def nxt() -> bytes:
            pkt = await self.packet(timeout)
            if pkt.seq != expected[0]:
                raise AssertionError(f"packets out of order: sequence id {pkt.seq} where {expected[0]} was due")
            expected[0] = (pkt.last_seq + 1) & 0xFF
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
                        if not deprecate_eof:
                            await nxt()  # EOF
                results.append(Result("prepared", stmt_id=stmt_id, params=nparams,
                                      columns=[""] * ncols))
        elif shape == "fetch":
            rows, end = await self._rows(nxt, columns, binary=True)
            results.append(end if end.kind == "error" else
                           Result("rows", status=end.status, eof=end.eof, ok=end.ok, rows=rows))
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
                    if infile is None:
                        raise AssertionError("the server asked for a LOCAL INFILE file, and the test gave none")
                    seq = expected[0]
                    frames = len(infile) // 0xFFFFFF + 1 if infile else 0  # (a 16 MiB packet takes 2 frames)
                    self.transport.feed((encode_packet(infile, seq) if infile else b"")
                                        + encode_packet(b"", seq + frames))
                    expected[0] = (seq + frames + 1) & 0xFF
                    continue
                count = Reader(p).lenenc_int()
                columns = [self._column_name(await nxt()) for _ in range(count)]
                if not deprecate_eof:
                    eof = parse_eof(await nxt())
                    if binary and eof.status & CURSOR_EXISTS:
                        results.append(Result("cursor", status=eof.status, eof=eof, columns=columns))
                        break
                rows, end = await self._rows(nxt, count, binary=binary)
                if end.kind == "error":
                    results.append(end)
                    break
                if deprecate_eof and binary and not rows and end.status & CURSOR_EXISTS:
                    # (the OK that stands for the EOF after the column definitions: a cursor is open)
                    results.append(Result("cursor", status=end.status, ok=end.ok, columns=columns))
                    break
                results.append(Result("rows", status=end.status, eof=end.eof, ok=end.ok, columns=columns, rows=rows))
                if not end.status & MORE_RESULTS:
                    break
        response = Response(results, b"".join(raw))
        if results[-1].kind != "error":
            self.status = results[-1].status or self.status
        return response

    def _single(self, p: bytes) -> Result:
        if p[0] == 0xFF:
            return Result("error", error=parse_err(p))
        if p[0] == 0xFE and self.capabilities & CLIENT.DEPRECATE_EOF:
            ok = parse_ok(p, self.capabilities)  # an OK in the EOF's place
            return Result("eof", status=ok.status, ok=ok)
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
        deprecate_eof = self.capabilities & CLIENT.DEPRECATE_EOF
        while True:
            p = await nxt()
            if p[0] == 0xFF:
                return rows, Result("error", error=parse_err(p))
            if p[0] == 0xFE and len(p) < (0xFFFFFF if deprecate_eof else 9):
                return rows, self._single(p)
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

# The model test's clients: PyMySQL (text protocol, plus binary prepared
# statements sent raw: COM_STMT_PREPARE / EXECUTE / CLOSE through PyMySQL's
# packet layer, executes that re-bind the parameter types or rely on the
# ones bound before) and mysql-connector-python (pure Python; text cursors,
# plus `cursor(prepared=True)`), behind one small interface. Every server error
# becomes SqlError(errno, message); results come back as lists of tuples
# with bytearray turned into bytes. `matches()` compares a value the model
# expects with one a driver returned, allowing only for driver spelling
# (str vs bytes, int vs Decimal for integral values), never for content.
from __future__ import annotations

import datetime
import struct
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import mysql.connector
import pymysql
from pymysql.protocol import FieldDescriptorPacket, OKPacketWrapper

from tests.model.model import SKIP


class SqlError(Exception):
    def __init__(self, errno: int, message: str):
        super().__init__(f"({errno}) {message}")
        self.errno = errno
        self.message = message


@dataclass
class Result:
    rows: list[tuple]
    lastrowid: int | None
    rowcount: int


def _norm(value: Any) -> Any:
    return bytes(value) if isinstance(value, bytearray) else value


def _rows(rows) -> list[tuple]:
    return [tuple(_norm(v) for v in row) for row in rows or ()]


def matches(expected: Any, actual: Any) -> bool:
    if expected is SKIP:
        return True
    if isinstance(expected, str) and isinstance(actual, bytes):
        try:
            return actual.decode() == expected
        except UnicodeDecodeError:
            return False
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected == actual and type(expected) is type(actual)
    if isinstance(expected, (int, float, Decimal)) and isinstance(actual, (int, float, Decimal)):
        if type(expected) is not type(actual) and not (
                isinstance(expected, int) and isinstance(actual, Decimal) and actual == actual.to_integral_value()):
            return False
        return expected == actual
    if isinstance(expected, datetime.datetime) and isinstance(actual, datetime.datetime):
        return expected == actual
    return type(expected) is type(actual) and expected == actual


def rows_match(expected: list[tuple], actual: list[tuple]) -> bool:
    return len(expected) == len(actual) and all(
        len(e) == len(a) and all(matches(x, y) for x, y in zip(e, a)) for e, a in zip(expected, actual))


COM_STMT_PREPARE, COM_STMT_EXECUTE, COM_STMT_CLOSE = 0x16, 0x17, 0x19
BINARY_CHARSET = 63
_INT_FORMATS = {1: "b", 2: "h", 3: "i", 9: "i", 8: "q"}  # TINY, SHORT, LONG, INT24, LONGLONG
_STRING_TYPES = {0x0f, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe}  # VARCHAR, blobs, VAR_STRING, STRING


@dataclass
class RawStatement:
    id: int
    params: int
    types: bytes | None = None  # the parameter types bound last


def _lenenc(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 0xfb:
        return first, pos + 1
    size = {0xfc: 2, 0xfd: 3, 0xfe: 8}[first]
    return int.from_bytes(data[pos + 1:pos + 1 + size], "little"), pos + 1 + size


def _binary_row(data: bytes, fields: list, encoding: str) -> tuple:
    """One binary-protocol row, decoded as PyMySQL's text protocol would give it."""
    n = len(fields)
    bitmap = data[1:1 + (n + 9) // 8]
    pos = 1 + len(bitmap)
    out = []
    for i, field in enumerate(fields):
        if bitmap[(i + 2) // 8] & (1 << ((i + 2) % 8)):
            out.append(None)
            continue
        t = field.type_code
        if t in _INT_FORMATS:
            fmt = _INT_FORMATS[t]
            size = struct.calcsize(fmt)
            unsigned = field.flags & 32
            out.append(struct.unpack_from("<" + (fmt.upper() if unsigned else fmt), data, pos)[0])
            pos += size
        elif t == 5:  # DOUBLE
            out.append(struct.unpack_from("<d", data, pos)[0])
            pos += 8
        elif t == 0xf6:  # NEWDECIMAL
            size, pos = _lenenc(data, pos)
            out.append(Decimal(data[pos:pos + size].decode()))
            pos += size
        elif t in (7, 0x0c):  # TIMESTAMP, DATETIME
            size = data[pos]
            parts = data[pos + 1:pos + 1 + size]
            pos += 1 + size
            y, mo, d = struct.unpack_from("<HBB", parts) if size >= 4 else (0, 0, 0)
            h, mi, sec = struct.unpack_from("<BBB", parts, 4) if size >= 7 else (0, 0, 0)
            micro = struct.unpack_from("<I", parts, 7)[0] if size >= 11 else 0
            out.append(datetime.datetime(y, mo, d, h, mi, sec, micro))
        elif t in _STRING_TYPES:
            size, pos = _lenenc(data, pos)
            raw = data[pos:pos + size]
            pos += size
            out.append(raw if field.charsetnr == BINARY_CHARSET else raw.decode(encoding, "replace"))
        else:
            raise AssertionError(f"binary column type {t} not decoded by the model test's raw client")
    return tuple(out)


class PyMySQLClient:
    driver = "pymysql"

    def __init__(self, host: str, port: int, user: str, password: str, database: str | None, charset: str):
        try:
            self.conn = pymysql.connect(host=host, port=port, user=user, password=password, database=database,
                                        charset=charset, autocommit=True, connect_timeout=10, read_timeout=60)
        except pymysql.err.MySQLError as exc:
            raise SqlError(exc.args[0] if exc.args else 0, str(exc)) from None

    @property
    def connection_id(self) -> int:
        return self.conn.thread_id()

    def query(self, sql: str) -> Result:
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql)
                return Result(_rows(cur.fetchall()), cur.lastrowid, cur.rowcount)
        except pymysql.err.MySQLError as exc:
            raise SqlError(exc.args[0] if exc.args else 0, str(exc.args[1:] or exc)) from None

    def init_db(self, schema: str) -> None:
        try:
            self.conn.select_db(schema)
        except pymysql.err.MySQLError as exc:
            raise SqlError(exc.args[0] if exc.args else 0, str(exc)) from None

    # binary prepared statements, raw

    def prepare(self, sql: str) -> RawStatement:
        conn = self.conn
        try:
            conn._execute_command(COM_STMT_PREPARE, sql)
            first = conn._read_packet().get_all_data()
            stmt_id, columns, params = struct.unpack_from("<IHH", first, 1)
            for _ in range(params):
                conn._read_packet()
            if params:
                conn._read_packet()  # EOF
            for _ in range(columns):
                conn._read_packet()
            if columns:
                conn._read_packet()  # EOF
        except pymysql.err.MySQLError as exc:
            raise SqlError(exc.args[0] if exc.args else 0, str(exc.args[1:] or exc)) from None
        return RawStatement(stmt_id, params)

    def execute(self, stmt: RawStatement, sql: str, params: tuple, bind_types: bool = True) -> Result:
        conn = self.conn
        body = struct.pack("<IBI", stmt.id, 0, 1)
        if stmt.params:
            body += bytes((stmt.params + 7) // 8)  # no NULLs
            if bind_types or stmt.types is None:
                stmt.types = b"".join(b"\x08\x00" if isinstance(v, int) else b"\xfd\x00" for v in params)
                body += b"\x01" + stmt.types
            else:
                body += b"\x00"
            for v in params:
                if isinstance(v, int):
                    body += struct.pack("<q", v)
                else:
                    raw = v.encode(conn.encoding)
                    body += bytes((len(raw),)) + raw
        try:
            conn._execute_command(COM_STMT_EXECUTE, body)
            first = conn._read_packet()
            if first.is_ok_packet():
                ok = OKPacketWrapper(first)
                return Result(None, ok.insert_id, ok.affected_rows)
            count = first.read_length_encoded_integer()
            fields = [conn._read_packet(FieldDescriptorPacket) for _ in range(count)]
            conn._read_packet()  # EOF
            rows = []
            while True:
                pkt = conn._read_packet()
                if pkt.is_eof_packet():
                    break
                rows.append(_binary_row(pkt.get_all_data(), fields, conn.encoding))
            return Result(rows, None, len(rows))
        except pymysql.err.MySQLError as exc:
            raise SqlError(exc.args[0] if exc.args else 0, str(exc.args[1:] or exc)) from None

    def close_statement(self, stmt: RawStatement) -> None:
        self.conn._execute_command(COM_STMT_CLOSE, struct.pack("<I", stmt.id))  # no reply

    def close(self, abrupt: bool) -> None:
        if abrupt:
            self.conn._force_close()
        else:
            self.conn.close()


class ConnectorClient:
    driver = "connector"

    def __init__(self, host: str, port: int, user: str, password: str, database: str | None, charset: str):
        kwargs = dict(host=host, port=port, user=user, password=password, charset=charset, use_pure=True,
                      autocommit=True, connection_timeout=10)
        if database is not None:
            kwargs["database"] = database
        try:
            self.conn = mysql.connector.connect(**kwargs)
        except mysql.connector.Error as exc:
            raise SqlError(exc.errno or 0, str(exc)) from None
        self.text = self.conn.cursor()

    @property
    def connection_id(self) -> int:
        return self.conn.connection_id

    def query(self, sql: str) -> Result:
        try:
            cur = self.text
            cur.execute(sql)
            rows = cur.fetchall() if cur.with_rows else []
            return Result(_rows(rows), cur.lastrowid, cur.rowcount)
        except mysql.connector.Error as exc:
            raise SqlError(exc.errno or 0, str(exc)) from None

    def init_db(self, schema: str) -> None:
        try:
            self.conn.cmd_init_db(schema)
        except mysql.connector.Error as exc:
            raise SqlError(exc.errno or 0, str(exc)) from None

    def prepare(self, sql: str):
        """A prepared cursor; the statement is prepared at its first execute (the connector's way)."""
        return self.conn.cursor(prepared=True)

    def execute(self, cursor, sql: str, params: tuple, bind_types: bool = True) -> Result:
        try:
            cursor.execute(sql, params)
            rows = cursor.fetchall() if cursor.with_rows else None
            return Result(_rows(rows) if rows is not None else None, cursor.lastrowid, cursor.rowcount)
        except mysql.connector.Error as exc:
            raise SqlError(exc.errno or 0, str(exc)) from None

    def close_statement(self, cursor) -> None:
        cursor.close()  # COM_STMT_CLOSE

    def close(self, abrupt: bool) -> None:
        if abrupt:
            self.conn.shutdown()
        else:
            self.conn.close()


DRIVERS = {"pymysql": PyMySQLClient, "connector": ConnectorClient}

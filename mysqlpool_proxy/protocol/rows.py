"""Parsing the (small) text result sets of the proxy's own hidden queries.

The relay never parses rows. The proxy's own queries do need their answers:
`SELECT LAST_INSERT_ID()` after a statement that set it in a result set,
and `SELECT @a, @b` to learn the values of user variables a client wrote,
so that they can follow it to another backend. Those results are a few
bytes; this module turns them into columns (name, type, charset) and rows
of raw values (None for SQL NULL), and renders a value back as an SQL
literal of the same type.

A backend that negotiated MARIADB_CLIENT_EXTENDED_METADATA (the pool key of
a client that did) puts one more length-encoded field in every column
definition, after org_name: a block of (id, lenenc value) pairs, id 0 a type
name ("uuid", "inet6", "point"...), id 1 a format ("json"); empty for most
columns. `parse_text_result(..., extended_metadata=True)` reads it, and
`without_extended_metadata()` gives a definition as a backend without it
would have sent it (the adapter hands aiomysql such definitions while it
runs the proxy's setup query on such a backend).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..constants import FIELD_TYPE
from ..errors import RemoteProtocolError
from .framing import HEADER_SIZE
from .packets import is_eof
from .wire import BytesLike, Reader

__all__ = ["Column", "parse_text_result", "sql_literal_for", "without_extended_metadata", "extended_metadata"]

BINARY_CHARSET = 63
_INTEGER_TYPES = frozenset((FIELD_TYPE.TINY, FIELD_TYPE.SHORT, FIELD_TYPE.LONG, FIELD_TYPE.LONGLONG,
                            FIELD_TYPE.INT24, FIELD_TYPE.YEAR))
_DECIMAL_TYPES = frozenset((FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL))
_FLOAT_TYPES = frozenset((FIELD_TYPE.FLOAT, FIELD_TYPE.DOUBLE))


@dataclass(frozen=True, slots=True)
class Column:
    name: bytes
    type: int
    charset: int


def _packets(data: bytes) -> Iterator[bytes]:
    pos = 0
    while pos + HEADER_SIZE <= len(data):
        length = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
        end = pos + HEADER_SIZE + length
        if end > len(data):
            raise RemoteProtocolError("truncated result set")
        yield data[pos + HEADER_SIZE:end]
        pos = end


def parse_text_result(data: bytes, extended_metadata: bool = False) -> tuple[list[Column], list[list[bytes | None]]]:
    """Columns and rows of the first result set in `data` (a complete response, headers included), from a
    backend that negotiated MARIADB_CLIENT_EXTENDED_METADATA or not."""
    packets = _packets(data)
    first = next(packets, None)
    if first is None or first[:1] in (b"\x00", b"\xff"):
        raise RemoteProtocolError("not a result set")
    count = Reader(first).lenenc_int() or 0
    columns = [_column(next(packets), extended_metadata) for _ in range(count)]
    if not is_eof(next(packets)):
        raise RemoteProtocolError("expected EOF after column definitions")
    rows = []
    for payload in packets:
        if is_eof(payload):
            break
        r = Reader(payload)
        rows.append([_value(r) for _ in range(count)])
    return columns, rows


def _column(payload: bytes, extended_metadata: bool) -> Column:
    r = Reader(payload)
    for _ in range(4):  # catalog, schema, table, org_table
        r.lenenc_bytes()
    name = r.lenenc_bytes()
    r.lenenc_bytes()  # org_name
    if extended_metadata:
        r.lenenc_bytes()
    r.lenenc_int()  # length of the fixed fields (0x0c)
    charset = r.int2()
    r.int4()  # column length
    return Column(name, r.int1(), charset)


def _extended_block(payload: BytesLike) -> tuple[int, int]:
    """Where a column definition's extended-metadata field (its length prefix included) starts and ends."""
    r = Reader(payload)
    for _ in range(6):  # catalog, schema, table, org_table, name, org_name
        r.lenenc_bytes()
    start = r.pos
    r.lenenc_bytes()
    return start, r.pos


def without_extended_metadata(payload: BytesLike) -> bytes:
    """A column definition sent with MARIADB_CLIENT_EXTENDED_METADATA, as it is without it."""
    start, end = _extended_block(payload)
    return bytes(payload[:start]) + bytes(payload[end:])


def extended_metadata(payload: BytesLike) -> dict[int, bytes]:
    """The extended metadata of a column definition sent with it: {0: type name, 1: format}, as present."""
    start, end = _extended_block(payload)
    r = Reader(payload, start, end)
    r.lenenc_int()
    out = {}
    while not r.at_end():
        key = r.int1()
        out[key] = r.lenenc_bytes()
    return out


def _value(r: Reader) -> bytes | None:
    if r.remaining <= 0:
        raise RemoteProtocolError("row shorter than its column count")
    if r.data[r.pos] == 0xFB:
        r.int1()
        return None
    return r.lenenc_bytes()


def sql_literal_for(column: Column, value: bytes | None, charsets: dict[int, str]) -> bytes:
    """An SQL literal that gives a user variable back this value with this type."""
    if value is None:
        return b"NULL"
    if column.type in _INTEGER_TYPES:
        return value
    if column.type in _DECIMAL_TYPES:
        return value  # an unquoted decimal literal is DECIMAL
    if column.type in _FLOAT_TYPES:
        return value if b"e" in value.lower() else value + b"e0"
    if column.charset == BINARY_CHARSET:
        return b"X'" + value.hex().encode() + b"'"
    charset = charsets.get(column.charset)
    introducer = b"_" + charset.encode() + b" " if charset else b""
    return introducer + b"X'" + value.hex().encode() + b"'"

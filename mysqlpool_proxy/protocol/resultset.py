"""Text-protocol result sets built by the proxy itself (the admin console's answers).

What this module owns: the bytes of a COM_QUERY result set, in the classic
shape:

    column count (lenenc int)
    one Protocol::ColumnDefinition41 per column
    EOF
    one text row per row (lenenc strings; 0xFB is NULL)
    EOF

or, for a client that negotiated CLIENT_DEPRECATE_EOF, without the first EOF
and with an OK packet whose header is 0xFE in place of the last one, as the
server writes it. `result_set()` frames all of it with consecutive sequence ids, from
`first_seq` (the command's sequence id + 1). Values are Python values
(None, bool, int, float, str, bytes) and are written as the server would
write them in text: numbers in decimal, booleans as 1/0. Sans-IO: bytes in,
bytes out.

For code that answers commands itself (the admin console), a reply is
`Rows` (a result set), `Ok` or a ProxyError, and `encode_reply()` turns
any of them into the bytes to write; `columns("name count:i avg:f")`
declares columns compactly, and `select_reply()` answers the
`SELECT @@version_comment LIMIT 1` kind of query clients send on their own.

Reference: the MySQL client/server protocol pages Protocol::ColumnDefinition41,
Text Resultset and ProtocolText::ResultsetRow.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from pymysql.constants import FIELD_TYPE, FLAG

from ..constants import CLIENT
from ..errors import ProxyError
from .framing import MAX_FRAME, encode_packet
from .packets import make_eof, make_eof_for, make_err, make_ok
from .wire import int1, int2, int4, lenenc_bytes, lenenc_int

__all__ = [
    "Column", "columns", "Rows", "Ok", "Reply", "encode_reply", "select_reply", "column_definition", "text_value",
    "text_row", "result_set", "field_list_end",
    "CHARSET_UTF8MB4", "CHARSET_BINARY", "NUMERIC_TYPES", "NUM_FLAG",
]

CHARSET_UTF8MB4 = 45  # utf8mb4_general_ci: what text columns are sent in
CHARSET_BINARY = 63  # what the server sends numeric columns in
UTF8MB4_MAXLEN = 4  # bytes per character: column lengths are in bytes
NOT_FIXED_DEC = 31  # `decimals` of a floating-point value with no fixed scale
NUM_FLAG = 0x8000  # MySQL's NUM_FLAG ("field is a number"), which PyMySQL's FLAG lacks

NUMERIC_TYPES = frozenset((
    FIELD_TYPE.DECIMAL, FIELD_TYPE.TINY, FIELD_TYPE.SHORT, FIELD_TYPE.LONG, FIELD_TYPE.FLOAT,
    FIELD_TYPE.DOUBLE, FIELD_TYPE.LONGLONG, FIELD_TYPE.INT24, FIELD_TYPE.YEAR, FIELD_TYPE.NEWDECIMAL,
))
_FLOAT_TYPES = frozenset((FIELD_TYPE.FLOAT, FIELD_TYPE.DOUBLE, FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL))
# Display widths the server gives expressions of these types.
_DEFAULT_LENGTH = {FIELD_TYPE.LONGLONG: 21, FIELD_TYPE.LONG: 11, FIELD_TYPE.TINY: 4, FIELD_TYPE.DOUBLE: 22}


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a result set: a name and a FIELD_TYPE (text by default)."""

    name: str
    type: int = FIELD_TYPE.VAR_STRING

    @property
    def numeric(self) -> bool:
        return self.type in NUMERIC_TYPES


def columns(spec: str) -> list[Column]:
    """Columns from "name name:i name:f" (i: integer, f: floating point, else text)."""
    types = {"i": FIELD_TYPE.LONGLONG, "f": FIELD_TYPE.DOUBLE}
    out = []
    for word in spec.split():
        name, _, kind = word.partition(":")
        out.append(Column(name, types[kind]) if kind else Column(name))
    return out


# What a cell may hold: text (str, or bytes as they are), a number, or SQL NULL.
Value = str | bytes | int | float | None


@dataclass(slots=True)
class Rows:
    """A reply that is a result set."""

    columns: list[Column]
    rows: Sequence[tuple[Value, ...]]


@dataclass(slots=True)
class Ok:
    """A reply that is an OK packet; `then` is for the caller to run once it is written."""

    info: str = ""
    then: Callable[[], None] | None = None


Reply = Rows | Ok


def encode_reply(reply: Reply | ProxyError, status: int, first_seq: int, capabilities: int) -> bytes:
    """The bytes of a whole reply to a command, framed from `first_seq`, in the framing of a client
    with these capabilities."""
    if isinstance(reply, Rows):
        return result_set(reply.columns, reply.rows, status, first_seq,
                          deprecate_eof=bool(capabilities & CLIENT.DEPRECATE_EOF))
    if isinstance(reply, Ok):
        # The info is a length-encoded string whatever the client's flags: MySQL and MariaDB servers
        # write it so, and libmysqlclient/libmariadb read it so (string<EOF> reads as malformed).
        info = reply.info.encode("utf-8")
        return encode_packet(make_ok(capabilities | CLIENT.SESSION_TRACK, status, info=info), first_seq)
    return encode_packet(make_err(reply.errno, reply.sqlstate, reply.message, capabilities), first_seq)


# Linear: the item list is taken whole, and a trailing LIMIT 1 cut off with string
# methods (a lazy group before an optional tail, or a search for `\s+limit`, rescans
# a run of spaces from each of its positions: quadratic).
_SELECT = re.compile(r"select\s+(.+)", re.I | re.S)


def _without_limit_1(listed: str) -> str:
    body = listed.rstrip()
    if not body.endswith("1"):
        return listed
    head = body[:-1].rstrip()
    if len(head) == len(body) - 1 or not head.lower().endswith("limit"):
        return listed
    before = head[:-5]
    return before if before and before[-1].isspace() else listed


def select_reply(sql: str, known: Mapping[str, Value]) -> Rows | None:
    """The one-row answer to `SELECT item[, item...] [LIMIT 1]` when every item (compared in lower
    case without spaces: "@@version_comment", "database()") is in `known`; None otherwise.
    Columns are named as the client wrote the items, like the server does."""
    match = _SELECT.fullmatch(sql.strip())
    if match is None:
        return None
    items = [item.strip() for item in _without_limit_1(match.group(1)).split(",")]
    keys = [re.sub(r"\s+", "", item).lower() for item in items]
    if not all(key in known for key in keys):
        return None
    values = tuple(known[key] for key in keys)
    return Rows([Column(item, FIELD_TYPE.LONGLONG if isinstance(value, int) else FIELD_TYPE.VAR_STRING)
                 for item, value in zip(items, values)], [values])


def column_definition(name: str | bytes, type: int = FIELD_TYPE.VAR_STRING, charset: int | None = None,
                      length: int | None = None, flags: int | None = None, decimals: int | None = None,
                      table: str | bytes = b"", schema: str | bytes = b"") -> bytes:
    """A Protocol::ColumnDefinition41 payload (catalog "def").

    Defaults follow the server: numbers are binary (63) with NUM|BINARY
    flags, text is utf8mb4 (45); floating-point types have no fixed scale.
    """
    numeric = type in NUMERIC_TYPES
    if charset is None:
        charset = CHARSET_BINARY if numeric else CHARSET_UTF8MB4
    if length is None:
        length = _DEFAULT_LENGTH.get(type, 255 * UTF8MB4_MAXLEN)
    if flags is None:
        flags = NUM_FLAG | FLAG.BINARY if numeric else 0
    if decimals is None:
        decimals = NOT_FIXED_DEC if type in _FLOAT_TYPES else 0
    name_bytes = _as_bytes(name)
    return b"".join((
        lenenc_bytes(b"def"), lenenc_bytes(_as_bytes(schema)), lenenc_bytes(_as_bytes(table)),
        lenenc_bytes(_as_bytes(table)), lenenc_bytes(name_bytes), lenenc_bytes(name_bytes),
        lenenc_int(0x0C), int2(charset), int4(length), int1(type), int2(flags), int1(decimals), int2(0),
    ))


def text_value(value: Value) -> bytes | None:
    """A Python value as the text protocol carries it; None stays None (SQL NULL)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int):
        return str(value).encode("ascii")
    if isinstance(value, float):
        return _float_text(value).encode("ascii")
    return _as_bytes(value)


def _float_text(value: float) -> str:
    """Fixed-point, at most 6 decimals, no trailing zeros ("0.25", "12", never "1e-05")."""
    if not math.isfinite(value):
        return str(value)
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def text_row(values: Iterable[Value]) -> bytes:
    """A ProtocolText::ResultsetRow payload: each value a lenenc string, 0xFB for NULL."""
    return _row_payload([text_value(v) for v in values])


def _row_payload(encoded: Iterable[bytes | None]) -> bytes:
    return b"".join(b"\xfb" if data is None else lenenc_bytes(data) for data in encoded)


def result_set(columns: Sequence[Column | str], rows: Iterable[Sequence[Value]], status: int,
               first_seq: int = 1, *, deprecate_eof: bool = False) -> bytes:
    """A whole text result set, framed from sequence id `first_seq`; EOFs carry `status`.
    `deprecate_eof`: in the framing of a client that negotiated CLIENT_DEPRECATE_EOF."""
    cols = [Column(c) if isinstance(c, str) else c for c in columns]
    row_payloads = []
    widths = [0] * len(cols)
    for row in rows:
        if len(row) != len(cols):
            raise ValueError(f"a row has {len(row)} values for {len(cols)} columns")
        encoded = [text_value(v) for v in row]
        row_payloads.append(_row_payload(encoded))
        for i, data in enumerate(encoded):
            if data is not None and len(data) > widths[i]:
                widths[i] = len(data)
    frames = _Frames(first_seq)
    frames.add(lenenc_int(len(cols)))
    for col, width in zip(cols, widths):
        length = None if col.numeric else max(1, width) * UTF8MB4_MAXLEN
        frames.add(column_definition(col.name, col.type, length=length))
    if not deprecate_eof:
        frames.add(make_eof(status))
    for payload in row_payloads:
        frames.add(payload)
    frames.add(make_eof_for(CLIENT.DEPRECATE_EOF if deprecate_eof else 0, status))
    return frames.data()


def field_list_end(status: int, first_seq: int = 1, capabilities: int = 0) -> bytes:
    """The answer to COM_FIELD_LIST for a table with no columns: a lone EOF (in the client's framing)."""
    return encode_packet(make_eof_for(capabilities, status), first_seq)


class _Frames:
    """Packets framed one after another with consecutive sequence ids (16 MiB splits included)."""

    __slots__ = ("_parts", "seq")

    def __init__(self, first_seq: int):
        self._parts: list[bytes] = []
        self.seq = first_seq & 0xFF

    def add(self, payload: bytes) -> None:
        self._parts.append(encode_packet(payload, self.seq))
        self.seq = (self.seq + len(payload) // MAX_FRAME + 1) & 0xFF

    def data(self) -> bytes:
        return b"".join(self._parts)


def _as_bytes(value: str | bytes) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)

# The bytes the fakes send, built with the proxy's own sans-IO helpers: column
# definitions, text and binary rows, session-state blocks of an OK packet, and
# the status bits a reply carries. Only string columns (T_VAR_STRING) in
# utf8mb4 are made: the fakes' results are all strings.
from __future__ import annotations

from mysqlpool_proxy.constants import SERVER_STATUS
from mysqlpool_proxy.protocol.wire import int1, int2, int4, lenenc_bytes, lenenc_int

IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
MORE_RESULTS = SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS
CURSOR_EXISTS = SERVER_STATUS.SERVER_STATUS_CURSOR_EXISTS
LAST_ROW_SENT = SERVER_STATUS.SERVER_STATUS_LAST_ROW_SENT
NO_BACKSLASH_ESCAPES = SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES
ANSI_QUOTES = 0x8000  # MariaDB's SERVER_STATUS_ANSI_QUOTES

T_LONGLONG = 0x08
T_VAR_STRING = 0xFD


def column_def(name: bytes, col_type: int = T_VAR_STRING, charset: int = 45, length: int = 1024,
               extended: bytes | None = None) -> bytes:
    """A column definition; `extended`: its MariaDB extended-metadata block (a connection that negotiated
    MARIADB_CLIENT_EXTENDED_METADATA has one in every definition, b"" for most)."""
    return (lenenc_bytes(b"def") + lenenc_bytes(b"") + lenenc_bytes(b"") + lenenc_bytes(b"") + lenenc_bytes(name)
            + lenenc_bytes(b"") + (b"" if extended is None else lenenc_bytes(extended)) + lenenc_int(0x0C)
            + int2(charset) + int4(length) + int1(col_type) + int2(0) + int1(0) + int2(0))


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


def as_bytes(v) -> bytes | None:
    """A value as a row carries it: bytes as they are, None as NULL, anything else as its text."""
    if v is None or isinstance(v, bytes):
        return v
    return str(v).encode()


def state_block(entries: list[tuple[int, bytes]]) -> bytes:
    return b"".join(bytes((kind,)) + lenenc_bytes(data) for kind, data in entries)

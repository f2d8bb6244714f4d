# protocol/stmt.py: COM_STMT_EXECUTE's fixed part, checked as MariaDB checks it
# before reading the values (each expectation below is what MariaDB 10/11
# answered to the same bytes: 1835 Malformed communication packet, 1210
# Incorrect arguments to mysqld_stmt_execute), the null bitmap, and the
# rewrites (statement id, types put back).
from __future__ import annotations

import struct

import pytest

from mysqlpool_proxy.errors import RemoteProtocolError
from mysqlpool_proxy.protocol.stmt import (
    ExecuteRefused,
    nulls_only,
    parse_execute,
    with_statement_id,
    with_types,
)

MALFORMED = (1835, "Malformed communication packet")
WRONG = (1210, "Incorrect arguments to mysqld_stmt_execute")


def execute(rest: bytes = b"", stmt_id: int = 7, flags: int = 0) -> bytes:
    return b"\x17" + struct.pack("<IBI", stmt_id, flags, 1) + rest


@pytest.mark.parametrize("payload, params, refused", [
    (b"\x17", 2, MALFORMED),
    (b"\x17" + struct.pack("<I", 7), 2, MALFORMED),
    (execute()[:9], 0, MALFORMED),
    (execute(), 2, WRONG),  # ends after the iteration count
    (execute(b"\x00"), 2, WRONG),  # a null bitmap, nothing after
    (execute(b"\x00"), 9, WRONG),  # half a null bitmap
    (execute(b"\x00\x01"), 2, MALFORMED),  # new params bound, no types
    (execute(b"\x00\x01\x08\x00"), 2, MALFORMED),  # one type of two
    (execute(b"\x00\x01\x08\x00\x08"), 2, MALFORMED),  # three bytes of four
    (execute(b"\x03\x01"), 2, MALFORMED),  # all NULL still needs its types
    (execute(b"\x00\x02\x08\x00\x08\x00"), 2, MALFORMED),  # a flag of 2
    (execute(b"\x00\xff\x08\x00\x08\x00"), 2, MALFORMED),
])
def test_refused_as_the_server_refuses(payload, params, refused):
    with pytest.raises(ExecuteRefused) as info:
        parse_execute(payload, params)
    assert (info.value.errno, str(info.value)) == refused
    assert isinstance(info.value, RemoteProtocolError)


@pytest.mark.parametrize("payload, params, expected", [
    (execute(), 0, (7, 0, False, None, -1)),
    (execute(b"\x00\x01\x02", flags=1), 0, (7, 1, False, None, -1)),  # bytes after: no parameters to read
    (execute(b"\x00\x00"), 2, (7, 0, False, None, 11)),  # types bound earlier
    (execute(b"\x00\x01\x08\x00\xfd\x00"), 2, (7, 0, True, b"\x08\x00\xfd\x00", 11)),  # values are the server's
    (execute(b"\x00\x00\x00\x00"), 9, (7, 0, False, None, 12)),
])
def test_parsed(payload, params, expected):
    header = parse_execute(payload, params)
    assert (header.stmt_id, header.flags, header.types_bound, header.types, header.flag_offset) == expected


@pytest.mark.parametrize("bitmap, params, expected", [
    (b"\x03", 2, True), (b"\x01", 2, False), (b"\x07", 2, True), (b"\xff\x01", 9, True), (b"\xff\x00", 9, False),
])
def test_nulls_only(bitmap, params, expected):
    assert nulls_only(execute(bitmap + b"\x00"), params) is expected


def test_rewrites_keep_everything_else():
    payload = execute(b"\x00\x00" + struct.pack("<qq", 1, 2))
    moved = with_statement_id(payload, 99)
    assert moved[1:5] == struct.pack("<I", 99) and moved[5:] == payload[5:]
    header = parse_execute(payload, 2)
    typed = with_types(payload, header, b"\x08\x00\x08\x00")
    assert typed == execute(b"\x00\x01\x08\x00\x08\x00" + struct.pack("<qq", 1, 2))
    assert parse_execute(typed, 2).types == b"\x08\x00\x08\x00"

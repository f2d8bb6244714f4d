# protocol/bulk.py and the rest of COM_STMT_BULK_EXECUTE's path that is pure: the checks made
# before a backend is taken (each expectation is what MariaDB 10.11 answered to the same bytes:
# 1835 Malformed communication packet, 1295 This command is not supported in the prepared
# statement protocol yet), the header against the statement, the rows without values, the types
# put back for a statement re-prepared on another backend (core/statements.py), the command
# table, and MariaDB's answers (recorded from 10.11; the unit-results one built per MariaDB's
# protocol pages, as no 11.5 runs here) through the ResponseTracker, whole and byte by byte.
from __future__ import annotations

import struct

import pytest

from mysqlpool_proxy.constants import (
    COM_STMT_BULK_EXECUTE,
    MARIADB_CLIENT_BULK_UNIT_RESULTS,
    MARIADB_CLIENT_STMT_BULK_OPERATIONS,
)
from mysqlpool_proxy.core.statements import ClientStatement, ServerStatement, backend_statement_packet
from mysqlpool_proxy.protocol.bulk import (
    BulkHeader,
    check_bulk,
    indicators_only,
    parse_bulk,
    with_bulk_types,
)
from mysqlpool_proxy.protocol.command import Handling, spec_for
from mysqlpool_proxy.protocol.framing import Packet, encode_packet
from mysqlpool_proxy.protocol.response import Expect, Phase
from mysqlpool_proxy.protocol.stmt import ExecuteRefused

from .helpers import Relaying, decode_all, feed_whole_and_bytewise

BULK = MARIADB_CLIENT_STMT_BULK_OPERATIONS
MALFORMED = (1835, "Malformed communication packet")
UNSUPPORTED = (1295, "This command is not supported in the prepared statement protocol yet")
TYPES = b"\x08\x00\xfd\x00"  # LONGLONG, VAR_STRING


def bulk(rest: bytes = b"", stmt_id: int = 7, flags: int = 0) -> bytes:
    return b"\xfa" + struct.pack("<IH", stmt_id, flags) + rest


def row(i: int, v: bytes) -> bytes:
    return b"\x00" + struct.pack("<q", i) + b"\x00" + bytes((len(v),)) + v


@pytest.mark.parametrize("payload, capabilities, refused", [
    (b"\xfa" + struct.pack("<I", 7), BULK, MALFORMED),  # checked first, even without the capability
    (b"\xfa" + struct.pack("<I", 7), 0, MALFORMED),
    (bulk(b"", flags=0)[:6], BULK, MALFORMED),
    (bulk(TYPES + row(1, b"a"), flags=128), 0, UNSUPPORTED),  # the client did not negotiate bulk operations
    (bulk(row(1, b"a"), flags=1), BULK, UNSUPPORTED),  # an unknown flag
    (bulk(TYPES + row(1, b"a"), flags=128 | 64), BULK, UNSUPPORTED),  # unit results, not negotiated
    (bulk(TYPES + row(1, b"a"), flags=128 | 256), BULK | MARIADB_CLIENT_BULK_UNIT_RESULTS, UNSUPPORTED),
])
def test_refused_as_the_server_refuses(payload, capabilities, refused):
    with pytest.raises(ExecuteRefused) as info:
        check_bulk(payload, capabilities)
    assert (info.value.errno, str(info.value)) == refused


@pytest.mark.parametrize("payload, capabilities", [
    (bulk(), BULK),  # no rows: the server's to answer
    (bulk(row(1, b"a")), BULK),
    (bulk(TYPES + row(1, b"a"), flags=128), BULK),
    (bulk(TYPES + row(1, b"a"), flags=128 | 64), BULK | MARIADB_CLIENT_BULK_UNIT_RESULTS),
])
def test_let_through(payload, capabilities):
    check_bulk(payload, capabilities)


@pytest.mark.parametrize("payload, params, expected", [
    (bulk(TYPES + row(1, b"a"), stmt_id=9, flags=128), 2, BulkHeader(9, 128, TYPES)),
    (bulk(row(1, b"a"), stmt_id=9), 2, BulkHeader(9, 0, None)),
    (bulk(TYPES, flags=128), 2, BulkHeader(7, 128, TYPES)),  # types, no row: the server's to answer
    (bulk(b"", flags=128), 0, BulkHeader(7, 128, None)),  # no parameters: the server refuses it (1295)
])
def test_parsed(payload, params, expected):
    assert parse_bulk(payload, params) == expected


@pytest.mark.parametrize("payload, params", [
    (bulk(b"", flags=128), 2),
    (bulk(TYPES[:3], flags=128), 2),
    (bulk(TYPES, flags=128), 3),
])
def test_types_cut_short_are_malformed(payload, params):
    with pytest.raises(ExecuteRefused) as info:
        parse_bulk(payload, params)
    assert (info.value.errno, str(info.value)) == MALFORMED


@pytest.mark.parametrize("rows, expected", [
    (b"", True),
    (b"\x01\x01\x01\x01", True),  # NULL, NULL; NULL, NULL
    (b"\x02\x03\x01\x02", True),  # DEFAULT, IGNORE, NULL...
    (row(1, b"a"), False),
    (b"\x01\x00" + struct.pack("<q", 1), False),  # NULL, then a value
    (b"\x04", False),  # no such indicator: the server's to refuse
])
def test_rows_without_values(rows, expected):
    assert indicators_only(bulk(rows)) is expected


def test_types_put_back_keep_everything_else():
    rows = row(1, b"a") + row(2, b"\xfb")
    assert with_bulk_types(bulk(rows, stmt_id=5), TYPES) == bulk(TYPES + rows, stmt_id=5, flags=128)
    assert parse_bulk(with_bulk_types(bulk(rows), TYPES), 2).types == TYPES


def _packet(payload: bytes) -> Packet:
    return Packet(0, 0, payload, encode_packet(payload, 0))


def test_backend_packet_maps_the_statement_and_puts_back_the_types_its_server_statement_lacks():
    stmt = ClientStatement(3, b"INSERT INTO t VALUES (?, ?)", (b"s",), 2, 0)
    first = ServerStatement(41, 2, 0)
    sent = decode_all(backend_statement_packet(stmt, first, _packet(bulk(TYPES + row(1, b"a"), 3, 128))))
    assert [p.payload for p in sent] == [bulk(TYPES + row(1, b"a"), 41, 128)]
    assert stmt.types == TYPES and first.types == TYPES
    # the next bulk sends no types: its server statement has them
    sent = decode_all(backend_statement_packet(stmt, first, _packet(bulk(row(2, b"b"), 3))))
    assert [p.payload for p in sent] == [bulk(row(2, b"b"), 41)]
    # the statement moved: prepared again on another backend, it has none there
    moved = ServerStatement(8, 2, 0)
    sent = decode_all(backend_statement_packet(stmt, moved, _packet(bulk(row(3, b"c"), 3))))
    assert [p.payload for p in sent] == [bulk(TYPES + row(3, b"c"), 8, 128)]
    assert moved.types == TYPES


def test_an_execute_and_a_bulk_share_the_types_the_client_bound():
    stmt = ClientStatement(3, b"INSERT INTO t VALUES (?, ?)", (b"s",), 2, 0)
    execute = b"\x17" + struct.pack("<IBI", 3, 0, 1) + b"\x00\x01" + TYPES + struct.pack("<q", 1) + b"\x01a"
    backend_statement_packet(stmt, ServerStatement(41, 2, 0), _packet(execute))
    assert stmt.types == TYPES
    moved = ServerStatement(8, 2, 0)
    sent = decode_all(backend_statement_packet(stmt, moved, _packet(bulk(row(3, b"c"), 3))))
    assert [p.payload for p in sent] == [bulk(TYPES + row(3, b"c"), 8, 128)]


def test_the_command_is_relayed_and_answered_like_an_execute():
    spec = spec_for(COM_STMT_BULK_EXECUTE)
    assert (spec.name, spec.handling, spec.expect) == ("stmt_bulk_execute", Handling.RELAY, Expect.RESULT)


# What MariaDB 10.11 answered (tests/integration/test_mariadb_extensions.py runs the same against it).
OK_3_ROWS = bytes.fromhex("00030002000000") + b"\x26Records: 3  Duplicates: 0  Warnings: 0"
DUPLICATE = b"\xff\x26\x04#23000Duplicate entry '1' for key 'PRIMARY'"
RETURNING = [bytes.fromhex(h) for h in (
    "02",
    "036465660174026b76026b76026964026964000c3f000b000000030350000000",
    "036465660174026b76026b7601760176000c2d0050000000fd0000000000",
    "fe00000200",
    "00000a0000000172",
    "00000b0000000173",
    "fe00000200",
)]
# With SEND_UNIT_RESULTS (MariaDB 11.5+): a result set of (insert id, affected rows), binary rows.
UNIT_RESULTS = [bytes.fromhex(h) for h in (
    "02",
    "03646566000000024964000c3f001400000008a100000000",
    "036465660000000d41666665637465645f726f7773000c3f001400000008a100000000",
    "fe00000200",
    "000001000000000000000100000000000000",
    "000002000000000000000100000000000000",
    "fe00000200",
)]


@pytest.mark.parametrize("packets, shape", [
    ([OK_3_ROWS], dict(ok_count=1, affected_rows=3, result_sets=0, error=None)),
    ([DUPLICATE], dict(ok_count=0, result_sets=0)),
    (RETURNING, dict(ok_count=0, result_sets=1, error=None)),
    (UNIT_RESULTS, dict(ok_count=0, result_sets=1, error=None)),
], ids=["ok", "duplicate", "returning", "unit_results"])
def test_the_answers_end_where_the_server_ends_them(packets, shape):
    data = b"".join(encode_packet(p, i + 1) for i, p in enumerate(packets))
    later = encode_packet(b"\x00\x00\x00\x02\x00\x00\x00", 1)

    def check(result):
        assert result.phase is Phase.DONE and result.consumed == len(data) and result.extra == later
        assert result.out == data
        for name, value in shape.items():
            assert getattr(result, name) == value, name

    result = feed_whole_and_bytewise(lambda: Relaying(expect=Expect.RESULT, binary=True), data + later, check)
    if packets == [DUPLICATE]:
        assert result.error.errno == 1062

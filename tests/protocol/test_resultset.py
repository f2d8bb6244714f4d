# protocol/resultset.py: result sets the proxy builds itself, read back by
# PyMySQL's own client code (MySQLResult over an in-memory "connection" that
# checks sequence ids exactly as pymysql.Connection._read_packet does) and
# by the proxy's ResponseTracker, which must see one complete response.
from __future__ import annotations

import pymysql
import pytest
from pymysql import converters
from pymysql.constants import FIELD_TYPE, FLAG
from pymysql.protocol import FieldDescriptorPacket, MysqlPacket

from mysqlpool_proxy.constants import CLIENT, SERVER_STATUS
from mysqlpool_proxy.errors import ProxyError
from mysqlpool_proxy.protocol.packets import parse_err, parse_ok
from mysqlpool_proxy.protocol.response import Expect, Phase
from mysqlpool_proxy.protocol.resultset import (
    CHARSET_BINARY,
    CHARSET_UTF8MB4,
    NUM_FLAG,
    Column,
    Ok,
    Rows,
    column_definition,
    columns,
    encode_reply,
    field_list_end,
    result_set,
    select_reply,
    text_row,
    text_value,
)
from tests.protocol.helpers import Relaying, chunkings, decode_frames

AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
INT = FIELD_TYPE.LONGLONG
FLOAT = FIELD_TYPE.DOUBLE


class BytesConnection:
    """What pymysql.connections.MySQLResult reads through: packets from bytes, sequence ids checked."""

    use_unicode = True
    encoding = "utf8"
    decoders = converters.decoders
    _result = None

    def __init__(self, data: bytes, first_seq: int):
        self.data = data
        self.pos = 0
        self._next_seq_id = first_seq

    def _read_packet(self, packet_type=MysqlPacket):
        parts = []
        while True:
            header = self.data[self.pos:self.pos + 4]
            assert len(header) == 4, "result set ended early"
            length = int.from_bytes(header[:3], "little")
            assert header[3] == self._next_seq_id, f"sequence id {header[3]}, expected {self._next_seq_id}"
            self._next_seq_id = (self._next_seq_id + 1) % 256
            parts.append(self.data[self.pos + 4:self.pos + 4 + length])
            self.pos += 4 + length
            if length < 0xFFFFFF:
                break
        packet = packet_type(b"".join(parts), "utf8")
        if packet.is_error_packet():
            packet.raise_for_error()
        return packet


def read_with_pymysql(data: bytes, first_seq: int = 1) -> pymysql.connections.MySQLResult:
    conn = BytesConnection(data, first_seq)
    result = pymysql.connections.MySQLResult(conn)
    result.read()
    assert conn.pos == len(data), "bytes after the result set"
    return result


def test_names_types_and_values():
    columns = [Column("name"), Column("count", INT), Column("avg", FLOAT), Column("missing")]
    rows = [("app", 3, 0.25, None), ("ünïcødé ✓ 🐬", -7, 12.0, "x")]
    result = read_with_pymysql(result_set(columns, rows, AUTOCOMMIT, 1))
    assert [d[0] for d in result.description] == ["name", "count", "avg", "missing"]
    assert [d[1] for d in result.description] == [FIELD_TYPE.VAR_STRING, INT, FLOAT, FIELD_TYPE.VAR_STRING]
    assert result.rows == (("app", 3, 0.25, None), ("ünïcødé ✓ 🐬", -7, 12.0, "x"))
    assert not result.has_next


def test_numbers_are_binary_and_flagged_text_is_utf8mb4():
    result = read_with_pymysql(result_set([Column("n", INT), Column("s")], [(1, "a")], AUTOCOMMIT))
    number, text = result.fields
    assert number.charsetnr == CHARSET_BINARY and number.flags & NUM_FLAG and number.flags & FLAG.BINARY
    assert text.charsetnr == CHARSET_UTF8MB4 and not text.flags & NUM_FLAG
    assert number.db == b"" and number.catalog == b"def"


def test_string_column_length_covers_the_longest_value():
    result = read_with_pymysql(result_set(["s"], [("ab",), ("abcdef",), (None,)], AUTOCOMMIT))
    assert result.fields[0].length == 6 * 4  # bytes: characters times utf8mb4's 4


def test_no_rows():
    result = read_with_pymysql(result_set([Column("a"), Column("b", INT)], [], AUTOCOMMIT))
    assert result.rows == () and len(result.description) == 2


def test_many_rows_wrap_sequence_ids():
    rows = [(i, f"row {i}") for i in range(1000)]
    data = result_set([Column("i", INT), Column("label")], rows, AUTOCOMMIT, first_seq=1)
    result = read_with_pymysql(data)
    assert result.rows == tuple(rows)
    seqs = [seq for _, seq in decode_frames(data)]
    assert seqs == [(1 + i) % 256 for i in range(len(seqs))]


def test_first_seq_is_honoured():
    data = result_set(["a"], [("x",)], AUTOCOMMIT, first_seq=5)
    assert decode_frames(data)[0][1] == 5
    assert read_with_pymysql(data, first_seq=5).rows == (("x",),)


def test_status_is_in_both_eofs():
    status = AUTOCOMMIT | SERVER_STATUS.SERVER_STATUS_IN_TRANS
    for label, chunks in chunkings(result_set(["a"], [("x",), (None,)], status), seeds=(1, 2)):
        relay = Relaying(expect=Expect.RESULT)
        for chunk in chunks:
            relay.feed(chunk)
        got = relay.result()
        assert got.phase is Phase.DONE, label
        assert got.status == status and got.extra == b"", label


def test_values_as_text():
    assert text_value(None) is None
    assert text_value(True) == b"1" and text_value(False) == b"0"
    assert text_value(42) == b"42" and text_value(-1) == b"-1"
    assert text_value(0.25) == b"0.25" and text_value(1e-05) == b"0.00001" and text_value(3.0) == b"3"
    assert text_value(0.0000001) == b"0" and text_value(-0.0) == b"0"
    assert text_value("é") == "é".encode() and text_value(b"\x00\xff") == b"\x00\xff"


def test_text_row_null_and_lenenc():
    assert text_row([None, "ab", 7]) == b"\xfb\x02ab\x017"
    long_value = "x" * 300
    assert text_row([long_value]) == b"\xfc\x2c\x01" + long_value.encode()


def test_long_value_in_a_row():
    value = "v" * 70000
    assert read_with_pymysql(result_set(["big"], [(value,)], AUTOCOMMIT)).rows == ((value,),)


def test_column_definition_parses_as_pymysql_field():
    field = FieldDescriptorPacket(column_definition("x", INT, table="t"), "utf8")
    assert (field.name, field.table_name, field.type_code, field.length, field.scale) == ("x", "t", INT, 21, 0)
    field = FieldDescriptorPacket(column_definition("f", FLOAT), "utf8")
    assert field.scale == 31
    field = FieldDescriptorPacket(column_definition("s", charset=63, length=10, flags=FLAG.NOT_NULL), "utf8")
    assert (field.charsetnr, field.length, field.flags) == (63, 10, FLAG.NOT_NULL)


def test_row_of_the_wrong_width_is_refused():
    with pytest.raises(ValueError):
        result_set(["a", "b"], [("only one",)], AUTOCOMMIT)


def test_field_list_end_is_a_lone_eof():
    relay = Relaying(expect=Expect.FIELD_LIST)
    relay.feed(field_list_end(AUTOCOMMIT, 1))
    assert relay.result().phase is Phase.DONE and relay.result().extra == b""


def test_columns_spec():
    assert columns("name count:i avg:f") == [Column("name"), Column("count", INT), Column("avg", FLOAT)]
    with pytest.raises(KeyError):
        columns("bad:x")


def test_encode_reply_rows_ok_and_error():
    caps = CLIENT.PROTOCOL_41
    rows = encode_reply(Rows(columns("a b:i"), [("x", 1)]), AUTOCOMMIT, 3, caps)
    assert rows == result_set(columns("a b:i"), [("x", 1)], AUTOCOMMIT, 3)
    ok = encode_reply(Ok("done: 2 pools"), AUTOCOMMIT, 1, caps)
    # the info is length-encoded as servers send it, whatever the flags (PyMySQL keeps the length byte)
    assert ok[3] == 1 and parse_ok(ok[4:], caps | CLIENT.SESSION_TRACK).info == b"done: 2 pools"
    assert read_with_pymysql(ok).message == b"\x0ddone: 2 pools"
    err = encode_reply(ProxyError(1094, "Unknown thread id: 5"), AUTOCOMMIT, 2, caps)
    assert err[3] == 2
    parsed = parse_err(err[4:])
    assert (parsed.errno, parsed.sqlstate, parsed.message) == (1094, "HY000", b"Unknown thread id: 5")


def test_select_reply():
    known = {"@@version_comment": "proxy", "database()": None, "user()": "admin@h", "connection_id()": 7}
    reply = select_reply("select @@version_comment limit 1", known)
    assert reply.columns == [Column("@@version_comment")] and reply.rows == [("proxy",)]
    reply = select_reply("SELECT DATABASE(), USER()  LIMIT 1", known)
    assert [c.name for c in reply.columns] == ["DATABASE()", "USER()"] and reply.rows == [(None, "admin@h")]
    reply = select_reply("  select connection_id ( )\n", known)
    assert reply.columns == [Column("connection_id ( )", INT)] and reply.rows == [(7,)]
    for sql in ("select 2", "select @@version_comment, 2", "select * from t", "show databases", "select"):
        assert select_reply(sql, known) is None, sql


@pytest.mark.timeout(10)
def test_select_reply_is_linear_in_the_text():
    # Once quadratic (a lazy item group before an optional LIMIT 1): 12 s for 24 000 spaces,
    # hours for a megabyte, all on the event loop. A megabyte now takes milliseconds.
    assert select_reply("select a" + " " * 1_000_000 + "x", {"a": 1}) is None
    assert select_reply("select a" + " " * 1_000_000 + "limit 1", {"a": 1}).rows == [(1,)]

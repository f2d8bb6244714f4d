# MySQL 8 query attributes (CLIENT_QUERY_ATTRIBUTES) through the proxy to MariaDB,
# which has none: a raw client that negotiates the capability by hand sends
# COM_QUERY with attributes (a W3C traceparent) and with none, and
# COM_STMT_EXECUTE in the MySQL 8 form (PARAMETER_COUNT_AVAILABLE, a parameter
# count, names), and gets the statements' own results; what the proxy reads of
# the SQL (SET NAMES, CONNECTION_ID()) it still reads; a malformed block gets
# MySQL's 1835 and the connection goes on. mysql-connector-python, which sends
# attributes whenever the server offers them, does so with add_attribute() on
# plain and prepared cursors.
from __future__ import annotations

import struct
import time
import warnings

import mysql.connector
import pytest
from pymysql.constants import CLIENT

from mysqlpool_proxy.protocol.framing import MAX_FRAME, encode_packet
from tests.fuzz.wire import Answer, RawConnection, lenenc
from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER

pytestmark = pytest.mark.integration

QUERY_ATTRIBUTES = 1 << 27
PARAMETER_COUNT_AVAILABLE = 0x08
TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
STRING, LONGLONG = 0xFE, 0x08


def named(field_type: int, name: bytes) -> bytes:
    return bytes((field_type, 0)) + bytes((len(name),)) + name


def string(value: bytes) -> bytes:
    return bytes((len(value),)) + value


TRACE_ATTRIBUTE = (named(STRING, b"traceparent"), string(TRACEPARENT))


def with_attributes(sql: bytes, *attributes: tuple[bytes, bytes]) -> bytes:
    """COM_QUERY in the MySQL 8 form: count, one parameter set, bitmap, flag 1, types and names, values."""
    block = bytes((len(attributes), 1))
    if attributes:
        block += bytes((len(attributes) + 7) // 8) + b"\x01" + b"".join(t for t, _ in attributes)
        block += b"".join(v for _, v in attributes)
    return b"\x03" + block + sql


@pytest.fixture
def raw(proxy):
    conn = RawConnection.open(proxy.host, proxy.port)
    flags = CLIENT.PROTOCOL_41 | CLIENT.PLUGIN_AUTH | CLIENT.TRANSACTIONS | CLIENT.MULTI_RESULTS | QUERY_ATTRIBUTES
    conn.login(APP_USER, APP_PASSWORD, APP_DB, flags, 45, time.monotonic() + 10, speaks=QUERY_ATTRIBUTES)
    assert conn.caps & QUERY_ATTRIBUTES  # the proxy offered it, and the login negotiated it
    yield conn
    conn.close()


def run(conn: RawConnection, payload: bytes) -> Answer:
    conn.send(encode_packet(payload, 0))
    return conn.read_answer(payload[0], time.monotonic() + 30)


def text_values(answer: Answer) -> list[bytes]:
    """The first column of each text row."""
    assert answer.kind == "rows", answer.describe()
    values = []
    for row in answer.rows:
        n, pos = lenenc(row, 0)
        values.append(row[pos:pos + (n or 0)])
    return values


def binary_value(answer: Answer) -> bytes:
    """The one string column of the one binary row."""
    assert answer.kind == "rows" and len(answer.rows) == 1, answer.describe()
    row = answer.rows[0]
    n, pos = lenenc(row, 2)  # 0x00, then a one-byte null bitmap
    return row[pos:pos + (n or 0)]


def prepare(conn: RawConnection, sql: bytes) -> tuple[int, int]:
    answer = run(conn, b"\x16" + sql)
    assert answer.kind == "prepared", answer.describe()
    ok = answer.data
    return int.from_bytes(ok[1:5], "little"), int.from_bytes(ok[7:9], "little")


def execute(stmt_id: int, flags: int, rest: bytes) -> bytes:
    return b"\x17" + struct.pack("<IBI", stmt_id, flags, 1) + rest


def test_queries_with_and_without_attributes(raw):
    assert text_values(run(raw, with_attributes(b"SELECT CONCAT('trace', 'd')", TRACE_ATTRIBUTE))) == [b"traced"]
    assert text_values(run(raw, with_attributes(b"SELECT 40 + 2"))) == [b"42"]
    two = (named(LONGLONG, b"tenant"), struct.pack("<q", 7))
    assert text_values(run(raw, with_attributes(b"SELECT 'two'", TRACE_ATTRIBUTE, two))) == [b"two"]


def test_the_proxy_reads_the_sql_not_the_attributes(raw):
    # SET NAMES is answered by the proxy, CONNECTION_ID() rewritten to the proxy's id: both
    # need the statement itself, found behind the attribute block.
    assert run(raw, with_attributes(b"SET NAMES latin1", TRACE_ATTRIBUTE)).kind == "ok"
    assert text_values(run(raw, with_attributes(b"SELECT @@character_set_client", TRACE_ATTRIBUTE))) == [b"latin1"]
    answer = run(raw, with_attributes(b"SELECT CONNECTION_ID()", TRACE_ATTRIBUTE))
    assert text_values(answer) == [str(raw.thread_id).encode()]
    assert run(raw, with_attributes(b"BEGIN", TRACE_ATTRIBUTE)).kind == "ok"
    assert run(raw, with_attributes(b"SET @kept = 'in the transaction'")).kind == "ok"
    assert text_values(run(raw, with_attributes(b"SELECT @kept", TRACE_ATTRIBUTE))) == [b"in the transaction"]
    assert run(raw, with_attributes(b"COMMIT")).kind == "ok"


@pytest.mark.parametrize("payload", [
    pytest.param(b"\x03\x00\x02SELECT 1", id="two parameter sets"),
    pytest.param(b"\x03\x01\x01\x00\x00" + named(STRING, b"k") + string(b"v") + b"SELECT 1", id="flag 0"),
    pytest.param(b"\x03\x01\x01\x00\x01\xfe\x00\x09ab", id="a name cut short"),
    pytest.param(b"\x03", id="no block at all"),
])
def test_a_malformed_block_gets_mysqls_error_and_the_connection_goes_on(raw, payload):
    answer = run(raw, payload)
    assert (answer.kind, answer.errno, answer.message) == ("err", 1835, b"Malformed communication packet")
    assert text_values(run(raw, with_attributes(b"SELECT 'still here'", TRACE_ATTRIBUTE))) == [b"still here"]


def test_a_query_of_two_frames_is_answered_after_its_second(raw):
    # 16 MiB and one byte: two frames, the answer numbered from 2. Without its block the payload would
    # fit in one frame, and the server would number its answer from 1: the proxy keeps the two frames.
    head, tail = b"\x03\x00\x01SELECT LENGTH('", b"')"
    payload = head + b"a" * (MAX_FRAME + 1 - len(head) - len(tail)) + tail
    assert len(payload) == MAX_FRAME + 1
    answer = run(raw, payload)
    assert text_values(answer) == [str(MAX_FRAME + 1 - len(head) - len(tail)).encode()]
    assert answer.seq == 6  # column count 2, its definition 3, EOF 4, the row 5, EOF 6
    assert text_values(run(raw, with_attributes(b"SELECT 'next'", TRACE_ATTRIBUTE))) == [b"next"]


def test_executes_in_the_mysql8_form(raw):
    stmt_id, params = prepare(raw, b"SELECT CONCAT(?, '-x')")
    assert params == 1
    # The parameter, then a traceparent attribute: a count of 2, names after the types.
    first = execute(stmt_id, PARAMETER_COUNT_AVAILABLE,
                    b"\x02\x00\x01" + named(STRING, b"") + named(STRING, b"traceparent")
                    + string(b"abc") + string(TRACEPARENT))
    assert binary_value(run(raw, first)) == b"abc-x"
    # Types bound before (flag 0), no attribute: the count alone.
    again = execute(stmt_id, PARAMETER_COUNT_AVAILABLE, b"\x01\x00\x00" + string(b"def"))
    assert binary_value(run(raw, again)) == b"def-x"
    # A statement with no parameter, attributes only.
    bare_id, bare_params = prepare(raw, b"SELECT 'bare'")
    assert bare_params == 0
    only = execute(bare_id, PARAMETER_COUNT_AVAILABLE, b"\x01\x00\x01" + TRACE_ATTRIBUTE[0] + TRACE_ATTRIBUTE[1])
    assert binary_value(run(raw, only)) == b"bare"
    assert binary_value(run(raw, execute(bare_id, 0, b""))) == b"bare"
    # Malformed: a name cut short (1835); fewer values than the statement's parameters (1210).
    answer = run(raw, execute(stmt_id, PARAMETER_COUNT_AVAILABLE, b"\x01\x00\x01\xfe\x00\x09ab"))
    assert (answer.kind, answer.errno) == ("err", 1835)
    answer = run(raw, execute(stmt_id, PARAMETER_COUNT_AVAILABLE, b"\x00"))
    assert (answer.kind, answer.errno) == ("err", 1210)
    assert binary_value(run(raw, again)) == b"def-x"


def connect(proxy):
    return mysql.connector.connect(host=proxy.host, port=proxy.port, user=APP_USER, password=APP_PASSWORD,
                                   database=APP_DB, charset="utf8mb4", collation="utf8mb4_general_ci",
                                   autocommit=True, connection_timeout=10, use_pure=True)


@pytest.mark.parametrize("prepared", [False, True], ids=["text", "prepared"])
def test_mysql_connector_add_attribute(proxy, prepared):
    # Without the capability the connector warns "This version of the server does not support
    # Query Attributes" and sends none: a warning fails the test. (No None attribute: the
    # connector's text protocol writes a NULL's type without its name, a block MySQL refuses too.)
    with warnings.catch_warnings(), connect(proxy) as conn:
        warnings.simplefilter("error")
        with conn.cursor(prepared=prepared) as cur:
            cur.add_attribute("traceparent", TRACEPARENT.decode())
            cur.add_attribute("tenant", 7)
            cur.execute("SELECT CONCAT(%s, '-', %s)", ("a", 1))
            assert tuple(cur.fetchone()) == ("a-1",)
            cur.execute("SELECT 'no parameters'")
            assert tuple(cur.fetchone()) == ("no parameters",)
            cur.clear_attributes()
            cur.execute("SELECT %s + 1", (41,))
            assert tuple(cur.fetchone()) == (42,)

# protocol/attributes.py and stmt.plain_execute: MySQL 8 query attributes
# (CLIENT_QUERY_ATTRIBUTES) taken out of COM_QUERY and COM_STMT_EXECUTE. The
# byte sequences are built from the MySQL 8 protocol documentation
# (dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query.html and
# page_protocol_com_stmt_execute.html); what is refused, and with which error, is
# what MySQL's own reader refuses (sql/protocol_classic.cc, parse_query_bind_params
# and get_ps_param_len). The mysql2 executes are the bytes keploy captured from
# mysql2 (Node.js) against MySQL 8.0 (github.com/keploy/keploy, package
# preparedstmt, TestDecodeStmtExecute_QueryAttrsExtension and its neighbours).
# Each packet is fed whole, and framed and fed to the decoder one byte at a time;
# every cut of a block is refused cleanly or read, never more.
from __future__ import annotations

import struct

import pytest

from mysqlpool_proxy.errors import RemoteProtocolError
from mysqlpool_proxy.protocol.attributes import AttributesRefused, plain_query
from mysqlpool_proxy.protocol.framing import MAX_FRAME, Packet, PacketDecoder, encode_packet, same_frames
from mysqlpool_proxy.protocol.stmt import ExecuteRefused, parse_execute, plain_execute

MALFORMED = (1835, "Malformed communication packet")
WRONG = (1210, "Incorrect arguments to mysqld_stmt_execute")

TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"  # W3C trace context's example
STRING, VAR_STRING, LONGLONG, LONG, DOUBLE, DATETIME, DECIMAL, BOOL = 0xFE, 0xFD, 0x08, 0x03, 0x05, 0x0C, 0x00, 0xF4


def lenenc(data: bytes) -> bytes:
    assert len(data) < 251
    return bytes((len(data),)) + data


def param(field_type: int, name: bytes, unsigned: bool = False) -> bytes:
    """A type (field type, flag byte) with its name, as each parameter's metadata is sent."""
    return bytes((field_type, 0x80 if unsigned else 0)) + lenenc(name)


def query(sql: bytes, *params: bytes, nulls: int = 0, values: bytes = b"", flag: int = 1) -> bytes:
    """COM_QUERY with an attribute block: count, set count 1, bitmap, flag, types with names, values."""
    count = len(params)
    block = bytes((count, 1))
    if count:
        block += nulls.to_bytes((count + 7) // 8, "little") + bytes((flag,)) + b"".join(params) + values
    return b"\x03" + block + sql


def through_decoder(payload: bytes) -> bytes:
    """The payload, framed and fed to a decoder one byte at a time."""
    decoder = PacketDecoder()
    raw = encode_packet(payload, 0)
    for i in range(len(raw)):
        assert decoder.next_packet() is None
        decoder.feed(raw[i:i + 1])
    pkt = decoder.next_packet()
    assert isinstance(pkt, Packet)
    return pkt.payload


# -- COM_QUERY ---------------------------------------------------------------------

ONE_ATTRIBUTE = query(b"SELECT 1", param(STRING, b"traceparent"), values=lenenc(TRACEPARENT))
QUERIES = [
    pytest.param(b"\x03\x00\x01SELECT 1", b"\x03SELECT 1", id="no attributes"),
    pytest.param(b"\x03\x00\x01", b"\x03", id="no attributes, no SQL"),
    pytest.param(ONE_ATTRIBUTE, b"\x03SELECT 1", id="traceparent"),
    pytest.param(query(b"SELECT @@version", param(LONGLONG, b"tenant", unsigned=True), param(VAR_STRING, b"gone"),
                       param(DOUBLE, b"ratio"), param(LONG, b""), nulls=0b0010,
                       values=struct.pack("<Qdi", 2**64 - 1, 0.5, -7)),
                 b"\x03SELECT @@version", id="fixed-size values and a NULL"),
    pytest.param(query(b"DO 1", param(DATETIME, b"at"), param(DECIMAL, b"d"),
                       values=b"\x07\xea\x07\x01\x1a\x12\x32\x2d" + lenenc(b"1.50")),
                 b"\x03DO 1", id="datetime and decimal"),
    pytest.param(query(b"SELECT 2", *(param(STRING, b"k%d" % i) for i in range(9)), nulls=0x1FF),
                 b"\x03SELECT 2", id="nine NULLs: a two-byte bitmap"),
    pytest.param(query(b"SELECT 3", param(BOOL, b"b"), nulls=1), b"\x03SELECT 3", id="a NULL of type BOOL"),
    pytest.param(b"\x03\xfc\x00\x00\x01SELECT 4", b"\x03SELECT 4", id="a count in three bytes"),
    pytest.param(query(b"SELECT 5", param(STRING, b"k"), values=b"\xfc\x03\x00abc"), b"\x03SELECT 5",
                 id="a value length in three bytes"),
    pytest.param(query(b"SELECT 1", param(STRING, b"k"), values=b"\x40"), b"\x03", id="a string longer than the rest"),
    pytest.param(query(b"SELECT 1", param(STRING, b"k"), values=b"\xfb"), b"\x03", id="0xfb is a length of 251"),
]


@pytest.mark.parametrize("payload, plain", QUERIES)
def test_query_attributes_taken_out(payload, plain):
    assert plain_query(payload) == plain
    assert plain_query(through_decoder(payload)) == plain
    assert plain_query(memoryview(payload)) == plain


@pytest.mark.parametrize("payload", [
    pytest.param(b"\x03", id="no count"),
    pytest.param(b"\x03\x00", id="no set count"),
    pytest.param(b"\x03\x00\x02SELECT 1", id="two parameter sets"),
    pytest.param(b"\x03\x00\x00SELECT 1", id="no parameter set"),
    pytest.param(b"\x03\xfb\x01SELECT 1", id="a NULL count"),
    pytest.param(b"\x03\xfd\x00\x00\x01\x01SELECT 1", id="65536 parameters"),
    pytest.param(b"\x03\xfc\x00", id="a count cut short"),
    pytest.param(b"\x03\x01\x01", id="no bitmap"),
    pytest.param(b"\x03\x01\x01\x00", id="no flag"),
    pytest.param(query(b"SELECT 1", param(STRING, b"k"), values=b"\x01x", flag=0), id="flag 0"),
    pytest.param(query(b"SELECT 1", param(STRING, b"k"), values=b"\x01x", flag=2), id="flag 2"),
    pytest.param(b"\x03\x01\x01\x00\x01\xfe", id="a type cut short"),
    pytest.param(b"\x03\x01\x01\x00\x01\xfe\x00\x05ab", id="a name cut short"),
    pytest.param(b"\x03\x01\x01\x00\x01\xfe\x00\xfbSELECT 1", id="a NULL name length"),
    pytest.param(query(b"", param(BOOL, b"b"), values=b"\x01"), id="a value of type BOOL"),
    pytest.param(query(b"", param(STRING, b"k"), values=b"\xffSELECT 1"), id="a value length of 0xff"),
    pytest.param(query(b"", param(STRING, b"k"), values=b"\xfc\x01"), id="a value length cut short"),
    pytest.param(query(b"", param(LONG, b"k"), values=b"\x01\x02\x03"), id="three bytes of a LONG"),
    pytest.param(query(b"", param(LONGLONG, b"k"), values=b"\x01" * 7), id="seven bytes of a LONGLONG"),
    pytest.param(query(b"", param(DATETIME, b"k"), values=b"\x07\xea\x07\x01"), id="a datetime cut short"),
    pytest.param(query(b"", param(DECIMAL, b"k"), values=b"\x04\x31\x2e"), id="a decimal cut short"),
])
def test_malformed_query_attributes_refused_as_mysql_refuses_them(payload):
    for fed in (payload, through_decoder(payload)):
        with pytest.raises(AttributesRefused) as info:
            plain_query(fed)
        assert (info.value.errno, str(info.value)) == MALFORMED
        assert isinstance(info.value, RemoteProtocolError)


@pytest.mark.parametrize("payload, plain", QUERIES)
def test_every_cut_of_a_query_is_read_or_refused(payload, plain):
    """Cut anywhere, a block is refused with 1835 or read (a cut string value takes the rest)."""
    for n in range(1, len(payload)):
        try:
            result = plain_query(payload[:n])
        except AttributesRefused as exc:
            assert exc.errno == 1835
        else:
            assert result.startswith(b"\x03") and len(result) <= len(plain)


def test_the_sql_is_what_the_analysis_sees():
    """The SQL comes out byte for byte, whatever it holds (a statement that looks like a block too)."""
    sql = b"SET NAMES utf8mb4; SELECT '\x00\x01\xfe' /* \x03\x00\x01 */"
    payload = query(sql, param(STRING, b"traceparent"), values=lenenc(TRACEPARENT))
    assert plain_query(payload) == b"\x03" + sql


# -- COM_STMT_EXECUTE --------------------------------------------------------------

def execute(stmt_id: int, flags: int, rest: bytes) -> bytes:
    return b"\x17" + struct.pack("<IBI", stmt_id, flags, 1) + rest


MYSQL2_ONE = bytes((0x17, 0x04, 0, 0, 0, 0x08, 0x01, 0, 0, 0, 0x01, 0x00, 0x01, 0xFD, 0x00, 0x00, 0x05)) + b"admin"
MYSQL2_TWO = (bytes((0x17, 0x02, 0, 0, 0, 0x08, 0x01, 0, 0, 0, 0x02, 0x00, 0x01, 0xFD, 0x00, 0x00, 0xFD, 0x00, 0x00))
              + b"\x05carol\x13carol@taskhub.local")
MYSQL2_NONE = bytes((0x17, 0x01, 0, 0, 0, 0x08, 0x01, 0, 0, 0, 0x00))

EXECUTES = [
    pytest.param(MYSQL2_ONE, 1, None, False, execute(4, 0, b"\x00\x01\xfd\x00\x05admin"), id="mysql2, one parameter"),
    pytest.param(MYSQL2_TWO, 2, None, False,
                 execute(2, 0, b"\x00\x01\xfd\x00\xfd\x00\x05carol\x13carol@taskhub.local"), id="mysql2, two"),
    pytest.param(MYSQL2_NONE, 0, None, False, execute(1, 0, b""), id="mysql2, no parameters"),
    pytest.param(execute(9, 0, b""), 0, None, False, execute(9, 0, b""), id="no parameters, no count"),
    pytest.param(execute(9, 0x01 | 0x08, b"\x00"), 0, None, False, execute(9, 0x01, b""), id="cursor flag kept"),
    pytest.param(execute(9, 0x08, b"\x01\x00\x01" + param(STRING, b"traceparent") + lenenc(TRACEPARENT)),
                 0, None, False, execute(9, 0, b""), id="attributes only"),
    pytest.param(execute(9, 0x08, b"\x02\x00\x01" + param(LONGLONG, b"") + param(STRING, b"traceparent")
                         + struct.pack("<q", 42) + lenenc(TRACEPARENT)),
                 1, None, False, execute(9, 0, b"\x00\x01\x08\x00" + struct.pack("<q", 42)),
                 id="a parameter and an attribute"),
    pytest.param(execute(9, 0x08, b"\x02\x03\x01" + param(LONGLONG, b"") + param(STRING, b"traceparent")),
                 1, None, False, execute(9, 0, b"\x01\x01\x08\x00"), id="both NULL"),
    pytest.param(execute(9, 0x08, b"\x09\x00\x00\x01" + param(LONG, b"") + b"".join(
        param(STRING, b"a%d" % i) for i in range(8)) + struct.pack("<i", 5) + b"".join(lenenc(b"v") for _ in range(8))),
                 1, None, False, execute(9, 0, b"\x00\x01\x03\x00" + struct.pack("<i", 5)),
                 id="nine: the bitmap shrinks"),
    pytest.param(execute(9, 0, b"\x01\x00\x01" + param(LONG, b"") + struct.pack("<i", 5)),
                 1, None, False, execute(9, 0, b"\x00\x01\x03\x00" + struct.pack("<i", 5)),
                 id="a count without the flag (the statement has parameters)"),
    pytest.param(execute(9, 0x08, b"\x02\x02\x00" + struct.pack("<i", 5)), 1, b"\x03\x00", False,
                 execute(9, 0, b"\x00\x00" + struct.pack("<i", 5)), id="types bound earlier, a NULL attribute"),
    pytest.param(execute(9, 0x08, b"\x01\x00\x00" + struct.pack("<i", 5)), 1, None, False,
                 execute(9, 0, b"\x00\x00" + struct.pack("<i", 5)), id="types never bound: the rest kept"),
    pytest.param(execute(9, 0x08, b"\x02\x00\x01" + param(LONG, b"") + param(STRING, b"t") + b"\x01"),
                 1, None, True, execute(9, 0, b"\x00\x01\x03\x00\x01"), id="long data: the rest kept"),
]


@pytest.mark.parametrize("payload, params, prior, long_data, plain", EXECUTES)
def test_execute_attributes_taken_out(payload, params, prior, long_data, plain):
    assert plain_execute(payload, params, prior, long_data) == plain
    assert plain_execute(through_decoder(payload), params, prior, long_data) == plain
    parse_execute(plain, params)  # the plain form is what the rest of the proxy reads


@pytest.mark.parametrize("payload, params, prior, refused", [
    pytest.param(b"\x17\x01\x00\x00\x00\x08", 1, None, MALFORMED, id="short of the fixed part"),
    pytest.param(execute(9, 0x08, b""), 0, None, MALFORMED, id="the flag, no count"),
    pytest.param(execute(9, 0, b""), 1, None, MALFORMED, id="parameters, no count"),
    pytest.param(execute(9, 0x08, b"\xfd\x00\x00\x01"), 1, None, MALFORMED, id="65536 parameters"),
    pytest.param(execute(9, 0x08, b"\x01"), 1, None, MALFORMED, id="no bitmap"),
    pytest.param(execute(9, 0x08, b"\x01\x00"), 1, None, MALFORMED, id="no flag"),
    pytest.param(execute(9, 0x08, b"\x01\x00\x01\xfd\x00"), 1, None, MALFORMED, id="no name"),
    pytest.param(execute(9, 0x08, b"\x01\x00\x01\xfd\x00\x09abc"), 1, None, MALFORMED, id="a name cut short"),
    pytest.param(execute(9, 0x08, b"\x01\x00\x01\xf4\x00\x00\x01"), 1, None, MALFORMED, id="a BOOL value"),
    pytest.param(execute(9, 0x08, b"\x01\x00\x01\x03\x00\x00\x01\x02"), 1, None, MALFORMED, id="a LONG cut short"),
    pytest.param(execute(9, 0x08, b"\x02\x00\x00" + struct.pack("<i", 5) + b"\x01x"), 1, b"\x03\x00", MALFORMED,
                 id="an attribute value with no type"),
    pytest.param(execute(9, 0x08, b"\x00"), 1, None, WRONG, id="no parameters for a statement with one"),
    pytest.param(execute(9, 0x08, b"\x01\x00\x01\x03\x00\x00" + struct.pack("<i", 5)), 2, None, WRONG,
                 id="one parameter for a statement with two"),
])
def test_malformed_executes_refused_as_mysql_refuses_them(payload, params, prior, refused):
    for fed in (payload, through_decoder(payload)):
        with pytest.raises(ExecuteRefused) as info:
            plain_execute(fed, params, prior, False)
        assert (info.value.errno, str(info.value)) == refused


@pytest.mark.parametrize("payload, params, prior, long_data, plain", EXECUTES)
def test_every_cut_of_an_execute_is_read_or_refused(payload, params, prior, long_data, plain):
    for n in range(1, len(payload)):
        try:
            plain_execute(payload[:n], params, prior, long_data)
        except ExecuteRefused as exc:
            assert exc.errno in (1835, 1210)


@pytest.mark.parametrize("length, plain_length, padded", [
    (100, 97, 97),  # one frame either way
    (MAX_FRAME + 1, MAX_FRAME - 1, MAX_FRAME),  # two frames (the second of one byte) stay two
    (MAX_FRAME + 1, MAX_FRAME + 1, MAX_FRAME + 1),
    (MAX_FRAME, MAX_FRAME - 3, MAX_FRAME),  # a full frame and an empty one
    (2 * MAX_FRAME + 5, 2 * MAX_FRAME - 2, 2 * MAX_FRAME),
])
def test_a_shortened_command_keeps_its_frames(length, plain_length, padded):
    """The server numbers its answer after the command's last frame, and the client expects it
    after its own: a command without its attributes fills as many frames as it came in."""
    raw = encode_packet(b"\x03" * length, 0)
    decoder = PacketDecoder()
    decoder.feed(raw)
    pkt = decoder.next_packet()
    assert isinstance(pkt, Packet)
    result = same_frames(pkt, b"\x03" + b"x" * (plain_length - 1), b" ")
    assert len(result) == padded and result.rstrip(b" ") == b"\x03" + b"x" * (plain_length - 1)
    assert len(result) // MAX_FRAME == length // MAX_FRAME

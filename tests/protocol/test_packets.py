# packets.py: OK (with and without CLIENT_SESSION_TRACK, info, session state),
# ERR (with and without SQLSTATE), EOF and is_eof (0xFE with length >= 9 is a
# length-encoded integer, not EOF), HandshakeV10 make -> parse (and as two
# real client libraries parse it), HandshakeResponse41 from PyMySQL's and
# MySQL Connector/Python's own client code and hand-built (MySQL 8 style,
# lenenc auth data, connect attributes), SSLRequest detection,
# COM_CHANGE_USER and strip_session_track. Real bytes come from the MariaDB
# captures where there are some.
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st

from mysqlpool_proxy.constants import CLIENT, SERVER_SESSION_STATE_CHANGED, SERVER_STATUS
from mysqlpool_proxy.errors import RemoteProtocolError
from mysqlpool_proxy.protocol import auth
from mysqlpool_proxy.protocol.framing import encode_packet
from mysqlpool_proxy.protocol.packets import (
    EofPacket,
    ErrPacket,
    HandshakeV10,
    OkPacket,
    is_eof,
    is_ssl_request,
    make_auth_more_data,
    make_auth_switch,
    make_eof,
    make_err,
    make_handshake_v10,
    make_ok,
    parse_change_user,
    parse_eof,
    parse_err,
    parse_handshake_response,
    parse_handshake_v10,
    parse_ok,
    strip_session_track,
)
from mysqlpool_proxy.protocol.wire import lenenc_bytes, lenenc_int

from .helpers import (
    BASIC_CLIENT_FLAGS,
    CLIENT_QUERY_ATTRIBUTES,
    MYSQL8_CLIENT_FLAGS,
    PROXY_CAPS,
    PyMySQLClient,
    capture_payloads,
    change_user,
    decode_all,
    handshake_response,
    ssl_request,
)

TRACK = CLIENT.PROTOCOL_41 | CLIENT.SESSION_TRACK
NO_TRACK = CLIENT.PROTOCOL_41
AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
ANSI_QUOTES = 0x8000  # MariaDB's SERVER_STATUS_ANSI_QUOTES (the captures ran with sql_mode=ANSI)
SCRAMBLE = b"0123456789abcdefghij"

# -- OK --------------------------------------------------------------------------

def _ok_or_error(parse, payload: bytes, caps: int):
    try:
        return parse(payload, caps)
    except RemoteProtocolError:
        return "RemoteProtocolError"


_ok_like = st.builds(
    lambda header, affected, insert_id, status, warnings, info, state, cut: (
        bytes([header]) + lenenc_int(affected) + lenenc_int(insert_id) + struct.pack("<HH", status, warnings)
        + (lenenc_bytes(info) if info is not None else b"") + (lenenc_bytes(state) if state is not None else b"")
    )[:cut],
    st.sampled_from([0x00, 0xFE, 0x01]), st.integers(0, 70000), st.integers(0, 300),
    st.integers(0, 0xFFFF) | st.sampled_from([AUTOCOMMIT, AUTOCOMMIT | SERVER_SESSION_STATE_CHANGED]),
    st.integers(0, 3), st.none() | st.binary(max_size=300), st.none() | st.binary(max_size=300),
    st.none() | st.integers(0, 700),
)


@settings(max_examples=500)
@given(payload=_ok_like | st.binary(max_size=40), track=st.booleans())
def test_parse_ok_fast_path_reads_what_the_reader_reads(payload, track):
    """parse_ok reads the usual OK inline: the same packet, or the same error, as the Reader path."""
    from mysqlpool_proxy.protocol.packets import _parse_ok

    caps = TRACK if track else NO_TRACK
    assert _ok_or_error(parse_ok, payload, caps) == _ok_or_error(_parse_ok, payload, caps)


def test_parse_ok_fast_path_on_every_truncation():
    from mysqlpool_proxy.protocol.packets import _parse_ok

    state = b"\x05\x09\x08T_______"
    for status in (AUTOCOMMIT, AUTOCOMMIT | SERVER_SESSION_STATE_CHANGED):
        for info in (b"", b"Rows matched: 1  Changed: 1  Warnings: 0"):
            whole = b"\x00\x01\x00" + struct.pack("<HH", status, 0) + lenenc_bytes(info) + lenenc_bytes(state)
            for cut in range(len(whole) + 1):
                for caps in (TRACK, NO_TRACK):
                    got = _ok_or_error(parse_ok, whole[:cut], caps)
                    assert got == _ok_or_error(_parse_ok, whole[:cut], caps), (status, info, cut, caps)



def test_parse_ok_minimal_real():
    [ok] = capture_payloads("ok_insert")  # INSERT: 1 row, insert id 4, no trackers fired
    assert parse_ok(ok, TRACK) == OkPacket(1, 4, AUTOCOMMIT, 0, b"", None)
    assert parse_ok(ok, NO_TRACK) == OkPacket(1, 4, AUTOCOMMIT, 0, b"", None)


def test_parse_ok_with_session_state_real():
    [ok] = capture_payloads("ok_use")
    parsed = parse_ok(ok, TRACK)
    assert parsed.status == AUTOCOMMIT | ANSI_QUOTES | SERVER_SESSION_STATE_CHANGED
    assert parsed.info == b""
    assert parsed.session_state == b"\x01\x06\x05capdb\x02\x011"


def test_parse_ok_with_info_real():
    [ok] = capture_payloads("infile_after_empty")
    parsed = parse_ok(ok, TRACK)
    assert parsed.info == b"Records: 0  Deleted: 0  Skipped: 0  Warnings: 0"
    assert parsed.session_state is None


def test_parse_ok_without_session_track_info_is_string_eof():
    payload = b"\x00\x03\x00\x22\x00\x01\x00" + b"Rows matched: 3  Changed: 3  Warnings: 1"
    ok = parse_ok(payload, NO_TRACK)
    assert (ok.affected_rows, ok.last_insert_id, ok.status, ok.warnings) == (3, 0, 0x22, 1)
    assert ok.info == b"Rows matched: 3  Changed: 3  Warnings: 1"
    assert ok.session_state is None


def test_parse_ok_large_lenenc_counts():
    payload = b"\x00" + lenenc_int(2**24) + lenenc_int(2**40) + b"\x02\x00\x00\x00"
    ok = parse_ok(payload, TRACK)
    assert ok.affected_rows == 2**24 and ok.last_insert_id == 2**40


def test_parse_ok_rejects_other_headers_and_short_packets():
    with pytest.raises(RemoteProtocolError):
        parse_ok(b"\xff\x15\x04#28000x", TRACK)
    for short in (b"", b"\x00", b"\x00\x00\x00\x02", b"\x00\x00\x00\x02\x00\x00"):
        with pytest.raises(RemoteProtocolError):
            parse_ok(short, TRACK)
    # session state announced by length but missing
    with pytest.raises(RemoteProtocolError):
        parse_ok(b"\x00\x00\x00\x02\x40\x00\x00\x00\x10\x01", TRACK)


@pytest.mark.parametrize("caps", [NO_TRACK, TRACK])
@pytest.mark.parametrize("info", [b"", b"Rows matched: 1  Changed: 1  Warnings: 0"])
def test_make_ok_round_trip(caps, info):
    payload = make_ok(caps, AUTOCOMMIT | SERVER_STATUS.SERVER_STATUS_IN_TRANS, affected_rows=300,
                      last_insert_id=70000, warnings=2, info=info)
    assert payload[0] == 0x00
    assert parse_ok(payload, caps) == OkPacket(300, 70000, 3, 2, info, None)


def test_make_ok_with_session_state_for_a_tracking_client():
    block = b"\x00\x0f\x0aautocommit\x02ON"
    payload = make_ok(TRACK, AUTOCOMMIT, info=b"", session_state=block)
    ok = parse_ok(payload, TRACK)
    assert ok.status == AUTOCOMMIT | SERVER_SESSION_STATE_CHANGED
    assert ok.info == b"" and ok.session_state == block
    # info and state together
    ok = parse_ok(make_ok(TRACK, AUTOCOMMIT, info=b"hi", session_state=block), TRACK)
    assert (ok.info, ok.session_state) == (b"hi", block)


def test_make_ok_never_claims_state_it_does_not_carry():
    block = b"\x02\x011"
    # a client without CLIENT_SESSION_TRACK gets neither the block nor the bit
    plain = make_ok(NO_TRACK, AUTOCOMMIT | SERVER_SESSION_STATE_CHANGED, session_state=block)
    assert plain == b"\x00\x00\x00\x02\x00\x00\x00"
    # a tracking client with nothing to report gets no bit either
    ok = parse_ok(make_ok(TRACK, AUTOCOMMIT | SERVER_SESSION_STATE_CHANGED), TRACK)
    assert ok.status == AUTOCOMMIT and ok.session_state is None


def test_make_ok_minimal_is_seven_bytes():
    assert make_ok(TRACK, AUTOCOMMIT) == b"\x00\x00\x00\x02\x00\x00\x00"
    assert make_ok(NO_TRACK, AUTOCOMMIT) == b"\x00\x00\x00\x02\x00\x00\x00"


def test_make_ok_eof_header():
    payload = make_ok(TRACK, AUTOCOMMIT, header=0xFE)
    assert payload[0] == 0xFE
    assert parse_ok(payload, TRACK).status == AUTOCOMMIT


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
       st.binary(max_size=300), st.binary(max_size=300), st.booleans())
def test_make_parse_ok_property(affected, insert_id, status, warnings, info, state, track):
    caps = TRACK if track else NO_TRACK
    ok = parse_ok(make_ok(caps, status, affected, insert_id, warnings, info, session_state=state or None), caps)
    assert (ok.affected_rows, ok.last_insert_id, ok.warnings, ok.info) == (affected, insert_id, warnings, info)
    if track and state:
        assert ok.session_state == state and ok.status == status | SERVER_SESSION_STATE_CHANGED
    else:
        assert ok.session_state is None and ok.status == status & ~SERVER_SESSION_STATE_CHANGED


# -- ERR -------------------------------------------------------------------------


def test_parse_err_real():
    [err] = capture_payloads("err_syntax")
    parsed = parse_err(err)
    assert parsed.errno == 1064 and parsed.sqlstate == "42000"
    assert parsed.message.startswith(b"You have an error in your SQL syntax")
    assert parsed.message.endswith(b"near 'SELEC 1' at line 1")


def test_parse_err_real_unknown_table():
    [err] = capture_payloads("field_list_err")
    assert parse_err(err) == ErrPacket(1146, "42S02", b"Table 'capdb.nosuch' doesn't exist")


def test_parse_err_without_sqlstate():
    # Sent before the handshake completes (e.g. "Too many connections") or by pre-4.1 servers.
    payload = b"\xff\x10\x04Too many connections"
    assert parse_err(payload) == ErrPacket(1040, "HY000", b"Too many connections")
    assert parse_err(payload, 0) == ErrPacket(1040, "HY000", b"Too many connections")


def test_parse_err_without_protocol_41_keeps_hash_in_message():
    payload = b"\xff\x15\x04#28000denied"
    assert parse_err(payload, 0).message == b"#28000denied"


def test_parse_err_rejects_other_headers_and_short_packets():
    for bad in (b"", b"\x00\x15\x04", b"\xff", b"\xff\x15"):
        with pytest.raises(RemoteProtocolError):
            parse_err(bad)


def test_make_err_round_trip():
    msg = "Access denied for user 'bob'@'10.0.0.1' (using password: YES)"
    payload = make_err(1045, "28000", msg)
    assert payload == b"\xff\x15\x04#28000" + msg.encode()
    assert parse_err(payload) == ErrPacket(1045, "28000", msg.encode())
    # a pre-4.1 client gets no SQLSTATE marker
    assert make_err(1045, "28000", msg, 0) == b"\xff\x15\x04" + msg.encode()


def test_make_err_utf8_message_and_sqlstate_width():
    payload = make_err(1049, "42000", "Unknown database 'bäh'")
    assert parse_err(payload).message == "Unknown database 'bäh'".encode()
    assert len(parse_err(make_err(1, "42", "x")).sqlstate) == 5


# -- EOF -------------------------------------------------------------------------


def test_parse_eof_real():
    payloads = capture_payloads("select_rows")
    assert parse_eof(payloads[3]) == EofPacket(0, 0x8022)
    assert parse_eof(payloads[-1]) == EofPacket(0, 0x8022)
    assert is_eof(payloads[3]) and is_eof(payloads[-1])
    assert not any(is_eof(p) for p in payloads[4:-1])  # rows


def test_make_eof_round_trip():
    payload = make_eof(SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS | AUTOCOMMIT, warnings=3)
    assert payload == b"\xfe\x03\x00\x0a\x00"
    assert parse_eof(payload) == EofPacket(3, 10)


@pytest.mark.parametrize("payload,expected", [
    (b"\xfe\x00\x00\x02\x00", True),  # 4.1 EOF
    (b"\xfe", True),  # pre-4.1 EOF
    (b"\xfe" + b"\x00" * 7, True),  # 8 bytes: still EOF
    (b"\xfe" + b"\x00" * 8, False),  # 9 bytes: a length-encoded 8-byte integer starts a row
    (b"\xfe" + b"\x00" * 8 + b"rowdata", False),
    (b"", False),
    (b"\x00\x00\x00\x02\x00", False),
    (b"\xff\x15\x04", False),
])
def test_is_eof(payload, expected):
    assert is_eof(payload) is expected
    assert is_eof(memoryview(payload)) is expected


def test_parse_eof_rejects_other_and_short():
    for bad in (b"\x00\x00\x00\x02\x00", b"\xfe\x00", b""):
        with pytest.raises(RemoteProtocolError):
            parse_eof(bad)


# -- HandshakeV10 ----------------------------------------------------------------


def greeting(**kw) -> HandshakeV10:
    fields = dict(server_version=b"5.5.5-10.11.6-MariaDB-mysqlpool", connection_id=1234, scramble=SCRAMBLE,
                  capabilities=PROXY_CAPS, charset=45, status=AUTOCOMMIT, auth_plugin=b"mysql_native_password")
    fields.update(kw)
    return HandshakeV10(**fields)


def test_handshake_v10_round_trip():
    hs = greeting()
    payload = make_handshake_v10(hs)
    assert payload[0] == 10
    assert parse_handshake_v10(payload) == hs


def test_handshake_v10_round_trip_ssl_and_other_plugin():
    hs = greeting(capabilities=PROXY_CAPS | CLIENT.SSL, auth_plugin=b"caching_sha2_password", connection_id=2**32 - 1)
    assert parse_handshake_v10(make_handshake_v10(hs)) == hs


def test_handshake_v10_layout():
    payload = make_handshake_v10(greeting())
    version_end = payload.index(b"\0")
    p = version_end + 1
    assert struct.unpack_from("<I", payload, p)[0] == 1234
    assert payload[p + 4:p + 12] == SCRAMBLE[:8] and payload[p + 12] == 0  # filler
    caps = struct.unpack_from("<H", payload, p + 13)[0] | struct.unpack_from("<H", payload, p + 18)[0] << 16
    assert caps == PROXY_CAPS
    assert payload[p + 15] == 45  # charset
    assert payload[p + 20] == 21  # auth-plugin-data length: 20 + NUL
    assert payload[p + 21:p + 31] == b"\0" * 10
    assert payload[p + 31:p + 44] == SCRAMBLE[8:] + b"\0"
    assert payload[p + 44:] == b"mysql_native_password\0"


def test_handshake_v10_as_mysql_connector_parses_it():
    from mysql.connector.protocol import MySQLProtocol

    res = MySQLProtocol.parse_handshake(encode_packet(make_handshake_v10(greeting()), 0))
    assert res["server_version_original"] == "5.5.5-10.11.6-MariaDB-mysqlpool"
    assert res["server_threadid"] == 1234
    assert res["auth_data"].rstrip(b"\0") == SCRAMBLE
    assert res["capabilities"] == PROXY_CAPS
    assert res["charset"] == 45
    assert res["auth_plugin"] == "mysql_native_password"


def test_handshake_v10_as_pymysql_parses_it():
    client = PyMySQLClient(lambda data: b"", user="u", password="")
    client.inbox += encode_packet(make_handshake_v10(greeting()), 0)
    client.conn._get_server_information()
    assert client.conn.salt == SCRAMBLE
    assert client.conn.server_capabilities == PROXY_CAPS
    assert client.conn.server_version == "5.5.5-10.11.6-MariaDB-mysqlpool"
    assert client.conn.server_thread_id == (1234,)
    assert client.conn._auth_plugin_name == "mysql_native_password"


def test_parse_mariadb_style_greeting():
    # A MariaDB 10.11 greeting per the protocol pages: CLIENT_MYSQL (bit 0) clear and the
    # MariaDB extended capabilities in the last 4 of the 10 reserved bytes.
    caps = (PROXY_CAPS | CLIENT.SSL) & ~CLIENT.LONG_PASSWORD
    payload = (
        b"\x0a" + b"5.5.5-10.11.6-MariaDB-0+deb12u1\0" + struct.pack("<I", 77) + SCRAMBLE[:8] + b"\0"
        + struct.pack("<HBHH", caps & 0xFFFF, 45, AUTOCOMMIT, caps >> 16) + b"\x15" + b"\0" * 6
        + struct.pack("<I", 0x1D) + SCRAMBLE[8:] + b"\0" + b"mysql_native_password\0"
    )
    hs = parse_handshake_v10(payload)
    assert hs == HandshakeV10(b"5.5.5-10.11.6-MariaDB-0+deb12u1", 77, SCRAMBLE, caps | 0x1D << 32, 45, AUTOCOMMIT,
                              b"mysql_native_password")  # its extended capabilities as bits 32 and up


def test_parse_greeting_without_plugin_auth():
    caps = CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION
    payload = (
        b"\x0a5.0.96\0" + struct.pack("<I", 5) + SCRAMBLE[:8] + b"\0" + struct.pack("<HBHH", caps, 8, 2, 0)
        + b"\x00" + b"\0" * 10 + SCRAMBLE[8:] + b"\0"
    )
    hs = parse_handshake_v10(payload)
    assert hs.scramble == SCRAMBLE and hs.auth_plugin == b"" and hs.capabilities == caps


def test_parse_greeting_errors():
    good = make_handshake_v10(greeting())
    with pytest.raises(RemoteProtocolError):
        parse_handshake_v10(b"\x09" + good[1:])
    for cut in (0, 1, 5, 20, 30):
        with pytest.raises(RemoteProtocolError):
            parse_handshake_v10(good[:cut])


# -- HandshakeResponse41 -------------------------------------------------------


def pymysql_response(**kw) -> tuple[bytes, bytes]:
    """The HandshakeResponse41 PyMySQL writes for our greeting: (payload, scramble)."""
    hs = greeting()
    ok = encode_packet(make_ok(CLIENT.PROTOCOL_41, AUTOCOMMIT), 2)
    client = PyMySQLClient(lambda data: ok, **kw)
    client.connect(encode_packet(make_handshake_v10(hs), 0))
    [written] = client.written
    [pkt] = decode_all(written)
    assert pkt.seq == 1
    return pkt.payload, hs.scramble


def test_handshake_response_from_pymysql():
    payload, scramble = pymysql_response(user="app", password="s3cret", database="shop", program_name="billing")
    resp = parse_handshake_response(payload)
    assert resp.user == b"app"
    assert resp.database == b"shop"
    assert resp.auth_plugin == b"mysql_native_password"
    assert resp.auth_response == auth.client_scramble_native(b"s3cret", scramble)
    assert len(resp.auth_response) == 20
    assert resp.charset == 45  # utf8mb4_general_ci
    assert resp.max_packet_size == 2**24 - 1  # PyMySQL's MAX_PACKET_LEN
    assert resp.connect_attrs[b"_client_name"] == b"pymysql"
    assert resp.connect_attrs[b"program_name"] == b"billing"
    assert b"_pid" in resp.connect_attrs and b"_client_version" in resp.connect_attrs
    for flag in (CLIENT.PROTOCOL_41, CLIENT.PLUGIN_AUTH, CLIENT.CONNECT_ATTRS, CLIENT.CONNECT_WITH_DB,
                 CLIENT.SECURE_CONNECTION, CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA):
        assert resp.capabilities & flag


def test_handshake_response_from_pymysql_without_database_or_password():
    payload, _ = pymysql_response(user="app", password="")
    resp = parse_handshake_response(payload)
    assert resp.user == b"app" and resp.database is None and resp.auth_response == b""
    assert not resp.capabilities & CLIENT.CONNECT_WITH_DB


def test_handshake_response_from_mysql_connector():
    from mysql.connector.constants import ClientFlag
    from mysql.connector.protocol import MySQLProtocol

    flags = ClientFlag.get_default() | ClientFlag.PLUGIN_AUTH
    handshake = {"auth_data": SCRAMBLE, "auth_plugin": "mysql_native_password", "capabilities": PROXY_CAPS}
    payload, _ = MySQLProtocol.make_auth(handshake, "bob", "pw", database="db", charset=224, client_flags=flags,
                                         conn_attrs={"_client_name": "mysql-connector-python", "_os": "Linux"})
    resp = parse_handshake_response(payload)
    assert (resp.user, resp.database, resp.charset, resp.auth_plugin) == (b"bob", b"db", 224,
                                                                          b"mysql_native_password")
    assert resp.auth_response == auth.client_scramble_native(b"pw", SCRAMBLE)
    assert resp.connect_attrs == {b"_client_name": b"mysql-connector-python", b"_os": b"Linux"}


def test_handshake_response_mysql8_style():
    """What a MySQL 8.0 libmysqlclient sends: caching_sha2_password, lenenc auth data,
    DEPRECATE_EOF and QUERY_ATTRIBUTES set whatever the server offered."""
    token = auth.client_scramble_caching_sha2(b"pa55", SCRAMBLE)
    attrs = {b"_os": b"Linux", b"_client_name": b"libmysql", b"_pid": b"4242", b"_client_version": b"8.0.36",
             b"_platform": b"x86_64", b"program_name": b"mysql"}
    payload = handshake_response(b"app", token, caps=MYSQL8_CLIENT_FLAGS, database=b"appdb",
                                 plugin=b"caching_sha2_password", attrs=attrs, charset=255)
    resp = parse_handshake_response(payload)
    assert resp.capabilities == MYSQL8_CLIENT_FLAGS  # parsing keeps what the client said
    assert resp.capabilities & CLIENT_QUERY_ATTRIBUTES
    assert (resp.user, resp.database, resp.charset) == (b"app", b"appdb", 255)
    assert resp.auth_plugin == b"caching_sha2_password"
    assert resp.auth_response == token and len(token) == 32
    assert resp.connect_attrs == attrs


def test_handshake_response_long_lenenc_auth_data():
    token = bytes(range(256)) + b"x" * 44  # 300 bytes: a 0xFC length prefix
    payload = handshake_response(b"u", token, plugin=b"authentication_ldap_sasl_client")
    assert lenenc_bytes(token)[:1] == b"\xfc"
    resp = parse_handshake_response(payload)
    assert resp.auth_response == token and resp.auth_plugin == b"authentication_ldap_sasl_client"


def test_handshake_response_one_byte_auth_length():
    caps = BASIC_CLIENT_FLAGS & ~CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA
    token = b"\xfc" * 20  # would be a lenenc prefix if misread
    resp = parse_handshake_response(handshake_response(b"u", token, caps=caps, database=b"d"))
    assert resp.auth_response == token and resp.database == b"d"


def test_handshake_response_nul_terminated_auth():
    caps = CLIENT.PROTOCOL_41 | CLIENT.LONG_PASSWORD
    resp = parse_handshake_response(handshake_response(b"u", b"oldpw", caps=caps, plugin=None))
    assert resp.auth_response == b"oldpw" and resp.auth_plugin is None and resp.connect_attrs == {}


def test_handshake_response_connect_attrs_long_values():
    attrs = {b"k" * 300: b"v" * 70000, b"": b"empty key"}
    resp = parse_handshake_response(handshake_response(b"u", b"", attrs=attrs))
    assert resp.connect_attrs == attrs


def test_handshake_response_minimal_fields_absent():
    # PLUGIN_AUTH set but the packet ends after the auth data: no plugin, no attributes.
    payload = struct.pack("<IIB", BASIC_CLIENT_FLAGS | CLIENT.CONNECT_ATTRS, 0, 8) + b"\0" * 23 + b"u\0\x00"
    resp = parse_handshake_response(payload)
    assert resp.user == b"u" and resp.auth_plugin is None and resp.connect_attrs == {}


def test_handshake_response_errors():
    good = handshake_response(b"user", b"x" * 20, database=b"db", attrs={b"a": b"b"})
    with pytest.raises(RemoteProtocolError):
        parse_handshake_response(struct.pack("<I", CLIENT.LONG_PASSWORD) + good[4:])  # not 4.1
    for cut in (0, 3, 10, 32, 36, 37):
        with pytest.raises(RemoteProtocolError):
            parse_handshake_response(good[:cut])
    # connect attributes claiming more bytes than the packet holds
    overrun = handshake_response(b"u", b"", plugin=b"p") + lenenc_int(50) + b"\x01a\x01b"
    with pytest.raises(RemoteProtocolError):
        parse_handshake_response(struct.pack("<I", BASIC_CLIENT_FLAGS | CLIENT.CONNECT_ATTRS) + overrun[4:])


@given(st.binary(max_size=120))
def test_handshake_response_garbage_raises_only_protocol_errors(tail):
    payload = struct.pack("<IIB", MYSQL8_CLIENT_FLAGS, 0, 45) + b"\0" * 23 + tail
    try:
        parse_handshake_response(payload)
    except RemoteProtocolError:
        pass


# -- SSLRequest ----------------------------------------------------------------


def test_is_ssl_request():
    assert is_ssl_request(ssl_request())
    assert len(ssl_request()) == 32
    assert not is_ssl_request(ssl_request()[:31])
    # 32 bytes without CLIENT_SSL
    assert not is_ssl_request(struct.pack("<IIB", BASIC_CLIENT_FLAGS, 0, 45) + b"\0" * 23)
    # the full response sent after TLS also has CLIENT_SSL, but it is longer
    assert not is_ssl_request(handshake_response(b"u", b"x" * 20, caps=BASIC_CLIENT_FLAGS | CLIENT.SSL))


def test_is_ssl_request_from_mysql_connector():
    from mysql.connector.constants import ClientFlag
    from mysql.connector.protocol import MySQLProtocol

    assert is_ssl_request(MySQLProtocol.make_auth_ssl(charset=45, client_flags=ClientFlag.get_default()
                                                      | ClientFlag.SSL))


# -- COM_CHANGE_USER -----------------------------------------------------------

CU_CAPS = CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION | CLIENT.PLUGIN_AUTH | CLIENT.CONNECT_ATTRS


def test_parse_change_user_full():
    token = auth.client_scramble_native(b"pw", SCRAMBLE)
    payload = change_user(b"carol", token, database=b"sales", charset=224, attrs={b"_client_name": b"x"})
    cu = parse_change_user(payload, CU_CAPS)
    assert (cu.user, cu.auth_response, cu.database, cu.charset) == (b"carol", token, b"sales", 224)
    assert cu.auth_plugin == b"mysql_native_password"
    assert cu.connect_attrs == {b"_client_name": b"x"}


def test_parse_change_user_old_client_without_charset():
    payload = change_user(b"carol", b"t" * 20, database=b"", charset=None)
    cu = parse_change_user(payload, CU_CAPS)
    assert cu.database is None and cu.charset is None and cu.auth_plugin is None and cu.connect_attrs == {}


def test_parse_change_user_without_secure_connection():
    payload = b"\x11carol\0oldpw\0db\0" + struct.pack("<H", 8)
    cu = parse_change_user(payload, CLIENT.PROTOCOL_41)
    assert (cu.user, cu.auth_response, cu.database, cu.charset) == (b"carol", b"oldpw", b"db", 8)


def test_parse_change_user_from_mysql_connector():
    from mysql.connector.constants import ClientFlag
    from mysql.connector.protocol import MySQLProtocol

    flags = ClientFlag.get_default() | ClientFlag.PLUGIN_AUTH
    handshake = {"auth_data": SCRAMBLE, "auth_plugin": "mysql_native_password", "capabilities": PROXY_CAPS}
    payload, _ = MySQLProtocol.make_auth(handshake, "dave", "pw2", database="inv", charset=45, client_flags=flags,
                                         conn_attrs={"_client_name": "mysql-connector-python"},
                                         is_change_user_request=True)
    cu = parse_change_user(payload, CU_CAPS)
    assert (cu.user, cu.database, cu.charset, cu.auth_plugin) == (b"dave", b"inv", 45, b"mysql_native_password")
    assert auth.verify_native(auth.credentials_from_password("pw2"), SCRAMBLE, cu.auth_response)
    assert cu.connect_attrs == {b"_client_name": b"mysql-connector-python"}


def test_parse_change_user_errors():
    with pytest.raises(RemoteProtocolError):
        parse_change_user(b"\x03SELECT 1", CU_CAPS)
    good = change_user(b"carol", b"t" * 20, database=b"db")
    for cut in (0, 1, 4, 7, 20):
        with pytest.raises(RemoteProtocolError):
            parse_change_user(good[:cut], CU_CAPS)


# -- auth switch / more data -----------------------------------------------------


def test_make_auth_switch_and_more_data():
    assert make_auth_switch(b"mysql_native_password", SCRAMBLE + b"\0") == (
        b"\xfemysql_native_password\0" + SCRAMBLE + b"\0")
    assert make_auth_more_data(b"\x03") == b"\x01\x03"


# -- strip_session_track -------------------------------------------------------


@pytest.mark.parametrize("name,expected", [
    ("ok_use", b"\x00\x00\x00\x02\x80\x00\x00"),
    ("ok_set_var", b"\x00\x00\x00\x02\x80\x00\x00"),
    ("ok_begin", b"\x00\x00\x00\x03\x80\x00\x00"),
    ("infile_after_empty", b"\x00\x00\x00\x02\x80\x00\x00\x2fRecords: 0  Deleted: 0  Skipped: 0  Warnings: 0"),
    ("ok_insert", b"\x00\x01\x04\x02\x00\x00\x00"),
])
def test_strip_session_track_real(name, expected):
    [payload] = capture_payloads(name)
    stripped = strip_session_track(payload, TRACK)
    assert stripped == expected
    # what a client without CLIENT_SESSION_TRACK reads: info length-encoded (as servers send
    # it, whatever the protocol pages say), no state bit
    before, after = parse_ok(payload, TRACK), parse_ok(stripped, NO_TRACK)
    assert after == OkPacket(before.affected_rows, before.last_insert_id,
                             before.status & ~SERVER_SESSION_STATE_CHANGED, before.warnings, before.info, None)


def test_strip_session_track_keeps_eof_header():
    payload = make_ok(TRACK, AUTOCOMMIT, info=b"x", session_state=b"\x02\x011", header=0xFE)
    assert strip_session_track(payload, TRACK) == b"\xfe\x00\x00\x02\x00\x00\x00\x01x"

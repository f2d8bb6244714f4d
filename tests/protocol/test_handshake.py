# handshake.py: the ServerHandshake machine driven as a client would drive it
# (greeting parse -> HandshakeResponse41 -> auth switch / AuthMoreData -> OK or
# ERR), by hand-built packets and by PyMySQL's own client code, with every
# packet going through a PacketDecoder whole and byte by byte. Covers native
# and caching_sha2 logins, the switch to mysql_native_password for hash-only
# users and unknown plugins, MySQL's exact 1045 wording and SQLSTATE 28000 for
# wrong passwords and unknown users alike, SSLRequest with and without TLS,
# out-of-order sequence ids, malformed packets (an ERR, never an exception),
# capability negotiation, and ChangeUserAuth (COM_CHANGE_USER).
from __future__ import annotations

import pymysql
import pytest
from hypothesis import given, settings, strategies as st

from mysqlpool_proxy.constants import CLIENT, SERVER_STATUS
from mysqlpool_proxy.errors import ProtocolError
from mysqlpool_proxy.protocol import auth
from mysqlpool_proxy.protocol.framing import MAX_FRAME, Oversized, Packet, PacketDecoder, encode_packet, frame_header
from mysqlpool_proxy.protocol.handshake import (
    INSECURE_TRANSPORT_MESSAGE,
    MAX_LOGIN_PACKET,
    ChangeUserAuth,
    Failed,
    HandshakeState,
    Send,
    ServerHandshake,
    StartTLS,
    Verified,
    access_denied_message,
)
from mysqlpool_proxy.protocol.packets import (
    ErrPacket,
    parse_change_user,
    parse_err,
    parse_handshake_v10,
    parse_ok,
)

from .helpers import (
    BASIC_CLIENT_FLAGS,
    CLIENT_QUERY_ATTRIBUTES,
    MYSQL8_CLIENT_FLAGS,
    PROXY_CAPS,
    HandshakePeer,
    PyMySQLClient,
    change_user,
    decode_all,
    handshake_response,
    ssl_request,
)

SECRET_HASH = "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"  # PASSWORD('secret')
SCRAMBLE = b"A1b2C3d4E5f6G7h8I9j0"
HOST = "10.1.2.3"
AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
NATIVE, SHA2 = auth.NATIVE, auth.CACHING_SHA2

USERS = {
    b"app": auth.credentials_from_password("secret"),
    b"legacy": auth.credentials_from_native_hash(SECRET_HASH),
    b"nopw": auth.credentials_from_password(""),
}


def make_hs(*, tls: bool = False, scramble: bytes | None = SCRAMBLE, caps: int = PROXY_CAPS,
            tls_required: bool = False) -> ServerHandshake:
    return ServerHandshake(
        connection_id=42, server_version=b"5.5.5-10.11.6-MariaDB-mysqlpool", capabilities=caps, charset=45,
        lookup=USERS.get, client_host=HOST, tls_available=tls, tls_required=tls_required, scramble=scramble,
    )


def pkt(payload: bytes, seq: int) -> Packet:
    raw = encode_packet(payload, seq)
    return Packet(seq, seq, payload, raw)


def sends(events) -> list[bytes]:
    return [e.data for e in events if isinstance(e, Send)]


def only_packet(data: bytes) -> Packet:
    [p] = decode_all(data)
    return p


def assert_err(data: bytes, seq: int, errno: int, sqlstate: str, message: str) -> None:
    p = only_packet(data)
    assert p.seq == seq
    assert parse_err(p.payload) == ErrPacket(errno, sqlstate, message.encode())


def native(pw: bytes, scramble: bytes = SCRAMBLE) -> bytes:
    return auth.client_scramble_native(pw, scramble)


def sha2(pw: bytes, scramble: bytes = SCRAMBLE) -> bytes:
    return auth.client_scramble_caching_sha2(pw, scramble)


BYTEWISE = pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])

# -- greeting ----------------------------------------------------------------------------


def test_greeting():
    hs = make_hs()
    raw = hs.greeting()
    p = only_packet(raw)
    assert p.seq == 0
    g = parse_handshake_v10(p.payload)
    assert g.server_version == b"5.5.5-10.11.6-MariaDB-mysqlpool"
    assert g.connection_id == 42
    assert g.scramble == SCRAMBLE == hs.scramble
    assert g.capabilities == PROXY_CAPS and not g.capabilities & CLIENT.SSL
    assert g.auth_plugin == NATIVE
    assert g.status == AUTOCOMMIT
    assert hs.state is HandshakeState.GREETING_SENT


def test_greeting_offers_ssl_only_with_tls():
    assert parse_handshake_v10(only_packet(make_hs(tls=True).greeting()).payload).capabilities & CLIENT.SSL


def test_greeting_scramble_is_fresh_per_connection():
    a, b = make_hs(scramble=None), make_hs(scramble=None)
    assert a.scramble != b.scramble
    sa = parse_handshake_v10(only_packet(a.greeting()).payload).scramble
    assert sa == a.scramble and len(sa) == 20 and b"\0" not in sa


# -- mysql_native_password ---------------------------------------------------------------


@BYTEWISE
@pytest.mark.parametrize("user", [b"app", b"legacy"])
def test_native_login(bytewise, user):
    peer = HandshakePeer(make_hs(), bytewise=bytewise)
    attrs = {b"_client_name": b"hand", b"program_name": b"t"}
    reply = peer.receive(encode_packet(handshake_response(user, native(b"secret"), database=b"shop", attrs=attrs,
                                                          charset=224), 1))
    [verified] = peer.events
    assert verified == Verified(user, b"shop", (BASIC_CLIENT_FLAGS | CLIENT.CONNECT_WITH_DB | CLIENT.CONNECT_ATTRS)
                                & PROXY_CAPS, 224, attrs, NATIVE)
    ok = only_packet(reply)
    assert ok.seq == 2
    assert parse_ok(ok.payload, verified.capabilities).status == AUTOCOMMIT
    assert peer.hs.state is HandshakeState.DONE


def test_verified_comes_before_ok_and_accept_sends_it():
    hs = make_hs()
    events = hs.receive(pkt(handshake_response(b"app", native(b"secret")), 1))
    assert [type(e) for e in events] == [Verified]
    assert hs.state is HandshakeState.VERIFIED
    ok = only_packet(hs.accept(AUTOCOMMIT | SERVER_STATUS.SERVER_STATUS_IN_TRANS))
    assert ok.seq == 2 and ok.payload[0] == 0
    assert parse_ok(ok.payload, hs.capabilities).status == AUTOCOMMIT | SERVER_STATUS.SERVER_STATUS_IN_TRANS
    assert hs.state is HandshakeState.DONE
    with pytest.raises(ProtocolError):
        hs.accept(AUTOCOMMIT)  # only once


def test_accept_before_verified_refused():
    with pytest.raises(ProtocolError):
        make_hs().accept(AUTOCOMMIT)


def test_reject_after_verified():
    hs = make_hs()
    hs.receive(pkt(handshake_response(b"app", native(b"secret"), database=b"nosuch"), 1))
    err = hs.reject(1049, "Unknown database 'nosuch'")
    assert_err(err, 2, 1049, "42000", "Unknown database 'nosuch'")
    assert hs.state is HandshakeState.FAILED


@pytest.mark.parametrize("plugin", [b"", None], ids=["empty-name", "no-plugin-auth"])
def test_native_when_the_client_names_no_plugin(plugin):
    caps = BASIC_CLIENT_FLAGS if plugin is not None else BASIC_CLIENT_FLAGS & ~CLIENT.PLUGIN_AUTH
    events = make_hs().receive(pkt(handshake_response(b"app", native(b"secret"), caps=caps, plugin=plugin), 1))
    assert [type(e) for e in events] == [Verified] and events[0].plugin == NATIVE


# -- caching_sha2_password ---------------------------------------------------------------


@BYTEWISE
def test_caching_sha2_fast_path(bytewise):
    peer = HandshakePeer(make_hs(), bytewise=bytewise)
    reply = peer.receive(encode_packet(handshake_response(b"app", sha2(b"secret"), plugin=SHA2), 1))
    more, ok = decode_all(reply)
    assert (more.seq, more.payload) == (2, b"\x01\x03")  # AuthMoreData: fast_auth_success
    assert ok.seq == 3 and ok.payload[0] == 0
    assert [type(e) for e in peer.events] == [Send, Verified]
    assert peer.events[1].plugin == SHA2


@pytest.mark.parametrize("attrs, program", [
    ({b"_client_name": b"libmariadb", b"program_name": b"billing-worker"}, "billing-worker"),
    ({b"_client_name": b"pymysql", b"_pid": b"7"}, "pymysql"),
    ({b"_pid": b"7"}, None),
    ({}, None),
    ({b"program_name": b"w" * 300}, "w" * 64),
    ({b"program_name": b"caf\xe9"}, "caf\ufffd"),
])
def test_program_names_the_client_for_operators(attrs, program):
    """SHOW CLIENTS shows it: program_name, else the driver's name; bounded, never an error."""
    peer = HandshakePeer(make_hs())
    peer.receive(encode_packet(handshake_response(b"app", native(b"secret"), attrs=attrs), 1))
    [verified] = peer.events
    assert verified.program == program


def test_mysql8_client_capabilities_masked_by_the_offer():
    """A MySQL 8 client sets DEPRECATE_EOF and QUERY_ATTRIBUTES; the proxy offered neither."""
    attrs = {b"_os": b"Linux", b"_client_name": b"libmysql", b"_client_version": b"8.0.36", b"_pid": b"99"}
    peer = HandshakePeer(make_hs())
    reply = peer.receive(encode_packet(handshake_response(
        b"app", sha2(b"secret"), caps=MYSQL8_CLIENT_FLAGS, database=b"appdb", plugin=SHA2, attrs=attrs,
        charset=255), 1))
    verified = peer.events[-1]
    assert isinstance(verified, Verified)
    assert verified.capabilities == MYSQL8_CLIENT_FLAGS & PROXY_CAPS
    assert not verified.capabilities & CLIENT_QUERY_ATTRIBUTES
    assert not verified.capabilities & CLIENT.DEPRECATE_EOF
    assert verified.capabilities & CLIENT.SESSION_TRACK
    assert peer.hs.capabilities == verified.capabilities
    assert (verified.database, verified.charset, verified.connect_attrs) == (b"appdb", 255, attrs)
    more, ok = decode_all(reply)
    assert more.payload == b"\x01\x03"
    assert parse_ok(ok.payload, verified.capabilities).status == AUTOCOMMIT


# -- auth switch -----------------------------------------------------------------------


def switch_request(data: bytes, seq: int = 2) -> None:
    p = only_packet(data)
    assert p.seq == seq
    assert p.payload == b"\xfe" + NATIVE + b"\0" + SCRAMBLE + b"\0"


@BYTEWISE
@pytest.mark.parametrize("user,plugin,first", [
    (b"legacy", SHA2, sha2(b"secret")),  # only a *HEX hash: no fast path possible
    (b"legacy", b"client_ed25519", b""),  # no key can be derived from a hash
    (b"app", b"sha256_password", b"\x01"),  # "send me the public key": the proxy has no RSA keys here
    (b"app", b"auth_gssapi_client", b""),
    (b"app", b"dialog", b""),
])
def test_switch_to_native(bytewise, user, plugin, first):
    peer = HandshakePeer(make_hs(), bytewise=bytewise)
    switch_request(peer.receive(encode_packet(handshake_response(user, first, plugin=plugin), 1)))
    assert peer.hs.state is HandshakeState.AUTH_SWITCH_SENT
    pw = b"" if user == b"nopw" else b"secret"
    ok = only_packet(peer.receive(encode_packet(native(pw), 3)))
    assert ok.seq == 4 and ok.payload[0] == 0
    verified = peer.events[-1]
    assert isinstance(verified, Verified) and verified.user == user and verified.plugin == NATIVE


def test_switch_then_wrong_password():
    hs = make_hs()
    switch_request(sends(hs.receive(pkt(handshake_response(b"legacy", sha2(b"secret"), plugin=SHA2), 1)))[0])
    events = hs.receive(pkt(native(b"wrong"), 3))
    assert_err(sends(events)[0], 4, 1045, "28000", f"Access denied for user 'legacy'@'{HOST}' (using password: YES)")
    assert events[-1] == Failed(1045, f"Access denied for user 'legacy'@'{HOST}' (using password: YES)")


def test_switch_reply_with_wrong_sequence_id():
    hs = make_hs()
    hs.receive(pkt(handshake_response(b"legacy", sha2(b"secret"), plugin=SHA2), 1))
    events = hs.receive(pkt(native(b"secret"), 2))  # 3 expected
    assert events[-1].errno == 1156 and hs.state is HandshakeState.FAILED


# -- access denied -----------------------------------------------------------------------


@BYTEWISE
@pytest.mark.parametrize("user,plugin,token,using", [
    (b"app", NATIVE, native(b"wrong"), "YES"),
    (b"app", SHA2, sha2(b"wrong"), "YES"),
    (b"app", NATIVE, b"", "NO"),
    (b"legacy", NATIVE, native(b"Secret"), "YES"),
    (b"nopw", NATIVE, native(b"guess"), "YES"),
    (b"nobody", NATIVE, native(b"secret"), "YES"),  # unknown user: the very same answer
    (b"nobody", SHA2, sha2(b"secret"), "YES"),
    (b"nobody", NATIVE, b"", "NO"),
    (b"", NATIVE, b"", "NO"),
])
def test_access_denied(bytewise, user, plugin, token, using):
    peer = HandshakePeer(make_hs(), bytewise=bytewise)
    reply = peer.receive(encode_packet(handshake_response(user, token, plugin=plugin), 1))
    message = f"Access denied for user '{user.decode()}'@'{HOST}' (using password: {using})"
    seq = 2
    if user == b"nobody" and only_packet(reply).payload[:1] == b"\xfe":
        # An unknown user may behave as a hash-only decoy (see test_handshake_edge_cases):
        # it is switched to mysql_native_password first, then refused just the same.
        reply = peer.receive(encode_packet(native(b"secret"), 3))
        seq = 4
    assert_err(reply, seq, 1045, "28000", message)
    assert peer.events[-1] == Failed(1045, message)
    assert peer.hs.state is HandshakeState.FAILED


def test_access_denied_message_wording():
    # MySQL/MariaDB's ER_ACCESS_DENIED_ERROR, verbatim.
    assert access_denied_message(b"bob", "192.168.0.7", b"x") == (
        "Access denied for user 'bob'@'192.168.0.7' (using password: YES)")
    assert access_denied_message(b"bob", "h", b"") == "Access denied for user 'bob'@'h' (using password: NO)"
    assert access_denied_message(b"bob", "h", b"\0") == "Access denied for user 'bob'@'h' (using password: NO)"


def test_unknown_user_looks_like_a_wrong_password():
    def reply_for(user: bytes) -> bytes:
        raw = make_hs().receive(pkt(handshake_response(user, native(b"secret!"), plugin=NATIVE), 1))
        return parse_err(only_packet(sends(raw)[0]).payload)

    known, unknown = reply_for(b"app"), reply_for(b"ghost")
    assert (known.errno, known.sqlstate) == (unknown.errno, unknown.sqlstate) == (1045, "28000")
    assert known.message.replace(b"'app'", b"'ghost'") == unknown.message


def test_lookup_sees_the_user_name():
    seen = []
    hs = ServerHandshake(connection_id=1, server_version=b"v", capabilities=PROXY_CAPS, charset=45,
                         lookup=lambda u: seen.append(u) or None, client_host=HOST, scramble=SCRAMBLE)
    hs.receive(pkt(handshake_response(b"who\xc3\xa9", native(b"x")), 1))
    assert seen == [b"who\xc3\xa9"]


# -- empty passwords ---------------------------------------------------------------------


@pytest.mark.parametrize("token", [b"", b"\0"])
def test_empty_password_native(token):
    events = make_hs().receive(pkt(handshake_response(b"nopw", token, plugin=NATIVE), 1))
    assert [type(e) for e in events] == [Verified]


# -- TLS -----------------------------------------------------------------------------------


@BYTEWISE
def test_ssl_request_with_tls(bytewise):
    peer = HandshakePeer(make_hs(tls=True), bytewise=bytewise)
    assert peer.receive(encode_packet(ssl_request(), 1)) == b""
    assert peer.events == [StartTLS()]
    assert peer.hs.tls and peer.hs.state is HandshakeState.GREETING_SENT
    # ... TLS is set up by the caller; the full response follows with the next sequence id
    resp = handshake_response(b"app", native(b"secret"), caps=BASIC_CLIENT_FLAGS | CLIENT.SSL)
    ok = only_packet(peer.receive(encode_packet(resp, 2)))
    assert ok.seq == 3 and ok.payload[0] == 0
    assert peer.events[-1].capabilities & CLIENT.SSL


def test_ssl_request_without_tls():
    hs = make_hs(tls=False)
    events = hs.receive(pkt(ssl_request(), 1))
    err = parse_err(only_packet(sends(events)[0]).payload)
    assert err.errno == 1043 and err.sqlstate == "08S01"
    assert isinstance(events[-1], Failed) and hs.state is HandshakeState.FAILED


def test_second_ssl_request_refused():
    hs = make_hs(tls=True)
    hs.receive(pkt(ssl_request(), 1))
    events = hs.receive(pkt(ssl_request(), 2))
    assert parse_err(only_packet(sends(events)[0]).payload).errno == 1043
    assert hs.state is HandshakeState.FAILED


@BYTEWISE
def test_tls_required_refuses_a_plain_login_before_checking_it(bytewise):
    for token in (native(b"secret"), native(b"wrong")):  # no password oracle: the same answer either way
        peer = HandshakePeer(make_hs(tls=True, tls_required=True), bytewise=bytewise)
        assert parse_handshake_v10(only_packet(peer.greeting()).payload).capabilities & CLIENT.SSL
        out = peer.receive(encode_packet(handshake_response(b"app", token), 1))
        assert_err(out, 2, 3159, "HY000", INSECURE_TRANSPORT_MESSAGE)
        assert peer.events[-1] == Failed(3159, INSECURE_TRANSPORT_MESSAGE) and peer.hs.state is HandshakeState.FAILED


@BYTEWISE
def test_tls_required_lets_a_tls_login_in(bytewise):
    peer = HandshakePeer(make_hs(tls=True, tls_required=True), bytewise=bytewise)
    assert peer.receive(encode_packet(ssl_request(), 1)) == b""
    resp = handshake_response(b"app", native(b"secret"), caps=BASIC_CLIENT_FLAGS | CLIENT.SSL)
    ok = only_packet(peer.receive(encode_packet(resp, 2)))
    assert ok.seq == 3 and ok.payload[0] == 0 and isinstance(peer.events[-1], Verified)


def test_tls_required_without_tls_refuses_every_login():
    peer = HandshakePeer(make_hs(tls=False, tls_required=True))
    assert not parse_handshake_v10(only_packet(peer.greeting()).payload).capabilities & CLIENT.SSL
    assert_err(peer.receive(encode_packet(handshake_response(b"app", native(b"secret")), 1)),
               2, 3159, "HY000", INSECURE_TRANSPORT_MESSAGE)


# -- what a client may send before it has logged in ------------------------------------------

TOO_BIG = ("Got a packet bigger than 'max_allowed_packet' bytes (a login packet may have at most "
           f"{MAX_LOGIN_PACKET} bytes)")


@BYTEWISE
@pytest.mark.parametrize("announced", [MAX_LOGIN_PACKET + 1, MAX_FRAME])
def test_oversized_login_packet_gets_1153_at_its_header(bytewise, announced):
    """As MariaDB answers an oversized first packet (1153, 08S01), but without reading it all."""
    peer = HandshakePeer(make_hs(), bytewise=bytewise)
    out = peer.receive(frame_header(announced, 1) + b"\0" * 100)
    assert_err(out, 2, 1153, "08S01", TOO_BIG)
    assert peer.events[-1] == Failed(1153, TOO_BIG) and peer.hs.state is HandshakeState.FAILED
    assert peer.decoder.buffered == 0
    assert peer.receive(b"\0" * 10_000) == b""  # the rest is dropped unread


def test_oversized_auth_switch_response():
    peer = HandshakePeer(make_hs())
    switch_request(peer.receive(encode_packet(handshake_response(b"app", b"x", plugin=b"dialog"), 1)), seq=2)
    assert_err(peer.receive(frame_header(MAX_LOGIN_PACKET + 1, 3)), 4, 1153, "08S01", TOO_BIG)


def test_login_with_64_kib_of_connect_attributes():
    attrs = {b"k%02d" % i: b"v" * 1017 for i in range(64)}  # 64 x 1024 bytes: the clients' own limit
    resp = handshake_response(b"app", native(b"secret"), caps=BASIC_CLIENT_FLAGS, attrs=attrs)
    assert 64 * 1024 < len(resp) < MAX_LOGIN_PACKET
    peer = HandshakePeer(make_hs())
    assert only_packet(peer.receive(encode_packet(resp, 1))).payload[0] == 0
    assert peer.events[-1].connect_attrs == attrs


# -- sequence ids and malformed packets ------------------------------------------------------


@pytest.mark.parametrize("seq", [0, 2, 255])
def test_out_of_order_response(seq):
    hs = make_hs()
    events = hs.receive(pkt(handshake_response(b"app", native(b"secret")), seq))
    err = parse_err(only_packet(sends(events)[0]).payload)
    assert err.errno == 1156 and err.message == b"Got packets out of order"
    assert events[-1] == Failed(1156, "Got packets out of order")
    assert hs.state is HandshakeState.FAILED


@pytest.mark.parametrize("payload", [
    b"",
    b"\x00",
    b"\x00\x02\x00\x00",  # no PROTOCOL_41
    handshake_response(b"app", native(b"secret"))[:34],  # cut inside the user/auth fields
    handshake_response(b"app", b"x" * 20)[:-1],  # plugin name without its NUL
    b"\xff" * 40,
])
def test_malformed_response_gets_err_not_exception(payload):
    hs = make_hs()
    events = hs.receive(pkt(payload, 1))
    err = parse_err(only_packet(sends(events)[0]).payload)
    assert err.errno == 1043 and err.sqlstate == "08S01"
    assert err.message.startswith(b"Bad handshake")
    assert isinstance(events[-1], Failed) and hs.state is HandshakeState.FAILED


def test_packets_after_failure_get_err():
    hs = make_hs()
    hs.receive(pkt(b"\x00", 1))
    events = hs.receive(pkt(b"anything", 3))
    assert isinstance(events[-1], Failed)


def test_packet_after_done_gets_err():
    hs = make_hs()
    hs.receive(pkt(handshake_response(b"app", native(b"secret")), 1))
    hs.accept(AUTOCOMMIT)
    events = hs.receive(pkt(b"\x03SELECT 1", 3))
    assert isinstance(events[-1], Failed)


@settings(max_examples=300)
@given(st.binary(max_size=200), st.booleans())
def test_no_exception_escapes_for_any_first_packet(payload, tls):
    hs = make_hs(tls=tls)
    events = hs.receive(pkt(payload, 1))
    assert events and all(isinstance(e, (Send, StartTLS, Verified, Failed)) for e in events)
    for data in sends(events):
        decode_all(data)


@settings(max_examples=100)
@given(st.binary(max_size=100))
def test_no_exception_escapes_for_any_switch_reply(payload):
    hs = make_hs()
    hs.receive(pkt(handshake_response(b"legacy", sha2(b"secret"), plugin=SHA2), 1))
    events = hs.receive(pkt(payload, 3))
    assert events and isinstance(events[-1], (Verified, Failed))


# -- PyMySQL's client code against the machine ------------------------------------------------


def pymysql_login(user: str, password, *, plugin: str | None = None, bytewise: bool = False, **kw):
    peer = HandshakePeer(make_hs(), bytewise=bytewise)
    client = PyMySQLClient(peer.receive, user=user, password=password, **kw)
    client.connect(peer.greeting(), plugin=plugin)
    return peer, client


@BYTEWISE
@pytest.mark.parametrize("user,plugin,expect_plugin", [
    ("app", None, NATIVE),
    ("legacy", None, NATIVE),
    ("app", "caching_sha2_password", SHA2),  # as a client defaulting to caching_sha2 opens
    ("legacy", "caching_sha2_password", NATIVE),  # switched
    ("app", "sha256_password", NATIVE),  # switched
])
def test_pymysql_logs_in(bytewise, user, plugin, expect_plugin):
    peer, client = pymysql_login(user, "secret", plugin=plugin, bytewise=bytewise, database="shop",
                                 program_name="pytest")
    verified = peer.events[-1]
    assert isinstance(verified, Verified)
    assert verified.user == user.encode() and verified.database == b"shop" and verified.plugin == expect_plugin
    assert verified.connect_attrs[b"program_name"] == b"pytest"
    assert peer.hs.state is HandshakeState.DONE
    assert client.inbox == b""  # PyMySQL read exactly what was sent


def test_pymysql_empty_password_native():
    peer, _ = pymysql_login("nopw", "")
    assert isinstance(peer.events[-1], Verified)


@pytest.mark.parametrize("user,password,using", [
    ("app", "wrong", "YES"), ("nobody", "secret", "YES"), ("app", "", "NO"), ("legacy", "nope", "YES"),
])
def test_pymysql_access_denied(user, password, using):
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql_login(user, password)
    assert info.value.args == (1045, f"Access denied for user '{user}'@'{HOST}' (using password: {using})")


# -- COM_CHANGE_USER -------------------------------------------------------------------------

CU_CAPS = PROXY_CAPS & (BASIC_CLIENT_FLAGS | CLIENT.CONNECT_ATTRS | CLIENT.CONNECT_WITH_DB | CLIENT.SESSION_TRACK)


def change(user: bytes, token: bytes, **kw) -> tuple[ChangeUserAuth, list]:
    cu = ChangeUserAuth(USERS.get, HOST, SCRAMBLE, CU_CAPS)
    return cu, cu.start(parse_change_user(change_user(user, token, **kw), CU_CAPS), seq=0)


@pytest.mark.parametrize("user", [b"app", b"legacy"])
def test_change_user_native(user):
    cu, events = change(user, native(b"secret"), database=b"sales", charset=224, attrs={b"k": b"v"})
    assert events == [Verified(user, b"sales", CU_CAPS, 224, {b"k": b"v"}, NATIVE)]
    ok = only_packet(cu.accept(AUTOCOMMIT))
    assert ok.seq == 1 and parse_ok(ok.payload, CU_CAPS).status == AUTOCOMMIT
    assert cu.state is HandshakeState.DONE


def test_change_user_caching_sha2():
    cu, events = change(b"app", sha2(b"secret"), plugin=SHA2)
    more = only_packet(sends(events)[0])
    assert (more.seq, more.payload) == (1, b"\x01\x03")
    assert events[-1].plugin == SHA2
    assert only_packet(cu.accept(AUTOCOMMIT)).seq == 2


@BYTEWISE
def test_change_user_switch(bytewise):
    cu, events = change(b"legacy", sha2(b"secret"), plugin=SHA2)
    switch_request(sends(events)[0], seq=1)
    d = PacketDecoder()
    raw = encode_packet(native(b"secret"), 2)
    got = []
    for piece in ([raw[i:i + 1] for i in range(len(raw))] if bytewise else [raw]):
        d.feed(piece)
        while (p := d.next_packet()) is not None:
            got += cu.receive(p)
    assert [type(e) for e in got] == [Verified] and got[0].plugin == NATIVE
    assert only_packet(cu.accept(AUTOCOMMIT)).seq == 3


@pytest.mark.parametrize("user,token,using", [
    (b"app", native(b"wrong"), "YES"), (b"ghost", native(b"secret"), "YES"), (b"app", b"", "NO"),
])
def test_change_user_denied(user, token, using):
    cu, events = change(user, token)
    message = f"Access denied for user '{user.decode()}'@'{HOST}' (using password: {using})"
    assert_err(sends(events)[0], 1, 1045, "28000", message)
    assert events[-1] == Failed(1045, message) and cu.state is HandshakeState.FAILED


def test_change_user_receive_out_of_order_or_unexpected():
    cu, _ = change(b"legacy", sha2(b"secret"), plugin=SHA2)
    events = cu.receive(pkt(native(b"secret"), 5))
    assert events[-1].errno == 1156
    cu2, _ = change(b"app", native(b"secret"))  # already verified: nothing more is expected
    assert cu2.receive(pkt(b"x", 1))[-1].errno == 1156


def test_change_user_oversized_auth_data():
    cu, events = change(b"legacy", sha2(b"secret"), plugin=SHA2)
    switch_request(sends(events)[0], seq=1)
    events = cu.oversized(Oversized(2, 2, MAX_LOGIN_PACKET + 1))
    assert_err(sends(events)[0], 3, 1153, "08S01", TOO_BIG)
    assert events[-1] == Failed(1153, TOO_BIG) and cu.state is HandshakeState.FAILED


def test_change_user_from_mysql_connector():
    from mysql.connector.constants import ClientFlag
    from mysql.connector.protocol import MySQLProtocol

    handshake = {"auth_data": SCRAMBLE, "auth_plugin": "mysql_native_password", "capabilities": PROXY_CAPS}
    payload, _ = MySQLProtocol.make_auth(handshake, "app", "secret", database="inv", charset=45,
                                         client_flags=ClientFlag.get_default() | ClientFlag.PLUGIN_AUTH,
                                         is_change_user_request=True)
    cu = ChangeUserAuth(USERS.get, HOST, SCRAMBLE, CU_CAPS)
    events = cu.start(parse_change_user(payload, CU_CAPS))
    assert [type(e) for e in events] == [Verified] and events[0].database == b"inv"

# A regression corpus of malformed client input (issue 10 item 20): the bytes
# of issues 10 and 16 that once broke the proxy, as a client sends them. Each
# stream is fed to a fresh PacketDecoder whole, byte by byte and in random
# chunks (h11's way, helpers.feed_whole_and_bytewise), and each packet that
# comes out goes to the sans-IO parser that would read it: the handshake
# (ServerHandshake.receive, then the TLS switch), COM_CHANGE_USER
# (parse_change_user, ChangeUserAuth), COM_STMT_EXECUTE (parse_execute,
# nulls_only), COM_QUERY / COM_STMT_PREPARE text (sql.analyze and the other
# functions on client text), LOCAL INFILE data (FrameScanner). Packet payloads
# up to a few hundred bytes also go to every parse_* cut short at each length.
# Every parser either returns or raises a ProtocolError (errors.py): never
# IndexError, struct.error, UnicodeDecodeError... (an exception other than a
# ProtocolError escapes the protocol callback and closes the client with 1105).
from __future__ import annotations

import struct

import pytest

from mysqlpool_proxy.constants import CLIENT, COMMAND
from mysqlpool_proxy.errors import ProtocolError
from mysqlpool_proxy.protocol import auth, packets, sql, stmt
from mysqlpool_proxy.protocol.framing import MAX_FRAME, FrameScanner, Oversized, Packet
from mysqlpool_proxy.protocol.handshake import ChangeUserAuth, Failed, ServerHandshake, StartTLS, Verified
from mysqlpool_proxy.protocol.session_track import parse_state_changes

from .helpers import (
    BASIC_CLIENT_FLAGS,
    PROXY_CAPS,
    Driver,
    change_user,
    feed_whole_and_bytewise,
    frames,
    handshake_response,
    ssl_request,
)

SCRAMBLE = b"A1b2C3d4E5f6G7h8I9j0"
USERS = {b"app": auth.credentials_from_password("secret")}
CLIENT_HELLO = b"\x16\x03\x01\x01\x2c\x01\x00\x01\x28\x03\x03" + bytes(range(32)) + b"\x00\x00\x02\x13\x01\x01\x00"


def outcome(fn, *args):
    """What fn(*args) did: its result's type, or the ProtocolError it raised (errno, class)."""
    try:
        return type(fn(*args)).__name__
    except ProtocolError as exc:
        return (type(exc).__name__, exc.errno)


def execute(rest: bytes = b"", stmt_id: int = 1) -> bytes:
    return b"\x17" + struct.pack("<IBI", stmt_id, 0, 1) + rest


# -- the corpus: (name, stage, stream, decoder max_size) --------------------------------------------

LOGIN = frames(handshake_response(b"app", b"x" * 20), seq=1)
CORPUS = [
    # issue 10 item 14: malformed COM_STMT_EXECUTE
    ("execute: the command byte alone", "command", frames(b"\x17"), None),
    ("execute: a statement id alone", "command", frames(b"\x17\x01\x00\x00\x00"), None),
    ("execute: ends after the iteration count", "command", frames(execute()), None),
    ("execute: a null bitmap, nothing after", "command", frames(execute(b"\x00")), None),
    ("execute: new params bound, no types", "command", frames(execute(b"\x00\x01")), None),
    ("execute: new params bound, types cut short", "command", frames(execute(b"\x00\x01\x08\x00\x08")), None),
    ("execute: a flag of 0xff", "command", frames(execute(b"\x00\xff" + b"\x08\x00" * 2)), None),
    ("execute: a huge statement id and iteration count", "command", frames(b"\x17" + b"\xff" * 9), None),
    ("fetch, reset, close, long data cut short", "command",
     frames(b"\x1c", b"\x1c\x01", b"\x1a\x01\x00", b"\x19", b"\x18\x01\x00\x00\x00\x00"), None),
    ("prepare and init_db of nothing", "command", frames(b"\x16", b"\x02", b"\x02\x00", b"\x04"), None),
    # issue 10 item 15: a pre-authentication packet far larger than a handshake
    ("handshake: a 60 MiB packet announced", "handshake",
     b"\xff\xff\xff\x01" + b"\x00" * 3000, 64 * 1024),
    ("handshake: oversized, whole", "handshake", frames(b"\x85\xa6\xff\x01" + b"a" * 70000, seq=1), 64 * 1024),
    # issue 10 item 16: the TLS ClientHello in the same read as the SSLRequest
    ("handshake: SSLRequest then ClientHello", "handshake", frames(ssl_request(), seq=1) + CLIENT_HELLO, None),
    ("handshake: SSLRequest twice", "handshake", frames(ssl_request(), ssl_request(), seq=1), None),
    # handshake responses cut short or lying about their lengths
    ("handshake: 3 bytes", "handshake", frames(b"\x85\xa6\xff", seq=1), None),
    ("handshake: no NUL after the user", "handshake",
     frames(struct.pack("<IIB", BASIC_CLIENT_FLAGS, 1 << 24, 45) + b"\0" * 23 + b"app", seq=1), None),
    ("handshake: auth data longer than the packet", "handshake",
     frames(struct.pack("<IIB", BASIC_CLIENT_FLAGS, 1 << 24, 45) + b"\0" * 23 + b"app\0\xfe" + b"\xff" * 8, seq=1),
     None),
    ("handshake: connect attributes overrun", "handshake",
     frames(handshake_response(b"app", b"x" * 20, attrs={b"a": b"b"})[:-2] + b"\xfc\xff\xff", seq=1), None),
    ("handshake: attribute with a NULL length", "handshake",
     frames(handshake_response(b"app", b"x" * 20, attrs={})[:-1] + b"\x02\xfb\x00", seq=1), None),
    ("handshake: not protocol 4.1", "handshake", frames(b"\x00\x00\x00\x00" + b"\x00" * 40, seq=1), None),
    ("handshake: bad utf-8 user", "handshake", frames(handshake_response(b"\xff\xfe\xc3", b"x" * 20), seq=1), None),
    ("handshake: wrong sequence id", "handshake", frames(handshake_response(b"app", b"x" * 20), seq=5), None),
    ("handshake: auth switch answer cut short", "handshake",
     frames(handshake_response(b"app", b"x" * 20, plugin=b"caching_sha2_password"), b"", b"\x01", seq=1), None),
    # COM_CHANGE_USER cut short or with odd fields
    ("change user: user alone", "command", frames(b"\x11app"), None),
    ("change user: auth length past the end", "command", frames(b"\x11app\0\xff\x01\x02"), None),
    ("change user: bad attributes", "command", frames(change_user(b"app", b"x" * 20, attrs={})[:-1] + b"\xfe\x01"),
     None),
    # issue 16: sequence ids, oversized commands, SQL texts that were quadratic, LOCAL INFILE
    ("command: wrong sequence ids", "command", frames(b"\x03SELECT 1", seq=3) + frames(b"\x0e", seq=200), None),
    ("command: an oversized query", "command", frames(b"\x03" + b"x" * 3000), 1024),
    ("command: a 16 MiB frame announced, nothing after", "command", b"\xff\xff\xff\x00\x03SELECT", None),
    ("query: unterminated escaped quotes", "command", frames(b"\x03SELECT @a '" + b"\\'" * 12000), None),
    ("query: unterminated comments", "command", frames(b"\x03SELECT @a " + b"/* " * 8000), None),
    ("query: SET NAMES and spaces", "command", frames(b"\x03SET NAMES a" + b" " * 24000 + b"x"), None),
    ("query: SET NAMES with bad quotes", "command", frames(b"\x03SET NAMES 'utf8", b"\x03SET NAMES `x` COLLATE '"),
     None),
    ("query: nested SET STATEMENT", "command", frames(b"\x03" + b"SET STATEMENT a=1 FOR " * 2000 + b"SET @x=1"),
     None),
    ("query: bytes that are not UTF-8", "command", frames(b"\x03SELECT @\xff\xfe := 1, '\xc3'", b"\x16\xff@"), None),
    ("infile: wrong sequence ids, then the end", "infile", frames(b"a,b\n", b"c,d\n", seq=9) + frames(b"", seq=0),
     None),
    ("infile: a full frame then an empty one", "infile",
     struct.pack("<I", MAX_FRAME)[:3] + b"\x02" + b"x" * 10, None),
]


class Client(Driver):
    """What the client connection does with a stream: decode packets, hand each to its parser."""

    def __init__(self, stage: str, max_size: int | None):
        from mysqlpool_proxy.protocol.framing import PacketDecoder

        self.stage = stage
        self.decoder = PacketDecoder(max_size or (1 << 30))
        self.scanner = FrameScanner()
        self.events: list = []
        self.tls_bytes = b""
        self.handshake = ServerHandshake(connection_id=7, server_version=b"5.5.5-10.11.6-MariaDB-mysqlpool",
                                         capabilities=PROXY_CAPS, charset=45, lookup=USERS.get,
                                         client_host="10.0.0.1", tls_available=True, scramble=SCRAMBLE)
        self.change_user: ChangeUserAuth | None = None
        self.infile_end = -1
        self.fed = 0

    def feed(self, chunk: bytes) -> None:
        if self.stage == "tls":
            self.tls_bytes += chunk
            return
        if self.stage == "infile":
            if self.infile_end < 0:
                end = self.scanner.feed(chunk)
                self.infile_end = -1 if end < 0 else self.fed + end
            self.fed += len(chunk)
            return
        self.decoder.feed(chunk)
        while self.stage != "tls":
            try:
                item = self.decoder.next_packet()
            except ProtocolError as exc:
                self.events.append(("decoder", type(exc).__name__))
                return
            if item is None:
                return
            self.packet(item)

    def packet(self, item: Packet | Oversized) -> None:
        if isinstance(item, Oversized):
            self.events.append(("oversized", item.size))
            return
        self.events.append(("packet", item.seq, len(item.payload)))
        if self.stage == "handshake":
            self.handshake_packet(item)
        else:
            self.command(item)

    def handshake_packet(self, pkt: Packet) -> None:
        for event in self.handshake.receive(pkt):
            self.events.append(type(event).__name__)
            if isinstance(event, StartTLS):
                self.stage = "tls"  # what was read after the SSLRequest is the TLS layer's
                self.tls_bytes = self.decoder.take_buffer()
            elif isinstance(event, (Verified, Failed)):
                self.stage = "command"

    def command(self, pkt: Packet) -> None:
        payload = pkt.payload
        code = payload[0] if payload else None
        if self.change_user is not None:
            self.events += [type(e).__name__ for e in self.change_user.receive(pkt)]
            return
        if code in (COMMAND.COM_QUERY, COMMAND.COM_STMT_PREPARE):
            text = payload[1:]
            self.events += [outcome(fn, text) for fn in (sql.analyze, sql.session_only, sql.parse_set_names,
                                                          sql.without_schema)]
            self.events.append(outcome(sql.replace_connection_id, text, 7))
        elif code == COMMAND.COM_STMT_EXECUTE:
            for params in (0, 1, 2, 9, 300):
                result = outcome(stmt.parse_execute, payload, params)
                self.events.append(result)
                if result == "ExecuteHeader":
                    self.events.append(outcome(stmt.nulls_only, payload, params))
        elif code == COMMAND.COM_CHANGE_USER:
            try:
                request = packets.parse_change_user(payload, PROXY_CAPS)
            except ProtocolError as exc:
                self.events.append((type(exc).__name__, exc.errno))
                return
            self.change_user = ChangeUserAuth(USERS.get, "10.0.0.1", SCRAMBLE, PROXY_CAPS)
            self.events += [type(e).__name__ for e in self.change_user.start(request, pkt.seq)]

    def result(self):
        return self.stage, self.events, self.tls_bytes, self.infile_end


@pytest.mark.parametrize("name, stage, stream, max_size", CORPUS, ids=[c[0] for c in CORPUS])
def test_the_parsers_return_or_raise_protocol_errors(name, stage, stream, max_size):
    """Fed whole, byte by byte and in random chunks: the same outcome, and nothing but
    ProtocolError ever raised (an exception of another type fails the test)."""
    feed_whole_and_bytewise(lambda: Client(stage, max_size), stream)


def test_the_client_hello_after_an_ssl_request_is_left_for_tls():
    """Issue 10 item 16: the bytes read with the SSLRequest belong to the TLS handshake."""
    stream = frames(ssl_request(), seq=1) + CLIENT_HELLO
    stage, events, tls_bytes, _ = feed_whole_and_bytewise(lambda: Client("handshake", None), stream)
    assert stage == "tls" and "StartTLS" in events
    assert tls_bytes == CLIENT_HELLO


def test_an_execute_refused_is_refused_whatever_its_parameter_count():
    # the corpus' execute shapes, against every parameter count: never anything but ExecuteRefused
    for name, _stage, stream, _ in CORPUS:
        if name.startswith("execute"):
            [(_, payload)] = [(p.seq, p.payload) for p in _decode(stream)]
            for params in range(70):
                assert outcome(stmt.parse_execute, payload, params) in ("ExecuteHeader", ("ExecuteRefused", 1835),
                                                                        ("ExecuteRefused", 1210))


def _decode(stream: bytes) -> list[Packet]:
    from mysqlpool_proxy.protocol.framing import PacketDecoder

    decoder = PacketDecoder()
    decoder.feed(stream)
    out = []
    while (pkt := decoder.next_packet()) is not None:
        out.append(pkt)
    return out


# -- every payload parser, on every cut of the corpus' payloads and of well-formed ones ---------------

CAPS = (0, CLIENT.PROTOCOL_41, CLIENT.PROTOCOL_41 | CLIENT.SESSION_TRACK, PROXY_CAPS, 0xFFFFFFFF)
PAYLOAD_PARSERS = {
    "parse_ok": lambda b: [packets.parse_ok(b, caps) for caps in CAPS],
    "parse_err": lambda b: [packets.parse_err(b, caps) for caps in CAPS],
    "parse_eof": packets.parse_eof,
    "is_eof": packets.is_eof,
    "strip_session_track": lambda b: [packets.strip_session_track(b, caps) for caps in CAPS],
    "parse_handshake_v10": packets.parse_handshake_v10,
    "parse_handshake_response": packets.parse_handshake_response,
    "is_ssl_request": packets.is_ssl_request,
    "parse_change_user": lambda b: [packets.parse_change_user(b, caps) for caps in CAPS],
    "parse_state_changes": parse_state_changes,
    "parse_execute": lambda b: [stmt.parse_execute(b, n) for n in (0, 1, 2, 9, 300)],
}
WELL_FORMED = [
    packets.make_ok(PROXY_CAPS, 2, 1, 4, 1, b"Records: 1", session_state=b"\x01\x06\x05capdb\x02\x011"),
    packets.make_err(1064, "42000", "You have an error"),
    packets.make_eof(2, 1),
    packets.make_handshake_v10(packets.HandshakeV10(b"5.5.5-10.11.6-MariaDB", 7, SCRAMBLE, PROXY_CAPS, 45, 2,
                                                    b"mysql_native_password")),
    handshake_response(b"app", b"x" * 20, database=b"appdb", attrs={b"_client_name": b"pymysql"}),
    handshake_response(b"app", b"x" * 20, caps=BASIC_CLIENT_FLAGS & ~CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA),
    change_user(b"app", b"x" * 20, database=b"appdb", attrs={b"a": b"b"}),
    b"\x00\x0e\x0dautocommit\x02ON\x01\x06\x05capdb\x05\x09\x08_______\x03\x02\x011",
    execute(b"\x00\x01\x08\x00\xfd\x00" + struct.pack("<q", 1) + b"\x03abc"),
]
PAYLOADS = WELL_FORMED + [p.payload for _, _, stream, _ in CORPUS if len(stream) < 600 for p in _decode(stream)]


@pytest.mark.parametrize("parser", PAYLOAD_PARSERS)
def test_payload_parsers_on_every_cut(parser):
    parse = PAYLOAD_PARSERS[parser]
    for payload in PAYLOADS:
        for end in range(len(payload) + 1):
            outcome(parse, payload[:end])
            outcome(parse, payload[:end] + b"\xff")
            outcome(parse, payload[:end] + b"\xfe" + b"\xff" * 8)

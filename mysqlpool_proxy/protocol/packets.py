"""Packet vocabulary: dataclasses plus parse_*/make_* for each packet the proxy reads or writes.

Parsers take one logical payload (no header) and the negotiated capability
flags where the format depends on them; they raise RemoteProtocolError on
anything malformed. Makers return payloads; framing adds the header.

References: the MySQL client/server protocol pages (Protocol::HandshakeV10,
HandshakeResponse41, SSLRequest, OK_Packet, ERR_Packet, EOF_Packet,
AuthSwitchRequest, AuthMoreData, COM_CHANGE_USER) and MariaDB's notes where
it differs: with CLIENT_MYSQL (bit 0) clear, the last 4 of the greeting's 10
reserved bytes carry the server's extended capabilities, and the last 4 of
the HandshakeResponse's 23 those the client wants (bits 32 and up of the
capabilities here, MARIADB_* in constants.py). A greeting or a response with
CLIENT_MYSQL set has none: those bytes are filler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..constants import CLIENT, CLIENT_MYSQL, CLIENT_ZSTD_COMPRESSION_ALGORITHM, SERVER_SESSION_STATE_CHANGED
from ..errors import RemoteProtocolError
from .wire import BytesLike, Reader, int1, int2, int4, lenenc_bytes, lenenc_int

__all__ = [
    "OkPacket", "ErrPacket", "EofPacket", "HandshakeV10", "HandshakeResponse", "ChangeUser",
    "parse_ok", "parse_err", "parse_eof", "is_eof", "parse_handshake_v10", "make_handshake_v10",
    "parse_handshake_response", "is_ssl_request", "parse_change_user",
    "make_ok", "make_err", "make_eof", "make_eof_for", "make_auth_switch", "make_auth_more_data",
    "strip_session_track", "without_session_track",
]

OK_HEADER: Final = 0x00
EOF_HEADER: Final = 0xFE
ERR_HEADER = 0xFF
LOCAL_INFILE_HEADER = 0xFB
AUTH_MORE_DATA_HEADER = 0x01
AUTH_SWITCH_HEADER = 0xFE

# PyMySQL's capability flags the login reads, as compiled constants: CLIENT is a module, so
# `CLIENT.SSL` is a lookup by name each time it is read.
_PROTOCOL_41: Final[int] = CLIENT.PROTOCOL_41
_SSL: Final[int] = CLIENT.SSL
_SECURE_CONNECTION: Final[int] = CLIENT.SECURE_CONNECTION
_CONNECT_WITH_DB: Final[int] = CLIENT.CONNECT_WITH_DB
_PLUGIN_AUTH: Final[int] = CLIENT.PLUGIN_AUTH
_PLUGIN_AUTH_LENENC_CLIENT_DATA: Final[int] = CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA
_CONNECT_ATTRS: Final[int] = CLIENT.CONNECT_ATTRS
_SESSION_TRACK: Final[int] = CLIENT.SESSION_TRACK
_CLIENT_MYSQL: Final[int] = CLIENT_MYSQL
_ZSTD: Final[int] = CLIENT_ZSTD_COMPRESSION_ALGORITHM
_STATE_CHANGED: Final[int] = SERVER_SESSION_STATE_CHANGED


# -- OK / ERR / EOF -----------------------------------------------------------


# Read for every OK a server sends, so its __init__ is written out: mypyc compiles it (a dataclass's
# generated __init__, and a whole dataclass with slots=True, stay interpreted). The dataclass gives == and repr.
@dataclass(init=False)
class OkPacket:
    affected_rows: int
    last_insert_id: int
    status: int
    warnings: int
    info: bytes
    session_state: bytes | None  # raw session-state-change block, if any

    def __init__(self, affected_rows: int, last_insert_id: int, status: int, warnings: int, info: bytes = b"",
                 session_state: bytes | None = None) -> None:
        self.affected_rows = affected_rows
        self.last_insert_id = last_insert_id
        self.status = status
        self.warnings = warnings
        self.info = info
        self.session_state = session_state


@dataclass(slots=True)
class ErrPacket:
    errno: int
    sqlstate: str
    message: bytes


@dataclass(slots=True)
class EofPacket:
    warnings: int
    status: int


def is_eof(payload: BytesLike) -> bool:
    """0xFE starts an EOF packet only when the payload is short (else it is a lenenc int)."""
    return len(payload) < 9 and len(payload) > 0 and payload[0] == EOF_HEADER


def parse_ok(payload: BytesLike, capabilities: int) -> OkPacket:
    # The usual OK (it ends every statement without rows) is read inline: one-byte affected rows,
    # insert id and lengths, every length checked. Anything else takes the Reader (_parse_ok).
    n = len(payload)
    if n >= 7 and (payload[0] == OK_HEADER or payload[0] == EOF_HEADER) and payload[1] < 0xFB and payload[2] < 0xFB:
        status = payload[3] | payload[4] << 8
        warnings = payload[5] | payload[6] << 8
        if n == 7:
            return OkPacket(payload[1], payload[2], status, warnings)
        if capabilities & _SESSION_TRACK and payload[7] < 0xFB:
            pos = 8 + payload[7]
            if pos <= n:
                info = bytes(payload[8:pos])
                if not status & _STATE_CHANGED or pos == n:
                    return OkPacket(payload[1], payload[2], status, warnings, info)
                stop = pos + 1 + payload[pos]
                if payload[pos] < 0xFB and stop <= n:
                    return OkPacket(payload[1], payload[2], status, warnings, info, bytes(payload[pos + 1:stop]))
    return _parse_ok(payload, capabilities)


def _parse_ok(payload: BytesLike, capabilities: int) -> OkPacket:
    r = Reader(payload)
    header = r.int1()
    if header not in (OK_HEADER, EOF_HEADER):
        raise RemoteProtocolError(f"not an OK packet (header 0x{header:02x})")
    affected = r.lenenc_int() or 0
    insert_id = r.lenenc_int() or 0
    status = r.int2()
    warnings = r.int2()
    info = b""
    state = None
    if capabilities & CLIENT.SESSION_TRACK:
        if not r.at_end():
            info = r.lenenc_bytes()
            if status & _STATE_CHANGED and not r.at_end():
                state = r.lenenc_bytes()
    elif not r.at_end():
        # The protocol pages say string<EOF>, but MySQL and MariaDB servers send the
        # info length-encoded either way (net_store_data); read what they send.
        rest = r.rest()
        info = rest[1:] if rest[0] == len(rest) - 1 else rest
    return OkPacket(affected, insert_id, status, warnings, info, state)


def parse_err(payload: BytesLike, capabilities: int = CLIENT.PROTOCOL_41) -> ErrPacket:
    r = Reader(payload)
    if r.int1() != ERR_HEADER:
        raise RemoteProtocolError("not an ERR packet")
    errno = r.int2()
    sqlstate = "HY000"
    if capabilities & CLIENT.PROTOCOL_41 and r.remaining >= 6 and payload[r.pos] == 0x23:  # '#'
        r.int1()
        sqlstate = r.fixed(5).decode("ascii", "replace")
    return ErrPacket(errno, sqlstate, r.rest())


def parse_eof(payload: BytesLike) -> EofPacket:
    r = Reader(payload)
    if r.int1() != EOF_HEADER:
        raise RemoteProtocolError("not an EOF packet")
    return EofPacket(r.int2(), r.int2())


def make_ok(
    capabilities: int,
    status: int,
    affected_rows: int = 0,
    last_insert_id: int = 0,
    warnings: int = 0,
    info: bytes = b"",
    header: int = OK_HEADER,
    session_state: bytes | None = None,
) -> bytes:
    """An OK packet; `session_state` (a raw state-change block) only for CLIENT_SESSION_TRACK clients."""
    if session_state and capabilities & _SESSION_TRACK:
        status |= _STATE_CHANGED
    else:
        status &= ~_STATE_CHANGED
        session_state = None
    if affected_rows < 0xFB and last_insert_id < 0xFB:  # one byte each: the usual OK, in one step
        head = bytes((header & 0xFF, affected_rows, last_insert_id, status & 0xFF, status >> 8 & 0xFF,
                      warnings & 0xFF, warnings >> 8 & 0xFF))
    else:
        head = int1(header) + lenenc_int(affected_rows) + lenenc_int(last_insert_id) + int2(status) + int2(warnings)
    # The info string is length-encoded with or without CLIENT_SESSION_TRACK, as
    # servers send it (the protocol pages' string<EOF> is not what clients read).
    if session_state:
        return head + lenenc_bytes(info) + lenenc_bytes(session_state)
    return head + lenenc_bytes(info) if info else head


def make_err(errno: int, sqlstate: str, message: str | bytes, capabilities: int = CLIENT.PROTOCOL_41) -> bytes:
    if isinstance(message, str):
        message = message.encode("utf-8", "replace")
    if capabilities & CLIENT.PROTOCOL_41:
        return b"\xff" + int2(errno) + b"#" + sqlstate.encode("ascii")[:5].ljust(5, b"0") + message
    return b"\xff" + int2(errno) + message


def make_eof(status: int, warnings: int = 0) -> bytes:
    return b"\xfe" + int2(warnings) + int2(status)


def make_eof_for(capabilities: int, status: int, warnings: int = 0) -> bytes:
    """An EOF in the client's framing: with CLIENT_DEPRECATE_EOF, the OK packet with the EOF's 0xFE
    header that a server sends such a client in its place."""
    if capabilities & CLIENT.DEPRECATE_EOF:
        return make_ok(capabilities, status, warnings=warnings, header=EOF_HEADER)
    return make_eof(status, warnings)


def strip_session_track(payload: BytesLike, capabilities: int) -> bytes:
    """Re-encode an OK sent with CLIENT_SESSION_TRACK for a client without it.

    The session-state block is dropped (with its status bit); the info string
    stays length-encoded, exactly what a server would have sent.
    """
    return without_session_track(parse_ok(payload, capabilities | CLIENT.SESSION_TRACK), payload[0])


def without_session_track(ok: OkPacket, header: int = OK_HEADER) -> bytes:
    """The OK `ok` (parsed with CLIENT_SESSION_TRACK) as a client without it gets it (see strip_session_track)."""
    return make_ok(0, ok.status & ~_STATE_CHANGED, ok.affected_rows, ok.last_insert_id, ok.warnings,
                   ok.info, header=header)


# -- handshake ----------------------------------------------------------------


@dataclass(slots=True)
class HandshakeV10:
    server_version: bytes
    connection_id: int
    scramble: bytes
    capabilities: int
    charset: int
    status: int
    auth_plugin: bytes


def _extended(caps: int) -> int:
    """MariaDB's extended capabilities as the 4 bytes that carry them (none with CLIENT_MYSQL)."""
    return 0 if caps & _CLIENT_MYSQL else (caps >> 32) & 0xFFFFFFFF


def make_handshake_v10(hs: HandshakeV10) -> bytes:
    caps = hs.capabilities
    scramble = hs.scramble
    parts = [
        b"\x0a", hs.server_version, b"\0", int4(hs.connection_id),
        scramble[:8], b"\0", int2(caps & 0xFFFF), int1(hs.charset), int2(hs.status),
        int2((caps >> 16) & 0xFFFF), int1(len(scramble) + 1 if caps & CLIENT.PLUGIN_AUTH else 0),
        b"\0" * 6, int4(_extended(caps)),
        scramble[8:] + b"\0",
    ]
    if caps & CLIENT.PLUGIN_AUTH:
        parts += [hs.auth_plugin, b"\0"]
    return b"".join(parts)


def parse_handshake_v10(payload: BytesLike) -> HandshakeV10:
    r = Reader(payload)
    if r.int1() != 10:
        raise RemoteProtocolError("unsupported handshake protocol version")
    version = r.nul_bytes()
    conn_id = r.int4()
    part1 = r.fixed(8)
    r.int1()
    caps = r.int2()
    charset = r.int1()
    status = r.int2()
    caps |= r.int2() << 16
    data_len = r.int1()
    reserved = r.fixed(10)
    if not caps & CLIENT_MYSQL:
        caps |= int.from_bytes(reserved[6:], "little") << 32
    part2_len = max(13, data_len - 8)
    part2 = r.fixed(min(part2_len, r.remaining))
    scramble = (part1 + part2).rstrip(b"\0")
    plugin = r.nul_bytes() if caps & CLIENT.PLUGIN_AUTH and not r.at_end() else b""
    return HandshakeV10(version, conn_id, scramble, caps, charset, status, plugin)


# Made for every login, so its __init__ is written out: mypyc compiles it (a dataclass's generated
# __init__, and a whole dataclass with slots=True, stay interpreted). The dataclass gives == and repr.
@dataclass(init=False)
class HandshakeResponse:
    capabilities: int
    max_packet_size: int
    charset: int
    user: bytes
    auth_response: bytes
    database: bytes | None
    auth_plugin: bytes | None
    connect_attrs: dict[bytes, bytes]
    zstd_level: int  # with CLIENT_ZSTD_COMPRESSION_ALGORITHM: the level asked for (0: none sent)

    def __init__(self, capabilities: int, max_packet_size: int, charset: int, user: bytes, auth_response: bytes,
                 database: bytes | None = None, auth_plugin: bytes | None = None,
                 connect_attrs: dict[bytes, bytes] | None = None, zstd_level: int = 0) -> None:
        self.capabilities = capabilities
        self.max_packet_size = max_packet_size
        self.charset = charset
        self.user = user
        self.auth_response = auth_response
        self.database = database
        self.auth_plugin = auth_plugin
        self.connect_attrs = {} if connect_attrs is None else connect_attrs
        self.zstd_level = zstd_level


SSL_REQUEST_SIZE: Final = 32


def is_ssl_request(payload: BytesLike) -> bool:
    """An SSLRequest is the first 32 bytes of a HandshakeResponse41 with CLIENT_SSL set."""
    if len(payload) != SSL_REQUEST_SIZE:
        return False
    caps = payload[0] | payload[1] << 8 | payload[2] << 16 | payload[3] << 24
    return bool(caps & _SSL)


# The HandshakeResponse is read from `bytes` with the helpers below rather than with wire.Reader,
# whose payload may be a bytearray or a memoryview: mypyc indexes and slices `bytes` natively, and
# anything else by generic calls (a login's response costs several times as much through Reader).

def _short() -> RemoteProtocolError:
    return RemoteProtocolError("packet too short")


def _int4(data: bytes, pos: int) -> int:
    return data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16 | data[pos + 3] << 24


def _fixed(data: bytes, pos: int, size: int) -> tuple[bytes, int]:
    if pos + size > len(data):
        raise _short()
    return data[pos:pos + size], pos + size


def _nul_string(data: bytes, pos: int) -> tuple[bytes, int]:
    """The NUL-terminated string at `pos` (without its NUL), and the position after the NUL."""
    end = data.find(b"\0", pos)
    if end < 0:
        raise RemoteProtocolError(f"missing NUL terminator after offset {pos}")
    return data[pos:end], end + 1


def _lenenc_int(data: bytes, pos: int) -> tuple[int, int]:
    """A length-encoded integer (NULL, 0xFB, read as 0: a count of none), and the position after it."""
    if pos >= len(data):
        raise _short()
    first = data[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFB:
        return 0, pos + 1
    if first == 0xFF:
        raise RemoteProtocolError("invalid length-encoded integer prefix 0xFF")
    size = 2 if first == 0xFC else 3 if first == 0xFD else 8
    if pos + 1 + size > len(data):
        raise _short()
    return int.from_bytes(data[pos + 1:pos + 1 + size], "little"), pos + 1 + size


def _lenenc_string(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    """The length-encoded string at `pos`, which must end by `end`, and the position after it."""
    if pos < end and data[pos] == 0xFB:
        raise RemoteProtocolError("unexpected NULL length-encoded string")
    n, pos = _lenenc_int(data, pos)
    if pos + n > end:
        raise _short()
    return data[pos:pos + n], pos + n


def parse_handshake_response(payload: BytesLike) -> HandshakeResponse:
    data = bytes(payload)  # (no copy for bytes, what a Packet's payload is)
    n = len(data)
    if n < 4:
        raise _short()
    caps = _int4(data, 0)
    if not caps & _PROTOCOL_41:
        raise RemoteProtocolError("client does not speak protocol 4.1")
    if n < 32:  # max packet size, charset, 23 reserved bytes
        raise _short()
    max_packet = _int4(data, 4)
    charset = data[8]
    if not caps & _CLIENT_MYSQL:
        caps |= _int4(data, 28) << 32
    user, pos = _nul_string(data, 32)
    if caps & _PLUGIN_AUTH_LENENC_CLIENT_DATA:
        auth, pos = _lenenc_string(data, pos, n)
    elif caps & _SECURE_CONNECTION:  # a one-byte length
        if pos >= n:
            raise _short()
        auth, pos = _fixed(data, pos + 1, data[pos])
    else:
        auth, pos = _nul_string(data, pos)
    database = None
    if caps & _CONNECT_WITH_DB and pos < n:
        database, pos = _nul_string(data, pos)
    plugin = None
    if caps & _PLUGIN_AUTH and pos < n:
        plugin, pos = _nul_string(data, pos)
    attrs: dict[bytes, bytes] = {}
    if caps & _CONNECT_ATTRS and pos < n:
        attrs, pos = _connect_attrs(data, pos)
    zstd_level = 0
    if caps & _ZSTD and pos < n:  # MySQL 8: one byte after the attributes
        zstd_level = data[pos]
    return HandshakeResponse(caps, max_packet, charset, user, auth, database, plugin, attrs, zstd_level)


def _connect_attrs(data: bytes, pos: int) -> tuple[dict[bytes, bytes], int]:
    total, pos = _lenenc_int(data, pos)
    end = pos + total
    if end > len(data):
        raise RemoteProtocolError("connect attributes overrun the packet")
    attrs = {}
    while pos < end:
        key, pos = _lenenc_string(data, pos, end)
        attrs[key], pos = _lenenc_string(data, pos, end)
    return attrs, end


@dataclass(slots=True)
class ChangeUser:
    user: bytes
    auth_response: bytes
    database: bytes | None
    charset: int | None
    auth_plugin: bytes | None
    connect_attrs: dict[bytes, bytes]


def parse_change_user(payload: BytesLike, capabilities: int) -> ChangeUser:
    r = Reader(payload)
    if r.int1() != 0x11:
        raise RemoteProtocolError("not a COM_CHANGE_USER packet")
    user = r.nul_bytes()
    auth = r.fixed(r.int1()) if capabilities & CLIENT.SECURE_CONNECTION else r.nul_bytes()
    database = r.nul_bytes() if not r.at_end() else b""
    charset = r.int2() if r.remaining >= 2 else None
    plugin = r.nul_bytes() if capabilities & CLIENT.PLUGIN_AUTH and not r.at_end() else None
    attrs: dict[bytes, bytes] = {}
    if capabilities & CLIENT.CONNECT_ATTRS and not r.at_end():
        attrs, _ = _connect_attrs(bytes(payload), r.pos)  # (the login's reader: one parser of attributes)
    return ChangeUser(user, auth, database or None, charset, plugin, attrs)


def make_auth_switch(plugin: bytes, data: bytes) -> bytes:
    return b"\xfe" + plugin + b"\0" + data


def make_auth_more_data(data: bytes) -> bytes:
    return b"\x01" + data

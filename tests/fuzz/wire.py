# A raw MySQL client for the fuzzer, written from the protocol documentation and
# independent of mysqlpool_proxy (the oracle must not share the code under test):
#
#   frame()/FrameStream  framing as a receiver sees it: FrameStream decodes the bytes the
#                        fuzzer wrote into the logical packets the proxy (or server) will read,
#                        16 MiB continuation included, whatever the headers claim;
#   RawConnection        a socket with a bounded packet read, and login() with exactly the
#                        capability flags a captured driver sent;
#   read_answer()        reads one whole answer to a command, knowing where each kind ends
#                        (OK, ERR, result sets with MORE_RESULTS, cursors, PREPARE_OK with its
#                        definitions, LOCAL INFILE requests, auth switches...).
#
# Every read has a deadline: NoAnswer when it passes, Closed when the peer hangs up, and
# Garbled when the peer sends something no server would.
from __future__ import annotations

import hashlib
import socket
import time
from dataclasses import dataclass, field

from pymysql.constants import CLIENT, COMMAND, SERVER_STATUS

MAX_FRAME = 0xFFFFFF
MORE_RESULTS = SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS
CURSOR_EXISTS = SERVER_STATUS.SERVER_STATUS_CURSOR_EXISTS
# Flags the fuzzer never asks for: no TLS or compression on its raw socket, the classic EOF framing
# (the proxy never offers CLIENT_DEPRECATE_EOF; a direct server would), and neither query attributes
# (bit 27) nor optional result set metadata (bit 25), which change what a command or an answer holds.
UNSUPPORTED_FLAGS = CLIENT.SSL | CLIENT.COMPRESS | CLIENT.DEPRECATE_EOF | (1 << 27) | (1 << 25)
CONNECT_ATTRS = {b"_client_name": b"mysqlpool-fuzz", b"program_name": b"fuzz"}


class Closed(Exception):
    """The peer closed the connection (or reset it)."""


class NoAnswer(Exception):
    """Nothing (or not the whole answer) arrived before the deadline."""


class Garbled(Exception):
    """The peer sent bytes that are no valid answer."""


class LoginFailed(Exception):
    pass


def frame(payload: bytes, seq: int) -> bytes:
    """One frame; a payload of MAX_FRAME bytes or more is split as the protocol requires."""
    out = []
    while True:
        chunk, payload = payload[:MAX_FRAME], payload[MAX_FRAME:]
        out.append(len(chunk).to_bytes(3, "little") + bytes((seq & 0xFF,)) + chunk)
        seq += 1
        if len(chunk) < MAX_FRAME:
            return b"".join(out)


def lenenc(buf: bytes, pos: int) -> tuple[int | None, int]:
    """A length-encoded integer at pos: (value, next pos); value None for 0xFB (NULL)."""
    first = buf[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFB:
        return None, pos + 1
    width = {0xFC: 2, 0xFD: 3, 0xFE: 8}.get(first)
    if width is None or pos + 1 + width > len(buf):
        raise Garbled(f"bad length-encoded integer {buf[pos:pos + 9].hex()}")
    return int.from_bytes(buf[pos + 1:pos + 1 + width], "little"), pos + 1 + width


def lenenc_bytes(data: bytes) -> bytes:
    n = len(data)
    if n < 0xFB:
        return bytes((n,)) + data
    if n < 1 << 16:
        return b"\xfc" + n.to_bytes(2, "little") + data
    if n < 1 << 24:
        return b"\xfd" + n.to_bytes(3, "little") + data
    return b"\xfe" + n.to_bytes(8, "little") + data


@dataclass
class Received:
    """One logical packet as the receiver reads it."""
    seq: int  # of its first frame
    last_seq: int
    payload: bytes


class FrameStream:
    """The receiver's framing of the bytes written so far."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self._parts: list[bytes] = []
        self._first_seq: int | None = None

    def feed(self, data: bytes) -> list[Received]:
        self.buf += data
        out = []
        while len(self.buf) >= 4:
            length = int.from_bytes(self.buf[:3], "little")
            if len(self.buf) < 4 + length:
                break
            seq = self.buf[3]
            self._parts.append(bytes(self.buf[4:4 + length]))
            del self.buf[:4 + length]
            if self._first_seq is None:
                self._first_seq = seq
            if length < MAX_FRAME:
                out.append(Received(self._first_seq, seq, b"".join(self._parts)))
                self._parts, self._first_seq = [], None
        return out

    @property
    def partial(self) -> bool:
        """Bytes of a packet not yet complete are buffered (the receiver waits for the rest)."""
        return bool(self.buf) or bool(self._parts)


# -- authentication ----------------------------------------------------------------------------


def native_password(password: str, scramble: bytes) -> bytes:
    if not password:
        return b""
    stage1 = hashlib.sha1(password.encode()).digest()
    stage2 = hashlib.sha1(stage1).digest()
    mix = hashlib.sha1(scramble[:20] + stage2).digest()
    return bytes(a ^ b for a, b in zip(stage1, mix))


def caching_sha2(password: str, scramble: bytes) -> bytes:
    if not password:
        return b""
    p1 = hashlib.sha256(password.encode()).digest()
    p2 = hashlib.sha256(hashlib.sha256(p1).digest() + scramble[:20]).digest()
    return bytes(a ^ b for a, b in zip(p1, p2))


def auth_response(plugin: bytes, password: str, scramble: bytes) -> bytes:
    if plugin == b"caching_sha2_password":
        return caching_sha2(password, scramble)
    return native_password(password, scramble)


# -- answers ------------------------------------------------------------------------------------


@dataclass
class Answer:
    """One whole answer to a command."""
    kind: str  # ok | err | rows | cursor | prepared | infile | auth_switch | auth_more | packet
    packets: int = 0
    errno: int = 0
    message: bytes = b""
    status: int = 0
    rows: list[bytes] = field(default_factory=list)  # text rows' payloads, for the sentinel
    seq: int = 0  # sequence id of the last packet (the next packet from the client follows it)
    data: bytes = b""  # auth switch: plugin\0scramble; LOCAL INFILE: the file name; PREPARE_OK: its packet

    def describe(self) -> str:
        if self.kind == "err":
            return f"ERR {self.errno} {self.message[:120]!r}"
        return f"{self.kind} ({self.packets} packets)"


# Which answer each command gets; anything not named gets a single packet (OK, ERR or EOF).
ANSWER_SHAPES = {
    COMMAND.COM_QUERY: "result",
    COMMAND.COM_PROCESS_INFO: "result",
    COMMAND.COM_STMT_EXECUTE: "binary_result",
    COMMAND.COM_STMT_PREPARE: "prepare",
    COMMAND.COM_STMT_FETCH: "fetch",
    COMMAND.COM_FIELD_LIST: "field_list",
    COMMAND.COM_CHANGE_USER: "auth",
}
NO_ANSWER = frozenset((COMMAND.COM_STMT_SEND_LONG_DATA, COMMAND.COM_STMT_CLOSE))


def is_eof(payload: bytes) -> bool:
    return payload[:1] == b"\xfe" and len(payload) < 9


def ok_status(payload: bytes) -> int:
    _, pos = lenenc(payload, 1)
    _, pos = lenenc(payload, pos)
    if pos + 2 > len(payload):
        raise Garbled(f"short OK packet {payload.hex()}")
    return int.from_bytes(payload[pos:pos + 2], "little")


def eof_status(payload: bytes) -> int:
    return int.from_bytes(payload[3:5], "little") if len(payload) >= 5 else 0


def error_answer(payload: bytes, seq: int, packets: int) -> Answer:
    errno = int.from_bytes(payload[1:3], "little") if len(payload) >= 3 else 0
    message = payload[9:] if payload[3:4] == b"#" else payload[3:]
    return Answer("err", packets, errno=errno, message=bytes(message), seq=seq)


# -- the connection -----------------------------------------------------------------------------


class RawConnection:
    """A client socket speaking raw packets."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buf = bytearray()
        self.scramble = b""
        self.server_caps = 0
        self.caps = 0  # negotiated
        self.thread_id = 0

    @classmethod
    def open(cls, host: str, port: int, timeout: float = 10.0) -> RawConnection:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
            raise Closed(str(exc)) from None

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NoAnswer()
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 16)
        except TimeoutError:
            raise NoAnswer() from None
        except (ConnectionResetError, ConnectionAbortedError) as exc:
            raise Closed(str(exc)) from None
        if not chunk:
            raise Closed("EOF")
        self._buf += chunk

    def recv_packet(self, deadline: float) -> tuple[int, bytes]:
        """One logical packet: (sequence id of its last frame, payload)."""
        parts = []
        while True:
            while len(self._buf) < 4:
                self._fill(deadline)
            length = int.from_bytes(self._buf[:3], "little")
            while len(self._buf) < 4 + length:
                self._fill(deadline)
            seq = self._buf[3]
            parts.append(bytes(self._buf[4:4 + length]))
            del self._buf[:4 + length]
            if length < MAX_FRAME:
                return seq, b"".join(parts)

    # -- login ----------------------------------------------------------------------------------

    def login(self, user: str, password: str, database: str | None, flags: int, charset: int,
              deadline: float, *, speaks: int = 0) -> None:
        """Log in; `speaks`: flags of UNSUPPORTED_FLAGS the caller handles itself after the login."""
        seq, greeting = self.recv_packet(deadline)
        if greeting[:1] == b"\xff":
            raise LoginFailed(error_answer(greeting, seq, 1).describe())
        self._read_greeting(greeting)
        flags = ((flags & ~(UNSUPPORTED_FLAGS & ~speaks) & self.server_caps)
                 | CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION)
        flags = flags | CLIENT.CONNECT_WITH_DB if database else flags & ~CLIENT.CONNECT_WITH_DB
        self.caps = flags
        plugin = self.plugin if self.plugin in (b"mysql_native_password", b"caching_sha2_password") \
            else b"mysql_native_password"
        auth = auth_response(plugin, password, self.scramble)
        body = [flags.to_bytes(4, "little"), (1 << 24).to_bytes(4, "little"), bytes((charset & 0xFF,)),
                bytes(23), user.encode() + b"\0"]
        if flags & CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA:
            body.append(lenenc_bytes(auth))
        else:
            body.append(bytes((len(auth),)) + auth)
        if database:
            body.append(database.encode() + b"\0")
        if flags & CLIENT.PLUGIN_AUTH:
            body.append(plugin + b"\0")
        if flags & CLIENT.CONNECT_ATTRS:
            attrs = b"".join(lenenc_bytes(k) + lenenc_bytes(v) for k, v in CONNECT_ATTRS.items())
            body.append(lenenc_bytes(attrs))
        self.send(frame(b"".join(body), seq + 1))
        while True:
            seq, reply = self.recv_packet(deadline)
            if reply[:1] == b"\x00":
                return
            if reply[:1] == b"\xff":
                raise LoginFailed(error_answer(reply, seq, 1).describe())
            if reply[:1] == b"\xfe":
                plugin, _, data = reply[1:].partition(b"\0")
                self.send(frame(auth_response(plugin, password, data.rstrip(b"\0")), seq + 1))
            elif reply[:2] == b"\x01\x03":
                continue  # caching_sha2 fast authentication succeeded; the OK follows
            else:
                raise LoginFailed(f"unexpected login packet {reply[:40].hex()}")

    def _read_greeting(self, p: bytes) -> None:
        try:
            end = p.index(b"\0", 1)
            pos = end + 1
            self.thread_id = int.from_bytes(p[pos:pos + 4], "little")
            part1 = p[pos + 4:pos + 12]
            pos += 13
            caps = int.from_bytes(p[pos:pos + 2], "little")
            pos += 5  # caps, charset, status
            caps |= int.from_bytes(p[pos:pos + 2], "little") << 16
            auth_len = p[pos + 2]
            pos += 13  # caps high, auth data length, reserved
            part2_len = max(13, auth_len - 8)
            part2 = p[pos:pos + part2_len]
            pos += part2_len
            self.plugin = p[pos:].split(b"\0")[0]
        except (ValueError, IndexError):
            raise Garbled(f"bad greeting {p[:80].hex()}") from None
        self.server_caps = caps
        self.scramble = part1 + part2.rstrip(b"\0")[:12]

    # -- answers --------------------------------------------------------------------------------

    def read_answer(self, command: int, deadline: float) -> Answer:
        """The whole answer to `command` (a COM_* byte, or -1 for 'a single packet')."""
        shape = ANSWER_SHAPES.get(command, "single")
        try:
            return getattr(self, "_read_" + shape)(deadline)
        except IndexError:
            raise Garbled(f"a packet too short for a {shape} answer") from None

    def _read_single(self, deadline: float) -> Answer:
        seq, p = self.recv_packet(deadline)
        if p[:1] == b"\xff":
            return error_answer(p, seq, 1)
        return Answer("ok" if p[:1] == b"\x00" else "packet", 1, seq=seq)

    def _read_auth(self, deadline: float) -> Answer:
        n = 0
        while True:
            seq, p = self.recv_packet(deadline)
            n += 1
            head = p[:1]
            if head == b"\xff":
                return error_answer(p, seq, n)
            if head == b"\x00":
                return Answer("ok", n, status=ok_status(p), seq=seq)
            if head == b"\xfe":
                return Answer("auth_switch", n, seq=seq, data=p[1:])
            if p[:2] == b"\x01\x03":
                continue
            return Answer("auth_more", n, seq=seq, data=p)

    def _read_result(self, deadline: float, binary: bool = False) -> Answer:
        n = 0
        rows: list[bytes] = []
        while True:
            seq, p = self.recv_packet(deadline)
            n += 1
            head = p[:1]
            if head == b"\xff":
                return error_answer(p, seq, n)
            if head == b"\x00":
                status = ok_status(p)
                if status & MORE_RESULTS:
                    continue
                return Answer("ok", n, status=status, seq=seq, rows=rows)
            if head == b"\xfb" and not binary:
                return Answer("infile", n, seq=seq, data=p[1:])
            if not p:
                raise Garbled("an empty packet where a result set starts")
            columns, _ = lenenc(p, 0)
            for _ in range(columns or 0):
                seq, p = self.recv_packet(deadline)
                n += 1
                if p[:1] == b"\xff":
                    return error_answer(p, seq, n)
            seq, p = self.recv_packet(deadline)
            n += 1
            if p[:1] == b"\xff":
                return error_answer(p, seq, n)
            if not is_eof(p):
                raise Garbled(f"no EOF after {columns} column definitions: {p[:40].hex()}")
            status = eof_status(p)
            if binary and status & CURSOR_EXISTS:
                return Answer("cursor", n, status=status, seq=seq)
            while True:
                seq, p = self.recv_packet(deadline)
                n += 1
                if p[:1] == b"\xff":
                    return error_answer(p, seq, n)
                if is_eof(p):
                    status = eof_status(p)
                    break
                rows.append(p)
            if not status & MORE_RESULTS:
                return Answer("rows", n, status=status, seq=seq, rows=rows)

    def _read_binary_result(self, deadline: float) -> Answer:
        return self._read_result(deadline, binary=True)

    def _read_prepare(self, deadline: float) -> Answer:
        seq, p = self.recv_packet(deadline)
        if p[:1] == b"\xff":
            return error_answer(p, seq, 1)
        if p[:1] != b"\x00" or len(p) < 9:
            raise Garbled(f"not a PREPARE_OK: {p[:40].hex()}")
        first = p
        columns = int.from_bytes(p[5:7], "little")
        params = int.from_bytes(p[7:9], "little")
        n = 1
        for count in (params, columns):
            if count:
                for _ in range(count + 1):  # the definitions and their EOF
                    seq, p = self.recv_packet(deadline)
                    n += 1
                if not is_eof(p):
                    raise Garbled(f"no EOF after {count} definitions: {p[:40].hex()}")
        return Answer("prepared", n, seq=seq, data=first)

    def _read_fetch(self, deadline: float) -> Answer:
        n = 0
        while True:
            seq, p = self.recv_packet(deadline)
            n += 1
            if p[:1] == b"\xff":
                return error_answer(p, seq, n)
            if is_eof(p):
                return Answer("rows", n, status=eof_status(p), seq=seq)

    def _read_field_list(self, deadline: float) -> Answer:
        return self._read_fetch(deadline)

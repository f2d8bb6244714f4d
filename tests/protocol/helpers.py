# Shared helpers for the sans-IO protocol tests: feeding incremental parsers
# whole / byte by byte / in random chunks (h11's tests/test_io.py `tr()` idea),
# drivers for PacketDecoder, FrameScanner and ResponseTracker, hand-built
# client packets following the MySQL protocol pages, the golden captures, and
# PyMySQL's own connection-phase code run against an in-memory peer.
from __future__ import annotations

import itertools
import json
import random
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mysqlpool_proxy.constants import CLIENT, CLIENT_ZSTD_COMPRESSION_ALGORITHM
from mysqlpool_proxy.protocol.framing import (
    FrameScanner,
    Oversized,
    Packet,
    PacketDecoder,
    encode_packet,
)
from mysqlpool_proxy.protocol.handshake import MAX_LOGIN_PACKET, Send, ServerHandshake, StartTLS, Verified
from mysqlpool_proxy.protocol.response import Expect, Phase, ResponseTracker
from mysqlpool_proxy.protocol.wire import lenenc_bytes, lenenc_int

# -- feeding ------------------------------------------------------------------

SEEDS = (1, 2, 3, 4, 5)
HOT_RADIUS = 6


def _random_chunks(data: bytes, seed: int, max_chunk: int | None = None) -> list[bytes]:
    rng = random.Random(seed)
    n = len(data)
    top = max(1, max_chunk or n)
    chunks, pos = [], 0
    while pos < n:
        size = rng.choice((1, 2, 3, 4, 5, 7, 9, rng.randint(1, top), rng.randint(1, top)))
        chunks.append(data[pos:pos + size])
        pos += size
    return chunks


def _hot_chunks(data: bytes, hot: Iterable[int]) -> list[bytes]:
    """Big chunks, but single bytes within HOT_RADIUS of each offset in `hot`."""
    n = len(data)
    cuts = {0, n}
    for h in hot:
        cuts.update(p for p in range(h - HOT_RADIUS, h + HOT_RADIUS + 1) if 0 < p < n)
    cuts = sorted(cuts)
    return [data[a:b] for a, b in itertools.pairwise(cuts)]


def chunkings(data: bytes, *, seeds=SEEDS, bytewise: bool = True, hot: Iterable[int] = (),
              max_chunk: int | None = None) -> Iterator[tuple[str, list[bytes]]]:
    """(label, chunks) for: whole, byte by byte, random sizes per seed, bytewise around `hot` offsets."""
    yield "whole", [data]
    if bytewise:
        yield "bytewise", [data[i:i + 1] for i in range(len(data))]
    hot = list(hot)
    if hot:
        yield "hot-bytewise", _hot_chunks(data, hot)
    for seed in seeds:
        yield f"random-{seed}", _random_chunks(data, seed, max_chunk)


def feed_whole_and_bytewise(make_parser: Callable[[], Driver], data: bytes,
                            check: Callable[[object], None] | None = None, **kw):
    """Feed `data` to a fresh parser whole, bytewise and in seeded random chunks.

    `make_parser()` returns a driver (feed(chunk), result()); every way of
    splitting must give the same result, which `check` also inspects. Returns
    the result of the whole feed. Keyword arguments go to `chunkings`.
    """
    first = None
    for label, chunks in chunkings(data, **kw):
        assert b"".join(chunks) == data
        driver = make_parser()
        for chunk in chunks:
            driver.feed(chunk)
        result = driver.result()
        if check is not None:
            try:
                check(result)
            except AssertionError as exc:
                raise AssertionError(f"[{label}] {exc}") from exc
        if first is None:
            first = result
        else:
            assert result == first, f"[{label}] result differs from feeding whole:\n{result!r}\n!=\n{first!r}"
    return first


class Driver:
    def feed(self, chunk: bytes) -> None:
        raise NotImplementedError

    def result(self):
        raise NotImplementedError


class Decoding(Driver):
    """PacketDecoder, drained after every chunk, as the client/backend loops do."""

    def __init__(self, max_size: int = 1 << 30, *, strict: bool = False):
        self.decoder = PacketDecoder(max_size, strict=strict)
        self.items: list[Packet | Oversized] = []

    def feed(self, chunk: bytes) -> None:
        self.decoder.feed(chunk)
        while (item := self.decoder.next_packet()) is not None:
            self.items.append(item)

    def result(self):
        return self.items, self.decoder.buffered


class Scanning(Driver):
    """FrameScanner: the absolute offset just past the terminating empty packet, or -1."""

    def __init__(self):
        self.scanner = FrameScanner()
        self.offset = 0
        self.end = -1

    def feed(self, chunk: bytes) -> None:
        if self.end >= 0:
            return
        found = self.scanner.feed(chunk)
        if found >= 0:
            assert 0 <= found <= len(chunk)
            self.end = self.offset + found
        self.offset += len(chunk)

    def result(self):
        return self.end


@dataclass
class Relayed:
    """What the relay saw of one response (see Relaying)."""

    out: bytes  # bytes forwarded to the client, rewrites applied
    consumed: int  # bytes of the input that belonged to the response
    phase: Phase
    status: int
    warnings: int
    affected_rows: int
    last_insert_id: int
    error: object
    changes: object
    result_sets: int
    prepare_ok: object
    infile_name: bytes | None
    ok_count: int
    extra: bytes = field(default=b"")  # bytes after the end (not the response's)
    eof_state_pending: bool = False  # an EOF said "state changed" and no OK brought the report since


class Relaying(Driver):
    """ResponseTracker fed as mysqlpool_proxy.backend does it.

    The unconsumed tail of a feed is held and fed again joined with the next
    chunk; consumed bytes (with `rewrites` applied) go to the client; once the
    tracker is DONE (or INFILE) nothing more is fed. A tracker begun with
    `deprecate_eof` is fed a bytearray through feed_translating, as the relay
    does for such a client.
    """

    def __init__(self, tracker: ResponseTracker | None = None, expect: Expect = Expect.RESULT, *,
                 binary: bool = False, strip: bool = False, deprecate_eof: bool = False, **begin):
        if tracker is None:
            tracker = ResponseTracker()
            tracker.begin(expect, binary=binary, strip_session_track=strip, deprecate_eof=deprecate_eof, **begin)
        self.tracker = tracker
        self.held = b""
        self.out = bytearray()
        self.consumed = 0
        self.extra = bytearray()
        self.stopped = False

    def feed(self, chunk: bytes) -> None:
        if self.stopped:
            self.extra += chunk
            return
        data = self.held + chunk
        self.held = b""
        t = self.tracker
        if t.translating:
            original = data
            data = bytearray(data)
            n = t.feed_translating(data)
            assert data[n:] == original[n:], "bytes held back are fed again: they must be left as they came"
        else:
            n = t.feed(data)
        assert 0 <= n <= len(data)
        out = data[:n]
        for start, end, new in sorted(t.rewrites, reverse=True):
            assert 0 <= start < end <= n
            out = out[:start] + new + out[end:]
        self.out += out
        self.consumed += n
        if t.phase in (Phase.DONE, Phase.INFILE):
            self.stopped = True
            self.extra += data[n:]
        else:
            self.held = data[n:]

    def result(self) -> Relayed:
        t = self.tracker
        return Relayed(
            bytes(self.out), self.consumed, t.phase, t.status, t.warnings, t.affected_rows, t.last_insert_id,
            t.error, t.changes, t.result_sets, t.prepare_ok, t.infile_name, t.ok_count, bytes(self.extra),
            t.eof_state_pending,
        )


def decode_all(data: bytes, max_size: int = 1 << 30) -> list[Packet | Oversized]:
    d = Decoding(max_size)
    d.feed(data)
    items, left = d.result()
    assert left == 0, f"{left} bytes left undecoded"
    return items


def frames(*payloads: bytes, seq: int = 0) -> bytes:
    """Consecutive packets with consecutive sequence ids (16 MiB splitting included)."""
    out = []
    for p in payloads:
        raw = encode_packet(p, seq)
        out.append(raw)
        seq = (seq + len(decode_frames(raw))) & 0xFF
    return b"".join(out)


def decode_frames(raw: bytes) -> list[tuple[int, int]]:
    """(length, seq) of every physical frame in `raw`."""
    out, pos = [], 0
    while pos < len(raw):
        length = int.from_bytes(raw[pos:pos + 3], "little")
        out.append((length, raw[pos + 3]))
        pos += 4 + length
    assert pos == len(raw)
    return out


def frame_offsets(raw: bytes) -> list[int]:
    """Offsets of every frame header in `raw` (and of the end)."""
    out, pos = [], 0
    while pos < len(raw):
        out.append(pos)
        pos += 4 + int.from_bytes(raw[pos:pos + 3], "little")
    out.append(pos)
    return out


# -- captures -----------------------------------------------------------------

CAPTURES_PATH = Path(__file__).with_name("captures.json")


@dataclass(frozen=True)
class Capture:
    name: str
    expect: str
    binary: bool
    command: bytes
    reply: bytes  # to a connection with the classic framing, as the proxy's backends have
    reply_deprecate_eof: bytes  # the same command's, on a connection that negotiated CLIENT_DEPRECATE_EOF


def load_captures() -> dict[str, Capture]:
    raw = json.loads(CAPTURES_PATH.read_text())["captures"]
    return {
        name: Capture(name, c["expect"], c["binary"], bytes.fromhex(c["command"]), bytes.fromhex(c["reply"]),
                      bytes.fromhex(c["reply_deprecate_eof"]))
        for name, c in raw.items()
    }


CAPTURES = load_captures()


def capture_payloads(name: str) -> list[bytes]:
    return [p.payload for p in decode_all(CAPTURES[name].reply)]


# -- client packets, built by hand from the protocol pages ---------------------

# A MySQL 8.0 libmysqlclient's usual flags (mysql CLI): note DEPRECATE_EOF and
# QUERY_ATTRIBUTES, which PROXY_CAPS below does not offer.
CLIENT_QUERY_ATTRIBUTES = 1 << 27
MYSQL8_CLIENT_FLAGS = (
    CLIENT.LONG_PASSWORD | CLIENT.LONG_FLAG | CLIENT.CONNECT_WITH_DB | CLIENT.LOCAL_FILES | CLIENT.PROTOCOL_41
    | CLIENT.INTERACTIVE | CLIENT.TRANSACTIONS | CLIENT.SECURE_CONNECTION | CLIENT.MULTI_STATEMENTS
    | CLIENT.MULTI_RESULTS | CLIENT.PS_MULTI_RESULTS | CLIENT.PLUGIN_AUTH | CLIENT.CONNECT_ATTRS
    | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT.HANDLE_EXPIRED_PASSWORDS | CLIENT.SESSION_TRACK
    | CLIENT.DEPRECATE_EOF | CLIENT_QUERY_ATTRIBUTES
)

# What the proxy offers clients (mysqlpool_proxy.proxy.OFFERED_CAPABILITIES, spelled out), less
# CLIENT_QUERY_ATTRIBUTES and COMPRESS: the handshake tests' greeting.
PROXY_CAPS = (
    CLIENT.LONG_PASSWORD | CLIENT.FOUND_ROWS | CLIENT.LONG_FLAG | CLIENT.CONNECT_WITH_DB | CLIENT.LOCAL_FILES
    | CLIENT.PROTOCOL_41 | CLIENT.INTERACTIVE | CLIENT.TRANSACTIONS | CLIENT.SECURE_CONNECTION
    | CLIENT.MULTI_STATEMENTS | CLIENT.MULTI_RESULTS | CLIENT.PS_MULTI_RESULTS | CLIENT.PLUGIN_AUTH
    | CLIENT.CONNECT_ATTRS | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT.SESSION_TRACK
)

BASIC_CLIENT_FLAGS = (
    CLIENT.LONG_PASSWORD | CLIENT.LONG_FLAG | CLIENT.PROTOCOL_41 | CLIENT.TRANSACTIONS
    | CLIENT.SECURE_CONNECTION | CLIENT.MULTI_RESULTS | CLIENT.PLUGIN_AUTH | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA
)


def connect_attrs_block(attrs: dict[bytes, bytes]) -> bytes:
    body = b"".join(lenenc_bytes(k) + lenenc_bytes(v) for k, v in attrs.items())
    return lenenc_int(len(body)) + body


def handshake_response(
    user: bytes,
    auth: bytes,
    *,
    caps: int = BASIC_CLIENT_FLAGS,
    database: bytes | None = None,
    plugin: bytes | None = b"mysql_native_password",
    attrs: dict[bytes, bytes] | None = None,
    charset: int = 45,
    max_packet: int = 1 << 24,
    extended: int = 0,
    zstd_level: int | None = None,
) -> bytes:
    """Protocol::HandshakeResponse41, field by field as the MySQL protocol pages lay it out; `extended`:
    MariaDB's extended capabilities (bits 32 and up) in the last 4 reserved bytes, as MariaDB's pages
    lay it out (the caller clears CLIENT_MYSQL, or not, in `caps`); `zstd_level`: MySQL 8's
    zstd_compression_level, the last byte, with CLIENT_ZSTD_COMPRESSION_ALGORITHM."""
    if zstd_level is not None:
        caps |= CLIENT_ZSTD_COMPRESSION_ALGORITHM
    if database is not None:
        caps |= CLIENT.CONNECT_WITH_DB
    if attrs is not None:
        caps |= CLIENT.CONNECT_ATTRS
    reserved = b"\0" * 19 + struct.pack("<I", extended >> 32)
    parts = [struct.pack("<IIB", caps & 0xFFFFFFFF, max_packet, charset), reserved, user, b"\0"]
    if caps & CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA:
        parts.append(lenenc_bytes(auth))
    elif caps & CLIENT.SECURE_CONNECTION:
        parts += [bytes((len(auth),)), auth]
    else:
        parts += [auth, b"\0"]
    if caps & CLIENT.CONNECT_WITH_DB:
        parts += [database or b"", b"\0"]
    if caps & CLIENT.PLUGIN_AUTH:
        parts += [plugin or b"", b"\0"]
    if caps & CLIENT.CONNECT_ATTRS:
        parts.append(connect_attrs_block(attrs or {}))
    if zstd_level is not None:
        parts.append(bytes((zstd_level,)))
    return b"".join(parts)


def ssl_request(caps: int = BASIC_CLIENT_FLAGS | CLIENT.SSL, charset: int = 45, max_packet: int = 1 << 24,
                extended: int = 0) -> bytes:
    """Protocol::SSLRequest: the first 32 bytes of a HandshakeResponse41, with CLIENT_SSL."""
    return struct.pack("<IIB", caps | CLIENT.SSL, max_packet, charset) + b"\0" * 19 + struct.pack("<I", extended >> 32)


def change_user(user: bytes, auth: bytes, *, database: bytes = b"", charset: int | None = 45,
                plugin: bytes | None = b"mysql_native_password", attrs: dict[bytes, bytes] | None = None) -> bytes:
    """COM_CHANGE_USER for a CLIENT_SECURE_CONNECTION | PLUGIN_AUTH | CONNECT_ATTRS client."""
    parts = [b"\x11", user, b"\0", bytes((len(auth),)), auth, database, b"\0"]
    if charset is not None:
        parts.append(struct.pack("<H", charset))
        if plugin is not None:
            parts += [plugin, b"\0"]
            if attrs is not None:
                parts.append(connect_attrs_block(attrs))
    return b"".join(parts)


# -- driving ServerHandshake ---------------------------------------------------


class HandshakePeer:
    """A ServerHandshake behind a PacketDecoder, as the client connection runs it.

    `receive(data)` takes client bytes (fed bytewise if asked) and returns the
    bytes the proxy writes back; on `Verified` it accepts (or, for schemas in
    `reject_schemas`, rejects) right away, as the proxy does once its checks pass.
    """

    def __init__(self, hs: ServerHandshake, *, bytewise: bool = False, status: int = 2):
        self.hs = hs
        self.decoder = PacketDecoder(MAX_LOGIN_PACKET, strict=True)  # as for a client not yet logged in
        self.bytewise = bytewise
        self.status = status
        self.events: list = []

    def greeting(self) -> bytes:
        return self.hs.greeting()

    def receive(self, data: bytes) -> bytes:
        out = bytearray()
        pieces = [data[i:i + 1] for i in range(len(data))] if self.bytewise else [data]
        for piece in pieces:
            self.decoder.feed(piece)
            while (pkt := self.decoder.next_packet()) is not None:
                for ev in self.hs.receive(pkt) if isinstance(pkt, Packet) else self.hs.oversized(pkt):
                    self.events.append(ev)
                    if isinstance(ev, Send):
                        out += ev.data
                    elif isinstance(ev, Verified):
                        out += self.hs.accept(self.status)
                    else:
                        assert isinstance(ev, (StartTLS,)) or type(ev).__name__ == "Failed", ev
        return bytes(out)


class PyMySQLClient:
    """PyMySQL's own connection-phase code (greeting parse, HandshakeResponse41,
    auth switch, caching_sha2 fast path), run against an in-memory peer.

    This is the only place the tests reach into PyMySQL's Connection internals
    (`_get_server_information`, `_request_authentication`, `_read_bytes`,
    `_write_bytes`): it swaps the socket for two byte buffers so that PyMySQL's
    real client code can be exercised with no socket and no server.
    """

    def __init__(self, peer: Callable[[bytes], bytes], *, user: str, password, database: str | None = None,
                 client_flag: int = 0, program_name: str | None = None):
        import pymysql

        self.peer = peer
        self.inbox = bytearray()
        self.written: list[bytes] = []
        conn = pymysql.connections.Connection(
            defer_connect=True, user=user, password=password, database=database, client_flag=client_flag,
            program_name=program_name,
        )
        conn._read_timeout = conn._write_timeout = conn._current_timeout = None
        conn._next_seq_id = 0
        conn._read_bytes = self._read_bytes
        conn._write_bytes = self._write_bytes
        self.conn = conn

    def _write_bytes(self, data: bytes) -> None:
        self.written.append(bytes(data))
        self.inbox += self.peer(bytes(data))

    def _read_bytes(self, n: int) -> bytes:
        if len(self.inbox) < n:
            raise AssertionError(f"PyMySQL would block: wants {n} bytes, {len(self.inbox)} buffered")
        data = bytes(self.inbox[:n])
        del self.inbox[:n]
        return data

    def connect(self, greeting: bytes, *, plugin: str | None = None) -> None:
        """Parse `greeting`, then authenticate; `plugin` overrides the client's first plugin."""
        self.inbox += greeting
        self.conn._get_server_information()
        if plugin is not None:
            self.conn._auth_plugin_name = plugin
        self.conn._request_authentication()

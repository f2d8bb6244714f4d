# zstd compression through the client path (protocol/handshake.py -> client/phase.py ->
# client/compression.py): the greeting offers CLIENT_ZSTD_COMPRESSION_ALGORITHM only when the
# server's does (a MySQL 8; MariaDB never); a client that logs in with it and its level byte
# gets its OK uncompressed, then speaks zstd frames both ways, at its level up to the proxy's
# most; one that sets CLIENT_COMPRESS too gets zlib; a frame that does not decompress gets
# 1157 and the connection closes.
# Real Proxy, FakeClient, fake backends, virtual clock.
from __future__ import annotations

import zlib

import pytest
import zstandard

from mysqlpool_proxy.client.compression import Decompressor
from mysqlpool_proxy.constants import CLIENT, CLIENT_ZSTD_COMPRESSION_ALGORITHM
from mysqlpool_proxy.protocol import auth
from mysqlpool_proxy.protocol.compression import ZSTD_MAX_LEVEL, FrameDecoder, FrameEncoder, Zlib, Zstd
from mysqlpool_proxy.protocol.framing import encode_packet
from mysqlpool_proxy.protocol.packets import parse_err
from tests.fakes import FakeClient, FakeOpener, settle, start_proxy, virtual_time
from tests.fakes.client import DEFAULT_CLIENT_CAPS
from tests.fakes.mariadb import SERVER_CAPABILITIES
from tests.protocol.helpers import handshake_response

ZSTD = CLIENT_ZSTD_COMPRESSION_ALGORITHM
# A MySQL 8 server's greeting, as far as the proxy reads it: CLIENT_MYSQL set, no MariaDB extensions, zstd.
MYSQL8_CAPABILITIES = (SERVER_CAPABILITIES & 0xFFFFFFFF) | CLIENT.LONG_PASSWORD | ZSTD
BIG = "SELECT '" + "compressible " * 2000 + "'"


class CompressingClient(FakeClient):
    """A FakeClient that logs in with `flags` (and zstd's level byte) and then speaks compressed frames."""

    def __init__(self, proxy, flags: int, level: int | None, codec):
        super().__init__(proxy, capabilities=DEFAULT_CLIENT_CAPS | flags)
        self.level = level
        self.codec = codec
        self.frames: FrameDecoder | None = None  # set once the OK is in: what comes after is compressed
        self.raw_after_ok = bytearray()

    def _on_write(self, data: bytes) -> None:
        if self.frames is None:
            return super()._on_write(data)
        self.raw_after_ok += data
        self.frames.feed(data)
        while (payload := self.frames.next_payload()) is not None:
            super()._on_write(payload)
        return None

    async def log_in(self) -> CompressingClient:
        caps = self.wanted & (self.greeting.capabilities | CLIENT.LONG_PASSWORD)
        self.capabilities = caps
        token = auth.client_scramble_native(self.password.encode(), self.greeting.scramble)
        payload = handshake_response(self.user.encode(), token, caps=caps, plugin=auth.NATIVE,
                                     attrs={b"_client_name": b"libmysql"},
                                     zstd_level=self.level if caps & ZSTD else None)
        self.transport.feed(encode_packet(payload, 1))
        ok = await self.packet()
        assert ok.payload[0] == 0, ok.payload  # the OK itself is not compressed
        self.frames = FrameDecoder(self.codec)
        return self

    def send(self, payload: bytes, seq: int = 0) -> None:
        if self.frames is None:
            return super().send(payload, seq)
        self.transport.feed(FrameEncoder(self.codec).frames(encode_packet(payload, seq)))
        return None


def proxys_codec(client: FakeClient):
    decompressor = client.transport.get_protocol()
    assert isinstance(decompressor, Decompressor)
    return decompressor.frames.codec


async def mysql8_proxy():
    return await start_proxy(FakeOpener(server_capabilities=MYSQL8_CAPABILITIES))


@virtual_time
async def test_zstd_is_offered_only_where_the_server_offers_it():
    mariadb = await start_proxy()
    client = await FakeClient(mariadb).open()
    assert client.greeting.capabilities & CLIENT.COMPRESS and not client.greeting.capabilities & ZSTD
    await mariadb.stop(0)
    mysql8 = await mysql8_proxy()
    client = await FakeClient(mysql8).open()
    assert client.greeting.capabilities & ZSTD and client.greeting.capabilities & CLIENT.COMPRESS
    await mysql8.stop(0)


@virtual_time
@pytest.mark.parametrize("level, used", [(1, 1), (3, 3), (22, ZSTD_MAX_LEVEL), (0, 3)])
async def test_a_zstd_client_speaks_zstd_frames_both_ways_at_its_level(level, used):
    proxy = await mysql8_proxy()
    client = await CompressingClient(proxy, ZSTD, level, Zstd()).open()
    await client.log_in()
    codec = proxys_codec(client)
    assert isinstance(codec, Zstd) and codec.level == used
    r = await client.query(BIG)
    assert r.value == "compressible " * 2000
    raw = bytes(client.raw_after_ok)
    body = raw[7:7 + int.from_bytes(raw[:3], "little")]
    assert body[:4] == b"\x28\xb5\x2f\xfd" and len(raw) < 2000  # 26 KB of rows in zstd frames
    inflated = zstandard.ZstdDecompressor().decompress(body)  # as MySQL's client reads it
    assert inflated[3:5] == b"\x01\x01"  # the result set's first packet: seq 1, one column
    assert (await client.query("SELECT 1")).value == "1"  # the next command's frames restart at 0
    await proxy.stop(0)


@virtual_time
async def test_a_client_that_sets_both_flags_gets_zlib():
    proxy = await mysql8_proxy()
    client = await CompressingClient(proxy, ZSTD | CLIENT.COMPRESS, 3, Zlib()).open()
    await client.log_in()
    assert isinstance(proxys_codec(client), Zlib)
    r = await client.query(BIG)
    assert r.value == "compressible " * 2000
    raw = bytes(client.raw_after_ok)
    assert zlib.decompress(raw[7:7 + int.from_bytes(raw[:3], "little")])[3:5] == b"\x01\x01"  # zlib, not zstd
    await proxy.stop(0)


@virtual_time
async def test_zstd_asked_of_a_mariadb_backed_proxy_is_not_negotiated():
    proxy = await start_proxy()
    client = FakeClient(proxy, capabilities=DEFAULT_CLIENT_CAPS | ZSTD)
    await client.connect()
    assert not client.capabilities & ZSTD
    assert (await client.query("SELECT 1")).value == "1"  # uncompressed
    await proxy.stop(0)


@virtual_time
async def test_a_zstd_frame_that_does_not_decompress_gets_1157_and_closes():
    proxy = await mysql8_proxy()
    client = await CompressingClient(proxy, ZSTD, 3, Zstd()).open()
    await client.log_in()
    assert (await client.query("SELECT 1")).value == "1"
    packed = zstandard.ZstdCompressor().compress(b"\x03SELECT 2" + b" " * 100)
    client.transport.feed(len(packed).to_bytes(3, "little") + b"\0" + (50).to_bytes(3, "little") + packed)
    err = await client.packet()
    assert parse_err(err.payload).errno == 1157
    await settle()
    assert client.closed
    assert proxy.stats.client_closed["protocol_error"] == 1
    await proxy.stop(0)

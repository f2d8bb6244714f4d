# compression.py with zstd (MySQL 8's CLIENT_ZSTD_COMPRESSION_ALGORITHM): the same 7-byte frames,
# payloads one zstd frame each. Decoded the same fed whole, byte by byte and in chunks; frames
# encoded at the client's level decode back (stored when small or incompressible); a frame
# whose declared content size, actual size or window is not its header's is refused, a bomb
# included, as zlib's are; garbage refused. The handshake: the level byte after the connect
# attributes, read whole and byte by byte; which codec a client gets (zlib when it sets both
# flags; zstd only when offered), at which level (0 -> 3, capped at ZSTD_MAX_LEVEL).
from __future__ import annotations

import os

import pytest
import zstandard

from mysqlpool_proxy.constants import CLIENT, CLIENT_ZSTD_COMPRESSION_ALGORITHM
from mysqlpool_proxy.errors import ProtocolError
from mysqlpool_proxy.protocol.compression import (
    MAX_FRAME,
    MIN_COMPRESS_LENGTH,
    ZSTD_DEFAULT_LEVEL,
    ZSTD_MAX_LEVEL,
    FrameDecoder,
    FrameEncoder,
    Zlib,
    Zstd,
    zstd_level,
)
from mysqlpool_proxy.protocol.framing import encode_packet
from mysqlpool_proxy.protocol.handshake import ServerHandshake, Verified
from mysqlpool_proxy.protocol.packets import parse_handshake_response

from . import test_handshake as th
from .helpers import BASIC_CLIENT_FLAGS, PROXY_CAPS, HandshakePeer, handshake_response


def frame(body: bytes, seq: int, inflated: int) -> bytes:
    return len(body).to_bytes(3, "little") + bytes((seq,)) + inflated.to_bytes(3, "little") + body


def zstd_frame(payload: bytes, seq: int = 0, level: int = 3, content_size: bool = True) -> bytes:
    body = zstandard.ZstdCompressor(level=level, write_content_size=content_size).compress(payload)
    return frame(body, seq, len(payload))


def decode_all(decoder: FrameDecoder) -> list[tuple[int, bytes]]:
    out = []
    while (payload := decoder.next_payload()) is not None:
        out.append((decoder.last_seq, payload))
    return out


def feed_in_chunks(stream: bytes, size: int) -> list[tuple[int, bytes]]:
    decoder, out = FrameDecoder(Zstd()), []
    for i in range(0, len(stream), size):
        decoder.feed(stream[i:i + size])
        out += decode_all(decoder)
    assert decoder.buffered == 0
    return out


QUERY = encode_packet(b"\x03SELECT REPEAT('x', 1000)", 0)
ROWS = b"".join(encode_packet(b"\x03" + b"y" * 200, i) for i in range(1, 30))
STREAM = (frame(QUERY, 0, 0) + zstd_frame(ROWS, 1) + frame(b"", 2, 0) + zstd_frame(QUERY * 3, 3, level=19)
          + zstd_frame(ROWS, 4, content_size=False))  # as streaming compressors write: no size in the frame
EXPECTED = [(0, QUERY), (1, ROWS), (2, b""), (3, QUERY * 3), (4, ROWS)]


@pytest.mark.parametrize("size", [len(STREAM), 1, 2, 7, 8, 100, 4096])
def test_zstd_frames_decode_the_same_fed_whole_bytewise_and_in_chunks(size):
    assert feed_in_chunks(STREAM, size) == EXPECTED


PAYLOAD = b"z" * 100
PACKED = zstandard.ZstdCompressor().compress(PAYLOAD)


@pytest.mark.parametrize("bad", [
    frame(PACKED, 0, 99),  # its header says less than the frame declares
    frame(PACKED, 0, 101),  # more
    frame(zstandard.ZstdCompressor(write_content_size=False).compress(PAYLOAD), 0, 99),  # more than the header
    frame(zstandard.ZstdCompressor(write_content_size=False).compress(PAYLOAD), 0, 101),  # less
    frame(b"not zstd at all, not at all", 0, 50),
    frame(b"\x28\xb5\x2f\xfd" + os.urandom(40), 0, 50),  # zstd's magic, then garbage
    frame(PACKED[:-3], 0, 100),  # truncated
    frame(PACKED + b"tail", 0, 100),  # bytes after the frame
    frame(PACKED + PACKED, 0, 100),  # a second frame
    frame(__import__("zlib").compress(PAYLOAD), 0, 100),  # zlib on a zstd connection
    frame(b"", 0, 100),  # nothing at all
    frame((0x184D2A50).to_bytes(4, "little") + (4).to_bytes(4, "little") + b"abcd", 0, 100),  # a skippable frame
])
def test_a_zstd_frame_that_lies_about_its_length_is_refused(bad):
    for pieces in ([bad], [bad[i:i + 1] for i in range(len(bad))]):
        decoder = FrameDecoder(Zstd())
        with pytest.raises(ProtocolError):
            for piece in pieces:
                decoder.feed(piece)
                decoder.next_payload()


@pytest.mark.parametrize("content_size", [True, False])
def test_a_zstd_bomb_inflates_no_further_than_its_header_says(content_size):
    bomb = zstandard.ZstdCompressor(level=3, write_content_size=content_size).compress(b"\0" * (64 << 20))
    assert len(bomb) < 64 << 10  # 64 MiB of zeros in a few KiB
    decoder = FrameDecoder(Zstd())
    decoder.feed(frame(bomb, 0, 1000))
    with pytest.raises(ProtocolError):
        decoder.next_payload()


def test_a_window_larger_than_a_frame_is_refused_unallocated():
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=27, write_content_size=False)  # 128 MiB
    streaming = zstandard.ZstdCompressor(compression_params=params).compressobj()  # size unknown: window kept
    body = streaming.compress(PAYLOAD) + streaming.flush()
    assert zstandard.get_frame_parameters(body).window_size == 128 << 20
    assert zstandard.ZstdDecompressor().decompress(body, max_output_size=len(PAYLOAD)) == PAYLOAD  # valid zstd
    decoder = FrameDecoder(Zstd())
    decoder.feed(frame(body, 0, len(PAYLOAD)))
    with pytest.raises(ProtocolError):
        decoder.next_payload()


def test_a_full_16_mib_frame_at_level_22_decodes():
    payload = bytes(range(256)) * (MAX_FRAME // 256) + b"x" * (MAX_FRAME % 256)
    decoder = FrameDecoder(Zstd())
    decoder.feed(zstd_frame(payload, 0, level=22))
    assert decoder.next_payload() == payload


@pytest.mark.parametrize("level", [1, 3, ZSTD_MAX_LEVEL])
@pytest.mark.parametrize("payload, compressed", [
    (b"x" * (MIN_COMPRESS_LENGTH - 1), False),  # too small to bother
    (b"x" * MIN_COMPRESS_LENGTH, True),
    (os.urandom(4096), False),  # does not shrink
    (ROWS, True),
])
def test_the_zstd_encoder_stores_small_or_incompressible_payloads(level, payload, compressed):
    out = FrameEncoder(Zstd(level)).frames(payload)
    assert (int.from_bytes(out[4:7], "little") != 0) is compressed
    if compressed:  # a zstd frame, that MySQL's client decodes as it does (one shot, size known)
        body = out[7:]
        assert zstandard.frame_content_size(body) == len(payload)
        assert zstandard.ZstdDecompressor().decompress(body) == payload
    decoder = FrameDecoder(Zstd())
    decoder.feed(out)
    assert decode_all(decoder) == [(0, payload)]


def test_the_zstd_encoder_splits_at_16_mib_and_numbers_each_frame():
    payload = bytes(range(256)) * ((MAX_FRAME + 1000) // 256 + 1)
    encoder = FrameEncoder(Zstd())
    encoder.answer(4)
    decoder = FrameDecoder(Zstd())
    decoder.feed(encoder.frames(payload))
    frames = decode_all(decoder)
    assert [seq for seq, _ in frames] == [5, 6]
    assert len(frames[0][1]) == MAX_FRAME and b"".join(p for _, p in frames) == payload


@pytest.mark.parametrize("asked, used", [
    (0, ZSTD_DEFAULT_LEVEL), (1, 1), (3, 3), (ZSTD_MAX_LEVEL, ZSTD_MAX_LEVEL), (19, ZSTD_MAX_LEVEL),
    (22, ZSTD_MAX_LEVEL), (255, ZSTD_MAX_LEVEL),
])
def test_the_level_asked_for_is_used_up_to_the_proxys_most(asked, used):
    assert zstd_level(asked) == used


@pytest.mark.parametrize("level", [1, 2, ZSTD_MAX_LEVEL])
def test_frames_are_compressed_at_the_level_given(level):
    payload = b"".join(encode_packet(b"\x03" + str(i * 7919).encode() * 40, i & 0xFF) for i in range(300))
    out = FrameEncoder(Zstd(level)).frames(payload)
    assert out[7:] == zstandard.ZstdCompressor(level=level).compress(payload)
    decoder = FrameDecoder(Zstd())
    decoder.feed(out)
    assert decode_all(decoder) == [(0, payload)]


# -- the handshake: the level byte, and the codec a client gets ------------------------------------------

ZSTD = CLIENT_ZSTD_COMPRESSION_ALGORITHM
ATTRS = {b"_client_name": b"libmysql", b"program_name": b"mysql"}


@pytest.mark.parametrize("attrs", [ATTRS, None])
@pytest.mark.parametrize("level", [0, 1, 3, 22, 255])
def test_the_level_byte_follows_the_connect_attributes(attrs, level):
    payload = handshake_response(b"app", th.native(b"secret"), database=b"shop", attrs=attrs, zstd_level=level)
    resp = parse_handshake_response(payload)
    assert resp.capabilities & ZSTD and resp.zstd_level == level
    assert (resp.user, resp.database, resp.connect_attrs) == (b"app", b"shop", attrs or {})


def test_without_the_flag_a_trailing_byte_is_not_a_level():
    payload = handshake_response(b"app", th.native(b"secret"), attrs=ATTRS) + b"\x07"
    assert parse_handshake_response(payload).zstd_level == 0


def hs_offering(caps: int) -> ServerHandshake:
    return ServerHandshake(connection_id=42, server_version=b"8.0.36-mysqlpool", capabilities=caps, charset=45,
                           lookup=th.USERS.get, client_host=th.HOST, scramble=th.SCRAMBLE)


OFFER = PROXY_CAPS | CLIENT.COMPRESS | ZSTD


@th.BYTEWISE
@pytest.mark.parametrize("flags, level, offer, codec, used", [
    (ZSTD, 7, OFFER, Zstd, 6),  # capped
    (ZSTD, 2, OFFER, Zstd, 2),
    (ZSTD, 0, OFFER, Zstd, ZSTD_DEFAULT_LEVEL),
    (ZSTD | CLIENT.COMPRESS, 3, OFFER, Zlib, None),  # both: zlib, as MySQL
    (CLIENT.COMPRESS, None, OFFER, Zlib, None),
    (ZSTD, 3, OFFER & ~ZSTD, None, None),  # not offered (a MariaDB server): uncompressed
    (0, None, OFFER, None, None),
])
def test_the_codec_a_client_gets(bytewise, flags, level, offer, codec, used):
    peer = HandshakePeer(hs_offering(offer), bytewise=bytewise)
    payload = handshake_response(b"app", th.native(b"secret"), caps=BASIC_CLIENT_FLAGS | flags, attrs=ATTRS,
                                 zstd_level=level)
    reply = peer.receive(encode_packet(payload, 1))
    [verified] = peer.events
    assert isinstance(verified, Verified) and th.only_packet(reply).payload[0] == 0  # OK, uncompressed
    got = peer.hs.compression()
    assert (type(got) if got else None) is codec
    if used is not None:
        assert isinstance(got, Zstd) and got.level == used

# compression.py: the compressed protocol's frames (CLIENT_COMPRESS). The decoder fed
# whole, byte by byte and in chunks gives the same payloads; frames stored and deflated;
# the sequence id the answer continues from; frames that lie about their length refused;
# the encoder's frames decoded back (stored under 50 bytes or when deflating does not
# help, split at 16 MiB); a captured MariaDB frame decoded.
from __future__ import annotations

import os
import zlib

import pytest

from mysqlpool_proxy.errors import ProtocolError
from mysqlpool_proxy.protocol.compression import (
    HEADER_SIZE,
    MAX_FRAME,
    MIN_COMPRESS_LENGTH,
    FrameDecoder,
    FrameEncoder,
)
from mysqlpool_proxy.protocol.framing import encode_packet


def frame(body: bytes, seq: int, inflated: int) -> bytes:
    return len(body).to_bytes(3, "little") + bytes((seq,)) + inflated.to_bytes(3, "little") + body


def stored(payload: bytes, seq: int = 0) -> bytes:
    return frame(payload, seq, 0)


def deflated(payload: bytes, seq: int = 0) -> bytes:
    return frame(zlib.compress(payload), seq, len(payload))


def decode_all(decoder: FrameDecoder) -> list[tuple[int, bytes]]:
    out = []
    while (payload := decoder.next_payload()) is not None:
        out.append((decoder.last_seq, payload))
    return out


def feed_in_chunks(stream: bytes, size: int) -> list[tuple[int, bytes]]:
    decoder, out = FrameDecoder(), []
    for i in range(0, len(stream), size):
        decoder.feed(stream[i:i + size])
        out += decode_all(decoder)
    assert decoder.buffered == 0
    return out


QUERY = encode_packet(b"\x03SELECT REPEAT('x', 1000)", 0)
ROWS = b"".join(encode_packet(b"\x03" + b"y" * 200, i) for i in range(1, 30))
STREAM = stored(QUERY, 0) + deflated(ROWS, 1) + stored(b"", 2) + deflated(QUERY * 3, 3)
EXPECTED = [(0, QUERY), (1, ROWS), (2, b""), (3, QUERY * 3)]


@pytest.mark.parametrize("size", [len(STREAM), 1, 2, 7, 8, 100, 4096])
def test_frames_decode_the_same_fed_whole_bytewise_and_in_chunks(size):
    assert feed_in_chunks(STREAM, size) == EXPECTED


def test_a_frame_is_not_given_out_before_its_last_byte():
    decoder = FrameDecoder()
    decoder.feed(STREAM[:HEADER_SIZE + len(QUERY) - 1])
    assert decoder.next_payload() is None and decoder.last_seq == -1
    decoder.feed(STREAM[HEADER_SIZE + len(QUERY) - 1:HEADER_SIZE + len(QUERY)])
    assert decoder.next_payload() == QUERY and decoder.last_seq == 0


def test_one_frame_at_a_time_leaves_the_rest_compressed():
    decoder = FrameDecoder()
    decoder.feed(STREAM)
    assert decoder.next_payload() == QUERY
    assert decoder.buffered == len(STREAM) - HEADER_SIZE - len(QUERY)


def test_a_packet_split_across_frames_comes_out_whole_in_order():
    packet = encode_packet(b"\x03" + os.urandom(300), 0)
    stream = deflated(packet[:100], 0) + stored(packet[100:150], 1) + deflated(packet[150:], 2)
    assert b"".join(p for _, p in feed_in_chunks(stream, 3)) == packet


@pytest.mark.parametrize("bad", [
    frame(zlib.compress(b"z" * 100), 0, 99),  # inflates to more than it says
    frame(zlib.compress(b"z" * 100), 0, 101),  # to less
    frame(b"not zlib at all, not at all", 0, 50),
    frame(zlib.compress(b"z" * 100)[:-3], 0, 100),  # truncated stream
    frame(zlib.compress(b"z" * 100) + b"tail", 0, 100),  # bytes after the stream
])
def test_a_frame_that_lies_about_its_length_is_refused(bad):
    decoder = FrameDecoder()
    decoder.feed(bad)
    with pytest.raises(ProtocolError):
        decoder.next_payload()


def test_a_bomb_inflates_no_further_than_its_header_says():
    bomb = zlib.compress(b"\0" * (64 << 20))  # 64 MiB of zeros in ~64 KiB
    decoder = FrameDecoder()
    decoder.feed(frame(bomb, 0, 1000))
    with pytest.raises(ProtocolError):
        decoder.next_payload()


def test_the_answer_continues_from_the_last_frame_received():
    encoder = FrameEncoder()
    encoder.answer(0)
    first, second = encoder.frames(b"a"), encoder.frames(b"b")
    assert (first[3], second[3]) == (1, 2)
    encoder.answer(255)
    assert encoder.frames(b"c")[3] == 0


@pytest.mark.parametrize("payload, compressed", [
    (b"x" * (MIN_COMPRESS_LENGTH - 1), False),  # too small to bother
    (b"x" * MIN_COMPRESS_LENGTH, True),
    (os.urandom(4096), False),  # does not shrink
    (ROWS, True),
])
def test_the_encoder_stores_small_or_incompressible_payloads(payload, compressed):
    out = FrameEncoder().frames(payload)
    assert (int.from_bytes(out[4:7], "little") != 0) is compressed
    decoder = FrameDecoder()
    decoder.feed(out)
    assert decode_all(decoder) == [(0, payload)]


def test_the_encoder_splits_at_16_mib_and_numbers_each_frame():
    payload = bytes(range(256)) * ((MAX_FRAME + 1000) // 256 + 1)
    encoder = FrameEncoder()
    encoder.answer(4)
    out = encoder.frames(payload)
    decoder = FrameDecoder()
    decoder.feed(out)
    frames = decode_all(decoder)
    assert [seq for seq, _ in frames] == [5, 6]
    assert len(frames[0][1]) == MAX_FRAME and b"".join(p for _, p in frames) == payload


def test_frames_captured_between_mysqlclient_and_mariadb_decode():
    # mysqlclient (compress=True) and MariaDB 10.11: the client's `SET autocommit=0`, stored, seq 0;
    # the server's OK for it, stored, seq 1; the server's deflated OK for `SET NAMES utf8mb4`, seq 1.
    query = bytes.fromhex("150000000000001100000003534554206175746f636f6d6d69743d30")
    ok = bytes.fromhex("1e0000010000001a000001000000004000000011000f0a6175746f636f6d6d6974034f4646")
    names_ok = bytes.fromhex(
        "4f0000016f0000789ccb66606064606060720012490c8a12c919894589c925a945f1c5a925f1c9f97979a9c92599f979"
        "eca5256916b949260cb222684a723253f34ae0d272a2a8d245a9c5a53925c530790029a42447")
    decoder = FrameDecoder()
    decoder.feed(query)
    assert decode_all(decoder) == [(0, encode_packet(b"\x03SET autocommit=0", 0))]
    decoder.feed(ok + names_ok)
    (seq1, plain), (seq2, inflated) = decode_all(decoder)
    assert (seq1, seq2) == (1, 1)
    assert plain[:5] == b"\x1a\x00\x00\x01\x00" and len(plain) == 4 + 0x1A  # one OK packet, seq 1
    assert len(inflated) == 0x6F and inflated[3:5] == b"\x01\x00"  # an OK packet, seq 1, deflated
    assert FrameEncoder().frames(plain)[7:] == plain[:]  # under 50 bytes: the proxy stores it too

# framing.py: encode_packet (headers, sequence ids, 16 MiB splitting with the
# empty frame after an exactly-0xFFFFFF payload), PacketDecoder (several
# packets per chunk, byte-by-byte, 16 MiB + N payloads rejoined with `raw`
# equal to the bytes fed, oversized packets skipped frame by frame and
# reported once as Oversized, or refused at their header by a strict decoder,
# which then drops everything) and FrameScanner (the empty terminator packet,
# not an empty continuation frame), each fed whole, bytewise and in chunks.
from __future__ import annotations

import pytest

from mysqlpool_proxy.errors import LocalProtocolError
from mysqlpool_proxy.protocol.framing import (
    HEADER_SIZE,
    MAX_FRAME,
    FrameScanner,
    Oversized,
    Packet,
    PacketDecoder,
    encode_packet,
    frame_header,
)

from .helpers import Decoding, Scanning, decode_frames, feed_whole_and_bytewise, frame_offsets, frames

M = MAX_FRAME  # 0xFFFFFF
BIG = dict(bytewise=False, max_chunk=1 << 20)  # 16 MiB inputs: bytewise only around frame headers


def payload_of(n: int, seed: int = 0) -> bytes:
    # Cheap but not uniform: every frame boundary falls on different bytes.
    block = bytes((i * 7 + seed) & 0xFF for i in range(251))
    return (block * (n // len(block) + 1))[:n]


# -- encode_packet -------------------------------------------------------------


def test_encode_small_packet():
    assert encode_packet(b"\x03SELECT 1", 0) == b"\x09\x00\x00\x00\x03SELECT 1"
    assert encode_packet(b"abc", 7)[3] == 7


def test_encode_empty_packet():
    assert encode_packet(b"", 3) == b"\x00\x00\x00\x03"


def test_frame_header():
    assert frame_header(0x010203, 9) == b"\x03\x02\x01\x09"
    assert frame_header(M, 255) == b"\xff\xff\xff\xff"


def test_encode_just_below_one_frame():
    raw = encode_packet(b"a" * (M - 1), 5)
    assert decode_frames(raw) == [(M - 1, 5)]


def test_encode_exactly_one_full_frame_is_followed_by_an_empty_frame():
    raw = encode_packet(b"a" * M, 5)
    assert decode_frames(raw) == [(M, 5), (0, 6)]
    assert raw[-4:] == b"\x00\x00\x00\x06"


@pytest.mark.parametrize("extra", [1, 1000])
def test_encode_16mib_plus_n(extra):
    raw = encode_packet(b"a" * (M + extra), 0)
    assert decode_frames(raw) == [(M, 0), (extra, 1)]


def test_encode_two_full_frames():
    raw = encode_packet(b"a" * (2 * M), 1)
    assert decode_frames(raw) == [(M, 1), (M, 2), (0, 3)]


def test_encode_sequence_ids_wrap():
    assert encode_packet(b"x", 256 + 3)[3] == 3
    raw = encode_packet(b"a" * (M + 1), 255)
    assert decode_frames(raw) == [(M, 255), (1, 0)]


# -- PacketDecoder: ordinary packets -------------------------------------------


def test_decoder_single_packet_fields():
    raw = encode_packet(b"\x0e", 0)
    [pkt], left = feed_whole_and_bytewise(Decoding, raw)
    assert pkt == Packet(seq=0, last_seq=0, payload=b"\x0e", raw=raw)
    assert left == 0


def test_decoder_needs_the_whole_packet():
    d = PacketDecoder()
    raw = encode_packet(b"hello", 1)
    d.feed(raw[:3])
    assert d.next_packet() is None
    d.feed(raw[3:-1])
    assert d.next_packet() is None
    d.feed(raw[-1:])
    assert d.next_packet().payload == b"hello"
    assert d.next_packet() is None
    assert d.buffered == 0


def test_decoder_several_packets_in_one_chunk():
    payloads = [b"\x01", b"", b"\x03def" * 20, b"\xfe\x00\x00\x02\x00", b"x" * 300]
    data = frames(*payloads, seq=1)

    def check(result):
        items, left = result
        assert [p.payload for p in items] == payloads
        assert [p.seq for p in items] == [1, 2, 3, 4, 5]
        assert all(p.seq == p.last_seq for p in items)
        assert b"".join(p.raw for p in items) == data
        assert left == 0

    feed_whole_and_bytewise(Decoding, data, check)


def test_decoder_keeps_a_partial_packet_buffered():
    data = frames(b"one", b"two") + encode_packet(b"three", 2)[:6]
    items, left = feed_whole_and_bytewise(Decoding, data)
    assert [p.payload for p in items] == [b"one", b"two"]
    assert left == 6


def test_take_buffer_hands_over_unparsed_bytes():
    d = PacketDecoder()
    d.feed(encode_packet(b"a", 0) + b"\x05\x00\x00\x01ab")
    assert d.next_packet().payload == b"a"
    assert d.next_packet() is None
    assert d.take_buffer() == b"\x05\x00\x00\x01ab"
    assert d.buffered == 0


def test_max_size_must_be_positive():
    with pytest.raises(LocalProtocolError):
        PacketDecoder(0)


# -- PacketDecoder: 16 MiB and beyond ------------------------------------------


@pytest.mark.parametrize("size", [M, M + 1, M + 12345, 2 * M, 2 * M + 3])
def test_decoder_rejoins_multi_frame_packets(size):
    payload = payload_of(size)
    raw = encode_packet(payload, 254)
    after = encode_packet(b"\x00\x00\x00\x02\x00\x00\x00", (254 + len(decode_frames(raw))) & 0xFF)
    data = raw + after
    n_frames = len(decode_frames(raw))

    def check(result):
        items, left = result
        assert left == 0
        assert len(items) == 2
        big, small = items
        assert isinstance(big, Packet)
        assert big.seq == 254 and big.last_seq == (254 + n_frames - 1) & 0xFF
        assert len(big.payload) == size and big.payload == payload
        assert big.raw == raw  # forwarded verbatim
        assert small.payload == b"\x00\x00\x00\x02\x00\x00\x00"
        assert small.seq == (big.last_seq + 1) & 0xFF

    feed_whole_and_bytewise(Decoding, data, check, hot=frame_offsets(data), **BIG)


def test_decoder_full_frame_waits_for_its_empty_continuation():
    raw = encode_packet(b"z" * M, 0)
    d = PacketDecoder()
    d.feed(raw[:-4])
    assert d.next_packet() is None  # a full frame is never the last one
    d.feed(raw[-4:])
    pkt = d.next_packet()
    assert len(pkt.payload) == M and pkt.last_seq == 1


# -- PacketDecoder: oversized packets ------------------------------------------


def oversized_case(size: int, max_size: int, seq: int = 0):
    big = encode_packet(payload_of(size, 3), seq)
    n_frames = len(decode_frames(big))
    last = (seq + n_frames - 1) & 0xFF
    after = encode_packet(b"\x03SELECT 1", 0)  # the client's next command
    return big, after, Oversized(seq, last, size)


@pytest.mark.parametrize("size,max_size", [
    (101, 100),  # one frame, just over
    (5000, 100),
    (M, 100),  # a full frame and its empty continuation
    (M + 7, 100),
    (2 * M + 3, 1000),  # three frames, every one skipped
    (M + 7, M + 6),  # detected only at the second frame's header
    (2 * M, M + 1),
])
def test_oversized_is_skipped_and_reported_once(size, max_size):
    big, after, marker = oversized_case(size, max_size, seq=9)
    data = big + after

    def check(result):
        items, left = result
        assert items == [marker, Packet(0, 0, b"\x03SELECT 1", after)]
        assert left == 0

    kw = BIG if size > 100_000 else {}
    feed_whole_and_bytewise(lambda: Decoding(max_size), data, check, hot=frame_offsets(data), **kw)


def test_packet_of_exactly_max_size_is_not_oversized():
    raw = encode_packet(b"q" * 100, 0)
    [pkt], _ = feed_whole_and_bytewise(lambda: Decoding(100), raw)
    assert isinstance(pkt, Packet) and len(pkt.payload) == 100


def test_oversized_sequence_ids_wrap():
    big, after, marker = oversized_case(2 * M + 1, 10, seq=254)
    assert marker == Oversized(254, 0, 2 * M + 1)
    items, _ = feed_whole_and_bytewise(lambda: Decoding(10), big + after, hot=frame_offsets(big), **BIG)
    assert items[0] == marker


def test_oversized_costs_no_memory():
    """While skipping, the decoder holds at most a header's worth of the oversized packet."""
    big, after, marker = oversized_case(2 * M + 5, 1 << 20)
    d = PacketDecoder(1 << 20)
    step = 1 << 16
    seen = []
    data = big + after
    for pos in range(0, len(data), step):
        d.feed(data[pos:pos + step])
        while (item := d.next_packet()) is not None:
            seen.append(item)
        if not seen:
            assert d.buffered < HEADER_SIZE + step
            # the first 16 MiB frame is larger than max_size: nothing of it is kept
            if pos > 2 * step:
                assert d.buffered <= HEADER_SIZE
    assert seen == [marker, Packet(0, 0, b"\x03SELECT 1", after)]


def test_two_oversized_packets_in_a_row():
    a, _, ma = oversized_case(300, 100, seq=0)
    b, after, mb = oversized_case(M + 2, 100, seq=0)
    data = a + b + after
    items, left = feed_whole_and_bytewise(lambda: Decoding(100), data, hot=frame_offsets(data), **BIG)
    assert items[:2] == [ma, mb] and items[2].payload == b"\x03SELECT 1" and left == 0


# -- PacketDecoder: strict (a client not yet authenticated) -------------------


@pytest.mark.parametrize("prefix,max_size,marker", [
    (lambda: frame_header(101, 9) + b"x" * 50, 100, Oversized(9, 9, 101)),
    # 60 MiB on its way: refused at its first (16 MiB) header, whatever follows
    (lambda: frame_header(M, 9) + b"x" * 1000, 80 * 1024, Oversized(9, 9, M)),
    # only the second frame's header crosses the limit
    (lambda: frame_header(M, 9) + payload_of(M) + frame_header(7, 10) + b"xy", M + 6, Oversized(9, 10, M + 7)),
], ids=["one-frame", "60MiB", "second-frame"])
def test_strict_refuses_at_the_header_and_drops_all_after(prefix, max_size, marker):
    head = prefix()
    data = head + encode_packet(b"\x03SELECT 1", 0)

    def check(result):
        assert result == ([marker], 0)  # nothing kept: not the rest, not the next command

    kw = BIG if len(head) > M else {}
    feed_whole_and_bytewise(lambda: Decoding(max_size, strict=True), data, check, hot=frame_offsets(head)[:2], **kw)


def test_strict_takes_packets_up_to_the_limit():
    data = encode_packet(b"q" * 100, 1) + encode_packet(b"r", 2)
    items, left = feed_whole_and_bytewise(lambda: Decoding(100, strict=True), data)
    assert [p.payload for p in items] == [b"q" * 100, b"r"] and left == 0


def test_strict_holds_at_most_one_packet_below_the_limit():
    d = PacketDecoder(1000, strict=True)
    d.feed(frame_header(1000, 1) + b"x" * 999)
    assert d.next_packet() is None and d.buffered == 1003
    d.feed(b"x" + frame_header(5000, 2) + b"y" * 100_000)
    assert isinstance(d.next_packet(), Packet)
    assert d.next_packet() == Oversized(2, 2, 5000)
    assert d.buffered == 0
    d.feed(b"z" * 100_000)
    assert d.buffered == 0 and d.next_packet() is None


def test_limit_relaxes_after_login():
    d = PacketDecoder(100, strict=True)
    d.limit(1000)
    assert not d.strict and d.max_size == 1000
    d.feed(encode_packet(b"x" * 500, 0) + encode_packet(b"y" * 1001, 0) + encode_packet(b"z", 0))
    assert len(d.next_packet().payload) == 500
    assert d.next_packet() == Oversized(0, 0, 1001)  # skipped, not refused: the client goes on
    assert d.next_packet().payload == b"z"


def test_limit_must_be_positive():
    with pytest.raises(LocalProtocolError):
        PacketDecoder(10).limit(0)


# -- FrameScanner --------------------------------------------------------------


def test_scanner_finds_terminator():
    body = frames(b"1,a\n", b"2,b\n" * 100, b"", seq=2)
    data = body + b"\x01\x00\x00\x00\x03"  # whatever follows is not the file's
    assert feed_whole_and_bytewise(Scanning, data) == len(body)


def test_scanner_empty_file():
    assert feed_whole_and_bytewise(Scanning, encode_packet(b"", 2) + b"next") == 4


def test_scanner_not_yet():
    data = frames(b"abc", b"def", seq=2)
    assert feed_whole_and_bytewise(Scanning, data) == -1
    s = FrameScanner()
    assert s.feed(data) == -1
    assert s.feed(b"\x00\x00") == -1
    assert s.feed(b"\x00\x04tail") == 2  # offset within this chunk


def test_scanner_skips_the_empty_continuation_after_a_full_frame():
    chunk = encode_packet(payload_of(M), 2)  # full frame + empty continuation
    assert decode_frames(chunk)[-1] == (0, 3)
    body = chunk + encode_packet(b"x" * 10, 4) + encode_packet(b"", 5)
    data = body + b"garbage"
    assert feed_whole_and_bytewise(Scanning, data, hot=frame_offsets(body), **BIG) == len(body)


def test_scanner_multi_frame_data_then_terminator():
    body = encode_packet(payload_of(2 * M + 9), 2) + encode_packet(b"", 5)
    assert feed_whole_and_bytewise(Scanning, body, hot=frame_offsets(body), **BIG) == len(body)


def test_scanner_payload_bytes_that_look_like_headers_are_skipped():
    # A payload full of zeros must not be mistaken for empty packets.
    body = encode_packet(b"\x00" * 64, 2) + encode_packet(b"\x00\x00\x00\x00", 3) + encode_packet(b"", 4)
    assert feed_whole_and_bytewise(Scanning, body + b"\x00" * 8) == len(body)


def test_at_boundary_only_when_the_next_byte_starts_a_packet():
    big, after, marker = oversized_case(300, 100, seq=0)
    d = PacketDecoder(100)
    assert d.at_boundary
    d.feed(big[:150])
    assert not d.at_boundary and d.next_packet() is None
    assert d.buffered == 0 and not d.at_boundary  # nothing kept, but still inside the oversized packet
    d.feed(big[150:])
    assert d.next_packet() == marker and d.at_boundary
    d.feed(after[:3])
    assert not d.at_boundary

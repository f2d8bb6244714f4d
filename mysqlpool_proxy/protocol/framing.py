"""Packet framing: 4-byte headers, sequence ids and 16 MiB continuation.

Every MySQL packet is `length(3) seq(1) payload(length)`. A payload of
0xFFFFFF bytes or more is split: each full 0xFFFFFF-byte frame is followed by
another frame, and the last frame is shorter (possibly empty). A *logical*
packet is the joined payload of such a run of frames.

`PacketDecoder` turns a byte stream into logical packets. It keeps the raw
frame bytes too, because the relay forwards what arrived verbatim (same
sequence ids, no re-encoding). A logical packet larger than `max_size` is not
buffered: its frames are skipped as they arrive and a single `Oversized`
marker is returned in its place, so one oversized packet costs a client an
error, not its connection, and costs the proxy no memory.

A *strict* decoder (a client that has not authenticated yet) does not read
an oversized packet to its end: the marker comes as soon as a header shows
the packet is too large, and every byte after it is dropped, because the
caller answers with an error and closes. So a client that announces 60 MiB
costs the proxy one read, not 60 MiB of reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..errors import LocalProtocolError, RemoteProtocolError
from .wire import BytesLike

__all__ = ["MAX_FRAME", "HEADER_SIZE", "Packet", "Oversized", "PacketDecoder", "FrameScanner", "encode_packet",
           "frame_header", "with_payload", "same_frames"]

MAX_FRAME: Final = 0xFFFFFF
HEADER_SIZE: Final = 4


# Made for every packet, so its __init__ is written out: mypyc compiles it (a dataclass's generated
# __init__, and a whole dataclass with slots=True, stay interpreted). The dataclass gives == and repr.
@dataclass(init=False)
class Packet:
    """One logical packet: `payload` joined, `raw` as it arrived (headers included)."""

    seq: int  # sequence id of the first frame
    last_seq: int  # sequence id of the last frame
    payload: bytes
    raw: bytes

    def __init__(self, seq: int, last_seq: int, payload: bytes, raw: bytes) -> None:
        self.seq = seq
        self.last_seq = last_seq
        self.payload = payload
        self.raw = raw


@dataclass(slots=True)
class Oversized:
    """Stands in for a logical packet larger than the decoder's limit (already skipped).

    From a strict decoder: `last_seq` is the header that crossed the limit and
    `size` what the headers announced up to it."""

    seq: int
    last_seq: int
    size: int


def frame_header(length: int, seq: int) -> bytes:
    return bytes((length & 0xFF, (length >> 8) & 0xFF, length >> 16, seq & 0xFF))


def encode_packet(payload: bytes, seq: int) -> bytes:
    """Frame `payload` starting at sequence id `seq`, splitting at 16 MiB."""
    n = len(payload)
    if n < MAX_FRAME:
        return frame_header(n, seq) + payload
    parts = []
    pos = 0
    while True:
        chunk = payload[pos:pos + MAX_FRAME]
        parts.append(frame_header(len(chunk), seq))
        parts.append(chunk)
        seq = (seq + 1) & 0xFF
        pos += len(chunk)
        if len(chunk) < MAX_FRAME:
            break
    return b"".join(parts)


def next_seq(packet_seq: int) -> int:
    return (packet_seq + 1) & 0xFF


def with_payload(pkt: Packet, payload: bytes) -> Packet:
    """`pkt` with another payload (the same first sequence id), as a command rewritten for the server."""
    return Packet(pkt.seq, (pkt.seq + len(payload) // MAX_FRAME) & 0xFF, payload, encode_packet(payload, pkt.seq))


def same_frames(pkt: Packet, payload: bytes, filler: bytes) -> bytes:
    """`payload`, shorter than `pkt`'s, made as long as it takes to fill as many frames: the server numbers
    its answer after the last frame it got, and the client expects it after its own. `filler`: a byte the
    server ignores at the end of this command (a rewrite that only shortens moves the count by one frame at most,
    and only for a payload within a few bytes of 16 MiB)."""
    short = ((pkt.last_seq - pkt.seq) & 0xFF) * MAX_FRAME - len(payload)
    return payload + filler * short if short > 0 else payload


class PacketDecoder:
    """Incremental decoder of logical packets from a byte stream."""

    __slots__ = ("_buf", "max_size", "strict", "_refused", "_skip", "_skip_total", "_skip_seq", "_skip_last",
                 "_skip_more")

    def __init__(self, max_size: int = 1 << 30, *, strict: bool = False):
        self._buf = bytearray()
        self.limit(max_size, strict=strict)
        self._refused = False  # strict, and an oversized packet came: all input is dropped
        # State while skipping an oversized logical packet.
        self._skip = 0  # bytes of the current frame still to drop
        self._skip_total = -1  # -1: not skipping
        self._skip_seq = 0
        self._skip_last = 0
        self._skip_more = False  # another frame follows the current one

    def limit(self, max_size: int, *, strict: bool = False) -> None:
        """Set the largest logical packet, and whether one larger ends the stream (strict: see above)."""
        if max_size < 1:
            raise LocalProtocolError("max_size must be positive")
        self.max_size = max_size
        self.strict = strict

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if not self._refused:
            self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def at_boundary(self) -> bool:
        """Nothing buffered and no oversized packet being skipped: the next byte starts a packet."""
        return not self._buf and self._skip_total < 0 and not self._refused

    def take_buffer(self) -> bytes:
        """Hand over all unparsed bytes (e.g. when switching to raw relay)."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def next_packet(self) -> Packet | Oversized | None:
        """The next complete logical packet, or None if more bytes are needed."""
        if self._skip_total >= 0:
            return self._continue_skip()
        buf = self._buf
        total = 0
        pos = 0
        frames = 0
        while True:
            if len(buf) - pos < HEADER_SIZE:
                return None
            length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
            total += length
            if total > self.max_size:
                if self.strict:
                    return self._refuse(pos, total)
                return self._start_skip(pos, total)
            end = pos + HEADER_SIZE + length
            if len(buf) < end:
                return None
            frames += 1
            last_seq = buf[pos + 3]
            pos = end
            if length < MAX_FRAME:
                break
        return self._cut(pos, frames, last_seq)

    def _cut(self, end: int, frames: int, last_seq: int) -> Packet:
        buf = self._buf
        raw = bytes(buf[:end])
        del buf[:end]
        seq = raw[3]
        if frames == 1:
            payload = raw[HEADER_SIZE:]
        else:
            parts = []
            pos = 0
            while pos < end:
                length = raw[pos] | raw[pos + 1] << 8 | raw[pos + 2] << 16
                parts.append(raw[pos + HEADER_SIZE:pos + HEADER_SIZE + length])
                pos += HEADER_SIZE + length
            payload = b"".join(parts)
        return Packet(seq, last_seq, payload, raw)

    # -- oversized packets -------------------------------------------------

    def _refuse(self, frame_pos: int, total_so_far: int) -> Oversized:
        """Strict: report the packet at once and drop all input from here on."""
        buf = self._buf
        marker = Oversized(buf[3], buf[frame_pos + 3], total_so_far)
        self._refused = True
        buf.clear()
        return marker

    def _start_skip(self, frame_pos: int, total_so_far: int) -> Oversized | None:
        """Drop everything of an oversized packet that has arrived; keep skipping later."""
        buf = self._buf
        self._skip_seq = buf[3]
        self._skip_total = 0
        # Re-walk from the first frame, dropping whole frames as we go.
        pos = 0
        while True:
            length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
            self._skip_last = buf[pos + 3]
            self._skip_total += length
            self._skip_more = length == MAX_FRAME
            end = pos + HEADER_SIZE + length
            if end > len(buf):
                self._skip = end - len(buf)
                del buf[:]
                return None
            pos = end
            if not self._skip_more:
                del buf[:pos]
                return self._finish_skip()
            if len(buf) - pos < HEADER_SIZE:
                del buf[:pos]
                self._skip = 0
                return None

    def _continue_skip(self) -> Oversized | None:
        buf = self._buf
        if self._skip:
            drop = min(self._skip, len(buf))
            del buf[:drop]
            self._skip -= drop
            if self._skip:
                return None
            if not self._skip_more:
                return self._finish_skip()
        while True:
            if len(buf) < HEADER_SIZE:
                return None
            length = buf[0] | buf[1] << 8 | buf[2] << 16
            self._skip_last = buf[3]
            self._skip_total += length
            self._skip_more = length == MAX_FRAME
            end = HEADER_SIZE + length
            if end > len(buf):
                self._skip = end - len(buf)
                del buf[:]
                return None
            del buf[:end]
            if not self._skip_more:
                return self._finish_skip()

    def _finish_skip(self) -> Oversized:
        marker = Oversized(self._skip_seq, self._skip_last, self._skip_total)
        self._skip_total = -1
        self._skip = 0
        self._skip_more = False
        return marker


class FrameScanner:
    """Finds the end of a stream of packets that ends with an empty packet.

    Used for LOCAL INFILE data, which is relayed as it arrives and can be any
    size: only headers are read. Given the first sequence id, it checks that
    frames follow in order (RemoteProtocolError otherwise). `feed(data)` returns the offset just past
    the terminating empty packet, or -1 if it has not arrived yet. An empty
    frame that follows a full 16 MiB frame is a continuation, not the end.

    With `shift`, each frame's sequence id is raised by it in `data` (then a
    bytearray) as the frame is checked: the server numbers the transfer after
    the packets it sent, and a CLIENT_DEPRECATE_EOF client got fewer of them
    (protocol/response.py).
    """

    __slots__ = ("_skip", "_head", "_after_full", "_seq", "shift")

    def __init__(self, first_seq: int | None = None, *, shift: int = 0) -> None:
        self._skip = 0
        self._head = b""
        self._after_full = False
        self._seq = first_seq  # the sequence id the next frame must have (None: not checked)
        self.shift = shift

    @property
    def expected_seq(self) -> int:
        """The sequence id the next frame must have (0 when not checked)."""
        return self._seq if self._seq is not None else 0

    def feed(self, data: BytesLike) -> int:
        n = len(data)
        pos = 0
        if self._skip:
            pos = min(self._skip, n)
            self._skip -= pos
        while pos < n:
            if self._head:
                need = HEADER_SIZE - len(self._head)
                head = self._head + bytes(data[pos:pos + need])
                if len(head) < HEADER_SIZE:
                    self._head = head
                    return -1
                header: BytesLike = head
                self._head = b""
                pos += need
            elif n - pos < HEADER_SIZE:
                self._head = bytes(data[pos:])
                return -1
            else:
                header = data[pos:pos + HEADER_SIZE]
                pos += HEADER_SIZE
            length = header[0] | header[1] << 8 | header[2] << 16
            if self._seq is not None:
                if header[3] != self._seq:
                    raise RemoteProtocolError(f"packet out of order: sequence id {header[3]}, expected {self._seq}")
                self._seq = (self._seq + 1) & 0xFF
            if self.shift:
                assert isinstance(data, bytearray), "a shifting FrameScanner rewrites its data"
                data[pos - 1] = (header[3] + self.shift) & 0xFF
            if length == 0 and not self._after_full:
                return pos
            self._after_full = length == MAX_FRAME
            if pos + length > n:
                self._skip = pos + length - n
                return -1
            pos += length
        return -1

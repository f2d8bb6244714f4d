"""The compressed protocol (CLIENT_COMPRESS: zlib; CLIENT_ZSTD_COMPRESSION_ALGORITHM: zstd), sans-IO:
frames in, payload bytes out, and back.

A client that negotiated compression wraps everything after the login's OK
in compressed frames: a 7-byte header (3 bytes: the length of what follows;
1 byte: the compressed sequence id; 3 bytes: the length before compression,
0 when the payload is stored as it is) and the payload. Frames are a layer
below MySQL packets: one frame may hold several packets or part of one, and
the packets inside keep their own sequence ids. The compressed sequence id
restarts with each command the client sends; the answer's frames continue
from the last id received.

`FrameDecoder` yields the payload of one frame at a time, so the caller can
stop (flow control) with the rest still compressed: at most one frame
(16 MiB) is ever inflated at once, whatever the compression ratio.
`FrameEncoder` wraps outgoing bytes; payloads under MIN_COMPRESS_LENGTH, or
that do not shrink, go stored, as the server does.

The frames are the same for both algorithms; only the payload's codec
differs (`Zlib`, `Zstd`), one object per connection. A zstd payload is one
zstd frame: one whose declared content size, window or actual size is other
than (or more than) the frame header's length before compression is refused,
as an inflated zlib payload of the wrong length is. zstd's level comes from
the client (`zstd_level`: MySQL's 1..22, 0 meaning zstd's default 3), but
the proxy compresses at most at ZSTD_MAX_LEVEL: a connection keeps its
compression context, and a level-22 context for a 16 MiB frame takes 257 MiB
(level 6: 3 MiB). Levels decode alike, so the client never notices.

Inside compressed frames the packets' own sequence ids mean nothing: libmariadb
writes 0 in every one, MySQL continues the compressed ids, and neither checks
them when reading. The proxy relays to uncompressed backends, which do check,
so `InnerFrames` cuts the inflated stream at each packet frame and numbers it
as an uncompressed client would: a continuation of a 16 MiB frame follows its
predecessor, any other frame gets what its reader expects next (0 for a
command, the next id for LOCAL INFILE data or an authentication reply), asked
for when the frame is reached, so earlier frames have been taken into account.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import zstandard

from ..errors import ProtocolError

__all__ = [
    "Codec", "Zlib", "Zstd", "zstd_level", "FrameDecoder", "FrameEncoder", "InnerFrames",
    "HEADER_SIZE", "MAX_FRAME", "MIN_COMPRESS_LENGTH", "ZSTD_DEFAULT_LEVEL", "ZSTD_MAX_LEVEL",
]

HEADER_SIZE = 7
MAX_FRAME = (1 << 24) - 1  # the most a 3-byte length says, before and after compression
MIN_COMPRESS_LENGTH = 50  # smaller payloads are stored (the server's MIN_COMPRESS_LENGTH)
LEVEL = 1  # zlib's fastest: any level inflates the same; the proxy's CPU is the scarce part
ZSTD_DEFAULT_LEVEL = 3  # MySQL's default_zstd_compression_level, and zstd's level 0
ZSTD_MAX_LEVEL = 6  # the most the proxy compresses at (see above: a context's memory)
ZSTD_MAX_CLIENT_LEVEL = 22  # MySQL's is_zstd_compression_level_valid: 1..22


def zstd_level(asked: int) -> int:
    """The level the proxy compresses at for a client that asked for `asked` in its HandshakeResponse:
    0 (zstd's "default") is 3, above 22 is 22 (zstd clamps it so too), then at most ZSTD_MAX_LEVEL."""
    level = ZSTD_DEFAULT_LEVEL if asked <= 0 else min(asked, ZSTD_MAX_CLIENT_LEVEL)
    return min(level, ZSTD_MAX_LEVEL)


class Codec:
    """A compressed payload's algorithm: `inflate(body, length)` (exactly `length` bytes, or
    ProtocolError) and `deflate(chunk)`."""

    __slots__ = ()

    def inflate(self, body: bytes, length: int) -> bytes:
        raise NotImplementedError

    def deflate(self, chunk: memoryview) -> bytes:
        raise NotImplementedError


class Zlib(Codec):
    """CLIENT_COMPRESS: zlib streams, one per frame."""

    __slots__ = ()

    def inflate(self, body: bytes, length: int) -> bytes:
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(body, length)
        except zlib.error as exc:
            raise ProtocolError(f"compressed frame does not inflate: {exc}") from None
        if len(out) != length or not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
            raise ProtocolError(f"compressed frame inflates to other than the {length} bytes its header says")
        return out

    def deflate(self, chunk: memoryview) -> bytes:
        return zlib.compress(chunk, LEVEL)


class Zstd(Codec):
    """CLIENT_ZSTD_COMPRESSION_ALGORITHM: one zstd frame per compressed frame. The contexts are made
    when first needed and kept (making one costs ~20 us, using one ~1 us)."""

    __slots__ = ("level", "_compressor", "_decompressor")

    def __init__(self, level: int = ZSTD_DEFAULT_LEVEL):
        self.level = level
        self._compressor: zstandard.ZstdCompressor | None = None
        self._decompressor: zstandard.ZstdDecompressor | None = None

    def inflate(self, body: bytes, length: int) -> bytes:
        decompressor = self._decompressor
        if decompressor is None:  # a window larger than a frame can hold is refused, never allocated
            decompressor = self._decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_FRAME + 1)
        try:
            declared = zstandard.frame_content_size(body)
            if declared not in (-1, length):
                raise ProtocolError(f"zstd frame declares {declared} bytes, its header {length}")
            out = decompressor.decompress(body, max_output_size=length, allow_extra_data=False)
        except zstandard.ZstdError as exc:
            raise ProtocolError(f"compressed frame does not inflate: {exc}") from None
        if len(out) != length:
            raise ProtocolError(f"compressed frame inflates to other than the {length} bytes its header says")
        return out

    def deflate(self, chunk: memoryview) -> bytes:
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = zstandard.ZstdCompressor(level=self.level)
        return compressor.compress(chunk)


class FrameDecoder:
    """Compressed frames from a byte stream; `next_payload()` inflates one at a time."""

    __slots__ = ("codec", "_buf", "_pos", "last_seq")

    def __init__(self, codec: Codec | None = None) -> None:
        self.codec = codec or Zlib()
        self._buf = bytearray()
        self._pos = 0
        self.last_seq = -1  # the compressed sequence id of the last frame taken (-1: none yet)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def next_payload(self) -> bytes | None:
        """The next whole frame's payload (inflated), or None until more bytes arrive.
        Raises ProtocolError for a frame that does not inflate to the length its header says."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos < HEADER_SIZE:
            return None
        length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
        end = pos + HEADER_SIZE + length
        if len(buf) < end:
            return None
        seq = buf[pos + 3]
        inflated_length = buf[pos + 4] | buf[pos + 5] << 8 | buf[pos + 6] << 16
        body = bytes(buf[pos + HEADER_SIZE:end])
        self._pos = end
        self.last_seq = seq
        return body if inflated_length == 0 else self.codec.inflate(body, inflated_length)


class FrameEncoder:
    """Wraps outgoing bytes in compressed frames, numbering them from `seq`."""

    __slots__ = ("codec", "seq")

    def __init__(self, codec: Codec | None = None) -> None:
        self.codec = codec or Zlib()
        self.seq = 0  # the next frame's compressed sequence id

    def answer(self, received_seq: int) -> None:
        """The client sent a frame with this id: what the proxy sends next continues from it."""
        self.seq = (received_seq + 1) & 0xFF

    def frames(self, data: bytes | bytearray | memoryview) -> bytes:
        view = memoryview(data)
        return b"".join([self._frame(view[start:start + MAX_FRAME]) for start in range(0, len(view), MAX_FRAME)])

    def _frame(self, chunk: memoryview) -> bytes:
        seq = self.seq
        self.seq = (seq + 1) & 0xFF
        n = len(chunk)
        if n >= MIN_COMPRESS_LENGTH:
            packed = self.codec.deflate(chunk)
            if len(packed) < n:
                return _header(len(packed), seq, n) + packed
        return _header(n, seq, 0) + chunk.tobytes()


def _header(length: int, seq: int, inflated_length: int) -> bytes:
    return length.to_bytes(3, "little") + bytes((seq,)) + inflated_length.to_bytes(3, "little")


class InnerFrames:
    """The packet frames inside inflated payloads, one piece at a time, each header renumbered."""

    __slots__ = ("_buf", "_pos", "_body_left", "_seq", "_after_full")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._body_left = 0  # bytes of the current frame's body still to hand out
        self._seq = 0  # the id given to the last frame
        self._after_full = False  # the last frame was 16 MiB: the next continues its packet

    def feed(self, payload: bytes) -> None:
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0
        self._buf += payload

    def next_piece(self, expected_seq: Callable[[], int]) -> bytes | None:
        """The next bytes to hand on: a frame's header (renumbered) with as much of its body as is
        here, or more of a body; None until more is fed. `expected_seq()` is asked at each frame
        that starts a packet."""
        buf, pos = self._buf, self._pos
        available = len(buf) - pos
        if self._body_left:
            if not available:
                return None
            take = min(self._body_left, available)
            self._body_left -= take
            self._pos = pos + take
            return bytes(buf[pos:pos + take])
        if available < 4:
            return None
        length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
        self._seq = (self._seq + 1) & 0xFF if self._after_full else expected_seq()
        self._after_full = length == MAX_FRAME
        take = min(length, available - 4)
        self._body_left = length - take
        self._pos = pos + 4 + take
        return bytes(buf[pos:pos + 3]) + bytes((self._seq,)) + bytes(buf[pos + 4:pos + 4 + take])

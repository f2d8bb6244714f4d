"""Compression of one client's connection (CLIENT_COMPRESS or CLIENT_ZSTD_COMPRESSION_ALGORITHM), between
its socket and the client.

A client that negotiated compression speaks compressed frames from the
first byte after the login's OK (zlib or zstd: the codec the handshake
chose, protocol/compression.py). `start_compression()` then puts two small
objects around the client's transport, and nothing else of the client knows:

  * `Decompressor` becomes the socket's protocol: it inflates frames one at a
    time (protocol/compression.py) and hands the client's data_received one
    packet frame at a time, numbered as an uncompressed client would number it
    (the ids inside compressed frames mean nothing; backends check them).
    While the client has its reading paused it stops, with the rest still
    compressed, so flow control bounds what is inflated, whatever the ratio;
  * `CompressedTransport` becomes the client's transport: every write is
    wrapped in frames numbered after the last frame the client sent.

Backends stay uncompressed: the proxy sits next to the server. A frame that
does not inflate gets the server's 1157 and the connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from ..constants import ER
from ..errors import ProtocolError
from ..protocol.compression import Codec, FrameDecoder, FrameEncoder, InnerFrames
from ..protocol.framing import encode_packet
from ..protocol.packets import make_err
from ..reasons import ClientCloseReason

__all__ = ["CompressedTransport", "Decompressor", "start_compression"]


class Compressible(Protocol):
    """What compression needs of a client connection (ClientConnection)."""

    @property
    def transport(self) -> asyncio.Transport | None: ...

    def use_transport(self, transport: asyncio.Transport) -> None: ...
    def take_unread_input(self) -> bytes: ...
    def expected_packet_seq(self) -> int: ...
    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> bool: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
    def write(self, data: bytes) -> None: ...
    def close(self, reason: ClientCloseReason) -> None: ...


def start_compression(client: Compressible, loop: asyncio.AbstractEventLoop, codec: Codec) -> None:
    """From now on the client's bytes are compressed frames both ways, with `codec` (call it right after
    the login's OK)."""
    raw = client.transport
    assert raw is not None
    decompressor = Decompressor(client, raw, loop, codec)
    raw.set_protocol(decompressor)
    client.use_transport(CompressedTransport(raw, decompressor))
    unread = client.take_unread_input()  # frames that came with the login (a client that did not wait)
    if unread:
        decompressor.feed_later(unread)


class Decompressor(asyncio.Protocol):
    """The socket's protocol: frames in, the client's bytes out, one frame at a time."""

    __slots__ = ("_client", "_raw", "_loop", "frames", "inner", "encoder", "_paused", "_draining")

    def __init__(self, client: Compressible, raw: asyncio.Transport, loop: asyncio.AbstractEventLoop,
                 codec: Codec | None = None):
        self._client = client
        self._raw = raw
        self._loop = loop
        self.frames = FrameDecoder(codec)
        self.inner = InnerFrames()
        self.encoder = FrameEncoder(codec)
        self._paused = not raw.is_reading()
        self._draining = False

    # -- asyncio.Protocol: the socket's events, passed on ---------------------------------

    def data_received(self, data: bytes) -> None:
        self.frames.feed(data)
        self._drain()

    def feed_later(self, data: bytes) -> None:
        self.frames.feed(data)
        self._loop.call_soon(self._drain)

    def eof_received(self) -> bool | None:
        return self._client.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._client.connection_lost(exc)

    def pause_writing(self) -> None:
        self._client.pause_writing()

    def resume_writing(self) -> None:
        self._client.resume_writing()

    # -- reading, paused by the client's flow control ------------------------------------

    def pause(self) -> None:
        if not self._paused:
            self._paused = True
            self._raw.pause_reading()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            if not self._raw.is_closing():
                self._raw.resume_reading()
            if not self._draining:  # (inside _drain, its loop goes on by itself)
                self._drain()

    @property
    def reading(self) -> bool:
        return not self._paused

    def _drain(self) -> None:
        """Hand the client every whole frame, in order, until it pauses; never re-entered."""
        if self._draining:
            return
        self._draining = True
        client, frames, inner = self._client, self.frames, self.inner
        try:
            while not self._paused and not self._raw.is_closing():
                piece = inner.next_piece(client.expected_packet_seq)
                if piece is not None:
                    client.data_received(piece)
                    continue
                payload = frames.next_payload()
                if payload is None:
                    return
                self.encoder.answer(frames.last_seq)
                inner.feed(payload)
        except ProtocolError:
            client.write(encode_packet(make_err(
                ER.NET_UNCOMPRESS_ERROR, "08S01", "Couldn't uncompress communication packet"), 0))
            client.close(ClientCloseReason.PROTOCOL_ERROR)
        finally:
            self._draining = False


class CompressedTransport(asyncio.Transport):
    """The client's transport once it compresses: writes are framed, reading is the Decompressor's."""

    __slots__ = ("_raw", "_decompressor")

    def __init__(self, raw: asyncio.Transport, decompressor: Decompressor):
        super().__init__()
        self._raw = raw
        self._decompressor = decompressor

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._raw.write(self._decompressor.encoder.frames(data))

    def pause_reading(self) -> None:
        self._decompressor.pause()

    def resume_reading(self) -> None:
        self._decompressor.resume()

    def is_reading(self) -> bool:
        return self._decompressor.reading

    def is_closing(self) -> bool:
        return self._raw.is_closing()

    def close(self) -> None:
        self._raw.close()

    def abort(self) -> None:
        self._raw.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._raw.get_extra_info(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._raw.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._raw.get_protocol()

# FakeTransport: an asyncio.Transport with no socket. It records what the
# protocol writes and lets the test (or a fake peer, through the on_write and
# on_close hooks) play the other end: deliver bytes (held while reading is
# paused, as a socket's would be), close or break the connection, and stop
# reading so that writes pile up past the high-water mark and the protocol gets
# pause_writing()/resume_writing() as over a real socket.
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any


class FakeTransport(asyncio.Transport):
    """Records what the protocol writes; the test (or a fake peer) plays the other end.

    Peer side: `feed(data)` delivers bytes (queued while reading is paused),
    `peer_close()` is the peer closing, `stall()`/`drain()` model a peer that
    stops reading (writes pile up; past the high-water mark the protocol gets
    pause_writing), `fill_buffer()`/`drain()` signal pause/resume directly.
    `on_write(data)` and `on_close()` hooks connect a fake peer.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.BaseProtocol | None = None, *,
                 peername: Any = ("127.0.0.1", 50000), name: str = ""):
        super().__init__()
        self.loop = loop
        self.name = name
        self._protocol = protocol
        self._extra = {"peername": peername, "sockname": ("127.0.0.1", 6033)}
        self.writes: list[bytes] = []  # every write() call, in order
        self.closing = False
        self.closed_by_peer = False
        self.reading_paused = False
        self.pause_reading_calls = 0
        self.resume_reading_calls = 0
        self.high_water = 64 * 1024
        self.low_water = 16 * 1024
        self.writing_paused = False  # pause_writing() signalled and not yet resumed
        self._stalled = False
        self._backlog: list[bytes] = []  # written while stalled: not yet seen by the peer
        self._buffered = 0
        self._inbox: deque[bytes] = deque()  # delivered while reading was paused
        self.on_write: Callable[[bytes], None] | None = None
        self.on_close: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"<FakeTransport {self.name}{' closing' if self.closing else ''}>"

    # -- asyncio.Transport -------------------------------------------------------

    def get_extra_info(self, name, default=None):
        return self._extra.get(name, default)

    def set_protocol(self, protocol) -> None:
        self._protocol = protocol

    def get_protocol(self):
        return self._protocol

    def is_closing(self) -> bool:
        return self.closing

    def write(self, data) -> None:
        data = bytes(data)
        if not data:
            return
        self.writes.append(data)
        if self.closing:
            return
        if self._stalled:
            self._backlog.append(data)
            self._buffered += len(data)
            if self._buffered > self.high_water and not self.writing_paused:
                self.writing_paused = True
                self._protocol.pause_writing()
            return
        if self.on_write is not None:
            self.on_write(data)

    def writelines(self, list_of_data) -> None:
        for data in list_of_data:
            self.write(data)

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self._inbox.clear()
        if self.on_close is not None:
            self.on_close()
        if self._protocol is not None:
            self.loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def is_reading(self) -> bool:
        return not self.reading_paused and not self.closing

    def pause_reading(self) -> None:
        self.pause_reading_calls += 1
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.resume_reading_calls += 1
        if not self.reading_paused:
            return
        self.reading_paused = False
        if self._inbox:
            self.loop.call_soon(self._flush_inbox)

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        self.high_water, self.low_water = high, low

    def get_write_buffer_limits(self):
        return self.low_water, self.high_water

    def get_write_buffer_size(self) -> int:
        return self._buffered

    # -- the peer ------------------------------------------------------------------

    @property
    def data(self) -> bytes:
        """Everything written so far."""
        return b"".join(self.writes)

    def feed(self, data: bytes) -> None:
        """The peer sends `data` (delivered now, or when reading resumes)."""
        if self.closing or not data:
            return
        if self.reading_paused or self._inbox:
            self._inbox.append(bytes(data))
            return
        self._protocol.data_received(bytes(data))

    def _flush_inbox(self) -> None:
        while self._inbox and not self.reading_paused and not self.closing:
            self._protocol.data_received(self._inbox.popleft())

    @property
    def pending_input(self) -> int:
        """Bytes the peer sent that wait for reading to resume."""
        return sum(len(d) for d in self._inbox)

    def peer_close(self, exc: Exception | None = None) -> None:
        """The peer closes (EOF), or the connection breaks with `exc`."""
        if self.closing:
            return
        self.closed_by_peer = True
        if exc is None and self._protocol is not None and self._protocol.eof_received():
            return  # the protocol keeps its half open
        self.close()

    def stall(self) -> None:
        """The peer stops reading: writes pile up in the buffer."""
        self._stalled = True

    def fill_buffer(self) -> None:
        """Signal a full write buffer (pause_writing) at once."""
        self._stalled = True
        self._buffered = max(self._buffered, self.high_water + 1)
        if not self.writing_paused:
            self.writing_paused = True
            self._protocol.pause_writing()

    def drain(self) -> None:
        """The peer reads everything buffered; resume_writing if it was paused."""
        self._stalled = False
        backlog, self._backlog = self._backlog, []
        self._buffered = 0
        if self.on_write is not None and not self.closing:
            for data in backlog:
                self.on_write(data)
        if self.writing_paused:
            self.writing_paused = False
            if not self.closing:
                self._protocol.resume_writing()

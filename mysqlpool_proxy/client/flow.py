"""Flow control of one client socket: why its reading is paused, and since when its writing is.

Reading is paused for any of several reasons at once (`Paused`), and resumes
when the last goes: the backend's write buffer is full (the server takes no
more of the client's command), too much pipelined input is queued, the TLS
upgrade is under way, or a client spoke before it was greeted. Writing
(the client's socket buffer) is paused by the transport; `stalled_since`
says since when, for the janitor (net_write_timeout).
"""

from __future__ import annotations

import asyncio
from typing import Final

__all__ = ["Paused", "FlowControl"]


class Paused:
    """Why reading is paused: bits of FlowControl.paused (plain ints: checked on the hot path)."""

    BACKEND_FULL: Final = 1  # the backend's write buffer is full
    INPUT_QUEUED: Final = 2  # more pipelined input than MAX_QUEUED_INPUT waits
    TLS_UPGRADE: Final = 4  # start_tls() under way: the TLS protocol takes over the bytes
    NOT_GREETED: Final = 8  # bytes before the greeting: read once it is sent


class FlowControl:
    __slots__ = ("_transport", "paused", "stalled_since")

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self.paused = 0  # Paused bits; reading resumes when none is left
        self.stalled_since: float | None = None  # the client's socket buffer has been full since then

    def write_stalled(self, now: float) -> None:
        """The client's socket buffer is full (the transport paused writing)."""
        self.stalled_since = now

    def write_resumed(self) -> None:
        self.stalled_since = None

    def attach(self, transport: asyncio.Transport) -> None:
        """The transport to pause (a new one after the TLS upgrade)."""
        self._transport = transport

    def pause(self, why: int) -> None:
        if not self.paused and self._transport is not None:
            self._transport.pause_reading()
        self.paused |= why

    def resume(self, why: int) -> None:
        if self.paused & why:
            self.paused &= ~why
            if not self.paused and self._transport is not None and not self._transport.is_closing():
                self._transport.resume_reading()

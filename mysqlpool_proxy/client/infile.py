"""LOAD DATA LOCAL INFILE for one client: its file, relayed to the backend as it arrives.

When the server asks for a local file (`ClientConnection.on_infile_request()`),
the client moves to INFILE and `InfileRelay` owns the transfer: a
`FrameScanner` checks the sequence ids of the file's packets as they pass
and finds the empty packet that ends it. The bytes go to the backend as they
come, never held; a packet out of order gets the server's error and closes
the client (the backend, mid-transfer, goes with it). At the file's end the
client is ACTIVE again, the backend reads the server's answer, and whatever
the client sent after the file waits in its decoder for the next command.
"""

from __future__ import annotations

from typing import Final

from ..backend.connection import BackendConnection
from ..core.states import ClientState
from ..errors import ProtocolError
from ..protocol.framing import FrameScanner, next_seq
from .host import Client

__all__ = ["InfileRelay"]

_INFILE: Final = ClientState.INFILE
_ACTIVE: Final = ClientState.ACTIVE


class InfileRelay:
    __slots__ = ("_client", "_scanner")

    def __init__(self, client: Client) -> None:
        self._client = client
        self._scanner: FrameScanner | None = None  # a transfer under way

    @property
    def expected_seq(self) -> int | None:
        """The sequence id of the file's next packet; None with no transfer under way."""
        return self._scanner.expected_seq if self._scanner is not None else None

    def begin(self, backend: BackendConnection) -> None:
        """The server asked `backend`'s client for its file: relay it from now on."""
        client = self._client
        client.set_state(_INFILE)
        # (After a result set a CLIENT_DEPRECATE_EOF client numbers its data lower than the server does.)
        tracker = backend.tracker
        self._scanner = FrameScanner(next_seq(tracker.infile_seq), shift=tracker.seq_shift)
        leftover = client.decoder.take_buffer()
        if leftover:
            self.relay(leftover)

    def relay(self, data: bytes | bytearray) -> None:
        """Bytes of the file (and, after its end, of what the client sends next)."""
        client = self._client
        backend = client.lease.backend
        scanner = self._scanner
        if backend is None or scanner is None:
            return
        if scanner.shift:
            data = bytearray(data)  # renumbered by the scanner
        try:
            end = scanner.feed(data)
        except ProtocolError:
            client.out_of_order()  # as the server does; the backend, mid-transfer, is closed with the client
            return
        if end < 0:
            backend.write(data)
            return
        backend.write(data[:end] if end < len(data) else data)
        self._scanner = None
        client.set_state(_ACTIVE)
        backend.infile_sent()
        if end < len(data):
            client.decoder.feed(data[end:])

    def forget(self) -> None:
        """The server ended the transfer (an error before the file's end)."""
        self._scanner = None

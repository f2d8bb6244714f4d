"""The client connection as its parts and functions see it: the port they declare, not an import.

`ConnectionPhase` (phase.py), `Accounting` (accounting.py), `QueryTimer`
(query_timer.py), `InfileRelay` (infile.py) and the functions of a client in
checkout.py, followups.py, local.py, prepare.py and statements.py work on
one client connection.
They type it as `Client`, declared here, so that none of them imports
connection.py, which imports all of them (no import cycle, not even under
TYPE_CHECKING). `ClientConnection` (connection.py) is the one class that
derives from it. `Client` is a base class without behaviour, not a
typing.Protocol: compiled (mypyc), its attributes are read from the object's
struct and its methods called through a vtable, where a Protocol's members
are looked up by name at every use. It derives from the backend's `Holder`
(what a backend needs of the client it serves), as the connection is both.
Everything here is read-only to them: they change a client's state through
its methods, its `session` and its `lease`, each the owner of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..backend.connection import BackendConnection, Holder
from ..core.client_session import ClientSession, Command
from ..core.states import ClientState
from ..errors import ProxyError
from ..protocol import handshake as hs
from ..protocol.framing import Oversized, Packet, PacketDecoder
from ..reasons import ClientCloseReason
from .context import ClientContext, UserLike
from .flow import FlowControl
from .lease import BackendLease

if TYPE_CHECKING:
    from ..backend.pool import Pool

__all__ = ["Client"]


class Client(Holder):
    """One client connection: its parts, identity and state, and what may be asked of it."""

    __slots__ = ()

    # -- its parts and state (set by ClientConnection)
    proxy: ClientContext
    id: int
    peer: str
    connected_at: float
    transport: asyncio.Transport | None
    state: ClientState
    session: ClientSession
    lease: BackendLease
    flow: FlowControl
    decoder: PacketDecoder
    command: Command | None

    # -- its identity, once logged in
    user: UserLike | None
    pool: Pool | None
    capabilities: int  # what it negotiated with the proxy
    key: int
    charset: int

    @property
    def backend(self) -> BackendConnection | None:
        raise NotImplementedError

    # -- what may be asked of it
    def set_state(self, new: ClientState) -> None:
        raise NotImplementedError

    def run_task(self, coro: Coroutine[Any, Any, Any]) -> None:
        raise NotImplementedError

    def on_unix_socket(self) -> bool:
        raise NotImplementedError

    def logged_in(self, event: hs.Verified, capabilities: int) -> None:
        raise NotImplementedError

    def start_change_user(self, pkt: Packet) -> None:
        raise NotImplementedError

    def bound_input_for_login(self) -> None:
        raise NotImplementedError

    def bound_input_for_commands(self) -> None:
        raise NotImplementedError

    def process_input(self) -> None:
        raise NotImplementedError

    def handle_packet(self, pkt: Packet | Oversized) -> None:
        raise NotImplementedError

    def backend_handed(self, backend: BackendConnection | None, exc: Exception | None) -> None:
        raise NotImplementedError

    def send(self, backend: BackendConnection, pkt: Packet, now: float | None = None) -> None:
        raise NotImplementedError

    def keeps_backend(self, backend: BackendConnection) -> bool:
        raise NotImplementedError

    def back_to_ready(self, backend: BackendConnection | None = None) -> None:
        raise NotImplementedError

    def close(self, reason: ClientCloseReason) -> None:
        raise NotImplementedError

    def refuse_before_greeting(self, error: ProxyError) -> None:
        raise NotImplementedError

    def evict_from_login(self) -> None:
        raise NotImplementedError

    async def acquire_backend(self, deadline: float) -> BackendConnection:
        raise NotImplementedError

    # -- its socket (compression.py and phase.py change what is under it: TLS, compression)
    def use_transport(self, transport: asyncio.Transport) -> None:
        raise NotImplementedError

    def take_unread_input(self) -> bytes:
        raise NotImplementedError

    def expected_packet_seq(self) -> int:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def eof_received(self) -> bool:  # (asyncio's may return None; the client's says False: close)
        raise NotImplementedError

    # -- replies from the proxy itself
    def send_error(self, last_seq: int, err: ProxyError) -> None:
        raise NotImplementedError

    def send_ok(self, last_seq: int, info: bytes = b"",
                variables: list[tuple[bytes, bytes]] | None = None) -> None:
        raise NotImplementedError

    def send_eof(self, last_seq: int) -> None:
        raise NotImplementedError

    def out_of_order(self) -> None:
        raise NotImplementedError

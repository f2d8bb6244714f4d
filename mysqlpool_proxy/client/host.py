"""The client connection as its parts and functions see it: the port they declare, not an import.

`ConnectionPhase` (phase.py), `Accounting` (accounting.py), `QueryTimer`
(query_timer.py), `InfileRelay` (infile.py) and the functions of a client in
checkout.py, followups.py, local.py, prepare.py and statements.py work on
one client connection.
They type it as `Client`, declared here, so that none of them imports
connection.py, which imports all of them (no import cycle, not even under
TYPE_CHECKING). `ClientConnection` (connection.py) is the one class that
satisfies it; mypy checks that where it hands itself over. Everything here
is read-only to them: they change a client's state through its methods, its
`session` and its `lease`, each the owner of its own.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Protocol

from ..backend.connection import BackendConnection
from ..core.client_session import ClientSession, Command
from ..core.states import ClientState
from ..errors import ProxyError
from ..protocol import handshake as hs
from ..protocol.framing import Oversized, Packet, PacketDecoder
from .compression import Compressible
from .context import ClientContext, ClientHandle, UserLike
from .flow import FlowControl
from .lease import BackendLease

__all__ = ["ChangeUser", "Client"]


class ChangeUser(Protocol):
    """The part of the connection phase that local.py starts (COM_CHANGE_USER)."""

    def start_change_user(self, pkt: Packet) -> None: ...


class Client(ClientHandle, Compressible, Protocol):
    """One client connection: its parts, identity and state, and what may be asked of it."""

    # -- its parts and state
    @property
    def proxy(self) -> ClientContext: ...

    @property
    def state(self) -> ClientState: ...

    @property
    def session(self) -> ClientSession: ...

    @property
    def lease(self) -> BackendLease: ...

    @property
    def phase(self) -> ChangeUser: ...

    @property
    def flow(self) -> FlowControl: ...

    @property
    def decoder(self) -> PacketDecoder: ...

    @property
    def command(self) -> Command | None: ...

    @property
    def backend(self) -> BackendConnection | None: ...

    # -- its identity, once logged in
    @property
    def user(self) -> UserLike | None: ...

    @property
    def capabilities(self) -> int: ...

    @property
    def key(self) -> int: ...

    @property
    def charset(self) -> int: ...

    # -- what may be asked of it
    def set_state(self, new: ClientState) -> None: ...

    def run_task(self, coro: Coroutine[Any, Any, Any]) -> None: ...

    def on_unix_socket(self) -> bool: ...

    def logged_in(self, event: hs.Verified, capabilities: int) -> None: ...

    def bound_input_for_login(self) -> None: ...

    def bound_input_for_commands(self) -> None: ...

    def process_input(self) -> None: ...

    def handle_packet(self, pkt: Packet | Oversized) -> None: ...

    def backend_handed(self, backend: BackendConnection | None, exc: Exception | None) -> None: ...

    def send(self, backend: BackendConnection, pkt: Packet) -> None: ...

    def keeps_backend(self, backend: BackendConnection) -> bool: ...

    def back_to_ready(self, backend: BackendConnection | None = None) -> None: ...

    def send_error(self, last_seq: int, err: ProxyError) -> None: ...

    def send_ok(self, last_seq: int, info: bytes = b"",
                variables: list[tuple[bytes, bytes]] | None = None) -> None: ...

    def send_eof(self, last_seq: int) -> None: ...

    def out_of_order(self) -> None: ...

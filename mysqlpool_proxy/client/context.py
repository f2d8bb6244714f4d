"""What a client connection needs from the proxy around it: the port the proxy satisfies.

The client layer does not import the proxy; `Proxy` (proxy/proxy.py) is
handed to each client as a `ClientContext`. Everything a client asks of the
proxy is here: configuration and the loop, what the server told about
itself, the users and their pools, admission and refusals, the schema
check, the registry of clients (KILL names one by id), and background tasks.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from ..config import Config
from ..core.server_info import ServerInfo
from ..core.session import SessionState
from ..errors import ProxyError
from ..protocol import auth
from ..reasons import ClientCloseReason, RefusalReason

if TYPE_CHECKING:
    from ..backend.pool import Pool

__all__ = ["ClientContext", "ClientHandle", "UserLike", "ProxyStatsLike"]


class ClientHandle(Protocol):
    """What the proxy sees of a client through this port (ClientConnection is one)."""

    id: int
    peer: str
    connected_at: float

    @property
    def capabilities(self) -> int: ...  # what it negotiated with the proxy

    @property
    def pool(self) -> Pool | None: ...

    def close(self, reason: ClientCloseReason) -> None: ...

    def refuse_before_greeting(self, error: ProxyError) -> None: ...

    def evict_from_login(self) -> None: ...

    async def acquire_backend(self, deadline: float) -> Any: ...


class UserLike(Protocol):
    """A proxy user: its name, its credentials and the pool of its backend account."""

    name: str
    credentials: auth.Credentials
    pool: Pool


class ProxyStatsLike(Protocol):
    bytes_in: int
    bytes_out: int
    refused: Counter[str]


class ClientContext(Protocol):
    config: Config
    loop: asyncio.AbstractEventLoop
    server_info: ServerInfo | None
    server_known: asyncio.Event
    tls_context: ssl.SSLContext | None

    @property
    def stats(self) -> ProxyStatsLike: ...  # read-only here: the proxy's own ProxyStats

    @property
    def max_packet_size(self) -> int: ...

    @property
    def rsa_keys(self) -> auth.RsaKeys: ...

    @property
    def session_mode(self) -> bool: ...

    # -- users, pools, sessions
    def lookup_credentials(self, user: bytes) -> auth.Credentials | None: ...

    def user_entry(self, user: bytes) -> UserLike: ...

    def pool_key(self, capabilities: int) -> int: ...

    def initial_session(self, charset_id: int, capabilities: int, schema: bytes | None,
                        multi_statements: bool | None = None) -> SessionState: ...

    def schema_known(self, entry: UserLike, schema: bytes) -> bool: ...

    async def check_schema(self, client: ClientHandle, schema: bytes | None) -> ProxyError | None: ...

    # -- admission and refusals
    def admit(self, client: ClientHandle) -> ProxyError | None: ...

    def client_verified(self, client: ClientHandle) -> ProxyError | None: ...

    def client_authenticated(self, client: ClientHandle) -> None: ...

    def client_closed(self, client: ClientHandle, reason: ClientCloseReason) -> None: ...

    def client_by_id(self, client_id: int) -> Any: ...  # a ClientConnection (KILL names it)

    def refused(self, reason: RefusalReason, detail: str = "") -> None: ...

    def backend_refused(self, client: ClientHandle, error: ProxyError) -> None: ...

    def describe_backend_problem(self, pool: Pool | None = None) -> ProxyError: ...

    def backend_known_down(self, pool: Pool) -> bool: ...

    # -- background work
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

"""What a client connection needs from the proxy around it: the port the proxy satisfies.

The client layer does not import the proxy; `Proxy` (proxy/proxy.py) is
handed to each client as a `ClientContext`. Everything a client asks of the
proxy is here: configuration and the loop, what the server told about
itself, the users and their pools, admission and refusals, the schema
check, the registry of clients (KILL names one by id), and background tasks.

`ClientContext` is a base class that `Proxy` derives from, not a
typing.Protocol: compiled (mypyc), its attributes are read from the object's
struct and its methods called through a vtable, where a Protocol's members
are looked up by name at every use (docs/architecture.md "Compiled"). It
holds no behaviour: every method is the proxy's. The settings the command
path reads at every statement (`session_mode`, `ping_after`,
`query_timeout`) are plain attributes here, which the proxy sets whenever
its config is set; the rest is read from `config`.
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

__all__ = ["ClientContext", "ClientHandle", "UserLike", "ProxyStats"]


class ProxyStats:
    """The proxy's own counters (the pools' are PoolStats), bumped by clients and the proxy, read by
    ops/metrics.py at scrape time."""

    __slots__ = ("accepted", "refused", "client_closed", "bytes_in", "bytes_out")

    def __init__(self) -> None:
        self.accepted = 0
        self.refused: Counter[str] = Counter()
        self.client_closed: Counter[str] = Counter()
        self.bytes_in = 0
        self.bytes_out = 0


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


class ClientContext:
    """What a client needs of the proxy (Proxy): attributes it sets, methods it defines."""

    __slots__ = ()

    loop: asyncio.AbstractEventLoop
    server_info: ServerInfo | None
    server_known: asyncio.Event
    tls_context: ssl.SSLContext | None
    stats: ProxyStats
    # From the config, set with it (Proxy.config): read at every statement.
    session_mode: bool  # [pool] mode = "session"
    ping_after: float  # [pool] ping_after
    query_timeout: float  # [pool] query_timeout

    @property
    def config(self) -> Config:
        raise NotImplementedError

    @property
    def max_packet_size(self) -> int:
        raise NotImplementedError

    @property
    def rsa_keys(self) -> auth.RsaKeys:
        raise NotImplementedError

    # -- users, pools, sessions
    def lookup_credentials(self, user: bytes) -> auth.Credentials | None:
        raise NotImplementedError

    def user_entry(self, user: bytes) -> UserLike:
        raise NotImplementedError

    def pool_key(self, capabilities: int) -> int:
        raise NotImplementedError

    def initial_session(self, charset_id: int, capabilities: int, schema: bytes | None,
                        multi_statements: bool | None = None) -> SessionState:
        raise NotImplementedError

    def schema_known(self, entry: UserLike, schema: bytes) -> bool:
        raise NotImplementedError

    async def check_schema(self, client: ClientHandle, schema: bytes | None) -> ProxyError | None:
        raise NotImplementedError

    # -- admission and refusals
    def admit(self, client: ClientHandle) -> ProxyError | None:
        raise NotImplementedError

    def client_verified(self, client: ClientHandle) -> ProxyError | None:
        raise NotImplementedError

    def client_authenticated(self, client: ClientHandle) -> None:
        raise NotImplementedError

    def client_closed(self, client: ClientHandle, reason: ClientCloseReason) -> None:
        raise NotImplementedError

    def client_by_id(self, client_id: int) -> Any:  # a ClientConnection (KILL names it)
        raise NotImplementedError

    def refused(self, reason: RefusalReason, detail: str = "") -> None:
        raise NotImplementedError

    def backend_refused(self, client: ClientHandle, error: ProxyError) -> None:
        raise NotImplementedError

    def describe_backend_problem(self, pool: Pool | None = None) -> ProxyError:
        raise NotImplementedError

    def backend_known_down(self, pool: Pool) -> bool:
        raise NotImplementedError

    # -- background work
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        raise NotImplementedError

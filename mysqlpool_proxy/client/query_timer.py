"""[pool] query_timeout for one client: a statement that runs longer is stopped on the server.

`QueryTimer` owns the timer of the client's statement in flight. The client
connection starts it as a command goes to a backend (only when a timeout is
set) and cancels it when the response is done, the backend is lost or the
client closes. When it fires while that statement still runs on that
backend, the statement is killed with KILL QUERY from a side connection
(`commands.kill_running()`): the client gets the server's own error, and
keeps its backend and its session.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from ..backend import commands
from ..backend.connection import BackendConnection
from ..core.states import BackendState, ClientState
from ..logs import log_event
from .host import Client

__all__ = ["QueryTimer"]

log = logging.getLogger("mysqlpool.client")

_ACTIVE: Final = ClientState.ACTIVE
_BUSY: Final = BackendState.BUSY


class QueryTimer:
    __slots__ = ("_client", "handle")

    def __init__(self, client: Client) -> None:
        self._client = client
        self.handle: asyncio.TimerHandle | None = None  # set while a statement with a timeout runs

    def start(self, backend: BackendConnection, timeout: float) -> None:
        """The statement just sent to `backend` may run `timeout` seconds."""
        self.handle = self._client.proxy.loop.call_later(timeout, self._timed_out, backend)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _timed_out(self, backend: BackendConnection) -> None:
        """Stop the statement on the server (KILL QUERY from a side connection)."""
        self.handle = None
        client = self._client
        if client.state is _ACTIVE and client.lease.backend is backend and backend.state is _BUSY:
            log_event(log, "info", f"client #{client.id}: statement ran past query_timeout; killing it on backend "
                      f"thread {backend.thread_id}", client_id=client.id, pool=backend.pool.name,
                      thread_id=backend.thread_id)
            commands.kill_running(backend, client.proxy.config.backend.connect_timeout, client.proxy.spawn)

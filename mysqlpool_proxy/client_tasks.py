"""What runs on a client's behalf after a response or while it idles.

* after a statement that wrote user variables or LAST_INSERT_ID(expr): one
  hidden SELECT reads them back, so they can follow the client;
* after an error that may have changed the transaction state: a ping;
* for the janitor: keepalive pings of a held backend, the rollback of an
  idle transaction, giving back a backend held only by a soft pin.

Each runs as the client's LOCAL state: its next commands wait in the input
buffer until it is done.
"""

from __future__ import annotations

import logging

from .backend import BackendConnection, BackendGone
from .client_state import ClientState, IN_TRANS, ER_IDLE_TRANSACTION
from .errors import ProtocolError, ProxyError
from .protocol.response import Expect
from .reasons import BackendCloseReason, ClientCloseReason
from .protocol.rows import parse_text_result, sql_literal_for
from .protocol.sql import SqlEffects

__all__ = ["TasksMixin"]

log = logging.getLogger("mysqlpool.client")


class TasksMixin:
    """Methods of ClientConnection (no state of its own)."""

    __slots__ = ()

    async def _capture(self, backend: BackendConnection, fx: SqlEffects) -> None:
        """Learn what the statement left in user variables and LAST_INSERT_ID(), so they can
        follow this client to another backend (one hidden SELECT; its status settles IN_TRANS too)."""
        names = fx.user_vars_written
        columns = [b"LAST_INSERT_ID()"] + [b"@`" + n.replace(b"`", b"``") + b"`" for n in names]
        try:
            result = await self.proxy.run_hidden(backend, b"SELECT " + b", ".join(columns),
                                                 self.proxy.config.backend.connect_timeout, collect=True)
            self.status = result.status
            self._remember_captured(backend, result.data, names, fx.sets_insert_id)
        except ProxyError:
            self.pins.user_variables = True  # could not learn them: keep the backend that has them
        except (BackendGone, ProtocolError):
            pass
        finally:
            self._task = None
        self._back_to_ready(backend)

    def _remember_captured(self, backend: BackendConnection, data: bytes, names: list[bytes], insert_id: bool) -> None:
        columns, rows = parse_text_result(data)
        row = rows[0]
        if insert_id and row[0] is not None:
            self.last_insert_id = backend.last_insert_id = int(row[0])
        charsets = self.proxy.server_info.charset_names()
        user_vars = self.session.user_vars
        for name, column, value in zip(names, columns[1:], row[1:]):
            if value is None:
                user_vars.pop(name, None)
            else:
                user_vars[name] = sql_literal_for(column, value, charsets)
        backend.session.user_vars = dict(user_vars)

    async def _probe_status(self, backend: BackendConnection) -> None:
        try:
            result = await backend.run_internal(b"\x0e", Expect.SIMPLE, self.proxy.config.backend.connect_timeout)
            if result.error is None:
                self.status = result.status
        except BackendGone:
            pass
        finally:
            self._task = None
        self._back_to_ready(backend)

    def yield_soft_backend(self) -> bool:
        """Give back a backend held only for the last statement's diagnostics (others are waiting)."""
        backend = self.backend
        if (backend is None or self.state is not ClientState.READY or self.status & IN_TRANS
                or not self.pins.only_soft() or self.proxy.session_mode):
            return False
        self.pins.diagnostics = False
        self.backend = None
        backend.client = None
        backend.pool.release(backend)
        return True

    def keepalive_backend(self) -> None:
        """Ping the backend this idle client holds, before the server's wait_timeout ends it."""
        backend = self.backend
        self.set_state(ClientState.LOCAL)
        self._task = self.proxy.loop.create_task(self._keepalive(backend))

    async def _keepalive(self, backend: BackendConnection) -> None:
        try:
            result = await backend.run_internal(b"\x0e", Expect.SIMPLE, self.proxy.config.backend.connect_timeout)
            if result.error is None:
                backend.last_used = self.proxy.loop.time()
            else:
                backend.close(BackendCloseReason.PING_FAILED)
        except BackendGone:
            pass  # on_backend_lost has dealt with this client
        finally:
            self._task = None
        self._back_to_ready()

    def roll_back_idle_transaction(self, timeout: float) -> None:
        """[pool] idle_transaction_timeout: roll back, tell the client at its next statement, free the backend."""
        backend = self.backend
        log.info("client #%d idle in a transaction for %.0fs: rolling it back", self.id, timeout)
        self.set_state(ClientState.LOCAL)
        self._task = self.proxy.loop.create_task(self._roll_back(backend, timeout))

    async def _roll_back(self, backend: BackendConnection, timeout: float) -> None:
        err = ProxyError(ER_IDLE_TRANSACTION, (
            f"mysqlpool-proxy rolled back this connection's transaction: it was idle longer than "
            f"idle_transaction_timeout ({timeout:g}s)"), "40000")
        try:
            result = await backend.run_internal(b"\x03ROLLBACK", Expect.RESULT,
                                                self.proxy.config.backend.connect_timeout)
            if result.error is None:
                self.status = result.status
            else:
                backend.close(BackendCloseReason.DIRTY)
        except BackendGone:
            pass
        finally:
            self._task = None
        if self.state is ClientState.CLOSED:
            return
        if self.status & IN_TRANS or (self.backend is None and self.pins):
            # XA, or the state went with the backend: the session cannot go on.
            self.close(ClientCloseReason.IDLE_TIMEOUT)
            return
        self._pending_error = err
        self._back_to_ready(self.backend)

    def _back_to_ready(self, backend: BackendConnection | None = None) -> None:
        """A task run in the client's LOCAL state is over: keep or give back `backend`, go on."""
        if self.state is not ClientState.LOCAL:
            return  # closed meanwhile
        self.set_state(ClientState.READY)
        if backend is not None:
            self._decide_hold(backend)
        self._process_input()

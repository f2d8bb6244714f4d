"""The proxy's own commands on backend connections.

State sync steps (COM_SET_OPTION, COM_INIT_DB, SET), hidden queries,
re-preparing a client's statement, resetting a backend a client left with
state on it (COM_RESET_CONNECTION, then the trackers on again), and KILL
from a side connection. Each runs as the backend's INTERNAL state and
raises ProxyError when the server refuses it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .backend import BackendConnection, BackendGone, BackendState
from .backend_adapter import TRACKERS_SQL, run_side_query
from .constants import COM_RESET_CONNECTION, ER
from .errors import ProxyError
from .protocol.response import Expect
from .protocol.sql import without_schema
from .reasons import BackendCloseReason, ClientCloseReason
from .core.session import SessionState, SyncKind, SyncStep, apply_changes, sync_plan
from .core.statements import ServerStatement, prepared_state

if TYPE_CHECKING:
    from .client import ClientConnection

log = logging.getLogger("mysqlpool.proxy")

ER_NEED_REPREPARE = 1615

__all__ = ["BackendCommandsMixin"]


class BackendCommandsMixin:
    """Methods of Proxy."""

    async def run_sync_step(self, backend: BackendConnection, step: SyncStep, timeout: float) -> None:
        """One step of bringing a backend to a client's state; ProxyError if the server refuses it."""
        if step.kind is SyncKind.SET_OPTION:
            result = await backend.run_internal(b"\x1b" + step.arg, Expect.SIMPLE, timeout)
        elif step.kind is SyncKind.INIT_DB:
            result = await backend.run_internal(b"\x02" + step.arg, Expect.SIMPLE, timeout)
        else:
            result = await backend.run_internal(b"\x03" + step.arg, Expect.RESULT, timeout)
        if result.error is not None:
            err = result.error
            if step.kind is SyncKind.SET:
                # The server's own state is now unknown: never reuse it.
                backend.close(BackendCloseReason.RESET_FAILED)
            raise ProxyError(err.errno, err.message.decode("utf-8", "replace"), err.sqlstate)
        if step.kind is SyncKind.SET_OPTION:
            backend.session.multi_statements = step.arg[0] == 0
        elif step.kind is SyncKind.INIT_DB:
            backend.session.schema = step.arg
        else:
            apply_changes(backend.session, result.changes, None)

    async def run_hidden(self, backend: BackendConnection, sql: bytes, timeout: float, *, collect: bool = False):
        """A COM_QUERY of the proxy's own on `backend`; ProxyError if the server refuses it."""
        result = await backend.run_internal(b"\x03" + sql, Expect.RESULT, timeout, collect=collect)
        if result.error is not None:
            err = result.error
            raise ProxyError(err.errno, err.message.decode("utf-8", "replace"), err.sqlstate)
        return result

    async def prepare_on(self, backend: BackendConnection, stmt, timeout: float) -> None:
        """Prepare a client's statement on a backend that lacks it, hidden from the client, in the
        state the client prepared it in (the caller then brings the backend to the client's state).

        A schema cannot be unselected, so a statement prepared with no schema selected is
        prepared, on a backend with one, with DATABASE() replaced by NULL (what it read then),
        which is all that a schema selected at prepare time could change for it."""
        target = prepared_state(stmt, backend.session)
        sql = stmt.sql
        if target.schema is None and backend.session.schema is not None:
            target.schema = backend.session.schema
            sql = without_schema(sql)
        steps = sync_plan(backend.session, target)
        for step in steps:
            await self.run_sync_step(backend, step, timeout)
        backend.session = target
        result = await backend.run_internal(b"\x16" + sql, Expect.PREPARE, timeout)
        if result.error is not None and result.error.errno == ER.MAX_PREPARED_STMT_COUNT_REACHED \
                and backend.statements is not None:
            dropped = backend.statements.evict_idle()  # the server is at max_prepared_stmt_count: make room
            if dropped:
                backend.close_server_statements(dropped)
                result = await backend.run_internal(b"\x16" + sql, Expect.PREPARE, timeout)
        if result.error is not None:
            err = result.error
            raise ProxyError(err.errno, err.message.decode("utf-8", "replace"), err.sqlstate)
        server_id, columns, params, _ = result.prepare_ok
        server = ServerStatement(server_id, params, columns)
        if (params, columns) != (stmt.params, stmt.columns):
            backend.close_server_statements((server,))
            raise ProxyError(ER_NEED_REPREPARE, (
                f"Prepared statement needs to be re-prepared: it now has {params} parameters and {columns} "
                f"columns on the server, it had {stmt.params} and {stmt.columns} when prepared"))
        dropped = backend.statement_cache().put(stmt.key, server)
        if dropped:
            backend.close_server_statements(dropped)

    def reset_and_release(self, backend: BackendConnection) -> None:
        """Reset a backend a client left with state on it, in the background, then pool it."""
        task = self.loop.create_task(self.reset_backend_then_release(backend))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reset_backend_then_release(self, backend: BackendConnection) -> None:
        timeout = self.config.backend.connect_timeout
        try:
            result = await backend.run_internal(bytes((COM_RESET_CONNECTION,)), Expect.SIMPLE, timeout)
            if result.error is None:
                result = await backend.run_internal(b"\x03" + TRACKERS_SQL.encode(), Expect.RESULT, timeout)
        except BackendGone:
            return
        if result.error is not None:
            backend.close(BackendCloseReason.RESET_FAILED)
            return
        # After a reset the server keeps the schema and the multi-statements option,
        # and restores the connection's handshake character set.
        info = self.server_info
        backend.session = SessionState(backend.session.schema, dict(info.charset_vars),
                                       backend.session.multi_statements)
        if backend.statements is not None:
            backend.statements.clear()  # the reset closed every server statement
        backend.last_insert_id = 0
        backend.last_owner = None
        backend.pool.release(backend)

    async def kill_running_query(self, target: ClientConnection) -> None:
        backend = target.backend
        if backend is None or backend.state is not BackendState.BUSY:
            return
        await self._kill_query(backend)

    async def _kill_query(self, backend: BackendConnection) -> bool:
        try:
            await run_side_query(backend.pool.params, f"KILL QUERY {backend.thread_id}")
            return True
        except Exception as exc:  # the statement may have finished meanwhile; report, don't fail
            log.warning("KILL QUERY for backend thread %d failed: %s", backend.thread_id, exc)
            return False

    def kill_backend_query(self, backend: BackendConnection, hard_after: float) -> None:
        """Stop the statement running on `backend`; if it does not answer after that, drop it."""
        commands = backend.commands

        async def kill() -> None:
            await self._kill_query(backend)
            await asyncio.sleep(hard_after)
            if backend.state is BackendState.BUSY and backend.commands == commands:
                log.warning("backend thread %d did not answer after KILL QUERY; closing it", backend.thread_id)
                backend.close(BackendCloseReason.ERROR)

        self.spawn(kill())

    async def kill_client(self, target: ClientConnection) -> None:
        backend = target.backend
        if backend is not None and backend.state is BackendState.BUSY:
            try:
                await run_side_query(backend.pool.params, f"KILL {backend.thread_id}")
            except Exception as exc:
                log.warning("KILL for client #%d (backend thread %d) failed: %s", target.id, backend.thread_id, exc)
        target.close(ClientCloseReason.KILLED)

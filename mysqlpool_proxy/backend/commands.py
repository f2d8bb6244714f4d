"""The proxy's own commands on a backend connection, as functions of it.

State sync steps (COM_SET_OPTION, COM_INIT_DB, SET), hidden queries, a
client's statement prepared again on another backend, a ping, the reset of
a backend a client left with state on it (COM_RESET_CONNECTION, then the
trackers on again), and KILL QUERY from a short-lived side connection. Each
runs in the backend's INTERNAL state (BackendConnection.run_internal, which
bounds every wait) and raises ProxyError when the server refuses it, or
BackendGone when the backend dies under it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine

from ..constants import COM_RESET_CONNECTION, ER
from ..core.session import SyncKind, SyncStep, apply_changes, sync_plan
from ..core.statements import ClientStatement, ServerStatement, prepared_state
from ..core.states import BackendState
from ..errors import ProxyError
from ..protocol.response import Expect
from ..protocol.sql import without_schema
from ..reasons import BackendCloseReason
from .adapter import TRACKERS_SQL, run_side_query
from .connection import BackendConnection, BackendGone, InternalResult

__all__ = ["run_sync_step", "run_hidden", "ping", "prepare_on", "reset", "kill_query", "kill_running",
           "ER_NEED_REPREPARE"]

log = logging.getLogger("mysqlpool.backend")

ER_NEED_REPREPARE = 1615
_PING = b"\x0e"


def _refused(result: InternalResult) -> ProxyError:
    err = result.error
    assert err is not None
    return ProxyError(err.errno, err.message.decode("utf-8", "replace"), err.sqlstate)


async def run_sync_step(backend: BackendConnection, step: SyncStep, timeout: float) -> None:
    """One step of bringing a backend to a client's state; ProxyError if the server refuses it."""
    if step.kind is SyncKind.SET_OPTION:
        result = await backend.run_internal(b"\x1b" + step.arg, Expect.SIMPLE, timeout)
    elif step.kind is SyncKind.INIT_DB:
        result = await backend.run_internal(b"\x02" + step.arg, Expect.SIMPLE, timeout)
    else:
        result = await backend.run_internal(b"\x03" + step.arg, Expect.RESULT, timeout)
    if result.error is not None:
        if step.kind is SyncKind.SET:
            backend.close(BackendCloseReason.RESET_FAILED)  # its state is unknown now: never reuse it
        raise _refused(result)
    if step.kind is SyncKind.SET_OPTION:
        backend.session.multi_statements = step.arg[0] == 0
    elif step.kind is SyncKind.INIT_DB:
        backend.session.schema = step.arg
    else:
        apply_changes(backend.session, result.changes, None)


async def run_hidden(backend: BackendConnection, sql: bytes, timeout: float, *,
                     collect: bool = False) -> InternalResult:
    """A COM_QUERY of the proxy's own on `backend`; ProxyError if the server refuses it."""
    result = await backend.run_internal(b"\x03" + sql, Expect.RESULT, timeout, collect=collect)
    if result.error is not None:
        raise _refused(result)
    return result


async def ping(backend: BackendConnection, timeout: float) -> InternalResult:
    """COM_PING; a backend that answers with an error is closed (BackendGone raised either way)."""
    result = await backend.run_internal(_PING, Expect.SIMPLE, timeout)
    if result.error is not None:
        backend.close(BackendCloseReason.PING_FAILED)
        raise BackendGone(BackendCloseReason.PING_FAILED)
    backend.last_used = backend.loop.time()
    return result


async def prepare_on(backend: BackendConnection, stmt: ClientStatement, timeout: float) -> None:
    """Prepare a client's statement on a backend that lacks it, hidden from the client, in the state
    the client prepared it in (the caller then brings the backend to the client's state).

    A schema cannot be unselected, so a statement prepared with no schema selected is prepared, on a
    backend with one, with DATABASE() replaced by NULL (what it read then), which is all that a schema
    selected at prepare time could change for it. A server at max_prepared_stmt_count (1461) gets the
    backend's idle cached statements closed, and the prepare is tried once more."""
    target = prepared_state(stmt, backend.session)
    sql = stmt.sql
    if target.schema is None and backend.session.schema is not None:
        target.schema = backend.session.schema
        sql = without_schema(sql)
    for step in sync_plan(backend.session, target):
        await run_sync_step(backend, step, timeout)
    backend.session = target
    result = await backend.run_internal(b"\x16" + sql, Expect.PREPARE, timeout)
    if result.error is not None and result.error.errno == ER.MAX_PREPARED_STMT_COUNT_REACHED \
            and backend.statements is not None:
        dropped = backend.statements.evict_idle()
        if dropped:
            backend.close_server_statements(dropped)
            result = await backend.run_internal(b"\x16" + sql, Expect.PREPARE, timeout)
    if result.error is not None:
        raise _refused(result)
    assert result.prepare_ok is not None
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


async def reset(backend: BackendConnection, timeout: float) -> bool:
    """COM_RESET_CONNECTION, then the proxy's trackers on again: the backend holds nothing of any
    client. False (and the backend closed) if the server refused."""
    try:
        result = await backend.run_internal(bytes((COM_RESET_CONNECTION,)), Expect.SIMPLE, timeout)
        if result.error is None:
            result = await backend.run_internal(b"\x03" + TRACKERS_SQL.encode(), Expect.RESULT, timeout)
    except BackendGone:
        return False
    if result.error is not None:
        backend.close(BackendCloseReason.RESET_FAILED)
        return False
    backend.after_reset()
    return True


async def kill_query(backend: BackendConnection, *, what: str = "QUERY") -> bool:
    """KILL QUERY (or KILL, with what="") of the backend's thread, from a side connection."""
    statement = f"KILL {what} {backend.thread_id}".replace("  ", " ")
    try:
        await run_side_query(backend.pool.params, statement)
        return True
    except Exception as exc:  # the statement may have finished meanwhile: report, don't fail
        log.warning("%s for backend thread %d failed: %s", statement, backend.thread_id, exc)
        return False


def kill_running(backend: BackendConnection, hard_after: float,
                 spawn: Callable[[Coroutine[object, object, None]], object]) -> None:
    """Stop the statement running on `backend` ([pool] query_timeout); a backend that does not
    answer `hard_after` seconds later is closed."""
    commands = backend.commands

    async def kill() -> None:
        await kill_query(backend)
        await asyncio.sleep(hard_after)
        if backend.state is BackendState.BUSY and backend.commands == commands:
            log.warning("backend thread %d did not answer after KILL QUERY; closing it", backend.thread_id)
            backend.close(BackendCloseReason.ERROR)

    spawn(kill())

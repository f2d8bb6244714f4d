"""The slow path of a command: wait for a backend, bring it to the client's state.

Waiting costs no task: the client takes a place in the pool's FIFO
(`wait_for_backend`, through its lease) and goes on in a loop callback when
it is handed a backend or refused (`handed`). A task runs only when the
backend must first be prepared (`start`): a ping of a backend idle past
ping_after, the SET / COM_INIT_DB / COM_SET_OPTION that sync session state,
a hidden re-prepare, the client's LAST_INSERT_ID() or neutral diagnostics.
A backend found dead on the way is replaced silently unless the client's
transaction or pinned state was on it.

A waiting client can be handed its error before its deadline, when the proxy
knows no backend can be had (the server refuses the proxy's login, or has
been down longer than checkout_timeout: see proxy/refusals.py) and the
pool's next attempt failed. A wait that runs out, or a full queue, while the
pool's connects fail gets the connect error (2003, or the backend login's)
rather than 1040: the pool was short because the server could not be
reached, not because it was busy.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from ..backend import commands
from ..backend.connection import BackendConnection, BackendGone
from ..backend.pool import CAPACITY_ERRORS, CheckoutTimeout, QueueFull
from ..constants import ER
from ..core.session import SyncImpossible, sync_plan
from ..core.states import BackendState, ClientState
from ..errors import ProxyError
from ..protocol.framing import Packet
from ..protocol.sql import NO_EFFECTS, SqlEffects
from ..reasons import BackendCloseReason, RefusalReason
from . import followups
from .constants import ER_LOST_BACKEND, NEUTRAL_DIAGNOSTICS

if TYPE_CHECKING:
    from .host import Client

__all__ = ["wait_for_backend", "start", "acquire", "needs_preparation", "identity_differs"]

log = logging.getLogger("mysqlpool.client")

# The states a waiting client moves through, as module globals: on Python 3.11 reading
# `ClientState.READY` runs EnumType's __getattr__ hook, ~20 times a global's cost.
_CHECKOUT: Final = ClientState.CHECKOUT
_READY: Final = ClientState.READY
_CLOSED: Final = ClientState.CLOSED
_RESERVED: Final = BackendState.RESERVED


def identity_differs(client: Client, backend: BackendConnection, fx: SqlEffects) -> bool:
    """Would this statement read another LAST_INSERT_ID() or diagnostics than this client's own?"""
    if fx.reads_insert_id and backend.last_insert_id != client.session.last_insert_id:
        return True
    return fx.reads_diagnostics and backend.last_owner != (client.id, client.session.queries)


def needs_preparation(client: Client, backend: BackendConnection, now: float) -> bool:
    """Must something run on `backend` before the command in flight (sync, re-prepare, ping), `now`?"""
    command = client.command
    assert command is not None
    if not backend.session.same_as(client.session.state):
        return True
    if command.stmt is not None and not backend.has_statement(command.stmt.key):
        return True
    fx = command.effects
    if fx is not None and fx is not NO_EFFECTS and identity_differs(client, backend, fx):
        return True
    return now - backend.last_used > client.proxy.ping_after


def start(client: Client, pkt: Packet, deadline: float | None = None) -> None:
    """Prepare a backend for the command in flight (a task), then send it."""
    if client.state is not _CHECKOUT:
        client.set_state(_CHECKOUT)
    client.run_task(_checkout(client, pkt, deadline))


def wait_for_backend(client: Client, pkt: Packet) -> None:
    """No idle backend for a client that holds none: queue for one, without a task."""
    pool = client.pool
    assert pool is not None
    client.set_state(_CHECKOUT)
    try:
        client.lease.wait(pool, client.key, client.proxy.config.pool.checkout_timeout, client.backend_handed,
                          pkt, client.session.state.schema is None)
    except QueueFull as exc:
        client.set_state(_READY)
        client.send_error(pkt.last_seq, _refused(client, exc))


def handed(client: Client, backend: BackendConnection | None, exc: Exception | None) -> None:
    """The pool answered the client's wait (in a loop callback, not inside whatever released the backend)."""
    waiting = client.lease.handed()
    if client.state is not _CHECKOUT or waiting is None:  # closed while it waited
        if backend is not None:
            backend.pool.give_back(backend)
        return
    pkt, deadline = waiting
    if exc is not None:
        client.set_state(_READY)
        client.send_error(pkt.last_seq, _refused(client, exc))
        client.process_input()
        return
    assert backend is not None
    client.lease.take(backend)
    if backend.closed or needs_preparation(client, backend, client.proxy.loop.time()):
        start(client, pkt, deadline)
        return
    client.set_state(_READY)
    client.send(backend, pkt)
    if client.state is _READY:
        client.process_input()


async def _checkout(client: Client, pkt: Packet, deadline: float | None) -> None:
    try:
        backend = await _prepared_backend(client, deadline)
    except ProxyError as err:
        if client.state is _CLOSED:
            return
        client.set_state(_READY)
        held = client.lease.backend
        if held is not None and held.state is _RESERVED:
            # e.g. its schema is gone: the backend is not its to keep
            client.lease.hold_or_release(held, client.keeps_backend(held))
        client.send_error(pkt.last_seq, err)
        client.process_input()
        return
    except asyncio.CancelledError:
        return
    if client.state is _CLOSED:  # (it closed while its backend was being prepared)
        client.lease.leave(client.session.holds_state(), client.proxy.config.backend.connect_timeout,
                           client.proxy.spawn)
        return
    client.set_state(_READY)
    client.send(backend, pkt)
    if client.state is _READY:
        client.process_input()


async def _prepared_backend(client: Client, deadline: float | None) -> BackendConnection:
    """A backend in this client's session state; retries silently past dead ones."""
    proxy = client.proxy
    if deadline is None:
        deadline = proxy.loop.time() + proxy.config.pool.checkout_timeout
    lease = client.lease
    while True:
        backend = lease.backend
        if backend is None or backend.closed:
            if backend is not None:
                lease.drop()
                if client.session.holds_state():
                    raise ProxyError(ER_LOST_BACKEND, "Lost connection to backend; the transaction was rolled back")
            backend = lease.take(await acquire(client, deadline))
        try:
            await _bring_to_state(client, backend, deadline)
            return backend
        except BackendGone:
            if client.session.holds_state():
                lease.drop()
                raise ProxyError(ER_LOST_BACKEND,
                                 "Lost connection to backend; the transaction was rolled back") from None
            continue  # a dead pooled backend: quietly take another


async def acquire(client: Client, deadline: float) -> BackendConnection:
    """A backend of the client's pool (FIFO), waiting up to `deadline`; ProxyError when refused."""
    pool = client.pool
    assert pool is not None
    remaining = max(0.0, deadline - client.proxy.loop.time())
    try:
        return await pool.acquire(client.key, remaining, client.session.state.schema is None)
    except (QueueFull, CheckoutTimeout, ProxyError) as exc:
        raise _refused(client, exc) from None


def _refused(client: Client, exc: Exception) -> ProxyError:
    """The error a client gets for want of a backend (counted, logged): the proxy's, when it knew
    the server could not be had (`exc` is then a ProxyError) or the pool's connects fail; else
    the 1040 of a full queue or of a wait that ran out."""
    proxy = client.proxy
    pool = client.pool
    assert pool is not None
    if not isinstance(exc, ProxyError) and pool.failing and pool.last_error_code not in CAPACITY_ERRORS \
            and not pool.shut_down:
        exc = proxy.describe_backend_problem(pool)
    if isinstance(exc, ProxyError):
        proxy.backend_refused(client, exc)
        return exc
    if isinstance(exc, QueueFull):
        proxy.refused(RefusalReason.QUEUE_FULL, f"pool {pool.name}: {len(pool.waiters)} clients waiting")
        return ProxyError(ER.CON_COUNT_ERROR, (
            f"Too many connections: mysqlpool-proxy pool '{pool.name}' already has {len(pool.waiters)} clients "
            f"waiting for a backend connection (max_waiting_clients {pool.max_waiting}); try again later"))
    assert isinstance(exc, CheckoutTimeout), exc
    proxy.refused(RefusalReason.CHECKOUT_TIMEOUT, f"pool {pool.name} after {exc.waited:.1f}s ({exc})")
    return ProxyError(ER.CON_COUNT_ERROR, (
        f"Too many connections: mysqlpool-proxy pool '{pool.name}' had no free backend connection after "
        f"waiting {exc.waited:.1f}s ({exc}); try again later"))


async def _bring_to_state(client: Client, backend: BackendConnection, deadline: float) -> None:
    proxy = client.proxy
    timeout = max(0.5, min(proxy.config.backend.connect_timeout, deadline - proxy.loop.time()))
    if backend.report_held:  # (the client's own backend, held for its transaction)
        await followups.fetch_held_report(client, backend, None)
    if proxy.loop.time() - backend.last_used > proxy.ping_after:
        await commands.ping(backend, timeout)
    command = client.command
    assert command is not None
    stmt = command.stmt
    try:
        if stmt is not None and not backend.has_statement(stmt.key):
            await commands.prepare_on(backend, stmt, timeout)
        steps = sync_plan(backend.session, client.session.state)
    except SyncImpossible:
        # A schema cannot be unselected: this backend cannot be brought to the state of a client
        # with no schema. Exchange it for another (a client holding a backend never gets here: the
        # backend is in its state).
        backend.close(BackendCloseReason.RECLAIMED)
        raise BackendGone(BackendCloseReason.RECLAIMED) from None
    for step in steps:
        await commands.run_sync_step(backend, step, timeout)
    if steps:
        backend.session = client.session.state.copy()
        backend.last_owner = None
    await _bring_identity(client, backend, timeout)


async def _bring_identity(client: Client, backend: BackendConnection, timeout: float) -> None:
    """Before a statement that reads LAST_INSERT_ID() or the last statement's diagnostics: give the
    backend this client's insert id; and if the diagnostics there are not this client's own, replace
    them by the proxy's own neutral ones (never another client's)."""
    command = client.command
    fx = command.effects if command is not None else None
    if fx is None:
        return
    session = client.session
    if fx.reads_insert_id and backend.last_insert_id != session.last_insert_id:
        await commands.run_hidden(backend, b"SELECT LAST_INSERT_ID(%d)" % session.last_insert_id, timeout)
        backend.last_insert_id = session.last_insert_id
    own = (client.id, session.queries)
    if fx.reads_diagnostics and backend.last_owner != own:
        await commands.run_hidden(backend, NEUTRAL_DIAGNOSTICS, timeout)
        backend.last_owner = own


"""The slow path of a command: wait for a backend, bring it to the client's state.

Waiting costs no task: the client takes a place in the pool's FIFO
(`_wait_for_backend`) and goes on in a loop callback when it is handed a
backend or refused (`_handed`). A task runs only when the backend must first
be prepared: a ping of a backend idle past ping_after, the
SET/COM_INIT_DB/COM_SET_OPTION that sync session state, a hidden re-prepare,
the client's LAST_INSERT_ID() or neutral diagnostics. A backend found dead
on the way is replaced silently unless the client's transaction or pinned
state was on it.

A waiting client can be handed its error before its deadline, when the proxy
knows no backend can be had (the server refuses the proxy's login, or has
been down longer than checkout_timeout: see proxy_refusals.py) and the pool's
next attempt failed. A wait that runs out, or a full queue, while the pool's
connects fail gets the connect error (2003, or the backend login's) rather
than 1040: the pool was short because the server could not be reached, not
because it was busy.
"""

from __future__ import annotations

import asyncio
import logging

from .backend import BackendConnection, BackendGone, BackendState
from .client_state import ClientState, ER_LOST_BACKEND, NEUTRAL_DIAGNOSTICS
from .constants import ER
from .errors import ProxyError
from .pool import CAPACITY_ERRORS, CheckoutTimeout, QueueFull
from .protocol.framing import Packet
from .protocol.response import Expect
from .reasons import BackendCloseReason, RefusalReason
from .core.session import SyncImpossible, sync_plan

__all__ = ["CheckoutMixin"]

log = logging.getLogger("mysqlpool.client")


class CheckoutMixin:
    """Methods of ClientConnection (no state of its own)."""

    __slots__ = ()

    def _start_checkout(self, pkt: Packet) -> None:
        self.set_state(ClientState.CHECKOUT)
        self._task = self.proxy.loop.create_task(self._checkout(pkt))

    def _wait_for_backend(self, pkt: Packet) -> None:
        """No idle backend for a client that holds none: queue for one, without a task."""
        timeout = self.proxy.config.pool.checkout_timeout
        self.set_state(ClientState.CHECKOUT)
        self._waiting = (pkt, self.proxy.loop.time() + timeout)
        try:
            self._waiter = self.pool.enqueue(self.key, timeout, self._deliver, self.session.schema is None)
        except QueueFull as exc:
            self._waiting = None
            self.set_state(ClientState.READY)
            self.send_error(pkt.last_seq, self._refused_checkout(exc))

    def _deliver(self, backend: BackendConnection | None, exc: Exception | None) -> None:
        # Called by the pool, inside whatever released the backend: go on from the loop.
        self.proxy.loop.call_soon(self._handed, backend, exc)

    def _handed(self, backend: BackendConnection | None, exc: Exception | None) -> None:
        self._waiter = None
        waiting, self._waiting = self._waiting, None
        if self.state is not ClientState.CHECKOUT or waiting is None:  # closed while it waited
            if backend is not None:
                backend.pool.give_back(backend)
            return
        pkt, deadline = waiting
        if exc is not None:
            self.set_state(ClientState.READY)
            self.send_error(pkt.last_seq, self._refused_checkout(exc))
            self._process_input()
            return
        self.backend = backend
        backend.client = self
        if backend.closed or self._needs_preparation(backend):
            self._task = self.proxy.loop.create_task(self._checkout(pkt, deadline))
            return
        self.set_state(ClientState.READY)
        self._send(backend, self._cmd, pkt)
        if self.state is ClientState.READY:
            self._process_input()

    async def _checkout(self, pkt: Packet, deadline: float | None = None) -> None:
        spec = self._cmd
        try:
            backend = await self._prepared_backend(deadline)
        except ProxyError as err:
            self._task = None
            if self.state is ClientState.CLOSED:
                return
            self.set_state(ClientState.READY)
            backend = self.backend
            if backend is not None and backend.state is BackendState.RESERVED:
                self._decide_hold(backend)  # e.g. its schema is gone: the backend is not its to keep
            self.send_error(pkt.last_seq, err)
            self._process_input()
            return
        except asyncio.CancelledError:
            return
        self._task = None
        if self.state is ClientState.CLOSED:
            self._leave_backend()
            return
        self.set_state(ClientState.READY)
        self._send(backend, spec, pkt)
        if self.state is ClientState.READY:
            self._process_input()

    async def _prepared_backend(self, deadline: float | None = None) -> BackendConnection:
        """A backend in this client's session state; retries silently past dead ones."""
        if deadline is None:
            deadline = self.proxy.loop.time() + self.proxy.config.pool.checkout_timeout
        while True:
            backend = self.backend
            if backend is None or backend.closed:
                if backend is not None:
                    self.backend = None
                    if self.holds_state():
                        raise ProxyError(ER_LOST_BACKEND, "Lost connection to backend; the transaction was rolled back")
                backend = await self._acquire(deadline)
                self.backend = backend
                backend.client = self
            try:
                await self._bring_to_state(backend, deadline)
                return backend
            except BackendGone:
                if self.holds_state():
                    self.backend = None
                    raise ProxyError(ER_LOST_BACKEND, "Lost connection to backend; the transaction was rolled back")
                continue  # a dead pooled backend: quietly take another

    async def _acquire(self, deadline: float) -> BackendConnection:
        remaining = max(0.0, deadline - self.proxy.loop.time())
        try:
            return await self.pool.acquire(self.key, remaining, self.session.schema is None)
        except (QueueFull, CheckoutTimeout, ProxyError) as exc:
            raise self._refused_checkout(exc) from None

    def _refused_checkout(self, exc: Exception) -> ProxyError:
        """The error a client gets for want of a backend (counted, logged): the proxy's, when it knew
        the server could not be had (`exc` is then a ProxyError) or the pool's connects fail; else
        the 1040 of a full queue or of a wait that ran out."""
        pool = self.pool
        if not isinstance(exc, ProxyError) and pool.failing and pool.last_error_code not in CAPACITY_ERRORS \
                and not pool.shut_down:
            exc = self.proxy.describe_backend_problem(pool)
        if isinstance(exc, ProxyError):
            self.proxy.backend_refused(self, exc)
            return exc
        if isinstance(exc, QueueFull):
            self.proxy.refused(RefusalReason.QUEUE_FULL, f"pool {pool.name}: {len(pool.waiters)} clients waiting")
            return ProxyError(ER.CON_COUNT_ERROR, (
                f"Too many connections: mysqlpool-proxy pool '{pool.name}' already has {len(pool.waiters)} clients "
                f"waiting for a backend connection (max_waiting_clients {pool.max_waiting}); try again later"))
        assert isinstance(exc, CheckoutTimeout), exc
        self.proxy.refused(RefusalReason.CHECKOUT_TIMEOUT, f"pool {pool.name} after {exc.waited:.1f}s ({exc})")
        return ProxyError(ER.CON_COUNT_ERROR, (
            f"Too many connections: mysqlpool-proxy pool '{pool.name}' had no free backend connection after "
            f"waiting {exc.waited:.1f}s ({exc}); try again later"))

    async def _bring_to_state(self, backend: BackendConnection, deadline: float) -> None:
        timeout = max(0.5, min(self.proxy.config.backend.connect_timeout, deadline - self.proxy.loop.time()))
        if self.proxy.loop.time() - backend.last_used > self.proxy.config.pool.ping_after:
            result = await backend.run_internal(b"\x0e", Expect.SIMPLE, timeout)
            if result.error is not None:
                backend.close(BackendCloseReason.PING_FAILED)
                raise BackendGone(BackendCloseReason.PING_FAILED)
            backend.last_used = self.proxy.loop.time()
        stmt = self._stmt
        try:
            if stmt is not None and not backend.has_statement(stmt.key):
                await self.proxy.prepare_on(backend, stmt, timeout)
            steps = sync_plan(backend.session, self.session)
        except SyncImpossible:
            # A schema cannot be unselected: this backend cannot be brought to the state of a
            # client with no schema. Exchange it for another (a client holding a backend never
            # gets here: the backend is in its state).
            backend.close(BackendCloseReason.RECLAIMED)
            raise BackendGone(BackendCloseReason.RECLAIMED)
        for step in steps:
            await self.proxy.run_sync_step(backend, step, timeout)
        if steps:
            backend.session = self.session.copy()
            backend.last_owner = None
        await self._bring_identity(backend, timeout)

    async def _bring_identity(self, backend: BackendConnection, timeout: float) -> None:
        """Before a statement that reads LAST_INSERT_ID() or the last statement's diagnostics:
        give the backend this client's insert id; and if the diagnostics there are not this
        client's own, replace them by the proxy's own neutral ones (never another client's)."""
        fx = self._effects
        if fx is None:
            return
        if fx.reads_insert_id and backend.last_insert_id != self.last_insert_id:
            await self.proxy.run_hidden(backend, b"SELECT LAST_INSERT_ID(%d)" % self.last_insert_id, timeout)
            backend.last_insert_id = self.last_insert_id
        own = (self.id, self.queries)
        if fx.reads_diagnostics and backend.last_owner != own:
            await self.proxy.run_hidden(backend, NEUTRAL_DIAGNOSTICS, timeout)
            backend.last_owner = own

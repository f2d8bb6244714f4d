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
from .client_state import ClientState, ER_IDLE_TRANSACTION
from .errors import ProtocolError, ProxyError
from .protocol.response import Expect
from .reasons import BackendCloseReason, ClientCloseReason
from .core.capture import CHARSET_VARIABLES, Capture
from .protocol.rows import parse_text_result
from .protocol.session_track import Trackers
from .core.session import apply_changes

__all__ = ["TasksMixin"]

# The server sends a held-back tracker report with the next OK that has tracker data
# of its own (not with a bare OK such as DO's): set a variable the proxy owns anyway.
FLUSH_TRACKERS = b"SET SESSION session_track_schema = ON"

log = logging.getLogger("mysqlpool.client")


class TasksMixin:
    """Methods of ClientConnection (no state of its own)."""

    __slots__ = ()

    async def _follow_up(self, backend: BackendConnection, flush: bool, capture: Capture, probe: bool) -> None:
        """Hidden statements on the client's behalf after its response (see capture.py):
        fetch the tracker report an EOF could not carry, read back state, settle the status."""
        timeout = self.proxy.config.backend.connect_timeout
        try:
            if flush:
                result = await self.proxy.run_hidden(backend, FLUSH_TRACKERS, timeout)
                self._apply_flushed(backend, result.changes, capture)
            if capture:
                result = await self.proxy.run_hidden(backend, capture.sql(), timeout, collect=True)
                self.learn_status(result.status)
                columns, rows = parse_text_result(result.data)
                insert_id = capture.apply(columns, rows[0], self.session)
                if capture.tracker_settings:
                    self.trackers = Trackers.from_settings(capture.tracker_settings)
                if insert_id is not None:
                    self.last_insert_id = backend.last_insert_id = insert_id
                backend.session = self.session.copy()
            elif probe:
                result = await backend.run_internal(b"\x0e", Expect.SIMPLE, timeout)
                if result.error is None:
                    self.learn_status(result.status)
        except ProxyError as err:
            # The state could not be read back: keep the backend that has it.
            log.warning("client #%d: reading back session state failed (%s); it stays on its backend",
                        self.id, err)
            self.pins.user_variables = self.pins.user_variables or bool(capture.user_vars)
            self.pins.unknown_state = self.pins.unknown_state or bool(capture.sysvars)
        except (BackendGone, ProtocolError):
            pass
        finally:
            self._task = None
        self._back_to_ready(backend)

    def _apply_flushed(self, backend: BackendConnection, changes, capture: Capture) -> None:
        """The client's own statement's tracker report, delivered late: apply it as the client's."""
        if changes is None:
            return
        apply_changes(self.session, changes, None)
        apply_changes(backend.session, changes, None)
        if any(name in CHARSET_VARIABLES for name, _ in changes.variables):
            capture.add_sysvars(CHARSET_VARIABLES)
        # The flag "state changed" in this report is the flush's own SET's: what came from the
        # client's statement is the rest (variables, applied above; a transaction state). Only a
        # schema report is left to account for (it is when a prepared statement was executed).
        fx = self._effects
        explained = (changes.schema is None or bool(fx is not None and fx.any)
                     or self.state_change_explained(changes))
        self.pins.apply_tracker(changes, explained)

    def yield_soft_backend(self) -> bool:
        """Give back a backend held only for the last statement's diagnostics (others are waiting)."""
        backend = self.backend
        if (backend is None or self.state is not ClientState.READY or self.trx_open
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
                self.reset_transaction(result.status)
            else:
                backend.close(BackendCloseReason.DIRTY)
        except BackendGone:
            pass
        finally:
            self._task = None
        if self.state is ClientState.CLOSED:
            return
        if self.trx_open or (self.backend is None and self.pins):
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

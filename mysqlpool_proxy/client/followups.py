"""What runs on a client's behalf after a response, or while it idles.

* after a statement that wrote user variables or LAST_INSERT_ID(expr), or
  changed character set or tracker settings: hidden statements read the
  state back, so that it can follow the client (`run`, see core/capture.py);
* a tracker report the server holds back (an EOF could not carry it), before
  the backend may leave the client or the proxy's own statements run there
  (the next OK with a report of its own would bring it): fetched with a
  hidden SET. While the client keeps the backend for its transaction, the
  report waits for the transaction's next OK instead
  (ClientSession.may_leave_report_held): no statement of the proxy's;
* after an error that may have changed the transaction state: a ping;
* for the janitor: a keepalive ping of a held backend, and the rollback of
  an idle transaction.

Each runs in the client's LOCAL state: its next commands wait in the input
buffer until it is done.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..backend import commands
from ..backend.connection import BackendConnection, BackendGone
from ..core.capture import Capture
from ..core.client_session import Command, FollowUp
from ..core.session import apply_changes
from ..core.states import ClientState
from ..errors import ProtocolError, ProxyError
from ..logs import log_event
from ..protocol.response import Expect
from ..protocol.rows import parse_text_result
from ..protocol.session_track import Trackers
from ..reasons import BackendCloseReason, ClientCloseReason
from .constants import ER_IDLE_TRANSACTION

if TYPE_CHECKING:
    from .host import Client

__all__ = ["run", "fetch_report_only", "fetch_held_report", "keepalive", "roll_back_idle_transaction"]

# The server sends a held-back tracker report with the next OK that has tracker data
# of its own (not with a bare OK such as DO's): set a variable the proxy owns anyway.
FLUSH_TRACKERS = b"SET SESSION session_track_schema = ON"

log = logging.getLogger("mysqlpool.client")


async def run(client: Client, backend: BackendConnection, command: Command, follow_up: FollowUp) -> None:
    """Hidden statements on the client's behalf after its response: fetch the tracker report the server
    holds back, read back state, settle the status. Then the client goes on."""
    try:
        await _settle(client, backend, command, follow_up)
    except (BackendGone, ProtocolError):
        pass
    client.back_to_ready(backend)


def fetch_report_only(client: Client) -> FollowUp:
    """The follow-up that only fetches the tracker report the backend holds back (and reads back what
    that report says moved, if anything)."""
    info = client.proxy.server_info
    assert info is not None
    return FollowUp(Capture(collations=info.collations), probe=False)


async def fetch_held_report(client: Client, backend: BackendConnection, command: Command | None) -> None:
    """Before the proxy's own commands run on the backend the client holds: fetch the report the server
    holds back there, which their OK would otherwise bring unseen. BackendGone if the backend died."""
    try:
        await _settle(client, backend, command, fetch_report_only(client))
    except ProtocolError:
        backend.close(BackendCloseReason.ERROR)
        raise BackendGone(BackendCloseReason.ERROR) from None


async def _settle(client: Client, backend: BackendConnection, command: Command | None, follow_up: FollowUp) -> None:
    session = client.session
    capture = follow_up.capture
    timeout = client.proxy.config.backend.connect_timeout
    try:
        if backend.report_held:
            result = await commands.run_hidden(backend, FLUSH_TRACKERS, timeout)
            if result.changes is not None:
                session.explain_flushed(command, result.changes, capture)
                apply_changes(backend.session, result.changes, None)
        if capture:
            result = await commands.run_hidden(backend, capture.sql(), timeout, collect=True)
            session.learn_status(result.status)
            columns, rows = parse_text_result(result.data, backend.extended_metadata)
            insert_id = capture.apply(columns, rows[0], session.state)
            if capture.unreplayable:
                log.info("client #%d: user variable(s) %s hold bytes not valid in their character set: "
                         "the client stays on its backend", client.id,
                         ", ".join("@" + name.decode("utf-8", "replace") for name in capture.unreplayable))
                _pin(client, user_variables=True)
            if capture.tracker_settings:
                session.trackers = Trackers.from_settings(capture.tracker_settings)
            if insert_id is not None:
                session.last_insert_id = backend.last_insert_id = insert_id
            backend.session = session.state.copy()
        elif follow_up.probe:
            result = await backend.run_internal(b"\x0e", Expect.SIMPLE, timeout)
            if result.error is None:
                session.learn_status(result.status)
    except ProxyError as err:
        # The state could not be read back: keep the backend that has it.
        log_event(log, "warning", f"client #{client.id}: reading back session state failed ({err}); it stays on its "
                  "backend", client_id=client.id, code=err.errno)
        _pin(client, user_variables=bool(capture.user_vars), unknown_state=bool(capture.sysvars))


def _pin(client: Client, *, user_variables: bool = False, unknown_state: bool = False) -> None:
    """State read back that cannot follow the client: it stays on its backend (the new pins counted)."""
    pins = client.session.pins
    before = pins.reasons()
    pins.user_variables = pins.user_variables or user_variables
    pins.unknown_state = pins.unknown_state or unknown_state
    assert client.pool is not None
    for reason in pins.reasons():
        if reason not in before:
            client.pool.stats.pins[reason.value] += 1


def keepalive(client: Client) -> None:
    """Ping the backend this idle client holds, before the server's wait_timeout ends it."""
    backend = client.backend
    assert backend is not None
    client.set_state(ClientState.LOCAL)
    client.run_task(_keepalive(client, backend))


async def _keepalive(client: Client, backend: BackendConnection) -> None:
    try:
        await commands.ping(backend, client.proxy.config.backend.connect_timeout)
    except BackendGone:
        pass  # on_backend_lost has dealt with this client
    client.back_to_ready()


def roll_back_idle_transaction(client: Client, timeout: float) -> None:
    """[pool] idle_transaction_timeout: roll back, tell the client at its next statement, free the backend."""
    backend = client.backend
    assert backend is not None
    log_event(log, "info", f"client #{client.id} idle in a transaction for {timeout:.0f}s: rolling it back",
              client_id=client.id)
    client.set_state(ClientState.LOCAL)
    client.run_task(_roll_back(client, backend, timeout))


async def _roll_back(client: Client, backend: BackendConnection, timeout: float) -> None:
    err = ProxyError(ER_IDLE_TRANSACTION, (
        f"mysqlpool-proxy rolled back this connection's transaction: it was idle longer than "
        f"idle_transaction_timeout ({timeout:g}s)"), "40000")
    session = client.session
    try:
        if backend.report_held:
            await fetch_held_report(client, backend, client.command)
        result = await backend.run_internal(b"\x03ROLLBACK", Expect.RESULT, client.proxy.config.backend.connect_timeout)
        if result.error is None:
            session.rolled_back(result.status)
        else:
            backend.close(BackendCloseReason.DIRTY)
    except BackendGone:
        pass
    if client.state is ClientState.CLOSED:
        return
    if session.trx_open or (client.backend is None and session.pins):
        # XA, or the state went with the backend: the session cannot go on.
        client.close(ClientCloseReason.IDLE_TIMEOUT)
        return
    session.pending_error = err
    client.back_to_ready(client.backend)

"""Commands the proxy answers itself, because they concern the client's session with the proxy.

* COM_QUIT closes the client; COM_PING answers OK with the client's status.
* COM_SET_OPTION records the multi-statements option; the next backend gets
  it with the rest of the session state.
* COM_RESET_CONNECTION gives the client a fresh session: its state and pins
  are cleared, and a backend it held with state on it is reset.
* COM_CHANGE_USER re-authenticates (client/phase.py) and moves the client to
  that user's pool.
* COM_PROCESS_KILL and the SQL `KILL [CONNECTION|QUERY] n` take the proxy's
  connection ids: the target is a client of the proxy, its running statement
  is stopped on whatever backend serves it, and no other client's backend
  is touched. In a multi-statement query each KILL is carried out here and
  replaced by a statement with its outcome.
* `SET NAMES`, and COMMIT / ROLLBACK / SET autocommit with nothing to do,
  are answered without a backend (every pool sends ROLLBACK on return).

These are functions of a ClientConnection; the asynchronous ones run as its
task, in its LOCAL state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..backend import commands
from ..constants import COM_RESET_CONNECTION, COMMAND, ER, SERVER_STATUS
from ..core.session import names_variables
from ..core.states import BackendState, ClientState
from ..errors import ProxyError
from ..protocol.command import CommandSpec
from ..protocol.framing import Packet, encode_packet
from ..protocol.sql import KillStatement, replace_spans, statements_with_kill
from ..protocol.transaction import NoopCommand
from ..reasons import ClientCloseReason
from .constants import ER_CONNECTION_KILLED
from .lease import reset_then_release

if TYPE_CHECKING:
    from .host import Client

__all__ = ["handle", "kill_statements", "set_names", "noop_transaction", "kill_client", "kill_running_query"]

log = logging.getLogger("mysqlpool.client")

AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
SET_OPTION_MULTI_ON = 0
SET_OPTION_MULTI_OFF = 1


def handle(client: Client, spec: CommandSpec, pkt: Packet) -> None:
    code = spec.code
    assert client.pool is not None
    client.pool.stats.count_query(spec.name)
    if code == COMMAND.COM_QUIT:
        client.close(ClientCloseReason.QUIT)
    elif code == COMMAND.COM_PING:
        client.send_ok(pkt.last_seq)
    elif code == COMMAND.COM_SET_OPTION:
        _set_option(client, pkt)
    elif code == COM_RESET_CONNECTION:
        _run(client, _reset_connection(client, pkt))
    elif code == COMMAND.COM_CHANGE_USER:
        client.start_change_user(pkt)
    elif code == COMMAND.COM_PROCESS_KILL:
        if len(pkt.payload) < 5:
            client.send_error(pkt.last_seq, ProxyError(ER.UNKNOWN_COM_ERROR, "Malformed COM_PROCESS_KILL"))
            return
        target = int.from_bytes(pkt.payload[1:5], "little")
        _run(client, _kill(client, pkt.last_seq, "connection", target))


def _run(client: Client, coro: Coroutine[Any, Any, None]) -> None:
    """Answer asynchronously, in the LOCAL state; the client's next commands wait."""
    client.set_state(ClientState.LOCAL)
    client.run_task(_then_ready(client, coro))


async def _then_ready(client: Client, coro: Coroutine[Any, Any, None]) -> None:
    try:
        await coro
    except asyncio.CancelledError:
        return
    client.back_to_ready()


# -- answered at once --------------------------------------------------------------------


def set_names(client: Client, pkt: Packet, charset: bytes, collation: bytes | None) -> bool:
    """Answer `SET NAMES` without a backend when the collation table says what it sets."""
    info = client.proxy.server_info
    assert info is not None and client.pool is not None
    resolved = info.resolve_names(charset, collation)
    if resolved is None:
        return False
    names, is_default = resolved
    state = client.session.state
    state.variables.update(names_variables(names))
    # The collation goes behind character_set_client and _results too (core/session.py).
    state.client_collation = state.results_collation = None if is_default else names
    cs = names.charset
    client.pool.stats.count_query("query")
    # What the server's trackers report for SET NAMES, whether or not a value changed.
    client.send_ok(pkt.last_seq, variables=[(b"character_set_connection", cs), (b"character_set_client", cs),
                                            (b"character_set_results", cs)])
    return True


def noop_transaction(client: Client, pkt: Packet, noop: NoopCommand) -> bool:
    """COMMIT / ROLLBACK with no transaction open, or autocommit set to the value it has: OK at once,
    with no backend (every pool sends ROLLBACK when a connection is returned to it)."""
    session = client.session
    if noop is NoopCommand.END and session.releases_on_end():
        return False  # completion_type = RELEASE: the server hangs up after it, whether or not a transaction is open
    if noop is not NoopCommand.END:
        on = noop is NoopCommand.AUTOCOMMIT_ON
        if on != bool(session.status & AUTOCOMMIT):
            return False  # a real change: the server's session must have it
    assert client.pool is not None
    client.pool.stats.count_query("query")
    session.queries += 1  # the diagnostics a server would show now are this statement's, not the last one's
    client.send_ok(pkt.last_seq, variables=None if noop is NoopCommand.END else [
        (b"autocommit", b"ON" if noop is NoopCommand.AUTOCOMMIT_ON else b"OFF")])
    return True


def _set_option(client: Client, pkt: Packet) -> None:
    payload = pkt.payload
    option = int.from_bytes(payload[1:3], "little") if len(payload) >= 3 else -1
    if option not in (SET_OPTION_MULTI_ON, SET_OPTION_MULTI_OFF):
        client.send_error(pkt.last_seq, ProxyError(ER.UNKNOWN_COM_ERROR, "Unknown COM_SET_OPTION option"))
        return
    client.session.state.multi_statements = option == SET_OPTION_MULTI_ON
    client.send_eof(pkt.last_seq)


# -- COM_RESET_CONNECTION ----------------------------------------------------------------


async def _reset_connection(client: Client, pkt: Packet) -> None:
    proxy = client.proxy
    info = proxy.server_info
    assert info is not None
    session = client.session
    had_state = session.holds_state()
    backend = client.lease.drop()
    state = session.state
    session.restart(proxy.initial_session(client.charset, client.capabilities, state.schema,
                                          multi_statements=state.multi_statements),
                    info.initial_status, info.trackers)
    if backend is not None and not backend.closed:
        if had_state or proxy.session_mode or backend.report_held:
            await reset_then_release(backend, proxy.config.backend.connect_timeout)
        else:
            backend.pool.release(backend)
    client.send_ok(pkt.last_seq)


# -- KILL --------------------------------------------------------------------------------


def kill_statements(client: Client, pkt: Packet) -> Packet | None:
    """A query with KILL statements: they take the proxy's connection ids, so the proxy carries them
    out. A lone KILL is answered here (None). In a multi-statement query each KILL is replaced by a
    statement with its outcome (`DO 0`: an OK; or SIGNAL with the server's error, which stops the
    statements after it), so that every other statement runs and returns its result as directly; the
    packet to relay is returned."""
    payload = pkt.payload
    count, kills = statements_with_kill(payload[1:], client.session.quoting)
    if not kills:
        return pkt
    if count == 1:
        _run(client, _kill(client, pkt.last_seq, kills[0].kind, kills[0].target))
        return None
    text = replace_spans(payload[1:], [(k.start, k.end, _kill_in_query(client, k)) for k in kills])
    return Packet(pkt.seq, pkt.seq, b"\x03" + text, encode_packet(b"\x03" + text, pkt.seq))


def _target(client: Client, target_id: int) -> tuple[Client | None, ProxyError | None]:
    target = client.proxy.client_by_id(target_id)
    if target is None or target.user is None:
        return None, ProxyError(ER.NO_SUCH_THREAD, f"Unknown thread id: {target_id}")
    if client.user is None or target.user.name != client.user.name:
        return None, ProxyError(ER.KILL_DENIED_ERROR, f"You are not owner of thread {target_id}")
    return target, None


def _kill_in_query(client: Client, kill: KillStatement) -> bytes:
    """Carry out one KILL of a multi-statement query now; the statement that stands in for it."""
    target, error = _target(client, kill.target)
    if target is None:
        assert error is not None
        return _signal(error.errno, error.sqlstate, error.message)
    if target is client:
        if kill.kind == "query":
            return b"DO 0"  # the statement running is this query itself
        client.session.ending = ClientCloseReason.KILLED  # closed once its answer has gone out
        return _signal(ER_CONNECTION_KILLED, "70100", "Connection was killed")
    spawn = client.proxy.spawn
    spawn(kill_running_query(target) if kill.kind == "query" else kill_client(target))
    return b"DO 0"


async def _kill(client: Client, last_seq: int, kind: str, target_id: int) -> None:
    target, error = _target(client, target_id)
    if target is None:
        assert error is not None
        client.send_error(last_seq, error)
        return
    if kind == "query":
        await kill_running_query(target)
        client.send_ok(last_seq)
        return
    if target is client:
        client.send_error(last_seq, ProxyError(ER_CONNECTION_KILLED, "Connection was killed"))
        client.close(ClientCloseReason.KILLED)
        return
    await kill_client(target)
    client.send_ok(last_seq)


async def kill_running_query(target: Client) -> None:
    """KILL QUERY of a client: the statement it runs now, on whatever backend serves it."""
    backend = target.backend
    if backend is not None and backend.state is BackendState.BUSY:
        await commands.kill_query(backend)


async def kill_client(target: Client) -> None:
    """KILL of a client: its running statement is killed on the server with its backend, and it is closed."""
    backend = target.backend
    if backend is not None and backend.state is BackendState.BUSY:
        await commands.kill_query(backend, what="")
    target.close(ClientCloseReason.KILLED)


def _signal(errno: int, sqlstate: str, message: str) -> bytes:
    """A statement that fails with exactly this error (MariaDB and MySQL allow SIGNAL outside stored programs)."""
    return f"SIGNAL SQLSTATE '{sqlstate}' SET MYSQL_ERRNO = {errno}, MESSAGE_TEXT = '{message}'".encode()

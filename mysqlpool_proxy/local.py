"""Commands the proxy answers itself, because they concern the client's session with the proxy.

* COM_QUIT closes the client; COM_PING answers OK with the client's status.
* COM_SET_OPTION records the multi-statements option; the next backend
  gets it with the rest of the session state.
* COM_RESET_CONNECTION gives the client a fresh session: its state and pins
  are cleared, and a backend it held with state on it is reset.
* COM_CHANGE_USER re-authenticates against the proxy's users (with an
  AuthSwitch round trip if needed) and moves the client to that user's pool.
* COM_PROCESS_KILL and the SQL `KILL [CONNECTION|QUERY] n` take the proxy's
  connection ids: the target is a client of the proxy, its running
  statement is stopped on whatever backend serves it, and no other client's
  backend is touched.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .backend import BackendState
from .constants import COMMAND, COM_RESET_CONNECTION, ER, SERVER_STATUS
from .errors import ProtocolError, ProxyError
from .protocol import handshake as hs
from .protocol.framing import Packet, encode_packet
from .protocol.packets import parse_change_user
from .protocol.sql import KillStatement, replace_spans, statements_with_kill
from .protocol.transaction import NoopCommand
from .reasons import ClientCloseReason
from .core.pins import Pins
from .core.session import names_variables

if TYPE_CHECKING:
    from .client import ClientConnection
    from .protocol.command import CommandSpec
    from .proxy import Proxy

__all__ = ["LocalCommands"]

log = logging.getLogger("mysqlpool.client")

ER_CONNECTION_KILLED = 1927
AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
SET_OPTION_MULTI_ON = 0
SET_OPTION_MULTI_OFF = 1


class LocalCommands:
    def __init__(self, proxy: Proxy):
        self.proxy = proxy

    def handle(self, client: ClientConnection, spec: CommandSpec, pkt: Packet) -> None:
        code = spec.code
        client.pool.stats.queries[spec.name] += 1
        if code == COMMAND.COM_QUIT:
            client.close(ClientCloseReason.QUIT)
        elif code == COMMAND.COM_PING:
            client.send_ok(pkt.last_seq)
        elif code == COMMAND.COM_SET_OPTION:
            self._set_option(client, pkt)
        elif code == COM_RESET_CONNECTION:
            self._run(client, self._reset_connection(client, pkt))
        elif code == COMMAND.COM_CHANGE_USER:
            self._change_user(client, pkt)
        elif code == COMMAND.COM_PROCESS_KILL:
            if len(pkt.payload) < 5:
                client.send_error(pkt.last_seq, ProxyError(ER.UNKNOWN_COM_ERROR, "Malformed COM_PROCESS_KILL"))
                return
            target = int.from_bytes(pkt.payload[1:5], "little")
            self._run(client, self._kill(client, pkt.last_seq, "connection", target))

    def kill_statements(self, client: ClientConnection, pkt: Packet) -> Packet | None:
        """A query with KILL statements: they take the proxy's connection ids, so the proxy carries
        them out. A lone KILL is answered here (None). In a multi-statement query each KILL is
        replaced by a statement with its outcome (`DO 0`: an OK; or SIGNAL with the server's error,
        which stops the statements after it), so that every other statement runs and returns its
        result as directly; the packet to relay is returned."""
        payload = pkt.payload
        count, kills = statements_with_kill(payload[1:], client.quoting)
        if not kills:
            return pkt
        if count == 1:
            self._run(client, self._kill(client, pkt.last_seq, kills[0].kind, kills[0].target))
            return None
        text = replace_spans(payload[1:], [(k.start, k.end, self._kill_in_query(client, k)) for k in kills])
        return Packet(pkt.seq, pkt.seq, b"\x03" + text, encode_packet(b"\x03" + text, pkt.seq))

    def _kill_in_query(self, client: ClientConnection, kill: KillStatement) -> bytes:
        """Carry out one KILL of a multi-statement query now; the statement that stands in for it."""
        proxy = self.proxy
        target = proxy.clients.get(kill.target)
        if target is None or target.user is None:
            return _signal(ER.NO_SUCH_THREAD, "HY000", f"Unknown thread id: {kill.target}")
        if target.user.name != client.user.name:
            return _signal(ER.KILL_DENIED_ERROR, "HY000", f"You are not owner of thread {kill.target}")
        if target is client:
            if kill.kind == "query":
                return b"DO 0"  # the statement running is this query itself
            client.killed = True  # closed once its answer has gone out
            return _signal(ER_CONNECTION_KILLED, "70100", "Connection was killed")
        if kill.kind == "query":
            proxy.spawn(proxy.kill_running_query(target))
        else:
            proxy.spawn(proxy.kill_client(target))
        return b"DO 0"

    def set_names(self, client: ClientConnection, pkt: Packet, charset: bytes, collation: bytes | None) -> bool:
        """Answer `SET NAMES` without a backend when the collation table says what it sets."""
        resolved = self.proxy.server_info.resolve_names(charset, collation)
        if resolved is None:
            return False
        names, is_default = resolved
        session = client.session
        session.variables.update(names_variables(names))
        # The collation goes behind character_set_client and _results too (session.py).
        session.client_collation = session.results_collation = None if is_default else names
        cs = names.charset
        client.pool.stats.queries["query"] += 1
        # What the server's trackers report for SET NAMES, whether or not a value changed.
        client.send_ok(pkt.last_seq, variables=[(b"character_set_connection", cs), (b"character_set_client", cs),
                                                (b"character_set_results", cs)])
        return True

    def noop_transaction(self, client: ClientConnection, pkt: Packet, noop: NoopCommand) -> bool:
        """COMMIT / ROLLBACK with no transaction open, or autocommit set to the value it has: OK at once,
        with no backend (every pool sends ROLLBACK when a connection is returned to it)."""
        if noop is not NoopCommand.END:
            on = noop is NoopCommand.AUTOCOMMIT_ON
            if on != bool(client.status & AUTOCOMMIT):
                return False  # a real change: the server's session must have it
        client.pool.stats.queries["query"] += 1
        client.queries += 1  # the diagnostics a server would show now are this statement's, not the last one's
        client.send_ok(pkt.last_seq, variables=None if noop is NoopCommand.END else [
            (b"autocommit", b"ON" if noop is NoopCommand.AUTOCOMMIT_ON else b"OFF")])
        return True

    def _run(self, client: ClientConnection, coro) -> None:
        from .client import ClientState
        client.set_state(ClientState.LOCAL)
        client._task = self.proxy.loop.create_task(self._finish(client, coro))

    async def _finish(self, client: ClientConnection, coro) -> None:
        from .client import ClientState
        try:
            await coro
        except asyncio.CancelledError:
            return
        finally:
            client._task = None
        if client.state is ClientState.LOCAL:
            client.set_state(ClientState.READY)
            client._process_input()

    # -- COM_SET_OPTION -------------------------------------------------------------

    def _set_option(self, client: ClientConnection, pkt: Packet) -> None:
        payload = pkt.payload
        option = int.from_bytes(payload[1:3], "little") if len(payload) >= 3 else -1
        if option not in (SET_OPTION_MULTI_ON, SET_OPTION_MULTI_OFF):
            client.send_error(pkt.last_seq, ProxyError(ER.UNKNOWN_COM_ERROR, "Unknown COM_SET_OPTION option"))
            return
        client.session.multi_statements = option == SET_OPTION_MULTI_ON
        client.send_eof(pkt.last_seq)

    # -- COM_RESET_CONNECTION ----------------------------------------------------------

    async def _reset_connection(self, client: ClientConnection, pkt: Packet) -> None:
        proxy = self.proxy
        backend = client.backend
        had_state = client.holds_state()
        client.backend = None
        client.session = proxy.initial_session(client.charset, client.capabilities, client.session.schema,
                                               multi_statements=client.session.multi_statements)
        client.pins = Pins()
        client.reset_transaction(proxy.server_info.initial_status)
        client.trackers = proxy.server_info.trackers
        if backend is not None and not backend.closed:
            backend.client = None
            if had_state or proxy.session_mode:
                await proxy.reset_backend_then_release(backend)
            else:
                backend.pool.release(backend)
        client.send_ok(pkt.last_seq)

    # -- COM_CHANGE_USER ----------------------------------------------------------------

    def _change_user(self, client: ClientConnection, pkt: Packet) -> None:
        from .client import ClientState
        try:
            request = parse_change_user(pkt.payload, client.capabilities)
        except ProtocolError:
            client.send_error(pkt.last_seq, ProxyError(ER.HANDSHAKE_ERROR, "Malformed COM_CHANGE_USER"))
            client.close(ClientCloseReason.PROTOCOL_ERROR)
            return
        client.set_state(ClientState.LOCAL)
        client.bound_input_for_login()
        client.change_user = hs.ChangeUserAuth(self.proxy.lookup_credentials, client.peer, client.scramble,
                                               client.capabilities)
        self._change_user_events(client, client.change_user.start(request, seq=pkt.last_seq))

    def change_user_packet(self, client: ClientConnection, pkt) -> None:
        auth = client.change_user
        self._change_user_events(client, auth.receive(pkt) if isinstance(pkt, Packet) else auth.oversized(pkt))

    def _change_user_events(self, client: ClientConnection, events: list) -> None:
        for event in events:
            if isinstance(event, hs.Send):
                client.transport.write(event.data)
            elif isinstance(event, hs.Failed):
                client.change_user = None
                log.info("client #%d: change user failed: %s", client.id, event.message)
                client.close(ClientCloseReason.PROTOCOL_ERROR if event.errno == ER.NET_PACKET_TOO_LARGE
                             else ClientCloseReason.AUTH_FAILED)
                return
            elif isinstance(event, hs.Verified):
                client._task = self.proxy.loop.create_task(self._complete_change_user(client, event))

    async def _complete_change_user(self, client: ClientConnection, event: hs.Verified) -> None:
        from .client import ClientState
        proxy = self.proxy
        auth = client.change_user
        try:
            backend, client.backend = client.backend, None
            if backend is not None and not backend.closed:
                backend.client = None
                if client.holds_state() or proxy.session_mode:
                    await proxy.reset_backend_then_release(backend)
                else:
                    backend.pool.release(backend)
            entry = proxy.user_entry(event.user)
            client.user = entry
            client.pool = entry.pool
            if event.charset:
                client.charset = event.charset & 0xFF
            client.program = event.program or client.program
            client.session = proxy.initial_session(client.charset, client.capabilities, event.database)
            client.pins = Pins()
            client.reset_transaction(proxy.server_info.initial_status)
            client.trackers = proxy.server_info.trackers
            error = None
            if event.database and not proxy.schema_known(entry, event.database):
                error = await proxy.check_schema(client, event.database)
        finally:
            client._task = None
            client.change_user = None
        if client.state is ClientState.CLOSED:
            return
        if error is not None:
            client.transport.write(auth.reject(error.errno, error.message))
            client.close(ClientCloseReason.AUTH_FAILED)
            return
        from .client import STICKY_STATUS
        client.transport.write(auth.accept(client.status & STICKY_STATUS))
        client.bound_input_for_commands()
        client.set_state(ClientState.READY)
        client._process_input()

    # -- KILL ------------------------------------------------------------------------

    async def _kill(self, client: ClientConnection, last_seq: int, kind: str, target_id: int) -> None:
        proxy = self.proxy
        target = proxy.clients.get(target_id)
        if target is None or target.user is None:
            client.send_error(last_seq, ProxyError(ER.NO_SUCH_THREAD, f"Unknown thread id: {target_id}"))
            return
        if target.user.name != client.user.name:
            client.send_error(last_seq, ProxyError(ER.KILL_DENIED_ERROR, f"You are not owner of thread {target_id}"))
            return
        if kind == "query":
            await proxy.kill_running_query(target)
            client.send_ok(last_seq)
            return
        if target is client:
            client.send_error(last_seq, ProxyError(ER_CONNECTION_KILLED, "Connection was killed"))
            client.close(ClientCloseReason.KILLED)
            return
        await proxy.kill_client(target)
        client.send_ok(last_seq)


def _signal(errno: int, sqlstate: str, message: str) -> bytes:
    """A statement that fails with exactly this error (MariaDB and MySQL allow SIGNAL outside stored programs)."""
    return f"SIGNAL SQLSTATE '{sqlstate}' SET MYSQL_ERRNO = {errno}, MESSAGE_TEXT = '{message}'".encode()


def backend_busy(client: ClientConnection) -> bool:
    backend = client.backend
    return backend is not None and backend.state is BackendState.BUSY

"""The connection phase of a client: greeting, TLS, authentication, the schema check; COM_CHANGE_USER.

`ConnectionPhase` is a part of one ClientConnection: it owns the sans-IO
handshake machine (protocol/handshake.py), the change-user exchange, the
scramble they share and the handshake timer, and drives them from the
client's packets. When the login or a change of user is verified it hands
the client its identity (`ClientConnection.logged_in`).

The greeting waits until the server's identity is known (clients then wait
up to checkout_timeout, and are told sooner when the proxy knows the server
is down or refuses its login: proxy/refusals.py). The handshake timer
(HANDSHAKE_TIMEOUT) starts with the greeting, so it never cuts that wait
short. Once a client's credentials are good it counts against
max_client_connections; before that, the oldest of too many connections
logging in makes room for a new one (`evict_from_login`). If its pool is
known to get no backend, its login waits for one, as for a schema check, and
is refused with the cause if there is none, as a server that is down would.

Until a client has authenticated, its decoder is strict with
MAX_LOGIN_PACKET: a larger packet gets the server's 1153 and a close as soon
as its header arrives, so an unauthenticated client costs at most one login
packet of memory. After the OK it takes packets up to the proxy's
max_packet_size. COM_CHANGE_USER's auth exchange is bounded the same way.

TLS: a client sends its ClientHello right after the SSLRequest, without
waiting for an answer, so both often arrive in one read. Bytes already read
past the SSLRequest are handed to the TLS protocol that loop.start_tls()
installs, before the socket is read again (`_hand_to_tls`). After the
handshake the connection runs on the loop's own TLS transport. A packet the
TLS protocol decrypts before start_tls() has handed that transport over (the
HandshakeResponse can come with the client's last handshake message; stock
asyncio delivers it at once) waits for the hand-over, or its answer would go
out in clear.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from ..constants import ER
from ..core.client_session import STICKY_STATUS
from ..core.states import ClientState
from ..errors import ProtocolError, ProxyError
from ..logs import log_event
from ..protocol import handshake as hs
from ..protocol.framing import Oversized, Packet, encode_packet
from ..protocol.packets import make_err, parse_change_user
from ..reasons import ClientCloseReason, RefusalReason
from .compression import start_compression
from .constants import HANDSHAKE_TIMEOUT, MAX_LOGGING_IN
from .flow import Paused
from .lease import reset_then_release

if TYPE_CHECKING:
    from .host import Client

__all__ = ["ConnectionPhase"]

log = logging.getLogger("mysqlpool.client")

# The states every login moves through, as module globals: on Python 3.11 reading
# `ClientState.READY` runs EnumType's __getattr__ hook, ~20 times a global's cost.
_HANDSHAKE: Final = ClientState.HANDSHAKE
_READY: Final = ClientState.READY


class ConnectionPhase:
    __slots__ = ("client", "handshake", "change_user", "scramble", "secure", "_timer", "_unsent")

    def __init__(self, client: Client) -> None:
        self.client = client
        self.handshake: hs.ServerHandshake | None = None
        self.change_user: hs.ChangeUserAuth | None = None
        self.scramble = b""  # the greeting's, which COM_CHANGE_USER uses again
        self.secure = False  # logged in over TLS or a Unix socket (COM_CHANGE_USER may send a password in clear)
        self._timer: asyncio.TimerHandle | None = None
        self._unsent = b""  # a login's last auth packet (fast_auth_success), written with its OK or ERR

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- greeting ---------------------------------------------------------------------------

    def start(self) -> None:
        """The client is accepted: greet it, once the server's identity is known."""
        if self.client.proxy.server_info is not None:
            self._greet()
        else:
            self.client.run_task(self._greet_when_server_known())

    async def _greet_when_server_known(self) -> None:
        """Greet once the server's identity is known, waiting up to checkout_timeout (the proxy may
        refuse the client sooner: refuse_before_greeting)."""
        client = self.client
        proxy = client.proxy
        try:
            await asyncio.wait_for(proxy.server_known.wait(), proxy.config.pool.checkout_timeout)
        except TimeoutError:
            self.refuse_before_greeting(proxy.describe_backend_problem())
            return
        if client.state is ClientState.GREETING:
            self._greet()
            client.flow.resume(Paused.NOT_GREETED)
            client.process_input()  # whatever it sent before its greeting

    def refuse_before_greeting(self, error: ProxyError) -> None:
        """The server cannot be had: say why instead of the greeting, and close."""
        client = self.client
        if client.state is not ClientState.GREETING:
            return
        client.proxy.backend_refused(client, error)
        client.write(encode_packet(make_err(error.errno, error.sqlstate, error.message), 0))
        client.close(ClientCloseReason.BACKEND_UNAVAILABLE)

    def evict_from_login(self) -> None:
        """Too many connections are logging in: this one, the oldest, makes room (told why if it has
        not been greeted yet; after the greeting a stray packet would only confuse it)."""
        client = self.client
        if client.state is ClientState.GREETING:
            client.write(encode_packet(make_err(ER.CON_COUNT_ERROR, "08004", (
                f"Too many connections: mysqlpool-proxy had {MAX_LOGGING_IN} connections logging in at once "
                "and closed the oldest")), 0))
        client.close(ClientCloseReason.LOGIN_EVICTED)

    def _greet(self) -> None:
        client = self.client
        proxy = client.proxy
        info = proxy.server_info
        assert info is not None
        unix_socket = client.on_unix_socket()
        handshake = self.handshake = hs.ServerHandshake(
            connection_id=client.id, server_version=info.advertised_version, capabilities=info.client_capabilities,
            charset=info.charset_id, lookup=proxy.lookup_credentials, client_host=client.peer,
            tls_available=proxy.tls_context is not None,
            tls_required=proxy.config.proxy.require_tls and not unix_socket,
            unix_socket=unix_socket, rsa=proxy.rsa_keys,
        )
        self.scramble = handshake.scramble
        client.set_state(_HANDSHAKE)
        self._timer = proxy.loop.call_later(HANDSHAKE_TIMEOUT, self._timed_out)
        client.write(handshake.greeting())

    def _timed_out(self) -> None:
        self._timer = None
        if self.client.state is ClientState.HANDSHAKE:
            self.client.close(ClientCloseReason.HANDSHAKE_TIMEOUT)

    # -- the login ------------------------------------------------------------------------

    def packet(self, pkt: Packet | Oversized) -> None:
        """A packet of the login (state HANDSHAKE)."""
        client = self.client
        if client.flow.paused & Paused.TLS_UPGRADE:  # decrypted before start_tls() returned
            client.proxy.loop.call_soon(self._packet_after_tls, pkt)
            return
        handshake = self.handshake
        assert handshake is not None
        events = handshake.oversized(pkt) if isinstance(pkt, Oversized) else handshake.receive(pkt)
        last = len(events) - 1
        for i, event in enumerate(events):
            if isinstance(event, hs.Send):
                if i < last and isinstance(events[i + 1], hs.Verified):
                    self._unsent = event.data  # one write with the OK (or ERR) that follows
                else:
                    client.write(event.data)
            elif isinstance(event, hs.StartTLS):
                self._start_tls()
                return
            elif isinstance(event, hs.Failed):
                self._login_failed(event)
                return
            elif isinstance(event, hs.Verified):
                self._verified(event)

    def _packet_after_tls(self, pkt: Packet | Oversized) -> None:
        if self.client.state is ClientState.HANDSHAKE:
            self.client.handle_packet(pkt)  # (a bug there costs only this client)

    def _login_failed(self, event: hs.Failed) -> None:
        client = self.client
        if event.errno == ER.NET_PACKET_TOO_LARGE:
            log_event(log, "info", f"client #{client.id} from {client.peer}: login packet larger than "
                      f"{hs.MAX_LOGIN_PACKET} bytes; closing it", client_id=client.id, peer=client.peer,
                      reason=ClientCloseReason.PROTOCOL_ERROR.value)
            client.close(ClientCloseReason.PROTOCOL_ERROR)
            return
        # (a login refused for want of TLS counts as auth_failed too; the log says which)
        detail = f" ({event.detail})" if event.detail else ""
        client.proxy.refused(RefusalReason.AUTH_FAILED,
                             f"client #{client.id} from {client.peer}: {event.message}{detail}")
        client.close(ClientCloseReason.AUTH_FAILED)

    def _verified(self, event: hs.Verified) -> None:
        client = self.client
        proxy = client.proxy
        refusal = self._charset_refusal(event)
        if refusal is not None:
            self._reject(refusal, ClientCloseReason.AUTH_FAILED)
            return
        client.logged_in(event, event.capabilities)
        refusal = proxy.client_verified(client)
        if refusal is not None:
            self._reject(refusal, ClientCloseReason.MAX_CLIENTS)
            return
        entry, pool = client.user, client.pool
        assert entry is not None and pool is not None
        schema = event.database if event.database and not proxy.schema_known(entry, event.database) else None
        if schema is not None or proxy.backend_known_down(pool):
            client.set_state(ClientState.LOCAL)
            client.run_task(self._validate_schema_then_accept(schema))
            return
        self._accept()

    def _charset_refusal(self, event: hs.Verified) -> ProxyError | None:
        """The server's refusal of a login whose character set no client may use (ucs2, utf16...)."""
        info = self.client.proxy.server_info
        unusable = info.unusable_client_charset(event.charset & 0xFF) if info is not None and event.charset else None
        if unusable is None:
            return None
        log.info("client #%d: login with character set %s refused (no client may use it)", self.client.id, unusable)
        return ProxyError(ER.WRONG_VALUE_FOR_VAR,
                          f"Variable 'character_set_client' can't be set to the value of '{unusable}'", "42000")

    def _reject(self, error: ProxyError, reason: ClientCloseReason) -> None:
        """Refuse the login (credentials good) with `error`, and close."""
        assert self.handshake is not None
        self.client.write(self._take_unsent() + self.handshake.reject(error.errno, error.message))
        self.client.close(reason)

    def _take_unsent(self) -> bytes:
        unsent, self._unsent = self._unsent, b""
        return unsent

    def _accept(self) -> None:
        client = self.client
        self.stop()
        handshake = self.handshake
        assert handshake is not None
        self.secure = handshake.secure
        codec = handshake.compression()
        client.write(self._take_unsent() + handshake.accept(client.session.status & STICKY_STATUS))
        self.handshake = None
        if codec is not None:
            start_compression(client, client.proxy.loop, codec)
        client.bound_input_for_commands()
        if client.state is _HANDSHAKE:
            client.set_state(_READY)
        client.proxy.client_authenticated(client)

    async def _validate_schema_then_accept(self, schema: bytes | None) -> None:
        """Check the schema on a backend (None: only get one, the pool being known down), then accept."""
        client = self.client
        error = await client.proxy.check_schema(client, schema)
        if client.state is ClientState.CLOSED:
            return
        if error is not None:
            schema_refused = error.errno in (ER.BAD_DB_ERROR, ER.DBACCESS_DENIED_ERROR)
            self._reject(error, ClientCloseReason.AUTH_FAILED if schema_refused
                         else ClientCloseReason.BACKEND_UNAVAILABLE)
            return
        self._accept()
        client.set_state(ClientState.READY)
        client.process_input()

    # -- TLS --------------------------------------------------------------------------------

    def _start_tls(self) -> None:
        """Stop reading, take what was read past the SSLRequest, and upgrade (see the module comment)."""
        client = self.client
        client.flow.pause(Paused.TLS_UPGRADE)
        leftover = client.decoder.take_buffer()
        loop = client.proxy.loop
        # The task's first step (start_tls up to its first await) installs the TLS protocol
        # on the transport; the callback, queued after it, runs before the socket is read again.
        client.run_task(self._upgrade_to_tls())
        if leftover:
            assert client.transport is not None  # the SSLRequest came over it
            loop.call_soon(self._hand_to_tls, client.transport, leftover)

    def _hand_to_tls(self, transport: asyncio.Transport, data: bytes) -> None:
        """Give the TLS protocol the bytes it would have read itself, as its transport does."""
        client = self.client
        protocol = transport.get_protocol()
        if protocol is client or client.state is ClientState.CLOSED:
            return  # the upgrade failed to start (its task closes the client) or the client is gone
        try:
            view = memoryview(data)
            while view:
                buf = protocol.get_buffer(len(view))  # type: ignore[attr-defined]
                n = min(len(buf), len(view))
                buf[:n] = view[:n]
                view = view[n:]
                protocol.buffer_updated(n)  # type: ignore[attr-defined]
        except Exception:
            log_event(log, "error", f"client #{client.id}: TLS handshake failed on the bytes read with its SSLRequest",
                      exc_info=True, client_id=client.id, reason=ClientCloseReason.PROTOCOL_ERROR.value)
            client.close(ClientCloseReason.PROTOCOL_ERROR)

    async def _upgrade_to_tls(self) -> None:
        client = self.client
        proxy = client.proxy
        try:
            new_transport = await proxy.loop.start_tls(
                client.transport, client, proxy.tls_context, server_side=True,  # type: ignore[arg-type]
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except (OSError, ConnectionError, asyncio.CancelledError):  # ssl.SSLError is an OSError
            client.close(ClientCloseReason.PROTOCOL_ERROR)
            return
        except Exception:  # a bug must cost this client its connection, never the proxy
            log_event(log, "error", f"client #{client.id}: internal error starting TLS; closing it", exc_info=True,
                      client_id=client.id, reason=ClientCloseReason.PROTOCOL_ERROR.value)
            client.close(ClientCloseReason.PROTOCOL_ERROR)
            return
        assert new_transport is not None
        client.use_transport(new_transport)
        client.flow.resume(Paused.TLS_UPGRADE)

    # -- COM_CHANGE_USER ----------------------------------------------------------------

    def awaiting_auth_data(self) -> bool:
        """COM_CHANGE_USER asked the client for auth data: its next packet is that, nothing else."""
        auth = self.change_user
        return auth is not None and auth.awaiting_auth_data

    def expected_seq(self) -> int:
        """The sequence id of the client's next packet while COM_CHANGE_USER asks it for auth data."""
        auth = self.change_user
        return auth.expected_seq if auth is not None else 0

    def start_change_user(self, pkt: Packet) -> None:
        client = self.client
        try:
            request = parse_change_user(pkt.payload, client.capabilities)
        except ProtocolError:
            client.send_error(pkt.last_seq, ProxyError(ER.HANDSHAKE_ERROR, "Malformed COM_CHANGE_USER"))
            client.close(ClientCloseReason.PROTOCOL_ERROR)
            return
        client.set_state(ClientState.LOCAL)
        client.bound_input_for_login()
        self.change_user = hs.ChangeUserAuth(client.proxy.lookup_credentials, client.peer, self.scramble,
                                             client.capabilities, secure=self.secure, rsa=client.proxy.rsa_keys)
        self._change_user_events(self.change_user.start(request, seq=pkt.last_seq))

    def change_user_packet(self, pkt: Packet | Oversized) -> None:
        auth = self.change_user
        assert auth is not None
        self._change_user_events(auth.receive(pkt) if isinstance(pkt, Packet) else auth.oversized(pkt))

    def _change_user_events(self, events: list) -> None:
        client = self.client
        for event in events:
            if isinstance(event, hs.Send):
                client.write(event.data)
            elif isinstance(event, hs.Failed):
                self.change_user = None
                log_event(log, "info", f"client #{client.id}: change user failed: {event.message}"
                          + (f" ({event.detail})" if event.detail else ""), client_id=client.id, code=event.errno)
                client.close(ClientCloseReason.PROTOCOL_ERROR if event.errno == ER.NET_PACKET_TOO_LARGE
                             else ClientCloseReason.AUTH_FAILED)
                return
            elif isinstance(event, hs.Verified):
                refusal = self._charset_refusal(event)
                if refusal is not None:
                    assert self.change_user is not None
                    client.write(self.change_user.reject(refusal.errno, refusal.message))
                    self.change_user = None
                    client.close(ClientCloseReason.AUTH_FAILED)
                    return
                client.run_task(self._complete_change_user(event))

    async def _complete_change_user(self, event: hs.Verified) -> None:
        client = self.client
        proxy = client.proxy
        auth = self.change_user
        assert auth is not None
        try:
            backend = client.lease.drop()
            if backend is not None and not backend.closed:
                if client.session.holds_state() or proxy.session_mode or backend.report_held:
                    await reset_then_release(backend, proxy.config.backend.connect_timeout)
                else:
                    backend.pool.release(backend)
            client.logged_in(event, client.capabilities)
            entry = client.user
            assert entry is not None
            error = None
            if event.database and not proxy.schema_known(entry, event.database):
                error = await proxy.check_schema(client, event.database)
        finally:
            self.change_user = None
        if client.state is ClientState.CLOSED:
            return
        if error is not None:
            client.write(auth.reject(error.errno, error.message))
            client.close(ClientCloseReason.AUTH_FAILED)
            return
        client.write(auth.accept(client.session.status & STICKY_STATUS))
        client.bound_input_for_commands()
        client.set_state(ClientState.READY)
        client.process_input()

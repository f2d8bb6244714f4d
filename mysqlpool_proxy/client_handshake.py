"""The connection phase of a client: greeting, authentication, TLS, the schema check.

The sans-IO machine in protocol/handshake.py does the protocol; this drives
it from the client connection, and defers the greeting until the server's
identity is known (clients then wait up to checkout_timeout, and are told
sooner when the proxy knows the server is down or refuses its login: see
proxy_refusals.py). The handshake timer (HANDSHAKE_TIMEOUT) starts with the
greeting, so it never cuts that wait short. Once a client's credentials are
good it counts against max_client_connections (proxy_refusals.py); before
that, the oldest of too many connections logging in makes room for a new one
(`evict_from_login`). If its pool is known to get no backend
(Proxy.backend_known_down), its login waits for one, as for a schema check,
and is refused with the cause if there is none, as a server that is down
would refuse it.

Until a client has authenticated, its decoder is strict with
MAX_LOGIN_PACKET: a larger packet gets the server's 1153 and a close as soon
as its header arrives, so an unauthenticated client costs at most one login
packet of memory. After the OK it takes packets up to [proxy]
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

from .client_state import ClientState, HANDSHAKE_TIMEOUT, MAX_LOGGING_IN, STICKY_STATUS
from .constants import ER
from .errors import ProxyError
from .protocol.framing import Oversized, encode_packet
from .protocol.packets import make_err
from .reasons import ClientCloseReason, RefusalReason
from .protocol import handshake as hs
from .core.pins import Pins

__all__ = ["HandshakeMixin"]

log = logging.getLogger("mysqlpool.client")

TLS_UPGRADE = 4  # a ClientConnection._paused_by bit: reading paused, the TLS upgrade under way


class HandshakeMixin:
    """Methods of ClientConnection (no state of its own)."""

    __slots__ = ()

    async def _greet_when_server_known(self) -> None:
        """Greet once the server's identity is known, waiting up to checkout_timeout (the proxy may
        refuse the client sooner: refuse_before_greeting)."""
        proxy = self.proxy
        error = None
        try:
            await asyncio.wait_for(proxy.server_known.wait(), proxy.config.pool.checkout_timeout)
        except asyncio.TimeoutError:
            error = proxy.describe_backend_problem()
        finally:
            self._task = None
        if error is not None:
            self.refuse_before_greeting(error)
        elif self.state is ClientState.GREETING:
            self._greet()
            self._process_input()  # whatever a client sent before its greeting (reading paused on it)

    def refuse_before_greeting(self, error: ProxyError) -> None:
        """The server cannot be had: say why instead of the greeting, and close."""
        if self.state is not ClientState.GREETING:
            return
        self.proxy.backend_refused(self, error)
        self.transport.write(encode_packet(make_err(error.errno, error.sqlstate, error.message), 0))
        self.close(ClientCloseReason.BACKEND_UNAVAILABLE)

    def evict_from_login(self) -> None:
        """Too many connections are logging in: this one, the oldest, makes room (told why if it has
        not been greeted yet; after the greeting a stray packet would only confuse it)."""
        if self.state is ClientState.GREETING:
            self.transport.write(encode_packet(make_err(ER.CON_COUNT_ERROR, "08004", (
                f"Too many connections: mysqlpool-proxy had {MAX_LOGGING_IN} connections logging in at once "
                "and closed the oldest")), 0))
        self.close(ClientCloseReason.LOGIN_EVICTED)

    def _greet(self) -> None:
        info = self.proxy.server_info
        self.handshake = hs.ServerHandshake(
            connection_id=self.id, server_version=info.advertised_version, capabilities=info.client_capabilities,
            charset=info.charset_id, lookup=self.proxy.lookup_credentials, client_host=self.peer,
            tls_available=self.proxy.tls_context is not None,
            tls_required=self.proxy.config.proxy.require_tls and not self._on_unix_socket(),
        )
        self.scramble = self.handshake.scramble
        self.set_state(ClientState.HANDSHAKE)
        self._timer = self.proxy.loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_timeout)
        self.transport.write(self.handshake.greeting())

    def _on_unix_socket(self) -> bool:
        """Secure as it is, as for the server's require_secure_transport (no TCP peer address)."""
        return not isinstance(self.transport.get_extra_info("peername"), tuple)

    def bound_input_for_login(self) -> None:
        """Until authenticated: one login packet at most, a larger one ends the connection."""
        self.decoder.limit(hs.MAX_LOGIN_PACKET, strict=True)

    def bound_input_for_commands(self) -> None:
        self.decoder.limit(self.proxy.max_packet_size)

    def awaiting_auth_data(self) -> bool:
        """COM_CHANGE_USER asked the client for auth data: its next packet is that, nothing else."""
        auth = self.change_user
        return auth is not None and auth.state is hs.HandshakeState.AUTH_SWITCH_SENT

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self.state is ClientState.HANDSHAKE:
            self.close(ClientCloseReason.HANDSHAKE_TIMEOUT)

    def _handshake_packet(self, pkt) -> None:
        if self._paused_by & TLS_UPGRADE:  # decrypted before start_tls() returned: wait for its transport
            self.proxy.loop.call_soon(self._handshake_packet_after_tls, pkt)
            return
        events = self.handshake.oversized(pkt) if isinstance(pkt, Oversized) else self.handshake.receive(pkt)
        for event in events:
            if isinstance(event, hs.Send):
                self.transport.write(event.data)
            elif isinstance(event, hs.StartTLS):
                self._start_tls()
                return
            elif isinstance(event, hs.Failed):
                self._login_failed(event)
                return
            elif isinstance(event, hs.Verified):
                self._verified(event)

    def _handshake_packet_after_tls(self, pkt) -> None:
        if self.state is ClientState.HANDSHAKE:
            self._handle_packet(pkt)  # (runs _handshake_packet, with a bug costing only this client)

    def _login_failed(self, event: hs.Failed) -> None:
        if event.errno == ER.NET_PACKET_TOO_LARGE:
            log.info("client #%d from %s: login packet larger than %d bytes; closing it",
                     self.id, self.peer, hs.MAX_LOGIN_PACKET)
            self.close(ClientCloseReason.PROTOCOL_ERROR)
            return
        # (a login refused for want of TLS counts as auth_failed too; the log says which)
        self.proxy.refused(RefusalReason.AUTH_FAILED, f"client #{self.id} from {self.peer}: {event.message}")
        self.close(ClientCloseReason.AUTH_FAILED)

    def _start_tls(self) -> None:
        """Stop reading, take what was read past the SSLRequest, and upgrade (see the module comment)."""
        self._pause_reading(TLS_UPGRADE)
        leftover = self.decoder.take_buffer()
        loop = self.proxy.loop
        # The task's first step (start_tls up to its first await) installs the TLS protocol
        # on the transport; the callback, queued after it, runs before the socket is read again.
        self._task = loop.create_task(self._upgrade_to_tls())
        if leftover:
            loop.call_soon(self._hand_to_tls, self.transport, leftover)

    def _hand_to_tls(self, transport: asyncio.Transport, data: bytes) -> None:
        """Give the TLS protocol the bytes it would have read itself, as its transport does."""
        protocol = transport.get_protocol()
        if protocol is self or self.state is ClientState.CLOSED:
            return  # the upgrade failed to start (its task closes the client) or the client is gone
        try:
            view = memoryview(data)
            while view:
                buf = protocol.get_buffer(len(view))
                n = min(len(buf), len(view))
                buf[:n] = view[:n]
                view = view[n:]
                protocol.buffer_updated(n)
        except Exception:
            log.exception("client #%d: TLS handshake failed on the bytes read with its SSLRequest", self.id)
            self.close(ClientCloseReason.PROTOCOL_ERROR)

    async def _upgrade_to_tls(self) -> None:
        try:
            new_transport = await self.proxy.loop.start_tls(
                self.transport, self, self.proxy.tls_context, server_side=True,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except (OSError, ConnectionError, asyncio.CancelledError):  # ssl.SSLError is an OSError
            self.close(ClientCloseReason.PROTOCOL_ERROR)
            return
        except Exception:  # a bug must cost this client its connection, never the proxy
            log.exception("client #%d: internal error starting TLS; closing it", self.id)
            self.close(ClientCloseReason.PROTOCOL_ERROR)
            return
        finally:
            self._task = None
        self.transport = new_transport
        new_transport.set_write_buffer_limits(high=self.proxy.config.pool.result_buffer_bytes)
        self._paused_by &= ~TLS_UPGRADE

    def _verified(self, event: hs.Verified) -> None:
        entry = self.proxy.user_entry(event.user)
        self.user = entry
        self.pool = entry.pool
        self.capabilities = event.capabilities
        self.program = event.program
        self.key = self.proxy.pool_key(event.capabilities)
        self.charset = event.charset or self.proxy.server_info.charset_id
        self.session = self.proxy.initial_session(self.charset, event.capabilities, event.database)
        self.pins = Pins()
        self.status = self.proxy.server_info.initial_status
        self.trackers = self.proxy.server_info.trackers
        refusal = self.proxy.client_verified(self)
        if refusal is not None:
            self._reject(refusal, ClientCloseReason.MAX_CLIENTS)
            return
        schema = event.database if event.database and not self.proxy.schema_known(entry, event.database) else None
        if schema is not None or self.proxy.backend_known_down(self.pool):
            self.set_state(ClientState.READY)
            self.set_state(ClientState.LOCAL)
            self._task = self.proxy.loop.create_task(self._validate_schema_then_accept(schema))
            return
        self._accept()

    def _reject(self, error: ProxyError, reason: ClientCloseReason) -> None:
        """Refuse the login (credentials good) with `error`, and close."""
        self.transport.write(self.handshake.reject(error.errno, error.message))
        self.close(reason)

    def _accept(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport.write(self.handshake.accept(self.status & STICKY_STATUS))
        self.handshake = None
        self.bound_input_for_commands()
        if self.state is ClientState.HANDSHAKE:
            self.set_state(ClientState.READY)
        self.proxy.client_authenticated(self)

    async def _validate_schema_then_accept(self, schema: bytes | None) -> None:
        """Check the schema on a backend (None: only get one, the pool being known down), then accept."""
        try:
            error = await self.proxy.check_schema(self, schema)
        finally:
            self._task = None
        if self.state is ClientState.CLOSED:
            return
        if error is not None:
            schema_refused = error.errno in (ER.BAD_DB_ERROR, ER.DBACCESS_DENIED_ERROR)
            self._reject(error, ClientCloseReason.AUTH_FAILED if schema_refused
                         else ClientCloseReason.BACKEND_UNAVAILABLE)
            return
        self._accept()
        self.set_state(ClientState.READY)
        self._process_input()

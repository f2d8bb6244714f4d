"""The connection phase of a client: greeting, authentication, TLS, the schema check.

The sans-IO machine in protocol/handshake.py does the protocol; this drives
it from the client connection, and defers the greeting until the server's
identity is known (clients then wait up to checkout_timeout).

Until a client has authenticated, its decoder is strict with
MAX_LOGIN_PACKET: a larger packet gets the server's 1153 and a close as soon
as its header arrives, so an unauthenticated client costs at most one login
packet of memory. After the OK it takes packets up to [proxy]
max_packet_size. COM_CHANGE_USER's auth exchange is bounded the same way.
"""

from __future__ import annotations

import asyncio
import logging

from .client_state import ClientState, STICKY_STATUS
from .constants import ER
from .errors import ProxyError
from .protocol.framing import Oversized, encode_packet
from .protocol.packets import make_err
from .reasons import ClientCloseReason, RefusalReason
from .protocol import handshake as hs
from .session import Pins

__all__ = ["HandshakeMixin"]

log = logging.getLogger("mysqlpool.client")


class HandshakeMixin:
    """Methods of ClientConnection (no state of its own)."""

    __slots__ = ()

    async def _greet_when_server_known(self) -> None:
        try:
            await asyncio.wait_for(self.proxy.server_known.wait(), self.proxy.config.pool.checkout_timeout)
        except asyncio.TimeoutError:
            detail = self.proxy.describe_backend_problem()
            err = ProxyError(ER.CON_COUNT_ERROR, f"mysqlpool-proxy: the backend server is unavailable ({detail})")
            self.transport.write(encode_packet(make_err(err.errno, err.sqlstate, err.message), 0))
            self.close(ClientCloseReason.BACKEND_UNAVAILABLE)
            return
        finally:
            self._task = None
        if self.state is ClientState.GREETING:
            self._greet()
            self._process_input()  # whatever a client sent before its greeting (reading paused on it)

    def _greet(self) -> None:
        info = self.proxy.server_info
        self.handshake = hs.ServerHandshake(
            connection_id=self.id, server_version=info.advertised_version, capabilities=info.client_capabilities,
            charset=info.charset_id, lookup=self.proxy.lookup_credentials, client_host=self.peer,
            tls_available=self.proxy.tls_context is not None,
        )
        self.scramble = self.handshake.scramble
        self.set_state(ClientState.HANDSHAKE)
        self.transport.write(self.handshake.greeting())

    def bound_input_for_login(self) -> None:
        """Until authenticated: one login packet at most, a larger one ends the connection."""
        self.decoder.limit(hs.MAX_LOGIN_PACKET, strict=True)

    def bound_input_for_commands(self) -> None:
        self.decoder.limit(self.proxy.config.proxy.max_packet_size)

    def awaiting_auth_data(self) -> bool:
        """COM_CHANGE_USER asked the client for auth data: its next packet is that, nothing else."""
        auth = self.change_user
        return auth is not None and auth.state is hs.HandshakeState.AUTH_SWITCH_SENT

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self.state in (ClientState.GREETING, ClientState.HANDSHAKE):
            self.close(ClientCloseReason.HANDSHAKE_TIMEOUT)

    def _handshake_packet(self, pkt) -> None:
        events = self.handshake.oversized(pkt) if isinstance(pkt, Oversized) else self.handshake.receive(pkt)
        for event in events:
            if isinstance(event, hs.Send):
                self.transport.write(event.data)
            elif isinstance(event, hs.StartTLS):
                self._task = self.proxy.loop.create_task(self._start_tls())
                return
            elif isinstance(event, hs.Failed):
                self._login_failed(event)
                return
            elif isinstance(event, hs.Verified):
                self._verified(event)

    def _login_failed(self, event: hs.Failed) -> None:
        if event.errno == ER.NET_PACKET_TOO_LARGE:
            log.info("client #%d from %s: login packet larger than %d bytes; closing it",
                     self.id, self.peer, hs.MAX_LOGIN_PACKET)
            self.close(ClientCloseReason.PROTOCOL_ERROR)
            return
        self.proxy.refused(RefusalReason.AUTH_FAILED, f"client #{self.id} from {self.peer}: {event.message}")
        self.close(ClientCloseReason.AUTH_FAILED)

    async def _start_tls(self) -> None:
        loop = self.proxy.loop
        self._pause_reading(4)
        try:
            new_transport = await loop.start_tls(self.transport, self, self.proxy.tls_context, server_side=True)
        except (OSError, ConnectionError, asyncio.CancelledError):
            self.close(ClientCloseReason.PROTOCOL_ERROR)
            return
        finally:
            self._task = None
        self.transport = new_transport
        self._paused_by &= ~4

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
        if event.database and not self.proxy.schema_known(entry, event.database):
            self.set_state(ClientState.READY)
            self.set_state(ClientState.LOCAL)
            self._task = self.proxy.loop.create_task(self._validate_schema_then_accept(event.database))
            return
        self._accept()

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

    async def _validate_schema_then_accept(self, schema: bytes) -> None:
        try:
            error = await self.proxy.check_schema(self, schema)
        finally:
            self._task = None
        if self.state is ClientState.CLOSED:
            return
        if error is not None:
            self.transport.write(self.handshake.reject(error.errno, error.message))
            self.close(ClientCloseReason.AUTH_FAILED)
            return
        self._accept()
        self.set_state(ClientState.READY)
        self._process_input()

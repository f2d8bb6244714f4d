"""The connection phase of a client: greeting, authentication, TLS, the schema check.

The sans-IO machine in protocol/handshake.py does the protocol; this drives
it from the client connection, and defers the greeting until the server's
identity is known (clients then wait up to checkout_timeout).
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

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self.state in (ClientState.GREETING, ClientState.HANDSHAKE):
            self.close(ClientCloseReason.HANDSHAKE_TIMEOUT)

    def _handshake_packet(self, pkt) -> None:
        if isinstance(pkt, Oversized):
            self.close(ClientCloseReason.PROTOCOL_ERROR)
            return
        for event in self.handshake.receive(pkt):
            if isinstance(event, hs.Send):
                self.transport.write(event.data)
            elif isinstance(event, hs.StartTLS):
                self._task = self.proxy.loop.create_task(self._start_tls())
                return
            elif isinstance(event, hs.Failed):
                self.proxy.refused(RefusalReason.AUTH_FAILED, f"client #{self.id}: {event.message}")
                self.close(ClientCloseReason.AUTH_FAILED)
                return
            elif isinstance(event, hs.Verified):
                self._verified(event)

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
        self.trackers = self.proxy.server_info.trackers
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

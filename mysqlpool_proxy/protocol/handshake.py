"""The client-facing connection phase, as a sans-IO state machine.

    GREETING_SENT --SSLRequest--> GREETING_SENT (tls)   [StartTLS]
    GREETING_SENT --HandshakeResponse41--> VERIFIED | AUTH_SWITCH_SENT | FAILED
    AUTH_SWITCH_SENT --auth data--> VERIFIED | FAILED
    VERIFIED --accept()--> DONE      (OK sent)
    VERIFIED --reject()--> FAILED    (ERR sent)

`receive(packet)` returns events; bytes to write are `Send` events, already
framed with the right sequence ids. `Verified` means the password checked
out; the caller may still refuse (e.g. unknown schema) before OK is sent.

Before a client has authenticated, what it may send is bounded: its
decoder is strict with MAX_LOGIN_PACKET, and `oversized(marker)` answers a
larger packet as the server does (1153, then the caller closes). With
`tls_required`, a HandshakeResponse that did not come over TLS is refused
with MySQL's 3159 before its credentials are looked at (so every login is,
if TLS is required but not available).

The authenticator is shared with COM_CHANGE_USER (`ChangeUserAuth`), which
runs the same plugin negotiation against the handshake's original scramble.
Plugins: mysql_native_password always; caching_sha2_password fast path when
the proxy knows the password. Any other plugin a client opens with is
switched to one of those (AuthSwitchRequest).
"""

from __future__ import annotations

import enum
import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..constants import CLIENT, ER, ER_SECURE_TRANSPORT_REQUIRED, SERVER_STATUS, sqlstate_for
from ..errors import RemoteProtocolError
from . import auth
from .framing import Oversized, Packet, encode_packet, next_seq
from .packets import (
    ChangeUser,
    HandshakeResponse,
    HandshakeV10,
    is_ssl_request,
    make_auth_more_data,
    make_auth_switch,
    make_err,
    make_handshake_v10,
    make_ok,
    parse_handshake_response,
)
from .wire import BytesLike, int4

__all__ = [
    "HandshakeState", "Send", "StartTLS", "Verified", "Failed", "ServerHandshake", "ChangeUserAuth",
    "make_scramble", "access_denied_message", "MAX_LOGIN_PACKET", "INSECURE_TRANSPORT_MESSAGE",
]

ER_NET_PACKETS_OUT_OF_ORDER = 1156
FAST_AUTH_SUCCESS = b"\x03"
# The largest packet of a login (HandshakeResponse, auth data, COM_CHANGE_USER's auth
# exchange): up to 64 KiB of connect attributes (the clients' own limit) plus ample
# room for user, schema, plugin and auth data, which take a few hundred bytes.
MAX_LOGIN_PACKET = (64 + 16) * 1024
INSECURE_TRANSPORT_MESSAGE = (
    "Connections using insecure transport are prohibited while --require_secure_transport=ON.")

CredentialsLookup = Callable[[bytes], "auth.Credentials | None"]


class HandshakeState(enum.Enum):
    GREETING_SENT = "greeting_sent"
    AUTH_SWITCH_SENT = "auth_switch_sent"
    VERIFIED = "verified"
    DONE = "done"
    FAILED = "failed"


# The states every login passes through, as module globals: on Python 3.11 reading
# `HandshakeState.VERIFIED` runs EnumType's __getattr__ hook, ~20 times a global's cost.
_GREETING_SENT: Final = HandshakeState.GREETING_SENT
_AUTH_SWITCH_SENT: Final = HandshakeState.AUTH_SWITCH_SENT
_VERIFIED: Final = HandshakeState.VERIFIED
_DONE: Final = HandshakeState.DONE


@dataclass(slots=True)
class Send:
    data: bytes


@dataclass(slots=True)
class StartTLS:
    pass


@dataclass(slots=True)
class Verified:
    user: bytes
    database: bytes | None
    capabilities: int
    charset: int | None
    connect_attrs: dict[bytes, bytes]
    plugin: bytes

    @property
    def program(self) -> str | None:
        """What the client says it is, for operators: its `program_name` connect attribute,
        else its driver's `_client_name` (PyMySQL, libmariadb, Connector/J...); at most 64
        characters."""
        name = self.connect_attrs.get(b"program_name") or self.connect_attrs.get(b"_client_name")
        return name.decode("utf-8", "replace")[:64] if name else None


@dataclass(slots=True)
class Failed:
    errno: int
    message: str


Event = Send | StartTLS | Verified | Failed


# Random bytes below 188 (2 x 94) map evenly onto 33..126; the others are dropped.
_PRINTABLE = bytes(33 + b % 94 for b in range(256))
_UNEVEN = bytes(range(188, 256))


def make_scramble() -> bytes:
    """20 printable ASCII bytes (33..126), uniformly random, like the server's: no NUL, safe
    for every client. (One translate of a random block: this runs for every connection.)"""
    out = b""
    while len(out) < auth.SCRAMBLE_LENGTH:
        out += secrets.token_bytes(2 * auth.SCRAMBLE_LENGTH).translate(_PRINTABLE, _UNEVEN)
    return out[:auth.SCRAMBLE_LENGTH]


def access_denied_message(user: bytes, host: str, token: bytes) -> str:
    using = "YES" if token not in (b"", b"\0") else "NO"
    name = user.decode("utf-8", "replace")
    return f"Access denied for user '{name}'@'{host}' (using password: {using})"


@functools.lru_cache(maxsize=16)
def _greeting_template(server_version: bytes, capabilities: int, charset: int, status: int,
                       plugin: bytes) -> tuple[bytes, bytes, bytes]:
    """The greeting's payload around its connection id and the two halves of a 20-byte scramble:
    the same for every client of a server, so built once (by make_handshake_v10) and cut."""
    payload = make_handshake_v10(HandshakeV10(server_version, 0, b"\0" * auth.SCRAMBLE_LENGTH, capabilities,
                                              charset, status, plugin))
    head = 1 + len(server_version) + 1  # protocol version, server version, NUL
    middle = head + 4 + 8  # connection id, first 8 bytes of the scramble
    tail = middle + 19 + auth.SCRAMBLE_LENGTH - 8  # NUL, flags, charset, status, length, reserved; the rest
    return payload[:head], payload[middle:middle + 19], payload[tail:]


class _Authenticator:
    """Plugin negotiation and verification, shared by handshake and change-user."""

    __slots__ = ("lookup", "client_host", "scramble", "plugin", "user", "creds")

    def __init__(self, lookup: CredentialsLookup, client_host: str, scramble: bytes):
        self.lookup = lookup
        self.client_host = client_host
        self.scramble = scramble
        self.plugin = auth.NATIVE
        self.user = b""
        self.creds: auth.Credentials | None = None

    def start(self, user: bytes, client_plugin: bytes | None, token: bytes) -> tuple[str, bytes]:
        """Returns ("ok", extra) / ("switch", payload) / ("denied", token)."""
        self.user = user
        self.creds = self.lookup(user)
        creds = self.creds or auth.dummy_credentials(user)
        plugin = client_plugin or auth.NATIVE
        if plugin not in creds.plugins():
            self.plugin = auth.NATIVE
            return "switch", make_auth_switch(auth.NATIVE, self.scramble + b"\0")
        self.plugin = plugin
        return self.finish(token)

    def finish(self, token: bytes) -> tuple[str, bytes]:
        creds = self.creds or auth.dummy_credentials(self.user)
        ok = auth.verify(self.plugin, creds, self.scramble, token)
        if not ok or self.creds is None:
            return "denied", token
        # caching_sha2 confirms a verified scramble with AuthMoreData(fast_auth_success);
        # an empty password is accepted directly with OK, as the server does.
        fast = self.plugin == auth.CACHING_SHA2 and not creds.empty
        return "ok", (make_auth_more_data(FAST_AUTH_SUCCESS) if fast else b"")

    def denied(self, token: bytes) -> Failed:
        return Failed(ER.ACCESS_DENIED_ERROR, access_denied_message(self.user, self.client_host, token))


class _AuthExchange:
    """Sequence ids, OK/ERR endings and the Verified event, common to both exchanges."""

    __slots__ = ("state", "capabilities", "_auth", "_seq")
    state: HandshakeState
    capabilities: int
    _auth: _Authenticator
    _seq: int

    @property
    def expected_seq(self) -> int:
        """The sequence id the client's next packet must have."""
        return next_seq(self._seq)

    def _send(self, payload: bytes) -> Send:
        self._seq = next_seq(self._seq)
        return Send(encode_packet(payload, self._seq))

    def _fail(self, failure: Failed) -> list[Event]:
        return [self._err(failure), failure]

    def _err(self, failure: Failed) -> Send:
        self.state = HandshakeState.FAILED
        caps = self.capabilities or CLIENT.PROTOCOL_41
        return self._send(make_err(failure.errno, sqlstate_for(failure.errno), failure.message, caps))

    def _verified(self) -> Verified:
        raise NotImplementedError

    def _after(self, outcome: str, data: bytes) -> list[Event]:
        if outcome == "switch":
            self.state = _AUTH_SWITCH_SENT
            return [self._send(data)]
        if outcome == "denied":
            return self._fail(self._auth.denied(data))
        self.state = _VERIFIED
        events: list[Event] = [self._send(data)] if data else []
        events.append(self._verified())
        return events

    def _on_auth_data(self, payload: BytesLike) -> list[Event]:
        outcome, data = self._auth.finish(bytes(payload))
        return self._after(outcome, data)

    def oversized(self, packet: Oversized) -> list[Event]:
        """A login packet larger than the decoder allows: the server's 1153; the caller closes."""
        self._seq = packet.last_seq
        return self._fail(Failed(ER.NET_PACKET_TOO_LARGE, (
            f"Got a packet bigger than 'max_allowed_packet' bytes (a login packet may have at most "
            f"{MAX_LOGIN_PACKET} bytes)")))

    def accept(self, status: int) -> bytes:
        """Send OK: the client is in. Only after Verified."""
        if self.state is not _VERIFIED:
            raise RemoteProtocolError(f"cannot accept in state {self.state.value}")
        self.state = _DONE
        return self._send(make_ok(self.capabilities, status)).data

    def reject(self, errno: int, message: str) -> bytes:
        """Send ERR instead of OK (e.g. the requested schema does not exist)."""
        return self._err(Failed(errno, message)).data


class ServerHandshake(_AuthExchange):
    """One client's connection phase."""

    __slots__ = ("server_caps", "_greeting", "_response", "tls_available", "tls_required", "tls")

    def __init__(
        self,
        *,
        connection_id: int,
        server_version: bytes,
        capabilities: int,
        charset: int,
        lookup: CredentialsLookup,
        client_host: str,
        tls_available: bool = False,
        tls_required: bool = False,
        scramble: bytes | None = None,
    ):
        self.tls_available = tls_available
        self.tls_required = tls_required
        self.server_caps = capabilities | (CLIENT.SSL if tls_available else 0)
        self._auth = _Authenticator(lookup, client_host, scramble or make_scramble())
        self._greeting = HandshakeV10(
            server_version, connection_id, self._auth.scramble, self.server_caps, charset,
            SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT, auth.NATIVE,
        )
        self.state = _GREETING_SENT
        self.capabilities = 0
        self.tls = False
        self._seq = 0
        self._response: HandshakeResponse | None = None

    @property
    def scramble(self) -> bytes:
        return self._auth.scramble

    def greeting(self) -> bytes:
        g = self._greeting
        scramble = g.scramble
        if len(scramble) != auth.SCRAMBLE_LENGTH:
            return encode_packet(make_handshake_v10(g), 0)
        head, middle, tail = _greeting_template(g.server_version, g.capabilities, g.charset, g.status, g.auth_plugin)
        return encode_packet(b"".join((head, int4(g.connection_id), scramble[:8], middle, scramble[8:], tail)), 0)

    def receive(self, packet: Packet) -> list[Event]:
        if packet.seq != next_seq(self._seq):
            return self._fail(Failed(ER_NET_PACKETS_OUT_OF_ORDER, "Got packets out of order"))
        self._seq = packet.seq
        try:
            if self.state is _GREETING_SENT:
                return self._on_response(packet.payload)
            if self.state is _AUTH_SWITCH_SENT:
                return self._on_auth_data(packet.payload)
        except RemoteProtocolError:
            return self._fail(Failed(ER.HANDSHAKE_ERROR, "Bad handshake"))
        return self._fail(Failed(ER.HANDSHAKE_ERROR, f"Bad handshake: unexpected packet in state {self.state.value}"))

    def _on_response(self, payload: BytesLike) -> list[Event]:
        if is_ssl_request(payload):
            if not self.tls_available or self.tls:
                return self._fail(Failed(ER.HANDSHAKE_ERROR, "Bad handshake: TLS is not enabled on this proxy"))
            self.tls = True
            return [StartTLS()]
        resp = parse_handshake_response(payload)
        self._response = resp
        self.capabilities = resp.capabilities & self.server_caps
        if self.tls_required and not self.tls:
            return self._fail(Failed(ER_SECURE_TRANSPORT_REQUIRED, INSECURE_TRANSPORT_MESSAGE))
        outcome, data = self._auth.start(resp.user, resp.auth_plugin, resp.auth_response)
        return self._after(outcome, data)

    def _verified(self) -> Verified:
        resp = self._response
        assert resp is not None  # VERIFIED follows a HandshakeResponse
        return Verified(resp.user, resp.database, self.capabilities, resp.charset, resp.connect_attrs,
                        self._auth.plugin)


class ChangeUserAuth(_AuthExchange):
    """COM_CHANGE_USER: re-authenticate against the proxy's users, then OK or ERR.

    Uses the scramble of the original handshake, as the server does. The
    caller sends the `Send` bytes; `Verified` carries the new user and schema.
    """

    __slots__ = ("_request",)

    def __init__(self, lookup: CredentialsLookup, client_host: str, scramble: bytes, capabilities: int):
        self._auth = _Authenticator(lookup, client_host, scramble)
        self.capabilities = capabilities
        self.state = HandshakeState.GREETING_SENT
        self._seq = 0
        self._request: ChangeUser | None = None

    def start(self, request: ChangeUser, seq: int = 0) -> list[Event]:
        self._seq = seq
        self._request = request
        outcome, data = self._auth.start(request.user, request.auth_plugin, request.auth_response)
        return self._after(outcome, data)

    def receive(self, packet: Packet) -> list[Event]:
        if self.state is not HandshakeState.AUTH_SWITCH_SENT or packet.seq != next_seq(self._seq):
            return self._fail(Failed(ER_NET_PACKETS_OUT_OF_ORDER, "Got packets out of order"))
        self._seq = packet.seq
        return self._on_auth_data(packet.payload)

    def _verified(self) -> Verified:
        req = self._request
        assert req is not None  # VERIFIED follows start()
        return Verified(req.user, req.database, self.capabilities, req.charset, req.connect_attrs, self._auth.plugin)

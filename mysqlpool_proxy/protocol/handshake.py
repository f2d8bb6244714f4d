"""The client-facing connection phase, as a sans-IO state machine.

    GREETING_SENT --SSLRequest--> GREETING_SENT (tls)   [StartTLS]
    GREETING_SENT --HandshakeResponse41--> VERIFIED | AUTH_SWITCH_SENT | AUTH_MORE_SENT | FAILED
    AUTH_SWITCH_SENT | AUTH_MORE_SENT --auth data--> VERIFIED | AUTH_MORE_SENT | FAILED
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
Each plugin is a few steps (`_Authenticator._next` is the one that takes the
client's next packet):

* mysql_native_password: the scramble, checked.
* caching_sha2_password: the proxy's "cache" holds every user whose password
  it knows (its SHA256(SHA256(pw))). A 32-byte scramble that checks out gets
  fast_auth_success (AuthMoreData 0x03) then OK; one that does not is a
  wrong password (1045). Anything else: no scramble, a scramble of another
  length, a user the proxy knows only by its `*HEX` hash, or a client just
  switched to this plugin, gets perform_full_authentication (0x04), and the
  client sends its password: in clear over TLS or a Unix socket, else
  RSA-encrypted, after asking for the public key (0x02) if it has none.
* sha256_password: the same password exchange from the first packet (0x01
  asks for the key).
* client_ed25519: the proxy sends a fresh 32-byte nonce (AuthMoreData when
  the client opened with the plugin, else in the AuthSwitchRequest), and
  checks the 64-byte signature against the key derived from the password.
* mysql_clear_password: the password itself, taken over TLS or a Unix socket
  only; a client that opens with it over plain TCP is switched to another of
  the user's plugins, as MariaDB switches it to the account's (its password,
  already sent, is not looked at).

Which plugins a user may use, and in which order the proxy prefers them, is
`Credentials.allowed`. A client opening with a plugin it may not use (or
that needs what this connection lacks: TLS for mysql_clear_password, the
RSA keys for the password exchanges over plain TCP) is switched to the first
usable one. A user known only by its `*HEX` hash who opens with
caching_sha2_password is switched to mysql_native_password where that is
allowed (it needs neither TLS nor RSA).
"""

from __future__ import annotations

import enum
import functools
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..constants import (
    CLIENT,
    CLIENT_ZSTD_COMPRESSION_ALGORITHM,
    ER,
    ER_SECURE_TRANSPORT_REQUIRED,
    SERVER_STATUS,
    sqlstate_for,
)
from ..errors import RemoteProtocolError
from . import auth
from .compression import Codec, Zlib, Zstd, zstd_level
from .framing import HEADER_SIZE, Oversized, Packet, encode_packet, next_seq
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

ER_NET_PACKETS_OUT_OF_ORDER: Final = 1156
FAST_AUTH_SUCCESS: Final = b"\x03"
PERFORM_FULL_AUTHENTICATION: Final = b"\x04"
SHA2_REQUEST_PUBLIC_KEY: Final = b"\x02"  # caching_sha2_password, after perform_full_authentication
SHA256_REQUEST_PUBLIC_KEY: Final = b"\x01"  # sha256_password
# The largest packet of a login (HandshakeResponse, auth data, COM_CHANGE_USER's auth
# exchange): up to 64 KiB of connect attributes (the clients' own limit) plus ample
# room for user, schema, plugin and auth data, which take a few hundred bytes.
MAX_LOGIN_PACKET: Final = (64 + 16) * 1024
INSECURE_TRANSPORT_MESSAGE: Final = (
    "Connections using insecure transport are prohibited while --require_secure_transport=ON.")
# PyMySQL's flags read on every login, as compiled constants (CLIENT and SERVER_STATUS are modules:
# `CLIENT.SSL` is a lookup by name each time it is read).
_SSL: Final[int] = CLIENT.SSL
_PROTOCOL_41: Final[int] = CLIENT.PROTOCOL_41
_COMPRESS: Final[int] = CLIENT.COMPRESS
_AUTOCOMMIT: Final[int] = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT

CredentialsLookup = Callable[[bytes], "auth.Credentials | None"]


class HandshakeState(enum.Enum):
    GREETING_SENT = "greeting_sent"
    AUTH_SWITCH_SENT = "auth_switch_sent"
    AUTH_MORE_SENT = "auth_more_sent"
    VERIFIED = "verified"
    DONE = "done"
    FAILED = "failed"


# The states every login passes through, as module globals: on Python 3.11 reading
# `HandshakeState.VERIFIED` runs EnumType's __getattr__ hook, ~20 times a global's cost.
_GREETING_SENT: Final = HandshakeState.GREETING_SENT
_AUTH_SWITCH_SENT: Final = HandshakeState.AUTH_SWITCH_SENT
_AUTH_MORE_SENT: Final = HandshakeState.AUTH_MORE_SENT
_VERIFIED: Final = HandshakeState.VERIFIED
_DONE: Final = HandshakeState.DONE
_FAILED: Final = HandshakeState.FAILED


# The events are made for every login, so their __init__ is written out: mypyc compiles them (a
# dataclass's generated __init__, and a whole dataclass with slots=True, stay interpreted, and
# every read of an interpreted class's attribute is a lookup by name). The dataclass gives == and repr.
@dataclass(init=False)
class Send:
    data: bytes

    def __init__(self, data: bytes) -> None:
        self.data = data


@dataclass
class StartTLS:
    pass


@dataclass(init=False)
class Verified:
    user: bytes
    database: bytes | None
    capabilities: int
    charset: int | None
    connect_attrs: dict[bytes, bytes]
    plugin: bytes

    def __init__(self, user: bytes, database: bytes | None, capabilities: int, charset: int | None,
                 connect_attrs: dict[bytes, bytes], plugin: bytes) -> None:
        self.user = user
        self.database = database
        self.capabilities = capabilities
        self.charset = charset
        self.connect_attrs = connect_attrs
        self.plugin = plugin

    @property
    def program(self) -> str | None:
        """What the client says it is, for operators: its `program_name` connect attribute,
        else its driver's `_client_name` (PyMySQL, libmariadb, Connector/J...); at most 64
        characters."""
        name = self.connect_attrs.get(b"program_name") or self.connect_attrs.get(b"_client_name")
        return name.decode("utf-8", "replace")[:64] if name else None


@dataclass(init=False)
class Failed:
    errno: int
    message: str
    detail: str  # for the proxy's log only: why, when the client's message does not say

    def __init__(self, errno: int, message: str, detail: str = "") -> None:
        self.errno = errno
        self.message = message
        self.detail = detail


Event = Send | StartTLS | Verified | Failed


# Random bytes below 188 (2 x 94) map evenly onto 33..126; the others are dropped.
_PRINTABLE = bytes(33 + b % 94 for b in range(256))
_UNEVEN = bytes(range(188, 256))


class _PrintableRandom:
    """Uniformly random printable bytes, read from the OS a block at a time: one getrandom() call
    serves about 150 scrambles instead of one. A forked worker starts with none of its parent's."""

    __slots__ = ("_bytes", "_pos")
    BLOCK = 4096

    def __init__(self) -> None:
        self._bytes = b""
        self._pos = 0

    def take(self, n: int) -> bytes:
        pos = self._pos
        while pos + n > len(self._bytes):  # (about 3,000 of a block's 4,096 bytes are kept)
            self._bytes = secrets.token_bytes(self.BLOCK).translate(_PRINTABLE, _UNEVEN)
            pos = 0
        self._pos = pos + n
        return self._bytes[pos:pos + n]

    def forget(self) -> None:
        self._bytes = b""
        self._pos = 0


_RANDOM = _PrintableRandom()
os.register_at_fork(after_in_child=_RANDOM.forget)


def make_scramble() -> bytes:
    """20 printable ASCII bytes (33..126), uniformly random, like the server's: no NUL, safe
    for every client. (Cut from a block of random bytes translated at once: this runs for every
    connection.)"""
    return _RANDOM.take(auth.SCRAMBLE_LENGTH)


def access_denied_message(user: bytes, host: str, token: bytes) -> str:
    using = "YES" if token not in (b"", b"\0") else "NO"
    name = user.decode("utf-8", "replace")
    return f"Access denied for user '{name}'@'{host}' (using password: {using})"


Outcome = tuple[str, bytes]  # ("ok", extra) / ("switch" | "more", payload) / ("denied", token)
Step = Callable[[bytes], Outcome]


@functools.lru_cache(maxsize=16)
def _greeting_template(server_version: bytes, capabilities: int, charset: int, status: int,
                       plugin: bytes) -> tuple[bytes, bytes, bytes]:
    """The greeting packet (framed, sequence id 0) around its connection id and the two halves of a
    20-byte scramble: the same for every client of a server, so built once (by make_handshake_v10) and cut."""
    payload = encode_packet(make_handshake_v10(HandshakeV10(
        server_version, 0, b"\0" * auth.SCRAMBLE_LENGTH, capabilities, charset, status, plugin)), 0)
    head = HEADER_SIZE + 1 + len(server_version) + 1  # frame header, protocol version, server version, NUL
    middle = head + 4 + 8  # connection id, first 8 bytes of the scramble
    tail = middle + 19 + auth.SCRAMBLE_LENGTH - 8  # NUL, flags, charset, status, length, reserved; the rest
    return payload[:head], payload[middle:middle + 19], payload[tail:]


# The OK packets that end logins, framed, by (status << 8 | sequence id): the same for every
# client with them (a login's status is a few sticky bits), so each is built once.
_OK_PACKETS: Final[dict[int, bytes]] = {}


def _ok_packet(status: int, seq: int) -> bytes:
    key = status << 8 | seq
    packet = _OK_PACKETS.get(key)
    if packet is None:
        if len(_OK_PACKETS) >= 1024:  # (never, with sticky bits only; a bound all the same)
            _OK_PACKETS.clear()
        packet = _OK_PACKETS[key] = encode_packet(make_ok(0, status), seq)
    return packet


@functools.lru_cache(maxsize=1024)
def _usable_plugins(creds: auth.Credentials, secure: bool, exchange_ok: bool) -> tuple[bytes, ...]:
    """A user's plugins that can run on a connection (`exchange_ok`: a password may be exchanged, over
    TLS or RSA), preferred first. The same for every login of the user: remembered."""
    cached = creds.sha2_hash is not None or creds.empty
    usable = []
    for p in creds.plugins():
        if p == auth.CLEAR and not secure:
            continue
        if (p == auth.SHA256 or (p == auth.CACHING_SHA2 and not cached)) and not exchange_ok:
            continue
        usable.append(p)
    return tuple(usable)


class _Authenticator:
    """Plugin negotiation and verification, shared by handshake and change-user.

    `start()` takes the client's first auth data; when it returns "switch" or
    "more", `next()` takes the client's next packet.
    """

    __slots__ = ("lookup", "client_host", "scramble", "rsa", "secure", "plugin", "user", "creds", "detail",
                 "_next", "_nonce")

    def __init__(self, lookup: CredentialsLookup, client_host: str, scramble: bytes,
                 rsa: auth.RsaKeys | None = None):
        self.lookup = lookup
        self.client_host = client_host
        self.scramble = scramble
        self.rsa = rsa
        self.secure = False  # TLS or a Unix socket: a password may come in clear
        self.plugin = auth.NATIVE
        self.user = b""
        self.creds: auth.Credentials | None = None
        self.detail = ""
        self._next: Step | None = None
        self._nonce = b""

    @property
    def _checked(self) -> auth.Credentials:
        """What the login is checked against: the user's, or a decoy's for an unknown user."""
        return self.creds or auth.dummy_credentials(self.user)

    def start(self, user: bytes, client_plugin: bytes | None, token: bytes, *, secure: bool) -> Outcome:
        self.user = user
        self.creds = self.lookup(user)
        self.secure = secure
        creds = self._checked
        plugin = client_plugin or auth.NATIVE
        usable = self._usable(creds)
        if plugin in usable and not self._prefer_native(plugin, creds, usable):
            self.plugin = plugin
            return self._first(token)
        if not usable:
            return self._denied(token, "none of the user's auth_plugins can be used on this connection "
                                       "(mysql_clear_password needs TLS or a Unix socket)")
        return self._switch(usable[0])

    def next(self, data: bytes) -> Outcome:
        step, self._next = self._next, None
        if step is None:
            return self._denied(data, "auth data when none was asked for")
        return step(data)

    # -- choosing ---------------------------------------------------------------------------

    def _usable(self, creds: auth.Credentials) -> tuple[bytes, ...]:
        """The user's plugins that can run on this connection, preferred first."""
        return _usable_plugins(creds, self.secure, self.secure or self.rsa is not None)

    @staticmethod
    def _prefer_native(plugin: bytes, creds: auth.Credentials, usable: tuple[bytes, ...]) -> bool:
        """A user known only by its *HEX hash who opens with caching_sha2_password is switched to
        mysql_native_password where allowed, rather than made to send its password."""
        return plugin == auth.CACHING_SHA2 and creds.sha2_hash is None and not creds.empty and auth.NATIVE in usable

    def _switch(self, plugin: bytes) -> Outcome:
        self.plugin = plugin
        if plugin == auth.ED25519:
            self._nonce = secrets.token_bytes(auth.ED25519_NONCE_LENGTH)
            return self._wait("switch", make_auth_switch(plugin, self._nonce), self._ed25519_signature)
        if plugin == auth.CLEAR:
            return self._wait("switch", make_auth_switch(plugin, b""), self._cleartext)
        step = {auth.NATIVE: self._scramble, auth.CACHING_SHA2: self._sha2_after_switch,
                auth.SHA256: self._sha256}[plugin]
        return self._wait("switch", make_auth_switch(plugin, self.scramble + b"\0"), step)

    def _first(self, token: bytes) -> Outcome:
        """The auth data of the client's first packet, for the plugin it opened with."""
        if self.plugin == auth.ED25519:  # the client's first packet carries nothing: it waits for a nonce
            self._nonce = secrets.token_bytes(auth.ED25519_NONCE_LENGTH)
            return self._wait("more", make_auth_more_data(self._nonce), self._ed25519_signature)
        if self.plugin == auth.CACHING_SHA2:
            return self._sha2_first(token)
        if self.plugin == auth.SHA256:
            return self._sha256(token)
        if self.plugin == auth.CLEAR:
            return self._cleartext(token)
        return self._scramble(token)

    def _wait(self, kind: str, payload: bytes, step: Step) -> Outcome:
        self._next = step
        return kind, payload

    # -- the plugins' steps -----------------------------------------------------------------

    def _scramble(self, token: bytes) -> Outcome:
        """mysql_native_password."""
        return self._result(auth.verify(auth.NATIVE, self._checked, self.scramble, token), token)

    def _sha2_first(self, token: bytes) -> Outcome:
        creds = self._checked
        if creds.empty and token in (b"", b"\0"):
            return self._result(True, token)
        cached = creds.sha2_hash is not None or creds.empty
        if cached and len(token) == 32:  # a scramble the proxy can check: right (fast path) or wrong
            ok = auth.verify(auth.CACHING_SHA2, creds, self.scramble, token)
            return self._result(ok, token, make_auth_more_data(FAST_AUTH_SUCCESS))
        return self._full_authentication()

    def _sha2_after_switch(self, token: bytes) -> Outcome:
        if self._checked.empty and token in (b"", b"\0"):
            return self._result(True, token)
        return self._full_authentication()

    def _full_authentication(self) -> Outcome:
        return self._wait("more", make_auth_more_data(PERFORM_FULL_AUTHENTICATION), self._sha2_password)

    def _sha2_password(self, data: bytes) -> Outcome:
        return self._password(data, SHA2_REQUEST_PUBLIC_KEY)

    def _sha256(self, data: bytes) -> Outcome:
        return self._password(data, SHA256_REQUEST_PUBLIC_KEY)

    def _password(self, data: bytes, key_request: bytes | None) -> Outcome:
        """The password itself: in clear over TLS / a Unix socket, else RSA-encrypted (the client may
        first ask for the public key, once)."""
        if data == key_request and self.rsa is not None:
            return self._wait("more", make_auth_more_data(self.rsa.public_pem), self._encrypted_password)
        if data in (b"", b"\0"):  # an empty password: nothing secret was sent
            return self._result(auth.check_cleartext(self._checked, b""), b"")
        if not self.secure:
            return self._encrypted_password(data)
        return self._result(auth.check_cleartext(self._checked, auth.strip_nul(data)), data)

    def _encrypted_password(self, data: bytes) -> Outcome:
        """RSA-encrypted: over plain TCP, or after the client asked for the key (even over TLS)."""
        password = self.rsa.decrypt_password(data, self.scramble) if self.rsa is not None else None
        if password is None:
            return self._denied(data, f"{self.plugin.decode()}: the password was neither RSA-encrypted with the "
                                      f"proxy's public key nor sent over TLS or a Unix socket")
        return self._result(auth.check_cleartext(self._checked, password), data)

    def _cleartext(self, data: bytes) -> Outcome:
        """mysql_clear_password (only ever asked for, or accepted, on a secure connection)."""
        if not self.secure:
            return self._denied(data, "mysql_clear_password over a connection without TLS")
        return self._result(auth.check_cleartext(self._checked, auth.strip_nul(data)), data)

    def _ed25519_signature(self, signature: bytes) -> Outcome:
        return self._result(auth.verify_ed25519(self._checked, self._nonce, signature), signature)

    # -- endings ----------------------------------------------------------------------------

    def _result(self, ok: bool, token: bytes, extra: bytes = b"") -> Outcome:
        if not ok or self.creds is None:
            return self._denied(token)
        return "ok", extra

    def _denied(self, token: bytes, detail: str = "") -> Outcome:
        self.detail = detail
        return "denied", token

    def denied(self, token: bytes) -> Failed:
        return Failed(ER.ACCESS_DENIED_ERROR, access_denied_message(self.user, self.client_host, token), self.detail)


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
        self.state = _FAILED
        caps = self.capabilities or _PROTOCOL_41
        return self._send(make_err(failure.errno, sqlstate_for(failure.errno), failure.message, caps))

    def _verified(self) -> Verified:
        raise NotImplementedError

    def _after(self, outcome: str, data: bytes) -> list[Event]:
        if outcome in ("switch", "more"):
            self.state = _AUTH_SWITCH_SENT if outcome == "switch" else _AUTH_MORE_SENT
            return [self._send(data)]
        if outcome == "denied":
            return self._fail(self._auth.denied(data))
        self.state = _VERIFIED
        events: list[Event] = [self._send(data)] if data else []
        events.append(self._verified())
        return events

    @property
    def awaiting_auth_data(self) -> bool:
        """The client's next packet is auth data (after an AuthSwitchRequest or AuthMoreData)."""
        state = self.state
        return state is _AUTH_SWITCH_SENT or state is _AUTH_MORE_SENT

    def _on_auth_data(self, payload: BytesLike) -> list[Event]:
        outcome, data = self._auth.next(bytes(payload))
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
        self._seq = next_seq(self._seq)
        return _ok_packet(status, self._seq)  # (make_ok's, for any capabilities: no session state in it)

    def reject(self, errno: int, message: str) -> bytes:
        """Send ERR instead of OK (e.g. the requested schema does not exist)."""
        return self._err(Failed(errno, message)).data


class ServerHandshake(_AuthExchange):
    """One client's connection phase."""

    __slots__ = ("server_caps", "_server_version", "_connection_id", "_charset", "_response", "tls_available",
                 "tls_required", "tls", "unix_socket")

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
        unix_socket: bool = False,
        rsa: auth.RsaKeys | None = None,
    ):
        self.tls_available = tls_available
        self.tls_required = tls_required
        self.unix_socket = unix_socket
        self.server_caps = capabilities | (_SSL if tls_available else 0)
        self._auth = _Authenticator(lookup, client_host, scramble or make_scramble(), rsa)
        self._server_version = server_version
        self._connection_id = connection_id
        self._charset = charset
        self.state = _GREETING_SENT
        self.capabilities = 0
        self.tls = False
        self._seq = 0
        self._response: HandshakeResponse | None = None

    @property
    def scramble(self) -> bytes:
        return self._auth.scramble

    @property
    def secure(self) -> bool:
        """Over TLS or a Unix socket: a password may be sent in clear."""
        return self.tls or self.unix_socket

    def greeting(self) -> bytes:
        scramble = self._auth.scramble
        if len(scramble) != auth.SCRAMBLE_LENGTH:
            return encode_packet(make_handshake_v10(HandshakeV10(
                self._server_version, self._connection_id, scramble, self.server_caps, self._charset, _AUTOCOMMIT,
                auth.NATIVE)), 0)
        head, middle, tail = _greeting_template(self._server_version, self.server_caps, self._charset, _AUTOCOMMIT,
                                                auth.NATIVE)
        return b"".join((head, int4(self._connection_id), scramble[:8], middle, scramble[8:], tail))

    def receive(self, packet: Packet) -> list[Event]:
        if packet.seq != next_seq(self._seq):
            return self._fail(Failed(ER_NET_PACKETS_OUT_OF_ORDER, "Got packets out of order"))
        self._seq = packet.seq
        try:
            if self.state is _GREETING_SENT:
                return self._on_response(packet.payload)
            if self.awaiting_auth_data:
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
        outcome, data = self._auth.start(resp.user, resp.auth_plugin, resp.auth_response, secure=self.secure)
        return self._after(outcome, data)

    def compression(self) -> Codec | None:
        """The codec of the compressed protocol the client negotiated, None for none. A client that sets
        both CLIENT_COMPRESS and CLIENT_ZSTD_COMPRESSION_ALGORITHM gets zlib, as MySQL's server checks
        CLIENT_COMPRESS first (its own client library only ever sets one)."""
        if self.capabilities & _COMPRESS:
            return Zlib()
        if self.capabilities & CLIENT_ZSTD_COMPRESSION_ALGORITHM:
            resp = self._response
            return Zstd(zstd_level(resp.zstd_level if resp is not None else 0))
        return None

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

    __slots__ = ("_request", "secure")

    def __init__(self, lookup: CredentialsLookup, client_host: str, scramble: bytes, capabilities: int, *,
                 secure: bool = False, rsa: auth.RsaKeys | None = None):
        self._auth = _Authenticator(lookup, client_host, scramble, rsa)
        self.secure = secure
        self.capabilities = capabilities
        self.state = _GREETING_SENT
        self._seq = 0
        self._request: ChangeUser | None = None

    def start(self, request: ChangeUser, seq: int = 0) -> list[Event]:
        self._seq = seq
        self._request = request
        outcome, data = self._auth.start(request.user, request.auth_plugin, request.auth_response,
                                         secure=self.secure)
        return self._after(outcome, data)

    def receive(self, packet: Packet) -> list[Event]:
        if not self.awaiting_auth_data or packet.seq != next_seq(self._seq):
            return self._fail(Failed(ER_NET_PACKETS_OUT_OF_ORDER, "Got packets out of order"))
        self._seq = packet.seq
        return self._on_auth_data(packet.payload)

    def _verified(self) -> Verified:
        req = self._request
        assert req is not None  # VERIFIED follows start()
        return Verified(req.user, req.database, self.capabilities, req.charset, req.connect_attrs, self._auth.plugin)

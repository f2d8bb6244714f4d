# The login plugins beyond the scramble ones, byte by byte: caching_sha2_password's
# full authentication (cleartext over TLS or a Unix socket, RSA-OAEP over plain TCP
# with and without asking for the public key), sha256_password, MariaDB's
# client_ed25519 (its public key against MariaDB's own vectors, the nonce as
# AuthMoreData or in the AuthSwitchRequest), mysql_clear_password (TLS or Unix socket
# only), and the per-user choice of plugins (Credentials.allowed). Every exchange goes
# through HandshakePeer (a PacketDecoder as the client connection runs it), fed whole
# and byte by byte; PyMySQL's own client code runs the same exchanges.
from __future__ import annotations

import base64

import pytest

from mysqlpool_proxy.protocol import auth
from mysqlpool_proxy.protocol.framing import encode_packet
from mysqlpool_proxy.protocol.handshake import (
    ChangeUserAuth,
    HandshakeState,
    ServerHandshake,
    Verified,
)
from mysqlpool_proxy.protocol.packets import ErrPacket, parse_change_user, parse_err, parse_ok

from .helpers import (
    BASIC_CLIENT_FLAGS,
    PROXY_CAPS,
    HandshakePeer,
    PyMySQLClient,
    decode_all,
    handshake_response,
    ssl_request as make_ssl_request,
)

SCRAMBLE = b"A1b2C3d4E5f6G7h8I9j0"
HOST = "10.1.2.3"
SECRET_HASH = "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"  # PASSWORD('secret')
NATIVE, SHA2, SHA256, ED25519, CLEAR = auth.NATIVE, auth.CACHING_SHA2, auth.SHA256, auth.ED25519, auth.CLEAR
KEYS = auth.RsaKeys.generate()

USERS = {
    b"app": auth.credentials_from_password("secret"),
    b"legacy": auth.credentials_from_native_hash(SECRET_HASH),
    b"nopw": auth.credentials_from_password(""),
    b"sha2only": auth.credentials_from_password("secret", (SHA2,)),
    b"legacy_sha2": auth.credentials_from_native_hash(SECRET_HASH, (SHA2,)),
    b"sha256only": auth.credentials_from_password("secret", (SHA256,)),
    b"edonly": auth.credentials_from_password("secret", (ED25519,)),
    b"clear": auth.credentials_from_password("secret", (CLEAR, NATIVE)),
    b"clearonly": auth.credentials_from_password("secret", (CLEAR,)),
}

BYTEWISE = pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])


def make_hs(*, tls: bool = False, unix: bool = False, rsa: auth.RsaKeys | None = KEYS) -> ServerHandshake:
    return ServerHandshake(
        connection_id=7, server_version=b"5.5.5-10.11.6-MariaDB-mysqlpool", capabilities=PROXY_CAPS, charset=45,
        lookup=USERS.get, client_host=HOST, tls_available=tls, scramble=SCRAMBLE, unix_socket=unix, rsa=rsa,
    )


def only(data: bytes):
    [p] = decode_all(data)
    return p


def is_ok(data: bytes, seq: int) -> bool:
    p = only(data)
    return p.seq == seq and p.payload[0] == 0


def denied(data: bytes, seq: int, user: bytes, using: str = "YES") -> None:
    p = only(data)
    assert p.seq == seq
    assert parse_err(p.payload) == ErrPacket(
        1045, "28000", f"Access denied for user '{user.decode()}'@'{HOST}' (using password: {using})".encode())


def login(peer: HandshakePeer, user: bytes, token: bytes, plugin: bytes | None, *, tls: bool = False) -> bytes:
    """Send the HandshakeResponse (after an SSLRequest with TLS); the proxy's reply."""
    seq = 1
    if tls:
        assert peer.receive(encode_packet(make_ssl_request(), 1)) == b""
        seq = 2
    return peer.receive(encode_packet(handshake_response(user, token, plugin=plugin), seq))


def sha2(pw: bytes) -> bytes:
    return auth.client_scramble_caching_sha2(pw, SCRAMBLE)


def rsa(pw: bytes) -> bytes:
    return auth.client_rsa_encrypt(pw, SCRAMBLE, KEYS.public_pem)


# -- the key pair ------------------------------------------------------------------------------


def test_rsa_keys_decrypt_what_clients_encrypt():
    assert KEYS.size == 256 and KEYS.public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert KEYS.decrypt_password(rsa(b"secret"), SCRAMBLE) == b"secret"
    assert KEYS.decrypt_password(rsa("pässwörd".encode()), SCRAMBLE + b"\0") == "pässwörd".encode()
    assert KEYS.decrypt_password(rsa(b"secret"), b"another scramble!!!!") != b"secret"
    assert KEYS.decrypt_password(b"\0" * 256, SCRAMBLE) is None
    assert KEYS.decrypt_password(rsa(b"secret")[:-1], SCRAMBLE) is None
    other = auth.RsaKeys.generate()
    assert other.decrypt_password(rsa(b"secret"), SCRAMBLE) is None


def test_rsa_keys_never_show_the_private_key():
    from cryptography.hazmat.primitives import serialization

    private_pem = KEYS._private.private_bytes(  # the test reaches in to check what repr() leaves out
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    text = repr(KEYS)
    assert "PRIVATE" not in text and private_pem.decode() not in text and "2048 bits" in text


def test_rsa_keys_from_pem():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa as rsa_mod

    private = rsa_mod.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    keys = auth.RsaKeys.from_pem(pem, public)
    assert keys.public_pem == public
    with pytest.raises(ValueError, match="does not belong"):
        auth.RsaKeys.from_pem(pem, KEYS.public_pem)
    with pytest.raises(ValueError, match="not an unencrypted PEM"):
        auth.RsaKeys.from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    small = rsa_mod.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(ValueError, match="1024 bits"):
        auth.RsaKeys.from_pem(small)


# -- caching_sha2_password: full authentication ------------------------------------------------


@BYTEWISE
def test_fast_path_still_answers_a_good_scramble(bytewise):
    peer = HandshakePeer(make_hs(), bytewise=bytewise)
    more, ok = decode_all(login(peer, b"app", sha2(b"secret"), SHA2))
    assert (more.seq, more.payload, ok.seq, ok.payload[0]) == (2, b"\x01\x03", 3, 0)


@BYTEWISE
def test_wrong_scramble_is_a_wrong_password(bytewise):
    peer = HandshakePeer(make_hs(), bytewise=bytewise)
    denied(login(peer, b"app", sha2(b"wrong"), SHA2), 2, b"app")


@BYTEWISE
@pytest.mark.parametrize("how", ["tls", "unix"])
def test_full_auth_cleartext_on_a_secure_connection(bytewise, how):
    """No scramble in the first packet: perform_full_authentication, then the password in clear."""
    peer = HandshakePeer(make_hs(tls=how == "tls", unix=how == "unix"), bytewise=bytewise)
    more = only(login(peer, b"app", b"", SHA2, tls=how == "tls"))
    first = 3 if how == "tls" else 2
    assert (more.seq, more.payload) == (first, b"\x01\x04")
    assert peer.hs.state is HandshakeState.AUTH_MORE_SENT
    assert is_ok(peer.receive(encode_packet(b"secret\0", first + 1)), first + 2)
    assert isinstance(peer.events[-1], Verified) and peer.events[-1].plugin == SHA2


@BYTEWISE
def test_full_auth_cleartext_wrong_password(bytewise):
    peer = HandshakePeer(make_hs(tls=True), bytewise=bytewise)
    login(peer, b"app", b"", SHA2, tls=True)
    denied(peer.receive(encode_packet(b"Secret\0", 4)), 5, b"app")


@BYTEWISE
def test_full_auth_rsa_after_asking_for_the_key(bytewise):
    peer = HandshakePeer(make_hs(), bytewise=bytewise)
    assert only(login(peer, b"app", b"x" * 20, SHA2)).payload == b"\x01\x04"  # a scramble of the wrong length
    key = only(peer.receive(encode_packet(b"\x02", 3)))
    assert key.seq == 4 and key.payload == b"\x01" + KEYS.public_pem
    assert is_ok(peer.receive(encode_packet(rsa(b"secret"), 5)), 6)
    assert peer.events[-1].plugin == SHA2


@BYTEWISE
def test_full_auth_rsa_with_a_key_the_client_already_has(bytewise):
    peer = HandshakePeer(make_hs(), bytewise=bytewise)
    login(peer, b"app", b"", SHA2)
    assert is_ok(peer.receive(encode_packet(rsa(b"secret"), 3)), 4)


@pytest.mark.parametrize("data", [
    b"secret\0",  # in clear over plain TCP: never accepted
    b"\x02\x00",
    b"\0" * 256,  # the right length, not a ciphertext
])
def test_full_auth_on_plain_tcp_refuses_anything_but_the_ciphertext(data):
    peer = HandshakePeer(make_hs())
    login(peer, b"app", b"", SHA2)
    denied(peer.receive(encode_packet(data, 3)), 4, b"app")
    assert "neither RSA-encrypted" in peer.events[-1].detail


def test_full_auth_rsa_wrong_password_and_replay_against_another_scramble():
    peer = HandshakePeer(make_hs())
    login(peer, b"app", b"", SHA2)
    denied(peer.receive(encode_packet(rsa(b"wrong"), 3)), 4, b"app")
    replayed = auth.client_rsa_encrypt(b"secret", b"another scramble!!!!", KEYS.public_pem)
    peer = HandshakePeer(make_hs())
    login(peer, b"app", b"", SHA2)
    denied(peer.receive(encode_packet(replayed, 3)), 4, b"app")


def test_full_auth_key_asked_for_only_once():
    peer = HandshakePeer(make_hs())
    login(peer, b"app", b"", SHA2)
    peer.receive(encode_packet(b"\x02", 3))
    denied(peer.receive(encode_packet(b"\x02", 5)), 6, b"app")


def test_full_auth_without_rsa_keys_on_plain_tcp_is_refused():
    peer = HandshakePeer(make_hs(rsa=None))
    login(peer, b"app", b"", SHA2)
    denied(peer.receive(encode_packet(b"\x02", 3)), 4, b"app")


@BYTEWISE
def test_switch_to_caching_sha2_asks_for_full_authentication(bytewise):
    """A user allowed only caching_sha2_password, opening with mysql_native_password."""
    peer = HandshakePeer(make_hs(), bytewise=bytewise)
    switch = only(login(peer, b"sha2only", auth.client_scramble_native(b"secret", SCRAMBLE), NATIVE))
    assert (switch.seq, switch.payload) == (2, b"\xfe" + SHA2 + b"\0" + SCRAMBLE + b"\0")
    assert peer.hs.state is HandshakeState.AUTH_SWITCH_SENT
    # the client answers with a good scramble; the proxy still wants the password
    assert only(peer.receive(encode_packet(sha2(b"secret"), 3))).payload == b"\x01\x04"
    assert only(peer.receive(encode_packet(b"\x02", 5))).payload == b"\x01" + KEYS.public_pem
    assert is_ok(peer.receive(encode_packet(rsa(b"secret"), 7)), 8)
    assert peer.events[-1].plugin == SHA2


@BYTEWISE
def test_hash_only_user_through_full_authentication(bytewise):
    """Known only by its *HEX hash and allowed only caching_sha2: the password is checked against the hash."""
    peer = HandshakePeer(make_hs(), bytewise=bytewise)
    assert only(login(peer, b"legacy_sha2", sha2(b"secret"), SHA2)).payload == b"\x01\x04"  # no fast path
    assert is_ok(peer.receive(encode_packet(rsa(b"secret"), 3)), 4)
    peer = HandshakePeer(make_hs())
    login(peer, b"legacy_sha2", sha2(b"secret"), SHA2)
    denied(peer.receive(encode_packet(rsa(b"wrong"), 3)), 4, b"legacy_sha2")


def test_hash_only_user_opening_with_caching_sha2_is_switched_to_native_where_allowed():
    peer = HandshakePeer(make_hs())
    assert only(login(peer, b"legacy", sha2(b"secret"), SHA2)).payload == b"\xfe" + NATIVE + b"\0" + SCRAMBLE + b"\0"


@pytest.mark.parametrize("token", [b"", b"\0"])
def test_empty_password_needs_no_full_authentication(token):
    peer = HandshakePeer(make_hs())
    assert is_ok(login(peer, b"nopw", token, SHA2), 2)


def test_no_scramble_for_a_user_with_a_password_ends_denied_without_password():
    peer = HandshakePeer(make_hs(tls=True))
    login(peer, b"app", b"", SHA2, tls=True)
    denied(peer.receive(encode_packet(b"\0", 4)), 5, b"app", "NO")


def test_unknown_user_full_auth_looks_like_a_wrong_password():
    peer = HandshakePeer(make_hs())
    reply = only(login(peer, b"ghost", b"", SHA2))
    if reply.payload[:1] == b"\xfe":  # a hash-only decoy is switched to native first
        denied(peer.receive(encode_packet(auth.client_scramble_native(b"secret", SCRAMBLE), 3)), 4, b"ghost")
        return
    assert reply.payload == b"\x01\x04"
    denied(peer.receive(encode_packet(rsa(b"secret"), 3)), 4, b"ghost")


# -- sha256_password ------------------------------------------------------------------------------


@BYTEWISE
def test_sha256_rsa_after_asking_for_the_key(bytewise):
    peer = HandshakePeer(make_hs(), bytewise=bytewise)
    key = only(login(peer, b"app", b"\x01", SHA256))
    assert (key.seq, key.payload) == (2, b"\x01" + KEYS.public_pem)
    assert is_ok(peer.receive(encode_packet(rsa(b"secret"), 3)), 4)
    assert peer.events[-1].plugin == SHA256


@BYTEWISE
def test_sha256_cleartext_over_tls(bytewise):
    peer = HandshakePeer(make_hs(tls=True), bytewise=bytewise)
    assert is_ok(login(peer, b"app", b"secret\0", SHA256, tls=True), 3)


def test_sha256_failures():
    denied(login(HandshakePeer(make_hs(tls=True)), b"app", b"wrong\0", SHA256, tls=True), 3, b"app")
    denied(login(HandshakePeer(make_hs()), b"app", b"secret\0", SHA256), 2, b"app")  # clear over plain TCP
    denied(login(HandshakePeer(make_hs()), b"app", b"\0", SHA256), 2, b"app", "NO")
    assert is_ok(login(HandshakePeer(make_hs()), b"nopw", b"\0", SHA256), 2)


def test_sha256_without_rsa_keys_on_plain_tcp_switches_to_native():
    assert only(login(HandshakePeer(make_hs(rsa=None)), b"app", b"\x01", SHA256)).payload[:1] == b"\xfe"


@BYTEWISE
def test_switch_to_sha256(bytewise):
    peer = HandshakePeer(make_hs(), bytewise=bytewise)
    switch = only(login(peer, b"sha256only", auth.client_scramble_native(b"secret", SCRAMBLE), NATIVE))
    assert switch.payload == b"\xfe" + SHA256 + b"\0" + SCRAMBLE + b"\0"
    assert only(peer.receive(encode_packet(b"\x01", 3))).payload == b"\x01" + KEYS.public_pem
    assert is_ok(peer.receive(encode_packet(rsa(b"secret"), 5)), 6)


# -- client_ed25519 -------------------------------------------------------------------------------

# MariaDB's ed25519_password() (mysql-test/suite/plugins/r/auth_ed25519.result), and of "" from PyMySQL's tests
MARIADB_KEYS = {
    b"foo": "vubFBzIrapbfHct1/J72dnUryz5VS7lA6XHH8sIx4TI",
    b"foobar": "qv2mG6HWCuy32Slb5xhV4THStewNz2VINVPbgk+XAJ8",
    b"foo bar": "Y5fV74JAVRMOK2cdnUsYS+WW9sXaaL/o+6WGKOgqnzc",
    b"": "4LH+dBF+G5W2CKTyId8xR3SyDqZoQjUNUVNxx8aWbG4",
}


@pytest.mark.parametrize("password", list(MARIADB_KEYS))
def test_ed25519_public_key_matches_mariadb(password):
    assert auth.ed25519_public_key(password) == base64.b64decode(MARIADB_KEYS[password] + "=")


def test_ed25519_verify():
    creds = auth.credentials_from_password("secret")
    nonce = bytes(range(32))
    sig = auth.client_ed25519_sign(b"secret", nonce)
    assert len(sig) == 64 and auth.verify_ed25519(creds, nonce, sig)
    assert not auth.verify_ed25519(creds, bytes(32), sig)  # another nonce
    assert not auth.verify_ed25519(creds, nonce, auth.client_ed25519_sign(b"Secret", nonce))
    assert not auth.verify_ed25519(creds, nonce, sig[:63])
    assert not auth.verify_ed25519(creds, nonce, b"\xff" * 64)
    assert not auth.verify_ed25519(auth.credentials_from_native_hash(SECRET_HASH), nonce, sig)  # no key known


def _nonce_of(payload: bytes, prefix: bytes) -> bytes:
    assert payload.startswith(prefix) and len(payload) == len(prefix) + 32
    return payload[len(prefix):]


@BYTEWISE
def test_ed25519_client_opening_with_the_plugin_gets_the_nonce_as_auth_more_data(bytewise):
    """As the mariadb client does with --default-auth=client_ed25519: empty auth data first."""
    peer = HandshakePeer(make_hs(), bytewise=bytewise)
    more = only(login(peer, b"app", b"", ED25519))
    assert more.seq == 2
    nonce = _nonce_of(more.payload, b"\x01")
    assert is_ok(peer.receive(encode_packet(auth.client_ed25519_sign(b"secret", nonce), 3)), 4)
    assert peer.events[-1].plugin == ED25519


@BYTEWISE
def test_ed25519_by_switch(bytewise):
    peer = HandshakePeer(make_hs(), bytewise=bytewise)
    switch = only(login(peer, b"edonly", auth.client_scramble_native(b"secret", SCRAMBLE), NATIVE))
    nonce = _nonce_of(switch.payload, b"\xfe" + ED25519 + b"\0")
    assert is_ok(peer.receive(encode_packet(auth.client_ed25519_sign(b"secret", nonce), 3)), 4)


def test_ed25519_nonce_is_fresh_and_not_the_scramble():
    nonces = {only(login(HandshakePeer(make_hs()), b"app", b"", ED25519)).payload for _ in range(5)}
    assert len(nonces) == 5 and not any(SCRAMBLE in n for n in nonces)


@pytest.mark.parametrize("password", [b"wrong", b""])
def test_ed25519_wrong_password(password):
    peer = HandshakePeer(make_hs())
    nonce = only(login(peer, b"app", b"", ED25519)).payload[1:]
    denied(peer.receive(encode_packet(auth.client_ed25519_sign(password, nonce), 3)), 4, b"app")


def test_ed25519_signature_replayed_on_another_connection():
    peer = HandshakePeer(make_hs())
    nonce = only(login(peer, b"app", b"", ED25519)).payload[1:]
    sig = auth.client_ed25519_sign(b"secret", nonce)
    again = HandshakePeer(make_hs())
    login(again, b"app", b"", ED25519)
    denied(again.receive(encode_packet(sig, 3)), 4, b"app")


def test_ed25519_empty_password_and_hash_only_user():
    peer = HandshakePeer(make_hs())
    nonce = only(login(peer, b"nopw", b"", ED25519)).payload[1:]
    assert is_ok(peer.receive(encode_packet(auth.client_ed25519_sign(b"", nonce), 3)), 4)
    # no password, no key: switched to a plugin the proxy can check
    assert only(login(HandshakePeer(make_hs()), b"legacy", b"", ED25519)).payload[:1] == b"\xfe"


# -- mysql_clear_password --------------------------------------------------------------------------


@BYTEWISE
@pytest.mark.parametrize("how", ["tls", "unix"])
def test_clear_password_on_a_secure_connection(bytewise, how):
    peer = HandshakePeer(make_hs(tls=how == "tls", unix=how == "unix"), bytewise=bytewise)
    assert is_ok(login(peer, b"clear", b"secret\0", CLEAR, tls=how == "tls"), 3 if how == "tls" else 2)
    assert peer.events[-1].plugin == CLEAR


@BYTEWISE
@pytest.mark.parametrize("user", [b"clear", b"app"])
def test_clear_password_over_plain_tcp_is_switched_as_the_server_does(bytewise, user):
    # MariaDB switches such a client to the account's plugin (`mariadb --default-auth=mysql_clear_password
    # --skip-ssl` logs in); the proxy switches it to the first of the user's plugins usable here.
    peer = HandshakePeer(make_hs(), bytewise=bytewise)
    switch = only(login(peer, user, b"secret\0", CLEAR))
    assert (switch.seq, switch.payload) == (2, b"\xfe" + NATIVE + b"\0" + SCRAMBLE + b"\0")
    assert is_ok(peer.receive(encode_packet(auth.client_scramble_native(b"secret", SCRAMBLE), 3)), 4)


def test_clear_password_wrong_password_and_not_allowed():
    denied(login(HandshakePeer(make_hs(tls=True)), b"clear", b"wrong\0", CLEAR, tls=True), 3, b"clear")
    # over TLS, a user not allowed mysql_clear_password (the default) is switched to native
    reply = only(login(HandshakePeer(make_hs(tls=True)), b"app", b"secret\0", CLEAR, tls=True))
    assert reply.payload == b"\xfe" + NATIVE + b"\0" + SCRAMBLE + b"\0"


@BYTEWISE
def test_switch_to_clear_password_only_over_tls(bytewise):
    peer = HandshakePeer(make_hs(tls=True), bytewise=bytewise)
    switch = only(login(peer, b"clearonly", auth.client_scramble_native(b"secret", SCRAMBLE), NATIVE, tls=True))
    assert (switch.seq, switch.payload) == (3, b"\xfe" + CLEAR + b"\0")
    assert is_ok(peer.receive(encode_packet(b"secret\0", 4)), 5)
    # over plain TCP the user has no plugin it can use: refused, never asked for its password
    peer = HandshakePeer(make_hs())
    denied(login(peer, b"clearonly", auth.client_scramble_native(b"secret", SCRAMBLE), NATIVE), 2, b"clearonly")
    assert "none of the user's auth_plugins" in peer.events[-1].detail


# -- the choice of plugin -----------------------------------------------------------------------------


def test_plugins_of_credentials():
    assert USERS[b"app"].plugins() == auth.DEFAULT_PLUGINS
    assert USERS[b"legacy"].plugins() == (NATIVE, SHA2, SHA256)  # no ed25519 key from a hash
    assert USERS[b"clear"].plugins() == (CLEAR, NATIVE)
    assert auth.credentials_from_password("x", (NATIVE,)).ed25519_key is None  # not derived when not allowed


@pytest.mark.parametrize("user,plugin", [(b"sha2only", NATIVE), (b"sha2only", ED25519), (b"edonly", SHA2),
                                         (b"sha256only", NATIVE)])
def test_a_plugin_the_user_may_not_use_is_switched(user, plugin):
    reply = only(login(HandshakePeer(make_hs()), user, b"", plugin))
    assert reply.payload.startswith(b"\xfe" + USERS[user].allowed[0] + b"\0")


def test_user_allowed_only_native_opening_with_caching_sha2():
    USERS[b"nativeonly"] = auth.credentials_from_password("secret", (NATIVE,))
    try:
        peer = HandshakePeer(make_hs())
        assert only(login(peer, b"nativeonly", sha2(b"secret"), SHA2)).payload[:1] == b"\xfe"
        assert is_ok(peer.receive(encode_packet(auth.client_scramble_native(b"secret", SCRAMBLE), 3)), 4)
    finally:
        del USERS[b"nativeonly"]


# -- COM_CHANGE_USER ------------------------------------------------------------------------------------


def test_change_user_full_authentication_over_rsa():
    from .helpers import change_user

    caps = PROXY_CAPS & BASIC_CLIENT_FLAGS
    cu = ChangeUserAuth(USERS.get, HOST, SCRAMBLE, caps, rsa=KEYS)
    events = cu.start(parse_change_user(change_user(b"sha2only", b"", plugin=SHA2), caps), seq=0)
    more = only(events[0].data)
    assert (more.seq, more.payload) == (1, b"\x01\x04")  # no scramble: full authentication
    assert cu.awaiting_auth_data
    key = only(cu.receive(only(encode_packet(b"\x02", 2)))[0].data)
    assert (key.seq, key.payload) == (3, b"\x01" + KEYS.public_pem)
    events = cu.receive(only(encode_packet(rsa(b"secret"), 4)))
    assert isinstance(events[-1], Verified) and events[-1].plugin == SHA2
    assert parse_ok(only(cu.accept(2)).payload, caps)


def test_change_user_cleartext_only_when_the_login_was_secure():
    from .helpers import change_user

    caps = PROXY_CAPS & BASIC_CLIENT_FLAGS
    cu = ChangeUserAuth(USERS.get, HOST, SCRAMBLE, caps, secure=True, rsa=KEYS)
    events = cu.start(parse_change_user(change_user(b"clear", b"secret\0", plugin=CLEAR), caps), seq=0)
    assert isinstance(events[-1], Verified)
    # not secure: the clear password is not taken; the client is switched to native, as at login
    cu = ChangeUserAuth(USERS.get, HOST, SCRAMBLE, caps, secure=False, rsa=KEYS)
    [send] = cu.start(parse_change_user(change_user(b"clear", b"secret\0", plugin=CLEAR), caps), seq=0)
    assert only(send.data).payload == b"\xfe" + NATIVE + b"\0" + SCRAMBLE + b"\0"


# -- PyMySQL's client code ------------------------------------------------------------------------------


def pymysql_login(user: str, password: str, *, hs: ServerHandshake | None = None, plugin: str | None = None,
                  bytewise: bool = False, **kw):
    peer = HandshakePeer(hs or make_hs(), bytewise=bytewise)
    client = PyMySQLClient(peer.receive, user=user, password=password)
    for name, value in kw.items():
        setattr(client.conn, name, value)
    client.connect(peer.greeting(), plugin=plugin)
    return peer, client


@BYTEWISE
@pytest.mark.parametrize("user,plugin,expect", [
    ("sha2only", None, SHA2),  # switched, full authentication, asks for the key, RSA
    ("legacy_sha2", "caching_sha2_password", SHA2),
    ("app", "sha256_password", SHA256),  # asks for the key, RSA
    ("sha256only", None, SHA256),
    ("edonly", None, ED25519),
])
def test_pymysql_logs_in(bytewise, user, plugin, expect):
    peer, client = pymysql_login(user, "secret", plugin=plugin, bytewise=bytewise)
    assert isinstance(peer.events[-1], Verified) and peer.events[-1].plugin == expect
    assert peer.hs.state is HandshakeState.DONE and client.inbox == b""


def test_pymysql_with_the_public_key_given():
    peer, _ = pymysql_login("legacy_sha2", "secret", plugin="caching_sha2_password", server_public_key=KEYS.public_pem)
    assert peer.events[-1].plugin == SHA2
    assert not any(e.data.endswith(KEYS.public_pem) for e in peer.events if hasattr(e, "data"))  # never asked


def test_pymysql_wrong_password_through_rsa():
    import pymysql

    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql_login("sha2only", "wrong")
    assert info.value.args == (1045, f"Access denied for user 'sha2only'@'{HOST}' (using password: YES)")


def test_key_request_over_tls_is_answered_too():
    """A client that does not know its connection is secure asks for the key anyway: it gets it."""
    peer = HandshakePeer(make_hs(tls=True))
    login(peer, b"app", b"", SHA2, tls=True)
    assert only(peer.receive(encode_packet(b"\x02", 4))).payload == b"\x01" + KEYS.public_pem
    assert is_ok(peer.receive(encode_packet(rsa(b"secret"), 6)), 7)

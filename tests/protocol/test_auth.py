# auth.py: password verification as the proxy does it, from what a server
# stores. mysql_native_password from a cleartext password and from a `*HEX`
# hash (PASSWORD('secret') in MySQL/MariaDB), caching_sha2_password's fast
# path, wrong and empty passwords, token lengths, and the client-side
# scrambles (PyMySQL's) checked against the documented formulas.
from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import given, strategies as st

from mysqlpool_proxy.protocol import auth
from mysqlpool_proxy.protocol.handshake import make_scramble

SECRET_HASH = "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"  # SELECT PASSWORD('secret')
SCRAMBLE = b"'Y/e5tHa8Xf%k*3Q:n^a"


def sha1(b: bytes) -> bytes:
    return hashlib.sha1(b).digest()


def sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


# -- stored hashes -----------------------------------------------------------------


def test_native_hash_of_secret_matches_mysql_password_function():
    assert auth.native_hash_from_password(b"secret") == bytes.fromhex(SECRET_HASH[1:])
    assert auth.parse_native_hash(SECRET_HASH) == bytes.fromhex(SECRET_HASH[1:])
    assert auth.parse_native_hash(SECRET_HASH.lower()) == bytes.fromhex(SECRET_HASH[1:])


@pytest.mark.parametrize("text", [
    SECRET_HASH[1:],  # no star
    SECRET_HASH[:-1],  # 39 digits
    SECRET_HASH + "0",  # 41 digits
    "*" + "Z" * 40,  # not hex
    "",
    "secret",
])
def test_parse_native_hash_rejects(text):
    with pytest.raises(ValueError):
        auth.parse_native_hash(text)


def test_credentials_from_password():
    c = auth.credentials_from_password("secret")
    assert c.native_hash == bytes.fromhex(SECRET_HASH[1:])
    assert c.sha2_hash == sha256(sha256(b"secret"))
    assert not c.empty
    assert c.plugins() == auth.DEFAULT_PLUGINS == (auth.NATIVE, auth.CACHING_SHA2, auth.SHA256, auth.ED25519)
    assert c.ed25519_key == auth.ed25519_public_key(b"secret")


def test_credentials_from_native_hash_cannot_do_ed25519():
    """No fast path and no ed25519 key from a hash: the plugins that send the password itself remain."""
    c = auth.credentials_from_native_hash(SECRET_HASH)
    assert c.sha2_hash is None and c.ed25519_key is None
    assert c.plugins() == (auth.NATIVE, auth.CACHING_SHA2, auth.SHA256)


@pytest.mark.parametrize("creds", [
    auth.credentials_from_password("secret"),
    auth.credentials_from_native_hash(SECRET_HASH),
], ids=["cleartext", "hash"])
def test_check_cleartext(creds):
    assert auth.check_cleartext(creds, b"secret")
    for wrong in (b"Secret", b"secret\0", b"", b"secre"):
        assert not auth.check_cleartext(creds, wrong)
    empty = auth.credentials_from_password("")
    assert auth.check_cleartext(empty, b"") and not auth.check_cleartext(empty, b"x")


def test_credentials_for_empty_password():
    c = auth.credentials_from_password("")
    assert c.empty and c.native_hash is None and c.sha2_hash is None
    assert c.plugins() == auth.DEFAULT_PLUGINS


def test_credentials_never_hold_the_password():
    c = auth.credentials_from_password("secret")
    assert b"secret" not in repr(c).encode() and "secret" not in repr(c)


# -- client scrambles: PyMySQL against the documented formulas ---------------------


def test_client_scramble_native_formula():
    # SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password)))
    expected = xor(sha1(b"secret"), sha1(SCRAMBLE + sha1(sha1(b"secret"))))
    assert auth.client_scramble_native(b"secret", SCRAMBLE) == expected


def test_client_scramble_caching_sha2_formula():
    # XOR(SHA256(password), SHA256(SHA256(SHA256(password)), nonce))
    expected = xor(sha256(b"secret"), sha256(sha256(sha256(b"secret")) + SCRAMBLE))
    assert auth.client_scramble_caching_sha2(b"secret", SCRAMBLE) == expected


def test_client_scrambles_of_empty_password_are_empty():
    assert auth.client_scramble_native(b"", SCRAMBLE) == b""


# -- mysql_native_password -----------------------------------------------------------


@pytest.mark.parametrize("creds", [
    auth.credentials_from_password("secret"),
    auth.credentials_from_native_hash(SECRET_HASH),
], ids=["cleartext", "hash"])
def test_verify_native(creds):
    token = auth.client_scramble_native(b"secret", SCRAMBLE)
    assert auth.verify_native(creds, SCRAMBLE, token)
    assert auth.verify(auth.NATIVE, creds, SCRAMBLE, token)
    # the auth-switch data carries a trailing NUL: only the first 20 bytes count
    assert auth.verify_native(creds, SCRAMBLE + b"\0", token)


@pytest.mark.parametrize("creds", [
    auth.credentials_from_password("secret"),
    auth.credentials_from_native_hash(SECRET_HASH),
], ids=["cleartext", "hash"])
def test_verify_native_failures(creds):
    good = auth.client_scramble_native(b"secret", SCRAMBLE)
    assert not auth.verify_native(creds, SCRAMBLE, auth.client_scramble_native(b"Secret", SCRAMBLE))
    assert not auth.verify_native(creds, b"another scramble!!!!", good)  # replayed against a new scramble
    assert not auth.verify_native(creds, SCRAMBLE, b"")
    assert not auth.verify_native(creds, SCRAMBLE, b"\0")
    assert not auth.verify_native(creds, SCRAMBLE, good[:19])
    assert not auth.verify_native(creds, SCRAMBLE, good + b"\0")
    assert not auth.verify_native(creds, SCRAMBLE, bytes(20))


def test_verify_native_knowing_the_hash_is_not_enough():
    # The stored SHA1(SHA1(pw)) sent as if it were a token must not log in.
    creds = auth.credentials_from_native_hash(SECRET_HASH)
    assert not auth.verify_native(creds, SCRAMBLE, bytes.fromhex(SECRET_HASH[1:]))


def test_verify_native_unicode_password():
    creds = auth.credentials_from_password("pässwörd✓")
    token = auth.client_scramble_native("pässwörd✓".encode(), SCRAMBLE)
    assert auth.verify_native(creds, SCRAMBLE, token)
    assert not auth.verify_native(creds, SCRAMBLE, auth.client_scramble_native("pässwörd✓".encode("latin-1", "replace"),
                                                                                SCRAMBLE))


# -- caching_sha2_password fast path -------------------------------------------------


def test_verify_caching_sha2():
    creds = auth.credentials_from_password("secret")
    token = auth.client_scramble_caching_sha2(b"secret", SCRAMBLE)
    assert len(token) == 32
    assert auth.verify_caching_sha2(creds, SCRAMBLE, token)
    assert auth.verify(auth.CACHING_SHA2, creds, SCRAMBLE, token)
    # a 21-byte nonce with its trailing NUL, as some clients keep it
    assert auth.verify_caching_sha2(creds, SCRAMBLE + b"\0", token)


def test_verify_caching_sha2_failures():
    creds = auth.credentials_from_password("secret")
    good = auth.client_scramble_caching_sha2(b"secret", SCRAMBLE)
    assert not auth.verify_caching_sha2(creds, SCRAMBLE, auth.client_scramble_caching_sha2(b"secreT", SCRAMBLE))
    assert not auth.verify_caching_sha2(creds, b"another scramble!!!!", good)
    assert not auth.verify_caching_sha2(creds, SCRAMBLE, good[:31])
    assert not auth.verify_caching_sha2(creds, SCRAMBLE, b"")
    # a native token is not a sha2 token
    assert not auth.verify(auth.CACHING_SHA2, creds, SCRAMBLE, auth.client_scramble_native(b"secret", SCRAMBLE))


def test_verify_caching_sha2_needs_the_sha2_hash():
    creds = auth.credentials_from_native_hash(SECRET_HASH)
    assert not auth.verify_caching_sha2(creds, SCRAMBLE, auth.client_scramble_caching_sha2(b"secret", SCRAMBLE))


# -- empty passwords -------------------------------------------------------------------


@pytest.mark.parametrize("plugin", [auth.NATIVE, auth.CACHING_SHA2])
def test_empty_password(plugin):
    creds = auth.credentials_from_password("")
    assert auth.verify(plugin, creds, SCRAMBLE, b"")
    assert auth.verify(plugin, creds, SCRAMBLE, b"\0")  # libmysqlclient's "no password" byte
    assert not auth.verify(plugin, creds, SCRAMBLE, auth.client_scramble_native(b"x", SCRAMBLE))
    assert not auth.verify(plugin, creds, SCRAMBLE, auth.client_scramble_caching_sha2(b"x", SCRAMBLE))


@pytest.mark.parametrize("plugin", [auth.NATIVE, auth.CACHING_SHA2])
def test_no_password_sent_for_a_user_who_has_one(plugin):
    creds = auth.credentials_from_password("secret")
    assert not auth.verify(plugin, creds, SCRAMBLE, b"")
    assert not auth.verify(plugin, creds, SCRAMBLE, b"\0")


# -- dummy credentials (unknown users) ------------------------------------------------


def test_dummy_credentials_do_not_accept_common_tokens():
    dummy = auth.dummy_credentials()
    assert not dummy.empty
    for pw in (b"", b"root", b"password", b"secret"):
        assert not auth.verify(auth.NATIVE, dummy, SCRAMBLE, auth.client_scramble_native(pw, SCRAMBLE))
        if pw:
            assert not auth.verify(auth.CACHING_SHA2, dummy, SCRAMBLE, auth.client_scramble_caching_sha2(pw, SCRAMBLE))


# -- scrambles ---------------------------------------------------------------------------


def test_make_scramble():
    seen = {make_scramble() for _ in range(50)}
    assert len(seen) == 50
    for s in seen:
        assert len(s) == 20
        assert all(33 <= b <= 126 for b in s)  # printable: no NUL, safe for every client


def test_make_scramble_uses_every_printable_byte():
    """Uniform over 33..126: 40,000 bytes miss none of the 94 values (each is expected ~425 times)."""
    seen = set(b"".join(make_scramble() for _ in range(2000)))
    assert seen == set(range(33, 127))


def test_a_forked_worker_never_repeats_its_parents_scrambles():
    # Scrambles are cut from a block of random bytes read ahead: a child forked (a worker) must not
    # go on with the parent's block, or two workers would greet clients with the same scrambles.
    make_scramble()  # the block is read
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next scramble, to the parent
        os.write(writer, make_scramble())
        os._exit(0)
    os.close(writer)
    child = os.read(reader, 64)
    os.close(reader)
    os.waitpid(pid, 0)
    assert len(child) == 20 and child != make_scramble()


# -- property ----------------------------------------------------------------------------


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40),
       st.binary(min_size=20, max_size=20))
def test_verify_property(pw, other, scramble):
    creds = auth.credentials_from_password(pw)
    for plugin, client in ((auth.NATIVE, auth.client_scramble_native),
                           (auth.CACHING_SHA2, auth.client_scramble_caching_sha2)):
        assert auth.verify(plugin, creds, scramble, client(pw.encode(), scramble))
        if other != pw:
            assert not auth.verify(plugin, creds, scramble, client(other.encode(), scramble))

"""Password verification at the proxy, and the one adapter over pymysql._auth.

The proxy authenticates clients itself, against the users in its config,
using what a server stores rather than the password:

* mysql_native_password stores SHA1(SHA1(pw)) (the `*HEX` hash of
  mysql.user). The client sends SHA1(pw) XOR SHA1(scramble + stored); XOR-ing
  back gives a candidate SHA1(pw) whose SHA1 must equal the stored hash.
* caching_sha2_password (fast path) stores SHA256(SHA256(pw)). The client
  sends SHA256(pw) XOR SHA256(stored + nonce); the same trick applies. The
  proxy can only do this when it knows the cleartext password (or this hash);
  with only a `*HEX` hash it switches the client to mysql_native_password.

Comparisons are constant-time (hmac.compare_digest), and unknown users are
checked against a dummy hash so that timing does not reveal who exists.

PyMySQL has no server-side verifier, so verification is written here; the
client-side scramble functions (used by tests and tools) come from PyMySQL's
private `_auth` module, touched only in this file.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from pymysql import _auth as _pymysql_auth

__all__ = [
    "NATIVE", "CACHING_SHA2", "Credentials", "credentials_from_password", "credentials_from_native_hash",
    "native_hash_from_password", "parse_native_hash", "verify_native", "verify_caching_sha2",
    "client_scramble_native", "client_scramble_caching_sha2",
]

NATIVE = b"mysql_native_password"
CACHING_SHA2 = b"caching_sha2_password"

SCRAMBLE_LENGTH = 20


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the proxy knows of one user's password: enough to verify, never the password."""

    native_hash: bytes | None  # SHA1(SHA1(pw)); None for an empty password
    sha2_hash: bytes | None  # SHA256(SHA256(pw)); None when unknown
    empty: bool = False  # the password is empty: only empty auth data matches

    def plugins(self) -> tuple[bytes, ...]:
        return (NATIVE, CACHING_SHA2) if self.sha2_hash is not None or self.empty else (NATIVE,)


def _sha1(b: bytes) -> bytes:
    return hashlib.sha1(b).digest()


def _sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    """a XOR b over the shorter's length (as whole integers: one C operation, not a byte loop)."""
    n = min(len(a), len(b))
    return (int.from_bytes(a[:n], "big") ^ int.from_bytes(b[:n], "big")).to_bytes(n, "big")


def native_hash_from_password(password: bytes) -> bytes:
    return _sha1(_sha1(password))


def parse_native_hash(text: str) -> bytes:
    """`*` + 40 hex digits, as in mysql.user, to the 20-byte stored hash."""
    if len(text) != 41 or text[0] != "*":
        raise ValueError("a mysql_native_password hash is '*' followed by 40 hex digits")
    return bytes.fromhex(text[1:])


def credentials_from_password(password: str) -> Credentials:
    pw = password.encode("utf-8")
    if not pw:
        return Credentials(None, None, empty=True)
    return Credentials(native_hash_from_password(pw), _sha256(_sha256(pw)))


def credentials_from_native_hash(text: str) -> Credentials:
    return Credentials(parse_native_hash(text), None)


_DUMMY = credentials_from_password("\x00mysqlpool-proxy: no such user\x00")
_DUMMY_HASH_ONLY = Credentials(_DUMMY.native_hash, None)
_DECOY_KEY = secrets.token_bytes(16)


def dummy_credentials(user: bytes = b"") -> Credentials:
    """Checked for unknown users, so a failure takes as long as a wrong password and looks the
    same: like MySQL's decoy users, an unknown name behaves as a hash-only or a password user,
    picked per name (stable within this process), so probing cannot tell who exists."""
    if hmac.new(_DECOY_KEY, user, hashlib.sha256).digest()[0] & 1:
        return _DUMMY_HASH_ONLY
    return _DUMMY


def _is_empty_token(token: bytes) -> bool:
    return token in (b"", b"\0")


def verify_native(creds: Credentials, scramble: bytes, token: bytes) -> bool:
    if creds.empty:
        return _is_empty_token(token)
    stored = creds.native_hash
    if stored is None or len(token) != SCRAMBLE_LENGTH:
        hmac.compare_digest(b"\0" * 20, b"\1" * 20)
        return False
    candidate = _xor(token, _sha1(scramble[:SCRAMBLE_LENGTH] + stored))
    return hmac.compare_digest(_sha1(candidate), stored)


def verify_caching_sha2(creds: Credentials, nonce: bytes, token: bytes) -> bool:
    if creds.empty:
        return _is_empty_token(token)
    stored = creds.sha2_hash
    if stored is None or len(token) != 32:
        hmac.compare_digest(b"\0" * 32, b"\1" * 32)
        return False
    candidate = _xor(token, _sha256(stored + nonce[:SCRAMBLE_LENGTH]))
    return hmac.compare_digest(_sha256(candidate), stored)


def verify(plugin: bytes, creds: Credentials, scramble: bytes, token: bytes) -> bool:
    if plugin == CACHING_SHA2:
        return verify_caching_sha2(creds, scramble, token)
    return verify_native(creds, scramble, token)


# -- client side (tests, tools): PyMySQL's implementations ------------------


def client_scramble_native(password: bytes, scramble: bytes) -> bytes:
    return _pymysql_auth.scramble_native_password(password, scramble)


def client_scramble_caching_sha2(password: bytes, nonce: bytes) -> bytes:
    return _pymysql_auth.scramble_caching_sha2(password, nonce)

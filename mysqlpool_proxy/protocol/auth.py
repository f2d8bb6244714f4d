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

Plugins that prove the password itself, not a scramble of it:

* caching_sha2_password's full authentication and sha256_password: over TLS
  or a Unix socket the client sends the cleartext password (NUL-terminated);
  over plain TCP it sends the password + NUL, XOR-ed with the scramble
  (cyclically) and RSA-OAEP (SHA-1) encrypted with the proxy's public key
  (`RsaKeys`), which it may first ask for. `check_cleartext()` checks the
  password against either stored hash.
* mysql_clear_password: the cleartext password + NUL, over TLS or a Unix
  socket only.
* client_ed25519 (MariaDB): the server stores the public key A = s*B where
  s is the clamped first half of SHA-512(password) (the password takes the
  place of RFC 8032's 32-byte seed, so a standard key constructor cannot
  derive it: PyNaCl's scalar multiplication without clamping does, as
  MariaDB's own plugin); the client signs a 32-byte nonce, and the proxy
  verifies the signature (libsodium, through PyNaCl).

PyMySQL has no server-side verifier, so verification is written here; the
client-side scramble functions (used by tests and tools) come from PyMySQL's
private `_auth` module, touched only in this file. RSA is `cryptography`'s.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from nacl import bindings as _sodium
from nacl.exceptions import CryptoError
from pymysql import _auth as _pymysql_auth

__all__ = [
    "NATIVE", "CACHING_SHA2", "SHA256", "ED25519", "CLEAR", "PLUGINS", "DEFAULT_PLUGINS",
    "Credentials", "credentials_from_password", "credentials_from_native_hash",
    "native_hash_from_password", "parse_native_hash", "verify_native", "verify_caching_sha2",
    "check_cleartext", "RsaKeys", "ed25519_public_key", "verify_ed25519",
    "client_scramble_native", "client_scramble_caching_sha2", "client_rsa_encrypt", "client_ed25519_sign",
]

# (Final: compiled constants, read without a lookup by name, here and in handshake.py.)
NATIVE: Final = b"mysql_native_password"
CACHING_SHA2: Final = b"caching_sha2_password"
SHA256: Final = b"sha256_password"
ED25519: Final = b"client_ed25519"
CLEAR: Final = b"mysql_clear_password"
# Every plugin the proxy speaks, and those a user may use unless its `auth_plugins` says otherwise:
# mysql_clear_password is left out by default (the client sends the password itself; TLS only).
PLUGINS: Final = (NATIVE, CACHING_SHA2, SHA256, ED25519, CLEAR)
DEFAULT_PLUGINS: Final = (NATIVE, CACHING_SHA2, SHA256, ED25519)
ED25519_NONCE_LENGTH: Final = 32
ED25519_SIGNATURE_LENGTH: Final = 64

SCRAMBLE_LENGTH: Final = 20


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the proxy knows of one user's password: enough to verify, never the password."""

    native_hash: bytes | None  # SHA1(SHA1(pw)); None for an empty password
    sha2_hash: bytes | None  # SHA256(SHA256(pw)); None when unknown
    empty: bool = False  # the password is empty: only empty auth data matches
    ed25519_key: bytes | None = None  # MariaDB's ed25519 public key of the password; None when unknown
    allowed: tuple[bytes, ...] = DEFAULT_PLUGINS  # the plugins this user may log in with, preferred first

    def can_verify(self, plugin: bytes) -> bool:
        """Does the proxy know enough of the password to check a login with `plugin`?"""
        if plugin == NATIVE:
            return self.native_hash is not None or self.empty
        if plugin == ED25519:
            return self.ed25519_key is not None
        return plugin in PLUGINS  # the others send the password itself, which either hash checks

    def plugins(self) -> tuple[bytes, ...]:
        """The plugins this user may log in with and the proxy can check, preferred first."""
        return tuple(p for p in self.allowed if self.can_verify(p))


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


def credentials_from_password(password: str, allowed: tuple[bytes, ...] = DEFAULT_PLUGINS) -> Credentials:
    pw = password.encode("utf-8")
    key = ed25519_public_key(pw) if ED25519 in allowed else None
    if not pw:
        return Credentials(None, None, empty=True, ed25519_key=key, allowed=allowed)
    return Credentials(native_hash_from_password(pw), _sha256(_sha256(pw)), ed25519_key=key, allowed=allowed)


def credentials_from_native_hash(text: str, allowed: tuple[bytes, ...] = DEFAULT_PLUGINS) -> Credentials:
    return Credentials(parse_native_hash(text), None, allowed=allowed)


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
    """Check a scramble (mysql_native_password, caching_sha2_password's fast path)."""
    if plugin == CACHING_SHA2:
        return verify_caching_sha2(creds, scramble, token)
    return verify_native(creds, scramble, token)


def check_cleartext(creds: Credentials, password: bytes) -> bool:
    """Is `password` (as the client sent it, without its NUL) the user's? Constant-time."""
    if creds.empty:
        return hmac.compare_digest(password, b"")
    if creds.sha2_hash is not None:
        return hmac.compare_digest(_sha256(_sha256(password)), creds.sha2_hash)
    if creds.native_hash is not None:
        return hmac.compare_digest(_sha1(_sha1(password)), creds.native_hash)
    return False


def strip_nul(data: bytes) -> bytes:
    """A password as clients send it: NUL-terminated (some leave the NUL out)."""
    return data[:-1] if data.endswith(b"\0") else data


# -- RSA: the key pair clients encrypt their password with over plain TCP ----------

_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
RSA_BITS = 2048
MIN_RSA_BITS = 2048


class RsaKeys:
    """The proxy's RSA key pair: the public key in PEM (sent to clients that ask for it) and
    decryption with the private key, which nothing else exposes (not even repr)."""

    __slots__ = ("_private", "public_pem", "size")

    def __init__(self, private: rsa.RSAPrivateKey):
        if private.key_size < MIN_RSA_BITS:
            raise ValueError(f"the RSA key has {private.key_size} bits; at least {MIN_RSA_BITS} are needed")
        self._private = private
        self.public_pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.size = private.key_size // 8  # the length of every ciphertext

    @classmethod
    def generate(cls) -> RsaKeys:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS))

    @classmethod
    def from_pem(cls, private_pem: bytes, public_pem: bytes | None = None) -> RsaKeys:
        """From PEM files' contents; ValueError (without key material) when they are unusable."""
        try:
            private = serialization.load_pem_private_key(private_pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ValueError("not an unencrypted PEM private key") from None
        if not isinstance(private, rsa.RSAPrivateKey):
            raise ValueError("not an RSA private key")
        keys = cls(private)
        if public_pem is not None:
            try:
                public = serialization.load_pem_public_key(public_pem)
            except (ValueError, UnsupportedAlgorithm):
                raise ValueError("the public key is not a PEM public key") from None
            mine = private.public_key().public_numbers()
            if not isinstance(public, rsa.RSAPublicKey) or public.public_numbers() != mine:
                raise ValueError("the public key does not belong to the private key")
        return keys

    def fingerprint(self) -> str:
        """SHA-256 of the public key (DER), for logs: which key clients are given."""
        der = self._private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return hashlib.sha256(der).hexdigest()

    def decrypt_password(self, ciphertext: bytes, scramble: bytes) -> bytes | None:
        """The password a client encrypted (password + NUL, XOR the scramble, RSA-OAEP); None if
        the ciphertext is not one."""
        if len(ciphertext) != self.size:
            return None
        try:
            plain = self._private.decrypt(ciphertext, _OAEP)
        except ValueError:
            return None
        return strip_nul(_xor_cyclic(plain, scramble[:SCRAMBLE_LENGTH]))

    def __repr__(self) -> str:
        return f"RsaKeys({self.size * 8} bits, public key sha256 {self.fingerprint()[:16]}...)"


def _xor_cyclic(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % len(key)] for i, b in enumerate(data)) if key else data


# -- MariaDB's ed25519 -------------------------------------------------------------


def _clamp(half: bytes) -> bytes:
    s = bytearray(half)
    s[0] &= 248
    s[31] &= 63
    s[31] |= 64
    return bytes(s)


def ed25519_public_key(password: bytes) -> bytes:
    """MariaDB's stored key (ed25519_password() / PASSWORD() under ed25519, base64-decoded):
    clamp(SHA-512(password)[:32]) times the base point."""
    return bytes(_sodium.crypto_scalarmult_ed25519_base_noclamp(_clamp(hashlib.sha512(password).digest()[:32])))


def verify_ed25519(creds: Credentials, nonce: bytes, signature: bytes) -> bool:
    key = creds.ed25519_key
    if key is None or len(signature) != ED25519_SIGNATURE_LENGTH:
        return False
    try:
        _sodium.crypto_sign_open(signature + nonce, key)
    except (CryptoError, ValueError, TypeError):
        return False
    return True


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



# -- client side (tests, tools): PyMySQL's implementations ------------------


def client_scramble_native(password: bytes, scramble: bytes) -> bytes:
    return _pymysql_auth.scramble_native_password(password, scramble)


def client_scramble_caching_sha2(password: bytes, nonce: bytes) -> bytes:
    return _pymysql_auth.scramble_caching_sha2(password, nonce)


def client_rsa_encrypt(password: bytes, scramble: bytes, public_pem: bytes) -> bytes:
    result: bytes = _pymysql_auth.sha2_rsa_encrypt(password, scramble, public_pem)
    return result


def client_ed25519_sign(password: bytes, nonce: bytes) -> bytes:
    result: bytes = _pymysql_auth.ed25519_password(password, nonce)
    return result

# Handshake edge cases found by reading MySQL's server code against ours:
#  1. caching_sha2_password with an empty password: MySQL answers OK straight
#     away, with no AuthMoreData 0x03 first (PyMySQL would fail on one).
#  2. ER_NET_PACKETS_OUT_OF_ORDER (1156) carries SQLSTATE 08S01, not HY000.
#  3. Unknown users behave like hash-only or password users, picked per name,
#     so whether an AuthSwitchRequest comes first does not tell who exists.
from __future__ import annotations

import pytest

from mysqlpool_proxy.protocol import auth
from mysqlpool_proxy.protocol.framing import Packet, encode_packet
from mysqlpool_proxy.protocol.handshake import Send, ServerHandshake, Verified
from mysqlpool_proxy.protocol.packets import parse_err

from .helpers import PROXY_CAPS, HandshakePeer, PyMySQLClient, decode_all, handshake_response

SCRAMBLE = b"A1b2C3d4E5f6G7h8I9j0"
USERS = {
    b"app": auth.credentials_from_password("secret"),
    b"legacy": auth.credentials_from_native_hash("*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"),
    b"nopw": auth.credentials_from_password(""),
}


def make_hs() -> ServerHandshake:
    return ServerHandshake(connection_id=42, server_version=b"5.5.5-10.11.6-MariaDB-mysqlpool",
                           capabilities=PROXY_CAPS, charset=45, lookup=USERS.get, client_host="10.1.2.3",
                           scramble=SCRAMBLE)


def pkt(payload: bytes, seq: int) -> Packet:
    return Packet(seq, seq, payload, encode_packet(payload, seq))


# 1 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [b"", b"\0"])
def test_empty_password_caching_sha2_gets_ok_directly(token):
    """sql/auth/sha2_password.cc caching_sha2_password_authenticate(): an empty
    response for an account with an empty authentication string returns CR_OK
    before any fast_auth_success packet is written."""
    events = make_hs().receive(pkt(handshake_response(b"nopw", token, plugin=auth.CACHING_SHA2), 1))
    assert [type(e) for e in events] == [Verified]


def test_pymysql_empty_password_caching_sha2():
    peer = HandshakePeer(make_hs())
    client = PyMySQLClient(peer.receive, user="nopw", password="")
    client.connect(peer.greeting(), plugin="caching_sha2_password")
    assert isinstance(peer.events[-1], Verified)


# 2 ---------------------------------------------------------------------------------------


def test_out_of_order_sqlstate_is_08S01():
    events = make_hs().receive(pkt(handshake_response(b"app", b"x" * 20), 2))
    [data] = [e.data for e in events if isinstance(e, Send)]
    [p] = decode_all(data)
    err = parse_err(p.payload)
    assert (err.errno, err.sqlstate) == (1156, "08S01")


# 3 ---------------------------------------------------------------------------------------


def first_reply_kind(user: bytes) -> str:
    token = auth.client_scramble_caching_sha2(b"not the password", SCRAMBLE)
    events = make_hs().receive(pkt(handshake_response(user, token, plugin=auth.CACHING_SHA2), 1))
    [data] = [e.data for e in events if isinstance(e, Send)]
    [p] = decode_all(data)
    return {0xFE: "switch", 0xFF: "err", 0x01: "more"}[p.payload[0]]


def test_unknown_users_can_look_like_hash_only_users():
    """A wrong password for an existing hash-only user is answered with an
    AuthSwitchRequest; for an unknown name it is always an immediate ERR, so a
    probe with caching_sha2_password reveals that `legacy` exists. MySQL avoids
    this with decoy_user() (sql/auth/sql_authentication.cc): an unknown account
    gets a plugin picked at random and remembered per name, so either answer
    is possible for a name that does not exist."""
    assert first_reply_kind(b"legacy") == "switch"
    unknown = {first_reply_kind(f"ghost{i}".encode()) for i in range(64)}
    assert "switch" in unknown
    # and the answer for one name does not change between attempts
    assert all(first_reply_kind(f"ghost{i}".encode()) == first_reply_kind(f"ghost{i}".encode()) for i in range(8))

# MariaDB's extended capabilities in the connection phase (packets.py, handshake.py): the greeting
# carries them in the last 4 of its 10 reserved bytes when CLIENT_MYSQL (bit 0) is clear, a client
# that clears CLIENT_MYSQL asks for them in the last 4 of the HandshakeResponse's 23 reserved
# bytes, and the proxy grants what it offered of what was asked. Every packet goes through a
# PacketDecoder whole and byte by byte; the greeting is also read by an independent parser
# (tests/support/mariadb_client.py, from MariaDB's protocol pages) and by PyMySQL.
from __future__ import annotations

import struct

import pytest

from mysqlpool_proxy.constants import (
    CLIENT,
    CLIENT_MYSQL,
    MARIADB_CLIENT_CACHE_METADATA,
    MARIADB_CLIENT_EXTENDED_METADATA,
    MARIADB_CLIENT_PROGRESS,
    MARIADB_CLIENT_STMT_BULK_OPERATIONS,
)
from mysqlpool_proxy.protocol import auth
from mysqlpool_proxy.protocol.framing import PacketDecoder, encode_packet
from mysqlpool_proxy.protocol.handshake import ServerHandshake, Verified
from mysqlpool_proxy.protocol.packets import (
    HandshakeV10,
    make_handshake_v10,
    parse_handshake_response,
    parse_handshake_v10,
)
from tests.support.mariadb_client import parse_greeting

from .helpers import BASIC_CLIENT_FLAGS, PROXY_CAPS, HandshakePeer, PyMySQLClient, handshake_response, ssl_request

SCRAMBLE = b"A1b2C3d4E5f6G7h8I9j0"
BULK, EXT = MARIADB_CLIENT_STMT_BULK_OPERATIONS, MARIADB_CLIENT_EXTENDED_METADATA
OFFERED = BULK | EXT
# A MariaDB proxy's greeting: CLIENT_MYSQL clear, bulk operations and extended metadata offered.
MARIADB_CAPS = (PROXY_CAPS & ~CLIENT_MYSQL) | OFFERED
# What Connector/C asks of a MariaDB 10.11 (and Connector/J 3, mysql2: some of them).
CONNECTOR_C = MARIADB_CLIENT_PROGRESS | BULK | EXT | MARIADB_CLIENT_CACHE_METADATA
USERS = {b"app": auth.credentials_from_password("secret")}


def greeting(caps: int) -> HandshakeV10:
    return HandshakeV10(b"5.5.5-10.11.6-MariaDB", 7, SCRAMBLE, caps, 45, 2, b"mysql_native_password")


def make_hs(caps: int = MARIADB_CAPS, *, tls: bool = False) -> ServerHandshake:
    return ServerHandshake(connection_id=42, server_version=b"5.5.5-10.11.6-MariaDB-mysqlpool", capabilities=caps,
                           charset=45, lookup=USERS.get, client_host="10.1.2.3", tls_available=tls,
                           scramble=SCRAMBLE)


def native() -> bytes:
    return auth.client_scramble_native(b"secret", SCRAMBLE)


def test_the_greeting_carries_them_only_without_client_mysql():
    payload = make_handshake_v10(greeting(MARIADB_CAPS))
    reserved_at = payload.index(b"\0", 1) + 1 + 4 + 8 + 1 + 2 + 1 + 2 + 2 + 1
    assert payload[reserved_at:reserved_at + 10] == b"\0" * 6 + struct.pack("<I", OFFERED >> 32)
    assert parse_handshake_v10(payload).capabilities == MARIADB_CAPS
    # CLIENT_MYSQL set (a MySQL server behind): the reserved bytes are filler, whatever is asked
    mysql = make_handshake_v10(greeting(PROXY_CAPS | OFFERED))
    assert mysql[reserved_at:reserved_at + 10] == b"\0" * 10
    assert parse_handshake_v10(mysql).capabilities == PROXY_CAPS


@pytest.mark.parametrize("bytewise", [False, True])
def test_the_proxys_greeting_reads_the_same_to_an_independent_parser_and_to_pymysql(bytewise):
    peer = HandshakePeer(make_hs(), bytewise=bytewise)
    (packet,) = list(_decode(peer.greeting(), bytewise))
    assert parse_greeting(packet.payload).capabilities == MARIADB_CAPS
    client = PyMySQLClient(lambda data: b"", user="app", password="secret")
    client.inbox += peer.greeting()
    client.conn._get_server_information()
    assert client.conn.server_capabilities == MARIADB_CAPS & 0xFFFFFFFF  # PyMySQL reads the 32 bits only


def _decode(data: bytes, bytewise: bool):
    decoder = PacketDecoder()
    for piece in ([data[i:i + 1] for i in range(len(data))] if bytewise else [data]):
        decoder.feed(piece)
        while (p := decoder.next_packet()) is not None:
            yield p


@pytest.mark.parametrize("caps, extended, expected", [
    (BASIC_CLIENT_FLAGS & ~CLIENT_MYSQL, CONNECTOR_C, CONNECTOR_C),
    (BASIC_CLIENT_FLAGS & ~CLIENT_MYSQL, 0, 0),
    (BASIC_CLIENT_FLAGS | CLIENT_MYSQL, CONNECTOR_C, 0),  # the bytes are filler with CLIENT_MYSQL set
])
def test_the_response_carries_them_only_without_client_mysql(caps, extended, expected):
    resp = parse_handshake_response(handshake_response(b"app", native(), caps=caps, extended=extended))
    assert resp.capabilities == caps | expected
    assert resp.user == b"app" and resp.auth_response == native()


@pytest.mark.parametrize("bytewise", [False, True])
@pytest.mark.parametrize("hs_caps, client_caps, extended, granted", [
    (MARIADB_CAPS, BASIC_CLIENT_FLAGS & ~CLIENT_MYSQL, CONNECTOR_C, OFFERED),  # what was offered, of what was asked
    (MARIADB_CAPS, BASIC_CLIENT_FLAGS & ~CLIENT_MYSQL, EXT, EXT),  # mysql2: extended metadata alone
    (MARIADB_CAPS, BASIC_CLIENT_FLAGS | CLIENT_MYSQL, 0, 0),  # PyMySQL
    (MARIADB_CAPS, BASIC_CLIENT_FLAGS | CLIENT_MYSQL, CONNECTOR_C, 0),
    (PROXY_CAPS, BASIC_CLIENT_FLAGS & ~CLIENT_MYSQL, CONNECTOR_C, 0),  # the greeting said CLIENT_MYSQL: none
], ids=["connector-c", "mysql2", "pymysql", "filler", "mysql-greeting"])
def test_a_client_gets_what_it_asked_of_what_was_offered(hs_caps, client_caps, extended, granted, bytewise):
    peer = HandshakePeer(make_hs(hs_caps), bytewise=bytewise)
    reply = peer.receive(encode_packet(handshake_response(b"app", native(), caps=client_caps, extended=extended), 1))
    verified = next(e for e in peer.events if isinstance(e, Verified))
    assert verified.capabilities & ~0xFFFFFFFF == granted
    assert verified.capabilities & 0xFFFFFFFF == client_caps & hs_caps & 0xFFFFFFFF
    assert reply[4:5] == b"\x00"  # OK


@pytest.mark.parametrize("bytewise", [False, True])
def test_over_tls_the_ssl_request_and_the_response_both_carry_them(bytewise):
    peer = HandshakePeer(make_hs(tls=True), bytewise=bytewise)
    caps = (BASIC_CLIENT_FLAGS & ~CLIENT_MYSQL) | CLIENT.SSL
    assert peer.receive(encode_packet(ssl_request(caps, extended=CONNECTOR_C), 1)) == b""
    peer.receive(encode_packet(handshake_response(b"app", native(), caps=caps, extended=CONNECTOR_C), 2))
    verified = next(e for e in peer.events if isinstance(e, Verified))
    assert verified.capabilities & ~0xFFFFFFFF == OFFERED

# MySQL 8's zstd compressed protocol between a client and the proxy, against a real MariaDB. No
# client installed here speaks zstd (libmariadb and PyMySQL have none; mysql-connector-python's
# classic protocol only zlib), so the client is a raw socket built from the protocol helpers:
# a HandshakeResponse41 with CLIENT_ZSTD_COMPRESSION_ALGORITHM and its level byte, then zstd
# frames both ways. MariaDB never offers zstd, so the proxy offers what a MySQL 8 server's
# greeting would make it offer (offered_capabilities, patched); the server connections stay
# uncompressed as always. The compressed client gets, packet for packet, what an uncompressed
# client gets from the same proxy: results of many frames, a query of over 16 MiB, at the
# levels asked. A frame that does not decompress gets 1157 and costs only its connection.
from __future__ import annotations

import socket

import pytest
import zstandard
from pymysql.constants import CLIENT

from mysqlpool_proxy.backend import adapter
from mysqlpool_proxy.constants import CLIENT_ZSTD_COMPRESSION_ALGORITHM
from mysqlpool_proxy.protocol.compression import FrameDecoder, FrameEncoder, Zstd
from mysqlpool_proxy.protocol.framing import MAX_FRAME, PacketDecoder, encode_packet
from mysqlpool_proxy.protocol.packets import parse_handshake_v10
from tests.fuzz.wire import native_password
from tests.protocol.helpers import BASIC_CLIENT_FLAGS, handshake_response
from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER

pytestmark = pytest.mark.integration

ZSTD = CLIENT_ZSTD_COMPRESSION_ALGORITHM
FLAGS = BASIC_CLIENT_FLAGS | CLIENT.CONNECT_ATTRS


@pytest.fixture
def zstd_proxy(proxy_factory, monkeypatch):
    """A proxy in front of the MariaDB whose greeting, as the proxy's backends read it, offers zstd as a
    MySQL 8.0.18+ does (the backends themselves never ask for it)."""
    read_greeting = adapter.MariaDBConnection._get_server_information

    async def with_zstd(conn) -> None:
        await read_greeting(conn)
        conn.server_capabilities |= ZSTD

    monkeypatch.setattr(adapter.MariaDBConnection, "_get_server_information", with_zstd)
    return proxy_factory()


class RawClient:
    """A blocking client socket: a native-password login, then COM_QUERYs; zstd frames when `level` is given."""

    def __init__(self, target, level: int | None):
        self.sock = socket.create_connection((target.host, target.port), timeout=10)
        self.packets = PacketDecoder()
        self.frames: FrameDecoder | None = None
        self.level = level
        self.received = 0  # bytes off the socket
        greeting = self.greeting = parse_handshake_v10(self._packet()[1])
        assert level is None or greeting.capabilities & ZSTD, "zstd is not offered"
        flags = FLAGS | (ZSTD if level is not None else 0)
        login = handshake_response(APP_USER.encode(), native_password(APP_PASSWORD, greeting.scramble), caps=flags,
                                   database=APP_DB.encode(), attrs={b"_client_name": b"zstd-by-hand"},
                                   zstd_level=level)
        self.sock.sendall(encode_packet(login, 1))
        seq, reply = self._packet()
        if reply[:1] == b"\xfe":  # AuthSwitchRequest
            plugin, _, data = reply[1:].partition(b"\0")
            assert plugin == b"mysql_native_password"
            self.sock.sendall(encode_packet(native_password(APP_PASSWORD, data.rstrip(b"\0")), seq + 1))
            seq, reply = self._packet()
        assert reply[:1] == b"\x00", reply
        if level is not None:
            self.frames = FrameDecoder(Zstd())

    def _recv(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("closed")
        self.received += len(data)
        if self.frames is None:
            self.packets.feed(data)
            return
        self.frames.feed(data)
        while (payload := self.frames.next_payload()) is not None:
            self.packets.feed(payload)

    def _packet(self) -> tuple[int, bytes]:
        while (pkt := self.packets.next_packet()) is None:
            self._recv()
        return pkt.seq, bytes(pkt.payload)

    def send(self, payload: bytes) -> None:
        data = encode_packet(payload, 0)
        if self.level is not None:
            data = FrameEncoder(Zstd(self.level)).frames(data)
        self.sock.sendall(data)

    def query(self, sql: bytes) -> list[bytes]:
        """A query's answer, packet by packet (an OK, an ERR, or one text result set)."""
        self.send(b"\x03" + sql)
        answer = [self._packet()[1]]
        if answer[0][:1] in (b"\x00", b"\xff"):
            return answer
        eofs = 0
        while eofs < 2:
            answer.append(self._packet()[1])
            eofs += answer[-1][:1] == b"\xfe" and len(answer[-1]) < 9
        return answer

    def close(self) -> None:
        self.sock.close()


QUERIES = [
    b"SELECT 1 + 1, 'caf\xc3\xa9', NULL",
    b"SELECT REPEAT('abc', 300000)",  # 900 KB in one row: many frames
    b"SELECT seq, MD5(seq) FROM seq_1_to_20000",  # 20,000 rows
    b"SELECT LENGTH('" + b"z" * (MAX_FRAME + 1000) + b"')",  # a query of over 16 MiB: two packet frames
    b"SELECT @@session.autocommit, DATABASE()",
    b"SELECT no_such_column",
]


@pytest.mark.parametrize("level", [1, 3, 19])
def test_a_zstd_client_gets_what_an_uncompressed_client_gets(zstd_proxy, level):
    plain, packed = RawClient(zstd_proxy, None), RawClient(zstd_proxy, level)
    try:
        for sql in QUERIES:
            before = (plain.received, packed.received)
            expected = plain.query(sql)
            assert packed.query(sql) == expected, sql[:60]
            if sql.startswith(b"SELECT REPEAT"):  # 900 KB of rows: they came compressed
                assert packed.received - before[1] < (plain.received - before[0]) // 50
        assert packed.query(b"SELECT LENGTH('" + b"z" * (MAX_FRAME + 1000) + b"')")[3][1:] == b"16778215"
    finally:
        plain.close()
        packed.close()


def test_the_mariadb_greeting_offers_no_zstd(proxy):
    client = RawClient(proxy, None)
    try:
        assert client.greeting.capabilities & CLIENT.COMPRESS and not client.greeting.capabilities & ZSTD
    finally:
        client.close()


def test_a_zstd_frame_that_does_not_decompress_gets_1157_and_costs_only_its_connection(zstd_proxy):
    bystander, client = RawClient(zstd_proxy, 3), RawClient(zstd_proxy, 3)
    try:
        query = encode_packet(b"\x03SELECT 1", 0) * 10
        body = zstandard.ZstdCompressor().compress(query)
        client.sock.sendall(len(body).to_bytes(3, "little") + b"\x00" + (len(query) - 1).to_bytes(3, "little") + body)
        _, err = client._packet()
        assert err[:1] == b"\xff" and int.from_bytes(err[1:3], "little") == 1157
        assert b"Couldn't uncompress communication packet" in err
        with pytest.raises(ConnectionError):
            client._recv()  # and closed
        assert bystander.query(b"SELECT 7")[3] == b"\x017"
    finally:
        bystander.close()
        client.close()

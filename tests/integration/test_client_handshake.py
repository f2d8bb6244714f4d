# The connection phase on real sockets, a real proxy (tests/support/proxy.py)
# in front of the test MariaDB:
#   * TLS: a client that writes its SSLRequest and its TLS ClientHello in ONE
#     send (as Go's driver does, and PyMySQL often enough: its two writes meet
#     in one read) logs in, 50 times in a row; the ClientHello is made by the
#     ssl module's own client (SSLObject over MemoryBIO). PyMySQL with TLS, 50
#     logins in a row. Both again on the stock asyncio loop, whose TLS layer
#     hands over data that came with the client's last handshake message
#     before start_tls() returns.
#   * [proxy] require_tls: PyMySQL without TLS gets 3159 in MySQL's words, with
#     TLS it is served, and on the proxy's Unix socket it is served without.
#   * What an unauthenticated client may send: 16 clients that each announce a
#     60 MiB first packet and stream it get 1153 and a close, and the proxy
#     reads a few reads of each, not 60 MiB.
from __future__ import annotations

import concurrent.futures
import socket
import ssl

import pymysql
import pytest
from pymysql._auth import scramble_native_password

from mysqlpool_proxy.constants import CLIENT
from mysqlpool_proxy.protocol.framing import MAX_FRAME, PacketDecoder, encode_packet, frame_header
from mysqlpool_proxy.protocol.handshake import INSECURE_TRANSPORT_MESSAGE
from mysqlpool_proxy.protocol.packets import parse_err, parse_handshake_v10
from tests.protocol.helpers import handshake_response, ssl_request
from tests.support.proxy import APP_PASSWORD, APP_USER, ProxyThread, render_config

pytestmark = pytest.mark.integration

WAIT = 10.0  # seconds any one wait in these tests may take
ROUNDS = 50
CAPS = (CLIENT.LONG_PASSWORD | CLIENT.LONG_FLAG | CLIENT.PROTOCOL_41 | CLIENT.TRANSACTIONS
        | CLIENT.SECURE_CONNECTION | CLIENT.PLUGIN_AUTH | CLIENT.MULTI_RESULTS)


@pytest.fixture
def tls_proxy(proxy_factory, tls_files):
    def make(**proxy_section):
        return proxy_factory(proxy={"tls_cert": tls_files.cert, "tls_key": tls_files.key, **proxy_section})
    return make


@pytest.fixture
def asyncio_tls_proxy(app_server, tls_files, tmp_path):
    path = tmp_path / "proxy.toml"
    path.write_text(render_config(app_server, proxy={"listen": "127.0.0.1:0", "tls_cert": tls_files.cert,
                                                     "tls_key": tls_files.key}))
    with ProxyThread(path, uvloop=False) as proxy:
        proxy.start()
        assert "uvloop" not in type(proxy.loop).__module__
        yield proxy


class TlsClient:
    """A MySQL client over TLS on a raw socket, its TLS done by ssl.SSLObject over memory BIOs."""

    def __init__(self, port: int, ca: str):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.plain = PacketDecoder()
        self.decoder = PacketDecoder()
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ssl.create_default_context(cafile=ca).wrap_bio(self.incoming, self.outgoing,
                                                                  server_hostname="localhost")

    def close(self) -> None:
        self.sock.close()

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the proxy closed the connection")
        return data

    def greeting(self):
        while (pkt := self.plain.next_packet()) is None:
            self.plain.feed(self._recv())
        return parse_handshake_v10(pkt.payload)

    def ssl_request_and_hello_in_one_send(self) -> None:
        with pytest.raises(ssl.SSLWantReadError):
            self.tls.do_handshake()  # writes the ClientHello to `outgoing`
        self.sock.sendall(encode_packet(ssl_request(CAPS | CLIENT.SSL), 1) + self.outgoing.read())

    def finish_tls_handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                self.incoming.write(self._recv())
        self.sock.sendall(self.outgoing.read())

    def send(self, payload: bytes, seq: int) -> None:
        self.tls.write(encode_packet(payload, seq))
        self.sock.sendall(self.outgoing.read())

    def packet(self):
        while (pkt := self.decoder.next_packet()) is None:
            try:
                self.decoder.feed(self.tls.read(65536))
            except ssl.SSLWantReadError:
                self.incoming.write(self._recv())
        return pkt


def login_with_hello_in_the_same_send(port: int, ca: str) -> None:
    client = TlsClient(port, ca)
    try:
        scramble = client.greeting().scramble
        client.ssl_request_and_hello_in_one_send()
        client.finish_tls_handshake()
        token = scramble_native_password(APP_PASSWORD.encode(), scramble)
        client.send(handshake_response(APP_USER.encode(), token, caps=CAPS | CLIENT.SSL), 2)
        ok = client.packet()
        assert ok.payload[0] == 0x00, parse_err(ok.payload)
        client.send(b"\x03SELECT 42", 0)
        assert client.packet().payload == b"\x01"  # one column: the statement ran, over TLS
    finally:
        client.close()


def test_ssl_request_and_client_hello_in_one_send(tls_proxy, tls_files):
    proxy = tls_proxy()
    for _ in range(ROUNDS):
        login_with_hello_in_the_same_send(proxy.port, tls_files.cert)
    assert proxy.call(lambda: proxy.proxy.stats.client_closed["handshake_timeout"]) == 0


def pymysql_logins_over_tls(proxy, ca: str) -> None:
    for _ in range(ROUNDS):
        conn = proxy.connect(ssl_ca=ca, ssl_verify_cert=True, read_timeout=WAIT)
        try:
            assert isinstance(conn._sock, ssl.SSLSocket)  # (PyMySQL's socket: TLS it is)
            cur = conn.cursor()
            cur.execute("SELECT 42")
            assert cur.fetchone() == (42,)
        finally:
            conn.close()


def test_pymysql_over_tls(tls_proxy, tls_files):
    pymysql_logins_over_tls(tls_proxy(), tls_files.cert)


def test_tls_on_the_stock_asyncio_loop(asyncio_tls_proxy, tls_files):
    pymysql_logins_over_tls(asyncio_tls_proxy, tls_files.cert)
    for _ in range(ROUNDS):
        login_with_hello_in_the_same_send(asyncio_tls_proxy.port, tls_files.cert)


# -- [proxy] require_tls -----------------------------------------------------------------------


def test_require_tls_refuses_plain_tcp_with_3159(tls_proxy, tls_files):
    proxy = tls_proxy(require_tls=True)
    with pytest.raises(pymysql.err.OperationalError) as info:
        proxy.connect(ssl_disabled=True)
    assert info.value.args == (3159, INSECURE_TRANSPORT_MESSAGE)
    conn = proxy.connect(ssl_ca=tls_files.cert)
    try:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    finally:
        conn.close()


def test_require_tls_lets_unix_socket_clients_in(tls_proxy, tmp_path):
    path = tmp_path / "proxy.sock"
    tls_proxy(require_tls=True, listen=f"unix:{path}")
    conn = pymysql.connect(unix_socket=str(path), user=APP_USER, password=APP_PASSWORD, ssl_disabled=True,
                           connect_timeout=WAIT)
    try:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    finally:
        conn.close()


# -- what an unauthenticated client may send ------------------------------------------------------

SIXTY_MIB = 60 << 20
CLIENTS = 16
READ_BOUND = 4 << 20  # bytes the proxy may read from all of them together


def stream_a_60_mib_login_packet(port: int) -> bytes:
    """Announce and stream a 60 MiB first packet; the bytes the proxy answered with."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    try:
        greeting = PacketDecoder()
        while greeting.next_packet() is None:
            greeting.feed(sock.recv(65536))
        chunk = bytes(1 << 16)
        sent = 0
        try:
            for frame in range(SIXTY_MIB // MAX_FRAME + 1):
                length = min(MAX_FRAME, SIXTY_MIB - frame * MAX_FRAME)
                sock.sendall(frame_header(length, 1 + frame))
                for _ in range(length // len(chunk)):
                    sock.sendall(chunk)
                    sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the proxy closed: what it answered is still readable
        assert sent < SIXTY_MIB, "the proxy read all 60 MiB"
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except ConnectionResetError:
            pass
        return answer
    finally:
        sock.close()


def test_sixty_mib_login_packets_cost_the_proxy_a_few_reads(proxy):
    before = proxy.call(lambda: proxy.proxy.stats.bytes_in)
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(stream_a_60_mib_login_packet, [proxy.port] * CLIENTS))
    for answer in answers:
        decoder = PacketDecoder()
        decoder.feed(answer)
        err = decoder.next_packet()
        assert err is not None and err.seq == 2, answer
        assert parse_err(err.payload).errno == 1153 and parse_err(err.payload).sqlstate == "08S01"
    read = proxy.call(lambda: proxy.proxy.stats.bytes_in) - before
    assert read < READ_BOUND, f"the proxy read {read} bytes of {CLIENTS} unauthenticated clients"
    assert proxy.client_count() == 0

# One client's bad bytes never reach another client (issue 16), against a real MariaDB:
# wrong sequence ids on commands and in LOCAL INFILE data get the server's 1156 and a
# close of that client only, no backend is dropped for them, and a bystander running
# statements all along sees no error. Raw packets are written after a normal login.
from __future__ import annotations

import logging
import threading

import pymysql
import pytest
from pymysql.constants import COMMAND

pytestmark = pytest.mark.integration


class Bystander(threading.Thread):
    """A well-behaved client running statements until stopped; collects every error it sees."""

    def __init__(self, proxy):
        super().__init__(daemon=True)
        self.conn = proxy.connect()
        self.errors: list[Exception] = []
        self.queries = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                with self.conn.cursor() as cur:
                    cur.execute("SELECT 1")
                    cur.fetchall()
                self.queries += 1
            except Exception as exc:  # what the test asserts on
                self.errors.append(exc)
                return

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


def send_raw(conn, payload: bytes, seq: int) -> None:
    conn._sock.sendall(len(payload).to_bytes(3, "little") + bytes((seq,)) + payload)


def read_until_closed(conn, limit: float = 5.0) -> bytes:
    sock = conn._sock
    sock.settimeout(limit)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            return data
        if not chunk:
            return data
        data += chunk


def out_of_order_error(capabilities_error: bytes) -> bool:
    return capabilities_error[3] == 0 and capabilities_error[4] == 0xFF and \
        int.from_bytes(capabilities_error[5:7], "little") == 1156 and b"Got packets out of order" in capabilities_error


@pytest.fixture
def watched(proxy_factory, caplog):
    caplog.set_level(logging.WARNING, logger="mysqlpool")
    proxy = proxy_factory(pool={"max_size": 2})
    bystander = Bystander(proxy)
    bystander.start()
    yield proxy
    bystander.stop()
    assert bystander.errors == [] and bystander.queries > 0
    text = caplog.text
    assert "Traceback" not in text and "internal error" not in text


def test_a_command_with_a_wrong_sequence_id_costs_only_its_client(watched):
    proxy = watched
    for _ in range(30):
        conn = proxy.connect()
        send_raw(conn, b"\x03SELECT 1", seq=5)
        reply = read_until_closed(conn)
        assert out_of_order_error(reply), reply  # MariaDB's answer, sequence id 0, then the close
    stats = proxy.pool_stats()
    assert stats["closed"].get("ended_by_server", 0) == 0 and stats["closed"].get("server_gone", 0) == 0
    assert proxy.call(lambda: sum(proxy.proxy.pools["app"].stats.connect_errors.values())) == 0


def test_local_infile_data_with_a_wrong_sequence_id_gets_1156(watched, app_server):
    proxy = watched
    app_server.execute("CREATE TABLE IF NOT EXISTS appdb.infile_t (v VARCHAR(10))")
    conn = proxy.connect(local_infile=True)
    conn._execute_command(COMMAND.COM_QUERY, "LOAD DATA LOCAL INFILE 'data.txt' INTO TABLE infile_t")
    request = conn._read_packet().get_all_data()
    assert request[:1] == b"\xfb"
    send_raw(conn, b"a\nb\n", seq=9)  # the server's request had sequence id 1: this must be 2
    reply = read_until_closed(conn)
    assert out_of_order_error(reply), reply
    good = proxy.connect(local_infile=True)  # the same, in order, still works
    with good.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM infile_t")
        assert cur.fetchone() == (0,)


def test_a_packet_over_the_servers_max_allowed_packet_is_refused_by_the_proxy(proxy_factory, mariadb_factory):
    """No max_packet_size configured: the proxy learns the server's max_allowed_packet (4 MiB here) and
    answers a larger packet with 1153 itself, before a byte of it reaches the server; the client goes on."""
    from tests.support.proxy import prepare_app_account
    server = mariadb_factory(max_allowed_packet=4 * 1024 * 1024)
    prepare_app_account(server)
    proxy = proxy_factory(server, pool={"max_size": 1})
    bystander = Bystander(proxy)
    bystander.start()
    conn = proxy.connect()
    with conn.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError) as err:
            cur.execute("SELECT LENGTH(%s)", ("x" * (6 * 1024 * 1024),))
        assert err.value.args[0] == 1153
        cur.execute("SELECT 42")
        assert cur.fetchone() == (42,)
    bystander.stop()
    assert bystander.errors == []
    assert proxy.pool_stats()["closed"] == {}  # no backend was touched by it


def test_clients_that_stop_reading_give_their_backends_back_at_net_write_timeout(proxy_factory, mariadb_factory):
    """max_size clients send a big SELECT and never read: at the server's net_write_timeout (2 s here) their
    backends are closed and the pool serves others again, instead of 1040 for as long as they stay connected."""
    from tests.support.proxy import prepare_app_account
    server = mariadb_factory(net_write_timeout=2)
    prepare_app_account(server)
    proxy = proxy_factory(server, pool={"max_size": 2, "checkout_timeout": 30, "result_buffer_bytes": 65536})
    stalled = [proxy.connect() for _ in range(2)]
    for conn in stalled:
        conn._execute_command(COMMAND.COM_QUERY, "SELECT REPEAT('x', 100000) FROM seq_1_to_1000")  # 100 MB
    other = proxy.connect(read_timeout=30)
    with other.cursor() as cur:
        cur.execute("SELECT 7")  # waits for a backend: served once the stalled ones are given back
        assert cur.fetchone() == (7,)
    assert proxy.pool_stats()["closed"].get("client_stalled", 0) == 2

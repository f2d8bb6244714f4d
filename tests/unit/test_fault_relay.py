# The fault relay of tests/support/faults.py, checked with plain sockets
# against a small echo server (no MariaDB): each fault does what the
# integration tests rely on, and switching it off brings the relay back.
# Waits are bounded polls; the only lower bounds on time are the delays the
# relay is asked to add.
from __future__ import annotations

import errno
import socket
import threading
import time

import pytest

from tests.support.faults import Direction, FaultRelay, Refusal, wait_until

WAIT = 10.0  # seconds any expected event may take
QUIT = b"QUIT"  # the echo server closes a connection whose data ends with this (like COM_QUIT)


class EchoServer:
    """Echoes every byte; closes a connection whose data ends with QUIT. Keeps what each connection sent."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[bytearray] = []
        self.closed_by_peer = 0  # connections the other side closed or reset
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            buf = bytearray()
            with self._lock:
                self._conns.append(conn)
                self.received.append(buf)
            threading.Thread(target=self._echo, args=(conn, buf), daemon=True).start()

    def _echo(self, conn: socket.socket, buf: bytearray) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    with self._lock:
                        self.closed_by_peer += 1
                    return
                buf += data
                try:
                    conn.sendall(data)
                except OSError:
                    return
                if buf.endswith(QUIT):
                    return

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def relay(echo):
    with FaultRelay("127.0.0.1", echo.port) as relay:
        yield relay


def connect(relay: FaultRelay, *, user_timeout_ms: int = 0) -> socket.socket:
    sock = socket.create_connection((relay.host, relay.port), timeout=WAIT)
    if user_timeout_ms:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, user_timeout_ms)
    return sock


def echo_round(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_relays_both_ways_and_counts_connections(relay, echo):
    a, b = connect(relay), connect(relay)
    assert echo_round(a, b"hello") == b"hello"
    big = bytes(range(256)) * 4096  # 1 MiB, many chunks
    assert echo_round(b, big) == big
    assert relay.accepted == 2
    assert relay.open_connections == 2
    a.close()
    wait_until(lambda: relay.open_connections == 1, WAIT, "the relay forgets a closed connection")
    b.close()
    wait_until(lambda: relay.open_connections == 0, WAIT, "the relay forgets both connections")


def test_latency_per_direction_switched_while_open(relay):
    sock = connect(relay)
    assert echo_round(sock, b"warm") == b"warm"
    relay.set_latency(0.3, Direction.TO_SERVER)
    start = time.monotonic()
    assert echo_round(sock, b"one way") == b"one way"
    assert time.monotonic() - start >= 0.3
    relay.set_latency(0.2, Direction.TO_CLIENT)
    start = time.monotonic()
    assert echo_round(sock, b"both ways") == b"both ways"
    assert time.monotonic() - start >= 0.5
    assert relay.latency(Direction.TO_SERVER) == 0.3 and relay.latency(Direction.TO_CLIENT) == 0.2
    relay.set_latency(0.0)
    assert relay.latency(Direction.TO_SERVER) == relay.latency(Direction.TO_CLIENT) == 0.0
    assert echo_round(sock, b"fast again") == b"fast again"


def test_latency_keeps_order_and_does_not_limit_throughput(relay):
    relay.set_latency(0.2)
    sock = connect(relay)
    data = b"".join(i.to_bytes(4, "big") for i in range(100_000))  # 400 kB: a few dozen chunks
    start = time.monotonic()
    assert echo_round(sock, data) == data
    # Each chunk is delayed, not each chunk after the previous one: far less than chunks x latency.
    assert time.monotonic() - start < WAIT


def expect_timed_out(sock: socket.socket, payload: bytes) -> None:
    """The socket (with TCP_USER_TIMEOUT) sends and then sees its connection time out: its data is
    never acknowledged, and no FIN (recv would return b"") nor RST (ECONNRESET) arrived meanwhile."""
    sock.sendall(payload)
    with pytest.raises(OSError) as info:
        sock.recv(100)
    assert info.value.errno == errno.ETIMEDOUT, info.value


def test_blackhole_both_ways_no_data_no_ack_no_fin_no_rst(relay, echo):
    sock = connect(relay, user_timeout_ms=1000)
    assert echo_round(sock, b"before") == b"before"
    assert relay.blackhole() == 1
    expect_timed_out(sock, b"lost")
    assert bytes(echo.received[0]) == b"before"  # nothing got through
    assert relay.open_connections == 1  # the relay's own connection stays open: nobody told it


def test_blackhole_toward_client_lets_the_server_receive(relay, echo):
    sock = connect(relay, user_timeout_ms=1000)
    assert echo_round(sock, b"a") == b"a"
    relay.blackhole(Direction.TO_CLIENT)
    expect_timed_out(sock, b"to the server")  # its ACKs are dropped too, as on a real network
    assert bytes(echo.received[0]).startswith(b"ato the server")


def test_blackhole_toward_server_drops_the_clients_bytes(relay, echo):
    sock = connect(relay, user_timeout_ms=1000)
    assert echo_round(sock, b"a") == b"a"
    relay.blackhole(Direction.TO_SERVER)
    expect_timed_out(sock, b"dropped")
    assert bytes(echo.received[0]) == b"a"


def test_blackhole_spares_new_connections_and_restore_heals_the_old(relay):
    old = connect(relay)  # no user timeout: TCP keeps retransmitting, as by default
    assert echo_round(old, b"x") == b"x"
    relay.blackhole()
    new = connect(relay)
    assert echo_round(new, b"new flow") == b"new flow"
    old.sendall(b"held back")
    relay.restore()
    old.settimeout(WAIT)
    got = b""
    while len(got) < len(b"held back"):
        got += old.recv(100)
    assert got == b"held back"


def test_reset_all_sends_rst_to_both_sides(relay, echo):
    socks = [connect(relay) for _ in range(3)]
    for sock in socks:
        assert echo_round(sock, b"hi") == b"hi"
    assert relay.reset_all() == 3
    for sock in socks:
        with pytest.raises(ConnectionResetError):
            sock.recv(100)
    wait_until(lambda: echo.closed_by_peer == 3, WAIT, "the server's side of each connection ends")
    wait_until(lambda: relay.open_connections == 0, WAIT, "the relay has no connection left")
    assert echo_round(connect(relay), b"new") == b"new"


def test_refuse_new_by_reset_spares_open_connections(relay):
    kept = connect(relay)
    assert echo_round(kept, b"k") == b"k"
    relay.refuse_new(Refusal.RESET)
    with pytest.raises(ConnectionResetError):  # at connect, or at the first read: it comes at once
        connect(relay).recv(100)
    assert relay.refused == 1 and relay.accepted == 1
    assert echo_round(kept, b"still here") == b"still here"
    relay.allow_new()
    assert echo_round(connect(relay), b"again") == b"again"
    assert relay.accepted == 2


def test_refuse_new_by_closing_the_port(relay):
    kept = connect(relay)
    assert echo_round(kept, b"k") == b"k"
    relay.refuse_new(Refusal.CLOSED)
    with pytest.raises(ConnectionRefusedError):
        connect(relay)
    assert echo_round(kept, b"still here") == b"still here"
    relay.allow_new()
    assert echo_round(connect(relay), b"again") == b"again"


def test_slow_close_holds_the_servers_close_back(relay):
    relay.slow_close(1.0)
    sock = connect(relay)
    start = time.monotonic()
    assert echo_round(sock, QUIT) == QUIT  # the server closes after this
    sock.settimeout(WAIT)
    # Meanwhile the connection is still open on the relay: "a backend still closing".
    assert relay.open_connections == 1
    assert sock.recv(100) == b""
    assert time.monotonic() - start >= 1.0
    sock.close()  # as the proxy does when its backend's server closes
    wait_until(lambda: relay.open_connections == 0, WAIT, "the relay forgets the closed connection")


def test_close_passed_on_at_once_without_slow_close(relay):
    sock = connect(relay)
    assert echo_round(sock, QUIT) == QUIT
    sock.settimeout(WAIT)
    assert sock.recv(100) == b""


def test_clear_and_stop(echo):
    relay = FaultRelay("127.0.0.1", echo.port).start()
    sock = connect(relay)
    relay.set_latency(0.1)
    relay.blackhole()
    relay.refuse_new(Refusal.CLOSED)
    relay.slow_close(5)
    relay.clear()
    assert echo_round(connect(relay), b"clean") == b"clean"
    relay.stop()
    sock.settimeout(WAIT)
    assert sock.recv(100) == b""  # stop() closes what is open
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((relay.host, relay.port), timeout=WAIT)

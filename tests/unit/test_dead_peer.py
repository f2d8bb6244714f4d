# [backend] dead_connection_timeout: the TCP settings derived from it, that
# they land on a socket, and that they find a connection whose network went
# silent while the proxy waits for a reply (the fault relay's blackhole; the
# kernel must drop the packets, or its own ACKs would keep the peer "alive").
from __future__ import annotations

import errno
import socket
import time

import pytest

from mysqlpool_proxy.backend_adapter import DeadPeerDetection, dead_peer_detection, watch_for_dead_peer
from tests.support.faults import FaultRelay

WAIT = 15.0


@pytest.mark.parametrize("timeout, expected", [
    (30, DeadPeerDetection(idle=15, interval=5, probes=3, user_timeout_ms=30_000)),
    (2, DeadPeerDetection(idle=1, interval=1, probes=3, user_timeout_ms=2_000)),
    (1, DeadPeerDetection(idle=1, interval=1, probes=3, user_timeout_ms=1_000)),
    (300, DeadPeerDetection(idle=150, interval=50, probes=3, user_timeout_ms=300_000)),
])
def test_settings_find_a_dead_peer_within_about_the_timeout(timeout, expected):
    settings = dead_peer_detection(timeout)
    assert settings == expected
    # Where TCP_USER_TIMEOUT is missing, the probes alone end it after about the timeout.
    assert settings.idle + settings.interval * settings.probes <= max(timeout, 4)


def test_zero_leaves_the_os_defaults():
    assert dead_peer_detection(0) is None
    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.create_connection(server.getsockname()) as sock:
        watch_for_dead_peer(sock, 0)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 0


def test_options_land_on_a_tcp_socket():
    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.create_connection(server.getsockname()) as sock:
        watch_for_dead_peer(sock, 30)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 15
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 5
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 30_000


def test_unix_sockets_are_left_alone():
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        watch_for_dead_peer(a, 30)  # no TCP options on a Unix socket: must not raise


def test_a_silent_network_ends_a_connection_waiting_for_a_reply():
    """The case of a statement in flight: the request went out and was acknowledged, the
    reply never comes, nothing is left to send. Only keepalive can find that out."""
    with socket.create_server(("127.0.0.1", 0)) as server, \
            FaultRelay("127.0.0.1", server.getsockname()[1]) as relay:
        sock = socket.create_connection((relay.host, relay.port), timeout=WAIT)
        watch_for_dead_peer(sock, 2)
        peer, _ = server.accept()
        with sock, peer:
            sock.sendall(b"a request")
            assert peer.recv(100) == b"a request"  # delivered (and so acknowledged)
            relay.blackhole()
            start = time.monotonic()
            with pytest.raises(OSError) as info:
                sock.recv(100)
            assert info.value.errno == errno.ETIMEDOUT
            assert time.monotonic() - start < WAIT

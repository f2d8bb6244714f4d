# The connection phase on real sockets, a real proxy (tests/support/proxy.py)
# in front of the test MariaDB. What an unauthenticated client may send: 16
# clients that each announce a 60 MiB first packet and stream it get 1153
# and a close, and the proxy reads a few reads of each, not 60 MiB.
from __future__ import annotations

import concurrent.futures
import socket

import pytest

from mysqlpool_proxy.protocol.framing import MAX_FRAME, PacketDecoder, frame_header
from mysqlpool_proxy.protocol.packets import parse_err

pytestmark = pytest.mark.integration

WAIT = 10.0  # seconds any one wait in these tests may take


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

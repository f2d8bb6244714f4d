# Connections that never log in, against a real proxy in front of MariaDB:
# only logged-in clients count against [proxy] max_client_connections, so a
# thousand idle unauthenticated sockets do not lock an application out (they
# are bounded apart: proxy_refusals.py, tests/unit/test_admission.py).
from __future__ import annotations

import socket
from contextlib import closing

import pytest

from tests.support.faults import wait_until

pytestmark = pytest.mark.integration


def test_a_thousand_idle_unauthenticated_sockets_do_not_lock_a_client_out(proxy_factory):
    runner = proxy_factory(proxy={"listen": "127.0.0.1:0", "max_client_connections": 100})
    sockets = []
    try:
        sockets.extend(socket.create_connection((runner.host, runner.port), timeout=10) for _ in range(1000))
        wait_until(lambda: runner.client_count() >= 1000, 20, "the proxy holds the 1000 connections")
        with closing(runner.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
        assert runner.call(lambda: len(runner.proxy.logging_in)) == 1000
    finally:
        for sock in sockets:
            sock.close()

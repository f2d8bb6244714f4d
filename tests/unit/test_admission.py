# Who gets in (proxy/refusals.py admit / client_verified): only clients that logged in
# count against [proxy] max_client_connections, so connections that never
# log in cannot lock applications out; connections logging in are bounded
# apart (MAX_LOGGING_IN, the oldest closed to make room, told why if it was
# not greeted yet), and each has HANDSHAKE_TIMEOUT from its greeting. Real
# Proxy, FakeClient, fake backends, virtual clock.
from __future__ import annotations

import asyncio

import pymysql
import pytest

from mysqlpool_proxy.client import phase as client_phase
from mysqlpool_proxy.client.constants import HANDSHAKE_TIMEOUT
from mysqlpool_proxy.protocol.packets import parse_err
from mysqlpool_proxy.proxy import refusals as proxy_refusals
from mysqlpool_proxy.proxy.proxy import Proxy
from tests.fakes import FakeClient, advance, fake_opener, proxy_config, settle, start_proxy, virtual_time

MAX_CLIENTS = "Too many connections: mysqlpool-proxy already serves max_client_connections (2) clients"


async def greeted(proxy, n: int) -> list[FakeClient]:
    """`n` connections that read their greeting and say nothing (idle or hostile sockets)."""
    clients = []
    for i in range(n):
        client = FakeClient(proxy, peer=("10.9.9.9", 20000 + i))
        client.conn.connection_made(client.transport)
        assert (await client.packet()).payload[0] == 0x0A
        clients.append(client)
    return clients


@pytest.fixture
def max_logging_in(monkeypatch):
    def set_to(n: int) -> int:
        monkeypatch.setattr(proxy_refusals, "MAX_LOGGING_IN", n)
        monkeypatch.setattr(client_phase, "MAX_LOGGING_IN", n)
        return n
    return set_to


@virtual_time
async def test_connections_that_never_log_in_do_not_count_against_max_client_connections():
    proxy = await start_proxy(proxy={"max_client_connections": 2})
    idle = await greeted(proxy, 50)
    first = await FakeClient(proxy).connect()
    second = await FakeClient(proxy).connect()
    assert (await first.query("SELECT 1")).value == "1" and (await second.query("SELECT 2")).value == "2"
    with pytest.raises(pymysql.err.OperationalError) as err:  # two logged in: that is the limit
        await FakeClient(proxy).connect()
    assert err.value.args == (1040, MAX_CLIENTS)
    assert not any(c.closed for c in idle)  # (until their handshake timer)
    await proxy.stop(0)


@virtual_time
async def test_a_login_completed_after_the_limit_filled_up_meanwhile_is_refused():
    proxy = await start_proxy(proxy={"max_client_connections": 1})
    slow = await FakeClient(proxy).open()  # greeted while no one is logged in...
    await FakeClient(proxy).connect()  # ...then another logs in first
    with pytest.raises(pymysql.err.OperationalError) as err:
        await slow.log_in()
    assert err.value.args[0] == 1040 and "max_client_connections (1)" in err.value.args[1]
    assert proxy.stats.client_closed["max_clients"] == 1
    await proxy.stop(0)


@virtual_time
async def test_the_oldest_connection_logging_in_makes_room_for_a_new_one(max_logging_in):
    limit = max_logging_in(8)
    proxy = await start_proxy()
    idle = await greeted(proxy, limit)
    client = await FakeClient(proxy).connect()  # the oldest idle one goes
    await settle()
    assert [c.closed for c in idle] == [True] + [False] * (limit - 1)
    assert (await client.query("SELECT 1")).value == "1"
    newer = await greeted(proxy, 3)  # the first fills the place the logged-in client left
    await settle()
    assert [c.closed for c in idle] == [True] * 3 + [False] * (limit - 3)
    assert not any(c.closed for c in newer)
    assert len(proxy.logging_in) == limit
    assert proxy.stats.client_closed["login_evicted"] == 3
    await proxy.stop(0)


@virtual_time
async def test_an_evicted_connection_not_greeted_yet_is_told_why(max_logging_in):
    limit = max_logging_in(4)
    opener = fake_opener()
    opener.go_down()  # the server's identity is unknown: connections wait for their greeting
    proxy = Proxy(proxy_config(pool={"checkout_timeout": 60}), asyncio.get_running_loop(), opener=opener)
    await proxy.start()
    waiting = []
    for _ in range(limit + 1):
        client = FakeClient(proxy)
        client.conn.connection_made(client.transport)
        waiting.append(client)
    err = parse_err((await waiting[0].packet()).payload)
    assert (err.errno, err.message.decode()) == (1040, (
        "Too many connections: mysqlpool-proxy had 4 connections logging in at once and closed the oldest"))
    await settle()
    assert waiting[0].closed and not any(c.closed for c in waiting[1:])
    await proxy.stop(0)


@virtual_time
async def test_a_connection_that_does_not_log_in_is_closed_after_the_handshake_timeout():
    proxy = await start_proxy()
    (idle,) = await greeted(proxy, 1)
    await advance(HANDSHAKE_TIMEOUT - 0.1)
    assert not idle.closed
    await advance(0.2)
    assert idle.closed and proxy.stats.client_closed["handshake_timeout"] == 1
    assert not proxy.logging_in
    await proxy.stop(0)

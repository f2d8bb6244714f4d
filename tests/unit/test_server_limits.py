# Limits the server tells every new backend, followed both ways (issue 10 item
# 13): the wait_timeout a pool's new backends get (SET GLOBAL wait_timeout
# changes it for new connections only), below which the proxy derives its idle
# timeout, the connection limits that cap a pool, max_allowed_packet,
# max_prepared_stmt_count and the trackers a new session has. A temporary SET GLOBAL
# wait_timeout = 3 must not leave the proxy closing idle backends every 2 s once
# it is raised back, nor a lowered max_connections cap a pool for good. Fakes
# on a virtual clock: FakeOpener.wait_timeout and .max_connections are what the
# next backend reports.
from __future__ import annotations

import logging

from mysqlpool_proxy.backend.pool import EARLY_DEATH
from mysqlpool_proxy.config import UserConfig
from tests.fakes import SERVER_GLOBALS, FakeClient, advance, fake_opener, settle, start_proxy, virtual_time
from tests.unit.test_pool import make_pool

DEFAULT = 28800.0
# The readiness probe opens backends of its own in a pool left empty: kept out of these tests' counts.
QUIET = {"probe_interval": 3600}


def derived(wait_timeout: float) -> float:
    return max(0.5, min(wait_timeout * 0.9, wait_timeout - 1.0))


def logged(caplog, words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if words in r.getMessage()]


async def kill_backends(opener, user: str | None = None) -> None:
    """A while later, the server ends every backend connection (of `user`): KILL, a restart."""
    await advance(EARLY_DEATH * 2)  # (sooner, the pool would back off)
    for server in opener.alive:
        if user is None or server.params.user == user:
            server.close()
    await settle()


@virtual_time
async def test_wait_timeout_lowered_then_raised_is_followed_both_ways(caplog):
    caplog.set_level(logging.INFO, "mysqlpool")
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 2}, backend=QUIET)
    pool = proxy.pools["app"]
    client = await FakeClient(proxy).connect()
    assert proxy.idle_timeout() == derived(DEFAULT)
    opener.wait_timeout = 3.0  # SET GLOBAL wait_timeout = 3
    await kill_backends(opener)
    await client.query("SELECT 1")  # on a new backend, which has 3 s
    assert proxy.idle_timeout() == 2.0
    await advance(2.5)
    assert pool.stats.closed["idle_timeout"] == 1 and not pool.idle
    opener.wait_timeout = DEFAULT  # SET GLOBAL wait_timeout = 28800
    await client.query("SELECT 2")
    assert proxy.idle_timeout() == derived(DEFAULT)
    await advance(60)  # no longer closed every 2 s
    assert pool.stats.closed["idle_timeout"] == 1 and len(pool.idle) == 1
    assert logged(caplog, "wait_timeout for new connections") == [
        "pool app: the server's wait_timeout for new connections is now 3s (was 28800s; connections made before "
        "keep theirs); idle backends are closed or pinged after 2s",
        "pool app: the server's wait_timeout for new connections is now 28800s (was 3s; connections made before "
        "keep theirs); idle backends are closed or pinged after 25920s",
    ]
    await proxy.stop(0)


@virtual_time
async def test_each_pool_follows_its_own_accounts_wait_timeout_and_the_smallest_one_with_backends_counts():
    opener = fake_opener()
    proxy = await start_proxy(opener, users=(UserConfig(name="a", password="pw"), UserConfig(name="b", password="pw")),
                              pool={"max_size": 2}, backend=QUIET)
    a, b = proxy.pools["a"], proxy.pools["b"]
    client_a = await FakeClient(proxy, user="a").connect()
    client_b = await FakeClient(proxy, user="b").connect()
    await client_a.query("SELECT 1")
    opener.wait_timeout = 3.0  # b's account gets a shorter one (init_connect, say)
    await kill_backends(opener, "b")
    await client_b.query("SELECT 1")
    opener.wait_timeout = DEFAULT
    timeouts = proxy.server_info.wait_timeouts
    assert (timeouts.current("a"), timeouts.current("b")) == (DEFAULT, 3.0)
    assert proxy.idle_timeout() == 2.0  # b's backends must not idle into the server's timeout
    await advance(2.5)  # the janitor closes both pools' idle backends
    assert a.size == b.size == 0
    await client_a.query("SELECT 2")
    # b has no backend left: its next one will say what b's wait_timeout is now.
    assert (timeouts.current("a"), timeouts.current("b")) == (DEFAULT, 3.0)
    assert proxy.idle_timeout() == derived(DEFAULT)
    await proxy.stop(0)


@virtual_time
async def test_a_backend_opened_under_the_lower_wait_timeout_keeps_it_until_it_is_gone():
    # The server holds each connection to the wait_timeout it connected with: one opened while it
    # was 3 s and held by an idle client (a transaction) must still be pinged within 3 s.
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 2}, backend=QUIET)
    pool = proxy.pools["app"]
    holder, other = await FakeClient(proxy).connect(), await FakeClient(proxy).connect()
    opener.wait_timeout = 3.0
    await kill_backends(opener)
    await holder.query("BEGIN")  # on a backend with 3 s, held
    await advance(1)
    opener.wait_timeout = DEFAULT
    await other.query("SELECT 1")  # on a new backend with 28800 s
    assert proxy.server_info.wait_timeouts.current("app") == DEFAULT
    assert proxy.idle_timeout() == 2.0
    held = holder.conn.backend
    await advance(10)
    assert not held.closed and opener.server_for(held).command_names.count("ping") >= 3
    (await holder.query("COMMIT")).expect_ok()
    await advance(2.5)  # released, then closed idle past 2 s
    assert held.closed and pool.stats.closed["idle_timeout"] == 2  # and the other one, idle as long
    await other.query("SELECT 2")
    assert proxy.idle_timeout() == derived(DEFAULT)
    await proxy.stop(0)


@virtual_time
async def test_idle_timeout_configured_is_kept_and_a_server_timeout_below_it_is_warned_about(caplog):
    caplog.set_level(logging.INFO, "mysqlpool")
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 2, "idle_timeout": 10}, backend=QUIET)
    client = await FakeClient(proxy).connect()
    opener.wait_timeout = 5.0
    await kill_backends(opener)
    await client.query("SELECT 1")
    assert proxy.idle_timeout() == 10
    assert len(logged(caplog, "is not below the server's wait_timeout 5s")) == 1
    assert len(logged(caplog, "wait_timeout for new connections is now 5s")) == 1
    caplog.clear()
    await kill_backends(opener)
    await client.query("SELECT 2")  # the same value again: nothing new to say
    assert logged(caplog, "wait_timeout") == []
    await proxy.stop(0)


@virtual_time
async def test_max_allowed_packet_and_a_new_sessions_trackers_follow_the_server(monkeypatch):
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 2}, backend=QUIET)
    client = await FakeClient(proxy).connect()
    assert proxy.max_packet_size == 16 << 20 and proxy.server_info.trackers.schema
    # SET GLOBAL max_allowed_packet = 64M, session_track_schema = OFF: new connections get them.
    monkeypatch.setitem(SERVER_GLOBALS, b"max_allowed_packet", str(64 << 20).encode())
    monkeypatch.setitem(SERVER_GLOBALS, b"session_track_schema", b"0")
    await kill_backends(opener)
    await client.query("SELECT 1")
    assert proxy.max_packet_size == 64 << 20 and not proxy.server_info.trackers.schema
    # Raised again while a backend opened before is still there: the server holds that one to
    # its old value (and hangs up on a larger packet), so the proxy waits for it to go.
    monkeypatch.setitem(SERVER_GLOBALS, b"max_allowed_packet", str(128 << 20).encode())
    other = await FakeClient(proxy).connect()
    await client.query("BEGIN")  # holds the old backend
    await other.query("SELECT 2")  # on a new one, which says 128M
    assert len(opener.alive) == 2 and proxy.max_packet_size == 64 << 20
    await client.query("COMMIT")
    await kill_backends(opener)
    await other.query("SELECT 3")
    assert proxy.max_packet_size == 128 << 20
    # Lowered: at once.
    monkeypatch.setitem(SERVER_GLOBALS, b"max_allowed_packet", str(1 << 20).encode())
    await client.query("BEGIN")
    await other.query("SELECT 4")
    assert len(opener.alive) == 2 and proxy.max_packet_size == 1 << 20
    await proxy.stop(0)


@virtual_time
async def test_statement_caches_follow_max_prepared_stmt_count_both_ways(monkeypatch):
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 2, "prepared_statement_cache_size": 256},
                              backend={"max_connections": 100, **QUIET})
    pool = proxy.pools["app"]
    client = await FakeClient(proxy).connect()
    assert pool.statement_cache_size == 16382 // 100
    monkeypatch.setitem(SERVER_GLOBALS, b"max_prepared_stmt_count", b"1000")  # SET GLOBAL: for all, at once
    await kill_backends(opener)
    await client.query("SELECT 1")
    assert pool.statement_cache_size == 10
    monkeypatch.setitem(SERVER_GLOBALS, b"max_prepared_stmt_count", b"1000000")
    await kill_backends(opener)
    await client.query("SELECT 2")
    assert pool.statement_cache_size == 256
    await proxy.stop(0)


@virtual_time
async def test_connection_limits_cap_a_pool_and_lift_when_raised(caplog):
    caplog.set_level(logging.INFO, "mysqlpool")
    opener = fake_opener(max_connections=3)  # SET GLOBAL max_connections = 3
    pool = make_pool(opener, max_size=5)
    first = await pool.acquire(0, 10)
    assert pool.max_size == 2  # one below the limit, so the server never answers 1040
    opener.max_connections = 151  # raised again
    await kill_backends(opener)
    assert first.closed
    await pool.acquire(0, 10)  # a new backend reports the new limit
    assert pool.max_size == 5
    assert logged(caplog, "pool app:") == [
        "pool app: max_size 5 is at or above the server's max_connections (3); using 2 so the server never "
        "refuses it",
        "pool app: the server's connection limits no longer cap it; back to max_size 5",
    ]


@virtual_time
async def test_learn_limits_follows_each_new_backends_values():
    pool = make_pool(fake_opener(), max_size=10)
    pool.capacity.learn_limits(max_user_connections=5, max_connections=151)
    assert pool.max_size == 4
    pool.capacity.learn_limits(max_user_connections=8, max_connections=151)  # GRANT ... MAX_USER_CONNECTIONS 8
    assert pool.max_size == 7
    pool.capacity.learn_limits(max_user_connections=0, max_connections=151)  # no account limit any more
    assert pool.max_size == 10
    pool.capacity.learn_limits(max_user_connections=5, max_connections=151)
    pool.capacity.learn_limits(max_user_connections=0, max_connections=0)  # no limit reported at all
    assert pool.max_size == 10 and pool.server_cap is None

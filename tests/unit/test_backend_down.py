# A server that is down, or that refuses the proxy's own backend login, as
# clients see it through the proxy (issue 10 item 11): the error they get
# (2003 naming what the proxy tried, or the backend login's error naming the
# account and the config keys, never "Too many connections"), when they get it
# (within checkout_timeout; as soon as the pool's next attempt fails when the
# proxy knows the server is down: a refused login, or silence for longer than
# checkout_timeout), and that a restart shorter than checkout_timeout costs
# waiting clients no error, nor does a server back just before they came. Also
# the handshake timer, which starts with the greeting so it never cuts the
# wait for the server's identity short. Real Proxy, FakeClient, fake backends,
# virtual clock.
from __future__ import annotations

import asyncio

import pymysql
import pytest

from mysqlpool_proxy.backend.opening import WAITING_BACKOFF_CAP
from mysqlpool_proxy.client.constants import HANDSHAKE_TIMEOUT
from mysqlpool_proxy.config import UserConfig
from mysqlpool_proxy.ops import operations
from mysqlpool_proxy.proxy.health import Cause
from mysqlpool_proxy.proxy.proxy import Proxy
from tests.fakes import FakeClient, advance, fake_opener, proxy_config, settle, start_proxy, virtual_time

CHECKOUT_TIMEOUT = 30.0  # above HANDSHAKE_TIMEOUT: the handshake timer must not end the wait
CAN_T_CONNECT = "Can't connect to MySQL server on '127.0.0.1:3306' (mysqlpool-proxy: "
REFUSED = (1045, "Access denied for user '{user}'@'10.0.0.5' (using password: YES)")


def now() -> float:
    return asyncio.get_running_loop().time()


def refusing(opener, *users: str):
    """`opener`, except that the server refuses the login of `users` while state["on"] is set."""
    state = {"on": True}

    async def open_backend(params, **kwargs):
        if params.user in users and state["on"]:
            errno, message = REFUSED
            raise pymysql.err.OperationalError(errno, message.format(user=params.user))
        return await opener(params, **kwargs)
    return open_backend, state


async def started(opener, *, users=None, **sections) -> Proxy:
    """A started proxy that may not know its server yet."""
    sections.setdefault("pool", {}).setdefault("checkout_timeout", CHECKOUT_TIMEOUT)
    proxy = Proxy(proxy_config(users=users, **sections), asyncio.get_running_loop(), opener=opener)
    await proxy.start()
    await settle()
    return proxy


async def refused_at_connect(client: FakeClient) -> tuple[int, str, float]:
    t0 = now()
    with pytest.raises(pymysql.err.OperationalError) as err:
        await client.connect()
    errno, message = err.value.args
    return errno, message, now() - t0


async def wait_until(predicate, within: float, step: float = 0.05) -> None:
    deadline = now() + within
    while not predicate():
        assert now() < deadline, f"not true within {within}s (virtual)"
        await advance(step)


async def servers_gone(opener) -> None:
    """The server stops: its connections close (and the proxy sees it), new ones are refused."""
    opener.go_down()
    for server in opener.alive:
        server.close()
    await settle()


# -- down from the start ---------------------------------------------------------------------------


@virtual_time
async def test_down_from_the_start_the_client_gets_2003_at_checkout_timeout_not_a_lost_connection():
    opener = fake_opener()
    opener.go_down()
    proxy = await started(opener)
    client = FakeClient(proxy)
    errno, message, waited = await refused_at_connect(client)
    assert errno == 2003, message  # not 2013 (the handshake timer) nor 1040
    assert message.startswith(CAN_T_CONNECT), message
    assert "connect attempts as 'app' failed, the last with 2003 Can't connect to MySQL server on '127.0.0.1'" \
        in message
    assert message.endswith("; no answer from the server since the start, 30.0s ago)")
    assert HANDSHAKE_TIMEOUT < waited <= CHECKOUT_TIMEOUT
    assert proxy.stats.client_closed["backend_unavailable"] == 1
    assert proxy.stats.refused["backend_unreachable"] == 1
    await proxy.stop(0)


@virtual_time
async def test_down_longer_than_checkout_timeout_new_clients_are_told_within_a_connect_attempt():
    opener = fake_opener()
    opener.go_down()
    proxy = await started(opener)
    await advance(CHECKOUT_TIMEOUT + 1)
    for _ in range(5):
        errno, message, waited = await refused_at_connect(FakeClient(proxy))
        assert errno == 2003 and message.startswith(CAN_T_CONNECT), message
        # When the next attempt fails: the readiness probe tries every probe_interval / 4 while not
        # ready (the client's user is not known before the greeting: no attempt of its pool for it).
        assert waited <= 5.0 / 4 + 1.0
        await advance(0.7)
    await proxy.stop(0)


@virtual_time
async def test_down_from_the_start_then_up_within_checkout_timeout_the_waiting_client_is_greeted():
    opener = fake_opener()
    opener.go_down()
    proxy = await started(opener)
    client = FakeClient(proxy)
    connecting = asyncio.create_task(client.connect())
    await advance(CHECKOUT_TIMEOUT - 10)
    assert not connecting.done()
    opener.come_up()
    await asyncio.wait_for(connecting, 5.0)  # the probe opens a connection within a couple of seconds
    assert (await client.query("SELECT 1")).value == "1"
    await proxy.stop(0)


@virtual_time
async def test_the_handshake_timer_starts_with_the_greeting():
    opener = fake_opener()
    opener.go_down()
    proxy = await started(opener)
    client = FakeClient(proxy)
    client.conn.connection_made(client.transport)
    await advance(HANDSHAKE_TIMEOUT + 5)  # longer than the handshake timer, still no greeting
    assert not client.closed
    opener.come_up()
    greeting = await client.packet(timeout=5.0)
    assert greeting.payload[0] == 0x0A
    greeted_at = now()
    await advance(HANDSHAKE_TIMEOUT - 1)  # no answer to the greeting yet
    assert not client.closed
    await wait_until(lambda: client.closed, within=2.0)
    assert now() - greeted_at >= HANDSHAKE_TIMEOUT - 1e-6
    assert proxy.stats.client_closed["handshake_timeout"] == 1
    await proxy.stop(0)


@virtual_time
async def test_through_a_unix_socket_the_error_is_2002():
    opener = fake_opener()
    opener.go_down()
    proxy = await started(opener, backend={"unix_socket": "/run/mysqld/mysqld.sock"},
                          pool={"checkout_timeout": 2.0})
    errno, message, _ = await refused_at_connect(FakeClient(proxy))
    assert errno == 2002
    assert message.startswith("Can't connect to local MySQL server through socket '/run/mysqld/mysqld.sock' "
                              "(mysqlpool-proxy: "), message
    await proxy.stop(0)


# -- the server refuses the proxy's login ----------------------------------------------------------


@virtual_time
async def test_the_only_pools_login_refused_clients_are_told_within_an_attempt_naming_the_account_and_keys():
    opener, _ = refusing(fake_opener(), "app")
    proxy = await started(opener)
    errno, message, waited = await refused_at_connect(FakeClient(proxy))
    assert errno == 1045
    assert message == (
        "mysqlpool-proxy cannot log in to the server with its backend account 'app' (users[] 'app'): "
        "1045 Access denied for user 'app'@'10.0.0.5' (using password: YES); check users[].backend_user and "
        "users[].backend_password (by default the user's name and password) in the proxy's config")
    assert waited <= 5.0 / 4 + 1.0  # the next attempt of the probe (or of the first connect), not checkout_timeout
    assert proxy.stats.refused["backend_login_refused"] == 1
    await proxy.stop(0)


@virtual_time
async def test_a_pools_refused_login_refuses_its_clients_at_login_others_go_on():
    opener, _ = refusing(fake_opener(), "report")
    users = (UserConfig(name="app", password="pw"),
             UserConfig(name="reporter", password="pw", backend_user="report", backend_password="wrong"))
    proxy = await started(opener, users=users)
    await wait_until(lambda: proxy.pools["report"].failing, within=1.0)  # the probe tries every pool's login
    for database in (None, "reports"):
        errno, message, waited = await refused_at_connect(FakeClient(proxy, user="reporter", database=database))
        assert errno == 1045, message
        assert message.startswith("mysqlpool-proxy cannot log in to the server with its backend account 'report' "
                                  "(users[] 'reporter'): 1045 Access denied for user 'report'@"), message
        assert waited <= WAITING_BACKOFF_CAP  # the pool's next attempt, made for it
    app = await FakeClient(proxy).connect()
    assert (await app.query("SELECT 1")).value == "1"
    await proxy.stop(0)


@virtual_time
async def test_clients_waiting_when_the_login_is_refused_are_told_then_and_served_once_it_is_fixed():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"checkout_timeout": CHECKOUT_TIMEOUT})
    clients = [await FakeClient(proxy).connect() for _ in range(3)]
    refused = {"on": True}
    original = proxy.pools["app"].connector._opener

    async def open_backend(params, **kwargs):  # the DBA changed the password, and restarted the server
        if refused["on"]:
            raise pymysql.err.OperationalError(1045, "Access denied for user 'app'@'10.0.0.5' (using password: YES)")
        return await original(params, **kwargs)
    proxy.pools["app"].connector._opener = open_backend
    for server in opener.alive:
        server.close()
    await settle()
    t0 = now()
    for c in clients:
        c.send_query("SELECT 1")
    for c in clients:
        r = await c.response()
        assert r.error is not None and r.error.errno == 1045, r
        assert b"backend account 'app'" in r.error.message
    assert now() - t0 < 1.0
    refused["on"] = False  # the proxy's config gets the new password (here: the server the old one)
    await advance(WAITING_BACKOFF_CAP + 0.1)
    for c in clients:  # the same connections, still usable
        assert (await c.query("SELECT 2")).value == "2"
    await proxy.stop(0)


@virtual_time
async def test_while_the_pool_holds_backends_a_refused_login_makes_no_client_fail_early():
    """A password changed on the server: connections already open still work, so clients wait for them."""
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 3, "checkout_timeout": CHECKOUT_TIMEOUT})
    holders = [await FakeClient(proxy).connect() for _ in range(2)]
    for c in holders:
        await c.query("BEGIN")  # two backends held, room for a third
    original = proxy.pools["app"].connector._opener

    async def open_backend(params, **kwargs):
        raise pymysql.err.OperationalError(1045, "Access denied for user 'app'@'10.0.0.5' (using password: YES)")
    proxy.pools["app"].connector._opener = open_backend
    await proxy.pools["app"].open_now()  # a connect fails: the pool knows the login is refused now
    assert proxy.pools["app"].failing
    waiting = [await FakeClient(proxy).connect() for _ in range(3)]
    for c in waiting:
        c.send_query("SELECT 3")
    await advance(5)
    for c in holders:
        await c.query("COMMIT")
    for c in waiting:
        assert (await c.response()).value == "3"
    proxy.pools["app"].connector._opener = original
    await proxy.stop(0)


@virtual_time
async def test_a_reload_with_the_right_password_ends_the_refusal_at_once():
    opener = fake_opener()

    async def open_backend(params, **kwargs):  # the server has the account's new password
        if params.password != "new":
            raise pymysql.err.OperationalError(*REFUSED)
        return await opener(params, **kwargs)
    users = (UserConfig(name="app", password="pw", backend_password="old"),
             UserConfig(name="other", password="pw", backend_password="new"))  # (the server is known)
    proxy = await started(open_backend, users=users)
    await wait_until(lambda: proxy.readiness().cause is Cause.LOGIN_REFUSED, within=1.0)
    errno, _, _ = await refused_at_connect(FakeClient(proxy))
    assert errno == 1045
    new_app = UserConfig(name="app", password="pw", backend_password="new")
    operations.reload(proxy, proxy_config(users=(new_app, users[1]), pool={"checkout_timeout": CHECKOUT_TIMEOUT}))
    assert not proxy.pools["app"].failing  # the refusal was the old password's
    t0 = now()
    client = await FakeClient(proxy).connect()
    assert (await client.query("SELECT 1")).value == "1" and now() == t0
    await proxy.stop(0)


@virtual_time
async def test_a_server_that_says_it_is_full_before_the_proxy_knows_it_gives_1040():
    opener = fake_opener()
    opener.go_down((1040, "Too many connections"))
    proxy = await started(opener, pool={"checkout_timeout": 3.0})
    errno, message, _ = await refused_at_connect(FakeClient(proxy))
    assert (errno, message) == (1040, "Too many connections: the server refused mysqlpool-proxy a connection for "
                                      "pool 'app' (1040 Too many connections)")
    await proxy.stop(0)


# -- down after start ----------------------------------------------------------------------------------


@virtual_time
async def test_a_restart_shorter_than_checkout_timeout_costs_waiting_clients_no_error():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"checkout_timeout": 10.0})
    clients = [await FakeClient(proxy, database="appdb").connect() for _ in range(3)]
    await servers_gone(opener)
    for c in clients:
        c.send_query("SELECT 1")
    newcomer = asyncio.create_task(FakeClient(proxy, database="appdb").connect())  # a login during the restart
    await advance(4)
    opener.come_up()
    for c in clients:
        assert (await c.response()).value == "1"
    assert (await (await newcomer).query("SELECT 2")).value == "2"
    await proxy.stop(0)


@virtual_time
async def test_an_outage_longer_than_checkout_timeout_gives_2003_then_at_once_and_the_same_client_goes_on():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"checkout_timeout": 3.0})
    client = await FakeClient(proxy).connect()
    await servers_gone(opener)
    t0 = now()
    r = await client.query("SELECT 1")
    assert r.error is not None and r.error.errno == 2003, r  # not 1040 Too many connections
    assert r.error.message.decode().startswith(CAN_T_CONNECT)
    assert 3.0 <= now() - t0 <= 3.1
    await advance(0.5)
    t0 = now()
    r = await client.query("SELECT 1")  # known down for longer than checkout_timeout now
    assert r.error is not None and r.error.errno == 2003, r
    assert now() - t0 < 1.5
    errno, message, waited = await refused_at_connect(FakeClient(proxy, database="appdb"))
    assert errno == 2003 and waited < 1.5, message
    opener.come_up()
    await wait_until(lambda: proxy.readiness().ready, within=3.0)
    assert (await client.query("SELECT 2")).value == "2"
    await proxy.stop(0)


@virtual_time
async def test_after_a_long_outage_a_client_arriving_just_after_the_server_is_back_is_served():
    """Known down, yet not refused on an attempt made before it came: it waits for the next one."""
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"checkout_timeout": 2.0})
    client = await FakeClient(proxy).connect()
    await servers_gone(opener)
    await advance(30)  # far longer than checkout_timeout
    attempts = len(opener.attempts)
    await wait_until(lambda: len(opener.attempts) > attempts, within=10)  # just after a failed attempt
    opener.come_up()
    t0 = now()
    assert (await client.query("SELECT 1")).value == "1"
    assert now() - t0 <= WAITING_BACKOFF_CAP
    await proxy.stop(0)


@virtual_time
async def test_a_wait_that_runs_out_on_a_busy_pool_is_still_1040():
    proxy = await start_proxy(fake_opener(), pool={"max_size": 1, "checkout_timeout": 3.0})
    holder = await FakeClient(proxy).connect()
    await holder.query("BEGIN")
    other = await FakeClient(proxy).connect()
    r = await other.query("SELECT 1")
    assert r.error is not None and r.error.errno == 1040
    assert b"had no free backend connection after waiting 3.0s" in r.error.message
    await proxy.stop(0)


@virtual_time
async def test_a_full_queue_while_the_server_is_down_is_2003_not_1040():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"checkout_timeout": 10.0, "max_waiting_clients": 1})
    first, second = [await FakeClient(proxy).connect() for _ in range(2)]
    await servers_gone(opener)
    first.send_query("SELECT 1")
    await advance(0.5)
    r = await second.query("SELECT 1")
    assert r.error is not None and r.error.errno == 2003, r
    await proxy.stop(0)

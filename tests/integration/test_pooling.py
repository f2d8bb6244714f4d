# Multiplexing and overflow: many clients over few backends, the account
# limit never reached, and the two documented 1040 refusals.
import threading
import time

import pymysql
import pytest

from tests.support.peak import PeakSampler
from tests.support.proxy import prepare_app_account
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def run_clients(proxy, n, work, **connect_kwargs):
    errors, done = [], []
    barrier = threading.Barrier(n)

    def client(i):
        try:
            with proxy.connect(**connect_kwargs) as conn:
                barrier.wait(30)
                work(conn, i)
                done.append(i)
        except Exception as exc:  # collected and asserted on below
            errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return done, errors


def test_200_clients_share_5_backends(proxy_factory, app_server):
    app_server.execute("CREATE TABLE IF NOT EXISTS appdb.counter (id INT PRIMARY KEY, n INT) ENGINE=InnoDB")
    app_server.execute("REPLACE INTO appdb.counter VALUES (1, 0)")
    proxy = proxy_factory(pool={"max_size": 5, "checkout_timeout": 60})
    sampler = PeakSampler(app_server, "app")
    sampler.start()

    def work(conn, i):
        with conn.cursor() as cur:
            for _ in range(3):
                cur.execute("BEGIN")
                cur.execute("SELECT n FROM counter WHERE id = 1 FOR UPDATE")
                cur.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
                cur.execute("COMMIT")

    done, errors = run_clients(proxy, 200, work)
    peak = sampler.stop()
    assert errors == []
    assert len(done) == 200
    assert app_server.execute("SELECT n FROM appdb.counter WHERE id = 1")[0][0] == 600
    assert peak <= 5, f"the server saw {peak} connections of user app"


def test_account_limit_never_produces_1226(proxy_factory, mariadb_factory):
    server = mariadb_factory()
    prepare_app_account(server, max_user_connections=5)
    proxy = proxy_factory(server, pool={"max_size": 5, "checkout_timeout": 60})

    def work(conn, i):
        with conn.cursor() as cur:
            cur.execute("SELECT SLEEP(0.01), %s", (i,))
            assert cur.fetchone()[1] == i

    done, errors = run_clients(proxy, 60, work)
    assert errors == []
    assert len(done) == 60


def test_checkout_timeout_is_1040_and_connection_stays_usable(proxy_factory, app_server):
    proxy = proxy_factory(pool={"max_size": 1, "checkout_timeout": 0.5})
    holder = proxy.connect()
    with holder.cursor() as cur:
        cur.execute("BEGIN")  # holds the only backend
    other = proxy.connect()
    with other.cursor() as cur:
        started = time.monotonic()
        with pytest.raises(pymysql.err.OperationalError) as err:
            cur.execute("SELECT 1")
        waited = time.monotonic() - started
    code, message = err.value.args
    assert code == 1040
    assert "mysqlpool-proxy" in message and "'app'" in message and "0.5s" in message
    assert 0.4 <= waited < 5
    with holder.cursor() as cur:
        cur.execute("COMMIT")
    with other.cursor() as cur:
        cur.execute("SELECT 2")
        assert cur.fetchone() == (2,)
    holder.close()
    other.close()


def test_queue_full_is_1040_at_once(proxy_factory, app_server):
    proxy = proxy_factory(pool={"max_size": 1, "checkout_timeout": 10, "max_waiting_clients": 1})
    holder = proxy.connect()
    with holder.cursor() as cur:
        cur.execute("BEGIN")
    waiter = proxy.connect()
    thread = threading.Thread(target=lambda: waiter.cursor().execute("SELECT 1"), daemon=True)
    thread.start()
    wait_until(lambda: proxy.pool_stats()["waiting"] >= 1, 5, "the second client waiting for the backend")
    third = proxy.connect()
    started = time.monotonic()
    with pytest.raises(pymysql.err.OperationalError) as err:
        third.cursor().execute("SELECT 1")
    assert time.monotonic() - started < 2
    assert err.value.args[0] == 1040
    assert "max_waiting_clients" in err.value.args[1]
    with holder.cursor() as cur:
        cur.execute("COMMIT")
    thread.join(10)
    third.cursor().execute("SELECT 1")  # usable after the refusal
    for c in (holder, waiter, third):
        c.close()


def test_max_client_connections_refused_in_handshake(proxy_factory):
    proxy = proxy_factory(proxy={"listen": "127.0.0.1:0", "max_client_connections": 2})
    first, second = proxy.connect(), proxy.connect()
    with pytest.raises(pymysql.err.OperationalError) as err:
        proxy.connect()
    assert err.value.args[0] == 1040
    assert "max_client_connections" in err.value.args[1]
    first.close()
    wait_until(lambda: proxy.client_count() <= 1, 5, "the first client's close seen by the proxy")
    proxy.connect().close()  # a slot came free
    second.close()


def test_seed_scenario_wait_timeout(proxy_factory, mariadb_factory):
    """The seeds' 2006: the server drops connections idle past wait_timeout."""
    server = mariadb_factory(wait_timeout=2)
    prepare_app_account(server)
    proxy = proxy_factory(server)
    with proxy.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        time.sleep(5)  # the scenario: idle past the server's wait_timeout (2 s)
        cur.execute("SELECT 2")
        assert cur.fetchone() == (2,)

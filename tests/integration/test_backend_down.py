# A real MariaDB that is down from the start, stops and comes back, or refuses
# the proxy's own backend login, seen through the proxy by PyMySQL (issue 10
# item 11): clients get 2003 naming the server and what the proxy tried
# within checkout_timeout (not 2013 from the handshake timer, not 1040), and
# as soon as a connect attempt fails once the server has been down longer than
# that; a refused backend login gets its own error, naming the account and the
# config keys, as soon as an attempt fails. Clients waiting through a restart
# shorter than checkout_timeout are served, and so are clients that come just
# as the server is back after a long outage, with a checkout_timeout below the
# pool's longest connect backoff. Each test that stops a server has its own
# (mariadb_factory).
from __future__ import annotations

import threading
import time
from contextlib import closing

import pymysql
import pytest

from mysqlpool_proxy.backend.opening import BACKOFF_CAP
from mysqlpool_proxy.constants import CR
from tests.support.faults import FaultRelay, Refusal, wait_until
from tests.support.mariadb import require_restartable
from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER, prepare_app_account

pytestmark = pytest.mark.integration

CHECKOUT_TIMEOUT = 3.0
BACKEND = {"connect_timeout": 2.0, "probe_interval": 2.0}
WAIT = 30.0  # seconds within which a restarted server is back


@pytest.fixture
def server(mariadb_factory):
    server = mariadb_factory()
    require_restartable(server)
    prepare_app_account(server)
    return server


def scalar(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def refused(connect) -> tuple[int, str, float]:
    """connect() fails with OperationalError: its code, its message, and how long it took."""
    start = time.monotonic()
    with pytest.raises(pymysql.err.OperationalError) as info:
        connect()
    errno, message = info.value.args
    return errno, message, time.monotonic() - start


def served(runner, **kwargs) -> bool:
    try:
        with closing(runner.connect(**kwargs)) as conn:
            return scalar(conn, "SELECT 1") == 1
    except pymysql.err.OperationalError as exc:
        if exc.args[0] != CR.CR_CONN_HOST_ERROR:
            raise
        return False


def test_down_from_the_start_2003_within_checkout_timeout_then_at_once_then_served_when_up(server, proxy_factory):
    server.stop()
    runner = proxy_factory(server, backend=BACKEND, pool={"checkout_timeout": CHECKOUT_TIMEOUT}, start=False)
    runner.start(wait_for_server=False)
    errno, message, waited = refused(lambda: runner.connect(connect_timeout=30))
    assert errno == CR.CR_CONN_HOST_ERROR, message  # not 2013 Lost connection, not 1040
    assert message.startswith(f"Can't connect to MySQL server on '{server.host}:{server.port}' (mysqlpool-proxy: "), \
        message
    assert f"as '{APP_USER}' failed, the last with 2003 Can't connect to MySQL server on '{server.host}' (111 " \
        '"Connection refused")' in message
    assert waited < CHECKOUT_TIMEOUT + 1
    # Down for longer than checkout_timeout now: the next clients are told within a connect attempt.
    for database in (APP_DB, None):
        errno, message, waited = refused(lambda database=database: runner.connect(database=database))
        assert errno == CR.CR_CONN_HOST_ERROR and waited < CHECKOUT_TIMEOUT / 2, (message, waited)
    server.start()
    wait_until(lambda: served(runner), WAIT, "a client is served once the server is up")


def test_a_wrong_backend_password_is_named_at_once(server, proxy_factory):
    users = [{"name": APP_USER, "password": APP_PASSWORD, "backend_password": "not-" + APP_PASSWORD}]
    runner = proxy_factory(server, users=users, backend=BACKEND, pool={"checkout_timeout": 10}, start=False)
    runner.start(wait_for_server=False)
    for database in (APP_DB, None):
        errno, message, waited = refused(lambda database=database: runner.connect(database=database))
        assert errno == 1045, message
        assert message.startswith(f"mysqlpool-proxy cannot log in to the server with its backend account "
                                  f"'{APP_USER}' (users[] '{APP_USER}'): 1045 Access denied for user '{APP_USER}'@"), \
            message
        assert "check users[].backend_user and users[].backend_password" in message
        assert waited < 2.0  # not the checkout_timeout


def test_a_second_pool_whose_backend_login_is_refused_refuses_its_clients_at_login(server, proxy_factory):
    server.create_user("report", "the-right-one", grants=f"SELECT ON {APP_DB}.*")
    users = [{"name": APP_USER, "password": APP_PASSWORD},
             {"name": "reporter", "password": "client-side", "backend_user": "report", "backend_password": "wrong"}]
    runner = proxy_factory(server, users=users, backend=BACKEND, pool={"checkout_timeout": 10})
    wait_until(lambda: runner.call(lambda: runner.proxy.pools["report"].failing), 5, "the report login was tried")
    for database in (APP_DB, None):
        errno, message, waited = refused(
            lambda database=database: runner.connect(user="reporter", password="client-side", database=database))
        assert errno == 1045 and message.startswith(
            "mysqlpool-proxy cannot log in to the server with its backend account 'report' (users[] 'reporter'): "
            "1045 Access denied for user 'report'@"), message
        assert waited < 2.0
    with closing(runner.connect()) as conn:
        assert scalar(conn, "SELECT 1") == 1


def run_all(fns) -> tuple[list[threading.Thread], list]:
    outcomes: list = [None] * len(fns)

    def run(i, fn):
        try:
            outcomes[i] = fn()
        except Exception as exc:  # the test asserts on it
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i, fn), daemon=True) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    return threads, outcomes


def test_a_restart_within_checkout_timeout_costs_waiting_clients_no_error(server, proxy_factory):
    runner = proxy_factory(server, backend=BACKEND, pool={"checkout_timeout": WAIT})
    conns = [runner.connect() for _ in range(4)]
    for conn in conns:
        assert scalar(conn, "SELECT 1") == 1
    server.stop()
    wait_until(lambda: runner.pool_stats()["idle"] == 0, 10, "the proxy saw its backends close")

    def login_and_query():
        with closing(runner.connect(connect_timeout=WAIT)) as conn:
            return scalar(conn, "SELECT 3")

    threads, outcomes = run_all([lambda c=c: scalar(c, "SELECT 2") for c in conns] + [login_and_query])
    wait_until(lambda: runner.pool_stats()["waiting"] >= len(conns), 10, "the clients wait for a backend")
    server.start()
    for t in threads:
        t.join(WAIT + 5)
    assert outcomes == [2] * len(conns) + [3]


def connect_errors(runner) -> int:
    return runner.call(lambda: sum(runner.proxy.pools[APP_USER].stats.connect_errors.values()))


def test_after_a_long_outage_clients_arriving_as_the_server_comes_back_are_served(app_server, proxy_factory):
    """No client waited through the outage, so the pool's connect backoff grew to seconds (it kept
    trying for min_idle); clients that come as the server is back, with a checkout_timeout below
    that backoff, get an attempt in time, and are served (not refused as "known down")."""
    checkout_timeout = 2.0
    assert checkout_timeout < BACKOFF_CAP / 2  # (the backoff after 7 failures: BACKOFF_CAP x 0.5..1)
    with FaultRelay(app_server.host, app_server.port) as relay:
        runner = proxy_factory(backend={"host": relay.host, "port": relay.port, "connect_timeout": 2.0,
                                        "probe_interval": 60},  # (no readiness probe during the test)
                               pool={"checkout_timeout": checkout_timeout, "min_idle": 1})
        conns = [runner.connect() for _ in range(3)]
        for conn in conns:
            assert scalar(conn, "SELECT 1") == 1
        relay.refuse_new(Refusal.CLOSED)
        before = connect_errors(runner)
        relay.reset_all()
        wait_until(lambda: connect_errors(runner) >= before + 7, 20, "seven failed connects")
        relay.allow_new()  # just after a failure: the pool's next attempt is seconds away
        threads, outcomes = run_all([lambda c=c: scalar(c, "SELECT 2") for c in conns])
        for t in threads:
            t.join(checkout_timeout + 5)
        assert outcomes == [2] * len(conns)

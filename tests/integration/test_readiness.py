# /readyz against a real MariaDB that restarts, hangs (SIGSTOP), has its new
# connections killed by a DBA, or refuses the proxy's login: readiness follows
# the server now, with no client traffic needed to notice either way. Each test
# has a private server (mariadb_factory) it may stop and signal. /readyz and
# /metrics are read over HTTP, as the kubelet and Prometheus do.
from __future__ import annotations

import os
import signal
import threading
import time
import urllib.error
import urllib.request
from contextlib import closing

import pymysql
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mysqlpool_proxy.http import start_http_server, stop_http_server
from tests.support.mariadb import require_restartable
from tests.support.proxy import APP_PASSWORD, APP_USER, prepare_app_account

pytestmark = pytest.mark.integration

PROBE_INTERVAL = 2.0
CONNECT_TIMEOUT = 2.0
BACKEND = {"probe_interval": PROBE_INTERVAL, "connect_timeout": CONNECT_TIMEOUT}


@pytest.fixture
def server(mariadb_factory):
    server = mariadb_factory()
    require_restartable(server)
    prepare_app_account(server)
    return server


@pytest.fixture
def health():
    """health(runner): the proxy's HTTP endpoint, started on its loop; stopped after the test."""
    started = []

    def start(runner):
        endpoint = Health(runner)
        started.append(endpoint)
        return endpoint

    yield start
    for endpoint in started:
        endpoint.stop()


class Health:
    def __init__(self, runner):
        self.runner = runner
        self.server = runner.call_async(lambda: start_http_server(runner.proxy, "127.0.0.1:0", "/metrics"))
        self.base = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        self.runner.call_async(lambda: stop_http_server(self.server))

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def readyz(self) -> tuple[int, str]:
        return self.get("/readyz")

    def gauges(self) -> dict[tuple, float]:
        status, body = self.get("/metrics")
        assert status == 200
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(body) if f.name in ("mysqlpool_ready", "mysqlpool_not_ready")
                for s in f.samples}


def wait_for(predicate, timeout: float, interval: float = 0.05):
    """Poll until predicate() is truthy (returned) or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {timeout}s")
        time.sleep(interval)


def status_is(health: Health, status: int):
    return lambda: (r := health.readyz())[0] == status and r


def scalar(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def one_statement(runner) -> None:
    with closing(runner.connect()) as conn:
        assert scalar(conn, "SELECT 1") == 1


def test_after_a_restart_with_a_failed_client_attempt_ready_again_with_no_traffic(server, proxy_factory, health):
    runner = proxy_factory(server, backend=BACKEND, pool={"checkout_timeout": 2})
    endpoint = health(runner)
    one_statement(runner)
    wait_for(status_is(endpoint, 200), 5)
    server.stop()
    with pytest.raises(pymysql.err.MySQLError):  # a client tries during the outage
        one_statement(runner)
    _, reason = wait_for(status_is(endpoint, 503), 5)
    assert reason.startswith(f"backend unreachable ({server.host}:{server.port}: 2003 ")
    gauges = endpoint.gauges()  # the metric says the same
    assert gauges[("mysqlpool_ready", ())] == 0
    assert gauges[("mysqlpool_not_ready", (("reason", "backend_unreachable"),))] == 1
    server.start()
    # No client from here on: the probe finds the server within two probe intervals.
    wait_for(status_is(endpoint, 200), 2 * PROBE_INTERVAL)
    assert endpoint.gauges()[("mysqlpool_ready", ())] == 1
    one_statement(runner)


def test_a_hung_server_is_not_ready_within_seconds_and_ready_after_sigcont_with_no_traffic(
        server, proxy_factory, health):
    runner = proxy_factory(server, backend=BACKEND)
    endpoint = health(runner)
    one_statement(runner)
    wait_for(status_is(endpoint, 200), 5)
    os.kill(server.pid, signal.SIGSTOP)
    try:
        _, reason = wait_for(status_is(endpoint, 503), PROBE_INTERVAL + 2)
        assert reason.startswith(f"backend not answering ({server.host}:{server.port}: ")
    finally:
        os.kill(server.pid, signal.SIGCONT)
    # A ping or a connect may still be waiting out connect_timeout; then the next round succeeds.
    wait_for(status_is(endpoint, 200), 2 * CONNECT_TIMEOUT + 2 * PROBE_INTERVAL)
    one_statement(runner)


def test_a_dba_killing_every_new_backend_never_makes_it_unready(server, proxy_factory, health):
    runner = proxy_factory(server, backend=BACKEND)
    endpoint = health(runner)
    one_statement(runner)
    wait_for(status_is(endpoint, 200), 5)
    connects_before = runner.pool_stats()["connects"]
    stop = threading.Event()
    killed: list[int] = []

    def kill_new_backends():
        with closing(server.connect()) as root, root.cursor() as cur:
            while not stop.is_set():
                cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (APP_USER,))
                for (conn_id,) in cur.fetchall():
                    try:
                        cur.execute(f"KILL CONNECTION {int(conn_id)}")
                        killed.append(conn_id)
                    except pymysql.err.OperationalError as exc:
                        if exc.args[0] != 1094:  # unknown thread id: already gone
                            raise
                stop.wait(0.02)

    killer = threading.Thread(target=kill_new_backends, daemon=True)
    killer.start()
    try:
        statuses = []
        deadline = time.monotonic() + 4 * PROBE_INTERVAL
        while time.monotonic() < deadline:
            statuses.append(endpoint.readyz())
            time.sleep(0.05)
    finally:
        stop.set()
        killer.join(10)
    assert [s for s in statuses if s[0] != 200] == []
    # The probe reconnected again and again, with no client, and each one was killed young.
    assert runner.pool_stats()["connects"] - connects_before >= 3
    assert len(killed) >= 3
    one_statement(runner)


def test_a_pool_whose_backend_login_is_refused_makes_it_unready_naming_the_pool(server, proxy_factory, health):
    server.create_user("report", "the-right-one")
    users = [{"name": APP_USER, "password": APP_PASSWORD},
             {"name": "report", "password": "client-side", "backend_password": "a-wrong-one"}]
    runner = proxy_factory(server, users=users, backend=BACKEND)
    endpoint = health(runner)
    # No client of `report` is needed: the proxy tries each pool's login at start.
    _, reason = wait_for(status_is(endpoint, 503), 5)
    assert reason.startswith("backend login refused for pool 'report': 1045 Access denied for user 'report'@")
    assert endpoint.gauges()[("mysqlpool_not_ready", (("reason", "backend_login_refused"),))] == 1
    server.create_user("report", "a-wrong-one")  # the DBA sets the password the proxy has
    wait_for(status_is(endpoint, 200), 2 * PROBE_INTERVAL)


def test_a_refused_login_of_the_only_pool_is_the_reason_from_the_start(server, proxy_factory, health):
    runner = proxy_factory(server, users=[{"name": APP_USER, "password": "not-" + APP_PASSWORD}], backend=BACKEND,
                           start=False)
    runner.start(wait_for_server=False)
    endpoint = health(runner)
    status, reason = wait_for(lambda: (r := endpoint.readyz())[1].startswith("backend login refused") and r, 5)
    assert status == 503
    assert reason.startswith(f"backend login refused for pool '{APP_USER}': 1045 Access denied for user '{APP_USER}'@")

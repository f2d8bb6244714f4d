# The metrics endpoint on a real proxy in front of a real MariaDB: the HTTP
# server is started on the proxy's own loop (as Proxy.start will do once it
# is wired in), PyMySQL clients put a concurrent transactional load through a
# 2-connection pool, and /metrics is scraped over HTTP during and after it.
# Also: a pinned client shows in mysqlpool_pinned_clients until it leaves,
# a draining proxy keeps answering /metrics while /readyz says 503, the
# duration, per-pool and process families follow real queries, and every
# query of deploy/'s Grafana dashboard and alert rules names metrics and
# labels this live scrape has (tests/support/promql.py).
from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mysqlpool_proxy.ops.http import start_http_server, stop_http_server
from tests.support.promql import alert_exprs, check_expr, dashboard_exprs, exported_names, metric_names
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

POOL_SIZE = 2
CLIENTS = 8
TRANSACTIONS_PER_CLIENT = 6
HOLD_SECONDS = 0.05  # each transaction holds its backend this long
WAIT = 10.0  # seconds any one wait may take


class LiveEndpoint:
    """A started proxy plus its HTTP endpoint, scraped from the test thread."""

    def __init__(self, runner, server):
        self.runner = runner
        self.server = server
        self.base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def scrape_text(self) -> str:
        status, body = self.get("/metrics")
        assert status == 200
        return body.decode()

    def scrape(self) -> dict[tuple, float]:
        """{(sample name, sorted labels): value} of one scrape."""
        status, body = self.get("/metrics")
        assert status == 200
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def value(scrape: dict, name: str, **labels: str) -> float:
    return scrape[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def live(proxy_factory):
    # A short probe interval: the readiness probe's pings (mysqlpool_backend_ping_seconds) come soon.
    runner = proxy_factory(pool={"max_size": POOL_SIZE, "checkout_timeout": 60}, backend={"probe_interval": 0.2})
    server = runner.call_async(lambda: start_http_server(runner.proxy, "127.0.0.1:0", "/metrics"))
    yield LiveEndpoint(runner, server)
    runner.call_async(lambda: stop_http_server(server))


class Sampler(threading.Thread):
    """Scrapes until stopped; keeps the peak of a few series."""

    def __init__(self, endpoint: LiveEndpoint):
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.peaks: dict[str, float] = {"in_use": 0, "waiting": 0, "waiting_clients": 0, "scrapes": 0}
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                s = self.endpoint.scrape()
            except Exception as exc:  # reported by the test
                self.errors.append(repr(exc))
                return
            self._peak("in_use", value(s, "mysqlpool_backend_connections", pool="app", state="in_use"))
            self._peak("waiting", value(s, "mysqlpool_client_connections", state="waiting"))
            self._peak("waiting_clients", value(s, "mysqlpool_waiting_clients", pool="app"))
            self.peaks["scrapes"] += 1
            time.sleep(0.01)  # sampling interval: it scrapes all through the load, not waiting for anything

    def _peak(self, key: str, seen: float) -> None:
        self.peaks[key] = max(self.peaks[key], seen)

    def stop(self) -> dict[str, float]:
        self._halt.set()
        self.join(30)
        return self.peaks


def transactional_load(runner) -> list[str]:
    errors: list[str] = []
    barrier = threading.Barrier(CLIENTS)

    def client() -> None:
        try:
            with runner.connect() as conn, conn.cursor() as cur:
                barrier.wait(30)
                for _ in range(TRANSACTIONS_PER_CLIENT):
                    cur.execute("BEGIN")
                    cur.execute("SELECT SLEEP(%s)", (HOLD_SECONDS,))
                    cur.execute("COMMIT")
        except Exception as exc:  # asserted on by the caller
            errors.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def test_metrics_follow_a_concurrent_transactional_load(live):
    before = live.scrape()
    assert value(before, "mysqlpool_ready") == 1
    assert live.get("/readyz") == (200, b"ok\n")
    sampler = Sampler(live)
    sampler.start()
    errors = transactional_load(live.runner)
    peaks = sampler.stop()
    assert errors == [] and sampler.errors == []
    after = live.scrape()

    assert peaks["scrapes"] >= 3
    assert peaks["in_use"] == POOL_SIZE
    assert peaks["waiting"] >= 1 and peaks["waiting_clients"] >= 1
    # The histogram counts every checkout; some waited, so the lowest bucket is not all of them.
    count = value(after, "mysqlpool_checkout_wait_seconds_count", pool="app")
    fastest = value(after, "mysqlpool_checkout_wait_seconds_bucket", pool="app", le="0.001")
    assert count - value(before, "mysqlpool_checkout_wait_seconds_count", pool="app") >= CLIENTS
    assert fastest < count
    assert value(after, "mysqlpool_checkout_wait_seconds_sum", pool="app") > 0
    assert value(after, "mysqlpool_checkout_wait_seconds_bucket", pool="app", le="+Inf") == count

    transactions = CLIENTS * TRANSACTIONS_PER_CLIENT
    assert (value(after, "mysqlpool_transactions_total", pool="app")
            - value(before, "mysqlpool_transactions_total", pool="app")) >= transactions
    queries_before = before.get(("mysqlpool_queries_total", (("command", "query"), ("pool", "app"))), 0)
    assert value(after, "mysqlpool_queries_total", pool="app", command="query") - queries_before >= 3 * transactions
    assert value(after, "mysqlpool_backend_connections_max", pool="app") == POOL_SIZE
    assert value(after, "mysqlpool_backend_connects_total", pool="app") >= 1
    assert value(after, "mysqlpool_bytes_total", direction="client_to_backend") > 0
    assert value(after, "mysqlpool_bytes_total", direction="backend_to_client") > 0
    assert value(after, "mysqlpool_client_connections_accepted_total") >= CLIENTS

    # Once the clients are gone nothing is in use or waiting.
    settled = wait_until(lambda: s if value(s := live.scrape(), "mysqlpool_backend_connections",
                                            pool="app", state="in_use") == 0 else None, WAIT, "no backend in use")
    assert value(settled, "mysqlpool_waiting_clients", pool="app") == 0
    assert value(settled, "mysqlpool_client_connections", state="waiting") == 0


def pinned(live: LiveEndpoint, reason: str) -> float:
    return value(live.scrape(), "mysqlpool_pinned_clients", pool="app", reason=reason)


def test_a_temporary_table_pins_the_client_until_it_disconnects(live):
    assert pinned(live, "temporary_table") == 0
    conn = live.runner.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TEMPORARY TABLE pinned_here (x INT)")
        assert pinned(live, "temporary_table") == 1
        s = live.scrape()
        assert value(s, "mysqlpool_pins_total", pool="app", reason="temporary_table") >= 1
        assert value(s, "mysqlpool_backend_connections", pool="app", state="in_use") == 1
        assert value(s, "mysqlpool_multiplexing_ratio", pool="app") == 1
    finally:
        conn.close()
    wait_until(lambda: pinned(live, "temporary_table") == 0, WAIT, "the pin gone with the client")


def test_a_user_variable_does_not_pin(live):
    conn = live.runner.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET @x = 1")
            cur.execute("SELECT @x")
            assert cur.fetchone() == (1,)
        assert pinned(live, "user_variable") == 0
        assert value(live.scrape(), "mysqlpool_backend_connections", pool="app", state="in_use") == 0
    finally:
        conn.close()


def test_an_open_transaction_shows_as_pinned(live):
    conn = live.runner.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT 1")
            assert pinned(live, "transaction") == 1
            cur.execute("COMMIT")
        assert pinned(live, "transaction") == 0
    finally:
        conn.close()


def test_while_draining_metrics_are_served_and_readyz_says_503(live):
    runner = live.runner
    conn = runner.connect()
    with conn.cursor() as cur:
        cur.execute("BEGIN")  # an open transaction keeps the drain going
        cur.execute("SELECT 1")
    stopping = asyncio.run_coroutine_threadsafe(runner.proxy.stop(3.0), runner.loop)
    try:
        readyz = wait_until(lambda: r if (r := live.get("/readyz"))[0] == 503 else None, WAIT, "/readyz answers 503")
        assert readyz == (503, b"proxy is draining\n")
        s = live.scrape()
        assert value(s, "mysqlpool_ready") == 0
        assert value(s, "mysqlpool_pinned_clients", pool="app", reason="transaction") == 1
        assert live.get("/healthz") == (200, b"ok\n")
        with conn.cursor() as cur:
            cur.execute("COMMIT")  # lets the drain finish early
        stopping.result(30)
        assert live.get("/readyz") == (503, b"proxy is stopped\n")
        assert live.get("/metrics")[0] == 200
    finally:
        conn.close()


# -- the daily numbers, and deploy/'s queries against a live scrape ---------------------------

SLOW = 0.05  # seconds each slow statement sleeps on the server


def some_work(runner) -> None:
    """A few statements and two transactions through the proxy, as an application would."""
    with runner.connect() as conn, conn.cursor() as cur:
        for _ in range(3):
            cur.execute("SELECT SLEEP(%s)", (SLOW,))
        for _ in range(2):
            cur.execute("BEGIN")
            cur.execute("SELECT SLEEP(%s)", (SLOW,))
            cur.execute("COMMIT")


def test_durations_bytes_and_process_figures_follow_real_queries(live):
    before = live.scrape()
    some_work(live.runner)
    after = live.scrape()

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("mysqlpool_query_duration_seconds_count", pool="app") >= 9
    assert grew("mysqlpool_query_duration_seconds_sum", pool="app") >= 5 * SLOW
    assert value(after, "mysqlpool_query_duration_seconds_bucket", pool="app", le="0.025") < value(
        after, "mysqlpool_query_duration_seconds_count", pool="app")  # the sleeps are above 25 ms
    assert grew("mysqlpool_transaction_duration_seconds_count", pool="app") == 2
    assert grew("mysqlpool_transaction_duration_seconds_sum", pool="app") >= 2 * SLOW
    assert grew("mysqlpool_pool_bytes_total", pool="app", direction="client_to_backend") > 0
    assert grew("mysqlpool_pool_bytes_total", pool="app", direction="backend_to_client") > 0
    assert value(after, "mysqlpool_backend_connection_age_max_seconds", pool="app") > 0
    assert value(after, "mysqlpool_oldest_waiter_seconds", pool="app") == 0
    assert value(after, "process_resident_memory_bytes") > 0 and value(after, "process_open_fds") > 0
    # The readiness probe pings an idle backend every probe_interval: its round trips are recorded.
    wait_until(lambda: value(live.scrape(), "mysqlpool_backend_ping_seconds_count", pool="app") > 0, WAIT,
               "a probe ping recorded")


def test_a_connected_client_counts_in_its_pool_by_state(live):
    conn = live.runner.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        s = live.scrape()
        assert value(s, "mysqlpool_pool_client_connections", pool="app", state="idle") == 1
        assert value(s, "mysqlpool_pool_client_connections", pool="app", state="waiting") == 0
    finally:
        conn.close()


def test_every_dashboard_and_alert_query_names_what_a_live_proxy_exports(live):
    some_work(live.runner)
    exported = exported_names(live.scrape_text())
    exprs = dashboard_exprs() + alert_exprs(yaml)
    assert len(exprs) >= 40
    for expr in exprs:
        check_expr(expr, exported)
    # Each family the README's metrics table and the dashboard rely on has series from the start.
    used = set().union(*(metric_names(e) for e in exprs))
    assert {"mysqlpool_query_duration_seconds_bucket", "mysqlpool_transaction_duration_seconds_bucket",
            "mysqlpool_backend_ping_seconds_bucket", "process_cpu_seconds_total"} <= used

# Network faults between the proxy and MariaDB, injected by the fault relay
# (tests/support/faults.py): a network that silently stops carrying packets
# (found by the backend sockets' keepalive, [backend] dead_connection_timeout),
# connections reset under clients, a server that refuses new connections
# behind a slow link, and backends that take a while to close while the pool
# recycles them. The proxy's [backend] host/port point at the relay.
from __future__ import annotations

import threading
import time

import pymysql
import pytest

from mysqlpool_proxy.backend.opening import BACKOFF_CAP
from mysqlpool_proxy.constants import CR
from mysqlpool_proxy.core.states import BackendState
from tests.support.faults import FaultRelay, Refusal, wait_until
from tests.support.proxy import APP_USER

pytestmark = pytest.mark.integration

DEAD_AFTER = 2  # [backend] dead_connection_timeout in these tests
WAIT = 15.0  # seconds within which a dead connection must be found and dealt with


@pytest.fixture
def relay(app_server):
    with FaultRelay(app_server.host, app_server.port) as relay:
        yield relay


def via(relay: FaultRelay, **backend) -> dict:
    return {"host": relay.host, "port": relay.port, "dead_connection_timeout": DEAD_AFTER, **backend}


def scalar(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def answers(conn, sql):
    """scalar(), or None if the statement got 2003 (the server known down)."""
    try:
        return scalar(conn, sql)
    except pymysql.err.OperationalError as exc:
        if exc.args[0] != CR.CR_CONN_HOST_ERROR:
            raise
        return None


def pool_read(proxy, fn):
    """fn(pool) run on the proxy's loop."""
    return proxy.call(lambda: fn(proxy.proxy.pools[APP_USER]))


def pool_size(proxy) -> int:
    return pool_read(proxy, lambda pool: pool.size)


def backend_ids(proxy) -> set[int]:
    """Every backend the pool counts (idle, in use, closing)."""
    return pool_read(proxy, lambda pool: {b.id for b in (*pool.idle, *pool.busy, *pool.closing)})


def dropped(proxy, before: set[int]):
    """None of the backends in `before` is counted any more. (Not "the pool is empty": the readiness
    probe opens a new backend when the old ones stop answering, and new connections get through.)"""
    return lambda: not backend_ids(proxy) & before


def statement_in_flight(proxy) -> bool:
    return pool_read(proxy, lambda pool: any(b.state is BackendState.BUSY for b in pool.busy))


def fill_pool(proxy, n: int) -> None:
    """n backends in the pool, all idle: n clients run a statement at the same time."""
    conns = [proxy.connect() for _ in range(n)]
    barrier = threading.Barrier(n)

    def run(conn):
        with conn.cursor() as cur:
            cur.execute("BEGIN")  # each holds its backend until all have one
            barrier.wait(WAIT)
            cur.execute("COMMIT")

    threads = [threading.Thread(target=run, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    for conn in conns:
        conn.close()
    wait_until(lambda: pool_read(proxy, lambda pool: len(pool.idle)) == n, WAIT, f"{n} idle backends")


def run_in_thread(fn) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = fn()
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_blackhole_during_a_statement_frees_its_backend(relay, proxy_factory):
    proxy = proxy_factory(backend=via(relay))
    conn = proxy.connect()
    thread, outcome = run_in_thread(lambda: scalar(conn, "SELECT SLEEP(3)"))
    wait_until(lambda: statement_in_flight(proxy), WAIT, "the statement is running on a backend")
    before = backend_ids(proxy)
    relay.blackhole()
    start = time.monotonic()
    thread.join(WAIT)
    assert not thread.is_alive(), "the client still waits for a statement whose network died"
    error = outcome.get("error")
    assert isinstance(error, pymysql.err.OperationalError) and error.args[0] == CR.CR_SERVER_LOST, outcome
    assert time.monotonic() - start < WAIT
    wait_until(dropped(proxy, before), WAIT, "every backend behind the dead network is dropped")
    relay.restore()
    assert scalar(proxy.connect(), "SELECT 42") == 42
    assert scalar(conn, "SELECT 43") == 43  # it was in no transaction: it goes on


def test_idle_backends_behind_a_dead_network_are_dropped_by_themselves(relay, proxy_factory):
    proxy = proxy_factory(backend=via(relay))
    fill_pool(proxy, 3)
    before = backend_ids(proxy)
    relay.blackhole()
    wait_until(dropped(proxy, before), WAIT, "the idle backends are found dead and dropped")
    assert pool_read(proxy, lambda pool: pool.stats.closed["server_gone"]) >= 3
    start = time.monotonic()
    assert scalar(proxy.connect(), "SELECT 42") == 42  # new connections are not blackholed
    assert time.monotonic() - start < WAIT


def test_dead_pooled_backend_is_replaced_silently(relay, proxy_factory):
    """A client that comes right after the network died gets its answer from a new backend:
    the check before use (pool.ping_after 0: always) waits no longer than the keepalive."""
    proxy = proxy_factory(backend=via(relay), pool={"ping_after": 0})
    fill_pool(proxy, 3)
    relay.blackhole()
    start = time.monotonic()
    assert scalar(proxy.connect(), "SELECT 42") == 42
    assert time.monotonic() - start < WAIT


def test_reset_all_backends(relay, proxy_factory, app_server):
    app_server.execute("CREATE TABLE IF NOT EXISTS appdb.fault_reset (id INT PRIMARY KEY) ENGINE=InnoDB")
    app_server.execute("DELETE FROM appdb.fault_reset")
    proxy = proxy_factory(backend=via(relay))
    fill_pool(proxy, 2)
    in_txn, outside = proxy.connect(), proxy.connect()
    with in_txn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("INSERT INTO fault_reset VALUES (1)")
    assert scalar(outside, "SELECT 1") == 1
    clients = proxy.client_count()
    closed_before = pool_read(proxy, lambda pool: pool.stats.closed["server_gone"])
    backends = pool_size(proxy)

    assert relay.reset_all() == backends  # the idle ones and the one in the transaction
    wait_until(lambda: pool_read(proxy, lambda pool: pool.stats.closed["server_gone"]) == closed_before + backends,
               WAIT, "the proxy sees every reset backend go")
    with pytest.raises(pymysql.err.OperationalError) as info:
        scalar(in_txn, "SELECT 1")
    assert info.value.args[0] == CR.CR_SERVER_LOST
    wait_until(lambda: proxy.client_count() == clients - 1, WAIT, "the client whose transaction was lost is closed")
    assert scalar(outside, "SELECT 2") == 2  # no transaction: it goes on, on a new backend
    assert scalar(app_server.connect(), "SELECT COUNT(*) FROM appdb.fault_reset") == 0  # rolled back
    for conn in [proxy.connect() for _ in range(3)]:
        assert scalar(conn, "SELECT 3") == 3


@pytest.mark.parametrize("refusal", [Refusal.RESET, Refusal.CLOSED])
def test_server_refusing_new_connections_behind_a_slow_link(relay, proxy_factory, refusal):
    # Below the pool's longest connect backoff: while a client waits, the pool tries at least
    # once a second (tests/unit/test_pool.py, and test_backend_down.py for a real server).
    checkout_timeout = BACKOFF_CAP - 1
    proxy = proxy_factory(backend=via(relay), pool={"checkout_timeout": checkout_timeout})
    conn = proxy.connect()  # logged in (and its schema checked) before the trouble starts
    assert scalar(conn, "SELECT 1") == 1
    relay.set_latency(0.2)
    relay.refuse_new(refusal)
    relay.reset_all()  # the backends it had are gone too
    wait_until(lambda: pool_size(proxy) == 0, WAIT, "the pool has no backend left")

    start = time.monotonic()
    with pytest.raises(pymysql.err.OperationalError) as info:
        scalar(conn, "SELECT 2")
    waited = time.monotonic() - start
    # 2003, naming the server and what the proxy tried (never 1040 Too many connections).
    assert info.value.args[0] == CR.CR_CONN_HOST_ERROR, info.value
    assert info.value.args[1].startswith(f"Can't connect to MySQL server on '{relay.host}:{relay.port}' "
                                         "(mysqlpool-proxy: "), info.value
    assert waited < checkout_timeout + 2

    relay.allow_new()
    # The same client, on a new backend across the slow link. Down for longer than checkout_timeout,
    # the server counts as known down for a second after each failed attempt (refused at once then).
    wait_until(lambda: answers(conn, "SELECT 3") == 3, checkout_timeout + 2, "the client is served again")
    relay.set_latency(0)
    assert scalar(proxy.connect(), "SELECT 4") == 4


def test_recycling_while_backends_are_slow_to_close(relay, proxy_factory):
    """Backends retire after max_lifetime 1 s, and each takes about a second to close (the
    server's close after COM_QUIT reaches the proxy late): clients never notice, and no
    healthy backend is closed as if the pool were shutting down."""
    proxy = proxy_factory(backend=via(relay), pool={"max_lifetime": 1})
    relay.slow_close(1.0)
    conns = [proxy.connect() for _ in range(3)]
    errors: list[Exception] = []
    closing_seen = threading.Event()
    end = time.monotonic() + 5

    def work(conn):
        n = 0
        while time.monotonic() < end:
            try:
                with conn.cursor() as cur:
                    cur.execute("BEGIN")
                    cur.execute("SELECT %s", (n,))
                    assert cur.fetchone()[0] == n
                    cur.execute("COMMIT")
            except Exception as exc:
                errors.append(exc)
                return
            n += 1

    threads = [threading.Thread(target=work, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        # A backend the pool no longer has, whose connection is still open: one still closing.
        if relay.open_connections > pool_read(proxy, lambda pool: len(pool.idle) + len(pool.busy)):
            closing_seen.set()
        time.sleep(0.05)  # sampling interval, not a wait for an event
    for t in threads:
        t.join(WAIT)
    assert errors == []
    closed = pool_read(proxy, lambda pool: dict(pool.stats.closed))
    assert closed.get("max_lifetime", 0) >= 3, closed  # the backends really were recycled
    assert closing_seen.is_set()
    assert closed.get("shutdown", 0) == 0, closed

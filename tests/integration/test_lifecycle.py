# Connection lifecycle against real servers that time out, restart, get
# killed and run out of connection slots: the seeds' scenarios, plus the
# proxy's own timeouts, PAUSE/RESUME and reload. Servers run with
# wait_timeout = 3 so "idle past the server's timeout" takes seconds. Those
# idle periods are what the scenarios are about, so they are sleeps (each
# says so); everything else waits for the condition it needs, with a bound.
import random
import threading
import time

import pymysql
import pytest
import sqlalchemy

from mysqlpool_proxy.ops import operations
from tests.support.mariadb import require_restartable
from tests.support.proxy import APP_PASSWORD, prepare_app_account
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

WAIT_TIMEOUT = 3


@pytest.fixture
def short_server(mariadb_factory):
    server = mariadb_factory(wait_timeout=WAIT_TIMEOUT, interactive_timeout=WAIT_TIMEOUT)
    prepare_app_account(server)
    server.execute("CREATE TABLE appdb.jobs (id INT AUTO_INCREMENT PRIMARY KEY, worker INT, seq INT, "
                   "UNIQUE KEY (worker, seq)) ENGINE=InnoDB")
    return server


def scalar(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0]


def test_idle_timeout_is_derived_below_wait_timeout(proxy_factory, short_server):
    proxy = proxy_factory(short_server)
    idle_timeout = proxy.call(proxy.proxy.idle_timeout)
    assert 0 < idle_timeout < WAIT_TIMEOUT


def test_rq_style_worker_through_several_wait_timeouts(proxy_factory, short_server):
    proxy = proxy_factory(short_server)
    conn = proxy.connect()  # held for the worker's whole life, no reconnect code
    for job in range(4):
        with conn.cursor() as cur:
            cur.execute("INSERT INTO jobs (worker, seq) VALUES (1, %s)", (job,))
        time.sleep(WAIT_TIMEOUT + 0.5)  # the scenario: idle past the server's wait_timeout between jobs
    assert scalar(conn, "SELECT COUNT(*) FROM jobs WHERE worker = 1") == 4
    assert proxy.pool_stats()["closed"].get("server_gone", 0) == 0  # the proxy closed them first


def test_sqlalchemy_without_recycle_or_pre_ping(proxy_factory, short_server):
    proxy = proxy_factory(short_server)
    engine = sqlalchemy.create_engine(proxy.url())  # no pool_recycle, no pool_pre_ping
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
    time.sleep(WAIT_TIMEOUT + 1)  # the scenario: the pooled connection idles past the server's wait_timeout
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("SELECT 2")).scalar() == 2
    engine.dispose()


def test_raw_mysqldb_connection_held_across_idle_period(proxy_factory, short_server):
    import MySQLdb
    proxy = proxy_factory(short_server)
    conn = MySQLdb.connect(host=proxy.host, port=proxy.port, user="app", password=APP_PASSWORD, db="appdb")
    cur = conn.cursor()
    cur.execute("SELECT 1")
    time.sleep(WAIT_TIMEOUT + 1)  # the scenario: held idle past the server's wait_timeout
    cur.execute("SELECT 2")
    assert cur.fetchone() == (2,)
    conn.close()


def test_held_backend_of_idle_pinned_client_is_kept_alive(proxy_factory, short_server):
    proxy = proxy_factory(short_server)
    conn = proxy.connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE keep (x INT)")  # pins the client to its backend
        cur.execute("INSERT INTO keep VALUES (7)")
    time.sleep(WAIT_TIMEOUT * 2)  # the scenario: the pinned client idles for two of the server's wait_timeouts
    assert scalar(conn, "SELECT x FROM keep") == 7  # the pinned backend was pinged, not lost


def test_session_mode_idle_client_keeps_its_backend(proxy_factory, short_server):
    proxy = proxy_factory(short_server, pool={"mode": "session"})
    conn = proxy.connect()
    with conn.cursor() as cur:
        cur.execute("SET @mine = 'kept'")
    time.sleep(WAIT_TIMEOUT * 2)  # the scenario: the client idles for two of the server's wait_timeouts
    assert scalar(conn, "SELECT @mine") == "kept"


def test_300_clients_against_max_user_connections_10(proxy_factory, mariadb_factory):
    # (The server's default wait_timeout: with 3 s, a client thread starved of CPU for 3 s between two
    # statements of its transaction on a loaded machine lost its backend to the server, as it would
    # directly; that is not what this test is about.)
    server = mariadb_factory()
    prepare_app_account(server, max_user_connections=10)
    # Configured above the account's limit on purpose: the proxy must cap itself.
    proxy = proxy_factory(server, pool={"max_size": 20, "checkout_timeout": 2, "max_waiting_clients": 1000})
    outcomes = {"ok": 0, "1040": 0}
    unexpected = []
    lock = threading.Lock()

    def client(i):
        try:
            conn = proxy.connect()
        except pymysql.err.OperationalError as exc:
            with lock:
                unexpected.append(repr(exc))
            return
        try:
            with conn.cursor() as cur:
                cur.execute("BEGIN")
                cur.execute("SELECT SLEEP(0.05)")
                cur.execute("COMMIT")
            with lock:
                outcomes["ok"] += 1
        except pymysql.err.OperationalError as exc:
            with lock:
                if exc.args[0] == 1040 and "mysqlpool-proxy" in exc.args[1] and "after waiting" in exc.args[1]:
                    outcomes["1040"] += 1
                else:
                    unexpected.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(300)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert unexpected == []
    assert outcomes["ok"] + outcomes["1040"] == 300
    assert outcomes["ok"] > 0
    assert proxy.call(lambda: proxy.proxy.pools["app"].max_size) == 9


def test_server_restart_under_load(proxy_factory, short_server):
    require_restartable(short_server)
    proxy = proxy_factory(short_server, pool={"max_size": 10, "checkout_timeout": 20})
    stop = threading.Event()
    committed = {}
    errors = {}
    lock = threading.Lock()

    def worker(w):
        conn = proxy.connect()
        seq = 0
        while not stop.is_set():
            try:
                with conn.cursor() as cur:
                    cur.execute("BEGIN")
                    cur.execute("INSERT INTO jobs (worker, seq) VALUES (%s, %s)", (w, seq))
                    cur.execute("COMMIT")
                with lock:
                    committed.setdefault(w, set()).add(seq)
                seq += 1
            except pymysql.err.MySQLError as exc:
                with lock:
                    errors.setdefault(w, []).append(exc.args)
                if exc.args and exc.args[0] == 1062:
                    seq += 1  # the lost-reply COMMIT did commit: not a duplicate, move on
                if exc.args and exc.args[0] in (2006, 2013):  # its transaction died with the backend
                    conn.close()
                    conn = proxy.connect()
                    # A COMMIT in flight may have committed before its reply was lost: look before
                    # retrying, as an application must after a lost COMMIT on a direct connection.
                    try:
                        if scalar(conn, f"SELECT COUNT(*) FROM jobs WHERE worker = {w} AND seq = {seq}"):
                            with lock:
                                committed.setdefault(w, set()).add(seq)
                            seq += 1
                    except pymysql.err.MySQLError as check_exc:
                        with lock:
                            errors.setdefault(w, []).append(check_exc.args)
            time.sleep(random.uniform(0, 0.02))  # the scenario: a worker's think time between transactions
        conn.close()

    def commits() -> dict[int, int]:
        with lock:
            return {w: len(seqs) for w, seqs in committed.items()}

    idle = [proxy.connect() for _ in range(10)]
    for c in idle:
        assert scalar(c, "SELECT 1") == 1
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(50)]
    for t in threads:
        t.start()
    wait_until(lambda: len(commits()) == len(threads), 60, "every worker committed before the restart")
    short_server.restart()
    before = commits()
    wait_until(lambda: all(n > before[w] for w, n in commits().items()), 60,
               "every worker committed again after the restart")
    stop.set()
    for t in threads:
        t.join(60)
    for c in idle:  # idle clients see no error at all
        assert scalar(c, "SELECT 2") == 2
    for w, errs in errors.items():
        assert len(errs) <= 1, f"worker {w} saw {errs}"
    rows = short_server.execute("SELECT worker, seq FROM appdb.jobs WHERE worker IS NOT NULL")
    stored = {}
    for w, s in rows:
        stored.setdefault(w, []).append(s)
    for w, seqs in committed.items():
        assert seqs <= set(stored.get(w, [])), f"worker {w} lost committed rows"
    for seqs in stored.values():
        assert len(seqs) == len(set(seqs))


def test_dba_kills_every_backend_while_clients_idle(proxy_factory, short_server):
    proxy = proxy_factory(short_server)
    clients = [proxy.connect() for _ in range(5)]
    for c in clients:
        scalar(c, "SELECT 1")
    short_server.kill_connections("app")
    for c in clients:
        assert scalar(c, "SELECT 2") == 2


def test_idle_transaction_timeout_rolls_back_and_tells_the_client(proxy_factory, short_server):
    proxy = proxy_factory(short_server, pool={"idle_transaction_timeout": 0.5, "max_size": 1})
    conn = proxy.connect()
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("INSERT INTO jobs (worker, seq) VALUES (99, 1)")
    wait_until(lambda: proxy.pool_stats()["busy"] == 0, 10, "the idle transaction's backend given back")
    other = proxy.connect()
    assert scalar(other, "SELECT COUNT(*) FROM jobs WHERE worker = 99") == 0  # backend was freed, rolled back
    with pytest.raises(pymysql.err.MySQLError) as err:
        scalar(conn, "SELECT 1")
    assert "idle_transaction_timeout" in err.value.args[1]
    assert scalar(conn, "SELECT 2") == 2  # then the connection goes on


def test_client_idle_timeout_closes_idle_clients(proxy_factory, short_server):
    proxy = proxy_factory(short_server, proxy={"client_idle_timeout": 0.5})
    conn = proxy.connect()
    wait_until(lambda: proxy.client_count() == 0, 10, "the idle client closed by the proxy")
    with pytest.raises(pymysql.err.OperationalError):
        scalar(conn, "SELECT 1")


def test_query_timeout_kills_the_statement(proxy_factory, short_server):
    proxy = proxy_factory(short_server, pool={"query_timeout": 0.5})
    conn = proxy.connect()
    started = time.monotonic()
    try:
        value = scalar(conn, "SELECT SLEEP(20)")
        assert value == 1  # MariaDB: an interrupted SLEEP() returns 1
    except pymysql.err.OperationalError as exc:
        assert exc.args[0] in (1317, 1969)
    assert time.monotonic() - started < 10
    assert scalar(conn, "SELECT 3") == 3


def test_pause_resume_across_server_restart(proxy_factory, short_server):
    require_restartable(short_server)
    proxy = proxy_factory(short_server, pool={"checkout_timeout": 20})
    conn = proxy.connect()
    assert scalar(conn, "SELECT 1") == 1
    proxy.call(operations.pause, proxy.proxy)
    assert proxy.pool_stats()["idle"] == 0
    short_server.restart()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("v", scalar(conn, "SELECT 42")))
    t.start()
    wait_until(lambda: proxy.pool_stats()["waiting"] == 1, 10, "the statement waiting for a backend")
    assert "v" not in result  # waits while paused
    proxy.call(operations.resume, proxy.proxy)
    t.join(20)
    assert result["v"] == 42


def test_reload_changes_pool_size_and_users_without_dropping_clients(proxy_factory, short_server, tmp_path):
    proxy = proxy_factory(short_server, pool={"max_size": 2})
    conn = proxy.connect()
    assert scalar(conn, "SELECT 1") == 1
    short_server.create_user("late", "late-pw")
    from mysqlpool_proxy.config import load_config
    from tests.support.proxy import render_config
    path = tmp_path / "reloaded.toml"
    path.write_text(render_config(short_server, pool={"max_size": 4},
                                  users=[{"name": "app", "password": APP_PASSWORD},
                                         {"name": "late", "password": "late-pw"}]))
    proxy.call(operations.reload, proxy.proxy, load_config(str(path)))
    assert proxy.call(lambda: proxy.proxy.pools["app"].max_size) == 4
    assert scalar(conn, "SELECT 2") == 2  # the existing client carried on
    late = proxy.connect(user="late", password="late-pw")
    assert scalar(late, "SELECT CURRENT_USER()").startswith("late@")


def test_server_capacity_error_keeps_clients_waiting(proxy_factory, mariadb_factory):
    server = mariadb_factory(max_connections=10)
    prepare_app_account(server)
    server.create_user("limited", "limited-pw", max_user_connections=3, grants="ALL PRIVILEGES ON appdb.*")
    # Another application already uses 2 of the account's 3 connections.
    squatters = [server.connect(user="limited", password="limited-pw") for _ in range(2)]
    proxy = proxy_factory(server, users=[{"name": "limited", "password": "limited-pw", "max_size": 5}],
                          pool={"checkout_timeout": 10})
    results, errors = [], []

    def client():
        try:
            conn = proxy.connect(user="limited", password="limited-pw")
            results.append(scalar(conn, "SELECT SLEEP(0.2) + 1"))
            conn.close()
        except pymysql.err.MySQLError as exc:
            errors.append(exc.args)

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(code != 1226 for code, *_ in errors), errors
    assert errors == []
    assert results == [1] * 6
    for s in squatters:
        s.close()


@pytest.mark.parametrize("conn_max_age", [0, None], ids=["CONN_MAX_AGE=0", "CONN_MAX_AGE=None"])
def test_django_management_command_sleeping_past_wait_timeout(proxy_factory, short_server, conn_max_age):
    """The seeds' Django shell / management command: query, sleep past the server's
    wait_timeout, query again, with no close_old_connections() anywhere."""
    import django
    from django.conf import settings
    from django.db import connections

    proxy = proxy_factory(short_server)
    alias = f"seed_{'persistent' if conn_max_age is None else 'default'}_{proxy.port}"
    database = {"ENGINE": "django.db.backends.mysql", "NAME": "appdb", "USER": "app", "PASSWORD": APP_PASSWORD,
                "HOST": proxy.host, "PORT": str(proxy.port), "CONN_MAX_AGE": conn_max_age}
    if not settings.configured:
        settings.configure(DATABASES={"default": database}, INSTALLED_APPS=[], USE_TZ=True)
        django.setup()
    connections.settings[alias] = connections.configure_settings({"default": database, alias: database})[alias]
    conn = connections[alias]
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO jobs (worker, seq) VALUES (7, 1)")
        time.sleep(WAIT_TIMEOUT + 1.5)  # the scenario: the command sleeps past the server's wait_timeout
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM jobs WHERE worker = 7")
            assert cur.fetchone() == (1,)
    finally:
        conn.close()


def test_slow_reader_does_not_make_the_server_hit_net_write_timeout(proxy_factory, mariadb_factory):
    """The seeds' 2013 on a long read: the proxy reads ahead up to result_buffer_bytes,
    so a client reading slowly does not leave the server blocked past net_write_timeout."""
    server = mariadb_factory(net_write_timeout=2)
    prepare_app_account(server)
    proxy = proxy_factory(server, pool={"result_buffer_bytes": 16 * 1024 * 1024})
    conn = proxy.connect()
    rows = 0
    with conn.cursor(pymysql.cursors.SSCursor) as cur:
        cur.execute("SELECT seq, REPEAT('x', 100) FROM seq_1_to_60000")  # about 6.5 MB
        for _ in cur:
            rows += 1
            if rows % 10000 == 0:
                time.sleep(1)  # the scenario: a slow reader, six seconds in all (three net_write_timeouts)
    assert rows == 60000
    assert scalar(conn, "SELECT 1") == 1

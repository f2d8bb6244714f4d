# Commands the proxy answers itself: COM_PING, COM_RESET_CONNECTION,
# COM_CHANGE_USER, KILL / COM_PROCESS_KILL with the proxy's connection ids.
import threading
import time

import pymysql
import pytest

from tests.support.proxy import APP_PASSWORD
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

OTHER_USER, OTHER_PASSWORD = "reporter", "reporter-pw"


@pytest.fixture
def two_users(proxy_factory, app_server):
    app_server.create_user(OTHER_USER, OTHER_PASSWORD, grants="SELECT ON appdb.*")
    return proxy_factory(users=[{"name": "app", "password": APP_PASSWORD},
                                {"name": OTHER_USER, "password": OTHER_PASSWORD}])


def scalar(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def test_ping_needs_no_backend(proxy):
    conn = proxy.connect()
    before = proxy.pool_stats()["connects"]
    conn.ping(reconnect=False)
    assert proxy.pool_stats()["connects"] == before


def test_reset_connection_clears_state(proxy):
    conn = proxy.connect()
    with conn.cursor() as cur:
        cur.execute("SET @v = 1")
        cur.execute("SET SESSION sql_mode = 'ANSI'")
        cur.execute("CREATE TEMPORARY TABLE t_reset (x INT)")
    conn._execute_command(0x1F, b"")  # COM_RESET_CONNECTION
    conn._read_ok_packet()
    assert scalar(conn, "SELECT @v") is None
    assert "ANSI" not in scalar(conn, "SELECT @@sql_mode")
    with pytest.raises(pymysql.err.ProgrammingError):
        scalar(conn, "SELECT * FROM t_reset")
    assert scalar(conn, "SELECT DATABASE()") == "appdb"  # kept, as the server does
    assert proxy.pool_stats()["busy"] == 0  # nothing pins it any more


def test_change_user_moves_client_to_that_users_pool(two_users):
    import MySQLdb  # PyMySQL has no change_user(); mysqlclient sends a real COM_CHANGE_USER
    mc = MySQLdb.connect(host=two_users.host, port=two_users.port, user="app", password=APP_PASSWORD, db="appdb")
    cur = mc.cursor()
    cur.execute("SET @before = 1")
    mc.change_user(OTHER_USER, OTHER_PASSWORD, "appdb")
    cur = mc.cursor()
    cur.execute("SELECT CURRENT_USER(), @before, DATABASE()")
    user, before, db = cur.fetchone()
    assert user.startswith(OTHER_USER + "@")
    assert before is None
    assert db == "appdb"
    with pytest.raises(MySQLdb.OperationalError) as err:
        mc.change_user("app", "wrong-password", "appdb")
    assert err.value.args[0] == 1045


def test_kill_query_stops_the_targets_statement_only(proxy_factory, app_server):
    proxy = proxy_factory(pool={"max_size": 3})
    victim, killer, bystander = proxy.connect(), proxy.connect(), proxy.connect()
    victim_id = victim.thread_id()
    assert victim_id != killer.thread_id()
    result = {}

    def run_sleep():
        try:
            result["value"] = scalar(victim, "SELECT SLEEP(30)")
        except Exception as exc:  # recorded for the assertion
            result["error"] = exc

    def sleeping() -> bool:
        """The victim's SLEEP(30) runs on its backend (so KILL QUERY has a statement to stop)."""
        backend = proxy.call(lambda: getattr(proxy.proxy.clients[victim_id].backend, "thread_id", None))
        return backend is not None and app_server.execute(
            "SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = %s", (backend,)) == (("SELECT SLEEP(30)",),)

    t = threading.Thread(target=run_sleep)
    started = time.monotonic()
    t.start()
    wait_until(sleeping, 5, "the victim's statement running on the server")
    with killer.cursor() as cur:
        cur.execute(f"KILL QUERY {victim_id}")
    t.join(10)
    assert time.monotonic() - started < 10
    # MariaDB: an interrupted SLEEP() returns 1 (or the statement errors with 1317).
    assert result.get("value") == 1 or getattr(result.get("error"), "args", [None])[0] == 1317
    assert scalar(victim, "SELECT 5") == 5  # the victim's connection survives a KILL QUERY
    assert scalar(bystander, "SELECT 6") == 6


def test_kill_connection_closes_the_target_client(proxy):
    victim, killer = proxy.connect(), proxy.connect()
    with killer.cursor() as cur:
        cur.execute(f"KILL {victim.thread_id()}")
    with pytest.raises(pymysql.err.OperationalError):
        scalar(victim, "SELECT 1")
    assert scalar(killer, "SELECT 2") == 2


def test_kill_unknown_and_foreign_ids(two_users):
    app = two_users.connect()
    other = two_users.connect(user=OTHER_USER, password=OTHER_PASSWORD)
    with app.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError) as err:
            cur.execute("KILL 999999")
        assert err.value.args[0] == 1094
        with pytest.raises(pymysql.err.OperationalError) as err:
            cur.execute(f"KILL {other.thread_id()}")
        assert err.value.args[0] == 1095
    assert scalar(other, "SELECT 1") == 1


def test_dba_kills_idle_backends_clients_do_not_notice(proxy, app_server):
    conns = [proxy.connect() for _ in range(4)]
    for c in conns:
        assert scalar(c, "SELECT 1") == 1
    app_server.kill_connections("app")
    for c in conns:
        assert scalar(c, "SELECT 2") == 2


def test_backend_killed_inside_transaction_ends_that_client(proxy, app_server):
    conn = proxy.connect()
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
    app_server.kill_connections("app")
    wait_until(lambda: proxy.client_count() == 0, 10, "the client whose transaction died closed by the proxy")
    with pytest.raises(pymysql.err.OperationalError) as err:
        scalar(conn, "SELECT 1")
    assert err.value.args[0] in (2013, 2006)
    fresh = proxy.connect()
    assert scalar(fresh, "SELECT 3") == 3


def results_of(conn, sql):
    """Every result of a multi-statement query: a list of rows per result set, an int for an OK's
    affected rows; an error stops it and is raised."""
    out = []
    with conn.cursor() as cur:
        cur.execute(sql)
        while True:
            out.append(cur.fetchall() if cur.description else cur.rowcount)
            if not cur.nextset():
                return out


def multi(proxy, **kwargs):
    from pymysql.constants import CLIENT
    return proxy.connect(client_flag=CLIENT.MULTI_STATEMENTS, **kwargs)


def test_kill_inside_a_multi_statement_query_runs_every_other_statement(two_users):
    """KILL takes the proxy's ids, so the proxy carries it out; the other statements of the query still
    run, in order, and every result comes back, as directly."""
    app = multi(two_users)
    victim, victim2 = two_users.connect(), two_users.connect()
    assert results_of(app, f"SELECT 42; KILL {victim.thread_id()}") == [((42,),), 0]
    assert results_of(app, f"KILL {victim2.thread_id()}; SELECT 43") == [0, ((43,),)]
    for gone in (victim, victim2):
        with pytest.raises(pymysql.err.OperationalError):
            scalar(gone, "SELECT 1")
    with app.cursor() as cur:  # a failing KILL stops the query there, with the server's error
        with pytest.raises(pymysql.err.OperationalError) as err:
            cur.execute("SELECT 1; KILL 999999; SELECT 2")
            while cur.nextset():
                pass
        assert err.value.args == (1094, "Unknown thread id: 999999")
    other = two_users.connect(user=OTHER_USER, password=OTHER_PASSWORD)
    with app.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError) as err:
            cur.execute(f"KILL QUERY {other.thread_id()}; SELECT 2")
        assert err.value.args[0] == 1095
    assert results_of(app, "SELECT 5") == [((5,),)]  # still usable
    assert scalar(other, "SELECT 1") == 1


def test_a_client_that_kills_itself_in_a_multi_statement_query_is_closed(proxy):
    app = multi(proxy)
    with app.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError) as err:
            cur.execute(f"SELECT 1; KILL {app.thread_id()}; SELECT 2")
            assert cur.fetchall() == ((1,),)
            cur.nextset()
        assert err.value.args[0] == 1927
    with pytest.raises(pymysql.err.OperationalError):
        scalar(app, "SELECT 3")

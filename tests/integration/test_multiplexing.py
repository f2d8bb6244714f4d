# Multiplexing without pins (issue 3): prepared statements, user variables,
# LAST_INSERT_ID(), diagnostics and CONNECTION_ID() keep their meaning for
# each client while clients share few backends, and never show one client's
# values to another.
import struct
import threading

import mysql.connector
import pymysql
import pytest

from tests.support.peak import PeakSampler
from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def scalar(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0]


@pytest.fixture
def two_backends(proxy_factory, app_server):
    app_server.execute("CREATE TABLE IF NOT EXISTS appdb.mx (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB")
    app_server.execute("CREATE TABLE IF NOT EXISTS appdb.tiny (a TINYINT) ENGINE=InnoDB")
    return proxy_factory(pool={"max_size": 2, "checkout_timeout": 10})


def hold_a_backend(proxy):
    """Another client takes a backend in a transaction, so the next statements run elsewhere."""
    other = proxy.connect()
    with other.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
    return other


def test_100_prepared_statement_clients_share_4_backends(proxy_factory, app_server):
    """Issue 3's 'done when': mysql-connector prepared=True, transactions, max_size 4."""
    app_server.execute("CREATE TABLE IF NOT EXISTS appdb.ps_counter (id INT PRIMARY KEY, n INT) ENGINE=InnoDB")
    app_server.execute("REPLACE INTO appdb.ps_counter VALUES (1, 0)")
    proxy = proxy_factory(pool={"max_size": 4, "checkout_timeout": 60})
    sampler = PeakSampler(app_server, APP_USER)
    sampler.start()
    errors, pinned_after = [], []
    barrier = threading.Barrier(100)

    def client(i):
        try:
            conn = mysql.connector.connect(host=proxy.host, port=proxy.port, user=APP_USER, password=APP_PASSWORD,
                                           database=APP_DB, use_pure=True, autocommit=True)
            cur = conn.cursor(prepared=True)
            barrier.wait(60)
            for _ in range(3):
                conn.start_transaction()
                cur.execute("SELECT n FROM ps_counter WHERE id = ? FOR UPDATE", (1,))
                cur.fetchall()
                cur.execute("UPDATE ps_counter SET n = n + ? WHERE id = ?", (1, 1))
                conn.commit()
            # Its transactions are over: it must hold no backend and have no pin (prepared
            # statements do not pin). connection_id is the proxy's id for this client.
            me = conn.connection_id
            state = proxy.call(lambda: (proxy.proxy.clients[me].pinned_reasons(),
                                        proxy.proxy.clients[me].backend is None))
            if state != ([], True):
                pinned_after.append(state)
            cur.close()
            conn.close()
        except Exception as exc:  # collected and asserted below
            errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    peak = sampler.stop()
    assert errors == []
    assert app_server.execute("SELECT n FROM appdb.ps_counter WHERE id = 1")[0][0] == 300
    assert peak <= 4, f"the server saw {peak} connections"
    assert pinned_after == []


def test_prepared_statement_runs_after_its_backend_is_taken(two_backends):
    conn = mysql.connector.connect(host=two_backends.host, port=two_backends.port, user=APP_USER,
                                   password=APP_PASSWORD, database=APP_DB, use_pure=True, autocommit=True)
    cur = conn.cursor(prepared=True)
    cur.execute("SELECT ? + 1", (41,))
    assert cur.fetchone()[0] == 42
    other = hold_a_backend(two_backends)  # most likely the backend that has the statement
    cur.execute("SELECT ? + 1", (99,))
    assert cur.fetchone()[0] == 100
    other.rollback()
    conn.close()


def test_statement_prepared_with_no_schema_keeps_reading_no_schema(two_backends):
    """DATABASE() in a statement prepared with no schema selected reads NULL, as on a
    server, even when it runs later on a backend that has a schema (here: the client's
    own, in its transaction, after USE): a schema cannot be unselected there."""
    conn = mysql.connector.connect(host=two_backends.host, port=two_backends.port, user=APP_USER,
                                   password=APP_PASSWORD, use_pure=True, autocommit=True)
    cur = conn.cursor(prepared=True)
    cur.execute("SELECT DATABASE(), ?", (1,))
    assert cur.fetchall() == [(None, 1)]
    other = hold_a_backend(two_backends)  # the statement's backend may be taken meanwhile
    conn.start_transaction()
    plain = conn.cursor()
    plain.execute(f"USE {APP_DB}")
    for value in (2, 3):
        cur.execute("SELECT DATABASE(), ?", (value,))
        assert cur.fetchall() == [(None, value)]
    plain.execute("SELECT DATABASE()")
    assert plain.fetchall() == [(APP_DB,)]
    conn.commit()
    other.rollback()
    conn.close()


def _raw_prepare(conn, sql: bytes) -> tuple[int, int]:
    conn._execute_command(0x16, sql)
    first = conn._read_packet().get_all_data()
    stmt_id, columns, params = struct.unpack_from("<IHH", first, 1)
    for _ in range((params and params + 1) + (columns and columns + 1)):
        conn._read_packet()
    return stmt_id, params


def _raw_execute(conn, stmt_id: int, value: int, bind_types: bool):
    body = struct.pack("<IBI", stmt_id, 0, 1) + b"\x00" + (b"\x01\x08\x00" if bind_types else b"\x00")
    conn._execute_command(0x17, body + struct.pack("<q", value))
    conn._read_packet()  # column count
    conn._read_packet()  # column definition
    conn._read_packet()  # EOF
    row = conn._read_packet().get_all_data()
    conn._read_packet()  # EOF
    return row


def test_execute_relying_on_earlier_bound_types_works_on_another_backend(two_backends):
    """COM_STMT_EXECUTE with new-params-bound = 0 reuses types bound before, which the
    server statement on a new backend never saw: the proxy must supply them."""
    conn = two_backends.connect()
    stmt_id, params = _raw_prepare(conn, b"SELECT ? * 2")
    assert params == 1
    first = _raw_execute(conn, stmt_id, 21, bind_types=True)
    other = hold_a_backend(two_backends)
    again = _raw_execute(conn, stmt_id, 21, bind_types=False)
    assert again == first
    other.rollback()


def test_user_variables_follow_their_client(two_backends):
    a = two_backends.connect()
    with a.cursor() as cur:
        cur.execute("SET @greeting = 'hello', @n = 41, @d = 1.5, @b = X'00ff', @null = NULL")
        cur.execute("SELECT @n := @n + 1")
    other = hold_a_backend(two_backends)
    assert scalar(other, "SELECT @greeting") is None  # never another client's
    with a.cursor() as cur:
        cur.execute("SELECT @greeting, @n, @d, @b, @null")
        assert cur.fetchone() == ("hello", 42, pytest.approx(1.5), b"\x00\xff", None)
    assert two_backends.pool_stats()["pins"].get("user_variable", 0) == 0
    other.rollback()


def test_a_user_variable_holding_bytes_its_charset_refuses_keeps_working(two_backends):
    # A string literal sent in another charset than the connection's (latin1 bytes to a utf8mb4
    # connection, as legacy apps do) leaves a variable the server would refuse to take back as
    # `_utf8mb4 X'..'` (1300): the client stays on its backend rather than fail every statement.
    a = two_backends.connect(charset="utf8mb4")
    with a.cursor() as cur:
        cur.execute(b"SET @legacy = 'caf\xe9', @fine = 'ok'")
    other = hold_a_backend(two_backends)
    with a.cursor() as cur:
        cur.execute("SELECT HEX(@legacy), @fine")
        assert cur.fetchone() == ("636166E9", "ok")
    assert two_backends.pool_stats()["pins"].get("user_variable", 0) == 1
    other.rollback()


def test_last_insert_id_is_each_clients_own(two_backends):
    a, b = two_backends.connect(), two_backends.connect()
    with a.cursor() as cur:
        cur.execute("INSERT INTO mx (v) VALUES (1)")
        mine = cur.lastrowid
    other = hold_a_backend(two_backends)
    assert scalar(a, "SELECT LAST_INSERT_ID()") == mine  # on another backend: restored
    assert scalar(b, "SELECT LAST_INSERT_ID()") == 0  # b never inserted
    with a.cursor() as cur:
        cur.execute("INSERT INTO mx (v) VALUES (LAST_INSERT_ID())")  # the reader inside an INSERT
        cur.execute("SELECT v FROM mx WHERE id = LAST_INSERT_ID()")
        assert cur.fetchone()[0] == mine
    other.rollback()


def test_found_rows_after_sql_calc_found_rows(two_backends, app_server):
    app_server.execute("INSERT INTO appdb.mx (v) VALUES (1), (2), (3), (4), (5)")
    total = app_server.execute("SELECT COUNT(*) FROM appdb.mx")[0][0]
    a = two_backends.connect()
    with a.cursor() as cur:
        cur.execute("SELECT SQL_CALC_FOUND_ROWS id FROM mx LIMIT 1")
        cur.fetchall()
        cur.execute("SELECT FOUND_ROWS()")
        assert cur.fetchone()[0] == total


def test_show_warnings_sees_the_clients_own_warnings(two_backends):
    a = two_backends.connect()
    with a.cursor() as cur:
        cur.execute("INSERT IGNORE INTO tiny VALUES (1000)")  # out of range: a warning
        cur.execute("SHOW WARNINGS")
        rows = cur.fetchall()
    assert any(row[1] == 1264 for row in rows)


def test_diagnostics_of_other_clients_never_leak(two_backends):
    a, b = two_backends.connect(), two_backends.connect()
    assert scalar(a, "SELECT 1") == 1
    with b.cursor() as cur:
        cur.execute("UPDATE mx SET v = v")  # its ROW_COUNT() is b's business
        cur.execute("INSERT IGNORE INTO tiny VALUES (1000)")
    other = hold_a_backend(two_backends)
    assert scalar(a, "SELECT ROW_COUNT()") in (-1, 0)
    with a.cursor() as cur:
        cur.execute("SHOW WARNINGS")
        assert cur.fetchall() == ()
    other.rollback()


def test_connection_id_is_the_proxys_id(two_backends):
    a, b = two_backends.connect(), two_backends.connect()
    assert scalar(a, "SELECT CONNECTION_ID()") == a.thread_id()
    with a.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("SELECT CONNECTION_ID()")
        assert cur.fetchone() == {"CONNECTION_ID()": a.thread_id()}
    assert scalar(b, "SELECT CONNECTION_ID()") == b.thread_id() != a.thread_id()
    with b.cursor() as cur:
        cur.execute(f"KILL {scalar(a, 'SELECT CONNECTION_ID()')}")
    killed = a.thread_id()
    wait_until(lambda: two_backends.call(lambda: killed not in two_backends.proxy.clients), 10,
               "the killed client closed by the proxy")
    with pytest.raises(pymysql.err.OperationalError):
        scalar(a, "SELECT 1")

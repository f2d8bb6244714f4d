# mysql-connector-python through the proxy, with plain (text protocol, COM_QUERY)
# cursors and prepared=True cursors (binary protocol: COM_STMT_PREPARE/EXECUTE,
# SEND_LONG_DATA, RESET, CLOSE): CRUD, commit and rollback, multi-statements,
# a procedure with two result sets, LOAD DATA LOCAL INFILE, 200,000 rows
# fetched unbuffered, a 20 MiB BLOB both ways, utf8mb4 with emoji, server
# errors identical to a direct connection (errno, SQLSTATE, message), the 1045
# wording, prepared statements kept open while other clients use the pool,
# more prepared-statement clients than backends, 1040 on overflow (for
# COM_QUERY and COM_STMT_PREPARE), COM_RESET_CONNECTION / COM_INIT_DB /
# COM_CHANGE_USER, and the connector's own pool. Runs the pure-Python
# implementation (use_pure=True), and the C extension too when it is installed.
import hashlib
import io
import os
import threading

import mysql.connector
import pytest
from mysql.connector import errors

from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER

pytestmark = pytest.mark.integration

T = "connector_"  # table prefix: files share one server

IMPLEMENTATIONS = ["pure"] + (["cext"] if getattr(mysql.connector, "HAVE_CEXT", False) else [])


@pytest.fixture(params=IMPLEMENTATIONS)
def use_pure(request):
    return request.param == "pure"


def connect(target, use_pure=True, **kwargs):
    """A connector connection to the proxy or straight to the server (anything with host/port)."""
    kwargs.setdefault("user", APP_USER)
    kwargs.setdefault("password", APP_PASSWORD)
    kwargs.setdefault("database", APP_DB)
    kwargs.setdefault("charset", "utf8mb4")
    kwargs.setdefault("collation", "utf8mb4_general_ci")
    kwargs.setdefault("autocommit", True)
    kwargs.setdefault("connection_timeout", 10)
    return mysql.connector.connect(host=target.host, port=target.port, use_pure=use_pure, **kwargs)


@pytest.fixture(scope="module")
def tables(app_server):
    app_server.execute(f"CREATE TABLE IF NOT EXISTS appdb.{T}kv (id INT PRIMARY KEY AUTO_INCREMENT, v TEXT) "
                       "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
    app_server.execute(f"CREATE TABLE IF NOT EXISTS appdb.{T}blobs (id INT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB")
    app_server.execute(f"DROP PROCEDURE IF EXISTS appdb.{T}two_results")
    app_server.execute(f"CREATE PROCEDURE appdb.{T}two_results(IN n INT) "
                       "BEGIN SELECT n AS a; SELECT n + 1 AS b, 'x' AS c; END")
    return app_server


def cursor(conn, prepared):
    return conn.cursor(prepared=True) if prepared else conn.cursor()


both_protocols = pytest.mark.parametrize("prepared", [False, True], ids=["text", "prepared"])


# -- basics ---------------------------------------------------------------------------


@both_protocols
def test_select(proxy, use_pure, prepared):
    with connect(proxy, use_pure) as conn, cursor(conn, prepared) as cur:
        cur.execute("SELECT 1 + 1, DATABASE(), @@character_set_client")
        assert tuple(cur.fetchone()) == (2, "appdb", "utf8mb4")


@both_protocols
def test_crud(proxy, tables, use_pure, prepared):
    with connect(proxy, use_pure) as conn, cursor(conn, prepared) as cur:
        cur.execute(f"DELETE FROM {T}kv")
        cur.executemany(f"INSERT INTO {T}kv (id, v) VALUES (%s, %s)", [(1, "a"), (2, "b"), (3, "c")])
        cur.execute(f"UPDATE {T}kv SET v = %s WHERE id = %s", ("B", 2))
        assert cur.rowcount == 1
        cur.execute(f"DELETE FROM {T}kv WHERE id = %s", (3,))
        assert cur.rowcount == 1
        cur.execute(f"INSERT INTO {T}kv (v) VALUES (%s)", ("auto",))
        new_id = cur.lastrowid
        assert new_id > 2
        cur.execute(f"SELECT id, v FROM {T}kv WHERE id <= %s ORDER BY id", (new_id,))
        assert [tuple(r) for r in cur.fetchall()] == [(1, "a"), (2, "B"), (new_id, "auto")]


@both_protocols
def test_commit_and_rollback(proxy, tables, use_pure, prepared):
    with connect(proxy, use_pure, autocommit=False) as conn, cursor(conn, prepared) as cur:
        cur.execute(f"DELETE FROM {T}kv")
        cur.execute(f"INSERT INTO {T}kv (id, v) VALUES (%s, %s), (%s, %s)", (1, "a", 2, "b"))
        conn.commit()
        cur.execute(f"UPDATE {T}kv SET v = %s WHERE id = %s", ("z", 1))
        cur.execute(f"INSERT INTO {T}kv (id, v) VALUES (%s, %s)", (3, "c"))
        conn.rollback()
        cur.execute(f"DELETE FROM {T}kv WHERE id = %s", (2,))
        conn.commit()
        # the same transaction isolation rules hold inside a transaction
        conn.start_transaction()
        cur.execute(f"INSERT INTO {T}kv (id, v) VALUES (%s, %s)", (4, "d"))
        cur.execute(f"SELECT COUNT(*) FROM {T}kv")
        assert tuple(cur.fetchone()) == (2,)
        conn.rollback()
    with connect(proxy, use_pure) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT id, v FROM {T}kv ORDER BY id")
        assert cur.fetchall() == [(1, "a")]


def test_multi_statements(proxy, tables, use_pure):
    with connect(proxy, use_pure) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1; SELECT 2, 3; DO 0", map_results=True)
        sets = [(statement, [tuple(r) for r in rows]) for statement, rows in cur.fetchsets()]
        assert sets == [("SELECT 1", [(1,)]), ("SELECT 2, 3", [(2, 3)]), ("DO 0", [])]
        cur.execute("SELECT 'in sync'")
        assert cur.fetchall() == [("in sync",)]


@pytest.mark.filterwarnings("ignore:Call to deprecated function stored_results")
def test_procedure_with_two_result_sets_callproc(proxy, tables, use_pure):
    with connect(proxy, use_pure) as conn, conn.cursor() as cur:
        cur.callproc(f"{T}two_results", (41,))
        results = [r.fetchall() for r in cur.stored_results()]
        assert results == [[(41,)], [(42, "x")]]
        cur.execute("SELECT 'in sync'")
        assert cur.fetchall() == [("in sync",)]


def test_procedure_with_two_result_sets_call(proxy, tables, use_pure):
    # (Only the text protocol: the connector's prepared cursor cannot read a
    # binary-protocol CALL's further result sets, not even from the server directly.)
    with connect(proxy, use_pure) as conn, conn.cursor() as cur:
        cur.execute(f"CALL {T}two_results(%s)", (41,))
        assert cur.fetchall() == [(41,)]
        assert cur.nextset()
        assert cur.fetchall() == [(42, "x")]
        while cur.nextset():  # the procedure's final OK
            pass
        cur.execute("SELECT %s", ("in sync",))
        assert cur.fetchall() == [("in sync",)]


def test_load_data_local_infile(proxy, tables, use_pure, tmp_path):
    path = tmp_path / "rows.tsv"
    path.write_text("".join(f"{i}\tvalue {i}\n" for i in range(1, 5001)))
    with connect(proxy, use_pure, allow_local_infile=True) as conn, conn.cursor() as cur:
        cur.execute(f"DELETE FROM {T}kv")
        cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {T}kv (id, v)")
        assert cur.rowcount == 5000
        cur.execute(f"SELECT COUNT(*), MAX(v) FROM {T}kv WHERE v LIKE 'value %'")
        assert cur.fetchall() == [(5000, "value 999")]


# -- sizes and character sets ---------------------------------------------------------


@both_protocols
def test_200k_rows_unbuffered(proxy, use_pure, prepared):
    with connect(proxy, use_pure) as conn, cursor(conn, prepared) as cur:
        cur.execute("SELECT seq, CONCAT('row-', seq) FROM seq_1_to_200000")
        count, last = 0, None
        row = cur.fetchone()
        while row is not None:
            count += 1
            last = row
            row = cur.fetchone()
        assert count == 200000
        assert tuple(last) == (200000, "row-200000")
        cur.execute("SELECT %s", ("after stream",))
        assert [tuple(r) for r in cur.fetchall()] == [("after stream",)]


def test_20_mib_blob_both_ways(proxy, tables, use_pure):
    blob = os.urandom(20 * 1024 * 1024)
    with connect(proxy, use_pure) as conn, conn.cursor() as cur:
        cur.execute(f"REPLACE INTO {T}blobs VALUES (%s, %s)", (1, blob))
        cur.execute(f"SELECT b, LENGTH(b), SHA2(b, 256) FROM {T}blobs WHERE id = %s", (1,))
        back, length, digest = cur.fetchone()
        assert length == len(blob)
        assert bytes(back) == blob
        assert digest == hashlib.sha256(blob).hexdigest()


def test_20_mib_blob_both_ways_prepared(proxy, tables, use_pure):
    # Written as a binary-protocol parameter in one COM_STMT_EXECUTE (a packet
    # over 16 MiB); read back as a binary row of 15 MiB, and whole through the
    # text protocol (the connector cannot read a binary row over 16 MiB, not
    # even from the server directly).
    blob = os.urandom(20 * 1024 * 1024)
    with connect(proxy, use_pure) as conn, conn.cursor(prepared=True) as cur:
        cur.execute(f"REPLACE INTO {T}blobs VALUES (?, ?)", (3, blob))
        cur.execute(f"SELECT SUBSTRING(b, 1, 15728640), LENGTH(b), SHA2(b, 256) FROM {T}blobs WHERE id = ?", (3,))
        head, length, digest = cur.fetchone()
        assert bytes(head) == blob[:15 * 1024 * 1024]
        assert (length, digest) == (len(blob), hashlib.sha256(blob).hexdigest())
        with conn.cursor() as text:
            text.execute(f"SELECT b FROM {T}blobs WHERE id = 3")
            assert text.fetchone() == (blob,)


def test_20_mib_blob_as_long_data(proxy, tables, use_pure):
    # A file-like parameter makes the connector stream it with COM_STMT_SEND_LONG_DATA.
    blob = os.urandom(20 * 1024 * 1024)
    with connect(proxy, use_pure) as conn, conn.cursor(prepared=True) as cur:
        cur.execute(f"REPLACE INTO {T}blobs VALUES (?, ?)", (2, io.BytesIO(blob)))
        cur.execute(f"SELECT LENGTH(b), SHA2(b, 256) FROM {T}blobs WHERE id = ?", (2,))
        assert tuple(cur.fetchone()) == (len(blob), hashlib.sha256(blob).hexdigest())


@both_protocols
def test_utf8mb4_round_trip(proxy, tables, use_pure, prepared):
    text = "zażółć gęślą jaźń — 日本語 — 🐬🚀👍🏽"
    with connect(proxy, use_pure) as conn, cursor(conn, prepared) as cur:
        cur.execute(f"INSERT INTO {T}kv (v) VALUES (%s)", (text,))
        cur.execute(f"SELECT v, CHAR_LENGTH(v), HEX(v) FROM {T}kv WHERE id = LAST_INSERT_ID()")
        value, length, hexed = cur.fetchone()
        assert (value, length) == (text, len(text))
        assert bytes.fromhex(hexed) == text.encode("utf-8")
        cur.execute("SELECT %s = _utf8mb4 X'F09F90AC'", ("🐬",))
        assert tuple(cur.fetchone()) == (1,)


# -- errors -----------------------------------------------------------------------------


def _error_of(target, use_pure, prepared, sql, params=None, setup=()):
    with connect(target, use_pure) as conn, cursor(conn, prepared) as cur:
        for statement in setup:
            cur.execute(statement)
        with pytest.raises(errors.Error) as err:
            cur.execute(sql, params)
        cur.execute("SELECT 1")  # still usable
        assert tuple(cur.fetchone()) == (1,)
        exc = err.value
        return type(exc), exc.errno, exc.sqlstate, exc.msg


@both_protocols
def test_unknown_table_error_same_as_direct(proxy, app_server, use_pure, prepared):
    sql = f"SELECT * FROM {T}no_such_table"
    direct = _error_of(app_server, use_pure, prepared, sql)
    proxied = _error_of(proxy, use_pure, prepared, sql)
    assert proxied == direct
    assert proxied == (errors.ProgrammingError, 1146, "42S02", f"Table 'appdb.{T}no_such_table' doesn't exist")


@both_protocols
def test_duplicate_key_error_same_as_direct(proxy, app_server, tables, use_pure, prepared):
    setup = (f"REPLACE INTO {T}kv (id, v) VALUES (1000, 'dup')",)
    sql = f"INSERT INTO {T}kv (id, v) VALUES (%s, %s)"
    direct = _error_of(app_server, use_pure, prepared, sql, (1000, "again"), setup)
    proxied = _error_of(proxy, use_pure, prepared, sql, (1000, "again"), setup)
    assert proxied == direct
    assert proxied == (errors.IntegrityError, 1062, "23000", "Duplicate entry '1000' for key 'PRIMARY'")


def test_bad_password_is_1045(proxy, use_pure):
    with pytest.raises(errors.Error) as err:
        connect(proxy, use_pure, password="wrong")
    assert err.value.errno == 1045
    assert err.value.sqlstate == "28000"
    assert err.value.msg == "Access denied for user 'app'@'127.0.0.1' (using password: YES)"


# -- prepared statements and pooling ---------------------------------------------------


def test_prepared_statements_interleaved_with_other_clients(proxy, use_pure):
    # Two statements of one client stay usable while other clients run on the
    # pool's backends; once closed, the client holds no backend.
    with connect(proxy, use_pure) as conn:
        first = conn.cursor(prepared=True)
        second = conn.cursor(prepared=True)
        first.execute("SELECT ?, 'first'", (5,))
        assert tuple(first.fetchone()) == (5, "first")
        second.execute("SELECT CONCAT(?, ?)", ("a", "b"))
        assert tuple(second.fetchone()) == ("ab",)
        others = [connect(proxy, use_pure) for _ in range(3)]
        try:
            for i, other in enumerate(others):
                with other.cursor(prepared=True) as cur:
                    cur.execute("SELECT ? * 2", (i,))
                    assert tuple(cur.fetchone()) == (i * 2,)
                first.execute("SELECT ?, 'first'", (i,))  # the same statement, re-executed
                assert tuple(first.fetchone()) == (i, "first")
                second.execute("SELECT CONCAT(?, ?)", (str(i), "x"))
                assert tuple(second.fetchone()) == (f"{i}x",)
        finally:
            for other in others:
                other.close()
        first.close()  # COM_STMT_CLOSE
        second.close()
        with conn.cursor() as plain:
            plain.execute("SELECT 1")
            assert plain.fetchall() == [(1,)]
        assert proxy.pool_stats()["busy"] == 0


def test_more_prepared_clients_than_backends(proxy_factory, use_pure):
    # 2 backends; 2 clients keep statements open; a third prepares and executes.
    # Whether it has to wait for a holder to close (statements pin) or not,
    # it must get its answer.
    proxy = proxy_factory(pool={"max_size": 2, "checkout_timeout": 20})
    holders = [connect(proxy, use_pure) for _ in range(2)]
    cursors = []
    try:
        for conn in holders:
            cur = conn.cursor(prepared=True)
            cur.execute("SELECT ?", (1,))
            cur.fetchall()
            cursors.append(cur)
        result = []

        def third_client():
            with connect(proxy, use_pure) as conn, conn.cursor(prepared=True) as cur:
                cur.execute("SELECT ?", (3,))
                result.append(tuple(cur.fetchone()))

        thread = threading.Thread(target=third_client)
        thread.start()
        thread.join(1.0)
        cursors.pop().close()  # one holder closes its statement
        thread.join(20)
        assert result == [(3,)]
        cur = cursors[0]
        cur.execute("SELECT ?", (4,))  # the remaining holder's statement still works
        assert tuple(cur.fetchone()) == (4,)
    finally:
        for cur in cursors:
            cur.close()
        for conn in holders:
            conn.close()


def test_overflow_is_1040_for_text_and_prepare_and_connection_stays_usable(proxy_factory, use_pure):
    proxy = proxy_factory(pool={"max_size": 1, "checkout_timeout": 0.5})
    # both connect first: the connector's connection setup needs a backend too
    holder = connect(proxy, use_pure)
    other = connect(proxy, use_pure)
    try:
        with holder.cursor() as cur:
            cur.execute("START TRANSACTION")
            cur.execute("SELECT 1")  # the open transaction holds the only backend
            cur.fetchall()
        with other.cursor() as cur:
            with pytest.raises(errors.Error) as err:
                cur.execute("SELECT 1")
            assert (err.value.errno, err.value.sqlstate) == (1040, "08004")
            assert "mysqlpool-proxy" in err.value.msg
        with other.cursor(prepared=True) as cur:
            with pytest.raises(errors.Error) as err:
                cur.execute("SELECT ?", (2,))  # refused at COM_STMT_PREPARE
            assert err.value.errno == 1040
        holder.commit()
        with other.cursor(prepared=True) as cur:
            cur.execute("SELECT ?", (3,))
            assert tuple(cur.fetchone()) == (3,)
        with other.cursor() as cur:
            cur.execute("SELECT 4")
            assert cur.fetchall() == [(4,)]
    finally:
        holder.close()
        other.close()


def test_reset_session_init_db_and_change_user(proxy, use_pure):
    with connect(proxy, use_pure) as conn:
        with conn.cursor() as cur:
            cur.execute("SET @a = 5, SESSION sql_mode = 'TRADITIONAL'")
        # COM_RESET_CONNECTION, then the connector sets the given variables
        conn.reset_session(user_variables={"b": 7}, session_variables={"sql_mode": "ANSI_QUOTES"})
        with conn.cursor() as cur:
            cur.execute("SELECT @a, @b, @@SESSION.sql_mode")
            assert cur.fetchall() == [(None, 7, "ANSI_QUOTES")]
        conn.database = "mysql"  # COM_INIT_DB
        with conn.cursor() as cur:
            cur.execute("SELECT DATABASE()")
            assert cur.fetchall() == [("mysql",)]
        conn.cmd_change_user(username=APP_USER, password=APP_PASSWORD, database=APP_DB)  # COM_CHANGE_USER
        with conn.cursor() as cur:
            cur.execute("SELECT DATABASE(), @b, @@SESSION.sql_mode = @@GLOBAL.sql_mode")
            assert cur.fetchall() == [(APP_DB, None, 1)]
        conn.ping()
        assert conn.cmd_statistics()["Uptime"] >= 0  # COM_STATISTICS


def test_connectors_own_pool(proxy, use_pure):
    # mysql.connector.pooling resets each connection (COM_RESET_CONNECTION) when it is returned.
    from mysql.connector import pooling

    pool = pooling.MySQLConnectionPool(pool_name=f"proxy-{proxy.port}-{use_pure}", pool_size=3, host=proxy.host,
                                       port=proxy.port, user=APP_USER, password=APP_PASSWORD, database=APP_DB,
                                       use_pure=use_pure)
    seen = []
    for i in range(9):
        conn = pool.get_connection()
        with conn.cursor() as cur:
            cur.execute("SELECT @x")
            seen.append(cur.fetchall()[0][0])
            cur.execute("SET @x = %s", (i,))
        conn.close()  # back to the connector's pool, session reset
    assert seen == [None] * 9
    pool._remove_connections()

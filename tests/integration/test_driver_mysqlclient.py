# mysqlclient (MySQLdb, libmariadb underneath) through the proxy: CRUD, commit
# and rollback, multi-statements, a procedure with two result sets, LOAD DATA
# LOCAL INFILE, a 200,000-row result streamed with SSCursor (mysql_use_result),
# a 20 MiB BLOB both ways, utf8mb4 with emoji, server errors identical to a
# direct connection (errno, SQLSTATE, message) and the 1045 wording.
import hashlib
import os
from contextlib import closing

import MySQLdb
import MySQLdb.cursors
import pytest
from MySQLdb.constants import CLIENT

from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER

pytestmark = pytest.mark.integration

T = "mysqlclient_"  # table prefix: files share one server


def connect(target, **kwargs):
    """A MySQLdb connection to the proxy or straight to the server (anything with host/port)."""
    kwargs.setdefault("user", APP_USER)
    kwargs.setdefault("password", APP_PASSWORD)
    kwargs.setdefault("database", APP_DB)
    kwargs.setdefault("charset", "utf8mb4")
    kwargs.setdefault("autocommit", True)
    kwargs.setdefault("connect_timeout", 10)
    return MySQLdb.connect(host=target.host, port=target.port, **kwargs)


@pytest.fixture(scope="module")
def tables(app_server):
    app_server.execute(f"CREATE TABLE IF NOT EXISTS appdb.{T}kv (id INT PRIMARY KEY AUTO_INCREMENT, v TEXT) "
                       "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
    app_server.execute(f"CREATE TABLE IF NOT EXISTS appdb.{T}blobs (id INT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB")
    app_server.execute(f"DROP PROCEDURE IF EXISTS appdb.{T}two_results")
    app_server.execute(f"CREATE PROCEDURE appdb.{T}two_results(IN n INT) "
                       "BEGIN SELECT n AS a; SELECT n + 1 AS b, 'x' AS c; END")
    return app_server


def test_select(proxy):
    with closing(connect(proxy)) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 + 1, DATABASE(), @@character_set_client")
        assert cur.fetchone() == (2, "appdb", "utf8mb4")


def test_crud(proxy, tables):
    with closing(connect(proxy)) as conn, conn.cursor() as cur:
        cur.execute(f"DELETE FROM {T}kv")
        cur.executemany(f"INSERT INTO {T}kv (id, v) VALUES (%s, %s)", [(1, "a"), (2, "b"), (3, "c")])
        assert cur.rowcount == 3
        cur.execute(f"UPDATE {T}kv SET v = %s WHERE id = %s", ("B", 2))
        assert cur.rowcount == 1
        cur.execute(f"DELETE FROM {T}kv WHERE id = 3")
        assert cur.rowcount == 1
        cur.execute(f"INSERT INTO {T}kv (v) VALUES ('auto')")
        assert cur.lastrowid == conn.insert_id() > 2
        cur.execute(f"SELECT id, v FROM {T}kv ORDER BY id")
        rows = cur.fetchall()
        assert rows[:2] == ((1, "a"), (2, "B"))
        assert rows[2][1] == "auto" and len(rows) == 3


def test_commit_and_rollback(proxy, tables):
    with closing(connect(proxy, autocommit=False)) as conn, conn.cursor() as cur:
        cur.execute(f"DELETE FROM {T}kv")
        cur.execute(f"INSERT INTO {T}kv (id, v) VALUES (1, 'a'), (2, 'b')")
        conn.commit()
        cur.execute(f"UPDATE {T}kv SET v = 'z' WHERE id = 1")
        cur.execute(f"INSERT INTO {T}kv (id, v) VALUES (3, 'c')")
        conn.rollback()
        cur.execute(f"DELETE FROM {T}kv WHERE id = 2")
        conn.commit()
    # a fresh connection (and another backend, maybe) sees exactly the committed state
    with closing(connect(proxy)) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT id, v FROM {T}kv ORDER BY id")
        assert cur.fetchall() == ((1, "a"),)


def test_multi_statements(proxy, tables):
    with closing(connect(proxy, client_flag=CLIENT.MULTI_STATEMENTS | CLIENT.MULTI_RESULTS)) as conn, \
            conn.cursor() as cur:
        cur.execute("SELECT 1; SELECT 2, 3; DO 0")
        assert cur.fetchall() == ((1,),)
        assert cur.nextset()
        assert cur.fetchall() == ((2, 3),)
        assert cur.nextset()
        assert cur.nextset() is None
        cur.execute("SELECT 'in sync'")
        assert cur.fetchone() == ("in sync",)


def test_procedure_with_two_result_sets(proxy, tables):
    with closing(connect(proxy)) as conn, conn.cursor() as cur:
        cur.callproc(f"{T}two_results", (41,))
        assert cur.fetchall() == ((41,),)
        assert cur.nextset()
        assert cur.fetchall() == ((42, "x"),)
        while cur.nextset():  # the procedure's final OK
            pass
        cur.execute("SELECT @_" + T + "two_results_0")  # callproc's server variable holds the argument
        assert cur.fetchone() == (41,)


def test_load_data_local_infile(proxy, tables, tmp_path):
    path = tmp_path / "rows.tsv"
    path.write_text("".join(f"{i}\tvalue {i}\n" for i in range(1, 5001)))
    with closing(connect(proxy, local_infile=1)) as conn, conn.cursor() as cur:
        cur.execute(f"DELETE FROM {T}kv")
        cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {T}kv (id, v)")
        assert cur.rowcount == 5000
        cur.execute(f"SELECT COUNT(*), MAX(v) FROM {T}kv WHERE v LIKE 'value %%'")
        assert cur.fetchone() == (5000, "value 999")


def test_200k_rows_streamed(proxy, tables):
    with closing(connect(proxy)) as conn:
        cur = conn.cursor(MySQLdb.cursors.SSCursor)
        cur.execute("SELECT seq, CONCAT('row-', seq) FROM seq_1_to_200000")
        count, last = 0, None
        for row in cur:
            count += 1
            last = row
        cur.close()
        assert count == 200000
        assert last == (200000, "row-200000")
        with conn.cursor() as cur:
            cur.execute("SELECT 'after stream'")
            assert cur.fetchone() == ("after stream",)


def test_200k_rows_buffered(proxy):
    with closing(connect(proxy)) as conn, conn.cursor() as cur:
        assert cur.execute("SELECT seq, REPEAT('y', 20) FROM seq_1_to_200000") == 200000
        rows = cur.fetchall()
        assert rows[0] == (1, "y" * 20) and rows[-1] == (200000, "y" * 20)


def test_20_mib_blob_both_ways(proxy, tables):
    blob = os.urandom(20 * 1024 * 1024)
    with closing(connect(proxy)) as conn, conn.cursor() as cur:
        cur.execute(f"REPLACE INTO {T}blobs VALUES (1, %s)", (blob,))
        cur.execute(f"SELECT b, LENGTH(b), SHA2(b, 256) FROM {T}blobs WHERE id = 1")
        back, length, digest = cur.fetchone()
        assert length == len(blob)
        assert back == blob
        assert digest == hashlib.sha256(blob).hexdigest()


def test_utf8mb4_round_trip(proxy, tables):
    text = "zażółć gęślą jaźń — 日本語 — 🐬🚀👍🏽"
    with closing(connect(proxy)) as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {T}kv (v) VALUES (%s)", (text,))
        cur.execute(f"SELECT v, CHAR_LENGTH(v), HEX(v) FROM {T}kv WHERE id = LAST_INSERT_ID()")
        value, length, hexed = cur.fetchone()
        assert (value, length) == (text, len(text))
        assert bytes.fromhex(hexed) == text.encode("utf-8")
        cur.execute("SELECT '🐬' = _utf8mb4 X'F09F90AC'")
        assert cur.fetchone() == (1,)


def _error_of(target, sql, setup=()):
    with closing(connect(target)) as conn, conn.cursor() as cur:
        for statement in setup:
            cur.execute(statement)
        with pytest.raises(MySQLdb.MySQLError) as err:
            cur.execute(sql)
        state = conn.sqlstate()
        cur.execute("SELECT 1")  # still usable
        assert cur.fetchone() == (1,)
        return type(err.value), err.value.args, state


def test_unknown_table_error_same_as_direct(proxy, app_server):
    direct = _error_of(app_server, f"SELECT * FROM {T}no_such_table")
    proxied = _error_of(proxy, f"SELECT * FROM {T}no_such_table")
    assert proxied == direct
    assert proxied[0] is MySQLdb.ProgrammingError
    assert proxied[1] == (1146, f"Table 'appdb.{T}no_such_table' doesn't exist")
    assert proxied[2] == "42S02"


def test_duplicate_key_error_same_as_direct(proxy, app_server, tables):
    setup = (f"REPLACE INTO {T}kv (id, v) VALUES (1000, 'dup')",)
    sql = f"INSERT INTO {T}kv (id, v) VALUES (1000, 'again')"
    direct = _error_of(app_server, sql, setup)
    proxied = _error_of(proxy, sql, setup)
    assert proxied == direct
    assert proxied[0] is MySQLdb.IntegrityError
    assert proxied[1] == (1062, "Duplicate entry '1000' for key 'PRIMARY'")
    assert proxied[2] == "23000"


def test_bad_password_is_1045(proxy):
    with pytest.raises(MySQLdb.OperationalError) as err:
        connect(proxy, password="wrong")
    assert err.value.args == (1045, "Access denied for user 'app'@'127.0.0.1' (using password: YES)")


def test_latin1_client_then_set_character_set(proxy, tables):
    # charset=latin1 at connect, then mysql_set_character_set (SET NAMES, which the
    # proxy answers itself): every later statement runs with the client's charset.
    with closing(connect(proxy, charset="latin1")) as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {T}kv (v) VALUES (%s)", ("café ñ",))
        cur.execute(f"SELECT v, HEX(v), @@character_set_client, @@character_set_results FROM {T}kv "
                    "WHERE id = LAST_INSERT_ID()")
        assert cur.fetchone() == ("café ñ", "636166C3A920C3B1", "latin1", "latin1")
        conn.set_character_set("utf8mb4")
        assert conn.character_set_name() == "utf8mb4"
        cur.execute("SELECT '🐬', @@character_set_client, @@character_set_results")
        assert cur.fetchone() == ("🐬", "utf8mb4", "utf8mb4")


def test_select_db_and_ping(proxy):
    with closing(connect(proxy)) as conn, conn.cursor() as cur:
        conn.select_db("mysql")  # COM_INIT_DB
        cur.execute("SELECT DATABASE()")
        assert cur.fetchone() == ("mysql",)
        conn.ping()  # COM_PING
        cur.execute("SELECT DATABASE()")
        assert cur.fetchone() == ("mysql",)
        conn.select_db(APP_DB)
        cur.execute("SELECT DATABASE()")
        assert cur.fetchone() == (APP_DB,)

# Protocol features through the proxy with PyMySQL: multi-statements, procedures
# with several result sets, LOAD DATA LOCAL INFILE, big results and packets,
# utf8mb4, prepared-statement-free parameter binding.
import os

import pymysql
import pytest
from pymysql.constants import CLIENT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tables(app_server):
    app_server.execute("CREATE TABLE IF NOT EXISTS appdb.kv (id INT PRIMARY KEY AUTO_INCREMENT, v TEXT) "
                       "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
    app_server.execute("CREATE TABLE IF NOT EXISTS appdb.blobs (id INT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB")
    app_server.execute("DROP PROCEDURE IF EXISTS appdb.two_results")
    app_server.execute("CREATE PROCEDURE appdb.two_results(IN n INT) "
                       "BEGIN SELECT n AS a; SELECT n + 1 AS b, 'x' AS c; END")
    return app_server


def test_multi_statements(proxy, tables):
    with proxy.connect(client_flag=CLIENT.MULTI_STATEMENTS) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1; SELECT 2, 3; DO 0")
        assert cur.fetchall() == ((1,),)
        assert cur.nextset()
        assert cur.fetchall() == ((2, 3),)
        assert cur.nextset()
        assert not cur.nextset()


def test_multi_statements_refused_when_client_did_not_ask(proxy, tables):
    # The backend always has multi-statements on; a client without the flag
    # must get the server's syntax error, as it would directly.
    with proxy.connect() as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.err.ProgrammingError) as err:
            cur.execute("SELECT 1; SELECT 2")
        assert err.value.args[0] == 1064


def test_procedure_with_two_result_sets(proxy, tables):
    with proxy.connect() as conn, conn.cursor() as cur:
        cur.execute("CALL two_results(41)")
        assert cur.fetchall() == ((41,),)
        assert cur.nextset()
        assert cur.fetchall() == ((42, "x"),)
        cur.execute("SELECT 7")  # the trailing OK was consumed: the connection is in sync
        assert cur.fetchone() == (7,)


def test_load_data_local_infile(proxy, tables, tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("".join(f"{i}\tvalue {i}\n" for i in range(1, 5001)))
    with proxy.connect(local_infile=True) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM kv")
        cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE kv (id, v)")
        assert cur.rowcount == 5000
        cur.execute("SELECT COUNT(*), MAX(v) FROM kv WHERE v LIKE 'value %'")
        assert cur.fetchone() == (5000, "value 999")


def test_load_data_local_infile_refused_without_capability(proxy, tables, tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("1\tx\n")
    with proxy.connect() as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.err.MySQLError) as err:
            cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE kv (id, v)")
        assert err.value.args[0] in (1148, 4166)  # "not allowed" (MySQL / MariaDB wording)
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


def test_200k_row_result(proxy, tables):
    with proxy.connect() as conn, conn.cursor(pymysql.cursors.SSCursor) as cur:
        cur.execute("SELECT seq, CONCAT('row-', seq) FROM seq_1_to_200000")
        count = 0
        last = None
        for row in cur:
            count += 1
            last = row
        assert count == 200000
        assert last == (200000, "row-200000")


def test_20_mib_blob_both_ways(proxy, tables):
    blob = os.urandom(20 * 1024 * 1024)
    with proxy.connect() as conn, conn.cursor() as cur:
        cur.execute("REPLACE INTO blobs VALUES (1, %s)", (blob,))
        cur.execute("SELECT b, LENGTH(b) FROM blobs WHERE id = 1")
        back, length = cur.fetchone()
        assert length == len(blob)
        assert back == blob


def test_utf8mb4_round_trip(proxy, tables):
    text = "zażółć gęślą jaźń — 日本語 — 🐬🚀"
    with proxy.connect(charset="utf8mb4") as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO kv (v) VALUES (%s)", (text,))
        cur.execute("SELECT v, CHAR_LENGTH(v) FROM kv WHERE id = LAST_INSERT_ID()")
        assert cur.fetchone() == (text, len(text))


def test_packet_over_max_packet_size_is_refused_and_connection_survives(proxy_factory, tables):
    proxy = proxy_factory(proxy={"max_packet_size": 1024 * 1024})
    with proxy.connect() as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.err.MySQLError) as err:
            cur.execute("SELECT %s", ("x" * (2 * 1024 * 1024),))
        assert err.value.args[0] == 1153
        cur.execute("SELECT 'still here'")
        assert cur.fetchone() == ("still here",)


def test_ok_info_is_what_the_server_sends(proxy, tables, app_server):
    """Clients without CLIENT_SESSION_TRACK get the OK info exactly as from the server
    (length-encoded, whatever the protocol pages say), after the proxy re-encodes it."""
    app_server.execute("REPLACE INTO appdb.kv (id, v) VALUES (101, 'a'), (102, 'b')")

    def info(conn):
        with conn.cursor() as cur:
            cur.execute("UPDATE kv SET v = CONCAT(v, '!') WHERE id IN (101, 102)")
            return cur._result.message

    direct = info(app_server.connect(database="appdb"))
    proxied = info(proxy.connect())
    assert b"Rows matched: 2" in direct
    assert proxied == direct

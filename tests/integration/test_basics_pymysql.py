# First contact through the proxy with PyMySQL: connect, query, errors, transactions.
import pymysql
import pytest

pytestmark = pytest.mark.integration


def test_select_through_proxy(proxy):
    with proxy.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 + 1, DATABASE()")
        assert cur.fetchone() == (2, "appdb")


def test_crud_and_transactions(proxy, app_server):
    app_server.execute("CREATE TABLE IF NOT EXISTS appdb.crud (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB")
    app_server.execute("DELETE FROM appdb.crud")
    with proxy.connect(autocommit=False) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO crud VALUES (1, 'a'), (2, 'b')")
        conn.commit()
        cur.execute("UPDATE crud SET v = 'z' WHERE id = 1")
        conn.rollback()
        cur.execute("DELETE FROM crud WHERE id = 2")
        conn.commit()
        cur.execute("SELECT id, v FROM crud ORDER BY id")
        assert cur.fetchall() == ((1, "a"),)


def test_server_error_is_relayed_verbatim(proxy, app_server):
    with pytest.raises(pymysql.err.ProgrammingError) as direct, app_server.connect(database="appdb") as c, \
            c.cursor() as cur:
        cur.execute("SELECT * FROM no_such_table")
    with proxy.connect() as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.err.ProgrammingError) as proxied:
            cur.execute("SELECT * FROM no_such_table")
        assert proxied.value.args == direct.value.args
        cur.execute("SELECT 1")  # the connection is still usable
        assert cur.fetchone() == (1,)


def test_bad_password_is_1045(proxy):
    with pytest.raises(pymysql.err.OperationalError) as err:
        proxy.connect(password="wrong")
    assert err.value.args[0] == 1045
    assert err.value.args[1] == "Access denied for user 'app'@'127.0.0.1' (using password: YES)"

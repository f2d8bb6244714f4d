# One client's session state is never visible to another: SET, USE, SET NAMES,
# user variables and temporary tables stay with the client that made them,
# through a pool small enough that clients share backends.
import pymysql
import pytest
from pymysql.constants import CLIENT

pytestmark = pytest.mark.integration


@pytest.fixture
def one_backend(proxy_factory, app_server):
    app_server.execute("CREATE DATABASE IF NOT EXISTS otherdb")
    return proxy_factory(pool={"max_size": 1, "checkout_timeout": 5})


def scalar(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0]


def test_session_variables_follow_their_client(one_backend):
    a, b = one_backend.connect(), one_backend.connect()
    with a.cursor() as cur:
        cur.execute("SET SESSION sql_mode = 'ANSI_QUOTES'")
        cur.execute("SET time_zone = '+05:00'")
    default_mode = scalar(b, "SELECT @@session.sql_mode")
    assert "ANSI_QUOTES" not in default_mode
    assert scalar(b, "SELECT @@session.time_zone") != "+05:00"
    assert scalar(a, "SELECT @@session.sql_mode") == "ANSI_QUOTES"
    assert scalar(a, "SELECT @@session.time_zone") == "+05:00"
    assert scalar(b, "SELECT @@session.sql_mode") == default_mode


def test_schema_follows_its_client(one_backend):
    a, b = one_backend.connect(), one_backend.connect()
    a.select_db("otherdb")
    assert scalar(b, "SELECT DATABASE()") == "appdb"
    assert scalar(a, "SELECT DATABASE()") == "otherdb"
    with a.cursor() as cur:
        cur.execute("USE appdb")
    assert scalar(a, "SELECT DATABASE()") == "appdb"


def test_client_without_schema_never_sees_one(one_backend):
    a = one_backend.connect()
    nodb = one_backend.connect(database=None)
    assert scalar(a, "SELECT DATABASE()") == "appdb"
    assert scalar(nodb, "SELECT DATABASE()") is None


def test_charset_follows_its_client(one_backend):
    a = one_backend.connect(charset="latin1")
    b = one_backend.connect(charset="utf8mb4")
    assert scalar(a, "SELECT @@character_set_client") == "latin1"
    assert scalar(b, "SELECT @@character_set_client") == "utf8mb4"
    with a.cursor() as cur:
        cur.execute("SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci")
    assert scalar(a, "SELECT @@collation_connection") == "utf8mb4_unicode_ci"
    assert scalar(b, "SELECT @@collation_connection") == "utf8mb4_general_ci"


def test_user_variables_are_private(proxy_factory):
    proxy = proxy_factory(pool={"max_size": 2, "checkout_timeout": 5})
    a, b = proxy.connect(), proxy.connect()
    with a.cursor() as cur:
        cur.execute("SET @secret = 'a-only'")
    assert scalar(b, "SELECT @secret") is None
    assert scalar(a, "SELECT @secret") == "a-only"
    a.close()
    # a's backend went back to the pool reset: nobody inherits @secret
    c = proxy.connect()
    assert scalar(c, "SELECT @secret") is None
    assert scalar(b, "SELECT @secret") is None


def test_temporary_tables_are_private_and_unpin_when_dropped(proxy_factory):
    proxy = proxy_factory(pool={"max_size": 2, "checkout_timeout": 5})
    a, b = proxy.connect(), proxy.connect()
    with a.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE scratch (x INT)")
        cur.execute("INSERT INTO scratch VALUES (42)")
    with pytest.raises(pymysql.err.ProgrammingError):
        scalar(b, "SELECT x FROM scratch")
    assert scalar(a, "SELECT x FROM scratch") == 42
    assert proxy.pool_stats()["busy"] == 1  # a is pinned to its backend
    with a.cursor() as cur:
        cur.execute("DROP TEMPORARY TABLE scratch")
    assert proxy.pool_stats()["busy"] == 0  # the pin lifted with the last temporary table


def test_transaction_is_never_split_and_not_visible(proxy_factory, app_server):
    app_server.execute("CREATE TABLE IF NOT EXISTS appdb.iso (id INT PRIMARY KEY) ENGINE=InnoDB")
    app_server.execute("DELETE FROM appdb.iso")
    proxy = proxy_factory(pool={"max_size": 2, "checkout_timeout": 5})
    a, b = proxy.connect(), proxy.connect()
    with a.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("INSERT INTO iso VALUES (1)")
        cur.execute("SELECT CONNECTION_ID()")
        first = cur.fetchone()[0]
    assert scalar(b, "SELECT COUNT(*) FROM iso") == 0
    with a.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM iso")
        assert cur.fetchone()[0] == 1
        cur.execute("SELECT CONNECTION_ID()")
        assert cur.fetchone()[0] == first  # same backend for the whole transaction
        cur.execute("ROLLBACK")
    assert scalar(b, "SELECT COUNT(*) FROM iso") == 0


def test_client_leaving_mid_transaction_leaves_nothing_behind(proxy_factory, app_server):
    app_server.execute("CREATE TABLE IF NOT EXISTS appdb.left (id INT PRIMARY KEY) ENGINE=InnoDB")
    app_server.execute("DELETE FROM appdb.left")
    proxy = proxy_factory(pool={"max_size": 1, "checkout_timeout": 5})
    a = proxy.connect()
    with a.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("INSERT INTO `left` VALUES (1)")
        cur.execute("SET @leak = 1")
    a.close()
    b = proxy.connect()
    assert scalar(b, "SELECT COUNT(*) FROM `left`") == 0  # rolled back by the reset
    assert scalar(b, "SELECT @leak") is None
    assert scalar(b, "SELECT @@in_transaction") == 0


def test_multi_statements_option_is_per_client(one_backend):
    multi = one_backend.connect(client_flag=CLIENT.MULTI_STATEMENTS)
    single = one_backend.connect()
    with multi.cursor() as cur:
        cur.execute("SELECT 1; SELECT 2")
    with single.cursor() as cur, pytest.raises(pymysql.err.ProgrammingError):
        cur.execute("SELECT 1; SELECT 2")
    with multi.cursor() as cur:
        cur.execute("SELECT 3; SELECT 4")


def test_a_failed_state_sync_does_not_keep_the_backend(proxy_factory, app_server):
    app_server.execute("CREATE DATABASE IF NOT EXISTS doomed")
    proxy = proxy_factory(pool={"max_size": 2, "checkout_timeout": 5})
    doomed = proxy.connect(database="doomed")
    other = proxy.connect()
    assert scalar(other, "SELECT 1") == 1  # the backends now have schema appdb
    hold = proxy.connect()
    with hold.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
    app_server.execute("DROP DATABASE doomed")
    with pytest.raises(pymysql.err.OperationalError) as err:
        scalar(doomed, "SELECT 1")  # its schema cannot be selected on a backend any more
    assert err.value.args[0] == 1049
    assert proxy.pool_stats()["busy"] == 1  # only `hold`'s transaction holds one
    assert scalar(other, "SELECT 2") == 2


@pytest.mark.parametrize("sql_mode, query", [
    ("NO_BACKSLASH_ESCAPES", "SELECT 'a\\'; SET @hidden = 1; SELECT '\\'"),
    ("ANSI_QUOTES", 'SELECT 1 AS "a\\"; SET @hidden = 1; SELECT 1 AS "\\"'),
])
def test_user_variables_stay_private_whatever_the_sql_mode_does_to_quotes(one_backend, sql_mode, query):
    """The proxy cuts a query into statements as the server does under the client's sql_mode; read
    with the default quoting, the SET here would hide inside a string and its variable would be left
    on the backend for the next client."""
    a = one_backend.connect(client_flag=CLIENT.MULTI_STATEMENTS)
    b = one_backend.connect()
    with a.cursor() as cur:
        cur.execute(f"SET SESSION sql_mode = '{sql_mode}'")
        cur.execute(query)
        while cur.nextset():
            pass
    assert scalar(b, "SELECT @hidden") is None  # never another client's
    assert scalar(a, "SELECT @hidden") == 1  # still its own, on whatever backend

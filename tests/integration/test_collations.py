# The collations behind character_set_client and character_set_results, through
# the proxy as directly (issue 10 item 6). The server describes every string
# column of a result set with the collation behind character_set_results, and
# binds a prepared statement's string parameters in the one behind
# character_set_client; a handshake collation or SET NAMES ... COLLATE sets
# them, and no variable shows them. Each script runs once straight against the
# server and once through a proxy with ONE backend, shared with clients of
# other collations (PyMySQL's default utf8mb4_general_ci, mysqlclient, latin1)
# that run a statement between every two steps, so that every step of the
# script runs on a backend the proxy has just brought back to its state; the
# two runs must see the same column collations (charsetnr), variables and
# parameter collations.
from contextlib import ExitStack, closing

import mysql.connector
import MySQLdb
import pymysql
import pytest
from mysql.connector.constants import ClientFlag
from pymysql.constants import CLIENT

from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER

pytestmark = pytest.mark.integration

PROBE = "SELECT 'a' AS lit, @@character_set_client, @@character_set_results, @@collation_connection"
UNICODE = {"charset": "utf8mb4", "collation": "utf8mb4_unicode_ci"}


# Every client asks for CLIENT_PS_MULTI_RESULTS, as mysqlclient always does: they are all in one pool key,
# so they all share the backend.
def pymysql_conn(target, client_flag=0, **kwargs):
    return pymysql.connect(host=target.host, port=target.port, user=APP_USER, password=APP_PASSWORD,
                           database=APP_DB, autocommit=True, connect_timeout=10,
                           client_flag=client_flag | CLIENT.PS_MULTI_RESULTS, **kwargs)


def connector_conn(target, **kwargs):
    kwargs.setdefault("charset", "utf8mb4")
    return mysql.connector.connect(host=target.host, port=target.port, user=APP_USER, password=APP_PASSWORD,
                                   database=APP_DB, autocommit=True, connection_timeout=10, use_pure=True,
                                   client_flags=[ClientFlag.PS_MULTI_RESULTS], **kwargs)


class Neighbours:
    """Clients of other collations that take the (one) backend between every two steps."""

    def __init__(self, target, stack: ExitStack):
        self.pymysql = stack.enter_context(closing(pymysql_conn(target, charset="utf8mb4")))
        self.mysqlclient = stack.enter_context(closing(MySQLdb.connect(
            host=target.host, port=target.port, user=APP_USER, password=APP_PASSWORD, database=APP_DB,
            charset="utf8mb4", autocommit=True, connect_timeout=10, local_infile=0)))
        self.latin1 = stack.enter_context(closing(connector_conn(target, charset="latin1",
                                                                 collation="latin1_swedish_ci")))
        self.seen: list = []

    def take_the_backend(self) -> None:
        with self.pymysql.cursor() as cur:
            cur.execute(PROBE)
            self.seen.append(("pymysql", cur.fetchone(), [f.charsetnr for f in cur._result.fields]))
        with self.mysqlclient.cursor() as cur:
            cur.execute("SELECT @@character_set_client, @@collation_connection")
            self.seen.append(("mysqlclient", cur.fetchone()))
        cur = self.latin1.cursor()
        cur.execute(PROBE)
        self.seen.append(("latin1", cur.fetchone(), [d[8] for d in cur.description]))
        cur.close()


PYMYSQL_STEPS = [
    [],
    ["SET character_set_results = utf8mb4"],  # its default collation: 45
    ["SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci"],
    ["SET character_set_client = utf8mb4"],  # the one behind character_set_results stays
    ["SET collation_connection = utf8mb4_bin"],
    ["SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci", "SET character_set_results = NULL"],
    ["SET NAMES latin1", "SET character_set_results = utf8mb4"],
    ["SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci", "SET CHARACTER SET utf8mb4"],
    ["SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci; SET character_set_results = latin1"],
    # Relayed, not answered by the proxy: the client holds a backend in a transaction.
    ["BEGIN", "SET NAMES utf8mb4", "SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci", "COMMIT"],
    ["BEGIN", "SET NAMES utf8mb4 COLLATE utf8mb4_bin", "SET character_set_client = utf8mb4", "COMMIT"],
    ["SET NAMES DEFAULT"],
]


def run_pymysql(target) -> list:
    seen = []
    with ExitStack() as stack:
        client = stack.enter_context(closing(pymysql_conn(target, client_flag=CLIENT.MULTI_STATEMENTS, **UNICODE)))
        neighbours = Neighbours(target, stack)
        for step in PYMYSQL_STEPS:
            neighbours.take_the_backend()
            with client.cursor() as cur:
                for sql in step:
                    cur.execute(sql)
                    while cur.nextset():
                        pass
                cur.execute(PROBE)
                seen.append((step, cur.fetchone(), [f.charsetnr for f in cur._result.fields]))
        seen.append(neighbours.seen)
    return seen


def test_pymysql_with_a_collation_sees_the_columns_as_directly(proxy_factory, app_server):
    direct = run_pymysql(app_server)
    assert direct[0][2][0] == 224  # what the test is about: utf8mb4_unicode_ci
    proxy = proxy_factory(pool={"max_size": 1})
    assert run_pymysql(proxy) == direct
    stats = proxy.pool_stats()
    # One backend at a time served every client: mysqlclient (Connector/C) negotiates MariaDB's
    # extended metadata, another pool key, so a backend is closed only to make room for the other key.
    assert set(stats["closed"]) == {"reclaimed"} and stats["connects"] == stats["closed"]["reclaimed"] + 1, stats


PARAMETER = "SELECT COLLATION(?), ? AS p"


def connector_probe(conn) -> tuple:
    cur = conn.cursor()
    cur.execute(PROBE)
    row, charsets = cur.fetchone(), [d[8] for d in cur.description]
    cur.close()
    cur = conn.cursor(prepared=True)
    cur.execute(PARAMETER, ("a", "b"))  # the parameter's collation: the one behind character_set_client
    params, param_charsets = cur.fetchone(), [d[8] for d in cur.description]
    cur.close()
    return row, charsets, params, param_charsets


def run_connector(target) -> list:
    seen = []
    with ExitStack() as stack:
        # The handshake says 224, then the connector sends SET NAMES ... COLLATE as well.
        client = stack.enter_context(closing(connector_conn(target, **UNICODE)))
        neighbours = Neighbours(target, stack)
        steps = [
            lambda: None,
            lambda: client.cmd_query("SET character_set_results = utf8mb4"),
            lambda: client.cmd_reset_connection(),  # the handshake's collation again, behind both
            lambda: client.cmd_query("SET character_set_client = utf8mb4"),
            lambda: client.cmd_query("SET NAMES utf8mb4"),
            lambda: client.cmd_change_user(APP_USER, APP_PASSWORD, APP_DB, charset=224),
        ]
        for i, step in enumerate(steps):
            neighbours.take_the_backend()
            step()
            seen.append((i, connector_probe(client)))
        seen.append(neighbours.seen)
    return seen


def test_mysql_connector_with_a_collation_sees_columns_and_parameters_as_directly(proxy_factory, app_server):
    direct = run_connector(app_server)
    assert direct[0][1][1][0] == 224 and direct[0][1][2][0] == "utf8mb4_unicode_ci"
    proxy = proxy_factory(pool={"max_size": 1})
    assert run_connector(proxy) == direct
    stats = proxy.pool_stats()
    # One backend at a time served every client: mysqlclient (Connector/C) negotiates MariaDB's
    # extended metadata, another pool key, so a backend is closed only to make room for the other key.
    assert set(stats["closed"]) == {"reclaimed"} and stats["connects"] == stats["closed"]["reclaimed"] + 1, stats

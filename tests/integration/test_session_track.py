# A client that negotiated CLIENT_SESSION_TRACK sees, through the proxy, exactly the
# session-state reports a direct connection with its own session_track_* settings
# gives it: not the proxy's own trackers (which are all on, on every backend), and
# it follows the client when it changes its settings. Compared statement by
# statement against the same statements on a direct connection to MariaDB.
from __future__ import annotations

import pymysql
import pytest
from pymysql.constants import CLIENT, COMMAND

from mysqlpool_proxy.protocol.packets import parse_ok
from mysqlpool_proxy.protocol.session_track import parse_state_changes
from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER

pytestmark = pytest.mark.integration

STATE_CHANGED = 0x4000
TRACK = CLIENT.PROTOCOL_41 | CLIENT.SESSION_TRACK


def connect(host, port):
    return pymysql.connect(host=host, port=port, user=APP_USER, password=APP_PASSWORD, database=APP_DB,
                           autocommit=True, client_flag=CLIENT.SESSION_TRACK | CLIENT.MULTI_STATEMENTS)


def reports(conn, sql: str) -> list:
    """What each OK / EOF of the response says about session state: (kind, state-changed bit, changes)."""
    conn._execute_command(COMMAND.COM_QUERY, sql)
    out = []
    while True:
        data = conn._read_packet().get_all_data()
        if data[0] == 0xFF:
            out.append(("err", int.from_bytes(data[1:3], "little")))
            return out
        if data[0] == 0x00:
            ok = parse_ok(data, TRACK)
            changes = parse_state_changes(ok.session_state) if ok.session_state else None
            if changes is not None:  # the server's order of variables is that of an internal hash table
                changes.variables.sort()
            out.append(("ok", bool(ok.status & STATE_CHANGED), changes))
            status = ok.status
        else:
            eofs = 0
            while eofs < 2:
                row = conn._read_packet().get_all_data()
                if row[0] == 0xFE and len(row) < 9:
                    eofs += 1
                    status = row[3] | row[4] << 8
            out.append(("rows", bool(status & STATE_CHANGED)))
        if not status & 0x0008:  # SERVER_MORE_RESULTS_EXISTS
            return out


STATEMENTS = [
    "SET @a = 1",
    "SET sql_mode = 'ANSI_QUOTES'",
    "SET time_zone = '+01:00'",
    "SET NAMES utf8mb4",
    "SET autocommit = 1",
    "SET autocommit = 0",
    "SET autocommit = 0",
    "COMMIT",
    "SET autocommit = 1",
    "BEGIN",
    "COMMIT",
    "USE appdb",
    "SELECT @b := 1",
    "SET @c = 2; SET time_zone = '+02:00'",
    "SET session_track_state_change = ON",
    "SET @a = 2",
    "SET session_track_system_variables = 'sql_mode'",
    "SET sql_mode = ''",
    "SET time_zone = '+03:00'",
]


def test_session_state_reports_are_the_clients_own(proxy_factory, app_server):
    proxy = proxy_factory(pool={"max_size": 2})
    direct = connect(app_server.host, app_server.port)
    through = connect(proxy.host, proxy.port)
    other = proxy.connect()  # shares the backends, with other settings
    for sql in STATEMENTS:
        expected = reports(direct, sql)
        with other.cursor() as cur:
            cur.execute("SET sql_mode = 'TRADITIONAL'")
        assert reports(through, sql) == expected, sql


TRACK_TRANSACTIONS = ["SET session_track_transaction_info = 'CHARACTERISTICS'", "SET session_track_state_change = ON"]
TRANSACTION = [
    "BEGIN",
    "SELECT k FROM trk WHERE id = 1",  # the first read: its EOF says "state changed", the report waits
    "SELECT k FROM trk WHERE id = 2",  # ... and still waits
    "UPDATE trk SET k = k + 1 WHERE id = 1",  # its OK brings it
    "COMMIT",
    "BEGIN",
    "SELECT k FROM trk WHERE id = 1",
    "COMMIT",  # brings it
    "START TRANSACTION READ ONLY",
    "SELECT k FROM trk",
    "DO 1",  # a bare OK: brings nothing
    "ROLLBACK",
]


@pytest.fixture
def trk(app_server):
    app_server.execute("CREATE TABLE IF NOT EXISTS appdb.trk (id INT PRIMARY KEY, k INT NOT NULL) ENGINE=InnoDB")
    app_server.execute("REPLACE INTO appdb.trk VALUES (1, 0), (2, 0)")


def test_a_transaction_tracked_by_its_client_reports_as_directly(proxy_factory, app_server, trk):
    # The report the server holds back after a read waits for the transaction's next OK through the
    # proxy too (no hidden statement takes it away): a client tracking its transaction's state sees,
    # statement by statement, what it sees directly.
    proxy = proxy_factory(pool={"max_size": 2})
    direct = connect(app_server.host, app_server.port)
    through = connect(proxy.host, proxy.port)
    for sql in TRACK_TRANSACTIONS:
        # (Turned on, MariaDB reports the transaction state it starts from; the proxy's backend has the
        # tracker on already, so that first report differs. Not compared: what follows is.)
        reports(direct, sql), reports(through, sql)
    expected = [reports(direct, sql) for sql in TRANSACTION]  # (one after the other: the same rows)
    for sql, want in zip(TRANSACTION, expected):
        assert reports(through, sql) == want, sql


def com_set_option(root) -> int:
    with root.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Com_set_option'")
        return int(cur.fetchone()[1])


def test_a_transaction_that_reads_then_writes_costs_the_server_no_hidden_statement(proxy_factory, app_server, trk):
    proxy = proxy_factory(pool={"max_size": 1})
    conn = proxy.connect()

    def transaction():
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT k FROM trk WHERE id = 1")
            cur.fetchall()
            cur.execute("UPDATE trk SET k = k + 1 WHERE id = 1")
            cur.execute("COMMIT")
    transaction()  # the backend is open and set up
    root = app_server.connect()
    before = com_set_option(root)
    for _ in range(5):
        transaction()
    assert com_set_option(root) == before  # no SET of the proxy's (it fetched no held report)
    root.close()
    other = proxy.connect()  # the backend's next client gets nothing of the transactions' reports
    assert reports(connect(proxy.host, proxy.port), "SET @x = 1") == [("ok", False, None)]
    other.close()

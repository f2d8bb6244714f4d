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

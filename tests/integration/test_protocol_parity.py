# What a client sees through the proxy, packet by packet, compared with a direct connection to
# the same MariaDB, for protocol features that depend on what the backends negotiate.
from __future__ import annotations

import struct

import pymysql
import pytest
from pymysql.constants import CLIENT

from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER

pytestmark = pytest.mark.integration

SERVER_MORE_RESULTS_EXISTS = 0x0008
SERVER_PS_OUT_PARAMS = 0x1000


def connect(host, port, client_flag: int = 0):
    return pymysql.connect(host=host, port=port, user=APP_USER, password=APP_PASSWORD, database=APP_DB,
                           autocommit=True, client_flag=client_flag)


def prepare(conn, sql: bytes) -> tuple[int, int]:
    conn._execute_command(0x16, sql)
    first = conn._read_packet().get_all_data()
    stmt_id, columns, params = struct.unpack_from("<IHH", first, 1)
    for _ in range((params and params + 1) + (columns and columns + 1)):
        conn._read_packet()
    return stmt_id, params


def execute_shape(conn, stmt_id: int, values: list) -> list:
    """COM_STMT_EXECUTE with LONGLONG parameters (None: NULL): each result as ("rows", n, status) /
    ("ok", status), statuses masked to what matters here."""
    nulls = 0
    for i, v in enumerate(values):
        if v is None:
            nulls |= 1 << i
    bitmap = nulls.to_bytes((len(values) + 7) // 8, "little")
    body = struct.pack("<IBI", stmt_id, 0, 1) + bitmap + b"\x01" + b"\x08\x00" * len(values)
    body += b"".join(struct.pack("<q", v) for v in values if v is not None)
    conn._execute_command(0x17, body)
    shape = []
    mask = SERVER_MORE_RESULTS_EXISTS | SERVER_PS_OUT_PARAMS
    while True:
        first = conn._read_packet().get_all_data()
        if first[0] == 0x00:
            status = struct.unpack_from("<H", first, 3)[0] if len(first) > 4 else 0
            # affected rows and insert id are single-byte here (0)
            shape.append(("ok", status & mask))
        elif first[0] == 0xFF:
            shape.append(("err", struct.unpack_from("<H", first, 1)[0]))
            return shape
        else:
            columns = first[0]
            for _ in range(columns + 1):
                conn._read_packet()  # definitions and their EOF
            rows = 0
            while True:
                row = conn._read_packet().get_all_data()
                if row[0] == 0xFE and len(row) < 9:
                    status = struct.unpack_from("<H", row, 3)[0]
                    break
                rows += 1
            shape.append(("rows", rows, status & mask))
        if not status & SERVER_MORE_RESULTS_EXISTS:
            return shape


def test_a_prepared_call_returns_its_out_parameters_as_directly(proxy, app_server):
    """Clients are offered CLIENT_PS_MULTI_RESULTS; the backends must negotiate it too, or the
    OUT parameters' result set (flagged SERVER_PS_OUT_PARAMS) never comes."""
    app_server.execute("CREATE PROCEDURE IF NOT EXISTS appdb.double_it(IN a INT, OUT b INT) SET b = a * 2")
    shapes = []
    for host, port in ((app_server.host, app_server.port), (proxy.host, proxy.port)):
        conn = connect(host, port, CLIENT.PS_MULTI_RESULTS)  # as libmysqlclient and Connector/J ask
        stmt_id, params = prepare(conn, b"CALL double_it(?, ?)")
        assert params == 2
        shapes.append(execute_shape(conn, stmt_id, [21, None]))
        conn.close()
    direct, through = shapes
    assert direct[0] == ("rows", 1, SERVER_MORE_RESULTS_EXISTS | SERVER_PS_OUT_PARAMS)
    assert through == direct


def test_prepare_and_close_one_at_a_time_never_meets_max_prepared_stmt_count(proxy_factory, mariadb_factory):
    """A client that prepares and closes statements one at a time never gets 1461 directly; through the
    proxy its closed statements stay cached on the backends, so the caches are sized from the server's
    max_prepared_stmt_count (20 here), and a prepare the server still refuses with 1461 (another
    connection holds statements) closes the backend's idle statements and is tried again."""
    import mysql.connector

    from tests.support.proxy import prepare_app_account
    server = mariadb_factory(max_prepared_stmt_count=20)
    prepare_app_account(server)
    proxy = proxy_factory(server, pool={"max_size": 3}, backend={"max_connections": 3})
    hog = server.connect()  # another client of the server holds 12 statements meanwhile
    with hog.cursor() as cur:
        for i in range(12):
            cur.execute(f"PREPARE hog{i} FROM 'SELECT {i}'")
    conn = mysql.connector.connect(host=proxy.host, port=proxy.port, user=APP_USER, password=APP_PASSWORD,
                                   database=APP_DB, use_pure=True, autocommit=True)
    for i in range(60):
        cur = conn.cursor(prepared=True)
        cur.execute(f"SELECT {i} + ?", (1,))
        assert cur.fetchall() == [(i + 1,)]
        cur.close()  # COM_STMT_CLOSE
    conn.close()
    hog.close()


def login_error(host, port, collation_id: int):
    """The error of a PyMySQL login announcing `collation_id` in its handshake (None: it logged in)."""
    import pymysql.connections as connections
    from pymysql.charset import Charset

    real = connections.charset_by_name
    connections.charset_by_name = lambda name: Charset(collation_id, "utf8mb4", "utf8mb4_general_ci", False)
    try:
        connect(host, port).close()
        return None
    except pymysql.err.OperationalError as exc:
        return exc.args
    finally:
        connections.charset_by_name = real


@pytest.mark.parametrize("collation_id", [35, 54, 56, 60, 101])  # ucs2, utf16, utf16le, utf32, utf16_unicode_ci
def test_a_login_in_a_character_set_no_client_may_use_is_refused_as_directly(proxy, app_server, collation_id):
    direct = login_error(app_server.host, app_server.port, collation_id)
    assert direct is not None and direct[0] == 1231
    assert login_error(proxy.host, proxy.port, collation_id) == direct


@pytest.mark.parametrize("statement", ["SET NAMES ucs2", "SET NAMES utf32 COLLATE utf32_bin",
                                       "SET character_set_client = utf16"])
def test_set_names_to_a_character_set_no_client_may_use_fails_as_directly_and_changes_nothing(
        proxy, app_server, statement):
    errors = []
    for host, port in ((app_server.host, app_server.port), (proxy.host, proxy.port)):
        with connect(host, port) as conn, conn.cursor() as cur:
            with pytest.raises(pymysql.err.OperationalError) as info:
                cur.execute(statement)
            errors.append(info.value.args)
            cur.execute("SELECT @@character_set_client, @@collation_connection")
            assert cur.fetchone() == ("utf8mb4", "utf8mb4_general_ci")
    assert errors[0][0] == 1231 and errors[1] == errors[0]

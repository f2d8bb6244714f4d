# MariaDB's protocol extensions through the proxy, compared packet by packet with a direct
# connection to the same MariaDB 10.11: the capabilities the greeting offers, COM_STMT_BULK_EXECUTE
# (answers, atomicity, the types a statement moved to another backend needs), and extended
# metadata (column definitions with and without it, the backends each kind of client gets, the
# proxy's own hidden queries on such backends), with the raw client of
# tests/support/mariadb_client.py. Real connectors' views are in test_drivers_other_languages.py
# (Connector/J's executeBatch, mysql2's JSON columns).
from __future__ import annotations

import pytest

from tests.support.mariadb_client import (
    CACHE_METADATA,
    EXTENDED_METADATA,
    LONGLONG,
    STMT_BULK_OPERATIONS,
    VAR_STRING,
    MariaDBClient,
    types_of,
)
from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER

pytestmark = pytest.mark.integration

PROGRESS = 1 << 32
BULK_TYPES = types_of(LONGLONG, VAR_STRING)
ER_UNSUPPORTED_PS = 1295
ER_WRONG_ARGUMENTS = 1210
ER_DUP_ENTRY = 1062


def client(target, extended: int = STMT_BULK_OPERATIONS) -> MariaDBClient:
    return MariaDBClient(target.host, target.port, APP_USER, APP_PASSWORD, APP_DB, extended=extended)


def errno(packets: list[bytes]) -> int:
    assert packets[-1][:1] == b"\xff", packets
    return int.from_bytes(packets[-1][1:3], "little")


@pytest.fixture
def table(app_server):
    app_server.execute("CREATE OR REPLACE TABLE appdb.bulk_t (id BIGINT PRIMARY KEY, v VARCHAR(20))")
    yield "bulk_t"
    app_server.execute("DROP TABLE IF EXISTS appdb.bulk_t")


def rows_of(server, table: str) -> tuple:
    return server.execute(f"SELECT id, v FROM appdb.{table} ORDER BY id")


def test_the_greeting_offers_the_mariadb_capabilities_its_backends_negotiate(proxy, app_server):
    direct, through = client(app_server, 0), client(proxy, 0)
    try:
        mariadb = ~0xFFFFFFFF
        assert direct.greeting.capabilities & mariadb == PROGRESS | STMT_BULK_OPERATIONS | EXTENDED_METADATA \
            | CACHE_METADATA  # MariaDB 10.11, CLIENT_MYSQL clear
        offered = through.greeting.capabilities & mariadb
        assert offered == STMT_BULK_OPERATIONS | EXTENDED_METADATA
        assert not through.greeting.capabilities & 1  # CLIENT_MYSQL clear, as the server's
    finally:
        direct.close()
        through.close()


def bulk_story(target, server, table: str) -> list:
    """Rows inserted with types, a batch whose second row is a duplicate (without types, as
    Connector/C sends a batch after the first), what the table keeps, and an empty batch."""
    c = client(target)
    try:
        stmt, _ = c.prepare(f"INSERT INTO {table} (id, v) VALUES (?, ?)")
        story = [c.bulk(stmt, [(1, "a"), (2, "b"), (3, "c")], types=BULK_TYPES)]
        story.append(c.bulk(stmt, [(4, "d"), (1, "dup"), (5, "e")]))
        story.append(rows_of(server, table))
        story.append(c.bulk(stmt, [(6, "f")]))
        story.append(rows_of(server, table))
        return story
    finally:
        c.close()


def test_a_bulk_insert_answers_and_keeps_rows_as_directly(proxy, app_server, table):
    direct = bulk_story(app_server, app_server, table)
    app_server.execute(f"DELETE FROM appdb.{table}")
    through = bulk_story(proxy, app_server, table)
    assert through == direct
    ok, dup, kept, _, after = through
    assert ok[0][1] == 3 and errno(dup) == ER_DUP_ENTRY  # three rows; the failing batch...
    assert [r[0] for r in kept] == [1, 2, 3]  # ...keeps none of its rows, as one statement
    assert [r[0] for r in after] == [1, 2, 3, 6]
    assert proxy.pool_stats()["queries"]["stmt_bulk_execute"] == 3


def test_a_statement_moved_to_another_backend_gets_the_types_its_client_bound(proxy_factory, app_server, table):
    """The second bulk sends no types (the server statement has them); on the other backend the
    statement is prepared again, without them: the proxy sends the client's."""
    proxy = proxy_factory(pool={"max_size": 2})
    c = client(proxy)
    other = proxy.connect()
    try:
        stmt, _ = c.prepare(f"INSERT INTO {table} (id, v) VALUES (?, ?)")
        assert c.bulk(stmt, [(1, "a")], types=BULK_TYPES)[0][:1] == b"\x00"
        with other.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT 1")  # takes the backend the statement was prepared on, and keeps it
        answer = c.bulk(stmt, [(2, "b"), (3, None)])
        assert answer[0][:2] == b"\x00\x02", answer  # two rows
        assert rows_of(app_server, table) == ((1, "a"), (2, "b"), (3, None))
        assert proxy.pool_stats()["connects"] == 2
    finally:
        other.close()
        c.close()


def test_a_bulk_in_a_transaction_stays_on_its_backend_until_the_rollback(proxy, app_server, table):
    c = client(proxy)
    try:
        stmt, _ = c.prepare(f"INSERT INTO {table} (id, v) VALUES (?, ?)")
        assert c.query("BEGIN")[0][:1] == b"\x00"
        ok = c.bulk(stmt, [(1, "a"), (2, "b")], types=BULK_TYPES)
        assert ok[0][:2] == b"\x00\x02"
        assert rows_of(app_server, table) == ()  # not committed
        assert c.query(f"SELECT COUNT(*) FROM {table}")[-2] == b"\x012"  # the transaction's own view
        assert c.query("ROLLBACK")[0][:1] == b"\x00"
        assert c.query(f"SELECT COUNT(*) FROM {table}")[-2] == b"\x010"
    finally:
        c.close()


@pytest.mark.parametrize("case", ["no_bulk_capability", "no_types_ever_bound", "only_nulls_without_types",
                                  "unit_results_flag", "short", "returning", "select"])
def test_refused_and_unusual_bulks_answer_as_directly(proxy, app_server, table, case):
    def run(target) -> list:
        c = client(target, 0 if case == "no_bulk_capability" else STMT_BULK_OPERATIONS)
        try:
            sql = {"returning": f"INSERT INTO {table} (id, v) VALUES (?, ?) RETURNING id, v",
                   "only_nulls_without_types": f"INSERT INTO {table} (id, v) VALUES (COALESCE(?, 7), ?)",
                   "select": "SELECT ?, ?"}.get(case, f"INSERT INTO {table} (id, v) VALUES (?, ?)")
            stmt, _ = c.prepare(sql)
            if case == "no_bulk_capability":
                answer = c.bulk(stmt, [(1, "a")], types=BULK_TYPES)
            elif case == "no_types_ever_bound":
                answer = c.bulk(stmt, [(1, "a")])
            elif case == "only_nulls_without_types":
                answer = c.bulk(stmt, [(None, None)])
            elif case == "unit_results_flag":
                answer = c.bulk(stmt, [(1, "a")], types=BULK_TYPES, flags=64)
            elif case == "short":
                answer = c.result(b"\xfa" + stmt.to_bytes(4, "little") + b"\x80")
            else:
                answer = c.bulk(stmt, [(1, "a"), (2, "b")], types=BULK_TYPES)
            return [answer, rows_of(app_server, table)]
        finally:
            c.close()

    direct = run(app_server)
    app_server.execute(f"DELETE FROM appdb.{table}")
    assert run(proxy) == direct
    expected = {"no_bulk_capability": ER_UNSUPPORTED_PS, "no_types_ever_bound": ER_WRONG_ARGUMENTS,
                "unit_results_flag": ER_UNSUPPORTED_PS, "short": 1835, "select": ER_UNSUPPORTED_PS}
    if case in expected:
        assert errno(direct[0]) == expected[case]
    else:
        assert direct[0][-1][:1] in (b"\x00", b"\xfe")  # an OK, or a result set's last EOF


@pytest.fixture
def json_table(app_server):
    app_server.execute("CREATE OR REPLACE TABLE appdb.json_t (id INT PRIMARY KEY, doc JSON, u UUID)")
    app_server.execute("""INSERT INTO appdb.json_t VALUES (1, '{"a": 1}', '6ccd780c-baba-1026-9564-5b8c656024db')""")
    yield "json_t"
    app_server.execute("DROP TABLE IF EXISTS appdb.json_t")


@pytest.mark.parametrize("extended", [0, EXTENDED_METADATA], ids=["without", "with"])
def test_column_definitions_are_the_servers_with_and_without_extended_metadata(proxy, app_server, json_table,
                                                                                extended):
    def answers(target) -> list:
        c = client(target, extended)
        try:
            _, prepared = c.prepare(f"SELECT id, doc, u FROM {json_table} WHERE id > ?")
            plain, _ = c.prepare(f"SELECT id, doc, u FROM {json_table}")
            return [c.query(f"SELECT id, doc, u FROM {json_table}"), prepared[1:], c.execute(plain),
                    c.query(f"SHOW COLUMNS FROM {json_table}")]
        finally:
            c.close()

    direct = answers(app_server)
    assert answers(proxy) == direct
    doc = direct[0][2]  # the JSON column's definition
    assert (b"\x01\x04json" in doc) is bool(extended)


def test_clients_with_and_without_extended_metadata_get_backends_that_negotiated_as_they_did(proxy, app_server,
                                                                                               json_table):
    with_it, without = client(proxy, EXTENDED_METADATA), client(proxy, 0)
    try:
        with_it.query("SELECT 1")
        without.query("SELECT 1")
        keys = proxy.call(lambda: {b.key & EXTENDED_METADATA for b in proxy.proxy.pools[APP_USER].idle})
        assert keys == {0, EXTENDED_METADATA}
    finally:
        with_it.close()
        without.close()


def test_a_user_variable_follows_a_client_with_extended_metadata_to_another_backend(proxy_factory, app_server):
    """The proxy reads a variable a client set back with a hidden SELECT (on a backend whose column
    definitions carry the extended metadata) and sets it again where the client goes next."""
    proxy = proxy_factory(pool={"max_size": 2})
    results = []
    for target in (app_server, proxy):
        c, other = client(target, EXTENDED_METADATA), client(target, EXTENDED_METADATA)
        try:
            c.query("SET @x = 'caf\u00e9', @n = 42")
            other.query("BEGIN")
            other.query("SELECT 1")  # holds the backend c set them on (through the proxy)
            results.append(c.query("SELECT @x, CHARSET(@x), @n + 1"))
            if target is proxy:
                keys = proxy.call(lambda: [b.key for p in proxy.proxy.pools.values() for b in (*p.idle, *p.busy)])
                assert sum(1 for key in keys if key & EXTENDED_METADATA) == 2  # it moved
        finally:
            other.close()
            c.close()
    assert results[1] == results[0]


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_backend_negotiates_them_over_tls_too_and_reads_its_setup(tls_files, tls):
    """The adapter writes the MariaDB capabilities into the SSLRequest and the response sent over
    TLS, and aiomysql reads the setup query's extended column definitions without the extra field."""
    import asyncio

    from mysqlpool_proxy.backend.adapter import BackendParams, make_ssl_context, open_backend
    from tests.support.mariadb import start_server
    from tests.support.proxy import prepare_app_account

    server = start_server(ssl_cert=tls_files.cert, ssl_key=tls_files.key)
    try:
        prepare_app_account(server)
        params = BackendParams(host=server.host, port=server.port, unix_socket="", user=APP_USER,
                               password=APP_PASSWORD, charset="utf8mb4", connect_timeout=10,
                               ssl=make_ssl_context("required", "", "", "") if tls else None, found_rows=False,
                               local_files=False, extended_metadata=True)

        async def open_one():
            opened = await open_backend(params, want_collations=True)
            opened.transport.close()
            return opened

        opened = asyncio.run(open_one())
        assert opened.extended_capabilities == STMT_BULK_OPERATIONS | EXTENDED_METADATA
        assert opened.server_capabilities & CACHE_METADATA  # the server's, as its greeting said
        assert opened.charset_vars[b"collation_connection"] == b"utf8mb4_general_ci"
        assert opened.collations[45] == ("utf8mb4", "utf8mb4_general_ci", True)
        assert opened.server_globals[b"net_write_timeout"].isdigit()
        assert bool(opened.transport.get_extra_info("ssl_object")) is tls
    finally:
        server.close()

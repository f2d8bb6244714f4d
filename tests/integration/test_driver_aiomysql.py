# aiomysql (asyncio; each test runs its own loop with asyncio.run) through the
# proxy: CRUD, commit and rollback, multi-statements, a procedure with two
# result sets, LOAD DATA LOCAL INFILE, 200,000 rows streamed with SSCursor, a
# 20 MiB BLOB both ways, utf8mb4 with emoji, server errors identical to a
# direct connection (class, errno, message; PyMySQL does not keep the
# SQLSTATE), the 1045 wording, and an aiomysql pool of more connections than
# the proxy has backends, used concurrently.
import asyncio
import hashlib
import os

import aiomysql
import pymysql
import pytest
from pymysql.constants import CLIENT
from pymysql.converters import escape_bytes

from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER

pytestmark = pytest.mark.integration

T = "aiomysql_"  # table prefix: files share one server


def connect(target, **kwargs):
    """An aiomysql connection (awaitable) to the proxy or straight to the server."""
    kwargs.setdefault("user", APP_USER)
    kwargs.setdefault("password", APP_PASSWORD)
    kwargs.setdefault("db", APP_DB)
    kwargs.setdefault("charset", "utf8mb4")
    kwargs.setdefault("autocommit", True)
    kwargs.setdefault("connect_timeout", 10)
    return aiomysql.connect(host=target.host, port=target.port, **kwargs)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.fixture(scope="module")
def tables(app_server):
    app_server.execute(f"CREATE TABLE IF NOT EXISTS appdb.{T}kv (id INT PRIMARY KEY AUTO_INCREMENT, v TEXT) "
                       "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
    app_server.execute(f"CREATE TABLE IF NOT EXISTS appdb.{T}blobs (id INT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB")
    app_server.execute(f"CREATE TABLE IF NOT EXISTS appdb.{T}counter (id INT PRIMARY KEY, n INT) ENGINE=InnoDB")
    app_server.execute(f"DROP PROCEDURE IF EXISTS appdb.{T}two_results")
    app_server.execute(f"CREATE PROCEDURE appdb.{T}two_results(IN n INT) "
                       "BEGIN SELECT n AS a; SELECT n + 1 AS b, 'x' AS c; END")
    return app_server


def test_select(proxy):
    async def main():
        async with connect(proxy) as conn, conn.cursor() as cur:
            await cur.execute("SELECT 1 + 1, DATABASE(), @@character_set_client")
            return await cur.fetchone()

    assert run(main()) == (2, "appdb", "utf8mb4")


def test_crud(proxy, tables):
    async def main():
        async with connect(proxy) as conn, conn.cursor() as cur:
            await cur.execute(f"DELETE FROM {T}kv")
            await cur.executemany(f"INSERT INTO {T}kv (id, v) VALUES (%s, %s)", [(1, "a"), (2, "b"), (3, "c")])
            assert cur.rowcount == 3
            await cur.execute(f"UPDATE {T}kv SET v = %s WHERE id = %s", ("B", 2))
            assert cur.rowcount == 1
            await cur.execute(f"DELETE FROM {T}kv WHERE id = 3")
            assert cur.rowcount == 1
            await cur.execute(f"INSERT INTO {T}kv (v) VALUES ('auto')")
            new_id = cur.lastrowid
            assert new_id > 2
            await cur.execute(f"SELECT id, v FROM {T}kv ORDER BY id")
            assert await cur.fetchall() == ((1, "a"), (2, "B"), (new_id, "auto"))

    run(main())


def test_commit_and_rollback(proxy, tables):
    async def main():
        async with connect(proxy, autocommit=False) as conn, conn.cursor() as cur:
            await cur.execute(f"DELETE FROM {T}kv")
            await cur.execute(f"INSERT INTO {T}kv (id, v) VALUES (1, 'a'), (2, 'b')")
            await conn.commit()
            await cur.execute(f"UPDATE {T}kv SET v = 'z' WHERE id = 1")
            await cur.execute(f"INSERT INTO {T}kv (id, v) VALUES (3, 'c')")
            await conn.rollback()
            await conn.begin()
            await cur.execute(f"DELETE FROM {T}kv WHERE id = 2")
            await conn.commit()
        async with connect(proxy) as conn, conn.cursor() as cur:
            await cur.execute(f"SELECT id, v FROM {T}kv ORDER BY id")
            return await cur.fetchall()

    assert run(main()) == ((1, "a"),)


def test_multi_statements(proxy, tables):
    async def main():
        async with connect(proxy, client_flag=CLIENT.MULTI_STATEMENTS) as conn, conn.cursor() as cur:
            await cur.execute("SELECT 1; SELECT 2, 3; DO 0")
            assert await cur.fetchall() == ((1,),)
            assert await cur.nextset()
            assert await cur.fetchall() == ((2, 3),)
            assert await cur.nextset()
            assert not await cur.nextset()
            await cur.execute("SELECT 'in sync'")
            assert await cur.fetchone() == ("in sync",)

    run(main())


def test_procedure_with_two_result_sets(proxy, tables):
    async def main():
        async with connect(proxy) as conn, conn.cursor() as cur:
            await cur.callproc(f"{T}two_results", (41,))
            assert await cur.fetchall() == ((41,),)
            assert await cur.nextset()
            assert await cur.fetchall() == ((42, "x"),)
            while await cur.nextset():  # the procedure's final OK
                pass
            await cur.execute(f"SELECT @_{T}two_results_0")
            assert await cur.fetchone() == (41,)

    run(main())


def test_load_data_local_infile(proxy, tables, tmp_path):
    path = tmp_path / "rows.tsv"
    path.write_text("".join(f"{i}\tvalue {i}\n" for i in range(1, 5001)))

    async def main():
        async with connect(proxy, local_infile=True) as conn, conn.cursor() as cur:
            await cur.execute(f"DELETE FROM {T}kv")
            await cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {T}kv (id, v)")
            assert cur.rowcount == 5000
            await cur.execute(f"SELECT COUNT(*), MAX(v) FROM {T}kv WHERE v LIKE 'value %%'")
            assert await cur.fetchone() == (5000, "value 999")

    run(main())


def test_200k_rows_streamed(proxy):
    async def main():
        async with connect(proxy) as conn:
            async with conn.cursor(aiomysql.SSCursor) as cur:
                await cur.execute("SELECT seq, CONCAT('row-', seq) FROM seq_1_to_200000")
                count, last = 0, None
                while rows := await cur.fetchmany(5000):
                    count += len(rows)
                    last = rows[-1]
            async with conn.cursor() as cur:
                await cur.execute("SELECT 'after stream'")
                return count, last, await cur.fetchone()

    assert run(main()) == (200000, (200000, "row-200000"), ("after stream",))


def test_20_mib_blob_both_ways(proxy, tables):
    blob = os.urandom(20 * 1024 * 1024)

    async def main():
        async with connect(proxy) as conn, conn.cursor() as cur:
            # aiomysql 0.3 cannot escape bytes parameters with PyMySQL 1.2 (it imports
            # the removed escape_bytes_prefixed), so the literal is built as PyMySQL would.
            await cur.execute(f"REPLACE INTO {T}blobs VALUES (1, {escape_bytes(blob)})")
            await cur.execute(f"SELECT b, LENGTH(b), SHA2(b, 256) FROM {T}blobs WHERE id = 1")
            return await cur.fetchone()

    back, length, digest = run(main())
    assert length == len(blob)
    assert back == blob
    assert digest == hashlib.sha256(blob).hexdigest()


def test_utf8mb4_round_trip(proxy, tables):
    text = "zażółć gęślą jaźń — 日本語 — 🐬🚀👍🏽"

    async def main():
        async with connect(proxy) as conn, conn.cursor() as cur:
            await cur.execute(f"INSERT INTO {T}kv (v) VALUES (%s)", (text,))
            await cur.execute(f"SELECT v, CHAR_LENGTH(v), HEX(v) FROM {T}kv WHERE id = LAST_INSERT_ID()")
            first = await cur.fetchone()
            await cur.execute("SELECT %s = _utf8mb4 X'F09F90AC'", ("🐬",))
            return first, await cur.fetchone()

    (value, length, hexed), same = run(main())
    assert (value, length) == (text, len(text))
    assert bytes.fromhex(hexed) == text.encode("utf-8")
    assert same == (1,)


async def _error_of(target, sql, setup=()):
    async with connect(target) as conn, conn.cursor() as cur:
        for statement in setup:
            await cur.execute(statement)
        with pytest.raises(pymysql.err.MySQLError) as err:
            await cur.execute(sql)
        await cur.execute("SELECT 1")  # still usable
        assert await cur.fetchone() == (1,)
        return type(err.value), err.value.args


def test_unknown_table_error_same_as_direct(proxy, app_server):
    sql = f"SELECT * FROM {T}no_such_table"
    direct = run(_error_of(app_server, sql))
    proxied = run(_error_of(proxy, sql))
    assert proxied == direct
    assert proxied == (pymysql.err.ProgrammingError, (1146, f"Table 'appdb.{T}no_such_table' doesn't exist"))


def test_duplicate_key_error_same_as_direct(proxy, app_server, tables):
    setup = (f"REPLACE INTO {T}kv (id, v) VALUES (1000, 'dup')",)
    sql = f"INSERT INTO {T}kv (id, v) VALUES (1000, 'again')"
    direct = run(_error_of(app_server, sql, setup))
    proxied = run(_error_of(proxy, sql, setup))
    assert proxied == direct
    assert proxied == (pymysql.err.IntegrityError, (1062, "Duplicate entry '1000' for key 'PRIMARY'"))


def test_bad_password_is_1045(proxy):
    async def main():
        with pytest.raises(pymysql.err.OperationalError) as err:
            await connect(proxy, password="wrong")
        return err.value.args

    assert run(main()) == (1045, "Access denied for user 'app'@'127.0.0.1' (using password: YES)")


def test_aiomysql_pool_of_20_over_5_backends(proxy, tables, app_server):
    # 20 pooled client connections, 200 concurrent transactions; the proxy has 5 backends.
    app_server.execute(f"REPLACE INTO appdb.{T}counter VALUES (1, 0)")

    async def main():
        pool = await aiomysql.create_pool(host=proxy.host, port=proxy.port, user=APP_USER, password=APP_PASSWORD,
                                          db=APP_DB, minsize=20, maxsize=20, autocommit=False)
        try:
            async def work(i):
                async with pool.acquire() as conn, conn.cursor() as cur:
                    await conn.begin()
                    await cur.execute(f"SELECT n FROM {T}counter WHERE id = 1 FOR UPDATE")
                    (n,) = await cur.fetchone()
                    await cur.execute(f"UPDATE {T}counter SET n = %s WHERE id = 1", (n + 1,))
                    if i % 10 == 0:
                        await conn.rollback()
                    else:
                        await conn.commit()

            await asyncio.gather(*(work(i) for i in range(200)))
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute(f"SELECT n FROM {T}counter WHERE id = 1")
                return await cur.fetchone()
        finally:
            pool.close()
            await pool.wait_closed()

    assert run(main()) == (180,)
    assert app_server.connection_count("app") <= 5

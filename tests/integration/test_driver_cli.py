# The `mariadb` command-line client (libmariadb, subprocess, batch mode) through
# the proxy: -N -B output parsing, CRUD, commit and rollback in one session,
# a server-side multi-statement (one COM_QUERY with two statements, via
# `delimiter`), a procedure with two result sets, LOAD DATA LOCAL INFILE with
# --local-infile=1, 200,000 rows unbuffered (--quick), a 20 MiB BLOB both ways
# (hex literal in, --raw bytes out), utf8mb4 with emoji, server errors printed
# exactly as with a direct connection (errno, SQLSTATE, message), the 1045
# wording, --compress, and mariadb-dump / mariadb-admin through the proxy.
import hashlib
import os
import subprocess

import pytest

from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("mariadb_cli")]

T = "cli_"  # table prefix: files share one server

CLIENT_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL", "MARIADB"))}


def common_args(target, password=APP_PASSWORD):
    return ["--no-defaults", "--protocol=tcp", f"--host={target.host}", f"--port={target.port}",
            f"--user={APP_USER}", f"--password={password}"]


def mariadb(target, *args, sql=None, stdin=None, password=APP_PASSWORD, database=APP_DB, check=True, timeout=60):
    """Run the client against target (proxy or server) in batch mode; returns the CompletedProcess (bytes)."""
    command = [
        "mariadb", *common_args(target, password), "--default-character-set=utf8mb4",
        "--connect-timeout=10", "--batch", "--skip-column-names", *args,
    ]
    if sql is not None:
        command += ["-e", sql]
    if database:
        command.append(database)
    result = subprocess.run(command, input=stdin, capture_output=True, env=CLIENT_ENV, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"mariadb exited with {result.returncode}: {result.stderr.decode(errors='replace')}")
    return result


def rows(result):
    """-N -B output as a list of tab-separated tuples of str."""
    return [tuple(line.split("\t")) for line in result.stdout.decode().splitlines()]


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
    result = mariadb(proxy, sql="SELECT 1 + 1, DATABASE(), @@character_set_client")
    assert rows(result) == [("2", "appdb", "utf8mb4")]


def test_column_names_and_null(proxy):
    result = mariadb(proxy, "--column-names", sql="SELECT 1 AS one, NULL AS nothing, 'a\\tb' AS tabbed")
    assert result.stdout == b"one\tnothing\ttabbed\n1\tNULL\ta\\tb\n"


def test_crud(proxy, tables):
    result = mariadb(proxy, sql=(
        f"DELETE FROM {T}kv;"
        f"INSERT INTO {T}kv (id, v) VALUES (1, 'a'), (2, 'b'), (3, 'c');"
        f"UPDATE {T}kv SET v = 'B' WHERE id = 2;"
        f"DELETE FROM {T}kv WHERE id = 3;"
        f"INSERT INTO {T}kv (v) VALUES ('auto');"
        "SELECT LAST_INSERT_ID(), ROW_COUNT();"
        f"SELECT id, v FROM {T}kv ORDER BY id"
    ))
    out = rows(result)
    last_id = out[0][0]
    assert int(last_id) > 2 and out[0][1] == "1"
    assert out[1:] == [("1", "a"), ("2", "B"), (last_id, "auto")]


def test_commit_and_rollback(proxy, tables):
    mariadb(proxy, sql=(
        f"DELETE FROM {T}kv;"
        "SET autocommit = 0;"
        f"INSERT INTO {T}kv (id, v) VALUES (1, 'a'), (2, 'b');"
        "COMMIT;"
        f"UPDATE {T}kv SET v = 'z' WHERE id = 1;"
        f"INSERT INTO {T}kv (id, v) VALUES (3, 'c');"
        "ROLLBACK;"
        "START TRANSACTION;"
        f"DELETE FROM {T}kv WHERE id = 2;"
        "COMMIT;"
        "BEGIN;"
        f"INSERT INTO {T}kv (id, v) VALUES (4, 'uncommitted')"
        # the client exits inside a transaction: the proxy must roll it back
    ))
    assert rows(mariadb(proxy, sql=f"SELECT id, v FROM {T}kv ORDER BY id")) == [("1", "a")]


def test_server_side_multi_statement(proxy, tables):
    # With a custom delimiter the client sends "SELECT 1; SELECT 2, 3" as one
    # COM_QUERY; the server answers with two result sets (MULTI_STATEMENTS is on).
    result = mariadb(proxy, stdin=b"delimiter //\nSELECT 1; SELECT 2, 3//\ndelimiter ;\nSELECT 'in sync';\n")
    assert rows(result) == [("1",), ("2", "3"), ("in sync",)]


def test_procedure_with_two_result_sets(proxy, tables):
    result = mariadb(proxy, sql=f"CALL {T}two_results(41); SELECT 'in sync'")
    assert rows(result) == [("41",), ("42", "x"), ("in sync",)]


def test_load_data_local_infile(proxy, tables, tmp_path):
    path = tmp_path / "rows.tsv"
    path.write_text("".join(f"{i}\tvalue {i}\n" for i in range(1, 5001)))
    result = mariadb(proxy, "--local-infile=1", sql=(
        f"DELETE FROM {T}kv;"
        f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {T}kv (id, v);"
        "SELECT ROW_COUNT();"
        f"SELECT COUNT(*), MAX(v) FROM {T}kv WHERE v LIKE 'value %'"
    ))
    assert rows(result) == [("5000",), ("5000", "value 999")]


def test_load_data_local_infile_refused_without_flag(proxy, app_server, tables, tmp_path):
    path = tmp_path / "rows.tsv"
    path.write_text("1\tx\n")
    sql = f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {T}kv (id, v)"
    direct = mariadb(app_server, "--local-infile=0", sql=sql, check=False)
    proxied = mariadb(proxy, "--local-infile=0", sql=sql, check=False)
    assert proxied.returncode == direct.returncode == 1
    assert proxied.stderr == direct.stderr
    assert b"ERROR 4166" in proxied.stderr or b"ERROR 1148" in proxied.stderr


def test_200k_rows_unbuffered(proxy):
    result = mariadb(proxy, "--quick", sql="SELECT seq, CONCAT('row-', seq) FROM seq_1_to_200000")
    lines = result.stdout.splitlines()
    assert len(lines) == 200000
    assert lines[0] == b"1\trow-1" and lines[-1] == b"200000\trow-200000"
    assert hashlib.sha256(result.stdout).hexdigest() == hashlib.sha256(
        "".join(f"{i}\trow-{i}\n" for i in range(1, 200001)).encode()).hexdigest()


def test_20_mib_blob_both_ways(proxy, tables):
    blob = os.urandom(20 * 1024 * 1024)
    script = f"REPLACE INTO {T}blobs VALUES (1, X'{blob.hex()}');\n".encode()
    mariadb(proxy, "--max-allowed-packet=64M", stdin=script)
    result = mariadb(proxy, "--max-allowed-packet=64M", "--raw", "--quick",
                     sql=f"SELECT b FROM {T}blobs WHERE id = 1")
    assert len(result.stdout) == len(blob) + 1
    assert result.stdout == blob + b"\n"
    check = mariadb(proxy, sql=f"SELECT LENGTH(b), SHA2(b, 256) FROM {T}blobs WHERE id = 1")
    assert rows(check) == [(str(len(blob)), hashlib.sha256(blob).hexdigest())]


def test_utf8mb4_round_trip(proxy, tables):
    text = "zażółć gęślą jaźń — 日本語 — 🐬🚀👍🏽"
    result = mariadb(proxy, sql=(
        f"INSERT INTO {T}kv (v) VALUES ('{text}');"
        f"SELECT v, CHAR_LENGTH(v), HEX(v) FROM {T}kv WHERE id = LAST_INSERT_ID();"
        "SELECT '🐬' = _utf8mb4 X'F09F90AC'"
    ))
    (value, length, hexed), (same,) = rows(result)
    assert (value, int(length)) == (text, len(text))
    assert bytes.fromhex(hexed) == text.encode("utf-8")
    assert same == "1"


def test_unknown_table_error_same_as_direct(proxy, app_server):
    sql = f"SELECT 1; SELECT * FROM {T}no_such_table"
    direct = mariadb(app_server, sql=sql, check=False)
    proxied = mariadb(proxy, sql=sql, check=False)
    assert (proxied.returncode, proxied.stdout, proxied.stderr) == (direct.returncode, direct.stdout, direct.stderr)
    assert proxied.returncode == 1
    # (in batch mode the client echoes the failing statement before the error line)
    assert proxied.stderr.decode().endswith(
        f"\nERROR 1146 (42S02) at line 1: Table 'appdb.{T}no_such_table' doesn't exist\n")


def test_duplicate_key_error_same_as_direct(proxy, app_server, tables):
    sql = (f"REPLACE INTO {T}kv (id, v) VALUES (1000, 'dup');"
           f"INSERT INTO {T}kv (id, v) VALUES (1000, 'again')")
    direct = mariadb(app_server, sql=sql, check=False)
    proxied = mariadb(proxy, sql=sql, check=False)
    assert (proxied.returncode, proxied.stderr) == (direct.returncode, direct.stderr)
    assert proxied.stderr.decode().endswith(
        "\nERROR 1062 (23000) at line 1: Duplicate entry '1000' for key 'PRIMARY'\n")


def test_force_continues_after_error(proxy, app_server, tables):
    script = f"SELECT * FROM {T}no_such_table;\nSELECT 'after';\n".encode()
    direct = mariadb(app_server, "--force", stdin=script, check=False)
    proxied = mariadb(proxy, "--force", stdin=script, check=False)
    assert (proxied.returncode, proxied.stdout, proxied.stderr) == (direct.returncode, direct.stdout, direct.stderr)
    assert rows(proxied) == [("after",)]
    assert b"ERROR 1146 (42S02) at line 1" in proxied.stderr


def test_bad_password_is_1045(proxy):
    result = mariadb(proxy, password="wrong", sql="SELECT 1", check=False)
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode() == (
        "ERROR 1045 (28000): Access denied for user 'app'@'127.0.0.1' (using password: YES)\n")


def test_compress_option(proxy):
    # The client asks for the compressed protocol if the server offers it; either way it must work.
    result = mariadb(proxy, "--compress", sql="SELECT seq FROM seq_1_to_1000 ORDER BY seq DESC LIMIT 1")
    assert rows(result) == [("1000",)]


def test_init_command_and_status(proxy):
    result = mariadb(proxy, "--init-command=SET @z = 9", sql="SELECT @z, CURRENT_USER()")
    assert rows(result) == [("9", "app@%")]
    status = mariadb(proxy, sql="status").stdout.decode()
    assert "Current database:\tappdb" in status
    assert "Current user:\t\tapp@127.0.0.1" in status
    assert "Client characterset:\tutf8mb4" in status


def test_dump_and_restore_through_proxy(proxy, app_server, tables):
    mariadb(proxy, sql=f"DELETE FROM {T}kv; INSERT INTO {T}kv (id, v) VALUES (1, 'a\\'b'), (2, '🐬'), (3, NULL)")

    def dump(target):
        result = subprocess.run(["mariadb-dump", *common_args(target), "--single-transaction", APP_DB, f"{T}kv"],
                                capture_output=True, env=CLIENT_ENV, timeout=60)
        assert result.returncode == 0, result.stderr
        # comment lines name the host and the time
        return b"\n".join(line for line in result.stdout.splitlines() if not line.startswith(b"-- "))

    proxied = dump(proxy)
    assert proxied == dump(app_server)
    mariadb(proxy, sql=f"DROP TABLE {T}kv")
    mariadb(proxy, stdin=proxied)  # restore through the proxy
    result = mariadb(proxy, sql=f"SELECT id, v FROM {T}kv ORDER BY id")
    assert rows(result) == [("1", "a'b"), ("2", "🐬"), ("3", "NULL")]


def test_mariadb_admin(proxy):
    result = subprocess.run(["mariadb-admin", *common_args(proxy), "ping", "status"],
                            capture_output=True, env=CLIENT_ENV, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "mysqld is alive"
    assert lines[1].startswith("Uptime: ")

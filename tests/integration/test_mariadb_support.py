# Tests of the test-server manager itself (tests/support/mariadb.py), against
# real mariadbd processes: options are applied, the server-side limits and
# KILL behave as later proxy tests assume, and restart/kill/close keep their
# promises. No proxy is involved anywhere in this file.
from __future__ import annotations

import os
import urllib.parse
import uuid
from contextlib import ExitStack, closing

import pymysql
import pytest

from tests.support import mariadb as support
from tests.support.mariadb import (
    CLIENT_ERRORS_CONNECTION_LOST,
    ExternalServer,
    MariaDBNotInstalled,
    MariaDBServer,
    MariaDBStartError,
    NotSupportedWithExternalServer,
    require_restartable,
)
from tests.support.net import free_port, port_is_open
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def query(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def assert_connection_lost(conn) -> None:
    with pytest.raises(pymysql.err.OperationalError) as info:
        query(conn, "SELECT 1")
    assert info.value.args[0] in CLIENT_ERRORS_CONNECTION_LOST, info.value.args


# -- basics ---------------------------------------------------------------


def test_shared_server_answers_queries(mariadb):
    assert mariadb.is_running()
    assert mariadb.execute("SELECT 1 + 1") == ((2,),)
    password = urllib.parse.quote(mariadb.root_password, safe="")
    assert mariadb.url == f"mysql://{mariadb.root_user}:{password}@{mariadb.host}:{mariadb.port}/"


def test_private_server_address(mariadb):
    require_restartable(mariadb)
    assert mariadb.host == "127.0.0.1"
    assert mariadb.port != 3306
    assert mariadb.url == f"mysql://root:@127.0.0.1:{mariadb.port}/"
    assert mariadb.execute("SELECT @@port, @@socket") == ((mariadb.port, mariadb.unix_socket),)
    with closing(pymysql.connect(unix_socket=mariadb.unix_socket, user="root", password="")) as conn:
        assert query(conn, "SELECT 1") == ((1,),)


def test_execute_returns_rows_and_accepts_args(mariadb):
    assert mariadb.execute("SELECT %s, %s", (7, "x")) == ((7, "x"),)
    assert mariadb.execute("DO 1") == ()


def test_connect_defaults_to_autocommit_root(mariadb):
    with closing(mariadb.connect()) as conn:
        assert query(conn, "SELECT @@autocommit, CURRENT_USER()")[0][0] == 1
        assert query(conn, "SELECT CURRENT_USER()")[0][0].startswith("root@")


def test_server_options_are_applied(mariadb_factory):
    server = mariadb_factory(wait_timeout=3, max_connections=50)
    assert server.execute("SELECT @@GLOBAL.wait_timeout, @@GLOBAL.max_connections") == ((3, 50),)
    assert server.execute("SELECT @@SESSION.wait_timeout") == ((3,),)


@pytest.mark.slow
def test_wait_timeout_drops_idle_connections(mariadb_factory):
    server = mariadb_factory(wait_timeout=1)
    with closing(server.connect()) as conn:
        idle = conn.thread_id()
        wait_until(lambda: idle not in server.connection_ids(server.root_user), 10,
                   "the idle connection dropped by the server")
        assert_connection_lost(conn)


def test_set_global(mariadb_factory):
    server = mariadb_factory()
    server.set_global("max_connections", 77)
    assert server.get_global("max_connections") == 77


def test_create_database(mariadb):
    name = unique("db")
    mariadb.create_database(name)
    with closing(mariadb.connect(database=name)) as conn:
        query(conn, "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))")
        query(conn, "INSERT INTO t VALUES (1, 'a')")
        assert query(conn, "SELECT v FROM t") == (("a",),)
    mariadb.create_database(name)  # recreated empty
    assert mariadb.execute(f"SHOW TABLES FROM {name}") == ()


# -- users and connections ------------------------------------------------


def test_create_user_can_log_in_with_password(mariadb):
    user = unique("u")
    mariadb.create_user(user, "s3cret")
    with closing(mariadb.connect(user=user, password="s3cret")) as conn:
        assert query(conn, "SELECT CURRENT_USER()") == ((f"{user}@%",),)
    with pytest.raises(pymysql.err.OperationalError) as info:
        mariadb.connect(user=user, password="wrong")
    assert info.value.args[0] == 1045


def test_create_user_with_auth_plugin(mariadb):
    user = unique("native")
    mariadb.create_user(user, "pw", plugin="mysql_native_password")
    plugin = mariadb.execute("SELECT plugin FROM mysql.user WHERE user = %s", (user,))
    assert plugin == (("mysql_native_password",),)
    with closing(mariadb.connect(user=user, password="pw")) as conn:
        assert query(conn, "SELECT 1") == ((1,),)


def test_create_user_replaces_existing_user(mariadb):
    user = unique("again")
    mariadb.create_user(user, "old")
    mariadb.create_user(user, "new")
    with closing(mariadb.connect(user=user, password="new")) as conn:
        assert query(conn, "SELECT 1") == ((1,),)


def test_max_user_connections_gives_1226(mariadb):
    """The server-side per-user limit works without any proxy in between."""
    user = unique("limited")
    mariadb.create_user(user, "pw", max_user_connections=2)
    with ExitStack() as stack:
        for _ in range(2):
            stack.enter_context(closing(mariadb.connect(user=user, password="pw")))
        with pytest.raises(pymysql.err.OperationalError) as info:
            mariadb.connect(user=user, password="pw")
        assert info.value.args[0] == 1226, info.value.args
    mariadb.wait_for_connection_count(user, 0)
    with closing(mariadb.connect(user=user, password="pw")) as conn:
        assert query(conn, "SELECT 1") == ((1,),)


def test_max_connections_gives_1040(mariadb_factory):
    """Server-wide limit, for a user without CONNECTION ADMIN (which gets one extra slot).

    MariaDB clamps max_connections to at least 10.
    """
    server = mariadb_factory(max_connections=10)
    require_restartable(server)  # other clients of an external server would use up slots
    user = unique("plain")
    server.create_user(user, "pw", grants="SELECT ON mysql.*")
    with ExitStack() as stack:
        for _ in range(10):
            stack.enter_context(closing(server.connect(user=user, password="pw")))
        with pytest.raises(pymysql.err.OperationalError) as info:
            server.connect(user=user, password="pw")
        assert info.value.args[0] == 1040, info.value.args
        assert server.connection_count(user) == 10  # root still gets in


def test_connection_count_and_ids(mariadb):
    user = unique("counted")
    mariadb.create_user(user, "pw")
    assert mariadb.connection_count(user) == 0
    conns = [mariadb.connect(user=user, password="pw") for _ in range(3)]
    try:
        assert mariadb.connection_count(user) == 3
        assert mariadb.connection_ids(user) == sorted(c.thread_id() for c in conns)
        conns.pop().close()
        mariadb.wait_for_connection_count(user, 2)
    finally:
        for conn in conns:
            conn.close()
    mariadb.wait_for_connection_count(user, 0)


def test_connection_count_excludes_own_query(mariadb):
    with closing(mariadb.connect()) as conn:
        assert conn.thread_id() in mariadb.connection_ids("root")
    own = mariadb.execute("SELECT CONNECTION_ID()")[0][0]
    assert own not in mariadb.connection_ids("root")


def test_kill_connections_breaks_existing_connections(mariadb):
    user = unique("victim")
    mariadb.create_user(user, "pw")
    conns = [mariadb.connect(user=user, password="pw") for _ in range(2)]
    try:
        killed = mariadb.kill_connections(user)
        assert sorted(killed) == sorted(c.thread_id() for c in conns)
        assert mariadb.connection_count(user) == 0
        for conn in conns:
            assert_connection_lost(conn)
    finally:
        for conn in conns:
            conn.close()
    with closing(mariadb.connect(user=user, password="pw")) as fresh:
        assert query(fresh, "SELECT 1") == ((1,),)


def test_kill_connections_without_connections_is_a_no_op(mariadb):
    assert mariadb.kill_connections(unique("nobody")) == []


# -- lifecycle (private servers only) -------------------------------------


def make_table_with_rows(server, rows=3) -> str:
    db = unique("keep")
    server.create_database(db)
    server.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY)")
    server.execute(f"INSERT INTO {db}.t VALUES " + ",".join(f"({i})" for i in range(rows)))
    return db


def test_restart_keeps_data_and_port(mariadb_factory):
    server = mariadb_factory()
    require_restartable(server)
    db = make_table_with_rows(server)
    port, old_pid = server.port, server.pid
    with closing(server.connect()) as before:
        server.restart()
        assert_connection_lost(before)
    assert server.is_running()
    assert server.port == port and server.pid != old_pid
    assert server.execute(f"SELECT COUNT(*) FROM {db}.t") == ((3,),)


def test_stop_is_clean_and_start_brings_it_back(mariadb_factory):
    server = mariadb_factory()
    require_restartable(server)
    server.stop()
    assert not server.is_running()
    assert not port_is_open(server.host, server.port)
    assert "Shutdown complete" in server.error_log_tail(20)
    server.start()
    assert server.execute("SELECT 1") == ((1,),)


def test_kill_then_start_recovers(mariadb_factory):
    server = mariadb_factory()
    require_restartable(server)
    db = make_table_with_rows(server, rows=5)
    port = server.port
    server.kill()
    assert not server.is_running()
    with pytest.raises(pymysql.err.OperationalError) as info:
        server.connect(connect_timeout=2)
    assert info.value.args[0] == 2003
    server.start()
    assert server.port == port
    assert server.execute(f"SELECT COUNT(*) FROM {db}.t") == ((5,),)


def test_two_instances_at_once(mariadb_factory):
    first = mariadb_factory()
    require_restartable(first)
    second = mariadb_factory(max_connections=20)
    assert first.port != second.port
    assert first.unix_socket != second.unix_socket
    db = unique("only_first")
    first.create_database(db)
    assert first.execute("SHOW DATABASES LIKE %s", (db,)) == ((db,),)
    assert second.execute("SHOW DATABASES LIKE %s", (db,)) == ()
    assert first.execute("SELECT @@port")[0][0] == first.port
    assert second.execute("SELECT @@port, @@max_connections")[0] == (second.port, 20)


def test_error_log_tail(mariadb_factory):
    server = mariadb_factory()
    require_restartable(server)
    assert "ready for connections" in server.error_log_tail(50)
    assert len(server.error_log_tail(3).splitlines()) <= 3


def test_close_kills_process_and_removes_files(mariadb_factory):
    server = mariadb_factory()
    require_restartable(server)
    pid, base_dir = server.pid, server.base_dir
    server.close()
    assert not base_dir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    server.close()  # idempotent; the fixture closes it again


def test_startup_failure_reports_error_log(mariadb):
    require_restartable(mariadb)
    server = MariaDBServer({"no_such_option_xyz": 1}, startup_timeout=30)
    try:
        with pytest.raises(MariaDBStartError) as info:
            server.start()
        assert "no_such_option_xyz" in str(info.value) or "no-such-option-xyz" in str(info.value)
        assert not server.is_running()
    finally:
        server.close()


def test_reserved_options_are_rejected():
    with pytest.raises(ValueError, match="port"):
        support.merge_options({"port": 3306})


def test_option_args():
    assert support.option_args({"wait_timeout": 3, "log_bin": False, "skip_name_resolve": True}) == [
        "--wait-timeout=3",
        "--skip-log-bin",
        "--skip-name-resolve",
    ]


def test_missing_binaries_error_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(support, "EXTRA_BIN_DIRS", (str(tmp_path),))
    with pytest.raises(MariaDBNotInstalled) as info:
        support.find_binaries()
    message = str(info.value)
    assert "mariadbd" in message and "mariadb-install-db" in message
    assert "apt-get install -y mariadb-server mariadb-client" in message


def test_free_port_is_bindable():
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


# -- external-server mode, exercised against a private server -------------


def test_external_server_restores_globals_and_drops_objects(mariadb_factory):
    server = mariadb_factory()
    original = server.get_global("wait_timeout")
    user, db = unique("ext_u"), unique("ext_db")
    external = ExternalServer(server.url, {"wait_timeout": 5})
    assert external.port == server.port and external.unix_socket is None
    assert server.get_global("wait_timeout") == 5
    external.create_user(user, "pw")
    external.create_database(db)
    external.close()
    assert server.get_global("wait_timeout") == original
    assert server.execute("SELECT 1 FROM mysql.user WHERE user = %s", (user,)) == ()
    assert server.execute("SHOW DATABASES LIKE %s", (db,)) == ()


def test_external_server_refuses_lifecycle_and_is_skipped_by_require_restartable(mariadb):
    external = ExternalServer(mariadb.url)
    assert external.is_running()
    for operation in (external.start, external.stop, external.kill, external.restart):
        with pytest.raises(NotSupportedWithExternalServer, match="needs a private mariadbd"):
            operation()
    with pytest.raises(pytest.skip.Exception, match="MYSQL_TEST_URL points at an external server"):
        require_restartable(external)
    external.close()


def test_external_server_rejects_static_option(mariadb):
    with pytest.raises(NotSupportedWithExternalServer, match="innodb_buffer_pool_chunk_size"):
        ExternalServer(mariadb.url, {"innodb_buffer_pool_chunk_size": "1M"})

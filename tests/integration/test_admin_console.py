# The admin console end to end: a real proxy (tests/support/proxy.py) in
# front of the test MariaDB, its admin listener started on the proxy's loop,
# and the REAL `mariadb` command-line client (batch mode, `-N -B`, and once
# interactively on a pseudo-terminal) plus PyMySQL talking to it while
# PyMySQL clients use the proxy: one inside a transaction, one pinned by a
# temporary table, one idle. Every command is run: SHOW POOLS/CLIENTS/
# SERVERS/STATS/CONFIG/VERSION/ACTIVITY, HELP, PAUSE (answered only once a
# running transaction commits in another thread; a new transaction waits until
# RESUME; a PAUSE that runs out of time names who is busy), SET
# pool.max_size (seen in SHOW CONFIG and in how many transactions run at
# once), WAIT_CLOSE after a SET that retires the server connections, KILL
# CLIENT (the client's next query fails), RELOAD (of an edited and of a
# broken config file: a row per changed setting), SHUTDOWN WAIT, and a wrong
# password;
# idle unauthenticated sockets that must not lock the operator out, and an
# oversized login packet.
from __future__ import annotations

import os
import pty
import select
import socket
import subprocess
import threading
import time
from pathlib import Path

import pymysql
import pytest

from mysqlpool_proxy.ops.admin import COMMANDS, MAX_LOGINS, VERSION_COMMENT, start_admin_server, stop_admin_server
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("mariadb_cli")]

ADMIN_PASSWORD = "adminpw"
CLIENT_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL", "MARIADB"))}
WAIT = 10.0  # seconds any one wait in these tests may take


class Console:
    """The admin console of a running ProxyThread."""

    def __init__(self, proxy, port: int):
        self.proxy = proxy
        self.port = port

    def command(self, *extra: str, password: str = ADMIN_PASSWORD) -> list[str]:
        return ["mariadb", "--no-defaults", "--protocol=tcp", "--host=127.0.0.1", f"--port={self.port}",
                "--user=admin", f"--password={password}", "--connect-timeout=10", *extra]

    def run(self, sql: str, *extra: str, password: str = ADMIN_PASSWORD, check: bool = True):
        """`mariadb -N -B -e sql`: the CompletedProcess (text)."""
        result = subprocess.run(self.command("--batch", "--skip-column-names", *extra, "-e", sql, password=password),
                                capture_output=True, text=True, env=CLIENT_ENV, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"mariadb exited with {result.returncode}: {result.stderr}")
        return result

    def rows(self, sql: str, *extra: str) -> list[list[str]]:
        return [line.split("\t") for line in self.run(sql, *extra).stdout.splitlines()]

    def table(self, sql: str) -> list[dict[str, str]]:
        """Rows as dicts, by the column names the client prints with --column-names."""
        header, *rows = self.rows(sql, "--column-names")
        return [dict(zip(header, row)) for row in rows]

    def pymysql(self, **kwargs) -> pymysql.connections.Connection:
        return pymysql.connect(host="127.0.0.1", port=self.port, user="admin", password=ADMIN_PASSWORD,
                               connect_timeout=10, read_timeout=30, **kwargs)


@pytest.fixture
def console(proxy_factory):
    proxy = proxy_factory(admin={"listen": "127.0.0.1:0", "password": ADMIN_PASSWORD}, pool={"max_size": 3})
    address = proxy.config.admin.listen_address
    server = proxy.call_async(lambda: start_admin_server(proxy.proxy, address))
    port = proxy.call(lambda: server.sockets[0].getsockname()[1])
    yield Console(proxy, port)
    proxy.call_async(lambda: stop_admin_server(server))


@pytest.fixture
def app_clients(console):
    """Three PyMySQL clients of the proxy: in a transaction, pinned by a temporary table, idle."""
    in_trx = console.proxy.connect(program_name="billing-worker")
    in_trx.cursor().execute("BEGIN")
    in_trx.cursor().execute("SELECT 1")
    pinned = console.proxy.connect()
    pinned.cursor().execute("CREATE TEMPORARY TABLE admin_console_tmp (i INT)")
    idle = console.proxy.connect()
    idle.cursor().execute("SELECT 1")
    yield {"in_trx": in_trx, "pinned": pinned, "idle": idle}
    for conn in (in_trx, pinned, idle):
        try:
            conn.close()
        except pymysql.err.Error:
            pass


def error_line(result) -> str:
    """The client's error line (in batch mode it prints the failed statement above it)."""
    assert result.returncode == 1, result
    return result.stderr.strip().splitlines()[-1]


# -- reading ------------------------------------------------------------------------------------


def test_show_pools_clients_servers_with_clients(console, app_clients, app_server):
    in_trx, pinned, idle = app_clients["in_trx"], app_clients["pinned"], app_clients["idle"]
    (pool,) = console.table("SHOW POOLS")
    assert pool["pool"] == "app" and pool["max_size"] == "3" and pool["configured_max_size"] == "3"
    assert pool["in_use"] == "2" and pool["waiting"] == "0" and pool["paused"] == "0"
    assert int(pool["checkouts"]) >= 3 and float(pool["avg_wait_seconds"]) >= 0

    clients = {int(row["id"]): row for row in console.table("SHOW CLIENTS")}
    assert set(clients) == {in_trx.thread_id(), pinned.thread_id(), idle.thread_id()}
    assert all(row["user"] == "app" and row["address"] == "127.0.0.1" and row["schema"] == "appdb"
               for row in clients.values())
    assert clients[in_trx.thread_id()]["pinned"] == "transaction"
    assert clients[in_trx.thread_id()]["program"] == "billing-worker"  # its program_name connect attribute
    assert clients[idle.thread_id()]["program"] == "pymysql"  # none given: the driver's _client_name
    assert clients[pinned.thread_id()]["pinned"] == "temporary_table"
    assert clients[idle.thread_id()]["backend_id"] == "NULL"

    servers = {int(row["id"]): row for row in console.table("SHOW SERVERS")}
    held = {int(row["client_id"]): row for row in servers.values() if row["client_id"] != "NULL"}
    assert set(held) == {in_trx.thread_id(), pinned.thread_id()}
    trx_backend = held[in_trx.thread_id()]
    assert int(clients[in_trx.thread_id()]["backend_id"]) == int(trx_backend["id"])
    assert trx_backend["state"] == "reserved" and trx_backend["pool"] == "app"
    # thread ids are the server's own (CONNECTION_ID() through the proxy is the proxy's id: ask the server)
    server_threads = {row[0] for row in app_server.execute(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'app'")}
    assert {int(row["thread_id"]) for row in servers.values()} <= server_threads
    assert all(0 < float(row["expires_in_seconds"]) <= 3600 for row in servers.values())


def test_show_stats(console, app_clients):
    stats = {(pool, stat): float(value) for pool, stat, value in console.rows("SHOW STATS")}
    assert stats[("app", "pins.temporary_table")] >= 1 and ("app", "pins.transaction") in stats
    assert stats[("app", "connects")] >= 2 and stats[("app", "checkouts")] >= 3
    assert stats[("NULL", "accepted")] >= 3 and stats[("NULL", "clients")] == 3
    assert stats[("NULL", "bytes_in")] > 0 and stats[("NULL", "bytes_out")] > 0
    assert ("NULL", "refused.auth_failed") in stats and ("app", "closed.max_lifetime") in stats


def test_show_config_masks_secrets(console):
    result = console.run("SHOW CONFIG")
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    config = {key: value for key, value, _default, _source, _changeable in rows}
    assert config["admin.password"] == "***" and config["users[0].password"] == "***"
    assert config["users[0].name"] == "app" and config["pool.max_size"] == "3"
    assert config["admin.listen"] == "127.0.0.1:0" and config["admin.password_hash"] == "NULL"
    assert ADMIN_PASSWORD not in result.stdout and "app-secret" not in result.stdout


def test_show_version_and_help(console, app_server):
    ((version, server_version),) = console.rows("SHOW VERSION")
    assert version.startswith("mysqlpool-proxy ")
    assert server_version == app_server.execute("SELECT VERSION()")[0][0]  # without MariaDB's "5.5.5-"
    help_rows = console.rows("SHOW HELP")  # a bare HELP is the mariadb client's own
    assert [row[0] for row in help_rows] == [c.usage for c in COMMANDS.values()]
    # `help <topic>` is sent as HELP 'topic'; the client lists the names it gets
    assert console.run("help kill").stdout.split("\n")[0].strip() == "KILL CLIENT <id>"
    listed = [line.strip() for line in console.run("help contents").stdout.splitlines() if line.strip()]
    assert listed == [c.usage for c in COMMANDS.values()]


def test_several_commands_and_an_unknown_one(console):
    result = console.run("show pools; Show Version ;SHOW HELP", check=False)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 1 + 1 + len(COMMANDS)
    result = console.run("SHOW POOLZ", check=False)
    assert error_line(result).startswith("ERROR 1064 (42000) at line 1: Unknown admin command 'SHOW POOLZ'. Commands: ")
    assert "KILL CLIENT <id>" in result.stderr


def test_wrong_password_is_refused_with_1045(console):
    result = console.run("SHOW POOLS", password="wrong", check=False)
    assert error_line(result) == "ERROR 1045 (28000): Access denied for user 'admin'@'127.0.0.1' (using password: YES)"
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql.connect(host="127.0.0.1", port=console.port, user="app", password="app-secret", connect_timeout=10)
    assert info.value.args[0] == 1045


def test_idle_unauthenticated_connections_do_not_lock_the_operator_out(console):
    idle = [socket.create_connection(("127.0.0.1", console.port), timeout=WAIT) for _ in range(MAX_LOGINS + 4)]
    try:
        for sock in idle:
            assert sock.recv(1)  # greeted, then silent
        started = time.monotonic()
        assert [row[0] for row in console.rows("SHOW POOLS")] == ["app"]
        conn = console.pymysql()
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW POOLS")
                assert [row[0] for row in cur.fetchall()] == ["app"]
        finally:
            conn.close()
        assert time.monotonic() - started < WAIT
    finally:
        for sock in idle:
            sock.close()


def test_an_oversized_login_packet_gets_1153_and_a_close(console):
    with socket.create_connection(("127.0.0.1", console.port), timeout=WAIT) as sock:
        sock.recv(65536)  # the greeting
        answer = b""
        try:
            sock.sendall(b"\xff\xff\xff\x01" + bytes(65536))  # the start of a 60 MiB packet
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed already; its answer is still there to read
        try:
            while data := sock.recv(65536):
                answer += data
        except ConnectionResetError:
            pass  # (closed with our bytes unread: a reset after the answer)
    assert answer[3] == 2 and answer[4] == 0xFF and int.from_bytes(answer[5:7], "little") == 1153


def test_pymysql_on_the_admin_port(console):
    conn = console.pymysql(database="mysqlpool")  # autocommit off: PyMySQL sends SET AUTOCOMMIT = 0
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("SHOW POOLS")
        (pool,) = cur.fetchall()
        assert pool["pool"] == "app" and pool["max_size"] == 3 and pool["paused"] == 0
        assert isinstance(pool["avg_wait_seconds"], float)
        cur.execute("SELECT DATABASE(), USER()")
        assert cur.fetchone() == {"DATABASE()": "mysqlpool", "USER()": "admin@127.0.0.1"}
        cur.execute("select @@version_comment limit 1")
        assert cur.fetchone() == {"@@version_comment": VERSION_COMMENT}
        with pytest.raises(pymysql.err.ProgrammingError) as info:
            cur.execute("DROP TABLE pools")
        assert info.value.args[0] == 1064
    conn.ping(reconnect=False)
    conn.select_db("other")
    conn.commit()
    conn.rollback()
    conn.close()


def test_interactive_client_on_a_terminal(console):
    """`mariadb -u admin -p` as an operator runs it: a terminal, the password prompt, a database (rehash)."""
    primary, secondary = pty.openpty()
    args = [a for a in console.command("--database=mysqlpool") if not a.startswith("--password=")] + ["-p"]
    process = subprocess.Popen(args, stdin=secondary, stdout=secondary, stderr=secondary,
                               env={**CLIENT_ENV, "TERM": "dumb"}, close_fds=True)
    os.close(secondary)
    output = b""

    def read_until(marker: bytes) -> None:
        nonlocal output
        deadline = time.monotonic() + WAIT
        while marker not in output:
            ready, _, _ = select.select([primary], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no {marker!r} from the client; got {output!r}")
            try:
                output += os.read(primary, 65536)
            except OSError:
                raise AssertionError(f"the client went away before {marker!r}; got {output!r}") from None

    try:
        read_until(b"Enter password:")
        os.write(primary, ADMIN_PASSWORD.encode() + b"\n")
        read_until(b"]>")
        assert VERSION_COMMENT.encode() in output  # from `select @@version_comment limit 1`
        os.write(primary, b"SHOW POOLS;\n")
        read_until(b"1 row in set")
        assert b"| app " in output and b"avg_wait_seconds" in output
        os.write(primary, b"status\n")
        read_until(b"Current database:")
        os.write(primary, b"exit\n")
        read_until(b"Bye")
        assert process.wait(WAIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(WAIT)
        os.close(primary)


# -- acting -----------------------------------------------------------------------------------


class InThread:
    """fn() run in a thread: its result or exception, and when it returned."""

    def __init__(self, fn):
        self.result, self.error, self.done = None, None, threading.Event()

        def run() -> None:
            try:
                self.result = fn()
            except BaseException as exc:  # reported by the test thread
                self.error = exc
            finally:
                self.done.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def wait(self):
        assert self.done.wait(WAIT), "it did not return in time"
        self.thread.join(WAIT)
        if self.error is not None:
            raise self.error
        return self.result


def admin_command(console: Console, sql: str) -> bytes:
    """Run one admin command over PyMySQL; its OK's info."""
    conn = console.pymysql()
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
        return conn._result.message[1:]  # PyMySQL keeps the info's length byte, as with a server
    finally:
        conn.close()


def transaction(client: pymysql.connections.Connection) -> None:
    with client.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
        cur.execute("COMMIT")


def app_connections(app_server) -> int:
    """Connections of the app account the server has (the proxy's backends)."""
    return len(app_server.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'app'"))


def test_pause_answers_once_a_running_transaction_commits_and_new_ones_wait_until_resume(console, app_server):
    in_trx = console.proxy.connect()
    with in_trx.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
    pause = InThread(lambda: admin_command(console, "PAUSE"))
    wait_until(lambda: console.table("SHOW POOLS")[0]["paused"] == "1", WAIT, "the pool to be paused")
    newcomer = InThread(lambda: transaction(console.proxy.connect()))
    wait_until(lambda: console.table("SHOW POOLS")[0]["waiting"] == "1", WAIT, "the new transaction to wait")
    assert not pause.done.is_set()  # a server connection is still in use: a restart now would cut it
    with in_trx.cursor() as cur:  # the transaction already running goes on, and ends
        cur.execute("SELECT 2")
        cur.execute("COMMIT")
    assert pause.wait() == b"paused: app; no server connection left"
    assert app_connections(app_server) == 0  # the server could be restarted now
    assert not newcomer.done.is_set()
    assert console.run("RESUME app").returncode == 0
    newcomer.wait()
    assert console.table("SHOW POOLS")[0]["paused"] == "0"
    in_trx.close()


def test_pause_that_runs_out_of_time_names_who_is_busy(proxy_factory):
    proxy = proxy_factory(admin={"listen": "127.0.0.1:0", "password": ADMIN_PASSWORD},
                          proxy={"shutdown_timeout": 1})
    server = proxy.call_async(lambda: start_admin_server(proxy.proxy, proxy.config.admin.listen_address))
    console = Console(proxy, proxy.call(lambda: server.sockets[0].getsockname()[1]))
    pinned = proxy.connect()
    pinned.cursor().execute("CREATE TEMPORARY TABLE paused_tmp (i INT)")
    result = console.run("PAUSE", check=False)
    assert error_line(result).startswith(
        "ERROR 1105 (HY000) at line 1: PAUSE: still busy after 1s (proxy.shutdown_timeout), the pools stay "
        f"paused; run PAUSE again to wait more, or RESUME: pool app: 1 in use (held by client #{pinned.thread_id()} "
        "(temporary_table))")
    assert console.table("SHOW POOLS")[0]["paused"] == "1"
    console.run("RESUME")
    with pinned.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM paused_tmp")
    pinned.close()
    proxy.call_async(lambda: stop_admin_server(server))


def test_set_pool_max_size_shows_in_show_config_and_in_behaviour(console, app_server):
    assert admin_command(console, "SET pool.max_size = 1") == b"pool.max_size = 1 (was 3)"
    config = {row["key"]: row for row in console.table("SHOW CONFIG")}
    assert (config["pool.max_size"]["value"], config["pool.max_size"]["source"]) == ("1", "admin")
    assert config["pool.max_size"]["default"] == "10" and config["pool.max_size"]["changeable"] == "1"
    assert console.table("SHOW POOLS")[0]["max_size"] == "1"
    first, second = console.proxy.connect(), console.proxy.connect()
    with first.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
    waiting = InThread(lambda: transaction(second))
    wait_until(lambda: console.table("SHOW POOLS")[0]["waiting"] == "1", WAIT, "the second transaction to wait")
    assert app_connections(app_server) == 1
    assert admin_command(console, "SET pool.max_size = 2") == b"pool.max_size = 2 (was 1)"
    waiting.wait()  # served at once: the first transaction is still open
    assert app_connections(app_server) == 2
    first.cursor().execute("COMMIT")
    result = console.run("SET proxy.listen = '127.0.0.1:1'", check=False)
    assert error_line(result).startswith("ERROR 1238 (HY000) at line 1: proxy.listen needs a restart")
    assert "SET can change proxy.{max_client_connections, " in result.stderr
    assert "settings of backend, pool" in result.stderr
    assert console.run("SET NAMES utf8mb4; SET autocommit = 1").returncode == 0  # driver chatter: OK
    assert console.table("SHOW POOLS")[0]["max_size"] == "2"
    first.close()
    second.close()


def test_wait_close_answers_once_the_connections_a_set_retired_are_closed(console, app_server, caplog):
    caplog.set_level("INFO", logger="mysqlpool.admin")
    in_trx = console.proxy.connect()
    with in_trx.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
    (held,) = [row for row in console.table("SHOW SERVERS") if row["client_id"] != "NULL"]
    assert admin_command(console, "SET backend.connect_timeout = 4") == b"backend.connect_timeout = 4.0 (was 5.0)"
    wait_close = InThread(lambda: admin_command(console, "WAIT_CLOSE app"))
    # The console logs each command it runs (the proxy runs in this process, on its own thread).
    wait_until(lambda: "WAIT_CLOSE app" in caplog.text, WAIT, "the console to run WAIT_CLOSE")
    assert console.table("SHOW POOLS")[0]["in_use"] == "1" and not wait_close.done.is_set()
    with in_trx.cursor() as cur:
        cur.execute("SELECT 2")  # still on the old connection
        cur.execute("COMMIT")
    assert wait_close.wait() == (b"closed: 1 server connection opened before the last RELOAD or SET changed how "
                                 b"they connect")
    threads = {row[0] for row in app_server.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'app'")}
    assert int(held["thread_id"]) not in threads
    in_trx.cursor().execute("SELECT 3")  # on a new one
    in_trx.close()


def test_show_activity_of_a_running_statement_and_a_transaction(console):
    sleeper, in_trx = console.proxy.connect(), console.proxy.connect()
    with in_trx.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 'it''s'")
    running = InThread(lambda: sleeper.cursor().execute("SELECT SLEEP(30)"))

    def activity() -> dict[int, dict[str, str]]:
        return {int(row["id"]): row for row in console.table("SHOW ACTIVITY")}

    wait_until(lambda: activity()[sleeper.thread_id()]["state"] == "active", WAIT, "the statement to run")
    wait_until(lambda: float(activity()[sleeper.thread_id()]["command_seconds"]) > 0.2, WAIT, "time to pass")
    rows = activity()
    row = rows[sleeper.thread_id()]
    assert (row["user"], row["pool"], row["command"], row["query"]) == ("app", "app", "query", "SELECT SLEEP(30)")
    assert row["transaction_seconds"] == "NULL"
    trx = rows[in_trx.thread_id()]
    assert (trx["state"], trx["query"], trx["command_seconds"]) == ("ready", "SELECT 'it''s'", "NULL")
    # (it began first; both are in milliseconds, so they are equal when less than one passed between)
    assert float(trx["transaction_seconds"]) >= float(row["command_seconds"])
    console.run(f"KILL CLIENT {sleeper.thread_id()}")
    with pytest.raises(pymysql.err.OperationalError):
        running.wait()
    in_trx.close()


def test_pause_unknown_pool(console):
    result = console.run("PAUSE nosuch", check=False)
    assert error_line(result) == "ERROR 1105 (HY000) at line 1: no pool named 'nosuch'; pools: app"


def test_kill_client(console, app_clients):
    idle, in_trx = app_clients["idle"], app_clients["in_trx"]
    console.run(f"KILL CLIENT {idle.thread_id()}")
    with pytest.raises(pymysql.err.OperationalError):
        idle.cursor().execute("SELECT 1")
    console.run(f"kill client {in_trx.thread_id()};")
    with pytest.raises(pymysql.err.OperationalError):
        in_trx.cursor().execute("SELECT 1")
    ids = {int(row[0]) for row in console.rows("SHOW CLIENTS")}
    assert ids == {app_clients["pinned"].thread_id()}
    result = console.run(f"KILL CLIENT {idle.thread_id()}", check=False)
    assert error_line(result) == f"ERROR 1094 (HY000) at line 1: Unknown thread id: {idle.thread_id()}"
    with app_clients["pinned"].cursor() as cur:  # the others are untouched
        cur.execute("SELECT COUNT(*) FROM admin_console_tmp")


def test_reload(console):
    path = Path(console.proxy.config.source)
    original = path.read_text()
    assert "max_size = 3" in original
    path.write_text(original.replace("max_size = 3", "max_size = 4"))
    conn = console.pymysql()
    with conn.cursor() as cur:
        cur.execute("RELOAD")
        assert cur.fetchall() == (("pool.max_size", "3", "4", "applied"),)
    assert console.table("SHOW POOLS")[0]["max_size"] == "4"
    path.write_text(original.replace("max_size = 3", "max_size = 4").replace("127.0.0.1:0", "127.0.0.1:1", 1))
    (row,) = console.table("RELOAD")
    assert (row["key"], row["before"], row["after"]) == ("proxy.listen", "127.0.0.1:0", "127.0.0.1:1")
    assert row["status"] == "restart needed: the running value stays until then"
    path.write_text(original.replace("max_size = 3", "max_size = 4"))
    assert console.rows("RELOAD") == []  # the file says again what runs

    path.write_text(original.replace("max_size = 3", "max_size = 0"))
    result = console.run("RELOAD", check=False)
    assert error_line(result) == ("ERROR 1105 (HY000) at line 1: RELOAD failed, config unchanged: "
                                  f"config error in {path}: pool.max_size must be an integer >= 1, got 0")
    assert console.table("SHOW POOLS")[0]["max_size"] == "4"
    path.write_text("[pool\nmax_size = ")
    assert console.run("RELOAD", check=False).returncode == 1
    assert console.proxy.call(lambda: console.proxy.proxy.pools["app"].configured_max_size) == 4
    conn.close()


def test_shutdown_wait(console, app_clients):
    assert not console.proxy.call(lambda: console.proxy.proxy.shutdown_requested.is_set())
    assert console.run("SHUTDOWN WAIT").returncode == 0
    assert console.proxy.call(lambda: console.proxy.proxy.shutdown_requested.is_set())
    timeout = console.proxy.call(lambda: console.proxy.proxy.shutdown_timeout)
    assert timeout == console.proxy.config.proxy.shutdown_timeout
    with app_clients["idle"].cursor() as cur:  # the console asks; the process (app.serve) stops the proxy
        cur.execute("SELECT 1")

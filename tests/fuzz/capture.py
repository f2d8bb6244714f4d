"""Regenerate the fuzzer's corpus (a developer tool): python -m tests.fuzz.capture [--out DIR]

Starts a private MariaDB (tests/support/mariadb.py) set up as the fuzz test's
(workload.prepare_server), a real proxy in front of it, and a recording TCP
relay in front of the proxy. Each scenario below drives one real driver
through the relay on one connection; the relay keeps every byte the driver
sent, which is cut into packets: the HandshakeResponse gives the capability
flags, collation, user and schema, the auth exchange is dropped, and every
packet from the first command on is stored with its sequence id as sent
(corpus.py). Commit the regenerated files with the versions it prints.
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import io
import os
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import mysql.connector
import MySQLdb
import pymysql
from pymysql.constants import CLIENT, COMMAND

from tests.fuzz.corpus import CORPUS_DIR, CorpusPacket, CorpusSession
from tests.fuzz.wire import FrameStream
from tests.fuzz.workload import (
    FUZZ_DB,
    FUZZ_PASSWORD,
    FUZZ_USER,
    PROXY_USERS,
    SERVER_OPTIONS,
    prepare_server,
    proxy_sections,
)
from tests.support.mariadb import start_server
from tests.support.proxy import ProxyThread, render_config

RELAY_TIMEOUT = 30.0  # seconds a recorded connection may take to close on both sides


class Recorder:
    """Relays connections to a target and records what each client sent."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.recorded: list[bytearray] = []
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            record = bytearray()
            self.recorded.append(record)
            upstream = socket.create_connection(self.target, timeout=RELAY_TIMEOUT)
            for src, dst, rec in ((client, upstream, record), (upstream, client, None)):
                t = threading.Thread(target=self._pump, args=(src, dst, rec), daemon=True)
                t.start()
                self._threads.append(t)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, record: bytearray | None) -> None:
        src.settimeout(RELAY_TIMEOUT)
        try:
            while chunk := src.recv(65536):
                if record is not None:
                    record += chunk
                dst.sendall(chunk)
        except OSError:
            pass
        for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                sock.shutdown(how)
            except OSError:
                pass

    def take(self) -> bytes:
        """The bytes the one client since the last take() sent, once its connection is over."""
        for t in self._threads:
            t.join(RELAY_TIMEOUT)
        self._threads.clear()
        if len(self.recorded) != 1:
            raise RuntimeError(f"a scenario must open exactly one connection, it opened {len(self.recorded)}")
        return bytes(self.recorded.pop())

    def close(self) -> None:
        self.listener.close()


def parse_session(name: str, about: str, driver: str, data: bytes) -> CorpusSession:
    packets = FrameStream().feed(data)
    login = packets[0].payload
    caps = int.from_bytes(login[:4], "little")
    charset = login[8]
    pos = 32
    user, _, _rest = login[pos:].partition(b"\0")
    pos += len(user) + 1
    if caps & CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA or caps & CLIENT.SECURE_CONNECTION:
        pos += 1 + login[pos]  # (auth responses here are shorter than 251 bytes)
    database = None
    if caps & CLIENT.CONNECT_WITH_DB:
        database = login[pos:].partition(b"\0")[0].decode()
    session = CorpusSession(name, about, driver, caps, charset, user.decode(), database)
    started = False
    last_command = -1
    for pkt in packets[1:]:
        if pkt.seq == 0:
            started = True
            last_command = pkt.payload[0] if pkt.payload else -1
            role = "command"
        elif not started:
            continue  # the rest of the login
        else:
            role = "auth" if last_command == COMMAND.COM_CHANGE_USER else "infile"
        session.packets.append(CorpusPacket(pkt.seq, role, pkt.payload))
    return session


# -- scenarios: one connection of one real driver each ---------------------------------------------


def pymysql_connect(port: int, **kwargs) -> pymysql.connections.Connection:
    kwargs.setdefault("autocommit", True)
    return pymysql.connect(host="127.0.0.1", port=port, user=FUZZ_USER, password=FUZZ_PASSWORD, database=FUZZ_DB,
                           charset="utf8mb4", connect_timeout=10, read_timeout=30, **kwargs)


def pymysql_text(port: int) -> None:
    """PyMySQL text protocol: selects of every column type, writes with escaped strings, transactions with a
    savepoint, SET NAMES and other session state, user variables, warnings, comments, a temporary table,
    COM_PING and COM_INIT_DB."""
    conn = pymysql_connect(port)
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        cur.execute("SELECT id, v, n, b, d, f, m FROM t WHERE id <= %s ORDER BY id", (5,))
        cur.execute("INSERT INTO t (v, n, b) VALUES (%s, %s, %s)", ("it's a \\ 'test' \"x\" é😀", 7, b"\x00\xff'\\"))
        cur.execute("UPDATE t SET n = n + 1 WHERE id = %s", (cur.lastrowid,))
        conn.begin()
        cur.execute("UPDATE t SET n = n + 1 WHERE id = 1")
        cur.execute("SAVEPOINT s1")
        cur.execute("DELETE FROM t WHERE id = 2")
        cur.execute("ROLLBACK TO SAVEPOINT s1")
        conn.commit()
        conn.begin()
        cur.execute("DELETE FROM t WHERE v = 'nothing'")
        conn.rollback()
        cur.execute("SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci")
        cur.execute("SET @a = 'x', @b = 2")
        cur.execute("SELECT @a, @b, @@session.sql_mode")
        cur.execute("SET SESSION sql_mode = 'TRADITIONAL', time_zone = '+02:00'")
        cur.execute("SELECT /* a comment */ 1 -- the rest of the line\n, 2 # hash comment\n")
        cur.execute("SELECT CONNECTION_ID(), LAST_INSERT_ID(), ROW_COUNT()")
        cur.execute("SELECT 1/0, CAST('x' AS INT)")
        cur.execute("SHOW WARNINGS")
        cur.execute("CREATE TEMPORARY TABLE tmp (i INT)")
        cur.execute("INSERT INTO tmp VALUES (1), (2)")
        cur.execute("SELECT SUM(i) FROM tmp")
        cur.execute("DROP TEMPORARY TABLE tmp")
        conn.ping(reconnect=False)
        conn.select_db(FUZZ_DB)
        cur.execute("SELECT SQL_CALC_FOUND_ROWS id FROM t LIMIT 2")
        cur.execute("SELECT FOUND_ROWS()")
        cur.execute("SELECT `v`, 'it''s', \"dq\", x'4142', _utf8mb4'é' COLLATE utf8mb4_bin FROM t WHERE v LIKE 'row1%'")
    conn.close()


def pymysql_multi(port: int) -> None:
    """PyMySQL with CLIENT_MULTI_STATEMENTS: several statements per COM_QUERY, one failing in the middle, a
    transaction in one query, and a procedure with two result sets."""
    conn = pymysql_connect(port, client_flag=CLIENT.MULTI_STATEMENTS)
    with conn.cursor() as cur:
        for sql in ("SELECT 1; SELECT 'a', 2; UPDATE t SET n = n WHERE id = 1; SELECT COUNT(*) FROM t",
                    "SET @x = 1; SELECT @x",
                    "BEGIN; INSERT INTO t (v) VALUES ('multi'); COMMIT",
                    "CALL two_results(5)"):
            cur.execute(sql)
            while cur.nextset():
                pass
        try:
            cur.execute("SELECT 1; SELECT * FROM no_such_table; SELECT 2")
            while cur.nextset():
                pass
        except pymysql.err.ProgrammingError:
            pass
        cur.execute("SELECT 3")
    conn.close()


def pymysql_infile(port: int) -> None:
    """PyMySQL with local_infile=True: LOAD DATA LOCAL INFILE of a 21 KB file (two packets), of an empty
    file, and a look at what arrived."""
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # the file names the server echoes back stay the same from one capture to the next
        try:
            Path("big.csv").write_text("".join(f"line{i},{i}\n" for i in range(2000)))
            Path("empty.csv").write_text("")
            conn = pymysql_connect(port, local_infile=True)
            with conn.cursor() as cur:
                for name in ("big.csv", "empty.csv"):
                    cur.execute(f"LOAD DATA LOCAL INFILE '{name}' INTO TABLE loaded FIELDS TERMINATED BY ',' (a, b)")
                cur.execute("SELECT COUNT(*), SUM(b) FROM loaded")
                cur.execute("DELETE FROM loaded")
            conn.close()
        finally:
            os.chdir(cwd)


def connector_connect(port: int, **kwargs):
    kwargs.setdefault("autocommit", True)
    return mysql.connector.connect(host="127.0.0.1", port=port, user=FUZZ_USER, password=FUZZ_PASSWORD,
                                   database=FUZZ_DB, use_pure=True, charset="utf8mb4",
                                   collation="utf8mb4_general_ci", connection_timeout=10, **kwargs)


def connector_prepared(port: int) -> None:
    """mysql-connector prepared=True cursors (binary protocol): parameters of every type (NULL bitmap, types
    bound anew when they change), binary rows of every column type, executemany, a transaction, CLOSE."""
    conn = connector_connect(port, autocommit=False)
    cur = conn.cursor(prepared=True)
    cur.execute("SELECT ? + 1, ?, ?, ?, ?, ?, ?", (41, 2.5, "str'ing", b"\x00\x01bytes", None,
                                                 datetime.datetime(2024, 5, 6, 7, 8, 9, 123), decimal.Decimal("3.14")))
    cur.fetchall()
    cur.execute("SELECT id, v, n, b, d, f, m FROM t WHERE id < ?", (10,))
    cur.fetchall()
    cur.executemany("INSERT INTO t (v, n, d) VALUES (?, ?, ?)",
                    [("p1", 1, None), ("p2", None, datetime.date(2020, 1, 1)), (None, 3, None)])
    conn.commit()
    cur.execute("UPDATE t SET n = ? WHERE v = ?", (5, "p1"))
    cur.execute("UPDATE t SET n = ? WHERE v = ?", ("6", "p2"))  # other types: bound anew
    conn.rollback()
    cur.close()
    conn.close()


class ShortReads(io.RawIOBase):
    """A file whose reads return at most `step` bytes: the connector sends one SEND_LONG_DATA per read."""

    def __init__(self, data: bytes, step: int):
        self.data, self.step = data, step

    def read(self, size: int = -1) -> bytes:
        chunk, self.data = self.data[:min(size, self.step)], self.data[min(size, self.step):]
        return chunk


def connector_long_data(port: int) -> None:
    """mysql-connector: COM_STMT_SEND_LONG_DATA (a file-like parameter, sent in three packets) before an
    execute, COM_STMT_RESET, and again after the reset."""
    conn = connector_connect(port)
    stmt = conn.cmd_stmt_prepare(b"INSERT INTO t (v, b) VALUES (?, ?)")
    sid = stmt["statement_id"]
    conn.cmd_stmt_execute(sid, ("long", ShortReads(b"L" * 9000, 3000)), stmt["parameters"])
    conn.cmd_stmt_reset(sid)
    conn.cmd_stmt_execute(sid, ("short", io.BytesIO(b"s" * 100)), stmt["parameters"])
    conn.cmd_stmt_close(sid)
    cur = conn.cursor()
    cur.execute("SELECT LENGTH(b) FROM t WHERE v IN ('long', 'short')")
    cur.fetchall()
    cur.close()
    conn.close()


def connector_cursor(port: int) -> None:
    """mysql-connector: COM_STMT_EXECUTE with a read-only cursor, then COM_STMT_FETCH a few rows at a time
    to the end; a second cursor closed before its end."""
    conn = connector_connect(port)
    stmt = conn.cmd_stmt_prepare(b"SELECT id, v, n FROM t WHERE id <= ? ORDER BY id")
    sid = stmt["statement_id"]
    for limit, fetches in ((7, 3), (20, 1)):
        columns = conn.cmd_stmt_execute(sid, (limit,), stmt["parameters"], flags=1)[1]
        for _ in range(fetches):
            conn.cmd_stmt_fetch(sid, 3)
            conn.get_rows(binary=True, columns=columns)
        conn.cmd_stmt_reset(sid)
    conn.cmd_stmt_close(sid)
    conn.close()


def connector_session(port: int) -> None:
    """mysql-connector session commands: COM_PING, COM_INIT_DB, COM_CHANGE_USER, COM_RESET_CONNECTION,
    COM_STATISTICS, with statements between them."""
    conn = connector_connect(port)
    conn.cmd_query("SET @q = 1")
    conn.cmd_ping()
    conn.cmd_init_db(FUZZ_DB)
    conn.cmd_change_user(username=FUZZ_USER, password=FUZZ_PASSWORD, database=FUZZ_DB)
    conn.cmd_query("SELECT @q")
    conn.get_rows()
    conn.cmd_query("SET @r = 2")
    conn.cmd_reset_connection()
    conn.cmd_statistics()
    conn.cmd_query("SELECT DATABASE(), @r")
    conn.get_rows()
    conn.close()


def mysqlclient_session(port: int) -> None:
    """mysqlclient (libmariadb): COM_SET_OPTION to turn multi-statements on and off around a multi-statement
    query, COM_PING, COM_INIT_DB, COM_CHANGE_USER, COM_STATISTICS."""
    conn = MySQLdb.connect(host="127.0.0.1", port=port, user=FUZZ_USER, password=FUZZ_PASSWORD, database=FUZZ_DB,
                           charset="utf8mb4", connect_timeout=10, autocommit=True)
    conn.set_server_option(0)  # MYSQL_OPTION_MULTI_STATEMENTS_ON
    conn.query("SELECT 1; SELECT 'two'")
    conn.store_result()
    while conn.next_result() == 0:
        conn.store_result()
    conn.set_server_option(1)  # MYSQL_OPTION_MULTI_STATEMENTS_OFF
    conn.ping()
    conn.select_db(FUZZ_DB)
    conn.change_user(FUZZ_USER, FUZZ_PASSWORD, FUZZ_DB)
    conn.stat()
    conn.query("SELECT COUNT(*) FROM t")
    conn.store_result()
    conn.close()


SCENARIOS: dict[str, tuple[str, Callable[[int], None]]] = {
    "pymysql_text": (f"PyMySQL {pymysql.__version__}", pymysql_text),
    "pymysql_multi": (f"PyMySQL {pymysql.__version__}", pymysql_multi),
    "pymysql_infile": (f"PyMySQL {pymysql.__version__}", pymysql_infile),
    "connector_prepared": (f"mysql-connector-python {mysql.connector.__version__} (pure)", connector_prepared),
    "connector_long_data": (f"mysql-connector-python {mysql.connector.__version__} (pure)", connector_long_data),
    "connector_cursor": (f"mysql-connector-python {mysql.connector.__version__} (pure)", connector_cursor),
    "connector_session": (f"mysql-connector-python {mysql.connector.__version__} (pure)", connector_session),
    "mysqlclient_session": (f"mysqlclient {'.'.join(map(str, MySQLdb.version_info[:3]))}", mysqlclient_session),
}


def capture(out: Path) -> list[Path]:
    server = start_server(**SERVER_OPTIONS)
    written = []
    try:
        prepare_server(server)
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp, "proxy.toml")
            config.write_text(render_config(server, users=PROXY_USERS, **proxy_sections(4)))
            with ProxyThread(config).start() as proxy:
                recorder = Recorder((proxy.host, proxy.port))
                try:
                    for name, (driver, scenario) in SCENARIOS.items():
                        scenario(recorder.port)
                        session = parse_session(name, scenario.__doc__.split("\n\n")[0].replace("\n    ", " ").strip(),
                                                driver, recorder.take())
                        written.append(session.save(out))
                        print(f"{name}: {len(session.packets)} packets", file=sys.stderr)
                finally:
                    recorder.close()
        print(f"captured through mysqlpool-proxy against {server.server_version()} on "
              f"{datetime.date.today()}", file=sys.stderr)
    finally:
        server.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=CORPUS_DIR, help=f"where to write (default {CORPUS_DIR})")
    args = parser.parse_args(argv)
    capture(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

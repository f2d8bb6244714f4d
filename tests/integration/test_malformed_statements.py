# Malformed statement commands (issue 10 item 14), raw, after a normal login:
# each gets what MariaDB answers directly (same errno and message; found by
# sending the same bytes to the server), the connection stays usable, and a
# bystander client never sees an error. An execute that ends after its
# iteration count, inside its null bitmap, or inside its parameter types once
# got "1105 internal error" and a closed connection, and when the backend had
# to be pinged first (idle longer than pool.ping_after) no answer at all.
# Siblings: COM_STMT_FETCH / RESET / SEND_LONG_DATA with short payloads,
# COM_STMT_PREPARE of nothing, COM_INIT_DB / COM_FIELD_LIST with odd names.
from __future__ import annotations

import re
import struct
import threading

import pymysql
import pytest

from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER

pytestmark = pytest.mark.integration

EXECUTE, FETCH, RESET, LONG_DATA, PREPARE = 0x17, 0x1C, 0x1A, 0x18, 0x16
INIT_DB, FIELD_LIST = 0x02, 0x04
TWO_PARAMS = "SELECT ?, ?"


def connect(target):
    return pymysql.connect(host=target.host, port=target.port, user=APP_USER, password=APP_PASSWORD,
                           database=APP_DB, autocommit=True, connect_timeout=10, read_timeout=20)


def prepare(conn, sql: str) -> int:
    conn._execute_command(PREPARE, sql)
    stmt_id, columns, params = struct.unpack_from("<IHH", conn._read_packet().get_all_data(), 1)
    for _ in range(params + bool(params) + columns + bool(columns)):  # definitions, each list ending with EOF
        conn._read_packet()
    return stmt_id


def reply(conn) -> tuple:
    """("error", errno, message), or ("ok",) / ("rows", n) once the whole reply is read."""
    try:
        first = conn._read_packet()
    except pymysql.err.MySQLError as exc:
        return ("error", exc.args[0], exc.args[1])
    if first.is_ok_packet():
        return ("ok",)
    # a result set: column definitions, EOF, rows, EOF
    while not conn._read_packet().is_eof_packet():
        pass
    rows = 0
    while not conn._read_packet().is_eof_packet():
        rows += 1
    return ("rows", rows)


def usable(conn) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT 42")
        return cur.fetchone() == (42,)


def execute(stmt_id: int, rest: bytes = b"", flags: int = 0) -> bytes:
    return struct.pack("<IBI", stmt_id, flags, 1) + rest


# (name, statement prepared first, command, body from the statement id, whether a reply comes)
SHAPES = [
    ("execute: the command byte alone", TWO_PARAMS, EXECUTE, lambda sid: b""),
    ("execute: a statement id alone", TWO_PARAMS, EXECUTE, lambda sid: struct.pack("<I", sid)),
    ("execute: ends inside the iteration count", TWO_PARAMS, EXECUTE, lambda sid: execute(sid)[:8]),
    ("execute: ends after the iteration count", TWO_PARAMS, EXECUTE, lambda sid: execute(sid)),
    ("execute: a null bitmap, nothing after", TWO_PARAMS, EXECUTE, lambda sid: execute(sid, b"\x00")),
    ("execute: a partial null bitmap", "SELECT ?,?,?,?,?,?,?,?,?", EXECUTE, lambda sid: execute(sid, b"\x00")),
    ("execute: new params bound, no types", TWO_PARAMS, EXECUTE, lambda sid: execute(sid, b"\x00\x01")),
    ("execute: new params bound, types cut short", TWO_PARAMS, EXECUTE,
     lambda sid: execute(sid, b"\x00\x01\x08\x00\x08")),
    ("execute: a new-params-bound flag of 2", TWO_PARAMS, EXECUTE,
     lambda sid: execute(sid, b"\x00\x02\x08\x00\x08\x00" + struct.pack("<qq", 1, 2))),
    ("execute: types, no values", TWO_PARAMS, EXECUTE, lambda sid: execute(sid, b"\x00\x01\x08\x00\x08\x00")),
    ("execute: no types ever bound", TWO_PARAMS, EXECUTE,
     lambda sid: execute(sid, b"\x00\x00" + struct.pack("<qq", 1, 2))),
    ("execute: no parameters, bytes after", "SELECT 1", EXECUTE, lambda sid: execute(sid, b"\x00\x01\x02")),
    ("execute: well-formed", TWO_PARAMS, EXECUTE,
     lambda sid: execute(sid, b"\x00\x01\x08\x00\x08\x00" + struct.pack("<qq", 1, 2))),
    ("fetch: no cursor", "SELECT 1", FETCH, lambda sid: struct.pack("<II", sid, 1)),
    ("fetch: a statement id alone, no cursor", "SELECT 1", FETCH, lambda sid: struct.pack("<I", sid)),
    ("reset: a statement id alone", "SELECT 1", RESET, lambda sid: struct.pack("<I", sid)),
    ("prepare: nothing", "SELECT 1", PREPARE, lambda sid: b""),
    ("prepare: spaces", "SELECT 1", PREPARE, lambda sid: b"   "),
    ("init_db: a NUL", "SELECT 1", INIT_DB, lambda sid: b"\x00"),
    ("init_db: a name with a NUL in it", "SELECT 1", INIT_DB, lambda sid: APP_DB.encode() + b"\x00x"),
    ("init_db: 300 bytes", "SELECT 1", INIT_DB, lambda sid: b"a" * 300),
    ("field_list: no NUL", "SELECT 1", FIELD_LIST, lambda sid: b"no_such_table"),
    ("field_list: a NUL alone", "SELECT 1", FIELD_LIST, lambda sid: b"\x00"),
]
# An unknown statement is reported as given to mysqlpool-proxy, not to mysqld_stmt_fetch...:
# the same errno. (Elsewhere, statement ids in messages are the proxy's, not the server's.)
SAME_ERRNO_ONLY = {"fetch: the command byte alone", "reset: two bytes"}
SHORT_IDS = [
    ("fetch: the command byte alone", FETCH, b""),
    ("reset: two bytes", RESET, b"\x01"),
]


def send(conn, command: int, body: bytes) -> tuple:
    conn._execute_command(command, body)
    return reply(conn)


def answers(target) -> dict:
    """What each shape gets from `target`, each on a fresh connection that is then used again."""
    out = {}
    for name, sql, command, body in SHAPES:
        conn = connect(target)
        try:
            stmt_id = prepare(conn, sql)
            out[name] = tuple(re.sub(r"\(\d+\)", "(id)", part) if isinstance(part, str) else part
                              for part in send(conn, command, body(stmt_id)))
            assert usable(conn), name
        finally:
            conn.close()
    for name, command, body in SHORT_IDS:
        conn = connect(target)
        try:
            answer = send(conn, command, body)
            out[name] = answer[:2]
            assert usable(conn), name
        finally:
            conn.close()
    return out


class Bystander(threading.Thread):
    """Another client running statements (a prepared one too) all along: it must see no error."""

    def __init__(self, target):
        super().__init__(daemon=True)
        self.target = target
        self.stop = threading.Event()
        self.errors: list[Exception] = []
        self.rounds = 0

    def run(self):
        try:
            conn = connect(self.target)
            stmt_id = prepare(conn, TWO_PARAMS)
            while not self.stop.is_set():
                with conn.cursor() as cur:
                    cur.execute("SELECT %s", (self.rounds,))
                    assert cur.fetchone() == (self.rounds,)
                answer = send(conn, EXECUTE, execute(stmt_id, b"\x00\x01\x08\x00\x08\x00" + struct.pack("<qq", 1, 2)))
                assert answer == ("rows", 1), answer
                self.rounds += 1
            conn.close()
        except Exception as exc:  # reported by the test
            self.errors.append(exc)


@pytest.mark.parametrize("ping_after", [5, 0], ids=["idle backend", "backend pinged first"])
def test_malformed_statement_commands_get_the_servers_answer(proxy_factory, app_server, ping_after):
    proxy = proxy_factory(pool={"max_size": 2, "ping_after": ping_after})
    bystander = Bystander(proxy)
    bystander.start()
    try:
        through_proxy = answers(proxy)
    finally:
        bystander.stop.set()
        bystander.join(30)
    direct = answers(app_server)
    for name in direct:
        if name in SAME_ERRNO_ONLY:
            assert through_proxy[name][:2] == direct[name][:2], name
        else:
            assert through_proxy[name] == direct[name], name
    assert not bystander.errors, bystander.errors
    assert bystander.rounds > 0
    # the server's answers, as found with raw packets against MariaDB (not what the test compares)
    malformed = ("error", 1835, "Malformed communication packet")
    wrong = ("error", 1210, "Incorrect arguments to mysqld_stmt_execute")
    assert through_proxy["execute: a statement id alone"] == malformed
    assert through_proxy["execute: ends after the iteration count"] == wrong
    assert through_proxy["execute: a null bitmap, nothing after"] == wrong
    assert through_proxy["execute: new params bound, types cut short"] == malformed
    assert through_proxy["execute: types, no values"] == wrong
    assert through_proxy["execute: well-formed"] == ("rows", 1)


def test_short_long_data_is_ignored_as_the_server_ignores_it(proxy):
    """MariaDB drops a COM_STMT_SEND_LONG_DATA shorter than its 6-byte header, silently:
    the next execute runs as if it never came (and nothing is pinned for it)."""
    conn = connect(proxy)
    stmt_id = prepare(conn, "SELECT ?")
    for body in (b"", struct.pack("<I", stmt_id), struct.pack("<I", stmt_id) + b"\x00"):
        conn._execute_command(LONG_DATA, body)  # no reply
    conn.ping(reconnect=False)  # answered after the packets before it were handled
    assert proxy.call(lambda: [c.session.pins.reasons() for c in proxy.proxy.clients.values()]) == [[]]
    answer = send(conn, EXECUTE, execute(stmt_id, b"\x00\x01\xfd\x00\x03abc"))
    assert answer == ("rows", 1)
    assert proxy.call(lambda: [c.session.pins.reasons() for c in proxy.proxy.clients.values()]) == [[]]
    assert usable(conn)
    conn.close()

# CLIENT_DEPRECATE_EOF through the proxy, against a real MariaDB, compared with
# a direct connection that negotiated it too:
#
# * byte by byte: a client that logs in with the flag (PyMySQL, then its socket
#   read here with the DEPRECATE_EOF grammar and strict sequence ids) runs one
#   script of text queries (rows, no rows, an error, an error among rows, 1,000
#   rows whose sequence ids wrap, a 17 MB value in two frames), multi-statement
#   queries (with an error and an OK between results), a CALL with result sets,
#   prepared statements (with parameters and columns, executed plain and with a
#   cursor, then fetched; a prepared CALL with an OUT parameter),
#   COM_FIELD_LIST, COM_SET_OPTION, COM_PING, and LOAD DATA LOCAL INFILE after a
#   result set; every packet of every response must be what the server sent
#   directly (statement ids aside);
# * mysql-connector-python's C extension, which negotiates the flag (MySQL 8's
#   libmysqlclient does; its pure-Python implementation, PyMySQL, mysqlclient,
#   the mariadb client, mysql2, mysqlnd and go-sql-driver do not): the proxy
#   sees it negotiated, and the same cases give the same results both ways,
#   compressed too.
from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import sys
from pathlib import Path

import mysql.connector
import pymysql
import pytest
from pymysql.constants import CLIENT

from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER

pytestmark = pytest.mark.integration

T = "eof_"  # table prefix: files share one server
MORE_RESULTS = 0x08
RAW_FLAGS = CLIENT.DEPRECATE_EOF | CLIENT.MULTI_STATEMENTS | CLIENT.PS_MULTI_RESULTS | CLIENT.LOCAL_FILES
CEXT_CASES = Path(__file__).with_name("connector_cext_cases.py")
TIMEOUT = 60.0  # seconds for any read


@pytest.fixture(scope="module")
def tables(app_server):
    db = f"{APP_DB}."
    app_server.execute(f"DROP TABLE IF EXISTS {db}{T}t")
    app_server.execute(f"CREATE TABLE {db}{T}t (id INT PRIMARY KEY, v VARCHAR(100)) DEFAULT CHARSET=utf8mb4")
    app_server.execute(f"INSERT INTO {db}{T}t VALUES (1, 'a'), (2, 'b'), (3, NULL)")
    app_server.execute(f"CREATE TABLE IF NOT EXISTS {db}{T}loaded (line VARCHAR(100))")
    for name, body in (
            ("two", "() BEGIN SELECT 1 AS x; SELECT 'y' AS y, 2 AS z; END"),
            ("out_param", "(IN a INT, OUT b INT) BEGIN SELECT a AS a; SET b = a + 1; END")):
        app_server.execute(f"DROP PROCEDURE IF EXISTS {db}{T}{name}")
        app_server.execute(f"CREATE PROCEDURE {db}{T}{name}{body}")
    return app_server


# -- a client reading the DEPRECATE_EOF framing by hand -------------------------------------------


class RawClient:
    """Logs in with PyMySQL and CLIENT_DEPRECATE_EOF; then sends commands on its socket and reads each
    response as the DEPRECATE_EOF grammar says, checking that sequence ids follow one another."""

    def __init__(self, target):
        self.conn = pymysql.connect(host=target.host, port=target.port, user=APP_USER, password=APP_PASSWORD,
                                    database=APP_DB, client_flag=RAW_FLAGS, autocommit=True, local_infile=True,
                                    charset="utf8mb4", read_timeout=TIMEOUT)
        self.sock: socket.socket = self.conn._sock
        self.sock.settimeout(TIMEOUT)
        self.buf = bytearray()
        self.seq = 0

    def close(self) -> None:
        self.conn.close()

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("the connection closed mid-response")
            self.buf += data
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def packet(self) -> tuple[int, bytes]:
        """(first sequence id, payload) of the next logical packet; its frames' ids checked."""
        first = self.seq
        parts = []
        while True:
            head = self._read(4)
            length = int.from_bytes(head[:3], "little")
            assert head[3] == self.seq, f"packets out of order: sequence id {head[3]} where {self.seq} was due"
            self.seq = (self.seq + 1) & 0xFF
            parts.append(self._read(length))
            if length < 0xFFFFFF:
                return first, b"".join(parts)

    def send(self, payload: bytes) -> None:
        self.seq = 0
        self._send_frames(payload)

    def _send_frames(self, payload: bytes) -> None:
        pos = 0
        while True:
            chunk = payload[pos:pos + 0xFFFFFF]
            self.sock.sendall(len(chunk).to_bytes(3, "little") + bytes((self.seq,)) + chunk)
            self.seq = (self.seq + 1) & 0xFF
            pos += len(chunk)
            if len(chunk) < 0xFFFFFF:
                return

    # -- responses ------------------------------------------------------------------------------

    def result(self, payload: bytes, infile: bytes | None = None) -> list[tuple[int, bytes]]:
        """COM_QUERY / COM_STMT_EXECUTE: OK | ERR | INFILE | column count, definitions, rows, OK (0xFE) or
        ERR; again while MORE_RESULTS."""
        self.send(payload)
        out: list[tuple[int, bytes]] = []
        while True:
            out.append(self.packet())
            p = out[-1][1]
            if p[0] == 0xFF or (p[0] == 0x00 and not _ok_status(p) & MORE_RESULTS):
                return out
            if p[0] == 0x00:
                continue
            if p[0] == 0xFB:
                assert infile is not None, "the server asked for a file"
                if infile:
                    self._send_frames(infile)
                self._send_frames(b"")
                continue
            count = _lenenc(p)
            out += [self.packet() for _ in range(count)]
            while True:
                out.append(self.packet())
                p = out[-1][1]
                if p[0] == 0xFF:
                    return out
                if p[0] == 0xFE and len(p) < 0xFFFFFF:  # the OK that ends the rows (or says a cursor is open)
                    break
            if not _ok_status(p) & MORE_RESULTS:
                return out

    def prepare(self, sql: str) -> list[tuple[int, bytes]]:
        """COM_STMT_PREPARE: ERR | prepare-OK, parameter definitions, column definitions (no EOFs)."""
        self.send(b"\x16" + sql.encode())
        out = [self.packet()]
        p = out[0][1]
        if p[0] == 0x00:
            columns, params = struct.unpack_from("<HH", p, 5)
            out += [self.packet() for _ in range(params + columns)]
        return out

    def fetch(self, stmt_id: int, rows: int) -> list[tuple[int, bytes]]:
        self.send(b"\x1c" + struct.pack("<II", stmt_id, rows))
        out = []
        while True:
            out.append(self.packet())
            p = out[-1][1]
            if p[0] == 0xFF or (p[0] == 0xFE and len(p) < 0xFFFFFF):
                return out

    def field_list(self, table: str) -> list[tuple[int, bytes]]:
        self.send(b"\x04" + table.encode() + b"\x00")
        out = []
        while True:
            out.append(self.packet())
            if out[-1][1][0] in (0xFE, 0xFF):
                return out

    def simple(self, payload: bytes) -> list[tuple[int, bytes]]:
        self.send(payload)
        return [self.packet()]


def _lenenc(p: bytes) -> int:
    first = p[0]
    if first < 0xFB:
        return first
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}[first]
    return int.from_bytes(p[1:1 + size], "little")


def _ok_status(p: bytes) -> int:
    """The status flags of an OK packet (either header)."""
    pos = 1
    for _ in range(2):  # affected rows, last insert id
        first = p[pos]
        pos += 1 + {0xFC: 2, 0xFD: 3, 0xFE: 8}.get(first, 0)
    return int.from_bytes(p[pos:pos + 2], "little")


def _stmt_id(response: list[tuple[int, bytes]]) -> int:
    return struct.unpack_from("<I", response[0][1], 1)[0]


def _without_stmt_id(response: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    (seq, p), rest = response[0], response[1:]
    return [(seq, p[:1] + b"\0\0\0\0" + p[5:]), *rest] if p[0] == 0x00 else response


def execute(stmt_id: int, *longlongs: int | None, cursor: bool = False) -> bytes:
    """A COM_STMT_EXECUTE with LONGLONG parameters (None: NULL)."""
    bitmap = sum(1 << i for i, v in enumerate(longlongs) if v is None).to_bytes((len(longlongs) + 7) // 8, "little")
    values = b"".join(struct.pack("<q", v) for v in longlongs if v is not None)
    types = b"\x08\x00" * len(longlongs)
    return b"\x17" + struct.pack("<IBI", stmt_id, 1 if cursor else 0, 1) + (
        bitmap + b"\x01" + types + values if longlongs else b"")


def run_script(target) -> dict[str, list[tuple[int, bytes]]]:
    """Every response of the script, by name: (first sequence id, payload) per packet."""
    client = RawClient(target)
    out: dict[str, list[tuple[int, bytes]]] = {}
    try:
        q = client.result
        out["truncate"] = q(b"\x03TRUNCATE " + T.encode() + b"loaded")
        out["rows"] = q(f"\x03SELECT id, v FROM {T}t ORDER BY id".encode())
        out["no_rows"] = q(f"\x03SELECT id FROM {T}t WHERE id < 0".encode())
        out["error"] = q(b"\x03SELEC 1")
        out["error_among_rows"] = q(
            f"\x03SELECT id, IF(id < 3, 1, (SELECT v FROM {T}t)) FROM {T}t ORDER BY id".encode())
        out["ids_wrap"] = q(b"\x03SELECT seq, 'x' FROM seq_1_to_1000")
        out["two_frames"] = q(b"\x03SELECT 1, REPEAT('x', 17000000), 2")
        out["multi"] = q(b"\x03SELECT 1; SELECT 2, 3")
        out["multi_ok_between"] = q(f"\x03SELECT 1; UPDATE {T}t SET v = v WHERE id = 1; SELECT 2".encode())
        out["multi_error"] = q(b"\x03SELECT 1; SELEC 2; SELECT 3")
        out["call"] = q(f"\x03CALL {T}two()".encode())
        prepared = client.prepare(f"SELECT id, v FROM {T}t WHERE id > ?")
        out["prepare"] = _without_stmt_id(prepared)
        stmt = _stmt_id(prepared)
        out["execute"] = q(execute(stmt, 0))
        out["execute_no_rows"] = q(execute(stmt, 10))
        out["execute_cursor"] = q(execute(stmt, 0, cursor=True))
        out["fetch_two"] = client.fetch(stmt, 2)
        out["fetch_rest"] = client.fetch(stmt, 100)
        # The error names the statement by the id this client knows it by (ids differ direct and proxied).
        out["fetch_closed"] = [(seq, p.replace(b"(%d)" % stmt, b"(stmt)")) for seq, p in client.fetch(stmt, 1)]
        call = client.prepare(f"CALL {T}out_param(?, ?)")
        out["prepare_call"] = _without_stmt_id(call)
        out["execute_call_out_params"] = q(execute(_stmt_id(call), 7, None))
        out["field_list"] = client.field_list(f"{T}t")
        out["set_option"] = client.simple(b"\x1b\x00\x00")
        out["ping"] = client.simple(b"\x0e")
        out["infile_after_rows"] = q(f"\x03SELECT 1; LOAD DATA LOCAL INFILE 'lines.txt' INTO TABLE {T}loaded".encode(),
                                     infile=b"one\ntwo\nthree\n")
        out["loaded"] = q(f"\x03SELECT line FROM {T}loaded ORDER BY line".encode())
    finally:
        client.close()
    return out


def test_every_response_is_what_the_server_sends_directly(proxy, tables):
    direct = run_script(tables)
    proxied = run_script(proxy)
    assert list(proxied) == list(direct)
    for name in direct:
        assert proxied[name] == direct[name], name
    # What the comparison covered: no EOF anywhere, and the OKs in their place.
    assert not any(p[:1] == b"\xfe" and len(p) == 5 for r in direct.values() for _, p in r)
    assert direct["execute_cursor"][-1][1][0] == 0xFE and _ok_status(direct["execute_cursor"][-1][1]) & 0x40
    assert [p for _, p in direct["loaded"][2:-1]] == [b"\x03one", b"\x05three", b"\x03two"]
    assert len(direct["ids_wrap"]) == 1 + 2 + 1000 + 1


# -- mysql-connector-python's C extension ---------------------------------------------------------


def cext_env() -> dict[str, str]:
    """The environment the C extension loads in: its wheel ships libssl and libcrypto 3.5, which must come
    before the system's older ones (Python's own ssl module would load those first otherwise)."""
    vendor = Path(mysql.connector.__file__).resolve().parents[1] / "vendor"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL", "MARIADB"))}
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(vendor), env.get("LD_LIBRARY_PATH")]))
    return env


def run_cext(target, compress: bool) -> list[dict]:
    url = f"{target.host}:{target.port}"
    result = subprocess.run([sys.executable, str(CEXT_CASES), url, "compress" if compress else "plain"],
                            env=cext_env(), capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        pytest.fail(f"the C extension's cases failed to run ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "compressed"])
def test_connector_c_extension_gets_what_it_gets_directly(proxy, tables, caplog, compress):
    caplog.set_level("DEBUG", logger="mysqlpool.proxy")
    direct = run_cext(tables, compress)
    proxied = run_cext(proxy, compress)
    seen = [int(found, 16) for found in re.findall(r"authenticated \(capabilities 0x([0-9a-f]+)\)", caplog.text)]
    assert seen and all(caps & CLIENT.DEPRECATE_EOF for caps in seen), [hex(c) for c in seen]
    assert all(bool(caps & CLIENT.COMPRESS) == compress for caps in seen)
    assert [c["case"] for c in proxied] == [c["case"] for c in direct]
    for d, p in zip(direct, proxied):
        assert d["ok"], f"case {d['case']} fails directly: {d}"
        assert p == d, d["case"]

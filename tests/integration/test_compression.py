# The compressed protocol (CLIENT_COMPRESS) between real clients and the proxy: mysqlclient
# (libmariadb), mysql-connector (pure Python) and the `mariadb` command-line client with
# compression on get what a direct compressed connection gets: big results, a 20 MiB BLOB
# both ways, prepared statements, multi-statements, LOAD DATA LOCAL, transactions moved between
# backends under transaction pooling. A frame that does not inflate gets the server's 1157
# and costs only its own connection.
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time
import zlib
from contextlib import closing

import mysql.connector
import MySQLdb
import pytest
from pymysql.constants import CLIENT

from mysqlpool_proxy.protocol.compression import FrameDecoder
from mysqlpool_proxy.protocol.framing import encode_packet
from tests.fuzz.wire import RawConnection, native_password
from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER

pytestmark = pytest.mark.integration

T = "compress_"


def mysqlclient(target, **kwargs):
    return MySQLdb.connect(host=target.host, port=target.port, user=APP_USER, password=APP_PASSWORD,
                           database=APP_DB, charset="utf8mb4", autocommit=True, connect_timeout=10,
                           compress=True, **kwargs)


def connector(target):
    return mysql.connector.connect(host=target.host, port=target.port, user=APP_USER, password=APP_PASSWORD,
                                   database=APP_DB, charset="utf8mb4", collation="utf8mb4_general_ci",
                                   autocommit=True, connection_timeout=10, compress=True, use_pure=True)


@pytest.fixture(scope="module")
def tables(app_server):
    app_server.execute(f"CREATE TABLE IF NOT EXISTS appdb.{T}blobs (id INT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB")
    app_server.execute(f"CREATE TABLE IF NOT EXISTS appdb.{T}kv (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB")
    return app_server


WORKLOAD = [
    "SELECT 1 + 1, 'é😀', NULL",
    "SELECT REPEAT('abc', 300000)",  # 900 KB in one row: many frames, well compressed
    "SELECT seq, MD5(seq) FROM seq_1_to_20000",  # 20,000 rows
    "SELECT @@session.autocommit, DATABASE()",
]


def run_mysqlclient(target) -> list:
    with closing(mysqlclient(target)) as conn, conn.cursor() as cur:
        out = []
        for sql in WORKLOAD:
            cur.execute(sql)
            out.append(cur.fetchall())
        return out


def test_mysqlclient_compressed_gets_what_it_gets_directly(proxy, app_server):
    assert run_mysqlclient(proxy) == run_mysqlclient(app_server)


def test_a_20_mib_blob_both_ways_compressed(proxy, tables):
    blob = os.urandom(10 << 20) + bytes(10 << 20)  # half incompressible, half all zeros
    with closing(mysqlclient(proxy)) as conn, conn.cursor() as cur:
        cur.execute(f"REPLACE INTO {T}blobs VALUES (1, %s)", (blob,))
        cur.execute(f"SELECT b FROM {T}blobs WHERE id = 1")
        assert hashlib.sha256(cur.fetchone()[0]).digest() == hashlib.sha256(blob).digest()


def test_multi_statements_and_transactions_moved_between_backends(proxy_factory, tables):
    proxy = proxy_factory(pool={"max_size": 2})
    conns = [mysqlclient(proxy, client_flag=MySQLdb.constants.CLIENT.MULTI_STATEMENTS) for _ in range(6)]
    try:
        for i, conn in enumerate(conns):  # six clients share two backends: each transaction anywhere
            cur = conn.cursor()
            cur.execute("BEGIN")
            cur.execute(f"REPLACE INTO {T}kv VALUES ({i}, REPEAT('v', 1000))")
            cur.execute("COMMIT")
            cur.execute(f"SELECT {i}; SELECT LENGTH(v) FROM {T}kv WHERE id = {i}")
            assert cur.fetchall() == ((i,),)
            assert cur.nextset() and cur.fetchall() == ((1000,),)
            cur.close()
    finally:
        for conn in conns:
            conn.close()


def test_mysql_connector_compressed_prepared_and_text(proxy, app_server):
    def run(target):
        with closing(connector(target)) as conn:
            cur = conn.cursor(prepared=True)
            cur.execute("SELECT ?, ?, REPEAT(?, 5000)", (42, "é😀", "xy"))
            prepared = cur.fetchall()
            cur.close()
            text = conn.cursor()
            text.execute("SELECT seq FROM seq_1_to_5000")
            rows = text.fetchall()
            text.close()
            return prepared, rows
    assert run(proxy) == run(app_server)


def test_the_mariadb_client_with_compress(proxy, app_server, mariadb_cli, tmp_path):
    data = tmp_path / "rows.tsv"
    data.write_text("".join(f"{i}\trow {i}\n" for i in range(1, 3001)))
    sql = (f"DROP TABLE IF EXISTS {T}loaded; CREATE TABLE {T}loaded (id INT PRIMARY KEY, v TEXT); "
           f"LOAD DATA LOCAL INFILE '{data}' INTO TABLE {T}loaded; "
           f"SELECT COUNT(*), SUM(id), MAX(v) FROM {T}loaded; SELECT REPEAT('z', 100000) AS big")

    def run(target):
        return subprocess.run(
            [mariadb_cli, "--compress", "--local-infile=1", "--skip-ssl", "-h", target.host, "-P", str(target.port),
             "-u", APP_USER, f"-p{APP_PASSWORD}", "-D", APP_DB, "--batch", "-e", sql],
            capture_output=True, text=True, timeout=60)
    direct, proxied = run(app_server), run(proxy)
    assert direct.returncode == 0, direct.stderr
    assert proxied.returncode == 0, proxied.stderr
    assert proxied.stdout == direct.stdout and "3000\t4501500\trow 999" in proxied.stdout


def _compressed_login(proxy) -> socket.socket:
    """A login that negotiated compression, to speak frames by hand after it."""
    conn = RawConnection.open(proxy.host, proxy.port)
    conn.login(APP_USER, APP_PASSWORD, APP_DB, CLIENT.COMPRESS | CLIENT.PROTOCOL_41 | CLIENT.PLUGIN_AUTH, 45,
               time.monotonic() + 10, speaks=CLIENT.COMPRESS)
    assert conn.caps & CLIENT.COMPRESS
    return conn.sock


def _read_frames(sock: socket.socket) -> tuple[list[int], bytes]:
    """Frames until the socket closes or goes quiet: their sequence ids and the bytes inside."""
    decoder, seqs, out = FrameDecoder(), [], b""
    sock.settimeout(5)
    while True:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        if not data:
            break
        decoder.feed(data)
        while (payload := decoder.next_payload()) is not None:
            seqs.append(decoder.last_seq)
            out += payload
        if out[-7:-5] == b"\xfe\x00" or out[4:5] == b"\xff":  # (the test's queries end with EOF or fail)
            break
    return seqs, out


def test_frames_by_hand_sequence_ids_continue_from_the_clients(proxy):
    sock = _compressed_login(proxy)
    try:
        query = encode_packet(b"\x03SELECT REPEAT('q', 200) AS a", 0)
        sock.sendall(len(query).to_bytes(3, "little") + b"\x00" + b"\x00\x00\x00" + query)  # stored, seq 0
        seqs, out = _read_frames(sock)
        assert seqs[0] == 1 and seqs == list(range(1, 1 + len(seqs)))
        assert b"q" * 200 in out
    finally:
        sock.close()


def test_a_frame_that_does_not_inflate_gets_1157_and_costs_only_its_connection(proxy):
    bystander = mysqlclient(proxy)
    sock = _compressed_login(proxy)
    try:
        query = encode_packet(b"\x03SELECT 1", 0)
        body = zlib.compress(query * 10)
        sock.sendall(len(body).to_bytes(3, "little") + b"\x00" + (len(query) * 10 - 1).to_bytes(3, "little") + body)
        _, out = _read_frames(sock)
        assert out[4] == 0xFF and int.from_bytes(out[5:7], "little") == 1157
        assert b"Couldn't uncompress communication packet" in out
        assert sock.recv(10) == b""  # and closed
        with bystander.cursor() as cur:
            cur.execute("SELECT 7")
            assert cur.fetchone() == (7,)
    finally:
        sock.close()
        bystander.close()


def test_change_user_with_an_auth_switch_compressed(proxy):
    # As libmariadb does once compressing: every packet inside a frame says sequence id 0, the
    # auth-switch reply too; the proxy must take it as the reply it waits for (a server ignores
    # those ids; the proxy's own check must not refuse them).
    raw = RawConnection.open(proxy.host, proxy.port)
    raw.login(APP_USER, APP_PASSWORD, APP_DB, CLIENT.COMPRESS | CLIENT.PROTOCOL_41 | CLIENT.PLUGIN_AUTH, 45,
              time.monotonic() + 10, speaks=CLIENT.COMPRESS)
    sock = raw.sock
    try:
        sock.sendall(_stored(encode_packet(b"\x03SET @mine = 1", 0), 0))
        assert _read_frames(sock)[1][4] == 0x00
        change = (b"\x11" + APP_USER.encode() + b"\0" + b"\x00" + APP_DB.encode() + b"\0" + (45).to_bytes(2, "little")
                  + b"auth_gssapi_client\0")  # a plugin the proxy does not speak: it switches the client
        sock.sendall(_stored(encode_packet(change, 0), 0))
        _, switch = _read_frames(sock)
        assert switch[4] == 0xFE and switch[5:].startswith(b"mysql_native_password\0")
        scramble = switch[5 + len(b"mysql_native_password\0"):].rstrip(b"\0")
        sock.sendall(_stored(encode_packet(native_password(APP_PASSWORD, scramble), 0), 2))
        _, ok = _read_frames(sock)
        assert ok[4] == 0x00, ok
        sock.sendall(_stored(encode_packet(b"\x03SELECT @mine IS NULL, CURRENT_USER()", 0), 0))
        _, rows = _read_frames(sock)
        assert b"appdb" not in rows and f"{APP_USER}@".encode() in rows and b"\x011" in rows
    finally:
        sock.close()


def _stored(payload: bytes, seq: int) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes((seq,)) + b"\x00\x00\x00" + payload

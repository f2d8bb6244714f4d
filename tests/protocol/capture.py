"""Record golden server responses for the protocol tests (a developer tool).

Usage: python tests/protocol/capture.py HOST PORT  -> rewrites captures.json

Logs in with PyMySQL (CLIENT_SESSION_TRACK on, as the proxy's backends do),
enables the session trackers, then for each scenario sends raw command bytes
and records every byte the server sends until its response is complete,
which is decided by reading with a quiet-period timeout, NOT by the tracker
under test. It does all of it twice, each time on a new connection after the
same setup (which recreates the table): once with the classic framing, as
the proxy's backends speak, and once with CLIENT_DEPRECATE_EOF (PyMySQL
cannot read that framing's result sets, but the setup has none). The JSON
maps scenario name -> {expect, binary, command, reply, reply_deprecate_eof}
in hex. Commit the regenerated file with the MariaDB version in the log.
"""

import json
import struct
import sys
import time
from pathlib import Path

import pymysql
from pymysql.constants import CLIENT

OUT = Path(__file__).with_name("captures.json")

SETUP = [
    "SET SESSION session_track_system_variables='*', session_track_state_change=ON, "
    "session_track_schema=ON, session_track_transaction_info='CHARACTERISTICS'",
    "CREATE DATABASE IF NOT EXISTS capdb",
    "USE capdb",
    "DROP TABLE IF EXISTS t",
    "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(100), b LONGBLOB)",
    "INSERT INTO t (v) VALUES ('a'), ('b'), (NULL)",
    "DROP PROCEDURE IF EXISTS two",
    "CREATE PROCEDURE two() BEGIN SELECT 1 AS x; SELECT 'y' AS y, 2 AS z; END",
    "DROP PROCEDURE IF EXISTS state",
    "CREATE PROCEDURE state() BEGIN SELECT 1 AS a; SET @x = 2; SELECT 2 AS b; END",
    "DROP PROCEDURE IF EXISTS out_param",
    "CREATE PROCEDURE out_param(IN a INT, OUT b INT) BEGIN SELECT a AS a; SET b = a + 1; END",
]


def frame(payload, seq=0):
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


def recv_all(sock, quiet=0.3):
    sock.settimeout(quiet)
    out = bytearray()
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


def query(sql):
    return frame(b"\x03" + sql.encode())


def main(host, port):
    caps = record(host, port, 0)
    for name, reply in record(host, port, CLIENT.DEPRECATE_EOF).items():
        caps[name]["reply_deprecate_eof"] = reply["reply"]
    conn = pymysql.connect(host=host, port=int(port), user="root")
    info = {"server": conn.get_server_info(), "captured": time.strftime("%Y-%m-%d")}
    conn.close()
    OUT.write_text(json.dumps({"info": info, "captures": caps}, indent=1) + "\n")
    print("wrote", OUT)


def record(host, port, flags):
    """Every scenario's command and reply, on a new connection with these extra client flags."""
    conn = pymysql.connect(host=host, port=int(port), user="root",
                           client_flag=CLIENT.SESSION_TRACK | CLIENT.MULTI_STATEMENTS | CLIENT.PS_MULTI_RESULTS | flags,
                           autocommit=True, local_infile=True)
    cur = conn.cursor()
    for sql in SETUP:
        cur.execute(sql)
    sock = conn._sock
    caps = {}

    def cap(name, expect, command, binary=False):
        sock.sendall(command)
        caps[name] = {"expect": expect, "binary": binary, "command": command.hex(), "reply": recv_all(sock).hex()}

    cap("ok_insert", "RESULT", query("INSERT INTO t (v) VALUES ('c')"))
    cap("ok_set_var", "RESULT", query("SET SESSION sql_mode='ANSI'"))
    cap("ok_use", "RESULT", query("USE capdb"))
    cap("ok_begin", "RESULT", query("BEGIN"))
    cap("ok_commit", "RESULT", query("COMMIT"))
    cap("err_syntax", "RESULT", query("SELEC 1"))
    cap("select_rows", "RESULT", query("SELECT id, v FROM t ORDER BY id"))
    cap("select_empty", "RESULT", query("SELECT id FROM t WHERE id < 0"))
    cap("multi_statement", "RESULT", query("SELECT 1; SET @a=1; SELECT 2, 3"))
    cap("multi_statement_err", "RESULT", query("SELECT 1; SELEC 2; SELECT 3"))
    cap("call_procedure", "RESULT", query("CALL two()"))
    cap("infile_request", "RESULT", query("LOAD DATA LOCAL INFILE '/nonexistent.csv' INTO TABLE t (v)"))
    sock.sendall(frame(b"", 2))  # empty file: the server answers OK
    caps["infile_after_empty"] = {"expect": "AFTER_INFILE", "binary": False, "command": frame(b"", 2).hex(),
                                  "reply": recv_all(sock).hex()}
    cap("ping", "SIMPLE", frame(b"\x0e"))
    cap("init_db_ok", "SIMPLE", frame(b"\x02capdb"))
    cap("init_db_err", "SIMPLE", frame(b"\x02no_such_db"))
    cap("set_option", "SIMPLE", frame(b"\x1b\x00\x00"))
    cap("statistics", "STATISTICS", frame(b"\x09"))
    cap("field_list", "FIELD_LIST", frame(b"\x04t\x00"))
    cap("field_list_err", "FIELD_LIST", frame(b"\x04nosuch\x00"))
    cap("prepare_select", "PREPARE", frame(b"\x16SELECT id, v FROM t WHERE id > ?"))
    stmt_id = struct.unpack_from("<I", bytes.fromhex(caps["prepare_select"]["reply"]), 5)[0]
    cap("prepare_no_params", "PREPARE", frame(b"\x16SELECT 1"))
    cap("prepare_insert", "PREPARE", frame(b"\x16INSERT INTO t (v) VALUES (?)"))
    cap("prepare_err", "PREPARE", frame(b"\x16SELEC ?"))
    # COM_STMT_EXECUTE: stmt, flags 0, iteration 1, null bitmap, new-params 1, type LONGLONG, value 0
    execute = b"\x17" + struct.pack("<IBI", stmt_id, 0, 1) + b"\x00\x01" + b"\x08\x00" + struct.pack("<q", 0)
    cap("execute_rows", "RESULT", frame(execute), binary=True)
    cursor = b"\x17" + struct.pack("<IBI", stmt_id, 1, 1) + b"\x00\x01" + b"\x08\x00" + struct.pack("<q", 0)
    cap("execute_cursor", "RESULT", frame(cursor), binary=True)
    cap("fetch_two", "FETCH", frame(b"\x1c" + struct.pack("<II", stmt_id, 2)))
    cap("fetch_rest", "FETCH", frame(b"\x1c" + struct.pack("<II", stmt_id, 100)))
    cap("select_err_in_rows", "RESULT", query("SELECT id, IF(id < 3, 1, (SELECT v FROM t)) FROM t ORDER BY id"))
    cap("call_state_change", "RESULT", query("CALL state()"))  # an EOF with SERVER_SESSION_STATE_CHANGED
    cap("prepare_call", "PREPARE", frame(b"\x16CALL out_param(?, ?)"))
    call_id = struct.unpack_from("<I", bytes.fromhex(caps["prepare_call"]["reply"]), 5)[0]
    # two LONGLONG parameters: 7 and NULL (the OUT one)
    call = b"\x17" + struct.pack("<IBI", call_id, 0, 1) + b"\x02\x01" + b"\x08\x00\x08\x00" + struct.pack("<q", 7)
    cap("execute_call_out_params", "RESULT", frame(call), binary=True)
    cap("stmt_reset", "SIMPLE", frame(b"\x1a" + struct.pack("<I", stmt_id)))
    cap("reset_connection", "SIMPLE", frame(b"\x1f"))
    conn.close()
    return caps


if __name__ == "__main__":
    main(*sys.argv[1:3])

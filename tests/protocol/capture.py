"""Record golden server responses for the protocol tests (a developer tool).

Usage: python tests/protocol/capture.py HOST PORT  -> rewrites captures.json

Logs in with PyMySQL (CLIENT_SESSION_TRACK on, as the proxy's backends do),
enables the session trackers, then for each scenario sends raw command bytes
and records every byte the server sends until its response is complete,
which is decided by reading with a quiet-period timeout, NOT by the tracker
under test. The JSON maps scenario name -> {expect, binary, command, reply}
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
    conn = pymysql.connect(host=host, port=int(port), user="root",
                           client_flag=CLIENT.SESSION_TRACK | CLIENT.MULTI_STATEMENTS,
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
    cap("stmt_reset", "SIMPLE", frame(b"\x1a" + struct.pack("<I", stmt_id)))
    cap("reset_connection", "SIMPLE", frame(b"\x1f"))
    info = {"server": conn.get_server_info(), "captured": time.strftime("%Y-%m-%d")}
    OUT.write_text(json.dumps({"info": info, "captures": caps}, indent=1) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main(*sys.argv[1:3])

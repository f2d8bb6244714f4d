# Cases for mysql-connector-python's C extension (libmysqlclient, which
# negotiates CLIENT_DEPRECATE_EOF), run as a program of its own by
# test_deprecate_eof.py: the extension needs its wheel's libssl ahead of the
# system's (LD_LIBRARY_PATH), which only a new process can have.
#
#   python connector_cext_cases.py HOST:PORT plain|compress
#
# prints one JSON object per case: {"case", "ok", "result", "error"}; results
# hold only what must be the same directly and through the proxy. Each case
# has a connection of its own, so that one that leaves its connection unusable
# (a driver's limit) costs no other.
from __future__ import annotations

import json
import sys

import mysql.connector

USER, PASSWORD, DB = "app", "app-secret", "appdb"  # tests/support/proxy.py's app account
T = "eof_"


def connect(host: str, port: int, compress: bool):
    conn = mysql.connector.connect(host=host, port=port, user=USER, password=PASSWORD, database=DB, use_pure=False,
                                   compress=compress, autocommit=True, charset="utf8mb4",
                                   collation="utf8mb4_general_ci", connection_timeout=30)
    assert type(conn).__name__ == "CMySQLConnection", type(conn)
    return conn


def plain(values) -> list:
    """Rows as JSON can hold them (values as text)."""
    return [[None if v is None else str(v) for v in row] for row in values]


def select_rows(conn):
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, v FROM {T}t ORDER BY id")
        return plain(cur.fetchall())


def no_rows(conn):
    with conn.cursor() as cur:
        cur.execute(f"SELECT id FROM {T}t WHERE id < 0")
        return [cur.column_names, plain(cur.fetchall())]


def types(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT 1 + 1, 'é🙂', NULL, 1.5, CAST('2024-01-02 03:04:05.123456' AS DATETIME(6)), X'00ff'")
        return plain(cur.fetchall())


def many_rows(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT seq, REPEAT('y', seq % 50) FROM seq_1_to_3000")
        rows = cur.fetchall()
        return [len(rows), sum(r[0] for r in rows), rows[-1][1]]


def unbuffered_rows(conn):
    with conn.cursor(buffered=False) as cur:
        cur.execute("SELECT seq FROM seq_1_to_500")
        first = cur.fetchmany(10)
        rest = cur.fetchall()
        return [plain(first), len(rest)]


def big_value(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT 1, REPEAT('x', 17000000), 2")
        (one, big, two), = cur.fetchall()
        return [one, len(big), two]


def error(conn):
    with conn.cursor() as cur:
        cur.execute("SELEC 1")


def error_among_rows(conn):
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, IF(id < 3, 1, (SELECT v FROM {T}t)) FROM {T}t ORDER BY id")
        cur.fetchall()


def then_works(conn):
    """An error, then the connection goes on."""
    with conn.cursor() as cur:
        try:
            cur.execute("SELECT * FROM no_such_table")
        except mysql.connector.Error as exc:
            first = exc.errno
        cur.execute("SELECT 'after'")
        return [first, plain(cur.fetchall())]


def multi_results(conn):
    out = []
    with conn.cursor() as cur:
        cur.execute(f"SELECT 1; UPDATE {T}t SET v = v WHERE id = 1; SELECT 2, 3; SELECT id FROM {T}t WHERE id < 0")
        while True:
            out.append([cur.rowcount, plain(cur.fetchall()) if cur.description else None])
            if not cur.nextset():
                return out


def procedure_out_params(conn):
    with conn.cursor() as cur:
        args = cur.callproc(f"{T}out_param", (7, 0))
        results = [plain(r.fetchall()) for r in cur.stored_results()]
        return [list(args), results]


def procedure_result_sets(conn):
    out = []
    with conn.cursor() as cur:
        cur.execute(f"CALL {T}two()")
        while True:
            out.append(plain(cur.fetchall()) if cur.description else None)
            if not cur.nextset():
                return out


def prepared(conn):
    with conn.cursor(prepared=True) as cur:
        cur.execute(f"SELECT id, v FROM {T}t WHERE id > ? ORDER BY id", (1,))
        some = plain(cur.fetchall())
        cur.execute(f"SELECT id, v FROM {T}t WHERE id > ? ORDER BY id", (10,))
        return [some, plain(cur.fetchall())]


def prepared_types(conn):
    with conn.cursor(prepared=True) as cur:
        cur.execute("SELECT ? + 1, ?, ?, CAST(? AS DATETIME(6))", (41, "é🙂", None, "2024-01-02 03:04:05.5"))
        return plain(cur.fetchall())


def prepared_many_rows(conn):
    with conn.cursor(prepared=True) as cur:
        cur.execute("SELECT seq, 'z' FROM seq_1_to_2000 WHERE seq > ?", (0,))
        rows = cur.fetchall()
        return [len(rows), sum(r[0] for r in rows)]


def prepared_error(conn):
    with conn.cursor(prepared=True) as cur:
        cur.execute(f"SELECT id, IF(id < ?, 1, (SELECT v FROM {T}t)) FROM {T}t ORDER BY id", (3,))
        cur.fetchall()


def prepared_call(conn):
    """A prepared CALL with an OUT parameter: the driver reads the first result set (reading on past it is
    a 2014 in this driver, directly as well)."""
    with conn.cursor(prepared=True) as cur:
        cur.execute(f"CALL {T}out_param(?, ?)", (7, 0))
        return plain(cur.fetchall())


def ping_and_reset(conn):
    conn.ping()
    conn.cmd_reset_connection()
    with conn.cursor() as cur:
        cur.execute("SELECT @@autocommit, DATABASE()")
        return plain(cur.fetchall())


CASES = [select_rows, no_rows, types, many_rows, unbuffered_rows, big_value, error, error_among_rows, then_works,
         multi_results, procedure_out_params, procedure_result_sets, prepared, prepared_types, prepared_many_rows,
         prepared_error, prepared_call, ping_and_reset]


def main(address: str, mode: str) -> None:
    host, port = address.rsplit(":", 1)
    for case in CASES:
        line = {"case": case.__name__, "ok": True, "result": None, "error": None}
        try:
            conn = connect(host, int(port), mode == "compress")
        except mysql.connector.Error as exc:
            line.update(ok=False, error=["connect", exc.errno, exc.msg])
        else:
            try:
                line["result"] = case(conn)
            except mysql.connector.Error as exc:
                line["error"] = [exc.errno, exc.sqlstate, exc.msg]
            finally:
                try:
                    conn.close()
                except mysql.connector.Error:
                    pass
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

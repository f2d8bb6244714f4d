# A tiny example application for docker-compose.yml: a loop of short
# transactions through mysqlpool-proxy with PyMySQL, one persistent connection
# (which the proxy keeps alive across the server's wait_timeout). Each
# successful round touches HEARTBEAT, which the compose healthcheck reads.
"""Example app: transactions through mysqlpool-proxy in a loop."""

from __future__ import annotations

import os
import pathlib
import time

import pymysql

HEARTBEAT = pathlib.Path("/tmp/heartbeat")
INTERVAL = float(os.environ.get("INTERVAL", "1.0"))


def connect() -> pymysql.connections.Connection:
    return pymysql.connect(
        host=os.environ.get("DATABASE_HOST", "proxy"),
        port=int(os.environ.get("DATABASE_PORT", "6033")),
        user=os.environ.get("DATABASE_USER", "app"),
        password=os.environ["DATABASE_PASSWORD"],
        database=os.environ.get("DATABASE_NAME", "appdb"),
        connect_timeout=10, read_timeout=30, write_timeout=30, autocommit=True,
    )


def one_round(conn: pymysql.connections.Connection) -> int:
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS visits (id INT PRIMARY KEY, n BIGINT NOT NULL)")
        cur.execute("BEGIN")
        cur.execute("INSERT INTO visits VALUES (1, 1) ON DUPLICATE KEY UPDATE n = n + 1")
        cur.execute("SELECT n FROM visits WHERE id = 1")
        (count,) = cur.fetchone()
        cur.execute("COMMIT")
    return count


def main() -> None:
    conn = None
    while True:
        try:
            conn = conn or connect()
            count = one_round(conn)
            HEARTBEAT.touch()
            print(f"visits: {count}", flush=True)
        except pymysql.MySQLError as exc:  # the proxy answers 1040 when the pool stays busy: retry
            print(f"database error, retrying: {exc}", flush=True)
            if conn is not None and not conn.open:
                conn = None
        time.sleep(INTERVAL)


if __name__ == "__main__":
    main()

# What the fuzzer runs against, shared by the capture tool and the test:
#
#   prepare_server(server)  the `fuzz` account and its two schemas on a private MariaDB:
#                           fuzzdb (the corpus sessions' tables) and bystanderdb (the
#                           bystanders'). The account may read and write rows and create
#                           temporary tables, nothing more: no DROP, no CREATE, no
#                           SHUTDOWN, RELOAD or SUPER, so no mutated command (a COM_QUERY
#                           turned into COM_DROP_DB 'fuzzdb', a COM_SHUTDOWN) can destroy
#                           the fixture or stop the server, directly or through the proxy.
#   PROXY_USERS             the proxy's users: `fuzz`, and `bystander`, a second proxy user on
#                           the same backend account, so bystanders share the fuzzed sessions'
#                           pool (a backend a fuzzed session spoiled would reach them) while a
#                           fuzzed KILL cannot name them (the proxy lets a user kill only its
#                           own connections).
#   Bystander               a well-behaved client running a fixed workload (PyMySQL text
#                           protocol, or mysql-connector prepared statements), with
#                           transactions whose effects it checks against what it alone did,
#                           and (text protocol) a look at its own session state.
from __future__ import annotations

import random
import threading
import time
import traceback
from contextlib import closing

FUZZ_USER = "fuzz"
FUZZ_PASSWORD = "fuzz-secret"
FUZZ_DB = "fuzzdb"
BYSTANDER_USER = "bystander"
BYSTANDER_PASSWORD = "bystander-secret"
BYSTANDER_DB = "bystanderdb"
READ_TIMEOUT = 15  # seconds a bystander waits for any answer: a stall is an error too

PROXY_USERS = [
    {"name": FUZZ_USER, "password": FUZZ_PASSWORD},
    {"name": BYSTANDER_USER, "password": BYSTANDER_PASSWORD, "backend_user": FUZZ_USER,
     "backend_password": FUZZ_PASSWORD},
]

FUZZ_TABLES = [
    "CREATE TABLE fuzzdb.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(100), n INT, b MEDIUMBLOB, "
    "d DATETIME(6) NULL, f DOUBLE NULL, m DECIMAL(10,2) NULL) ENGINE=InnoDB",
    "INSERT INTO fuzzdb.t (v, n, b, d, f, m) SELECT CONCAT('row', seq), seq, REPEAT('b', seq), "
    "'2024-01-02 03:04:05.123456', seq / 3, seq * 1.25 FROM fuzzdb.seq_1_to_40",
    "CREATE TABLE fuzzdb.loaded (a VARCHAR(20), b INT) ENGINE=InnoDB",
    "CREATE PROCEDURE fuzzdb.two_results(IN x INT) BEGIN SELECT x AS a; SELECT x + 1 AS b, 'y' AS c; END",
]
BYSTANDER_TABLES = [
    "CREATE TABLE bystanderdb.ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, owner INT NOT NULL, "
    "amount INT NOT NULL, KEY (owner)) ENGINE=InnoDB",
    "CREATE TABLE bystanderdb.totals (owner INT PRIMARY KEY, total BIGINT NOT NULL) ENGINE=InnoDB",
]
GRANTS = [
    f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE TEMPORARY TABLES, EXECUTE ON {FUZZ_DB}.* TO {FUZZ_USER}@'%'",
    f"GRANT SELECT, INSERT, UPDATE, DELETE ON {BYSTANDER_DB}.* TO {FUZZ_USER}@'%'",
]

# Server options for the fuzz test's own server: waits on locks end well inside the fuzzer's
# bound on an answer (15 s); so does the wait for the rest of a LOCAL INFILE after a packet out of
# order, which MariaDB ends with a silent close at net_read_timeout; a small max_allowed_packet
# makes an over-large packet cheap to send.
SERVER_OPTIONS = {
    "innodb_lock_wait_timeout": 5,
    "lock_wait_timeout": 10,
    "net_read_timeout": 10,
    "max_allowed_packet": 1024 * 1024,
}


def prepare_server(server) -> None:
    """The account, schemas and tables of the fuzzer, created afresh."""
    for db in (FUZZ_DB, BYSTANDER_DB):
        server.create_database(db)
    with closing(server.connect()) as conn, conn.cursor() as cur:
        for sql in FUZZ_TABLES + BYSTANDER_TABLES:
            cur.execute(sql)
    server.create_user(FUZZ_USER, FUZZ_PASSWORD, grants=None)
    for grant in GRANTS:
        server.execute(grant)


# What a bystander's session must read whatever backend serves it: another client's schema, character
# set, sql_mode or time zone left on a backend would show here.
SESSION_PROBE = ("SELECT DATABASE(), @@character_set_client, @@character_set_connection, @@character_set_results, "
                 "@@collation_connection, @@sql_mode, @@time_zone, @@autocommit")


def bystander_session(server) -> tuple:
    """SESSION_PROBE's row for a bystander (PyMySQL, utf8mb4, autocommit on), from the server's defaults."""
    (sql_mode, time_zone), = server.execute("SELECT @@GLOBAL.sql_mode, @@GLOBAL.time_zone")
    return (BYSTANDER_DB, "utf8mb4", "utf8mb4", "utf8mb4", "utf8mb4_general_ci", sql_mode, time_zone, 1)


def proxy_sections(max_size: int) -> dict:
    return {"pool": {"max_size": max_size}}


# -- bystanders -------------------------------------------------------------------------------


class Bystander(threading.Thread):
    """Runs its workload until stopped; every error or wrong result is recorded, then it goes
    on with a new connection. `owner` keys its own rows in bystanderdb."""

    driver = "?"

    def __init__(self, host: str, port: int, owner: int, seed: int, session: tuple):
        super().__init__(name=f"bystander-{owner}", daemon=True)
        self.host, self.port, self.owner = host, port, owner
        self.session = session  # what SESSION_PROBE must read on each of its connections
        self.rng = random.Random(seed)
        self.errors: list[tuple[float, str]] = []  # (time.monotonic(), what went wrong)
        self.operations = 0
        self.stopping = threading.Event()
        self.committed = 0  # the sum of this owner's committed amounts
        self.conn = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} owner={self.owner} ops={self.operations} errors={len(self.errors)}>"

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                if self.conn is None:
                    self.conn = self.connect()
                    self.start_over()
                self.step()
                self.operations += 1
            except Exception as exc:  # what the test asserts on
                self.errors.append((time.monotonic(), f"{self.driver} bystander {self.owner}, operation "
                                                      f"{self.operations}: {exc!r}\n{traceback.format_exc(limit=4)}"))
                self.drop_connection()
                if len(self.errors) >= 20:
                    return
        self.drop_connection()

    def stop(self) -> None:
        self.stopping.set()
        self.join(READ_TIMEOUT * 2)

    def drop_connection(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # a broken connection is being thrown away
                pass
            self.conn = None

    def check(self, what: str, got, expected) -> None:
        if got != expected:
            raise AssertionError(f"wrong result for {what}: got {got!r}, expected {expected!r}")

    def connect(self):
        raise NotImplementedError

    def start_over(self) -> None:
        """A new connection: learn what is committed for this owner (a statement cut by an error
        may have committed), so the checks go on from the truth."""
        raise NotImplementedError

    def step(self) -> None:
        raise NotImplementedError


class TextBystander(Bystander):
    """PyMySQL, text protocol, autocommit on; explicit transactions."""

    driver = "PyMySQL"

    def connect(self):
        import pymysql
        return pymysql.connect(host=self.host, port=self.port, user=BYSTANDER_USER, password=BYSTANDER_PASSWORD,
                               database=BYSTANDER_DB, autocommit=True, connect_timeout=READ_TIMEOUT,
                               read_timeout=READ_TIMEOUT, write_timeout=READ_TIMEOUT)

    def query(self, sql: str, args=None) -> tuple:
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    def start_over(self) -> None:
        self.query("INSERT IGNORE INTO totals VALUES (%s, 0)", (self.owner,))
        (total, ledger), = self.query("SELECT total, (SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE owner = %s) "
                                      "FROM totals WHERE owner = %s", (self.owner, self.owner))
        self.check("the ledger against its total, on a new connection", int(ledger), int(total))
        self.committed = int(total)

    def step(self) -> None:
        k = self.rng.randrange(1, 1000)
        op = self.rng.randrange(6)
        if op == 5:
            self.check("its session (schema, character set, sql_mode, time zone, autocommit)",
                       self.query(SESSION_PROBE), (self.session,))
        elif op == 0:
            self.check("SELECT expressions", self.query("SELECT %s + 1, CONCAT('x', %s), REPEAT('ab', %s)",
                                                        (k, k, k % 40)), ((k + 1, f"x{k}", "ab" * (k % 40)),))
        elif op == 1:
            self.query("BEGIN")
            self.query("INSERT INTO ledger (owner, amount) VALUES (%s, %s)", (self.owner, k))
            self.query("UPDATE totals SET total = total + %s WHERE owner = %s", (k, self.owner))
            self.query("COMMIT")
            self.committed += k
            self.check_totals()
        elif op == 2:
            self.query("BEGIN")
            self.query("INSERT INTO ledger (owner, amount) VALUES (%s, %s)", (self.owner, k))
            self.query("UPDATE totals SET total = total + %s WHERE owner = %s", (k, self.owner))
            self.query("ROLLBACK")
            self.check_totals()
        elif op == 3:
            self.query("SET @bystander = %s", (k,))
            self.check("a user variable", self.query("SELECT @bystander"), ((k,),))
        else:
            with self.conn.cursor() as cur:
                cur.execute("INSERT INTO ledger (owner, amount) VALUES (%s, 0)", (self.owner,))
                inserted = cur.lastrowid
                cur.execute("SELECT LAST_INSERT_ID(), CONNECTION_ID() = %s", (self.conn.thread_id(),))
                self.check("LAST_INSERT_ID() and CONNECTION_ID()", cur.fetchall(), ((inserted, 1),))

    def check_totals(self) -> None:
        got = self.query("SELECT total, (SELECT SUM(amount) FROM ledger WHERE owner = %s) FROM totals "
                         "WHERE owner = %s", (self.owner, self.owner))
        self.check("the committed total and ledger", tuple((int(a), int(b or 0)) for a, b in got),
                   ((self.committed, self.committed),))


class BinaryBystander(Bystander):
    """mysql-connector-python (pure), prepared=True cursors (binary protocol), autocommit off."""

    driver = "mysql-connector"

    def connect(self):
        import mysql.connector
        conn = mysql.connector.connect(host=self.host, port=self.port, user=BYSTANDER_USER,
                                       password=BYSTANDER_PASSWORD, database=BYSTANDER_DB, use_pure=True,
                                       charset="utf8mb4", collation="utf8mb4_general_ci", autocommit=False,
                                       connection_timeout=READ_TIMEOUT, read_timeout=READ_TIMEOUT,
                                       write_timeout=READ_TIMEOUT)
        self.cur = conn.cursor(prepared=True)
        return conn

    def query(self, sql: str, args=()) -> list:
        self.cur.execute(sql, args)
        return self.cur.fetchall() if self.cur.with_rows else []

    def start_over(self) -> None:
        self.query("INSERT IGNORE INTO totals VALUES (?, 0)", (self.owner,))
        self.conn.commit()
        (total, ledger), = self.query("SELECT total, (SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE owner = ?) "
                                      "FROM totals WHERE owner = ?", (self.owner, self.owner))
        self.conn.commit()
        self.check("the ledger against its total, on a new connection", int(ledger), int(total))
        self.committed = int(total)

    def step(self) -> None:
        k = self.rng.randrange(1, 1000)
        op = self.rng.randrange(3)
        if op == 0:
            got = self.query("SELECT ? + 1, CONCAT(?, 'z'), ?", (k, f"s{k}", None))
            self.conn.commit()
            self.check("prepared SELECT", [tuple(row) for row in got], [(k + 1, f"s{k}z", None)])
        else:
            self.query("INSERT INTO ledger (owner, amount) VALUES (?, ?)", (self.owner, k))
            self.query("UPDATE totals SET total = total + ? WHERE owner = ?", (k, self.owner))
            if op == 1:
                self.conn.commit()
                self.committed += k
            else:
                self.conn.rollback()
            got = self.query("SELECT total, (SELECT SUM(amount) FROM ledger WHERE owner = ?) FROM totals "
                             "WHERE owner = ?", (self.owner, self.owner))
            self.conn.commit()
            self.check("the committed total and ledger (prepared)", [(int(a), int(b or 0)) for a, b in got],
                       [(self.committed, self.committed)])


BYSTANDER_KINDS = (TextBystander, BinaryBystander)

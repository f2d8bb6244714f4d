# The model of the state-isolation test: what one client alone has done, and
# so what it must see. Pure bookkeeping, no I/O except `Oracle.build`, which
# asks a direct MariaDB connection (never the proxy) what each session
# setting reads back as, so that the model predicts the server's exact
# spelling (canonical sql_mode, FROM_UNIXTIME(0) per time zone, collations).
#
# Per client: session variables, schema, character set and collation,
# user variables (value, type, collation), LAST_INSERT_ID(), its temporary
# tables and their rows, its rows in appdb.model_rows (committed and those
# of its open transaction), its binary prepared statements (with the state
# they were prepared in, which is what the server resolves them against).
# `World` holds what is committed for every owner, including clients that
# are gone, which is all any other client may ever see of them.
from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

SCHEMAS = ("appdb", "model_db1", "model_db2", "model_db3")
ROWS_TABLE = "appdb.model_rows"
KV_TABLE = "model_kv"  # one in every schema; its row 1 names the schema
SQL_MODES = (
    "", "ANSI_QUOTES", "PIPES_AS_CONCAT", "NO_BACKSLASH_ESCAPES", "TRADITIONAL", "ANSI",
    "STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION", "PIPES_AS_CONCAT,NO_BACKSLASH_ESCAPES",
)
TIME_ZONES = ("SYSTEM", "+00:00", "+05:30", "-03:00")
NAMES = (
    ("utf8mb4", None), ("utf8mb4", "utf8mb4_unicode_ci"), ("utf8mb4", "utf8mb4_bin"),
    ("latin1", None), ("latin1", "latin1_bin"), ("latin1", "latin1_general_ci"),
)
COLLATIONS = ("utf8mb4_general_ci", "utf8mb4_unicode_ci", "utf8mb4_bin", "latin1_swedish_ci", "latin1_bin",
              "latin1_general_ci")
RESULTS_CHARSETS = (None, "latin1", "utf8mb4")
ISOLATIONS = ("READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ")  # SERIALIZABLE would make reads lock
GROUP_CONCAT_MAX_LEN = (4, 1024, 65536)
MAX_STATEMENT_TIME = (0, 10, 25.5)
DIV_PRECISION = (0, 4, 8)
USER_VARS = ("mv_a", "mv_b", "mv_c", "mv_d")
TEMP_TABLES = ("tmp_a", "tmp_b", "tmp_c")
PY_CODEC = {"utf8mb4": "utf-8", "latin1": "latin-1", "binary": None}


class Oracle:
    """How the server itself reads back each setting the generator may make (built once, directly)."""

    def __init__(self) -> None:
        self.sql_mode: dict[str, str] = {}  # value set -> @@sql_mode as read back
        self.mode_effects: dict[str, tuple[Any, Any]] = {}  # canonical -> ('a' || 'b', CHAR_LENGTH('a\b'))
        self.epoch: dict[str, datetime.datetime] = {}  # time zone -> FROM_UNIXTIME(0)
        self.names: dict[tuple[str, str | None], tuple[str, str, str]] = {}  # SET NAMES -> (client, results, coll)
        self.collation_charset: dict[str, str] = {}
        self.ci: dict[str, int] = {}  # collation -> 'a' = 'A'
        self.third: dict[int, Decimal] = {}  # div_precision_increment -> 1/3
        self.isolation: dict[str, str] = {}  # ISOLATION LEVEL words -> @@tx_isolation
        self.kv_collation = ""
        self.initial: dict[tuple[str, str], dict[str, Any]] = {}  # (driver, charset) -> fresh session readings

    @classmethod
    def build(cls, root_conn) -> Oracle:
        self = cls()
        with root_conn.cursor() as cur:
            for mode in SQL_MODES:
                cur.execute(f"SET SESSION sql_mode = '{mode}'")
                cur.execute("SELECT @@session.sql_mode, 'a' || 'b', CHAR_LENGTH('a\\b')")
                canonical, pipes, backslash = cur.fetchone()
                self.sql_mode[mode] = canonical
                self.mode_effects[canonical] = (pipes, backslash)
            cur.execute("SET SESSION sql_mode = DEFAULT")  # the default too: fresh sessions start with it
            cur.execute("SELECT @@session.sql_mode, 'a' || 'b', CHAR_LENGTH('a\\b')")
            canonical, pipes, backslash = cur.fetchone()
            self.mode_effects[canonical] = (pipes, backslash)
            for tz in TIME_ZONES:
                cur.execute(f"SET time_zone = '{tz}'")
                cur.execute("SELECT FROM_UNIXTIME(0)")
                self.epoch[tz] = cur.fetchone()[0]
            cur.execute("SET time_zone = DEFAULT")
            for cs, coll in NAMES:
                cur.execute(f"SET NAMES {cs}" + (f" COLLATE {coll}" if coll else ""))
                cur.execute("SELECT @@character_set_client, @@character_set_results, @@collation_connection")
                self.names[(cs, coll)] = tuple(cur.fetchone())
            for coll in COLLATIONS:
                cur.execute(f"SET collation_connection = '{coll}'")
                cur.execute("SELECT @@character_set_connection, 'a' = 'A'")
                self.collation_charset[coll], self.ci[coll] = cur.fetchone()
            cur.execute("SET NAMES utf8mb4")
            for d in DIV_PRECISION:
                cur.execute(f"SET div_precision_increment = {d}")
                cur.execute("SELECT 1/3")
                self.third[d] = cur.fetchone()[0]
            cur.execute("SET div_precision_increment = DEFAULT")
            for level in ISOLATIONS:
                cur.execute(f"SET SESSION TRANSACTION ISOLATION LEVEL {level}")
                cur.execute("SELECT @@session.tx_isolation")
                self.isolation[level] = cur.fetchone()[0]
            cur.execute(f"SELECT COLLATION(tag) FROM appdb.{KV_TABLE} WHERE id = 1")
            self.kv_collation = cur.fetchone()[0]
        return self

    def add_initial(self, driver: str, charset: str, conn_query) -> None:
        """The readings of a fresh session opened directly with this driver and charset."""
        row = conn_query("SELECT @@session.sql_mode, @@session.time_zone, @@character_set_client, "
                         "@@character_set_results, @@collation_connection, @@session.autocommit, "
                         "@@session.group_concat_max_len, @@session.tx_isolation, @@session.max_statement_time, "
                         "@@session.div_precision_increment")[0]
        keys = ("sql_mode", "time_zone", "cs_client", "cs_results", "collation", "autocommit", "gcml", "isolation",
                "mst", "dpi")
        state = dict(zip(keys, row))
        if state["sql_mode"] not in self.mode_effects:
            raise AssertionError(f"the default sql_mode {state['sql_mode']!r} is not one the oracle knows")
        self.initial[(driver, charset)] = state


@dataclass
class UVal:
    """A user variable's value: kind int/dec/float/str/bin; for str, its text and collation."""

    kind: str
    value: Any
    collation: str = "binary"

    def charset(self, oracle: Oracle) -> str:
        return "binary" if self.kind == "bin" else oracle.collation_charset[self.collation]

    def hex(self, oracle: Oracle) -> str:
        if self.kind == "bin":
            return self.value.hex().upper()
        return self.value.encode(PY_CODEC[self.charset(oracle)]).hex().upper()

    def ascii(self) -> bool:
        return self.kind != "str" or self.value.isascii()


@dataclass
class Data:
    """What a client's transaction can roll back: its own rows and its temporary tables' rows."""

    rows: dict[int, str] = field(default_factory=dict)  # id -> v, in appdb.model_rows
    temps: dict[str, list[int]] = field(default_factory=dict)  # temporary table -> its values


@dataclass
class Prepared:
    """A client's binary prepared statement and the state it was prepared in."""

    template: str
    sql: str  # the very str object the connector cursor was prepared with (it compares by identity)
    cursor: Any
    schema: str | None
    sql_mode: str
    collation: str


class ClientModel:
    """Everything one client has done that it may later observe."""

    def __init__(self, slot: int, owner: int, driver: str, charset: str, schema: str | None, oracle: Oracle):
        self.slot, self.owner, self.driver, self.charset = slot, owner, driver, charset
        init = oracle.initial[(driver, charset)]
        self.schema = schema
        self.sql_mode = init["sql_mode"]
        self.time_zone = init["time_zone"]
        self.cs_client, self.cs_results, self.collation = init["cs_client"], init["cs_results"], init["collation"]
        self.autocommit = bool(init["autocommit"])
        self.gcml = init["gcml"]
        self.isolation = init["isolation"]
        self.mst = float(init["mst"])
        self.dpi = init["dpi"]
        self.user_vars: dict[str, UVal] = {}
        self.last_insert_id = 0
        self.explicit_txn = False
        self.data = Data()
        self.snapshot: Data | None = None  # the committed state while a transaction is open
        self.prepared: dict[int, Prepared] = {}
        self.next_handle = 1
        self.log: list[str] = []  # every statement this client sent, for the failure report

    # -- transactions ------------------------------------------------------------------

    def in_txn(self) -> bool:
        """Its writes are pending (BEGIN, or autocommit off): others must not see them yet."""
        return self.explicit_txn or not self.autocommit

    def holder(self) -> bool:
        """Holds a backend (or may at any statement): a transaction, autocommit off, a temporary table."""
        return self.in_txn() or bool(self.data.temps)

    def txn_started(self) -> None:
        if self.snapshot is None:
            self.snapshot = copy.deepcopy(self.data)

    def committed(self, world: World) -> None:
        world.committed[self.owner] = dict(self.data.rows)
        self.snapshot = copy.deepcopy(self.data) if self.in_txn() else None

    def rolled_back(self) -> None:
        if self.snapshot is not None:
            self.data = copy.deepcopy(self.snapshot)
        self.snapshot = copy.deepcopy(self.data) if self.in_txn() else None

    def wrote(self, world: World) -> None:
        """After a write: outside a transaction it is committed at once."""
        if not self.in_txn():
            world.committed[self.owner] = dict(self.data.rows)

    def has_pending(self, world: World) -> bool:
        return self.in_txn() and self.data.rows != world.committed.get(self.owner, {})

    # -- what the check query must return ---------------------------------------------

    def check_columns(self, oracle: Oracle) -> list[tuple[str, str, Any]]:
        """(name, SQL expression, expected value) of the one-row state check."""
        pipes, backslash = oracle.mode_effects[self.sql_mode]
        liv = self.data.rows.get(self.last_insert_id)
        cols = [
            ("sql_mode", "@@session.sql_mode", self.sql_mode),
            ("'a' || 'b'", "'a' || 'b'", pipes),
            ("CHAR_LENGTH('a\\b')", "CHAR_LENGTH('a\\b')", backslash),
            ("time_zone", "@@session.time_zone", self.time_zone),
            ("FROM_UNIXTIME(0)", "FROM_UNIXTIME(0)", oracle.epoch[self.time_zone]),
            ("DATABASE()", "DATABASE()", self.schema),
        ]
        if self.schema is not None:
            cols.append(("kv tag", f"(SELECT tag FROM {KV_TABLE} WHERE id = 1)", self.schema))
        cols += [
            ("character_set_client", "@@character_set_client", self.cs_client),
            ("character_set_results", "@@character_set_results", self.cs_results),
            ("collation_connection", "@@collation_connection", self.collation),
            ("'a' = 'A'", "'a' = 'A'", oracle.ci[self.collation]),
            ("autocommit", "@@session.autocommit", int(self.autocommit)),
            ("group_concat_max_len", "@@session.group_concat_max_len", self.gcml),
            ("tx_isolation", "@@session.tx_isolation", self.isolation),
            ("max_statement_time", "@@session.max_statement_time", self.mst),
            ("div_precision_increment", "@@session.div_precision_increment", self.dpi),
            ("1/3", "1/3", oracle.third[self.dpi]),
        ]
        if self.autocommit:  # with autocommit off, whether a transaction is open depends on what ran
            cols.append(("in_transaction", "@@in_transaction", int(self.explicit_txn)))
        cols += [
            ("LAST_INSERT_ID()", "LAST_INSERT_ID()", self.last_insert_id),
            ("row at LAST_INSERT_ID()", f"(SELECT v FROM {ROWS_TABLE} WHERE id = LAST_INSERT_ID())", liv),
        ]
        for name in USER_VARS:
            val = self.user_vars.get(name)
            if val is None:
                cols.append((f"@{name}", f"@{name}", None))
                continue
            if val.ascii():
                cols.append((f"@{name}", f"@{name}", val.value))
            if val.kind in ("str", "bin"):
                cols.append((f"COLLATION(@{name})", f"COLLATION(@{name})", val.collation))
                cols.append((f"HEX(@{name})", f"HEX(@{name})", val.hex(oracle)))
        return cols

    def own_rows(self) -> list[tuple[int, str]]:
        return sorted(self.data.rows.items())

    def temp_rows(self) -> list[tuple[str, int]]:
        return sorted((name, n) for name, values in self.data.temps.items() for n in values)


class World:
    """What is committed, per owner (a client incarnation), dead or alive."""

    def __init__(self) -> None:
        self.committed: dict[int, dict[int, str]] = {}

    def summary(self) -> list[tuple[int, int, int]]:
        """(owner, rows, sum of CRC32(v)) for every owner with rows, as the global check reads them."""
        import zlib
        out = []
        for owner in sorted(self.committed):
            rows = self.committed[owner]
            if rows:
                out.append((owner, len(rows), sum(zlib.crc32(v.encode()) for v in rows.values())))
        return out


# -- binary prepared statements: SQL, parameters, expected rows ---------------------------------
#
# What the server resolves when the statement is PREPAREd stays with the
# statement: unqualified tables and DATABASE() (the schema then), parsing
# (sql_mode then: PIPES_AS_CONCAT) and literals (the collation then).
# What is read when it is EXECUTEd is the session's current state: system
# variables, user variables, LAST_INSERT_ID(), the data.

SKIP = object()  # an expected value not compared (a non-ASCII string the driver may not decode)

PS_TEMPLATES = {
    "add": "SELECT ? + 1",
    "kv": f"SELECT tag, ? FROM {KV_TABLE} WHERE id = 1",
    "pipes": "SELECT ? || 'x'",
    "collation": "SELECT COLLATION('x'), 'a' = 'A', ?",
    "session": "SELECT @@session.time_zone, @@session.sql_mode, 1/3, FROM_UNIXTIME(?)",
    "database": "SELECT DATABASE(), ?",
    "uservars": "SELECT @mv_a, @mv_b, @mv_c, ?",
    "count": f"SELECT COUNT(*) FROM {ROWS_TABLE} WHERE owner = ?",
    "insert": f"INSERT INTO {ROWS_TABLE} (owner, v) VALUES (?, ?)",
    "last_insert_id": "SELECT LAST_INSERT_ID(), ?",
}


def ps_expected(ps: Prepared, c: ClientModel, oracle: Oracle, params: tuple) -> list[tuple] | None:
    """Rows the execution must return (None for a statement without a result set)."""
    t = ps.template
    if t == "add":
        return [(params[0] + 1,)]
    if t == "kv":
        return [(ps.schema, params[0])]
    if t == "pipes":
        return [(params[0] + "x",)] if "PIPES_AS_CONCAT" in ps.sql_mode.split(",") else [(0,)]
    if t == "collation":
        return [(ps.collation, oracle.ci[ps.collation], params[0])]
    if t == "session":
        return [(c.time_zone, c.sql_mode, oracle.third[c.dpi], oracle.epoch[c.time_zone])]
    if t == "database":
        return [(ps.schema, params[0])]
    if t == "uservars":
        values = []
        for name in ("mv_a", "mv_b", "mv_c"):
            val = c.user_vars.get(name)
            values.append(None if val is None else val.value if val.ascii() else SKIP)
        return [(*values, params[0])]
    if t == "count":
        return [(len(c.data.rows),)]
    if t == "insert":
        return None
    if t == "last_insert_id":
        return [(c.last_insert_id, params[0])]
    raise KeyError(t)

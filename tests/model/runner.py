# The seeded generator of the state-isolation model test, and the checks.
#
# One thread drives every client, one step at a time: a step picks a client
# (random.Random(seed), nothing else decides), has it do one thing, updates
# that client's model, then checks the client as the client itself would
# see things (its statement may run on any backend, which is the point),
# and asks the proxy why it pins that client: only its transaction and
# temporary tables may (README's table; user variables, prepared statements
# and everything else follow it instead). Every `check_all_every` steps
# every client is checked, and one client reads what is committed for
# every owner (dead or alive).
#
# Clients that may hold a backend (an open transaction, autocommit off, a
# temporary table) are capped at `max_holders`, fewer than the pool's
# backends, so the others always have one to share. Transactions only
# insert rows and update or delete their own rows by primary key, and reads
# never lock, so no client ever waits for another's locks: the single
# driving thread cannot deadlock.
#
# Any difference from the model raises ModelFailure with the step, the
# client, what differed, the last steps and the client's own statements.
from __future__ import annotations

import collections
import copy
import random
from collections.abc import Callable
from decimal import Decimal

from tests.model.clients import DRIVERS, SqlError, matches, rows_match
from tests.model.model import (
    COLLATIONS,
    DIV_PRECISION,
    GROUP_CONCAT_MAX_LEN,
    ISOLATIONS,
    KV_TABLE,
    MAX_STATEMENT_TIME,
    NAMES,
    PS_TEMPLATES,
    RESULTS_CHARSETS,
    ROWS_TABLE,
    SCHEMAS,
    SQL_MODES,
    TEMP_TABLES,
    TIME_ZONES,
    USER_VARS,
    ClientModel,
    Oracle,
    Prepared,
    UVal,
    World,
    ps_expected,
)

ER_NO_SUCH_TABLE = 1146
ER_UNKNOWN_STMT_HANDLER = 1243


class ModelFailure(AssertionError):
    def __init__(self, step: int, slot: int, message: str, report: str):
        super().__init__(f"step {step}, client {slot}: {message}\n{report}")
        self.step, self.slot, self.message, self.report = step, slot, message, report


class Runner:
    def __init__(self, *, seed: int, clients: int, oracle: Oracle, host: str, port: int, user: str, password: str,
                 max_holders: int = 3, check_all_every: int = 97, connector_every: int = 4,
                 inspect: Callable[[int], str] | None = None, pins: Callable[[int], list[str] | None] | None = None):
        self.rng = random.Random(seed)
        self.seed = seed
        self.n = clients
        self.oracle = oracle
        self.addr = (host, port, user, password)
        self.max_holders = max_holders
        self.check_all_every = check_all_every
        self.connector_every = connector_every
        self.inspect = inspect  # proxy's view of a client, for the failure report
        self.pins = pins  # proxy's pin reasons of a client (None: not known)
        self.world = World()
        self.models: list[ClientModel] = []
        self.conns: list = []
        self.next_owner = 1
        self.counter = 0
        self.step = -1
        self.history: collections.deque[str] = collections.deque(maxlen=80)
        self.stats: collections.Counter = collections.Counter()

    # -- set up ---------------------------------------------------------------------

    def start(self) -> None:
        for slot in range(self.n):
            self.models.append(None)
            self.conns.append(None)
            self._connect(slot)

    def _driver_for(self, slot: int) -> str:
        return "connector" if slot % self.connector_every == self.connector_every - 1 else "pymysql"

    def _connect(self, slot: int) -> None:
        rng = self.rng
        driver = self._driver_for(slot)
        charset = rng.choice(("utf8mb4", "utf8mb4", "latin1"))
        schema = None if rng.random() < 0.05 else rng.choice(SCHEMAS)
        owner = self.next_owner
        self.next_owner += 1
        model = ClientModel(slot, owner, driver, charset, schema, self.oracle)
        self.models[slot] = model
        self._note(model, f"CONNECT driver={driver} charset={charset} database={schema} (owner {owner})")
        try:
            self.conns[slot] = DRIVERS[driver](*self.addr, schema, charset)
        except SqlError as exc:
            self.fail(slot, f"connecting failed: {exc}")
        self.stats["connects"] += 1

    def close(self) -> None:
        for conn in self.conns:
            if conn is not None:
                try:
                    conn.close(abrupt=False)
                except Exception:  # best effort at teardown
                    pass

    # -- reporting -------------------------------------------------------------------

    def _note(self, model: ClientModel, text: str) -> None:
        line = f"step {self.step} client {model.slot} (owner {model.owner}, {model.driver}): {text}"
        self.history.append(line)
        model.log.append(f"step {self.step}: {text}")
        if len(model.log) > 400:
            del model.log[:100]

    def fail(self, slot: int, message: str) -> None:
        model = self.models[slot]
        parts = ["(check: session state) is one SELECT of the session's variables, DATABASE(), LAST_INSERT_ID() "
                 "and the row it names, and the user variables; (check: own rows) reads the client's rows in "
                 f"{ROWS_TABLE}; (check: temporary tables) reads its temporary tables.",
                 "last steps (all clients):", *("  " + h for h in self.history)]
        if model is not None:
            parts += [f"client {slot}'s statements since it connected (owner {model.owner}):",
                      *("  " + line for line in model.log[-150:])]
            parts.append(f"client {slot}'s model: schema={model.schema} sql_mode={model.sql_mode!r} "
                         f"time_zone={model.time_zone} names=({model.cs_client}, {model.cs_results}, "
                         f"{model.collation}) autocommit={model.autocommit} explicit_txn={model.explicit_txn} "
                         f"last_insert_id={model.last_insert_id} user_vars={model.user_vars} "
                         f"temps={model.data.temps} rows={len(model.data.rows)}")
            conn = self.conns[slot]
            if self.inspect is not None and conn is not None:
                try:
                    parts.append(f"proxy's view of client {slot}: {self.inspect(conn.connection_id)}")
                except Exception as exc:  # diagnostics only
                    parts.append(f"proxy's view of client {slot}: unavailable ({exc!r})")
        raise ModelFailure(self.step, slot, message, "\n".join(parts))

    # -- running statements ----------------------------------------------------------

    def sql(self, slot: int, sql: str, *, expect_errno: int | None = None, label: str | None = None):
        model, conn = self.models[slot], self.conns[slot]
        self._note(model, label or sql)
        self.stats["statements"] += 1
        try:
            result = conn.query(sql)
        except SqlError as exc:
            if expect_errno is not None and exc.errno == expect_errno:
                return None
            self.fail(slot, f"{sql!r} failed: {exc}")
        if expect_errno is not None:
            self.fail(slot, f"{sql!r} succeeded ({result.rows!r}), expected error {expect_errno}")
        return result

    def _uid(self) -> int:
        self.counter += 1
        return self.counter

    # -- the loop --------------------------------------------------------------------

    def run(self, steps: int, on_step: Callable[[int], None] | None = None) -> None:
        for step in range(steps):
            self.step = step
            slot = self._pick_slot()
            self._act(slot)
            if self.conns[slot] is not None:
                self.check(slot)
                self._check_pins(slot)
            if step % self.check_all_every == self.check_all_every - 1:
                self.check_everyone()
            if on_step is not None:
                on_step(step)
        self.step = steps
        self.check_everyone()

    def holders(self) -> int:
        return sum(1 for m in self.models if m.holder())

    def _pick_slot(self) -> int:
        rng = self.rng
        holding = [m.slot for m in self.models if m.holder()]
        if holding and rng.random() < 0.25:
            return rng.choice(holding)
        return rng.randrange(self.n)

    def _act(self, slot: int) -> None:
        m = self.models[slot]
        rng = self.rng
        can_hold = m.holder() or self.holders() < self.max_holders
        crowded = self.holders() >= self.max_holders
        others_temps = any(o.data.temps for o in self.models if o is not m)
        w = {
            "set_var": 10, "set_isolation": 0 if m.in_txn() else 3, "set_autocommit": 0 if m.explicit_txn else 3,
            "use": 5, "set_names": 5, "charset_var": 2, "user_var": 12,
            "begin": 5 if can_hold else 0,
            "end": (15 + (25 if crowded else 0)) if m.in_txn() else 0,
            "insert": 10, "update": 4 if m.data.rows else 0, "delete": 3 if m.data.rows else 0,
            "temp_create": 3 if can_hold and not m.in_txn() and len(m.data.temps) < len(TEMP_TABLES) else 0,
            "temp_insert": 8 if m.data.temps else 0,
            "temp_drop": (6 + (25 if crowded else 0)) if m.data.temps and not m.in_txn() else 0,
            "set_insert_id": 2, "probe_temp": 3 if others_temps else 0,
            "peek": 3 if self._can_peek(m) and any(o.has_pending(self.world) for o in self.models) else 0,
            "disconnect": 1 + (3 if m.in_txn() else 0),
        }
        if m.driver == "connector":
            w["ps_prepare"] = 8 if len(m.prepared) < 5 else 0
            w["ps_execute"] = 30 if m.prepared else 0
            w["ps_close"] = 3 if m.prepared else 0
        else:  # raw binary protocol through PyMySQL
            w["ps_prepare"] = 3 if len(m.prepared) < 4 else 0
            w["ps_execute"] = 10 if m.prepared else 0
            w["ps_close"] = 1 if m.prepared else 0
        if not m.autocommit and not m.explicit_txn:  # autocommit off holds a backend too: turn it back on
            w["set_autocommit"] += 3 + (25 if crowded else 0)
        kinds = sorted(k for k, v in w.items() if v > 0)
        kind = rng.choices(kinds, weights=[w[k] for k in kinds])[0]
        self.stats[kind] += 1
        getattr(self, "act_" + kind)(slot)

    # -- actions -----------------------------------------------------------------------

    def act_set_var(self, slot: int) -> None:
        m, rng = self.models[slot], self.rng
        names = rng.sample(("sql_mode", "time_zone", "group_concat_max_len", "max_statement_time",
                            "div_precision_increment"), rng.choice((1, 1, 1, 2, 3)))
        init = self.oracle.initial[(m.driver, m.charset)]
        parts, updates = [], []
        for name in names:
            default = rng.random() < 0.1
            if name == "sql_mode":
                value = rng.choice(SQL_MODES)
                literal, reading = f"'{value}'", self.oracle.sql_mode[value]
                attr = "sql_mode"
                if default:
                    reading = init["sql_mode"]
            elif name == "time_zone":
                value = rng.choice(TIME_ZONES)
                literal, reading, attr = f"'{value}'", value, "time_zone"
                if default:
                    reading = init["time_zone"]
            elif name == "group_concat_max_len":
                value = rng.choice(GROUP_CONCAT_MAX_LEN)
                literal, reading, attr = str(value), value, "gcml"
                if default:
                    reading = init["gcml"]
            elif name == "max_statement_time":
                value = rng.choice(MAX_STATEMENT_TIME)
                literal, reading, attr = str(value), float(value), "mst"
                if default:
                    reading = float(init["mst"])
            else:
                value = rng.choice(DIV_PRECISION)
                literal, reading, attr = str(value), value, "dpi"
                if default:
                    reading = init["dpi"]
            if default:
                literal = "DEFAULT"
            form = rng.choice(("SESSION {n} = {v}", "@@session.{n} = {v}", "{n} = {v}", "LOCAL {n} = {v}",
                               "@@{n} = {v}", "@@SESSION.{N} = {v}"))
            parts.append(form.format(n=name, N=name.upper(), v=literal))
            updates.append((attr, reading))
        uv = None
        if rng.random() < 0.1:  # a user variable in the same SET
            uv = (rng.choice(USER_VARS), rng.randrange(-1000, 1000))
            parts.insert(rng.randrange(len(parts) + 1), f"@{uv[0]} = {uv[1]}")
        self.sql(slot, "SET " + ", ".join(parts))
        for attr, reading in updates:
            setattr(m, attr, reading)
        if uv is not None:
            m.user_vars[uv[0]] = UVal("int", uv[1])

    def act_set_isolation(self, slot: int) -> None:
        m, rng = self.models[slot], self.rng
        level = rng.choice(ISOLATIONS)
        reading = self.oracle.isolation[level]
        if rng.random() < 0.3:
            self.sql(slot, f"SET SESSION tx_isolation = '{reading}'")
        else:
            self.sql(slot, f"SET SESSION TRANSACTION ISOLATION LEVEL {level}")
        m.isolation = reading

    def act_set_autocommit(self, slot: int) -> None:
        m, rng = self.models[slot], self.rng
        want = not m.autocommit if rng.random() < 0.8 else m.autocommit
        if want is False and not m.holder() and self.holders() >= self.max_holders:
            want = True
        value = rng.choice(("1", "ON", "true")) if want else rng.choice(("0", "OFF", "false"))
        form = rng.choice(("SET autocommit = {v}", "SET @@session.autocommit = {v}", "SET SESSION autocommit = {v}"))
        self.sql(slot, form.format(v=value))
        if want and not m.autocommit:  # switching autocommit on commits the open transaction
            m.autocommit = True
            m.committed(self.world)
        elif not want and m.autocommit:
            m.autocommit = False
            m.txn_started()

    def act_use(self, slot: int) -> None:
        m, rng = self.models[slot], self.rng
        schema = rng.choice(SCHEMAS)
        how = rng.random()
        if how < 0.4:
            self._note(m, f"COM_INIT_DB {schema}")
            self.stats["statements"] += 1
            try:
                self.conns[slot].init_db(schema)
            except SqlError as exc:
                self.fail(slot, f"COM_INIT_DB {schema} failed: {exc}")
        elif how < 0.7:
            self.sql(slot, f"USE `{schema}`")
        else:
            self.sql(slot, f"USE {schema}")
        m.schema = schema

    def act_set_names(self, slot: int) -> None:
        m, rng = self.models[slot], self.rng
        cs, coll = rng.choice(NAMES)
        quote = rng.choice(("", "'"))
        sql = f"SET NAMES {quote}{cs}{quote}" + (f" COLLATE {quote}{coll}{quote}" if coll else "")
        extra = None
        if rng.random() < 0.1:
            extra = rng.choice(TIME_ZONES)
            sql += f", @@session.time_zone = '{extra}'"
        self.sql(slot, sql)
        m.cs_client, m.cs_results, m.collation = self.oracle.names[(cs, coll)]
        if extra is not None:
            m.time_zone = extra

    def act_charset_var(self, slot: int) -> None:
        m, rng = self.models[slot], self.rng
        if rng.random() < 0.5:
            cs = rng.choice(RESULTS_CHARSETS)
            self.sql(slot, f"SET character_set_results = {'NULL' if cs is None else repr(cs)}")
            m.cs_results = cs
        else:
            coll = rng.choice(COLLATIONS)
            self.sql(slot, f"SET collation_connection = '{coll}'")
            m.collation = coll

    def _var_ref(self, name: str) -> str:
        return self.rng.choice((f"@{name}", f"@{name}", f"@{name.upper()}", f"@`{name}`"))

    def _literal(self, m: ClientModel) -> tuple[str, UVal | None]:
        rng = self.rng
        kind = rng.choice(("int", "int", "big", "dec", "float", "str", "str", "bin", "ustr", "null"))
        if kind == "int":
            n = rng.randrange(-10 ** 6, 10 ** 6)
            return str(n), UVal("int", n)
        if kind == "big":
            n = rng.choice((2 ** 63 - 1, -2 ** 63, 2 ** 40 + 7))
            return str(n), UVal("int", n)
        if kind == "dec":
            d = Decimal(rng.randrange(-10 ** 6, 10 ** 6)).scaleb(-rng.choice((1, 2, 3)))
            return str(d), UVal("dec", d)
        if kind == "float":
            f = rng.randrange(-4000, 4000) / 4
            return f"{f!r}e0", UVal("float", f)
        if kind == "str":
            text = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789_ ") for _ in range(rng.randrange(0, 12)))
            return f"'{text}'", UVal("str", text, m.collation)
        if kind == "bin":
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 5)))
            return f"X'{raw.hex()}'", UVal("bin", raw)
        if kind == "ustr":
            text = rng.choice(("\u00e9", "a\u00e9b", "caf\u00e9", "\u00e9t\u00e9"))
            cs = rng.choice(("utf8mb4", "latin1"))
            codec = "utf-8" if cs == "utf8mb4" else "latin-1"
            default = {"utf8mb4": "utf8mb4_general_ci", "latin1": "latin1_swedish_ci"}[cs]
            return f"_{cs} X'{text.encode(codec).hex()}'", UVal("str", text, default)
        return "NULL", None

    def act_user_var(self, slot: int) -> None:
        m, rng = self.models[slot], self.rng
        how = rng.random()
        name = rng.choice(USER_VARS)
        if how < 0.45:
            assignments = [(name, *self._literal(m))]
            if rng.random() < 0.3:
                other = rng.choice([n for n in USER_VARS if n != name])
                assignments.append((other, *self._literal(m)))
            op = rng.choice(("=", ":="))
            self.sql(slot, "SET " + ", ".join(f"{self._var_ref(n)} {op} {lit}" for n, lit, _ in assignments))
            for n, _, val in assignments:
                self._set_uv(m, n, val)
        elif how < 0.6:
            val = m.user_vars.get(name)
            if val is not None and (val.kind not in ("int", "dec", "float") or (val.kind == "int"
                                                                                  and abs(val.value) > 2 ** 50)):
                val = UVal("int", rng.randrange(100))
                self.sql(slot, f"SET @{name} = {val.value}")
                m.user_vars[name] = val
            ref = self._var_ref(name)
            result = self.sql(slot, f"SELECT {ref} := {ref} + 1")
            new = None if val is None else UVal(val.kind, val.value + 1)
            self._set_uv(m, name, new)
            expected = [(None if new is None else new.value,)]
            if not rows_match(expected, result.rows):
                self.fail(slot, f"@{name} := @{name} + 1 returned {result.rows!r}, expected {expected!r}")
        elif how < 0.7:
            src = rng.choice(USER_VARS)
            self.sql(slot, f"SET {self._var_ref(name)} = {self._var_ref(src)}")
            self._set_uv(m, name, copy.copy(m.user_vars.get(src)))
        elif how < 0.8:
            self.sql(slot, f"SELECT COUNT(*) FROM {ROWS_TABLE} WHERE owner = {m.owner} INTO {self._var_ref(name)}")
            self._set_uv(m, name, UVal("int", len(m.data.rows)))
        elif how < 0.9:
            other = rng.choice([n for n in USER_VARS if n != name])
            text = "".join(rng.choice("xyz") for _ in range(3))
            k = rng.randrange(1000)
            self.sql(slot, f"SELECT '{text}', {k} INTO {self._var_ref(name)}, {self._var_ref(other)}")
            self._set_uv(m, name, UVal("str", text, m.collation))
            self._set_uv(m, other, UVal("int", k))
        elif m.schema is not None:
            self.sql(slot, f"SELECT tag FROM {KV_TABLE} WHERE id = 1 INTO {self._var_ref(name)}")
            self._set_uv(m, name, UVal("str", m.schema, self.oracle.kv_collation))
        else:
            self.sql(slot, f"SET {self._var_ref(name)} = NULL")
            self._set_uv(m, name, None)

    @staticmethod
    def _set_uv(m: ClientModel, name: str, val: UVal | None) -> None:
        if val is None:
            m.user_vars.pop(name, None)
        else:
            m.user_vars[name] = val

    def act_begin(self, slot: int) -> None:
        m, rng = self.models[slot], self.rng
        self.sql(slot, rng.choice(("BEGIN", "START TRANSACTION", "BEGIN WORK", "START TRANSACTION READ WRITE",
                                   "START TRANSACTION WITH CONSISTENT SNAPSHOT")))
        if m.in_txn():  # BEGIN inside a transaction commits it first
            m.explicit_txn = True
            m.committed(self.world)
        else:
            m.explicit_txn = True
            m.txn_started()

    def act_end(self, slot: int) -> None:
        m, rng = self.models[slot], self.rng
        if rng.random() < 0.55:
            self.sql(slot, rng.choice(("COMMIT", "COMMIT WORK")))
            m.explicit_txn = False
            m.committed(self.world)
        else:
            self.sql(slot, rng.choice(("ROLLBACK", "ROLLBACK WORK")))
            m.explicit_txn = False
            m.rolled_back()

    def act_insert(self, slot: int) -> None:
        m, rng = self.models[slot], self.rng
        k = rng.choice((1, 1, 1, 2, 3))
        values = [f"o{m.owner}r{self._uid()}" for _ in range(k)]
        result = self.sql(slot, f"INSERT INTO {ROWS_TABLE} (owner, v) VALUES "
                          + ", ".join(f"({m.owner}, '{v}')" for v in values))
        first = result.lastrowid
        if not first or result.rowcount != k:
            self.fail(slot, f"INSERT of {k} rows: lastrowid {first!r}, rowcount {result.rowcount!r}")
        # Consecutive ids for one multi-row INSERT (innodb_autoinc_lock_mode 1); checked by reading them back.
        for i, v in enumerate(values):
            m.data.rows[first + i] = v
        m.last_insert_id = first
        m.wrote(self.world)

    def act_update(self, slot: int) -> None:
        m, rng = self.models[slot], self.rng
        row_id = rng.choice(sorted(m.data.rows))
        v = f"o{m.owner}u{self._uid()}"
        result = self.sql(slot, f"UPDATE {ROWS_TABLE} SET v = '{v}' WHERE id = {row_id}")
        if result.rowcount != 1:
            self.fail(slot, f"UPDATE of its own row {row_id} changed {result.rowcount} rows")
        m.data.rows[row_id] = v
        m.wrote(self.world)

    def act_delete(self, slot: int) -> None:
        m, rng = self.models[slot], self.rng
        ids = rng.sample(sorted(m.data.rows), min(len(m.data.rows), rng.choice((1, 1, 2, 5))))
        result = self.sql(slot, f"DELETE FROM {ROWS_TABLE} WHERE id IN ({', '.join(map(str, ids))})")
        if result.rowcount != len(ids):
            self.fail(slot, f"DELETE of its own rows {ids} deleted {result.rowcount} rows")
        for row_id in ids:
            del m.data.rows[row_id]
        m.wrote(self.world)

    def act_temp_create(self, slot: int) -> None:
        m, rng = self.models[slot], self.rng
        name = rng.choice([t for t in TEMP_TABLES if t not in m.data.temps])
        self.sql(slot, f"CREATE TEMPORARY TABLE appdb.{name} (n INT NOT NULL) ENGINE=InnoDB")
        m.data.temps[name] = []

    def act_temp_insert(self, slot: int) -> None:
        m, rng = self.models[slot], self.rng
        name = rng.choice(sorted(m.data.temps))
        values = [rng.randrange(1000) for _ in range(rng.choice((1, 2)))]
        self.sql(slot, f"INSERT INTO appdb.{name} VALUES " + ", ".join(f"({n})" for n in values))
        m.data.temps[name].extend(values)

    def act_temp_drop(self, slot: int) -> None:
        m, rng = self.models[slot], self.rng
        name = rng.choice(sorted(m.data.temps))
        self.sql(slot, rng.choice((f"DROP TEMPORARY TABLE appdb.{name}", f"DROP TEMPORARY TABLE IF EXISTS appdb.{name}",
                                   f"DROP TABLE appdb.{name}")))
        del m.data.temps[name]

    def act_set_insert_id(self, slot: int) -> None:
        m, rng = self.models[slot], self.rng
        n = 10 ** 12 + rng.randrange(10 ** 6)
        result = self.sql(slot, f"SELECT LAST_INSERT_ID({n})")
        if not rows_match([(n,)], result.rows):
            self.fail(slot, f"SELECT LAST_INSERT_ID({n}) returned {result.rows!r}")
        m.last_insert_id = n

    def act_probe_temp(self, slot: int) -> None:
        """Another client's temporary table must not exist for this one."""
        m, rng = self.models[slot], self.rng
        theirs = sorted({t for o in self.models if o is not m for t in o.data.temps} - set(m.data.temps))
        if not theirs:
            return
        name = rng.choice(theirs)
        self.sql(slot, f"SELECT COUNT(*) FROM appdb.{name}", expect_errno=ER_NO_SUCH_TABLE)

    def _can_peek(self, m: ClientModel) -> bool:
        return not m.in_txn() and m.isolation != self.oracle.isolation["READ UNCOMMITTED"]

    def act_peek(self, slot: int) -> None:
        """Another client's open transaction must be invisible: it sees only what that owner committed."""
        rng = self.rng
        pending = [o for o in self.models if o.has_pending(self.world)]
        if not pending:
            return
        other = rng.choice(pending)
        result = self.sql(slot, f"SELECT id, v FROM {ROWS_TABLE} WHERE owner = {other.owner} ORDER BY id")
        expected = sorted(self.world.committed.get(other.owner, {}).items())
        if not rows_match(expected, result.rows):
            self.fail(slot, f"sees client {other.slot}'s (owner {other.owner}) uncommitted rows: got "
                            f"{result.rows!r}, committed {expected!r}")

    def act_disconnect(self, slot: int) -> None:
        m, rng = self.models[slot], self.rng
        abrupt = rng.random() < 0.5
        self._note(m, "DISCONNECT " + ("(socket closed, no COM_QUIT)" if abrupt else "(COM_QUIT)")
                   + (" mid-transaction" if m.in_txn() else ""))
        self.stats["disconnects_mid_txn" if m.in_txn() else "disconnects_idle"] += 1
        self.conns[slot].close(abrupt)
        self.conns[slot] = None
        self._connect(slot)

    # prepared statements (mysql-connector-python, binary protocol)

    def act_ps_prepare(self, slot: int) -> None:
        m, rng = self.models[slot], self.rng
        template = rng.choice(sorted(PS_TEMPLATES))
        if template == "kv" and m.schema is None:
            template = "add"
        sql = "".join(PS_TEMPLATES[template])  # a str object of its own: the connector compares by identity
        handle = m.next_handle
        m.next_handle += 1
        try:
            handle_obj = self.conns[slot].prepare(sql)
        except SqlError as exc:
            self.fail(slot, f"COM_STMT_PREPARE {sql!r} failed: {exc}")
        ps = Prepared(template, sql, handle_obj, m.schema, m.sql_mode, m.collation)
        m.prepared[handle] = ps
        self._execute_ps(slot, handle, first=True)

    def act_ps_execute(self, slot: int) -> None:
        m, rng = self.models[slot], self.rng
        self._execute_ps(slot, rng.choice(sorted(m.prepared)), first=False)

    def act_ps_close(self, slot: int) -> None:
        m, rng = self.models[slot], self.rng
        handle = rng.choice(sorted(m.prepared))
        ps = m.prepared.pop(handle)
        self._note(m, f"COM_STMT_CLOSE #{handle} ({ps.sql})")
        self.conns[slot].close_statement(ps.cursor)
        if m.driver == "pymysql" and rng.random() < 0.3:  # its id is gone, whatever backend it reaches
            self._note(m, f"COM_STMT_EXECUTE #{handle} after its close (expect error 1243)")
            try:
                result = self.conns[slot].execute(ps.cursor, ps.sql, (1,) * ps.cursor.params, bind_types=True)
            except SqlError as exc:
                if exc.errno != ER_UNKNOWN_STMT_HANDLER:
                    self.fail(slot, f"executing closed statement #{handle} failed with {exc}, expected 1243")
            else:
                self.fail(slot, f"executing closed statement #{handle} succeeded: {result!r}")

    def _execute_ps(self, slot: int, handle: int, first: bool) -> None:
        m, rng = self.models[slot], self.rng
        ps = m.prepared[handle]
        t = ps.template
        if t in ("pipes",):
            params = ("".join(rng.choice("abc") for _ in range(3)),)
        elif t == "session":
            params = (0,)
        elif t == "count":
            params = (m.owner,)
        elif t == "insert":
            params = (m.owner, f"o{m.owner}p{self._uid()}")
        else:
            params = (rng.randrange(-1000, 1000),)
        bind = first or rng.random() < 0.5
        self._note(m, f"{'COM_STMT_PREPARE + ' if first else ''}COM_STMT_EXECUTE #{handle} ({ps.sql}) {params!r}"
                      + ("" if bind or m.driver != "pymysql" else " (parameter types not sent again)"))
        self.stats["statements"] += 1
        try:
            result = self.conns[slot].execute(ps.cursor, ps.sql, params, bind_types=bind)
        except SqlError as exc:
            self.fail(slot, f"prepared statement #{handle} {ps.sql!r} {params!r} failed: {exc}")
        if t == "insert":
            if not result.lastrowid or result.rowcount != 1:
                self.fail(slot, f"prepared INSERT: lastrowid {result.lastrowid!r}, rowcount {result.rowcount!r}")
            m.data.rows[result.lastrowid] = params[1]
            m.last_insert_id = result.lastrowid
            m.wrote(self.world)
            return
        expected = ps_expected(ps, m, self.oracle, params)
        if not rows_match(expected, result.rows):
            self.fail(slot, f"prepared statement #{handle} {ps.sql!r} {params!r} (prepared with schema={ps.schema}, "
                            f"sql_mode={ps.sql_mode!r}, collation={ps.collation}) returned {result.rows!r}, "
                            f"expected {expected!r}")

    # -- checks ------------------------------------------------------------------------

    def check(self, slot: int) -> None:
        m = self.models[slot]
        cols = m.check_columns(self.oracle)
        result = self.sql(slot, "SELECT " + ", ".join(expr for _, expr, _ in cols), label="(check: session state)")
        row = result.rows[0] if result.rows else ()
        bad = [f"{name}: expected {exp!r}, got {got!r}" for (name, _, exp), got in zip(cols, row)
               if not matches(exp, got)]
        if len(row) != len(cols) or bad:
            self.fail(slot, "session state differs from the model:\n  " + "\n  ".join(bad or [f"row {row!r}"]))
        result = self.sql(slot, f"SELECT id, v FROM {ROWS_TABLE} WHERE owner = {m.owner} ORDER BY id",
                          label="(check: own rows)")
        if not rows_match(m.own_rows(), result.rows):
            self.fail(slot, f"its own rows differ from the model: expected {m.own_rows()!r}, got {result.rows!r}")
        if m.data.temps:
            result = self.sql(slot, " UNION ALL ".join(f"SELECT '{t}', n FROM appdb.{t}" for t in sorted(m.data.temps))
                              + " ORDER BY 1, 2", label="(check: temporary tables)")
            if not rows_match(m.temp_rows(), result.rows):
                self.fail(slot, f"its temporary tables differ from the model: expected {m.temp_rows()!r}, "
                                f"got {result.rows!r}")

    def check_everyone(self) -> None:
        for slot in range(self.n):
            self.check(slot)
            self._check_pins(slot)
        checkers = [m.slot for m in self.models if self._can_peek(m)]
        if checkers:
            slot = checkers[self.step % len(checkers)]
            result = self.sql(slot, f"SELECT owner, COUNT(*), SUM(CRC32(v)) FROM {ROWS_TABLE} "
                                    f"GROUP BY owner ORDER BY owner")
            expected = self.world.summary()
            if not rows_match(expected, result.rows):
                got = {r[0]: r[1:] for r in result.rows}
                want = {r[0]: r[1:] for r in expected}
                diff = {o: (want.get(o), got.get(o)) for o in sorted(set(got) | set(want)) if want.get(o) != got.get(o)}
                self.fail(slot, f"committed rows per owner differ from the model ((rows, crc) expected vs got): {diff}")

    def _check_pins(self, slot: int) -> None:
        """The proxy pins a client only for its transaction or temporary tables (never user variables)."""
        if self.pins is None:
            return
        m = self.models[slot]
        reasons = self.pins(self.conns[slot].connection_id)
        if reasons is None:
            return
        unexpected = [r for r in reasons if r not in ("transaction", "temporary_table", "diagnostics")]
        if "transaction" in reasons and not m.in_txn():
            unexpected.append("transaction")
        if m.explicit_txn and "transaction" not in reasons:
            unexpected.append("(no transaction pin during BEGIN ... COMMIT)")
        if bool(m.data.temps) != ("temporary_table" in reasons):
            unexpected.append(f"temporary_table pin {'missing' if m.data.temps else 'left'}")
        if unexpected:
            self.fail(slot, f"pinned for {reasons} (unexpected: {unexpected})")

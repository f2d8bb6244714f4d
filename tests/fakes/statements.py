# The SQL a FakeMySQLServer understands: a small interpreter of the statements
# the proxy and the tests send (transactions and savepoints, SET of system and
# user variables and of SET NAMES / SET TRANSACTION, USE, temporary tables,
# SELECT of literals, variables and a few functions such as CONNECTION_ID(),
# SLEEP() and GET_LOCK(); LOAD DATA LOCAL INFILE, as the last statement of a
# query: the server asks for the file; other data statements get a plain OK). Not a SQL
# engine: a SELECT ... FROM a table, or anything it does not know, is an
# error unless a test scripted a reply for it (server.on()).
#
# Interpreter(server).query(sql) runs each statement of a COM_QUERY against
# the server's session state (its variables, schema, transaction, user
# variables, temporary tables, locks, savepoints), and answers with the
# packets MariaDB 10.11 would send: OK packets carry the session-state entries
# the trackers in force report (tracked()), and SLEEP(n) gives a delay.
from __future__ import annotations

from typing import TYPE_CHECKING

from mysqlpool_proxy.constants import SESSION_TRACK
from mysqlpool_proxy.protocol.packets import make_err
from mysqlpool_proxy.protocol.wire import lenenc_bytes
from tests.fakes.mariadb import BOOLEAN_VARS, COLLATION_CHARSET, DEFAULT_COLLATION, GLOBALS
from tests.fakes.packets import as_bytes
from tests.fakes.replies import Err, Ok, Rows
from tests.fakes.sql import SqlError, Tok, split_top, tokenize

if TYPE_CHECKING:
    from tests.fakes.server import FakeMySQLServer

_DEFAULT = object()
# Statements the fake answers with a plain OK (and no other effect than the trackers').
_PLAIN_STATEMENTS = frozenset((
    "insert", "update", "delete", "replace", "create", "drop", "alter", "truncate", "rename", "lock", "unlock",
    "handler", "do", "flush", "grant", "revoke", "analyze", "optimize", "call", "savepoint", "release", "rollback",
    "load", "backup", "xa", "checksum",
))


class Interpreter:
    """Runs the statements of a COM_QUERY against `server`'s session state; answers with packets."""

    def __init__(self, server: FakeMySQLServer):
        self.server = server

    def query(self, sql: str) -> tuple[list[bytes], float]:
        tokens = tokenize(sql)
        statements = [s for s in split_top(tokens, ";") if s]
        if not statements:
            return [make_err(1065, "42000", "Query was empty")], 0.0
        if len(statements) > 1 and not self.server.multi_statements:
            return [make_err(1064, "42000", "You have an error in your SQL syntax (multi-statements are off)")], 0.0
        packets: list[bytes] = []
        delay = 0.0
        for i, stmt in enumerate(statements):
            more = i < len(statements) - 1
            text = sql[stmt[0].start:stmt[-1].end]
            try:
                out, d = self._statement(text, stmt, more)
            except SqlError as e:
                packets.append(make_err(e.errno, e.sqlstate, e.message))
                break
            packets += out
            delay += d
            if out and out[-1][:1] == b"\xfb":
                break  # LOAD DATA LOCAL INFILE: the fake runs no statement after it
        return packets, delay

    def _statement(self, text: str, toks: list[Tok], more: bool) -> tuple[list[bytes], float]:
        for script in self.server.scripts:
            if script.hits(text):
                if script.times is not None:
                    script.times -= 1
                return self._scripted(script.reply, text, more), script.delay
        changes: dict = {}
        first = toks[0].value if toks[0].kind == "word" else ""
        second = toks[1].value if len(toks) > 1 and toks[1].kind == "word" else ""
        if first == "select":
            return self._select(text, toks, more)
        if first == "load" and any(t.is_word("local") for t in toks):
            # The server asks for the file; the statements after it wait for the data (server.py).
            name = next(t.value for t in toks if t.kind == "str")
            return [b"\xfb" + as_bytes(name)], 0.0
        if first in ("begin", "start") and (first == "begin" or second == "transaction"):
            if self.server.in_trans:
                self._end_trx(changes)  # an implicit commit
            self._begin(changes, explicit=True)
            if self.server.trx_characteristics:
                changes["trx_chars"] = self.server.trx_characteristics
        elif first in ("commit", "rollback") and not any(t.is_word("to") for t in toks):
            self._end_trx(changes)
        elif first in ("savepoint", "rollback", "release"):
            # MariaDB: a savepoint lives while a transaction is open, or with autocommit off (even
            # before any table: no IN_TRANS then); ROLLBACK TO / RELEASE of an unknown one is 1305.
            name = str(toks[-1].value).lower()
            if first == "savepoint":
                if self.server.in_trans or not self.server.autocommit:
                    self.server.savepoints.add(name)
            elif name not in self.server.savepoints:
                raise SqlError(1305, f"SAVEPOINT {toks[-1].value} does not exist", "42000")
            elif first == "release":
                self.server.savepoints.discard(name)
        elif first == "set":
            self._set(toks[1:], changes)
        elif first == "use" and len(toks) > 1:
            name = str(toks[1].value).encode()
            if self.server.schemas is not None and name.decode() not in self.server.schemas:
                raise SqlError(1049, f"Unknown database '{name.decode()}'", "42000")
            self.server.schema = name
            changes["schema"] = name
            changes["state_change"] = True
        elif first == "create" and any(t.is_word("temporary") for t in toks[:3]):
            i = next(i for i, t in enumerate(toks) if t.is_word("table")) + 1
            while toks[i].is_word("if", "not", "exists"):
                i += 1
            self.server.temp_tables.add(str(toks[i].value))
            changes["state_change"] = True
        elif first == "drop" and any(t.is_word("table", "tables") for t in toks[:3]):
            names = [str(t.value) for t in toks if t.kind in ("word", "qid")
                     and not t.is_word("drop", "temporary", "table", "tables", "if", "exists")]
            dropped = self.server.temp_tables & set(names)
            if dropped:
                self.server.temp_tables -= dropped
                changes["state_change"] = True
        elif first in ("prepare", "deallocate") or (first == "drop" and second == "prepare"):
            changes["state_change"] = True
        elif first == "xa" and second in ("start", "begin"):
            self._begin(changes, explicit=True)
        elif first == "xa" and second in ("commit", "rollback"):
            self._end_trx(changes)
        elif first not in _PLAIN_STATEMENTS:
            raise SqlError(1064, f"You have an error in your SQL syntax near '{text[:40]}' "
                            "(fake server: script it with on())", "42000")
        else:
            if not self.server.autocommit and first not in ("lock", "unlock", "do"):
                self._begin(changes, explicit=False)  # the statement touched a table
            affected = 1 if first in ("insert", "update", "delete", "replace") else 0
            if affected and self.server.in_trans and not self.server.trx_write:
                self.server.trx_write = True  # the transaction's first write changes its state
                changes["trx_state"] = self.server.trx_state()
            return [self.server.ok_packet(affected, more=more, changes=self.tracked(changes))], 0.0
        return [self.server.ok_packet(more=more, changes=self.tracked(changes))], 0.0

    def _scripted(self, reply, sql: str, more: bool) -> list[bytes]:
        if callable(reply) and not isinstance(reply, (Rows, Ok, Err)):
            reply = reply(self.server, sql)
        if isinstance(reply, Err):
            raise SqlError(reply.errno, reply.message, reply.sqlstate)
        if isinstance(reply, Rows):
            return self.server.result_set_packets([as_bytes(c) for c in reply.columns], reply.rows, more=more)
        if isinstance(reply, Ok):
            changes = {"state_change": True} if reply.state_change else {}
            return [self.server.ok_packet(reply.affected_rows, reply.last_insert_id, more=more, info=reply.info,
                             changes=self.tracked(changes))]
        raise TypeError(f"cannot reply with {reply!r}")

    # -- SET --------------------------------------------------------------------------

    def _set(self, toks: list[Tok], changes: dict) -> None:
        if toks and toks[0].is_word("global"):
            return  # global values are not session state
        if toks and toks[0].is_word("session", "local") and len(toks) > 1 and toks[1].is_word("transaction"):
            toks = toks[1:]
        if toks and toks[0].is_word("transaction"):
            words = " ".join(str(t.value).upper() for t in toks[1:])
            self.server.trx_characteristics = f"SET TRANSACTION {words};".encode()
            changes["trx_chars"] = self.server.trx_characteristics
            return
        scope = "session"
        for part in split_top(toks, ","):
            if part and part[0].is_word("names"):  # SET NAMES cs [COLLATE coll], other = value, ...
                self._set_names(part, changes)
                continue
            if part and part[0].is_word("session", "local", "global"):
                scope = "global" if part[0].value == "global" else "session"
                part = part[1:]
            eq = next((i for i, t in enumerate(part) if t.is_op("=") or t.is_op(":=")), None)
            if eq != 1:
                raise SqlError(1064, "You have an error in your SQL syntax (fake server: unsupported SET)", "42000")
            target, value = part[0], self._value(part[2:])
            if target.kind == "uvar":
                self.server.user_vars[target.value] = value
                changes["state_change"] = True
                continue
            if target.kind == "sysvar":
                var_scope, name = target.value
            elif target.kind in ("word", "qid"):
                var_scope, name = scope, target.value
            else:
                raise SqlError(1064, "You have an error in your SQL syntax", "42000")
            if var_scope == "global":
                continue
            bname = name.encode()
            if value is _DEFAULT:
                value = GLOBALS.get(bname)
            self._set_var(bname, value, changes)

    def _set_names(self, toks: list[Tok], changes: dict) -> None:
        cs = str(toks[1].value).encode() if toks[1].kind != "str" else toks[1].value
        for name in (b"character_set_client", b"character_set_results", b"character_set_connection"):
            self._set_var(name, cs.lower(), changes)
        if len(toks) > 3 and toks[2].is_word("collate"):
            coll = toks[3].value if toks[3].kind == "str" else str(toks[3].value).encode()
            self._set_var(b"collation_connection", coll.lower(), changes)

    def _value(self, toks: list[Tok]):
        if len(toks) == 2 and toks[0].is_op("-") and toks[1].kind == "num":
            return b"-" + toks[1].value.encode()
        if (len(toks) in (2, 4) and toks[0].kind == "word" and toks[0].value.startswith("_")
                and toks[1].kind in ("hex", "str") and (len(toks) == 2 or toks[2].is_word("collate"))):
            return toks[1].value  # a character set introducer: _utf8mb4 X'31' [COLLATE c]
        if len(toks) != 1:
            raise SqlError(1064, "You have an error in your SQL syntax (fake server: expressions unsupported)",
                            "42000")
        t = toks[0]
        if t.kind in ("str", "hex"):
            return t.value
        if t.kind == "num":
            return t.value.encode()
        if t.kind == "sysvar":
            return self.server.variables.get(t.value[1].encode())
        if t.kind == "uvar":
            return self.server.user_vars.get(t.value)
        if t.kind in ("word", "qid"):
            if t.kind == "word" and t.value == "null":
                return None
            if t.kind == "word" and t.value == "default":
                return _DEFAULT
            return str(t.value).encode()
        raise SqlError(1064, "You have an error in your SQL syntax", "42000")

    # -- SELECT -------------------------------------------------------------------------

    def _select(self, text: str, toks: list[Tok], more: bool) -> tuple[list[bytes], float]:
        body = toks[1:]
        into = next((i for i, t in enumerate(body) if t.is_word("into")), None)
        targets = []
        if into is not None:
            targets = [t.value for t in body[into + 1:] if t.kind == "uvar"]
            body = body[:into]
        if any(t.is_word("from") and not (i + 1 < len(body) and body[i + 1].is_word("dual"))
               for i, t in enumerate(body)):
            raise SqlError(1146, "Table doesn't exist (fake server: script SELECT ... FROM with on())", "42S02")
        changes: dict = {}
        if not self.server.autocommit:
            self._begin(changes, explicit=False)
        columns, row, delay = [], [], 0.0
        for item in split_top(body, ","):
            if not item:
                raise SqlError(1064, "You have an error in your SQL syntax", "42000")
            name = text[item[0].start:item[-1].end].encode("latin-1")
            if len(item) >= 3 and item[-2].is_word("as"):
                name = str(item[-1].value).encode()
                item = item[:-2]
            value, d = self._eval(item, changes)
            delay += d
            columns.append(name)
            row.append(value)
        if targets:
            for target, value in zip(targets, row):
                self.server.user_vars[target] = value
            changes["state_change"] = True
            return [self.server.ok_packet(1, more=more, changes=self.tracked(changes))], delay
        return self.server.result_set_packets(columns, [row], more=more), delay

    def _eval(self, item: list[Tok], changes: dict) -> tuple[bytes | None, float]:
        if len(item) >= 3 and item[0].kind == "uvar" and item[1].is_op(":="):
            value, d = self._eval(item[2:], changes)
            self.server.user_vars[item[0].value] = value
            return value, d
        if len(item) >= 3 and item[0].kind == "word" and item[1].is_op("(") and item[-1].is_op(")"):
            args = [self._value(a) if a else None for a in split_top(item[2:-1], ",")] if len(item) > 3 else []
            return self._function(item[0].value, args)
        if len(item) == 1 and item[0].kind == "sysvar":
            scope, name = item[0].value
            bname = name.encode()
            if bname not in GLOBALS:
                raise SqlError(1193, f"Unknown system variable '{name}'")
            return (GLOBALS[bname] if scope == "global" else self.server.variables.get(bname)), 0.0
        if len(item) == 1 and item[0].is_op("?"):
            return None, 0.0
        return self._value(item), 0.0

    def _function(self, name: str, args: list) -> tuple[bytes | None, float]:
        if name == "connection_id":
            return str(self.server.thread_id).encode(), 0.0
        if name in ("database", "schema"):
            return self.server.schema, 0.0
        if name == "version":
            return self.server.version.removeprefix("5.5.5-").encode(), 0.0
        if name == "sleep":
            return b"0", float(args[0] or 0)
        if name == "get_lock":
            self.server.locks.add(args[0])
            return b"1", 0.0
        if name == "release_lock":
            held = args[0] in self.server.locks
            self.server.locks.discard(args[0])
            return (b"1" if held else None), 0.0
        if name == "release_all_locks":
            n = len(self.server.locks)
            self.server.locks.clear()
            return str(n).encode(), 0.0
        if name == "last_insert_id":
            return b"0", 0.0
        # For the proxy's read-back of user variables (capture.py): the fake's user
        # variables are byte strings in utf8mb4 (or NULL).
        if name == "hex":
            return (None if args[0] is None else args[0].hex().upper().encode()), 0.0
        if name == "charset":
            return (None if args[0] is None else b"utf8mb4"), 0.0
        if name == "collation":
            return (None if args[0] is None else b"utf8mb4_general_ci"), 0.0
        raise SqlError(1305, f"FUNCTION {name} does not exist (fake server)", "42000")

    # -- tracked changes -------------------------------------------------------------

    def tracked(self, changes: dict) -> list[tuple[int, bytes]]:
        """Session-state entries for what one statement changed, as the trackers in force report it."""
        v = self.server.variables
        entries: list[tuple[int, bytes]] = []
        tracked = v.get(b"session_track_system_variables") or b""
        names = set(tracked.split(b","))
        for name, value in changes.get("vars", {}).items():
            if value is not None and (tracked == b"*" or name in names):
                entries.append((SESSION_TRACK.SYSTEM_VARIABLES, lenenc_bytes(name) + lenenc_bytes(value)))
        if "schema" in changes and v.get(b"session_track_schema") == b"ON":
            entries.append((SESSION_TRACK.SCHEMA, lenenc_bytes(changes["schema"])))
        trx = v.get(b"session_track_transaction_info") or b"OFF"
        if trx != b"OFF":
            if "trx_state" in changes:
                entries.append((SESSION_TRACK.TRANSACTION_STATE, lenenc_bytes(changes["trx_state"])))
            if trx == b"CHARACTERISTICS" and "trx_chars" in changes:
                entries.append((SESSION_TRACK.TRANSACTION_CHARACTERISTICS, lenenc_bytes(changes["trx_chars"])))
        if changes.get("state_change") and v.get(b"session_track_state_change") == b"ON":
            entries.append((SESSION_TRACK.STATE_CHANGE, b"1"))
        return entries

    def _begin(self, changes: dict, explicit: bool) -> None:
        if not self.server.in_trans:
            self.server.in_trans = True
            self.server.trx_kind = b"T" if explicit else b"I"
            self.server.trx_read = self.server.trx_write = False
            changes["trx_state"] = self.server.trx_state()

    def _end_trx(self, changes: dict) -> None:
        self.server.savepoints.clear()
        if self.server.in_trans:
            self.server.in_trans = False
            self.server.trx_read = self.server.trx_write = False
            changes["trx_state"] = b"________"
        if self.server.trx_characteristics:
            self.server.trx_characteristics = b""
            changes["trx_chars"] = b""

    def _set_var(self, name: bytes, value: bytes | None, changes: dict) -> None:
        if name not in GLOBALS:
            raise SqlError(1193, f"Unknown system variable '{name.decode()}'")
        if name in BOOLEAN_VARS and value is not None:
            flag = value.upper()
            if flag not in (b"0", b"1", b"ON", b"OFF", b"TRUE", b"FALSE"):
                raise SqlError(1231, f"Variable '{name.decode()}' can't be set to the value of '{value.decode()}'")
            value = b"ON" if flag in (b"1", b"ON", b"TRUE") else b"OFF"
        if name == b"autocommit" and value == b"ON" and self.server.variables[b"autocommit"] == b"OFF":
            self._end_trx(changes)  # turning autocommit on commits
        self.server.variables[name] = value
        changes.setdefault("vars", {})[name] = value
        changes["state_change"] = True
        if name == b"character_set_connection" and value is not None:
            coll = DEFAULT_COLLATION.get(value.lower(), value + b"_general_ci")
            self.server.variables[b"collation_connection"] = coll
            changes["vars"][b"collation_connection"] = coll
        elif name == b"collation_connection" and value is not None:
            cs = COLLATION_CHARSET.get(value.lower(), value.split(b"_")[0])
            self.server.variables[b"character_set_connection"] = cs
            changes["vars"][b"character_set_connection"] = cs

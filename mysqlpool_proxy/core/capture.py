"""Reading back session state the server's trackers do not report in full.

After some statements the proxy asks the server, with one hidden SELECT on
the same backend, for state it must carry to the client's next backend:

* user variables the statement wrote: their type (from the column), their
  bytes as `HEX()` (so no character set conversion can touch them), and
  their `CHARSET()` and `COLLATION()`; they replay as `_cs X'..' COLLATE c`,
  numbers as numbers;
* `LAST_INSERT_ID()` after `LAST_INSERT_ID(expr)` in a result-set statement;
* system variables set as `SET @@x = ...` (MariaDB does not track that form);
* the client's session_track_* settings after it changed one (a narrowed
  session_track_system_variables no longer reports itself);
* all four character set variables whenever one of them changed: setting
  character_set_connection also sets collation_connection and vice versa,
  but the trackers report only the one named; and with them the collation
  behind character_set_results, which no variable shows: it is the
  collation of the answer's own string columns. SET NAMES cs COLLATE coll
  and SET CHARACTER SET cs report the same variables; only the first puts a
  collation that is not the charset's default behind character_set_results,
  and puts the same one behind character_set_client (see session.py).

`Capture` is pure: it builds the SQL and applies the answer to a state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..protocol.rows import Column, sql_literal_for
from ..protocol.session_track import TRACKER_VARIABLES
from .session import CHARACTER_SET_CLIENT, CHARACTER_SET_RESULTS, PROXY_OWNED, Collation, SessionState

__all__ = ["Capture", "CHARSET_VARIABLES", "CollationTable", "well_formed"]

# The server's collation table: id -> (charset, collation, is the charset's default)
CollationTable = Mapping[int, tuple[str, str, bool]]

CHARSET_VARIABLES = (b"character_set_client", b"character_set_connection", b"character_set_results",
                     b"collation_connection")
_PER_USER_VAR = 4  # value, HEX(), CHARSET(), COLLATION()


def _quoted(name: bytes) -> bytes:
    return b"`" + name.replace(b"`", b"``") + b"`"


@dataclass(slots=True)
class Capture:
    user_vars: list[bytes] = field(default_factory=list)
    sysvars: list[bytes] = field(default_factory=list)
    insert_id: bool = False
    trackers: bool = False  # read the session_track_* settings back (into `tracker_settings`)
    tracker_settings: dict[bytes, bytes | None] = field(default_factory=dict)
    # The server's collation table (id -> charset, name, is its charset's default): with it, reading
    # character_set_results back also reads the collation behind it.
    collations: CollationTable | None = None
    # User variables read back whose bytes the server would refuse to take back as `_cs X'..'`
    # (1300: not well formed in their charset, as a string literal sent in another charset than
    # the connection's leaves them): they cannot follow the client to another backend.
    unreplayable: list[bytes] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.user_vars or self.sysvars or self.insert_id or self.trackers)

    def add_sysvars(self, names: Iterable[bytes]) -> None:
        for name in names:
            if name not in self.sysvars and name not in PROXY_OWNED:
                self.sysvars.append(name)

    def sql(self) -> bytes:
        columns = [b"LAST_INSERT_ID()"]
        for name in self.user_vars:
            var = b"@" + _quoted(name)
            columns += [var, b"HEX(" + var + b")", b"CHARSET(" + var + b")", b"COLLATION(" + var + b")"]
        columns += [b"@@session." + _quoted(name) for name in self.sysvars]
        if self.trackers:
            columns += [b"@@session." + name for name in TRACKER_VARIABLES]
        return b"SELECT " + b", ".join(columns)

    def apply(self, columns: list[Column], row: list[bytes | None], state: SessionState) -> int | None:
        """Record the answer in `state`; returns LAST_INSERT_ID() when it was asked for."""
        pos = 1
        for name in self.user_vars:
            value, hexed, charset, collation = row[pos:pos + _PER_USER_VAR]
            literal = user_var_literal(columns[pos], value, hexed, charset, collation)
            if hexed is not None and charset is not None and columns[pos].type in _STRING_TYPES \
                    and not well_formed(bytes.fromhex(hexed.decode()), charset):
                self.unreplayable.append(name)
            if literal is None:
                state.user_vars.pop(name, None)
            else:
                state.user_vars[name] = literal
            pos += _PER_USER_VAR
        results_column = None
        for name in self.sysvars:
            state.variables[name] = row[pos]
            if name == CHARACTER_SET_RESULTS:
                results_column = columns[pos]
            pos += 1
        if self.trackers:
            self.tracker_settings = dict(zip(TRACKER_VARIABLES, row[pos:pos + len(TRACKER_VARIABLES)]))
        if results_column is not None and self.collations is not None:
            self._learn_collations(results_column, state)
        if self.insert_id and row[0] is not None:
            return int(row[0])
        return None


    def _learn_collations(self, column: Column, state: SessionState) -> None:
        """The collation behind character_set_results, from a string column of the answer; when it
        became one that is not the charset's default, SET NAMES ... COLLATE put it there, and behind
        character_set_client too."""
        charset = state.variables.get(CHARACTER_SET_RESULTS)
        found = self.collations.get(column.charset) if charset is not None and self.collations is not None else None
        learned = None
        if found is not None and charset is not None and found[0].encode() == charset and not found[2]:
            learned = Collation(charset, found[1].encode())
        client, results = state.hidden_collations()
        if (learned is not None and learned != results and client is None
                and state.variables.get(CHARACTER_SET_CLIENT) == learned.charset):
            state.client_collation = learned
        state.results_collation = learned


def user_var_literal(column: Column, value: bytes | None, hexed: bytes | None, charset: bytes | None,
                     collation: bytes | None) -> bytes | None:
    """An SQL literal that gives the variable back exactly: same type, bytes, charset, collation."""
    if value is None:
        return None
    if hexed is None or charset is None:
        return sql_literal_for(column, value, {})
    if column.type not in _STRING_TYPES:
        return sql_literal_for(column, value, {})  # numbers: their text is their value
    if charset == b"binary":
        return b"X'" + hexed + b"'"
    return b"_" + charset + b" X'" + hexed + b"'" + (b" COLLATE " + collation if collation else b"")


# How Python decodes what MariaDB checks when it takes `_cs X'..'`: multi-byte charsets only (a
# single-byte one takes any byte). Where Python is stricter, a variable only stays on its backend.
_CODECS = {
    b"utf8mb4": "utf-8", b"utf8mb3": "utf-8", b"utf8": "utf-8", b"utf16": "utf-16-be", b"utf16le": "utf-16-le",
    b"utf32": "utf-32-be", b"big5": "big5", b"gbk": "gbk", b"gb2312": "gb2312", b"sjis": "shift_jis",
    b"cp932": "cp932", b"ujis": "euc_jp", b"eucjpms": "euc_jp", b"euckr": "euc_kr",
}


def well_formed(data: bytes, charset: bytes) -> bool:
    """Would the server take these bytes back as a `_charset X'..'` literal?"""
    if charset == b"ucs2":
        return len(data) % 2 == 0
    codec = _CODECS.get(charset)
    if codec is None:
        return True
    try:
        text = data.decode(codec, "surrogatepass" if codec == "utf-8" else "strict")
    except UnicodeDecodeError:
        return False
    return charset == b"utf8mb4" or codec != "utf-8" or all(ord(ch) <= 0xFFFF for ch in text)


# Column types in which user variables holding strings come back (VARCHAR, VAR_STRING, STRING, BLOB kinds).
_STRING_TYPES = frozenset((15, 253, 254, 249, 250, 251, 252))

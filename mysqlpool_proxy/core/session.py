"""Session state: what follows a client from backend to backend, and what pins it.

Movable state (`SessionState`) is the schema, the session system variables
that differ from a fresh connection's, and the multi-statements option. The
proxy learns it from the server's session trackers (schema, every changed
system variable), from COM_SET_OPTION and from the few SET forms the
trackers miss (`SET x = NULL`). Both clients and backends have one; checking
a backend out means bringing its state to the client's (`sync_plan`).

Part of it no variable shows. character_set_client and character_set_results
show a character set, but the server holds a collation behind each: the
handshake's collation, or SET NAMES' COLLATE, give them that collation, any
other way of setting them gives the charset's default. The server sends the
one behind character_set_results as the collation of every string column a
result set describes, and binds prepared statements' string parameters in
the one behind character_set_client. A state keeps them when they are not
the defaults (`client_collation`, `results_collation`); only SET NAMES can
give them to a backend, so the sync starts with one when they differ.

State that cannot be moved pins the client to its backend: see pins.py.
Everything here is pure: no I/O.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Hashable
from dataclasses import dataclass
from typing import Final, NamedTuple

from ..protocol.session_track import StateChanges
from ..protocol.sql import SqlEffects

__all__ = ["SessionState", "Collation", "names_variables", "SyncStep", "sync_plan", "apply_changes", "set_clause"]

# Variables the proxy owns on every backend: never replayed, never diffed.
PROXY_OWNED: Final = frozenset((
    b"session_track_system_variables", b"session_track_schema", b"session_track_state_change",
    b"session_track_transaction_info", b"session_track_gtids",
))

CHARACTER_SET_CLIENT: Final = b"character_set_client"
CHARACTER_SET_CONNECTION: Final = b"character_set_connection"
CHARACTER_SET_RESULTS: Final = b"character_set_results"
COLLATION_CONNECTION: Final = b"collation_connection"

# Set before the others: character_set_connection resets collation_connection.
_FIRST: Final = (CHARACTER_SET_CLIENT, CHARACTER_SET_CONNECTION, CHARACTER_SET_RESULTS)
_SECOND: Final = (COLLATION_CONNECTION,)


class Collation(NamedTuple):
    """A collation and its character set, as SET NAMES takes them."""

    charset: bytes
    name: bytes


# Made for every login and kept by every client and backend: its __init__ is written out, so that
# mypyc compiles it (a dataclass's generated __init__, and a slots=True dataclass, stay interpreted),
# and its __slots__ too (pure Python: no __dict__ per session). The dataclass gives == and repr.
@dataclass(init=False)
class SessionState:
    """Movable session state. `variables` holds only what differs from a fresh connection;
    `user_vars` maps user variable names to SQL literals of their values (absent = NULL).
    `client_collation` and `results_collation` are the collations behind character_set_client
    and character_set_results when they are not their charsets' defaults (None: the default)."""

    __slots__ = ("schema", "variables", "multi_statements", "user_vars", "client_collation", "results_collation")

    schema: bytes | None
    variables: dict[bytes, bytes | None]
    multi_statements: bool
    user_vars: dict[bytes, bytes]
    client_collation: Collation | None
    results_collation: Collation | None

    def __init__(self, schema: bytes | None = None, variables: dict[bytes, bytes | None] | None = None,
                 multi_statements: bool = True, user_vars: dict[bytes, bytes] | None = None,
                 client_collation: Collation | None = None, results_collation: Collation | None = None) -> None:
        self.schema = schema
        self.variables = {} if variables is None else variables
        self.multi_statements = multi_statements
        self.user_vars = {} if user_vars is None else user_vars
        self.client_collation = client_collation
        self.results_collation = results_collation

    def copy(self) -> SessionState:
        return SessionState(self.schema, dict(self.variables), self.multi_statements, dict(self.user_vars),
                            self.client_collation, self.results_collation)

    def same_as(self, other: SessionState) -> bool:
        """Equal states: nothing to sync between them (dict comparisons, no allocation). (`a is b or`:
        the optional values are most often None on both sides, and an identity is a pointer compare.)"""
        return ((self.schema is other.schema or self.schema == other.schema)
                and self.multi_statements is other.multi_statements
                and self.variables == other.variables and self.user_vars == other.user_vars
                and (self.client_collation is other.client_collation
                     or self.client_collation == other.client_collation)
                and (self.results_collation is other.results_collation
                     or self.results_collation == other.results_collation))

    def key(self) -> tuple[Hashable, ...]:
        """Hashable identity: backends with the same key need no sync for each other."""
        return (self.schema, self.multi_statements, frozenset(self.variables.items()),
                frozenset(self.user_vars.items()) if self.user_vars else None,
                self.client_collation, self.results_collation)

    def hidden_collations(self) -> tuple[Collation | None, Collation | None]:
        """The collations behind character_set_client and character_set_results (None: the charset's
        default). One recorded for another charset than its variable now shows is no longer there."""
        client, results = self.client_collation, self.results_collation
        if client is not None and client.charset != self.variables.get(CHARACTER_SET_CLIENT):
            client = None
        if results is not None and results.charset != self.variables.get(CHARACTER_SET_RESULTS):
            results = None
        return client, results


def names_variables(names: Collation) -> dict[bytes, bytes | None]:
    """The variables `SET NAMES cs COLLATE coll` (or a handshake with that collation) sets."""
    return {CHARACTER_SET_CLIENT: names.charset, CHARACTER_SET_CONNECTION: names.charset,
            CHARACTER_SET_RESULTS: names.charset, COLLATION_CONNECTION: names.name}


def apply_changes(state: SessionState, changes: StateChanges | None, effects: SqlEffects | None) -> None:
    """Record in `state` what the server reported (and the SET ... = NULL it does not).

    A character set variable reported changed is taken to have its charset's default collation
    behind it: a SET NAMES ... COLLATE reports the same, and capture.py reads back what it set."""
    if changes is not None:
        if changes.schema is not None:
            state.schema = changes.schema or None
        for name, value in changes.variables:
            if name not in PROXY_OWNED:
                state.variables[name] = value
                if name == CHARACTER_SET_CLIENT:
                    state.client_collation = None
                elif name == CHARACTER_SET_RESULTS:
                    state.results_collation = None
    if effects is not None:
        for name in effects.sysvars_set_null:
            if name not in PROXY_OWNED:
                state.variables[name] = None
                if name == CHARACTER_SET_RESULTS:
                    state.results_collation = None


# -- bringing a backend to a client's state -----------------------------------


class SyncKind(enum.Enum):
    SET_OPTION = "set_option"  # COM_SET_OPTION (multi-statements on/off)
    INIT_DB = "init_db"  # COM_INIT_DB
    SET = "set"  # COM_QUERY SET SESSION ...


@dataclass(frozen=True, slots=True)
class SyncStep:
    kind: SyncKind
    arg: bytes  # option value, schema name, or the SET statement


class SyncImpossible(Exception):
    """The backend cannot be brought to the client's state (it has a schema; the client has none)."""


def sync_plan(backend: SessionState, client: SessionState) -> list[SyncStep]:
    """The fewest commands that make `backend` look like `client`."""
    steps = []
    if backend.multi_statements != client.multi_statements:
        steps.append(SyncStep(SyncKind.SET_OPTION, b"\x00\x00" if client.multi_statements else b"\x01\x00"))
    if backend.schema != client.schema:
        if client.schema is None:
            raise SyncImpossible("a selected schema cannot be unselected")
        steps.append(SyncStep(SyncKind.INIT_DB, client.schema))
    clauses = [c for c in (variables_clause(backend, client),
                           user_var_clause(backend.user_vars, client.user_vars)) if c]
    if clauses:
        steps.append(SyncStep(SyncKind.SET, b"SET " + b", ".join(clauses)))
    return steps


def variables_clause(backend: SessionState, client: SessionState) -> bytes:
    """Assignments giving the backend the client's variables and the collations behind them.

    When the collations behind character_set_client/_results differ, `NAMES cs COLLATE coll`
    comes first (it sets all four character set variables); the variables that differ from
    what it set follow, each plain SET giving its charset's default collation."""
    want_client, want_results = client.hidden_collations()
    have_client, have_results = backend.hidden_collations()
    have = backend.variables
    if want_client == have_client and want_results == have_results:
        return set_clause(have, client.variables)
    names = want_client or want_results
    if names is None:
        # Back to the defaults: a plain SET of the variable gives its charset's default collation.
        forced = [n for n, c in ((CHARACTER_SET_CLIENT, have_client), (CHARACTER_SET_RESULTS, have_results))
                  if c is not None]
        return set_clause(have, client.variables, forced)
    have = {**have, **names_variables(names)}
    forced = [n for n, c in ((CHARACTER_SET_CLIENT, want_client), (CHARACTER_SET_RESULTS, want_results))
              if c != names]
    rest = set_clause(have, client.variables, forced)
    set_names = b"NAMES " + sql_literal(names.charset) + b" COLLATE " + sql_literal(names.name)
    return set_names + b", " + rest if rest else set_names


def user_var_clause(have: dict[bytes, bytes], want: dict[bytes, bytes]) -> bytes:
    """Assignments giving the backend exactly the client's user variables (others NULL)."""
    parts = [b"@`" + n.replace(b"`", b"``") + b"`=" + want[n] for n in want if have.get(n) != want[n]]
    parts += [b"@`" + n.replace(b"`", b"``") + b"`=NULL" for n in have if n not in want]
    return b", ".join(parts)


def set_clause(have: dict[bytes, bytes | None], want: dict[bytes, bytes | None],
               forced: Collection[bytes] = ()) -> bytes:
    """Assignments giving the backend the client's variables (`forced`: set even if equal)."""
    names = [n for n in want if have.get(n, _MISSING) != want[n] or n in forced]
    names += [n for n in have if n not in want]
    names += [n for n in forced if n not in want and n not in have]
    if not names:
        return b""
    if b"character_set_connection" in names and b"collation_connection" in want \
            and b"collation_connection" not in names:
        # Setting character_set_connection resets collation_connection to its default: set it again after.
        names.append(b"collation_connection")
    names.sort(key=lambda n: (0 if n in _FIRST else 1 if n in _SECOND else 2, _FIRST.index(n) if n in _FIRST else 0))
    parts = [b"@@session.`" + n.replace(b"`", b"``") + b"`="
             + (b"DEFAULT" if n not in want else sql_literal(want[n])) for n in names]
    return b", ".join(parts)


_MISSING = object()
_NUMERIC = re.compile(rb"-?\d+(\.\d+)?([eE][+-]?\d+)?")
_PLAIN = re.compile(rb"[A-Za-z0-9_,.:+\-/ ]*")


def sql_literal(value: bytes | None) -> bytes:
    """A literal the server reads back as `value`, whatever the session's sql_mode."""
    if value is None:
        return b"NULL"
    if _NUMERIC.fullmatch(value):
        return value
    if _PLAIN.fullmatch(value):
        return b"'" + value + b"'"
    # Quotes or backslashes mean different things under NO_BACKSLASH_ESCAPES: use hex.
    return b"X'" + value.hex().encode() + b"'"

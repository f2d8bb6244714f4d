"""Prepared statements under transaction pooling: client ids, backend caches, keys.

A client's binary-protocol statement (COM_STMT_PREPARE) is recorded as a
`ClientStatement`: its SQL, parameter and column counts, the parameter types
it last bound, and a `key`. Each backend keeps a bounded LRU `StatementCache`
of the statements prepared on it, by key. A statement may be executed on
whichever backend serves the client next: if that backend lacks it, the
proxy prepares it there first (hidden from the client) and checks that the
counts agree. Server statements are shared by every client whose statement
has the same key, and closed on the server when evicted from the LRU, so the
server's max_prepared_stmt_count is not reached by the proxy alone (the cache is
sized from it); when the server still refuses a prepare with 1461 (other
clients of the server), the backend's idle statements are closed and the
prepare is tried once more.

The key is the SQL plus the session state that changes what it means when
prepared: the schema (unqualified table names), sql_mode (quoting, parsing)
and the connection's character set and collation (literals).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from ..constants import COM_STMT_BULK_EXECUTE, COMMAND
from ..protocol.bulk import parse_bulk, with_bulk_types
from ..protocol.framing import Packet, encode_packet
from ..protocol.sql import NO_EFFECTS, SqlEffects
from ..protocol.stmt import parse_execute, with_statement_id, with_types
from .session import SessionState

__all__ = ["ClientStatement", "ServerStatement", "StatementCache", "statement_key", "backend_statement_packet",
           "prepared_state"]

_KEY_VARIABLES = (b"sql_mode", b"character_set_client", b"character_set_connection", b"collation_connection")


# (schema, the values of _KEY_VARIABLES, sql): what a server-side statement can be shared by
StatementKey = tuple[bytes | None, ...]


def statement_key(session: SessionState, sql: bytes) -> StatementKey:
    variables = session.variables
    return (session.schema, *(variables.get(name) for name in _KEY_VARIABLES), sql)


@dataclass(slots=True)
class ClientStatement:
    id: int
    sql: bytes
    key: StatementKey
    params: int
    columns: int
    effects: SqlEffects = field(default_factory=lambda: NO_EFFECTS)  # what executing it does to session state
    types: bytes | None = None  # the parameter types this client last bound


def prepared_state(stmt: ClientStatement, base: SessionState) -> SessionState:
    """`base` brought to the state `stmt` was prepared in (its schema, sql_mode, character set),
    which is how it must be prepared again on another backend to mean the same."""
    target = base.copy()
    target.schema = stmt.key[0]  # None too (see Proxy.prepare_on)
    for name, value in zip(_KEY_VARIABLES, stmt.key[1:1 + len(_KEY_VARIABLES)]):
        if value is None:
            target.variables.pop(name, None)
        else:
            target.variables[name] = value
    return target


@dataclass(slots=True)
class ServerStatement:
    server_id: int
    params: int
    columns: int
    types: bytes | None = None  # the parameter types last bound on the server statement
    busy: bool = False  # a cursor or long data lives on it: not evictable


class StatementCache:
    """LRU of server statements on one backend."""

    __slots__ = ("capacity", "_entries")

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._entries: OrderedDict[StatementKey, ServerStatement] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: StatementKey) -> bool:
        return key in self._entries

    def get(self, key: StatementKey) -> ServerStatement | None:
        stmt = self._entries.get(key)
        if stmt is not None:
            self._entries.move_to_end(key)
        return stmt

    def put(self, key: StatementKey, stmt: ServerStatement) -> list[ServerStatement]:
        """Add (or replace) a statement; returns the server statements to close."""
        dropped = []
        old = self._entries.pop(key, None)
        if old is not None and old.server_id != stmt.server_id:
            dropped.append(old)
        self._entries[key] = stmt
        if len(self._entries) > self.capacity:
            for k in list(self._entries):
                if len(self._entries) <= self.capacity:
                    break
                if k != key and not self._entries[k].busy:
                    dropped.append(self._entries.pop(k))
        return dropped

    def pop(self, key: StatementKey) -> ServerStatement | None:
        return self._entries.pop(key, None)

    def evict_idle(self) -> list[ServerStatement]:
        """Drop every statement no cursor or long data lives on; returns them, to be closed."""
        dropped = [stmt for stmt in self._entries.values() if not stmt.busy]
        for key in [k for k, stmt in self._entries.items() if not stmt.busy]:
            del self._entries[key]
        return dropped

    def clear(self) -> None:
        self._entries.clear()


def backend_statement_packet(stmt: ClientStatement, server: ServerStatement, pkt: Packet) -> bytes:
    """The client's COM_STMT_* packet as the backend must see it: its statement id, and for
    COM_STMT_EXECUTE and COM_STMT_BULK_EXECUTE the parameter types the server statement needs
    but has not seen (both commands bind the same types, and the server keeps them for both).

    An execute (a bulk) has been checked with parse_execute (parse_bulk) when it arrived
    (client/statements.py), against the same parameter count: parsing it again here cannot fail."""
    payload = with_statement_id(pkt.payload, server.server_id)
    code = payload[0]
    if code == COMMAND.COM_STMT_EXECUTE and stmt.params:
        header = parse_execute(payload, stmt.params)
        if header.types_bound:
            stmt.types = header.types
        elif stmt.types is not None and server.types != stmt.types:
            payload = with_types(payload, header, stmt.types)
        server.types = stmt.types
    elif code == COM_STMT_BULK_EXECUTE and stmt.params:
        types = parse_bulk(payload, stmt.params).types
        if types is not None:
            stmt.types = types
        elif stmt.types is not None and server.types != stmt.types:
            payload = with_bulk_types(payload, stmt.types)
        server.types = stmt.types
    return encode_packet(payload, pkt.seq)

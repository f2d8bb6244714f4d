"""Session-state-change blocks of OK packets: what the server says changed.

With CLIENT_SESSION_TRACK and the trackers on, an OK packet whose status has
SERVER_SESSION_STATE_CHANGED carries a block of entries `type(1)
lenenc(data)`. This module turns that block into a `StateChanges` summary:
system variables set (name -> value, both raw bytes in the connection's
character set), the new default schema, whether other state changed
(`state_change`: user variables, temporary tables, prepared statements, ...),
the pending transaction characteristics and the transaction state string.

Unknown entry types are skipped (the protocol allows new ones).

The proxy turns every tracker on for its backends, but a client must see
only what its own trackers would report on a direct connection (`Trackers`,
from its session_track_* settings): `Trackers.filter` keeps those entries of
a block, `Trackers.report` builds the block of an answer the proxy gives
itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..constants import SESSION_TRACK
from ..errors import RemoteProtocolError
from .wire import Reader, lenenc_bytes

__all__ = ["StateChanges", "Trackers", "TRACKER_VARIABLES", "parse_state_changes", "make_state_changes"]


# Made for every OK with a state-change block (every statement of a transaction), so its __init__ is
# written out: mypyc compiles it (a dataclass's generated one, and a slots=True dataclass, stay interpreted).
@dataclass(init=False)
class StateChanges:
    variables: list[tuple[bytes, bytes]]
    schema: bytes | None
    state_change: bool
    trx_characteristics: bytes | None
    trx_state: bytes | None
    gtids: bytes | None

    def __init__(self, variables: list[tuple[bytes, bytes]] | None = None, schema: bytes | None = None,
                 state_change: bool = False, trx_characteristics: bytes | None = None,
                 trx_state: bytes | None = None, gtids: bytes | None = None) -> None:
        self.variables = [] if variables is None else variables
        self.schema = schema
        self.state_change = state_change
        self.trx_characteristics = trx_characteristics
        self.trx_state = trx_state
        self.gtids = gtids

    def merge(self, other: StateChanges) -> None:
        """Fold a later OK's changes into this one (multi-statement responses)."""
        self.variables.extend(other.variables)
        if other.schema is not None:
            self.schema = other.schema
        self.state_change = self.state_change or other.state_change
        if other.trx_characteristics is not None:
            self.trx_characteristics = other.trx_characteristics
        if other.trx_state is not None:
            self.trx_state = other.trx_state
        if other.gtids is not None:
            self.gtids = other.gtids


def parse_state_changes(block: bytes) -> StateChanges:
    changes = StateChanges()
    r = Reader(block)
    while not r.at_end():
        kind = r.int1()
        data = r.lenenc_bytes()
        _apply_entry(changes, kind, data)
    return changes


def _apply_entry(changes: StateChanges, kind: int, data: bytes) -> None:
    e = Reader(data)
    if kind == SESSION_TRACK.SYSTEM_VARIABLES:
        while not e.at_end():
            name = e.lenenc_bytes()
            value = e.lenenc_bytes()
            changes.variables.append((name.lower(), value))
    elif kind == SESSION_TRACK.SCHEMA:
        changes.schema = e.lenenc_bytes()
    elif kind == SESSION_TRACK.STATE_CHANGE:
        # The data is the bare flag "1"/"0" (MySQL and MariaDB alike); accept
        # a length-encoded flag too, as the protocol pages describe it.
        flag = data[1:] if len(data) == 2 and data[0] == 1 else data
        if flag not in (b"0", b"1"):
            raise RemoteProtocolError(f"bad state-change tracker value {flag!r}")
        changes.state_change = changes.state_change or flag == b"1"
    elif kind == SESSION_TRACK.TRANSACTION_CHARACTERISTICS:
        changes.trx_characteristics = e.lenenc_bytes()
    elif kind == SESSION_TRACK.TRANSACTION_STATE:
        changes.trx_state = e.lenenc_bytes()
    elif kind == SESSION_TRACK.GTIDS:
        e.int1()  # encoding specification
        changes.gtids = e.lenenc_bytes() if not e.at_end() else b""


def make_state_changes(variables: list[tuple[bytes, bytes]], state_change: bool = True) -> bytes:
    """A session-state-change block reporting `variables` (and the state-change flag)."""
    parts = []
    for name, value in variables:
        data = lenenc_bytes(name) + lenenc_bytes(value)
        parts.append(bytes((SESSION_TRACK.SYSTEM_VARIABLES,)) + lenenc_bytes(data))
    if state_change:
        parts.append(bytes((SESSION_TRACK.STATE_CHANGE,)) + lenenc_bytes(b"1"))
    return b"".join(parts)


# The variables that say which trackers a session has on.
TRACKER_VARIABLES = (b"session_track_system_variables", b"session_track_schema", b"session_track_state_change",
                     b"session_track_transaction_info")
_TRANSACTION_INFO = {b"off": 0, b"state": 1, b"characteristics": 2}
_TRUE = (b"1", b"on", b"true")


@dataclass(frozen=True, slots=True)
class Trackers:
    """Which session trackers a connection has on: what its OK packets may report."""

    variables: frozenset[bytes] | None  # names tracked; None: all ('*')
    schema: bool
    state_change: bool
    transaction_info: int  # 0 off, 1 state, 2 characteristics (and state)

    @classmethod
    def from_settings(cls, settings: Mapping[bytes, bytes | None]) -> Trackers:
        """From the values of TRACKER_VARIABLES (as the server shows them)."""
        names = (settings.get(TRACKER_VARIABLES[0]) or b"").lower()
        variables = None if names.strip() == b"*" else frozenset(
            n.strip() for n in names.split(b",") if n.strip())
        return cls(
            variables=variables,
            schema=(settings.get(TRACKER_VARIABLES[1]) or b"").lower() in _TRUE,
            state_change=(settings.get(TRACKER_VARIABLES[2]) or b"").lower() in _TRUE,
            transaction_info=_TRANSACTION_INFO.get((settings.get(TRACKER_VARIABLES[3]) or b"off").lower(), 0),
        )

    def updated(self, variables: list[tuple[bytes, bytes]]) -> Trackers:
        """These trackers after a statement that set `variables` (those of TRACKER_VARIABLES count)."""
        settings = {name: value for name, value in variables if name in TRACKER_VARIABLES}
        if not settings:
            return self
        current = {
            TRACKER_VARIABLES[0]: b"*" if self.variables is None else b",".join(sorted(self.variables)),
            TRACKER_VARIABLES[1]: b"1" if self.schema else b"0",
            TRACKER_VARIABLES[2]: b"1" if self.state_change else b"0",
            TRACKER_VARIABLES[3]: (b"off", b"state", b"characteristics")[self.transaction_info],
        }
        return Trackers.from_settings(current | settings)

    def _keeps(self, kind: int, data: bytes) -> bool:
        if kind == SESSION_TRACK.SYSTEM_VARIABLES:
            if self.variables is None:
                return True
            name = Reader(data).lenenc_bytes().lower()
            return name in self.variables
        if kind == SESSION_TRACK.SCHEMA:
            return self.schema
        if kind == SESSION_TRACK.STATE_CHANGE:
            return self.state_change
        if kind == SESSION_TRACK.TRANSACTION_CHARACTERISTICS:
            return self.transaction_info >= 2
        if kind == SESSION_TRACK.TRANSACTION_STATE:
            return self.transaction_info >= 1
        return True  # GTIDs and kinds the proxy never turns on: the client's own doing

    def filter(self, block: bytes) -> bytes:
        """The entries of a state-change block that these trackers report ("" for none)."""
        r = Reader(block)
        kept = []
        start = 0
        while not r.at_end():
            kind = r.int1()
            data = r.lenenc_bytes()
            end = r.pos
            if self._keeps(kind, data):
                kept.append(block[start:end])
            start = end
        return b"".join(kept) if len(kept) != 0 else b""

    def report(self, variables: list[tuple[bytes, bytes]], state_change: bool = True) -> bytes | None:
        """The block a server with these trackers sends for a statement that set `variables`."""
        parts = []
        for name, value in variables:
            if self.variables is None or name in self.variables:
                data = lenenc_bytes(name) + lenenc_bytes(value)
                parts.append(bytes((SESSION_TRACK.SYSTEM_VARIABLES,)) + lenenc_bytes(data))
        if state_change and self.state_change:
            parts.append(bytes((SESSION_TRACK.STATE_CHANGE,)) + lenenc_bytes(b"1"))
        return b"".join(parts) or None

"""Session-state-change blocks of OK packets: what the server says changed.

With CLIENT_SESSION_TRACK and the trackers on, an OK packet whose status has
SERVER_SESSION_STATE_CHANGED carries a block of entries `type(1)
lenenc(data)`. This module turns that block into a `StateChanges` summary:
system variables set (name -> value, both raw bytes in the connection's
character set), the new default schema, whether other state changed
(`state_change`: user variables, temporary tables, prepared statements, ...),
the pending transaction characteristics and the transaction state string.

Unknown entry types are skipped (the protocol allows new ones).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..constants import SESSION_TRACK
from ..errors import RemoteProtocolError
from .wire import Reader, lenenc_bytes

__all__ = ["StateChanges", "parse_state_changes", "make_state_changes"]


@dataclass(slots=True)
class StateChanges:
    variables: list[tuple[bytes, bytes]] = field(default_factory=list)
    schema: bytes | None = None
    state_change: bool = False
    trx_characteristics: bytes | None = None
    trx_state: bytes | None = None
    gtids: bytes | None = None

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

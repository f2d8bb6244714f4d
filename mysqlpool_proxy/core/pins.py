"""Pins: session state that cannot move to another backend, by reason.

A client that has any of it keeps its backend until the state is gone: user
variables the proxy cannot name, temporary tables, LOCK TABLES, named locks,
SQL PREPAREd statements, long data and open cursors of binary prepared
statements, HANDLERs, XA, a pending `SET TRANSACTION` for the next
transaction, a change to the session trackers, and any change the trackers
flag that the proxy cannot explain. Each pin has a reason (counted in
metrics) and lifts when its state is gone. The diagnostics of the last
statement pin softly: given up when other clients wait. Pure: no I/O.
"""

from __future__ import annotations

import enum

from ..protocol.session_track import StateChanges
from ..protocol.sql import SqlEffects

__all__ = ["PinReason", "Pins"]

class PinReason(enum.Enum):
    SESSION_MODE = "session_mode"
    TRANSACTION = "transaction"
    USER_VARIABLE = "user_variable"
    TEMPORARY_TABLE = "temporary_table"
    LOCK_TABLES = "lock_tables"
    NAMED_LOCK = "named_lock"
    SQL_PREPARE = "sql_prepare"
    LONG_DATA = "long_data"
    CURSOR = "cursor"
    HANDLER = "handler"
    XA = "xa"
    BACKUP_STAGE = "backup_stage"
    TRANSACTION_CHARACTERISTICS = "transaction_characteristics"
    DIAGNOSTICS = "diagnostics"  # warnings/errors/FOUND_ROWS of the last statement: until the next one
    SESSION_TRACKING = "session_tracking"
    UNKNOWN_STATE = "unknown_state"


class Pins:
    """Unmovable state of one client, by reason; `reasons()` is empty when it may move."""

    __slots__ = (
        "user_variables", "temp_tables", "lock_tables", "named_locks", "unnamed_locks", "sql_prepared",
        "long_data", "cursors", "handlers", "xa", "backup_stage", "trx_characteristics", "tracking_changed",
        "unknown_state", "diagnostics",
    )

    def __init__(self) -> None:
        self.user_variables = False
        self.temp_tables: set[bytes] = set()
        self.lock_tables = False
        self.named_locks: set[bytes] = set()
        self.unnamed_locks = False
        self.sql_prepared: set[bytes] = set()
        self.long_data: set[int] = set()  # statements with COM_STMT_SEND_LONG_DATA not yet executed
        self.cursors: set[int] = set()
        self.handlers: set[bytes] = set()
        self.xa = False
        self.backup_stage = False
        self.trx_characteristics = False
        self.tracking_changed = False
        self.unknown_state = False
        self.diagnostics = False  # soft: yielded when other clients wait for a backend

    def clear(self) -> None:
        """Nothing pinned (a fresh session). The sets are emptied in place: a login makes none."""
        self.user_variables = False
        self.temp_tables.clear()
        self.lock_tables = False
        self.named_locks.clear()
        self.unnamed_locks = False
        self.sql_prepared.clear()
        self.long_data.clear()
        self.cursors.clear()
        self.handlers.clear()
        self.xa = False
        self.backup_stage = False
        self.trx_characteristics = False
        self.tracking_changed = False
        self.unknown_state = False
        self.diagnostics = False  # soft: yielded when other clients wait for a backend

    def only_soft(self) -> bool:
        """Pinned by nothing but the diagnostics of its last statement (which may be given up)."""
        return self.diagnostics and not self._hard()

    def reasons(self) -> list[PinReason]:
        out = []
        if self.user_variables:
            out.append(PinReason.USER_VARIABLE)
        if self.temp_tables:
            out.append(PinReason.TEMPORARY_TABLE)
        if self.lock_tables:
            out.append(PinReason.LOCK_TABLES)
        if self.named_locks or self.unnamed_locks:
            out.append(PinReason.NAMED_LOCK)
        if self.sql_prepared:
            out.append(PinReason.SQL_PREPARE)
        if self.long_data:
            out.append(PinReason.LONG_DATA)
        if self.cursors:
            out.append(PinReason.CURSOR)
        if self.handlers:
            out.append(PinReason.HANDLER)
        if self.xa:
            out.append(PinReason.XA)
        if self.backup_stage:
            out.append(PinReason.BACKUP_STAGE)
        if self.trx_characteristics:
            out.append(PinReason.TRANSACTION_CHARACTERISTICS)
        if self.tracking_changed:
            out.append(PinReason.SESSION_TRACKING)
        if self.unknown_state:
            out.append(PinReason.UNKNOWN_STATE)
        if self.diagnostics:
            out.append(PinReason.DIAGNOSTICS)
        return out

    def __bool__(self) -> bool:
        return self.diagnostics or self._hard()

    def _hard(self) -> bool:
        return bool(
            self.user_variables or self.temp_tables or self.lock_tables or self.named_locks or self.unnamed_locks
            or self.sql_prepared or self.long_data or self.cursors or self.handlers or self.xa or self.backup_stage
            or self.trx_characteristics or self.tracking_changed or self.unknown_state
        )

    def apply_sql(self, fx: SqlEffects, succeeded: bool) -> bool:
        """Record what a query did; returns True if that explains a tracker 'state changed' flag."""
        explained = False
        if fx.user_var_write:
            explained = True
            if fx.user_var_unknown:
                self.user_variables = True  # names unknown: their values cannot follow the client
        if fx.session_tracking_changed and succeeded:
            self.tracking_changed = explained = True
        if succeeded:
            explained = self._apply_objects(fx) or explained
        # Locks are pinned even when the statement failed: a lock may be held.
        for name in fx.named_locks_taken:
            if name is None:
                self.unnamed_locks = True
            else:
                self.named_locks.add(name)
        for name in fx.named_locks_released:
            if name is not None:
                self.named_locks.discard(name)
        if fx.release_all_locks and succeeded:
            self.named_locks.clear()
            self.unnamed_locks = False
        return explained

    def _apply_objects(self, fx: SqlEffects) -> bool:
        explained = False
        for name in fx.temp_tables_created:
            self.temp_tables.add(name)
            explained = True
        for name in fx.tables_dropped:
            if name in self.temp_tables:
                self.temp_tables.discard(name)
                explained = True
        if fx.lock_tables:
            self.lock_tables = explained = True
        if fx.unlock_tables:
            self.lock_tables = False
            explained = True
        for name in fx.sql_prepared:
            self.sql_prepared.add(name)
            explained = True
        for name in fx.sql_deallocated:
            self.sql_prepared.discard(name)
            explained = True
        for name in fx.handlers_opened:
            self.handlers.add(name)
            explained = True
        for name in fx.handlers_closed:
            self.handlers.discard(name)
            explained = True
        if fx.xa_started:
            self.xa = True
        if fx.xa_ended:
            self.xa = False
        if fx.backup_stage is not None:
            self.backup_stage = fx.backup_stage != b"end"
            explained = True
        return explained

    def apply_tracker(self, changes: StateChanges, explained: bool) -> None:
        """What the trackers said. A state change nobody explained pins until reset.

        `explained` is True when the statement's own effects account for the
        flag: a recognised SQL effect, or a command that only sets variables or
        the schema (which the trackers reported in full).
        """
        if changes.trx_characteristics is not None:
            self.trx_characteristics = bool(changes.trx_characteristics)
        if changes.state_change and not explained:
            self.unknown_state = True

"""A client's session as the proxy carries it, and what each response does to it: pure, no I/O.

`ClientSession` owns what follows a client from backend to backend: its
movable state (SessionState: schema, variables, the hidden collations), what
pins it (Pins), the server status it was last told, whether a transaction is
open, the session trackers it would have on a direct connection, its
prepared statements (the client's ids), its LAST_INSERT_ID(), the number of
statements it ran (for diagnostics ownership), an error owed to its next
command, and whether it ended its own connection (a KILL of itself, COMMIT
RELEASE): `ending`, the reason it is closed once its answer is out.

`Command` is the command in flight. `ClientSession.finish(command,
response)` is the decision after each response: it records what the
response says (status, transaction, tracked changes, pins, statements,
insert id, diagnostics) and returns an `Outcome` saying what the connection
must do about it: follow-up statements to run hidden on the backend, the
backend's own bookkeeping, and the counts for metrics. Whether the client
then keeps its backend is `holds_state()`.

A transaction is open while the server reports it (SERVER_STATUS_IN_TRANS),
and also, with autocommit off, from any statement to the COMMIT or ROLLBACK
that ends it, whatever the flag says: a SAVEPOINT before the first table
lives on that server connection (protocol/transaction.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..constants import COM_STMT_BULK_EXECUTE, COMMAND, SERVER_STATUS
from ..errors import CONNECTION_ENDING_ERRORS, ProxyError
from ..protocol.command import CommandSpec
from ..protocol.response import ResponseTracker
from ..protocol.session_track import StateChanges, Trackers
from ..protocol.sql import (
    ANSI_QUOTES,
    NO_BACKSLASH_ESCAPES,
    NO_EFFECTS,
    SqlEffects,
    analyze,
    releases_connection,
    session_only,
    tables_redefined,
)
from ..protocol.transaction import leaves_transaction_open
from ..reasons import ClientCloseReason
from .capture import CHARSET_VARIABLES, Capture, CollationTable
from .pins import PinReason, Pins
from .session import SessionState, apply_changes
from .statements import ClientStatement, statement_key

__all__ = ["ClientSession", "Command", "Outcome", "FollowUp", "STMT_ID_COMMANDS", "NO_REPLY_CODES",
           "STICKY_STATUS"]

IN_TRANS: Final = SERVER_STATUS.SERVER_STATUS_IN_TRANS
AUTOCOMMIT: Final = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
CURSOR_EXISTS: Final = SERVER_STATUS.SERVER_STATUS_CURSOR_EXISTS
LAST_ROW_SENT: Final = SERVER_STATUS.SERVER_STATUS_LAST_ROW_SENT
NO_BACKSLASH_STATUS: Final = SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES
_AUTOCOMMIT_NOT_IN_TRANS: Final = AUTOCOMMIT | IN_TRANS  # (masked: AUTOCOMMIT alone, no IN_TRANS)
# Status bits that describe the session rather than one response.
STICKY_STATUS: Final = IN_TRANS | AUTOCOMMIT | NO_BACKSLASH_STATUS | 0x2000 | 0x8000

NO_REPLY_CODES: Final = frozenset((COMMAND.COM_STMT_CLOSE, COMMAND.COM_STMT_SEND_LONG_DATA, COMMAND.COM_QUIT))
STMT_ID_COMMANDS: Final = frozenset((
    COMMAND.COM_STMT_EXECUTE, COMMAND.COM_STMT_FETCH, COMMAND.COM_STMT_RESET, COMMAND.COM_STMT_CLOSE,
    COMMAND.COM_STMT_SEND_LONG_DATA, COM_STMT_BULK_EXECUTE,
))
# Commands that run a statement (a bulk execute runs its statement once per parameter set, as one).
_STATEMENT_COMMANDS: Final = (COMMAND.COM_QUERY, COMMAND.COM_STMT_EXECUTE, COM_STMT_BULK_EXECUTE)
_EXECUTES: Final = (COMMAND.COM_STMT_EXECUTE, COM_STMT_BULK_EXECUTE)


# Made for every command, so its __init__ is written out: mypyc compiles it (a dataclass's generated
# __init__, and a whole dataclass with slots=True, stay interpreted). The dataclass gives == and repr.
@dataclass(init=False)
class Command:
    """The command in flight, and what the proxy knows of it."""

    spec: CommandSpec
    effects: SqlEffects | None  # what it does to session state (queries, executes)
    sql: bytes  # its SQL, when it matters (queries with effects, prepares, executes)
    stmt: ClientStatement | None  # the client's statement it names (statement-id commands)
    stmt_id: int  # that statement's id; for a prepare, the id the new one gets
    seq: int  # the sequence id of the client's last packet of it (replies follow it)
    prev_status: int  # the session's status before it
    sent: bytes  # the packet as the backend got it
    response_started: bool  # bytes of the response have reached the client
    started: float  # loop time it went to the server (its duration is measured from here)

    def __init__(self, spec: CommandSpec, effects: SqlEffects | None = None, sql: bytes = b"",
                 stmt: ClientStatement | None = None, stmt_id: int = 0, seq: int = 0, prev_status: int = 0,
                 sent: bytes = b"", response_started: bool = False, started: float = 0.0) -> None:
        self.spec = spec
        self.effects = effects
        self.sql = sql
        self.stmt = stmt
        self.stmt_id = stmt_id
        self.seq = seq
        self.prev_status = prev_status
        self.sent = sent
        self.response_started = response_started
        self.started = started


@dataclass(slots=True)
class FollowUp:
    """Hidden statements to run on the backend before it may go (see capture.py and followups.py).
    A tracker report the server holds back (an EOF could not carry it) is fetched first: the backend
    knows whether one is (`BackendConnection.report_held`)."""

    capture: Capture  # read back state the trackers do not report
    probe: bool  # a ping, to learn the status an error left


# Made for every response (its __init__ written out, as Command's).
@dataclass(init=False)
class Outcome:
    """What a response means for the connection (the session has recorded it already)."""

    ends_backend: bool  # an error after which the server hangs up
    follow_up: FollowUp | None
    changes: StateChanges | None  # for the backend's own state (with `null_sysvars`)
    null_sysvars: SqlEffects | None
    prepared: ClientStatement | None  # a new statement: the backend caches its server statement
    statement_busy: bool | None  # a cursor or long data lives on the statement's server statement
    new_pins: list[PinReason]  # reasons the client got pinned by it
    transaction_ended: bool
    unexplained_change: bool  # the server reported a change the proxy cannot carry: now pinned

    def __init__(self) -> None:
        self.ends_backend = False
        self.follow_up = None
        self.changes = None
        self.null_sysvars = None
        self.prepared = None
        self.statement_busy = None
        self.new_pins = []
        self.transaction_ended = False
        self.unexplained_change = False


class ClientSession:
    """What follows a client from backend to backend (see the module comment)."""

    __slots__ = ("state", "pins", "status", "trx_open", "trackers", "statements", "_next_stmt_id",
                 "last_insert_id", "queries", "pending_error", "ending")

    def __init__(self, state: SessionState, status: int, trackers: Trackers | None) -> None:
        self.state = state
        self.pins = Pins()
        self.status = status
        self.trx_open = bool(status & IN_TRANS)
        self.trackers = trackers  # its session trackers, as on a direct connection
        self.statements: dict[int, ClientStatement] = {}  # its binary prepared statements, by its ids
        self._next_stmt_id = 1
        self.last_insert_id = 0  # its LAST_INSERT_ID(), whatever backend it ran on
        self.queries = 0  # statements sent; (client id, queries) names the diagnostics a backend holds
        self.pending_error: ProxyError | None = None  # owed to its next command (see followups.py)
        # It ended its own connection (KILLed itself in a multi-statement query, COMMIT RELEASE):
        # closed, for this reason, once the answer is out.
        self.ending: ClientCloseReason | None = None

    def restart(self, state: SessionState, status: int, trackers: Trackers | None) -> None:
        """A fresh session (the login, COM_RESET_CONNECTION, COM_CHANGE_USER): state, pins, status,
        trackers."""
        self.state = state
        if self.pins:  # (every pin counts in its truth value: nothing to clear at a login)
            self.pins.clear()
        self.status = status
        self.trx_open = bool(status & IN_TRANS)
        self.trackers = trackers

    # -- what it holds ------------------------------------------------------------

    def holds_state(self) -> bool:
        """Anything that lives on its backend only: an open transaction, or a pin."""
        return self.trx_open or bool(self.pins)

    def pinned_reasons(self) -> list[PinReason]:
        reasons = self.pins.reasons()
        if self.trx_open:
            reasons.insert(0, PinReason.TRANSACTION)
        return reasons

    @property
    def quoting(self) -> int:
        """How the server reads quotes in its statements (its sql_mode), for SQL analysis."""
        mode = NO_BACKSLASH_ESCAPES if self.status & NO_BACKSLASH_STATUS else 0
        sql_mode = self.state.variables.get(b"sql_mode")
        if sql_mode and b"ANSI_QUOTES" in sql_mode.upper():
            mode |= ANSI_QUOTES
        return mode

    def learn_status(self, status: int) -> None:
        """The server's status after a command of the proxy's own on the client's backend."""
        self.status = status
        if status & IN_TRANS:
            self.trx_open = True
        elif status & AUTOCOMMIT:
            self.trx_open = False

    def rolled_back(self, status: int) -> None:
        """Its transaction was rolled back (idle_transaction_timeout)."""
        self.status = status
        self.trx_open = bool(status & IN_TRANS)

    def new_statement_id(self) -> int:
        sid = self._next_stmt_id
        self._next_stmt_id += 1
        return sid

    # -- after a response ---------------------------------------------------------------

    def finish(self, cmd: Command, response: ResponseTracker, collations: CollationTable) -> Outcome:
        """Record what the response to `cmd` says; what the connection must do about it."""
        if (cmd.effects is NO_EFFECTS and response.error is None and response.changes is None
                and not response.warnings and not response.last_insert_id and not self.trx_open
                and response.status & _AUTOCOMMIT_NOT_IN_TRANS == AUTOCOMMIT and cmd.stmt is None
                and not self.releases_on_end()):
            # The usual answer: a statement with no SQL effects, autocommit on and no transaction
            # before or after, nothing reported. What the general path below records for it:
            self.status = response.status
            self.pins.diagnostics = False
            return Outcome()
        ok = response.error is None
        was_open = self.trx_open
        if ok:
            self.status = response.status
        self._track_transaction(cmd, ok, bool(response.ok_count or response.result_sets))
        outcome = Outcome()
        self._record_state(cmd, response, ok, outcome)
        outcome.transaction_ended = was_open and not self.trx_open
        if not was_open and self.trx_open:
            outcome.new_pins.append(PinReason.TRANSACTION)  # a transaction pins until it ends
        if not ok and response.error is not None and response.error.errno in CONNECTION_ENDING_ERRORS:
            outcome.ends_backend = True
            return outcome
        if ok and self._releases_connection(cmd):
            self.ending = ClientCloseReason.RELEASED  # the server hangs up after this OK, as on the client
            outcome.ends_backend = True
            return outcome
        if response.last_insert_id:
            self.last_insert_id = response.last_insert_id
        # Warnings and SQL_CALC_FOUND_ROWS are read by the next statement (SHOW WARNINGS,
        # FOUND_ROWS()): keep the backend for it, softly (yielded if others wait).
        fx = cmd.effects
        diagnostics = bool(response.warnings or (fx is not None and fx.calc_found_rows))
        if diagnostics and not self.pins.diagnostics:
            outcome.new_pins.append(PinReason.DIAGNOSTICS)
        self.pins.diagnostics = diagnostics
        outcome.follow_up = self._follow_up_for(cmd, response, ok, collations)
        return outcome

    def _releases_connection(self, cmd: Command) -> bool:
        """COMMIT / ROLLBACK ... RELEASE, or a plain one with completion_type = RELEASE."""
        if cmd.spec.code != COMMAND.COM_QUERY:
            return False
        if cmd.effects is not None and cmd.effects.releases_connection:
            return True
        return self.releases_on_end() and releases_connection(cmd.sql, self.quoting)

    def releases_on_end(self) -> bool:
        """completion_type = RELEASE: every COMMIT and ROLLBACK ends the connection."""
        value = self.state.variables.get(b"completion_type")  # (unset, as usual: nothing more to do)
        return value is not None and value.upper() in (b"RELEASE", b"2")

    def _track_transaction(self, cmd: Command, ok: bool, some_ran: bool) -> None:
        """Is a transaction open after this command? (The flag, and with autocommit off the statements.)"""
        status = self.status
        if status & (IN_TRANS | AUTOCOMMIT):
            self.learn_status(status)  # with autocommit on, nothing outlives a statement but a flagged transaction
        elif cmd.spec.code not in _STATEMENT_COMMANDS:
            return  # preparing, COM_INIT_DB...: they open nothing and end nothing
        elif ok:
            self.trx_open = leaves_transaction_open(cmd.sql, bool(cmd.prev_status & AUTOCOMMIT), self.quoting)
        elif some_ran:
            self.trx_open = True  # statements before the failing one ran with autocommit off

    def _record_state(self, cmd: Command, response: ResponseTracker, ok: bool, outcome: Outcome) -> None:
        changes = response.changes
        effects = cmd.effects
        if changes is not None or (effects is not None and effects.sysvars_set_null and ok):
            apply_changes(self.state, changes, effects if ok else None)
            outcome.changes, outcome.null_sysvars = changes, effects if ok else None
        pins = self.pins
        code = cmd.spec.code
        has_effects = effects is not None and effects is not NO_EFFECTS and effects.any
        pin_related = changes is not None or has_effects or code in STMT_ID_COMMANDS
        before = pins.reasons() if pin_related else None
        explained = pins.apply_sql(effects, ok) if effects is not None and has_effects else False
        if changes is not None:
            if response.trackers is not None:
                self.trackers = response.trackers  # as the statement left them (session_track_* changed)
            if changes.state_change and not explained:
                explained = self.state_change_explained(cmd, changes)
                outcome.unexplained_change = not explained and not pins.unknown_state
            pins.apply_tracker(changes, explained)
            if self.trx_open:
                pins.trx_characteristics = False  # they describe the open transaction, not the next one
        if code == COMMAND.COM_STMT_PREPARE:
            if response.prepare_ok is not None:
                outcome.prepared = self._register(cmd, response.prepare_ok)
        elif cmd.stmt is not None:
            outcome.statement_busy = self._statement_done(cmd, response.status, ok)
        if before is not None:
            after = pins.reasons()
            outcome.new_pins += [reason for reason in after if reason not in before]

    def state_change_explained(self, cmd: Command, changes: StateChanges) -> bool:
        """Does the command account for a 'state changed' report (so nothing unknown is left)?"""
        code = cmd.spec.code
        if code == COMMAND.COM_INIT_DB:
            return True
        if code in _EXECUTES and changes.schema is not None:
            # The server executes a statement in the schema it was prepared in, switching there
            # and back: that (and only that) is what a schema report means here.
            return True
        if not cmd.sql:
            return False
        if session_only(cmd.sql, self.quoting):
            return True
        # ALTER TABLE / CREATE INDEX / DROP INDEX on the client's temporary tables: they are
        # pinned already, until dropped, and the change goes with them.
        temp_tables = self.pins.temp_tables
        redefined = tables_redefined(cmd.sql, self.quoting) if temp_tables else None
        return redefined is not None and all(name in temp_tables for name in redefined)

    def may_leave_report_held(self, cmd: Command) -> bool:
        """After `cmd`'s response, may a tracker report the server holds back (an EOF could not carry
        it: in a transaction, the first read changes its state) wait for the next OK that brings it,
        rather than be fetched at once with a hidden statement?

        Only while the client keeps its backend for something only its own statements end (a
        transaction, a pin other than diagnostics): that OK is then the answer to one of them (the
        transaction's next write, its COMMIT), and the report is read as that statement's, as a direct
        client tracking state would read it. Not after executing a statement prepared in another
        schema: the server switched schemas for it and back, which its report says, and only the
        execute itself explains that (state_change_explained)."""
        if not (self.trx_open or (self.pins and not self.pins.only_soft())):
            return False
        stmt = cmd.stmt
        return stmt is None or stmt.key[0] == self.state.schema

    def explain_flushed(self, cmd: Command | None, changes: StateChanges, capture: Capture) -> None:
        """A tracker report the server held back (after an EOF) and the proxy fetched: record it as the
        client's. `cmd`: the client's last command (None: none since it was held)."""
        apply_changes(self.state, changes, None)
        if any(name in CHARSET_VARIABLES for name, _ in changes.variables):
            capture.add_sysvars(CHARSET_VARIABLES)
        # The flag "state changed" in this report is the flush's own SET's: what came from the
        # client's statement is the rest (variables, applied above; a transaction state). Only a
        # schema report is left to account for (it is when a prepared statement was executed).
        fx = cmd.effects if cmd is not None else None
        explained = (changes.schema is None or bool(fx is not None and fx.any)
                     or (cmd is not None and self.state_change_explained(cmd, changes)))
        self.pins.apply_tracker(changes, explained)

    def _follow_up_for(self, cmd: Command, response: ResponseTracker, ok: bool,
                       collations: CollationTable) -> FollowUp | None:
        """What must run on the backend, hidden, before it may go (None: nothing)."""
        fx = cmd.effects
        changes = response.changes
        if ok and (fx is None or fx is NO_EFFECTS) and (changes is None or not changes.variables):
            return None  # the usual answer (no variable reported, nothing to read back), without a Capture
        capture = Capture(collations=collations)
        if fx is not None:
            capture.user_vars = list(fx.user_vars_written)
            capture.insert_id = fx.sets_insert_id
            if ok or response.ok_count or response.result_sets:
                # A statement that failed alone set no system variable (SET checks every assignment
                # before it makes any); reading back one that does not exist would fail for good.
                capture.add_sysvars(fx.sysvars_untracked)
            capture.trackers = fx.session_tracking_changed and ok
        if changes is not None and any(name in CHARSET_VARIABLES for name, _ in changes.variables):
            capture.add_sysvars(CHARSET_VARIABLES)  # one of them was reported; the others may have moved
        probe = not ok and self._status_uncertain(cmd, response)
        if capture or probe:
            return FollowUp(capture, probe)
        return None

    def _status_uncertain(self, cmd: Command, response: ResponseTracker) -> bool:
        """After an ERR the server's status is unknown unless nothing could have changed it."""
        if response.ok_count or response.result_sets:
            return True  # earlier statements of a multi-statement query ran
        prev = cmd.prev_status
        return self.trx_open or bool(prev & IN_TRANS) or not prev & AUTOCOMMIT

    # -- prepared statements -----------------------------------------------------------

    def _register(self, cmd: Command, prepare_ok: tuple[int, int, int, int]) -> ClientStatement:
        _server_id, columns, params, _warnings = prepare_ok
        stmt = ClientStatement(cmd.stmt_id, cmd.sql, statement_key(self.state, cmd.sql), params, columns,
                               analyze(cmd.sql, self.quoting))
        self.statements[cmd.stmt_id] = stmt
        return stmt

    def _statement_done(self, cmd: Command, status: int, ok: bool) -> bool:
        """Cursors and long data after a statement command; True if something lives on its server statement."""
        assert cmd.stmt is not None
        sid = cmd.stmt.id
        pins = self.pins
        code = cmd.spec.code
        if code == COMMAND.COM_STMT_EXECUTE:
            pins.long_data.discard(sid)
            if ok and status & CURSOR_EXISTS:
                pins.cursors.add(sid)
            else:
                pins.cursors.discard(sid)
        elif code == COM_STMT_BULK_EXECUTE:
            pins.long_data.discard(sid)  # the server resets the statement's parameters after a bulk
            if ok:
                pins.cursors.discard(sid)  # executing it closed a cursor; a bulk opens none
        elif code == COMMAND.COM_STMT_FETCH:
            if not ok or status & LAST_ROW_SENT or not status & CURSOR_EXISTS:
                pins.cursors.discard(sid)
        elif code == COMMAND.COM_STMT_RESET:
            pins.cursors.discard(sid)
            pins.long_data.discard(sid)
        return sid in pins.cursors or sid in pins.long_data

"""ResponseTracker: where does the server's response to a command end?

The relay forwards backend bytes to the client as they arrive. It needs to
know when the response to the current command is complete (to release the
backend or send the next command) and the final status flags (IN_TRANS,
CURSOR_EXISTS, MORE_RESULTS), plus any session-state changes the server
reported. This module answers that while looking at as little as possible:
for rows and column definitions it reads only the 4-byte header and the
first payload byte; only the small packets that end or shape a response
(OK, ERR, EOF, column count, prepare-OK, LOCAL INFILE request) are parsed.

Grammar, for a backend that negotiated CLIENT_PROTOCOL_41 and not
CLIENT_DEPRECATE_EOF (the proxy's backends never do: they are opened by
aiomysql, and the proxy's own queries read this framing):

    RESULT     := (OK | ERR | INFILE | RESULTSET) ; repeats while MORE_RESULTS
    RESULTSET  := column-count  column-def*N  EOF  row*  (EOF | ERR)
                  (after COM_STMT_EXECUTE with a cursor: EOF has
                  CURSOR_EXISTS and no rows follow)
    PREPARE    := ERR | prepare-OK [param-def*P EOF] [column-def*C EOF]
    FETCH      := row* (EOF | ERR)
    FIELD_LIST := column-def* (EOF | ERR)
    SIMPLE     := OK | ERR | EOF
    STATISTICS := one string packet

A logical packet of 16 MiB or more arrives as several frames; frames after
a full (0xFFFFFF-byte) one are continuations and are never interpreted.

`feed(data)` returns how many bytes of `data` were consumed. If the tracker
is not `done` and consumed < len(data), the rest is an incomplete packet it
must see whole: the caller holds those bytes and feeds them again, joined
with what arrives next. Bytes after the end of a response (consumed <
len(data) with `done`) do not belong to it.

The proxy's backends have every session tracker on; a client must see only
what its own trackers would report. With `strip_session_track`, an OK
packet's session-state block is dropped for a client that did not negotiate
CLIENT_SESSION_TRACK; with `trackers`, the block keeps only the entries those
trackers report (and goes when none is left). An EOF's
SERVER_SESSION_STATE_CHANGED bit stays only for a client tracking state
changes. The replacements for the current `feed` are listed in `rewrites` as
(start, end, new_packet_bytes); packets that need none cost nothing more.

A client that negotiated CLIENT_DEPRECATE_EOF gets the response in its own
framing, rewritten per command (`begin(deprecate_eof=True)`, then
`feed_translating` instead of `feed`), as MySQL and MariaDB write it for
such a client:

  * the EOF after column definitions, and after the parameter and column
    definitions of a prepare-OK, is dropped;
  * every other EOF (the end of rows, of a COM_FIELD_LIST, of a
    COM_STMT_FETCH, the one with CURSOR_EXISTS after the column definitions
    of an execute that opened a cursor, a lone EOF answering COM_SET_OPTION
    or COM_DEBUG) becomes an OK packet with the EOF's 0xFE header: no
    affected rows, no insert id, the EOF's status and warnings;
  * every frame after a dropped packet gets its sequence id lowered by the
    packets dropped before it, so that the client sees consecutive ids;
    `feed_translating` writes them into its `data` (a bytearray) as it
    walks the headers it visits anyway. Rows, the bulk, take a tighter walk
    of their own (one table lookup per row to renumber it), which costs
    less per row than `feed`'s. `seq_shift` is that count, modulo 256 (a
    LOCAL INFILE transfer after a result set is numbered by it both ways:
    client/connection.py). `feed` itself, for every other client, is
    untouched by all this.

An EOF with SERVER_SESSION_STATE_CHANGED cannot carry the change's details,
so its OK holds only what the classic EOF tells such a client: the flag, for
a client whose trackers report state changes, with a state-change entry
(the server would add the details it holds; the proxy's backend sends them
with its next OK, which the client gets as well).
"""

from __future__ import annotations

import enum
from typing import Final

from ..constants import CLIENT, ER, SERVER_SESSION_STATE_CHANGED, SERVER_STATUS
from ..errors import LocalProtocolError, RemoteProtocolError
from .framing import HEADER_SIZE, MAX_FRAME, frame_header
from .packets import (
    EOF_HEADER,
    ErrPacket,
    OkPacket,
    make_eof,
    make_err,
    make_ok,
    parse_err,
    parse_ok,
    without_session_track,
)
from .session_track import StateChanges, Trackers, make_state_changes, parse_state_changes
from .wire import Reader

__all__ = ["Expect", "Phase", "ResponseTracker"]

MORE_RESULTS: Final = SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS
CURSOR_EXISTS: Final = SERVER_STATUS.SERVER_STATUS_CURSOR_EXISTS

# Only the backend's format matters here: CLIENT_SESSION_TRACK is always on.
BACKEND_CAPS: Final = CLIENT.PROTOCOL_41 | CLIENT.SESSION_TRACK


class Expect(enum.IntEnum):
    """The shape of response a command gets."""

    RESULT = 1  # COM_QUERY, COM_STMT_EXECUTE
    SIMPLE = 2  # OK | ERR | EOF
    PREPARE = 3  # COM_STMT_PREPARE
    FETCH = 4  # COM_STMT_FETCH
    FIELD_LIST = 5  # COM_FIELD_LIST
    STATISTICS = 6  # COM_STATISTICS


class Phase(enum.IntEnum):
    FIRST = 1  # first packet of a result: OK | ERR | INFILE | column count
    COLUMNS = 2  # column definitions still to come (count in `_left`)
    COLUMNS_EOF = 3  # the EOF after column definitions
    ROWS = 4  # rows until EOF | ERR
    PARAMS = 5  # prepare: parameter definitions
    PARAMS_EOF = 6
    PREP_COLUMNS = 7  # prepare: column definitions
    PREP_COLUMNS_EOF = 8
    SINGLE = 9  # one packet (SIMPLE)
    STRING = 10  # one packet of any content (STATISTICS)
    FIELDS = 11  # column definitions until EOF | ERR (FIELD_LIST)
    INFILE = 12  # server asked for a LOCAL INFILE; waiting for the client's data
    DONE = 13


_START_PHASE: Final = {
    Expect.RESULT: Phase.FIRST,
    Expect.SIMPLE: Phase.SINGLE,
    Expect.PREPARE: Phase.FIRST,
    Expect.FETCH: Phase.ROWS,
    Expect.FIELD_LIST: Phase.FIELDS,
    Expect.STATISTICS: Phase.STRING,
}

# Phases in which packets are skipped after a look at the first byte only.
_SKIPPED: Final = frozenset((Phase.COLUMNS, Phase.PARAMS, Phase.PREP_COLUMNS))

# The members the walk compares with, as module globals. On Python 3.11 reading `Phase.ROWS`
# runs EnumType's __getattr__ hook, some 20 times the cost of reading a global, and the walk
# reads them for every packet.
_FIRST: Final = Phase.FIRST
_COLUMNS: Final = Phase.COLUMNS
_COLUMNS_EOF: Final = Phase.COLUMNS_EOF
_ROWS: Final = Phase.ROWS
_PARAMS: Final = Phase.PARAMS
_PARAMS_EOF: Final = Phase.PARAMS_EOF
_PREP_COLUMNS: Final = Phase.PREP_COLUMNS
_PREP_COLUMNS_EOF: Final = Phase.PREP_COLUMNS_EOF
_SINGLE: Final = Phase.SINGLE
_STRING: Final = Phase.STRING
_FIELDS: Final = Phase.FIELDS
_INFILE: Final = Phase.INFILE
_DONE: Final = Phase.DONE
_RESULT: Final = Expect.RESULT
_SIMPLE: Final = Expect.SIMPLE
_PREPARE: Final = Expect.PREPARE
_AFTER_DEFINITIONS: Final = {_COLUMNS: _COLUMNS_EOF, _PARAMS: _PARAMS_EOF, _PREP_COLUMNS: _PREP_COLUMNS_EOF}
# Phases in which a short packet starting with 0xFE is an EOF.
_EOF_PHASES: Final = frozenset((_SINGLE, _FIELDS, _COLUMNS_EOF, _PARAMS_EOF, _PREP_COLUMNS_EOF, _ROWS))
# _RENUMBERED[shift][seq]: the sequence id `seq` lowered by `shift` (feed_translating's rows).
# Errors whose message names the statement by its id: the server's id becomes the client's.
_NAMES_STATEMENT: Final = frozenset((ER.UNKNOWN_STMT_HANDLER, ER.STMT_HAS_NO_OPEN_CURSOR))
_RENUMBERED: Final = tuple(bytes((seq - shift) & 0xFF for seq in range(256)) for shift in range(256))


class ResponseTracker:
    """Tracks one command's response at a time; `begin()` starts the next."""

    __slots__ = (
        "expect", "phase", "binary", "strip_session_track", "_left", "_skip", "_continuation",
        "status", "warnings", "affected_rows", "last_insert_id", "error", "changes", "result_sets",
        "prepare_ok", "infile_name", "infile_seq", "rewrites", "_prep_columns", "ok_count", "prepare_id", "rows",
        "eof_state_pending", "trackers", "translating", "seq_shift", "stmt_ids",
    )

    def __init__(self) -> None:
        self.phase = _DONE
        self.expect = _SIMPLE
        self.strip_session_track = False
        self.trackers: Trackers | None = None
        self.binary = False
        self.translating = False  # the client negotiated CLIENT_DEPRECATE_EOF: feed_translating
        self.prepare_id: int | None = None
        self.stmt_ids: tuple[int, int] | None = None
        self.status = 0
        self.rewrites: list[tuple[int, int, bytes]] = []
        self._reset_result()

    def _reset_result(self) -> None:
        self._left = 0
        self._skip = 0
        self._continuation = False
        self.warnings = 0
        self.affected_rows = 0
        self.last_insert_id = 0
        self.error: ErrPacket | None = None
        self.changes: StateChanges | None = None
        self.result_sets = 0
        self.prepare_ok: tuple[int, int, int, int] | None = None
        self.infile_name: bytes | None = None
        self.infile_seq = 0  # sequence id of the LOCAL INFILE request: the client's data follows it
        self._prep_columns = 0
        self.ok_count = 0
        self.rows = 0
        self.seq_shift = 0  # packets dropped from the response so far, modulo 256 (feed_translating)
        # An EOF reported SERVER_SESSION_STATE_CHANGED: the change's details wait in the
        # server for the next OK packet with a report of its own (an EOF cannot carry them).
        self.eof_state_pending = False

    def begin(self, expect: Expect, *, binary: bool = False, strip_session_track: bool = False,
              trackers: Trackers | None = None, prepare_id: int | None = None, deprecate_eof: bool = False,
              stmt_ids: tuple[int, int] | None = None) -> None:
        """Start tracking a response. `prepare_id`: rewrite a prepare-OK's statement id to this one;
        `stmt_ids`: (the server's, the client's) id of the statement the command names, for the
        errors whose message names it;
        `trackers`: the client's, whose reports are all it may see (None: relay them as they are);
        `deprecate_eof`: the client negotiated CLIENT_DEPRECATE_EOF (feed it with feed_translating)."""
        if self.phase not in (_DONE,):
            raise LocalProtocolError(f"begin() while a response is in phase {self.phase.name}")
        self._reset_result()
        self.expect = expect
        self.binary = binary
        self.strip_session_track = strip_session_track
        self.trackers = trackers
        self.prepare_id = prepare_id
        self.stmt_ids = stmt_ids
        self.translating = deprecate_eof
        self.phase = _START_PHASE[expect]

    @property
    def done(self) -> bool:
        return self.phase is _DONE

    def infile_sent(self) -> None:
        """The client's LOCAL INFILE data (ending with an empty packet) went to the server."""
        if self.phase is not _INFILE:
            raise LocalProtocolError("infile_sent() outside an INFILE turn")
        self.phase = _FIRST

    def abort(self) -> None:
        """Forget the current response (the backend is being discarded)."""
        self.phase = _DONE

    # -- the walk ------------------------------------------------------------

    def feed(self, data: bytes) -> int:
        # (bytes, not BytesLike: compiled, indexing bytes is a native operation; a bytearray is copied
        # by the caller, which has it only after a partial packet was held back)
        if self.rewrites:
            self.rewrites = []
        n = len(data)
        pos = 0
        if self._skip:
            take = self._skip if self._skip < n else n
            self._skip -= take
            pos = take
        phase = self.phase
        if phase is _INFILE and n:
            # The server answers before the client's file has ended: it gave up on the transfer
            # (an error, e.g. packets out of order). What it sends is the command's response.
            phase = self.phase = _FIRST
        while pos < n:
            if phase is _DONE or phase is _INFILE:
                return pos
            if n - pos < HEADER_SIZE + 1:
                if n - pos >= HEADER_SIZE and not (data[pos] | data[pos + 1] | data[pos + 2]):
                    pass  # an empty frame: complete with just its header
                else:
                    return pos  # hold: need the header and first byte
            length = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
            end = pos + HEADER_SIZE + length
            if phase is _ROWS and not self._continuation:
                # A row, unless it is the EOF or ERR that ends the rows (checked inline: once per row).
                first = data[pos + HEADER_SIZE] if length else 0
                skipped = not (first == 0xFF or (first == 0xFE and length < 9))
            else:
                skipped = self._continuation or phase in _SKIPPED
            if skipped:
                # A row, a definition or a continuation frame: look no further.
                self._continuation = length == MAX_FRAME
                if not self._continuation and phase is not _ROWS and not self._count_skipped(phase):
                    phase = self.phase
                if end > n:
                    self._skip = end - n
                    return n
                pos = end
                phase = self.phase
                continue
            # A packet that shapes the response: it must be here whole.
            if end > n:
                return pos
            self._continuation = length == MAX_FRAME
            self._inspect(data, pos, end)
            phase = self.phase
            pos = end
        return pos

    def _count_skipped(self, phase: Phase) -> bool:
        """A definition packet passed; returns True if the phase did not change."""
        self._left -= 1
        if self._left > 0:
            return True
        self.phase = _AFTER_DEFINITIONS[phase]
        return False

    # -- inspected packets --------------------------------------------------

    def _with_client_statement_id(self, data: bytes, pos: int, end: int, error: ErrPacket) -> ErrPacket:
        """An error whose message names the statement by the server's id: the client's id instead."""
        assert self.stmt_ids is not None
        server_id, client_id = self.stmt_ids
        message = error.message.replace(b"(%d)" % server_id, b"(%d)" % client_id, 1)
        if message == error.message:
            return error
        error = ErrPacket(error.errno, error.sqlstate, message)
        new = make_err(error.errno, error.sqlstate, message)
        self.rewrites.append((pos, end, frame_header(len(new), data[pos + 3]) + new))
        return error

    def _inspect(self, data: bytes, pos: int, end: int) -> None:
        body = pos + HEADER_SIZE
        phase = self.phase
        first = data[body] if end > body else -1
        if phase is _STRING:
            self.phase = _DONE
        elif first == 0xFF:
            error = parse_err(bytes(data[body:end]))
            if self.stmt_ids is not None and error.errno in _NAMES_STATEMENT:
                error = self._with_client_statement_id(data, pos, end, error)
            self.error = error
            self.phase = _DONE
        elif phase is _FIRST:
            self._on_first(data, pos, body, end, first)
        elif phase is _SINGLE:
            self._on_single(data, pos, body, end, first)
        elif phase is _FIELDS:
            if first == 0xFE and end - body < 9:
                self._on_eof(data, body, end, final=True)
            # else: a field definition
        elif phase in (_COLUMNS_EOF, _PARAMS_EOF, _PREP_COLUMNS_EOF):
            self._on_definitions_eof(data, body, end, first)
        elif phase is _ROWS:
            self._on_eof(data, body, end, final=True)
        else:
            raise RemoteProtocolError(f"unexpected packet 0x{first & 0xFF:02x} in phase {phase.name}")

    def _on_first(self, data: bytes, pos: int, body: int, end: int, first: int) -> None:
        if self.expect is _PREPARE:
            self._on_prepare_ok(data, pos, body, end)
        elif first == 0x00:
            self._on_ok(data, pos, body, end)
        elif first == 0xFB:
            self.infile_name = bytes(data[body + 1:end])
            self.infile_seq = data[pos + 3]
            self.phase = _INFILE
        else:
            # A column count: one byte below 0xFB (always, in practice), else a length-encoded integer.
            count = first if 0 < first < 0xFB else Reader(data, body, end).lenenc_int()
            if not count:
                raise RemoteProtocolError("result set with no columns")
            self.result_sets += 1
            self._left = count
            self.phase = _COLUMNS

    def _on_single(self, data: bytes, pos: int, body: int, end: int, first: int) -> None:
        if first == 0x00:
            self._on_ok(data, pos, body, end)
            self.phase = _DONE
        elif first == 0xFE:
            self._on_eof(data, body, end, final=True)
        else:
            raise RemoteProtocolError(f"unexpected reply header 0x{first & 0xFF:02x}")

    def _on_ok(self, data: bytes, pos: int, body: int, end: int) -> None:
        payload = bytes(data[body:end])
        ok = parse_ok(payload, BACKEND_CAPS)
        self.ok_count += 1
        self.status = ok.status
        self.warnings = ok.warnings
        self.affected_rows = ok.affected_rows
        if ok.last_insert_id:
            self.last_insert_id = ok.last_insert_id  # LAST_INSERT_ID() now has this value
        if ok.session_state:
            self.eof_state_pending = False  # the held report came with this one (a bare OK brings none)
            changes = parse_state_changes(ok.session_state)
            if self.changes is None:
                self.changes = changes
            else:
                self.changes.merge(changes)
            if self.trackers is not None:
                # A statement that changes the client's trackers is reported as they are after it.
                self.trackers = self.trackers.updated(changes.variables)
        if ok.session_state is not None:
            new = self._client_ok(payload, ok)
            if new is not None:
                self.rewrites.append((pos, end, frame_header(len(new), data[pos + 3]) + new))
        self.phase = _FIRST if ok.status & MORE_RESULTS else _DONE

    def _client_ok(self, payload: bytes, ok: OkPacket) -> bytes | None:
        """The OK with a session-state block as the client may see it (None: as it is)."""
        if self.strip_session_track:
            return without_session_track(ok, payload[0])
        if self.trackers is None or ok.session_state is None:
            return None
        block = self.trackers.filter(ok.session_state)
        if block == ok.session_state:
            return None
        return make_ok(BACKEND_CAPS, ok.status, ok.affected_rows, ok.last_insert_id, ok.warnings, ok.info,
                       header=payload[0], session_state=block or None)

    def _on_eof(self, data: bytes, body: int, end: int, final: bool) -> None:
        if end - body < 5 or data[body] != 0xFE:
            raise RemoteProtocolError("expected an EOF packet")
        self.warnings = data[body + 1] | data[body + 2] << 8
        self.status = data[body + 3] | data[body + 4] << 8
        self.eof_state_pending = bool(self.status & SERVER_SESSION_STATE_CHANGED)
        if self.eof_state_pending and self.trackers is not None and not self.trackers.state_change:
            # Only the proxy's state-change tracker set it: a client without one never sees it.
            new = make_eof(self.status & ~SERVER_SESSION_STATE_CHANGED, self.warnings) + bytes(data[body + 5:end])
            self.rewrites.append((body - HEADER_SIZE, end, frame_header(len(new), data[body - 1]) + new))
        if final:
            self.phase = _FIRST if self.status & MORE_RESULTS and self.expect is _RESULT else _DONE

    def _on_definitions_eof(self, data: bytes, body: int, end: int, first: int) -> None:
        self._on_eof(data, body, end, final=False)
        phase = self.phase
        if phase is _COLUMNS_EOF:
            if self.binary and self.status & CURSOR_EXISTS:
                self.phase = _DONE  # a cursor was opened: rows come by COM_STMT_FETCH
            else:
                self.phase = _ROWS
        elif phase is _PARAMS_EOF:
            self._start_prepare_columns()
        else:
            self.phase = _DONE

    def _on_prepare_ok(self, data: bytes, pos: int, body: int, end: int) -> None:
        r = Reader(data, body, end)
        if r.int1() != 0x00:
            raise RemoteProtocolError("expected a prepare-OK packet")
        stmt_id = r.int4()
        columns = r.int2()
        params = r.int2()
        warnings = 0
        if r.remaining >= 3:
            r.int1()
            warnings = r.int2()
        self.prepare_ok = (stmt_id, columns, params, warnings)
        self.warnings = warnings
        if self.prepare_id is not None:
            new = bytes(data[pos:body + 1]) + self.prepare_id.to_bytes(4, "little") + bytes(data[body + 5:end])
            self.rewrites.append((pos, end, new))
        self._prep_columns = columns
        if params:
            self._left = params
            self.phase = _PARAMS
        else:
            self._start_prepare_columns()

    def _start_prepare_columns(self) -> None:
        if self._prep_columns:
            self._left = self._prep_columns
            self.phase = _PREP_COLUMNS
        else:
            self.phase = _DONE

    # -- CLIENT_DEPRECATE_EOF: the client's framing (see the module comment) ----------------

    def feed_translating(self, data: bytearray) -> int:
        """`feed`, for a client that negotiated CLIENT_DEPRECATE_EOF: the sequence ids of the frames
        consumed are rewritten in `data`, and its EOFs are dropped or replaced (`rewrites`). Held
        bytes (not consumed) are left as they are, to be fed again."""
        if self.rewrites:
            self.rewrites = []
        n = len(data)
        pos = 0
        shift = self.seq_shift
        if self._skip:
            take = self._skip if self._skip < n else n
            self._skip -= take
            pos = take
        phase = self.phase
        if phase is _INFILE and n:
            phase = self.phase = _FIRST  # (see feed)
        while pos < n:
            if phase is _DONE or phase is _INFILE:
                return pos
            if phase is _ROWS and shift and not self._continuation:
                # Rows after a dropped EOF, the bulk of the work: a tight walk that renumbers them, up to
                # the first packet that ends the rows or is split in frames (the walk below takes that).
                ids = _RENUMBERED[shift]
                while n - pos > HEADER_SIZE:
                    length = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
                    first = data[pos + HEADER_SIZE]
                    if (first >= 0xFE and (first == 0xFF or length < 9)) or length == MAX_FRAME:
                        break
                    data[pos + 3] = ids[data[pos + 3]]
                    pos += HEADER_SIZE + length
                if pos >= n:
                    self._skip = pos - n
                    return n
            if n - pos < HEADER_SIZE + 1:
                if n - pos >= HEADER_SIZE and not (data[pos] | data[pos + 1] | data[pos + 2]):
                    pass  # an empty frame: complete with just its header
                else:
                    return pos  # hold: need the header and first byte
            length = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
            end = pos + HEADER_SIZE + length
            if phase is _ROWS and not self._continuation:
                first = data[pos + HEADER_SIZE] if length else 0
                skipped = not (first == 0xFF or (first == 0xFE and length < 9))
            else:
                skipped = self._continuation or phase in _SKIPPED
            if skipped:
                if shift:
                    data[pos + 3] = _RENUMBERED[shift][data[pos + 3]]
                self._continuation = length == MAX_FRAME
                if not self._continuation and phase is not _ROWS and not self._count_skipped(phase):
                    phase = self.phase
                if end > n:
                    self._skip = end - n
                    return n
                pos = end
                phase = self.phase
                continue
            if end > n:
                return pos
            self._continuation = length == MAX_FRAME
            if shift:
                data[pos + 3] = _RENUMBERED[shift][data[pos + 3]]
            self._inspect_copy(data, pos, end)
            if 0 < length < 9 and data[pos + HEADER_SIZE] == EOF_HEADER and phase in _EOF_PHASES:
                self._translate_eof(data, pos, end, phase)
                shift = self.seq_shift
            phase = self.phase
            pos = end
        return pos

    def _inspect_copy(self, data: bytearray, pos: int, end: int) -> None:
        """`_inspect` of the packet at data[pos:end], read from a copy of it: the inspecting methods take
        bytes (compiled, indexing bytes is native, a bytearray is not), and only the few packets that are
        not rows are inspected. Their rewrites are placed back at `pos`."""
        rewrites = self.rewrites
        mark = len(rewrites)
        self._inspect(bytes(data[pos:end]), 0, end - pos)
        for i in range(mark, len(rewrites)):
            start, stop, new = rewrites[i]
            rewrites[i] = (start + pos, stop + pos, new)

    def _translate_eof(self, data: bytearray, pos: int, end: int, phase: Phase) -> None:
        """The EOF at data[pos:end], read in `phase`, as a CLIENT_DEPRECATE_EOF client gets it."""
        rewrites = self.rewrites
        if rewrites and rewrites[-1][0] == pos:
            rewrites.pop()  # the classic client's version of this EOF (_on_eof): replaced here
        dropped = phase is _PARAMS_EOF or phase is _PREP_COLUMNS_EOF or (phase is _COLUMNS_EOF and self.phase is _ROWS)
        if dropped:
            rewrites.append((pos, end, b""))
            self.seq_shift = (self.seq_shift + 1) & 0xFF  # (ids are taken modulo 256)
            return
        ok = self._eof_as_ok()
        rewrites.append((pos, end, frame_header(len(ok), data[pos + 3]) + ok))

    def _eof_as_ok(self) -> bytes:
        """The OK packet with the 0xFE header that stands for the EOF just read."""
        state = None
        capabilities = CLIENT.PROTOCOL_41
        if not self.strip_session_track:
            capabilities |= CLIENT.SESSION_TRACK
            if self.status & SERVER_SESSION_STATE_CHANGED:
                trackers = self.trackers
                state = trackers.report([]) if trackers is not None else make_state_changes([])
        return make_ok(capabilities, self.status, warnings=self.warnings, header=EOF_HEADER, session_state=state)

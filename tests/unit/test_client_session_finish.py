# ClientSession.finish() takes a short path for the usual answer (a statement with no SQL effects,
# autocommit on and no transaction, nothing reported). Whatever the response and the session, it
# must decide exactly what the general path decides: the same Outcome, and the session left the
# same. The general path is taken for a command whose effects equal NO_EFFECTS without being it.
# Pure: responses fed to a ResponseTracker as the relay feeds it.
from __future__ import annotations

from hypothesis import given, strategies as st

from mysqlpool_proxy.constants import COMMAND, SERVER_STATUS
from mysqlpool_proxy.core.client_session import ClientSession, Command
from mysqlpool_proxy.core.session import SessionState
from mysqlpool_proxy.protocol.command import spec_for
from mysqlpool_proxy.protocol.framing import encode_packet
from mysqlpool_proxy.protocol.packets import make_eof, make_err, make_ok
from mysqlpool_proxy.protocol.response import Expect, ResponseTracker
from mysqlpool_proxy.protocol.sql import NO_EFFECTS, SqlEffects
from mysqlpool_proxy.protocol.wire import lenenc_bytes

AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
TRACK = 1 << 23  # CLIENT_SESSION_TRACK
STATE_CHANGE = b"\x02\x02\x011"  # the state-change tracker's entry: "1"
TRX_STATE = b"\x05\x09\x08T_______"


def response(kind: str, status: int, warnings: int, insert_id: int, state: bytes | None) -> ResponseTracker:
    tracker = ResponseTracker()
    tracker.begin(Expect.RESULT)
    if kind == "ok":
        data = encode_packet(make_ok(TRACK, status, 1, insert_id, warnings, session_state=state), 1)
    elif kind == "err":
        data = encode_packet(make_err(1146, "42S02", "Table doesn't exist"), 1)
    else:  # a one-row result set
        column = b"\x03def" + b"\x00" * 3 + b"\x01c\x00\x0c\x21\x00\x00\x00\x00\xfd\x00\x00\x00\x00\x00"
        packets = [b"\x01", column, make_eof(status), lenenc_bytes(b"x"), make_eof(status, warnings)]
        data = b"".join(encode_packet(p, i + 1) for i, p in enumerate(packets))
    assert tracker.feed(data) == len(data) and tracker.done
    return tracker


def session(trx_open: bool, diagnostics: bool, release: bool) -> ClientSession:
    s = ClientSession(SessionState(b"app", {b"completion_type": b"RELEASE"} if release else {}),
                      AUTOCOMMIT | (IN_TRANS if trx_open else 0), None)
    s.trx_open = trx_open
    s.pins.diagnostics = diagnostics
    return s


def facts(s: ClientSession) -> tuple:
    p = s.pins
    return (s.status, s.trx_open, s.last_insert_id, s.ending, p.reasons(), p.trx_characteristics, p.unknown_state,
            s.state.variables, s.state.schema)


@given(kind=st.sampled_from(["ok", "err", "rows"]),
       status=st.sampled_from([AUTOCOMMIT, AUTOCOMMIT | IN_TRANS, 0, IN_TRANS, AUTOCOMMIT | 0x8000]),
       warnings=st.sampled_from([0, 1]), insert_id=st.sampled_from([0, 7]),
       state=st.sampled_from([None, STATE_CHANGE, TRX_STATE]),
       trx_open=st.booleans(), diagnostics=st.booleans(), release=st.booleans(),
       sql=st.sampled_from([b"SELECT 1", b"COMMIT", b"UPDATE t SET k = 1"]))
def test_the_short_path_decides_what_the_general_path_decides(kind, status, warnings, insert_id, state, trx_open,
                                                               diagnostics, release, sql):
    outcomes = []
    sessions = []
    for effects in (NO_EFFECTS, SqlEffects()):  # the second is equal, not the same object: the general path
        s = session(trx_open, diagnostics, release)
        cmd = Command(spec_for(COMMAND.COM_QUERY), effects=effects, sql=sql, prev_status=s.status)
        outcomes.append(s.finish(cmd, response(kind, status, warnings, insert_id, state), {}))
        sessions.append(facts(s))
    assert outcomes[0] == outcomes[1]
    assert sessions[0] == sessions[1]

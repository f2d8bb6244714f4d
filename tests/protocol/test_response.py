# response.py: ResponseTracker on every MariaDB capture in captures.json, fed
# whole, byte by byte and in random chunks the way the relay feeds it (the
# unconsumed tail is fed again joined with the next chunk): consumed bytes,
# final phase, status flags, errors, prepare-OK, result sets, session changes,
# LOCAL INFILE turns; synthetic responses a server can send but the captures
# lack (rows of 16 MiB and more whose continuation frames begin with 0xFE or
# 0xFF, rows beginning with a 0xFE length prefix, ERR among rows, MORE_RESULTS
# chains, cursors); strip_session_track rewrites; misuse and malformed input.
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from mysqlpool_proxy.constants import CLIENT, SERVER_SESSION_STATE_CHANGED, SERVER_STATUS
from mysqlpool_proxy.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from mysqlpool_proxy.protocol.framing import MAX_FRAME, encode_packet
from mysqlpool_proxy.protocol.packets import (
    OkPacket,
    make_eof,
    make_err,
    make_ok,
    parse_ok,
    strip_session_track,
)
from mysqlpool_proxy.protocol.response import Expect, Phase, ResponseTracker
from mysqlpool_proxy.protocol.session_track import StateChanges
from mysqlpool_proxy.protocol.wire import int8

from .helpers import (
    CAPTURES,
    Relayed,
    Relaying,
    capture_payloads,
    chunkings,
    decode_all,
    feed_whole_and_bytewise,
    frame_offsets,
    frames,
)

TRACK = CLIENT.PROTOCOL_41 | CLIENT.SESSION_TRACK
NO_TRACK = CLIENT.PROTOCOL_41
AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
MORE = SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS
CURSOR = SERVER_STATUS.SERVER_STATUS_CURSOR_EXISTS
LAST_ROW = SERVER_STATUS.SERVER_STATUS_LAST_ROW_SENT
ANSI = 0x8000  # MariaDB SERVER_STATUS_ANSI_QUOTES: the captures ran with sql_mode=ANSI
NO_INDEX = SERVER_STATUS.SERVER_QUERY_NO_INDEX_USED
BIG = dict(bytewise=False, max_chunk=1 << 20)
NEXT = encode_packet(b"\x00\x00\x00\x02\x00\x00\x00", 1)  # bytes of a later response

# -- the captures ----------------------------------------------------------------------

# name -> expected fields of the Relayed result (phase DONE unless given)
EXPECTED = {
    "ok_insert": dict(status=AUTOCOMMIT, affected_rows=1, last_insert_id=4, ok_count=1, changes=None),
    "ok_set_var": dict(status=AUTOCOMMIT | ANSI | SERVER_SESSION_STATE_CHANGED, ok_count=1),
    "ok_use": dict(status=AUTOCOMMIT | ANSI | SERVER_SESSION_STATE_CHANGED, ok_count=1),
    "ok_begin": dict(status=IN_TRANS | AUTOCOMMIT | ANSI | SERVER_SESSION_STATE_CHANGED, ok_count=1),
    "ok_commit": dict(status=AUTOCOMMIT | ANSI | SERVER_SESSION_STATE_CHANGED, ok_count=1),
    "err_syntax": dict(ok_count=0, result_sets=0),
    "select_rows": dict(status=AUTOCOMMIT | NO_INDEX | ANSI, result_sets=1, ok_count=0, error=None),
    "select_empty": dict(status=AUTOCOMMIT | ANSI, result_sets=1, ok_count=0, error=None),
    "multi_statement": dict(status=AUTOCOMMIT | ANSI, result_sets=2, ok_count=1, error=None,
                            changes=StateChanges(state_change=True)),
    "multi_statement_err": dict(result_sets=1, ok_count=0),
    "call_procedure": dict(status=AUTOCOMMIT | ANSI, result_sets=2, ok_count=1, error=None),
    "infile_request": dict(phase=Phase.INFILE, infile_name=b"/nonexistent.csv", ok_count=0, error=None),
    "ping": dict(status=AUTOCOMMIT | ANSI, ok_count=1),
    "init_db_ok": dict(status=AUTOCOMMIT | ANSI | SERVER_SESSION_STATE_CHANGED, ok_count=1),
    "init_db_err": dict(ok_count=0),
    "set_option": dict(status=AUTOCOMMIT | ANSI, ok_count=0, error=None),  # answered with EOF
    "statistics": dict(error=None, ok_count=0),
    "field_list": dict(status=AUTOCOMMIT | ANSI, error=None),
    "field_list_err": {},
    "prepare_select": dict(prepare_ok=(1, 2, 1, 0), error=None),
    "prepare_no_params": dict(prepare_ok=(2, 1, 0, 0), error=None),
    "prepare_insert": dict(prepare_ok=(3, 0, 1, 0), error=None),
    "prepare_err": dict(prepare_ok=None),
    "execute_rows": dict(status=AUTOCOMMIT | ANSI, result_sets=1, error=None),
    "execute_cursor": dict(status=AUTOCOMMIT | ANSI | CURSOR, result_sets=1, error=None),
    "fetch_two": dict(status=AUTOCOMMIT | ANSI | CURSOR, error=None),
    "fetch_rest": dict(status=AUTOCOMMIT | ANSI | LAST_ROW, error=None),
    "select_err_in_rows": dict(result_sets=1, ok_count=0),
    "call_state_change": dict(status=AUTOCOMMIT | ANSI | SERVER_SESSION_STATE_CHANGED, result_sets=2, ok_count=1,
                              error=None, changes=StateChanges(state_change=True)),
    "prepare_call": dict(prepare_ok=(5, 0, 2, 0), error=None),
    "execute_call_out_params": dict(status=AUTOCOMMIT | ANSI, result_sets=2, ok_count=1, error=None),
    "stmt_reset": dict(status=AUTOCOMMIT | ANSI, ok_count=1),
    "reset_connection": dict(status=AUTOCOMMIT, ok_count=1, changes=None),
}

ERRORS = {
    "err_syntax": (1064, "42000"),
    "multi_statement_err": (1064, "42000"),
    "init_db_err": (1049, "42000"),
    "field_list_err": (1146, "42S02"),
    "prepare_err": (1064, "42000"),
    "select_err_in_rows": (1242, "21000"),
}

# Indexes of the OK packets in each reply (binary rows start with 0x00 too).
OK_PACKETS = {
    "ok_insert": [0], "ok_set_var": [0], "ok_use": [0], "ok_begin": [0], "ok_commit": [0],
    "multi_statement": [5], "call_procedure": [11], "ping": [0], "init_db_ok": [0], "stmt_reset": [0],
    "reset_connection": [0], "infile_after_empty": [0], "call_state_change": [10], "execute_call_out_params": [10],
}

RELAYED_CAPTURES = [name for name in CAPTURES if CAPTURES[name].expect != "AFTER_INFILE"]


def test_every_capture_has_expectations():
    assert set(RELAYED_CAPTURES) == set(EXPECTED)


def check_capture(name: str, reply: bytes, *, strip: bool = False):
    fields = dict(EXPECTED[name])
    phase = fields.pop("phase", Phase.DONE)

    def check(r: Relayed):
        assert r.phase is phase
        assert r.consumed == len(reply)
        assert r.extra == NEXT  # the next response's bytes are not this one's
        if not strip:
            assert r.out == reply
        for key, value in fields.items():
            assert getattr(r, key) == value, key
        if name in ERRORS:
            assert (r.error.errno, r.error.sqlstate) == ERRORS[name]
        elif "error" not in fields:
            assert r.error is None

    cap = CAPTURES[name]
    return feed_whole_and_bytewise(lambda: Relaying(expect=Expect[cap.expect], binary=cap.binary, strip=strip),
                                   reply + NEXT, check)


@pytest.mark.parametrize("name", RELAYED_CAPTURES)
def test_capture(name):
    check_capture(name, CAPTURES[name].reply)


def test_capture_session_changes():
    def changes(name):
        return check_capture(name, CAPTURES[name].reply).changes

    assert changes("ok_set_var").variables == [
        (b"sql_mode", b"REAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ANSI")]
    assert changes("ok_use").schema == b"capdb"
    assert changes("init_db_ok").schema == b"capdb"
    assert changes("ok_begin").trx_state == b"T_______"
    assert changes("ok_commit").trx_state == b"________"


def test_infile_turn():
    request, after = CAPTURES["infile_request"].reply, CAPTURES["infile_after_empty"].reply
    r = check_capture("infile_request", request)
    assert r.phase is Phase.INFILE

    def make():
        t = ResponseTracker()
        t.begin(Expect.RESULT)
        assert t.feed(request) == len(request) and t.phase is Phase.INFILE
        # the client's file (here: empty) goes to the server; the tracker is told
        t.infile_sent()
        assert t.phase is Phase.FIRST
        return Relaying(t)

    def check(r: Relayed):
        assert r.phase is Phase.DONE and r.consumed == len(after) and r.extra == NEXT
        assert (r.status, r.affected_rows, r.ok_count, r.error) == (AUTOCOMMIT | ANSI, 0, 1, None)

    feed_whole_and_bytewise(make, after + NEXT, check)


def test_infile_request_ends_the_feed():
    t = ResponseTracker()
    t.begin(Expect.RESULT)
    request = CAPTURES["infile_request"].reply
    assert t.feed(request + b"\x01\x00\x00\x02x") == len(request)
    assert t.phase is Phase.INFILE and t.infile_seq == request[3]


def test_bytes_from_the_server_during_infile_are_its_early_response():
    # The server gave up on the transfer (e.g. the client's packets were out of order): its ERR
    # ends the command, fed whole or byte by byte.
    def make():
        t = ResponseTracker()
        t.begin(Expect.RESULT)
        t.feed(CAPTURES["infile_request"].reply)
        return Relaying(t)

    err = encode_packet(make_err(1156, "08S01", "Got packets out of order"), 3)
    r = feed_whole_and_bytewise(make, err)
    assert r.out == err and r.phase is Phase.DONE and r.error.errno == 1156


# -- strip_session_track ------------------------------------------------------------------------


def stripped_reply(name: str) -> bytes:
    out = []
    for i, p in enumerate(decode_all(CAPTURES[name].reply)):
        if i in OK_PACKETS.get(name, ()):
            out.append(encode_packet(strip_session_track(p.payload, TRACK), p.seq))
        else:
            out.append(p.raw)
    return b"".join(out)


@pytest.mark.parametrize("name", RELAYED_CAPTURES)
def test_capture_strip_session_track(name):
    expected = stripped_reply(name)
    r = check_capture(name, CAPTURES[name].reply, strip=True)
    assert r.out == expected
    # what the client gets is a valid stream: same sequence ids, OKs in the pre-SESSION_TRACK format
    packets = decode_all(r.out)
    assert [p.seq for p in packets] == [p.seq for p in decode_all(CAPTURES[name].reply)]
    for i in OK_PACKETS.get(name, ()):
        ok = parse_ok(packets[i].payload, NO_TRACK)
        assert not ok.status & SERVER_SESSION_STATE_CHANGED and ok.session_state is None


def test_strip_keeps_info_length_encoded():
    # Servers length-encode the info string for clients without CLIENT_SESSION_TRACK too
    # (MySQL's and MariaDB's net_send_ok use net_store_data), and clients read it so.
    block = b"\x01\x05\x04shop\x02\x011"
    info = b"Rows matched: 5  Changed: 5  Warnings: 0"
    ok = make_ok(TRACK, AUTOCOMMIT, affected_rows=5, info=info, session_state=block)
    reply = encode_packet(ok, 1)
    r = feed_whole_and_bytewise(lambda: Relaying(expect=Expect.RESULT, strip=True), reply)
    [p] = decode_all(r.out)
    assert p.seq == 1
    assert p.payload == b"\x00\x05\x00\x02\x00\x00\x00" + bytes((len(info),)) + info
    assert parse_ok(p.payload, NO_TRACK) == OkPacket(5, 0, AUTOCOMMIT, 0, info, None)
    assert r.changes.schema == b"shop"  # the proxy still learns what changed


def test_strip_infile_reply():
    def make():
        t = ResponseTracker()
        t.begin(Expect.RESULT, strip_session_track=True)
        t.feed(CAPTURES["infile_request"].reply)
        t.infile_sent()
        return Relaying(t)

    r = feed_whole_and_bytewise(make, CAPTURES["infile_after_empty"].reply)
    assert r.out == stripped_reply("infile_after_empty")
    assert parse_ok(decode_all(r.out)[0].payload, NO_TRACK).info == b"Records: 0  Deleted: 0  Skipped: 0  Warnings: 0"


def test_rewrites_are_per_feed():
    t = ResponseTracker()
    t.begin(Expect.RESULT, strip_session_track=True)
    reply = CAPTURES["ok_use"].reply
    t.feed(reply)
    assert len(t.rewrites) == 1
    t.begin(Expect.RESULT, strip_session_track=True)
    t.feed(CAPTURES["ok_insert"].reply)
    assert t.rewrites == []


def test_no_rewrites_without_strip():
    t = ResponseTracker()
    t.begin(Expect.RESULT)
    t.feed(CAPTURES["multi_statement"].reply)
    assert t.rewrites == [] and t.done


# -- synthetic result sets --------------------------------------------------------------------

COLDEF = capture_payloads("select_rows")[1]  # a real column definition
EOF_ROWS = make_eof(AUTOCOMMIT)


def result_set(rows: list[bytes], *, columns: int = 1, final: bytes = EOF_ROWS, col_eof: bytes = EOF_ROWS,
               seq: int = 1) -> bytes:
    return frames(bytes((columns,)), *[COLDEF] * columns, col_eof, *rows, final, seq=seq)


def relay(data: bytes, expect: Expect = Expect.RESULT, *, binary: bool = False, check=None, **kw) -> Relayed:
    return feed_whole_and_bytewise(lambda: Relaying(expect=expect, binary=binary), data, check, **kw)


def done_with(reply: bytes, **fields):
    def check(r: Relayed):
        assert r.phase is Phase.DONE
        assert r.consumed == len(reply), (r.consumed, len(reply))
        assert r.out == reply
        for key, value in fields.items():
            assert getattr(r, key) == value, key
    return check


@pytest.mark.parametrize("tail", [
    b"\xfe\x00\x00\x02\x00",  # a continuation frame that looks exactly like EOF
    b"\xff\x15\x04#28000Access denied",  # ... like ERR
    b"\xfe",
    b"\x00\x00\x00\x02\x00\x00\x00",  # ... like OK
    b"",  # the row is exactly 0xFFFFFF bytes: an empty continuation frame
], ids=["eof-like", "err-like", "fe", "ok-like", "empty"])
def test_row_of_16mib_and_more(tail):
    """A text row whose first column needs an 8-byte length prefix (0xFE), split
    into 0xFFFFFF frames; continuation frames are never interpreted."""
    size = MAX_FRAME + len(tail)  # total row payload
    body_len = size - 9
    row = b"\xfe" + int8(body_len) + b"\xab" * (body_len - len(tail)) + tail
    assert len(row) == size and row[MAX_FRAME:] == tail
    reply = result_set([b"\x01a", row, b"\x01b"], final=make_eof(AUTOCOMMIT | IN_TRANS, warnings=2))
    relay(reply + NEXT, check=done_with(reply, result_sets=1, status=AUTOCOMMIT | IN_TRANS, warnings=2,
                                        error=None, extra=NEXT), hot=frame_offsets(reply), **BIG)


def test_row_of_two_full_frames_and_more():
    body_len = 2 * MAX_FRAME + 100 - 9
    row = b"\xfe" + int8(body_len) + (b"\xfe\x00\x00\x02\x00" * (body_len // 5 + 1))[:body_len]
    reply = result_set([row], final=make_eof(AUTOCOMMIT))
    relay(reply + NEXT, check=done_with(reply, status=AUTOCOMMIT, extra=NEXT), hot=frame_offsets(reply), **BIG)


def test_binary_row_of_16mib():
    row = b"\x00\x00" + b"\xfe" + int8(MAX_FRAME) + b"\xff" * MAX_FRAME
    reply = result_set([row], final=make_eof(AUTOCOMMIT))
    relay(reply, binary=True, check=done_with(reply, result_sets=1), hot=frame_offsets(reply), **BIG)


@pytest.mark.parametrize("length", [9, 10, 300])
def test_text_row_starting_with_0xfe_is_a_row(length):
    row = b"\xfe" + int8(length - 9) + b"x" * (length - 9)
    assert len(row) == length
    reply = result_set([row, row], final=make_eof(AUTOCOMMIT | IN_TRANS))
    relay(reply + NEXT, check=done_with(reply, status=AUTOCOMMIT | IN_TRANS, extra=NEXT))


@pytest.mark.parametrize("row", [
    b"\xfb",  # a single NULL column
    b"\xfb\xfb\xfb",
    b"\x00",  # an empty string
    b"\xfc\x00\x01" + b"y" * 256,
    b"\xfd\x00\x00\x01" + b"z" * 65536,
], ids=["null", "nulls", "empty", "fc", "fd"])
def test_rows_with_every_lenenc_first_byte(row):
    reply = result_set([row, b"\x01x"], final=make_eof(AUTOCOMMIT | IN_TRANS))
    relay(reply + NEXT, check=done_with(reply, status=AUTOCOMMIT | IN_TRANS, extra=NEXT),
          bytewise=len(reply) < 10_000, hot=frame_offsets(reply))


def test_err_among_rows_ends_the_response():
    err = make_err(1317, "70100", "Query execution was interrupted")
    reply = result_set([b"\x011", b"\x012"], final=err)

    def check(r: Relayed):
        done_with(reply, result_sets=1, extra=NEXT)(r)
        assert (r.error.errno, r.error.sqlstate, r.error.message) == (1317, "70100", b"Query execution was interrupted")

    relay(reply + NEXT, check=check)


def test_err_instead_of_column_eof():
    reply = frames(b"\x01", COLDEF, make_err(1054, "42S22", "Unknown column"), seq=1)
    relay(reply + NEXT, check=done_with(reply, extra=NEXT))


def test_more_results_chain():
    # CALL p(): OK(MORE) -> result set (EOF with MORE) -> result set (EOF with MORE) -> OK
    ok_more = make_ok(TRACK, AUTOCOMMIT | MORE, affected_rows=3, session_state=b"\x02\x011")
    seq1 = frames(ok_more, seq=1)
    rs1 = result_set([b"\x011"], final=make_eof(AUTOCOMMIT | MORE), seq=2)
    rs2 = result_set([b"\x012", b"\x013"], columns=2, final=make_eof(AUTOCOMMIT | MORE), seq=7)
    last = frames(make_ok(TRACK, AUTOCOMMIT, affected_rows=0), seq=14)
    reply = seq1 + rs1 + rs2 + last
    r = relay(reply + NEXT, check=done_with(reply, result_sets=2, ok_count=2, status=AUTOCOMMIT, affected_rows=0,
                                            extra=NEXT))
    assert r.changes == StateChanges(state_change=True)


def test_a_report_an_eof_could_not_carry_waits_for_an_ok_with_one_of_its_own():
    # MariaDB: an EOF that says "state changed" leaves the report on the server; the next OK that
    # has a report brings it, a bare one (DO's, COM_PING's) does not.
    held = make_eof(IN_TRANS | AUTOCOMMIT | MORE | SERVER_SESSION_STATE_CHANGED)
    select = result_set([b"\x011"], final=held)
    bare = frames(make_ok(TRACK, IN_TRANS | AUTOCOMMIT), seq=6)
    r = relay(select + bare + NEXT, check=done_with(select + bare, result_sets=1, ok_count=1, extra=NEXT))
    assert r.eof_state_pending and r.changes is None
    report = make_ok(TRACK, IN_TRANS | AUTOCOMMIT, session_state=b"\x05\x09\x08T_R___S_")
    r = relay(select + frames(report, seq=6) + NEXT, check=done_with(select + frames(report, seq=6), extra=NEXT))
    assert not r.eof_state_pending and r.changes == StateChanges(trx_state=b"T_R___S_")
    alone = result_set([b"\x011"], final=make_eof(IN_TRANS | AUTOCOMMIT | SERVER_SESSION_STATE_CHANGED))
    assert relay(alone + NEXT, check=done_with(alone, extra=NEXT)).eof_state_pending


def test_more_results_chain_ending_in_err():
    reply = result_set([b"\x011"], final=make_eof(AUTOCOMMIT | MORE)) + frames(make_err(1146, "42S02", "no"), seq=6)
    r = relay(reply + NEXT, check=done_with(reply, result_sets=1, extra=NEXT))
    assert r.error.errno == 1146


def test_more_results_flag_in_simple_and_fetch_is_not_followed():
    eof = frames(make_eof(AUTOCOMMIT | MORE), seq=1)
    relay(eof + NEXT, Expect.SIMPLE, check=done_with(eof, extra=NEXT))
    rows = frames(b"\x00\x00\x01", make_eof(AUTOCOMMIT | MORE | CURSOR), seq=1)
    relay(rows + NEXT, Expect.FETCH, check=done_with(rows, extra=NEXT))


def test_fetch_ended_by_err():
    reply = frames(b"\x00\x00\x01\x00\x00\x00", make_err(1421, "HY000", "The statement (1) has no open cursor."),
                   seq=1)
    r = relay(reply + NEXT, Expect.FETCH, check=done_with(reply, extra=NEXT))
    assert r.error.errno == 1421


def test_execute_with_cursor_ends_after_column_eof():
    reply = frames(b"\x02", COLDEF, COLDEF, make_eof(AUTOCOMMIT | CURSOR), seq=1)
    r = relay(reply + NEXT, binary=True, check=done_with(reply, status=AUTOCOMMIT | CURSOR, result_sets=1,
                                                          extra=NEXT))
    assert r.error is None


def test_execute_without_cursor_reads_rows():
    reply = result_set([b"\x00\x00\x07"], final=make_eof(AUTOCOMMIT))
    relay(reply + NEXT, binary=True, check=done_with(reply, status=AUTOCOMMIT, extra=NEXT))


def test_text_query_never_has_a_cursor():
    # the CURSOR_EXISTS bit only ends a *binary* result after its column EOF
    reply = result_set([b"\x011"], col_eof=make_eof(AUTOCOMMIT | CURSOR), final=make_eof(AUTOCOMMIT))
    relay(reply, check=done_with(reply, status=AUTOCOMMIT))


def test_many_columns_lenenc_count():
    n = 300
    reply = frames(b"\xfc" + n.to_bytes(2, "little"), *[COLDEF] * n, EOF_ROWS, b"\x01x" * n, EOF_ROWS, seq=1)
    relay(reply, check=done_with(reply, result_sets=1))


def test_prepare_with_params_and_columns():
    prep = b"\x00" + (77).to_bytes(4, "little") + (2).to_bytes(2, "little") + (3).to_bytes(2, "little") + b"\x00" \
        + (1).to_bytes(2, "little")
    reply = frames(prep, COLDEF, COLDEF, COLDEF, EOF_ROWS, COLDEF, COLDEF, EOF_ROWS, seq=1)
    r = relay(reply + NEXT, Expect.PREPARE, check=done_with(reply, extra=NEXT))
    assert r.prepare_ok == (77, 2, 3, 1)


def test_prepare_short_ok_from_old_servers():
    prep = b"\x00" + (5).to_bytes(4, "little") + b"\x00\x00" + b"\x00\x00"  # no filler/warnings
    reply = frames(prep, seq=1)
    r = relay(reply, Expect.PREPARE, check=done_with(reply))
    assert r.prepare_ok == (5, 0, 0, 0)


def test_field_list_ended_by_err():
    reply = frames(COLDEF + b"\x00", make_err(1046, "3D000", "No database selected"), seq=1)
    r = relay(reply, Expect.FIELD_LIST, check=done_with(reply))
    assert r.error.errno == 1046


def test_statistics_is_one_packet_whatever_it_starts_with():
    for text in (b"Uptime: 1  Threads: 1", b"\xff\xfe odd", b""):
        reply = frames(text, seq=1)
        relay(reply + NEXT, Expect.STATISTICS, check=done_with(reply, error=None, extra=NEXT))


def test_infile_request_in_a_multi_result():
    reply = frames(make_ok(TRACK, AUTOCOMMIT | MORE), b"\xfbdata.csv", seq=1)
    r = relay(reply + NEXT, check=lambda r: None)
    assert r.phase is Phase.INFILE and r.infile_name == b"data.csv" and r.consumed == len(reply)


# -- feeding contract ---------------------------------------------------------------------------


def test_shaping_packet_must_be_seen_whole():
    t = ResponseTracker()
    t.begin(Expect.RESULT)
    reply = CAPTURES["ok_use"].reply
    assert t.feed(reply[:-1]) == 0  # hold it all: the OK is not complete
    assert not t.done
    assert t.feed(reply) == len(reply) and t.done


def test_rows_are_consumed_as_they_arrive():
    t = ResponseTracker()
    t.begin(Expect.RESULT)
    head = frames(b"\x01", COLDEF, EOF_ROWS, seq=1)
    assert t.feed(head) == len(head)
    row = encode_packet(b"\x05hello" * 100, 4)
    assert t.feed(row[:5]) == 5  # header and first byte: the rest can be skipped
    assert t.feed(row[5:50]) == 45
    assert t.feed(row[50:]) == len(row) - 50
    assert t.feed(row[:4]) == 0  # a header alone is not enough to tell a row from EOF
    assert not t.done


def test_begin_while_in_progress():
    t = ResponseTracker()
    assert t.done
    t.begin(Expect.RESULT)
    with pytest.raises(LocalProtocolError):
        t.begin(Expect.SIMPLE)
    t.feed(CAPTURES["infile_request"].reply)
    assert t.phase is Phase.INFILE
    with pytest.raises(LocalProtocolError):
        t.begin(Expect.RESULT)
    t.abort()
    t.begin(Expect.SIMPLE)  # fine after abort()
    assert t.phase is Phase.SINGLE


def test_infile_sent_outside_infile():
    t = ResponseTracker()
    with pytest.raises(LocalProtocolError):
        t.infile_sent()
    t.begin(Expect.RESULT)
    with pytest.raises(LocalProtocolError):
        t.infile_sent()


def test_begin_resets_the_previous_result():
    t = ResponseTracker()
    t.begin(Expect.RESULT)
    t.feed(CAPTURES["err_syntax"].reply)
    assert t.error is not None
    t.begin(Expect.RESULT)
    t.feed(CAPTURES["ok_insert"].reply)
    assert (t.error, t.ok_count, t.affected_rows, t.result_sets, t.changes) == (None, 1, 1, 0, None)


# -- malformed responses ------------------------------------------------------------------------


@pytest.mark.parametrize("expect,payloads", [
    (Expect.RESULT, [b""]),  # empty first packet
    (Expect.RESULT, [b"\x00"]),  # truncated OK
    (Expect.RESULT, [b"\x00", COLDEF]),  # column count 0
    (Expect.RESULT, [b"\x01", COLDEF, b"\x03def"]),  # no EOF after the column definitions
    (Expect.RESULT, [b"\x01", COLDEF, EOF_ROWS, b"\xfe\x00"]),  # short EOF ends rows
    (Expect.SIMPLE, [b"\x01"]),  # a result set where OK/ERR/EOF belongs
    (Expect.PREPARE, [b"\x00\x01"]),  # truncated prepare-OK
    (Expect.PREPARE, [b"\x01"]),
    (Expect.RESULT, [b"\xff"]),  # ERR without its code
])
def test_malformed_raises_protocol_error(expect, payloads):
    data = frames(*payloads, seq=1)
    for _label, chunks in chunkings(data):
        r = Relaying(expect=expect)
        with pytest.raises(RemoteProtocolError):
            for chunk in chunks:
                r.feed(chunk)


packet_payloads = st.one_of(
    st.binary(max_size=12),
    st.sampled_from([b"\x00\x00\x00\x02\x00\x00\x00", b"\xfe\x00\x00\x02\x00", b"\xfe\x00\x00\x0a\x00",
                     b"\xfe\x00\x00\x42\x00", b"\x01", b"\x02", COLDEF, b"\xfbf", b"\xff\x15\x04#28000x",
                     b"\x00\x01\x00\x00\x00\x01\x00\x01\x00\x00\x00\x00"]),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(Expect)), st.booleans(), st.lists(packet_payloads, max_size=12))
def test_any_packet_sequence_is_handled_the_same_however_it_is_split(expect, binary, payloads):
    """Garbage or not, the tracker never raises anything but ProtocolError, and
    whole / bytewise / random feeding agree on the result or the error."""
    data = frames(*payloads, seq=1)
    outcomes = []
    for _label, chunks in chunkings(data, seeds=(1, 2)):
        r = Relaying(expect=expect, binary=binary)
        try:
            for chunk in chunks:
                r.feed(chunk)
        except ProtocolError as exc:
            outcomes.append(("error", type(exc)))
            continue
        res = r.result()
        assert res.consumed + len(r.held) + len(res.extra) == len(data)
        outcomes.append(res)
    assert all(o == outcomes[0] for o in outcomes), outcomes


# -- errors that name a statement ----------------------------------------------------------------

@pytest.mark.parametrize("deprecate_eof", [False, True])
@pytest.mark.parametrize("errno, server_text, client_text", [
    (1421, b"The statement (8) has no open cursor", b"The statement (1) has no open cursor"),
    (1243, b"Unknown prepared statement handler (8) given to mysqld_stmt_fetch",
     b"Unknown prepared statement handler (1) given to mysqld_stmt_fetch"),
    (1064, b"You have an error near '(8)'", b"You have an error near '(8)'"),  # not about the statement
])
def test_an_error_that_names_the_statement_names_the_clients_id(errno, server_text, client_text, deprecate_eof):
    # The server knows the statement by its own id; the client by the id the proxy gave it.
    reply = encode_packet(make_err(errno, "HY000", server_text), 1)
    expected = encode_packet(make_err(errno, "HY000", client_text), 1)

    def check(r: Relayed):
        done_with(expected)(r)
        assert r.error is not None and r.error.message == client_text

    feed_whole_and_bytewise(lambda: Relaying(expect=Expect.FETCH, binary=True, stmt_ids=(8, 1),
                                             deprecate_eof=deprecate_eof), reply, check)

# response.py's CLIENT_DEPRECATE_EOF translation (feed_translating): the classic
# responses the proxy's backends send, rewritten for a client that negotiated
# CLIENT_DEPRECATE_EOF, must be what the server itself sends such a client.
# Checked against MariaDB: every capture in captures.json holds the same
# command's reply on a classic connection and on a DEPRECATE_EOF one; the
# translation of the first must be the second (statement ids mapped). Then
# responses the captures lack, built in both framings from one description
# by a model of the server written here (rows of 16 MiB and more, sequence
# ids wrapping past 255, chains of result sets, ERR among rows, cursors,
# prepare-OKs with parameters and columns, LOCAL INFILE after a result set),
# by hand and with hypothesis. Each is fed whole, byte by byte and in random
# chunks, the way the relay feeds it; bytes held back between feeds must be
# left as they came. And the framings the proxy builds itself: make_eof_for,
# result sets of protocol/resultset.py, FrameScanner's renumbering of LOCAL
# INFILE data.
from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings, strategies as st

from mysqlpool_proxy.constants import CLIENT, SERVER_SESSION_STATE_CHANGED, SERVER_STATUS
from mysqlpool_proxy.errors import ProtocolError, RemoteProtocolError
from mysqlpool_proxy.protocol.framing import MAX_FRAME, FrameScanner, encode_packet
from mysqlpool_proxy.protocol.packets import make_eof, make_eof_for, make_err, make_ok, parse_ok, strip_session_track
from mysqlpool_proxy.protocol.response import Expect, Phase, ResponseTracker
from mysqlpool_proxy.protocol.resultset import Column, Ok, Rows, encode_reply, field_list_end, result_set
from mysqlpool_proxy.protocol.session_track import Trackers
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
AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
MORE = SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS
CURSOR = SERVER_STATUS.SERVER_STATUS_CURSOR_EXISTS
LAST_ROW = SERVER_STATUS.SERVER_STATUS_LAST_ROW_SENT
BIG = dict(bytewise=False, max_chunk=1 << 20)
NEXT = encode_packet(b"\x00\x00\x00\x02\x00\x00\x00", 1)  # bytes of a later response
COLDEF = capture_payloads("select_rows")[1]  # a real column definition

# Fields of the tracker's result that a translation must leave as the classic relay has them.
SAME_FIELDS = ("consumed", "phase", "status", "warnings", "affected_rows", "last_insert_id", "error", "changes",
               "result_sets", "prepare_ok", "infile_name", "ok_count", "extra")


def ok_fe(status: int, warnings: int = 0, state: bytes | None = None) -> bytes:
    """What MySQL and MariaDB send a DEPRECATE_EOF client in place of an EOF (net_send_ok with is_eof)."""
    return make_ok(TRACK, status, warnings=warnings, header=0xFE, session_state=state)


def relay_both(reply: bytes, expect: Expect, *, binary: bool = False, check_translated=None, **kw) -> Relayed:
    """Relay `reply` to a classic client and to a DEPRECATE_EOF one (each fed whole, bytewise, in
    random chunks); the tracker's findings must agree. Returns the DEPRECATE_EOF client's."""
    begin = {k: kw.pop(k) for k in ("strip", "trackers", "prepare_id") if k in kw}
    classic = feed_whole_and_bytewise(lambda: Relaying(expect=expect, binary=binary, **begin), reply, **kw)
    translated = feed_whole_and_bytewise(
        lambda: Relaying(expect=expect, binary=binary, deprecate_eof=True, **begin), reply, check_translated, **kw)
    for name in SAME_FIELDS:
        assert getattr(translated, name) == getattr(classic, name), name
    return translated


def stmt_id(reply: bytes) -> int:
    return int.from_bytes(reply[5:9], "little")


# -- the captures: the translation is what MariaDB sends a DEPRECATE_EOF client ----------------

RELAYED_CAPTURES = [name for name in CAPTURES if CAPTURES[name].expect != "AFTER_INFILE"]


def expected_from_server(name: str) -> bytes:
    """MariaDB's own reply to a DEPRECATE_EOF client, as the proxy must give it."""
    cap = CAPTURES[name]
    if name == "statistics":
        return cap.reply  # (its text is the server's uptime and counters: only its framing can be compared)
    if name == "call_state_change":
        # The EOF with SERVER_SESSION_STATE_CHANGED: the server, writing an OK in its place, flushes the change's
        # details into it, and its last OK has none left. The proxy's backend sends them with its last OK (the
        # classic framing leaves them pending), so the client gets them there as well.
        head = decode_all(cap.reply_deprecate_eof)[:-1]
        last = decode_all(cap.reply)[-1]
        return b"".join(p.raw for p in head) + encode_packet(last.payload, head[-1].seq + 1)
    return cap.reply_deprecate_eof


@pytest.mark.parametrize("name", RELAYED_CAPTURES)
def test_capture_translated_as_the_server_frames_it(name):
    cap = CAPTURES[name]
    expected = expected_from_server(name)
    prepare_id = stmt_id(cap.reply_deprecate_eof) if cap.expect == "PREPARE" and cap.reply[4] == 0 else None

    def check(r: Relayed):
        assert r.out == expected
        assert r.consumed == len(cap.reply) and r.extra == NEXT

    relay_both(cap.reply + NEXT, Expect[cap.expect], binary=cap.binary, prepare_id=prepare_id,
               check_translated=check)


def test_the_captures_differ_where_the_framings_do():
    """(The comparison above is no tautology: most replies with result sets differ between the framings.)"""
    differ = {name for name, cap in CAPTURES.items() if cap.reply != cap.reply_deprecate_eof}
    assert {"select_rows", "select_empty", "multi_statement", "call_procedure", "set_option", "field_list",
            "prepare_select", "prepare_no_params", "prepare_insert", "execute_rows", "execute_cursor", "fetch_two",
            "fetch_rest", "select_err_in_rows", "execute_call_out_params"} <= differ


def test_capture_infile_turn_translated():
    request, after = CAPTURES["infile_request"].reply, CAPTURES["infile_after_empty"].reply
    assert CAPTURES["infile_after_empty"].reply_deprecate_eof == after

    def make():
        t = ResponseTracker()
        t.begin(Expect.RESULT, deprecate_eof=True)
        data = bytearray(request)
        assert t.feed_translating(data) == len(request) and t.phase is Phase.INFILE
        assert (bytes(data), t.rewrites, t.infile_seq, t.seq_shift) == (request, [], 1, 0)
        t.infile_sent()
        return Relaying(t)

    r = feed_whole_and_bytewise(make, after + NEXT)
    assert (r.out, r.phase, r.ok_count, r.extra) == (after, Phase.DONE, 1, NEXT)


# OK packets (0x00) of each DEPRECATE_EOF reply, by index.
OK_PACKETS_DEPRECATE_EOF = {
    "ok_insert": [0], "ok_set_var": [0], "ok_use": [0], "ok_begin": [0], "ok_commit": [0], "multi_statement": [4],
    "call_procedure": [9], "ping": [0], "init_db_ok": [0], "stmt_reset": [0], "reset_connection": [0],
    "execute_call_out_params": [8], "call_state_change": [8],
}


@pytest.mark.parametrize("name", RELAYED_CAPTURES)
def test_capture_translated_for_a_client_without_session_track(name):
    """DEPRECATE_EOF without CLIENT_SESSION_TRACK: OKs lose their state blocks, and so do the OKs that
    stand for EOFs (with their state-changed flag, as net_send_ok drops it for such a client)."""
    cap = CAPTURES[name]
    packets = decode_all(expected_from_server(name))
    expected = []
    for i, p in enumerate(packets):
        if i in OK_PACKETS_DEPRECATE_EOF.get(name, ()) or (p.payload[:1] == b"\xfe" and len(p.payload) < 0xFFFFFF
                                                           and name != "statistics"):
            expected.append(encode_packet(strip_session_track(p.payload, TRACK), p.seq))
        else:
            expected.append(p.raw)
    prepare_id = stmt_id(cap.reply_deprecate_eof) if cap.expect == "PREPARE" and cap.reply[4] == 0 else None

    def check(r: Relayed):
        assert r.out == b"".join(expected)

    relay_both(cap.reply, Expect[cap.expect], binary=cap.binary, strip=True, prepare_id=prepare_id,
               check_translated=check)


def test_state_changed_flag_follows_the_clients_trackers():
    """The OK standing for an EOF with SERVER_SESSION_STATE_CHANGED keeps the flag (with a state-change entry)
    only for a client whose trackers report state changes, as the classic EOF's flag does."""
    reply = CAPTURES["call_state_change"].reply
    on = Trackers(variables=None, schema=True, state_change=True, transaction_info=0)
    off = replace(on, state_change=False)
    for trackers, state in ((on, b"\x02\x011"), (off, None)):
        r = relay_both(reply, Expect.RESULT, trackers=trackers)
        eof_ok = decode_all(r.out)[7].payload
        assert eof_ok == ok_fe(AUTOCOMMIT | MORE | 0x8000 | (SERVER_SESSION_STATE_CHANGED if state else 0), state=state)
        ok = parse_ok(eof_ok, TRACK)
        assert (ok.session_state, ok.info) == (state, b"")


# -- a model of the server, writing one response in either framing ---------------------------


def model(parts: list[tuple], *, deprecate_eof: bool, seq: int = 1) -> bytes:
    """The bytes of a response described by `parts`, framed as a server does for a client with or without
    CLIENT_DEPRECATE_EOF: ("packet", payload) as it is; ("definitions_end", status) the EOF after definitions,
    which such a client does not get; ("end", status, warnings) an EOF, which it gets as an OK with 0xFE."""
    payloads = []
    for part in parts:
        if part[0] == "packet":
            payloads.append(part[1])
        elif part[0] == "definitions_end":
            if not deprecate_eof:
                payloads.append(make_eof(part[1]))
        elif part[0] == "end":
            payloads.append(ok_fe(part[1], part[2]) if deprecate_eof else make_eof(part[1], part[2]))
        else:
            raise AssertionError(part)
    return frames(*payloads, seq=seq)


def result_set_parts(rows: list[bytes], *, columns: int = 1, status: int = AUTOCOMMIT, warnings: int = 0,
                     end: bytes | None = None) -> list[tuple]:
    parts: list[tuple] = [("packet", bytes((columns,)))] + [("packet", COLDEF)] * columns
    parts += [("definitions_end", status)] + [("packet", row) for row in rows]
    parts.append(("packet", end) if end is not None else ("end", status, warnings))
    return parts


def check_model(parts: list[tuple], expect: Expect = Expect.RESULT, *, binary: bool = False, seq: int = 1,
                **kw) -> Relayed:
    classic = model(parts, deprecate_eof=False, seq=seq)
    expected = model(parts, deprecate_eof=True, seq=seq)

    def check(r: Relayed):
        assert r.phase is Phase.DONE
        assert r.out == expected
        assert r.extra == NEXT and r.consumed == len(classic)

    return relay_both(classic + NEXT, expect, binary=binary, check_translated=check, **kw)


def big_row(tail: bytes) -> bytes:
    """A text row of 0xFFFFFF + len(tail) bytes: its continuation frame is `tail`."""
    body_len = MAX_FRAME + len(tail) - 9
    return b"\xfe" + int8(body_len) + b"\xab" * (body_len - len(tail)) + tail


@pytest.mark.parametrize("tail", [b"\xfe\x00\x00\x02\x00", b"\xff\x15\x04#28000Access denied", b""],
                         ids=["eof-like", "err-like", "empty"])
def test_rows_of_16mib_after_the_dropped_eof(tail):
    """Every frame after the dropped EOF is renumbered, continuation frames too (never interpreted)."""
    parts = result_set_parts([b"\x01a", big_row(tail), b"\x01b"], status=AUTOCOMMIT | IN_TRANS, warnings=2)
    classic = model(parts, deprecate_eof=False)
    r = check_model(parts, hot=frame_offsets(classic), **BIG)
    assert [seq for _, seq in _frames(r.out)] == list(range(1, 8))  # 1 count, 1 def, 3 rows in 4 frames, the OK


def _frames(raw: bytes) -> list[tuple[int, int]]:
    out, pos = [], 0
    while pos < len(raw):
        length = int.from_bytes(raw[pos:pos + 3], "little")
        out.append((length, raw[pos + 3]))
        pos += 4 + length
    return out


def test_binary_row_of_two_full_frames():
    row = b"\x00\x00" + b"\xfe" + int8(2 * MAX_FRAME) + b"\xfe" * (2 * MAX_FRAME)
    parts = result_set_parts([row, b"\x00\x00\x01x"])
    check_model(parts, binary=True, hot=frame_offsets(model(parts, deprecate_eof=False)), **BIG)


def test_sequence_ids_wrap_past_255():
    rows = [b"\x03%03d" % i for i in range(600)]
    parts = result_set_parts(rows, columns=2)
    check_model(parts)
    check_model(parts, seq=250, bytewise=False)  # (a command of several frames: the answer starts later)


def test_chain_of_result_sets_drops_one_eof_each():
    """CALL p(): result sets with MORE_RESULTS, an OK between, the final OK: the shift grows by one per result."""
    ok_more = make_ok(TRACK, AUTOCOMMIT | MORE, affected_rows=3, session_state=b"\x02\x011")
    parts = [
        *result_set_parts([b"\x011"], status=AUTOCOMMIT | MORE),
        ("packet", ok_more),
        *result_set_parts([b"\x012", b"\x013"], columns=2, status=AUTOCOMMIT | MORE, warnings=1),
        *result_set_parts([], status=AUTOCOMMIT | MORE),
        ("packet", make_ok(TRACK, AUTOCOMMIT)),
    ]
    r = check_model(parts)
    assert r.result_sets == 3 and r.ok_count == 2


def test_more_result_sets_than_sequence_ids():
    """A CALL whose loop returns 300 result sets: 300 EOFs dropped, ids taken modulo 256."""
    parts = [part for i in range(300) for part in result_set_parts([b"\x01%d" % (i % 10)], status=AUTOCOMMIT | MORE)]
    parts.append(("packet", make_ok(TRACK, AUTOCOMMIT)))
    assert check_model(parts, bytewise=False).result_sets == 300


def test_err_among_rows_after_the_dropped_eof():
    err = make_err(1317, "70100", "Query execution was interrupted")
    r = check_model(result_set_parts([b"\x011", b"\x012"], end=err))
    assert r.error.errno == 1317 and decode_all(r.out)[-1].seq == 5


def test_err_instead_of_the_column_eof():
    check_model([("packet", b"\x01"), ("packet", COLDEF), ("packet", make_err(1054, "42S22", "Unknown column"))])


def test_err_ending_a_chain():
    parts = [*result_set_parts([b"\x011"], status=AUTOCOMMIT | MORE), ("packet", make_err(1146, "42S02", "no"))]
    assert check_model(parts).error.errno == 1146


def test_execute_that_opened_a_cursor_ends_with_an_ok_for_its_column_eof():
    """MariaDB's and MySQL's Materialized_cursor::open sends the metadata without its EOF, then an EOF with
    CURSOR_EXISTS (send_eof): for a DEPRECATE_EOF client, an OK with 0xFE, nothing dropped."""
    parts = [("packet", b"\x02"), ("packet", COLDEF), ("packet", COLDEF), ("end", AUTOCOMMIT | CURSOR, 0)]
    r = check_model(parts, binary=True)
    assert r.status & CURSOR and decode_all(r.out)[-1].payload == ok_fe(AUTOCOMMIT | CURSOR)


def test_text_result_with_the_cursor_flag_still_drops_its_eof():
    check_model(result_set_parts([b"\x011"], status=AUTOCOMMIT | CURSOR))


def test_fetch_ends_with_an_ok():
    rows = [("packet", b"\x00\x00\x01\x00\x00\x00")] * 3
    check_model([*rows, ("end", AUTOCOMMIT | CURSOR, 0)], Expect.FETCH)
    check_model([*rows, ("end", AUTOCOMMIT | LAST_ROW, 1)], Expect.FETCH)
    check_model([*rows, ("packet", make_err(1421, "HY000", "no open cursor"))], Expect.FETCH)


def prepare_parts(columns: int, params: int) -> list[tuple]:
    prep = b"\x00" + (77).to_bytes(4, "little") + columns.to_bytes(2, "little") + params.to_bytes(2, "little") \
        + b"\x00" + (1).to_bytes(2, "little")
    parts: list[tuple] = [("packet", prep)]
    for count in (params, columns):
        if count:
            parts += [("packet", COLDEF)] * count + [("definitions_end", AUTOCOMMIT)]
    return parts


def test_prepare_drops_both_definition_eofs():
    r = check_model(prepare_parts(2, 3), Expect.PREPARE)
    assert r.prepare_ok == (77, 2, 3, 1) and [p.seq for p in decode_all(r.out)] == [1, 2, 3, 4, 5, 6]
    check_model(prepare_parts(0, 3), Expect.PREPARE)
    check_model(prepare_parts(1, 0), Expect.PREPARE)
    check_model(prepare_parts(0, 0), Expect.PREPARE)


def test_field_list_and_simple_eofs_become_oks():
    check_model([("packet", COLDEF + b"\x00")] * 3 + [("end", AUTOCOMMIT, 0)], Expect.FIELD_LIST)
    check_model([("end", AUTOCOMMIT, 0)], Expect.FIELD_LIST)
    check_model([("end", AUTOCOMMIT | MORE, 0)], Expect.SIMPLE)  # COM_SET_OPTION, COM_DEBUG


def test_statistics_and_oks_are_left_alone():
    for text in (b"\xfe\x00\x00\x02\x00", b"Uptime: 1"):
        check_model([("packet", text)], Expect.STATISTICS)
    check_model([("packet", make_ok(TRACK, AUTOCOMMIT, affected_rows=2))], Expect.SIMPLE)


def test_local_infile_after_a_result_set():
    """`SELECT 1; LOAD DATA LOCAL INFILE ...`: the INFILE request reaches the client one id lower than the
    server numbered it; the tracker says by how much (the client's data is raised by it: FrameScanner)."""
    head = [*result_set_parts([b"\x011"], status=AUTOCOMMIT | MORE), ("packet", b"\xfbdata.csv")]
    first = model(head, deprecate_eof=False)

    def check(r: Relayed):
        assert r.phase is Phase.INFILE and r.infile_name == b"data.csv" and r.extra == NEXT
        assert r.out == model(head, deprecate_eof=True)

    relay_both(first + NEXT, Expect.RESULT, check_translated=check)

    # The client sent its file as ids 6 and 7 (the server got 7 and 8); the server's OK, 9, reaches it as 8.
    def resumed() -> Relaying:
        t = ResponseTracker()
        t.begin(Expect.RESULT, deprecate_eof=True)
        assert t.feed_translating(bytearray(first)) == len(first)
        assert (t.phase, t.infile_seq, t.seq_shift) == (Phase.INFILE, 5, 1)
        t.infile_sent()
        return Relaying(t)

    after = encode_packet(make_ok(TRACK, AUTOCOMMIT, affected_rows=1), 9)
    r = feed_whole_and_bytewise(resumed, after + NEXT)
    assert r.out == encode_packet(make_ok(TRACK, AUTOCOMMIT, affected_rows=1), 8) and r.extra == NEXT


def test_held_bytes_are_renumbered_once():
    """A packet held back (its header or its shaping body not whole yet) is renumbered when it is consumed,
    not before: the relay feeds it again."""
    classic = model(result_set_parts([b"\x01x" * 50] * 3), deprecate_eof=False)
    t = ResponseTracker()
    t.begin(Expect.RESULT, deprecate_eof=True)
    head = frames(b"\x01", COLDEF, make_eof(AUTOCOMMIT), seq=1)
    data = bytearray(classic[:len(head) + 3])  # the first row's header, short of its first byte
    assert t.feed_translating(data) == len(head)
    assert data[len(head):] == classic[len(head):len(head) + 3]


# -- hypothesis: any response shape ------------------------------------------------------------

# Rows: any bytes that do not start like an EOF or an ERR, and rows whose first value has an 8-byte length.
rows_st = st.lists(st.one_of(st.binary(min_size=1, max_size=12).filter(lambda b: b[0] not in (0xFE, 0xFF)),
                             st.binary(max_size=4).map(lambda b: b"\xfe" + int8(len(b)) + b)), max_size=6)
status_st = st.sampled_from([AUTOCOMMIT, AUTOCOMMIT | IN_TRANS, 0])


@st.composite
def result_chains(draw) -> list[tuple]:
    parts: list[tuple] = []
    count = draw(st.integers(1, 4))
    for i in range(count):
        more = MORE if i < count - 1 else 0
        status = draw(status_st) | more
        if draw(st.booleans()):
            parts.append(("packet", make_ok(TRACK, status, affected_rows=draw(st.integers(0, 300)))))
        else:
            parts += result_set_parts(draw(rows_st), columns=draw(st.integers(1, 3)), status=status,
                                      warnings=draw(st.integers(0, 3)))
    if draw(st.booleans()):
        parts[-1] = ("packet", make_err(1317, "70100", "interrupted"))
    return parts


@settings(max_examples=60, deadline=None)
@given(parts=result_chains(), seq=st.sampled_from([1, 2, 200, 255]))
def test_any_chain_of_results(parts, seq):
    check_model(parts, seq=seq, seeds=(1, 2))


packet_payloads = st.one_of(
    st.binary(max_size=12),
    st.sampled_from([b"\x00\x00\x00\x02\x00\x00\x00", b"\xfe\x00\x00\x02\x00", b"\xfe\x00\x00\x0a\x00",
                     b"\xfe\x00\x00\x42\x00", b"\xfe\x00\x00\x02\x40", b"\x01", b"\x02", COLDEF, b"\xfbf",
                     b"\xff\x15\x04#28000x", b"\x00\x01\x00\x00\x00\x01\x00\x01\x00\x00\x00\x00"]),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(Expect)), st.booleans(), st.lists(packet_payloads, max_size=12))
def test_any_packet_sequence_is_translated_the_same_however_it_is_split(expect, binary, payloads):
    """Garbage or not, the translation raises nothing but ProtocolError, whole / bytewise / random feeding
    agree, and the tracker finds what it finds for a classic client."""
    data = frames(*payloads, seq=1)
    outcomes = []
    for deprecate_eof in (False, True):
        for _label, chunks in chunkings(data, seeds=(1, 2)):
            r = Relaying(expect=expect, binary=binary, deprecate_eof=deprecate_eof)
            try:
                for chunk in chunks:
                    r.feed(chunk)
            except ProtocolError as exc:
                outcomes.append(("error", type(exc)))
                continue
            res = r.result()
            assert res.consumed + len(r.held) + len(res.extra) == len(data)
            outcomes.append(tuple(getattr(res, name) for name in SAME_FIELDS))
    assert all(o == outcomes[0] for o in outcomes), outcomes


# -- what the proxy writes itself ---------------------------------------------------------------


def test_make_eof_for_the_clients_framing():
    assert make_eof_for(TRACK, AUTOCOMMIT, 3) == make_eof(AUTOCOMMIT, 3)
    ok = make_eof_for(TRACK | CLIENT.DEPRECATE_EOF, AUTOCOMMIT | SERVER_SESSION_STATE_CHANGED, 3)
    assert ok == b"\xfe\x00\x00\x02\x00\x03\x00"  # MariaDB's COM_SET_OPTION answer, less its ANSI_QUOTES bit
    assert CAPTURES["set_option"].reply_deprecate_eof == encode_packet(make_eof_for(
        CLIENT.PROTOCOL_41 | CLIENT.DEPRECATE_EOF, AUTOCOMMIT | 0x8000), 1)


def _read_result(data: bytes, deprecate_eof: bool) -> tuple[list[bytes], list[bytes], bytes]:
    """(column definitions, rows, the terminator) of a text result set, read as a client with that framing
    reads it: the consecutive sequence ids checked."""
    packets = decode_all(data)
    assert [p.seq for p in packets] == list(range(1, len(packets) + 1))
    payloads = [p.payload for p in packets]
    count = payloads[0][0]
    defs = payloads[1:1 + count]
    rest = payloads[1 + count:]
    if not deprecate_eof:
        assert rest[0] == make_eof(AUTOCOMMIT)
        rest = rest[1:]
    return defs, rest[:-1], rest[-1]


def test_result_set_in_both_framings():
    cols = [Column("a"), Column("n", 8)]
    rows = [("x", 1), (None, 2)]
    classic = result_set(cols, rows, AUTOCOMMIT)
    translated = result_set(cols, rows, AUTOCOMMIT, deprecate_eof=True)
    defs, body, end = _read_result(classic, False)
    assert end == make_eof(AUTOCOMMIT)
    assert _read_result(translated, True) == (defs, body, ok_fe(AUTOCOMMIT))
    # ... and the proxy's translation of the classic one gives the same bytes.
    r = feed_whole_and_bytewise(lambda: Relaying(expect=Expect.RESULT, deprecate_eof=True), classic)
    assert r.out == translated
    defs, body, end = _read_result(result_set(cols, [], AUTOCOMMIT | IN_TRANS, deprecate_eof=True), True)
    assert (len(defs), body, end) == (2, [], ok_fe(AUTOCOMMIT | IN_TRANS))


def test_encode_reply_and_field_list_follow_the_capabilities():
    reply = Rows([Column("v")], [("1",)])
    assert encode_reply(reply, AUTOCOMMIT, 1, CLIENT.PROTOCOL_41) == result_set(reply.columns, reply.rows, AUTOCOMMIT)
    assert encode_reply(reply, AUTOCOMMIT, 1, CLIENT.PROTOCOL_41 | CLIENT.DEPRECATE_EOF) == result_set(
        reply.columns, reply.rows, AUTOCOMMIT, deprecate_eof=True)
    assert encode_reply(Ok(), AUTOCOMMIT, 1, CLIENT.DEPRECATE_EOF) == encode_reply(Ok(), AUTOCOMMIT, 1, 0)
    assert field_list_end(AUTOCOMMIT, 1) == encode_packet(make_eof(AUTOCOMMIT), 1)
    assert field_list_end(AUTOCOMMIT, 1, CLIENT.DEPRECATE_EOF) == encode_packet(ok_fe(AUTOCOMMIT), 1)


# -- LOCAL INFILE data, raised by the shift on its way to the server ---------------------------


def test_frame_scanner_raises_the_clients_ids():
    data = frames(b"a,1\n" * 10, b"\xab" * MAX_FRAME, b"", seq=5)  # a 16 MiB packet (2 frames), the empty one
    expected = frames(b"a,1\n" * 10, b"\xab" * MAX_FRAME, b"", seq=6)
    offsets = frame_offsets(data)
    for label, cuts in (("whole", [0, len(data)]), ("around headers", sorted(
            {0, len(data)} | {p + d for p in offsets for d in range(-2, 6) if 0 < p + d < len(data)}))):
        scanner = FrameScanner(5, shift=1)
        out = bytearray()
        end = -1
        for a, b in itertools.pairwise(cuts):
            chunk = bytearray(data[a:b])
            found = scanner.feed(chunk)
            out += chunk if found < 0 else chunk[:found]
            if found >= 0:
                end = a + found
                break
        assert end == len(data) and out == expected, label


def test_frame_scanner_checks_the_clients_ids():
    scanner = FrameScanner(5, shift=2)
    with pytest.raises(RemoteProtocolError):
        scanner.feed(bytearray(frames(b"x", seq=7)))  # the server's numbering is not the client's

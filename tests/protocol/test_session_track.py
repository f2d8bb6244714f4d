# session_track.py: the session-state-change blocks of real MariaDB OK packets
# (captures.json: SET, USE, BEGIN, COMMIT, COM_INIT_DB, SET @user_var) parse to
# the expected variables / schema / state flag / transaction info; the
# state-change tracker's bare "1" form and its lenenc form; GTIDs; unknown
# entry types skipped; malformed blocks refused; merge(); and
# make_state_changes round-trips.
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from mysqlpool_proxy.constants import CLIENT
from mysqlpool_proxy.errors import RemoteProtocolError
from mysqlpool_proxy.protocol.packets import parse_ok
from mysqlpool_proxy.protocol.session_track import StateChanges, make_state_changes, parse_state_changes
from mysqlpool_proxy.protocol.wire import lenenc_bytes

from .helpers import capture_payloads

TRACK = CLIENT.PROTOCOL_41 | CLIENT.SESSION_TRACK


def block_of(name: str, index: int = 0) -> bytes:
    payloads = [p for p in capture_payloads(name) if p[:1] == b"\x00"]
    state = parse_ok(payloads[index], TRACK).session_state
    assert state is not None
    return state


def entry(kind: int, data: bytes) -> bytes:
    return bytes((kind,)) + lenenc_bytes(data)


# -- real MariaDB blocks ---------------------------------------------------------


def test_set_session_variable():
    ch = parse_state_changes(block_of("ok_set_var"))
    assert ch.variables == [(b"sql_mode", b"REAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ANSI")]
    assert ch.state_change is True
    assert ch.schema is None and ch.trx_state is None and ch.trx_characteristics is None


def test_use_schema():
    ch = parse_state_changes(block_of("ok_use"))
    assert ch.schema == b"capdb"
    assert ch.state_change is True
    assert ch.variables == []


def test_init_db_schema():
    ch = parse_state_changes(block_of("init_db_ok"))
    assert ch.schema == b"capdb" and ch.state_change is True


def test_begin_transaction_state_and_characteristics():
    ch = parse_state_changes(block_of("ok_begin"))
    assert ch.trx_state == b"T_______"
    assert ch.trx_characteristics == b"START TRANSACTION;"
    assert ch.state_change is False and ch.schema is None and ch.variables == []


def test_commit_clears_transaction_info():
    ch = parse_state_changes(block_of("ok_commit"))
    assert ch.trx_state == b"________"
    assert ch.trx_characteristics == b""


def test_user_variable_only_sets_the_state_flag():
    ch = parse_state_changes(block_of("multi_statement"))  # the OK of `SET @a=1`
    assert ch == StateChanges(state_change=True)


# -- state-change tracker forms --------------------------------------------------


def test_state_change_bare_form():
    assert parse_state_changes(b"\x02\x011").state_change is True
    assert parse_state_changes(b"\x02\x010").state_change is False


def test_state_change_lenenc_form():
    # As the MySQL protocol pages lay it out: type, lenenc(data), data = lenenc("1").
    assert parse_state_changes(entry(2, lenenc_bytes(b"1"))).state_change is True
    assert parse_state_changes(entry(2, lenenc_bytes(b"0"))).state_change is False


def test_state_change_flag_is_sticky_within_a_block():
    assert parse_state_changes(b"\x02\x011" + b"\x02\x010").state_change is True


@pytest.mark.parametrize("data", [b"", b"2", b"11", b"\x01x", b"\x02\x01\x31"])
def test_state_change_bad_values(data):
    with pytest.raises(RemoteProtocolError):
        parse_state_changes(entry(2, data))


# -- other entry types -----------------------------------------------------------


def test_several_variables_in_entries_and_names_lowercased():
    block = (
        entry(0, lenenc_bytes(b"autocommit") + lenenc_bytes(b"OFF"))
        + entry(0, lenenc_bytes(b"Character_Set_Client") + lenenc_bytes(b"utf8mb4")
                + lenenc_bytes(b"time_zone") + lenenc_bytes(b"+00:00"))
        + entry(0, lenenc_bytes(b"sql_mode") + lenenc_bytes(b""))
    )
    ch = parse_state_changes(block)
    assert ch.variables == [(b"autocommit", b"OFF"), (b"character_set_client", b"utf8mb4"),
                            (b"time_zone", b"+00:00"), (b"sql_mode", b"")]


def test_gtids():
    ch = parse_state_changes(entry(3, b"\x00" + lenenc_bytes(b"3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5")))
    assert ch.gtids == b"3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5"


@pytest.mark.parametrize("kind", [6, 7, 0x7F, 0xFF])
def test_unknown_entry_types_are_skipped(kind):
    block = entry(kind, b"\xfb\xff whatever \x00" * 30) + entry(1, lenenc_bytes(b"db2")) + b"\x02\x011"
    ch = parse_state_changes(block)
    assert ch.schema == b"db2" and ch.state_change is True and ch.variables == []


def test_empty_block():
    assert parse_state_changes(b"") == StateChanges()


@pytest.mark.parametrize("block", [
    b"\x00",  # type without length
    b"\x00\x10abc",  # length overruns
    entry(0, lenenc_bytes(b"name")),  # variable without a value
    entry(1, b"\x09db"),  # schema string overruns its entry
    entry(0, b"\xfb"),  # NULL where a name belongs
])
def test_malformed_blocks(block):
    with pytest.raises(RemoteProtocolError):
        parse_state_changes(block)


# -- merge -----------------------------------------------------------------------


def test_merge_later_wins_and_variables_accumulate():
    first = parse_state_changes(block_of("ok_use") + block_of("ok_set_var"))
    second = parse_state_changes(entry(1, lenenc_bytes(b"other")) + entry(0, lenenc_bytes(b"x") + lenenc_bytes(b"1")))
    first.merge(second)
    assert first.schema == b"other"
    assert [name for name, _ in first.variables] == [b"sql_mode", b"x"]
    assert first.state_change is True
    first.merge(parse_state_changes(block_of("ok_begin")))
    assert first.trx_state == b"T_______" and first.schema == b"other"


# -- make_state_changes ----------------------------------------------------------


def test_make_state_changes_layout():
    assert make_state_changes([(b"autocommit", b"ON")]) == (
        b"\x00\x0e\x0aautocommit\x02ON" + b"\x02\x011")
    assert make_state_changes([], state_change=False) == b""


names = st.binary(min_size=1, max_size=64).map(lambda b: b.lower())


@given(st.lists(st.tuples(names, st.binary(max_size=300)), max_size=8), st.booleans())
def test_make_state_changes_round_trip(variables, flag):
    ch = parse_state_changes(make_state_changes(variables, state_change=flag))
    assert ch.variables == variables
    assert ch.state_change is flag
    assert ch.schema is None and ch.trx_state is None

# The fuzzer's own parts, without a server: the receiver's framing (FrameStream), the answer
# reader against MariaDB's real replies (tests/protocol/captures.json, fed whole and byte by
# byte), the corpus, and the mutations (seeded, so a session replays exactly; every plan can be
# written). The end-to-end check of the replay's model is
# tests/integration/test_fuzz.py::test_fuzz_model_agrees_with_mariadb_directly.
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
from pymysql.constants import COMMAND

from tests.fuzz.corpus import load_corpus
from tests.fuzz.mutate import Item, plan_for
from tests.fuzz.wire import MAX_FRAME, Closed, FrameStream, NoAnswer, RawConnection, frame

CAPTURES = json.loads((Path(__file__).parents[1] / "protocol" / "captures.json").read_text())["captures"]

# What each golden reply is, as the reader must see it.
CAPTURE_KINDS = {
    "ok_insert": "ok", "ok_set_var": "ok", "ok_use": "ok", "ok_begin": "ok", "ok_commit": "ok", "err_syntax": "err",
    "select_rows": "rows", "select_empty": "rows", "multi_statement": "rows", "multi_statement_err": "err",
    "call_procedure": "ok", "infile_request": "infile", "infile_after_empty": "ok", "ping": "ok", "init_db_ok": "ok",
    "init_db_err": "err", "set_option": "packet", "statistics": "packet", "field_list": "rows",
    "field_list_err": "err", "prepare_select": "prepared", "prepare_no_params": "prepared",
    "prepare_insert": "prepared", "prepare_err": "err", "execute_rows": "rows", "execute_cursor": "cursor",
    "fetch_two": "rows", "fetch_rest": "rows", "stmt_reset": "ok", "reset_connection": "ok",
}


def command_of(name: str) -> int:
    if name == "infile_after_empty":
        return COMMAND.COM_QUERY  # the answer to the file's end is the LOAD DATA statement's
    return bytes.fromhex(CAPTURES[name]["command"])[4]


def reader_fed(data: bytes, chunk: int) -> tuple[RawConnection, socket.socket]:
    ours, theirs = socket.socketpair()

    def feed() -> None:
        for i in range(0, len(data), chunk):
            theirs.sendall(data[i:i + chunk])

    threading.Thread(target=feed, daemon=True).start()
    return RawConnection(ours), theirs


@pytest.mark.parametrize("chunk", [1 << 16, 1], ids=["whole", "byte-by-byte"])
@pytest.mark.parametrize("name", sorted(CAPTURE_KINDS))
def test_the_reader_ends_each_real_answer_exactly(name, chunk):
    reply = bytes.fromhex(CAPTURES[name]["reply"])
    conn, theirs = reader_fed(reply + frame(b"\x00\x00\x00\x02\x00\x00\x00", 0x42), chunk)  # and one more packet
    try:
        answer = conn.read_answer(command_of(name), time.monotonic() + 5)
        assert answer.kind == CAPTURE_KINDS[name], answer
        seq, _ = conn.recv_packet(time.monotonic() + 5)
        assert seq == 0x42  # the next packet is intact: the answer took exactly its own bytes
    finally:
        conn.close()
        theirs.close()


def test_a_read_ends_at_its_deadline_or_at_the_close():
    conn, theirs = reader_fed(frame(b"\x00\x00", 1)[:-1], 1 << 16)  # a packet that never completes
    with pytest.raises(NoAnswer):
        conn.read_answer(COMMAND.COM_PING, time.monotonic() + 0.2)
    theirs.close()
    with pytest.raises(Closed):
        conn.read_answer(COMMAND.COM_PING, time.monotonic() + 5)
    conn.close()


def test_framestream_reads_what_a_receiver_reads():
    stream = FrameStream()
    lying = (10).to_bytes(3, "little") + b"\x00" + b"\x03SELECT"  # claims 10 bytes, has 7
    assert stream.feed(lying) == [] and stream.partial
    got = stream.feed(frame(b"\x0e", 0))  # the next packet's first 3 bytes complete the lie
    assert [(p.seq, p.payload) for p in got] == [(0, b"\x03SELECT\x01\x00\x00")]
    assert stream.partial  # the rest ("\x00\x0e") waits for a header's worth
    whole = FrameStream()
    big = frame(b"x" * MAX_FRAME + b"yz", 3)  # continuation: one logical packet of two frames
    assert [(p.seq, p.last_seq, len(p.payload)) for p in whole.feed(big)] == [(3, 4, MAX_FRAME + 2)]
    assert not whole.partial


def test_every_corpus_session_starts_with_a_command():
    corpus = load_corpus()
    assert {s.name for s in corpus} >= {"pymysql_text", "pymysql_infile", "connector_prepared", "connector_cursor",
                                        "connector_long_data", "connector_session", "mysqlclient_session"}
    for session in corpus:
        assert session.packets[0].seq == 0 and session.packets[0].role == "command", session.name
        assert session.database and session.capabilities


def test_a_session_is_its_seed_and_index():
    corpus = load_corpus()
    first, again = plan_for(corpus, 5, 17), plan_for(corpus, 5, 17)
    assert first.describe() == again.describe()
    assert [i.wire() for i in first.items] == [i.wire() for i in again.items]
    assert len({plan_for(corpus, 5, i).describe() for i in range(50)}) == 50


def test_every_plan_can_be_written():
    corpus = load_corpus()
    kinds = set()
    for index in range(400):
        plan = plan_for(corpus, 99, index)
        assert 1 <= len(plan.mutations) <= 4
        kinds.update(m.split(":")[0] for m in plan.mutations)
        for item in plan.items:
            data = item.wire()
            assert b"".join(item.writes(data)) == data
    assert len(kinds) >= 15  # every kind of mutation turns up in a few hundred sessions


def test_a_split_packet_is_written_in_pieces():
    item = Item(0, b"\x03SELECT 1", "command", cuts=[0.1, 0.5, 0.9])
    pieces = item.writes(item.wire())
    assert len(pieces) == 4 and b"".join(pieces) == item.wire()

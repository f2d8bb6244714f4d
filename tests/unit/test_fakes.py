# The fakes of tests/fakes/, checked on their own before the pool, session
# and relay tests trust them: virtual time moves only when the loop would
# wait; FakeTransport delivers, pauses and closes like a real one; and
# FakeMySQLServer answers like the MariaDB captures in tests/protocol
# (same packet shapes, status flags and session-state entries).
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pymysql
import pytest

from mysqlpool_proxy.backend.adapter import TRACKERS_SQL
from mysqlpool_proxy.constants import SERVER_STATUS
from mysqlpool_proxy.protocol.framing import PacketDecoder, encode_packet
from mysqlpool_proxy.protocol.packets import parse_eof, parse_err, parse_ok
from mysqlpool_proxy.protocol.response import Expect, ResponseTracker
from mysqlpool_proxy.protocol.session_track import parse_state_changes
from tests.fakes import (
    COLLATIONS,
    Err,
    FakeTransport,
    Rows,
    VirtualClockLoop,
    advance,
    fake_opener,
    run,
    settle,
    virtual_time,
)

IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
CAPTURES = json.loads((Path(__file__).parents[1] / "protocol" / "captures.json").read_text())["captures"]
BACKEND_CAPS = 0x200 | 0x800000  # PROTOCOL_41 | SESSION_TRACK


class Recorder(asyncio.Protocol):
    def __init__(self):
        self.data = []
        self.lost = []
        self.paused = 0
        self.resumed = 0

    def data_received(self, data):
        self.data.append(data)

    def connection_lost(self, exc):
        self.lost.append(exc)

    def pause_writing(self):
        self.paused += 1

    def resume_writing(self):
        self.resumed += 1


# -- virtual time ---------------------------------------------------------------


def test_sleep_returns_at_once_with_the_clock_moved():
    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(30)  # the sleep is what is tested: virtual, it returns at once
        return loop.time() - t0

    import time
    wall = time.monotonic()
    assert run(main()) == 30.0
    assert time.monotonic() - wall < 1.0


@virtual_time
async def test_timers_fire_in_order_at_their_exact_times():
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    fired = []
    for delay in (5.0, 0.25, 2.0):
        loop.call_later(delay, lambda d=delay: fired.append((d, loop.time() - t0)))
    await advance(3)
    assert fired == [(0.25, 0.25), (2.0, 2.0)]
    await advance(10)
    assert fired[-1] == (5.0, 5.0)
    assert loop.time() - t0 == 13.0


@virtual_time
async def test_wait_for_times_out_in_virtual_time():
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.Event().wait(), 7.5)
    assert loop.time() - t0 == 7.5


def test_waiting_on_nothing_fails_instead_of_hanging():
    loop = VirtualClockLoop(real_wait=0.05)
    try:
        with pytest.raises(RuntimeError, match="wait forever"):
            loop.run_until_complete(loop.create_future())
    finally:
        loop.close()


@virtual_time
async def test_settle_runs_chains_of_callbacks():
    loop = asyncio.get_running_loop()
    seen = []

    def step(n):
        seen.append(n)
        if n < 5:
            loop.call_soon(step, n + 1)

    loop.call_soon(step, 1)
    await settle()
    assert seen == [1, 2, 3, 4, 5]


def test_unhandled_callback_errors_fail_the_run():
    async def main():
        asyncio.get_running_loop().call_soon(lambda: 1 / 0)
        await settle()

    with pytest.raises(AssertionError, match="division by zero"):
        run(main())


# -- FakeTransport ---------------------------------------------------------------


@virtual_time
async def test_transport_delivers_pauses_and_closes_like_a_real_one():
    loop = asyncio.get_running_loop()
    proto = Recorder()
    t = FakeTransport(loop, proto)
    t.feed(b"a")
    t.pause_reading()
    t.feed(b"b")
    t.feed(b"c")
    assert proto.data == [b"a"] and t.pending_input == 2
    t.resume_reading()
    await settle()
    assert proto.data == [b"a", b"b", b"c"]
    t.write(b"xyz")
    assert t.data == b"xyz"
    t.close()
    assert t.is_closing() and proto.lost == []  # connection_lost comes on a later iteration
    await settle()
    assert proto.lost == [None]
    t.feed(b"late")
    assert proto.data[-1] == b"c"


@virtual_time
async def test_transport_write_buffer_stalls_and_drains():
    loop = asyncio.get_running_loop()
    proto = Recorder()
    t = FakeTransport(loop, proto)
    seen = []
    t.on_write = seen.append
    t.set_write_buffer_limits(high=10)
    t.stall()
    t.write(b"12345")
    assert proto.paused == 0 and t.get_write_buffer_size() == 5
    t.write(b"678901")
    assert proto.paused == 1 and seen == []
    t.drain()
    assert proto.resumed == 1 and seen == [b"12345", b"678901"] and t.get_write_buffer_size() == 0


@virtual_time
async def test_peer_close_goes_through_eof_received():
    loop = asyncio.get_running_loop()
    proto = Recorder()
    t = FakeTransport(loop, proto)
    t.peer_close()
    await settle()
    assert t.closed_by_peer and proto.lost == [None]


# -- FakeMySQLServer ----------------------------------------------------------------


class Wire:
    """A protocol playing the proxy's side against one fake server."""

    def __init__(self, opener, server):
        self.server = server
        self.decoder = PacketDecoder()
        self.chunks = []
        proto = Recorder()
        proto.data_received = self._data
        server.transport.set_protocol(proto)
        self.proto = proto

    def _data(self, data):
        self.chunks.append(data)
        self.decoder.feed(data)

    def send(self, payload: bytes):
        self.server.transport.write(encode_packet(payload, 0))

    async def reply(self, expect=Expect.RESULT, *, binary=False) -> tuple[list[bytes], ResponseTracker]:
        """Payloads of one complete response, as decided by the proxy's own ResponseTracker."""
        await settle()
        data = b"".join(self.chunks)
        self.chunks.clear()
        tracker = ResponseTracker()
        tracker.begin(expect, binary=binary)
        assert tracker.feed(data) == len(data)
        assert tracker.done, "the response is incomplete"
        out = []
        while (pkt := self.decoder.next_packet()) is not None:
            out.append(pkt.payload)
        return out, tracker


async def wire(**options):
    opener = fake_opener(**options)
    opened = await opener(_params(), want_collations=True)
    return opened, Wire(opener, opener.servers[0])


def _params():
    from mysqlpool_proxy.backend.adapter import BackendParams
    return BackendParams("127.0.0.1", 3306, "", "app", "pw", "utf8mb4", 5.0, None, False, False)


@virtual_time
async def test_opened_looks_like_a_mariadb_backend():
    opened, _ = await wire()
    assert opened.server_version == "5.5.5-10.11.19-MariaDB"
    assert opened.status == AUTOCOMMIT
    assert opened.charset_vars[b"collation_connection"] == b"utf8mb4_general_ci"
    assert opened.collations == COLLATIONS


@virtual_time
async def test_ping_is_ok_like_the_capture():
    _, w = await wire()
    w.send(b"\x0e")
    (ok_payload,), _ = await w.reply(Expect.SIMPLE)
    ok = parse_ok(ok_payload, BACKEND_CAPS)
    assert ok.status & AUTOCOMMIT and ok.session_state is None
    captured = parse_ok(bytes.fromhex(CAPTURES["ping"]["reply"])[4:], BACKEND_CAPS)
    assert (ok.affected_rows, ok.warnings, ok.status & 0xFF) == (
        captured.affected_rows, captured.warnings, captured.status & 0xFF)
    assert w.server.command_names == ["ping"]


@virtual_time
async def test_select_is_a_classic_result_set():
    _, w = await wire()
    w.send(b"\x03SELECT 1, 'a' AS b, NULL, CONNECTION_ID()")
    packets, tracker = await w.reply()
    assert packets[0] == b"\x04"  # column count
    assert packets[5][:1] == b"\xfe"  # EOF after the column definitions: no DEPRECATE_EOF
    assert parse_eof(packets[-1]).status == AUTOCOMMIT
    assert tracker.result_sets == 1
    assert w.server.queries == ["SELECT 1, 'a' AS b, NULL, CONNECTION_ID()"]


@virtual_time
async def test_begin_and_commit_status_flags_and_trackers():
    _, w = await wire()
    w.send(b"\x03BEGIN")
    (p,), tracker = await w.reply()
    ok = parse_ok(p, BACKEND_CAPS)
    assert ok.status & IN_TRANS
    assert tracker.changes.trx_state == b"T_______"
    captured = parse_state_changes(parse_ok(bytes.fromhex(CAPTURES["ok_begin"]["reply"])[4:], BACKEND_CAPS)
                                   .session_state)
    assert captured.trx_state == tracker.changes.trx_state
    w.send(b"\x03SELECT 1")
    _, tracker = await w.reply()
    assert tracker.status & IN_TRANS
    w.send(b"\x03COMMIT")
    (p,), tracker = await w.reply()
    assert not parse_ok(p, BACKEND_CAPS).status & IN_TRANS
    assert tracker.changes.trx_state == b"________"
    w.send(b"\x03START TRANSACTION")
    await w.reply()
    w.send(b"\x03ROLLBACK")
    _, tracker = await w.reply()
    assert not tracker.status & IN_TRANS


@virtual_time
async def test_set_and_use_report_session_state_like_mariadb():
    _, w = await wire()
    w.send(b"\x03SET SESSION sql_mode='ANSI'")
    (p,), tracker = await w.reply()
    assert tracker.changes.variables == [(b"sql_mode", b"ANSI")] and tracker.changes.state_change
    captured = bytes.fromhex(CAPTURES["ok_set_var"]["reply"])[4:]
    assert p[:3] == captured[:3]
    w.send(b"\x03USE capdb")
    (p,), tracker = await w.reply()
    assert tracker.changes.schema == b"capdb"
    assert p == bytes.fromhex(CAPTURES["ok_use"]["reply"])[4:]  # byte for byte (ANSI sets 0x8000, ANSI_QUOTES)
    w.send(b"\x03SET NAMES latin1")
    _, tracker = await w.reply()
    assert dict(tracker.changes.variables)[b"collation_connection"] == b"latin1_swedish_ci"
    w.send(b"\x03SELECT @@character_set_client, @@session.time_zone")
    packets, _ = await w.reply()
    assert packets[-2] == b"\x06latin1\x06SYSTEM"


@virtual_time
async def test_charset_before_collation_matters():
    _, w = await wire()
    w.send(b"\x03SET SESSION `character_set_connection`='latin1', `collation_connection`='latin1_general_ci'")
    await w.reply()
    assert w.server.variables[b"collation_connection"] == b"latin1_general_ci"
    w.send(b"\x03SET SESSION `collation_connection`='utf8mb4_unicode_ci', `character_set_connection`='utf8mb4'")
    await w.reply()
    assert w.server.variables[b"collation_connection"] == b"utf8mb4_general_ci"  # the charset reset it


@virtual_time
async def test_errors_init_db_set_option_and_scripts():
    _, w = await wire(schemas={"appdb"})
    w.send(b"\x03SELEC 1")
    (p,), tracker = await w.reply()
    assert parse_err(p).errno == 1064 and tracker.error.errno == 1064
    w.server.fail("INSERT INTO t VALUES (1)", 1062, "Duplicate entry '1' for key 'PRIMARY'", "23000")
    w.send(b"\x03insert into t values (1)")
    (p,), _ = await w.reply()
    assert parse_err(p).errno == 1062
    w.send(b"\x02appdb")
    _, tracker = await w.reply(Expect.SIMPLE)
    assert tracker.changes.schema == b"appdb"
    w.send(b"\x02nope")
    (p,), _ = await w.reply(Expect.SIMPLE)
    assert parse_err(p).errno == 1049
    w.send(b"\x1b\x01\x00")
    (p,), _ = await w.reply(Expect.SIMPLE)
    assert p[:1] == b"\xfe" and not w.server.multi_statements  # MariaDB answers COM_SET_OPTION with EOF
    w.server.on("SELECT id, v FROM t", Rows(["id", "v"], [(1, "a"), (2, None)]))
    w.send(b"\x03select id, v from t")
    packets, _ = await w.reply()
    assert packets[4:6] == [b"\x011\x01a", b"\x012\xfb"]
    w.server.on("SELECT 2", Err(1213, "Deadlock found", "40001"), times=1)
    w.send(b"\x03SELECT 2")
    (p,), _ = await w.reply()
    assert parse_err(p).sqlstate == "40001"
    w.send(b"\x03SELECT 2")
    packets, _ = await w.reply()
    assert len(packets) == 5


@virtual_time
async def test_reset_turns_trackers_off_until_the_proxy_turns_them_on():
    _, w = await wire()
    w.send(b"\x03SET @x = 1")
    _, tracker = await w.reply()
    assert tracker.changes.state_change
    w.send(b"\x1f")
    (p,), _ = await w.reply(Expect.SIMPLE)
    assert p == bytes.fromhex(CAPTURES["reset_connection"]["reply"])[4:]
    assert not w.server.trackers_on and w.server.user_vars == {}
    w.send(b"\x03SET SESSION sql_mode=''")
    _, tracker = await w.reply()
    assert tracker.changes is None  # sql_mode is not in the default tracked list
    w.send(b"\x03" + TRACKERS_SQL.encode())
    await w.reply()
    assert w.server.trackers_on


@virtual_time
async def test_multi_statements_prepared_statements_and_cursors():
    _, w = await wire()
    w.send(b"\x03SELECT 1; SET @a=1; SELECT 2, 3")
    _, tracker = await w.reply()
    assert tracker.result_sets == 2 and tracker.ok_count == 1
    w.server.on("SELECT v FROM t WHERE id > ?", Rows(["v"], [("a",), ("b",), ("c",)]))
    w.send(b"\x16SELECT v FROM t WHERE id > ?")
    _, tracker = await w.reply(Expect.PREPARE)
    stmt_id, cols, params, _ = tracker.prepare_ok
    assert (cols, params) == (1, 1)
    w.send(b"\x17" + stmt_id.to_bytes(4, "little") + b"\x01" + b"\x01\x00\x00\x00")
    _, tracker = await w.reply(binary=True)
    assert tracker.status & SERVER_STATUS.SERVER_STATUS_CURSOR_EXISTS
    w.send(b"\x1c" + stmt_id.to_bytes(4, "little") + (2).to_bytes(4, "little"))
    packets, tracker = await w.reply(Expect.FETCH)
    assert len(packets) == 3 and tracker.status & SERVER_STATUS.SERVER_STATUS_CURSOR_EXISTS
    w.send(b"\x1c" + stmt_id.to_bytes(4, "little") + (2).to_bytes(4, "little"))
    packets, tracker = await w.reply(Expect.FETCH)
    assert len(packets) == 2 and tracker.status & SERVER_STATUS.SERVER_STATUS_LAST_ROW_SENT


@virtual_time
async def test_held_and_chunked_replies():
    _, w = await wire(auto=False, chunk_size=1)
    w.send(b"\x03SELECT 1")
    await settle()
    assert w.chunks == [] and w.server.held
    n = len(w.server.held)
    w.server.flush(3)
    assert w.chunks == [b"\x01", b"\x00", b"\x00"]
    w.server.flush()
    assert len(w.chunks) == n
    await w.reply()


@virtual_time
async def test_latency_and_sleep_take_virtual_time():
    loop = asyncio.get_running_loop()
    _, w = await wire(latency=0.5)
    t0 = loop.time()
    w.send(b"\x03SELECT SLEEP(3)")
    await advance(3.4)
    assert w.chunks == []
    await advance(0.2)
    await w.reply()
    assert loop.time() - t0 == pytest.approx(3.6)


@virtual_time
async def test_opener_failures_delay_and_records():
    loop = asyncio.get_running_loop()
    opener = fake_opener(delay=1.0)
    opener.fail_next(2)
    for _ in range(2):
        with pytest.raises(pymysql.err.OperationalError) as err:
            await opener(_params())
        assert err.value.args[0] == 2003
    t0 = loop.time()
    opened = await opener(_params())
    assert loop.time() - t0 == 1.0
    assert opener.failures == 2 and len(opener.servers) == 1 and opened.collations is None
    slow = fake_opener(delay=60)
    with pytest.raises(asyncio.TimeoutError):
        await slow(_params())  # past connect_timeout (5 s)


@virtual_time
async def test_server_close_and_proxy_close_are_told_apart():
    opener = fake_opener()
    await opener(_params())
    await opener(_params())
    a, b = opener.servers
    for s in (a, b):
        s.transport.set_protocol(Recorder())
    a.close()
    b.transport.close()
    await settle()
    assert (a.closed_by, b.closed_by) == ("server", "proxy")
    assert opener.alive == []

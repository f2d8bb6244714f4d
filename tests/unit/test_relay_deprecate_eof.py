# The relay for a client that negotiated CLIENT_DEPRECATE_EOF, on the fakes:
# the proxy offers it, the backends (FakeMySQLServer, like the proxy's real
# ones) answer in the classic framing, and the client reads every response in
# its own, its sequence ids checked (FakeClient): result sets and chains of
# them, in 1-byte chunks too, prepared statements, cursors and COM_STMT_FETCH,
# COM_FIELD_LIST, errors, the EOF the proxy writes itself for COM_SET_OPTION,
# and LOAD DATA LOCAL INFILE after a result set, whose file the server (which
# checks sequence ids) must get numbered as it numbered its request. A classic
# client on the same backend right after still gets the server's bytes as
# they are.
from __future__ import annotations

import pytest

from mysqlpool_proxy.constants import CLIENT
from mysqlpool_proxy.protocol.framing import PacketDecoder
from tests.fakes import (
    AUTOCOMMIT,
    CURSOR_EXISTS,
    DEFAULT_CLIENT_CAPS,
    LAST_ROW_SENT,
    MORE_RESULTS,
    FakeClient,
    Rows,
    fake_opener,
    settle,
    start_proxy,
    virtual_time,
)

DEPRECATE_EOF_CAPS = DEFAULT_CLIENT_CAPS | CLIENT.DEPRECATE_EOF | CLIENT.LOCAL_FILES


def payloads(raw: bytes) -> list[bytes]:
    decoder = PacketDecoder()
    decoder.feed(raw)
    out = []
    while (pkt := decoder.next_packet()) is not None:
        out.append(pkt.payload)
    return out


def no_classic_eof(raw: bytes) -> bool:
    """No 5-byte EOF packet in `raw` (what the classic framing has and the other never)."""
    return not any(p[:1] == b"\xfe" and len(p) == 5 for p in payloads(raw))


async def clients(proxy, **kwargs) -> tuple[FakeClient, FakeClient]:
    new = await FakeClient(proxy, capabilities=DEPRECATE_EOF_CAPS, **kwargs).connect()
    old = await FakeClient(proxy, capabilities=DEFAULT_CLIENT_CAPS | CLIENT.LOCAL_FILES, **kwargs).connect()
    assert new.capabilities & CLIENT.DEPRECATE_EOF and not old.capabilities & CLIENT.DEPRECATE_EOF
    return new, old


@pytest.mark.parametrize("chunk_size", [None, 1])
def test_result_sets_in_the_clients_framing(chunk_size):
    @virtual_time
    async def scenario():
        opener = fake_opener(chunk_size=chunk_size)
        opener.on("SELECT id, v FROM t", Rows(["id", "v"], [(i, "v" * i) for i in range(1, 300)] + [(0, None)]))
        opener.on("SELECT id FROM t WHERE 0", Rows(["id"], []))
        proxy = await start_proxy(opener, pool={"max_size": 1})
        new, old = await clients(proxy)
        r = await new.query("SELECT id, v FROM t")
        assert len(r.rows) == 300 and r.rows[2] == ("3", "vvv") and r.rows[-1] == ("0", None)
        assert r.last.ok is not None and r.status == AUTOCOMMIT  # the rows end with an OK (header 0xFE)
        assert no_classic_eof(r.raw)
        r = await new.query("SELECT id FROM t WHERE 0")
        assert (r.columns, r.rows, r.status) == (["id"], [], AUTOCOMMIT)
        r = await new.query("SELECT 1; DO 1; SELECT 2, 3")
        assert [x.kind for x in r.results] == ["rows", "ok", "rows"]
        assert r.results[0].status & MORE_RESULTS and r.results[2].rows == [("2", "3")]
        assert no_classic_eof(r.raw)
        # The same backend, then a classic client: the server's bytes as they are.
        backend = new.conn.lease.last_backend
        r = await old.query("SELECT id, v FROM t")
        assert old.conn.lease.last_backend is backend
        assert r.raw == opener.server_for(backend).replies[-1] and len(r.rows) == 300
        r = await new.query("SELECT 1; SELEC 2")
        assert [x.kind for x in r.results] == ["rows", "error"] and r.error.errno == 1064
        await proxy.stop(0)

    scenario()


@virtual_time
async def test_prepared_statements_cursors_and_fetch():
    opener = fake_opener()
    opener.on("SELECT v FROM t", Rows(["v"], [("a",), ("b",), ("c",)]))
    opener.on("SELECT v FROM t WHERE id > ?", Rows(["v"], []))
    proxy = await start_proxy(opener)
    new, _ = await clients(proxy)
    prepared = (await new.prepare("SELECT v FROM t WHERE id > ?")).last  # parameter and column definitions
    assert (prepared.kind, prepared.params, len(prepared.columns)) == ("prepared", 1, 1)
    stmt = (await new.prepare("SELECT v FROM t")).last.stmt_id
    r = await new.execute(stmt)
    assert r.rows == [("a",), ("b",), ("c",)] and no_classic_eof(r.raw)
    r = await new.execute(stmt, cursor=True)
    assert r.last.kind == "cursor" and r.status & CURSOR_EXISTS and r.last.ok is not None
    r = await new.fetch(stmt, 2)
    assert r.rows == [("a",), ("b",)] and r.status & CURSOR_EXISTS
    r = await new.fetch(stmt, 2)
    assert r.rows == [("c",)] and r.status & LAST_ROW_SENT and no_classic_eof(r.raw)
    await proxy.stop(0)


@virtual_time
async def test_set_option_is_answered_in_the_clients_framing():
    """COM_SET_OPTION is answered by the proxy: an EOF, or for this client the OK that stands for one."""
    proxy = await start_proxy(fake_opener())
    new, old = await clients(proxy)
    r = await new.set_option(False)
    assert r.last.kind == "eof" and r.last.ok is not None and r.raw[4:] == b"\xfe\x00\x00\x02\x00\x00\x00"
    r = await old.set_option(False)
    assert r.last.kind == "eof" and r.last.eof is not None and r.raw[4:] == b"\xfe\x00\x00\x02\x00"
    await proxy.stop(0)


@virtual_time
async def test_local_infile_after_a_result_set_reaches_the_server_in_its_numbering():
    opener = fake_opener()
    proxy = await start_proxy(opener)
    new, old = await clients(proxy)
    for client, lines in ((new, 3), (old, 2)):
        client.send_query("SELECT 1; LOAD DATA LOCAL INFILE 'f.csv' INTO TABLE t")
        r = await client.response(infile=b"a\n" * lines)
        assert [x.kind for x in r.results] == ["rows", "ok"]
        assert r.ok.affected_rows == lines  # the server took every packet of the file, in order
        server = next(s for s in opener.servers if s.infile_data)
        assert server.infile_data == b"a\n" * lines and server.infile_seq is None and not server.closed
        server.infile_data.clear()
        (await client.query("SELECT 2")).expect_ok()
    await settle()
    await proxy.stop(0)


@virtual_time
async def test_a_large_file_after_a_result_set():
    """A file of several packets, one of them 16 MiB (two frames): each frame is renumbered."""
    opener = fake_opener()
    proxy = await start_proxy(opener)
    new, _ = await clients(proxy)
    data = b"x" * (0xFFFFFF - 1) + b"\n"
    new.send_query("SELECT 1; SELECT 2; LOAD DATA LOCAL INFILE 'f.csv' INTO TABLE t")
    r = await new.response(infile=data)
    assert [x.kind for x in r.results] == ["rows", "rows", "ok"] and r.ok.affected_rows == 1
    server = next(s for s in opener.servers if s.infile_data)
    assert bytes(server.infile_data) == data
    await proxy.stop(0)

# Regression tests for relay flow control: a backend paused by a slow client is never handed on
# paused, and a client whose buffer is full gets its next backend paused,
# each once a bug (the comments give the diagnosis). Same setup as test_relay.py
# (real Proxy, FakeClient, fake backends, virtual clock).
from __future__ import annotations

import asyncio
import re

from mysqlpool_proxy.protocol.framing import encode_packet
from mysqlpool_proxy.protocol.packets import make_err
from tests.fakes import FakeClient, Ok, Rows, advance, fake_opener, settle, start_proxy, virtual_time


@virtual_time
async def test_a_backend_released_while_its_client_is_slow_is_not_left_paused_for_the_next_client():
    # Diagnosis: the response's last bytes fill the slow client's write
    # buffer, so ClientConnection.pause_writing() -> backend.pause_reading()
    # pauses the backend transport; in the same data_received the response
    # completes and _decide_hold() releases the backend to the pool, still
    # paused (BackendConnection._reading_paused stays True). The client's
    # later resume_writing() only resumes self.backend, which is None by then.
    # The next client to get that backend sends its statement and never
    # reads the reply: it hangs (here: no reply within 30 s), and an idle
    # paused backend cannot notice the server closing it either.
    # Fix idea: resume reading (or refuse to pool) a backend whose reading is
    # paused when the client lets go of it, and pause the new backend in
    # _send() if the client's writing is already paused.
    opener = fake_opener()
    opener.on("SELECT big", Rows(["b"], [("x" * 40000,), ("y" * 40000,)]))
    proxy = await start_proxy(opener, pool={"max_size": 1, "result_buffer_bytes": 65536})
    slow, other = await FakeClient(proxy).connect(), await FakeClient(proxy).connect()
    slow.transport.stall()  # a client that reads slowly
    slow.send_query("SELECT big")
    await settle()
    assert slow.transport.writing_paused  # its buffer is full
    backend = proxy.pools["app"].idle[0]  # the response is complete: back in the pool
    assert not backend.transport.reading_paused
    r = await other.query("SELECT 1", timeout=30)
    assert r.value == "1"
    await proxy.stop(0)


@virtual_time
async def test_a_client_whose_buffer_is_full_gets_its_next_backend_paused_too():
    # Diagnosis: ClientConnection.pause_writing() pauses only the backend the
    # client holds at that moment (none, between statements) and records
    # _writing_paused; _send() never looks at that flag. A client that keeps
    # sending statements while not reading results has each new backend
    # relayed into its full buffer without pause: the proxy buffers the whole
    # result (unbounded memory) instead of leaving it on the server.
    opener = fake_opener(auto=False)
    proxy = await start_proxy(opener, pool={"result_buffer_bytes": 65536})
    slow = await FakeClient(proxy).connect()
    slow.transport.fill_buffer()  # its socket buffer is full; it holds no backend
    slow.send_query("SELECT 1")
    await settle()
    server = opener.servers[0]
    assert server.queries == ["SELECT 1"]
    assert server.transport.reading_paused  # the result should stay on the server's side
    await proxy.stop(0)


@virtual_time
async def test_a_backend_dying_during_a_capture_inside_a_transaction_closes_the_client():
    # After `SET @x` the proxy reads @x back with a hidden SELECT. If the backend dies
    # then, inside the client's transaction, the transaction is gone: the client must be
    # closed, never left to run its next statement outside it on another backend.
    opener = fake_opener()

    def die(server, sql):
        server.close()
        return Ok()  # never delivered: the connection is closed

    opener.on(re.compile(r"^SELECT LAST_INSERT_ID\(\), @`x`"), die)
    proxy = await start_proxy(opener, pool={"max_size": 2})
    client = await FakeClient(proxy).connect()
    await client.query("BEGIN")
    await client.query("SET @x = 1")
    await settle()
    assert client.conn.state.value == "closed"
    assert client.conn.backend is None
    await proxy.stop(0)


@virtual_time
async def test_a_client_paused_by_its_backends_full_buffer_reads_again_when_the_backend_goes():
    # Diagnosis: the pause a full backend write buffer sets on its client (bit 1 of
    # _paused_by) was cleared only by that backend's resume_writing(). A backend
    # released or dead (the server answered 1153 to an over-large packet and hung up)
    # never calls it: the client stayed paused, its next command was never read, its
    # disconnect never noticed, and it stayed in SHOW CLIENTS holding its buffers.
    # The backend now resumes the client it paused whenever it is released or dies.
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 1})
    pool = proxy.pools["app"]
    client = await FakeClient(proxy).connect()
    await client.query("SELECT 1")
    server = opener.servers[0]
    server.transport.stall()  # the server takes no more: what the proxy writes piles up
    client.send_query("SELECT '" + "x" * 100_000 + "'")  # past the backend buffer's high-water mark
    await settle()
    assert client.transport.reading_paused
    server.send_raw(encode_packet(make_err(1153, "08S01", "Got a packet bigger than 'max_allowed_packet' bytes"), 1))
    server.close()
    await settle()
    r = await client.response()
    assert r.error.errno == 1153  # the server's answer, as on a direct connection
    assert not client.transport.reading_paused and not client.closed
    assert pool.stats.closed["ended_by_server"] == 1 and pool.idle == []  # never pooled
    assert (await client.query("SELECT 2")).value == "2"  # on a new backend
    await proxy.stop(0)


@virtual_time
async def test_a_backend_that_answered_before_taking_the_whole_command_is_never_pooled():
    # A server that answers before it has read the whole command leaves the rest in the
    # backend's write buffer: given to another client, those bytes would reach the server
    # before that client's command.
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 1})
    pool = proxy.pools["app"]
    client = await FakeClient(proxy).connect()
    await client.query("SELECT 1")
    backend = pool.idle[0]
    server = opener.servers[0]
    server.transport.stall()  # what the proxy writes now stays in the buffer
    client.send_query("SELECT 'x'")
    await settle()
    assert backend.unsent > 0
    server.send_raw(encode_packet(make_err(1064, "42000", "syntax error"), 1))  # an answer all the same
    await settle()
    r = await client.response()
    assert r.error.errno == 1064
    assert backend.closed and pool.stats.closed["dirty"] == 1 and pool.idle == []
    assert (await client.query("SELECT 2")).value == "2"
    await proxy.stop(0)


@virtual_time
async def test_a_client_with_no_schema_waits_its_turn_and_is_served():
    # Diagnosis: with every backend busy serving clients that have a schema, a client
    # connected without one was handed a backend with a schema as its turn came, which it
    # cannot use (a schema cannot be unselected); the backend was closed ("reclaimed") and the
    # client queued again at the back with its original deadline: starved, then 1040 "after
    # waiting 0.0s", each attempt costing a backend. Waiters now say they need no schema, and
    # the pool hands them only such a backend, exchanging an idle one with a schema when it must.
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 2, "checkout_timeout": 5})
    busy = [await FakeClient(proxy, database="appdb").connect() for _ in range(4)]
    stop = asyncio.Event()

    async def keep_busy(client):
        while not stop.is_set():
            await client.query("BEGIN")
            await client.query("SELECT 1")
            await advance(0.2)
            await client.query("COMMIT")

    workers = [asyncio.create_task(keep_busy(c)) for c in busy]
    await advance(0.5)
    plain = await FakeClient(proxy, database=None).connect()
    r = await plain.query("SELECT 2", timeout=6)
    assert r.error is None and r.value == "2"
    stop.set()
    await asyncio.gather(*workers)
    pool = proxy.pools["app"]
    assert pool.stats.closed.get("reclaimed", 0) <= 1  # at most the one exchange
    await proxy.stop(0)


@virtual_time
async def test_a_backend_negotiates_ps_multi_results_as_its_client_did():
    # Diagnosis: clients were offered CLIENT_PS_MULTI_RESULTS, which the backends never
    # negotiated, so a prepared CALL's OUT parameters (a result set flagged
    # SERVER_PS_OUT_PARAMS) never came. It is part of the pool key now: a client that asks for
    # it gets a backend that has it, and one that does not, one that does not.
    from mysqlpool_proxy.constants import CLIENT
    from tests.fakes import DEFAULT_CLIENT_CAPS
    opener = fake_opener()
    proxy = await start_proxy(opener)
    libmysql = await FakeClient(proxy, capabilities=DEFAULT_CLIENT_CAPS | CLIENT.PS_MULTI_RESULTS).connect()
    pymysql_like = await FakeClient(proxy).connect()
    for client in (libmysql, pymysql_like):
        await client.query("BEGIN")
    assert opener.server_for(libmysql.conn.backend).params.ps_multi_results is True
    assert opener.server_for(pymysql_like.conn.backend).params.ps_multi_results is False
    await proxy.stop(0)


@virtual_time
async def test_a_client_that_stops_reading_loses_its_backend_at_the_servers_net_write_timeout():
    # Diagnosis: max_size clients send a big SELECT and never read. The server aborts each such
    # connection at net_write_timeout, but the backend transports, paused for their clients
    # (flow control), never report the close: the pool stayed full and every other client got
    # 1040 for as long as the stalled clients stayed connected. The janitor now closes a backend
    # whose client has read nothing for the server's net_write_timeout, as the server does.
    opener = fake_opener(auto=False)
    proxy = await start_proxy(opener, pool={"max_size": 1, "checkout_timeout": 120})
    pool = proxy.pools["app"]
    stalled = await FakeClient(proxy).connect()
    server = opener.servers[0]
    stalled.send_query("SELECT 1, 2, 3")
    await settle()
    stalled.transport.fill_buffer()  # it stops reading
    server.flush(12)  # the start of the result
    await settle()
    backend = stalled.conn.backend
    assert server.transport.reading_paused and backend is not None
    other = await FakeClient(proxy).connect()
    other.send_query("SELECT 5")
    await advance(59)  # net_write_timeout (60 s, the fake server's) not yet passed
    assert not backend.closed and not other.has_pending_bytes()
    await advance(3)
    assert backend.closed and pool.stats.closed["client_stalled"] == 1
    opener.servers[-1].auto = True
    opener.servers[-1].flush()
    assert (await other.response(timeout=10)).value == "5"  # the slot came back
    stalled.transport.drain()  # it reads again: nothing of the result had reached it
    r = await stalled.response(timeout=5)
    assert r.error.errno == 2013 and not stalled.closed  # the statement is lost; the connection goes on
    await proxy.stop(0)

# Regression tests for relay flow control: a backend paused by a slow client is never handed on
# paused, and a client whose buffer is full gets its next backend paused,
# each once a bug (the comments give the diagnosis). Same setup as test_relay.py
# (real Proxy, FakeClient, fake backends, virtual clock).
from __future__ import annotations

import re

from tests.fakes import Ok, FakeClient, Rows, fake_opener, settle, start_proxy, virtual_time


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

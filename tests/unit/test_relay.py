# The relay: ClientConnection + BackendConnection + Pool wired by a real
# Proxy, with every socket replaced by a FakeTransport. A FakeClient plays
# the application (handshake, commands, parsed replies); every backend is a
# FakeMySQLServer from the fake opener; time is virtual. Covers when a
# backend is held and released, byte-exact relaying (also in 1-byte chunks),
# the session-track rewrite, flow control both ways, clients leaving
# mid-response or mid-transaction, session sync between clients, and
# backends dying under idle and busy clients.
from __future__ import annotations

import asyncio

import pytest

from mysqlpool_proxy.backend.adapter import TRACKERS_SQL
from mysqlpool_proxy.constants import CR, SERVER_STATUS
from mysqlpool_proxy.core.states import BackendState
from mysqlpool_proxy.protocol.framing import encode_packet
from mysqlpool_proxy.protocol.packets import parse_err
from mysqlpool_proxy.protocol.session_track import StateChanges, parse_state_changes
from mysqlpool_proxy.reasons import BackendCloseReason, ClientCloseReason
from tests.fakes import ConnectionClosed, FakeClient, Rows, advance, fake_opener, settle, start_proxy, virtual_time

IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
SESSION_STATE_CHANGED = 0x4000


async def connected(proxy, **kwargs) -> FakeClient:
    return await FakeClient(proxy, **kwargs).connect()


# -- holding and releasing --------------------------------------------------------------


@virtual_time
async def test_a_select_is_relayed_verbatim_and_the_backend_goes_back_to_the_pool():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 2})
    pool = proxy.pools["app"]
    client = await connected(proxy)
    r = await client.query("SELECT 1, 'x' AS y")
    assert r.columns == ["1", "y"] and r.rows == [("1", "x")]
    server = opener.servers[0]
    assert r.raw == server.replies[-1]  # the server's bytes, untouched
    backend = pool.idle[-1]
    assert client.conn.backend is None and backend.holder is None
    assert backend.state is BackendState.IDLE and not pool.busy
    assert pool.stats.queries["query"] == 1
    await proxy.stop(0)


@virtual_time
async def test_begin_holds_the_backend_until_commit():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 2})
    pool = proxy.pools["app"]
    a, b = await connected(proxy), await connected(proxy)
    r = await a.query("BEGIN")
    assert r.status & IN_TRANS
    held = a.conn.backend
    assert held is not None and held in pool.busy
    await a.query("INSERT INTO t VALUES (1)")
    await b.query("SELECT 2")  # another client gets another backend
    assert a.conn.backend is held and b.conn.backend is None
    r = await a.query("COMMIT")
    assert not r.status & IN_TRANS
    assert a.conn.backend is None and held in pool.idle and not pool.busy
    mine = opener.server_for(held)
    assert mine.queries == ["BEGIN", "INSERT INTO t VALUES (1)", "COMMIT"]
    assert [q for s in opener.servers if s is not mine for q in s.queries] == ["SELECT 2"]
    assert pool.stats.transactions == 1
    await proxy.stop(0)


@virtual_time
async def test_a_response_in_1_byte_chunks_is_relayed_intact():
    opener = fake_opener(chunk_size=1)
    opener.on("SELECT id, v FROM t", Rows(["id", "v"], [(i, "v" * i) for i in range(1, 30)] + [(99, None)]))
    proxy = await start_proxy(opener)
    client = await connected(proxy)
    r = await client.query("SELECT id, v FROM t")
    assert len(r.rows) == 30 and r.rows[2] == ("3", "vvv") and r.rows[-1] == ("99", None)
    assert r.raw == opener.servers[0].replies[-1]
    r = await client.query("SELECT 1; DO 1; SELECT 2, 3")  # several results, each ending mid-chunk
    assert [x.kind for x in r.results] == ["rows", "ok", "rows"]
    assert r.raw == opener.servers[0].replies[-1]
    await proxy.stop(0)


# -- waiting for a backend ----------------------------------------------------------------


async def one_backend_in_a_transaction_and_two_waiting(**pool):
    """A pool of one backend, held by client a in a transaction; b then c wait for it."""
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 1, **pool})
    a, b, c = await connected(proxy), await connected(proxy), await connected(proxy)
    await a.query("BEGIN")
    b.send_query("SELECT 2")
    c.send_query("SELECT 3")
    await settle()
    return opener, proxy, proxy.pools["app"], (a, b, c)


@virtual_time
async def test_a_client_waits_for_a_backend_in_the_queue_without_a_task_and_is_served_in_order():
    opener, proxy, pool, (a, b, c) = await one_backend_in_a_transaction_and_two_waiting()
    assert [w.deliver.__self__ for w in pool.waiters] == [b.conn, c.conn]
    assert b.conn.state.value == c.conn.state.value == "checkout"
    assert not b.conn.busy_with_task and not c.conn.busy_with_task  # an idle wait costs no task
    await a.query("COMMIT")
    assert (await b.response()).value == "2" and (await c.response()).value == "3"
    assert len(opener.servers) == 1 and not pool.waiters and pool.idle == [a.conn.lease.last_backend]
    assert pool.stats.checkouts == 3
    await proxy.stop(0)


@virtual_time
async def test_a_waiting_client_that_leaves_gives_up_its_place_and_takes_nothing():
    _, proxy, pool, (a, b, c) = await one_backend_in_a_transaction_and_two_waiting()
    b.disconnect()
    await settle()
    assert [w.deliver.__self__ for w in pool.waiters] == [c.conn]
    await a.query("COMMIT")
    assert (await c.response()).value == "3"
    await settle()
    assert not pool.busy and len(pool.idle) == 1
    await proxy.stop(0)


@virtual_time
async def test_a_client_that_leaves_after_it_was_handed_a_backend_gives_it_back():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 1})
    pool = proxy.pools["app"]
    b = await connected(proxy)
    held = await pool.acquire(b.conn.key, 10)
    b.send_query("SELECT 2")
    await settle()
    pool.release(held)  # handed to b; b goes on in a loop callback...
    b.conn.close(ClientCloseReason.DISCONNECTED)  # ...but leaves first
    await settle()
    assert pool.idle == [held] and not pool.busy and held.holder is None
    assert "SELECT 2" not in opener.server_for(held).queries
    await proxy.stop(0)


@virtual_time
async def test_waiting_clients_past_checkout_timeout_get_1040_and_stay_usable():
    _, proxy, _, (a, b, c) = await one_backend_in_a_transaction_and_two_waiting(checkout_timeout=2.0)
    await advance(2.5)
    for client in (b, c):
        r = await client.response()
        assert r.error.errno == 1040 and b"had no free backend connection after waiting 2.0s" in r.error.message
        assert client.conn.state.value == "ready" and client.conn.lease.waiter is None
    await a.query("COMMIT")
    assert (await b.query("SELECT 5")).value == "5"
    assert proxy.stats.refused["checkout_timeout"] == 2
    await proxy.stop(0)


# -- CLIENT_SESSION_TRACK ----------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [None, 1])
def test_ok_packets_lose_the_session_state_block_only_for_clients_without_session_track(chunk_size):
    @virtual_time
    async def scenario():
        opener = fake_opener(chunk_size=chunk_size)
        proxy = await start_proxy(opener)
        plain = await connected(proxy, session_track=False)
        tracking = await connected(proxy, session_track=True)
        r = await plain.query("SET SESSION sql_mode='ANSI'")
        ok = r.ok
        assert ok.session_state is None and not ok.status & SESSION_STATE_CHANGED
        assert r.raw[4:] == b"\x00\x00\x00" + ok.status.to_bytes(2, "little") + b"\x00\x00"  # re-encoded, exactly
        assert len(r.raw) == int.from_bytes(r.raw[:3], "little") + 4
        assert plain.conn.session.state.variables[b"sql_mode"] == b"ANSI"  # the proxy still learned it
        # A tracking client sees what its own trackers (the server's defaults) report, not the proxy's:
        # sql_mode is not in the default list, and state changes are not tracked by default.
        r = await tracking.query("SET SESSION sql_mode='ANSI'")
        assert r.ok.session_state is None and not r.ok.status & SESSION_STATE_CHANGED
        r = await tracking.query("SET time_zone = '+00:00'")
        assert r.ok.status & SESSION_STATE_CHANGED
        assert parse_state_changes(r.ok.session_state) == StateChanges(variables=[(b"time_zone", b"+00:00")])
        await proxy.stop(0)

    scenario()


# -- flow control ------------------------------------------------------------------------


@virtual_time
async def test_a_full_client_buffer_pauses_the_backend_and_resuming_resumes_it():
    opener = fake_opener(auto=False)
    proxy = await start_proxy(opener)
    client = await connected(proxy)
    server = opener.servers[0]
    client.send_query("SELECT 1, 2, 3")
    await settle()
    backend = client.conn.backend
    server.flush(12)
    client.transport.fill_buffer()  # the client stops reading
    assert server.transport.reading_paused
    server.flush()
    assert server.transport.pending_input > 0  # the rest waits in the kernel, not in the proxy
    assert backend.state is BackendState.BUSY
    client.transport.drain()
    await settle()
    assert not server.transport.reading_paused
    r = await client.response()
    assert r.rows == [("1", "2", "3")] and r.raw == server.replies[-1]
    await proxy.stop(0)


@virtual_time
async def test_a_full_backend_buffer_pauses_the_client_and_resuming_resumes_it():
    opener = fake_opener()
    proxy = await start_proxy(opener)
    client = await connected(proxy)
    await client.query("BEGIN")  # holds the backend
    server = opener.servers[0]
    server.transport.fill_buffer()  # the server stops reading what the proxy writes
    assert client.transport.reading_paused
    client.send_query("SELECT 5")
    await settle()
    assert client.transport.pending_input > 0 and server.queries == ["BEGIN"]
    server.transport.drain()
    await settle()
    assert not client.transport.reading_paused
    r = await client.response()
    assert r.value == "5" and server.queries == ["BEGIN", "SELECT 5"]
    await proxy.stop(0)


# -- clients leaving -----------------------------------------------------------------------


@pytest.mark.parametrize("sent_bytes", [0, 9])
def test_a_client_that_leaves_mid_response_gets_its_backend_closed_not_pooled(sent_bytes):
    @virtual_time
    async def scenario():
        opener = fake_opener(auto=False)
        proxy = await start_proxy(opener)
        pool = proxy.pools["app"]
        client = await connected(proxy)
        server = opener.servers[0]
        client.send_query("SELECT 1")
        await settle()
        backend = client.conn.backend
        server.flush(sent_bytes)
        await settle()
        client.disconnect()
        await settle()  # no time passes
        assert backend.closed and backend.close_reason is BackendCloseReason.DIRTY
        assert server.closed_by == "proxy"
        # Hung up on at once, not told COM_QUIT: a server sending a result reads no command
        # before the result's end, and would go on producing it (for up to QUIT_WAIT) for nobody.
        assert "quit" not in server.command_names
        assert pool.size == 0
        assert backend not in pool.idle and pool.stats.closed["dirty"] == 1
        await proxy.stop(0)

    scenario()


# What the client had sent when it left, and what of it the server has as the file's:
# nothing (it refuses to send a file, as PyMySQL and aiomysql do without
# local_infile), a whole packet, or half a packet (the server waits for the rest).
@pytest.mark.parametrize(("sent", "file_data"), [
    (b"", b""),
    (encode_packet(b"1,a\n", 2), b"1,a\n"),
    (encode_packet(b"1,a\n2,b\n", 2)[:7], b""),
], ids=["nothing", "a_packet", "half_a_packet"])
def test_a_client_that_leaves_during_local_infile_gets_its_backend_closed_at_once(sent, file_data):
    # Diagnosis (found by aiomysql's test_load_local_disabled through the proxy: the
    # next DROP TABLE waited 2 s): closing a backend wrote COM_QUIT and waited up to
    # QUIT_WAIT for the server to hang up. A server waiting for LOCAL INFILE data
    # takes COM_QUIT for more of the file (or for the rest of a packet cut in half)
    # and keeps waiting, holding the LOAD DATA's locks and the pool's slot, until
    # the proxy gives up 2 s later. A client that dies mid-upload on a direct
    # connection closes its socket: the server sees the end at once and drops the load.
    @virtual_time
    async def scenario():
        opener = fake_opener()
        proxy = await start_proxy(opener)
        pool = proxy.pools["app"]
        client = await connected(proxy)
        client.send_query("LOAD DATA LOCAL INFILE 'data.csv' INTO TABLE t")
        await client.packet()  # the server's request for the file
        backend = client.conn.backend
        server, to_server = opener.servers[0], backend.transport
        client.transport.feed(sent)
        await settle()
        written = len(to_server.writes)
        client.disconnect()
        await settle()  # no time passes
        assert backend.closed and backend.close_reason is BackendCloseReason.DIRTY
        assert encode_packet(b"\x01", 0) not in to_server.writes[written:]  # no COM_QUIT
        assert to_server.is_closing() and server.closed_by == "proxy"  # hung up on, now
        assert bytes(server.infile_data) == file_data  # the client's bytes, and nothing taken for more of the file
        assert pool.size == 0  # its slot is free at once, not after QUIT_WAIT
        await proxy.stop(0)

    scenario()


@virtual_time
async def test_a_client_that_leaves_in_a_transaction_gets_its_backend_reset_before_reuse():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 1})
    pool = proxy.pools["app"]
    a, b = await connected(proxy), await connected(proxy)
    await a.query("BEGIN")
    await a.query("SET SESSION time_zone = '+02:00'")
    backend = a.conn.backend
    b.send_query("SELECT @@time_zone")  # waits for the only backend
    await settle()
    a.disconnect()
    r = await b.response()
    server = opener.server_for(backend)
    # reset, trackers back on, and only then b's statement (no sync needed: a fresh session is b's)
    assert server.command_names[-3:] == ["reset_connection", "query", "query"]
    assert server.queries[-2:] == [TRACKERS_SQL, "SELECT @@time_zone"]
    assert r.value == "SYSTEM"  # b never sees a's session
    assert server.trackers_on and not server.in_trans and server.resets == 1
    assert not backend.closed and b.conn.backend is None and pool.idle == [backend]
    await proxy.stop(0)


@virtual_time
async def test_a_pinned_client_that_leaves_gets_its_backend_reset_too():
    opener = fake_opener()
    proxy = await start_proxy(opener)
    pool = proxy.pools["app"]
    client = await connected(proxy)
    await client.query("SET @secret = 42")  # follows the client, no pin: but it is on this backend
    await client.query("CREATE TEMPORARY TABLE scratch (x INT)")
    backend = client.conn.backend
    assert backend is not None  # pinned by the temporary table
    client.disconnect()
    await settle()
    server = opener.server_for(backend)
    assert server.command_names[-2:] == ["reset_connection", "query"] and server.user_vars == {}
    assert pool.idle == [backend]
    await proxy.stop(0)


# -- session sync --------------------------------------------------------------------------


@virtual_time
async def test_clients_with_different_variables_get_the_backend_synced_and_never_see_each_other():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 1})
    a, b = await connected(proxy), await connected(proxy)
    server = opener.servers[0]
    await a.query("SET SESSION time_zone = '+01:00', sql_mode = 'ANSI'")
    assert (await a.query("SELECT @@time_zone")).value == "+01:00"
    r = await b.query("SELECT @@time_zone, @@sql_mode")
    assert server.queries[-2] == "SET @@session.`sql_mode`=DEFAULT, @@session.`time_zone`=DEFAULT" or \
        server.queries[-2] == "SET @@session.`time_zone`=DEFAULT, @@session.`sql_mode`=DEFAULT"
    assert r.rows == [("SYSTEM", server.variables[b"sql_mode"].decode())] and "ANSI" not in r.rows[0][1]
    r = await a.query("SELECT @@time_zone, @@sql_mode")
    assert server.queries[-2] == "SET @@session.`time_zone`='+01:00', @@session.`sql_mode`='ANSI'"
    assert r.rows == [("+01:00", "ANSI")]
    assert len(opener.servers) == 1
    await proxy.stop(0)


@virtual_time
async def test_clients_with_other_character_sets_get_the_fewest_sets_charsets_before_collation():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 1})
    server = opener.servers[0]
    unicode_ci = await connected(proxy, charset=224)  # utf8mb4 too, but not its default collation
    r = await unicode_ci.query("SELECT @@collation_connection, @@character_set_results")
    # SET NAMES: only it puts the collation behind character_set_client and _results too (session.py).
    assert server.queries[-2] == "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci'"
    assert r.rows == [("utf8mb4_unicode_ci", "utf8mb4")]
    latin = await connected(proxy, charset=8)
    r = await latin.query("SELECT @@collation_connection, @@character_set_client")
    assert server.queries[-2] == ("SET @@session.`character_set_client`='latin1', "
                                  "@@session.`character_set_connection`='latin1', "
                                  "@@session.`character_set_results`='latin1', "
                                  "@@session.`collation_connection`='latin1_swedish_ci'")
    assert r.rows == [("latin1_swedish_ci", "latin1")]
    # Back from latin1: were the collation set before character_set_connection, the server would reset it.
    r = await unicode_ci.query("SELECT @@collation_connection, @@character_set_connection")
    assert server.queries[-2] == "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci'"
    assert r.rows == [("utf8mb4_unicode_ci", "utf8mb4")]
    await proxy.stop(0)


@virtual_time
async def test_set_names_collate_answered_by_the_proxy_follows_the_client_with_its_hidden_collations():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 1})
    server = opener.servers[0]
    a, b = await connected(proxy), await connected(proxy)
    (await a.query("SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci")).expect_ok()
    assert not server.queries  # answered without a backend
    await a.query("SELECT 1")
    assert server.queries[-2] == "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci'"
    await b.query("SELECT 2")  # the handshake's utf8mb4_general_ci: a plain SET of each gives it back
    assert server.queries[-2] == ("SET @@session.`character_set_client`='utf8mb4', "
                                  "@@session.`character_set_results`='utf8mb4', "
                                  "@@session.`collation_connection`='utf8mb4_general_ci'")
    (await a.reset_connection()).expect_ok()  # back to its handshake's collation: b's state
    await a.query("SELECT 3")
    assert server.queries[-1] == "SELECT 3"
    (await b.query("SET NAMES utf8mb4")).expect_ok()  # the default collation: nothing to sync
    await b.query("SELECT 4")
    assert server.queries[-1] == "SELECT 4" and len(opener.servers) == 1
    await proxy.stop(0)


@virtual_time
async def test_a_backend_in_the_clients_state_is_preferred():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 2})
    a, b = await connected(proxy), await connected(proxy)
    await a.query("BEGIN")
    await b.query("SET SESSION time_zone = '+03:00'")  # b's state now lives on the second backend
    await a.query("COMMIT")  # the first one comes back later: the most recent idle one
    before = [len(s.queries) for s in opener.servers]
    await b.query("SELECT 1")
    after = [len(s.queries) for s in opener.servers]
    assert after[1] == before[1] + 1 and after[0] == before[0]  # no SET needed
    await proxy.stop(0)


# -- backends dying -------------------------------------------------------------------------


@virtual_time
async def test_a_backend_that_dies_under_an_idle_client_goes_unnoticed():
    opener = fake_opener()
    proxy = await start_proxy(opener)
    client = await connected(proxy)
    await client.query("SELECT 1")
    opener.servers[0].close()
    await settle()
    r = await client.query("SELECT 2")
    assert r.value == "2" and not client.closed
    assert opener.servers[1].queries == ["SELECT 2"]
    await proxy.stop(0)


@virtual_time
async def test_a_pooled_backend_that_died_silently_is_replaced_before_the_statement_is_sent():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"ping_after": 5})
    client = await connected(proxy)
    await client.query("SELECT 1")
    dead = opener.servers[0]
    dead.auto = False  # it never answers again (a dead host: no FIN)
    await advance(10)
    r = await client.query("SELECT 2", timeout=30)
    assert r.value == "2"
    assert dead.queries == ["SELECT 1"]  # the statement never went there
    assert dead.command_names[:2] == ["query", "ping"]  # (then the proxy said COM_QUIT)
    assert opener.servers[1].queries == ["SELECT 2"]
    await proxy.stop(0)


@virtual_time
async def test_a_backend_that_dies_inside_the_transaction_closes_the_client_with_an_error():
    opener = fake_opener()
    proxy = await start_proxy(opener)
    client = await connected(proxy)
    await client.query("BEGIN")
    opener.servers[0].close()
    pkt = await client.packet()
    err = parse_err(pkt.payload)
    assert err.errno == CR.CR_SERVER_LOST and b"transaction" in err.message
    await settle()
    assert client.closed
    with pytest.raises(ConnectionClosed):
        await client.packet()
    assert proxy.stats.client_closed["backend_lost"] == 1
    await proxy.stop(0)


@virtual_time
async def test_a_backend_that_dies_before_answering_a_lone_statement_is_an_error_the_client_survives():
    opener = fake_opener(auto=False)
    proxy = await start_proxy(opener)
    client = await connected(proxy)
    await advance(2)  # an older backend: dying is not a failed connect
    client.send_query("SELECT 1")
    await settle()
    opener.servers[0].close()
    r = await client.response()
    assert r.error.errno == CR.CR_SERVER_LOST and not client.closed
    opener.server_options["auto"] = True
    assert (await client.query("SELECT 3")).value == "3"
    await proxy.stop(0)


@virtual_time
async def test_a_backend_that_dies_mid_response_closes_the_client():
    opener = fake_opener(auto=False)
    proxy = await start_proxy(opener)
    client = await connected(proxy)
    client.send_query("SELECT 1")
    await settle()
    opener.servers[0].flush(9)
    opener.servers[0].close()
    await settle()
    assert client.closed  # half a result set cannot be finished or taken back
    assert proxy.stats.client_closed["backend_lost"] == 1
    await proxy.stop(0)


@virtual_time
async def test_a_client_that_leaves_as_its_backend_is_synced_never_leaves_it_with_the_wrong_state_on_record():
    # The sync SET's reply is read (the backend is at b's state) in the same loop iteration as b
    # leaves, before the checkout task that would record it runs again: the backend is closed, not
    # pooled as if it were still at a's state.
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 1})
    pool = proxy.pools["app"]
    a, b = await connected(proxy), await connected(proxy)
    await a.query("SET SESSION time_zone = '+02:00'")
    backend = pool.idle[0]
    server = opener.server_for(backend)
    server.auto = False
    b.send_query("SELECT @@time_zone")  # b's session is the default: the backend must be synced
    await settle()
    assert server.queries[-1].startswith("SET") and "time_zone" in server.queries[-1]
    server.flush()  # the SET's reply is read...
    b.conn.close(ClientCloseReason.DISCONNECTED)  # ...and b leaves before its task goes on
    server.auto = True
    await settle()
    assert backend.closed and pool.stats.closed["dirty"] == 1
    assert (await a.query("SELECT @@time_zone")).value == "+02:00"
    await proxy.stop(0)


@virtual_time
async def test_a_client_that_leaves_while_its_schema_is_checked_at_login_leaves_no_backend_behind():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 1})
    pool = proxy.pools["app"]
    warm = await connected(proxy)
    await warm.query("SELECT 1")
    backend = pool.idle[0]
    server = opener.server_for(backend)
    server.auto = False
    late = FakeClient(proxy, database="other")
    connecting = asyncio.ensure_future(late.connect())
    await settle()
    assert server.command_names[-1] == "init_db"
    server.flush()
    late.conn.close(ClientCloseReason.DISCONNECTED)
    server.auto = True
    await settle()
    connecting.cancel()
    assert backend.closed and not pool.busy and not pool.idle
    assert (await warm.query("SELECT DATABASE()")).value is None  # not the schema the check selected
    await proxy.stop(0)


@virtual_time
async def test_a_set_of_an_unknown_variable_fails_and_changes_nothing():
    # SET checks every assignment before it makes any: after its error there is nothing to read
    # back (reading @@bogus back would fail too and leave the client pinned for good).
    opener = fake_opener()
    proxy = await start_proxy(opener)
    client = await connected(proxy)
    r = await client.query("SET @@bogus_variable = 1")
    assert r.error.errno == 1193
    server = opener.servers[0]
    assert server.queries[-1] == "SET @@bogus_variable = 1"  # no hidden read-back
    assert client.conn.backend is None and not client.conn.session.pins.reasons()
    assert (await client.query("SELECT 1")).value == "1"
    await proxy.stop(0)


@virtual_time
async def test_the_rest_of_an_oversized_packet_is_skipped_even_when_it_arrives_shaped_like_a_command():
    # The rest of an oversized packet arrives in a read of its own that happens to be exactly one
    # whole packet: it is still the oversized packet's payload, never a command.
    opener = fake_opener()
    proxy = await start_proxy(opener, proxy={"max_packet_size": 1024})
    client = await connected(proxy)
    inner = encode_packet(b"\x03SELECT 666", 0)
    payload = b"\x03SELECT '" + b"x" * (2000 - 10 - len(inner)) + inner + b"'"
    assert len(payload) == 2000
    whole = encode_packet(payload, 0)
    split = len(whole) - len(inner) - 1
    client.transport.feed(whole[:split])
    await settle()
    client.transport.feed(whole[split:-1])  # exactly `inner`
    await settle()
    client.transport.feed(whole[-1:])
    r = await client.response()
    assert r.error.errno == 1153
    assert (await client.query("SELECT 1")).value == "1"
    assert all("666" not in q for server in opener.servers for q in server.queries)
    await proxy.stop(0)

# Tracker reports the server holds back: an EOF cannot carry a session-state
# report, so MariaDB marks it "state changed" and sends the report with the
# next OK that has one of its own (a bare OK, as COM_PING's or DO's, brings
# none). In a transaction the first read changes its state (T_______ ->
# T_R___S_), so every transaction that reads before it writes leaves one.
# While the client keeps its backend for the transaction, the report waits for
# the transaction's next OK: no hidden statement. Before the backend leaves the
# client, or before the proxy's own statements run on it, the proxy fetches
# the report (a hidden SET whose OK brings it): the next client never gets it.
# Proxy on fakes: FakeMySQLServer holds the report as MariaDB does.
from __future__ import annotations

from mysqlpool_proxy.client.followups import FLUSH_TRACKERS
from mysqlpool_proxy.constants import SERVER_SESSION_STATE_CHANGED
from mysqlpool_proxy.reasons import BackendCloseReason
from tests.fakes import Err, FakeClient, Ok, Rows, advance, fake_opener, settle, start_proxy, virtual_time

FLUSH = FLUSH_TRACKERS.decode()


async def connected(proxy, **kwargs) -> FakeClient:
    return await FakeClient(proxy, **kwargs).connect()


def no_report_held(proxy, opener) -> bool:
    """Every backend of the pool, idle or held: the server holds no report for it."""
    pool = proxy.pools["app"]
    return not any(b.report_held or opener.server_for(b).held_report for b in [*pool.idle, *pool.busy]
                   if not b.closed)


@virtual_time
async def test_a_transaction_that_reads_then_writes_runs_no_hidden_statement():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 1})
    client = await connected(proxy)
    server = opener.servers[0]
    before = len(server.queries)
    for _ in range(3):
        assert (await client.query("BEGIN")).error is None
        r = await client.query("SELECT 1")
        assert r.value == "1"
        backend = client.conn.backend
        assert backend is not None and backend.report_held  # the EOF said "state changed": held
        assert (await client.query("UPDATE t SET k = k + 1")).error is None
        assert not backend.report_held  # its OK brought the report
        assert (await client.query("COMMIT")).error is None
    assert server.queries[before:] == ["BEGIN", "SELECT 1", "UPDATE t SET k = k + 1", "COMMIT"] * 3
    assert client.conn.backend is None and no_report_held(proxy, opener)
    await proxy.stop(0)


@virtual_time
async def test_a_report_still_held_when_the_transaction_ends_is_fetched_before_the_backend_goes():
    # A transaction that reads and commits with an OK that carries no report of its own (a
    # deadlock's ERR ends it too): the report is still on the server when the client lets go.
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 1})
    a = await connected(proxy)
    server = opener.servers[0]

    def bare_commit(srv, sql):
        srv.in_trans = False
        return Ok()  # no trackers' report: the held one stays held
    server.on("COMMIT", bare_commit)
    await a.query("BEGIN")
    await a.query("SELECT 1")
    before = len(server.queries)
    assert (await a.query("COMMIT")).error is None
    await settle()  # the client's follow-up (the fetch) runs after its answer
    assert server.queries[before:] == ["COMMIT", FLUSH]
    assert a.conn.backend is None and not server.held_report and no_report_held(proxy, opener)
    # The next client of the backend gets nothing of it.
    b = await connected(proxy, session_track=True)
    r = await b.query("SET @x = 1")
    assert r.error is None and not r.last.status & SERVER_SESSION_STATE_CHANGED
    await proxy.stop(0)


@virtual_time
async def test_an_error_that_ends_the_transaction_fetches_the_report_then_probes():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 1})
    client = await connected(proxy)
    server = opener.servers[0]

    def deadlock(srv, sql):
        srv.in_trans = False  # MariaDB rolls the transaction back
        return Err(1213, "Deadlock found when trying to get lock; try restarting transaction", "40001")
    server.on("UPDATE t SET k = 2", deadlock)
    await client.query("BEGIN")
    await client.query("SELECT 1")
    before = len(server.commands)
    assert (await client.query("UPDATE t SET k = 2")).error.errno == 1213
    await settle()
    assert [c.sql if c.name == "query" else c.name for c in server.commands[before:]] == [
        "UPDATE t SET k = 2", FLUSH, "ping"]
    assert client.conn.backend is None and no_report_held(proxy, opener)
    await proxy.stop(0)


@virtual_time
async def test_the_idle_transaction_rollback_fetches_the_held_report_first():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 1, "idle_transaction_timeout": 2})
    client = await connected(proxy)
    server = opener.servers[0]
    await client.query("BEGIN")
    await client.query("SELECT 1")
    before = len(server.queries)
    await advance(5)
    assert server.queries[before:] == [FLUSH, "ROLLBACK"]
    assert client.conn.backend is None and no_report_held(proxy, opener)
    assert b"idle_transaction_timeout" in (await client.query("SELECT 2")).error.message
    await proxy.stop(0)


@virtual_time
async def test_a_report_held_is_fetched_before_the_proxy_prepares_a_statement_on_the_backend():
    # The client's transaction executes a statement its backend does not have: the proxy's own
    # commands run there first (their OK would bring the report unseen), so the report comes first.
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 2})
    a, b = await connected(proxy), await connected(proxy)
    stmt = (await a.prepare("SELECT 7")).expect_ok().last.stmt_id
    await b.query("BEGIN")  # b holds the backend a prepared on
    await a.query("BEGIN")
    await a.query("SELECT 1")
    backend = a.conn.backend
    assert backend is not None and backend.report_held
    server = opener.server_for(backend)
    backend.statements = None  # as if evicted: the execute must prepare it again here
    before = len(server.commands)
    assert (await a.execute(stmt)).expect_ok().rows == [("7",)]
    names = [c.sql if c.name == "query" else c.name for c in server.commands[before:]]
    assert names[0] == FLUSH and "stmt_prepare" in names and names[-1] == "stmt_execute"
    await a.query("COMMIT")
    await b.query("COMMIT")
    assert no_report_held(proxy, opener)
    await proxy.stop(0)


@virtual_time
async def test_a_client_leaving_with_a_report_held_has_its_backend_reset():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 1})
    a = await connected(proxy)
    await a.query("BEGIN")
    await a.query("SELECT 1")
    server = opener.servers[0]
    a.quit()
    await advance(1)
    assert server.resets == 1 and not server.held_report and no_report_held(proxy, opener)
    await proxy.stop(0)


@virtual_time
async def test_a_backend_with_a_report_held_is_closed_rather_than_pooled():
    # The last line of defence (client/lease.py): were a path to let go of such a backend without
    # fetching the report, the backend is closed, never handed to another client with it.
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 1})
    a = await connected(proxy)
    await a.query("BEGIN")
    await a.query("SELECT 1")
    backend = a.conn.backend
    assert backend is not None and backend.report_held
    a.conn.lease.hold_or_release(backend, keep=False)
    assert backend.closed and backend.close_reason is BackendCloseReason.DIRTY
    await proxy.stop(0)


@virtual_time
async def test_an_execute_of_a_statement_prepared_in_another_schema_fetches_its_report_at_once():
    # MariaDB runs such a statement in the schema it was prepared in, switching there and back, and
    # reports the switch: only the execute explains it, so its report is not left for a later OK.
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 1})
    client = await connected(proxy, database="app")
    server = opener.servers[0]
    server.on("SELECT k FROM t", Rows(["k"], [(1,)]))
    stmt = (await client.prepare("SELECT k FROM t")).expect_ok().last.stmt_id
    await client.query("USE other")
    await client.query("BEGIN")
    before = len(server.commands)
    assert (await client.execute(stmt)).expect_ok().rows == [("1",)]
    names = [c.sql if c.name == "query" else c.name for c in server.commands[before:]]
    assert names[-1] == FLUSH
    assert not client.conn.session.pins.unknown_state
    await client.query("COMMIT")
    assert no_report_held(proxy, opener)
    await proxy.stop(0)

# When a client is in a transaction, whatever the server's flag says, and the
# COMMIT / ROLLBACK / SET autocommit that need no backend. Proxy on fakes
# (FakeMySQLServer behaves as MariaDB: with autocommit off a SAVEPOINT before
# any table lives on the connection without SERVER_STATUS_IN_TRANS).
from __future__ import annotations

from mysqlpool_proxy.constants import SERVER_STATUS
from mysqlpool_proxy.protocol.session_track import StateChanges, parse_state_changes
from tests.fakes import FakeClient, advance, fake_opener, start_proxy, virtual_time

IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT


async def connected(proxy, **kwargs) -> FakeClient:
    return await FakeClient(proxy, **kwargs).connect()


@virtual_time
async def test_a_savepoint_before_the_first_table_keeps_the_backend_until_commit():
    # Diagnosis: the client held a backend only while the server's status said
    # IN_TRANS; with autocommit off a SAVEPOINT before any table does not set it,
    # so the backend went back to the pool and the client's ROLLBACK TO SAVEPOINT
    # ran on another one: 1305 (Django's nested atomic(), SQLAlchemy's
    # begin_nested(), JDBC setSavepoint()).
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 1})
    a, b = await connected(proxy), await connected(proxy)
    await a.query("SET autocommit=0")
    assert a.conn.backend is None  # nothing open yet
    r = await a.query("SAVEPOINT s1")
    assert not r.status & IN_TRANS and a.conn.backend is not None and a.conn.in_transaction
    b.send_query("SELECT 2")  # waits: the only backend is a's
    await advance(1)
    assert not b.has_pending_bytes()
    assert (await a.query("ROLLBACK TO SAVEPOINT s1")).error is None
    assert (await a.query("RELEASE SAVEPOINT s1")).error is None
    assert (await a.query("COMMIT")).error is None
    assert a.conn.backend is None and not a.conn.in_transaction
    assert (await b.response()).value == "2"
    await proxy.stop(0)


@virtual_time
async def test_any_statement_with_autocommit_off_opens_a_transaction_until_rollback():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 2})
    pool = proxy.pools["app"]
    a = await connected(proxy)
    await a.query("SET autocommit=0")
    await a.query("DO 1")  # touches no table: no IN_TRANS from the server
    assert a.conn.backend is not None and a.conn.in_transaction
    await a.query("SAVEPOINT s2")
    await a.query("ROLLBACK")
    assert a.conn.backend is None and not a.conn.in_transaction and len(pool.idle) == 1
    await a.query("SET autocommit=1")
    await a.query("SAVEPOINT x")  # with autocommit on it dies with its statement: nothing held
    assert a.conn.backend is None
    await proxy.stop(0)


@virtual_time
async def test_commit_rollback_and_autocommit_unchanged_need_no_backend():
    # Diagnosis: every DBAPI pool sends ROLLBACK when a connection goes back to it;
    # the proxy sent it to a backend, so with every backend held by a stuck
    # transaction each pool's reset-on-return waited and got 1040.
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 1, "checkout_timeout": 2})
    stuck, app = await connected(proxy), await connected(proxy)
    await stuck.query("BEGIN")
    await stuck.query("INSERT INTO t VALUES (1)")
    served = len([c for s in opener.servers for c in s.commands])
    for sql in ("ROLLBACK", "COMMIT", "rollback work", "SET autocommit=1", "SET AUTOCOMMIT = 1"):
        r = await app.query(sql, timeout=0.5)
        assert r.error is None and r.status & AUTOCOMMIT and not r.status & IN_TRANS, sql
    assert len([c for s in opener.servers for c in s.commands]) == served  # no server saw them
    assert proxy.pools["app"].stats.queries["query"] >= 5
    await stuck.query("COMMIT")
    # A real change goes to a server; then "unchanged" is answered by the proxy again.
    assert (await app.query("SET autocommit=0")).error is None
    assert app.conn.backend is None and not app.conn.status & AUTOCOMMIT
    served = len([c for s in opener.servers for c in s.commands])
    r = await app.query("SET autocommit=0")
    assert r.error is None and not r.status & AUTOCOMMIT
    assert (await app.query("COMMIT")).error is None
    assert len([c for s in opener.servers for c in s.commands]) == served
    await proxy.stop(0)


@virtual_time
async def test_a_local_set_autocommit_reports_what_the_clients_trackers_would():
    proxy = await start_proxy(fake_opener())
    tracking = await connected(proxy, session_track=True)
    r = await tracking.query("SET autocommit=1")
    assert parse_state_changes(r.ok.session_state) == StateChanges(variables=[(b"autocommit", b"ON")])
    plain = await connected(proxy, session_track=False)
    r = await plain.query("SET autocommit=1")
    assert r.ok.session_state is None
    await proxy.stop(0)


@virtual_time
async def test_a_commit_inside_a_transaction_goes_to_its_backend():
    opener = fake_opener()
    proxy = await start_proxy(opener)
    a = await connected(proxy)
    await a.query("BEGIN")
    backend = a.conn.backend
    await a.query("COMMIT")
    assert opener.server_for(backend).queries[-1] == "COMMIT"
    await proxy.stop(0)

# MariaDB's extended capabilities on the fakes: what the greeting offers (only what the backends
# negotiate), COM_STMT_BULK_EXECUTE through the proxy (the statement id mapped to the backend's, the
# types put back after a move to another backend, refusals answered without a backend, the
# transaction and pin state a bulk leaves, as an execute's), and extended metadata as a pool key
# (a client gets backends that negotiated as it did; the proxy's own queries read their answers).
from __future__ import annotations

import struct

from mysqlpool_proxy.backend.adapter import BACKEND_MARIADB_CAPABILITIES, KEYED_MARIADB_CAPABILITIES, Opened
from mysqlpool_proxy.backend.pool import KEY_BITS
from mysqlpool_proxy.constants import (
    CLIENT_MYSQL,
    COM_STMT_BULK_EXECUTE,
    MARIADB_CAPABILITIES,
    MARIADB_CLIENT_CACHE_METADATA,
    MARIADB_CLIENT_EXTENDED_METADATA,
    MARIADB_CLIENT_PROGRESS,
    MARIADB_CLIENT_STMT_BULK_OPERATIONS,
)
from mysqlpool_proxy.core.pins import PinReason
from mysqlpool_proxy.protocol.framing import PacketDecoder
from mysqlpool_proxy.protocol.rows import extended_metadata
from mysqlpool_proxy.proxy.proxy import OFFERED_CAPABILITIES, OFFERED_MARIADB_CAPABILITIES, offered_capabilities
from tests.fakes import DEFAULT_CLIENT_CAPS, SERVER_CAPABILITIES, FakeClient, fake_opener, start_proxy, virtual_time

BULK = MARIADB_CLIENT_STMT_BULK_OPERATIONS
EXTENDED = MARIADB_CLIENT_EXTENDED_METADATA
BULK_CLIENT = DEFAULT_CLIENT_CAPS | BULK
TYPES = b"\x08\x00\xfd\x00"  # LONGLONG, VAR_STRING
INSERT = "INSERT INTO t (id, v) VALUES (?, ?)"


def rows(*values: tuple[int, bytes]) -> bytes:
    return b"".join(b"\x00" + struct.pack("<q", i) + b"\x00" + bytes((len(v),)) + v for i, v in values)


def decode_all(data: bytes) -> list:
    decoder = PacketDecoder()
    decoder.feed(data)
    return list(iter(decoder.next_packet, None))


def bulks(server) -> list[bytes]:
    return [c.arg for c in server.commands if c.code == COM_STMT_BULK_EXECUTE]


def test_only_capabilities_the_backends_negotiate_are_offered():
    """The proxy offers a MariaDB capability only if every backend negotiates it (where the server has
    it), or the backends of the pool key a client that asks gets do."""
    assert OFFERED_MARIADB_CAPABILITIES == OFFERED_CAPABILITIES & MARIADB_CAPABILITIES
    assert not OFFERED_MARIADB_CAPABILITIES & ~(BACKEND_MARIADB_CAPABILITIES | KEYED_MARIADB_CAPABILITIES & KEY_BITS)
    assert not OFFERED_MARIADB_CAPABILITIES & (MARIADB_CLIENT_PROGRESS | MARIADB_CLIENT_CACHE_METADATA)


def opened(server_capabilities: int, negotiated: int) -> Opened:
    return Opened(transport=None, handoff=None, thread_id=1, server_version="10.11.6-MariaDB",  # type: ignore[arg-type]
                  server_capabilities=server_capabilities, status=2, wait_timeout=28800.0, max_user_connections=0,
                  max_connections=151, charset_vars={}, collations=None, extended_capabilities=negotiated)


def test_the_offer_follows_what_the_backend_negotiated_and_the_server_has():
    mariadb = SERVER_CAPABILITIES  # 10.11: CLIENT_MYSQL clear; PROGRESS, BULK, EXTENDED_METADATA, CACHE_METADATA
    offered = offered_capabilities(opened(mariadb, BULK))
    assert not offered & CLIENT_MYSQL
    assert offered & MARIADB_CAPABILITIES == OFFERED_MARIADB_CAPABILITIES & mariadb
    assert offered & BULK
    # a backend that did not negotiate bulk operations (the server stopped offering them): not offered
    assert not offered_capabilities(opened(mariadb & ~BULK, 0)) & BULK
    # a MySQL server: CLIENT_MYSQL set, no MariaDB capability at all
    mysql = (SERVER_CAPABILITIES & 0xFFFFFFFF) | CLIENT_MYSQL
    assert offered_capabilities(opened(mysql, 0)) & (CLIENT_MYSQL | MARIADB_CAPABILITIES) == CLIENT_MYSQL


@virtual_time
async def test_the_greeting_offers_bulk_operations_and_a_client_that_asks_gets_them():
    proxy = await start_proxy(fake_opener())
    plain = await FakeClient(proxy).connect()
    assert plain.greeting.capabilities & MARIADB_CAPABILITIES == OFFERED_MARIADB_CAPABILITIES & SERVER_CAPABILITIES
    assert not plain.greeting.capabilities & CLIENT_MYSQL
    assert not plain.conn.capabilities & MARIADB_CAPABILITIES  # it set CLIENT_MYSQL, as PyMySQL does
    asking = await FakeClient(proxy, capabilities=BULK_CLIENT | MARIADB_CLIENT_PROGRESS).connect()
    assert asking.conn.capabilities & MARIADB_CAPABILITIES == BULK  # not PROGRESS: never offered
    await proxy.stop(0)


@virtual_time
async def test_a_bulk_is_relayed_with_the_backends_statement_id():
    opener = fake_opener()
    proxy = await start_proxy(opener)
    client = await FakeClient(proxy, capabilities=BULK_CLIENT).connect()
    stmt = (await client.prepare(INSERT)).last.stmt_id
    (await client.bulk(stmt, rows((1, b"a"), (2, b"b")), types=TYPES)).expect_ok()
    (server,) = opener.servers
    server_id = next(i for i, s in server.statements.items() if s.sql == INSERT)
    assert bulks(server) == [struct.pack("<IH", server_id, 128) + TYPES + rows((1, b"a"), (2, b"b"))]
    assert proxy.pools["app"].stats.queries["stmt_bulk_execute"] == 1
    assert client.conn.backend is None and client.conn.pinned_reasons() == []  # autocommit: released
    await proxy.stop(0)


@virtual_time
async def test_a_bulk_without_types_on_another_backend_gets_its_clients_types():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"max_size": 2})
    client = await FakeClient(proxy, capabilities=BULK_CLIENT).connect()
    stmt = (await client.prepare(INSERT)).last.stmt_id
    (await client.bulk(stmt, rows((1, b"a")), types=TYPES)).expect_ok()
    first = proxy.pools["app"].idle[-1]
    other = await FakeClient(proxy).connect()
    await other.query("BEGIN")  # holds the backend the statement was prepared on
    assert other.conn.backend is first
    (await client.bulk(stmt, rows((2, b"b")))).expect_ok()  # no types: its server statement had them
    second = next(s for s in opener.servers if s is not opener.server_for(first))
    server_id = next(i for i, s in second.statements.items() if s.sql == INSERT)
    assert bulks(second) == [struct.pack("<IH", server_id, 128) + TYPES + rows((2, b"b"))]
    (await client.bulk(stmt, rows((3, b"c")))).expect_ok()  # the server statement has them now
    assert bulks(second)[-1] == struct.pack("<IH", server_id, 0) + rows((3, b"c"))
    await proxy.stop(0)


@virtual_time
async def test_refused_bulks_take_no_backend():
    opener = fake_opener()
    proxy = await start_proxy(opener)
    plain = await FakeClient(proxy).connect()  # did not negotiate bulk operations
    stmt = (await plain.prepare(INSERT)).last.stmt_id
    r = await plain.bulk(stmt, rows((1, b"a")), types=TYPES)
    assert (r.error.errno, r.error.message) == (
        1295, b"This command is not supported in the prepared statement protocol yet")
    asking = await FakeClient(proxy, capabilities=BULK_CLIENT).connect()
    stmt = (await asking.prepare(INSERT)).last.stmt_id
    r = await asking.bulk(stmt, rows((1, b"a")))  # no types, and it never bound any
    assert (r.error.errno, r.error.message) == (1210, b"Incorrect arguments to mysqld_stmt_bulk_execute")
    r = await asking.bulk(stmt + 100, rows((1, b"a")), types=TYPES)
    assert r.error.errno == 1243
    assert not any(bulks(server) for server in opener.servers)
    assert plain.conn.backend is None and asking.conn.backend is None
    (await asking.bulk(stmt, b"\x01\x01")).expect_ok()  # rows of NULLs only need no types: relayed
    await proxy.stop(0)


@virtual_time
async def test_a_bulk_with_autocommit_off_opens_a_transaction_that_keeps_the_backend():
    proxy = await start_proxy(fake_opener())
    client = await FakeClient(proxy, capabilities=BULK_CLIENT).connect()
    stmt = (await client.prepare(INSERT)).last.stmt_id
    (await client.query("SET autocommit=0")).expect_ok()
    (await client.bulk(stmt, rows((1, b"a")), types=TYPES)).expect_ok()
    assert client.conn.pinned_reasons() == [PinReason.TRANSACTION]
    backend = client.conn.backend
    assert backend is not None
    (await client.query("COMMIT")).expect_ok()
    assert client.conn.pinned_reasons() == [] and client.conn.backend is None
    await proxy.stop(0)



# -- extended metadata: a pool key of its own --------------------------------------------------


@virtual_time
async def test_a_client_with_extended_metadata_gets_backends_that_negotiated_it_and_others_never_do():
    opener = fake_opener()
    proxy = await start_proxy(opener)
    extended = await FakeClient(proxy, capabilities=DEFAULT_CLIENT_CAPS | EXTENDED).connect()
    assert extended.conn.capabilities & MARIADB_CAPABILITIES == EXTENDED
    plain = await FakeClient(proxy).connect()
    r = await extended.query("SELECT 'x' AS a")
    assert r.rows == [("x",)]
    (definition,) = [p.payload for p in decode_all(r.raw)][1:2]
    assert extended_metadata(definition) == {}  # the block is there (empty for a plain column)
    assert (await plain.query("SELECT 'x' AS a")).rows == [("x",)]
    keys = sorted(b.key & EXTENDED for b in proxy.pools["app"].idle)
    assert keys == [0, EXTENDED]
    for backend in proxy.pools["app"].idle:
        negotiated = opener.server_for(backend).extended_capabilities
        assert bool(negotiated & EXTENDED) is bool(backend.key & EXTENDED) and negotiated & BULK
    await proxy.stop(0)


@virtual_time
async def test_the_proxys_hidden_read_back_parses_extended_column_definitions():
    """A user variable is read back with a hidden SELECT; on such a backend its definitions have the block."""
    opener = fake_opener()
    proxy = await start_proxy(opener)
    client = await FakeClient(proxy, capabilities=DEFAULT_CLIENT_CAPS | EXTENDED).connect()
    (await client.query("SET @v = 'abc'")).expect_ok()
    (server,) = [s for s in opener.servers if s.extended_capabilities & EXTENDED]
    assert server.queries[-1].startswith("SELECT LAST_INSERT_ID(), @`v`")
    assert client.conn.pinned_reasons() == []  # read back (a read-back that fails pins the client)
    await proxy.stop(0)

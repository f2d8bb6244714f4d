# The admin console (mysqlpool_proxy/ops/admin.py) over an in-memory transport:
# an AdminConnection of a Proxy built from a real TOML file on a fresh
# VirtualClockLoop and never started (its pools exist, nothing connects),
# driven by `AdminClient`, which logs in as a MySQL client would and reads
# every reply with PyMySQL's own result parser. A few tests use a proxy
# started on fake backends (tests/fakes/) to see real clients, pins and
# backends in SHOW CLIENTS / SHOW SERVERS, and KILL CLIENT.
from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import pymysql
import pytest
from pymysql import converters
from pymysql.protocol import MysqlPacket

from mysqlpool_proxy.config import AdminConfig, load_config
from mysqlpool_proxy.constants import CLIENT
from mysqlpool_proxy.core.states import ClientState
from mysqlpool_proxy.ops import admin
from mysqlpool_proxy.ops.admin import COMMANDS, AdminConnection, start_admin_server, stop_admin_server
from mysqlpool_proxy.protocol import auth
from mysqlpool_proxy.protocol.framing import MAX_FRAME, encode_packet, frame_header
from mysqlpool_proxy.protocol.packets import parse_err, parse_handshake_v10, parse_ok
from mysqlpool_proxy.protocol.wire import int1, int4, lenenc_bytes
from mysqlpool_proxy.proxy.proxy import Proxy
from tests.fakes import FakeClient, FakeTransport, advance, fake_opener, settle, start_proxy, virtual_time

ADMIN_PASSWORD = "adminpw"
CONFIG = """
[proxy]
listen = "127.0.0.1:0"
shutdown_timeout = 7
[backend]
host = "127.0.0.1"
port = 3306
[pool]
max_size = 4
[admin]
listen = "127.0.0.1:0"
password = "adminpw"
[metrics]
listen = ""
[[users]]
name = "app"
password = "app-secret"
[[users]]
name = "reporting"
password = "r-secret"
max_size = 2
"""
CAPS = (CLIENT.LONG_PASSWORD | CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION | CLIENT.PLUGIN_AUTH
        | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT.TRANSACTIONS | CLIENT.MULTI_RESULTS)


class AdminError(Exception):
    """An ERR reply: errno, sqlstate, message."""

    def __init__(self, errno: int, sqlstate: str, message: str):
        super().__init__(errno, message)
        self.errno, self.sqlstate, self.message = errno, sqlstate, message


class BytesConnection:
    """What PyMySQL's MySQLResult reads through: packets from bytes, sequence ids checked."""

    use_unicode = True
    encoding = "utf8"
    decoders = converters.decoders
    _result = None

    def __init__(self, data: bytes, first_seq: int = 1):
        self.data, self.pos, self.seq = data, 0, first_seq

    def _read_packet(self, packet_type=MysqlPacket):
        assert self.pos + 4 <= len(self.data), "the reply ended early"
        length = int.from_bytes(self.data[self.pos:self.pos + 3], "little")
        assert self.data[self.pos + 3] == self.seq, "sequence id"
        self.seq = (self.seq + 1) % 256
        payload = self.data[self.pos + 4:self.pos + 4 + length]
        self.pos += 4 + length
        return packet_type(payload, "utf8")


class AdminClient:
    """A MySQL client on an AdminConnection over a FakeTransport."""

    def __init__(self, proxy: Proxy, listener: admin.Listener | None = None, *, peer=("10.1.2.3", 40000)):
        self.conn = AdminConnection(proxy, admin.Listener() if listener is None else listener, iter([7]))
        self.transport = FakeTransport(proxy.loop, self.conn, peername=peer, name="admin")
        self.seen = 0
        self.conn.connection_made(self.transport)
        greeting = self.take()
        self.greeting = parse_handshake_v10(greeting[4:]) if greeting[4] == 0x0A else None

    @property
    def closed(self) -> bool:
        return self.transport.is_closing()

    def take(self) -> bytes:
        """Everything the console wrote since the last take()."""
        data = self.transport.data
        new, self.seen = data[self.seen:], len(data)
        return new

    def send(self, payload: bytes, seq: int = 0) -> None:
        self.transport.feed(encode_packet(payload, seq))

    def login(self, user: str = "admin", password: str = ADMIN_PASSWORD, database: str | None = None) -> bytes:
        """Send HandshakeResponse41; return the reply's payload (OK or ERR)."""
        token = auth.client_scramble_native(password.encode(), self.greeting.scramble) if password else b""
        caps = CAPS | (CLIENT.CONNECT_WITH_DB if database else 0)
        payload = int4(caps) + int4(1 << 24) + int1(45) + b"\0" * 23 + user.encode() + b"\0" + lenenc_bytes(token)
        payload += (database.encode() + b"\0" if database else b"") + auth.NATIVE + b"\0"
        self.send(payload, 1)
        return self.take()[4:]

    def reply(self, payload: bytes, seq: int = 0) -> pymysql.connections.MySQLResult:
        """Send one command; its reply parsed by PyMySQL (AdminError for an ERR)."""
        self.send(payload, seq)
        return self.parse(self.take(), seq + 1)

    @staticmethod
    def parse(data: bytes, first_seq: int = 1) -> pymysql.connections.MySQLResult:
        assert data, "no reply"
        if data[4] == 0xFF:
            err = parse_err(data[4:])
            assert len(data) == 4 + int.from_bytes(data[:3], "little"), "bytes after the ERR"
            raise AdminError(err.errno, err.sqlstate, err.message.decode())
        conn = BytesConnection(data, first_seq)
        result = pymysql.connections.MySQLResult(conn)
        result.read()
        assert conn.pos == len(data), "bytes after the reply"
        return result

    def query(self, sql: str) -> pymysql.connections.MySQLResult:
        return self.reply(b"\x03" + sql.encode())

    def rows(self, sql: str) -> list[dict]:
        result = self.query(sql)
        names = [d[0] for d in result.description]
        return [dict(zip(names, row)) for row in result.rows]


def info(result: pymysql.connections.MySQLResult) -> bytes:
    """An OK's info string. It is length-encoded, as servers send it; PyMySQL keeps the length byte."""
    message = result.message
    assert message[0] == len(message) - 1, message
    return message[1:]


def error_of(client: AdminClient, sql: str) -> AdminError:
    with pytest.raises(AdminError) as info:
        client.query(sql)
    return info.value


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "proxy.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def proxy_maker(config_path):
    """make() -> an unstarted Proxy on the running VirtualClockLoop (call it inside a virtual_time test)."""
    import asyncio

    def make() -> Proxy:
        return Proxy(load_config(str(config_path)), asyncio.get_running_loop())
    return make


async def logged_in(proxy: Proxy, **kwargs) -> AdminClient:
    client = AdminClient(proxy, **kwargs)
    reply = client.login()
    assert reply[0] == 0x00, reply
    return client


# -- logging in -----------------------------------------------------------------------------------


@virtual_time
async def test_login_with_the_admin_password(proxy_maker):
    client = AdminClient(proxy_maker())
    assert client.greeting.server_version.startswith(b"5.7.99-mysqlpool-proxy-")
    assert not client.greeting.capabilities & (CLIENT.SSL | CLIENT.MULTI_STATEMENTS | CLIENT.DEPRECATE_EOF)
    ok = parse_ok(client.login(), CAPS)
    assert ok.status & 2  # autocommit
    assert client.rows("SHOW VERSION")[0]["version"].startswith("mysqlpool-proxy ")


@virtual_time
async def test_wrong_password_gets_1045_worded_as_mysql_and_a_close(proxy_maker):
    client = AdminClient(proxy_maker())
    err = parse_err(client.login(password="nope"))
    assert (err.errno, err.sqlstate) == (1045, "28000")
    assert err.message == b"Access denied for user 'admin'@'10.1.2.3' (using password: YES)"
    await settle()
    assert client.closed


@virtual_time
async def test_only_the_admin_user_gets_in(proxy_maker):
    client = AdminClient(proxy_maker())
    err = parse_err(client.login(user="app", password="app-secret"))
    assert err.errno == 1045 and b"'app'@" in err.message
    assert client.closed


@virtual_time
async def test_no_password_no_login(proxy_maker):
    proxy = proxy_maker()
    proxy.config = dataclasses.replace(proxy.config, admin=AdminConfig(password=""))
    err = parse_err(AdminClient(proxy).login(password=""))
    assert err.errno == 1045 and err.message.endswith(b"(using password: NO)")


@virtual_time
async def test_password_hash_login(proxy_maker):
    proxy = proxy_maker()
    stored = "*" + auth.native_hash_from_password(b"hashed-pw").hex().upper()
    proxy.config = dataclasses.replace(proxy.config, admin=AdminConfig(password_hash=stored))
    assert AdminClient(proxy).login(password="hashed-pw")[0] == 0x00
    assert parse_err(AdminClient(proxy).login(password=ADMIN_PASSWORD)).errno == 1045


@virtual_time
async def test_a_query_before_login_gets_nothing_but_an_error(proxy_maker):
    proxy = proxy_maker()
    for seq in (0, 1):
        client = AdminClient(proxy)
        client.send(b"\x03SHOW CONFIG", seq)
        reply = client.take()
        assert reply[4] == 0xFF and b"adminpw" not in reply and b"app-secret" not in reply
        assert client.closed


@virtual_time
async def test_malformed_handshake_responses_close_the_connection(proxy_maker):
    proxy = proxy_maker()
    for payload in (b"", b"\x00", b"\xff" * 40, int4(CAPS) + b"\0" * 5):
        client = AdminClient(proxy)
        client.send(payload, 1)
        assert client.take()[4:5] == b"\xff"
        assert client.closed


@virtual_time
async def test_oversized_packet_before_login_gets_1153_at_its_header(proxy_maker):
    client = AdminClient(proxy_maker())
    client.transport.feed(frame_header(MAX_FRAME, 1) + bytes(64 * 1024))  # 60 MiB announced
    err = client.take()
    assert err[3] == 2 and parse_err(err[4:]).errno == 1153
    assert client.closed and client.conn.decoder.buffered == 0


@virtual_time
async def test_a_login_with_64_kib_of_connect_attributes(proxy_maker):
    client = AdminClient(proxy_maker())
    token = auth.client_scramble_native(ADMIN_PASSWORD.encode(), client.greeting.scramble)
    attrs = b"".join(lenenc_bytes(b"k%02d" % i) + lenenc_bytes(b"v" * 1017) for i in range(64))
    payload = (int4(CAPS | CLIENT.CONNECT_ATTRS) + int4(1 << 24) + int1(45) + b"\0" * 23 + b"admin\0"
               + lenenc_bytes(token) + auth.NATIVE + b"\0" + lenenc_bytes(attrs))
    assert len(payload) > admin.MAX_PACKET
    client.send(payload, 1)
    assert client.take()[4] == 0x00


@virtual_time
async def test_login_must_finish_in_time(proxy_maker):
    client = AdminClient(proxy_maker())
    await advance(admin.HANDSHAKE_TIMEOUT - 0.5)
    assert not client.closed
    await advance(1)
    assert client.closed
    late = await logged_in(proxy_maker())
    await advance(admin.HANDSHAKE_TIMEOUT * 10)
    assert not late.closed  # the timeout is for the login only


@virtual_time
async def test_operators_logged_in_are_capped(proxy_maker):
    proxy = proxy_maker()
    listener = admin.Listener()
    operators = [await logged_in(proxy, listener=listener) for _ in range(admin.MAX_CONNECTIONS)]
    extra = AdminClient(proxy, listener)
    assert extra.greeting is None and extra.closed
    assert parse_err(extra.transport.data[4:]).errno == 1040
    operators[0].transport.peer_close()
    await settle()
    assert (await logged_in(proxy, listener=listener)).greeting is not None


@virtual_time
async def test_idle_unauthenticated_connections_never_lock_the_operator_out(proxy_maker):
    proxy = proxy_maker()
    listener = admin.Listener()
    idle = []
    for _ in range(3 * admin.MAX_LOGINS):
        idle.append(AdminClient(proxy, listener))
        await advance(0.01)
    assert all(c.greeting is not None for c in idle)
    # Each newcomer beyond MAX_LOGINS closed the oldest one still logging in.
    assert [c.closed for c in idle] == [True] * (2 * admin.MAX_LOGINS) + [False] * admin.MAX_LOGINS
    operator = await logged_in(proxy, listener=listener)
    assert operator.rows("SHOW POOLS")
    assert sum(not c.closed for c in idle) == admin.MAX_LOGINS - 1


@virtual_time
async def test_a_login_finishing_beyond_the_operator_cap_gets_1040(proxy_maker):
    proxy = proxy_maker()
    listener = admin.Listener()
    for _ in range(admin.MAX_CONNECTIONS - 1):
        await logged_in(proxy, listener=listener)
    first, second = AdminClient(proxy, listener), AdminClient(proxy, listener)
    assert first.login()[0] == 0x00
    reply = second.login()
    assert parse_err(reply).errno == 1040 and second.closed


# -- commands -------------------------------------------------------------------------------


@virtual_time
async def test_show_pools(proxy_maker):
    proxy = proxy_maker()
    client = await logged_in(proxy)
    rows = client.rows("SHOW POOLS")
    assert [r["pool"] for r in rows] == ["app", "reporting"]
    app = rows[0]
    assert app == {"pool": "app", "max_size": 4, "configured_max_size": 4, "idle": 0, "in_use": 0,
                   "connecting": 0, "waiting": 0, "paused": 0, "checkouts": 0, "avg_wait_seconds": 0.0,
                   "last_error": "", "last_error_at": None, "last_error_age_seconds": None, "clients_active": 0,
                   "clients_idle": 0, "clients_waiting": 0, "oldest_wait_seconds": 0.0}
    pool = proxy.pools["reporting"]
    pool.stats.observe_wait(0.5)
    pool.stats.observe_wait(0.25)
    pool.stats.checkouts = 2
    pool.capacity.server_cap = 1
    rep = client.rows("SHOW POOLS")[1]
    assert (rep["max_size"], rep["configured_max_size"], rep["checkouts"]) == (1, 2, 2)
    assert rep["avg_wait_seconds"] == 0.375


@virtual_time
async def test_show_clients_and_servers_empty(proxy_maker):
    client = await logged_in(proxy_maker())
    result = client.query("SHOW CLIENTS")
    assert result.rows == ()
    assert [d[0] for d in result.description] == [c.name for c in admin.CLIENT_COLUMNS]
    assert client.query("SHOW SERVERS").rows == ()


@virtual_time
async def test_show_stats_rows(proxy_maker):
    proxy = proxy_maker()
    pool = proxy.pools["app"]
    pool.stats.connects = 3
    pool.stats.connect_errors[2003] += 2
    pool.stats.closed["idle_timeout"] += 1
    pool.stats.queries["query"] = pool.stats.queries.get("query", 0) + 5
    pool.stats.pins["user_variable"] += 1
    pool.stats.observe_wait(0.5)
    proxy.stats.accepted = 9
    proxy.stats.refused["auth_failed"] += 4
    proxy.stats.bytes_in = 1234
    client = await logged_in(proxy)
    stats = {(r["pool"], r["stat"]): r["value"] for r in client.rows("show stats")}
    assert stats[("app", "connects")] == 3 and stats[("app", "connect_errors")] == 2
    assert stats[("app", "connect_errors.2003")] == 2
    assert stats[("app", "closed.idle_timeout")] == 1 and stats[("app", "closed.max_lifetime")] == 0
    assert stats[("app", "queries.query")] == 5 and stats[("app", "pins.user_variable")] == 1
    assert stats[("app", "pins.transaction")] == 0
    assert stats[("app", "wait_count")] == 1 and stats[("app", "wait_sum_seconds")] == 0.5
    assert stats[("reporting", "connects")] == 0
    assert stats[(None, "accepted")] == 9 and stats[(None, "refused.auth_failed")] == 4
    assert stats[(None, "refused.max_clients")] == 0 and stats[(None, "bytes_in")] == 1234
    assert stats[(None, "bytes_out")] == 0 and stats[(None, "clients")] == 0
    assert (None, "client_closed.killed") in stats


@virtual_time
async def test_show_config_masks_secrets(proxy_maker, config_path):
    client = await logged_in(proxy_maker())
    result = client.query("SHOW CONFIG")
    config = {key: value for key, value, _default, _source, _changeable in result.rows}
    assert config["pool.max_size"] == "4" and config["admin.user"] == "admin"
    assert config["admin.password"] == "***" and config["admin.password_hash"] is None
    assert config["users[0].name"] == "app" and config["users[0].password"] == "***"
    assert config["users[1].backend_password"] == "***" and config["users[1].max_size"] == "2"
    assert config["proxy.shutdown_timeout"] == "7"
    assert b"adminpw" not in client.transport.data and b"secret" not in client.transport.data


@virtual_time
async def test_show_config_says_where_each_setting_came_from(proxy_maker, monkeypatch):
    monkeypatch.setenv("MYSQLPOOL_PROXY_SHUTDOWN_TIMEOUT", "9")  # the file says 7
    monkeypatch.setenv("MYSQLPOOL_POOL_MIN_IDLE", "1")  # the file says nothing
    client = await logged_in(proxy_maker())
    result = client.query("SHOW CONFIG")
    assert [d[0] for d in result.description] == ["key", "value", "default", "source", "changeable"]
    rows = {key: (value, source) for key, value, _default, source, _changeable in result.rows}
    assert rows["proxy.shutdown_timeout"] == ("9", "env") and rows["pool.min_idle"] == ("1", "env")
    assert rows["pool.max_size"] == ("4", "file") and rows["users[1].max_size"] == ("2", "file")
    assert rows["users[0].password"] == ("***", "file") and rows["admin.user"] == ("admin", "default")
    assert rows["pool.checkout_timeout"] == ("10", "default")


@virtual_time
async def test_show_version(proxy_maker):
    proxy = proxy_maker()
    client = await logged_in(proxy)
    assert client.rows("SHOW VERSION") == [{"version": f"mysqlpool-proxy {admin.__version__}",
                                            "server_version": None}]


@virtual_time
async def test_help_lists_every_command(proxy_maker):
    client = await logged_in(proxy_maker())
    rows = client.rows("HELP")
    assert [r["command"] for r in rows] == [c.usage for c in COMMANDS.values()]
    listed = {r["command"] for r in rows}
    assert {"SHOW POOLS", "KILL CLIENT <id>", "SHUTDOWN [WAIT]", "PAUSE [pool]", "SHOW HELP"} <= listed
    assert all(r["description"] for r in rows)
    assert client.rows("SHOW HELP") == rows
    # `help show` in the mariadb client is sent as HELP 'show': the commands starting with it
    assert [r["command"] for r in client.rows("help 'show'")] == [c for c in COMMANDS if c.startswith("SHOW")]
    assert [r["command"] for r in client.rows("HELP kill client")] == ["KILL CLIENT <id>"]
    assert client.rows("HELP 'nothing like it'") == rows


@virtual_time
async def test_commands_ignore_case_whitespace_and_semicolons(proxy_maker):
    client = await logged_in(proxy_maker())
    for sql in ("show pools", "  Show\tPools ;", "SHOW POOLS;;  \n", "sHoW pOoLs ; ;"):
        assert len(client.query(sql).rows) == 2, sql


@virtual_time
async def test_unknown_command_lists_the_commands(proxy_maker):
    client = await logged_in(proxy_maker())
    err = error_of(client, "SHOW TABLESPACES")
    assert (err.errno, err.sqlstate) == (1064, "42000")
    assert err.message.startswith("Unknown admin command 'SHOW TABLESPACES'. Commands: SHOW POOLS, ")
    for command in COMMANDS.values():
        assert command.usage in err.message
    long_err = error_of(client, "SELECT " + "x" * 500)
    assert len(long_err.message) < 400
    assert client.query("SHOW POOLS").rows  # still usable


@virtual_time
async def test_wrong_arguments_give_usage(proxy_maker):
    client = await logged_in(proxy_maker())
    for sql, usage in (("SHOW POOLS now", "SHOW POOLS"), ("KILL CLIENT", "KILL CLIENT <id>"),
                       ("KILL CLIENT x1", "KILL CLIENT <id>"), ("KILL CLIENT 1 2", "KILL CLIENT <id>"),
                       ("SHUTDOWN NOW", "SHUTDOWN [WAIT]"), ("PAUSE a b", "PAUSE [pool]"), ("RELOAD x", "RELOAD")):
        err = error_of(client, sql)
        assert (err.errno, err.message) == (1064, f"Usage: {usage}"), sql


@virtual_time
async def test_empty_query(proxy_maker):
    client = await logged_in(proxy_maker())
    for sql in ("", "  ", ";"):
        assert error_of(client, sql).errno == 1065


async def answer(client: AdminClient, sql: str) -> pymysql.connections.MySQLResult:
    """The reply to a command that answers later (PAUSE, WAIT_CLOSE, KILL CLIENT)."""
    client.send(b"\x03" + sql.encode())
    await settle()
    return client.parse(client.take())


@virtual_time
async def test_pause_and_resume(proxy_maker):
    proxy = proxy_maker()
    client = await logged_in(proxy)
    result = await answer(client, "PAUSE")
    assert info(result) == b"paused: app, reporting; no server connection left"
    assert all(p.paused for p in proxy.pools.values())
    assert [r["paused"] for r in client.rows("SHOW POOLS")] == [1, 1]
    assert info(client.query("RESUME reporting")) == b"resumed: reporting"
    assert proxy.pools["app"].paused and not proxy.pools["reporting"].paused
    client.query("resume `app`")
    assert not proxy.pools["app"].paused
    await answer(client, "PAUSE 'app'")
    assert proxy.pools["app"].paused and not proxy.pools["reporting"].paused


@virtual_time
async def test_pause_unknown_pool_names_the_pools(proxy_maker):
    proxy = proxy_maker()
    client = await logged_in(proxy)
    for sql in ("PAUSE nosuch", "RESUME nosuch"):
        err = error_of(client, sql)
        assert err.errno == 1105 and err.message == "no pool named 'nosuch'; pools: app, reporting"
    assert not any(p.paused for p in proxy.pools.values())


@virtual_time
async def test_kill_unknown_client(proxy_maker):
    client = await logged_in(proxy_maker())
    err = error_of(client, "KILL CLIENT 42")
    assert (err.errno, err.sqlstate, err.message) == (1094, "HY000", "Unknown thread id: 42")


@virtual_time
async def test_reload(proxy_maker, config_path):
    proxy = proxy_maker()
    client = await logged_in(proxy)
    config_path.write_text(CONFIG.replace("max_size = 4", "max_size = 6").replace('"127.0.0.1:0"\nshutdown',
                                                                                  '"127.0.0.1:1"\nshutdown'))
    rows = client.rows("RELOAD")
    assert rows == [
        {"key": "proxy.listen", "before": "127.0.0.1:0", "after": "127.0.0.1:1",
         "status": "restart needed: the running value stays until then"},
        {"key": "pool.max_size", "before": "4", "after": "6", "status": "applied"},
    ]
    assert client.rows("SHOW POOLS")[0]["max_size"] == 6
    config = {r["key"]: r for r in client.rows("SHOW CONFIG")}
    assert config["proxy.listen"]["value"] == "127.0.0.1:0" and config["proxy.listen"]["changeable"] == 0
    config_path.write_text(CONFIG.replace("max_size = 4", "max_size = 8"))
    assert [r["key"] for r in client.rows("reload")] == ["pool.max_size"]
    assert client.rows("SHOW POOLS")[0]["max_size"] == 8
    assert client.rows("RELOAD") == []  # nothing changed


@virtual_time
async def test_reload_of_a_broken_file_changes_nothing(proxy_maker, config_path):
    proxy = proxy_maker()
    client = await logged_in(proxy)
    before = proxy.config
    config_path.write_text(CONFIG.replace("max_size = 4", "max_size = -1"))
    err = error_of(client, "RELOAD")
    assert err.errno == 1105
    assert err.message.startswith("RELOAD failed, config unchanged: config error in ")
    assert "pool.max_size" in err.message or "max_size" in err.message
    config_path.write_text("this is [not toml")
    assert error_of(client, "RELOAD").message.startswith("RELOAD failed")
    assert proxy.config is before and client.rows("SHOW POOLS")[0]["max_size"] == 4


@virtual_time
async def test_shutdown_answers_then_asks_the_proxy_to_stop(proxy_maker):
    proxy = proxy_maker()
    client = await logged_in(proxy)
    result = client.query("SHUTDOWN WAIT")
    assert info(result) == b"shutting down once clients finish their transactions"
    assert proxy.shutdown_requested.is_set() and proxy.shutdown_timeout == 7
    proxy = proxy_maker()
    client = await logged_in(proxy)
    client.query("shutdown")
    assert proxy.shutdown_requested.is_set() and proxy.shutdown_timeout == 0.0


# -- SET -------------------------------------------------------------------------------------------


def config_rows(client: AdminClient) -> dict[str, dict]:
    return {r["key"]: r for r in client.rows("SHOW CONFIG")}


@virtual_time
async def test_set_changes_a_setting_as_a_reload_would_and_show_config_says_admin(proxy_maker):
    proxy = proxy_maker()
    client = await logged_in(proxy)
    assert info(client.query("SET pool.max_size = 6")) == b"pool.max_size = 6 (was 4)"
    assert proxy.pools["app"].configured_max_size == 6 and proxy.pools["reporting"].configured_max_size == 2
    assert client.rows("SHOW POOLS")[0]["max_size"] == 6
    row = config_rows(client)["pool.max_size"]
    assert row == {"key": "pool.max_size", "value": "6", "default": "10", "source": "admin", "changeable": 1}
    assert proxy.config.origin("pool.max_size").replaced == "4"
    client.query("set users[1].max_size=1")
    assert proxy.pools["reporting"].configured_max_size == 1
    assert config_rows(client)["users[1].max_size"]["source"] == "admin"
    client.query("SET GLOBAL pool.checkout_timeout = '2.5';")
    assert proxy.config.pool.checkout_timeout == 2.5
    client.query("SET pool.idle_timeout = 30")
    assert info(client.query("SET pool.idle_timeout = none")) == b"pool.idle_timeout = None (was 30.0)"
    assert proxy.config.pool.idle_timeout is None


@virtual_time
async def test_set_refuses_what_a_reload_would_refuse_and_changes_nothing(proxy_maker):
    proxy = proxy_maker()
    client = await logged_in(proxy)
    before = proxy.config
    err = error_of(client, "SET pool.max_size = 0")
    assert (err.errno, err.sqlstate) == (1231, "42000")
    assert err.message == "SET refused, nothing changed: pool.max_size must be an integer >= 1, got '0' " \
                          "(from the admin console (admin@10.1.2.3))"
    err = error_of(client, "SET pool.min_idle = 5")  # the cross-key check of a reload
    assert "pool.min_idle must be <= pool.max_size (4), got 5" in err.message
    assert "must be" in error_of(client, "SET pool.max_size = lots").message
    assert proxy.config is before and proxy.pools["app"].configured_max_size == 4


@virtual_time
async def test_set_of_a_restart_only_or_unknown_setting_lists_what_can_be_set(proxy_maker):
    proxy = proxy_maker()
    client = await logged_in(proxy)
    before = proxy.config
    err = error_of(client, "SET proxy.listen = '127.0.0.1:7000'")
    assert (err.errno, err.message) == (1238, (
        f"proxy.listen needs a restart (change it in {before.source}). SET can change proxy.{{max_client_connections, "
        "client_idle_timeout, shutdown_timeout, max_packet_size, require_tls}; and settings of backend, pool, "
        "users[N], admin, log (SHOW CONFIG: changeable = 1)"))
    err = error_of(client, "SET pool.max_sizes = 5")
    assert err.errno == 1193 and err.message.startswith("Unknown setting 'pool.max_sizes'. SET can change "
                                                        "pool.{max_size, min_idle, max_lifetime, ")
    assert error_of(client, "SET log.level = debug").errno == 1238
    err = error_of(client, "SET users[7].max_size = 5")
    assert err.errno == 1193 and "users[N].{name, password, password_hash, backend_user, " in err.message
    err = error_of(client, "SET max_size = 5")
    assert (err.errno, err.message) == (1193, "Name the section: pool.max_size or users[N].max_size. SET can change "
                                              "settings of proxy, backend, pool, users[N], admin, log (SHOW CONFIG: "
                                              "changeable = 1)")
    err = error_of(client, "SET nosuch.thing = 1")
    assert err.errno == 1193 and "settings of proxy, backend, pool, users[N], admin, log" in err.message
    long_key = "pool.mode"  # the longest list, in the section with the most settings
    assert len(error_of(client, f"SET {long_key} = session").message.encode()) < 512  # what clients show of it
    assert proxy.config is before
    settable = set(admin.operations.settable_keys(before))
    shown = {r["key"].replace("users[0]", "users[N]").replace("users[1]", "users[N]")
             for r in client.rows("SHOW CONFIG") if r["changeable"]}
    assert settable == shown


@virtual_time
async def test_set_of_a_file_path_reads_it_from_the_config_files_folder_and_checks_it(proxy_maker, config_path):
    proxy = proxy_maker()
    client = await logged_in(proxy)
    err = error_of(client, "SET backend.ssl_ca = 'ca.pem'")
    assert err.errno == 1231 and f"no such file: {config_path.parent / 'ca.pem'}" in err.message
    (config_path.parent / "ca.pem").write_text("not a certificate")
    client.query("SET backend.ssl_ca = 'ca.pem'")  # with ssl_mode disabled, only a warning
    assert proxy.config.backend.ssl_ca == str(config_path.parent / "ca.pem")
    err = error_of(client, "SET backend.ssl_mode = verify_ca")  # now the file is loaded, as a reload would
    assert err.errno == 1231 and "backend.ssl_ca" in err.message and "not a PEM CA certificate" in err.message
    assert proxy.config.backend.ssl_mode == "disabled"


@virtual_time
async def test_driver_chatter_set_is_answered_ok_and_changes_nothing(proxy_maker):
    proxy = proxy_maker()
    client = await logged_in(proxy)
    before = proxy.config
    for sql in ("SET NAMES utf8mb4", "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_general_ci'", "SET autocommit=1",
                "set autocommit = 0", "SET character_set_results = NULL", "SET @@session.autocommit = 1",
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", "SET @x := 1",
                "SET sql_mode = 'STRICT_TRANS_TABLES'", "SET time_zone = '+00:00'", "SET SESSION sql_mode = ''",
                "SET GLOBAL max_allowed_packet = 1024"):
        result = client.query(sql)
        assert result.field_count == 0 and result.message in (b"", b"\x00"), sql
    assert proxy.config is before


@virtual_time
async def test_set_of_a_secret_is_never_echoed_nor_logged(proxy_maker, caplog):
    proxy = proxy_maker()
    client = await logged_in(proxy)
    caplog.set_level("DEBUG")
    assert info(client.query("SET users[0].password = 'n3w  pw'")) == b"users[0].password = *** (was ***)"
    assert proxy.config.users[0].password == "n3w  pw"  # as typed, inside its quotes
    assert config_rows(client)["users[0].password"]["value"] == "***"
    assert b"n3w" not in client.transport.data and "n3w" not in caplog.text
    assert "the admin console (admin@10.1.2.3) set users[0].password: *** -> ***" in caplog.text


@virtual_time
async def test_reload_after_set_takes_the_file_again_and_says_so(proxy_maker, config_path):
    proxy = proxy_maker()
    client = await logged_in(proxy)
    client.query("SET pool.max_size = 6")
    assert client.rows("RELOAD") == [{"key": "pool.max_size", "before": "6", "after": "4",
                                      "status": "applied, replacing the value SET on the console"}]
    assert proxy.pools["app"].configured_max_size == 4
    assert config_rows(client)["pool.max_size"]["source"] == "file"


# -- PAUSE, WAIT_CLOSE, SHOW ACTIVITY on a proxy with clients ------------------------------------


async def fake_proxy_with_console(**sections) -> tuple[Proxy, AdminClient]:
    proxy = await start_proxy(fake_opener(), **sections)
    proxy.config = dataclasses.replace(proxy.config, admin=AdminConfig(password=ADMIN_PASSWORD))
    return proxy, await logged_in(proxy)


@virtual_time
async def test_pause_answers_only_once_the_transaction_ends_and_its_backend_is_closed():
    proxy, console = await fake_proxy_with_console(proxy={"shutdown_timeout": 60})
    app = proxy.pools["app"]
    in_trx = await FakeClient(proxy).connect()
    await in_trx.query("BEGIN")
    await in_trx.query("SELECT 1")
    console.send(b"\x03PAUSE")
    await advance(5)
    assert console.take() == b"" and app.paused  # paused, but a backend is still in use
    assert len(app.busy) == 1 and not app.idle  # the idle ones closed at once
    (await in_trx.query("COMMIT")).expect_ok()
    await advance(1)
    assert info(console.parse(console.take())) == b"paused: app; no server connection left"
    assert app.size == 0


@virtual_time
async def test_pause_times_out_naming_what_is_still_busy_and_stays_paused():
    proxy, console = await fake_proxy_with_console(proxy={"shutdown_timeout": 3})
    pinned = await FakeClient(proxy).connect()
    await pinned.query("CREATE TEMPORARY TABLE t (i INT)")
    in_trx = await FakeClient(proxy).connect()
    await in_trx.query("BEGIN")
    await advance(2)
    await in_trx.query("SELECT 1")
    console.send(b"\x03PAUSE app")
    await advance(4)
    err = parse_err(console.take()[4:])
    message = err.message.decode()
    assert err.errno == 1105 and message.startswith(
        "PAUSE: still busy after 3s (proxy.shutdown_timeout), the pools stay paused; run PAUSE again to wait "
        "more, or RESUME: pool app: 2 in use (held by ")
    assert f"client #{pinned.conn.id} (temporary_table)" in message
    assert f"client #{in_trx.conn.id} (transaction 5.0s)" in message  # BEGIN came 2s before PAUSE
    assert proxy.pools["app"].paused
    assert console.rows("SHOW POOLS")[0]["paused"] == 1  # the console goes on


@virtual_time
async def test_a_resume_meanwhile_ends_the_pause_wait_with_an_error_saying_so():
    proxy, console = await fake_proxy_with_console(proxy={"shutdown_timeout": 60})
    in_trx = await FakeClient(proxy).connect()
    await in_trx.query("BEGIN")
    console.send(b"\x03PAUSE")
    await advance(1)
    other = await logged_in(proxy)
    assert info(other.query("RESUME")) == b"resumed: app"
    await advance(1)
    err = parse_err(console.take()[4:])
    assert (err.errno, err.message.decode()) == (
        1105, "PAUSE: resumed (RESUME) before every server connection was released: app")
    assert not proxy.pools["app"].paused


@virtual_time
async def test_wait_close_waits_for_the_backends_a_reload_retired():
    from mysqlpool_proxy.ops import operations
    proxy, console = await fake_proxy_with_console(proxy={"shutdown_timeout": 60})
    app = proxy.pools["app"]
    in_trx = await FakeClient(proxy).connect()
    await in_trx.query("BEGIN")
    other = await FakeClient(proxy).connect()
    await other.query("SELECT 1")  # an idle backend too
    none = b"closed: 0 server connections opened before the last RELOAD or SET changed how they connect"
    assert info(await answer(console, "WAIT_CLOSE")) == none
    config = proxy.config
    operations.reload(proxy, dataclasses.replace(config, backend=dataclasses.replace(config.backend,
                                                                                     connect_timeout=3.0)))
    held = in_trx.conn.backend
    console.send(b"\x03WAIT_CLOSE app")
    await advance(5)
    assert console.take() == b"" and held in app.busy
    await in_trx.query("COMMIT")
    await advance(3)
    assert info(console.parse(console.take())) == (b"closed: 1 server connection opened before the last RELOAD or "
                                                   b"SET changed how they connect")
    assert held.closed and held not in app.busy and held not in app.closing


@virtual_time
async def test_show_activity_and_pool_client_counts():
    proxy, console = await fake_proxy_with_console(pool={"max_size": 1})
    in_trx = await FakeClient(proxy).connect()
    await in_trx.query("BEGIN")
    await advance(4)
    await in_trx.query("SELECT 'a\tb\\c'")
    waiting = await FakeClient(proxy).connect()
    waiting.send_query("SELECT " + "x" * 200)
    idle = await FakeClient(proxy).connect()
    await advance(1.5)
    rows = {r["id"]: r for r in console.rows("SHOW ACTIVITY")}
    assert list(rows) == sorted([in_trx.conn.id, waiting.conn.id, idle.conn.id])
    assert rows[in_trx.conn.id] == {
        "id": in_trx.conn.id, "user": "app", "pool": "app", "state": "ready", "command": "query",
        "query": "SELECT 'a\\tb\\\\c'", "command_seconds": None, "transaction_seconds": 5.5}
    shown = rows[waiting.conn.id]
    assert shown["state"] == "checkout" and shown["command_seconds"] == 1.5 and shown["transaction_seconds"] is None
    assert shown["query"] == "SELECT " + "x" * 93 + "..."
    assert rows[idle.conn.id]["command"] is None and rows[idle.conn.id]["query"] is None
    (pool,) = console.rows("SHOW POOLS")
    assert (pool["clients_active"], pool["clients_idle"], pool["clients_waiting"]) == (0, 2, 1)
    assert pool["oldest_wait_seconds"] == 1.5
    in_trx.send_query("SELECT SLEEP(10)")
    await advance(2)
    row = {r["id"]: r for r in console.rows("SHOW ACTIVITY")}[in_trx.conn.id]
    assert (row["state"], row["query"], row["command_seconds"]) == ("active", "SELECT SLEEP(10)", 2.0)
    assert row["transaction_seconds"] == 7.5
    assert console.rows("SHOW POOLS")[0]["clients_active"] == 1


@virtual_time
async def test_last_error_has_its_time_and_clears_when_a_connect_succeeds():
    opener = fake_opener()
    proxy = await start_proxy(opener)
    proxy.config = dataclasses.replace(proxy.config, admin=AdminConfig(password=ADMIN_PASSWORD))
    console = await logged_in(proxy)
    app = proxy.pools["app"]
    app.close_idle(admin.BackendCloseReason.IDLE_TIMEOUT)
    await settle()
    opener.go_down()
    client = await FakeClient(proxy).connect()
    client.send_query("SELECT 1")
    await advance(0.05)
    (pool,) = console.rows("SHOW POOLS")
    assert pool["last_error"].startswith("2003") and 0 <= pool["last_error_age_seconds"] <= 0.05
    assert pool["last_error_age_seconds"] == round(proxy.loop.time() - app.last_error_at, 3)
    at = datetime.datetime.strptime(pool["last_error_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    age = datetime.datetime.now(datetime.UTC) - at
    assert abs(age.total_seconds() - pool["last_error_age_seconds"]) < 2
    opener.come_up()
    (await client.response()).expect_ok()
    (pool,) = console.rows("SHOW POOLS")
    assert (pool["last_error"], pool["last_error_at"], pool["last_error_age_seconds"]) == ("", None, None)
    await proxy.stop(0)


# -- what clients send on their own --------------------------------------------------------------


@virtual_time
async def test_client_startup_queries(proxy_maker):
    client = await logged_in(proxy_maker())
    result = client.query("select @@version_comment limit 1")
    assert result.description[0][0] == "@@version_comment"
    assert result.rows == ((admin.VERSION_COMMENT,),)
    assert client.query("SELECT DATABASE()").rows == ((None,),)
    result = client.query("select DATABASE(), USER() limit 1")
    assert result.rows == ((None, "admin@10.1.2.3"),)
    assert client.query("SELECT CONNECTION_ID(), 1").rows == ((7, 1),)
    for sql in ("SET NAMES utf8mb4", "set autocommit=0", "SET AUTOCOMMIT = 1", "COMMIT", "rollback"):
        assert client.query(sql).field_count == 0, sql
    assert client.query("SHOW DATABASES").rows == (("mysqlpool",),)
    assert client.query("show tables").rows == ()
    assert client.query("SHOW WARNINGS").rows == ()
    client.query("USE mysqlpool")
    assert client.query("SELECT DATABASE()").rows == (("mysqlpool",),)
    assert error_of(client, "SELECT * FROM pools").errno == 1064
    assert error_of(client, "SELECT 2").errno == 1064


@virtual_time
async def test_database_from_the_login(proxy_maker):
    client = AdminClient(proxy_maker())
    assert client.login(database="mysqlpool")[0] == 0x00
    assert client.query("SELECT DATABASE()").rows == (("mysqlpool",),)


@virtual_time
async def test_ping_init_db_field_list_quit(proxy_maker):
    client = await logged_in(proxy_maker())
    assert client.reply(b"\x0e").field_count == 0  # COM_PING: OK
    client.reply(b"\x02other")  # COM_INIT_DB
    assert client.query("SELECT DATABASE()").rows == (("other",),)
    client.send(b"\x04pools\0")  # COM_FIELD_LIST: no fields, a lone EOF
    assert client.take() == encode_packet(b"\xfe\x00\x00\x02\x00", 1)
    client.send(b"\x01")  # COM_QUIT
    assert client.closed and client.take() == b""


@virtual_time
async def test_other_commands_and_empty_packets_get_1047(proxy_maker):
    client = await logged_in(proxy_maker())
    for payload in (b"", b"\x09", b"\x11admin\0", b"\x16SELECT 1", b"\x1f", b"\xff"):
        with pytest.raises(AdminError) as info:
            client.reply(payload)
        assert info.value.errno == 1047 and info.value.sqlstate == "08S01"
    assert client.query("SHOW POOLS").rows


@virtual_time
async def test_oversized_command_is_refused_and_the_connection_goes_on(proxy_maker):
    client = await logged_in(proxy_maker())
    client.send(b"\x03" + b"x" * admin.MAX_PACKET)
    with pytest.raises(AdminError) as info:
        client.parse(client.take())
    assert info.value.errno == 1153
    assert client.query("SHOW VERSION").rows

@virtual_time
async def test_bytes_in_any_chunks_and_pipelined(proxy_maker):
    proxy = proxy_maker()
    commands = [b"SHOW VERSION", b"HELP", b"SHOW DATABASES", b"SELECT 1"]
    one_by_one = await logged_in(proxy)
    expected = []
    for sql in commands:
        one_by_one.send(b"\x03" + sql)
        expected.append(one_by_one.take())
    client = await logged_in(proxy)
    data = b"".join(encode_packet(b"\x03" + sql, 0) for sql in commands)
    for i in range(len(data)):
        client.transport.feed(data[i:i + 1])
    assert client.take() == b"".join(expected)
    pipelined = await logged_in(proxy)
    pipelined.transport.feed(data)
    assert pipelined.take() == b"".join(expected)


@virtual_time
async def test_a_failing_handler_costs_an_error_not_the_connection(proxy_maker, monkeypatch):
    client = await logged_in(proxy_maker())

    def broken(conn, args):
        raise RuntimeError("bug")

    monkeypatch.setitem(COMMANDS, "SHOW POOLS", dataclasses.replace(COMMANDS["SHOW POOLS"], handler=broken))
    err = error_of(client, "SHOW POOLS")
    assert err.errno == 1105 and "internal error" in err.message
    assert client.query("SHOW VERSION").rows


@virtual_time
async def test_no_reading_while_the_answer_cannot_be_written(proxy_maker):
    client = await logged_in(proxy_maker())
    client.conn.pause_writing()
    assert client.transport.reading_paused
    client.send(b"\x03SHOW VERSION")
    assert client.take() == b""
    client.conn.resume_writing()
    assert not client.transport.reading_paused
    await settle()  # the transport delivers what it held
    assert client.parse(client.take()).rows


# -- on a proxy with clients and backends (fake servers) -----------------------------------------


@virtual_time
async def test_clients_and_servers_with_a_transaction_and_a_pin():
    proxy = await start_proxy(fake_opener(), pool={"max_size": 3})
    proxy.config = dataclasses.replace(proxy.config, admin=AdminConfig(password=ADMIN_PASSWORD))
    in_trx = await FakeClient(proxy, database="appdb").connect()
    await in_trx.query("BEGIN")
    await in_trx.query("SELECT 1")
    pinned = await FakeClient(proxy, peer=("10.0.0.9", 40002)).connect()
    await pinned.query("CREATE TEMPORARY TABLE t (i INT)")
    idle = await FakeClient(proxy).connect()
    await idle.query("SELECT 1")
    client = await logged_in(proxy)
    clients = {r["id"]: r for r in client.rows("SHOW CLIENTS")}
    assert set(clients) == {in_trx.conn.id, pinned.conn.id, idle.conn.id}
    row = clients[in_trx.conn.id]
    assert (row["user"], row["pool"], row["address"], row["state"]) == ("app", "app", "10.0.0.7", "ready")
    assert row["pinned"] == "transaction" and row["backend_id"] == in_trx.conn.backend.id
    assert row["schema"] == "appdb" and row["queries"] >= 2 and row["connected_seconds"] >= 0
    assert clients[pinned.conn.id]["pinned"] == "temporary_table"
    assert clients[idle.conn.id]["pinned"] == "" and clients[idle.conn.id]["backend_id"] is None
    servers = {r["id"]: r for r in client.rows("SHOW SERVERS")}
    held = servers[in_trx.conn.backend.id]
    assert held["client_id"] == in_trx.conn.id and held["state"] == "reserved" and held["idle_seconds"] is None
    assert servers[pinned.conn.backend.id]["client_id"] == pinned.conn.id
    free = [r for r in servers.values() if r["client_id"] is None]
    assert free and all(r["state"] == "idle" and r["idle_seconds"] >= 0 for r in free)
    assert all(r["pool"] == "app" and r["thread_id"] >= 100 and 0 < r["expires_in_seconds"] <= 3600
               for r in servers.values())
    stats = {(r["pool"], r["stat"]): r["value"] for r in client.rows("SHOW STATS")}
    assert stats[("app", "pins.temporary_table")] == 1 and stats[(None, "clients")] == 3
    pools = client.rows("SHOW POOLS")
    assert pools[0]["in_use"] == 2 and pools[0]["idle"] == len(free)
    await proxy.stop(0)


@virtual_time
async def test_session_mode_shows_as_a_pin():
    proxy = await start_proxy(fake_opener(), pool={"mode": "session"})
    proxy.config = dataclasses.replace(proxy.config, admin=AdminConfig(password=ADMIN_PASSWORD))
    holder = await FakeClient(proxy).connect()
    await holder.query("SELECT 1")
    fresh = await FakeClient(proxy).connect()
    client = await logged_in(proxy)
    pinned = {r["id"]: r["pinned"] for r in client.rows("SHOW CLIENTS")}
    assert pinned == {holder.conn.id: "session_mode", fresh.conn.id: ""}
    await proxy.stop(0)


@virtual_time
async def test_kill_client_closes_it():
    proxy = await start_proxy(fake_opener())
    proxy.config = dataclasses.replace(proxy.config, admin=AdminConfig(password=ADMIN_PASSWORD))
    victim = await FakeClient(proxy).connect()
    await victim.query("BEGIN")
    client = await logged_in(proxy)
    client.send(b"\x03KILL CLIENT " + str(victim.conn.id).encode())
    await settle()
    assert client.parse(client.take()).field_count == 0
    assert victim.closed and victim.conn.state is ClientState.CLOSED
    assert victim.conn.id not in proxy.clients
    assert error_of(client, f"KILL CLIENT {victim.conn.id}").errno == 1094
    await proxy.stop(0)


# -- the listener ---------------------------------------------------------------------------------


@virtual_time
async def test_start_and_stop_admin_server(proxy_maker):
    proxy = proxy_maker()
    server = await start_admin_server(proxy, "127.0.0.1:0")
    conn = server.protocol_factory()  # VirtualClockLoop's stand-in listener
    transport = FakeTransport(proxy.loop, conn, name="admin")
    conn.connection_made(transport)
    await stop_admin_server(server)
    assert not server.is_serving() and transport.is_closing()

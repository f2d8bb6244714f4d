# A client connection before it has logged in (client/phase.py): what it
# may send (one login packet of at most MAX_LOGIN_PACKET; a larger one gets
# the server's 1153 at its header, nothing of it is kept, and the connection
# closes), bytes sent before the greeting, COM_CHANGE_USER's auth exchange
# bounded the same way (and working, with a switch or a command right
# behind it), and [proxy] require_tls (3159 over TCP, Unix-socket
# clients let in). Real Proxy, FakeClient, fake backends, virtual clock; TLS
# itself needs real sockets: tests/integration/test_client_handshake.py.
from __future__ import annotations

import asyncio

import pymysql
import pytest

from mysqlpool_proxy.constants import CLIENT
from mysqlpool_proxy.protocol import auth
from mysqlpool_proxy.protocol.framing import MAX_FRAME, encode_packet, frame_header
from mysqlpool_proxy.protocol.handshake import INSECURE_TRANSPORT_MESSAGE, MAX_LOGIN_PACKET
from mysqlpool_proxy.protocol.packets import ErrPacket, parse_err
from mysqlpool_proxy.protocol.wire import int1, int4
from tests.fakes import FakeClient, FakeOpener, fake_opener, proxy_config, settle, start_proxy, virtual_time
from tests.protocol.helpers import change_user

TOO_BIG = ("Got a packet bigger than 'max_allowed_packet' bytes (a login packet may have at most "
           f"{MAX_LOGIN_PACKET} bytes)")


async def greeted(proxy, **kwargs) -> FakeClient:
    client = FakeClient(proxy, **kwargs)
    client.conn.connection_made(client.transport)
    greeting = await client.packet()
    assert greeting.payload[0] == 0x0A
    return client


async def assert_refused_as_too_big(client: FakeClient, seq: int) -> None:
    err = await client.packet()
    assert err.seq == seq and parse_err(err.payload) == ErrPacket(1153, "08S01", TOO_BIG.encode())
    await settle()
    assert client.closed and client.conn.state.value == "closed"
    assert client.conn.decoder.buffered == 0


@virtual_time
async def test_a_60_mib_login_packet_is_refused_at_its_header():
    proxy = await start_proxy()
    client = await greeted(proxy)
    client.transport.feed(frame_header(MAX_FRAME, 1) + bytes(256 * 1024))  # 60 MiB announced, the start of it
    await assert_refused_as_too_big(client, seq=2)
    assert proxy.stats.client_closed["protocol_error"] == 1
    await proxy.stop(0)


@virtual_time
async def test_a_login_packet_just_over_the_limit_is_refused_before_its_payload():
    proxy = await start_proxy()
    client = await greeted(proxy)
    client.transport.feed(frame_header(MAX_LOGIN_PACKET + 1, 1))
    await assert_refused_as_too_big(client, seq=2)
    await proxy.stop(0)


@virtual_time
async def test_after_login_packets_up_to_max_packet_size():
    proxy = await start_proxy(proxy={"max_packet_size": 1 << 20})
    client = await FakeClient(proxy).connect()
    decoder = client.conn.decoder
    assert (decoder.max_size, decoder.strict) == (1 << 20, False)
    r = await client.query("SELECT '" + "x" * (MAX_LOGIN_PACKET * 2) + "'")
    assert r.results[0].kind == "rows"
    await proxy.stop(0)


@virtual_time
async def test_bytes_before_the_greeting_are_held_at_one_read_and_answered_after_it():
    opener = FakeOpener()
    opener.go_down()  # the server's identity is not known yet: no greeting
    from mysqlpool_proxy.proxy.proxy import Proxy
    proxy = Proxy(proxy_config(), asyncio.get_running_loop(), opener=opener)
    await proxy.start()
    client = FakeClient(proxy)
    client.conn.connection_made(client.transport)
    client.transport.feed(frame_header(MAX_FRAME, 1) + bytes(64 * 1024))
    for _ in range(16):
        client.transport.feed(bytes(64 * 1024))
    await settle()
    assert client.transport.reading_paused
    assert client.conn.decoder.buffered <= 4 + 64 * 1024  # one read, not the megabyte sent
    opener.come_up()
    await asyncio.wait_for(proxy.server_known.wait(), 30)
    greeting = await client.packet()
    assert greeting.payload[0] == 0x0A
    await assert_refused_as_too_big(client, seq=2)
    await proxy.stop(0)


def change_user_to_switch() -> bytes:
    """COM_CHANGE_USER with a plugin the proxy does not take: it answers with an auth switch."""
    return change_user(b"app", b"x" * 32, plugin=b"auth_gssapi_client")


@virtual_time
async def test_change_user_auth_data_is_bounded_like_a_login():
    proxy = await start_proxy()
    client = await FakeClient(proxy).connect()
    client.send(change_user_to_switch())
    switch = await client.packet()
    assert switch.seq == 1 and switch.payload[0] == 0xFE
    assert client.conn.decoder.strict
    client.transport.feed(frame_header(MAX_FRAME, 2) + bytes(64 * 1024))
    await assert_refused_as_too_big(client, seq=3)
    await proxy.stop(0)


@virtual_time
async def test_change_user_with_an_auth_switch_completes_then_takes_big_packets_again():
    # Once a hang: the client's auth data, read in state LOCAL, was never handled.
    proxy = await start_proxy()
    client = await FakeClient(proxy).connect()
    client.send(change_user_to_switch())
    switch = await client.packet()
    scramble = switch.payload[1:].partition(b"\0")[2].rstrip(b"\0")
    client.transport.feed(encode_packet(auth.client_scramble_native(b"pw", scramble), 2))
    ok = await client.packet()
    assert (ok.seq, ok.payload[0]) == (3, 0x00)
    await settle()
    assert not client.conn.decoder.strict
    assert client.conn.decoder.max_size == proxy.max_packet_size == 16777216  # the server's max_allowed_packet
    r = await client.query("SELECT '" + "x" * (MAX_LOGIN_PACKET * 2) + "'")
    assert r.results[0].kind == "rows"
    await proxy.stop(0)


@virtual_time
async def test_a_command_sent_right_behind_change_user_waits_for_its_ok():
    # Once a close with 1156: the command went to the change-user exchange as auth data.
    proxy = await start_proxy()
    client = await FakeClient(proxy).connect()
    token = auth.client_scramble_native(b"pw", client.greeting.scramble)
    client.transport.feed(encode_packet(change_user(b"app", token), 0) + encode_packet(b"\x03SELECT 1", 0))
    ok = await client.packet()
    assert (ok.seq, ok.payload[0]) == (1, 0x00)
    assert (await client.response()).value == "1"
    await proxy.stop(0)


# -- [proxy] require_tls -------------------------------------------------------------------------


@pytest.fixture
def tls_proxy(tls_files):
    async def make():
        return await start_proxy(proxy={"tls_cert": tls_files.cert, "tls_key": tls_files.key, "require_tls": True})
    return make


@virtual_time
async def test_require_tls_refuses_a_plain_tcp_login_with_3159(tls_proxy):
    proxy = await tls_proxy()
    for password in ("pw", "wrong"):  # the same answer whatever the password
        with pytest.raises(pymysql.err.OperationalError) as info:
            await FakeClient(proxy, password=password).connect()
        assert info.value.args == (3159, INSECURE_TRANSPORT_MESSAGE)
    await settle()
    assert proxy.stats.refused["auth_failed"] == 2
    assert not proxy.clients
    await proxy.stop(0)


@virtual_time
async def test_require_tls_lets_unix_socket_clients_in(tls_proxy):
    proxy = await tls_proxy()
    client = await FakeClient(proxy, peer="").connect()  # a Unix socket has no TCP peer address
    assert (await client.query("SELECT 1")).value == "1"
    await proxy.stop(0)


@virtual_time
async def test_without_require_tls_plain_logins_go_on(tls_files):
    proxy = await start_proxy(fake_opener(), proxy={"tls_cert": tls_files.cert, "tls_key": tls_files.key})
    client = await FakeClient(proxy).connect()
    assert (await client.query("SELECT 1")).value == "1"
    await proxy.stop(0)


@pytest.mark.parametrize(("charset", "name"), [(35, "ucs2"), (54, "utf16")])
@virtual_time
async def test_a_login_in_a_character_set_no_client_may_use_gets_the_servers_1231(charset, name):
    # The server's parser reads no statement in ucs2/utf16/utf16le/utf32: it refuses such a login.
    # Taking it would leave a session no backend can ever be brought to (SET NAMES fails there too).
    proxy = await start_proxy()
    client = FakeClient(proxy, charset=charset)
    with pytest.raises(pymysql.err.OperationalError) as info:
        await client.connect()
    assert info.value.args == (1231, f"Variable 'character_set_client' can't be set to the value of '{name}'")
    await settle()
    assert client.transport.closing and not proxy.clients
    await proxy.stop(0)


@virtual_time
async def test_change_user_to_a_character_set_no_client_may_use_gets_1231():
    proxy = await start_proxy()
    client = await FakeClient(proxy).connect()
    token = auth.client_scramble_native(b"pw", client.greeting.scramble)
    client.send(change_user(b"app", token, charset=35))
    err = parse_err((await client.packet()).payload)
    assert (err.errno, err.sqlstate) == (1231, "42000")
    await settle()
    assert client.transport.closing and not proxy.clients
    await proxy.stop(0)


@virtual_time
async def test_a_caching_sha2_fast_login_gets_its_fast_auth_success_and_ok_in_one_write():
    # Two packets, one write: the login's answer costs one system call, as with mysql_native_password.
    proxy = await start_proxy()
    client = await FakeClient(proxy).open()
    g = client.greeting
    caps = client.wanted & (g.capabilities | CLIENT.LONG_PASSWORD) | CLIENT.PLUGIN_AUTH
    token = auth.client_scramble_caching_sha2(b"pw", g.scramble)
    payload = (int4(caps) + int4(1 << 24) + int1(45) + b"\0" * 23 + b"app\0" + int1(len(token)) + token
               + auth.CACHING_SHA2 + b"\0")
    writes = len(client.transport.writes)
    client.transport.feed(encode_packet(payload, 1))
    more, ok = await client.packet(), await client.packet()
    assert (more.seq, more.payload) == (2, b"\x01\x03")  # AuthMoreData: fast_auth_success
    assert (ok.seq, ok.payload[0]) == (3, 0x00)
    assert client.transport.writes[writes:] == [encode_packet(b"\x01\x03", 2) + encode_packet(ok.payload, 3)]
    await proxy.stop(0)

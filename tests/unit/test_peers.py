# One proxy whatever [proxy] workers is (mysqlpool_proxy/ops/peers.py): a
# worker's answer is every worker's. The fan-out and merging on fake peers
# (`FakePeers`: canned replies, errors, silence) on the VirtualClockLoop, the
# merging of expositions on text, and the admin console of worker 0 of 2
# (tests/unit/test_admin.py's AdminClient) with its peers replaced by fakes:
# SHOW rows with the worker, actions on every worker, KILL CLIENT sent to the
# worker owning the id, and the peers' own login.
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from mysqlpool_proxy.config import load_config
from mysqlpool_proxy.constants import ER
from mysqlpool_proxy.errors import ProxyError
from mysqlpool_proxy.ops import peers as peer_module, snapshots
from mysqlpool_proxy.ops.peers import (
    PEER_TIMEOUT,
    PEER_USER,
    Peer,
    Peers,
    PeerUnreachable,
    everywhere,
    merge_expositions,
    peers_of,
    whole_exposition,
)
from mysqlpool_proxy.protocol.resultset import Ok, Rows, columns
from mysqlpool_proxy.proxy.proxy import Proxy
from mysqlpool_proxy.workers import WorkerSlot
from tests.fakes import settle, virtual_time
from tests.unit.test_admin import CONFIG, AdminClient, AdminError, info

HANG = object()


class FakePeers:
    """A PeerClient answering from `replies` (worker -> Rows, Ok, an exception, or HANG), recording calls."""

    def __init__(self, replies: dict, scrapes: dict | None = None):
        self.replies, self.scrapes = replies, scrapes or {}
        self.asked: list[tuple[int, str]] = []

    async def query(self, peer: Peer, sql: str, timeout: float):
        self.asked.append((peer.index, sql))
        reply = self.replies[peer.index]
        if reply is HANG:
            await asyncio.sleep(3600)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    async def scrape(self, peer: Peer, timeout: float) -> str:
        text = self.scrapes.get(peer.index, HANG)
        if text is HANG:
            raise PeerUnreachable(f"no answer within {timeout:g}s")
        return text


def peers(client, count: int = 3, index: int = 0) -> Peers:
    others = tuple(Peer(j, ("127.0.0.1", 6034 + j), ("127.0.0.1", 9106 + j)) for j in range(count) if j != index)
    return Peers(index, count, others, client)


POOLS = columns("pool waiting:i")


# -- fan-out and merging --------------------------------------------------------------------------


@virtual_time
async def test_rows_of_every_worker_come_back_as_one_result_with_the_worker_first():
    fake = FakePeers({1: Rows([], [("app", 2)]), 2: Rows([], [("app", 0), ("reporting", 1)])})
    merged = await everywhere(peers(fake), "SHOW POOLS", Rows(POOLS, [("app", 5)]), PEER_TIMEOUT)
    assert [c.name for c in merged.columns] == ["worker", "pool", "waiting"]
    assert merged.rows == [(0, "app", 5), (1, "app", 2), (2, "app", 0), (2, "reporting", 1)]
    assert sorted(fake.asked) == [(1, "SHOW POOLS"), (2, "SHOW POOLS")]


@virtual_time
async def test_an_action_is_ok_only_when_every_worker_did_it():
    done = []

    async def local_pause():
        return Ok("paused: app", then=lambda: done.append(1))

    reply = await everywhere(peers(FakePeers({1: Ok(), 2: Ok()})), "PAUSE", local_pause(), PEER_TIMEOUT)
    assert reply.info == "paused: app (on all 3 workers)"
    assert reply.then is not None  # (this worker's then, run by the console once the OK is written)
    assert done == []
    failing = FakePeers({1: Ok(), 2: ProxyError(ER.UNKNOWN_ERROR, "PAUSE: still busy after 7s")})
    with pytest.raises(ProxyError) as err:
        await everywhere(peers(failing), "PAUSE", Ok("paused: app"), PEER_TIMEOUT)
    assert err.value.message == "worker 2: PAUSE: still busy after 7s (done on worker 0, 1)"
    with pytest.raises(ProxyError):  # SHUTDOWN with a worker failing: this one still stops, as it said
        await everywhere(peers(failing), "SHUTDOWN", Ok("shutting down", then=lambda: done.append(1)), 2.0)
    assert done == [1]


@virtual_time
async def test_a_local_failure_names_this_worker_and_keeps_the_error_code():
    async def local():
        raise ProxyError(ER.NO_SUCH_THREAD, "gone")

    with pytest.raises(ProxyError) as err:
        await everywhere(peers(FakePeers({1: Ok(), 2: Ok()})), "X", local(), PEER_TIMEOUT)
    assert (err.value.errno, err.value.message) == (ER.NO_SUCH_THREAD, "worker 0: gone (done on worker 1, 2)")


@virtual_time
async def test_a_silent_peer_fails_the_command_within_the_bound_naming_it():
    loop = asyncio.get_running_loop()
    started = loop.time()
    fake = FakePeers({1: Rows([], [("app", 1)]), 2: HANG})
    with pytest.raises(ProxyError) as err:
        await everywhere(peers(fake), "SHOW POOLS", Rows(POOLS, [("app", 0)]), PEER_TIMEOUT)
    assert err.value.message == "worker 2 (127.0.0.1:6036) did not answer: no answer within 2s"
    assert loop.time() - started == pytest.approx(PEER_TIMEOUT)
    unreachable = FakePeers({1: PeerUnreachable("Can't connect to MySQL server"), 2: Ok()})
    with pytest.raises(ProxyError, match=r"^worker 1 \(127.0.0.1:6035\) did not answer: Can't connect"):
        await everywhere(peers(unreachable), "RESUME", Ok("resumed: app"), PEER_TIMEOUT)


def test_the_owner_of_a_client_id_is_the_worker_that_handed_it_out():
    of_three = peers(None, 3)
    assert [of_three.owner(i) for i in range(1, 8)] == [0, 1, 2, 0, 1, 2, 0]


def test_peers_are_the_other_workers_at_the_configured_port_plus_their_index(tmp_path: Path):
    config = load_config(write(tmp_path, CONFIG.replace('listen = "127.0.0.1:0"\npassword',
                                                        'listen = "0.0.0.0:7001"\npassword')))
    loop = asyncio.new_event_loop()
    try:
        # worker 1's config has its ports shifted by one (workers.worker_config)
        from mysqlpool_proxy.workers import worker_config
        proxy = Proxy(worker_config(config, WorkerSlot(1, 3, "s")), loop, worker=WorkerSlot(1, 3, "s"))
        found = peers_of(proxy)
        assert found is not None
        assert [(p.index, p.admin, p.metrics) for p in found.others] == [
            (0, ("127.0.0.1", 7001), None), (2, ("127.0.0.1", 7003), None)]  # metrics off in CONFIG
        assert peers_of(Proxy(config, loop)) is None  # one worker: nothing to ask
        assert "'s'" not in repr(found) and "'s'" not in repr(WorkerSlot(1, 3, "s"))
    finally:
        loop.close()


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "proxy.toml"
    path.write_text(text)
    return str(path)


# -- metrics --------------------------------------------------------------------------------------


def exposition(worker: int, accepted: float) -> str:
    return (
        "# HELP mysqlpool_ready 1 if ready.\n# TYPE mysqlpool_ready gauge\n"
        f'mysqlpool_ready{{worker="{worker}"}} 1.0\n'
        "# HELP mysqlpool_accepted_total Clients admitted.\n# TYPE mysqlpool_accepted_total counter\n"
        f'mysqlpool_accepted_total{{worker="{worker}"}} {accepted}\n'
        "# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\n"
        "process_open_fds 12.0\n"
    )


def test_workers_families_merge_into_one_exposition_with_worker_up():
    families = {f.name: f for f in merge_expositions({0: exposition(0, 3), 1: exposition(1, 4), 2: None})}
    assert [(s.labels, s.value) for s in families["mysqlpool_accepted"].samples] == [
        ({"worker": "0"}, 3), ({"worker": "1"}, 4)]
    assert [s.labels for s in families["process_open_fds"].samples] == [{"worker": "0"}, {"worker": "1"}]
    assert [(s.labels, s.value) for s in families["mysqlpool_worker_up"].samples] == [
        ({"worker": "0"}, 1), ({"worker": "1"}, 1), ({"worker": "2"}, 0)]
    garbled = {f.name: f for f in merge_expositions({0: exposition(0, 3), 1: "mysqlpool_ready{{{ 1\n"})}
    assert [s.value for s in garbled["mysqlpool_worker_up"].samples] == [1, 0]


@virtual_time
async def test_a_scrape_of_one_worker_is_one_valid_exposition_of_all():
    registry = CollectorRegistry(auto_describe=False)

    class Local:
        def collect(self):
            return list(text_string_to_metric_families(exposition(0, 3)))

    registry.register(Local())
    fake = FakePeers({}, scrapes={1: exposition(1, 4)})  # worker 2 does not answer
    for encoder in (generate_latest, generate_openmetrics):
        text = (await whole_exposition(peers(fake), registry, encoder)).decode()
        types = [line for line in text.splitlines() if line.startswith("# TYPE")]
        assert len(types) == len(set(types)) == 4
        parsed = {f.name: f for f in text_string_to_metric_families(text)} if encoder is generate_latest else {}
        if parsed:
            assert len(parsed["mysqlpool_ready"].samples) == 2
            assert [s.value for s in parsed["mysqlpool_worker_up"].samples] == [1, 1, 0]


# -- the admin console of worker 0 of 2 -----------------------------------------------------------


@pytest.fixture
def two_workers(tmp_path, monkeypatch):
    """make(replies) -> (worker 0's Proxy, its FakePeers as worker 1), on the running VirtualClockLoop."""
    path = write(tmp_path, CONFIG)

    def make(replies: dict | None = None) -> tuple[Proxy, FakePeers]:
        fake = FakePeers(replies or {1: Ok()})
        monkeypatch.setattr(peer_module, "peers_of",
                            lambda proxy: peers(fake, 2) if proxy.worker is not None else None)
        slot = WorkerSlot(0, 2, "the-secret")
        return Proxy(load_config(path), asyncio.get_running_loop(), worker=slot), fake
    return make


async def logged_in(proxy: Proxy, user: str = "admin", password: str = "adminpw",
                    peer: tuple = ("10.1.2.3", 40000)) -> AdminClient:
    client = AdminClient(proxy, peer=peer)
    reply = client.login(user, password)
    assert reply[0] == 0x00, reply
    return client


async def ask(client: AdminClient, sql: str):
    """The console's reply to `sql` once it is complete (the peers are asked in the background)."""
    client.send(b"\x03" + sql.encode())
    await settle()
    return client.parse(client.take())


def rows(result) -> list[dict]:
    names = [d[0] for d in result.description]
    return [dict(zip(names, row)) for row in result.rows]


@virtual_time
async def test_show_on_a_worker_shows_every_worker(two_workers):
    proxy, fake = two_workers()
    fake.replies[1] = Rows([], snapshots.pool_rows(proxy)[:1])  # worker 1 has the same pools: one shown
    client = await logged_in(proxy)
    result = await ask(client, "show pools;")
    assert result.description[0][0] == "worker"
    assert [(r["worker"], r["pool"]) for r in rows(result)][:2] == [(0, "app"), (0, "reporting")]
    assert rows(result)[2]["worker"] == 1
    assert fake.asked == [(1, "show pools")]
    fake.replies[1] = Rows([], [("app", 0)])  # (a worker of another version, mid-upgrade)
    with pytest.raises(AdminError, match="worker 1 answered 2 columns, worker 0 17"):
        await ask(client, "SHOW POOLS")
    fake.asked.clear()
    assert (await ask(client, "SHOW VERSION")).rows[0][0].startswith("mysqlpool-proxy")  # this worker's only
    assert fake.asked == []


@virtual_time
async def test_actions_run_on_every_worker_and_driver_chatter_stays_here(two_workers):
    proxy, fake = two_workers({1: Ok()})
    client = await logged_in(proxy)
    assert info(await ask(client, "PAUSE app")) == b"paused: app; no server connection left (on all 2 workers)"
    assert all(p.paused for p in proxy.pools.values() if p.name == "app")
    assert info(await ask(client, "RESUME")).endswith(b"(on all 2 workers)")
    await ask(client, "SET NAMES utf8mb4")
    await ask(client, "SET autocommit = 1")
    await ask(client, "SET pool.checkout_timeout = 9")
    assert fake.asked == [(1, "PAUSE app"), (1, "RESUME"), (1, "SET pool.checkout_timeout = 9")]
    with pytest.raises(AdminError, match=r"Unknown pool|no pool"):  # refused here: no peer asked
        await ask(client, "PAUSE nosuchpool")
    assert len(fake.asked) == 3


@virtual_time
async def test_a_failing_peer_makes_the_action_an_error_naming_it(two_workers):
    proxy, _ = two_workers({1: ProxyError(ER.UNKNOWN_ERROR, "RELOAD failed, config unchanged: bad")})
    client = await logged_in(proxy)
    with pytest.raises(AdminError) as err:
        await ask(client, "RESUME")
    assert err.value.message == "worker 1: RELOAD failed, config unchanged: bad (done on worker 0)"


@virtual_time
async def test_kill_client_goes_to_the_worker_that_owns_the_id(two_workers):
    proxy, fake = two_workers({1: ProxyError(ER.NO_SUCH_THREAD, "Unknown thread id: 8")})
    client = await logged_in(proxy)
    with pytest.raises(AdminError) as err:
        await ask(client, "KILL CLIENT 8")  # even: worker 1's
    assert (err.value.errno, err.value.message) == (ER.NO_SUCH_THREAD, "worker 1: Unknown thread id: 8")
    with pytest.raises(AdminError) as err:
        await ask(client, "KILL CLIENT 7")  # odd: this worker's, asked of no peer
    assert err.value.message == "Unknown thread id: 7"
    assert fake.asked == [(1, "KILL CLIENT 8")]


@virtual_time
async def test_a_peer_logs_in_with_the_secret_from_this_host_and_runs_commands_here_only(two_workers):
    proxy, fake = two_workers()
    peer = await logged_in(proxy, PEER_USER, "the-secret", peer=("127.0.0.1", 50000))
    assert info(await ask(peer, "RESUME")) == b"resumed: app, reporting"
    assert len((await ask(peer, "SHOW POOLS")).rows) == 2 and fake.asked == []
    for user, password, address in ((PEER_USER, "the-secret", ("10.1.2.3", 40000)),  # not this host
                                    (PEER_USER, "adminpw", ("127.0.0.1", 50000)),  # the admin's password
                                    ("admin", "the-secret", ("127.0.0.1", 50000))):
        client = AdminClient(proxy, peer=address)
        assert client.login(user, password)[0] == 0xFF
        assert client.closed


@virtual_time
async def test_with_one_worker_the_peer_login_does_not_exist(tmp_path):
    proxy = Proxy(load_config(write(tmp_path, CONFIG)), asyncio.get_running_loop())
    client = AdminClient(proxy, peer=("127.0.0.1", 50000))
    assert client.login(PEER_USER, "")[0] == 0xFF

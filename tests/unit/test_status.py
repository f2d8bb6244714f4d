# The status page's data and HTML (ops/status.py), the snapshots it shares
# with the admin console (ops/snapshots.py) and the events ring (events.py),
# on a proxy started on fake backends under virtual time (tests/fakes/): the
# JSON shape, agreement with SHOW POOLS / CLIENTS / SERVERS row for row (the
# clock does not move between them), the row cap and what it says about the
# rest, escaping of hostile text, and the events recorded where the proxy
# logs pause, resume, exhaustion, connect failures and readiness.
from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest

from mysqlpool_proxy import events
from mysqlpool_proxy.backend.waits import CALM, SLOW_WAIT
from mysqlpool_proxy.config import AdminConfig, ConfigError, load_config
from mysqlpool_proxy.events import EVENTS, EventKind, EventLog
from mysqlpool_proxy.ops import admin, operations, snapshots, status
from mysqlpool_proxy.ops.status import status_data, status_html, status_json
from mysqlpool_proxy.proxy.proxy import Proxy
from tests.fakes import FakeClient, advance, fake_opener, start_proxy, virtual_time
from tests.unit.test_admin import ADMIN_PASSWORD, CONFIG, logged_in


@pytest.fixture(autouse=True)
def fresh_events():
    EVENTS.clear()
    yield
    EVENTS.clear()


async def proxy_with_clients(**pool):
    """A started fake proxy with a client in a transaction (holding a backend) and an idle one."""
    proxy = await start_proxy(fake_opener(), pool={"max_size": 3, **pool})
    proxy.config = dataclasses.replace(proxy.config, admin=AdminConfig(password=ADMIN_PASSWORD))
    in_trx = await FakeClient(proxy, database="appdb").connect()
    await in_trx.query("BEGIN")
    await in_trx.query("SELECT 1")
    idle = await FakeClient(proxy).connect()
    await idle.query("SELECT 1")
    return proxy, in_trx, idle


@virtual_time
async def test_json_shape():
    proxy, in_trx, idle = await proxy_with_clients()
    data = json.loads(status_json(proxy))
    assert set(data) == {"version", "time", "worker", "state", "ready", "readiness", "pools", "clients",
                         "servers", "events", "omitted"}
    assert (data["state"], data["ready"], data["worker"]) == ("running", True, None)
    assert data["time"].endswith("Z") and data["readiness"]
    for table in (snapshots.POOLS, snapshots.CLIENTS, snapshots.SERVERS):
        assert data[table.name] and all(list(row) == table.column_names for row in data[table.name])
    [pool] = data["pools"]
    assert (pool["pool"], pool["max_size"], pool["in_use"], pool["paused"]) == ("app", 3, 1, False)
    clients = {c["id"]: c for c in data["clients"]}
    assert set(clients) == {in_trx.conn.id, idle.conn.id}
    assert clients[in_trx.conn.id]["pinned"] == "transaction"
    assert clients[in_trx.conn.id]["backend_id"] == in_trx.conn.backend.id
    assert {s["id"] for s in data["servers"]} >= {in_trx.conn.backend.id}
    assert data["omitted"] == {"pools": 0, "clients": 0, "servers": 0}
    await proxy.stop(0)


@virtual_time
async def test_the_page_and_the_console_show_the_same_rows():
    proxy, _, _ = await proxy_with_clients()
    await advance(1.5)  # times are not all zero
    console = await logged_in(proxy)
    data = status_data(proxy)
    pools = [{**row, "paused": bool(row["paused"])} for row in console.rows("SHOW POOLS")]
    assert pools == data["pools"]
    assert console.rows("SHOW CLIENTS") == data["clients"]
    assert console.rows("SHOW SERVERS") == data["servers"]
    assert [c.name for c in admin.CLIENT_COLUMNS] == snapshots.CLIENTS.column_names
    await proxy.stop(0)


@virtual_time
async def test_rows_are_capped_and_the_rest_counted(monkeypatch):
    monkeypatch.setattr(status, "MAX_ROWS", 2)
    proxy, in_trx, idle = await proxy_with_clients()
    more = [await FakeClient(proxy).connect() for _ in range(3)]
    data = status_data(proxy)
    assert [c["id"] for c in data["clients"]] == sorted(c.conn.id for c in [in_trx, idle, *more])[:2]
    assert data["omitted"]["clients"] == 3
    assert b"and 3 more clients not shown" in status_html(proxy)
    await proxy.stop(0)


@virtual_time
async def test_everything_in_the_html_is_escaped_and_long_text_cut():
    proxy, _, _ = await proxy_with_clients()
    hostile = "<img src=x onerror=alert(1)>\"'&"
    proxy.pools["app"].connector.last_error = hostile + "x" * 1000
    events.record(EventKind.RELOAD, hostile, pool=hostile)
    page = status_html(proxy).decode()
    assert "<img" not in page
    assert page.count("&lt;img src=x onerror=alert(1)&gt;&quot;&#x27;&amp;") == 3  # error, event pool and text
    assert "x" * status.MAX_TEXT not in page and "x" * (status.MAX_TEXT - 40) in page
    assert len(status_data(proxy)["pools"][0]["last_error"]) == status.MAX_TEXT
    await proxy.stop(0)


@virtual_time
async def test_the_response_is_bounded_however_many_clients():
    proxy = await start_proxy(fake_opener(), pool={"max_size": 2})
    clients = [await FakeClient(proxy).connect() for _ in range(status.MAX_ROWS + 20)]
    for client in clients:
        client.conn.program = "<" * 500  # its connect attributes' program_name, at its worst for the page
    html, js = status_html(proxy), status_json(proxy)
    assert json.loads(js)["omitted"]["clients"] == 20
    # Every client row at its largest, and a little more for the rest of the page.
    assert len(html) < 200_000 and len(js) < 200_000
    assert len(clients) == len(proxy.clients)
    await proxy.stop(0)


@virtual_time
async def test_pause_resume_and_readiness_are_events():
    proxy = await start_proxy(fake_opener())
    status_data(proxy)  # readiness is decided when asked
    operations.pause(proxy, "app")
    operations.resume(proxy, "app")
    kinds = [(e["kind"], e["pool"]) for e in status_data(proxy)["events"]]
    assert kinds[:3] == [("resume", "app"), ("pause", "app"), ("ready", None)]
    assert kinds[-1] == ("start", None)
    await proxy.stop(0)
    assert EVENTS.recent(1)[0].kind is EventKind.SHUTDOWN


@virtual_time
async def test_reloads_are_events_and_so_is_a_refused_one(tmp_path):
    path = tmp_path / "proxy.toml"
    path.write_text(CONFIG)
    proxy = Proxy(load_config(str(path)), asyncio.get_running_loop())
    path.write_text(CONFIG.replace("max_size = 4", "max_size = 6"))
    operations.reload_from_source(proxy)
    path.write_text(CONFIG.replace("max_size = 4", "max_size = -1"))
    with pytest.raises(ConfigError):
        operations.reload_from_source(proxy)
    refused, reloaded = EVENTS.recent(2)
    assert (reloaded.kind, reloaded.message) == (EventKind.RELOAD, f"configuration reloaded from {path}")
    assert refused.kind is EventKind.RELOAD_FAILED and "max_size" in refused.message


@virtual_time
async def test_exhaustion_start_and_end_are_events():
    proxy = await start_proxy(fake_opener(), pool={"max_size": 1})
    holder = await FakeClient(proxy).connect()
    await holder.query("BEGIN")
    waiter = await FakeClient(proxy).connect()
    waiter.send_query("SELECT 1")
    await advance(SLOW_WAIT + 1)  # a wait worth a log line (backend/waits.py), and so an event
    assert [e.kind for e in EVENTS.recent(1)] == [EventKind.POOL_EXHAUSTED]
    await holder.query("COMMIT")
    await waiter.response()
    await advance(CALM + 1)
    assert [e.kind for e in EVENTS.recent(2)] == [EventKind.POOL_RECOVERED, EventKind.POOL_EXHAUSTED]
    await proxy.stop(0)


@virtual_time
async def test_backend_connect_failures_are_events_as_often_as_logged():
    opener = fake_opener(fail_times=3)
    proxy = await start_proxy(opener)
    failures = [e for e in EVENTS.recent() if e.kind is EventKind.CONNECT_FAILED]
    assert failures and all(e.pool == "app" for e in failures)
    assert len(failures) <= 2  # logged on the first failure and when the message changes, not each time
    await proxy.stop(0)


def test_the_ring_is_bounded_newest_first_and_cuts_messages():
    ring = EventLog(maxlen=3)
    for i in range(5):
        ring.record(EventKind.RELOAD, f"reload {i}" + "!" * 1000)
    assert len(ring) == 3
    assert [e.message[:8] for e in ring.recent()] == ["reload 4", "reload 3", "reload 2"]
    assert [e.message[:8] for e in ring.recent(1)] == ["reload 4"]
    assert len(ring.recent()[0].message) == events.MAX_MESSAGE


@pytest.mark.parametrize("seconds, shown", [
    (0.0042, "4ms"), (3.21, "3.2s"), (245, "4m05s"), (7620, "2h07m"), (3 * 86400 + 4 * 3600, "3d04h"), (-5, "-5.0s"),
])
def test_durations_read_as_people_write_them(seconds, shown):
    assert status._duration(seconds) == shown

# Tests of mysqlpool_proxy.health: the readiness decision as a pure function
# (evidence in, ready or not and why out), then the monitor and its probe on a
# proxy over fake backends in virtual time (tests/fakes.py): a server that goes
# down and comes back, one that hangs, one that kills every new connection, a
# refused backend login, an idle proxy, a busy one. No sockets, no sleeping.
from __future__ import annotations

import asyncio
import logging

import pymysql
import pytest

from mysqlpool_proxy.config import UserConfig
from mysqlpool_proxy.health import Cause, Evidence, Failure, decide
from mysqlpool_proxy.proxy import Proxy
from mysqlpool_proxy.reasons import BackendCloseReason
from tests.fakes import FakeClient, Rows, advance, fake_opener, proxy_config, settle, start_proxy, virtual_time

INTERVAL = 5.0  # backend.probe_interval's default
ACCESS_DENIED = (1045, "Access denied for user 'report'@'10.0.0.5' (using password: YES)")


def evidence(**changes) -> Evidence:
    base = dict(proxy_state="running", server_known=True, last_answer=100.0, failure=None, probe_since=None,
                login_refusals=(), where="db:3306", last_error="")
    return Evidence(**{**base, **changes})


# -- the decision ------------------------------------------------------------------------------

def test_ready_while_the_server_answered_within_the_interval():
    assert decide(evidence(), now=100.0 + INTERVAL, interval=INTERVAL).ready


def test_not_ready_once_the_server_was_silent_longer_than_the_interval():
    verdict = decide(evidence(probe_since=103.0), now=106.0, interval=INTERVAL)
    assert verdict.cause is Cause.NOT_ANSWERING
    assert verdict.reason == "backend not answering (db:3306: no answer for 6.0s, a probe has waited 3.0s)"


@pytest.mark.parametrize("state", ["starting", "draining", "stopped"])
def test_the_proxys_own_state_comes_first(state):
    verdict = decide(evidence(proxy_state=state, login_refusals=(("app", "1045 x"),)), 100.0, INTERVAL)
    assert verdict.cause is Cause(state) and verdict.reason == f"proxy is {state}"


def test_a_refused_pool_login_is_named_even_while_the_server_answers():
    refusals = (("report", "1045 Access denied for user 'report'"), ("etl", "1045 Access denied for user 'etl'"))
    verdict = decide(evidence(login_refusals=refusals), 100.0, INTERVAL)
    assert verdict.cause is Cause.LOGIN_REFUSED
    assert verdict.reason == "backend login refused for pool 'report': 1045 Access denied for user 'report' " \
                             "(and 1 more pool)"


def test_a_server_never_reached_says_what_was_last_seen():
    failure = Failure(99.0, "2003 Can't connect to MySQL server on 'db' (111)", Cause.UNREACHABLE)
    verdict = decide(evidence(server_known=False, last_answer=None, failure=failure), 100.0, INTERVAL)
    assert verdict.cause is Cause.NOT_REACHED
    assert verdict.reason == "backend not reached yet (db:3306: 2003 Can't connect to MySQL server on 'db' (111))"
    verdict = decide(evidence(server_known=False, last_answer=None), 100.0, INTERVAL)
    assert verdict.reason == "backend not reached yet (db:3306: no answer yet)"


def test_a_probe_failure_counts_only_until_the_server_answers_again():
    failure = Failure(101.0, "2003 Can't connect to MySQL server on 'db' (111)", Cause.UNREACHABLE)
    verdict = decide(evidence(failure=failure), 101.5, INTERVAL)
    assert verdict.cause is Cause.UNREACHABLE
    assert verdict.reason == "backend unreachable (db:3306: 2003 Can't connect to MySQL server on 'db' (111))"
    assert decide(evidence(failure=failure, last_answer=101.2), 101.5, INTERVAL).ready


def test_a_ping_without_answer_says_the_server_does_not_answer():
    failure = Failure(102.0, "no answer to a ping within 5s", Cause.NOT_ANSWERING)
    verdict = decide(evidence(failure=failure), 102.0, INTERVAL)
    assert (verdict.cause, verdict.reason) == (
        Cause.NOT_ANSWERING, "backend not answering (db:3306: no answer to a ping within 5s)")


# -- the monitor on fake backends ----------------------------------------------------------------

async def wait_until(predicate, within: float, step: float = 0.05) -> float:
    """Advance virtual time until predicate() holds; fail after `within` seconds. Returns the time taken."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not predicate():
        if loop.time() - start >= within:
            raise AssertionError(f"not true after {within}s of virtual time")
        await advance(step)
    return loop.time() - start


async def always(predicate, during: float, step: float = 0.05) -> None:
    """predicate() holds at every step for `during` seconds of virtual time."""
    loop = asyncio.get_running_loop()
    end = loop.time() + during
    while loop.time() < end:
        assert predicate(), f"failed at +{during - (end - loop.time()):.2f}s"
        await advance(step)


def pings(opener) -> int:
    return sum(server.command_names.count("ping") for server in opener.servers)


def ready(proxy) -> bool:
    return proxy.readiness().ready


@virtual_time
async def test_an_idle_proxy_stays_ready_on_a_ping_every_half_interval_and_keeps_its_connection():
    opener = fake_opener()
    proxy = await start_proxy(opener)
    await always(lambda: ready(proxy), 60.0)
    # One ping per round: a round once nothing answered for interval/2 (x0.75 to x1, the jitter),
    # seen at the next tick (interval/8 apart).
    assert 60.0 / (INTERVAL / 2 + INTERVAL / 8) - 1 <= pings(opener) <= 60.0 / (INTERVAL / 2 * 0.75) + 1
    assert len(opener.attempts) == 1  # the ping needs no new connection
    await proxy.stop(0)


@virtual_time
async def test_client_traffic_is_evidence_enough_no_probe_runs():
    opener = fake_opener()
    proxy = await start_proxy(opener)
    client = await FakeClient(proxy).connect()
    probed = pings(opener)  # the round at start
    loop = asyncio.get_running_loop()
    end = loop.time() + 30.0
    while loop.time() < end:
        assert (await client.query("SELECT 1")).value == "1"
        assert ready(proxy)
        await advance(1.0)
    assert pings(opener) == probed
    await proxy.stop(0)


@virtual_time
async def test_down_then_back_ready_again_without_any_client():
    opener = fake_opener()
    proxy = await start_proxy(opener)
    opener.go_down()
    for server in opener.alive:
        server.close()  # the server restarts: its connections go
    await wait_until(lambda: not ready(proxy), within=INTERVAL)
    verdict = proxy.readiness()
    assert verdict.cause is Cause.UNREACHABLE and "2003 Can't connect to MySQL server" in verdict.reason
    opener.come_up()
    # Not ready, it probes every interval/4: back within that (plus one tick of sampling).
    await wait_until(lambda: ready(proxy), within=INTERVAL / 4 + 1.0)
    assert proxy.pools["app"].idle  # the probe's connection waits for the next client
    await proxy.stop(0)


@virtual_time
async def test_a_hung_server_is_not_ready_within_the_interval_and_ready_after_it_resumes():
    opener = fake_opener()
    proxy = await start_proxy(opener, backend={"connect_timeout": 2.0})
    for server in opener.alive:
        server.auto = False  # SIGSTOP: nothing it was sent gets an answer
    opener.delay = 1e6  # and a new connection is never greeted (it times out after connect_timeout)
    # Within the interval: by then nothing answered for the interval, or the probe's ping gave up.
    await wait_until(lambda: not ready(proxy), within=INTERVAL + 0.1)
    assert proxy.readiness().cause is Cause.NOT_ANSWERING
    # Then the probe says what it saw: the ping gave up after connect_timeout, then a new connection did.
    await wait_until(lambda: proxy.readiness().reason.endswith("no answer to a ping within 2s)"), within=2.0)
    await wait_until(lambda: proxy.readiness().reason.endswith("connect timeout)"), within=2.1)
    assert proxy.readiness().cause is Cause.UNREACHABLE
    opener.delay = 0.0  # SIGCONT
    for server in opener.servers:
        server.auto = True
        server.flush()
    await wait_until(lambda: ready(proxy), within=INTERVAL / 4 + 2 * 2.0 + 1.0)
    await proxy.stop(0)


@virtual_time
async def test_a_dba_killing_every_new_connection_never_makes_it_unready_and_the_probe_reconnects():
    opener = fake_opener()
    proxy = await start_proxy(opener)
    loop = asyncio.get_running_loop()
    opener.configure = lambda server: loop.call_later(0.05, server.close)  # KILL as soon as it shows up
    for server in opener.alive:
        server.close()
    attempts = len(opener.attempts)
    await always(lambda: ready(proxy), 60.0)
    pool = proxy.pools["app"]
    assert len(opener.attempts) > attempts + 10  # the probe kept reconnecting, no client needed
    assert pool.stats.closed[BackendCloseReason.SERVER_GONE.value] > 10
    assert sum(pool.stats.connect_errors.values()) == 0 and not pool.failing
    await proxy.stop(0)


@virtual_time
async def test_a_connection_lost_during_set_up_is_tried_again_not_counted_against_the_server():
    opener = fake_opener()
    proxy = await start_proxy(opener)
    for server in opener.alive:
        server.close()
    opener.fail_next(2, (2013, "Lost connection to server during query"))
    await always(lambda: ready(proxy), 10.0)
    assert len(opener.attempts) >= 4 and proxy.pools["app"].idle
    await proxy.stop(0)


def refusing(opener, user: str, error=ACCESS_DENIED):
    """`opener`, except that `user`'s login is refused while the returned state["on"] is set."""
    state = {"on": True}

    async def open_backend(params, **kwargs):
        if params.user == user and state["on"]:
            raise pymysql.err.OperationalError(*error)
        return await opener(params, **kwargs)
    return open_backend, state


@virtual_time
async def test_a_pool_whose_login_is_refused_is_named_without_a_client_and_ready_once_fixed():
    opener, refused = refusing(fake_opener(), "report")
    users = (UserConfig(name="app", password="pw"), UserConfig(name="report", password="pw"))
    proxy = Proxy(proxy_config(users=users), asyncio.get_running_loop(), opener=opener)
    await proxy.start()
    await wait_until(lambda: proxy.readiness().cause is Cause.LOGIN_REFUSED, within=1.0)
    assert proxy.readiness().reason == (
        "backend login refused for pool 'report': 1045 Access denied for user 'report'@'10.0.0.5' "
        "(using password: YES)")
    await always(lambda: proxy.readiness().cause is Cause.LOGIN_REFUSED, 20.0)  # it stays so
    refused["on"] = False  # the DBA fixes the password
    await wait_until(lambda: ready(proxy), within=INTERVAL / 4 + 1.0)
    await proxy.stop(0)


@virtual_time
async def test_a_refused_login_at_start_is_the_reason_not_an_unreachable_server():
    opener, _ = refusing(fake_opener(), "app")
    proxy = Proxy(proxy_config(), asyncio.get_running_loop(), opener=opener)
    await proxy.start()
    await wait_until(lambda: proxy.readiness().cause is Cause.LOGIN_REFUSED, within=1.0)
    assert "'app': 1045 Access denied" in proxy.readiness().reason
    await proxy.stop(0)


@virtual_time
async def test_each_change_of_readiness_is_one_log_line(caplog):
    caplog.set_level(logging.INFO, logger="mysqlpool.health")
    opener = fake_opener()
    proxy = await start_proxy(opener)
    opener.go_down()
    for server in opener.alive:
        server.close()
    await wait_until(lambda: not ready(proxy), within=INTERVAL)
    await advance(30.0)  # many failed probes
    opener.come_up()
    await wait_until(lambda: ready(proxy), within=INTERVAL)
    await advance(30.0)  # many good ones
    lines = [r.getMessage() for r in caplog.records if r.name == "mysqlpool.health"]
    assert lines == [
        "ready: the backend answers",
        "not ready: backend unreachable (127.0.0.1:3306: 2003 Can't connect to MySQL server on '127.0.0.1' (111))",
        "ready: the backend answers",
    ]
    await proxy.stop(0)


@virtual_time
async def test_the_probes_ping_does_not_keep_an_idle_connection_past_idle_timeout():
    opener = fake_opener()
    proxy = await start_proxy(opener, pool={"idle_timeout": 20.0})
    first = proxy.pools["app"].idle[-1]
    await always(lambda: ready(proxy), 30.0)
    assert first.closed and first.close_reason is BackendCloseReason.IDLE_TIMEOUT
    assert pings(opener) > 0 and proxy.pools["app"].idle  # the probe opened another
    await proxy.stop(0)


@virtual_time
async def test_a_full_pool_whose_statements_run_long_is_probed_from_outside_it():
    opener = fake_opener()
    opener.on("SELECT SLEEP(60)", Rows(["SLEEP(60)"], [(0,)]), delay=60.0)
    proxy = await start_proxy(opener, pool={"max_size": 1})
    client = await FakeClient(proxy).connect()
    client.send_query("SELECT SLEEP(60)")  # holds the only backend for a minute, nothing comes back
    await settle()
    servers = len(opener.servers)
    await always(lambda: ready(proxy), 30.0)
    assert len(opener.servers) > servers  # connections of the probe's own, closed at once
    assert all(s.closed for s in opener.servers[servers:])
    await proxy.stop(0)


@virtual_time
async def test_no_connection_of_its_own_past_the_servers_limits_then_client_results_are_all_it_has():
    opener = fake_opener(max_connections=2)  # the server allows 2: the pool caps itself at 1
    opener.on("SELECT SLEEP(60)", Rows(["SLEEP(60)"], [(0,)]), delay=60.0)
    proxy = await start_proxy(opener)
    assert proxy.pools["app"].max_size == 1
    client = await FakeClient(proxy).connect()
    client.send_query("SELECT SLEEP(60)")
    await settle()
    servers = len(opener.servers)
    await wait_until(lambda: not ready(proxy), within=INTERVAL + 1.0)
    assert proxy.readiness().reason.startswith("backend not answering (127.0.0.1:3306: no answer for ")
    assert len(opener.servers) == servers  # never a second connection
    await proxy.stop(0)

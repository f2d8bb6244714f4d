# Where the proxy records what the newer metric families export: a Proxy on
# the fakes (tests/fakes: fake backends, virtual clock, so every duration is
# exact) runs queries, transactions, pings and waits, and the test reads the
# pool's plain counters and histograms (PoolStats) and then the scrape.
# The collector's own formatting is tested in test_metrics.py.
from __future__ import annotations

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mysqlpool_proxy.core.histogram import PING_BUCKETS, QUERY_BUCKETS, TRANSACTION_BUCKETS, Histogram
from mysqlpool_proxy.ops.metrics import build_registry
from tests.fakes import FakeClient, advance, fake_opener, settle, start_proxy, virtual_time


def scrape(proxy) -> dict[tuple, float]:
    text = generate_latest(build_registry(proxy)).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def bucket_of(bounds: tuple[float, ...], seconds: float) -> float:
    """The smallest `le` bound holding `seconds`."""
    return next(b for b in bounds if seconds <= b)


async def connected(proxy, **kwargs) -> FakeClient:
    return await FakeClient(proxy, **kwargs).connect()


# -- the histogram itself ------------------------------------------------------------------

def test_a_value_on_a_bound_counts_in_that_bounds_bucket_as_le_says():
    h = Histogram((0.1, 1.0))
    for v in (0.0, 0.1, 0.5, 1.0, 1.5):
        h.observe(v)
    assert h.counts == [2, 2, 1]
    assert h.cumulative() == [(0.1, 2), (1.0, 4), (float("inf"), 5)]
    assert h.count == 5 and h.sum == pytest.approx(3.1)


# -- query and transaction durations ----------------------------------------------------------

@virtual_time
async def test_query_duration_is_the_servers_time_per_relayed_command():
    proxy = await start_proxy(fake_opener(), pool={"max_size": 2})
    client = await connected(proxy)
    await client.query("SELECT SLEEP(0.3)")
    await client.query("SELECT 1")
    await client.ping()  # answered by the proxy: no server time, not in the histogram
    stats = proxy.pools["app"].stats
    assert stats.query_time.count == 2
    assert stats.query_time.sum == pytest.approx(0.3)
    assert stats.queries["query"] == 2 and stats.queries["ping"] == 1
    s = scrape(proxy)
    assert s[("mysqlpool_query_duration_seconds_bucket", (("le", "0.0005"), ("pool", "app")))] == 1  # SELECT 1
    assert s[("mysqlpool_query_duration_seconds_bucket", (("le", "0.25"), ("pool", "app")))] == 1
    assert s[("mysqlpool_query_duration_seconds_bucket", (("le", repr(bucket_of(QUERY_BUCKETS, 0.3))),
                                                          ("pool", "app")))] == 2
    assert s[("mysqlpool_query_duration_seconds_count", (("pool", "app"),))] == 2


@virtual_time
async def test_query_duration_leaves_out_the_wait_for_a_backend():
    proxy = await start_proxy(fake_opener(), pool={"max_size": 1, "checkout_timeout": 30})
    a, b = await connected(proxy), await connected(proxy)
    a.send_query("SELECT SLEEP(2)")
    await settle()
    await b.query("SELECT 1")  # waits 2 s for a's backend, then runs in no time
    await a.response()
    stats = proxy.pools["app"].stats
    assert stats.query_time.sum == pytest.approx(2.0)  # a's 2 s; b's wait is the checkout wait's
    assert stats.wait_sum == pytest.approx(2.0)


@virtual_time
async def test_transaction_duration_runs_from_begin_to_commit():
    proxy = await start_proxy(fake_opener(), pool={"max_size": 2})
    client = await connected(proxy)
    await client.query("BEGIN")
    await advance(1.5)  # the client thinks
    await client.query("SELECT SLEEP(0.5)")
    await client.query("COMMIT")
    await client.query("SELECT 1")  # autocommit: no transaction
    stats = proxy.pools["app"].stats
    assert stats.transactions == 1
    assert stats.transaction_time.count == 1 and stats.transaction_time.sum == pytest.approx(2.0)
    s = scrape(proxy)
    assert s[("mysqlpool_transaction_duration_seconds_bucket",
              (("le", repr(bucket_of(TRANSACTION_BUCKETS, 2.0))), ("pool", "app")))] == 1
    assert s[("mysqlpool_transaction_duration_seconds_bucket", (("le", "1.0"), ("pool", "app")))] == 0


@virtual_time
async def test_a_rolled_back_transaction_counts_and_each_one_is_timed_from_its_own_start():
    proxy = await start_proxy(fake_opener(), pool={"max_size": 2})
    client = await connected(proxy)
    await client.query("START TRANSACTION")
    await advance(10)
    await client.query("ROLLBACK")
    await advance(100)  # between transactions: not part of either
    await client.query("BEGIN")
    await advance(0.02)
    await client.query("COMMIT")
    h = proxy.pools["app"].stats.transaction_time
    assert h.count == 2 and h.sum == pytest.approx(10.02)


# -- bytes per pool -------------------------------------------------------------------------

@virtual_time
async def test_bytes_per_pool_count_what_the_pools_clients_send_and_get():
    proxy = await start_proxy(fake_opener(), pool={"max_size": 2})
    client = await connected(proxy)
    stats = proxy.pools["app"].stats
    before_in, before_out = stats.bytes_in, stats.bytes_out
    r = await client.query("SELECT 'abc'")
    assert stats.bytes_in - before_in == len(b"\x03SELECT 'abc'") + 4
    assert stats.bytes_out - before_out == len(r.raw)
    s = scrape(proxy)
    assert s[("mysqlpool_pool_bytes_total", (("direction", "client_to_backend"), ("pool", "app")))] == stats.bytes_in
    assert s[("mysqlpool_pool_bytes_total", (("direction", "backend_to_client"), ("pool", "app")))] == stats.bytes_out
    # The proxy-wide counter also has the logins' bytes, before the client is in a pool.
    assert proxy.stats.bytes_in > stats.bytes_in


# -- pings, waiters, backend age ----------------------------------------------------------------

@virtual_time
async def test_the_health_probes_and_keepalive_pings_round_trips_are_recorded():
    opener = fake_opener(latency=0.003)  # each answer comes 3 ms after the question
    proxy = await start_proxy(opener, pool={"max_size": 2, "min_idle": 1})
    pool = proxy.pools["app"]
    client = await connected(proxy)
    await client.query("SELECT 1")  # leaves a backend idle
    ping_time = pool.stats.ping_time
    pings = ping_time.count
    assert await pool.ping_idle() is True
    assert ping_time.count == pings + 1
    assert ping_time.counts[PING_BUCKETS.index(0.005)] == ping_time.count  # 3 ms, all of them
    await advance(5)
    pings = ping_time.count  # (the readiness probe may have pinged meanwhile)
    pool.maintain(proxy.loop.time(), idle_timeout=1)  # the janitor: idle past idle_timeout, kept by min_idle
    assert pool.pinging
    await advance(0.004)  # the answer's latency
    assert ping_time.count == pings + 1
    assert ping_time.sum == pytest.approx(0.003 * ping_time.count)


@virtual_time
async def test_oldest_waiter_age_and_clients_per_pool_by_state():
    proxy = await start_proxy(fake_opener(), pool={"max_size": 1, "checkout_timeout": 60})
    holder, first, second, _idle = [await connected(proxy) for _ in range(4)]
    await holder.query("BEGIN")
    first.send_query("SELECT 1")
    await advance(5)
    second.send_query("SELECT 1")
    await advance(2)
    s = scrape(proxy)
    assert s[("mysqlpool_oldest_waiter_seconds", (("pool", "app"),))] == pytest.approx(7.0)
    assert s[("mysqlpool_waiting_clients", (("pool", "app"),))] == 2
    by_state = {dict(k)["state"]: v for (name, k), v in s.items() if name == "mysqlpool_pool_client_connections"}
    assert by_state == {"active": 0, "idle": 2, "waiting": 2}  # holder (in a transaction, between statements), idle
    await holder.query("COMMIT")
    await first.response()
    await second.response()
    assert scrape(proxy)[("mysqlpool_oldest_waiter_seconds", (("pool", "app"),))] == 0


@virtual_time
async def test_backend_connection_age_oldest_and_average():
    proxy = await start_proxy(fake_opener(), pool={"max_size": 8})
    pool = proxy.pools["app"]
    await advance(100)
    holders = []
    while pool.idle:  # hold every backend there is
        holders.append(await connected(proxy))
        await holders[-1].query("BEGIN")
    young = await connected(proxy)
    await young.query("BEGIN")  # so this one opens a new one, now
    await advance(10)
    ages = sorted(proxy.loop.time() - backend.created_at for backend in (*pool.idle, *pool.busy))
    assert len(ages) >= 2 and ages[0] <= 10 and ages[-1] >= 110
    s = scrape(proxy)
    assert s[("mysqlpool_backend_connection_age_max_seconds", (("pool", "app"),))] == pytest.approx(ages[-1])
    assert s[("mysqlpool_backend_connection_age_avg_seconds", (("pool", "app"),))] == pytest.approx(
        sum(ages) / len(ages))

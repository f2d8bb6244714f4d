# Pool and BackendLimiter on their own: checkout order, deadlines, caps,
# connect backoff, lifetime and idle closing, keys, cancellation. Each test
# builds a Pool directly with tests.fakes' opener (every backend is a
# FakeMySQLServer on a FakeTransport) and runs on a VirtualClockLoop, so
# timeouts and backoff delays are exact virtual times and nothing sleeps.
from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from mysqlpool_proxy.backend.adapter import BackendParams
from mysqlpool_proxy.backend.opening import BACKOFF_BASE, BACKOFF_CAP, WAITING_BACKOFF_CAP
from mysqlpool_proxy.backend.pool import BackendLimiter, CheckoutTimeout, Pool, QueueFull
from mysqlpool_proxy.constants import CLIENT
from mysqlpool_proxy.core.session import SessionState
from mysqlpool_proxy.core.states import BackendState
from mysqlpool_proxy.protocol.framing import encode_packet
from mysqlpool_proxy.protocol.packets import make_err
from mysqlpool_proxy.reasons import BackendCloseReason
from tests.fakes import advance, fake_opener, settle, virtual_time

PARAMS = BackendParams(host="db.example", port=3306, unix_socket="", user="app", password="pw", charset="utf8mb4",
                       connect_timeout=5.0, ssl=None, found_rows=False, local_files=False)
FOUND_ROWS = CLIENT.FOUND_ROWS


def make_pool(opener, *, name="app", max_size=2, min_idle=0, max_lifetime=3600.0, max_waiting=1000,
              max_connecting=4, limiter=None) -> Pool:
    ids = itertools.count(1)
    return Pool(
        name=name, params=PARAMS, max_size=max_size, min_idle=min_idle, max_lifetime=max_lifetime,
        max_waiting=max_waiting, max_connecting=max_connecting, limiter=limiter or BackendLimiter(100),
        loop=asyncio.get_running_loop(), on_opened=lambda opened: SessionState(None, dict(opened.charset_vars), True),
        next_backend_id=lambda: next(ids), opener=opener,
    )


def now() -> float:
    return asyncio.get_running_loop().time()


# -- waiting ------------------------------------------------------------------------


@virtual_time
async def test_waiters_are_served_first_come_first_served():
    opener = fake_opener()
    pool = make_pool(opener, max_size=1)
    held = await pool.acquire(0, 10)
    served = []

    async def client(i):
        backend = await pool.acquire(0, 60)
        served.append(i)
        await advance(1)
        pool.release(backend)

    tasks = []
    for i in range(5):
        tasks.append(asyncio.create_task(client(i)))
        await advance(0.1)  # they arrive in order
    assert len(pool.waiters) == 5
    assert pool.try_acquire(0) is None  # a newcomer does not jump the queue
    pool.release(held)
    await asyncio.gather(*tasks)
    assert served == [0, 1, 2, 3, 4]
    assert len(opener.servers) == 1


@virtual_time
async def test_a_waiter_past_its_deadline_gets_checkout_timeout_and_is_never_served_late():
    opener = fake_opener()
    pool = make_pool(opener, max_size=1)
    held = await pool.acquire(0, 10)
    t0 = now()
    early = asyncio.create_task(pool.acquire(0, 2.5))
    late = asyncio.create_task(pool.acquire(0, 10))
    await settle()
    with pytest.raises(CheckoutTimeout) as err:
        await early
    assert now() - t0 == 2.5
    assert err.value.waited == 2.5
    assert "max_size 1" in str(err.value) and "1 in use" in str(err.value)
    await advance(0.5)
    pool.release(held)  # after the first deadline: only the second waiter may get it
    assert await late is held
    assert list(pool.waiters) == []


@virtual_time
async def test_a_full_queue_refuses_at_once():
    pool = make_pool(fake_opener(), max_size=1, max_waiting=2)
    await pool.acquire(0, 10)
    waiting = [asyncio.create_task(pool.acquire(0, 10)) for _ in range(2)]
    await settle()
    t0 = now()
    with pytest.raises(QueueFull):
        await pool.acquire(0, 10)
    assert now() == t0
    for task in waiting:
        task.cancel()
    await settle()
    assert list(pool.waiters) == []


@virtual_time
async def test_never_more_than_max_size_backends_under_a_burst_of_100():
    opener = fake_opener(delay=0.05)  # opening takes time: connecting counts too
    pool = make_pool(opener, max_size=5, max_connecting=3)
    sizes = []

    async def client(i):
        backend = await pool.acquire(0, 120)
        sizes.append(pool.size)
        assert backend.state is BackendState.RESERVED and backend in pool.busy
        await advance(0.01 * (i % 7))
        pool.release(backend)

    async def sampler():
        while True:
            sizes.append(pool.size)
            assert len(opener.alive) + opener.in_flight <= 5
            await asyncio.sleep(0.005)  # sampling interval (virtual time): it samples all through the burst

    watch = asyncio.create_task(sampler())
    await asyncio.gather(*(client(i) for i in range(100)))
    watch.cancel()
    assert max(sizes) <= 5
    assert opener.peak_open <= 5
    assert len(opener.servers) <= 5  # none closed, so none reopened
    assert pool.stats.checkouts == 100


@virtual_time
async def test_a_cancelled_acquirer_that_was_handed_a_backend_gives_it_back():
    pool = make_pool(fake_opener(), max_size=1)
    held = await pool.acquire(0, 10)
    task = asyncio.create_task(pool.acquire(0, 10))
    await settle()
    pool.release(held)  # handed to the waiter; its task has not run yet
    task.cancel()
    await settle()
    assert task.cancelled()
    assert pool.idle == [held] and not pool.busy
    assert held.state is BackendState.IDLE


@virtual_time
async def test_a_cancelled_waiter_leaves_the_queue():
    pool = make_pool(fake_opener(), max_size=1)
    held = await pool.acquire(0, 10)
    task = asyncio.create_task(pool.acquire(0, 10))
    await settle()
    task.cancel()
    await settle()
    assert list(pool.waiters) == []
    pool.release(held)
    assert pool.idle == [held]


# -- the global cap ---------------------------------------------------------------------


@virtual_time
async def test_the_global_limiter_caps_two_pools_together():
    opener = fake_opener()
    limiter = BackendLimiter(3)
    a = make_pool(opener, name="a", max_size=3, limiter=limiter)
    b = make_pool(opener, name="b", max_size=3, limiter=limiter)
    held = [await a.acquire(0, 10) for _ in range(3)]
    assert limiter.used == 3
    with pytest.raises(CheckoutTimeout):
        await b.acquire(0, 1)  # nothing idle anywhere to reclaim
    assert len(opener.alive) == 3 and limiter.used == 3
    a.release(held[0])
    got = await b.acquire(0, 1)  # reclaims a's idle backend
    assert got.pool is b
    assert held[0].closed and held[0].close_reason is BackendCloseReason.RECLAIMED
    assert a.stats.closed["reclaimed"] == 1
    assert limiter.used == 3 and opener.peak_open <= 3


@virtual_time
async def test_reclaim_takes_the_longest_idle_backend_of_another_pool():
    opener = fake_opener()
    limiter = BackendLimiter(2)
    a = make_pool(opener, name="a", max_size=2, limiter=limiter)
    b = make_pool(opener, name="b", max_size=2, limiter=limiter)
    first, second = await a.acquire(0, 10), await a.acquire(0, 10)
    a.release(first)
    await advance(5)
    a.release(second)
    await b.acquire(0, 1)
    assert first.closed and not second.closed
    assert a.idle == [second]


# -- opening ---------------------------------------------------------------------------


@virtual_time
async def test_max_connecting_bounds_concurrent_opens():
    opener = fake_opener(delay=1.0)
    pool = make_pool(opener, max_size=10, max_connecting=2)

    async def client():
        backend = await pool.acquire(0, 30)
        await advance(0.5)
        pool.release(backend)

    await asyncio.gather(*(client() for _ in range(6)))
    assert opener.max_in_flight == 2
    assert len(opener.attempts) >= 2


@virtual_time
async def test_connect_failures_back_off_exponentially_then_recover():
    opener = fake_opener()
    opener.fail_next(8)
    pool = make_pool(opener, max_size=2)
    t0 = now()
    backend = await pool.acquire(0, 60)
    assert backend is not None and len(opener.attempts) == 9
    times = [a.at for a in opener.attempts]
    assert times[0] == t0
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for n, gap in enumerate(gaps, start=1):  # after the n-th failure
        full = min(WAITING_BACKOFF_CAP, BACKOFF_BASE * 2 ** (n - 1))  # a client waits all along
        assert full * 0.5 <= gap <= full, (n, gap)
    assert gaps[-1] <= WAITING_BACKOFF_CAP  # capped (0.1 * 2**7 would be 12.8 s)
    assert pool.stats.connect_errors[2003] == 8
    assert pool.stats.connects == 1


@virtual_time
async def test_with_no_client_waiting_the_backoff_grows_to_its_higher_cap():
    opener = fake_opener()
    opener.go_down()
    pool = make_pool(opener, min_idle=1)  # the pool itself keeps trying, for min_idle
    pool.ensure_min_idle()
    await advance(60)
    gaps = [b.at - a.at for a, b in zip(opener.attempts, opener.attempts[1:])]
    for n, gap in enumerate(gaps, start=1):
        full = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (n - 1))
        assert full * 0.5 <= gap <= full, (n, gap)
    assert max(gaps) > WAITING_BACKOFF_CAP
    opener.come_up()
    await advance(BACKOFF_CAP)
    assert len(pool.idle) == 1


@virtual_time
async def test_waiters_are_served_when_the_server_comes_back_within_their_deadline():
    opener = fake_opener()
    opener.go_down()
    pool = make_pool(opener, max_size=2)
    t0 = now()
    task = asyncio.create_task(pool.acquire(0, 10))
    await advance(4)
    assert not task.done() and opener.failures >= 4
    opener.come_up()
    backend = await task
    assert now() - t0 < 10
    assert backend.pool is pool and len(opener.servers) == 1


@virtual_time
async def test_a_waiter_that_outlives_an_outage_is_told_the_connect_error():
    opener = fake_opener()
    opener.go_down()
    pool = make_pool(opener)
    with pytest.raises(CheckoutTimeout) as err:
        await pool.acquire(0, 3)
    assert err.value.waited == 3
    assert "last connect error: 2003 Can't connect to MySQL server" in str(err.value)
    assert pool.size == 0 and pool.limiter.used == 0


async def long_outage(opener, pool, seconds: float = 60.0) -> None:
    """The server is down for `seconds` with no client waiting (the pool tries for min_idle), up to
    just after a failed attempt: the pool's backoff has grown to seconds."""
    opener.go_down()
    pool.ensure_min_idle()
    await advance(seconds)
    attempts = len(opener.attempts)
    while len(opener.attempts) == attempts:
        await advance(0.01)


@virtual_time
async def test_a_client_that_starts_waiting_long_after_the_last_failure_gets_an_attempt_at_once():
    opener = fake_opener()
    pool = make_pool(opener, min_idle=1)
    await long_outage(opener, pool)
    await advance(WAITING_BACKOFF_CAP + 0.01)  # the backoff still has seconds to run
    assert pool.connector.backoff_until > now() + 1
    opener.come_up()  # the server is back; the pool does not know it yet
    t0 = now()
    await pool.acquire(0, 2.0)  # a checkout_timeout below BACKOFF_CAP
    assert now() == t0 and opener.attempts[-1].ok


@virtual_time
async def test_a_client_that_starts_waiting_right_after_a_failure_gets_an_attempt_in_the_first_half_of_its_wait():
    opener = fake_opener()
    pool = make_pool(opener, min_idle=1)
    await long_outage(opener, pool)  # just after a failure
    assert pool.connector.backoff_until > now() + 1
    before = len(opener.attempts)
    t0 = now()
    waiting = asyncio.create_task(pool.acquire(0, 0.4))
    await advance(0.2)
    assert [a.at for a in opener.attempts[before:]] and all(t0 < a.at <= t0 + 0.2 for a in opener.attempts[before:])
    with pytest.raises(CheckoutTimeout):
        await waiting


@virtual_time
async def test_no_client_times_out_without_an_attempt_made_while_it_waited():
    opener = fake_opener()
    pool = make_pool(opener, min_idle=1)
    await long_outage(opener, pool, 30.0)
    rng = random.Random(7)
    for _ in range(200):
        await advance(rng.uniform(0, 3 * BACKOFF_CAP))  # clients now and then, with short checkout_timeouts
        timeout = rng.choice([0.05, 0.3, 1.0, 2.0, 4.0])
        t0 = now()
        with pytest.raises(CheckoutTimeout):
            await pool.acquire(0, timeout)
        assert any(t0 <= a.at < t0 + timeout for a in opener.attempts), (t0, timeout)


@virtual_time
async def test_while_the_server_is_down_attempts_are_one_at_a_time_and_paced_by_time_not_by_clients():
    opener = fake_opener(delay=0.05)
    pool = make_pool(opener, max_size=10, max_connecting=4, max_waiting=10_000)
    opener.go_down()
    waiters = [asyncio.create_task(pool.acquire(0, 20.0))]
    await advance(0.1)  # the first attempts (in parallel: the pool did not know yet) failed
    opener.max_in_flight, before = 0, len(opener.attempts)
    for _ in range(2000):  # 200 clients a second for 10 s, each waiting up to 5 s
        waiters.append(asyncio.create_task(pool.acquire(0, 5.0)))
        await advance(0.005)
    assert opener.max_in_flight == 1
    # After the first few failures (their backoff grows from BACKOFF_BASE), at most one attempt per
    # WAITING_BACKOFF_CAP * 0.5 (the jitter's low end) after each failure.
    attempts = len(opener.attempts) - before
    assert attempts <= 10 / (WAITING_BACKOFF_CAP * 0.5 + 0.05) + 5, attempts
    opener.come_up()
    await advance(WAITING_BACKOFF_CAP)
    assert opener.max_in_flight > 1  # once the server answers, the pool opens in parallel again
    for task in waiters:
        if not task.done() or task.exception() is None:
            pool.release(await task)


@virtual_time
async def test_a_backoff_after_a_thousand_failures_is_still_capped():
    opener = fake_opener()
    opener.go_down()
    pool = make_pool(opener)
    for _ in range(1100):  # 0.1 * 2 ** 1100 would not fit in a float
        assert await pool.open_now() is False
    assert pool.failures == 1100 and pool.connector.backoff_until - now() <= BACKOFF_CAP
    opener.come_up()
    assert await pool.open_now() is True and not pool.failing


@virtual_time
async def test_a_backend_the_server_closes_at_once_makes_the_pool_back_off_but_is_no_connect_failure():
    opener = fake_opener()
    loop = asyncio.get_running_loop()
    opener.configure = lambda server: loop.call_later(0.1, server.close)  # a DBA killing new connections
    pool = make_pool(opener)
    backend = await pool.acquire(0, 10)
    pool.release(backend)
    await advance(0.1)
    assert backend.closed and backend.close_reason is BackendCloseReason.SERVER_GONE
    # The server answered (it let the connection in): no connect error, the pool is not failing...
    assert sum(pool.stats.connect_errors.values()) == 0
    assert not pool.failing and pool.last_error == ""
    # ...but the next open waits out a short backoff, so a server that keeps doing it is not stormed.
    waiting = loop.create_task(pool.acquire(0, 10))
    await settle()
    assert len(opener.attempts) == 1
    await advance(0.1)
    assert len(opener.attempts) == 2 and waiting.done()


# -- lifetime, idle timeout, min_idle ----------------------------------------------------------


@virtual_time
async def test_a_backend_past_max_lifetime_is_closed_at_release_not_reused():
    opener = fake_opener()
    pool = make_pool(opener, max_lifetime=10)
    young = await pool.acquire(0, 10)
    await advance(9)  # lifetime jitter is at most 5%: 9.5 s at least
    pool.release(young)
    assert pool.idle == [young]
    backend = await pool.acquire(0, 10)
    assert backend is young
    await advance(2)
    pool.release(backend)
    assert backend.closed and backend.close_reason is BackendCloseReason.MAX_LIFETIME
    await settle()  # the proxy said COM_QUIT; the slot is free once the server closed its end
    assert opener.servers[0].closed_by == "proxy"
    assert pool.idle == [] and pool.size == 0
    fresh = await pool.acquire(0, 10)
    assert fresh is not backend and len(opener.servers) == 2


@virtual_time
async def test_maintain_closes_idle_backends_past_idle_timeout():
    opener = fake_opener()
    pool = make_pool(opener)
    old, recent = await pool.acquire(0, 10), await pool.acquire(0, 10)
    pool.release(old)
    await advance(3)
    pool.release(recent)
    await advance(3)
    pool.maintain(now(), idle_timeout=5)
    assert old.closed and old.close_reason is BackendCloseReason.IDLE_TIMEOUT
    assert pool.idle == [recent]
    assert pool.stats.closed["idle_timeout"] == 1
    await advance(3)
    pool.maintain(now(), idle_timeout=5)
    assert pool.idle == [] and opener.alive == []


@virtual_time
async def test_maintain_closes_idle_backends_past_their_lifetime():
    pool = make_pool(fake_opener(), max_lifetime=10)
    backend = await pool.acquire(0, 10)
    pool.release(backend)
    await advance(11)
    pool.maintain(now(), idle_timeout=1000)
    assert backend.close_reason is BackendCloseReason.MAX_LIFETIME


@virtual_time
async def test_min_idle_is_kept_by_maintenance():
    opener = fake_opener(delay=0.1)
    pool = make_pool(opener, max_size=5, min_idle=2)
    for _ in range(3):  # janitor passes, a second apart
        pool.maintain(now(), idle_timeout=5)
        await advance(1)
    assert len(pool.idle) == 2 and len(opener.servers) == 2
    first_two = list(opener.servers)
    await advance(10)
    pool.maintain(now(), idle_timeout=5)  # past idle_timeout, but within min_idle: pinged, not closed
    await advance(1)
    assert all(not s.closed and s.command_names == ["ping"] for s in first_two)
    assert len(pool.idle) >= 2
    first_two[0].close()  # the server drops one: a later pass still has min_idle ready
    await settle()
    pool.maintain(now(), idle_timeout=5)
    await advance(1)
    assert len(pool.idle) >= 2


@virtual_time
async def test_min_idle_backends_are_of_the_key_clients_ask_for():
    # Django's clients (mysqlclient, FOUND_ROWS and MariaDB's extended metadata) never take a backend
    # opened for another key: min_idle backends of key 0 would only hold server connections.
    opener = fake_opener(delay=0.1)
    pool = make_pool(opener, max_size=5, min_idle=2)
    pool.ensure_min_idle()
    await advance(1)
    assert sorted(b.key for b in pool.idle) == [0, 0]
    backend = await pool.acquire(FOUND_ROWS, 10)  # at no cap: a new backend of its key
    assert backend.key == FOUND_ROWS
    pool.release(backend)
    pool.ensure_min_idle()
    await advance(1)
    assert sorted(b.key for b in pool.idle if b.key == FOUND_ROWS) == [FOUND_ROWS, FOUND_ROWS]


@virtual_time
async def test_idle_backends_beyond_min_idle_close_at_idle_timeout():
    opener = fake_opener()
    pool = make_pool(opener, max_size=5, min_idle=1)
    backends = [await pool.acquire(0, 10) for _ in range(3)]
    for b in backends:
        pool.release(b)
    await advance(10)
    pool.maintain(now(), idle_timeout=5)
    await settle()
    assert [b.close_reason for b in backends] == [BackendCloseReason.IDLE_TIMEOUT] * 2 + [None]
    assert backends[-1] in pool.idle  # the most recently used one is kept (and pinged)
    assert opener.server_for(backends[-1]).command_names == ["ping"]


# -- the server closing idle backends ------------------------------------------------------


@virtual_time
async def test_a_backend_the_server_closes_while_idle_leaves_the_pool_at_once():
    opener = fake_opener()
    pool = make_pool(opener)
    backend = await pool.acquire(0, 10)
    pool.release(backend)
    await advance(30)
    opener.servers[0].close()  # wait_timeout, KILL, restart...
    await settle()
    assert backend.closed and backend.close_reason is BackendCloseReason.SERVER_GONE
    assert pool.idle == [] and pool.size == 0 and pool.limiter.used == 0
    assert pool.stats.closed["server_gone"] == 1
    assert sum(pool.stats.connect_errors.values()) == 0  # not a connect failure: it lived 30 s
    again = await pool.acquire(0, 10)
    assert again is not backend and not again.closed


@virtual_time
async def test_an_idle_backend_that_receives_bytes_is_closed_at_once():
    opener = fake_opener()
    pool = make_pool(opener)
    backend = await pool.acquire(0, 10)
    pool.release(backend)
    await advance(30)
    # MariaDB/MySQL may say why before closing (e.g. 4031, the client was idle too long)
    opener.servers[0].send_raw(encode_packet(make_err(4031, "HY000", "The client was disconnected"), 0))
    assert backend.closed and pool.idle == []
    assert opener.servers[0].closed_by == "proxy"


# -- keys ------------------------------------------------------------------------------


@virtual_time
async def test_a_client_key_gets_only_backends_of_its_key():
    opener = fake_opener()
    pool = make_pool(opener, max_size=3)
    plain = await pool.acquire(0, 10)
    found = await pool.acquire(FOUND_ROWS, 10)
    assert (plain.key, found.key) == (0, FOUND_ROWS)
    assert [s.params.found_rows for s in opener.servers] == [False, True]
    pool.release(found)
    pool.release(plain)  # the most recent idle one, but of the other key
    assert pool.try_acquire(FOUND_ROWS) is found
    assert pool.try_acquire(FOUND_ROWS) is None
    assert pool.try_acquire(0) is plain


@virtual_time
async def test_at_the_cap_an_idle_backend_of_another_key_is_reclaimed():
    opener = fake_opener()
    pool = make_pool(opener, max_size=2)
    a, b = await pool.acquire(0, 10), await pool.acquire(0, 10)
    pool.release(a)
    pool.release(b)
    found = await pool.acquire(FOUND_ROWS, 10)
    assert found.key == FOUND_ROWS
    assert pool.stats.closed["reclaimed"] == 1
    assert pool.size == 2 and opener.peak_open <= 2
    assert len(pool.idle) == 1 and pool.idle[0].key == 0


@virtual_time
async def test_a_waiter_of_another_key_is_served_when_a_backend_is_released_at_the_cap():
    pool = make_pool(fake_opener(), max_size=1)
    plain = await pool.acquire(0, 10)
    task = asyncio.create_task(pool.acquire(FOUND_ROWS, 10))
    await advance(1)
    pool.release(plain)
    found = await task
    assert found.key == FOUND_ROWS and plain.close_reason is BackendCloseReason.RECLAIMED

# Regression tests for pool behaviours: bursts beyond max_connecting, the global cap across pools, min_idle
# counting and keepalive pings,
# each once a bug (the comments give the diagnosis). Same setup as test_pool.py
# (Pool built directly, fake opener, virtual clock).
from __future__ import annotations

import asyncio

import pytest

from mysqlpool_proxy.backend.adapter import Handoff
from mysqlpool_proxy.backend.connection import BackendGone
from mysqlpool_proxy.backend.pool import BackendLimiter
from mysqlpool_proxy.client.lease import reset_then_release
from mysqlpool_proxy.protocol.framing import encode_packet
from mysqlpool_proxy.protocol.response import Expect
from mysqlpool_proxy.reasons import BackendCloseReason
from tests.fakes import advance, fake_opener, settle, virtual_time
from tests.unit.test_pool import make_pool, now


@virtual_time
async def test_a_burst_larger_than_max_connecting_grows_the_pool_for_every_waiter():
    # Diagnosis: opens are only started from _open_for_waiters(), reached via
    # serve_waiters(). When an open completes, _open() calls release(), which
    # hands the backend straight to the first waiter and returns without
    # calling serve_waiters(); nothing else re-examines the queue. So after
    # the first max_connecting opens, no more start until a backend is
    # released/closed or a new client arrives: here 4 of 6 clients time out
    # with "max_size 6, 2 in use" although 4 more backends were allowed.
    opener = fake_opener(delay=1.0)
    pool = make_pool(opener, max_size=6, max_connecting=2)
    t0 = now()
    served = []

    async def client():
        backend = await pool.acquire(0, 10)
        served.append(now() - t0)
        await advance(30)  # they hold their backends (long transactions)
        pool.release(backend)

    await asyncio.gather(*(client() for _ in range(6)))
    assert opener.max_in_flight == 2
    assert sorted(served) == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]


@virtual_time
async def test_a_waiter_of_another_pool_gets_a_backend_released_to_idle_at_the_global_cap():
    # Diagnosis: at the global cap (BackendLimiter), pool b's waiter can only
    # be served by reclaiming an idle backend of pool a. Pool.release() puts
    # the backend in a.idle and only calls a.serve_waiters(); the limiter is
    # told only when a backend *closes* (on_backend_closed -> limiter.released()).
    # So b's waiter is never re-examined and times out after 10 s ("max_size
    # 2, 0 in use, 0 waiting") while a has an idle backend reclaim_idle()
    # would close for it. Fix idea: when release() leaves a backend idle and
    # the limiter is full, let other pools' waiters try (limiter.released()).
    opener = fake_opener()
    limiter = BackendLimiter(2)
    a = make_pool(opener, name="a", max_size=2, limiter=limiter)
    b = make_pool(opener, name="b", max_size=2, limiter=limiter)
    first, _ = await a.acquire(0, 10), await a.acquire(0, 10)
    t0 = now()
    task = asyncio.create_task(b.acquire(0, 10))
    await advance(1)
    a.release(first)  # a has no waiters: the backend goes idle in a
    got = await task
    assert got.pool is b and now() - t0 < 2
    assert limiter.used == 2


@virtual_time
async def test_ensure_min_idle_opens_every_missing_backend_at_once():
    # Diagnosis: ensure_min_idle() counts each open twice: _start_open()
    # raises self.connecting and the loop also does `ready += 1`, while the
    # condition is `ready + self.connecting < self.min_idle`. With min_idle 2
    # one call opens 1 backend (min_idle 10: 5), so min_idle is only reached
    # over several janitor ticks, and right after start-up or an outage the
    # pool has fewer ready backends than configured.
    opener = fake_opener(delay=0.1)
    pool = make_pool(opener, max_size=5, min_idle=2)
    pool.ensure_min_idle()
    assert pool.connecting == 2
    await advance(0.2)
    assert len(pool.idle) == 2


@virtual_time
async def test_pinging_the_min_idle_backends_opens_no_extra_ones():
    # Diagnosis: maintain() keeps min_idle backends past idle_timeout and
    # pings them (_keepalive), which moves each from `idle` to `busy` for the
    # ping; maintain() then calls ensure_min_idle(), which counts only `idle`
    # and opens replacements for backends that are merely being pinged. Those
    # extras are closed at a later pass (beyond min_idle), so an idle pool
    # churns: with min_idle 2 it holds 3 backends and opens and closes one
    # every idle_timeout (measured: 8 opens and 5 idle_timeout closes in 60 s).
    opener = fake_opener()
    pool = make_pool(opener, max_size=5, min_idle=2)
    for _ in range(3):
        pool.maintain(now(), idle_timeout=5)
        await advance(1)
    assert len(opener.servers) == 2
    for _ in range(6):  # a minute of janitor passes over an idle pool
        await advance(10)
        pool.maintain(now(), idle_timeout=5)
        await advance(0.5)
    assert len(opener.servers) == 2
    assert sum(pool.stats.closed.values()) == 0


@virtual_time
async def test_a_backend_still_closing_does_not_make_the_pool_act_shut_down():
    # Diagnosis: Pool.closing was both the number of closed backends whose
    # sockets were still open (`self.closing = 0`, `+= 1`) and the shutdown
    # flag (`self.closing = False`, set True by close()). While any backend
    # was closing (one round trip after COM_QUIT; seconds with a distant
    # server), every healthy backend released was closed as `shutdown` and
    # waiters were not served; after close(), a late socket close made the
    # pool forget it was shut down. Each now has its own name: `closing` is a
    # collection, the shutdown is `state`.
    opener = fake_opener(quit_delay=1.0)
    pool = make_pool(opener, max_size=2)
    first, second = await pool.acquire(0, 10), await pool.acquire(0, 10)
    first.close(BackendCloseReason.MAX_LIFETIME)
    assert pool.closing == {first} and pool.size == 2  # the server still counts it
    waiter = asyncio.create_task(pool.acquire(0, 10))
    await settle()
    pool.release(second)
    assert await waiter is second  # served while another backend is still closing
    pool.release(second)
    assert pool.idle == [second]
    assert "shutdown" not in pool.stats.closed
    await advance(1.5)  # the server closes its end of the first
    assert pool.closing == set() and pool.size == 1
    held = await pool.acquire(0, 10)
    pool.close()
    assert pool.shut_down
    await advance(5)  # no socket close afterwards makes it forget
    assert pool.shut_down
    pool.release(held)
    assert held.closed and pool.stats.closed["shutdown"] == 1
    await advance(5)
    assert pool.size == 0 and pool.limiter.used == 0


@virtual_time
async def test_pool_sizes_are_the_lengths_of_its_collections():
    opener = fake_opener(delay=0.5, quit_delay=1.0)
    limiter = BackendLimiter(10)
    pool = make_pool(opener, max_size=3, limiter=limiter)
    tasks = [asyncio.create_task(pool.acquire(0, 10)) for _ in range(3)]
    await advance(0.1)
    assert pool.connecting == len(pool.opening) == 3 and pool.size == 3 == limiter.used
    backends = [await t for t in tasks]
    assert pool.opening == [] and pool.busy == set(backends) and pool.size == 3
    backends[0].close(BackendCloseReason.ERROR)
    pool.release(backends[1])
    assert (len(pool.idle), len(pool.busy), len(pool.closing)) == (1, 1, 1) and limiter.used == 3
    await advance(2)
    assert pool.size == 2 == limiter.used


def _handed_over_with(data: bytes, eof: bool):
    """An opener whose backends arrive as from aiomysql: what the server sent after the setup, and
    maybe its EOF, still in aiomysql's stream reader when the proxy's Protocol takes the transport."""
    inner = fake_opener()

    async def opener(params, **kwargs):
        opened = await inner(params, **kwargs)
        reader = asyncio.StreamReader()
        if data:
            reader.feed_data(data)
        if eof:
            reader.feed_eof()
        opened.handoff = Handoff(reader, writer=None)
        return opened

    opener.servers = inner.servers
    return opener


@virtual_time
async def test_a_backend_killed_right_after_its_setup_is_never_pooled():
    # Diagnosis (CI: /readyz went 503 while a DBA killed every new backend): the server's EOF came
    # after aiomysql's setup query but before the transport was handed to BackendConnection. It
    # went to aiomysql's stream reader, which keeps a half-closed transport open, so the proxy's
    # Protocol never saw it: the dead backend sat idle in the pool and the health probe's ping on
    # it waited connect_timeout for an answer that could not come.
    pool = make_pool(_handed_over_with(b"", eof=True), max_size=2)
    assert await pool.open_now() is False
    assert pool.idle == [] and pool.stats.connects == 1
    await settle()
    assert pool.size == 0 and pool.limiter.used == 0
    assert pool.stats.closed["server_gone"] == 1


@virtual_time
async def test_a_backend_whose_server_spoke_right_after_its_setup_is_never_pooled():
    # The same window, with an ERR packet before the EOF (a server that says why it closes):
    # it used to fail the open as "unexpected bytes", an error with no code that the health
    # probe took for an unreachable server.
    err = encode_packet(b"\xff" + (1927).to_bytes(2, "little") + b"#70100Connection was killed", 0)
    pool = make_pool(_handed_over_with(err, eof=False), max_size=2)
    assert await pool.open_now() is False
    assert pool.idle == [] and pool.stats.connects == 1 and not pool.stats.connect_errors
    await advance(5)
    assert pool.size == 0


@virtual_time
async def test_a_backend_handed_over_cleanly_is_pooled():
    pool = make_pool(_handed_over_with(b"", eof=False), max_size=2)
    assert await pool.open_now() is True
    assert len(pool.idle) == 1
    backend = await pool.acquire(0, 10)
    assert not backend.closed


@virtual_time
async def test_a_backend_closed_before_its_reset_ran_is_simply_gone():
    # Found by the network fuzz test: a client left with state on its backend, so
    # lease.leave() spawned reset_then_release(); before the task ran, the backend
    # closed (the server hung up). run_internal() then tried CLOSED -> INTERNAL and the
    # task died with IllegalTransition ("Task exception was never retrieved"). Every
    # internal command on a backend closed meanwhile is BackendGone, as when it closes
    # during the command.
    pool = make_pool(fake_opener(), max_size=2)
    backend = await pool.acquire(0, 10)
    backend.close(BackendCloseReason.SERVER_GONE)
    await reset_then_release(backend, 5)  # no exception, nothing pooled
    assert pool.idle == []
    with pytest.raises(BackendGone):
        await backend.run_internal(b"\x0e", Expect.SIMPLE, 5)

# The log lines an operator keeps on, in virtual time: clients waiting long
# for a backend are logged as episodes (a start, an end with counts), rate
# limited so a pool flapping at its cap writes at most one pair a minute and
# a summary of the rest; short waits write nothing; the stats line comes once
# per log.stats_period per pool with rates since the last one. And the
# formats: with several workers each line names its worker; in JSON mode
# tracebacks, warnings and uncaught exceptions stay inside JSON objects.
from __future__ import annotations

import asyncio
import gc
import io
import itertools
import json
import logging
import sys
import threading
import warnings

import pytest

from mysqlpool_proxy.backend.pool import CheckoutTimeout
from mysqlpool_proxy.backend.waits import CALM, INTERVAL, slow_wait_threshold
from mysqlpool_proxy.logs import log_event, set_worker, setup_logging
from tests.fakes import FakeClient, advance, fake_opener, start_proxy, virtual_time
from tests.unit.test_pool import make_pool, now

THRESHOLD = 1.0
TICK = 0.5  # the janitor's tick, at most a second


class VirtualTimes(logging.Handler):
    """Stamps each record with the loop's (virtual) time as `vtime` (record.created is wall time)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.vtime = asyncio.get_running_loop().time()
        except RuntimeError:
            record.vtime = None


@pytest.fixture
def records(caplog):
    """The records of one logger, each with its virtual time (`vtime`)."""
    caplog.set_level(logging.INFO, logger="mysqlpool")
    handler = VirtualTimes()
    logging.getLogger("mysqlpool").addHandler(handler)
    yield lambda name: [r for r in caplog.records if r.name == name]
    logging.getLogger("mysqlpool").removeHandler(handler)


@pytest.fixture
def pool_log(records):
    return lambda: records("mysqlpool.pool")


def watch(pool) -> asyncio.Task:
    """The janitor's part: check the pool's waits every TICK."""
    async def run():
        while True:
            pool.waits.check(pool, now(), THRESHOLD)
            await asyncio.sleep(TICK)
    return asyncio.create_task(run())


async def wait_episode(pool, held, *, clients: int, hold: float, timeout: float = 60.0) -> list:
    """`clients` queue behind `held` (the only backend) for `hold` seconds, then each is served in turn."""
    async def client():
        try:
            backend = await pool.acquire(0, timeout)
        except CheckoutTimeout:
            return "timed out"
        pool.release(backend)
        return "served"
    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await advance(hold)
    pool.release(held)
    return await asyncio.gather(*tasks)


def test_the_threshold_is_a_second_or_a_quarter_of_a_short_checkout_timeout():
    assert slow_wait_threshold(10.0) == 1.0
    assert slow_wait_threshold(2.0) == 0.5


@virtual_time
async def test_short_waits_at_the_cap_write_nothing(pool_log):
    pool = make_pool(fake_opener(), max_size=1)
    janitor = watch(pool)
    for _ in range(50):  # a busy pool: clients queue for a fraction of the threshold, all the time
        held = await pool.acquire(0, 10)
        await wait_episode(pool, held, clients=3, hold=0.3)
    await advance(5)
    janitor.cancel()
    assert pool_log() == []
    assert pool.stats.wait_count > 100


@virtual_time
async def test_a_long_wait_is_one_line_when_it_starts_and_one_with_counts_when_it_ends(pool_log):
    pool = make_pool(fake_opener(), max_size=1)
    janitor = watch(pool)
    held = await pool.acquire(0, 10)
    t0 = now()
    impatient = asyncio.create_task(pool.acquire(0, 2.0))
    await advance(1.2)  # still waiting: the start is logged without waiting for the wait to end
    (start,) = pool_log()
    assert start.levelno == logging.WARNING
    assert start.getMessage() == "pool app: clients wait longer than 1s for a backend (all backends in use, max_size 1)"
    assert start.fields["pool"] == "app" and start.fields["cause"] == "at_cap" and start.fields["waiting"] == 1
    assert THRESHOLD <= start.fields["longest_wait_s"] <= THRESHOLD + TICK
    assert now() - t0 <= THRESHOLD + TICK
    with pytest.raises(CheckoutTimeout):
        await impatient
    await wait_episode(pool, held, clients=4, hold=3.0)
    await advance(CALM + 2 * TICK)
    janitor.cancel()
    _, end = pool_log()
    assert end.levelno == logging.INFO
    assert end.fields["waited"] == 5 and end.fields["timed_out"] == 1
    assert 3.0 <= end.fields["longest_wait_s"] <= 3.0 + TICK
    assert "5 waited, the longest 3.00s, 1 timed out" in end.getMessage()


@virtual_time
async def test_a_pool_flapping_at_its_cap_writes_one_pair_a_minute_and_sums_up_the_rest(pool_log):
    pool = make_pool(fake_opener(), max_size=1)
    janitor = watch(pool)
    for _ in range(36):  # 3 minutes: every 5 s, 2 clients wait 2 s
        held = await pool.acquire(0, 10)
        await wait_episode(pool, held, clients=2, hold=2.0)
        await advance(3.0)
    await advance(INTERVAL)
    janitor.cancel()
    records = pool_log()
    starts = [r for r in records if "clients wait longer than" in r.getMessage()]
    ends = [r for r in records if "no longer wait long" in r.getMessage()]
    summaries = [r for r in records if "not logged one by one" in r.getMessage()]
    assert len(records) <= 3 * (180 + INTERVAL) / INTERVAL  # a start, an end and a summary per interval at most
    times = [r.vtime for r in starts]
    assert len(starts) == len(ends) >= 3
    assert all(b - a >= INTERVAL for a, b in itertools.pairwise(times))
    # Nothing is lost: logged episodes plus summed ones are all 36, and all 72 clients.
    assert len(starts) + sum(r.fields["episodes"] for r in summaries) == 36
    assert sum(r.fields["waited"] for r in ends + summaries) == 72
    assert summaries[-1].fields["timed_out"] == 0 and 2.0 <= summaries[-1].fields["longest_wait_s"] < 2.5


@virtual_time
async def test_clients_refused_while_waiting_are_counted_at_the_end(pool_log):
    pool = make_pool(fake_opener(), max_size=1)
    janitor = watch(pool)
    held = await pool.acquire(0, 10)
    waiting = [asyncio.create_task(pool.acquire(0, 10)) for _ in range(3)]
    await advance(1.5)
    assert pool.refuse_waiters(RuntimeError("the server is down"), float("-inf"), now()) == 3
    for task in waiting:
        with pytest.raises(RuntimeError):
            await task
    await advance(CALM + 2 * TICK)
    janitor.cancel()
    pool.release(held)
    _, end = pool_log()
    assert end.fields["refused"] == 3 and end.fields["timed_out"] == 0 and end.fields["waited"] == 3
    assert 1.5 <= end.fields["longest_wait_s"] < 1.5 + TICK
    assert end.getMessage().endswith("3 waited, the longest 1.50s, 0 timed out, 3 refused (no backend could be had)")


@virtual_time
async def test_the_log_says_why_clients_wait_when_the_pool_is_paused(pool_log):
    pool = make_pool(fake_opener(), max_size=2)
    janitor = watch(pool)
    pool.pause()
    waiting = asyncio.create_task(pool.acquire(0, 10))
    await advance(1.5)
    (start,) = [r for r in pool_log() if r.levelno == logging.WARNING]
    assert start.fields["cause"] == "paused" and "the pool is paused" in start.getMessage()
    pool.resume()
    pool.release(await waiting)
    janitor.cancel()


# -- the stats line ----------------------------------------------------------------------------


@virtual_time
async def test_the_stats_line_comes_every_period_with_rates_since_the_last(records):
    proxy = await start_proxy(fake_opener(), log={"stats_period": 10})
    clients = [await FakeClient(proxy).connect() for _ in range(2)]
    for _ in range(10):
        for c in clients:
            await c.query("SELECT 1")
            await c.query("BEGIN")
            await c.query("COMMIT")
    t0 = now()
    await advance(10.5)

    def lines():
        return records("mysqlpool.stats")
    (first, *_) = lines()
    f = first.fields
    assert first.getMessage() == "stats" and f["pool"] == "app"
    assert f["clients"] == 2 and f["waiting"] == 0 and f["backends_busy"] == 0 and f["backends_idle"] >= 1
    assert f["queries_per_s"] == pytest.approx(60 / 10, rel=0.2)  # the 60 statements, over about 10 s
    assert f["transactions_per_s"] == pytest.approx(20 / 10, rel=0.2)
    assert f["max_wait_ms"] == 0 and f["timed_out"] == 0
    await advance(10)
    second = lines()[1]
    assert second.fields["queries_per_s"] == 0 and second.vtime - first.vtime == pytest.approx(10, abs=1.1)
    assert now() - t0 < 25
    for c in clients:
        c.quit()
    await advance(10)
    third = lines()[2].fields  # a pool with idle backends and no client still gets its line
    assert third["clients"] == 0 and third["backends_idle"] >= 1 and len(lines()) == 3
    await proxy.stop(0)


@virtual_time
async def test_no_stats_line_when_the_period_is_0(caplog):
    caplog.set_level(logging.INFO, logger="mysqlpool")
    proxy = await start_proxy(fake_opener(), log={"stats_period": 0})
    client = await FakeClient(proxy).connect()
    await client.query("SELECT 1")
    await advance(300)
    assert not [r for r in caplog.records if r.name == "mysqlpool.stats"]
    await proxy.stop(0)


# -- formats: the worker, JSON to the last line --------------------------------------------------


@pytest.fixture
def output():
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("mysqlpool").level, sys.excepthook,
             threading.excepthook, sys.unraisablehook)
    stream = io.StringIO()

    def setup(fmt="json"):
        setup_logging("info", fmt, stream=stream)
        return lambda: stream.getvalue().splitlines()

    yield setup
    set_worker(None)
    logging.captureWarnings(False)
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logging.getLogger("mysqlpool").setLevel(saved[2])
    sys.excepthook, threading.excepthook, sys.unraisablehook = saved[3:]


def test_each_line_names_its_worker_with_several_workers(output):
    lines = output("text")
    log = logging.getLogger("mysqlpool.pool")
    log.info("alone")
    set_worker(1)
    log.info("plain")
    log_event(log, "info", "with fields", pool="app", worker="not this one")
    assert lines()[0].endswith("mysqlpool.pool: alone")
    assert lines()[1].endswith("mysqlpool.pool: plain worker=1")
    assert lines()[2].endswith("mysqlpool.pool: with fields worker=1 pool=app field_worker=\"not this one\"")
    json_lines = output("json")
    log_event(log, "info", "with fields", pool="app")
    assert json.loads(json_lines()[-1])["worker"] == 1


def test_json_mode_keeps_tracebacks_warnings_and_uncaught_errors_inside_json_objects(output):
    lines = output("json")
    log = logging.getLogger("mysqlpool.client")
    try:
        raise ValueError("bad packet")
    except ValueError:
        log_event(log, "error", "client #7: internal error handling a packet; closing it", exc_info=True,
                  client_id=7, reason="protocol_error")
    warnings.warn("something deprecated", DeprecationWarning, stacklevel=1)
    try:
        raise RuntimeError("nobody caught me")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())

    async def failing():
        raise KeyError("lost task")

    async def leave_a_failed_task():
        task = asyncio.ensure_future(failing())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        del task  # never awaited: asyncio logs "Task exception was never retrieved"
    asyncio.run(leave_a_failed_task())
    gc.collect()

    class Leaky:
        def __del__(self):
            raise OSError("closing a socket twice")
    Leaky()  # Python would print "Exception ignored in: ..." and a traceback
    thread = threading.Thread(target=lambda: 1 / 0, name="resolver")
    thread.start()
    thread.join()
    records = [json.loads(line) for line in lines()]  # every line is one JSON object
    client, warned, uncaught, lost, ignored, in_thread = records
    assert client["client_id"] == 7 and client["reason"] == "protocol_error"
    assert "ValueError: bad packet" in client["exc"]
    assert warned["logger"] == "py.warnings" and "something deprecated" in warned["msg"]
    assert uncaught["level"] == "critical" and "RuntimeError: nobody caught me" in uncaught["exc"]
    assert lost["logger"] == "asyncio" and "KeyError: 'lost task'" in lost["exc"]
    assert "Exception ignored" in ignored["msg"] and "OSError: closing a socket twice" in ignored["exc"]
    assert "thread resolver" in in_thread["msg"] and "ZeroDivisionError" in in_thread["exc"]

# The Python load generator: a separate process (never the proxy's), asyncio
# on uvloop with aiomysql, or PyMySQL for the streamed large result. The
# orchestrator (bench/run.py) starts it, and it prints one JSON object per
# line on stdout; the last one is the result.
#
#   python -m bench.loadgen point   --port P --clients 32 --seconds 10
#       every client: SELECT c FROM sbtest1 WHERE id=<random>, in a loop
#   python -m bench.loadgen connect --port P --clients 8 --seconds 10
#       every request: connect, the same point select, close (COM_QUIT)
#   python -m bench.loadgen idle    --port P --count 5000
#       prints {"ready"}; on "go" from stdin opens `count` connections and
#       prints {"opened", ...}; on "close" (or EOF) closes them and exits
#   python -m bench.loadgen large   --port P --sql "SELECT ..." [--pause-every N --pause S]
#       streams the result unbuffered (SSCursor); the slow client sleeps
#       `pause` seconds after every `pause-every` rows
#
# point/connect take --start-at (a wall-clock time) so that several
# processes start together; their latency histograms merge exactly.
"""Load generator processes for bench/run.py."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import time
from pathlib import Path
from time import perf_counter

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stats import LatencyHistogram

POINT_SQL = "SELECT c FROM sbtest1 WHERE id={}"
MAX_ERROR_SAMPLES = 5


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def install_uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    uvloop.install()
    return "uvloop"


class Errors:
    def __init__(self) -> None:
        self.count = 0
        self.samples: list[str] = []

    def add(self, exc: BaseException) -> None:
        self.count += 1
        if len(self.samples) < MAX_ERROR_SAMPLES:
            self.samples.append(f"{type(exc).__name__}: {exc}")


async def _connect(opts, **extra):
    import aiomysql

    return await aiomysql.connect(host=opts.host, port=opts.port, user=opts.user, password=opts.password,
                                  db=opts.db, autocommit=True, connect_timeout=30, **extra)


async def _wait_until(wall: float) -> None:
    delay = wall - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


# -- point selects ---------------------------------------------------------------------------

async def point(opts) -> dict:
    errors = Errors()
    conns = []
    for _ in range(opts.clients):
        try:
            conns.append(await _connect(opts))
        except Exception as exc:  # reported, not raised
            errors.add(exc)
    if not conns:
        return {"ops": 0, "seconds": 0.0, "errors": errors.count, "error_samples": errors.samples,
                "hist": LatencyHistogram().to_json(), "clients": 0}
    hist = LatencyHistogram()
    await _wait_until(opts.start_at)
    started = perf_counter()
    deadline = started + opts.seconds
    counts = await asyncio.gather(*(_point_loop(c, deadline, hist, opts.table_size, errors) for c in conns))
    elapsed = perf_counter() - started
    for c in conns:
        c.close()
    return {"ops": sum(counts), "seconds": elapsed, "errors": errors.count, "error_samples": errors.samples,
            "hist": hist.to_json(), "clients": len(conns)}


async def _point_loop(conn, deadline: float, hist: LatencyHistogram, table_size: int, errors: Errors) -> int:
    rnd = random.Random()
    cur = await conn.cursor()
    done = 0
    while True:
        t0 = perf_counter()
        if t0 >= deadline:
            return done
        try:
            await cur.execute(POINT_SQL.format(rnd.randint(1, table_size)))
            await cur.fetchall()
        except Exception as exc:
            errors.add(exc)
            return done
        hist.add(perf_counter() - t0)
        done += 1


# -- connect per request ----------------------------------------------------------------------

async def connect(opts) -> dict:
    errors = Errors()
    hist = LatencyHistogram()
    await _wait_until(opts.start_at)
    started = perf_counter()
    deadline = started + opts.seconds
    counts = await asyncio.gather(*(_connect_loop(opts, deadline, hist, errors) for _ in range(opts.clients)))
    elapsed = perf_counter() - started
    return {"ops": sum(counts), "seconds": elapsed, "errors": errors.count, "error_samples": errors.samples,
            "hist": hist.to_json(), "clients": opts.clients}


async def _connect_loop(opts, deadline: float, hist: LatencyHistogram, errors: Errors) -> int:
    rnd = random.Random()
    done = 0
    while True:
        t0 = perf_counter()
        if t0 >= deadline:
            return done
        try:
            conn = await _connect(opts)
            try:
                cur = await conn.cursor()
                await cur.execute(POINT_SQL.format(rnd.randint(1, opts.table_size)))
                await cur.fetchall()
            finally:
                await conn.ensure_closed()
        except Exception as exc:
            errors.add(exc)
            await asyncio.sleep(0.01)
            continue
        hist.add(perf_counter() - t0)
        done += 1


# -- idle clients ------------------------------------------------------------------------------

async def idle(opts) -> dict:
    loop = asyncio.get_running_loop()
    emit({"ready": True, "nofile": raise_nofile()})
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if line.strip() != "go":
        return {"opened": 0, "aborted": True}
    errors = Errors()
    conns = []
    gate = asyncio.Semaphore(opts.concurrency)
    started = time.time()

    async def open_one() -> None:
        async with gate:
            try:
                conns.append(await _connect(opts))
            except Exception as exc:
                errors.add(exc)

    await asyncio.gather(*(open_one() for _ in range(opts.count)))
    emit({"opened": len(conns), "failed": errors.count, "error_samples": errors.samples,
          "started_at": started, "done_at": time.time()})
    await loop.run_in_executor(None, sys.stdin.readline)  # "close" or EOF
    for c in conns:
        c.close()
    await asyncio.sleep(0.1)
    return {"closed": len(conns)}


# -- a large result, streamed -------------------------------------------------------------------

def large(opts) -> dict:
    import pymysql
    import pymysql.cursors

    started = perf_counter()
    rows = 0
    error = None
    first_row_s = None
    try:
        conn = pymysql.connect(host=opts.host, port=opts.port, user=opts.user, password=opts.password,
                               database=opts.db, autocommit=True, connect_timeout=30,
                               cursorclass=pymysql.cursors.SSCursor, read_timeout=600)
    except Exception as exc:
        return {"rows": 0, "seconds": 0.0, "error": f"{type(exc).__name__}: {exc}"}
    try:
        cur = conn.cursor()
        started = perf_counter()
        cur.execute(opts.sql)
        next_pause = opts.pause_every if opts.pause_every > 0 else None
        while True:
            chunk = cur.fetchmany(1000)
            if not chunk:
                break
            if first_row_s is None:
                first_row_s = perf_counter() - started
            rows += len(chunk)
            if next_pause is not None and rows >= next_pause:
                time.sleep(opts.pause)
                next_pause += opts.pause_every
        cur.close()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    elapsed = perf_counter() - started
    try:
        conn.close()
    except Exception:
        pass
    return {"rows": rows, "seconds": elapsed, "first_row_s": first_row_s, "error": error}


# -- main ----------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("mode", choices=("point", "connect", "idle", "large"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", default="bench")
    p.add_argument("--password", default="")
    p.add_argument("--db", default="sbtest")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--start-at", type=float, default=0.0, help="wall-clock time to start at (sync processes)")
    p.add_argument("--table-size", type=int, default=100_000)
    p.add_argument("--count", type=int, default=1000, help="idle: connections to open")
    p.add_argument("--concurrency", type=int, default=64, help="idle: handshakes in flight at once")
    p.add_argument("--sql", default="", help="large: the query")
    p.add_argument("--pause-every", type=int, default=0, help="large: rows between pauses (0 = never)")
    p.add_argument("--pause", type=float, default=0.0, help="large: seconds per pause")
    return p


def main(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    raise_nofile()
    if opts.mode == "large":
        emit(large(opts))
        return 0
    loop_name = install_uvloop()
    runner = {"point": point, "connect": connect, "idle": idle}[opts.mode]
    result = asyncio.run(runner(opts))
    result["loop"] = loop_name
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

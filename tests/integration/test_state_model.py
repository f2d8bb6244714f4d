# State-isolation model test: a seeded generator drives MODEL_CLIENTS (32)
# clients through a pool of 4 backends with transactions, autocommit
# statements, SET SESSION variables, USE / COM_INIT_DB, SET NAMES, user
# variables, temporary tables, binary prepared statements (prepare,
# execute, re-execute after the backends churned, close), LAST_INSERT_ID()
# and disconnects mid-transaction. After every step the acting client is
# checked against a model of what it alone has done (tests/model/), and
# every 97 steps all of them are, with what is committed for every owner;
# the proxy may pin a client only for its transaction or temporary tables.
# At the end: the server never saw more than 4 connections of `app`, and
# no backend was closed dirty or failed its reset unless a disconnect
# explains it. test_model_agrees_with_mariadb_directly runs the same
# generator with each client on its own server connection: the model's
# own check (a failure there is a bug in tests/model/, not in the proxy).
#
#   MODEL_SEED   run this seed only (default: a fixed seed, then a random one)
#   MODEL_STEPS  steps per seed (default 6000; scripts/model-test.sh runs 100,000)
#   MODEL_CLIENTS clients (default 32)
#   MODEL_DIRECT_STEPS steps of the model's self-check straight against MariaDB (default 400)
#
# A failure names the seed, the step and the command that reproduces it.
from __future__ import annotations

import os
import random
import sys
import time
from contextlib import closing

import pytest

from tests.model.clients import DRIVERS
from tests.model.model import KV_TABLE, ROWS_TABLE, SCHEMAS, Oracle
from tests.model.runner import ModelFailure, Runner
from tests.support.peak import PeakSampler
from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

FIXED_SEED = 20240611
POOL_SIZE = 4
MAX_HOLDERS = 3
STEPS = int(os.environ.get("MODEL_STEPS", "6000"))
CLIENTS = int(os.environ.get("MODEL_CLIENTS", "32"))
DIRECT_STEPS = int(os.environ.get("MODEL_DIRECT_STEPS", "400"))
ENV_SEED = os.environ.get("MODEL_SEED")


def _seeds():
    if ENV_SEED:
        return [pytest.param(int(ENV_SEED), id="seed")]
    return [pytest.param(FIXED_SEED, id="fixed-seed"),
            pytest.param(random.SystemRandom().randrange(2 ** 32), id="random-seed")]


@pytest.fixture
def oracle(app_server):
    """Fresh tables for the model, and what the server reads back for every setting (asked directly)."""
    for schema in SCHEMAS:
        if schema != APP_DB:
            app_server.create_database(schema)
        app_server.execute(f"DROP TABLE IF EXISTS `{schema}`.{KV_TABLE}")
        app_server.execute(f"CREATE TABLE `{schema}`.{KV_TABLE} (id INT PRIMARY KEY, tag VARCHAR(32)) ENGINE=InnoDB")
        app_server.execute(f"INSERT INTO `{schema}`.{KV_TABLE} VALUES (1, '{schema}')")
    app_server.execute(f"DROP TABLE IF EXISTS {ROWS_TABLE}")
    app_server.execute(f"CREATE TABLE {ROWS_TABLE} (id BIGINT AUTO_INCREMENT PRIMARY KEY, owner INT NOT NULL, "
                       f"v VARCHAR(64) NOT NULL, KEY (owner)) ENGINE=InnoDB")
    with closing(app_server.connect()) as root:
        found = Oracle.build(root)
    for driver, cls in DRIVERS.items():
        for charset in ("utf8mb4", "latin1"):
            client = cls(app_server.host, app_server.port, APP_USER, APP_PASSWORD, APP_DB, charset)
            found.add_initial(driver, charset, lambda sql, client=client: client.query(sql).rows)
            client.close(abrupt=False)
    wait_until(lambda: not app_server.connection_ids(APP_USER), 10, "the oracle's own connections gone")
    return found


def _reproduce(seed: int, step: int) -> str:
    return (f"MODEL_SEED={seed} MODEL_STEPS={step + 1} MODEL_CLIENTS={CLIENTS} "
            f"./scripts/test.sh tests/integration/test_state_model.py")


def _progress(steps: int, started: float):
    def report(step: int) -> None:
        if steps >= 20000 and (step + 1) % 10000 == 0:
            print(f"[state model] {step + 1}/{steps} steps, {time.monotonic() - started:.0f}s", file=sys.stderr)
    return report


@pytest.mark.slow
@pytest.mark.timeout(max(300, 120 + STEPS * 0.1))
@pytest.mark.parametrize("seed", _seeds())
def test_state_model(seed, proxy_factory, app_server, oracle):
    proxy = proxy_factory(pool={"max_size": POOL_SIZE, "checkout_timeout": 15})

    def inspect(cid: int) -> str:
        def read():
            c = proxy.proxy.clients.get(cid)
            if c is None:
                return "not connected"
            b = c.backend
            return (f"state={c.state.value} pins={[r.value for r in c.pinned_reasons()]} "
                    f"backend={'none' if b is None else b.thread_id} session={c.session.state} "
                    f"last_insert_id={c.session.last_insert_id} statements={sorted(c.session.statements)}")
        return proxy.call(read)

    def pins(cid: int):
        def read():
            c = proxy.proxy.clients.get(cid)
            return None if c is None else [r.value for r in c.pinned_reasons()]
        return proxy.call(read)

    sampler = PeakSampler(app_server, APP_USER)
    sampler.start()
    runner = Runner(seed=seed, clients=CLIENTS, oracle=oracle, host=proxy.host, port=proxy.port, user=APP_USER,
                    password=APP_PASSWORD, max_holders=MAX_HOLDERS, inspect=inspect, pins=pins)
    started = time.monotonic()
    failure = None
    try:
        runner.start()
        runner.run(STEPS, on_step=_progress(STEPS, started))
    except ModelFailure as exc:
        failure = exc
    finally:
        runner.close()
        peak = sampler.stop()
    if failure is not None:
        pytest.fail(f"state model: leak or wrong state with MODEL_SEED={seed} at step {failure.step} "
                    f"(client {failure.slot}): {failure.message}\n"
                    f"reproduce: {_reproduce(seed, failure.step)}\n"
                    f"the model itself, same seed straight against MariaDB: MODEL_SEED={seed} "
                    f"MODEL_DIRECT_STEPS={failure.step + 1} ./scripts/test.sh "
                    f"tests/integration/test_state_model.py -k direct\n{failure.report}", pytrace=False)
    elapsed = time.monotonic() - started
    print(f"[state model] seed {seed}: {STEPS} steps, {CLIENTS} clients in {elapsed:.1f}s; "
          f"{dict(sorted(runner.stats.items()))}", file=sys.stderr)
    # Resets of backends left by the last disconnects finish in the background.
    wait_until(lambda: proxy.client_count() == 0 and proxy.pool_stats()["busy"] == 0, 15,
               "every client gone and every backend it left reset or closed")
    closed = proxy.pool_stats()["closed"]
    assert peak <= POOL_SIZE, (f"the server saw {peak} connections of {APP_USER} (seed {seed}): {sampler.at_peak}; "
                               f"backends the proxy closed: {closed}")
    disconnects = runner.stats["disconnects_mid_txn"] + runner.stats["disconnects_idle"]
    assert closed.get("reset_failed", 0) == 0, f"backend resets failed: {closed} (seed {seed})"
    assert closed.get("dirty", 0) <= disconnects, (
        f"{closed.get('dirty', 0)} backends closed dirty, only {disconnects} disconnects could explain it: "
        f"{closed} (seed {seed})")


@pytest.mark.parametrize("seed", [pytest.param(int(ENV_SEED) if ENV_SEED else FIXED_SEED, id="direct")])
def test_model_agrees_with_mariadb_directly(seed, app_server, oracle):
    """The model's self-check: the same generator, each client on its own server connection, no proxy."""
    runner = Runner(seed=seed, clients=CLIENTS, oracle=oracle, host=app_server.host, port=app_server.port,
                    user=APP_USER, password=APP_PASSWORD, max_holders=MAX_HOLDERS)
    try:
        runner.start()
        runner.run(DIRECT_STEPS)
        print(f"[state model] direct, seed {seed}: {DIRECT_STEPS} steps; {dict(sorted(runner.stats.items()))}",
              file=sys.stderr)
    except ModelFailure as exc:
        pytest.fail(f"the model disagrees with MariaDB itself (a bug in tests/model/, not in the proxy) with "
                    f"MODEL_SEED={seed} at step {exc.step}: {exc.message}\n{exc.report}", pytrace=False)
    finally:
        runner.close()

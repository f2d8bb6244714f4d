# The network fuzz test (issue 10 item 20, issue 16 item 6): real client sessions, mutated,
# each replayed on its own connection after a normal login, against a real proxy in front of
# a private MariaDB, while bystander clients run a fixed workload on the same pool.
#
# The corpus (tests/fuzz/corpus/) holds what PyMySQL, mysql-connector (prepared statements,
# SEND_LONG_DATA, cursors and FETCH) and mysqlclient sent after login: text and binary
# protocol, LOCAL INFILE, multi-statements, COM_CHANGE_USER, COM_RESET_CONNECTION,
# COM_SET_OPTION, COM_PING... tests/fuzz/mutate.py mutates each session at packet and SQL level;
# tests/fuzz/replay.py plays it and decides what is owed an answer from the bytes the proxy
# reads (lying headers included). The test asserts, for FUZZ_SESSIONS sessions:
#
#   1. no bystander (PyMySQL text protocol, mysql-connector binary protocol, transactions
#      checked against what each committed, its own session state) ever sees an error, a
#      stall over 15 s, or a wrong result;
#   2. every fuzzed connection gets whatever it is owed, an answer or a close, within 15 s,
#      answers stay in step with commands (a sentinel SELECT at the end gets its own row),
#      no client is ever sent an internal error, and each new connection logs in;
#   3. the proxy's log (the `mysqlpool` and `asyncio` loggers) has no traceback, no
#      "internal error" and no exception escaping a callback;
#   4. afterwards SHOW CLIENTS lists only the bystanders, the pool is within max_size with
#      nothing closing or waiting, and the server holds exactly the pool's connections;
#   5. a new client is served normally (text and binary protocol).
#
# test_fuzz_model_agrees_with_mariadb_directly replays sessions straight against MariaDB: a
# failure there is a bug of the fuzzer's model (tests/fuzz/replay.py), not of the proxy.
#
#   FUZZ_SEED      the seed (default: random, printed); session i is random.Random(f"{seed}:{i}")
#   FUZZ_SESSIONS  sessions to run (default 2500: about a minute on 2 cores; scripts/fuzz.sh runs more)
#   FUZZ_SESSION   run only this session of FUZZ_SEED (to replay a failure; its transcript is printed)
#   FUZZ_WORKERS   fuzzed sessions at a time (default 2)
#   FUZZ_MAX_FAILURES  failed sessions after which no more are started (default 10)
#
# A failure prints the seed, each failing session's plan and transcript, and the command that
# replays it.
from __future__ import annotations

import itertools
import logging
import os
import random
import threading
import time
from collections import Counter
from contextlib import closing

import mysql.connector
import pymysql
import pytest

from tests.fuzz.corpus import load_corpus
from tests.fuzz.mutate import plan_for
from tests.fuzz.replay import Login, Outcome, replay
from tests.fuzz.workload import (
    BYSTANDER_KINDS,
    BYSTANDER_USER,
    FUZZ_PASSWORD,
    FUZZ_USER,
    PROXY_USERS,
    SERVER_OPTIONS,
    bystander_session,
    prepare_server,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SESSIONS = int(os.environ.get("FUZZ_SESSIONS", "2500"))
ENV_SEED = os.environ.get("FUZZ_SEED")
ONLY = os.environ.get("FUZZ_SESSION")
WORKERS = int(os.environ.get("FUZZ_WORKERS", "2"))
DIRECT_SESSIONS = 200
BOUND = 15.0  # seconds anything owed may take: an answer, a close, a settled pool
POLL_INTERVAL = 0.25  # seconds between two looks at a condition (some ask the admin console)
POOL_SIZE = 4
BYSTANDERS = 3
ADMIN_PASSWORD = "fuzz-admin"
MAX_PACKET = SERVER_OPTIONS["max_allowed_packet"]
REPORTED = 5  # failing sessions shown in full, the earliest first
SUSPECT = 2.0  # seconds before a bystander's error in which the fuzzed sessions running are named
MAX_FAILURES = int(os.environ.get("FUZZ_MAX_FAILURES", "10"))  # failed sessions after which none are started


class LogWatch(logging.Handler):
    """Keeps every record of the proxy's loggers (and asyncio's, where exceptions escaping a
    protocol callback or a task end up) from INFO up."""

    LOGGERS = ("mysqlpool", "asyncio")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self._levels: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> LogWatch:
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.INFO)
            logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            logger.removeHandler(self)
            logger.setLevel(self._levels[name])

    def problems(self) -> list[str]:
        found = []
        for record in self.records:
            text = record.getMessage()
            if record.exc_info or "Traceback" in text or "internal error" in text or (
                    record.name.startswith("asyncio") and record.levelno >= logging.ERROR):
                found.append(self.describe(record) if record.exc_info else f"{record.name}: {text}")
        return found

    @staticmethod
    def describe(record: logging.LogRecord) -> str:
        return logging.Formatter("%(name)s %(levelname)s: %(message)s").format(record)


def wait_for(condition, timeout: float = BOUND):
    """Poll condition() until it returns something true, for at most `timeout` seconds; its last value
    either way (the callers say what was left when it is false)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(POLL_INTERVAL)  # the polling interval of this bounded wait, not a wait for an event


class Admin:
    """One connection to the proxy's admin console."""

    def __init__(self, port: int):
        self.conn = pymysql.connect(host="127.0.0.1", port=port, user="admin", password=ADMIN_PASSWORD,
                                    connect_timeout=10, read_timeout=30, cursorclass=pymysql.cursors.DictCursor)

    def rows(self, command: str) -> list[dict]:
        with self.conn.cursor() as cur:
            cur.execute(command)
            return list(cur.fetchall())


@pytest.fixture
def fuzz_server(mariadb_factory):
    server = mariadb_factory(**SERVER_OPTIONS)
    prepare_server(server)
    return server


@pytest.fixture
def fuzzed(fuzz_server, proxy_factory):
    """The proxy (pool of POOL_SIZE shared by the fuzz and bystander users) and its admin console."""
    proxy = proxy_factory(fuzz_server, users=PROXY_USERS, pool={"max_size": POOL_SIZE},
                          admin={"listen": "127.0.0.1:0", "password": ADMIN_PASSWORD})
    admin = Admin(proxy.call(lambda: proxy.services.admin.sockets[0].getsockname()[1]))
    yield proxy, admin
    admin.conn.close()


def run_sessions(corpus, seed: int, indices, host: str, port: int) -> list[Outcome]:
    """Replay the sessions, WORKERS at a time; once MAX_FAILURES have failed, start no more (a proxy that
    stalls would make every later session wait out its bound too)."""
    by_name = {session.name: session for session in corpus}
    todo = iter(indices)
    lock = threading.Lock()
    outcomes: list[Outcome] = []

    def work() -> None:
        while True:
            with lock:
                if sum(o.failed for o in outcomes) >= MAX_FAILURES:
                    return
                index = next(todo, None)
            if index is None:
                return
            plan = plan_for(corpus, seed, index)
            session = by_name[plan.corpus]
            login = Login(host, port, FUZZ_USER, FUZZ_PASSWORD, session.database, session.capabilities,
                          session.charset)
            outcome = replay(plan, login, bound=BOUND, max_packet=MAX_PACKET)
            with lock:
                outcomes.append(outcome)

    workers = [threading.Thread(target=work, name=f"fuzz-{n}", daemon=True) for n in range(WORKERS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sorted(outcomes, key=lambda o: o.started)


def summary(outcomes: list[Outcome], seconds: float) -> str:
    results = Counter(o.result for o in outcomes)
    errors = Counter()
    for o in outcomes:
        errors.update(o.errors)
    slowest = max(outcomes, key=lambda o: o.seconds)
    return (f"{len(outcomes)} sessions in {seconds:.1f}s: {dict(results)}; errors seen (errno: count) "
            f"{dict(errors.most_common(12))}; slowest session {slowest.plan.index} ({slowest.seconds:.1f}s)")


def reproduce(seed: int, index: int) -> str:
    return f"FUZZ_SEED={seed} FUZZ_SESSION={index} ./scripts/fuzz.sh"


class Checks:
    """The post-run checks: each one's failure (or exception: a proxy that stopped answering) is a line of the
    report, so that one failed check never hides the others."""

    def __init__(self) -> None:
        self.report: list[str] = []

    def run(self, what: str, check) -> None:
        try:
            problem = check()
        except Exception as exc:  # reported with what was being checked
            problem = f"{exc!r}"
        if problem:
            self.report.append(f"{what}: {problem}")


def leftover_clients(admin: Admin) -> str | None:
    def others():
        return [r for r in admin.rows("SHOW CLIENTS") if r["user"] != BYSTANDER_USER]

    if wait_for(lambda: not others()):
        return None
    return f"still listed after {BOUND}s: {others()[:10]}"


def unsettled_pool(proxy, admin: Admin) -> str | None:
    pool = proxy.proxy.pools[FUZZ_USER]

    def settled():
        return proxy.call(lambda: not pool.closing and not pool.waiters and pool.connecting == 0
                          and len(pool.idle) + len(pool.busy) <= pool.max_size)

    if wait_for(settled):
        return None
    return f"not settled after {BOUND}s: {proxy.call(lambda: repr(pool))}; SHOW POOLS {admin.rows('SHOW POOLS')}"


def server_disagrees(proxy, server) -> str | None:
    """The server holds exactly the connections the pool knows of: none was forgotten open."""
    pool = proxy.proxy.pools[FUZZ_USER]

    def pool_size():
        return proxy.call(lambda: len(pool.idle) + len(pool.busy) + len(pool.closing) + pool.connecting)

    if wait_for(lambda: server.connection_count(FUZZ_USER) == pool_size()):
        return None
    return f"the server has {server.connection_count(FUZZ_USER)} connections, the pool {proxy.call(lambda: repr(pool))}"


def new_clients_fail(proxy) -> str | None:
    with closing(proxy.connect(user=FUZZ_USER, password=FUZZ_PASSWORD, database="fuzzdb",
                               read_timeout=BOUND)) as text, text.cursor() as cur:
        cur.execute("SELECT COUNT(*) > 0, 'still served' FROM t")
        got = cur.fetchall()
        if got != ((1, "still served"),):
            return f"a new PyMySQL client got {got}"
    binary = mysql.connector.connect(host=proxy.host, port=proxy.port, user=FUZZ_USER, password=FUZZ_PASSWORD,
                                     database="fuzzdb", use_pure=True, connection_timeout=BOUND)
    try:
        cur = binary.cursor(prepared=True)
        cur.execute("SELECT ? * 2, CONCAT(?, '!')", (21, "binary"))
        got = [tuple(row) for row in cur.fetchall()]
        return None if got == [(42, "binary!")] else f"a new mysql-connector client got {got}"
    finally:
        binary.close()


@pytest.mark.timeout(max(600, SESSIONS))
def test_fuzz(fuzzed, fuzz_server):
    proxy, admin = fuzzed
    seed = int(ENV_SEED) if ENV_SEED else random.SystemRandom().randrange(2 ** 32)
    indices = [int(ONLY)] if ONLY else range(SESSIONS)
    print(f"\n[fuzz] FUZZ_SEED={seed}, {len(indices)} sessions, {WORKERS} at a time", flush=True)
    corpus = load_corpus()
    kinds = itertools.cycle(BYSTANDER_KINDS)
    session = bystander_session(fuzz_server)
    bystanders = [next(kinds)(proxy.host, proxy.port, owner=n + 1, seed=seed + n, session=session)
                  for n in range(BYSTANDERS)]
    checks = Checks()
    with LogWatch() as watch:
        for b in bystanders:
            b.start()
        assert wait_for(lambda: all(b.operations or b.errors for b in bystanders)), bystanders
        started = time.monotonic()
        outcomes = run_sessions(corpus, seed, indices, proxy.host, proxy.port)
        elapsed = time.monotonic() - started
        print(f"[fuzz] {summary(outcomes, elapsed)}", flush=True)
        if ONLY:
            print(outcomes[0].report())
        checks.run("fuzzed clients left behind (SHOW CLIENTS)", lambda: leftover_clients(admin))
        checks.run("the pool after the run", lambda: unsettled_pool(proxy, admin))
        checks.run(f"the server's connections of {FUZZ_USER}", lambda: server_disagrees(proxy, fuzz_server))
        checks.run("a new client after the run", lambda: new_clients_fail(proxy))
        for b in bystanders:
            b.stop()
        log_problems = watch.problems()

    report = []
    findings = [o for o in outcomes if o.failed]
    if findings:
        report.append(f"{len(findings)} fuzzed sessions failed {dict(Counter(o.result for o in findings))}"
                      + (f" (stopped after {MAX_FAILURES} failures)" if len(findings) >= MAX_FAILURES else "") + ":\n"
                      + "\n".join(f"  session {o.plan.index}: {o.result}: {o.problem[:160]}" for o in findings))
        report.extend(f"--- replay it: {reproduce(seed, o.plan.index)}\n{o.report()}" for o in findings[:REPORTED])
    bystander_errors = sorted(e for b in bystanders for e in b.errors)
    if bystander_errors:
        first = bystander_errors[0][0]
        suspects = [o.plan.index for o in outcomes if o.started <= first and o.started + o.seconds >= first - SUSPECT]
        report.append(f"{len(bystander_errors)} bystander errors; fuzzed sessions running in the {SUSPECT:.0f}s before "
                      f"the first one: {suspects}; the first errors:\n" + "\n".join(e for _, e in bystander_errors[:5]))
    if not all(b.operations for b in bystanders):
        report.append(f"a bystander did nothing: {bystanders}")
    if log_problems:
        report.append(f"{len(log_problems)} problems in the proxy's log, the first ones:\n"
                      + "\n".join(log_problems[:5]))
    report += checks.report
    assert not report, (f"fuzz run with FUZZ_SEED={seed} ({summary(outcomes, elapsed)}):\n\n" + "\n\n".join(report))


def test_fuzz_model_agrees_with_mariadb_directly(fuzz_server):
    """The replay's idea of what is owed, checked against MariaDB itself: no session straight to the server
    may hang, fall out of step or garble (sessions of FUZZ_SEED, or of a fixed seed)."""
    seed = int(ENV_SEED) if ENV_SEED else 20241205
    outcomes = run_sessions(load_corpus(), seed, range(DIRECT_SESSIONS), fuzz_server.host, fuzz_server.port)
    findings = [o for o in outcomes if o.failed]
    assert not findings, (f"the fuzzer's model disagrees with MariaDB (seed {seed}) in {len(findings)} sessions:\n\n"
                          + "\n\n".join(o.report() for o in findings[:REPORTED]))

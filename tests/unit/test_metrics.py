# Tests of mysqlpool_proxy.metrics: a real Proxy object built on a fresh
# event loop (never started, so nothing connects), its plain counters and
# collections set by hand, scraped through the collector's own registry with
# generate_latest and parsed back with prometheus_client's parser.
from __future__ import annotations

import asyncio
from collections import deque
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mysqlpool_proxy import BUILD, __version__
from mysqlpool_proxy.backend.connection import BackendConnection
from mysqlpool_proxy.backend.pool import WAIT_BUCKETS
from mysqlpool_proxy.config import load_config
from mysqlpool_proxy.constants import SERVER_STATUS
from mysqlpool_proxy.core.client_session import Command
from mysqlpool_proxy.core.pins import PinReason
from mysqlpool_proxy.core.session import SessionState
from mysqlpool_proxy.core.states import ClientState
from mysqlpool_proxy.ops.metrics import CLIENT_STATE_LABEL, build_registry, cumulative_buckets, multiplexing_ratio
from mysqlpool_proxy.protocol.command import spec_for
from mysqlpool_proxy.proxy.health import READY, Cause, Readiness
from mysqlpool_proxy.proxy.proxy import Proxy, ProxyState
from mysqlpool_proxy.reasons import BackendCloseReason, ClientCloseReason, RefusalReason
from tests.fakes import ReadinessSet

IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS

TWO_POOLS = {
    "MYSQLPOOL_USERS_0_NAME": "app", "MYSQLPOOL_USERS_0_PASSWORD": "pw",
    "MYSQLPOOL_USERS_1_NAME": "report", "MYSQLPOOL_USERS_1_PASSWORD": "pw", "MYSQLPOOL_USERS_1_MAX_SIZE": "3",
}

EXPECTED_FAMILIES = {
    # family name as the parser reports it (counters without _total) -> type
    "mysqlpool_info": "gauge",
    "mysqlpool_ready": "gauge",
    "mysqlpool_not_ready": "gauge",
    "mysqlpool_client_connections": "gauge",
    "mysqlpool_client_connections_max": "gauge",
    "mysqlpool_client_connections_accepted": "counter",
    "mysqlpool_client_refused": "counter",
    "mysqlpool_client_closed": "counter",
    "mysqlpool_backend_connections": "gauge",
    "mysqlpool_backend_connections_max": "gauge",
    "mysqlpool_backend_connects": "counter",
    "mysqlpool_backend_connect_errors": "counter",
    "mysqlpool_backend_closed": "counter",
    "mysqlpool_checkout_wait_seconds": "histogram",
    "mysqlpool_waiting_clients": "gauge",
    "mysqlpool_queries": "counter",
    "mysqlpool_transactions": "counter",
    "mysqlpool_bytes": "counter",
    "mysqlpool_pinned_clients": "gauge",
    "mysqlpool_pins": "counter",
    "mysqlpool_multiplexing_ratio": "gauge",
    "mysqlpool_pool_client_connections": "gauge",
    "mysqlpool_oldest_waiter_seconds": "gauge",
    "mysqlpool_backend_ping_seconds": "histogram",
    "mysqlpool_backend_connection_age_max_seconds": "gauge",
    "mysqlpool_backend_connection_age_avg_seconds": "gauge",
    "mysqlpool_query_duration_seconds": "histogram",
    "mysqlpool_transaction_duration_seconds": "histogram",
    "mysqlpool_pool_bytes": "counter",
}
# prometheus-client's process, platform and gc collectors, served beside them (Linux: /proc).
RUNTIME_FAMILIES = {
    "process_cpu_seconds": "counter", "process_resident_memory_bytes": "gauge",
    "process_virtual_memory_bytes": "gauge", "process_open_fds": "gauge", "process_max_fds": "gauge",
    "process_start_time_seconds": "gauge", "python_info": "gauge", "python_gc_objects_collected": "counter",
    "python_gc_collections": "counter",
}

ALLOWED_LABELS = {"pool", "state", "reason", "code", "command", "direction", "version", "mode", "build", "le",
                  "generation", "implementation", "major", "minor", "patchlevel"}


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def make_proxy(loop, **env: str) -> Proxy:
    return Proxy(load_config(None, environ={**TWO_POOLS, **env}), loop)


@pytest.fixture
def proxy(loop) -> Proxy:
    return make_proxy(loop)


def scrape(proxy: Proxy) -> dict:
    """family name -> Metric, parsed from the text exposition."""
    text = generate_latest(build_registry(proxy)).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(families: dict, family: str, name: str | None = None) -> dict[tuple, float]:
    """{sorted label items: value} of one family's samples (optionally only sample `name`)."""
    return {tuple(sorted(s.labels.items())): s.value for s in families[family].samples
            if name is None or s.name == name}


def value(families: dict, family: str, **labels: str) -> float:
    return samples(families, family)[tuple(sorted(labels.items()))]


def add_client(proxy: Proxy, state: ClientState, pool: str | None = "app", *, status: int = 0,
               holds_backend: bool = False):
    client = proxy.new_client()
    client.state = state
    client.pool = proxy.pools[pool] if pool else None
    client.session.learn_status(status)
    client.lease.backend = held_backend(proxy, client.pool) if holds_backend else None
    return client


def held_backend(proxy: Proxy, pool) -> BackendConnection:
    """A backend connection, never connected, for a client to hold."""
    return BackendConnection(backend_id=1, pool=pool, key=0, thread_id=1, session=SessionState(None, {}),
                             created_at=0.0, lifetime=3600.0, loop=proxy.loop)


# -- the families -----------------------------------------------------------------------

def test_every_family_has_its_type_and_a_help_text(proxy):
    families = scrape(proxy)
    assert {name: f.type for name, f in families.items() if name.startswith("mysqlpool_")} == EXPECTED_FAMILIES
    for family in families.values():
        if family.name.startswith("mysqlpool_"):
            assert len(family.documentation) > 20, family.name


def test_process_and_python_runtime_families_are_served_too(proxy):
    families = scrape(proxy)
    assert {name: families[name].type for name in RUNTIME_FAMILIES if name in families} == RUNTIME_FAMILIES
    assert value(families, "process_resident_memory_bytes") > 0
    assert value(families, "process_start_time_seconds") > 1.7e9


def test_runtime_families_carry_the_worker_label_too(loop):
    from mysqlpool_proxy.workers import WorkerSlot
    proxy = make_proxy(loop)
    proxy.worker = WorkerSlot(1, 2)
    families = scrape(proxy)
    assert {s.labels.get("worker") for s in families["process_resident_memory_bytes"].samples} == {
        proxy.worker.label}


def test_counters_are_exported_with_the_total_suffix(proxy):
    text = generate_latest(build_registry(proxy)).decode()
    for name, kind in EXPECTED_FAMILIES.items():
        if kind == "counter":
            assert f"# TYPE {name}_total counter" in text


def test_the_collector_lives_in_its_own_registry_not_the_global_one(proxy):
    build_registry(proxy)
    assert REGISTRY.get_sample_value("mysqlpool_ready") is None
    assert not [m for m in REGISTRY.collect() if m.name.startswith("mysqlpool_")]


def test_info_carries_version_mode_and_build(loop):
    families = scrape(make_proxy(loop, MYSQLPOOL_POOL_MODE="session"))
    assert samples(families, "mysqlpool_info") == {
        (("build", BUILD), ("mode", "session"), ("version", __version__)): 1.0}


def test_ready_and_its_reason_follow_proxy_readiness(proxy):
    proxy = ReadinessSet(proxy)
    families = scrape(proxy)  # never started: STARTING
    assert value(families, "mysqlpool_ready") == 0
    assert {labels: v for labels, v in samples(families, "mysqlpool_not_ready").items() if v} == {
        (("reason", "starting"),): 1}
    refused = Readiness(Cause.LOGIN_REFUSED, "backend login refused for pool 'app': 1045 Access denied")
    proxy.answer = refused
    families = scrape(proxy)
    assert value(families, "mysqlpool_ready") == 0
    assert {labels: v for labels, v in samples(families, "mysqlpool_not_ready").items() if v} == {
        (("reason", "backend_login_refused"),): 1}
    proxy.answer = READY
    families = scrape(proxy)
    assert value(families, "mysqlpool_ready") == 1
    assert set(samples(families, "mysqlpool_not_ready").values()) == {0}


def test_every_not_ready_reason_is_exported(proxy):
    families = scrape(proxy)
    assert {dict(labels)["reason"] for labels in samples(families, "mysqlpool_not_ready")} == {
        c.value for c in Cause}


# -- clients ----------------------------------------------------------------------------

def test_client_connections_by_state(proxy):
    for state in (ClientState.READY, ClientState.READY, ClientState.CHECKOUT, ClientState.ACTIVE,
                  ClientState.INFILE, ClientState.LOCAL):
        add_client(proxy, state)
    add_client(proxy, ClientState.GREETING, pool=None)
    add_client(proxy, ClientState.HANDSHAKE, pool=None)
    proxy.stats.accepted = 8
    families = scrape(proxy)
    assert samples(families, "mysqlpool_client_connections") == {
        (("state", "idle"),): 2, (("state", "waiting"),): 1, (("state", "active"),): 3,
        (("state", "handshake"),): 2,
    }
    assert value(families, "mysqlpool_client_connections_accepted") == 8
    assert value(families, "mysqlpool_client_connections_max") == proxy.config.proxy.max_client_connections


def test_every_live_client_state_has_a_label():
    assert set(CLIENT_STATE_LABEL) == set(ClientState) - {ClientState.CLOSED}


def test_refusals_list_every_reason_even_at_zero(proxy):
    proxy.refused(RefusalReason.QUEUE_FULL)
    proxy.refused(RefusalReason.QUEUE_FULL)
    proxy.refused(RefusalReason.AUTH_FAILED)
    refused = samples(scrape(proxy), "mysqlpool_client_refused", "mysqlpool_client_refused_total")
    assert refused == {
        (("reason", "max_clients"),): 0, (("reason", "checkout_timeout"),): 0, (("reason", "queue_full"),): 2,
        (("reason", "auth_failed"),): 1, (("reason", "shutting_down"),): 0,
        (("reason", "backend_unreachable"),): 0, (("reason", "backend_login_refused"),): 0,
    }


def test_client_closes_list_every_reason(proxy):
    proxy.stats.client_closed[ClientCloseReason.QUIT.value] += 5
    closed = samples(scrape(proxy), "mysqlpool_client_closed", "mysqlpool_client_closed_total")
    assert {labels[0][1] for labels in closed} == {r.value for r in ClientCloseReason}
    assert closed[(("reason", "quit"),)] == 5


# -- backends ---------------------------------------------------------------------------

class StandInBackend:
    """A backend connection in a pool's collections, as the collector reads it."""

    def __init__(self, created_at: float):
        self.created_at = created_at


def backends(proxy: Proxy, n: int, age: float = 0.0) -> list:
    return [StandInBackend(proxy.loop.time() - age) for _ in range(n)]


def test_backend_connections_per_pool_and_state(proxy):
    app = proxy.pools["app"]
    app.idle.extend(backends(proxy, 2))
    app.busy.update(backends(proxy, 3))
    app.opening.append(0)
    families = scrape(proxy)
    assert samples(families, "mysqlpool_backend_connections") == {
        (("pool", "app"), ("state", "idle")): 2, (("pool", "app"), ("state", "in_use")): 3,
        (("pool", "app"), ("state", "connecting")): 1,
        (("pool", "report"), ("state", "idle")): 0, (("pool", "report"), ("state", "in_use")): 0,
        (("pool", "report"), ("state", "connecting")): 0,
    }
    assert samples(families, "mysqlpool_backend_connections_max") == {
        (("pool", "app"),): 10, (("pool", "report"),): 3}


def test_connects_errors_and_closes(proxy):
    stats = proxy.pools["app"].stats
    stats.connects = 7
    stats.connect_errors[2003] += 4
    stats.connect_errors[1045] += 1
    stats.closed[BackendCloseReason.IDLE_TIMEOUT.value] += 3
    families = scrape(proxy)
    assert value(families, "mysqlpool_backend_connects", pool="app") == 7
    assert value(families, "mysqlpool_backend_connects", pool="report") == 0
    errors = samples(families, "mysqlpool_backend_connect_errors")
    assert errors[(("code", "1045"), ("pool", "app"))] == 1
    assert errors[(("code", "2003"), ("pool", "app"))] == 4
    assert {k: v for k, v in errors.items() if v} == {
        (("code", "1045"), ("pool", "app")): 1, (("code", "2003"), ("pool", "app")): 4}
    closed = samples(families, "mysqlpool_backend_closed", "mysqlpool_backend_closed_total")
    assert {dict(k)["reason"] for k in closed} == {r.value for r in BackendCloseReason}
    assert len(closed) == 2 * len(BackendCloseReason)
    assert closed[(("pool", "app"), ("reason", "idle_timeout"))] == 3


# -- checkout waits ---------------------------------------------------------------------

def test_checkout_wait_histogram_is_cumulative_with_count_and_sum(proxy):
    stats = proxy.pools["app"].stats
    waits = [0.0, 0.0, 0.003, 0.2, 7.0, 100.0]
    for w in waits:
        stats.observe_wait(w)
    families = scrape(proxy)
    buckets = samples(families, "mysqlpool_checkout_wait_seconds", "mysqlpool_checkout_wait_seconds_bucket")
    app = {float(dict(k)["le"]): v for k, v in buckets.items() if dict(k)["pool"] == "app"}
    assert sorted(app) == sorted([*WAIT_BUCKETS, float("inf")])
    for bound, count in app.items():
        assert count == sum(1 for w in waits if w <= bound), bound
    count = samples(families, "mysqlpool_checkout_wait_seconds", "mysqlpool_checkout_wait_seconds_count")
    total = samples(families, "mysqlpool_checkout_wait_seconds", "mysqlpool_checkout_wait_seconds_sum")
    assert count[(("pool", "app"),)] == len(waits)
    assert total[(("pool", "app"),)] == pytest.approx(sum(waits))
    assert count[(("pool", "report"),)] == 0


def test_cumulative_buckets_end_with_inf():
    assert cumulative_buckets([1] * (len(WAIT_BUCKETS) + 1))[-1] == ("+Inf", len(WAIT_BUCKETS) + 1)


def test_waiting_clients_is_the_queue_length(proxy):
    now = proxy.loop.time()
    proxy.pools["report"].waiters = deque([SimpleNamespace(enqueued_at=now - 3), SimpleNamespace(enqueued_at=now)])
    families = scrape(proxy)
    assert samples(families, "mysqlpool_waiting_clients") == {(("pool", "app"),): 0, (("pool", "report"),): 2}


# -- traffic ------------------------------------------------------------------------------

def test_queries_transactions_and_bytes(proxy):
    stats = proxy.pools["app"].stats
    stats.queries["query"] = stats.queries.get("query", 0) + 10
    stats.queries["stmt_execute"] = stats.queries.get("stmt_execute", 0) + 2
    stats.transactions = 4
    proxy.stats.bytes_in, proxy.stats.bytes_out = 1234, 56789
    families = scrape(proxy)
    queries = samples(families, "mysqlpool_queries")
    assert {k: v for k, v in queries.items() if v} == {
        (("command", "query"), ("pool", "app")): 10, (("command", "stmt_execute"), ("pool", "app")): 2}
    assert value(families, "mysqlpool_transactions", pool="app") == 4
    assert samples(families, "mysqlpool_bytes") == {
        (("direction", "client_to_backend"),): 1234, (("direction", "backend_to_client"),): 56789}


# -- pins and multiplexing -----------------------------------------------------------------

def test_pinned_clients_from_connected_clients(proxy):
    in_trans_with_var = add_client(proxy, ClientState.READY, status=IN_TRANS, holds_backend=True)
    in_trans_with_var.session.pins.user_variables = True
    add_client(proxy, ClientState.ACTIVE, holds_backend=True).session.pins.temp_tables.add(b"t")
    add_client(proxy, ClientState.READY)  # not pinned
    add_client(proxy, ClientState.ACTIVE, holds_backend=True)  # holds one for a statement, not pinned
    closed = add_client(proxy, ClientState.CLOSED, holds_backend=True)
    closed.session.pins.user_variables = True  # gone: not counted
    proxy.pools["app"].stats.pins[PinReason.USER_VARIABLE.value] += 9
    families = scrape(proxy)
    pinned = {dict(k)["reason"]: v for k, v in samples(families, "mysqlpool_pinned_clients").items()
              if dict(k)["pool"] == "app"}
    assert pinned == {r.value: 0 for r in PinReason} | {"transaction": 1, "user_variable": 1, "temporary_table": 1}
    pins = samples(families, "mysqlpool_pins", "mysqlpool_pins_total")
    assert len(pins) == 2 * len(PinReason)
    assert pins[(("pool", "app"), ("reason", "user_variable"))] == 9


def test_session_mode_pins_every_client_holding_a_backend(loop):
    proxy = make_proxy(loop, MYSQLPOOL_POOL_MODE="session")
    add_client(proxy, ClientState.READY, holds_backend=True)
    add_client(proxy, ClientState.READY)  # no backend yet
    families = scrape(proxy)
    assert value(families, "mysqlpool_pinned_clients", pool="app", reason="session_mode") == 1


def test_multiplexing_ratio_is_clients_per_backend_in_use(proxy):
    for _ in range(6):
        add_client(proxy, ClientState.READY)
    add_client(proxy, ClientState.HANDSHAKE, pool=None)  # in no pool yet
    proxy.pools["app"].busy.update(backends(proxy, 2))
    families = scrape(proxy)
    assert value(families, "mysqlpool_multiplexing_ratio", pool="app") == 3
    assert value(families, "mysqlpool_multiplexing_ratio", pool="report") == 0


def test_multiplexing_ratio_with_nothing_in_use_is_the_client_count():
    assert multiplexing_ratio(5, 0) == 5
    assert multiplexing_ratio(0, 0) == 0
    assert multiplexing_ratio(10, 4) == 2.5


# -- label hygiene ---------------------------------------------------------------------------

def series_count(proxy: Proxy) -> int:
    return sum(len(family.samples) for family in scrape(proxy).values())


def test_labels_are_bounded_and_carry_no_client_data(proxy):
    without_clients = series_count(proxy)
    client = add_client(proxy, ClientState.ACTIVE)
    client.peer = "203.0.113.77"
    client.command = Command(spec_for(0x03), sql=b"SELECT 'secret-literal'")
    for _ in range(50):
        add_client(proxy, ClientState.READY, holds_backend=True).session.pins.user_variables = True
    text = generate_latest(build_registry(proxy)).decode()
    assert "203.0.113.77" not in text and "secret-literal" not in text
    for family in scrape(proxy).values():
        for sample in family.samples:
            assert set(sample.labels) <= ALLOWED_LABELS, sample
            if "pool" in sample.labels:
                assert sample.labels["pool"] in proxy.pools
    # A fixed number of series per pool, whatever the number of clients.
    assert series_count(proxy) == without_clients


def test_a_draining_proxy_still_scrapes(proxy):
    proxy.state = ProxyState.DRAINING
    families = scrape(proxy)
    assert value(families, "mysqlpool_ready") == 0


# -- zero-initialised series ----------------------------------------------------------------

def test_labelled_counters_have_their_known_series_at_zero_from_the_first_scrape(proxy):
    """rate() needs a series before its first increment: every pool has one per known label value."""
    families = scrape(proxy)
    for pool in ("app", "report"):
        for code in ("2003", "1045", "1040", "1226", "2013"):
            assert value(families, "mysqlpool_backend_connect_errors", pool=pool, code=code) == 0
        for command in ("query", "stmt_prepare", "stmt_execute", "stmt_close", "ping", "init_db", "quit"):
            assert value(families, "mysqlpool_queries", pool=pool, command=command) == 0
        for direction in ("client_to_backend", "backend_to_client"):
            assert value(families, "mysqlpool_pool_bytes", pool=pool, direction=direction) == 0
        for reason in BackendCloseReason:
            assert value(families, "mysqlpool_backend_closed", pool=pool, reason=reason.value) == 0
        assert value(families, "mysqlpool_transactions", pool=pool) == 0
        assert value(families, "mysqlpool_backend_connects", pool=pool) == 0
    for reason in RefusalReason:
        assert value(families, "mysqlpool_client_refused", reason=reason.value) == 0
    # Commands the proxy refuses never become a label value.
    assert not any(dict(k)["command"] == "binlog_dump" for k in samples(families, "mysqlpool_queries"))


def test_an_unexpected_code_or_command_still_shows(proxy):
    stats = proxy.pools["app"].stats
    stats.connect_errors[1129] += 2  # host blocked
    families = scrape(proxy)
    assert value(families, "mysqlpool_backend_connect_errors", pool="app", code="1129") == 2


# -- the newer per-pool families (recording: test_metrics_recording.py) ------------------------

def test_pool_clients_by_state_add_up_to_the_pools_clients(proxy):
    for state in (ClientState.READY, ClientState.READY, ClientState.ACTIVE, ClientState.LOCAL, ClientState.CHECKOUT):
        add_client(proxy, state)
    add_client(proxy, ClientState.CHECKOUT, pool="report")
    add_client(proxy, ClientState.HANDSHAKE, pool=None)
    add_client(proxy, ClientState.CLOSED)  # gone
    families = scrape(proxy)
    assert samples(families, "mysqlpool_pool_client_connections") == {
        (("pool", "app"), ("state", "active")): 2, (("pool", "app"), ("state", "idle")): 2,
        (("pool", "app"), ("state", "waiting")): 1,
        (("pool", "report"), ("state", "active")): 0, (("pool", "report"), ("state", "idle")): 0,
        (("pool", "report"), ("state", "waiting")): 1,
    }
    assert value(families, "mysqlpool_client_connections", state="handshake") == 1


def test_duration_histograms_are_cumulative_per_pool(proxy):
    stats = proxy.pools["report"].stats
    for seconds in (0.0002, 0.003, 0.003, 45.0, 100.0):
        stats.query_time.observe(seconds)
    stats.transaction_time.observe(0.2)
    families = scrape(proxy)
    name = "mysqlpool_query_duration_seconds"
    buckets = {dict(k)["le"]: v for k, v in samples(families, name, name + "_bucket").items()
               if dict(k)["pool"] == "report"}
    assert buckets["0.0005"] == 1 and buckets["0.005"] == 3 and buckets["60.0"] == 4 and buckets["+Inf"] == 5
    assert samples(families, name, name + "_sum")[(("pool", "report"),)] == pytest.approx(145.0062)
    assert samples(families, name, name + "_count")[(("pool", "app"),)] == 0
    assert samples(families, "mysqlpool_transaction_duration_seconds",
                   "mysqlpool_transaction_duration_seconds_count")[(("pool", "report"),)] == 1


def test_the_readme_metrics_table_documents_every_family(proxy):
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = "\n".join(line for line in readme.splitlines() if line.startswith("| `"))
    for name, family in scrape(proxy).items():
        exposed = f"{name}_total" if family.type == "counter" else name
        if name.startswith("mysqlpool_") or name in RUNTIME_FAMILIES:
            assert f"`{exposed}`" in table, exposed

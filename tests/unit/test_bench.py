# The benchmark harness's pure parts (bench/): sysbench output parsing, the
# latency histogram, ratio/target evaluation, table rendering (the floor
# tables too), the option and config plumbing, and the bare relay's
# protocol on stand-in transports. Nothing here runs a load or looks at a clock, and no
# test asserts a timing; matplotlib and psutil (the [bench] extra) are not
# needed.
from __future__ import annotations

import json
import math
import tomllib

import pytest

from bench import relay, sysbench as sb
from bench.floor import FloorProcess, haproxy_config, haproxy_maxconn
from bench.plots import _point_table
from bench.procs import ProxyProcess, cpu_used, loadgen_command, render_proxy_config
from bench.report import (
    Row,
    Target,
    floor_comparisons,
    floor_legs,
    fmt_value,
    judge,
    render_cpu_table,
    render_floor,
    render_markdown,
    render_text,
    summary_counts,
)
from bench.run import build_parser, noise_summary, parse_only, render_results_md
from bench.stats import LatencyHistogram, median, percentile
from bench.workloads import WORKLOADS, Settings, _merge_loadgen, clients_label, server_options
from mysqlpool_proxy.config import load_config

POINT_SELECT_OUTPUT = """\
sysbench 1.0.20 (using system LuaJIT 2.1.0-beta3)

Running the test with following options:
Number of threads: 32
Initializing random number generator from current time


Initializing worker threads...

Threads started!

Latency histogram (values are in milliseconds)
       value  ------------- distribution ------------- count
       0.102 |*                                        10
       0.200 |****************************************  50
       0.500 |**********                               25
       1.000 |***                                      10
       5.000 |*                                        4
      12.520 |                                         1

SQL statistics:
    queries performed:
        read:                            77712
        write:                           0
        other:                           0
        total:                           77712
    transactions:                        77712  (15508.45 per sec.)
    queries:                             77712  (15508.45 per sec.)
    ignored errors:                      0      (0.00 per sec.)
    reconnects:                          0      (0.00 per sec.)

General statistics:
    total time:                          5.0106s
    total number of events:              77712

Latency (ms):
         min:                                    0.09
         avg:                                    2.06
         max:                                  296.91
         99th percentile:                       12.52
         sum:                               160079.54

Threads fairness:
    events (avg/stddev):           2428.5000/308.53
    execution time (avg/stddev):   5.0025/0.00
"""

READ_WRITE_OUTPUT = """\
SQL statistics:
    queries performed:
        read:                            140000
        write:                           40000
        other:                           20000
        total:                           200000
    transactions:                        10000  (811.20 per sec.)
    queries:                             200000 (16224.00 per sec.)
    ignored errors:                      3      (0.24 per sec.)
    reconnects:                          0      (0.00 per sec.)

General statistics:
    total time:                          12.3300s
    total number of events:              10000

Latency (ms):
         min:                                    3.10
         avg:                                   78.90
         max:                                  900.00
         95th percentile:                      201.00
         sum:                               789000.00
"""


# -- sysbench ----------------------------------------------------------------------------------

def test_parse_point_select_report():
    r = sb.parse_output(POINT_SELECT_OUTPUT)
    assert (r.transactions, r.tps) == (77712, 15508.45)
    assert (r.queries, r.qps) == (77712, 15508.45)
    assert (r.ignored_errors, r.reconnects, r.events) == (0, 0, 77712)
    assert r.total_time_s == pytest.approx(5.0106)
    assert (r.latency_min_ms, r.latency_avg_ms, r.latency_max_ms) == (0.09, 2.06, 296.91)
    assert (r.percentile, r.latency_pct_ms) == (99, 12.52)
    assert r.histogram[0] == (0.102, 10) and r.histogram[-1] == (12.52, 1)
    assert sum(n for _, n in r.histogram) == 100
    assert r.latency_p50_ms == 0.2  # ranks 11..60 are in the 0.200 bucket
    assert r.fatal == []


def test_parse_read_write_report_without_histogram():
    r = sb.parse_output(READ_WRITE_OUTPUT)
    assert (r.transactions, r.tps, r.queries, r.qps) == (10000, 811.2, 200000, 16224.0)
    assert r.ignored_errors == 3
    assert (r.percentile, r.latency_pct_ms) == (95, 201.0)
    assert r.histogram == [] and r.latency_p50_ms is None


def test_parse_reports_fatal_lines_and_missing_numbers():
    text = ("FATAL: unable to connect to MySQL server on host '127.0.0.1', port 1, aborting...\n"
            "FATAL: error 2003: Can't connect to MySQL server on '127.0.0.1' (111)\n")
    r = sb.parse_output(text)
    assert len(r.fatal) == 2 and "error 2003" in r.fatal[1]
    assert r.events == 0 and r.latency_avg_ms is None and r.tps == 0.0


def test_histogram_percentiles():
    hist = [(1.0, 50), (2.0, 49), (10.0, 1)]
    assert sb.histogram_percentile(hist, 50) == 1.0
    assert sb.histogram_percentile(hist, 99) == 2.0
    assert sb.histogram_percentile(hist, 100) == 10.0
    assert sb.histogram_percentile(list(reversed(hist)), 99) == 2.0  # order does not matter
    assert sb.histogram_percentile([], 50) is None
    with pytest.raises(ValueError):
        sb.histogram_percentile(hist, 101)


def test_build_run_command():
    cmd = sb.build_command("oltp_point_select", host="127.0.0.1", port=5555, user="u", password="pw", db="sbtest",
                           threads=32, seconds=15, ps_mode="disable")
    assert cmd[:2] == ["sysbench", "oltp_point_select"] and cmd[-1] == "run"
    for flag in ("--mysql-port=5555", "--mysql-user=u", "--mysql-password=pw", "--mysql-db=sbtest",
                 "--threads=32", "--time=15", "--db-ps-mode=disable", "--percentile=99", "--histogram=on",
                 "--tables=1", "--table-size=100000"):
        assert flag in cmd


def test_build_prepare_command_has_no_run_options():
    cmd = sb.build_command("oltp_point_select", host="h", port=1, user="u", password="p", db="d", action="prepare")
    assert cmd[-1] == "prepare"
    assert not any(a.startswith(("--time", "--db-ps-mode", "--histogram")) for a in cmd)


def test_sysbench_failure_message_hides_the_password():
    assert sb._redact(["sysbench", "--mysql-password=secret", "run"]) == [
        "sysbench", "--mysql-password=***", "run"]


def test_connect_script_is_shipped():
    text = sb.CONNECT_SCRIPT.read_text()
    assert "drv:connect()" in text and "con:disconnect()" in text


# -- statistics --------------------------------------------------------------------------------

def test_median_and_percentile():
    assert median([]) is None
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5
    assert median([None, 5]) == 5
    assert percentile([1, 2, 3, 4], 50) == 2 and percentile([1, 2, 3, 4], 100) == 4
    assert percentile([], 50) is None


def test_latency_histogram_is_within_one_percent():
    h = LatencyHistogram()
    values = [i / 1e5 for i in range(1, 10_001)]  # 10 µs .. 100 ms, uniform
    for v in values:
        h.add(v)
    assert h.count == len(values)
    for pct in (50, 90, 99):
        exact = percentile(values, pct) * 1000
        assert h.percentile_ms(pct) == pytest.approx(exact, rel=0.011)
    assert h.mean_ms() == pytest.approx(sum(values) / len(values) * 1000)
    assert LatencyHistogram().percentile_ms(50) is None


def test_latency_histogram_merge_and_json():
    a, b = LatencyHistogram(), LatencyHistogram()
    for _ in range(99):
        a.add(0.001)
    b.add(0.1)
    a.merge(LatencyHistogram.from_json(json.loads(json.dumps(b.to_json()))))
    assert a.count == 100
    assert a.percentile_ms(99) == pytest.approx(1.0, rel=0.01)
    assert a.percentile_ms(100) == pytest.approx(100.0, rel=0.01)
    assert LatencyHistogram.bucket_of(0.5) == 0 and math.isclose(LatencyHistogram.bucket_value(0), 1.0)


def test_merge_loadgen_results():
    h1, h2 = LatencyHistogram(), LatencyHistogram()
    h1.add(0.001)
    h2.add(0.003)
    merged = _merge_loadgen([
        {"ops": 100, "seconds": 10.0, "errors": 0, "hist": h1.to_json()},
        {"ops": 300, "seconds": 10.2, "errors": 1, "error_samples": ["x"], "hist": h2.to_json()},
    ])
    assert merged["ops"] == 400 and merged["qps"] == pytest.approx(400 / 10.2)
    assert merged["errors"] == 1 and merged["procs"] == 2
    assert merged["avg_ms"] == pytest.approx(2.0)
    with pytest.raises(RuntimeError, match="refused"):
        _merge_loadgen([{"error": "refused"}])
    with pytest.raises(RuntimeError, match="no request"):
        _merge_loadgen([{"ops": 0, "seconds": 1.0, "hist": LatencyHistogram().to_json()}])


# -- targets and the table --------------------------------------------------------------------------

def test_ratio_target():
    row = Row("w", "throughput", "q/s", 1000.0, 600.0, target=Target("ratio_min", 0.5))
    assert row.ratio == pytest.approx(0.6) and row.met() is True
    assert row.verdict().startswith("yes (0.60 vs 0.5")
    row.proxy = 400.0
    assert row.met() is False
    assert "20% short" in row.verdict() and row.verdict().startswith("**no**")


def test_delta_target():
    row = Row("w", "latency avg", "ms", 0.20, 0.30, target=Target("delta_max", 0.15, "ms"))
    assert row.delta == pytest.approx(0.10) and row.met() is True
    row.proxy = 0.50
    assert row.met() is False and "over" in row.verdict()


def test_proxy_bound_target():
    row = Row("idle", "RSS per idle client", "KiB", 60.0, 3.9, target=Target("proxy_max", 10, "KiB"))
    assert row.met() is True and row.target.describe() == "≤ 10 KiB"
    assert Row("x", "m", "MiB", None, 12.0, target=Target("proxy_max", 8, "MiB")).met() is False


def test_missing_numbers_and_unavailable_rows_are_not_judged():
    assert Row("w", "m", "q/s", None, 5.0, target=Target("ratio_min", 0.5)).met() is None
    assert Row("w", "m", "q/s", 0.0, 5.0).ratio is None
    gone = Row("w", "m", "q/s", 10.0, None, target=Target("ratio_min", 0.5), available=False)
    assert gone.met() is None and gone.verdict() == "n/a"
    assert Row("w", "m", "q/s", 1.0, 2.0).verdict() == "—"
    with pytest.raises(ValueError):
        Target("ratio_max", 1)


def test_row_from_samples_keeps_every_sample_and_round_trips():
    row = Row.from_samples("w", "throughput", "q/s", [10, 30, 20], [5, 7], target=Target("ratio_min", 0.5))
    assert (row.direct, row.proxy) == (20, 6)
    assert row.samples == {"direct": [10, 30, 20], "proxy": [5, 7]}
    data = json.loads(json.dumps(row.to_json()))
    assert data["ratio"] == pytest.approx(0.3) and data["met"] is False
    back = Row.from_json(data)
    assert (back.direct, back.proxy, back.target) == (row.direct, row.proxy, row.target)


def test_summary_counts():
    rows = [Row("a", "m", "", 1, 1, target=Target("ratio_min", 0.5)),
            Row("b", "m", "", 1, 0.1, target=Target("ratio_min", 0.5)),
            Row("c", "m", "", None, 1, target=Target("ratio_min", 0.5)),
            Row("d", "m", "", 1, 1)]
    assert summary_counts(rows) == {"met": 1, "missed": 1, "unknown": 1}


@pytest.mark.parametrize("value, unit, text", [
    (None, "q/s", "n/a"), (12345.6, "q/s", "12,346 q/s"), (123.4, "", "123"), (12.34, "ms", "12.3 ms"),
    (1.234, "ms", "1.23 ms"), (0.1234, "ms", "0.123 ms"), (0, "", "0"),
])
def test_fmt_value(value, unit, text):
    assert fmt_value(value, unit) == text


def test_render_markdown_table_and_notes():
    rows = [
        Row("point | select", "throughput", "q/s", 1000.0, 600.0, target=Target("ratio_min", 0.5)),
        Row("idle", "RSS per idle client", "KiB", 60.0, 3.9, target=Target("proxy_max", 10, "KiB"),
            note="direct is mariadbd's own memory"),
        Row("workers", "throughput", "q/s", 1000.0, None, available=False, note="not available: one process"),
    ]
    md = render_markdown(rows, "2 cores")
    lines = md.splitlines()
    assert lines[0] == "Machine: 2 cores"
    assert lines[2] == "| Workload | Metric | Direct | Proxy | Proxy/direct | Target | Met? |"
    assert "| point \\| select | throughput | 1,000 q/s | 600 q/s | 0.60 | ≥ 0.5 × direct | yes" in md
    assert "| idle [1] | RSS per idle client | 60.0 KiB | 3.90 KiB | 0.07 | ≤ 10 KiB | yes" in md
    assert "| workers [2] | throughput | 1,000 q/s | n/a | n/a | — | n/a |" in md
    assert "[1] idle, RSS per idle client: direct is mariadbd's own memory" in md
    assert "[2] workers, throughput: not available: one process" in md
    text = render_text(rows)
    assert "**" not in text and text.splitlines()[0].split()[:3] == ["workload", "metric", "direct"]


def test_results_md_names_the_machine_failures_and_noise():
    results = {"started": "2026-01-01T00:00:00", "duration_s": 10.0, "command": "python -m bench.run --quick",
               "machine": {"cores": 2, "cpu_model": "X"}, "targets": {"met": 1, "missed": 0, "unknown": 0},
               "failures": [{"workload": "workers", "what": "start", "error": "not available"}],
               "noise": [{"workload": "w", "leg": "proxy", "round": 1, "foreign_cores": 0.5}],
               "loadavg_at_start": [0.5, 0.4, 0.3]}
    md = render_results_md(results, [Row("w", "m", "q/s", 1.0, 1.0, target=Target("ratio_min", 0.5))])
    assert "2 cores (X)" in md and "## Failures" in md and "workers / start: not available" in md
    assert "Targets: 1 met, 0 missed" in md and "1 leg(s) above" in md


def test_noise_summary():
    assert "No per-leg" in noise_summary([], None)
    quiet = [{"workload": "w", "leg": "direct", "round": 1, "foreign_cores": 0.01}] * 3
    text = noise_summary(quiet, [0.1, 0.2, 0.3])
    assert "Load average at start: 0.1, 0.2, 0.3" in text and "above" not in text


def test_cpu_used_by_category():
    before = {"procs": {1: (100.0, 5.0, "foreign"), 2: (100.0, 1.0, "foreign"), 7: (50.0, 10.0, "server")},
              "reaped": 2.0}
    after = {"procs": {1: (100.0, 6.5, "foreign"), 2: (200.0, 0.25, "foreign"),  # 2: a reused pid
                       3: (300.0, 1.0, "foreign"), 7: (50.0, 12.0, "server"), 9: (60.0, 0.5, "proxy")},
             "reaped": 3.5}
    used = cpu_used(before, after)
    assert used["foreign"] == pytest.approx(1.5 + 0.25 + 1.0)
    assert used["server"] == pytest.approx(2.0) and used["proxy"] == pytest.approx(0.5)
    assert used["loadgen"] == pytest.approx(1.5)  # children reaped meanwhile (sysbench, load generators)
    # A proxy (or relay, or HAProxy) started and stopped within the window is reaped too: its CPU
    # goes back to its own category.
    before["reaped_by"] = {"proxy": 10.0, "relay": 1.0}
    after["reaped_by"] = {"proxy": 10.75, "relay": 1.5, "haproxy": 0.0}
    used = cpu_used(before, after)
    assert used["proxy"] == pytest.approx(0.5 + 0.75) and used["relay"] == pytest.approx(0.5)
    assert used["loadgen"] == pytest.approx(0.25) and "haproxy" not in used


def test_cpu_table():
    legs = [{"workload": "point 8", "leg": "direct", "cores": {"server": 1.0, "loadgen": 0.5}, "foreign_cores": 0.0,
             "us_per_op": {"server": 20.0}},
            {"workload": "point 8", "leg": "direct", "cores": {"server": 1.2, "loadgen": 0.7}, "foreign_cores": 0.2,
             "us_per_op": {"server": 30.0}},
            {"workload": "point 8", "leg": "proxy", "cores": {"server": 0.4, "proxy": 1.0}, "foreign_cores": 0.0,
             "us_per_op": {"server": 25.0, "proxy": 55.5}},
            {"workload": "idle", "leg": "proxy", "cores": {"proxy": 0.5}, "foreign_cores": 0.0}]
    table = render_cpu_table(legs).splitlines()
    assert table[0].startswith("| Workload | Leg | mariadbd | proxy or relay |")
    assert table[2] == "| point 8 | direct | 1.10 | 0.00 | 0.60 | 0.00 | 0.00 | 0.10 | 25 | — |"
    assert table[3] == "| point 8 | proxy | 0.40 | 1.00 | 0.00 | 0.00 | 0.00 | 0.00 | 25 | 55.5 |"
    assert table[4] == "| idle | proxy | 0.00 | 0.50 | 0.00 | 0.00 | 0.00 | 0.00 | — | — |"
    assert render_cpu_table([]) == ""


# -- options and plumbing -------------------------------------------------------------------------

def test_parse_only():
    assert parse_only(None) == list(WORKLOADS)
    assert parse_only(["mixed,point_sysbench", "idle"]) == ["point_sysbench", "idle", "mixed"]
    with pytest.raises(SystemExit, match="unknown workload"):
        parse_only(["point"])


def test_settings():
    full, quick = Settings(), Settings.quick_settings()
    assert full.rounds >= 2 and quick.rounds >= 2
    assert full.point_clients == (1, 8, 32, 128) and full.idle_count == 10_000 and full.large_rows == 1_000_000
    assert full.floor and set(full.floor_clients) == {1, 8, 32} <= set(full.point_clients)
    assert full.mixed_clients == 64 and full.mixed_pool == 8
    assert quick.point_seconds < full.point_seconds
    assert server_options(full)["max_connections"] > full.idle_direct_count


def test_generated_proxy_config_is_accepted_by_the_proxy(tmp_path):
    p = ProxyProcess(backend_port=4000, workdir=tmp_path, name="t", pool={"max_size": 32},
                     proxy={"max_client_connections": 10_100, "workers": 2}, port=7000, metrics_port=7001)
    path = tmp_path / "t.toml"
    path.write_text(p.config_text())
    config = load_config(str(path), environ={})
    assert config.proxy.listen == "127.0.0.1:7000" and config.proxy.workers == 2
    assert config.proxy.max_client_connections == 10_100
    assert config.backend.port == 4000 and config.pool.max_size == 32
    assert config.metrics.listen == "127.0.0.1:7001" and config.admin.listen == ""
    assert [u.name for u in config.users] == ["bench"]


def test_render_proxy_config_quotes_strings():
    text = render_proxy_config({"proxy": {"server_version": 'a"b\\c', "x": None, "on": True}}, [])
    assert tomllib.loads(text) == {"proxy": {"server_version": 'a"b\\c', "on": True}}


def test_loadgen_command():
    cmd = loadgen_command("point", 1234, clients=8, start_at=1.5)
    assert cmd[1:4] == ["-m", "bench.loadgen", "point"]
    assert cmd[cmd.index("--port") + 1] == "1234" and cmd[cmd.index("--start-at") + 1] == "1.5"


def test_point_table_for_plots():
    rows = [
        {"workload": "point select, sysbench, 32 clients", "metric": "throughput", "direct": 100, "proxy": 60},
        {"workload": "point select, sysbench, 32 clients, proxy workers = 2", "metric": "throughput",
         "direct": 100, "proxy": 90},
        {"workload": "point select, Python/aiomysql, 8 clients", "metric": "throughput", "direct": 5, "proxy": 4},
        {"workload": "point select, sysbench, 128 clients, proxy workers = 2", "metric": "throughput",
         "direct": 100, "proxy": None, "available": False},
    ]
    table = _point_table(rows, "sysbench")
    assert table == {32: {"direct": {"throughput": 100}, "proxy": {"throughput": 60},
                          "proxy 2 workers": {"throughput": 90}}}


def test_first_lines_of_a_long_error():
    from bench.run import first_lines

    assert first_lines("one line") == "one line"
    text = first_lines("\n".join(f"line {i}" for i in range(10)), n=2)
    assert text == "line 0\n  line 1\n  (… 8 more lines in results.json)"


def test_proxy_env_puts_the_snapshot_first(monkeypatch, tmp_path):
    from bench.procs import proxy_env

    monkeypatch.setenv("MYSQLPOOL_POOL_MAX_SIZE", "3")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = proxy_env(tmp_path)
    assert "MYSQLPOOL_POOL_MAX_SIZE" not in env
    assert env["PYTHONPATH"].split(":") == [str(tmp_path), "/elsewhere"]


# -- the floor: bare relay and HAProxy legs ---------------------------------------------------------

def _floor_load(workload="point_sysbench 8 clients", targets=None):
    legs = {
        "direct": [{"qps": 1000.0, "avg_ms": 0.20, "p99_ms": 0.5}, {"qps": 1100.0, "avg_ms": 0.18, "p99_ms": 0.4}],
        "relay": [{"qps": 500.0, "avg_ms": 0.40, "p99_ms": 0.9}],
        "haproxy": [{"qps": 450.0, "avg_ms": 0.45, "p99_ms": 1.0}],
        "proxy": [{"qps": 300.0, "avg_ms": 0.70, "p99_ms": 1.5}],
    }
    return {"load": "point select, 8 clients", "workload": workload, "unit": "q/s", "legs": legs,
            "targets": targets if targets is not None else {"proxy_cpu_vs_relay": ("max", 1.3),
                                                            "server_cpu_vs_relay": ("max", 1.1),
                                                            "throughput_vs_haproxy": ("min", 0.9)}}


def _noise(workload, leg, per_op):
    return {"workload": workload, "leg": leg, "round": 1, "foreign_cores": 0.0, "cores": {}, "us_per_op": per_op}


FLOOR_NOISE = [
    _noise("point_sysbench 8 clients", "direct", {"server": 30.0, "proxy": 0.1}),
    _noise("point_sysbench 8 clients", "relay", {"server": 40.0, "relay": 25.0, "proxy": 0.1}),
    _noise("point_sysbench 8 clients", "haproxy", {"server": 41.0, "haproxy": 20.0}),
    _noise("point_sysbench 8 clients", "proxy", {"server": 50.0, "proxy": 60.0, "relay": 0.01}),
    _noise("point_sysbench 8 clients", "proxy", {"server": 54.0, "proxy": 64.0}),
    _noise("point_sysbench 32 clients", "proxy", {"server": 99.0, "proxy": 99.0}),  # another load
]


def test_floor_legs_take_medians_and_the_middle_process_cpu():
    legs = floor_legs(_floor_load(), FLOOR_NOISE)
    assert list(legs) == ["direct", "relay", "haproxy", "proxy"]
    assert legs["direct"].throughput == 1050.0 and legs["direct"].middle_us is None
    assert legs["direct"].server_us == 30.0 and legs["direct"].rounds == 2
    assert (legs["relay"].middle_us, legs["relay"].server_us) == (25.0, 40.0)  # the relay's own CPU, not the proxy's
    assert legs["haproxy"].middle_us == 20.0
    assert (legs["proxy"].middle_us, legs["proxy"].server_us) == (62.0, 52.0)
    assert legs["proxy"].latency_avg_ms == 0.70 and legs["proxy"].latency_p99_ms == 1.5


def test_floor_comparisons_against_the_targets():
    load = _floor_load()
    got = {what: (value, target) for _, what, value, target in floor_comparisons(load, floor_legs(load, FLOOR_NOISE))}
    assert got["proxy CPU / bare relay CPU, per operation"] == (pytest.approx(62 / 25), ("max", 1.3))
    assert got["proxy CPU / HAProxy CPU, per operation"] == (pytest.approx(62 / 20), None)
    assert got["mariadbd CPU per operation, through the proxy / through the bare relay"] == (
        pytest.approx(52 / 40), ("max", 1.1))
    assert got["throughput, proxy / HAProxy"] == (pytest.approx(300 / 450), ("min", 0.9))
    assert "proxy CPU per operation (µs)" not in got  # no target: the legs table shows it
    # Connect-per-request: an absolute bound on the proxy's CPU, and proxy / direct.
    load = _floor_load("connect sysbench", {"proxy_us": ("max", 100), "throughput_vs_direct": ("min", 1.0)})
    noise = [{**n, "workload": "connect sysbench"} for n in FLOOR_NOISE if n["workload"] == "point_sysbench 8 clients"]
    got = {what: (value, target) for _, what, value, target in floor_comparisons(load, floor_legs(load, noise))}
    assert got["proxy CPU per operation (µs)"] == (pytest.approx(62.0), ("max", 100))
    assert got["throughput, proxy / direct"] == (pytest.approx(300 / 1050), ("min", 1.0))


def test_floor_comparisons_skip_a_missing_leg():
    load = _floor_load()
    del load["legs"]["haproxy"]
    whats = [what for _, what, _, _ in floor_comparisons(load, floor_legs(load, FLOOR_NOISE))]
    assert "throughput, proxy / HAProxy" not in whats and "proxy CPU / HAProxy CPU, per operation" not in whats
    assert "proxy CPU / bare relay CPU, per operation" in whats


def test_judge():
    assert judge(1.2, ("max", 1.3)) == ("≤ 1.3", "yes (1.2 vs 1.3)")
    assert judge(2.6, ("max", 1.3)) == ("≤ 1.3", "**no** (2.6 vs 1.3: 100% over)")
    assert judge(0.45, ("min", 0.9)) == ("≥ 0.9", "**no** (0.45 vs 0.9: 50% short)")
    assert judge(None, ("min", 0.9)) == ("≥ 0.9", "n/a")
    assert judge(3.0, None) == ("—", "—")


def test_render_floor():
    text = render_floor([_floor_load()], FLOOR_NOISE)
    lines = text.splitlines()
    assert lines[0].startswith("| Load | Leg | Throughput | × direct |")
    assert "| point select, 8 clients | direct | 1,050 q/s | 1.00 | 0.190 ms | 0.450 ms | — | 30 |" in lines
    assert "| point select, 8 clients | bare relay | 500 q/s | 0.48 | 0.400 ms | 0.900 ms | 25 | 40 |" in lines
    assert "| point select, 8 clients | HAProxy | 450 q/s | 0.43 | 0.450 ms | 1.00 ms | 20 | 41 |" in lines
    assert "| point select, 8 clients | proxy | 300 q/s | 0.29 | 0.700 ms | 1.50 ms | 62 | 52 |" in lines
    assert ("| point select, 8 clients | proxy CPU / bare relay CPU, per operation | 2.48 | ≤ 1.3 "
            "| **no** (2.48 vs 1.3: 91% over) |") in lines
    assert render_floor([], FLOOR_NOISE) == ""
    connect = _floor_load("connect sysbench", {"proxy_us": ("max", 100)})
    text = render_floor([connect], [{**n, "workload": "connect sysbench"} for n in FLOOR_NOISE[:4]])
    assert "| point select, 8 clients | proxy CPU per operation (µs) | 60.0 | ≤ 100 | yes (60 vs 100) |" in text


def test_results_md_has_the_floor_section():
    results = {"started": "2026-01-01T00:00:00", "duration_s": 10.0, "command": "python -m bench.run",
               "machine": {"cores": 2}, "targets": {"met": 0, "missed": 0, "unknown": 0}, "failures": [],
               "noise": FLOOR_NOISE, "floor": [_floor_load()]}
    md = render_results_md(results, [])
    assert "## The floor" in md and "| point select, 8 clients | bare relay |" in md
    assert "HAProxy was not installed" in md
    assert "HAProxy was not installed" not in render_results_md(
        {**results, "machine": {"cores": 2, "haproxy": "HAProxy version 2.6.12"}}, [])
    assert "## The floor" not in render_results_md({**results, "floor": []}, [])


def test_cpu_table_shows_the_relay_and_haproxy_as_the_middle_process():
    table = render_cpu_table([
        {"workload": "w", "leg": "relay", "cores": {"server": 0.6, "relay": 0.5, "proxy": 0.01},
         "foreign_cores": 0.0, "us_per_op": {"server": 40.0, "relay": 25.0, "proxy": 0.1}},
        {"workload": "w", "leg": "haproxy", "cores": {"server": 0.6, "haproxy": 0.4}, "foreign_cores": 0.0,
         "us_per_op": {"server": 41.0, "haproxy": 20.0}},
    ]).splitlines()
    assert table[2] == "| w | relay | 0.60 | 0.50 | 0.00 | 0.00 | 0.00 | 0.00 | 40 | 25 |"
    assert table[3] == "| w | haproxy | 0.60 | 0.40 | 0.00 | 0.00 | 0.00 | 0.00 | 41 | 20 |"


def test_haproxy_config_is_one_thread_tcp_mode():
    text = haproxy_config(7000, 4000, maxconn=2000)
    lines = [line.strip() for line in text.splitlines()]
    assert "nbthread 1" in lines and "mode tcp" in lines and "maxconn 2000" in lines
    assert "bind 127.0.0.1:7000" in lines and "server db 127.0.0.1:4000" in lines
    assert not any(line.startswith(("mode http", "option http")) for line in lines)


def test_haproxy_maxconn_fits_the_open_files_limit():
    assert haproxy_maxconn(20_000) == 4096
    assert haproxy_maxconn(4096) == 1998  # two descriptors per connection, and some to spare
    assert haproxy_maxconn(-1) == 4096  # unlimited
    assert haproxy_maxconn(100) == 256  # HAProxy says so itself if even that is too many


def test_floor_process_commands(tmp_path):
    relay = FloorProcess("relay", 4000, tmp_path, port=7000)
    assert relay.command()[1:] == ["-m", "bench.relay", "--listen", "127.0.0.1:7000", "--backend", "127.0.0.1:4000"]
    haproxy = FloorProcess("haproxy", 4000, tmp_path, haproxy="/usr/sbin/haproxy", port=7001)
    assert haproxy.command() == ["/usr/sbin/haproxy", "-db", "-f", str(tmp_path / "haproxy.cfg")]
    with pytest.raises(ValueError):
        FloorProcess("nginx", 4000, tmp_path).command()


def test_clients_label_and_the_plots_read_one_client():
    assert clients_label(1) == "1 client" and clients_label(8) == "8 clients"
    rows = [{"workload": "point select, sysbench, 1 client", "metric": "throughput", "direct": 10, "proxy": 5}]
    assert _point_table(rows, "sysbench") == {1: {"direct": {"throughput": 10}, "proxy": {"throughput": 5}}}


def test_no_floor_option():
    assert build_parser().parse_args(["--no-floor"]).no_floor is True
    assert build_parser().parse_args([]).no_floor is False


# -- the bare relay, on fake transports ----------------------------------------------------------

class _Transport:
    """Just what relay.Side uses of a transport: writes, reading paused or not, closing."""

    def __init__(self):
        self.written, self.reading, self.closed = [], True, False

    def write(self, data):
        self.written.append(data)

    def pause_reading(self):
        self.reading = False

    def resume_reading(self):
        self.reading = True

    def close(self):
        self.closed = True


def _relayed_pair():
    client, server = relay.Side(), relay.Side()
    client.peer, server.peer = server, client
    client.connection_made(_Transport())
    server.connection_made(_Transport())
    return client, server


def test_relay_moves_bytes_both_ways_untouched():
    client, server = _relayed_pair()
    server.data_received(b"\x0a\x00\x00\x00greeting")
    client.data_received(b"\x01\x00\x00\x00\x0e")
    assert client.transport.written == [b"\x0a\x00\x00\x00greeting"]
    assert server.transport.written == [b"\x01\x00\x00\x00\x0e"]


def test_relay_flow_control_both_ways():
    client, server = _relayed_pair()
    client.pause_writing()  # the client reads slowly: stop reading the server
    assert not server.transport.reading and client.transport.reading
    client.resume_writing()
    assert server.transport.reading
    server.pause_writing()  # the server reads slowly: stop reading the client
    assert not client.transport.reading
    server.resume_writing()
    assert client.transport.reading


def test_relay_closes_the_other_side():
    client, server = _relayed_pair()
    assert client.eof_received() is False  # half-close: close this side
    client.connection_lost(None)
    assert server.transport.closed
    lone = relay.Side()  # a side whose peer never connected
    lone.connection_lost(None)


def test_relay_address():
    assert relay.address("127.0.0.1:3307") == ("127.0.0.1", 3307)
    assert relay.address(":3307") == ("127.0.0.1", 3307)

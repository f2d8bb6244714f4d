# deploy/prometheus-alerts.yml through Prometheus's own tool: `promtool check
# rules` parses every expression as Prometheus will when it loads the file,
# and `promtool test rules` feeds a few alerts synthetic series to show they
# fire (and stay quiet) when they should. promtool comes with Debian's
# `prometheus` package, which scripts/test.sh installs; without it the tests
# fail with the package named, rather than skip.
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.promql import ALERTS


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed (./scripts/test.sh installs it: apt-get install prometheus)")
    return path


def run(promtool: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


def test_promtool_check_rules_is_clean(promtool):
    result = run(promtool, "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


# Series are `name{labels}` followed by values every `interval` (1m): "0+0x20" is 21 zeros,
# "10x20" 21 tens; see https://prometheus.io/docs/prometheus/latest/configuration/unit_testing_rules/
RULE_TESTS = """
rule_files:
  - {alerts}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'mysqlpool_oldest_waiter_seconds{{instance="p:9187", job="mysqlpool", pool="app"}}'
        values: '0 0 10x10'
      - series: 'mysqlpool_oldest_waiter_seconds{{instance="p:9187", job="mysqlpool", pool="report"}}'
        values: '0x12'
      - series: 'mysqlpool_info{{instance="p:9187", job="mysqlpool", version="1", mode="transaction"}}'
        values: '1x12'
      - series: 'process_open_fds{{instance="p:9187", job="mysqlpool"}}'
        values: '900x12'
      - series: 'process_max_fds{{instance="p:9187", job="mysqlpool"}}'
        values: '1000x12'
      - series: 'process_open_fds{{instance="other:9100", job="node"}}'
        values: '990x12'
      - series: 'process_max_fds{{instance="other:9100", job="node"}}'
        values: '1000x12'
    alert_rule_test:
      - eval_time: 3m
        alertname: MysqlpoolClientWaitingLong
        exp_alerts: []
      - eval_time: 6m
        alertname: MysqlpoolClientWaitingLong
        exp_alerts:
          - exp_labels: {{severity: warning, instance: "p:9187", pool: app}}
      - eval_time: 12m
        alertname: MysqlpoolFileDescriptorsNearLimit
        exp_alerts:
          - exp_labels: {{severity: warning, instance: "p:9187"}}
  - interval: 1m
    input_series:
      # 100 statements a minute: for 10 minutes 99 within 5 ms and 1 over 60 s; then all take ~10 s.
      - series: 'mysqlpool_query_duration_seconds_bucket{{instance="p:9187", job="mysqlpool", pool="app", le="0.005"}}'
        values: '0+99x10 990x20'
      - series: 'mysqlpool_query_duration_seconds_bucket{{instance="p:9187", job="mysqlpool", pool="app", le="1.0"}}'
        values: '0+99x10 990x20'
      - series: 'mysqlpool_query_duration_seconds_bucket{{instance="p:9187", job="mysqlpool", pool="app", le="60.0"}}'
        values: '0+99x10 990+100x20'
      - series: 'mysqlpool_query_duration_seconds_bucket{{instance="p:9187", job="mysqlpool", pool="app", le="+Inf"}}'
        values: '0+100x10 1000+100x20'
    alert_rule_test:
      - eval_time: 10m
        alertname: MysqlpoolQueryLatencyHigh
        exp_alerts: []
      - eval_time: 30m
        alertname: MysqlpoolQueryLatencyHigh
        exp_alerts:
          - exp_labels: {{severity: warning, instance: "p:9187", pool: app}}
"""


def test_the_newer_alerts_fire_when_they_should_and_only_then(promtool, tmp_path):
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it belongs in the test extras)")
    # The rules as they are, without their annotations (promtool would compare every word of them).
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    bare = tmp_path / "alerts.yml"
    bare.write_text(yaml.safe_dump(rules))
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(RULE_TESTS.format(alerts=bare))
    result = run(promtool, "test", "rules", str(tests), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

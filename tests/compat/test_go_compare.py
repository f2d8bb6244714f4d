# The pure parts of the go-sql-driver/mysql comparison (tests/compat/go_suite.py):
# how test2json's events become per-test outcomes, which tests run, which
# count as regressions, how KNOWN_DIFFERENCES sets a documented limitation
# apart only while the test fails the way it names, and what the proxy must
# not be left with.
import json
import shutil

import pytest

from tests.compat.go_suite import (
    DRIVER_SOURCE,
    INSTALL_HINT,
    KNOWN_DIFFERENCES,
    SKIPPED,
    Edit,
    HarnessError,
    Known,
    apply_edits,
    compare,
    failure_line,
    format_comparison,
    held_connections,
    log_problems,
    parse_setting,
    parse_test2json,
    run_pattern,
    selected_tests,
)


def events(*items):
    return "\n".join(json.dumps(dict(zip(("Action", "Test", "Output", "Elapsed"), item))) for item in items)


def ran(test, outcome, *output, seconds=0.1):
    return [("run", test), ("output", test, f"=== RUN   {test}\n"),
            *[("output", test, line) for line in output], (outcome, test, None, seconds)]


def outcome(name, detail=""):
    return {"outcome": name, "detail": detail, "seconds": 0.01}


TLS_FAILURE = "=== RUN   TestTLS\n    driver_test.go:1343: no Cipher\n--- FAIL: TestTLS (0.09s)"


def test_each_test_and_subtest_gets_its_outcome_its_output_and_its_time():
    text = events(
        *ran("TestDSNParser", "pass", seconds=0),
        *ran("TestTLS", "fail", "    driver_test.go:1343: no Cipher\n", "--- FAIL: TestTLS (0.09s)\n", seconds=0.09),
        *ran("TestConcurrent", "skip", "    driver_test.go:1781: MYSQL_TEST_CONCURRENT env var not set\n"),
        *ran("TestNormalizeTLSConfig/#00", "pass"),
        ("output", None, "FAIL\n"), ("fail", None, None, 46.7),
    )

    outcomes = parse_test2json(text)

    assert {test: entry["outcome"] for test, entry in outcomes.items()} == {
        "TestDSNParser": "pass", "TestTLS": "fail", "TestConcurrent": "skip", "TestNormalizeTLSConfig/#00": "pass"}
    assert outcomes["TestTLS"]["detail"] == TLS_FAILURE
    assert outcomes["TestTLS"]["seconds"] == 0.09


def test_a_test_the_binary_never_finished_is_an_error_with_what_the_binary_said():
    text = events(*ran("TestDSNParser", "pass"), ("run", "TestLongData"),
                  ("output", "TestLongData", "=== RUN   TestLongData\n"),
                  ("output", None, "panic: test timed out after 5m0s\n"), ("fail", None, None, 300.0))

    entry = parse_test2json(text + "\nexit status 2")["TestLongData"]

    assert entry["outcome"] == "error"
    assert "panic: test timed out after 5m0s" in entry["detail"]
    assert "exit status 2" in entry["detail"]


def test_the_failure_line_is_the_last_thing_the_test_said_from_its_file():
    detail = ("=== RUN   TestConcurrent\n    driver_test.go:1790: testing up to 151 concurrent connections \n"
              "    driver_test.go:1841: error on conn 3: Error 1040: Too many connections\n--- FAIL: TestConcurrent")

    assert failure_line(detail) == "driver_test.go:1841: error on conn 3: Error 1040: Too many connections"
    assert failure_line("panic: boom\nexit status 2") == "exit status 2"
    assert failure_line("") == ""


def test_every_test_but_the_skipped_ones_runs_and_the_pattern_names_exactly_them():
    listed = ["TestDSNParser", "TestConnectorReturnsTimeout", "TestTLS"]

    assert selected_tests(listed) == ["TestDSNParser", "TestTLS"]
    assert selected_tests(listed, only=["TestTLS", "TestConnectorReturnsTimeout"]) == ["TestTLS"]
    assert run_pattern(["TestTLS", "TestTLS2"]) == "^(TestTLS|TestTLS2)$"
    with pytest.raises(HarnessError, match="no test selected"):
        run_pattern([])


def test_the_test_that_dials_a_public_address_never_runs():
    assert "TestConnectorReturnsTimeout" in SKIPPED


def test_a_test_that_passes_directly_and_fails_through_the_proxy_is_a_regression_with_its_error():
    direct = {"TestValuer": outcome("pass"), "TestDSNParser": outcome("pass")}
    detail = "=== RUN   TestValuer\n    driver_test.go:181: error on exec CREATE TABLE: Error 1040: ...\n--- FAIL"
    proxy = {"TestValuer": outcome("fail", detail), "TestDSNParser": outcome("pass")}

    result = compare(direct, proxy, known={})

    [regression] = result.regressions
    assert (regression.test_id, regression.direct, regression.proxy) == ("TestValuer", "pass", "fail")
    assert regression.error == "driver_test.go:181: error on exec CREATE TABLE: Error 1040: ..."
    assert "1 test(s) pass directly but not through the proxy:" in format_comparison(result)


def test_a_test_missing_or_skipped_through_the_proxy_is_a_regression():
    direct = {"TestA": outcome("pass"), "TestB": outcome("pass")}

    result = compare(direct, {"TestB": outcome("skip", "server does not support TLS")}, known={})

    assert [(regression.test_id, regression.proxy) for regression in result.regressions] == [
        ("TestA", "missing"), ("TestB", "skip")]


def test_a_known_difference_is_reported_with_its_cause_and_not_counted():
    known = {"TestTLS": Known(failure="no Cipher", cause="TLS ends at the proxy")}

    result = compare({"TestTLS": outcome("pass")}, {"TestTLS": outcome("fail", TLS_FAILURE)}, known=known)

    assert result.regressions == []
    assert [(regression.test_id, entry.cause) for regression, entry in result.known] == [
        ("TestTLS", "TLS ends at the proxy")]
    assert "TestTLS: driver_test.go:1343: no Cipher -- TLS ends at the proxy" in format_comparison(result)


def test_a_known_test_that_fails_another_way_is_a_regression():
    known = {"TestTLS": Known(failure="no Cipher", cause="TLS ends at the proxy")}
    detail = "=== RUN   TestTLS\n    driver_test.go:1330: error on Ping: bad connection\n--- FAIL: TestTLS"

    result = compare({"TestTLS": outcome("pass")}, {"TestTLS": outcome("fail", detail)}, known=known)

    [regression] = result.regressions
    assert regression.expected == "no Cipher"
    assert "KNOWN_DIFFERENCES expects it to fail with 'no Cipher', not like this" in format_comparison(result)


def test_a_known_difference_whose_test_passes_through_the_proxy_is_stale():
    known = {"TestTLS": Known(failure="no Cipher", cause="cause")}

    result = compare({"TestTLS": outcome("pass")}, {"TestTLS": outcome("pass")}, known=known)

    assert result.stale == ["TestTLS"]
    assert "passes through the proxy now: remove it" in format_comparison(result)


def test_failing_both_ways_is_counted_and_passing_only_through_the_proxy_is_listed():
    direct = {"TestCharset": outcome("fail", "x"), "TestOdd": outcome("fail", "y"), "TestS": outcome("skip")}
    proxy = {"TestCharset": outcome("fail", "z"), "TestOdd": outcome("pass"), "TestS": outcome("skip")}

    result = compare(direct, proxy, known={})

    assert result.regressions == []
    assert result.both_failed == ["TestCharset"]
    assert result.proxy_only_passed == ["TestOdd"]


def test_every_known_difference_names_the_failure_it_expects_and_a_cause():
    for name, entry in KNOWN_DIFFERENCES.items():
        assert name.startswith("Test") and "/" not in name
        assert entry.failure.strip() and len(entry.cause) > 40


METRICS = """\
# TYPE mysqlpool_client_connections gauge
mysqlpool_client_connections{state="idle"} 0.0
mysqlpool_client_connections{state="active"} 1.0
mysqlpool_client_connections{state="handshake"} 0.0
# TYPE mysqlpool_backend_connections gauge
mysqlpool_backend_connections{pool="gotest",state="idle"} 4.0
mysqlpool_backend_connections{pool="gotest",state="in_use"} 2.0
mysqlpool_backend_connections{pool="gotest",state="connecting"} 0.0
"""


def test_client_connections_and_busy_server_connections_are_read_from_the_metrics():
    assert held_connections(METRICS) == {"client connections": 1.0, "server connections in use": 2.0}
    assert held_connections(METRICS.replace("} 1.0", "} 0.0").replace("} 2.0", "} 0.0")) == {
        "client connections": 0.0, "server connections in use": 0.0}


def test_tracebacks_and_error_lines_in_the_proxy_log_are_problems_warnings_are_not():
    text = ("2026-12-05T08:45:26.531Z WARNING mysqlpool.proxy: refused a client: checkout_timeout\n"
            "2026-12-05T08:45:27.000Z ERROR mysqlpool.client: internal error in client #3\n"
            "Traceback (most recent call last):\n"
            "2026-12-05T08:45:28.306Z INFO mysqlpool.proxy: an ERROR-looking word in a message\n")

    assert log_problems(text) == ["2026-12-05T08:45:27.000Z ERROR mysqlpool.client: internal error in client #3",
                                  "Traceback (most recent call last):"]


def test_a_setting_from_the_command_line_is_a_section_a_key_and_a_typed_value():
    assert parse_setting("pool.ping_after=0") == ("pool", "ping_after", 0)
    assert parse_setting("pool.max_lifetime = 2.5") == ("pool", "max_lifetime", 2.5)
    assert parse_setting("proxy.require_tls=true") == ("proxy", "require_tls", True)
    assert parse_setting('backend.ssl_mode="required"') == ("backend", "ssl_mode", "required")
    with pytest.raises(HarnessError, match=r"section\.key=value"):
        parse_setting("ping_after=0")


def test_the_edits_of_the_driver_tree_replace_what_they_name_once_or_refuse(tmp_path):
    (tmp_path / "driver_test.go").write_text('a("utf8")\nexpected = collation\nb("utf8")\n')

    apply_edits(tmp_path, [Edit("driver_test.go", 'a("utf8")', 'a("utf8mb3")')])
    assert (tmp_path / "driver_test.go").read_text() == 'a("utf8mb3")\nexpected = collation\nb("utf8")\n'
    with pytest.raises(HarnessError, match="not once: another release of the driver"):
        apply_edits(tmp_path, [Edit("driver_test.go", '("utf8', 'x')])
    with pytest.raises(HarnessError, match="0 times"):
        apply_edits(tmp_path, [Edit("driver_test.go", "absent", "x")])


def test_the_edits_fit_the_installed_driver_source(tmp_path):
    if not DRIVER_SOURCE.exists():
        pytest.fail(f"{DRIVER_SOURCE} is missing: {INSTALL_HINT}")
    shutil.copy(DRIVER_SOURCE / "driver_test.go", tmp_path / "driver_test.go")

    apply_edits(tmp_path)

    assert 'mustSetCharset("charset=utf8,ascii", "utf8mb3")' in (tmp_path / "driver_test.go").read_text()

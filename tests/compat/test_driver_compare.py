# The pure parts of the drivers' comparison (tests/compat/driver_suite.py and
# the pytest_suite.py pieces it shares with SQLAlchemy's): node ids from
# JUnit XML (also for mysqlclient's lower-case test class), what each leg is
# given to find its server, that every KNOWN_DIFFERENCES entry names the
# test it is about, the exit status, and installing SQLAlchemy 1.3 once.
import pytest

from tests.compat import driver_suite, sdist
from tests.compat.driver_suite import KNOWN_DIFFERENCES, Prepared, aiomysql_run, compare, mysqlclient_run
from tests.compat.pytest_suite import (
    EXIT_HARNESS,
    EXIT_OK,
    EXIT_REGRESSIONS,
    RunResult,
    exit_status,
    file_test_id,
    parse_junit,
)
from tests.compat.sdist import HarnessError, installed_into

JUNIT = '''<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="5">
 <testcase classname="tests.test_issues" name="test_issue_36[asyncio-mariadb]" file="tests/test_issues.py"
           line="228" time="0.2"><skipped type="pytest.xfail" message="aiomysql/issues/714"/>
 </testcase>
 <testcase classname="tests.test_MySQLdb_capabilities.test_MySQLdb" name="test_TIME"
           file="tests/test_MySQLdb_capabilities.py" line="27" time="0.1"/>
 <testcase classname="tests.sa.test_sa_distil.DistillArgsTest" name="test_distill_none"
           file="tests/sa/test_sa_distil.py" line="8" time="0"/>
 <testcase classname="tests.test_cursor" name="test_executemany" file="tests/test_cursor.py" line="36" time="0.3">
  <failure message="boom">Traceback (most recent call last):
  File "/w/mysqlclient-proxy/tests/test_cursor.py", line 40, in test_executemany
    cursor.executemany(q, rows)
MySQLdb.OperationalError: (2013, 'Lost connection')</failure>
 </testcase>
 <testcase classname="tests.test_ssl" name="test_tls_connect[asyncio-mariadb]" file="tests/test_ssl.py" line="5"
           time="0.1"><skipped type="pytest.skip" message="no TLS"/></testcase>
</testsuite></testsuites>'''


def outcome(name, detail=""):
    return {"outcome": name, "detail": detail, "seconds": 0.01}


def test_junit_ids_are_pytest_node_ids_also_for_a_lower_case_test_class():
    outcomes = parse_junit(JUNIT, file_test_id)

    assert {test_id: entry["outcome"] for test_id, entry in outcomes.items()} == {
        "tests/test_issues.py::test_issue_36[asyncio-mariadb]": "xfail",
        "tests/test_MySQLdb_capabilities.py::test_MySQLdb::test_TIME": "pass",
        "tests/sa/test_sa_distil.py::DistillArgsTest::test_distill_none": "pass",
        "tests/test_cursor.py::test_executemany": "fail",
        "tests/test_ssl.py::test_tls_connect[asyncio-mariadb]": "skip",
    }


def test_a_regression_names_the_drivers_test_frame_and_the_error():
    test_id = "mysqlclient: tests/test_cursor.py::test_executemany"
    proxy = {f"mysqlclient: {key}": entry for key, entry in parse_junit(JUNIT, file_test_id).items()}

    result = compare({test_id: outcome("pass")}, proxy)

    [regression] = result.comparison.regressions
    assert regression.error == "MySQLdb.OperationalError: (2013, 'Lost connection')"
    assert regression.where == "test_cursor.py:40 in test_executemany"


def test_every_known_difference_matches_the_test_it_is_about_and_only_it():
    ids = {"aiomysql: tests/test_issues.py::test_issue_36[[]*": [
        "aiomysql: tests/test_issues.py::test_issue_36[asyncio-mariadb]",
        "aiomysql: tests/test_issues.py::test_issue_36[uvloop-mariadb]"]}
    assert set(KNOWN_DIFFERENCES) == set(ids)
    unrelated = "aiomysql: tests/test_issues.py::test_issue_37[asyncio-mariadb]"
    for test_ids in ids.values():
        direct = {test_id: outcome("pass") for test_id in [*test_ids, unrelated]}
        proxy = {**{test_id: outcome("xfail", "issues/714") for test_id in test_ids}, unrelated: outcome("fail", "x")}

        result = compare(direct, proxy)

        assert sorted(regression.test_id for regression, _ in result.known) == sorted(test_ids)
        assert [regression.test_id for regression in result.comparison.regressions] == [unrelated]
        assert result.stale == []


def test_a_known_difference_whose_test_passes_through_the_proxy_is_stale():
    test_id = "aiomysql: tests/test_issues.py::test_issue_36[asyncio-mariadb]"

    result = compare({test_id: outcome("pass")}, {test_id: outcome("pass")})

    assert result.stale == list(KNOWN_DIFFERENCES)


def test_aiomysql_gets_its_address_root_password_and_sqlalchemy_13(tmp_path):
    prepared = Prepared({}, tmp_path / "sqlalchemy-1.3.24")

    args, env = aiomysql_run("127.0.0.1", 4000, tmp_path, prepared)

    assert args == ["tests", "--mysql-address", "mariadb=127.0.0.1:4000", "-k", "not uvloop"]
    assert env == {"MYSQL_ROOT_PASSWORD": driver_suite.ROOT_PASSWORD, "PYTHONPATH": str(tmp_path / "sqlalchemy-1.3.24")}


def test_mysqlclient_gets_an_option_file_with_its_account(tmp_path):
    args, env = mysqlclient_run("127.0.0.1", 4000, tmp_path, Prepared({}, None))

    assert args == ["tests"] and env == {"TESTDB": str(tmp_path / "compat.cnf")}
    text = (tmp_path / "compat.cnf").read_text()
    assert text.startswith("[MySQLdb-tests]\n")
    assert "port = 4000\n" in text and f"user = {driver_suite.MYSQLDB_USER}\n" in text
    assert f"database = {driver_suite.MYSQLDB_DATABASE}\n" in text


def run(name, outcomes, exit_code=0):
    return RunResult(name, "leg", exit_code, 1.0, outcomes, None)


def test_the_exit_status_says_whether_the_comparison_was_made_and_what_it_found():
    fine = {"leg: t::a": outcome("pass")}
    runs = {("leg", "direct"): run("direct", fine), ("leg", "proxy"): run("proxy", fine)}
    assert exit_status(runs, {"leg": compare(fine, fine, known={})}) == EXIT_OK

    broken = {"leg: t::a": outcome("fail", "x")}
    runs[("leg", "proxy")] = run("proxy", broken)
    assert exit_status(runs, {"leg": compare(fine, broken, known={})}) == EXIT_REGRESSIONS

    runs[("leg", "proxy")] = run("proxy", broken, exit_code=None)  # killed after its timeout
    assert exit_status(runs, {"leg": compare(fine, broken, known={})}) == EXIT_HARNESS
    runs[("leg", "proxy")] = run("proxy", None)  # no JUnit file
    assert exit_status(runs, {}) == EXIT_HARNESS


def test_sqlalchemy_13_is_installed_once_into_its_own_folder(tmp_path, monkeypatch):
    calls = []

    class Done:
        returncode = 0
        stdout = ""

    def pip(cmd, **kwargs):
        calls.append(cmd)
        target = cmd[cmd.index("--target") + 1]
        (tmp_path / target).mkdir(parents=True)
        return Done()

    monkeypatch.setattr(sdist.subprocess, "run", pip)
    folder = tmp_path / "cache" / "sqlalchemy-1.3.24"

    assert installed_into("sqlalchemy==1.3.24", folder, log=lambda message: None) == folder
    assert installed_into("sqlalchemy==1.3.24", folder, log=lambda message: None) == folder
    assert len(calls) == 1 and calls[0][-1] == "sqlalchemy==1.3.24" and "--no-deps" in calls[0]
    assert (folder / ".complete").exists()


def test_a_failed_install_names_what_is_missing_and_leaves_nothing(tmp_path, monkeypatch):
    class Done:
        returncode = 1
        stdout = "ERROR: No matching distribution found for sqlalchemy==1.3.24"

    monkeypatch.setattr(sdist.subprocess, "run", lambda *args, **kwargs: Done())

    with pytest.raises(HarnessError, match=r"(?s)could not install sqlalchemy==1\.3\.24 .*No matching"):
        installed_into("sqlalchemy==1.3.24", tmp_path / "sqlalchemy-1.3.24", log=lambda message: None)
    assert list(tmp_path.iterdir()) == []

# The pure parts of the SQLAlchemy comparison (tests/compat/sqlalchemy_suite.py):
# how pytest's JUnit XML becomes per-test outcomes with ids that are the
# same for both runs, which tests count as regressions, how KNOWN_DIFFERENCES
# sets a documented limitation apart, and where the sdist comes from.
import io
import tarfile

import pytest

from tests.compat import sdist
from tests.compat.sqlalchemy_suite import (
    HarnessError,
    compare,
    format_leg_comparison,
    normalise_test_id,
    parse_junit,
    sqlalchemy_sdist_dir,
)

TRACEBACK = '''Traceback (most recent call last):
  File "/cache/sqlalchemy-2.1.9/test/engine/test_transaction.py", line 120, in test_savepoint
    conn.execute(select(1))
  File "/cache/sqlalchemy-2.1.9/lib/sqlalchemy/engine/base.py", line 1419, in execute
    return meth(
pymysql.err.OperationalError: (1305, 'SAVEPOINT sa_savepoint_1 does not exist')'''

JUNIT = f'''<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="2" tests="6">
 <testcase classname="test.dialect.test_suite.DateTest_mariadb+pymysql_10_11_19" name="test_round_trip" time="0.012"/>
 <testcase classname="test.engine.test_transaction.TransactionTest_mariadb+pymysql_10_11_19"
           name="test_savepoint[nested]" time="0.5">
  <failure message="OperationalError">{TRACEBACK}</failure>
 </testcase>
 <testcase classname="test.dialect.mysql.test_types.TypesTest_mariadb+pymysql_10_11_19" name="test_json" time="0">
  <skipped type="pytest.skip" message="not postgresql">skip text</skipped>
 </testcase>
 <testcase classname="test.orm.test_transaction.X_mariadb+pymysql_10_11_19" name="test_xf" time="0">
  <skipped type="pytest.xfail" message="known"/>
 </testcase>
 <testcase classname="test.orm.test_transaction.Y_mariadb+pymysql_10_11_19" name="test_td" time="0.1"/>
 <testcase classname="test.orm.test_transaction.Y_mariadb+pymysql_10_11_19" name="test_td" time="0.1">
  <error message="failed on teardown">teardown boom</error>
 </testcase>
 <testcase classname="test.engine.test_reconnect" name="test_module_level" time="0.1"/>
</testsuite></testsuites>'''


def outcome(name, detail=""):
    return {"outcome": name, "detail": detail, "seconds": 0.01}


def test_junit_ids_drop_the_backend_suffix_so_both_runs_name_a_test_alike():
    assert normalise_test_id("test.dialect.test_suite.DateTest_mariadb+pymysql_10_11_19", "test_x[a-b]") == \
        "test/dialect/test_suite.py::DateTest::test_x[a-b]"
    assert normalise_test_id("test.engine.test_execute.ExecTest_mysql+mysqldb_8_0", "test_y") == \
        "test/engine/test_execute.py::ExecTest::test_y"
    assert normalise_test_id("test.engine.test_reconnect", "test_f") == "test/engine/test_reconnect.py::test_f"


def test_junit_outcomes_pass_fail_skip_xfail_and_a_teardown_error():
    outcomes = parse_junit(JUNIT)

    assert {test_id: entry["outcome"] for test_id, entry in outcomes.items()} == {
        "test/dialect/test_suite.py::DateTest::test_round_trip": "pass",
        "test/engine/test_transaction.py::TransactionTest::test_savepoint[nested]": "fail",
        "test/dialect/mysql/test_types.py::TypesTest::test_json": "skip",
        "test/orm/test_transaction.py::X::test_xf": "xfail",
        "test/orm/test_transaction.py::Y::test_td": "error",  # passed, then its teardown failed
        "test/engine/test_reconnect.py::test_module_level": "pass",
    }
    failed = outcomes["test/engine/test_transaction.py::TransactionTest::test_savepoint[nested]"]
    assert failed["detail"] == TRACEBACK
    assert failed["seconds"] == 0.5


def test_a_test_that_passes_directly_and_fails_through_the_proxy_is_a_regression_with_both_outcomes():
    test_id = "pymysql: test/engine/test_transaction.py::TransactionTest::test_savepoint"
    direct = {test_id: outcome("pass"), "pymysql: t.py::A::test_ok": outcome("pass")}
    proxy = {test_id: outcome("fail", TRACEBACK), "pymysql: t.py::A::test_ok": outcome("pass")}

    result = compare(direct, proxy, known={})

    [regression] = result.comparison.regressions
    assert (regression.test_id, regression.direct, regression.proxy) == (test_id, "pass", "fail")
    assert regression.error == "pymysql.err.OperationalError: (1305, 'SAVEPOINT sa_savepoint_1 does not exist')"
    assert regression.where == "engine/test_transaction.py:120 in test_savepoint"
    text = format_leg_comparison(result)
    assert "1 test(s) pass directly but not through the proxy:" in text
    assert f"{test_id} (fail at engine/test_transaction.py:120 in test_savepoint)" in text


def test_a_test_missing_through_the_proxy_is_a_regression():
    direct = {"pymysql: t.py::A::test_a": outcome("pass")}

    [regression] = compare(direct, {}, known={}).comparison.regressions

    assert regression.proxy == "missing"


def test_a_known_difference_is_reported_with_its_cause_and_not_counted():
    test_id = "pymysql: test/engine/test_transaction.py::TransactionTest::test_savepoint"
    known = {"pymysql: test/engine/test_transaction.py::TransactionTest::test_save*": "why it cannot work"}
    result = compare({test_id: outcome("pass")}, {test_id: outcome("fail", TRACEBACK)}, known=known)

    assert result.comparison.regressions == []
    assert [(regression.test_id, cause) for regression, cause in result.known] == [(test_id, "why it cannot work")]
    assert result.stale == []
    assert "why it cannot work" in format_leg_comparison(result)


def test_a_known_difference_whose_test_passes_through_the_proxy_is_stale():
    test_id = "pymysql: t.py::A::test_a"
    result = compare({test_id: outcome("pass")}, {test_id: outcome("pass")}, known={test_id: "cause"})

    assert result.stale == [test_id]
    assert "passes through the proxy now: remove it" in format_leg_comparison(result)


def test_failing_both_ways_is_counted_and_passing_only_through_the_proxy_is_listed():
    direct = {"a::test_both": outcome("fail", "x"), "a::test_odd": outcome("error", "y"), "a::test_s": outcome("skip")}
    proxy = {"a::test_both": outcome("error", "z"), "a::test_odd": outcome("pass"), "a::test_s": outcome("skip")}

    result = compare(direct, proxy, known={})

    assert result.comparison.regressions == []
    assert result.comparison.both_failed == ["a::test_both"]
    assert result.comparison.proxy_only_passed == ["a::test_odd"]


# --------------------------------------------------------------------------
# The sdist
# --------------------------------------------------------------------------


def make_sdist(folder, version, name="sqlalchemy", files=None):
    files = files or {"test/conftest.py": "# plugin\n", "test/engine/test_x.py": "", "lib/sqlalchemy/__init__.py": "",
                      "setup.cfg": "[db]\n", "pyproject.toml": "", "doc/build/index.rst": ""}
    path = folder / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for member, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{member}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def no_download(monkeypatch):
    def refuse(*args):
        raise AssertionError("downloaded although the sdist was cached")

    monkeypatch.setattr(sdist, "_download_sdist", refuse)


def test_lib_test_and_the_pytest_configuration_of_a_cached_sdist_are_unpacked(tmp_path, no_download):
    make_sdist(tmp_path, "9.9.9")

    unpacked = sqlalchemy_sdist_dir("9.9.9", tmp_path, log=lambda message: None)

    assert unpacked == tmp_path / "sqlalchemy-9.9.9"
    assert (unpacked / "test" / "conftest.py").read_text() == "# plugin\n"
    assert (unpacked / "lib" / "sqlalchemy" / "__init__.py").exists()
    assert (unpacked / "setup.cfg").exists() and (unpacked / "pyproject.toml").exists()
    assert not (unpacked / "doc").exists()


def test_a_second_call_uses_the_unpacked_folder(tmp_path, no_download):
    archive = make_sdist(tmp_path, "9.9.9", name="SQLAlchemy")  # the name of the sdists up to 2.0
    sqlalchemy_sdist_dir("9.9.9", tmp_path, log=lambda message: None)
    archive.unlink()

    assert sqlalchemy_sdist_dir("9.9.9", tmp_path, log=lambda message: None) == tmp_path / "sqlalchemy-9.9.9"


def test_an_sdist_without_the_pytest_plugin_is_refused(tmp_path, no_download):
    make_sdist(tmp_path, "9.9.9", files={"test/other.py": "", "lib/sqlalchemy/__init__.py": ""})

    with pytest.raises(HarnessError, match=r"no test/conftest.py"):
        sqlalchemy_sdist_dir("9.9.9", tmp_path, log=lambda message: None)
    assert not (tmp_path / "sqlalchemy-9.9.9").exists()


def test_a_failed_download_names_what_is_missing(tmp_path, monkeypatch):
    class Done:
        returncode = 1
        stdout = "ERROR: Could not find a version that satisfies the requirement sqlalchemy==9.9.9"

    monkeypatch.setattr(sdist.subprocess, "run", lambda *args, **kwargs: Done())

    with pytest.raises(HarnessError, match=r"(?s)could not download the SQLAlchemy 9.9.9 sdist .*Could not find"):
        sqlalchemy_sdist_dir("9.9.9", tmp_path, log=lambda message: None)

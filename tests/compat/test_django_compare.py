# The pure parts of the Django comparison (tests/compat/django_suite.py):
# which tests count as regressions, what is said about each, and how the
# server errors Django swallowed are told apart from those a test expects.
from tests.compat.django_suite import (
    MISSING,
    compare,
    error_line,
    extra_db_errors,
    format_comparison,
    innermost_test_frame,
    statement_kind,
)

TRACEBACK = '''Traceback (most recent call last):
  File "/usr/lib/python3.11/unittest/case.py", line 57, in testPartExecutor
    yield
  File "/repo/.cache/django-compat/django-5.2.19/tests/basic/tests.py", line 274, in test_save
    a.save()
  File "/repo/tests/compat/compat_runner.py", line 71, in wrapper
    return method(self, *args)
  File "/venv/lib/python3.11/site-packages/django/db/backends/utils.py", line 99, in _execute
    self.db.validate_no_broken_transaction()
django.db.utils.OperationalError: (1305, 'SAVEPOINT s1_x2 does not exist')
'''


def outcome(name, detail="", db_errors=()):
    return {"outcome": name, "detail": detail, "seconds": 0.01, "db_errors": list(db_errors)}


def db_error(errno, statement="ROLLBACK TO SAVEPOINT `s1_x2`", alias="default", message="SAVEPOINT does not exist"):
    return {"alias": alias, "errno": errno, "message": message, "statement": statement}


def test_a_test_that_passes_directly_and_fails_through_the_proxy_is_a_regression():
    direct = {"app.tests.T.test_a": outcome("pass"), "app.tests.T.test_b": outcome("pass")}
    proxy = {"app.tests.T.test_a": outcome("error", TRACEBACK), "app.tests.T.test_b": outcome("pass")}

    result = compare(direct, proxy)

    assert [(r.test_id, r.direct, r.proxy) for r in result.regressions] == [("app.tests.T.test_a", "pass", "error")]
    regression = result.regressions[0]
    assert regression.error == "django.db.utils.OperationalError: (1305, 'SAVEPOINT s1_x2 does not exist')"
    assert regression.where == "basic/tests.py:274 in test_save"
    assert regression.detail == TRACEBACK


def test_skipped_or_missing_through_the_proxy_is_a_regression_too():
    direct = {"app.tests.T.test_a": outcome("pass"), "app.tests.T.test_b": outcome("pass")}
    proxy = {"app.tests.T.test_a": outcome("skip", "Database doesn't support feature(s): x")}

    result = compare(direct, proxy)

    assert [(r.test_id, r.proxy) for r in result.regressions] == [
        ("app.tests.T.test_a", "skip"), ("app.tests.T.test_b", MISSING)]
    assert result.regressions[0].error == "skipped: Database doesn't support feature(s): x"
    assert "did not run" in result.regressions[1].error


def test_a_test_that_never_ran_is_explained_by_its_class_level_error():
    direct = {"app.tests.T.test_a": outcome("pass"), "app.tests.U.test_b": outcome("pass")}
    proxy = {"setUpClass (app.tests.T)": outcome("error", TRACEBACK), "app.tests.U.test_b": outcome("pass")}

    result = compare(direct, proxy)

    assert [r.test_id for r in result.regressions] == ["app.tests.T.test_a"]
    assert result.regressions[0].detail.startswith("did not run: setUpClass (app.tests.T) failed\n")
    assert result.regressions[0].error == "django.db.utils.OperationalError: (1305, 'SAVEPOINT s1_x2 does not exist')"
    assert list(result.class_errors) == ["setUpClass (app.tests.T)"]


def test_failing_both_ways_is_counted_and_passing_only_through_the_proxy_is_listed():
    direct = {"a.t.T.test_both": outcome("fail", "AssertionError"), "a.t.T.test_odd": outcome("error", "x"),
              "a.t.T.test_skip": outcome("skip", "no"), "a.t.T.test_xfail": outcome("xfail")}
    proxy = {"a.t.T.test_both": outcome("error", "y"), "a.t.T.test_odd": outcome("pass"),
             "a.t.T.test_skip": outcome("skip", "no"), "a.t.T.test_xfail": outcome("xfail")}

    result = compare(direct, proxy)

    assert result.regressions == []
    assert result.both_failed == ["a.t.T.test_both"]
    assert result.proxy_only_passed == ["a.t.T.test_odd"]


def test_server_errors_a_test_also_meets_directly_are_not_reported():
    expected = db_error(1062, "INSERT INTO `t` VALUES (1)")
    swallowed = db_error(1305)
    direct = {"a.t.T.test_a": outcome("pass", db_errors=[expected])}
    proxy = {"a.t.T.test_a": outcome("pass", db_errors=[expected, swallowed])}

    assert extra_db_errors(direct["a.t.T.test_a"], proxy["a.t.T.test_a"]) == [swallowed]
    result = compare(direct, proxy)
    assert result.regressions == []
    assert result.proxy_only_db_errors == {"a.t.T.test_a": [swallowed]}
    assert [(kind, len(errors)) for kind, errors in result.db_error_groups()] == [("1305 on ROLLBACK TO SAVEPOINT", 1)]


def test_the_same_error_twice_through_the_proxy_and_once_directly_leaves_one():
    direct = outcome("pass", db_errors=[db_error(1305)])
    proxy = outcome("pass", db_errors=[db_error(1305), db_error(1305, alias="other")])

    assert extra_db_errors(direct, proxy) == [db_error(1305, alias="other")]


def test_error_line_is_the_exception_after_the_last_frame():
    assert error_line(TRACEBACK, "error") == \
        "django.db.utils.OperationalError: (1305, 'SAVEPOINT s1_x2 does not exist')"
    assert error_line("AssertionError: 1 != 2\n\nmore text", "fail") == "AssertionError: 1 != 2"
    assert error_line("", "error") == "error"
    assert error_line("", "xpass") == "unexpected success"
    assert len(error_line("Traceback:\n  File \"x\", line 1, in f\n    f()\nE: " + "x" * 500, "error")) == 300


def test_innermost_test_frame_skips_the_harness_and_library_frames():
    assert innermost_test_frame(TRACEBACK) == "basic/tests.py:274 in test_save"
    assert innermost_test_frame("no traceback") == ""


def test_statement_kind_is_the_leading_keywords():
    assert statement_kind("ROLLBACK TO SAVEPOINT `s1_x2`") == "ROLLBACK TO SAVEPOINT"
    assert statement_kind("INSERT INTO `t` VALUES (1)") == "INSERT INTO"
    assert statement_kind("SELECT `a` FROM t") == "SELECT"
    assert statement_kind("(commit)") == "(commit)"


def test_the_text_report_lists_each_regression_under_its_error():
    direct = {f"a.t.T.test_{i}": outcome("pass") for i in range(3)}
    proxy = {"a.t.T.test_0": outcome("error", TRACEBACK), "a.t.T.test_1": outcome("error", TRACEBACK),
             "a.t.T.test_2": outcome("pass", db_errors=[db_error(1305)])}

    text = format_comparison(compare(direct, proxy), limit_per_group=1)

    assert "2 test(s) pass directly but not through the proxy:" in text
    assert "  [2] django.db.utils.OperationalError: (1305, 'SAVEPOINT s1_x2 does not exist')" in text
    assert "      a.t.T.test_0 (error at basic/tests.py:274 in test_save)" in text
    assert "      ... and 1 more" in text
    assert "[1 in 1 test(s)] 1305 on ROLLBACK TO SAVEPOINT" in text
    assert "0 test(s) fail both directly and through the proxy (not counted)" in text

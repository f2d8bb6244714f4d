# Django's own test runner, made to record each test's outcome in a JSON file.
#
# Used by scripts/django-compat.py through compat_settings.TEST_RUNNER, in a
# process running the Django sdist's tests/runtests.py (this folder is put on
# PYTHONPATH). RecordingRunner is DiscoverRunner that leaves out the tests
# named in $DJANGO_COMPAT_EXCLUDE (comma-separated test ids or prefixes of
# them, e.g. auth_tests.test_hashers), with three additions:
#   * its result (RecordingResult) keeps, for each test id, {"outcome",
#     "detail", "seconds", "db_errors"} and writes the whole map to
#     $DJANGO_COMPAT_RESULTS when the run stops, even when it is interrupted;
#     the worst outcome wins when a test reports several (a failing subtest,
#     an error in tearDown);
#   * every error the server returns to Django is noted (errno, message, the
#     statement), including those Django swallows: when ROLLBACK TO SAVEPOINT
#     fails at the end of a test, Django only marks the outer transaction as
#     broken, and the test that fails is a later one. A test's "db_errors"
#     are those from its start until the next test starts, so they include
#     its own teardown (TestCase rolls its savepoint back after stopTest) and
#     its class's;
#   * with --parallel, the worker processes send each error as its formatted
#     text (TextError), so tracebacks cross the process boundary without
#     tblib and no unpicklable exception can break a worker, and they send
#     each test's duration and database errors as extra events (addElapsed,
#     addDbErrors) that the parent's result replays like the others.
# Outcomes: pass, skip, xfail (expected failure), fail, error, xpass
# (unexpected success). Class-level errors (setUpClass, fixtures) appear under
# unittest's own ids, e.g. "setUpClass (transactions.tests.AtomicTests)".
from __future__ import annotations

import json
import os
import time
import traceback
import unittest
from pathlib import Path

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.test.runner import DiscoverRunner, ParallelTestSuite, RemoteTestResult, RemoteTestRunner
from django.test.utils import iter_test_cases

RESULTS_ENV = "DJANGO_COMPAT_RESULTS"
EXCLUDE_ENV = "DJANGO_COMPAT_EXCLUDE"
SEVERITY = {"pass": 0, "skip": 1, "xfail": 2, "xpass": 3, "fail": 4, "error": 5}
SQL_SHOWN = 200  # characters of a failed statement kept


# --------------------------------------------------------------------------
# Errors from the server, swallowed or not
# --------------------------------------------------------------------------

_db_errors: list[dict] = []  # noted since the last take_db_errors(), in this process
_recorder_installed = False


def note_db_error(alias: str, exc: BaseException, statement: str) -> None:
    """Keep a server error (one with an errno); Django's own errors (no errno) are not the server's."""
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        message = str(args[1]) if len(args) > 1 else ""
        _db_errors.append({"alias": alias, "errno": args[0], "message": message,
                           "statement": statement[:SQL_SHOWN]})


def take_db_errors() -> list[dict]:
    taken = list(_db_errors)
    _db_errors.clear()
    return taken


def _noting(method, describe):
    def wrapper(self, *args):
        try:
            return method(self, *args)
        except DatabaseError as exc:
            note_db_error(self.db.alias if isinstance(self, CursorWrapper) else self.alias, exc, describe(args))
            raise

    wrapper.__wrapped__ = method
    return wrapper


def install_error_recorder() -> None:
    """Note the errors of every statement, commit and rollback Django sends (once per process).
    Class attributes are wrapped, not connection.execute_wrappers, which tests inspect."""
    global _recorder_installed
    if _recorder_installed:
        return
    CursorWrapper._execute = _noting(CursorWrapper._execute, lambda args: str(args[0]))
    CursorWrapper._executemany = _noting(CursorWrapper._executemany, lambda args: str(args[0]))
    BaseDatabaseWrapper._commit = _noting(BaseDatabaseWrapper._commit, lambda args: "(commit)")
    BaseDatabaseWrapper._rollback = _noting(BaseDatabaseWrapper._rollback, lambda args: "(rollback)")
    _recorder_installed = True


# --------------------------------------------------------------------------
# Worker processes (--parallel)
# --------------------------------------------------------------------------


class TextError(Exception):
    """An error that happened in a worker process, as its formatted traceback."""


class TextFailure(AssertionError):
    """A failed assertion that happened in a worker process, as its formatted traceback."""


def as_text(err):
    """An exc_info tuple whose exception carries the original's traceback as text (picklable)."""
    exc_type, exc_value, tb = err
    if issubclass(exc_type, (TextError, TextFailure)):
        return err
    text = "".join(traceback.format_exception(exc_type, exc_value, tb))
    kind = TextFailure if issubclass(exc_type, AssertionError) else TextError
    return kind, kind(text), None


class TextRemoteResult(RemoteTestResult):
    """The worker side: errors as text; durations and database errors as extra events."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.started_at = 0.0
        self.last_index: int | None = None

    def flush_db_errors(self) -> None:
        """Give the errors noted since the last test started to that test."""
        errors = take_db_errors()
        if errors and self.last_index is not None:
            self.events.append(("addDbErrors", self.last_index, errors))

    def startTest(self, test):
        self.flush_db_errors()
        self.started_at = time.monotonic()
        super().startTest(test)
        self.last_index = self.test_index

    def stopTest(self, test):
        self.events.append(("addElapsed", self.test_index, time.monotonic() - self.started_at))
        super().stopTest(test)

    def addError(self, test, err):
        super().addError(test, as_text(err))

    def addFailure(self, test, err):
        super().addFailure(test, as_text(err))

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, as_text(err) if err is not None else None)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, as_text(err))


class TextRemoteRunner(RemoteTestRunner):
    resultclass = TextRemoteResult

    def run(self, test):
        install_error_recorder()  # already there after a fork; needed after a spawn
        take_db_errors()  # noted before this subsuite: not its tests'
        result = super().run(test)
        result.flush_db_errors()  # the last test's teardown and its class's
        return result


class TextParallelSuite(ParallelTestSuite):
    runner_class = TextRemoteRunner


# --------------------------------------------------------------------------
# The main process
# --------------------------------------------------------------------------


def error_text(err, test, result) -> str:
    exc_type, exc_value, _ = err
    if issubclass(exc_type, (TextError, TextFailure)):
        return str(exc_value)
    return result._exc_info_to_string(err, test)


class RecordingResult(unittest.TextTestResult):
    """The usual text output, plus each test's outcome, written to $DJANGO_COMPAT_RESULTS at the end."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outcomes: dict[str, dict] = {}
        self.started_at = 0.0
        self.last_test = None  # for database errors noted in this process (--parallel 1)

    def entry(self, test) -> dict:
        return self.outcomes.setdefault(
            test.id(), {"outcome": None, "detail": "", "seconds": None, "db_errors": []})

    def record(self, test, outcome: str, detail: str = "") -> None:
        entry = self.entry(test)
        if entry["outcome"] is None or SEVERITY[outcome] > SEVERITY[entry["outcome"]]:
            entry.update(outcome=outcome, detail=detail)

    def addElapsed(self, test, seconds: float) -> None:
        """A test's duration; with --parallel, the worker's measure (see TextRemoteResult)."""
        entry = self.outcomes.get(test.id())
        if entry is not None and entry["seconds"] is None:
            entry["seconds"] = round(seconds, 3)

    def addDbErrors(self, test, errors: list[dict]) -> None:
        self.entry(test)["db_errors"].extend(errors)

    def flush_db_errors(self) -> None:
        errors = take_db_errors()
        if errors and self.last_test is not None:
            self.addDbErrors(self.last_test, errors)

    def startTest(self, test):
        self.flush_db_errors()
        self.started_at = time.monotonic()
        super().startTest(test)
        if not isinstance(test, unittest.suite._ErrorHolder):
            self.last_test = test

    def stopTest(self, test):
        super().stopTest(test)
        if not isinstance(test, unittest.suite._ErrorHolder):
            self.addElapsed(test, time.monotonic() - self.started_at)

    def addSuccess(self, test):
        super().addSuccess(test)
        self.record(test, "pass")

    def addError(self, test, err):
        super().addError(test, err)
        self.record(test, "error", error_text(err, test, self))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.record(test, "fail", error_text(err, test, self))

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            outcome = "fail" if issubclass(err[0], test.failureException) else "error"
            self.record(test, outcome, f"{subtest}\n{error_text(err, test, self)}")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.record(test, "skip", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.record(test, "xfail")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.record(test, "xpass", "unexpected success")

    def stopTestRun(self):
        super().stopTestRun()
        self.flush_db_errors()
        for entry in self.outcomes.values():
            if entry["outcome"] is None:  # started, then the run was interrupted
                entry.update(outcome="error", detail="the test reported no outcome")
        path = os.environ.get(RESULTS_ENV)
        if path:
            Path(path).write_text(json.dumps(self.outcomes, indent=1, sort_keys=True))


def excluded(test_id: str, prefixes: list[str]) -> bool:
    return any(test_id == prefix or test_id.startswith(prefix + ".") for prefix in prefixes)


class RecordingRunner(DiscoverRunner):
    parallel_test_suite = TextParallelSuite

    def load_tests_for_label(self, label, discover_kwargs):
        """The label's tests less those named (by id or id prefix) in $DJANGO_COMPAT_EXCLUDE."""
        tests = super().load_tests_for_label(label, discover_kwargs)
        prefixes = [prefix for prefix in os.environ.get(EXCLUDE_ENV, "").split(",") if prefix]
        if not prefixes:
            return tests
        return unittest.TestSuite(test for test in iter_test_cases(tests) if not excluded(test.id(), prefixes))

    def setup_test_environment(self, **kwargs):
        super().setup_test_environment(**kwargs)
        install_error_recorder()

    def get_resultclass(self):
        return RecordingResult

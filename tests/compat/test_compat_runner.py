# The test runner the Django comparison puts into Django's runtests.py
# (tests/compat/compat_runner.py), on plain unittest cases and without a
# database: every outcome lands in the JSON file; a worker's errors, even
# unpicklable ones, reach the main process as their traceback text, without
# tblib; durations and server errors noted during a test (and its teardown)
# are given to that test.
import io
import json
import pickle
import unittest

from tests.compat import compat_runner
from tests.compat.compat_runner import (
    RESULTS_ENV,
    RecordingResult,
    TextParallelSuite,
    TextRemoteRunner,
    note_db_error,
    take_db_errors,
)


class ServerError(Exception):
    """Like Django's wrapped MySQLdb errors: args are (errno, message)."""


class Unpicklable(Exception):
    def __init__(self):
        super().__init__("cannot cross a pipe")
        self.callback = lambda: None  # lambdas do not pickle


class Sample(unittest.TestCase):
    __test__ = False  # run by the tests below, not by pytest

    def test_pass(self):
        pass

    def test_fail(self):
        self.assertEqual(1, 2)

    def test_error(self):
        raise Unpicklable()

    @unittest.skip("no such feature")
    def test_skip(self):
        pass

    @unittest.expectedFailure
    def test_xfail(self):
        self.fail("expected")

    def test_subtest(self):
        for i in range(2):
            with self.subTest(i=i):
                self.assertEqual(i, 0)

    def test_swallowed_server_error(self):
        note_db_error("other", ServerError(1305, "SAVEPOINT s1_x2 does not exist"), "ROLLBACK TO SAVEPOINT `s1_x2`")


def sample_suite():
    names = ["test_pass", "test_fail", "test_error", "test_skip", "test_xfail", "test_subtest",
             "test_swallowed_server_error"]
    return unittest.TestSuite(Sample(name) for name in names)


def sample_id(name):
    return f"{__name__}.Sample.{name}"


def check_outcomes(outcomes):
    assert {test_id.rsplit(".", 1)[1]: entry["outcome"] for test_id, entry in outcomes.items()} == {
        "test_pass": "pass", "test_fail": "fail", "test_error": "error", "test_skip": "skip",
        "test_xfail": "xfail", "test_subtest": "fail", "test_swallowed_server_error": "pass"}
    assert "AssertionError: 1 != 2" in outcomes[sample_id("test_fail")]["detail"]
    assert "in test_error\n" in outcomes[sample_id("test_error")]["detail"]
    assert "Unpicklable: cannot cross a pipe" in outcomes[sample_id("test_error")]["detail"]
    assert outcomes[sample_id("test_skip")]["detail"] == "no such feature"
    assert "(i=1)" in outcomes[sample_id("test_subtest")]["detail"]
    assert outcomes[sample_id("test_swallowed_server_error")]["db_errors"] == [
        {"alias": "other", "errno": 1305, "message": "SAVEPOINT s1_x2 does not exist",
         "statement": "ROLLBACK TO SAVEPOINT `s1_x2`"}]
    assert all(entry["db_errors"] == [] for test_id, entry in outcomes.items()
               if not test_id.endswith("test_swallowed_server_error"))
    assert all(entry["seconds"] is not None for entry in outcomes.values())


def test_one_process_writes_every_outcome_to_the_results_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    monkeypatch.setenv(RESULTS_ENV, str(path))
    take_db_errors()

    unittest.TextTestRunner(stream=io.StringIO(), resultclass=RecordingResult).run(sample_suite())

    check_outcomes(json.loads(path.read_text()))


def test_worker_events_cross_a_pipe_without_tblib_and_replay_in_the_main_process(tmp_path, monkeypatch):
    monkeypatch.setattr(compat_runner, "install_error_recorder", lambda: None)  # no patching Django here
    path = tmp_path / "results.json"
    monkeypatch.setenv(RESULTS_ENV, str(path))
    subsuite = sample_suite()
    tests = list(subsuite)  # the main process's copy (running a suite empties it)

    worker_result = TextRemoteRunner().run(subsuite)
    events = pickle.loads(pickle.dumps(worker_result.events))  # what multiprocessing does

    result = RecordingResult(io.StringIO(), descriptions=False, verbosity=0)
    result.startTestRun()
    for event in events:
        TextParallelSuite.handle_event(None, result, tests, event)
    result.stopTestRun()
    check_outcomes(json.loads(path.read_text()))


def test_only_server_errors_are_noted():
    take_db_errors()
    note_db_error("default", ServerError(1062, "Duplicate entry"), "INSERT INTO t VALUES (1)")
    note_db_error("default", ServerError("An error occurred in the current transaction."), "SELECT 1")

    assert [error["errno"] for error in take_db_errors()] == [1062]
    assert take_db_errors() == []

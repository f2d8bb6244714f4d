"""Tests of mysqlpool_proxy.logs: formats, structured fields, secret masking."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from mysqlpool_proxy.logs import is_secret_name, log_event, mask_fields, redact, setup_logging


@pytest.fixture
def capture():
    """setup_logging(level, fmt) into a buffer; returns a function giving the lines so far."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("mysqlpool").level)
    stream = io.StringIO()

    def setup(level="debug", fmt="json"):
        setup_logging(level, fmt, stream=stream)
        return lambda: stream.getvalue().splitlines()

    yield setup
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logging.getLogger("mysqlpool").setLevel(saved[2])


def test_json_lines_parse(capture):
    lines = capture(fmt="json")
    log = logging.getLogger("mysqlpool.pool")
    log_event(log, "info", "checkout", user="app", wait=0.25, conn_id=7)
    log.warning("plain %s", "message")
    first, second = (json.loads(line) for line in lines())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first.pop("ts"))
    assert first == {"level": "info", "logger": "mysqlpool.pool", "msg": "checkout",
                     "user": "app", "wait": 0.25, "conn_id": 7}
    assert second["msg"] == "plain message" and second["level"] == "warning"


def test_json_reserved_names_and_odd_values(capture):
    lines = capture(fmt="json")
    log_event(logging.getLogger("mysqlpool.x"), logging.ERROR, "m", msg="field", when=object(),
              ratio=float("nan"))
    obj = json.loads(lines()[0])
    assert obj["msg"] == "m" and obj["field_msg"] == "field"
    assert obj["ratio"] == "nan" and obj["when"].startswith("<object")


def test_json_exception(capture):
    lines = capture(fmt="json")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log_event(logging.getLogger("mysqlpool.x"), "error", "failed", exc_info=True, step=2)
    obj = json.loads(lines()[0])
    assert "RuntimeError: boom" in obj["exc"] and obj["step"] == 2


def test_text_format(capture):
    lines = capture(fmt="text")
    log_event(logging.getLogger("mysqlpool.pool"), "info", "pool grown", user="app", size=3,
              note="two words", empty="")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO mysqlpool.pool: pool grown "
                        r'user=app size=3 note="two words" empty=""', lines()[0])


def test_secrets_masked_in_both_formats(capture):
    for fmt in ("json", "text"):
        lines = capture(fmt=fmt)
        log_event(logging.getLogger("mysqlpool.auth"), "info", "login", user="app",
                  password="hunter2", backend_password="pw2", api_token="t0k3n-value",
                  client_secret="s", nested={"Password": "inner", "ok": 1})
        out = "\n".join(lines())
        for secret in ("hunter2", "pw2", "t0k3n-value", "inner"):
            assert secret not in out
        assert "app" in out
    assert json.loads(capture(fmt="json")()[0])["password"] == "***"


def test_caller_fields_dict_is_not_modified(capture):
    capture()
    fields = {"password": "x"}
    logging.getLogger("mysqlpool.x").info("m", extra={"fields": fields})
    assert fields == {"password": "x"}


def test_levels(capture):
    lines = capture(level="warning", fmt="text")
    log = logging.getLogger("mysqlpool.pool")
    log.info("hidden")
    log_event(log, "debug", "hidden too")
    log.warning("shown")
    logging.getLogger("some.library").info("library info is hidden")
    logging.getLogger("some.library").error("library error is shown")
    assert [line.split(": ", 1)[1] for line in lines()] == ["shown", "library error is shown"]


def test_setup_twice_replaces_handler(capture):
    capture(fmt="text")
    lines = capture(fmt="json")
    logging.getLogger("mysqlpool").info("once")
    assert len(lines()) == 1 and json.loads(lines()[0])["msg"] == "once"


def test_setup_rejects_unknown_level_and_format():
    with pytest.raises(ValueError):
        setup_logging("verbose", "text")
    with pytest.raises(ValueError):
        setup_logging("info", "xml")


def test_redact_helpers():
    assert redact("x") == "***" and redact("") == "***" and redact(None) is None
    assert all(is_secret_name(n) for n in ("password", "backend_password", "passwd", "SECRET", "token"))
    assert not any(is_secret_name(n) for n in ("user", "bypass", "host", "max_size"))
    assert mask_fields({"token": "t", "inner": {"secret": 1}, "n": 2}) == {
        "token": "***", "inner": {"secret": "***"}, "n": 2}

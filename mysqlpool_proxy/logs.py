# Logging for the whole proxy.
#
# What this module owns: how log records look (text or JSON lines), structured
# fields on records, and keeping secrets out of the logs.
#
# How it works: setup_logging() puts one handler on the root logger, so records
# of every library (asyncio, aiomysql) come out in the same format, and sets the
# chosen level on the "mysqlpool" logger; other libraries log at WARNING and
# above only. Modules log to logging.getLogger("mysqlpool.<module>") and attach
# structured fields with log_event(), which stores them in record.fields. The
# handler's RedactFilter replaces the value of any field whose name looks like a
# secret (password, secret, token, ...) with "***" before a formatter sees it.
"""Log setup, structured fields (log_event) and secret masking (redact)."""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

LOGGER_NAME = "mysqlpool"
LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
REDACTED = "***"

# Field names whose values are never logged.
_SECRET_NAME = re.compile(r"passw(or)?d|secret|token|credential|api_?key|private_?key", re.I)
_JSON_RESERVED = ("ts", "level", "logger", "msg")


def redact(value: Any) -> Any:
    """Mask a secret for display: None stays None (nothing is set), anything else is "***"."""
    return None if value is None else REDACTED


def is_secret_name(name: str) -> bool:
    """True if a field called `name` must not be logged (password, secret, token, ...)."""
    return bool(_SECRET_NAME.search(name))


def mask_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of `fields` with secret-looking keys masked, also inside nested mappings."""
    return {key: _mask_value(key, value) for key, value in fields.items()}


def _mask_value(key: Any, value: Any) -> Any:
    if isinstance(key, str) and is_secret_name(key):
        return redact(value)
    if isinstance(value, Mapping):
        return mask_fields(value)
    return value


class RedactFilter(logging.Filter):
    """Masks secret-looking structured fields (record.fields) of every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            record.fields = mask_fields(fields)
        return True


def log_event(logger: logging.Logger, level: int | str, msg: str, /, *,
              exc_info: Any = None, **fields: Any) -> None:
    """Log `msg` with structured `fields`: key=value in text logs, JSON keys in json logs.

    `level` is a logging level number or a name ("info", "warning", ...).
    """
    levelno = _level_number(level)
    if logger.isEnabledFor(levelno):
        logger.log(levelno, msg, exc_info=exc_info, extra={"fields": fields}, stacklevel=2)


def _level_number(level: int | str) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    return number


def _timestamp(record: logging.LogRecord) -> str:
    """UTC time with milliseconds, e.g. 2026-11-21T10:00:00.123Z."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


def _text_value(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str, ensure_ascii=False)
    text = str(value)
    if text == "" or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    """`2026-11-21T10:00:00.123Z INFO mysqlpool.pool: message key=value ...`"""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        fields = _fields(record)
        if fields:
            line += " " + " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN/Infinity are not JSON
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: {"ts", "level", "logger", "msg", **fields}.

    A field named like a reserved key is written as "field_<name>"; a traceback
    goes in "exc".
    """

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _fields(record).items():
            obj[f"field_{key}" if key in _JSON_RESERVED else key] = _json_value(value)
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            obj["stack"] = self.formatStack(record.stack_info)
        return json.dumps(obj, default=str, ensure_ascii=False)


def setup_logging(level: str, fmt: str, stream: TextIO | None = None) -> logging.Logger:
    """Send all logs to `stream` (default stderr) in `fmt` ("text" or "json").

    The "mysqlpool" logger logs at `level` (debug, info, warning, error); other
    libraries at WARNING or above. Calling it again replaces the earlier setup.
    Returns the "mysqlpool" logger.
    """
    level, fmt = level.lower(), fmt.lower()
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ProxyHandler)]:
        root.removeHandler(old)
    handler = _ProxyHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactFilter())
    root.addHandler(handler)
    levelno = _level_number(level)
    root.setLevel(max(levelno, logging.WARNING))
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(levelno)
    logger.propagate = True
    return logger


class _ProxyHandler(logging.StreamHandler):
    """The handler setup_logging() installs (so a second call can find and replace it)."""

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
# A traceback stays in its record: after the line in text logs, in the "exc"
# key in JSON logs; Python warnings and an exception nobody caught become
# records too, so a JSON log never has a raw line. With several workers, each
# worker process calls set_worker() once, and each of its lines says so
# (worker=N in text, a "worker" key in JSON); the supervisor's lines do not.
"""Log setup, structured fields (log_event) and secret masking (redact)."""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import threading
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

_worker: int | None = None  # this process's worker index, with [proxy] workers > 1


def set_worker(index: int | None) -> None:
    """This process is worker `index` (None: the only process): every line it logs says so."""
    global _worker
    _worker = index


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


def _field_name(key: str, reserved: tuple[str, ...]) -> str:
    """A field named like a key the formatter writes itself is written as "field_<name>"."""
    if key in reserved or (key == "worker" and _worker is not None):
        return f"field_{key}"
    return key


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
        if _worker is not None:
            line += f" worker={_worker}"
        fields = _fields(record)
        if fields:
            line += " " + " ".join(f"{_field_name(key, ())}={_text_value(value)}" for key, value in fields.items())
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
    """One JSON object per line: {"ts", "level", "logger", "msg", "worker", **fields}.

    "worker" only with several workers. A field named like a reserved key is
    written as "field_<name>"; a traceback goes in "exc".
    """

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if _worker is not None:
            obj["worker"] = _worker
        for key, value in _fields(record).items():
            obj[_field_name(key, _JSON_RESERVED)] = _json_value(value)
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
    logging.captureWarnings(True)  # warnings.warn() output: a record (logger "py.warnings"), not a raw line
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    sys.unraisablehook = _log_unraisable
    return logger


def _log_uncaught(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    """An exception nobody caught: one record with its traceback (inside the JSON object in JSON mode)."""
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    logging.getLogger(LOGGER_NAME).critical("stopped by an uncaught exception", exc_info=(exc_type, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger(LOGGER_NAME).error("thread %s stopped by an uncaught exception", name,
                                         exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def _log_unraisable(args: Any) -> None:
    """What Python would print as "Exception ignored in: ..." (a __del__ that raised, say)."""
    where = args.err_msg or "Exception ignored in"
    exc_info = (args.exc_type, args.exc_value, args.exc_traceback) if args.exc_value is not None else None
    logging.getLogger(LOGGER_NAME).warning("%s: %r", where, args.object, exc_info=exc_info)


class _ProxyHandler(logging.StreamHandler):
    """The handler setup_logging() installs (so a second call can find and replace it)."""

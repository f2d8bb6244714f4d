# Recent notable events of this process, for the status page (ops/status.py).
#
# What this module owns: EVENTS, one bounded ring (collections.deque with
# maxlen MAX_EVENTS) of Event records: readiness changes, pool exhaustion
# starting and ending, backend connect failures, server capacity holds,
# reloads, PAUSE / RESUME, start and shutdown. The oldest fall off.
#
# How it works: record() is called next to the log line that already reports
# the thing, and only where that line is written (so the same rate limits
# apply): never per query or per checkout. It costs one small object and one
# deque append. It lives at the bottom of the layers, beside logs.py, so
# backend/ and proxy/ can record without importing ops/. One ring per process:
# with `workers` > 1 each worker's status page shows its own events.
"""A bounded ring of recent notable events (readiness, exhaustion, connect failures, reloads...)."""

from __future__ import annotations

import collections
import enum
import itertools
import time
from dataclasses import dataclass

__all__ = ["EventKind", "Event", "EventLog", "EVENTS", "record"]

MAX_EVENTS = 100  # kept in the ring
MAX_MESSAGE = 300  # characters of a message kept


class EventKind(enum.StrEnum):
    START = "start"
    READY = "ready"
    NOT_READY = "not_ready"
    POOL_EXHAUSTED = "pool_exhausted"  # clients started waiting for a backend
    POOL_RECOVERED = "pool_recovered"  # no client waits any more
    CONNECT_FAILED = "connect_failed"  # a backend connect failed (as often as it is logged)
    CAPACITY_HOLD = "capacity_hold"  # the server refused a connection: the pool holds its size
    RELOAD = "reload"
    RELOAD_FAILED = "reload_failed"  # the new config was refused; the running one stays
    PAUSE = "pause"
    RESUME = "resume"
    SHUTDOWN = "shutdown"


@dataclass(frozen=True, slots=True)
class Event:
    at: float  # wall-clock time (time.time())
    kind: EventKind
    message: str
    pool: str | None = None


class EventLog:
    """The most recent `maxlen` events, oldest first."""

    def __init__(self, maxlen: int = MAX_EVENTS):
        self._events: collections.deque[Event] = collections.deque(maxlen=maxlen)

    def record(self, kind: EventKind, message: str, pool: str | None = None) -> None:
        self._events.append(Event(time.time(), kind, message[:MAX_MESSAGE], pool))

    def recent(self, limit: int | None = None) -> list[Event]:
        """The newest `limit` events (all kept if None), newest first."""
        return list(itertools.islice(reversed(self._events), limit))

    def clear(self) -> None:
        self._events.clear()

    def __len__(self) -> int:
        return len(self._events)


EVENTS = EventLog()


def record(kind: EventKind, message: str, pool: str | None = None) -> None:
    """Add an event to this process's ring (EVENTS)."""
    EVENTS.record(kind, message, pool)

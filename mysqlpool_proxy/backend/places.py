"""Where a pool's backends are: its collections, and the one method that moves a backend between them.

`Places` owns the collections that hold a pool's open backends:

* `idle`: a LIFO list in state IDLE (the most recently used is reused
  first, so the others can age out);
* `busy`: owned by a client or by the pool itself (RESERVED, BUSY or
  INTERNAL); `pinging` is a subset of it, the idle backends the pool took
  out for a keepalive or the health probe's ping;
* `closing`: closed backends whose sockets are not closed yet (the server
  still counts them, so the caps do too).

A backend changes collection only in `move()` (tests/test_layering.py checks
it), so every size is the length of a collection and none can drift.
`take_idle()` is the choice of the idle backend a client gets. The keys of
the connects in flight (`opening`) are the connector's (opening.py): they
are not backends yet.
"""

from __future__ import annotations

import enum
from typing import Final

from ..core.session import SessionState
from ..core.states import BackendState
from .connection import BackendConnection

__all__ = ["Place", "Places", "RECENT", "usable"]

RECENT: Final = 8  # idle backends (most recently used first) searched for one already in a client's state


class Place(enum.Enum):
    """Which of the pool's collections holds a backend."""
    NONE = "none"  # not yet in the pool, or its socket is closed
    IDLE = "idle"
    BUSY = "busy"
    PINGING = "pinging"  # in busy too: an idle backend the pool itself took out for a ping
    CLOSING = "closing"


# The members checkout and release compare with, as module globals: on Python 3.11 reading
# `Place.IDLE` runs EnumType's __getattr__ hook, ~20 times a global's cost.
_PLACE_IDLE: Final = Place.IDLE
_PLACE_BUSY: Final = Place.BUSY
_PLACE_PINGING: Final = Place.PINGING
_PLACE_CLOSING: Final = Place.CLOSING
_BACKEND_RESERVED: Final = BackendState.RESERVED


def usable(backend: BackendConnection, key: int, no_schema: bool) -> bool:
    """Can a client with `key` (and no schema, if `no_schema`) use this backend?"""
    return backend.key == key and not (no_schema and backend.session.schema is not None)


class Places:
    __slots__ = ("idle", "busy", "pinging", "closing")

    def __init__(self) -> None:
        self.idle: list[BackendConnection] = []
        self.busy: set[BackendConnection] = set()
        self.pinging: set[BackendConnection] = set()  # busy: idle backends taken out for a ping
        self.closing: set[BackendConnection] = set()  # closed, socket still open (the server counts them)

    @property
    def held(self) -> int:
        """Open backends, idle or in use (not the closing ones)."""
        return len(self.idle) + len(self.busy)

    def move(self, backend: BackendConnection, src: Place, dst: Place, index: int = -1) -> None:
        """The one place a backend changes collection. `index`: its position in `idle`, if known."""
        if src is _PLACE_IDLE:
            if index >= 0:
                self.idle.pop(index)  # (pop, not del: compiled, a native list operation)
            else:
                self.idle.remove(backend)
        elif src is _PLACE_BUSY or src is _PLACE_PINGING:
            self.busy.remove(backend)
            self.pinging.discard(backend)
        elif src is _PLACE_CLOSING:
            self.closing.remove(backend)
        if dst is _PLACE_IDLE:
            self.idle.append(backend)
        elif dst is _PLACE_BUSY:
            self.busy.add(backend)
        elif dst is _PLACE_PINGING:
            self.busy.add(backend)
            self.pinging.add(backend)
        elif dst is _PLACE_CLOSING:
            self.closing.add(backend)

    def take_idle(self, key: int, state: SessionState | None = None,
                  no_schema: bool = False) -> BackendConnection | None:
        """LIFO among the idle backends usable with `key`; for a client with no schema (`no_schema`, or
        `state` without one) only backends with none, since a schema cannot be unselected. Among the
        few most recent, one already in `state` wins (no sync). It moves to busy, RESERVED."""
        if state is not None and state.schema is None:
            no_schema = True
        idle = self.idle
        chosen = -1
        for i in range(len(idle) - 1, max(-1, len(idle) - 1 - RECENT), -1):
            b = idle[i]
            if not usable(b, key, no_schema):
                continue
            if state is None or b.session.same_as(state):
                chosen = i
                break
            if chosen < 0:
                chosen = i
        else:
            if chosen < 0:
                chosen = next((i for i in range(len(idle) - 1 - RECENT, -1, -1) if usable(idle[i], key, no_schema)),
                              -1)
        if chosen < 0:
            return None
        backend = idle[chosen]
        self.move(backend, _PLACE_IDLE, _PLACE_BUSY, chosen)
        backend.set_state(_BACKEND_RESERVED)
        return backend

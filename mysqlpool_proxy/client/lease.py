"""A client's hold on a backend: the only code that links a client and a backend, or unlinks them.

`BackendLease` owns the link (`backend`, and the backend's `holder`), the
backend of the client's previous statement (`last_backend`: a diagnostics
reader may go back to it), and the client's place in its pool's queue while
it waits (`waiter`, and the command that waits with its deadline). What
happens to a backend the client no longer needs is decided here only:

* `hold_or_release`, after a response: kept while the client holds state on
  it (a transaction, a pin) or in session pooling; otherwise back to the pool;
* `leave`, when the client goes: a backend mid-command is closed, one with
  the client's state on it (or a tracker report the server holds back) is
  reset first (in the background), a clean one goes back to the pool. A
  backend never goes back dirty.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ..backend.commands import reset
from ..backend.connection import BackendConnection
from ..backend.pool import Pool, Waiter
from ..core.states import BackendState
from ..protocol.framing import Packet
from ..reasons import BackendCloseReason

if TYPE_CHECKING:
    from ..backend.connection import Holder

__all__ = ["BackendLease"]


class BackendLease:
    __slots__ = ("_holder", "backend", "last_backend", "waiter", "waiting", "_queue")

    def __init__(self, holder: Holder) -> None:
        self._holder = holder
        self.backend: BackendConnection | None = None
        self.last_backend: BackendConnection | None = None  # where the client's previous statement ran
        self.waiter: Waiter | None = None  # its place in the pool's queue (no task while it waits)
        self.waiting: tuple[Packet, float] | None = None  # the command that waits, and its deadline
        self._queue: Pool | None = None  # the pool it waits in

    def take(self, backend: BackendConnection) -> BackendConnection:
        """The client holds `backend` now (from its pool, or handed after a wait)."""
        self.backend = backend
        backend.holder = self._holder
        return backend

    def drop(self) -> BackendConnection | None:
        """Unlink the backend and return it (the caller decides what becomes of it)."""
        backend, self.backend = self.backend, None
        if backend is not None and backend.holder is self._holder:
            backend.holder = None
        return backend

    def lost(self, backend: BackendConnection) -> None:
        """`backend` died: forget it if it was the client's."""
        if self.backend is backend:
            self.backend = None
        if self.last_backend is backend:
            self.last_backend = None

    def ran_on(self, backend: BackendConnection) -> None:
        self.last_backend = backend

    def hold_or_release(self, backend: BackendConnection, keep: bool) -> None:
        """After a response: keep the backend (`keep`: state lives on it, or session pooling), else give
        it back to its pool."""
        if backend.closed:
            self.lost(backend)
            return
        if keep:
            return
        if self.backend is backend:
            self.backend = None
            if backend.holder is self._holder:
                backend.holder = None
        if backend.report_held:  # (_give_back, inline: the hot path)
            backend.close(BackendCloseReason.DIRTY)
        else:
            backend.pool.release(backend)

    def release(self) -> None:
        """Give back a clean backend the client holds only softly (diagnostics: others wait)."""
        backend = self.drop()
        if backend is not None:
            _give_back(backend)

    def leave(self, holds_state: bool, reset_timeout: float,
              spawn: Callable[[Coroutine[Any, Any, Any]], Any]) -> None:
        """The client goes: give up its backend without leaving anything of it there."""
        self.cancel_wait()
        backend = self.drop()
        if backend is None or backend.closed:
            return
        if backend.state in (BackendState.BUSY, BackendState.INTERNAL):
            backend.close(BackendCloseReason.DIRTY)
        elif holds_state or backend.report_held:
            spawn(reset_then_release(backend, reset_timeout))
        else:
            backend.pool.release(backend)

    # -- waiting in the pool's queue ----------------------------------------------------

    def wait(self, pool: Pool, key: int, timeout: float, deliver: Callable[[Any, Any], None],
             pkt: Packet, no_schema: bool) -> None:
        """Queue for a backend (QueueFull raised at once when the queue is full)."""
        self.waiting = (pkt, pool.loop.time() + timeout)
        self._queue = pool
        try:
            self.waiter = pool.enqueue(key, timeout, deliver, no_schema)
        except Exception:
            self.waiting = None
            raise

    def handed(self) -> tuple[Packet, float] | None:
        """The pool answered the wait: the command that waited (None if the client left meanwhile)."""
        self.waiter = None
        waiting, self.waiting = self.waiting, None
        return waiting

    def cancel_wait(self) -> None:
        waiter, self.waiter = self.waiter, None
        self.waiting = None
        if waiter is not None and self._queue is not None:
            self._queue.cancel_wait(waiter)


def _give_back(backend: BackendConnection) -> None:
    """To the pool, unless the server still holds a tracker report of its client's there (the client's
    side fetches it before letting go; if it did not, the next client would get the report)."""
    if backend.report_held:
        backend.close(BackendCloseReason.DIRTY)
    else:
        backend.pool.release(backend)


async def reset_then_release(backend: BackendConnection, timeout: float) -> None:
    """Reset a backend a client left with state on it, then pool it (closed if the reset fails)."""
    if await reset(backend, timeout):
        backend.pool.release(backend)

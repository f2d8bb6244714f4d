"""What a response means outside the client's session: for the backend it ran on, and in the pool's counts.

`ClientSession.finish()` (core/client_session.py, pure) decides what a
response did to the client; `Accounting.apply()` carries its `Outcome` to
the rest, once per response: the backend's `SessionState`, its statement
cache and its identity (the insert id and who ran the last statement on
it), and the pool's `PoolStats` (queries by command, their durations,
transactions and their durations, pins by reason). It owns when the
client's open transaction started (`trx_started_at`, for the transaction
durations, SHOW CLIENTS and WAIT_CLOSE).
"""

from __future__ import annotations

import logging
from typing import Final

from ..backend.connection import BackendConnection
from ..core.client_session import Command, Outcome
from ..core.pins import PinReason
from ..core.session import apply_changes
from . import statements
from .host import Client

__all__ = ["Accounting"]

log = logging.getLogger("mysqlpool.client")

# Compared with once per pin, at every response that pins (see the note on enum members in connection.py).
_PIN_TRANSACTION: Final = PinReason.TRANSACTION


class Accounting:
    __slots__ = ("_client", "trx_started_at")

    def __init__(self, client: Client) -> None:
        self._client = client
        self.trx_started_at: float | None = None  # when the statement that opened its transaction went out

    def apply(self, backend: BackendConnection, command: Command, outcome: Outcome, now: float) -> None:
        """The backend's side of a response (its state, statements, identity), and the pool's counts
        (`now`: when it ended)."""
        client = self._client
        if outcome.changes is not None or outcome.null_sysvars is not None:
            apply_changes(backend.session, outcome.changes, outcome.null_sysvars)
        if outcome.prepared is not None:
            statements.cache_prepared(backend, outcome.prepared, backend.tracker.prepare_ok)
        elif command.stmt is not None and outcome.statement_busy is not None:
            statements.mark_busy(backend, command.stmt, outcome.statement_busy)
        if outcome.unexplained_change:
            log.info("client #%d pinned to its backend: the server reported a state change after %s that the "
                     "proxy cannot carry over (%r)", client.id, command.spec.name, backend.tracker.changes)
        if not outcome.ends_backend:
            if backend.tracker.last_insert_id:
                backend.last_insert_id = backend.tracker.last_insert_id
            backend.last_owner = (client.id, client.session.queries)
        pool = client.pool
        assert pool is not None
        stats = pool.stats
        stats.count_query(command.spec.name)
        stats.query_time.observe(now - command.started)
        if outcome.transaction_ended:
            stats.transactions += 1
            if self.trx_started_at is not None:
                stats.transaction_time.observe(now - self.trx_started_at)
                self.trx_started_at = None
        for reason in outcome.new_pins:
            stats.pins[reason.value] += 1
            if reason is _PIN_TRANSACTION:
                self.trx_started_at = command.started

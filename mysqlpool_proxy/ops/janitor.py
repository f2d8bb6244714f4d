"""Periodic maintenance: one task for the whole proxy, never one per client.

Each tick (at most a second apart, and at least four times per idle_timeout):

* pools: idle backends past idle_timeout or max_lifetime are closed, and
  min_idle is refilled, with replacements opened before the old ones expire;
* backends held by idle clients (in a transaction, pinned, or in session
  mode) are pinged before the server's wait_timeout would close them under
  the client;
* a client that has read nothing of a result for the server's
  net_write_timeout (its own, if it set one) gets its backend closed: the
  server aborts such a connection, but a backend paused for that client
  (flow control) would never see the close, and would hold its pool slot for
  as long as the client stays connected;
* `[pool] idle_transaction_timeout`: a client idle inside a transaction has
  it rolled back; its next statement gets an error saying so, and the
  backend goes back to the pool;
* `[proxy] client_idle_timeout`: idle clients are disconnected (off by
  default: clients may idle for days, which is the point of the proxy);
* once a minute, one log line per pool sums up the backends closed (by
  reason) since the last one: recycling is logged in aggregate;
* clients waiting long for a backend start and end an episode in the log
  (backend/waits.py: the pool's WaitWatch, checked at each tick);
* every `[log] stats_period`, one stats line per pool in use (stats_line.py).

Only backends in use are visited for the per-backend checks, so the cost
of a tick grows with backends, not with idle clients (unless
client_idle_timeout is set).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from ..backend.waits import slow_wait_threshold
from ..client import followups
from ..core.states import BackendState
from ..logs import log_event
from ..reasons import BackendCloseReason, ClientCloseReason
from .stats_line import StatsLine

if TYPE_CHECKING:
    from ..proxy.proxy import Proxy

__all__ = ["run_janitor", "tick"]

log = logging.getLogger("mysqlpool.janitor")

MAX_INTERVAL = 1.0
STALL_MARGIN = 1.0  # seconds past net_write_timeout before a stalled client's backend is closed
RECYCLING_SUMMARY_EVERY = 60.0  # seconds between the log lines summing up closed backends


def interval(idle_timeout: float) -> float:
    return max(0.05, min(MAX_INTERVAL, idle_timeout / 4))


async def run_janitor(proxy: Proxy) -> None:
    parent = os.getppid()
    next_summary = proxy.loop.time() + RECYCLING_SUMMARY_EVERY
    stats = StatsLine(proxy.loop.time())
    while proxy.running:
        if proxy.loop.time() >= next_summary:
            next_summary += RECYCLING_SUMMARY_EVERY
            for pool in list(proxy.pools.values()):
                pool.log_recycling()
        if proxy.worker is not None and os.getppid() != parent:
            log.error("the supervisor is gone: worker %d stopping", proxy.worker.index)
            proxy.request_shutdown(wait=False)
        try:
            tick(proxy, proxy.loop.time())
            stats.tick(proxy, proxy.loop.time())
        except Exception:  # a bug here must not stop maintenance for good
            log.exception("janitor tick failed")
        await asyncio.sleep(interval(proxy.idle_timeout()))


def tick(proxy: Proxy, now: float) -> None:
    idle_timeout = proxy.idle_timeout()
    slow_wait = slow_wait_threshold(proxy.config.pool.checkout_timeout)
    for pool in list(proxy.pools.values()):
        pool.waits.check(pool, now, slow_wait)
        pool.maintain(now, idle_timeout)
        _check_held_backends(proxy, pool, now, idle_timeout)
    client_idle = proxy.config.proxy.client_idle_timeout
    if client_idle > 0:
        _close_idle_clients(proxy, now, client_idle)


def _check_held_backends(proxy: Proxy, pool, now: float, idle_timeout: float) -> None:
    from ..core.states import ClientState
    trx_timeout = proxy.config.pool.idle_transaction_timeout
    for backend in list(pool.busy):
        client = backend.holder
        if client is None:
            continue
        if backend.state is BackendState.BUSY and client.write_stalled_at is not None:
            _close_if_stalled(proxy, client, backend, now)
            continue
        if backend.state is not BackendState.RESERVED or client.state is not ClientState.READY:
            continue
        if trx_timeout > 0 and client.in_transaction and now - client.last_active >= trx_timeout:
            followups.roll_back_idle_transaction(client, trx_timeout)
        elif now - backend.last_used >= idle_timeout:
            followups.keepalive(client)


def _close_if_stalled(proxy: Proxy, client, backend, now: float) -> None:
    """The server gives a client net_write_timeout to read a result, then aborts the connection. The
    backend, paused for this client, would never see that: close it, as the server has. The client
    gets what was relayed, then the close (2013 when it reads again), as on a direct connection."""
    own = client.session.state.variables.get(b"net_write_timeout")
    assert proxy.server_info is not None  # (a client is relayed results once the server is known)
    limit = float(own) if own else proxy.server_info.net_write_timeout
    stalled = now - client.write_stalled_at
    if stalled >= limit + STALL_MARGIN:
        log_event(log, "info", f"client #{client.id} read nothing of its result for {stalled:.0f}s (net_write_timeout "
                  f"{limit:g}s): closing its backend thread {backend.thread_id}", client_id=client.id,
                  pool=backend.pool.name, thread_id=backend.thread_id, reason=BackendCloseReason.CLIENT_STALLED.value)
        backend.close(BackendCloseReason.CLIENT_STALLED)


def _close_idle_clients(proxy: Proxy, now: float, timeout: float) -> None:
    from ..core.states import ClientState
    for client in list(proxy.clients.values()):
        if client.state is ClientState.READY and now - client.last_active >= timeout:
            log_event(log, "info", f"client #{client.id} idle for {now - client.last_active:.0f}s: closing "
                      "(client_idle_timeout)", client_id=client.id, reason=ClientCloseReason.IDLE_TIMEOUT.value)
            client.close(ClientCloseReason.IDLE_TIMEOUT)

"""`[proxy] workers = N`: N processes share the listening port (SO_REUSEPORT).

The supervisor (the process the operator started) forks N workers before
any event loop exists, forwards SIGTERM/SIGINT/SIGHUP to them, restarts a
worker that dies on its own (with a capped backoff), and exits when all have
stopped after a shutdown signal.

Each worker runs a whole proxy with its *share* of every cap, so the totals
never exceed the configuration: worker i of N gets `share(total, i, N)` of
each pool's max_size and min_idle, of `[backend] max_connections` and of
`[proxy] max_client_connections`, and, once the server reports its limits,
of the account's connection limit. The kernel spreads new clients over the
workers. Client connection ids are interleaved (worker i hands out ids
i+1, i+1+N, ...), so they are unique across workers and name their worker.
Metrics and the admin console of worker i listen on their configured port
+ i, and every metric carries a `worker` label; every log line of worker i
says `worker=i` (a "worker" key in JSON logs). Each of them still shows the
whole proxy: a worker asks its peers (ops/peers.py), logging in to their
consoles with a secret the supervisor draws before forking (`WorkerSlot.secret`:
inherited by the workers, never in the config or a log line). A worker that
exits with 0 on its own (SHUTDOWN on the console) is not restarted.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field, replace

from .config import Config, ConfigError, ListenAddress, parse_listen
from .logs import set_worker

__all__ = ["WorkerSlot", "PEER_USER", "share", "validate", "worker_config", "supervise"]

log = logging.getLogger("mysqlpool.workers")

RESTART_BACKOFF_CAP = 30.0
PEER_USER = "mysqlpool-peer"  # the login a worker uses on another's admin console (ops/peers.py)


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    index: int
    count: int
    secret: str = field(default="", repr=False, compare=False)  # the workers' password to each other's console

    @property
    def label(self) -> str:
        return str(self.index)


def share(total: int, index: int, count: int) -> int:
    """Worker `index`'s part of `total` (parts differ by at most one and sum to `total`)."""
    return total // count + (1 if index < total % count else 0)


def validate(config: Config) -> None:
    """Every worker needs at least one connection of every pool."""
    n = config.proxy.workers
    if n <= 1:
        return
    problems = []
    for user in config.users:
        size = config.pool_max_size(user)
        if size < n:
            problems.append(f"pool of user {user.name!r}: max_size {size} is less than proxy.workers {n} "
                            f"(each worker needs a share of at least one connection)")
    if config.admin.user == PEER_USER:
        problems.append(f"admin.user {PEER_USER!r} is the name workers use on each other's console; choose another")
    if config.backend.max_connections < n:
        problems.append(f"backend.max_connections {config.backend.max_connections} is less than proxy.workers {n}")
    if problems:
        raise ConfigError("; ".join(problems), problems)


def _shifted(listen: str, index: int) -> str:
    if not listen:
        return listen
    addr = parse_listen(listen)
    if addr.unix_path or addr.port == 0:
        return listen
    shifted = ListenAddress(addr.host, addr.port + index, None)
    return str(shifted)


def worker_config(config: Config, slot: WorkerSlot) -> Config:
    """The config one worker runs with: its metrics and admin ports shifted by its index."""
    return replace(
        config,
        metrics=replace(config.metrics, listen=_shifted(config.metrics.listen, slot.index)),
        admin=replace(config.admin, listen=_shifted(config.admin.listen, slot.index)),
    )


def _die_with_parent() -> None:
    """A worker must not outlive its supervisor (Linux: PR_SET_PDEATHSIG; the proxy's
    janitor also checks the parent pid, for systems without it)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def supervise(config: Config, run_worker) -> int:
    """Fork `proxy.workers` workers running run_worker(config, slot); returns the exit code."""
    count = config.proxy.workers
    children: dict[int, WorkerSlot] = {}
    stopping = False
    restarts: dict[int, float] = {}
    secret = secrets.token_urlsafe(24)  # drawn here, so every worker inherits the same one

    def spawn(slot: WorkerSlot) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            _die_with_parent()
            set_worker(slot.index)
            code = 1
            try:
                code = run_worker(worker_config(config, slot), slot)
            finally:
                os._exit(code)
        children[pid] = slot
        log.info("worker %d started (pid %d)", slot.index, pid)

    def forward(signum, _frame) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    for index in range(count):
        spawn(WorkerSlot(index, count, secret))
    code = 0
    while children:
        try:
            pid, status = os.wait()
        except InterruptedError:
            continue
        except ChildProcessError:
            break
        slot = children.pop(pid, None)
        if slot is None:
            continue
        exit_code = os.waitstatus_to_exitcode(status)
        if stopping:
            code = code or (exit_code if exit_code > 0 else 0)
            continue
        if exit_code == 0:  # it stopped as asked (SHUTDOWN on the console): the others are asked too
            log.info("worker %d (pid %d) stopped; not restarting it", slot.index, pid)
            continue
        delay = min(RESTART_BACKOFF_CAP, restarts.get(slot.index, 0.5) * 2)
        restarts[slot.index] = delay
        log.error("worker %d (pid %d) exited with %d; restarting it in %.1fs", slot.index, pid, exit_code, delay)
        time.sleep(delay)
        if not stopping:
            spawn(slot)
    sys.stdout.flush()
    return code

"""Process entry point: event loop, signals, and the proxy's lifetime.

`run(config)` installs uvloop when available, starts the proxy and waits
for a signal: SIGTERM drains (readiness off, stop accepting, let clients
finish their current transaction up to [proxy] shutdown_timeout, then
close), SIGINT does the same but faster, a second signal stops at once.
SIGHUP re-reads the config: users, pool sizes and timeouts change without
dropping a client; a bad new config is refused and the old one stays.

What stops the start (startup.py: a listener that cannot bind, a backend
host that does not exist) is logged as one line per problem, naming the key,
and run() returns 2; with several workers the binds are tried before any
worker is forked.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from .client.constants import MAX_LOGGING_IN
from .config import Config, ConfigError
from .logs import log_event
from .ops import operations
from .ops.services import start_services
from .proxy.proxy import Proxy, shared_rsa_keys
from .startup import StartupError, StartupProblem, check
from .workers import WorkerSlot, supervise, validate as validate_workers

__all__ = ["run", "serve"]

log = logging.getLogger("mysqlpool.app")

FAST_SHUTDOWN = 1.0
EXIT_CONFIG_ERROR = 2  # as for a bad config: what to change is in the log


def _install_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:
        return False
    uvloop.install()
    return True


async def serve(config: Config, worker: WorkerSlot | None = None) -> int:
    loop = asyncio.get_running_loop()
    proxy = Proxy(config, loop, worker=worker)
    stop = asyncio.Event()
    timeout = {"value": config.proxy.shutdown_timeout}

    def on_signal(signum: int) -> None:
        if stop.is_set():
            timeout["value"] = 0.0
            return
        if signum == signal.SIGINT:
            timeout["value"] = min(FAST_SHUTDOWN, config.proxy.shutdown_timeout)
        log.info("received %s: shutting down (waiting up to %.0fs for clients)",
                 signal.Signals(signum).name, timeout["value"])
        stop.set()

    def on_hangup() -> None:
        try:
            operations.reload_from_source(proxy)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    services = await start_services(proxy)  # (their binds first: a failed start leaves nothing running)
    try:
        await proxy.start()
    except StartupError:
        await proxy.stop(0)  # close what did start
        await services.stop()
        raise
    services.start_janitor(proxy)
    # What start-up made (modules, config, the proxy's tables) lives as long as the process: frozen, the
    # cyclic collector no longer walks it at each full collection, which the connections' churn triggers.
    gc.freeze()
    signalled = asyncio.ensure_future(stop.wait())
    requested = asyncio.ensure_future(proxy.shutdown_requested.wait())
    await asyncio.wait((signalled, requested), return_when=asyncio.FIRST_COMPLETED)
    for waiter in (signalled, requested):
        waiter.cancel()
    if proxy.shutdown_requested.is_set() and not stop.is_set():
        assert proxy.shutdown_timeout is not None  # request_shutdown() sets it before the event
        timeout["value"] = proxy.shutdown_timeout
        log.info("shutdown requested from the admin console (waiting up to %.0fs for clients)", timeout["value"])
    await proxy.stop(timeout["value"])
    await services.stop()
    log.info("stopped")
    return 0


def _raise_open_files_limit(config: Config) -> None:
    """Each client and backend is a file descriptor: raise the soft limit as far as allowed."""
    try:
        import resource
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Connections still logging in are not clients yet (MAX_LOGGING_IN more at most); 64 for the
    # listeners, the admin console, metrics scrapes and side connections (KILL QUERY, probes).
    wanted = config.proxy.max_client_connections + MAX_LOGGING_IN + config.backend.max_connections + 64
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning("the open-files limit (%d) is below what max_client_connections + backend.max_connections "
                    "and the connections logging in need (%d): raise it (ulimit -n) or clients beyond it will be "
                    "refused by the kernel",
                    target, wanted)


def run(config: Config) -> int:
    _raise_open_files_limit(config)
    several = config.proxy.workers > 1
    if several:
        try:
            validate_workers(config)
        except ConfigError as exc:
            log.error("%s", exc)
            return EXIT_CONFIG_ERROR
    problems, warnings = check(config, binds=several)  # one process binds for real, in Proxy.start()
    for problem in warnings:
        log_event(log, "warning", problem.line, **problem.fields())
    if problems:
        return report_startup_problems(problems)
    if several:
        log.info("starting %d workers sharing %s", config.proxy.workers, config.proxy.listen)
        shared_rsa_keys(config)  # one RSA key pair for all of them, made before they fork
        return supervise(config, run_worker)
    return run_worker(config, None)


def report_startup_problems(problems: tuple[StartupProblem, ...] | list[StartupProblem]) -> int:
    for problem in problems:
        log_event(log, "error", problem.line, **problem.fields())
    return EXIT_CONFIG_ERROR


def run_worker(config: Config, worker: WorkerSlot | None) -> int:
    if _install_uvloop():
        log.debug("using uvloop")
    try:
        return asyncio.run(serve(config, worker))
    except KeyboardInterrupt:
        return 130
    except StartupError as exc:
        return report_startup_problems(exc.problems)
    except Exception:  # a bug: its traceback goes in the log line (inside the JSON object in JSON mode)
        log.exception("stopped by an unexpected error")
        return 1

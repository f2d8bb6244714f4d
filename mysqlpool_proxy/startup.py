# Start-up checks that need this machine, not just the config.
#
# What this module owns: what can go wrong when the proxy takes its place on
# the machine, said in one line each. A listener that cannot bind (a port in
# use, an address that is not this host's, a port below 1024, a Unix socket
# path in a missing folder or in use) and a backend host name that does not
# resolve become a StartupProblem: the key, its value, where the value came
# from (the config file, an environment variable, a command-line option or
# the default), what is wrong and what to do. StartupError carries them; the
# CLI prints them (JSON log lines in JSON mode) and exits 2. (TLS files are
# loaded by config.py, so --check-config, a start and a reload all refuse one
# that cannot be used.)
#
# How: check_binds() binds each enabled listener's address as asyncio's
# create_server would (SO_REUSEADDR; SO_REUSEPORT for the shared proxy port
# with several workers; IPV6_V6ONLY) and closes it at once: --check-config runs
# it, and so does a start with several workers, before any worker is forked. A
# single process binds for real, and listener_errors() turns the OSError into
# the same line. check_backend_host() resolves backend.host: a name that does
# not exist is a problem; a resolver that cannot answer now is only a warning
# (the proxy retries its connects until the name resolves).
"""Start-up checks: the listeners can bind, the backend host resolves; one line per problem."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .config import Config, ListenAddress, parse_listen
from .workers import WorkerSlot, worker_config

__all__ = ["StartupError", "StartupProblem", "check", "check_binds", "check_backend_host", "listener_errors"]

UNIX_PROBE_TIMEOUT = 1.0  # seconds to see whether a process answers on an existing Unix socket


@dataclass(frozen=True, slots=True)
class StartupProblem:
    """One reason the proxy cannot start (or, as a warning, one thing to know)."""

    key: str        # "proxy.listen"
    value: Any
    origin: str     # "file", "env", "cli" or "default"
    set_by: str     # the file, the environment variable or the option ("" for a default)
    config: str     # the config file (or "<environment>")
    line: str       # the whole message: key, value, where it came from, what is wrong, what to do

    @classmethod
    def of(cls, config: Config, key: str, value: Any, problem: str, *,
           prefix: str = "cannot start") -> StartupProblem:
        origin = config.origin(key)
        return cls(key, value, origin.kind, origin.name, config.source,
                   f"{prefix}: {config.describe(key, value)}: {problem}")

    def fields(self) -> dict[str, Any]:
        """Structured fields for a JSON log line."""
        return {"key": self.key, "value": self.value, "origin": self.origin, "set_by": self.set_by or None,
                "config": self.config}


class StartupError(Exception):
    """The proxy cannot start here; str() is one line per problem."""

    def __init__(self, problems: list[StartupProblem]):
        super().__init__("\n".join(p.line for p in problems))
        self.problems = tuple(problems)


def check(config: Config, *, binds: bool) -> tuple[list[StartupProblem], list[StartupProblem]]:
    """(problems, warnings) of this machine for `config`: the backend host, and the binds if asked."""
    problems, warnings = check_backend_host(config)
    if binds:
        problems += check_binds(config)
    return problems, warnings


# -- listeners ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Listener:
    key: str
    address: ListenAddress
    reuse_port: bool
    worker: int | None  # with several workers, the worker whose admin/metrics port this is


def listeners(config: Config) -> list[Listener]:
    """Every address the proxy will listen on (with several workers, each worker's admin and metrics)."""
    count = config.proxy.workers
    found = [Listener("proxy.listen", config.proxy.listen_address, count > 1, None)]
    for index in range(count):
        cfg = worker_config(config, WorkerSlot(index, count)) if count > 1 else config
        worker = index if count > 1 else None
        if cfg.admin.enabled:
            found.append(Listener("admin.listen", parse_listen(cfg.admin.listen), False, worker))
        if cfg.metrics.enabled:
            found.append(Listener("metrics.listen", parse_listen(cfg.metrics.listen), False, worker))
    return found


def check_binds(config: Config) -> list[StartupProblem]:
    """Bind every listener's address and close it at once; a problem for each that fails."""
    problems = []
    for listener in listeners(config):
        try:
            _try_bind(listener.address, listener.reuse_port)
        except OSError as error:
            problems.append(bind_problem(config, listener.key, listener.address, error, listener.worker))
    return problems


@contextlib.contextmanager
def listener_errors(config: Config, key: str, address: ListenAddress | None,
                    worker: int | None = None) -> Iterator[None]:
    """Around starting the listener of `key`: an OSError becomes a StartupError naming it.

    A Unix socket some process still answers on is refused first (asyncio would
    replace it without a word).
    """
    address = address or parse_listen(getattr(config, key.split(".")[0]).listen)
    try:
        if address.unix_path is not None:
            _refuse_live_unix_socket(address.unix_path)
        yield
    except OSError as error:
        raise StartupError([bind_problem(config, key, address, error, worker)]) from None


def _try_bind(address: ListenAddress, reuse_port: bool) -> None:
    if address.unix_path is not None:
        _try_bind_unix(address.unix_path)
        return
    infos = socket.getaddrinfo(address.host or None, address.port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    with contextlib.ExitStack() as stack:
        for family, kind, proto, _, sockaddr in dict.fromkeys(infos):
            sock = stack.enter_context(socket.socket(family, kind, proto))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)


def _try_bind_unix(path: str) -> None:
    if os.path.lexists(path):
        _refuse_live_unix_socket(path)
        return  # a stale socket: the proxy replaces it
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(path)
    os.unlink(path)


def _refuse_live_unix_socket(path: str) -> None:
    """OSError(EADDRINUSE) if `path` is something other than a socket, or a socket a process answers on."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, "exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(UNIX_PROBE_TIMEOUT)
        try:
            probe.connect(path)
        except OSError:
            return  # nobody listens: a stale socket
    raise OSError(errno.EADDRINUSE, "a process listens on it")


def bind_problem(config: Config, key: str, address: ListenAddress, error: OSError,
                 worker: int | None = None) -> StartupProblem:
    value = getattr(config, key.split(".")[0]).listen
    return StartupProblem.of(config, key, value, _why_not(key, address, error, worker))


def _why_not(key: str, address: ListenAddress, error: OSError, worker: int | None) -> str:
    """What is wrong with listening on `address`, and what to do."""
    reason = (error.strerror or str(error)).lower()
    if address.unix_path is not None:
        return _why_not_unix(key, address.unix_path, error, reason)
    host, port = address.host, address.port
    shifted = f"worker {worker} listens on the configured port + {worker}, {port}; " if worker else ""
    if isinstance(error, socket.gaierror):
        return (f"the host name {host!r} does not resolve ({reason}); use an address of this machine "
                f"(`ip -brief address` lists them), 127.0.0.1 for this machine only, or 0.0.0.0 for all")
    if error.errno == errno.EADDRINUSE:
        return (f"{shifted}port {port} is already in use (`ss -ltnp 'sport = :{port}'` shows by which "
                f"process); stop that process, or set {key} to a free port")
    if error.errno == errno.EADDRNOTAVAIL:
        return (f"{host} is not an address of this machine (`ip -brief address` lists them); use one of "
                f"those, 127.0.0.1 for this machine only, or 0.0.0.0 for all")
    if error.errno in (errno.EACCES, errno.EPERM) and port < 1024:
        return (f"{shifted}port {port} is below 1024, which needs root or the CAP_NET_BIND_SERVICE "
                f"capability; use a port from 1024 up, or grant the capability (systemd: "
                f"AmbientCapabilities=CAP_NET_BIND_SERVICE)")
    return f"{shifted}cannot listen there ({reason}); set {key} to an address this machine can listen on"


def _why_not_unix(key: str, path: str, error: OSError, reason: str) -> str:
    folder = os.path.dirname(path) or "."
    if error.errno == errno.EADDRINUSE:
        return f"a process already listens on {path}; stop it, or set {key} to another path"
    if error.errno == errno.EEXIST:
        return f"{path} exists and is not a socket; remove it, or set {key} to another path"
    if error.errno == errno.ENOENT:
        return f"the folder {folder} does not exist; create it (systemd: RuntimeDirectory=), or use another path"
    if error.errno in (errno.EACCES, errno.EPERM):
        return (f"no permission to create {path} ({reason}); let the proxy's user (uid {os.geteuid()}) write "
                f"to {folder}, or use another path")
    return f"cannot listen there ({reason}); set {key} to a path this machine can listen on"


# -- the backend host ---------------------------------------------------------------------


def check_backend_host(config: Config) -> tuple[list[StartupProblem], list[StartupProblem]]:
    """([problem], []) if backend.host does not exist, ([], [warning]) if it cannot be resolved now."""
    backend = config.backend
    if backend.unix_socket:
        return [], []
    try:
        socket.getaddrinfo(backend.host, backend.port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        reason = (error.strerror or str(error)).lower()
        if error.errno == socket.EAI_AGAIN:
            return [], [StartupProblem.of(config, "backend.host", backend.host, (
                f"the name cannot be resolved now ({reason}); starting anyway: connections are retried "
                f"until it resolves"), prefix="warning")]
        return [StartupProblem.of(config, "backend.host", backend.host, (
            f"the name does not resolve ({reason}); use the server's IP address, or a name this machine "
            f"resolves (`getent hosts {backend.host}` tells)"))], []
    except UnicodeError as error:  # a name the IDNA codec refuses (e.g. a label over 63 characters)
        return [StartupProblem.of(config, "backend.host", backend.host, (
            f"not a valid host name ({error}); use the server's IP address or host name"))], []
    return [], []


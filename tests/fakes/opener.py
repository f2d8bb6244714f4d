# FakeOpener: the backend opener Pool and Proxy take (in place of
# backend/adapter.py's, which logs in over aiomysql). Each successful call wires a
# new FakeTransport to a new FakeMySQLServer and returns what the real opener
# reports about a MariaDB 10.11 (mariadb.py): thread id, version,
# capabilities (and the MariaDB ones negotiated, as the adapter negotiates
# them: bulk operations always, extended metadata when the params ask),
# character set variables, collations, the globals the setup query reads. A
# test makes attempts slow (delay, past connect_timeout they time out), fail
# (fail_next, go_down/come_up: error 2003 or one it names), and
# gives every server the same options and scripts (server_capabilities: a greeting of another
# server kind, e.g. a MySQL 8 offering zstd); it looks at the attempts
# and the servers afterwards.
from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pymysql

from mysqlpool_proxy.backend.adapter import Opened
from tests.fakes.mariadb import COLLATIONS, SERVER_CAPABILITIES, SERVER_GLOBALS
from tests.fakes.packets import AUTOCOMMIT
from tests.fakes.server import FakeMySQLServer
from tests.fakes.transport import FakeTransport


@dataclass
class Attempt:
    at: float
    params: Any
    want_collations: bool
    ok: bool = False


class FakeOpener:
    """An opener for Pool/Proxy: each successful call is a new FakeMySQLServer.

    `fail_next(n)` makes the next n attempts raise 2003; `go_down()` /
    `come_up()` fail every attempt in between; `delay` is the virtual time an
    attempt takes (past the params' connect_timeout it times out, as the real
    opener does). Server options (latency, chunk_size, auto, schemas) apply to
    every new server, and so do scripts given to `on()` / `fail()`.
    """

    def __init__(self, *, delay: float = 0.0, fail_times: int = 0, wait_timeout: float = 28800.0,
                 max_connections: int = 151, server_capabilities: int = SERVER_CAPABILITIES, **server_options):
        self.delay = delay
        self.server_capabilities = server_capabilities  # what the servers' greetings offer (MariaDB 10.11's)
        self.wait_timeout = wait_timeout
        self.max_connections = max_connections
        self.server_options = server_options
        self.servers: list[FakeMySQLServer] = []
        self.attempts: list[Attempt] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.peak_open = 0  # most servers open (or being opened) at once
        self._fail = fail_times
        self._down = False
        self._error: tuple[int, str] | None = None
        self._scripts: list[tuple[tuple, dict]] = []
        self._thread_ids = itertools.count(100)
        self.configure: Callable[[FakeMySQLServer], None] | None = None

    def fail_next(self, n: int, error: tuple[int, str] | None = None) -> None:
        self._fail = n
        self._error = error

    def go_down(self, error: tuple[int, str] | None = None) -> None:
        self._down = True
        self._error = error

    def come_up(self) -> None:
        self._down = False
        self._fail = 0

    def on(self, *args, **kwargs) -> None:
        self._scripts.append((("on", *args), kwargs))
        for s in self.servers:
            s.on(*args, **kwargs)

    def fail(self, *args, **kwargs) -> None:
        self._scripts.append((("fail", *args), kwargs))
        for s in self.servers:
            s.fail(*args, **kwargs)

    @property
    def alive(self) -> list[FakeMySQLServer]:
        return [s for s in self.servers if not s.closed]

    @property
    def failures(self) -> int:
        return sum(1 for a in self.attempts if not a.ok)

    async def __call__(self, params, *, want_collations: bool = False) -> Opened:
        loop = asyncio.get_running_loop()
        attempt = Attempt(loop.time(), params, want_collations)
        self.attempts.append(attempt)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.peak_open = max(self.peak_open, self.in_flight + len(self.alive))
        try:
            timeout = getattr(params, "connect_timeout", None) or 5.0
            if self.delay:
                await asyncio.sleep(min(self.delay, timeout))
                if self.delay > timeout:
                    raise TimeoutError()
            if self._down or self._fail > 0:
                self._fail = max(0, self._fail - 1)
                errno, message = self._error or (
                    2003, f"Can't connect to MySQL server on '{getattr(params, 'host', '?')}' (111)")
                raise pymysql.err.OperationalError(errno, message)
        finally:
            self.in_flight -= 1
        attempt.ok = True
        transport = FakeTransport(loop, name=f"backend#{len(self.servers)}", peername=("127.0.0.1", 3306))
        server = FakeMySQLServer(loop, transport, thread_id=next(self._thread_ids), params=params,
                                 **self.server_options)
        for (kind, *args), kwargs in self._scripts:
            getattr(server, kind)(*args, **kwargs)
        if self.configure is not None:
            self.configure(server)
        self.servers.append(server)
        v = server.variables
        return Opened(
            transport=transport, handoff=None, thread_id=server.thread_id, server_version=server.version,
            server_capabilities=self.server_capabilities, status=AUTOCOMMIT, wait_timeout=self.wait_timeout,
            max_user_connections=0, max_connections=self.max_connections,
            charset_vars={k: v[k] for k in (b"character_set_client", b"character_set_connection",
                                            b"character_set_results", b"collation_connection")},
            collations=dict(COLLATIONS) if want_collations else None,
            server_globals=dict(SERVER_GLOBALS),
            extended_capabilities=server.extended_capabilities,
        )

    def server_for(self, backend) -> FakeMySQLServer:
        """The fake server behind a BackendConnection."""
        return next(s for s in self.servers if s.transport is backend.transport)


def fake_opener(**options) -> FakeOpener:
    return FakeOpener(**options)

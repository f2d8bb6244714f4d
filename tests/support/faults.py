# A TCP relay that injects network faults, for tests (in the spirit of
# asyncpg's TCPFuzzingProxy and PgBouncer's drop_traffic/add_latency).
#
# FaultRelay listens on a loopback port and relays each connection it accepts
# to a target (host, port): put it between the proxy and MariaDB by pointing
# the proxy's [backend] host/port at relay.host/relay.port. It runs its own
# asyncio loop on a daemon thread, so synchronous tests that drive blocking
# drivers (PyMySQL, ...) can use it; every fault can be switched on and off
# at any moment, also while connections are open:
#
#   set_latency(s, d)  each chunk going direction d is delivered s seconds
#                      after it arrived (order kept, throughput not limited).
#   blackhole(d)       the connections open now stop carrying packets in
#                      direction d: no data, no ACK, no FIN, no RST (a firewall
#                      that forgot the flow). restore() lifts it; TCP then
#                      retransmits what was held back, as after a real outage.
#   reset_all()        RST on both sides of every open connection.
#   refuse_new(how)    new connections are accepted then reset at once
#                      (Refusal.RESET), or the port stops listening and the
#                      kernel refuses them (Refusal.CLOSED); allow_new() undoes it.
#   slow_close(s)      when the server closes its side, the close reaches the
#                      client s seconds later (a backend "still closing").
#   open_connections, accepted, refused: counters.
#
# Direction is seen from the relay's client (the proxy): TO_SERVER carries its
# commands, TO_CLIENT the server's replies.
#
# Why the blackhole is done by the kernel: a user-space relay that merely
# discards bytes still lets its own kernel ACK the client's data and answer
# its TCP keepalive probes, so the client's TCP stack would believe the peer
# alive forever, unlike on a real network. So blackhole() adds nftables rules
# (one table per relay, removed by restore()/stop() and at exit) that drop the
# packets of those connections on the client <-> relay leg, by port. It needs
# root and the `nft` command (Debian package nftables; scripts/test.sh
# installs it); without them it raises BlackholeUnavailable.
#
# wait_until (tests/support/waiting.py) is re-exported for the fault tests.
from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import enum
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from tests.support.waiting import wait_until

LOOPBACK = "127.0.0.1"
CHUNK = 65536  # bytes read at a time
QUEUE_CHUNKS = 64  # chunks waiting for their delivery time, per direction (then reading pauses)
CONNECT_TIMEOUT = 10.0  # seconds to reach the target for a new connection
CALL_TIMEOUT = 10.0  # seconds a control call waits for the relay's loop
NFT_TIMEOUT = 10.0  # seconds for one nft command
TABLE_PREFIX = "mysqlpool_faults_"

__all__ = ["FaultRelay", "Direction", "Refusal", "BlackholeUnavailable", "wait_until"]


class Direction(enum.Flag):
    TO_SERVER = enum.auto()  # the client's bytes (the proxy's commands)
    TO_CLIENT = enum.auto()  # the server's bytes (its replies)
    BOTH = TO_SERVER | TO_CLIENT


class Refusal(enum.Enum):
    RESET = "reset"  # accept, then RST at once
    CLOSED = "closed"  # stop listening: the kernel answers the SYN with RST (ECONNREFUSED)


class BlackholeUnavailable(RuntimeError):
    """The kernel-level blackhole needs root and the nft command."""


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST: SO_LINGER on, timeout 0, then close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class FaultRelay:
    """A relay to (target_host, target_port) on its own thread: start() then stop(), or use it as a
    context manager. Every method may be called from any thread, while connections are open."""

    def __init__(self, target_host: str, target_port: int, *, host: str = LOOPBACK, port: int = 0):
        self.target = (target_host, target_port)
        self.host = host
        self.port = port
        self.accepted = 0  # connections relayed so far (refused ones not counted)
        self.refused = 0  # connections accepted then reset by refuse_new(Refusal.RESET)
        self._links: set[_Link] = set()
        self._latency = {Direction.TO_SERVER: 0.0, Direction.TO_CLIENT: 0.0}
        self._slow_close = 0.0
        self._refusal: Refusal | None = None
        self._server: asyncio.AbstractServer | None = None
        self._firewall: _Firewall | None = None
        self._loop = asyncio.SelectorEventLoop()  # plain asyncio, whatever loop policy a test installed
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-relay", daemon=True)

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> FaultRelay:
        self._thread.start()
        self._call_async(self._listen)
        return self

    def stop(self) -> None:
        """Close every connection and the listener, lift the blackhole, stop the thread."""
        if not self._thread.is_alive():
            return
        try:
            self._call_async(self._shut)
        finally:
            if self._firewall is not None:
                self._firewall.remove()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CALL_TIMEOUT)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> FaultRelay:
        return self.start() if not self._thread.is_alive() else self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FaultRelay {self.host}:{self.port} -> {self.target[0]}:{self.target[1]}>"

    # -- counters -----------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        """Connections relayed now, including ones whose close is being passed on."""
        return len(self._links)

    # -- faults -------------------------------------------------------------------

    def set_latency(self, seconds: float, direction: Direction = Direction.BOTH) -> None:
        """Delay each chunk going `direction` by `seconds` (0 = none); applies to chunks arriving from now on."""
        if seconds < 0:
            raise ValueError("latency must be >= 0")

        def apply() -> None:
            for d in (Direction.TO_SERVER, Direction.TO_CLIENT):
                if d in direction:
                    self._latency[d] = seconds
        self._call(apply)

    def latency(self, direction: Direction) -> float:
        return self._latency[direction]

    def blackhole(self, direction: Direction = Direction.BOTH) -> int:
        """Silently drop every packet going `direction` on the connections open now; returns how many.
        Connections made later are not affected (the firewall forgot the old flows only)."""
        ports = self._call(lambda: [link.peer_port for link in self._links if link.peer_port])
        if self._firewall is None:
            self._firewall = _Firewall(self.port)
        self._firewall.drop(direction, ports)
        return len(ports)

    def restore(self) -> None:
        """Lift every blackhole: packets flow again and TCP retransmits what was dropped."""
        if self._firewall is not None:
            self._firewall.clear()

    def reset_all(self) -> int:
        """RST both sides of every open connection; returns how many."""
        def reset() -> int:
            links = list(self._links)
            for link in links:
                link.reset()
            return len(links)
        return self._call(reset)

    def refuse_new(self, how: Refusal = Refusal.RESET) -> None:
        """Refuse new connections (open ones go on): reset at once, or stop listening."""
        def refuse() -> None:
            self._refusal = how
            if how is Refusal.CLOSED and self._server is not None:
                self._server.close()  # the listening socket closes now; open connections are not touched
                self._server = None
        self._call(refuse)

    def allow_new(self) -> None:
        """Accept new connections again (listening again on the same port if it had stopped)."""
        self._call(lambda: setattr(self, "_refusal", None))
        if self._server is None:
            self._call_async(self._listen)

    def slow_close(self, seconds: float) -> None:
        """From now on, pass a server's close on to the client `seconds` later (0 = at once)."""
        if seconds < 0:
            raise ValueError("slow close delay must be >= 0")
        self._call(lambda: setattr(self, "_slow_close", seconds))

    def clear(self) -> None:
        """No fault at all: no latency, no blackhole, new connections allowed, closes passed on at once."""
        self.set_latency(0.0)
        self.restore()
        self.allow_new()
        self.slow_close(0.0)

    # -- the loop's side ------------------------------------------------------------

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run fn() on the relay's loop and return its result."""
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return fut.result(CALL_TIMEOUT)

    def _call_async(self, coro_fn: Callable[[], Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro_fn(), self._loop).result(CALL_TIMEOUT)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True,
                                                  limit=CHUNK)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        links = list(self._links)
        for link in links:
            link.close()
        tasks = [link.task for link in links if link.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:  # let them finish their cancellation before the loop stops
            await asyncio.wait(tasks, timeout=CALL_TIMEOUT / 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusal is not None:
            self.refused += 1
            _reset(writer)
            return
        self.accepted += 1
        link = _Link(self, reader, writer)
        link.task = asyncio.current_task()
        self._links.add(link)
        try:
            await link.run()
        except asyncio.CancelledError:
            pass  # stop(): ends quietly (Python 3.11's start_server reports a cancelled handler as an error)
        finally:
            self._links.discard(link)


class _Link:
    """One relayed connection: the client's side, the server's, and a pipe each way."""

    def __init__(self, relay: FaultRelay, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.relay = relay
        self.client_reader = reader
        self.client_writer = writer
        peer = writer.get_extra_info("peername")
        self.peer_port: int | None = peer[1] if peer else None
        self.server_writer: asyncio.StreamWriter | None = None
        self.pipes: list[asyncio.Task] = []
        self.task: asyncio.Task | None = None  # the one running run()

    async def run(self) -> None:
        try:
            server_reader, self.server_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.relay.target, limit=CHUNK), CONNECT_TIMEOUT)
        except (TimeoutError, OSError):
            _reset(self.client_writer)
            return
        self.pipes = [
            asyncio.create_task(self._pipe(self.client_reader, self.server_writer, Direction.TO_SERVER)),
            asyncio.create_task(self._pipe(server_reader, self.client_writer, Direction.TO_CLIENT)),
        ]
        try:
            await _first_error(self.pipes)
        except (ConnectionError, OSError):
            self.reset()  # one side reset (or broke): the other side is reset too
        finally:
            self.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: Direction) -> None:
        """One direction: a task reads chunks as they come, another delivers each at its due time
        (arrival + latency), so latency delays without limiting throughput."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)
        await _first_error([asyncio.create_task(self._read(reader, queue, direction)),
                            asyncio.create_task(self._deliver(queue, writer, direction))])

    async def _read(self, reader: asyncio.StreamReader, queue: asyncio.Queue, direction: Direction) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await reader.read(CHUNK)
            await queue.put((loop.time() + self.relay._latency[direction], data))
            if not data:
                return

    async def _deliver(self, queue: asyncio.Queue, writer: asyncio.StreamWriter, direction: Direction) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, data = await queue.get()
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if direction is Direction.TO_CLIENT and self.relay._slow_close:
            await asyncio.sleep(self.relay._slow_close)
        if not writer.is_closing() and writer.can_write_eof():
            writer.write_eof()

    def reset(self) -> None:
        for task in self.pipes:
            task.cancel()
        for writer in (self.client_writer, self.server_writer):
            if writer is not None and not writer.transport.is_closing():
                _reset(writer)

    def close(self) -> None:
        for task in self.pipes:
            task.cancel()
        for writer in (self.client_writer, self.server_writer):
            if writer is not None and not writer.transport.is_closing():
                writer.transport.close()


async def _first_error(tasks: list[asyncio.Task]) -> None:
    """Wait for all `tasks`; at the first error (or cancellation) cancel the rest and raise it."""
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
    errors = [task.exception() for task in done if not task.cancelled() and task.exception() is not None]
    if errors:
        raise errors[0]


class _Firewall:
    """The nftables table that blackholes a relay's connections: two sets of client ports, one per direction."""

    def __init__(self, relay_port: int):
        self.relay_port = relay_port
        self.table = f"{TABLE_PREFIX}{os.getpid()}_{relay_port}"
        self.created = False

    def drop(self, direction: Direction, ports: list[int]) -> None:
        if not self.created:
            self._create()
        lines = []
        for d, name in ((Direction.TO_SERVER, "to_server"), (Direction.TO_CLIENT, "to_client")):
            if d in direction and ports:
                lines.append(f"add element inet {self.table} {name} {{ {', '.join(map(str, ports))} }}")
        if lines:
            _nft("\n".join(lines))

    def clear(self) -> None:
        if self.created:
            _nft(f"flush set inet {self.table} to_server\nflush set inet {self.table} to_client")

    def remove(self) -> None:
        if self.created:
            _nft(f"delete table inet {self.table}")
            self.created = False
            _LIVE_TABLES.discard(self.table)

    def _create(self) -> None:
        _remove_stale_tables()
        port = self.relay_port
        _nft(f"""
table inet {self.table} {{
    set to_server {{ type inet_service; }}
    set to_client {{ type inet_service; }}
    chain output {{
        type filter hook output priority filter; policy accept;
        oifname "lo" tcp dport {port} tcp sport @to_server drop
        oifname "lo" tcp sport {port} tcp dport @to_client drop
    }}
}}""")
        self.created = True
        _LIVE_TABLES.add(self.table)


_LIVE_TABLES: set[str] = set()


def _nft_path() -> str:
    path = shutil.which("nft") or next((p for p in ("/usr/sbin/nft", "/sbin/nft") if os.access(p, os.X_OK)), None)
    if path is None:
        raise BlackholeUnavailable("the fault relay's blackhole needs the nft command: apt-get install nftables "
                                   "(scripts/test.sh installs it)")
    if os.geteuid() != 0:
        raise BlackholeUnavailable("the fault relay's blackhole adds nftables rules, which needs root")
    return path


def _nft(script: str) -> str:
    done = subprocess.run([_nft_path(), "-f", "-"], input=script, capture_output=True, text=True,
                          timeout=NFT_TIMEOUT)
    if done.returncode != 0:
        raise BlackholeUnavailable(f"nft failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _remove_stale_tables() -> None:
    """Tables left by relays of processes that died before they could remove them."""
    listed = subprocess.run([_nft_path(), "list", "tables"], capture_output=True, text=True, timeout=NFT_TIMEOUT)
    for name in re.findall(rf"^table inet ({TABLE_PREFIX}(\d+)_\d+)$", listed.stdout, re.M):
        table, pid = name
        if not _alive(int(pid)):
            subprocess.run([_nft_path(), "delete", "table", "inet", table], capture_output=True, timeout=NFT_TIMEOUT)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@atexit.register
def _remove_live_tables() -> None:
    for table in list(_LIVE_TABLES):
        subprocess.run([_nft_path(), "delete", "table", "inet", table], capture_output=True, timeout=NFT_TIMEOUT)

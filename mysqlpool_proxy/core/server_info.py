"""What the proxy knows of its server, learned from its backend connections.

`ServerInfo` is learned from the first backend (opened with the collation
table): the version string clients are greeted with, the capabilities, the
collation table, the server's default status and character set variables.
Every new backend after it tells what a new session gets now, since a SET
GLOBAL changes that for new connections only: the session trackers a new
client has, the max_allowed_packet that bounds clients' packets (a raised
one counts once the backends opened before are gone: the server holds each
connection to the value it connected with), max_prepared_stmt_count (a
limit over all connections, at once), and its account's wait_timeout
(`WaitTimeouts`: a pool's open backends may hold several, and the proxy's
idle timeout is derived below the smallest).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..protocol.session_track import Trackers
from .session import Collation

__all__ = ["ServerInfo", "WaitTimeouts", "NOT_CLIENT_CHARSETS", "PoolView"]

# Character sets whose characters are never one byte: the server's parser cannot read statements in
# them, so no client may use one (1231 at login, COM_CHANGE_USER and SET NAMES).
NOT_CLIENT_CHARSETS = frozenset((b"ucs2", b"utf16", b"utf16le", b"utf32"))
NAMES_CACHED = 64  # distinct SET NAMES texts whose answer a ServerInfo keeps

log = logging.getLogger("mysqlpool.proxy")


class OpenBackend(Protocol):
    @property
    def created_at(self) -> float: ...


class PoolView(Protocol):
    """What this module reads of a backend pool (backend/pool.py's Pool is one): its size, and when
    each of its open backends was created."""

    @property
    def size(self) -> int: ...

    @property
    def idle(self) -> Iterable[OpenBackend]: ...

    @property
    def busy(self) -> Iterable[OpenBackend]: ...


class WaitTimeouts:
    """The wait_timeouts a pool's open backends may have. The server gives a connection the value
    current when it connects (SET GLOBAL changes it for new connections only), and each new backend
    reports its own: a value counts until no backend opened before the next one is left."""

    __slots__ = ("_by_pool",)

    def __init__(self) -> None:
        self._by_pool: dict[str, list[tuple[float, float]]] = {}  # pool -> [(since, wait_timeout)], oldest first

    def learned(self, pool: str, at: float, wait_timeout: float) -> float | None:
        """A backend of `pool` opened at `at` with `wait_timeout`; returns the value new ones had before."""
        history = self._by_pool.setdefault(pool, [])
        previous = history[-1][1] if history else None
        if previous != wait_timeout:
            history.append((at, wait_timeout))
        return previous

    def current(self, pool: str) -> float | None:
        """What a new backend of `pool` gets now (as far as the last one said)."""
        history = self._by_pool.get(pool)
        return history[-1][1] if history else None

    def smallest(self, pools: Mapping[str, PoolView]) -> float | None:
        """The smallest wait_timeout an open backend may have. A pool without backends does not count
        (its next one learns the value then); when none has any, what new ones get."""
        values: list[float] = []
        for name, history in self._by_pool.items():
            pool = pools.get(name)
            if pool is None or not pool.size:
                continue
            oldest = min((b.created_at for backends in (pool.idle, pool.busy) for b in backends), default=None)
            while len(history) > 1 and (oldest is None or history[1][0] <= oldest):
                del history[0]  # no backend opened while it was current is left
            values.extend(value for _, value in history)
        if not values:
            values = [history[-1][1] for history in self._by_pool.values() if history]
        return min(values, default=None)


@dataclass(slots=True)
class ServerInfo:
    version: str
    advertised_version: bytes
    capabilities: int
    client_capabilities: int
    charset_id: int
    collations: dict[int, tuple[str, str, bool]]
    initial_status: int
    charset_vars: dict[bytes, bytes]
    trackers: Trackers  # what a new session's trackers report (the server's session_track_* globals)
    max_allowed_packet: int  # 0: unknown
    net_write_timeout: float  # how long the server waits for a client to read a result before it aborts
    max_prepared_stmt_count: int  # over all the server's connections; 0: unknown
    wait_timeouts: WaitTimeouts = field(default_factory=WaitTimeouts)
    packet_raised_at: float | None = None  # when a larger max_allowed_packet was seen, older backends left
    # resolve_names' answers (clients send the same SET NAMES at every login: PyMySQL always does),
    # so the collation table is searched once per text; bounded, since clients choose the text.
    _names: dict[tuple[bytes, bytes | None], tuple[Collation, bool] | None] = field(
        default_factory=dict, init=False, repr=False, compare=False)
    # names()' answers, by collation id: one per login (its handshake's), the same for every client
    # with that id; only ids of the collation table are kept.
    _by_id: dict[int, tuple[Collation, bool]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def charset_names(self) -> dict[int, str]:
        return {i: cs for i, (cs, _name, _default) in self.collations.items()}

    def names(self, collation_id: int) -> tuple[Collation, bool] | None:
        """A handshake's collation id: the collation, and whether it is its charset's default."""
        known = self._by_id.get(collation_id)
        if known is not None:
            return known
        found = self.collations.get(collation_id)
        if found is None:
            return None
        known = self._by_id[collation_id] = (Collation(found[0].encode(), found[1].encode()), found[2])
        return known

    def unusable_client_charset(self, collation_id: int) -> str | None:
        """The charset of a handshake's collation id if it cannot be a client's (the server refuses the
        login with 1231), else None."""
        found = self.collations.get(collation_id)
        return found[0] if found is not None and found[0].encode() in NOT_CLIENT_CHARSETS else None

    def resolve_names(self, charset: bytes, collation: bytes | None) -> tuple[Collation, bool] | None:
        """What `SET NAMES charset [COLLATE collation]` sets (the collation, and whether it is the
        charset's default), or None to let the server decide (and refuse what it refuses)."""
        key = (charset, collation)
        if key in self._names:
            return self._names[key]
        found = self._search_names(charset, collation)
        if len(self._names) < NAMES_CACHED:
            self._names[key] = found
        return found

    def _search_names(self, charset: bytes, collation: bytes | None) -> tuple[Collation, bool] | None:
        if charset.lower() in NOT_CLIENT_CHARSETS:
            return None
        cs = charset.decode("ascii", "replace")
        for cset, name, is_default in self.collations.values():
            if cset != cs:
                continue
            if (collation is None and is_default) or (collation is not None and name.encode() == collation):
                return Collation(cset.encode(), name.encode()), is_default
        return None

    def learn_globals(self, settings: Mapping[bytes, bytes], now: float, pools: Mapping[str, PoolView]) -> bool:
        """What a new session gets now, as a new backend tells it (SERVER_GLOBALS in backend_adapter.py):
        a SET GLOBAL changes it for new connections only. True if max_prepared_stmt_count changed (a limit
        over all connections at once, which the statement caches are sized from)."""
        self.trackers = Trackers.from_settings(settings)
        self._learn_max_allowed_packet(int(settings.get(b"max_allowed_packet", b"0")), now, pools)
        statements = int(settings.get(b"max_prepared_stmt_count", b"0"))
        if statements == self.max_prepared_stmt_count:
            return False
        log.info("the server's max_prepared_stmt_count is now %d (was %d)", statements, self.max_prepared_stmt_count)
        self.max_prepared_stmt_count = statements
        return True

    def _learn_max_allowed_packet(self, packet: int, now: float, pools: Mapping[str, PoolView]) -> None:
        if not packet or packet == self.max_allowed_packet:
            self.packet_raised_at = None
            return
        if packet > self.max_allowed_packet:
            # The server holds each connection to the value it connected with, and hangs up on a larger
            # packet: clients get the larger one once no backend opened before is left.
            if self.packet_raised_at is None:
                self.packet_raised_at = now
            if any(b.created_at <= self.packet_raised_at for pool in pools.values()
                   for backends in (pool.idle, pool.busy) for b in backends):
                return
        log.info("the server's max_allowed_packet is now %d (was %d): the largest packet clients connecting from "
                 "now on may send", packet, self.max_allowed_packet)
        self.max_allowed_packet = packet
        self.packet_raised_at = None

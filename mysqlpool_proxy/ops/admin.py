# The admin console ([admin] listen): a MySQL-protocol endpoint for operators.
#
# Owns: the admin listener, one AdminConnection (asyncio Protocol) per
# operator, and COMMANDS, the one name -> handler table of admin commands
# (like PgBouncer's show_map/cmd_list); CLIENT_QUERIES answers what clients
# send on their own (select @@version_comment, SET, SHOW DATABASES...), so
# the `mariadb` CLI and drivers work as on a server.
#
# How: login is the proxy's sans-IO ServerHandshake against the [admin]
# user only (wrong credentials: MySQL's 1045, then close); nothing else is
# reachable before it. Then each COM_QUERY is one command, matched without
# regard to case, trailing `;` or whitespace; unknown ones get 1064 listing
# the commands. Handlers return rows or OK (protocol/resultset.py) or raise
# ProxyError; KILL CLIENT, PAUSE and WAIT_CLOSE return a coroutine, awaited
# with nothing read (PAUSE and WAIT_CLOSE wait up to [proxy] shutdown_timeout
# for clients to let their backends go). `SET section.key = value` changes a
# setting as a reload would (operations.set_setting); any other SET (a
# driver's SET NAMES, SET autocommit...) is answered OK and changes nothing.
# Bounds: MAX_CONNECTIONS operators logged in at once; MAX_LOGINS connections
# logging in at once, each within HANDSHAKE_TIMEOUT, and a new connection
# beyond them closes the oldest one still logging in, so idle or slow
# unauthenticated sockets can never lock the operator out; login packets up
# to MAX_LOGIN_PACKET (a larger one: 1153 and a close at its header), then
# packets up to MAX_PACKET; no reading while answers cannot be written. Bad
# input or a handler's bug costs that admin connection, never the proxy.
# With [proxy] workers > 1 every console speaks for the whole proxy: a
# command's `across` says whether it runs on this worker only, or on every
# worker (peers.everywhere(): this worker's handler first, so a usage error
# asks no peer, then the peers concurrently; rows get a `worker` column), and
# KILL CLIENT goes to the worker that owns the id. A peer logs in as
# peers.PEER_USER with the supervisor's secret, only from this host, and its
# commands run on this worker only.
"""The admin console: inspect and steer a running proxy over the MySQL protocol."""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import ipaddress
import itertools
import logging
import re
import weakref
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..client.local import kill_client
from ..config import SCHEMA as SETTINGS, ConfigError, ListenAddress, parse_listen, setting_default
from ..constants import CLIENT, COMMAND, ER, SERVER_STATUS
from ..core.pins import PinReason
from ..core.states import ClientState
from ..errors import ProtocolError, ProxyError
from ..protocol import auth, handshake as hs
from ..protocol.framing import Oversized, Packet, PacketDecoder, next_seq
from ..protocol.resultset import (
    CHARSET_UTF8MB4,
    Ok,
    Reply,
    Rows,
    Value,
    columns as cols,
    encode_reply,
    field_list_end,
    select_reply,
)
from ..reasons import BackendCloseReason, ClientCloseReason, RefusalReason
from . import operations, peers as peer_workers, snapshots

if TYPE_CHECKING:
    from ..proxy.proxy import Proxy

__all__ = ["start_admin_server", "stop_admin_server", "AdminConnection", "COMMANDS"]

log = logging.getLogger("mysqlpool.admin")

HANDSHAKE_TIMEOUT = 5.0  # seconds from accept to a successful login
MAX_PACKET = 64 * 1024  # largest admin packet after login (a command is a line of text)
MAX_CONNECTIONS = 16  # operators logged in at once
MAX_LOGINS = 16  # connections logging in at once; one more closes the oldest of them
ACTION_TIMEOUT = 30.0  # seconds an asynchronous command may take (beyond shutdown_timeout for PAUSE, WAIT_CLOSE)
QUERY_SHOWN = 100  # bytes of a client's SQL that SHOW ACTIVITY shows
STOP_TIMEOUT = 5.0  # seconds stop_admin_server() waits for the listener to close

SCHEMA = "mysqlpool"  # the one "database" the console shows
SERVER_VERSION = f"5.7.99-mysqlpool-proxy-{__version__}-admin"  # X.Y.Z first: drivers parse it
VERSION_COMMENT = f"mysqlpool-proxy {__version__} admin console"
STATUS = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
CAPABILITIES = (CLIENT.LONG_PASSWORD | CLIENT.LONG_FLAG | CLIENT.CONNECT_WITH_DB | CLIENT.PROTOCOL_41
                | CLIENT.INTERACTIVE | CLIENT.TRANSACTIONS | CLIENT.SECURE_CONNECTION | CLIENT.MULTI_RESULTS
                | CLIENT.PLUGIN_AUTH | CLIENT.CONNECT_ATTRS | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA)
INTERNAL_ERROR = ProxyError(ER.UNKNOWN_ERROR, "mysqlpool-proxy admin: internal error (see the proxy's log)")
TOO_MANY = ProxyError(ER.CON_COUNT_ERROR, f"Too many connections: the mysqlpool-proxy admin console allows "
                      f"{MAX_CONNECTIONS} operators at once")


# -- SHOW ---------------------------------------------------------------------------------

POOL_COLUMNS = cols(snapshots.POOLS.spec)
CLIENT_COLUMNS = cols(snapshots.CLIENTS.spec)
SERVER_COLUMNS = cols(snapshots.SERVERS.spec)


def show_pools(conn: AdminConnection, args: list) -> Rows:
    return Rows(POOL_COLUMNS, snapshots.pool_rows(conn.proxy))


def show_clients(conn: AdminConnection, args: list) -> Rows:
    return Rows(CLIENT_COLUMNS, snapshots.client_rows(conn.proxy))


ACTIVITY_COLUMNS = cols("id:i user pool state command query command_seconds:f transaction_seconds:f")
_RUNNING = frozenset((ClientState.CHECKOUT, ClientState.ACTIVE, ClientState.INFILE, ClientState.LOCAL))


def show_activity(conn: AdminConnection, args: list) -> Rows:
    """What each logged-in client does: its command now (or its last one, command_seconds NULL, when
    it is between commands), since when, and how old its open transaction is."""
    now = conn.proxy.loop.time()
    rows = []
    for c in sorted(conn.proxy.clients.values(), key=lambda c: c.id):
        if c.user is None:
            continue  # still logging in
        command = c.command
        started = c.trx_started_at
        rows.append((
            c.id, c.user.name, c.pool.name if c.pool else None, c.state.value,
            command.spec.name if command else None, _shown_sql(command.sql) if command else None,
            round(now - c.last_active, 3) if c.state in _RUNNING else None,
            round(now - started, 3) if c.in_transaction and started is not None else None,
        ))
    return Rows(ACTIVITY_COLUMNS, rows)


_ESCAPES = {i: f"\\x{i:02x}" for i in (*range(32), 127)} | {9: "\\t", 10: "\\n", 13: "\\r", 92: "\\\\"}


def _shown_sql(sql: bytes) -> str:
    """The first QUERY_SHOWN bytes of `sql`, control characters and backslashes escaped, "..." if cut."""
    text = bytes(sql[:QUERY_SHOWN]).decode("utf-8", "backslashreplace").translate(_ESCAPES)
    return text + "..." if len(sql) > QUERY_SHOWN else text


def show_servers(conn: AdminConnection, args: list) -> Rows:
    return Rows(SERVER_COLUMNS, snapshots.server_rows(conn.proxy))


def show_stats(conn: AdminConnection, args: list) -> Rows:
    """One row per (pool, stat); proxy-wide counters have pool NULL. Counters by reason list every reason."""
    rows: list[tuple] = []
    for pool in conn.proxy.pools.values():
        s = pool.stats
        stats: list[tuple[str, float]] = [("connects", s.connects), ("connect_errors", sum(s.connect_errors.values()))]
        stats += [(f"connect_errors.{code}", n) for code, n in sorted(s.connect_errors.items())]
        stats += [(f"closed.{r.value}", s.closed[r.value]) for r in BackendCloseReason]
        stats += [(f"queries.{name}", n) for name, n in sorted(s.queries.items())]
        stats += [("transactions", s.transactions), ("checkouts", s.checkouts), ("wait_count", s.wait_count),
                  ("wait_sum_seconds", s.wait_sum)]
        stats += [(f"pins.{r.value}", s.pins[r.value]) for r in PinReason]
        rows += [(pool.name, stat, value) for stat, value in stats]
    p = conn.proxy.stats
    stats = [("clients", len(conn.proxy.clients)), ("accepted", p.accepted)]
    stats += [(f"refused.{r.value}", p.refused[r.value]) for r in RefusalReason]
    stats += [(f"client_closed.{r.value}", p.client_closed[r.value]) for r in ClientCloseReason]
    stats += [("bytes_in", p.bytes_in), ("bytes_out", p.bytes_out)]
    rows += [(None, stat, value) for stat, value in stats]
    return Rows(cols("pool stat value:f"), rows)


def _shown(value: Any) -> str | bytes | int | float | None:
    """A setting as SHOW CONFIG shows it: a list of names as one comma-separated text."""
    return ", ".join(value) if isinstance(value, (tuple, list)) else value


def show_config(conn: AdminConnection, args: list) -> Rows:
    """The effective config, secrets masked: one row per section.key (users[N].key for users), with
    its default, where it came from (file, env, cli, admin or default) and whether SET and RELOAD
    change it live (1) or it needs a restart (0)."""
    config, rows = conn.proxy.config, []
    for section, values in config.redacted().items():
        tables = [(f"{section}[{i}]", t) for i, t in enumerate(values)] if isinstance(values, list) \
            else [(section, values)]
        for prefix, table in tables:
            rows += [(f"{prefix}.{key}", _shown(value), _shown(setting_default(f"{prefix}.{key}")),
                      config.origin(f"{prefix}.{key}").kind,
                      operations.changeable(f"{prefix}.{key}"))
                     for key, value in table.items()]
    return Rows(cols("key value default source changeable:i"), rows)


def show_version(conn: AdminConnection, args: list) -> Rows:
    info = conn.proxy.server_info  # MariaDB prefixes its version with "5.5.5-" on the wire
    server = info.version.removeprefix("5.5.5-") if info else None
    return Rows(cols("version server_version"), [(f"mysqlpool-proxy {__version__}", server)])


def show_help(conn: AdminConnection, args: list) -> Rows:
    """Every command, or those starting with the topic (the mariadb client sends `help topic` as HELP 'topic')."""
    topic = " ".join(args).upper()
    commands = [c for c in COMMANDS.values() if c.usage.startswith(topic)] or COMMANDS.values()
    return Rows(cols("command description"), [(c.usage, c.description) for c in commands])


# -- actions ------------------------------------------------------------------------------


RELOAD_COLUMNS = cols("key before after status")


def reload_config(conn: AdminConnection, args: list) -> Rows:
    """One row per setting the file changed: applied, or kept as running until a restart."""
    try:
        changes = operations.reload_from_source(conn.proxy)
    except ConfigError as err:
        raise ProxyError(ER.UNKNOWN_ERROR, "RELOAD failed, config unchanged: " + "; ".join(err.problems)) from None
    return Rows(RELOAD_COLUMNS, [(c.key, c.before, c.after, _reload_status(c)) for c in changes])


def _reload_status(change: operations.Change) -> str:
    if not change.applied:
        return "restart needed: the running value stays until then"
    return "applied, replacing the value SET on the console" if change.replaced_admin else "applied"


def set_command(conn: AdminConnection, args: list) -> Ok:
    """SET section.key = value (a setting), else a driver's SET: OK, nothing changes."""
    match = _SETTING.fullmatch(args[0])
    if match is None:
        return Ok()  # SET NAMES, SET SESSION ..., SET @x = 1: what drivers send on their own
    key, value = match["key"].lower(), match["value"].strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"`":
        value = value[1:-1]
    if "." not in key and "[" not in key:
        if not any(key in rules for rules in SETTINGS.values()):
            return Ok()  # SET autocommit = 1, SET character_set_results = NULL, ...
        homes = [f"{s}.{key}" if s != "users" else f"users[N].{key}" for s, rules in SETTINGS.items() if key in rules]
        raise _not_settable(conn, ER.UNKNOWN_SYSTEM_VARIABLE, f"Name the section: {' or '.join(homes)}")
    who = f"the admin console ({conn.user}@{conn.peer})"
    try:
        before, after = operations.set_setting(conn.proxy, key, value, who)
    except KeyError:
        if operations.changeable(key) or key.rpartition(".")[2] not in SETTINGS.get(key.split(".")[0], {}):
            raise _not_settable(conn, ER.UNKNOWN_SYSTEM_VARIABLE, f"Unknown setting '{key}'", key) from None
        raise _not_settable(conn, ER.INCORRECT_GLOBAL_LOCAL_VAR,
                            f"{key} needs a restart (change it in {conn.proxy.config.source})", key) from None
    except ConfigError as err:
        raise ProxyError(ER.WRONG_VALUE_FOR_VAR, "SET refused, nothing changed: " + "; ".join(err.problems),
                         "42000") from None
    shown_before, shown_after = operations.settings(before)[key], operations.settings(after)[key]
    warnings = "".join(f"; warning: {w}" for w in after.warnings)
    return Ok(f"{key} = {shown_after} (was {shown_before}){warnings}")


# [GLOBAL|SESSION|...] name[.name] = value, where name may be users[N]: a setting if it has a section
_SETTING = re.compile(r"(?:(?:global|session|local|persist)\s+)?"
                      r"(?P<key>[A-Za-z_][A-Za-z0-9_]*(?:\[[0-9]+\])?(?:\.[A-Za-z_][A-Za-z0-9_]*)?)"
                      r"\s*:?=\s*(?P<value>.*)", re.S | re.I)


def _not_settable(conn: AdminConnection, errno: int, what: str, key: str = "") -> ProxyError:
    """ERR naming what SET can change: the keys of `key`'s section, and the other sections (all the
    keys would not fit the 512 bytes clients show of an error)."""
    by_section: dict[str, list[str]] = {}
    for settable in operations.settable_keys(conn.proxy.config):
        section, _, name = settable.rpartition(".")
        by_section.setdefault(section, []).append(name)
    section = re.sub(r"\[[0-9]+\]$", "[N]", key.rpartition(".")[0])
    listed = f"{section}.{{{', '.join(by_section[section])}}}; " if section in by_section else ""
    others = ", ".join(s for s in by_section if s != section)
    return ProxyError(errno, f"{what}. SET can change {listed}{'and settings of ' if listed else 'settings of '}"
                      f"{others} (SHOW CONFIG: changeable = 1)", "HY000")


def _pool_arg(conn: AdminConnection, args: list, action: Callable = operations.pools_named) -> list:
    """`action(proxy, name)` on the pool named in `args`, or on all of them; ERR for no such pool."""
    try:
        return action(conn.proxy, args[0] if args else None)
    except KeyError as err:  # its message names the pools there are
        raise ProxyError(ER.UNKNOWN_ERROR, str(err.args[0])) from None


def pause_command(conn: AdminConnection, args: list) -> Awaitable[Ok]:
    """PAUSE [pool]: pause, then answer once no server connection of the pools is left."""
    pools = _pool_arg(conn, args)
    _pool_arg(conn, args, operations.pause)
    return _paused(conn, pools)


async def _paused(conn: AdminConnection, pools: list) -> Ok:
    timeout = conn.proxy.config.proxy.shutdown_timeout
    try:
        resumed = await operations.wait_released(conn.proxy, pools, timeout)
    except operations.WaitTimeout as busy:
        raise ProxyError(ER.UNKNOWN_ERROR, f"PAUSE: still busy after {timeout:g}s (proxy.shutdown_timeout), the "
                         f"pools stay paused; run PAUSE again to wait more, or RESUME: {busy}") from None
    if resumed:
        raise ProxyError(ER.UNKNOWN_ERROR, f"PAUSE: resumed (RESUME) before every server connection was released: "
                         f"{', '.join(resumed)}")
    return Ok(f"paused: {', '.join(p.name for p in pools)}; no server connection left")


def resume_command(conn: AdminConnection, args: list) -> Ok:
    return Ok(f"resumed: {', '.join(_pool_arg(conn, args, operations.resume))}")


def wait_close_command(conn: AdminConnection, args: list) -> Awaitable[Ok]:
    return _closed(conn, _pool_arg(conn, args))


async def _closed(conn: AdminConnection, pools: list) -> Ok:
    timeout = conn.proxy.config.proxy.shutdown_timeout
    try:
        n = await operations.wait_closed(conn.proxy, pools, timeout)
    except operations.WaitTimeout as left:
        raise ProxyError(ER.UNKNOWN_ERROR, f"WAIT_CLOSE: server connections still open after {timeout:g}s "
                         f"(proxy.shutdown_timeout): {left}") from None
    return Ok(f"closed: {n} server connection{'s' if n != 1 else ''} opened before the last RELOAD or SET "
              "changed how they connect")


def kill_client_command(conn: AdminConnection, args: list) -> Awaitable[Reply | None]:
    if not re.fullmatch(r"[0-9]{1,10}", args[0]):
        raise ProxyError(ER.PARSE_ERROR, "Usage: KILL CLIENT <id>", "42000")
    client_id = int(args[0])
    peers = conn.peers
    if peers is not None and (owner := peers.owner(client_id)) != peers.index:
        return peer_workers.forward(peers, owner, f"KILL CLIENT {client_id}", peer_workers.PEER_TIMEOUT)
    target = conn.proxy.clients.get(client_id)
    if target is None:
        raise ProxyError(ER.NO_SUCH_THREAD, f"Unknown thread id: {client_id}")
    return kill_client(target)  # its None becomes an OK


def shutdown(conn: AdminConnection, args: list) -> Ok:
    if args and args[0].upper() != "WAIT":
        raise ProxyError(ER.PARSE_ERROR, "Usage: SHUTDOWN [WAIT]", "42000")
    wait = bool(args)
    return Ok("shutting down" + (" once clients finish their transactions" if wait else " now"),
              then=lambda: conn.proxy.request_shutdown(wait=wait))


class Across(enum.Enum):
    """Where a command runs when the proxy has several workers."""

    WORKER = "worker"  # this worker only (KILL CLIENT finds the client's worker itself)
    SHOW = "show"  # every worker's rows, each peer within PEER_TIMEOUT
    ACT = "act"  # done on every worker, each peer within PEER_TIMEOUT
    WAIT = "wait"  # done on every worker, each peer within shutdown_timeout + PEER_TIMEOUT


@dataclass(frozen=True, slots=True)
class AdminCommand:
    name: str  # its words, upper case
    args: str  # "" or one of "[pool]" (optional), "<id>" (required), "[WAIT]", "[topic...]" (any words)
    handler: Callable[[AdminConnection, list], Reply | Awaitable[Reply | None]]
    description: str
    raw: bool = False  # the handler gets the text after the name as typed, one argument, and logs itself
    across: Across = Across.WORKER

    @property
    def usage(self) -> str:
        return f"{self.name} {self.args}".strip()


COMMANDS: dict[str, AdminCommand] = {c.name: c for c in (
    AdminCommand("SHOW POOLS", "", show_pools, "per pool: caps, idle/in use/connecting, waiting, paused, waits",
                 across=Across.SHOW),
    AdminCommand("SHOW CLIENTS", "", show_clients, "client connections: who, state, times, backend held, pins",
                 across=Across.SHOW),
    AdminCommand("SHOW ACTIVITY", "", show_activity, "each client's command now (or last), how long it runs, "
                 "its transaction's age", across=Across.SHOW),
    AdminCommand("SHOW SERVERS", "", show_servers, "backend connections: thread id, state, ages, client holding it",
                 across=Across.SHOW),
    AdminCommand("SHOW STATS", "", show_stats, "counters per pool, and proxy-wide (pool NULL)",
                 across=Across.SHOW),
    AdminCommand("SHOW CONFIG", "", show_config, "the effective configuration, secrets masked, and the "
                 "source of each setting", across=Across.SHOW),
    AdminCommand("SHOW VERSION", "", show_version, "the proxy's version and the backend server's"),
    AdminCommand("RELOAD", "", reload_config, "re-read the config file (kept as it is if the new one is invalid); "
                 "a row per changed setting, applied or needing a restart", across=Across.ACT),
    AdminCommand("SET", "<section.key> = <value>", set_command, "change a setting live, as a RELOAD would, "
                 "until the next RELOAD", raw=True, across=Across.ACT),
    AdminCommand("PAUSE", "[pool]", pause_command, "new checkouts wait, backends close as released; answers "
                 "when none is left", across=Across.WAIT),
    AdminCommand("RESUME", "[pool]", resume_command, "end a PAUSE (all pools or one)", across=Across.ACT),
    AdminCommand("WAIT_CLOSE", "[pool]", wait_close_command, "answer once the backends a RELOAD or SET retired "
                 "are closed", across=Across.WAIT),
    AdminCommand("KILL CLIENT", "<id>", kill_client_command, "close a client connection, killing its running query"),
    AdminCommand("SHUTDOWN", "[WAIT]", shutdown, "stop the proxy now, or WAIT for transactions to finish",
                 across=Across.ACT),
    AdminCommand("SHOW HELP", "", show_help, "this list (the mariadb client answers a bare HELP itself)"),
    AdminCommand("HELP", "[topic...]", show_help, "this list, or the commands starting with topic"),
)}


# -- what clients send on their own ------------------------------------------------------------


def session_values(conn: AdminConnection) -> dict[str, Value]:
    """What `SELECT @@version_comment`, `SELECT DATABASE(), USER()` and the like answer."""
    return {
        "@@version_comment": VERSION_COMMENT, "@@version": SERVER_VERSION, "version()": SERVER_VERSION,
        "database()": conn.schema, "schema()": conn.schema, "user()": f"{conn.user}@{conn.peer}",
        "current_user()": f"{conn.user}@%", "connection_id()": conn.id, "@@max_allowed_packet": MAX_PACKET,
        "@@autocommit": 1, "@@session.autocommit": 1, "1": 1,
    }


CLIENT_QUERIES: list[tuple[re.Pattern, Callable[[AdminConnection, re.Match], Reply | None]]] = [
    (re.compile(r"select\b.*", re.I | re.S), lambda c, m: select_reply(m.group(0), session_values(c))),
    (re.compile(r"(?:set|commit|rollback|begin|start\s+transaction)\b.*", re.I | re.S), lambda c, m: Ok()),
    (re.compile(r"use\s+(\S+)", re.I), lambda c, m: c.use(m.group(1))),
    (re.compile(r"show\s+(?:databases|schemas)", re.I), lambda c, m: Rows(cols("Database"), [(SCHEMA,)])),
    (re.compile(r"show\s+(?:full\s+)?tables\b.*", re.I | re.S),
     lambda c, m: Rows(cols(f"Tables_in_{c.schema or SCHEMA}"), [])),
    (re.compile(r"show\s+warnings\b.*", re.I | re.S), lambda c, m: Rows(cols("Level Code:i Message"), [])),
]


def _run(conn: AdminConnection, command: AdminCommand, args: list, text: str) -> Reply | Awaitable[Reply | None]:
    """The command here, then (with several workers, for a command `across` them) on every peer too."""
    reply = command.handler(conn, args)  # first: a usage or argument error asks no peer
    peers = conn.peers
    if peers is None or command.across is Across.WORKER or (command.raw and not _names_setting(args[0])):
        return reply
    timeout = peer_workers.PEER_TIMEOUT
    if command.across is Across.WAIT:
        timeout += conn.proxy.config.proxy.shutdown_timeout
    return peer_workers.everywhere(peers, text, reply, timeout)


def _names_setting(text: str) -> bool:
    """SET of a proxy setting (section.key), not a driver's SET NAMES or SET autocommit."""
    match = _SETTING.fullmatch(text)
    return match is not None and ("." in match["key"] or "[" in match["key"])


def run_query(conn: AdminConnection, sql: str) -> Reply | Awaitable[Reply | None]:
    """Answer one COM_QUERY: an admin command, a client's own query, or ProxyError."""
    text = re.sub(r"[\s;]+$", "", sql).strip()
    if not text:
        raise ProxyError(ER.EMPTY_QUERY, "Query was empty", "42000")
    words = text.split()
    for n in (2, 1):
        command = COMMANDS.get(" ".join(words[:n]).upper())
        if command is not None and len(words) >= n:
            if command.raw:  # the rest as typed, one argument
                return _run(conn, command, [text.split(None, n)[n] if len(words) > n else ""], text)
            args = [w.strip("`'\"") for w in words[n:]]
            required = command.args.count("<")
            if not required <= len(args) <= required + command.args.count("[") and "..." not in command.args:
                raise ProxyError(ER.PARSE_ERROR, f"Usage: {command.usage}", "42000")
            if not command.name.startswith(("SHOW", "HELP")):  # it changes something: log it
                log.info("admin %s@%s: %s", conn.user, conn.peer, " ".join([command.name, *args]))
            return _run(conn, command, args, text)
    for pattern, answer in CLIENT_QUERIES:
        match = pattern.fullmatch(text)
        if match is not None and (reply := answer(conn, match)) is not None:
            return reply
    shown = text if len(text) <= 60 else text[:57] + "..."
    raise ProxyError(ER.PARSE_ERROR, f"Unknown admin command '{shown}'. Commands: "
                     + ", ".join(c.usage for c in COMMANDS.values()), "42000")


# -- connections --------------------------------------------------------------------------------

class Listener:
    """One admin listener's connections, and when it last closed a login to make room (how many
    since, unlogged)."""

    __slots__ = ("connections", "last_eviction", "unlogged_evictions")

    def __init__(self) -> None:
        self.connections: set[AdminConnection] = set()
        self.last_eviction = float("-inf")
        self.unlogged_evictions = 0


class AdminConnection(asyncio.Protocol):
    """One operator's connection: handshake, then one command at a time."""

    def __init__(self, proxy: Proxy, listener: Listener, ids: Iterator[int]):
        self.proxy = proxy
        self.listener = listener
        self.connections = listener.connections  # of this listener
        self.id = next(ids) & 0xFFFFFFFF or next(ids)
        self.accepted_at = proxy.loop.time()
        self.transport: asyncio.Transport | None = None
        self.peer, self.user = "?", ""
        self.schema: str | None = None  # from the login, COM_INIT_DB or USE: what DATABASE() says
        self.decoder = PacketDecoder(hs.MAX_LOGIN_PACKET, strict=True)  # until logged in
        self.handshake: hs.ServerHandshake | None = None
        self.capabilities, self.closed = 0, False
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None  # an asynchronous command in flight
        self._writing_paused = False
        self.from_peer = False  # another worker logged in (peers.PEER_USER): its commands run here only

    @property
    def peers(self) -> peer_workers.Peers | None:
        """The other workers a command goes to as well (None: one worker, or asked by a peer)."""
        return None if self.from_peer else peer_workers.peers_of(self.proxy)

    # (narrower than BaseProtocol's BaseTransport: a listening server's transports are asyncio.Transport)
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else "localhost"
        if self._operators() >= MAX_CONNECTIONS:
            self._write(encode_reply(TOO_MANY, STATUS, 0, CLIENT.PROTOCOL_41))
            self.close()
            return
        logging_in = [c for c in self.connections if c.handshake is not None]
        if len(logging_in) >= MAX_LOGINS:
            self._make_room(min(logging_in, key=lambda c: c.accepted_at))
        self.connections.add(self)
        self._timer = self.proxy.loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_timeout)
        self.handshake = hs.ServerHandshake(
            connection_id=self.id, server_version=SERVER_VERSION.encode(), capabilities=CAPABILITIES,
            charset=CHARSET_UTF8MB4, lookup=self._credentials_for, client_host=self.peer)
        self._write(self.handshake.greeting())

    def _make_room(self, oldest: AdminConnection) -> None:
        """Close the oldest connection still logging in (logged once a second at most)."""
        now, listener = self.proxy.loop.time(), self.listener
        if now - listener.last_eviction >= 1.0:
            unlogged = listener.unlogged_evictions
            more = f" ({unlogged} more since the last report)" if unlogged else ""
            log.warning("admin console: %d connections logging in at once; closed the oldest, from %s, "
                        "to make room for one from %s%s", MAX_LOGINS, oldest.peer, self.peer, more)
            listener.last_eviction, listener.unlogged_evictions = now, 0
        else:
            listener.unlogged_evictions += 1
        oldest.close()

    def _operators(self) -> int:
        """Connections logged in (a connection is in `connections` from its greeting on)."""
        return sum(1 for c in self.connections if c.handshake is None)

    def _credentials_for(self, user: bytes) -> auth.Credentials | None:
        """Only the [admin] user, and never without a credential (an empty password is none); and
        with several workers, a peer worker from this host with the supervisor's secret."""
        secret = self.proxy.worker.secret if self.proxy.worker else ""
        if secret and user == peer_workers.PEER_USER.encode():
            return auth.credentials_from_password(secret) if self._from_this_host() else None
        admin = self.proxy.config.admin
        if user != admin.user.encode():
            return None
        if admin.password:
            return auth.credentials_from_password(admin.password)
        return auth.credentials_from_native_hash(admin.password_hash) if admin.password_hash else None

    def _from_this_host(self) -> bool:
        """A unix socket, loopback, or this host's own address (a listener on one address, dialled)."""
        assert self.transport is not None  # (set by connection_made)
        peer, local = self.transport.get_extra_info("peername"), self.transport.get_extra_info("sockname")
        if not isinstance(peer, tuple):
            return True
        try:
            return ipaddress.ip_address(peer[0]).is_loopback or peer[0] == local[0]
        except ValueError:
            return False

    def _handshake_timeout(self) -> None:
        log.info("admin connection from %s: no login within %.0fs; closing", self.peer, HANDSHAKE_TIMEOUT)
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def pause_writing(self) -> None:
        self._writing_paused = True
        assert self.transport is not None  # (set by connection_made)
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._resume()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def use(self, schema: str) -> Ok:
        """COM_INIT_DB or USE: any name is fine; DATABASE() says it."""
        self.schema = schema.strip("`'\"")
        return Ok()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.decoder.feed(data)
        self._process()

    def _resume(self) -> None:
        if self.closed or self._task is not None or self._writing_paused:
            return
        assert self.transport is not None  # (set by connection_made)
        self.transport.resume_reading()
        self._process()

    def _process(self) -> None:
        """Handle whole packets while nothing is in flight and the answers can be written."""
        while not self.closed and self._task is None and not self._writing_paused:
            try:
                pkt = self.decoder.next_packet()
            except ProtocolError:
                self.close()
                return
            if pkt is None:
                return
            try:
                if self.handshake is not None:
                    self._handshake_packet(pkt)
                else:
                    self._command(pkt)
            except Exception:  # a bug costs this admin connection, never the proxy
                log.exception("admin connection #%d: internal error; closing it", self.id)
                self.close()
                return

    def _handshake_packet(self, pkt: Packet | Oversized) -> None:
        assert self.handshake is not None  # (until logged in)
        events = self.handshake.oversized(pkt) if isinstance(pkt, Oversized) else self.handshake.receive(pkt)
        for event in events:
            if isinstance(event, hs.Send):
                self._write(event.data)
            elif isinstance(event, hs.Failed):
                log.warning("admin console login from %s refused: %s", self.peer, event.message)
                self.close()
                return
            elif isinstance(event, hs.Verified):
                self._logged_in(event)

    def _logged_in(self, event: hs.Verified) -> None:
        assert self.handshake is not None and self._timer is not None  # (set by connection_made)
        self._timer.cancel()
        if self._operators() >= MAX_CONNECTIONS:  # others logged in while this one was logging in
            self._write(self.handshake.reject(TOO_MANY.errno, TOO_MANY.message))
            self.close()
            return
        self.user = event.user.decode("utf-8", "replace")
        self.from_peer = event.user == peer_workers.PEER_USER.encode() and bool(self.proxy.worker
                                                                               and self.proxy.worker.secret)
        self.schema = event.database.decode("utf-8", "replace") if event.database else None
        self.capabilities = event.capabilities
        self._write(self.handshake.accept(STATUS))
        self.handshake = None
        self.decoder.limit(MAX_PACKET)
        log.debug("admin console: %s@%s logged in", self.user, self.peer)  # a monitoring script logs in every scrape

    def _command(self, pkt) -> None:
        seq = next_seq(pkt.last_seq)
        if isinstance(pkt, Oversized):
            self._reply(seq, ProxyError(ER.NET_PACKET_TOO_LARGE, (
                f"Got a packet bigger than 'max_allowed_packet' bytes (the admin console takes {MAX_PACKET})")))
            return
        code = pkt.payload[0] if pkt.payload else -1
        if code == COMMAND.COM_QUIT:
            self.close()
        elif code == COMMAND.COM_QUERY:
            self._query(pkt.payload[1:].decode("utf-8", "replace"), seq)
        elif code == COMMAND.COM_PING:
            self._reply(seq, Ok())
        elif code == COMMAND.COM_INIT_DB:
            self._reply(seq, self.use(pkt.payload[1:].decode("utf-8", "replace")))
        elif code == COMMAND.COM_FIELD_LIST:
            self._write(field_list_end(STATUS, seq, self.capabilities))
        else:
            what = f"0x{code:02x}" if code >= 0 else "(an empty packet)"
            self._reply(seq, ProxyError(ER.UNKNOWN_COM_ERROR, f"Unknown command {what}: the admin console takes "
                                        "COM_QUERY, COM_PING, COM_INIT_DB, COM_FIELD_LIST and COM_QUIT"))

    def _query(self, sql: str, seq: int) -> None:
        try:
            reply: Reply | Awaitable[Reply | None] | ProxyError = run_query(self, sql)
        except ProxyError as err:
            reply = err
        except Exception:
            log.exception("admin %s@%s: %r failed", self.user, self.peer, sql[:200])
            reply = INTERNAL_ERROR
        if inspect.isawaitable(reply):
            assert self.transport is not None  # (set by connection_made)
            self.transport.pause_reading()
            action = asyncio.ensure_future(reply, loop=self.proxy.loop)  # runs to its end even if we go
            self._task = self.proxy.loop.create_task(self._finish(action, seq))
        else:
            self._reply(seq, reply)

    async def _finish(self, action: asyncio.Future, seq: int) -> None:
        try:
            bound = ACTION_TIMEOUT + self.proxy.config.proxy.shutdown_timeout  # PAUSE waits up to the latter
            reply = await asyncio.wait_for(action, bound) or Ok()
        except TimeoutError:
            reply = ProxyError(ER.UNKNOWN_ERROR, f"mysqlpool-proxy admin: no result within {bound:.0f}s")
        except Exception as exc:
            if not isinstance(exc, ProxyError):
                log.exception("admin %s@%s: command failed", self.user, self.peer)
            reply = exc if isinstance(exc, ProxyError) else INTERNAL_ERROR
        self._task = None
        if not self.closed:
            self._reply(seq, reply)
            self._resume()

    def _reply(self, seq: int, reply: Reply | ProxyError) -> None:
        self._write(encode_reply(reply, STATUS, seq, self.capabilities))
        if isinstance(reply, Ok) and reply.then is not None:
            reply.then()


# -- the listener -------------------------------------------------------------------------------

_LISTENERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # server -> its Listener


async def start_admin_server(proxy: Proxy, listen_address: ListenAddress | str) -> asyncio.AbstractServer:
    """Listen on `listen_address` ("host:port", "unix:/path" or a ListenAddress) for admin connections."""
    address = parse_listen(listen_address) if isinstance(listen_address, str) else listen_address
    listener = Listener()
    new_connection = functools.partial(AdminConnection, proxy, listener, itertools.count(1))
    if address.is_unix:
        server = await proxy.loop.create_unix_server(new_connection, address.unix_path)
    else:
        server = await proxy.loop.create_server(new_connection, address.host or None, address.port,
                                                reuse_address=True)
    _LISTENERS[server] = listener
    log.info("admin console on %s", ", ".join(str(s.getsockname()) for s in server.sockets))
    return server


async def stop_admin_server(server: asyncio.AbstractServer) -> None:
    """Stop listening and close every admin connection."""
    server.close()
    listener = _LISTENERS.pop(server, None)
    for conn in list(listener.connections if listener is not None else ()):
        conn.close()
    try:
        await asyncio.wait_for(server.wait_closed(), STOP_TIMEOUT)
    except TimeoutError:
        log.warning("admin console still closing after %.0fs", STOP_TIMEOUT)
